//! The exchange between two instances, version 1.
//!
//! The sender posts a [`Batch`] to the partner's `POST /federation/v1/inbox`, with two
//! headers: `X-Beffroi-Partner` (its name) and `X-Beffroi-Signature`, the base64 Ed25519
//! signature of [`signed_bytes`]: a domain tag, the sender's name, the receiver's name and
//! the body. The receiver checks it with the sender's pinned key, so a batch cannot be
//! forged, altered, or replayed to another partner; it answers an [`Ack`] with the highest
//! sequence number it has stored. Sequence numbers count each sender's messages to one
//! receiver from 1: the receiver applies a message only if it is the next one
//! ([`next_in_order`]), so a batch sent twice is applied once and a gap is never jumped.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The largest batch body read.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// The most messages in one batch.
pub const MAX_MESSAGES: usize = 500;
/// The longest text field.
pub const MAX_TEXT: usize = 300;
pub const HEADER_PARTNER: &str = "x-beffroi-partner";
pub const HEADER_SIGNATURE: &str = "x-beffroi-signature";
const DOMAIN: &[u8] = b"beffroi-federation-v1\n";

/// An incident as a partner sees it: codes, times, the commune, and what the agreement's
/// fields add. No identifier of the sender's devices, no note, no operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedIncident {
    /// The sender's reference for the incident (`INC-42`): updates name it.
    pub reference: String,
    /// The version: the incident's last change, in ms since the epoch.
    pub version: i64,
    pub category: String,
    /// `info`, `minor`, `major`, `critical`.
    pub severity: String,
    /// `new`, `acknowledged`, `in_progress`, `resolved`, `closed`.
    pub status: String,
    pub opened_at: i64,
    /// The commune's INSEE code, when the territory has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insee: Option<String>,
    pub commune: String,
    /// `[longitude, latitude]`: the site's (field `position`) or the commune's centre.
    pub position: [f64; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The TLP marking the receiver must respect (`clear`, `green`, `amber`, `red`).
    pub tlp: String,
}

impl SharedIncident {
    /// Whether the incident ended at the sender (resolved or closed).
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "resolved" | "closed")
    }
}

/// A note an operator of the receiver's partner wrote on one of the receiver's own
/// incidents (the agreement's `notes`): scrubbed, its pseudonyms re-keyed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedNote {
    /// The receiver's reference of its incident (`INC-42`), as it shared it.
    pub reference: String,
    pub at: i64,
    pub text: String,
}

/// One message of a batch: a shared incident's change, or a note back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<SharedIncident>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<SharedNote>,
}

/// What a message carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Incident(SharedIncident),
    Note(SharedNote),
}

impl Message {
    pub fn new(seq: u64, content: Content) -> Message {
        match content {
            Content::Incident(i) => Message {
                seq,
                incident: Some(i),
                note: None,
            },
            Content::Note(n) => Message {
                seq,
                incident: None,
                note: Some(n),
            },
        }
    }

    /// What the message carries (a reader has checked that it carries exactly one).
    pub fn content(&self) -> Option<Content> {
        match (&self.incident, &self.note) {
            (Some(i), None) => Some(Content::Incident(i.clone())),
            (None, Some(n)) => Some(Content::Note(n.clone())),
            _ => None,
        }
    }
}

/// What a sender posts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub from: String,
    pub to: String,
    pub sent_at: i64,
    pub messages: Vec<Message>,
}

/// What the receiver answers: the highest sequence number it has stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub acked: u64,
}

/// Why a batch is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BatchError {
    #[error("the batch is larger than {MAX_BATCH_BYTES} bytes")]
    TooLarge,
    #[error("line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("messages[{index}].{field}: {reason}")]
    Field {
        index: usize,
        field: &'static str,
        reason: &'static str,
    },
    #[error("more than {MAX_MESSAGES} messages")]
    TooMany,
    #[error("sequence numbers must increase by one within a batch (messages[{0}])")]
    OutOfOrder(usize),
}

/// The bytes a batch's signature covers.
pub fn signed_bytes(from: &str, to: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + from.len() + to.len() + body.len() + 2);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(from.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(to.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// The `X-Beffroi-Signature` of a body sent by `from` to `to`.
pub fn sign(key: &SigningKey, from: &str, to: &str, body: &[u8]) -> String {
    let sig = key.sign(&signed_bytes(from, to, body));
    base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
}

/// Whether `signature` is `from`'s over a body sent to `to`.
pub fn verify(key: &VerifyingKey, from: &str, to: &str, body: &[u8], signature: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(bytes) else {
        return false;
    };
    key.verify(
        &signed_bytes(from, to, body),
        &Signature::from_bytes(&bytes),
    )
    .is_ok()
}

fn text_ok(s: &str) -> bool {
    s.len() <= MAX_TEXT && !s.chars().any(char::is_control)
}

fn code_ok(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Reads a batch from a partner (untrusted), checking every field.
pub fn parse_batch(body: &[u8]) -> Result<Batch, BatchError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge);
    }
    let b: Batch = serde_json::from_slice(body).map_err(|e| BatchError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    if b.messages.len() > MAX_MESSAGES {
        return Err(BatchError::TooMany);
    }
    for (index, m) in b.messages.iter().enumerate() {
        let bad = |field: &'static str, reason: &'static str| BatchError::Field {
            index,
            field,
            reason,
        };
        if index > 0 && m.seq != b.messages[index - 1].seq.saturating_add(1) {
            return Err(BatchError::OutOfOrder(index));
        }
        if m.seq == 0 {
            return Err(bad("seq", "starts at 1"));
        }
        let i = match (&m.incident, &m.note) {
            (Some(i), None) => i,
            (None, Some(n)) => {
                if n.reference.is_empty()
                    || !text_ok(&n.reference)
                    || n.text.trim().is_empty()
                    || !text_ok(&n.text)
                {
                    return Err(bad(
                        "note",
                        "a reference and a text of 1 to 300 bytes, no control character",
                    ));
                }
                continue;
            }
            _ => {
                return Err(bad(
                    "incident",
                    "a message carries an incident or a note, one of them",
                ));
            }
        };
        if i.reference.is_empty() || !text_ok(&i.reference) || i.reference.contains(['/', '@']) {
            return Err(bad(
                "incident.reference",
                "1 to 300 characters, no control, `/` or `@`",
            ));
        }
        if !code_ok(&i.category) {
            return Err(bad("incident.category", "a code: a-z, 0-9, `-`, `_`"));
        }
        if beffroi_core::Severity::parse(&i.severity).is_none() {
            return Err(bad("incident.severity", "info, minor, major or critical"));
        }
        if !matches!(
            i.status.as_str(),
            "new" | "acknowledged" | "in_progress" | "resolved" | "closed"
        ) {
            return Err(bad(
                "incident.status",
                "new, acknowledged, in_progress, resolved or closed",
            ));
        }
        if crate::Tlp::parse(&i.tlp).is_none() {
            return Err(bad("incident.tlp", "clear, green, amber or red"));
        }
        let [lon, lat] = i.position;
        if !(lon.is_finite()
            && lat.is_finite()
            && (-180.0..=180.0).contains(&lon)
            && (-90.0..=90.0).contains(&lat))
        {
            return Err(bad("incident.position", "[longitude, latitude] in degrees"));
        }
        if !text_ok(&i.commune)
            || i.title.as_deref().is_some_and(|t| !text_ok(t))
            || i.site.as_deref().is_some_and(|t| !text_ok(t))
        {
            return Err(bad(
                "incident",
                "a text over 300 bytes or with a control character",
            ));
        }
        if i.insee
            .as_deref()
            .is_some_and(|c| c.len() != 5 || !c.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(bad("incident.insee", "five letters or digits"));
        }
    }
    Ok(b)
}

/// The messages of `batch` a receiver whose highest stored sequence number is `last`
/// applies, in order: those after `last`, as long as they follow without a gap. A
/// message at or before `last` was applied already (the batch was sent again); a gap
/// means the sender must send from `last + 1`, which the [`Ack`] tells it.
pub fn next_in_order(last: u64, batch: &Batch) -> &[Message] {
    let start = batch
        .messages
        .iter()
        .position(|m| m.seq > last)
        .unwrap_or(batch.messages.len());
    let rest = &batch.messages[start..];
    match rest.first() {
        Some(m) if m.seq == last + 1 => rest,
        _ => &[],
    }
}
