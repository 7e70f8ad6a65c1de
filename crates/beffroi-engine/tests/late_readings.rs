//! Readings that arrive out of order (ADR 0019): the rules see each series in time order or
//! not at all, so a copy or an older reading is stored but moves no incident; the sentinel
//! still weighs a late reading's timing (a clock set back a day is an anomaly).

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{Status, Timestamp};
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
title = "High water at {device}"
category = "flood"
severity = "major"
key = "device"
auto_resolve = true
kind = "level"
[rule.threshold]
field = "level_m"
above = 2.0
"#;

fn pipeline() -> (Pipeline, Arc<Metrics>) {
    pipeline_with(|_| {})
}

fn pipeline_with(configure: impl FnOnce(&mut PipelineConfig)) -> (Pipeline, Arc<Metrics>) {
    let t = Arc::new(fixture::small());
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", RULES), &t).expect("rules");
    let metrics = Arc::new(Metrics::new());
    let mut cfg = PipelineConfig::new(t, Arc::new(rules), Vec::new(), Arc::clone(&metrics));
    configure(&mut cfg);
    (Pipeline::new(cfg, Timestamp(T0)), metrics)
}

/// One reading of g1 at `at`, received at `received`; the output of that one message.
fn level(p: &mut Pipeline, v: f64, at: i64, received: i64) -> Output {
    let mut out = Output::default();
    let body = format!(r#"{{"device":"g1","time":{at},"values":{{"level_m":{v}}}}}"#);
    let r = p.ingest(
        Source::MQTT,
        Format::Json,
        None,
        body.as_bytes(),
        Timestamp(received),
        &mut out,
    );
    assert_eq!(r.accepted, 1, "{r:?}");
    out
}

#[test]
fn a_late_reading_is_stored_and_neither_resolves_nor_reopens() {
    let (mut p, metrics) = pipeline();
    let opened = level(&mut p, 3.0, T0 + 10 * MIN, T0 + 10 * MIN);
    assert_eq!(
        opened.batch.incidents.len(),
        1,
        "the alarm opens an incident"
    );
    assert_eq!(opened.batch.watermarks.len(), 1);

    // A normal reading from before the alarm arrives late: stored, but the flood incident
    // stays open.
    let late = level(&mut p, 1.0, T0 + 5 * MIN, T0 + 11 * MIN);
    assert_eq!(late.batch.observations.len(), 1, "stored");
    assert!(
        late.batch.incidents.is_empty(),
        "{:?}",
        late.batch.incidents
    );
    assert!(late.batch.watermarks.is_empty(), "the watermark stays");
    assert_eq!(metrics.observations_late.get(), 1);

    // The level falls: resolved.
    let fall = level(&mut p, 1.0, T0 + 12 * MIN, T0 + 12 * MIN);
    assert_eq!(fall.batch.incidents.len(), 1);
    assert_eq!(fall.batch.incidents[0].incident.status, Status::Resolved);

    // An alarm reading from before the fall arrives late, then a copy of the fall: nothing
    // reopens.
    let late_alarm = level(&mut p, 3.5, T0 + 11 * MIN, T0 + 13 * MIN);
    assert!(late_alarm.batch.incidents.is_empty());
    let copy = level(&mut p, 1.0, T0 + 12 * MIN, T0 + 13 * MIN);
    assert!(copy.batch.incidents.is_empty());
    assert_eq!(
        copy.batch.observations.len(),
        1,
        "the store absorbs the copy"
    );
    assert_eq!(metrics.observations_duplicate.get(), 1);
    assert_eq!(metrics.observations_late.get(), 2);

    // A later alarm reopens, as it should.
    let rise = level(&mut p, 3.0, T0 + 14 * MIN, T0 + 14 * MIN);
    assert_eq!(rise.batch.incidents.len(), 1);
    assert_eq!(rise.batch.incidents[0].incident.status, Status::New);
}

#[test]
fn the_sentinel_still_sees_a_clock_set_back_on_a_late_reading() {
    let (mut p, _) = pipeline();
    level(&mut p, 1.0, T0 + 10 * MIN, T0 + 10 * MIN);
    // The device's clock jumps back 25 hours: its readings are older than its watermark,
    // not evaluated by the rules, but their timing is an anomaly.
    let out = level(&mut p, 1.0, T0 + 10 * MIN - 25 * 60 * MIN, T0 + 11 * MIN);
    let cyber: Vec<_> = out
        .batch
        .incidents
        .iter()
        .map(|c| c.incident.rule.to_string())
        .collect();
    assert!(
        cyber.iter().any(|r| r == "cyber-clock_skew"),
        "a clock set back a day raises its cyber incident: {cyber:?}"
    );
}

/// A reading already older than its field's retention is refused as `expired`: storing it
/// would keep it until the next purge, evaluating it could open an incident about a past
/// the territory has agreed to forget. One inside the retention is accepted.
#[test]
fn a_reading_older_than_its_retention_is_refused_as_expired() {
    let (mut p, metrics) = pipeline_with(|c| {
        c.retention = Some((
            Arc::new(beffroi_core::PrivacyPolicy::unconfigured()),
            beffroi_core::Duration::from_mins(60),
        ));
    });
    let mut out = Output::default();
    let body = format!(
        r#"{{"device":"g1","time":{},"values":{{"level_m":3.0}}}}"#,
        T0 - 61 * MIN
    );
    let r = p.ingest(
        Source::MQTT,
        Format::Json,
        None,
        body.as_bytes(),
        Timestamp(T0),
        &mut out,
    );
    assert_eq!(r.accepted, 0, "{r:?}");
    assert_eq!(
        r.rejected.iter().map(|j| j.reason).collect::<Vec<_>>(),
        vec![beffroi_wire::RejectReason::Expired]
    );
    assert!(out.batch.observations.is_empty());
    assert!(
        out.batch.incidents.is_empty(),
        "an expired alarm opens nothing"
    );
    assert!(
        metrics.encode().contains("reason=\"expired\""),
        "counted by reason"
    );
    // Inside the retention: stored and evaluated.
    let ok = level(&mut p, 3.0, T0 - 59 * MIN, T0);
    assert_eq!(ok.batch.observations.len(), 1);
    assert_eq!(ok.batch.incidents.len(), 1);
}
