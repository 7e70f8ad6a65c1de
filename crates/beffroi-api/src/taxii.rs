//! Cyber threat sharing: the territory's cyber incidents as STIX 2.1 over a TAXII 2.1
//! server, read by partners and the regional CSIRT under `taxii.toml`.
//!
//! - **Who reads what is decided once.** Each API root is a trust group with its readers
//!   (HTTP Basic: a name and a token whose SHA-256 the file holds) and its highest TLP. A
//!   request is authenticated against the root it names; discovery lists only the roots
//!   the caller reads. The store query selects `cyber` incidents updated within the
//!   sharing window, and the root's TLP ceiling is applied before anything is written.
//! - **What is written** comes from [`beffroi_taxii::export_findings`], whose input
//!   holds no free text: the ATT&CK for ICS technique, the anomaly's code, the device's
//!   kind, times, a count and the attack's source addresses when the incident is keyed on
//!   one (addresses private to the territory's networks are dropped there). Never a title,
//!   a note, a device's name, a user name or a pseudonym.
//! - **The protocol.** Discovery, API root, collections (one read-only collection per
//!   root), objects with `added_after`, `match[…]`, `limit` and `next`, one object, its
//!   versions, the manifest; the exact media type `application/taxii+json;version=2.1` on
//!   every answer and required in `Accept` (406 otherwise); errors as TAXII error
//!   resources. An object's `date_added` is its version's time: a later version of an
//!   incident's objects is added after the earlier one, so `added_after` polling sees it.
//!   The store keeps the latest version of an incident only: `versions` lists that one.
//! - **Every read is audited** (`taxii.read`, with the reader, the root and the number of
//!   objects), and so is every refused credential (`taxii.denied`).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use beffroi_core::incident::Incident;
use beffroi_core::{AuditOutcome, Duration, Territory};
use beffroi_engine::store::IncidentQuery;
use beffroi_taxii::collection::StoredObject;
use beffroi_taxii::query::{Endpoint, Query};
use beffroi_taxii::taxii::{
    ApiRoot, Collection, Collections, Discovery, HEADER_DATE_ADDED_FIRST, HEADER_DATE_ADDED_LAST,
    TaxiiError,
};
use beffroi_taxii::{CyberFinding, Producer, StixId, TAXII_MEDIA_TYPE, Technique, Tlp};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile, parse_duration};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;

/// Cyber incidents read per request, at most (the store's page).
const MAX_INCIDENTS: usize = 500;
/// The largest request body a root accepts (it accepts none: it is read-only).
const MAX_CONTENT_LENGTH: u64 = 1 << 20;

/// One reader of a root: a partner or the CSIRT.
#[derive(Clone, Debug, PartialEq)]
pub struct Reader {
    pub name: String,
    token_sha256: [u8; 32],
}

/// An API root: one trust group.
#[derive(Clone, Debug, PartialEq)]
pub struct Root {
    /// The path segment (`/taxii2/<name>/`).
    pub name: String,
    pub title: String,
    /// The highest TLP its readers may receive.
    pub max_tlp: Tlp,
    pub readers: Vec<Reader>,
    /// Its one collection's identifier (stable: a UUID of the territory and the root).
    pub collection: String,
}

/// A partner's TAXII collection whose indicators are pulled (the binary polls it).
#[derive(Clone, Debug, PartialEq)]
pub struct PullSource {
    /// A short name (`a-z 0-9 - _`): the source of the networks it flags.
    pub name: String,
    /// The collection's objects URL (`…/collections/<id>/objects/`).
    pub url: String,
    /// HTTP Basic user name, if the partner asks for one.
    pub user: Option<String>,
    /// The environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    pub every: Duration,
}

/// `taxii.toml`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct TaxiiPolicy {
    pub title: String,
    /// The producer's public name in the exported identity.
    pub name: String,
    /// The TLP of every exported object.
    pub tlp: Tlp,
    /// Cyber incidents updated within this window are shared.
    pub window: Duration,
    /// How long an indicator stays valid after the incident was last seen.
    pub indicator_lifetime: Duration,
    pub roots: Vec<Root>,
    pub pulls: Vec<PullSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tlp: Option<toml::Spanned<String>>,
    #[serde(default)]
    window: Option<toml::Spanned<String>>,
    #[serde(default)]
    indicator_lifetime: Option<toml::Spanned<String>>,
    #[serde(default)]
    root: Vec<toml::Spanned<RawRoot>>,
    #[serde(default)]
    pull: Vec<toml::Spanned<RawPull>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    name: String,
    #[serde(default)]
    title: Option<String>,
    max_tlp: String,
    #[serde(default)]
    reader: Vec<RawReader>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReader {
    name: String,
    token_sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPull {
    name: String,
    url: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    every: Option<String>,
}

fn short_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// What is wrong with a root's, a reader's or a source's name: its alphabet (it goes into
/// URLs and credentials), or a second declaration.
fn name_error(name: &str, what: &str, taken: bool) -> Option<String> {
    if !short_name(name) {
        Some(format!("`{name}`: 1 to 40 of a-z, 0-9, `-` and `_`"))
    } else if taken {
        Some(format!("{what} `{name}` is declared twice"))
    } else {
        None
    }
}

fn tlp_of(s: &str) -> Option<Tlp> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_prefix("tlp:").unwrap_or(&s);
    Tlp::ALL
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
}

/// The SHA-256 a reader's token is checked against (what `taxii.toml` holds, in hex).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Reads `taxii.toml`; every error of the file at once.
pub fn parse_policy(src: &SourceFile, territory: &Territory) -> Result<TaxiiPolicy, ConfigErrors> {
    let raw: RawPolicy = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut fail = |line: usize, field: &str, msg: String| {
        errors.push(ConfigError::new(
            src.path.clone(),
            Some(line),
            Some(field),
            msg,
        ));
    };
    let tlp = match &raw.tlp {
        None => Tlp::Amber,
        Some(t) => tlp_of(t.get_ref()).unwrap_or_else(|| {
            fail(
                src.line(t.span().start),
                "tlp",
                "white, green, amber or red".into(),
            );
            Tlp::Amber
        }),
    };
    let mut duration = |v: &Option<toml::Spanned<String>>, field: &str, default: Duration| match v {
        None => default,
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) if d.millis() > 0 => d,
            Ok(_) => {
                fail(
                    src.line(v.span().start),
                    field,
                    "must be longer than zero".into(),
                );
                default
            }
            Err(e) => {
                fail(src.line(v.span().start), field, e);
                default
            }
        },
    };
    let day = Duration(24 * 3_600_000);
    let window = duration(&raw.window, "window", Duration(30 * day.0));
    let indicator_lifetime = duration(
        &raw.indicator_lifetime,
        "indicator_lifetime",
        Duration(30 * day.0),
    );
    let mut roots: Vec<Root> = Vec::new();
    for (i, r) in raw.root.iter().enumerate() {
        let line = src.line(r.span().start);
        let r = r.get_ref();
        let field = |f: &str| format!("root[{i}].{f}");
        if let Some(m) = name_error(&r.name, "root", roots.iter().any(|o| o.name == r.name)) {
            fail(line, &field("name"), m);
        }
        let max_tlp = tlp_of(&r.max_tlp).unwrap_or_else(|| {
            fail(line, &field("max_tlp"), "white, green, amber or red".into());
            Tlp::White
        });
        let mut readers: Vec<Reader> = Vec::new();
        for (j, rd) in r.reader.iter().enumerate() {
            let f = |x: &str| format!("root[{i}].reader[{j}].{x}");
            let taken = readers.iter().any(|o| o.name == rd.name);
            if let Some(m) = name_error(&rd.name, "reader", taken) {
                fail(line, &f("name"), m);
            }
            let digest = hex::decode(rd.token_sha256.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            match digest {
                Some(token_sha256) => readers.push(Reader { name: rd.name.clone(), token_sha256 }),
                None => fail(
                    line,
                    &f("token_sha256"),
                    "the SHA-256 of the reader's token, 64 hex digits (`beffroi taxii token` makes a pair)".into(),
                ),
            }
        }
        if r.reader.is_empty() {
            fail(
                line,
                &field("reader"),
                "a root needs at least one reader: nothing is served anonymously".into(),
            );
        }
        roots.push(Root {
            collection: StixId::collection_uuid(&[&territory.id, &r.name]),
            name: r.name.clone(),
            title: r
                .title
                .clone()
                .unwrap_or_else(|| format!("{} — {}", territory.name, r.name)),
            max_tlp,
            readers,
        });
    }
    let mut pulls: Vec<PullSource> = Vec::new();
    for (i, p) in raw.pull.iter().enumerate() {
        let line = src.line(p.span().start);
        let p = p.get_ref();
        let field = |f: &str| format!("pull[{i}].{f}");
        if let Some(m) = name_error(&p.name, "pull", pulls.iter().any(|o| o.name == p.name)) {
            fail(line, &field("name"), m);
        }
        if !(p.url.starts_with("https://") || p.url.starts_with("http://"))
            || p.url.contains(['?', '#', ' '])
        {
            fail(
                line,
                &field("url"),
                "the collection's objects URL, http(s):// without a query".into(),
            );
        }
        if p.password_env.is_some() && p.user.is_none() {
            fail(line, &field("user"), "a password needs a user name".into());
        }
        let every = match p.every.as_deref().map(parse_duration) {
            None => Duration(15 * 60_000),
            Some(Ok(d)) if d.millis() >= 1000 => d,
            Some(Ok(_)) => {
                fail(line, &field("every"), "at least 1 s".into());
                Duration(15 * 60_000)
            }
            Some(Err(e)) => {
                fail(line, &field("every"), e);
                Duration(15 * 60_000)
            }
        };
        pulls.push(PullSource {
            name: p.name.clone(),
            url: p.url.clone(),
            user: p.user.clone(),
            password_env: p.password_env.clone(),
            every,
        });
    }
    errors.into_result(TaxiiPolicy {
        title: raw
            .title
            .unwrap_or_else(|| format!("{} — Beffroi TAXII", territory.name)),
        name: raw.name.unwrap_or_else(|| territory.name.to_string()),
        tlp,
        window,
        indicator_lifetime,
        roots,
        pulls,
    })
}

/// An anomaly code or a kind id as the STIX export takes it (`a-z 0-9 _`).
fn code(s: &str) -> Option<String> {
    let c: String = s
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    (!c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    .then_some(c)
}

/// What of a cyber incident may be shared: fixed codes, times, a count and the address
/// its key names. `None` for an incident that is not the sentinel's.
pub fn finding_of(i: &Incident, t: &Territory, tlp: Tlp) -> Option<CyberFinding> {
    let anomaly = i.rule.strip_prefix("cyber-").and_then(code)?;
    let technique = beffroi_engine::sentinel::technique_of_rule(&i.rule).map(|t| Technique {
        id: t.id.to_string(),
        name: t.name.to_string(),
        tactic: None,
    });
    let addresses = i
        .key
        .0
        .rsplit_once("address:")
        .and_then(|(_, a)| a.parse::<std::net::IpAddr>().ok())
        .into_iter()
        .collect();
    Some(CyberFinding {
        incident: format!("INC-{}", i.id.0),
        opened: i.opened_at.0,
        updated: i.updated_at.0,
        closed: i.closed_at.or(i.resolved_at).map(|t| t.0),
        technique,
        anomaly,
        device_kind: i.device.and_then(|d| code(&t.kind_of(d).id)),
        addresses,
        count: i.alarm_count.max(1),
        tlp,
    })
}

/// The objects of `root`'s collection: the cyber incidents updated within the window, at
/// the policy's TLP if the root may receive it.
fn objects(
    s: &AppState,
    policy: &TaxiiPolicy,
    root: &Root,
) -> Result<Vec<StoredObject>, Box<Response>> {
    let t = &s.engine.territory;
    let findings: Vec<CyberFinding> = if policy.tlp <= root.max_tlp {
        let since = s.engine.clock.now().minus(policy.window);
        let incidents = crate::scoped::Incidents::territory(Arc::clone(&s.reader))
            .list(IncidentQuery {
                category: Some("cyber".into()),
                updated_since: Some(since),
                limit: MAX_INCIDENTS,
                ..Default::default()
            })
            .map_err(|e| {
                tracing::error!(error = %e, "store read failed");
                refuse(TaxiiError::new(
                    503,
                    "store_unavailable",
                    "The store is unavailable; retry later",
                ))
            })?;
        incidents
            .iter()
            .filter_map(|i| finding_of(i, t, policy.tlp))
            .collect()
    } else {
        Vec::new()
    };
    let producer = Producer {
        territory: t.id.to_string(),
        name: policy.name.clone(),
        // The identity and the techniques' attack patterns do not change between exports.
        since: 1_767_225_600_000, // 2026-01-01T00:00:00Z
        indicator_lifetime: Some(policy.indicator_lifetime.millis()),
    };
    let stix = beffroi_taxii::export_findings(&producer, &findings).map_err(|e| {
        tracing::error!(error = %e, "STIX export failed");
        refuse(TaxiiError::new(
            500,
            "export_failed",
            "The indicators could not be written",
        ))
    })?;
    Ok(stix
        .iter()
        .map(|o| StoredObject::from_stix(o, o.version()))
        .collect())
}

fn taxii_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut r = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TAXII_MEDIA_TYPE),
    );
    r
}

fn error(e: TaxiiError) -> Response {
    let status = e
        .http_status
        .as_deref()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = taxii_json(status, &e);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"beffroi-taxii\""),
        );
    }
    r
}

/// An error answer, boxed for `Result`s (a response is large).
fn refuse(e: TaxiiError) -> Box<Response> {
    Box::new(error(e))
}

fn not_found(what: &str) -> Response {
    error(TaxiiError::new(404, "not_found", format!("No such {what}")))
}

/// The media types the client accepts must include TAXII 2.1's.
fn accepts(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let ok = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let m: String = m
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            m == "application/taxii+json;version=2.1" || m == "application/taxii+json"
        });
    if ok {
        Ok(())
    } else {
        Err(refuse(TaxiiError::new(
            406,
            "not_acceptable",
            "Accept must include application/taxii+json;version=2.1",
        )))
    }
}

/// The caller's Basic credential: (name, token).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn reader_of<'a>(root: &'a Root, user: &str, token: &str) -> Option<&'a Reader> {
    let digest = token_digest(token);
    // Every reader is compared, so the time does not tell which name exists.
    let mut found = None;
    for r in &root.readers {
        let same = bool::from(r.token_sha256.ct_eq(&digest)) & (r.name == user);
        if same {
            found = Some(r);
        }
    }
    found
}

fn policy(s: &AppState) -> Result<Arc<TaxiiPolicy>, Box<Response>> {
    s.taxii
        .clone()
        .ok_or_else(|| Box::new(not_found("TAXII server (no taxii.toml)")))
}

/// Checks the request against `root`: a reader's credential (401 first: a caller without
/// one learns nothing), then TAXII's media type.
fn admit(s: &AppState, headers: &HeaderMap, root: &Root) -> Result<String, Box<Response>> {
    let denied = || {
        refuse(TaxiiError::new(
            401,
            "unauthorized",
            "A reader's credential for this API root is required",
        ))
    };
    let Some((user, token)) = basic(headers) else {
        return Err(denied());
    };
    match reader_of(root, &user, &token) {
        Some(r) => {
            accepts(headers)?;
            Ok(r.name.clone())
        }
        None => {
            s.audit_partner(
                &user,
                "taxii.denied",
                Some(&root.name),
                AuditOutcome::Denied,
                serde_json::json!({}),
            );
            Err(denied())
        }
    }
}

fn root_of<'a>(policy: &'a TaxiiPolicy, name: &str) -> Result<&'a Root, Box<Response>> {
    policy
        .roots
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Box::new(not_found("API root")))
}

fn collection_of(root: &Root) -> Collection {
    Collection {
        id: root.collection.clone(),
        title: format!("{} — indicators", root.title),
        description: Some(
            "Indicators and sightings of the territory's cyber incidents (ATT&CK for ICS)".into(),
        ),
        alias: Some("indicators".into()),
        can_read: true,
        can_write: false,
        media_types: vec![beffroi_taxii::STIX_MEDIA_TYPE.into()],
    }
}

/// `GET /taxii2/`: the roots the caller reads.
pub async fn discovery(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let policy = match policy(&s) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let readable: Vec<&Root> = match basic(&headers) {
        Some((user, token)) => policy
            .roots
            .iter()
            .filter(|r| reader_of(r, &user, &token).is_some())
            .collect(),
        None => Vec::new(),
    };
    if readable.is_empty() {
        return error(TaxiiError::new(
            401,
            "unauthorized",
            "A reader's credential is required",
        ));
    }
    if let Err(r) = accepts(&headers) {
        return *r;
    }
    taxii_json(
        StatusCode::OK,
        &Discovery {
            title: policy.title.clone(),
            description: Some("Cyber threat sharing of a Beffroi territory".into()),
            contact: None,
            default: readable.first().map(|r| format!("/taxii2/{}/", r.name)),
            api_roots: readable
                .iter()
                .map(|r| format!("/taxii2/{}/", r.name))
                .collect(),
        },
    )
}

macro_rules! try_r {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}

/// `GET /taxii2/{root}/`.
pub async fn api_root(
    State(s): State<AppState>,
    Path(root): Path<String>,
    headers: HeaderMap,
) -> Response {
    let policy = try_r!(policy(&s));
    let root = try_r!(root_of(&policy, &root));
    try_r!(admit(&s, &headers, root));
    taxii_json(
        StatusCode::OK,
        &ApiRoot::taxii21(root.title.clone(), MAX_CONTENT_LENGTH),
    )
}

/// `GET /taxii2/{root}/collections/`.
pub async fn collections(
    State(s): State<AppState>,
    Path(root): Path<String>,
    headers: HeaderMap,
) -> Response {
    let policy = try_r!(policy(&s));
    let root = try_r!(root_of(&policy, &root));
    try_r!(admit(&s, &headers, root));
    taxii_json(
        StatusCode::OK,
        &Collections {
            collections: vec![collection_of(root)],
        },
    )
}

/// `GET /taxii2/{root}/collections/{id}/`.
pub async fn collection(
    State(s): State<AppState>,
    Path((root, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let policy = try_r!(policy(&s));
    let root = try_r!(root_of(&policy, &root));
    try_r!(admit(&s, &headers, root));
    if id != root.collection {
        return not_found("collection");
    }
    taxii_json(StatusCode::OK, &collection_of(root))
}

/// The objects, one object, its versions, or the manifest.
async fn read(
    s: AppState,
    root: String,
    id: String,
    endpoint: Result<Endpoint, beffroi_taxii::QueryError>,
    query: Option<String>,
    headers: HeaderMap,
) -> Response {
    let policy = try_r!(policy(&s));
    let root = try_r!(root_of(&policy, &root)).clone();
    let reader = try_r!(admit(&s, &headers, &root));
    if id != root.collection {
        return not_found("collection");
    }
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(e) => return error(e.to_taxii_error()),
    };
    let query = match Query::from_query_string(endpoint.clone(), query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error(e.to_taxii_error()),
    };
    let s2 = s.clone();
    let p2 = Arc::clone(&policy);
    let r2 = root.clone();
    let stored = match tokio::task::spawn_blocking(move || objects(&s2, &p2, &r2)).await {
        Ok(Ok(o)) => o,
        Ok(Err(r)) => return *r,
        Err(_) => return error(TaxiiError::new(500, "internal", "The request failed")),
    };
    let page = beffroi_taxii::page(&stored, &query);
    if matches!(endpoint, Endpoint::Object(_) | Endpoint::Versions(_))
        && page.objects.is_empty()
        && !page.more
    {
        return not_found("object");
    }
    s.audit_partner(
        &reader,
        "taxii.read",
        Some(&format!(
            "{}/{}",
            root.name,
            match &endpoint {
                Endpoint::Objects | Endpoint::Object(_) => "objects",
                Endpoint::Manifest => "manifest",
                Endpoint::Versions(_) => "versions",
            }
        )),
        AuditOutcome::Ok,
        serde_json::json!({ "objects": page.objects.len() }),
    );
    let mut r = match &endpoint {
        Endpoint::Objects | Endpoint::Object(_) => taxii_json(StatusCode::OK, &page.envelope()),
        Endpoint::Manifest => taxii_json(StatusCode::OK, &page.manifest()),
        Endpoint::Versions(_) => taxii_json(StatusCode::OK, &page.versions()),
    };
    if let Some((first, last)) = page.date_added_range() {
        for (name, t) in [
            (HEADER_DATE_ADDED_FIRST, first),
            (HEADER_DATE_ADDED_LAST, last),
        ] {
            if let Ok(v) = HeaderValue::from_str(&t.to_string()) {
                r.headers_mut().insert(name, v);
            }
        }
    }
    r
}

/// `GET /taxii2/{root}/collections/{id}/objects/`.
pub async fn objects_route(
    State(s): State<AppState>,
    Path((root, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    read(s, root, id, Ok(Endpoint::Objects), q, headers).await
}

/// `GET /taxii2/{root}/collections/{id}/objects/{object}/`.
pub async fn object_route(
    State(s): State<AppState>,
    Path((root, id, object)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    read(s, root, id, Endpoint::object(&object), q, headers).await
}

/// `GET /taxii2/{root}/collections/{id}/objects/{object}/versions/`.
pub async fn versions_route(
    State(s): State<AppState>,
    Path((root, id, object)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    read(s, root, id, Endpoint::versions(&object), q, headers).await
}

/// `GET /taxii2/{root}/collections/{id}/manifest/`.
pub async fn manifest_route(
    State(s): State<AppState>,
    Path((root, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    read(s, root, id, Ok(Endpoint::Manifest), q, headers).await
}
