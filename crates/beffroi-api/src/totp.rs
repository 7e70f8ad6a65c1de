//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 30-second
//! steps, 6 digits — what authenticator apps expect from an `otpauth://totp/` URI.
//!
//! Secrets are kept sealed in `users.toml` ([`seal`], [`open`]): ChaCha20-Poly1305 under a
//! 256-bit [`SealKey`] kept in a file of its own, with the account name as associated data,
//! so a copy of the accounts file alone gives no second factor, and a sealed secret moved to
//! another account does not open.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const STEP_S: u64 = 30;
pub const DIGITS: u32 = 6;

/// The HOTP value of `counter` (RFC 4226 §5.3), as 6 digits.
pub fn code(secret: &[u8], counter: u64) -> String {
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this branch is unreachable in practice.
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    format!("{:06}", bin % 10u32.pow(DIGITS))
}

/// The step a code was made for, if it matches the current step or one step either side
/// (clock drift of the phone).
pub fn verify(secret: &[u8], given: &str, unix_s: u64) -> Option<u64> {
    if given.len() != DIGITS as usize || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_s / STEP_S;
    [now.saturating_sub(1), now, now + 1]
        .into_iter()
        .find(|step| crate::auth::csrf_matches(&code(secret, *step), given))
}

/// Decodes a base32 secret (RFC 4648, padding and spaces optional, any case).
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = data_encoding::BASE32_NOPAD.decode(clean.as_bytes()).ok()?;
    (bytes.len() >= 10).then_some(bytes)
}

/// A new random 160-bit secret, base32.
pub fn generate_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 20];
    rand::rng().fill_bytes(&mut b);
    data_encoding::BASE32_NOPAD.encode(&b)
}

/// The key that seals TOTP secrets (32 bytes).
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(…)")
    }
}

/// Prefix of a sealed secret's text, with the format version.
const SEALED_PREFIX: &str = "v1:";

impl SealKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<SealKey> {
        <[u8; 32]>::try_from(bytes).ok().map(SealKey)
    }

    pub fn generate() -> SealKey {
        use rand::RngCore;
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        SealKey(k)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

/// Why a sealed secret does not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a sealed secret (`v1:` and base64)")]
    Malformed,
    #[error("does not open with this key for this account (another key, or another account's)")]
    WrongKeyOrAccount,
}

/// Seals the raw secret of account `name`: `v1:` and base64 of a random nonce and the
/// ciphertext.
pub fn seal(key: &SealKey, name: &str, secret: &[u8]) -> String {
    use rand::RngCore;
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let ct = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: name.as_bytes(),
            },
        )
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    format!(
        "{SEALED_PREFIX}{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
    )
}

/// Opens a secret sealed by [`seal`] for account `name`.
pub fn open(key: &SealKey, name: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
    let b64 = sealed
        .strip_prefix(SEALED_PREFIX)
        .ok_or(SealError::Malformed)?;
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| SealError::Malformed)?;
    if raw.len() < 12 + 16 {
        return Err(SealError::Malformed);
    }
    let (nonce, ct) = raw.split_at(12);
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| SealError::WrongKeyOrAccount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_for_its_account() {
        let key = SealKey::generate();
        let secret = b"12345678901234567890";
        let sealed = seal(&key, "amelie", secret);
        assert!(sealed.starts_with("v1:"));
        assert_eq!(open(&key, "amelie", &sealed), Ok(secret.to_vec()));
        assert_eq!(
            open(&key, "bruno", &sealed),
            Err(SealError::WrongKeyOrAccount)
        );
        assert_eq!(
            open(&SealKey::generate(), "amelie", &sealed),
            Err(SealError::WrongKeyOrAccount)
        );
        assert_eq!(
            open(&key, "amelie", "JBSWY3DPEHPK3PXP"),
            Err(SealError::Malformed)
        );
        assert_eq!(open(&key, "amelie", "v1:AAAA"), Err(SealError::Malformed));
        // Two seals of one secret differ (random nonce).
        assert_ne!(sealed, seal(&key, "amelie", secret));
    }

    /// RFC 6238 appendix B, SHA-1 rows (the last 6 of the 8 digits).
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, expected) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code(secret, t / STEP_S), expected[2..], "t={t}");
            assert_eq!(verify(secret, &expected[2..], t), Some(t / STEP_S));
        }
    }

    #[test]
    fn drift_is_one_step() {
        let s = b"12345678901234567890";
        let c = code(s, 1000);
        assert_eq!(verify(s, &c, 1000 * STEP_S + 10), Some(1000));
        assert_eq!(verify(s, &c, 1001 * STEP_S), Some(1000));
        assert_eq!(verify(s, &c, 1002 * STEP_S), None);
        assert_eq!(verify(s, "12345", 0), None);
        assert_eq!(verify(s, "abcdef", 0), None);
    }

    #[test]
    fn secrets_round_trip() {
        let s = generate_secret();
        let raw = decode_secret(&s.to_lowercase()).expect("decodes");
        assert_eq!(raw.len(), 20);
        assert_eq!(decode_secret("short"), None);
    }

    proptest! {
        #[test]
        fn codes_are_six_digits(secret in proptest::collection::vec(any::<u8>(), 1..64), c in any::<u64>()) {
            let x = code(&secret, c);
            prop_assert_eq!(x.len(), 6);
            prop_assert!(x.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
