//! NGSI-LD (ETSI GS CIM 009) for the city's data platform: the territory's devices, public
//! buildings, river gauges' latest levels and open incidents as FIWARE Smart Data Models
//! entities (`beffroi_ngsild`), read and subscribed to under the caller's scope.
//!
//! - **Who sees what is decided once.** The routes need `device.read` and cut every list
//!   to the caller's communes (`Filtered`); a tenant (`NGSILD-Tenant`) is one commune of
//!   the territory, and must be in the caller's scope. Incidents are read through the
//!   caller's visibility; `cyber`, `device` and partners' (`neighbour`) incidents are
//!   never entities. A subscription keeps its creator's scope and tenant: a notification
//!   carries only entities its creator could read.
//! - **What an entity holds** is written by the crate from codes, enumerations, numbers,
//!   positions and times (`DeviceFacts`, `SiteFacts`, `GaugeReading`, `IncidentFacts`):
//!   there is no field a name, a note, a title or a personal value could travel in.
//! - **Contexts.** The core context and Beffroi's Smart Data Models context are served
//!   here (`/ngsi-ld/v1/jsonldContexts/…`) and recognised offline; a request naming any
//!   other context is refused (503 `LdContextNotAvailable`), nothing is fetched.
//! - **Subscriptions** live in memory (a restart forgets them; the platform subscribes
//!   again). Alerts and devices are notified as the engine commits their changes, each
//!   notification posted on a blocking thread, throttled as the subscription asks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use beffroi_core::incident::Incident;
use beffroi_core::{CommuneIdx, DeviceIdx, Semantic, SiteKind, Territory};
use beffroi_engine::live::LiveEvent;
use beffroi_engine::store::IncidentQuery;
use beffroi_ngsild::models::{
    AlertCategory, AlertSubCategory, BuildingCategory, Code, ControlledProperty, DeviceCategory,
};
use beffroi_ngsild::{
    AlertSource, DeviceFacts, DeviceState, Entity, Facts, GaugeReading, IncidentFacts,
    JsonLdContext, NgsiError, Position, Query, SiteFacts, Subscription, Timestamp,
};

use crate::AppState;
use crate::access::Scope;
use crate::routes::Caller;

const MEDIA_LD: &str = "application/ld+json";
const CONTEXT_PATH: &str = "/ngsi-ld/v1/jsonldContexts/beffroi.jsonld";
const CORE_PATH: &str = "/ngsi-ld/v1/jsonldContexts/ngsi-ld-core-context.jsonld";
/// How recent a gauge's reading must be to appear as `WaterObserved`.
const GAUGE_WINDOW: i64 = 24 * 3_600_000;
const MAX_SUBSCRIPTIONS: usize = 200;
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// One subscription and whose it is.
struct Held {
    sub: Subscription,
    scope: Scope,
    tenant: Option<CommuneIdx>,
    /// The contexts as the subscriber reached this server (its notifications link them).
    context: JsonLdContext,
}

/// The subscriptions of this server (in memory).
#[derive(Default)]
pub struct Subscriptions {
    held: Mutex<Vec<Held>>,
    notifier: AtomicBool,
    next: AtomicU64,
}

fn err(e: NgsiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (status, e.problem_json().to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The context documents' base URL as the caller reached this server.
fn context(headers: &HeaderMap) -> JsonLdContext {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    JsonLdContext::new(format!("{scheme}://{host}{CONTEXT_PATH}"))
}

/// Whether the answer is JSON-LD (`Accept: application/ld+json`) or plain JSON.
fn wants_ld(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(MEDIA_LD))
}

fn answer(
    headers: &HeaderMap,
    ctx: &JsonLdContext,
    status: StatusCode,
    body: serde_json::Value,
) -> Response {
    let ld = wants_ld(headers);
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if ld { MEDIA_LD } else { "application/json" }),
    );
    if !ld && let Ok(v) = HeaderValue::from_str(&ctx.link_header()) {
        h.insert(header::LINK, v);
    }
    r
}

/// The request's context (a `Link` header) must be one known here.
fn check_link(headers: &HeaderMap, ctx: &JsonLdContext) -> Result<(), NgsiError> {
    match headers.get(header::LINK).and_then(|v| v.to_str().ok()) {
        Some(link) => ctx.check_link_header(link),
        None => Ok(()),
    }
}

/// The tenant (`NGSILD-Tenant`): a commune in the caller's scope.
fn tenant(s: &AppState, c: &Caller, headers: &HeaderMap) -> Result<Option<CommuneIdx>, NgsiError> {
    let Some(name) = headers
        .get(beffroi_ngsild::TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    match s.engine.territory.commune_id(name.trim()) {
        Some(i) if c.scope.holds(i) => Ok(Some(i)),
        _ => Err(NgsiError::new(
            beffroi_ngsild::ErrorType::NonexistentTenant,
            format!("NGSILD-Tenant: no commune `{name}` in the caller's scope"),
        )),
    }
}

fn code(s: &str) -> Option<Code> {
    Code::new(s).ok()
}

fn pos(p: beffroi_core::Point) -> Option<Position> {
    Position::new(p.lon, p.lat)
}

fn property_of(s: Semantic) -> Option<&'static str> {
    Some(match s {
        Semantic::WaterLevel => "waterLevel",
        Semantic::Flow => "waterFlow",
        Semantic::Rainfall => "precipitation",
        Semantic::Temperature => "temperature",
        Semantic::Humidity => "humidity",
        Semantic::Wind => "windSpeed",
        Semantic::AirQuality => "airPollution",
        Semantic::NoiseLevel => "noiseLevel",
        Semantic::Smoke | Semantic::FireAlarm => "smoke",
        Semantic::IntrusionAlarm | Semantic::DoorState => "motion",
        Semantic::PeopleCount | Semantic::ParkingOccupancy => "occupancy",
        Semantic::VehicleCount | Semantic::VehiclePassage => "trafficFlow",
        Semantic::Battery => "batterySupply",
        _ => return None,
    })
}

fn building_of(k: SiteKind) -> Option<&'static str> {
    Some(match k {
        SiteKind::TownHall => "civic",
        SiteKind::School => "school",
        SiteKind::Gym | SiteKind::MediaLibrary | SiteKind::PublicBuilding => "public",
        _ => return None,
    })
}

/// An incident category as an Alert's category and sub-category; `None`: not an alert
/// for the city's platform.
fn alert_of(category: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match category {
        "flood" => ("naturalDisaster", Some("flood")),
        "fire" => ("security", Some("buildingFire")),
        "intrusion" | "access" => ("security", Some("suspiciousAction")),
        "road" => ("traffic", Some("ice")),
        "crowd" => ("security", Some("crowdRisk")),
        _ => return None,
    })
}

fn severity_of(s: beffroi_core::Severity) -> beffroi_ngsild::Severity {
    use beffroi_core::Severity as S;
    match s {
        S::Info => beffroi_ngsild::Severity::Informational,
        S::Minor => beffroi_ngsild::Severity::Low,
        S::Major => beffroi_ngsild::Severity::High,
        S::Critical => beffroi_ngsild::Severity::Critical,
    }
}

/// A device as a `Device` entity (`None` for a kind with nothing the model can say).
pub fn device_entity(s: &AppState, t: &Territory, d: DeviceIdx) -> Option<(CommuneIdx, Entity)> {
    let dev = t.device(d);
    let kind = t.kind_of(d);
    let mut props: Vec<ControlledProperty> = kind
        .fields
        .iter()
        .filter_map(|f| f.semantic.and_then(property_of))
        .filter_map(|p| ControlledProperty::new(p).ok())
        .collect();
    props.dedup();
    if props.is_empty() {
        return None;
    }
    let site = t.site(dev.site);
    let state = match s.board.state(d) {
        beffroi_engine::live::DeviceState::Silent => DeviceState::Silent,
        _ => DeviceState::Ok,
    };
    let facts = DeviceFacts {
        territory: code(&t.id)?,
        commune: code(&t.commune(site.commune).id)?,
        device: code(&dev.id)?,
        category: DeviceCategory::new("sensor").ok()?,
        controlled_properties: props,
        state,
        site: building_of(site.kind).and_then(|_| code(&site.id)),
        position: pos(dev.position),
        last_value_reported: None,
        battery_level: None,
    };
    facts.entity().ok().map(|e| (site.commune, e))
}

fn site_entity(t: &Territory, i: usize) -> Option<(CommuneIdx, Entity)> {
    let site = &t.sites[i];
    let category = BuildingCategory::new(building_of(site.kind)?).ok()?;
    let commune = t.commune(site.commune);
    let facts = SiteFacts {
        territory: code(&t.id)?,
        commune: code(&commune.id)?,
        site: code(&site.id)?,
        category,
        country: code("FR")?,
        postal_code: None,
        footprint: None,
        position: pos(site.position),
        people_capacity: None,
    };
    facts.entity().ok().map(|e| (site.commune, e))
}

/// An open incident as an `Alert` (`None` for what the city's platform is not told).
pub fn incident_entity(t: &Territory, i: &Incident) -> Option<(CommuneIdx, Entity)> {
    if !i.status.is_open() {
        return None;
    }
    let (category, sub) = alert_of(&i.category)?;
    let source = match i.device {
        Some(d) => AlertSource::Device(code(&t.device(d).id)?),
        None => AlertSource::Site(code(&t.site(i.site).id)?),
    };
    let facts = IncidentFacts {
        territory: code(&t.id)?,
        commune: code(&t.commune(i.commune).id)?,
        incident: code(&format!("INC-{}", i.id.0))?,
        rule: code(&i.rule)?,
        category: AlertCategory::new(category).ok()?,
        sub_category: sub.and_then(|x| AlertSubCategory::new(x).ok()),
        severity: severity_of(i.severity),
        source,
        issued_at: Timestamp::from_millis(i.last_opened_at().0)?,
        valid_from: Timestamp::from_millis(i.opened_at.0),
        valid_to: None,
        position: pos(t.site(i.site).position),
    };
    facts.entity().ok().map(|e| (i.commune, e))
}

/// The entities the caller may read (its scope, the tenant), of the types asked (all
/// when `types` is `None`).
fn entities(
    s: &AppState,
    c: &Caller,
    tenant: Option<CommuneIdx>,
    types: Option<&[&str]>,
) -> Result<Vec<Entity>, NgsiError> {
    let t = Arc::clone(&s.engine.territory);
    let wants = |ty: &str| types.is_none_or(|ts| ts.contains(&ty));
    let keep = |commune: CommuneIdx| c.scope.holds(commune) && tenant.is_none_or(|x| x == commune);
    let mut out: Vec<Entity> = Vec::new();
    if wants("Device") {
        out.extend(
            (0..t.devices.len())
                .filter_map(|i| device_entity(s, &t, DeviceIdx(i as u32)))
                .filter(|(c, _)| keep(*c))
                .map(|(_, e)| e),
        );
    }
    if wants("Building") {
        out.extend(
            (0..t.sites.len())
                .filter_map(|i| site_entity(&t, i))
                .filter(|(c, _)| keep(*c))
                .map(|(_, e)| e),
        );
    }
    if wants("Alert") {
        let open = c
            .incidents(s)
            .list(IncidentQuery {
                statuses: vec![
                    beffroi_core::Status::New,
                    beffroi_core::Status::Acknowledged,
                    beffroi_core::Status::InProgress,
                ],
                ..Default::default()
            })
            .map_err(|e| {
                tracing::error!(error = %e, "store read failed");
                NgsiError::new(
                    beffroi_ngsild::ErrorType::InternalError,
                    "the store is unavailable",
                )
            })?;
        out.extend(
            open.iter()
                .filter_map(|i| incident_entity(&t, i))
                .filter(|(c, _)| keep(*c))
                .map(|(_, e)| e),
        );
    }
    if wants("WaterObserved") {
        let since = beffroi_core::Timestamp(s.engine.clock.now().0 - GAUGE_WINDOW);
        for (i, dev) in t.devices.iter().enumerate() {
            let d = DeviceIdx(i as u32);
            let kind = t.kind_of(d);
            let Some(f) = kind.fields.iter().position(|f| {
                f.semantic == Some(Semantic::WaterLevel) && f.unit.as_deref() == Some("m")
            }) else {
                continue;
            };
            let commune = t.site(dev.site).commune;
            if !keep(commune) {
                continue;
            }
            let latest = s
                .reader
                .observations(d, since, 20)
                .ok()
                .and_then(|o| o.into_iter().find(|o| o.field.get() == f && !o.quarantined));
            let Some(o) = latest else { continue };
            let beffroi_core::Value::Number(level) = o.value else {
                continue;
            };
            let reading = GaugeReading {
                territory: match code(&t.id) {
                    Some(x) => x,
                    None => continue,
                },
                commune: match code(&t.commune(commune).id) {
                    Some(x) => x,
                    None => continue,
                },
                device: match code(&dev.id) {
                    Some(x) => x,
                    None => continue,
                },
                position: match pos(dev.position) {
                    Some(x) => x,
                    None => continue,
                },
                observed_at: match Timestamp::from_millis(o.time.0) {
                    Some(x) => x,
                    None => continue,
                },
                water_level_m: Some(level),
                flow_m3_per_s: None,
            };
            if let Ok(e) = reading.entity() {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// Query pairs, with a `geoQ` parameter (what some clients send) unfolded into its
/// `georel`, `geometry`, `coordinates` and `geoproperty`.
fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        let bytes = v.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut out = Vec::new();
    for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (decode(k), decode(v));
        if k == "geoQ" {
            out.extend(pairs(Some(&v)));
        } else {
            out.push((k, v));
        }
    }
    out
}

/// The entities the caller may read under the request's tenant, of `types` (all when
/// `None`), read on a blocking thread.
async fn read(
    s: &AppState,
    c: Caller,
    headers: &HeaderMap,
    types: Option<Vec<String>>,
) -> Result<Vec<Entity>, NgsiError> {
    let tenant = tenant(s, &c, headers)?;
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        let names: Option<Vec<&str>> = types
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect());
        entities(&s, &c, tenant, names.as_deref())
    })
    .await
    .map_err(|_| {
        NgsiError::new(
            beffroi_ngsild::ErrorType::InternalError,
            "the request failed",
        )
    })?
}

/// `GET /ngsi-ld/v1/entities`.
pub async fn query_entities(
    State(s): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = context(&headers);
    if let Err(e) = check_link(&headers, &ctx) {
        return err(e);
    }
    let q = match Query::parse(&pairs(raw.as_deref())) {
        Ok(q) => q,
        Err(e) => return err(e),
    };
    let types: Option<Vec<String>> = q
        .types
        .as_ref()
        .map(|t| t.names().into_iter().map(str::to_string).collect());
    let all = match read(&s, c, &headers, types).await {
        Ok(all) => all,
        Err(e) => return err(e),
    };
    let sel = beffroi_ngsild::select(&all, &q);
    let body = if wants_ld(&headers) {
        sel.body_with_context(&q, &ctx)
    } else {
        sel.body(&q)
    };
    let mut r = answer(&headers, &ctx, StatusCode::OK, body);
    if q.count
        && let Ok(v) = HeaderValue::from_str(&sel.total.to_string())
    {
        r.headers_mut()
            .insert(beffroi_ngsild::RESULTS_COUNT_HEADER, v);
    }
    r
}

/// `GET /ngsi-ld/v1/entities/{id}`.
pub async fn entity(
    State(s): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = context(&headers);
    if let Err(e) = check_link(&headers, &ctx) {
        return err(e);
    }
    let all = match read(&s, c, &headers, None).await {
        Ok(all) => all,
        Err(e) => return err(e),
    };
    match all.iter().find(|e| e.id == id) {
        Some(e) => {
            let body = e.to_json(beffroi_ngsild::Representation::Normalized, None);
            let body = if wants_ld(&headers) {
                ctx.with_body_context(body)
            } else {
                body
            };
            answer(&headers, &ctx, StatusCode::OK, body)
        }
        None => err(NgsiError::not_found(format!("entity `{id}`"))),
    }
}

/// `GET /ngsi-ld/v1/types` (with `details=true`, the type details).
pub async fn types(
    State(s): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = context(&headers);
    let details = raw
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p == "details=true"));
    let all = match read(&s, c, &headers, None).await {
        Ok(all) => all,
        Err(e) => return err(e),
    };
    let body = if details {
        beffroi_ngsild::entity_type_details(&all)
    } else {
        beffroi_ngsild::entity_type_list(&all)
    };
    answer(&headers, &ctx, StatusCode::OK, body)
}

/// `GET /ngsi-ld/v1/jsonldContexts/{name}`: the core context and Beffroi's.
pub async fn jsonld_context(Path(name): Path<String>) -> Response {
    let doc = match format!("/ngsi-ld/v1/jsonldContexts/{name}").as_str() {
        CONTEXT_PATH => JsonLdContext::document(),
        CORE_PATH => beffroi_ngsild::core_context_document(),
        _ => return err(NgsiError::not_found(format!("context `{name}`"))),
    };
    let mut r = doc.to_string().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_LD));
    r
}

/// `POST /ngsi-ld/v1/subscriptions`.
pub async fn subscribe(
    State(s): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = context(&headers);
    if let Err(e) = check_link(&headers, &ctx) {
        return err(e);
    }
    let tenant = match tenant(&s, &c, &headers) {
        Ok(t) => t,
        Err(e) => return err(e),
    };
    let req = match beffroi_ngsild::parse_subscription(&body, &ctx) {
        Ok(r) => r,
        Err(e) => return err(e),
    };
    let host = req.notification.endpoint.host().to_string();
    let subs = Arc::clone(&s.subscriptions);
    let id = {
        let mut held = subs.held.lock().unwrap_or_else(|p| p.into_inner());
        if req
            .id
            .as_ref()
            .is_some_and(|id| held.iter().any(|h| &h.sub.id == id))
        {
            return err(NgsiError::new(
                beffroi_ngsild::ErrorType::AlreadyExists,
                "id: a subscription with this id exists",
            ));
        }
        if held.len() >= MAX_SUBSCRIPTIONS {
            return err(NgsiError::too_complex(
                "subscriptions",
                format!("at most {MAX_SUBSCRIPTIONS}"),
            ));
        }
        let n = subs.next.fetch_add(1, Ordering::Relaxed) + 1;
        let sub = Subscription::new(req, || {
            format!("urn:ngsi-ld:Subscription:{}:{n}", s.engine.territory.id)
        });
        let id = sub.id.clone();
        held.push(Held {
            sub,
            scope: c.scope.clone(),
            tenant,
            context: ctx.clone(),
        });
        id
    };
    if !subs.notifier.swap(true, Ordering::AcqRel) {
        tokio::spawn(notify_loop(s.clone()));
    }
    let mut r = StatusCode::CREATED.into_response();
    // The guard audits the call (`ngsild.subscribe`); with where notifications go.
    r.extensions_mut().insert(crate::routes::AuditDetail(
        serde_json::json!({ "subscription": id, "endpoint_host": host }),
    ));
    if let Ok(v) = HeaderValue::from_str(&format!("/ngsi-ld/v1/subscriptions/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn visible_subscriptions(s: &AppState, c: &Caller) -> Vec<serde_json::Value> {
    let now = now(s);
    let held = s
        .subscriptions
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    held.iter()
        .filter(|h| h.scope == c.scope)
        .map(|h| h.sub.to_json(now))
        .collect()
}

/// `GET /ngsi-ld/v1/subscriptions`: those made with the caller's scope.
pub async fn subscriptions(State(s): State<AppState>, c: Caller, headers: HeaderMap) -> Response {
    let ctx = context(&headers);
    answer(
        &headers,
        &ctx,
        StatusCode::OK,
        serde_json::Value::Array(visible_subscriptions(&s, &c)),
    )
}

/// Sends the entities the engine's changes touch to the subscriptions they match.
async fn notify_loop(s: AppState) {
    let mut rx = s.engine.subscribe();
    loop {
        let changed = match rx.recv().await {
            Ok(LiveEvent::Incident(change)) => {
                incident_entity(&s.engine.territory, &change.incident).map(|(c, e)| {
                    (
                        c,
                        e,
                        vec!["severity", "category", "subCategory", "dateIssued"],
                    )
                })
            }
            Ok(LiveEvent::Device(d)) => device_entity(&s, &s.engine.territory, d.device)
                .map(|(c, e)| (c, e, vec!["deviceState"])),
            Ok(_) => None,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "NGSI-LD notifications: the live stream lagged; changes missed"
                );
                None
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some((commune, entity, attrs)) = changed else {
            continue;
        };
        let now = now(&s);
        // Which subscriptions, and their bodies, decided under the lock; sent without it.
        let due: Vec<(String, String, Option<String>, String)> = {
            let held = s
                .subscriptions
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            held.iter()
                .filter(|h| h.scope.holds(commune) && h.tenant.is_none_or(|t| t == commune))
                .filter(|h| {
                    h.sub.matches(&entity) && h.sub.watches(&attrs) && h.sub.may_notify(now)
                })
                .map(|h| {
                    let ctx = &h.context;
                    let body = beffroi_ngsild::notification_body(
                        &h.sub,
                        std::slice::from_ref(&entity),
                        now,
                        ctx,
                    );
                    (
                        h.sub.id.clone(),
                        h.sub.request.notification.endpoint.uri().to_string(),
                        h.sub.notification_link_header(ctx),
                        body.to_string(),
                    )
                })
                .collect()
        };
        for (id, uri, link, body) in due {
            let delivered = tokio::task::spawn_blocking(move || {
                let agent = ureq_agent();
                let mut req = agent.post(&uri).header(
                    "Content-Type",
                    if link.is_some() {
                        "application/json"
                    } else {
                        MEDIA_LD
                    },
                );
                if let Some(l) = &link {
                    req = req.header("Link", l);
                }
                req.send(body.as_bytes())
                    .is_ok_and(|r| r.status().is_success())
            })
            .await
            .unwrap_or(false);
            let mut held = s
                .subscriptions
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(h) = held.iter_mut().find(|h| h.sub.id == id) {
                h.sub.record(now, delivered);
            }
        }
    }
}

/// The engine's clock as NGSI-LD's time (the epoch if out of its range).
fn now(s: &AppState) -> Timestamp {
    Timestamp::from_millis(s.engine.clock.now().0)
        .or(Timestamp::from_millis(0))
        .expect("the epoch is in range")
}

fn ureq_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(NOTIFY_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent()
}
