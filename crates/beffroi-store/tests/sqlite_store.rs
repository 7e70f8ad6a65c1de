//! The SQLite store's own tests: what only SQLite has (the WAL file and its schema version,
//! an aborted process, rows written by hand with SQLite's syntax). The persistence contract
//! itself is the shared suite (`tests/suite.rs`, from `beffroi-store-suite`).

use beffroi_engine::store::prelude::*;
use std::path::Path;

use beffroi_core::territory::fixture;
use beffroi_core::{FieldIdx, IncidentId, Status, Timestamp, Value};
use beffroi_engine::store::StoredObservation;
use beffroi_engine::{StoreError, WriteBatch};
use beffroi_store::{SqliteReader, SqliteStore};
use beffroi_store_suite::fixtures::{change, incident, level, territory};

fn open(path: &Path) -> (SqliteStore, SqliteReader) {
    beffroi_store::open(path, territory()).expect("open store")
}

fn temp() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("beffroi.db");
    (dir, path)
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let (_dir, path) = temp();
    drop(open(&path));
    rusqlite::Connection::open(&path)
        .expect("open")
        .pragma_update(None, "user_version", beffroi_store::SCHEMA_VERSION + 1)
        .expect("bump version");
    match beffroi_store::open(&path, territory()) {
        Err(StoreError::Backend(m)) => assert!(m.contains("newer"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn the_file_is_in_wal_mode_at_the_current_schema_version() {
    let (_dir, path) = temp();
    let _store = open(&path);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user version");
    assert_eq!(version, beffroi_store::SCHEMA_VERSION);
}

/// Set in the child process of [`acknowledged_batches_survive_an_aborted_process`].
const CHILD_DB: &str = "BEFFROI_STORE_TEST_CHILD_DB";

#[test]
fn acknowledged_batches_survive_an_aborted_process() {
    if let Ok(path) = std::env::var(CHILD_DB) {
        // The child: commit batches, then die without closing anything (no checkpoint, no
        // destructor), as with kill -9.
        let (mut store, _reader) = open(Path::new(&path));
        for i in 0..20 {
            store
                .write(&WriteBatch {
                    observations: vec![level("g1", i * 1_000, 1.0)],
                    ..change(
                        incident(i as u64 + 1, &format!("k{i}@site:s2"), Status::New, i),
                        true,
                        vec![],
                    )
                })
                .expect("write");
        }
        std::process::abort();
    }
    let (_dir, path) = temp();
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "acknowledged_batches_survive_an_aborted_process",
            "--nocapture",
        ])
        .env(CHILD_DB, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run child");
    assert!(!status.success(), "the child aborts");
    let (mut store, reader) = open(&path);
    assert_eq!(reader.observation_count().expect("count"), 20);
    assert_eq!(store.max_incident_id().expect("max"), IncidentId(20));
    assert_eq!(store.active_incidents().expect("active").len(), 20);
}

/// `StoreReader::identity` reads the sealed value behind a pseudonym (`identities`, V6).
#[test]
fn identity_reads_the_sealed_row() {
    let (_dir, path) = temp();
    let (_store, reader) = open(&path);
    let c = rusqlite::Connection::open(&path).expect("db");
    c.execute(
        "INSERT INTO identities (pseudonym, identifier, epoch, sealed, first_seen, last_seen) \
         VALUES ('plate:3:abcdefghijklmnopqrst', 'licence_plate', 3, x'0102', 10, 20)",
        [],
    )
    .expect("insert");
    let got = reader
        .identity("plate:3:abcdefghijklmnopqrst")
        .expect("read")
        .expect("found");
    assert_eq!(got.identifier, "licence_plate");
    assert_eq!(got.epoch, 3);
    assert_eq!(got.sealed, vec![1, 2]);
    assert_eq!(
        (got.first_seen, got.last_seen),
        (Timestamp(10), Timestamp(20))
    );
    assert!(
        !format!("{got:?}").contains("[1, 2]"),
        "sealed bytes are not printed"
    );
    assert_eq!(
        reader
            .identity("plate:3:zzzzzzzzzzzzzzzzzzzz")
            .expect("read"),
        None
    );
}

#[test]
fn identities_are_upserted_with_the_observations_and_forgotten_with_their_epoch() {
    use beffroi_core::Identifier;
    use beffroi_engine::store::StoredIdentity;
    use beffroi_privacy::{EpochKey, Pseudonymiser};
    let (_dir, path) = temp();
    let (mut store, _reader) = open(&path);
    let p = Pseudonymiser::new(vec![EpochKey::new(1, &[7; 32]), EpochKey::new(2, &[9; 32])])
        .expect("keys");
    let old = Pseudonymiser::new(vec![EpochKey::new(1, &[7; 32])]).expect("keys");
    let seen = |sealed, at| StoredIdentity {
        sealed,
        seen: Timestamp(at),
    };
    let plate = p.seal(Identifier::LicencePlate, "AB-123-CD");
    let mut batch = WriteBatch::default();
    batch.identities.push(seen(plate.clone(), 2_000));
    batch
        .identities
        .push(seen(old.seal(Identifier::Badge, "B-0042"), 1_500));
    store.write(&batch).expect("write");
    let mut batch = WriteBatch::default();
    // Seen again, later and (redelivered) earlier: first kept as the minimum, last raised.
    batch.identities.push(seen(plate.clone(), 5_000));
    batch.identities.push(seen(plate.clone(), 1_000));
    store.write(&batch).expect("write");
    let conn = rusqlite::Connection::open(&path).expect("open");
    let row: (String, i64, Vec<u8>, i64, i64) = conn
        .query_row(
            "SELECT identifier, epoch, sealed, first_seen, last_seen FROM identities \
             WHERE pseudonym = ?1",
            [&plate.pseudonym.0],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("row");
    assert_eq!(row.0, "licence_plate");
    assert_eq!(row.1, 2);
    assert_eq!(
        p.open(&plate.pseudonym.0, &row.2).expect("opens"),
        "AB123CD"
    );
    assert_eq!((row.3, row.4), (1_000, 5_000));
    // Epoch 1's key is destroyed: its rows go, epoch 2's stay.
    assert_eq!(store.forget_identities_except(&[2]).expect("forget"), 1);
    let left: Vec<i64> = conn
        .prepare("SELECT epoch FROM identities")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(left, vec![2]);
}

/// A `device_state` row whose watermarks were edited by hand into invalid JSON is skipped
/// when read and repaired by the next write, never a failed commit. (PostgreSQL keeps them
/// in a `jsonb` column, which refuses invalid JSON.) The shared suite covers the merge.
#[test]
fn a_watermarks_row_edited_into_invalid_json_is_skipped_then_repaired() {
    use beffroi_engine::store::Watermark;
    let (_dir, path) = temp();
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
        let (mut store, _reader) = open(&path);
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
    let (mut store, _reader) = open(&path);
    assert_eq!(
        sorted(store.watermarks().expect("read after reopen")),
        sorted(vec![mark(a1, 0, 30), mark(a1, 1, 20), mark(g1, 0, 30)])
    );
    drop(store);

    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute(
        "UPDATE device_state SET watermarks = 'not json' WHERE device = 'g1'",
        [],
    )
    .expect("edit");
    drop(raw);
    let (mut store, _reader) = open(&path);
    assert_eq!(
        sorted(store.watermarks().expect("read")),
        sorted(vec![mark(a1, 0, 30), mark(a1, 1, 20)]),
        "the bad row is skipped"
    );
    store
        .write(&batch(vec![level("g1", 40, 1.0)], vec![mark(g1, 0, 40)]))
        .expect("a bad row never fails a commit");
    assert!(store.watermarks().expect("read").contains(&mark(g1, 0, 40)));
}
