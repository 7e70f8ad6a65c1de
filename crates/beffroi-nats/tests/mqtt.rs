//! MQTT devices into the ingest log through nats-server's MQTT listener (MQTT 3.1.1).
//! Against real servers from the testkit; every wait has a deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use beffroi_nats::mqtt_forward::{
    ForwardStats, device_topic, ensure_forward_consumer, run_forwarder,
};
use beffroi_nats::publish::Publisher;
use beffroi_nats::stream::{IngestLayout, ensure_ingest_stream};
use beffroi_nats::subject::IngestSubject;
use beffroi_testkit::nats::NatsCluster;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A PUBACK may wait for a leader election after a node is killed.
const WAIT: Duration = Duration::from_secs(15);

/// A QoS 1 publisher that reports each PUBACK's packet id.
fn mqtt_publisher(port: u16, id: &str) -> (AsyncClient, mpsc::UnboundedReceiver<u16>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(o, 64);
    let (tx, pubacks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    if tx.send(a.pkid).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    (client, pubacks)
}

async fn publish_acked(
    client: &AsyncClient,
    pubacks: &mut mpsc::UnboundedReceiver<u16>,
    topic: &str,
    payload: Vec<u8>,
) -> Result<(), String> {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .expect("queued");
    tokio::time::timeout(WAIT, pubacks.recv())
        .await
        .map_err(|_| format!("no PUBACK in {WAIT:?} for {topic}"))?
        .ok_or_else(|| "publisher ended".to_owned())?;
    Ok(())
}

/// What the ADR relies on: the PUBACK of a QoS 1 PUBLISH does not wait for a user stream —
/// here no stream captures the subject at all, and the device is acknowledged anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_puback_does_not_wait_for_a_user_stream() {
    let Some(nats) = NatsCluster::start_with_mqtt(1) else {
        return;
    };
    let port = nats.mqtt_port(0).expect("mqtt port");
    let (client, mut pubacks) = mqtt_publisher(port, "lonely-device");
    publish_acked(
        &client,
        &mut pubacks,
        "beffroi/dijon/nowhere/x",
        b"1".to_vec(),
    )
    .await
    .expect("PUBACK");
}

/// Devices publish QoS 1 on `beffroi/<t>/dev/<commune>/<device>/<kind>`; the forwarder moves
/// every acknowledged reading into the ingest stream, partitioned, exactly once, while another
/// node than the device's is killed mid-stream (forwards repeated after a lost ack are
/// deduplicated by their message id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_mqtt_readings_reach_the_ingest_stream() {
    let Some(mut cluster) = NatsCluster::start_with_mqtt(3) else {
        return;
    };
    let client = beffroi_nats::connect(&cluster.url(0), "test")
        .await
        .expect("connect");
    let js = beffroi_nats::async_nats::jetstream::new(client);
    let layout = IngestLayout::new("dijon", 4, 3);
    let stream = ensure_ingest_stream(&js, &layout).await.expect("stream");
    let consumer = ensure_forward_consumer(&js, &layout, Duration::from_secs(3))
        .await
        .expect("forward consumer");
    let stats = Arc::new(ForwardStats::default());
    let shutdown = CancellationToken::new();
    let mut publisher = Publisher::new(js.clone());
    publisher.deadline = Duration::from_secs(30);
    let forwarder = tokio::spawn(run_forwarder(
        consumer,
        "dijon".into(),
        publisher,
        64,
        Duration::from_millis(100),
        stats.clone(),
        shutdown.clone(),
    ));

    let port = cluster.mqtt_port(0).expect("mqtt port");
    let (device, mut pubacks) = mqtt_publisher(port, "pluvio-3");
    let n = 200;
    let mut resent = 0;
    let started = Instant::now();
    for i in 0..n {
        if i == n / 2 {
            cluster.kill(2);
            eprintln!("killed {}", cluster.name(2));
        }
        let topic = device_topic("dijon", &format!("commune {}", i % 5), "pluvio.3", "senml");
        let mut attempt = 0;
        // A store that times out while the killed node's streams elect a leader closes the
        // device's connection; a PUBLISH not acknowledged is sent again, as a device would
        // (at least once: the reading may then be stored twice).
        while let Err(e) =
            publish_acked(&device, &mut pubacks, &topic, format!("{i}").into_bytes()).await
        {
            attempt += 1;
            assert!(
                attempt < 4,
                "reading {i}: {e}; node log:\n{}",
                cluster.log(0)
            );
            resent += 1;
            eprintln!("reading {i}: {e}; published again");
        }
    }
    let published = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(60);
    let count = loop {
        // The cluster may be electing leaders: a failed look-up is retried.
        let messages = match js.get_stream(layout.stream_name()).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if messages >= n as u64 || Instant::now() >= deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        (n as u64..=(n + resent) as u64).contains(&count),
        "{count} readings in the ingest stream for {n} published ({resent} sent again)"
    );
    // Every payload, on its partitioned ingest subject; twice only if it was sent twice.
    let mut payloads = Vec::new();
    for seq in 1..=count {
        let raw = stream.get_raw_message(seq).await.expect("message");
        let (subject, partition) = IngestSubject::parse(raw.subject.as_str()).expect("ingest");
        assert_eq!(subject.device, "pluvio.3");
        assert!(partition.is_some());
        payloads.push(String::from_utf8_lossy(&raw.payload).into_owned());
    }
    payloads.sort_by_key(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    payloads.dedup();
    let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected);
    eprintln!(
        "{n} MQTT QoS 1 readings PUBACKed in {published:?} ({:.0}/s, one at a time, {resent} \
         sent again); forwarded {}, duplicates {}, redelivered {}, publish failures {}",
        n as f64 / published.as_secs_f64(),
        stats.forwarded.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
        stats.redelivered.load(Ordering::Relaxed),
        stats.publish_failures.load(Ordering::Relaxed),
    );
    shutdown.cancel();
    forwarder.await.expect("forwarder");
}
