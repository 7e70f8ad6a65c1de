//! Situations: the incidents of one real event, handled as one (`/api/v1/situations`).
//!
//! The engine publishes the situations with the operations snapshot; what a caller sees of
//! each is decided by [`beffroi_core::Situation::view`] with the caller's visibility, the
//! only way this module reads one: members the caller may not see are absent, and the
//! title, severity, status and communes come from the visible members. An action on a
//! situation reaches only those members.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use beffroi_access::Permission;
use beffroi_core::situation::{Situation, SituationError, SituationId, SituationView};
use beffroi_core::visibility::Visibility;
use beffroi_core::{Actor, IncidentAction, IncidentId, Severity, Status, Territory, Timestamp};
use beffroi_engine::runner::{ActError, OpsCommand, OpsOutcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::dto::{ActionRequest, ts};
use crate::error::{ApiError, ErrorCode};
use crate::routes::{AuditDetail, Caller, ObjectKind};

/// One incident of a situation.
#[derive(Serialize, ToSchema)]
pub struct SituationIncidentDto {
    pub id: u64,
    pub rule: String,
    pub category: String,
    pub severity: String,
    pub status: String,
    pub title: String,
    pub commune: String,
    pub site: String,
    pub site_name: String,
    /// `[longitude, latitude]`
    pub position: [f64; 2],
    pub opened_at: String,
    pub owner: Option<String>,
}

/// A situation as the caller may see it.
#[derive(Serialize, ToSchema)]
pub struct SituationDto {
    pub id: u64,
    /// The family that grouped it (`situations.toml`); `null`: an incident of no family.
    pub family: Option<String>,
    /// The leading incident's title (the most severe open one the caller sees).
    pub title: String,
    pub category: String,
    /// The highest severity among its open incidents: info | minor | major | critical.
    pub severity: String,
    /// new | acknowledged | in_progress | resolved | closed
    pub status: String,
    /// The leading incident: its detail holds the procedure and the evidence.
    pub lead: u64,
    /// Communes of its incidents, ids.
    pub communes: Vec<String>,
    /// `[longitude, latitude]` of the leading incident.
    pub position: [f64; 2],
    pub opened_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
    pub merged_into: Option<u64>,
    /// Incidents in it still waiting for an acknowledgement.
    pub unacknowledged: usize,
    pub incidents: Vec<SituationIncidentDto>,
}

/// A line of a situation's own log (its incidents keep theirs).
#[derive(Serialize, ToSchema)]
pub struct SituationLogDto {
    pub at: String,
    /// `user:NAME`, `rule:ID` or `system`.
    pub actor: String,
    /// opened | joined | split_out | split_from | merged | merged_into | closed
    pub event: String,
    pub incident: Option<u64>,
    /// The other situation of a split or a merge.
    pub other: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SituationDetailDto {
    #[serde(flatten)]
    pub situation: SituationDto,
    pub log: Vec<SituationLogDto>,
}

impl SituationDto {
    pub fn from_view(v: &SituationView<'_>, t: &Territory) -> Self {
        let s = v.situation;
        let lead = v.lead;
        SituationDto {
            id: s.id.0,
            family: s.family.as_deref().map(Into::into),
            title: lead.title.to_string(),
            category: lead.category.to_string(),
            severity: v.severity.as_str().into(),
            status: v.status.as_str().into(),
            lead: lead.incident.0,
            communes: v
                .communes
                .iter()
                .map(|c| t.commune(*c).id.to_string())
                .collect(),
            position: [lead.position.lon, lead.position.lat],
            opened_at: ts(v
                .members
                .iter()
                .map(|m| m.opened_at)
                .min()
                .unwrap_or(s.opened_at)),
            updated_at: ts(s.updated_at),
            closed_at: s.closed_at.map(ts),
            merged_into: s.merged_into.map(|m| m.0),
            unacknowledged: v.members.iter().filter(|m| m.status == Status::New).count(),
            incidents: v
                .members
                .iter()
                .map(|m| {
                    let site = t.site(m.site);
                    SituationIncidentDto {
                        id: m.incident.0,
                        rule: m.rule.to_string(),
                        category: m.category.to_string(),
                        severity: m.severity.as_str().into(),
                        status: m.status.as_str().into(),
                        title: m.title.to_string(),
                        commune: t.commune(m.commune).id.to_string(),
                        site: site.id.to_string(),
                        site_name: site.name.to_string(),
                        position: [m.position.lon, m.position.lat],
                        opened_at: ts(m.opened_at),
                        owner: m.owner.as_deref().map(Into::into),
                    }
                })
                .collect(),
        }
    }
}

/// The detail: the log lines about incidents the caller does not see in it are left out.
fn detail(v: &SituationView<'_>, t: &Territory) -> SituationDetailDto {
    let shown: Vec<IncidentId> = v.members.iter().map(|m| m.incident).collect();
    SituationDetailDto {
        situation: SituationDto::from_view(v, t),
        log: v
            .situation
            .log
            .iter()
            .filter(|e| e.incident.is_none_or(|i| shown.contains(&i)))
            .map(|e| SituationLogDto {
                at: ts(e.at),
                actor: e.actor.to_string(),
                event: e.event.as_str().into(),
                incident: e.incident.map(|i| i.0),
                other: e.other.map(|o| o.0),
            })
            .collect(),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct SituationQuery {
    /// `open` (default): with an open incident; `all`: closed ones of the last day too.
    pub status: Option<String>,
    /// Only situations of at least this severity.
    pub min_severity: Option<String>,
    /// Only situations with an incident in this commune (id).
    pub commune: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/situations", params(SituationQuery),
    responses((status = 200, body = [SituationDto]), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    c: Caller,
    Query(q): Query<SituationQuery>,
) -> Result<Json<Vec<SituationDto>>, ApiError> {
    let t = &s.engine.territory;
    let all = match q.status.as_deref() {
        None | Some("open") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown status `{other}` (open or all)"),
            ));
        }
    };
    let min = match q.min_severity.as_deref() {
        None => Severity::Info,
        Some(x) => Severity::parse(x).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidRequest, format!("unknown severity `{x}`"))
        })?,
    };
    let commune = match q.commune.as_deref() {
        None => None,
        Some(x) => Some(t.commune_id(x).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidRequest, format!("unknown commune `{x}`"))
        })?),
    };
    let ops = s.engine.ops();
    let mut out: Vec<(bool, Severity, Timestamp, SituationDto)> = ops
        .situations
        .iter()
        .filter(|x| x.merged_into.is_none())
        .filter_map(|x| x.view(&c.visibility))
        .filter(|v| all || v.status.is_open())
        .filter(|v| v.severity >= min)
        .filter(|v| commune.is_none_or(|cm| v.communes.contains(&cm)))
        .map(|v| {
            (
                v.status.is_open(),
                v.severity,
                v.situation.updated_at,
                SituationDto::from_view(&v, t),
            )
        })
        .collect();
    // Open first, then the most severe, then the latest activity.
    out.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    Ok(Json(out.into_iter().map(|x| x.3).collect()))
}

/// The situation as the caller sees it, or the answer of a missing one.
fn visible(s: &AppState, id: u64, vis: &Visibility) -> Result<Arc<Situation>, ApiError> {
    s.engine
        .ops()
        .situation(id)
        .filter(|x| x.view(vis).is_some())
        .cloned()
        .ok_or_else(|| ObjectKind::Situation.not_found())
}

#[utoipa::path(get, path = "/api/v1/situations/{id}", params(("id" = u64, Path)),
    responses((status = 200, body = SituationDetailDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
) -> Result<Json<SituationDetailDto>, ApiError> {
    let x = visible(&s, id, &c.visibility)?;
    let v = x
        .view(&c.visibility)
        .ok_or_else(|| ObjectKind::Situation.not_found())?;
    Ok(Json(detail(&v, &s.engine.territory)))
}

fn situation_error(e: &ActError) -> ApiError {
    match e {
        ActError::Situation(SituationError::NotFound(_)) => ObjectKind::Situation.not_found(),
        ActError::Situation(e) => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
        ActError::Transition(beffroi_core::TransitionError::Unit(u)) => crate::units::unit_error(u),
        ActError::Transition(e) => ApiError::new(ErrorCode::InvalidTransition, e.to_string()),
        other => crate::units::ops_error(other),
    }
}

/// Runs a situation command and answers the situation as the caller now sees it.
async fn command(
    s: &AppState,
    c: &Caller,
    cmd: OpsCommand,
) -> Result<Json<SituationDetailDto>, ApiError> {
    match s
        .engine
        .ops_command(cmd, Actor::User(c.principal.name.clone().into()))
        .await
        .map_err(|e| situation_error(&e))?
    {
        OpsOutcome::Situation(x) => {
            let v = x
                .view(&c.visibility)
                .ok_or_else(|| ObjectKind::Situation.not_found())?;
            Ok(Json(detail(&v, &s.engine.territory)))
        }
        _ => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "unexpected answer of the engine",
        )),
    }
}

/// The members of a situation an action of the caller reaches: those it sees under the
/// route's permission, and for an assignment those in its `incident.assign` scope.
fn reached(x: &Situation, c: &Caller, action: &IncidentAction) -> Vec<IncidentId> {
    let assign = c.principal.scope_for(Permission::IncidentAssign);
    x.view(&c.visibility)
        .map(|v| {
            v.members
                .iter()
                .filter(|m| m.status != Status::Closed)
                .filter(|m| !matches!(action, IncidentAction::Assign(_)) || assign.holds(m.commune))
                .map(|m| m.incident)
                .collect()
        })
        .unwrap_or_default()
}

#[utoipa::path(post, path = "/api/v1/situations/{id}/actions", params(("id" = u64, Path)),
    request_body = ActionRequest,
    responses((status = 200, body = SituationDetailDto), (status = 409, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn act(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    body: Result<Json<ActionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SituationDetailDto>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let x = visible(&s, id, &c.visibility)?;
    let action = crate::handlers::parse_action(&s, &req).await?;
    let only = reached(&x, &c, &action);
    if let IncidentAction::Assign(unit) = &action {
        let Some(first) = only.first() else {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "needs permission `incident.assign` in a commune of the situation",
            ));
        };
        crate::handlers::check_assignment(&s, &c, *first, unit).await?;
    }
    command(
        &s,
        &c,
        OpsCommand::Situation {
            id: SituationId(id),
            action,
            only,
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
pub struct SplitRequest {
    /// The incident to take out into a situation of its own.
    pub incident: u64,
}

#[utoipa::path(post, path = "/api/v1/situations/{id}/split", params(("id" = u64, Path)),
    request_body = SplitRequest,
    responses((status = 200, description = "the new situation", body = SituationDetailDto),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn split(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    body: Result<Json<SplitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SituationDetailDto>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let x = visible(&s, id, &c.visibility)?;
    // An incident the caller does not see in it is answered as one that is not in it.
    let shown = x
        .view(&c.visibility)
        .is_some_and(|v| v.members.iter().any(|m| m.incident.0 == req.incident));
    if !shown {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "this incident is not in the situation",
        ));
    }
    command(
        &s,
        &c,
        OpsCommand::SplitSituation {
            id: SituationId(id),
            incident: IncidentId(req.incident),
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
pub struct MergeRequest {
    /// The situation whose incidents move into this one (it closes).
    pub from: u64,
}

#[utoipa::path(post, path = "/api/v1/situations/{id}/merge", params(("id" = u64, Path)),
    request_body = MergeRequest,
    responses((status = 200, body = SituationDetailDto),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn merge(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    body: Result<Json<MergeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SituationDetailDto>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    visible(&s, id, &c.visibility)?;
    let from = visible(&s, req.from, &c.visibility)?;
    // Moving incidents the caller cannot see would act on them: the whole situation must
    // be visible to the caller.
    if from
        .view(&c.visibility)
        .is_some_and(|v| v.members.len() != from.members.len())
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the situation holds incidents outside your scope: it cannot be merged by you",
        ));
    }
    command(
        &s,
        &c,
        OpsCommand::MergeSituations {
            into: SituationId(id),
            from: SituationId(req.from),
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
pub struct BulkAcknowledgeRequest {
    /// The situations to acknowledge (at most 200).
    pub ids: Vec<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkRefusal {
    pub id: u64,
    /// The error code (`not_found`, `invalid_transition`…).
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct BulkAcknowledgeDto {
    pub acknowledged: Vec<u64>,
    pub refused: Vec<BulkRefusal>,
}

/// Most situations one bulk acknowledgement names.
const MAX_BULK: usize = 200;

#[utoipa::path(post, path = "/api/v1/situations/acknowledge", request_body = BulkAcknowledgeRequest,
    responses((status = 200, body = BulkAcknowledgeDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn acknowledge_many(
    State(s): State<AppState>,
    c: Caller,
    body: Result<Json<BulkAcknowledgeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    if req.ids.is_empty() || req.ids.len() > MAX_BULK {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("name between 1 and {MAX_BULK} situations"),
        ));
    }
    let mut out = BulkAcknowledgeDto {
        acknowledged: Vec::new(),
        refused: Vec::new(),
    };
    for id in req.ids {
        let r = match visible(&s, id, &c.visibility) {
            Ok(x) => {
                let only = reached(&x, &c, &IncidentAction::Acknowledge);
                s.engine
                    .ops_command(
                        OpsCommand::Situation {
                            id: SituationId(id),
                            action: IncidentAction::Acknowledge,
                            only,
                        },
                        Actor::User(c.principal.name.clone().into()),
                    )
                    .await
                    .map_err(|e| situation_error(&e))
                    .map(|_| ())
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => out.acknowledged.push(id),
            Err(e) => out.refused.push(BulkRefusal {
                id,
                code: e.code.as_str().into(),
            }),
        }
    }
    let audit = serde_json::json!({
        "acknowledged": out.acknowledged.len(),
        "refused": out.refused.len(),
    });
    let mut resp = Json(out).into_response();
    resp.extensions_mut().insert(AuditDetail(audit));
    Ok(resp)
}
