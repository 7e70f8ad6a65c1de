//! The accounts file (`users.toml`): users with their Argon2id hash, grants and optional
//! TOTP secret, and API tokens with their SHA-256 digest and grants. Every error is reported
//! with file, line and field.
//!
//! TOTP secrets are sealed ([`crate::totp::seal`]) under the key of `[http] totp_key`: a
//! secret in clear (`totp_secret`) is refused, with the command that seals it.
//!
//! ```toml
//! [[user]]
//! name = "amelie"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! totp_sealed = "v1:…"    # optional, from `beffroi users add --totp` or `users seal`
//! grants = [
//!   { role = "operator", communes = ["dijon", "chenove"] },
//!   { role = "auditor", territory = true },
//! ]
//!
//! [[token]]
//! name = "sig-import"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! grants = [{ role = "technician", territory = true }]
//! ```

use beffroi_core::Territory;
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile};
use serde::Deserialize;
use toml::Spanned;

use crate::access::{Grant, Role, Scope};
use crate::auth::{Account, ApiToken};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<Spanned<RawUser>>,
    #[serde(default)]
    token: Vec<Spanned<RawToken>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_hash: Spanned<String>,
    /// A secret in clear: refused (sealed ones only).
    totp_secret: Option<Spanned<String>>,
    totp_sealed: Option<Spanned<String>>,
    grants: Vec<Spanned<RawGrant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    sha256: Spanned<String>,
    grants: Vec<Spanned<RawGrant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    role: Spanned<String>,
    communes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    territory: bool,
}

/// The accounts of a deployment.
#[derive(Debug, Default)]
pub struct Accounts {
    pub users: Vec<Account>,
    pub tokens: Vec<ApiToken>,
}

fn grants(
    src: &SourceFile,
    t: &Territory,
    raw: &[Spanned<RawGrant>],
    errs: &mut ConfigErrors,
) -> Vec<Grant> {
    let mut out = Vec::new();
    for g in raw {
        let line = Some(src.line(g.span().start));
        let g = g.get_ref();
        let Some(role) = Role::parse(g.role.get_ref()) else {
            errs.push(ConfigError::new(
                src.path.clone(),
                Some(src.line(g.role.span().start)),
                Some("role"),
                format!(
                    "unknown role `{}` (one of: {})",
                    g.role.get_ref(),
                    Role::ALL.map(Role::as_str).join(", ")
                ),
            ));
            continue;
        };
        let scope = match (&g.communes, g.territory) {
            (None, true) => Scope::Territory,
            (Some(list), false) if !list.is_empty() => {
                let mut idx = Vec::new();
                for c in list {
                    match t.commune_id(c.get_ref()) {
                        Some(i) => idx.push(i),
                        None => errs.push(ConfigError::new(
                            src.path.clone(),
                            Some(src.line(c.span().start)),
                            Some("communes"),
                            format!("unknown commune `{}`", c.get_ref()),
                        )),
                    }
                }
                Scope::communes(idx)
            }
            _ => {
                errs.push(ConfigError::new(
                    src.path.clone(),
                    line,
                    Some("communes"),
                    "a grant needs either a non-empty `communes` list or `territory = true`",
                ));
                continue;
            }
        };
        if !scope.is_nothing() {
            out.push(Grant { role, scope });
        }
    }
    out
}

/// Parses and validates `users.toml` against the territory's communes.
pub fn parse(
    src: &SourceFile,
    t: &Territory,
    totp_key: Option<&crate::totp::SealKey>,
) -> Result<Accounts, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let raw: RawFile = match toml::from_str(&src.text) {
        Ok(r) => r,
        Err(e) => {
            errs.push(ConfigError::from_toml(src, &e));
            return Err(errs);
        }
    };
    let mut acc = Accounts::default();
    let mut names = std::collections::HashSet::new();
    for u in &raw.user {
        let line = Some(src.line(u.span().start));
        let u = u.get_ref();
        if u.name.is_empty() || !names.insert(u.name.clone()) {
            errs.push(ConfigError::new(
                src.path.clone(),
                line,
                Some("name"),
                format!("empty or duplicate user name `{}`", u.name),
            ));
        }
        let hash_line = Some(src.line(u.password_hash.span().start));
        match argon2::PasswordHash::new(u.password_hash.get_ref()) {
            Ok(h) if h.algorithm.as_str() == "argon2id" => {}
            _ => errs.push(ConfigError::new(
                src.path.clone(),
                hash_line,
                Some("password_hash"),
                "not an Argon2id PHC string (make one with `beffroi users hash`)",
            )),
        }
        if let Some(clear) = &u.totp_secret {
            errs.push(ConfigError::new(
                src.path.clone(),
                Some(src.line(clear.span().start)),
                Some("totp_secret"),
                "a TOTP secret in clear: seal it with `beffroi users seal --file FILE --totp-key KEY`",
            ));
        }
        let totp = u.totp_sealed.as_ref().and_then(|s| {
            let opened = match totp_key {
                None => {
                    Err("a sealed TOTP secret, but no key to open it (`[http] totp_key`)".into())
                }
                Some(key) => match crate::totp::open(key, &u.name, s.get_ref()) {
                    Ok(b) if b.len() >= 10 => Ok(b),
                    Ok(_) => Err("the secret is shorter than 80 bits".to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            opened
                .map_err(|message| {
                    errs.push(ConfigError::new(
                        src.path.clone(),
                        Some(src.line(s.span().start)),
                        Some("totp_sealed"),
                        message,
                    ));
                })
                .ok()
        });
        let g = grants(src, t, &u.grants, &mut errs);
        acc.users.push(Account {
            name: u.name.clone(),
            password_hash: u.password_hash.get_ref().clone(),
            grants: g,
            totp,
        });
    }
    let mut token_names = std::collections::HashSet::new();
    for tk in &raw.token {
        let line = Some(src.line(tk.span().start));
        let tk = tk.get_ref();
        if tk.name.is_empty() || !token_names.insert(tk.name.clone()) {
            errs.push(ConfigError::new(
                src.path.clone(),
                line,
                Some("name"),
                format!("empty or duplicate token name `{}`", tk.name),
            ));
        }
        let hex = tk.sha256.get_ref().trim_start_matches("sha256:");
        let digest = data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        let Some(digest) = digest else {
            errs.push(ConfigError::new(
                src.path.clone(),
                Some(src.line(tk.sha256.span().start)),
                Some("sha256"),
                "not a SHA-256 digest in hex (make one with `beffroi users token`)",
            ));
            continue;
        };
        let g = grants(src, t, &tk.grants, &mut errs);
        acc.tokens.push(ApiToken {
            name: tk.name.clone(),
            digest,
            grants: g,
        });
    }
    errs.into_result(acc)
}

/// A TOML basic string (JSON's string escapes are valid TOML).
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The TOML text of a grant list, as `parse` reads it.
pub fn grants_toml(grants: &[(Role, Option<Vec<String>>)]) -> String {
    let items: Vec<String> = grants
        .iter()
        .map(|(role, communes)| match communes {
            None => format!("{{ role = \"{}\", territory = true }}", role.as_str()),
            Some(list) => format!(
                "{{ role = \"{}\", communes = [{}] }}",
                role.as_str(),
                list.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
            ),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// `text` of a users file with every `totp_secret = "…"` line (a secret in clear) replaced
/// by its `totp_sealed` line under `key`, and how many were sealed. Comments and the rest of
/// the file are kept as they are.
pub fn seal_clear_secrets(
    src: &SourceFile,
    key: &crate::totp::SealKey,
) -> Result<(String, usize), ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let raw: RawFile = match toml::from_str(&src.text) {
        Ok(r) => r,
        Err(e) => {
            errs.push(ConfigError::from_toml(src, &e));
            return Err(errs);
        }
    };
    // Line index (0-based) → the sealed line that replaces it.
    let mut replace = std::collections::HashMap::new();
    for u in &raw.user {
        let u = u.get_ref();
        let Some(clear) = &u.totp_secret else {
            continue;
        };
        let line = src.line(clear.span().start);
        match crate::totp::decode_secret(clear.get_ref()) {
            Some(secret) => {
                let sealed = crate::totp::seal(key, &u.name, &secret);
                replace.insert(line - 1, format!("totp_sealed = {}", quote(&sealed)));
            }
            None => errs.push(ConfigError::new(
                src.path.clone(),
                Some(line),
                Some("totp_secret"),
                "not a base32 secret of at least 80 bits",
            )),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let mut out = String::with_capacity(src.text.len());
    for (i, l) in src.text.lines().enumerate() {
        match replace.get(&i) {
            // The whole line is the key and its value (as `users add` wrote it).
            Some(sealed) if l.trim_start().starts_with("totp_secret") => out.push_str(sealed),
            Some(_) => {
                errs.push(ConfigError::new(
                    src.path.clone(),
                    Some(i + 1),
                    Some("totp_secret"),
                    "write `totp_secret = \"…\"` on a line of its own to seal it",
                ));
                out.push_str(l);
            }
            None => out.push_str(l),
        }
        out.push('\n');
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok((out, replace.len()))
}

/// A `[[user]]` entry to append to `users.toml`.
pub fn user_entry(
    name: &str,
    password_hash: &str,
    totp_sealed: Option<&str>,
    grants: &[(Role, Option<Vec<String>>)],
) -> String {
    let mut s = format!(
        "\n[[user]]\nname = {}\npassword_hash = {}\n",
        quote(name),
        quote(password_hash)
    );
    if let Some(t) = totp_sealed {
        s.push_str(&format!("totp_sealed = {}\n", quote(t)));
    }
    s.push_str(&format!("grants = {}\n", grants_toml(grants)));
    s
}

/// A `[[token]]` entry to append to `users.toml`.
pub fn token_entry(name: &str, digest: &str, grants: &[(Role, Option<Vec<String>>)]) -> String {
    format!(
        "\n[[token]]\nname = {}\nsha256 = {}\ngrants = {}\n",
        quote(name),
        quote(digest),
        grants_toml(grants)
    )
}
