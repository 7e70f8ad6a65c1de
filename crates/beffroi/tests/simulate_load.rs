//! `beffroi simulate --load` is the load generator of the benchmarks: what it sends must be
//! what a real territory sends, readings of now. Through a real Mosquitto into a real
//! `beffroi serve`, every reading it publishes is accepted, none refused (a load stamped
//! with a past older than the retention was refused whole as `expired`).

mod support;

use std::process::Command;
use std::time::Duration;

use support::beffroi::{Beffroi, MqttSettings};
use support::http::{Api, metric};
use support::mosquitto::Mosquitto;
use support::poll;
use support::publisher::{Publisher, wait_mqtt_flowing};

#[test]
fn a_simulated_load_is_accepted_not_refused() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let beffroi = Beffroi::start(Some(MqttSettings {
        url: broker.url(),
        client_id: format!("beffroi-load-{}", std::process::id()),
        protocol: 4,
    }));
    let api = Api::login(&beffroi.base());
    // Once Beffroi's subscription is in place (a probe reading goes through).
    let publisher = Publisher::connect(broker.port(), "load-probe");
    let gauge = support::demo::of_kind(&support::demo::devices(), "water_level")[0]
        .id
        .clone();
    wait_mqtt_flowing(&api, &publisher, &gauge, || beffroi.log());
    let out = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args([
            "simulate",
            "--to",
            &broker.url(),
            "--load",
            "200",
            "--duration",
            "2s",
        ])
        .output()
        .expect("run simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (The probe above is one reading of a field that does not exist: `unknown_field`.)
    let sum = |m: &str, name: &str| {
        m.lines()
            .filter(|l| l.starts_with(name) && l.contains("source=\"mqtt\""))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum::<f64>()
    };
    let m = poll(
        "the load's messages counted",
        Duration::from_secs(30),
        || beffroi.log(),
        || {
            let m = api.metrics();
            (metric(&m, "beffroi_ingest_messages_total", &[("source", "mqtt")]).unwrap_or(0.0)
                >= 400.0)
                .then_some(m)
        },
    );
    let accepted = sum(&m, "beffroi_observations_accepted_total");
    assert!(accepted >= 400.0, "accepted {accepted}\n{m}");
    for reason in ["expired", "bad_time", "malformed", "out_of_range"] {
        let n = metric(
            &m,
            "beffroi_observations_rejected_total",
            &[("source", "mqtt"), ("reason", reason)],
        )
        .unwrap_or(0.0);
        assert_eq!(n, 0.0, "{reason}: {m}");
    }
}
