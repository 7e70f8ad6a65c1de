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
        target: Some(format!("INC-{i}")),
        outcome: AuditOutcome::Ok,
        detail: "{}".into(),
    }
}

fn config(dir: &std::path::Path, every: u64) -> AuditConfig {
    AuditConfig {
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
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
        beffroi_audit::AuditConfig::in_dir(dir.path()),
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
        before_seq,
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
