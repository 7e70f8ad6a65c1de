//! The persistence contract on incidents, observations, operations and restarts: what every
//! store must keep, list and restore, whatever its backend.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{
    Actor, FieldIdx, IncidentChange, IncidentId, LogEntry, Point, Severity, Status, Territory,
    Timestamp, Trigger, TriggerKind, TriggerOp, Value,
};
use beffroi_engine::store::{IncidentQuery, StoredObservation, StoredRejection, Visibility};
use beffroi_engine::{Source, StoreError, WriteBatch};
use beffroi_wire::RejectReason;

use crate::fixtures::{change, incident, level, territory};
use crate::{Backend, Opened};

fn log(at: i64, actor: Actor, action: &str, detail: &str) -> LogEntry {
    LogEntry {
        at: Timestamp(at),
        actor,
        action: action.into(),
        detail: beffroi_core::SafeText::redacting(detail),
        message: None,
    }
}

/// An opening line that says a message (read back with it, not just its English text).
fn opened_line() -> LogEntry {
    use beffroi_core::{Message, Param, Severity};
    let m = Message::new("incident.opened")
        .with("severity", Param::Severity(Severity::Major))
        .with("evidence", Param::Text("level_m=3.2".into()));
    LogEntry {
        detail: m.english(),
        message: Some(m),
        ..log(1_000, Actor::Rule("flood-high".into()), "opened", "")
    }
}

fn observations_of_every_type() -> Vec<StoredObservation> {
    let a1 = fixture::small().device_id("a1").expect("fixture");
    vec![
        level("g1", 1_000, 1.5),
        level("g1", 2_000, 1.75),
        level("g2", 1_500, 0.0),
        StoredObservation {
            device: a1,
            field: FieldIdx(0),
            value: Value::Bool(true),
            time: Timestamp(1_200),
            received: Timestamp(1_300),
            trust: beffroi_core::Trust::Signed,
            quarantined: false,
        },
        StoredObservation {
            device: a1,
            field: FieldIdx(1),
            value: Value::Text("pseudo:7f3a".into()),
            time: Timestamp(1_200),
            received: Timestamp(1_300),
            trust: beffroi_core::Trust::BrokerAuthenticated,
            quarantined: false,
        },
    ]
}

pub fn incident_round_trips_with_procedure_and_log(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let opened = incident(7, "flood-high@site:s2", Status::New, 1_000);
    store
        .write(&change(opened.clone(), true, vec![opened_line()]))
        .expect("write opened");

    let mut worked = opened.clone();
    worked.status = Status::Acknowledged;
    worked.acknowledged_at = Some(Timestamp(2_000));
    worked.owner = Some("alice".into());
    worked.updated_at = Timestamp(3_000);
    worked.sop[1].done_by = Some("user:alice".into());
    worked.sop[1].done_at = Some(Timestamp(3_000));
    let later = vec![
        log(2_000, Actor::User("alice".into()), "acknowledged", ""),
        log(
            3_000,
            Actor::User("alice".into()),
            "step_done",
            "2. Prévenir l'astreinte",
        ),
        log(3_000, Actor::System, "comment", "relevé transmis"),
    ];
    store
        .write(&change(worked.clone(), false, later.clone()))
        .expect("write update");

    assert_eq!(
        store.incident(IncidentId(7)).expect("read"),
        Some(worked.clone())
    );
    assert_eq!(store.incident(IncidentId(8)).expect("read"), None);
    assert_eq!(store.max_incident_id().expect("max"), IncidentId(7));
    assert_eq!(
        store.active_incidents().expect("active"),
        vec![worked.clone()]
    );

    let (read, entries) = reader
        .incident_with_log(IncidentId(7), &Visibility::everything())
        .expect("read")
        .expect("present");
    assert_eq!(read, worked);
    let mut expected = vec![opened_line()];
    assert_eq!(
        entries[0].message.as_ref().map(|m| m.code),
        Some("incident.opened")
    );
    expected.extend(later);
    assert_eq!(entries, expected);
    assert_eq!(
        reader
            .incident_with_log(IncidentId(99), &Visibility::everything())
            .expect("read"),
        None
    );
}

pub fn incident_listing_filters_and_orders_by_update(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let mut a = incident(1, "a@site:s2", Status::New, 1_000);
    a.severity = Severity::Minor;
    let mut b = incident(2, "b@site:s2", Status::Resolved, 3_000);
    b.severity = Severity::Critical;
    let mut c = incident(3, "c@site:s2", Status::Closed, 2_000);
    c.category = "intrusion".into();
    for inc in [&a, &b, &c] {
        store
            .write(&change(inc.clone(), true, vec![]))
            .expect("write");
    }
    let ids = |q: IncidentQuery| -> Vec<u64> {
        reader
            .incidents(&q)
            .expect("list")
            .iter()
            .map(|i| i.id.0)
            .collect()
    };
    assert_eq!(ids(IncidentQuery::default()), vec![2, 3, 1]);
    assert_eq!(
        ids(IncidentQuery {
            statuses: vec![Status::New, Status::Resolved],
            ..Default::default()
        }),
        vec![2, 1]
    );
    assert_eq!(
        ids(IncidentQuery {
            min_severity: Some(Severity::Major),
            ..Default::default()
        }),
        vec![2, 3]
    );
    assert_eq!(
        ids(IncidentQuery {
            category: Some("intrusion".into()),
            ..Default::default()
        }),
        vec![3]
    );
    assert_eq!(
        ids(IncidentQuery {
            commune: Some("c1".into()),
            limit: 2,
            ..Default::default()
        }),
        vec![2, 3]
    );
    assert_eq!(
        ids(IncidentQuery {
            commune: Some("elsewhere".into()),
            ..Default::default()
        }),
        Vec::<u64>::new()
    );
}

/// The caller's visibility is part of the query: a page holds `limit` incidents the caller
/// may see, however many newer ones it may not; the handover log is cut the same way.
pub fn visibility_is_part_of_the_query_so_a_page_is_full(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let t = territory();
    let c1 = t.commune_id("c1").expect("fixture");
    // The oldest is a flood; the two newest are cyber incidents.
    let flood = incident(1, "a@site:s2", Status::New, 1_000);
    let mut cyber = incident(2, "b@site:s2", Status::New, 2_000);
    cyber.category = "cyber".into();
    let mut cyber2 = incident(3, "c@site:s2", Status::New, 3_000);
    cyber2.category = "cyber".into();
    let opened = |at| vec![log(at, Actor::Rule("r".into()), "opened", "")];
    for (inc, at) in [(&flood, 1_000), (&cyber, 2_000), (&cyber2, 3_000)] {
        store
            .write(&change(inc.clone(), true, opened(at)))
            .expect("write");
    }
    let ids = |visible: Visibility, limit: usize| -> Vec<u64> {
        reader
            .incidents(&IncidentQuery {
                limit,
                visible,
                ..Default::default()
            })
            .expect("list")
            .iter()
            .map(|i| i.id.0)
            .collect()
    };
    let no_cyber = Visibility::new(Some(vec![c1]), Some(vec![]));
    assert_eq!(ids(no_cyber.clone(), 1), vec![1], "the page is filled");
    assert_eq!(ids(Visibility::new(None, Some(vec![c1])), 1), vec![3]);
    assert_eq!(ids(Visibility::everything(), 5), vec![3, 2, 1]);
    assert_eq!(ids(Visibility::nothing(), 5), Vec::<u64>::new());
    assert_eq!(ids(Visibility::new(Some(vec![c1]), None), 5), vec![3, 2, 1]);
    // The store answers exactly what the in-memory rule sees.
    for v in [
        no_cyber.clone(),
        Visibility::nothing(),
        Visibility::everything(),
    ] {
        let expected: Vec<u64> = [&cyber2, &cyber, &flood]
            .iter()
            .filter(|i| v.sees_incident(i))
            .map(|i| i.id.0)
            .collect();
        assert_eq!(ids(v, 10), expected);
    }
    let handover = |v: &Visibility, limit| -> Vec<u64> {
        reader
            .log_since(Timestamp(0), limit, v)
            .expect("log")
            .iter()
            .map(|e| e.incident.0)
            .collect()
    };
    // Reads by id apply it too.
    let all = [IncidentId(1), IncidentId(2), IncidentId(3)];
    let by_id = |v: &Visibility| -> Vec<u64> {
        reader
            .incidents_by_id(&all, v)
            .expect("by id")
            .iter()
            .map(|i| i.id.0)
            .collect()
    };
    assert_eq!(by_id(&no_cyber), vec![1]);
    assert_eq!(by_id(&Visibility::everything()), vec![1, 2, 3]);
    assert!(by_id(&Visibility::nothing()).is_empty());
    assert!(
        reader
            .incident_with_log(IncidentId(2), &no_cyber)
            .expect("read")
            .is_none()
    );
    assert!(
        reader
            .incident_with_log(IncidentId(1), &no_cyber)
            .expect("read")
            .is_some()
    );
    assert_eq!(
        handover(&no_cyber, 1),
        vec![1],
        "the log page is filled too"
    );
    assert_eq!(handover(&Visibility::everything(), 10), vec![1, 2, 3]);
    assert!(handover(&Visibility::nothing(), 10).is_empty());
}

pub fn one_open_incident_per_key_is_enforced_by_the_schema(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let key = "flood-high@site:s2";
    let first = incident(1, key, Status::New, 1_000);
    store
        .write(&change(first.clone(), true, vec![]))
        .expect("first");

    let second = incident(2, key, Status::New, 2_000);
    let refused = store.write(&change(
        second.clone(),
        true,
        vec![log(2_000, Actor::System, "opened", "")],
    ));
    assert!(
        matches!(&refused, Err(StoreError::Backend(m)) if m.to_lowercase().contains("unique")),
        "{refused:?}"
    );
    // The whole batch was rolled back: no orphan log entry, no second incident.
    assert_eq!(store.incident(IncidentId(2)).expect("read"), None);
    assert_eq!(store.max_incident_id().expect("max"), IncidentId(1));

    let mut closed = first;
    closed.status = Status::Closed;
    closed.closed_at = Some(Timestamp(1_500));
    store.write(&change(closed, false, vec![])).expect("close");
    store
        .write(&change(second.clone(), true, vec![]))
        .expect("a new incident once the first is closed");
    assert_eq!(store.active_incidents().expect("active"), vec![second]);
    assert_eq!(
        reader
            .incidents(&IncidentQuery::default())
            .expect("list")
            .len(),
        2
    );
}

pub fn observations_are_idempotent_on_redelivery(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let batch = WriteBatch {
        observations: observations_of_every_type(),
        ..Default::default()
    };
    store.write(&batch).expect("first delivery");
    store.write(&batch).expect("redelivery");
    assert_eq!(reader.observation_count().expect("count"), 5);
    // A duplicate inside one batch, and more rows than one multi-row INSERT holds.
    let mut repeated: Vec<_> = (0..150).map(|i| level("g2", 10_000 + i, 1.0)).collect();
    repeated.extend(repeated.clone());
    store
        .write(&WriteBatch {
            observations: repeated,
            ..Default::default()
        })
        .expect("batch with duplicates");
    assert_eq!(reader.observation_count().expect("count"), 155);
    store
        .write(&WriteBatch {
            observations: vec![level("g2", 10_000 + 149, 1.0)],
            ..Default::default()
        })
        .expect("single redelivery");
    assert_eq!(reader.observation_count().expect("count"), 155);

    let t = fixture::small();
    let g1 = t.device_id("g1").expect("fixture");
    let a1 = t.device_id("a1").expect("fixture");
    assert_eq!(
        reader.observations(g1, Timestamp(0), 10).expect("read"),
        vec![level("g1", 2_000, 1.75), level("g1", 1_000, 1.5)]
    );
    assert_eq!(
        reader.observations(g1, Timestamp(1_500), 10).expect("read"),
        vec![level("g1", 2_000, 1.75)]
    );
    assert_eq!(
        reader.observations(g1, Timestamp(0), 1).expect("read"),
        vec![level("g1", 2_000, 1.75)]
    );
    assert_eq!(
        reader
            .observations(t.device_id("g2").expect("fixture"), Timestamp(0), 0)
            .expect("read")
            .len(),
        151,
        "limit 0 means the default limit"
    );
    let alarm = reader.observations(a1, Timestamp(0), 10).expect("read");
    assert_eq!(alarm, observations_of_every_type()[3..].to_vec());

    let mut seen = store.last_seen().expect("last seen");
    seen.sort();
    let g2 = t.device_id("g2").expect("fixture");
    let mut expected = vec![
        (g1, Timestamp(2_050)),
        (g2, Timestamp(10_149 + 50)),
        (a1, Timestamp(1_300)),
    ];
    expected.sort();
    assert_eq!(seen, expected, "the latest reception time of each device");
}

pub fn rejections_are_listed_newest_first(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let rejection = |at: i64, reason: RejectReason| StoredRejection {
        at: Timestamp(at),
        source: Source::MQTT.as_str().into(),
        reason,
        detail: format!("device g9 at {at}"),
    };
    store
        .write(&WriteBatch {
            rejections: vec![
                rejection(1, RejectReason::UnknownDevice),
                rejection(2, RejectReason::OutOfRange),
            ],
            ..Default::default()
        })
        .expect("write");
    assert_eq!(
        reader.rejections(0).expect("read"),
        vec![
            rejection(2, RejectReason::OutOfRange),
            rejection(1, RejectReason::UnknownDevice)
        ]
    );
    assert_eq!(reader.rejections(1).expect("read").len(), 1);
}

pub fn purge_deletes_by_event_time_across_chunks(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    // Three (device, field) pairs, enough old rows to need several purge transactions.
    let per_device = b.purge_chunk() + 1_000;
    for device in ["g1", "g2"] {
        let observations = (0..per_device as i64)
            .map(|i| level(device, i * 1_000, 1.0))
            .collect();
        store
            .write(&WriteBatch {
                observations,
                ..Default::default()
            })
            .expect("write");
    }
    store
        .write(&WriteBatch {
            observations: observations_of_every_type()[3..].to_vec(),
            ..Default::default()
        })
        .expect("write");
    let total = 2 * per_device as u64 + 2;
    assert_eq!(reader.observation_count().expect("count"), total);

    let cut = Timestamp(per_device as i64 * 1_000 - 10_000); // keeps the last 10 per gauge
    let purged = store.purge_observations(cut).expect("purge");
    assert_eq!(purged as u64, total - 20);
    assert_eq!(reader.observation_count().expect("count"), 20);
    let g1 = fixture::small().device_id("g1").expect("fixture");
    let left = reader.observations(g1, Timestamp(0), 100).expect("read");
    assert_eq!(left.len(), 10);
    assert!(left.iter().all(|o| o.time >= cut));

    assert_eq!(store.purge_observations(cut).expect("purge again"), 0);
}

pub fn reopening_keeps_everything(b: &dyn Backend) {
    let inc = incident(3, "flood-high@site:s2", Status::New, 1_000);
    let entry = log(1_000, Actor::Rule("flood-high".into()), "opened", "major");
    {
        let (mut store, _reader) = b.open();
        let mut batch = change(inc.clone(), true, vec![entry.clone()]);
        batch.observations = observations_of_every_type();
        batch.rejections = vec![StoredRejection {
            at: Timestamp(5),
            source: Source::HTTP.as_str().into(),
            reason: RejectReason::Malformed,
            detail: "expected a JSON array".into(),
        }];
        store.write(&batch).expect("write");
    } // Both halves dropped: the process "restarts".

    let (mut store, reader) = b.open();
    assert_eq!(store.max_incident_id().expect("max"), IncidentId(3));
    assert_eq!(store.active_incidents().expect("active"), vec![inc.clone()]);
    assert_eq!(
        reader
            .incident_with_log(IncidentId(3), &Visibility::everything())
            .expect("read"),
        Some((inc, vec![entry]))
    );
    assert_eq!(reader.observation_count().expect("count"), 5);
    assert_eq!(store.last_seen().expect("last seen").len(), 3);
    assert_eq!(reader.rejections(10).expect("read").len(), 1);
    // Still idempotent across the restart.
    store
        .write(&WriteBatch {
            observations: observations_of_every_type(),
            ..Default::default()
        })
        .expect("redelivery");
    assert_eq!(reader.observation_count().expect("count"), 5);
}

/// The structured trigger, the peak and current values and the last re-opening are
/// written and read back after a restart, as they were.
pub fn the_trigger_and_the_reopening_survive_a_restart(b: &dyn Backend) {
    let t = fixture::small();
    let mut inc = incident(4, "flood-high@device:g1", Status::New, 1_000);
    let mut tr = Trigger::new(TriggerKind::Threshold, Timestamp(1_000));
    tr.device = t.device_id("g1");
    tr.field = Some("level_m".into());
    tr.value = Some(3.004);
    tr.op = Some(TriggerOp::Above);
    tr.threshold = Some(3.0);
    tr.window = Some(beffroi_core::Duration::from_mins(10));
    inc.trigger = Some(tr);
    inc.peak = Some(3.515);
    inc.current = Some(3.4);
    inc.current_at = Some(Timestamp(9_000));
    inc.reopened_at = Some(Timestamp(8_000));
    inc.title = "Niveau haut ({value} m)".into();
    {
        let (mut store, _reader) = b.open();
        store
            .write(&change(inc.clone(), true, vec![]))
            .expect("write");
    }
    let (mut store, reader) = b.open();
    assert_eq!(store.active_incidents().expect("active"), vec![inc.clone()]);
    let (read, _) = reader
        .incident_with_log(IncidentId(4), &Visibility::everything())
        .expect("read")
        .expect("there");
    assert_eq!(read, inc);
    assert_eq!(read.title_now(), "Niveau haut (3.4 m)");
    // An incident stored without a trigger reads back without one.
    let plain = incident(5, "flood-high@site:s2", Status::New, 2_000);
    store
        .write(&change(plain.clone(), true, vec![]))
        .expect("write");
    assert_eq!(
        reader
            .incident_with_log(IncidentId(5), &Visibility::everything())
            .expect("read")
            .map(|(i, _)| i),
        Some(plain)
    );
}

pub fn reader_sees_commits_while_the_writer_is_open(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    assert_eq!(reader.observation_count().expect("count"), 0);
    store
        .write(&WriteBatch {
            observations: vec![level("g1", 1_000, 2.0)],
            ..Default::default()
        })
        .expect("write");
    assert_eq!(reader.observation_count().expect("count"), 1);

    // Concurrent readers (more than the pool holds) while the writer keeps writing.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let reader = Arc::clone(&reader);
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..50 {
                    let n = reader.observation_count().expect("count");
                    assert!(n >= last, "counts never go back");
                    last = n;
                }
            })
        })
        .collect();
    for i in 2..50 {
        store
            .write(&WriteBatch {
                observations: vec![level("g1", i * 1_000, 2.0)],
                ..Default::default()
            })
            .expect("write");
    }
    for h in handles {
        h.join().expect("reader thread");
    }
    assert_eq!(reader.observation_count().expect("count"), 49);
}

/// The fixture territory without device `g1`: indices of the devices after it shift.
fn territory_without_g1() -> Territory {
    let f = fixture::small();
    let mut t = Territory::new(&f.id, &f.name);
    for c in f.communes {
        t.add_commune(c).expect("fresh");
    }
    for s in f.sites {
        t.add_site(s).expect("fresh");
    }
    for k in f.kinds {
        t.add_kind(k).expect("fresh");
    }
    for d in f.devices.into_iter().filter(|d| &*d.id != "g1") {
        t.add_device(d).expect("fresh");
    }
    t
}

pub fn rows_that_no_longer_fit_the_territory_are_reported_not_panicked_on(b: &dyn Backend) {
    {
        let (mut store, _reader) = b.open();
        let mut batch = change(incident(1, "k@device:g1", Status::New, 1_000), true, vec![]);
        batch.observations = observations_of_every_type();
        store.write(&batch).expect("write");
    }
    let edited = Arc::new(territory_without_g1());
    let Opened {
        mut store,
        reader,
        skipped,
    } = b.open_in(Arc::clone(&edited));
    assert!(matches!(
        store.incident(IncidentId(1)),
        Err(StoreError::Inconsistent(_))
    ));
    assert!(matches!(
        reader.incident_with_log(IncidentId(1), &Visibility::everything()),
        Err(StoreError::Inconsistent(_))
    ));
    assert_eq!(store.active_incidents().expect("active"), vec![]);
    assert_eq!(
        reader.incidents(&IncidentQuery::default()).expect("list"),
        vec![]
    );
    // Textual ids survive the shift of indices: g2 is now index 0 and still has its reading.
    let g2 = edited.device_id("g2").expect("kept");
    let seen = store.last_seen().expect("last seen");
    assert!(seen.contains(&(g2, Timestamp(1_550))), "{seen:?}");
    assert_eq!(seen.len(), 2, "g1's state is skipped");
    assert_eq!(
        reader.observations(g2, Timestamp(0), 10).expect("read"),
        vec![StoredObservation {
            device: g2,
            ..level("g2", 1_500, 0.0)
        }]
    );
    assert_eq!(skipped(), 3, "two incident listings and one device state");
    assert_eq!(store.max_incident_id().expect("max"), IncidentId(1));
}

pub fn operations_survive_a_reopen_units_crises_escalation_and_handover_log(b: &dyn Backend) {
    use beffroi_core::crisis::{CrisisBoard, CrisisCommand, CrisisKind, CrisisOpening, RoleSpec};
    use beffroi_core::{Unit, UnitKind, UnitSpec, UnitStatus};

    let t = fixture::small();
    let c1 = t.commune_id("c1").expect("fixture");
    {
        let (mut store, reader) = b.open();
        let mut inc = incident(1, "flood-high@site:s2", Status::New, 1000);
        inc.reminded_at = Some(Timestamp(2000));
        inc.escalated_at = Some(Timestamp(3000));
        inc.owner = Some("pm-1".into());
        let unit = Unit {
            spec: UnitSpec {
                id: "pm-1".into(),
                name: "PM 1".into(),
                kind: UnitKind::Police,
                communes: vec![],
                initial: UnitStatus::Available,
            },
            status: UnitStatus::Engaged,
            missions: vec![IncidentId(1)],
            updated_at: Timestamp(1500),
        };
        let mut board = CrisisBoard::new(vec![RoleSpec {
            id: "dos".into(),
            name: "DOS".into(),
            name_en: "Director".into(),
        }]);
        let op = Actor::User("alice".into());
        let opened = board
            .open(
                CrisisOpening {
                    kind: CrisisKind::Flood,
                    title: "Crue".into(),
                    communes: vec![c1],
                    level: 2,
                },
                &op,
                Timestamp(900),
                [],
            )
            .expect("open");
        let change = IncidentChange {
            incident: inc.clone(),
            created: true,
            log: vec![log(
                1000,
                Actor::Rule("flood-high".into()),
                "opened",
                "major",
            )],
            pseudonyms: vec![],
        };
        let followed = board.follow(&change);
        let role = board
            .act(
                opened.crisis.id,
                &CrisisCommand::Role {
                    role: "dos".into(),
                    holder: Some("Mme la maire".into()),
                },
                &op,
                Timestamp(1100),
            )
            .expect("role");
        let mut crises = vec![opened];
        crises.extend(followed);
        crises.push(role);
        store
            .write(&WriteBatch {
                incidents: vec![change],
                units: vec![unit],
                crises,
                ..Default::default()
            })
            .expect("write");
        let handover = reader
            .log_since(Timestamp(999), 10, &Visibility::everything())
            .expect("log");
        assert_eq!(handover.len(), 1);
        assert_eq!(handover[0].title, "Crue — niveau haut");
        assert!(
            reader
                .log_since(Timestamp(1001), 10, &Visibility::everything())
                .expect("log")
                .is_empty()
        );
        let by_id = reader
            .incidents_by_id(&[IncidentId(1), IncidentId(9)], &Visibility::everything())
            .expect("by id");
        assert_eq!(by_id.len(), 1);
        let since = reader
            .incidents(&IncidentQuery {
                updated_since: Some(Timestamp(1001)),
                ..Default::default()
            })
            .expect("since");
        assert!(since.is_empty());
    }
    let (mut store, _reader) = b.open();
    let inc = store.incident(IncidentId(1)).expect("read").expect("kept");
    assert_eq!(inc.reminded_at, Some(Timestamp(2000)));
    assert_eq!(inc.escalated_at, Some(Timestamp(3000)));
    assert_eq!(inc.sop[1].due_at, Some(Timestamp(601_000)));
    let units = store.units().expect("units");
    assert_eq!(units.len(), 1);
    assert_eq!(
        (units[0].id.as_str(), units[0].status),
        ("pm-1", UnitStatus::Engaged)
    );
    let crises = store.crises().expect("crises");
    assert_eq!(crises.len(), 1);
    let c = &crises[0];
    assert_eq!(c.communes, vec![c1]);
    assert_eq!(c.level, 2);
    assert_eq!(c.roles[0].holder.as_deref(), Some("Mme la maire"));
    assert_eq!(c.incidents.iter().map(|i| i.0).collect::<Vec<_>>(), [1]);
    let texts: Vec<&str> = c.log.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "opened: flood — Crue (level 2)",
            "#1 Crue — niveau haut — opened: major",
            "role dos (DOS): Mme la maire"
        ]
    );
}

fn event(id: &str, cancelled: Option<i64>) -> beffroi_core::Event {
    beffroi_core::Event {
        id: id.into(),
        name: "Fête de la musique".into(),
        perimeter: vec![
            Point::new(5.0, 47.0),
            Point::new(5.01, 47.0),
            Point::new(5.01, 47.01),
        ],
        starts_at: Timestamp(1_000),
        ends_at: Timestamp(9_000),
        capacity: Some(beffroi_core::Capacity {
            warning: 100.0,
            critical: 150.5,
        }),
        rules: "[[rule]]\nid = \"x\"\n".into(),
        origin: beffroi_core::EventOrigin::Api,
        created_by: "admin".into(),
        cancelled_at: cancelled.map(Timestamp),
        cancelled_by: cancelled.map(|_| "supervisor".into()),
    }
}

pub fn events_round_trip_and_a_cancellation_replaces_the_row(b: &dyn Backend) {
    {
        let (mut store, _) = b.open();
        let mut b = WriteBatch::default();
        b.events.push(Arc::new(event("fete", None)));
        let mut file_event = event("match", None);
        file_event.capacity = None;
        file_event.origin = beffroi_core::EventOrigin::File;
        b.events.push(Arc::new(file_event));
        store.write(&b).expect("write");
        let mut b = WriteBatch::default();
        b.events.push(Arc::new(event("fete", Some(5_000))));
        store.write(&b).expect("write");
    }
    let (mut store, _) = b.open();
    let events = store.events().expect("read");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], event("fete", Some(5_000)));
    assert_eq!(events[1].capacity, None);
    assert_eq!(events[1].origin, beffroi_core::EventOrigin::File);
}

pub fn trust_and_replay_windows_survive_a_reopen(b: &dyn Backend) {
    use beffroi_engine::trust::StoredWindow;
    let t = territory();
    let g1 = t.device_id("g1").expect("fixture");
    let g2 = t.device_id("g2").expect("fixture");
    {
        let (mut store, _reader) = b.open();
        assert!(store.replay_windows().expect("read").is_empty());
        let w = |device, highest, bitmap| StoredWindow {
            device,
            highest,
            bitmap,
        };
        store
            .write(&WriteBatch {
                observations: observations_of_every_type(),
                replay_windows: vec![w(g1, 5, 0b1011), w(g2, u64::MAX, u64::MAX)],
                ..Default::default()
            })
            .expect("write");
        // Upserted: the newer state replaces the older.
        store
            .write(&WriteBatch {
                replay_windows: vec![w(g1, 70, 1)],
                ..Default::default()
            })
            .expect("write");
    }
    let (mut store, reader) = b.open();
    let mut windows = store.replay_windows().expect("read");
    windows.sort_by_key(|w| w.device);
    assert_eq!(
        windows,
        vec![
            StoredWindow {
                device: g1,
                highest: 70,
                bitmap: 1
            },
            StoredWindow {
                device: g2,
                highest: u64::MAX,
                bitmap: u64::MAX
            },
        ]
    );
    let a1 = t.device_id("a1").expect("fixture");
    let mut trusts: Vec<_> = reader
        .observations(a1, Timestamp(0), 10)
        .expect("read")
        .into_iter()
        .map(|o| o.trust)
        .collect();
    trusts.sort();
    assert_eq!(
        trusts,
        vec![
            beffroi_core::Trust::BrokerAuthenticated,
            beffroi_core::Trust::Signed
        ]
    );
}

pub fn quarantine_acts_and_marked_observations_round_trip(b: &dyn Backend) {
    use beffroi_engine::sentinel::QuarantineAct;
    let t = territory();
    let g1 = t.device_id("g1").expect("g1");
    let act = |quarantined: bool, at: i64, reason: &str| QuarantineAct {
        device: g1,
        quarantined,
        actor: "user:ana".into(),
        reason: reason.into(),
        at: Timestamp(at),
    };
    {
        let (mut store, reader) = b.open();
        let mut obs = level("g1", 1_000, 4.2);
        obs.quarantined = true;
        store
            .write(&WriteBatch {
                quarantine: vec![act(true, 900, "spoofed")],
                observations: vec![obs],
                ..Default::default()
            })
            .expect("write");
        store
            .write(&WriteBatch {
                quarantine: vec![act(false, 2_000, "checked")],
                ..Default::default()
            })
            .expect("write");
        let log = reader.quarantine_log(10).expect("read");
        assert_eq!(
            log,
            vec![act(true, 900, "spoofed"), act(false, 2_000, "checked")]
        );
        assert_eq!(
            reader.quarantine_log(1).expect("read"),
            vec![act(false, 2_000, "checked")]
        );
        let seen = reader.observations(g1, Timestamp(0), 10).expect("read");
        assert!(seen[0].quarantined, "{seen:?}");
    }
    let (mut store, _) = b.open();
    assert_eq!(store.quarantine_acts().expect("restored").len(), 2);
}

/// People counts: one row per counter and time bucket (the pipeline stamps the
/// bucket's start), holding the bucket's highest count, whatever the order of arrival and
/// redeliveries; other fields keep each distinct value per time.
pub fn people_counts_keep_the_highest_count_of_their_bucket(b: &dyn Backend) {
    let mut t = fixture::small();
    let counter = t.kind_id("level").expect("fixture");
    t.kinds[counter.get()].fields[0].people_count = true;
    let t = Arc::new(t);
    let Opened {
        mut store, reader, ..
    } = b.open_in(Arc::clone(&t));
    let bucket = 1_795_694_400_000;
    for v in [3.0, 8.0, 5.0, 8.0] {
        store
            .write(&WriteBatch {
                observations: vec![level("g1", bucket, v)],
                ..Default::default()
            })
            .expect("write");
    }
    let g1 = t.device_id("g1").expect("fixture");
    let rows = reader.observations(g1, Timestamp(0), 10).expect("read");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].value, Value::Number(8.0));
    assert_eq!(reader.observation_count().expect("count"), 1);
}

/// The watermarks of idempotent evaluation: written with the observations, one JSON object
/// per device merged field by field, read back after a reopen.
pub fn watermarks_merge_per_field_and_survive_a_reopen(b: &dyn Backend) {
    use beffroi_engine::store::Watermark;
    let t = fixture::small();
    let a1 = t.device_id("a1").expect("fixture");
    let g1 = t.device_id("g1").expect("fixture");
    let on = |time: i64| StoredObservation {
        device: a1,
        field: FieldIdx(0),
        value: Value::Bool(true),
        time: Timestamp(time),
        received: Timestamp(time),
        trust: beffroi_core::Trust::Unauthenticated,
        quarantined: false,
    };
    let mark = |device, field: usize, time: i64| Watermark {
        device,
        field: FieldIdx(field as u16),
        time: Timestamp(time),
    };
    let batch = |observations: Vec<StoredObservation>, watermarks: Vec<Watermark>| WriteBatch {
        observations,
        watermarks,
        ..Default::default()
    };
    let sorted = |mut v: Vec<Watermark>| {
        v.sort_by_key(|m| (m.device, m.field, m.time));
        v
    };
    {
        let (mut store, _reader) = b.open();
        store
            .write(&batch(vec![on(10)], vec![mark(a1, 0, 10)]))
            .expect("write");
        // Another field of the same device in a later commit: the first one stays.
        store
            .write(&batch(vec![on(20)], vec![mark(a1, 1, 20)]))
            .expect("write");
        store
            .write(&batch(
                vec![on(30), level("g1", 30, 1.0)],
                vec![mark(a1, 0, 30), mark(g1, 0, 30)],
            ))
            .expect("write");
        assert_eq!(
            sorted(store.watermarks().expect("read")),
            sorted(vec![mark(a1, 0, 30), mark(a1, 1, 20), mark(g1, 0, 30)])
        );
    }
    let (mut store, _reader) = b.open();
    assert_eq!(
        sorted(store.watermarks().expect("read after reopen")),
        sorted(vec![mark(a1, 0, 30), mark(a1, 1, 20), mark(g1, 0, 30)])
    );
}

/// Text read back from the database passes the recogniser again: a row written by an older
/// build, restored from a backup or edited by hand never reaches an answer in clear.
pub fn stored_text_is_read_back_through_the_recogniser(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    store
        .write(&change(
            incident(9, "flood-high@site:s2", Status::New, 1_000),
            true,
            vec![log(1_000, Actor::System, "comment", "rien")],
        ))
        .expect("write");
    b.execute(
        "UPDATE incidents SET title = 'Véhicule AB-123-CD', evidence = 'appel 06 12 34 56 78';
         UPDATE incident_log SET detail = 'écrire à jean.dupont@example.fr';",
    );
    let (i, log) = reader
        .incident_with_log(IncidentId(9), &Visibility::everything())
        .expect("read")
        .expect("there");
    assert_eq!(i.title, "Véhicule [plate]");
    assert_eq!(i.evidence, "appel [phone]");
    assert_eq!(log[0].detail, "écrire à [email]");
}

/// Handover notes with their reads, and the shelving log, survive a reopen: the note board
/// is restored with its reads (one per reader), and only the alarms still on the shelf come
/// back (an unshelved or expired one does not).
pub fn handover_notes_and_shelves_survive_a_reopen(b: &dyn Backend) {
    use beffroi_core::handover::{NoteBoard, NoteChange};
    use beffroi_core::shelving::{ShelfBoard, ShelfChange};
    use beffroi_core::{Duration, SafeText};

    let t = fixture::small();
    let c1 = t.commune_id("c1").expect("fixture");
    let first = incident(1, "flood-high@site:s2", Status::New, 1000);
    let second = incident(2, "flood-low@site:s2", Status::New, 1000);
    {
        let (mut store, _reader) = b.open();
        let mut notes = NoteBoard::default();
        let mut changes = vec![
            notes
                .write(
                    "alice",
                    vec![c1],
                    SafeText::from("Digue nord"),
                    Timestamp(5_000),
                )
                .expect("note"),
            notes
                .write("bob", vec![], SafeText::from("RAS"), Timestamp(6_000))
                .expect("note"),
        ];
        let NoteChange::Written(n) = &changes[0] else {
            panic!("written");
        };
        let id = n.id;
        changes.extend(
            notes
                .mark_read(id, "carol", Timestamp(7_000))
                .expect("read"),
        );
        let mut shelf = ShelfBoard::default();
        let mut acts = vec![
            shelf
                .shelve(
                    &first,
                    "user:alice",
                    SafeText::from("pompe"),
                    Duration::from_mins(60),
                    Timestamp(5_000),
                )
                .expect("shelved"),
            shelf
                .shelve(
                    &second,
                    "user:alice",
                    SafeText::from("bavard"),
                    Duration::from_mins(10),
                    Timestamp(5_000),
                )
                .expect("shelved"),
        ];
        acts.extend(shelf.expire(Timestamp(5_000 + 10 * 60_000)));
        store
            .write(&WriteBatch {
                notes: changes,
                shelving: acts,
                ..Default::default()
            })
            .expect("write");
    }
    let (mut store, _reader) = b.open();
    let notes = store.handover_notes().expect("notes");
    let summary: Vec<(u64, &str, Vec<_>, &str, Vec<&str>)> = notes
        .iter()
        .map(|n| {
            (
                n.id.0,
                &*n.author,
                n.communes.clone(),
                n.text.as_str(),
                n.reads.iter().map(|r| &*r.by).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "alice", vec![c1], "Digue nord", vec!["carol"]),
            (2, "bob", vec![], "RAS", vec![]),
        ]
    );
    let shelves = store.shelf_log().expect("shelf log");
    assert_eq!(shelves.len(), 1, "{shelves:?}");
    assert_eq!(shelves[0].key, first.key);
    assert_eq!(shelves[0].change, ShelfChange::Shelved);
    assert_eq!(&*shelves[0].reason, "pompe");
    assert_eq!(shelves[0].until, Some(Timestamp(5_000 + 60 * 60_000)));
}

/// An observation's identity is its device, field, event time and value: a redelivered
/// reading is stored once, while a second reading of the same millisecond with another
/// value is a reading of its own, stored and listed too.
pub fn two_readings_of_one_millisecond_with_different_values_are_both_kept(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let t = territory();
    let a1 = t.device_id("a1").expect("fixture");
    let g1 = t.device_id("g1").expect("fixture");
    let note = |text: &str| StoredObservation {
        device: a1,
        field: FieldIdx(1),
        value: Value::Text(text.into()),
        time: Timestamp(5_000),
        received: Timestamp(5_010),
        trust: beffroi_core::Trust::Unauthenticated,
        quarantined: false,
    };
    let batch = WriteBatch {
        observations: vec![
            level("g1", 5_000, 1.25),
            level("g1", 5_000, 1.5),
            note("pseudo:1"),
            note("pseudo:2"),
        ],
        ..Default::default()
    };
    store.write(&batch).expect("write");
    assert_eq!(reader.observation_count().expect("count"), 4);
    // The same readings again, alone and inside a batch: nothing new.
    store.write(&batch).expect("redelivery");
    store
        .write(&WriteBatch {
            observations: vec![level("g1", 5_000, 1.5), level("g1", 5_000, 1.5)],
            ..Default::default()
        })
        .expect("duplicate inside a batch");
    assert_eq!(reader.observation_count().expect("count"), 4);

    let values = |device| -> Vec<String> {
        let mut v: Vec<String> = reader
            .observations(device, Timestamp(0), 10)
            .expect("read")
            .into_iter()
            .map(|o| {
                assert_eq!(o.time, Timestamp(5_000));
                format!("{:?}", o.value)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(values(g1), ["Number(1.25)", "Number(1.5)"]);
    assert_eq!(values(a1), ["Text(\"pseudo:1\")", "Text(\"pseudo:2\")"]);
    let window = reader
        .observations_between(g1, Timestamp(5_000), Timestamp(5_000), 10)
        .expect("read window");
    assert_eq!(window.len(), 2, "{window:?}");
}

/// A pseudonym met at ingest is upserted with the observations that carry it: the sealed
/// value kept, the first sighting the earliest and the last the latest, whatever the order
/// of arrival.
pub fn identities_are_upserted_with_the_observations(b: &dyn Backend) {
    use beffroi_core::Identifier;
    use beffroi_engine::store::StoredIdentity;
    use beffroi_privacy::{EpochKey, Pseudonymiser};
    let (mut store, reader) = b.open();
    let p = Pseudonymiser::new(vec![EpochKey::new(1, &[7; 32]), EpochKey::new(2, &[9; 32])])
        .expect("keys");
    let seen = |sealed, at| StoredIdentity {
        sealed,
        seen: Timestamp(at),
    };
    let plate = p.seal(Identifier::LicencePlate, "AB-123-CD");
    let mut batch = WriteBatch::default();
    batch.identities.push(seen(plate.clone(), 2_000));
    store.write(&batch).expect("write");
    let mut batch = WriteBatch::default();
    // Seen again, later and (redelivered) earlier: first kept as the minimum, last raised.
    batch.identities.push(seen(plate.clone(), 5_000));
    batch.identities.push(seen(plate.clone(), 1_000));
    store.write(&batch).expect("write");
    let row = reader
        .identity(&plate.pseudonym.0)
        .expect("read")
        .expect("found");
    assert_eq!(row.identifier, "licence_plate");
    assert_eq!(row.epoch, 2);
    assert_eq!(
        p.open(&plate.pseudonym.0, &row.sealed).expect("opens"),
        "AB123CD"
    );
    assert_eq!(
        (row.first_seen, row.last_seen),
        (Timestamp(1_000), Timestamp(5_000))
    );
    assert_eq!(
        reader
            .identity("plate:2:zzzzzzzzzzzzzzzzzzzz")
            .expect("read"),
        None
    );
}

/// A window of a device's readings: those with an event time in `from..=until`, newest
/// first, the newest `limit` of them when the window holds more, however many readings
/// are newer than the window.
pub fn observations_between_reads_the_newest_of_the_window(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let g1 = territory().device_id("g1").expect("fixture");
    store
        .write(&WriteBatch {
            observations: (1..=20).map(|i| level("g1", i * 1_000, 1.0)).collect(),
            ..Default::default()
        })
        .expect("write");
    let times = |from: i64, until: i64, limit: usize| -> Vec<i64> {
        reader
            .observations_between(g1, Timestamp(from), Timestamp(until), limit)
            .expect("read")
            .iter()
            .map(|o| o.time.0)
            .collect()
    };
    assert_eq!(times(3_000, 6_000, 10), [6_000, 5_000, 4_000, 3_000]);
    assert_eq!(times(3_000, 6_000, 2), [6_000, 5_000]);
    assert_eq!(times(3_500, 3_900, 10), Vec::<i64>::new());
    assert_eq!(times(0, 1_000, 10), [1_000]);
}

/// The pseudonyms an incident carries are those recorded with its changes, once each, in
/// the order they were first recorded; nothing else (its text) counts.
pub fn an_incident_carries_the_pseudonyms_recorded_with_it(b: &dyn Backend) {
    let (mut store, reader) = b.open();
    let mut inc = incident(5, "flood-high@site:s2", Status::New, 1_000);
    inc.title = "Crue — badge:1:tttttttttttttttttttt".into();
    let mut first = change(inc.clone(), true, vec![]);
    first.incidents[0].pseudonyms = vec!["badge:1:aaaaaaaaaaaaaaaaaaaa".into()];
    store.write(&first).expect("write");
    inc.updated_at = Timestamp(2_000);
    let mut second = change(inc, false, vec![]);
    second.incidents[0].pseudonyms = vec![
        "badge:1:bbbbbbbbbbbbbbbbbbbb".into(),
        "badge:1:aaaaaaaaaaaaaaaaaaaa".into(),
    ];
    store.write(&second).expect("write");
    assert_eq!(
        reader.carried(IncidentId(5)).expect("read"),
        [
            "badge:1:aaaaaaaaaaaaaaaaaaaa",
            "badge:1:bbbbbbbbbbbbbbbbbbbb"
        ]
    );
    assert!(
        reader
            .carries(IncidentId(5), "badge:1:bbbbbbbbbbbbbbbbbbbb")
            .expect("read")
    );
    assert!(
        !reader
            .carries(IncidentId(5), "badge:1:tttttttttttttttttttt")
            .expect("read"),
        "found in its title only"
    );
    assert!(
        !reader
            .carries(IncidentId(6), "badge:1:aaaaaaaaaaaaaaaaaaaa")
            .expect("read")
    );
    assert!(reader.carried(IncidentId(6)).expect("read").is_empty());
}
