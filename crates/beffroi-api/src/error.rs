//! The public error codes of the API.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error the API can answer, with its HTTP status. Codes are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 401: no or invalid bearer token.
    Unauthorized,
    /// 401: wrong username or password.
    InvalidCredentials,
    /// 400: the request is not understood (bad JSON, unknown parameter value).
    InvalidRequest,
    /// 404: no such incident or device, or one out of the caller's scope (the same answer).
    NotFound,
    /// 409: the action is not allowed in the incident's current state.
    InvalidTransition,
    /// 413: body too large.
    PayloadTooLarge,
    /// 422: the payload was understood but every observation in it was rejected.
    ObservationsRejected,
    /// 503: the ingest queue is full; retry later.
    Overloaded,
    /// 503: the store failed; nothing was acknowledged.
    StoreUnavailable,
    /// 503: this node of a cluster is on standby and reaches no node running the engine (a
    /// takeover under way); retry in a moment.
    Standby,
    /// 404: no unit with this id in the deployment, or one out of the caller's scope.
    UnitNotFound,
    /// 409: the unit is off duty and cannot be assigned.
    UnitOffDuty,
    /// 404: no crisis with this id, or one out of the caller's scope.
    CrisisNotFound,
    /// 409: the crisis is closed; it can no longer change.
    CrisisClosed,
    /// 404: no such event.
    EventNotFound,
    /// 409: an event with this id already exists.
    EventExists,
    /// 409: the event is already cancelled or over.
    EventClosed,
    /// 403: authenticated, but the caller's roles do not allow this here.
    Forbidden,
    /// 403: a state-changing request made with the session cookie lacks a valid
    /// `X-CSRF-Token` header.
    CsrfFailed,
    /// 429: too many failed logins: wait `Retry-After` seconds.
    TooManyAttempts,
    /// 429: the account or address is locked out for `Retry-After` seconds.
    LockedOut,
    /// 404: the incident is not under a legal hold (nothing to release).
    NoHold,
    /// 403: unmasking needs a declared purpose and a justification (15 characters or more).
    PurposeRequired,
    /// 404: the incident does not carry this pseudonym (it was not recorded from the
    /// reading that raised the incident; its title, evidence and log never count).
    NotInIncident,
    /// 410: the key epoch of the pseudonym was destroyed: it can no longer be linked.
    KeyDestroyed,
    /// 410: the value behind the pseudonym was purged (retention) or erased (a request).
    IdentityErased,
    /// 422: the text carries a personal identifier (plate, phone number…) and no
    /// pseudonymisation key is loaded to replace it: it is not stored.
    NoPseudonymisationKey,
    /// 429: the caller unmasked as many values as allowed in 24 hours; the DPO is alerted.
    UnmaskLimit,
    /// 422: a payload posted for one device (`/devices/{id}/observations`) has a record
    /// naming another device: nothing of it is ingested.
    DeviceMismatch,
    /// 404: no such unmasking request, or one the caller may neither decide nor collect.
    UnmaskRequestNotFound,
    /// 403: the requester of an unmasking cannot approve or refuse it.
    SelfApproval,
    /// 403: the caller may not approve unmaskings (`dpo`: needs `privacy.subject`).
    ApproverRequired,
    /// 409: the unmasking request waits for its approver.
    UnmaskPending,
    /// 409: the unmasking request was already decided, or its value shown.
    UnmaskRequestClosed,
    /// 410: the unmasking request was not approved, or its value not collected, in time.
    UnmaskRequestExpired,
    /// 404: no such handover note, or one out of the caller's communes (the same answer).
    NoteNotFound,
    /// 400: a handover note needs some text (at most 4,000 characters).
    NoteEmpty,
    /// 400: shelving an alarm needs a reason.
    ReasonRequired,
    /// 400: an alarm may be shelved for a bounded time (`details.max_minutes`).
    ShelveTooLong,
    /// 409: the alarm is not shelved (nothing to unshelve).
    NotShelved,
}

impl ErrorCode {
    /// Every code, in declaration order: the console translates each (`error.code.<code>`
    /// in `web/src/i18n.js`, checked by `tests/error_codes_translated.rs`). A new code goes
    /// here too.
    pub const ALL: [ErrorCode; 40] = [
        ErrorCode::Unauthorized,
        ErrorCode::InvalidCredentials,
        ErrorCode::InvalidRequest,
        ErrorCode::NotFound,
        ErrorCode::InvalidTransition,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ObservationsRejected,
        ErrorCode::Overloaded,
        ErrorCode::StoreUnavailable,
        ErrorCode::Standby,
        ErrorCode::UnitNotFound,
        ErrorCode::UnitOffDuty,
        ErrorCode::CrisisNotFound,
        ErrorCode::CrisisClosed,
        ErrorCode::EventNotFound,
        ErrorCode::EventExists,
        ErrorCode::EventClosed,
        ErrorCode::Forbidden,
        ErrorCode::CsrfFailed,
        ErrorCode::TooManyAttempts,
        ErrorCode::LockedOut,
        ErrorCode::NoHold,
        ErrorCode::PurposeRequired,
        ErrorCode::NotInIncident,
        ErrorCode::KeyDestroyed,
        ErrorCode::IdentityErased,
        ErrorCode::NoPseudonymisationKey,
        ErrorCode::UnmaskLimit,
        ErrorCode::DeviceMismatch,
        ErrorCode::UnmaskRequestNotFound,
        ErrorCode::SelfApproval,
        ErrorCode::ApproverRequired,
        ErrorCode::UnmaskPending,
        ErrorCode::UnmaskRequestClosed,
        ErrorCode::UnmaskRequestExpired,
        ErrorCode::NoteNotFound,
        ErrorCode::NoteEmpty,
        ErrorCode::ReasonRequired,
        ErrorCode::ShelveTooLong,
        ErrorCode::NotShelved,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized | ErrorCode::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidTransition => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::ObservationsRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Overloaded | ErrorCode::StoreUnavailable | ErrorCode::Standby => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::UnitNotFound | ErrorCode::CrisisNotFound => StatusCode::NOT_FOUND,
            ErrorCode::UnitOffDuty | ErrorCode::CrisisClosed => StatusCode::CONFLICT,
            ErrorCode::EventNotFound | ErrorCode::NoHold => StatusCode::NOT_FOUND,
            ErrorCode::EventExists | ErrorCode::EventClosed => StatusCode::CONFLICT,
            ErrorCode::Forbidden | ErrorCode::CsrfFailed => StatusCode::FORBIDDEN,
            ErrorCode::TooManyAttempts | ErrorCode::LockedOut => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::PurposeRequired => StatusCode::FORBIDDEN,
            ErrorCode::NotInIncident => StatusCode::NOT_FOUND,
            ErrorCode::KeyDestroyed | ErrorCode::IdentityErased => StatusCode::GONE,
            ErrorCode::NoPseudonymisationKey | ErrorCode::DeviceMismatch => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::UnmaskLimit => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UnmaskRequestNotFound => StatusCode::NOT_FOUND,
            ErrorCode::SelfApproval | ErrorCode::ApproverRequired => StatusCode::FORBIDDEN,
            ErrorCode::UnmaskPending | ErrorCode::UnmaskRequestClosed => StatusCode::CONFLICT,
            ErrorCode::UnmaskRequestExpired => StatusCode::GONE,
            ErrorCode::NoteNotFound => StatusCode::NOT_FOUND,
            ErrorCode::NoteEmpty | ErrorCode::ReasonRequired | ErrorCode::ShelveTooLong => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::NotShelved => StatusCode::CONFLICT,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ObservationsRejected => "observations_rejected",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Standby => "standby",
            ErrorCode::UnitNotFound => "unit_not_found",
            ErrorCode::UnitOffDuty => "unit_off_duty",
            ErrorCode::CrisisNotFound => "crisis_not_found",
            ErrorCode::CrisisClosed => "crisis_closed",
            ErrorCode::EventNotFound => "event_not_found",
            ErrorCode::EventExists => "event_exists",
            ErrorCode::EventClosed => "event_closed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::CsrfFailed => "csrf_failed",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::LockedOut => "locked_out",
            ErrorCode::NoHold => "no_hold",
            ErrorCode::PurposeRequired => "purpose_required",
            ErrorCode::NotInIncident => "not_in_incident",
            ErrorCode::KeyDestroyed => "key_destroyed",
            ErrorCode::IdentityErased => "identity_erased",
            ErrorCode::NoPseudonymisationKey => "no_pseudonymisation_key",
            ErrorCode::UnmaskLimit => "unmask_limit",
            ErrorCode::DeviceMismatch => "device_mismatch",
            ErrorCode::UnmaskRequestNotFound => "unmask_request_not_found",
            ErrorCode::SelfApproval => "self_approval",
            ErrorCode::ApproverRequired => "approver_required",
            ErrorCode::UnmaskPending => "unmask_pending",
            ErrorCode::UnmaskRequestClosed => "unmask_request_closed",
            ErrorCode::UnmaskRequestExpired => "unmask_request_expired",
            ErrorCode::NoteNotFound => "note_not_found",
            ErrorCode::NoteEmpty => "note_empty",
            ErrorCode::ReasonRequired => "reason_required",
            ErrorCode::ShelveTooLong => "shelve_too_long",
            ErrorCode::NotShelved => "not_shelved",
        }
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
