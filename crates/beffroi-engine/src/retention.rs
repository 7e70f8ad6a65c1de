//! Retention by data category, legal holds and a person's requests: the engine's side.
//!
//! The engine turns the deployment's [`PrivacyPolicy`] into a [`PurgePlan`] (one cutoff
//! per field of every kind, per category of record) on a schedule of its own clock; the
//! store writer thread carries the plan out in bounded transactions
//! ([`crate::Store::purge`]) and the engine audits what was removed (`privacy.purge`).
//!
//! Semantics ([ADR 0016](../../../docs/adr/0016-retention-by-category-and-legal-hold.md)):
//! - observations by their field's category: technical → `technical_observations` (or the
//!   `retention` override of `beffroi.toml`), personal/sensitive → the activity's
//!   retention when shorter, else the category's;
//! - `identities` rows whose `last_seen` is past the longest personal limit;
//! - closed incidents and crises in two stages: past the personal limit their personal parts
//!   are redacted (pseudonyms → `[effacé]`, people → their role), past the technical limit
//!   they are deleted; open ones are never touched;
//! - rejections and the quarantine log by the technical limit (the last act of each device
//!   is kept: it decides whether the device is quarantined);
//! - files under `exports/` by the personal limit;
//! - an incident under legal hold, its log, the pseudonyms it mentions and the observations
//!   of its device in its window (opened − 1 h … closed) are untouched while the hold runs.

use beffroi_core::SafeText;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use beffroi_core::territory::DataCategory;
use beffroi_core::{Duration, IncidentId, PrivacyPolicy, Territory, Timestamp};

/// What replaces a pseudonym in redacted text.
pub const ERASED: &str = "[effacé]";

/// How far before an incident's opening its device's observations belong to it.
pub const INCIDENT_WINDOW_BEFORE: Duration = Duration::from_mins(60);

/// Longest legal hold.
pub const MAX_HOLD: Duration = beffroi_core::privacy::days(366);

/// Shortest justification of a legal hold, in characters.
pub const MIN_HOLD_JUSTIFICATION: usize = 20;

/// The cutoffs of one purge run: rows older than their cutoff go.
#[derive(Clone, Debug)]
pub struct PurgePlan {
    /// The engine clock when the plan was made.
    pub now: Timestamp,
    /// Category and cutoff of each field, indexed by kind then field.
    pub fields: Vec<Vec<(DataCategory, Timestamp)>>,
    /// Cutoff of observations whose device or field the territory no longer has: the most
    /// recent cutoff of all (their category is unknown, so the strictest applies).
    pub unknown_field: Timestamp,
    /// Incidents, crises and their logs: redacted when closed before this.
    pub personal: Timestamp,
    /// Incidents of the devices in `sensitive_devices`: redacted when closed before this
    /// (the sensitive limit, when shorter than the personal one).
    pub sensitive_records: Timestamp,
    /// Devices whose kind has a sensitive field.
    pub sensitive_devices: Vec<String>,
    /// Incidents, crises, logs, rejections, quarantine acts: deleted before this.
    pub technical: Timestamp,
    /// `identities` rows whose `last_seen` is before this (the longest personal limit).
    pub identities: Timestamp,
    /// Files under `exports/` (a person's access packages) written before this.
    pub exports: Timestamp,
    /// Staff account → role, to replace people by their role in redacted records.
    pub roles: Arc<HashMap<String, String>>,
    /// The key epochs still alive, when known: `identities` rows of an older epoch that is
    /// not among them (its key was destroyed: they can never be opened again) are deleted.
    pub live_epochs: Option<Vec<u32>>,
}

impl PurgePlan {
    /// The plan at `now` for `policy`; `technical_observations` overrides the policy's
    /// retention of technical observations (the `retention` key of `beffroi.toml`).
    pub fn new(
        territory: &Territory,
        policy: &PrivacyPolicy,
        technical_observations: Option<Duration>,
        roles: Arc<HashMap<String, String>>,
        now: Timestamp,
    ) -> PurgePlan {
        let r = &policy.retention;
        let tech_obs = technical_observations.unwrap_or(r.technical_observations);
        let mut newest = now.minus(tech_obs);
        let fields: Vec<Vec<(DataCategory, Timestamp)>> = territory
            .kinds
            .iter()
            .map(|k| {
                k.fields
                    .iter()
                    .map(|f| {
                        let keep = match f.category {
                            DataCategory::Technical => tech_obs,
                            c => policy
                                .retention_for(c, f.purpose.as_deref().or(k.purpose.as_deref())),
                        };
                        let cut = now.minus(keep);
                        newest = newest.max(cut);
                        (f.category, cut)
                    })
                    .collect()
            })
            .collect();
        let longest_personal = r.personal.max(r.sensitive);
        let sensitive_devices = territory
            .devices
            .iter()
            .filter(|d| {
                territory
                    .kind(d.kind)
                    .fields
                    .iter()
                    .any(|f| f.category == DataCategory::Sensitive)
            })
            .map(|d| d.id.to_string())
            .collect();
        PurgePlan {
            now,
            fields,
            unknown_field: newest,
            personal: now.minus(r.personal),
            sensitive_records: now.minus(r.sensitive.min(r.personal)),
            sensitive_devices,
            technical: now.minus(r.technical),
            identities: now.minus(longest_personal),
            exports: now.minus(r.personal),
            roles,
            live_epochs: None,
        }
    }

    /// The role standing for `actor` (`user:NAME` or a bare name) in redacted records.
    pub fn role_of(&self, actor: &str) -> String {
        let name = actor.strip_prefix("user:").unwrap_or(actor);
        if name.starts_with('[') {
            // Already a role (redaction is idempotent).
            return name.to_string();
        }
        match self.roles.get(name) {
            Some(role) => format!("[{role}]"),
            None => "[agent]".to_string(),
        }
    }
}

/// Rows removed and redacted, per store and category.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// (store, category) → rows deleted.
    pub removed: BTreeMap<(&'static str, &'static str), u64>,
    /// (store, category) → rows whose personal parts were redacted.
    pub redacted: BTreeMap<(&'static str, &'static str), u64>,
    /// Incidents left untouched because of a legal hold.
    pub held_incidents: Vec<IncidentId>,
}

impl PurgeReport {
    pub fn remove(&mut self, store: &'static str, category: DataCategory, n: u64) {
        if n > 0 {
            *self.removed.entry((store, category.as_str())).or_default() += n;
        }
    }
    pub fn redact(&mut self, store: &'static str, category: DataCategory, n: u64) {
        if n > 0 {
            *self.redacted.entry((store, category.as_str())).or_default() += n;
        }
    }
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.redacted.is_empty()
    }
    pub fn removed_from(&self, store: &str) -> u64 {
        self.removed
            .iter()
            .filter(|((s, _), _)| *s == store)
            .map(|(_, n)| n)
            .sum()
    }
    pub fn removed_of(&self, store: &str, category: DataCategory) -> u64 {
        self.removed
            .get(&(store_key(store), category.as_str()))
            .copied()
            .unwrap_or(0)
    }
    pub fn redacted_from(&self, store: &str) -> u64 {
        self.redacted
            .iter()
            .filter(|((s, _), _)| *s == store)
            .map(|(_, n)| n)
            .sum()
    }
    /// The audit detail: counts and cutoffs, never a value.
    pub fn audit_detail(&self, plan: &PurgePlan) -> serde_json::Value {
        let group = |m: &BTreeMap<(&'static str, &'static str), u64>| {
            let mut out = serde_json::Map::new();
            for ((store, cat), n) in m {
                let e = out
                    .entry(store.to_string())
                    .or_insert_with(|| serde_json::json!({}));
                e[*cat] = serde_json::json!(n);
            }
            serde_json::Value::Object(out)
        };
        serde_json::json!({
            "removed": group(&self.removed),
            "redacted": group(&self.redacted),
            "held_incidents": self.held_incidents.iter().map(|i| i.0).collect::<Vec<_>>(),
            "clock_ms": plan.now.0,
            "cutoffs_ms": {
                "personal_records": plan.personal.0,
                "sensitive_records": plan.sensitive_records.0,
                "technical_records": plan.technical.0,
                "identities": plan.identities.0,
                "exports": plan.exports.0,
                "observations_unknown_field": plan.unknown_field.0,
            },
        })
    }
}

/// The stores' names, interned (report keys are `&'static str`).
pub const STORES: &[&str] = &[
    "observations",
    "identities",
    "incidents",
    "incident_log",
    "crises",
    "crisis_log",
    "rejections",
    "quarantine_log",
    "legal_holds",
    "exports",
    "handover_notes",
    "shelf_log",
];

fn store_key(s: &str) -> &'static str {
    STORES.iter().find(|x| **x == s).copied().unwrap_or("")
}

/// A legal hold on an incident: neither stage of the purge touches it while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegalHold {
    pub incident: IncidentId,
    pub justification: SafeText,
    pub until: Timestamp,
    pub set_by: String,
    pub set_at: Timestamp,
    pub released_at: Option<Timestamp>,
    pub released_by: Option<String>,
}

impl LegalHold {
    /// In force at `now`: not released and not past its end.
    pub fn holds_at(&self, now: Timestamp) -> bool {
        self.released_at.is_none() && now < self.until
    }
}

/// What an erasure removed and redacted, and what a hold kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasureReport {
    pub observations: u64,
    pub identities: u64,
    pub incidents_redacted: u64,
    pub log_entries_redacted: u64,
    pub crisis_entries_redacted: u64,
    /// Other texts that held the person's pseudonym: technical text values, crisis titles,
    /// summaries and role holders, event names, hold justifications, quarantine reasons.
    pub other_texts_redacted: u64,
    /// Incidents mentioning the person left as they are because of a legal hold.
    pub held_incidents: Vec<IncidentId>,
}

/// An observation held under a person's pseudonym.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectObservation {
    pub device: String,
    pub field: String,
    pub time: Timestamp,
    pub pseudonym: String,
}

/// An incident that mentions a person, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectIncident {
    pub id: IncidentId,
    pub status: String,
    pub opened_at: Timestamp,
    /// `title`, `evidence`, `log`.
    pub found_in: Vec<&'static str>,
    pub log_entries: Vec<(Timestamp, String)>,
}

/// What is held under a person's pseudonyms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectData {
    pub observations: Vec<SubjectObservation>,
    /// Total observations (the list is capped).
    pub observation_count: u64,
    pub incidents: Vec<SubjectIncident>,
    pub crisis_entries: u64,
    /// `identities` rows (sealed values) under these pseudonyms.
    pub identities: u64,
}

/// Rows and the oldest row of one store in one category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRows {
    pub store: &'static str,
    pub category: DataCategory,
    pub rows: u64,
    pub oldest: Option<Timestamp>,
}

/// The last purge run, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct PurgeRun {
    pub at: Timestamp,
    /// The audit detail of the run (counts and cutoffs).
    pub detail: serde_json::Value,
}

/// A privacy act carried out by the writer thread, in order with the writes.
#[derive(Clone, Debug)]
pub enum PrivacyCommand {
    /// Run a purge now (the schedule runs one every `purge_every`).
    Purge,
    SetHold(LegalHold),
    ReleaseHold {
        incident: IncidentId,
        by: String,
    },
    Erase {
        pseudonyms: Vec<String>,
    },
    /// Writes a person's access package under `exports/`; answers its file name.
    Export {
        json: String,
    },
}

/// What a [`PrivacyCommand`] did.
#[derive(Clone, Debug)]
pub enum PrivacyOutcome {
    Purged(PurgeReport),
    HoldSet,
    /// Whether a hold was in force.
    HoldReleased(bool),
    Erased(ErasureReport),
    Exported(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("the change could not be stored: {0}")]
    Store(String),
    #[error("no export directory is configured")]
    NoExportDir,
    #[error("the export could not be written: {0}")]
    Export(String),
    #[error("the engine is shutting down")]
    Closed,
}

/// The crisis with its personal parts redacted as the store does at the personal limit.
pub fn redact_crisis(
    plan: &PurgePlan,
    c: &beffroi_core::crisis::Crisis,
) -> beffroi_core::crisis::Crisis {
    use beffroi_core::Actor;
    let actor = |a: &Actor| match a {
        Actor::User(u) => Actor::User(plan.role_of(u).into()),
        other => other.clone(),
    };
    let mut c = c.clone();
    c.title = SafeText::redacting(&redact_pseudonyms(&c.title).0);
    c.opened_by = actor(&c.opened_by);
    c.closed_by = c.closed_by.as_ref().map(actor);
    c.summary = c
        .summary
        .as_deref()
        .map(|s| SafeText::redacting(&redact_pseudonyms(s).0));
    for r in &mut c.roles {
        if r.holder.is_some() {
            r.holder = Some(ERASED.into());
        }
    }
    for e in &mut c.log {
        e.actor = actor(&e.actor);
        let text = SafeText::redacting(&redact_pseudonyms(&e.text).0);
        if text != e.text {
            // The message may carry what was redacted: the English text stands alone.
            e.message = None;
        }
        e.text = text;
    }
    c
}

/// Writes a person's access package under `dir` as `subject-<ms>-<n>.json` (mode 0600);
/// returns the file name. The time in the name is what the purge goes by.
pub fn write_export(dir: &std::path::Path, now: Timestamp, json: &str) -> std::io::Result<String> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    for n in 0..1000 {
        let name = format!("subject-{}-{n}.json", now.0);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(dir.join(&name)) {
            Ok(mut f) => {
                f.write_all(json.as_bytes())?;
                f.sync_all()?;
                return Ok(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "too many exports at the same millisecond",
    ))
}

/// Deletes the access packages under `dir` written before `before`; returns how many.
pub fn purge_exports(dir: &std::path::Path, before: Timestamp) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(ms) = name
            .to_str()
            .and_then(|s| s.strip_prefix("subject-"))
            .and_then(|s| s.split('-').next())
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        if ms < before.0 {
            match std::fs::remove_file(e.path()) {
                Ok(()) => n += 1,
                Err(err) => tracing::warn!(error = %err, "export not purged"),
            }
        }
    }
    n
}

/// Replaces every pseudonym in `text` by [`ERASED`]; returns the text and how many.
pub fn redact_pseudonyms(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    let mut rest = text;
    while !rest.is_empty() {
        // A token: a maximal run of the characters a pseudonym is made of.
        let start = rest
            .char_indices()
            .find(|(_, c)| is_token_char(*c))
            .map_or(rest.len(), |(i, _)| i);
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .char_indices()
            .find(|(_, c)| !is_token_char(*c))
            .map_or(rest.len(), |(i, _)| i);
        let token = &rest[..end];
        if beffroi_privacy::parse_pseudonym(token).is_some() {
            out.push_str(ERASED);
            n += 1;
        } else {
            out.push_str(token);
        }
        rest = &rest[end..];
    }
    (out, n)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':'
}

/// The pseudonyms mentioned in `text`.
pub fn pseudonyms_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_token_char(c))
        .filter(|t| beffroi_privacy::parse_pseudonym(t).is_some())
}

/// Replaces each of `pseudonyms` in `text` by [`ERASED`]; `None` when none occurs.
pub fn erase_pseudonyms(text: &str, pseudonyms: &[String]) -> Option<String> {
    let mut changed = false;
    let mut out = text.to_string();
    for p in pseudonyms {
        if out.contains(p.as_str()) {
            out = out.replace(p.as_str(), ERASED);
            changed = true;
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "plate:1:k7f3qx2mn4pz7qab3c4d";

    #[test]
    fn redaction_replaces_pseudonyms_only() {
        let text = format!("Véhicule {P} vu à 14:02, badge:2:abc (pas un pseudonyme).");
        let (out, n) = redact_pseudonyms(&text);
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "Véhicule [effacé] vu à 14:02, badge:2:abc (pas un pseudonyme)."
        );
        assert_eq!(pseudonyms_in(&text).collect::<Vec<_>>(), vec![P]);
    }

    #[test]
    fn access_packages_are_purged_by_the_time_in_their_name() {
        let dir = std::env::temp_dir().join(format!("beffroi-exports-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let old = write_export(&dir, Timestamp(1_000), "{}").expect("write");
        let again = write_export(&dir, Timestamp(1_000), "{}").expect("write");
        assert_ne!(
            old, again,
            "two packages in the same millisecond do not collide"
        );
        let new = write_export(&dir, Timestamp(5_000), "{}").expect("write");
        std::fs::write(dir.join("notes.txt"), "not ours").expect("write");
        assert_eq!(
            purge_exports(&dir, Timestamp(1_000)),
            0,
            "not before its time"
        );
        assert_eq!(purge_exports(&dir, Timestamp(1_001)), 2);
        assert!(dir.join(&new).exists());
        assert!(
            dir.join("notes.txt").exists(),
            "files Beffroi did not write are left alone"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(&new))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn plan_gives_each_category_its_limit() {
        use beffroi_core::territory::fixture;
        let t = fixture::small();
        let p = PrivacyPolicy::unconfigured();
        let now = Timestamp(1_000 * 86_400_000);
        let plan = PurgePlan::new(&t, &p, None, Arc::default(), now);
        assert_eq!(plan.personal, now.minus(p.retention.personal));
        assert_eq!(plan.technical, now.minus(p.retention.technical));
        assert_eq!(plan.identities, now.minus(p.retention.personal));
        let with_override = PurgePlan::new(
            &t,
            &p,
            Some(beffroi_core::privacy::days(3)),
            Arc::default(),
            now,
        );
        assert!(
            with_override
                .fields
                .iter()
                .flatten()
                .all(|(c, cut)| *c != DataCategory::Technical
                    || *cut == now.minus(beffroi_core::privacy::days(3)))
        );
    }
}
