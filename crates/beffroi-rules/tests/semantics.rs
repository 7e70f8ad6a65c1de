//! Rule semantics on a simulated timeline: one test per rule type, plus property tests.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{
    Alarm, AlarmKind, Duration, FieldIdx, Observation, Territory, Timestamp, Value,
};
use beffroi_rules::{Evaluator, parse};
use beffroi_territory::SourceFile;
use proptest::prelude::*;

const T0: i64 = 1_795_694_400_000;

fn eval(rules: &str) -> (Evaluator, Arc<Territory>) {
    let t = Arc::new(fixture::small());
    let set = parse(&SourceFile::new("rules.toml", rules), &t).expect("valid rules");
    (
        Evaluator::new(Arc::new(set), Arc::clone(&t), Timestamp(T0)),
        t,
    )
}

fn obs(t: &Territory, dev: &str, field: u16, v: Value, at_s: i64) -> Observation {
    Observation {
        device: t.device_id(dev).expect("device"),
        field: FieldIdx(field),
        value: v,
        time: Timestamp(T0 + at_s * 1000),
        trust: beffroi_core::Trust::Unauthenticated,
    }
}

fn kinds(a: &[Alarm]) -> Vec<(AlarmKind, String, i64)> {
    a.iter()
        .map(|a| {
            (
                a.kind.clone(),
                a.key.as_str().to_string(),
                (a.at.0 - T0) / 1000,
            )
        })
        .collect()
}

const SUSTAINED: &str = r#"
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
for = "10m"
[[rule.escalate]]
after = "30m"
severity = "critical"
"#;

#[test]
fn sustained_threshold_raises_after_its_duration_then_escalates_and_clears() {
    let (mut e, t) = eval(SUSTAINED);
    let mut out = Vec::new();
    e.on_observation(&obs(&t, "g1", 0, Value::Number(2.5), 0), &mut out);
    e.on_tick(Timestamp(T0 + 599_000), &mut out);
    assert!(out.is_empty(), "not yet sustained: {out:?}");
    e.on_tick(Timestamp(T0 + 600_000), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Raise, "high@site:s2".into(), 600)]
    );
    out.clear();
    // A second gauge of the same site joins the same key: no new alarm.
    e.on_observation(&obs(&t, "g2", 0, Value::Number(3.0), 700), &mut out);
    e.on_tick(Timestamp(T0 + 1_300_000), &mut out);
    assert!(out.is_empty(), "{out:?}");
    e.on_tick(Timestamp(T0 + 2_400_000), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, AlarmKind::Escalate);
    assert_eq!(out[0].severity, beffroi_core::Severity::Critical);
    out.clear();
    // g1 clears but g2 still holds: the key stays raised.
    e.on_observation(&obs(&t, "g1", 0, Value::Number(1.0), 2500), &mut out);
    assert!(out.is_empty(), "{out:?}");
    e.on_observation(&obs(&t, "g2", 0, Value::Number(1.0), 2510), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Clear, "high@site:s2".into(), 2510)]
    );
}

/// Quarantine: forgetting a device clears what it alone held, with the reason as evidence,
/// keeps what another device still holds, and its old state does not come back.
#[test]
fn forgetting_a_device_clears_only_the_conditions_it_alone_held() {
    let (mut e, t) = eval(SUSTAINED);
    let mut out = Vec::new();
    let g1 = t.device_id("g1").expect("g1");
    let g2 = t.device_id("g2").expect("g2");
    e.on_observation(&obs(&t, "g1", 0, Value::Number(2.5), 0), &mut out);
    e.on_observation(&obs(&t, "g2", 0, Value::Number(2.6), 0), &mut out);
    e.on_tick(Timestamp(T0 + 600_000), &mut out);
    assert_eq!(out.len(), 1);
    out.clear();
    // g2 still holds the site's condition: forgetting g1 clears nothing.
    let why = |d: &str| {
        beffroi_core::Message::new("rule.quarantined")
            .device("device", d)
            .with("actor", beffroi_core::Param::User("user:ana".into()))
            .with("reason", beffroi_core::Param::Text("test".into()))
    };
    e.forget_device(g1, Timestamp(T0 + 700_000), &why("g1"), &mut out);
    assert!(out.is_empty(), "{out:?}");
    // Forgetting g2 too: the condition clears with the reason.
    e.forget_device(g2, Timestamp(T0 + 800_000), &why("g2"), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Clear, "high@site:s2".into(), 800)]
    );
    assert_eq!(out[0].evidence, "g2 quarantined by user:ana: test");
    assert_eq!(
        out[0].evidence_message.as_ref().map(|m| m.code),
        Some("rule.quarantined")
    );
    out.clear();
    // Its sustain window was forgotten too: a tick raises nothing.
    e.on_tick(Timestamp(T0 + 2_000_000), &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(e.active_keys(), 0);
}

#[test]
fn a_dip_restarts_the_sustain_window() {
    let (mut e, t) = eval(SUSTAINED);
    let mut out = Vec::new();
    e.on_observation(&obs(&t, "g1", 0, Value::Number(2.5), 0), &mut out);
    e.on_observation(&obs(&t, "g1", 0, Value::Number(1.5), 300), &mut out);
    e.on_observation(&obs(&t, "g1", 0, Value::Number(2.5), 400), &mut out);
    e.on_tick(Timestamp(T0 + 900_000), &mut out);
    assert!(out.is_empty());
    e.on_tick(Timestamp(T0 + 1_000_000), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Raise, "high@site:s2".into(), 1000)]
    );
}

#[test]
fn absence_raises_per_device_and_clears_when_it_reports() {
    let (mut e, t) = eval(
        r#"
[[rule]]
id = "silent"
title = "Silent {device}"
category = "device"
severity = "major"
auto_resolve = true
kind = "level"
[rule.absence]
after = "30m"
"#,
    );
    let mut out = Vec::new();
    e.on_observation(&obs(&t, "g1", 0, Value::Number(1.0), 1200), &mut out);
    e.on_tick(Timestamp(T0 + 1_800_000), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Raise, "silent@device:g2".into(), 1800)]
    );
    out.clear();
    e.on_tick(Timestamp(T0 + 3_000_000), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Raise, "silent@device:g1".into(), 3000)]
    );
    out.clear();
    e.on_observation(&obs(&t, "g1", 0, Value::Number(1.0), 3100), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Clear, "silent@device:g1".into(), 3100)]
    );
}

#[test]
fn rate_counts_within_its_window() {
    let (mut e, t) = eval(
        r#"
[[rule]]
id = "burst"
title = "Burst"
category = "access"
severity = "minor"
auto_resolve = true
kind = "alarm"
[rule.rate]
field = "on"
equals = true
count = 3
window = "5m"
"#,
    );
    let mut out = Vec::new();
    for s in [0, 200, 400] {
        e.on_observation(&obs(&t, "a1", 0, Value::Bool(true), s), &mut out);
    }
    assert!(out.is_empty(), "spread over more than 5 min");
    e.on_observation(&obs(&t, "a1", 0, Value::Bool(true), 450), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Raise, "burst@device:a1".into(), 450)]
    );
    out.clear();
    e.on_tick(Timestamp(T0 + 800_000), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(AlarmKind::Clear, "burst@device:a1".into(), 800)]
    );
}

#[test]
fn correlation_within_a_radius() {
    let rules = r#"
[[rule]]
id = "both"
title = "Both"
category = "flood"
severity = "critical"
key = "site"
[rule.correlation]
window = "5m"
radius_m = RADIUS
[[rule.correlation.when]]
kind = "level"
field = "level_m"
above = 1
[[rule.correlation.when]]
kind = "alarm"
field = "on"
equals = true
"#;
    // s1 and s2 are about 300 m apart.
    for (radius, fires) in [("500", true), ("100", false)] {
        let (mut e, t) = eval(&rules.replace("RADIUS", radius));
        let mut out = Vec::new();
        e.on_observation(&obs(&t, "a1", 0, Value::Bool(true), 0), &mut out);
        e.on_observation(&obs(&t, "g1", 0, Value::Number(2.0), 120), &mut out);
        assert_eq!(!out.is_empty(), fires, "radius {radius}: {out:?}");
        // Outside the window nothing correlates.
        let (mut e, t) = eval(&rules.replace("RADIUS", radius));
        let mut out = Vec::new();
        e.on_observation(&obs(&t, "a1", 0, Value::Bool(true), 0), &mut out);
        e.on_observation(&obs(&t, "g1", 0, Value::Number(2.0), 400), &mut out);
        assert!(out.is_empty());
    }
}

proptest! {
    /// Without `for`, a threshold raises exactly at each false→true transition of the
    /// series and clears at each true→false one; raises and clears alternate.
    #[test]
    fn threshold_alarms_follow_the_transitions(values in proptest::collection::vec(0.0f64..4.0, 1..200)) {
        let (mut e, t) = eval(&SUSTAINED.replace("for = \"10m\"\n", "").replace("[[rule.escalate]]\nafter = \"30m\"\nseverity = \"critical\"\n", ""));
        let mut out = Vec::new();
        let mut expected = Vec::new();
        let mut above = false;
        for (i, v) in values.iter().enumerate() {
            e.on_observation(&obs(&t, "g1", 0, Value::Number(*v), i as i64), &mut out);
            let now = *v > 2.0;
            if now != above {
                expected.push(if now { AlarmKind::Raise } else { AlarmKind::Clear });
                above = now;
            }
        }
        let got: Vec<_> = out.iter().map(|a| a.kind.clone()).collect();
        prop_assert_eq!(got, expected);
    }

    /// Sustained rules never raise before the condition has held for the duration.
    #[test]
    fn sustained_never_early(steps in proptest::collection::vec((0.0f64..4.0, 1i64..400), 1..100)) {
        let (mut e, t) = eval(SUSTAINED);
        let mut out = Vec::new();
        let mut at = 0i64;
        let mut since: Option<i64> = None;
        for (v, dt) in steps {
            at += dt;
            e.on_tick(Timestamp(T0 + at * 1000), &mut out);
            for a in out.drain(..) {
                if a.kind == AlarmKind::Raise {
                    let s = since.expect("raised while the condition did not hold");
                    prop_assert!(a.at.0 - (T0 + s * 1000) >= Duration::from_mins(10).0);
                }
            }
            e.on_observation(&obs(&t, "g1", 0, Value::Number(v), at), &mut out);
            if v > 2.0 { since.get_or_insert(at); } else { since = None; }
            for a in out.drain(..) {
                if a.kind == AlarmKind::Raise {
                    let s = since.expect("raised while the condition did not hold");
                    prop_assert!(at - s >= 600);
                }
            }
        }
    }
}

/// Each raise carries what the rule compared, as structure: the reading, the operator and
/// threshold, the window; an absence its silence; escalations and clears carry none.
#[test]
fn raises_carry_their_trigger_and_nothing_else_does() {
    use beffroi_core::{TriggerKind, TriggerOp};
    let (mut e, t) = eval(SUSTAINED);
    let mut out = Vec::new();
    e.on_observation(&obs(&t, "g1", 0, Value::Number(2.5), 0), &mut out);
    e.on_observation(&obs(&t, "g1", 0, Value::Number(2.7), 600), &mut out);
    let raise = out
        .iter()
        .find(|a| a.kind == AlarmKind::Raise)
        .expect("raised");
    let tr = raise.trigger.as_ref().expect("a raise carries its trigger");
    assert_eq!(tr.kind, TriggerKind::Threshold);
    assert_eq!(tr.device, t.device_id("g1"));
    assert_eq!(tr.field.as_deref(), Some("level_m"));
    assert_eq!(
        tr.value,
        Some(2.7),
        "the reading that completed the sustained time"
    );
    assert_eq!((tr.op, tr.threshold), (Some(TriggerOp::Above), Some(2.0)));
    assert_eq!(tr.window, Some(Duration::from_mins(10)));
    assert_eq!(tr.at, Timestamp(T0 + 600_000));
    out.clear();
    e.on_tick(Timestamp(T0 + 600_000 + 1_800_000), &mut out);
    let esc = out
        .iter()
        .find(|a| a.kind == AlarmKind::Escalate)
        .expect("escalated");
    assert!(
        esc.trigger.is_none(),
        "an escalation does not replace the trigger"
    );
    out.clear();
    e.on_observation(&obs(&t, "g1", 0, Value::Number(1.0), 2_500), &mut out);
    assert!(
        out.iter()
            .all(|a| a.kind == AlarmKind::Clear && a.trigger.is_none()),
        "{out:?}"
    );
}
