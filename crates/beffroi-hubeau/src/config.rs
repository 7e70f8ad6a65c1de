//! `hubeau.toml`: which stations are read and which territory device each one feeds.
//!
//! ```toml
//! every = "5m"        # how often the API is asked (a failure doubles the wait, up to 10×)
//! backfill = "6h"     # how far back a poll may read (at most 12h)
//!
//! [[station]]
//! code = "U122401001"              # the station's `code_station` (Vigicrues / HydroPortail)
//! device = "plombieres-ouche-gauge-01"
//! height = "level_m"               # the field fed with the water height (H)
//! flow = "flow_m3_s"               # the field fed with the flow (Q), optional
//! ```
//!
//! A field's declared unit says how the API's value is converted: heights from millimetres
//! to `m`, `cm` or `mm`; flows from litres per second to `m3/s` (or `m³/s`) or `l/s`. The
//! device's kind must accept unsigned messages: a station cannot sign with a device's key.

use std::collections::HashSet;
use std::sync::Arc;

use beffroi_core::{DeviceIdx, Duration, FieldType, Signing, Territory};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile, parse_duration};
use serde::Deserialize;

use crate::answer::Quantity;

/// The public API's real-time observations.
pub const DEFAULT_URL: &str = "https://hubeau.eaufrance.fr/api/v2/hydrometrie/observations_tr";
const DEFAULT_EVERY: Duration = Duration(5 * 60_000);
const DEFAULT_BACKFILL: Duration = Duration(6 * 3_600_000);
/// The API keeps a month of real-time observations, but a reading lagging its reception
/// by more than a day is a clock-skew finding for the sentinel: half a day at most.
const MAX_BACKFILL: Duration = Duration(12 * 3_600_000);

/// Where one quantity of a station goes: a field of the device, and the factor from the
/// API's unit to the field's.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub field: Arc<str>,
    pub scale: f64,
}

/// One station mapped onto a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Station {
    pub code: String,
    pub device: DeviceIdx,
    pub device_id: Arc<str>,
    pub height: Option<Target>,
    pub flow: Option<Target>,
}

impl Station {
    pub fn target(&self, q: Quantity) -> Option<&Target> {
        match q {
            Quantity::Height => self.height.as_ref(),
            Quantity::Flow => self.flow.as_ref(),
        }
    }
}

/// The connector's settings, checked against the territory.
#[derive(Clone, Debug, PartialEq)]
pub struct HubeauConfig {
    pub url: String,
    pub every: Duration,
    pub backfill: Duration,
    /// Hand over readings the producer flagged doubtful (default: left out, counted).
    pub keep_doubtful: bool,
    pub stations: Vec<Station>,
}

impl HubeauConfig {
    pub fn station(&self, code: &str) -> Option<&Station> {
        self.stations.iter().find(|s| s.code == code)
    }

    /// The quantities at least one station maps.
    pub fn quantities(&self) -> Vec<Quantity> {
        Quantity::ALL
            .into_iter()
            .filter(|q| self.stations.iter().any(|s| s.target(*q).is_some()))
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    url: Option<toml::Spanned<String>>,
    #[serde(default)]
    every: Option<toml::Spanned<String>>,
    #[serde(default)]
    backfill: Option<toml::Spanned<String>>,
    #[serde(default)]
    keep_doubtful: bool,
    #[serde(default)]
    station: Vec<toml::Spanned<RawStation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    code: String,
    device: String,
    #[serde(default)]
    height: Option<String>,
    #[serde(default)]
    flow: Option<String>,
}

/// A station code: ten capital letters or digits (`U122401001`).
pub fn valid_code(s: &str) -> bool {
    s.len() == 10
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The factor from the API's unit to `unit`.
fn scale(q: Quantity, unit: &str) -> Option<f64> {
    match (q, unit.trim()) {
        (Quantity::Height, "m") => Some(0.001),
        (Quantity::Height, "cm") => Some(0.1),
        (Quantity::Height, "mm") => Some(1.0),
        (Quantity::Flow, "m3/s" | "m³/s" | "m3.s-1") => Some(0.001),
        (Quantity::Flow, "l/s" | "L/s") => Some(1.0),
        _ => None,
    }
}

fn duration(
    src: &SourceFile,
    v: &Option<toml::Spanned<String>>,
    name: &str,
    default: Duration,
    min: Duration,
    max: Duration,
    errors: &mut ConfigErrors,
) -> Duration {
    let Some(v) = v else { return default };
    let line = Some(src.line(v.span().start));
    match parse_duration(v.get_ref()) {
        Ok(d) if d.millis() >= min.millis() && d.millis() <= max.millis() => d,
        Ok(_) => {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some(name),
                format!(
                    "between {} s and {} h",
                    min.millis() / 1000,
                    max.millis() / 3_600_000
                ),
            ));
            default
        }
        Err(e) => {
            errors.push(ConfigError::new(src.path.clone(), line, Some(name), e));
            default
        }
    }
}

/// Reads `hubeau.toml` against the territory; every error of the file at once.
pub fn parse(src: &SourceFile, territory: &Territory) -> Result<HubeauConfig, ConfigErrors> {
    let raw: Raw = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let url = match &raw.url {
        None => DEFAULT_URL.to_string(),
        Some(u) => {
            let s = u.get_ref().trim();
            if !(s.starts_with("https://") || s.starts_with("http://"))
                || s.contains(['?', '#', ' '])
            {
                errors.push(ConfigError::new(
                    src.path.clone(),
                    Some(src.line(u.span().start)),
                    Some("url"),
                    "an http(s) URL without a query (the connector adds its parameters)",
                ));
            }
            s.to_string()
        }
    };
    let every = duration(
        src,
        &raw.every,
        "every",
        DEFAULT_EVERY,
        Duration(1000),
        Duration(24 * 3_600_000),
        &mut errors,
    );
    let backfill = duration(
        src,
        &raw.backfill,
        "backfill",
        DEFAULT_BACKFILL,
        Duration(0),
        MAX_BACKFILL,
        &mut errors,
    );
    let mut stations: Vec<Station> = Vec::new();
    let mut devices: HashSet<DeviceIdx> = HashSet::new();
    for (i, s) in raw.station.iter().enumerate() {
        let line = Some(src.line(s.span().start));
        let s = s.get_ref();
        let mut fail = |field: &str, msg: String| {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some(&format!("station[{i}].{field}")),
                msg,
            ));
        };
        if !valid_code(&s.code) {
            fail(
                "code",
                format!(
                    "`{}` is not a station code: ten capital letters or digits, as `U122401001`",
                    s.code
                ),
            );
        } else if stations.iter().any(|o| o.code == s.code) {
            fail("code", format!("station `{}` is mapped twice", s.code));
        }
        let Some(device) = territory.device_id(&s.device) else {
            fail(
                "device",
                format!("no device `{}` in the territory", s.device),
            );
            continue;
        };
        if !devices.insert(device) {
            fail(
                "device",
                format!("device `{}` is fed by two stations", s.device),
            );
        }
        let kind = territory.kind_of(device);
        if kind.signing == Signing::Required {
            fail(
                "device",
                format!(
                    "kind `{}` requires signed messages, and a station cannot sign with the device's key",
                    kind.id
                ),
            );
        }
        let mut target = |q: Quantity, name: &Option<String>, key: &str| -> Option<Target> {
            let name = name.as_ref()?;
            let Some(f) = kind.field(name) else {
                fail(key, format!("kind `{}` has no field `{name}`", kind.id));
                return None;
            };
            let spec = &kind.fields[f.get()];
            if spec.ty != FieldType::Number {
                fail(key, format!("field `{name}` is not a number"));
                return None;
            }
            let Some(unit) = spec.unit.as_deref() else {
                fail(
                    key,
                    format!(
                        "field `{name}` declares no unit: the {} arrive in {}",
                        key,
                        q.api_unit()
                    ),
                );
                return None;
            };
            match scale(q, unit) {
                Some(scale) => Some(Target {
                    field: Arc::clone(&spec.name),
                    scale,
                }),
                None => {
                    fail(
                        key,
                        format!(
                            "cannot convert {} to `{unit}` (field `{name}`): {}",
                            q.api_unit(),
                            match q {
                                Quantity::Height => "m, cm or mm",
                                Quantity::Flow => "m3/s or l/s",
                            }
                        ),
                    );
                    None
                }
            }
        };
        let height = target(Quantity::Height, &s.height, "height");
        let flow = target(Quantity::Flow, &s.flow, "flow");
        if s.height.is_none() && s.flow.is_none() {
            fail("height", "map `height`, `flow` or both".into());
        }
        stations.push(Station {
            code: s.code.clone(),
            device,
            device_id: Arc::clone(&territory.device(device).id),
            height,
            flow,
        });
    }
    errors.into_result(HubeauConfig {
        url,
        every,
        backfill,
        keep_doubtful: raw.keep_doubtful,
        stations,
    })
}
