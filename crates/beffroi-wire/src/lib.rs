//! Wire formats of ingest and their validation against the territory.
//!
//! Three payload forms are decoded into [`RawRecord`]s:
//! - SenML JSON (RFC 8428), the canonical form ([`senml`]);
//! - a plain JSON form (`{"device", "time", "values"}`) ([`plain`]);
//! - the uplink event of a ChirpStack v4 LoRaWAN network server ([`chirpstack`]).
//!
//! [`validate`] turns a raw record into a core [`Observation`] or a [`Rejection`] with a
//! bounded [`RejectReason`], which the engine counts per reason.
//!
//! **Architecture invariant:** no I/O; these types never leave the ingest edge (the core
//! does not know them).

pub mod chirpstack;
pub mod media;
pub mod plain;
pub mod senml;
pub mod signed;
mod validate;

use std::borrow::Cow;

use beffroi_core::Timestamp;

pub use validate::{MAX_TEXT, Validator, validate};

/// Largest payload accepted, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest number of records in one payload.
pub const MAX_RECORDS: usize = 1000;

/// Payload format, chosen by the MQTT topic or the `format` query parameter of HTTP ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Senml,
    Json,
    Chirpstack,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Senml => "senml",
            Format::Json => "json",
            Format::Chirpstack => "chirpstack",
        }
    }
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "senml" | "senml+json" => Some(Format::Senml),
            "json" => Some(Format::Json),
            "chirpstack" | "up" => Some(Format::Chirpstack),
            _ => None,
        }
    }
}

/// How a record names its device.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceRef<'a> {
    Id(Cow<'a, str>),
    DevEui(Cow<'a, str>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum RawValue<'a> {
    Number(f64),
    Bool(bool),
    Text(Cow<'a, str>),
    /// A JSON value of a type no field can hold (object, array, null, SenML data value).
    Other(&'static str),
}

/// One decoded, not yet validated, measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct RawRecord<'a> {
    pub device: DeviceRef<'a>,
    pub field: Cow<'a, str>,
    pub value: RawValue<'a>,
    /// Event time; `None` means "when received".
    pub time: Option<Timestamp>,
}

/// Why an input was refused. Bounded: used as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Malformed,
    Oversized,
    UnknownDevice,
    UnknownField,
    WrongType,
    OutOfRange,
    BadTime,
    Overload,
    /// An unsigned message for a device whose kind requires signing.
    Unsigned,
    /// A signed envelope whose MAC does not verify (or no key is in force for its device).
    BadSignature,
    /// A signed envelope whose counter was already seen or is too old.
    Replay,
    /// On an authenticated broker, a message on one device's topic naming another device.
    TopicMismatch,
    /// An image or a video frame (SenML data value, data URI, base64 of an image or video):
    /// never an observation.
    ImageRefused,
    /// A text value longer than [`MAX_TEXT`] bytes.
    TextTooLong,
    /// A personal or sensitive text value arrived and no pseudonymisation key is loaded: it
    /// is never stored in clear.
    NoPseudonymisationKey,
    /// An event time older than its field's retention: it would be purged at the next
    /// purge, so it is never stored (nor evaluated).
    Expired,
    /// A value of a technical text field outside the field's declared `values` or
    /// `pattern` (or one that matches its pattern but carries a personal identifier): no
    /// free text gets through a declared field.
    TextNotAllowed,
}

impl RejectReason {
    pub const ALL: [RejectReason; 17] = [
        RejectReason::Malformed,
        RejectReason::Oversized,
        RejectReason::UnknownDevice,
        RejectReason::UnknownField,
        RejectReason::WrongType,
        RejectReason::OutOfRange,
        RejectReason::BadTime,
        RejectReason::Overload,
        RejectReason::Unsigned,
        RejectReason::BadSignature,
        RejectReason::Replay,
        RejectReason::TopicMismatch,
        RejectReason::ImageRefused,
        RejectReason::TextTooLong,
        RejectReason::NoPseudonymisationKey,
        RejectReason::Expired,
        RejectReason::TextNotAllowed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Oversized => "oversized",
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::BadTime => "bad_time",
            RejectReason::Overload => "overload",
            RejectReason::Unsigned => "unsigned",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::Replay => "replay",
            RejectReason::TopicMismatch => "topic_mismatch",
            RejectReason::ImageRefused => "image_refused",
            RejectReason::TextTooLong => "text_too_long",
            RejectReason::NoPseudonymisationKey => "no_pseudonymisation_key",
            RejectReason::Expired => "expired",
            RejectReason::TextNotAllowed => "text_not_allowed",
        }
    }
    /// Position in [`ALL`](Self::ALL) (the order of declaration): counters are indexed by it.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A refused input with a human-readable detail (never containing a personal value).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Context of a payload: the device named by the transport (MQTT topic, HTTP path), if any.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    pub device_hint: Option<&'a str>,
    pub received: Timestamp,
}

/// Decodes a payload of the given format into raw records.
pub fn decode<'a>(
    format: Format,
    payload: &'a [u8],
    cx: Context<'_>,
) -> Result<Vec<RawRecord<'a>>, Rejection> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Rejection::new(
            RejectReason::Oversized,
            format!("{} bytes, limit {MAX_PAYLOAD}", payload.len()),
        ));
    }
    let records = match format {
        Format::Senml => senml::decode(payload, cx)?,
        Format::Json => plain::decode(payload, cx)?,
        Format::Chirpstack => chirpstack::decode(payload)?,
    };
    if records.len() > MAX_RECORDS {
        return Err(Rejection::new(
            RejectReason::Oversized,
            format!("{} records, limit {MAX_RECORDS}", records.len()),
        ));
    }
    Ok(records)
}

pub(crate) fn malformed(e: impl std::fmt::Display) -> Rejection {
    Rejection::new(RejectReason::Malformed, redact_quoted(&e.to_string()))
}

/// A parser's message with every quoted value replaced by `…`: serde quotes the value it
/// choked on (`invalid type: string "AB-123-CD"`, ``invalid type: integer `12345678` ``),
/// which may be personal. Double-quoted spans are values; a backtick span is a value when
/// serde names its type just before (`integer`, `floating point`, `string`, `character`),
/// else it is a field name of the format and kept. A backslash escapes the next character
/// inside a double-quoted span, so `\"` does not end it.
pub fn redact_quoted(msg: &str) -> String {
    const VALUE_TYPES: [&str; 4] = ["integer ", "floating point ", "string ", "character "];
    let mut out = String::with_capacity(msg.len());
    let mut inside: Option<char> = None;
    let mut keep = false;
    let mut escaped = false;
    for c in msg.chars() {
        match inside {
            None => {
                if c == '"' || (c == '`' && VALUE_TYPES.iter().any(|t| out.ends_with(t))) {
                    inside = Some(c);
                    keep = false;
                } else if c == '`' {
                    inside = Some(c);
                    keep = true;
                }
                out.push(c);
            }
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => {
                if !keep {
                    out.push('…');
                }
                out.push(c);
                inside = None;
            }
            Some(_) if keep => out.push(c),
            Some(_) => {}
        }
    }
    if inside.is_some() && !keep {
        out.push('…');
    }
    out
}

/// Parses an RFC 3339 timestamp (`2026-11-26T12:00:00Z`, offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    // humantime only takes `Z`; normalise an explicit offset by hand.
    let s = s.trim();
    let (base, offset_min) = split_offset(s)?;
    let t = humantime::parse_rfc3339_weak(base).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    let ms = i64::try_from(ms).ok()?;
    Some(Timestamp(ms - offset_min * 60_000))
}

fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(b) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return Some((b, 0));
    }
    let bytes = s.as_bytes();
    if bytes.len() > 6 {
        let i = bytes.len() - 6;
        if (bytes[i] == b'+' || bytes[i] == b'-') && bytes[i + 3] == b':' {
            let h: i64 = s[i + 1..i + 3].parse().ok()?;
            let m: i64 = s[i + 4..].parse().ok()?;
            let sign = if bytes[i] == b'-' { -1 } else { 1 };
            return Some((&s[..i], sign * (h * 60 + m)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_messages_never_quote_values() {
        for (msg, secret) in [
            (
                r#"invalid type: string "AB-123-CD", expected f64"#,
                "AB-123-CD",
            ),
            (
                "invalid type: integer `12345678`, expected a string",
                "12345678",
            ),
            (r#"unknown field "a\"b BADGE-7", expected"#, "BADGE-7"),
            (r#"unterminated "0612345678"#, "0612345678"),
        ] {
            let r = redact_quoted(msg);
            assert!(!r.contains(secret), "{msg} → {r}");
            assert!(r.contains('…'), "{r}");
        }
        assert_eq!(
            redact_quoted("expected value at line 1 column 9"),
            "expected value at line 1 column 9"
        );
    }

    #[test]
    fn all_lists_the_reasons_in_declaration_order() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{}", r.as_str());
        }
    }

    #[test]
    fn rfc3339_with_offsets() {
        assert_eq!(
            parse_rfc3339("2026-11-26T12:00:00Z"),
            Some(Timestamp(1_795_694_400_000))
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T13:00:00+01:00"),
            Some(Timestamp(1_795_694_400_000))
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T12:00:00.250Z"),
            Some(Timestamp(1_795_694_400_250))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn a_parser_error_never_quotes_the_value_it_choked_on() {
        let cx = Context::default();
        for (format, payload) in [
            (Format::Json, r#"{"device":"d","values":"AB-123-CD"}"#),
            (
                Format::Json,
                r#"{"device":"d","values":{"plate":"AB-123-CD"},"x":"AB-123-CD"}"#,
            ),
            (
                Format::Senml,
                r#"[{"n":"d/plate","vs":"AB-123-CD","v":"AB-123-CD"}]"#,
            ),
            (Format::Senml, r#"{"n":"AB-123-CD"}"#),
            (Format::Chirpstack, r#"{"deviceInfo":"AB-123-CD"}"#),
        ] {
            let e = decode(format, payload.as_bytes(), cx).expect_err(payload);
            assert!(!e.detail.contains("AB-123-CD"), "{payload}: {}", e.detail);
        }
        assert_eq!(
            redact_quoted(r#"invalid type: string "06 12 34 56 78", expected a map"#),
            r#"invalid type: string "…", expected a map"#
        );
    }
}
