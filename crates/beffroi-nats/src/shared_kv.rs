//! A small key-value table every node of a cluster holds a copy of: written by whichever
//! node changes an entry, followed by all of them (the console's sessions).
//!
//! - [`ensure_bucket`]: the bucket, created idempotently, entries expiring after `max_age`.
//! - [`SharedWriter`]: puts and deletes queued on a bounded channel and written by one task,
//!   in order. A write that fails (the bucket electing a leader after a server was lost) is
//!   tried again with a growing pause, for up to [`GIVE_UP_AFTER`]. A logout lost there
//!   would leave the session valid on the other nodes. When the queue is full the change
//!   is dropped and counted: a caller never waits on NATS.
//! - [`follow`]: every entry's current value, then every change, handed to a callback; the
//!   watch is opened again after an error (the server it used was lost), which delivers the
//!   current values again — the callback must be idempotent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::NatsError;
use crate::subject::encode_token;

/// Changes waiting to be written before new ones are dropped.
pub const QUEUE: usize = 1024;
/// Pause before a lost watch is opened again.
const REWATCH_PAUSE: Duration = Duration::from_millis(500);
/// How long one change is tried before it is given up (and counted as dropped).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// One attempt's limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates (idempotently) the bucket `beffroi_<territory>_<name>`.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    territory: &str,
    name: &str,
    cluster_size: usize,
    max_age: Duration,
) -> Result<kv::Store, NatsError> {
    let base = format!("beffroi_{}", encode_token(territory).replace('~', "_"));
    js.create_or_update_key_value(kv::Config {
        bucket: format!("{base}_{name}"),
        history: 1,
        max_age,
        storage: jetstream::stream::StorageType::File,
        num_replicas: cluster_size.clamp(1, 3),
        ..Default::default()
    })
    .await
    .map_err(|e| NatsError::Kv(e.to_string()))
}

/// Counters of a shared table.
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Changes written.
    pub written: AtomicU64,
    /// Changes dropped: the queue was full, or NATS did not take them for
    /// [`GIVE_UP_AFTER`].
    pub dropped: AtomicU64,
    /// Attempts NATS refused or did not answer (tried again).
    pub failed: AtomicU64,
    /// Changes received from the table (this node's own included).
    pub received: AtomicU64,
}

/// The writing half: cheap to call from anywhere, never blocks.
#[derive(Clone)]
pub struct SharedWriter {
    tx: mpsc::Sender<(String, Option<Bytes>)>,
    stats: Arc<SharedStats>,
    /// Changes queued so far, and changes settled (written or given up): what
    /// [`SharedWriter::flush`] waits on.
    queued: Arc<AtomicU64>,
    settled: tokio::sync::watch::Sender<u64>,
}

impl SharedWriter {
    /// Starts the task that writes queued changes to `store` until `stop`.
    pub fn spawn(store: kv::Store, stats: Arc<SharedStats>, stop: CancellationToken) -> Self {
        let (tx, mut rx) = mpsc::channel::<(String, Option<Bytes>)>(QUEUE);
        let task_stats = Arc::clone(&stats);
        let settled = tokio::sync::watch::Sender::new(0u64);
        let task_settled = settled.clone();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    () = stop.cancelled() => return,
                    change = rx.recv() => change,
                };
                let Some((key, value)) = change else { return };
                let started = tokio::time::Instant::now();
                let mut pause = Duration::from_millis(100);
                loop {
                    let attempt = async {
                        match value.clone() {
                            Some(v) => store
                                .put(&key, v)
                                .await
                                .map(drop)
                                .map_err(|e| e.to_string()),
                            None => store.delete(&key).await.map_err(|e| e.to_string()),
                        }
                    };
                    let done = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
                        .await
                        .unwrap_or_else(|_| Err("no answer".into()));
                    match done {
                        Ok(()) => {
                            task_stats.written.fetch_add(1, Ordering::Relaxed);
                            task_settled.send_modify(|n| *n += 1);
                            break;
                        }
                        Err(e) => {
                            task_stats.failed.fetch_add(1, Ordering::Relaxed);
                            if started.elapsed() >= GIVE_UP_AFTER {
                                tracing::warn!(key, error = %e, "shared entry given up");
                                task_stats.dropped.fetch_add(1, Ordering::Relaxed);
                                task_settled.send_modify(|n| *n += 1);
                                break;
                            }
                            tracing::debug!(key, error = %e, "shared entry not written yet");
                        }
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        });
        SharedWriter {
            tx,
            stats,
            queued: Arc::default(),
            settled,
        }
    }

    /// Waits until every change queued before the call is written or given up, for at most
    /// `within`; whether it was. What a node stopping on purpose does before it hands over,
    /// so that its last logout is not lost with it.
    pub async fn flush(&self, within: Duration) -> bool {
        let target = self.queued.load(Ordering::Acquire);
        let mut settled = self.settled.subscribe();
        matches!(
            tokio::time::timeout(within, settled.wait_for(|n| *n >= target)).await,
            Ok(Ok(_))
        )
    }

    /// Queues `key` to be set to `value` (`None`: deleted); dropped and counted when the
    /// queue is full.
    pub fn change(&self, key: &str, value: Option<Bytes>) {
        if self.tx.try_send((key.to_string(), value)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.queued.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Hands every entry of `store` to `apply` (`None`: deleted or purged), its current values
/// first, then each change, until `stop`.
pub async fn follow<F>(store: kv::Store, stats: Arc<SharedStats>, stop: CancellationToken, apply: F)
where
    F: Fn(&str, Option<&[u8]>) + Send,
{
    loop {
        let watch = tokio::select! {
            () = stop.cancelled() => return,
            w = store.watch_with_history(">") => w,
        };
        match watch {
            Ok(mut entries) => loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = entries.next() => next,
                };
                match next {
                    Some(Ok(entry)) => {
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        match entry.operation {
                            kv::Operation::Put => apply(&entry.key, Some(&entry.value)),
                            kv::Operation::Delete | kv::Operation::Purge => apply(&entry.key, None),
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "shared table watch failed");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => tracing::debug!(error = %e, "shared table not watched"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REWATCH_PAUSE) => {}
        }
    }
}
