use std::collections::HashSet;

use beffroi_core::{Duration, FieldType, KindIdx, Severity, Territory, Value};
use beffroi_territory::{
    ConfigError, ConfigErrors, SourceFile, TomlDoc, parse_duration, suggestion,
};
use serde::Deserialize;
use toml::Spanned;

use crate::model::{Body, Bucket, Condition, KeyBy, Op, Rule, RuleIdx, RuleSet, Scope, Target};

struct File {
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    title: String,
    category: String,
    severity: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    auto_resolve: bool,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    communes: Vec<String>,
    #[serde(default)]
    site_kinds: Vec<String>,
    #[serde(default)]
    sites: Vec<String>,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(default)]
    threshold: Option<RawThreshold>,
    #[serde(default)]
    absence: Option<RawAbsence>,
    #[serde(default)]
    rate: Option<RawRate>,
    #[serde(default)]
    correlation: Option<RawCorrelation>,
    #[serde(default)]
    escalate: Vec<RawEscalate>,
    /// The DPO's approval of a rule that reads a personal or sensitive field: who approved
    /// it, when, under which reference. Without it such a rule is refused.
    #[serde(default)]
    dpo_approval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCond {
    #[serde(default)]
    kind: Option<String>,
    field: String,
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    equals: Option<toml::Value>,
    #[serde(default)]
    not_equals: Option<toml::Value>,
    #[serde(default)]
    between: Option<[f64; 2]>,
    #[serde(default)]
    outside: Option<[f64; 2]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreshold {
    #[serde(flatten)]
    cond: RawCond,
    #[serde(default, rename = "for")]
    sustained: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAbsence {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    #[serde(flatten)]
    cond: RawCond,
    count: u32,
    window: String,
    #[serde(default)]
    per: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorrelation {
    window: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    radius_m: Option<f64>,
    /// A device kind of one of the `when` conditions: the incident opens at that
    /// condition's site (radius scope only).
    #[serde(default)]
    open_at: Option<String>,
    when: Vec<RawCond>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalate {
    after: String,
    severity: String,
}

struct Cx<'a> {
    src: &'a SourceFile,
    /// Where the rule's table starts in its file.
    at: usize,
    rule: String,
    errors: &'a mut ConfigErrors,
    /// This rule may read personal or sensitive fields (a deployment rule with the DPO's
    /// approval; never an event's temporary rule, written through the API).
    personal_allowed: bool,
}

/// Where rules come from: the deployment's `rules.toml` (a DPO may approve a rule on a
/// personal field there) or an event's temporary rules (declared through the API: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Deployment,
    Event,
}

impl Cx<'_> {
    /// An error about `field` of the rule, at the field's own value.
    fn err(&mut self, field: &str, msg: impl std::fmt::Display) {
        self.errors.push(ConfigError::in_table(
            self.src,
            self.at,
            field,
            format!("rule `{}`: {msg}", self.rule),
        ));
    }
}

/// Parses, validates and compiles rules against a territory. Reports every error found.
pub fn parse(src: &SourceFile, territory: &Territory) -> Result<RuleSet, ConfigErrors> {
    parse_from(src, territory, Origin::Deployment)
}

/// [`parse`], for rules of the given origin.
pub fn parse_from(
    src: &SourceFile,
    territory: &Territory,
    origin: Origin,
) -> Result<RuleSet, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut doc = TomlDoc::parse(src, &mut errors);
    doc.only(&["rule"], &mut errors);
    let file = File {
        rule: doc.entries("rule", &mut errors),
    };
    let mut rules = Vec::new();
    let mut ids = HashSet::new();
    for raw in &file.rule {
        let at = raw.span().start;
        let line = src.line(at);
        let raw = raw.get_ref();
        let mut cx = Cx {
            src,
            at,
            rule: raw.id.clone(),
            errors: &mut errors,
            personal_allowed: origin == Origin::Deployment
                && raw
                    .dpo_approval
                    .as_deref()
                    .is_some_and(|a| a.trim().chars().count() >= 10),
        };
        if !ids.insert(raw.id.clone()) {
            cx.err("id", "duplicate rule id");
            continue;
        }
        if let Some(rule) = compile_rule(raw, territory, line, &mut cx) {
            rules.push(rule);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(index(rules, territory))
}

fn duration(cx: &mut Cx<'_>, field: &str, s: &str) -> Option<Duration> {
    match parse_duration(s) {
        Ok(d) if d.millis() > 0 => Some(d),
        Ok(_) => {
            cx.err(field, "must be longer than zero");
            None
        }
        Err(e) => {
            cx.err(field, e);
            None
        }
    }
}

fn compile_rule(raw: &RawRule, t: &Territory, line: usize, cx: &mut Cx<'_>) -> Option<Rule> {
    let before = cx.errors.len();
    if raw.id.is_empty()
        || !raw
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        cx.err("id", "ids use lowercase letters, digits, '-' and '_'");
    }
    if raw.title.trim().is_empty() {
        cx.err("title", "must not be empty");
    }
    // A rule that would detect biometric or emotional traits or categorise people
    // (AI Act art. 5, GDPR art. 9): refused like the same field in a kind.
    for (field, p) in [
        ("id", beffroi_territory::prohibited_name(&raw.id, false)),
        (
            "category",
            beffroi_territory::prohibited_name(&raw.category, false),
        ),
        ("title", beffroi_territory::prohibited_label(&raw.title)),
    ] {
        if let Some(p) = p {
            cx.err(field, p.reason());
        }
    }
    if raw.category.trim().is_empty() {
        cx.err("category", "must not be empty");
    }
    let severity = Severity::parse(&raw.severity).or_else(|| {
        cx.err(
            "severity",
            format!(
                "unknown severity `{}` (info, minor, major, critical)",
                raw.severity
            ),
        );
        None
    });
    let key = match raw.key.as_deref() {
        None | Some("device") => KeyBy::Device,
        Some("site") => KeyBy::Site,
        Some(other) => {
            cx.err("key", format!("unknown key `{other}` (site or device)"));
            KeyBy::Device
        }
    };
    let rule_kind = raw.kind.as_deref().and_then(|k| {
        t.kind_id(k).or_else(|| {
            let hint = suggestion(k, t.kinds.iter().map(|k| &*k.id));
            cx.err("kind", format!("unknown device kind `{k}`{hint}"));
            None
        })
    });

    let bodies = [
        raw.threshold.is_some(),
        raw.absence.is_some(),
        raw.rate.is_some(),
        raw.correlation.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if bodies != 1 {
        cx.err(
            "threshold",
            "a rule needs exactly one of `threshold`, `absence`, `rate`, `correlation`",
        );
        return None;
    }
    let need_kind = |cx: &mut Cx<'_>| {
        if raw.kind.is_none() {
            cx.err("kind", "this rule type needs `kind`");
        }
        rule_kind
    };
    let body = if let Some(th) = &raw.threshold {
        let kind = need_kind(cx);
        let cond = kind.and_then(|k| condition(cx, "threshold", &th.cond, k, t));
        let sustained = match &th.sustained {
            Some(s) => duration(cx, "threshold.for", s),
            None => None,
        };
        cond.map(|cond| Body::Threshold { cond, sustained })
    } else if let Some(ab) = &raw.absence {
        let kind = need_kind(cx);
        kind.and_then(|k| {
            let after = match &ab.after {
                Some(s) => duration(cx, "absence.after", s),
                None => match t.kind(k).heartbeat {
                    Some(h) => Some(Duration(h.millis() * 3)),
                    None => {
                        cx.err(
                            "absence.after",
                            "the kind declares no heartbeat: give `after`",
                        );
                        None
                    }
                },
            };
            after.map(|after| Body::Absence { kind: k, after })
        })
    } else if let Some(rt) = &raw.rate {
        let kind = need_kind(cx);
        let cond = kind.and_then(|k| condition(cx, "rate", &rt.cond, k, t));
        let window = duration(cx, "rate.window", &rt.window);
        let per = match rt.per.as_deref() {
            None | Some("device") => KeyBy::Device,
            Some("site") => KeyBy::Site,
            Some(o) => {
                cx.err("rate.per", format!("unknown `{o}` (device or site)"));
                KeyBy::Device
            }
        };
        if rt.count < 1 {
            cx.err("rate.count", "must be at least 1");
        }
        match (cond, window) {
            (Some(cond), Some(window)) => Some(Body::Rate {
                cond,
                count: rt.count.max(1),
                window,
                per,
            }),
            _ => None,
        }
    } else if let Some(co) = &raw.correlation {
        if raw.kind.is_some() {
            cx.err(
                "kind",
                "a correlation names a kind in each `when` condition, not at the rule level",
            );
        }
        if key == KeyBy::Device {
            cx.err(
                "key",
                "a correlation is keyed by site: write key = \"site\"",
            );
        }
        let window = duration(cx, "correlation.window", &co.window);
        let scope = match (co.scope.as_deref(), co.radius_m) {
            (None | Some("site"), None) => Some(Scope::Site),
            (None | Some("radius"), Some(r)) if r > 0.0 && r <= 100_000.0 => {
                Some(Scope::RadiusM(r))
            }
            (_, Some(_)) => {
                cx.err("correlation.radius_m", "must be in (0, 100000] metres");
                None
            }
            (Some(o), None) => {
                cx.err(
                    "correlation.scope",
                    format!("unknown `{o}` (site, or radius_m = …)"),
                );
                None
            }
        };
        if co.when.len() < 2 {
            cx.err(
                "correlation.when",
                "a correlation needs at least two conditions",
            );
        }
        if co.when.len() > 16 {
            cx.err("correlation.when", "at most 16 conditions");
        }
        let mut conds = Vec::new();
        for (i, w) in co.when.iter().enumerate() {
            let f = format!("correlation.when[{i}]");
            let Some(kname) = &w.kind else {
                cx.err(&f, "needs `kind`");
                continue;
            };
            let Some(k) = t.kind_id(kname) else {
                let hint = suggestion(kname, t.kinds.iter().map(|k| &*k.id));
                cx.err(
                    &format!("{f}.kind"),
                    format!("unknown device kind `{kname}`{hint}"),
                );
                continue;
            };
            if let Some(c) = condition(cx, &f, w, k, t) {
                conds.push(c);
            }
        }
        let open_at = match (&co.open_at, &scope) {
            (None, _) => Some(None),
            (Some(k), Some(Scope::RadiusM(_))) => {
                match co
                    .when
                    .iter()
                    .position(|w| w.kind.as_deref() == Some(k.as_str()))
                {
                    Some(i) => Some(Some(i)),
                    None => {
                        cx.err(
                            "correlation.open_at",
                            format!("`{k}` is the kind of none of the `when` conditions"),
                        );
                        None
                    }
                }
            }
            (Some(_), _) => {
                cx.err(
                    "correlation.open_at",
                    "only with radius_m: at one site, the incident opens at that site",
                );
                None
            }
        };
        match (window, scope, open_at) {
            (Some(window), Some(scope), Some(open_at)) if conds.len() == co.when.len() => {
                Some(Body::Correlation {
                    conds,
                    window,
                    scope,
                    open_at,
                })
            }
            _ => None,
        }
    } else {
        None
    };

    // Scope filters.
    let mut site_ok: Option<Vec<bool>> = None;
    if !raw.communes.is_empty() || !raw.site_kinds.is_empty() || !raw.sites.is_empty() {
        let mut communes = Vec::new();
        for c in &raw.communes {
            match t.commune_id(c) {
                Some(ci) => communes.push(ci),
                None => {
                    let hint = suggestion(c, t.communes.iter().map(|c| &*c.id));
                    cx.err("communes", format!("unknown commune `{c}`{hint}"))
                }
            }
        }
        let mut kinds = Vec::new();
        for k in &raw.site_kinds {
            match t.site_kind(k) {
                Some(sk) => kinds.push(sk),
                None => cx.err("site_kinds", format!("unknown site kind `{k}`")),
            }
        }
        let mut listed = Vec::new();
        for s in &raw.sites {
            match t.site_id(s) {
                Some(si) => listed.push(si),
                None => {
                    let hint = suggestion(s, t.sites.iter().map(|s| &*s.id));
                    cx.err("sites", format!("unknown site `{s}`{hint}"))
                }
            }
        }
        site_ok = Some(
            t.sites
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    (communes.is_empty() || communes.contains(&s.commune))
                        && (kinds.is_empty() || kinds.contains(&s.kind))
                        && (listed.is_empty() || listed.contains(&beffroi_core::SiteIdx(i as u32)))
                })
                .collect(),
        );
    }
    let mut devices = Vec::new();
    for d in &raw.devices {
        match t.device_id(d) {
            Some(di) => {
                if rule_kind.is_some_and(|k| t.device(di).kind != k) {
                    cx.err(
                        "devices",
                        format!(
                            "device `{d}` is not of kind `{}`",
                            raw.kind.as_deref().unwrap_or("")
                        ),
                    );
                }
                devices.push(di)
            }
            None => {
                let hint = suggestion(d, t.devices.iter().map(|d| &*d.id));
                cx.err("devices", format!("unknown device `{d}`{hint}"))
            }
        }
    }

    let mut escalate = Vec::new();
    let mut last = (Duration::ZERO, severity.unwrap_or(Severity::Info));
    for (i, e) in raw.escalate.iter().enumerate() {
        let f = format!("escalate[{i}]");
        let after = duration(cx, &format!("{f}.after"), &e.after);
        let sev = Severity::parse(&e.severity);
        if sev.is_none() {
            cx.err(
                &format!("{f}.severity"),
                format!("unknown severity `{}`", e.severity),
            );
        }
        if let (Some(after), Some(sev)) = (after, sev) {
            if after <= last.0 || sev <= last.1 {
                cx.err(
                    &f,
                    "escalation steps need increasing `after` and increasing severity above the rule's",
                );
            }
            last = (after, sev);
            escalate.push((after, sev));
        }
    }

    if cx.errors.len() > before {
        return None;
    }
    Some(Rule {
        id: raw.id.as_str().into(),
        title: raw.title.as_str().into(),
        category: raw.category.as_str().into(),
        severity: severity?,
        key,
        auto_resolve: raw.auto_resolve,
        body: body?,
        escalate,
        sites: site_ok.map(Into::into),
        devices: (!devices.is_empty()).then(|| devices.into()),
        line,
    })
}

fn condition(
    cx: &mut Cx<'_>,
    at: &str,
    c: &RawCond,
    kind: KindIdx,
    t: &Territory,
) -> Option<Condition> {
    let k = t.kind(kind);
    let Some(field) = k.field(&c.field) else {
        cx.err(
            &format!("{at}.field"),
            format!("kind `{}` has no field `{}`", k.id, c.field),
        );
        return None;
    };
    let spec = &k.fields[field.get()];
    if spec.category.is_personal() && !cx.personal_allowed {
        cx.err(
            &format!("{at}.field"),
            format!(
                "`{}` is {}: a rule on it follows people; it needs the DPO's approval \
                 (`dpo_approval = \"name, date, reference\"`, in rules.toml only, never in an \
                 event's rules)",
                spec.name,
                spec.category.as_str()
            ),
        );
        return None;
    }
    let ops = [
        c.above.is_some(),
        c.below.is_some(),
        c.equals.is_some(),
        c.not_equals.is_some(),
        c.between.is_some(),
        c.outside.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if ops != 1 {
        cx.err(
            at,
            "needs exactly one operator: above, below, equals, not_equals, between, outside",
        );
        return None;
    }
    let lit = |cx: &mut Cx<'_>, v: &toml::Value, name: &str| -> Option<Value> {
        let f = format!("{at}.{name}");
        match (v, spec.ty) {
            (toml::Value::Float(x), FieldType::Number) => Some(Value::Number(*x)),
            (toml::Value::Integer(x), FieldType::Number) => Some(Value::Number(*x as f64)),
            (toml::Value::Boolean(b), FieldType::Bool) => Some(Value::Bool(*b)),
            (toml::Value::String(s), FieldType::Text) => Some(Value::Text(s.as_str().into())),
            _ => {
                cx.err(
                    &f,
                    format!(
                        "field `{}` is a {}: compare it with a {} value",
                        spec.name,
                        spec.ty.as_str(),
                        spec.ty.as_str()
                    ),
                );
                None
            }
        }
    };
    let numeric = |cx: &mut Cx<'_>, name: &str| {
        if spec.ty != FieldType::Number {
            cx.err(
                &format!("{at}.{name}"),
                format!(
                    "`{name}` compares numbers but field `{}` is a {}",
                    spec.name,
                    spec.ty.as_str()
                ),
            );
            false
        } else {
            true
        }
    };
    let op = if let Some(x) = c.above {
        numeric(cx, "above").then_some(Op::Above(x))
    } else if let Some(x) = c.below {
        numeric(cx, "below").then_some(Op::Below(x))
    } else if let Some([a, b]) = c.between {
        (numeric(cx, "between") && a <= b).then_some(Op::Between(a, b))
    } else if let Some([a, b]) = c.outside {
        (numeric(cx, "outside") && a <= b).then_some(Op::Outside(a, b))
    } else if let Some(v) = &c.equals {
        lit(cx, v, "equals").map(Op::Equals)
    } else if let Some(v) = &c.not_equals {
        lit(cx, v, "not_equals").map(Op::NotEquals)
    } else {
        None
    }?;
    // A literal naming one person's pseudonym makes the rule a watchlist, approved or not.
    if let Op::Equals(Value::Text(v)) | Op::NotEquals(Value::Text(v)) = &op
        && looks_like_pseudonym(v)
    {
        cx.err(
            at,
            "compares with a pseudonym: a rule watching for one person is refused",
        );
        return None;
    }
    // A people count is shown only from the minimum group size on: a rule that fires on
    // one exact count, or on a range narrower than a group, would print what is suppressed.
    // `below` (and the lower side of `outside`) counts from the field's floor: `below 4`
    // fires on 0 to 3 people, as narrow as `between [0, 4]`.
    if spec.people_count {
        let floor = spec.min.unwrap_or(0.0).max(0.0);
        let group = f64::from(MIN_GROUP_FLOOR);
        let small = |x: f64| x > floor && x - floor < group;
        let narrow = match op {
            Op::Equals(_) | Op::NotEquals(_) => true,
            Op::Between(a, b) => b - a < group,
            Op::Outside(a, b) => b - a < group || small(a),
            Op::Below(x) => small(x),
            Op::Above(_) => false,
        };
        if narrow {
            cx.err(
                at,
                format!(
                    "`{}` is a people count: compare it with above or below, or a range of at \
                     least {MIN_GROUP_FLOOR} people, never one exact count",
                    spec.name
                ),
            );
            return None;
        }
    }
    // A threshold outside the physical range can never match.
    let (lo, hi) = (
        spec.min.unwrap_or(f64::NEG_INFINITY),
        spec.max.unwrap_or(f64::INFINITY),
    );
    let never = match op {
        Op::Above(x) => x >= hi,
        Op::Below(x) => x <= lo,
        Op::Between(a, b) => b < lo || a > hi,
        _ => false,
    };
    if never {
        cx.err(
            at,
            format!(
                "`{} {}` can never match: `{}` ranges over [{lo}, {hi}]",
                spec.name,
                op.describe(),
                spec.name
            ),
        );
        return None;
    }
    Some(Condition {
        kind,
        field,
        field_name: spec.name.clone(),
        op,
    })
}

/// The narrowest range of people a rule may test (the default minimum group size).
const MIN_GROUP_FLOOR: u32 = 10;

/// `kind:epoch:hash` as the pseudonymiser writes it (kinds of identifier, a number, base32).
fn looks_like_pseudonym(v: &str) -> bool {
    let mut parts = v.trim().splitn(3, ':');
    let (Some(kind), Some(epoch), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    matches!(
        kind,
        "plate" | "badge" | "mac" | "phone" | "email" | "name" | "id"
    ) && !epoch.is_empty()
        && epoch.bytes().all(|b| b.is_ascii_digit())
        && hash.len() >= 16
        && hash
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

pub(crate) fn index(rules: Vec<Rule>, t: &Territory) -> RuleSet {
    let mut index: Vec<Vec<Bucket>> = t
        .kinds
        .iter()
        .map(|k| vec![Bucket::default(); k.fields.len()])
        .collect();
    let mut absence = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        let ri = RuleIdx(ri as u32);
        let conds: Vec<&Condition> = match &rule.body {
            Body::Threshold { cond, .. } | Body::Rate { cond, .. } => vec![cond],
            Body::Correlation { conds, .. } => conds.iter().collect(),
            Body::Absence { .. } => {
                absence.push(ri);
                vec![]
            }
            Body::Aggregate { inputs, .. } => {
                for &(d, f) in inputs.iter() {
                    let Some(dev) = t.devices.get(d.get()) else {
                        continue;
                    };
                    if let Some(bucket) = index
                        .get_mut(dev.kind.get())
                        .and_then(|b| b.get_mut(f.get()))
                    {
                        let targets = bucket.by_device.entry(d).or_default();
                        if !targets.iter().any(|x| x.rule == ri) {
                            targets.push(Target {
                                rule: ri,
                                cond: 0,
                                site_checked: true,
                            });
                        }
                    }
                }
                vec![]
            }
        };
        for (ci, c) in conds.into_iter().enumerate() {
            let target = Target {
                rule: ri,
                cond: ci as u16,
                site_checked: false,
            };
            let bucket = &mut index[c.kind.get()][c.field.get()];
            if let Some(devs) = &rule.devices {
                for d in devs.iter() {
                    bucket.by_device.entry(*d).or_default().push(target);
                }
            } else if let Some(sites) = &rule.sites {
                let n = sites.iter().filter(|b| **b).count();
                // Few sites: index per site; many: a global entry with a scope check.
                if n <= 64 {
                    for (si, ok) in sites.iter().enumerate() {
                        if *ok {
                            bucket
                                .by_site
                                .entry(beffroi_core::SiteIdx(si as u32))
                                .or_default()
                                .push(Target {
                                    site_checked: true,
                                    ..target
                                });
                        }
                    }
                } else {
                    bucket.global.push(target);
                }
            } else {
                bucket.global.push(target);
            }
        }
    }
    RuleSet {
        rules,
        index,
        absence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::territory::fixture;

    fn compile(text: &str) -> Result<RuleSet, ConfigErrors> {
        parse(&SourceFile::new("rules.toml", text), &fixture::small())
    }

    #[test]
    fn compiles_every_rule_type() {
        let set = compile(
            r#"
[[rule]]
id = "high"
title = "High water at {site}"
category = "flood"
severity = "major"
key = "site"
kind = "level"
auto_resolve = true
[rule.threshold]
field = "level_m"
above = 2.5
for = "10m"
[[rule.escalate]]
after = "30m"
severity = "critical"

[[rule]]
id = "silent"
title = "Silent"
category = "device"
severity = "minor"
kind = "level"
[rule.absence]

[[rule]]
id = "burst"
title = "Burst"
category = "access"
severity = "minor"
kind = "alarm"
[rule.rate]
field = "on"
equals = true
count = 3
window = "5m"

[[rule]]
id = "both"
title = "Both"
category = "flood"
severity = "critical"
key = "site"
[rule.correlation]
window = "5m"
radius_m = 1000
[[rule.correlation.when]]
kind = "level"
field = "level_m"
above = 1
[[rule.correlation.when]]
kind = "alarm"
field = "on"
equals = true
"#,
        )
        .expect("valid");
        assert_eq!(set.len(), 4);
        assert!(matches!(
            set.rule(RuleIdx(1)).body,
            Body::Absence { after, .. } if after == Duration::from_mins(30)
        ));
    }

    #[test]
    fn errors_name_line_field_and_rule() {
        let errs = compile(
            r#"
[[rule]]
id = "a"
title = "A"
category = "flood"
severity = "major"
kind = "level"
[rule.threshold]
field = "level_m"
above = 12.0

[[rule]]
id = "b"
title = "B"
category = "flood"
severity = "urgent"
kind = "alarm"
[rule.threshold]
field = "on"
above = 1.0
"#,
        )
        .expect_err("invalid");
        let text = errs.to_string();
        assert!(
            text.contains("rules.toml:8:7: `threshold`: rule `a`: `level_m > 12` can never match"),
            "{text}"
        );
        assert!(
            text.contains("rules.toml:16:12: `severity`: rule `b`: unknown severity `urgent`"),
            "{text}"
        );
        assert!(
            text.contains("rules.toml:20:9: `threshold.above`: rule `b`: `above` compares numbers but field `on` is a bool"),
            "{text}"
        );
    }

    #[test]
    fn rules_that_would_categorise_people_are_refused() {
        for (rule, field) in [
            (
                "id = \"gender-ratio\"\ntitle = \"R\"\ncategory = \"flood\"",
                "`id`",
            ),
            (
                "id = \"r\"\ntitle = \"Émotion de la foule\"\ncategory = \"flood\"",
                "`title`",
            ),
            (
                "id = \"r\"\ntitle = \"R\"\ncategory = \"face-match\"",
                "`category`",
            ),
        ] {
            let errs = compile(&format!(
                "[[rule]]\n{rule}\nseverity = \"major\"\nkind = \"level\"\n[rule.threshold]\nfield = \"level_m\"\nabove = 5.0\n"
            ))
            .expect_err(rule);
            let text = errs.to_string();
            assert!(
                text.contains(field) && text.contains("AI Act art. 5"),
                "{text}"
            );
        }
    }

    /// A rule on a personal field follows people: refused without the DPO's approval,
    /// and always in an event's temporary rules; a literal pseudonym (a watchlist) is
    /// refused even with it; a people count is never tested for one exact value or a range
    /// narrower than a group.
    #[test]
    fn rules_that_follow_people_need_the_dpo_and_never_watch_one_person() {
        let badge = |extra: &str, cond: &str| {
            format!(
                "[[rule]]\nid = \"b\"\ntitle = \"Badge\"\ncategory = \"intrusion\"\n\
                 severity = \"major\"\nkind = \"alarm\"\n{extra}\n[rule.threshold]\n\
                 field = \"badge\"\n{cond}\n"
            )
        };
        let e = compile(&badge("", "not_equals = \"\"")).expect_err("no approval");
        assert!(e.to_string().contains("needs the DPO's approval"), "{e}");
        let approved = "dpo_approval = \"M. Martin (DPO), 2026-12-01, ref. AIPD-7\"";
        assert!(compile(&badge(approved, "not_equals = \"\"")).is_ok());
        let watch = badge(approved, "equals = \"badge:1:abcdefghijklmnopqrst\"");
        let e = compile(&watch).expect_err("a watchlist");
        assert!(e.to_string().contains("watching for one person"), "{e}");
        // An event's rules cannot be approved: they are written through the API.
        let e = parse_from(
            &SourceFile::new("event", badge(approved, "not_equals = \"\"")),
            &fixture::small(),
            Origin::Event,
        )
        .expect_err("event rule on a personal field");
        assert!(e.to_string().contains("needs the DPO's approval"), "{e}");

        let mut t = fixture::small();
        let level = t.kind_id("level").expect("level kind");
        t.kinds[level.get()].fields.push(beffroi_core::FieldSpec {
            people_count: true,
            min: Some(0.0),
            max: Some(100_000.0),
            ..beffroi_core::FieldSpec::technical("occupancy", FieldType::Number)
        });
        let count = |cond: &str| {
            parse(
                &SourceFile::new(
                    "rules.toml",
                    format!(
                        "[[rule]]\nid = \"c\"\ntitle = \"Foule\"\ncategory = \"crowd\"\n\
                         severity = \"major\"\nkind = \"level\"\n[rule.threshold]\n\
                         field = \"occupancy\"\n{cond}\n"
                    ),
                ),
                &t,
            )
        };
        for narrow in [
            "equals = 4.0",
            "not_equals = 4.0",
            "between = [3.0, 5.0]",
            "below = 4.0",
            "outside = [3.0, 5000.0]",
        ] {
            let e = count(narrow).expect_err(narrow);
            assert!(e.to_string().contains("people count"), "{narrow}: {e}");
        }
        assert!(count("above = 500.0").is_ok());
        assert!(count("between = [100.0, 500.0]").is_ok());
        assert!(count("below = 10.0").is_ok(), "as wide as a group: `< 10`");
        assert!(count("outside = [20.0, 5000.0]").is_ok());
    }

    #[test]
    fn syntax_error_has_a_line() {
        let errs = compile("[[rule]]\nid = \"a\"\ntitle = \n").expect_err("invalid");
        assert_eq!(errs.0[0].line, Some(3));
    }
}
