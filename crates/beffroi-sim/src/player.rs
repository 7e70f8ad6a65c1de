//! Plays scenarios together on a simulated timeline, lazily.
//!
//! Each (signal, device) pair and each event is a *cursor* in a min-heap ordered by
//! `(offset, scenario, device, format, declaration)`. Draining pops the earliest cursors,
//! merges those of the same scenario, device, instant and format into one message, and
//! pushes each signal cursor back at its next tick. Memory is one cursor per (signal,
//! device) — about 7,000 for the demo background — whatever the duration.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use beffroi_core::{DeviceIdx, Duration, FieldIdx, Territory, Timestamp, Value};
use beffroi_wire::Format;
use rustc_hash::FxHashMap;

use crate::render::{self, Direct, Rfc3339};
use crate::rng::{hash_parts, mix, signed_unit};
use crate::scenario::{Scenario, Signal, Silence};

/// One message as a device would send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Since the play started; the payload's event time is the play's start plus this.
    pub offset: Duration,
    pub device: DeviceIdx,
    pub format: Format,
    pub topic: String,
    pub payload: Vec<u8>,
}

const FORMATS: [Format; 3] = [Format::Senml, Format::Json, Format::Chirpstack];

fn format_code(f: Format) -> u8 {
    match f {
        Format::Senml => 0,
        Format::Json => 1,
        Format::Chirpstack => 2,
    }
}

/// The next message of one (signal, device) pair or of one event. Field order is the
/// heap order: time, then scenario, then device (the documented tie-break), then format
/// (messages that can merge are adjacent), then declaration order in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    at: i64,
    scenario: u32,
    device: u32,
    format: u8,
    /// Index of the signal, or `signals.len() + ` index of the event.
    order: u32,
    /// Seed of the signal's noise on this device.
    noise_key: u64,
}

impl Cursor {
    fn same_message(&self, o: &Cursor) -> bool {
        (self.at, self.scenario, self.device, self.format) == (o.at, o.scenario, o.device, o.format)
    }
}

/// Plays several scenarios together (e.g. background + flood), merged in time order.
pub struct Player {
    territory: Arc<Territory>,
    scenarios: Vec<Arc<Scenario>>,
    start: Timestamp,
    topic_territory: String,
    seed: u64,
    heap: BinaryHeap<Reverse<Cursor>>,
    /// Silence windows by device, with the index of the scenario that declared them.
    silences: FxHashMap<DeviceIdx, Vec<(Silence, u32)>>,
    /// LoRaWAN frame counter of each device, for ChirpStack uplinks.
    fcnt: Vec<u32>,
    duration: Duration,
    fields: Vec<FieldIdx>,
    values: Vec<Value>,
    rfc3339: Rfc3339,
    /// Security signals of every scenario, in time order, and how many were drained.
    security: Vec<(Duration, beffroi_core::SecuritySignal)>,
    security_next: usize,
}

impl Player {
    /// A player of `scenarios` (all parsed against `territory`) starting at `start`;
    /// topics name the territory `territory_id_for_topics`. Noise seed 0.
    pub fn new(
        territory: Arc<Territory>,
        scenarios: Vec<Arc<Scenario>>,
        start: Timestamp,
        territory_id_for_topics: &str,
    ) -> Self {
        Self::with_seed(territory, scenarios, start, territory_id_for_topics, 0)
    }

    /// Like [`Player::new`] with another noise seed: same seed, same bytes.
    pub fn with_seed(
        territory: Arc<Territory>,
        scenarios: Vec<Arc<Scenario>>,
        start: Timestamp,
        territory_id_for_topics: &str,
        seed: u64,
    ) -> Self {
        let n_devices = territory.devices.len();
        let mut heap = Vec::new();
        let mut silences: FxHashMap<DeviceIdx, Vec<(Silence, u32)>> = FxHashMap::default();
        for (si, sc) in scenarios.iter().enumerate() {
            let si = si as u32;
            for (i, sig) in sc.signals.iter().enumerate() {
                // Indices come from parsing against this territory; a scenario parsed
                // against another one must not make the player index out of bounds.
                let field_name = |d: DeviceIdx| -> Option<&str> {
                    let kind = territory
                        .devices
                        .get(d.get())
                        .map(|d| territory.kind(d.kind))?;
                    kind.fields.get(sig.field.get()).map(|f| &*f.name)
                };
                for &d in &sig.devices {
                    let Some(field) = field_name(d) else {
                        debug_assert!(false, "scenario `{}` not of this territory", sc.name);
                        continue;
                    };
                    let phase = if sig.phased { phase(d, sig.every) } else { 0 };
                    let at = sig.start.0 + phase;
                    if at >= sig.end.0 {
                        continue;
                    }
                    let noise_key = if sig.noise > 0.0 {
                        hash_parts(&[&sc.name, &territory.device(d).id, field], seed)
                    } else {
                        0
                    };
                    heap.push(Reverse(Cursor {
                        at,
                        scenario: si,
                        device: d.0,
                        format: format_code(sig.format),
                        order: i as u32,
                        noise_key,
                    }));
                }
            }
            for (j, ev) in sc.events.iter().enumerate() {
                let fields_ok = territory.devices.get(ev.device.get()).is_some_and(|d| {
                    let n = territory.kind(d.kind).fields.len();
                    ev.values.iter().all(|(f, _)| f.get() < n)
                });
                if !fields_ok {
                    debug_assert!(false, "scenario `{}` not of this territory", sc.name);
                    continue;
                }
                heap.push(Reverse(Cursor {
                    at: ev.at.0,
                    scenario: si,
                    device: ev.device.0,
                    format: format_code(ev.format),
                    order: (sc.signals.len() + j) as u32,
                    noise_key: 0,
                }));
            }
            for s in &sc.silences {
                silences.entry(s.device).or_default().push((*s, si));
            }
        }
        let duration = scenarios
            .iter()
            .map(|s| s.duration)
            .max()
            .unwrap_or_default();
        let mut security: Vec<_> = scenarios
            .iter()
            .flat_map(|sc| sc.security.iter().cloned())
            .collect();
        security.sort_by_key(|(at, _)| *at);
        Player {
            territory,
            scenarios,
            start,
            topic_territory: territory_id_for_topics.to_string(),
            seed,
            heap: BinaryHeap::from(heap),
            silences,
            fcnt: vec![0; n_devices],
            duration,
            fields: Vec::new(),
            values: Vec::new(),
            rfc3339: Rfc3339::default(),
            security,
            security_next: 0,
        }
    }

    /// Appends the security signals with offset < `until` (offset, signal), in time order,
    /// and consumes them: what the broker feed and the signature checks would raise.
    pub fn drain_signals_until(
        &mut self,
        until: Duration,
        out: &mut Vec<(Duration, beffroi_core::SecuritySignal)>,
    ) {
        while let Some((at, s)) = self.security.get(self.security_next) {
            if *at >= until {
                break;
            }
            out.push((*at, s.clone()));
            self.security_next += 1;
        }
    }

    /// The longest scenario.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Every message has been drained.
    pub fn is_finished(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offset of the next pending message (possibly one that a silence will drop).
    pub fn next_offset(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(c)| Duration(c.at))
    }

    /// Appends the messages with offset < `until` to `out`, in time order (ties: by
    /// scenario, then device), and consumes them.
    pub fn drain_until(&mut self, until: Duration, out: &mut Vec<Message>) {
        while let Some(&Reverse(head)) = self.heap.peek() {
            if head.at >= until.0 {
                break;
            }
            self.heap.pop();
            let silenced = self.silenced(&head);
            self.fields.clear();
            self.values.clear();
            self.take(head, silenced);
            while let Some(&Reverse(next)) = self.heap.peek() {
                if !next.same_message(&head) {
                    break;
                }
                self.heap.pop();
                self.take(next, silenced);
            }
            if !silenced && !self.fields.is_empty() {
                out.push(self.render(&head));
            }
        }
    }

    /// Whether another scenario than the cursor's silences its device at that instant.
    fn silenced(&self, c: &Cursor) -> bool {
        self.silences.get(&DeviceIdx(c.device)).is_some_and(|ws| {
            ws.iter()
                .any(|(s, owner)| *owner != c.scenario && s.covers(Duration(c.at)))
        })
    }

    /// Adds the cursor's values to the message being built and re-arms it.
    fn take(&mut self, c: Cursor, silenced: bool) {
        let sc = &self.scenarios[c.scenario as usize];
        let order = c.order as usize;
        if let Some(sig) = sc.signals.get(order) {
            if !silenced {
                let v = signal_value(sig, &c);
                set(&mut self.fields, &mut self.values, sig.field, v);
            }
            let next = c.at + sig.every.0;
            if next < sig.end.0 {
                self.heap.push(Reverse(Cursor { at: next, ..c }));
            }
        } else if let Some(ev) = sc.events.get(order - sc.signals.len())
            && !silenced
        {
            for (f, v) in &ev.values {
                set(&mut self.fields, &mut self.values, *f, v.clone());
            }
        }
    }

    fn render(&mut self, c: &Cursor) -> Message {
        let device = DeviceIdx(c.device);
        let format = FORMATS[usize::from(c.format)];
        let mut fcnt = 0;
        if format == Format::Chirpstack
            && let Some(n) = self.fcnt.get_mut(device.get())
        {
            *n = n.wrapping_add(1);
            fcnt = *n;
        }
        let time = self.start.plus(Duration(c.at));
        let dedup = mix(self.seed ^ mix(u64::from(c.device) << 32 | u64::from(fcnt)) ^ c.at as u64);
        let mut out = Direct {
            buf: Vec::with_capacity(96 + 40 * self.fields.len()),
            time,
            fcnt,
            dedup,
            values: &self.values,
            rfc3339: &mut self.rfc3339,
        };
        render::payload(&mut out, &self.territory, device, format, &self.fields);
        Message {
            offset: Duration(c.at),
            device,
            format,
            topic: render::topic(&self.territory, &self.topic_territory, device, format),
            payload: out.buf,
        }
    }
}

/// Sets a field of the message being built; a later value of the same field wins
/// (declaration order: signals, then events).
fn set(fields: &mut Vec<FieldIdx>, values: &mut Vec<Value>, f: FieldIdx, v: Value) {
    match fields.iter().position(|x| *x == f) {
        Some(i) => values[i] = v,
        None => {
            fields.push(f);
            values.push(v);
        }
    }
}

/// Deterministic phase in `[0, every)` of a device's first tick for signals selected by
/// kind, in whole seconds when `every` is at least one: the devices of a kind do not all
/// report at the same instant, and the signals of one device with the same period stay
/// aligned (they merge into one message).
pub(crate) fn phase(d: DeviceIdx, every: Duration) -> i64 {
    let h = mix(0x005E_ED0F_B3FF_0201 ^ u64::from(d.0));
    if every.0 >= 1000 {
        (h % (every.0 / 1000) as u64) as i64 * 1000
    } else if every.0 > 0 {
        (h % every.0 as u64) as i64
    } else {
        0
    }
}

/// The signal's value at the cursor's instant: profile, noise, rounding, clamping.
fn signal_value(sig: &Signal, c: &Cursor) -> Value {
    let (v, computed) = sig.profile.at(Duration(c.at), sig.start, sig.end);
    match v {
        Value::Number(mut x) => {
            let mut round = computed;
            if sig.noise > 0.0 {
                x += sig.noise * signed_unit(mix(c.noise_key ^ c.at as u64));
                round = true;
            }
            if round {
                x = (x * 1000.0).round() / 1000.0;
            }
            Value::Number(x.max(sig.min).min(sig.max))
        }
        other => other,
    }
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field(
                "scenarios",
                &self.scenarios.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("start", &self.start)
            .field("pending_cursors", &self.heap.len())
            .field("next_offset", &self.next_offset())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_in_range_and_whole_seconds() {
        for d in 0..1000 {
            let p = phase(DeviceIdx(d), Duration::from_mins(5));
            assert!((0..300_000).contains(&p));
            assert_eq!(p % 1000, 0);
        }
        assert!((0..500).contains(&phase(DeviceIdx(3), Duration(500))));
    }

    #[test]
    fn phases_spread_devices() {
        let distinct: std::collections::BTreeSet<i64> = (0..100)
            .map(|d| phase(DeviceIdx(d), Duration::from_mins(10)))
            .collect();
        assert!(distinct.len() > 80, "{}", distinct.len());
    }
}
