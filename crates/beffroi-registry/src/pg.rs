//! The PostgreSQL adapter (feature `postgres`): the registry in the database a cluster's
//! store uses, so that every node reads the same credentials and signing keys. A device
//! enrolled while one node runs the engine is still trusted after another one takes over.
//!
//! Tables `device_credentials` (one row per generation, as SQLite's `credentials`) and
//! `device_registry` (one row: the schema version and the revision of
//! [`CredentialReads::revision`]), created at the first open. A change is one transaction.
//! It begins by bumping the revision, which takes that row's lock, so that two
//! `beffroi devices` run at once are serialised rather than both issuing generation 1. A
//! refused change rolls back, bump included. Reads of the revision and of the keys are
//! single statements, each in its own snapshot; the key watch reads the revision first, so
//! a change committed in between shows as a newer revision at its next poll.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, NoTls, Transaction};

use crate::{
    ActiveCredential, CredentialReads, CredentialStore, DeviceId, Entry, NewCredential,
    RegistryError, Status,
};

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 1;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device_credentials (
    device TEXT NOT NULL,
    generation BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('issued','rotated','revoked')),
    password_hash TEXT NOT NULL,
    broker_hash TEXT NOT NULL,
    signing_key BYTEA NOT NULL CHECK (octet_length(signing_key) = 32),
    issued_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (device, generation)
);
CREATE UNIQUE INDEX IF NOT EXISTS device_credentials_one_issued
    ON device_credentials (device) WHERE status = 'issued';
CREATE TABLE IF NOT EXISTS device_registry (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    revision BIGINT NOT NULL CHECK (revision >= 0)
);
INSERT INTO device_registry (id, version, revision) VALUES (1, 1, 0)
    ON CONFLICT (id) DO NOTHING;
";

fn backend(context: &'static str) -> impl FnOnce(postgres::Error) -> RegistryError {
    move |e| RegistryError::backend(context, e)
}

/// The registry in PostgreSQL, read-write; the server's reads go through the same type.
pub struct PgRegistry {
    client: Mutex<Client>,
}

impl PgRegistry {
    /// Connects to `url` and creates the registry's tables if they are missing. Refuses a
    /// registry written by a newer version.
    pub fn open(url: &str) -> Result<PgRegistry, RegistryError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(backend("the PostgreSQL connection string"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("beffroi-registry");
        }
        let mut client = config
            .connect(NoTls)
            .map_err(backend("connecting to the device registry"))?;
        {
            let mut tx = client
                .transaction()
                .map_err(backend("creating the device registry"))?;
            // One creator at a time: `IF NOT EXISTS` is not safe against a concurrent
            // `CREATE` of the same table.
            tx.execute("SELECT pg_advisory_xact_lock(7265676973747279)", &[])
                .and_then(|_| tx.batch_execute(SCHEMA))
                .map_err(backend("creating the device registry"))?;
            let version: i64 = tx
                .query_one("SELECT version FROM device_registry WHERE id = 1", &[])
                .map_err(backend("reading the device registry's version"))?
                .get(0);
            if version > SCHEMA_VERSION {
                return Err(RegistryError::NewerSchema {
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            tx.commit()
                .map_err(backend("creating the device registry"))?;
        }
        Ok(PgRegistry {
            client: Mutex::new(client),
        })
    }

    fn client(&self) -> std::sync::MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `change` in a transaction that first bumps the revision (serialising writers);
    /// commits only if it succeeds.
    fn change<T>(
        &mut self,
        change: impl FnOnce(&mut Transaction<'_>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut tx = client
            .transaction()
            .map_err(backend("writing the device registry"))?;
        tx.execute(
            "UPDATE device_registry SET revision = revision + 1 WHERE id = 1",
            &[],
        )
        .map_err(backend("writing the device registry's revision"))?;
        let out = change(&mut tx)?;
        tx.commit()
            .map_err(backend("writing the device registry"))?;
        Ok(out)
    }
}

fn status(device: &str, s: &str) -> Result<Status, RegistryError> {
    Status::parse(s).ok_or_else(|| RegistryError::Corrupt {
        device: device.to_owned(),
        what: "status",
    })
}

/// The latest generation of a device and its status.
fn current(
    tx: &mut Transaction<'_>,
    device: &DeviceId,
) -> Result<Option<(i64, Status)>, RegistryError> {
    let row = tx
        .query_opt(
            "SELECT generation, status FROM device_credentials WHERE device = $1
             ORDER BY generation DESC LIMIT 1",
            &[&device.as_str()],
        )
        .map_err(backend("reading the device registry"))?;
    row.map(|r| {
        let s: String = r.get(1);
        Ok((r.get(0), status(device.as_str(), &s)?))
    })
    .transpose()
}

fn insert(
    tx: &mut Transaction<'_>,
    device: &DeviceId,
    generation: i64,
    c: &NewCredential,
) -> Result<(), RegistryError> {
    tx.execute(
        "INSERT INTO device_credentials (device, generation, status, password_hash,
                                         broker_hash, signing_key, issued_at)
         VALUES ($1, $2, 'issued', $3, $4, $5, $6)",
        &[
            &device.as_str(),
            &generation,
            &c.password_hash,
            &c.broker_hash,
            &&c.signing_key[..],
            &c.issued_at,
        ],
    )
    .map_err(backend("writing the device registry"))?;
    Ok(())
}

impl CredentialReads for PgRegistry {
    fn list(&self) -> Result<Vec<Entry>, RegistryError> {
        let rows = self
            .client()
            .query(
                "SELECT DISTINCT ON (device) device, generation, status, issued_at, revoked_at
                 FROM device_credentials ORDER BY device, generation DESC",
                &[],
            )
            .map_err(backend("reading the device registry"))?;
        rows.iter()
            .map(|r| {
                let device: String = r.get(0);
                let s: String = r.get(2);
                Ok(Entry {
                    status: status(&device, &s)?,
                    generation: r.get(1),
                    issued_at: r.get(3),
                    revoked_at: r.get(4),
                    device,
                })
            })
            .collect()
    }

    fn active(&self) -> Result<Vec<ActiveCredential>, RegistryError> {
        let rows = self
            .client()
            .query(
                "SELECT device, generation, password_hash, broker_hash, signing_key
                 FROM device_credentials WHERE status = 'issued' ORDER BY device",
                &[],
            )
            .map_err(backend("reading the device registry"))?;
        rows.iter()
            .map(|r| {
                let device: String = r.get(0);
                let key: Vec<u8> = r.get(4);
                let Ok(signing_key) = <[u8; 32]>::try_from(key) else {
                    return Err(RegistryError::Corrupt {
                        device,
                        what: "signing key (not 32 bytes)",
                    });
                };
                Ok(ActiveCredential {
                    generation: r.get(1),
                    password_hash: r.get(2),
                    broker_hash: r.get(3),
                    signing_key,
                    device,
                })
            })
            .collect()
    }

    fn signing_keys(&self) -> Result<BTreeMap<String, [u8; 32]>, RegistryError> {
        Ok(self
            .active()?
            .into_iter()
            .map(|c| (c.device, c.signing_key))
            .collect())
    }

    fn revision(&self) -> Result<u64, RegistryError> {
        let value: i64 = self
            .client()
            .query_one("SELECT revision FROM device_registry WHERE id = 1", &[])
            .map_err(backend("reading the device registry's revision"))?
            .get(0);
        Ok(value.max(0).unsigned_abs())
    }
}

impl CredentialStore for PgRegistry {
    fn issue(
        &mut self,
        device: &DeviceId,
        credential: &NewCredential,
    ) -> Result<i64, RegistryError> {
        self.change(|tx| {
            let generation = crate::port::generation_to_issue(device, current(tx, device)?)?;
            insert(tx, device, generation, credential)?;
            Ok(generation)
        })
    }

    fn rotate(
        &mut self,
        device: &DeviceId,
        credential: &NewCredential,
    ) -> Result<i64, RegistryError> {
        self.change(|tx| {
            let g = crate::port::generation_to_rotate(device, current(tx, device)?)?;
            tx.execute(
                "UPDATE device_credentials SET status = 'rotated', revoked_at = $3
                 WHERE device = $1 AND generation = $2",
                &[&device.as_str(), &g, &credential.issued_at],
            )
            .map_err(backend("writing the device registry"))?;
            insert(tx, device, g + 1, credential)?;
            Ok(g + 1)
        })
    }

    fn revoke(&mut self, device: &DeviceId, at: i64) -> Result<(), RegistryError> {
        self.change(|tx| {
            let n = tx
                .execute(
                    "UPDATE device_credentials SET status = 'revoked', revoked_at = $2
                     WHERE device = $1 AND status = 'issued'",
                    &[&device.as_str(), &at],
                )
                .map_err(backend("writing the device registry"))?;
            if n == 0 {
                return Err(RegistryError::NothingToRevoke(device.to_string()));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;
    use beffroi_testkit::postgres::Postgres;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A registry in a database of its own, and a second handle on it (the server's).
    fn pair() -> Option<(PgRegistry, PgRegistry)> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let pg = Postgres::shared()?;
        let url = pg.create_database(&format!(
            "registry_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let store = PgRegistry::open(&url).expect("open");
        let reader = PgRegistry::open(&url).expect("open again");
        Some((store, reader))
    }

    #[test]
    fn contract_lifecycle() {
        let Some((mut store, _)) = pair() else { return };
        contract::issue_rotate_revoke(&mut store);
    }

    #[test]
    fn contract_superseded_credentials_are_refused() {
        let Some((mut store, _)) = pair() else { return };
        contract::superseded_credentials_are_refused(&mut store);
    }

    #[test]
    fn contract_revision() {
        let Some((mut store, reader)) = pair() else {
            return;
        };
        contract::revision_grows_with_each_change_only(&mut store, &reader);
    }

    #[test]
    fn contract_keys_of_active_devices_only() {
        let Some((mut store, reader)) = pair() else {
            return;
        };
        contract::keys_of_active_devices_only(&mut store, &reader);
    }

    /// Two writers issuing the same device at once: one gets generation 1, the other is
    /// told it is already issued; never two credentials in force.
    #[test]
    fn concurrent_issues_of_one_device_give_one_credential() {
        let Some((first, second)) = pair() else {
            return;
        };
        let outcomes: Vec<Result<crate::Issued, RegistryError>> = std::thread::scope(|s| {
            let device = DeviceId::parse("gauge-9").expect("id");
            let handles: Vec<_> = [first, second]
                .into_iter()
                .map(|mut reg| {
                    let device = device.clone();
                    s.spawn(move || {
                        let out = crate::issue(&mut reg, &device, 100);
                        (out, reg)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").0)
                .collect()
        });
        let issued = outcomes.iter().filter(|o| o.is_ok()).count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Err(RegistryError::AlreadyIssued(_))))
            .count();
        assert_eq!((issued, refused), (1, 1), "{outcomes:?}");
    }

    /// A registry whose version is newer than this code's is refused, not read.
    #[test]
    fn a_registry_of_a_newer_version_is_refused() {
        let Some((store, _)) = pair() else { return };
        let url = {
            let mut c = store.client();
            c.execute("UPDATE device_registry SET version = 2 WHERE id = 1", &[])
                .expect("set version");
            let db: String = c
                .query_one("SELECT current_database()", &[])
                .expect("db")
                .get(0);
            Postgres::shared().expect("shared").url_of(&db)
        };
        assert!(matches!(
            PgRegistry::open(&url),
            Err(RegistryError::NewerSchema { found: 2, known: 1 })
        ));
    }
}
