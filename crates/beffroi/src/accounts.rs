//! Accounts at start-up (the users file, or the demo's generated per-role users) and the
//! `beffroi users` commands that write the users file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use beffroi_access::{Grant, Role, Scope, users};
use beffroi_api::Auth;
use beffroi_api::auth::{AuthPolicy, generate_password};
use beffroi_core::{CommuneIdx, Territory};
use beffroi_territory::SourceFile;

use crate::config::HttpSettings;

/// A generated account to print once at start.
pub struct Generated {
    pub name: String,
    pub password: String,
    pub grants: String,
}

/// The admin password: `BEFFROI_ADMIN_PASSWORD` (which must pass the password policy), or a
/// generated one that is printed.
fn admin_password() -> Result<(String, bool)> {
    match std::env::var("BEFFROI_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => {
            beffroi_api::password::check("admin", &p)
                .map_err(|e| anyhow!("BEFFROI_ADMIN_PASSWORD is refused: {e}"))?;
            Ok((p, false))
        }
        _ => Ok((generate_password(), true)),
    }
}

/// The demo's users: one per role, with communes that show the scoping.
fn demo_users(t: &Territory) -> Vec<(&'static str, Role, Scope)> {
    let first = |n: usize| {
        Scope::communes(
            (0..n.min(t.communes.len()))
                .map(|i| CommuneIdx(i as u32))
                .collect(),
        )
    };
    vec![
        ("operator", Role::Operator, first(2)),
        ("supervisor", Role::Supervisor, first(4)),
        ("crisis_director", Role::CrisisDirector, Scope::Territory),
        ("technician", Role::Technician, Scope::Territory),
        ("security_analyst", Role::SecurityAnalyst, Scope::Territory),
        ("dpo", Role::Dpo, Scope::Territory),
        ("auditor", Role::Auditor, Scope::Territory),
    ]
}

fn describe(t: &Territory, g: &[Grant]) -> String {
    g.iter()
        .map(|g| match g.scope.commune_ids(t) {
            None => format!("{} (territory)", g.role.as_str()),
            Some(c) => format!("{} ({})", g.role.as_str(), c.join(", ")),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Builds the accounts: `admin` (administrator of the territory, password from
/// `BEFFROI_ADMIN_PASSWORD` or generated) unless the users file declares it, the users file's
/// accounts and tokens, and in the demo one generated user per role. CPU-heavy (hashing):
/// call from `spawn_blocking`.
pub fn build(
    t: &Arc<Territory>,
    http: &HttpSettings,
    demo: bool,
) -> Result<(Auth, Vec<Generated>, bool)> {
    let mut policy = AuthPolicy::default();
    if let Some(d) = http.session_idle {
        policy.idle = d;
    }
    if let Some(d) = http.session_absolute {
        policy.absolute = d;
    }
    let mut auth = Auth::new(policy, Arc::new(beffroi_engine::runner::SystemClock));
    let mut generated = Vec::new();
    let mut declared_admin = false;
    if let Some(path) = &http.users {
        crate::files::check_owner_only(path)?;
        let key = match &http.totp_key {
            Some(k) => crate::files::read_totp_key(k)?,
            None => None,
        };
        let src = SourceFile::read(path).map_err(|e| anyhow!("{e}"))?;
        // The model is `beffroi_access::users`; the API's wrapper opens sealed TOTP secrets
        // with the key.
        let accounts = beffroi_api::users::parse(&src, t, key.as_ref())
            .map_err(|e| anyhow!("{} is invalid:\n{e}", path.display()))?;
        for u in accounts.users {
            declared_admin |= u.name == "admin";
            auth.add_account(u);
        }
        for tk in accounts.tokens {
            auth.add_token(tk);
        }
    }
    let mut admin_from_env = false;
    if !declared_admin {
        let (password, gen_) = admin_password()?;
        let grants = vec![Grant {
            role: Role::Administrator,
            scope: Scope::Territory,
        }];
        auth.add_user("admin", &password, grants.clone())?;
        if gen_ {
            generated.push(Generated {
                name: "admin".into(),
                password,
                grants: describe(t, &grants),
            });
        } else {
            admin_from_env = true;
        }
    }
    if demo {
        for (name, role, scope) in demo_users(t) {
            let password = generate_password();
            let grants = vec![Grant { role, scope }];
            auth.add_user(name, &password, grants.clone())?;
            generated.push(Generated {
                name: name.into(),
                password,
                grants: describe(t, &grants),
            });
        }
    }
    Ok((auth, generated, admin_from_env))
}

/// `role` (whole territory) or `role@commune,commune`.
fn parse_grant(spec: &str) -> Result<(Role, Option<Vec<String>>)> {
    let (role, communes) = match spec.split_once('@') {
        None => (spec, None),
        Some((r, c)) => (
            r,
            Some(
                c.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>(),
            ),
        ),
    };
    let role = Role::parse(role).ok_or_else(|| {
        anyhow!(
            "unknown role `{role}` (one of: {})",
            Role::ALL.map(Role::as_str).join(", ")
        )
    })?;
    if communes.as_ref().is_some_and(Vec::is_empty) {
        bail!("`{spec}`: no commune after `@`");
    }
    Ok((role, communes))
}

/// Replaces `file` with `text` atomically (a 0600 temporary file beside it, synced, renamed).
fn write_private(file: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = file.with_extension("toml.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))
}

fn append(file: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Created for the service account alone: it holds hashes and TOTP secrets.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))
}

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Prints the Argon2id hash of a password (read from BEFFROI_NEW_PASSWORD or stdin).
    Hash,
    /// Adds a user to a users file; prints the generated password (or uses
    /// BEFFROI_NEW_PASSWORD) once.
    Add {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// `role` (whole territory) or `role@commune,commune`; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Also generate a TOTP secret (printed once, with its otpauth URI), stored sealed.
        #[arg(long, requires = "totp_key")]
        totp: bool,
        /// The key that seals TOTP secrets (created if missing): the server's `[http]
        /// totp_key`, by default `totp.key` in its data folder.
        #[arg(long)]
        totp_key: Option<PathBuf>,
    },
    /// Seals the TOTP secrets written in clear in a users file (`totp_secret` becomes
    /// `totp_sealed`), in place.
    Seal {
        #[arg(long)]
        file: PathBuf,
        /// The key that seals them (created if missing): the server's `[http] totp_key`.
        #[arg(long)]
        totp_key: PathBuf,
    },
    /// Adds an API token to a users file; prints the token once.
    Token {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
}

/// The new user's password: `BEFFROI_NEW_PASSWORD` (which must pass the password policy),
/// or a generated one.
fn new_password(name: &str) -> Result<(String, bool)> {
    if let Ok(p) = std::env::var("BEFFROI_NEW_PASSWORD")
        && !p.is_empty()
    {
        beffroi_api::password::check(name, &p)
            .map_err(|e| anyhow!("BEFFROI_NEW_PASSWORD is refused: {e}"))?;
        return Ok((p, false));
    }
    Ok((generate_password(), true))
}

pub fn run(cmd: UsersCommand) -> Result<()> {
    match cmd {
        UsersCommand::Hash => {
            let password = match std::env::var("BEFFROI_NEW_PASSWORD") {
                Ok(p) if !p.is_empty() => p,
                _ => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            // No account name here: the policy's own lists still apply.
            beffroi_api::password::check("", &password)
                .map_err(|e| anyhow!("password refused: {e}"))?;
            println!("{}", beffroi_api::auth::hash_password(&password)?);
        }
        UsersCommand::Add {
            file,
            name,
            roles,
            totp,
            totp_key,
        } => {
            let grants = roles
                .iter()
                .map(|r| parse_grant(r))
                .collect::<Result<Vec<_>>>()?;
            let (password, generated) = new_password(&name)?;
            let hash = beffroi_api::auth::hash_password(&password)?;
            let secret = totp.then(beffroi_api::totp::generate_secret);
            let sealed = match (&secret, &totp_key) {
                (Some(s), Some(k)) => {
                    let key = crate::files::totp_key(k)?;
                    let raw = beffroi_api::totp::decode_secret(s)
                        .ok_or_else(|| anyhow!("generated TOTP secret does not decode"))?;
                    Some(beffroi_api::totp::seal(&key, &name, &raw))
                }
                _ => None,
            };
            append(
                &file,
                &users::user_entry(&name, &hash, sealed.as_deref(), &grants),
            )?;
            println!("added `{name}` to {}", file.display());
            if generated {
                println!("password: {password}   (shown once)");
            }
            if let Some(s) = secret {
                println!("TOTP secret: {s}");
                println!(
                    "otpauth://totp/Beffroi:{name}?secret={s}&issuer=Beffroi&digits=6&period=30"
                );
            }
        }
        UsersCommand::Seal { file, totp_key } => {
            crate::files::check_owner_only(&file)?;
            let key = crate::files::totp_key(&totp_key)?;
            let src = SourceFile::read(&file).map_err(|e| anyhow!("{e}"))?;
            let (text, n) = beffroi_api::users::seal_clear_secrets(&src, &key)
                .map_err(|e| anyhow!("{} is invalid:\n{e}", file.display()))?;
            if n > 0 {
                write_private(&file, &text)?;
            }
            println!("{n} TOTP secret(s) sealed in {}", file.display());
        }
        UsersCommand::Token { file, name, roles } => {
            let grants = roles
                .iter()
                .map(|r| parse_grant(r))
                .collect::<Result<Vec<_>>>()?;
            let (token, digest) = beffroi_api::auth::generate_token();
            append(&file, &users::token_entry(&name, &digest, &grants))?;
            println!("added token `{name}` to {}", file.display());
            println!("token: {token}   (shown once; only its SHA-256 is stored)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_specs() {
        assert_eq!(parse_grant("auditor").ok(), Some((Role::Auditor, None)));
        assert_eq!(
            parse_grant("operator@dijon, talant").ok(),
            Some((
                Role::Operator,
                Some(vec!["dijon".to_string(), "talant".to_string()])
            ))
        );
        assert!(parse_grant("root").is_err());
        assert!(parse_grant("operator@").is_err());
    }

    /// What `users add` and `users token` write reads back with the same grants.
    #[test]
    fn written_entries_parse_back() {
        let t = crate::setup::load_demo().expect("demo").territory;
        let g = vec![
            (Role::Operator, Some(vec!["dijon".to_string()])),
            (Role::Auditor, None),
        ];
        let hash = beffroi_api::auth::hash_password("pw").expect("hash");
        let key = beffroi_api::totp::SealKey::generate();
        let secret = beffroi_api::totp::generate_secret();
        let raw = beffroi_api::totp::decode_secret(&secret).expect("secret");
        let sealed = beffroi_api::totp::seal(&key, "a\"b", &raw);
        let (_, digest) = beffroi_api::auth::generate_token();
        let text = format!(
            "{}{}",
            beffroi_api::users::user_entry("a\"b", &hash, Some(&sealed), &g),
            beffroi_api::users::token_entry("sig", &digest, &g)
        );
        assert!(
            !text.contains(&secret),
            "the secret is not in the file in clear"
        );
        let src = SourceFile::new("users.toml", text);
        let acc = beffroi_api::users::parse(&src, &t, Some(&key)).expect("parses");
        assert_eq!(acc.users[0].name, "a\"b");
        assert_eq!(acc.users[0].grants.len(), 2);
        assert_eq!(acc.users[0].totp.as_deref(), Some(&raw[..]));
        // Without the key, or with another, the sealed secret is refused with its line.
        let e = beffroi_api::users::parse(&src, &t, None)
            .expect_err("no key")
            .to_string();
        assert!(e.contains("users.toml:5: `totp_sealed`"), "{e}");
        let other = beffroi_api::totp::SealKey::generate();
        assert!(beffroi_api::users::parse(&src, &t, Some(&other)).is_err());
        assert_eq!(acc.tokens[0].grants[1].scope, Scope::Territory);
        // Errors carry file, line and field.
        let bad = "[[user]]\nname = \"x\"\npassword_hash = \"nope\"\ngrants = [{ role = \"king\", territory = true }]\n";
        let e = beffroi_api::users::parse(&SourceFile::new("users.toml", bad), &t, None)
            .expect_err("invalid")
            .to_string();
        assert!(e.contains("users.toml:3: `password_hash`"), "{e}");
        assert!(
            e.contains("users.toml:4: `role`: unknown role `king`"),
            "{e}"
        );
    }

    /// A users file that others can read is refused before it is parsed, with the fix.
    #[test]
    fn a_users_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = crate::setup::load_demo().expect("demo").territory;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("users.toml");
        std::fs::write(&file, "").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let http = HttpSettings {
            users: Some(file),
            ..HttpSettings::default()
        };
        let e = build(&t, &http, false).err().expect("refused").to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    /// A users file that declares `admin` replaces the generated one; the demo adds one
    /// user per role other than administrator, each able to log in with its printed password.
    #[test]
    fn accounts_from_the_file_and_the_demo() {
        let t = crate::setup::load_demo().expect("demo").territory;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("users.toml");
        let hash = beffroi_api::auth::hash_password("from-file").expect("hash");
        append(
            &file,
            &beffroi_api::users::user_entry("admin", &hash, None, &[(Role::Administrator, None)]),
        )
        .expect("write");
        let http = HttpSettings {
            users: Some(file),
            ..HttpSettings::default()
        };
        let (auth, generated, from_env) = build(&t, &http, true).expect("accounts");
        assert!(!from_env);
        let names: Vec<&str> = generated.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "operator",
                "supervisor",
                "crisis_director",
                "technician",
                "security_analyst",
                "dpo",
                "auditor"
            ]
        );
        assert!(auth.login("admin", "from-file", None, "test").is_ok());
        let op = &generated[0];
        let ok = auth
            .login(&op.name, &op.password, None, "test")
            .expect("operator logs in");
        assert_eq!(ok.principal.grants[0].role, Role::Operator);
        assert!(!ok.principal.grants[0].scope.is_territory());
        assert!(op.grants.contains("dijon"), "{}", op.grants);
    }
}
