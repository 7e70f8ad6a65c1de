//! Purpose-bound unmasking (ADR 0018 (`docs/adr/0018-aggregates-and-purpose-bound-unmasking.md`),
//! ADR 0025 (`docs/adr/0025-unmasking-bound-by-structure.md`)):
//! `POST /api/v1/incidents/{id}/unmask` returns the value behind one pseudonym, once.
//!
//! Conditions, all checked here (the route's guard has already checked the permission
//! `personal.unmask` and that the incident is in the caller's scope):
//! - a declared purpose (one of [`UnmaskPurpose`]) and a justification of at least
//!   [`MIN_JUSTIFICATION`] characters, else **403 `purpose_required`**;
//! - *that* incident carries the pseudonym: it was recorded from the reading that opened or
//!   raised it again (the personal values of that reading, and the pseudonyms ingest
//!   scrubbing put into its technical text). Its title, evidence and log never count,
//!   whatever rule template or comment put a pseudonym there; else **404 `not_in_incident`**;
//! - the pseudonym's key epoch still exists, else **410 `key_destroyed`** (and a purged or
//!   erased identity answers **410 `identity_erased`**).
//!
//! With a second approver (`[privacy] unmask_approval = "dpo"` or `"two_person"`), the same
//! request is only recorded (**202**, pending); another person approves it
//! (`POST /api/v1/unmask/requests/{id}/approve`) within the time limit, and the requester
//! then collects the value (`POST /api/v1/unmask/requests/{id}/reveal`), once. See
//! [`Approval`].
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
use beffroi_core::{CommuneIdx, Duration, Incident, IncidentId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::access::Permission;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::Caller;

/// Shortest accepted justification, in characters.
pub const MIN_JUSTIFICATION: usize = 15;
/// Longest accepted justification, in characters.
pub const MAX_JUSTIFICATION: usize = 2000;

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

// ---- the second approver ---------------------------------------------------------------

/// Who must approve an unmasking before its value is revealed (`[privacy] unmask_approval`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Approval {
    /// `none`: the value is revealed as soon as the conditions hold.
    #[default]
    None,
    /// `dpo`: a person holding the DPO's `privacy.subject` over the incident's commune.
    Dpo,
    /// `two_person`: another holder of `personal.unmask` over the incident's commune.
    TwoPerson,
}

impl Approval {
    pub const ALL: [Approval; 3] = [Approval::None, Approval::Dpo, Approval::TwoPerson];

    pub fn as_str(self) -> &'static str {
        match self {
            Approval::None => "none",
            Approval::Dpo => "dpo",
            Approval::TwoPerson => "two_person",
        }
    }

    pub fn parse(s: &str) -> Option<Approval> {
        Approval::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The permission an approver holds over the incident's commune.
    fn permission(self) -> Option<Permission> {
        match self {
            Approval::None => None,
            Approval::Dpo => Some(Permission::SubjectRequest),
            Approval::TwoPerson => Some(Permission::PersonalUnmask),
        }
    }
}

/// Default time limit: a request not approved within it expires, and an approved value not
/// collected within it after the approval too.
pub const DEFAULT_APPROVAL_WITHIN: Duration = Duration::from_mins(8 * 60);
/// Most requests kept at once (every caller's budget bounds them long before).
pub const MAX_REQUESTS: usize = 1000;

/// `[privacy] unmask_approval` and `unmask_approval_within`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalPolicy {
    pub approval: Approval,
    pub within: Duration,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            approval: Approval::None,
            within: DEFAULT_APPROVAL_WITHIN,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    Approved { by: String, at: Timestamp },
    Refused { by: String, at: Timestamp },
    Revealed { at: Timestamp },
    Expired,
}

impl RequestState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved { .. } => "approved",
            RequestState::Refused { .. } => "refused",
            RequestState::Revealed { .. } => "revealed",
            RequestState::Expired => "expired",
        }
    }
}

/// One unmasking waiting for (or past) its second approver.
#[derive(Clone, Debug)]
pub struct UnmaskRequestRecord {
    pub id: u64,
    pub incident: IncidentId,
    pub commune: CommuneIdx,
    pub category: String,
    pub pseudonym: String,
    pub purpose: UnmaskPurpose,
    pub justification: beffroi_core::SafeText,
    pub requester: String,
    pub requested_at: Timestamp,
    /// Pending: the approval's deadline; approved: the collection's deadline.
    pub expires_at: Timestamp,
    pub state: RequestState,
}

impl UnmaskRequestRecord {
    /// The state at `now`: a pending or approved request past its deadline has expired.
    fn state_at(&self, now: Timestamp) -> RequestState {
        match self.state {
            RequestState::Pending | RequestState::Approved { .. } if now > self.expires_at => {
                RequestState::Expired
            }
            ref s => s.clone(),
        }
    }

    fn audit(&self) -> serde_json::Value {
        serde_json::json!({
            "request_id": self.id,
            "incident_id": self.incident.0,
            "pseudonym": self.pseudonym,
            "purpose": self.purpose.as_str(),
            "requester": self.requester,
        })
    }
}

/// The unmasking requests (in memory: a restart forgets them and the requester asks again;
/// the audit log keeps every step).
#[derive(Default)]
pub struct Requests {
    pub policy: ApprovalPolicy,
    inner: std::sync::Mutex<(u64, std::collections::BTreeMap<u64, UnmaskRequestRecord>)>,
}

impl Requests {
    pub fn new(policy: ApprovalPolicy) -> Self {
        Requests {
            policy,
            inner: Default::default(),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, (u64, std::collections::BTreeMap<u64, UnmaskRequestRecord>)>
    {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a request and gives it an id; `None` when too many are kept. Requests past
    /// their deadline by another time limit are forgotten first.
    fn add(&self, mut r: UnmaskRequestRecord, now: Timestamp) -> Option<UnmaskRequestRecord> {
        let within = self.policy.within;
        let mut g = self.lock();
        g.1.retain(|_, x| now.since(x.expires_at) <= within);
        if g.1.len() >= MAX_REQUESTS {
            return None;
        }
        g.0 += 1;
        r.id = g.0;
        g.1.insert(r.id, r.clone());
        Some(r)
    }

    fn get(&self, id: u64) -> Option<UnmaskRequestRecord> {
        self.lock().1.get(&id).cloned()
    }

    /// Applies `f` to request `id` under the lock.
    fn update<T>(&self, id: u64, f: impl FnOnce(&mut UnmaskRequestRecord) -> T) -> Option<T> {
        self.lock().1.get_mut(&id).map(f)
    }

    fn all(&self) -> Vec<UnmaskRequestRecord> {
        self.lock().1.values().rev().cloned().collect()
    }
}

/// Whether `c` may approve `r`: not its requester, and holding the approver's permission
/// over the incident's commune with the incident's category visible there.
fn can_approve(policy: &ApprovalPolicy, c: &Caller, r: &UnmaskRequestRecord) -> bool {
    let Some(perm) = policy.approval.permission() else {
        return false;
    };
    let scope = c.principal.scope_for(perm);
    c.principal.name != r.requester
        && scope.covers(&[r.commune])
        && c.principal
            .visibility_for(&scope)
            .sees(r.commune, &r.category)
}

#[derive(Serialize, ToSchema)]
pub struct UnmaskPendingResponse {
    pub request_id: u64,
    /// `pending`
    pub status: String,
    /// `dpo` | `two_person`: who must approve.
    pub approval: String,
    pub incident_id: u64,
    pub pseudonym: String,
    /// The approval's deadline.
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct UnmaskRequestDto {
    pub id: u64,
    pub incident_id: u64,
    pub pseudonym: String,
    pub purpose: String,
    pub justification: String,
    pub requester: String,
    pub requested_at: String,
    /// Pending: the approval's deadline; approved: the deadline to collect the value.
    pub expires_at: String,
    /// pending | approved | refused | revealed | expired
    pub status: String,
    /// Who approved or refused it.
    pub decided_by: Option<String>,
    /// The caller made it (and collects the value once approved).
    pub mine: bool,
    /// The caller may approve or refuse it now.
    pub can_approve: bool,
}

#[derive(Serialize, ToSchema)]
pub struct UnmaskRequestsDto {
    /// none | dpo | two_person
    pub approval: String,
    pub within_s: i64,
    /// Newest first: the caller's own requests and those it may decide.
    pub requests: Vec<UnmaskRequestDto>,
}

fn dto(
    policy: &ApprovalPolicy,
    c: &Caller,
    r: &UnmaskRequestRecord,
    now: Timestamp,
) -> UnmaskRequestDto {
    let state = r.state_at(now);
    UnmaskRequestDto {
        id: r.id,
        incident_id: r.incident.0,
        pseudonym: r.pseudonym.clone(),
        purpose: r.purpose.as_str().into(),
        justification: r.justification.to_string(),
        requester: r.requester.clone(),
        requested_at: r.requested_at.to_string(),
        expires_at: r.expires_at.to_string(),
        status: state.as_str().into(),
        decided_by: match &r.state {
            RequestState::Approved { by, .. } | RequestState::Refused { by, .. } => {
                Some(by.clone())
            }
            _ => None,
        },
        mine: r.requester == c.principal.name,
        can_approve: state == RequestState::Pending && can_approve(policy, c, r),
    }
}

// ---- handlers --------------------------------------------------------------------------

#[utoipa::path(post, path = "/api/v1/incidents/{id}/unmask", params(("id" = u64, Path)),
    request_body = UnmaskRequest,
    responses(
        (status = 200, body = UnmaskResponse, description = "The value, once; `Cache-Control: no-store`"),
        (status = 202, body = UnmaskPendingResponse, description = "With a second approver (`[privacy] unmask_approval`): recorded, pending; nothing revealed"),
        (status = 403, body = crate::error::ErrorBody, description = "`purpose_required`, or the role lacks `personal.unmask`"),
        (status = 404, body = crate::error::ErrorBody, description = "`not_in_incident`: the incident does not carry this pseudonym (title, evidence and log never count)"),
        (status = 410, body = crate::error::ErrorBody, description = "`key_destroyed` or `identity_erased`"),
        (status = 429, body = crate::error::ErrorBody, description = "`unmask_limit`")),
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
    let now = s.engine.clock.now();
    // The volume is bounded per caller; reaching the bound alerts the DPO (the audit log's
    // `personal.unmask.limit`, which the DPO's access log lists). With a second approver,
    // a request takes its unit when it is made.
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
    let incident = match carried(c.incidents(&s), IncidentId(id), pseudonym).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            s.unmask_budget.give_back(&c.principal.name);
            return refuse(
                ErrorCode::NotInIncident,
                format!("incident {id} does not carry this pseudonym"),
                detail,
            );
        }
        Err(e) => return e.into_response(),
    };
    let policy = s.unmask_requests.policy;
    if policy.approval == Approval::None {
        return reveal_now(&s, pseudonym, purpose, id, detail).await;
    }
    // A value that could not be revealed is not put before an approver.
    if let Err(resp) = open_value(&s, pseudonym, detail.clone()).await {
        return resp;
    }
    let record = UnmaskRequestRecord {
        id: 0,
        incident: IncidentId(id),
        commune: incident.commune,
        category: incident.category.to_string(),
        pseudonym: pseudonym.to_string(),
        purpose,
        justification: justification.unwrap_or_default(),
        requester: c.principal.name.clone(),
        requested_at: now,
        expires_at: now.plus(policy.within),
        state: RequestState::Pending,
    };
    let Some(record) = s.unmask_requests.add(record, now) else {
        s.unmask_budget.give_back(&c.principal.name);
        return refuse(
            ErrorCode::UnmaskLimit,
            "too many unmasking requests are pending: ask the approvers to decide".into(),
            detail,
        );
    };
    detail["stage"] = "requested".into();
    detail["request_id"] = record.id.into();
    detail["approval"] = policy.approval.as_str().into();
    let mut resp = (
        axum::http::StatusCode::ACCEPTED,
        Json(UnmaskPendingResponse {
            request_id: record.id,
            status: "pending".into(),
            approval: policy.approval.as_str().into(),
            incident_id: id,
            pseudonym: record.pseudonym,
            expires_at: record.expires_at.to_string(),
        }),
    )
        .into_response();
    resp.extensions_mut().insert(AuditDetail(detail));
    no_store(&mut resp);
    resp
}

/// The incident, when the caller may see it and it carries `pseudonym`.
async fn carried(
    incidents: crate::scoped::Incidents,
    id: IncidentId,
    pseudonym: &str,
) -> Result<Option<Incident>, ApiError> {
    let p = pseudonym.to_string();
    blocking(move || {
        let Some(i) = incidents.one(id).map_err(store_err)? else {
            return Ok(None);
        };
        Ok(incidents.carries(id, &p).map_err(store_err)?.then_some(i))
    })
    .await
}

/// The value behind `pseudonym`, or the refusal to answer (erased, key destroyed).
async fn open_value(
    s: &AppState,
    pseudonym: &str,
    detail: serde_json::Value,
) -> Result<(beffroi_engine::store::IdentityRow, String), Response> {
    let reader = Arc::clone(&s.reader);
    let p = pseudonym.to_string();
    let identity = match blocking(move || reader.identity(&p).map_err(store_err)).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Err(refuse(
                ErrorCode::IdentityErased,
                "the value behind this pseudonym was purged or erased".into(),
                detail,
            ));
        }
        Err(e) => return Err(e.into_response()),
    };
    let opened = match s.pseudonymiser.as_deref() {
        Some(ps) => ps.open(&identity.pseudonym, &identity.sealed),
        None => Err(beffroi_privacy::PrivacyError::NoKey(identity.epoch)),
    };
    match opened {
        Ok(v) => Ok((identity, v)),
        Err(beffroi_privacy::PrivacyError::NoKey(epoch)) => Err(refuse(
            ErrorCode::KeyDestroyed,
            format!(
                "the key of epoch {epoch} was destroyed: this pseudonym can no longer be linked"
            ),
            detail,
        )),
        Err(e) => Err(refuse(ErrorCode::StoreUnavailable, e.to_string(), detail)),
    }
}

/// Opens the value and answers it, once, not cached, audited without it.
async fn reveal_now(
    s: &AppState,
    pseudonym: &str,
    purpose: UnmaskPurpose,
    incident_id: u64,
    mut detail: serde_json::Value,
) -> Response {
    let (identity, value) = match open_value(s, pseudonym, detail.clone()).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    detail["identifier"] = serde_json::Value::String(identity.identifier.clone());
    detail["epoch"] = serde_json::json!(identity.epoch);
    let mut resp = Json(UnmaskResponse {
        pseudonym: identity.pseudonym,
        value,
        purpose: purpose.as_str().into(),
        incident_id,
    })
    .into_response();
    resp.extensions_mut().insert(AuditDetail(detail));
    no_store(&mut resp);
    resp
}

fn request_not_found(detail: serde_json::Value) -> Response {
    refuse(
        ErrorCode::UnmaskRequestNotFound,
        "no such unmasking request".into(),
        detail,
    )
}

#[utoipa::path(get, path = "/api/v1/unmask/requests",
    responses((status = 200, body = UnmaskRequestsDto, description = "The caller's own unmasking requests and those it may approve or refuse, newest first")),
    security(("bearer" = [])))]
pub async fn list_requests(State(s): State<AppState>, c: Caller) -> Response {
    let now = s.engine.clock.now();
    let policy = s.unmask_requests.policy;
    let requests = s
        .unmask_requests
        .all()
        .iter()
        .filter(|r| r.requester == c.principal.name || can_approve(&policy, &c, r))
        .map(|r| dto(&policy, &c, r, now))
        .collect();
    let mut resp = Json(UnmaskRequestsDto {
        approval: policy.approval.as_str().into(),
        within_s: policy.within.millis() / 1000,
        requests,
    })
    .into_response();
    no_store(&mut resp);
    resp
}

/// Approve or refuse.
async fn decide(s: AppState, c: Caller, id: String, approve: bool) -> Response {
    let now = s.engine.clock.now();
    let policy = s.unmask_requests.policy;
    let mut detail = serde_json::json!({"request_id": id});
    let Some(r) = id
        .parse::<u64>()
        .ok()
        .and_then(|n| s.unmask_requests.get(n))
    else {
        return request_not_found(detail);
    };
    detail = r.audit();
    if r.requester == c.principal.name {
        return refuse(
            ErrorCode::SelfApproval,
            "the requester cannot approve or refuse their own unmasking request".into(),
            detail,
        );
    }
    let Some(perm) = policy.approval.permission() else {
        return request_not_found(detail);
    };
    if c.principal.scope_for(perm).is_nothing() {
        return refuse(
            ErrorCode::ApproverRequired,
            format!(
                "an unmasking is approved by {} (needs `{}`)",
                match policy.approval {
                    Approval::Dpo => "the DPO",
                    _ => "another holder of the permission",
                },
                perm.as_str()
            ),
            detail,
        );
    }
    // Out of the approver's scope and missing: one answer.
    if !can_approve(&policy, &c, &r) {
        return request_not_found(detail);
    }
    let by = c.principal.name.clone();
    let within = policy.within;
    let outcome = s.unmask_requests.update(r.id, |r| match r.state_at(now) {
        RequestState::Pending => {
            if approve {
                r.state = RequestState::Approved { by, at: now };
                r.expires_at = now.plus(within);
            } else {
                r.state = RequestState::Refused { by, at: now };
            }
            Ok(r.clone())
        }
        RequestState::Expired => {
            r.state = RequestState::Expired;
            Err(ErrorCode::UnmaskRequestExpired)
        }
        _ => Err(ErrorCode::UnmaskRequestClosed),
    });
    match outcome {
        None => request_not_found(detail),
        Some(Err(code)) => refuse(
            code,
            if code == ErrorCode::UnmaskRequestExpired {
                "the request was not approved in time: ask again".into()
            } else {
                "the request was already decided".into()
            },
            detail,
        ),
        Some(Ok(r)) => {
            detail["stage"] = if approve { "approved" } else { "refused" }.into();
            let mut resp = Json(dto(&policy, &c, &r, now)).into_response();
            resp.extensions_mut().insert(AuditDetail(detail));
            no_store(&mut resp);
            resp
        }
    }
}

#[utoipa::path(post, path = "/api/v1/unmask/requests/{id}/approve", params(("id" = u64, Path)),
    responses(
        (status = 200, body = UnmaskRequestDto, description = "Approved: the requester may now collect the value (the approver never sees it)"),
        (status = 403, body = crate::error::ErrorBody, description = "`self_approval` (the requester's own), `approver_required` (`dpo`: needs `privacy.subject`)"),
        (status = 404, body = crate::error::ErrorBody, description = "`unmask_request_not_found` (missing, or out of the approver's scope)"),
        (status = 409, body = crate::error::ErrorBody, description = "`unmask_request_closed`: already decided"),
        (status = 410, body = crate::error::ErrorBody, description = "`unmask_request_expired`: not approved within the time limit")),
    security(("bearer" = [])))]
pub async fn approve(State(s): State<AppState>, c: Caller, Path(id): Path<String>) -> Response {
    decide(s, c, id, true).await
}

#[utoipa::path(post, path = "/api/v1/unmask/requests/{id}/refuse", params(("id" = u64, Path)),
    responses(
        (status = 200, body = UnmaskRequestDto, description = "Refused: nothing will be revealed"),
        (status = 403, body = crate::error::ErrorBody, description = "`self_approval`, `approver_required`"),
        (status = 404, body = crate::error::ErrorBody, description = "`unmask_request_not_found`"),
        (status = 409, body = crate::error::ErrorBody, description = "`unmask_request_closed`"),
        (status = 410, body = crate::error::ErrorBody, description = "`unmask_request_expired`")),
    security(("bearer" = [])))]
pub async fn refuse_request(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Response {
    decide(s, c, id, false).await
}

#[utoipa::path(post, path = "/api/v1/unmask/requests/{id}/reveal", params(("id" = u64, Path)),
    responses(
        (status = 200, body = UnmaskResponse, description = "The value, once, to the requester of an approved request; `Cache-Control: no-store`"),
        (status = 404, body = crate::error::ErrorBody, description = "`unmask_request_not_found` (missing, or not the caller's), `not_in_incident`"),
        (status = 409, body = crate::error::ErrorBody, description = "`unmask_pending` (not approved yet), `unmask_request_closed` (refused, or already revealed)"),
        (status = 410, body = crate::error::ErrorBody, description = "`unmask_request_expired`, `key_destroyed`, `identity_erased`")),
    security(("bearer" = [])))]
pub async fn reveal(State(s): State<AppState>, c: Caller, Path(id): Path<String>) -> Response {
    let now = s.engine.clock.now();
    let detail = serde_json::json!({"request_id": id});
    let Some(r) = id
        .parse::<u64>()
        .ok()
        .and_then(|n| s.unmask_requests.get(n))
    else {
        return request_not_found(detail);
    };
    let mut detail = r.audit();
    if r.requester != c.principal.name {
        return request_not_found(detail);
    }
    let approved_by = match r.state_at(now) {
        RequestState::Approved { by, .. } => by,
        RequestState::Pending => {
            return refuse(
                ErrorCode::UnmaskPending,
                "the request is waiting for its approver".into(),
                detail,
            );
        }
        RequestState::Expired => {
            s.unmask_requests
                .update(r.id, |r| r.state = RequestState::Expired);
            return refuse(
                ErrorCode::UnmaskRequestExpired,
                "the request expired: ask again".into(),
                detail,
            );
        }
        RequestState::Refused { .. } | RequestState::Revealed { .. } => {
            return refuse(
                ErrorCode::UnmaskRequestClosed,
                "the request was refused or its value already shown".into(),
                detail,
            );
        }
    };
    detail["approved_by"] = approved_by.into();
    detail["stage"] = "revealed".into();
    // Still carried, and still in the requester's scope for this permission.
    let scope = c.principal.scope_for(Permission::PersonalUnmask);
    let incidents = crate::scoped::Incidents::new(
        Arc::clone(&s.reader),
        Arc::new(c.principal.visibility_for(&scope)),
    );
    match carried(incidents, r.incident, &r.pseudonym).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return refuse(
                ErrorCode::NotInIncident,
                format!("incident {} does not carry this pseudonym", r.incident.0),
                detail,
            );
        }
        Err(e) => return e.into_response(),
    }
    // Once: whoever gets here first takes it.
    let taken = s.unmask_requests.update(r.id, |x| {
        if matches!(x.state, RequestState::Approved { .. }) {
            x.state = RequestState::Revealed { at: now };
            true
        } else {
            false
        }
    });
    if taken != Some(true) {
        return refuse(
            ErrorCode::UnmaskRequestClosed,
            "the value was already shown".into(),
            detail,
        );
    }
    reveal_now(&s, &r.pseudonym, r.purpose, r.incident.0, detail).await
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
    fn approval_modes_parse() {
        for a in Approval::ALL {
            assert_eq!(Approval::parse(a.as_str()), Some(a));
        }
        assert_eq!(Approval::parse("DPO"), None);
        assert_eq!(Approval::default(), Approval::None);
    }

    #[test]
    fn a_request_expires_at_its_deadline() {
        let r = UnmaskRequestRecord {
            id: 1,
            incident: IncidentId(1),
            commune: CommuneIdx(0),
            category: "c".into(),
            pseudonym: "p".into(),
            purpose: UnmaskPurpose::IncidentResponse,
            justification: beffroi_core::SafeText::default(),
            requester: "a".into(),
            requested_at: Timestamp(0),
            expires_at: Timestamp(10),
            state: RequestState::Pending,
        };
        assert_eq!(r.state_at(Timestamp(10)), RequestState::Pending);
        assert_eq!(r.state_at(Timestamp(11)), RequestState::Expired);
        let done = UnmaskRequestRecord {
            state: RequestState::Revealed { at: Timestamp(5) },
            ..r
        };
        assert_eq!(done.state_at(Timestamp(99)).as_str(), "revealed");
    }
}
