//! What sources hand to the pipeline, and how they learn the outcome.

use std::sync::Arc;

use beffroi_core::Timestamp;
use beffroi_wire::{Format, Rejection};
use bytes::Bytes;

/// Where an input came from, by name: `mqtt`, `http`, `simulator`, or the name of any
/// source component ([`crate::source::IngestSource`]). The engine knows no source by kind;
/// the name labels metrics and stored rejections. Names are `'static` strings written in
/// code, so the label values stay bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(&'static str);

impl Source {
    /// The MQTT adapter (devices through the broker).
    pub const MQTT: Source = Source("mqtt");
    /// HTTP ingest (`POST /api/v1/ingest`).
    pub const HTTP: Source = Source("http");
    /// The scenario player of the demo and of `simulate`.
    pub const SIMULATOR: Source = Source("simulator");

    /// A source by name (lower case, `[a-z0-9_-]`: a metric label value).
    pub const fn named(name: &'static str) -> Source {
        Source(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// The outcome of one envelope, reported once everything it produced is durable.
#[derive(Clone, Debug, PartialEq)]
pub enum AckOutcome {
    /// Observations and rejections are committed to the store.
    Stored {
        accepted: usize,
        rejected: Vec<Rejection>,
    },
    /// The store failed: the sender must not consider the data safe (MQTT: no PUBACK,
    /// the broker redelivers).
    Failed(String),
}

static NEXT_STREAM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh stream id, unique in the process and greater than every earlier one.
pub fn new_stream() -> u64 {
    NEXT_STREAM.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// The greatest stream id handed out so far (0: none).
pub fn last_stream() -> u64 {
    NEXT_STREAM.load(std::sync::atomic::Ordering::SeqCst) - 1
}

/// Called exactly once per envelope, after the outcome is durable (or failed).
pub struct Ack(Box<dyn FnOnce(AckOutcome) + Send>);

impl Ack {
    pub fn new(f: impl FnOnce(AckOutcome) + Send + 'static) -> Self {
        Ack(Box::new(f))
    }
    pub fn call(self, outcome: AckOutcome) {
        (self.0)(outcome)
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack(..)")
    }
}

/// One payload from a source.
#[derive(Debug)]
pub struct Envelope {
    pub source: Source,
    pub format: Format,
    /// The device named by the transport (MQTT topic, HTTP path), if any.
    pub device_hint: Option<Arc<str>>,
    pub payload: Bytes,
    /// The transport vouches that the publisher is the hinted device (MQTT with
    /// `broker_auth` on the device's own topic, or a device credential over HTTP).
    pub authenticated: bool,
    /// Processing time of reception.
    pub received: Timestamp,
    /// The ordered stream the envelope belongs to (an MQTT connection), from
    /// [`new_stream`]. Envelopes of one stream are stored in the order submitted: once the
    /// engine refuses one of them after a failed commit, it refuses every later one of the
    /// same stream, so that the sender delivers them again in order on a new stream (MQTT
    /// redelivers on reconnection). `None`: each envelope stands alone (HTTP, simulator).
    pub stream: Option<u64>,
    pub ack: Option<Ack>,
}
