//! The accounts file (`users.toml`) with the keys that its model leaves to the caller.
//!
//! The model — accounts, tokens, grants with their scopes, parsing and validation with file,
//! line and field, the entries `beffroi users` appends — is pure and lives in
//! [`crate::access::users`] (re-exported here). This module binds what needs a key: TOTP
//! secrets are sealed ([`crate::totp::seal`]) under the key of `[http] totp_key`, opened with
//! it when the file is read, and a secret in clear (`totp_secret`) is refused with the command
//! that seals it.

use beffroi_core::Territory;
use beffroi_territory::{ConfigErrors, SourceFile};

pub use crate::access::users::{Accounts, grants_toml, token_entry, user_entry};

/// Parses and validates `users.toml` against the territory's communes, opening sealed TOTP
/// secrets with `totp_key` (none: a sealed secret is refused).
pub fn parse(
    src: &SourceFile,
    t: &Territory,
    totp_key: Option<&crate::totp::SealKey>,
) -> Result<Accounts, ConfigErrors> {
    match totp_key {
        None => crate::access::users::parse(src, t, None),
        Some(key) => {
            let open = |name: &str, sealed: &str| {
                crate::totp::open(key, name, sealed).map_err(|e| e.to_string())
            };
            crate::access::users::parse(src, t, Some(&open))
        }
    }
}

/// `text` of a users file with every `totp_secret = "…"` line (a secret in clear) replaced
/// by its `totp_sealed` line under `key`, and how many were sealed. Comments and the rest of
/// the file are kept as they are.
pub fn seal_clear_secrets(
    src: &SourceFile,
    key: &crate::totp::SealKey,
) -> Result<(String, usize), ConfigErrors> {
    crate::access::users::seal_clear_secrets(src, &mut |name, clear| {
        crate::totp::decode_secret(clear)
            .map(|secret| crate::totp::seal(key, name, &secret))
            .ok_or_else(|| "not a base32 secret of at least 80 bits".to_string())
    })
}
