//! THE route table: every route of the API with its method, path and access rule, and the
//! guard that enforces the rule before the handler runs.
//!
//! [`ROUTES`] is the only place routes are declared: [`crate::router`] builds the router from
//! it, so a route cannot exist without a rule, and the authorisation walk test
//! (`tests/access_walk.rs`) plays every entry for every role and scope against an expected
//! matrix kept in a data file.
//!
//! Scope modes (what "scoped to communes" means per route):
//! - [`ScopeMode::Global`]: the data is not tied to a commune (territory structure, rules,
//!   declared events): the permission alone decides.
//! - [`ScopeMode::Filtered`]: a list; the handler keeps only what the caller's scope sees.
//! - [`ScopeMode::CallerScope`]: a territory-wide view (key figures, handover) computed on
//!   the caller's communes only.
//! - [`ScopeMode::Object`]: one incident, device, unit or crisis named by `{id}`. Reading
//!   needs one of its communes in scope, acting needs all of them, and an incident must be
//!   visible ([`Principal::visibility_for`]: `cyber` needs `incident.cyber`). An object out
//!   of scope and one that does not exist get the same answer, [`ObjectKind::not_found`]
//!   (same status, code and message: its existence is not revealed).
//! - [`ScopeMode::Body`]: a creation whose communes come in the body; the handler checks
//!   that the caller's scope covers them (403 otherwise).
//! - [`ScopeMode::Territory`]: only a territory-wide grant will do (the data or the effect
//!   spans communes: the ingest of arbitrary devices, the rejection log, events).
//!
//! Missing authentication answers 401, a missing permission 403.
//!
//! The guard also computes, once per request, the caller's [`Visibility`] of incidents and
//! puts it in the [`Caller`]: every incident a handler returns, nested ones included, is read
//! through [`Caller::incidents`], which applies it.

use beffroi_core::SafeText;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use beffroi_core::{AuditOutcome, AuditRecord, CommuneIdx, IncidentId};

use crate::access::{Permission, Principal, Scope, Visibility};
use crate::auth::{Credential, csrf_matches};
use crate::error::{ApiError, ErrorCode};
use crate::{
    AppState, alarm_health, cap, console, crisis, crowd, events, federation, handlers, handover,
    ngsild, overview, privacy, retention, scoped, security, shelving, situations, taxii, units,
    unmask,
};

/// What kind of object an `{id}` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Incident,
    Device,
    Unit,
    Crisis,
    Situation,
}

impl ObjectKind {
    /// THE answer for an object that does not exist or that the caller may not see: the same
    /// status, code and message in both cases, and no id in it (the answers are identical
    /// byte for byte).
    pub fn not_found(self) -> ApiError {
        match self {
            ObjectKind::Incident => ApiError::new(ErrorCode::NotFound, "no such incident"),
            ObjectKind::Device => ApiError::new(ErrorCode::NotFound, "no such device"),
            ObjectKind::Unit => ApiError::new(ErrorCode::UnitNotFound, "no such unit"),
            ObjectKind::Crisis => ApiError::new(ErrorCode::CrisisNotFound, "no such crisis"),
            ObjectKind::Situation => ApiError::new(ErrorCode::NotFound, "no such situation"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeMode {
    Global,
    Filtered,
    CallerScope,
    Object(ObjectKind),
    Body,
    Territory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No authentication (login, health, the OpenAPI document).
    Public,
    /// Any authenticated caller (who am I, logout).
    Authenticated,
    /// A permission, over a scope mode.
    Allow(Permission, ScopeMode),
}

/// One route: method, path (relative to the router root), access rule, audited action name
/// (state-changing routes), and handler.
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// Dotted action name written to the audit log for state-changing routes.
    pub action: &'static str,
    pub handler: fn() -> MethodRouter<AppState>,
}

macro_rules! route {
    ($m:ident $path:literal, $access:expr, $action:literal, $h:path) => {
        RouteSpec {
            method: Method::$m,
            path: $path,
            access: $access,
            action: $action,
            handler: || route!(@m $m)($h),
        }
    };
    (@m GET) => { get };
    (@m POST) => { post };
}

use Access::{Allow, Authenticated, Public};
use ObjectKind as O;
use Permission as P;
use ScopeMode::{Body, CallerScope, Filtered, Global, Object, Territory};

/// Every route of the API. Add a route here, with its rule, and an expectation line in
/// `tests/access_expectations.txt`, or the walk test fails.
pub static ROUTES: &[RouteSpec] = &[
    route!(GET "/healthz", Public, "", handlers::healthz),
    route!(GET "/metrics", Allow(P::MetricsRead, Territory), "", handlers::metrics),
    route!(POST "/api/v1/auth/login", Public, "auth.login", handlers::login),
    route!(GET "/api/v1/openapi.json", Public, "", handlers::openapi),
    route!(GET "/api/v1/clock", Public, "", handlers::clock),
    route!(POST "/api/v1/auth/logout", Authenticated, "auth.logout", handlers::logout),
    route!(GET "/api/v1/auth/me", Authenticated, "", overview::me),
    route!(GET "/api/v1/incidents", Allow(P::IncidentRead, Filtered), "", handlers::list_incidents),
    route!(GET "/api/v1/incidents/{id}", Allow(P::IncidentRead, Object(O::Incident)), "", handlers::get_incident),
    route!(POST "/api/v1/incidents/{id}/actions", Allow(P::IncidentAct, Object(O::Incident)), "incident.action", handlers::act),
    route!(GET "/api/v1/situations", Allow(P::IncidentRead, Filtered), "", situations::list),
    route!(POST "/api/v1/situations/acknowledge", Allow(P::IncidentAct, Filtered), "situation.acknowledge", situations::acknowledge_many),
    route!(GET "/api/v1/situations/{id}", Allow(P::IncidentRead, Object(O::Situation)), "", situations::get),
    route!(POST "/api/v1/situations/{id}/actions", Allow(P::IncidentAct, Object(O::Situation)), "situation.action", situations::act),
    route!(POST "/api/v1/situations/{id}/split", Allow(P::IncidentAct, Object(O::Situation)), "situation.split", situations::split),
    route!(POST "/api/v1/situations/{id}/merge", Allow(P::IncidentAct, Object(O::Situation)), "situation.merge", situations::merge),
    route!(POST "/api/v1/incidents/{id}/unmask", Allow(P::PersonalUnmask, Object(O::Incident)), "personal.unmask", unmask::unmask),
    // The second approver: each request is checked against its incident by the handler.
    route!(GET "/api/v1/unmask/requests", Allow(P::PersonalUnmask, Filtered), "", unmask::list_requests),
    route!(POST "/api/v1/unmask/requests/{id}/approve", Allow(P::PersonalUnmask, Filtered), "personal.unmask.approve", unmask::approve),
    route!(POST "/api/v1/unmask/requests/{id}/refuse", Allow(P::PersonalUnmask, Filtered), "personal.unmask.refuse", unmask::refuse_request),
    route!(POST "/api/v1/unmask/requests/{id}/reveal", Allow(P::PersonalUnmask, Filtered), "personal.unmask.reveal", unmask::reveal),
    route!(GET "/api/v1/territory", Allow(P::TerritoryRead, Global), "", handlers::territory),
    route!(GET "/api/v1/territory/sites", Allow(P::TerritoryRead, Global), "", handlers::sites_geojson),
    route!(GET "/api/v1/territory/communes", Allow(P::TerritoryRead, Global), "", console::communes_geojson),
    route!(GET "/api/v1/rules", Allow(P::TerritoryRead, Global), "", handlers::rules),
    route!(GET "/api/v1/devices", Allow(P::DeviceRead, Filtered), "", handlers::list_devices),
    route!(GET "/api/v1/devices/{id}", Allow(P::DeviceRead, Object(O::Device)), "", handlers::get_device),
    route!(POST "/api/v1/devices/{id}/quarantine", Allow(P::DeviceQuarantine, Object(O::Device)), "device.quarantine", security::quarantine),
    route!(POST "/api/v1/devices/{id}/release", Allow(P::DeviceQuarantine, Object(O::Device)), "device.release", security::release),
    route!(GET "/api/v1/security/quarantine", Allow(P::DeviceQuarantine, Filtered), "", security::quarantine_view),
    route!(POST "/api/v1/devices/{id}/observations", Allow(P::ObservationWrite, Object(O::Device)), "observation.ingest", handlers::post_device_observations),
    route!(POST "/api/v1/observations", Allow(P::ObservationWrite, Territory), "observation.ingest", handlers::post_observations),
    route!(GET "/api/v1/rejections", Allow(P::RejectionRead, Territory), "", handlers::rejections),
    route!(GET "/api/v1/stream", Allow(P::IncidentRead, Filtered), "", handlers::stream),
    route!(GET "/api/v1/overview", Allow(P::Supervise, CallerScope), "", overview::overview),
    route!(GET "/api/v1/handover", Allow(P::Handover, CallerScope), "", handover::handover),
    route!(POST "/api/v1/handover/notes", Allow(P::Handover, CallerScope), "handover.note", handover::write_note),
    route!(POST "/api/v1/handover/notes/{id}/read", Allow(P::Handover, CallerScope), "handover.note.read", handover::read_note),
    route!(GET "/api/v1/shelved", Allow(P::IncidentRead, Filtered), "", shelving::list_shelved),
    route!(POST "/api/v1/incidents/{id}/shelve", Allow(P::IncidentAct, Object(O::Incident)), "incident.shelve", shelving::shelve),
    route!(POST "/api/v1/incidents/{id}/unshelve", Allow(P::IncidentAct, Object(O::Incident)), "incident.unshelve", shelving::unshelve),
    route!(GET "/api/v1/alarm-health", Allow(P::IncidentRead, CallerScope), "", alarm_health::alarm_health),
    route!(GET "/api/v1/map/clusters", Allow(P::DeviceRead, Filtered), "", console::map_clusters),
    route!(GET "/api/v1/crowd", Allow(P::DeviceRead, Filtered), "", crowd::crowd),
    route!(GET "/api/v1/units", Allow(P::UnitRead, Filtered), "", units::list_units),
    route!(GET "/api/v1/units/{id}", Allow(P::UnitRead, Object(O::Unit)), "", units::get_unit),
    route!(POST "/api/v1/units/{id}/status", Allow(P::UnitStatus, Object(O::Unit)), "unit.status", units::set_unit_status),
    route!(GET "/api/v1/crises", Allow(P::CrisisRead, Filtered), "", crisis::list_crises),
    route!(POST "/api/v1/crises", Allow(P::CrisisManage, Body), "crisis.open", crisis::open_crisis),
    route!(GET "/api/v1/crises/{id}", Allow(P::CrisisRead, Object(O::Crisis)), "", crisis::get_crisis),
    route!(POST "/api/v1/crises/{id}/log", Allow(P::CrisisManage, Object(O::Crisis)), "crisis.log", crisis::crisis_log),
    route!(POST "/api/v1/crises/{id}/level", Allow(P::CrisisManage, Object(O::Crisis)), "crisis.level", crisis::crisis_level),
    route!(POST "/api/v1/crises/{id}/roles", Allow(P::CrisisManage, Object(O::Crisis)), "crisis.role", crisis::crisis_role),
    route!(POST "/api/v1/crises/{id}/close", Allow(P::CrisisManage, Object(O::Crisis)), "crisis.close", crisis::close_crisis),
    route!(GET "/api/v1/crises/{id}/report", Allow(P::CrisisRead, Object(O::Crisis)), "", crisis::crisis_report),
    route!(GET "/api/v1/events", Allow(P::EventRead, Global), "", events::list_events),
    route!(POST "/api/v1/events", Allow(P::EventManage, Territory), "event.declare", events::create_event),
    route!(GET "/api/v1/events/{id}", Allow(P::EventRead, Global), "", events::get_event),
    route!(POST "/api/v1/events/{id}/cancel", Allow(P::EventManage, Territory), "event.cancel", events::cancel_event),
    // GET actions name the refusals (`access.privacy.…`) that the access log shows.
    route!(GET "/api/v1/privacy/register", Allow(P::PrivacyRead, Global), "privacy.register", privacy::register_json),
    route!(GET "/api/v1/privacy/register.html", Allow(P::PrivacyRead, Global), "privacy.register", privacy::register_html),
    route!(GET "/api/v1/privacy/access-log", Allow(P::PrivacyRead, Territory), "privacy.access_log", privacy::access_log),
    route!(GET "/api/v1/privacy/notices", Allow(P::PrivacyRead, Global), "privacy.notices", privacy::notices),
    route!(GET "/api/v1/devices/{id}/notice", Public, "", privacy::notice),
    // Public alerts: what `cap.toml` selects, nothing else (see `cap`).
    route!(GET "/api/v1/cap/alerts", Public, "", cap::feed),
    route!(GET "/api/v1/cap/alerts/{id}", Public, "", cap::alert),
    // Cyber threat sharing (TAXII 2.1): partners authenticate with the credentials of
    // `taxii.toml`, per API root, in the handlers (`taxii::admit`); no console account.
    // Federation: partners post signed batches (`federation::inbox` checks the signature
    // with the key `federation.toml` pins); the console sees the links.
    route!(POST "/federation/v1/inbox", Public, "", federation::inbox),
    route!(GET "/api/v1/federation/links", Allow(P::TerritoryRead, Global), "", federation::links),
    // NGSI-LD for the city's data platform: the caller's communes only, a tenant being one
    // of them (see `ngsild`).
    route!(GET "/ngsi-ld/v1/entities", Allow(P::DeviceRead, Filtered), "", ngsild::query_entities),
    route!(GET "/ngsi-ld/v1/entities/{id}", Allow(P::DeviceRead, Filtered), "", ngsild::entity),
    route!(GET "/ngsi-ld/v1/types", Allow(P::DeviceRead, Filtered), "", ngsild::types),
    route!(POST "/ngsi-ld/v1/subscriptions", Allow(P::DeviceRead, Filtered), "ngsild.subscribe", ngsild::subscribe),
    route!(POST "/ngsi-ld/v1/subscriptions/", Allow(P::DeviceRead, Filtered), "ngsild.subscribe", ngsild::subscribe),
    route!(GET "/ngsi-ld/v1/subscriptions", Allow(P::DeviceRead, Filtered), "", ngsild::subscriptions),
    route!(GET "/ngsi-ld/v1/subscriptions/", Allow(P::DeviceRead, Filtered), "", ngsild::subscriptions),
    route!(GET "/ngsi-ld/v1/jsonldContexts/{id}", Public, "", ngsild::jsonld_context),
    route!(GET "/taxii2/", Public, "", taxii::discovery),
    route!(GET "/taxii2/{root}/", Public, "", taxii::api_root),
    route!(GET "/taxii2/{root}/collections/", Public, "", taxii::collections),
    route!(GET "/taxii2/{root}/collections/{id}/", Public, "", taxii::collection),
    route!(GET "/taxii2/{root}/collections/{id}/objects/", Public, "", taxii::objects_route),
    route!(GET "/taxii2/{root}/collections/{id}/objects/{object}/", Public, "", taxii::object_route),
    route!(GET "/taxii2/{root}/collections/{id}/objects/{object}/versions/", Public, "", taxii::versions_route),
    route!(GET "/taxii2/{root}/collections/{id}/manifest/", Public, "", taxii::manifest_route),
    route!(GET "/api/v1/privacy/retention", Allow(P::PrivacyRead, Global), "privacy.retention", retention::status),
    route!(GET "/api/v1/privacy/holds", Allow(P::PrivacyRead, Global), "privacy.holds", retention::list_holds),
    route!(POST "/api/v1/incidents/{id}/hold", Allow(P::LegalHold, Object(O::Incident)), "privacy.hold", retention::set_hold),
    route!(POST "/api/v1/incidents/{id}/hold/release", Allow(P::LegalHold, Object(O::Incident)), "privacy.hold.release", retention::release_hold),
    route!(POST "/api/v1/privacy/subject/search", Allow(P::SubjectRequest, Territory), "privacy.subject.access", retention::subject_search),
    route!(POST "/api/v1/privacy/subject/erase", Allow(P::SubjectRequest, Territory), "privacy.subject.erase", retention::subject_erase),
];

/// What a handler adds to the audit record of its route (counts, never personal values):
/// put in the response's extensions; the guard merges its keys into the record's detail.
#[derive(Clone, Debug)]
pub struct AuditDetail(pub serde_json::Value);

/// The caller of a guarded request, put in the request's extensions by the guard.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Arc<Principal>,
    /// The caller's scope for the route's permission (territory for `Authenticated`).
    pub scope: Scope,
    /// The session id when the request came with a session (cookie or bearer).
    pub session: Option<String>,
    /// The incidents the caller may see in this request (see [`Caller::incidents`]).
    pub visibility: Arc<Visibility>,
}

impl Caller {
    pub fn name(&self) -> &str {
        &self.principal.name
    }

    /// The store's incidents as this caller may see them: the only way handlers read
    /// incidents.
    pub fn incidents(&self, s: &AppState) -> scoped::Incidents {
        scoped::Incidents::new(Arc::clone(&s.reader), Arc::clone(&self.visibility))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "not authenticated"))
    }
}

/// Name of the console's session cookie.
pub const SESSION_COOKIE: &str = "beffroi_session";
/// Header carrying the session's CSRF token on state-changing cookie requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE).then_some(v)
        })
}

/// The client's address: the socket's peer, or, when the peer is a trusted proxy, the
/// right-most `X-Forwarded-For` hop that is not itself a trusted proxy (see [`client_from`]).
pub(crate) fn client_addr(
    s: &AppState,
    req_headers: &HeaderMap,
    ext: &axum::http::Extensions,
) -> String {
    let peer = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let forwarded = forwarded_for(req_headers);
    let peers = s
        .web
        .cluster_peers
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if peers.is_empty() {
        client_from(peer, &forwarded, &s.web.trusted_proxies)
    } else {
        let trusted: Vec<IpAddr> = s
            .web
            .trusted_proxies
            .iter()
            .chain(&peers)
            .copied()
            .collect();
        client_from(peer, &forwarded, &trusted)
    }
}

/// Every `X-Forwarded-For` header of a request, in order, as one comma-separated list.
pub fn forwarded_for(headers: &HeaderMap) -> String {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The client of a request that came from `peer` with `X-Forwarded-For: forwarded`, when
/// `trusted` lists the proxies in front of the server. Each proxy appends the address it saw,
/// so the list is only as trustworthy as its right end: walking from the right, trusted
/// proxies are skipped and the first other hop is the client. Everything to its left was
/// written by the client and is ignored. A peer that is not a trusted proxy is the client,
/// whatever it sends; an unparsable hop stops the walk (the hop before it is used).
pub fn client_from(peer: Option<IpAddr>, forwarded: &str, trusted: &[IpAddr]) -> String {
    let Some(mut client) = peer else {
        return "unknown".to_string();
    };
    if !trusted.contains(&client) {
        return client.to_string();
    }
    for hop in forwarded.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !trusted.contains(&ip) {
            break;
        }
    }
    client.to_string()
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The communes an object spans (empty: the whole territory), and for incidents their
/// category. `None` when the object does not exist (the handler answers 404 itself).
async fn object_of(
    s: &AppState,
    kind: ObjectKind,
    id: &str,
) -> Result<Option<(Vec<CommuneIdx>, Option<String>)>, ApiError> {
    Ok(match kind {
        // The guard decides on a situation through its view before asking here.
        ObjectKind::Situation => None,
        ObjectKind::Device => s.engine.territory.device_id(id).map(|d| {
            let t = &s.engine.territory;
            (vec![t.site(t.device(d).site).commune], None)
        }),
        ObjectKind::Unit => s
            .engine
            .ops()
            .units
            .iter()
            .find(|u| &*u.spec.id == id)
            .map(|u| (u.spec.communes.clone(), None)),
        ObjectKind::Crisis => {
            let Ok(n) = id.parse::<u64>() else {
                return Ok(None);
            };
            s.engine
                .ops()
                .crises
                .iter()
                .find(|c| c.id.0 == n)
                .map(|c| (c.communes.clone(), None))
        }
        ObjectKind::Incident => {
            let Ok(n) = id.parse::<u64>() else {
                return Ok(None);
            };
            let reader = Arc::clone(&s.reader);
            let found = handlers::blocking(move || {
                reader
                    // Every incident: the guard tells missing from out of scope (only
                    // the latter is audited as a denial), then answers both the same.
                    .incidents_by_id(&[IncidentId(n)], &Visibility::everything())
                    .map_err(handlers::store_err)
            })
            .await?;
            found
                .into_iter()
                .next()
                .map(|i| (vec![i.commune], Some(i.category.to_string())))
        }
    })
}

/// Enforces a route's rule, then runs the handler and audits state-changing calls.
async fn guard(
    spec: &'static RouteSpec,
    s: AppState,
    target: Option<String>,
    mut req: Request,
    next: Next,
) -> Response {
    if spec.access == Public {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let deny = |s: &AppState, who: &str, err: ApiError| -> Response {
        s.auth_metrics.denied(err.code.as_str());
        s.audit.record(AuditRecord {
            at_ms: wall_ms(),
            actor: crate::scrub::audit_text(s, who),
            action: format!(
                "access.{}",
                if spec.action.is_empty() {
                    "read"
                } else {
                    spec.action
                }
            ),
            target: target.as_deref().map(|t| crate::scrub::audit_text(s, t)),
            outcome: AuditOutcome::Denied,
            detail: SafeText::redacting(
                &serde_json::json!({
                    "method": spec.method.as_str(), "route": spec.path, "code": err.code.as_str(),
                })
                .to_string(),
            ),
        });
        err.into_response()
    };

    // Who: a bearer token (session id or API token) or the session cookie.
    let headers = req.headers();
    let cred = match (bearer(headers), session_cookie(headers)) {
        (Some(b), _) => Some(Credential::Bearer(b)),
        (None, Some(c)) => Some(Credential::Cookie(c)),
        (None, None) => None,
    };
    let Some(who) = cred.and_then(|c| s.auth.authenticate(c)) else {
        // Not audited per request (anyone can send these); counted.
        s.auth_metrics.denied("unauthorized");
        return ApiError::new(
            ErrorCode::Unauthorized,
            "missing, invalid or expired credentials",
        )
        .into_response();
    };
    let name = who.principal.name.clone();
    if let Some(expected) = &who.csrf
        && !is_safe(&method)
    {
        let ok = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| csrf_matches(expected, given));
        if !ok {
            return deny(
                &s,
                &name,
                ApiError::new(
                    ErrorCode::CsrfFailed,
                    "missing or wrong X-CSRF-Token header",
                ),
            );
        }
    }

    let principal = &who.principal;
    let (scope, visibility) = match spec.access {
        Public | Authenticated => (Scope::Territory, principal.visibility()),
        Allow(perm, mode) => {
            let scope = who.principal.scope_for(perm);
            let forbidden = || {
                ApiError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "needs permission `{}`{}",
                        perm.as_str(),
                        match mode {
                            Territory => " over the whole territory",
                            _ => "",
                        }
                    ),
                )
            };
            if scope.is_nothing() || (mode == Territory && !scope.is_territory()) {
                return deny(&s, &name, forbidden());
            }
            // A situation spans communes and categories: the caller may reach it when it
            // sees one of its incidents under the route's permission (what it then sees
            // and acts on is the view of those incidents only).
            if let Object(ObjectKind::Situation) = mode
                && let Some(id) = &target
            {
                let ops = s.engine.ops();
                let found = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| ops.situation(n).cloned());
                let Some(found) = found else {
                    let resp = ObjectKind::Situation.not_found().into_response();
                    audit_call(&s, spec, &method, name, target, &resp);
                    return resp;
                };
                if found.view(&principal.visibility_for(&scope)).is_none() {
                    return deny(&s, &name, ObjectKind::Situation.not_found());
                }
            } else if let Object(kind) = mode
                && let Some(id) = &target
            {
                let found = match object_of(&s, kind, id).await {
                    Ok(f) => f,
                    Err(e) => return e.into_response(),
                };
                // Missing and out of scope: one answer.
                let Some((communes, category)) = found else {
                    let resp = kind.not_found().into_response();
                    audit_call(&s, spec, &method, name, target, &resp);
                    return resp;
                };
                let mut allowed = if is_safe(&method) {
                    scope.sees(&communes)
                } else {
                    scope.covers(&communes)
                };
                if let Some(category) = &category {
                    let visible = principal.visibility_for(&scope);
                    allowed &= communes.iter().all(|c| visible.sees(*c, category));
                }
                if !allowed {
                    return deny(&s, &name, kind.not_found());
                }
            }
            let visibility = match mode {
                // The path's incident, under the route's own permission.
                Object(ObjectKind::Incident | ObjectKind::Situation) => {
                    principal.visibility_for(&scope)
                }
                // Acting on situations listed in a body: under the route's permission.
                Filtered if !is_safe(&method) => principal.visibility_for(&scope),
                // Figures computed on the caller's communes for this permission.
                CallerScope => principal
                    .visibility_for(&scope.intersect(&principal.scope_for(P::IncidentRead))),
                _ => principal.visibility(),
            };
            (scope, visibility)
        }
    };
    req.extensions_mut().insert(Caller {
        principal: Arc::clone(&who.principal),
        scope,
        session: who.session.clone(),
        visibility: Arc::new(visibility),
    });
    let resp = next.run(req).await;
    audit_call(&s, spec, &method, name, target, &resp);
    resp
}

/// Audits a state-changing call with the outcome of its answer (and what the handler added).
fn audit_call(
    s: &AppState,
    spec: &RouteSpec,
    method: &Method,
    name: String,
    target: Option<String>,
    resp: &Response,
) {
    if !is_safe(method) && !spec.action.is_empty() && spec.action != "auth.logout" {
        let status = resp.status();
        let outcome = if status.is_success() {
            AuditOutcome::Ok
        } else if status == axum::http::StatusCode::FORBIDDEN
            || status == axum::http::StatusCode::UNAUTHORIZED
        {
            AuditOutcome::Denied
        } else {
            AuditOutcome::Failed
        };
        let mut detail = serde_json::json!({"route": spec.path, "status": status.as_u16()});
        // A handler may say more (purpose, justification, reason of a refusal).
        if let Some(extra) = resp.extensions().get::<AuditDetail>()
            && let (Some(d), Some(x)) = (detail.as_object_mut(), extra.0.as_object())
        {
            for (k, v) in x {
                d.insert(k.clone(), v.clone());
            }
        }
        s.audit.record(AuditRecord {
            at_ms: wall_ms(),
            actor: crate::scrub::audit_text(s, &name),
            action: spec.action.to_string(),
            target: target.as_deref().map(|t| crate::scrub::audit_text(s, t)),
            outcome,
            detail: crate::scrub::audit_text(s, &detail.to_string()),
        });
    }
}

pub(crate) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The routes with their guards, ready to be added to the router.
pub(crate) fn guarded(state: &AppState) -> Vec<(&'static str, MethodRouter<AppState>)> {
    ROUTES
        .iter()
        .map(|spec| {
            let st = state.clone();
            let layer = axum::middleware::from_fn(
                move |params: Result<
                    axum::extract::RawPathParams,
                    axum::extract::rejection::RawPathParamsRejection,
                >,
                      req: Request,
                      next: Next| {
                    let st = st.clone();
                    let target = params.ok().and_then(|p| {
                        p.iter()
                            .find(|(k, _)| *k == "id")
                            .map(|(_, v)| v.to_string())
                    });
                    async move { guard(spec, st, target, req, next).await }
                },
            );
            (spec.path, (spec.handler)().layer(layer))
        })
        .collect()
}

/// Security headers on every answer (API, console, assets): no sniffing, no framing, no
/// referrer, no powerful features; `no-store` and a deny-all CSP on API answers; HSTS when
/// served over TLS (directly or behind a TLS-terminating proxy).
pub async fn security_headers(
    State(web): State<WebSecurity>,
    req: Request,
    next: Next,
) -> Response {
    let api = req.uri().path().starts_with("/api/")
        || req.uri().path() == "/metrics"
        || req.uri().path() == "/healthz";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
    );
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    if web.hsts {
        set(
            h,
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
    if api {
        set(h, "cache-control", "no-store");
        if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
            set(
                h,
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            );
        }
    } else if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(h, "content-security-policy", "frame-ancestors 'none'");
    }
    resp
}

/// How the web side is served (the `[http]` table).
#[derive(Clone, Debug, Default)]
pub struct WebSecurity {
    /// The site is reached over HTTPS: cookies get `Secure`, answers get HSTS.
    pub secure_cookies: bool,
    pub hsts: bool,
    /// The reverse proxies in front of the server: `X-Forwarded-For` is read only from them
    /// (empty: never read).
    pub trusted_proxies: Arc<[IpAddr]>,
    /// On a cluster node, the addresses the other nodes advertise: trusted like proxies,
    /// since a standby relays the console to the active node (kept up to date from the
    /// cluster's membership; empty on a single server).
    pub cluster_peers: Arc<std::sync::RwLock<Vec<IpAddr>>>,
}

#[cfg(test)]
mod tests {
    use super::client_from;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_read_from_its_right_end_and_only_from_a_trusted_proxy() {
        let proxy = [ip("127.0.0.1")];
        // Behind the proxy: the hop it appended, not what the client wrote before it.
        assert_eq!(
            client_from(Some(ip("127.0.0.1")), "1.2.3.4, 198.51.100.7", &proxy),
            "198.51.100.7"
        );
        // Two proxies of ours: both skipped.
        let two = [ip("127.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            client_from(
                Some(ip("127.0.0.1")),
                "6.6.6.6, 198.51.100.7, 10.0.0.2",
                &two
            ),
            "198.51.100.7"
        );
        // Several headers are one list, in order.
        assert_eq!(
            client_from(Some(ip("127.0.0.1")), "6.6.6.6,198.51.100.8", &proxy),
            "198.51.100.8"
        );
        // A client reaching the server directly cannot choose its address.
        assert_eq!(
            client_from(Some(ip("203.0.113.5")), "10.9.9.9", &proxy),
            "203.0.113.5"
        );
        // No proxy trusted: the header is never read.
        assert_eq!(
            client_from(Some(ip("127.0.0.1")), "198.51.100.7", &[]),
            "127.0.0.1"
        );
        // Garbage stops the walk: the last good hop (here the proxy itself) is used.
        assert_eq!(
            client_from(Some(ip("127.0.0.1")), "198.51.100.7, not-an-ip", &proxy),
            "127.0.0.1"
        );
        assert_eq!(client_from(None, "198.51.100.7", &proxy), "unknown");
    }

    proptest::proptest! {
        /// Whatever a client prepends, the address is the one the trusted proxy appended.
        #[test]
        fn a_client_cannot_choose_its_address_through_the_header(
            spoof in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..8),
            real in proptest::prelude::any::<u32>(),
        ) {
            let real = IpAddr::from(std::net::Ipv4Addr::from(real));
            proptest::prop_assume!(real != ip("127.0.0.1"));
            let mut hops: Vec<String> = spoof
                .iter()
                .map(|a| std::net::Ipv4Addr::from(*a).to_string())
                .collect();
            hops.push(real.to_string());
            let got = client_from(Some(ip("127.0.0.1")), &hops.join(", "), &[ip("127.0.0.1")]);
            proptest::prop_assert_eq!(got, real.to_string());
        }
    }
}
