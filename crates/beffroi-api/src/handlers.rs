use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use beffroi_core::{Actor, DeviceIdx, IncidentAction, IncidentId, Severity, Status, Value};
use beffroi_engine::live::{DeviceState, LiveEvent};
use beffroi_engine::runner::{ActError, EngineHandle};
use beffroi_engine::source::Refused;
use beffroi_engine::store::IncidentQuery;
use beffroi_engine::{Ack, AckOutcome, Envelope, Source};
use beffroi_wire::Format;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

use crate::AppState;
use crate::access::Permission;
use crate::dto::*;
use crate::error::{ApiError, ErrorCode};
use crate::routes::{Caller, ObjectKind};

/// The authenticated user of a request (its name), from the guard's [`Caller`].
pub struct User(pub String);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let c = Caller::from_request_parts(parts, state).await?;
        Ok(User(c.principal.name.clone()))
    }
}

pub(crate) fn store_err(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "store read failed");
    ApiError::new(ErrorCode::StoreUnavailable, "the store is unavailable")
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(store_err)?
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "ready"), (status = 503, description = "`starting`, or `not_storing` while commits fail (disk full, I/O error)")))]
pub async fn healthz(State(s): State<AppState>) -> Response {
    if !s.ready.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    } else if !s.engine.storing() {
        (StatusCode::SERVICE_UNAVAILABLE, "not_storing\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// The engine's clock, for the tools that feed it (`beffroi simulate` stamps its readings
/// on it, so that a server on the wall clock does not refuse them as ahead of its time).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClockDto {
    /// The engine's processing time (RFC 3339, UTC).
    pub now: String,
    /// The same, in milliseconds since the epoch.
    pub now_ms: i64,
    /// Seconds of the engine's clock per wall-clock second: 1 on the wall clock, the
    /// speed of an accelerated demo.
    pub rate: f64,
}

#[utoipa::path(get, path = "/api/v1/clock", responses((status = 200, body = ClockDto)))]
pub async fn clock(State(s): State<AppState>) -> Json<ClockDto> {
    let now = s.engine.clock.now();
    Json(ClockDto {
        now: now.to_string(),
        now_ms: now.0,
        rate: s.engine.clock.rate(),
    })
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    crate::alarm_health::refresh_gauges(&s).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.engine.metrics.encode(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse, description = "Also sets the session cookie"),
        (status = 401, body = crate::error::ErrorBody, description = "invalid_credentials: a wrong name, password or one-time code, or a missing code (which one is not said)"),
        (status = 429, body = crate::error::ErrorBody, description = "too_many_attempts or locked_out, with Retry-After")))]
pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    use crate::auth::LoginError;
    let Json(req) = body.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let client = crate::routes::client_addr(&s, &headers, &ext);
    let auth = Arc::clone(&s.auth);
    // What the audit log records as the actor: an account's name; anything else someone
    // typed (a mistyped name, an e-mail, a phone number, a 900 KB string) only as a keyed
    // hash, so that repeated attempts can be told apart without keeping what was typed.
    let user = if s.auth.has_account(&req.username) {
        req.username.clone()
    } else {
        match &s.pseudonymiser {
            Some(p) => p
                .pseudonym(beffroi_core::Identifier::Other, &req.username)
                .0
                .replacen("id:", "unknown-account:", 1),
            None => "(unknown account)".to_string(),
        }
    };
    let addr = client.clone();
    let result = tokio::task::spawn_blocking(move || {
        auth.login(&req.username, &req.password, req.totp.as_deref(), &addr)
    })
    .await
    .map_err(store_err)?;
    let record = |outcome, detail: serde_json::Value| {
        s.audit.record(beffroi_core::AuditRecord {
            at_ms: crate::routes::wall_ms(),
            actor: crate::scrub::audit_text(&s, &user),
            action: "auth.login".into(),
            target: None,
            outcome,
            detail: crate::scrub::audit_text(&s, &detail.to_string()),
        });
    };
    match result {
        Ok(ok) => {
            s.auth_metrics.login("ok");
            record(
                beffroi_core::AuditOutcome::Ok,
                serde_json::json!({"client": client}),
            );
            let mut cookie = format!(
                "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                crate::routes::SESSION_COOKIE,
                ok.session,
                ok.expires_in
            );
            if s.web.secure_cookies {
                cookie.push_str("; Secure");
            }
            let mut resp = Json(LoginResponse {
                token: ok.session,
                csrf_token: ok.csrf,
                expires_in: ok.expires_in,
                idle_timeout: u64::try_from(s.auth.policy().idle.millis() / 1000).unwrap_or(0),
            })
            .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        Err(e) => {
            s.auth_metrics.login(e.as_str());
            record(
                beffroi_core::AuditOutcome::Denied,
                serde_json::json!({"client": client, "reason": e.as_str()}),
            );
            tracing::warn!(reason = e.as_str(), "failed login");
            Err(match e.public() {
                LoginError::InvalidCredentials
                | LoginError::TotpMissing
                | LoginError::TotpInvalid => ApiError::new(
                    ErrorCode::InvalidCredentials,
                    "wrong username, password or one-time code",
                ),
                LoginError::Throttled { retry_after_s } => ApiError::new(
                    ErrorCode::TooManyAttempts,
                    format!("too many failed logins; retry in {retry_after_s} s"),
                )
                .retry_after(retry_after_s),
                LoginError::Locked { retry_after_s } => ApiError::new(
                    ErrorCode::LockedOut,
                    format!("locked out after repeated failures; retry in {retry_after_s} s"),
                )
                .retry_after(retry_after_s),
            })
        }
    }
}

#[utoipa::path(post, path = "/api/v1/auth/logout", responses((status = 204)), security(("bearer" = [])))]
pub async fn logout(State(s): State<AppState>, c: Caller) -> Response {
    if let Some(session) = &c.session {
        s.auth.logout(session);
    }
    s.audit.record(beffroi_core::AuditRecord {
        at_ms: crate::routes::wall_ms(),
        actor: crate::scrub::audit_text(&s, &c.principal.name),
        action: "auth.logout".into(),
        target: None,
        outcome: beffroi_core::AuditOutcome::Ok,
        detail: "{}".into(),
    });
    let clear = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        crate::routes::SESSION_COOKIE
    );
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = header::HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct IncidentParams {
    /// `open` (new, acknowledged, in progress), `active` (not closed), or a comma-separated
    /// list of statuses.
    status: Option<String>,
    category: Option<String>,
    /// Commune id.
    commune: Option<String>,
    min_severity: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/incidents", params(IncidentParams),
    responses((status = 200, body = [IncidentDto])), security(("bearer" = [])))]
pub async fn list_incidents(
    State(s): State<AppState>,
    c: Caller,
    Query(p): Query<IncidentParams>,
) -> Result<Json<Vec<IncidentDto>>, ApiError> {
    let limit = p.limit.unwrap_or(500).min(5000);
    // The caller's visibility is part of the query (`Caller::incidents`): a page is full.
    let mut q = IncidentQuery {
        category: p.category,
        commune: p.commune,
        limit,
        ..Default::default()
    };
    if let Some(st) = p.status.as_deref() {
        for part in st.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            match part {
                "open" => {
                    q.statuses
                        .extend([Status::New, Status::Acknowledged, Status::InProgress])
                }
                "active" => q.statuses.extend([
                    Status::New,
                    Status::Acknowledged,
                    Status::InProgress,
                    Status::Resolved,
                ]),
                other => q.statuses.push(Status::parse(other).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("unknown status `{other}`"),
                    )
                })?),
            }
        }
    }
    if let Some(sev) = p.min_severity.as_deref() {
        q.min_severity = Some(Severity::parse(sev).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown severity `{sev}`"),
            )
        })?);
    }
    let incidents = c.incidents(&s);
    let t = Arc::clone(&s.engine.territory);
    blocking(move || {
        let list = incidents.list(q).map_err(store_err)?;
        Ok(Json(
            list.iter().map(|i| IncidentDto::from_core(i, &t)).collect(),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/incidents/{id}", params(("id" = u64, Path)),
    responses((status = 200, body = IncidentDetailDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_incident(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
) -> Result<Json<IncidentDetailDto>, ApiError> {
    let incidents = c.incidents(&s);
    let t = Arc::clone(&s.engine.territory);
    let now = s.engine.clock.now();
    blocking(
        move || match incidents.with_log(IncidentId(id)).map_err(store_err)? {
            Some((i, log)) => {
                let mut dto = IncidentDetailDto::from_core(&i, &log, &t, now);
                dto.carried_pseudonyms = incidents.carried(&i).map_err(store_err)?;
                Ok(Json(dto))
            }
            None => Err(ObjectKind::Incident.not_found()),
        },
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/actions", params(("id" = u64, Path)),
    request_body = ActionRequest,
    responses((status = 200, body = IncidentDto), (status = 409, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn act(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    body: Result<Json<ActionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<IncidentDto>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let action = parse_action(&s, &req).await?;
    if let IncidentAction::Assign(unit) = &action {
        check_assignment(&s, &c, IncidentId(id), unit).await?;
    }
    let user = c.principal.name.clone();
    match s
        .engine
        .act(IncidentId(id), action, Actor::User(user.into()))
        .await
    {
        Ok(i) => Ok(Json(IncidentDto::from_core(&i, &s.engine.territory))),
        Err(ActError::Transition(beffroi_core::TransitionError::NotFound(_))) => {
            Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no active incident {id} (closed incidents are final)"),
            ))
        }
        Err(ActError::Transition(beffroi_core::TransitionError::Unit(e))) => {
            Err(crate::units::unit_error(&e))
        }
        Err(ActError::Transition(e)) => {
            Err(ApiError::new(ErrorCode::InvalidTransition, e.to_string()))
        }
        Err(e) => Err(ApiError::new(ErrorCode::StoreUnavailable, e.to_string())),
    }
}

/// The incident action a request names (its free text scrubbed); shared by the incident
/// and situation routes.
pub(crate) async fn parse_action(
    s: &AppState,
    req: &ActionRequest,
) -> Result<IncidentAction, ApiError> {
    let missing = |f: &str| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("action `{}` needs `{f}`", req.action),
        )
    };
    let action = match req.action.as_str() {
        "acknowledge" => IncidentAction::Acknowledge,
        "start" => IncidentAction::Start,
        "resolve" => IncidentAction::Resolve,
        "close" => IncidentAction::Close,
        "reopen" => IncidentAction::Reopen,
        "assign" => IncidentAction::Assign(
            req.unit
                .as_deref()
                .or(req.owner.as_deref())
                .ok_or_else(|| missing("unit"))?
                .into(),
        ),
        "comment" => IncidentAction::Comment(
            req.text
                .as_ref()
                .ok_or_else(|| missing("text"))?
                .scrub(s)
                .await?,
        ),
        "complete_step" => IncidentAction::CompleteStep(req.step.ok_or_else(|| missing("step"))?),
        other => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown action `{other}`"),
            ));
        }
    };
    Ok(action)
}

/// An assignment touches two objects, and each must be the caller's: the incident (in the
/// caller's `incident.assign` scope; the guard already made sure it is visible) and the unit
/// (one the caller may see, else it answers as a missing unit; serving at least one commune of
/// the `incident.assign` scope, or the whole territory).
pub(crate) async fn check_assignment(
    s: &AppState,
    c: &Caller,
    incident: IncidentId,
    unit: &str,
) -> Result<(), ApiError> {
    let assign = c.principal.scope_for(Permission::IncidentAssign);
    let ops = s.engine.ops();
    let unit = ops
        .unit(unit)
        .filter(|u| {
            c.principal
                .scope_for(Permission::UnitRead)
                .sees(&u.spec.communes)
        })
        .ok_or_else(|| ObjectKind::Unit.not_found())?;
    if !assign.sees(&unit.spec.communes) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "needs permission `incident.assign` in a commune the unit serves",
        ));
    }
    let incidents = c.incidents(s);
    let found = blocking(move || incidents.one(incident).map_err(store_err)).await?;
    let Some(found) = found else {
        return Err(ObjectKind::Incident.not_found());
    };
    if !assign.holds(found.commune) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "needs permission `incident.assign` in the incident's commune",
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/territory", responses((status = 200, body = TerritoryDto)), security(("bearer" = [])))]
pub async fn territory(State(s): State<AppState>, _u: User) -> Json<TerritoryDto> {
    let t = &s.engine.territory;
    let mut sites = vec![0usize; t.communes.len()];
    let mut devices = vec![0usize; t.communes.len()];
    for site in &t.sites {
        sites[site.commune.get()] += 1;
    }
    for d in &t.devices {
        devices[t.site(d.site).commune.get()] += 1;
    }
    Json(TerritoryDto {
        id: t.id.to_string(),
        name: t.name.to_string(),
        timezone: t.timezone.as_deref().map(Into::into),
        communes: t
            .communes
            .iter()
            .enumerate()
            .map(|(i, c)| CommuneDto {
                id: c.id.to_string(),
                name: c.name.to_string(),
                insee: c.insee.as_deref().map(Into::into),
                position: [c.position.lon, c.position.lat],
                sites: sites[i],
                devices: devices[i],
            })
            .collect(),
        sites: t.sites.len(),
        devices: t.devices.len(),
        kinds: t.kinds.iter().map(|k| k.id.to_string()).collect(),
    })
}

#[utoipa::path(get, path = "/api/v1/territory/sites", responses((status = 200, description = "GeoJSON FeatureCollection of the sites")), security(("bearer" = [])))]
pub async fn sites_geojson(State(s): State<AppState>, _u: User) -> Response {
    let t = &s.engine.territory;
    let features: Vec<serde_json::Value> = t
        .sites
        .iter()
        .map(|site| {
            let geometry = match &site.perimeter {
                Some(ring) => serde_json::json!({"type": "Polygon", "coordinates": [ring.iter().map(|p| [p.lon, p.lat]).collect::<Vec<_>>()]}),
                None => serde_json::json!({"type": "Point", "coordinates": [site.position.lon, site.position.lat]}),
            };
            serde_json::json!({
                "type": "Feature",
                "geometry": geometry,
                "properties": {"id": &*site.id, "name": &*site.name, "kind": t.site_kind_id(site.kind),
                    "commune": &*t.commune(site.commune).id},
            })
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "application/geo+json")],
        Json(serde_json::json!({"type": "FeatureCollection", "features": features})),
    )
        .into_response()
}

/// Device states as seen on the live stream, for the map and device listings.
pub struct DeviceBoard {
    states: RwLock<Vec<DeviceState>>,
}

impl DeviceBoard {
    pub fn follow(engine: &EngineHandle) -> Arc<Self> {
        let board = Arc::new(DeviceBoard {
            states: RwLock::new(engine.restored_device_states().to_vec()),
        });
        let mut rx = engine.subscribe();
        let b = Arc::clone(&board);
        let metrics = Arc::clone(&engine.metrics);
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(LiveEvent::Device(d)) => {
                        let mut g = b.states.write().unwrap_or_else(|p| p.into_inner());
                        if let Some(s) = g.get_mut(d.device.get()) {
                            *s = d.state;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        metrics.live_lagged.inc_by(n);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        board
    }

    pub fn state(&self, d: DeviceIdx) -> DeviceState {
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(d.get())
            .copied()
            .unwrap_or(DeviceState::Normal)
    }

    /// Every device's state, by device index (a copy: the lock is held for a memcpy).
    pub fn snapshot(&self) -> Vec<DeviceState> {
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn device_dto(s: &AppState, d: DeviceIdx) -> DeviceDto {
    let t = &s.engine.territory;
    let dev = t.device(d);
    let site = t.site(dev.site);
    DeviceDto {
        id: dev.id.to_string(),
        kind: t.kind(dev.kind).id.to_string(),
        site: site.id.to_string(),
        commune: t.commune(site.commune).id.to_string(),
        position: [dev.position.lon, dev.position.lat],
        state: s.board.state(d).as_str().into(),
        quarantined: s
            .engine
            .ops()
            .quarantined
            .binary_search_by_key(&d, |a| a.device)
            .is_ok(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DeviceParams {
    kind: Option<String>,
    commune: Option<String>,
    site: Option<String>,
    /// normal | alarm | silent
    state: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/devices", params(DeviceParams), responses((status = 200, body = [DeviceDto])), security(("bearer" = [])))]
pub async fn list_devices(
    State(s): State<AppState>,
    c: Caller,
    Query(p): Query<DeviceParams>,
) -> Json<Vec<DeviceDto>> {
    let limit = p.limit.unwrap_or(200_000);
    let t = Arc::clone(&s.engine.territory);
    let list = (0..t.devices.len())
        .map(|i| DeviceIdx(i as u32))
        .filter(|d| c.scope.holds(t.site(t.device(*d).site).commune))
        .map(|d| device_dto(&s, d))
        .filter(|d| p.kind.as_ref().is_none_or(|k| &d.kind == k))
        .filter(|d| p.commune.as_ref().is_none_or(|c| &d.commune == c))
        .filter(|d| p.site.as_ref().is_none_or(|c| &d.site == c))
        .filter(|d| p.state.as_ref().is_none_or(|c| &d.state == c))
        .take(limit)
        .collect();
    Json(list)
}

/// The longest window of readings `GET /devices/{id}?from=&until=` reads.
pub const READINGS_WINDOW_MAX: beffroi_core::Duration = beffroi_core::Duration::from_mins(48 * 60);
/// The most readings one window gives (the newest of the window when it holds more).
pub const READINGS_WINDOW_LIMIT: usize = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DeviceReadingsParams {
    /// RFC 3339: the readings from this event time (with `until`, at most 48 h; the
    /// incident detail asks for the window around its trigger). Without `from` and
    /// `until`, the newest readings.
    from: Option<String>,
    /// RFC 3339: the readings up to this event time.
    until: Option<String>,
}

impl DeviceReadingsParams {
    /// The window asked for, bounded: one bound alone reads 48 h from (or up to) it.
    fn window(
        &self,
    ) -> Result<Option<(beffroi_core::Timestamp, beffroi_core::Timestamp)>, ApiError> {
        let parse = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|x| {
                    beffroi_wire::parse_rfc3339(x).ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidRequest,
                            format!("`{name}` is not an RFC 3339 time"),
                        )
                    })
                })
                .transpose()
        };
        let (from, until) = (parse("from", &self.from)?, parse("until", &self.until)?);
        let (from, until) = match (from, until) {
            (None, None) => return Ok(None),
            (Some(f), None) => (f, f.plus(READINGS_WINDOW_MAX)),
            (None, Some(u)) => (u.minus(READINGS_WINDOW_MAX), u),
            (Some(f), Some(u)) => (f, u),
        };
        if until < from || until.since(from) > READINGS_WINDOW_MAX {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "`from` must precede `until`, by 48 h at most",
            ));
        }
        Ok(Some((from, until)))
    }
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", params(("id" = String, Path), DeviceReadingsParams),
    responses((status = 200, body = DeviceDetailDto), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_device(
    State(s): State<AppState>,
    _u: User,
    Path(id): Path<String>,
    Query(p): Query<DeviceReadingsParams>,
) -> Result<Json<DeviceDetailDto>, ApiError> {
    let t = Arc::clone(&s.engine.territory);
    let d = t
        .device_id(&id)
        .ok_or_else(|| ObjectKind::Device.not_found())?;
    let window = p.window()?;
    let reader = Arc::clone(&s.reader);
    let recent = blocking(move || {
        match window {
            Some((from, until)) => {
                reader.observations_between(d, from, until, READINGS_WINDOW_LIMIT)
            }
            None => reader.observations(d, beffroi_core::Timestamp(0), 200),
        }
        .map_err(store_err)
    })
    .await?;
    let kind = t.kind_of(d);
    Ok(Json(DeviceDetailDto {
        device: device_dto(&s, d),
        kind_label: kind.label.to_string(),
        kind_label_en: kind.label_en.as_deref().map(Into::into),
        dev_eui: t.device(d).dev_eui.as_deref().map(Into::into),
        trust: recent
            .iter()
            .max_by_key(|o| (o.received, o.time))
            .map(|o| o.trust.as_str().to_string()),
        recent: recent_observations(&s, &t, d, &recent),
    }))
}

/// A device's recent observations as shown: people counts folded per time bucket and
/// suppressed below the minimum group size (`crate::crowd`), everything else as stored.
fn recent_observations(
    s: &AppState,
    t: &beffroi_core::Territory,
    d: DeviceIdx,
    recent: &[beffroi_engine::store::StoredObservation],
) -> Vec<ObservationDto> {
    let kind = t.kind_of(d);
    let a = &s.privacy.aggregates;
    let mut out: Vec<ObservationDto> = recent
        .iter()
        .filter(|o| !crate::crowd::is_people_count(t, o.device, o.field))
        .map(|o| {
            let spec = &kind.fields[o.field.get()];
            ObservationDto {
                field: spec.name.to_string(),
                value: match &o.value {
                    Value::Number(n) => serde_json::json!(n),
                    Value::Bool(b) => serde_json::json!(b),
                    // A personal value is stored as its pseudonym (pseudonymised at
                    // ingest): shown as such, it links without identifying.
                    Value::Text(x) => serde_json::json!(&**x),
                },
                unit: spec.unit.as_deref().map(Into::into),
                time: o.time.to_string(),
                trust: o.trust.as_str().to_string(),
                quarantined: o.quarantined,
                suppressed: false,
            }
        })
        .collect();
    let trust_of = |b: beffroi_core::Timestamp, f: beffroi_core::FieldIdx| {
        recent
            .iter()
            .find(|o| o.field == f && a.bucket_start(o.time) == b)
            .map(|o| (o.trust.as_str().to_string(), o.quarantined))
            .unwrap_or_else(|| ("unauthenticated".into(), false))
    };
    for (bucket, f, n) in crate::crowd::device_buckets(t, a, recent) {
        let spec = &kind.fields[f.get()];
        let count = crate::crowd::people_count(a, n);
        let (trust, quarantined) = trust_of(bucket, f);
        out.push(ObservationDto {
            field: spec.name.to_string(),
            value: count
                .value
                .map_or(serde_json::Value::Null, |v| serde_json::json!(v)),
            unit: spec.unit.as_deref().map(Into::into),
            time: bucket.to_string(),
            trust,
            quarantined,
            suppressed: count.suppressed,
        });
    }
    // Newest first, as stored (RFC 3339 in UTC sorts as text).
    out.sort_by(|x, y| y.time.cmp(&x.time));
    out
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct IngestParams {
    /// senml (default) | json | chirpstack
    format: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/observations", params(IngestParams),
    request_body(content = String, description = "SenML JSON pack (application/senml+json), plain JSON or a ChirpStack uplink"),
    responses((status = 200, body = IngestResponse), (status = 202, body = IngestLogged, description = "On a cluster node: appended to the ingest log"), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn post_observations(
    State(s): State<AppState>,
    _u: User,
    Query(p): Query<IngestParams>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    ingest(s, None, p, body).await
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/observations", params(("id" = String, Path), IngestParams),
    request_body(content = String, description = "SenML JSON pack whose names are field names, or plain JSON"),
    responses((status = 200, body = IngestResponse),
        (status = 202, body = IngestLogged, description = "On a cluster node: appended to the ingest log"),
        (status = 422, body = crate::error::ErrorBody, description = "`device_mismatch`: a record (a plain JSON `device`, a ChirpStack devEui, a signed envelope's `dev`) names another device than the path's; nothing is ingested")),
    security(("bearer" = [])))]
pub async fn post_device_observations(
    State(s): State<AppState>,
    _u: User,
    Path(id): Path<String>,
    Query(p): Query<IngestParams>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    // The guard checked the caller's scope over the path's device: the payload may speak of
    // that device only, or the check would be worth nothing.
    let t = &s.engine.territory;
    let device = t
        .device_id(&id)
        .ok_or_else(|| ObjectKind::Device.not_found())?;
    let format = format_of(&p)?;
    if let Some(other) = foreign_device(t, device, format, &body, s.engine.clock.now()) {
        return Err(ApiError::new(
            ErrorCode::DeviceMismatch,
            format!("a record names device `{other}`, not `{id}`: nothing was ingested"),
        ));
    }
    ingest(s, Some(id), p, body).await
}

fn format_of(p: &IngestParams) -> Result<Format, ApiError> {
    // SenML is the canonical form; the others are named with `?format=`.
    match p.format.as_deref() {
        Some(f) => Format::parse(f).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidRequest, format!("unknown format `{f}`"))
        }),
        None => Ok(Format::Senml),
    }
}

/// The first device other than `device` that a payload posted for `device` names: a signed
/// envelope's `dev`, a plain JSON record's `device`, a ChirpStack uplink's devEui (SenML
/// names are read as fields of the path's device). The payload is decoded as the ingest will
/// decode it; one that does not decode is left to the ingest, which rejects it.
pub(crate) fn foreign_device(
    t: &beffroi_core::Territory,
    device: DeviceIdx,
    format: Format,
    payload: &[u8],
    received: beffroi_core::Timestamp,
) -> Option<String> {
    let shown = |s: &str| s.chars().take(64).collect::<String>();
    let path_id = &*t.device(device).id;
    // A signed envelope names its device, which is then the hint for its inner payload.
    let (hint, inner) = match beffroi_wire::signed::open(payload) {
        Ok(sealed) => {
            if t.device_id(&sealed.dev) != Some(device) {
                return Some(shown(&sealed.dev));
            }
            (path_id, std::borrow::Cow::Owned(sealed.body))
        }
        Err(_) => (path_id, std::borrow::Cow::Borrowed(payload)),
    };
    let cx = beffroi_wire::Context {
        device_hint: Some(hint),
        received,
    };
    let records = beffroi_wire::decode(format, &inner, cx).ok()?;
    records.iter().find_map(|r| {
        let (found, name) = match &r.device {
            beffroi_wire::DeviceRef::Id(x) => (t.device_id(x), shown(x)),
            beffroi_wire::DeviceRef::DevEui(e) => {
                (t.device_by_eui(e), format!("devEui {}", shown(e)))
            }
        };
        (found != Some(device)).then_some(name)
    })
}

async fn ingest(
    s: AppState,
    device: Option<String>,
    p: IngestParams,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let format = format_of(&p)?;
    if let Some(log) = &s.ingest_log {
        let receipt = log
            .append(device, format, body)
            .await
            .map_err(|e| ApiError::new(ErrorCode::StoreUnavailable, e))?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(IngestLogged {
                log_sequence: receipt.sequence,
                duplicate: receipt.duplicate,
            }),
        )
            .into_response());
    }
    let (tx, rx) = oneshot::channel();
    let env = Envelope {
        source: Source::HTTP,
        format,
        device_hint: device.map(Into::into),
        payload: body,
        // HTTP device authentication is not wired yet: the path proves nothing.
        authenticated: false,
        received: s.engine.clock.now(),
        stream: None,
        ack: Some(Ack::new(move |o| {
            let _ = tx.send(o);
        })),
    };
    match s.ingest.submit(env).await {
        Ok(()) => {}
        // Counted by the port.
        Err(Refused::Overloaded(_)) => {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "ingest queue full, retry later",
            ));
        }
        // Shutting down: nothing was taken, as when the store is unavailable.
        Err(Refused::Closed(_)) => {
            return Err(ApiError::new(
                ErrorCode::StoreUnavailable,
                "the engine is shutting down, retry later",
            ));
        }
    }
    match rx.await {
        Ok(AckOutcome::Stored { accepted, rejected }) => {
            let rejected: Vec<RejectionDto> = rejected
                .iter()
                .map(|r| RejectionDto {
                    reason: r.reason.as_str().into(),
                    detail: r.detail.clone(),
                })
                .collect();
            if accepted == 0 && !rejected.is_empty() {
                let details = serde_json::to_value(&rejected).unwrap_or_default();
                return Err(ApiError::new(
                    ErrorCode::ObservationsRejected,
                    format!("{} rejected, none accepted", rejected.len()),
                )
                .with_details(details));
            }
            Ok(Json(IngestResponse { accepted, rejected }).into_response())
        }
        Ok(AckOutcome::Failed(e)) => Err(ApiError::new(ErrorCode::StoreUnavailable, e)),
        Err(_) => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "engine stopped before storing",
        )),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LimitParams {
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/rejections", params(LimitParams), responses((status = 200, body = [StoredRejectionDto])), security(("bearer" = [])))]
pub async fn rejections(
    State(s): State<AppState>,
    _u: User,
    Query(p): Query<LimitParams>,
) -> Result<Json<Vec<StoredRejectionDto>>, ApiError> {
    let reader = Arc::clone(&s.reader);
    let limit = p.limit.unwrap_or(100).min(10_000);
    blocking(move || {
        let list = reader.rejections(limit).map_err(store_err)?;
        Ok(Json(
            list.into_iter()
                .map(|r| StoredRejectionDto {
                    at: r.at.to_string(),
                    source: r.source.as_str().into(),
                    reason: r.reason.as_str().into(),
                    detail: r.detail,
                })
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/rules", responses((status = 200, body = [RuleDto])), security(("bearer" = [])))]
pub async fn rules(State(s): State<AppState>, _u: User) -> Json<Vec<RuleDto>> {
    let set = s.engine.rules();
    Json(
        set.rules
            .iter()
            .map(|r| RuleDto {
                id: r.id.to_string(),
                title: r.title.to_string(),
                category: r.category.to_string(),
                severity: r.severity.as_str().into(),
                ty: r.body.type_name().into(),
                key: match r.key {
                    beffroi_rules::KeyBy::Site => "site".into(),
                    beffroi_rules::KeyBy::Device => "device".into(),
                },
                auto_resolve: r.auto_resolve,
            })
            .collect(),
    )
}

#[utoipa::path(get, path = "/api/v1/stream",
    responses((status = 200, description = "text/event-stream: `incident` events (IncidentDto plus `created`), `situation` events (SituationDto as the caller sees it, plus `created`: a new situation, not an incident joining one), `device` events ({device, state, at}), `event` events (EventDto: declared, cancelled, status or occupancy changed), `lagged` when events were skipped")),
    security(("bearer" = [])))]
pub async fn stream(
    State(s): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.engine.subscribe();
    let t = Arc::clone(&s.engine.territory);
    let metrics = Arc::clone(&s.engine.metrics);
    let who = Arc::clone(&caller.principal);
    let seen = Arc::clone(&caller.visibility);
    let seen_view = Arc::clone(&caller.visibility);
    let devices = who.scope_for(Permission::DeviceRead);
    let units = who.scope_for(Permission::UnitRead);
    let crises = who.scope_for(Permission::CrisisRead);
    let events = who.scope_for(Permission::EventRead);
    // What the caller may not see is skipped, not announced; the incidents nested in a unit
    // or a crisis pass the same visibility (`SeenCache`).
    let visible = move |ev: &LiveEvent, t: &beffroi_core::Territory| match ev {
        LiveEvent::Incident(c) => seen.sees_incident(&c.incident),
        LiveEvent::Device(d) => devices.holds(t.site(t.device(d.device).site).commune),
        LiveEvent::Unit(u) => units.sees(&u.spec.communes),
        LiveEvent::Crisis(c) => crises.sees(&c.communes),
        LiveEvent::Situation(c) => c.situation.view(&seen).is_some(),
        LiveEvent::Event(_) => !events.is_nothing(),
    };
    let auth = Arc::clone(&s.auth);
    let session = caller.session.clone();
    let cache = crate::scoped::SeenCache::new(caller.incidents(&s));
    let stream = futures::stream::unfold((rx, cache), move |(mut rx, mut cache)| {
        let t = Arc::clone(&t);
        let metrics = Arc::clone(&metrics);
        let visible = visible.clone();
        let seen_view = Arc::clone(&seen_view);
        let auth = Arc::clone(&auth);
        let session = session.clone();
        async move {
            let mut got = rx.recv().await;
            while let Ok(ev) = &got {
                if visible(ev, &t) {
                    break;
                }
                got = rx.recv().await;
            }
            // The stream ends with the session it was opened with (logout, expiry).
            if session.as_deref().is_some_and(|id| !auth.session_alive(id)) {
                return None;
            }
            let ev = match got {
                Ok(LiveEvent::Incident(c)) => {
                    cache.learn(&c.incident);
                    let mut v = serde_json::to_value(IncidentDto::from_core(&c.incident, &t))
                        .unwrap_or_default();
                    v["created"] = serde_json::Value::Bool(c.created);
                    // The lines this change adds to the log, each with its message.
                    v["log"] = serde_json::to_value(
                        c.log.iter().map(LogEntryDto::from).collect::<Vec<_>>(),
                    )
                    .unwrap_or_default();
                    Event::default().event("incident").data(v.to_string())
                }
                Ok(LiveEvent::Unit(u)) => {
                    cache.resolve(&u.missions).await;
                    let dto = crate::units::UnitDto::from_core(&u, &t, &|i| cache.sees(i));
                    Event::default()
                        .event("unit")
                        .data(serde_json::to_string(&dto).unwrap_or_default())
                }
                Ok(LiveEvent::Crisis(c)) => {
                    let ids: Vec<IncidentId> = c.incidents.iter().copied().collect();
                    cache.resolve(&ids).await;
                    let dto =
                        crate::crisis::CrisisSummaryDto::from_core(&c, &t, &|i| cache.sees(i));
                    Event::default()
                        .event("crisis")
                        .data(serde_json::to_string(&dto).unwrap_or_default())
                }
                Ok(LiveEvent::Situation(c)) => {
                    // Seen through the caller's view: its own members only.
                    let Some(v) = c.situation.view(&seen_view) else {
                        return Some((Ok(Event::default().comment("")), (rx, cache)));
                    };
                    let mut d =
                        serde_json::to_value(crate::situations::SituationDto::from_view(&v, &t))
                            .unwrap_or_default();
                    d["created"] = serde_json::Value::Bool(c.created);
                    Event::default().event("situation").data(d.to_string())
                }
                Ok(LiveEvent::Device(d)) => Event::default().event("device").data(
                    serde_json::json!({
                        "device": &*t.device(d.device).id,
                        "state": d.state.as_str(),
                        "at": d.at.to_string(),
                    })
                    .to_string(),
                ),
                Ok(LiveEvent::Event(e)) => Event::default()
                    .event("event")
                    .data(crate::events::sse_data(&e)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics.live_lagged.inc_by(n);
                    Event::default()
                        .event("lagged")
                        .data(serde_json::json!({"skipped": n}).to_string())
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(ev), (rx, cache)))
        }
    });
    let stream = futures::StreamExt::take_until(stream, s.shutdown.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::foreign_device;
    use beffroi_core::Timestamp;
    use beffroi_core::territory::fixture;
    use beffroi_wire::Format;

    #[test]
    fn a_payload_posted_for_a_device_may_name_only_that_device() {
        let t = fixture::small();
        let g1 = t.device_id("g1").expect("g1");
        let g2 = t.device_id("g2").expect("g2");
        let now = Timestamp(1_800_000_000_000);
        let check = |d, f, p: &[u8]| foreign_device(&t, d, f, p, now);
        // Plain JSON: the record's `device`, or the path's when absent.
        let other = br#"{"device": "g2", "values": {"level_m": 1.0}}"#;
        assert_eq!(check(g1, Format::Json, other), Some("g2".into()));
        let mixed =
            br#"[{"values": {"level_m": 1.0}}, {"device": "g2", "values": {"level_m": 2.0}}]"#;
        assert_eq!(check(g1, Format::Json, mixed), Some("g2".into()));
        assert_eq!(
            check(g1, Format::Json, br#"{"values": {"level_m": 1.0}}"#),
            None
        );
        let unknown = br#"{"device": "nowhere", "values": {"level_m": 1.0}}"#;
        assert_eq!(check(g1, Format::Json, unknown), Some("nowhere".into()));
        // ChirpStack names the device by its devEui (g1's).
        let uplink =
            br#"{"deviceInfo": {"devEui": "0011223344556677"}, "object": {"level_m": 2.5}}"#;
        assert_eq!(check(g1, Format::Chirpstack, uplink), None);
        assert_eq!(
            check(g2, Format::Chirpstack, uplink),
            Some("devEui 0011223344556677".into())
        );
        // A signed envelope names its device.
        let key = [7u8; beffroi_wire::signed::KEY_LEN];
        let body = br#"[{"n": "level_m", "v": 1.0}]"#;
        let sealed = beffroi_wire::signed::seal("g2", 1, &key, body);
        assert_eq!(check(g1, Format::Senml, &sealed), Some("g2".into()));
        let own = beffroi_wire::signed::seal("g1", 1, &key, body);
        assert_eq!(check(g1, Format::Senml, &own), None);
        // SenML names are fields of the path's device; what does not decode is left to the
        // ingest (which rejects it).
        assert_eq!(check(g1, Format::Senml, body), None);
        assert_eq!(check(g1, Format::Json, b"not json"), None);
    }
}
