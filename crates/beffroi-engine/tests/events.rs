//! Event mode through the real pipeline on a simulated clock: the crowd-surge scenario
//! (with the background) at the Zénith while events are declared around it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use beffroi_core::{Duration, EventStatus, Incident, Severity, Status, Territory, Timestamp};
use beffroi_engine::Source;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_engine::store::StoredState;
use beffroi_sim::{Player, Scenario};
use beffroi_territory::SourceFile;

const START: Timestamp = Timestamp(1_795_694_400_000);

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo")
}

struct Fixture {
    territory: Arc<Territory>,
    rules: Arc<beffroi_rules::RuleSet>,
    scenarios: Vec<Arc<Scenario>>,
}

fn fixture() -> Fixture {
    let dir = demo();
    let territory = beffroi_territory::load_dir(&dir.join("territory")).expect("demo territory");
    let rules = beffroi_rules::parse(
        &beffroi_territory::SourceFile::read(&dir.join("rules.toml")).expect("read rules"),
        &territory,
    )
    .expect("rules");
    let scenarios = beffroi_sim::load_dir(&dir.join("scenarios"), &territory).expect("scenarios");
    let keep = ["background", "crowd-surge"];
    Fixture {
        territory: Arc::new(territory),
        rules: Arc::new(rules),
        scenarios: scenarios
            .into_iter()
            .filter(|s| keep.contains(&s.name.as_str()))
            .map(Arc::new)
            .collect(),
    }
}

/// The Zénith's footprint, a little enlarged.
const ZENITH: &str = "[[5.0550, 47.3450], [5.0620, 47.3450], [5.0620, 47.3495], [5.0550, 47.3495]]";

fn events_toml(window: (&str, &str), rules: &str) -> String {
    format!(
        r#"
[[event]]
id = "concert"
name = "Concert au Zénith"
perimeter = {ZENITH}
starts_at = "{}"
ends_at = "{}"
capacity = {{ warning = 30000, critical = 40000 }}
rules = """
{rules}"""
"#,
        window.0, window.1
    )
}

/// A temporary rule: any counter of the perimeter above 2,000 people.
const BUSY: &str = r#"[[rule]]
id = "busy"
title = "Entrée chargée — {site}"
category = "crowd"
severity = "minor"
key = "site"
auto_resolve = true
kind = "people_counter"
[rule.threshold]
field = "occupancy"
above = 2000.0
"#;

/// Plays background + crowd-surge for `end`, ticking every 15 s; returns every incident
/// change in order and the event views published.
fn play(
    f: &Fixture,
    events: &str,
    end: Duration,
) -> (
    Vec<Incident>,
    Vec<beffroi_engine::events::EventView>,
    Pipeline,
) {
    let compiled =
        beffroi_engine::events::parse(&SourceFile::new("events.toml", events), &f.territory, START)
            .expect("valid events");
    let mut player = Player::new(
        Arc::clone(&f.territory),
        f.scenarios.clone(),
        START,
        &f.territory.id,
    );
    let mut p = Pipeline::new(
        PipelineConfig {
            // The demo's badges and plates are pseudonymised, as in production.
            pseudonymiser: beffroi_privacy::Pseudonymiser::new(vec![
                beffroi_privacy::EpochKey::new(1, &[42; 32]),
            ])
            .map(Arc::new),
            events: compiled,
            ..PipelineConfig::new(
                Arc::clone(&f.territory),
                Arc::clone(&f.rules),
                Vec::new(),
                Arc::new(Metrics::new()),
            )
        },
        START,
    );
    let step = Duration::from_secs(15);
    let mut offset = Duration::ZERO;
    let mut msgs = Vec::new();
    let mut changes = Vec::new();
    let mut views = Vec::new();
    while offset <= end {
        msgs.clear();
        player.drain_until(offset, &mut msgs);
        let mut out = Output::default();
        for m in msgs.drain(..) {
            let hint = m
                .topic
                .strip_prefix("beffroi/")
                .and_then(|t| t.split('/').nth(1));
            let r = p.ingest(
                Source::SIMULATOR,
                m.format,
                hint,
                &m.payload,
                START.plus(m.offset),
                &mut out,
            );
            assert!(r.rejected.is_empty(), "{:?}", r.rejected);
        }
        p.tick(START.plus(offset), &mut out);
        changes.extend(out.batch.incidents.into_iter().map(|c| c.incident));
        views.extend(out.events);
        offset = Duration(offset.0 + step.0);
    }
    (changes, views, p)
}

fn of_rule<'a>(changes: &'a [Incident], rule: &str) -> Vec<&'a Incident> {
    changes.iter().filter(|i| &*i.rule == rule).collect()
}

#[test]
fn capacity_raises_when_the_aggregate_crosses_then_escalates() {
    let f = fixture();
    let (changes, views, p) = play(
        &f,
        &events_toml(("+0s", "+2h"), ""),
        Duration::from_mins(70),
    );
    let cap = of_rule(&changes, "concert/capacity");
    let first = cap.first().expect("the capacity incident opens");
    // 8 counters rising linearly from 1,000 to 3,950 over 27 min: the sum reaches 30,000
    // near 25 min, never before 22 min (noise is ±40 per counter).
    let opened = first.opened_at.since(START);
    assert!(
        (Duration::from_mins(22)..=Duration::from_mins(28)).contains(&opened),
        "opened after {} s",
        opened.millis() / 1000
    );
    assert_eq!(first.severity, Severity::Major);
    assert_eq!(&*f.territory.site(first.site).id, "dijon-zenith");
    let last = cap.last().expect("changes");
    assert_eq!(
        last.severity,
        Severity::Critical,
        "sum above 40,000 after ~43 min"
    );
    assert!(
        cap.iter().all(|i| i.id == first.id),
        "one incident per event (dedup key)"
    );
    // Aggregate counts only: the occupancy follows the sum of the latest counts.
    let v = p.events().views(START.plus(Duration::from_mins(70)));
    let occ = v[0].occupancy.expect("counters report");
    assert!((47_000.0..=49_000.0).contains(&occ), "{occ}");
    assert_eq!(v[0].counters, 8);
    assert!(views.iter().any(|v| v.status == EventStatus::Active));
}

#[test]
fn temporary_rules_fire_only_inside_the_window() {
    let f = fixture();
    let (changes, views, _) = play(
        &f,
        &events_toml(("+20m", "+40m"), BUSY),
        Duration::from_mins(50),
    );
    let busy = of_rule(&changes, "concert/busy");
    let first = busy
        .first()
        .expect("the temporary rule fires during the event");
    // The counters are above 2,000 from about 8 min, but the rule is in force from 20 min.
    assert_eq!(first.opened_at, START.plus(Duration::from_mins(20)));
    let last = busy.last().expect("changes");
    assert_eq!(
        last.status,
        Status::Resolved,
        "the window closes: the condition clears"
    );
    assert_eq!(last.resolved_at, Some(START.plus(Duration::from_mins(40))));
    assert!(
        busy.iter()
            .all(|i| i.opened_at >= START.plus(Duration::from_mins(20)))
    );
    // The capacity incident of a window that ends before the crowd reaches its critical
    // level is resolved at the end of the window as well.
    let cap = of_rule(&changes, "concert/capacity");
    assert_eq!(
        cap.last().map(|i| i.status),
        Some(Status::Resolved),
        "the capacity condition ends with the event"
    );
    // The base rules keep working throughout (crowd-high raises as in the scenario).
    assert!(!of_rule(&changes, "crowd-high").is_empty());
    let statuses: Vec<_> = views
        .iter()
        .filter(|v| v.status != EventStatus::Scheduled)
        .map(|v| v.status)
        .collect();
    assert!(statuses.contains(&EventStatus::Active) && statuses.contains(&EventStatus::Ended));
}

#[test]
fn a_cancelled_event_stops_its_rules_at_once() {
    let f = fixture();
    let (_, _, mut p) = play(
        &f,
        &events_toml(("+0s", "+2h"), BUSY),
        Duration::from_mins(30),
    );
    let now = START.plus(Duration::from_mins(30));
    let mut out = Output::default();
    let v = p
        .cancel_event("concert", "admin", now, &mut out)
        .expect("cancel");
    assert_eq!(v.status, EventStatus::Cancelled);
    let resolved: Vec<_> = out
        .batch
        .incidents
        .iter()
        .filter(|c| c.incident.rule.starts_with("concert/"))
        .map(|c| c.incident.status)
        .collect();
    assert!(!resolved.is_empty() && resolved.iter().all(|s| *s == Status::Resolved));
    assert_eq!(out.batch.events.len(), 1, "the cancellation is stored");
    assert!(p.rules().by_id("concert/busy").is_none());
    assert!(p.rules().by_id("crowd-high").is_some());
    assert!(
        p.cancel_event("concert", "admin", now, &mut Output::default())
            .is_err()
    );
}

#[test]
fn a_capacity_condition_raised_before_a_restart_still_clears_after_it() {
    let f = fixture();
    let events = events_toml(("+0s", "+2h"), "");
    let (_, _, before) = play(&f, &events, Duration::from_mins(70));
    let open: Vec<Incident> = before.book().active().cloned().collect();
    let cap = open
        .iter()
        .find(|i| &*i.rule == "concert/capacity")
        .expect("capacity incident open")
        .clone();
    assert_eq!(cap.severity, Severity::Critical);
    let max = open.iter().map(|i| i.id).max().expect("incidents");

    // A new process: events are loaded before the incidents are restored.
    let now = START.plus(Duration::from_mins(71));
    let compiled = beffroi_engine::events::parse(
        &SourceFile::new("events.toml", events.as_str()),
        &f.territory,
        START,
    )
    .expect("valid");
    let mut p = Pipeline::new(
        PipelineConfig {
            events: compiled,
            ..PipelineConfig::new(
                Arc::clone(&f.territory),
                Arc::clone(&f.rules),
                Vec::new(),
                Arc::new(Metrics::new()),
            )
        },
        now,
    );
    p.restore(
        StoredState {
            incidents: open,
            max_incident: max,
            ..StoredState::default()
        },
        now,
    )
    .expect("restore");
    // The crowd leaves: every counter reports 100 people.
    let mut out = Output::default();
    for (i, c) in ZENITH_COUNTERS.iter().enumerate() {
        let payload = format!(
            r#"{{"values": {{"occupancy": 100.0}}, "time": {}}}"#,
            now.0 + i as i64
        );
        let r = p.ingest(
            Source::SIMULATOR,
            beffroi_wire::Format::Json,
            Some(c),
            payload.as_bytes(),
            now,
            &mut out,
        );
        assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    }
    let after: Vec<_> = out
        .batch
        .incidents
        .iter()
        .filter(|c| c.incident.id == cap.id)
        .map(|c| c.incident.status)
        .collect();
    assert_eq!(
        after,
        vec![Status::Resolved],
        "the restored condition clears once the sum of the latest counts is low again"
    );
}

const ZENITH_COUNTERS: [&str; 8] = [
    "dijon-zenith-counter-01",
    "dijon-zenith-counter-02",
    "dijon-zenith-counter-03",
    "dijon-zenith-counter-04",
    "dijon-zenith-counter-05",
    "dijon-zenith-counter-06",
    "dijon-zenith-counter-07",
    "dijon-zenith-counter-08",
];
