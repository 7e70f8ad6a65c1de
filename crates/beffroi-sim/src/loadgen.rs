//! Steady synthetic load for benchmarks.
//!
//! Each device's payload is recorded once as a template; a message only fills in the
//! time, the frame counter, a deduplication id and fresh values, so that generation costs
//! far less than ingesting (well above 100,000 messages/s on one core).

use std::sync::Arc;

use beffroi_core::{DeviceIdx, Duration, FieldIdx, FieldType, Territory, Timestamp, Value};
use beffroi_wire::Format;

use crate::player::Message;
use crate::render::{self, Rfc3339, Template, write_number};
use crate::rng::SplitMix64;
use crate::scenario::{Profile, Scenario};

/// Why a load generator cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadGenError {
    #[error("the territory has no device to generate load for")]
    NoDevice,
    #[error("format `chirpstack` needs devices with a dev_eui; the territory has none")]
    NoDevEui,
}

/// 2025-01-01T00:00:00Z: the default start of event times, in the past of any real clock
/// (ingest refuses event times ahead of reception).
pub const DEFAULT_LOAD_START: Timestamp = Timestamp(1_735_689_600_000);

/// How one field's values are drawn.
#[derive(Clone, Copy, Debug)]
enum FieldGen {
    /// Uniform in `base ± spread`, clamped into `[min, max]`.
    Number {
        base: f64,
        spread: f64,
        min: f64,
        max: f64,
    },
    Bool(bool),
}

#[derive(Clone, Debug)]
struct DeviceGen {
    device: DeviceIdx,
    topic: String,
    template: Template,
    /// The fields of the template, in its order.
    fields: Vec<FieldIdx>,
    gens: Vec<FieldGen>,
    fcnt: u32,
}

/// Steady synthetic load: one message per call, over all devices of the territory in
/// round robin (for ChirpStack, the devices that have a dev_eui), each carrying every
/// number and boolean field of its kind with in-range values, in one format.
///
/// By default numbers are drawn around the first quarter of their physical range and
/// booleans are `false`; [`LoadGenerator::with_baseline`] takes realistic values from a
/// scenario (the demo background). The caller sets the rate through the offsets it asks
/// for: message `i` at `i / rate` seconds gives `rate` messages/s.
#[derive(Clone, Debug)]
pub struct LoadGenerator {
    territory: Arc<Territory>,
    format: Format,
    start: Timestamp,
    rng: SplitMix64,
    devices: Vec<DeviceGen>,
    /// Position in `devices` of each territory device, if it takes part.
    position: Vec<Option<u32>>,
    next: usize,
    rfc3339: Rfc3339,
}

impl LoadGenerator {
    /// A generator over every device of `territory`; topics name `territory.id`, event
    /// times start at [`DEFAULT_LOAD_START`].
    ///
    /// # Panics
    ///
    /// If the territory has no device (with a dev_eui, for ChirpStack); use
    /// [`LoadGenerator::try_new`] to handle that case.
    pub fn new(territory: Arc<Territory>, format: Format, seed: u64) -> Self {
        Self::try_new(territory, format, seed).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_new(
        territory: Arc<Territory>,
        format: Format,
        seed: u64,
    ) -> Result<Self, LoadGenError> {
        let t = &*territory;
        let mut devices = Vec::with_capacity(t.devices.len());
        let mut position = vec![None; t.devices.len()];
        for (i, d) in t.devices.iter().enumerate() {
            if format == Format::Chirpstack && d.dev_eui.is_none() {
                continue;
            }
            let device = DeviceIdx(i as u32);
            let kind = t.kind(d.kind);
            let (fields, gens): (Vec<FieldIdx>, Vec<FieldGen>) = kind
                .fields
                .iter()
                .enumerate()
                .filter_map(|(fi, f)| {
                    let field_gen = match f.ty {
                        FieldType::Number => {
                            let (min, max) = (
                                f.min.unwrap_or(f64::NEG_INFINITY),
                                f.max.unwrap_or(f64::INFINITY),
                            );
                            let (lo, hi) = (f.min.unwrap_or(0.0), f.max.unwrap_or(100.0));
                            FieldGen::Number {
                                base: lo + (hi - lo) * 0.25,
                                spread: (hi - lo) * 0.02,
                                min,
                                max,
                            }
                        }
                        FieldType::Bool => FieldGen::Bool(false),
                        FieldType::Text => return None,
                    };
                    Some((FieldIdx(fi as u16), field_gen))
                })
                .unzip();
            if fields.is_empty() {
                continue;
            }
            position[i] = Some(devices.len() as u32);
            devices.push(DeviceGen {
                device,
                topic: render::topic(t, &t.id, device, format),
                template: Template::record(t, device, format, &fields),
                fields,
                gens,
                fcnt: 0,
            });
        }
        if devices.is_empty() {
            return Err(if format == Format::Chirpstack && !t.devices.is_empty() {
                LoadGenError::NoDevEui
            } else {
                LoadGenError::NoDevice
            });
        }
        Ok(LoadGenerator {
            territory,
            format,
            start: DEFAULT_LOAD_START,
            rng: SplitMix64::new(seed),
            devices,
            position,
            next: 0,
            rfc3339: Rfc3339::default(),
        })
    }

    /// Event times are `start + offset`.
    pub fn with_start(mut self, start: Timestamp) -> Self {
        self.start = start;
        self
    }

    /// Topics name this territory id instead of the territory's own.
    pub fn with_topic_territory(mut self, territory_id: &str) -> Self {
        for d in &mut self.devices {
            d.topic = render::topic(&self.territory, territory_id, d.device, self.format);
        }
        self
    }

    /// Takes each field's typical value and noise from the signals of `scenario` (parsed
    /// against the same territory): a constant, the start of a linear ramp, the first step.
    pub fn with_baseline(mut self, scenario: &Scenario) -> Self {
        for sig in &scenario.signals {
            let base = match &sig.profile {
                Profile::Constant(v) => v.clone(),
                Profile::Linear { from, .. } => Value::Number(*from),
                Profile::Steps(steps) => match steps.first() {
                    Some((_, v)) => v.clone(),
                    None => continue,
                },
            };
            for d in &sig.devices {
                let Some(Some(p)) = self.position.get(d.get()) else {
                    continue;
                };
                let dg = &mut self.devices[*p as usize];
                let Some(k) = dg.fields.iter().position(|f| *f == sig.field) else {
                    continue;
                };
                dg.gens[k] = match (&base, dg.gens[k]) {
                    (Value::Number(x), FieldGen::Number { min, max, .. }) => FieldGen::Number {
                        base: *x,
                        spread: sig.noise,
                        min,
                        max,
                    },
                    (Value::Bool(b), FieldGen::Bool(_)) => FieldGen::Bool(*b),
                    (_, keep) => keep,
                };
            }
        }
        self
    }

    /// Number of devices the round robin goes through.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// The next message of the round robin, with event time `start + offset`.
    pub fn next_message(&mut self, offset: Duration) -> Message {
        let i = self.next;
        self.next = if i + 1 >= self.devices.len() {
            0
        } else {
            i + 1
        };
        let LoadGenerator {
            devices,
            rng,
            start,
            format,
            rfc3339,
            ..
        } = self;
        let dg = &mut devices[i];
        dg.fcnt = dg.fcnt.wrapping_add(1);
        let dedup = if *format == Format::Chirpstack {
            rng.next_u64()
        } else {
            0
        };
        let mut payload = Vec::with_capacity(dg.template.size_hint());
        let gens = &dg.gens;
        dg.template.fill(
            &mut payload,
            rfc3339,
            start.plus(offset),
            dg.fcnt,
            dedup,
            |k, buf| match gens.get(k) {
                Some(FieldGen::Number {
                    base,
                    spread,
                    min,
                    max,
                }) => {
                    let x = base + spread * rng.next_signed_unit();
                    let x = ((x * 100.0).round() / 100.0).max(*min).min(*max);
                    write_number(buf, x);
                }
                Some(FieldGen::Bool(true)) => buf.extend_from_slice(b"true"),
                Some(FieldGen::Bool(false)) | None => buf.extend_from_slice(b"false"),
            },
        );
        Message {
            offset,
            device: dg.device,
            format: *format,
            topic: dg.topic.clone(),
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::territory::fixture;

    #[test]
    fn round_robin_over_devices() {
        let t = Arc::new(fixture::small());
        let mut g = LoadGenerator::new(t.clone(), Format::Senml, 1);
        let ids: Vec<u32> = (0..6)
            .map(|i| g.next_message(Duration(i)).device.0)
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 0, 1, 2]);
        let g = LoadGenerator::new(t.clone(), Format::Chirpstack, 1);
        assert_eq!(g.device_count(), 1, "only g1 has a dev_eui");
        let mut empty = Territory::new("e", "E");
        empty.add_kind(t.kinds[0].clone()).expect("fresh");
        assert_eq!(
            LoadGenerator::try_new(Arc::new(empty), Format::Json, 0).err(),
            Some(LoadGenError::NoDevice)
        );
    }
}
