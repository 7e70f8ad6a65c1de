//! Indicators pulled from a partner's TAXII collection: the envelope read from
//! untrusted JSON, its indicators checked one by one and reduced to what the platform
//! acts on (identifiers, validity, revocation, TLP, network addresses).
//!
//! Tolerant where STIX and TAXII ask a consumer to be: unknown properties and objects
//! of other types are passed over (counted in [`PulledEnvelope::other_objects`]). Strict
//! where it matters: an indicator that breaks a rule the platform relies on is set
//! aside in [`PulledEnvelope::rejected`] with the reason, and the others are kept; a
//! document that is not an envelope is refused whole with the line and column.
//!
//! Limits: [`MAX_ENVELOPE_BYTES`] of JSON, [`MAX_OBJECTS`] objects (counted while
//! reading, so memory stays bounded), JSON nesting 128 levels (serde_json's limit),
//! and the pattern reader's own limits. A partner's `name`, `description` and any other
//! free text are never kept.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use thiserror::Error;

use crate::id::{IdError, StixId};
use crate::pattern::{NetworkPattern, PatternError, read_network_pattern};
use crate::stix::Tlp;
use crate::time::{ReadTime, TimestampError, parse_timestamp};

/// The largest envelope read.
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024 * 1024;
/// The most objects read from one envelope.
pub const MAX_OBJECTS: usize = 10_000;
/// The longest `next` value kept.
const MAX_NEXT_BYTES: usize = 1024;

/// What an envelope held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledEnvelope {
    pub more: bool,
    /// The partner's cursor for the next page, passed back as is.
    pub next: Option<String>,
    pub indicators: Vec<PulledIndicator>,
    pub rejected: Vec<RejectedObject>,
    /// Objects of other types, passed over.
    pub other_objects: usize,
}

/// One version of a partner's indicator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledIndicator {
    pub id: StixId,
    pub created_by_ref: Option<StixId>,
    /// The version (`modified`).
    pub modified: ReadTime,
    pub valid_from: ReadTime,
    pub valid_until: Option<ReadTime>,
    pub revoked: bool,
    pub pattern_type: String,
    pub pattern: String,
    /// What a STIX pattern says about addresses; `None` for another pattern language.
    pub network: Option<NetworkPattern>,
    /// The most restrictive TLP 1.0 marking among `object_marking_refs`, if any.
    pub tlp: Option<Tlp>,
    /// Markings other than the four TLP 1.0 ones (TLP 2.0, statements…), by
    /// identifier: a caller that does not know them should treat the indicator as
    /// restricted.
    pub other_markings: Vec<StixId>,
}

/// An object set aside, with its place in the envelope and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedObject {
    /// Its index in `objects`.
    pub index: usize,
    /// Its `id` when it had a readable one (cut to 300 characters).
    pub id: Option<String>,
    pub error: IndicatorError,
}

/// Why a whole envelope was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("the envelope is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("not a TAXII envelope: the document is not a JSON object")]
    NotAnObject,
    #[error("not a TAXII envelope at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
}

/// Why one indicator was set aside.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum IndicatorError {
    #[error("not an indicator object: {0}")]
    Shape(String),
    #[error("spec_version must be 2.1")]
    SpecVersion,
    #[error("{field}: {error}")]
    Id { field: &'static str, error: IdError },
    #[error("id: an indicator's identifier starts with indicator--")]
    IdType,
    #[error("{field}: {error}")]
    Time {
        field: &'static str,
        error: TimestampError,
    },
    #[error("valid_until must be later than valid_from")]
    ValidityOrder,
    #[error("pattern: {0}")]
    Pattern(PatternError),
}

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(default)]
    more: bool,
    #[serde(default)]
    next: Option<String>,
    #[serde(default, deserialize_with = "bounded_objects")]
    objects: Vec<serde_json::Value>,
}

fn bounded_objects<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<serde_json::Value>, D::Error> {
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<serde_json::Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX_OBJECTS} objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut objects = Vec::new();
            while let Some(object) = seq.next_element::<serde_json::Value>()? {
                if objects.len() == MAX_OBJECTS {
                    return Err(serde::de::Error::custom(format_args!(
                        "more than {MAX_OBJECTS} objects"
                    )));
                }
                objects.push(object);
            }
            Ok(objects)
        }
    }
    deserializer.deserialize_seq(Bounded)
}

#[derive(Deserialize)]
struct RawIndicator {
    id: String,
    spec_version: String,
    modified: String,
    pattern: String,
    pattern_type: String,
    valid_from: String,
    #[serde(default)]
    valid_until: Option<String>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    created_by_ref: Option<String>,
    #[serde(default)]
    object_marking_refs: Vec<String>,
}

/// Reads a TAXII 2.1 envelope from a partner (see the module documentation).
pub fn read_envelope(bytes: &[u8]) -> Result<PulledEnvelope, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: MAX_ENVELOPE_BYTES,
        });
    }
    // serde would also take a JSON array for the envelope's fields: only an object is.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(EnvelopeError::NotAnObject);
    }
    let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut pulled = PulledEnvelope {
        more: raw.more,
        next: raw
            .next
            .filter(|n| !n.is_empty() && n.len() <= MAX_NEXT_BYTES),
        indicators: Vec::new(),
        rejected: Vec::new(),
        other_objects: 0,
    };
    for (index, object) in raw.objects.into_iter().enumerate() {
        if object.get("type").and_then(|t| t.as_str()) != Some("indicator") {
            pulled.other_objects += 1;
            continue;
        }
        let id = object
            .get("id")
            .and_then(|i| i.as_str())
            .map(|i| i.chars().take(300).collect());
        match read_indicator(object) {
            Ok(indicator) => pulled.indicators.push(indicator),
            Err(error) => pulled.rejected.push(RejectedObject { index, id, error }),
        }
    }
    Ok(pulled)
}

fn read_indicator(object: serde_json::Value) -> Result<PulledIndicator, IndicatorError> {
    let raw: RawIndicator =
        serde_json::from_value(object).map_err(|e| IndicatorError::Shape(e.to_string()))?;
    if raw.spec_version != "2.1" {
        return Err(IndicatorError::SpecVersion);
    }
    let id = StixId::parse(&raw.id).map_err(|error| IndicatorError::Id { field: "id", error })?;
    if id.object_type() != "indicator" {
        return Err(IndicatorError::IdType);
    }
    let created_by_ref = raw
        .created_by_ref
        .as_deref()
        .map(StixId::parse)
        .transpose()
        .map_err(|error| IndicatorError::Id {
            field: "created_by_ref",
            error,
        })?;
    let time = |field: &'static str, text: &str| {
        parse_timestamp(text).map_err(|error| IndicatorError::Time { field, error })
    };
    let modified = time("modified", &raw.modified)?;
    let valid_from = time("valid_from", &raw.valid_from)?;
    let valid_until = raw
        .valid_until
        .as_deref()
        .map(|v| time("valid_until", v))
        .transpose()?;
    if valid_until.is_some_and(|until| until <= valid_from) {
        return Err(IndicatorError::ValidityOrder);
    }
    let network = if raw.pattern_type == "stix" {
        Some(read_network_pattern(&raw.pattern).map_err(IndicatorError::Pattern)?)
    } else {
        None
    };
    let mut tlp = None;
    let mut other_markings = Vec::new();
    for marking in &raw.object_marking_refs {
        match Tlp::from_marking_id(marking) {
            Some(level) => tlp = tlp.max(Some(level)),
            None => {
                other_markings.push(StixId::parse(marking).map_err(|error| IndicatorError::Id {
                    field: "object_marking_refs",
                    error,
                })?)
            }
        }
    }
    Ok(PulledIndicator {
        id,
        created_by_ref,
        modified,
        valid_from,
        valid_until,
        revoked: raw.revoked,
        pattern_type: raw.pattern_type,
        pattern: raw.pattern,
        network,
        tlp,
        other_markings,
    })
}
