use beffroi_core::SafeText;
use beffroi_core::message::{Message, Param};
use std::collections::VecDeque;
use std::sync::Arc;

use beffroi_core::privacy::Aggregates;
use beffroi_core::{
    Alarm, AlarmKind, DedupKey, DeviceIdx, Duration, FieldIdx, Observation, SiteIdx, Territory,
    Timestamp, Trigger, TriggerKind, Value,
};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{Body, Condition, KeyBy, Rule, RuleIdx, RuleSet, Scope, Target};

/// A unit is what a condition holds for: a device or a site, encoded in 64 bits.
type Unit = u64;
const SITE_TAG: u64 = 1 << 32;

fn dev_unit(d: DeviceIdx) -> Unit {
    u64::from(d.0)
}
fn site_unit(s: SiteIdx) -> Unit {
    SITE_TAG | u64::from(s.0)
}

#[derive(Default)]
struct ThreshState {
    since: Option<Timestamp>,
    fired: bool,
    last: Option<Value>,
}

#[derive(Default)]
struct RateState {
    times: VecDeque<Timestamp>,
    fired: bool,
}

struct CorrState {
    last_true: Vec<Option<Timestamp>>,
    fired: bool,
    /// Where the incident opened when it fired (the `open_at` condition's site).
    opened_at_site: Option<SiteIdx>,
}

/// Latest value of each input of an aggregate rule, and the level reached: 0 clear,
/// 1 raised, 2 critical.
#[derive(Default)]
struct AggState {
    latest: FxHashMap<(DeviceIdx, beffroi_core::FieldIdx), (Timestamp, f64)>,
    level: u8,
}

impl AggState {
    /// Sum in a fixed order, so that the same values always give the same sum.
    fn sum(&self) -> f64 {
        let mut v: Vec<_> = self.latest.iter().collect();
        v.sort_unstable_by_key(|(k, _)| **k);
        v.into_iter().map(|(_, (_, x))| *x).sum()
    }
}

struct KeyState {
    units: Vec<Unit>,
    raised_at: Timestamp,
    level: usize,
    site: SiteIdx,
    device: Option<DeviceIdx>,
}

/// The stateful evaluation of a [`RuleSet`] over a stream of observations and ticks.
///
/// State is keyed by (rule, device) or (rule, site), so a partition of devices and sites can
/// be evaluated independently. Two devices of one site with a site-keyed rule raise a single
/// alarm, which clears only when both have cleared.
pub struct Evaluator {
    set: Arc<RuleSet>,
    territory: Arc<Territory>,
    last_seen: Vec<Timestamp>,
    thresh: FxHashMap<(RuleIdx, DeviceIdx), ThreshState>,
    pending: FxHashSet<(RuleIdx, DeviceIdx)>,
    absent: FxHashSet<(RuleIdx, DeviceIdx)>,
    rate: FxHashMap<(RuleIdx, Unit), RateState>,
    corr: FxHashMap<(RuleIdx, SiteIdx), CorrState>,
    neighbours: FxHashMap<(RuleIdx, SiteIdx), Arc<[SiteIdx]>>,
    keys: FxHashMap<(RuleIdx, Unit), KeyState>,
    agg: FxHashMap<RuleIdx, AggState>,
    /// The value that last made a condition true, per device, for `{value}` in titles, as
    /// it may be shown (people counts suppressed below the minimum group size).
    last_value: FxHashMap<DeviceIdx, String>,
    /// Minimum group size of people counts: a count below it never reaches a title or
    /// evidence (the rules still compare the true value).
    aggregates: Aggregates,
}

impl Evaluator {
    /// Every device counts as last seen at `start` until it reports.
    pub fn new(set: Arc<RuleSet>, territory: Arc<Territory>, start: Timestamp) -> Self {
        Evaluator {
            last_seen: vec![start; territory.devices.len()],
            set,
            territory,
            thresh: FxHashMap::default(),
            pending: FxHashSet::default(),
            absent: FxHashSet::default(),
            rate: FxHashMap::default(),
            corr: FxHashMap::default(),
            neighbours: FxHashMap::default(),
            keys: FxHashMap::default(),
            agg: FxHashMap::default(),
            last_value: FxHashMap::default(),
            aggregates: Aggregates::default(),
        }
    }

    /// Sets the minimum group size of people counts (`privacy.toml`'s `[aggregates]`).
    pub fn set_aggregates(&mut self, a: Aggregates) {
        self.aggregates = a;
    }

    /// A value as titles and evidence may show it: a people count (`people_count = true`)
    /// through [`Aggregates::shown_text`], anything else as is.
    fn shown(&self, d: DeviceIdx, field: FieldIdx, v: &Value) -> String {
        Self::shown_with(&self.territory, &self.aggregates, d, field, v)
    }

    fn shown_with(
        territory: &Territory,
        aggregates: &Aggregates,
        d: DeviceIdx,
        field: FieldIdx,
        v: &Value,
    ) -> String {
        let people = territory
            .kind_of(d)
            .fields
            .get(field.get())
            .is_some_and(|f| f.people_count);
        match v {
            Value::Number(n) if people => aggregates.shown_text(*n),
            v => v.to_string(),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.set
    }

    /// Swaps in a new rule set. The state of every rule that is still there with the same
    /// definition (id, body, key and scope) carries over: a sustained condition keeps its
    /// start, a raised condition stays raised and still clears and escalates. Rules that
    /// are gone or changed restart from scratch (conditions still true raise again, which
    /// the incident book absorbs). Device liveness is kept.
    pub fn replace_rules(&mut self, set: Arc<RuleSet>) {
        self.swap_rules(set, None, &mut Vec::new());
    }

    /// Like [`Evaluator::replace_rules`], and every condition still raised by a rule that is
    /// gone or changed is cleared at `at` (its incident resolves if the rule
    /// auto-resolves): used when an event's temporary rules stop being in force.
    pub fn replace_rules_clearing(
        &mut self,
        set: Arc<RuleSet>,
        at: Timestamp,
        out: &mut Vec<Alarm>,
    ) {
        self.swap_rules(set, Some(at), out);
    }

    fn swap_rules(&mut self, set: Arc<RuleSet>, clear_at: Option<Timestamp>, out: &mut Vec<Alarm>) {
        let old = std::mem::replace(&mut self.set, Arc::clone(&set));
        let by_id: FxHashMap<&str, usize> = set
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (&*r.id, i))
            .collect();
        let map: FxHashMap<RuleIdx, RuleIdx> = old
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let j = *by_id.get(&*r.id)?;
                let n = &set.rules[j];
                (n.body == r.body && n.key == r.key && n.sites == r.sites && n.devices == r.devices)
                    .then_some((RuleIdx(i as u32), RuleIdx(j as u32)))
            })
            .collect();
        if let Some(at) = clear_at {
            let mut gone: Vec<_> = self
                .keys
                .iter()
                .filter(|((r, _), _)| !map.contains_key(r))
                .map(|((r, k), ks)| (*r, *k, ks.site, ks.device))
                .collect();
            let mut gone_agg: Vec<_> = self
                .agg
                .iter()
                .filter(|(r, st)| !map.contains_key(r) && st.level > 0)
                .map(|(r, _)| *r)
                .collect();
            gone.sort_unstable_by_key(|g| (g.0, g.1));
            gone_agg.sort_unstable();
            for (r, _, site, device) in gone {
                let mut a = self.alarm_in(&old, r, AlarmKind::Clear, site, device, at);
                a.evidence = "rule no longer in force".into();
                out.push(a);
            }
            for r in gone_agg {
                if let Body::Aggregate { site, .. } = old.rule(r).body {
                    let mut a = self.alarm_in(&old, r, AlarmKind::Clear, site, None, at);
                    a.evidence = "rule no longer in force".into();
                    out.push(a);
                }
            }
        }
        fn remap<K: std::hash::Hash + Eq, V>(m: &mut FxHashMap<K, V>, f: impl Fn(&K) -> Option<K>) {
            *m = std::mem::take(m)
                .into_iter()
                .filter_map(|(k, v)| f(&k).map(|k| (k, v)))
                .collect();
        }
        fn remap_set<K: std::hash::Hash + Eq>(m: &mut FxHashSet<K>, f: impl Fn(&K) -> Option<K>) {
            *m = std::mem::take(m)
                .into_iter()
                .filter_map(|k| f(&k))
                .collect();
        }
        let r = |x: &RuleIdx| map.get(x).copied();
        remap(&mut self.thresh, |(x, d)| Some((r(x)?, *d)));
        remap_set(&mut self.pending, |(x, d)| Some((r(x)?, *d)));
        remap_set(&mut self.absent, |(x, d)| Some((r(x)?, *d)));
        remap(&mut self.rate, |(x, u)| Some((r(x)?, *u)));
        remap(&mut self.corr, |(x, s)| Some((r(x)?, *s)));
        remap(&mut self.keys, |(x, u)| Some((r(x)?, *u)));
        remap(&mut self.agg, r);
        self.neighbours.clear();
    }

    /// Gives an aggregate rule the latest values known elsewhere (when an event's capacity
    /// rule comes into force, the counters' values from before its window) and evaluates
    /// it at `at`. Values older than those the rule already holds are ignored.
    pub fn seed_aggregate(
        &mut self,
        rule_id: &str,
        values: &[(DeviceIdx, beffroi_core::FieldIdx, Timestamp, f64)],
        at: Timestamp,
        out: &mut Vec<Alarm>,
    ) {
        let set = Arc::clone(&self.set);
        let Some(ri) = set.rules.iter().position(|r| &*r.id == rule_id) else {
            return;
        };
        let r = RuleIdx(ri as u32);
        let Body::Aggregate { inputs, .. } = &set.rule(r).body else {
            return;
        };
        let st = self.agg.entry(r).or_default();
        for &(d, f, t, v) in values {
            if !inputs.contains(&(d, f)) {
                continue;
            }
            match st.latest.get(&(d, f)) {
                Some((t0, _)) if *t0 > t => {}
                _ => {
                    st.latest.insert((d, f), (t, v));
                }
            }
        }
        self.agg_evaluate(&set, r, at, out);
    }

    /// The current sum of an aggregate rule's latest values (`None` for an unknown rule).
    pub fn aggregate_sum(&self, rule_id: &str) -> Option<f64> {
        let ri = self.set.rules.iter().position(|r| &*r.id == rule_id)?;
        Some(self.agg.get(&RuleIdx(ri as u32)).map_or(0.0, AggState::sum))
    }

    fn agg_evaluate(
        &mut self,
        set: &Arc<RuleSet>,
        r: RuleIdx,
        at: Timestamp,
        out: &mut Vec<Alarm>,
    ) {
        let rule = set.rule(r);
        let Body::Aggregate {
            warning,
            critical,
            hysteresis,
            site,
            ..
        } = rule.body
        else {
            return;
        };
        let Some(st) = self.agg.get_mut(&r) else {
            return;
        };
        let sum = st.sum();
        let territory = &self.territory;
        let people = st.latest.keys().any(|(d, f)| {
            territory
                .kind_of(*d)
                .fields
                .get(f.get())
                .is_some_and(|s| s.people_count)
        });
        let (shown, shown_ev) = if people {
            // Complementary suppression: the sum minus the counters shown on their own
            // never gives back a count they withhold.
            let counts: Vec<f64> = st.latest.values().map(|(_, v)| *v).collect();
            let s = self.aggregates.total_text(&counts);
            (s.clone(), number_or_text(&s, None))
        } else {
            (
                format!("{}", sum.round()),
                Param::Number {
                    value: sum,
                    unit: None,
                },
            )
        };
        let ev = Message::new("rule.aggregate")
            .int("count", st.latest.len() as i64)
            .with("sum", shown_ev)
            .number("warning", warning)
            .number("critical", critical);
        let (kind, severity) = match st.level {
            0 if sum >= critical => {
                st.level = 2;
                (AlarmKind::Raise, beffroi_core::Severity::Critical)
            }
            0 if sum >= warning => {
                st.level = 1;
                (AlarmKind::Raise, rule.severity)
            }
            1 if sum >= critical => {
                st.level = 2;
                (AlarmKind::Escalate, beffroi_core::Severity::Critical)
            }
            1 | 2 if sum < warning - hysteresis => {
                st.level = 0;
                (AlarmKind::Clear, rule.severity)
            }
            _ => return,
        };
        let mut a = self.alarm(rule, kind, site, None, at);
        a.severity = a.severity.max(severity);
        a.title = SafeText::redacting(&a.title.replace("{value}", &shown));
        a.evidence = ev.english();
        a.evidence_message = Some(ev);
        if a.kind == AlarmKind::Raise {
            let mut tr = Trigger::new(TriggerKind::Aggregate, at);
            tr.value = if people { None } else { Some(sum) };
            tr.op = Some(beffroi_core::TriggerOp::Above);
            tr.threshold = Some(warning);
            tr.threshold_high = Some(critical);
            a.trigger = Some(tr);
        }
        out.push(a);
    }

    /// Restores when a device was last heard of (after a restart): absence rules then count
    /// from that time, not from the restart.
    pub fn set_last_seen(&mut self, d: DeviceIdx, t: Timestamp) {
        if let Some(slot) = self.last_seen.get_mut(d.get()) {
            *slot = t;
        }
    }

    /// Re-arms the state of a condition that was raised before a restart (an incident whose
    /// condition was still active), so that it clears, escalates and deduplicates as if
    /// the process had never stopped. Unknown rules (since removed) are ignored. Returns
    /// whether the condition is a device's silence (an absence rule).
    pub fn restore_raised(
        &mut self,
        rule_id: &str,
        site: SiteIdx,
        device: Option<DeviceIdx>,
        raised_at: Timestamp,
        severity: beffroi_core::Severity,
    ) -> bool {
        let set = Arc::clone(&self.set);
        let Some(ri) = set.rules.iter().position(|r| &*r.id == rule_id) else {
            return false;
        };
        let r = RuleIdx(ri as u32);
        let rule = set.rule(r);
        let unit = match (&rule.body, device) {
            (Body::Threshold { .. }, Some(d)) => {
                self.thresh.insert(
                    (r, d),
                    ThreshState {
                        since: Some(raised_at),
                        fired: true,
                        last: None,
                    },
                );
                dev_unit(d)
            }
            (Body::Absence { .. }, Some(d)) => {
                self.absent.insert((r, d));
                dev_unit(d)
            }
            (Body::Rate { per, .. }, _) => {
                let unit = match (per, device) {
                    (KeyBy::Device, Some(d)) => dev_unit(d),
                    _ => site_unit(site),
                };
                self.rate.insert(
                    (r, unit),
                    RateState {
                        times: VecDeque::new(),
                        fired: true,
                    },
                );
                unit
            }
            (Body::Correlation { conds, .. }, _) => {
                self.corr.insert(
                    (r, site),
                    CorrState {
                        last_true: vec![Some(raised_at); conds.len()],
                        fired: true,
                        opened_at_site: Some(site),
                    },
                );
                site_unit(site)
            }
            (Body::Aggregate { .. }, _) => {
                let st = self.agg.entry(r).or_default();
                st.level = if severity >= beffroi_core::Severity::Critical {
                    2
                } else {
                    1
                };
                return false;
            }
            _ => return false,
        };
        let key = Self::key_of(rule, site, device);
        let level = rule
            .escalate
            .iter()
            .take_while(|(_, s)| *s <= severity)
            .count();
        let ks = self.keys.entry((r, key)).or_insert_with(|| KeyState {
            units: Vec::new(),
            raised_at,
            level,
            site,
            device: if rule.key == KeyBy::Device {
                device
            } else {
                None
            },
        });
        if !ks.units.contains(&unit) {
            ks.units.push(unit);
        }
        matches!(rule.body, Body::Absence { .. })
    }

    /// Forgets every condition a device holds (quarantine): its threshold, pending, absence
    /// and per-device rate state go, and each raised condition it alone kept true clears at
    /// `at` with `why` as evidence (its incident resolves if the rule auto-resolves).
    /// Site-level correlation and aggregate inputs are not per device and are kept.
    pub fn forget_device(
        &mut self,
        d: DeviceIdx,
        at: Timestamp,
        why: &Message,
        out: &mut Vec<Alarm>,
    ) {
        let set = Arc::clone(&self.set);
        self.thresh.retain(|(_, x), _| *x != d);
        self.pending.retain(|(_, x)| *x != d);
        self.absent.retain(|(_, x)| *x != d);
        self.rate.retain(|(_, u), _| *u != dev_unit(d));
        self.last_value.remove(&d);
        let unit = dev_unit(d);
        let mut held: Vec<RuleIdx> = self
            .keys
            .iter()
            .filter(|(_, ks)| ks.units.contains(&unit))
            .map(|((r, _), _)| *r)
            .collect();
        held.sort_unstable_by_key(|r| r.0);
        held.dedup();
        for r in held {
            self.unit_down(&set, r, unit, at, Some(why.clone()), out);
        }
    }

    pub fn last_seen(&self, d: DeviceIdx) -> Option<Timestamp> {
        self.last_seen.get(d.get()).copied()
    }

    /// Number of (rule, key) conditions currently raised.
    pub fn active_keys(&self) -> usize {
        self.keys.len()
    }

    /// Feeds one validated observation; alarms are appended to `out`.
    pub fn on_observation(&mut self, obs: &Observation, out: &mut Vec<Alarm>) {
        let set = Arc::clone(&self.set);
        let d = obs.device;
        let t = obs.time;
        if let Some(slot) = self.last_seen.get_mut(d.get())
            && t > *slot
        {
            *slot = t;
        }
        if !self.absent.is_empty() {
            for &r in &set.absence {
                if self.absent.remove(&(r, d)) {
                    let ev = Some(
                        Message::new("rule.reports_again")
                            .device("device", &self.territory.device(d).id),
                    );
                    self.unit_down(&set, r, dev_unit(d), t, ev, out);
                }
            }
        }
        let device = self.territory.device(d);
        let site = device.site;
        let Some(bucket) = set.bucket(device.kind, obs.field) else {
            return;
        };
        let scoped_site = bucket.by_site.get(&site).map(Vec::as_slice).unwrap_or(&[]);
        let scoped_dev = bucket.by_device.get(&d).map(Vec::as_slice).unwrap_or(&[]);
        for target in bucket.global.iter().chain(scoped_site).chain(scoped_dev) {
            self.apply(&set, *target, obs, site, out);
        }
    }

    fn apply(
        &mut self,
        set: &Arc<RuleSet>,
        target: Target,
        obs: &Observation,
        site: SiteIdx,
        out: &mut Vec<Alarm>,
    ) {
        let r = target.rule;
        let rule = set.rule(r);
        if !target.site_checked && !rule.site_allowed(site) {
            return;
        }
        let d = obs.device;
        let t = obs.time;
        match &rule.body {
            Body::Threshold { cond, sustained } => {
                let holds = cond.op.eval(&obs.value);
                if !holds && !self.thresh.contains_key(&(r, d)) {
                    return;
                }
                let st = self.thresh.entry((r, d)).or_default();
                if holds {
                    let since = *st.since.get_or_insert(t);
                    st.last = Some(obs.value.clone());
                    let shown = Self::shown_with(
                        &self.territory,
                        &self.aggregates,
                        d,
                        cond.field,
                        &obs.value,
                    );
                    self.last_value.insert(d, shown);
                    if !st.fired {
                        if sustained.is_none_or(|s| t.since(since) >= s) {
                            st.fired = true;
                            self.pending.remove(&(r, d));
                            let ev = Some(self.evidence(cond, d, &obs.value, *sustained));
                            let mut tr =
                                self.trigger_of(TriggerKind::Threshold, cond, d, &obs.value, t);
                            tr.window = *sustained;
                            self.unit_up(set, r, dev_unit(d), site, Some(d), t, ev, tr, out);
                        } else {
                            self.pending.insert((r, d));
                        }
                    }
                } else {
                    let was = st.fired;
                    self.thresh.remove(&(r, d));
                    self.pending.remove(&(r, d));
                    if was {
                        let ev = Some(
                            Message::new("rule.back_to")
                                .device("device", &self.territory.device(d).id)
                                .with("field", field_param(cond))
                                .with("value", self.value_param(d, cond.field, &obs.value)),
                        );
                        self.unit_down(set, r, dev_unit(d), t, ev, out);
                    }
                }
            }
            Body::Rate {
                cond,
                count,
                window,
                per,
            } => {
                if !cond.op.eval(&obs.value) {
                    return;
                }
                let unit = match per {
                    KeyBy::Device => dev_unit(d),
                    KeyBy::Site => site_unit(site),
                };
                let st = self.rate.entry((r, unit)).or_default();
                st.times.push_back(t);
                let horizon = t.minus(*window);
                while st.times.front().is_some_and(|x| *x < horizon) {
                    st.times.pop_front();
                }
                // Keep memory bounded: only the last `count` times matter.
                while st.times.len() > *count as usize {
                    st.times.pop_front();
                }
                if !st.fired && st.times.len() >= *count as usize {
                    st.fired = true;
                    let ev = Some(
                        Message::new("rule.rate")
                            .int("count", (*count).into())
                            .with("field", field_param(cond))
                            .with("op", op_param(&cond.op))
                            .int("seconds", window.millis() / 1000)
                            .device("device", &self.territory.device(d).id),
                    );
                    let mut tr = self.trigger_of(TriggerKind::Rate, cond, d, &obs.value, t);
                    tr.window = Some(*window);
                    tr.count = Some(*count);
                    self.unit_up(set, r, unit, site, Some(d), t, ev, tr, out);
                }
            }
            Body::Correlation {
                conds,
                window,
                scope,
                open_at,
            } => {
                let ci = target.cond as usize;
                let Some(cond) = conds.get(ci) else { return };
                if !cond.op.eval(&obs.value) {
                    return;
                }
                let n = conds.len();
                let st = self.corr.entry((r, site)).or_insert_with(|| CorrState {
                    last_true: vec![None; n],
                    fired: false,
                    opened_at_site: None,
                });
                st.last_true[ci] = Some(st.last_true[ci].map_or(t, |x| x.max(t)));
                let fired = st.fired;
                if !fired && self.correlated(set, r, site, t, *window, scope, n) {
                    // The site it opens at: the nearest where the `open_at` condition held.
                    let (at_site, at_device) = match (open_at, scope) {
                        (Some(a), Scope::RadiusM(m)) if *a != ci => {
                            let horizon = t.minus(*window);
                            let here = self.territory.site(site).position;
                            let near = self.neighbours(set, r, site, *m);
                            let found = near
                                .iter()
                                .filter(|s| {
                                    self.corr
                                        .get(&(r, **s))
                                        .and_then(|st| st.last_true.get(*a).copied().flatten())
                                        .is_some_and(|x| x >= horizon)
                                })
                                .min_by(|x, y| {
                                    let dx = self.territory.site(**x).position.distance_m(&here);
                                    let dy = self.territory.site(**y).position.distance_m(&here);
                                    dx.total_cmp(&dy).then(x.cmp(y))
                                })
                                .copied();
                            (found.unwrap_or(site), found.is_none().then_some(d))
                        }
                        _ => (site, Some(d)),
                    };
                    if let Some(st) = self.corr.get_mut(&(r, site)) {
                        st.fired = true;
                        st.opened_at_site = Some(at_site);
                    }
                    let ev = match scope {
                        Scope::Site => Message::new("rule.correlation_site"),
                        Scope::RadiusM(m) => {
                            Message::new("rule.correlation_radius").number("radius", *m)
                        }
                    };
                    let ev = Some(
                        ev.int("count", n as i64)
                            .int("seconds", window.millis() / 1000)
                            .device("device", &self.territory.device(d).id)
                            .with("field", field_param(cond))
                            .with("value", self.value_param(d, cond.field, &obs.value)),
                    );
                    let mut tr = self.trigger_of(TriggerKind::Correlation, cond, d, &obs.value, t);
                    tr.window = Some(*window);
                    tr.count = u32::try_from(n).ok();
                    if let Scope::RadiusM(m) = scope {
                        tr.radius_m = Some(*m);
                    }
                    self.unit_up(
                        set,
                        r,
                        site_unit(at_site),
                        at_site,
                        at_device,
                        t,
                        ev,
                        tr,
                        out,
                    );
                }
            }
            Body::Aggregate { inputs, .. } => {
                let Value::Number(v) = obs.value else { return };
                if !inputs.contains(&(d, obs.field)) {
                    return;
                }
                let st = self.agg.entry(r).or_default();
                match st.latest.get(&(d, obs.field)) {
                    Some((t0, _)) if *t0 > t => return,
                    _ => {
                        st.latest.insert((d, obs.field), (t, v));
                    }
                }
                self.agg_evaluate(set, r, t, out);
            }
            Body::Absence { .. } => {}
        }
    }

    /// Whether every condition of a correlation was true within `window` before `now`, at
    /// `site` or (radius scope) at a site within the radius.
    #[allow(clippy::too_many_arguments)]
    fn correlated(
        &mut self,
        set: &Arc<RuleSet>,
        r: RuleIdx,
        site: SiteIdx,
        now: Timestamp,
        window: Duration,
        scope: &Scope,
        n: usize,
    ) -> bool {
        let horizon = now.minus(window);
        match scope {
            Scope::Site => self
                .corr
                .get(&(r, site))
                .is_some_and(|st| st.last_true.iter().all(|x| x.is_some_and(|x| x >= horizon))),
            Scope::RadiusM(m) => {
                let near = self.neighbours(set, r, site, *m);
                (0..n).all(|i| {
                    near.iter().any(|s| {
                        self.corr
                            .get(&(r, *s))
                            .and_then(|st| st.last_true[i])
                            .is_some_and(|x| x >= horizon)
                    })
                })
            }
        }
    }

    fn neighbours(&mut self, set: &RuleSet, r: RuleIdx, site: SiteIdx, m: f64) -> Arc<[SiteIdx]> {
        if let Some(n) = self.neighbours.get(&(r, site)) {
            return Arc::clone(n);
        }
        let here = self.territory.site(site).position;
        let rule = set.rule(r);
        let list: Arc<[SiteIdx]> = self
            .territory
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| (SiteIdx(i as u32), s))
            .filter(|(i, s)| rule.site_allowed(*i) && s.position.distance_m(&here) <= m)
            .map(|(i, _)| i)
            .collect();
        self.neighbours.insert((r, site), Arc::clone(&list));
        list
    }

    /// Advances processing time: sustained conditions, absences, expired rates and
    /// correlations, escalations.
    pub fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Alarm>) {
        let set = Arc::clone(&self.set);
        // Sustained thresholds that have now lasted long enough.
        if !self.pending.is_empty() {
            let mut due = Vec::new();
            for &(r, d) in &self.pending {
                if let (
                    Body::Threshold {
                        sustained: Some(s), ..
                    },
                    Some(st),
                ) = (&set.rule(r).body, self.thresh.get(&(r, d)))
                    && st.since.is_some_and(|since| now.since(since) >= *s)
                {
                    due.push((r, d));
                }
            }
            due.sort_unstable();
            for (r, d) in due {
                self.pending.remove(&(r, d));
                let Some(st) = self.thresh.get_mut(&(r, d)) else {
                    continue;
                };
                st.fired = true;
                let value = st.last.clone();
                if let Body::Threshold { cond, sustained } = &set.rule(r).body {
                    let ev = value
                        .as_ref()
                        .map(|v| self.evidence(cond, d, v, *sustained));
                    let mut tr = match &value {
                        Some(v) => self.trigger_of(TriggerKind::Threshold, cond, d, v, now),
                        None => Trigger::new(TriggerKind::Threshold, now),
                    };
                    tr.window = *sustained;
                    let site = self.territory.device(d).site;
                    self.unit_up(&set, r, dev_unit(d), site, Some(d), now, ev, tr, out);
                }
            }
        }
        // Absence of messages.
        let territory = Arc::clone(&self.territory);
        for &r in &set.absence {
            let rule = set.rule(r);
            let Body::Absence { kind, after } = rule.body else {
                continue;
            };
            let horizon = now.minus(after);
            for &d in territory.devices_of_kind(kind) {
                let seen = self.last_seen[d.get()];
                if seen > horizon || self.absent.contains(&(r, d)) {
                    continue;
                }
                if let Some(devs) = &rule.devices
                    && !devs.contains(&d)
                {
                    continue;
                }
                let site = self.territory.device(d).site;
                if !rule.site_allowed(site) {
                    continue;
                }
                self.absent.insert((r, d));
                let ev = Some(
                    Message::new("rule.absence")
                        .device("device", &self.territory.device(d).id)
                        .with("since", Param::Time(seen))
                        .int("minutes", now.since(seen).millis() / 60_000),
                );
                let mut tr = Trigger::new(TriggerKind::Absence, now);
                tr.device = Some(d);
                tr.window = Some(after);
                self.unit_up(&set, r, dev_unit(d), site, Some(d), now, ev, tr, out);
            }
        }
        // Rates that fell below their count.
        let mut down = Vec::new();
        self.rate.retain(|&(r, unit), st| {
            if let Body::Rate { count, window, .. } = &set.rule(r).body {
                let horizon = now.minus(*window);
                while st.times.front().is_some_and(|x| *x < horizon) {
                    st.times.pop_front();
                }
                if st.fired && st.times.len() < *count as usize {
                    st.fired = false;
                    down.push((r, unit));
                }
            }
            st.fired || !st.times.is_empty()
        });
        down.sort_unstable();
        for (r, unit) in down {
            let ev = Some(Message::new("rule.rate_cleared"));
            self.unit_down(&set, r, unit, now, ev, out);
        }
        // Correlations whose window has passed.
        let mut expired = Vec::new();
        for (&(r, s), st) in &self.corr {
            if let Body::Correlation { window, .. } = &set.rule(r).body {
                let horizon = now.minus(*window);
                let any_recent = st.last_true.iter().any(|x| x.is_some_and(|x| x >= horizon));
                let all_recent = st.last_true.iter().all(|x| x.is_some_and(|x| x >= horizon));
                if (st.fired && !all_recent) || (!st.fired && !any_recent) {
                    expired.push((r, s, st.fired, st.opened_at_site.unwrap_or(s)));
                }
            }
        }
        expired.sort_unstable_by_key(|(r, s, _, _)| (*r, *s));
        for (r, s, fired, opened) in expired {
            if let Body::Correlation {
                window,
                scope,
                conds,
                ..
            } = &set.rule(r).body
                && fired
                && matches!(scope, Scope::RadiusM(_))
            {
                let (w, sc, n) = (*window, scope.clone(), conds.len());
                if self.correlated(&set, r, s, now, w, &sc, n) {
                    continue;
                }
            }
            self.corr.remove(&(r, s));
            if fired {
                self.unit_down(
                    &set,
                    r,
                    site_unit(opened),
                    now,
                    Some(Message::new("rule.correlation_passed")),
                    out,
                );
            }
        }
        // Escalations.
        let mut esc = Vec::new();
        for (&(r, key), ks) in &mut self.keys {
            let rule = set.rule(r);
            while let Some((after, sev)) = rule.escalate.get(ks.level) {
                if now.since(ks.raised_at) < *after {
                    break;
                }
                ks.level += 1;
                esc.push((r, key, *after, *sev, ks.site, ks.device));
            }
        }
        esc.sort_unstable_by_key(|e| (e.0, e.1, e.2));
        for (r, _, after, sev, site, device) in esc {
            let rule = set.rule(r);
            let mut a = self.alarm(rule, AlarmKind::Escalate, site, device, now);
            a.severity = sev;
            let ev = Message::new("rule.condition_active").int("minutes", after.millis() / 60_000);
            a.evidence = ev.english();
            a.evidence_message = Some(ev);
            out.push(a);
        }
    }

    fn evidence(
        &self,
        cond: &Condition,
        d: DeviceIdx,
        v: &Value,
        sustained: Option<Duration>,
    ) -> Message {
        let m = match sustained {
            Some(s) => Message::new("rule.reading_sustained").int("minutes", s.millis() / 60_000),
            None => Message::new("rule.reading"),
        };
        m.device("device", &self.territory.device(d).id)
            .with("field", field_param(cond))
            .with("value", self.value_param(d, cond.field, v))
            .with("op", op_param(&cond.op))
    }

    /// A reading as a message parameter: a number with its field's unit, a people count as
    /// it may be shown, a yes/no, a text.
    fn value_param(&self, d: DeviceIdx, field: FieldIdx, v: &Value) -> Param {
        let unit = self
            .territory
            .kind_of(d)
            .fields
            .get(field.get())
            .and_then(|f| f.unit.clone());
        match v {
            Value::Number(_) => number_or_text(&self.shown(d, field, v), unit),
            Value::Bool(b) => bool_param(*b),
            other => Param::Text(SafeText::redacting(&other.to_string())),
        }
    }

    fn key_of(rule: &Rule, site: SiteIdx, device: Option<DeviceIdx>) -> Unit {
        match (rule.key, device) {
            (KeyBy::Device, Some(d)) => dev_unit(d),
            _ => site_unit(site),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn unit_up(
        &mut self,
        set: &RuleSet,
        r: RuleIdx,
        unit: Unit,
        site: SiteIdx,
        device: Option<DeviceIdx>,
        at: Timestamp,
        evidence: Option<Message>,
        trigger: Trigger,
        out: &mut Vec<Alarm>,
    ) {
        let rule = set.rule(r);
        let key = Self::key_of(rule, site, device);
        let ks = self.keys.entry((r, key)).or_insert_with(|| KeyState {
            units: Vec::new(),
            raised_at: at,
            level: 0,
            site,
            device: if rule.key == KeyBy::Device {
                device
            } else {
                None
            },
        });
        let first = ks.units.is_empty();
        if !ks.units.contains(&unit) {
            ks.units.push(unit);
        }
        if first {
            ks.raised_at = at;
            ks.level = 0;
            let dev = ks.device.or(device);
            let mut a = self.alarm(rule, AlarmKind::Raise, site, dev, at);
            // A title's `{value}` stays a token: the incident renders it from its current
            // value when read (`Incident::title_now`), so it never freezes the opening value.
            // Without a numeric value to follow (a suppressed people count, a boolean) it
            // is rendered now, as it may be shown.
            if a.title.contains("{value}") && trigger.value.is_none() {
                let value = device
                    .and_then(|d| self.last_value.get(&d))
                    .cloned()
                    .unwrap_or_default();
                a.title = SafeText::redacting(&a.title.replace("{value}", &value));
            }
            a.evidence = evidence.as_ref().map(Message::english).unwrap_or_default();
            a.evidence_message = evidence;
            a.trigger = Some(trigger);
            out.push(a);
        }
    }

    fn unit_down(
        &mut self,
        set: &RuleSet,
        r: RuleIdx,
        unit: Unit,
        at: Timestamp,
        evidence: Option<Message>,
        out: &mut Vec<Alarm>,
    ) {
        let rule = set.rule(r);
        let key = self
            .keys
            .iter()
            .find(|((kr, _), ks)| *kr == r && ks.units.contains(&unit))
            .map(|(k, _)| *k);
        let key = match key {
            Some(k) => k,
            None => return,
        };
        let Some(ks) = self.keys.get_mut(&key) else {
            return;
        };
        ks.units.retain(|u| *u != unit);
        if ks.units.is_empty() {
            let (site, device) = (ks.site, ks.device);
            self.keys.remove(&key);
            let mut a = self.alarm(rule, AlarmKind::Clear, site, device, at);
            a.evidence = evidence.as_ref().map(Message::english).unwrap_or_default();
            a.evidence_message = evidence;
            out.push(a);
        }
    }

    fn alarm_in(
        &self,
        set: &RuleSet,
        r: RuleIdx,
        kind: AlarmKind,
        site: SiteIdx,
        device: Option<DeviceIdx>,
        at: Timestamp,
    ) -> Alarm {
        self.alarm(set.rule(r), kind, site, device, at)
    }

    fn alarm(
        &self,
        rule: &Rule,
        kind: AlarmKind,
        site: SiteIdx,
        device: Option<DeviceIdx>,
        at: Timestamp,
    ) -> Alarm {
        let t = &self.territory;
        let s = t.site(site);
        let key = match (rule.key, device) {
            (KeyBy::Device, Some(d)) => DedupKey::for_device(&rule.id, &t.device(d).id),
            _ => DedupKey::for_site(&rule.id, &s.id),
        };
        let title = rule
            .title
            .replace("{site}", &s.name)
            .replace("{commune}", &t.commune(s.commune).name)
            .replace("{device}", device.map(|d| &*t.device(d).id).unwrap_or(""));
        Alarm {
            kind,
            key,
            rule: rule.id.clone(),
            category: rule.category.clone(),
            severity: rule.severity,
            title: SafeText::redacting(&title),
            site,
            device,
            at,
            evidence: SafeText::default(),
            auto_resolve: rule.auto_resolve,
            silence: matches!(rule.body, Body::Absence { .. }),
            carries: Vec::new(),
            evidence_message: None,
            trigger: None,
        }
    }

    /// The trigger of a reading `v` of `d` against `cond` at `t`: the value as it may be
    /// shown (a suppressed people count or a non-number is `None`).
    fn trigger_of(
        &self,
        kind: TriggerKind,
        cond: &Condition,
        d: DeviceIdx,
        v: &Value,
        t: Timestamp,
    ) -> Trigger {
        use crate::model::Op;
        use beffroi_core::TriggerOp;
        let people = self
            .territory
            .kind_of(d)
            .fields
            .get(cond.field.get())
            .is_some_and(|f| f.people_count);
        let mut tr = Trigger::new(kind, t);
        tr.device = Some(d);
        tr.field = Some(cond.field_name.clone());
        tr.value = match v {
            Value::Number(n) if people => self.aggregates.shown(*n),
            Value::Number(n) => Some(*n),
            _ => None,
        };
        let num = |v: &Value| match v {
            Value::Number(n) => Some(*n),
            _ => None,
        };
        (tr.op, tr.threshold, tr.threshold_high) = match &cond.op {
            Op::Above(x) => (Some(TriggerOp::Above), Some(*x), None),
            Op::Below(x) => (Some(TriggerOp::Below), Some(*x), None),
            Op::Between(a, b) => (Some(TriggerOp::Between), Some(*a), Some(*b)),
            Op::Outside(a, b) => (Some(TriggerOp::Outside), Some(*a), Some(*b)),
            Op::Equals(x) => (Some(TriggerOp::Equals), num(x), None),
            Op::NotEquals(x) => (Some(TriggerOp::NotEquals), num(x), None),
        };
        tr
    }
}

/// A rule's field name as a message parameter.
fn field_param(cond: &Condition) -> Param {
    Param::Text(SafeText::redacting(&cond.field_name))
}

/// A comparison of a rule as a message (`> 3`, `in [1, 2]`).
fn op_param(op: &crate::model::Op) -> Param {
    use crate::model::Op;
    let num = |x: f64| Param::Number {
        value: x,
        unit: None,
    };
    let value = |v: &Value| match v {
        Value::Number(n) => num(*n),
        Value::Bool(b) => bool_param(*b),
        other => Param::Text(SafeText::redacting(&other.to_string())),
    };
    let m = match op {
        Op::Above(x) => Message::new("rule.op.above").with("x", num(*x)),
        Op::Below(x) => Message::new("rule.op.below").with("x", num(*x)),
        Op::Equals(v) => Message::new("rule.op.equals").with("x", value(v)),
        Op::NotEquals(v) => Message::new("rule.op.not_equals").with("x", value(v)),
        Op::Between(a, b) => Message::new("rule.op.between")
            .with("a", num(*a))
            .with("b", num(*b)),
        Op::Outside(a, b) => Message::new("rule.op.outside")
            .with("a", num(*a))
            .with("b", num(*b)),
    };
    Param::Message(Box::new(m))
}

fn bool_param(b: bool) -> Param {
    Param::Enum {
        of: "bool",
        id: if b { "true" } else { "false" }.into(),
    }
}

/// A value as shown (`12`, `< 10` for a withheld people count): a number when it is one.
fn number_or_text(shown: &str, unit: Option<Arc<str>>) -> Param {
    match shown.parse::<f64>() {
        Ok(value) if value.is_finite() => Param::Number { value, unit },
        _ => Param::Text(SafeText::redacting(shown)),
    }
}
