//! The tamper-evident audit log (ADR 0010).
//!
//! An append-only, hash-chained log in its own SQLite file (`<data_dir>/audit.sqlite`):
//! every entry carries its seq, wall-clock time, actor, action, target, outcome and detail,
//! the hash of the entry before it and its own hash, SHA-256 over an unambiguous encoding
//! of all of these ([`chain::entry_hash`]). Every `checkpoint_every` entries, every
//! `checkpoint_interval` and at shutdown, the writer signs the last entry's (seq, hash) and
//! the time with an Ed25519 key kept in a file apart from the database
//! ([`key::load_or_create`]), outside the data folder by default ([`default_key_file`]).
//!
//! The data folder keeps an [`anchor`]: the log's identity and its last committed entry,
//! rewritten after every commit. [`AuditLog::open_checked`] refuses a log that is missing,
//! empty, replaced or cut while the data folder says otherwise, unless the caller gives a
//! reason to start anew (recorded as the new log's first entry).
//!
//! - [`AuditLog`] is the [`AuditSink`] the server hands to whatever acts on someone's behalf:
//!   `record` hands the record to a dedicated writer thread over a bounded queue; a full
//!   queue makes the caller wait (counted in `beffroi_audit_queue_waits_total`), never drops.
//! - [`AuditLog`] is also the [`AuditReader`] of the DPO's access log: each read opens the
//!   file read-only (blocking; the API calls it in `spawn_blocking`), newest entries first.
//! - [`verify_log`] checks a log file: the chain and every checkpoint signature, and names the
//!   first entry altered, removed or inserted ([`chain::Problem`]); [`verify_log_with`] also
//!   checks the log against its anchor and against checkpoints exported off the host.
//!   `beffroi audit verify` prints its report.
//!
//! - [`mirror`] copies the log elsewhere as it is written; [`pg`] (feature `postgres`) is
//!   that elsewhere for a cluster: every node's log in the shared database, read back as
//!   one access log and verified chain by chain (ADR 0045).
//!
//! **Architecture invariant:** the chain and the verification ([`chain`]) are pure; the
//! only I/O is in [`store`] (SQLite), [`key`] (the key files), [`anchor`] (the anchor
//! file), [`pg`] (PostgreSQL), the writer thread and the mirror thread.

pub mod anchor;
pub mod chain;
pub mod key;
pub mod mirror;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use beffroi_core::Clock;
use beffroi_core::audit::{
    AuditEntry, AuditOutcome, AuditQuery, AuditReadError, AuditReader, AuditRecord, AuditSink,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rusqlite::Connection;

pub use anchor::{ANCHOR_FILE, Anchor};
pub use chain::{Known, Problem, Report};

/// The log's file name in the data folder.
pub const LOG_FILE: &str = "audit.sqlite";
/// The signing key's file name (in [`default_key_file`]'s folder when no other path is
/// given; in the data folder for logs made before that default).
pub const KEY_FILE: &str = "audit-signing.key";
/// The folder beside the data folder that holds the keys (as the pseudonymisation keys).
pub const KEYS_DIR: &str = "beffroi-keys";
/// The public key's file name, beside the log.
pub const PUBLIC_KEY_FILE: &str = "audit-signing.pub";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "audit log {path}: schema version {found} was written by a newer Beffroi than this one; run that version, or restore a backup taken before the upgrade"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("audit log {path}: {message}")]
    Damaged { path: PathBuf, message: String },
    #[error("audit key {path}: {message}")]
    Key { path: PathBuf, message: String },
    /// The log does not continue what the data folder recorded of it.
    #[error("audit log {path}: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("the audit log is closed")]
    Closed,
    #[error("audit log: {0}")]
    Write(String),
}

/// Where the log and its keys live, and when checkpoints are signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// The SQLite file (`<data_dir>/audit.sqlite` by default).
    pub path: PathBuf,
    /// The signing key ([`default_key_file`]), generated if absent.
    pub key_file: PathBuf,
    /// The public key, written (or checked) at open (`<data_dir>/audit-signing.pub`).
    pub public_key_file: PathBuf,
    /// A checkpoint after this many entries since the last one (0: never by count).
    pub checkpoint_every: u64,
    /// A checkpoint when entries are unsigned and this long has passed since the last one.
    pub checkpoint_interval: Duration,
    /// Capacity of the queue to the writer thread.
    pub queue: usize,
    /// The anchor, in the data folder (`<data_dir>/audit-anchor`); `None`: no anchor is
    /// read nor written.
    pub anchor_file: Option<PathBuf>,
}

/// The signing key's default place: `beffroi-keys/audit-signing.key` beside the data folder
/// (outside it: a copy of the data folder is not a copy of the key).
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(KEYS_DIR)
        .join(KEY_FILE)
}

impl AuditConfig {
    /// The defaults for a data folder: 100 entries or 60 seconds, a queue of 1,024.
    pub fn in_dir(data_dir: &Path) -> AuditConfig {
        AuditConfig {
            path: data_dir.join(LOG_FILE),
            key_file: default_key_file(data_dir),
            public_key_file: data_dir.join(PUBLIC_KEY_FILE),
            checkpoint_every: 100,
            checkpoint_interval: Duration::from_secs(60),
            queue: 1024,
            anchor_file: Some(data_dir.join(ANCHOR_FILE)),
        }
    }
}

/// The log's counters, to register into the server's Prometheus registry.
#[derive(Clone, Debug, Default)]
pub struct AuditMetrics {
    /// Entries committed.
    pub entries: Counter,
    /// Checkpoints signed and committed.
    pub checkpoints: Counter,
    /// `record` calls that found the queue full and waited.
    pub queue_waits: Counter,
    /// Records that could not be persisted (a failed commit, or recorded after close).
    pub lost: Counter,
    /// Entries committed after the last checkpoint.
    pub unsigned: Gauge,
}

impl AuditMetrics {
    /// Registers under `audit_*` (with the registry's prefix: `beffroi_audit_*`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "audit_entries",
            "Audit log entries committed",
            self.entries.clone(),
        );
        r.register(
            "audit_checkpoints",
            "Signed audit checkpoints committed",
            self.checkpoints.clone(),
        );
        r.register(
            "audit_queue_waits",
            "Audit records whose caller waited for room in the writer's queue",
            self.queue_waits.clone(),
        );
        r.register(
            "audit_lost",
            "Audit records that could not be persisted (commit failed or log closed)",
            self.lost.clone(),
        );
        r.register(
            "audit_unsigned_entries",
            "Audit entries committed after the last signed checkpoint",
            self.unsigned.clone(),
        );
    }
}

/// A prune of the log's head: entries older than `retain` are deleted, up to the last
/// signed checkpoint before the first entry that must stay ([`AuditLog::prune`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneRequest {
    /// How long entries are kept.
    pub retain: Duration,
    /// The earliest time a legal hold in force covers: nothing from then on is deleted,
    /// whatever the retention.
    pub held_from_ms: Option<i64>,
    /// Who prunes (`system` for the server's schedule), recorded in the prune entry.
    pub actor: String,
}

/// What a prune deletes, or would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunePlan {
    /// When it was planned (the writer's clock).
    pub now_ms: i64,
    /// `now - retain`: entries before are past their retention.
    pub retention_cutoff_ms: i64,
    /// The cutoff applied: the retention's, or earlier when a legal hold covers it.
    pub cutoff_ms: i64,
    /// The hold moved the cutoff back.
    pub held: bool,
    /// The file's facts: entries past the cutoff, the checkpoint the log is cut after,
    /// entries and checkpoints deleted.
    pub scan: store::PruneScan,
}

impl PrunePlan {
    /// Something would be deleted.
    pub fn deletes(&self) -> bool {
        self.scan.through.is_some() && self.scan.entries > 0
    }
}

/// What a prune did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneOutcome {
    pub plan: PrunePlan,
    /// The seq of the `audit.prune` entry that records it (sealed by a checkpoint in the
    /// same transaction); `None` when nothing was deleted.
    pub recorded_seq: Option<u64>,
    /// What releasing the space did.
    pub released: store::Released,
}

fn plan(
    conn: &Connection,
    path: &Path,
    req: &PruneRequest,
    now_ms: i64,
    key: Option<&VerifyingKey>,
) -> Result<PrunePlan, AuditError> {
    let retain = i64::try_from(req.retain.as_millis()).unwrap_or(i64::MAX);
    let retention_cutoff_ms = now_ms.saturating_sub(retain);
    let cutoff_ms = match req.held_from_ms {
        Some(h) if h < retention_cutoff_ms => h,
        _ => retention_cutoff_ms,
    };
    Ok(PrunePlan {
        now_ms,
        retention_cutoff_ms,
        cutoff_ms,
        held: cutoff_ms < retention_cutoff_ms,
        scan: store::scan_prune(conn, path, cutoff_ms, key)?,
    })
}

/// What [`AuditLog::prune`] would delete from the log at `path` at `now_ms`, read-only
/// (`beffroi audit prune --dry-run`). The checkpoints' signatures are checked with `key`
/// when given.
pub fn plan_prune(
    path: &Path,
    req: &PruneRequest,
    now_ms: i64,
    key: Option<&VerifyingKey>,
) -> Result<PrunePlan, AuditError> {
    let conn = store::open_reader(path)?;
    plan(&conn, path, req, now_ms, key)
}

enum Msg {
    Prune(PruneRequest, SyncSender<Result<PruneOutcome, String>>),
    Record(AuditRecord),
    /// Commit what is queued; with `true`, also sign a checkpoint. Answers when done.
    Flush(bool, SyncSender<Result<(), String>>),
}

/// What the caller knows of the data folder when it opens the log, and what it allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Continuity {
    /// The data store beside the log already holds data: a missing or empty log there was
    /// lost, not new.
    pub data_present: bool,
    /// Start a new log where the log is missing or empty, or anchor again a log whose
    /// anchor is missing, and record this reason (with the previous anchor) in it.
    pub new_log_reason: Option<String>,
}

/// No log at `path`: no file, or an empty one (as the server prepares it, mode 0600) without
/// a write-ahead log.
pub fn is_missing(path: &Path) -> bool {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    len(path) == 0 && len(Path::new(&wal)) == 0
}

/// How a log is opened, decided by [`decide`].
#[derive(Debug, PartialEq, Eq)]
enum Opening {
    /// The log continues its anchor (or is new in a new data folder).
    Continue,
    /// A new log over a data folder that knew another (`previous`) or held data: its first
    /// entry records the reason.
    NewLog { previous: Option<Anchor> },
    /// The anchor was missing (or the log predates anchors): the log is anchored again,
    /// with the reason recorded.
    Reanchor,
}

const RESTART_HINT: &str = "restore it from a backup, or start a new log deliberately with a reason (`--new-audit-log \"<reason>\"`), recorded as its first entry";

/// Whether the log (identity `log`, last seq `last_seq`, hash at the anchored seq
/// `at_anchor`) may be opened beside `anchor` and the data folder.
fn decide(
    path: &Path,
    log: &store::LogId,
    last_seq: u64,
    at_anchor: Option<&str>,
    anchor: Option<&Anchor>,
    c: &Continuity,
) -> Result<Opening, AuditError> {
    let refuse = |message: String| {
        Err(AuditError::Refused {
            path: path.to_path_buf(),
            message,
        })
    };
    let reason = c.new_log_reason.as_deref();
    match anchor {
        Some(a) if a.log_id != log.id => {
            if last_seq > 0 {
                return refuse(format!(
                    "this is not the log the data folder recorded (log id {}, expected {}): it was replaced; move it away (keep it as evidence) and {RESTART_HINT}",
                    log.id, a.log_id
                ));
            }
            match reason {
                Some(_) => Ok(Opening::NewLog {
                    previous: Some(a.clone()),
                }),
                None => refuse(format!(
                    "the log is missing or empty, but the data folder recorded log {} up to seq {}: it was deleted; {RESTART_HINT}",
                    a.log_id, a.seq
                )),
            }
        }
        Some(a) if a.seq > last_seq => refuse(format!(
            "the log ends at seq {last_seq} but the data folder recorded audited acts up to seq {}: it was cut; {RESTART_HINT}",
            a.seq
        )),
        Some(a) if a.seq > 0 && at_anchor != Some(a.hash.as_str()) => refuse(format!(
            "the entry at seq {} is not the one the data folder recorded: the log was rewritten; run `beffroi audit verify`",
            a.seq
        )),
        Some(_) if reason.is_some() => refuse(
            "the log continues what the data folder recorded: there is nothing to start anew (remove --new-audit-log)".into(),
        ),
        Some(_) => Ok(Opening::Continue),
        None if last_seq == 0 => match reason {
            Some(_) => Ok(Opening::NewLog { previous: None }),
            None if c.data_present => refuse(format!(
                "the log is missing or empty, but the data folder holds data: it was deleted or lost; {RESTART_HINT}"
            )),
            None => Ok(Opening::Continue),
        },
        // A log written before anchors: anchored from now on, and that is recorded.
        None if log.created => Ok(Opening::Reanchor),
        None => match reason {
            Some(_) => Ok(Opening::Reanchor),
            None => refuse(
                "the data folder's audit anchor is missing (deleted?): the log's end cannot be checked; run `beffroi audit verify`, then anchor it again deliberately with a reason (`--new-audit-log \"<reason>\"`)".into(),
            ),
        },
    }
}

/// The audit log: an [`AuditSink`] backed by a writer thread.
pub struct AuditLog {
    tx: Mutex<Option<SyncSender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    metrics: AuditMetrics,
    public_key: VerifyingKey,
    path: PathBuf,
    log_id: String,
    commits: Arc<mirror::CommitSignal>,
}

impl AuditLog {
    /// [`AuditLog::open_checked`] for a data folder that holds nothing else.
    pub fn open(cfg: AuditConfig, clock: Arc<dyn Clock>) -> Result<AuditLog, AuditError> {
        Self::open_checked(cfg, clock, Continuity::default())
    }

    /// Opens (creating) the log, checks it against the data folder's anchor, loads or
    /// generates the signing key, writes or checks the public key file, and starts the
    /// writer thread. Blocking: call it from a blocking context.
    ///
    /// Refused ([`AuditError::Refused`]) when the log is missing or empty while the anchor
    /// names a log or `continuity.data_present`, when it is another log than the anchor's,
    /// ends before the anchored seq or holds another entry there, or when the anchor of a
    /// log that had one is gone; `continuity.new_log_reason` allows the first and the
    /// last, and is recorded (`audit.log.new`, `audit.anchor.new`) and signed at once.
    pub fn open_checked(
        cfg: AuditConfig,
        clock: Arc<dyn Clock>,
        continuity: Continuity,
    ) -> Result<AuditLog, AuditError> {
        let anchor = match &cfg.anchor_file {
            Some(p) => anchor::read(p)?,
            None => None,
        };
        if is_missing(&cfg.path) {
            // Decided before the log (and the key) are made: a refusal leaves nothing.
            let none = store::LogId {
                id: String::new(),
                created: true,
            };
            decide(&cfg.path, &none, 0, None, anchor.as_ref(), &continuity)?;
        }
        let key = key::load_or_create(&cfg.key_file)?;
        let public_key = key.verifying_key();
        key::write_or_check_public(&cfg.public_key_file, &public_key)?;
        let (conn, log_id) = store::open_writer(&cfg.path)?;
        let (chain, unsigned) = store::chain_state(&conn, &cfg.path)?;
        let at_anchor = match &anchor {
            Some(a) if a.seq > 0 => store::hash_at(&conn, &cfg.path, a.seq)?,
            _ => None,
        };
        let opening = decide(
            &cfg.path,
            &log_id,
            chain.last_seq,
            at_anchor.as_deref(),
            anchor.as_ref(),
            &continuity,
        )?;
        let metrics = AuditMetrics::default();
        metrics.unsigned.set(unsigned as i64);
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let mut writer = Writer {
            conn,
            path: cfg.path.clone(),
            chain,
            unsigned,
            last_checkpoint: clock.now().0,
            key,
            clock: Arc::clone(&clock),
            every: cfg.checkpoint_every,
            interval: cfg.checkpoint_interval,
            metrics: metrics.clone(),
            log_id: log_id.id.clone(),
            anchor_file: cfg.anchor_file.clone(),
            commits: Arc::default(),
        };
        let commits = Arc::clone(&writer.commits);
        let reason = continuity
            .new_log_reason
            .unwrap_or_else(|| "a log made before anchors: anchored from here on".into());
        let first = match opening {
            Opening::Continue => None,
            Opening::NewLog { previous } => Some((
                "audit.log.new",
                serde_json::json!({
                    "reason": reason,
                    "log_id": log_id.id,
                    "data_present": continuity.data_present,
                    "previous": previous.map(|a| serde_json::json!({
                        "log_id": a.log_id,
                        "seq": a.seq,
                        "hash": a.hash,
                        "at_ms": a.at_ms,
                    })),
                }),
            )),
            Opening::Reanchor => Some((
                "audit.anchor.new",
                serde_json::json!({
                    "reason": reason,
                    "log_id": log_id.id,
                    "last_seq": writer.chain.last_seq,
                }),
            )),
        };
        if let Some((action, detail)) = first {
            writer.commit(&[AuditRecord {
                at_ms: clock.now().0,
                actor: "system".into(),
                action: action.into(),
                target: None,
                outcome: AuditOutcome::Ok,
                detail: beffroi_core::SafeText::redacting(&detail.to_string()),
            }])?;
            writer.checkpoint_if_due(true)?;
        }
        writer.write_anchor()?;
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::Io {
                path: cfg.path.clone(),
                source: e,
            })?;
        Ok(AuditLog {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            closed: AtomicBool::new(false),
            metrics,
            public_key,
            path: cfg.path,
            log_id: log_id.id,
            commits,
        })
    }

    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.public_key
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's identity (16 random bytes, hex), as its file and its anchor hold it.
    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    /// Bumped after every transaction of the writer: a [`mirror::Mirror`] waits on it.
    pub fn commits(&self) -> Arc<mirror::CommitSignal> {
        Arc::clone(&self.commits)
    }

    fn sender(&self) -> Option<SyncSender<Msg>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn request(&self, checkpoint: bool) -> Result<(), AuditError> {
        let tx = self.sender().ok_or(AuditError::Closed)?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        tx.send(Msg::Flush(checkpoint, reply))
            .map_err(|_| AuditError::Closed)?;
        answer
            .recv()
            .map_err(|_| AuditError::Closed)?
            .map_err(AuditError::Write)
    }

    /// Waits until every record handed in before is committed. Blocking.
    pub fn flush(&self) -> Result<(), AuditError> {
        self.request(false)
    }

    /// Commits what is queued and signs a checkpoint of the last entry (if it is not signed
    /// yet). Blocking.
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        self.request(true)
    }

    /// Commits what is queued, then deletes the entries past the retention up to the last
    /// signed checkpoint before the first entry kept (never a held one, never the last
    /// entry), and records it in one transaction: an `audit.prune` entry naming how many
    /// entries went, the last deleted seq and hash and the first kept, signed at once by a
    /// checkpoint. Then the WAL is truncated and, when much was freed, the file rewritten.
    /// Blocking.
    pub fn prune(&self, req: PruneRequest) -> Result<PruneOutcome, AuditError> {
        let tx = self.sender().ok_or(AuditError::Closed)?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        tx.send(Msg::Prune(req, reply))
            .map_err(|_| AuditError::Closed)?;
        answer
            .recv()
            .map_err(|_| AuditError::Closed)?
            .map_err(AuditError::Write)
    }

    /// Commits what is queued, signs a final checkpoint and stops the writer. Later
    /// `record`s are counted as lost and logged. Idempotent; blocking.
    pub fn close(&self) -> Result<(), AuditError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.request(true);
        // Dropping the sender ends the writer's loop.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && t.join().is_err()
        {
            return Err(AuditError::Write("the writer thread panicked".into()));
        }
        result
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "audit log: final checkpoint failed");
        }
    }
}

impl AuditSink for AuditLog {
    /// Hands the record to the writer. When the queue is full the caller waits (counted);
    /// a record after `close` is counted as lost and logged, with its action.
    fn record(&self, record: AuditRecord) {
        let lost = |r: &AuditRecord, why: &str| {
            self.metrics.lost.inc();
            tracing::error!(action = %r.action, actor = %r.actor, why, "audit record lost");
        };
        let Some(tx) = self.sender() else {
            return lost(&record, "the audit log is closed");
        };
        match tx.try_send(Msg::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                self.metrics.queue_waits.inc();
                if let Err(std::sync::mpsc::SendError(Msg::Record(r))) = tx.send(msg) {
                    lost(&r, "the audit writer stopped");
                }
            }
            Err(TrySendError::Disconnected(Msg::Record(r))) => lost(&r, "the audit writer stopped"),
            Err(TrySendError::Disconnected(Msg::Flush(..) | Msg::Prune(..))) => {}
        }
    }
}

impl AuditReader for AuditLog {
    /// Reads committed entries (a record still in the writer's queue is not there yet).
    fn read(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AuditReadError> {
        read_entries(&self.path, q).map_err(|e| AuditReadError(e.to_string()))
    }
}

/// The entries of the log at `path` matching `q`, newest first. An entry whose stored
/// outcome or seq is not one the writer produces is reported as `failed` / seq 0 (the
/// verifier names such rows).
pub fn read_entries(path: &Path, q: &AuditQuery) -> Result<Vec<AuditEntry>, AuditError> {
    let conn = store::open_reader(path)?;
    Ok(store::query(&conn, path, q)?
        .into_iter()
        .map(|e| AuditEntry {
            seq: u64::try_from(e.seq).unwrap_or(0),
            node: None,
            cursor: u64::try_from(e.seq).unwrap_or(0),
            record: AuditRecord {
                at_ms: e.at_ms,
                // Read back through the recogniser: what the file holds is not trusted.
                actor: beffroi_core::SafeText::redacting(&e.actor),
                action: e.action,
                target: e.target.as_deref().map(beffroi_core::SafeText::redacting),
                outcome: AuditOutcome::parse(&e.outcome).unwrap_or(AuditOutcome::Failed),
                detail: beffroi_core::SafeText::redacting(&e.detail),
            },
        })
        .collect())
}

/// Records handed over per transaction, at most.
const MAX_BATCH: usize = 512;

struct Writer {
    conn: Connection,
    path: PathBuf,
    chain: chain::Chain,
    /// Entries after the last checkpoint.
    unsigned: u64,
    /// Time of the last checkpoint (or of the start), ms.
    last_checkpoint: i64,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    every: u64,
    interval: Duration,
    metrics: AuditMetrics,
    log_id: String,
    anchor_file: Option<PathBuf>,
    commits: Arc<mirror::CommitSignal>,
}

impl Writer {
    /// Records the head of the chain in the data folder's anchor.
    fn write_anchor(&self) -> Result<(), AuditError> {
        let Some(path) = &self.anchor_file else {
            return Ok(());
        };
        anchor::write(
            path,
            &Anchor {
                log_id: self.log_id.clone(),
                seq: self.chain.last_seq,
                hash: hex::encode(self.chain.last_hash),
                at_ms: self.clock.now().0,
            },
        )
    }

    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = match rx.recv_timeout(self.interval.max(Duration::from_millis(10))) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    // A failure is logged by checkpoint_if_due; the next wake-up retries.
                    let _ = self.checkpoint_if_due(false);
                    self.commits.bump();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Logged by checkpoint_if_due; nothing else to tell, nobody waits.
                    let _ = self.checkpoint_if_due(true);
                    return;
                }
            };
            let mut batch = Vec::new();
            let mut flush = None;
            let mut prune = None;
            match first {
                Msg::Record(r) => batch.push(r),
                Msg::Flush(cp, reply) => flush = Some((cp, reply)),
                Msg::Prune(req, reply) => prune = Some((req, reply)),
            }
            while flush.is_none() && prune.is_none() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Msg::Record(r)) => batch.push(r),
                    Ok(Msg::Flush(cp, reply)) => flush = Some((cp, reply)),
                    Ok(Msg::Prune(req, reply)) => prune = Some((req, reply)),
                    Err(_) => break,
                }
            }
            let mut result = self.commit(&batch);
            if result.is_ok() {
                let forced = flush.as_ref().is_some_and(|(cp, _)| *cp);
                result = self.checkpoint_if_due(forced);
            }
            if let Some((_, reply)) = flush {
                // The requester may have given up; nothing to do then.
                let _ = reply.send(result.map_err(|e| e.to_string()));
            } else if let Some((req, reply)) = prune {
                let outcome = result.and_then(|()| self.prune(&req));
                if let Err(e) = &outcome {
                    tracing::error!(error = %e, "audit log: prune failed");
                }
                let _ = reply.send(outcome.map_err(|e| e.to_string()));
            }
            self.commits.bump();
        }
    }

    fn commit(&mut self, batch: &[AuditRecord]) -> Result<(), AuditError> {
        if batch.is_empty() {
            return Ok(());
        }
        let before = self.chain.clone();
        let now = self.clock.now().0;
        let mut unsigned = self.unsigned;
        let mut signed = 0u64;
        let result = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            follow_tail(&tx, &self.path, &mut self.chain, &mut unsigned)?;
            for r in batch {
                let row = self.chain.append(r);
                store::insert_entry(&tx, &row)?;
                unsigned += 1;
                // By count: exactly every `every` entries, in the same transaction.
                if self.every > 0 && unsigned >= self.every {
                    store::insert_checkpoint(&tx, &self.chain.checkpoint(&self.key, now))?;
                    unsigned = 0;
                    signed += 1;
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) => {
                self.metrics.entries.inc_by(batch.len() as u64);
                self.metrics.checkpoints.inc_by(signed);
                if signed > 0 {
                    self.last_checkpoint = now;
                }
                self.unsigned = unsigned;
                self.metrics.unsigned.set(unsigned as i64);
                // The entries are committed whatever happens to the anchor: an anchor
                // behind the log is checked the same, and the next commit writes it again.
                if let Err(e) = self.write_anchor() {
                    tracing::error!(error = %e, "audit anchor could not be written");
                }
                Ok(())
            }
            Err(e) => {
                self.chain = before;
                self.metrics.lost.inc_by(batch.len() as u64);
                let actions: Vec<&str> = batch.iter().map(|r| r.action.as_str()).collect();
                tracing::error!(error = %e, lost = batch.len(), ?actions, "audit entries could not be persisted");
                Err(AuditError::Db {
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }

    /// Deletes the head of the log past the retention and records it, in one transaction
    /// ([`AuditLog::prune`]).
    fn prune(&mut self, req: &PruneRequest) -> Result<PruneOutcome, AuditError> {
        let now = self.clock.now().0;
        let key = self.key.verifying_key();
        let before = self.chain.clone();
        let path = self.path.clone();
        let db = |e| AuditError::Db {
            path: path.clone(),
            source: e,
        };
        let mut unsigned = self.unsigned;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        follow_tail(&tx, &path, &mut self.chain, &mut unsigned).map_err(db)?;
        let plan = plan(&tx, &path, req, now, Some(&key))?;
        let through = plan.scan.through.clone().filter(|_| plan.deletes());
        let Some((through, through_hash)) = through else {
            drop(tx);
            self.unsigned = unsigned;
            return Ok(PruneOutcome {
                plan,
                recorded_seq: None,
                released: store::Released::default(),
            });
        };
        let first_kept = through + 1;
        let first_kept_hash = store::hash_at(&tx, &path, u64::try_from(first_kept).unwrap_or(0))?;
        let detail = serde_json::json!({
            "retain_ms": i64::try_from(req.retain.as_millis()).unwrap_or(i64::MAX),
            "cutoff_ms": plan.cutoff_ms,
            "retention_cutoff_ms": plan.retention_cutoff_ms,
            "held_from_ms": req.held_from_ms,
            "pruned_entries": plan.scan.entries,
            "pruned_checkpoints": plan.scan.checkpoints,
            "first_pruned_seq": plan.scan.first_seq,
            "oldest_pruned_ms": plan.scan.oldest_ms,
            "newest_pruned_ms": plan.scan.newest_ms,
            "through_seq": through,
            "through_hash": through_hash,
            "first_kept_seq": first_kept,
            "first_kept_hash": first_kept_hash,
        });
        let row = self.chain.append(&AuditRecord {
            at_ms: now,
            actor: beffroi_core::SafeText::redacting(&req.actor),
            action: chain::PRUNE_ACTION.into(),
            target: None,
            outcome: AuditOutcome::Ok,
            detail: beffroi_core::SafeText::redacting(&detail.to_string()),
        });
        let cp = self.chain.checkpoint(&self.key, now);
        let committed = store::delete_head(&tx, through)
            .and_then(|()| store::insert_entry(&tx, &row))
            .and_then(|()| store::insert_checkpoint(&tx, &cp))
            .and_then(|()| tx.commit());
        if let Err(e) = committed {
            self.chain = before;
            return Err(db(e));
        }
        self.unsigned = 0;
        self.last_checkpoint = now;
        self.metrics.entries.inc();
        self.metrics.checkpoints.inc();
        self.metrics.unsigned.set(0);
        if let Err(e) = self.write_anchor() {
            tracing::error!(error = %e, "audit anchor could not be written");
        }
        // The prune is committed: a failure to give the space back is logged, not an error
        // of the prune (the rows are zeroed already; the next prune retries).
        let released = store::release_space(&self.conn, &path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "audit log: space not released after the prune");
            store::Released::default()
        });
        if !released.wal_truncated {
            tracing::warn!(
                "audit log: the WAL could not be truncated after the prune (a reader?); the next prune retries"
            );
        }
        tracing::info!(
            entries = plan.scan.entries,
            through,
            recorded = row.seq,
            vacuumed = released.vacuumed,
            "audit log pruned"
        );
        Ok(PruneOutcome {
            plan,
            recorded_seq: u64::try_from(row.seq).ok(),
            released,
        })
    }

    /// Signs a checkpoint when entries are unsigned and one is due by time, or forced.
    fn checkpoint_if_due(&mut self, forced: bool) -> Result<(), AuditError> {
        if self.unsigned == 0 {
            return Ok(());
        }
        let now = self.clock.now().0;
        let by_time = now.saturating_sub(self.last_checkpoint)
            >= i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX);
        if !(forced || by_time) {
            return Ok(());
        }
        let cp = self.chain.checkpoint(&self.key, now);
        match store::insert_checkpoint(&self.conn, &cp) {
            Ok(()) => {
                self.unsigned = 0;
                self.last_checkpoint = now;
                self.metrics.checkpoints.inc();
                self.metrics.unsigned.set(0);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, seq = cp.seq, "audit checkpoint could not be persisted");
                Err(AuditError::Db {
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }
}

/// Continues from the stored tail when another process (`beffroi audit prune` beside a
/// running server) appended to the log since this writer's last commit.
fn follow_tail(
    conn: &Connection,
    path: &Path,
    chain: &mut chain::Chain,
    unsigned: &mut u64,
) -> rusqlite::Result<()> {
    let ours = (
        i64::try_from(chain.last_seq).unwrap_or(i64::MAX),
        hex::encode(chain.last_hash),
    );
    match store::tail(conn)? {
        Some(t) if t != ours => {
            let (stored, u) = store::chain_state(conn, path)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            tracing::info!(
                from = chain.last_seq,
                to = stored.last_seq,
                "audit log: another process appended; continuing from its tail"
            );
            *chain = stored;
            *unsigned = u;
        }
        _ => {}
    }
    Ok(())
}

/// Verifies the log file at `path` against the trusted public keys: the chain, every
/// checkpoint's signature, and the checkpoints against the entries.
pub fn verify_log(path: &Path, keys: &[VerifyingKey]) -> Result<Report, AuditError> {
    verify_log_with(path, keys, None, &[])
}

/// [`verify_log`], and the log against the data folder's `anchor` (its identity, its
/// length, its entry at the anchored seq) and against checkpoints `exported` off the host.
pub fn verify_log_with(
    path: &Path,
    keys: &[VerifyingKey],
    anchor: Option<&Anchor>,
    exported: &[chain::StoredCheckpoint],
) -> Result<Report, AuditError> {
    let conn = store::open_reader(path)?;
    let checkpoints = store::checkpoints(&conn, path)?;
    let log_id = store::log_id(&conn, path)?;
    let known = Known {
        anchor,
        log_id: log_id.as_deref(),
        exported,
    };
    store::with_entries(&conn, path, |entries| {
        chain::verify_with(entries, &checkpoints, keys, known)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::audit::AuditOutcome;

    fn rec() -> AuditRecord {
        AuditRecord {
            at_ms: 0,
            actor: "a".into(),
            action: "x.y".into(),
            target: None,
            outcome: AuditOutcome::Ok,
            detail: "{}".into(),
        }
    }

    /// A log whose writer is the test itself: the queue fills for sure.
    fn detached(queue: usize) -> (AuditLog, Receiver<Msg>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let log = AuditLog {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
            // Drop must not wait for a writer that does not exist.
            closed: AtomicBool::new(true),
            metrics: AuditMetrics::default(),
            public_key: SigningKey::from_bytes(&[1; 32]).verifying_key(),
            path: PathBuf::from("audit.sqlite"),
            log_id: "0".repeat(32),
            commits: Arc::default(),
        };
        (log, rx)
    }

    #[test]
    fn a_full_queue_makes_the_caller_wait_and_counts_it() {
        let (log, rx) = detached(1);
        let log = Arc::new(log);
        log.record(rec());
        assert_eq!(log.metrics.queue_waits.get(), 0);
        let caller = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || log.record(rec()))
        };
        // The second record finds the queue full: counted, then the caller waits.
        while log.metrics.queue_waits.get() == 0 {
            std::thread::yield_now();
        }
        assert!(!caller.is_finished());
        // Room made: the waiting record goes in; nothing was dropped.
        assert!(matches!(rx.recv(), Ok(Msg::Record(_))));
        caller.join().expect("caller");
        assert!(matches!(rx.recv(), Ok(Msg::Record(_))));
        assert_eq!(log.metrics.lost.get(), 0);
    }

    #[test]
    fn a_record_the_writer_cannot_take_is_counted_lost() {
        let (log, rx) = detached(4);
        drop(rx);
        log.record(rec());
        assert_eq!(log.metrics.lost.get(), 1);
    }
}
