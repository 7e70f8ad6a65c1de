//! Semantics of the aggregate rule (event capacity) and of rule replacement, on a simulated
//! timeline, with property tests.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{
    Alarm, AlarmKind, DeviceIdx, FieldIdx, Observation, Severity, SiteIdx, Territory, Timestamp,
    Value,
};
use beffroi_rules::{Body, Evaluator, KeyBy, Rule, RuleSet, parse};
use beffroi_territory::SourceFile;
use proptest::prelude::*;

const T0: i64 = 1_795_694_400_000;
const WARNING: f64 = 10.0;
const CRITICAL: f64 = 15.0;
const HYST: f64 = 1.0;

fn aggregate_rule(t: &Territory) -> Rule {
    let g1 = t.device_id("g1").expect("g1");
    let g2 = t.device_id("g2").expect("g2");
    Rule {
        id: "concert/capacity".into(),
        title: "Jauge — {value} personnes".into(),
        category: "crowd".into(),
        severity: Severity::Major,
        key: KeyBy::Site,
        auto_resolve: true,
        body: Body::Aggregate {
            inputs: vec![(g1, FieldIdx(0)), (g2, FieldIdx(0))].into(),
            warning: WARNING,
            critical: CRITICAL,
            hysteresis: HYST,
            site: SiteIdx(1),
        },
        escalate: Vec::new(),
        sites: None,
        devices: None,
        line: 0,
    }
}

fn setup() -> (Evaluator, Arc<Territory>) {
    let t = Arc::new(fixture::small());
    let set = RuleSet::from_rules(vec![aggregate_rule(&t)], &t);
    (
        Evaluator::new(Arc::new(set), Arc::clone(&t), Timestamp(T0)),
        t,
    )
}

fn obs(d: DeviceIdx, v: f64, at_s: i64) -> Observation {
    Observation {
        device: d,
        field: FieldIdx(0),
        value: Value::Number(v),
        time: Timestamp(T0 + at_s * 1000),
        trust: beffroi_core::Trust::Unauthenticated,
    }
}

fn summary(a: &[Alarm]) -> Vec<(AlarmKind, Severity)> {
    a.iter().map(|a| (a.kind.clone(), a.severity)).collect()
}

#[test]
fn sums_the_latest_values_raises_escalates_and_clears_with_hysteresis() {
    let (mut e, t) = setup();
    let (g1, g2) = (DeviceIdx(0), DeviceIdx(1));
    assert_eq!(&*t.device(g1).id, "g1");
    let mut out = Vec::new();
    e.on_observation(&obs(g1, 6.0, 1), &mut out);
    e.on_observation(&obs(g2, 3.0, 2), &mut out);
    assert!(out.is_empty(), "9 < 10");
    // g1's newer value replaces its older one: 7 + 3 = 10 reaches the warning.
    e.on_observation(&obs(g1, 7.0, 3), &mut out);
    assert_eq!(summary(&out), vec![(AlarmKind::Raise, Severity::Major)]);
    assert_eq!(out[0].key.as_str(), "concert/capacity@site:s2");
    assert_eq!(&*out[0].title, "Jauge — 10 personnes");
    // An older observation of g2 does not replace its latest value.
    e.on_observation(&obs(g2, 100.0, 0), &mut out);
    assert_eq!(out.len(), 1);
    e.on_observation(&obs(g2, 9.0, 4), &mut out);
    assert_eq!(out[1].kind, AlarmKind::Escalate);
    assert_eq!(out[1].severity, Severity::Critical);
    // Within the hysteresis band nothing clears: 7 + 2.5 = 9.5 ≥ 10 - 1.
    e.on_observation(&obs(g2, 2.5, 5), &mut out);
    assert_eq!(out.len(), 2);
    e.on_observation(&obs(g2, 1.0, 6), &mut out);
    assert_eq!(out[2].kind, AlarmKind::Clear);
    assert_eq!(e.aggregate_sum("concert/capacity"), Some(8.0));
    // Straight to critical from clear.
    e.on_observation(&obs(g2, 20.0, 7), &mut out);
    assert_eq!(
        summary(&out[3..]),
        vec![(AlarmKind::Raise, Severity::Critical)]
    );
}

#[test]
fn seeding_gives_the_rule_the_values_from_before_its_window() {
    let (mut e, _) = setup();
    let mut out = Vec::new();
    let at = Timestamp(T0 + 60_000);
    e.seed_aggregate(
        "concert/capacity",
        &[
            (DeviceIdx(0), FieldIdx(0), Timestamp(T0), 8.0),
            (DeviceIdx(1), FieldIdx(0), Timestamp(T0), 4.0),
            // Not an input of the rule: ignored.
            (DeviceIdx(2), FieldIdx(0), Timestamp(T0), 400.0),
        ],
        at,
        &mut out,
    );
    assert_eq!(summary(&out), vec![(AlarmKind::Raise, Severity::Major)]);
    assert_eq!(out[0].at, at);
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
"#;

#[test]
fn replacing_rules_keeps_the_state_of_unchanged_rules() {
    let t = Arc::new(fixture::small());
    let base = parse(&SourceFile::new("rules.toml", SUSTAINED), &t).expect("rules");
    let mut e = Evaluator::new(Arc::new(base.clone()), Arc::clone(&t), Timestamp(T0));
    let mut out = Vec::new();
    let g1 = t.device_id("g1").expect("g1");
    e.on_observation(&obs(g1, 3.0, 0), &mut out);
    // Halfway through the sustained delay, an event's rule comes into force.
    let mut rules = vec![aggregate_rule(&t)];
    rules.extend(base.rules.iter().cloned());
    e.replace_rules(Arc::new(RuleSet::from_rules(rules, &t)));
    e.on_tick(Timestamp(T0 + 600_000), &mut out);
    assert_eq!(
        summary(&out),
        vec![(AlarmKind::Raise, Severity::Major)],
        "the sustained condition kept its start across the replacement"
    );
    // The event ends: its rule goes, the base rule stays raised (no second raise).
    e.on_observation(&obs(g1, 11.0, 610), &mut out);
    assert!(out.iter().any(|a| &*a.rule == "concert/capacity"));
    let before = out.len();
    e.replace_rules_clearing(Arc::new(base), Timestamp(T0 + 700_000), &mut out);
    let cleared: Vec<_> = out[before..]
        .iter()
        .map(|a| (a.kind.clone(), a.rule.to_string()))
        .collect();
    assert_eq!(
        cleared,
        vec![(AlarmKind::Clear, "concert/capacity".to_string())]
    );
    e.on_observation(&obs(g1, 1.0, 710), &mut out);
    assert_eq!(
        out.last().map(|a| (a.kind.clone(), a.rule.to_string())),
        Some((AlarmKind::Clear, "high".into()))
    );
}

proptest! {
    /// The sum follows the latest value of each input; the rule raises once when the sum
    /// first reaches the warning, escalates once on reaching critical, and clears only
    /// below `warning - hysteresis`; raises and clears alternate.
    #[test]
    fn aggregate_follows_the_sum_of_latest_values(
        steps in proptest::collection::vec((0usize..2, 0.0f64..12.0), 1..200)
    ) {
        let (mut e, _) = setup();
        let mut latest = [None::<f64>, None];
        let mut level = 0u8;
        let mut expected = Vec::new();
        let mut out = Vec::new();
        for (i, (d, v)) in steps.iter().enumerate() {
            e.on_observation(&obs(DeviceIdx(*d as u32), *v, i as i64), &mut out);
            latest[*d] = Some(*v);
            let sum: f64 = latest.iter().flatten().sum();
            prop_assert_eq!(e.aggregate_sum("concert/capacity"), Some(sum));
            match level {
                0 if sum >= CRITICAL => { level = 2; expected.push((AlarmKind::Raise, Severity::Critical)); }
                0 if sum >= WARNING => { level = 1; expected.push((AlarmKind::Raise, Severity::Major)); }
                1 if sum >= CRITICAL => { level = 2; expected.push((AlarmKind::Escalate, Severity::Critical)); }
                1 | 2 if sum < WARNING - HYST => { level = 0; expected.push((AlarmKind::Clear, Severity::Major)); }
                _ => {}
            }
        }
        prop_assert_eq!(summary(&out), expected);
    }
}

/// People counts: when the counters count people, a sum below the minimum group
/// size reaches neither the title nor the evidence; the rule still compares the true sum.
#[test]
fn a_small_people_sum_is_suppressed_in_title_and_evidence() {
    let mut t = fixture::small();
    let level = t.kind_id("level").expect("fixture");
    t.kinds[level.get()].fields[0].people_count = true;
    let t = Arc::new(t);
    let mut rule = aggregate_rule(&t);
    if let Body::Aggregate {
        warning, critical, ..
    } = &mut rule.body
    {
        *warning = 5.0;
        *critical = 100.0;
    }
    let set = RuleSet::from_rules(vec![rule], &t);
    let mut e = Evaluator::new(Arc::new(set), Arc::clone(&t), Timestamp(T0));
    e.set_aggregates(beffroi_core::privacy::Aggregates {
        min_group_size: 10,
        bucket: beffroi_core::Duration::from_mins(5),
    });
    let mut out = Vec::new();
    e.on_observation(&obs(DeviceIdx(0), 4.0, 1), &mut out);
    e.on_observation(&obs(DeviceIdx(1), 3.0, 2), &mut out);
    assert_eq!(
        summary(&out),
        vec![(AlarmKind::Raise, Severity::Major)],
        "7 >= 5"
    );
    assert_eq!(&*out[0].title, "Jauge — < 10 personnes");
    assert!(out[0].evidence.contains("= < 10"), "{}", out[0].evidence);
    assert!(!out[0].evidence.contains('7'), "{}", out[0].evidence);
}

/// The fixture with `level_m` counting people (0 to 100 000).
fn people_territory() -> Arc<Territory> {
    let mut t = fixture::small();
    let level = t.kind_id("level").expect("fixture");
    let f = &mut t.kinds[level.get()].fields[0];
    f.people_count = true;
    f.max = Some(100_000.0);
    Arc::new(t)
}

/// No count below the minimum group size reaches an incident's title or evidence: not
/// the value a threshold rule clears on, not a capacity sum that, minus the counters shown
/// on their own, would give a withheld counter back (complementary suppression).
#[test]
fn no_people_count_below_the_group_size_reaches_titles_or_evidence() {
    let t = people_territory();
    let level = t.kind_id("level").expect("fixture");
    let crowd = Rule {
        id: "crowd".into(),
        title: "Foule : {value} personnes".into(),
        category: "crowd".into(),
        severity: Severity::Major,
        key: KeyBy::Device,
        auto_resolve: true,
        body: Body::Threshold {
            cond: beffroi_rules::Condition {
                kind: level,
                field: FieldIdx(0),
                field_name: "level_m".into(),
                op: beffroi_rules::Op::Above(50.0),
            },
            sustained: None,
        },
        escalate: Vec::new(),
        sites: None,
        devices: None,
        line: 0,
    };
    let mut capacity = aggregate_rule(&t);
    if let Body::Aggregate {
        warning, critical, ..
    } = &mut capacity.body
    {
        *warning = 252.0;
        *critical = 10_000.0;
    }
    let set = RuleSet::from_rules(vec![crowd, capacity], &t);
    let mut e = Evaluator::new(Arc::new(set), Arc::clone(&t), Timestamp(T0));
    e.set_aggregates(beffroi_core::privacy::Aggregates::default());
    let (g1, g2) = (DeviceIdx(0), DeviceIdx(1));
    let mut out = Vec::new();
    e.on_observation(&obs(g1, 250.0, 1), &mut out);
    e.on_observation(&obs(g2, 4.0, 2), &mut out);
    let cap = out
        .iter()
        .find(|a| &*a.rule == "concert/capacity")
        .expect("250 + 4 >= 252");
    // 254 minus g1's 250 (shown on its own) would give g2's 4.
    for text in [&*cap.title, &*cap.evidence] {
        assert!(!text.contains("254") && !text.contains("= 4"), "{text}");
    }
    assert_eq!(&*cap.title, "Jauge — ≥ 250 personnes");
    let crowd = out.iter().find(|a| &*a.rule == "crowd").expect("250 > 50");
    // The title keeps `{value}` for the incident to render from its current value
    // (`Incident::title_now`); the value it starts from is the count as it may be shown.
    assert_eq!(&*crowd.title, "Foule : {value} personnes");
    assert_eq!(crowd.trigger.as_ref().and_then(|t| t.value), Some(250.0));
    // g1 drops to 3: the clear's evidence does not print the 3.
    out.clear();
    e.on_observation(&obs(g1, 3.0, 3), &mut out);
    let clear = out
        .iter()
        .find(|a| &*a.rule == "crowd" && a.kind == AlarmKind::Clear)
        .expect("3 < 50: cleared");
    assert!(
        !clear.evidence.contains('3') && clear.evidence.contains("< 10"),
        "{}",
        clear.evidence
    );
}
