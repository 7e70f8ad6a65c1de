//! The MQTT source against a real Mosquitto: routing, MQTT 3.1.1 and 5, manual acks and
//! redelivery, re-subscription after the broker lost the session, shutdown.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use beffroi_core::{SimClock, Timestamp};
use beffroi_engine::{AckOutcome, Envelope, Source};
use beffroi_mqtt::{MqttConfig, MqttError, MqttHealth, MqttSource, MqttStats, MqttVersion};
use beffroi_wire::Format;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::mosquitto::Mosquitto;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);
const NOW: Timestamp = Timestamp(1_795_694_400_000);

fn cfg(broker: &Mosquitto, client_id: &str, protocol: MqttVersion) -> MqttConfig {
    MqttConfig {
        url: broker.url(),
        client_id: client_id.to_owned(),
        protocol,
        keep_alive: Duration::from_secs(5),
        inflight: 100,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..MqttConfig::default()
    }
}

/// A source running on its own task, with the pipeline's end of its channel.
struct Running {
    rx: mpsc::Receiver<Envelope>,
    stop: CancellationToken,
    join: JoinHandle<Result<(), MqttError>>,
    stats: MqttStats,
    health: watch::Receiver<MqttHealth>,
}

/// The source's logs, shown for failing tests (`RUST_LOG` overrides the level).
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("beffroi_mqtt=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

fn start(cfg: MqttConfig) -> Running {
    logs();
    let source = MqttSource::new(cfg).expect("valid config");
    let (tx, rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let stats = source.stats();
    let health = source.health();
    let clock = Arc::new(SimClock::new(NOW));
    let join = tokio::spawn(source.run(tx, clock, stop.clone()));
    Running {
        rx,
        stop,
        join,
        stats,
        health,
    }
}

impl Running {
    /// Connected and subscribed.
    async fn ready(&mut self) {
        timeout(WAIT, self.health.wait_for(|h| *h == MqttHealth::Ready))
            .await
            .expect("source ready in time")
            .expect("source alive");
    }

    async fn next(&mut self) -> Envelope {
        timeout(WAIT, self.rx.recv())
            .await
            .expect("an envelope in time")
            .expect("source alive")
    }

    /// Clean shutdown; returns the final counters.
    async fn stop(self) -> MqttStats {
        self.stop.cancel();
        let r = timeout(WAIT, self.join)
            .await
            .expect("source stops in time")
            .expect("source task did not panic");
        assert!(r.is_ok(), "source ended with {r:?}");
        self.stats
    }
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn settle(env: &mut Envelope, outcome: AckOutcome) {
    env.ack
        .take()
        .expect("an MQTT envelope carries an ack")
        .call(outcome);
}

fn stored() -> AckOutcome {
    AckOutcome::Stored {
        accepted: 1,
        rejected: vec![],
    }
}

/// A separate plain client publishing at QoS 1 and waiting for the broker's PUBACK.
struct Publisher {
    client: AsyncClient,
    pubacks: mpsc::UnboundedReceiver<u16>,
    task: JoinHandle<()>,
}

impl Publisher {
    fn connect(broker: &Mosquitto) -> Publisher {
        let mut o = MqttOptions::new("test-publisher", "127.0.0.1", broker.port());
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(o, 16);
        let (tx, pubacks) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        let _ = tx.send(a.pkid);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Publisher {
            client,
            pubacks,
            task,
        }
    }

    async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish queued");
        timeout(WAIT, self.pubacks.recv())
            .await
            .expect("broker PUBACK in time")
            .expect("publisher alive");
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SENML: &[u8] = br#"[{"n":"level_m","v":1.5}]"#;
const JSON: &[u8] = br#"{"time":"2026-11-28T12:00:00Z","values":{"level_m":1.6}}"#;
const CHIRPSTACK: &[u8] =
    br#"{"deviceInfo":{"devEui":"0011223344556677"},"object":{"level_m":1.7}}"#;

async fn routes_topics(protocol: MqttVersion) {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut c = cfg(&broker, "beffroi-routes", protocol);
    // A filter outside the layout: its messages are submitted without a device.
    c.topics.push("other/#".into());
    let mut src = start(c);
    src.ready().await;
    let mut publisher = Publisher::connect(&broker);
    // Just over the wire limit of the pipeline, within the client's slack: it must reach
    // the pipeline (which rejects it as oversized), not break the connection.
    let big = vec![b' '; beffroi_wire::MAX_PAYLOAD + 1];
    let sent: [(&str, &[u8], Format, Option<&str>); 5] = [
        ("beffroi/t/g1/senml", SENML, Format::Senml, Some("g1")),
        ("beffroi/t/g2/json", JSON, Format::Json, Some("g2")),
        (
            "application/1/device/0011223344556677/event/up",
            CHIRPSTACK,
            Format::Chirpstack,
            None,
        ),
        ("other/shape", b"unknown shape", Format::Senml, None),
        ("beffroi/t/g4/senml", &big, Format::Senml, Some("g4")),
    ];
    // A device topic with an unknown suffix: refused, never submitted without its device
    // (published first: had it been submitted, it would be among the envelopes read below).
    let pack_naming_another = br#"[{"bn":"panel-9/","n":"fire","vb":true}]"#;
    publisher
        .publish("beffroi/t/g3/x", pack_naming_another)
        .await;
    for (topic, payload, _, _) in &sent {
        publisher.publish(topic, *payload).await;
    }
    let mut got = HashMap::new();
    for _ in 0..sent.len() {
        let mut env = src.next().await;
        settle(&mut env, stored());
        assert_ne!(
            &env.payload[..],
            &pack_naming_another[..],
            "a message on an unknown suffix was submitted"
        );
        got.insert(env.payload.to_vec(), env);
    }
    for (topic, payload, format, hint) in &sent {
        let env = got
            .get(*payload)
            .unwrap_or_else(|| panic!("nothing from {topic}"));
        assert_eq!(env.source, Source::MQTT, "{topic}");
        assert_eq!(env.format, *format, "{topic}");
        assert_eq!(env.device_hint.as_deref(), *hint, "{topic}");
        assert_eq!(env.received, NOW, "{topic}");
    }
    let stats = src.stop().await;
    assert_eq!(load(&stats.messages), 6);
    assert_eq!(load(&stats.unknown_topics), 1);
    assert_eq!(load(&stats.refused_topics), 1);
    // The refused message is acknowledged too (the broker must not redeliver it).
    assert_eq!(load(&stats.acks), 6);
    assert_eq!(load(&stats.nacks), 0);
    assert_eq!(load(&stats.connects), 1);
    assert_eq!(load(&stats.disconnects), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_routes_topics_to_formats_and_devices() {
    routes_topics(MqttVersion::V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_routes_topics_to_formats_and_devices() {
    routes_topics(MqttVersion::V5).await;
}

/// A message whose outcome is `Failed` is not acknowledged: the broker redelivers it to the
/// restarted source; once `Stored`, it is not delivered again.
async fn manual_ack_survives_restart(protocol: MqttVersion) {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    // A long redelivery backoff: this test restarts the source itself.
    let cfg = MqttConfig {
        backoff_min: Duration::from_secs(5),
        backoff_max: Duration::from_secs(5),
        ..cfg(&broker, "beffroi-acks", protocol)
    };
    let mut publisher = Publisher::connect(&broker);

    let mut first = start(cfg.clone());
    first.ready().await;
    publisher.publish("beffroi/t/g1/senml", "m1").await;
    let mut env = first.next().await;
    assert_eq!(&env.payload[..], b"m1");
    settle(&mut env, AckOutcome::Failed("disk full".into()));
    let stats = first.stop().await;
    assert_eq!((load(&stats.nacks), load(&stats.acks)), (1, 0));

    let mut second = start(cfg.clone());
    let mut env = second.next().await;
    assert_eq!(&env.payload[..], b"m1", "redelivered after restart");
    settle(&mut env, stored());
    let stats = second.stop().await;
    assert_eq!((load(&stats.nacks), load(&stats.acks)), (0, 1));

    let mut third = start(cfg);
    third.ready().await;
    publisher.publish("beffroi/t/g1/senml", "m2").await;
    // The broker resends unacknowledged messages first on a resumed session: had m1 not
    // been acknowledged, it would come before m2.
    let mut env = third.next().await;
    assert_eq!(
        &env.payload[..],
        b"m2",
        "m1 was acknowledged, only m2 is new"
    );
    settle(&mut env, stored());
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_failed_outcome_is_redelivered_after_restart_stored_is_not() {
    manual_ack_survives_restart(MqttVersion::V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_failed_outcome_is_redelivered_after_restart_stored_is_not() {
    manual_ack_survives_restart(MqttVersion::V5).await;
}

/// Without a restart: after a failed or dropped outcome the source reconnects on its own so
/// that the broker redelivers (MQTT redelivers only on a new connection).
async fn redelivers_without_restart(protocol: MqttVersion) {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut src = start(cfg(&broker, "beffroi-redeliver", protocol));
    src.ready().await;
    let mut publisher = Publisher::connect(&broker);
    publisher.publish("beffroi/t/g1/json", "m1").await;

    let mut env = src.next().await;
    assert_eq!(&env.payload[..], b"m1");
    settle(&mut env, AckOutcome::Failed("store unavailable".into()));

    let env = src.next().await;
    assert_eq!(&env.payload[..], b"m1", "redelivered after a failure");
    drop(env); // the pipeline lost it: same as a failure

    let mut env = src.next().await;
    assert_eq!(&env.payload[..], b"m1", "redelivered after a drop");
    settle(&mut env, stored());

    publisher.publish("beffroi/t/g1/json", "m2").await;
    let mut env = src.next().await;
    assert_eq!(&env.payload[..], b"m2");
    settle(&mut env, stored());

    let stats = src.stop().await;
    assert_eq!(load(&stats.nacks), 2);
    assert_eq!(load(&stats.acks), 2);
    assert_eq!(load(&stats.disconnects), 2);
    assert_eq!(load(&stats.connects), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_failed_outcome_triggers_redelivery() {
    redelivers_without_restart(MqttVersion::V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_failed_outcome_triggers_redelivery() {
    redelivers_without_restart(MqttVersion::V5).await;
}

/// rumqttc does not re-send subscriptions after a clean reconnect: a broker that comes back without our session delivers nothing unless
/// we subscribe again.
async fn resubscribes_after_session_loss(protocol: MqttVersion) {
    let Some(mut broker) = Mosquitto::start() else {
        return;
    };
    let mut src = start(cfg(&broker, "beffroi-resubscribe", protocol));
    src.ready().await;
    broker.restart_empty();

    let deadline = tokio::time::Instant::now() + WAIT;
    while load(&src.stats.connects) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "source did not reconnect; broker log:\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    src.ready().await;

    let mut publisher = Publisher::connect(&broker);
    publisher
        .publish("beffroi/t/g1/senml", "after restart")
        .await;
    let mut env = src.next().await;
    assert_eq!(&env.payload[..], b"after restart");
    settle(&mut env, stored());
    let stats = src.stop().await;
    assert_eq!(load(&stats.disconnects), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_resubscribes_when_the_broker_lost_the_session() {
    resubscribes_after_session_loss(MqttVersion::V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_resubscribes_when_the_broker_lost_the_session() {
    resubscribes_after_session_loss(MqttVersion::V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_acknowledged_not_submitted() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut publisher = Publisher::connect(&broker);
    publisher
        .client
        .publish("beffroi/t/g1/senml", QoS::AtLeastOnce, true, "old value")
        .await
        .expect("publish queued");
    timeout(WAIT, publisher.pubacks.recv())
        .await
        .expect("PUBACK in time");

    let mut src = start(cfg(&broker, "beffroi-retained", MqttVersion::V5));
    src.ready().await;
    publisher.publish("beffroi/t/g1/senml", "new value").await;
    let mut env = src.next().await;
    assert_eq!(&env.payload[..], b"new value");
    settle(&mut env, stored());
    let stats = src.stop().await;
    assert_eq!(load(&stats.retained_skipped), 1);
    assert_eq!(load(&stats.acks), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipeline_stops_the_source() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut src = start(cfg(&broker, "beffroi-closed", MqttVersion::V311));
    src.ready().await;
    src.rx.close();
    Publisher::connect(&broker)
        .publish("beffroi/t/g1/senml", SENML)
        .await;
    let r = timeout(WAIT, src.join)
        .await
        .expect("source stops in time")
        .expect("no panic");
    assert!(matches!(r, Err(MqttError::PipelineClosed)), "{r:?}");
    assert_eq!(*src.health.borrow(), MqttHealth::Stopped);
}

#[tokio::test]
async fn an_invalid_config_is_refused_before_connecting() {
    let (tx, _rx) = mpsc::channel(1);
    let bad = MqttConfig {
        url: "mqtts://broker:8883".into(),
        ..MqttConfig::default()
    };
    let r = beffroi_mqtt::run(
        bad,
        tx,
        Arc::new(SimClock::new(NOW)),
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(r, Err(MqttError::Config { field: "url", .. })),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_cleanly_while_the_broker_is_unreachable() {
    // A port nobody listens on: the source keeps retrying until told to stop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let src = start(MqttConfig {
        url: format!("mqtt://127.0.0.1:{port}"),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..MqttConfig::default()
    });
    assert_eq!(*src.health.borrow(), MqttHealth::Connecting);
    let stats = src.stop().await;
    assert_eq!(load(&stats.connects), 0);
}
