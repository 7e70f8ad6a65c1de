//! The broker half of `beffroi bench`: (b) end-to-end throughput through Mosquitto at
//! QoS 1 beside Mosquitto's own publisher→subscriber ceiling, (c) publish → incident on
//! the SSE stream latency at a steady rate, (d) CPU and peak memory of the engine at that
//! rate. The broker is the one given with `--mqtt`, or a private Mosquitto started on a
//! free loopback port with a generated configuration.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use beffroi_api::{AppState, Auth};
use beffroi_core::Territory;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, EngineConfig, SystemClock};
use beffroi_mqtt::{MqttConfig, MqttSource, MqttVersion};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// A Mosquitto started for the benchmark; killed on drop.
pub struct Broker {
    child: Option<Child>,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn start_broker() -> Result<Broker> {
    let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| anyhow!("mosquitto not found: install it or pass --mqtt URL"))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("mosquitto.conf");
    let user = if unsafe_is_root() { "user root\n" } else { "" };
    std::fs::write(
        &conf,
        format!(
            "{user}listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {}/\n\
             max_queued_messages 0\n\
             max_inflight_messages 1000\n\
             set_tcp_nodelay true\n\
             log_dest none\n",
            dir.path().display()
        ),
    )?;
    let child = Command::new(exe)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto")?;
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not start listening on {port}");
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    Ok(Broker {
        child: Some(child),
        url: format!("mqtt://127.0.0.1:{port}"),
        _dir: dir,
    })
}

fn unsafe_is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
}

fn host_port(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| anyhow!("--mqtt must be mqtt://HOST:PORT"))?;
    let (h, p) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    Ok((h.to_string(), p.parse()?))
}

fn client(url: &str, id: &str, clean: bool) -> Result<(AsyncClient, rumqttc::EventLoop)> {
    let (h, p) = host_port(url)?;
    let mut o = MqttOptions::new(id, h, p);
    o.set_keep_alive(StdDuration::from_secs(30));
    o.set_inflight(1000);
    o.set_clean_session(clean);
    o.set_max_packet_size(128 * 1024, 128 * 1024);
    Ok(AsyncClient::new(o, 20_000))
}

fn senml(device: usize, t: f64, v: f64) -> Vec<u8> {
    format!("[{{\"bn\":\"d{device}/\",\"bt\":{t:.3},\"n\":\"level_m\",\"v\":{v}}}]").into_bytes()
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Publishes `n` messages at QoS 1 as fast as the broker takes them; returns when all are
/// PUBACKed.
async fn publish_burst(
    url: &str,
    n: usize,
    devices: usize,
    topic_of: impl Fn(usize) -> String,
) -> Result<()> {
    let (c, mut ev) = client(url, &format!("bench-pub-{}", std::process::id()), true)?;
    let pump = tokio::spawn(async move {
        let mut acked = 0usize;
        while acked < n {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(anyhow!("publisher: {e}")),
            }
        }
        Ok(())
    });
    let t0 = now_s();
    for i in 0..n {
        c.publish(
            topic_of(i),
            QoS::AtLeastOnce,
            false,
            senml(i % devices, t0 + i as f64 * 1e-3, 1.0),
        )
        .await?;
    }
    pump.await??;
    let _ = c.disconnect().await;
    Ok(())
}

/// (b1) Mosquitto's own ceiling: one QoS 1 publisher, one QoS 1 subscriber, no Beffroi.
async fn ceiling(url: &str, n: usize) -> Result<f64> {
    let (s, mut sev) = client(url, "bench-ceiling-sub", true)?;
    s.subscribe("bench/ceiling/#", QoS::AtLeastOnce).await?;
    // Wait for the SUBACK before publishing.
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sev.poll().await? {
            break;
        }
    }
    let recv = tokio::spawn(async move {
        let mut got = 0usize;
        while got < n {
            if let Event::Incoming(Packet::Publish(_)) = sev.poll().await? {
                got += 1;
            }
        }
        Ok::<_, anyhow::Error>(Instant::now())
    });
    let t0 = Instant::now();
    publish_burst(url, n, 1000, |i| format!("bench/ceiling/d{}", i % 1000)).await?;
    let done = recv.await??;
    Ok(n as f64 / done.duration_since(t0).as_secs_f64())
}

struct Running {
    engine: runner::Engine,
    stats: beffroi_mqtt::MqttStats,
    shutdown: CancellationToken,
    http: std::net::SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

async fn start_engine(
    t: &Arc<Territory>,
    rules: Arc<beffroi_rules::RuleSet>,
    url: &str,
    client_id: &str,
) -> Result<Running> {
    let dir = tempfile::tempdir()?;
    let (mut store, reader) = beffroi_store::open(&dir.path().join("bench.db"), Arc::clone(t))?;
    let metrics = Arc::new(Metrics::new());
    store.set_wal_metrics(metrics.wal.clone());
    let engine = runner::start(
        Arc::clone(t),
        rules,
        Vec::new(),
        Box::new(store),
        Arc::new(SystemClock),
        metrics,
        EngineConfig::default(),
    )
    .await?;
    let source = MqttSource::new(MqttConfig {
        url: url.to_string(),
        client_id: client_id.to_string(),
        protocol: MqttVersion::V5,
        ..MqttConfig::default()
    })?;
    let stats = source.stats();
    let shutdown = CancellationToken::new();
    let mut health = source.health();
    {
        let engine = engine.handle.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { engine.run_source(Box::new(source), stop).await });
    }
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while *health.borrow() != beffroi_mqtt::MqttHealth::Ready {
        if Instant::now() > deadline {
            bail!("MQTT source not ready");
        }
        let _ = tokio::time::timeout(StdDuration::from_millis(200), health.changed()).await;
    }
    let mut auth = Auth::new(
        beffroi_api::auth::AuthPolicy::default(),
        Arc::new(beffroi_engine::runner::SystemClock),
    );
    auth.add_user(
        "bench",
        "bench",
        vec![beffroi_access::Grant {
            role: beffroi_access::Role::Administrator,
            scope: beffroi_access::Scope::Territory,
        }],
    )?;
    let token = auth
        .login("bench", "bench", None, "bench")
        .map_err(|e| anyhow!("login: {}", e.as_str()))?
        .session;
    let state = AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth));
    state.ready.store(true, Ordering::Release);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = listener.local_addr()?;
    let app = beffroi_api::router(state);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(Running {
        engine,
        stats,
        shutdown,
        http,
        token,
        _dir: dir,
    })
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.engine.shutdown().await;
    }
}

/// (b2) Through Beffroi: time until every message is stored and acknowledged.
async fn end_to_end(
    t: &Arc<Territory>,
    rules: Arc<beffroi_rules::RuleSet>,
    url: &str,
    n: usize,
) -> Result<f64> {
    let r = start_engine(t, rules, url, "bench-e2e").await?;
    let devices = t.devices.len();
    let before = r.stats.acks.load(Ordering::Relaxed) as usize;
    let t0 = Instant::now();
    publish_burst(url, n, devices, |i| {
        format!("beffroi/bench/d{}/senml", i % devices)
    })
    .await?;
    let deadline = Instant::now() + StdDuration::from_secs(300);
    while (r.stats.acks.load(Ordering::Relaxed) as usize) < before + n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} acknowledged",
                r.stats.acks.load(Ordering::Relaxed) as usize - before
            );
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    r.stop().await;
    Ok(rate)
}

pub struct SteadyResult {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: usize,
    pub cpu_share: f64,
    pub peak_rss_mb: f64,
    pub achieved_rate: f64,
}

fn rusage() -> (f64, f64) {
    // SAFETY-free: getrusage through libc is a plain syscall wrapper.
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    #[allow(unsafe_code)]
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) } == 0;
    if !ok {
        return (0.0, 0.0);
    }
    #[allow(unsafe_code)]
    let u = unsafe { u.assume_init() };
    let cpu = u.ru_utime.tv_sec as f64
        + u.ru_utime.tv_usec as f64 / 1e6
        + u.ru_stime.tv_sec as f64
        + u.ru_stime.tv_usec as f64 / 1e6;
    (cpu, u.ru_maxrss as f64 / 1024.0)
}

/// CPU seconds of one thread of this process, from /proc.
fn thread_cpu(tid: i64) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return 0.0;
    };
    let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}

/// (c) and (d): a steady `rate` msg/s for `secs`; one message in `alarm_every` raises an
/// incident at a new site, timed from publish to its `incident` event on the SSE stream.
/// The publisher and the SSE reader run on their own thread, whose CPU is subtracted.
pub fn steady(
    t: &Arc<Territory>,
    rules: Arc<beffroi_rules::RuleSet>,
    url: &str,
    rate: u32,
    secs: u64,
    sites: usize,
) -> Result<SteadyResult> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(start_engine(t, rules, url, "bench-steady"))?;
    let (http, token) = (r.http, r.token.clone());
    let url = url.to_string();
    let devices = t.devices.len();
    let n_sites = sites;
    let (cpu0, _) = rusage();
    let started = Instant::now();
    let load = std::thread::spawn(move || -> Result<(Vec<f64>, f64, f64)> {
        #[allow(unsafe_code)]
        let tid = unsafe { libc::gettid() } as i64;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let res = rt.block_on(async move {
            // SSE reader.
            let mut sock = tokio::net::TcpStream::connect(http).await?;
            let request = format!(
                "GET /api/v1/stream HTTP/1.1\r\nHost: {http}\r\n\
                 Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            );
            sock.write_all(request.as_bytes()).await?;
            let mut lines = BufReader::new(sock).lines();
            let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
            let sent2 = Arc::clone(&sent);
            let per_alarm = (u64::from(rate) / 10).max(1);
            let total_alarms = (u64::from(rate) * secs / per_alarm).min(n_sites as u64) as usize;
            let reader = tokio::spawn(async move {
                let mut lat = Vec::new();
                let deadline = Instant::now() + StdDuration::from_secs(secs + 20);
                while lat.len() < total_alarms && Instant::now() < deadline {
                    let next = tokio::time::timeout(StdDuration::from_secs(1), lines.next_line());
                    let Ok(Ok(Some(line))) = next.await else {
                        continue;
                    };
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                        continue;
                    };
                    if v["created"] == true
                        && let Some(site) = v["site"].as_str()
                        && let Some(t0) = sent2.lock().unwrap_or_else(|p| p.into_inner()).get(site)
                    {
                        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                lat
            });
            let (c, mut ev) = client(&url, "bench-steady-pub", true)?;
            let pump = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
            tokio::time::sleep(StdDuration::from_millis(300)).await;
            let period = 1.0 / f64::from(rate);
            let total = u64::from(rate) * secs;
            let every = (u64::from(rate) / 10).max(1); // 10 alarms per second
            let begin = Instant::now();
            let mut alarm_site = 0usize;
            for i in 0..total {
                let due = begin + StdDuration::from_secs_f64(i as f64 * period);
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
                let d = (i as usize * 7919) % devices;
                if i % every == 0 && alarm_site < n_sites {
                    // The first device of site s is device s (devices are laid out round robin).
                    let s = alarm_site;
                    alarm_site += 1;
                    sent.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(format!("s{s}"), Instant::now());
                    let topic = format!("beffroi/bench/d{s}/senml");
                    c.publish(topic, QoS::AtLeastOnce, false, senml(s, now_s(), 14.5))
                        .await?;
                } else {
                    let topic = format!("beffroi/bench/d{d}/senml");
                    c.publish(topic, QoS::AtLeastOnce, false, senml(d, now_s(), 1.0))
                        .await?;
                }
            }
            let elapsed = begin.elapsed().as_secs_f64();
            let lat = reader.await?;
            pump.abort();
            Ok::<_, anyhow::Error>((lat, total as f64 / elapsed))
        })?;
        Ok((res.0, res.1, thread_cpu(tid)))
    });
    let (mut lat, achieved, load_cpu) =
        load.join().map_err(|_| anyhow!("load thread panicked"))??;
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, rss) = rusage();
    rt.block_on(r.stop());
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(SteadyResult {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        samples: lat.len(),
        cpu_share: (cpu1 - cpu0 - load_cpu).max(0.0) / wall,
        peak_rss_mb: rss,
        achieved_rate: achieved,
    })
}

pub fn throughput(
    t: &Arc<Territory>,
    rules: Arc<beffroi_rules::RuleSet>,
    url: &str,
    n: usize,
) -> Result<(f64, f64)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let c = ceiling(url, n).await?;
        let e = end_to_end(t, rules, url, n).await?;
        Ok((c, e))
    })
}
