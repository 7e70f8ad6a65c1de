//! Retention status, legal holds and a person's requests.
//!
//! - `GET /api/v1/privacy/retention` (`privacy.read`): rows and oldest row per store and
//!   category, each store's limit, the last purge and the next one.
//! - `GET /api/v1/privacy/holds` (`privacy.read`): legal holds in force (`?all=true`: every
//!   hold ever set, released and expired ones included).
//! - `POST /api/v1/incidents/{id}/hold` and `…/hold/release` (`privacy.hold`).
//! - `POST /api/v1/privacy/subject/search` and `…/erase` (`privacy.subject`): a person's
//!   identifier is turned into its pseudonyms in every live key epoch; the value itself is
//!   never stored, logged, audited nor echoed.
//!
//! Writes (holds, erasure, access packages) go through the engine's writer thread
//! ([`beffroi_engine::runner::EngineHandle::privacy`]); the route guard audits them, with
//! the counts this module adds ([`AuditDetail`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use beffroi_core::territory::{DataCategory, Identifier};
use beffroi_core::{Duration, IncidentId, Timestamp};
use beffroi_engine::retention::{
    ErasureReport, LegalHold, MAX_HOLD, MIN_HOLD_JUSTIFICATION, PrivacyCommand, PrivacyError,
    PrivacyOutcome, SubjectData,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::AuditDetail;

/// Observations listed at most in a subject search (all are counted).
pub const SUBJECT_LIST_LIMIT: usize = 1000;

/// Shortest justification of an erasure.
pub const MIN_ERASE_JUSTIFICATION: usize = 15;

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, msg)
}

fn engine_err(e: &PrivacyError) -> ApiError {
    match e {
        PrivacyError::NoExportDir => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
        _ => ApiError::new(ErrorCode::StoreUnavailable, e.to_string()),
    }
}

fn with_audit<T: Serialize>(body: T, detail: serde_json::Value) -> Response {
    let mut resp = Json(body).into_response();
    resp.extensions_mut().insert(AuditDetail(detail));
    resp
}

fn whole_days(d: Duration) -> i64 {
    d.0 / 86_400_000
}

// ---- retention status ------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct StoreRowsDto {
    /// observations, identities, incidents, incident_log, crises, crisis_log, rejections,
    /// quarantine_log, exports
    pub store: String,
    pub rows: u64,
    /// RFC 3339; absent when the store is empty.
    pub oldest: Option<String>,
    /// This store's own limit in this category, when it differs from the category's
    /// (technical observations, identities).
    pub retention_days: i64,
    /// `delete` or `redact` (incidents and crises lose their personal parts first).
    pub at_limit: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryDto {
    /// technical, personal, sensitive
    pub category: &'static str,
    pub retention_days: i64,
    pub stores: Vec<StoreRowsDto>,
}

#[derive(Serialize, ToSchema)]
pub struct LastPurgeDto {
    pub at: String,
    /// Rows deleted per store, all categories together.
    pub removed: BTreeMap<String, u64>,
    /// Rows redacted per store.
    pub redacted: BTreeMap<String, u64>,
    /// Per store and category, as audited.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionStatusDto {
    pub categories: Vec<CategoryDto>,
    pub last_purge: Option<LastPurgeDto>,
    /// RFC 3339 (engine clock); absent when purges are not scheduled.
    pub next_purge_at: Option<String>,
}

fn per_store(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(store, cats)| {
                    let n = cats.as_object().map_or(0, |c| {
                        c.values().filter_map(serde_json::Value::as_u64).sum()
                    });
                    (store.clone(), n)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[utoipa::path(get, path = "/api/v1/privacy/retention",
    responses((status = 200, body = RetentionStatusDto)), security(("bearer" = [])))]
pub async fn status(State(s): State<AppState>) -> Result<Json<RetentionStatusDto>, ApiError> {
    let reader = Arc::clone(&s.reader);
    let (rows, last) = blocking(move || reader.retention_status().map_err(store_err)).await?;
    let r = &s.privacy.retention;
    let tech_obs = s.engine.observation_retention();
    let categories = DataCategory::ALL
        .into_iter()
        .map(|c| {
            let stores = rows
                .iter()
                .filter(|x| x.category == c)
                .map(|x| {
                    let (days, at_limit) = match (x.store, c) {
                        ("observations", DataCategory::Technical) => {
                            (whole_days(tech_obs), "delete")
                        }
                        ("identities", _) => (whole_days(r.personal.max(r.sensitive)), "delete"),
                        ("incidents" | "crises", DataCategory::Personal) => {
                            (whole_days(r.personal), "redact")
                        }
                        _ => (whole_days(r.of(c)), "delete"),
                    };
                    StoreRowsDto {
                        store: x.store.to_string(),
                        rows: x.rows,
                        oldest: x.oldest.map(|t| t.to_string()),
                        retention_days: days,
                        at_limit,
                    }
                })
                .collect();
            CategoryDto {
                category: c.as_str(),
                retention_days: whole_days(r.of(c)),
                stores,
            }
        })
        .collect();
    let last_purge = last.map(|run| LastPurgeDto {
        at: run.at.to_string(),
        removed: per_store(&run.detail["removed"]),
        redacted: per_store(&run.detail["redacted"]),
        detail: run.detail,
    });
    Ok(Json(RetentionStatusDto {
        categories,
        last_purge,
        next_purge_at: s.engine.next_purge_at().map(|t| t.to_string()),
    }))
}

// ---- legal holds -----------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct HoldDto {
    pub incident_id: u64,
    pub justification: String,
    pub until: String,
    pub set_by: String,
    pub set_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
}

impl From<&LegalHold> for HoldDto {
    fn from(h: &LegalHold) -> Self {
        HoldDto {
            incident_id: h.incident.0,
            justification: h.justification.to_string(),
            until: h.until.to_string(),
            set_by: h.set_by.clone(),
            set_at: h.set_at.to_string(),
            released_at: h.released_at.map(|t| t.to_string()),
            released_by: h.released_by.clone(),
        }
    }
}

#[derive(Deserialize)]
pub struct HoldsQuery {
    #[serde(default)]
    pub all: bool,
}

#[utoipa::path(get, path = "/api/v1/privacy/holds", params(("all" = Option<bool>, Query)),
    responses((status = 200, body = [HoldDto])), security(("bearer" = [])))]
pub async fn list_holds(
    State(s): State<AppState>,
    Query(q): Query<HoldsQuery>,
) -> Result<Json<Vec<HoldDto>>, ApiError> {
    let reader = Arc::clone(&s.reader);
    let now = s.engine.clock.now();
    let holds = blocking(move || reader.holds(now, q.all).map_err(store_err)).await?;
    Ok(Json(holds.iter().map(HoldDto::from).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct HoldRequest {
    /// Why (at least 20 characters): the proceedings, the requisition, the claim.
    pub justification: crate::scrub::FreeText,
    /// RFC 3339, in the future, at most a year away.
    pub until: String,
}

async fn existing_incident(
    s: &AppState,
    c: &crate::Caller,
    id: &str,
) -> Result<IncidentId, ApiError> {
    let not_found = || crate::routes::ObjectKind::Incident.not_found();
    let n: u64 = id.parse().map_err(|_| not_found())?;
    let incidents = c.incidents(s);
    let found = blocking(move || incidents.one(IncidentId(n)).map_err(store_err)).await?;
    found.map(|i| i.id).ok_or_else(not_found)
}

/// Checks a hold request against the engine clock's `now`.
pub fn validate_hold(
    justification_chars: usize,
    until: &str,
    now: Timestamp,
) -> Result<Timestamp, ApiError> {
    if justification_chars < MIN_HOLD_JUSTIFICATION {
        return Err(invalid(format!(
            "justification: at least {MIN_HOLD_JUSTIFICATION} characters (the proceedings, \
             the requisition or the claim the hold serves)"
        )));
    }
    let until = beffroi_wire::parse_rfc3339(until)
        .ok_or_else(|| invalid("until: an RFC 3339 date, e.g. 2027-06-30T00:00:00Z"))?;
    if until <= now {
        return Err(invalid("until: must be in the future"));
    }
    if until > now.plus(MAX_HOLD) {
        return Err(invalid(
            "until: at most one year away (renew the hold when it is still needed)",
        ));
    }
    Ok(until)
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/hold", params(("id" = u64, Path)),
    request_body = HoldRequest,
    responses((status = 200, body = HoldDto), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_hold(
    State(s): State<AppState>,
    c: crate::Caller,
    Path(id): Path<String>,
    body: Result<Json<HoldRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| invalid(e.body_text()))?;
    let now = s.engine.clock.now();
    let until = validate_hold(req.justification.chars(), &req.until, now)?;
    let incident = existing_incident(&s, &c, &id).await?;
    let user = c.principal.name.clone();
    let justification = req.justification.scrub(&s).await?;
    let hold = LegalHold {
        incident,
        justification,
        until,
        set_by: user,
        set_at: now,
        released_at: None,
        released_by: None,
    };
    let dto = HoldDto::from(&hold);
    s.engine
        .privacy(PrivacyCommand::SetHold(hold))
        .await
        .map_err(|e| engine_err(&e))?;
    Ok(with_audit(
        dto,
        serde_json::json!({"incident_id": incident.0, "until": until.to_string()}),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ReleasedDto {
    pub incident_id: u64,
    pub released: bool,
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/hold/release", params(("id" = u64, Path)),
    responses((status = 200, body = ReleasedDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn release_hold(
    State(s): State<AppState>,
    c: crate::Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let incident = existing_incident(&s, &c, &id).await?;
    let user = c.principal.name.clone();
    let out = s
        .engine
        .privacy(PrivacyCommand::ReleaseHold { incident, by: user })
        .await
        .map_err(|e| engine_err(&e))?;
    match out {
        PrivacyOutcome::HoldReleased(true) => Ok(with_audit(
            ReleasedDto {
                incident_id: incident.0,
                released: true,
            },
            serde_json::json!({"incident_id": incident.0}),
        )),
        _ => Err(ApiError::new(
            ErrorCode::NoHold,
            format!("incident {} is not under a legal hold", incident.0),
        )),
    }
}

// ---- a person's requests ---------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct SubjectRequest {
    /// licence_plate, badge, mac_address, phone_number, email, name, other
    pub identifier: String,
    /// The value as the person gives it (never stored, logged nor echoed).
    pub value: String,
    /// Write the access package under the data directory's `exports/` (search only).
    #[serde(default)]
    pub export: bool,
    /// Why (erasure only; at least 15 characters): the request's reference.
    #[serde(default)]
    pub justification: Option<crate::scrub::FreeText>,
}

#[derive(Serialize, ToSchema)]
pub struct SubjectObservationDto {
    pub device: String,
    pub field: String,
    pub time: String,
    pub pseudonym: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubjectLogDto {
    pub at: String,
    pub action: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubjectIncidentDto {
    pub id: u64,
    pub status: String,
    pub opened_at: String,
    /// title, evidence, log
    pub found_in: Vec<&'static str>,
    pub log_entries: Vec<SubjectLogDto>,
}

#[derive(Serialize, ToSchema)]
pub struct SubjectDataDto {
    pub identifier: &'static str,
    /// The identifier's pseudonym in each live key epoch (a destroyed epoch's pseudonyms
    /// can no longer be linked to anyone).
    pub pseudonyms: Vec<String>,
    pub observation_count: u64,
    /// The newest observations (at most 1,000).
    pub observations: Vec<SubjectObservationDto>,
    pub incidents: Vec<SubjectIncidentDto>,
    pub crisis_log_entries: u64,
    /// Sealed values kept for purpose-bound unmasking.
    pub identities: u64,
    /// The access package written under `exports/`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
}

fn subject_dto(identifier: Identifier, pseudonyms: Vec<String>, d: SubjectData) -> SubjectDataDto {
    SubjectDataDto {
        identifier: identifier.as_str(),
        pseudonyms,
        observation_count: d.observation_count,
        observations: d
            .observations
            .into_iter()
            .map(|o| SubjectObservationDto {
                device: o.device,
                field: o.field,
                time: o.time.to_string(),
                pseudonym: o.pseudonym,
            })
            .collect(),
        incidents: d
            .incidents
            .into_iter()
            .map(|i| SubjectIncidentDto {
                id: i.id.0,
                status: i.status,
                opened_at: i.opened_at.to_string(),
                found_in: i.found_in,
                log_entries: i
                    .log_entries
                    .into_iter()
                    .map(|(at, action)| SubjectLogDto {
                        at: at.to_string(),
                        action,
                    })
                    .collect(),
            })
            .collect(),
        crisis_log_entries: d.crisis_entries,
        identities: d.identities,
        export: None,
    }
}

/// The identifier and its pseudonyms in every live epoch (none without keys: then no
/// personal identifier is kept at all).
fn pseudonyms_of(
    s: &AppState,
    req: &SubjectRequest,
) -> Result<(Identifier, Vec<String>), ApiError> {
    let identifier = Identifier::parse(&req.identifier).ok_or_else(|| {
        invalid(
            "identifier: one of licence_plate, badge, mac_address, phone_number, email, name, other",
        )
    })?;
    if req.value.trim().is_empty() {
        return Err(invalid("value: the identifier's value is required"));
    }
    let pseudonyms = s
        .pseudonymiser
        .as_ref()
        .map(|p| {
            p.pseudonyms_in_all_epochs(identifier, &req.value)
                .into_iter()
                .map(|p| p.0)
                .collect()
        })
        .unwrap_or_default();
    Ok((identifier, pseudonyms))
}

#[utoipa::path(post, path = "/api/v1/privacy/subject/search", request_body = SubjectRequest,
    responses((status = 200, body = SubjectDataDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn subject_search(
    State(s): State<AppState>,
    body: Result<Json<SubjectRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| invalid(e.body_text()))?;
    let (identifier, pseudonyms) = pseudonyms_of(&s, &req)?;
    let reader = Arc::clone(&s.reader);
    let ps = pseudonyms.clone();
    let data = blocking(move || {
        reader
            .subject_data(&ps, SUBJECT_LIST_LIMIT)
            .map_err(store_err)
    })
    .await?;
    let mut dto = subject_dto(identifier, pseudonyms, data);
    if req.export {
        let package = serde_json::json!({
            "kind": "beffroi.subject_access",
            "generated_at": s.engine.clock.now().to_string(),
            "controller": s.privacy.controller.name,
            "data": &dto,
        });
        match s
            .engine
            .privacy(PrivacyCommand::Export {
                json: package.to_string(),
            })
            .await
            .map_err(|e| engine_err(&e))?
        {
            PrivacyOutcome::Exported(name) => dto.export = Some(format!("exports/{name}")),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "export not written",
                ));
            }
        }
    }
    let detail = serde_json::json!({
        "identifier": identifier.as_str(),
        "epochs": dto.pseudonyms.len(),
        "observations": dto.observation_count,
        "incidents": dto.incidents.len(),
        "crisis_log_entries": dto.crisis_log_entries,
        "identities": dto.identities,
        "export": dto.export,
    });
    Ok(with_audit(dto, detail))
}

#[derive(Serialize, ToSchema)]
pub struct ErasureDto {
    pub identifier: &'static str,
    pub observations_deleted: u64,
    pub identities_deleted: u64,
    pub incidents_redacted: u64,
    pub log_entries_redacted: u64,
    pub crisis_log_entries_redacted: u64,
    /// Other texts that held the person: technical text values, crisis titles, summaries
    /// and role holders, event names, hold justifications, quarantine reasons.
    pub other_texts_redacted: u64,
    /// Incidents mentioning the person kept as they are because of a legal hold: erase
    /// again once the hold is released or over.
    pub held_incidents: Vec<u64>,
}

fn erasure_dto(identifier: Identifier, r: &ErasureReport) -> ErasureDto {
    ErasureDto {
        identifier: identifier.as_str(),
        observations_deleted: r.observations,
        identities_deleted: r.identities,
        incidents_redacted: r.incidents_redacted,
        log_entries_redacted: r.log_entries_redacted,
        crisis_log_entries_redacted: r.crisis_entries_redacted,
        other_texts_redacted: r.other_texts_redacted,
        held_incidents: r.held_incidents.iter().map(|i| i.0).collect(),
    }
}

#[utoipa::path(post, path = "/api/v1/privacy/subject/erase", request_body = SubjectRequest,
    responses((status = 200, body = ErasureDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn subject_erase(
    State(s): State<AppState>,
    body: Result<Json<SubjectRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| invalid(e.body_text()))?;
    let justification = match &req.justification {
        Some(j) if j.chars() >= MIN_ERASE_JUSTIFICATION => j.scrub(&s).await?,
        _ => {
            return Err(invalid(format!(
                "justification: at least {MIN_ERASE_JUSTIFICATION} characters (the request's reference)"
            )));
        }
    };
    let (identifier, pseudonyms) = pseudonyms_of(&s, &req)?;
    let report = if pseudonyms.is_empty() {
        ErasureReport::default()
    } else {
        match s
            .engine
            .privacy(PrivacyCommand::Erase { pseudonyms })
            .await
            .map_err(|e| engine_err(&e))?
        {
            PrivacyOutcome::Erased(r) => r,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "erasure not done",
                ));
            }
        }
    };
    let dto = erasure_dto(identifier, &report);
    let detail = serde_json::json!({
        "identifier": identifier.as_str(),
        "justification": justification.as_str(),
        "observations": report.observations,
        "identities": report.identities,
        "incidents_redacted": report.incidents_redacted,
        "log_entries_redacted": report.log_entries_redacted,
        "crisis_log_entries_redacted": report.crisis_entries_redacted,
        "held_incidents": dto.held_incidents,
    });
    Ok(with_audit(dto, detail))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        status,
        list_holds,
        set_hold,
        release_hold,
        subject_search,
        subject_erase
    ),
    components(schemas(
        RetentionStatusDto,
        CategoryDto,
        StoreRowsDto,
        LastPurgeDto,
        HoldDto,
        HoldRequest,
        ReleasedDto,
        SubjectRequest,
        SubjectDataDto,
        SubjectObservationDto,
        SubjectIncidentDto,
        SubjectLogDto,
        ErasureDto
    ))
)]
pub(crate) struct PrivacyApi;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_767_225_600_000);

    #[test]
    fn a_hold_needs_a_justification_and_an_end_within_a_year() {
        let j = "Réquisition du parquet n° 2026/123".chars().count();
        assert!(validate_hold("trop court".len(), "2026-06-01T00:00:00Z", NOW).is_err());
        assert!(
            validate_hold(j, "2025-12-31T00:00:00Z", NOW).is_err(),
            "past"
        );
        assert!(
            validate_hold(j, "2027-06-01T00:00:00Z", NOW).is_err(),
            "beyond a year"
        );
        assert!(validate_hold(j, "demain", NOW).is_err());
        assert_eq!(
            validate_hold(j, "2026-06-01T00:00:00Z", NOW).expect("valid"),
            beffroi_wire::parse_rfc3339("2026-06-01T00:00:00Z").expect("date")
        );
    }
}
