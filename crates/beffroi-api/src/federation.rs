//! Federation between instances: the partners' inbox (`POST /federation/v1/inbox`) and
//! the links' state for the console (`GET /api/v1/federation/links`).
//!
//! The inbox admits a batch only when it is signed by the partner it names with the key
//! `federation.toml` pins for it, and addressed to this instance; everything else is 401,
//! audited. The batch is then read under the wire format's checks
//! ([`beffroi_federation::parse_batch`]) and handed to the [`FederationPort`], which
//! stores it durably, applies its messages once and in order, and answers the highest
//! sequence number it holds: the sender resends from there. The console's accounts never
//! open the inbox (the route table marks it `partner`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use beffroi_core::AuditOutcome;
use beffroi_federation::wire::{HEADER_PARTNER, HEADER_SIGNATURE};
use beffroi_federation::{Ack, Batch};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// A partner's link as the console shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LinkView {
    pub partner: String,
    /// `up`, `down` (the last attempt failed), or `idle` (nothing sent yet).
    pub state: String,
    /// Messages queued for the partner and not yet acknowledged.
    pub backlog: u64,
    /// The highest sequence number the partner acknowledged.
    pub acked: u64,
    /// The highest sequence number received from the partner.
    pub received: u64,
    /// Last successful exchange with the partner, ms since the epoch.
    pub last_ok: Option<i64>,
    /// The last failure's code (`unreachable`, `refused`, `status_<n>`), if down.
    pub error: Option<String>,
}

/// What the API needs from the federation (implemented by the binary, which holds the
/// durable queues and the keys).
pub trait FederationPort: Send + Sync {
    /// This instance's name, as partners address it.
    fn own_name(&self) -> &str;
    /// The pinned key of a partner whose incidents are received, by name.
    fn partner_key(&self, name: &str) -> Option<ed25519_dalek::VerifyingKey>;
    /// Stores `batch` durably and applies its messages in order; the highest sequence
    /// number stored from the partner.
    fn receive(&self, partner: String, batch: Batch) -> BoxFuture<'static, Result<u64, String>>;
    /// Every link's state.
    fn links(&self) -> Vec<LinkView>;
}

/// `POST /federation/v1/inbox`.
pub async fn inbox(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let partner = header(HEADER_PARTNER).unwrap_or_default();
    let signature = header(HEADER_SIGNATURE).unwrap_or_default();
    // An instance without agreements knows no partner: the same 401 as a bad signature.
    let port = s.federation.clone();
    let own = port
        .as_ref()
        .map(|p| p.own_name().to_string())
        .unwrap_or_default();
    let signed = port
        .as_ref()
        .and_then(|p| p.partner_key(&partner))
        .is_some_and(|key| beffroi_federation::verify(&key, &partner, &own, &body, &signature));
    let (true, Some(port)) = (signed, port) else {
        s.audit_partner(
            &partner,
            "federation.denied",
            None,
            AuditOutcome::Denied,
            serde_json::json!({}),
        );
        return ApiError::new(
            ErrorCode::Unauthorized,
            "a partner's signed batch is required (X-Beffroi-Partner, X-Beffroi-Signature)",
        )
        .into_response();
    };
    let batch = match beffroi_federation::parse_batch(&body) {
        Ok(b) if b.from == partner && b.to == own => b,
        Ok(_) => {
            return ApiError::new(
                ErrorCode::InvalidRequest,
                "the batch's `from` and `to` do not match the signature",
            )
            .into_response();
        }
        Err(e) => return ApiError::new(ErrorCode::InvalidRequest, e.to_string()).into_response(),
    };
    let (first, last, count) = (
        batch.messages.first().map(|m| m.seq),
        batch.messages.last().map(|m| m.seq),
        batch.messages.len(),
    );
    match port.receive(partner.clone(), batch).await {
        Ok(acked) => {
            s.audit_partner(&partner, "federation.receive", None, AuditOutcome::Ok,
                serde_json::json!({ "first": first, "last": last, "messages": count, "acked": acked }),
            );
            (StatusCode::OK, Json(Ack { acked })).into_response()
        }
        Err(e) => {
            tracing::error!(partner = %partner, error = %e, "federation batch not stored");
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the batch could not be stored; send it again",
            )
            .into_response()
        }
    }
}

/// `GET /api/v1/federation/links`: each partner's link, backlog and last exchange.
#[utoipa::path(get, path = "/api/v1/federation/links",
    responses((status = 200, body = [LinkView], description = "Each partner's link: state, backlog, sequence numbers")))]
pub async fn links(State(s): State<AppState>) -> Json<Vec<LinkView>> {
    Json(s.federation.as_ref().map(|p| p.links()).unwrap_or_default())
}

/// The port as the application state holds it.
pub type Port = Arc<dyn FederationPort>;

#[derive(utoipa::OpenApi)]
#[openapi(paths(links), components(schemas(LinkView)))]
pub(crate) struct FederationApi;
