//! Sources as components. A source of envelopes (the MQTT adapter, HTTP ingest, the
//! scenario player, a log consumer) is named, carries its own overload policy and runs on
//! its own; the engine knows none of them by kind. It reaches the engine through a
//! [`SourcePort`]: its name stamped on what it submits, its policy applied when the ingest
//! queue is full, its counters resolved once.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use beffroi_core::{Clock, Territory};
use beffroi_wire::RejectReason;

use crate::envelope::{Envelope, Source};
use crate::metrics::{Metrics, SourceMetrics};

/// What a source does when the engine's ingest queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overload {
    /// Wait for room: the sender keeps the backlog (a broker holding the persistent
    /// session, a log with a durable consumer, the scenario player).
    Wait,
    /// Refuse at once, counted as `overload`: the sender retries (an HTTP client gets
    /// `503 overloaded`).
    Refuse,
}

/// A source's settings as the engine sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    pub source: Source,
    pub overload: Overload,
}

/// Why an envelope was not queued; the envelope is handed back, unanswered.
#[derive(Debug)]
pub enum Refused {
    /// The queue is full and the source's policy is [`Overload::Refuse`] (counted).
    Overloaded(Box<Envelope>),
    /// The engine is shutting down.
    Closed(Box<Envelope>),
}

/// A source stopped for good (a broker error is not one: sources reconnect on their own).
#[derive(Debug, thiserror::Error)]
#[error("source `{name}` stopped: {message}")]
pub struct SourceError {
    pub name: &'static str,
    pub message: String,
}

/// One source's end of the engine's ingest queue.
#[derive(Clone)]
pub struct SourcePort {
    config: SourceConfig,
    ingest: mpsc::Sender<Envelope>,
    metrics: Arc<SourceMetrics>,
    engine_metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    territory: Arc<Territory>,
    commands: Option<SignalSink>,
}

/// Where a source's security signals go (the engine's command queue; full: dropped and
/// counted).
#[derive(Clone)]
pub(crate) struct SignalSink(
    pub(crate) Arc<dyn Fn(beffroi_core::SecuritySignal) -> bool + Send + Sync>,
);

impl SourcePort {
    /// A port on `ingest` (what [`crate::runner::EngineHandle::source_port`] gives; tests
    /// may build one on a channel of their own).
    pub fn new(
        config: SourceConfig,
        ingest: mpsc::Sender<Envelope>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        territory: Arc<Territory>,
    ) -> SourcePort {
        SourcePort {
            metrics: metrics.source(config.source),
            engine_metrics: metrics,
            config,
            ingest,
            clock,
            territory,
            commands: None,
        }
    }

    pub(crate) fn with_signals(mut self, sink: SignalSink) -> SourcePort {
        self.commands = Some(sink);
        self
    }

    pub fn config(&self) -> SourceConfig {
        self.config
    }

    /// The source's name, to stamp on envelopes.
    pub fn source(&self) -> Source {
        self.config.source
    }

    /// The source's counters (messages, accepted, rejected per reason).
    pub fn metrics(&self) -> &SourceMetrics {
        &self.metrics
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    pub fn territory(&self) -> &Arc<Territory> {
        &self.territory
    }

    /// Hands `env` to the engine under the source's name and policy: [`Overload::Wait`]
    /// waits for room, [`Overload::Refuse`] refuses at once when the queue is full and
    /// counts it. A refused envelope comes back unanswered; its sender decides (an HTTP
    /// client is told to retry).
    pub async fn submit(&self, mut env: Envelope) -> Result<(), Refused> {
        env.source = self.config.source;
        let r = match self.config.overload {
            Overload::Wait => self
                .ingest
                .send(env)
                .await
                .map_err(|e| Refused::Closed(Box::new(e.0))),
            Overload::Refuse => match self.ingest.try_send(env) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(e)) => {
                    self.metrics.rejected(RejectReason::Overload).inc();
                    Err(Refused::Overloaded(Box::new(e)))
                }
                Err(mpsc::error::TrySendError::Closed(e)) => Err(Refused::Closed(Box::new(e))),
            },
        };
        self.engine_metrics
            .ingest_queue_depth
            .set((self.ingest.max_capacity() - self.ingest.capacity()) as i64);
        r
    }

    /// The queue itself, for a waiting source that selects over several events and
    /// reserves room before it takes a message off its transport (the MQTT adapter).
    /// `None` for a source that refuses when full: it must go through [`Self::submit`].
    pub fn waiting_sender(&self) -> Option<mpsc::Sender<Envelope>> {
        (self.config.overload == Overload::Wait).then(|| self.ingest.clone())
    }

    /// A security signal for anomaly detection (dropped and counted when the engine's
    /// command queue is full); whether it was queued.
    pub fn security_signal(&self, signal: beffroi_core::SecuritySignal) -> bool {
        match &self.commands {
            Some(sink) => (sink.0)(signal),
            None => {
                self.engine_metrics.security_signals_dropped.inc();
                false
            }
        }
    }
}

/// A source of envelopes, run as a component: the server builds the configured ones and
/// runs each on the engine's port until `shutdown`.
pub trait IngestSource: Send + 'static {
    fn config(&self) -> SourceConfig;
    /// Runs until `shutdown` is cancelled (`Ok`) or the source cannot go on (`Err`).
    fn run(
        self: Box<Self>,
        port: SourcePort,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), SourceError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::territory::fixture;
    use beffroi_core::{SimClock, Timestamp};
    use beffroi_wire::Format;

    fn envelope(stamped: Source) -> Envelope {
        Envelope {
            source: stamped,
            format: Format::Json,
            device_hint: None,
            payload: bytes::Bytes::from_static(b"{}"),
            authenticated: false,
            received: Timestamp(0),
            stream: None,
            ack: None,
        }
    }

    fn port(
        overload: Overload,
        capacity: usize,
    ) -> (SourcePort, mpsc::Receiver<Envelope>, Arc<Metrics>) {
        let (tx, rx) = mpsc::channel(capacity);
        let metrics = Arc::new(Metrics::new());
        let port = SourcePort::new(
            SourceConfig {
                source: Source::named("nats"),
                overload,
            },
            tx,
            Arc::clone(&metrics),
            Arc::new(SimClock::new(Timestamp(0))),
            Arc::new(fixture::small()),
        );
        (port, rx, metrics)
    }

    /// A source refusing when full hands the envelope back and counts an overload under
    /// its own name; what it submits carries its name, whatever the envelope said.
    #[tokio::test]
    async fn a_refusing_source_is_counted_under_its_name_when_the_queue_is_full() {
        let (port, mut rx, metrics) = port(Overload::Refuse, 1);
        assert!(port.submit(envelope(Source::HTTP)).await.is_ok());
        let second = port.submit(envelope(Source::HTTP)).await;
        assert!(matches!(second, Err(Refused::Overloaded(_))), "{second:?}");
        assert_eq!(
            metrics
                .source(Source::named("nats"))
                .rejected(RejectReason::Overload)
                .get(),
            1
        );
        assert_eq!(
            metrics
                .source(Source::HTTP)
                .rejected(RejectReason::Overload)
                .get(),
            0
        );
        assert_eq!(
            rx.recv().await.map(|e| e.source),
            Some(Source::named("nats"))
        );
        assert!(
            port.waiting_sender().is_none(),
            "a refusing source cannot bypass its policy"
        );
        let exposed = metrics.encode();
        assert!(
            exposed.contains(
                r#"beffroi_observations_rejected_total{source="nats",reason="overload"} 1"#
            ),
            "{exposed}"
        );
    }

    /// A waiting source waits for room instead of refusing.
    #[tokio::test]
    async fn a_waiting_source_waits_for_room() {
        let (port, mut rx, metrics) = port(Overload::Wait, 1);
        assert!(port.submit(envelope(Source::MQTT)).await.is_ok());
        let waiting = tokio::spawn({
            let port = port.clone();
            async move { port.submit(envelope(Source::MQTT)).await.is_ok() }
        });
        assert!(rx.recv().await.is_some());
        assert!(waiting.await.expect("task"), "queued once there was room");
        assert!(rx.recv().await.is_some());
        assert_eq!(
            metrics
                .source(Source::named("nats"))
                .rejected(RejectReason::Overload)
                .get(),
            0
        );
        drop(rx);
        assert!(matches!(
            port.submit(envelope(Source::MQTT)).await,
            Err(Refused::Closed(_))
        ));
    }
}
