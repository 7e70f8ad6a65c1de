//! A store made by an earlier release is upgraded in place at open: rows kept, keys computed.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{FieldIdx, Territory, Timestamp, Value};
use beffroi_engine::WriteBatch;
use beffroi_engine::store::StoredObservation;
use beffroi_engine::store::prelude::*;

fn level(t: &Territory, device: &str, time: i64, value: f64) -> StoredObservation {
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

fn alarm(t: &Territory, time: i64, on: bool) -> StoredObservation {
    StoredObservation {
        value: Value::Bool(on),
        device: t.device_id("a1").expect("fixture"),
        ..level(t, "g1", time, 0.0)
    }
}

/// Observations written under the version-14 key (device, field, time) survive the
/// upgrade to the value key: a redelivery of an old reading is still stored once, a second
/// value of the same millisecond is now kept, and a people count's bucket row still takes
/// the bucket's highest count.
#[test]
fn observations_of_a_version_14_store_are_keyed_by_value_on_upgrade() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("beffroi.db");
    beffroi_store::create_at_version(&path, 14).expect("old store");
    {
        let conn = rusqlite::Connection::open(&path).expect("open old");
        conn.execute_batch(
            "INSERT INTO observations (device, field, time, value, value_bool, received) VALUES \
             ('a1', 'on', 1000, NULL, 1, 1050), ('a1', 'on', 2000, NULL, 0, 2050), \
             ('g2', 'level_m', 1000, 7.0, NULL, 1050); \
             UPDATE counters SET value = 3 WHERE name = 'observations';",
        )
        .expect("old rows");
    }
    // The level gauges count people in this territory: their rows keep the bucket key.
    let mut t = fixture::small();
    let kind = t.kind_id("level").expect("fixture");
    t.kinds[kind.get()].fields[0].people_count = true;
    let t = Arc::new(t);

    let (mut store, reader) = beffroi_store::open(&path, Arc::clone(&t)).expect("upgrade");
    let version: u32 = rusqlite::Connection::open(&path)
        .expect("open")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, beffroi_store::SCHEMA_VERSION);

    // The old reading redelivered, another value in the same millisecond, and a higher
    // count in the counter's bucket.
    store
        .write(&WriteBatch {
            observations: vec![
                alarm(&t, 1000, true),
                alarm(&t, 1000, false),
                level(&t, "g2", 1000, 9.0),
            ],
            ..Default::default()
        })
        .expect("write");
    let a1 = t.device_id("a1").expect("fixture");
    let rows = reader.observations(a1, Timestamp(0), 10).expect("read a1");
    let mut at_1000: Vec<String> = rows
        .iter()
        .filter(|o| o.time == Timestamp(1000))
        .map(|o| o.value.to_string())
        .collect();
    at_1000.sort();
    assert_eq!(at_1000, vec!["false", "true"], "{rows:?}");
    assert_eq!(rows.len(), 3);
    let g2 = t.device_id("g2").expect("fixture");
    let counter = reader.observations(g2, Timestamp(0), 10).expect("read g2");
    assert_eq!(counter.len(), 1, "{counter:?}");
    assert_eq!(counter[0].value, Value::Number(9.0));
    assert_eq!(reader.observation_count().expect("count"), 4);
}

/// Two readings of one series in the same millisecond with different values are both
/// stored; the same reading twice is stored once.
#[test]
fn a_second_value_in_the_same_millisecond_is_kept_and_a_copy_is_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Arc::new(fixture::small());
    let (mut store, reader) =
        beffroi_store::open(&dir.path().join("beffroi.db"), Arc::clone(&t)).expect("open");
    for batch in [
        vec![level(&t, "g1", 5000, 1.0), level(&t, "g1", 5000, 1.5)],
        vec![level(&t, "g1", 5000, 1.5)],
    ] {
        store
            .write(&WriteBatch {
                observations: batch,
                ..Default::default()
            })
            .expect("write");
    }
    let g1 = t.device_id("g1").expect("fixture");
    let rows = reader.observations(g1, Timestamp(0), 10).expect("read");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(reader.observation_count().expect("count"), 2);
}
