//! A server as one node of a cluster (`[cluster] nats`): NATS JetStream is the ingest log
//! and decides, by a lease, which node runs the engine; PostgreSQL is the store they share.
//!
//! ```text
//!   devices ─MQTT─▶ NATS MQTT listener ─▶ $MQTT_msgs ─forwarder─┐
//!   HTTP ingest (the active node) ──────── publish, PubAck ─────┴▶ ingest stream, P partitions
//!                                                                      │ durable pull consumers
//!   lease `p0` (JetStream KV) ─▶ the active node ◀─────────────────────┘ batch → commit → ack
//!                                 engine restored from PostgreSQL, ticks, acts, serves the console
//!   the other nodes: standby — alive, not ready, waiting for the lease
//! ```
//!
//! One engine is active per territory: the pipeline's state is territory-wide (crises,
//! units, escalation, correlation across communes, the alarm-flood budget per operator), so
//! two nodes evaluating parts of it would each see half. A standby neither ticks nor acts;
//! when the active node stops renewing its lease, a standby takes it, restores the engine
//! from the store and consumes the partitions from where the last acknowledgement left
//! them. Readings committed but not acknowledged are delivered again and stored once (the
//! observation key); their incidents are found in the restored state and joined, not
//! opened twice. A node that loses its lease stops at once (exit status 75), so that two
//! nodes never act together for longer than its drain. See ADR 0041.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use beffroi_engine::source::{IngestSource, Overload, SourceConfig, SourceError, SourcePort};
use beffroi_engine::{Ack, AckOutcome, Envelope, Source};
use beffroi_nats::consume::{self, ConsumeConfig, ConsumeStats, Delivered};
use beffroi_nats::lease::LeaseTiming;
use beffroi_nats::lease_kv::{self, Ownership};
use beffroi_nats::mqtt_forward::{self, ForwardStats};
use beffroi_nats::publish::{Outgoing, Publisher};
use beffroi_nats::stream::IngestLayout;
use beffroi_nats::subject::IngestSubject;
use beffroi_wire::Format;
use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::NatsSettings;

/// The engine's name for readings from the ingest log.
pub const SOURCE: Source = Source::named("nats");
/// The lease whose holder runs the engine (the only key of a one-partition lease table).
const ACTIVE: u32 = 0;
/// The exit status of a node that lost its lease (`EX_TEMPFAIL`: start it again).
pub const LOST_LEASE_EXIT: u8 = 75;

/// Why a node stopped: it no longer held the lease.
#[derive(Debug)]
pub struct LeaseLost;

impl std::fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this node lost the territory's lease: another node runs the engine now")
    }
}

impl std::error::Error for LeaseLost {}

/// What a node shares between its standby and active phases.
pub struct Node {
    pub settings: NatsSettings,
    layout: IngestLayout,
    stream: beffroi_nats::async_nats::jetstream::stream::Stream,
    js: beffroi_nats::async_nats::jetstream::Context,
    ownership: watch::Receiver<Ownership>,
    /// Stops the lease manager, leaving the lease to expire.
    leases: CancellationToken,
    /// Stops it after releasing the lease.
    leave: CancellationToken,
    manager: Option<tokio::task::JoinHandle<()>>,
    /// Who holds the lease and the address it advertises (where a standby relays to).
    holders: watch::Receiver<lease_kv::Holders>,
    /// The live members and the address each advertises.
    members: watch::Receiver<std::collections::BTreeMap<String, bytes::Bytes>>,
    /// Ends the node's background tasks (the shared sessions).
    tasks: CancellationToken,
    /// Writes this node's session changes to the cluster's table.
    sessions: std::sync::OnceLock<beffroi_nats::shared_kv::SharedWriter>,
    pub stats: Arc<ClusterStats>,
}

/// Counters of a node, exposed on `/metrics`.
pub struct ClusterStats {
    /// One per partition of the ingest log.
    pub partitions: Vec<Arc<ConsumeStats>>,
    pub forward: Arc<ForwardStats>,
    pub publish: Arc<beffroi_nats::publish::PublishStats>,
    /// Readings from the log whose kind names no payload format: acknowledged, never stored.
    pub unknown_kinds: AtomicU64,
    /// 1 while this node runs the engine.
    pub active: AtomicU64,
    /// Milliseconds from the lease taken to the engine ready (0 before).
    pub takeover_ms: AtomicU64,
    /// The console's sessions shared with the other nodes.
    pub sessions: Arc<beffroi_nats::shared_kv::SharedStats>,
    /// Requests a standby relayed to the active node, and those it could not.
    pub relayed: AtomicU64,
    pub relay_failures: AtomicU64,
}

impl Node {
    /// Connects, makes sure the ingest stream and the lease buckets exist, and starts
    /// competing for the lease, advertising `console` (`host:port`) to the other nodes.
    pub async fn join(
        settings: NatsSettings,
        territory: &str,
        console: Option<String>,
    ) -> Result<Node> {
        let client = beffroi_nats::connect(&settings.servers, &settings.node)
            .await
            .context("[cluster] nats")?;
        let js = beffroi_nats::async_nats::jetstream::new(client);
        let layout = IngestLayout::new(territory, settings.partitions, settings.cluster_size);
        let stream = beffroi_nats::stream::ensure_ingest_stream(&js, &layout)
            .await
            .context("the ingest stream")?;
        // Renewed five times per ttl: a renewal that fails while a NATS server's loss has
        // the lease bucket electing a leader is tried again several times before the fence.
        let timing = LeaseTiming {
            ttl: settings.lease_ttl,
            renew_every: settings.lease_ttl / 5,
        };
        let (members, leases) =
            lease_kv::ensure_buckets(&js, territory, settings.cluster_size, timing)
                .await
                .context("the lease buckets")?;
        // Sticky: a node joining must not take the engine from the node running it.
        let mut manager = lease_kv::LeaseManager::new(&settings.node, 1, timing, members, leases)
            .context("[cluster] node")?
            .sticky();
        if let Some(console) = console {
            manager = manager.advertise(console.into_bytes());
        }
        let ownership = manager.ownership();
        let holders = manager.holders();
        let members = manager.members();
        let stop = CancellationToken::new();
        let leave = CancellationToken::new();
        let manager = tokio::spawn(manager.run_until(stop.clone(), leave.clone()));
        let stats = Arc::new(ClusterStats {
            partitions: (0..settings.partitions)
                .map(|_| Arc::new(ConsumeStats::default()))
                .collect(),
            forward: Arc::default(),
            publish: Arc::default(),
            unknown_kinds: AtomicU64::new(0),
            active: AtomicU64::new(0),
            takeover_ms: AtomicU64::new(0),
            sessions: Arc::default(),
            relayed: AtomicU64::new(0),
            relay_failures: AtomicU64::new(0),
        });
        Ok(Node {
            settings,
            layout,
            stream,
            js,
            ownership,
            leases: stop,
            leave,
            manager: Some(manager),
            holders,
            members,
            tasks: CancellationToken::new(),
            sessions: std::sync::OnceLock::new(),
            stats,
        })
    }

    /// Who holds the lease and what it advertises, as the last lease round read them.
    pub fn holders(&self) -> watch::Receiver<lease_kv::Holders> {
        self.holders.clone()
    }

    /// Keeps `peers` to the addresses the cluster's members advertise (IP literals; a node
    /// advertised by host name is trusted only through `[http] trusted_proxies`): the
    /// active node reads the client's address from a standby's `X-Forwarded-For`, so that
    /// logins relayed through a standby are throttled per client, not per standby.
    pub fn trust_peers(&self, peers: Arc<std::sync::RwLock<Vec<std::net::IpAddr>>>) {
        let mut members = self.members.clone();
        let stop = self.tasks.clone();
        tokio::spawn(async move {
            loop {
                let ips = peer_ips(&members.borrow_and_update());
                *peers.write().unwrap_or_else(|p| p.into_inner()) = ips;
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = members.changed() => if changed.is_err() { return },
                }
            }
        });
    }

    /// Shares `auth`'s console sessions with the other nodes through the bucket
    /// `beffroi_<t>_sessions` (entries expire with a session's absolute lifetime): what a
    /// node opens, uses and closes is written there, and what the others write is applied
    /// here, so the node that takes over honours the sessions of the one that died.
    pub async fn share_sessions(
        &self,
        territory: &str,
        auth: Arc<beffroi_api::Auth>,
    ) -> Result<()> {
        use beffroi_nats::shared_kv;
        let absolute = auth.policy().absolute.millis();
        let max_age = std::time::Duration::from_millis(u64::try_from(absolute).unwrap_or(0));
        let bucket = shared_kv::ensure_bucket(
            &self.js,
            territory,
            "sessions",
            self.settings.cluster_size,
            max_age,
        )
        .await
        .context("the sessions bucket")?;
        let stats = Arc::clone(&self.stats.sessions);
        let writer =
            shared_kv::SharedWriter::spawn(bucket.clone(), Arc::clone(&stats), self.tasks.clone());
        let _ = self.sessions.set(writer.clone());
        auth.share_sessions(Arc::new(SharedSessions(writer)));
        tokio::spawn(shared_kv::follow(
            bucket,
            stats,
            self.tasks.clone(),
            move |key, value| {
                let session = match value {
                    None => None,
                    Some(v) => match serde_json::from_slice(v) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::debug!(error = %e, "a shared session that does not parse");
                            return;
                        }
                    },
                };
                auth.apply_shared(key, session);
            },
        ));
        Ok(())
    }

    /// Waits until this node holds the lease (`true`) or `stop` is cancelled (`false`).
    pub async fn wait_active(&mut self, stop: &CancellationToken) -> bool {
        loop {
            if holds(&self.ownership.borrow_and_update()) {
                return true;
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                changed = self.ownership.changed() => if changed.is_err() { return false },
            }
        }
    }

    /// Resolves when this node no longer holds the lease: not renewed in time, or taken.
    pub fn lease_lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut ownership = self.ownership.clone();
        async move {
            loop {
                let until = ownership.borrow_and_update().get(&ACTIVE).copied();
                let Some(until) = until.filter(|u| *u > Instant::now()) else {
                    return;
                };
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
                    changed = ownership.changed() => if changed.is_err() { return },
                }
            }
        }
    }

    /// Stops competing for the lease (renewing it included): what a node that lost it does
    /// before it drains, so that it cannot take the lease back on its way out.
    pub fn resign(&self) -> CancellationToken {
        self.leases.clone()
    }

    /// HTTP ingest into the log, for the API.
    pub fn ingest_log(&self, territory: Arc<beffroi_core::Territory>) -> Arc<LogPublisher> {
        let mut publisher = Publisher::new(self.js.clone());
        publisher.stats = Arc::clone(&self.stats.publish);
        Arc::new(LogPublisher {
            publisher,
            territory,
            prefix: format!(
                "http-{}-{}",
                self.settings.node,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            ),
            next: AtomicU64::new(0),
        })
    }

    /// The log's partitions (and the MQTT forwarder) as one source of the engine.
    pub fn source(&self) -> LogSource {
        LogSource {
            layout: self.layout.clone(),
            stream: self.stream.clone(),
            js: self.js.clone(),
            stats: Arc::clone(&self.stats),
            // A dead node's deliveries come back after `ack_wait`: short enough that a
            // takeover is not held up long, well above any commit.
            config: ConsumeConfig {
                ack_wait: std::time::Duration::from_secs(10),
                ..ConsumeConfig::default()
            },
        }
    }
}

impl Node {
    /// Leaves the cluster on purpose, once the engine has drained: releases the lease so
    /// that a standby takes over at its next round instead of after the lease's ttl.
    pub async fn leave(mut self) {
        // The sessions first: a logout made just before the stop reaches the node that
        // takes over before it does.
        if let Some(w) = self.sessions.get()
            && !w.flush(std::time::Duration::from_secs(5)).await
        {
            tracing::warn!("session changes not all shared before leaving");
        }
        self.leave.cancel();
        if let Some(m) = self.manager.take() {
            let _ = m.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.leases.cancel();
        self.tasks.cancel();
    }
}

/// The IP addresses among the members' advertised `host:port` values (`[v6]:port` too).
fn peer_ips(members: &std::collections::BTreeMap<String, bytes::Bytes>) -> Vec<std::net::IpAddr> {
    let mut ips: Vec<std::net::IpAddr> = members
        .values()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter_map(crate::config::host_port)
        .filter_map(|(host, _)| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
        })
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

/// The console's sessions, written to the cluster's shared table.
struct SharedSessions(beffroi_nats::shared_kv::SharedWriter);

impl beffroi_api::auth::SessionShare for SharedSessions {
    fn changed(&self, key: &str, session: Option<&beffroi_api::auth::SharedSession>) {
        let value = match session.map(serde_json::to_vec).transpose() {
            Ok(v) => v.map(bytes::Bytes::from),
            Err(e) => {
                tracing::debug!(error = %e, "a session that does not serialise");
                return;
            }
        };
        self.0.change(key, value);
    }
}

fn holds(o: &Ownership) -> bool {
    o.get(&ACTIVE).is_some_and(|until| *until > Instant::now())
}

/// Appends HTTP readings to the ingest log: one message per request, its id unique to this
/// node's run, its subject naming the path's device and that device's commune.
pub struct LogPublisher {
    publisher: Publisher,
    territory: Arc<beffroi_core::Territory>,
    prefix: String,
    next: AtomicU64,
}

impl LogPublisher {
    fn subject(&self, device: Option<&str>, format: Format) -> IngestSubject {
        let t = &self.territory;
        let commune = device
            .and_then(|d| t.device_id(d))
            .map(|d| t.site(t.device(d).site).commune)
            .map(|c| t.commune(c).id.to_string())
            .unwrap_or_default();
        IngestSubject {
            territory: t.id.to_string(),
            commune,
            device: device.unwrap_or_default().to_owned(),
            kind: format.as_str().to_owned(),
        }
    }
}

impl beffroi_api::IngestLog for LogPublisher {
    fn append(
        &self,
        device: Option<String>,
        format: Format,
        body: bytes::Bytes,
    ) -> BoxFuture<'static, Result<beffroi_api::LogReceipt, String>> {
        let reading = Outgoing {
            subject: self.subject(device.as_deref(), format),
            msg_id: format!(
                "{}-{}",
                self.prefix,
                self.next.fetch_add(1, Ordering::Relaxed)
            ),
            payload: body,
        };
        let publisher = self.publisher.clone();
        Box::pin(async move {
            publisher
                .publish(&reading)
                .await
                .map(|s| beffroi_api::LogReceipt {
                    sequence: s.sequence,
                    duplicate: s.duplicate,
                })
                .map_err(|e| format!("the ingest log did not take the reading: {e}"))
        })
    }
}

/// The ingest log's partitions as a source: each partition's batches handed to the engine,
/// acknowledged to the log once committed. Runs the MQTT forwarder beside them.
pub struct LogSource {
    layout: IngestLayout,
    stream: beffroi_nats::async_nats::jetstream::stream::Stream,
    js: beffroi_nats::async_nats::jetstream::Context,
    stats: Arc<ClusterStats>,
    config: ConsumeConfig,
}

impl IngestSource for LogSource {
    fn config(&self) -> SourceConfig {
        SourceConfig {
            source: SOURCE,
            // The log keeps the backlog: a partition waits for room.
            overload: Overload::Wait,
        }
    }

    fn run(
        self: Box<Self>,
        port: SourcePort,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for p in 0..self.layout.partitions {
                let (stream, layout, cfg) = (
                    self.stream.clone(),
                    self.layout.clone(),
                    self.config.clone(),
                );
                let (port, stop) = (port.clone(), shutdown.clone());
                let stats = Arc::clone(&self.stats);
                tasks.spawn(async move {
                    run_partition(stream, layout, p, cfg, port, stats, stop).await;
                });
            }
            {
                let (js, layout, cfg) = (self.js.clone(), self.layout.clone(), self.config.clone());
                let stats = Arc::clone(&self.stats);
                let stop = shutdown.clone();
                tasks.spawn(async move { forward_mqtt(js, layout, cfg, stats, stop).await });
            }
            while tasks.join_next().await.is_some() {}
            Ok(())
        })
    }
}

/// One partition until `stop`: its consumer (made again after a failure), batches committed
/// then acknowledged.
async fn run_partition(
    stream: beffroi_nats::async_nats::jetstream::stream::Stream,
    layout: IngestLayout,
    p: u32,
    cfg: ConsumeConfig,
    port: SourcePort,
    stats: Arc<ClusterStats>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let consumer = match consume::ensure_partition_consumer(&stream, &layout, p, &cfg).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "ingest consumer unavailable");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(lease_kv::RESTART_PAUSE) => continue,
                }
            }
        };
        // Readings of a partition are one ordered stream: after a failed commit the engine
        // refuses the rest of it, and the redelivered batch starts a new one.
        let ordered = Arc::new(AtomicU64::new(beffroi_engine::envelope::new_stream()));
        let partition_stats = Arc::clone(&stats.partitions[p as usize]);
        consume::run_partition(
            consumer,
            p,
            cfg.clone(),
            partition_stats,
            stop.clone(),
            |batch| {
                let (port, stats, ordered) =
                    (port.clone(), Arc::clone(&stats), Arc::clone(&ordered));
                async move {
                    let r = commit(&port, &stats, ordered.load(Ordering::Relaxed), batch).await;
                    if r.is_err() {
                        ordered.store(beffroi_engine::envelope::new_stream(), Ordering::Relaxed);
                    }
                    r
                }
            },
        )
        .await;
    }
}

/// Hands a batch to the engine and waits until every reading of it is committed (or
/// refused for good, as a stored rejection). `Err`: the log delivers the batch again.
async fn commit(
    port: &SourcePort,
    stats: &ClusterStats,
    stream: u64,
    batch: Vec<Delivered>,
) -> Result<(), String> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for d in batch {
        let Some(format) = Format::parse(&d.subject.kind) else {
            stats.unknown_kinds.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(subject = %d.subject, "no payload format of that name: skipped");
            continue;
        };
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            source: SOURCE,
            format,
            device_hint: (!d.subject.device.is_empty()).then(|| d.subject.device.as_str().into()),
            payload: d.payload,
            // The log does not say who published: a device proves itself by signing.
            authenticated: false,
            received: port.clock().now(),
            stream: Some(stream),
            ack: Some(Ack::new(move |o| {
                let _ = tx.send(o);
            })),
        };
        port.submit(env)
            .await
            .map_err(|_| "the engine is shutting down".to_string())?;
        outcomes.push(rx);
    }
    for rx in outcomes {
        match rx.await {
            Ok(AckOutcome::Stored { .. }) => {}
            Ok(AckOutcome::Failed(e)) => return Err(e),
            Err(_) => return Err("the engine stopped before storing".into()),
        }
    }
    Ok(())
}

/// Moves MQTT devices' readings from the NATS MQTT listener's stream into the log.
async fn forward_mqtt(
    js: beffroi_nats::async_nats::jetstream::Context,
    layout: IngestLayout,
    cfg: ConsumeConfig,
    stats: Arc<ClusterStats>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        match mqtt_forward::ensure_forward_consumer(&js, &layout, cfg.ack_wait).await {
            Ok(consumer) => {
                let mut publisher = Publisher::new(js.clone());
                publisher.stats = Arc::clone(&stats.publish);
                mqtt_forward::run_forwarder(
                    consumer,
                    layout.territory.clone(),
                    publisher,
                    cfg.batch_max,
                    cfg.max_wait,
                    Arc::clone(&stats.forward),
                    stop.clone(),
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "MQTT forwarder unavailable");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(lease_kv::RESTART_PAUSE) => {}
                }
            }
        }
    }
}

/// The node's counters on `/metrics`: per partition, the forwarder, the publisher, whether
/// it is active and how long its takeover took.
#[derive(Debug)]
pub struct ClusterCollector {
    stats: Arc<ClusterStats>,
    node: String,
}

impl std::fmt::Debug for ClusterStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStats")
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

impl ClusterCollector {
    pub fn new(stats: Arc<ClusterStats>, node: String) -> ClusterCollector {
        ClusterCollector { stats, node }
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Field = fn(&ConsumeStats) -> &AtomicU64;
        let per_partition: [(&str, &str, Field); 7] = [
            (
                "cluster_partition_messages",
                "Readings fetched from the ingest log, per partition",
                |s| &s.messages,
            ),
            (
                "cluster_partition_redelivered",
                "Readings the log delivered again (not acknowledged in time, or a node lost)",
                |s| &s.redelivered,
            ),
            (
                "cluster_partition_acks",
                "Acknowledgements to the log, one per committed batch",
                |s| &s.acks,
            ),
            (
                "cluster_partition_commit_failures",
                "Batches whose commit failed (delivered again)",
                |s| &s.commit_failures,
            ),
            (
                "cluster_partition_acks_withheld",
                "Acknowledgements put off because deliveries of another node were outstanding",
                |s| &s.acks_withheld,
            ),
            (
                "cluster_partition_fetch_failures",
                "Fetches from the ingest log that failed (retried)",
                |s| &s.fetch_failures,
            ),
            (
                "cluster_partition_malformed",
                "Messages on the log that are not ingest subjects (skipped)",
                |s| &s.malformed,
            ),
        ];
        for (name, help, field) in per_partition {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (p, s) in self.stats.partitions.iter().enumerate() {
                let labels = [("node", self.node.clone()), ("partition", p.to_string())];
                let c = ConstCounter::new(field(s).load(Ordering::Relaxed));
                c.encode(family.encode_family(&labels)?)?;
            }
        }
        let node = [("node", self.node.clone())];
        let forward = &self.stats.forward;
        let sessions = &self.stats.sessions;
        let counters: [(&str, &str, u64); 14] = [
            (
                "cluster_sessions_written",
                "Console session changes this node wrote to the cluster's shared table",
                sessions.written.load(Ordering::Relaxed),
            ),
            (
                "cluster_sessions_dropped",
                "Session changes dropped: the queue to the shared table was full, or it did not take them for 60 s",
                sessions.dropped.load(Ordering::Relaxed),
            ),
            (
                "cluster_sessions_write_failures",
                "Attempts to write a session change the shared table did not take (tried again)",
                sessions.failed.load(Ordering::Relaxed),
            ),
            (
                "cluster_sessions_received",
                "Session changes read from the shared table (this node's own included)",
                sessions.received.load(Ordering::Relaxed),
            ),
            (
                "cluster_relayed",
                "Requests this standby relayed to the node running the engine",
                self.stats.relayed.load(Ordering::Relaxed),
            ),
            (
                "cluster_relay_failures",
                "Requests this standby could not relay (no active node known, or it did not answer)",
                self.stats.relay_failures.load(Ordering::Relaxed),
            ),
            (
                "cluster_mqtt_forward_redelivered",
                "MQTT readings the listener's stream delivered to the forwarder again",
                forward.redelivered.load(Ordering::Relaxed),
            ),
            (
                "cluster_mqtt_forward_fetch_failures",
                "Forwarder fetches that failed or got no answer in time (retried)",
                forward.fetch_failures.load(Ordering::Relaxed),
            ),
            (
                "cluster_mqtt_forward_malformed",
                "MQTT messages on a device topic of the wrong shape (dropped, never ingested)",
                forward.malformed.load(Ordering::Relaxed),
            ),
            (
                "cluster_mqtt_forwarded",
                "MQTT readings moved from the MQTT listener's stream into the ingest log",
                self.stats.forward.forwarded.load(Ordering::Relaxed),
            ),
            (
                "cluster_mqtt_forward_failures",
                "Forwarded batches the ingest log did not take (forwarded again)",
                self.stats.forward.publish_failures.load(Ordering::Relaxed),
            ),
            (
                "cluster_log_published",
                "Readings this node appended to the ingest log (HTTP ingest and forwarder)",
                self.stats.publish.published.load(Ordering::Relaxed),
            ),
            (
                "cluster_log_publish_failures",
                "Readings the ingest log did not take before their deadline (the sender was told)",
                self.stats.publish.failed.load(Ordering::Relaxed),
            ),
            (
                "cluster_unknown_kinds",
                "Readings from the log whose kind names no payload format (skipped)",
                self.stats.unknown_kinds.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(
                encoder
                    .encode_descriptor(name, help, None, MetricType::Counter)?
                    .encode_family(&node)?,
            )?;
        }
        let gauges: [(&str, &str, i64); 2] = [
            (
                "cluster_active",
                "1 while this node holds the lease and runs the engine, 0 on standby",
                self.stats.active.load(Ordering::Relaxed) as i64,
            ),
            (
                "cluster_takeover_milliseconds",
                "From the lease taken to the engine restored and ready (0: never active)",
                self.stats.takeover_ms.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(
                encoder
                    .encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_family(&node)?,
            )?;
        }
        Ok(())
    }
}

/// What a standby answers when it cannot relay (no node running the engine is known or
/// reachable): `503` with the public code `standby` the console translates, and
/// `Retry-After: 1`.
pub fn standby_answer(node: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    beffroi_api::error::ApiError::new(
        beffroi_api::error::ErrorCode::Standby,
        format!("node `{node}` is on standby and reaches no node running the engine"),
    )
    .retry_after(1)
    .into_response()
}

/// How long since `start`, in whole milliseconds.
pub fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_the_ip_addresses_members_advertise() {
        let members: std::collections::BTreeMap<String, bytes::Bytes> = [
            ("n1", "10.0.0.11:8080"),
            ("n2", "[2001:db8::12]:8080"),
            ("n3", "node-3.local:8080"),
            ("n4", "alive"),
            ("n5", "10.0.0.11:9090"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), bytes::Bytes::from(v)))
        .collect();
        let ips: Vec<String> = peer_ips(&members).iter().map(ToString::to_string).collect();
        assert_eq!(ips, vec!["10.0.0.11", "2001:db8::12"]);
    }
}
