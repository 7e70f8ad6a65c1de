//! Crisis mode: open a crisis, write in its log, change its level and role holders, close
//! it, and print its report (`GET /api/v1/crises/{id}/report?lang=fr|en`, for API clients:
//! times in UTC, said so; the console renders its own report from the crisis, at the
//! territory's local time).
//!
//! Opening a crisis attaches the incidents open in its communes at that moment.
//!
//! A crisis follows the incidents of its communes; a caller sees those its
//! [`crate::access::Visibility`] sees, in the crisis, its log and its report alike. The others
//! are counted (`hidden_incidents`), never named: their log lines are left out.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use beffroi_core::crisis::{
    Crisis, CrisisCommand, CrisisId, CrisisKind, CrisisLogKind, CrisisOpening, RoleSpec,
};
use beffroi_core::{Actor, Incident, IncidentId, Territory, Timestamp};
use beffroi_engine::runner::{OpsCommand, OpsOutcome};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::ToSchema;

use crate::AppState;
use crate::dto::IncidentDto;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::{Caller, ObjectKind};
use crate::scoped::Nested;
use crate::units::ops_error;

#[derive(Serialize, ToSchema)]
pub struct CrisisSummaryDto {
    pub id: u64,
    /// flood | snow | fire | other
    pub kind: String,
    pub title: String,
    /// Commune ids in scope; empty means the whole territory.
    pub communes: Vec<String>,
    /// 1 to 3
    pub level: u8,
    /// active | closed
    pub status: String,
    pub opened_at: String,
    pub opened_by: String,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
    /// Incidents of the crisis the caller may see.
    pub incident_count: usize,
    /// Incidents of the crisis the caller may not see (other communes, or `cyber` without
    /// `incident.cyber`): counted, not named.
    pub hidden_incidents: usize,
}

impl CrisisSummaryDto {
    /// The crisis as shown to a caller who sees the incidents `seen` says.
    pub fn from_core(c: &Crisis, t: &Territory, seen: &dyn Fn(IncidentId) -> bool) -> Self {
        let visible = c.incidents.iter().filter(|i| seen(**i)).count();
        CrisisSummaryDto {
            id: c.id.0,
            kind: c.kind.as_str().into(),
            title: c.title.to_string(),
            communes: c
                .communes
                .iter()
                .filter_map(|i| t.communes.get(i.get()))
                .map(|c| c.id.to_string())
                .collect(),
            level: c.level,
            status: if c.is_active() { "active" } else { "closed" }.into(),
            opened_at: c.opened_at.to_string(),
            opened_by: c.opened_by.to_string(),
            closed_at: c.closed_at.map(|t| t.to_string()),
            closed_by: c.closed_by.as_ref().map(ToString::to_string),
            incident_count: visible,
            hidden_incidents: c.incidents.len() - visible,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CrisisRoleDto {
    pub role: String,
    pub name: String,
    pub name_en: String,
    pub holder: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CrisisLogDto {
    pub at: String,
    pub actor: String,
    /// entry | incident | system
    pub kind: String,
    pub text: String,
    pub incident: Option<u64>,
    /// What a system or incident line says, for the console to render in the reader's
    /// language (`text` is its English rendering); absent for an operator's entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<crate::dto::MessageDto>,
}

#[derive(Serialize, ToSchema)]
pub struct CrisisDto {
    #[serde(flatten)]
    pub summary: CrisisSummaryDto,
    pub summary_text: Option<String>,
    pub roles: Vec<CrisisRoleDto>,
    pub log: Vec<CrisisLogDto>,
    pub incidents: Vec<IncidentDto>,
}

fn role_names<'a>(roles: &'a [RoleSpec], id: &str) -> Option<&'a RoleSpec> {
    roles.iter().find(|r| &*r.id == id)
}

impl CrisisDto {
    fn build(c: &Crisis, roles: &[RoleSpec], nested: &Nested, t: &Territory) -> Self {
        let seen = nested.ids();
        CrisisDto {
            summary: CrisisSummaryDto::from_core(c, t, &|i| seen.contains(&i)),
            summary_text: c.summary.as_deref().map(str::to_string),
            roles: c
                .roles
                .iter()
                .map(|r| {
                    let spec = role_names(roles, &r.role);
                    CrisisRoleDto {
                        role: r.role.to_string(),
                        name: spec.map_or_else(|| r.role.to_string(), |s| s.name.to_string()),
                        name_en: spec.map_or_else(|| r.role.to_string(), |s| s.name_en.to_string()),
                        holder: r.holder.as_deref().map(Into::into),
                    }
                })
                .collect(),
            log: c
                .log
                .iter()
                .filter(|e| e.incident.is_none_or(|i| seen.contains(&i)))
                .map(|e| CrisisLogDto {
                    at: e.at.to_string(),
                    actor: e.actor.to_string(),
                    kind: e.kind.as_str().into(),
                    text: e.text.to_string(),
                    incident: e.incident.map(|i| i.0),
                    message: e.message.as_ref().map(Into::into),
                })
                .collect(),
            incidents: nested
                .visible
                .iter()
                .map(|i| IncidentDto::from_core(i, t))
                .collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct OpenCrisisRequest {
    /// flood | snow | fire | other
    pub kind: String,
    pub title: crate::scrub::FreeText,
    /// Commune ids; empty or absent: the whole territory.
    #[serde(default)]
    pub communes: Vec<String>,
    /// 1 to 3 (default 1)
    pub level: Option<u8>,
}

#[derive(Deserialize, ToSchema)]
pub struct CrisisLogRequest {
    pub text: crate::scrub::FreeText,
}

#[derive(Deserialize, ToSchema)]
pub struct CrisisLevelRequest {
    pub level: u8,
}

#[derive(Deserialize, ToSchema)]
pub struct CrisisRoleRequest {
    /// A role id of `crisis.toml`.
    pub role: String,
    /// Who holds it; null or empty: vacant.
    pub holder: Option<crate::scrub::FreeText>,
}

#[derive(Deserialize, ToSchema)]
pub struct CloseCrisisRequest {
    #[serde(default)]
    pub summary: crate::scrub::FreeText,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CrisisListParams {
    /// active | closed (default: both)
    status: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ReportParams {
    /// fr (default) | en
    lang: Option<String>,
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))
}

/// The crisis with the incidents the caller may see, read from the store.
async fn detail(
    s: &AppState,
    c: &Caller,
    crisis: Arc<Crisis>,
) -> Result<Json<CrisisDto>, ApiError> {
    let incidents = c.incidents(s);
    let t = Arc::clone(&s.engine.territory);
    let roles = Arc::clone(&s.engine.ops().roles);
    blocking(move || {
        let ids: Vec<IncidentId> = crisis.incidents.iter().copied().collect();
        let nested = incidents.nested(&ids).map_err(store_err)?;
        Ok(Json(CrisisDto::build(&crisis, &roles, &nested, &t)))
    })
    .await
}

/// A command on crisis `id`, answered with the crisis once durable.
async fn on_crisis(
    s: &AppState,
    c: &Caller,
    id: u64,
    cmd: CrisisCommand,
) -> Result<Json<CrisisDto>, ApiError> {
    command(
        s,
        c,
        OpsCommand::Crisis {
            id: CrisisId(id),
            cmd,
        },
    )
    .await
}

async fn command(s: &AppState, c: &Caller, cmd: OpsCommand) -> Result<Json<CrisisDto>, ApiError> {
    match s
        .engine
        .ops_command(cmd, Actor::User(c.principal.name.clone().into()))
        .await
        .map_err(|e| ops_error(&e))?
    {
        OpsOutcome::Crisis(crisis) => detail(s, c, crisis).await,
        _ => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "unexpected answer of the engine",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/crises", request_body = OpenCrisisRequest,
    responses((status = 200, body = CrisisDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn open_crisis(
    State(s): State<AppState>,
    c: Caller,
    b: JsonBody<OpenCrisisRequest>,
) -> Result<Json<CrisisDto>, ApiError> {
    let req = body(b)?;
    let bad = |m: String| ApiError::new(ErrorCode::InvalidRequest, m);
    let kind = CrisisKind::parse(&req.kind).ok_or_else(|| {
        bad(format!(
            "unknown kind `{}`: expected flood, snow, fire or other",
            req.kind
        ))
    })?;
    let t = &s.engine.territory;
    let communes = req
        .communes
        .iter()
        .map(|c| {
            t.commune_id(c)
                .ok_or_else(|| bad(format!("no commune `{c}` in the territory")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Empty: the whole territory. The caller's scope must cover every commune opened.
    if !c.scope.covers(&communes) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "needs permission `crisis.manage` over every commune of the crisis",
        ));
    }
    let opening = CrisisOpening {
        kind,
        title: req.title.scrub(&s).await?,
        communes,
        level: req.level.unwrap_or(1),
    };
    command(&s, &c, OpsCommand::OpenCrisis(opening)).await
}

#[utoipa::path(get, path = "/api/v1/crises", params(CrisisListParams),
    responses((status = 200, body = [CrisisSummaryDto])), security(("bearer" = [])))]
pub async fn list_crises(
    State(s): State<AppState>,
    caller: Caller,
    Query(p): Query<CrisisListParams>,
) -> Result<Json<Vec<CrisisSummaryDto>>, ApiError> {
    let active = match p.status.as_deref() {
        None => None,
        Some("active") => Some(true),
        Some("closed") => Some(false),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown status `{other}`: expected active or closed"),
            ));
        }
    };
    let ops = s.engine.ops();
    // Newest first.
    let crises: Vec<Arc<Crisis>> = ops
        .crises
        .iter()
        .rev()
        .filter(|c| active.is_none_or(|a| c.is_active() == a))
        .filter(|c| caller.scope.sees(&c.communes))
        .cloned()
        .collect();
    let incidents = caller.incidents(&s);
    let t = Arc::clone(&s.engine.territory);
    blocking(move || {
        let ids: Vec<IncidentId> = crises
            .iter()
            .flat_map(|c| c.incidents.iter().copied())
            .collect();
        let seen: HashSet<IncidentId> = incidents.nested(&ids).map_err(store_err)?.ids();
        Ok(Json(
            crises
                .iter()
                .map(|c| CrisisSummaryDto::from_core(c, &t, &|i| seen.contains(&i)))
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/crises/{id}", params(("id" = u64, Path)),
    responses((status = 200, body = CrisisDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_crisis(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
) -> Result<Json<CrisisDto>, ApiError> {
    let crisis = s
        .engine
        .ops()
        .crisis(id)
        .cloned()
        .ok_or_else(|| ObjectKind::Crisis.not_found())?;
    detail(&s, &c, crisis).await
}

#[utoipa::path(post, path = "/api/v1/crises/{id}/log", params(("id" = u64, Path)),
    request_body = CrisisLogRequest,
    responses((status = 200, body = CrisisDto), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn crisis_log(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    b: JsonBody<CrisisLogRequest>,
) -> Result<Json<CrisisDto>, ApiError> {
    let req = body(b)?;
    let cmd = CrisisCommand::Log(req.text.scrub(&s).await?);
    on_crisis(&s, &c, id, cmd).await
}

#[utoipa::path(post, path = "/api/v1/crises/{id}/level", params(("id" = u64, Path)),
    request_body = CrisisLevelRequest,
    responses((status = 200, body = CrisisDto), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn crisis_level(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    b: JsonBody<CrisisLevelRequest>,
) -> Result<Json<CrisisDto>, ApiError> {
    let req = body(b)?;
    let cmd = CrisisCommand::Level(req.level);
    on_crisis(&s, &c, id, cmd).await
}

#[utoipa::path(post, path = "/api/v1/crises/{id}/roles", params(("id" = u64, Path)),
    request_body = CrisisRoleRequest,
    responses((status = 200, body = CrisisDto), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn crisis_role(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    b: JsonBody<CrisisRoleRequest>,
) -> Result<Json<CrisisDto>, ApiError> {
    let req = body(b)?;
    let holder = match req.holder {
        Some(h) => Some(h.scrub(&s).await?),
        None => None,
    };
    let cmd = CrisisCommand::Role {
        role: req.role.into(),
        holder,
    };
    on_crisis(&s, &c, id, cmd).await
}

#[utoipa::path(post, path = "/api/v1/crises/{id}/close", params(("id" = u64, Path)),
    request_body = CloseCrisisRequest,
    responses((status = 200, body = CrisisDto), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn close_crisis(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    b: JsonBody<CloseCrisisRequest>,
) -> Result<Json<CrisisDto>, ApiError> {
    let req = body(b)?;
    let cmd = CrisisCommand::Close {
        summary: req.summary.scrub(&s).await?,
    };
    on_crisis(&s, &c, id, cmd).await
}

#[utoipa::path(get, path = "/api/v1/crises/{id}/report", params(("id" = u64, Path), ReportParams),
    responses((status = 200, description = "text/html: the printable report"),
        (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn crisis_report(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    Query(p): Query<ReportParams>,
) -> Result<Response, ApiError> {
    let en = match p.lang.as_deref() {
        None | Some("fr") => false,
        Some("en") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown language `{other}`: expected fr or en"),
            ));
        }
    };
    let ops = s.engine.ops();
    let crisis = ops
        .crisis(id)
        .cloned()
        .ok_or_else(|| ObjectKind::Crisis.not_found())?;
    let roles = Arc::clone(&ops.roles);
    let incidents = c.incidents(&s);
    let t = Arc::clone(&s.engine.territory);
    let now = s.engine.clock.now();
    let html = blocking(move || {
        let ids: Vec<IncidentId> = crisis.incidents.iter().copied().collect();
        let nested = incidents.nested(&ids).map_err(store_err)?;
        Ok(report_html(&crisis, &roles, &nested, &t, en, now))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

/// Escapes text for HTML element content and attribute values (one function for every
/// page the server renders).
pub use beffroi_dpo::html::escape;

/// `2026-11-26 12:00:00 UTC`
fn when(t: Timestamp) -> String {
    let s = t.to_string();
    format!("{} {} UTC", &s[..10], &s[11..19])
}

/// Who acted, as people read it: the account's name, the system, a rule.
fn person(a: &Actor, en: bool) -> String {
    match a {
        Actor::User(u) => u.strip_prefix("token:").unwrap_or(u).to_string(),
        Actor::Rule(r) => format!("{} {r}", if en { "Rule" } else { "Règle" }),
        Actor::System => if en { "System" } else { "Système" }.to_string(),
    }
}

fn severity_label(s: beffroi_core::Severity, en: bool) -> &'static str {
    use beffroi_core::Severity::*;
    match (s, en) {
        (Critical, false) => "Critique",
        (Major, false) => "Majeur",
        (Minor, false) => "Mineur",
        (Info, _) => "Info",
        (Critical, true) => "Critical",
        (Major, true) => "Major",
        (Minor, true) => "Minor",
    }
}

fn status_label(s: beffroi_core::Status, en: bool) -> &'static str {
    use beffroi_core::Status::*;
    match (s, en) {
        (New, false) => "Nouveau",
        (Acknowledged, false) => "Pris en compte",
        (InProgress, false) => "En cours",
        (Resolved, false) => "Résolu",
        (Closed, false) => "Clos",
        (New, true) => "New",
        (Acknowledged, true) => "Acknowledged",
        (InProgress, true) => "In progress",
        (Resolved, true) => "Resolved",
        (Closed, true) => "Closed",
    }
}

const REPORT_CSS: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#111;max-width:60rem}\
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;border-bottom:2px solid #333;margin-top:1.6rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border:1px solid #999;padding:.25rem .4rem;text-align:left;vertical-align:top}\
th{background:#eee}.meta td:first-child{font-weight:bold;width:14rem}.k-entry{background:#fffbe6}.k-system{background:#eef4ff}\
.muted{color:#555;font-size:.85rem}\
@media print{body{margin:0;max-width:none}h2{break-after:avoid}tr{break-inside:avoid}.noprint{display:none}@page{size:A4;margin:15mm}}";

fn report_html(
    c: &Crisis,
    roles: &[RoleSpec],
    nested: &Nested,
    t: &Territory,
    en: bool,
    now: Timestamp,
) -> String {
    let incidents: &[Incident] = &nested.visible;
    let seen = nested.ids();
    let tr = |fr: &'static str, english: &'static str| if en { english } else { fr };
    let kind = match (c.kind, en) {
        (CrisisKind::Flood, false) => "Inondation",
        (CrisisKind::Snow, false) => "Neige",
        (CrisisKind::Fire, false) => "Incendie",
        (CrisisKind::Other, false) => "Autre",
        (CrisisKind::Flood, true) => "Flood",
        (CrisisKind::Snow, true) => "Snow",
        (CrisisKind::Fire, true) => "Fire",
        (CrisisKind::Other, true) => "Other",
    };
    let scope = if c.communes.is_empty() {
        tr("Tout le territoire", "Whole territory").to_string()
    } else {
        c.communes
            .iter()
            .filter_map(|i| t.communes.get(i.get()))
            .map(|c| c.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut h = String::new();
    let lang = if en { "en" } else { "fr" };
    let title = format!(
        "{} {} — {}",
        tr("Rapport de crise", "Crisis report"),
        c.id.0,
        c.title
    );
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{}</title><style>{REPORT_CSS}</style></head><body>",
        escape(&title)
    );
    let _ = write!(h, "<h1>{}</h1>", escape(&title));
    let _ = write!(
        h,
        "<p class=\"muted\">{} {}</p>",
        tr("Édité le", "Printed on"),
        escape(&when(now))
    );
    let status = if c.is_active() {
        tr("Active", "Active")
    } else {
        tr("Clôturée", "Closed")
    };
    let rows: [(&str, String); 8] = [
        (tr("Type", "Kind"), kind.to_string()),
        (tr("Périmètre", "Scope"), scope),
        (
            tr("Niveau", "Level"),
            format!(
                "{} — {}",
                c.level,
                match (c.level, en) {
                    (1, false) => "Veille",
                    (2, false) => "Alerte",
                    (_, false) => "Crise majeure",
                    (1, true) => "Watch",
                    (2, true) => "Alert",
                    (_, true) => "Major crisis",
                }
            ),
        ),
        (tr("État", "Status"), status.to_string()),
        (tr("Ouverte le", "Opened at"), when(c.opened_at)),
        (tr("Ouverte par", "Opened by"), person(&c.opened_by, en)),
        (
            tr("Clôturée le", "Closed at"),
            c.closed_at.map(when).unwrap_or_default(),
        ),
        (
            tr("Clôturée par", "Closed by"),
            c.closed_by
                .as_ref()
                .map(|a| person(a, en))
                .unwrap_or_default(),
        ),
    ];
    h.push_str("<table class=\"meta\">");
    for (k, v) in rows {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(&v));
    }
    h.push_str("</table>");

    let _ = write!(h, "<h2>{}</h2>", tr("Synthèse", "Summary"));
    let _ = write!(
        h,
        "<p>{}</p>",
        escape(c.summary.as_deref().unwrap_or(tr("(aucune)", "(none)")))
    );

    let _ = write!(
        h,
        "<h2>{}</h2><table><tr><th>{}</th><th>{}</th></tr>",
        tr("Rôles du PCS", "Safeguard plan roles"),
        tr("Rôle", "Role"),
        tr("Titulaire", "Holder")
    );
    for r in &c.roles {
        let name = role_names(roles, &r.role)
            .map(|s| if en { &s.name_en } else { &s.name })
            .map_or_else(|| r.role.to_string(), |n| n.to_string());
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&name),
            escape(r.holder.as_deref().unwrap_or(tr("(vacant)", "(vacant)")))
        );
    }
    h.push_str("</table>");

    let log_table = |h: &mut String, heading: &str, filter: &dyn Fn(CrisisLogKind) -> bool| {
        let _ = write!(
            h,
            "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            escape(heading),
            tr("Heure", "Time"),
            tr("Auteur", "Author"),
            tr("Entrée", "Entry")
        );
        let shown = c
            .log
            .iter()
            .filter(|e| filter(e.kind) && e.incident.is_none_or(|i| seen.contains(&i)));
        for e in shown {
            let _ = write!(
                h,
                "<tr class=\"k-{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.kind.as_str(),
                escape(&when(e.at)),
                escape(&person(&e.actor, en)),
                escape(&e.text)
            );
        }
        h.push_str("</table>");
    };
    log_table(&mut h, tr("Main courante", "Timeline"), &|k| {
        k != CrisisLogKind::Incident
    });
    log_table(
        &mut h,
        tr("Actions sur les incidents", "Incident actions"),
        &|k| k == CrisisLogKind::Incident,
    );

    let _ = write!(
        h,
        "<h2>{}</h2><table><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        tr("Incidents", "Incidents"),
        tr("Titre", "Title"),
        tr("Gravité", "Severity"),
        tr("État", "Status"),
        tr("Commune", "Commune"),
        tr("Unité", "Unit"),
        tr("Ouvert", "Opened"),
        tr("Résolu", "Resolved"),
    );
    for i in incidents {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.id,
            escape(&i.title_now()),
            escape(severity_label(i.severity, en)),
            escape(status_label(i.status, en)),
            escape(&t.commune(i.commune).name),
            escape(i.owner.as_deref().unwrap_or("")),
            escape(&when(i.opened_at)),
            escape(&i.resolved_at.map(when).unwrap_or_default()),
        );
    }
    h.push_str("</table>");
    if nested.hidden > 0 {
        let _ = write!(
            h,
            "<p class=\"muted\">{} {}</p>",
            nested.hidden,
            tr(
                "incident(s) hors de votre périmètre ne sont pas montrés.",
                "incident(s) outside your scope are not shown."
            )
        );
    }
    let _ = write!(
        h,
        "<p class=\"noprint\">{}</p></body></html>",
        tr(
            "Pour imprimer ou enregistrer en PDF : Ctrl+P.",
            "To print or save as PDF: Ctrl+P."
        )
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
