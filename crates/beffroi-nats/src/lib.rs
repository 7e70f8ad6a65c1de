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
//! - [`shared_kv`]: a small table every node holds a copy of (the console's sessions),
//!   written through a bounded queue and followed by a watch.
//! - [`mqtt_forward`]: MQTT devices (the server's MQTT listener) into the ingest log, from
//!   the server's own `$MQTT_msgs` stream, acknowledged there only once stored.
//!
//! The choices and what was verified are in `docs/adr/0039-nats-jetstream-ingest.md`.
//!
//! # A node, wired
//!
//! ```no_run
//! use std::time::Duration;
//! use beffroi_nats::{consume, lease::LeaseTiming, lease_kv, stream::IngestLayout};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn node() -> Result<(), beffroi_nats::NatsError> {
//! let client = beffroi_nats::connect("nats://10.0.0.1:4222,nats://10.0.0.2:4222", "node-1").await?;
//! let js = beffroi_nats::async_nats::jetstream::new(client);
//! let layout = IngestLayout::new("dijon", 16, 3);
//! let stream = beffroi_nats::stream::ensure_ingest_stream(&js, &layout).await?;
//! let cfg = consume::ConsumeConfig::default();
//! let timing = LeaseTiming::new(Duration::from_secs(15));
//! let (members, leases) = lease_kv::ensure_buckets(&js, "dijon", 3, timing).await?;
//! let manager = lease_kv::LeaseManager::new("node-1", 16, timing, members, leases)?;
//! let ownership = manager.ownership();
//! let shutdown = CancellationToken::new();
//! tokio::spawn(manager.run(shutdown.clone()));
//! let stats = std::sync::Arc::new(consume::ConsumeStats::default());
//! lease_kv::supervise_partitions(
//!     ownership,
//!     move |p, token| {
//!         let (stream, layout, cfg, stats) = (stream.clone(), layout.clone(), cfg.clone(), stats.clone());
//!         async move {
//!             let Ok(consumer) = consume::ensure_partition_consumer(&stream, &layout, p, &cfg).await
//!             else {
//!                 return; // started again after `lease_kv::RESTART_PAUSE` while owned
//!             };
//!             consume::run_partition(consumer, p, cfg, stats, token, |batch| async move {
//!                 // Hand `batch` to the engine; Ok only once it is committed.
//!                 let _ = batch;
//!                 Ok::<(), String>(())
//!             })
//!             .await;
//!         }
//!     },
//!     shutdown,
//! )
//! .await;
//! # Ok(())
//! # }
//! ```
//!
//! **API boundary:** only the `async_nats` connection, JetStream context, stream, consumer and
//! KV handles cross it; the engine sees [`consume::Delivered`] batches and a commit callback.

pub mod consume;
pub mod lease;
pub mod lease_kv;
pub mod mqtt_forward;
pub mod partition;
pub mod publish;
pub mod shared_kv;
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
