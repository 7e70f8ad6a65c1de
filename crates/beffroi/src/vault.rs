//! The key vault of one territory: the secrets behind the pseudonyms, kept in a folder apart
//! from the database (`[privacy] keys_dir`).
//!
//! - One 32-byte random key file per epoch, `epoch-0001.key`, mode 0600, created
//!   atomically (written to a temporary file, synced, renamed, folder synced).
//! - `epochs.log` records, one line each, when an epoch was created and destroyed, and by
//!   whom (`<ms since the Unix epoch> destroyed 1 by=dpo-martin`, and `despite_hold=…` when
//!   a legal hold was overridden); it never holds key bytes.
//! - An epoch whose pseudonyms a legal hold may need (it was alive during a held incident's
//!   window) is not destroyed, unless the destruction is forced with a recorded reason.
//! - Destroying an epoch overwrites its file with zeros, syncs and unlinks it, then records
//!   the destruction: its pseudonyms can no longer be linked to a value nor opened.
//!   Destroying the current epoch starts a new one.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use beffroi_privacy::{EpochKey, Pseudonymiser};

const LOG: &str = "epochs.log";

/// What the vault knows of one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochStatus {
    pub epoch: u32,
    /// Milliseconds since the Unix epoch.
    pub created_at: Option<i64>,
    pub destroyed_at: Option<i64>,
    /// Who destroyed it (`by=` of its line; older lines have none).
    pub destroyed_by: Option<String>,
    /// The reason given to destroy it despite a legal hold.
    pub despite_hold: Option<String>,
    /// The key file exists (the epoch is alive).
    pub key_present: bool,
}

pub struct Vault {
    dir: PathBuf,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn key_file(dir: &Path, epoch: u32) -> PathBuf {
    dir.join(format!("epoch-{epoch:04}.key"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// The default keys folder of a territory: `beffroi-keys/<territory>` beside the data folder.
pub fn default_dir(data_dir: &Path, territory: &str) -> PathBuf {
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join("beffroi-keys").join(territory)
}

impl Vault {
    /// Opens (creating it, mode 0700) the keys folder.
    pub fn open(dir: &Path) -> Result<Vault> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", dir.display()))?;
        }
        Ok(Vault {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record(&self, what: &str, epoch: u32) -> Result<()> {
        self.record_with(what, epoch, &[])
    }

    /// Appends an event line; `extra` are `key=value` words (values without spaces).
    fn record_with(&self, what: &str, epoch: u32, extra: &[(&str, String)]) -> Result<()> {
        let path = self.dir.join(LOG);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut line = format!("{} {what} {epoch}", now_ms());
        for (k, v) in extra {
            line.push_str(&format!(" {k}={}", encode_word(v)));
        }
        writeln!(f, "{line}")
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Every epoch recorded or found, oldest first.
    pub fn status(&self) -> Result<Vec<EpochStatus>> {
        let mut all: std::collections::BTreeMap<u32, EpochStatus> = Default::default();
        let entry = |all: &mut std::collections::BTreeMap<u32, EpochStatus>, e: u32| {
            all.entry(e)
                .or_insert(EpochStatus {
                    epoch: e,
                    created_at: None,
                    destroyed_at: None,
                    destroyed_by: None,
                    despite_hold: None,
                    key_present: false,
                })
                .clone()
        };
        let log = self.dir.join(LOG);
        match fs::read_to_string(&log) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    let [at, what, epoch, extra @ ..] = parts.as_slice() else {
                        bail!("{}:{}: unreadable line", log.display(), n + 1);
                    };
                    let word = |key: &str| {
                        extra
                            .iter()
                            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                            .map(decode_word)
                    };
                    let (Ok(at), Ok(epoch)) = (at.parse::<i64>(), epoch.parse::<u32>()) else {
                        bail!("{}:{}: unreadable line", log.display(), n + 1);
                    };
                    entry(&mut all, epoch);
                    if let Some(s) = all.get_mut(&epoch) {
                        match *what {
                            "created" => s.created_at = Some(at),
                            "destroyed" => {
                                s.destroyed_at = Some(at);
                                s.destroyed_by = word("by");
                                s.despite_hold = word("despite_hold");
                            }
                            _ => bail!("{}:{}: unknown event `{what}`", log.display(), n + 1),
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", log.display())),
        }
        for f in fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
        {
            let f = f?;
            let name = f.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("epoch-")
                .and_then(|s| s.strip_suffix(".key"))
                .and_then(|s| s.parse::<u32>().ok())
            {
                entry(&mut all, n);
                if let Some(s) = all.get_mut(&n) {
                    s.key_present = true;
                }
            }
        }
        Ok(all.into_values().collect())
    }

    /// The keys of the epochs alive.
    pub fn keys(&self) -> Result<Vec<EpochKey>> {
        let mut keys = Vec::new();
        for s in self.status()?.into_iter().filter(|s| s.key_present) {
            let path = key_file(&self.dir, s.epoch);
            let bytes =
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let Ok(master) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                bail!("{} is not a 32-byte key", path.display());
            };
            if master == [0; 32] {
                bail!(
                    "{} is all zeros (a destruction was interrupted?)",
                    path.display()
                );
            }
            keys.push(EpochKey::new(s.epoch, &master));
        }
        Ok(keys)
    }

    /// Creates the next epoch's key (one more than any epoch ever recorded).
    pub fn rotate(&self) -> Result<u32> {
        let next = self.status()?.iter().map(|s| s.epoch).max().unwrap_or(0) + 1;
        let mut master = [0u8; 32];
        rand::fill(&mut master);
        let path = key_file(&self.dir, next);
        let tmp = self.dir.join(format!(".epoch-{next:04}.key.tmp"));
        let _ = fs::remove_file(&tmp);
        {
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            f.write_all(&master)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        master.fill(0);
        fs::rename(&tmp, &path).with_context(|| format!("cannot create {}", path.display()))?;
        sync_dir(&self.dir)?;
        self.record("created", next)?;
        Ok(next)
    }

    /// Makes sure an epoch is alive (creates epoch 1 on first start); returns the keys.
    pub fn ensure(&self) -> Result<Vec<EpochKey>> {
        if !self.status()?.iter().any(|s| s.key_present) {
            self.rotate()?;
        }
        self.keys()
    }

    /// Destroys an epoch's key: overwritten with zeros, synced, unlinked, then recorded with
    /// who did it (and why, when a legal hold was overridden). Destroying the current epoch
    /// starts a new one (returned).
    pub fn destroy(&self, epoch: u32, by: &str, despite_hold: Option<&str>) -> Result<Option<u32>> {
        if by.trim().is_empty() {
            bail!("say who destroys the key (--by NAME)");
        }
        let status = self.status()?;
        let Some(s) = status.iter().find(|s| s.epoch == epoch && s.key_present) else {
            bail!("epoch {epoch} has no key in {}", self.dir.display());
        };
        let current = status
            .iter()
            .filter(|s| s.key_present)
            .map(|s| s.epoch)
            .max();
        let path = key_file(&self.dir, s.epoch);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            f.write_all(&[0u8; 32])
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot overwrite {}", path.display()))?;
        }
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        sync_dir(&self.dir)?;
        let mut extra = vec![("by", by.trim().to_string())];
        if let Some(r) = despite_hold {
            extra.push(("despite_hold", r.trim().to_string()));
        }
        self.record_with("destroyed", epoch, &extra)?;
        if current == Some(epoch) {
            return self.rotate().map(Some);
        }
        Ok(None)
    }

    /// The pseudonymiser of the epochs alive, creating the first epoch if there is none.
    pub fn pseudonymiser(&self) -> Result<Pseudonymiser> {
        let keys = self.ensure()?;
        Pseudonymiser::new(keys).context("no key alive")
    }
}

#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    /// The keys folder (else from --config: `[privacy] keys_dir` or its default).
    #[arg(long, global = true)]
    keys_dir: Option<PathBuf>,
    /// The `serve` configuration file, to find the keys folder.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(clap::Subcommand, Debug)]
enum KeysCommand {
    /// Every epoch, alive or destroyed, with its dates (never a key).
    List,
    /// Starts a new epoch: new pseudonyms from the next start of the server on.
    Rotate,
    /// Destroys an epoch's key for good: its pseudonyms can no longer be linked nor
    /// opened. Destroying the current epoch starts a new one.
    ///
    /// Refused while a legal hold may need the epoch's pseudonyms (the epoch was alive
    /// during a held incident's window), unless `--despite-hold REASON`.
    Destroy {
        #[arg(long)]
        epoch: u32,
        /// Who destroys it (recorded in `epochs.log` and, at the next start, the audit log).
        #[arg(long)]
        by: String,
        /// Destroy it although a legal hold covers it; the reason is recorded.
        #[arg(long)]
        despite_hold: Option<String>,
    },
}

/// `%`-escapes spaces and `%` so that a value is one word of `epochs.log`.
fn encode_word(v: &str) -> String {
    v.replace('%', "%25")
        .replace(' ', "%20")
        .replace('\n', "%0A")
}

fn decode_word(v: &str) -> String {
    v.replace("%20", " ")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// The active legal holds whose incident window (an hour before it opened until it
/// closed, or now) began after `created_at` of the epoch: the pseudonyms the hold keeps
/// may be of that epoch. Read from the data folder's store, read-only.
fn holds_covering(db: &Path, created_at: Option<i64>) -> Result<Vec<(i64, i64)>> {
    if !db.exists() {
        return Ok(Vec::new());
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", db.display()))?;
    let now = now_ms();
    let mut stmt = conn
        .prepare(
            "SELECT h.incident_id, h.until, coalesce(i.closed_at, ?1) FROM legal_holds h \
             LEFT JOIN incidents i ON i.id = h.incident_id \
             WHERE h.released_at IS NULL AND h.until > ?1",
        )
        .with_context(|| format!("cannot read the legal holds of {}", db.display()))?;
    let rows = stmt
        .query_map([now], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .with_context(|| format!("cannot read the legal holds of {}", db.display()))?;
    let mut out = Vec::new();
    for row in rows {
        let (incident, until, window_end) = row.context("cannot read a legal hold")?;
        // An epoch made after the held incident's window ended never sealed its values.
        if created_at.is_none_or(|c| c <= window_end) {
            out.push((incident, until));
        }
    }
    Ok(out)
}

fn resolve_dir(args: &KeysArgs) -> Result<PathBuf> {
    if let Some(d) = &args.keys_dir {
        return Ok(d.clone());
    }
    let Some(config) = &args.config else {
        bail!("give --keys-dir or --config");
    };
    let cfg = crate::setup::read_config(config)?;
    if let Some(d) = cfg.keys_dir {
        return Ok(d);
    }
    let dep = crate::setup::load_dir(&cfg.deployment)
        .map_err(|e| anyhow::anyhow!("{} is invalid:\n{e}", cfg.deployment.display()))?;
    Ok(default_dir(&cfg.data_dir, &dep.territory.id))
}

fn show_time(ms: Option<i64>) -> String {
    ms.and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// `beffroi privacy keys …`.
pub fn run(args: KeysArgs) -> Result<()> {
    let dir = resolve_dir(&args)?;
    let vault = Vault::open(&dir)?;
    match args.command {
        KeysCommand::List => {
            let st = vault.status()?;
            let current = st.iter().filter(|s| s.key_present).map(|s| s.epoch).max();
            println!("keys folder: {}", vault.dir().display());
            println!(
                "{:<6} {:<10} {:<22} {:<22}",
                "epoch", "state", "created", "destroyed"
            );
            for s in &st {
                let state = match (s.key_present, Some(s.epoch) == current) {
                    (true, true) => "current",
                    (true, false) => "alive",
                    (false, _) => "destroyed",
                };
                println!(
                    "{:<6} {:<10} {:<22} {:<22}",
                    s.epoch,
                    state,
                    show_time(s.created_at),
                    show_time(s.destroyed_at)
                );
            }
            if st.is_empty() {
                println!("(no epoch yet: the server creates epoch 1 on first start)");
            }
        }
        KeysCommand::Rotate => {
            let e = vault.rotate()?;
            println!(
                "epoch {e} created in {}; restart the server to use it",
                dir.display()
            );
        }
        KeysCommand::Destroy {
            epoch,
            by,
            despite_hold,
        } => {
            let Some(config) = &args.config else {
                bail!("give --config: the legal holds in the data store are checked first");
            };
            let cfg = crate::setup::read_config(config)?;
            let created = vault
                .status()?
                .iter()
                .find(|s| s.epoch == epoch)
                .and_then(|s| s.created_at);
            let holds = match &cfg.store {
                crate::config::StoreLocation::Sqlite => {
                    holds_covering(&cfg.data_dir.join("beffroi.db"), created)?
                }
                crate::config::StoreLocation::Postgres(url) => {
                    let dep = crate::setup::load_dir(&cfg.deployment).map_err(|e| {
                        anyhow::anyhow!("{} is invalid:\n{e}", cfg.deployment.display())
                    })?;
                    crate::backend::holds_covering_postgres(
                        url.as_deref(),
                        dep.territory,
                        created,
                        now_ms(),
                    )?
                }
            };
            if !holds.is_empty() && despite_hold.as_deref().is_none_or(|r| r.trim().is_empty()) {
                let list: Vec<String> = holds
                    .iter()
                    .map(|(i, until)| format!("incident {i} (until {})", show_time(Some(*until))))
                    .collect();
                bail!(
                    "epoch {epoch} may hold pseudonyms a legal hold keeps: {}; release the \
                     hold first, or give --despite-hold REASON (recorded)",
                    list.join(", ")
                );
            }
            let next = vault.destroy(epoch, &by, despite_hold.as_deref())?;
            println!("epoch {epoch} destroyed: its pseudonyms can no longer be linked nor opened");
            if let Some(n) = next {
                println!("epoch {n} created (the destroyed epoch was the current one)");
            }
            println!("restart the server: it deletes the identities of destroyed epochs");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::Identifier;

    #[test]
    fn epochs_are_created_rotated_and_destroyed_for_good() {
        let dir = tempfile::tempdir().expect("temp dir");
        let v = Vault::open(&dir.path().join("keys")).expect("vault");
        let p1 = v.pseudonymiser().expect("first epoch");
        assert_eq!(p1.current_epoch(), 1);
        let file = v.dir().join("epoch-0001.key");
        assert_eq!(fs::read(&file).expect("key").len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Opening again reuses the key: same pseudonyms.
        let again = v.pseudonymiser().expect("again");
        let plate = "AB-123-CD";
        assert_eq!(
            p1.pseudonym(Identifier::LicencePlate, plate),
            again.pseudonym(Identifier::LicencePlate, plate)
        );
        assert_eq!(v.rotate().expect("rotate"), 2);
        let sealed = p1.seal(Identifier::LicencePlate, plate);
        // Destroying epoch 1 (not current): 2 stays.
        assert_eq!(v.destroy(1, "dpo", None).expect("destroy"), None);
        assert!(!file.exists());
        let p = v.pseudonymiser().expect("epoch 2");
        assert_eq!(p.epochs().collect::<Vec<_>>(), vec![2]);
        assert!(p.open(&sealed.pseudonym.0, &sealed.ciphertext).is_err());
        // Destroying the current epoch starts the next one.
        assert_eq!(
            v.destroy(2, "dpo martin", Some("court order 12"))
                .expect("destroy"),
            Some(3)
        );
        let st = v.status().expect("status");
        let alive: Vec<u32> = st
            .iter()
            .filter(|s| s.key_present)
            .map(|s| s.epoch)
            .collect();
        assert_eq!(alive, vec![3]);
        assert!(
            st.iter()
                .filter(|s| s.epoch < 3)
                .all(|s| s.destroyed_at.is_some())
        );
        assert!(v.destroy(1, "dpo", None).is_err(), "already destroyed");
        assert!(v.destroy(3, " ", None).is_err(), "nobody");
        let by: Vec<_> = st
            .iter()
            .map(|s| (s.destroyed_by.clone(), s.despite_hold.clone()))
            .collect();
        assert_eq!(
            by,
            vec![
                (Some("dpo".into()), None),
                (Some("dpo martin".into()), Some("court order 12".into())),
                (None, None)
            ]
        );
        let log = fs::read_to_string(v.dir().join(LOG)).expect("log");
        assert_eq!(log.lines().count(), 5, "{log}");
    }

    #[test]
    fn the_default_folder_is_beside_the_data_folder() {
        assert_eq!(
            default_dir(Path::new("/var/lib/beffroi/data"), "dijon"),
            PathBuf::from("/var/lib/beffroi/beffroi-keys/dijon")
        );
        assert_eq!(
            default_dir(Path::new("beffroi-data"), "dijon"),
            PathBuf::from("./beffroi-keys/dijon")
        );
    }
}
