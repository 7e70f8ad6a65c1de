//! The Beffroi pipeline.
//!
//! source → decode and validate → twin → rules → alarms → incidents → sinks.
//!
//! - [`pipeline::Pipeline`] is the synchronous heart: it owns the device twin, the rule
//!   evaluator state and the incident book of one partition, and turns envelopes and clock
//!   ticks into a [`store::WriteBatch`] and live events. Scenario tests drive it directly
//!   on a simulated clock.
//! - [`runner`] runs it on tokio: a bounded ingest channel (explicit overload policy per
//!   source), one pipeline task, a dedicated store-writer thread that commits batches and
//!   only then acknowledges senders and publishes live events.
//! - [`store`] is the persistence boundary, [`envelope`] what sources submit, [`live`] the
//!   events of the live stream, [`metrics`] the Prometheus instrumentation.

pub mod binding;
pub mod envelope;
pub mod events;
pub mod external;
pub mod live;
pub mod message_json;
pub mod metrics;
pub mod operations;
pub mod pipeline;
pub mod procedures;
pub mod retention;
pub mod runner;
pub mod sentinel;
pub mod situations;
pub mod source;
pub mod store;
pub mod trust;
pub mod watermark;

pub use envelope::{Ack, AckOutcome, Envelope, Source};
pub use store::{
    Commit, IncidentReads, ObservationReads, RecordReads, Restore, Retain, Store, StoreError,
    StoreReader, WriteBatch,
};
