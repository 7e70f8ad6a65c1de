//! `beffroi backup` and `beffroi restore`: a consistent copy of a data folder taken while the
//! server runs, and its restoration into a fresh one.
//!
//! A backup is a folder: the files under `files/`, `manifest.json` (format, kind, Beffroi's
//! version, every file with its place, size, SHA-256 and, for a database, its schema
//! version) and `SHA256SUMS` (the same checksums, for `sha256sum -c` without Beffroi).
//!
//! - **Online.** Each SQLite store (`beffroi.db`, `audit.sqlite`, `federation.sqlite`, any
//!   other database found in the data folder) is copied with SQLite's backup API in one
//!   step: one read transaction, a consistent snapshot, while the server goes on writing
//!   (WAL: readers never block the writer). The audit anchor is copied before the audit
//!   log, so the copied log always reaches the copied anchor.
//! - **Keys apart.** Key material never goes into a data backup: the pseudonymisation key
//!   vault, the audit signing key, the TOTP sealing key, the federation keys, any `*.key`
//!   file, and the device registry (`devices.sqlite`, which keeps each device's signing
//!   key in clear). `backup --keys` writes those into another folder, with a warning; a
//!   data backup is useless to whoever steals it without the keys, and the keys are kept
//!   on another medium.
//! - **Restore into a fresh place.** `restore` checks every file's size and SHA-256 before
//!   writing anything, refuses a data folder that is not empty and never overwrites a
//!   file, writes files 0600 and folders 0700, and checks each restored database
//!   (`PRAGMA quick_check`).
//!
//! Places: files are recorded relative to where they live in the layout of a `serve`
//! configuration (or of a bare data folder): the data folder, the audit log's files, the
//! keys folder beside the data folder (`beffroi-keys/`), a configured `[privacy] keys_dir`,
//! the audit signing key, the TOTP key. A backup taken with `--config` restores into the
//! layout of another configuration or of a bare data folder, place by place.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The manifest's format; a newer one is refused.
const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SUMS: &str = "SHA256SUMS";
const FILES: &str = "files";
/// The device registry: credentials, with each device's signing key in clear.
const REGISTRY_FILE: &str = "devices.sqlite";
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct BackupArgs {
    /// The `serve` configuration file: its data folder, audit log, keys and TOTP key.
    #[arg(long, conflicts_with = "data", required_unless_present = "data")]
    config: Option<PathBuf>,
    /// A data folder in the default layout (keys in `beffroi-keys/` beside it).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The backup folder to create (it must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Back up the keys (pseudonymisation vault, audit signing key, TOTP and federation
    /// keys, device credentials) instead of the data: keep it on another medium than the
    /// data backups.
    #[arg(long)]
    keys: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup folder (`beffroi backup --out`).
    #[arg(long)]
    from: PathBuf,
    /// Restore into the layout of this `serve` configuration.
    #[arg(long, conflicts_with = "data", required_unless_present = "data")]
    config: Option<PathBuf>,
    /// Restore into this data folder (default layout: keys in `beffroi-keys/` beside it).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Only check the backup (sizes, checksums, versions); write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What a backup holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Data,
    Keys,
}

/// Where a file lives, independent of the host's paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// Under the data folder.
    Data,
    /// The audit log (`[audit] path`).
    AuditLog,
    /// The audit log's public key, beside it.
    AuditPublicKey,
    /// The audit anchor, in the data folder.
    AuditAnchor,
    /// The audit signing key (`[audit] key_file`).
    AuditKey,
    /// Under `beffroi-keys/` beside the data folder.
    KeysFolder,
    /// Under a configured `[privacy] keys_dir` outside `beffroi-keys/`.
    Vault,
    /// The TOTP sealing key (`[http] totp_key`).
    TotpKey,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kind: Kind,
    pub beffroi_version: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub files: Vec<FileEntry>,
    /// What this backup does not hold, and why.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FileEntry {
    pub place: Place,
    /// Relative to the place, `/`-separated; empty for a place that is one file.
    pub path: String,
    /// Relative to the backup folder.
    pub stored: String,
    pub size: u64,
    pub sha256: String,
    /// `PRAGMA user_version` of a database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
}

/// Where each place is on this host.
#[derive(Debug)]
struct Layout {
    data_dir: PathBuf,
    audit_log: PathBuf,
    audit_pub: PathBuf,
    audit_anchor: Option<PathBuf>,
    audit_key: PathBuf,
    keys_folder: PathBuf,
    vault: Option<PathBuf>,
    totp_key: PathBuf,
    /// The store is in PostgreSQL (`[cluster] database`).
    postgres: bool,
}

impl Layout {
    fn of(config: Option<&Path>, data: Option<&Path>) -> Result<Layout> {
        let key_override = crate::audit_cmd::key_override();
        match (config, data) {
            (Some(file), _) => {
                let cfg = crate::setup::read_config(file)?;
                let audit = cfg.audit.to_config(&cfg.data_dir, key_override);
                let keys_folder = keys_folder(&cfg.data_dir);
                Ok(Layout {
                    vault: cfg.keys_dir.filter(|k| !k.starts_with(&keys_folder)),
                    totp_key: cfg
                        .http
                        .totp_key
                        .clone()
                        .unwrap_or_else(|| cfg.data_dir.join("totp.key")),
                    postgres: matches!(cfg.store, crate::config::StoreLocation::Postgres(_)),
                    data_dir: cfg.data_dir,
                    audit_log: audit.path,
                    audit_pub: audit.public_key_file,
                    audit_anchor: audit.anchor_file,
                    audit_key: audit.key_file,
                    keys_folder,
                })
            }
            (None, Some(dir)) => {
                let mut audit = beffroi_audit::AuditConfig::in_dir(dir);
                if let Some(k) = key_override {
                    audit.key_file = k;
                }
                Ok(Layout {
                    data_dir: dir.to_path_buf(),
                    audit_log: audit.path,
                    audit_pub: audit.public_key_file,
                    audit_anchor: audit.anchor_file,
                    audit_key: audit.key_file,
                    keys_folder: keys_folder(dir),
                    vault: None,
                    totp_key: dir.join("totp.key"),
                    postgres: false,
                })
            }
            (None, None) => bail!("say where the data is: --config FILE or --data DIR"),
        }
    }

    /// Where a file of `place` at `rel` goes; `None` for a place this layout lacks.
    fn path_of(&self, place: Place, rel: &str) -> Option<PathBuf> {
        let under = |root: &Path| join_rel(root, rel);
        match place {
            Place::Data => under(&self.data_dir),
            Place::AuditLog => Some(self.audit_log.clone()),
            Place::AuditPublicKey => Some(self.audit_pub.clone()),
            Place::AuditAnchor => self.audit_anchor.clone(),
            Place::AuditKey => Some(self.audit_key.clone()),
            Place::KeysFolder => under(&self.keys_folder),
            // A vault kept outside the keys folder goes where `[privacy] keys_dir` says.
            Place::Vault => self.vault.as_deref().and_then(under),
            Place::TotpKey => Some(self.totp_key.clone()),
        }
    }

    /// The files of the data folder that have a place of their own.
    fn special(&self) -> BTreeSet<PathBuf> {
        [
            Some(&self.audit_log),
            Some(&self.audit_pub),
            self.audit_anchor.as_ref(),
            Some(&self.audit_key),
            Some(&self.totp_key),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// `beffroi-keys/` beside the data folder.
fn keys_folder(data_dir: &Path) -> PathBuf {
    data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(beffroi_audit::KEYS_DIR)
}

/// `root` joined with a relative, `/`-separated path that cannot climb out of it.
fn join_rel(root: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| {
            if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(p)
            }
        })
}

/// A file of the data folder that holds secrets: any `*.key`, and the device registry.
fn is_secret(rel: &str) -> bool {
    rel.ends_with(".key") || rel == REGISTRY_FILE
}

/// SQLite's side files (the backup API reads through them) and the temporary files the
/// server writes before renaming them: never copied.
fn is_side_file(name: &str) -> bool {
    ["-wal", "-shm", "-journal", ".tmp"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn is_sqlite(path: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == SQLITE_MAGIC)
}

/// Every regular file under `root`, as `/`-separated relative paths, sorted.
fn files_under(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
            let path = e.path();
            let ty = e
                .file_type()
                .with_context(|| format!("cannot read {}", path.display()))?;
            if ty.is_dir() {
                walk(root, &path, out)?;
            } else if ty.is_file()
                && let Ok(rel) = path.strip_prefix(root)
            {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if root.is_dir() {
        walk(root, root, &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn private_dir_all(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// The folder is missing or empty.
fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// SHA-256 (hex) and size of a file.
fn digest(path: &Path) -> Result<(String, u64)> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Copies a live database into `to` with SQLite's backup API, in one step: one read
/// transaction, so the copy is a consistent snapshot however busy the writer is.
fn copy_database(from: &Path, to: &Path) -> Result<i64> {
    let src = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", from.display()))?;
    src.busy_timeout(BUSY_TIMEOUT)
        .with_context(|| format!("cannot open {}", from.display()))?;
    create_private(to)?;
    let mut dst =
        Connection::open(to).with_context(|| format!("cannot create {}", to.display()))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)
            .with_context(|| format!("cannot back up {}", from.display()))?;
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match backup
                .step(-1)
                .with_context(|| format!("cannot back up {}", from.display()))?
            {
                rusqlite::backup::StepResult::Done => break,
                _ if std::time::Instant::now() >= deadline => {
                    bail!(
                        "cannot back up {}: the database stays locked",
                        from.display()
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // The copy stands alone: no WAL beside it.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .with_context(|| format!("cannot finish {}", to.display()))?;
    let version: i64 = dst
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .with_context(|| format!("cannot read {}", to.display()))?;
    drop(dst);
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", to.display()))?;
    Ok(version)
}

/// Creates an empty file, 0600, refusing to overwrite.
fn create_private(path: &Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        private_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))
}

fn copy_plain(from: &Path, to: &Path) -> Result<()> {
    let mut src =
        std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut dst = create_private(to)?;
    std::io::copy(&mut src, &mut dst)
        .and_then(|_| dst.sync_all())
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The file was there when the folder was listed and is gone: a temporary file the server
/// renamed or deleted meanwhile.
fn vanished(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

/// One file to copy: where it is, its place and relative path.
struct Source {
    path: PathBuf,
    place: Place,
    rel: String,
}

/// The files a backup of `kind` takes from `layout`, in the order they are copied.
fn sources(layout: &Layout, kind: Kind) -> Result<(Vec<Source>, Vec<String>)> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let single = |out: &mut Vec<Source>, path: &Path, place: Place| {
        if path.is_file() {
            out.push(Source {
                path: path.to_path_buf(),
                place,
                rel: String::new(),
            });
        }
    };
    let special = layout.special();
    let data_files: Vec<String> = files_under(&layout.data_dir)?
        .into_iter()
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            !is_side_file(name) && !special.contains(&layout.data_dir.join(rel))
        })
        .collect();
    match kind {
        Kind::Data => {
            // The anchor before the log: the copied log reaches at least the copied anchor.
            if let Some(a) = &layout.audit_anchor {
                single(&mut out, a, Place::AuditAnchor);
            }
            single(&mut out, &layout.audit_pub, Place::AuditPublicKey);
            single(&mut out, &layout.audit_log, Place::AuditLog);
            for rel in data_files.into_iter().filter(|r| !is_secret(r)) {
                out.push(Source {
                    path: layout.data_dir.join(&rel),
                    place: Place::Data,
                    rel,
                });
            }
            notes.push(
                "key material is not in this backup: take it with `beffroi backup --keys` and \
                 keep it apart"
                    .into(),
            );
            if layout.postgres {
                notes.push(
                    "the store is in PostgreSQL ([cluster] database): back it up with pg_dump"
                        .into(),
                );
            }
        }
        Kind::Keys => {
            single(&mut out, &layout.audit_key, Place::AuditKey);
            single(&mut out, &layout.totp_key, Place::TotpKey);
            let folders = [
                Some((&layout.keys_folder, Place::KeysFolder)),
                layout.vault.as_ref().map(|v| (v, Place::Vault)),
            ];
            for (root, place) in folders.into_iter().flatten() {
                for rel in files_under(root)? {
                    let path = root.join(&rel);
                    // The audit and TOTP keys have their own place, wherever they are.
                    let name = rel.rsplit('/').next().unwrap_or(&rel);
                    if special.contains(&path) || is_side_file(name) {
                        continue;
                    }
                    out.push(Source { path, place, rel });
                }
            }
            for rel in data_files.into_iter().filter(|r| is_secret(r)) {
                out.push(Source {
                    path: layout.data_dir.join(&rel),
                    place: Place::Data,
                    rel,
                });
            }
        }
    }
    Ok((out, notes))
}

pub fn backup(args: BackupArgs) -> Result<()> {
    let layout = Layout::of(args.config.as_deref(), args.data.as_deref())?;
    let kind = if args.keys { Kind::Keys } else { Kind::Data };
    if kind == Kind::Data && !layout.data_dir.is_dir() {
        bail!("{} is not a data folder", layout.data_dir.display());
    }
    let manifest = write_backup(&layout, kind, &args.out)?;
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    println!(
        "{}: {} file(s), {} bytes, {:?} backup of Beffroi {}",
        args.out.display(),
        manifest.files.len(),
        total,
        kind,
        manifest.beffroi_version
    );
    for n in &manifest.notes {
        println!("note: {n}");
    }
    if kind == Kind::Keys {
        eprintln!(
            "warning: {} holds the secrets of this server: the pseudonymisation keys (who can \
             read them links every pseudonym to a person), the audit signing key, the TOTP \
             and federation keys and the devices' credentials. Keep it on another medium than \
             the data backups, encrypted, readable by the people who restore only; delete the \
             copies you do not keep.",
            args.out.display()
        );
    }
    Ok(())
}

fn write_backup(layout: &Layout, kind: Kind, out: &Path) -> Result<Manifest> {
    if !is_empty_dir(out)? {
        bail!(
            "{} exists and is not empty: give a new folder",
            out.display()
        );
    }
    private_dir_all(out)?;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", out.display()))?;
    let (sources, notes) = sources(layout, kind)?;
    let mut files = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let name = s
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Numbered: two places may hold files of the same name.
        let stored = format!("{FILES}/{i:03}-{name}");
        let to = out.join(&stored);
        let schema_version = if is_sqlite(&s.path) {
            Some(copy_database(&s.path, &to)?)
        } else {
            match copy_plain(&s.path, &to) {
                Ok(()) => None,
                Err(e) if s.place == Place::Data && vanished(&e) => continue,
                Err(e) => return Err(e),
            }
        };
        let (sha256, size) = digest(&to)?;
        files.push(FileEntry {
            place: s.place,
            path: s.rel.clone(),
            stored,
            size,
            sha256,
            schema_version,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        kind,
        beffroi_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at_ms: now_ms(),
        files,
        notes,
    };
    let sums: String = manifest
        .files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.stored))
        .collect();
    write_new(&out.join(SUMS), sums.as_bytes())?;
    let json = serde_json::to_vec_pretty(&manifest).context("cannot write the manifest")?;
    // Last: a folder with a manifest is a complete backup.
    write_new(&out.join(MANIFEST), &json)?;
    std::fs::File::open(out)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", out.display()))?;
    Ok(manifest)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = create_private(path)?;
    std::io::Write::write_all(&mut f, bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a backup's manifest and checks every file against it.
pub fn check_backup(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {} (an incomplete or foreign backup?)",
            path.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    if manifest.format > FORMAT {
        bail!(
            "{}: backup format {} is newer than this Beffroi reads ({FORMAT}); restore it \
             with Beffroi {} or later",
            path.display(),
            manifest.format,
            manifest.beffroi_version
        );
    }
    let mut problems = Vec::new();
    for f in &manifest.files {
        let Some(stored) = join_rel(dir, &f.stored) else {
            problems.push(format!("{}: not a path inside the backup", f.stored));
            continue;
        };
        match digest(&stored) {
            Err(e) => problems.push(format!("{e:#}")),
            Ok((_, size)) if size != f.size => problems.push(format!(
                "{}: {size} bytes, the manifest says {}",
                f.stored, f.size
            )),
            Ok((sha, _)) if sha != f.sha256 => {
                problems.push(format!("{}: SHA-256 differs from the manifest", f.stored))
            }
            Ok(_) => {}
        }
        if join_rel(Path::new(""), &f.path).is_none() {
            problems.push(format!("{}: not a relative path", f.path));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} is damaged, nothing restored:\n  {}",
            dir.display(),
            problems.join("\n  ")
        );
    }
    Ok(manifest)
}

pub fn restore(args: RestoreArgs) -> Result<()> {
    let manifest = check_backup(&args.from)?;
    let layout = Layout::of(args.config.as_deref(), args.data.as_deref())?;
    let plan = plan(&manifest, &layout)?;
    if args.dry_run {
        println!(
            "{}: {:?} backup of Beffroi {}, {} file(s), checksums OK; would restore:",
            args.from.display(),
            manifest.kind,
            manifest.beffroi_version,
            plan.len()
        );
        for (_, to) in &plan {
            println!("  {}", to.display());
        }
        return Ok(());
    }
    for (f, to) in &plan {
        let from = args.from.join(&f.stored);
        copy_plain(&from, to)?;
        if f.schema_version.is_some() {
            quick_check(to)?;
        }
    }
    println!(
        "restored {} file(s) of a {:?} backup of Beffroi {} into {}",
        plan.len(),
        manifest.kind,
        manifest.beffroi_version,
        layout.data_dir.display()
    );
    if manifest.kind == Kind::Data {
        println!(
            "next: restore the keys (`beffroi restore --from KEYS_BACKUP` with the same \
             --config or --data), check the audit log (`beffroi audit verify`), then start \
             the server: a store from an older version is migrated at start"
        );
    }
    Ok(())
}

/// Each file and where it goes; refuses a non-empty data folder (for data) and any file
/// that exists already.
fn plan<'m>(manifest: &'m Manifest, layout: &Layout) -> Result<Vec<(&'m FileEntry, PathBuf)>> {
    if manifest.kind == Kind::Data && !is_empty_dir(&layout.data_dir)? {
        bail!(
            "{} is not empty: restore into a new data folder (a restore never mixes two \
             states)",
            layout.data_dir.display()
        );
    }
    let mut plan = Vec::new();
    let mut problems = Vec::new();
    for f in &manifest.files {
        match layout.path_of(f.place, &f.path) {
            None => problems.push(format!(
                "{:?} {}: this layout has no such place (a vault kept outside beffroi-keys/ \
                 restores with --config naming its [privacy] keys_dir)",
                f.place, f.path
            )),
            Some(to) if to.exists() => problems.push(format!("{} exists already", to.display())),
            Some(to) => plan.push((f, to)),
        }
    }
    if !problems.is_empty() {
        bail!("nothing restored:\n  {}", problems.join("\n  "));
    }
    Ok(plan)
}

fn quick_check(path: &Path) -> Result<()> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let r: String = c
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .with_context(|| format!("cannot check {}", path.display()))?;
    if r != "ok" {
        bail!("{}: restored database fails its check: {r}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_cannot_climb_out() {
        let root = Path::new("/srv/data");
        assert_eq!(
            join_rel(root, "exports/a.json"),
            Some(PathBuf::from("/srv/data/exports/a.json"))
        );
        assert_eq!(join_rel(root, ""), Some(PathBuf::from("/srv/data")));
        assert_eq!(join_rel(root, "../etc/passwd"), None);
        assert_eq!(join_rel(root, "/etc/passwd"), None);
        assert_eq!(
            join_rel(root, "a/./b"),
            Some(PathBuf::from("/srv/data/a/b"))
        );
    }

    #[test]
    fn key_files_and_the_registry_are_secrets() {
        assert!(is_secret("totp.key"));
        assert!(is_secret("federation/signing.key"));
        assert!(is_secret("devices.sqlite"));
        assert!(!is_secret("beffroi.db"));
        assert!(!is_secret("federation.sqlite"));
        assert!(!is_secret("exports/keys.json"));
    }

    fn layout(t: &Path) -> Layout {
        Layout::of(None, Some(&t.join("data"))).expect("layout")
    }

    #[test]
    fn a_damaged_file_is_found_before_anything_is_restored() {
        let t = tempfile::tempdir().expect("tempdir");
        let data = t.path().join("data");
        std::fs::create_dir_all(data.join("exports")).expect("mkdir");
        std::fs::write(data.join("exports/report.json"), b"{}").expect("write");
        std::fs::write(data.join("totp.key"), [7u8; 32]).expect("write");
        let out = t.path().join("backup");
        let m = write_backup(&layout(t.path()), Kind::Data, &out).expect("backup");
        assert_eq!(m.files.len(), 1, "{m:?}");
        assert_eq!(m.files[0].path, "exports/report.json");
        check_backup(&out).expect("intact");
        std::fs::write(out.join(&m.files[0].stored), b"[]").expect("tamper");
        let e = check_backup(&out).expect_err("damaged");
        assert!(format!("{e:#}").contains("differs"), "{e:#}");
    }

    #[test]
    fn restore_refuses_a_folder_that_holds_something() {
        let t = tempfile::tempdir().expect("tempdir");
        let data = t.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::write(data.join("note.txt"), b"x").expect("write");
        let out = t.path().join("backup");
        let m = write_backup(&layout(t.path()), Kind::Data, &out).expect("backup");
        let e = plan(&m, &layout(t.path())).expect_err("not empty");
        assert!(format!("{e:#}").contains("not empty"), "{e:#}");
        let fresh = t.path().join("fresh");
        let l = Layout::of(None, Some(&fresh.join("data"))).expect("layout");
        let p = plan(&m, &l).expect("plan");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1, fresh.join("data/note.txt"));
    }
}
