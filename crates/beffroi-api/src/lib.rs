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

/// Who may see and do what: the pure `beffroi-access` crate.
pub use beffroi_access as access;
pub mod alarm_health;
pub mod auth;
pub mod cap;
pub mod console;
pub mod crisis;
pub mod crowd;
pub mod dto;
pub mod error;
pub mod events;
pub mod federation;
mod handlers;
pub mod handover;
pub mod mapgrid;
pub mod ngsild;
pub mod openapi;
pub mod overview;
pub mod password;
pub mod privacy;
pub mod retention;
pub mod routes;
pub mod scoped;
mod scrub;
pub mod security;
pub mod shelving;
pub mod situations;
pub mod taxii;
pub mod totp;
pub mod units;
pub mod unmask;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use beffroi_core::{AuditRecord, AuditSink};
use beffroi_engine::StoreReader;
use beffroi_engine::runner::EngineHandle;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub use auth::Auth;
pub use handlers::DeviceBoard;
pub use routes::{Caller, ROUTES, WebSecurity};

/// Shared state of the HTTP server.
#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    /// HTTP ingest as a source component: named `http`, it refuses at once when the
    /// engine's queue is full (the client is told to retry).
    pub ingest: beffroi_engine::source::SourcePort,
    /// In a cluster, HTTP ingest is appended to the shared ingest log instead (whichever
    /// node runs the engine stores it); `None`: straight to this server's engine.
    pub ingest_log: Option<Arc<dyn IngestLog>>,
    pub reader: Arc<dyn StoreReader>,
    pub auth: Arc<Auth>,
    pub ready: Arc<AtomicBool>,
    pub board: Arc<DeviceBoard>,
    /// Cancelled when the server shuts down: ends the live streams, which would otherwise
    /// keep graceful shutdown waiting for their clients.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The devices' positions projected for the map's clusters (the territory is fixed).
    pub map: Arc<mapgrid::MapIndex>,
    /// Where logins, state-changing calls and denials are recorded.
    pub audit: Arc<dyn AuditSink>,
    pub auth_metrics: Arc<AuthMetrics>,
    /// Cookies and headers for the way the site is served.
    pub web: WebSecurity,
    /// Retention, aggregates (minimum group size) and the register of processing.
    pub privacy: Arc<beffroi_core::PrivacyPolicy>,
    /// The territory's pseudonymisation keys (`None` when the deployment has no personal
    /// field): unmasking and a person's requests go through it.
    pub pseudonymiser: Option<Arc<beffroi_privacy::Pseudonymiser>>,
    /// The read side of the audit log (the DPO's access log); `None` when the deployment
    /// has none (the access log then answers 503).
    pub audit_reader: Option<Arc<dyn beffroi_core::AuditReader>>,
    /// How many values each caller unmasked in the last 24 hours.
    pub unmask_budget: Arc<unmask::Budget>,
    /// The second approver's policy and the unmasking requests waiting for it.
    pub unmask_requests: Arc<unmask::Requests>,
    /// The territory's alarm health on `/metrics`.
    pub health_gauges: Arc<alarm_health::HealthGauges>,
    /// What the territory announces as CAP 1.2 public alerts (`cap.toml`); `None`: nothing.
    pub cap: Option<Arc<cap::CapPolicy>>,
    /// Who reads the territory's cyber indicators over TAXII 2.1 (`taxii.toml`); `None`:
    /// no TAXII server.
    pub taxii: Option<Arc<taxii::TaxiiPolicy>>,
    /// The partners' inbox and the links' state (`federation.toml`); `None`: no partner.
    pub federation: Option<federation::Port>,
    /// NGSI-LD subscriptions of the city's data platform (in memory).
    pub subscriptions: Arc<ngsild::Subscriptions>,
}

/// Where a reading posted over HTTP is appended when the server is a cluster node: a
/// durable log (NATS JetStream) that the node running the engine consumes. A reading is
/// answered `202` once the log has it; the adapter lives in the binary.
pub trait IngestLog: Send + Sync {
    /// Appends one request's body; the device named by the path, if any.
    fn append(
        &self,
        device: Option<String>,
        format: beffroi_wire::Format,
        body: bytes::Bytes,
    ) -> futures::future::BoxFuture<'static, Result<LogReceipt, String>>;
}

/// Where the log put a reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogReceipt {
    /// Its sequence in the log.
    pub sequence: u64,
    /// The log had it already (the same request sent again).
    pub duplicate: bool,
}

/// The default audit sink: each record is a structured `tracing` event on target `audit`.
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, r: AuditRecord) {
        tracing::info!(
            target: "audit",
            at_ms = r.at_ms,
            actor = %r.actor,
            action = %r.action,
            target = r.target.as_deref().unwrap_or(""),
            outcome = r.outcome.as_str(),
            detail = %r.detail,
            "audit"
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Counters of authentication and authorisation, registered in the engine's registry.
#[derive(Default)]
pub struct AuthMetrics {
    /// Login attempts by result (`ok`, `invalid_credentials`, `totp_required`,
    /// `totp_invalid`, `throttled`, `locked`).
    pub logins: Family<ResultLabel, Counter>,
    /// Requests refused by authentication or authorisation, by code.
    pub denials: Family<ResultLabel, Counter>,
}

impl AuthMetrics {
    pub fn login(&self, result: &'static str) {
        self.logins.get_or_create(&ResultLabel { result }).inc();
    }
    pub fn denied(&self, code: &'static str) {
        self.denials
            .get_or_create(&ResultLabel { result: code })
            .inc();
    }
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
        let auth_metrics = Arc::new(AuthMetrics::default());
        engine.metrics.with_registry(|r| {
            r.register(
                "auth_logins",
                "Login attempts by result",
                auth_metrics.logins.clone(),
            );
            r.register(
                "auth_denials",
                "Requests refused by authentication or authorisation, by code",
                auth_metrics.denials.clone(),
            );
        });
        let health_gauges = Arc::new(alarm_health::HealthGauges::default());
        engine.metrics.with_registry(|r| health_gauges.register(r));
        let ingest = engine.source_port(beffroi_engine::source::SourceConfig {
            source: beffroi_engine::Source::HTTP,
            overload: beffroi_engine::source::Overload::Refuse,
        });
        AppState {
            ingest,
            ingest_log: None,
            engine,
            reader,
            auth,
            ready: Arc::new(AtomicBool::new(false)),
            board,
            shutdown: tokio_util::sync::CancellationToken::new(),
            map,
            audit: Arc::new(TracingAudit),
            auth_metrics,
            web: WebSecurity::default(),
            privacy: Arc::new(beffroi_core::PrivacyPolicy::unconfigured()),
            pseudonymiser: None,
            audit_reader: None,
            unmask_budget: Arc::new(unmask::Budget::default()),
            unmask_requests: Arc::new(unmask::Requests::default()),
            health_gauges,
            cap: None,
            taxii: None,
            federation: None,
            subscriptions: Arc::default(),
        }
    }

    /// Publishes the public alerts `cap.toml` selects, as CAP 1.2 and an Atom feed.
    pub fn with_cap(mut self, policy: Option<Arc<cap::CapPolicy>>) -> AppState {
        self.cap = policy;
        self
    }

    /// Serves the territory's cyber indicators over TAXII 2.1 as `taxii.toml` says.
    pub fn with_taxii(mut self, policy: Option<Arc<taxii::TaxiiPolicy>>) -> AppState {
        self.taxii = policy;
        self
    }

    /// Records what a partner (a federation partner, a TAXII reader) did or was refused:
    /// actor `partner:<name>`.
    pub(crate) fn audit_partner(
        &self,
        partner: &str,
        action: &str,
        target: Option<&str>,
        outcome: beffroi_core::AuditOutcome,
        detail: serde_json::Value,
    ) {
        self.audit.record(beffroi_core::AuditRecord {
            at_ms: self.engine.clock.now().0,
            actor: beffroi_core::SafeText::redacting(&format!("partner:{partner}")),
            action: action.into(),
            target: target.map(beffroi_core::SafeText::redacting),
            outcome,
            detail: beffroi_core::SafeText::redacting(&detail.to_string()),
        });
    }

    /// Receives partners' batches through `port`, and shows its links.
    pub fn with_federation(mut self, port: Option<federation::Port>) -> AppState {
        self.federation = port;
        self
    }

    /// Sends HTTP ingest to the cluster's ingest log rather than to this server's engine.
    pub fn with_ingest_log(mut self, log: Arc<dyn IngestLog>) -> AppState {
        self.ingest_log = Some(log);
        self
    }

    /// Sets the deployment's privacy policy.
    pub fn with_privacy(mut self, policy: Arc<beffroi_core::PrivacyPolicy>) -> AppState {
        self.privacy = policy;
        self
    }

    /// Sets the pseudonymisation keys in force.
    pub fn with_pseudonymiser(mut self, p: Arc<beffroi_privacy::Pseudonymiser>) -> AppState {
        self.pseudonymiser = Some(p);
        self
    }

    /// Sets who must approve an unmasking before its value is revealed.
    pub fn with_unmask_approval(mut self, policy: unmask::ApprovalPolicy) -> AppState {
        self.unmask_requests = Arc::new(unmask::Requests::new(policy));
        self
    }

    /// Reads the audit log through `reader` (the DPO's access log).
    pub fn with_audit_reader(mut self, reader: Arc<dyn beffroi_core::AuditReader>) -> AppState {
        self.audit_reader = Some(reader);
        self
    }

    /// Sends audit records to `sink` instead of the log.
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> AppState {
        self.audit = sink;
        self
    }

    /// Sets how the site is served (secure cookies, HSTS, forwarded addresses).
    pub fn with_web(mut self, web: WebSecurity) -> AppState {
        self.web = web;
        self
    }
}

/// Largest request body, in bytes (observation batches included).
pub const MAX_BODY: usize = 1024 * 1024;

/// The API router, built from [`ROUTES`] (every route guarded by its access rule).
pub fn router(state: AppState) -> Router {
    let mut r = Router::new();
    for (path, method_router) in routes::guarded(&state) {
        r = r.route(path, method_router);
    }
    r.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// `/metrics` alone, without authentication: for a listener of its own (`[http]
/// metrics_listen`) on an address only the scraper reaches.
pub fn metrics_router(state: AppState) -> Router {
    let mut r = Router::new();
    for spec in ROUTES.iter().filter(|s| s.path == "/metrics") {
        r = r.route(spec.path, (spec.handler)());
    }
    r.with_state(state)
}

/// Adds the security headers to every answer of `app` (the API merged with the console).
pub fn harden(app: Router, web: WebSecurity) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        web,
        routes::security_headers,
    ))
}
