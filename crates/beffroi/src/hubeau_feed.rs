//! The Hub'Eau hydrometry connector (`hubeau.toml`) as an ingest source: the API polled
//! on its own task, each new reading of a mapped station handed to the engine as a
//! plain-JSON envelope of the station's device (`beffroi_hubeau`), so an upstream river
//! level goes through the same validation, sentinel and rules as a gauge of the town's.
//!
//! - **Backoff.** A poll that fails (network, HTTP status, an answer that is not the API's)
//!   doubles the wait, up to ten times `every`; the first success restores it.
//! - **Cursor.** Each poll asks from the earliest position of the stations, follows the
//!   API's `next` pages (only on the configured service, at most [`MAX_PAGES`] a poll), and
//!   moves a station's position only once the engine has committed its readings.
//! - **Trust.** The envelopes are not authenticated: the station does not sign, and the
//!   readings count as what they are, a public service's values fetched by the server.

use std::sync::Arc;
use std::time::Duration;

use beffroi_engine::envelope::{Ack, AckOutcome, Envelope, Source};
use beffroi_engine::source::{
    IngestSource, Overload, Refused, SourceConfig, SourceError, SourcePort,
};
use beffroi_hubeau::{Cursor, HubeauConfig, Quantity};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Rows asked per page.
const PAGE_SIZE: usize = 1000;
/// Pages followed in one poll; the rest waits for the next poll.
pub const MAX_PAGES: usize = 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
pub const SOURCE: Source = Source::named("hubeau");

/// `beffroi_hubeau_readings_total{outcome}` and `beffroi_hubeau_poll_failures_total`.
#[derive(Clone, Default)]
pub struct HubeauMetrics {
    readings: Family<Vec<(String, String)>, Counter>,
    failures: Counter,
}

impl HubeauMetrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "hubeau_readings",
            "Hub'Eau readings by outcome (delivered, seen, unmapped, doubtful, no_station, no_value, other_quantity, malformed)",
            self.readings.clone(),
        );
        r.register(
            "hubeau_poll_failures",
            "Polls of the Hub'Eau API that failed (fetch, status or answer)",
            self.failures.clone(),
        );
    }

    fn add(&self, outcome: &str, n: usize) {
        if n > 0 {
            self.readings
                .get_or_create(&vec![("outcome".into(), outcome.into())])
                .inc_by(n as u64);
        }
    }
}

/// The connector, run by the engine as a source.
pub struct HubeauSource {
    pub config: Arc<HubeauConfig>,
    pub metrics: HubeauMetrics,
}

impl IngestSource for HubeauSource {
    fn config(&self) -> SourceConfig {
        SourceConfig {
            source: SOURCE,
            overload: Overload::Wait,
        }
    }

    fn run(
        self: Box<Self>,
        port: SourcePort,
        shutdown: CancellationToken,
    ) -> futures::future::BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            run(self.config, self.metrics, port, shutdown).await;
            Ok(())
        })
    }
}

/// Fetches `url` (blocking), at most the answer reader's size.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    crate::backoff::fetch(
        url,
        Some("application/json"),
        beffroi_hubeau::answer::MAX_BYTES,
        FETCH_TIMEOUT,
    )
}

/// Why a poll stopped early.
enum Stop {
    /// Fetch or answer failed: back off.
    Failed(String),
    /// The engine did not commit a delivery: try again at the next poll.
    NotCommitted(String),
    /// Shutting down.
    Closed,
}

async fn run(
    cfg: Arc<HubeauConfig>,
    metrics: HubeauMetrics,
    port: SourcePort,
    stop: CancellationToken,
) {
    let clock = port.clock();
    let every = Duration::from_millis(cfg.every.millis().max(1000) as u64);
    let mut cursor = Cursor::new(clock.now().minus(cfg.backfill));
    let mut backoff = crate::backoff::Backoff::new(every);
    tracing::info!(url = %cfg.url, stations = cfg.stations.len(), every = ?every, "Hub'Eau hydrometry polled");
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.wait()) => {}
        }
        cursor.raise_to(clock.now().minus(cfg.backfill));
        let mut outcome = Ok(());
        for q in cfg.quantities() {
            outcome = poll(&cfg, q, &mut cursor, &metrics, &port).await;
            if outcome.is_err() {
                break;
            }
        }
        match outcome {
            Ok(()) => {
                if backoff.succeeded() {
                    tracing::info!("Hub'Eau read again");
                }
            }
            Err(Stop::Closed) => return,
            Err(Stop::NotCommitted(e)) => {
                tracing::warn!(error = %e, "Hub'Eau readings not committed; asked again at the next poll");
                backoff.steady();
            }
            Err(Stop::Failed(e)) => {
                metrics.failures.inc();
                if backoff.failed() {
                    tracing::warn!(error = %e, "Hub'Eau unreachable or unreadable; retrying with backoff");
                }
            }
        }
    }
}

/// One quantity's pages, from the cursor's position.
async fn poll(
    cfg: &HubeauConfig,
    q: Quantity,
    cursor: &mut Cursor,
    metrics: &HubeauMetrics,
    port: &SourcePort,
) -> Result<(), Stop> {
    let mut url = beffroi_hubeau::cursor::request_url(cfg, q, cursor.since(cfg, q), PAGE_SIZE);
    for _ in 0..MAX_PAGES {
        let u = url.clone();
        let body = tokio::task::spawn_blocking(move || fetch(&u))
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?
            .map_err(Stop::Failed)?;
        let page =
            beffroi_hubeau::parse_answer(&body).map_err(|e| Stop::Failed(format!("{url}: {e}")))?;
        let s = page.skipped;
        for (outcome, n) in [
            ("no_station", s.no_station),
            ("no_value", s.no_value),
            ("other_quantity", s.other_quantity),
            ("malformed", s.malformed),
        ] {
            metrics.add(outcome, n);
        }
        if let Some(e) = &page.first_error {
            tracing::warn!(error = %e, rows = s.malformed, "Hub'Eau rows left out");
        }
        let plan = cursor.plan(cfg, &page.readings);
        metrics.add("seen", plan.left.seen);
        metrics.add("unmapped", plan.left.unmapped);
        metrics.add("doubtful", plan.left.doubtful);
        for d in plan.deliveries {
            deliver(&d, port).await?;
            cursor.commit(&d);
            metrics.add("delivered", d.readings);
        }
        match page.next {
            None => return Ok(()),
            Some(next) if beffroi_hubeau::cursor::follows(&cfg.url, &next) => url = next,
            Some(next) => {
                return Err(Stop::Failed(format!(
                    "the answer's next page `{next}` is not on {}: not followed",
                    cfg.url
                )));
            }
        }
    }
    Ok(())
}

/// Hands one device's readings to the engine and waits until they are committed.
async fn deliver(d: &beffroi_hubeau::Delivery, port: &SourcePort) -> Result<(), Stop> {
    let (tx, rx) = oneshot::channel();
    let env = Envelope {
        source: SOURCE,
        format: beffroi_wire::Format::Json,
        device_hint: Some(Arc::clone(&d.device)),
        payload: bytes::Bytes::from(d.payload.clone()),
        authenticated: false,
        received: port.clock().now(),
        stream: None,
        ack: Some(Ack::new(move |o| {
            let _ = tx.send(o);
        })),
    };
    match port.submit(env).await {
        Ok(()) => {}
        Err(Refused::Closed(_)) => return Err(Stop::Closed),
        Err(Refused::Overloaded(_)) => {
            return Err(Stop::NotCommitted("ingest queue full".into()));
        }
    }
    match rx.await {
        Ok(AckOutcome::Stored { rejected, .. }) => {
            if let Some(r) = rejected.first() {
                tracing::warn!(device = %d.device, rejected = rejected.len(), reason = r.reason.as_str(), detail = %r.detail, "Hub'Eau readings rejected by validation");
            }
            Ok(())
        }
        Ok(AckOutcome::Failed(e)) => Err(Stop::NotCommitted(e)),
        Err(_) => Err(Stop::Closed),
    }
}
