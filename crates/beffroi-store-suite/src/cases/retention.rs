//! Retention by data category on the simulated clock: each category
//! is purged exactly at its limit (a minute before: still there; a minute after: gone), every
//! purge is in the audit log with its counts, and a legal hold keeps its incident (and its
//! device's observations in its window) until its end date, then the incident is purged.
//!
//! The engine runs for real (runner, writer thread, the backend's store); the purges are
//! asked for at chosen instants of the simulated clock.

use beffroi_engine::store::prelude::*;
use std::sync::{Arc, Mutex};

use beffroi_core::privacy::days;
use beffroi_core::territory::{DataCategory, FieldSpec, FieldType, Identifier, fixture};
use beffroi_core::{
    Actor, AuditRecord, AuditSink, DedupKey, Device, Duration, FieldIdx, Incident, IncidentChange,
    IncidentId, LogEntry, Point, PrivacyPolicy, Severity, SimClock, Status, Territory, Timestamp,
    Value,
};
use beffroi_engine::retention::{LegalHold, PrivacyCommand, PrivacyOutcome, PurgeReport};
use beffroi_engine::runner::{EngineAudit, EngineConfig, EngineHandle};
use beffroi_engine::store::Visibility;
use beffroi_engine::store::{StoredObservation, StoredRejection};
use beffroi_engine::{Source, WriteBatch};
use beffroi_wire::RejectReason;

use crate::Backend;

/// 2026-01-01T00:00:00Z: when everything below was recorded.
const B: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

/// Pseudonyms, as the pseudonymisation stage stores them.
const BADGE_PURGED: &str = "badge:1:aaaaaaaaaaaaaaaaaaaa";
const BADGE_HELD: &str = "badge:1:bbbbbbbbbbbbbbbbbbbb";
const PLATE_SENSITIVE: &str = "plate:1:cccccccccccccccccccc";

#[derive(Default)]
struct Recorded(Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorded {
    fn record(&self, r: AuditRecord) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

/// The fixture plus a sensitive field on the alarm kind and a second alarm device `a2`.
fn territory() -> Territory {
    let mut t = fixture::small();
    let alarm = t.device(t.device_id("a1").expect("fixture")).kind;
    t.kinds[alarm.get()].fields.push(FieldSpec {
        identifier: Some(Identifier::LicencePlate),
        category: DataCategory::Sensitive,
        ..FieldSpec::technical("offender_plate", FieldType::Text)
    });
    // A technical text (a free note the panel sends): identifiers in it are scrubbed at
    // ingest, so a pseudonym can sit inside it.
    t.kinds[alarm.get()]
        .fields
        .push(FieldSpec::technical("note", FieldType::Text));
    let s1 = t.site_id("s1").expect("fixture");
    t.add_device(Device {
        id: "a2".into(),
        kind: alarm,
        site: s1,
        position: t.site(s1).position,
        dev_eui: None,
    })
    .expect("fresh id");
    t
}

fn policy() -> PrivacyPolicy {
    let mut p = PrivacyPolicy::unconfigured();
    // Four different limits, so that one retention for all cannot pass.
    p.retention.technical = days(365);
    p.retention.personal = days(30);
    p.retention.sensitive = days(7);
    p.retention.technical_observations = days(90);
    p
}

fn obs(t: &Territory, device: &str, field: usize, value: Value, at: i64) -> StoredObservation {
    StoredObservation {
        device: t.device_id(device).expect("device"),
        field: FieldIdx(field as u16),
        value,
        time: Timestamp(at),
        received: Timestamp(at),
        trust: beffroi_core::Trust::Unauthenticated,
        quarantined: false,
    }
}

fn incident(t: &Territory, id: u64, device: &str, evidence: &str) -> IncidentChange {
    let at = Timestamp(B - 10 * MIN);
    let incident = Incident {
        id: IncidentId(id),
        key: DedupKey(format!("forced@device:{device}:{id}").into()),
        rule: "forced".into(),
        category: "intrusion".into(),
        severity: Severity::Major,
        status: Status::Closed,
        title: beffroi_core::safe_format!("Porte forcée — {evidence}"),
        commune: t.commune_id("c1").expect("fixture"),
        site: t.site_id("s1").expect("fixture"),
        device: t.device_id(device),
        position: Point::new(5.0, 47.0),
        opened_at: at,
        updated_at: Timestamp(B),
        acknowledged_at: Some(at),
        resolved_at: Some(Timestamp(B)),
        closed_at: Some(Timestamp(B)),
        owner: Some("ana".into()),
        condition_active: false,
        alarm_count: 1,
        evidence: beffroi_core::safe_format!("badge={evidence}"),
        sop_title: None,
        sop: Vec::new(),
        reminded_at: None,
        escalated_at: None,
        trigger: None,
        peak: None,
        current: None,
        current_at: None,
        reopened_at: None,
    };
    IncidentChange {
        incident,
        created: true,
        log: vec![{
            // A line that says a message carrying the personal value, as rule evidence can.
            let m = beffroi_core::Message::new("incident.condition_cleared").with(
                "evidence",
                beffroi_core::Param::Text(beffroi_core::safe_format!(
                    "Badge {evidence} vu à l'entrée"
                )),
            );
            LogEntry {
                at: Timestamp(B - 5 * MIN),
                actor: Actor::User("ana".into()),
                action: "condition_cleared".into(),
                detail: m.english(),
                message: Some(m),
            }
        }],
        pseudonyms: vec![],
    }
}

struct Rig {
    engine: beffroi_engine::runner::Engine,
    reader: Arc<dyn StoreReader>,
    clock: Arc<SimClock>,
    audit: Arc<Recorded>,
    territory: Arc<Territory>,
}

/// The identity rows the pseudonymisation stage writes for `pseudonym` (a dummy sealed
/// value: these tests never open it).
fn identity(pseudonym: &str, epoch: u32, at: i64) -> beffroi_engine::store::StoredIdentity {
    beffroi_engine::store::StoredIdentity {
        sealed: beffroi_privacy::Sealed {
            pseudonym: beffroi_privacy::Pseudonym(pseudonym.into()),
            identifier: Identifier::Badge,
            epoch,
            ciphertext: vec![0],
        },
        seen: Timestamp(at),
    }
}

/// Calls the store from the test's async code: store calls block (an adapter may even
/// refuse to run inside a runtime's context, as the `postgres` client does), so they leave
/// the runtime's context first, as the engine's `spawn_blocking` does.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Runs an engine test on a runtime of its own (the cases are plain functions).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn metric(text: &str, store: &str, category: &str, action: &str) -> Option<f64> {
    let needle = format!(
        "beffroi_privacy_purged_rows_total{{store=\"{store}\",category=\"{category}\",action=\"{action}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

impl Rig {
    fn handle(&self) -> &EngineHandle {
        &self.engine.handle
    }

    /// Sets the clock to `B + at` and purges; returns the report.
    async fn purge_at(&self, at: Duration) -> PurgeReport {
        self.clock.set(Timestamp(B).plus(at));
        match self.handle().privacy(PrivacyCommand::Purge).await {
            Ok(PrivacyOutcome::Purged(r)) => r,
            other => panic!("purge: {other:?}"),
        }
    }

    fn values(&self, device: &str) -> Vec<String> {
        let d = self.territory.device_id(device).expect("device");
        blocking(|| self.reader.observations(d, Timestamp(0), 100))
            .expect("read")
            .into_iter()
            .map(|o| {
                let field =
                    &self.territory.kind(self.territory.device(d).kind).fields[o.field.get()].name;
                format!("{field}={:?}", o.value)
            })
            .collect()
    }

    fn has_value(&self, device: &str, needle: &str) -> bool {
        self.values(device).iter().any(|v| v.contains(needle))
    }

    fn incident(&self, id: u64) -> Option<(Incident, Vec<LogEntry>)> {
        blocking(|| {
            self.reader
                .incident_with_log(IncidentId(id), &Visibility::everything())
        })
        .expect("read")
    }

    fn identities(&self) -> u64 {
        let (rows, _) = blocking(|| self.reader.retention_status()).expect("status");
        rows.iter()
            .find(|r| r.store == "identities")
            .map_or(0, |r| r.rows)
    }

    fn last_purge_audit(&self) -> serde_json::Value {
        let records = self.audit.0.lock().unwrap_or_else(|p| p.into_inner());
        let r = records
            .iter()
            .rev()
            .find(|r| r.action == "privacy.purge")
            .expect("a privacy.purge record");
        assert_eq!(r.actor, "system");
        serde_json::from_str(&r.detail).expect("json detail")
    }

    fn purge_audits(&self) -> usize {
        let records = self.audit.0.lock().unwrap_or_else(|p| p.into_inner());
        records
            .iter()
            .filter(|r| r.action == "privacy.purge")
            .count()
    }
}

async fn rig(b: &dyn Backend) -> Rig {
    let t = Arc::new(territory());
    let crate::Opened {
        mut store, reader, ..
    } = blocking(|| b.open_in(Arc::clone(&t)));
    let num = |v: f64| Value::Number(v);
    let text = |s: &str| Value::Text(s.into());
    let batch = WriteBatch {
        observations: vec![
            obs(&t, "g1", 0, num(1.5), B),                         // technical
            obs(&t, "a2", 1, text(BADGE_PURGED), B),               // personal
            obs(&t, "a2", 2, text(PLATE_SENSITIVE), B + 1),        // sensitive
            obs(&t, "a1", 1, text(BADGE_HELD), B - 5 * MIN),       // in the held incident's window
            obs(&t, "a1", 0, Value::Bool(true), B - 2 * 60 * MIN), // before the window
        ],
        rejections: vec![StoredRejection {
            at: Timestamp(B),
            source: Source::HTTP.as_str().into(),
            reason: RejectReason::UnknownDevice,
            detail: "device `zz` is not in the territory".into(),
        }],
        incidents: vec![
            // On a device without sensitive fields: redacted at the personal limit.
            incident(&t, 1, "g2", BADGE_PURGED),
            incident(&t, 2, "a1", BADGE_HELD),
            // On a device with a sensitive field: redacted at the sensitive limit.
            incident(&t, 4, "a2", PLATE_SENSITIVE),
        ],
        // The identities rows the pseudonymisation stage would have written.
        identities: vec![identity(BADGE_PURGED, 1, B), identity(BADGE_HELD, 1, B)],
        ..WriteBatch::default()
    };
    blocking(|| store.write(&batch)).expect("seed");

    let clock = Arc::new(SimClock::new(Timestamp(B)));
    let audit = Arc::new(Recorded::default());
    let rules = beffroi_rules::parse(&beffroi_territory::SourceFile::new("rules.toml", ""), &t)
        .expect("rules");
    let cfg = EngineConfig {
        privacy: Arc::new(policy()),
        purge_every: Some(days(1)),
        audit: Some(EngineAudit(Arc::clone(&audit) as Arc<dyn AuditSink>)),
        staff_roles: Arc::new([("ana".to_string(), "operator".to_string())].into()),
        operations: beffroi_engine::operations::Operations {
            roles: vec![beffroi_core::crisis::RoleSpec {
                id: "dos".into(),
                name: "Directeur des opérations de secours".into(),
                name_en: "Director of rescue operations".into(),
            }],
            ..Default::default()
        },
        ..EngineConfig::default()
    };
    let engine = beffroi_engine::runner::start(
        Arc::clone(&t),
        Arc::new(rules),
        Vec::new(),
        store,
        Arc::clone(&clock) as Arc<dyn beffroi_core::Clock>,
        Arc::new(beffroi_engine::metrics::Metrics::new()),
        cfg,
    )
    .await
    .expect("engine");
    Rig {
        engine,
        reader,
        clock,
        audit,
        territory: t,
    }
}

pub fn each_category_is_purged_at_its_limit_and_a_hold_keeps_its_incident(b: &dyn Backend) {
    block_on(each_category_is_purged_at_its_limit(b));
}

async fn each_category_is_purged_at_its_limit(b: &dyn Backend) {
    let r = rig(b).await;
    assert_eq!(
        r.handle().next_purge_at(),
        Some(Timestamp(B).plus(days(1))),
        "the purge is scheduled on the engine clock"
    );

    // Legal hold on incident 2 until day 400, set on day 1.
    r.clock.set(Timestamp(B).plus(days(1)));
    let hold = LegalHold {
        incident: IncidentId(2),
        justification: "Réquisition judiciaire n° 2026/123 du parquet".into(),
        until: Timestamp(B).plus(days(400)),
        set_by: "dpo".into(),
        set_at: Timestamp(B).plus(days(1)),
        released_at: None,
        released_by: None,
    };
    r.handle()
        .privacy(PrivacyCommand::SetHold(hold))
        .await
        .expect("hold");

    // Sensitive: 7 days.
    let rep = r.purge_at(Duration(days(7).0 - MIN)).await;
    assert!(rep.is_empty(), "nothing is due a minute before: {rep:?}");
    assert!(
        r.incident(4)
            .expect("kept")
            .0
            .evidence
            .contains(PLATE_SENSITIVE)
    );
    assert!(r.has_value("a2", PLATE_SENSITIVE));
    let rep = r.purge_at(Duration(days(7).0 + MIN)).await;
    assert!(
        !r.has_value("a2", PLATE_SENSITIVE),
        "sensitive gone after 7 days"
    );
    assert!(r.has_value("a2", BADGE_PURGED), "personal still there");
    assert_eq!(rep.removed_of("observations", DataCategory::Sensitive), 1);
    assert_eq!(rep.removed_from("observations"), 1, "{rep:?}");
    assert_eq!(
        rep.redacted_from("incidents"),
        1,
        "incident 4, of a sensitive device"
    );
    assert_eq!(r.incident(4).expect("kept").0.evidence, "badge=[effacé]");
    assert!(
        r.incident(1)
            .expect("kept")
            .0
            .evidence
            .contains(BADGE_PURGED)
    );
    let audit = r.last_purge_audit();
    assert_eq!(audit["removed"]["observations"]["sensitive"], 1, "{audit}");
    assert!(
        !audit.to_string().contains(PLATE_SENSITIVE),
        "the audit names counts, never values"
    );

    // Personal: 30 days — observations, identities, and the first stage of incidents.
    let rep = r.purge_at(Duration(days(30).0 - MIN)).await;
    assert!(rep.is_empty(), "{rep:?}");
    assert!(r.has_value("a2", BADGE_PURGED));
    assert_eq!(r.identities(), 2);
    let (i1, _) = r.incident(1).expect("incident 1");
    assert!(i1.evidence.contains(BADGE_PURGED));
    let rep = r.purge_at(Duration(days(30).0 + MIN)).await;
    assert!(
        !r.has_value("a2", BADGE_PURGED),
        "personal gone after 30 days"
    );
    assert!(
        r.has_value("g1", "1.5"),
        "technical observation still there"
    );
    assert_eq!(r.identities(), 1, "the held incident's identity stays");
    let (i1, log1) = r.incident(1).expect("redacted, not deleted");
    assert_eq!(i1.evidence, "badge=[effacé]");
    assert!(!i1.title.contains(BADGE_PURGED));
    assert_eq!(
        i1.owner.as_deref(),
        Some("[operator]"),
        "people replaced by their role"
    );
    assert_eq!(log1[0].detail, "Badge [effacé] vu à l'entrée");
    assert_eq!(log1[0].message, None, "a redacted line keeps no message");
    assert_eq!(log1[0].actor, Actor::User("[operator]".into()));
    let (i2, log2) = r.incident(2).expect("held");
    assert!(
        i2.evidence.contains(BADGE_HELD),
        "a held incident is not redacted"
    );
    assert!(log2[0].detail.contains(BADGE_HELD));
    assert!(log2[0].message.is_some(), "a held line keeps its message");
    assert!(
        r.has_value("a1", BADGE_HELD),
        "observation in the held window kept"
    );
    assert!(r.has_value("a1", "on="), "technical: kept until 90 days");
    assert_eq!(rep.removed_of("observations", DataCategory::Personal), 1);
    assert_eq!(rep.removed_of("identities", DataCategory::Personal), 1);
    assert_eq!(rep.redacted_from("incidents"), 1);
    assert_eq!(rep.held_incidents, vec![IncidentId(2)]);
    let audit = r.last_purge_audit();
    assert_eq!(audit["removed"]["identities"]["personal"], 1, "{audit}");
    assert_eq!(audit["redacted"]["incidents"]["personal"], 1, "{audit}");
    assert_eq!(audit["held_incidents"][0], 2, "{audit}");

    // Technical observations: 90 days.
    let rep = r.purge_at(Duration(days(90).0 - MIN)).await;
    assert!(r.has_value("g1", "1.5"));
    // a1's reading two hours before B is past 90 days already, and before the held window.
    assert!(!r.has_value("a1", "on="), "outside the held window: purged");
    assert_eq!(
        rep.removed_of("observations", DataCategory::Technical),
        1,
        "{rep:?}"
    );
    let rep = r.purge_at(Duration(days(90).0 + MIN)).await;
    assert!(
        !r.has_value("g1", "1.5"),
        "technical observation gone after 90 days"
    );
    assert!(
        r.has_value("a1", BADGE_HELD),
        "inside the held window: kept"
    );
    assert_eq!(
        rep.removed_of("observations", DataCategory::Technical),
        1,
        "{rep:?}"
    );

    // Technical records: 365 days — the redacted incident and the rejection are deleted,
    // the held incident is not.
    let _ = r.purge_at(Duration(days(365).0 - MIN)).await;
    assert!(r.incident(1).is_some());
    assert_eq!(blocking(|| r.reader.rejections(10)).expect("read").len(), 1);
    let rep = r.purge_at(Duration(days(365).0 + MIN)).await;
    assert!(
        r.incident(1).is_none(),
        "incident deleted at the technical limit"
    );
    assert!(
        blocking(|| r.reader.rejections(10))
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        rep.removed_of("incidents", DataCategory::Technical),
        2,
        "1 and 4"
    );
    assert_eq!(rep.removed_of("incident_log", DataCategory::Technical), 2);
    assert_eq!(rep.removed_of("rejections", DataCategory::Technical), 1);
    let (i2, _) = r.incident(2).expect("held until day 400");
    assert!(i2.evidence.contains(BADGE_HELD));
    assert_eq!(
        blocking(|| r.reader.holds(Timestamp(B).plus(days(366)), false))
            .expect("holds")
            .len(),
        1
    );

    // The hold ends on day 400: the incident goes through both stages at once.
    let _ = r.purge_at(Duration(days(400).0 - MIN)).await;
    assert!(
        r.incident(2).is_some(),
        "still held a minute before its end"
    );
    let rep = r.purge_at(Duration(days(400).0 + MIN)).await;
    assert!(r.incident(2).is_none(), "purged once the hold has ended");
    assert!(!r.has_value("a1", BADGE_HELD));
    assert_eq!(r.identities(), 0);
    assert!(rep.held_incidents.is_empty());
    assert!(
        blocking(|| r.reader.holds(Timestamp(B).plus(days(401)), false))
            .expect("holds")
            .is_empty()
    );

    // Counted per store, category and action.
    let text = r.handle().metrics.encode();
    assert_eq!(
        metric(&text, "observations", "sensitive", "removed"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "incidents", "personal", "redacted"),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "incidents", "technical", "removed"),
        Some(3.0)
    );

    // Every purge that removed something is in the audit log; forced runs always are.
    assert_eq!(r.purge_audits(), 10);
    let (_, last) = blocking(|| r.reader.retention_status()).expect("status");
    assert_eq!(
        last.expect("last purge recorded").at,
        Timestamp(B).plus(Duration(days(400).0 + MIN))
    );
    let Rig { engine, .. } = r;
    engine.shutdown().await;
}

/// A person's erasure: their observations and identity go, incidents and logs keep a
/// `[effacé]` in their place, an open incident stays erased after the engine writes it
/// again, and an incident under legal hold is left as it is and reported.
pub fn erasure_reaches_every_store_except_a_held_incident(b: &dyn Backend) {
    block_on(erasure_reaches_every_store(b));
}

async fn erasure_reaches_every_store(b: &dyn Backend) {
    let r = rig(b).await;
    let t = Arc::clone(&r.territory);
    // Incident 3, open, mentions the person too; incident 2 (mentioning BADGE_HELD) is held.
    let mut open = incident(&t, 3, "a2", BADGE_PURGED);
    open.incident.status = Status::New;
    open.incident.closed_at = None;
    open.incident.resolved_at = None;
    open.incident.acknowledged_at = None;
    open.incident.condition_active = true;
    let hold = LegalHold {
        incident: IncidentId(2),
        justification: "Réquisition judiciaire n° 2026/123 du parquet".into(),
        until: Timestamp(B).plus(days(100)),
        set_by: "dpo".into(),
        set_at: Timestamp(B),
        released_at: None,
        released_by: None,
    };
    r.handle()
        .privacy(PrivacyCommand::SetHold(hold))
        .await
        .expect("hold");
    // The open incident goes through a restart so that the engine holds it in its book.
    let Rig {
        engine,
        reader,
        clock,
        audit,
        territory,
    } = r;
    engine.shutdown().await;
    let store = blocking(|| {
        let mut store = b.open_in(Arc::clone(&territory)).store;
        store
            .write(&WriteBatch {
                incidents: vec![open],
                ..WriteBatch::default()
            })
            .expect("open incident");
        store
    });
    let rules = beffroi_rules::parse(
        &beffroi_territory::SourceFile::new("rules.toml", ""),
        &territory,
    )
    .expect("rules");
    let engine = beffroi_engine::runner::start(
        Arc::clone(&territory),
        Arc::new(rules),
        Vec::new(),
        store,
        Arc::clone(&clock) as Arc<dyn beffroi_core::Clock>,
        Arc::new(beffroi_engine::metrics::Metrics::new()),
        EngineConfig {
            privacy: Arc::new(policy()),
            purge_every: None,
            ..EngineConfig::default()
        },
    )
    .await
    .expect("engine");
    let r = Rig {
        engine,
        reader,
        clock,
        audit,
        territory,
    };

    // The person in other texts too: a technical note, a crisis title, a hold's
    // justification (of another incident), a quarantine reason.
    let sql = format!(
        "INSERT INTO observations (device, field, time, vkey, value_text, received, trust) \
         VALUES ('a2', 'note', {t}, 0, 'rappeler {BADGE_PURGED} demain', {t}, 'unauthenticated');
         INSERT INTO crises (id, kind, title, communes, level, opened_at, opened_by, roles, incidents) \
         VALUES (77, 'other', 'Fugue de {BADGE_PURGED}', '[]', 1, {B}, 'ana', '[]', '[]');
         INSERT INTO legal_holds (incident_id, justification, until, set_by, set_at) \
         VALUES (99, 'Plainte visant {BADGE_PURGED}, réf. 2026/9', {until}, 'dpo', {B});
         INSERT INTO quarantine_log (device, quarantined, actor, reason, at) \
         VALUES ('a2', TRUE, 'ana', 'badge cloné {BADGE_PURGED}', {B});",
        t = B + 2,
        until = B + 10 * 86_400_000,
    );
    blocking(|| b.execute(&sql));
    let person = vec![BADGE_PURGED.to_string(), BADGE_HELD.to_string()];
    let found = blocking(|| r.reader.subject_data(&person, 100)).expect("search");
    assert_eq!(found.observation_count, 2, "{found:?}");
    assert_eq!(found.identities, 2);
    let ids: Vec<u64> = found.incidents.iter().map(|i| i.id.0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(
        found.incidents[0].found_in,
        vec!["title", "evidence", "log"]
    );

    let report = match r
        .handle()
        .privacy(PrivacyCommand::Erase {
            pseudonyms: person.clone(),
        })
        .await
    {
        Ok(PrivacyOutcome::Erased(rep)) => rep,
        other => panic!("erase: {other:?}"),
    };
    assert_eq!(
        report.observations, 1,
        "the held window's observation stays: {report:?}"
    );
    assert_eq!(report.identities, 1, "the held incident's identity stays");
    assert_eq!(report.incidents_redacted, 2, "incidents 1 and 3");
    assert_eq!(report.held_incidents, vec![IncidentId(2)]);
    assert_eq!(
        report.other_texts_redacted, 4,
        "the note, the crisis title, the hold's justification, the quarantine reason: {report:?}"
    );
    assert!(!r.has_value("a2", BADGE_PURGED));
    assert!(r.has_value("a1", BADGE_HELD));
    // Gone from the files too (where the backend can promise it): not left in the
    // database's free pages, nor in old frames of its write-ahead log. Read with the live
    // key, either would give the value back.
    for file in b.erased_files() {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes
                .windows(BADGE_PURGED.len())
                .any(|w| w == BADGE_PURGED.as_bytes()),
            "{} still holds the erased value",
            file.display()
        );
    }
    let (i1, log1) = r.incident(1).expect("kept, redacted");
    assert_eq!(i1.evidence, "badge=[effacé]");
    assert_eq!(log1[0].detail, "Badge [effacé] vu à l'entrée");
    assert_eq!(log1[0].message, None, "an erased line keeps no message");
    assert!(r.incident(2).expect("held").0.evidence.contains(BADGE_HELD));

    // The engine writes the open incident again: it stays erased.
    r.handle()
        .act(
            IncidentId(3),
            beffroi_core::IncidentAction::Comment("vu".into()),
            Actor::User("ana".into()),
        )
        .await
        .expect("comment");
    let (i3, _) = r.incident(3).expect("open incident");
    assert_eq!(i3.evidence, "badge=[effacé]");
    assert!(!i3.title.contains(BADGE_PURGED));
    let after = blocking(|| r.reader.subject_data(&person[..1], 100)).expect("search");
    assert_eq!(after.observation_count, 0);
    assert!(after.incidents.is_empty(), "{after:?}");
    let Rig { engine, .. } = r;
    engine.shutdown().await;
}

/// A closed crisis loses its people at the personal limit (in the engine's memory too) and
/// is deleted at the technical one.
pub fn a_closed_crisis_is_redacted_then_deleted(b: &dyn Backend) {
    block_on(closed_crisis_redacted_then_deleted(b));
}

async fn closed_crisis_redacted_then_deleted(b: &dyn Backend) {
    use beffroi_core::crisis::{CrisisCommand, CrisisKind, CrisisOpening};
    use beffroi_engine::runner::{OpsCommand, OpsOutcome};
    let r = rig(b).await;
    let ana = Actor::User("ana".into());
    let c = match r
        .handle()
        .ops_command(
            OpsCommand::OpenCrisis(CrisisOpening {
                kind: CrisisKind::Flood,
                title: "Crue de l'Ouche".into(),
                communes: Vec::new(),
                level: 2,
            }),
            ana.clone(),
        )
        .await
        .expect("open")
    {
        OpsOutcome::Crisis(c) => c.id,
        other => panic!("{other:?}"),
    };
    for cmd in [
        CrisisCommand::Log(beffroi_core::safe_format!(
            "Véhicule {PLATE_SENSITIVE} bloqué rue Monge"
        )),
        CrisisCommand::Role {
            role: "dos".into(),
            holder: Some("Mme la maire".into()),
        },
        CrisisCommand::Close {
            summary: "Décrue".into(),
        },
    ] {
        r.handle()
            .ops_command(OpsCommand::Crisis { id: c, cmd }, ana.clone())
            .await
            .expect("crisis command");
    }
    let crisis = |r: &Rig| r.handle().ops().crises.iter().find(|x| x.id == c).cloned();
    let rep = r.purge_at(Duration(days(30).0 - MIN)).await;
    assert_eq!(rep.redacted_from("crises"), 0);
    let rep = r.purge_at(Duration(days(30).0 + MIN)).await;
    assert_eq!(rep.redacted_from("crises"), 1, "{rep:?}");
    let mem = crisis(&r).expect("kept as a record");
    assert!(
        mem.log.iter().all(|e| !e.text.contains(PLATE_SENSITIVE)),
        "{:?}",
        mem.log
    );
    assert!(mem.log.iter().any(|e| e.text.contains("[effacé]")));
    assert_eq!(mem.opened_by, Actor::User("[operator]".into()));
    assert_eq!(mem.roles[0].holder.as_deref(), Some("[effacé]"));
    let rep = r.purge_at(Duration(days(365).0 + MIN)).await;
    assert_eq!(
        rep.removed_of("crises", DataCategory::Technical),
        1,
        "{rep:?}"
    );
    assert!(crisis(&r).is_none(), "forgotten in memory too");
    let Rig { engine, .. } = r;
    engine.shutdown().await;
}

/// The sealed values of a destroyed key epoch can never be opened again: the purge deletes
/// them whatever their age; a newer epoch than the engine knows of is left alone.
pub fn identities_of_destroyed_epochs_are_deleted(b: &dyn Backend) {
    let t = Arc::new(territory());
    let crate::Opened { mut store, .. } = b.open_in(Arc::clone(&t));
    store
        .write(&WriteBatch {
            identities: [1, 2, 3, 5]
                .into_iter()
                .map(|epoch| identity(&format!("badge:{epoch}:aaaaaaaaaaaaaaaaaaaa"), epoch, B))
                .collect(),
            ..WriteBatch::default()
        })
        .expect("identities");
    let mut plan = beffroi_engine::retention::PurgePlan::new(
        &t,
        &policy(),
        None,
        Arc::default(),
        Timestamp(B),
    );
    plan.live_epochs = Some(vec![2, 4]);
    let rep = store.purge(&plan).expect("purge");
    assert_eq!(
        rep.removed_of("identities", DataCategory::Personal),
        2,
        "{rep:?}"
    );
    let left = b.query_i64("SELECT epoch FROM identities ORDER BY epoch");
    assert_eq!(
        left,
        vec![2, 5],
        "1 and 3 destroyed; 5 is newer than the engine knows"
    );
}

/// Handover notes may hold pseudonyms: the purge deletes those older than the personal limit
/// with their reads; the shelving log keeps the last act of each alarm whatever its age.
pub fn old_handover_notes_and_shelving_acts_are_purged(b: &dyn Backend) {
    let t = Arc::new(territory());
    let crate::Opened { mut store, .. } = b.open_in(Arc::clone(&t));
    let plan = beffroi_engine::retention::PurgePlan::new(
        &t,
        &policy(),
        None,
        Arc::default(),
        Timestamp(B),
    );
    let (old, recent) = (plan.personal.0.min(plan.technical.0) - 1, B - 1);
    for (id, at) in [(1, old), (2, recent)] {
        b.execute(&format!(
            "INSERT INTO handover_notes (id, author, at, communes, text) \
             VALUES ({id}, 'op', {at}, '', 'n');
             INSERT INTO handover_note_reads (note_id, reader, at) VALUES ({id}, 'sup', {at});"
        ));
    }
    for (key, change, at) in [
        ("k1", "shelved", old),
        ("k1", "unshelved", old),
        ("k2", "shelved", old),
    ] {
        b.execute(&format!(
            "INSERT INTO shelf_log (dedup_key, incident_id, commune, category, change, actor, \
             reason, at, until) VALUES ('{key}', 1, 'c', 'flood', '{change}', 'user:op', 'r', \
             {at}, NULL)"
        ));
    }
    let rep = store.purge(&plan).expect("purge");
    assert_eq!(
        rep.removed_of("handover_notes", DataCategory::Personal),
        1,
        "{rep:?}"
    );
    let ids = |sql: &str| b.query_i64(sql);
    assert_eq!(ids("SELECT id FROM handover_notes"), [2]);
    assert_eq!(ids("SELECT note_id FROM handover_note_reads"), [2]);
    // k1's shelving goes; its unshelving (k1's last act) and k2's shelving stay.
    assert_eq!(ids("SELECT seq FROM shelf_log ORDER BY seq"), [2, 3]);
}

/// A legal hold supersedes the incident's hold in force, a release ends the one in force
/// (once), and the listings say which are in force, newest first.
pub fn legal_holds_supersede_release_and_list(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let hold = |incident: u64, set_at: i64, until: i64| LegalHold {
        incident: IncidentId(incident),
        justification: "Réquisition judiciaire n° 2026/123 du parquet".into(),
        until: Timestamp(until),
        set_by: "dpo".into(),
        set_at: Timestamp(set_at),
        released_at: None,
        released_by: None,
    };
    store.set_hold(&hold(1, 1_000, 50_000)).expect("hold");
    store.set_hold(&hold(2, 2_000, 9_000)).expect("hold");
    // A new hold on incident 1 supersedes the first: released when the new one is set.
    store.set_hold(&hold(1, 3_000, 60_000)).expect("hold");
    let in_force = |store: &mut Box<dyn beffroi_engine::Store>, now: i64| -> Vec<(u64, i64)> {
        store
            .legal_holds(Timestamp(now))
            .expect("holds")
            .iter()
            .map(|h| (h.incident.0, h.until.0))
            .collect()
    };
    assert_eq!(in_force(&mut store, 4_000), [(1, 60_000), (2, 9_000)]);
    assert_eq!(
        in_force(&mut store, 10_000),
        [(1, 60_000)],
        "hold 2 has ended"
    );
    let all = reader.holds(Timestamp(10_000), true).expect("all holds");
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].released_at, Some(Timestamp(3_000)), "superseded");
    assert_eq!(all[2].released_by.as_deref(), Some("dpo"));
    assert_eq!(
        reader.holds(Timestamp(4_000), false).expect("holds").len(),
        2
    );

    assert!(
        store
            .release_hold(IncidentId(1), "supervisor", Timestamp(5_000))
            .expect("release")
    );
    assert!(
        !store
            .release_hold(IncidentId(1), "supervisor", Timestamp(5_500))
            .expect("release"),
        "nothing left in force"
    );
    assert!(
        !store
            .release_hold(IncidentId(2), "supervisor", Timestamp(10_000))
            .expect("release"),
        "an ended hold is not released"
    );
    let released = &reader.holds(Timestamp(5_000), true).expect("holds")[0];
    assert_eq!(
        (released.released_at, released.released_by.as_deref()),
        (Some(Timestamp(5_000)), Some("supervisor"))
    );
    assert!(store.legal_holds(Timestamp(5_000)).expect("holds").len() == 1);
}

/// The retention status counts rows and their oldest date per store and category, and
/// names the last purge run.
pub fn the_retention_status_counts_rows_and_names_the_last_run(b: &dyn Backend) {
    let t = Arc::new(territory());
    let crate::Opened {
        mut store, reader, ..
    } = b.open_in(Arc::clone(&t));
    let (rows, last) = reader.retention_status().expect("status");
    assert!(rows.iter().all(|r| r.rows == 0), "{rows:?}");
    assert_eq!(last, None);
    store
        .write(&WriteBatch {
            observations: vec![
                obs(&t, "g1", 0, Value::Number(1.0), B),
                obs(&t, "g1", 0, Value::Number(2.0), B + 1),
                obs(&t, "a2", 1, Value::Text(BADGE_PURGED.into()), B - 7),
            ],
            incidents: vec![incident(&t, 1, "g2", BADGE_PURGED)],
            identities: vec![identity(BADGE_PURGED, 1, B - 3)],
            ..WriteBatch::default()
        })
        .expect("write");
    store
        .record_purge(Timestamp(B + 10), r#"{"removed": {}}"#)
        .expect("record");
    store
        .record_purge(Timestamp(B + 20), r#"{"removed": {"rejections": 1}}"#)
        .expect("record");
    let (rows, last) = reader.retention_status().expect("status");
    let find = |store: &str, category: DataCategory| {
        rows.iter()
            .find(|r| r.store == store && r.category == category)
            .map(|r| (r.rows, r.oldest.map(|o| o.0)))
    };
    assert_eq!(
        find("observations", DataCategory::Technical),
        Some((2, Some(B)))
    );
    assert_eq!(
        find("observations", DataCategory::Personal),
        Some((1, Some(B - 7)))
    );
    assert_eq!(
        find("identities", DataCategory::Personal),
        Some((1, Some(B - 3)))
    );
    assert_eq!(
        find("incidents", DataCategory::Technical),
        Some((1, Some(B - 10 * MIN)))
    );
    assert_eq!(
        find("incident_log", DataCategory::Technical).map(|r| r.0),
        Some(1)
    );
    let last = last.expect("a run");
    assert_eq!(last.at, Timestamp(B + 20));
    assert_eq!(last.detail["removed"]["rejections"], 1);
}
