//! MQTT devices through the server's own MQTT listener, into the ingest log with nothing
//! lost between the device's PUBACK and the ingest stream.
//!
//! # Why a forwarder
//!
//! nats-server converts an MQTT topic into a subject (`/` → `.`, see the ADR) and, for a QoS 1
//! PUBLISH, (1) delivers it as a plain NATS message on that subject, then (2) stores it in the
//! server-managed stream `$MQTT_msgs` under `$MQTT.msgs.<subject>`, and (3) sends the PUBACK
//! once (2) succeeded. A user stream capturing the subject gets the message through (1): a
//! plain publish that the PUBACK does not wait for, dropped if that stream's leader dies before
//! storing it or refuses it under load. So devices do not publish on the ingest subjects.
//! They publish on `beffroi/<territory>/dev/<commune>/<device>/<kind>` (ids escaped as in
//! [`crate::subject`]), which no user stream captures, and the forwarder moves each message
//! from `$MQTT_msgs` into the ingest stream:
//!
//! - a durable pull consumer on `$MQTT_msgs` filtered to `$MQTT.msgs.beffroi.<t>.dev.*.*.*`;
//!   `$MQTT_msgs` keeps messages while a consumer is interested (interest retention), so a
//!   PUBACKed reading stays there until the forwarder acknowledges it;
//! - each batch is published to `beffroi.<t>.in.<commune>.<device>.<kind>` with
//!   `Nats-Msg-Id: mqtt-<sequence in $MQTT_msgs>` (stable across retries: a batch forwarded
//!   twice after a crash is stored once) and acknowledged on `$MQTT_msgs` only after its
//!   PubAck. A reading whose subject is not of that shape is terminated and counted.
//!
//! `$MQTT_msgs` is created by the server when the first MQTT client of the account connects;
//! [`ensure_forward_consumer`] creates it first, with the server's own configuration, so the
//! consumer's interest exists before any device can publish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use tokio_util::sync::CancellationToken;

use crate::NatsError;
use crate::publish::{Outgoing, Publisher};
use crate::stream::IngestLayout;
use crate::subject::{IngestSubject, NAMESPACE, decode_token, encode_token};

/// The server-managed stream of MQTT QoS 1 and 2 messages.
pub const MQTT_STREAM: &str = "$MQTT_msgs";
const MQTT_PREFIX: &str = "$MQTT.msgs.";
/// The kind token of device subjects published over MQTT.
pub const DEVICE: &str = "dev";

/// Counters of a forwarder. Relaxed atomics.
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub forwarded: AtomicU64,
    /// PubAcks saying the ingest stream had the id (a forward repeated after a failure).
    pub duplicates: AtomicU64,
    pub redelivered: AtomicU64,
    /// Messages on a `dev` subject of the wrong shape: terminated, never ingested.
    pub malformed: AtomicU64,
    pub publish_failures: AtomicU64,
    pub fetch_failures: AtomicU64,
}

/// The MQTT topic a device of `commune` publishes its readings of `kind` on.
pub fn device_topic(territory: &str, commune: &str, device: &str, kind: &str) -> String {
    [NAMESPACE, &encode_token(territory), DEVICE]
        .into_iter()
        .map(str::to_owned)
        .chain([commune, device, kind].map(encode_token))
        .collect::<Vec<_>>()
        .join("/")
}

/// The ingest subject of a message stored in `$MQTT_msgs`, if it is a device subject of
/// `territory`.
pub fn ingest_subject_of(territory: &str, stored: &str) -> Option<IngestSubject> {
    let rest = stored.strip_prefix(MQTT_PREFIX)?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let [NAMESPACE, t, DEVICE, c, d, k] = tokens.as_slice() else {
        return None;
    };
    let t = decode_token(t).ok()?;
    if t != territory {
        return None;
    }
    Some(IngestSubject {
        territory: t,
        commune: decode_token(c).ok()?,
        device: decode_token(d).ok()?,
        kind: decode_token(k).ok()?,
    })
}

/// Creates `$MQTT_msgs` if the server has not yet, and the forwarder's durable consumer.
pub async fn ensure_forward_consumer(
    js: &jetstream::Context,
    layout: &IngestLayout,
    ack_wait: Duration,
) -> Result<consumer::PullConsumer, NatsError> {
    let stream = match js.get_stream(MQTT_STREAM).await {
        Ok(s) => s,
        Err(_) => js
            .get_or_create_stream(stream::Config {
                name: MQTT_STREAM.to_owned(),
                subjects: vec![format!("{MQTT_PREFIX}>")],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Interest,
                num_replicas: layout.replicas(),
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::Stream(e.to_string()))?,
    };
    let t = encode_token(&layout.territory);
    let name = format!("beffroi-forward-{}", t.replace('~', "_"));
    stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("{MQTT_PREFIX}{NAMESPACE}.{t}.{DEVICE}.*.*.*"),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                num_replicas: layout.replicas(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| NatsError::Consumer(e.to_string()))
}

/// Forwards until `shutdown`: fetch a batch, publish it with acks, acknowledge what was
/// stored. One forwarder per territory is enough (it is not partitioned); several are safe
/// (message ids deduplicate).
pub async fn run_forwarder(
    consumer: consumer::PullConsumer,
    territory: String,
    publisher: Publisher,
    batch_max: usize,
    max_wait: Duration,
    stats: Arc<ForwardStats>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let fetched = tokio::select! {
            () = shutdown.cancelled() => return,
            b = crate::consume::fetch_ready(&consumer, batch_max, max_wait) => b,
        };
        let messages = match fetched {
            Ok(m) => m,
            Err(e) => {
                // What was delivered to a failed fetch comes back after `ack_wait`.
                stats.fetch_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "forwarder fetch failed");
                tokio::time::sleep(max_wait).await;
                continue;
            }
        };
        let mut outgoing = Vec::with_capacity(messages.len());
        let mut keep = Vec::with_capacity(messages.len());
        for m in messages {
            let Ok(info) = m.info() else { continue };
            let sequence = info.stream_sequence;
            if info.delivered > 1 {
                stats.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            match ingest_subject_of(&territory, m.subject.as_str()) {
                Some(subject) => {
                    outgoing.push(Outgoing {
                        subject,
                        msg_id: format!("mqtt-{sequence}"),
                        payload: m.payload.clone(),
                    });
                    keep.push(m);
                }
                None => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = m.ack_with(AckKind::Term).await {
                        tracing::debug!(error = %e, "term failed");
                    }
                }
            }
        }
        let results = publisher.publish_batch(&outgoing).await;
        for (m, r) in keep.iter().zip(results) {
            match r {
                Ok(stored) => {
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    if stored.duplicate {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Err(e) = m.ack().await {
                        // Forwarded again after ack_wait; the id makes that harmless.
                        tracing::debug!(error = %e, "forwarder ack failed");
                    }
                }
                // Not acknowledged: redelivered after ack_wait.
                Err(_) => {
                    stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_topics_map_to_ingest_subjects() {
        let topic = device_topic("dijon", "Chenôve", "pluvio.3", "senml");
        assert_eq!(topic, "beffroi/dijon/dev/Chen~C3~B4ve/pluvio~2E3/senml");
        // The server maps `/` to `.` and stores under `$MQTT.msgs.`.
        let stored = format!("$MQTT.msgs.{}", topic.replace('/', "."));
        let s = ingest_subject_of("dijon", &stored).expect("device subject");
        assert_eq!(
            s.subject(),
            "beffroi.dijon.in.Chen~C3~B4ve.pluvio~2E3.senml"
        );
        assert_eq!(ingest_subject_of("lyon", &stored), None);
        assert_eq!(
            ingest_subject_of("dijon", "$MQTT.msgs.beffroi.dijon.dev.a.b"),
            None
        );
    }
}
