//! The validated scenario model and the value of a signal's profile at an instant.

use beffroi_core::{DeviceIdx, Duration, FieldIdx, SecuritySignal, Severity, Value};
use beffroi_wire::Format;

/// A validated scenario: periodic signals, one-off events, silences and the incidents it
/// is expected to open. Device and field references are indices into the territory it was
/// parsed against; play it only with that territory.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub title: String,
    pub description: String,
    pub duration: Duration,
    /// No incident other than the expected ones may open.
    pub exclusive: bool,
    pub expects: Vec<Expect>,
    pub(crate) signals: Vec<Signal>,
    pub(crate) events: Vec<Event>,
    pub(crate) silences: Vec<Silence>,
    /// Security signals the edges would raise (broker log, signature checks), in time order.
    pub(crate) security: Vec<(Duration, SecuritySignal)>,
}

impl Scenario {
    /// The silences this scenario imposes on the *other* scenarios played with it.
    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    /// The devices this scenario names one by one (a signal's `device`, an event's), in no
    /// particular order, possibly repeated; not those a signal selects by kind.
    pub fn named_devices(&self) -> impl Iterator<Item = DeviceIdx> + '_ {
        self.signals
            .iter()
            .filter(|s| !s.phased)
            .flat_map(|s| s.devices.iter().copied())
            .chain(self.events.iter().map(|e| e.device))
    }
}

/// An incident the scenario must open. Every criterion given must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub rule: Option<String>,
    pub category: Option<String>,
    pub site: Option<String>,
    /// The incident must reach at least this severity.
    pub min_severity: Option<Severity>,
    /// Opened no later than this offset from the start of the play.
    pub by: Option<Duration>,
}

/// No message from `device` in `[from, to)` (offsets from the start of the play), in every
/// scenario played together with the one that declares it — never in that one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Silence {
    pub device: DeviceIdx,
    pub from: Duration,
    /// `None`: until the end of the play (a parsed scenario always sets it: a silence
    /// without `to` ends with its scenario).
    pub to: Option<Duration>,
}

impl Silence {
    pub fn covers(&self, offset: Duration) -> bool {
        self.from <= offset && self.to.is_none_or(|to| offset < to)
    }
}

/// A periodic series of one field on one or several devices.
#[derive(Clone, Debug)]
pub(crate) struct Signal {
    pub(crate) devices: Vec<DeviceIdx>,
    /// Selected by kind: each device's ticks are shifted by a phase derived from its index.
    pub(crate) phased: bool,
    pub(crate) field: FieldIdx,
    pub(crate) every: Duration,
    pub(crate) start: Duration,
    /// Exclusive.
    pub(crate) end: Duration,
    pub(crate) profile: Profile,
    /// Half-width of the uniform noise (numbers only; 0 for none).
    pub(crate) noise: f64,
    /// Physical range of the field; generated numbers are clamped into it.
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) format: Format,
}

#[derive(Clone, Debug)]
pub(crate) enum Profile {
    Constant(Value),
    /// Interpolated from `from` at the signal's start to `to` at its end.
    Linear {
        from: f64,
        to: f64,
    },
    /// `(offset from the start of the play, value)`, increasing offsets; each value is held
    /// until the next step (the first one also before it).
    Steps(Vec<(Duration, Value)>),
}

impl Profile {
    /// The value at `t`, before noise; `true` when it was computed (and may be rounded).
    pub(crate) fn at(&self, t: Duration, start: Duration, end: Duration) -> (Value, bool) {
        match self {
            Profile::Constant(v) => (v.clone(), false),
            Profile::Linear { from, to } => {
                let span = (end.0 - start.0).max(1) as f64;
                let frac = ((t.0 - start.0) as f64 / span).clamp(0.0, 1.0);
                (Value::Number(from + (to - from) * frac), true)
            }
            Profile::Steps(steps) => {
                let i = steps.partition_point(|(at, _)| *at <= t).saturating_sub(1);
                let v = steps.get(i).map_or(Value::Bool(false), |(_, v)| v.clone());
                (v, false)
            }
        }
    }
}

/// One message with the given values.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) at: Duration,
    pub(crate) device: DeviceIdx,
    pub(crate) values: Vec<(FieldIdx, Value)>,
    pub(crate) format: Format,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_hold_until_the_next_one() {
        let p = Profile::Steps(vec![
            (Duration::from_mins(5), Value::Number(1.0)),
            (Duration::from_mins(10), Value::Number(2.0)),
        ]);
        let at = |m| {
            p.at(
                Duration::from_mins(m),
                Duration::ZERO,
                Duration::from_mins(60),
            )
            .0
        };
        assert_eq!(at(0), Value::Number(1.0));
        assert_eq!(at(9), Value::Number(1.0));
        assert_eq!(at(10), Value::Number(2.0));
        assert_eq!(at(59), Value::Number(2.0));
    }

    #[test]
    fn linear_goes_from_start_to_end() {
        let p = Profile::Linear { from: 1.0, to: 3.0 };
        let (s, e) = (Duration::from_mins(10), Duration::from_mins(30));
        assert_eq!(p.at(s, s, e).0, Value::Number(1.0));
        assert_eq!(p.at(Duration::from_mins(20), s, e).0, Value::Number(2.0));
    }
}
