//! The shift handover (`GET /api/v1/handover`) and its notes (`POST /api/v1/handover/notes`,
//! `POST /api/v1/handover/notes/{id}/read`), all for the caller's communes (permission
//! `handover`).
//!
//! The handover shows what the incoming operator takes over: the notes of the outgoing
//! ones, the open incidents grouped ([`beffroi_core::handover::group_open`], the one place
//! the grouping is decided), overdue procedure steps, engaged units, active crises, declared
//! events in progress, shelved alarms, and the shift's log without the system's chatter
//! ([`beffroi_core::handover::worth_handing_over`]).
//!
//! A note is free text: scrubbed ([`crate::scrub::FreeText`]) before it reaches the engine,
//! stored with the author's communes, and shown only to a reader whose scope meets them.
//! Writing and reading one are audited by the guard (`handover.note`, `handover.note.read`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use beffroi_core::handover::{self as core_handover, HandoverNote, NoteError, NoteId};
use beffroi_core::{Actor, Duration, IncidentId, Status, UnitStatus};
use beffroi_engine::runner::{ActError, OpsCommand, OpsOutcome};
use beffroi_engine::store::IncidentQuery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::access::Scope;
use crate::dto::IncidentDto;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::{AuditDetail, Caller};
use crate::scrub::FreeText;

/// Most open incidents the handover reads.
const MAX_OPEN: usize = 100_000;
/// Most log lines of a handover (before the chatter is left out).
const MAX_HANDOVER_LOG: usize = 5_000;
/// Most notes a handover shows (the newest).
const MAX_NOTES_SHOWN: usize = 20;

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
pub struct NoteReadDto {
    pub by: String,
    pub at: String,
}

#[derive(Serialize, ToSchema)]
pub struct HandoverNoteDto {
    pub id: u64,
    pub author: String,
    pub at: String,
    /// Commune ids of the author's scope when writing; empty: the whole territory.
    pub communes: Vec<String>,
    /// Scrubbed: identifiers are pseudonyms.
    pub text: String,
    pub reads: Vec<NoteReadDto>,
    /// Whether the caller has read it.
    pub read_by_me: bool,
}

impl HandoverNoteDto {
    fn from_core(n: &HandoverNote, t: &beffroi_core::Territory, me: &str) -> Self {
        HandoverNoteDto {
            id: n.id.0,
            author: n.author.to_string(),
            at: n.at.to_string(),
            communes: n
                .communes
                .iter()
                .filter_map(|c| t.communes.get(c.get()))
                .map(|c| c.id.to_string())
                .collect(),
            text: n.text.to_string(),
            reads: n
                .reads
                .iter()
                .map(|r| NoteReadDto {
                    by: r.by.to_string(),
                    at: r.at.to_string(),
                })
                .collect(),
            read_by_me: n.read_by(me).is_some(),
        }
    }
}

/// Open incidents handed over together (today: one category in one commune).
#[derive(Serialize, ToSchema)]
pub struct IncidentGroupDto {
    /// The situation its incidents are (the incidents of one real event); `null`: incidents
    /// in no situation, grouped by category and commune.
    pub situation: Option<u64>,
    pub category: String,
    /// Commune id.
    pub commune: String,
    pub commune_name: String,
    /// The most severe of its incidents.
    pub worst: String,
    /// Most severe first, then oldest.
    pub incidents: Vec<IncidentDto>,
}

#[derive(Serialize, ToSchema)]
pub struct OverdueStepDto {
    pub incident: u64,
    pub title: String,
    pub severity: String,
    /// Index of the step in the incident's procedure.
    pub step: usize,
    pub text: String,
    pub due_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct EngagedUnitDto {
    pub id: String,
    pub name: String,
    /// police | technical | video | other
    pub kind: String,
    /// Ids of its missions the caller may see.
    pub missions: Vec<u64>,
    pub since: String,
}

#[derive(Serialize, ToSchema)]
pub struct HandoverCrisisDto {
    pub id: u64,
    pub kind: String,
    pub title: String,
    pub level: u8,
    pub opened_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct HandoverEventDto {
    pub id: String,
    pub name: String,
    pub starts_at: String,
    pub ends_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct HandoverDto {
    pub since: String,
    /// The engine's processing time.
    pub now: String,
    /// The territory's IANA time zone (times are shown in it), when set.
    pub timezone: Option<String>,
    /// The newest notes the caller may see, newest first.
    pub notes: Vec<HandoverNoteDto>,
    /// The open incidents, grouped.
    pub groups: Vec<IncidentGroupDto>,
    /// The open incidents, most severe first, then oldest.
    pub open_incidents: Vec<IncidentDto>,
    pub overdue_steps: Vec<OverdueStepDto>,
    pub engaged_units: Vec<EngagedUnitDto>,
    pub active_crises: Vec<HandoverCrisisDto>,
    pub active_events: Vec<HandoverEventDto>,
    /// Alarms on the shelf (ISA-18.2), to be reviewed at the handover.
    pub shelved: Vec<crate::shelving::ShelfDto>,
    /// People's actions and openings of critical and major incidents since `since`.
    pub log: Vec<HandoverLogDto>,
    /// Lines of the system's chatter (reminders, raises again, conditions cleared…) left
    /// out of `log`.
    pub chatter_left_out: usize,
}

fn open_statuses() -> Vec<Status> {
    vec![Status::New, Status::Acknowledged, Status::InProgress]
}

/// The communes a note of this caller is for (empty: the whole territory).
fn note_communes(scope: &Scope) -> Vec<beffroi_core::CommuneIdx> {
    match scope {
        Scope::Communes(l) => l.clone(),
        Scope::Territory | Scope::Nothing => Vec::new(),
    }
}

#[utoipa::path(get, path = "/api/v1/handover", params(HandoverParams),
    responses((status = 200, body = HandoverDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn handover(
    State(s): State<AppState>,
    c: Caller,
    Query(p): Query<HandoverParams>,
) -> Result<Json<HandoverDto>, ApiError> {
    let now = s.engine.clock.now();
    let since = match p.since.as_deref() {
        None => now.minus(Duration::from_mins(8 * 60)),
        Some(text) => beffroi_wire::parse_rfc3339(text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`since` is not an RFC 3339 time: `{text}`"),
            )
        })?,
    };
    let incidents = c.incidents(&s);
    let t = Arc::clone(&s.engine.territory);
    let ops = s.engine.ops();
    let events = s.engine.events();
    let scope = c.scope.clone();
    let me = c.principal.name.clone();
    blocking(move || {
        let mut open = incidents
            .list(IncidentQuery {
                statuses: open_statuses(),
                limit: MAX_OPEN,
                ..Default::default()
            })
            .map_err(store_err)?;
        open.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.opened_at.cmp(&b.opened_at))
        });
        let situation_of: std::collections::HashMap<IncidentId, beffroi_core::SituationId> = ops
            .situations
            .iter()
            .filter(|x| x.closed_at.is_none())
            .flat_map(|x| x.members.iter().map(move |m| (m.incident, x.id)))
            .collect();
        let groups = core_handover::group_open(&open, |id| situation_of.get(&id).copied())
            .iter()
            .map(|g| {
                let commune = t.commune(g.key.commune);
                IncidentGroupDto {
                    situation: g.key.situation.map(|x| x.0),
                    category: g.key.category.to_string(),
                    commune: commune.id.to_string(),
                    commune_name: commune.name.to_string(),
                    worst: g.worst().as_str().into(),
                    incidents: g
                        .incidents
                        .iter()
                        .map(|i| IncidentDto::from_core(i, &t))
                        .collect(),
                }
            })
            .collect();
        let overdue_steps = open
            .iter()
            .flat_map(|i| {
                i.sop
                    .iter()
                    .enumerate()
                    .filter(|(_, st)| st.overdue(now))
                    .map(move |(n, st)| OverdueStepDto {
                        incident: i.id.0,
                        title: i.title_now().to_string(),
                        severity: i.severity.as_str().into(),
                        step: n,
                        text: st.text.to_string(),
                        due_at: st.due_at.map(|d| d.to_string()).unwrap_or_default(),
                    })
            })
            .collect();
        // The log of the visible incidents (cut in the query), without the chatter.
        let lines = incidents
            .handover_log(since, MAX_HANDOVER_LOG)
            .map_err(store_err)?;
        let mut ids: Vec<IncidentId> = lines.iter().map(|e| e.incident).collect();
        // Missions and crises name incidents too: one read for all.
        ids.extend(ops.units.iter().flat_map(|u| u.missions.iter().copied()));
        let nested = incidents.nested(&ids).map_err(store_err)?;
        let severity: HashMap<IncidentId, beffroi_core::Severity> =
            nested.visible.iter().map(|i| (i.id, i.severity)).collect();
        let total = lines.len();
        let log: Vec<HandoverLogDto> = lines
            .into_iter()
            .filter(|e| {
                severity
                    .get(&e.incident)
                    .is_some_and(|sev| core_handover::worth_handing_over(&e.entry, *sev))
            })
            .map(|e| HandoverLogDto {
                incident: e.incident.0,
                title: e.title,
                at: e.entry.at.to_string(),
                actor: e.entry.actor.to_string(),
                action: e.entry.action.to_string(),
                detail: e.entry.detail.to_string(),
                message: e.entry.message.as_ref().map(Into::into),
            })
            .collect();
        let engaged_units = ops
            .units
            .iter()
            .filter(|u| u.status == UnitStatus::Engaged && scope.sees(&u.spec.communes))
            .map(|u| EngagedUnitDto {
                id: u.spec.id.to_string(),
                name: u.spec.name.to_string(),
                kind: u.spec.kind.as_str().into(),
                missions: u
                    .missions
                    .iter()
                    .filter(|m| severity.contains_key(m))
                    .map(|m| m.0)
                    .collect(),
                since: u.updated_at.to_string(),
            })
            .collect();
        let active_crises = ops
            .crises
            .iter()
            .filter(|x| x.is_active() && scope.sees(&x.communes))
            .map(|x| HandoverCrisisDto {
                id: x.id.0,
                kind: x.kind.as_str().into(),
                title: x.title.to_string(),
                level: x.level,
                opened_at: x.opened_at.to_string(),
            })
            .collect();
        let active_events = events
            .iter()
            .filter(|v| v.event.status(now) == beffroi_core::EventStatus::Active)
            .map(|v| HandoverEventDto {
                id: v.event.id.to_string(),
                name: v.event.name.to_string(),
                starts_at: v.event.starts_at.to_string(),
                ends_at: v.event.ends_at.to_string(),
            })
            .collect();
        let shelved = crate::shelving::visible_shelves(&ops, incidents.visibility(), now, &t);
        let notes = core_handover::latest_notes(&ops.notes, |cs| scope.sees(cs), MAX_NOTES_SHOWN)
            .into_iter()
            .map(|n| HandoverNoteDto::from_core(n, &t, &me))
            .collect();
        Ok(Json(HandoverDto {
            since: since.to_string(),
            now: now.to_string(),
            timezone: t.timezone.as_deref().map(str::to_string),
            notes,
            groups,
            open_incidents: open.iter().map(|i| IncidentDto::from_core(i, &t)).collect(),
            overdue_steps,
            engaged_units,
            active_crises,
            active_events,
            shelved,
            chatter_left_out: total - log.len(),
            log,
        }))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
pub struct HandoverNoteRequest {
    /// What the incoming shift must know. Identifiers in it (plates, phone numbers,
    /// `[[names]]`…) are replaced by pseudonyms before it is stored.
    pub text: FreeText,
}

/// The API error of a refused note.
fn note_error(e: &ActError) -> ApiError {
    match e {
        ActError::Note(NoteError::NotFound) => not_found(),
        ActError::Note(n) => ApiError::new(ErrorCode::NoteEmpty, n.to_string()),
        other => ApiError::new(ErrorCode::StoreUnavailable, other.to_string()),
    }
}

/// A note that does not exist and one out of the caller's scope get the same answer.
fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NoteNotFound, "no such handover note")
}

fn answer(s: &AppState, n: &HandoverNote, me: &str) -> Response {
    let mut resp = Json(HandoverNoteDto::from_core(n, &s.engine.territory, me)).into_response();
    resp.extensions_mut().insert(AuditDetail(serde_json::json!({
        "note": n.id.0,
        "communes": n.communes.len(),
    })));
    resp
}

#[utoipa::path(post, path = "/api/v1/handover/notes", request_body = HandoverNoteRequest,
    responses((status = 200, body = HandoverNoteDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn write_note(
    State(s): State<AppState>,
    c: Caller,
    b: Result<Json<HandoverNoteRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = b.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    if req.text.is_blank() {
        return Err(ApiError::new(
            ErrorCode::NoteEmpty,
            "a handover note needs some text",
        ));
    }
    let text = req.text.scrub(&s).await?;
    let outcome = s
        .engine
        .ops_command(
            OpsCommand::WriteNote {
                communes: note_communes(&c.scope),
                text,
            },
            Actor::User(c.principal.name.clone().into()),
        )
        .await
        .map_err(|e| note_error(&e))?;
    match outcome {
        OpsOutcome::Note(n) => Ok(answer(&s, &n, &c.principal.name)),
        _ => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "unexpected answer of the engine",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/handover/notes/{id}/read", params(("id" = u64, Path)),
    responses((status = 200, body = HandoverNoteDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn read_note(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = id.parse::<u64>().map_err(|_| not_found())?;
    // Out of the caller's scope: the same answer as a note that does not exist.
    let visible = s
        .engine
        .ops()
        .notes
        .iter()
        .any(|n| n.id.0 == id && c.scope.sees(&n.communes));
    if !visible {
        return Err(not_found());
    }
    let outcome = s
        .engine
        .ops_command(
            OpsCommand::ReadNote(NoteId(id)),
            Actor::User(c.principal.name.clone().into()),
        )
        .await
        .map_err(|e| note_error(&e))?;
    match outcome {
        OpsOutcome::Note(n) => Ok(answer(&s, &n, &c.principal.name)),
        _ => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "unexpected answer of the engine",
        )),
    }
}
