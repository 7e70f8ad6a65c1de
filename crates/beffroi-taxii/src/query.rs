//! The URL query of the TAXII 2.1 object, manifest and versions endpoints (section 3.4),
//! read from untrusted input with an error naming the parameter and the reason.
//!
//! Rules applied, from the specification: every parameter at most once; `added_after`
//! a single timestamp; `limit` a positive integer (above [`MAX_LIMIT`] it is lowered
//! to it, as a server may answer with fewer objects than asked); `match[<field>]`
//! values separated by commas without spaces, ORed; `match[version]` keywords and
//! timestamps at most once each, `all` alone; a `match` field the specification does
//! not define is ignored, one it defines but the endpoint does not take is refused.
//! Any other parameter is ignored.

use thiserror::Error;

use crate::id::{StixId, is_object_type};
use crate::taxii::TaxiiError;
use crate::time::{ReadTime, parse_timestamp};

/// Objects per page when the client gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The most objects per page, whatever the client asks.
pub const MAX_LIMIT: usize = 1000;
/// The longest raw query string read.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// The most values in one `match[…]` parameter.
pub const MAX_MATCH_VALUES: usize = 100;
/// The longest `next` cursor read.
const MAX_CURSOR_BYTES: usize = 320;

/// The endpoint a query is for; the path's object identifier for the two endpoints of
/// one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET …/collections/{id}/objects/`
    Objects,
    /// `GET …/collections/{id}/manifest/`
    Manifest,
    /// `GET …/collections/{id}/objects/{object-id}/`
    Object(StixId),
    /// `GET …/collections/{id}/objects/{object-id}/versions/`
    Versions(StixId),
}

impl Endpoint {
    /// The endpoint of one object, from the path's `{object-id}`.
    pub fn object(object_id: &str) -> Result<Endpoint, QueryError> {
        Ok(Endpoint::Object(path_id(object_id)?))
    }

    /// The versions endpoint of one object, from the path's `{object-id}`.
    pub fn versions(object_id: &str) -> Result<Endpoint, QueryError> {
        Ok(Endpoint::Versions(path_id(object_id)?))
    }

    fn takes(&self, field: &str) -> bool {
        match self {
            Endpoint::Objects | Endpoint::Manifest => true,
            Endpoint::Object(_) => matches!(field, "version" | "spec_version"),
            Endpoint::Versions(_) => field == "spec_version",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Endpoint::Objects => "objects",
            Endpoint::Manifest => "manifest",
            Endpoint::Object(_) => "object",
            Endpoint::Versions(_) => "versions",
        }
    }
}

fn path_id(object_id: &str) -> Result<StixId, QueryError> {
    StixId::parse(object_id).map_err(|e| QueryError::new("{object-id}", e.to_string()))
}

/// Which versions of each object a query asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionMatch {
    /// Every version.
    All,
    /// The first, the last, and versions at given times (any of these).
    Select {
        first: bool,
        last: bool,
        at: Vec<ReadTime>,
    },
}

impl VersionMatch {
    /// The default: the last version only.
    pub fn last() -> VersionMatch {
        VersionMatch::Select {
            first: false,
            last: true,
            at: Vec::new(),
        }
    }
}

/// Where a previous page ended: the sort key of its last object. Written into an
/// envelope's `next` and read back from the `next` parameter; a cursor a client forged
/// only moves where the page starts, never what the filters let through.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub date_added: i64,
    pub id: String,
    pub version: i64,
}

impl Cursor {
    /// The cursor as the `next` text: `<date_added ms>.<version ms>.<id>`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.date_added, self.version, self.id)
    }

    /// Reads a `next` value.
    pub fn decode(text: &str) -> Result<Cursor, QueryError> {
        let bad = |reason: &str| QueryError::new("next", reason.to_owned());
        if text.len() > MAX_CURSOR_BYTES {
            return Err(bad("longer than any cursor this server writes"));
        }
        let mut parts = text.splitn(3, '.');
        let (Some(date_added), Some(version), Some(id)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a cursor this server wrote (three parts expected)"));
        };
        let date_added = decimal(date_added).ok_or_else(|| bad("its first part is not a time"))?;
        let version = decimal(version).ok_or_else(|| bad("its second part is not a version"))?;
        let id = StixId::parse(id).map_err(|e| bad(&format!("its third part: {e}")))?;
        Ok(Cursor {
            date_added,
            id: id.as_str().to_owned(),
            version,
        })
    }
}

fn decimal(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A query, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub endpoint: Endpoint,
    /// Only objects added strictly after this time.
    pub added_after: Option<ReadTime>,
    /// Objects per page, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    pub next: Option<Cursor>,
    /// `match[id]`: any of these identifiers.
    pub ids: Option<Vec<StixId>>,
    /// `match[type]`: any of these types.
    pub types: Option<Vec<String>>,
    /// `match[version]` ([`VersionMatch::All`] on the versions endpoint).
    pub versions: VersionMatch,
    /// `match[spec_version]`; when absent, only the latest specification version of
    /// each object.
    pub spec_versions: Option<Vec<String>>,
}

/// A query parameter that was refused: which one, and why.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("query parameter `{parameter}`: {reason}")]
pub struct QueryError {
    pub parameter: String,
    pub reason: String,
}

impl QueryError {
    fn new(parameter: &str, reason: String) -> QueryError {
        QueryError {
            parameter: shorten(parameter),
            reason,
        }
    }

    /// The TAXII error body for this refusal (HTTP 400, as section 3.4 requires).
    pub fn to_taxii_error(&self) -> TaxiiError {
        TaxiiError::new(400, "invalid-query-parameter", "Invalid query parameter")
            .with_description(self.to_string())
    }
}

/// Untrusted text quoted in an error, cut to 64 characters.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(64).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

impl Query {
    /// The query of `endpoint` with no parameter.
    pub fn new(endpoint: Endpoint) -> Query {
        let versions = match endpoint {
            Endpoint::Versions(_) => VersionMatch::All,
            _ => VersionMatch::last(),
        };
        Query {
            endpoint,
            added_after: None,
            limit: DEFAULT_LIMIT,
            next: None,
            ids: None,
            types: None,
            versions,
            spec_versions: None,
        }
    }

    /// Reads a raw query string (what follows `?`, percent-encoded).
    pub fn from_query_string(endpoint: Endpoint, query: &str) -> Result<Query, QueryError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(QueryError::new(
                "(query)",
                format!("longer than {MAX_QUERY_BYTES} bytes"),
            ));
        }
        let mut pairs = Vec::new();
        for piece in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            let key = percent_decode(key).map_err(|reason| QueryError::new(key, reason))?;
            let value = percent_decode(value).map_err(|reason| QueryError::new(&key, reason))?;
            pairs.push((key, value));
        }
        Query::from_pairs(endpoint, &pairs)
    }

    /// Reads decoded (name, value) pairs, as a web framework hands them over.
    pub fn from_pairs(endpoint: Endpoint, pairs: &[(String, String)]) -> Result<Query, QueryError> {
        let mut seen: Vec<&str> = Vec::new();
        let mut query = Query::new(endpoint);
        for (name, value) in pairs {
            let name = name.as_str();
            let field = name
                .strip_prefix("match[")
                .and_then(|f| f.strip_suffix(']'));
            let known = matches!(name, "added_after" | "limit" | "next")
                || matches!(field, Some("id" | "type" | "version" | "spec_version"));
            if !known {
                // Fields and parameters the specification does not define are ignored.
                continue;
            }
            if seen.contains(&name) {
                return Err(QueryError::new(name, "given more than once".into()));
            }
            seen.push(name);
            if let Some(field) = field
                && !query.endpoint.takes(field)
            {
                return Err(QueryError::new(
                    name,
                    format!("not taken by the {} endpoint", query.endpoint.name()),
                ));
            }
            if value.is_empty() {
                return Err(QueryError::new(name, "empty".into()));
            }
            let err = |reason: String| QueryError::new(name, reason);
            match (name, field) {
                ("added_after", _) => {
                    query.added_after =
                        Some(parse_timestamp(value).map_err(|e| err(e.to_string()))?);
                }
                ("limit", _) => query.limit = parse_limit(value).map_err(err)?,
                ("next", _) => query.next = Some(Cursor::decode(value)?),
                (_, Some("id")) => {
                    let ids = match_values(value)
                        .map_err(err)?
                        .into_iter()
                        .map(|v| {
                            StixId::parse(v).map_err(|e| err(format!("{:?}: {e}", shorten(v))))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    query.ids = Some(ids);
                }
                (_, Some("type")) => {
                    let types = match_values(value)
                        .map_err(err)?
                        .into_iter()
                        .map(|v| {
                            if is_object_type(v) {
                                Ok(v.to_owned())
                            } else {
                                Err(err(format!(
                                    "{:?} is not an object type (3 to 250 of a-z, 0-9, '-')",
                                    shorten(v)
                                )))
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    query.types = Some(types);
                }
                (_, Some("version")) => query.versions = parse_versions(value).map_err(err)?,
                (_, Some("spec_version")) => {
                    let specs = match_values(value)
                        .map_err(err)?
                        .into_iter()
                        .map(|v| {
                            if parse_spec_version(v).is_some() {
                                Ok(v.to_owned())
                            } else {
                                Err(err(format!(
                                    "{:?} is not a specification version such as 2.1",
                                    shorten(v)
                                )))
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    query.spec_versions = Some(specs);
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

fn parse_limit(value: &str) -> Result<usize, String> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{:?} is not a positive integer", shorten(value)));
    }
    // All digits: anything too large for usize is far above the server's limit.
    let limit = value.parse::<usize>().unwrap_or(usize::MAX);
    if limit == 0 {
        return Err("must be greater than zero".into());
    }
    Ok(limit.min(MAX_LIMIT))
}

/// The comma-separated values of a `match` parameter.
fn match_values(value: &str) -> Result<Vec<&str>, String> {
    let values: Vec<&str> = value.split(',').collect();
    if values.len() > MAX_MATCH_VALUES {
        return Err(format!("more than {MAX_MATCH_VALUES} values"));
    }
    if values.iter().any(|v| v.is_empty()) {
        return Err("an empty value between commas".into());
    }
    Ok(values)
}

fn parse_versions(value: &str) -> Result<VersionMatch, String> {
    let values = match_values(value)?;
    if values.contains(&"all") {
        return if values.len() == 1 {
            Ok(VersionMatch::All)
        } else {
            Err("`all` cannot be combined with other versions".into())
        };
    }
    let (mut first, mut last, mut at) = (false, false, Vec::new());
    for v in values {
        let repeated = match v {
            "first" => std::mem::replace(&mut first, true),
            "last" => std::mem::replace(&mut last, true),
            _ => {
                let time = parse_timestamp(v).map_err(|e| {
                    format!(
                        "{:?} is neither first, last, all nor a timestamp: {e}",
                        shorten(v)
                    )
                })?;
                let repeated = at.contains(&time);
                at.push(time);
                repeated
            }
        };
        if repeated {
            return Err(format!("{:?} given more than once", shorten(v)));
        }
    }
    Ok(VersionMatch::Select { first, last, at })
}

/// `major.minor` of a specification version such as `2.1`.
pub(crate) fn parse_spec_version(text: &str) -> Option<(u16, u16)> {
    let (major, minor) = text.split_once('.')?;
    let number = |s: &str| {
        if (1..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    Some((number(major)?, number(minor)?))
}

/// Decodes `%XX` escapes and `+` (a space, in a form-encoded query).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|_| {
                        bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit()
                    })
                    .ok_or_else(|| format!("bad percent-escape at byte {i}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Query, QueryError> {
        Query::from_query_string(Endpoint::Objects, query)
    }

    fn refused(query: &str) -> String {
        parse(query)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn reads_every_parameter() {
        let q = parse(
            "added_after=2016-02-01T00:00:01.000Z&limit=5&match%5Btype%5D=indicator,sighting\
             &match[id]=indicator--252c7c11-daf2-42bd-843b-be65edca9f61\
             &match[version]=first,2018-03-02T01:01:01.123Z,last&match[spec_version]=2.0,2.1\
             &match[labels]=ignored&unknown=1",
        );
        let Ok(q) = q else {
            panic!("{q:?}");
        };
        assert_eq!(q.added_after.map(|t| t.millis), Some(1_454_284_801_000));
        assert_eq!(q.limit, 5);
        assert_eq!(q.types, Some(vec!["indicator".into(), "sighting".into()]));
        assert_eq!(q.ids.map(|i| i.len()), Some(1));
        assert!(matches!(
            q.versions,
            VersionMatch::Select { first: true, last: true, ref at } if at.len() == 1
        ));
        assert_eq!(q.spec_versions, Some(vec!["2.0".into(), "2.1".into()]));
        assert_eq!(
            parse("").map(|q| (q.limit, q.versions)),
            Ok((DEFAULT_LIMIT, VersionMatch::last()))
        );
        assert_eq!(
            parse("limit=1000000000000000000000000").map(|q| q.limit),
            Ok(MAX_LIMIT)
        );
        assert_eq!(
            parse("match[version]=all").map(|q| q.versions),
            Ok(VersionMatch::All)
        );
    }

    #[test]
    fn refuses_with_the_parameter_and_the_reason() {
        assert_eq!(
            refused("limit=0"),
            "query parameter `limit`: must be greater than zero"
        );
        assert_eq!(
            refused("limit=-3"),
            "query parameter `limit`: \"-3\" is not a positive integer"
        );
        assert_eq!(
            refused("limit=1&limit=2"),
            "query parameter `limit`: given more than once"
        );
        assert!(
            refused("added_after=2016-02-01")
                .starts_with("query parameter `added_after`: invalid timestamp at byte 10")
        );
        assert_eq!(
            refused("match[version]=all,last"),
            "query parameter `match[version]`: `all` cannot be combined with other versions"
        );
        assert_eq!(
            refused("match[version]=last,last"),
            "query parameter `match[version]`: \"last\" given more than once"
        );
        assert!(
            refused("match[type]=indicator,%20sighting")
                .contains("\" sighting\" is not an object type")
        );
        assert_eq!(
            refused("match[type]=a,,b"),
            "query parameter `match[type]`: an empty value between commas"
        );
        assert_eq!(refused("match[id]="), "query parameter `match[id]`: empty");
        assert!(refused("next=12.34").starts_with("query parameter `next`: not a cursor"));
        assert!(
            refused("next=x.1.indicator--252c7c11-daf2-42bd-843b-be65edca9f61")
                .contains("first part")
        );
        assert!(refused("limit=%zz").contains("bad percent-escape"));
        assert!(refused("limit=%ff").contains("not UTF-8"));
        let object = Endpoint::object("indicator--252c7c11-daf2-42bd-843b-be65edca9f61");
        let Ok(object) = object else {
            panic!("{object:?}");
        };
        assert_eq!(
            Query::from_query_string(object, "match[type]=indicator")
                .err()
                .map(|e| e.to_string()),
            Some("query parameter `match[type]`: not taken by the object endpoint".into())
        );
        assert!(Endpoint::versions("nope").is_err());
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor {
            date_added: 1_795_694_400_123,
            id: "indicator--252c7c11-daf2-42bd-843b-be65edca9f61".into(),
            version: -5,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }
}
