//! The password policy, applied wherever a password is set: the admin's from
//! `BEFFROI_ADMIN_PASSWORD`, `beffroi users add` and `beffroi users hash`.
//!
//! At least [`MIN_CHARS`] characters, at most [`crate::auth::MAX_PASSWORD_BYTES`] bytes, and
//! not guessable: zxcvbn (Dropbox's estimator, with its bundled lists of common passwords,
//! names, words and keyboard patterns, and the account's own name as a hint) must estimate
//! more than 10^10 guesses (its score 3 of 4). Generated passwords (128 random bits) pass.

/// Shortest password accepted (characters).
pub const MIN_CHARS: usize = 12;

/// Lowest zxcvbn score accepted (3: more than 10^8 guesses, "safely unguessable").
const MIN_SCORE: u8 = 3;

/// Why a password is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("a password needs at least {min} characters; this one has {len}")]
    TooShort { len: usize, min: usize },
    #[error("a password has at most {max} bytes")]
    TooLong { max: usize },
    #[error("this password is too easy to guess{hint}")]
    Guessable { hint: String },
}

/// Checks a new password for account `name`.
pub fn check(name: &str, password: &str) -> Result<(), WeakPassword> {
    let len = password.chars().count();
    if len < MIN_CHARS {
        return Err(WeakPassword::TooShort {
            len,
            min: MIN_CHARS,
        });
    }
    if password.len() > crate::auth::MAX_PASSWORD_BYTES {
        return Err(WeakPassword::TooLong {
            max: crate::auth::MAX_PASSWORD_BYTES,
        });
    }
    let estimate = zxcvbn::zxcvbn(password, &[name, "beffroi"]);
    if u8::from(estimate.score()) < MIN_SCORE {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(WeakPassword::Guessable { hint });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_name_based_passwords_are_refused() {
        assert!(matches!(
            check("admin", "a"),
            Err(WeakPassword::TooShort { len: 1, .. })
        ));
        assert!(matches!(
            check("admin", "password1234"),
            Err(WeakPassword::Guessable { .. })
        ));
        assert!(matches!(
            check("admin", "qwertyuiop123"),
            Err(WeakPassword::Guessable { .. })
        ));
        assert!(matches!(
            check("jdupont", "jdupont12345"),
            Err(WeakPassword::Guessable { .. })
        ));
        assert!(matches!(
            check("admin", "administrator1"),
            Err(WeakPassword::Guessable { .. })
        ));
        assert!(matches!(
            check("admin", &"x".repeat(crate::auth::MAX_PASSWORD_BYTES + 1)),
            Err(WeakPassword::TooLong { .. })
        ));
    }

    #[test]
    fn generated_and_passphrase_passwords_pass() {
        for _ in 0..20 {
            let p = crate::auth::generate_password();
            assert_eq!(check("admin", &p), Ok(()), "{p}");
        }
        assert_eq!(check("admin", "correct horse battery staple"), Ok(()));
        assert_eq!(check("admin", "Vq7-lanterne-Ouche-brume"), Ok(()));
    }
}
