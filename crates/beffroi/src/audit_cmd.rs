//! `beffroi audit verify`, `show`, `export-checkpoints` and `prune`, the server's retention
//! schedule of the log, and what the server records about itself (start, stop,
//! configuration files and their SHA-256).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use beffroi_audit::chain::StoredCheckpoint;
use beffroi_audit::{AuditConfig, Report};
use beffroi_core::audit::{AuditOutcome, AuditRecord, AuditSink};
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

/// The environment variable that names the signing key file (overrides `[audit] key_file`).
pub const KEY_ENV: &str = "BEFFROI_AUDIT_KEY_FILE";

/// How many problems `verify` lists after the first.
const MAX_LISTED: usize = 20;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Checks the audit log's hash chain, every signed checkpoint, the data folder's anchor
    /// and exported checkpoints; names the first entry that was altered, removed or
    /// inserted. Exit status 0: intact and signed to its end; 1: tampered, cut, replaced,
    /// unsigned or unreadable.
    Verify(VerifyArgs),
    /// Prints entries of the audit log.
    Show(ShowArgs),
    /// Writes the log's signed checkpoints as JSON lines, to keep off the host and check
    /// the log against later (`verify --checkpoints`).
    ExportCheckpoints(ExportArgs),
    /// Deletes the entries older than the retention (`[audit] retain`, one year by
    /// default), up to the last signed checkpoint before the first entry kept, and never
    /// what a legal hold in force covers. The prune is recorded in the log as an
    /// `audit.prune` entry, signed at once, so that `verify` accepts the shorter log.
    /// The server does this itself once a day.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    location: Location,
    /// Only say what would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// The retention to apply (at least 30d), instead of the configuration's.
    #[arg(long)]
    retain: Option<String>,
    /// Who prunes: recorded in the `audit.prune` entry (required unless --dry-run).
    #[arg(long)]
    by: Option<String>,
}

/// Where the log is: from a `serve` configuration file, or a data folder.
#[derive(Args)]
pub struct Location {
    /// The `serve` configuration file (its data folder and `[audit]` table).
    #[arg(long, conflicts_with = "data")]
    config: Option<PathBuf>,
    /// The data folder (`audit.sqlite`, `audit-signing.pub`, `audit-anchor`).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// A located log: its configuration, its data folder, the pinned public key if configured.
struct Located {
    cfg: AuditConfig,
    data_dir: PathBuf,
    pinned: Option<PathBuf>,
    /// `[audit] retain` (the default with --data); `None`: "off".
    retain: Option<std::time::Duration>,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    location: Location,
    /// A trusted public key file (hex), a copy kept apart from the log; repeat for keys used
    /// before a rotation. Default: `[audit] public_key` of the configuration. Required
    /// otherwise, unless --trust-key-beside-log.
    #[arg(long = "public-key")]
    public_keys: Vec<PathBuf>,
    /// Trust the `audit-signing.pub` beside the log (whoever can rewrite the log can replace
    /// it too).
    #[arg(long)]
    trust_key_beside_log: bool,
    /// Entries after the last signed checkpoint are a warning, not a failure (a running
    /// server signs every 100 entries or 60 s). A log without any checkpoint still fails.
    #[arg(long)]
    allow_unsigned_tail: bool,
    /// Checkpoints exported earlier (`audit export-checkpoints`): each must verify and be
    /// matched by the log; a log cut before one fails.
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// The anchor to check the log against. Default: `audit-anchor` in the data folder.
    #[arg(long)]
    anchor: Option<PathBuf>,
    /// Accepted for older scripts: failing on unsigned entries is now the default.
    #[arg(long, hide = true)]
    strict: bool,
    /// A cluster's audit trail: check every node's log as the PostgreSQL database at this
    /// URL holds it (the copies the nodes make, `[cluster] database`), instead of a file.
    #[arg(long, conflicts_with_all = ["config", "data", "checkpoints", "anchor"])]
    database: Option<String>,
    /// With --database: trust the public keys the nodes recorded in the database (whoever
    /// can rewrite the entries can replace them too); pin copies with --public-key instead.
    #[arg(long, requires = "database")]
    trust_recorded_keys: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    location: Location,
    /// Where to write the JSON lines (`-`: standard output).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    location: Location,
    /// First seq to print.
    #[arg(long, default_value_t = 1)]
    since: i64,
    /// How many entries at most.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

impl Location {
    fn resolve(&self) -> Result<AuditConfig> {
        self.locate().map(|l| l.cfg)
    }

    fn locate(&self) -> Result<Located> {
        match (&self.config, &self.data) {
            (Some(file), _) => {
                let cfg = crate::setup::read_config(file)?;
                Ok(Located {
                    cfg: cfg.audit.to_config(&cfg.data_dir, key_override()),
                    pinned: cfg.audit.pinned_public_key.clone(),
                    retain: cfg.audit.retention(),
                    data_dir: cfg.data_dir,
                })
            }
            (None, Some(dir)) => Ok(Located {
                cfg: AuditConfig::in_dir(dir),
                data_dir: dir.clone(),
                pinned: None,
                retain: Some(crate::config::DEFAULT_AUDIT_RETAIN),
            }),
            (None, None) => Err(anyhow!(
                "say where the audit log is: --config FILE or --data DIR"
            )),
        }
    }
}

/// The signing key file named by `BEFFROI_AUDIT_KEY_FILE`, if any.
pub fn key_override() -> Option<PathBuf> {
    std::env::var_os(KEY_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

pub fn run(cmd: AuditCommand) -> ExitCode {
    let result = match cmd {
        AuditCommand::Verify(args) => verify(&args),
        AuditCommand::Show(args) => show(&args).map(|()| ExitCode::SUCCESS),
        AuditCommand::ExportCheckpoints(args) => export(&args).map(|()| ExitCode::SUCCESS),
        AuditCommand::Prune(args) => prune(&args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

/// The main data store's file in a data folder.
pub const STORE_FILE: &str = "beffroi.db";

/// The data store in `data_dir` holds data: a run before this one left its database.
pub fn data_store_holds_data(data_dir: &Path) -> bool {
    std::fs::metadata(data_dir.join(STORE_FILE)).is_ok_and(|m| m.len() > 0)
}

/// One exported checkpoint: a line of `audit export-checkpoints`.
#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointLine {
    seq: i64,
    entry_hash: String,
    at_ms: i64,
    signature: String,
    key_id: String,
}

impl From<StoredCheckpoint> for CheckpointLine {
    fn from(c: StoredCheckpoint) -> Self {
        CheckpointLine {
            seq: c.seq,
            entry_hash: c.entry_hash,
            at_ms: c.at_ms,
            signature: c.signature,
            key_id: c.key_id,
        }
    }
}

impl From<CheckpointLine> for StoredCheckpoint {
    fn from(c: CheckpointLine) -> Self {
        StoredCheckpoint {
            seq: c.seq,
            entry_hash: c.entry_hash,
            at_ms: c.at_ms,
            signature: c.signature,
            key_id: c.key_id,
        }
    }
}

fn read_exported(path: &Path) -> Result<Vec<StoredCheckpoint>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the checkpoints {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str::<CheckpointLine>(l)
                .map(StoredCheckpoint::from)
                .with_context(|| {
                    format!("{}:{}: not an exported checkpoint", path.display(), n + 1)
                })
        })
        .collect()
}

fn export(args: &ExportArgs) -> Result<()> {
    let cfg = args.location.resolve()?;
    let conn = beffroi_audit::store::open_reader(&cfg.path)?;
    let checkpoints = beffroi_audit::store::checkpoints(&conn, &cfg.path)?;
    let mut out = String::new();
    let n = checkpoints.len();
    let last = checkpoints.iter().map(|c| c.seq).max();
    for c in checkpoints {
        out.push_str(&serde_json::to_string(&CheckpointLine::from(c))?);
        out.push('\n');
    }
    if args.out.as_os_str() == "-" {
        use std::io::Write as _;
        std::io::stdout().write_all(out.as_bytes())?;
    } else {
        std::fs::write(&args.out, out)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
    }
    eprintln!(
        "{n} checkpoint(s) of {} exported{}",
        cfg.path.display(),
        last.map_or_else(String::new, |s| format!(", the last sealing seq {s}"))
    );
    Ok(())
}

fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    if let Some(url) = &args.database {
        return verify_cluster(args, url);
    }
    let Located {
        cfg,
        data_dir,
        pinned,
        ..
    } = args.location.locate()?;
    let key_files = if !args.public_keys.is_empty() {
        args.public_keys.clone()
    } else if let Some(p) = pinned {
        vec![p]
    } else if args.trust_key_beside_log {
        eprintln!(
            "note: trusting the public key beside the log ({}): a replaced key goes unseen; pin a copy kept elsewhere with --public-key",
            cfg.public_key_file.display()
        );
        vec![cfg.public_key_file.clone()]
    } else {
        return Err(anyhow!(
            "no pinned public key: pass --public-key FILE (a copy of {} kept apart from the log), or set `[audit] public_key` in the configuration, or --trust-key-beside-log to trust the one beside the log",
            cfg.public_key_file.display()
        ));
    };
    let keys = key_files
        .iter()
        .map(|p| beffroi_audit::key::read_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    let exported = match &args.checkpoints {
        Some(p) => read_exported(p)?,
        None => Vec::new(),
    };
    let anchor_file = args.anchor.clone().or(cfg.anchor_file.clone());
    let anchor = match &anchor_file {
        Some(p) => beffroi_audit::anchor::read(p)?,
        None => None,
    };
    let log = cfg.path.display();
    if beffroi_audit::is_missing(&cfg.path) {
        let known = match &anchor {
            Some(a) => format!(
                ", but the data folder recorded log {} up to seq {} (deleted?)",
                a.log_id, a.seq
            ),
            None if data_store_holds_data(&data_dir) => {
                ", but the data store beside it holds data (deleted?)".into()
            }
            None => String::new(),
        };
        eprintln!("audit log {log}: FAILED — the log is missing or empty{known}");
        return Ok(ExitCode::FAILURE);
    }
    let report = beffroi_audit::verify_log_with(&cfg.path, &keys, anchor.as_ref(), &exported)?;
    if let Some(first) = report.first_problem() {
        eprintln!("audit log {log}: FAILED — {first}");
        let total = report.problems.len() as u64 + report.more_problems;
        if total > 1 {
            eprintln!("{total} problem(s) in all:");
            for p in report.problems.iter().take(MAX_LISTED) {
                eprintln!("  {p}");
            }
            if total > MAX_LISTED as u64 {
                eprintln!("  …");
            }
        }
        return Ok(ExitCode::FAILURE);
    }
    // The chain holds; what it cannot prove by itself fails too, unless allowed.
    let mut warnings = Vec::new();
    let failure = if anchor.is_none() && data_store_holds_data(&data_dir) {
        Some(format!(
            "no audit anchor ({}) beside a data store that holds data ({}): the log's end cannot be checked (the anchor was deleted?)",
            anchor_file.as_deref().unwrap_or(Path::new("?")).display(),
            data_dir.join(STORE_FILE).display()
        ))
    } else if report.last_signed_seq.is_none() {
        Some(
            "no signed checkpoint: nothing proves these entries were written by the key holder, nor that none were cut off (were the checkpoints deleted?)"
                .to_string(),
        )
    } else if report.unsigned > 0 {
        let msg = format!(
            "{} entr{} after seq {} not covered by a signed checkpoint: their chain holds, but entries after them could have been cut off unseen",
            report.unsigned,
            if report.unsigned == 1 {
                "y is"
            } else {
                "ies are"
            },
            report.last_signed_seq.unwrap_or(0),
        );
        if args.allow_unsigned_tail {
            warnings.push(msg);
            None
        } else {
            Some(format!(
                "{msg} (--allow-unsigned-tail for a running server)"
            ))
        }
    } else {
        None
    };
    if anchor.is_none() && failure.is_none() {
        warnings.push(
            "no audit anchor: the log's end is checked only against its checkpoints (pass --anchor, or --checkpoints exported earlier)".into(),
        );
    }
    if let Some(msg) = failure {
        eprintln!("audit log {log}: FAILED — {msg}");
        eprintln!("  {}", summary(&report));
        return Ok(ExitCode::FAILURE);
    }
    println!("audit log {log}: OK — {}", summary(&report));
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify --database`: every node's log in the cluster's database, each against the
/// pinned keys (or the keys the nodes recorded, when trusted).
#[cfg(feature = "postgres")]
fn verify_cluster(args: &VerifyArgs, url: &str) -> Result<ExitCode> {
    let pinned = args
        .public_keys
        .iter()
        .map(|p| beffroi_audit::key::read_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    if pinned.is_empty() && !args.trust_recorded_keys {
        return Err(anyhow!(
            "no pinned public key: pass --public-key FILE for each node (a copy of its audit-signing.pub kept apart), or --trust-recorded-keys to trust the keys the nodes recorded in the database"
        ));
    }
    if !pinned.is_empty() && args.trust_recorded_keys {
        eprintln!("note: trusting the keys recorded in the database besides the pinned ones");
    }
    let mut client = beffroi_audit::pg::connect(url, "beffroi-audit-verify")?;
    let logs = beffroi_audit::pg::logs(&mut client)?;
    if logs.is_empty() {
        eprintln!(
            "audit trail in {}: FAILED — it holds no log",
            redact_url(url)
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut failed = false;
    for log in &logs {
        let mut keys = pinned.clone();
        if args.trust_recorded_keys {
            keys.extend(log.recorded_keys.iter().copied());
        }
        let report = beffroi_audit::pg::verify_log(&mut client, &log.log_id, &keys)?;
        let name = format!("audit log {} of node {}", log.log_id, log.node);
        if let Some(first) = report.first_problem() {
            eprintln!("{name}: FAILED — {first}");
            for p in report.problems.iter().skip(1).take(MAX_LISTED) {
                eprintln!("  {p}");
            }
            failed = true;
        } else if report.last_signed_seq.is_none() {
            eprintln!(
                "{name}: FAILED — no signed checkpoint: nothing proves these entries were written by the node's key"
            );
            failed = true;
        } else if report.unsigned > 0 && !args.allow_unsigned_tail {
            eprintln!(
                "{name}: FAILED — {} entries after seq {} not covered by a signed checkpoint (a node stopped by `kill -9` leaves its last ones unsigned; --allow-unsigned-tail to accept them)",
                report.unsigned,
                report.last_signed_seq.unwrap_or(0)
            );
            eprintln!("  {}", summary(&report));
            failed = true;
        } else {
            println!("{name}: OK — {}", summary(&report));
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(not(feature = "postgres"))]
fn verify_cluster(_: &VerifyArgs, _: &str) -> Result<ExitCode> {
    Err(anyhow!(
        "this binary was built without the `postgres` feature (--database)"
    ))
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn summary(r: &Report) -> String {
    let range = match (r.first_seq, r.last_seq) {
        (Some(a), Some(b)) => format!(" (seq {a} to {b})"),
        _ => String::new(),
    };
    let signed = r
        .last_signed_seq
        .map_or_else(|| "none".to_string(), |s| s.to_string());
    let mut s = format!(
        "{} entries{range}, {} checkpoints, last signed seq {signed}, {} unsigned",
        r.entries, r.checkpoints, r.unsigned
    );
    if r.exported_only > 0 {
        s.push_str(&format!(
            ", {} exported checkpoint(s) not in the log",
            r.exported_only
        ));
    }
    if let Some(a) = r.anchored_seq {
        s.push_str(&format!(", anchored at seq {a}"));
    }
    if let Some((first, at)) = r.pruned {
        s.push_str(&format!(
            ", entries before seq {first} pruned (recorded and signed at seq {at})"
        ));
    }
    s
}

fn show(args: &ShowArgs) -> Result<()> {
    let cfg = args.location.resolve()?;
    let conn = beffroi_audit::store::open_reader(&cfg.path)?;
    let rows = beffroi_audit::store::entries_page(&conn, &cfg.path, args.since, args.limit)?;
    for e in rows {
        let at = u64::try_from(e.at_ms)
            .ok()
            .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
            .map_or_else(
                || e.at_ms.to_string(),
                |t| humantime::format_rfc3339_millis(t).to_string(),
            );
        println!(
            "{:>6}  {at}  {}  {}  {}  {}  {}",
            e.seq,
            e.actor,
            e.action,
            e.target.as_deref().unwrap_or("-"),
            e.outcome,
            e.detail
        );
    }
    Ok(())
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `[{"path", "sha256"}]` of files (`"error"` instead when one cannot be read).
pub fn digest_files(paths: &[PathBuf]) -> serde_json::Value {
    paths
        .iter()
        .map(|p| match std::fs::read(p) {
            Ok(b) => serde_json::json!({"path": p.display().to_string(), "sha256": sha256_hex(&b)}),
            Err(e) => serde_json::json!({"path": p.display().to_string(), "error": e.to_string()}),
        })
        .collect()
}

/// The configuration files of a deployment folder (`.toml`, `.geojson`, `.json`),
/// recursively, sorted; hidden entries skipped.
pub fn deployment_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
            {
                continue;
            }
            if p.is_dir() {
                if depth < 4 {
                    walk(&p, depth + 1, out);
                }
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "toml" | "geojson" | "json"))
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, 0, &mut out);
    out.sort();
    out
}

/// `[{"path", "sha256"}]` of the demo deployment compiled into the binary.
pub fn demo_digests() -> serde_json::Value {
    fn walk(d: &include_dir::Dir<'_>, out: &mut Vec<(String, String)>) {
        for f in d.files() {
            out.push((
                format!("demo/{}", f.path().display()),
                sha256_hex(f.contents()),
            ));
        }
        for sub in d.dirs() {
            walk(sub, out);
        }
    }
    let mut files = Vec::new();
    walk(&crate::setup::DEMO, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|(path, sha)| serde_json::json!({"path": path, "sha256": sha}))
        .collect()
}

/// Records an act of the system itself, stamped with the wall clock.
pub fn record_system(
    sink: &dyn AuditSink,
    action: &str,
    target: Option<String>,
    outcome: AuditOutcome,
    detail: serde_json::Value,
) {
    sink.record(AuditRecord {
        at_ms: crate::wall_now().0,
        actor: "system".into(),
        action: action.into(),
        target: target.as_deref().map(beffroi_core::SafeText::redacting),
        outcome,
        detail: beffroi_core::SafeText::redacting(&detail.to_string()),
    });
}

/// Opens the audit log (blocking work on a blocking thread), checked against the data
/// folder (`continuity`), with its metrics in `metrics`.
pub async fn open(
    cfg: AuditConfig,
    continuity: beffroi_audit::Continuity,
    metrics: &beffroi_engine::metrics::Metrics,
) -> Result<std::sync::Arc<beffroi_audit::AuditLog>> {
    let path = cfg.path.clone();
    crate::files::private_db(&path)?;
    let log = tokio::task::spawn_blocking(move || {
        beffroi_audit::AuditLog::open_checked(
            cfg,
            std::sync::Arc::new(beffroi_engine::runner::SystemClock),
            continuity,
        )
    })
    .await?
    .context("cannot open the audit log")?;
    metrics.with_registry(|r| log.metrics().register(r));
    Ok(std::sync::Arc::new(log))
}

/// How often the mirror looks at the log when the writer signals nothing (it copies after
/// every commit otherwise).
#[cfg(feature = "postgres")]
const MIRROR_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts copying `log` to the cluster's database at `url`, as `node`'s log (ADR 0045).
#[cfg(feature = "postgres")]
pub fn start_mirror(
    log: &beffroi_audit::AuditLog,
    url: &str,
    node: &str,
    metrics: &beffroi_engine::metrics::Metrics,
) -> Result<beffroi_audit::mirror::MirrorHandle> {
    use beffroi_audit::mirror::{Mirror, MirrorMetrics, MirroredLog};
    let counters = MirrorMetrics::default();
    metrics.with_registry(|r| counters.register(r));
    let mirror = Mirror::new(
        beffroi_audit::pg::PgMirrorTarget::new(url),
        log.path(),
        MirroredLog {
            log_id: log.log_id().to_string(),
            node: node.to_string(),
            public_key: *log.public_key(),
        },
        counters,
    );
    mirror
        .spawn(log.commits(), MIRROR_POLL)
        .context("cannot start the audit mirror")
}

/// Where the DPO's access log is read: this node's log, or, with the store in PostgreSQL,
/// every node's entries as the database holds them.
pub fn access_log_reader(
    store: &crate::config::StoreLocation,
    log: &std::sync::Arc<beffroi_audit::AuditLog>,
) -> Result<std::sync::Arc<dyn beffroi_core::AuditReader>> {
    match store {
        #[cfg(feature = "postgres")]
        crate::config::StoreLocation::Postgres(url) => Ok(std::sync::Arc::new(
            beffroi_audit::pg::PgAuditReader::new(&crate::backend::database_url(url.as_deref())?),
        )),
        _ => Ok(std::sync::Arc::clone(log) as std::sync::Arc<dyn beffroi_core::AuditReader>),
    }
}

/// How often the server applies the audit log's retention.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The earliest time a legal hold in force at `now_ms` covers, from the data store beside
/// the log (read-only): the held incident's window starts an hour before it opened. A
/// hold on an incident the store no longer has covers from when it was set. `None`: no
/// hold, or no store.
pub fn held_from(db: &Path, now_ms: i64) -> Result<Option<i64>> {
    if std::fs::metadata(db).is_ok_and(|m| m.len() == 0) || !db.exists() {
        return Ok(None);
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", db.display()))?;
    let before = beffroi_engine::retention::INCIDENT_WINDOW_BEFORE.millis();
    conn.query_row(
        "SELECT MIN(coalesce(i.opened_at - ?2, h.set_at)) FROM legal_holds h \
         LEFT JOIN incidents i ON i.id = h.incident_id \
         WHERE h.released_at IS NULL AND h.until > ?1",
        rusqlite::params![now_ms, before],
        |r| r.get::<_, Option<i64>>(0),
    )
    .with_context(|| format!("cannot read the legal holds of {}", db.display()))
}

fn show_ms(ms: i64) -> String {
    u64::try_from(ms)
        .ok()
        .map(|ms| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// One paragraph on a plan: what goes, what stays and why.
fn describe(plan: &beffroi_audit::PrunePlan, done: bool) -> String {
    let s = &plan.scan;
    let mut out = format!(
        "{} entr{} older than the retention (before {})",
        s.older,
        if s.older == 1 { "y" } else { "ies" },
        show_ms(plan.retention_cutoff_ms)
    );
    if plan.held {
        out.push_str(&format!(
            "; a legal hold keeps everything from {}",
            show_ms(plan.cutoff_ms)
        ));
    }
    match (&s.through, plan.deletes()) {
        (Some((through, _)), true) => out.push_str(&format!(
            "; {} {} entries (seq {} to {through}, up to the signed checkpoint at seq {through}) and {} checkpoint(s); the log starts at seq {}",
            if done { "pruned" } else { "would prune" },
            s.entries,
            s.first_seq.unwrap_or(1),
            s.checkpoints,
            through + 1
        )),
        _ if s.older == 0 => out.push_str("; nothing to prune"),
        _ => out.push_str(
            "; nothing to prune: no signed checkpoint seals only old entries (the log is cut at a checkpoint, never at its last entry)",
        ),
    }
    out
}

fn prune(args: &PruneArgs) -> Result<()> {
    let located = args.location.locate()?;
    let retain = match &args.retain {
        Some(v) => {
            match crate::config::parse_audit_retain(v).map_err(|e| anyhow!("--retain: {e}"))? {
                crate::config::AuditRetain::Off => None,
                crate::config::AuditRetain::After(d) => Some(d),
            }
        }
        None => located.retain,
    };
    let Some(retain) = retain else {
        println!(
            "audit log {}: retention is off; nothing pruned",
            located.cfg.path.display()
        );
        return Ok(());
    };
    let cfg = located.cfg;
    let now = crate::wall_now().0;
    let held = held_from(&located.data_dir.join(STORE_FILE), now)?;
    let by = match (&args.by, args.dry_run) {
        (Some(b), _) if !b.trim().is_empty() => b.trim().to_string(),
        (_, true) => "dry-run".into(),
        _ => return Err(anyhow!("say who prunes: --by NAME (recorded in the log)")),
    };
    let req = beffroi_audit::PruneRequest {
        retain,
        held_from_ms: held,
        actor: by,
    };
    let log = cfg.path.display().to_string();
    if args.dry_run {
        let key = beffroi_audit::key::read_public(&cfg.public_key_file).ok();
        let plan = beffroi_audit::plan_prune(&cfg.path, &req, now, key.as_ref())?;
        println!("audit log {log} (dry run): {}", describe(&plan, false));
        return Ok(());
    }
    anyhow::ensure!(
        cfg.key_file.exists(),
        "the audit signing key {} is not there: the prune must be signed by the log's key (run as the service account, or set {KEY_ENV})",
        cfg.key_file.display()
    );
    anyhow::ensure!(
        !beffroi_audit::is_missing(&cfg.path),
        "no audit log at {log}"
    );
    let audit = beffroi_audit::AuditLog::open_checked(
        cfg,
        std::sync::Arc::new(beffroi_engine::runner::SystemClock),
        beffroi_audit::Continuity {
            data_present: data_store_holds_data(&located.data_dir),
            new_log_reason: None,
        },
    )
    .context("cannot open the audit log")?;
    let outcome = audit.prune(req);
    audit.close().context("cannot close the audit log")?;
    let outcome = outcome.context("cannot prune the audit log")?;
    println!(
        "audit log {log}: {}",
        describe(&outcome.plan, outcome.recorded_seq.is_some())
    );
    if let Some(seq) = outcome.recorded_seq {
        let r = &outcome.released;
        println!(
            "  recorded at seq {seq} (audit.prune, signed); file {} -> {} bytes{}{}",
            r.bytes_before,
            r.bytes_after,
            if r.vacuumed {
                ", rewritten without its free pages"
            } else {
                ""
            },
            if r.wal_truncated {
                ", WAL truncated"
            } else {
                ", WAL not truncated (a reader held it)"
            },
        );
    }
    Ok(())
}

/// The server's retention of its audit log: a prune at start and every [`PRUNE_EVERY`],
/// the legal holds of the data store `db` read each time. A failure is logged and retried
/// at the next round.
pub async fn retention_schedule(
    audit: std::sync::Arc<beffroi_audit::AuditLog>,
    retain: std::time::Duration,
    db: PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let audit = std::sync::Arc::clone(&audit);
        let db = db.clone();
        let round = tokio::task::spawn_blocking(move || -> Result<_> {
            let held = held_from(&db, crate::wall_now().0)?;
            Ok(audit.prune(beffroi_audit::PruneRequest {
                retain,
                held_from_ms: held,
                actor: "system".into(),
            })?)
        })
        .await;
        match round {
            Ok(Ok(outcome)) => tracing::info!(
                pruned = outcome.plan.scan.entries * u64::from(outcome.recorded_seq.is_some()),
                older = outcome.plan.scan.older,
                held = outcome.plan.held,
                recorded = outcome.recorded_seq,
                "audit log retention applied"
            ),
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "audit log retention failed"),
            Err(e) => tracing::error!(error = %e, "audit log retention task failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The holds in force set the start of what the prune keeps: the earliest held
    /// incident's window (an hour before it opened); released, ended or no holds: none.
    #[test]
    fn the_holds_in_force_set_where_the_prune_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(STORE_FILE);
        assert_eq!(held_from(&db, 1_000).expect("no store"), None);
        let c = rusqlite::Connection::open(&db).expect("db");
        c.execute_batch(
            "CREATE TABLE incidents (id INTEGER PRIMARY KEY, opened_at INTEGER NOT NULL);
             CREATE TABLE legal_holds (id INTEGER PRIMARY KEY, incident_id INTEGER NOT NULL,
                 until INTEGER NOT NULL, set_at INTEGER NOT NULL, released_at INTEGER);
             INSERT INTO incidents VALUES (1, 10000000), (2, 20000000);",
        )
        .expect("schema");
        let now = 50_000_000;
        assert_eq!(held_from(&db, now).expect("no hold"), None);
        let hour = 3_600_000;
        c.execute_batch(&format!(
            "INSERT INTO legal_holds (incident_id, until, set_at, released_at) VALUES
                 (1, {now} + 1, 0, 30000000),
                 (1, {now} - 1, 0, NULL),
                 (2, {now} + 1, 0, NULL),
                 (99, {now} + 1, 40000000, NULL);"
        ))
        .expect("holds");
        // Incident 1's holds are released or ended; incident 2's is in force.
        assert_eq!(held_from(&db, now).expect("held"), Some(20_000_000 - hour));
        // A hold on an incident the store no longer has covers from when it was set.
        c.execute("DELETE FROM legal_holds WHERE incident_id = 2", [])
            .expect("delete");
        assert_eq!(held_from(&db, now).expect("held"), Some(40_000_000));
    }
}
