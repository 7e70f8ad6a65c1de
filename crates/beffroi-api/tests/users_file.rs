//! The accounts file parser on arbitrary and generated input: it never panics, reports
//! errors with file and line, and reads back exactly what `user_entry`/`token_entry` write.

use std::path::Path;

use beffroi_api::access::{Role, Scope};
use beffroi_territory::SourceFile;
use proptest::prelude::*;

fn territory() -> beffroi_core::Territory {
    beffroi_territory::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/territory"))
        .expect("demo territory")
}

fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let t = territory();
        if let Err(e) = beffroi_api::users::parse(&SourceFile::new("users.toml", text), &t, None) {
            for err in e.iter() {
                prop_assert_eq!(&err.file, "users.toml");
            }
        }
    }

    #[test]
    fn written_entries_read_back(
        name in "\\PC{1,20}",
        grants in proptest::collection::vec((role(), proptest::option::of(proptest::sample::subsequence(
            vec!["dijon", "chenove", "talant", "quetigny"], 1..4))), 1..4),
    ) {
        let t = territory();
        let grants: Vec<(Role, Option<Vec<String>>)> = grants
            .into_iter()
            .map(|(r, c)| (r, c.map(|l| l.into_iter().map(String::from).collect())))
            .collect();
        let (_, digest) = beffroi_api::auth::generate_token();
        // A fixed, valid Argon2id PHC string (hashing in every case would be slow).
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$7bXyD2cS3EjWbvVbgIS1oW3Rh1hs9qKQmDL36Mb0Z9E";
        let text = format!(
            "{}{}",
            beffroi_api::users::user_entry(&name, hash, None, &grants),
            beffroi_api::users::token_entry(&name, &digest, &grants)
        );
        let acc = beffroi_api::users::parse(&SourceFile::new("users.toml", text), &t, None)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&acc.users[0].name, &name);
        prop_assert_eq!(&acc.tokens[0].name, &name);
        for (got, (role, communes)) in acc.users[0].grants.iter().zip(&grants) {
            prop_assert_eq!(got.role, *role);
            match communes {
                None => prop_assert_eq!(&got.scope, &Scope::Territory),
                Some(list) => {
                    let idx = list.iter().map(|c| t.commune_id(c).expect("commune")).collect();
                    prop_assert_eq!(&got.scope, &Scope::communes(idx));
                }
            }
        }
        prop_assert_eq!(acc.tokens[0].grants.len(), grants.len());
    }
}

#[test]
fn errors_name_file_line_and_field() {
    let t = territory();
    let text = "\
[[user]]
name = \"x\"
password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$7bXyD2cS3EjWbvVbgIS1oW3Rh1hs9qKQmDL36Mb0Z9E\"
grants = [{ role = \"operator\", communes = [\"atlantis\"] }]

[[user]]
name = \"y\"
password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$7bXyD2cS3EjWbvVbgIS1oW3Rh1hs9qKQmDL36Mb0Z9E\"
totp_secret = \"not base32!\"
grants = [{ role = \"operator\" }]

[[token]]
name = \"sig\"
sha256 = \"abcd\"
grants = [{ role = \"technician\", territory = true }]
";
    let e = beffroi_api::users::parse(&SourceFile::new("users.toml", text), &t, None)
        .expect_err("invalid")
        .to_string();
    for want in [
        "users.toml:4: `communes`: unknown commune `atlantis`",
        "users.toml:9: `totp_secret`",
        "users.toml:10: `communes`: a grant needs",
        "users.toml:14: `sha256`",
    ] {
        assert!(e.contains(want), "`{want}` in:\n{e}");
    }
}

/// A TOTP secret written in clear is refused with the command that seals it; `users seal`
/// (`seal_clear_secrets`) rewrites that line alone, comments kept, and the sealed file reads
/// back with the key: the secret is no longer in the file.
#[test]
fn clear_totp_secrets_are_refused_and_sealed_in_place() {
    let t = territory();
    let text = "\
# accounts of the command post
[[user]]
name = \"amelie\"
password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$7bXyD2cS3EjWbvVbgIS1oW3Rh1hs9qKQmDL36Mb0Z9E\"
totp_secret = \"JBSWY3DPEHPK3PXPJBSWY3DP\"   
grants = [{ role = \"operator\", territory = true }]
";
    let src = SourceFile::new("users.toml", text);
    let e = beffroi_api::users::parse(&src, &t, None)
        .expect_err("clear secret")
        .to_string();
    assert!(
        e.contains("users.toml:5: `totp_secret`") && e.contains("beffroi users seal"),
        "{e}"
    );
    let key = beffroi_api::totp::SealKey::generate();
    let (sealed, n) = beffroi_api::users::seal_clear_secrets(&src, &key).expect("sealed");
    assert_eq!(n, 1);
    assert!(!sealed.contains("JBSWY3DP"), "{sealed}");
    assert!(sealed.starts_with("# accounts of the command post\n"));
    let acc = beffroi_api::users::parse(&SourceFile::new("users.toml", sealed), &t, Some(&key))
        .expect("reads back");
    assert_eq!(
        acc.users[0].totp,
        beffroi_api::totp::decode_secret("JBSWY3DPEHPK3PXPJBSWY3DP")
    );
}
