//! What fired a rule, as structure: the evidence an operator reads beside the incident.
//!
//! A [`Trigger`] is produced by the rules engine with the alarm that opens an incident and
//! stored on the incident at its opening; it is never overwritten afterwards. What moves
//! while the incident is open is the incident's `peak` and `current` values of the
//! triggering field ([`Trigger::is_worse`] says which way "worse" goes).

use std::sync::Arc;

use crate::territory::DeviceIdx;
use crate::time::{Duration, Timestamp};

/// The kind of rule that fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggerKind {
    /// A reading compared with a threshold (sustained or not).
    Threshold,
    /// A device stayed silent.
    Absence,
    /// A condition held `count` times within a window.
    Rate,
    /// Several conditions held within a window, at one site or within a radius.
    Correlation,
    /// The sum of several counters reached a threshold.
    Aggregate,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 5] = [
        TriggerKind::Threshold,
        TriggerKind::Absence,
        TriggerKind::Rate,
        TriggerKind::Correlation,
        TriggerKind::Aggregate,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Threshold => "threshold",
            TriggerKind::Absence => "absence",
            TriggerKind::Rate => "rate",
            TriggerKind::Correlation => "correlation",
            TriggerKind::Aggregate => "aggregate",
        }
    }
    pub fn parse(s: &str) -> Option<TriggerKind> {
        TriggerKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The comparison of the triggering condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggerOp {
    Above,
    Below,
    Between,
    Outside,
    Equals,
    NotEquals,
}

impl TriggerOp {
    pub const ALL: [TriggerOp; 6] = [
        TriggerOp::Above,
        TriggerOp::Below,
        TriggerOp::Between,
        TriggerOp::Outside,
        TriggerOp::Equals,
        TriggerOp::NotEquals,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerOp::Above => "above",
            TriggerOp::Below => "below",
            TriggerOp::Between => "between",
            TriggerOp::Outside => "outside",
            TriggerOp::Equals => "equals",
            TriggerOp::NotEquals => "not_equals",
        }
    }
    pub fn parse(s: &str) -> Option<TriggerOp> {
        TriggerOp::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The structured evidence of a rule firing: which device, which field, which value
/// against which condition, over which window, when.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// The device whose reading (or silence) fired the rule; for a correlation, the last
    /// one; none for an aggregate.
    pub device: Option<DeviceIdx>,
    /// The field compared (none for an absence or an aggregate).
    pub field: Option<Arc<str>>,
    /// The value that fired, as it may be shown (a people count below the minimum group
    /// size is `None`, like a non-numeric value); the sum for an aggregate.
    pub value: Option<f64>,
    pub op: Option<TriggerOp>,
    /// The threshold (`Above`, `Below`), the interval's low bound (`Between`, `Outside`),
    /// the numeric value compared with (`Equals`, `NotEquals`), the warning level of an
    /// aggregate.
    pub threshold: Option<f64>,
    /// The interval's high bound (`Between`, `Outside`); the critical level of an aggregate.
    pub threshold_high: Option<f64>,
    /// The rule's window: how long a threshold was sustained, the silence of an absence,
    /// the window of a rate or a correlation.
    pub window: Option<Duration>,
    /// A rate's count, or how many conditions a correlation joins.
    pub count: Option<u32>,
    /// The radius of a correlation within a radius, in metres.
    pub radius_m: Option<f64>,
    /// Event time of the reading (or processing time of the tick) that fired the rule.
    pub at: Timestamp,
}

impl Trigger {
    /// A trigger of `kind` at `at` with nothing else known yet.
    pub fn new(kind: TriggerKind, at: Timestamp) -> Self {
        Trigger {
            kind,
            device: None,
            field: None,
            value: None,
            op: None,
            threshold: None,
            threshold_high: None,
            window: None,
            count: None,
            radius_m: None,
            at,
        }
    }

    /// Whether `v` is further past the condition than `than`: lower for `Below`, further
    /// out of the interval for `Outside`, higher otherwise.
    pub fn is_worse(&self, v: f64, than: f64) -> bool {
        match (self.op, self.threshold, self.threshold_high) {
            (Some(TriggerOp::Below), _, _) => v < than,
            (Some(TriggerOp::Outside), Some(lo), Some(hi)) => {
                let out = |x: f64| (lo - x).max(x - hi);
                out(v) > out(than)
            }
            _ => v > than,
        }
    }

    /// Whether a reading of `device`'s `field` is a reading of the triggering series.
    pub fn watches(&self, device: DeviceIdx, field: &str) -> bool {
        self.device == Some(device) && self.field.as_deref() == Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worse_follows_the_direction_of_the_condition() {
        let mut t = Trigger::new(TriggerKind::Threshold, Timestamp(0));
        t.op = Some(TriggerOp::Above);
        t.threshold = Some(3.0);
        assert!(t.is_worse(3.5, 3.2));
        assert!(!t.is_worse(3.1, 3.2));
        t.op = Some(TriggerOp::Below);
        assert!(t.is_worse(-2.0, -1.0));
        assert!(!t.is_worse(0.0, -1.0));
        t.op = Some(TriggerOp::Outside);
        t.threshold = Some(10.0);
        t.threshold_high = Some(20.0);
        assert!(t.is_worse(5.0, 22.0), "5 is 5 out, 22 only 2");
        assert!(!t.is_worse(21.0, 8.0));
    }

    #[test]
    fn names_round_trip() {
        for k in TriggerKind::ALL {
            assert_eq!(TriggerKind::parse(k.as_str()), Some(k));
        }
        for o in TriggerOp::ALL {
            assert_eq!(TriggerOp::parse(o.as_str()), Some(o));
        }
        assert_eq!(TriggerKind::parse("nope"), None);
    }
}
