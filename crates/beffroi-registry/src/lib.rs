//! The registry of device credentials (ADR 0012 and ADR 0040, in `docs/adr/`).
//!
//! One record per credential *generation* of a device: a password (kept only as an Argon2id
//! hash, plus the broker's own PBKDF2-SHA512 hash) and a 32-byte signing key (kept in clear:
//! the server needs it to verify HMACs). Statuses: `issued` (the device's current
//! credential), `rotated` (replaced by a newer generation: refused at once, no grace
//! period), `revoked`.
//!
//! - [`port`]: what a backend implements — [`CredentialReads`] (list, active credentials,
//!   signing keys, the change marker [`CredentialReads::revision`]) and [`CredentialStore`]
//!   (issue, rotate, revoke), with no default bodies. Backends store hashes and keys they
//!   are handed; they never see a password.
//! - [`sqlite`]: the SQLite adapter, `<data_dir>/devices.sqlite`.
//! - `pg` (feature `postgres`): the PostgreSQL adapter, in a cluster's database.
//! - [`secrets`]: secret generation and hashing (Argon2id, Mosquitto's `$7$`), no storage.
//! - [`broker`]: the Mosquitto password and ACL files, rendered from the active credentials.
//! - [`issue`] and [`rotate`]: a fresh secret, hashed, recorded through the port.

pub mod broker;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod error;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod port;
pub mod secrets;
pub mod sqlite;

pub use error::RegistryError;
pub use port::{
    ActiveCredential, CredentialReads, CredentialStore, DeviceId, Entry, NewCredential, Status,
};

/// The secret handed out once by [`issue`] / [`rotate`]; no backend keeps it.
#[derive(Clone)]
pub struct Issued {
    pub device: DeviceId,
    pub generation: i64,
    pub password: String,
    pub key: [u8; 32],
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("device", &self.device)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Issues a first credential to a device that has none in force (never had one, or its
/// last was revoked). `now`: Unix seconds.
pub fn issue(
    store: &mut dyn CredentialStore,
    device: &DeviceId,
    now: i64,
) -> Result<Issued, RegistryError> {
    let secret = secrets::Secret::generate();
    let generation = store.issue(device, &secret.credential(now)?)?;
    Ok(secret.issued(device.clone(), generation))
}

/// Replaces a device's credential in force; the old one is refused at once.
pub fn rotate(
    store: &mut dyn CredentialStore,
    device: &DeviceId,
    now: i64,
) -> Result<Issued, RegistryError> {
    let secret = secrets::Secret::generate();
    let generation = store.rotate(device, &secret.credential(now)?)?;
    Ok(secret.issued(device.clone(), generation))
}
