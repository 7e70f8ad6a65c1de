//! Purpose-bound unmasking (ADR 0018 (`docs/adr/0018-aggregates-and-purpose-bound-unmasking.md`)):
//! `POST /api/v1/incidents/{id}/unmask` returns the value behind one pseudonym, once.
//!
//! Conditions, all checked here (the route's guard has already checked the permission
//! `personal.unmask` and that the incident is in the caller's scope):
//! - a declared purpose (one of [`UnmaskPurpose`]) and a justification of at least
//!   [`MIN_JUSTIFICATION`] characters, else **403 `purpose_required`**;
//! - the pseudonym occurs in *that* incident: its title, evidence or log, or an observation
//!   of its device between one hour before the opening and the closing (or now), else
//!   **404 `not_in_incident`**;
//! - the pseudonym's key epoch still exists, else **410 `key_destroyed`** (and a purged or
//!   erased identity answers **410 `identity_erased`**).
//!
//! Every attempt is audited by the guard (action `personal.unmask`, outcome ok / denied /
//! failed) with this handler's detail attached ([`AuditDetail`]): pseudonym, purpose,
//! justification, and the reason of a refusal — never the value. The answer carries
//! `Cache-Control: no-store`; the value is never logged.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use beffroi_core::privacy::UnmaskPurpose;
use beffroi_core::{Incident, IncidentId, LogEntry, Timestamp, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::Caller;

/// Shortest accepted justification, in characters.
pub const MIN_JUSTIFICATION: usize = 15;
/// Longest accepted justification, in characters.
pub const MAX_JUSTIFICATION: usize = 2000;
/// How long before an incident's opening its device's observations still belong to it.
pub const BEFORE_OPENING_MS: i64 = 3_600_000;

pub use crate::routes::AuditDetail;

#[derive(Deserialize, ToSchema)]
pub struct UnmaskRequest {
    /// The pseudonym, as shown in the incident (`plate:3:k7f3qx2mn4pz7qab3c9d`).
    #[serde(default)]
    pub pseudonym: Option<String>,
    /// incident_response | judicial_requisition | subject_request
    #[serde(default)]
    pub purpose: Option<String>,
    /// Why, in at least 15 characters (a requisition number, the facts).
    #[serde(default)]
    pub justification: Option<crate::scrub::FreeText>,
}

#[derive(Serialize, ToSchema)]
pub struct UnmaskResponse {
    pub pseudonym: String,
    /// The value in clear. Show it once; do not store it.
    pub value: String,
    pub purpose: String,
    pub incident_id: u64,
}

/// Checks the purpose and the justification; the refusal reason otherwise.
pub fn check_purpose(
    purpose: Option<&str>,
    justification: Option<&str>,
) -> Result<UnmaskPurpose, String> {
    let all: Vec<_> = UnmaskPurpose::ALL.iter().map(|p| p.as_str()).collect();
    let purpose = match purpose.map(str::trim) {
        None | Some("") => return Err(format!("a purpose is required ({})", all.join(", "))),
        // The input is never repeated: it could be anything a user typed.
        Some(p) => UnmaskPurpose::parse(p)
            .ok_or_else(|| format!("unknown purpose ({})", all.join(", ")))?,
    };
    let n = justification.map_or(0, |j| j.trim().chars().count());
    if n < MIN_JUSTIFICATION {
        return Err(format!(
            "a justification of at least {MIN_JUSTIFICATION} characters is required"
        ));
    }
    if n > MAX_JUSTIFICATION {
        return Err(format!(
            "the justification is longer than {MAX_JUSTIFICATION} characters"
        ));
    }
    Ok(purpose)
}

/// Whether `pseudonym` occurs in the incident: title, evidence, the log entries written by
/// its rule or the system, or (given) one of its device's observations within the
/// incident's window. Entries written by people do not count: pasting a pseudonym seen
/// elsewhere into a comment must not make it unmaskable here. Whole-token match: a
/// pseudonym is never matched inside a longer one.
pub fn occurs_in(pseudonym: &str, i: &Incident, log: &[LogEntry]) -> bool {
    let has = |text: &str| {
        text.match_indices(pseudonym).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + pseudonym.len()..].chars().next();
            let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == ':'));
            boundary(before) && boundary(after)
        })
    };
    has(&i.title)
        || has(&i.evidence)
        || log
            .iter()
            .any(|e| !matches!(e.actor, beffroi_core::Actor::User(_)) && has(&e.detail))
}

/// The window of an incident's device observations that belong to it: from an hour before
/// it opened until it was resolved (what a resolved incident's device reads afterwards is
/// not the incident's, even while nobody has closed it), or closed, or now.
pub fn window(i: &Incident, now: Timestamp) -> (Timestamp, Timestamp) {
    (
        Timestamp(i.opened_at.0 - BEFORE_OPENING_MS),
        i.resolved_at.or(i.closed_at).unwrap_or(now),
    )
}

/// Most values one caller may unmask in 24 hours; the next attempt is refused
/// (`unmask_limit`) and recorded as `personal.unmask.limit` for the DPO.
pub const DAILY_UNMASKS: usize = 20;
const DAY_MS: i64 = 86_400_000;

/// Unmaskings per caller in the last 24 hours (in memory: a restart forgets them, the
/// audit log keeps every one).
#[derive(Default)]
pub struct Budget {
    used: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<i64>>>,
}

impl Budget {
    /// Takes one unmasking for `who` at `now`, or says how many were used.
    pub fn take(&self, who: &str, now: Timestamp) -> Result<(), usize> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let q = used.entry(who.to_string()).or_default();
        while q.front().is_some_and(|t| now.0 - *t >= DAY_MS) {
            q.pop_front();
        }
        if q.len() >= DAILY_UNMASKS {
            return Err(q.len());
        }
        q.push_back(now.0);
        Ok(())
    }

    /// Gives back an unmasking that did not reveal anything (refused further on).
    pub fn give_back(&self, who: &str) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = used.get_mut(who) {
            q.pop_back();
        }
    }
}

fn refuse(code: ErrorCode, reason: String, detail: serde_json::Value) -> Response {
    let mut d = detail;
    d["reason"] = serde_json::Value::String(reason.clone());
    d["code"] = serde_json::Value::String(code.as_str().into());
    let mut resp = ApiError::new(code, reason).into_response();
    resp.extensions_mut().insert(AuditDetail(d));
    no_store(&mut resp);
    resp
}

fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/unmask", params(("id" = u64, Path)),
    request_body = UnmaskRequest,
    responses(
        (status = 200, body = UnmaskResponse, description = "The value, once; `Cache-Control: no-store`"),
        (status = 403, body = crate::error::ErrorBody, description = "`purpose_required`, or the role lacks `personal.unmask`"),
        (status = 404, body = crate::error::ErrorBody, description = "`not_in_incident`"),
        (status = 410, body = crate::error::ErrorBody, description = "`key_destroyed` or `identity_erased`")),
    security(("bearer" = [])))]
pub async fn unmask(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<u64>,
    body: Result<Json<UnmaskRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            // serde's message may quote what was sent: the audit gets the status only.
            let mut d = serde_json::json!({"incident_id": id, "reason": "invalid JSON body",
                "code": ErrorCode::InvalidRequest.as_str()});
            let mut resp = ApiError::new(ErrorCode::InvalidRequest, e.body_text()).into_response();
            resp.extensions_mut().insert(AuditDetail(d.take()));
            no_store(&mut resp);
            return resp;
        }
    };
    let pseudonym = req.pseudonym.as_deref().map(str::trim).unwrap_or_default();
    let justification = match &req.justification {
        Some(j) => match j.scrub(&s).await {
            Ok(j) => Some(j),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    // Only what parses is recorded: a plate typed in the wrong box must not reach the
    // audit log.
    let mut detail = serde_json::json!({
        "incident_id": id,
        "pseudonym": if beffroi_privacy::parse_pseudonym(pseudonym).is_some() { pseudonym } else { "<invalid>" },
        "purpose": req.purpose.as_deref().and_then(|p| UnmaskPurpose::parse(p.trim())).map_or("<invalid>", |p| p.as_str()),
        // Bounded in the audit record whatever was sent.
        "justification": justification.as_deref().map(|j| j.chars().take(MAX_JUSTIFICATION).collect::<String>()),
    });
    let purpose = match check_purpose(req.purpose.as_deref(), justification.as_deref()) {
        Ok(p) => p,
        Err(reason) => return refuse(ErrorCode::PurposeRequired, reason, detail),
    };
    if beffroi_privacy::parse_pseudonym(pseudonym).is_none() {
        return refuse(
            ErrorCode::NotInIncident,
            "not a pseudonym of this incident".into(),
            detail,
        );
    }
    // Find the pseudonym in the incident, then its sealed value.
    let reader = Arc::clone(&s.reader);
    let incidents = c.incidents(&s);
    let now = s.engine.clock.now();
    // The volume is bounded per caller; reaching the bound alerts the DPO (the audit log's
    // `personal.unmask.limit`, which the DPO's access log lists).
    if let Err(used) = s.unmask_budget.take(&c.principal.name, now) {
        s.audit.record(beffroi_core::AuditRecord {
            at_ms: crate::routes::wall_ms(),
            actor: crate::scrub::audit_text(&s, &c.principal.name),
            action: "personal.unmask.limit".into(),
            target: Some(beffroi_core::safe_format!("{id}")),
            outcome: beffroi_core::AuditOutcome::Denied,
            detail: beffroi_core::safe_format!(
                "{}",
                serde_json::json!({"unmasked_in_24h": used, "limit": DAILY_UNMASKS})
            ),
        });
        tracing::warn!(
            unmasked_in_24h = used,
            "unmasking limit reached: refused, recorded for the DPO"
        );
        return refuse(
            ErrorCode::UnmaskLimit,
            format!(
                "{used} values unmasked in 24 hours, the most allowed: ask the DPO (this \
                 attempt is recorded)"
            ),
            detail,
        );
    }
    let p = pseudonym.to_string();
    let found = blocking(move || {
        let Some((i, log)) = incidents.with_log(IncidentId(id)).map_err(store_err)? else {
            return Ok(None);
        };
        let mut inside = occurs_in(&p, &i, &log);
        if !inside && let Some(d) = i.device {
            let (from, to) = window(&i, now);
            inside = reader
                .observations(d, from, 100_000)
                .map_err(store_err)?
                .iter()
                .any(|o| o.time <= to && matches!(&o.value, Value::Text(t) if **t == *p));
        }
        if !inside {
            return Ok(None);
        }
        Ok(Some(reader.identity(&p).map_err(store_err)?))
    })
    .await;
    let identity = match found {
        Ok(Some(identity)) => identity,
        Ok(None) => {
            s.unmask_budget.give_back(&c.principal.name);
            return refuse(
                ErrorCode::NotInIncident,
                format!("the pseudonym does not occur in incident {id}"),
                detail,
            );
        }
        Err(e) => return e.into_response(),
    };
    let Some(identity) = identity else {
        return refuse(
            ErrorCode::IdentityErased,
            "the value behind this pseudonym was purged or erased".into(),
            detail,
        );
    };
    let opened = match s.pseudonymiser.as_deref() {
        Some(ps) => ps.open(&identity.pseudonym, &identity.sealed),
        None => Err(beffroi_privacy::PrivacyError::NoKey(identity.epoch)),
    };
    let value = match opened {
        Ok(v) => v,
        Err(beffroi_privacy::PrivacyError::NoKey(epoch)) => {
            return refuse(
                ErrorCode::KeyDestroyed,
                format!(
                    "the key of epoch {epoch} was destroyed: this pseudonym can no longer be linked"
                ),
                detail,
            );
        }
        Err(e) => {
            return refuse(ErrorCode::StoreUnavailable, e.to_string(), detail);
        }
    };
    detail["identifier"] = serde_json::Value::String(identity.identifier.clone());
    detail["epoch"] = serde_json::json!(identity.epoch);
    let mut resp = Json(UnmaskResponse {
        pseudonym: identity.pseudonym,
        value,
        purpose: purpose.as_str().into(),
        incident_id: id,
    })
    .into_response();
    resp.extensions_mut().insert(AuditDetail(detail));
    no_store(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purpose_and_justification() {
        assert!(check_purpose(None, Some("a long enough reason")).is_err());
        assert!(check_purpose(Some("curiosity"), Some("a long enough reason")).is_err());
        assert!(check_purpose(Some("incident_response"), Some("too short")).is_err());
        assert!(check_purpose(Some("incident_response"), Some("   padded        ")).is_err());
        assert_eq!(
            check_purpose(
                Some("judicial_requisition"),
                Some("Réquisition n° 2026/1142")
            ),
            Ok(UnmaskPurpose::JudicialRequisition)
        );
    }

    #[test]
    fn a_pseudonym_occurs_only_as_a_whole_token() {
        let t = beffroi_core::territory::fixture::small();
        let p = "plate:2:abcdefghijklmnopqrst";
        let mut i = Incident {
            id: IncidentId(1),
            key: beffroi_core::DedupKey("k@site:s1".into()),
            rule: "r".into(),
            category: "c".into(),
            severity: beffroi_core::Severity::Major,
            status: beffroi_core::Status::New,
            title: "t".into(),
            commune: t.commune_id("c1").expect("fixture"),
            site: t.site_id("s1").expect("fixture"),
            device: None,
            position: beffroi_core::Point::new(5.0, 47.0),
            opened_at: Timestamp(0),
            updated_at: Timestamp(0),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: None,
            condition_active: true,
            alarm_count: 1,
            evidence: beffroi_core::safe_format!("badge {p}x and {p}:9"),
            sop_title: None,
            sop: vec![],
            reminded_at: None,
            escalated_at: None,
        };
        assert!(!occurs_in(p, &i, &[]), "inside longer tokens");
        i.evidence = beffroi_core::safe_format!("vu: {p}, porte B");
        assert!(occurs_in(p, &i, &[]));
        i.evidence = beffroi_core::SafeText::default();
        let log = [LogEntry {
            at: Timestamp(0),
            actor: beffroi_core::Actor::System,
            action: "comment".into(),
            detail: beffroi_core::safe_format!("({p})"),
        }];
        assert!(occurs_in(p, &i, &log));
    }
}
