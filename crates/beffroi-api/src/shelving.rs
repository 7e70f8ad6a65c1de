//! Shelving alarms (ISA-18.2): `POST /api/v1/incidents/{id}/shelve` (a reason and a bounded
//! duration), `POST /api/v1/incidents/{id}/unshelve`, and `GET /api/v1/shelved`, the alarms
//! on the shelf the caller may see. The state is the engine's (`beffroi_core::shelving`);
//! the guard audits each act (`incident.shelve`, `incident.unshelve`) with what this module
//! adds: the key, until when, how long (never the reason's text in the audit detail: it is
//! in the shelving log).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use beffroi_core::shelving::{Shelf, ShelfAct, ShelveError};
use beffroi_core::{Actor, Duration, IncidentId, Territory, Timestamp};
use beffroi_engine::operations::OpsSnapshot;
use beffroi_engine::runner::{ActError, OpsCommand, OpsOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::access::Visibility;
use crate::error::{ApiError, ErrorCode};
use crate::routes::{AuditDetail, Caller, ObjectKind};
use crate::scrub::FreeText;

#[derive(Serialize, ToSchema)]
pub struct ShelfDto {
    /// The alarm's deduplication key.
    pub key: String,
    /// The incident it was shelved through.
    pub incident: u64,
    /// Commune id.
    pub commune: String,
    pub category: String,
    /// `user:NAME`.
    pub by: String,
    pub reason: String,
    pub at: String,
    pub until: String,
}

impl ShelfDto {
    fn from_core(s: &Shelf, t: &Territory) -> Self {
        ShelfDto {
            key: s.key.0.to_string(),
            incident: s.incident.0,
            commune: t
                .communes
                .get(s.commune.get())
                .map(|c| c.id.to_string())
                .unwrap_or_default(),
            category: s.category.to_string(),
            by: s.by.to_string(),
            reason: s.reason.to_string(),
            at: s.at.to_string(),
            until: s.until.to_string(),
        }
    }
}

/// The shelves in force at `now` that `visible` sees (their commune and category).
pub(crate) fn visible_shelves(
    ops: &OpsSnapshot,
    visible: &Visibility,
    now: Timestamp,
    t: &Territory,
) -> Vec<ShelfDto> {
    ops.shelves
        .iter()
        .filter(|s| s.until > now && visible.sees(s.commune, &s.category))
        .map(|s| ShelfDto::from_core(s, t))
        .collect()
}

/// How many alarms on the shelf `visible` sees (the alarm-health figure).
pub(crate) fn shelved_count(ops: &OpsSnapshot, visible: &Visibility, now: Timestamp) -> usize {
    beffroi_core::shelving::count_shelved(&ops.shelves, now, |s| {
        visible.sees(s.commune, &s.category)
    })
}

#[derive(Serialize, ToSchema)]
pub struct ShelvedDto {
    /// The longest an alarm may be shelved, in minutes.
    pub max_minutes: i64,
    pub shelves: Vec<ShelfDto>,
}

#[utoipa::path(get, path = "/api/v1/shelved", responses((status = 200, body = ShelvedDto)),
    security(("bearer" = [])))]
pub async fn list_shelved(State(s): State<AppState>, c: Caller) -> Json<ShelvedDto> {
    let ops = s.engine.ops();
    let now = s.engine.clock.now();
    let incidents = c.incidents(&s);
    Json(ShelvedDto {
        max_minutes: ops.shelving.max_duration.millis() / 60_000,
        shelves: visible_shelves(&ops, incidents.visibility(), now, &s.engine.territory),
    })
}

#[derive(Deserialize, ToSchema)]
pub struct ShelveRequest {
    /// Why the alarm is set aside (required). Identifiers are replaced by pseudonyms.
    pub reason: FreeText,
    /// For how long, in minutes (at most the deployment's bound, 8 hours by default).
    pub minutes: i64,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct UnshelveRequest {
    /// Why it is taken back (optional).
    #[serde(default)]
    pub reason: Option<FreeText>,
}

#[derive(Serialize, ToSchema)]
pub struct ShelfActDto {
    pub key: String,
    pub incident: u64,
    /// shelved | unshelved | expired
    pub change: String,
    pub actor: String,
    pub reason: String,
    pub at: String,
    pub until: Option<String>,
}

fn act_response(a: &ShelfAct) -> Response {
    let mut resp = Json(ShelfActDto {
        key: a.key.0.to_string(),
        incident: a.incident.0,
        change: a.change.as_str().into(),
        actor: a.actor.to_string(),
        reason: a.reason.to_string(),
        at: a.at.to_string(),
        until: a.until.map(|u| u.to_string()),
    })
    .into_response();
    resp.extensions_mut().insert(AuditDetail(serde_json::json!({
        "key": a.key.0.as_ref(),
        "change": a.change.as_str(),
        "until": a.until.map(|u| u.to_string()),
        "minutes": a.until.map(|u| u.since(a.at).millis() / 60_000),
    })));
    resp
}

/// The API error of a refused shelving.
fn shelve_error(e: &ActError) -> ApiError {
    match e {
        ActError::Shelve(ShelveError::ReasonRequired) => {
            ApiError::new(ErrorCode::ReasonRequired, e.to_string())
        }
        ActError::Shelve(ShelveError::TooLong { max_minutes }) => {
            ApiError::new(ErrorCode::ShelveTooLong, e.to_string())
                .with_details(serde_json::json!({ "max_minutes": max_minutes }))
        }
        ActError::Shelve(ShelveError::NoDuration) => {
            ApiError::new(ErrorCode::InvalidRequest, e.to_string())
                .with_details(serde_json::json!({ "field": "minutes" }))
        }
        ActError::Shelve(ShelveError::NotOpen) => {
            ApiError::new(ErrorCode::InvalidTransition, e.to_string())
        }
        ActError::Shelve(ShelveError::NotShelved) => {
            ApiError::new(ErrorCode::NotShelved, e.to_string())
        }
        other => ApiError::new(ErrorCode::StoreUnavailable, other.to_string()),
    }
}

async fn command(s: &AppState, c: &Caller, cmd: OpsCommand) -> Result<Response, ApiError> {
    match s
        .engine
        .ops_command(cmd, Actor::User(c.principal.name.clone().into()))
        .await
        .map_err(|e| shelve_error(&e))?
    {
        OpsOutcome::Shelf(a) => Ok(act_response(&a)),
        _ => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "unexpected answer of the engine",
        )),
    }
}

fn incident_id(id: &str) -> Result<IncidentId, ApiError> {
    id.parse::<u64>()
        .map(IncidentId)
        .map_err(|_| ObjectKind::Incident.not_found())
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/shelve", params(("id" = u64, Path)),
    request_body = ShelveRequest,
    responses((status = 200, body = ShelfActDto), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn shelve(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    b: Result<Json<ShelveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let incident = incident_id(&id)?;
    let Json(req) = b.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    if req.reason.is_blank() {
        return Err(ApiError::new(
            ErrorCode::ReasonRequired,
            "shelving an alarm needs a reason",
        ));
    }
    let reason = req.reason.scrub(&s).await?;
    let cmd = OpsCommand::Shelve {
        incident,
        reason,
        duration: Duration::from_mins(req.minutes.clamp(-1, i64::MAX / 60_000)),
    };
    command(&s, &c, cmd).await
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/unshelve", params(("id" = u64, Path)),
    request_body = UnshelveRequest,
    responses((status = 200, body = ShelfActDto), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn unshelve(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    b: Result<Json<UnshelveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let incident = incident_id(&id)?;
    let req = b.map(|Json(r)| r).unwrap_or_default();
    let reason = match &req.reason {
        Some(r) if !r.is_blank() => r.scrub(&s).await?,
        _ => beffroi_core::SafeText::default(),
    };
    command(&s, &c, OpsCommand::Unshelve { incident, reason }).await
}
