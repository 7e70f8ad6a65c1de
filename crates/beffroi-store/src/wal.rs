//! Keeping the write-ahead log bounded under continuous load
//! ([ADR 0019](../../../docs/adr/0019-bounded-wal-and-the-store-as-truth.md)).
//!
//! SQLite restarts the WAL from its beginning only when a writer starts a transaction
//! after a checkpoint has copied *every* frame back into the database file. A checkpoint
//! run beside a writer that commits without pause never gets there — the writer appends
//! while it copies — so the WAL grew without bound (30 GB in 15 minutes at 2,000 msg/s).
//!
//! The policy, in three steps:
//! 1. **Passive, beside the writer** ([`Checkpointer`], every [`BACKGROUND_EVERY`]): copies
//!    the bulk of the frames and pays the database file's fsync off the commit path.
//! 2. **Passive, on the writer, between two commits**, once the WAL holds
//!    [`RESTART_FRAMES`]: nothing is appended meanwhile, so it copies the few frames the
//!    background pass left and completes unless a reader still reads old frames; the
//!    next commit then restarts the WAL and `journal_size_limit` trims the file.
//! 3. **Restart mode**, once the WAL holds [`HARD_FRAMES`] (readers kept it from
//!    restarting): the writer waits up to [`RESTART_WAIT`] for readers to move to the
//!    latest snapshot, at most once per [`RESTART_MIN_GAP`].
//!
//! The writer never waits for the background pass: when it is running, the writer skips
//! and tries again after its next commit.
//!
//! The frame count comes from SQLite's WAL hook after every commit: no polling, no guess.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beffroi_engine::metrics::{CheckpointLabel, WalMetrics};
use rusqlite::Connection;

/// Frames (4 KiB pages) in the WAL from which the writer completes a checkpoint itself:
/// 16 MiB.
pub const RESTART_FRAMES: i64 = 4_096;
/// Frames from which the writer waits for readers so that the WAL can restart: 64 MiB.
pub const HARD_FRAMES: i64 = 16_384;
/// How long the writer waits for readers in restart mode.
pub const RESTART_WAIT: Duration = Duration::from_millis(200);
/// The WAL file is truncated to this size when it restarts (`journal_size_limit`).
pub const JOURNAL_SIZE_LIMIT: i64 = RESTART_FRAMES * 4096;
/// Period of the background passive checkpoint.
pub const BACKGROUND_EVERY: Duration = Duration::from_millis(250);
/// Least time between two checkpoints on the writer while a reader keeps the WAL from
/// restarting (each one costs an fsync of the database file).
pub const WRITER_MIN_GAP: Duration = Duration::from_millis(50);
/// Least time between two restart attempts (each may wait [`RESTART_WAIT`] for readers):
/// the writer spends at most a fifth of its time waiting for a reader that pins the WAL.
pub const RESTART_MIN_GAP: Duration = Duration::from_secs(1);

thread_local! {
    /// Frames in the WAL after the last commit on this thread's connection (set by the
    /// WAL hook, which SQLite calls on the committing thread).
    static FRAMES_AFTER_COMMIT: Cell<i64> = const { Cell::new(-1) };
}

fn on_commit(_: &rusqlite::hooks::Wal, frames: std::os::raw::c_int) -> rusqlite::Result<()> {
    FRAMES_AFTER_COMMIT.with(|c| c.set(i64::from(frames)));
    Ok(())
}

/// Installs the WAL hook on the writer connection (after `wal_autocheckpoint`, which
/// would replace it).
pub(crate) fn install_hook(conn: &Connection) {
    conn.wal_hook(Some(on_commit));
}

/// The outcome of one checkpoint, as `PRAGMA wal_checkpoint` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Frames in the WAL when it ran (`-1`: it could not run).
    pub log: i64,
    /// Frames copied back.
    pub copied: i64,
    pub busy: bool,
}

impl Checkpoint {
    pub fn complete(&self) -> bool {
        !self.busy && self.log >= 0 && self.log == self.copied
    }
    fn outcome(&self) -> &'static str {
        if self.log < 0 {
            "busy"
        } else if self.complete() {
            "complete"
        } else {
            "partial"
        }
    }
}

/// Who runs a checkpoint, and so its SQL mode, whether it may wait for the other one, and
/// its `mode` label in the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The background thread's periodic pass (passive).
    Background,
    /// The writer between two commits (passive, never waits).
    Writer,
    /// The writer past the hard threshold (restart, waits briefly for readers).
    Restart,
    /// The background thread's last pass on a clean stop (truncate).
    Final,
    /// The writer after deleting personal data (truncate: the deleted content must not
    /// stay in the WAL file; waits for the background pass and briefly for readers).
    Erase,
}

impl Mode {
    fn sql(self) -> &'static str {
        match self {
            Mode::Background | Mode::Writer => "PRAGMA wal_checkpoint(PASSIVE)",
            Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
            Mode::Final | Mode::Erase => "PRAGMA wal_checkpoint(TRUNCATE)",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Mode::Background => "passive",
            Mode::Writer => "writer",
            Mode::Restart | Mode::Final => "restart",
            Mode::Erase => "erase",
        }
    }
    /// The writer's checkpoints never wait for the background pass: a commit is behind.
    fn waits(self) -> bool {
        matches!(self, Mode::Background | Mode::Final | Mode::Erase)
    }
}

/// State shared by the writer and the background checkpointer.
pub(crate) struct WalShared {
    /// One checkpoint at a time: a second one would only find the lock taken.
    lock: Mutex<()>,
    metrics: Mutex<WalMetrics>,
    wal_path: PathBuf,
    /// Last error logged, so that a failing checkpoint logs once per change.
    last_error: Mutex<Option<String>>,
}

impl WalShared {
    pub(crate) fn new(db: &Path) -> Arc<WalShared> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Arc::new(WalShared {
            lock: Mutex::new(()),
            metrics: Mutex::new(WalMetrics::default()),
            wal_path: PathBuf::from(wal),
            last_error: Mutex::new(None),
        })
    }

    pub(crate) fn set_metrics(&self, m: WalMetrics) {
        *self.metrics.lock().unwrap_or_else(|p| p.into_inner()) = m;
    }

    fn metrics(&self) -> WalMetrics {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Size of the WAL file (0 when there is none).
    pub(crate) fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal_path).map_or(0, |m| m.len())
    }

    /// Runs one checkpoint in `mode` on `conn`, records it and logs a failure once per
    /// change of error. The writer's modes give up at once when the background pass is
    /// running, counted as `busy`.
    pub(crate) fn checkpoint(&self, conn: &Connection, mode: Mode) -> Option<Checkpoint> {
        let started = Instant::now();
        let _one = if mode.waits() {
            self.lock.lock().unwrap_or_else(|p| p.into_inner())
        } else {
            match self.lock.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    self.metrics()
                        .checkpoints
                        .get_or_create(&CheckpointLabel {
                            mode: "writer",
                            outcome: "busy",
                        })
                        .inc();
                    return None;
                }
            }
        };
        let r = conn.query_row(mode.sql(), [], |r| {
            Ok(Checkpoint {
                busy: r.get::<_, i64>(0)? != 0,
                log: r.get(1)?,
                copied: r.get(2)?,
            })
        });
        let took = started.elapsed();
        let m = self.metrics();
        let label_mode = mode.label();
        m.checkpoint_seconds.observe(took.as_secs_f64());
        m.last_checkpoint_seconds.set(took.as_secs_f64());
        m.bytes
            .set(i64::try_from(self.file_bytes()).unwrap_or(i64::MAX));
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(c) => {
                m.checkpoints
                    .get_or_create(&CheckpointLabel {
                        mode: label_mode,
                        outcome: c.outcome(),
                    })
                    .inc();
                m.last_checkpoint_complete.set(i64::from(c.complete()));
                if let Some(e) = last.take() {
                    tracing::info!(previous_error = %e, "WAL checkpoints succeed again");
                }
                Some(c)
            }
            Err(e) => {
                m.checkpoints
                    .get_or_create(&CheckpointLabel {
                        mode: label_mode,
                        outcome: "error",
                    })
                    .inc();
                m.last_checkpoint_complete.set(0);
                let text = e.to_string();
                if last.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "WAL checkpoint failed (logged once until it changes)");
                    *last = Some(text);
                }
                None
            }
        }
    }
}

/// The writer's side of the policy: called after every commit on the writer connection.
pub(crate) struct WalControl {
    shared: Arc<WalShared>,
    /// Frames after the previous commit, to notice a restart.
    previous_frames: i64,
    last_writer_checkpoint: Option<Instant>,
    /// A reader holding an old snapshot makes each restart attempt wait [`RESTART_WAIT`]:
    /// at most one attempt per [`RESTART_MIN_GAP`], passive checkpoints in between.
    last_restart_attempt: Option<Instant>,
    busy_timeout: Duration,
}

impl WalControl {
    pub(crate) fn new(shared: Arc<WalShared>, busy_timeout: Duration) -> WalControl {
        WalControl {
            shared,
            previous_frames: 0,
            last_writer_checkpoint: None,
            last_restart_attempt: None,
            busy_timeout,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<WalShared> {
        &self.shared
    }

    /// After a commit: records the WAL's size and, past [`RESTART_FRAMES`], completes a
    /// checkpoint so that the next commit restarts the WAL.
    pub(crate) fn after_commit(&mut self, conn: &Connection) {
        let frames = FRAMES_AFTER_COMMIT.with(|c| c.replace(-1));
        if frames < 0 {
            return;
        }
        let m = self.shared.metrics();
        m.frames.set(frames);
        if frames < self.previous_frames {
            m.restarts.inc();
            m.bytes
                .set(i64::try_from(self.shared.file_bytes()).unwrap_or(i64::MAX));
        }
        self.previous_frames = frames;
        if frames < RESTART_FRAMES {
            return;
        }
        if self
            .last_writer_checkpoint
            .is_some_and(|at| at.elapsed() < WRITER_MIN_GAP)
        {
            return;
        }
        let restart_due = self
            .last_restart_attempt
            .is_none_or(|at| at.elapsed() >= RESTART_MIN_GAP);
        let done = if frames >= HARD_FRAMES && restart_due {
            self.last_restart_attempt = Some(Instant::now());
            // Wait briefly for readers still reading old frames, never long: a commit is
            // waiting behind us.
            let _ = conn.busy_timeout(RESTART_WAIT);
            let c = self.shared.checkpoint(conn, Mode::Restart);
            let _ = conn.busy_timeout(self.busy_timeout);
            c
        } else {
            self.shared.checkpoint(conn, Mode::Writer)
        };
        // Skipped because the background pass was running: try again after the next commit.
        if done.is_some() {
            self.last_writer_checkpoint = Some(Instant::now());
        }
    }
}

impl WalControl {
    /// After a transaction that deleted or overwrote personal data (purge, erasure,
    /// destroyed epochs): copies the WAL back and truncates it, so that the old content
    /// leaves the WAL file as `secure_delete` makes it leave the database file. Waits up to
    /// [`ERASE_WAIT`] for readers on old frames, and tries again on the next erasure if
    /// they held on; whether the WAL is now empty is returned and counted.
    pub(crate) fn truncate_after_erasure(&mut self, conn: &Connection) -> bool {
        let _ = conn.busy_timeout(ERASE_WAIT);
        let c = self.shared.checkpoint(conn, Mode::Erase);
        let _ = conn.busy_timeout(self.busy_timeout);
        self.previous_frames = 0;
        let emptied = c.is_some_and(|c| c.complete()) && self.shared.file_bytes() == 0;
        if !emptied {
            tracing::warn!(
                "the WAL could not be truncated after an erasure (a reader held old frames): \
                 the next checkpoints overwrite them"
            );
        }
        emptied
    }
}

/// How long a truncation after an erasure waits for readers.
const ERASE_WAIT: Duration = Duration::from_secs(2);

const THREAD_NAME: &str = "beffroi-store-checkpoint";

/// Copies the WAL back into the database file from its own connection, every
/// [`BACKGROUND_EVERY`], in PASSIVE mode: it never blocks the writer or the readers.
pub(crate) struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn spawn(
        path: &Path,
        shared: Arc<WalShared>,
        busy_timeout: Duration,
    ) -> Result<Checkpointer, beffroi_engine::StoreError> {
        use crate::error::Context;
        let conn = Connection::open(path).map_err(|e| {
            beffroi_engine::StoreError::Backend(format!(
                "open {} for checkpoints: {e}",
                path.display()
            ))
        })?;
        conn.busy_timeout(busy_timeout).ctx("set busy timeout")?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::park_timeout(BACKGROUND_EVERY);
                    shared.checkpoint(&conn, Mode::Background);
                }
                // A last full checkpoint so that a clean stop leaves an empty WAL.
                shared.checkpoint(&conn, Mode::Final);
            })
            .map_err(|e| {
                beffroi_engine::StoreError::Backend(format!("spawn the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
