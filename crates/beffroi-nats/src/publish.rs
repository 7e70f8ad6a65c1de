//! Publishing readings into the ingest log and awaiting the JetStream PubAck.
//!
//! A PubAck means the stream's leader stored the reading and a quorum of its replicas has
//! it: only then may the HTTP ingest answer its client. [`Publisher::publish_batch`] sends a
//! whole batch before awaiting any ack, so a batch costs about one round trip, not one per
//! reading.
//!
//! Every reading carries its id in `Nats-Msg-Id`. A publish that failed or whose ack was lost
//! (a node killed, a leader elected meanwhile) is sent again with the same id until its
//! deadline: the stream's duplicate window stores it once, and the second PubAck says
//! `duplicate` ([`PublishStats::duplicates`]). So the id must be the same for the same
//! reading, e.g. a hash of (device, time, payload) or the sender's own id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;

use crate::NatsError;
use crate::subject::IngestSubject;

/// One reading to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub subject: IngestSubject,
    /// The deduplication id (`Nats-Msg-Id`): the same for every attempt of one reading.
    pub msg_id: String,
    pub payload: Bytes,
}

/// Where a reading was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub sequence: u64,
    /// The stream had this id already (an earlier attempt was stored).
    pub duplicate: bool,
}

/// Counters of a publisher. Relaxed atomics: read for metrics and tests.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub published: AtomicU64,
    pub duplicates: AtomicU64,
    /// Attempts that failed and were sent again.
    pub retries: AtomicU64,
    /// Readings given up at their deadline (the caller must not acknowledge them).
    pub failed: AtomicU64,
}

/// Publishes readings with acks, retrying with the same message id.
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    /// How long one reading may be retried before it is reported failed.
    pub deadline: Duration,
    /// Pause between two rounds of retries.
    pub retry_pause: Duration,
    pub stats: Arc<PublishStats>,
}

impl Publisher {
    pub fn new(js: jetstream::Context) -> Self {
        Publisher {
            js,
            deadline: Duration::from_secs(10),
            retry_pause: Duration::from_millis(100),
            stats: Arc::default(),
        }
    }

    /// Publishes one reading; Ok once stored.
    pub async fn publish(&self, reading: &Outgoing) -> Result<Stored, NatsError> {
        self.publish_batch(std::slice::from_ref(reading))
            .await
            .pop()
            .unwrap_or_else(|| Err(NatsError::Publish("empty batch".into())))
    }

    /// Publishes a batch: every reading is sent, then every ack awaited together; the failed
    /// ones are sent again (same ids) until [`Publisher::deadline`]. One result per reading,
    /// in order.
    pub async fn publish_batch(&self, readings: &[Outgoing]) -> Vec<Result<Stored, NatsError>> {
        let started = Instant::now();
        let mut results: Vec<Option<Result<Stored, NatsError>>> =
            readings.iter().map(|_| None).collect();
        let mut todo: Vec<usize> = (0..readings.len()).collect();
        loop {
            let outcomes =
                futures::future::join_all(todo.iter().map(|&i| self.attempt(&readings[i]))).await;
            // The sends are in flight together: `attempt` awaits the send, then its ack.
            let mut again = Vec::new();
            for (i, outcome) in todo.iter().copied().zip(outcomes) {
                match outcome {
                    Ok(stored) => {
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                        if stored.duplicate {
                            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        results[i] = Some(Ok(stored));
                    }
                    Err(e) => {
                        results[i] = Some(Err(e));
                        again.push(i);
                    }
                }
            }
            if again.is_empty() || started.elapsed() >= self.deadline {
                self.stats
                    .failed
                    .fetch_add(again.len() as u64, Ordering::Relaxed);
                break;
            }
            self.stats
                .retries
                .fetch_add(again.len() as u64, Ordering::Relaxed);
            tracing::debug!(count = again.len(), "retrying publishes with their ids");
            tokio::time::sleep(self.retry_pause).await;
            todo = again;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(NatsError::Publish("not attempted".into()))))
            .collect()
    }

    async fn attempt(&self, reading: &Outgoing) -> Result<Stored, NatsError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, reading.msg_id.as_str());
        let ack = self
            .js
            .publish_with_headers(reading.subject.subject(), headers, reading.payload.clone())
            .await
            .map_err(|e| NatsError::Publish(e.to_string()))?;
        let ack = ack.await.map_err(|e| NatsError::Publish(e.to_string()))?;
        Ok(Stored {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}
