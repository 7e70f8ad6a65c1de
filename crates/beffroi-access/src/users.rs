//! The accounts file (`users.toml`) as a model: users with their Argon2id hash, grants and
//! optional sealed TOTP secret, and API tokens with their SHA-256 digest and grants; its
//! parsing and validation against the territory's communes, every error with file, line and
//! field; and the rendering of the entries `beffroi users` appends.
//!
//! Pure: the caller reads the file and passes its text in ([`SourceFile`]). What needs a key
//! is the caller's too, behind a function argument: opening a sealed TOTP secret
//! ([`parse`]'s `open_totp`) and sealing one written in clear ([`seal_clear_secrets`]'s
//! `seal`). The API crate (`beffroi_api::users`) binds them to its TOTP key; a password is
//! hashed by the caller, this model only checks that the hash is an Argon2id PHC string.
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
//!
//! A secret in clear (`totp_secret`) is refused, with the command that seals it. Why the
//! keys are function arguments: ADR 0028.

use beffroi_core::Territory;
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile};
use serde::Deserialize;
use toml::Spanned;

use crate::{Grant, Role, Scope};

/// A person who logs in.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    /// PHC string of an Argon2id hash.
    pub password_hash: String,
    pub grants: Vec<Grant>,
    /// RFC 6238 secret (raw bytes); when set, every login needs a code.
    pub totp: Option<Vec<u8>>,
}

/// An integration's bearer token.
#[derive(Clone, Debug)]
pub struct ApiToken {
    pub name: String,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    pub grants: Vec<Grant>,
}

/// The accounts of a deployment.
#[derive(Debug, Default)]
pub struct Accounts {
    pub users: Vec<Account>,
    pub tokens: Vec<ApiToken>,
}

/// Opens a user's sealed TOTP secret: `(user name, sealed value)` → the raw secret, or the
/// reason it does not open (written as the error's message). The key is the caller's.
pub type OpenTotp<'a> = &'a dyn Fn(&str, &str) -> Result<Vec<u8>, String>;

/// Seals a user's TOTP secret written in clear: `(user name, the secret as written)` → the
/// `totp_sealed` value, or the reason it cannot (written as the error's message).
pub type SealTotp<'a> = &'a mut dyn FnMut(&str, &str) -> Result<String, String>;

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

fn raw_file(src: &SourceFile) -> Result<RawFile, ConfigErrors> {
    toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e).into())
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

/// Parses and validates `users.toml` against the territory's communes. A `totp_sealed`
/// secret is opened with `open_totp` (`None`: no key configured, and a sealed secret is an
/// error); a secret under 80 bits is refused.
pub fn parse(
    src: &SourceFile,
    t: &Territory,
    open_totp: Option<OpenTotp<'_>>,
) -> Result<Accounts, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let raw = raw_file(src)?;
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
        match password_hash::PasswordHash::new(u.password_hash.get_ref()) {
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
            let opened = match open_totp {
                None => {
                    Err("a sealed TOTP secret, but no key to open it (`[http] totp_key`)".into())
                }
                Some(open) => match open(&u.name, s.get_ref()) {
                    Ok(b) if b.len() >= 10 => Ok(b),
                    Ok(_) => Err("the secret is shorter than 80 bits".to_string()),
                    Err(e) => Err(e),
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

/// `src`'s text with every `totp_secret = "…"` line (a secret in clear) replaced by a
/// `totp_sealed` line holding what `seal` makes of it, and how many were sealed. Comments
/// and the rest of the file are kept as they are.
pub fn seal_clear_secrets(
    src: &SourceFile,
    seal: SealTotp<'_>,
) -> Result<(String, usize), ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let raw = raw_file(src)?;
    // Line index (0-based) → the sealed line that replaces it.
    let mut replace = std::collections::HashMap::new();
    for u in &raw.user {
        let u = u.get_ref();
        let Some(clear) = &u.totp_secret else {
            continue;
        };
        let line = src.line(clear.span().start);
        match seal(&u.name, clear.get_ref()) {
            Ok(sealed) => {
                replace.insert(line - 1, format!("totp_sealed = {}", quote(&sealed)));
            }
            Err(message) => errs.push(ConfigError::new(
                src.path.clone(),
                Some(line),
                Some("totp_secret"),
                message,
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

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::{Commune, CommuneIdx, Point};
    use proptest::prelude::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$7bXyD2cS3EjWbvVbgIS1oW3Rh1hs9qKQmDL36Mb0Z9E";

    /// Two communes, `dijon` (0) and `talant` (1): enough to tell a scope from another.
    fn territory() -> Territory {
        let mut t = Territory::new("t", "T");
        for id in ["dijon", "talant"] {
            t.add_commune(Commune {
                id: id.into(),
                name: id.into(),
                insee: None,
                position: Point::new(5.0, 47.3),
                boundary: Vec::new(),
            })
            .expect("unique");
        }
        t
    }

    fn src(text: &str) -> SourceFile {
        SourceFile::new("users.toml", text)
    }

    fn errors(text: &str, totp: Option<OpenTotp<'_>>) -> Vec<String> {
        parse(&src(text), &territory(), totp)
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A grant naming an unknown role or an unknown commune is refused, each with the line
    /// and field where it is written; the other grants of the file still parse to their
    /// scopes.
    #[test]
    fn unknown_roles_and_communes_are_refused_with_their_line() {
        let text = format!(
            "[[user]]\nname = \"amelie\"\npassword_hash = \"{HASH}\"\ngrants = [\n  {{ role = \"operator\", communes = [\"dijon\"] }},\n  {{ role = \"king\", territory = true }},\n  {{ role = \"auditor\", communes = [\n    \"talant\",\n    \"atlantis\",\n  ] }},\n]\n"
        );
        let roles = Role::ALL.map(Role::as_str).join(", ");
        assert_eq!(
            errors(&text, None),
            [
                format!("users.toml:6: `role`: unknown role `king` (one of: {roles})"),
                "users.toml:9: `communes`: unknown commune `atlantis`".to_string(),
            ]
        );
        // Without the bad ones, the same file gives the scopes it names.
        let good = text
            .replace("  { role = \"king\", territory = true },\n", "")
            .replace("    \"atlantis\",\n", "");
        let acc = parse(&src(&good), &territory(), None).expect("valid");
        assert_eq!(
            acc.users[0].grants,
            [
                Grant {
                    role: Role::Operator,
                    scope: Scope::communes(vec![CommuneIdx(0)])
                },
                Grant {
                    role: Role::Auditor,
                    scope: Scope::communes(vec![CommuneIdx(1)])
                },
            ]
        );
    }

    /// A grant is a role over a non-empty list of communes or over the whole territory:
    /// neither, both, or an empty list is refused at the grant's line.
    #[test]
    fn a_grant_names_communes_or_the_territory() {
        for grant in [
            "{ role = \"operator\" }",
            "{ role = \"operator\", communes = [] }",
            "{ role = \"operator\", communes = [\"dijon\"], territory = true }",
        ] {
            let text = format!(
                "[[token]]\nname = \"sig\"\nsha256 = \"{}\"\ngrants = [\n {grant}\n]\n",
                "ab".repeat(32)
            );
            assert_eq!(
                errors(&text, None),
                [
                    "users.toml:5: `communes`: a grant needs either a non-empty `communes` list or `territory = true`"
                ],
                "{grant}"
            );
        }
    }

    /// Names are unique per kind; a password hash is an Argon2id PHC string; a token's
    /// digest is 32 bytes of hex; unknown fields are refused.
    #[test]
    fn names_hashes_and_digests_are_checked() {
        let grants = "grants = [{ role = \"auditor\", territory = true }]";
        let text = format!(
            "[[user]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n{grants}\n\
             [[user]]\nname = \"a\"\npassword_hash = \"$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$Zm9vYmFyYmF6\"\n{grants}\n\
             [[token]]\nname = \"a\"\nsha256 = \"sha256:{}\"\n{grants}\n\
             [[token]]\nname = \"b\"\nsha256 = \"{}\"\n{grants}\n",
            "AB".repeat(32),
            "ab".repeat(31),
        );
        assert_eq!(
            errors(&text, None),
            [
                "users.toml:5: `name`: empty or duplicate user name `a`",
                "users.toml:7: `password_hash`: not an Argon2id PHC string (make one with `beffroi users hash`)",
                "users.toml:15: `sha256`: not a SHA-256 digest in hex (make one with `beffroi users token`)",
            ]
        );
        let e = errors("[[user]]\nname = \"a\"\nrole = \"x\"\n", None);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("users.toml:3:1: unknown field `role`"),
            "{e:?}"
        );
    }

    /// The model opens a sealed TOTP secret only through the function it is given (the key
    /// is the caller's), with the account's name; no function, a refusal or a secret under
    /// 80 bits is refused at the `totp_sealed` line; a secret in clear is refused.
    #[test]
    fn totp_secrets_are_opened_by_the_caller() {
        let text = format!(
            "[[user]]\nname = \"amelie\"\npassword_hash = \"{HASH}\"\ntotp_sealed = \"v1:xyz\"\ngrants = [{{ role = \"auditor\", territory = true }}]\n"
        );
        let open = |name: &str, sealed: &str| -> Result<Vec<u8>, String> {
            match (name, sealed) {
                ("amelie", "v1:xyz") => Ok(vec![7; 20]),
                _ => Err("wrong key".into()),
            }
        };
        let acc = parse(&src(&text), &territory(), Some(&open)).expect("opens");
        assert_eq!(acc.users[0].totp.as_deref(), Some(&[7u8; 20][..]));
        assert_eq!(
            errors(&text, None),
            [
                "users.toml:4: `totp_sealed`: a sealed TOTP secret, but no key to open it (`[http] totp_key`)"
            ]
        );
        let refuse = |_: &str, _: &str| -> Result<Vec<u8>, String> { Err("wrong key".into()) };
        assert_eq!(
            errors(&text, Some(&refuse)),
            ["users.toml:4: `totp_sealed`: wrong key"]
        );
        let short = |_: &str, _: &str| -> Result<Vec<u8>, String> { Ok(vec![1; 9]) };
        assert_eq!(
            errors(&text, Some(&short)),
            ["users.toml:4: `totp_sealed`: the secret is shorter than 80 bits"]
        );
        let clear = text.replace(
            "totp_sealed = \"v1:xyz\"",
            "totp_secret = \"JBSWY3DPEHPK3PXP\"",
        );
        let e = errors(&clear, Some(&open));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("users.toml:4: `totp_secret`: a TOTP secret in clear"),
            "{e:?}"
        );
    }

    /// `seal_clear_secrets` replaces each clear secret's line by the sealed value the caller
    /// makes of it, keeps every other line, and reports what the caller refuses at its line.
    #[test]
    fn clear_secrets_are_replaced_line_by_line() {
        let text = format!(
            "# the command post\n[[user]]\nname = \"amelie\"\npassword_hash = \"{HASH}\"\n  totp_secret = \"AAAA\"  \ngrants = [{{ role = \"auditor\", territory = true }}]\n\n[[user]]\nname = \"bob\"\npassword_hash = \"{HASH}\"\ngrants = [{{ role = \"auditor\", territory = true }}]\n"
        );
        let mut seen = Vec::new();
        let (out, n) = seal_clear_secrets(&src(&text), &mut |name, clear| {
            seen.push((name.to_string(), clear.to_string()));
            Ok(format!("v1:{name}"))
        })
        .expect("sealed");
        assert_eq!(n, 1);
        assert_eq!(seen, [("amelie".to_string(), "AAAA".to_string())]);
        assert_eq!(
            out,
            text.replace("  totp_secret = \"AAAA\"  ", "totp_sealed = \"v1:amelie\"")
        );
        let e = seal_clear_secrets(&src(&text), &mut |_, _| Err("not base32".into()))
            .expect_err("refused")
            .to_string();
        assert_eq!(e, "users.toml:5: `totp_secret`: not base32");
        // A file that is not TOML is refused with the parser's line.
        let e = seal_clear_secrets(&src("[[user]]\nname = \n"), &mut |_, _| Ok(String::new()))
            .expect_err("not TOML")
            .to_string();
        assert!(e.starts_with("users.toml:2:8: "), "{e}");
    }

    fn role() -> impl Strategy<Value = Role> {
        proptest::sample::select(Role::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// What `user_entry` and `token_entry` write reads back exactly, whatever the name.
        #[test]
        fn entries_read_back(
            name in "\\PC{1,20}",
            grants in proptest::collection::vec((role(), proptest::option::of(
                proptest::sample::subsequence(vec!["dijon", "talant"], 1..=2))), 1..4),
        ) {
            let t = territory();
            let grants: Vec<(Role, Option<Vec<String>>)> = grants
                .into_iter()
                .map(|(r, c)| (r, c.map(|l| l.into_iter().map(String::from).collect())))
                .collect();
            let digest = "0f".repeat(32);
            let text = format!(
                "{}{}",
                user_entry(&name, HASH, Some("v1:sealed"), &grants),
                token_entry(&name, &digest, &grants)
            );
            let open = |_: &str, s: &str| -> Result<Vec<u8>, String> { Ok(s.as_bytes().repeat(2)) };
            let acc = parse(&src(&text), &t, Some(&open))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&acc.users[0].name, &name);
            prop_assert_eq!(&acc.users[0].password_hash, HASH);
            prop_assert_eq!(acc.users[0].totp.as_deref(), Some(&b"v1:sealedv1:sealed"[..]));
            prop_assert_eq!(&acc.tokens[0].name, &name);
            prop_assert_eq!(acc.tokens[0].digest, [0x0f; 32]);
            for got in [&acc.users[0].grants, &acc.tokens[0].grants] {
                prop_assert_eq!(got.len(), grants.len());
                for (g, (role, communes)) in got.iter().zip(&grants) {
                    prop_assert_eq!(g.role, *role);
                    let want = match communes {
                        None => Scope::Territory,
                        Some(l) => Scope::communes(
                            l.iter().filter_map(|c| t.commune_id(c)).collect()),
                    };
                    prop_assert_eq!(&g.scope, &want);
                }
            }
        }

        /// Any text: no panic, and every error names the file.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Err(e) = parse(&src(&text), &territory(), None) {
                for err in e.iter() {
                    prop_assert_eq!(&err.file, "users.toml");
                }
            }
        }
    }
}
