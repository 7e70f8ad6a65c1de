//! A device-side MQTT client (MQTT 3.1.1, QoS 1) that counts the broker's PUBACKs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use super::http::{Api, metric};
use super::poll;

pub struct Publisher {
    client: Client,
    acks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Connects to the broker on `127.0.0.1:port` and waits for the CONNACK.
    pub fn connect(port: u16, client_id: &str) -> Publisher {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(100)
            .set_max_packet_size(128 * 1024, 128 * 1024);
        let (client, mut connection) = Client::new(opts, 64);
        let acks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (acks, stop, connected, errors) = (
                Arc::clone(&acks),
                Arc::clone(&stop),
                Arc::clone(&connected),
                Arc::clone(&errors),
            );
            std::thread::spawn(move || {
                for ev in connection.iter() {
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            connected.store(true, Ordering::SeqCst)
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                            errors
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(e.to_string());
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
            })
        };
        let p = Publisher {
            client,
            acks,
            stop,
            errors,
            thread: Some(thread),
        };
        poll(
            "the publisher's CONNACK",
            Duration::from_secs(10),
            || p.errors(),
            || connected.load(Ordering::SeqCst).then_some(()),
        );
        p
    }

    /// A handle to publish from another thread.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Queues a QoS 1 PUBLISH (blocks while the request channel is full).
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .expect("publish request");
    }

    /// PUBACKs received from the broker so far.
    pub fn acks(&self) -> u64 {
        self.acks.load(Ordering::SeqCst)
    }

    /// Connection errors seen so far, for failure messages.
    pub fn errors(&self) -> String {
        let e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        format!("publisher connection errors: {e:?}")
    }

    /// Waits until the broker has acknowledged `n` messages in total.
    pub fn wait_acks(&self, n: u64, timeout: Duration) {
        poll(
            &format!("{n} PUBACKs from the broker"),
            timeout,
            || format!("{} PUBACKs; {}", self.acks(), self.errors()),
            || (self.acks() >= n).then_some(()),
        );
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until Beffroi's MQTT source is subscribed: publishes a probe (a SenML record of a
/// field `device` does not have, so an `unknown_field` rejection, never an observation)
/// until `beffroi_ingest_messages_total{source="mqtt"}` moves. Messages published before
/// Beffroi's first subscription are not queued for it by the broker.
pub fn wait_mqtt_flowing(api: &Api, publisher: &Publisher, device: &str, log: impl Fn() -> String) {
    let topic = format!("beffroi/{}/{device}/senml", super::demo::TERRITORY);
    let mut last_probe: Option<std::time::Instant> = None;
    poll(
        "Beffroi's MQTT subscription (a probe message ingested)",
        Duration::from_secs(20),
        || format!("{}\n{}", publisher.errors(), log()),
        || {
            let seen = metric(
                &api.metrics(),
                "beffroi_ingest_messages_total",
                &[("source", "mqtt")],
            )
            .unwrap_or(0.0);
            if seen >= 1.0 {
                return Some(());
            }
            if last_probe.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
                publisher.publish(&topic, r#"[{"n":"readiness_probe","v":1}]"#);
                last_probe = Some(std::time::Instant::now());
            }
            None
        },
    );
}
