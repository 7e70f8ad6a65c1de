//! `cargo bench -p beffroi --bench nodes`: real `beffroi serve` processes measured side by
//! side in one run, each beside what its broker does alone on the same machine.
//!
//! 1. Mosquitto alone: QoS 1 publisher → subscriber, the most it carries (`--burst`
//!    messages), and its CPU at the steady rate with one subscriber.
//! 2. A single node (SQLite, Mosquitto): at a steady `--rate` for `--secs`, the node's CPU
//!    per message and the latency from an alarm's publish to its incident on the live
//!    stream (`GET /api/v1/stream`); then the most it stores and acknowledges.
//! 3. NATS alone (3 servers, MQTT listeners, JetStream): the same two measurements.
//! 4. A cluster node (PostgreSQL, NATS): the same as 2, devices publishing to NATS's MQTT
//!    listener; then the most it stores with 1, 2 and 3 nodes running, and a console
//!    listing through a standby (relayed) beside the same listing on the active node.
//!
//! CPU is read from `/proc/PID/stat` of each process (all threads), so the load generator,
//! which runs in this process, is not counted. The deployment is the demo's, with the
//! sentinel's flood limit lifted (its gauges report many times a second here).
//!
//! Each broker alone is also timed from publish to a second subscriber, with a probe every
//! `rate / 5` messages, as the node is from an alarm's publish to its live stream.
//!
//! Flags (after `--`): `--rate N` (10000), `--secs S` (20), `--burst N` (50000).

#[path = "../tests/support/mod.rs"]
#[allow(unused)]
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beffroi_testkit::mosquitto::Mosquitto;
use beffroi_testkit::nats::NatsCluster;
use beffroi_testkit::postgres::Postgres;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use support::beffroi::Beffroi;
use support::demo::{self, Device};
use support::http::Api;
use support::{now_ms, senml_time};

struct Args {
    /// `--only single` or `--only cluster`: one half of the run.
    only: Option<String>,
    /// `--commit-window 5ms`: the nodes' `commit_window` (default: theirs).
    window: Option<String>,
    rate: u32,
    secs: u64,
    burst: usize,
}

fn args() -> Args {
    let mut a = Args {
        only: None,
        window: None,
        rate: 10_000,
        secs: 20,
        burst: 50_000,
    };
    let argv: Vec<String> = std::env::args().collect();
    for w in argv.windows(2) {
        match w[0].as_str() {
            "--rate" => a.rate = w[1].parse().expect("--rate N"),
            "--secs" => a.secs = w[1].parse().expect("--secs S"),
            "--burst" => a.burst = w[1].parse().expect("--burst N"),
            "--only" => a.only = Some(w[1].clone()),
            "--commit-window" => a.window = Some(w[1].clone()),
            _ => {}
        }
    }
    a
}

/// CPU seconds (user + system, all threads) of a running process.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let f: Vec<&str> = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// A process and its children (PostgreSQL's postmaster and its backends).
fn family(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = s
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// CPU seconds of a set of processes, re-listed each time (backends come and go).
struct Cpu(Box<dyn Fn() -> Vec<u32>>);

impl Cpu {
    fn of(pids: Vec<u32>) -> Cpu {
        Cpu(Box::new(move || pids.clone()))
    }
    fn now(&self) -> f64 {
        (self.0)().into_iter().map(cpu_secs).sum()
    }
}

/// The demo deployment with the sentinel's flood limit lifted: here a gauge reports many
/// times a second, which would otherwise be a flood.
fn deployment(dir: &Path) -> PathBuf {
    let d = dir.join("deployment");
    support::copy_dir(&demo::dir(), &d);
    std::fs::write(
        d.join("security.toml"),
        "flood_per_minute = 100000000.0\nflood_burst = 100000000.0\n",
    )
    .expect("security.toml");
    d
}

fn gauge(time: i64) -> String {
    format!(r#"[{{"bt":{},"n":"level_m","v":0.5}}]"#, senml_time(time))
}

fn fire(time: i64) -> String {
    format!(r#"[{{"bt":{},"n":"fire","vb":true}}]"#, senml_time(time))
}

/// Where the devices publish, and their topics there.
#[derive(Clone)]
struct Target {
    port: u16,
    topic: Arc<dyn Fn(&Device) -> String + Send + Sync>,
}

/// A connected MQTT client on its own runtime thread; `publish` queues.
struct Load {
    rt: tokio::runtime::Runtime,
    client: AsyncClient,
    acks: Arc<std::sync::atomic::AtomicU64>,
}

impl Load {
    fn connect(port: u16, id: &str, subscribe: Option<&str>) -> Load {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(1000)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut ev) = rt.block_on(async { AsyncClient::new(o, 10_000) });
        let acks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let acks = Arc::clone(&acks);
            rt.spawn(async move {
                let mut tx = Some(tx);
                loop {
                    match ev.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            if let Some(t) = tx.take() {
                                let _ = t.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(_) | Packet::Publish(_))) => {
                            acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            });
        }
        rx.recv_timeout(Duration::from_secs(10))
            .expect("CONNACK from the broker");
        if let Some(filter) = subscribe {
            let c = client.clone();
            rt.block_on(c.subscribe(filter, QoS::AtLeastOnce))
                .expect("subscribe");
            std::thread::sleep(Duration::from_millis(300));
        }
        Load { rt, client, acks }
    }

    /// PUBACKs (publisher) or PUBLISHes (subscriber) received so far.
    fn count(&self) -> u64 {
        self.acks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes `messages` at `rate` per second (0: as fast as the client goes), the
    /// message of index `i` given by `next(i)`; calls `sent(i, instant)` after each.
    fn stream(
        &self,
        messages: u64,
        rate: u32,
        mut next: impl FnMut(u64) -> (String, String),
        mut sent: impl FnMut(u64),
    ) -> f64 {
        let c = self.client.clone();
        self.rt.block_on(async {
            let begin = Instant::now();
            for i in 0..messages {
                if rate > 0 {
                    let due = begin + Duration::from_secs_f64(i as f64 / f64::from(rate));
                    let now = Instant::now();
                    if due > now + Duration::from_millis(1) {
                        tokio::time::sleep(due - now).await;
                    }
                }
                let (topic, body) = next(i);
                c.publish(topic, QoS::AtLeastOnce, false, body)
                    .await
                    .expect("publish");
                sent(i);
            }
            messages as f64 / begin.elapsed().as_secs_f64()
        })
    }
}

/// A subscriber that counts what it receives: `mosquitto_sub` (C, QoS 1) when installed,
/// so that the ceiling is the broker's and not a Rust client's; else a rumqttc client.
enum Subscriber {
    C(std::process::Child),
    Rust(Load),
}

impl Subscriber {
    /// Subscribes to `beffroi/ceiling/#` and receives `n` messages.
    fn start(port: u16, n: u64) -> Subscriber {
        let c = std::process::Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
            .args([
                "-i",
                "bench-sub",
                "-t",
                "beffroi/ceiling/#",
                "-C",
                &n.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let s = match c {
            Ok(child) => Subscriber::C(child),
            Err(_) => Subscriber::Rust(Load::connect(port, "bench-sub", Some("beffroi/ceiling/#"))),
        };
        // The subscription is in place before anything is published.
        std::thread::sleep(Duration::from_millis(500));
        s
    }

    /// Waits until the `n` messages are in (or `within` passed).
    fn wait(self, n: u64, within: Duration) -> bool {
        match self {
            Subscriber::C(mut child) => {
                let until = Instant::now() + within;
                while Instant::now() < until {
                    if let Ok(Some(_)) = child.try_wait() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                let _ = child.kill();
                false
            }
            Subscriber::Rust(load) => wait_for(|| load.count() >= n, within),
        }
    }
}

/// A QoS 1 subscriber to `beffroi/probe/#` that notes when each probe `beffroi/probe/<i>`
/// arrives: the broker's own publish → subscriber latency, beside the node's.
struct Probe {
    _rt: tokio::runtime::Runtime,
    got: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Probe {
    fn start(port: u16) -> Probe {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut o = MqttOptions::new("bench-probe", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true);
        let (client, mut ev) = rt.block_on(async { AsyncClient::new(o, 100) });
        let got: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let got = Arc::clone(&got);
            rt.spawn(async move {
                let mut tx = Some(tx);
                loop {
                    match ev.poll().await {
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(t) = tx.take() {
                                let _ = t.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let at = Instant::now();
                            if let Some(i) = p
                                .topic
                                .rsplit('/')
                                .next()
                                .and_then(|i| i.parse::<u64>().ok())
                            {
                                got.lock().unwrap_or_else(|p| p.into_inner()).insert(i, at);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            });
        }
        rt.block_on(client.subscribe("beffroi/probe/#", QoS::AtLeastOnce))
            .expect("subscribe");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("SUBACK from the broker");
        Probe { _rt: rt, got }
    }

    /// (p50, p99, max) in ms of the probes `sent`, once all arrived (or 30 s passed).
    fn latencies(&self, sent: &HashMap<u64, Instant>) -> (f64, f64, f64) {
        wait_for(
            || self.got.lock().unwrap_or_else(|p| p.into_inner()).len() >= sent.len(),
            Duration::from_secs(30),
        );
        let got = self.got.lock().unwrap_or_else(|p| p.into_inner());
        let mut lat: Vec<f64> = sent
            .iter()
            .filter_map(|(i, t0)| Some(got.get(i)?.duration_since(*t0).as_secs_f64() * 1000.0))
            .collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(f64::NAN)
        };
        (pct(0.5), pct(0.99), lat.last().copied().unwrap_or(f64::NAN))
    }
}

/// What a broker does alone.
struct Alone {
    /// Messages per second from one publisher to one subscriber, as fast as they go.
    ceiling: f64,
    /// Broker CPU seconds per message at `rate`.
    cpu_per_msg: f64,
    /// Broker CPU (share of a core) with no traffic.
    idle: f64,
    /// Publish → subscriber latency of probes at `rate`, (p50, p99, max) ms.
    latency: (f64, f64, f64),
}

impl Alone {
    fn latency_text(&self) -> String {
        format!(
            "publish → subscriber p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency.0, self.latency.1, self.latency.2
        )
    }
}

/// What the broker does alone: a burst from one publisher to one subscriber (messages per
/// second until the subscriber has them all), then its CPU per message at `rate`, with a
/// probe every `rate / 5` messages timed from its publish to a second subscriber, as the
/// node's alarms are to its live stream.
fn broker_alone(port: u16, broker: &Cpu, a: &Args) -> Alone {
    // What it spends doing nothing (heartbeats, replication of empty streams), for 3 s.
    let c0 = broker.now();
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let idle = (broker.now() - c0) / w0.elapsed().as_secs_f64();
    let publisher = Load::connect(port, "bench-pub", None);
    let body = gauge(now_ms());
    let topic = |i: u64| format!("beffroi/ceiling/d{}/senml", i % 1000);
    let sub = Subscriber::start(port, a.burst as u64);
    let t0 = Instant::now();
    publisher.stream(a.burst as u64, 0, |i| (topic(i), body.clone()), |_| {});
    sub.wait(a.burst as u64, Duration::from_secs(120));
    let ceiling = a.burst as f64 / t0.elapsed().as_secs_f64();
    let n = u64::from(a.rate) * a.secs;
    let probe = Probe::start(port);
    let every = u64::from(a.rate / 5).max(1);
    let sub = Subscriber::start(port, n - n / every);
    let sent: std::cell::RefCell<HashMap<u64, Instant>> = std::cell::RefCell::default();
    let c0 = broker.now();
    publisher.stream(
        n,
        a.rate,
        |i| {
            if i % every == every / 2 {
                (format!("beffroi/probe/{i}"), body.clone())
            } else {
                (topic(i), body.clone())
            }
        },
        |i| {
            if i % every == every / 2 {
                sent.borrow_mut().insert(i, Instant::now());
            }
        },
    );
    sub.wait(n - n / every, Duration::from_secs(60));
    let cpu_per_msg = (broker.now() - c0) / n as f64;
    let latency = probe.latencies(&sent.borrow());
    Alone {
        ceiling,
        cpu_per_msg,
        idle,
        latency,
    }
}

fn wait_for(mut done: impl FnMut() -> bool, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sum of a counter over all its label sets in a Prometheus text.
fn counter_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Steady {
    achieved: f64,
    node_cpu: f64,
    broker_cpu: f64,
    db_cpu: f64,
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
    rss_mb: f64,
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The steady run: gauges at `rate` with, every 200 ms, a fire alarm of a new site, timed
/// from its publish to its incident on the node's live stream.
#[allow(clippy::too_many_arguments)]
fn steady(
    node: &Beffroi,
    target: &Target,
    gauges: &[&Device],
    panels: &[&Device],
    broker: &Cpu,
    db: &Cpu,
    a: &Args,
) -> Steady {
    let api = Api::login(&node.base());
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    {
        let stream = api.stream(Duration::from_secs(3600)).expect("live stream");
        let mut reader = BufReader::new(stream.into_body().into_reader());
        let (sent, latencies) = (Arc::clone(&sent), Arc::clone(&latencies));
        std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let at = Instant::now();
                if let Some(data) = line.trim_end().strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str::<Value>(data)
                    && v["created"] == true
                    && let Some(site) = v["site"].as_str()
                    && let Some(t0) = sent.lock().unwrap_or_else(|p| p.into_inner()).get(site)
                {
                    latencies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(at.duration_since(*t0).as_secs_f64() * 1000.0);
                }
                line.clear();
            }
        });
    }
    let load = Load::connect(target.port, "bench-devices", None);
    println!("  steady run: node pid {}", node.pid());
    let n = u64::from(a.rate) * a.secs;
    let every = u64::from(a.rate / 5).max(1);
    let mut last: HashMap<usize, i64> = HashMap::new();
    let mut alarm = 0usize;
    let (n0, b0, d0) = (cpu_secs(node.pid()), broker.now(), db.now());
    let w0 = Instant::now();
    let pending_alarm: std::cell::RefCell<Option<String>> = std::cell::RefCell::default();
    let achieved = load.stream(
        n,
        a.rate,
        |i| {
            if i % every == every / 2 && alarm < panels.len() {
                let p = panels[alarm];
                alarm += 1;
                *pending_alarm.borrow_mut() = Some(p.site.clone());
                return ((target.topic)(p), fire(now_ms()));
            }
            let g = (i as usize * 7919) % gauges.len();
            let t = now_ms().max(last.get(&g).map_or(0, |l| l + 1));
            last.insert(g, t);
            ((target.topic)(gauges[g]), gauge(t))
        },
        |_| {
            if let Some(site) = pending_alarm.borrow_mut().take() {
                sent.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(site, Instant::now());
            }
        },
    );
    let wall = w0.elapsed().as_secs_f64();
    let (n1, b1, d1) = (cpu_secs(node.pid()), broker.now(), db.now());
    let expected = alarm;
    wait_for(
        || latencies.lock().unwrap_or_else(|p| p.into_inner()).len() >= expected,
        Duration::from_secs(30),
    );
    let mut lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    // The publisher's alarms are sent at the timestamps above (the sent map is filled
    // right after each publish returns, a few microseconds after the packet is queued).
    Steady {
        achieved,
        node_cpu: (n1 - n0) / wall,
        broker_cpu: (b1 - b0) / wall,
        db_cpu: (d1 - d0) / wall,
        p50: pct(0.5),
        p99: pct(0.99),
        max: lat.last().copied().unwrap_or(f64::NAN),
        samples: lat.len(),
        rss_mb: rss_mb(node.pid()),
    }
}

/// The most the node stores: `burst` gauge readings as fast as the publisher goes, timed
/// until `stored` (read from the node's metrics) has moved by as many.
fn burst(
    node_api: &Api,
    target: &Target,
    gauges: &[&Device],
    stored: &dyn Fn(&str) -> f64,
    context: &dyn Fn() -> String,
    a: &Args,
) -> f64 {
    let load = Load::connect(target.port, "bench-burst", None);
    let before = stored(&node_api.metrics());
    let mut last: HashMap<usize, i64> = HashMap::new();
    let t0 = Instant::now();
    load.stream(
        a.burst as u64,
        0,
        |i| {
            let g = (i as usize * 7919) % gauges.len();
            let t = now_ms().max(last.get(&g).map_or(0, |l| l + 1));
            last.insert(g, t);
            ((target.topic)(gauges[g]), gauge(t))
        },
        |_| {},
    );
    let done = wait_for(
        || stored(&node_api.metrics()) >= before + a.burst as f64,
        Duration::from_secs(300),
    );
    if !done {
        println!(
            "  (burst: only {} of {} stored after 300 s)",
            stored(&node_api.metrics()) - before,
            a.burst
        );
        println!("{}", context());
    }
    a.burst as f64 / t0.elapsed().as_secs_f64()
}

fn print_steady(what: &str, s: &Steady, broker: &str, db: Option<&str>, a: &Args) {
    let per_msg_us = |share: f64| share * 1e6 / s.achieved;
    println!(
        "{what}: {:.0} msg/s for {} s; node {:.1} % of a core = {:.1} µs CPU per message, peak RSS {:.0} MiB; {broker} {:.1} % ({:.1} µs/msg){}",
        s.achieved,
        a.secs,
        100.0 * s.node_cpu,
        per_msg_us(s.node_cpu),
        s.rss_mb,
        100.0 * s.broker_cpu,
        per_msg_us(s.broker_cpu),
        db.map(|d| format!(
            "; {d} {:.1} % ({:.1} µs/msg)",
            100.0 * s.db_cpu,
            per_msg_us(s.db_cpu)
        ))
        .unwrap_or_default()
    );
    println!(
        "  publish → incident on the live stream: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} alarms)",
        s.p50, s.p99, s.max, s.samples
    );
}

fn main() {
    let a = args();
    let (Some(mosquitto), Some(postgres), Some(nats)) = (
        Mosquitto::start(),
        Postgres::start(),
        NatsCluster::start_with_mqtt(3),
    ) else {
        println!("skipped: Mosquitto, PostgreSQL and nats-server are needed");
        return;
    };
    let work = tempfile::tempdir().expect("work folder");
    let deployment = deployment(work.path());
    let devices = demo::devices();
    let communes = demo::site_communes();
    let gauges = demo::of_kind(&devices, "water_level");
    let mut panels: Vec<&Device> = Vec::new();
    for p in demo::of_kind(&devices, "fire_panel") {
        if panels.iter().all(|q| q.site != p.site) {
            panels.push(p);
        }
    }
    println!(
        "machine: {} cores; {} gauges, alarms on {} sites; rate {} msg/s for {} s; bursts of {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        gauges.len(),
        panels.len(),
        a.rate,
        a.secs,
        a.burst
    );

    if a.only.as_deref() != Some("cluster") {
        single_node(&mosquitto, &deployment, &gauges, &panels, &a);
    }
    if a.only.as_deref() != Some("single") {
        cluster(
            &postgres,
            &nats,
            work.path(),
            &deployment,
            &communes,
            &gauges,
            &panels,
            &a,
        );
    }
}

fn single_node(
    mosquitto: &Mosquitto,
    deployment: &Path,
    gauges: &[&Device],
    panels: &[&Device],
    a: &Args,
) {
    // 1. Mosquitto alone.
    let mosq_cpu = Cpu::of(vec![mosquitto.pid()]);
    let m = broker_alone(mosquitto.port(), &mosq_cpu, a);
    let m_ceiling = m.ceiling;
    println!(
        "Mosquitto alone: {m_ceiling:.0} msg/s publisher → subscriber (QoS 1); {:.1} µs of broker CPU per message at {} msg/s, {}; idle {:.1} % of a core",
        m.cpu_per_msg * 1e6,
        a.rate,
        m.latency_text(),
        100.0 * m.idle
    );

    // 2. A single node on SQLite and Mosquitto.
    let single = Beffroi::start_node_on(
        deployment.to_path_buf(),
        &format!(
            "{}[mqtt]\nurl = \"{}\"\nclient_id = \"bench-node\"\nprotocol = 5\n",
            window(a),
            mosquitto.url()
        ),
    );
    let mosq_target = Target {
        port: mosquitto.port(),
        topic: Arc::new(|d: &Device| format!("beffroi/{}/{}/senml", demo::TERRITORY, d.id)),
    };
    wait_for(
        || single.log().contains("mqtt connected"),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(500));
    let none = Cpu::of(Vec::new());
    let s1 = steady(&single, &mosq_target, gauges, panels, &mosq_cpu, &none, a);
    print_steady("Single node (SQLite, Mosquitto)", &s1, "Mosquitto", None, a);
    let single_api = Api::login(&single.base());
    let acked = |m: &str| counter_sum(m, "beffroi_mqtt_acks_total");
    let b1 = burst(
        &single_api,
        &mosq_target,
        gauges,
        &acked,
        &|| support::tail(&single.log(), 20),
        a,
    );
    println!(
        "  most stored and acknowledged: {b1:.0} msg/s = {:.0} % of Mosquitto alone",
        100.0 * b1 / m_ceiling
    );
    drop(single);
}

#[allow(clippy::too_many_arguments)]
fn cluster(
    postgres: &Postgres,
    nats: &NatsCluster,
    work: &Path,
    deployment: &Path,
    communes: &HashMap<String, String>,
    gauges: &[&Device],
    panels: &[&Device],
    a: &Args,
) {
    // 3. NATS alone (three servers, the MQTT listener of the first).
    let nats_cpu = Cpu::of((0..3).filter_map(|i| nats.pid(i)).collect());
    let nats_port = nats.mqtt_port(0).expect("NATS MQTT listener");
    let alone = broker_alone(nats_port, &nats_cpu, a);
    let n_ceiling = alone.ceiling;
    println!(
        "NATS alone (3 servers, MQTT listener, QoS 1): {n_ceiling:.0} msg/s publisher → subscriber; {:.1} µs of NATS CPU (3 servers) per message at {} msg/s, {}; idle {:.1} % of a core",
        alone.cpu_per_msg * 1e6,
        a.rate,
        alone.latency_text(),
        100.0 * alone.idle
    );

    // 4. Cluster nodes on PostgreSQL and NATS.
    let url = postgres.create_database("bench");
    let keys = work.join("vault");
    let config = |node: &str| {
        format!(
            "{}[privacy]\nkeys_dir = {:?}\n\n[cluster]\ndatabase = \"{url}\"\nnats = \"{}\"\nnode = \"{node}\"\npartitions = 4\nlease_ttl = \"15s\"\nnats_servers = 3\n",
            window(a),
            keys.display().to_string(),
            nats.urls()
        )
    };
    let pg_pid = postgres.pid();
    let pg_cpu = Cpu(Box::new(move || family(pg_pid)));
    let nats_target = {
        let communes = communes.clone();
        Target {
            port: nats_port,
            topic: Arc::new(move |d: &Device| {
                beffroi_nats::mqtt_forward::device_topic(
                    demo::TERRITORY,
                    &communes[&d.site],
                    &d.id,
                    "senml",
                )
            }),
        }
    };
    let n1 = Beffroi::start_node_on(deployment.to_path_buf(), &config("n1"));
    let api = wait_active(&n1);
    let s2 = steady(&n1, &nats_target, gauges, panels, &nats_cpu, &pg_cpu, a);
    print_steady(
        "Cluster node (PostgreSQL, NATS)",
        &s2,
        "NATS (3 servers)",
        Some("PostgreSQL"),
        a,
    );
    // The partition consumers acknowledge a batch at a time (one ack for all up to the
    // last message); what the pipeline took from them is counted per message.
    let committed = |m: &str| counter_sum(m, "beffroi_ingest_messages_total");
    let context = || {
        let m = api.metrics();
        let cluster: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("beffroi_cluster") || l.starts_with("beffroi_nats"))
            .collect();
        format!("{}\n{}", support::tail(&n1.log(), 30), cluster.join("\n"))
    };
    let mut per_nodes = vec![burst(&api, &nats_target, gauges, &committed, &context, a)];
    let n2 = Beffroi::start_node_on(deployment.to_path_buf(), &config("n2"));
    per_nodes.push(burst(&api, &nats_target, gauges, &committed, &context, a));
    let n3 = Beffroi::start_node_on(deployment.to_path_buf(), &config("n3"));
    per_nodes.push(burst(&api, &nats_target, gauges, &committed, &context, a));
    for (i, b) in per_nodes.iter().enumerate() {
        println!(
            "  most stored with {} node{} running: {b:.0} msg/s = {:.0} % of NATS alone",
            i + 1,
            if i == 0 { "" } else { "s" },
            100.0 * b / n_ceiling
        );
    }
    let idle: Vec<String> = [&n2, &n3]
        .iter()
        .map(|n| format!("{:.0} MiB", rss_mb(n.pid())))
        .collect();
    println!("  standby nodes' peak RSS: {}", idle.join(", "));
    relay_cost(&api, &n1, &n2);
}

/// The console through a standby (relayed to the active node) beside the same requests
/// made to the active node: latency of a listing, and the standby's CPU per request.
fn relay_cost(api: &Api, active: &Beffroi, standby: &Beffroi) {
    const REQUESTS: usize = 300;
    let time = |base: &str| {
        let on = Api {
            base: base.to_string(),
            ..api.clone()
        };
        let mut lat: Vec<f64> = (0..REQUESTS)
            .map(|_| {
                let t = Instant::now();
                let (status, _) = on.get("/api/v1/incidents?limit=50");
                assert_eq!(status, 200, "GET through {base}");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)];
        (pct(0.5), pct(0.99))
    };
    let direct = time(&active.base());
    let c0 = cpu_secs(standby.pid());
    let relayed = time(&standby.base());
    let standby_cpu = cpu_secs(standby.pid()) - c0;
    println!(
        "  console listing (50 incidents), {REQUESTS} requests: direct p50 {:.2} ms, p99 {:.2} ms; \
         through a standby p50 {:.2} ms, p99 {:.2} ms; the standby's CPU {:.0} µs per request",
        direct.0,
        direct.1,
        relayed.0,
        relayed.1,
        standby_cpu * 1e6 / REQUESTS as f64
    );
}

/// The `commit_window` line of a node's configuration, if `--commit-window` was given.
fn window(a: &Args) -> String {
    a.window
        .as_ref()
        .map(|w| format!("commit_window = \"{w}\"\n"))
        .unwrap_or_default()
}

/// Waits until `node` holds the lease and serves, and logs in.
fn wait_active(node: &Beffroi) -> Api {
    let ok = wait_for(
        || {
            matches!(
                support::http::get_text(
                    &support::http::agent(),
                    &format!("{}/healthz", node.base())
                ),
                Some((200, _))
            )
        },
        Duration::from_secs(60),
    );
    assert!(ok, "the node did not become active\n{}", node.log());
    Api::login(&node.base())
}
