//! The audit log through its writer thread, on a simulated clock.

use std::sync::Arc;
use std::time::Duration;

use beffroi_audit::{AuditConfig, AuditLog, Problem, verify_log};
use beffroi_core::audit::{AuditOutcome, AuditRecord, AuditSink};
use beffroi_core::{SimClock, Timestamp};

fn rec(i: usize) -> AuditRecord {
    AuditRecord {
        at_ms: 1_700_000_000_000 + i as i64,
        actor: "admin".into(),
        action: "incident.acknowledge".into(),
        target: Some(beffroi_core::safe_format!("INC-{i}")),
        outcome: AuditOutcome::Ok,
        detail: "{}".into(),
    }
}

/// The log in `dir`, its signing key there too (its default, beside the data folder, would
/// be shared by every test's temporary folder).
fn config(dir: &std::path::Path, every: u64) -> AuditConfig {
    AuditConfig {
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
        key_file: dir.join("keys/audit-signing.key"),
        ..AuditConfig::in_dir(dir)
    }
}

fn clock() -> Arc<SimClock> {
    Arc::new(SimClock::new(Timestamp(1_700_000_000_000)))
}

#[test]
fn entries_and_checkpoints_are_written_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("open");
    for i in 0..25 {
        log.record(rec(i));
    }
    log.flush().expect("flush");
    assert_eq!(log.metrics().entries.get(), 25);
    // By count: after 10 and 20.
    assert_eq!(log.metrics().checkpoints.get(), 2);
    assert_eq!(log.metrics().unsigned.get(), 5);
    let key = *log.public_key();
    log.close().expect("close");
    // The final checkpoint at shutdown.
    let r = verify_log(&dir.path().join("audit.sqlite"), &[key]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!((r.entries, r.checkpoints), (25, 3));
    assert_eq!(r.last_signed_seq, Some(25));
    assert_eq!(r.unsigned, 0);
    // The public key file is the key the log signs with.
    let pinned =
        beffroi_audit::key::read_public(&dir.path().join("audit-signing.pub")).expect("public key");
    assert_eq!(pinned, key);

    // Reopened, the chain continues from where it stopped, with the same key.
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("reopen");
    log.record(rec(25));
    log.close().expect("close");
    let r = verify_log(&dir.path().join("audit.sqlite"), &[key]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!((r.entries, r.last_signed_seq), (26, Some(26)));
}

#[test]
fn a_checkpoint_is_signed_when_the_interval_has_passed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let log = AuditLog::open(config(dir.path(), 0), clock.clone()).expect("open");
    log.record(rec(0));
    log.flush().expect("flush");
    assert_eq!(log.metrics().checkpoints.get(), 0);
    clock.advance(beffroi_core::Duration::from_secs(3600));
    log.record(rec(1));
    log.flush().expect("flush");
    assert_eq!(log.metrics().checkpoints.get(), 1);
    assert_eq!(log.metrics().unsigned.get(), 0);
    // Nothing unsigned: close adds no checkpoint.
    log.close().expect("close");
    assert_eq!(log.metrics().checkpoints.get(), 1);
}

#[test]
fn a_small_queue_makes_callers_wait_but_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = AuditConfig {
        queue: 1,
        ..config(dir.path(), 50)
    };
    let log = Arc::new(AuditLog::open(cfg, clock()).expect("open"));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..100 {
                    log.record(rec(t * 100 + i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    log.close().expect("close");
    assert_eq!(log.metrics().entries.get(), 400);
    assert_eq!(log.metrics().lost.get(), 0);
    let r = verify_log(&dir.path().join("audit.sqlite"), &[*log.public_key()]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.entries, 400);
    // After close, a record is counted as lost, not silently dropped.
    log.record(rec(0));
    assert_eq!(log.metrics().lost.get(), 1);
}

#[test]
fn the_database_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 1), clock()).expect("open");
    log.record(rec(0));
    log.close().expect("close");
    let conn = rusqlite::Connection::open(dir.path().join("audit.sqlite")).expect("sqlite");
    for sql in [
        "UPDATE entries SET actor = 'x'",
        "DELETE FROM entries",
        "DELETE FROM checkpoints",
    ] {
        let e = conn.execute(sql, []).expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
}

#[test]
fn a_log_verified_with_another_key_fails_at_its_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 2), clock()).expect("open");
    for i in 0..4 {
        log.record(rec(i));
    }
    log.close().expect("close");
    let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    let r = verify_log(&dir.path().join("audit.sqlite"), &[other]).expect("verify");
    assert!(matches!(
        r.first_problem(),
        Some(Problem::BadSignature { seq: 2, .. })
    ));
}

/// The read side: prefixes, time, paging, newest first.
#[test]
fn reads_back_by_action_prefix_newest_first() {
    use beffroi_core::audit::{AuditQuery, AuditReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let log = beffroi_audit::AuditLog::open(
        config(dir.path(), 100),
        std::sync::Arc::new(beffroi_core::SimClock::new(beffroi_core::Timestamp(1_000))),
    )
    .expect("open");
    let actions = [
        "auth.login",
        "personal.unmask",
        "incident.action",
        "privacy.hold",
        "access.privacy.access_log",
        "privacyx",
        "personal.read",
    ];
    for (i, a) in actions.iter().enumerate() {
        beffroi_core::AuditSink::record(
            &log,
            beffroi_core::AuditRecord {
                at_ms: 1_000 + i as i64,
                actor: "dpo".into(),
                action: (*a).into(),
                target: None,
                outcome: beffroi_core::AuditOutcome::Denied,
                detail: "{}".into(),
            },
        );
    }
    log.flush().expect("flush");
    let q = |since_ms, before_seq, limit| AuditQuery {
        action_prefixes: vec![
            "personal.".into(),
            "privacy.".into(),
            "access.privacy.".into(),
        ],
        since_ms,
        before: before_seq,
        limit,
    };
    let got: Vec<String> = log
        .read(&q(None, None, 10))
        .expect("read")
        .into_iter()
        .map(|e| e.record.action)
        .collect();
    assert_eq!(
        got,
        [
            "personal.read",
            "access.privacy.access_log",
            "privacy.hold",
            "personal.unmask"
        ]
    );
    let page = log.read(&q(None, None, 2)).expect("read");
    assert_eq!(page.len(), 2);
    let next = log.read(&q(None, Some(page[1].seq), 10)).expect("read");
    assert_eq!(next.len(), 2);
    assert_eq!(next[0].record.action, "privacy.hold");
    assert_eq!(log.read(&q(Some(1_004), None, 10)).expect("read").len(), 2);
    assert_eq!(next[0].record.outcome, beffroi_core::AuditOutcome::Denied);
    let bad = AuditQuery {
        action_prefixes: vec!["a*".into()],
        ..AuditQuery::default()
    };
    assert!(log.read(&bad).is_err());
}

fn anchor_in(dir: &std::path::Path) -> beffroi_audit::Anchor {
    beffroi_audit::anchor::read(&dir.join(beffroi_audit::ANCHOR_FILE))
        .expect("read the anchor")
        .expect("an anchor")
}

/// A closed log of `n` entries, a checkpoint every 5; its public key.
fn closed_log(dir: &std::path::Path, n: usize) -> ed25519_dalek::VerifyingKey {
    let log = AuditLog::open(config(dir, 5), clock()).expect("open");
    for i in 0..n {
        log.record(rec(i));
    }
    let key = *log.public_key();
    log.close().expect("close");
    key
}

fn delete_log(dir: &std::path::Path) {
    for f in ["audit.sqlite", "audit.sqlite-wal", "audit.sqlite-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn refusal(r: Result<AuditLog, beffroi_audit::AuditError>) -> String {
    match r {
        Err(e @ beffroi_audit::AuditError::Refused { .. }) => e.to_string(),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn the_anchor_follows_every_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 100), clock()).expect("open");
    let empty = anchor_in(dir.path());
    assert_eq!(
        (empty.seq, empty.hash.as_str()),
        (0, "0".repeat(64).as_str())
    );
    for i in 0..3 {
        log.record(rec(i));
    }
    log.flush().expect("flush");
    let a = anchor_in(dir.path());
    assert_eq!(a.log_id, empty.log_id);
    assert_eq!(a.seq, 3);
    let conn = beffroi_audit::store::open_reader(&dir.path().join("audit.sqlite")).expect("open");
    let path = dir.path().join("audit.sqlite");
    assert_eq!(
        beffroi_audit::store::hash_at(&conn, &path, 3).expect("hash"),
        Some(a.hash.clone())
    );
    assert_eq!(
        beffroi_audit::store::log_id(&conn, &path).expect("id"),
        Some(a.log_id)
    );
}

#[test]
fn a_log_cut_at_a_checkpoint_is_refused_and_fails_against_its_anchor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = closed_log(dir.path(), 20);
    let path = dir.path().join("audit.sqlite");
    let c = rusqlite::Connection::open(&path).expect("sqlite");
    c.execute_batch(
        "DROP TRIGGER entries_append_only_delete; DROP TRIGGER checkpoints_append_only_delete;
         DELETE FROM entries WHERE seq > 15; DELETE FROM checkpoints WHERE seq > 15;",
    )
    .expect("cut");
    drop(c);
    // The chain and the checkpoints left hold: alone, the log looks whole.
    let alone = verify_log(&path, &[key]).expect("verify");
    assert!(alone.is_ok() && alone.unsigned == 0, "{alone:?}");
    let anchor = anchor_in(dir.path());
    let r = beffroi_audit::verify_log_with(&path, &[key], Some(&anchor), &[]).expect("verify");
    assert_eq!(
        r.first_problem(),
        Some(&Problem::CutBeforeAnchor {
            anchored: 20,
            last: 15
        })
    );
    let e = refusal(AuditLog::open(config(dir.path(), 5), clock()));
    assert!(
        e.contains("ends at seq 15") && e.contains("up to seq 20"),
        "{e}"
    );
}

#[test]
fn a_missing_log_is_refused_unless_a_reason_is_given_and_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = closed_log(dir.path(), 7);
    let before = anchor_in(dir.path());
    delete_log(dir.path());
    let e = refusal(AuditLog::open(config(dir.path(), 5), clock()));
    assert!(e.contains("missing or empty"), "{e}");
    assert!(!dir.path().join("audit.sqlite").exists(), "nothing made");

    let log = AuditLog::open_checked(
        config(dir.path(), 5),
        clock(),
        beffroi_audit::Continuity {
            data_present: true,
            new_log_reason: Some("disk replaced".into()),
        },
    )
    .expect("a new log, deliberately");
    log.close().expect("close");
    let path = dir.path().join("audit.sqlite");
    let entries = beffroi_audit::read_entries(
        &path,
        &beffroi_core::audit::AuditQuery {
            action_prefixes: vec!["audit.".into()],
            since_ms: None,
            before: None,
            limit: 10,
        },
    )
    .expect("read");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, 1);
    assert_eq!(entries[0].record.action, "audit.log.new");
    let detail: serde_json::Value = serde_json::from_str(&entries[0].record.detail).expect("json");
    assert_eq!(detail["reason"], "disk replaced");
    assert_eq!(detail["previous"]["log_id"], before.log_id.as_str());
    assert_eq!(detail["previous"]["seq"], 7);
    // Signed at once, anchored anew.
    let after = anchor_in(dir.path());
    assert_ne!(after.log_id, before.log_id);
    let r = beffroi_audit::verify_log_with(&path, &[key], Some(&after), &[]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!((r.last_signed_seq, r.unsigned), (Some(1), 0));
}

#[test]
fn an_empty_folder_beside_data_or_a_lost_anchor_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let holds_data = beffroi_audit::Continuity {
        data_present: true,
        new_log_reason: None,
    };
    let e = refusal(AuditLog::open_checked(
        config(dir.path(), 5),
        clock(),
        holds_data.clone(),
    ));
    assert!(e.contains("the data folder holds data"), "{e}");
    // A log that had an anchor and lost it.
    closed_log(dir.path(), 3);
    std::fs::remove_file(dir.path().join(beffroi_audit::ANCHOR_FILE)).expect("rm");
    let e = refusal(AuditLog::open(config(dir.path(), 5), clock()));
    assert!(e.contains("anchor is missing"), "{e}");
    let log = AuditLog::open_checked(
        config(dir.path(), 5),
        clock(),
        beffroi_audit::Continuity {
            data_present: true,
            new_log_reason: Some("restored from backup".into()),
        },
    )
    .expect("anchored again");
    log.close().expect("close");
    assert_eq!(anchor_in(dir.path()).seq, 4, "audit.anchor.new is entry 4");
}

#[test]
fn a_log_made_before_anchors_is_anchored_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 3);
    // What an earlier version left: schema 1, no identity, no anchor.
    let c = rusqlite::Connection::open(dir.path().join("audit.sqlite")).expect("sqlite");
    c.execute_batch("DROP TABLE log_meta; PRAGMA user_version = 1;")
        .expect("downgrade");
    drop(c);
    std::fs::remove_file(dir.path().join(beffroi_audit::ANCHOR_FILE)).expect("rm");
    let log = AuditLog::open(config(dir.path(), 5), clock()).expect("an older log opens");
    log.close().expect("close");
    let a = anchor_in(dir.path());
    assert_eq!(a.seq, 4);
    let last = beffroi_audit::read_entries(
        &dir.path().join("audit.sqlite"),
        &beffroi_core::audit::AuditQuery {
            action_prefixes: vec![],
            since_ms: None,
            before: None,
            limit: 1,
        },
    )
    .expect("read");
    assert_eq!(last[0].record.action, "audit.anchor.new");
    assert!(last[0].record.detail.contains("before anchors"), "{last:?}");
}

#[test]
fn a_log_of_a_newer_release_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 3);
    let path = dir.path().join("audit.sqlite");
    let newer = beffroi_audit::store::SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&path)
        .expect("sqlite")
        .pragma_update(None, "user_version", newer)
        .expect("a newer release's version");
    let e = AuditLog::open(config(dir.path(), 5), clock())
        .err()
        .expect("refused");
    assert!(
        matches!(e, beffroi_audit::AuditError::Schema { found, .. } if found == newer),
        "{e}"
    );
    assert!(e.to_string().contains("newer Beffroi"), "{e}");
    let c = rusqlite::Connection::open(&path).expect("sqlite");
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(v, newer);
}

#[test]
fn a_log_written_before_versions_is_taken_as_version_one_and_upgraded() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 3);
    // The first release wrote its tables and no version, no identity, no anchor.
    let c = rusqlite::Connection::open(dir.path().join("audit.sqlite")).expect("sqlite");
    c.execute_batch("DROP TABLE log_meta; PRAGMA user_version = 0;")
        .expect("downgrade");
    drop(c);
    std::fs::remove_file(dir.path().join(beffroi_audit::ANCHOR_FILE)).expect("rm");
    let log = AuditLog::open(config(dir.path(), 5), clock()).expect("opens");
    log.close().expect("close");
    let c = rusqlite::Connection::open(dir.path().join("audit.sqlite")).expect("sqlite");
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(v, beffroi_audit::store::SCHEMA_VERSION);
    let entries: i64 = c
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .expect("count");
    assert_eq!(entries, 4, "three entries kept, the re-anchoring recorded");
}
