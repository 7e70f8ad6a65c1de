//! The MQTT source wired to the engine.

use std::sync::Arc;

use beffroi_engine::runner::EngineHandle;
use std::sync::atomic::{AtomicU64, Ordering};

use beffroi_engine::metrics::Metrics;
use beffroi_mqtt::{MqttConfig, MqttStats, MqttVersion};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::config::MqttSettings;

pub fn to_config(m: MqttSettings) -> MqttConfig {
    let mut cfg = MqttConfig {
        url: m.url,
        client_id: m.client_id,
        protocol: if m.protocol == 5 {
            MqttVersion::V5
        } else {
            MqttVersion::V311
        },
        username: m.username,
        password: std::env::var("BEFFROI_MQTT_PASSWORD").ok(),
        broker_auth: m.broker_auth,
        ..MqttConfig::default()
    };
    if let Some(max) = m.reconnect_max {
        cfg.backoff_max = max;
        cfg.backoff_min = cfg.backoff_min.min(max);
    }
    if let Some(t) = m.topics {
        cfg.topics = t;
    }
    cfg
}

/// Forwards the broker feed's signals to the engine until the source stops.
pub async fn forward_signals(
    mut rx: tokio::sync::mpsc::Receiver<beffroi_core::SecuritySignal>,
    engine: EngineHandle,
) {
    while let Some(sig) = rx.recv().await {
        if engine.security_signal(sig).await.is_err() {
            return;
        }
    }
}

/// Exposes the source's counters in the engine's Prometheus registry.
pub fn export_stats(stats: &MqttStats, metrics: &Metrics) {
    let counters: [(&str, &str, &Arc<AtomicU64>); 10] = [
        (
            "mqtt_connects",
            "Connections to the broker",
            &stats.connects,
        ),
        ("mqtt_disconnects", "Connections lost", &stats.disconnects),
        ("mqtt_messages", "PUBLISH packets received", &stats.messages),
        ("mqtt_acks", "PUBACKs sent after commit", &stats.acks),
        (
            "mqtt_redelivered",
            "Messages the broker sent again (DUP flag) because an earlier copy was not acknowledged",
            &stats.redelivered,
        ),
        (
            "mqtt_nacks",
            "Messages left unacknowledged (store failure) for redelivery",
            &stats.nacks,
        ),
        (
            "mqtt_unknown_topics",
            "Messages on topics outside the layout",
            &stats.unknown_topics,
        ),
        (
            "mqtt_refused_topics",
            "Messages on beffroi/ topics outside the layout (unknown suffix, extra levels): refused",
            &stats.refused_topics,
        ),
        (
            "mqtt_broker_log_lines",
            "Broker log messages read ($SYS/broker/log, with broker_auth)",
            &stats.broker_log_lines,
        ),
        (
            "mqtt_signals_dropped",
            "Broker-feed security signals dropped: the engine's queue was full",
            &stats.signals_dropped,
        ),
    ];
    metrics.with_registry(|r| {
        for (name, help, c) in counters {
            let c: ConstCounterFromAtomic = ConstCounterFromAtomic(Arc::clone(c));
            r.register_collector(Box::new(AtomicCollector {
                name,
                help,
                counter: c,
            }));
        }
    });
}

#[derive(Debug)]
struct ConstCounterFromAtomic(Arc<AtomicU64>);

#[derive(Debug)]
struct AtomicCollector {
    name: &'static str,
    help: &'static str,
    counter: ConstCounterFromAtomic,
}

impl Collector for AtomicCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let value = self.counter.0.load(Ordering::Relaxed);
        let c = ConstCounter::new(value);
        let metric = encoder.encode_descriptor(self.name, self.help, None, c.metric_type())?;
        c.encode(metric)
    }
}
