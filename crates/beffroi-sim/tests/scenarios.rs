//! The demo scenarios against the demo territory: parsing, errors, playback semantics and
//! wire compatibility of every generated payload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use beffroi_core::{Duration, Territory, Timestamp, Value};
use beffroi_sim::{LoadGenerator, Message, Player, Scenario, load_dir, parse};
use beffroi_territory::SourceFile;
use beffroi_wire::{Context, Format, decode, validate};

/// 2026-11-26T12:00:00Z.
const START: Timestamp = Timestamp(1_795_694_400_000);

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo")
}

fn territory() -> Arc<Territory> {
    static T: OnceLock<Arc<Territory>> = OnceLock::new();
    T.get_or_init(|| {
        let t = beffroi_territory::load_dir(&demo().join("territory"))
            .unwrap_or_else(|e| panic!("demo territory: {e}"));
        Arc::new(t)
    })
    .clone()
}

fn scenarios() -> Vec<Arc<Scenario>> {
    static S: OnceLock<Vec<Arc<Scenario>>> = OnceLock::new();
    S.get_or_init(|| {
        load_dir(&demo().join("scenarios"), &territory())
            .unwrap_or_else(|e| panic!("demo scenarios:\n{e}"))
            .into_iter()
            .map(Arc::new)
            .collect()
    })
    .clone()
}

fn scenario(name: &str) -> Arc<Scenario> {
    scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

fn play(scenarios: Vec<Arc<Scenario>>) -> Vec<Message> {
    let mut p = Player::new(territory(), scenarios, START, "dijon-metropole");
    let mut out = Vec::new();
    p.drain_until(p.duration(), &mut out);
    assert!(p.is_finished());
    out
}

/// Background alone, played once for the tests that only read it.
fn background_messages() -> &'static [Message] {
    static M: OnceLock<Vec<Message>> = OnceLock::new();
    M.get_or_init(|| play(vec![scenario("background")]))
}

/// The device named by an MQTT topic `beffroi/<territory>/<device>/<format>`.
fn hint(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("beffroi/dijon-metropole/")
        .and_then(|r| r.split('/').next())
}

/// Decodes and validates a message as ingest would; returns `(field, value)` pairs.
fn ingest(t: &Territory, m: &Message) -> Vec<(String, Value)> {
    let received = START.plus(m.offset);
    let cx = Context {
        device_hint: hint(&m.topic),
        received,
    };
    let records = decode(m.format, &m.payload, cx)
        .unwrap_or_else(|e| panic!("{} {}: {e}", m.topic, String::from_utf8_lossy(&m.payload)));
    assert!(!records.is_empty());
    records
        .iter()
        .map(|r| {
            let obs = validate(t, r, received).unwrap_or_else(|e| {
                panic!("{}: {e}\n{}", m.topic, String::from_utf8_lossy(&m.payload))
            });
            assert_eq!(obs.device, m.device, "{}", m.topic);
            assert_eq!(
                obs.time, received,
                "event time is the play's start + offset"
            );
            let kind = t.kind_of(obs.device);
            (kind.fields[obs.field.get()].name.to_string(), obs.value)
        })
        .collect()
}

#[test]
fn every_demo_scenario_parses() {
    let names: Vec<String> = scenarios().iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        names,
        [
            "attack-camera-botnet",
            "attack-silenced-gauge",
            "attack-spoofed-gauge",
            "background",
            "badge-brute",
            "black-ice",
            "crowd-surge",
            "fire-gym",
            "flood-ouche",
            "gauge-silent",
            "intrusion-school-night",
        ]
    );
    let flood = scenario("flood-ouche");
    assert_eq!(flood.duration, Duration::from_mins(240));
    assert!(flood.exclusive);
    assert_eq!(flood.expects.len(), 7);
    assert_eq!(flood.expects[0].rule.as_deref(), Some("flood-level-high"));
    assert_eq!(flood.expects[0].by, Some(Duration::from_mins(30)));
    assert_eq!(flood.silences().len(), 13);
    let gauge = scenario("gauge-silent");
    assert_eq!(gauge.silences()[0].from, Duration::from_mins(10));
    // Without `to`, a silence ends with its scenario.
    assert_eq!(gauge.silences()[0].to, Some(gauge.duration));
}

#[test]
fn a_bad_scenario_reports_every_error_with_its_line() {
    let text = r#"name = "bad"
title = "Bad"
duration = "1h"

[[signal]]
device = "no-such-gauge"
field = "level_m"
every = "5m"
constant = 1.0

[[signal]]
device = "dijon-ouche-port-du-canal-gauge-01"
field = "level_m"
every = "5m"
constant = 1.0
linear = [1.0, 2.0]

[[signal]]
kind = "camera_health"
field = "online"
every = "5m"
constant = 1.5
format = "chirpstack"

[[event]]
at = "10m"
device = "dijon-ecole-elem-jean-jaures-access-01"
values = { granted = "yes" }

[[silence]]
device = "ghost"
"#;
    let errs = parse(&SourceFile::new("bad.toml", text), &territory()).expect_err("invalid");
    let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "bad.toml:6: `signal.device`: unknown device `no-such-gauge`",
            "bad.toml:16: `signal.linear`: a signal has exactly one profile; `constant` is already given",
            "bad.toml:23: `signal.format`: format `chirpstack` needs a dev_eui; 1572 devices have none (first: `ahuy-mairie-cam-01`)",
            "bad.toml:22: `signal.constant`: `online` of kind `camera_health` is a boolean, got a number",
            "bad.toml:28: `event.values`: `granted` of kind `access_reader` is a boolean, got a string",
            "bad.toml:31: `silence.device`: unknown device `ghost`",
        ],
        "{got:#?}"
    );
}

#[test]
fn background_alone_is_valid_on_the_wire_and_in_time_order() {
    let t = territory();
    let msgs = background_messages();
    // ~2,900 devices at or faster than their heartbeat over 6 hours.
    assert!(
        (100_000..200_000).contains(&msgs.len()),
        "{} messages",
        msgs.len()
    );
    for w in msgs.windows(2) {
        assert!(w[0].offset <= w[1].offset);
        if w[0].offset == w[1].offset {
            assert!(w[0].device <= w[1].device, "ties are ordered by device");
        }
    }
    let mut devices = std::collections::BTreeSet::new();
    for m in msgs {
        ingest(&t, m);
        devices.insert(m.device);
    }
    assert_eq!(devices.len(), t.devices.len(), "every device reports");
}

#[test]
fn every_scenario_is_accepted_by_ingest() {
    // Background alone is checked above; here each scenario's own messages.
    let t = territory();
    for s in scenarios().into_iter().filter(|s| s.name != "background") {
        let msgs = play(vec![s.clone()]);
        for m in &msgs {
            ingest(&t, m);
            if m.format == Format::Senml {
                // The same pack works over HTTP, without a device in the topic.
                let cx = Context {
                    device_hint: None,
                    received: START.plus(m.offset),
                };
                let r = decode(m.format, &m.payload, cx).expect("decodes without a hint");
                let obs = validate(&t, &r[0], START.plus(m.offset)).expect("valid without hint");
                assert_eq!(obs.device, m.device);
            }
        }
    }
}

#[test]
fn kind_signals_are_spread_over_the_period() {
    let t = territory();
    let msgs = background_messages();
    let cam = t.kind_id("camera_health").expect("kind");
    let first: std::collections::BTreeSet<Duration> = t
        .devices_of_kind(cam)
        .iter()
        .filter_map(|d| msgs.iter().find(|m| m.device == *d).map(|m| m.offset))
        .collect();
    // every = 5m, start = 2m: first ticks in [2m, 7m), on many distinct seconds.
    assert!(first.iter().all(|o| (120_000..420_000).contains(&o.0)));
    assert!(first.len() > 200, "{} distinct first ticks", first.len());
}

#[test]
fn values_of_one_instant_are_merged_into_one_message() {
    let t = territory();
    let msgs = background_messages();
    let cam = t.device_id("dijon-hotel-de-ville-cam-001").expect("device");
    let cam_msgs: Vec<&Message> = msgs.iter().filter(|m| m.device == cam).collect();
    // Every 5 minutes from 2m + phase (< 5m) to 6h.
    assert!((71..=72).contains(&cam_msgs.len()), "{}", cam_msgs.len());
    let fields = ingest(&t, cam_msgs[0]);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["online", "tamper", "fps"]);
    assert_eq!(fields[0].1, Value::Bool(true));
    assert_eq!(fields[1].1, Value::Bool(false));
    let fps = fields[2].1.as_f64().expect("number");
    assert!((24.0..=26.0).contains(&fps), "{fps}");
    let text = String::from_utf8_lossy(&cam_msgs[0].payload);
    assert!(
        text.starts_with(r#"[{"bn":"dijon-hotel-de-ville-cam-001/","bt":1795694"#),
        "{text}"
    );

    // ChirpStack: the three road-weather fields in one `object`.
    let road = t
        .device_id("corcelles-les-monts-combe-de-corcelles-virages-road-01")
        .expect("device");
    let m = msgs.iter().find(|m| m.device == road).expect("a message");
    assert_eq!(m.format, Format::Chirpstack);
    assert!(m.topic.starts_with("application/beffroi/device/"));
    assert!(m.topic.ends_with("/event/up"));
    assert_eq!(ingest(&t, m).len(), 3);
    let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
    assert_eq!(v["fCnt"], 1);
    assert_eq!(
        v["deviceInfo"]["deviceName"],
        "corcelles-les-monts-combe-de-corcelles-virages-road-01"
    );

    // Plain JSON: the two fire-panel fields in one `values`.
    let fire = t.device_id("ahuy-mairie-fire-01").expect("device");
    let m = msgs.iter().find(|m| m.device == fire).expect("a message");
    assert_eq!(m.format, Format::Json);
    assert_eq!(m.topic, "beffroi/dijon-metropole/ahuy-mairie-fire-01/json");
    let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
    assert_eq!(v["values"]["fire"], false);
    assert_eq!(v["values"]["fault"], false);
    assert_eq!(v["time"], START.plus(m.offset).to_string());
}

#[test]
fn a_silence_hides_the_device_from_the_other_scenarios_only() {
    let t = territory();
    let both = play(vec![scenario("background"), scenario("gauge-silent")]);
    let ouges = t.device_id("ouges-ouche-gauge-01").expect("device");
    let offsets: Vec<Duration> = both
        .iter()
        .filter(|m| m.device == ouges)
        .map(|m| m.offset)
        .collect();
    assert!(!offsets.is_empty(), "background reports before 10m");
    let end = scenario("gauge-silent").duration;
    assert!(
        offsets
            .iter()
            .all(|o| *o < Duration::from_mins(10) || *o >= end),
        "{offsets:?}"
    );
    assert!(
        offsets.iter().any(|o| *o >= end),
        "background takes the gauge back when gauge-silent ends"
    );

    // flood-ouche silences the port du Canal gauge and drives it: every message of that
    // device is the scenario's own (every 2 minutes from 0s), none from background while
    // the flood lasts (4h); background takes it back for the last 2h of the play.
    let both = play(vec![scenario("background"), scenario("flood-ouche")]);
    let canal = t
        .device_id("dijon-ouche-port-du-canal-gauge-01")
        .expect("device");
    let flood_end = scenario("flood-ouche").duration;
    let canal_msgs: Vec<&Message> = both
        .iter()
        .filter(|m| m.device == canal && m.offset < flood_end)
        .collect();
    assert_eq!(canal_msgs.len(), 120);
    assert!(canal_msgs.iter().all(|m| m.offset.0 % 120_000 == 0));
    let level = |m: &Message| ingest(&t, m)[0].1.as_f64().expect("number");
    assert!((1.38..=1.42).contains(&level(canal_msgs[0])));
    assert!((3.48..=3.52).contains(&level(canal_msgs[119])));
    // Gauges flood-ouche does not silence keep their background messages (every 10m, 6h).
    let other = t.device_id("ouges-ouche-gauge-01").expect("device");
    assert_eq!(both.iter().filter(|m| m.device == other).count(), 36);
}

#[test]
fn own_signals_survive_own_silence_and_windows_are_half_open() {
    let t = territory();
    let scn = |name: &str, body: &str| {
        let text = format!("name = \"{name}\"\nduration = \"1h\"\n{body}");
        Arc::new(parse(&SourceFile::new(format!("{name}.toml"), text), &t).expect("valid"))
    };
    let base = scn(
        "base",
        "[[signal]]\ndevice = \"dijon-hotel-de-ville-cam-001\"\nfield = \"fps\"\nevery = \"10m\"\nconstant = 25.0\n",
    );
    let quiet = scn(
        "quiet",
        "[[silence]]\ndevice = \"dijon-hotel-de-ville-cam-001\"\nfrom = \"10m\"\nto = \"30m\"\n\
         [[event]]\nat = \"15m\"\ndevice = \"dijon-hotel-de-ville-cam-001\"\nvalues = { tamper = true }\n",
    );
    let msgs = play(vec![base, quiet]);
    let offsets: Vec<i64> = msgs.iter().map(|m| m.offset.0 / 60_000).collect();
    // base at 0, 10, 20, 30, 40, 50 minus [10m, 30m); quiet's own event at 15m.
    assert_eq!(offsets, [0, 15, 30, 40, 50]);
    assert_eq!(ingest(&t, &msgs[1]), [("tamper".into(), Value::Bool(true))]);
}

#[test]
fn events_and_signals_of_one_instant_merge_and_events_win() {
    let t = territory();
    let text = "name = \"m\"\nduration = \"1h\"\n\
        [[signal]]\ndevice = \"ahuy-mairie-fire-01\"\nfield = \"fire\"\nevery = \"10m\"\nconstant = false\nformat = \"json\"\n\
        [[signal]]\ndevice = \"ahuy-mairie-fire-01\"\nfield = \"fault\"\nevery = \"10m\"\nconstant = false\nformat = \"json\"\n\
        [[event]]\nat = \"10m\"\ndevice = \"ahuy-mairie-fire-01\"\nvalues = { fire = true }\nformat = \"json\"\n\
        [[event]]\nat = \"10m\"\ndevice = \"ahuy-mairie-fire-01\"\nvalues = { fault = true }\n";
    let s = Arc::new(parse(&SourceFile::new("m.toml", text), &t).expect("valid"));
    let msgs = play(vec![s]);
    // 6 ticks; at 10m the JSON message merges both signals and the JSON event, while the
    // SenML event is a message of its own.
    assert_eq!(msgs.len(), 7);
    let at10: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.offset == Duration::from_mins(10))
        .collect();
    assert_eq!(at10.len(), 2);
    assert_eq!(at10[0].format, Format::Senml);
    assert_eq!(ingest(&t, at10[0]), [("fault".into(), Value::Bool(true))]);
    assert_eq!(at10[1].format, Format::Json);
    let text = String::from_utf8_lossy(&at10[1].payload);
    assert!(
        text.ends_with(r#""values":{"fire":true,"fault":false}}"#),
        "{text}"
    );
    assert_eq!(ingest(&t, at10[1]).len(), 2);
}

#[test]
fn playback_is_deterministic_and_chunking_does_not_matter() {
    let set = || vec![scenario("background"), scenario("fire-gym")];
    let a = play(set());
    let mut p = Player::new(territory(), set(), START, "dijon-metropole");
    let mut b = Vec::new();
    let mut until = Duration::ZERO;
    while !p.is_finished() {
        until = Duration(until.0 + 7_777);
        p.drain_until(until, &mut b);
    }
    assert_eq!(a, b);

    let mut other_seed = Player::with_seed(territory(), set(), START, "dijon-metropole", 1);
    let mut c = Vec::new();
    other_seed.drain_until(other_seed.duration(), &mut c);
    assert_eq!(a.len(), c.len());
    assert_ne!(a, c, "the seed changes the noise");
}

#[test]
fn signal_values_are_clamped_into_the_physical_range() {
    let t = territory();
    let text = "name = \"clamp\"\nduration = \"1h\"\n\
        [[signal]]\ndevice = \"dijon-hotel-de-ville-rain-01\"\nfield = \"rain_mm_h\"\nevery = \"1m\"\nconstant = 0.0\nnoise = 5.0\nformat = \"chirpstack\"\n";
    let s = Arc::new(parse(&SourceFile::new("c.toml", text), &t).expect("valid"));
    let values: Vec<f64> = play(vec![s])
        .iter()
        .map(|m| ingest(&t, m)[0].1.as_f64().expect("number"))
        .collect();
    assert_eq!(values.len(), 60);
    assert!(values.iter().all(|v| (0.0..=5.0).contains(v)));
    assert!(
        values.iter().filter(|v| **v == 0.0).count() > 10,
        "half are clamped"
    );
    assert!(values.iter().any(|v| *v > 1.0), "noise is there");
}

#[test]
fn the_load_generator_produces_valid_messages_fast() {
    let t = territory();
    let background = scenario("background");
    for format in [Format::Senml, Format::Json, Format::Chirpstack] {
        let mut g = LoadGenerator::new(t.clone(), format, 7)
            .with_start(START)
            .with_topic_territory("dijon-metropole")
            .with_baseline(&background);
        let n = g.device_count();
        // Text fields are never generated (no plates nor phone numbers in the load): a
        // device with only text fields (the SMS alert line) sends nothing.
        let generated = t
            .devices
            .iter()
            .filter(|d| {
                t.kinds[d.kind.get()]
                    .fields
                    .iter()
                    .any(|f| f.ty != beffroi_core::FieldType::Text)
            })
            .count();
        let expected = match format {
            Format::Chirpstack => 856,
            _ => generated,
        };
        assert_eq!(n, expected, "{format:?}");
        for i in 0..n as i64 {
            let m = g.next_message(Duration(i));
            assert_eq!(m.format, format);
            ingest(&t, &m);
        }
    }
    // Realistic values from the baseline.
    let mut g = LoadGenerator::new(t.clone(), Format::Json, 7)
        .with_start(START)
        .with_topic_territory("dijon-metropole")
        .with_baseline(&background);
    let gauge = t
        .device_id("dijon-ouche-port-du-canal-gauge-01")
        .expect("device");
    let m = (0..t.devices.len())
        .map(|i| g.next_message(Duration(i as i64)))
        .find(|m| m.device == gauge)
        .expect("in the round robin");
    let level = ingest(&t, &m)[0].1.as_f64().expect("number");
    assert!((0.75..=0.85).contains(&level), "{level}");

    // Cheap: far more than 100k messages/s in release; a generous bound in debug builds.
    let mut g = LoadGenerator::new(t, Format::Senml, 1).with_start(START);
    let n = 200_000;
    let began = std::time::Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        bytes += g.next_message(Duration(i / 100)).payload.len();
    }
    let rate = n as f64 / began.elapsed().as_secs_f64();
    assert!(bytes > n as usize * 50);
    assert!(rate > 20_000.0, "{rate:.0} messages/s");
    eprintln!("load generator: {rate:.0} messages/s (this build profile)");
}
