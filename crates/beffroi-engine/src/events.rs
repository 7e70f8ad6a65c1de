//! Event mode in the engine: the `events.toml` deployment file and the [`EventBook`], which
//! knows the declared events, decides from the engine's clock which are in force, keeps
//! the latest value of their people counters (aggregate counts only) and gives the
//! evaluator the effective rule set: the base rules plus the rules of the events in force.

use std::sync::Arc;

use beffroi_core::event::Capacity;
use beffroi_core::{
    DeviceIdx, Event, EventOrigin, EventStatus, FieldIdx, Observation, Territory, Timestamp, Value,
};
use beffroi_rules::{EventRules, RuleSet};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile, parse_duration};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use toml::Spanned;

/// What the API and the live stream show of an event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventView {
    pub event: Arc<Event>,
    pub status: EventStatus,
    /// Sum of the latest values of the perimeter's people counters; `None` without counter,
    /// below the minimum group size, or when it would give back a count withheld on its
    /// own (`Aggregates::total_shown`).
    pub occupancy: Option<f64>,
    /// The counters reported but their sum is below the minimum group size: withheld so
    /// that the figure can never point at a handful of identifiable people.
    pub suppressed: bool,
    pub counters: usize,
    /// Ids of the rules the event puts in force during its window.
    pub rule_ids: Vec<Arc<str>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("event `{0}` already exists")]
    Exists(String),
    #[error("no event `{0}`")]
    NotFound(String),
    #[error("event `{0}` is already cancelled or over")]
    Closed(String),
    #[error("the change could not be stored: {0}")]
    Store(String),
    #[error("the engine is shutting down")]
    EngineClosed,
}

/// A capacity rule and its counters' latest values `(device, field, time, value)`.
pub type CapacitySeed = (Arc<str>, Vec<(DeviceIdx, FieldIdx, Timestamp, f64)>);

/// The declared events of a partition and the counters they watch.
#[derive(Default)]
pub struct EventBook {
    events: Vec<EventRules>,
    /// Latest value of each counter of any event, with its event time.
    latest: FxHashMap<(DeviceIdx, FieldIdx), (Timestamp, f64)>,
    /// Events fed by a counter (index into `events`).
    by_counter: FxHashMap<(DeviceIdx, FieldIdx), Vec<usize>>,
    /// Minimum group size of the occupancy figures.
    aggregates: beffroi_core::privacy::Aggregates,
    /// Ids of the events in force at the last refresh, sorted.
    in_force: Vec<Arc<str>>,
    /// Events whose view changed since the last `take_changed`.
    changed: Vec<usize>,
    last_status: Vec<EventStatus>,
}

impl EventBook {
    pub fn events(&self) -> &[EventRules] {
        &self.events
    }

    pub fn get(&self, id: &str) -> Option<&EventRules> {
        self.events.iter().find(|e| &*e.event.id == id)
    }

    /// Adds or replaces an event (same id).
    pub fn upsert(&mut self, e: EventRules, now: Timestamp) {
        let status = e.event.status(now);
        match self.events.iter().position(|x| x.event.id == e.event.id) {
            Some(i) => {
                self.events[i] = e;
                self.last_status[i] = status;
                self.changed.push(i);
            }
            None => {
                self.events.push(e);
                self.last_status.push(status);
                self.changed.push(self.events.len() - 1);
            }
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        self.by_counter.clear();
        for (i, e) in self.events.iter().enumerate() {
            for c in e.counters.iter() {
                self.by_counter.entry(*c).or_default().push(i);
            }
        }
        self.latest.retain(|k, _| self.by_counter.contains_key(k));
    }

    /// Records a counter's value; returns whether any event watches it.
    pub fn observe(&mut self, o: &Observation) -> bool {
        let Value::Number(v) = o.value else {
            return false;
        };
        let Some(evs) = self.by_counter.get(&(o.device, o.field)) else {
            return false;
        };
        match self.latest.get(&(o.device, o.field)) {
            Some((t, _)) if *t > o.time => return true,
            _ => {}
        }
        self.latest.insert((o.device, o.field), (o.time, v));
        self.changed.extend(evs.iter().copied());
        true
    }

    /// The latest known values of an event's counters.
    pub fn counter_values(&self, e: &EventRules) -> Vec<(DeviceIdx, FieldIdx, Timestamp, f64)> {
        e.counters
            .iter()
            .filter_map(|c| self.latest.get(c).map(|(t, v)| (c.0, c.1, *t, *v)))
            .collect()
    }

    pub fn view(&self, e: &EventRules, now: Timestamp) -> EventView {
        let values = self.counter_values(e);
        let counts: Vec<f64> = values.iter().map(|x| x.3).collect();
        // Complementary suppression: the occupancy minus the counters shown on their own
        // never gives back a count they withhold.
        let occupancy = self.aggregates.total_shown(&counts);
        EventView {
            event: Arc::clone(&e.event),
            status: e.event.status(now),
            // People are counted in whole units; counters' noise is not.
            occupancy: occupancy.map(f64::round),
            suppressed: !values.is_empty() && occupancy.is_none(),
            counters: e.counters.len(),
            rule_ids: e.rules.iter().map(|r| Arc::clone(&r.id)).collect(),
        }
    }

    /// Sets the minimum group size of the occupancy figures.
    pub fn set_aggregates(&mut self, a: beffroi_core::privacy::Aggregates) {
        self.aggregates = a;
    }

    pub fn views(&self, now: Timestamp) -> Vec<EventView> {
        self.events.iter().map(|e| self.view(e, now)).collect()
    }

    /// Events whose status changed at `now`, added to the changed list.
    fn note_status(&mut self, now: Timestamp) {
        for (i, e) in self.events.iter().enumerate() {
            let s = e.event.status(now);
            if self.last_status[i] != s {
                self.last_status[i] = s;
                self.changed.push(i);
            }
        }
    }

    /// Views of the events that changed since the last call.
    pub fn take_changed(&mut self, now: Timestamp) -> Vec<EventView> {
        self.note_status(now);
        let mut ids = std::mem::take(&mut self.changed);
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|i| self.events.get(i))
            .map(|e| self.view(e, now))
            .collect()
    }

    /// Whether the set of events in force differs from the last [`EventBook::effective`].
    pub fn in_force_changed(&self, now: Timestamp) -> bool {
        self.ids_in_force(now) != self.in_force
    }

    fn ids_in_force(&self, now: Timestamp) -> Vec<Arc<str>> {
        let mut ids: Vec<Arc<str>> = self
            .events
            .iter()
            .filter(|e| e.event.status(now) == EventStatus::Active)
            .map(|e| Arc::clone(&e.event.id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The base rules plus the rules of every event in force at `now`, and the capacity
    /// rules to seed with their counters' latest values.
    pub fn effective(
        &mut self,
        base: &RuleSet,
        territory: &Territory,
        now: Timestamp,
    ) -> (RuleSet, Vec<CapacitySeed>) {
        self.in_force = self.ids_in_force(now);
        let mut rules = base.rules.clone();
        let mut seeds = Vec::new();
        for e in &self.events {
            if e.event.status(now) != EventStatus::Active {
                continue;
            }
            rules.extend(e.rules.iter().cloned());
            if let Some(id) = &e.capacity_rule {
                seeds.push((Arc::clone(id), self.counter_values(e)));
            }
        }
        (RuleSet::from_rules(rules, territory), seeds)
    }
}

// ---------------------------------------------------------------------------------------
// events.toml

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    event: Vec<Spanned<RawEvent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: String,
    name: String,
    perimeter: Vec<[f64; 2]>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    capacity: Option<RawCapacity>,
    #[serde(default)]
    rules: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    warning: f64,
    critical: f64,
}

/// A time of `events.toml`: RFC 3339, or `+DURATION` after `start` (the moment the
/// deployment is loaded — for exercises and the demo).
fn parse_time(s: &str, start: Timestamp) -> Result<Timestamp, String> {
    if let Some(rel) = s.strip_prefix('+') {
        return parse_duration(rel).map(|d| start.plus(d));
    }
    beffroi_wire::parse_rfc3339(s)
        .ok_or_else(|| format!("`{s}` is neither an RFC 3339 time nor `+DURATION`"))
}

/// Parses and validates `events.toml` against a territory, compiling each event's rules.
/// `start` resolves relative times (`"+30m"`). Every error is reported with its line.
pub fn parse(
    src: &SourceFile,
    territory: &Territory,
    start: Timestamp,
) -> Result<Vec<EventRules>, ConfigErrors> {
    let file: File = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut out: Vec<EventRules> = Vec::new();
    for raw in &file.event {
        let line = src.line(raw.span().start);
        let raw = raw.get_ref();
        let err = |field: &str, msg: String| {
            ConfigError::new(
                src.path.clone(),
                Some(line),
                Some(field),
                format!("event `{}`: {msg}", raw.id),
            )
        };
        if out.iter().any(|e| *e.event.id == *raw.id) {
            errors.push(err("id", "duplicate event id".into()));
            continue;
        }
        let starts =
            parse_time(&raw.starts_at, start).map_err(|m| errors.push(err("starts_at", m)));
        let ends = parse_time(&raw.ends_at, start).map_err(|m| errors.push(err("ends_at", m)));
        let (Ok(starts_at), Ok(ends_at)) = (starts, ends) else {
            continue;
        };
        let (rules, rules_line) = match &raw.rules {
            Some(r) => (r.get_ref().as_str(), src.line(r.span().start)),
            None => ("", 0),
        };
        let event = Event {
            id: raw.id.as_str().into(),
            name: raw.name.as_str().into(),
            perimeter: raw
                .perimeter
                .iter()
                .map(|[lon, lat]| beffroi_core::Point::new(*lon, *lat))
                .collect(),
            starts_at,
            ends_at,
            capacity: raw.capacity.as_ref().map(|c| Capacity {
                warning: c.warning,
                critical: c.critical,
            }),
            rules: rules.into(),
            origin: EventOrigin::File,
            created_by: "events.toml".into(),
            cancelled_at: None,
            cancelled_by: None,
        };
        match beffroi_rules::compile_event(event, territory, &src.path, Some(line), rules_line) {
            Ok(e) => out.push(e),
            Err(es) => errors.extend(es),
        }
    }
    errors.into_result(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::territory::fixture;

    /// An event's occupancy minus the counters shown on their own never gives back a
    /// count they withhold: 250 + 4 is withheld (254 − 250 = 4), 250 + 6 + 7 is shown.
    #[test]
    fn occupancy_is_withheld_when_it_would_reveal_a_withheld_counter() {
        let t = fixture::small();
        let (g1, g2, a1) = (DeviceIdx(0), DeviceIdx(1), DeviceIdx(2));
        let f = FieldIdx(0);
        let event = Event {
            id: "concert".into(),
            name: "Concert".into(),
            perimeter: Vec::new(),
            starts_at: Timestamp(0),
            ends_at: Timestamp(3_600_000),
            capacity: None,
            rules: "".into(),
            origin: EventOrigin::File,
            created_by: "test".into(),
            cancelled_at: None,
            cancelled_by: None,
        };
        let rules = EventRules {
            event: Arc::new(event),
            counters: vec![(g1, f), (g2, f), (a1, f)].into(),
            sites: Vec::new(),
            rules: Vec::new(),
            capacity_rule: None,
        };
        let mut book = EventBook::default();
        book.upsert(rules, Timestamp(0));
        let at = |d: DeviceIdx, v: f64, s: i64| Observation {
            device: d,
            field: f,
            value: Value::Number(v),
            time: Timestamp(s * 1000),
            trust: beffroi_core::Trust::Unauthenticated,
        };
        let occupancy = |book: &EventBook| {
            let v = book.view(&book.events()[0], Timestamp(10_000));
            (v.occupancy, v.suppressed)
        };
        assert!(t.device(g1).id.starts_with('g'));
        book.observe(&at(g1, 250.0, 1));
        assert_eq!(occupancy(&book), (Some(250.0), false));
        book.observe(&at(g2, 4.0, 2));
        assert_eq!(occupancy(&book), (None, true), "254 - 250 would give 4");
        book.observe(&at(g2, 6.0, 3));
        book.observe(&at(a1, 7.0, 3));
        assert_eq!(occupancy(&book), (Some(263.0), false), "6 + 7 >= 10");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let t = fixture::small();
        let text = r#"
[[event]]
id = "ok"
name = "Fine"
perimeter = [[0, 0], [1, 0], [1, 1]]
starts_at = "+1h"
ends_at = "+2h"

[[event]]
id = "late"
name = "Ends before it starts"
perimeter = [[0, 0], [1, 0], [1, 1]]
starts_at = "2025-06-21T20:00:00+02:00"
ends_at = "2025-06-21T18:00:00+02:00"

[[event]]
id = "when"
name = "Bad time"
perimeter = [[0, 0], [1, 0], [1, 1]]
starts_at = "tomorrow"
ends_at = "+2h"
"#;
        let e = parse(&SourceFile::new("events.toml", text), &t, Timestamp(0))
            .expect_err("two bad events");
        let v: Vec<_> = e.iter().map(|e| (e.line, e.field.clone())).collect();
        assert_eq!(
            v,
            vec![
                (Some(9), Some("ends_at".to_string())),
                (Some(16), Some("starts_at".to_string())),
            ]
        );
        let ok = parse(
            &SourceFile::new(
                "events.toml",
                text.split("\n[[event]]\nid = \"late\"")
                    .next()
                    .unwrap_or(""),
            ),
            &t,
            Timestamp(0),
        )
        .expect("valid");
        assert_eq!(ok[0].event.starts_at, Timestamp(3_600_000));
    }
}
