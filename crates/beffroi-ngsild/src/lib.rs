//! NGSI-LD (ETSI GS CIM 009), the context-information API of smart cities, at the edge.
//!
//! What it models:
//! - [`models`]: the crate's own input model ([`DeviceFacts`], [`SiteFacts`],
//!   [`GaugeReading`], [`CrowdCount`], [`IncidentFacts`]) and the FIWARE Smart Data
//!   Models entities built from it: `Device`, `Building`, `WaterObserved`,
//!   `CrowdFlowObserved`, `Alert`, with `urn:ngsi-ld:<Type>:<territory>:<id>`
//!   identifiers. Each input names its commune, the tenant the HTTP layer files the
//!   entity under (`NGSILD-Tenant`).
//! - [`entity`]: [`Entity`] (`id`, `type`, attributes: Property with `observedAt` and
//!   `unitCode`, GeoProperty with a Point or Polygon, Relationship) written in the
//!   normalized or the key-values (simplified) representation.
//! - [`context`]: the `@context` documents the server serves, generated here (the core
//!   terms, as the ETSI core context v1.8 maps them; the Smart Data Models terms, scoped
//!   by entity type), the `Link` header of `application/json` answers and the
//!   `@context` of `application/ld+json` ones, and the check of a request's context
//!   (core contexts v1.3 to v1.8 recognised offline; nothing is ever fetched).
//! - [`query`], [`q`], [`geo`], [`pattern`]: `GET /entities` parameters read from
//!   untrusted input, the query language, geo-queries (haversine distances) and the
//!   identifier-pattern subset; [`select`] filters, orders by identifier and pages.
//! - [`types`]: the `EntityTypeList`, its `details=true` form and `EntityTypeInfo`.
//! - [`subscription`]: subscription bodies read from untrusted JSON, matching, the
//!   notification body, and the subscription's representation with its status and
//!   delivery counters.
//! - [`error`]: the NGSI-LD error types, their HTTP status, the problem-details body.
//!
//! What never appears: the input model has no free-text field. Devices, sites and
//! incidents are written from codes ([`models::Code`]), Smart Data Models enumerations,
//! numbers, positions and times; there is no field for a name, an address line, a
//! description, a person or an incident's title, so none can leak into an entity. An
//! incident is told by its rule's code, category, sub-category and severity. A
//! subscription's `subscriptionName` and `description` are not kept.
//!
//! Limits on untrusted input: a `q` of [`q::MAX_Q_BYTES`] bytes, [`q::MAX_TERMS`]
//! terms, [`q::MAX_DEPTH`] nested parentheses; a parameter value of
//! [`query::MAX_VALUE_BYTES`]; [`query::MAX_LIST_ITEMS`] identifiers, types or
//! attributes; polygons of [`geo::MAX_POSITIONS`] positions; patterns of
//! [`pattern::MAX_PATTERN_CHARS`] characters; pages of at most [`query::MAX_LIMIT`]
//! entities; subscription bodies of [`subscription::MAX_SUBSCRIPTION_BYTES`]. Every
//! refusal is an [`NgsiError`] whose detail names the parameter or member.
//!
//! **Architecture invariant:** no I/O, no clock, no runtime: the caller passes the time
//! (`now`, `notified_at`) and identifiers it generates; bytes, pairs and values in,
//! types and JSON out. No dependency on `beffroi-core`: the engine's types do not
//! appear here; the caller converts.

pub mod context;
pub mod entity;
pub mod error;
pub mod geo;
pub mod models;
pub mod pattern;
pub mod q;
pub mod query;
pub mod subscription;
pub mod time;
pub mod types;

pub use context::{
    CORE_CONTEXT_URL, JsonLdContext, RESULTS_COUNT_HEADER, TENANT_HEADER, core_context_document,
    is_core_context_url,
};
pub use entity::{Attribute, Entity, Representation, Value};
pub use error::{ErrorType, NgsiError};
pub use geo::{GeoQuery, GeoRel, Geometry, Position, haversine_m};
pub use models::{
    AlertSource, BuildError, Code, CrowdCount, DeviceFacts, DeviceState, Facts, GaugeReading,
    IncidentFacts, Severity, SiteFacts,
};
pub use q::QExpr;
pub use query::{Query, Selection, select};
pub use subscription::{
    Subscription, SubscriptionRequest, SubscriptionStatus, notification_body, parse_subscription,
};
pub use time::Timestamp;
pub use types::{entity_type_details, entity_type_info, entity_type_list};
