//! Fixtures shared by the store suite's cases and the adapters' own tests: the fixture
//! territory, an incident with a procedure, its write batch, a water-level reading.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{
    DedupKey, FieldIdx, Incident, IncidentChange, IncidentId, LogEntry, Point, Severity, SopStep,
    Status, Territory, Timestamp, Value,
};
use beffroi_engine::WriteBatch;
use beffroi_engine::store::StoredObservation;

pub fn territory() -> Arc<Territory> {
    Arc::new(fixture::small())
}

/// An incident at site `s2` on device `g1`, with a two-step procedure.
pub fn incident(id: u64, key: &str, status: Status, at: i64) -> Incident {
    let t = fixture::small();
    Incident {
        id: IncidentId(id),
        key: DedupKey(key.into()),
        rule: "flood-high".into(),
        category: "flood".into(),
        severity: Severity::Major,
        status,
        title: "Crue — niveau haut".into(),
        commune: t.commune_id("c1").expect("fixture"),
        site: t.site_id("s2").expect("fixture"),
        device: t.device_id("g1"),
        position: Point::new(5.004, 47.0),
        opened_at: Timestamp(at),
        updated_at: Timestamp(at),
        acknowledged_at: None,
        resolved_at: None,
        closed_at: (status == Status::Closed).then_some(Timestamp(at)),
        owner: None,
        condition_active: true,
        alarm_count: 1,
        evidence: "level_m=3.2".into(),
        sop_title: Some("Crue".into()),
        sop: vec![
            SopStep {
                text: "Consulter Vigicrues".into(),
                done_by: None,
                done_at: None,
                due_at: None,
            },
            SopStep {
                text: "Prévenir l'astreinte".into(),
                done_by: None,
                done_at: None,
                due_at: Some(Timestamp(at + 600_000)),
            },
        ],
        reminded_at: None,
        escalated_at: None,
        trigger: None,
        peak: None,
        current: None,
        current_at: None,
        reopened_at: None,
    }
}

pub fn change(incident: Incident, created: bool, log: Vec<LogEntry>) -> WriteBatch {
    WriteBatch {
        incidents: vec![IncidentChange {
            incident,
            created,
            log,
            pseudonyms: vec![],
        }],
        ..Default::default()
    }
}

pub fn level(device: &str, time: i64, value: f64) -> StoredObservation {
    let t = fixture::small();
    StoredObservation {
        device: t.device_id(device).expect("fixture"),
        field: FieldIdx(0),
        value: Value::Number(value),
        time: Timestamp(time),
        received: Timestamp(time + 50),
        trust: beffroi_core::Trust::Unauthenticated,
        quarantined: false,
    }
}
