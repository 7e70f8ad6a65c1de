//! The parameters of `GET /ngsi-ld/v1/entities` (ETSI GS CIM 009, clause 6.4.3.2), read
//! from untrusted query pairs (already percent-decoded by the HTTP layer), and the
//! selection of a page of entities.
//!
//! Read: `id` (comma list), `idPattern` (the subset of [`crate::pattern`]), `type` (names
//! joined by `,` or `|` for OR and `;` for AND, with parentheses; a full type IRI is
//! accepted for a type this crate builds), `attrs` (comma list: entities having at least
//! one of them, written with only those), `q` ([`crate::q`]), `georel` + `geometry` +
//! `coordinates` (+ `geoproperty`, `location` by default) ([`crate::geo`]), `limit`
//! (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]; `0` only with `count=true`),
//! `offset`, `count`, `options` (`keyValues`, `normalized`, `count`), `format`
//! (`normalized`, `simplified`, `keyValues`; it wins over `options`). `lang` is ignored
//! (no LanguageProperty here), and so is any parameter NGSI-LD does not define.
//! Parameters NGSI-LD defines but this crate does not implement (`csf`, `scopeQ`,
//! `pick`, `omit`, `datasetId`, `join`…) are refused with `OperationNotSupported`
//! rather than silently ignored. Every parameter is read at most once.

use crate::context::{JsonLdContext, type_iri};
use crate::entity::{Entity, Representation};
use crate::error::{ErrorType, NgsiError};
use crate::geo::{GeoQuery, GeoRel, Geometry};
use crate::pattern::Pattern;
use crate::q::QExpr;

/// Entities per page when the client gives no `limit`.
pub const DEFAULT_LIMIT: usize = 20;
/// The most entities per page.
pub const MAX_LIMIT: usize = 1000;
/// The longest value of one parameter (a polygon's coordinates included).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The most parameters read.
pub const MAX_PARAMS: usize = 64;
/// The most items in `id`, `type` or `attrs`.
pub const MAX_LIST_ITEMS: usize = 100;
/// The longest entity identifier, type or attribute name read.
pub const MAX_NAME_BYTES: usize = 256;

const UNSUPPORTED: &[&str] = &[
    "csf",
    "scopeQ",
    "pick",
    "omit",
    "datasetId",
    "expandValues",
    "entityMap",
    "join",
    "joinLevel",
    "containedBy",
    "collectPath",
    "local",
];

/// A type expression: names combined with OR (`,` or `|`) and AND (`;`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeExpr {
    Name(String),
    And(Vec<TypeExpr>),
    Or(Vec<TypeExpr>),
}

impl TypeExpr {
    /// Reads a `type` value (depth at most 8, at most [`MAX_LIST_ITEMS`] names).
    pub fn parse(text: &str, param: &str) -> Result<TypeExpr, NgsiError> {
        let mut p = TypeParser {
            src: text.as_bytes(),
            pos: 0,
            depth: 0,
            names: 0,
            param,
        };
        let expr = p.or()?;
        if p.pos != p.src.len() {
            return Err(NgsiError::bad_data(
                param,
                format!("unexpected character at byte {}", p.pos),
            ));
        }
        Ok(expr)
    }

    /// Whether an entity of this type matches (entities here have one type).
    pub fn matches(&self, entity_type: &str) -> bool {
        match self {
            TypeExpr::Name(n) => {
                n == entity_type || type_iri(entity_type).is_some_and(|iri| iri == *n)
            }
            TypeExpr::And(items) => items.iter().all(|e| e.matches(entity_type)),
            TypeExpr::Or(items) => items.iter().any(|e| e.matches(entity_type)),
        }
    }

    /// The names it mentions.
    pub fn names(&self) -> Vec<&str> {
        match self {
            TypeExpr::Name(n) => vec![n.as_str()],
            TypeExpr::And(items) | TypeExpr::Or(items) => {
                items.iter().flat_map(TypeExpr::names).collect()
            }
        }
    }
}

struct TypeParser<'a> {
    src: &'a [u8],
    pos: usize,
    depth: usize,
    names: usize,
    param: &'a str,
}

impl TypeParser<'_> {
    fn or(&mut self) -> Result<TypeExpr, NgsiError> {
        let mut items = vec![self.and()?];
        while matches!(self.src.get(self.pos), Some(b',' | b'|')) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            TypeExpr::Or(items)
        })
    }

    fn and(&mut self) -> Result<TypeExpr, NgsiError> {
        let mut items = vec![self.atom()?];
        while self.src.get(self.pos) == Some(&b';') {
            self.pos += 1;
            items.push(self.atom()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            TypeExpr::And(items)
        })
    }

    fn atom(&mut self) -> Result<TypeExpr, NgsiError> {
        if self.src.get(self.pos) == Some(&b'(') {
            self.depth += 1;
            if self.depth > 8 {
                return Err(NgsiError::too_complex(
                    self.param,
                    "more than 8 nested parentheses",
                ));
            }
            self.pos += 1;
            let inner = self.or()?;
            if self.src.get(self.pos) != Some(&b')') {
                return Err(NgsiError::bad_data(
                    self.param,
                    format!("expected ')' at byte {}", self.pos),
                ));
            }
            self.pos += 1;
            self.depth -= 1;
            return Ok(inner);
        }
        let start = self.pos;
        while self.src.get(self.pos).is_some_and(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'/' | b'.' | b'#' | b'-')
        }) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(NgsiError::bad_data(
                self.param,
                format!("expected a type name at byte {start}"),
            ));
        }
        if self.pos - start > MAX_NAME_BYTES {
            return Err(NgsiError::bad_data(self.param, "type name too long"));
        }
        self.names += 1;
        if self.names > MAX_LIST_ITEMS {
            return Err(NgsiError::too_complex(
                self.param,
                format!("more than {MAX_LIST_ITEMS} types"),
            ));
        }
        Ok(TypeExpr::Name(
            String::from_utf8_lossy(&self.src[start..self.pos]).into_owned(),
        ))
    }
}

/// A parsed entity query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// Entities with one of these identifiers (empty: any).
    pub ids: Vec<String>,
    pub id_pattern: Option<Pattern>,
    pub types: Option<TypeExpr>,
    /// Entities having at least one of these attributes, written with only these.
    pub attrs: Option<Vec<String>>,
    pub q: Option<QExpr>,
    pub geo: Option<GeoQuery>,
    pub limit: usize,
    pub offset: usize,
    /// Whether the answer carries the total in `NGSILD-Results-Count`.
    pub count: bool,
    pub representation: Representation,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            ids: Vec::new(),
            id_pattern: None,
            types: None,
            attrs: None,
            q: None,
            geo: None,
            limit: DEFAULT_LIMIT,
            offset: 0,
            count: false,
            representation: Representation::Normalized,
        }
    }
}

impl Query {
    /// Reads the query pairs of `GET /ngsi-ld/v1/entities`.
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Query, NgsiError> {
        if pairs.len() > MAX_PARAMS {
            return Err(NgsiError::too_complex(
                "query",
                format!("more than {MAX_PARAMS} parameters"),
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        let mut query = Query::default();
        let (mut georel, mut geometry, mut coordinates, mut geoproperty) = (None, None, None, None);
        let mut options_kv = None;
        let mut format = None;
        let mut limit = None;
        for (k, v) in pairs {
            let (name, value) = (k.as_ref(), v.as_ref());
            if UNSUPPORTED.contains(&name) {
                return Err(NgsiError::unsupported(
                    name,
                    "this parameter is not supported by this server",
                ));
            }
            let known = matches!(
                name,
                "id" | "idPattern"
                    | "type"
                    | "attrs"
                    | "q"
                    | "georel"
                    | "geometry"
                    | "coordinates"
                    | "geoproperty"
                    | "limit"
                    | "offset"
                    | "count"
                    | "options"
                    | "format"
                    | "lang"
            );
            if !known {
                continue;
            }
            if seen.contains(&name) {
                return Err(NgsiError::bad_data(name, "given more than once"));
            }
            seen.push(name);
            if value.len() > MAX_VALUE_BYTES {
                return Err(NgsiError::too_complex(
                    name,
                    format!("longer than {MAX_VALUE_BYTES} bytes"),
                ));
            }
            match name {
                "id" => query.ids = uri_list(value, name)?,
                "idPattern" => {
                    query.id_pattern =
                        Some(Pattern::parse(value).map_err(|e| NgsiError::bad_data(name, e))?);
                }
                "type" => query.types = Some(TypeExpr::parse(value, name)?),
                "attrs" => query.attrs = Some(name_list(value, name)?),
                "q" => query.q = Some(QExpr::parse(value, name)?),
                "georel" => georel = Some(GeoRel::parse(value, name)?),
                "geometry" => geometry = Some(value),
                "coordinates" => {
                    coordinates = Some(serde_json::from_str::<serde_json::Value>(value).map_err(
                        |e| NgsiError::bad_data(name, format!("not a JSON array: {e}")),
                    )?);
                }
                "geoproperty" => geoproperty = Some(attribute_name(value, name)?),
                "limit" => limit = Some(number(value, name)?),
                "offset" => query.offset = number(value, name)?,
                "count" => query.count = boolean(value, name)?,
                "options" => {
                    for option in value.split(',') {
                        match option {
                            "keyValues" => options_kv = Some(Representation::KeyValues),
                            "normalized" => options_kv = Some(Representation::Normalized),
                            "count" => query.count = true,
                            "sysAttrs" | "concise" => {
                                return Err(NgsiError::unsupported(
                                    name,
                                    format!("{option} is not supported"),
                                ));
                            }
                            other => {
                                return Err(NgsiError::bad_data(
                                    name,
                                    format!("unknown option {other:?}"),
                                ));
                            }
                        }
                    }
                }
                "format" => {
                    format = Some(match value {
                        "normalized" => Representation::Normalized,
                        "simplified" | "keyValues" => Representation::KeyValues,
                        "concise" => {
                            return Err(NgsiError::unsupported(name, "concise is not supported"));
                        }
                        other => {
                            return Err(NgsiError::bad_data(
                                name,
                                format!("unknown format {other:?}"),
                            ));
                        }
                    });
                }
                _ => {} // lang: no LanguageProperty here.
            }
        }
        query.representation = format.or(options_kv).unwrap_or_default();
        query.limit = match limit {
            Some(l) if l > MAX_LIMIT => {
                return Err(NgsiError::new(
                    ErrorType::TooManyResults,
                    format!("limit: at most {MAX_LIMIT} entities per page"),
                ));
            }
            Some(0) if !query.count => {
                return Err(NgsiError::bad_data(
                    "limit",
                    "0 is only allowed with count=true",
                ));
            }
            Some(l) => l,
            None => DEFAULT_LIMIT,
        };
        query.geo = match (georel, geometry, coordinates) {
            (None, None, None) => {
                if geoproperty.is_some() {
                    return Err(NgsiError::bad_data(
                        "geoproperty",
                        "only with georel, geometry and coordinates",
                    ));
                }
                None
            }
            (Some(rel), Some(kind), Some(coords)) => {
                let geometry = Geometry::from_coordinates(kind, &coords, "coordinates")?;
                Some(GeoQuery::new(
                    rel,
                    geometry,
                    geoproperty.unwrap_or_else(|| "location".to_owned()),
                    "georel",
                )?)
            }
            (rel, kind, _) => {
                let missing = if rel.is_none() {
                    "georel"
                } else if kind.is_none() {
                    "geometry"
                } else {
                    "coordinates"
                };
                return Err(NgsiError::bad_data(
                    missing,
                    "a geo-query needs georel, geometry and coordinates",
                ));
            }
        };
        Ok(query)
    }

    /// Whether an entity passes every filter of the query.
    pub fn matches(&self, entity: &Entity) -> bool {
        (self.ids.is_empty() || self.ids.contains(&entity.id))
            && self
                .id_pattern
                .as_ref()
                .is_none_or(|p| p.is_match(&entity.id))
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.matches(&entity.entity_type))
            && self
                .attrs
                .as_ref()
                .is_none_or(|attrs| attrs.iter().any(|a| entity.attributes.contains_key(a)))
            && self.q.as_ref().is_none_or(|q| q.eval(entity))
            && self
                .geo
                .as_ref()
                .is_none_or(|g| match entity.attributes.get(&g.geoproperty) {
                    Some(crate::entity::Attribute::GeoProperty { value, .. }) => g.holds_for(value),
                    _ => false,
                })
    }

    /// An entity written as the query asks (representation and `attrs`).
    pub fn render(&self, entity: &Entity) -> serde_json::Value {
        entity.to_json(self.representation, self.attrs.as_deref())
    }
}

/// A page of the entities a query selects, and how many it selects in all.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection<'a> {
    /// The page, ordered by identifier (then type).
    pub entities: Vec<&'a Entity>,
    /// Every entity that matched, before paging (`NGSILD-Results-Count`).
    pub total: usize,
}

impl Selection<'_> {
    /// The body of an `application/json` answer: the page's entities as the query
    /// asks (the context goes in the `Link` header).
    pub fn body(&self, query: &Query) -> serde_json::Value {
        serde_json::Value::Array(self.entities.iter().map(|e| query.render(e)).collect())
    }

    /// The body of an `application/ld+json` answer: each entity carries `@context`.
    pub fn body_with_context(&self, query: &Query, context: &JsonLdContext) -> serde_json::Value {
        serde_json::Value::Array(
            self.entities
                .iter()
                .map(|e| context.with_body_context(query.render(e)))
                .collect(),
        )
    }
}

/// Filters, orders by identifier and pages. The order is total, so consecutive pages
/// (offset, offset + limit…) over the same entities list each match exactly once.
pub fn select<'a>(entities: &'a [Entity], query: &Query) -> Selection<'a> {
    let mut matched: Vec<&Entity> = entities.iter().filter(|e| query.matches(e)).collect();
    matched.sort_by(|a, b| {
        a.id.cmp(&b.id)
            .then_with(|| a.entity_type.cmp(&b.entity_type))
    });
    let total = matched.len();
    let page = matched
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .collect();
    Selection {
        entities: page,
        total,
    }
}

fn split_list<'a>(value: &'a str, name: &str) -> Result<Vec<&'a str>, NgsiError> {
    let items: Vec<&str> = value.split(',').collect();
    if items.len() > MAX_LIST_ITEMS {
        return Err(NgsiError::too_complex(
            name,
            format!("more than {MAX_LIST_ITEMS} items"),
        ));
    }
    if items.iter().any(|i| i.is_empty()) {
        return Err(NgsiError::bad_data(name, "an empty item in the list"));
    }
    Ok(items)
}

/// Whether a text is an absolute URI as an entity identifier needs (a scheme, no
/// whitespace or control characters, at most [`MAX_NAME_BYTES`]).
pub fn is_entity_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    text.len() <= MAX_NAME_BYTES
        && !rest.is_empty()
        && scheme
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
}

fn uri_list(value: &str, name: &str) -> Result<Vec<String>, NgsiError> {
    split_list(value, name)?
        .into_iter()
        .map(|id| {
            if is_entity_uri(id) {
                Ok(id.to_owned())
            } else {
                Err(NgsiError::bad_data(
                    name,
                    format!("{:?} is not a URI", truncate(id)),
                ))
            }
        })
        .collect()
}

fn name_list(value: &str, name: &str) -> Result<Vec<String>, NgsiError> {
    split_list(value, name)?
        .into_iter()
        .map(|a| attribute_name(a, name))
        .collect()
}

/// An attribute name: letters, digits and `_`, at most [`MAX_NAME_BYTES`].
pub fn attribute_name(value: &str, name: &str) -> Result<String, NgsiError> {
    if !value.is_empty()
        && value.len() <= MAX_NAME_BYTES
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_')
    {
        Ok(value.to_owned())
    } else {
        Err(NgsiError::bad_data(
            name,
            format!("{:?} is not an attribute name", truncate(value)),
        ))
    }
}

fn number(value: &str, name: &str) -> Result<usize, NgsiError> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|c| c.is_ascii_digit()) {
        return Err(NgsiError::bad_data(
            name,
            format!("{:?} is not a non-negative integer", truncate(value)),
        ));
    }
    value
        .parse()
        .map_err(|_| NgsiError::bad_data(name, "not a non-negative integer"))
}

fn boolean(value: &str, name: &str) -> Result<bool, NgsiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(NgsiError::bad_data(
            name,
            format!("{:?} is neither true nor false", truncate(other)),
        )),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{Attribute, Value};
    use crate::geo::Position;

    fn parse(pairs: &[(&str, &str)]) -> Result<Query, NgsiError> {
        Query::parse(pairs)
    }

    fn device(n: u32, lon: f64) -> Entity {
        Entity::new(format!("urn:ngsi-ld:Device:t:d{n:02}"), "Device")
            .with(
                "deviceState",
                Attribute::property(Value::Text(
                    if n.is_multiple_of(2) { "ok" } else { "silent" }.into(),
                )),
            )
            .with(
                "location",
                Attribute::geo(Geometry::Point(Position::new(lon, 48.0).expect("valid"))),
            )
    }

    #[test]
    fn defaults_and_paging() {
        let q = parse(&[]).expect("empty query");
        assert_eq!((q.limit, q.offset, q.count), (DEFAULT_LIMIT, 0, false));
        let all: Vec<Entity> = (0..30).rev().map(|n| device(n, 2.0)).collect();
        let s = select(&all, &q);
        assert_eq!((s.entities.len(), s.total), (20, 30));
        assert_eq!(s.entities[0].id, "urn:ngsi-ld:Device:t:d00");
        let q = parse(&[("offset", "25"), ("limit", "10"), ("count", "true")]).expect("valid");
        let s = select(&all, &q);
        assert_eq!((s.entities.len(), s.total), (5, 30));
    }

    #[test]
    fn filters() {
        let all: Vec<Entity> = (0..10)
            .map(|n| device(n, 2.0 + f64::from(n) * 0.01))
            .collect();
        let count = |pairs: &[(&str, &str)]| select(&all, &parse(pairs).expect("valid")).total;
        assert_eq!(count(&[("type", "Device")]), 10);
        assert_eq!(
            count(&[(
                "type",
                "https://smartdatamodels.org/dataModel.Device/Device"
            )]),
            10
        );
        assert_eq!(count(&[("type", "Building,Alert")]), 0);
        assert_eq!(count(&[("type", "Device;Alert")]), 0);
        assert_eq!(count(&[("q", "deviceState==\"ok\"")]), 5);
        assert_eq!(
            count(&[("id", "urn:ngsi-ld:Device:t:d01,urn:ngsi-ld:Device:t:d02")]),
            2
        );
        assert_eq!(count(&[("idPattern", "^urn:ngsi-ld:Device:t:d0.$")]), 10);
        assert_eq!(count(&[("idPattern", ":d01$")]), 1);
        assert_eq!(count(&[("attrs", "deviceState,nothing")]), 10);
        assert_eq!(count(&[("attrs", "nothing")]), 0);
    }

    #[test]
    fn geo_near() {
        let all: Vec<Entity> = (0..10)
            .map(|n| device(n, 2.0 + f64::from(n) * 0.01))
            .collect();
        let q = parse(&[
            ("georel", "near;maxDistance==2000"),
            ("geometry", "Point"),
            ("coordinates", "[2.0,48.0]"),
        ])
        .expect("valid");
        // 0.01° of longitude at 48°N is about 744 m: d00, d01, d02.
        assert_eq!(select(&all, &q).total, 3);
    }

    #[test]
    fn errors_name_the_parameter() {
        let err = |pairs: &[(&str, &str)]| parse(pairs).expect_err("refused");
        assert_eq!(
            err(&[("limit", "1001")]).error_type,
            ErrorType::TooManyResults
        );
        assert!(err(&[("limit", "0")]).detail.starts_with("limit:"));
        assert!(parse(&[("limit", "0"), ("count", "true")]).is_ok());
        assert!(err(&[("limit", "-1")]).detail.starts_with("limit:"));
        assert!(err(&[("id", "not a uri")]).detail.starts_with("id:"));
        assert!(
            err(&[("idPattern", "a|b")])
                .detail
                .starts_with("idPattern:")
        );
        assert!(
            err(&[("georel", "near;maxDistance==10")])
                .detail
                .starts_with("geometry:")
        );
        assert!(
            err(&[
                ("georel", "within"),
                ("geometry", "Point"),
                ("coordinates", "[1,2]")
            ])
            .detail
            .starts_with("georel:")
        );
        assert!(
            err(&[("coordinates", "[1,")])
                .detail
                .starts_with("coordinates:")
        );
        assert!(
            err(&[("type", "A"), ("type", "B")])
                .detail
                .contains("more than once")
        );
        assert_eq!(
            err(&[("csf", "x")]).error_type,
            ErrorType::OperationNotSupported
        );
        assert!(err(&[("options", "nope")]).detail.starts_with("options:"));
        assert_eq!(
            parse(&[("unknownParam", "1")]).map(|q| q.limit),
            Ok(DEFAULT_LIMIT)
        );
    }

    #[test]
    fn representation() {
        let r = |pairs: &[(&str, &str)]| parse(pairs).expect("valid").representation;
        assert_eq!(r(&[("options", "keyValues")]), Representation::KeyValues);
        assert_eq!(r(&[("format", "simplified")]), Representation::KeyValues);
        assert_eq!(
            r(&[("options", "keyValues"), ("format", "normalized")]),
            Representation::Normalized
        );
        assert!(parse(&[("options", "count")]).expect("valid").count);
    }
}
