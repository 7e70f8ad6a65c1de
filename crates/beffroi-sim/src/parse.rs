//! Scenario files (`docs/formats.md`, "Scenario files"): parsing and validation against a
//! territory.
//!
//! Every problem of a file is reported, each naming the file, the line of the offending
//! key (or of its `[[signal]]`/`[[event]]`… entry) and the field, like the territory loader.

use std::path::Path;

use beffroi_core::{
    DeviceIdx, DeviceKind, Duration, FieldIdx, FieldSpec, FieldType, KindIdx, Severity, Territory,
    Value,
};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile, parse_duration};
use beffroi_wire::Format;
use serde::Deserialize;
use toml::Spanned;

use crate::scenario::{Event, Expect, Profile, Scenario, Signal, Silence};

// The file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaw {
    name: Spanned<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    duration: Spanned<String>,
    #[serde(default)]
    exclusive: bool,
    #[serde(default)]
    signal: Vec<Spanned<SignalRaw>>,
    #[serde(default)]
    event: Vec<Spanned<EventRaw>>,
    #[serde(default)]
    silence: Vec<Spanned<SilenceRaw>>,
    #[serde(default)]
    expect: Vec<Spanned<ExpectRaw>>,
    #[serde(default)]
    security: Vec<Spanned<SecurityRaw>>,
}

/// A security signal as the edges would raise it, possibly repeated (`count` times,
/// `every` apart), cycling through `usernames` and `addresses` when given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityRaw {
    at: Spanned<String>,
    signal: Spanned<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    usernames: Vec<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    counter: Option<u64>,
    #[serde(default)]
    last: Option<u64>,
    #[serde(default)]
    claimed: Option<String>,
    #[serde(default)]
    count: Option<Spanned<u32>>,
    #[serde(default)]
    every: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalRaw {
    #[serde(default)]
    device: Option<Spanned<String>>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    commune: Option<Spanned<String>>,
    field: Spanned<String>,
    every: Spanned<String>,
    #[serde(default)]
    start: Option<Spanned<String>>,
    #[serde(default)]
    end: Option<Spanned<String>>,
    #[serde(default)]
    constant: Option<Spanned<toml::Value>>,
    #[serde(default)]
    linear: Option<Spanned<toml::Value>>,
    #[serde(default)]
    steps: Option<Spanned<toml::Value>>,
    #[serde(default)]
    noise: Option<Spanned<f64>>,
    #[serde(default)]
    format: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventRaw {
    at: Spanned<String>,
    device: Spanned<String>,
    values: Spanned<toml::Table>,
    #[serde(default)]
    format: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceRaw {
    device: Spanned<String>,
    #[serde(default)]
    from: Option<Spanned<String>>,
    #[serde(default)]
    to: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectRaw {
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    site: Option<Spanned<String>>,
    #[serde(default)]
    min_severity: Option<Spanned<String>>,
    #[serde(default)]
    by: Option<Spanned<String>>,
}

// Loading.

/// Loads every `*.toml` of `dir` as a scenario; the result is sorted by scenario name.
pub fn load_dir(dir: &Path, territory: &Territory) -> Result<Vec<Scenario>, ConfigErrors> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::new(
            dir.display().to_string(),
            None,
            None,
            format!("cannot read the scenario folder: {e}"),
        )
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut errors = ConfigErrors::default();
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        match SourceFile::read(&p) {
            Ok(f) => files.push(f),
            Err(e) => errors.push(e),
        }
    }
    match load_sources(&files, territory) {
        Ok(scenarios) => errors.into_result(scenarios),
        Err(e) => {
            errors.extend(e);
            Err(errors)
        }
    }
}

/// Parses in-memory scenario files (e.g. embedded in the binary); the result is sorted by
/// scenario name. Names must be unique.
pub fn load_sources(
    files: &[SourceFile],
    territory: &Territory,
) -> Result<Vec<Scenario>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut scenarios: Vec<(Scenario, &SourceFile)> = Vec::with_capacity(files.len());
    for f in files {
        match parse(f, territory) {
            Ok(s) => {
                if let Some((_, first)) = scenarios.iter().find(|(o, _)| o.name == s.name) {
                    errors.push(ConfigError::new(
                        f.path.clone(),
                        Some(name_line(f)),
                        Some("name"),
                        format!("scenario `{}` is also defined in {}", s.name, first.path),
                    ));
                } else {
                    scenarios.push((s, f));
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    let mut scenarios: Vec<Scenario> = scenarios.into_iter().map(|(s, _)| s).collect();
    scenarios.sort_by(|a, b| a.name.cmp(&b.name));
    errors.into_result(scenarios)
}

fn name_line(f: &SourceFile) -> usize {
    f.text
        .lines()
        .position(|l| l.trim_start().starts_with("name"))
        .map_or(1, |i| i + 1)
}

/// Parses and validates one scenario file against the territory, reporting every error.
pub fn parse(src: &SourceFile, territory: &Territory) -> Result<Scenario, ConfigErrors> {
    let raw: FileRaw = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut cx = Ctx {
        src,
        t: territory,
        errors: ConfigErrors::default(),
    };

    let name = raw.name.get_ref().clone();
    if !valid_id(&name) {
        cx.err(
            raw.name.span().start,
            "name",
            format!("invalid name `{name}`: use lowercase letters, digits, '-', '_', '.'"),
        );
    }
    let duration = cx.duration(&raw.duration, "duration");
    let duration = match duration {
        Some(d) if d.0 <= 0 => {
            cx.err(
                raw.duration.span().start,
                "duration",
                "must be longer than zero",
            );
            None
        }
        d => d,
    };

    let signals: Vec<Signal> = raw
        .signal
        .iter()
        .filter_map(|s| cx.signal(s, duration))
        .collect();
    let events: Vec<Event> = raw
        .event
        .iter()
        .filter_map(|e| cx.event(e, duration))
        .collect();
    // A silence without `to` lasts as long as the scenario that declares it: when the
    // scenario ends, its devices go back to the life the other scenarios give them.
    let silences: Vec<Silence> = raw
        .silence
        .iter()
        .filter_map(|s| cx.silence(s))
        .map(|mut s| {
            if s.to.is_none() {
                s.to = duration;
            }
            s
        })
        .collect();
    let expects: Vec<Expect> = raw
        .expect
        .iter()
        .filter_map(|e| cx.expect(e, duration))
        .collect();

    let mut security: Vec<(Duration, beffroi_core::SecuritySignal)> = Vec::new();
    for e in &raw.security {
        cx.security(e, duration, &mut security);
    }
    security.sort_by_key(|(at, _)| *at);

    let Ctx { errors, .. } = cx;
    let Some(duration) = duration else {
        // Already reported.
        return Err(errors);
    };
    errors.into_result(Scenario {
        title: raw.title.unwrap_or_else(|| name.clone()),
        name,
        description: raw.description.unwrap_or_default(),
        duration,
        exclusive: raw.exclusive,
        expects,
        signals,
        events,
        silences,
        security,
    })
}

/// Same rule as territory ids: lowercase ASCII letters, digits, `-`, `_`, `.`; 1..=128.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

struct Ctx<'a> {
    src: &'a SourceFile,
    t: &'a Territory,
    errors: ConfigErrors,
}

/// What a profile value may be.
#[derive(Clone, Copy)]
struct Accept {
    text: bool,
    check_range: bool,
}

impl Ctx<'_> {
    fn err(&mut self, at: usize, field: &str, msg: impl Into<String>) {
        let line = self.src.line(at);
        self.errors.push(ConfigError::new(
            self.src.path.clone(),
            Some(line),
            Some(field),
            msg,
        ));
    }

    /// Expands one `[[security]]` entry into its signals.
    fn security(
        &mut self,
        e: &Spanned<SecurityRaw>,
        duration: Option<Duration>,
        out: &mut Vec<(Duration, beffroi_core::SecuritySignal)>,
    ) {
        use beffroi_core::SecuritySignal as S;
        let line = e.span().start;
        let e = e.get_ref();
        let Some(at) = self.duration(&e.at, "security.at") else {
            return;
        };
        if duration.is_some_and(|d| at > d) {
            self.err(
                e.at.span().start,
                "security.at",
                "after the end of the scenario",
            );
            return;
        }
        let count = e.count.as_ref().map_or(1, |c| *c.get_ref());
        if count == 0 || count > 100_000 {
            let at = e.count.as_ref().map_or(line, |c| c.span().start);
            self.err(at, "security.count", "must be between 1 and 100000");
            return;
        }
        let every = match &e.every {
            Some(ev) => match self.duration(ev, "security.every") {
                Some(d) => d,
                None => return,
            },
            None if count > 1 => {
                self.err(line, "security.every", "required with `count` above 1");
                return;
            }
            None => Duration::ZERO,
        };
        let pick = |list: &[String], one: &Option<String>, i: usize| -> Option<String> {
            if list.is_empty() {
                one.clone()
            } else {
                list.get(i % list.len()).cloned()
            }
        };
        let kind = e.signal.get_ref().as_str();
        let need = |cx: &mut Self, v: &Option<String>, field: &str| -> Option<String> {
            if v.is_none() {
                cx.err(line, field, format!("required for a `{kind}` signal"));
            }
            v.clone()
        };
        for i in 0..count as usize {
            let t = Duration(at.0 + every.0 * i as i64);
            let username = pick(&e.usernames, &e.username, i);
            let address = pick(&e.addresses, &e.address, i);
            let client_id = e
                .client_id
                .clone()
                .or_else(|| username.clone())
                .unwrap_or_else(|| format!("client-{i}"));
            let signal = match kind {
                "auth_failure" => S::AuthFailure {
                    client_id,
                    username,
                    address,
                },
                "connected" => S::Connected {
                    client_id,
                    username,
                    address,
                },
                "bad_signature" => match need(self, &e.device, "security.device") {
                    Some(device) => S::BadSignature { device },
                    None => return,
                },
                "replay" => match need(self, &e.device, "security.device") {
                    Some(device) => S::Replay {
                        device,
                        counter: e.counter.unwrap_or(0),
                        last: e.last.unwrap_or(0),
                    },
                    None => return,
                },
                // The edge never passes on the names (a publisher chose them): one
                // message naming one unregistered device, publisher unknown.
                "unregistered" => match need(self, &e.device, "security.device") {
                    Some(_) => S::Unregistered {
                        publisher: None,
                        names: 1,
                        tags: Vec::new(),
                    },
                    None => return,
                },
                "topic_mismatch" => match (
                    need(self, &e.device, "security.device"),
                    need(self, &e.claimed, "security.claimed"),
                ) {
                    (Some(topic_device), Some(claimed)) => S::TopicMismatch {
                        topic_device,
                        claimed,
                    },
                    _ => return,
                },
                other => {
                    self.err(
                        e.signal.span().start,
                        "security.signal",
                        format!(
                            "unknown signal `{other}` (auth_failure, connected, bad_signature, \
                             replay, unregistered, topic_mismatch)"
                        ),
                    );
                    return;
                }
            };
            out.push((t, signal));
        }
    }

    fn duration(&mut self, d: &Spanned<String>, field: &str) -> Option<Duration> {
        match parse_duration(d.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(d.span().start, field, e);
                None
            }
        }
    }

    fn device(&mut self, d: &Spanned<String>, field: &str) -> Option<DeviceIdx> {
        let found = self.t.device_id(d.get_ref());
        if found.is_none() {
            self.err(
                d.span().start,
                field,
                format!("unknown device `{}`", d.get_ref()),
            );
        }
        found
    }

    fn format(&mut self, f: Option<&Spanned<String>>, field: &str) -> Option<Format> {
        let Some(f) = f else {
            return Some(Format::Senml);
        };
        let found = match f.get_ref().as_str() {
            "senml" => Some(Format::Senml),
            "json" => Some(Format::Json),
            "chirpstack" => Some(Format::Chirpstack),
            _ => None,
        };
        if found.is_none() {
            self.err(
                f.span().start,
                field,
                format!(
                    "unknown format `{}` (senml, json or chirpstack)",
                    f.get_ref()
                ),
            );
        }
        found
    }

    /// A ChirpStack uplink names its device by EUI: every device must have one.
    fn check_dev_eui(&mut self, devices: &[DeviceIdx], at: usize, field: &str) -> bool {
        let missing: Vec<&str> = devices
            .iter()
            .map(|d| self.t.device(*d))
            .filter(|d| d.dev_eui.is_none())
            .map(|d| &*d.id)
            .collect();
        match missing.as_slice() {
            [] => true,
            [one] => {
                let msg = format!("format `chirpstack` needs a dev_eui; device `{one}` has none");
                self.err(at, field, msg);
                false
            }
            [first, ..] => {
                let msg = format!(
                    "format `chirpstack` needs a dev_eui; {} devices have none (first: `{first}`)",
                    missing.len()
                );
                self.err(at, field, msg);
                false
            }
        }
    }

    /// Checks that a field exists in a kind.
    fn field(&mut self, kind: &DeviceKind, name: &str, at: usize, key: &str) -> Option<FieldIdx> {
        let found = kind.field(name);
        if found.is_none() {
            let names: Vec<&str> = kind.fields.iter().map(|f| &*f.name).collect();
            self.err(
                at,
                key,
                format!(
                    "kind `{}` has no field `{name}` (fields: {})",
                    kind.id,
                    names.join(", ")
                ),
            );
        }
        found
    }

    /// Converts a TOML value to a value of the field's type.
    fn value(
        &mut self,
        v: &toml::Value,
        spec: &FieldSpec,
        kind: &str,
        accept: Accept,
        at: usize,
        key: &str,
    ) -> Option<Value> {
        let got = match v {
            toml::Value::Integer(i) => Ok(Value::Number(*i as f64)),
            toml::Value::Float(x) => Ok(Value::Number(*x)),
            toml::Value::Boolean(b) => Ok(Value::Bool(*b)),
            toml::Value::String(s) => Ok(Value::Text(s.as_str().into())),
            toml::Value::Datetime(_) => Err("a date"),
            toml::Value::Array(_) => Err("an array"),
            toml::Value::Table(_) => Err("a table"),
        };
        let field = format!("`{}` of kind `{kind}`", spec.name);
        let value = match (got, spec.ty) {
            (Ok(Value::Number(x)), FieldType::Number) => {
                if !x.is_finite() {
                    self.err(at, key, format!("{field}: {x} is not a finite number"));
                    return None;
                }
                let below = spec.min.is_some_and(|lo| x < lo);
                let above = spec.max.is_some_and(|hi| x > hi);
                if accept.check_range && (below || above) {
                    self.err(
                        at,
                        key,
                        format!(
                            "{field}: {x} is outside its physical range [{}, {}]",
                            spec.min.map_or("-inf".into(), |v| v.to_string()),
                            spec.max.map_or("+inf".into(), |v| v.to_string()),
                        ),
                    );
                    return None;
                }
                Value::Number(x)
            }
            (Ok(Value::Bool(b)), FieldType::Bool) => Value::Bool(b),
            (Ok(Value::Text(s)), FieldType::Text) if accept.text => Value::Text(s),
            (Ok(_), FieldType::Text) if !accept.text => {
                self.err(
                    at,
                    key,
                    format!("{field} is text: signals carry numbers or booleans, use an [[event]]"),
                );
                return None;
            }
            (got, want) => {
                let got = match got {
                    Ok(Value::Number(_)) => "a number",
                    Ok(Value::Bool(_)) => "a boolean",
                    Ok(Value::Text(_)) => "a string",
                    Err(other) => other,
                };
                let want = match want {
                    FieldType::Number => "a number",
                    FieldType::Bool => "a boolean",
                    FieldType::Text => "text",
                };
                self.err(at, key, format!("{field} is {want}, got {got}"));
                return None;
            }
        };
        Some(value)
    }

    fn signal(&mut self, raw: &Spanned<SignalRaw>, duration: Option<Duration>) -> Option<Signal> {
        let entry = raw.span().start;
        let s = raw.get_ref();
        let mut ok = true;

        // Target: one device, or every device of a kind (optionally in one commune).
        let target: Option<(KindIdx, Vec<DeviceIdx>, bool)> = match (&s.device, &s.kind) {
            (Some(d), None) => {
                if let Some(c) = &s.commune {
                    self.err(
                        c.span().start,
                        "signal.commune",
                        "`commune` selects among the devices of a `kind`, not with `device`",
                    );
                    ok = false;
                }
                self.device(d, "signal.device")
                    .map(|i| (self.t.device(i).kind, vec![i], false))
            }
            (None, Some(k)) => self.kind_target(k, s.commune.as_ref()),
            (Some(d), Some(_)) => {
                self.err(
                    d.span().start,
                    "signal.device",
                    "give either `device` or `kind`, not both",
                );
                None
            }
            (None, None) => {
                self.err(entry, "signal", "a signal needs `device` or `kind`");
                None
            }
        };

        let field = target.as_ref().and_then(|(k, _, _)| {
            let kind = self.t.kind(*k);
            self.field(
                kind,
                s.field.get_ref(),
                s.field.span().start,
                "signal.field",
            )
        });

        let every = self.duration(&s.every, "signal.every");
        if every.is_some_and(|e| e.0 <= 0) {
            self.err(
                s.every.span().start,
                "signal.every",
                "must be longer than zero",
            );
            ok = false;
        }
        let start = match &s.start {
            None => Some(Duration::ZERO),
            Some(d) => self.duration(d, "signal.start"),
        };
        let end = match &s.end {
            None => duration,
            Some(d) => self.duration(d, "signal.end"),
        };
        if let (Some(st), Some(en)) = (start, end) {
            let at = s
                .end
                .as_ref()
                .or(s.start.as_ref())
                .map_or(entry, |d| d.span().start);
            if st >= en {
                self.err(
                    at,
                    "signal.end",
                    format!(
                        "the signal ends ({}) before it starts ({})",
                        show(en),
                        show(st)
                    ),
                );
                ok = false;
            } else if duration.is_some_and(|d| en > d) {
                self.err(
                    at,
                    "signal.end",
                    format!(
                        "the signal ends ({}) after the scenario ({})",
                        show(en),
                        show(duration.unwrap_or_default())
                    ),
                );
                ok = false;
            }
        }

        let format = self.format(s.format.as_ref(), "signal.format");
        if let (Some(Format::Chirpstack), Some((_, devices, _))) = (format, &target) {
            let at = s.format.as_ref().map_or(entry, |f| f.span().start);
            ok &= self.check_dev_eui(devices, at, "signal.format");
        }

        // Profile: exactly one of constant, linear, steps.
        let given: Vec<(&str, &Spanned<toml::Value>)> = [
            ("constant", s.constant.as_ref()),
            ("linear", s.linear.as_ref()),
            ("steps", s.steps.as_ref()),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
        let (kind, spec) = match (&target, field) {
            (Some((k, _, _)), Some(f)) => {
                let kind = self.t.kind(*k);
                (Some(kind), Some(&kind.fields[f.get()]))
            }
            _ => (None, None),
        };
        let profile = match given.as_slice() {
            [] => {
                self.err(
                    entry,
                    "signal",
                    "a signal needs one profile: `constant`, `linear` or `steps`",
                );
                None
            }
            [(name, v)] => match (kind, spec) {
                (Some(kind), Some(spec)) => self.profile(name, v, &kind.id, spec, end),
                _ => None,
            },
            [(first, _), (second, v), ..] => {
                self.err(
                    v.span().start,
                    &format!("signal.{second}"),
                    format!("a signal has exactly one profile; `{first}` is already given"),
                );
                None
            }
        };

        let mut noise = 0.0;
        if let Some(n) = &s.noise {
            let x = *n.get_ref();
            if !(x.is_finite() && x >= 0.0) {
                self.err(n.span().start, "signal.noise", "must be a number ≥ 0");
                ok = false;
            } else if spec.is_some_and(|f| f.ty != FieldType::Number) {
                self.err(
                    n.span().start,
                    "signal.noise",
                    "noise applies to numbers only",
                );
                ok = false;
            }
            noise = x;
        }

        let (_, devices, phased) = target?;
        if !ok {
            return None;
        }
        let spec = spec?;
        Some(Signal {
            devices,
            phased,
            field: field?,
            every: every?,
            start: start?,
            end: end?,
            profile: profile?,
            noise,
            min: spec.min.unwrap_or(f64::NEG_INFINITY),
            max: spec.max.unwrap_or(f64::INFINITY),
            format: format?,
        })
    }

    fn kind_target(
        &mut self,
        k: &Spanned<String>,
        commune: Option<&Spanned<String>>,
    ) -> Option<(KindIdx, Vec<DeviceIdx>, bool)> {
        let Some(kind) = self.t.kind_id(k.get_ref()) else {
            self.err(
                k.span().start,
                "signal.kind",
                format!("unknown kind `{}`", k.get_ref()),
            );
            return None;
        };
        let all = self.t.devices_of_kind(kind);
        let devices: Vec<DeviceIdx> = match commune {
            None => all.to_vec(),
            Some(c) => {
                let Some(ci) = self.t.commune_id(c.get_ref()) else {
                    self.err(
                        c.span().start,
                        "signal.commune",
                        format!("unknown commune `{}`", c.get_ref()),
                    );
                    return None;
                };
                all.iter()
                    .copied()
                    .filter(|d| self.t.site(self.t.device(*d).site).commune == ci)
                    .collect()
            }
        };
        if devices.is_empty() {
            let place = commune.map_or(String::new(), |c| format!(" in commune `{}`", c.get_ref()));
            self.err(
                k.span().start,
                "signal.kind",
                format!("no device of kind `{}`{place}", k.get_ref()),
            );
            return None;
        }
        Some((kind, devices, true))
    }

    fn profile(
        &mut self,
        name: &str,
        v: &Spanned<toml::Value>,
        kind: &str,
        spec: &FieldSpec,
        end: Option<Duration>,
    ) -> Option<Profile> {
        let at = v.span().start;
        let key = format!("signal.{name}");
        let accept = Accept {
            text: false,
            check_range: true,
        };
        match name {
            "constant" => self
                .value(v.get_ref(), spec, kind, accept, at, &key)
                .map(Profile::Constant),
            "linear" => {
                let pair = match v.get_ref() {
                    toml::Value::Array(a) if a.len() == 2 => Some((&a[0], &a[1])),
                    _ => None,
                };
                let Some((a, b)) = pair else {
                    self.err(at, &key, "expected `[from, to]`");
                    return None;
                };
                if spec.ty != FieldType::Number {
                    self.err(
                        at,
                        &key,
                        format!(
                            "`{}` of kind `{kind}` is {}: only numbers can be linear",
                            spec.name,
                            spec.ty.as_str()
                        ),
                    );
                    return None;
                }
                let from = self.value(a, spec, kind, accept, at, &key);
                let to = self.value(b, spec, kind, accept, at, &key);
                match (from, to) {
                    (Some(Value::Number(from)), Some(Value::Number(to))) => {
                        Some(Profile::Linear { from, to })
                    }
                    _ => None,
                }
            }
            _ => {
                let toml::Value::Array(items) = v.get_ref() else {
                    self.err(at, &key, "expected `[[\"0s\", value], [\"1h\", value], …]`");
                    return None;
                };
                if items.is_empty() {
                    self.err(at, &key, "needs at least one step");
                    return None;
                }
                let mut steps: Vec<(Duration, Value)> = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    let pair = match item {
                        toml::Value::Array(p) if p.len() == 2 => match &p[0] {
                            toml::Value::String(d) => Some((d, &p[1])),
                            _ => None,
                        },
                        _ => None,
                    };
                    let Some((offset, value)) = pair else {
                        self.err(at, &key, "each step is `[\"<offset>\", value]`");
                        ok = false;
                        continue;
                    };
                    let offset = match parse_duration(offset) {
                        Ok(o) => o,
                        Err(e) => {
                            self.err(at, &key, e);
                            ok = false;
                            continue;
                        }
                    };
                    if let Some((prev, _)) = steps.last()
                        && offset <= *prev
                    {
                        self.err(
                            at,
                            &key,
                            format!(
                                "step offsets must increase: {} after {}",
                                show(offset),
                                show(*prev)
                            ),
                        );
                        ok = false;
                    }
                    if end.is_some_and(|e| offset >= e) {
                        self.err(
                            at,
                            &key,
                            format!("the step at {} is after the signal's end", show(offset)),
                        );
                        ok = false;
                    }
                    match self.value(value, spec, kind, accept, at, &key) {
                        Some(v) => steps.push((offset, v)),
                        None => ok = false,
                    }
                }
                ok.then_some(Profile::Steps(steps))
            }
        }
    }

    fn event(&mut self, raw: &Spanned<EventRaw>, duration: Option<Duration>) -> Option<Event> {
        let e = raw.get_ref();
        let mut ok = true;
        let at = self.duration(&e.at, "event.at");
        if let (Some(at), Some(d)) = (at, duration)
            && at >= d
        {
            self.err(
                e.at.span().start,
                "event.at",
                format!(
                    "{} is not before the scenario's end ({})",
                    show(at),
                    show(d)
                ),
            );
            ok = false;
        }
        let device = self.device(&e.device, "event.device");
        let format = self.format(e.format.as_ref(), "event.format");
        if let (Some(Format::Chirpstack), Some(d)) = (format, device) {
            let at = e
                .format
                .as_ref()
                .map_or(raw.span().start, |f| f.span().start);
            ok &= self.check_dev_eui(&[d], at, "event.format");
        }
        let mut values = Vec::new();
        let vat = e.values.span().start;
        if e.values.get_ref().is_empty() {
            self.err(vat, "event.values", "an event needs at least one value");
            ok = false;
        }
        if let Some(d) = device {
            let kind = self.t.kind_of(d);
            // Events are sent as written: a scenario may inject impossible values on purpose.
            let accept = Accept {
                text: true,
                check_range: false,
            };
            for (name, v) in e.values.get_ref() {
                let Some(f) = self.field(kind, name, vat, "event.values") else {
                    ok = false;
                    continue;
                };
                match self.value(
                    v,
                    &kind.fields[f.get()],
                    &kind.id,
                    accept,
                    vat,
                    "event.values",
                ) {
                    Some(v) => values.push((f, v)),
                    None => ok = false,
                }
            }
        }
        if !ok {
            return None;
        }
        Some(Event {
            at: at?,
            device: device?,
            values,
            format: format?,
        })
    }

    fn silence(&mut self, raw: &Spanned<SilenceRaw>) -> Option<Silence> {
        let s = raw.get_ref();
        let device = self.device(&s.device, "silence.device");
        let from = match &s.from {
            None => Some(Duration::ZERO),
            Some(d) => self.duration(d, "silence.from"),
        };
        let to = match &s.to {
            None => Some(None),
            Some(d) => self.duration(d, "silence.to").map(Some),
        };
        if let (Some(f), Some(Some(t)), Some(d)) = (from, to, &s.to)
            && t <= f
        {
            self.err(
                d.span().start,
                "silence.to",
                format!(
                    "the silence ends ({}) before it starts ({})",
                    show(t),
                    show(f)
                ),
            );
            return None;
        }
        Some(Silence {
            device: device?,
            from: from?,
            to: to?,
        })
    }

    fn expect(&mut self, raw: &Spanned<ExpectRaw>, duration: Option<Duration>) -> Option<Expect> {
        let e = raw.get_ref();
        let mut ok = true;
        if let Some(site) = &e.site
            && self.t.site_id(site.get_ref()).is_none()
        {
            self.err(
                site.span().start,
                "expect.site",
                format!("unknown site `{}`", site.get_ref()),
            );
            ok = false;
        }
        let min_severity = match &e.min_severity {
            None => None,
            Some(s) => match Severity::parse(s.get_ref()) {
                Some(v) => Some(v),
                None => {
                    self.err(
                        s.span().start,
                        "expect.min_severity",
                        format!(
                            "unknown severity `{}` (info, minor, major or critical)",
                            s.get_ref()
                        ),
                    );
                    ok = false;
                    None
                }
            },
        };
        let by = match &e.by {
            None => None,
            Some(b) => match self.duration(b, "expect.by") {
                Some(v) if duration.is_some_and(|d| v > d) => {
                    let d = duration.unwrap_or_default();
                    self.err(
                        b.span().start,
                        "expect.by",
                        format!("{} is after the scenario's end ({})", show(v), show(d)),
                    );
                    ok = false;
                    None
                }
                Some(v) => Some(v),
                None => {
                    ok = false;
                    None
                }
            },
        };
        ok.then(|| Expect {
            rule: e.rule.clone(),
            category: e.category.clone(),
            site: e.site.as_ref().map(|s| s.get_ref().clone()),
            min_severity,
            by,
        })
    }
}

/// A duration as written in the files: `1h30m`, `45s`, `0s`.
pub(crate) fn show(d: Duration) -> String {
    let ms = d.0;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let (mut rest, sub) = (ms / 1000, ms % 1000);
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if rest >= len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    if rest > 0 || sub > 0 {
        if sub > 0 {
            out.push_str(&format!("{rest}.{sub:03}s"));
        } else {
            out.push_str(&format!("{rest}s"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::territory::fixture;

    fn src(text: &str) -> SourceFile {
        SourceFile::new("s.toml", text)
    }

    const HEAD: &str = "name = \"t\"\ntitle = \"T\"\nduration = \"1h\"\n";

    #[test]
    fn parses_every_part() {
        let t = fixture::small();
        let s = parse(
            &src(&format!(
                "{HEAD}exclusive = true\n\
                 [[signal]]\nkind = \"level\"\nfield = \"level_m\"\nevery = \"5m\"\nlinear = [1, 2.5]\nnoise = 0.1\n\
                 [[signal]]\ndevice = \"g1\"\nfield = \"level_m\"\nevery = \"1m\"\nstart = \"10m\"\nend = \"20m\"\nsteps = [[\"0s\", 1.0], [\"15m\", 2.0]]\nformat = \"chirpstack\"\n\
                 [[event]]\nat = \"30m\"\ndevice = \"a1\"\nvalues = {{ on = true, badge = \"B-1\" }}\nformat = \"json\"\n\
                 [[silence]]\ndevice = \"g2\"\nfrom = \"5m\"\nto = \"10m\"\n\
                 [[expect]]\nrule = \"r\"\nsite = \"s2\"\nmin_severity = \"major\"\nby = \"40m\"\n"
            )),
            &t,
        )
        .expect("valid");
        assert_eq!(s.name, "t");
        assert_eq!(s.duration, Duration::from_mins(60));
        assert!(s.exclusive);
        assert_eq!(s.signals.len(), 2);
        assert_eq!(s.signals[0].devices.len(), 2);
        assert!(s.signals[0].phased);
        assert_eq!(s.signals[0].end, Duration::from_mins(60));
        assert!(!s.signals[1].phased);
        assert_eq!(s.signals[1].format, Format::Chirpstack);
        assert_eq!(s.events[0].values.len(), 2);
        assert_eq!(
            s.silences,
            vec![Silence {
                device: DeviceIdx(1),
                from: Duration::from_mins(5),
                to: Some(Duration::from_mins(10)),
            }]
        );
        assert_eq!(
            s.expects,
            vec![Expect {
                rule: Some("r".into()),
                category: None,
                site: Some("s2".into()),
                min_severity: Some(Severity::Major),
                by: Some(Duration::from_mins(40)),
            }]
        );
    }

    fn errors(body: &str) -> Vec<String> {
        let t = fixture::small();
        parse(&src(&format!("{HEAD}{body}")), &t)
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn reports_every_error_with_line_and_field() {
        let e = errors(
            "[[signal]]\ndevice = \"nope\"\nfield = \"level_m\"\nevery = \"5m\"\nconstant = 1.0\n\
             [[signal]]\ndevice = \"g1\"\nfield = \"level_m\"\nevery = \"5m\"\nconstant = true\n\
             [[signal]]\ndevice = \"g1\"\nfield = \"level_m\"\nevery = \"5m\"\nconstant = 1.0\nlinear = [1, 2]\n\
             [[signal]]\ndevice = \"g2\"\nfield = \"level_m\"\nevery = \"5m\"\nconstant = 1.0\nformat = \"chirpstack\"\n\
             [[event]]\nat = \"2h\"\ndevice = \"a1\"\nvalues = { on = 1, depth = 2 }\n\
             [[expect]]\nsite = \"s9\"\nmin_severity = \"huge\"\n",
        );
        let want = [
            "s.toml:5: `signal.device`: unknown device `nope`",
            "s.toml:13: `signal.constant`: `level_m` of kind `level` is a number, got a boolean",
            "s.toml:19: `signal.linear`: a signal has exactly one profile; `constant` is already given",
            "s.toml:25: `signal.format`: format `chirpstack` needs a dev_eui; device `g2` has none",
            "s.toml:27: `event.at`: 2h is not before the scenario's end (1h)",
            "s.toml:29: `event.values`: kind `alarm` has no field `depth` (fields: on, badge)",
            "s.toml:29: `event.values`: `on` of kind `alarm` is a boolean, got a number",
            "s.toml:31: `expect.site`: unknown site `s9`",
            "s.toml:32: `expect.min_severity`: unknown severity `huge` (info, minor, major or critical)",
        ];
        assert_eq!(e, want, "{e:#?}");
    }

    #[test]
    fn checks_durations_ranges_and_profiles() {
        let e = errors(
            "[[signal]]\nkind = \"level\"\nfield = \"level_m\"\nevery = \"often\"\nconstant = 11.0\n\
             [[signal]]\nkind = \"alarm\"\nfield = \"on\"\nevery = \"5m\"\nstart = \"30m\"\nend = \"10m\"\n\
             [[signal]]\nkind = \"alarm\"\nfield = \"on\"\nevery = \"5m\"\nlinear = [0, 1]\nnoise = 1\n\
             [[silence]]\ndevice = \"g1\"\nfrom = \"10m\"\nto = \"5m\"\n",
        );
        let want = [
            "s.toml:7: `signal.every`: invalid duration `often`: expected number at 0 (write e.g. `90s`, `10m`, `1h30m`)",
            "s.toml:8: `signal.constant`: `level_m` of kind `level`: 11 is outside its physical range [0, 10]",
            "s.toml:14: `signal.end`: the signal ends (10m) before it starts (30m)",
            "s.toml:9: `signal`: a signal needs one profile: `constant`, `linear` or `steps`",
            "s.toml:19: `signal.linear`: `on` of kind `alarm` is bool: only numbers can be linear",
            "s.toml:20: `signal.noise`: noise applies to numbers only",
            "s.toml:24: `silence.to`: the silence ends (5m) before it starts (10m)",
        ];
        assert_eq!(e, want, "{e:#?}");
    }

    #[test]
    fn syntax_errors_and_unknown_keys_have_lines() {
        let e = errors("[[signal]]\ndevice = \"g1\"\nfeild = \"level_m\"\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("s.toml:"), "{e:?}");
        assert!(e[0].contains("feild"), "{e:?}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let t = fixture::small();
        let files = [
            SourceFile::new("a.toml", HEAD),
            SourceFile::new("b.toml", HEAD),
        ];
        let e = load_sources(&files, &t).expect_err("duplicate");
        assert_eq!(
            e.to_string(),
            "b.toml:1: `name`: scenario `t` is also defined in a.toml"
        );
    }

    #[test]
    fn shows_durations_like_the_files() {
        assert_eq!(show(Duration::from_mins(90)), "1h30m");
        assert_eq!(show(Duration(45_500)), "45.500s");
        assert_eq!(show(Duration::ZERO), "0s");
    }

    #[test]
    fn security_entries_expand_in_time_order_and_report_mistakes() {
        let t = fixture::small();
        let sc = parse(
            &src(&format!(
                "{HEAD}[[security]]\nat = \"2m\"\nsignal = \"auth_failure\"\ncount = 3\nevery = \"10s\"\nusernames = [\"a\", \"b\"]\naddress = \"192.0.2.1\"\n\n[[security]]\nat = \"1m\"\nsignal = \"replay\"\ndevice = \"g1\"\ncounter = 3\nlast = 9\n"
            )),
            &t,
        )
        .expect("valid");
        use beffroi_core::SecuritySignal as S;
        let got: Vec<_> = sc
            .security
            .iter()
            .map(|(at, s)| (at.0 / 1000, s.clone()))
            .collect();
        let fail = |u: &str| S::AuthFailure {
            client_id: u.into(),
            username: Some(u.into()),
            address: Some("192.0.2.1".into()),
        };
        assert_eq!(
            got,
            vec![
                (
                    60,
                    S::Replay {
                        device: "g1".into(),
                        counter: 3,
                        last: 9
                    }
                ),
                (120, fail("a")),
                (130, fail("b")),
                (140, fail("a")),
            ]
        );
        let e = errors(
            "[[security]]\nat = \"1m\"\nsignal = \"teleport\"\n\n[[security]]\nat = \"1m\"\nsignal = \"replay\"\n\n[[security]]\nat = \"1m\"\nsignal = \"connected\"\ncount = 2\n",
        );
        assert!(
            e.iter()
                .any(|x| x.contains("security.signal") && x.contains("teleport")),
            "{e:?}"
        );
        assert!(e.iter().any(|x| x.contains("security.device")), "{e:?}");
        assert!(e.iter().any(|x| x.contains("security.every")), "{e:?}");
    }
}
