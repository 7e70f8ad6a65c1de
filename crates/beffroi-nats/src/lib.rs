//! NATS JetStream as Beffroi's ingest log and cluster bus: the adapter the engine of a
//! cluster uses instead of (or beside) the single-server MQTT and HTTP sources.
//!
//! ```text
//!  HTTP ingest ──Publisher──▶ beffroi.<t>.in.<commune>.<device>.<kind>   (PubAck, then 200)
//!  MQTT devices ─▶ $MQTT_msgs ─forwarder─┘         │ stream BEFFROI_<t>_IN, R = min(3, n)
//!                                                  ▼ stored as beffroi.<t>.part.<p>.…
//!                      durable pull consumer ingest-p<p> ──run_partition──▶ commit ──▶ AckAll
//!                                   ▲
//!        LeaseManager (KV: members, leases) says which node runs which partition
//! ```
//!
//! - [`subject`]: subject layout and the reversible escaping of ids into tokens (pure).
//! - [`partition`]: partition of a reading, the same function the server applies (pure).
//! - [`stream`]: the ingest stream, created idempotently, deduplicating by `Nats-Msg-Id`.
//! - [`publish`]: publishing with acks, batched, retried with the same message id.
//! - [`consume`]: a partition's fetch → commit → ack loop, one ack per committed batch.
//! - [`lease`]: who owns which partition, decided from observed revisions (pure).
//! - [`lease_kv`]: those decisions carried out on JetStream KV with compare-and-set, and
//!   `supervise_partitions`, which runs a partition's consumer only while it is owned.
//! - [`mqtt_forward`]: MQTT devices (the server's MQTT listener) into the ingest log, from
//!   the server's own `$MQTT_msgs` stream, acknowledged there only once stored.
//!
//! The choices and what was verified are in `docs/adr/0039-nats-jetstream-ingest.md`.
//!
//! **API boundary:** only the `async_nats` connection, JetStream context, stream, consumer and
//! KV handles cross it; the engine sees [`consume::Delivered`] batches and a commit callback.

pub mod consume;
pub mod lease;
pub mod lease_kv;
pub mod mqtt_forward;
pub mod partition;
pub mod publish;
pub mod stream;
pub mod subject;

pub use async_nats;

/// What can go wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("invalid NATS configuration: {0}")]
    Config(String),
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("ingest stream: {0}")]
    Stream(String),
    #[error("consumer: {0}")]
    Consumer(String),
    #[error("publish: {0}")]
    Publish(String),
    #[error("key-value store: {0}")]
    Kv(String),
}

/// Connects to a comma-separated list of server URLs (the client fails over among them).
pub async fn connect(urls: &str, name: &str) -> Result<async_nats::Client, NatsError> {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| NatsError::Config(format!("server URL: {e}")))?;
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .map_err(|e| NatsError::Connect(e.to_string()))
}
