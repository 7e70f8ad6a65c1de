//! Secret generation and password hashing, independent of any backend: a device's password
//! (24 random bytes, base64url) and signing key (32 random bytes), the Argon2id hash kept
//! for HTTP ingestion and Mosquitto 2.0's own `$7$` hash for the broker's password file.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

use crate::{DeviceId, Issued, NewCredential, RegistryError};

/// Mosquitto 2.0's PBKDF2 iteration count for `$7$` hashes (`mosquitto_passwd`).
pub const BROKER_ITERATIONS: u32 = 101;

/// A fresh password and signing key, before anything is stored.
pub struct Secret {
    password: String,
    key: [u8; 32],
}

impl Secret {
    pub fn generate() -> Secret {
        let mut rng = rand::rng();
        let mut pw = [0u8; 24];
        rng.fill_bytes(&mut pw);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        Secret {
            password: URL_SAFE_NO_PAD.encode(pw),
            key,
        }
    }

    /// What a backend stores for it: the password hashed twice, the key. `now`: Unix seconds.
    pub fn credential(&self, now: i64) -> Result<NewCredential, RegistryError> {
        Ok(NewCredential {
            password_hash: argon2_hash(&self.password)?,
            broker_hash: mosquitto_hash(&self.password),
            signing_key: self.key,
            issued_at: now,
        })
    }

    /// The secret handed out once, under the generation the backend gave it.
    pub fn issued(self, device: DeviceId, generation: i64) -> Issued {
        Issued {
            device,
            generation,
            password: self.password,
            key: self.key,
        }
    }
}

/// An Argon2id hash (PHC string) with a random salt.
pub fn argon2_hash(password: &str) -> Result<String, RegistryError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| RegistryError::Hash(e.to_string()))?;
    let h = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| RegistryError::Hash(e.to_string()))?;
    Ok(h.to_string())
}

/// Whether `password` matches an Argon2id hash from the registry.
pub fn argon2_verify(password: &str, hash: &str) -> bool {
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

/// Whether `password` matches a `$7$` hash, as the broker would decide (constant-time
/// comparison; a malformed hash matches nothing).
pub fn mosquitto_verify(password: &str, hash: &str) -> bool {
    let mut parts = hash.split('$');
    let (Some(""), Some("7"), Some(iterations), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt)) = (iterations.parse::<u32>(), STANDARD.decode(salt)) else {
        return false;
    };
    if iterations == 0 {
        return false;
    }
    let computed = mosquitto_hash_with(password, &salt, iterations);
    let Some(computed) = computed.rsplit('$').next() else {
        return false;
    };
    computed.as_bytes().ct_eq(expected.as_bytes()).into()
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
        assert!(mosquitto_verify("secret", line));
        assert!(!mosquitto_verify("secreT", line));
        assert!(!mosquitto_verify("secret", "$7$0$uJiDVv3S2WlZvK8l$"));
        assert!(!mosquitto_verify("secret", "secret"));
    }

    #[test]
    fn a_credential_holds_hashes_of_the_password_only() {
        let secret = Secret::generate();
        let other = Secret::generate();
        assert_ne!(secret.password, other.password);
        assert_ne!(secret.key, other.key);
        let c = secret.credential(7).expect("hash");
        assert!(c.password_hash.starts_with("$argon2id$"));
        assert!(argon2_verify(&secret.password, &c.password_hash));
        assert!(!argon2_verify(&other.password, &c.password_hash));
        assert!(mosquitto_verify(&secret.password, &c.broker_hash));
        assert!(!c.password_hash.contains(&secret.password));
        assert!(!c.broker_hash.contains(&secret.password));
        assert_eq!((c.signing_key, c.issued_at), (secret.key, 7));
    }
}
