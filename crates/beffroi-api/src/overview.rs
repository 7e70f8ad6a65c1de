//! The command post's overview: key figures (`GET /api/v1/overview`) and who the caller is
//! (`GET /api/v1/auth/me`). The shift handover is [`crate::handover`].

use axum::Json;
use axum::extract::State;
use beffroi_core::overview::{LOCAL_OFFSET, kpis, local_midnight};
use beffroi_core::{Severity, Status};
use beffroi_engine::live::DeviceState;
use beffroi_engine::store::IncidentQuery;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::access::Scope;
use crate::error::ApiError;
use crate::handlers::{blocking, store_err};
use crate::routes::Caller;

/// Most open incidents the overview reads.
const MAX_OPEN: usize = 100_000;

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
