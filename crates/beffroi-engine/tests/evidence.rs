//! An incident's evidence through the pipeline: its trigger is the reading that opened it,
//! and its peak and current values follow the triggering series in the order the rules
//! saw it — one reading per message, or a whole series in one message.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{Incident, Status, Timestamp};
use beffroi_engine::Source;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_territory::SourceFile;
use beffroi_wire::Format;

const T0: i64 = 1_795_694_400_000;
const MIN: i64 = 60_000;

const RULES: &str = r#"
[[rule]]
id = "high"
title = "High water at {device} ({value} m)"
category = "flood"
severity = "major"
key = "device"
auto_resolve = true
kind = "level"
[rule.threshold]
field = "level_m"
above = 2.0
"#;

fn pipeline() -> Pipeline {
    let t = Arc::new(fixture::small());
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", RULES), &t).expect("rules");
    Pipeline::new(
        PipelineConfig::new(t, Arc::new(rules), Vec::new(), Arc::new(Metrics::new())),
        Timestamp(T0),
    )
}

/// A SenML pack of g1's `level_m` readings, `(minutes after T0, value)`.
fn pack(p: &mut Pipeline, readings: &[(i64, f64)], received: i64) -> Output {
    let records: Vec<String> = readings
        .iter()
        .map(|(m, v)| {
            format!(
                r#"{{"bn":"g1/","n":"level_m","v":{v},"t":{}}}"#,
                (T0 + m * MIN) / 1000
            )
        })
        .collect();
    let body = format!("[{}]", records.join(","));
    let mut out = Output::default();
    let r = p.ingest(
        Source::MQTT,
        Format::Senml,
        None,
        body.as_bytes(),
        Timestamp(received),
        &mut out,
    );
    assert_eq!(r.accepted, readings.len(), "{r:?}");
    out
}

fn last(out: &Output) -> Incident {
    out.batch
        .incidents
        .last()
        .map(|c| c.incident.clone())
        .expect("an incident change")
}

const SERIES: [(i64, f64); 8] = [
    (0, 1.5),
    (5, 2.4), // opens
    (10, 2.9),
    (15, 2.6),
    (20, 1.2), // resolves
    (25, 2.2), // re-opens
    (30, 2.5),
    (35, 2.3),
];

fn check(inc: &Incident) {
    let tr = inc.trigger.as_ref().expect("trigger");
    assert_eq!((tr.value, tr.at), (Some(2.4), Timestamp(T0 + 5 * MIN)));
    assert_eq!(inc.status, Status::New);
    assert_eq!(inc.opened_at, Timestamp(T0 + 5 * MIN));
    assert_eq!(inc.reopened_at, Some(Timestamp(T0 + 25 * MIN)));
    assert_eq!(inc.peak, Some(2.9), "{inc:?}");
    assert_eq!(inc.current, Some(2.3));
    assert_eq!(inc.current_at, Some(Timestamp(T0 + 35 * MIN)));
    assert_eq!(inc.title_now(), "High water at g1 (2.3 m)");
}

#[test]
fn one_reading_per_message() {
    let mut p = pipeline();
    let mut inc = None;
    for (m, v) in SERIES {
        let out = pack(&mut p, &[(m, v)], T0 + m * MIN);
        if !out.batch.incidents.is_empty() {
            inc = Some(last(&out));
        }
    }
    check(&inc.expect("opened"));
}

#[test]
fn a_whole_series_in_one_message_is_followed_in_order() {
    let mut p = pipeline();
    let out = pack(&mut p, &SERIES, T0 + 40 * MIN);
    check(&last(&out));
    // One change per incident and reading at most: a reading's move is folded into the
    // change its own alarm makes.
    assert!(
        out.batch.incidents.len() <= SERIES.len(),
        "{}",
        out.batch.incidents.len()
    );
}
