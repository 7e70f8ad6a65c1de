//! Simultaneous alarms for one deduplication key: 50 HTTP ingest requests released at the
//! same instant (and, with Mosquitto, a burst of MQTT messages for the same site) open one
//! incident per rule × site, never two.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::beffroi::{Beffroi, MqttSettings};
use support::demo::{self, TERRITORY};
use support::http::{Api, metric};
use support::mosquitto::Mosquitto;
use support::publisher::{Publisher, wait_mqtt_flowing};
use support::{now_ms, poll};

const HTTP_REQUESTS: usize = 50;
const MQTT_MESSAGES: usize = 25;

#[test]
fn simultaneous_alarms_open_one_incident_per_key() {
    let started = Instant::now();
    // MQTT is a second, concurrent source when a broker is available; the HTTP part runs
    // either way (unless BEFFROI_REQUIRE_SERVICES=1 makes a missing broker a failure).
    let broker = Mosquitto::start();
    if broker.is_none() {
        eprintln!("(only the MQTT part of this test is skipped; the HTTP part runs)");
    }
    let beffroi = Beffroi::start(broker.as_ref().map(|b| MqttSettings {
        url: b.url(),
        client_id: format!("beffroi-concurrency-{}", std::process::id()),
        protocol: 5,
    }));
    let log = || beffroi.log();
    let api = Api::login(&beffroi.base());

    let devices = demo::devices();
    let (panel, readers) = demo::watched_intrusion_panels(&devices)
        .into_iter()
        .find_map(|p| {
            let readers: Vec<String> = devices
                .iter()
                .filter(|d| d.kind == "access_reader" && d.site == p.site)
                .map(|d| d.id.clone())
                .collect();
            (readers.len() >= 2).then(|| (p.clone(), readers))
        })
        .expect("a watched site with an intrusion panel and two access readers");
    let gauge = demo::of_kind(&devices, "water_level")[0].id.clone();
    let site = panel.site.clone();

    let publisher = broker.as_ref().map(|b| {
        let p = Publisher::connect(b.port(), "concurrency-devices");
        wait_mqtt_flowing(&api, &p, &gauge, log);
        p
    });

    let acks_before = publisher.as_ref().map_or(0, Publisher::acks);
    let base = now_ms() - 30_000;
    let parties = HTTP_REQUESTS + usize::from(publisher.is_some());
    let barrier = Arc::new(Barrier::new(parties));
    let mut threads = Vec::new();
    for i in 0..HTTP_REQUESTS {
        let t = base + i as i64 * 10;
        // Rules see each device's readings in time order (ADR 0019): whatever the order of
        // arrival, the newest reading of a device is evaluated, and the newest of the panel
        // (the last five requests hold no clearing) is an alarm.
        let case = match i % 5 {
            2 if i + 5 >= HTTP_REQUESTS => 1,
            c => c,
        };
        let body = match case {
            // Both signals of `intrusion-confirmed` in one request.
            0 => json!([
                {"device": panel.id, "time": t, "values": {"intrusion": true}},
                {"device": readers[0], "time": t, "values": {"door_forced": true}},
            ]),
            1 => {
                json!({"device": panel.id, "time": t, "values": {"intrusion": true, "armed": true}})
            }
            // The alarm clears and comes back: a return evaluated must find the incident.
            2 => json!({"device": panel.id, "time": t, "values": {"intrusion": false}}),
            3 => json!({"device": readers[0], "time": t, "values": {"door_forced": true}}),
            _ => json!({"device": readers[1], "time": t, "values": {"door_forced": true}}),
        }
        .to_string();
        let (api, barrier) = (api.clone(), Arc::clone(&barrier));
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            let (status, v) = api.post("/api/v1/observations?format=json", &body);
            (status, v, body)
        }));
    }
    let mqtt_thread = publisher.as_ref().map(|p| {
        let client = p.client();
        let (panel_id, barrier) = (panel.id.clone(), Arc::clone(&barrier));
        std::thread::spawn(move || {
            barrier.wait();
            for j in 0..MQTT_MESSAGES {
                let t = base + 1 + j as i64 * 10;
                let on = j % 3 != 2;
                client
                    .publish(
                        format!("beffroi/{TERRITORY}/{panel_id}/json"),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        format!(r#"{{"time":{t},"values":{{"intrusion":{on}}}}}"#),
                    )
                    .expect("publish request");
            }
        })
    });
    for t in threads {
        let (status, v, body) = t.join().expect("HTTP thread");
        assert_eq!(status, 200, "POST {body}: {v}\n{}", log());
        assert!(
            v["accepted"].as_u64().unwrap_or(0) >= 1 && v["rejected"] == json!([]),
            "POST {body}: {v}"
        );
    }
    if let (Some(t), Some(p)) = (mqtt_thread, publisher.as_ref()) {
        t.join().expect("MQTT thread");
        p.wait_acks(acks_before + MQTT_MESSAGES as u64, Duration::from_secs(15));
        poll(
            "the MQTT burst ingested",
            Duration::from_secs(15),
            || format!("{}\n{}", api.metrics(), log()),
            || {
                let m = api.metrics();
                let accepted = metric(
                    &m,
                    "beffroi_observations_accepted_total",
                    &[("source", "mqtt")],
                )
                .unwrap_or(0.0);
                (accepted >= MQTT_MESSAGES as f64).then_some(())
            },
        );
    }
    // A last request through the same single writer: once it is answered, every batch
    // before it (the MQTT burst included) is committed.
    let (status, v) = api.post(
        &format!("/api/v1/devices/{gauge}/observations?format=json"),
        &json!({"time": now_ms(), "values": {"level_m": 0.8}}).to_string(),
    );
    assert_eq!(status, 200, "{v}");

    let active = api.incidents("status=active&limit=5000");
    let mut by_key: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for i in &active {
        by_key
            .entry(i["key"].as_str().expect("key").to_owned())
            .or_default()
            .push(i);
    }
    for (key, list) in &by_key {
        assert_eq!(list.len(), 1, "two active incidents for {key}: {list:#?}");
    }
    for rule in ["intrusion-alarm", "intrusion-confirmed"] {
        let key = format!("{rule}@site:{site}");
        let list = by_key.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(list.len(), 1, "one {key}; active incidents: {active:#?}");
        assert_eq!(list[0]["rule"], rule);
        assert_eq!(list[0]["site"], site.as_str());
        assert_eq!(list[0]["category"], "intrusion");
    }
    // Nothing was closed, so the table as a whole has one row per key.
    let all = api.incidents("limit=5000");
    assert_eq!(all.len(), active.len(), "no closed incidents: {all:#?}");
    assert!(beffroi.is_running(), "beffroi exited:\n{}", log());
    eprintln!(
        "{} incidents, one per key, from {HTTP_REQUESTS} HTTP requests{} in {:?}",
        active.len(),
        if publisher.is_some() {
            format!(" and {MQTT_MESSAGES} MQTT messages")
        } else {
            String::new()
        },
        started.elapsed()
    );
}
