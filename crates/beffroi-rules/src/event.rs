//! The rules an event puts in force during its window: its temporary rules (the rule
//! language, scoped to the sites inside the perimeter) and its capacity rule (an
//! [`Body::Aggregate`] over the people counters inside the perimeter).
//!
//! A people counter is a numeric field whose unit is `people` (see `kinds.toml`) on a
//! device positioned inside the perimeter. Only aggregate counts are used: the rule sums
//! the counters' latest values, nothing identifies anybody.

use std::sync::Arc;

use beffroi_core::event::{self, Event};
use beffroi_core::geo::ring_centre;
use beffroi_core::{DeviceIdx, FieldIdx, FieldType, Severity, SiteIdx, Territory};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile};

use crate::model::{Body, KeyBy, Rule};

/// The unit that marks a field as a people count.
pub const PEOPLE_UNIT: &str = "people";
/// Suffix of the capacity rule's id: `{event}/capacity`.
pub const CAPACITY_RULE: &str = "capacity";

/// An event compiled against a territory.
#[derive(Clone, Debug)]
pub struct EventRules {
    pub event: Arc<Event>,
    /// The people counters inside the perimeter: (device, field).
    pub counters: Arc<[(DeviceIdx, FieldIdx)]>,
    /// Sites whose position is inside the perimeter.
    pub sites: Vec<SiteIdx>,
    /// Temporary rules then the capacity rule, ids prefixed with `{event}/`.
    pub rules: Vec<Rule>,
    /// Id of the capacity rule, when the event has capacity thresholds and counters.
    pub capacity_rule: Option<Arc<str>>,
}

/// The id every rule of an event carries: `{event}/{rule}`. Base rule ids cannot contain
/// `/`, so they never collide.
pub fn event_rule_id(event: &str, rule: &str) -> String {
    format!("{event}/{rule}")
}

/// Validates an event and compiles its rules. `file` names where it was declared and
/// `rules_line` is the line of that file on which the rules text starts (0 when the text
/// is on its own, as in an API request); errors in the rules are reported at their line.
pub fn compile_event(
    event: Event,
    t: &Territory,
    file: &str,
    line: Option<usize>,
    rules_line: usize,
) -> Result<EventRules, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    if let Err(e) = event::validate(&event) {
        errors.push(ConfigError::new(
            file,
            line,
            Some(e.field),
            format!("event `{}`: {}", event.id, e.message),
        ));
        return Err(errors);
    }
    let mask: Vec<bool> = t.sites.iter().map(|s| event.contains(s.position)).collect();
    let sites: Vec<SiteIdx> = mask
        .iter()
        .enumerate()
        .filter(|(_, b)| **b)
        .map(|(i, _)| SiteIdx(i as u32))
        .collect();
    let mut counters = Vec::new();
    for (i, d) in t.devices.iter().enumerate() {
        if !event.contains(d.position) {
            continue;
        }
        for (fi, f) in t.kind(d.kind).fields.iter().enumerate() {
            if f.ty == FieldType::Number && f.unit.as_deref() == Some(PEOPLE_UNIT) {
                counters.push((DeviceIdx(i as u32), FieldIdx(fi as u16)));
            }
        }
    }
    let mut rules = Vec::new();
    if !event.rules.trim().is_empty() {
        let src = SourceFile::new(file, event.rules.to_string());
        match crate::compile::parse_from(&src, t, crate::compile::Origin::Event) {
            Ok(set) => {
                let mask: Arc<[bool]> = mask.clone().into();
                for mut r in set.rules {
                    let at = rules_line + r.line;
                    if &*r.id == CAPACITY_RULE {
                        errors.push(ConfigError::new(
                            file,
                            Some(at),
                            Some("id"),
                            format!("event `{}`: the rule id `capacity` is reserved", event.id),
                        ));
                        continue;
                    }
                    r.sites = Some(match &r.sites {
                        Some(s) => s.iter().zip(mask.iter()).map(|(a, b)| *a && *b).collect(),
                        None => Arc::clone(&mask),
                    });
                    if let Some(devs) = &r.devices {
                        let inside: Vec<DeviceIdx> = devs
                            .iter()
                            .copied()
                            .filter(|d| mask[t.device(*d).site.get()])
                            .collect();
                        if inside.is_empty() {
                            errors.push(ConfigError::new(
                                file,
                                Some(at),
                                Some("devices"),
                                format!(
                                    "event `{}`, rule `{}`: no listed device is at a site inside the perimeter",
                                    event.id, r.id
                                ),
                            ));
                            continue;
                        }
                        r.devices = Some(inside.into());
                    }
                    r.id = event_rule_id(&event.id, &r.id).into();
                    r.line = at;
                    rules.push(r);
                }
            }
            Err(es) => {
                for e in es.iter() {
                    errors.push(ConfigError::new(
                        file,
                        e.line.map(|l| rules_line + l).or(line),
                        e.field.as_deref(),
                        format!("event `{}`, rules: {}", event.id, e.message),
                    ));
                }
            }
        }
    }
    let mut capacity_rule = None;
    if let (Some(cap), false) = (event.capacity, counters.is_empty()) {
        let centre = ring_centre(&event.perimeter).unwrap_or_default();
        // The incident sits at the counters' site nearest the perimeter's centre.
        let site = counters
            .iter()
            .map(|(d, _)| t.device(*d).site)
            .min_by(|a, b| {
                let da = t.site(*a).position.distance_m(&centre);
                let db = t.site(*b).position.distance_m(&centre);
                da.total_cmp(&db).then(a.cmp(b))
            })
            .unwrap_or(SiteIdx(0));
        let id: Arc<str> = event_rule_id(&event.id, CAPACITY_RULE).into();
        capacity_rule = Some(Arc::clone(&id));
        rules.push(Rule {
            id,
            title: format!("Jauge {} — {{value}} personnes", event.name).into(),
            category: "crowd".into(),
            severity: Severity::Major,
            key: KeyBy::Site,
            auto_resolve: true,
            body: Body::Aggregate {
                inputs: counters.clone().into(),
                warning: cap.warning,
                critical: cap.critical,
                hysteresis: (cap.warning * 0.05).max(1.0),
                site,
            },
            escalate: Vec::new(),
            sites: None,
            devices: None,
            line: line.unwrap_or(0),
        });
    }
    errors.into_result(EventRules {
        event: Arc::new(event),
        counters: counters.into(),
        sites,
        rules,
        capacity_rule,
    })
}
