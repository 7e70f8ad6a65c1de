//! Public alerts as CAP 1.2: the incidents a town announces (to the préfecture, a
//! public-warning channel, its neighbours), chosen by the deployment's `cap.toml`, each as
//! a CAP document and all of them in an Atom feed.
//!
//! What is published is decided here, once: the policy's categories from a severity,
//! pushed into the store query. An incident outside the policy is `404` on its URL and
//! absent from the feed. `cyber` is refused by the policy: attacks are shared with
//! partners under TLP, not with the public. An alert carries only what the territory and
//! the rule say: the rule's title, the site, the commune (INSEE code), the severity, the
//! times and the policy's instruction. Never the evidence, the operators, the notes or a
//! pseudonym.
//!
//! Versions: every change of an incident is a new message. Its identifier is
//! `<territory>.<incident>.<updated ms>` and it is sent at the update. The first one is an
//! `Alert`; each later one is an `Update` that references the first. Once the incident is
//! resolved or closed, the update says `AllClear`, with urgency `Past`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use beffroi_cap::{
    Alert, Area, CapTime, Category, Certainty, Circle, Info, LatLon, MsgType, NamedValue,
    Reference, ResponseType, Scope, Urgency,
};
use beffroi_core::{Incident, IncidentId, Severity, Status, Territory, Timestamp};
use beffroi_engine::store::IncidentQuery;
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};

/// How many alerts the feed lists at most (most recently updated first).
pub const FEED_LIMIT: usize = 200;

/// What the deployment publishes as CAP, from `cap.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct CapPolicy {
    /// The CAP `sender`: the territory's identity as alert hubs know it.
    pub sender: String,
    /// `senderName`: the name people read.
    pub sender_name: String,
    /// `Actual` for real alerts, `Exercise` for a demo or a drill.
    pub status: beffroi_cap::Status,
    /// RFC 3066 language of the texts (`fr-FR`).
    pub language: String,
    /// The console's public address, for each alert's `web` link (optional).
    pub web: Option<String>,
    /// How long a resolved or closed incident stays in the feed.
    pub feed_window: beffroi_core::Duration,
    pub publish: Vec<Publish>,
    /// CAP feeds read as incidents (a neighbour, an official warning service).
    pub sources: Vec<CapSource>,
}

/// A CAP feed polled for alerts that become incidents (`[[source]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct CapSource {
    /// A short name (`a-z 0-9 - _`): the incidents' rule is `cap:<name>`.
    pub name: String,
    /// An Atom feed of CAP alerts, or one CAP document (`http://` or `https://`, checked
    /// against the Mozilla root certificates built in).
    pub url: String,
    /// How often it is polled; a failure doubles the wait, up to ten times this.
    pub every: beffroi_core::Duration,
    /// The category of the incidents it opens (`neighbour`, `flood`…).
    pub category: String,
}

/// One category published.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    /// The incident category (`flood`).
    pub category: String,
    pub min_severity: Severity,
    /// CAP's categories for it (`Met`, `Safety`…).
    pub cap_categories: Vec<Category>,
    /// CAP's `event`: what people call it (`Crue`).
    pub event: String,
    /// CAP's `responseType`s while the incident is open.
    pub response: Vec<ResponseType>,
    pub instruction: Option<String>,
    /// The circle around a site without a perimeter, in kilometres.
    pub radius_km: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    sender: toml::Spanned<String>,
    sender_name: String,
    #[serde(default)]
    status: Option<toml::Spanned<String>>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    web: Option<String>,
    #[serde(default)]
    feed_window: Option<toml::Spanned<String>>,
    #[serde(default)]
    publish: Vec<toml::Spanned<RawPublish>>,
    #[serde(default)]
    source: Vec<toml::Spanned<RawSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    url: String,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    category: String,
    min_severity: String,
    cap_category: Vec<String>,
    event: String,
    #[serde(default)]
    response: Vec<String>,
    #[serde(default)]
    instruction: Option<String>,
    #[serde(default)]
    radius_km: Option<f64>,
}

/// Reads `cap.toml`; `categories` are those the rules use (a published category no rule
/// raises is an error: it would publish nothing).
pub fn parse_policy(src: &SourceFile, categories: &[&str]) -> Result<CapPolicy, ConfigErrors> {
    let raw: RawPolicy = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut fail = |line: usize, field: String, msg: String| {
        errors.push(ConfigError::new(
            src.path.clone(),
            Some(line),
            Some(&field),
            msg,
        ));
    };
    if !beffroi_cap::valid_identifier(raw.sender.get_ref()) {
        fail(
            src.line(raw.sender.span().start),
            "sender".into(),
            "a CAP sender: no spaces, commas, `<` or `&` (e.g. beffroi@ville.example)".into(),
        );
    }
    let status = match &raw.status {
        None => beffroi_cap::Status::Actual,
        Some(s) => match beffroi_cap::Status::parse(s.get_ref()) {
            Some(
                v @ (beffroi_cap::Status::Actual
                | beffroi_cap::Status::Exercise
                | beffroi_cap::Status::Test),
            ) => v,
            _ => {
                fail(
                    src.line(s.span().start),
                    "status".into(),
                    "Actual, Exercise or Test".into(),
                );
                beffroi_cap::Status::Actual
            }
        },
    };
    let feed_window = match &raw.feed_window {
        None => beffroi_core::Duration(24 * 3_600_000),
        Some(w) => match beffroi_territory::parse_duration(w.get_ref()) {
            Ok(d) if d.millis() > 0 => d,
            Ok(_) => {
                fail(
                    src.line(w.span().start),
                    "feed_window".into(),
                    "must be longer than zero".into(),
                );
                beffroi_core::Duration(0)
            }
            Err(e) => {
                fail(src.line(w.span().start), "feed_window".into(), e);
                beffroi_core::Duration(0)
            }
        },
    };
    let mut publish = Vec::new();
    for (i, p) in raw.publish.iter().enumerate() {
        let line = src.line(p.span().start);
        let p = p.get_ref();
        let field = |f: &str| format!("publish[{i}].{f}");
        if p.category == "cyber" {
            fail(line, field("category"), "`cyber` is never public: attacks are shared with partners under TLP (TAXII), not announced".into());
            continue;
        }
        if !categories.contains(&p.category.as_str()) {
            fail(
                line,
                field("category"),
                format!(
                    "no rule raises `{}` (rules' categories: {})",
                    p.category,
                    categories.join(", ")
                ),
            );
        }
        if publish.iter().any(|q: &Publish| q.category == p.category) {
            fail(
                line,
                field("category"),
                format!("`{}` is published twice", p.category),
            );
        }
        let min_severity = Severity::parse(&p.min_severity).unwrap_or_else(|| {
            fail(
                line,
                field("min_severity"),
                "info, minor, major or critical".into(),
            );
            Severity::Critical
        });
        let mut cap_categories = Vec::new();
        for c in &p.cap_category {
            match Category::parse(c) {
                Some(v) => cap_categories.push(v),
                None => fail(
                    line,
                    field("cap_category"),
                    format!(
                        "`{c}` is not a CAP category (Geo, Met, Safety, Security, Rescue, Fire, Health, Env, Transport, Infra, CBRNE, Other)"
                    ),
                ),
            }
        }
        if p.cap_category.is_empty() {
            fail(
                line,
                field("cap_category"),
                "at least one CAP category".into(),
            );
        }
        let mut response = Vec::new();
        for r in &p.response {
            match ResponseType::parse(r) {
                Some(ResponseType::AllClear) => fail(
                    line,
                    field("response"),
                    "`AllClear` is said by Beffroi itself when the incident ends".into(),
                ),
                Some(v) => response.push(v),
                None => fail(
                    line,
                    field("response"),
                    format!(
                        "`{r}` is not a CAP response type (Shelter, Evacuate, Prepare, Execute, Avoid, Monitor, Assess, None)"
                    ),
                ),
            }
        }
        let radius_km = p.radius_km.unwrap_or(0.5);
        if !(radius_km.is_finite() && radius_km > 0.0 && radius_km <= 100.0) {
            fail(line, field("radius_km"), "between 0 and 100 km".into());
        }
        if p.event.trim().is_empty() {
            fail(
                line,
                field("event"),
                "what people call it (e.g. Crue)".into(),
            );
        }
        publish.push(Publish {
            category: p.category.clone(),
            min_severity,
            cap_categories,
            event: p.event.trim().to_string(),
            response,
            instruction: p.instruction.clone().filter(|s| !s.trim().is_empty()),
            radius_km,
        });
    }
    let mut sources: Vec<CapSource> = Vec::new();
    for (i, src_entry) in raw.source.iter().enumerate() {
        let line = src.line(src_entry.span().start);
        let r = src_entry.get_ref();
        let field = |f: &str| format!("source[{i}].{f}");
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 64
            && r.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            fail(
                line,
                field("name"),
                "a short name: a-z, 0-9, - and _ (at most 64)".into(),
            );
        }
        if sources.iter().any(|s| s.name == r.name) {
            fail(line, field("name"), format!("`{}` is named twice", r.name));
        }
        let url = r.url.trim().to_string();
        let scheme_len = ["https://", "http://"]
            .iter()
            .find(|p| url.starts_with(**p))
            .map(|p| p.len());
        if scheme_len.is_none_or(|n| url.len() <= n) {
            fail(
                line,
                field("url"),
                "an http:// or https:// URL of an Atom feed of CAP alerts or of one CAP document"
                    .into(),
            );
        }
        let every = match r.every.as_deref() {
            None => beffroi_core::Duration(300_000),
            Some(e) => match beffroi_territory::parse_duration(e) {
                Ok(d) if d.millis() >= 1000 => d,
                Ok(_) => {
                    fail(line, field("every"), "at least 1s".into());
                    beffroi_core::Duration(300_000)
                }
                Err(e) => {
                    fail(line, field("every"), e);
                    beffroi_core::Duration(300_000)
                }
            },
        };
        let category = r.category.clone().unwrap_or_else(|| "neighbour".into());
        if category == "cyber"
            || category.is_empty()
            || !category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            fail(
                line,
                field("category"),
                "an incident category (a-z, 0-9, - and _), not `cyber`".into(),
            );
        }
        sources.push(CapSource {
            name: r.name.clone(),
            url,
            every,
            category,
        });
    }
    errors.into_result(CapPolicy {
        sources,
        sender: raw.sender.into_inner(),
        sender_name: raw.sender_name,
        status,
        language: raw.language.unwrap_or_else(|| "fr-FR".into()),
        web: raw.web.map(|w| w.trim_end_matches('/').to_string()),
        feed_window,
        publish,
    })
}

impl CapPolicy {
    /// The entry that publishes `i`, if any.
    pub fn publishes(&self, i: &Incident) -> Option<&Publish> {
        self.publish
            .iter()
            .find(|p| *p.category == *i.category && i.severity >= p.min_severity)
    }
}

fn cap_severity(s: Severity) -> beffroi_cap::Severity {
    match s {
        Severity::Critical => beffroi_cap::Severity::Extreme,
        Severity::Major => beffroi_cap::Severity::Severe,
        Severity::Minor => beffroi_cap::Severity::Moderate,
        Severity::Info => beffroi_cap::Severity::Minor,
    }
}

fn ended(i: &Incident) -> bool {
    matches!(i.status, Status::Resolved | Status::Closed)
}

/// The CAP identifier of an incident's version at `at`.
fn identifier(t: &Territory, id: IncidentId, at: Timestamp) -> String {
    format!("{}.INC-{}.{}", t.id, id.0, at.0)
}

/// The incident's current version as a CAP alert, when the policy publishes it.
pub fn alert_of(i: &Incident, t: &Territory, policy: &CapPolicy) -> Option<Alert> {
    let p = policy.publishes(i)?;
    let site = t.site(i.site);
    let commune = t.commune(i.commune);
    let first = i.opened_at;
    let sent = i.updated_at.max(first);
    let msg_type = if sent == first {
        MsgType::Alert
    } else {
        MsgType::Update
    };
    let references = if msg_type == MsgType::Update {
        vec![Reference {
            sender: policy.sender.clone(),
            identifier: identifier(t, i.id, first),
            sent: CapTime(first.0),
        }]
    } else {
        Vec::new()
    };
    let polygons = site
        .perimeter
        .iter()
        .filter(|ring| ring.len() >= 4 && ring.first() == ring.last())
        .map(|ring| {
            ring.iter()
                .map(|pt| LatLon {
                    lat: pt.lat,
                    lon: pt.lon,
                })
                .collect()
        })
        .collect::<Vec<_>>();
    let circles = if polygons.is_empty() {
        vec![Circle {
            centre: LatLon {
                lat: site.position.lat,
                lon: site.position.lon,
            },
            radius_km: p.radius_km,
        }]
    } else {
        Vec::new()
    };
    let geocodes = commune
        .insee
        .iter()
        .map(|code| NamedValue {
            name: "INSEE".into(),
            value: code.to_string(),
        })
        .collect();
    let (urgency, response) = if ended(i) {
        (Urgency::Past, vec![ResponseType::AllClear])
    } else {
        (Urgency::Immediate, p.response.clone())
    };
    let description = if ended(i) {
        format!(
            "{} — {} ({}) : fin de l'alerte.",
            i.title_now(),
            site.name,
            commune.name
        )
    } else {
        format!("{} — {} ({}).", i.title_now(), site.name, commune.name)
    };
    Some(Alert {
        identifier: identifier(t, i.id, sent),
        sender: policy.sender.clone(),
        sent: CapTime(sent.0),
        status: policy.status,
        msg_type,
        source: Some("Beffroi".into()),
        scope: Scope::Public,
        restriction: None,
        addresses: None,
        codes: Vec::new(),
        note: None,
        references,
        incidents: Some(format!("{}.INC-{}", t.id, i.id.0)),
        infos: vec![Info {
            language: Some(policy.language.clone()),
            categories: p.cap_categories.clone(),
            event: p.event.clone(),
            response_types: response,
            urgency,
            severity: cap_severity(i.severity),
            certainty: Certainty::Observed,
            event_codes: vec![NamedValue {
                name: "beffroi:category".into(),
                value: i.category.to_string(),
            }],
            effective: Some(CapTime(sent.0)),
            onset: Some(CapTime(i.last_opened_at().0)),
            expires: None,
            sender_name: Some(policy.sender_name.clone()),
            headline: Some(format!("{} — {}", p.event, commune.name)),
            description: Some(description),
            instruction: if ended(i) {
                None
            } else {
                p.instruction.clone()
            },
            web: policy
                .web
                .as_ref()
                .map(|w| format!("{w}/api/v1/cap/alerts/{}", i.id.0)),
            contact: None,
            parameters: Vec::new(),
            areas: vec![Area {
                area_desc: format!("{} — {}", commune.name, site.name),
                polygons,
                circles,
                geocodes,
            }],
        }],
    })
}

fn no_policy() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "this deployment publishes no CAP alert (no cap.toml)",
    )
}

fn xml(body: String, media: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    r
}

/// The incidents the policy publishes, updated within the feed window when they ended:
/// one query per published category, its severity floor in the query.
fn published(s: &AppState, policy: &CapPolicy) -> Result<Vec<Incident>, ApiError> {
    let incidents = crate::scoped::Incidents::territory(Arc::clone(&s.reader));
    let since = s.engine.clock.now().minus(policy.feed_window);
    let mut out = Vec::new();
    for p in &policy.publish {
        let open = incidents
            .list(IncidentQuery {
                statuses: vec![Status::New, Status::Acknowledged, Status::InProgress],
                category: Some(p.category.clone()),
                min_severity: Some(p.min_severity),
                limit: FEED_LIMIT,
                ..Default::default()
            })
            .map_err(store_err)?;
        let recent = incidents
            .list(IncidentQuery {
                statuses: vec![Status::Resolved, Status::Closed],
                category: Some(p.category.clone()),
                min_severity: Some(p.min_severity),
                updated_since: Some(since),
                limit: FEED_LIMIT,
                ..Default::default()
            })
            .map_err(store_err)?;
        out.extend(open);
        out.extend(recent);
    }
    out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
    out.truncate(FEED_LIMIT);
    Ok(out)
}

#[utoipa::path(get, path = "/api/v1/cap/alerts",
    responses((status = 200, content_type = "application/atom+xml", description = "The territory's public alerts (Atom), each linking to its CAP 1.2 document"),
        (status = 404, body = crate::error::ErrorBody, description = "no cap.toml")))]
pub async fn feed(State(s): State<AppState>) -> Result<Response, ApiError> {
    let policy = s.cap.clone().ok_or_else(no_policy)?;
    let t = Arc::clone(&s.engine.territory);
    let now = s.engine.clock.now();
    let base = policy.web.clone().unwrap_or_default();
    let body = blocking(move || {
        let list = published(&s, &policy)?;
        let entries = list
            .iter()
            .filter_map(|i| {
                let a = alert_of(i, &t, &policy)?;
                let info = a.infos.first()?;
                Some(beffroi_cap::atom::Entry {
                    id: format!("urn:beffroi:cap:{}", a.identifier),
                    title: info.headline.clone().unwrap_or_else(|| info.event.clone()),
                    updated: a.sent,
                    link: format!("{base}/api/v1/cap/alerts/{}", i.id.0),
                    summary: info.description.clone(),
                })
            })
            .collect::<Vec<_>>();
        Ok(beffroi_cap::atom::feed_xml(&beffroi_cap::atom::Feed {
            id: format!("urn:beffroi:cap:{}", t.id),
            title: format!("{} — alertes publiques", t.name),
            author: policy.sender_name.clone(),
            updated: CapTime(entries.first().map_or(now.0, |e| e.updated.0)),
            self_url: format!("{base}/api/v1/cap/alerts"),
            entries,
        }))
    })
    .await?;
    Ok(xml(body, "application/atom+xml; charset=utf-8"))
}

#[utoipa::path(get, path = "/api/v1/cap/alerts/{id}", params(("id" = u64, Path)),
    responses((status = 200, content_type = "application/cap+xml", description = "The incident's current version as a CAP 1.2 alert"),
        (status = 404, body = crate::error::ErrorBody, description = "no such public alert")))]
pub async fn alert(State(s): State<AppState>, Path(id): Path<u64>) -> Result<Response, ApiError> {
    let policy = s.cap.clone().ok_or_else(no_policy)?;
    let t = Arc::clone(&s.engine.territory);
    let not_public = move || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no public alert {id}: no such incident, or not one this territory announces"),
        )
    };
    let body = blocking(move || {
        let incidents = crate::scoped::Incidents::territory(Arc::clone(&s.reader));
        let i = incidents
            .one(IncidentId(id))
            .map_err(store_err)?
            .ok_or_else(not_public)?;
        let a = alert_of(&i, &t, &policy).ok_or_else(not_public)?;
        Ok(beffroi_cap::write::alert_xml(&a))
    })
    .await?;
    Ok(xml(body, "application/cap+xml; charset=utf-8"))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(feed, alert))]
pub(crate) struct CapApi;
