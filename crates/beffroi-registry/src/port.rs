//! The registry's port: what a backend implements, and the data it exchanges.
//!
//! Two roles, no default bodies (a backend that forgets one does not compile):
//! [`CredentialReads`] for the server, which only reads (signing keys, the change marker),
//! and [`CredentialStore`] for `beffroi devices`, which changes the registry. A backend stores
//! what it is handed ([`NewCredential`]: hashes, a key, a time); secrets are generated and
//! hashed by [`crate::secrets`], never by a backend. The contract every backend must meet is
//! written once in `beffroi_registry::contract` (feature `contract`).

use std::collections::BTreeMap;
use std::fmt;

use crate::RegistryError;

/// A device id usable as a broker user name and as a topic level: not empty, at most 128
/// bytes, no `/ + # : $`, whitespace or control character.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(id: &str) -> Result<DeviceId, RegistryError> {
        // The id becomes a broker user name and a topic level: no separators, wildcards,
        // whitespace or the password file's ':'.
        if id.is_empty()
            || id.len() > 128
            || id.chars().any(|c| {
                matches!(c, '/' | '+' | '#' | ':' | '$') || c.is_whitespace() || c.is_control()
            })
        {
            return Err(RegistryError::InvalidDeviceId(id.to_owned()));
        }
        Ok(DeviceId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The status of one credential generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The device's credential in force.
    Issued,
    /// Replaced by a newer generation: refused at once.
    Rotated,
    Revoked,
}

impl Status {
    /// The stored and printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Issued => "issued",
            Status::Rotated => "rotated",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "issued" => Some(Status::Issued),
            "rotated" => Some(Status::Rotated),
            "revoked" => Some(Status::Revoked),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One device's latest generation, as `beffroi devices list` prints it (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub device: String,
    pub generation: i64,
    pub status: Status,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds: when it was rotated or revoked.
    pub revoked_at: Option<i64>,
}

/// A credential in force: what the broker files and the key loader need.
#[derive(Clone)]
pub struct ActiveCredential {
    pub device: String,
    pub generation: i64,
    /// Argon2id, PHC string.
    pub password_hash: String,
    /// Mosquitto's `$7$` PBKDF2-SHA512 hash.
    pub broker_hash: String,
    pub signing_key: [u8; 32],
}

impl fmt::Debug for ActiveCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveCredential")
            .field("device", &self.device)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What a backend records for a new generation: hashes and a key, never the password.
#[derive(Clone)]
pub struct NewCredential {
    pub password_hash: String,
    pub broker_hash: String,
    pub signing_key: [u8; 32],
    /// Unix seconds; also the time the previous generation is marked rotated.
    pub issued_at: i64,
}

/// Reading the registry. Every method sees the registry as last committed, by any handle.
pub trait CredentialReads: Send {
    /// The latest generation of every device, by device id.
    fn list(&self) -> Result<Vec<Entry>, RegistryError>;

    /// The credentials in force (status `issued`), by device id.
    fn active(&self) -> Result<Vec<ActiveCredential>, RegistryError>;

    /// The signing keys in force, by device id.
    fn signing_keys(&self) -> Result<BTreeMap<String, [u8; 32]>, RegistryError>;

    /// A number that grows with every committed change (issue, rotate, revoke) made through
    /// any handle, and does not move otherwise: a watcher polls it and reloads what it
    /// derived from the registry when it differs. Cheap: a single read.
    fn revision(&self) -> Result<u64, RegistryError>;
}

/// Changing the registry. Each method is atomic: the change and the revision's growth are
/// committed together, or neither; a refused change changes nothing.
pub trait CredentialStore: CredentialReads {
    /// Records generation 1 of a device, or the next after a revoked one; returns the
    /// generation. Refused ([`RegistryError::AlreadyIssued`]) if one is in force.
    fn issue(
        &mut self,
        device: &DeviceId,
        credential: &NewCredential,
    ) -> Result<i64, RegistryError>;

    /// Marks the generation in force `rotated` (at `credential.issued_at`) and records the
    /// next; returns it. Refused ([`RegistryError::NothingToRotate`]) if none is in force.
    fn rotate(
        &mut self,
        device: &DeviceId,
        credential: &NewCredential,
    ) -> Result<i64, RegistryError>;

    /// Marks the generation in force `revoked` at `at` (Unix seconds). Refused
    /// ([`RegistryError::NothingToRevoke`]) if none is in force.
    fn revoke(&mut self, device: &DeviceId, at: i64) -> Result<(), RegistryError>;
}

/// The generation an issue records, given the device's latest one: 1, or the next after a
/// rotated or revoked one; refused while one is in force. Every backend decides by it.
pub fn generation_to_issue(
    device: &DeviceId,
    latest: Option<(i64, Status)>,
) -> Result<i64, RegistryError> {
    match latest {
        Some((_, Status::Issued)) => Err(RegistryError::AlreadyIssued(device.to_string())),
        Some((g, _)) => Ok(g + 1),
        None => Ok(1),
    }
}

/// The generation a rotation replaces, given the device's latest one: the one in force;
/// refused when none is.
pub fn generation_to_rotate(
    device: &DeviceId,
    latest: Option<(i64, Status)>,
) -> Result<i64, RegistryError> {
    match latest {
        Some((g, Status::Issued)) => Ok(g),
        _ => Err(RegistryError::NothingToRotate(device.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_id_is_a_broker_user_and_a_topic_level() {
        for bad in [
            "",
            "a/b",
            "a:b",
            "a+b",
            "a#",
            "$sys",
            "a b",
            "a\tb",
            &"x".repeat(129),
        ] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            DeviceId::parse("gauge-1.a_b").expect("id").as_str(),
            "gauge-1.a_b"
        );
        for s in [Status::Issued, Status::Rotated, Status::Revoked] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }
}
