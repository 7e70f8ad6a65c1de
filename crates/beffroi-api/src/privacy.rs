//! The DPO's routes:
//! - `GET /api/v1/privacy/register` (JSON) and `GET /api/v1/privacy/register.html` (the
//!   printable French page): the register of processing activities built from the
//!   configuration (`beffroi_dpo::register`). Permission `privacy.read`.
//! - `GET /api/v1/privacy/access-log?since=&before=&limit=`: the audit entries about
//!   personal data — actions `personal.*` and `privacy.*`, and the refusals of those
//!   routes (`access.personal.*`, `access.privacy.*`) — newest first. Permission
//!   `privacy.read` over the whole territory. Each read is itself audited
//!   (`privacy.access_log`): the log names staff.
//! - `GET /api/v1/privacy/notices`: the devices observing public space and the address of
//!   their notice (the console's list). Permission `privacy.read`.
//! - `GET /api/v1/devices/{id}/notice`: the public notice of a device observing public
//!   space (HTML, public: it is meant to be published).

use beffroi_core::SafeText;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use beffroi_core::audit::{AuditQuery, AuditReader};
use beffroi_core::{AuditOutcome, AuditRecord, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking;
use crate::routes::{Caller, wall_ms};

/// The actions the access log shows (prefixes of the audit log's actions).
pub const ACCESS_LOG_PREFIXES: [&str; 4] = [
    "personal.",
    "privacy.",
    "access.personal.",
    "access.privacy.",
];

/// Entries per page by default, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

fn register(s: &AppState) -> beffroi_dpo::Register {
    beffroi_dpo::register::build(
        &s.engine.territory,
        &s.privacy,
        beffroi_core::privacy::RECORD_FIELDS,
        Timestamp(wall_ms()),
    )
}

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                beffroi_dpo::html::CONTENT_SECURITY_POLICY,
            ),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/privacy/register",
    responses((status = 200, description = "The register of processing activities (GDPR art. 30), JSON: controller, activities (purposes, legal basis, data subjects, data with category and protection, recipients, retention, transfers, security measures, devices per commune), problems, summary")),
    security(("bearer" = [])))]
pub async fn register_json(State(s): State<AppState>) -> Result<Response, ApiError> {
    let reg = blocking(move || Ok(register(&s))).await?;
    Ok(Json(reg).into_response())
}

#[utoipa::path(get, path = "/api/v1/privacy/register.html",
    responses((status = 200, description = "text/html: the register as a printable French page")),
    security(("bearer" = [])))]
pub async fn register_html(State(s): State<AppState>) -> Result<Response, ApiError> {
    let page = blocking(move || Ok(beffroi_dpo::html::register(&register(&s)))).await?;
    Ok(html(page))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/notice", params(("id" = String, Path)),
    responses((status = 200, description = "text/html: the public notice of the device"),
        (status = 404, body = crate::error::ErrorBody, description = "no such device, or it does not observe public space")))]
pub async fn notice(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = &s.engine.territory;
    let n = t
        .device_id(&id)
        .and_then(|d| beffroi_dpo::notice::build(t, &s.privacy, d))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no public notice for `{id}`: no such device observing public space"),
            )
        })?;
    Ok(html(beffroi_dpo::html::notice(&n)))
}

#[derive(Serialize, ToSchema)]
pub struct NoticeRefDto {
    pub device: String,
    pub kind: String,
    pub kind_label: String,
    /// The kind's label in English, when the kinds file gives one.
    pub kind_label_en: Option<String>,
    pub site: String,
    pub commune: String,
    /// The public page: `/api/v1/devices/{id}/notice`.
    pub url: String,
}

#[utoipa::path(get, path = "/api/v1/privacy/notices",
    responses((status = 200, body = [NoticeRefDto], description = "Every device observing public space and its public notice, by commune, site and device")),
    security(("bearer" = [])))]
pub async fn notices(State(s): State<AppState>) -> Result<Json<Vec<NoticeRefDto>>, ApiError> {
    let list = blocking(move || {
        Ok(beffroi_dpo::notice::all(&s.engine.territory, &s.privacy)
            .into_iter()
            .map(|n| NoticeRefDto {
                url: format!("/api/v1/devices/{}/notice", n.device),
                device: n.device,
                kind: n.kind,
                kind_label: n.kind_label,
                kind_label_en: n.kind_label_en,
                site: n.site,
                commune: n.commune,
            })
            .collect())
    })
    .await?;
    Ok(Json(list))
}

#[derive(Deserialize, IntoParams)]
pub struct AccessLogParams {
    /// Only entries at or after this time (RFC 3339).
    since: Option<String>,
    /// Only entries listed after this cursor (the next page: `next_before` of the previous
    /// answer).
    before: Option<u64>,
    /// At most this many entries (1–1000, default 100).
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct AccessLogEntryDto {
    /// Position in the audit chain (`beffroi audit show`).
    pub seq: u64,
    /// In a cluster, the node whose audit chain holds the entry (each node signs its own;
    /// `beffroi audit verify --database` checks them all); absent on a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub at: String,
    /// Who: a user, `token:NAME`, `system`.
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// `ok`, `denied`, `failed`
    pub outcome: String,
    /// The entry's detail object (purpose, justification, counts…; never a value in clear).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct AccessLogDto {
    /// Newest first.
    pub entries: Vec<AccessLogEntryDto>,
    /// Pass as `before` for the next (older) page; `null` when this page is the last. A
    /// cursor, not a seq: in a cluster it follows the order in which the cluster's log
    /// received the entries of every node.
    pub next_before: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/privacy/access-log", params(AccessLogParams),
    responses((status = 200, body = AccessLogDto), (status = 400, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody, description = "no readable audit log")),
    security(("bearer" = [])))]
pub async fn access_log(
    State(s): State<AppState>,
    caller: Caller,
    Query(p): Query<AccessLogParams>,
) -> Result<Json<AccessLogDto>, ApiError> {
    let since_ms = match p.since.as_deref() {
        None | Some("") => None,
        Some(t) => Some(
            beffroi_wire::parse_rfc3339(t)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("`since`: not an RFC 3339 time: `{t}`"),
                    )
                })?
                .0,
        ),
    };
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`limit` must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let reader: Arc<dyn AuditReader> = s.audit_reader.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::StoreUnavailable,
            "this deployment has no readable audit log",
        )
    })?;
    let q = AuditQuery {
        action_prefixes: ACCESS_LOG_PREFIXES.iter().map(|p| p.to_string()).collect(),
        since_ms,
        before: p.before,
        // One more tells whether an older page exists.
        limit: limit + 1,
    };
    let mut entries = blocking(move || {
        reader
            .read(&q)
            .map_err(|e| ApiError::new(ErrorCode::StoreUnavailable, e.to_string()))
    })
    .await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    s.audit.record(AuditRecord {
        at_ms: wall_ms(),
        actor: crate::scrub::audit_text(&s, caller.name()),
        action: "privacy.access_log".into(),
        target: None,
        outcome: AuditOutcome::Ok,
        detail: SafeText::redacting(
            &serde_json::json!({"entries": entries.len(), "since": p.since, "before": p.before})
                .to_string(),
        ),
    });
    Ok(Json(AccessLogDto {
        next_before: if more {
            entries.last().map(|e| e.cursor)
        } else {
            None
        },
        entries: entries
            .into_iter()
            .map(|e| AccessLogEntryDto {
                seq: e.seq,
                node: e.node,
                at: Timestamp(e.record.at_ms).to_string(),
                actor: e.record.actor.to_string(),
                detail: serde_json::from_str(&e.record.detail)
                    .unwrap_or(serde_json::Value::String(e.record.detail.to_string())),
                action: e.record.action,
                target: e.record.target.as_deref().map(str::to_string),
                outcome: e.record.outcome.as_str().to_string(),
            })
            .collect(),
    }))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(register_json, register_html, access_log, notice, notices),
    components(schemas(AccessLogDto, AccessLogEntryDto, NoticeRefDto))
)]
pub(crate) struct PrivacyApi;
