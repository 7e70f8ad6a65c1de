//! STIX 2.1 and TAXII 2.1, the cyber-threat-intelligence formats, at the edge.
//!
//! What it models:
//! - [`export`]: the crate's own input model ([`export::CyberFinding`],
//!   [`export::Producer`]) and [`export::export_findings`], which writes the STIX 2.1
//!   objects of [`stix`] for a territory's cyber incidents: its `identity`, an
//!   `indicator` of the attack's source addresses, the ATT&CK for ICS technique as an
//!   `attack-pattern`, a `sighting` per incident, an `indicates` relationship, and the
//!   predefined TLP 1.0 `marking-definition`s. Identifiers are UUIDv5 of stable keys,
//!   so an export repeated gives the same objects, and an incident updated gives new
//!   versions (same `id`, later `modified`) of the same objects.
//! - [`taxii`]: the TAXII 2.1 resources (discovery, API root, collections, manifest,
//!   envelope, versions, status, error) and the media types and headers.
//! - [`query`] and [`collection`]: a TAXII 2.1 server's query parameters read from
//!   untrusted input, and the filtering, ordering and paging the specification defines,
//!   over objects the caller hands over.
//! - [`pattern`] and [`pull`]: the client side: a reader of partners' STIX patterns that
//!   keeps network addresses, and a reader of partners' envelopes that keeps their
//!   indicators.
//!
//! What never leaves: the input model has no free-text field. An incident's identifier
//! is only hashed into object identifiers; codes (anomaly, device kind, technique,
//! tactic) are checked against narrow alphabets; only the producer's public name is
//! written as given. Addresses private to the territory's networks are dropped (see
//! [`export`]). On the way in, a partner's free text (names, descriptions) is not kept.
//!
//! Limits on untrusted input: a pattern of [`pattern::MAX_PATTERN_BYTES`],
//! [`pattern::MAX_DEPTH`] levels, [`pattern::MAX_COMPARISONS`] comparisons; an
//! envelope of [`pull::MAX_ENVELOPE_BYTES`] and [`pull::MAX_OBJECTS`] objects; a query
//! string of [`query::MAX_QUERY_BYTES`], [`query::MAX_MATCH_VALUES`] values per
//! `match`, pages of at most [`query::MAX_LIMIT`] objects. Every refusal says where
//! (byte offset, line and column, parameter name) and why.
//!
//! **Architecture invariant:** no I/O, no clock, no runtime: bytes and values in, types
//! and JSON out. The engine's types do not appear here; the caller converts.

pub mod collection;
pub mod export;
pub mod id;
pub mod pattern;
pub mod pull;
pub mod query;
pub mod stix;
pub mod taxii;
pub mod time;

pub use collection::{Page, StoredObject, page, select};
pub use export::{CyberFinding, ExportError, Producer, Technique, export_findings};
pub use id::StixId;
pub use pattern::{IpPrefix, NetworkPattern, PatternError, address_pattern, read_network_pattern};
pub use pull::{EnvelopeError, PulledEnvelope, PulledIndicator, read_envelope};
pub use query::{Cursor, Endpoint, Query, QueryError};
pub use stix::{Bundle, StixObject, Tlp};
pub use taxii::{STIX_MEDIA_TYPE, TAXII_MEDIA_TYPE};
pub use time::StixTime;
