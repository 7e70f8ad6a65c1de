//! End to end through a real Mosquitto and the real `beffroi serve`, in MQTT 3.1.1 and 5:
//! SenML, plain JSON and ChirpStack uplinks published at QoS 1 become observations and
//! incidents visible through the HTTP API; malformed and unknown-device messages are
//! counted in `/metrics` and leave the process healthy.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::beffroi::{Beffroi, MqttSettings};
use support::demo::{self, TERRITORY};
use support::http::{Api, get_text, metric};
use support::mosquitto::Mosquitto;
use support::publisher::{Publisher, wait_mqtt_flowing};
use support::{now_ms, poll, rfc3339, senml_time};

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn mqtt_end_to_end_v311() {
    end_to_end(4);
}

#[test]
fn mqtt_end_to_end_v5() {
    end_to_end(5);
}

fn chirpstack_uplink(dev_eui: &str, name: &str, time_ms: i64, object: Value) -> String {
    serde_json::json!({
        "deduplicationId": format!("test-{dev_eui}-{time_ms}"),
        "time": rfc3339(time_ms),
        "deviceInfo": {"tenantName": "Dijon Métropole", "deviceName": name, "devEui": dev_eui},
        "fCnt": 412, "fPort": 10, "data": "AQI=",
        "object": object,
    })
    .to_string()
}

/// The single open incident of `rule` at `site`, once it is there.
fn wait_incident(api: &Api, rule: &str, site: &str, log: &dyn Fn() -> String) -> Value {
    poll(
        &format!("an open `{rule}` incident at `{site}`"),
        WAIT,
        || {
            format!(
                "open incidents: {:#?}\n{}",
                api.incidents("status=open"),
                log()
            )
        },
        || {
            let list: Vec<Value> = api
                .incidents("status=open")
                .into_iter()
                .filter(|i| i["rule"] == rule && i["site"] == site)
                .collect();
            (!list.is_empty()).then(|| {
                assert_eq!(list.len(), 1, "one incident per rule × site: {list:#?}");
                list[0].clone()
            })
        },
    )
}

/// The latest observations of a device (`GET /api/v1/devices/{id}`), once `field` = `value`
/// is among them.
fn wait_observation(api: &Api, device: &str, field: &str, value: Value) -> Value {
    poll(
        &format!("observation {device} {field} = {value}"),
        WAIT,
        || format!("{:#}", api.get_ok(&format!("/api/v1/devices/{device}"))),
        || {
            let d = api.get_ok(&format!("/api/v1/devices/{device}"));
            let found = d["recent"]
                .as_array()
                .expect("recent observations")
                .iter()
                .any(|o| o["field"] == field && o["value"] == value);
            found.then_some(d)
        },
    )
}

fn end_to_end(protocol: u8) {
    let started = Instant::now();
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let beffroi = Beffroi::start(Some(MqttSettings {
        url: broker.url(),
        client_id: format!("beffroi-e2e-v{protocol}-{}", std::process::id()),
        protocol,
    }));
    let api = Api::login(&beffroi.base());
    let log = || support::logs(&beffroi, &broker);

    let devices = demo::devices();
    let fire = demo::of_kind(&devices, "fire_panel")[0].clone();
    let intrusion = demo::watched_intrusion_panels(&devices)
        .into_iter()
        .find(|d| d.site != fire.site)
        .expect("an intrusion panel on a watched site")
        .clone();
    let gauge = demo::of_kind(&devices, "water_level")
        .into_iter()
        .find(|d| d.dev_eui.is_some())
        .expect("a LoRaWAN gauge")
        .clone();
    let counter = demo::of_kind(&devices, "people_counter")
        .into_iter()
        .find(|d| d.dev_eui.is_some())
        .expect("a LoRaWAN people counter")
        .clone();

    let publisher = Publisher::connect(broker.port(), &format!("e2e-devices-v{protocol}"));
    wait_mqtt_flowing(&api, &publisher, &gauge.id, log);

    let metrics = api.metrics();
    let rejected = |m: &str, reason: &str| {
        metric(
            m,
            "beffroi_observations_rejected_total",
            &[("source", "mqtt"), ("reason", reason)],
        )
        .unwrap_or_else(|| panic!("no rejection counter for mqtt/{reason} in:\n{m}"))
    };
    assert_eq!(rejected(&metrics, "malformed"), 0.0);
    assert_eq!(rejected(&metrics, "unknown_device"), 0.0);

    let now = now_ms();
    let acks_before = publisher.acks();
    // (a) SenML on the device's topic: the fire panel rings.
    publisher.publish(
        &format!("beffroi/{TERRITORY}/{}/senml", fire.id),
        format!(r#"[{{"bt":{},"n":"fire","vb":true}}]"#, senml_time(now)),
    );
    // (b) Plain JSON on the device's topic: an intrusion.
    publisher.publish(
        &format!("beffroi/{TERRITORY}/{}/json", intrusion.id),
        format!(r#"{{"time":{now},"values":{{"intrusion":true,"armed":true}}}}"#),
    );
    // (c) ChirpStack uplinks: a gauge reading (stored, no rule fires at 1.23 m) and a crowd
    // of 5000 (crowd-high needs it sustained for 2 minutes: no incident yet).
    let gauge_eui = gauge.dev_eui.as_deref().expect("dev_eui");
    publisher.publish(
        &format!("application/1/device/{gauge_eui}/event/up"),
        chirpstack_uplink(
            gauge_eui,
            &gauge.id,
            now,
            serde_json::json!({"level_m": 1.23}),
        ),
    );
    let counter_eui = counter.dev_eui.as_deref().expect("dev_eui");
    publisher.publish(
        &format!("application/1/device/{counter_eui}/event/up"),
        chirpstack_uplink(
            counter_eui,
            &counter.id,
            now,
            serde_json::json!({"occupancy": 5000}),
        ),
    );
    // (c') ChirpStack uplinks that raise an incident: smoke and heat at one site within the
    // window of the `fire-smoke-heat` correlation.
    let all = demo::devices();
    let (smoke, heat) = demo::of_kind(&all, "smoke_detector")
        .into_iter()
        .filter(|s| s.dev_eui.is_some())
        .find_map(|s| {
            demo::of_kind(&all, "temperature")
                .into_iter()
                .find(|t| t.site == s.site && t.dev_eui.is_some())
                .map(|t| (s.clone(), t.clone()))
        })
        .expect("a site with a LoRaWAN smoke detector and temperature sensor");
    for (dev, object) in [
        (
            &smoke,
            serde_json::json!({"smoke": true, "battery_pct": 80}),
        ),
        (&heat, serde_json::json!({"temp_c": 71.5})),
    ] {
        let eui = dev.dev_eui.as_deref().expect("dev_eui");
        publisher.publish(
            &format!("application/1/device/{eui}/event/up"),
            chirpstack_uplink(eui, &dev.id, now, object),
        );
    }
    // (d) Bad input: not JSON, and a device the territory does not have.
    publisher.publish(
        &format!("beffroi/{TERRITORY}/{}/senml", gauge.id),
        r#"[{"n":"level_m","v":1.2"#,
    );
    publisher.publish(
        &format!("beffroi/{TERRITORY}/no-such-device-e2e/senml"),
        format!(r#"[{{"bt":{},"n":"level_m","v":1.0}}]"#, senml_time(now)),
    );
    publisher.wait_acks(acks_before + 8, WAIT);

    // Incidents, through the API.
    let fire_inc = wait_incident(&api, "fire-alarm", &fire.site, &log);
    assert_eq!(fire_inc["category"], "fire", "{fire_inc:#}");
    assert_eq!(fire_inc["key"], format!("fire-alarm@site:{}", fire.site));
    assert_eq!(fire_inc["status"], "new");
    assert_eq!(fire_inc["severity"], "critical");
    let intr_inc = wait_incident(&api, "intrusion-alarm", &intrusion.site, &log);
    assert_eq!(intr_inc["category"], "intrusion", "{intr_inc:#}");
    assert_eq!(
        intr_inc["key"],
        format!("intrusion-alarm@site:{}", intrusion.site)
    );
    assert_eq!(intr_inc["status"], "new");

    let lora_inc = wait_incident(&api, "fire-smoke-heat", &smoke.site, &log);
    assert_eq!(lora_inc["category"], "fire", "{lora_inc:#}");
    assert_eq!(lora_inc["severity"], "critical");

    // The incident detail carries the fire procedure and the opening in its log.
    let detail = api.get_ok(&format!("/api/v1/incidents/{}", fire_inc["id"]));
    assert!(
        !detail["sop"]["steps"]
            .as_array()
            .expect("sop steps")
            .is_empty(),
        "fire procedure attached: {detail:#}"
    );
    assert!(
        detail["log"]
            .as_array()
            .expect("log")
            .iter()
            .any(|e| e["action"] == "opened"),
        "{detail:#}"
    );

    // The uplinks were stored (devices found by devEui).
    wait_observation(&api, &gauge.id, "level_m", serde_json::json!(1.23));
    wait_observation(&api, &counter.id, "occupancy", serde_json::json!(5000.0));

    // Bad input is counted, per reason, and listed.
    let m = poll(
        "malformed and unknown_device MQTT rejections in /metrics",
        WAIT,
        || format!("{}\n{}", api.metrics(), log()),
        || {
            let m = api.metrics();
            (rejected(&m, "malformed") >= 1.0 && rejected(&m, "unknown_device") >= 1.0).then_some(m)
        },
    );
    let accepted = metric(
        &m,
        "beffroi_observations_accepted_total",
        &[("source", "mqtt")],
    )
    .expect("accepted counter");
    assert!(
        accepted >= 8.0,
        "fire, intrusion+armed, level, occupancy, smoke+battery, temp: {accepted}\n{m}"
    );
    // The counters move when the pipeline refuses; the rows are there once the batch
    // that carries them is committed (the writer's commit window later).
    for reason in ["malformed", "unknown_device"] {
        poll(
            &format!("a stored mqtt/{reason} rejection"),
            WAIT,
            || format!("{:#}", api.get_ok("/api/v1/rejections?limit=1000")),
            || {
                api.get_ok("/api/v1/rejections?limit=1000")
                    .as_array()
                    .expect("rejections")
                    .iter()
                    .any(|r| r["source"] == "mqtt" && r["reason"] == reason)
                    .then_some(())
            },
        );
    }

    // Only the three alarms opened incidents: no crowd incident from a single reading, none
    // for the gauge.
    let open = api.incidents("status=active");
    assert!(
        open.iter().all(|i| i["rule"] != "crowd-high"),
        "crowd-high needs 2 minutes: {open:#?}"
    );
    // The message naming an unregistered device is a cyber incident.
    let (cyber, open): (Vec<_>, Vec<_>) = open.into_iter().partition(|i| i["category"] == "cyber");
    assert_eq!(cyber.len(), 1, "{cyber:#?}");
    assert_eq!(cyber[0]["rule"], "cyber-unregistered");
    assert_eq!(cyber[0]["technique"]["id"], "T0856");
    assert_eq!(
        open.len(),
        3,
        "exactly the fire, the intrusion and the smoke-and-heat fire: {open:#?}"
    );

    // Still alive and healthy after the bad input.
    assert!(beffroi.is_running(), "beffroi exited:\n{}", log());
    let (status, body) =
        get_text(&api.agent, &format!("{}/healthz", api.base)).expect("GET /healthz");
    assert_eq!(status, 200, "{body}");
    eprintln!(
        "mqtt end to end (protocol {protocol}) passed in {:?}",
        started.elapsed()
    );
}
