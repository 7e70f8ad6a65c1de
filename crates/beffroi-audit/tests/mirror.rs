//! The mirror follows a log file and copies it to a target: everything once, in order,
//! checkpoints and prunes included, across target failures and a prune it lagged behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beffroi_audit::chain::{self, StoredCheckpoint, StoredEntry};
use beffroi_audit::mirror::{
    Mirror, MirrorError, MirrorMetrics, MirrorPage, MirrorTarget, MirroredLog, TargetTail,
};
use beffroi_audit::{AuditConfig, AuditLog, PruneRequest};
use beffroi_core::audit::{AuditOutcome, AuditRecord, AuditSink};
use beffroi_core::{SimClock, Timestamp};

const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn config(dir: &Path, every: u64) -> AuditConfig {
    AuditConfig {
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
        key_file: dir.join("keys/audit-signing.key"),
        ..AuditConfig::in_dir(dir)
    }
}

fn open(dir: &Path) -> AuditLog {
    AuditLog::open(config(dir, 10), Arc::new(SimClock::new(Timestamp(NOW)))).expect("open")
}

fn rec(at_ms: i64, i: usize) -> AuditRecord {
    AuditRecord {
        at_ms,
        actor: "dpo".into(),
        action: "personal.unmask".into(),
        target: Some(beffroi_core::safe_format!("INC-{i}")),
        outcome: AuditOutcome::Ok,
        detail: "{}".into(),
    }
}

/// A target in memory, as a database would hold it; `fail` makes the next calls fail.
#[derive(Clone, Default)]
struct Memory {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    logs: BTreeMap<String, String>,
    entries: BTreeMap<i64, StoredEntry>,
    checkpoints: Vec<StoredCheckpoint>,
    pages: usize,
    /// Calls to fail, any of them.
    fail: usize,
    /// `apply` calls to fail (after a successful `register`).
    fail_apply: usize,
}

impl Memory {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().expect("state")
    }
    fn verify(&self, key: &ed25519_dalek::VerifyingKey) -> chain::Report {
        let s = self.state();
        chain::verify(s.entries.values().cloned(), &s.checkpoints, &[*key])
    }
}

impl MirrorTarget for Memory {
    fn register(&mut self, log: &MirroredLog) -> Result<TargetTail, MirrorError> {
        let mut s = self.state();
        if s.fail > 0 {
            s.fail -= 1;
            return Err(MirrorError::Target("down".into()));
        }
        s.logs.insert(log.log_id.clone(), log.node.clone());
        Ok(TargetTail {
            entry: s
                .entries
                .values()
                .next_back()
                .map(|e| (e.seq, e.hash.clone())),
            checkpoint_seq: s.checkpoints.iter().map(|c| c.seq).max(),
        })
    }

    fn apply(&mut self, _log_id: &str, page: &MirrorPage) -> Result<(), MirrorError> {
        let mut s = self.state();
        if s.fail > 0 || s.fail_apply > 0 {
            s.fail = s.fail.saturating_sub(1);
            s.fail_apply = s.fail_apply.saturating_sub(1);
            return Err(MirrorError::Target("down".into()));
        }
        s.pages += 1;
        for e in &page.entries {
            assert!(
                !s.entries.contains_key(&e.seq),
                "entry {} copied twice",
                e.seq
            );
            s.entries.insert(e.seq, e.clone());
        }
        for c in &page.checkpoints {
            assert!(!s.checkpoints.contains(c), "checkpoint {} twice", c.seq);
            s.checkpoints.push(c.clone());
        }
        if let Some(first) = page.prune_before {
            s.entries.retain(|seq, _| *seq >= first);
            s.checkpoints.retain(|c| c.seq >= first - 1);
        }
        Ok(())
    }
}

fn mirror_of(log: &AuditLog, target: &Memory, metrics: &MirrorMetrics) -> Mirror<Memory> {
    Mirror::new(
        target.clone(),
        log.path(),
        MirroredLog {
            log_id: log.log_id().to_string(),
            node: "n1".into(),
            public_key: *log.public_key(),
        },
        metrics.clone(),
    )
}

#[test]
fn everything_is_copied_once_in_order_and_the_copy_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    for i in 0..25 {
        log.record(rec(NOW + i as i64, i));
    }
    log.flush().expect("flush");
    let target = Memory::default();
    let metrics = MirrorMetrics::default();
    let mut m = mirror_of(&log, &target, &metrics);
    assert_eq!(m.catch_up().expect("copy"), 25);
    assert_eq!(m.catch_up().expect("nothing new"), 0);
    // Seq 10 and 20 are signed; the tail is not yet.
    let r = target.verify(log.public_key());
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(
        (r.entries, r.last_signed_seq, r.unsigned),
        (25, Some(20), 5)
    );

    // More entries, and a checkpoint of entries already copied, arrive later.
    for i in 25..32 {
        log.record(rec(NOW + i as i64, i));
    }
    log.checkpoint().expect("checkpoint");
    assert_eq!(m.catch_up().expect("copy"), 7);
    let r = target.verify(log.public_key());
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(
        (r.entries, r.last_signed_seq, r.unsigned),
        (32, Some(32), 0)
    );
    assert_eq!(metrics.entries.get(), 32);
    assert_eq!(metrics.lag.get(), 0);
    assert_eq!(
        target.state().logs.get(log.log_id()).map(String::as_str),
        Some("n1")
    );
}

#[test]
fn a_target_down_is_retried_and_nothing_is_lost_nor_doubled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    for i in 0..1_200 {
        log.record(rec(NOW + i as i64, i));
    }
    log.flush().expect("flush");
    let target = Memory::default();
    let metrics = MirrorMetrics::default();
    let mut m = mirror_of(&log, &target, &metrics);
    // Down at once.
    target.state().fail = 1;
    assert!(matches!(m.catch_up(), Err(MirrorError::Target(_))));
    assert_eq!(metrics.failures.get(), 1);
    assert!(target.state().entries.is_empty());
    // Copies in pages of 500: 1,200 entries are three.
    assert_eq!(m.catch_up().expect("copy"), 1_200);
    assert_eq!(target.state().pages, 3);
    for i in 1_200..1_300 {
        log.record(rec(NOW + i as i64, i));
    }
    log.flush().expect("flush");
    // Down in the middle of a pass, after it knew where the target stood: the next pass
    // asks again.
    target.state().fail_apply = 1;
    assert!(m.catch_up().is_err());
    assert_eq!(metrics.failures.get(), 2);
    assert_eq!(m.catch_up().expect("copy"), 100);
    let r = target.verify(log.public_key());
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.entries, 1_300);
}

#[test]
fn a_prune_is_applied_to_the_copy_even_when_the_mirror_lagged_behind_it() {
    for lagged in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path());
        // 30 entries of 400 days ago (signed at 10, 20, 30), 5 of today.
        for i in 0..30 {
            log.record(rec(NOW - 400 * DAY + i as i64, i));
        }
        for i in 30..35 {
            log.record(rec(NOW - 1_000 + i as i64, i));
        }
        log.flush().expect("flush");
        let target = Memory::default();
        let metrics = MirrorMetrics::default();
        let mut m = mirror_of(&log, &target, &metrics);
        if lagged {
            // Only what the file held up to seq 12 reached the target before the prune.
            let conn = beffroi_audit::store::open_reader(log.path()).expect("reader");
            let first =
                beffroi_audit::store::entries_page(&conn, log.path(), 1, 12).expect("entries");
            let mut t = target.clone();
            t.register(&MirroredLog {
                log_id: log.log_id().into(),
                node: "n1".into(),
                public_key: *log.public_key(),
            })
            .expect("register");
            let cps = beffroi_audit::store::checkpoints(&conn, log.path()).expect("checkpoints");
            t.apply(
                log.log_id(),
                &MirrorPage {
                    entries: first,
                    checkpoints: cps.into_iter().filter(|c| c.seq <= 12).collect(),
                    prune_before: None,
                },
            )
            .expect("apply");
        } else {
            m.catch_up().expect("copy");
        }
        let out = log
            .prune(PruneRequest {
                retain: Duration::from_secs(365 * 86_400),
                held_from_ms: None,
                actor: "system".into(),
            })
            .expect("prune");
        assert_eq!(out.recorded_seq, Some(36));
        m.catch_up().expect("copy the prune");
        let s = target.state();
        let seqs: Vec<i64> = s.entries.keys().copied().collect();
        assert_eq!(seqs, (31..=36).collect::<Vec<_>>(), "lagged: {lagged}");
        drop(s);
        let r = target.verify(log.public_key());
        assert!(r.is_ok(), "lagged {lagged}: {:?}", r.problems);
        assert_eq!(r.pruned, Some((31, 36)));
    }
}

#[test]
fn a_copy_that_differs_from_the_file_stops_the_mirror() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    for i in 0..5 {
        log.record(rec(NOW + i as i64, i));
    }
    log.flush().expect("flush");
    let target = Memory::default();
    let metrics = MirrorMetrics::default();
    let mut m = mirror_of(&log, &target, &metrics);
    m.catch_up().expect("copy");
    // Someone rewrote the target's last entry.
    if let Some(e) = target.state().entries.get_mut(&5) {
        e.hash = "00".repeat(32);
    }
    log.record(rec(NOW + 10, 10));
    log.flush().expect("flush");
    // A fresh mirror (a restarted node) asks the target where it stands.
    let mut again = mirror_of(&log, &target, &metrics);
    match again.catch_up() {
        Err(MirrorError::Diverged { seq, .. }) => assert_eq!(seq, 5),
        other => panic!("expected a divergence, got {other:?}"),
    }
    assert_eq!(target.state().entries.len(), 5, "nothing copied past it");
}

#[test]
fn the_running_mirror_copies_what_the_log_committed_before_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let target = Memory::default();
    let metrics = MirrorMetrics::default();
    let handle = mirror_of(&log, &target, &metrics)
        .spawn(log.commits(), Duration::from_secs(3600))
        .expect("spawn");
    for i in 0..7 {
        log.record(rec(NOW + i as i64, i));
    }
    log.close().expect("close: a final checkpoint");
    // The last pass copies the entries and the final checkpoint.
    handle.stop();
    let r = target.verify(log.public_key());
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!((r.entries, r.last_signed_seq, r.unsigned), (7, Some(7), 0));
}
