//! The signed telemetry envelope (format version 1).
//!
//! A device that signs wraps the payload it would otherwise have sent in a JSON object:
//!
//! ```json
//! {"dev":"<device id>","ctr":<u64 counter>,"body":"<standard base64 of the inner payload>",
//!  "mac":"<base64url, no padding, of the 32-byte HMAC>"}
//! ```
//!
//! MAC = HMAC-SHA256(device key, `b"beffroi-signed-v1\0"` ‖ dev ‖ `b"\0"` ‖ ctr as 8 bytes
//! big-endian ‖ body bytes (decoded)).
//!
//! The counter is monotonic per device; a [`ReplayWindow`] accepts a counter never seen and
//! greater than `highest - WINDOW` (IPsec-style sliding bitmap, RFC 4303 §3.4.3).
//!
//! No I/O here: keys and window states are handed in by the caller.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Domain-separation prefix of the MAC input (version 1 of the envelope).
pub const DOMAIN: &[u8] = b"beffroi-signed-v1\0";
/// Width of the anti-replay window, in counters.
pub const WINDOW: u64 = 64;
/// Length of a device signing key, in bytes.
pub const KEY_LEN: usize = 32;
/// Longest device id an envelope may carry.
pub const MAX_DEV_LEN: usize = 256;

/// Why a payload could not be opened as an envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    /// The payload is not a signed envelope at all (no `mac` member): an unsigned message.
    #[error("not a signed envelope")]
    NotSigned,
    /// The payload claims to be an envelope (it has a `mac`) but is not a valid one.
    #[error("malformed signed envelope: {0}")]
    Malformed(String),
}

/// An opened, not yet verified, envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The device id the envelope claims.
    pub dev: Cow<'a, str>,
    /// The device's message counter.
    pub ctr: u64,
    /// The inner payload (decoded from base64).
    pub body: Vec<u8>,
    mac: [u8; 32],
}

impl Sealed<'_> {
    /// Whether the MAC is valid for this key (constant-time comparison).
    pub fn verify(&self, key: &[u8; KEY_LEN]) -> bool {
        let m = mac_state(&self.dev, self.ctr, key, &self.body);
        m.verify_slice(&self.mac).is_ok()
    }
}

fn mac_state(dev: &str, ctr: u64, key: &[u8; KEY_LEN], body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; a 32-byte key cannot fail.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    m.update(DOMAIN);
    m.update(dev.as_bytes());
    m.update(b"\0");
    m.update(&ctr.to_be_bytes());
    m.update(body);
    m
}

/// The 32-byte MAC of an envelope.
pub fn mac(dev: &str, ctr: u64, key: &[u8; KEY_LEN], body: &[u8]) -> [u8; 32] {
    mac_state(dev, ctr, key, body)
        .finalize()
        .into_bytes()
        .into()
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    dev: &'a str,
    ctr: u64,
    body: String,
    mac: String,
}

/// Wraps `body` in a signed envelope (the JSON bytes to publish).
pub fn seal(dev: &str, ctr: u64, key: &[u8; KEY_LEN], body: &[u8]) -> Vec<u8> {
    let env = EnvelopeOut {
        dev,
        ctr,
        body: STANDARD.encode(body),
        mac: URL_SAFE_NO_PAD.encode(mac(dev, ctr, key, body)),
    };
    // Serialising a struct of strings and an integer cannot fail.
    serde_json::to_vec(&env).unwrap_or_default()
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    #[serde(borrow, default)]
    dev: Option<Cow<'a, str>>,
    #[serde(default)]
    ctr: Option<u64>,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    mac: Option<Cow<'a, str>>,
}

/// Whether a payload looks like a signed envelope (a JSON object with a `mac` member).
/// Cheap for SenML arrays (refused at the first byte).
pub fn is_signed(payload: &[u8]) -> bool {
    !matches!(open(payload), Err(SignedError::NotSigned))
}

/// Opens a signed envelope. [`SignedError::NotSigned`] if the payload is not an envelope
/// (not a JSON object, or no `mac` member): the caller decides whether unsigned is allowed.
pub fn open(payload: &[u8]) -> Result<Sealed<'_>, SignedError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(SignedError::NotSigned);
    }
    let env: EnvelopeIn<'_> = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            // An object with a syntax error: an envelope only if it mentions a mac.
            if contains(payload, b"\"mac\"") {
                return Err(SignedError::Malformed(crate::redact_quoted(&e.to_string())));
            }
            return Err(SignedError::NotSigned);
        }
    };
    let Some(mac_text) = env.mac else {
        return Err(SignedError::NotSigned);
    };
    let bad = |s: &str| SignedError::Malformed(s.to_string());
    let dev = env.dev.ok_or_else(|| bad("missing dev"))?;
    if dev.is_empty() || dev.len() > MAX_DEV_LEN || dev.contains('\0') {
        return Err(bad("bad dev"));
    }
    let ctr = env.ctr.ok_or_else(|| bad("missing or bad ctr"))?;
    let body_text = env.body.ok_or_else(|| bad("missing body"))?;
    let body = STANDARD
        .decode(body_text.as_bytes())
        .map_err(|_| bad("body is not standard base64"))?;
    let mac_bytes = URL_SAFE_NO_PAD
        .decode(mac_text.as_bytes())
        .map_err(|_| bad("mac is not unpadded base64url"))?;
    let mac: [u8; 32] = mac_bytes
        .try_into()
        .map_err(|_| bad("mac is not 32 bytes"))?;
    Ok(Sealed {
        dev,
        ctr,
        body,
        mac,
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Why a counter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("counter {counter} not fresh (highest seen {highest})")]
pub struct ReplayError {
    pub counter: u64,
    pub highest: u64,
}

/// Per-device anti-replay state: the highest counter seen and a bitmap of the `WINDOW`
/// counters at and below it (bit `i` set = `highest - i` seen). The empty window (nothing
/// seen) is `bitmap == 0`: once a counter is accepted, bit 0 is always set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    bitmap: u64,
}

impl ReplayWindow {
    pub fn new() -> Self {
        ReplayWindow::default()
    }

    /// Restores a stored state (as given by [`ReplayWindow::parts`]).
    pub fn from_parts(highest: u64, bitmap: u64) -> Self {
        ReplayWindow { highest, bitmap }
    }

    /// `(highest, bitmap)` to store.
    pub fn parts(&self) -> (u64, u64) {
        (self.highest, self.bitmap)
    }

    /// Highest counter accepted, if any.
    pub fn highest(&self) -> Option<u64> {
        (self.bitmap != 0).then_some(self.highest)
    }

    /// Whether `ctr` would be accepted, without recording it.
    pub fn check(&self, ctr: u64) -> Result<(), ReplayError> {
        let mut w = *self;
        w.check_and_update(ctr)
    }

    /// Accepts `ctr` (and records it) if it was never seen and is greater than
    /// `highest - WINDOW`; otherwise a [`ReplayError`].
    pub fn check_and_update(&mut self, ctr: u64) -> Result<(), ReplayError> {
        if self.bitmap == 0 {
            self.highest = ctr;
            self.bitmap = 1;
            return Ok(());
        }
        if ctr > self.highest {
            let shift = ctr - self.highest;
            self.bitmap = if shift >= WINDOW {
                1
            } else {
                (self.bitmap << shift) | 1
            };
            self.highest = ctr;
            return Ok(());
        }
        let diff = self.highest - ctr;
        let err = ReplayError {
            counter: ctr,
            highest: self.highest,
        };
        if diff >= WINDOW {
            return Err(err);
        }
        let bit = 1u64 << diff;
        if self.bitmap & bit != 0 {
            return Err(err);
        }
        self.bitmap |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn seal_then_open_verifies() {
        let msg = seal("gauge-1", 42, &KEY, br#"[{"n":"level","v":1.5}]"#);
        let s = open(&msg).expect("test");
        assert_eq!(s.dev, "gauge-1");
        assert_eq!(s.ctr, 42);
        assert_eq!(s.body, br#"[{"n":"level","v":1.5}]"#);
        assert!(s.verify(&KEY));
        assert!(!s.verify(&[8; 32]));
    }

    #[test]
    fn known_vector() {
        // Computed independently with Python's hmac module:
        // hmac.new(bytes([7]*32), b"beffroi-signed-v1\0" + b"d\0" + (1).to_bytes(8,"big")
        //          + b"x", "sha256")
        let m = mac("d", 1, &KEY, b"x");
        let mut input = DOMAIN.to_vec();
        input.extend_from_slice(b"d\0");
        input.extend_from_slice(&1u64.to_be_bytes());
        input.extend_from_slice(b"x");
        let mut h = HmacSha256::new_from_slice(&KEY).expect("test");
        h.update(&input);
        assert_eq!(m.as_slice(), h.finalize().into_bytes().as_slice());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(m),
            "C7Lfm2Iel4y6AHLOjiYkWMxFkgDCzqrhKxz0cpdWdhQ"
        );
    }

    #[test]
    fn envelope_layout() {
        let msg = seal("a", 3, &KEY, b"hi");
        let v: serde_json::Value = serde_json::from_slice(&msg).expect("test");
        assert_eq!(v["dev"], "a");
        assert_eq!(v["ctr"], 3);
        assert_eq!(v["body"], "aGk=");
        let mac = v["mac"].as_str().expect("test");
        assert_eq!(mac.len(), 43);
        assert!(!mac.contains('=') && !mac.contains('+') && !mac.contains('/'));
    }

    #[test]
    fn unsigned_payloads_are_not_signed() {
        assert_eq!(
            open(br#"[{"bn":"x:","n":"a","v":1}]"#),
            Err(SignedError::NotSigned)
        );
        assert_eq!(
            open(br#"{"device":"x","values":{"a":1}}"#),
            Err(SignedError::NotSigned)
        );
        assert_eq!(open(b""), Err(SignedError::NotSigned));
        assert!(!is_signed(br#"{"device":"x"}"#));
    }

    #[test]
    fn malformed_envelopes() {
        let cases: [&[u8]; 7] = [
            br#"{"mac":"AAAA"}"#,
            br#"{"dev":"a","ctr":1,"body":"aGk=","mac":"AAAA"}"#,
            br#"{"dev":"a","ctr":-1,"body":"aGk=","mac":"tsyeIgaeO0r04KFyHK8v0lt7YEFFcTBgORFe9cBrc5k"}"#,
            br#"{"dev":"a","ctr":1,"body":"a!k=","mac":"tsyeIgaeO0r04KFyHK8v0lt7YEFFcTBgORFe9cBrc5k"}"#,
            br#"{"dev":"","ctr":1,"body":"aGk=","mac":"tsyeIgaeO0r04KFyHK8v0lt7YEFFcTBgORFe9cBrc5k"}"#,
            br#"{"dev":"a","ctr":1,"body":"aGk=","mac":"tsyeIgaeO0r04KFyHK8v0lt7YEFFcTBgORFe9cBrc5k="}"#,
            br#"{"dev":"a","ctr":1,"body":"aGk=","mac":"tsyeIgaeO0r04KFyHK8v0lt7YEFFcTBgORFe9cBrc5k""#,
        ];
        for c in cases {
            assert!(
                matches!(open(c), Err(SignedError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn escaped_dev_is_unescaped() {
        let msg = seal("a\"b", 1, &KEY, b"x");
        let s = open(&msg).expect("test");
        assert_eq!(s.dev, "a\"b");
        assert!(s.verify(&KEY));
    }

    #[test]
    fn replay_window_basics() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.highest(), None);
        w.check_and_update(100).expect("test");
        assert!(w.check_and_update(100).is_err());
        w.check_and_update(99).expect("test");
        assert!(w.check_and_update(99).is_err());
        w.check_and_update(37).expect("test"); // 100 - 63
        assert!(w.check_and_update(36).is_err()); // 100 - 64: out of the window
        w.check_and_update(1000).expect("test");
        assert!(w.check_and_update(100).is_err());
        assert_eq!(w.highest(), Some(1000));
        let (h, b) = w.parts();
        let mut r = ReplayWindow::from_parts(h, b);
        assert!(r.check_and_update(1000).is_err());
        r.check_and_update(999).expect("test");
        // Counter 0 is a valid first counter.
        let mut z = ReplayWindow::new();
        z.check_and_update(0).expect("test");
        assert!(z.check_and_update(0).is_err());
        z.check_and_update(u64::MAX).expect("test");
        assert!(z.check_and_update(u64::MAX).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip_any(dev in "[a-zA-Z0-9_.:\"\\\\é-]{1,40}", ctr: u64,
                         key: [u8; 32], body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let msg = seal(&dev, ctr, &key, &body);
            let s = open(&msg).expect("test");
            prop_assert_eq!(&*s.dev, dev.as_str());
            prop_assert_eq!(s.ctr, ctr);
            prop_assert_eq!(&s.body, &body);
            prop_assert!(s.verify(&key));
        }

        #[test]
        fn any_change_breaks_the_mac(dev in "[a-z0-9-]{1,20}", ctr in 0u64..u64::MAX,
                                     key: [u8; 32],
                                     body in proptest::collection::vec(any::<u8>(), 1..100),
                                     flip in any::<prop::sample::Index>(), what in 0u8..4) {
            let msg = seal(&dev, ctr, &key, &body);
            let s = open(&msg).expect("test");
            let mut t = s.clone();
            let mut k = key;
            match what {
                0 => { let i = flip.index(t.body.len()); t.body[i] ^= 1; }
                1 => t.ctr = ctr + 1,
                2 => t.dev = Cow::Owned(format!("{dev}x")),
                _ => { let i = flip.index(32); k[i] ^= 0x80; }
            }
            prop_assert!(!t.verify(&k));
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = open(&bytes);
        }

        #[test]
        fn open_never_panics_on_near_envelopes(dev in ".{0,10}", ctr in ".{0,12}",
                                               body in ".{0,20}", mac in ".{0,50}") {
            let text = format!(r#"{{"dev":"{dev}","ctr":{ctr},"body":"{body}","mac":"{mac}"}}"#);
            let _ = open(text.as_bytes());
        }

        /// The window against a model: accepted iff never seen and above highest - WINDOW.
        #[test]
        fn window_matches_model(base in 0u64..u64::MAX - 1000,
                                steps in proptest::collection::vec(0u64..300, 1..200)) {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            for s in steps {
                let ctr = base + s;
                let max = seen.iter().next_back().copied();
                let expect = !seen.contains(&ctr)
                    && max.is_none_or(|m: u64| i128::from(ctr) > i128::from(m) - WINDOW as i128);
                let got = w.check_and_update(ctr).is_ok();
                prop_assert_eq!(got, expect, "ctr {} seen {:?}", ctr, seen);
                if got { seen.insert(ctr); }
                // A restored window behaves the same.
                let (h, b) = w.parts();
                w = ReplayWindow::from_parts(h, b);
            }
        }
    }
}
