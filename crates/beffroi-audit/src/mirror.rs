//! A copy of the log kept elsewhere, entry by entry: a cluster's nodes each write their own
//! log and copy it to the database they share, so that a node lost with its disk takes no
//! audited act with it, and the DPO reads every node's entries on any node.
//!
//! The local file stays the log of record (it is written first, signed, anchored); a
//! [`Mirror`] follows it with a read-only connection and hands what the target lacks to a
//! [`MirrorTarget`] in pages: the entries after the target's last one, the checkpoints
//! that sign them, and the prunes they record, in one call the target applies atomically.
//! It never blocks the writer: a target that is down makes it lag (counted, and caught up
//! when the target returns, or at the node's next start), never makes a caller wait.
//!
//! The chain travels as it is stored (seq, prev hash, hash), so that the copy is checked
//! with the same verifier ([`crate::chain::verify`]) and the same keys as the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::chain::{PRUNE_ACTION, PruneRecord, StoredCheckpoint, StoredEntry};
use crate::{AuditError, store};

/// Entries handed to the target per call, at most.
pub const PAGE: u32 = 500;

/// The mirror could not copy: the target refused or is unreachable, or the local file could
/// not be read.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("audit mirror target: {0}")]
    Target(String),
    #[error(transparent)]
    Local(#[from] AuditError),
    /// The target holds another entry at a seq the file holds too: one of them was
    /// rewritten. The mirror stops copying this log (`beffroi audit verify` says which).
    #[error("audit mirror: the target's entry {seq} of log {log_id} differs from the file's")]
    Diverged { log_id: String, seq: i64 },
}

/// Which log is copied: its identity (the file's `log_id`), the node that writes it, and
/// the key that signs its checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredLog {
    pub log_id: String,
    pub node: String,
    pub public_key: VerifyingKey,
}

/// What the target holds of a log, as [`MirrorTarget::register`] reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetTail {
    /// Its last entry: (seq, hash).
    pub entry: Option<(i64, String)>,
    /// The highest seq a checkpoint it holds signs.
    pub checkpoint_seq: Option<i64>,
}

/// One call's worth of copy, applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorPage {
    /// Entries after the target's last one, in seq order.
    pub entries: Vec<StoredEntry>,
    /// Checkpoints the target lacks that sign one of them or an earlier entry.
    pub checkpoints: Vec<StoredCheckpoint>,
    /// A prune the entries record: the first seq kept. The target deletes the entries
    /// before it and the checkpoints before the one that sealed the prune, as the file did.
    pub prune_before: Option<i64>,
}

/// Where a log is copied to. Implementations are blocking (the mirror runs on a thread of
/// its own).
pub trait MirrorTarget: Send {
    /// Records the log (its node and key; known keys are kept) and says what it holds.
    fn register(&mut self, log: &MirroredLog) -> Result<TargetTail, MirrorError>;
    /// Applies `page` atomically: all of it or nothing. Entries and checkpoints it already
    /// holds are kept as they are.
    fn apply(&mut self, log_id: &str, page: &MirrorPage) -> Result<(), MirrorError>;
}

/// Bumped by the log's writer after each transaction, so that the mirror copies at once
/// rather than at its next poll.
#[derive(Debug, Default)]
pub struct CommitSignal {
    count: Mutex<u64>,
    cv: Condvar,
}

impl CommitSignal {
    pub fn bump(&self) {
        let mut c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *c = c.wrapping_add(1);
        self.cv.notify_all();
    }

    /// The count now.
    pub fn seen(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the count differs from `seen` or `timeout` passes; returns the count.
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let (c, _) = self
            .cv
            .wait_timeout_while(c, timeout, |c| *c == seen)
            .unwrap_or_else(|p| p.into_inner());
        *c
    }
}

/// The mirror's counters, registered as `beffroi_audit_mirror_*`.
#[derive(Clone, Debug, Default)]
pub struct MirrorMetrics {
    /// Entries the target accepted.
    pub entries: Counter,
    /// Passes that failed (the target unreachable or refusing).
    pub failures: Counter,
    /// Entries of the file the target does not hold yet, after the last pass.
    pub lag: Gauge,
}

impl MirrorMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "audit_mirror_entries",
            "Audit entries copied to the cluster's database",
            self.entries.clone(),
        );
        r.register(
            "audit_mirror_failures",
            "Copies of the audit log to the cluster's database that failed (retried)",
            self.failures.clone(),
        );
        r.register(
            "audit_mirror_lag_entries",
            "Audit entries of this node not yet in the cluster's database",
            self.lag.clone(),
        );
    }
}

/// Follows one log file and copies it to a target.
pub struct Mirror<T: MirrorTarget> {
    target: T,
    path: PathBuf,
    log: MirroredLog,
    /// What the target holds, once registered.
    tail: Option<TargetTail>,
    metrics: MirrorMetrics,
}

impl<T: MirrorTarget> Mirror<T> {
    pub fn new(target: T, path: &Path, log: MirroredLog, metrics: MirrorMetrics) -> Mirror<T> {
        Mirror {
            target,
            path: path.to_path_buf(),
            log,
            tail: None,
            metrics,
        }
    }

    /// Copies everything the file holds that the target lacks; returns how many entries
    /// went. Blocking. A failure leaves the target as it was after its last whole page;
    /// the next call asks it again where it stands.
    pub fn catch_up(&mut self) -> Result<u64, MirrorError> {
        let r = self.pass();
        if r.is_err() {
            self.metrics.failures.inc();
            // Ask the target again next time: a page may or may not have landed.
            self.tail = None;
        }
        r
    }

    fn pass(&mut self) -> Result<u64, MirrorError> {
        let mut tail = match self.tail.take() {
            Some(t) => t,
            None => self.target.register(&self.log)?,
        };
        let conn = store::open_reader(&self.path)?;
        let mut copied = 0u64;
        loop {
            let from = tail.entry.as_ref().map_or(1, |(s, _)| s + 1);
            if let Some((seq, hash)) = &tail.entry
                && let Some(mine) = store::hash_at(&conn, &self.path, *seq as u64)?
                && mine != *hash
            {
                return Err(MirrorError::Diverged {
                    log_id: self.log.log_id.clone(),
                    seq: *seq,
                });
            }
            let entries = store::entries_page(&conn, &self.path, from, PAGE)?;
            let last = entries.last().map(|e| (e.seq, e.hash.clone()));
            let upto = last
                .as_ref()
                .map(|(s, _)| *s)
                .or(tail.entry.as_ref().map(|(s, _)| *s));
            let signed_from = tail.checkpoint_seq.map_or(i64::MIN, |s| s + 1);
            // Only those the target lacks: a log signs every minute, and this runs after
            // every commit.
            let checkpoints: Vec<StoredCheckpoint> = match upto {
                Some(u) if signed_from <= u => {
                    store::checkpoints_between(&conn, &self.path, signed_from, u)?
                }
                _ => Vec::new(),
            };
            if entries.is_empty() && checkpoints.is_empty() {
                self.metrics.lag.set(0);
                self.tail = Some(tail);
                return Ok(copied);
            }
            let prune_before = entries
                .iter()
                .filter(|e| e.action == PRUNE_ACTION)
                .filter_map(|e| PruneRecord::parse(&e.detail))
                .map(|p| p.first_kept_seq)
                .max();
            let n = entries.len() as u64;
            let page = MirrorPage {
                entries,
                checkpoints,
                prune_before,
            };
            self.target.apply(&self.log.log_id, &page)?;
            copied += n;
            self.metrics.entries.inc_by(n);
            if let Some(last) = last {
                tail.entry = Some(last);
            }
            if let Some(max) = page.checkpoints.iter().map(|c| c.seq).max() {
                tail.checkpoint_seq = Some(tail.checkpoint_seq.map_or(max, |s| s.max(max)));
            }
            let behind = store::tail(&conn)
                .map_err(|e| AuditError::Db {
                    path: self.path.clone(),
                    source: e,
                })?
                .map_or(0, |(s, _)| s - tail.entry.as_ref().map_or(0, |(t, _)| *t));
            self.metrics.lag.set(behind.max(0));
        }
    }

    /// Runs the mirror on a thread of its own: a pass after every commit of the writer
    /// (`signal`) and at least every `poll`, retried with a backoff up to `poll` after a
    /// failure. [`MirrorHandle::stop`] makes a last pass.
    pub fn spawn(
        mut self,
        signal: Arc<CommitSignal>,
        poll: Duration,
    ) -> Result<MirrorHandle, AuditError>
    where
        T: 'static,
    {
        let stop = Arc::new(StopFlag::default());
        let flag = Arc::clone(&stop);
        let path = self.path.clone();
        let wake = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("audit-mirror".into())
            .spawn(move || {
                let mut seen = signal.seen();
                let mut backoff = Duration::from_millis(100);
                let mut failing = false;
                loop {
                    let last = flag.is_set();
                    match self.catch_up() {
                        Ok(n) => {
                            if failing {
                                tracing::info!(copied = n, "audit mirror: copying again");
                            }
                            failing = false;
                            backoff = Duration::from_millis(100);
                        }
                        Err(e) => {
                            if !failing || last {
                                tracing::warn!(error = %e, "audit mirror: copy failed, retrying (the entries stay in this node's log)");
                            }
                            failing = true;
                        }
                    }
                    if last {
                        return;
                    }
                    let wait = if failing {
                        let w = backoff;
                        backoff = (backoff * 2).min(poll);
                        w
                    } else {
                        poll
                    };
                    seen = signal.wait_past(seen, wait);
                }
            })
            .map_err(|e| AuditError::Io { path, source: e })?;
        Ok(MirrorHandle {
            stop,
            wake,
            thread: Mutex::new(Some(thread)),
        })
    }
}

#[derive(Debug, Default)]
struct StopFlag(std::sync::atomic::AtomicBool);

impl StopFlag {
    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A running mirror.
pub struct MirrorHandle {
    stop: Arc<StopFlag>,
    wake: Arc<CommitSignal>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MirrorHandle {
    /// Makes a last pass (what the log committed before, its final checkpoint included)
    /// and stops. Blocking; idempotent.
    pub fn stop(&self) {
        self.stop
            .0
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.bump();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && t.join().is_err()
        {
            tracing::error!("audit mirror: the thread panicked");
        }
    }
}

impl Drop for MirrorHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
