//! The cluster's audit trail in a real PostgreSQL: two nodes' logs copied into one
//! database, read back as one access log, and verified chain by chain.
#![cfg(feature = "postgres")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use beffroi_audit::mirror::{Mirror, MirrorMetrics, MirroredLog};
use beffroi_audit::pg::{self, PgAuditReader, PgMirrorTarget};
use beffroi_audit::{AuditConfig, AuditLog, Problem};
use beffroi_core::audit::{AuditOutcome, AuditQuery, AuditReader, AuditRecord, AuditSink};
use beffroi_core::{SimClock, Timestamp};
use beffroi_testkit::postgres::Postgres;

const NOW: i64 = 1_800_000_000_000;

fn open(dir: &Path) -> AuditLog {
    AuditLog::open(
        AuditConfig {
            checkpoint_every: 10,
            checkpoint_interval: Duration::from_secs(3600),
            key_file: dir.join("keys/audit-signing.key"),
            ..AuditConfig::in_dir(dir)
        },
        Arc::new(SimClock::new(Timestamp(NOW))),
    )
    .expect("open")
}

fn rec(action: &str, i: usize) -> AuditRecord {
    AuditRecord {
        at_ms: NOW + i as i64,
        actor: "dpo".into(),
        action: action.into(),
        target: Some(beffroi_core::safe_format!("INC-{i}")),
        outcome: AuditOutcome::Ok,
        detail: beffroi_core::safe_format!("{{\"i\":{i}}}"),
    }
}

fn mirror(log: &AuditLog, url: &str, node: &str) -> Mirror<PgMirrorTarget> {
    Mirror::new(
        PgMirrorTarget::new(url),
        log.path(),
        MirroredLog {
            log_id: log.log_id().to_string(),
            node: node.into(),
            public_key: *log.public_key(),
        },
        MirrorMetrics::default(),
    )
}

#[test]
fn two_nodes_logs_are_one_access_log_and_each_chain_verifies() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    let url = pg.create_database("audit_two_nodes");
    let (d1, d2) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (n1, n2) = (open(d1.path()), open(d2.path()));
    let (mut m1, mut m2) = (mirror(&n1, &url, "n1"), mirror(&n2, &url, "n2"));
    // n1 acts first, then n2 (after a takeover), then n1 again (a node back).
    for i in 0..12 {
        n1.record(rec(
            if i % 3 == 0 {
                "personal.unmask"
            } else {
                "incident.acknowledge"
            },
            i,
        ));
    }
    n1.flush().expect("flush");
    m1.catch_up().expect("copy n1");
    for i in 12..20 {
        n2.record(rec("privacy.access_log", i));
    }
    n2.checkpoint().expect("n2 signs its entries");
    m2.catch_up().expect("copy n2");
    n1.record(rec("personal.unmask", 20));
    n1.flush().expect("flush");
    m1.catch_up().expect("copy n1 again");

    // The access log: privacy entries of both nodes, newest first, paged without a gap or
    // a double.
    let reader = PgAuditReader::new(&url);
    let query = |before| AuditQuery {
        action_prefixes: vec!["personal.".into(), "privacy.".into()],
        since_ms: None,
        before,
        limit: 5,
    };
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = reader.read(&query(before)).expect("read");
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.cursor);
        seen.extend(page);
    }
    let got: Vec<(String, u64, String)> = seen
        .iter()
        .map(|e| {
            (
                e.node.clone().unwrap_or_default(),
                e.seq,
                e.record.action.clone(),
            )
        })
        .collect();
    let mut want = vec![("n1".to_string(), 13, "personal.unmask".to_string())];
    for seq in (1..=8).rev() {
        want.push(("n2".into(), seq, "privacy.access_log".into()));
    }
    for seq in [10u64, 7, 4, 1] {
        want.push(("n1".into(), seq, "personal.unmask".into()));
    }
    assert_eq!(got, want);
    // `since` and a prefix with LIKE's wildcards in it, taken literally.
    let since = reader
        .read(&AuditQuery {
            action_prefixes: vec!["personal.".into()],
            since_ms: Some(NOW + 10),
            before: None,
            limit: 100,
        })
        .expect("read");
    assert_eq!(
        since
            .iter()
            .map(|e| e.record.at_ms - NOW)
            .collect::<Vec<_>>(),
        vec![20]
    );
    let literal = reader
        .read(&AuditQuery {
            action_prefixes: vec!["personal_".into(), "%".into()],
            since_ms: None,
            before: None,
            limit: 100,
        })
        .expect("read");
    assert!(literal.is_empty(), "{literal:?}");

    // Each chain verifies with its node's key, and not with the other's.
    let mut client = pg::connect(&url, "test").expect("connect");
    let logs = pg::logs(&mut client).expect("logs");
    assert_eq!(
        logs.iter().map(|l| l.node.as_str()).collect::<Vec<_>>(),
        ["n1", "n2"]
    );
    assert_eq!(logs[0].recorded_keys, vec![*n1.public_key()]);
    let r = pg::verify_log(&mut client, n1.log_id(), &[*n1.public_key()]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!((r.entries, r.last_signed_seq), (13, Some(10)));
    let r = pg::verify_log(&mut client, n2.log_id(), &[*n1.public_key()]).expect("verify");
    assert!(!r.is_ok(), "n2's checkpoints do not verify with n1's key");

    // Our own code cannot rewrite the copy; someone who can is caught by the chain.
    let refused = client.execute(
        "UPDATE audit_entries SET actor = 'someone' WHERE seq = 4",
        &[],
    );
    assert!(
        refused.is_err(),
        "the append-only trigger refuses an update"
    );
    let refused = client.execute("DELETE FROM audit_entries WHERE seq = 4", &[]);
    assert!(refused.is_err(), "and a deletion outside a prune");
    client
        .batch_execute(
            "SET session_replication_role = replica;
             UPDATE audit_entries SET actor = 'someone' WHERE seq = 4;
             SET session_replication_role = DEFAULT;",
        )
        .expect("rewrite as the database's owner");
    let r = pg::verify_log(&mut client, n1.log_id(), &[*n1.public_key()]).expect("verify");
    assert_eq!(r.first_problem(), Some(&Problem::Altered { seq: 4 }));
}

#[test]
fn a_node_started_before_the_database_catches_up_when_it_comes() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    let url = pg.create_database("audit_late");
    let dir = tempfile::tempdir().expect("dir");
    let log = open(dir.path());
    for i in 0..3 {
        log.record(rec("personal.unmask", i));
    }
    log.flush().expect("flush");
    // A database that does not answer: the entries stay in the file, the failure counted.
    let metrics = MirrorMetrics::default();
    let mut down = Mirror::new(
        PgMirrorTarget::new("postgres://beffroi@127.0.0.1:1/none?connect_timeout=1"),
        log.path(),
        MirroredLog {
            log_id: log.log_id().to_string(),
            node: "n1".into(),
            public_key: *log.public_key(),
        },
        metrics.clone(),
    );
    assert!(down.catch_up().is_err());
    assert_eq!(metrics.failures.get(), 1);
    // The database there: everything arrives, once, even copied by two mirrors in turn.
    let mut m = mirror(&log, &url, "n1");
    assert_eq!(m.catch_up().expect("copy"), 3);
    log.record(rec("personal.unmask", 3));
    log.flush().expect("flush");
    let mut other = mirror(&log, &url, "n1");
    assert_eq!(other.catch_up().expect("copy"), 1);
    // The first one, behind, hands it again: the database keeps the one it has.
    m.catch_up().expect("a double absorbed");
    let mut client = pg::connect(&url, "test").expect("connect");
    let r = pg::verify_log(&mut client, log.log_id(), &[*log.public_key()]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.entries, 4);
}
