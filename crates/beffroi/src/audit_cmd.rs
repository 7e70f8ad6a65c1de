//! `beffroi audit verify`, `show` and `export-checkpoints`, and what the server records
//! about itself (start, stop, configuration files and their SHA-256).

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
                    data_dir: cfg.data_dir,
                })
            }
            (None, Some(dir)) => Ok(Located {
                cfg: AuditConfig::in_dir(dir),
                data_dir: dir.clone(),
                pinned: None,
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
    let Located {
        cfg,
        data_dir,
        pinned,
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
