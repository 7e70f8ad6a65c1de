//! Units and dispatch: `GET /api/v1/units`, `GET /api/v1/units/{id}`,
//! `POST /api/v1/units/{id}/status`. Assignment itself is the incident action `assign`.
//!
//! A unit's missions are incidents: the caller sees those its [`crate::access::Visibility`]
//! sees, the others are counted (`hidden_missions`), never named. The unit's status stays
//! what it is (an engaged unit may be engaged on something the caller may not see).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use beffroi_core::{Actor, IncidentId, Territory, Unit, UnitError, UnitStatus};
use beffroi_engine::runner::{ActError, OpsCommand, OpsOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::{Caller, ObjectKind};

#[derive(Serialize, ToSchema)]
pub struct UnitDto {
    pub id: String,
    pub name: String,
    /// police | technical | video | other
    pub kind: String,
    /// Commune ids it covers; empty means the whole territory.
    pub communes: Vec<String>,
    /// available | engaged | off_duty
    pub status: String,
    /// Ids of the open incidents assigned to it that the caller may see.
    pub missions: Vec<u64>,
    /// How many of its missions the caller may not see (other communes, or `cyber` without
    /// `incident.cyber`): counted, not named.
    pub hidden_missions: usize,
    pub updated_at: String,
}

impl UnitDto {
    /// The unit as shown to a caller who sees the incidents `seen` says.
    pub fn from_core(u: &Unit, t: &Territory, seen: &dyn Fn(IncidentId) -> bool) -> Self {
        let missions: Vec<u64> = u
            .missions
            .iter()
            .filter(|m| seen(**m))
            .map(|m| m.0)
            .collect();
        UnitDto {
            id: u.spec.id.to_string(),
            name: u.spec.name.to_string(),
            kind: u.spec.kind.as_str().into(),
            communes: u
                .spec
                .communes
                .iter()
                .filter_map(|c| t.communes.get(c.get()))
                .map(|c| c.id.to_string())
                .collect(),
            status: u.status.as_str().into(),
            hidden_missions: u.missions.len() - missions.len(),
            missions,
            updated_at: u.updated_at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MissionDto {
    pub id: u64,
    pub title: String,
    pub severity: String,
    pub status: String,
    /// Commune id.
    pub commune: String,
}

#[derive(Serialize, ToSchema)]
pub struct UnitDetailDto {
    #[serde(flatten)]
    pub unit: UnitDto,
    pub mission_details: Vec<MissionDto>,
}

#[derive(Deserialize, ToSchema)]
pub struct UnitStatusRequest {
    /// available | engaged | off_duty
    pub status: String,
}

/// The API error of a unit refusal.
pub(crate) fn unit_error(e: &UnitError) -> ApiError {
    match e {
        UnitError::NotFound(_) => ObjectKind::Unit.not_found(),
        UnitError::OffDuty(_) => ApiError::new(ErrorCode::UnitOffDuty, e.to_string()),
    }
}

/// The units as `c` may see them (one store read for every mission).
pub(crate) async fn unit_dtos(
    s: &AppState,
    c: &Caller,
    units: Vec<Unit>,
) -> Result<Vec<UnitDto>, ApiError> {
    let incidents = c.incidents(s);
    let t = Arc::clone(&s.engine.territory);
    blocking(move || {
        let ids: Vec<IncidentId> = units
            .iter()
            .flat_map(|u| u.missions.iter().copied())
            .collect();
        let seen = incidents.nested(&ids).map_err(store_err)?.ids();
        Ok(units
            .iter()
            .map(|u| UnitDto::from_core(u, &t, &|m| seen.contains(&m)))
            .collect())
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/units", responses((status = 200, body = [UnitDto])), security(("bearer" = [])))]
pub async fn list_units(
    State(s): State<AppState>,
    c: Caller,
) -> Result<Json<Vec<UnitDto>>, ApiError> {
    let units: Vec<Unit> = s
        .engine
        .ops()
        .units
        .iter()
        .filter(|u| c.scope.sees(&u.spec.communes))
        .cloned()
        .collect();
    Ok(Json(unit_dtos(&s, &c, units).await?))
}

#[utoipa::path(get, path = "/api/v1/units/{id}", params(("id" = String, Path)),
    responses((status = 200, body = UnitDetailDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_unit(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<UnitDetailDto>, ApiError> {
    let ops = s.engine.ops();
    let unit = ops
        .unit(&id)
        .ok_or_else(|| ObjectKind::Unit.not_found())?
        .clone();
    let incidents = c.incidents(&s);
    let t = Arc::clone(&s.engine.territory);
    blocking(move || {
        let missions = incidents.nested(&unit.missions).map_err(store_err)?;
        let seen = missions.ids();
        Ok(Json(UnitDetailDto {
            unit: UnitDto::from_core(&unit, &t, &|m| seen.contains(&m)),
            mission_details: missions
                .visible
                .iter()
                .map(|i| MissionDto {
                    id: i.id.0,
                    title: i.title_now().to_string(),
                    severity: i.severity.as_str().into(),
                    status: i.status.as_str().into(),
                    commune: t.commune(i.commune).id.to_string(),
                })
                .collect(),
        }))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/units/{id}/status", params(("id" = String, Path)),
    request_body = UnitStatusRequest,
    responses((status = 200, body = UnitDto), (status = 404, body = crate::error::ErrorBody),
        (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_unit_status(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<UnitStatusRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<UnitDto>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let status = UnitStatus::parse(&req.status).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "unknown status `{}`: expected available, engaged or off_duty",
                req.status
            ),
        )
    })?;
    let outcome = s
        .engine
        .ops_command(
            OpsCommand::UnitStatus { unit: id, status },
            Actor::User(c.principal.name.clone().into()),
        )
        .await
        .map_err(|e| ops_error(&e))?;
    match outcome {
        OpsOutcome::Unit(u) => {
            let mut dto = unit_dtos(&s, &c, vec![u]).await?;
            dto.pop()
                .map(Json)
                .ok_or_else(|| ObjectKind::Unit.not_found())
        }
        _ => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "unexpected answer of the engine",
        )),
    }
}

/// The API error of a failed operations command.
pub(crate) fn ops_error(e: &ActError) -> ApiError {
    use beffroi_core::crisis::CrisisError;
    match e {
        ActError::Unit(u) => unit_error(u),
        ActError::Crisis(CrisisError::NotFound(_)) => ObjectKind::Crisis.not_found(),
        ActError::Crisis(CrisisError::Closed(_)) => {
            ApiError::new(ErrorCode::CrisisClosed, e.to_string())
        }
        ActError::Crisis(_) => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
        _ => ApiError::new(ErrorCode::StoreUnavailable, e.to_string()),
    }
}
