//! Subscriptions (ETSI GS CIM 009, clauses 5.2.12, 5.3.1, 5.8): the creation body read
//! from untrusted JSON, matching, the notification sent, and the subscription as
//! `GET /subscriptions` shows it.
//!
//! Read from the body: `id` (optional), `type` (`Subscription`), `entities`
//! (`[{type, id?, idPattern?}]`), `watchedAttributes`, `q`, `geoQ`, `notification`
//! (`attributes`, `format`, `endpoint: {uri, accept}`), `throttling` (seconds),
//! `expiresAt`, `isActive`, and `@context` (checked as [`JsonLdContext`] says).
//! `subscriptionName` and `description` are free text and are not kept. Members NGSI-LD
//! defines but this crate does not implement (`timeInterval`, `temporalQ`, `scopeQ`,
//! `csf`, `lang`, `notificationTrigger`, `showChanges`, `sysAttrs`, `receiverInfo`,
//! `notifierInfo`…) are refused with `OperationNotSupported`; other members are ignored.
//!
//! The endpoint is `http` or `https`, with a host and no user information (no
//! credentials in URLs), at most [`MAX_URI_BYTES`]. Which hosts may be notified (no
//! internal addresses, an allow-list) is the caller's policy: [`Endpoint::host`].

use serde_json::{Map, Value, json};

use crate::context::{JSON_LD_MEDIA_TYPE, JSON_MEDIA_TYPE, JsonLdContext};
use crate::entity::{Entity, Representation};
use crate::error::NgsiError;
use crate::geo::{GeoQuery, GeoRel, Geometry};
use crate::pattern::Pattern;
use crate::q::QExpr;
use crate::query::{MAX_LIST_ITEMS, TypeExpr, attribute_name, is_entity_uri};
use crate::time::Timestamp;

/// The largest subscription body read.
pub const MAX_SUBSCRIPTION_BYTES: usize = 64 * 1024;
/// The longest endpoint URI.
pub const MAX_URI_BYTES: usize = 2048;
/// The longest throttling, in seconds (a year).
pub const MAX_THROTTLING_S: f64 = 366.0 * 86_400.0;

const UNSUPPORTED: &[&str] = &[
    "timeInterval",
    "temporalQ",
    "scopeQ",
    "csf",
    "lang",
    "notificationTrigger",
    "datasetId",
    "jsonldContext",
    "expandValues",
];
const UNSUPPORTED_NOTIFICATION: &[&str] = &["showChanges", "sysAttrs", "timeInterval"];
const UNSUPPORTED_ENDPOINT: &[&str] = &["receiverInfo", "notifierInfo"];

/// Which entities a subscription is about.
#[derive(Clone, Debug, PartialEq)]
pub struct EntitySelector {
    pub types: TypeExpr,
    pub id: Option<String>,
    pub id_pattern: Option<Pattern>,
}

impl EntitySelector {
    pub fn matches(&self, entity: &Entity) -> bool {
        self.types.matches(&entity.entity_type)
            && self.id.as_ref().is_none_or(|id| *id == entity.id)
            && self
                .id_pattern
                .as_ref()
                .is_none_or(|p| p.is_match(&entity.id))
    }

    fn to_json(&self) -> Value {
        let mut out = Map::new();
        if let Some(id) = &self.id {
            out.insert("id".into(), json!(id));
        }
        if let Some(p) = &self.id_pattern {
            out.insert("idPattern".into(), json!(p.as_str()));
        }
        out.insert("type".into(), json!(type_text(&self.types)));
        Value::Object(out)
    }
}

fn type_text(t: &TypeExpr) -> String {
    match t {
        TypeExpr::Name(n) => n.clone(),
        TypeExpr::Or(items) => items
            .iter()
            .map(nested_type_text)
            .collect::<Vec<_>>()
            .join("|"),
        TypeExpr::And(items) => items
            .iter()
            .map(nested_type_text)
            .collect::<Vec<_>>()
            .join(";"),
    }
}

fn nested_type_text(t: &TypeExpr) -> String {
    match t {
        TypeExpr::Name(n) => n.clone(),
        other => format!("({})", type_text(other)),
    }
}

/// The media type notifications are sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationMedia {
    /// `application/json`, the context in a `Link` header.
    Json,
    /// `application/ld+json`, the context in the body.
    JsonLd,
}

impl NotificationMedia {
    pub fn media_type(self) -> &'static str {
        match self {
            NotificationMedia::Json => JSON_MEDIA_TYPE,
            NotificationMedia::JsonLd => JSON_LD_MEDIA_TYPE,
        }
    }
}

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    uri: String,
    host: String,
    pub accept: NotificationMedia,
}

impl Endpoint {
    /// An endpoint URI, checked (see the module's documentation).
    pub fn new(uri: &str, accept: NotificationMedia) -> Result<Endpoint, NgsiError> {
        let name = "notification.endpoint.uri";
        if uri.len() > MAX_URI_BYTES {
            return Err(NgsiError::bad_data(
                name,
                format!("longer than {MAX_URI_BYTES} bytes"),
            ));
        }
        if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(NgsiError::bad_data(
                name,
                "white space or control characters",
            ));
        }
        let has_scheme = |scheme: &str| {
            uri.as_bytes()
                .get(..scheme.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(scheme.as_bytes()))
        };
        let rest = if has_scheme("https://") {
            &uri[8..]
        } else if has_scheme("http://") {
            &uri[7..]
        } else {
            return Err(NgsiError::bad_data(
                name,
                "only http and https endpoints are notified",
            ));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(NgsiError::bad_data(
                name,
                "user information (credentials) in the URI",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| NgsiError::bad_data(name, "unclosed IPv6 literal"))?;
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return Err(NgsiError::bad_data(name, "invalid IPv6 literal"));
            }
            (h, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.len() > 253 {
            return Err(NgsiError::bad_data(name, "no host"));
        }
        if !authority.starts_with('[')
            && !host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        {
            return Err(NgsiError::bad_data(name, "invalid host name"));
        }
        if let Some(port) = port
            && !(port.len() <= 5
                && !port.is_empty()
                && port.bytes().all(|c| c.is_ascii_digit())
                && port.parse::<u32>().is_ok_and(|p| (1..=65_535).contains(&p)))
        {
            return Err(NgsiError::bad_data(name, "invalid port"));
        }
        Ok(Endpoint {
            uri: uri.to_owned(),
            host: host.to_ascii_lowercase(),
            accept,
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The host, lower case (an IPv6 literal without its brackets), for the caller's
    /// policy on where notifications may go.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// What a notification carries and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct NotificationParams {
    /// Only these attributes (all when `None`).
    pub attributes: Option<Vec<String>>,
    pub format: Representation,
    pub endpoint: Endpoint,
}

/// A subscription as a client asked for it.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionRequest {
    /// The identifier the client chose, if any.
    pub id: Option<String>,
    pub entities: Vec<EntitySelector>,
    pub watched_attributes: Option<Vec<String>>,
    /// The `q` as written, and parsed.
    pub q: Option<(String, QExpr)>,
    pub geo_q: Option<GeoQuery>,
    pub notification: NotificationParams,
    /// Seconds between two notifications at least.
    pub throttling: Option<f64>,
    pub expires_at: Option<Timestamp>,
    pub is_active: bool,
}

/// Reads a subscription creation body (`POST /ngsi-ld/v1/subscriptions`). The body's
/// `@context`, if any, must be one `context` accepts.
pub fn parse_subscription(
    body: &[u8],
    context: &JsonLdContext,
) -> Result<SubscriptionRequest, NgsiError> {
    if body.len() > MAX_SUBSCRIPTION_BYTES {
        return Err(NgsiError::too_complex(
            "body",
            format!("larger than {MAX_SUBSCRIPTION_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| NgsiError::invalid("body", format!("not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(NgsiError::invalid("body", "not a JSON object"));
    };
    for key in obj.keys() {
        if UNSUPPORTED.contains(&key.as_str()) {
            return Err(NgsiError::unsupported(key, "not supported by this server"));
        }
    }
    if let Some(ctx) = obj.get("@context") {
        context.check_body_context(ctx)?;
    }
    match obj.get("type") {
        Some(Value::String(t)) if t == "Subscription" => {}
        _ => return Err(NgsiError::bad_data("type", "must be \"Subscription\"")),
    }
    let id = match obj.get("id") {
        None => None,
        Some(Value::String(id)) if is_entity_uri(id) => Some(id.clone()),
        Some(_) => return Err(NgsiError::bad_data("id", "must be a URI")),
    };
    let entities = match obj.get("entities") {
        None => Vec::new(),
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_LIST_ITEMS => items
            .iter()
            .enumerate()
            .map(|(i, v)| selector(v, i))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(NgsiError::bad_data(
                "entities",
                format!("an array of 1 to {MAX_LIST_ITEMS} entity selectors"),
            ));
        }
    };
    let watched_attributes = obj
        .get("watchedAttributes")
        .map(|v| names(v, "watchedAttributes"))
        .transpose()?;
    if entities.is_empty() && watched_attributes.is_none() {
        return Err(NgsiError::bad_data(
            "entities",
            "entities or watchedAttributes must be given",
        ));
    }
    let q = match obj.get("q") {
        None => None,
        Some(Value::String(text)) => Some((text.clone(), QExpr::parse(text, "q")?)),
        Some(_) => return Err(NgsiError::bad_data("q", "must be a string")),
    };
    let geo_q = obj.get("geoQ").map(geo_query).transpose()?;
    let notification = notification(obj.get("notification"))?;
    let throttling = match obj.get("throttling") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|t| t.is_finite() && (0.0..=MAX_THROTTLING_S).contains(t))
                .ok_or_else(|| {
                    NgsiError::bad_data("throttling", "a number of seconds, 0 to a year")
                })?,
        ),
    };
    let expires_at = match obj.get("expiresAt") {
        None => None,
        Some(Value::String(t)) => {
            Some(Timestamp::parse(t).map_err(|e| NgsiError::bad_data("expiresAt", e))?)
        }
        Some(_) => return Err(NgsiError::bad_data("expiresAt", "a date-time string")),
    };
    let is_active = match obj.get("isActive") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(NgsiError::bad_data("isActive", "true or false")),
    };
    Ok(SubscriptionRequest {
        id,
        entities,
        watched_attributes,
        q,
        geo_q,
        notification,
        throttling,
        expires_at,
        is_active,
    })
}

fn selector(v: &Value, i: usize) -> Result<EntitySelector, NgsiError> {
    let name = format!("entities[{i}]");
    let obj = v
        .as_object()
        .ok_or_else(|| NgsiError::bad_data(&name, "an object {type, id?, idPattern?}"))?;
    let types = match obj.get("type") {
        Some(Value::String(t)) => TypeExpr::parse(t, &format!("{name}.type"))?,
        _ => {
            return Err(NgsiError::bad_data(
                &format!("{name}.type"),
                "a type name is required",
            ));
        }
    };
    let id = match obj.get("id") {
        None => None,
        Some(Value::String(id)) if is_entity_uri(id) => Some(id.clone()),
        Some(_) => return Err(NgsiError::bad_data(&format!("{name}.id"), "must be a URI")),
    };
    let id_pattern = match obj.get("idPattern") {
        None => None,
        Some(Value::String(p)) => Some(
            Pattern::parse(p).map_err(|e| NgsiError::bad_data(&format!("{name}.idPattern"), e))?,
        ),
        Some(_) => {
            return Err(NgsiError::bad_data(
                &format!("{name}.idPattern"),
                "must be a string",
            ));
        }
    };
    Ok(EntitySelector {
        types,
        id,
        id_pattern,
    })
}

fn names(v: &Value, name: &str) -> Result<Vec<String>, NgsiError> {
    match v {
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_LIST_ITEMS => items
            .iter()
            .map(|i| match i {
                Value::String(s) => attribute_name(s, name),
                _ => Err(NgsiError::bad_data(name, "attribute names are strings")),
            })
            .collect(),
        _ => Err(NgsiError::bad_data(
            name,
            format!("an array of 1 to {MAX_LIST_ITEMS} attribute names"),
        )),
    }
}

fn geo_query(v: &Value) -> Result<GeoQuery, NgsiError> {
    let name = "geoQ";
    let obj = v
        .as_object()
        .ok_or_else(|| NgsiError::bad_data(name, "an object {georel, geometry, coordinates}"))?;
    let text = |key: &str| -> Result<&str, NgsiError> {
        obj.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| NgsiError::bad_data(&format!("geoQ.{key}"), "a string is required"))
    };
    let georel = GeoRel::parse(text("georel")?, "geoQ.georel")?;
    let kind = text("geometry")?;
    let coordinates = match obj.get("coordinates") {
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
            NgsiError::bad_data("geoQ.coordinates", format!("not a JSON array: {e}"))
        })?,
        Some(other) => other.clone(),
        None => return Err(NgsiError::bad_data("geoQ.coordinates", "required")),
    };
    let geometry = Geometry::from_coordinates(kind, &coordinates, "geoQ.coordinates")?;
    let geoproperty = match obj.get("geoproperty") {
        None => "location".to_owned(),
        Some(Value::String(p)) => attribute_name(p, "geoQ.geoproperty")?,
        Some(_) => return Err(NgsiError::bad_data("geoQ.geoproperty", "an attribute name")),
    };
    GeoQuery::new(georel, geometry, geoproperty, "geoQ.georel")
}

fn notification(v: Option<&Value>) -> Result<NotificationParams, NgsiError> {
    let obj = v.and_then(Value::as_object).ok_or_else(|| {
        NgsiError::bad_data(
            "notification",
            "an object {endpoint, attributes?, format?} is required",
        )
    })?;
    for key in obj.keys() {
        if UNSUPPORTED_NOTIFICATION.contains(&key.as_str()) {
            return Err(NgsiError::unsupported(
                &format!("notification.{key}"),
                "not supported by this server",
            ));
        }
    }
    let attributes = obj
        .get("attributes")
        .map(|v| names(v, "notification.attributes"))
        .transpose()?;
    let format = match obj.get("format").map(|f| f.as_str()) {
        None | Some(Some("normalized")) => Representation::Normalized,
        Some(Some("keyValues" | "simplified")) => Representation::KeyValues,
        Some(Some("concise")) => {
            return Err(NgsiError::unsupported(
                "notification.format",
                "concise is not supported",
            ));
        }
        Some(_) => {
            return Err(NgsiError::bad_data(
                "notification.format",
                "normalized, keyValues or simplified",
            ));
        }
    };
    let endpoint = obj
        .get("endpoint")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            NgsiError::bad_data(
                "notification.endpoint",
                "an object {uri, accept?} is required",
            )
        })?;
    for key in endpoint.keys() {
        if UNSUPPORTED_ENDPOINT.contains(&key.as_str()) {
            return Err(NgsiError::unsupported(
                &format!("notification.endpoint.{key}"),
                "not supported by this server",
            ));
        }
    }
    let accept = match endpoint.get("accept").map(|a| a.as_str()) {
        None | Some(Some(JSON_MEDIA_TYPE)) => NotificationMedia::Json,
        Some(Some(JSON_LD_MEDIA_TYPE)) => NotificationMedia::JsonLd,
        Some(Some("application/geo+json")) => {
            return Err(NgsiError::unsupported(
                "notification.endpoint.accept",
                "GeoJSON notifications are not supported",
            ));
        }
        Some(_) => {
            return Err(NgsiError::bad_data(
                "notification.endpoint.accept",
                "application/json or application/ld+json",
            ));
        }
    };
    let uri = endpoint.get("uri").and_then(Value::as_str).ok_or_else(|| {
        NgsiError::bad_data("notification.endpoint.uri", "a URI string is required")
    })?;
    Ok(NotificationParams {
        attributes,
        format,
        endpoint: Endpoint::new(uri, accept)?,
    })
}

/// A subscription's state as `GET /subscriptions` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Active,
    Paused,
    Expired,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Paused => "paused",
            SubscriptionStatus::Expired => "expired",
        }
    }
}

/// A subscription held by the server, with its delivery counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub id: String,
    pub request: SubscriptionRequest,
    pub times_sent: u64,
    pub times_failed: u64,
    pub last_notification: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
}

impl Subscription {
    /// A subscription from a request: the client's identifier, or `make_id()` when it
    /// gave none (the caller generates: `urn:ngsi-ld:Subscription:<uuid>`…). Whether the
    /// identifier exists already (`AlreadyExists`) is the caller's check.
    pub fn new(request: SubscriptionRequest, make_id: impl FnOnce() -> String) -> Subscription {
        let id = request.id.clone().unwrap_or_else(make_id);
        Subscription {
            id,
            request,
            times_sent: 0,
            times_failed: 0,
            last_notification: None,
            last_success: None,
            last_failure: None,
        }
    }

    /// Whether an entity is one the subscription is about: a selector matches (or there
    /// is none), and the `q` and `geoQ` hold.
    pub fn matches(&self, entity: &Entity) -> bool {
        let r = &self.request;
        (r.entities.is_empty() || r.entities.iter().any(|s| s.matches(entity)))
            && r.q.as_ref().is_none_or(|(_, q)| q.eval(entity))
            && r.geo_q
                .as_ref()
                .is_none_or(|g| match entity.attributes.get(&g.geoproperty) {
                    Some(crate::entity::Attribute::GeoProperty { value, .. }) => g.holds_for(value),
                    _ => false,
                })
    }

    /// Whether a change of these attributes concerns the subscription (any change does
    /// when it watches no attribute in particular).
    pub fn watches(&self, changed: &[&str]) -> bool {
        self.request
            .watched_attributes
            .as_ref()
            .is_none_or(|w| changed.iter().any(|c| w.iter().any(|a| a == c)))
    }

    pub fn status(&self, now: Timestamp) -> SubscriptionStatus {
        if self.request.expires_at.is_some_and(|e| e <= now) {
            SubscriptionStatus::Expired
        } else if self.request.is_active {
            SubscriptionStatus::Active
        } else {
            SubscriptionStatus::Paused
        }
    }

    /// Whether a notification may be sent now: active, and the throttling elapsed since
    /// the last one.
    pub fn may_notify(&self, now: Timestamp) -> bool {
        if self.status(now) != SubscriptionStatus::Active {
            return false;
        }
        match (self.request.throttling, self.last_notification) {
            (Some(t), Some(last)) => (now.millis() - last.millis()) as f64 >= t * 1000.0,
            _ => true,
        }
    }

    /// Records a notification attempt and its outcome.
    pub fn record(&mut self, at: Timestamp, delivered: bool) {
        self.times_sent += 1;
        self.last_notification = Some(at);
        if delivered {
            self.last_success = Some(at);
        } else {
            self.times_failed += 1;
            self.last_failure = Some(at);
        }
    }

    /// The `Link` header of a notification sent as `application/json`; `None` when it
    /// goes as `application/ld+json` (the context is then in the body).
    pub fn notification_link_header(&self, context: &JsonLdContext) -> Option<String> {
        match self.request.notification.endpoint.accept {
            NotificationMedia::Json => Some(context.link_header()),
            NotificationMedia::JsonLd => None,
        }
    }

    /// The subscription as `GET /subscriptions/{id}` shows it.
    pub fn to_json(&self, now: Timestamp) -> Value {
        let r = &self.request;
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("type".into(), json!("Subscription"));
        if !r.entities.is_empty() {
            out.insert(
                "entities".into(),
                Value::Array(r.entities.iter().map(EntitySelector::to_json).collect()),
            );
        }
        if let Some(w) = &r.watched_attributes {
            out.insert("watchedAttributes".into(), json!(w));
        }
        if let Some((text, _)) = &r.q {
            out.insert("q".into(), json!(text));
        }
        if let Some(g) = &r.geo_q {
            out.insert("geoQ".into(), g.to_json());
        }
        let mut n = Map::new();
        if let Some(a) = &r.notification.attributes {
            n.insert("attributes".into(), json!(a));
        }
        n.insert("format".into(), json!(r.notification.format.name()));
        n.insert(
            "endpoint".into(),
            json!({
                "uri": r.notification.endpoint.uri(),
                "accept": r.notification.endpoint.accept.media_type(),
            }),
        );
        let failed = match (self.last_failure, self.last_success) {
            (Some(f), Some(s)) => f > s,
            (Some(_), None) => true,
            _ => false,
        };
        n.insert("status".into(), json!(if failed { "failed" } else { "ok" }));
        n.insert("timesSent".into(), json!(self.times_sent));
        n.insert("timesFailed".into(), json!(self.times_failed));
        for (key, at) in [
            ("lastNotification", self.last_notification),
            ("lastSuccess", self.last_success),
            ("lastFailure", self.last_failure),
        ] {
            if let Some(at) = at {
                n.insert(key.into(), json!(at.to_string()));
            }
        }
        out.insert("notification".into(), Value::Object(n));
        if let Some(t) = r.throttling {
            out.insert("throttling".into(), json!(t));
        }
        if let Some(e) = r.expires_at {
            out.insert("expiresAt".into(), json!(e.to_string()));
        }
        out.insert("isActive".into(), json!(r.is_active));
        out.insert("status".into(), json!(self.status(now).as_str()));
        Value::Object(out)
    }
}

/// The NGSI-LD Notification for a subscription and the entities it reports, in the
/// format and media type the subscription asks: `{"id":
/// "urn:ngsi-ld:Notification:<hash of the subscription id>-<sequence>", "type":
/// "Notification", "subscriptionId", "notifiedAt", "data": […]}`, with `@context` when
/// it goes as `application/ld+json`. The sequence is `times_sent + 1`: call
/// [`Subscription::record`] after sending.
pub fn notification_body(
    subscription: &Subscription,
    entities: &[Entity],
    notified_at: Timestamp,
    context: &JsonLdContext,
) -> Value {
    let n = &subscription.request.notification;
    let data: Vec<Value> = entities
        .iter()
        .map(|e| e.to_json(n.format, n.attributes.as_deref()))
        .collect();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in subscription.id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let body = json!({
        "id": format!("urn:ngsi-ld:Notification:{hash:016x}-{}", subscription.times_sent + 1),
        "type": "Notification",
        "subscriptionId": subscription.id,
        "notifiedAt": notified_at.to_string(),
        "data": data,
    });
    match n.endpoint.accept {
        NotificationMedia::JsonLd => context.with_body_context(body),
        NotificationMedia::Json => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::CORE_CONTEXT_URL;
    use crate::entity::{Attribute, Value as V};
    use crate::geo::Position;

    fn ctx() -> JsonLdContext {
        JsonLdContext::new("https://beffroi.example/ngsi-ld/v1/jsonldContexts/beffroi")
    }

    fn parse(v: Value) -> Result<SubscriptionRequest, NgsiError> {
        parse_subscription(v.to_string().as_bytes(), &ctx())
    }

    fn body() -> Value {
        json!({
            "type": "Subscription",
            "entities": [{"type": "WaterObserved", "idPattern": "^urn:ngsi-ld:WaterObserved:valmont:.*"}],
            "watchedAttributes": ["waterLevel"],
            "q": "waterLevel>2.5",
            "geoQ": {"georel": "near;maxDistance==5000", "geometry": "Point", "coordinates": [4.9, 44.9]},
            "notification": {
                "attributes": ["waterLevel"],
                "format": "keyValues",
                "endpoint": {"uri": "https://partner.example/notify", "accept": "application/ld+json"}
            },
            "throttling": 60,
            "expiresAt": "2027-01-01T00:00:00Z",
            "@context": [CORE_CONTEXT_URL],
        })
    }

    fn gauge(level: f64) -> Entity {
        Entity::new("urn:ngsi-ld:WaterObserved:valmont:g1", "WaterObserved")
            .with("waterLevel", Attribute::property(V::Number(level)))
            .with(
                "location",
                Attribute::geo(Geometry::Point(Position::new(4.91, 44.9).expect("valid"))),
            )
    }

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).expect("valid")
    }

    #[test]
    fn reads_matches_and_notifies() {
        let req = parse(body()).expect("valid subscription");
        let mut sub = Subscription::new(req, || "urn:ngsi-ld:Subscription:generated".into());
        assert_eq!(sub.id, "urn:ngsi-ld:Subscription:generated");
        assert!(sub.matches(&gauge(3.0)));
        assert!(!sub.matches(&gauge(2.0)));
        assert!(sub.watches(&["waterLevel"]));
        assert!(!sub.watches(&["flow"]));
        let now = at("2026-03-01T08:00:00Z");
        assert!(sub.may_notify(now));
        let n = notification_body(&sub, &[gauge(3.0)], now, &ctx());
        assert_eq!(n["type"], "Notification");
        assert_eq!(n["subscriptionId"], "urn:ngsi-ld:Subscription:generated");
        assert_eq!(n["notifiedAt"], "2026-03-01T08:00:00.000Z");
        assert_eq!(
            n["data"][0],
            json!({"id": "urn:ngsi-ld:WaterObserved:valmont:g1", "type": "WaterObserved", "waterLevel": 3.0})
        );
        assert_eq!(n["@context"][1], CORE_CONTEXT_URL);
        sub.record(now, false);
        assert!(!sub.may_notify(at("2026-03-01T08:00:30Z")), "throttled");
        assert!(sub.may_notify(at("2026-03-01T08:01:00Z")));
        let shown = sub.to_json(at("2026-03-01T08:01:00Z"));
        assert_eq!(shown["status"], "active");
        assert_eq!(shown["notification"]["status"], "failed");
        assert_eq!(shown["notification"]["timesSent"], 1);
        assert_eq!(
            shown["notification"]["lastNotification"],
            "2026-03-01T08:00:00.000Z"
        );
        assert_eq!(shown["geoQ"]["coordinates"], json!([4.9, 44.9]));
        assert_eq!(sub.to_json(at("2027-06-01T00:00:00Z"))["status"], "expired");
    }

    #[test]
    fn refusals_name_the_member() {
        let with = |path: &[&str], v: Value| {
            let mut b = body();
            let mut cur = &mut b;
            for p in &path[..path.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[path[path.len() - 1]] = v;
            parse(b).expect_err("refused")
        };
        let uri = |u: &str| with(&["notification", "endpoint", "uri"], json!(u));
        assert!(uri("ftp://x.example/").detail.contains("http"));
        assert!(uri("http://").detail.contains("host"));
        assert!(Endpoint::new("HTTP://x.example/é", NotificationMedia::Json).is_ok());
        assert!(
            uri("https://user:pw@x.example/")
                .detail
                .contains("credentials")
        );
        assert!(uri("https:///path").detail.contains("host"));
        assert!(uri("https://x.example:99999/").detail.contains("port"));
        assert!(Endpoint::new("http://[::1]:8080/n", NotificationMedia::Json).is_ok());
        assert!(with(&["type"], json!("Sub")).detail.starts_with("type:"));
        assert!(with(&["q"], json!("a==")).detail.starts_with("q:"));
        assert!(
            with(&["entities"], json!([{"id": "urn:x:1"}]))
                .detail
                .starts_with("entities[0].type")
        );
        assert!(
            with(&["throttling"], json!(-1))
                .detail
                .starts_with("throttling")
        );
        assert_eq!(with(&["timeInterval"], json!(10)).status(), 422);
        assert_eq!(
            with(&["@context"], json!("https://elsewhere.example/c.jsonld")).status(),
            503
        );
        assert!(parse_subscription(b"not json", &ctx()).is_err());
    }
}
