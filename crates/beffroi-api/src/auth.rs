//! Users and bearer tokens.
//!
//! Passwords are hashed with Argon2id. Tokens are 256-bit random values, kept in memory
//! with an expiry (a restart logs everybody out). Full roles scoped to communes come with
//! the access-control work; for now every authenticated user may do everything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use rand::RngCore;

pub struct Auth {
    users: HashMap<String, String>,
    /// Hash checked for unknown users, so that timing does not reveal which names exist.
    dummy: String,
    sessions: Mutex<HashMap<String, Session>>,
    ttl: Duration,
}

struct Session {
    user: String,
    expires: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

impl Auth {
    pub fn new(ttl: Duration) -> Self {
        Auth {
            users: HashMap::new(),
            dummy: String::new(),
            sessions: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Adds (or replaces) a user with an Argon2id hash of `password`.
    pub fn add_user(&mut self, name: &str, password: &str) -> Result<(), AuthError> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AuthError::Hash(e.to_string()))?
            .to_string();
        if self.dummy.is_empty() {
            self.dummy.clone_from(&hash);
        }
        self.users.insert(name.to_string(), hash);
        Ok(())
    }

    /// Verifies credentials (CPU-heavy: call from `spawn_blocking`) and opens a session.
    pub fn login(&self, name: &str, password: &str) -> Option<String> {
        let (hash, known) = match self.users.get(name) {
            Some(h) => (h, true),
            None => (&self.dummy, false),
        };
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        if !(ok && known) {
            return None;
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        s.retain(|_, v| v.expires > now);
        s.insert(
            token.clone(),
            Session {
                user: name.to_string(),
                expires: now + self.ttl,
            },
        );
        Some(token)
    }

    /// The user a token belongs to, if valid and not expired.
    pub fn check(&self, token: &str) -> Option<String> {
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.get(token)
            .filter(|v| v.expires > Instant::now())
            .map(|v| v.user.clone())
    }

    pub fn logout(&self, token: &str) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.remove(token);
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// A random password for generated demo credentials (base64url, 128 bits).
pub fn generate_password() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_check_logout() {
        let mut a = Auth::new(Duration::from_secs(60));
        a.add_user("admin", "s3cret").expect("hash");
        assert!(a.login("admin", "wrong").is_none());
        assert!(a.login("nobody", "s3cret").is_none());
        let t = a.login("admin", "s3cret").expect("valid");
        assert_eq!(a.check(&t).as_deref(), Some("admin"));
        a.logout(&t);
        assert!(a.check(&t).is_none());
    }
}
