//! `beffroi simulate`: plays scenarios or a steady load into an MQTT broker or the HTTP
//! endpoint of a running Beffroi.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use beffroi_core::{Duration, Timestamp};
use beffroi_sim::{LoadGenerator, Message, Player};
use beffroi_wire::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Where to send: mqtt://HOST:PORT or http://HOST:PORT (a running Beffroi).
    #[arg(long)]
    to: String,
    /// Scenario to play (repeatable); the background scenario is always added. Default: all.
    #[arg(long)]
    scenario: Vec<String>,
    /// Instead of scenarios, a steady load of this many messages per second.
    #[arg(long)]
    load: Option<u32>,
    /// How long to play, e.g. 30s, 10m: in load mode, wall-clock time (default 10s); in
    /// scenario mode, scenario time (default: to the end of the longest scenario), which
    /// passes at the server's pace (at 60×, 10m of scenario take 10 s).
    #[arg(long)]
    duration: Option<String>,
    /// Scenario seconds per wall-clock second. Default: the pace of the server's clock
    /// (1 for `serve`, the demo's speed for `demo`), read from its /api/v1/clock, so that
    /// readings are stamped on its time; a pace other than the server's is refused, as
    /// its readings would run ahead of the server's clock (`bad_time`) or behind it.
    #[arg(long)]
    speed: Option<f64>,
    /// The Beffroi server whose clock the readings follow when sending to a broker
    /// (`--to mqtt://…`), e.g. http://127.0.0.1:8080. With `--to http://…`, that server.
    #[arg(long)]
    server: Option<String>,
    /// Deployment folder; default: the embedded demo.
    #[arg(long)]
    deployment: Option<PathBuf>,
    /// Payload format of the load: senml, json or chirpstack.
    #[arg(long, default_value = "senml")]
    format: String,
    /// HTTP user (password from BEFFROI_ADMIN_PASSWORD).
    #[arg(long, default_value = "admin")]
    user: String,
}

enum Sink {
    #[cfg(feature = "mqtt")]
    Mqtt(rumqttc::AsyncClient, tokio::task::JoinHandle<()>),
    Http {
        base: String,
        token: String,
        agent: ureq::Agent,
    },
}

impl Sink {
    async fn connect(to: &str, user: &str) -> Result<Sink> {
        if let Some(rest) = to.strip_prefix("mqtt://") {
            #[cfg(feature = "mqtt")]
            {
                let (host, port) = rest
                    .rsplit_once(':')
                    .map(|(h, p)| (h.to_string(), p.parse::<u16>().unwrap_or(1883)))
                    .unwrap_or((rest.to_string(), 1883));
                let id = format!("beffroi-sim-{}", std::process::id());
                let mut opts = rumqttc::MqttOptions::new(id, host, port);
                opts.set_keep_alive(StdDuration::from_secs(30));
                opts.set_inflight(1000);
                let (client, mut ev) = rumqttc::AsyncClient::new(opts, 10_000);
                let pump = tokio::spawn(async move {
                    loop {
                        if let Err(e) = ev.poll().await {
                            tracing::warn!(error = %e, "MQTT publisher connection");
                            tokio::time::sleep(StdDuration::from_millis(500)).await;
                        }
                    }
                });
                return Ok(Sink::Mqtt(client, pump));
            }
            #[cfg(not(feature = "mqtt"))]
            bail!("built without the `mqtt` feature ({rest})");
        }
        if to.starts_with("http://") {
            let base = to.trim_end_matches('/').to_string();
            let password = std::env::var("BEFFROI_ADMIN_PASSWORD")
                .map_err(|_| anyhow!("set BEFFROI_ADMIN_PASSWORD to log in to {base}"))?;
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let (a, b, u) = (agent.clone(), base.clone(), user.to_string());
            let token = tokio::task::spawn_blocking(move || -> Result<String> {
                let mut resp = a
                    .post(format!("{b}/api/v1/auth/login"))
                    .send_json(serde_json::json!({"username": u, "password": password}))?;
                if resp.status() != 200 {
                    bail!("login refused: {}", resp.status());
                }
                let v: serde_json::Value = resp.body_mut().read_json()?;
                v["token"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("no token in the login answer"))
            })
            .await??;
            return Ok(Sink::Http { base, token, agent });
        }
        bail!("--to must start with mqtt:// or http://")
    }

    async fn send(&self, m: Message) -> Result<()> {
        match self {
            #[cfg(feature = "mqtt")]
            Sink::Mqtt(client, _) => client
                .publish(m.topic, rumqttc::QoS::AtLeastOnce, false, m.payload)
                .await
                .context("MQTT publish"),
            Sink::Http { base, token, agent } => {
                let url = format!("{base}/api/v1/observations?format={}", m.format.as_str());
                let (agent, token) = (agent.clone(), token.clone());
                tokio::task::spawn_blocking(move || -> Result<()> {
                    let resp = agent
                        .post(&url)
                        .header("Authorization", &format!("Bearer {token}"))
                        .header("Content-Type", "application/json")
                        .send(&m.payload[..])?;
                    if resp.status().is_server_error() {
                        bail!("HTTP {}", resp.status());
                    }
                    Ok(())
                })
                .await?
            }
        }
    }
}

/// A server's clock as `/api/v1/clock` gives it.
#[derive(serde::Deserialize)]
struct ServerClock {
    now_ms: i64,
    rate: f64,
}

/// Reads the clock of the Beffroi server at `base`, and the wall time it was read at.
async fn server_clock(base: &str) -> Result<(ServerClock, Instant)> {
    let url = format!("{}/api/v1/clock", base.trim_end_matches('/'));
    let read = tokio::task::spawn_blocking(move || -> Result<ServerClock> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(StdDuration::from_secs(10)))
            .build()
            .into();
        let mut resp = agent
            .get(&url)
            .call()
            .with_context(|| format!("reading the server's clock at {url}"))?;
        resp.body_mut()
            .read_json()
            .with_context(|| format!("{url} is not a Beffroi clock"))
    });
    let clock = read.await??;
    Ok((clock, Instant::now()))
}

/// The pace and origin of the readings' times: the server's clock when it can be read,
/// the wall clock at 60× (the demo's default) otherwise.
async fn timeline(args: &Args) -> Result<(f64, Timestamp, Instant)> {
    let server = args
        .server
        .clone()
        .or_else(|| args.to.starts_with("http://").then(|| args.to.clone()));
    let Some(server) = server else {
        // A steady load is stamped at the wall clock's pace; scenarios at the demo's.
        let default = if args.load.is_some() { 1.0 } else { 60.0 };
        let speed = args.speed.unwrap_or(default);
        if speed != 1.0 {
            eprintln!(
                "note: the server's clock is unknown (give --server http://HOST:PORT to follow \
                 it): playing at {speed}× from the wall clock, as `beffroi demo` runs; a server \
                 on the wall clock refuses readings ahead of its time (bad_time)"
            );
        }
        return Ok((speed, crate::wall_now(), Instant::now()));
    };
    let (clock, at) = server_clock(&server).await?;
    let speed = match args.speed {
        None => clock.rate,
        Some(s) if (s - clock.rate).abs() <= clock.rate * 0.01 => s,
        Some(s) => bail!(
            "the server at {server} runs its clock at {}× the wall clock: readings played at \
             {s}× would run {} its time and be refused (bad_time) or raise clock-skew incidents; \
             leave --speed out to follow the server, or run `beffroi demo --speed {s}`",
            clock.rate,
            if s > clock.rate { "ahead of" } else { "behind" }
        ),
    };
    Ok((speed, Timestamp(clock.now_ms), at))
}

pub async fn run(args: Args) -> Result<()> {
    let dep = match &args.deployment {
        Some(d) => crate::setup::load_dir(d).map_err(|e| anyhow!("{}:\n{e}", d.display()))?,
        None => crate::setup::load_demo()?,
    };
    let (speed, origin, origin_at) = timeline(&args).await?;
    // The readings' time: the server's clock, followed at its pace.
    let now = || {
        origin.plus(Duration(
            (origin_at.elapsed().as_secs_f64() * speed * 1000.0) as i64,
        ))
    };
    let sink = Sink::connect(&args.to, &args.user).await?;
    let limit = args
        .duration
        .as_deref()
        .map(beffroi_territory::parse_duration)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let mut sent = 0u64;
    if let Some(rate) = args.load {
        let format = Format::parse(&args.format).ok_or_else(|| anyhow!("unknown format"))?;
        // Event times from now on, at the pace they are sent: readings of a past the
        // server would keep no longer (its retention) are refused as `expired`.
        let load_start = now();
        let mut generator =
            LoadGenerator::new(Arc::clone(&dep.territory), format, 42).with_start(load_start);
        let total = limit.unwrap_or(Duration::from_secs(10));
        let period = 1.0 / f64::from(rate.max(1));
        while started.elapsed().as_secs_f64() < total.as_secs_f64() {
            let due = (started.elapsed().as_secs_f64() / period) as u64;
            while sent < due {
                let offset = Duration((sent as f64 * period * speed * 1000.0) as i64);
                sink.send(generator.next_message(offset)).await?;
                sent += 1;
            }
            tokio::time::sleep(StdDuration::from_millis(1)).await;
        }
    } else {
        let wanted: Vec<_> = dep
            .scenarios
            .iter()
            .filter(|s| {
                s.name == "background"
                    || args.scenario.is_empty()
                    || args.scenario.iter().any(|n| n == &s.name)
            })
            .cloned()
            .collect();
        for n in &args.scenario {
            if !dep.scenarios.iter().any(|s| &s.name == n) {
                bail!("no scenario `{n}`");
            }
        }
        let start = now();
        let mut player = Player::new(Arc::clone(&dep.territory), wanted, start, &dep.territory.id);
        let end = limit.unwrap_or(player.duration());
        let mut batch = Vec::new();
        loop {
            let sim = now().since(start);
            batch.clear();
            player.drain_until(sim.min(end), &mut batch);
            for m in batch.drain(..) {
                sink.send(m).await?;
                sent += 1;
            }
            if player.is_finished() || sim >= end {
                break;
            }
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
    }
    #[cfg(feature = "mqtt")]
    if let Sink::Mqtt(client, pump) = sink {
        // Let in-flight QoS 1 publishes complete before disconnecting.
        let _ = client.disconnect().await;
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        pump.abort();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {sent} messages in {secs:.1} s ({:.0}/s)",
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}
