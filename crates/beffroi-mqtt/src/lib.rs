//! The MQTT ingest source: a client of a real broker (Mosquitto for one server, see
//! `docs/mosquitto.conf.example` and `docs/adr/0002-mqtt-broker-and-client.md`) that turns
//! PUBLISH packets into [`Envelope`]s for the pipeline and acknowledges each one only once
//! the store has made it durable.
//!
//! # Topic layout
//!
//! | Topic                                        | Format                    | Device hint |
//! |----------------------------------------------|---------------------------|-------------|
//! | `beffroi/<territory>/<device-id>/senml`      | SenML pack (RFC 8428)     | `<device-id>` |
//! | `beffroi/<territory>/<device-id>/json`       | plain JSON form           | `<device-id>` |
//! | `application/<app-id>/device/<dev-eui>/event/up` | ChirpStack v4 uplink  | none: the DevEUI is in the payload |
//! | any other `beffroi/…` topic                  | refused, not submitted    | —           |
//! | anything else the filters match              | SenML                     | none        |
//!
//! The default filters are [`DEFAULT_TOPICS`]. **The topic binds the device:** every record
//! of a message on `beffroi/<territory>/<device-id>/…` must name `<device-id>` (with
//! `broker_auth`, a record naming another device is rejected as `topic_mismatch`, see
//! `docs/adr/0021-topic-binds-the-device.md`). So a `beffroi/` topic with another suffix,
//! or with extra or missing levels, is refused here ([`TopicRefusal`]): acknowledged,
//! counted in [`MqttStats::refused_topics`], never submitted without its device (the payload
//! would then choose the device). The ACL `beffroi devices` generates grants each device
//! only its `senml` and `json` topics ([`DEVICE_SUFFIXES`]), so the broker already refuses
//! those messages. A topic outside the namespace and of unknown shape is not dropped: it is
//! submitted as SenML without a device hint, so the pipeline either accepts a pack that names
//! its devices (`bn = "<device-id>/"`) or rejects it as malformed and counts it; the source
//! counts it too ([`MqttStats::unknown_topics`]). The `<territory>` level is for the
//! broker's ACLs and for humans; the source does not interpret it.
//!
//! # Delivery: at least once
//!
//! - Subscriptions are QoS 1 in a persistent session (MQTT 3.1.1 `clean_session = false`,
//!   MQTT 5 `clean_start = false` with a Session Expiry Interval), under a stable client id:
//!   while Beffroi is down or slow the broker queues for it.
//! - Acks are manual. The PUBACK of a message is sent only when the store writer reports
//!   [`AckOutcome::Stored`] for its envelope (rejected records count as stored: the
//!   rejection itself is durable). On [`AckOutcome::Failed`], or if the envelope is dropped
//!   without an outcome, no PUBACK is sent; the source then drops the connection after a
//!   backoff so that the broker redelivers (MQTT only redelivers on reconnection), instead of
//!   leaving the message holding an in-flight slot forever.
//! - An outcome that arrives after its connection ended is ignored: the broker redelivers
//!   that message on the new connection, possibly under a reused packet id.
//! - So a message can be delivered twice (redelivery after a crash, a reconnection or a
//!   late ack). Duplicates are absorbed by the store's idempotent insert on
//!   (device, field, time).
//! - Subscriptions are re-sent on every CONNACK, session or not (rumqttc does not re-send them after
//!   a clean reconnect): a
//!   broker that lost the session would otherwise deliver nothing, and say nothing.
//! - Retained messages replayed by a (re-)subscription are old values, not new readings:
//!   they are acknowledged and skipped ([`MqttStats::retained_skipped`]).
//! - Devices must publish at QoS 1: a QoS 0 message is delivered at most once.
//!
//! # Overload policy: backpressure to the broker
//!
//! The pipeline's ingest channel is bounded and this source hands over with a blocking send:
//! when the pipeline is full the source stops reading from the broker, and the broker queues
//! for our persistent session. Nothing is dropped here. What bounds the memory on our side is
//! the in-flight window: MQTT 5 announces [`MqttConfig::inflight`] as the Receive Maximum;
//! with MQTT 3.1.1 the broker's `max_inflight_messages` applies, keep it at or below
//! `inflight`. The local hand-over queue holds at most `inflight` envelopes; if it ever fills
//! the event loop is not polled until it drains, keep-alives included, so a pipeline stalled
//! for more than 1.5 × keep-alive gets the connection closed by the broker and re-established.
//! The broker must not drop for a slow subscriber either: Mosquitto's `max_queued_messages`
//! defaults to 1000 and drops beyond it (QoS 1 included), set it to 0.
//!
//! # Size limit
//!
//! The client accepts packets up to [`MAX_PACKET_SIZE`] ([`beffroi_wire::MAX_PAYLOAD`] plus
//! 4 KiB for the header, topic and properties); payloads between `MAX_PAYLOAD` and that reach
//! the pipeline, which rejects them as oversized. Beyond it:
//! - MQTT 5: the limit is announced as Maximum Packet Size and the broker discards bigger
//!   messages for us instead of sending them (the broker logs it; we never see it);
//! - MQTT 3.1.1: the client refuses the packet and the connection is closed
//!   ([`MqttStats::oversized`]); the broker redelivers the same message on reconnection, so
//!   ingest loops on it until it is removed.
//!
//! Both are why the broker must refuse such messages at the door: Mosquitto's
//! `max_packet_size` set to [`MAX_PACKET_SIZE`] disconnects the publisher instead.
//!
//! # Reconnection
//!
//! Errors never end [`run`]: the source reconnects with capped exponential backoff
//! ([`MqttConfig::backoff_min`] doubling to [`MqttConfig::backoff_max`]). Logs say one line
//! per state change (connected, lost, cannot connect, a different error), not one per retry.
//! On shutdown the source sends the PUBACKs already earned and a DISCONNECT that keeps the
//! session; envelopes still in the pipeline are redelivered at the next start.
//!
//! **API boundary:** rumqttc types do not leave this crate.

pub mod broker_log;
mod config;
mod link;
mod source;
mod topic;

use std::sync::Arc;

use beffroi_core::Clock;
#[cfg(doc)]
use beffroi_engine::AckOutcome;
use beffroi_engine::Envelope;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::{DEFAULT_TOPICS, MAX_PACKET_SIZE, MqttConfig, MqttVersion};
pub use source::{MqttHealth, MqttSource, MqttStats};
pub use topic::{DEVICE_SUFFIXES, NAMESPACE, Route, Routing, TopicRefusal, route};

/// Why the MQTT source cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("invalid MQTT configuration, {field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error("the pipeline's ingest channel is closed")]
    PipelineClosed,
}

/// Runs an MQTT source until `shutdown` is cancelled. Use [`MqttSource`] to keep its
/// [`MqttStats`] and [`MqttHealth`].
pub async fn run(
    cfg: MqttConfig,
    tx: mpsc::Sender<Envelope>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), MqttError> {
    MqttSource::new(cfg)?.run(tx, clock, shutdown).await
}
