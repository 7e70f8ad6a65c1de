//! The public error codes of the API.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The one table of the API's public error codes: for each, its variant, its stable code,
/// its HTTP status and what it means. The enum, [`ErrorCode::ALL`], [`ErrorCode::as_str`],
/// [`ErrorCode::status`] and [`ErrorCode::meaning`] are generated from it;
/// `docs/api-errors.md` lists the same rows and the console translates every code
/// (`error.code.<code>` in `web/src/i18n.js`), both checked by the tidy test
/// (`crates/beffroi-tidy`). A new code is one line here.
macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:literal, $meaning:literal;)+) => {
        /// Every error the API can answer, with its HTTP status. Codes are stable.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode {
            $(#[doc = concat!($status, ": ", $meaning)] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The stable machine-readable code of the body's `error.code`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The HTTP status, as a number.
            pub fn status_u16(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)+
                }
            }

            /// What the code means, in English: the documentation's text.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)+
                }
            }
        }
    };
}

error_codes! {
    Unauthorized = "unauthorized", 401, "Missing, invalid or expired bearer token or session (with `WWW-Authenticate: Bearer`).";
    InvalidCredentials = "invalid_credentials", 401, "Wrong username, password or one-time code, or a missing code (not told apart).";
    InvalidRequest = "invalid_request", 400, "The request is not understood: bad JSON, unknown action, status, severity or format, a missing `owner`/`text`/`step`.";
    NotFound = "not_found", 404, "No such incident or device, or one out of the caller's scope (the same answer); or an action on a closed incident.";
    InvalidTransition = "invalid_transition", 409, "The action is not allowed in the incident's current state (or an empty comment, a step already done).";
    PayloadTooLarge = "payload_too_large", 413, "Body too large.";
    ObservationsRejected = "observations_rejected", 422, "The payload was understood but every observation in it was rejected; `details` lists why.";
    Overloaded = "overloaded", 503, "The ingest queue is full; retry later. Nothing was stored.";
    StoreUnavailable = "store_unavailable", 503, "The store failed; nothing was acknowledged.";
    Standby = "standby", 503, "A cluster node on standby reaches no node running the engine (a takeover under way): retry in a moment (`Retry-After`).";
    UnitNotFound = "unit_not_found", 404, "No unit with this id in `units.toml`, or one the caller may not see.";
    UnitOffDuty = "unit_off_duty", 409, "The unit is off duty and cannot be assigned.";
    CrisisNotFound = "crisis_not_found", 404, "No crisis with this id, or one the caller may not see.";
    CrisisClosed = "crisis_closed", 409, "The crisis is closed; it no longer changes.";
    EventNotFound = "event_not_found", 404, "No such event.";
    EventExists = "event_exists", 409, "An event with this id already exists.";
    EventClosed = "event_closed", 409, "The event is already cancelled or over.";
    Forbidden = "forbidden", 403, "Authenticated, but the caller's roles do not allow this here.";
    CsrfFailed = "csrf_failed", 403, "A state-changing request made with the session cookie lacks a valid `X-CSRF-Token` header.";
    TooManyAttempts = "too_many_attempts", 429, "Too many failed logins: wait `Retry-After` seconds.";
    LockedOut = "locked_out", 429, "The account or address is locked out for `Retry-After` seconds.";
    NoHold = "no_hold", 404, "The incident is not under a legal hold (nothing to release).";
    PurposeRequired = "purpose_required", 403, "Unmasking needs a declared purpose and a justification (15 characters or more).";
    NotInIncident = "not_in_incident", 404, "The incident does not carry this pseudonym (it was not recorded from the reading that raised the incident; its title, evidence and log never count).";
    KeyDestroyed = "key_destroyed", 410, "The key epoch of the pseudonym was destroyed: it can no longer be linked.";
    IdentityErased = "identity_erased", 410, "The value behind the pseudonym was purged (retention) or erased (a request).";
    NoPseudonymisationKey = "no_pseudonymisation_key", 422, "The text carries a personal identifier (plate, phone number…) and no pseudonymisation key is loaded to replace it: it is not stored.";
    UnmaskLimit = "unmask_limit", 429, "The caller unmasked as many values as allowed in 24 hours; recorded for the DPO.";
    DeviceMismatch = "device_mismatch", 422, "A payload posted for one device (`/devices/{id}/observations`) names another device: nothing of it is ingested.";
    UnmaskRequestNotFound = "unmask_request_not_found", 404, "No such unmasking request, or one the caller may neither decide nor collect.";
    SelfApproval = "self_approval", 403, "The requester of an unmasking cannot approve or refuse it.";
    ApproverRequired = "approver_required", 403, "The caller may not approve unmaskings (`dpo`: needs `privacy.subject`).";
    UnmaskPending = "unmask_pending", 409, "The unmasking request waits for its approver.";
    UnmaskRequestClosed = "unmask_request_closed", 409, "The unmasking request was already decided, or its value shown.";
    UnmaskRequestExpired = "unmask_request_expired", 410, "The unmasking request was not approved, or its value not collected, in time.";
    NoteNotFound = "note_not_found", 404, "No such handover note, or one out of the caller's communes (the same answer).";
    NoteEmpty = "note_empty", 400, "A handover note needs some text (at most 4,000 characters).";
    ReasonRequired = "reason_required", 400, "Shelving an alarm needs a reason.";
    ShelveTooLong = "shelve_too_long", 400, "An alarm may be shelved for a bounded time (`details.max_minutes`).";
    NotShelved = "not_shelved", 409, "The alarm is not shelved (nothing to unshelve).";
}

impl ErrorCode {
    /// The HTTP status of the code (the table's number; a number that is not a status would
    /// answer 500, which `every_code_has_a_valid_status` below refuses).
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.status_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn with_details(mut self, d: serde_json::Value) -> Self {
        self.details = Some(d);
        self
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_transition`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code.as_str().into(),
                    message: self.message,
                    details: self.details,
                },
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        if self.code == ErrorCode::Unauthorized {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_valid_status() {
        for code in ErrorCode::ALL {
            let n = code.status_u16();
            assert!((400..600).contains(&n), "{code:?}: {n}");
            assert_eq!(code.status().as_u16(), n, "{code:?}");
        }
    }

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} listed twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s} is not snake_case"
            );
        }
    }
}
