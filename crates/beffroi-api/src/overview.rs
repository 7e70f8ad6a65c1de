//! The command post's overview: key figures (`GET /api/v1/overview`), the shift handover
//! (`GET /api/v1/handover`) and who the caller is (`GET /api/v1/auth/me`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use beffroi_core::overview::{LOCAL_OFFSET, kpis, local_midnight};
use beffroi_core::{Duration, Severity, Status};
use beffroi_engine::live::DeviceState;
use beffroi_engine::store::IncidentQuery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::access::Scope;
use crate::dto::IncidentDto;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::Caller;

/// Most open incidents the overview and the handover read.
const MAX_OPEN: usize = 100_000;
/// Most log lines of a handover.
const MAX_HANDOVER_LOG: usize = 5_000;

#[derive(Serialize, ToSchema)]
pub struct SeverityCounts {
    pub critical: usize,
    pub major: usize,
    pub minor: usize,
    pub info: usize,
}

#[derive(Serialize, ToSchema)]
pub struct OverviewDto {
    pub open_by_severity: SeverityCounts,
    pub open_total: usize,
    pub unacknowledged: usize,
    pub escalated: usize,
    /// Mean seconds from opening to acknowledgement of the incidents acknowledged today
    /// (since local midnight, Europe/Paris approximated as UTC+1).
    pub mtta_today_s: Option<f64>,
    /// Mean seconds from opening to resolution of the incidents resolved today.
    pub mttr_today_s: Option<f64>,
    pub acknowledged_today: usize,
    pub resolved_today: usize,
    pub devices_total: usize,
    pub devices_silent: usize,
    pub devices_alarm: usize,
    pub active_crises: usize,
    /// Events in progress (0 until event mode is part of the build).
    pub active_events: usize,
    /// The engine's processing time.
    pub now: String,
}

fn open_statuses() -> Vec<Status> {
    vec![Status::New, Status::Acknowledged, Status::InProgress]
}

#[utoipa::path(get, path = "/api/v1/overview", responses((status = 200, body = OverviewDto)), security(("bearer" = [])))]
pub async fn overview(State(s): State<AppState>, c: Caller) -> Result<Json<OverviewDto>, ApiError> {
    let now = s.engine.clock.now();
    let midnight = local_midnight(now, LOCAL_OFFSET);
    // The caller's communes for `supervise`, and its visibility there (`cyber` needs
    // `incident.cyber`), are part of the queries: the figures count nothing else.
    let incidents = c.incidents(&s);
    let scope = c.scope.clone();
    let k = blocking(move || {
        let open = incidents
            .list(IncidentQuery {
                statuses: open_statuses(),
                limit: MAX_OPEN,
                ..Default::default()
            })
            .map_err(store_err)?;
        let today = incidents
            .list(IncidentQuery {
                updated_since: Some(midnight),
                limit: MAX_OPEN,
                ..Default::default()
            })
            .map_err(store_err)?;
        Ok(kpis(open.iter().chain(today.iter()), midnight))
    })
    .await?;
    let t = &s.engine.territory;
    let (mut devices, mut silent, mut alarm) = (0, 0, 0);
    for i in 0..t.devices.len() {
        let d = beffroi_core::DeviceIdx(i as u32);
        if !scope.holds(t.site(t.device(d).site).commune) {
            continue;
        }
        devices += 1;
        match s.board.state(d) {
            DeviceState::Silent => silent += 1,
            DeviceState::Alarm => alarm += 1,
            DeviceState::Normal => {}
        }
    }
    let active_crises = s
        .engine
        .ops()
        .crises
        .iter()
        .filter(|x| x.is_active() && c.scope.sees(&x.communes))
        .count();
    Ok(Json(OverviewDto {
        open_by_severity: SeverityCounts {
            critical: k.open(Severity::Critical),
            major: k.open(Severity::Major),
            minor: k.open(Severity::Minor),
            info: k.open(Severity::Info),
        },
        open_total: k.open_total,
        unacknowledged: k.unacknowledged,
        escalated: k.escalated,
        mtta_today_s: k.mtta_s,
        mttr_today_s: k.mttr_s,
        acknowledged_today: k.acknowledged_since,
        resolved_today: k.resolved_since,
        devices_total: devices,
        devices_silent: silent,
        devices_alarm: alarm,
        active_crises,
        active_events: s
            .engine
            .events()
            .iter()
            .filter(|v| v.event.status(now) == beffroi_core::EventStatus::Active)
            .count(),
        now: now.to_string(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct HandoverParams {
    /// RFC 3339 start of the shift (default: 8 hours ago).
    since: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HandoverLogDto {
    pub incident: u64,
    pub title: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
    /// What the line says, for the console to render in the reader's language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<crate::dto::MessageDto>,
}

#[derive(Serialize, ToSchema)]
pub struct HandoverDto {
    pub since: String,
    pub open_incidents: Vec<IncidentDto>,
    pub log: Vec<HandoverLogDto>,
}

#[utoipa::path(get, path = "/api/v1/handover", params(HandoverParams),
    responses((status = 200, body = HandoverDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn handover(
    State(s): State<AppState>,
    c: Caller,
    Query(p): Query<HandoverParams>,
) -> Result<Json<HandoverDto>, ApiError> {
    let since = match p.since.as_deref() {
        None => s.engine.clock.now().minus(Duration::from_mins(8 * 60)),
        Some(text) => beffroi_wire::parse_rfc3339(text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`since` is not an RFC 3339 time: `{text}`"),
            )
        })?,
    };
    let incidents = c.incidents(&s);
    let t = Arc::clone(&s.engine.territory);
    blocking(move || {
        let mut open = incidents
            .list(IncidentQuery {
                statuses: open_statuses(),
                limit: MAX_OPEN,
                ..Default::default()
            })
            .map_err(store_err)?;
        // Most severe first, then oldest.
        open.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.opened_at.cmp(&b.opened_at))
        });
        // The lines of the incidents the caller may see, cut in the query.
        let log = incidents
            .handover_log(since, MAX_HANDOVER_LOG)
            .map_err(store_err)?;
        Ok(Json(HandoverDto {
            since: since.to_string(),
            open_incidents: open.iter().map(|i| IncidentDto::from_core(i, &t)).collect(),
            log: log
                .into_iter()
                .map(|e| HandoverLogDto {
                    incident: e.incident.0,
                    title: e.title,
                    at: e.entry.at.to_string(),
                    actor: e.entry.actor.to_string(),
                    action: e.entry.action.to_string(),
                    detail: e.entry.detail.to_string(),
                    message: e.entry.message.as_ref().map(Into::into),
                })
                .collect(),
        }))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct ScopeDto {
    /// Commune ids the user may see; null: the whole territory.
    pub communes: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct MeDto {
    pub user: String,
    pub roles: Vec<String>,
    /// Union of the grants' scopes.
    pub scope: ScopeDto,
    pub grants: Vec<GrantDto>,
    /// Every permission held somewhere (the console hides actions by these names).
    pub permissions: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct GrantDto {
    pub role: String,
    /// Commune ids; null: the whole territory.
    pub communes: Option<Vec<String>>,
}

#[utoipa::path(get, path = "/api/v1/auth/me", responses((status = 200, body = MeDto)), security(("bearer" = [])))]
pub async fn me(State(s): State<AppState>, c: Caller) -> Json<MeDto> {
    let p = &c.principal;
    let mut roles: Vec<String> = p
        .grants
        .iter()
        .map(|g| g.role.as_str().to_string())
        .collect();
    roles.sort();
    roles.dedup();
    let scope = p
        .grants
        .iter()
        .fold(Scope::Nothing, |acc, g| acc.union(&g.scope));
    let t = &s.engine.territory;
    Json(MeDto {
        user: p.name.clone(),
        roles,
        scope: ScopeDto {
            communes: scope.commune_ids(t),
        },
        grants: p
            .grants
            .iter()
            .map(|g| GrantDto {
                role: g.role.as_str().into(),
                communes: g.scope.commune_ids(t),
            })
            .collect(),
        permissions: p
            .permissions()
            .into_iter()
            .map(|x| x.as_str().to_string())
            .collect(),
    })
}
