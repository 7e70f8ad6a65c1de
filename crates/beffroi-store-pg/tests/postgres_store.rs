//! What only the PostgreSQL store has: its `schema_version` table, migrations racing
//! between two processes, sessions the server closed, identities forgotten with their key
//! epoch. The persistence contract itself is the shared suite (`tests/suite.rs`).

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{FieldIdx, Territory, Timestamp, Value};
use beffroi_engine::store::prelude::*;
use beffroi_engine::store::{StoredIdentity, StoredObservation};
use beffroi_engine::{StoreError, WriteBatch};
use beffroi_testkit::postgres::Postgres;

fn territory() -> Arc<Territory> {
    Arc::new(fixture::small())
}

/// A fresh database for `case`, or `None` when PostgreSQL is not installed.
fn database(case: &str) -> Option<String> {
    Some(Postgres::shared()?.create_database(case))
}

fn raw(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect by hand")
}

fn level(time: i64) -> StoredObservation {
    let t = fixture::small();
    StoredObservation {
        device: t.device_id("g1").expect("fixture"),
        field: FieldIdx(0),
        value: Value::Number(1.0),
        time: Timestamp(time),
        received: Timestamp(time),
        trust: beffroi_core::Trust::Unauthenticated,
        quarantined: false,
    }
}

#[test]
fn the_schema_version_is_recorded_and_a_newer_one_refused() {
    let Some(url) = database("pg_schema_version") else {
        return;
    };
    drop(beffroi_store_pg::open(&url, territory()).expect("open"));
    // Opening again migrates nothing and keeps the data.
    drop(beffroi_store_pg::open(&url, territory()).expect("reopen"));
    let version: i64 = raw(&url)
        .query_one("SELECT version FROM schema_version", &[])
        .expect("version")
        .get(0);
    assert_eq!(version, i64::from(beffroi_store_pg::SCHEMA_VERSION));
    raw(&url)
        .execute("UPDATE schema_version SET version = $1", &[&(version + 1)])
        .expect("bump version");
    match beffroi_store_pg::open(&url, territory()) {
        Err(StoreError::Backend(m)) => assert!(m.contains("newer"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

/// Two processes starting on an empty database together: one migrates, the other waits
/// for it and finds the schema in place.
#[test]
fn two_stores_opening_an_empty_database_together_both_start() {
    let Some(url) = database("pg_migration_race") else {
        return;
    };
    let opened: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || beffroi_store_pg::open(&url, territory()).map(|_| ()))
        })
        .collect();
    for handle in opened {
        handle.join().expect("thread").expect("open");
    }
}

/// The server closed every session (a restart, a failover, an administrator): a call may
/// fail once, and the next one works on a new connection, for the writer and the readers.
#[test]
fn the_store_reconnects_after_the_server_closed_its_sessions() {
    let Some(url) = database("pg_reconnect") else {
        return;
    };
    let (mut store, reader) = beffroi_store_pg::open(&url, territory()).expect("open");
    let batch = |time| WriteBatch {
        observations: vec![level(time)],
        ..Default::default()
    };
    store.write(&batch(1_000)).expect("write");
    let killed: i64 = raw(&url)
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .expect("terminate")
        .get(0);
    assert!(killed >= 2, "the writer and the readers: {killed}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    if store.write(&batch(2_000)).is_err() {
        store.write(&batch(2_000)).expect("the retry reconnects");
    }
    // Readers: each pooled connection may fail once.
    let mut count = None;
    for _ in 0..=beffroi_store_pg::READERS {
        if let Ok(n) = reader.observation_count() {
            count = Some(n);
            break;
        }
    }
    assert_eq!(count, Some(2));
    assert_eq!(
        store.max_incident_id().expect("read"),
        beffroi_core::IncidentId(0)
    );
}

/// Acknowledged means durable: every batch `write` returned for is there after the server
/// stopped without a checkpoint (its start replays the WAL), the store still open then.
#[test]
fn acknowledged_batches_survive_a_server_crash() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let url = pg.create_database("crash");
    let (mut store, reader) = beffroi_store_pg::open(&url, territory()).expect("open");
    for i in 0..20 {
        store
            .write(&WriteBatch {
                observations: vec![level(i * 1_000)],
                rejections: vec![beffroi_engine::store::StoredRejection {
                    at: Timestamp(i),
                    source: beffroi_engine::Source::HTTP.as_str().into(),
                    reason: beffroi_wire::RejectReason::Malformed,
                    detail: format!("batch {i}"),
                }],
                ..Default::default()
            })
            .expect("write");
    }
    pg.crash_and_restart();
    drop((store, reader));
    let (mut store, reader) = beffroi_store_pg::open(&url, territory()).expect("reopen");
    assert_eq!(reader.observation_count().expect("count"), 20);
    assert_eq!(reader.rejections(100).expect("read").len(), 20);
    assert_eq!(store.last_seen().expect("last seen").len(), 1);
}

#[test]
fn identities_of_a_destroyed_epoch_are_forgotten() {
    use beffroi_core::Identifier;
    use beffroi_privacy::{EpochKey, Pseudonymiser};
    let Some(url) = database("pg_forget_identities") else {
        return;
    };
    let (mut store, reader) = beffroi_store_pg::open(&url, territory()).expect("open");
    let p = Pseudonymiser::new(vec![EpochKey::new(1, &[7; 32]), EpochKey::new(2, &[9; 32])])
        .expect("keys");
    let old = Pseudonymiser::new(vec![EpochKey::new(1, &[7; 32])]).expect("keys");
    let plate = p.seal(Identifier::LicencePlate, "AB-123-CD");
    let badge = old.seal(Identifier::Badge, "B-0042");
    store
        .write(&WriteBatch {
            identities: vec![
                StoredIdentity {
                    sealed: plate.clone(),
                    seen: Timestamp(2_000),
                },
                StoredIdentity {
                    sealed: badge.clone(),
                    seen: Timestamp(1_500),
                },
            ],
            ..Default::default()
        })
        .expect("write");
    // Epoch 1's key is destroyed: its rows go, epoch 2's stay.
    assert_eq!(store.forget_identities_except(&[2]).expect("forget"), 1);
    assert!(reader.identity(&plate.pseudonym.0).expect("read").is_some());
    assert_eq!(reader.identity(&badge.pseudonym.0).expect("read"), None);
}

/// The node that takes over fences the one it replaced: once the second writer took the
/// fence, every write of the first fails (a batch, a purge's record, after a reconnection
/// too) and nothing of it is stored, while the second writes on. A writer never fenced (a
/// single server on PostgreSQL) is never checked.
#[test]
fn a_writer_is_fenced_out_by_the_node_that_takes_over() {
    let Some(url) = database("pg_fence") else {
        return;
    };
    let batch = |time| WriteBatch {
        observations: vec![level(time)],
        ..Default::default()
    };
    let (mut single, _) = beffroi_store_pg::open(&url, territory()).expect("open");
    let (mut old, reader) = beffroi_store_pg::open(&url, territory()).expect("open");
    let (mut new, _) = beffroi_store_pg::open(&url, territory()).expect("open");
    let old_fence = old.fence();
    assert_eq!(old_fence.take().expect("fence"), 1);
    old.write(&batch(1_000)).expect("the holder writes");

    assert_eq!(new.fence().take().expect("fence"), 2);
    let refused = |r: Result<(), StoreError>| match r {
        Err(StoreError::Backend(m)) => assert!(m.contains("fenced"), "{m}"),
        other => panic!("expected the fence to refuse, got {other:?}"),
    };
    refused(old.write(&batch(2_000)));
    refused(old.record_purge(Timestamp(2_000), "late purge"));
    // A new connection of the old writer carries its epoch again.
    raw(&url)
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND application_name = 'beffroi'",
            &[],
        )
        .expect("terminate");
    std::thread::sleep(std::time::Duration::from_millis(100));
    // The first write finds its connection closed (the engine retries); the retry
    // reconnects and is refused.
    assert!(old.write(&batch(3_000)).is_err());
    refused(old.write(&batch(3_000)));
    if new.write(&batch(4_000)).is_err() {
        new.write(&batch(4_000)).expect("the new holder writes");
    }
    if single.write(&batch(5_000)).is_err() {
        single
            .write(&batch(5_000))
            .expect("a writer that never took a fence is not checked");
    }
    let mut count = None;
    for _ in 0..=beffroi_store_pg::READERS {
        if let Ok(n) = reader.observation_count() {
            count = Some(n);
            break;
        }
    }
    assert_eq!(
        count,
        Some(3),
        "1 000, 4 000 and 5 000; nothing of the fenced writer"
    );
    assert_eq!(old_fence.epoch(), 1);
}

/// The servers of one store compare their pseudonymisation vaults through it: the first
/// records its epochs' check values; the same vault agrees, another vault differs at the
/// epoch it does not share, and a copy from before a rotation is behind.
#[test]
fn servers_of_one_store_must_hold_the_same_vault() {
    use beffroi_store_pg::vault::VaultCheck;
    let Some(url) = database("pg_vault_checks") else {
        return;
    };
    let (mut first, _) = beffroi_store_pg::open(&url, territory()).expect("open");
    let (mut other, _) = beffroi_store_pg::open(&url, territory()).expect("open");
    let check = |e: u32, v: &str| (e, v.to_string());
    let vault = [check(1, "aa"), check(2, "bb")];
    assert_eq!(
        first.check_vault(&vault).expect("check"),
        VaultCheck::Agrees
    );
    assert_eq!(
        other.check_vault(&vault).expect("check"),
        VaultCheck::Agrees
    );
    assert_eq!(
        other
            .check_vault(&[check(1, "aa"), check(2, "zz")])
            .expect("check"),
        VaultCheck::Differs { epoch: 2 }
    );
    assert_eq!(
        other.check_vault(&[check(1, "aa")]).expect("check"),
        VaultCheck::Behind {
            recorded: 2,
            current: 1
        }
    );
    // A rotation on one server: recorded, and the others' copies are then behind.
    let rotated = [check(1, "aa"), check(2, "bb"), check(3, "cc")];
    assert_eq!(
        first.check_vault(&rotated).expect("check"),
        VaultCheck::Agrees
    );
    assert_eq!(
        other.check_vault(&vault).expect("check"),
        VaultCheck::Behind {
            recorded: 3,
            current: 2
        }
    );
    // An epoch destroyed since (its key gone from the vault) is not compared.
    assert_eq!(
        other
            .check_vault(&[check(2, "bb"), check(3, "cc")])
            .expect("check"),
        VaultCheck::Agrees
    );
}
