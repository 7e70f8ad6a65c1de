//! Engine glue for anomaly detection (`beffroi-sentinel`) and quarantine.
//!
//! The [`SentinelGlue`] held by the pipeline feeds the pure detectors, turns their
//! findings into alarms of category `cyber` (one incident per device × anomaly through the
//! incident book), keeps the set of quarantined devices with its history, and reads the
//! optional `security.toml` of the deployment.

use std::sync::Arc;

use beffroi_core::{
    Alarm, AlarmKind, DedupKey, DeviceIdx, Duration, Observation, SecuritySignal, SiteIdx,
    Territory, Timestamp,
};
use beffroi_sentinel::{Anomaly, CATEGORY, Config, Finding, Sentinel, Subject};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile, parse_duration};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use toml::Spanned;

pub use beffroi_sentinel::{Anomaly as SentinelAnomaly, Config as SecurityConfig, Technique};

/// A quarantine or a release: who, when, why. Stored (`quarantine_log`) and replayed at
/// start to rebuild the set.
#[derive(Clone, Debug, PartialEq)]
pub struct QuarantineAct {
    pub device: DeviceIdx,
    /// `true`: quarantined; `false`: released.
    pub quarantined: bool,
    /// `user:NAME`, or `policy:ANOMALY` for an automatic quarantine.
    pub actor: Arc<str>,
    pub reason: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuarantineError {
    #[error("unknown device `{0}`")]
    UnknownDevice(String),
    #[error("device `{0}` is already quarantined")]
    AlreadyQuarantined(String),
    #[error("device `{0}` is not quarantined")]
    NotQuarantined(String),
    #[error("a reason is required")]
    EmptyReason,
}

/// How many quarantine acts the engine keeps in memory for the API (the store keeps all).
const HISTORY: usize = 1000;

pub struct SentinelGlue {
    detect: Sentinel,
    territory: Arc<Territory>,
    /// Where incidents about something that is not a registered device are placed.
    home_site: SiteIdx,
    quarantined: FxHashMap<DeviceIdx, QuarantineAct>,
    history: Vec<QuarantineAct>,
    findings: Vec<Finding>,
    /// Devices the policy asks to quarantine (drained by the pipeline).
    auto: Vec<(DeviceIdx, Anomaly, String)>,
}

impl SentinelGlue {
    pub fn new(territory: Arc<Territory>, config: Config) -> Self {
        SentinelGlue {
            detect: Sentinel::new(Arc::clone(&territory), config),
            territory,
            home_site: SiteIdx(0),
            quarantined: FxHashMap::default(),
            history: Vec::new(),
            findings: Vec::new(),
            auto: Vec::new(),
        }
    }

    pub fn set_last_heard(&mut self, d: DeviceIdx, t: Timestamp) {
        self.detect.set_last_heard(d, t);
    }

    pub fn set_known_bad(&mut self, source: &str, networks: Vec<beffroi_sentinel::KnownBad>) {
        self.detect.set_known_bad(source, networks);
    }

    pub fn known_bad_count(&self) -> usize {
        self.detect.known_bad_count()
    }

    pub fn set_config(&mut self, config: Config) {
        self.detect.set_config(config);
    }

    pub fn is_quarantined(&self, d: DeviceIdx) -> bool {
        self.quarantined.contains_key(&d)
    }

    /// The devices in quarantine, with the act that put each there.
    pub fn quarantined(&self) -> impl Iterator<Item = &QuarantineAct> {
        self.quarantined.values()
    }

    /// The latest quarantine acts, oldest first.
    pub fn history(&self) -> &[QuarantineAct] {
        &self.history
    }

    /// Applies a quarantine act (an analyst's, the policy's, or one read back at start).
    pub fn apply(&mut self, act: QuarantineAct) -> Result<(), QuarantineError> {
        let id = || self.territory.device(act.device).id.to_string();
        if act.quarantined {
            if self.quarantined.contains_key(&act.device) {
                return Err(QuarantineError::AlreadyQuarantined(id()));
            }
            self.quarantined.insert(act.device, act.clone());
        } else if self.quarantined.remove(&act.device).is_none() {
            return Err(QuarantineError::NotQuarantined(id()));
        }
        self.history.push(act);
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
        Ok(())
    }

    /// One message from a device (flood detection).
    pub fn on_message(&mut self, d: DeviceIdx, received: Timestamp) {
        self.detect.on_message(d, received, &mut self.findings);
    }

    pub fn on_observation(&mut self, o: &Observation, received: Timestamp) {
        self.detect.on_observation(
            o.device,
            o.field,
            &o.value,
            o.time,
            received,
            &mut self.findings,
        );
    }

    /// A reading at or before the last evaluated one of its series (a copy, or late): only
    /// its timing (clock skew, liveness) is weighed.
    pub fn on_timing(&mut self, o: &Observation, received: Timestamp) {
        self.detect
            .on_timing(o.device, o.time, received, &mut self.findings);
    }

    pub fn on_signal(&mut self, s: &SecuritySignal, at: Timestamp) {
        self.detect.on_signal(s, at, &mut self.findings);
    }

    pub fn on_tick(&mut self, now: Timestamp) {
        self.detect.on_tick(now, &mut self.findings);
    }

    /// Follows the operational conditions (for the cyber view of silence).
    pub fn on_alarm(&mut self, a: &Alarm) {
        if &*a.category == CATEGORY || a.silence {
            return;
        }
        match a.kind {
            AlarmKind::Raise => self.detect.on_operational(a.site, true),
            AlarmKind::Clear => self.detect.on_operational(a.site, false),
            AlarmKind::Escalate => {}
        }
    }

    /// Turns pending findings into alarms; devices the policy quarantines are queued for
    /// [`SentinelGlue::take_auto_quarantine`].
    pub fn drain(&mut self, alarms: &mut Vec<Alarm>) {
        for f in std::mem::take(&mut self.findings) {
            // A finding about no registered device is placed at the first site; a
            // territory without sites has nowhere to put it (it is still counted).
            if matches!(f.subject, Subject::Other(_)) && self.territory.sites.is_empty() {
                continue;
            }
            if let Subject::Device(d) = f.subject
                && self.detect.config().auto_quarantine.contains(&f.anomaly)
                && !self.quarantined.contains_key(&d)
                && !self.auto.iter().any(|(x, _, _)| *x == d)
            {
                self.auto.push((d, f.anomaly, f.evidence.clone()));
            }
            alarms.push(self.alarm(&f));
        }
    }

    pub fn take_auto_quarantine(&mut self) -> Vec<(DeviceIdx, Anomaly, String)> {
        std::mem::take(&mut self.auto)
    }

    fn alarm(&self, f: &Finding) -> Alarm {
        let t = &self.territory;
        let rule = f.anomaly.rule_id();
        let (key, site, device, who) = match &f.subject {
            Subject::Device(d) => {
                let dev = t.device(*d);
                (
                    DedupKey::for_device(&rule, &dev.id),
                    dev.site,
                    Some(*d),
                    dev.id.to_string(),
                )
            }
            Subject::Other(name) => (
                DedupKey::for_device(&rule, name),
                self.home_site,
                None,
                name.to_string(),
            ),
        };
        let tech = f.anomaly.technique();
        let evidence = beffroi_core::Message::new("cyber.evidence")
            .with(
                "evidence",
                beffroi_core::Param::Message(Box::new(f.message.clone())),
            )
            .with("technique", beffroi_core::Param::Text(tech.id.into()))
            .with("name", beffroi_core::Param::Text(tech.name.into()));
        Alarm {
            kind: AlarmKind::Raise,
            key,
            rule: rule.into(),
            category: CATEGORY.into(),
            severity: f.anomaly.severity(),
            title: title_message(f.anomaly, &who, device.is_some()).english(),
            site,
            device,
            at: f.at,
            evidence: evidence.english(),
            auto_resolve: false,
            silence: false,
            carries: Vec::new(),
            evidence_message: Some(evidence),
            trigger: None,
        }
    }
}

/// The title of a cyber incident as a message: its anomaly's title and whom it is about.
fn title_message(anomaly: Anomaly, who: &str, is_device: bool) -> beffroi_core::Message {
    let subject = if is_device {
        beffroi_core::Param::Device(who.into())
    } else {
        beffroi_core::Param::Text(beffroi_core::SafeText::redacting(who))
    };
    beffroi_core::Message::new(anomaly.title_code()).with("subject", subject)
}

/// The title of a cyber incident as a message, rebuilt from its rule and key (the title is
/// its English rendering): `None` for another incident, or a title that is not that
/// rendering (written by another version).
pub fn incident_title_message(
    territory: &Territory,
    rule: &str,
    key: &DedupKey,
    title: &str,
) -> Option<beffroi_core::Message> {
    let anomaly = Anomaly::from_rule_id(rule)?;
    let who = key.as_str().split_once("@device:")?.1;
    let m = title_message(anomaly, who, territory.device_id(who).is_some());
    (m.english() == title).then_some(m)
}

/// The technique suggested by a cyber incident's rule (for the API and console).
pub fn technique_of_rule(rule: &str) -> Option<Technique> {
    Anomaly::from_rule_id(rule).map(Anomaly::technique)
}

// ---- security.toml -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    silence_factor: Option<Spanned<f64>>,
    neighbour_radius_m: Option<Spanned<f64>>,
    flood_per_minute: Option<Spanned<f64>>,
    flood_burst: Option<Spanned<f64>>,
    skew_ahead: Option<Spanned<String>>,
    skew_behind: Option<Spanned<String>>,
    auth_failures: Option<Spanned<i64>>,
    auth_window: Option<Spanned<String>>,
    #[serde(default)]
    auto_quarantine: Vec<Spanned<String>>,
    #[serde(default)]
    disabled: Vec<Spanned<String>>,
    #[serde(default)]
    flood: Vec<Spanned<FloodRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FloodRaw {
    kind: String,
    per_minute: f64,
    burst: f64,
}

/// Parses the deployment's optional `security.toml` (every key optional; defaults in
/// `docs/security-detection.md`); reports every error with its file, line and field.
pub fn parse_config(src: &SourceFile, territory: &Territory) -> Result<Config, ConfigErrors> {
    let file: File = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut cfg = Config::default();
    let mut err = |at: usize, field: &str, msg: String| {
        errors.push(ConfigError::new(
            src.path.clone(),
            Some(src.line(at)),
            Some(field),
            msg,
        ))
    };
    let mut positive = |v: &Option<Spanned<f64>>, field: &str, slot: &mut f64| {
        if let Some(v) = v {
            let x = *v.get_ref();
            if x > 0.0 && x.is_finite() {
                *slot = x;
            } else {
                err(
                    v.span().start,
                    field,
                    format!("{x} must be a positive number"),
                );
            }
        }
    };
    positive(
        &file.silence_factor,
        "silence_factor",
        &mut cfg.silence_factor,
    );
    positive(
        &file.neighbour_radius_m,
        "neighbour_radius_m",
        &mut cfg.neighbour_radius_m,
    );
    positive(
        &file.flood_per_minute,
        "flood_per_minute",
        &mut cfg.flood_per_minute,
    );
    positive(&file.flood_burst, "flood_burst", &mut cfg.flood_burst);
    let mut dur = |v: &Option<Spanned<String>>, field: &str, slot: &mut Duration| {
        if let Some(v) = v {
            match parse_duration(v.get_ref()) {
                Ok(d) if d.millis() > 0 => *slot = d,
                Ok(_) => err(v.span().start, field, "must be above zero".into()),
                Err(e) => err(v.span().start, field, e),
            }
        }
    };
    dur(&file.skew_ahead, "skew_ahead", &mut cfg.skew_ahead);
    dur(&file.skew_behind, "skew_behind", &mut cfg.skew_behind);
    dur(&file.auth_window, "auth_window", &mut cfg.auth_window);
    if let Some(n) = &file.auth_failures {
        match usize::try_from(*n.get_ref()) {
            Ok(x) if x >= 2 => cfg.auth_failures = x,
            _ => err(
                n.span().start,
                "auth_failures",
                format!("{} must be at least 2", n.get_ref()),
            ),
        }
    }
    let mut anomalies = |list: &[Spanned<String>], field: &str, set: &mut FxHashSet<Anomaly>| {
        for a in list {
            match Anomaly::parse(a.get_ref()) {
                Some(x) => {
                    set.insert(x);
                }
                None => err(
                    a.span().start,
                    field,
                    format!(
                        "unknown anomaly `{}` (one of {})",
                        a.get_ref(),
                        Anomaly::ALL.map(Anomaly::as_str).join(", ")
                    ),
                ),
            }
        }
    };
    anomalies(
        &file.auto_quarantine,
        "auto_quarantine",
        &mut cfg.auto_quarantine,
    );
    anomalies(&file.disabled, "disabled", &mut cfg.disabled);
    for f in &file.flood {
        let at = f.span().start;
        let f = f.get_ref();
        if territory.kinds.iter().all(|k| *k.id != *f.kind) {
            err(at, "flood.kind", format!("unknown kind `{}`", f.kind));
        } else if !(f.per_minute > 0.0 && f.burst >= 1.0) {
            err(
                at,
                "flood.per_minute",
                "per_minute must be above zero and burst at least 1".into(),
            );
        } else {
            cfg.flood_per_kind
                .insert(f.kind.as_str().into(), (f.per_minute, f.burst));
        }
    }
    errors.into_result(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;
    use crate::metrics::Metrics;
    use crate::pipeline::{Output, Pipeline, PipelineConfig};
    use beffroi_core::Status;
    use beffroi_core::territory::fixture;
    use beffroi_wire::Format;

    const T0: Timestamp = Timestamp(1_795_694_400_000);

    fn pipeline(cfg: Config) -> (Pipeline, Arc<Territory>) {
        let mut t = fixture::small();
        t.kinds[0].fields[0].max_step_per_minute = Some(0.5);
        let t = Arc::new(t);
        let p = Pipeline::new(
            PipelineConfig {
                security: cfg,
                ..PipelineConfig::new(
                    Arc::clone(&t),
                    Arc::new(beffroi_rules::RuleSet::default()),
                    Vec::new(),
                    Arc::new(Metrics::new()),
                )
            },
            T0,
        );
        (p, t)
    }

    fn send(p: &mut Pipeline, dev: &str, level: f64, secs: i64, out: &mut Output) {
        let at = T0.plus(Duration::from_secs(secs));
        let body = format!(r#"{{"time": {}, "values": {{"level_m": {level}}}}}"#, at.0);
        p.ingest(
            Source::HTTP,
            Format::Json,
            Some(dev),
            body.as_bytes(),
            at,
            out,
        );
    }

    #[test]
    fn an_unknown_device_raises_one_cyber_incident_with_its_technique() {
        let (mut p, _) = pipeline(Config::default());
        let mut out = Output::default();
        send(&mut p, "ghost-gauge", 1.0, 0, &mut out);
        send(&mut p, "ghost-gauge", 1.0, 60, &mut out);
        let cyber: Vec<_> = p
            .book()
            .active()
            .filter(|i| &*i.category == "cyber")
            .collect();
        assert_eq!(
            cyber.len(),
            1,
            "deduplicated per subject × anomaly: {cyber:?}"
        );
        assert_eq!(&*cyber[0].rule, "cyber-unregistered");
        // Grouped per publisher; an unauthenticated path names none.
        assert_eq!(
            cyber[0].key.as_str(),
            "cyber-unregistered@device:unknown-publisher"
        );
        assert!(!cyber[0].title.contains("ghost"), "{}", cyber[0].title);
        assert!(
            !cyber[0].evidence.contains("ghost"),
            "{}",
            cyber[0].evidence
        );
        assert_eq!(
            cyber[0].alarm_count, 1,
            "a repeated finding joins the open incident"
        );
        assert!(cyber[0].condition_active);
        assert!(cyber[0].evidence.contains("T0856"), "{}", cyber[0].evidence);
        assert_eq!(
            technique_of_rule(&cyber[0].rule).map(|t| t.id),
            Some("T0856")
        );
    }

    #[test]
    fn the_policy_quarantines_a_device_on_a_chosen_anomaly() {
        let mut cfg = Config::default();
        cfg.auto_quarantine.insert(Anomaly::ImpossibleJump);
        let (mut p, t) = pipeline(cfg);
        let g1 = t.device_id("g1").expect("g1");
        let mut out = Output::default();
        send(&mut p, "g1", 1.0, 0, &mut out);
        send(&mut p, "g1", 1.1, 120, &mut out);
        assert!(!p.is_quarantined(g1));
        send(&mut p, "g1", 6.0, 180, &mut out);
        assert!(p.is_quarantined(g1));
        let act = out.batch.quarantine.last().expect("logged");
        assert_eq!(&*act.actor, "policy:impossible_jump");
        assert!(act.reason.contains("6"), "{}", act.reason);
        let inc = p
            .book()
            .active()
            .find(|i| &*i.rule == "cyber-impossible_jump")
            .expect("cyber incident");
        assert_eq!(inc.status, Status::New);
        // Later observations are stored, marked.
        let mut out = Output::default();
        send(&mut p, "g1", 6.0, 240, &mut out);
        assert!(out.batch.observations.iter().all(|o| o.quarantined));
        // Release is explicit, with a reason; the next observations are not marked.
        assert_eq!(
            p.release("g1", "ana", " ", T0, &mut out),
            Err(QuarantineError::EmptyReason)
        );
        p.release("g1", "ana", "checked on site", T0, &mut out)
            .expect("release");
        let mut out = Output::default();
        send(&mut p, "g1", 6.0, 300, &mut out);
        assert!(out.batch.observations.iter().all(|o| !o.quarantined));
    }

    #[test]
    fn security_toml_sets_thresholds_and_names_bad_lines() {
        let t = fixture::small();
        let src = SourceFile::new(
            "security.toml",
            "auth_failures = 8\nauth_window = \"2m\"\nauto_quarantine = [\"impossible_jump\"]\n[[flood]]\nkind = \"level\"\nper_minute = 2.0\nburst = 5.0\n",
        );
        let cfg = parse_config(&src, &t).expect("valid");
        assert_eq!(cfg.auth_failures, 8);
        assert_eq!(cfg.auth_window, Duration::from_mins(2));
        assert!(cfg.auto_quarantine.contains(&Anomaly::ImpossibleJump));
        assert_eq!(cfg.flood_per_kind.get("level"), Some(&(2.0, 5.0)));
        let bad = SourceFile::new(
            "security.toml",
            "silence_factor = 1.0\nauto_quarantine = [\"nope\"]\n[[flood]]\nkind = \"ghost\"\nper_minute = 1.0\nburst = 1.0\n",
        );
        let e = parse_config(&bad, &t).expect_err("invalid");
        let shown = e
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            shown.contains("security.toml:2") && shown.contains("nope"),
            "{shown}"
        );
        assert!(
            shown.contains("security.toml:3") && shown.contains("ghost"),
            "{shown}"
        );
    }
}
