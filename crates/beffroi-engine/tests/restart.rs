//! What a restart must preserve: incidents keep their identity, a condition raised before
//! the restart still clears (auto-resolve) and escalates afterwards, and absence counts from
//! when the device was last heard, not from the restart.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{Incident, IncidentId, Severity, Status, Timestamp};
use beffroi_engine::Source;
use beffroi_engine::live::DeviceState;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline};
use beffroi_territory::SourceFile;
use beffroi_wire::Format;

const T0: i64 = 1_795_694_400_000;

const RULES: &str = r#"
[[rule]]
id = "high"
title = "High water at {site}"
category = "flood"
severity = "major"
key = "site"
auto_resolve = true
kind = "level"
[rule.threshold]
field = "level_m"
above = 2.0
[[rule.escalate]]
after = "30m"
severity = "critical"

[[rule]]
id = "silent"
title = "Silent {device}"
category = "device"
severity = "major"
auto_resolve = true
kind = "level"
devices = ["g2"]
[rule.absence]
after = "20m"
"#;

fn pipeline(start: i64) -> Pipeline {
    let t = Arc::new(fixture::small());
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", RULES), &t).expect("rules");
    Pipeline::new(
        t,
        Arc::new(rules),
        Vec::new(),
        Arc::new(Metrics::new()),
        Timestamp(start),
    )
}

fn level(p: &mut Pipeline, dev: &str, v: f64, at_min: i64, out: &mut Output) {
    let body = format!(
        r#"{{"device":"{dev}","time":{},"values":{{"level_m":{v}}}}}"#,
        T0 + at_min * 60_000
    );
    let r = p.ingest(
        Source::Http,
        Format::Json,
        None,
        body.as_bytes(),
        Timestamp(T0 + at_min * 60_000),
        out,
    );
    assert_eq!(r.accepted, 1, "{r:?}");
}

#[test]
fn conditions_raised_before_a_restart_still_clear_and_escalate() {
    let mut a = pipeline(T0);
    let mut out = Output::default();
    level(&mut a, "g1", 3.0, 0, &mut out);
    level(&mut a, "g2", 1.0, 0, &mut out);
    let opened: Vec<Incident> = out
        .batch
        .incidents
        .iter()
        .map(|c| c.incident.clone())
        .collect();
    assert_eq!(opened.len(), 1);
    let id = opened[0].id;

    // Restart 10 minutes later: the store gives back the active incident and last-seen times.
    let mut b = pipeline(T0 + 10 * 60_000);
    let last_seen = vec![
        (b.territory().device_id("g1").expect("g1"), Timestamp(T0)),
        (b.territory().device_id("g2").expect("g2"), Timestamp(T0)),
    ];
    b.restore(opened, IncidentId(id.0), &last_seen)
        .expect("restore");

    // Escalation continues from when the condition was raised (30 min), not from the restart.
    let mut out = Output::default();
    b.tick(Timestamp(T0 + 30 * 60_000), &mut out);
    let changes: Vec<_> = out.batch.incidents.iter().map(|c| &c.incident).collect();
    assert!(
        changes
            .iter()
            .any(|i| i.id == id && i.severity == Severity::Critical),
        "escalated after the restart: {changes:?}"
    );
    // g2 was last heard at T0: silent at 20 min after T0 although the restart was at 10.
    assert!(
        changes.iter().any(|i| &*i.rule == "silent"),
        "absence counts from the last message: {changes:?}"
    );
    let g2 = b.territory().device_id("g2").expect("g2");
    let g1 = b.territory().device_id("g1").expect("g1");
    assert_eq!(b.device_state(g2), DeviceState::Silent);
    assert_eq!(b.device_state(g1), DeviceState::Alarm);
    assert!(
        out.devices
            .iter()
            .any(|c| c.device == g2 && c.state == DeviceState::Silent),
        "the map is told: {:?}",
        out.devices
    );

    // The level goes back to normal: the restored incident auto-resolves, no new incident.
    let mut out = Output::default();
    level(&mut b, "g1", 1.0, 31, &mut out);
    let c = out
        .batch
        .incidents
        .iter()
        .find(|c| &*c.incident.rule == "high")
        .expect("a change of the flood incident");
    assert_eq!(c.incident.id, id);
    assert!(!c.created);
    assert_eq!(c.incident.status, Status::Resolved);
}
