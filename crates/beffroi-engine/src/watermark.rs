//! Idempotent evaluation: the event time of the latest evaluated observation of every
//! (device, field) series ([ADR 0019](../../../docs/adr/0019-bounded-wal-and-the-store-as-truth.md)).
//!
//! An observation at or before its series' watermark is stored (the store absorbs an exact
//! copy) but not evaluated again:
//! - **same time** — a redelivered copy (MQTT at-least-once, a retry after a failed
//!   commit): the rules, the sentinel and the events already saw it;
//! - **older** — a reading arriving late: the rules see each series in time order or not
//!   at all, so a stale reading can neither reopen nor resolve an incident; the sentinel
//!   weighs only its timing (clock skew).
//!
//! The watermarks are written with the batch that carries the observations
//! (`device_state.watermarks`) and read back at start and after a failed commit, so the rule
//! holds across restarts.

use beffroi_core::{DeviceIdx, FieldIdx, Territory, Timestamp};

use crate::store::Watermark;

/// Where an observation stands against its series' watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Later than anything evaluated: evaluate it.
    Fresh,
    /// Same event time as the last evaluated one: a copy.
    Duplicate,
    /// Older than the last evaluated one.
    Late,
}

/// One watermark per (device, field), in one flat array (8 bytes a series).
#[derive(Debug)]
pub struct Watermarks {
    /// Index of each device's first field in `times`.
    offsets: Vec<u32>,
    times: Vec<i64>,
}

impl Watermarks {
    pub fn new(t: &Territory) -> Watermarks {
        let mut offsets = Vec::with_capacity(t.devices.len() + 1);
        let mut n = 0u32;
        for d in &t.devices {
            offsets.push(n);
            n = n.saturating_add(t.kinds[d.kind.get()].fields.len() as u32);
        }
        offsets.push(n);
        Watermarks {
            offsets,
            times: vec![i64::MIN; n as usize],
        }
    }

    fn slot(&self, d: DeviceIdx, f: FieldIdx) -> Option<usize> {
        let start = *self.offsets.get(d.get())? as usize;
        let end = *self.offsets.get(d.get() + 1)? as usize;
        let i = start + f.get();
        (i < end).then_some(i)
    }

    /// Classifies an observation and, when it is fresh, raises the watermark to its time.
    pub fn advance(&mut self, d: DeviceIdx, f: FieldIdx, at: Timestamp) -> Freshness {
        let Some(i) = self.slot(d, f) else {
            return Freshness::Fresh;
        };
        let mark = self.times[i];
        if at.0 > mark {
            self.times[i] = at.0;
            Freshness::Fresh
        } else if at.0 == mark {
            Freshness::Duplicate
        } else {
            Freshness::Late
        }
    }

    /// Reinstates stored watermarks (never lowering one).
    pub fn restore(&mut self, marks: &[Watermark]) {
        for m in marks {
            if let Some(i) = self.slot(m.device, m.field) {
                self.times[i] = self.times[i].max(m.time.0);
            }
        }
    }

    /// The watermark of a series, if anything was evaluated.
    pub fn get(&self, d: DeviceIdx, f: FieldIdx) -> Option<Timestamp> {
        self.slot(d, f)
            .map(|i| self.times[i])
            .filter(|t| *t != i64::MIN)
            .map(Timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::territory::fixture;
    use proptest::prelude::*;

    #[test]
    fn copies_and_late_readings_are_told_apart_per_series() {
        let t = fixture::small();
        let mut w = Watermarks::new(&t);
        let d = DeviceIdx(0);
        assert_eq!(w.advance(d, FieldIdx(0), Timestamp(10)), Freshness::Fresh);
        assert_eq!(
            w.advance(d, FieldIdx(0), Timestamp(10)),
            Freshness::Duplicate
        );
        assert_eq!(w.advance(d, FieldIdx(0), Timestamp(9)), Freshness::Late);
        assert_eq!(w.advance(d, FieldIdx(0), Timestamp(11)), Freshness::Fresh);
        assert_eq!(w.get(d, FieldIdx(0)), Some(Timestamp(11)));
        // Another device's series is its own.
        assert_eq!(
            w.advance(DeviceIdx(1), FieldIdx(0), Timestamp(5)),
            Freshness::Fresh
        );
        w.restore(&[Watermark {
            device: d,
            field: FieldIdx(0),
            time: Timestamp(3),
        }]);
        assert_eq!(
            w.get(d, FieldIdx(0)),
            Some(Timestamp(11)),
            "restore never lowers"
        );
    }

    proptest! {
        /// Whatever the order of arrival, exactly the readings that are later than every
        /// earlier one are fresh, and each distinct time is fresh at most once.
        #[test]
        fn fresh_readings_form_the_running_maximum(times in proptest::collection::vec(0i64..50, 0..60)) {
            let t = fixture::small();
            let mut w = Watermarks::new(&t);
            let mut max = i64::MIN;
            for at in times {
                let got = w.advance(DeviceIdx(0), FieldIdx(0), Timestamp(at));
                let want = if at > max { Freshness::Fresh } else if at == max { Freshness::Duplicate } else { Freshness::Late };
                prop_assert_eq!(got, want);
                max = max.max(at);
            }
        }
    }
}
