//! `beffroi bench`: in-process measurements of the pipeline (decode → validate → rules →
//! incidents), on a synthetic territory of any size. Figures go to BENCHMARKS.md.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow};
use beffroi_core::{
    Commune, DataCategory, Device, DeviceKind, FieldSpec, FieldType, Point, Site, SiteKind,
    Territory, Timestamp,
};
use beffroi_engine::Source;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_territory::SourceFile;
use beffroi_wire::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Devices of the synthetic territory.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Rules for the main throughput run.
    #[arg(long, default_value_t = 1_000)]
    rules: usize,
    /// Messages per run (one SenML record each).
    #[arg(long, default_value_t = 2_000_000)]
    messages: usize,
    /// Broker for (b)–(d), e.g. mqtt://127.0.0.1:1883; default: a private Mosquitto on a
    /// free loopback port.
    #[arg(long)]
    mqtt: Option<String>,
    /// Only the in-process measurements (a) and (e).
    #[arg(long)]
    no_broker: bool,
    /// Only the broker measurements (b)–(d), so that the peak memory of (d) is not
    /// inflated by the 100,000-device run of (a).
    #[arg(long)]
    broker_only: bool,
    /// Messages of the burst in (b).
    #[arg(long, default_value_t = 100_000)]
    burst: usize,
    /// Steady rate for (c) and (d), messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u32,
    /// Duration of the steady run, seconds.
    #[arg(long, default_value_t = 20)]
    steady_secs: u64,
}

const SITES: usize = 1_000;

fn territory(devices: usize) -> Result<Territory> {
    let mut t = Territory::new("bench", "Bench territory");
    let mut communes = Vec::new();
    for c in 0..20 {
        communes.push(
            t.add_commune(Commune {
                id: format!("c{c}").into(),
                name: format!("Commune {c}").into(),
                insee: None,
                position: Point::new(5.0 + c as f64 * 0.01, 47.3),
                boundary: Vec::new(),
            })
            .map_err(|e| anyhow!(e))?,
        );
    }
    let kind = t
        .add_kind(DeviceKind {
            id: "water_level".into(),
            label: "Gauge".into(),
            label_en: None,
            heartbeat: Some(beffroi_core::Duration::from_mins(15)),
            period: None,
            signing: beffroi_core::Signing::None,
            purpose: None,
            public_space: false,
            video_linked: false,
            fields: vec![FieldSpec {
                name: "level_m".into(),
                unit: Some("m".into()),
                ty: FieldType::Number,
                min: Some(-1.0),
                max: Some(15.0),
                category: DataCategory::Technical,
                max_step_per_minute: None,
                identifier: None,
                purpose: None,
                people_count: false,
                semantic: None,
                declared: None,
                text: beffroi_core::TextDomain::Free,
            }],
        })
        .map_err(|e| anyhow!(e))?;
    let mut sites = Vec::new();
    for s in 0..SITES {
        let p = Point::new(
            5.0 + (s % 40) as f64 * 0.002,
            47.3 + (s / 40) as f64 * 0.002,
        );
        sites.push(
            t.add_site(Site {
                id: format!("s{s}").into(),
                name: format!("Site {s}").into(),
                kind: SiteKind::RiverReach,
                commune: communes[s % communes.len()],
                zone: None,
                position: p,
                perimeter: None,
                river: None,
            })
            .map_err(|e| anyhow!(e))?,
        );
    }
    for d in 0..devices {
        let site = sites[d % SITES];
        t.add_device(Device {
            id: format!("d{d}").into(),
            kind,
            site,
            position: t.site(site).position,
            dev_eui: None,
        })
        .map_err(|e| anyhow!(e))?;
    }
    Ok(t)
}

/// `n` threshold rules. Up to `SITES` rules are global; beyond, each is scoped to one site
/// (a per-site threshold, the realistic shape of thousands of rules).
fn rules(n: usize, t: &Territory) -> Result<beffroi_rules::RuleSet> {
    let mut text = String::new();
    for i in 0..n {
        let scope = if n > 100 {
            format!("sites = [\"s{}\"]\n", i % SITES)
        } else {
            String::new()
        };
        let _ = write!(
            text,
            "[[rule]]\nid = \"r{i}\"\ntitle = \"High {{site}}\"\ncategory = \"flood\"\nseverity = \"major\"\nkey = \"site\"\nauto_resolve = true\nkind = \"water_level\"\n{scope}[rule.threshold]\nfield = \"level_m\"\nabove = {}\n\n",
            5.0 + (i % 7) as f64
        );
    }
    beffroi_rules::parse(&SourceFile::new("bench-rules.toml", text), t).map_err(|e| anyhow!("{e}"))
}

fn payloads(devices: usize, count: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = (x as usize) % devices;
            // About 1 in 1000 values crosses a threshold.
            let v = if x.is_multiple_of(1000) {
                9.5
            } else {
                1.0 + (x % 300) as f64 / 100.0
            };
            format!(
                "[{{\"bn\":\"d{d}/\",\"bt\":{:.3},\"n\":\"level_m\",\"v\":{v}}}]",
                1_795_694_400.0 + i as f64 * 0.001
            )
            .into_bytes()
        })
        .collect()
}

struct RunResult {
    per_sec: f64,
    incidents: usize,
}

fn run_once(t: &Arc<Territory>, n_rules: usize, msgs: &[Vec<u8>]) -> Result<RunResult> {
    let set = Arc::new(rules(n_rules, t)?);
    let metrics = Arc::new(Metrics::new());
    let start = Timestamp(1_795_694_400_000);
    let mut p = Pipeline::new(
        PipelineConfig::new(Arc::clone(t), set, Vec::new(), metrics),
        start,
    );
    let mut out = Output::default();
    let mut incidents = 0;
    let began = Instant::now();
    for (i, m) in msgs.iter().enumerate() {
        let received = Timestamp(start.0 + i as i64);
        p.ingest(
            Source::SIMULATOR,
            Format::Senml,
            None,
            m,
            received,
            &mut out,
        );
        if out.batch.observations.len() >= 8192 {
            incidents += out.batch.incidents.iter().filter(|c| c.created).count();
            out = Output::default();
        }
    }
    incidents += out.batch.incidents.iter().filter(|c| c.created).count();
    let secs = began.elapsed().as_secs_f64();
    Ok(RunResult {
        per_sec: msgs.len() as f64 / secs,
        incidents,
    })
}

pub fn run(args: Args) -> Result<()> {
    let t = Arc::new(territory(args.devices)?);
    println!(
        "machine: {} cores; territory: {} devices on {} sites",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        t.devices.len(),
        SITES
    );
    if !args.broker_only {
        in_process(&t, &args)?;
    }
    if args.no_broker {
        return Ok(());
    }
    #[cfg(feature = "mqtt")]
    broker(&args)?;
    #[cfg(not(feature = "mqtt"))]
    println!("(b)–(d) skipped: built without the `mqtt` feature");
    Ok(())
}

fn in_process(t: &Arc<Territory>, args: &Args) -> Result<()> {
    let msgs = payloads(args.devices, args.messages);
    let main = run_once(t, args.rules, &msgs)?;
    println!(
        "(a) pipeline decode→validate→rules→incidents, {} rules, one core: {:.0} observations/s ({} incidents opened)",
        args.rules, main.per_sec, main.incidents
    );
    let few = run_once(t, 10, &msgs)?;
    let many = run_once(t, 10_000, &msgs)?;
    println!(
        "(e) 10 rules: {:.0} obs/s; 10,000 rules: {:.0} obs/s; ratio {:.2}",
        few.per_sec,
        many.per_sec,
        few.per_sec / many.per_sec
    );
    Ok(())
}

#[cfg(feature = "mqtt")]
fn broker(args: &Args) -> Result<()> {
    let broker;
    let url = match &args.mqtt {
        Some(u) => u.clone(),
        None => match crate::bench_mqtt::start_broker() {
            Ok(b) => {
                broker = b;
                broker.url.clone()
            }
            Err(e) => {
                println!("(b)–(d) skipped: {e}");
                return Ok(());
            }
        },
    };
    let small = Arc::new(territory(10_000)?);
    let set = Arc::new(rules(args.rules, &small)?);
    let (ceiling, e2e) = crate::bench_mqtt::throughput(&small, Arc::clone(&set), &url, args.burst)?;
    println!(
        "(b) QoS 1 through {url}: Mosquitto pub→sub ceiling {ceiling:.0} msg/s; Beffroi end to end (stored, then acknowledged) {e2e:.0} msg/s = {:.0} % of the ceiling",
        100.0 * e2e / ceiling
    );
    let s = crate::bench_mqtt::steady(&small, set, &url, args.rate, args.steady_secs, SITES)?;
    println!(
        "(c) publish → incident on the SSE stream at {:.0} msg/s, 10,000 devices: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} incidents)",
        s.achieved_rate, s.p50_ms, s.p99_ms, s.max_ms, s.samples
    );
    println!(
        "(d) engine CPU at that rate: {:.1} % of one core (publisher and SSE client excluded); peak RSS of the process {:.0} MB",
        100.0 * s.cpu_share,
        s.peak_rss_mb
    );
    Ok(())
}
