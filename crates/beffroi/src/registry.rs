//! The registry of device credentials (`<data_dir>/devices.sqlite`) and the Mosquitto
//! password and ACL files generated from it. See ADR 0012.
//!
//! One row per credential generation of a device: a password (kept only as an Argon2id
//! hash, plus the broker's own PBKDF2-SHA512 hash) and a 32-byte signing key (kept in
//! clear: the server needs it to verify HMACs; the file is 0600 and separate from the main
//! store). Statuses: `issued` (the device's current credential), `rotated` (replaced by a
//! newer generation: refused at once, no grace period), `revoked`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use argon2::password_hash::{PasswordHasher, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use rusqlite::{Connection, OptionalExtension, params};

pub const FILE_NAME: &str = "devices.sqlite";
/// Mosquitto 2.0's PBKDF2 iteration count for `$7$` hashes (`mosquitto_passwd`).
pub const BROKER_ITERATIONS: u32 = 101;

/// The secret handed out once by `issue` / `rotate`.
#[derive(Clone, Debug)]
pub struct Issued {
    pub device: String,
    pub generation: i64,
    pub password: String,
    pub key: [u8; 32],
}

/// One device's current state, as `list` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub device: String,
    pub generation: i64,
    pub status: String,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
}

pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Registry {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Opens (creating if needed, 0600) the registry of a data folder.
    pub fn open(data_dir: &Path) -> Result<Registry> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = Registry::path(data_dir);
        if !path.exists() {
            // Create it private before SQLite writes anything in it.
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            set_mode(&f, 0o600)?;
        }
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode=DELETE;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS credentials (
                device TEXT NOT NULL,
                generation INTEGER NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('issued','rotated','revoked')),
                password_hash TEXT NOT NULL,
                broker_hash TEXT NOT NULL,
                signing_key BLOB NOT NULL CHECK (length(signing_key) = 32),
                issued_at INTEGER NOT NULL,
                revoked_at INTEGER,
                PRIMARY KEY (device, generation)
             );",
        )?;
        Ok(Registry { conn, path })
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn file(&self) -> &Path {
        &self.path
    }

    fn current(&self, device: &str) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT generation, status FROM credentials WHERE device = ?1
                 ORDER BY generation DESC LIMIT 1",
                [device],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn insert(&mut self, device: &str, generation: i64) -> Result<Issued> {
        let mut rng = rand::rng();
        let mut pw = [0u8; 24];
        rng.fill_bytes(&mut pw);
        let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pw);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let password_hash = argon2_hash(&password)?;
        let broker_hash = mosquitto_hash(&password);
        self.conn.execute(
            "INSERT INTO credentials (device, generation, status, password_hash, broker_hash,
                                      signing_key, issued_at)
             VALUES (?1, ?2, 'issued', ?3, ?4, ?5, ?6)",
            params![
                device,
                generation,
                password_hash,
                broker_hash,
                &key[..],
                now_secs()
            ],
        )?;
        Ok(Issued {
            device: device.into(),
            generation,
            password,
            key,
        })
    }

    /// Issues a first credential for a device that has none (or whose last was revoked).
    pub fn issue(&mut self, device: &str) -> Result<Issued> {
        check_device_id(device)?;
        match self.current(device)? {
            Some((_, s)) if s == "issued" => {
                bail!("{device} already has a credential: rotate or revoke it")
            }
            Some((g, _)) => self.insert(device, g + 1),
            None => self.insert(device, 1),
        }
    }

    /// Replaces a device's credential; the old one is refused at once.
    pub fn rotate(&mut self, device: &str) -> Result<Issued> {
        match self.current(device)? {
            Some((g, s)) if s == "issued" => {
                let tx = self.conn.transaction()?;
                tx.execute(
                    "UPDATE credentials SET status = 'rotated', revoked_at = ?3
                     WHERE device = ?1 AND generation = ?2",
                    params![device, g, now_secs()],
                )?;
                tx.commit()?;
                self.insert(device, g + 1)
            }
            _ => bail!("{device} has no credential in force to rotate"),
        }
    }

    /// Revokes a device's credential.
    pub fn revoke(&mut self, device: &str) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE credentials SET status = 'revoked', revoked_at = ?2
             WHERE device = ?1 AND status = 'issued'",
            params![device, now_secs()],
        )?;
        if n == 0 {
            bail!("{device} has no credential in force to revoke");
        }
        Ok(())
    }

    /// The latest generation of every device.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut st = self.conn.prepare(
            "SELECT c.device, c.generation, c.status, c.issued_at, c.revoked_at
             FROM credentials c
             WHERE c.generation = (SELECT MAX(generation) FROM credentials d
                                   WHERE d.device = c.device)
             ORDER BY c.device",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Entry {
                device: r.get(0)?,
                generation: r.get(1)?,
                status: r.get(2)?,
                issued_at: r.get(3)?,
                revoked_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Devices with a credential in force: broker hash and signing key.
    pub fn active(&self) -> Result<Vec<(String, String, [u8; 32])>> {
        let mut st = self.conn.prepare(
            "SELECT device, broker_hash, signing_key FROM credentials
             WHERE status = 'issued' ORDER BY device",
        )?;
        let rows = st.query_map([], |r| {
            let key: Vec<u8> = r.get(2)?;
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, key))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (d, h, k) = row?;
            let key: [u8; 32] = k
                .try_into()
                .map_err(|_| anyhow::anyhow!("{d}: stored signing key is not 32 bytes"))?;
            out.push((d, h, key));
        }
        Ok(out)
    }

    /// The signing keys in force, by device id.
    pub fn keys(&self) -> Result<BTreeMap<String, [u8; 32]>> {
        Ok(self.active()?.into_iter().map(|(d, _, k)| (d, k)).collect())
    }
}

/// Reads the signing keys in force, if the registry exists (read-only).
pub fn load_keys(data_dir: &Path) -> Result<Option<BTreeMap<String, [u8; 32]>>> {
    let path = Registry::path(data_dir);
    if !path.exists() {
        return Ok(None);
    }
    // Read-only: the server never changes the registry (nor its modification time, which
    // the key watcher follows).
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    Registry { conn, path }.keys().map(Some)
}

/// The signing keys in force at start, for the engine (empty without a registry).
pub async fn load_device_keys(data_dir: &Path) -> Result<beffroi_engine::trust::DeviceKeys> {
    let dir = data_dir.to_path_buf();
    let keys = tokio::task::spawn_blocking(move || load_keys(&dir)).await??;
    let keys = keys.unwrap_or_default();
    tracing::info!(devices = keys.len(), "device signing keys loaded");
    Ok(beffroi_engine::trust::DeviceKeys::new(keys))
}

/// Reloads the signing keys when the registry file changes (a revocation takes effect
/// without a restart). Polls the file's modification time every second: SQLite rewrites
/// the file in place, and a poll also sees a registry created after start.
pub async fn watch(
    engine: beffroi_engine::runner::EngineHandle,
    data_dir: PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let path = Registry::path(&data_dir);
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| (t, std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)))
    };
    let mut last = stamp(&path);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match load_device_keys(&data_dir).await {
            Ok(keys) => {
                if engine
                    .replace_device_keys(std::sync::Arc::new(keys))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                // Perhaps read while `beffroi devices` was writing: retry at the next tick.
                last = None;
                tracing::error!(error = %e, "cannot reload the device registry; keys in force kept")
            }
        }
    }
}

fn check_device_id(id: &str) -> Result<()> {
    // The id becomes a broker user name and a topic level: no separators, wildcards,
    // whitespace or the password file's ':'.
    if id.is_empty()
        || id.len() > 128
        || id.chars().any(|c| {
            matches!(c, '/' | '+' | '#' | ':' | '$') || c.is_whitespace() || c.is_control()
        })
    {
        bail!("{id:?} is not a usable device id (no / + # : $, whitespace or control)");
    }
    Ok(())
}

fn argon2_hash(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let h = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(h.to_string())
}

/// Whether `password` matches an Argon2id hash from the registry.
#[allow(dead_code)]
pub fn argon2_verify(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Mosquitto 2.0's `$7$` hash: `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`
/// (12-byte salt, 64-byte hash, standard base64 with padding), as `mosquitto_passwd` writes.
pub fn mosquitto_hash(password: &str) -> String {
    let mut salt = [0u8; 12];
    rand::rng().fill_bytes(&mut salt);
    mosquitto_hash_with(password, &salt, BROKER_ITERATIONS)
}

pub fn mosquitto_hash_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, iterations, &mut out);
    format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    )
}

/// What the broker files are generated with.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// Topic prefix before the device id: `beffroi/+` (any territory) by default.
    pub prefix: String,
    /// Beffroi's own ingest user and its password (from `BEFFROI_MQTT_PASSWORD`).
    pub ingest_user: String,
    pub ingest_password: String,
}

/// The suffixes of a device's topics the ACL grants it: those the MQTT source routes
/// (`beffroi_mqtt::DEVICE_SUFFIXES`, checked by a test; the `mqtt` feature is optional).
pub const DEVICE_TOPIC_SUFFIXES: [&str; 2] = ["senml", "json"];

/// The password file and ACL file contents.
pub fn broker_files(reg: &Registry, s: &BrokerSettings) -> Result<(String, String)> {
    check_device_id(&s.ingest_user)?;
    let active = reg.active()?;
    let mut pw = String::new();
    let mut acl = String::from(
        "# Generated by `beffroi devices broker-files` from the device registry: do not edit.\n\
         # Each device may only publish on its own topics (`senml`, `json`) and read nothing.\n\n",
    );
    pw.push_str(&format!(
        "{}:{}\n",
        s.ingest_user,
        mosquitto_hash(&s.ingest_password)
    ));
    acl.push_str(&format!(
        "user {}\ntopic read {}/#\ntopic read application/+/device/+/event/up\n\
         topic read $SYS/broker/log/#\n\n",
        s.ingest_user, s.prefix
    ));
    for (device, hash, _) in &active {
        if *device == s.ingest_user {
            bail!("device {device} has the ingest user's name");
        }
        pw.push_str(&format!("{device}:{hash}\n"));
        // Only the suffixes the MQTT source routes: a device may not publish on a topic
        // that its own device level would not bind (the source refuses those too).
        acl.push_str(&format!("user {device}\n"));
        for suffix in DEVICE_TOPIC_SUFFIXES {
            acl.push_str(&format!("topic write {}/{device}/{suffix}\n", s.prefix));
        }
        acl.push('\n');
    }
    Ok((pw, acl))
}

/// Writes the broker files atomically (temp file + rename), both 0640: Mosquitto rereads
/// them on SIGHUP after dropping privileges, so they are readable by the folder's group
/// (make the folder setgid, group `mosquitto`); `passwd` holds only PBKDF2 hashes.
pub fn write_broker_files(dir: &Path, pw: &str, acl: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join("passwd"), pw.as_bytes(), 0o640)?;
    write_atomic(&dir.join("acl"), acl.as_bytes(), 0o640)?;
    Ok(())
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    set_mode(tmp.as_file(), mode)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn set_mode(f: &std::fs::File, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
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

    #[test]
    fn mosquitto_hash_matches_mosquitto_passwd() {
        // `mosquitto_passwd -b pw dev1 secret` (mosquitto 2.0.11) wrote:
        let line = "$7$101$uJiDVv3S2WlZvK8l$mUBfN4RxZfKCHQYKP9aAtrEdWQUmmx4g0eXytWTV98M7iHEL2etHc0dV69dYI95TDMtkDqRbjRLr3ayYcPVgJA==";
        let salt = STANDARD.decode("uJiDVv3S2WlZvK8l").expect("salt");
        assert_eq!(mosquitto_hash_with("secret", &salt, 101), line);
        assert_ne!(mosquitto_hash_with("secreT", &salt, 101), line);
    }

    #[test]
    fn issue_rotate_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reg = Registry::open(dir.path()).expect("open");
        let a = reg.issue("gauge-1").expect("issue");
        assert!(reg.issue("gauge-1").is_err(), "a second issue is refused");
        let b = reg.rotate("gauge-1").expect("rotate");
        assert_ne!(a.key, b.key);
        assert_ne!(a.password, b.password);
        assert_eq!(reg.keys().expect("keys").get("gauge-1"), Some(&b.key));
        reg.issue("cam-2").expect("issue");
        reg.revoke("cam-2").expect("revoke");
        assert!(reg.revoke("cam-2").is_err());
        let keys = reg.keys().expect("keys");
        assert!(!keys.contains_key("cam-2"));
        let list = reg.list().expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].device, "cam-2");
        assert_eq!(list[0].status, "revoked");
        assert_eq!(list[1].generation, 2);
        assert!(reg.issue("a/b").is_err());
        assert!(reg.issue("a:b").is_err());
        // The registry file is private.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(reg.file())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        // The password is stored hashed only.
        let stored: String = reg
            .conn
            .query_row(
                "SELECT password_hash FROM credentials WHERE device='gauge-1' AND generation=2",
                [],
                |r| r.get(0),
            )
            .expect("row");
        assert!(stored.starts_with("$argon2id$"));
        assert!(argon2_verify(&b.password, &stored));
        assert!(!argon2_verify(&a.password, &stored));
    }

    #[cfg(feature = "mqtt")]
    #[test]
    fn acl_suffixes_are_the_routed_ones() {
        let routed: Vec<&str> = beffroi_mqtt::DEVICE_SUFFIXES
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(routed, DEVICE_TOPIC_SUFFIXES);
    }

    #[test]
    fn broker_files_list_only_active_devices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reg = Registry::open(dir.path()).expect("open");
        reg.issue("g1").expect("issue");
        reg.issue("g2").expect("issue");
        reg.revoke("g2").expect("revoke");
        let s = BrokerSettings {
            prefix: "beffroi/+".into(),
            ingest_user: "beffroi".into(),
            ingest_password: "x".into(),
        };
        let (pw, acl) = broker_files(&reg, &s).expect("files");
        assert!(pw.lines().any(|l| l.starts_with("g1:$7$101$")));
        assert!(!pw.contains("g2:"));
        assert!(acl.contains(
            "user g1\ntopic write beffroi/+/g1/senml\ntopic write beffroi/+/g1/json\n\n"
        ));
        // No wildcard for a device: an unknown suffix or extra levels are denied.
        assert!(!acl.contains("g1/#"), "{acl}");
        assert!(!acl.contains("g1/+"), "{acl}");
        assert!(!acl.contains("g2"));
        assert!(acl.contains("user beffroi\ntopic read beffroi/+/#"));
        assert!(acl.contains("topic read $SYS/broker/log/#"));
        write_broker_files(dir.path(), &pw, &acl).expect("write");
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
}
