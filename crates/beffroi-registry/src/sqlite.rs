//! The SQLite adapter: `<data_dir>/devices.sqlite`, created 0600, apart from the main
//! store (ADR 0012). Rollback journal with `synchronous=FULL`: a change is rare and must
//! survive a power loss.
//!
//! Schema versions (`PRAGMA user_version`):
//! - 0: the table `credentials`, one row per generation (the first release; no version).
//! - 1: plus `registry_revision`, a single row bumped in the transaction of every change:
//!   the change marker of [`CredentialReads::revision`]. Not `PRAGMA data_version`, which
//!   is per connection, counts only other connections' commits and starts anywhere on each
//!   open, nor the file's modification time, which is coarse and moves with any write to
//!   the file: the row is read in the same snapshot as the credentials it describes,
//!   survives reopening, and any handle reads the same number. The migration seeds it with
//!   `2 × rows − issued rows`, a number every change of version 0 made grow (an issue or a
//!   rotation adds a row, a revocation takes one out of `issued`); a reader of a version-0
//!   file that this version has not written yet computes the same number, so the sequence
//!   continues across the upgrade.
//!
//! [`SqliteRegistry`] (read-write, migrates on open) is what `beffroi devices` uses;
//! [`SqliteRegistryReader`] (read-only, never creates nor migrates the file) is the server's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, TransactionBehavior, params};

use crate::{
    ActiveCredential, CredentialReads, CredentialStore, DeviceId, Entry, NewCredential,
    RegistryError, Status,
};

pub const FILE_NAME: &str = "devices.sqlite";
/// The schema version this code writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// How long a statement waits for another process's transaction (`beffroi devices`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 0, as the first release created it (kept verbatim: `IF NOT EXISTS` leaves an
/// existing table as it is).
const SCHEMA_V0: &str = "CREATE TABLE IF NOT EXISTS credentials (
    device TEXT NOT NULL,
    generation INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('issued','rotated','revoked')),
    password_hash TEXT NOT NULL,
    broker_hash TEXT NOT NULL,
    signing_key BLOB NOT NULL CHECK (length(signing_key) = 32),
    issued_at INTEGER NOT NULL,
    revoked_at INTEGER,
    PRIMARY KEY (device, generation)
 );";

/// The revision of a version-0 registry, derived from its rows (see the module's doc).
const DERIVED_REVISION: &str =
    "SELECT 2 * COUNT(*) - COALESCE(SUM(status = 'issued'), 0) FROM credentials";

const MIGRATION_V1: &str = "CREATE TABLE registry_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL CHECK (value >= 0)
 );
 INSERT INTO registry_revision (id, value)
    SELECT 1, 2 * COUNT(*) - COALESCE(SUM(status = 'issued'), 0) FROM credentials;
 PRAGMA user_version = 1;";

/// The registry file of a data folder.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

fn backend(context: &'static str) -> impl FnOnce(rusqlite::Error) -> RegistryError {
    move |e| RegistryError::backend(context, e)
}

/// The registry, read-write.
pub struct SqliteRegistry {
    conn: Connection,
    path: PathBuf,
}

impl SqliteRegistry {
    /// Opens the registry of a data folder, creating it (0600, before SQLite writes in it)
    /// if needed, and migrates it to [`SCHEMA_VERSION`].
    pub fn open(data_dir: &Path) -> Result<SqliteRegistry, RegistryError> {
        let io =
            |context: String| move |source: std::io::Error| RegistryError::Io { context, source };
        std::fs::create_dir_all(data_dir)
            .map_err(io(format!("creating {}", data_dir.display())))?;
        let path = path(data_dir);
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(format!("creating {}", path.display())))?;
        }
        let opening = format!("opening {}", path.display());
        let mut conn =
            Connection::open(&path).map_err(|e| RegistryError::backend(opening.clone(), e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| {
                conn.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;")
            })
            .map_err(|e| RegistryError::backend(opening.clone(), e))?;
        migrate(&mut conn)?;
        Ok(SqliteRegistry { conn, path })
    }

    /// The file it is kept in.
    pub fn file(&self) -> &Path {
        &self.path
    }

    fn write(&mut self) -> Result<rusqlite::Transaction<'_>, RegistryError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("writing the device registry"))
    }
}

fn migrate(conn: &mut Connection) -> Result<(), RegistryError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend("migrating the device registry"))?;
    let version = schema_version(&tx)?;
    if version < 1 {
        tx.execute_batch(SCHEMA_V0)
            .and_then(|()| tx.execute_batch(MIGRATION_V1))
            .map_err(backend("migrating the device registry to version 1"))?;
    }
    tx.commit()
        .map_err(backend("migrating the device registry"))
}

/// The file's schema version; refuses a newer one.
fn schema_version(conn: &Connection) -> Result<i64, RegistryError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend("reading the device registry's version"))?;
    if found > SCHEMA_VERSION {
        return Err(RegistryError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// The registry, read-only: never creates, migrates nor writes the file.
pub struct SqliteRegistryReader {
    conn: Connection,
}

impl SqliteRegistryReader {
    /// Opens the registry of a data folder if there is one.
    pub fn open(data_dir: &Path) -> Result<Option<SqliteRegistryReader>, RegistryError> {
        let path = path(data_dir);
        if !path.exists() {
            return Ok(None);
        }
        let opening = format!("opening {}", path.display());
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| RegistryError::backend(opening.clone(), e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| RegistryError::backend(opening, e))?;
        schema_version(&conn)?;
        Ok(Some(SqliteRegistryReader { conn }))
    }
}

impl CredentialReads for SqliteRegistryReader {
    fn list(&self) -> Result<Vec<Entry>, RegistryError> {
        list(&self.conn)
    }

    fn active(&self) -> Result<Vec<ActiveCredential>, RegistryError> {
        active(&self.conn)
    }

    fn signing_keys(&self) -> Result<BTreeMap<String, [u8; 32]>, RegistryError> {
        signing_keys(&self.conn)
    }

    fn revision(&self) -> Result<u64, RegistryError> {
        revision(&self.conn)
    }
}

impl CredentialReads for SqliteRegistry {
    fn list(&self) -> Result<Vec<Entry>, RegistryError> {
        list(&self.conn)
    }

    fn active(&self) -> Result<Vec<ActiveCredential>, RegistryError> {
        active(&self.conn)
    }

    fn signing_keys(&self) -> Result<BTreeMap<String, [u8; 32]>, RegistryError> {
        signing_keys(&self.conn)
    }

    fn revision(&self) -> Result<u64, RegistryError> {
        revision(&self.conn)
    }
}

impl CredentialStore for SqliteRegistry {
    fn issue(
        &mut self,
        device: &DeviceId,
        credential: &NewCredential,
    ) -> Result<i64, RegistryError> {
        let tx = self.write()?;
        let generation = crate::port::generation_to_issue(device, current(&tx, device)?)?;
        insert(&tx, device, generation, credential)?;
        bump(&tx)?;
        tx.commit()
            .map_err(backend("writing the device registry"))?;
        Ok(generation)
    }

    fn rotate(
        &mut self,
        device: &DeviceId,
        credential: &NewCredential,
    ) -> Result<i64, RegistryError> {
        let tx = self.write()?;
        let g = crate::port::generation_to_rotate(device, current(&tx, device)?)?;
        tx.execute(
            "UPDATE credentials SET status = 'rotated', revoked_at = ?3
             WHERE device = ?1 AND generation = ?2",
            params![device.as_str(), g, credential.issued_at],
        )
        .map_err(backend("writing the device registry"))?;
        insert(&tx, device, g + 1, credential)?;
        bump(&tx)?;
        tx.commit()
            .map_err(backend("writing the device registry"))?;
        Ok(g + 1)
    }

    fn revoke(&mut self, device: &DeviceId, at: i64) -> Result<(), RegistryError> {
        let tx = self.write()?;
        let n = tx
            .execute(
                "UPDATE credentials SET status = 'revoked', revoked_at = ?2
                 WHERE device = ?1 AND status = 'issued'",
                params![device.as_str(), at],
            )
            .map_err(backend("writing the device registry"))?;
        if n == 0 {
            return Err(RegistryError::NothingToRevoke(device.to_string()));
        }
        bump(&tx)?;
        tx.commit().map_err(backend("writing the device registry"))
    }
}

fn status(device: &str, s: &str) -> Result<Status, RegistryError> {
    Status::parse(s).ok_or_else(|| RegistryError::Corrupt {
        device: device.to_owned(),
        what: "status",
    })
}

/// The latest generation of a device and its status.
fn current(conn: &Connection, device: &DeviceId) -> Result<Option<(i64, Status)>, RegistryError> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT generation, status FROM credentials WHERE device = ?1
             ORDER BY generation DESC LIMIT 1",
            [device.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend("reading the device registry"))?;
    row.map(|(g, s)| Ok((g, status(device.as_str(), &s)?)))
        .transpose()
}

fn insert(
    conn: &Connection,
    device: &DeviceId,
    generation: i64,
    c: &NewCredential,
) -> Result<(), RegistryError> {
    conn.execute(
        "INSERT INTO credentials (device, generation, status, password_hash, broker_hash,
                                  signing_key, issued_at)
         VALUES (?1, ?2, 'issued', ?3, ?4, ?5, ?6)",
        params![
            device.as_str(),
            generation,
            c.password_hash,
            c.broker_hash,
            &c.signing_key[..],
            c.issued_at
        ],
    )
    .map_err(backend("writing the device registry"))?;
    Ok(())
}

fn bump(conn: &Connection) -> Result<(), RegistryError> {
    conn.execute(
        "UPDATE registry_revision SET value = value + 1 WHERE id = 1",
        [],
    )
    .map_err(backend("writing the device registry's revision"))?;
    Ok(())
}

fn list(conn: &Connection) -> Result<Vec<Entry>, RegistryError> {
    let read = backend("reading the device registry");
    let rows: Vec<(String, i64, String, i64, Option<i64>)> = conn
        .prepare(
            "SELECT c.device, c.generation, c.status, c.issued_at, c.revoked_at
             FROM credentials c
             WHERE c.generation = (SELECT MAX(generation) FROM credentials d
                                   WHERE d.device = c.device)
             ORDER BY c.device",
        )
        .and_then(|mut st| {
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(read)?;
    rows.into_iter()
        .map(|(device, generation, s, issued_at, revoked_at)| {
            Ok(Entry {
                status: status(&device, &s)?,
                device,
                generation,
                issued_at,
                revoked_at,
            })
        })
        .collect()
}

fn active(conn: &Connection) -> Result<Vec<ActiveCredential>, RegistryError> {
    let read = backend("reading the device registry");
    let rows: Vec<(String, i64, String, String, Vec<u8>)> = conn
        .prepare(
            "SELECT device, generation, password_hash, broker_hash, signing_key
             FROM credentials WHERE status = 'issued' ORDER BY device",
        )
        .and_then(|mut st| {
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(read)?;
    rows.into_iter()
        .map(|(device, generation, password_hash, broker_hash, key)| {
            let Ok(signing_key) = <[u8; 32]>::try_from(key) else {
                return Err(RegistryError::Corrupt {
                    device,
                    what: "signing key (not 32 bytes)",
                });
            };
            Ok(ActiveCredential {
                device,
                generation,
                password_hash,
                broker_hash,
                signing_key,
            })
        })
        .collect()
}

fn signing_keys(conn: &Connection) -> Result<BTreeMap<String, [u8; 32]>, RegistryError> {
    Ok(active(conn)?
        .into_iter()
        .map(|c| (c.device, c.signing_key))
        .collect())
}

fn revision(conn: &Connection) -> Result<u64, RegistryError> {
    // One snapshot: the version and the number read together, even across a migration.
    let snapshot = conn
        .unchecked_transaction()
        .map_err(backend("reading the device registry's revision"))?;
    let value: i64 = if schema_version(&snapshot)? < 1 {
        snapshot.query_row(DERIVED_REVISION, [], |r| r.get(0))
    } else {
        snapshot.query_row(
            "SELECT value FROM registry_revision WHERE id = 1",
            [],
            |r| r.get(0),
        )
    }
    .map_err(backend("reading the device registry's revision"))?;
    snapshot
        .finish()
        .map_err(backend("reading the device registry's revision"))?;
    Ok(value.max(0).unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;
    use crate::secrets::argon2_verify;

    fn pair() -> (tempfile::TempDir, SqliteRegistry, SqliteRegistryReader) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteRegistry::open(dir.path()).expect("open");
        let reader = SqliteRegistryReader::open(dir.path())
            .expect("open read-only")
            .expect("the file exists");
        (dir, store, reader)
    }

    #[test]
    fn contract_lifecycle() {
        let (_dir, mut store, _) = pair();
        contract::issue_rotate_revoke(&mut store);
    }

    #[test]
    fn contract_superseded_credentials_are_refused() {
        let (_dir, mut store, _) = pair();
        contract::superseded_credentials_are_refused(&mut store);
    }

    #[test]
    fn contract_revision() {
        let (_dir, mut store, reader) = pair();
        contract::revision_grows_with_each_change_only(&mut store, &reader);
    }

    #[test]
    fn contract_keys_of_active_devices_only() {
        let (_dir, mut store, reader) = pair();
        contract::keys_of_active_devices_only(&mut store, &reader);
    }

    #[test]
    fn the_file_is_private_and_keeps_no_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reg = SqliteRegistry::open(dir.path()).expect("open");
        let device = DeviceId::parse("gauge-1").expect("id");
        let a = crate::issue(&mut reg, &device, 1).expect("issue");
        let b = crate::rotate(&mut reg, &device, 2).expect("rotate");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(reg.file())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
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
        let bytes = std::fs::read(reg.file()).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&a.password) && !text.contains(&b.password));
    }

    #[test]
    fn the_reader_neither_creates_nor_writes_a_registry() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            SqliteRegistryReader::open(dir.path())
                .expect("open")
                .is_none()
        );
        assert!(!path(dir.path()).exists());
    }

    /// A registry as the first release wrote it: the version-0 table, no version, no
    /// revision row (rows as `issue`, `rotate` and `revoke` left them).
    fn old_registry(dir: &Path) {
        let conn = Connection::open(path(dir)).expect("create");
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; {SCHEMA_V0}"
        ))
        .expect("old schema");
        let key = |b: u8| vec![b; 32];
        for (device, generation, status, revoked_at, k) in [
            ("gauge-1", 1, "rotated", Some(20), 1),
            ("gauge-1", 2, "issued", None, 2),
            ("cam-2", 1, "revoked", Some(30), 3),
        ] {
            conn.execute(
                "INSERT INTO credentials (device, generation, status, password_hash,
                                          broker_hash, signing_key, issued_at, revoked_at)
                 VALUES (?1, ?2, ?3, '$argon2id$x', '$7$101$s$h', ?4, 10, ?5)",
                params![device, generation, status, key(k), revoked_at],
            )
            .expect("old row");
        }
    }

    #[test]
    fn a_registry_of_the_first_release_is_read_then_upgraded() {
        let dir = tempfile::tempdir().expect("tempdir");
        old_registry(dir.path());
        // The server reads it as it is, without writing.
        let reader = SqliteRegistryReader::open(dir.path())
            .expect("open")
            .expect("exists");
        let before = reader.revision().expect("revision");
        // 3 rows, 1 issued.
        assert_eq!(before, 5);
        let keys = reader.signing_keys().expect("keys");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.get("gauge-1"), Some(&[2u8; 32]));
        // `beffroi devices` upgrades it; the revision carries on, nothing else moves.
        let store = SqliteRegistry::open(dir.path()).expect("upgrade");
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.revision().expect("revision"), before);
        assert_eq!(reader.revision().expect("revision"), before);
        let list = store.list().expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].device.as_str(), list[0].status, list[0].revoked_at),
            ("cam-2", Status::Revoked, Some(30))
        );
        assert_eq!(
            (list[1].device.as_str(), list[1].generation, list[1].status),
            ("gauge-1", 2, Status::Issued)
        );
        // Reopening does not migrate again; the next change is seen by the old reader.
        drop(store);
        let mut store = SqliteRegistry::open(dir.path()).expect("reopen");
        assert_eq!(store.revision().expect("revision"), before);
        let cam = DeviceId::parse("cam-2").expect("id");
        let issued = crate::issue(&mut store, &cam, 40).expect("issue after revocation");
        assert_eq!(issued.generation, 2);
        assert!(reader.revision().expect("revision") > before);
        assert_eq!(reader.signing_keys().expect("keys").len(), 2);
    }

    #[test]
    fn a_registry_of_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(SqliteRegistry::open(dir.path()).expect("open"));
        Connection::open(path(dir.path()))
            .and_then(|c| c.execute_batch("PRAGMA user_version = 2;"))
            .expect("newer");
        assert!(matches!(
            SqliteRegistry::open(dir.path()),
            Err(RegistryError::NewerSchema { found: 2, .. })
        ));
        assert!(matches!(
            SqliteRegistryReader::open(dir.path()),
            Err(RegistryError::NewerSchema { found: 2, .. })
        ));
    }
}
