//! The command post's deployment files: `units.toml` (the units that can be dispatched),
//! `escalation.toml` (reminder and escalation delays per severity) and `crisis.toml` (the
//! roles of the communal safeguard plan). Each parser reports every error with its file,
//! line and field, like the territory and procedures loaders.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use beffroi_core::crisis::{Crisis, RoleSpec};
use beffroi_core::incident::{EscalationDelays, EscalationPolicy};
use beffroi_core::{Severity, Territory, Unit, UnitKind, UnitSpec, UnitStatus};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile, parse_duration};
use serde::Deserialize;
use toml::Spanned;

/// The operations configuration of a deployment; every part is optional (empty).
#[derive(Clone, Debug, Default)]
pub struct Operations {
    pub units: Vec<UnitSpec>,
    pub escalation: EscalationPolicy,
    pub roles: Vec<RoleSpec>,
    /// Which incidents are one real event (`situations.toml`); read at start only.
    pub families: Vec<beffroi_core::Family>,
    /// How long an alarm may be shelved (`[shelving]` of `escalation.toml`).
    pub shelving: beffroi_core::shelving::ShelvingPolicy,
}

/// What the API reads of the operations state: published by the writer thread after the
/// commit that made it durable.
#[derive(Clone, Debug, Default)]
pub struct OpsSnapshot {
    pub units: Vec<Unit>,
    /// Every crisis, oldest first.
    pub crises: Vec<Arc<Crisis>>,
    /// Active situations and those closed in the last day, in id order. Readers see
    /// them through [`beffroi_core::Situation::view`].
    pub situations: Vec<Arc<beffroi_core::Situation>>,
    pub roles: Arc<[RoleSpec]>,
    /// Devices in quarantine, with the act that put each there (by device index).
    pub quarantined: Vec<crate::sentinel::QuarantineAct>,
    /// The newest handover notes, oldest first.
    pub notes: Vec<beffroi_core::handover::HandoverNote>,
    /// The alarms on the shelf, in key order.
    pub shelves: Vec<beffroi_core::shelving::Shelf>,
    pub shelving: beffroi_core::shelving::ShelvingPolicy,
}

impl OpsSnapshot {
    pub fn unit(&self, id: &str) -> Option<&Unit> {
        self.units.iter().find(|u| &*u.spec.id == id)
    }
    pub fn crisis(&self, id: u64) -> Option<&Arc<Crisis>> {
        self.crises.iter().find(|c| c.id.0 == id)
    }
    pub fn situation(&self, id: u64) -> Option<&Arc<beffroi_core::Situation>> {
        self.situations
            .binary_search_by_key(&id, |s| s.id.0)
            .ok()
            .map(|i| &self.situations[i])
    }
}

// ---- units.toml ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitsFile {
    #[serde(default)]
    unit: Vec<Spanned<RawUnit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnit {
    id: String,
    name: String,
    kind: String,
    #[serde(default)]
    communes: Vec<String>,
    #[serde(default)]
    status: Option<String>,
}

/// Parses `units.toml`; commune ids are checked against the territory.
pub fn parse_units(src: &SourceFile, territory: &Territory) -> Result<Vec<UnitSpec>, ConfigErrors> {
    let file: UnitsFile = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for u in &file.unit {
        let line = Some(src.line(u.span().start));
        let u = u.get_ref();
        let mut err = |field: &str, msg: String| {
            errors.push(ConfigError::new(src.path.clone(), line, Some(field), msg))
        };
        let mut ok = true;
        if u.id.trim().is_empty() || u.id.contains(char::is_whitespace) {
            err(
                "id",
                format!("`{}` is not a valid unit id (no spaces)", u.id),
            );
            ok = false;
        } else if !seen.insert(u.id.clone()) {
            err("id", format!("unit `{}` is already defined", u.id));
            ok = false;
        }
        if u.name.trim().is_empty() {
            err("name", "must not be empty".into());
            ok = false;
        }
        let kind = UnitKind::parse(&u.kind);
        if kind.is_none() {
            err(
                "kind",
                format!("`{}`: expected police, technical, video or other", u.kind),
            );
        }
        let initial = match u.status.as_deref() {
            None => Some(UnitStatus::Available),
            Some(s) => {
                let st = UnitStatus::parse(s);
                if st.is_none() {
                    err(
                        "status",
                        format!("`{s}`: expected available, engaged or off_duty"),
                    );
                }
                st
            }
        };
        let mut communes = Vec::new();
        for c in &u.communes {
            match territory.commune_id(c) {
                Some(idx) => communes.push(idx),
                None => {
                    err("communes", format!("no commune `{c}` in the territory"));
                    ok = false;
                }
            }
        }
        if let (true, Some(kind), Some(initial)) = (ok, kind, initial) {
            out.push(UnitSpec {
                id: u.id.as_str().into(),
                name: u.name.as_str().into(),
                kind,
                communes,
                initial,
            });
        }
    }
    errors.into_result(out)
}

// ---- escalation.toml -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalationFile {
    #[serde(default)]
    severity: HashMap<String, Spanned<RawDelays>>,
    /// Read by [`parse_shelving`].
    #[serde(default)]
    shelving: Option<Spanned<RawShelving>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShelving {
    max_duration: Option<String>,
}

/// Parses the `[shelving]` table of `escalation.toml`: `max_duration = "8h"`, how long an
/// operator may shelve an alarm (default 8 hours, at most 24 hours).
pub fn parse_shelving(
    src: &SourceFile,
) -> Result<beffroi_core::shelving::ShelvingPolicy, ConfigErrors> {
    let file: EscalationFile =
        toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut policy = beffroi_core::shelving::ShelvingPolicy::default();
    if let Some(raw) = &file.shelving
        && let Some(text) = &raw.get_ref().max_duration
    {
        let line = Some(src.line(raw.span().start));
        let mut err = |msg: String| {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some("shelving.max_duration"),
                msg,
            ))
        };
        match parse_duration(text) {
            Ok(d) if d.millis() > 0 && d <= beffroi_core::Duration::from_mins(24 * 60) => {
                policy.max_duration = d;
            }
            Ok(_) => err("must be longer than zero and at most 24h".into()),
            Err(e) => err(e),
        }
    }
    errors.into_result(policy)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelays {
    remind_after: Option<String>,
    escalate_after: Option<String>,
}

/// Parses `escalation.toml`: `[severity.critical] remind_after = "2m" escalate_after = "5m"`.
pub fn parse_escalation(src: &SourceFile) -> Result<EscalationPolicy, ConfigErrors> {
    let file: EscalationFile =
        toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut policy = EscalationPolicy::default();
    let mut keys: Vec<_> = file.severity.iter().collect();
    keys.sort_by_key(|(_, v)| v.span().start);
    for (name, raw) in keys {
        let line = Some(src.line(raw.span().start));
        let Some(sev) = Severity::parse(name) else {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some(&format!("severity.{name}")),
                "expected critical, major, minor or info",
            ));
            continue;
        };
        let raw = raw.get_ref();
        let mut duration = |field: &str, v: &Option<String>| match v {
            None => None,
            Some(s) => match parse_duration(s) {
                Ok(d) if d.millis() > 0 => Some(d),
                Ok(_) => {
                    errors.push(ConfigError::new(
                        src.path.clone(),
                        line,
                        Some(&format!("severity.{name}.{field}")),
                        "must be longer than zero",
                    ));
                    None
                }
                Err(e) => {
                    errors.push(ConfigError::new(
                        src.path.clone(),
                        line,
                        Some(&format!("severity.{name}.{field}")),
                        e,
                    ));
                    None
                }
            },
        };
        let d = EscalationDelays {
            remind_after: duration("remind_after", &raw.remind_after),
            escalate_after: duration("escalate_after", &raw.escalate_after),
        };
        if let (Some(r), Some(e)) = (d.remind_after, d.escalate_after)
            && r > e
        {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some(&format!("severity.{name}.remind_after")),
                "the reminder must come before the escalation",
            ));
        }
        policy.delays[sev as usize] = d;
    }
    errors.into_result(policy)
}

// ---- crisis.toml -----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CrisisFile {
    #[serde(default)]
    role: Vec<Spanned<RawRole>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    id: String,
    name: String,
    name_en: String,
}

/// Parses `crisis.toml`: the roles of the safeguard plan, in display order.
pub fn parse_crisis(src: &SourceFile) -> Result<Vec<RoleSpec>, ConfigErrors> {
    let file: CrisisFile =
        toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in &file.role {
        let line = Some(src.line(r.span().start));
        let r = r.get_ref();
        if r.id.trim().is_empty() || !seen.insert(r.id.clone()) {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some("id"),
                format!("role id `{}` is empty or already defined", r.id),
            ));
            continue;
        }
        if r.name.trim().is_empty() || r.name_en.trim().is_empty() {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some("name"),
                "name and name_en must not be empty",
            ));
            continue;
        }
        out.push(RoleSpec {
            id: r.id.as_str().into(),
            name: r.name.as_str().into(),
            name_en: r.name_en.as_str().into(),
        });
    }
    errors.into_result(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::Duration;
    use beffroi_core::territory::fixture;

    #[test]
    fn units_parse_and_every_error_has_its_line_and_field() {
        let t = fixture::small();
        let commune = &*t.communes[0].id;
        let ok = parse_units(
            &SourceFile::new(
                "units.toml",
                format!(
                    "[[unit]]\nid = \"pm-1\"\nname = \"PM 1\"\nkind = \"police\"\ncommunes = [\"{commune}\"]\n\n[[unit]]\nid = \"voirie\"\nname = \"Voirie\"\nkind = \"technical\"\nstatus = \"off_duty\"\n"
                ),
            ),
            &t,
        )
        .expect("valid");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].communes.len(), 1);
        assert_eq!(ok[1].initial, UnitStatus::OffDuty);
        let err = parse_units(
            &SourceFile::new(
                "units.toml",
                "[[unit]]\nid = \"a\"\nname = \"A\"\nkind = \"tank\"\n\n[[unit]]\nid = \"a\"\nname = \"A\"\nkind = \"police\"\ncommunes = [\"nowhere\"]\nstatus = \"asleep\"\n",
            ),
            &t,
        )
        .expect_err("invalid");
        let got: Vec<(Option<usize>, Option<&str>)> =
            err.iter().map(|e| (e.line, e.field.as_deref())).collect();
        assert_eq!(
            got,
            [
                (Some(1), Some("kind")),
                (Some(6), Some("id")),
                (Some(6), Some("status")),
                (Some(6), Some("communes")),
            ]
        );
    }

    #[test]
    fn escalation_delays_per_severity() {
        let p = parse_escalation(&SourceFile::new(
            "escalation.toml",
            "[severity.critical]\nremind_after = \"2m\"\nescalate_after = \"5m\"\n\n[severity.info]\nremind_after = \"1h\"\n",
        ))
        .expect("valid");
        let c = p.for_severity(Severity::Critical);
        assert_eq!(c.remind_after, Some(Duration::from_mins(2)));
        assert_eq!(c.escalate_after, Some(Duration::from_mins(5)));
        assert_eq!(p.for_severity(Severity::Info).escalate_after, None);
        assert_eq!(p.for_severity(Severity::Major), EscalationDelays::default());
        let err = parse_escalation(&SourceFile::new(
            "escalation.toml",
            "[severity.major]\nremind_after = \"10m\"\nescalate_after = \"5m\"\n\n[severity.huge]\nremind_after = \"1m\"\n\n[severity.minor]\nescalate_after = \"later\"\n",
        ))
        .expect_err("invalid");
        let got: Vec<(Option<usize>, Option<&str>)> =
            err.iter().map(|e| (e.line, e.field.as_deref())).collect();
        assert_eq!(
            got,
            [
                (Some(1), Some("severity.major.remind_after")),
                (Some(5), Some("severity.huge")),
                (Some(8), Some("severity.minor.escalate_after")),
            ]
        );
    }

    #[test]
    fn shelving_is_bounded_and_defaults_to_a_shift() {
        use beffroi_core::shelving::DEFAULT_MAX_SHELVING;
        let none = parse_shelving(&SourceFile::new("escalation.toml", "")).expect("valid");
        assert_eq!(none.max_duration, DEFAULT_MAX_SHELVING);
        let two = parse_shelving(&SourceFile::new(
            "escalation.toml",
            "[severity.critical]\nremind_after = \"2m\"\n\n[shelving]\nmax_duration = \"2h\"\n",
        ))
        .expect("valid");
        assert_eq!(two.max_duration, Duration::from_mins(120));
        // The escalation delays read the same file.
        assert!(
            parse_escalation(&SourceFile::new(
                "escalation.toml",
                "[shelving]\nmax_duration = \"2h\"\n"
            ))
            .is_ok()
        );
        let err = parse_shelving(&SourceFile::new(
            "escalation.toml",
            "\n[shelving]\nmax_duration = \"3d\"\n",
        ))
        .expect_err("too long");
        assert_eq!(
            (err.0[0].line, err.0[0].field.as_deref()),
            (Some(2), Some("shelving.max_duration"))
        );
    }

    #[test]
    fn crisis_roles() {
        let ok = parse_crisis(&SourceFile::new(
            "crisis.toml",
            "[[role]]\nid = \"dos\"\nname = \"DOS\"\nname_en = \"Director\"\n",
        ))
        .expect("valid");
        assert_eq!(&*ok[0].name_en, "Director");
        let err = parse_crisis(&SourceFile::new(
            "crisis.toml",
            "[[role]]\nid = \"dos\"\nname = \"DOS\"\nname_en = \"D\"\n\n[[role]]\nid = \"dos\"\nname = \"x\"\nname_en = \"y\"\n",
        ))
        .expect_err("duplicate");
        assert_eq!(err.0[0].line, Some(6));
    }
}
