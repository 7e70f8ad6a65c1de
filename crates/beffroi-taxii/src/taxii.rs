//! The TAXII 2.1 resources a server returns, as the specification names their
//! properties (sections 3.6, 3.7, 4 and 5). Optional properties are left out when
//! absent; lists the specification says to omit when empty are omitted when empty.

use serde::Serialize;

use crate::time::StixTime;

/// The media type of every TAXII resource. Clients such as `taxii2-client` refuse a
/// response whose `Content-Type` is not exactly this.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
/// The media type of STIX 2.1 content, listed in a collection's `media_types`.
pub const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";
/// The header giving the `date_added` of the first object of a page.
pub const HEADER_DATE_ADDED_FIRST: &str = "X-TAXII-Date-Added-First";
/// The header giving the `date_added` of the last object of a page.
pub const HEADER_DATE_ADDED_LAST: &str = "X-TAXII-Date-Added-Last";

fn is_false(value: &bool) -> bool {
    !*value
}

/// `GET /taxii2/`: the server and its API roots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Discovery {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// The default API root; when present it is one of `api_roots`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// HTTPS absolute URLs, or relative URLs starting with a single `/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_roots: Vec<String>,
}

/// `GET {api-root}/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiRoot {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Must include [`TAXII_MEDIA_TYPE`].
    pub versions: Vec<String>,
    /// The largest request body accepted, in bytes (positive).
    pub max_content_length: u64,
}

impl ApiRoot {
    /// An API root speaking TAXII 2.1 only.
    pub fn taxii21(title: impl Into<String>, max_content_length: u64) -> ApiRoot {
        ApiRoot {
            title: title.into(),
            description: None,
            versions: vec![TAXII_MEDIA_TYPE.to_owned()],
            max_content_length,
        }
    }
}

/// One collection, as the requesting client may use it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Collection {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub can_read: bool,
    pub can_write: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media_types: Vec<String>,
}

/// `GET {api-root}/collections/`: `{}` when there is none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Collections {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<Collection>,
}

/// One version of one object in a collection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestRecord {
    pub id: String,
    pub date_added: StixTime,
    /// The object's `modified` (or `created` when it is not versioned).
    pub version: StixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

/// `GET {api-root}/collections/{id}/manifest/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Manifest {
    #[serde(skip_serializing_if = "is_false")]
    pub more: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ManifestRecord>,
}

/// The wrapper of STIX content (`GET …/objects/`, `GET …/objects/{id}/`, and the body
/// of `POST …/objects/`). An empty envelope is `{}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Envelope {
    #[serde(skip_serializing_if = "is_false")]
    pub more: bool,
    /// The cursor for the next page; only with `more`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<serde_json::Value>,
}

/// `GET {api-root}/collections/{id}/objects/{object-id}/versions/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Versions {
    #[serde(skip_serializing_if = "is_false")]
    pub more: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<StixTime>,
}

/// Whether a request to add objects is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusValue {
    Complete,
    Pending,
}

/// One object of a request to add objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    pub id: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET {api-root}/status/{status-id}/` and the answer to `POST …/objects/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub id: String,
    pub status: StatusValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timestamp: Option<StixTime>,
    pub total_count: u64,
    pub success_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub successes: Vec<StatusDetails>,
    pub failure_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<StatusDetails>,
    pub pending_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pendings: Vec<StatusDetails>,
}

/// The body of every TAXII error response. `http_status` is a string in TAXII 2.1 and
/// must equal the response's status code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaxiiError {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_details: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl TaxiiError {
    /// An error with its title, HTTP status and the crate's machine-readable code.
    pub fn new(http_status: u16, error_code: &str, title: impl Into<String>) -> TaxiiError {
        TaxiiError {
            title: title.into(),
            description: None,
            error_id: None,
            error_code: Some(error_code.to_owned()),
            http_status: Some(http_status.to_string()),
            external_details: None,
            details: None,
        }
    }

    pub fn with_description(mut self, description: impl Into<String>) -> TaxiiError {
        self.description = Some(description.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_default()
    }

    #[test]
    fn empty_resources_are_empty_objects() {
        assert_eq!(json(&Envelope::default()), "{}");
        assert_eq!(json(&Manifest::default()), "{}");
        assert_eq!(json(&Versions::default()), "{}");
        assert_eq!(json(&Collections::default()), "{}");
    }

    #[test]
    fn resources_use_the_specification_names() {
        assert_eq!(
            json(&ApiRoot::taxii21("Beffroi", 10_485_760)),
            r#"{"title":"Beffroi","versions":["application/taxii+json;version=2.1"],"max_content_length":10485760}"#
        );
        let envelope = Envelope {
            more: true,
            next: Some("n".into()),
            objects: vec![serde_json::json!({"type": "indicator"})],
        };
        assert_eq!(
            json(&envelope),
            r#"{"more":true,"next":"n","objects":[{"type":"indicator"}]}"#
        );
        assert_eq!(
            json(
                &TaxiiError::new(400, "bad-parameter", "Bad limit")
                    .with_description("limit: not a number")
            ),
            r#"{"title":"Bad limit","description":"limit: not a number","error_code":"bad-parameter","http_status":"400"}"#
        );
    }
}
