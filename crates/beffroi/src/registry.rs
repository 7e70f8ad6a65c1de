//! Wiring of the device registry (ADR 0012, ADR 0040): which backend the binary uses, the
//! signing keys loaded at start and reloaded when the registry changes, and the broker's
//! files on disk. The registry itself is `beffroi-registry`, reached through its port.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use beffroi_registry::sqlite::{SqliteRegistry, SqliteRegistryReader};
use beffroi_registry::{CredentialReads, CredentialStore};

/// Where the registry is kept.
#[derive(Clone, Debug)]
pub enum Location {
    /// `<data_dir>/devices.sqlite`: a single server.
    Dir(PathBuf),
    /// A PostgreSQL database, by URL: a cluster's, shared by its nodes.
    Postgres(String),
}

impl Location {
    /// Where the server whose store is `store` keeps its registry: beside its SQLite store,
    /// or in its PostgreSQL database.
    pub fn of_store(store: &crate::config::StoreLocation, data_dir: &Path) -> Result<Location> {
        Ok(match store {
            crate::config::StoreLocation::Sqlite => Location::Dir(data_dir.to_path_buf()),
            crate::config::StoreLocation::Postgres(url) => {
                Location::Postgres(crate::backend::database_url(url.as_deref())?)
            }
        })
    }
}

/// The registry, read-write (created if needed): `beffroi devices`.
pub fn open(at: &Location) -> Result<Box<dyn CredentialStore>> {
    match at {
        Location::Dir(dir) => Ok(Box::new(SqliteRegistry::open(dir)?)),
        Location::Postgres(url) => open_postgres(url),
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str) -> Result<Box<dyn CredentialStore>> {
    let shown = crate::backend::redact_url(url);
    Ok(Box::new(
        beffroi_registry::pg::PgRegistry::open(url)
            .with_context(|| format!("cannot open the device registry in {shown}"))?,
    ))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_: &str) -> Result<Box<dyn CredentialStore>> {
    bail!("this binary was built without the `postgres` feature")
}

/// The registry, read-only, if there is one: the server never creates nor changes a
/// SQLite registry (a PostgreSQL one gets its tables, empty, as the store does).
pub fn open_reader(at: &Location) -> Result<Option<Box<dyn CredentialReads>>> {
    match at {
        Location::Dir(dir) => {
            Ok(SqliteRegistryReader::open(dir)?.map(|r| Box::new(r) as Box<dyn CredentialReads>))
        }
        Location::Postgres(url) => Ok(Some(open_postgres(url)? as Box<dyn CredentialReads>)),
    }
}

/// Follows the registry's revision and reads the signing keys again when it changes. Opens
/// the registry when it appears (created after start), and again after a failed read.
pub struct KeyWatch {
    at: Location,
    reader: Option<Box<dyn CredentialReads>>,
    /// The revision of the keys in force; `None` until keys were read.
    last: Option<u64>,
}

impl KeyWatch {
    pub fn new(at: Location) -> KeyWatch {
        KeyWatch {
            at,
            reader: None,
            last: None,
        }
    }

    /// The signing keys in force if the registry changed since the last call (the first
    /// call reads them), `None` if it did not or there is no registry yet. Blocking.
    pub fn poll(&mut self) -> Result<Option<BTreeMap<String, [u8; 32]>>> {
        let result = self.read();
        if result.is_err() {
            // Reopen and read everything at the next call.
            self.reader = None;
            self.last = None;
        }
        result
    }

    fn read(&mut self) -> Result<Option<BTreeMap<String, [u8; 32]>>> {
        if self.reader.is_none() {
            self.reader = open_reader(&self.at)?;
        }
        let Some(reader) = &self.reader else {
            return Ok(None);
        };
        // The revision first: a change committed between the two reads shows as a newer
        // revision at the next call, never as keys newer than their revision missed.
        let revision = reader.revision()?;
        if self.last == Some(revision) {
            return Ok(None);
        }
        let keys = reader.signing_keys()?;
        self.last = Some(revision);
        Ok(Some(keys))
    }
}

/// The signing keys in force at start, for the engine (empty without a registry), and the
/// watch that follows them from there.
pub async fn load_device_keys(
    at: Location,
) -> Result<(beffroi_engine::trust::DeviceKeys, KeyWatch)> {
    let mut watch = KeyWatch::new(at);
    let (keys, watch) = tokio::task::spawn_blocking(move || {
        let keys = watch.poll();
        (keys, watch)
    })
    .await?;
    let keys = keys?.unwrap_or_default();
    tracing::info!(devices = keys.len(), "device signing keys loaded");
    Ok((beffroi_engine::trust::DeviceKeys::new(keys), watch))
}

/// Reloads the signing keys when the registry changes (a revocation takes effect without a
/// restart): polls the registry's revision every second.
pub async fn watch(
    engine: beffroi_engine::runner::EngineHandle,
    mut watch: KeyWatch,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let polled = tokio::task::spawn_blocking(move || {
            let keys = watch.poll();
            (keys, watch)
        })
        .await;
        let keys = match polled {
            Ok((keys, w)) => {
                watch = w;
                keys
            }
            // The blocking task panicked: nothing left to watch with.
            Err(e) => {
                tracing::error!(error = %e, "the device registry watch stopped");
                return;
            }
        };
        match keys {
            Ok(None) => {}
            Ok(Some(keys)) => {
                tracing::info!(devices = keys.len(), "device signing keys reloaded");
                let keys = beffroi_engine::trust::DeviceKeys::new(keys);
                if engine
                    .replace_device_keys(std::sync::Arc::new(keys))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // Perhaps read while `beffroi devices` was writing: retried at the next tick.
            Err(e) => {
                tracing::error!(
                    error = %format_args!("{e:#}"),
                    "cannot reload the device registry; keys in force kept"
                )
            }
        }
    }
}

/// Writes the broker files atomically (temp file + rename), both 0640: Mosquitto rereads
/// them on SIGHUP after dropping privileges, so they are readable by the folder's group
/// (make the folder setgid, group `mosquitto`); `passwd` holds only PBKDF2 hashes.
pub fn write_broker_files(dir: &Path, files: &beffroi_registry::broker::BrokerFiles) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join("passwd"), files.passwd.as_bytes(), 0o640)?;
    write_atomic(&dir.join("acl"), files.acl.as_bytes(), 0o640)?;
    Ok(())
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Tells Mosquitto to reread its password and ACL files (SIGHUP to the pid in the file).
pub fn reload_broker(pid_file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: not a pid", pid_file.display()))?;
    if pid <= 1 {
        bail!("{}: refusing pid {pid}", pid_file.display());
    }
    let status = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .context("running kill -HUP")?;
    if !status.success() {
        bail!("kill -HUP {pid} failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_registry::DeviceId;
    use beffroi_registry::broker::{self, BrokerSettings};

    #[cfg(feature = "mqtt")]
    #[test]
    fn acl_suffixes_are_the_routed_ones() {
        let routed: Vec<&str> = beffroi_mqtt::DEVICE_SUFFIXES
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(routed, broker::DEVICE_TOPIC_SUFFIXES);
    }

    #[test]
    fn broker_files_list_only_active_devices_and_are_group_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reg = open(&Location::Dir(dir.path().to_path_buf())).expect("open");
        let (g1, g2) = (
            DeviceId::parse("g1").expect("id"),
            DeviceId::parse("g2").expect("id"),
        );
        beffroi_registry::issue(reg.as_mut(), &g1, 1).expect("issue");
        beffroi_registry::issue(reg.as_mut(), &g2, 1).expect("issue");
        reg.revoke(&g2, 2).expect("revoke");
        let s = BrokerSettings {
            prefix: "beffroi/+".into(),
            ingest_user: "beffroi".into(),
            ingest_password: "x".into(),
        };
        let files = broker::render(&reg.active().expect("active"), &s).expect("files");
        assert!(files.passwd.lines().any(|l| l.starts_with("g1:$7$101$")));
        assert!(!files.passwd.contains("g2:"));
        assert!(!files.acl.contains("g2"));
        write_broker_files(dir.path(), &files).expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        let m = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(m("passwd"), 0o640);
        assert_eq!(m("acl"), 0o640);
    }

    #[test]
    fn the_key_watch_reloads_when_the_registry_changes_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = Location::Dir(dir.path().to_path_buf());
        let mut watch = KeyWatch::new(at.clone());
        // No registry: no keys, and none created.
        assert!(watch.poll().expect("poll").is_none());
        assert!(!beffroi_registry::sqlite::path(dir.path()).exists());
        // Created after start: its keys are read at the next poll, once.
        reloads_on_change(&at, &mut watch);
    }

    /// A cluster's nodes read the registry in PostgreSQL: a key issued by `beffroi devices
    /// --database` on any machine reaches each node's watch, and so does its revocation.
    #[cfg(feature = "postgres")]
    #[test]
    fn the_key_watch_follows_a_registry_in_postgresql() {
        let Some(pg) = beffroi_testkit::postgres::Postgres::shared() else {
            return;
        };
        let at = Location::Postgres(pg.create_database("registry_watch"));
        let mut watch = KeyWatch::new(at.clone());
        let keys = watch
            .poll()
            .expect("poll")
            .expect("the (empty) registry is read");
        assert!(keys.is_empty());
        assert!(watch.poll().expect("poll").is_none(), "nothing changed");
        reloads_on_change(&at, &mut watch);
    }

    /// Issues `g1` through another handle on `at`: `watch` reads its key once, then its
    /// revocation once.
    fn reloads_on_change(at: &Location, watch: &mut KeyWatch) {
        let mut reg = open(at).expect("open");
        let g1 = DeviceId::parse("g1").expect("id");
        let issued = beffroi_registry::issue(reg.as_mut(), &g1, 1).expect("issue");
        let keys = watch.poll().expect("poll").expect("keys read");
        assert_eq!(keys.get("g1"), Some(&issued.key));
        assert!(watch.poll().expect("poll").is_none(), "nothing changed");
        // A revocation is seen by the watch's own handle.
        reg.revoke(&g1, 2).expect("revoke");
        let keys = watch.poll().expect("poll").expect("keys reloaded");
        assert!(keys.is_empty());
        assert!(watch.poll().expect("poll").is_none());
    }
}
