//! JSON-LD `@context` handling, offline.
//!
//! Two documents are generated here, never fetched:
//! - [`core_context_document`]: the NGSI-LD core terms this crate writes or reads,
//!   each mapped to the IRI the ETSI core context (v1.8, Annex B of GS CIM 009) gives
//!   it. A server on a closed network can serve it to clients that cannot reach
//!   `uri.etsi.org`.
//! - [`JsonLdContext::document`]: the Smart Data Models terms of the entities this
//!   crate builds, served at a URL of the caller's choosing. A term whose IRI differs
//!   from one model to another (`category` is `dataModel.Alert/category` for an Alert
//!   and `dataModel.Building/category` for a Building) is defined in the context
//!   scoped to its entity type (JSON-LD 1.1 type-scoped contexts), so every attribute
//!   expands to the IRI of its own model.
//!
//! Answers in `application/json` point at the served document in a `Link` header
//! ([`JsonLdContext::link_header`]); answers in `application/ld+json` carry
//! `"@context": [<served>, <core>]` in the body ([`JsonLdContext::body_context`]).
//! The core context stays implicit in the first case, as NGSI-LD specifies.
//!
//! A request may name a context in a `Link` header or in its body: the core context
//! (any published version, v1.3 to v1.8, or the unversioned URL) and the served
//! document are accepted; any other is refused with `LdContextNotAvailable`, since
//! this crate fetches nothing and cannot know what the terms would mean.

use serde_json::{Map, Value, json};

use crate::error::{ErrorType, NgsiError};

/// The core context this crate follows and names in its answers.
pub const CORE_CONTEXT_URL: &str =
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// Every core context URL recognised without fetching anything (the versions
/// published from 1.3 to 1.8, and the unversioned alias).
pub const CORE_CONTEXT_URLS: [&str; 7] = [
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.4.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.5.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld",
    CORE_CONTEXT_URL,
];

/// The `rel` of a `Link` header naming a JSON-LD context.
pub const JSON_LD_CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";
/// The media type of JSON-LD answers (with `@context` in the body).
pub const JSON_LD_MEDIA_TYPE: &str = "application/ld+json";
/// The media type of plain JSON answers (with the context in a `Link` header).
pub const JSON_MEDIA_TYPE: &str = "application/json";
/// The header carrying the total of a query when `count=true`.
pub const RESULTS_COUNT_HEADER: &str = "NGSILD-Results-Count";
/// The header naming the tenant of a request (here, a commune).
pub const TENANT_HEADER: &str = "NGSILD-Tenant";

const NGSI_LD: &str = "https://uri.etsi.org/ngsi-ld/";
const GEOJSON: &str = "https://purl.org/geojson/vocab#";
const SDM: &str = "https://smartdatamodels.org/";

/// Whether a URL is one of the NGSI-LD core contexts (also accepted with `http:`).
pub fn is_core_context_url(url: &str) -> bool {
    let https = url
        .strip_prefix("http:")
        .map(|rest| format!("https:{rest}"));
    let url = https.as_deref().unwrap_or(url);
    CORE_CONTEXT_URLS.contains(&url)
}

/// How a core term is defined.
enum Def {
    /// `"term": "ngsi-ld:name"` (prefix and local name).
    Iri(&'static str, &'static str),
    /// `"term": {"@id": …, "@type": …}`.
    Typed(&'static str, &'static str, &'static str),
    /// `"term": {"@id": …, "@container": …}`.
    Container(&'static str, &'static str, &'static str),
    /// A JSON-LD keyword alias (`id` → `@id`).
    Keyword(&'static str),
    /// An absolute IRI outside the two prefixes.
    Absolute(&'static str),
}

/// The core terms this crate writes or reads, as the v1.8 core context defines them.
const CORE_TERMS: &[(&str, Def)] = &[
    ("id", Def::Keyword("@id")),
    ("type", Def::Keyword("@type")),
    ("Attribute", Def::Iri("ngsi-ld", "Attribute")),
    ("DateTime", Def::Iri("ngsi-ld", "DateTime")),
    ("EntityType", Def::Iri("ngsi-ld", "EntityType")),
    ("EntityTypeInfo", Def::Iri("ngsi-ld", "EntityTypeInfo")),
    ("EntityTypeList", Def::Iri("ngsi-ld", "EntityTypeList")),
    ("GeoProperty", Def::Iri("ngsi-ld", "GeoProperty")),
    ("Notification", Def::Iri("ngsi-ld", "Notification")),
    ("Point", Def::Iri("geojson", "Point")),
    ("Polygon", Def::Iri("geojson", "Polygon")),
    ("Property", Def::Iri("ngsi-ld", "Property")),
    ("Relationship", Def::Iri("ngsi-ld", "Relationship")),
    ("Subscription", Def::Iri("ngsi-ld", "Subscription")),
    ("accept", Def::Iri("ngsi-ld", "accept")),
    ("attributeDetails", Def::Absolute("attributeDetails")),
    (
        "attributeName",
        Def::Typed("ngsi-ld", "attributeName", "@vocab"),
    ),
    (
        "attributeNames",
        Def::Typed("ngsi-ld", "attributeNames", "@vocab"),
    ),
    (
        "attributeTypes",
        Def::Typed("ngsi-ld", "attributeTypes", "@vocab"),
    ),
    ("attributes", Def::Typed("ngsi-ld", "attributes", "@vocab")),
    (
        "coordinates",
        Def::Container("geojson", "coordinates", "@list"),
    ),
    ("createdAt", Def::Typed("ngsi-ld", "createdAt", "DateTime")),
    ("data", Def::Iri("ngsi-ld", "data")),
    (
        "description",
        Def::Absolute("http://purl.org/dc/terms/description"),
    ),
    ("detail", Def::Iri("ngsi-ld", "detail")),
    ("endpoint", Def::Iri("ngsi-ld", "endpoint")),
    ("entities", Def::Iri("ngsi-ld", "entities")),
    ("entityCount", Def::Iri("ngsi-ld", "entityCount")),
    ("expiresAt", Def::Typed("ngsi-ld", "expiresAt", "DateTime")),
    ("format", Def::Iri("ngsi-ld", "format")),
    ("geoQ", Def::Iri("ngsi-ld", "geoQ")),
    ("geometry", Def::Iri("geojson", "geometry")),
    ("geoproperty", Def::Iri("ngsi-ld", "geoproperty")),
    ("georel", Def::Iri("ngsi-ld", "georel")),
    ("idPattern", Def::Iri("ngsi-ld", "idPattern")),
    ("isActive", Def::Iri("ngsi-ld", "isActive")),
    (
        "lastFailure",
        Def::Typed("ngsi-ld", "lastFailure", "DateTime"),
    ),
    (
        "lastNotification",
        Def::Typed("ngsi-ld", "lastNotification", "DateTime"),
    ),
    (
        "lastSuccess",
        Def::Typed("ngsi-ld", "lastSuccess", "DateTime"),
    ),
    ("location", Def::Iri("ngsi-ld", "location")),
    (
        "modifiedAt",
        Def::Typed("ngsi-ld", "modifiedAt", "DateTime"),
    ),
    ("notification", Def::Iri("ngsi-ld", "notification")),
    (
        "notifiedAt",
        Def::Typed("ngsi-ld", "notifiedAt", "DateTime"),
    ),
    ("object", Def::Typed("ngsi-ld", "hasObject", "@id")),
    (
        "observedAt",
        Def::Typed("ngsi-ld", "observedAt", "DateTime"),
    ),
    ("q", Def::Iri("ngsi-ld", "q")),
    ("status", Def::Iri("ngsi-ld", "status")),
    (
        "subscriptionId",
        Def::Typed("ngsi-ld", "subscriptionId", "@id"),
    ),
    ("throttling", Def::Iri("ngsi-ld", "throttling")),
    ("timesFailed", Def::Iri("ngsi-ld", "timesFailed")),
    ("timesSent", Def::Iri("ngsi-ld", "timesSent")),
    ("title", Def::Absolute("http://purl.org/dc/terms/title")),
    ("typeList", Def::Typed("ngsi-ld", "typeList", "@vocab")),
    ("typeName", Def::Typed("ngsi-ld", "typeName", "@vocab")),
    ("unitCode", Def::Iri("ngsi-ld", "unitCode")),
    ("uri", Def::Iri("ngsi-ld", "uri")),
    ("value", Def::Iri("ngsi-ld", "hasValue")),
    (
        "watchedAttributes",
        Def::Typed("ngsi-ld", "watchedAttributes", "@vocab"),
    ),
];

fn compact(prefix: &str, name: &str) -> Value {
    Value::String(format!("{prefix}:{name}"))
}

/// The core `@context` document: `{"@context": {"@version": 1.1, "@protected": true,
/// "ngsi-ld": …, "geojson": …, <terms>…, "@vocab": <default context>}}`.
pub fn core_context_document() -> Value {
    let mut terms = Map::new();
    terms.insert("@version".into(), json!(1.1));
    terms.insert("@protected".into(), json!(true));
    terms.insert("ngsi-ld".into(), json!(NGSI_LD));
    terms.insert("geojson".into(), json!(GEOJSON));
    for (term, def) in CORE_TERMS {
        let value = match def {
            Def::Iri(prefix, name) => compact(prefix, name),
            Def::Typed(prefix, name, ty) => json!({ "@id": compact(prefix, name), "@type": ty }),
            Def::Container(prefix, name, container) => {
                json!({ "@id": compact(prefix, name), "@container": container })
            }
            Def::Keyword(k) => json!(k),
            Def::Absolute(iri) => json!(iri),
        };
        terms.insert((*term).into(), value);
    }
    terms.insert("@vocab".into(), json!(format!("{NGSI_LD}default-context/")));
    json!({ "@context": terms })
}

/// The full IRI of a core term, or `None` for a term this crate does not use.
pub fn core_term_iri(term: &str) -> Option<String> {
    CORE_TERMS
        .iter()
        .find(|(t, _)| *t == term)
        .and_then(|(_, def)| {
            let (prefix, name) = match def {
                Def::Iri(p, n) | Def::Typed(p, n, _) | Def::Container(p, n, _) => (*p, *n),
                Def::Absolute(iri) if iri.contains(':') => return Some((*iri).to_owned()),
                Def::Absolute(_) | Def::Keyword(_) => return None,
            };
            let base = if prefix == "geojson" {
                GEOJSON
            } else {
                NGSI_LD
            };
            Some(format!("{base}{name}"))
        })
}

/// An entity type this crate builds: its Smart Data Models repository and the terms of
/// its attributes that its model defines.
struct ModelType {
    name: &'static str,
    repository: &'static str,
    terms: &'static [&'static str],
}

/// Terms whose IRI is the same in every model used here (`smartdatamodels.org/<term>`).
const SHARED_TERMS: &[&str] = &["address", "dateObserved", "validFrom"];

const MODEL_TYPES: &[ModelType] = &[
    ModelType {
        name: "Alert",
        repository: "dataModel.Alert",
        terms: &[
            "alertSource",
            "category",
            "dateIssued",
            "severity",
            "subCategory",
            "validTo",
        ],
    },
    ModelType {
        name: "Building",
        repository: "dataModel.Building",
        terms: &["category", "peopleCapacity"],
    },
    ModelType {
        name: "CrowdFlowObserved",
        repository: "dataModel.Transportation",
        terms: &[
            "congested",
            "dateObservedFrom",
            "dateObservedTo",
            "occupancy",
            "peopleCount",
            "peopleCountAway",
            "peopleCountTowards",
            "refDevice",
        ],
    },
    ModelType {
        name: "Device",
        repository: "dataModel.Device",
        terms: &[
            "batteryLevel",
            "controlledAsset",
            "controlledProperty",
            "dateLastValueReported",
            "deviceCategory",
            "deviceState",
        ],
    },
    ModelType {
        name: "WaterObserved",
        repository: "dataModel.Environment",
        terms: &["flow", "refDevice", "waterLevel"],
    },
];

/// The expanded IRI of an entity type this crate builds
/// (`https://smartdatamodels.org/dataModel.Device/Device`).
pub fn type_iri(type_name: &str) -> Option<String> {
    MODEL_TYPES
        .iter()
        .find(|m| m.name == type_name)
        .map(|m| format!("{SDM}{}/{}", m.repository, m.name))
}

/// The expanded IRI of an attribute of an entity type: the model's own term, a shared
/// Smart Data Models term, or a core term (`location`, `description`); otherwise the
/// core context's default vocabulary.
pub fn attribute_iri(type_name: &str, attribute: &str) -> String {
    if let Some(model) = MODEL_TYPES.iter().find(|m| m.name == type_name)
        && model.terms.contains(&attribute)
    {
        return format!("{SDM}{}/{attribute}", model.repository);
    }
    if SHARED_TERMS.contains(&attribute) {
        return format!("{SDM}{attribute}");
    }
    core_term_iri(attribute).unwrap_or_else(|| format!("{NGSI_LD}default-context/{attribute}"))
}

/// The contexts of this server: the URL where the caller serves [`Self::document`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonLdContext {
    served_url: String,
}

impl JsonLdContext {
    /// `served_url` is the absolute URL where the HTTP layer serves
    /// [`JsonLdContext::document`].
    pub fn new(served_url: impl Into<String>) -> JsonLdContext {
        JsonLdContext {
            served_url: served_url.into(),
        }
    }

    pub fn served_url(&self) -> &str {
        &self.served_url
    }

    /// The document of the Smart Data Models terms used here, one type-scoped context
    /// per entity type.
    pub fn document() -> Value {
        let mut terms = Map::new();
        for term in SHARED_TERMS {
            terms.insert((*term).into(), json!(format!("{SDM}{term}")));
        }
        for model in MODEL_TYPES {
            let scoped: Map<String, Value> = model
                .terms
                .iter()
                .map(|t| {
                    (
                        (*t).to_owned(),
                        json!(format!("{SDM}{}/{t}", model.repository)),
                    )
                })
                .collect();
            terms.insert(
                model.name.into(),
                json!({ "@id": format!("{SDM}{}/{}", model.repository, model.name), "@context": scoped }),
            );
        }
        let mut outer = Map::new();
        outer.insert("@version".into(), json!(1.1));
        outer.extend(terms);
        json!({ "@context": outer })
    }

    /// The `Link` header value of an `application/json` answer:
    /// `<served>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`.
    pub fn link_header(&self) -> String {
        format!(
            "<{}>; rel=\"{JSON_LD_CONTEXT_REL}\"; type=\"{JSON_LD_MEDIA_TYPE}\"",
            self.served_url
        )
    }

    /// The `@context` member of an `application/ld+json` answer: the served document,
    /// then the core context.
    pub fn body_context(&self) -> Value {
        json!([self.served_url, CORE_CONTEXT_URL])
    }

    /// Adds `@context` to an entity (or any object) written for `application/ld+json`.
    pub fn with_body_context(&self, mut object: Value) -> Value {
        if let Value::Object(members) = &mut object {
            members.insert("@context".into(), self.body_context());
        }
        object
    }

    fn accepts(&self, url: &str) -> bool {
        url == self.served_url || is_core_context_url(url)
    }

    /// Checks the `Link` header of a request (its raw value): at most one link with the
    /// JSON-LD context `rel`, naming a context known here. Links with another `rel`
    /// are ignored.
    pub fn check_link_header(&self, value: &str) -> Result<(), NgsiError> {
        let mut seen = false;
        for link in value.split(',') {
            let link = link.trim();
            if link.is_empty() {
                continue;
            }
            let (url, params) = parse_link(link)
                .ok_or_else(|| NgsiError::bad_data("Link", "not <url>; rel=\"…\""))?;
            let is_context = params
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("rel") && *v == JSON_LD_CONTEXT_REL);
            if !is_context {
                continue;
            }
            if seen {
                return Err(NgsiError::bad_data(
                    "Link",
                    "more than one JSON-LD context link",
                ));
            }
            seen = true;
            if !self.accepts(url) {
                return Err(unknown_context("Link", url));
            }
        }
        Ok(())
    }

    /// Checks the `@context` member of a JSON-LD request body: a URL, or an array of
    /// URLs, each known here. An inline context object is refused.
    pub fn check_body_context(&self, value: &Value) -> Result<(), NgsiError> {
        let check = |v: &Value| match v {
            Value::String(url) if self.accepts(url) => Ok(()),
            Value::String(url) => Err(unknown_context("@context", url)),
            _ => Err(NgsiError::unsupported(
                "@context",
                "only context URLs are read here, not inline definitions",
            )),
        };
        match value {
            Value::Array(items) if items.len() <= 8 => items.iter().try_for_each(check),
            Value::Array(_) => Err(NgsiError::bad_data("@context", "at most 8 contexts")),
            other => check(other),
        }
    }
}

fn unknown_context(name: &str, url: &str) -> NgsiError {
    let shown: String = url.chars().take(200).collect();
    NgsiError::new(
        ErrorType::LdContextNotAvailable,
        format!(
            "{name}: {shown:?} is not a context this server knows (the NGSI-LD core context or its own)"
        ),
    )
}

/// Splits `<url>; k="v"; k2=v2` into the URL and its parameters.
fn parse_link(link: &str) -> Option<(&str, Vec<(&str, &str)>)> {
    let rest = link.strip_prefix('<')?;
    let (url, params) = rest.split_once('>')?;
    let mut out = Vec::new();
    for param in params.split(';') {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (k, v) = param.split_once('=')?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        out.push((k.trim(), v));
    }
    Some((url.trim(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVED: &str = "https://beffroi.example/ngsi-ld/v1/jsonldContexts/beffroi";

    #[test]
    fn core_terms_expand_as_the_core_context_says() {
        let doc = core_context_document();
        let ctx = &doc["@context"];
        assert_eq!(ctx["ngsi-ld"], "https://uri.etsi.org/ngsi-ld/");
        assert_eq!(ctx["value"], "ngsi-ld:hasValue");
        assert_eq!(
            ctx["object"],
            json!({"@id": "ngsi-ld:hasObject", "@type": "@id"})
        );
        assert_eq!(
            ctx["observedAt"],
            json!({"@id": "ngsi-ld:observedAt", "@type": "DateTime"})
        );
        assert_eq!(
            ctx["coordinates"],
            json!({"@id": "geojson:coordinates", "@container": "@list"})
        );
        assert_eq!(ctx["id"], "@id");
        assert_eq!(
            core_term_iri("location").as_deref(),
            Some("https://uri.etsi.org/ngsi-ld/location")
        );
        assert_eq!(
            core_term_iri("Point").as_deref(),
            Some("https://purl.org/geojson/vocab#Point")
        );
    }

    #[test]
    fn model_terms_are_scoped_by_type() {
        assert_eq!(
            attribute_iri("Alert", "category"),
            "https://smartdatamodels.org/dataModel.Alert/category"
        );
        assert_eq!(
            attribute_iri("Building", "category"),
            "https://smartdatamodels.org/dataModel.Building/category"
        );
        assert_eq!(
            attribute_iri("Device", "location"),
            "https://uri.etsi.org/ngsi-ld/location"
        );
        assert_eq!(
            attribute_iri("Alert", "validFrom"),
            "https://smartdatamodels.org/validFrom"
        );
        let doc = JsonLdContext::document();
        assert_eq!(
            doc["@context"]["WaterObserved"]["@context"]["refDevice"],
            "https://smartdatamodels.org/dataModel.Environment/refDevice"
        );
    }

    #[test]
    fn link_headers() {
        let ctx = JsonLdContext::new(SERVED);
        assert_eq!(
            ctx.link_header(),
            format!(
                "<{SERVED}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
            )
        );
        assert_eq!(ctx.check_link_header(&ctx.link_header()), Ok(()));
        for version in ["", "-v1.3", "-v1.6", "-v1.8"] {
            let link = format!(
                "<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context{version}.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
            );
            assert_eq!(ctx.check_link_header(&link), Ok(()), "{link}");
        }
        let other =
            "<https://example.org/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"";
        assert_eq!(
            ctx.check_link_header(other).map_err(|e| e.status()),
            Err(503)
        );
        assert_eq!(
            ctx.check_link_header("<https://example.org/next>; rel=\"next\""),
            Ok(())
        );
        let twice = format!("{}, {}", ctx.link_header(), ctx.link_header());
        assert!(ctx.check_link_header(&twice).is_err());
        assert!(
            ctx.check_body_context(&json!([SERVED, CORE_CONTEXT_URL]))
                .is_ok()
        );
        assert!(ctx.check_body_context(&json!({"x": "y"})).is_err());
    }
}
