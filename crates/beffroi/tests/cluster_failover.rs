//! Three `beffroi serve` nodes on one PostgreSQL and a three-server NATS cluster: one node
//! holds the territory's lease and runs the engine, the others wait on standby. Devices
//! stream QoS 1 MQTT readings through NATS's MQTT listener and HTTP readings through the
//! active node; mid-stream the active node is killed (`kill -9`) and so is one NATS server.
//! A standby takes over; every acknowledged reading is stored exactly once, every fire
//! alarm raises its incident once (including alarms committed by the dead node and
//! delivered again), and the live stream goes on on every surviving node: the one that took
//! over, and the standby that relays the console to it. The session opened on the node
//! that died still holds on the one that took over (sessions are shared through NATS). The
//! time the takeover took is printed. The access log read on the node that took over holds
//! what the killed one recorded, and every node's audit chain verifies in PostgreSQL. Last,
//! the node that took over is stopped on purpose and hands the lease to the last standby
//! at once.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::beffroi::Beffroi;
use support::http::{Api, agent, get_text};
use support::publisher::Publisher;
use support::{now_ms, poll, senml_time};

const TERRITORY: &str = "dijon-metropole";
/// MQTT readings streamed by the device thread.
const MQTT_READINGS: usize = 600;
/// HTTP readings posted to whichever node is active.
const HTTP_READINGS: usize = 120;

fn pg(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect to PostgreSQL")
}

/// Whether `b` runs the engine: its own `/healthz` answers `ok` (a standby that relays
/// answers `relaying to …`).
fn is_active(b: &Beffroi) -> bool {
    b.is_running()
        && matches!(
            get_text(&agent(), &format!("{}/healthz", b.base())),
            Some((200, body)) if body.starts_with("ok")
        )
}

/// The index of the node that answers ready, once exactly one does.
fn active_node(nodes: &[&Beffroi], within: Duration) -> usize {
    poll(
        "one active node",
        within,
        || nodes.iter().map(|b| b.log()).collect::<Vec<_>>().join("\n"),
        || {
            let ready: Vec<usize> = (0..nodes.len()).filter(|&i| is_active(nodes[i])).collect();
            (ready.len() == 1).then(|| ready[0])
        },
    )
}

/// A reading: its device, its event time and its value.
#[derive(Clone, Debug, PartialEq)]
struct Reading {
    device: String,
    time: i64,
    level: f64,
}

fn senml(r: &Reading) -> String {
    format!(
        r#"[{{"bt":{},"n":"level_m","v":{}}}]"#,
        senml_time(r.time),
        r.level
    )
}

fn fire(time: i64) -> String {
    format!(r#"[{{"bt":{},"n":"fire","vb":true}}]"#, senml_time(time))
}

/// The MQTT topic of a device on the NATS MQTT listener.
fn topic(communes: &HashMap<String, String>, d: &support::demo::Device) -> String {
    beffroi_nats::mqtt_forward::device_topic(TERRITORY, &communes[&d.site], &d.id, "senml")
}

#[test]
fn three_nodes_lose_the_active_one_and_a_nats_server_and_lose_nothing() {
    let Some(postgres) = beffroi_testkit::postgres::Postgres::start() else {
        return;
    };
    let Some(mut nats) = beffroi_testkit::nats::NatsCluster::start_with_mqtt(3) else {
        return;
    };
    let url = postgres.create_database("cluster");
    // The pseudonymisation keys are the territory's, the same on every node.
    let keys = tempfile::tempdir().expect("keys folder");
    let config = |node: &str| {
        format!(
            "[privacy]\nkeys_dir = {:?}\n\n[cluster]\ndatabase = \"{url}\"\nnats = \"{}\"\nnode = \"{node}\"\npartitions = 4\nlease_ttl = \"15s\"\nnats_servers = 3\n",
            keys.path().join("vault").display().to_string(),
            nats.urls()
        )
    };
    let n1 = Beffroi::start_node(&config("n1"));
    assert_eq!(active_node(&[&n1], Duration::from_secs(30)), 0);
    // The second node also serves `/metrics` without a token on an address of its own.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let n2 = Beffroi::start_node(&format!(
        "{}\n[http]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n",
        config("n2")
    ));
    let n3 = Beffroi::start_node(&config("n3"));
    let nodes = [&n1, &n2, &n3];
    // The others wait on standby, alive, and relay the console to the active node: what
    // they answer is its answer, refusals included.
    for b in [&n2, &n3] {
        let (status, body) = poll(
            "a standby relaying to the active node",
            Duration::from_secs(30),
            || all_logs(&nodes),
            || {
                get_text(&agent(), &format!("{}/healthz", b.base()))
                    .filter(|(status, _)| *status == 200)
            },
        );
        assert!(body.starts_with("relaying to"), "{status}: {body}");
        let (status, body) = get_text(&agent(), &format!("{}/api/v1/incidents", b.base()))
            .expect("a standby answers");
        assert_eq!(status, 401, "the active node's refusal, relayed: {body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
        assert!(matches!(
            get_text(&agent(), &format!("{}/livez", b.base())),
            Some((200, _))
        ));
    }
    assert_eq!(active_node(&nodes, Duration::from_secs(5)), 0);
    // Logged in through a standby: the session is the active node's, and every node's.
    let through_n2 = Api::login(&n2.base());
    for b in [&n1, &n3] {
        let elsewhere = Api {
            base: b.base(),
            ..through_n2.clone()
        };
        let (status, v) = elsewhere.get("/api/v1/incidents");
        assert_eq!(
            status,
            200,
            "a session opened through n2, on {}: {v}",
            b.base()
        );
    }
    // Reading the access log is itself audited, on the active node n1: its entry must
    // outlive n1 (copied to the cluster's database, ADR 0045).
    let (status, v) = through_n2.get("/api/v1/privacy/access-log?limit=5");
    assert_eq!(status, 200, "{v}");
    // A standby's own metrics: it is not active, its lease manager runs.
    let (status, text) = get_text(
        &agent(),
        &format!("http://127.0.0.1:{metrics_port}/metrics"),
    )
    .expect("a standby serves its metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("beffroi_cluster_active{node=\"n2\"} 0"),
        "{text}"
    );
    assert!(
        support::http::metric(&text, "beffroi_cluster_relayed_total", &[("node", "n2")])
            .is_some_and(|n| n >= 2.0),
        "the standby counts what it relayed (a refusal, a login): {text}"
    );

    let devices = support::demo::devices();
    let communes = support::demo::site_communes();
    let gauges: Vec<&support::demo::Device> = support::demo::of_kind(&devices, "water_level");
    assert!(gauges.len() >= 10, "water level gauges in the demo");
    // Fire panels of distinct sites: the fire rule's incidents are keyed by site.
    let mut panels: Vec<&support::demo::Device> = Vec::new();
    for p in support::demo::of_kind(&devices, "fire_panel") {
        if panels.iter().all(|q| q.site != p.site) {
            panels.push(p);
        }
    }
    assert!(panels.len() >= 8, "fire panels of eight sites");
    let panels = &panels[..8];

    // The MQTT readings: each gauge's times strictly increase, so each reading is one row.
    let base = now_ms() - 60_000;
    let mqtt_readings: Vec<Reading> = (0..MQTT_READINGS)
        .map(|i| Reading {
            device: gauges[i % gauges.len()].id.clone(),
            time: base + i as i64 * 10,
            level: 0.5 + (i % 100) as f64 / 1000.0,
        })
        .collect();
    let publisher = Publisher::connect(nats.mqtt_port(0).expect("MQTT listener"), "gauges");
    let client = publisher.client();
    let by_id: HashMap<&str, &support::demo::Device> =
        devices.iter().map(|d| (d.id.as_str(), d)).collect();
    let (streamed_tx, streamed_rx) = mpsc::channel::<usize>();
    let streamer = {
        let topics: Vec<String> = mqtt_readings
            .iter()
            .map(|r| topic(&communes, by_id[r.device.as_str()]))
            .collect();
        let bodies: Vec<String> = mqtt_readings.iter().map(senml).collect();
        std::thread::spawn(move || {
            for (i, (t, b)) in topics.iter().zip(&bodies).enumerate() {
                client
                    .publish(t, rumqttc::QoS::AtLeastOnce, false, b.as_bytes())
                    .expect("publish request");
                let _ = streamed_tx.send(i + 1);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // Four fire alarms before the loss.
    for p in &panels[..4] {
        publisher.publish(&topic(&communes, p), fire(now_ms()));
    }

    // HTTP readings to the active node; after the loss, to whichever node took over.
    let http_readings: Vec<Reading> = (0..HTTP_READINGS)
        .map(|i| Reading {
            device: gauges[(i * 7) % gauges.len()].id.clone(),
            time: base + 30_000 + i as i64 * 10,
            level: 0.9 + (i % 50) as f64 / 1000.0,
        })
        .collect();
    let mut active = 0usize;
    let mut api = Api::login(&nodes[active].base());
    let mut takeover = None;
    let mut killed_nats = false;
    for (i, r) in http_readings.iter().enumerate() {
        if i == HTTP_READINGS / 2 {
            // Mid-stream: the MQTT thread is half way too.
            let _ = streamed_rx.iter().find(|&n| n >= MQTT_READINGS / 2);
            let killed_at = Instant::now();
            nodes[active].kill9();
            let next = active_node(&nodes, Duration::from_secs(60));
            let took = killed_at.elapsed();
            println!(
                "takeover: node {} ready {} ms after node {} was killed (lease ttl 15 s)",
                next + 1,
                took.as_millis(),
                active + 1
            );
            takeover = Some(took);
            active = next;
            // The session opened on the node that died holds on the one that took over:
            // nobody logs in again.
            api = Api {
                base: nodes[active].base(),
                ..api.clone()
            };
            let (status, v) = api.get("/api/v1/incidents");
            assert_eq!(status, 200, "the dead node's session on the new one: {v}");
        }
        if i == HTTP_READINGS * 2 / 3 && !killed_nats {
            nats.kill(2);
            killed_nats = true;
        }
        let path = format!("/api/v1/devices/{}/observations?format=senml", r.device);
        let (status, v) = post_retrying(&api, &path, &senml(r));
        assert_eq!(status, 202, "{v}\n{}", all_logs(&nodes));
        assert!(v["log_sequence"].as_u64().is_some_and(|s| s > 0), "{v}");
    }
    assert!(takeover.is_some());
    streamer.join().expect("the MQTT thread");

    // The live stream goes on on every surviving node: the one that took over, and the
    // standby that relays to it, with the session opened through a standby before the loss.
    let survivors: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].is_running())
        .collect();
    assert_eq!(survivors.len(), 2);
    let (events_tx, events_rx) = mpsc::channel::<(usize, Value)>();
    for &i in &survivors {
        let on = Api {
            base: nodes[i].base(),
            ..through_n2.clone()
        };
        let stream = poll(
            "the live stream of a surviving node",
            Duration::from_secs(30),
            || all_logs(&nodes),
            || {
                on.stream(Duration::from_secs(90))
                    .ok()
                    .filter(|r| r.status().as_u16() == 200)
            },
        );
        let mut reader = BufReader::new(stream.into_body().into_reader());
        let events_tx = events_tx.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if let Some(data) = line.trim_end().strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str::<Value>(data)
                    && events_tx.send((i, v)).is_err()
                {
                    return;
                }
                line.clear();
            }
        });
    }
    // Four more fire alarms after the loss, and the first four again (joined, not opened),
    // from a device that reconnects (to another NATS server) and sends again what was not
    // acknowledged, as MQTT devices do: a PUBLISH that reaches a server while its streams
    // elect leaders after the loss may get no PUBACK on that connection.
    let alarms: Vec<(String, String)> = panels[4..]
        .iter()
        .chain(&panels[..4])
        .map(|p| (topic(&communes, p), fire(now_ms())))
        .collect();
    let mut acked = false;
    for attempt in 0..4 {
        let server = nats.mqtt_port(1 - attempt % 2).expect("MQTT listener");
        let id = format!("panels-{attempt}");
        // A server still electing its leaders may not answer the CONNECT in time either.
        let Ok(device) = std::panic::catch_unwind(|| Publisher::connect(server, &id)) else {
            continue;
        };
        for (t, body) in &alarms {
            device.publish(t, body.clone());
        }
        let until = Instant::now() + Duration::from_secs(15);
        while device.acks() < alarms.len() as u64 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        if device.acks() == alarms.len() as u64 {
            acked = true;
            break;
        }
    }
    assert!(acked, "the fire alarms acknowledged\n{}", all_logs(&nodes));
    let live_site = &panels[4].site;
    let seen_on = std::cell::RefCell::new(std::collections::BTreeSet::new());
    poll(
        "the new fire alarm on the live stream of both surviving nodes",
        Duration::from_secs(60),
        || {
            format!(
                "{}\n{}\nPUBACKs {} of {}, seen on {:?}",
                all_logs(&nodes),
                cluster_metrics(&api),
                publisher.acks(),
                MQTT_READINGS + 4,
                seen_on.borrow()
            )
        },
        || {
            let mut seen = seen_on.borrow_mut();
            for (i, v) in events_rx.try_iter() {
                let text = v.to_string();
                if text.contains(live_site.as_str()) && text.contains("fire") {
                    seen.insert(i);
                }
            }
            (seen.len() == survivors.len()).then_some(())
        },
    );
    publisher.wait_acks((MQTT_READINGS + 4) as u64, Duration::from_secs(60));

    // Every acknowledged reading stored exactly once.
    let expected: Vec<&Reading> = mqtt_readings.iter().chain(&http_readings).collect();
    let devices_streamed: Vec<String> = gauges.iter().map(|g| g.id.clone()).collect();
    let mut db = pg(&url);
    let stored = |db: &mut postgres::Client| -> Vec<(String, i64, f64)> {
        db.query(
            "SELECT device, time, value FROM observations WHERE field = 'level_m' \
             AND device = ANY($1) AND time >= $2 ORDER BY device, time",
            &[&devices_streamed, &base],
        )
        .expect("observations")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    let rows = poll(
        "every acknowledged reading in PostgreSQL",
        Duration::from_secs(90),
        || format!("{}\n{}", all_logs(&nodes), nats.log(0)),
        || {
            let rows = stored(&mut db);
            (rows.len() >= expected.len()).then_some(rows)
        },
    );
    let mut want: Vec<(String, i64)> = expected
        .iter()
        .map(|r| (r.device.clone(), r.time))
        .collect();
    want.sort();
    let got: Vec<(String, i64)> = rows.iter().map(|(d, t, _)| (d.clone(), *t)).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "no reading stored twice, none invented"
    );
    assert_eq!(got, want, "every acknowledged reading, once");
    for r in &expected {
        let row = rows
            .iter()
            .find(|(d, t, _)| *d == r.device && *t == r.time)
            .expect("stored");
        assert!((row.2 - r.level).abs() < 1e-9, "{r:?} stored as {row:?}");
    }

    // Every fire alarm raised its incident once, across the loss.
    let fires = poll(
        "eight fire incidents",
        Duration::from_secs(60),
        || all_logs(&nodes),
        || {
            let rows = db
                .query(
                    "SELECT site, count(*) FROM incidents WHERE rule = 'fire-alarm' GROUP BY site",
                    &[],
                )
                .expect("incidents");
            let by_site: BTreeMap<String, i64> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            (by_site.len() >= panels.len()).then_some(by_site)
        },
    );
    for p in panels {
        assert_eq!(
            fires.get(&p.site),
            Some(&1),
            "one fire incident at {}: {fires:?}",
            p.site
        );
    }
    assert_eq!(fires.len(), panels.len(), "{fires:?}");

    // The node that took over still runs the engine (the NATS server lost did not cost it
    // its lease) and says so on /metrics.
    assert!(
        is_active(nodes[active]),
        "the node that took over is still active\n{}",
        all_logs(&nodes)
    );
    let metrics = api.metrics();
    let node = format!("n{}", active + 1);
    assert_eq!(
        support::http::metric(&metrics, "beffroi_cluster_active", &[("node", &node)]),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        support::http::metric(
            &metrics,
            "beffroi_cluster_takeover_milliseconds",
            &[("node", &node)]
        )
        .is_some_and(|ms| ms > 0.0),
        "{metrics}"
    );
    drop(publisher);

    // The access log read on the node that took over holds what n1 recorded before it was
    // killed, with the node's name: the cluster's audit trail, not this node's.
    let entries = poll(
        "n1's access log entry read on the node that took over",
        Duration::from_secs(30),
        || all_logs(&nodes),
        || {
            let (status, v) = api.get("/api/v1/privacy/access-log?limit=1000");
            let entries = v["entries"].as_array().cloned().unwrap_or_default();
            (status == 200
                && entries
                    .iter()
                    .any(|e| e["node"] == "n1" && e["action"] == "privacy.access_log"))
            .then_some(entries)
        },
    );
    assert!(
        entries.iter().all(|e| e["node"].is_string()),
        "every entry names its node: {entries:?}"
    );

    // A logout (through the standby, so on the active node) ends the session; the node that
    // takes over next must refuse it too, and keep honouring the others.
    let standby = survivors
        .iter()
        .copied()
        .find(|&i| i != active)
        .expect("a standby survives");
    let (status, v) = Api {
        base: nodes[standby].base(),
        ..through_n2.clone()
    }
    .post("/api/v1/auth/logout", "");
    assert!(
        status == 200 || status == 204,
        "logout relayed: {status} {v}"
    );

    // A node stopped on purpose (an upgrade, one node at a time) hands the lease over: the
    // last standby takes over at its next round, not a lease's ttl later.
    let leaving = Instant::now();
    assert!(
        nodes[active].terminate(Duration::from_secs(30)),
        "a clean stop\n{}",
        all_logs(&nodes)
    );
    let last = active_node(&nodes, Duration::from_secs(30));
    let handover = leaving.elapsed();
    println!(
        "handover: node {} ready {} ms after node {} was stopped (SIGTERM)",
        last + 1,
        handover.as_millis(),
        active + 1
    );
    assert_ne!(last, active);
    assert!(
        handover < Duration::from_secs(15),
        "the lease was released, not left to expire: {handover:?}\n{}",
        all_logs(&nodes)
    );
    let on_last = |session: &Api| {
        Api {
            base: nodes[last].base(),
            ..session.clone()
        }
        .get("/api/v1/incidents")
        .0
    };
    // The logout reaches the other nodes through the shared table, asynchronously (later
    // while its bucket elects a leader after the NATS server's loss).
    let last_api = Api {
        base: nodes[last].base(),
        ..api.clone()
    };
    poll(
        "the logged-out session refused after a handover",
        Duration::from_secs(30),
        || format!("{}\n{}", all_logs(&nodes), cluster_metrics(&last_api)),
        || (on_last(&through_n2) == 401).then_some(()),
    );
    assert_eq!(
        on_last(&api),
        200,
        "the first session, after two changes of node"
    );

    // Every node's audit chain, as the cluster's database holds it, verifies: n1's up to
    // its last entry copied before the kill (unsigned after its last checkpoint), the one
    // stopped on purpose up to its final checkpoint.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["audit", "verify", "--database", &url])
        .args(["--trust-recorded-keys", "--allow-unsigned-tail"])
        .output()
        .expect("run beffroi audit verify");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success(), "{out}");
    for node in ["n1", "n2", "n3"] {
        assert!(
            out.contains(&format!("of node {node}: OK")),
            "{node}'s chain verified: {out}"
        );
    }
}

/// The cluster's lines of a node's `/metrics`, for failure messages.
fn cluster_metrics(api: &Api) -> String {
    let text = api
        .agent
        .get(&format!("{}/metrics", api.base))
        .header("Authorization", &format!("Bearer {}", api.token))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("cluster_") || l.contains("source=\"nats\""))
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn all_logs(nodes: &[&Beffroi]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, b)| format!("===== node n{} =====\n{}", i + 1, b.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Posts, retrying on a refused connection or a `503` (the node going away, the log busy
/// while a NATS server is lost) until an answer that is neither.
fn post_retrying(api: &Api, path: &str, body: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = match api
            .agent
            .post(&format!("{}{path}", api.base))
            .header("Authorization", &format!("Bearer {}", api.token))
            .content_type("application/json")
            .send(body)
        {
            Ok(mut r) => {
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (
                    r.status().as_u16(),
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(e) => (0, Value::String(e.to_string())),
        };
        if status != 503 && status != 0 || Instant::now() >= deadline {
            return (status, v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
