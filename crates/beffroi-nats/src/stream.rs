//! The ingest stream of a territory, created idempotently.
//!
//! - Name `BEFFROI_<territory>_IN` (the territory escaped, `~` written `_`), subjects
//!   `beffroi.<territory>.in.*.*.*`: a subject of another shape has no stream, and a
//!   JetStream publish to it fails ("no responders") instead of being lost.
//! - On storage the server rewrites each subject to
//!   `beffroi.<territory>.part.{{partition(P,k)}}.<commune>.<device>.<kind>` (a stream subject
//!   transform, server 2.10+), `k` the wildcard of the [`PartitionKey`]: a durable consumer per
//!   partition then filters on `beffroi.<territory>.part.<p>.>`.
//! - File storage, `replicas = min(3, cluster size)`, a duplicate window: a publish retried
//!   with the same `Nats-Msg-Id` within the window is stored once (the PubAck then says
//!   `duplicate`).
//!
//! Creating a stream that exists with the same configuration succeeds, so every node can call
//! [`ensure_ingest_stream`] at start-up; a stream that exists with another partition count or
//! key is an error ([`NatsError::Stream`]), never silently rewritten.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::NatsError;
use crate::partition::PartitionKey;
use crate::subject::{INGEST, NAMESPACE, PARTITIONED, encode_token, ingest_filter};

/// How a territory's ingest log is laid out.
#[derive(Clone, Debug)]
pub struct IngestLayout {
    pub territory: String,
    /// Number of partitions `P` (1..=1024).
    pub partitions: u32,
    pub key: PartitionKey,
    /// Nodes of the NATS cluster; the stream has `min(3, cluster_size)` replicas.
    pub cluster_size: usize,
    /// How long a message id is remembered for deduplication.
    pub duplicate_window: Duration,
    /// How long readings stay in the log (0: forever).
    pub max_age: Duration,
}

impl IngestLayout {
    pub fn new(territory: impl Into<String>, partitions: u32, cluster_size: usize) -> Self {
        IngestLayout {
            territory: territory.into(),
            partitions,
            key: PartitionKey::default(),
            cluster_size,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }

    pub fn stream_name(&self) -> String {
        format!(
            "BEFFROI_{}_IN",
            encode_token(&self.territory).replace('~', "_")
        )
    }

    pub fn replicas(&self) -> usize {
        self.cluster_size.clamp(1, 3)
    }

    /// The stream's subject transform: published form → stored form with the partition.
    pub fn transform(&self) -> stream::SubjectTransform {
        let t = encode_token(&self.territory);
        stream::SubjectTransform {
            source: format!("{NAMESPACE}.{t}.{INGEST}.*.*.*"),
            destination: format!(
                "{NAMESPACE}.{t}.{PARTITIONED}.{{{{partition({},{})}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}",
                self.partitions,
                self.key.wildcard()
            ),
        }
    }

    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream_name(),
            description: Some(format!(
                "Beffroi ingest log of territory {:?}: {} partitions by {:?}",
                self.territory, self.partitions, self.key
            )),
            subjects: vec![ingest_filter(&self.territory)],
            subject_transform: Some(self.transform()),
            storage: stream::StorageType::File,
            num_replicas: self.replicas(),
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        }
    }

    fn check(&self) -> Result<(), NatsError> {
        if !(1..=1024).contains(&self.partitions) {
            return Err(NatsError::Config(format!(
                "partitions must be within 1..=1024, not {}",
                self.partitions
            )));
        }
        if self.duplicate_window.is_zero() {
            return Err(NatsError::Config(
                "the duplicate window must not be zero".into(),
            ));
        }
        Ok(())
    }
}

/// Creates the territory's ingest stream, or checks that the existing one has this layout.
pub async fn ensure_ingest_stream(
    js: &jetstream::Context,
    layout: &IngestLayout,
) -> Result<stream::Stream, NatsError> {
    layout.check()?;
    let config = layout.stream_config();
    match js.get_stream(&config.name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| NatsError::Stream(e.to_string()))?;
            if info.config.subject_transform != config.subject_transform
                || info.config.subjects != config.subjects
            {
                return Err(NatsError::Stream(format!(
                    "stream {} exists with another layout ({:?} on {:?}); a new partition count \
                     or key needs a drained stream",
                    config.name, info.config.subject_transform, info.config.subjects
                )));
            }
            Ok(existing)
        }
        Err(_) => js
            .create_stream(config)
            .await
            .map_err(|e| NatsError::Stream(e.to_string())),
    }
}
