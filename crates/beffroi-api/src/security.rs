//! Device quarantine: `POST /api/v1/devices/{id}/quarantine`,
//! `POST /api/v1/devices/{id}/release` (both with `{reason}`), and
//! `GET /api/v1/security/quarantine` (the devices in quarantine and the history of acts).
//! Permission: `device.quarantine` (the lead wires it into the permission table).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use beffroi_core::{Actor, Territory};
use beffroi_engine::runner::{ActError, OpsCommand, OpsOutcome};
use beffroi_engine::sentinel::{QuarantineAct, QuarantineError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{User, blocking, store_err};

#[derive(Deserialize, ToSchema)]
pub struct QuarantineRequest {
    /// Why (required; kept in the quarantine log).
    pub reason: crate::scrub::FreeText,
}

#[derive(Serialize, ToSchema)]
pub struct QuarantineActDto {
    pub device: String,
    /// `quarantine` or `release`
    pub action: String,
    /// `user:NAME` or `policy:ANOMALY`
    pub actor: String,
    pub reason: String,
    pub at: String,
}

impl QuarantineActDto {
    fn from_core(a: &QuarantineAct, t: &Territory) -> Self {
        QuarantineActDto {
            device: t.device(a.device).id.to_string(),
            action: if a.quarantined {
                "quarantine"
            } else {
                "release"
            }
            .into(),
            actor: a.actor.to_string(),
            reason: a.reason.clone(),
            at: a.at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct QuarantineViewDto {
    /// The devices in quarantine now, each with the act that put it there.
    pub current: Vec<QuarantineActDto>,
    /// The latest acts (at most 500), oldest first.
    pub history: Vec<QuarantineActDto>,
}

fn quarantine_error(e: &ActError) -> ApiError {
    match e {
        ActError::Quarantine(QuarantineError::UnknownDevice(_)) => {
            ApiError::new(ErrorCode::NotFound, e.to_string())
        }
        ActError::Quarantine(QuarantineError::EmptyReason) => {
            ApiError::new(ErrorCode::InvalidRequest, e.to_string())
        }
        ActError::Quarantine(_) => ApiError::new(ErrorCode::InvalidTransition, e.to_string()),
        _ => ApiError::new(ErrorCode::StoreUnavailable, e.to_string()),
    }
}

async fn act(
    s: AppState,
    user: String,
    id: String,
    quarantined: bool,
    body: Result<Json<QuarantineRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<QuarantineActDto>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let outcome = s
        .engine
        .ops_command(
            OpsCommand::Quarantine {
                device: id,
                quarantined,
                reason: req.reason.scrub(&s).await?,
            },
            Actor::User(user.into()),
        )
        .await
        .map_err(|e| quarantine_error(&e))?;
    // The route guard writes the audit record (actor, device, outcome); the reason is in
    // the quarantine log.
    match outcome {
        OpsOutcome::Quarantine(a) => Ok(Json(QuarantineActDto::from_core(&a, &s.engine.territory))),
        _ => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "unexpected answer of the engine",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/quarantine", params(("id" = String, Path)),
    request_body = QuarantineRequest,
    responses((status = 200, body = QuarantineActDto), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn quarantine(
    State(s): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
    body: Result<Json<QuarantineRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<QuarantineActDto>, ApiError> {
    act(s, user, id, true, body).await
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/release", params(("id" = String, Path)),
    request_body = QuarantineRequest,
    responses((status = 200, body = QuarantineActDto), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn release(
    State(s): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
    body: Result<Json<QuarantineRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<QuarantineActDto>, ApiError> {
    act(s, user, id, false, body).await
}

#[utoipa::path(get, path = "/api/v1/security/quarantine",
    responses((status = 200, body = QuarantineViewDto)), security(("bearer" = [])))]
pub async fn quarantine_view(
    State(s): State<AppState>,
    c: crate::Caller,
) -> Result<Json<QuarantineViewDto>, ApiError> {
    let t = Arc::clone(&s.engine.territory);
    // Cut to the caller's communes, like every list.
    let visible = |a: &beffroi_engine::sentinel::QuarantineAct| {
        c.scope.is_territory() || c.scope.holds(t.site(t.device(a.device).site).commune)
    };
    let current: Vec<_> = s
        .engine
        .ops()
        .quarantined
        .iter()
        .filter(|a| visible(a))
        .map(|a| QuarantineActDto::from_core(a, &t))
        .collect();
    let reader = Arc::clone(&s.reader);
    let history = blocking(move || reader.quarantine_log(500).map_err(store_err)).await?;
    Ok(Json(QuarantineViewDto {
        current,
        history: history
            .iter()
            .filter(|a| visible(a))
            .map(|a| QuarantineActDto::from_core(a, &t))
            .collect(),
    }))
}
