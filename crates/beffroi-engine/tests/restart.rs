//! What a restart must preserve: incidents keep their identity, a condition raised before
//! the restart still clears (auto-resolve) and escalates afterwards, and absence counts from
//! when the device was last heard, not from the restart.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{Incident, IncidentId, Severity, Status, Timestamp};
use beffroi_engine::Source;
use beffroi_engine::live::DeviceState;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::operations::Operations;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_engine::store::{StoredState, StoredUnit};
use beffroi_territory::SourceFile;
use beffroi_wire::Format;

const T0: i64 = 1_795_694_400_000;

const RULES: &str = r#"
[[rule]]
id = "high"
title = "High water at {site}"
category = "flood"
severity = "major"
key = "site"
auto_resolve = true
kind = "level"
[rule.threshold]
field = "level_m"
above = 2.0
[[rule.escalate]]
after = "30m"
severity = "critical"

[[rule]]
id = "silent"
title = "Silent {device}"
category = "device"
severity = "major"
auto_resolve = true
kind = "level"
devices = ["g2"]
[rule.absence]
after = "20m"
"#;

fn pipeline(start: i64) -> Pipeline {
    pipeline_with(start, Operations::default())
}

fn pipeline_with(start: i64, operations: Operations) -> Pipeline {
    let t = Arc::new(fixture::small());
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", RULES), &t).expect("rules");
    Pipeline::new(
        PipelineConfig {
            operations,
            ..PipelineConfig::new(t, Arc::new(rules), Vec::new(), Arc::new(Metrics::new()))
        },
        Timestamp(start),
    )
}

fn level(p: &mut Pipeline, dev: &str, v: f64, at_min: i64, out: &mut Output) {
    let body = format!(
        r#"{{"device":"{dev}","time":{},"values":{{"level_m":{v}}}}}"#,
        T0 + at_min * 60_000
    );
    let r = p.ingest(
        Source::HTTP,
        Format::Json,
        None,
        body.as_bytes(),
        Timestamp(T0 + at_min * 60_000),
        out,
    );
    assert_eq!(r.accepted, 1, "{r:?}");
}

#[test]
fn conditions_raised_before_a_restart_still_clear_and_escalate() {
    let mut a = pipeline(T0);
    let mut out = Output::default();
    level(&mut a, "g1", 3.0, 0, &mut out);
    level(&mut a, "g2", 1.0, 0, &mut out);
    let opened: Vec<Incident> = out
        .batch
        .incidents
        .iter()
        .map(|c| c.incident.clone())
        .collect();
    assert_eq!(opened.len(), 1);
    let id = opened[0].id;

    // Restart 10 minutes later: the store gives back the active incident and last-seen times.
    let mut b = pipeline(T0 + 10 * 60_000);
    let last_seen = vec![
        (b.territory().device_id("g1").expect("g1"), Timestamp(T0)),
        (b.territory().device_id("g2").expect("g2"), Timestamp(T0)),
    ];
    b.restore(
        StoredState {
            incidents: opened,
            max_incident: IncidentId(id.0),
            last_seen,
            ..StoredState::default()
        },
        Timestamp(T0 + 10 * 60_000),
    )
    .expect("restore");

    // Escalation continues from when the condition was raised (30 min), not from the restart.
    let mut out = Output::default();
    b.tick(Timestamp(T0 + 30 * 60_000), &mut out);
    let changes: Vec<_> = out.batch.incidents.iter().map(|c| &c.incident).collect();
    assert!(
        changes
            .iter()
            .any(|i| i.id == id && i.severity == Severity::Critical),
        "escalated after the restart: {changes:?}"
    );
    // g2 was last heard at T0: silent at 20 min after T0 although the restart was at 10.
    assert!(
        changes.iter().any(|i| &*i.rule == "silent"),
        "absence counts from the last message: {changes:?}"
    );
    let g2 = b.territory().device_id("g2").expect("g2");
    let g1 = b.territory().device_id("g1").expect("g1");
    assert_eq!(b.device_state(g2), DeviceState::Silent);
    assert_eq!(b.device_state(g1), DeviceState::Alarm);
    assert!(
        out.devices
            .iter()
            .any(|c| c.device == g2 && c.state == DeviceState::Silent),
        "the map is told: {:?}",
        out.devices
    );

    // The level goes back to normal: the restored incident auto-resolves, no new incident.
    let mut out = Output::default();
    level(&mut b, "g1", 1.0, 31, &mut out);
    let c = out
        .batch
        .incidents
        .iter()
        .find(|c| &*c.incident.rule == "high")
        .expect("a change of the flood incident");
    assert_eq!(c.incident.id, id);
    assert!(!c.created);
    assert_eq!(c.incident.status, Status::Resolved);
}

/// The operations state (units, crises) a restart must give back: read from what the
/// first process wrote, the second one carries on.
#[test]
fn units_and_crises_are_restored_and_carry_on() {
    use beffroi_core::crisis::{CrisisCommand, CrisisKind, CrisisLogKind, CrisisOpening};
    use beffroi_core::incident::{EscalationDelays, EscalationPolicy};
    use beffroi_core::{Actor, Duration, IncidentAction, UnitKind, UnitSpec, UnitStatus};

    let mut escalation = EscalationPolicy::default();
    escalation.delays[Severity::Major as usize] = EscalationDelays {
        remind_after: Some(Duration::from_mins(2)),
        escalate_after: Some(Duration::from_mins(5)),
    };
    let unit = |id: &str, initial| UnitSpec {
        id: id.into(),
        name: id.into(),
        kind: UnitKind::Police,
        communes: vec![],
        initial,
    };
    let ops = Operations {
        units: vec![
            unit("pm-1", UnitStatus::Available),
            unit("pm-2", UnitStatus::Available),
            unit("night", UnitStatus::OffDuty),
        ],
        escalation,
        roles: vec![],
        ..Default::default()
    };
    let op = Actor::User("alice".into());

    let mut a = pipeline_with(T0, ops.clone());
    let mut out = Output::default();
    let crisis = a
        .open_crisis(
            CrisisOpening {
                kind: CrisisKind::Flood,
                title: "Crue".into(),
                communes: vec![a.territory().commune_id("c1").expect("c1")],
                level: 1,
            },
            &op,
            Timestamp(T0),
            &mut out,
        )
        .expect("opens");
    level(&mut a, "g1", 3.0, 1, &mut out);
    let id = out.batch.incidents[0].incident.id;
    // Unknown and off-duty units are refused; nothing is written for them.
    for (u, msg) in [("ghost", "no unit"), ("night", "off duty")] {
        let e = a
            .act(
                id,
                &IncidentAction::Assign(u.into()),
                &op,
                Timestamp(T0 + 70_000),
                &mut out,
            )
            .expect_err("refused");
        assert!(e.to_string().contains(msg), "{e}");
    }
    a.act(
        id,
        &IncidentAction::Assign("pm-1".into()),
        &op,
        Timestamp(T0 + 80_000),
        &mut out,
    )
    .expect("assign");
    a.set_unit_status(
        "pm-2",
        UnitStatus::OffDuty,
        Timestamp(T0 + 90_000),
        &mut out,
    )
    .expect("status");
    assert_eq!(
        a.units()
            .get("pm-1")
            .map(|u| (u.status, u.missions.clone())),
        Some((UnitStatus::Engaged, vec![id]))
    );

    // What the store would hold: the last row of each unit and crisis, the active incidents.
    let units: Vec<StoredUnit> = out
        .batch
        .units
        .iter()
        .map(|u| StoredUnit {
            id: u.spec.id.to_string(),
            status: u.status,
            updated_at: u.updated_at,
        })
        .collect();
    let crises: Vec<_> = out
        .batch
        .crises
        .iter()
        .rev()
        .take(1)
        .map(|c| (*c.crisis).clone())
        .collect();
    let mut latest = std::collections::HashMap::new();
    for c in &out.batch.incidents {
        latest.insert(c.incident.id, c.incident.clone());
    }
    let incidents: Vec<Incident> = latest.into_values().collect();

    let mut b = pipeline_with(T0 + 3 * 60_000, ops);
    b.restore(
        StoredState {
            incidents,
            max_incident: id,
            units,
            crises,
            ..StoredState::default()
        },
        Timestamp(T0 + 3 * 60_000),
    )
    .expect("restore");
    let pm1 = b.units().get("pm-1").expect("pm-1");
    assert_eq!(
        (pm1.status, pm1.missions.clone()),
        (UnitStatus::Engaged, vec![id])
    );
    assert_eq!(
        b.units().get("pm-2").map(|u| u.status),
        Some(UnitStatus::OffDuty)
    );
    let restored = b.crises().get(crisis.id).expect("crisis restored");
    assert_eq!(restored.incidents.iter().copied().collect::<Vec<_>>(), [id]);

    // Escalation continues from the opening: reminded at once (2 min passed), logged in
    // the crisis too.
    let mut out = Output::default();
    b.tick(Timestamp(T0 + 3 * 60_000), &mut out);
    let change = out
        .batch
        .incidents
        .iter()
        .find(|c| c.incident.id == id)
        .expect("reminder");
    assert_eq!(&*change.log[0].action, "reminder");
    assert!(
        out.batch.crises.iter().any(|c| c
            .log
            .iter()
            .any(|e| e.kind == CrisisLogKind::Incident && e.text.contains("reminder"))),
        "the crisis logs the reminder: {:?}",
        out.batch.crises
    );
    // Resolving the mission frees the unit; the crisis is closed and a new one gets id 2.
    let mut out = Output::default();
    b.act(
        id,
        &IncidentAction::Resolve,
        &op,
        Timestamp(T0 + 4 * 60_000),
        &mut out,
    )
    .expect("resolve");
    assert_eq!(
        b.units().get("pm-1").map(|u| u.status),
        Some(UnitStatus::Available)
    );
    assert!(
        out.batch
            .units
            .iter()
            .any(|u| &*u.spec.id == "pm-1" && u.missions.is_empty())
    );
    b.crisis_act(
        crisis.id,
        &CrisisCommand::Close {
            summary: "fin".into(),
        },
        &op,
        Timestamp(T0 + 5 * 60_000),
        &mut out,
    )
    .expect("close");
    let second = b
        .open_crisis(
            CrisisOpening {
                kind: CrisisKind::Snow,
                title: "Neige".into(),
                communes: vec![],
                level: 1,
            },
            &op,
            Timestamp(T0 + 6 * 60_000),
            &mut out,
        )
        .expect("opens");
    assert_eq!(second.id.0, crisis.id.0 + 1);
}

/// A shelved alarm stays shelved across a restart (the shelving log replayed), and its shelf
/// ends on the tick at its time — on the clock, not at the restart — with an act the store
/// keeps (`system`, `expired`). Handover notes come back with their ids going on.
#[test]
fn shelves_and_handover_notes_are_restored_and_a_shelf_expires_on_the_tick() {
    use beffroi_core::shelving::ShelfChange;
    use beffroi_core::{Duration, SafeText};

    let mut a = pipeline(T0);
    let mut out = Output::default();
    level(&mut a, "g1", 3.0, 0, &mut out);
    let inc = out.batch.incidents[0].incident.clone();
    let reason = SafeText::from("capteur en maintenance");
    // Too long for the default bound (8 hours), then for 40 minutes.
    assert!(
        a.shelve(
            inc.id,
            "user:alice",
            reason.clone(),
            Duration::from_mins(8 * 60 + 1),
            Timestamp(T0),
            &mut out
        )
        .is_err()
    );
    let act = a
        .shelve(
            inc.id,
            "user:alice",
            reason,
            Duration::from_mins(40),
            Timestamp(T0),
            &mut out,
        )
        .expect("shelved");
    let note = a
        .write_note(
            "alice",
            vec![],
            SafeText::from("Capteur g1 en maintenance"),
            Timestamp(T0),
            &mut out,
        )
        .expect("note");
    assert_eq!(out.batch.shelving, vec![act.clone()]);
    assert_eq!(out.batch.notes.len(), 1);

    // Restart 10 minutes later from what the store holds.
    let mut b = pipeline(T0 + 10 * 60_000);
    b.restore(
        StoredState {
            incidents: vec![inc.clone()],
            max_incident: inc.id,
            notes: vec![note.clone()],
            shelving: out.batch.shelving.clone(),
            ..StoredState::default()
        },
        Timestamp(T0 + 10 * 60_000),
    )
    .expect("restore");
    assert!(
        b.shelves()
            .is_shelved(&inc.key, Timestamp(T0 + 10 * 60_000))
    );
    assert_eq!(b.ops_snapshot().notes, vec![note.clone()]);
    let mut next = Output::default();
    let second = b
        .write_note(
            "bob",
            vec![],
            SafeText::from("RAS"),
            Timestamp(T0 + 11 * 60_000),
            &mut next,
        )
        .expect("note");
    assert_eq!(second.id.0, note.id.0 + 1, "ids go on after a restart");

    // Ticks before its end leave it; the tick at its end ends it, once.
    let mut out = Output::default();
    b.tick(Timestamp(T0 + 39 * 60_000), &mut out);
    assert!(out.batch.shelving.is_empty());
    b.tick(Timestamp(T0 + 40 * 60_000), &mut out);
    let ended: Vec<_> = out
        .batch
        .shelving
        .iter()
        .map(|a| (a.key.clone(), a.change, &*a.actor))
        .collect();
    assert_eq!(ended, [(inc.key.clone(), ShelfChange::Expired, "system")]);
    b.tick(Timestamp(T0 + 41 * 60_000), &mut out);
    assert_eq!(out.batch.shelving.len(), 1, "an expiry is written once");
    assert!(b.ops_snapshot().shelves.is_empty());
}

/// A person's erasure reaches the handover notes and the shelving reasons held in memory
/// (the store does the same on disk): their pseudonym is gone, the rest of the text stays.
#[test]
fn an_erasure_reaches_handover_notes_and_shelving_reasons() {
    use beffroi_core::{Duration, Identifier};
    use beffroi_privacy::{EpochKey, Pseudonymiser, scrub};

    let keys = Pseudonymiser::new(vec![EpochKey::new(1, &[7; 32])]).expect("keys");
    let mut p = pipeline(T0);
    let mut out = Output::default();
    level(&mut p, "g1", 3.0, 0, &mut out);
    let inc = out.batch.incidents[0].incident.clone();
    let scrubbed = scrub(&keys, "Véhicule AB-123-CD devant la digue");
    let plate = scrubbed.sealed[0].pseudonym.0.clone();
    assert_eq!(scrubbed.sealed[0].identifier, Identifier::LicencePlate);
    let text = scrubbed.text;
    assert!(text.contains(plate.as_str()), "{text}");
    p.write_note("alice", vec![], text.clone(), Timestamp(T0), &mut out)
        .expect("note");
    p.shelve(
        inc.id,
        "user:alice",
        text,
        Duration::from_mins(30),
        Timestamp(T0),
        &mut out,
    )
    .expect("shelved");
    assert!(p.erase_pseudonyms(&[plate.to_string()], &[]));
    let ops = p.ops_snapshot();
    for kept in [ops.notes[0].text.as_str(), ops.shelves[0].reason.as_str()] {
        assert!(!kept.contains(plate.as_str()), "{kept}");
        assert!(kept.contains("devant la digue"), "{kept}");
    }
    assert!(
        p.shelves().is_shelved(&inc.key, Timestamp(T0)),
        "still shelved"
    );
}
