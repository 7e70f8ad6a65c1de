use std::sync::Arc;

use beffroi_core::{Duration, FieldIdx, KindIdx, Severity, SiteIdx, Value};
use rustc_hash::FxHashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleIdx(pub u32);

/// One incident per rule × site, or per rule × device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyBy {
    Site,
    Device,
}

/// A typed comparison. Numbers only compare with numbers, booleans with booleans.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Above(f64),
    Below(f64),
    Equals(Value),
    NotEquals(Value),
    Between(f64, f64),
    Outside(f64, f64),
}

impl Op {
    pub fn eval(&self, v: &Value) -> bool {
        match (self, v) {
            (Op::Above(x), Value::Number(n)) => n > x,
            (Op::Below(x), Value::Number(n)) => n < x,
            (Op::Between(a, b), Value::Number(n)) => a <= n && n <= b,
            (Op::Outside(a, b), Value::Number(n)) => n < a || n > b,
            (Op::Equals(x), v) => x == v,
            (Op::NotEquals(x), v) => x != v,
            _ => false,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Op::Above(x) => format!("> {x}"),
            Op::Below(x) => format!("< {x}"),
            Op::Equals(x) => format!("= {x}"),
            Op::NotEquals(x) => format!("≠ {x}"),
            Op::Between(a, b) => format!("in [{a}, {b}]"),
            Op::Outside(a, b) => format!("outside [{a}, {b}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub kind: KindIdx,
    pub field: FieldIdx,
    pub field_name: Arc<str>,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    Site,
    RadiusM(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Threshold {
        cond: Condition,
        sustained: Option<Duration>,
    },
    Absence {
        kind: KindIdx,
        after: Duration,
    },
    Rate {
        cond: Condition,
        count: u32,
        window: Duration,
        per: KeyBy,
    },
    Correlation {
        conds: Vec<Condition>,
        window: Duration,
        scope: Scope,
        /// With a radius: the condition whose site the incident opens at (the river reach
        /// of a rain-and-river correlation, not the rain gauge's town hall). `None`: the
        /// site of the reading that completed the correlation.
        open_at: Option<usize>,
    },
    /// The sum of the latest value of each input (device, numeric field) compared with a
    /// warning and a critical threshold: raises at the rule's severity when the sum reaches
    /// `warning` (at critical directly when it reaches `critical`), escalates to critical
    /// when it reaches `critical`, clears when it falls below `warning - hysteresis`.
    /// Alarms are keyed by `site` (one incident per rule). Event capacity uses it.
    Aggregate {
        inputs: Arc<[(beffroi_core::DeviceIdx, FieldIdx)]>,
        warning: f64,
        critical: f64,
        hysteresis: f64,
        site: SiteIdx,
    },
}

impl Body {
    pub fn type_name(&self) -> &'static str {
        match self {
            Body::Threshold { .. } => "threshold",
            Body::Absence { .. } => "absence",
            Body::Rate { .. } => "rate",
            Body::Correlation { .. } => "correlation",
            Body::Aggregate { .. } => "aggregate",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub id: Arc<str>,
    pub title: Arc<str>,
    pub category: Arc<str>,
    pub severity: Severity,
    pub key: KeyBy,
    pub auto_resolve: bool,
    pub body: Body,
    /// `(after, severity)` in increasing order of `after`.
    pub escalate: Vec<(Duration, Severity)>,
    /// Sites the rule applies to; `None` means every site.
    pub sites: Option<Arc<[bool]>>,
    /// Devices the rule is restricted to, if the rule lists devices.
    pub devices: Option<Arc<[beffroi_core::DeviceIdx]>>,
    /// 1-based line of the rule in its file.
    pub line: usize,
}

impl Rule {
    /// The device kinds whose readings this rule reads.
    pub fn kinds(&self) -> Vec<KindIdx> {
        match &self.body {
            Body::Threshold { cond, .. } | Body::Rate { cond, .. } => vec![cond.kind],
            Body::Absence { kind, .. } => vec![*kind],
            Body::Correlation { conds, .. } => conds.iter().map(|c| c.kind).collect(),
            Body::Aggregate { .. } => Vec::new(),
        }
    }

    /// Whether this rule reads readings of `kind` ([`Rule::kinds`] without a list).
    pub fn reads_kind(&self, kind: KindIdx) -> bool {
        match &self.body {
            Body::Threshold { cond, .. } | Body::Rate { cond, .. } => cond.kind == kind,
            Body::Absence { kind: k, .. } => *k == kind,
            Body::Correlation { conds, .. } => conds.iter().any(|c| c.kind == kind),
            Body::Aggregate { .. } => false,
        }
    }

    /// Whether readings of device `d` (of `kind`, at `site`) can feed this rule.
    pub fn watches(&self, d: beffroi_core::DeviceIdx, kind: KindIdx, site: SiteIdx) -> bool {
        if let Body::Aggregate { inputs, .. } = &self.body {
            return inputs.iter().any(|(x, _)| *x == d);
        }
        self.devices.as_ref().is_none_or(|ds| ds.contains(&d))
            && self.site_allowed(site)
            && self.reads_kind(kind)
    }

    pub fn site_allowed(&self, s: SiteIdx) -> bool {
        self.sites
            .as_ref()
            .is_none_or(|v| v.get(s.get()).copied().unwrap_or(false))
    }
}

/// Which rule and condition an observation of a (kind, field) feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub rule: RuleIdx,
    pub cond: u16,
    /// The index already restricted this target to the rule's sites: no check needed.
    pub site_checked: bool,
}

/// Targets of one (kind, field), split so that scoped rules cost nothing elsewhere.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    pub global: Vec<Target>,
    pub by_site: FxHashMap<SiteIdx, Vec<Target>>,
    pub by_device: FxHashMap<beffroi_core::DeviceIdx, Vec<Target>>,
}

/// A validated, compiled, indexed set of rules.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// `index[kind][field]`.
    pub(crate) index: Vec<Vec<Bucket>>,
    pub(crate) absence: Vec<RuleIdx>,
}

impl RuleSet {
    /// Indexes already compiled rules (for instance base rules plus the rules of the
    /// events in force). Rule ids must be unique; the caller guarantees it.
    pub fn from_rules(rules: Vec<Rule>, territory: &beffroi_core::Territory) -> RuleSet {
        debug_assert!(
            {
                let mut ids: Vec<&str> = rules.iter().map(|r| &*r.id).collect();
                ids.sort_unstable();
                ids.windows(2).all(|w| w[0] != w[1])
            },
            "duplicate rule ids"
        );
        crate::compile::index(rules, territory)
    }
    pub fn len(&self) -> usize {
        self.rules.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
    pub fn rule(&self, r: RuleIdx) -> &Rule {
        &self.rules[r.0 as usize]
    }
    pub fn by_id(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.id == id)
    }
    pub(crate) fn bucket(&self, kind: KindIdx, field: FieldIdx) -> Option<&Bucket> {
        self.index.get(kind.get()).and_then(|f| f.get(field.get()))
    }
}
