//! The WAL stays bounded under continuous load: thousands of small commits spread over
//! 2,500 devices (the worst case for page amplification: every commit dirties a page per
//! device it touches), with a reader querying all along as the API would.
//!
//! Before the writer completed checkpoints itself, the background passive checkpoint never
//! caught up with a writer that never pauses and the WAL grew with every commit (about
//! 480 MB for this test's 3,000 commits).

use beffroi_engine::store::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use beffroi_core::territory::fixture;
use beffroi_core::{DeviceIdx, FieldIdx, Timestamp, Value};
use beffroi_engine::WriteBatch;
use beffroi_engine::metrics::WalMetrics;
use beffroi_engine::store::StoredObservation;
use beffroi_store::wal::{HARD_FRAMES, JOURNAL_SIZE_LIMIT};

/// Commits `n` readings spread like a town reporting: consecutive readings land on distant
/// pages of the observations table.
fn commit(store: &mut beffroi_store::SqliteStore, seq: &mut i64, devices: u32, n: i64) {
    let observations = (0..n)
        .map(|_| {
            *seq += 1;
            let time = Timestamp(1_700_000_000_000 + *seq * 10);
            StoredObservation {
                device: DeviceIdx(((*seq * 7919) % i64::from(devices)) as u32),
                field: FieldIdx(0),
                value: Value::Number((*seq % 1000) as f64 / 100.0),
                time,
                received: time,
                trust: beffroi_core::Trust::Unauthenticated,
                quarantined: false,
            }
        })
        .collect();
    store
        .write(&WriteBatch {
            observations,
            ..Default::default()
        })
        .expect("commit");
}

#[test]
fn the_wal_stays_under_its_bound_while_commits_never_pause() {
    const DEVICES: u32 = 2_500;
    const COMMITS: i64 = 3_000;
    const PER_COMMIT: i64 = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("beffroi.sqlite");
    let (mut store, reader) =
        beffroi_store::open(&path, Arc::new(fixture::town(DEVICES))).expect("open");
    let metrics = WalMetrics::default();
    store.set_wal_metrics(metrics.clone());

    // A reader that never stops, as the API's would under load.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                reader.observation_count().expect("read");
                n += 1;
            }
            n
        })
    };

    let mut largest = 0u64;
    let mut seq = 0i64;
    for _ in 0..COMMITS {
        commit(&mut store, &mut seq, DEVICES, PER_COMMIT);
        largest = largest.max(store.wal_bytes());
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reads.join().expect("reader");

    let bound = (HARD_FRAMES as u64 + 1_024) * 4096;
    assert!(
        largest <= bound,
        "the WAL reached {largest} bytes (bound {bound}) with a reader running ({reads} reads)"
    );
    assert!(
        metrics.restarts.get() > 0,
        "the WAL never restarted from its beginning"
    );
    // The file is trimmed back to the journal size limit at each restart. With the reader
    // stopped, the next restart is up to the writer alone: commit until it comes (how far
    // the WAL had grown when the reader stopped depends on the machine's load).
    let restarts = metrics.restarts.get();
    let mut more = 0;
    while metrics.restarts.get() == restarts && more < 5_000 {
        commit(&mut store, &mut seq, DEVICES, PER_COMMIT);
        more += 1;
    }
    assert!(
        metrics.restarts.get() > restarts,
        "no restart in {more} commits without a reader"
    );
    assert!(
        store.wal_bytes() <= JOURNAL_SIZE_LIMIT as u64 + 1_024 * 4096,
        "WAL left at {} bytes",
        store.wal_bytes()
    );
    assert_eq!(
        beffroi_engine::ObservationReads::observation_count(
            &beffroi_store::open(&path, Arc::new(fixture::town(DEVICES)))
                .expect("reopen")
                .1
        )
        .expect("count"),
        seq as u64,
        "every committed observation is there"
    );
}

/// A reader that keeps an old snapshot open pins the WAL: it cannot restart while the
/// reader reads, whatever the checkpoints do (the documented limit of the bound). Past the
/// hard threshold the writer tries a restart, waiting at most briefly; once the reader
/// lets go, the WAL restarts and the file is trimmed.
#[test]
fn a_reader_holding_a_snapshot_pins_the_wal_until_it_lets_go() {
    const DEVICES: u32 = 2_500;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("beffroi.sqlite");
    let (mut store, _reader) =
        beffroi_store::open(&path, Arc::new(fixture::town(DEVICES))).expect("open");
    let metrics = WalMetrics::default();
    store.set_wal_metrics(metrics.clone());
    let mut seq = 0i64;
    let mut step = |store: &mut beffroi_store::SqliteStore| commit(store, &mut seq, DEVICES, 20);
    step(&mut store);

    // A read transaction opened now and kept: its snapshot needs the frames written after.
    let held = rusqlite::Connection::open(&path).expect("reader");
    held.execute_batch("BEGIN").expect("begin");
    let _: i64 = held
        .query_row("SELECT count(*) FROM observations", [], |r| r.get(0))
        .expect("read");
    while store.wal_bytes() <= (HARD_FRAMES as u64 + 512) * 4096 {
        step(&mut store);
    }
    let restarts_while_held = metrics.restarts.get();
    // Still held: more commits, no restart.
    for _ in 0..50 {
        step(&mut store);
    }
    assert_eq!(metrics.restarts.get(), restarts_while_held);
    let restart_mode = metrics
        .checkpoints
        .get_or_create(&beffroi_engine::metrics::CheckpointLabel {
            mode: "restart",
            outcome: "busy",
        })
        .get()
        + metrics
            .checkpoints
            .get_or_create(&beffroi_engine::metrics::CheckpointLabel {
                mode: "restart",
                outcome: "partial",
            })
            .get();
    assert!(
        restart_mode > 0,
        "past the hard threshold the writer tried restart mode"
    );

    // The reader lets go: the next commits restart the WAL and trim the file.
    held.execute_batch("COMMIT").expect("end");
    drop(held);
    for _ in 0..200 {
        step(&mut store);
    }
    assert!(metrics.restarts.get() > restarts_while_held, "restarted");
    assert!(
        store.wal_bytes() <= JOURNAL_SIZE_LIMIT as u64 + 1_024 * 4096,
        "trimmed back: {} bytes",
        store.wal_bytes()
    );
}
