//! `beffroi audit verify` and `beffroi audit show`, and what the server records about itself
//! (start, stop, configuration files and their SHA-256).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
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
    /// Checks the audit log's hash chain and every signed checkpoint; names the first entry
    /// that was altered, removed or inserted. Exit status 0: intact; 1: tampered or unreadable.
    Verify(VerifyArgs),
    /// Prints entries of the audit log.
    Show(ShowArgs),
}

/// Where the log is: from a `serve` configuration file, or a data folder.
#[derive(Args)]
pub struct Location {
    /// The `serve` configuration file (its data folder and `[audit]` table).
    #[arg(long, conflicts_with = "data")]
    config: Option<PathBuf>,
    /// The data folder (`audit.sqlite`, `audit-signing.pub`).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    location: Location,
    /// A trusted public key file (hex); repeat for keys used before a rotation. Default: the
    /// `audit-signing.pub` beside the log (pin a copy kept elsewhere instead).
    #[arg(long = "public-key")]
    public_keys: Vec<PathBuf>,
    /// Also fail when entries follow the last signed checkpoint.
    #[arg(long)]
    strict: bool,
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
        match (&self.config, &self.data) {
            (Some(file), _) => {
                let cfg = crate::setup::read_config(file)?;
                Ok(cfg.audit.to_config(&cfg.data_dir, key_override()))
            }
            (None, Some(dir)) => Ok(AuditConfig::in_dir(dir)),
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
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    let cfg = args.location.resolve()?;
    let key_files = if args.public_keys.is_empty() {
        vec![cfg.public_key_file.clone()]
    } else {
        args.public_keys.clone()
    };
    let keys = key_files
        .iter()
        .map(|p| beffroi_audit::key::read_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    let report = beffroi_audit::verify_log(&cfg.path, &keys)?;
    let log = cfg.path.display();
    if args.public_keys.is_empty() {
        eprintln!(
            "note: the public key was read beside the log ({}); pass --public-key with a copy kept elsewhere to detect a replaced key",
            cfg.public_key_file.display()
        );
    }
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
    println!("audit log {log}: OK — {}", summary(&report));
    if report.unsigned > 0 {
        let after = report
            .last_signed_seq
            .map_or_else(|| "the start".to_string(), |s| format!("seq {s}"));
        let msg = format!(
            "{} entr{} after {after} not covered by a signed checkpoint: their chain holds, but entries after them could have been cut off unseen",
            report.unsigned,
            if report.unsigned == 1 {
                "y is"
            } else {
                "ies are"
            }
        );
        if args.strict {
            eprintln!("audit log {log}: FAILED (--strict) — {msg}");
            return Ok(ExitCode::FAILURE);
        }
        eprintln!("warning: {msg}");
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
    format!(
        "{} entries{range}, {} checkpoints, last signed seq {signed}, {} unsigned",
        r.entries, r.checkpoints, r.unsigned
    )
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
        target,
        outcome,
        detail: detail.to_string(),
    });
}

/// Opens the audit log (blocking work on a blocking thread), with its metrics in `metrics`.
pub async fn open(
    cfg: AuditConfig,
    metrics: &beffroi_engine::metrics::Metrics,
) -> Result<std::sync::Arc<beffroi_audit::AuditLog>> {
    let path = cfg.path.clone();
    crate::files::private_db(&path)?;
    let log = tokio::task::spawn_blocking(move || {
        beffroi_audit::AuditLog::open(
            cfg,
            std::sync::Arc::new(beffroi_engine::runner::SystemClock),
        )
    })
    .await?
    .with_context(|| format!("cannot open the audit log {}", path.display()))?;
    metrics.with_registry(|r| log.metrics().register(r));
    Ok(std::sync::Arc::new(log))
}
