//! Beffroi's HTTP API.
//!
//! JSON under `/api/v1` (documented by the OpenAPI document at `/api/v1/openapi.json`),
//! a Server-Sent Events stream of incident and device changes, `/healthz` and Prometheus
//! `/metrics`. Everything under `/api/v1` except login and the OpenAPI document needs a
//! bearer token from `POST /api/v1/auth/login`.
//!
//! **API boundary:** the JSON bodies are this crate's own types ([`dto`]), converted
//! explicitly from the core's; nothing else serialises domain types.
//!
//! **Errors:** one table of public error codes ([`error::ErrorCode`]), each with its HTTP
//! status; bodies are `{"error": {"code": …, "message": …}}`.

pub mod auth;
pub mod console;
pub mod crisis;
pub mod dto;
pub mod error;
pub mod events;
mod handlers;
pub mod mapgrid;
pub mod openapi;
pub mod overview;
pub mod security;
pub mod units;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::routing::{get, post};
use beffroi_engine::StoreReader;
use beffroi_engine::runner::EngineHandle;

pub use auth::Auth;
pub use handlers::DeviceBoard;

/// Shared state of the HTTP server.
#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub reader: Arc<dyn StoreReader>,
    pub auth: Arc<Auth>,
    pub ready: Arc<AtomicBool>,
    pub board: Arc<DeviceBoard>,
    /// Cancelled when the server shuts down: ends the live streams, which would otherwise
    /// keep graceful shutdown waiting for their clients.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The devices' positions projected for the map's clusters (the territory is fixed).
    pub map: Arc<mapgrid::MapIndex>,
}

impl AppState {
    /// Builds the state and starts following the live stream for device states.
    pub fn new(engine: EngineHandle, reader: Arc<dyn StoreReader>, auth: Arc<Auth>) -> Self {
        let board = DeviceBoard::follow(&engine);
        let map = Arc::new(mapgrid::MapIndex::new(
            engine
                .territory
                .devices
                .iter()
                .map(|d| (d.position.lon, d.position.lat)),
        ));
        AppState {
            engine,
            reader,
            auth,
            ready: Arc::new(AtomicBool::new(false)),
            board,
            shutdown: tokio_util::sync::CancellationToken::new(),
            map,
        }
    }
}

/// Largest request body, in bytes (observation batches included).
pub const MAX_BODY: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(handlers::login))
        .route("/auth/logout", post(handlers::logout))
        .route("/openapi.json", get(handlers::openapi))
        .route("/incidents", get(handlers::list_incidents))
        .route("/incidents/{id}", get(handlers::get_incident))
        .route("/incidents/{id}/actions", post(handlers::act))
        .route("/territory", get(handlers::territory))
        .route("/territory/sites", get(handlers::sites_geojson))
        .route("/devices", get(handlers::list_devices))
        .route("/devices/{id}", get(handlers::get_device))
        .route(
            "/devices/{id}/observations",
            post(handlers::post_device_observations),
        )
        .route("/observations", post(handlers::post_observations))
        .route("/rejections", get(handlers::rejections))
        .route("/rules", get(handlers::rules))
        .route("/stream", get(handlers::stream))
        .route("/auth/me", get(overview::me))
        .route("/overview", get(overview::overview))
        .route("/handover", get(overview::handover))
        .route("/units", get(units::list_units))
        .route("/units/{id}", get(units::get_unit))
        .route("/units/{id}/status", post(units::set_unit_status))
        .route(
            "/crises",
            get(crisis::list_crises).post(crisis::open_crisis),
        )
        .route("/crises/{id}", get(crisis::get_crisis))
        .route("/crises/{id}/log", post(crisis::crisis_log))
        .route("/crises/{id}/level", post(crisis::crisis_level))
        .route("/crises/{id}/roles", post(crisis::crisis_role))
        .route("/crises/{id}/close", post(crisis::close_crisis))
        .route("/crises/{id}/report", get(crisis::crisis_report))
        .route(
            "/events",
            get(events::list_events).post(events::create_event),
        )
        .route("/events/{id}", get(events::get_event))
        .route("/events/{id}/cancel", post(events::cancel_event))
        .route("/map/clusters", get(console::map_clusters))
        .route("/territory/communes", get(console::communes_geojson));
    // ---- Device quarantine (issue 4). Permission: `device.quarantine`. ----
    let api = api
        .route("/devices/{id}/quarantine", post(security::quarantine))
        .route("/devices/{id}/release", post(security::release))
        .route("/security/quarantine", get(security::quarantine_view));
    // ---- end of device quarantine ----
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .nest("/api/v1", api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
