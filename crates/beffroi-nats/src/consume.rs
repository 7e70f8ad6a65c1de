//! A durable pull consumer per partition: fetch a batch, hand it to the caller's commit, and
//! acknowledge only once the commit returned `Ok`.
//!
//! # Acknowledging a batch with one ack (`AckPolicy::All`)
//!
//! The consumers use `AckPolicy::All`: acknowledging a message acknowledges every message of
//! the consumer with a lower or equal stream sequence that was delivered and not yet
//! acknowledged. One ack per committed batch, instead of one per reading, is then correct
//! exactly when *every delivered, unacknowledged message is in batches that were committed*:
//! otherwise the ack would also settle a message nobody committed. The loop below is the
//! only fetcher of its partition (the partition lease, [`crate::lease`]) and fetches,
//! commits and acks one batch after the other, so this holds in the common case; it can fail
//! when
//! - a previous owner of the partition died (or lost its lease) with a batch in flight:
//!   those messages are pending, redelivered after `ack_wait`;
//! - a fetch request expired on our side while the server was delivering to it: that message
//!   is pending and nobody has it.
//!
//! So before acking, the loop proves the condition, cheaply when it can:
//! - **fast path**: the previous ack left nothing pending (it was confirmed by the server,
//!   `double_ack`), and this batch's delivery sequences follow the last one we saw without a
//!   gap. No other delivery happened in between, so everything pending is in this batch.
//! - **otherwise** it asks the server: messages at or below the ack floor leave the set of
//!   committed-but-unacked messages we hold, and if the consumer's `num_ack_pending` equals
//!   the size of that set, everything pending is ours and committed.
//!
//! If neither holds the ack is *withheld* ([`ConsumeStats::acks_withheld`]): the committed
//! messages stay in the held set, and once the outstanding ones are redelivered to us after
//! `ack_wait` and committed, the count matches and one ack settles them all. The consumer's
//! `max_ack_pending` is [`PENDING_BATCHES`] batches, so the set stays bounded, and a new
//! owner whose predecessor died with deliveries in flight goes on committing while it waits
//! for them (were it one batch, the dead node's deliveries and the first held batch would
//! fill it, and nothing would be delivered until the redelivery). The ack goes to the
//! message with the highest stream sequence of the held set.
//!
//! A commit that fails acknowledges nothing: its messages are redelivered after `ack_wait`
//! (so a commit must take less than `ack_wait`), and commits must be idempotent — a batch
//! whose ack was lost (a node killed between commit and ack) is delivered again. Beffroi's
//! stores insert readings idempotently.
//!
//! # Overload: the consumer waits
//!
//! A partition fetches its next batch only after the previous one is committed and acked, so
//! a slow store slows the fetching and readings wait in the stream (bounded by its limits),
//! not in memory. [`channel_commit`] hands batches to a bounded channel (the engine's ingest
//! queue): if the channel stays full beyond its timeout, the batch is *dropped from our side*,
//! counted in [`ConsumeStats::overload_drops`], not acknowledged, and redelivered later.
//! Redeliveries are counted too ([`ConsumeStats::redelivered`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::NatsError;
use crate::stream::IngestLayout;
use crate::subject::{IngestSubject, partition_filter};

/// One reading delivered from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    pub subject: IngestSubject,
    pub partition: u32,
    /// `Nats-Msg-Id` of the publisher, if any (MQTT publishes have none).
    pub msg_id: Option<String>,
    pub payload: Bytes,
    pub stream_sequence: u64,
    /// How many times this message was delivered (1: first time).
    pub delivered: u64,
}

/// How many batches a partition's consumer may have delivered and not acknowledged.
pub const PENDING_BATCHES: usize = 8;

/// Settings of the partition consumers.
#[derive(Clone, Debug)]
pub struct ConsumeConfig {
    /// Most messages in a batch; the consumer's `max_ack_pending` is [`PENDING_BATCHES`]
    /// times this.
    pub batch_max: usize,
    /// How long a fetch waits for the batch to fill.
    pub max_wait: Duration,
    /// After this long without an ack a delivered message is redelivered. Longer than any
    /// commit.
    pub ack_wait: Duration,
    /// Pause after a failed fetch or commit.
    pub retry_pause: Duration,
}

impl Default for ConsumeConfig {
    fn default() -> Self {
        ConsumeConfig {
            batch_max: 256,
            max_wait: Duration::from_millis(200),
            ack_wait: Duration::from_secs(30),
            retry_pause: Duration::from_millis(200),
        }
    }
}

impl ConsumeConfig {
    /// A batch of at least one message; a fetch shorter than `ack_wait`, or every batch would
    /// be redelivered while it is being fetched.
    pub fn check(&self) -> Result<(), NatsError> {
        if self.batch_max == 0 {
            return Err(NatsError::Config("batch_max must be at least 1".into()));
        }
        if self.max_wait.is_zero() || self.max_wait >= self.ack_wait {
            return Err(NatsError::Config(format!(
                "max_wait ({:?}) must be above zero and below ack_wait ({:?})",
                self.max_wait, self.ack_wait
            )));
        }
        Ok(())
    }
}

/// Counters of the partition consumers. Relaxed atomics.
#[derive(Debug, Default)]
pub struct ConsumeStats {
    pub batches: AtomicU64,
    pub messages: AtomicU64,
    /// Messages delivered more than once.
    pub redelivered: AtomicU64,
    /// Messages whose subject is not an ingest subject: skipped (settled with their batch).
    pub malformed: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Batches not handed over because the bounded channel stayed full (redelivered later).
    pub overload_drops: AtomicU64,
    pub acks: AtomicU64,
    /// Acks proven by asking the server (not the fast path).
    pub acks_checked: AtomicU64,
    pub acks_withheld: AtomicU64,
    pub ack_failures: AtomicU64,
    pub fetch_failures: AtomicU64,
}

/// The durable consumer name of a partition.
pub fn consumer_name(partition: u32) -> String {
    format!("ingest-p{partition}")
}

/// Creates (idempotently) the durable pull consumer of `partition`.
pub async fn ensure_partition_consumer(
    stream: &jetstream::stream::Stream,
    layout: &IngestLayout,
    partition: u32,
    cfg: &ConsumeConfig,
) -> Result<consumer::PullConsumer, NatsError> {
    cfg.check()?;
    let name = consumer_name(partition);
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: partition_filter(&layout.territory, partition),
        ack_policy: consumer::AckPolicy::All,
        ack_wait: cfg.ack_wait,
        max_ack_pending: i64::try_from(cfg.batch_max.saturating_mul(PENDING_BATCHES))
            .unwrap_or(i64::MAX),
        deliver_policy: consumer::DeliverPolicy::All,
        num_replicas: layout.replicas(),
        ..Default::default()
    };
    stream
        .get_or_create_consumer(&name, config)
        .await
        .map_err(|e| NatsError::Consumer(e.to_string()))
}

/// What the loop knows about the messages it holds.
#[derive(Default)]
struct AckState {
    /// Committed, not yet acknowledged: stream sequence → the message (to ack the highest).
    held: BTreeMap<u64, jetstream::Message>,
    /// Nothing was pending after our last confirmed ack, up to `last_delivery`.
    clean: bool,
    last_delivery: u64,
}

/// Runs the fetch → commit → ack loop of one partition until `shutdown` (the partition's lease
/// lost, or the node stopping). `commit` gets each batch (possibly empty of readings if all
/// were malformed) and must return `Ok` only once the readings are durable.
pub async fn run_partition<F, Fut, E>(
    consumer: consumer::PullConsumer,
    partition: u32,
    cfg: ConsumeConfig,
    stats: Arc<ConsumeStats>,
    shutdown: CancellationToken,
    mut commit: F,
) where
    F: FnMut(Vec<Delivered>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut state = AckState::default();
    while !shutdown.is_cancelled() {
        let messages = tokio::select! {
            () = shutdown.cancelled() => return,
            m = fetch(&consumer, &cfg) => m,
        };
        let messages = match messages {
            Ok(m) if m.is_empty() => continue,
            Ok(m) => m,
            Err(e) => {
                stats.fetch_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(partition, error = %e, "fetch failed");
                tokio::time::sleep(cfg.retry_pause).await;
                continue;
            }
        };
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .messages
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let mut batch = Vec::with_capacity(messages.len());
        let mut deliveries = Vec::with_capacity(messages.len());
        let mut settled = Vec::with_capacity(messages.len());
        for m in messages {
            let Ok(info) = m.info() else {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (sseq, dseq, delivered) = (
                info.stream_sequence,
                info.consumer_sequence,
                u64::try_from(info.delivered).unwrap_or(1),
            );
            if delivered > 1 {
                stats.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            deliveries.push(dseq);
            match IngestSubject::parse(m.subject.as_str()) {
                Ok((subject, p)) => batch.push(Delivered {
                    subject,
                    partition: p.unwrap_or(partition),
                    msg_id: m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                        .map(|v| v.as_str().to_owned()),
                    payload: m.payload.clone(),
                    stream_sequence: sseq,
                    delivered,
                }),
                Err(_) => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            settled.push((sseq, m));
        }
        if let Err(e) = commit(batch).await {
            stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(partition, error = %e, "commit failed; the batch will be redelivered");
            state.clean = false;
            tokio::time::sleep(cfg.retry_pause).await;
            continue;
        }
        deliveries.sort_unstable();
        let contiguous = state.clean
            && deliveries
                .iter()
                .zip(state.last_delivery + 1..)
                .all(|(&d, expected)| d == expected);
        state.last_delivery = state
            .last_delivery
            .max(deliveries.last().copied().unwrap_or(0));
        state.held.extend(settled);
        if shutdown.is_cancelled() {
            // The lease may be someone else's now: an ack could settle their deliveries.
            return;
        }
        ack_held(&consumer, &mut state, contiguous, &stats, partition).await;
    }
}

/// How long past its own expiry a fetch may wait for the server before it is given up: a
/// pull request sent to a server that then died gets no answer, and the consumer would wait
/// for ever. Messages delivered to an abandoned fetch come back after `ack_wait`.
pub const FETCH_SLACK: Duration = Duration::from_secs(1);

async fn fetch(
    consumer: &consumer::PullConsumer,
    cfg: &ConsumeConfig,
) -> Result<Vec<jetstream::Message>, NatsError> {
    fetch_ready(consumer, cfg.batch_max, cfg.max_wait).await
}

/// Up to `batch_max` messages: those ready now, without waiting; when none is, the first to
/// arrive within `max_wait`, as soon as it arrives. A batch is never held back for more to
/// come (a pull for `batch_max` would wait until it is full or expires, `max_wait` of
/// latency at every stage at a low rate): under load the next call finds many ready, at a
/// trickle each message goes on at once. Bounded by `max_wait` + [`FETCH_SLACK`].
pub(crate) async fn fetch_ready(
    consumer: &consumer::PullConsumer,
    batch_max: usize,
    max_wait: Duration,
) -> Result<Vec<jetstream::Message>, NatsError> {
    tokio::time::timeout(max_wait + FETCH_SLACK, async {
        let ready = drain(consumer.fetch().max_messages(batch_max).messages().await).await?;
        if !ready.is_empty() {
            return Ok(ready);
        }
        drain(
            consumer
                .batch()
                .max_messages(1)
                .expires(max_wait)
                .messages()
                .await,
        )
        .await
    })
    .await
    .map_err(|_| NatsError::Consumer("fetch got no answer in time".into()))?
}

async fn drain(
    batch: Result<consumer::pull::Batch, consumer::pull::BatchError>,
) -> Result<Vec<jetstream::Message>, NatsError> {
    let mut batch = batch.map_err(|e| NatsError::Consumer(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(m) = batch.next().await {
        out.push(m.map_err(|e| NatsError::Consumer(e.to_string()))?);
    }
    Ok(out)
}

/// Acks the held set with one ack if that provably settles only held messages.
async fn ack_held(
    consumer: &consumer::PullConsumer,
    state: &mut AckState,
    contiguous: bool,
    stats: &ConsumeStats,
    partition: u32,
) {
    if !contiguous {
        let info = match consumer.get_info().await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(partition, error = %e, "consumer info failed; ack withheld");
                state.clean = false;
                stats.acks_withheld.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        // Already acknowledged (an earlier ack whose confirmation was lost).
        let floor = info.ack_floor.stream_sequence;
        state.held.retain(|&sseq, _| sseq > floor);
        if info.num_ack_pending != state.held.len() {
            tracing::debug!(
                partition,
                pending = info.num_ack_pending,
                held = state.held.len(),
                "deliveries outstanding elsewhere; ack withheld until they are redelivered"
            );
            state.clean = false;
            stats.acks_withheld.fetch_add(1, Ordering::Relaxed);
            return;
        }
        stats.acks_checked.fetch_add(1, Ordering::Relaxed);
    }
    let Some((_, last)) = state.held.last_key_value() else {
        state.clean = true;
        return;
    };
    match last.double_ack().await {
        Ok(()) => {
            stats.acks.fetch_add(1, Ordering::Relaxed);
            state.held.clear();
            state.clean = true;
        }
        Err(e) => {
            stats.ack_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(partition, error = %e, "ack failed; checked again next batch");
            state.clean = false;
        }
    }
}

/// A batch handed over a channel, with where to report its commit.
#[derive(Debug)]
pub struct CommitRequest {
    pub batch: Vec<Delivered>,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// The future of a [`channel_commit`] callback.
pub type CommitFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A commit callback that hands each batch to a bounded channel and waits for its outcome.
/// When the channel stays full for `timeout` the batch is dropped (counted in
/// `overload_drops`, not acknowledged, redelivered later).
pub fn channel_commit(
    tx: mpsc::Sender<CommitRequest>,
    timeout: Duration,
    stats: Arc<ConsumeStats>,
) -> impl FnMut(Vec<Delivered>) -> CommitFuture {
    move |batch| {
        let tx = tx.clone();
        let stats = stats.clone();
        Box::pin(async move {
            let (done, outcome) = oneshot::channel();
            if tx
                .send_timeout(CommitRequest { batch, done }, timeout)
                .await
                .is_err()
            {
                stats.overload_drops.fetch_add(1, Ordering::Relaxed);
                return Err("ingest channel full or closed".to_owned());
            }
            outcome
                .await
                .unwrap_or_else(|_| Err("commit dropped without an outcome".to_owned()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(seq: u64) -> Delivered {
        Delivered {
            subject: IngestSubject {
                territory: "t".into(),
                commune: "c".into(),
                device: "d".into(),
                kind: "senml".into(),
            },
            partition: 0,
            msg_id: Some(format!("m{seq}")),
            payload: Bytes::from_static(b"[]"),
            stream_sequence: seq,
            delivered: 1,
        }
    }

    #[test]
    fn configurations_that_cannot_work_are_refused() {
        assert!(ConsumeConfig::default().check().is_ok());
        let empty = ConsumeConfig {
            batch_max: 0,
            ..ConsumeConfig::default()
        };
        assert!(empty.check().is_err());
        let slow = ConsumeConfig {
            max_wait: Duration::from_secs(60),
            ..ConsumeConfig::default()
        };
        assert!(slow.check().is_err());
    }

    #[tokio::test]
    async fn a_full_channel_drops_the_batch_and_counts_it() {
        let stats = Arc::new(ConsumeStats::default());
        let (tx, mut rx) = mpsc::channel(1);
        let mut commit = channel_commit(tx, Duration::from_millis(20), stats.clone());
        // The engine side answers the first batch.
        let first = commit(vec![delivered(1)]);
        let engine = async {
            let req = rx.recv().await.expect("request");
            assert_eq!(req.batch.len(), 1);
            let _ = req.done.send(Ok(()));
        };
        let (outcome, ()) = tokio::join!(first, engine);
        assert_eq!(outcome, Ok(()));
        // Nobody reads: the second fills the channel and waits for an outcome that never
        // comes; the third finds the channel full and is dropped.
        let second = commit(vec![delivered(2)]);
        let second = tokio::spawn(second);
        tokio::task::yield_now().await;
        let third = commit(vec![delivered(3)]).await;
        assert!(third.is_err());
        assert_eq!(stats.overload_drops.load(Ordering::Relaxed), 1);
        // The engine fails the second: an error, nothing acknowledged.
        let req = rx.recv().await.expect("request");
        let _ = req.done.send(Err("store down".into()));
        assert_eq!(second.await.expect("task"), Err("store down".to_owned()));
    }
}
