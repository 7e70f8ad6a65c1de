use beffroi_core::Identifier;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

type HmacSha256 = Hmac<Sha256>;

/// Characters of base32 kept in a pseudonym: 20 × 5 = 100 bits.
use beffroi_core::text::PSEUDONYM_CHARS;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivacyError {
    #[error("no key for epoch {0}: it was destroyed, or never existed")]
    NoKey(u32),
    #[error("`{0}` is not a pseudonym")]
    NotAPseudonym(String),
    #[error("the sealed value does not open with its epoch's key")]
    Tampered,
}

/// The secret of one epoch of one territory. Never printed; wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EpochKey {
    epoch: u32,
    pseudonym: [u8; 32],
    seal: [u8; 32],
    nonce: [u8; 32],
}

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpochKey({}, <secret>)", self.epoch)
    }
}

fn derive(master: &[u8; 32], label: &str) -> [u8; 32] {
    // HMAC accepts keys of any length: this never fails.
    let mut m = <HmacSha256 as Mac>::new_from_slice(master).unwrap_or_else(|_| unreachable!());
    m.update(label.as_bytes());
    m.finalize().into_bytes().into()
}

impl EpochKey {
    /// The subkeys of an epoch, derived from its 32-byte master secret.
    pub fn new(epoch: u32, master: &[u8; 32]) -> Self {
        EpochKey {
            epoch,
            pseudonym: derive(master, "beffroi/pseudonym/v1"),
            seal: derive(master, "beffroi/seal/v1"),
            nonce: derive(master, "beffroi/nonce/v1"),
        }
    }
    pub fn epoch(&self) -> u32 {
        self.epoch
    }
}

/// A pseudonym as stored and shown: `kind:epoch:base32`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym(pub String);

impl std::fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

use beffroi_core::text::pseudonym_prefix as prefix;

/// Reads a pseudonym back into its kind, epoch and hash; `None` if `s` is not one.
pub fn parse_pseudonym(s: &str) -> Option<(Identifier, u32, &str)> {
    let mut it = s.splitn(3, ':');
    let (p, e, h) = (it.next()?, it.next()?, it.next()?);
    let id = Identifier::ALL.into_iter().find(|i| prefix(*i) == p)?;
    let epoch = e.parse().ok()?;
    let ok = h.len() == PSEUDONYM_CHARS
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    ok.then_some((id, epoch, h))
}

/// The canonical form of an identifier, so that the ways of writing one value link:
/// plates and badges upper-case without separators, MAC addresses as 12 lower-case hex
/// digits, French phone numbers in E.164 (`+33…`), e-mails lower-case, names with single
/// spaces and lower-case.
pub fn normalise(id: Identifier, raw: &str) -> String {
    let raw = raw.trim();
    match id {
        Identifier::LicencePlate | Identifier::Badge => raw
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_uppercase)
            .collect(),
        Identifier::MacAddress => raw
            .chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| c.to_ascii_lowercase())
            .collect(),
        Identifier::PhoneNumber => {
            let plus = raw.starts_with('+');
            let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
            if plus {
                // `+33 (0)6 …`: the trunk 0 written after the country code.
                match digits.strip_prefix("330") {
                    Some(rest) if rest.len() == 9 => format!("+33{rest}"),
                    _ => format!("+{digits}"),
                }
            } else if let Some(rest) = digits.strip_prefix("00") {
                format!("+{rest}")
            } else if digits.len() == 10 && digits.starts_with('0') {
                format!("+33{}", &digits[1..])
            } else if digits.len() == 11 && digits.starts_with("33") {
                format!("+{digits}")
            } else if digits.len() == 9 && (digits.starts_with('6') || digits.starts_with('7')) {
                // A French mobile written without its trunk 0.
                format!("+33{digits}")
            } else {
                digits
            }
        }
        Identifier::Email => raw.to_lowercase(),
        Identifier::Name => raw
            .split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" "),
        Identifier::Other => raw.to_string(),
    }
}

/// Where a value was met: its pseudonyms in the two domains never link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Domain {
    /// Reported by a device (observations).
    Observed,
    /// Written by a person (notes, logs, reasons).
    Written,
}

/// A pseudonym and the value behind it, sealed under the same epoch's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub pseudonym: Pseudonym,
    pub identifier: Identifier,
    pub epoch: u32,
    /// ChaCha20-Poly1305 ciphertext of the normalised value, the pseudonym as associated
    /// data. The nonce is derived from the pseudonym: one value, one ciphertext.
    pub ciphertext: Vec<u8>,
}

/// Pseudonymises with the current epoch's key; keeps the older epochs' keys still alive to
/// open their sealed values and to find a person's pseudonyms across epochs.
#[derive(Clone, Debug)]
pub struct Pseudonymiser {
    /// Sorted by epoch; the last one is current. Never empty.
    keys: Vec<EpochKey>,
}

impl Pseudonymiser {
    /// `None` when `keys` is empty.
    pub fn new(mut keys: Vec<EpochKey>) -> Option<Self> {
        keys.sort_by_key(|k| k.epoch);
        keys.dedup_by_key(|k| k.epoch);
        (!keys.is_empty()).then_some(Pseudonymiser { keys })
    }

    pub fn current_epoch(&self) -> u32 {
        self.keys.last().map_or(0, |k| k.epoch)
    }

    /// The epochs whose keys are alive, oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().map(|k| k.epoch)
    }

    /// A check value of each live epoch's key, oldest first: an HMAC of a fixed text under
    /// a domain no pseudonym uses, so it is never the pseudonym of a value and tells nothing
    /// of the key. Two vaults agree on an epoch exactly when their check values for it are
    /// equal: what a cluster's nodes compare through their shared store.
    pub fn key_checks(&self) -> Vec<(u32, String)> {
        self.keys
            .iter()
            .map(|k| {
                let mut m = <HmacSha256 as Mac>::new_from_slice(&k.pseudonym)
                    .unwrap_or_else(|_| unreachable!());
                m.update(b"\x02beffroi vault check\x00");
                let h = m.finalize().into_bytes();
                (k.epoch, data_encoding::HEXLOWER.encode(&h[..16]))
            })
            .collect()
    }

    fn key(&self, epoch: u32) -> Result<&EpochKey, PrivacyError> {
        self.keys
            .iter()
            .find(|k| k.epoch == epoch)
            .ok_or(PrivacyError::NoKey(epoch))
    }

    fn current(&self) -> &EpochKey {
        // `new` refuses an empty key list.
        self.keys.last().unwrap_or_else(|| unreachable!())
    }

    fn pseudonym_with(k: &EpochKey, domain: Domain, id: Identifier, normalised: &str) -> Pseudonym {
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(&k.pseudonym).unwrap_or_else(|_| unreachable!());
        if domain == Domain::Written {
            m.update(b"\x01written\x00");
        }
        m.update(id.as_str().as_bytes());
        m.update(&[0]);
        m.update(normalised.as_bytes());
        let h = m.finalize().into_bytes();
        let b32 = data_encoding::BASE32_NOPAD.encode(&h).to_ascii_lowercase();
        Pseudonym(format!(
            "{}:{}:{}",
            prefix(id),
            k.epoch,
            &b32[..PSEUDONYM_CHARS]
        ))
    }

    /// The pseudonym of `raw` in the current epoch.
    pub fn pseudonym(&self, id: Identifier, raw: &str) -> Pseudonym {
        Self::pseudonym_with(self.current(), Domain::Observed, id, &normalise(id, raw))
    }

    /// The pseudonyms `raw` has had in every epoch still alive, observed by devices and
    /// written by people (to find a person's data for an access or erasure request).
    pub fn pseudonyms_in_all_epochs(&self, id: Identifier, raw: &str) -> Vec<Pseudonym> {
        let n = normalise(id, raw);
        self.keys
            .iter()
            .flat_map(|k| {
                [Domain::Observed, Domain::Written].map(|d| Self::pseudonym_with(k, d, id, &n))
            })
            .collect()
    }

    /// The pseudonym of `raw` as observed by a device, and its sealed value, in the current
    /// epoch.
    pub fn seal(&self, id: Identifier, raw: &str) -> Sealed {
        self.seal_in(Domain::Observed, id, raw)
    }

    /// The pseudonym of `raw` as written by a person in free text, and its sealed value.
    /// It is unrelated to the pseudonym the same value gets from a device: typing a plate
    /// in a note must not tell its writer which sightings are that car's.
    pub fn seal_written(&self, id: Identifier, raw: &str) -> Sealed {
        self.seal_in(Domain::Written, id, raw)
    }

    fn seal_in(&self, domain: Domain, id: Identifier, raw: &str) -> Sealed {
        let k = self.current();
        let n = normalise(id, raw);
        let pseudonym = Self::pseudonym_with(k, domain, id, &n);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&k.seal));
        let nonce = nonce_for(k, &pseudonym);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: n.as_bytes(),
                    aad: pseudonym.0.as_bytes(),
                },
            )
            // Encryption fails only for messages over 256 GiB.
            .unwrap_or_default();
        Sealed {
            pseudonym,
            identifier: id,
            epoch: k.epoch,
            ciphertext,
        }
    }

    /// The (normalised) value behind a pseudonym, from its sealed form.
    pub fn open(&self, pseudonym: &str, ciphertext: &[u8]) -> Result<String, PrivacyError> {
        let (_, epoch, _) = parse_pseudonym(pseudonym)
            .ok_or_else(|| PrivacyError::NotAPseudonym(pseudonym.to_string()))?;
        let k = self.key(epoch)?;
        let p = Pseudonym(pseudonym.to_string());
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&k.seal));
        let nonce = nonce_for(k, &p);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: ciphertext,
                    aad: pseudonym.as_bytes(),
                },
            )
            .map_err(|_| PrivacyError::Tampered)?;
        String::from_utf8(plain).map_err(|_| PrivacyError::Tampered)
    }
}

fn nonce_for(k: &EpochKey, p: &Pseudonym) -> [u8; 12] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(&k.nonce).unwrap_or_else(|_| unreachable!());
    m.update(p.0.as_bytes());
    let h = m.finalize().into_bytes();
    let mut n = [0u8; 12];
    n.copy_from_slice(&h[..12]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ps(epochs: &[(u32, u8)]) -> Pseudonymiser {
        Pseudonymiser::new(
            epochs
                .iter()
                .map(|(e, b)| EpochKey::new(*e, &[*b; 32]))
                .collect(),
        )
        .expect("keys")
    }

    /// Key checks agree for the same key, differ for another, name every live epoch, and
    /// are not the pseudonym of their text in any identifier or domain.
    #[test]
    fn key_checks_tell_vaults_apart_and_are_no_pseudonym() {
        let a = ps(&[(1, 7), (2, 9)]);
        let same = ps(&[(1, 7), (2, 9)]);
        let other = ps(&[(1, 7), (2, 8)]);
        assert_eq!(a.key_checks(), same.key_checks());
        let (ca, co) = (a.key_checks(), other.key_checks());
        assert_eq!(ca.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(ca[0], co[0]);
        assert_ne!(ca[1], co[1]);
        for id in Identifier::ALL {
            for p in a.pseudonyms_in_all_epochs(id, "beffroi vault check") {
                assert!(ca.iter().all(|(_, c)| !p.0.contains(c.as_str())), "{p}");
            }
        }
    }

    #[test]
    fn same_plate_same_pseudonym_whatever_the_writing() {
        let p = ps(&[(1, 7)]);
        let a = p.pseudonym(Identifier::LicencePlate, "AB-123-CD");
        assert_eq!(a, p.pseudonym(Identifier::LicencePlate, " ab 123 cd"));
        assert_ne!(a, p.pseudonym(Identifier::LicencePlate, "AB-124-CD"));
        assert!(a.0.starts_with("plate:1:"), "{a}");
        assert!(parse_pseudonym(&a.0).is_some());
        assert!(!a.0.to_uppercase().contains("AB123CD"));
    }

    #[test]
    fn kinds_are_separated_and_phones_normalised() {
        let p = ps(&[(1, 7)]);
        assert_ne!(
            p.pseudonym(Identifier::Badge, "1234").0[6..],
            p.pseudonym(Identifier::Other, "1234").0[3..]
        );
        assert_eq!(
            p.pseudonym(Identifier::PhoneNumber, "06 12 34 56 78"),
            p.pseudonym(Identifier::PhoneNumber, "+33 6 12 34 56 78")
        );
    }

    #[test]
    fn written_and_observed_values_do_not_link() {
        let p = ps(&[(1, 7)]);
        let observed = p.seal(Identifier::LicencePlate, "AB-123-CD");
        let written = p.seal_written(Identifier::LicencePlate, "AB-123-CD");
        assert_ne!(observed.pseudonym, written.pseudonym);
        assert_eq!(
            p.open(&written.pseudonym.0, &written.ciphertext),
            Ok("AB123CD".into())
        );
        let all = p.pseudonyms_in_all_epochs(Identifier::LicencePlate, "ab 123 cd");
        assert!(all.contains(&observed.pseudonym) && all.contains(&written.pseudonym));
    }

    #[test]
    fn another_key_gives_unrelated_pseudonyms() {
        let a = ps(&[(1, 7)]).pseudonym(Identifier::LicencePlate, "AB-123-CD");
        let b = ps(&[(2, 8)]).pseudonym(Identifier::LicencePlate, "AB-123-CD");
        assert_ne!(a.0[8..], b.0[8..]);
    }

    #[test]
    fn sealed_values_open_only_with_their_epoch_key() {
        let p = ps(&[(1, 7), (2, 9)]);
        let s = p.seal(Identifier::LicencePlate, "ab-123-cd");
        assert_eq!(s.epoch, 2);
        assert_eq!(p.open(&s.pseudonym.0, &s.ciphertext), Ok("AB123CD".into()));
        let mut bad = s.ciphertext.clone();
        bad[0] ^= 1;
        assert_eq!(p.open(&s.pseudonym.0, &bad), Err(PrivacyError::Tampered));
        // After epoch 2's key is destroyed, nothing opens and the plate is unlinkable.
        let after = ps(&[(1, 7), (3, 11)]);
        assert_eq!(
            after.open(&s.pseudonym.0, &s.ciphertext),
            Err(PrivacyError::NoKey(2))
        );
        assert_ne!(
            after.pseudonym(Identifier::LicencePlate, "AB-123-CD"),
            s.pseudonym
        );
        assert_eq!(
            after
                .pseudonyms_in_all_epochs(Identifier::LicencePlate, "AB123CD")
                .len(),
            4
        );
    }

    proptest! {
        #[test]
        fn pseudonyms_parse_and_never_contain_the_value(v in "[A-Z]{2}[0-9]{3}[A-Z]{2}") {
            let p = ps(&[(4, 1)]);
            let s = p.seal(Identifier::LicencePlate, &v);
            prop_assert!(parse_pseudonym(&s.pseudonym.0).is_some());
            prop_assert!(!s.pseudonym.0.to_uppercase().contains(&v));
            prop_assert_eq!(p.open(&s.pseudonym.0, &s.ciphertext).ok(), Some(v));
        }
    }
}
