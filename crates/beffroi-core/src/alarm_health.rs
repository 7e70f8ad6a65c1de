//! Alarm health: the figures control-room standards (ISA-18.2, EEMUA 191) watch per
//! operator — how many alarms arrive per 10 minutes (peak and average), how many stand
//! unacknowledged, how many are stale and which keys chatter. Pure: the caller hands in the
//! arrivals (from the incidents' logs) and the open incidents of one scope.

use std::collections::HashMap;

use crate::alarm::DedupKey;
use crate::incident::{Actor, Incident, LogEntry, Status};
use crate::time::{Duration, Timestamp};

/// The window alarm rates are counted over.
pub const WINDOW: Duration = Duration::from_mins(10);
/// More than this many new alarms in one window, for one operator, is a flood.
pub const FLOOD_PER_WINDOW: usize = 10;
/// The steady-state target: about one new alarm per window.
pub const TARGET_PER_WINDOW: usize = 1;
/// The window chattering is counted over.
pub const CHATTER_WINDOW: Duration = Duration::from_mins(60);
/// A key that arrives more than this many times within [`CHATTER_WINDOW`] chatters.
pub const CHATTER_ARRIVALS: usize = 3;
/// An incident open for longer than this is stale.
pub const STALE_AFTER: Duration = Duration::from_mins(24 * 60);
/// The default period of the figures.
pub const DEFAULT_PERIOD: Duration = Duration::from_mins(24 * 60);

/// One alarm reaching the operator: an incident opened, re-opened by its rule after it was
/// resolved, or raised again while still open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub at: Timestamp,
    pub key: DedupKey,
}

/// Whether a log entry records an alarm arriving: `opened`, `raised_again`, and `reopened`
/// when a rule re-opened it (a person re-opening an incident is not a new alarm).
pub fn is_arrival(entry: &LogEntry) -> bool {
    match &*entry.action {
        "opened" | "raised_again" => true,
        "reopened" => !matches!(entry.actor, Actor::User(_)),
        _ => false,
    }
}

/// The figures of one scope over `[since, until)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlarmHealth {
    pub since: Timestamp,
    pub until: Timestamp,
    /// Alarms that arrived in the period.
    pub arrivals: usize,
    /// Consecutive windows of [`WINDOW`] from `since` covering the period (the last one
    /// may be partial).
    pub windows: usize,
    /// `arrivals / windows` (0 for an empty period).
    pub average_per_window: f64,
    /// The most alarms that arrived within any [`WINDOW`] of the period (sliding: the
    /// worst window, wherever it starts).
    pub peak_per_window: usize,
    /// Start of that worst window: the time of its first alarm.
    pub peak_at: Option<Timestamp>,
    /// Consecutive windows from `since` holding more than [`FLOOD_PER_WINDOW`] alarms.
    pub flood_windows: usize,
    /// Open incidents not acknowledged (still `new`).
    pub standing: usize,
    /// Open incidents opened more than [`STALE_AFTER`] before `until`.
    pub stale: usize,
    /// Keys that arrived more than [`CHATTER_ARRIVALS`] times within one [`CHATTER_WINDOW`]
    /// of the period.
    pub chattering: usize,
}

impl AlarmHealth {
    /// Whether the worst window is a flood.
    pub fn flood(&self) -> bool {
        self.peak_per_window > FLOOD_PER_WINDOW
    }
}

/// The most times within any window of `width` (`t` sorted), and the time the first of them
/// arrived.
fn sliding_peak(t: &[Timestamp], width: Duration) -> (usize, Option<Timestamp>) {
    let (mut best, mut at, mut lo) = (0, None, 0);
    for hi in 0..t.len() {
        while t[hi].since(t[lo]).millis() >= width.millis() {
            lo += 1;
        }
        if hi + 1 - lo > best {
            best = hi + 1 - lo;
            at = Some(t[lo]);
        }
    }
    (best, at)
}

/// Computes the figures over `[since, until)` from the arrivals (any order; those outside
/// the period are ignored) and the incidents (each open one counts once, by id, for
/// standing and stale).
pub fn measure<'a>(
    arrivals: &[Arrival],
    incidents: impl IntoIterator<Item = &'a Incident>,
    since: Timestamp,
    until: Timestamp,
) -> AlarmHealth {
    let mut h = AlarmHealth {
        since,
        until,
        ..Default::default()
    };
    let span = until.millis().saturating_sub(since.millis()).max(0);
    let w = WINDOW.millis();
    h.windows = usize::try_from((span + w - 1) / w).unwrap_or(usize::MAX);
    let inside = |a: &&Arrival| a.at >= since && a.at < until;

    let mut times: Vec<Timestamp> = arrivals.iter().filter(inside).map(|a| a.at).collect();
    times.sort_unstable();
    h.arrivals = times.len();
    if h.windows > 0 {
        h.average_per_window = h.arrivals as f64 / h.windows as f64;
    }
    (h.peak_per_window, h.peak_at) = sliding_peak(&times, WINDOW);
    let mut per_window: HashMap<i64, usize> = HashMap::new();
    for t in &times {
        *per_window.entry(t.since(since).millis() / w).or_default() += 1;
    }
    h.flood_windows = per_window
        .values()
        .filter(|n| **n > FLOOD_PER_WINDOW)
        .count();

    let mut by_key: HashMap<&DedupKey, Vec<Timestamp>> = HashMap::new();
    for a in arrivals.iter().filter(inside) {
        by_key.entry(&a.key).or_default().push(a.at);
    }
    for t in by_key.values_mut() {
        t.sort_unstable();
        h.chattering += usize::from(sliding_peak(t, CHATTER_WINDOW).0 > CHATTER_ARRIVALS);
    }

    let mut seen = std::collections::HashSet::new();
    for i in incidents {
        if !i.status.is_open() || !seen.insert(i.id) {
            continue;
        }
        h.standing += usize::from(i.status == Status::New);
        h.stale += usize::from(until.since(i.opened_at).millis() > STALE_AFTER.millis());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::IncidentId;
    use crate::incident::tests_support::incident;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;

    fn arrival(at: i64, key: &str) -> Arrival {
        Arrival {
            at: Timestamp(at),
            key: DedupKey(key.into()),
        }
    }

    fn day() -> (Timestamp, Timestamp) {
        (Timestamp(0), Timestamp(24 * 60 * MIN))
    }

    #[test]
    fn arrivals_are_openings_and_raises_not_a_person_reopening() {
        let entry = |actor: Actor, action: &str| LogEntry {
            at: Timestamp(0),
            actor,
            action: action.into(),
            detail: crate::SafeText::default(),
            message: None,
        };
        let rule = || Actor::Rule("r".into());
        assert!(is_arrival(&entry(rule(), "opened")));
        assert!(is_arrival(&entry(rule(), "raised_again")));
        assert!(is_arrival(&entry(rule(), "reopened")));
        assert!(!is_arrival(&entry(Actor::User("op".into()), "reopened")));
        assert!(!is_arrival(&entry(rule(), "escalated")));
        assert!(!is_arrival(&entry(rule(), "auto_resolved")));
        assert!(!is_arrival(&entry(Actor::System, "reminded")));
    }

    #[test]
    fn the_worst_window_is_found_wherever_it_starts() {
        let (since, until) = day();
        // 6 alarms at 0:08–0:09 and 6 at 0:11–0:12: 6 per aligned window, 12 in the ten
        // minutes from 0:08.
        let mut a: Vec<Arrival> = (0..6).map(|i| arrival(8 * MIN + i * 10_000, "a")).collect();
        a.extend((0..6).map(|i| arrival(11 * MIN + i * 10_000, "b")));
        let h = measure(&a, [], since, until);
        assert_eq!(h.arrivals, 12);
        assert_eq!(h.windows, 144);
        assert_eq!(h.peak_per_window, 12);
        assert_eq!(h.peak_at, Some(Timestamp(8 * MIN)));
        assert!(h.flood());
        // Neither aligned window is over the threshold.
        assert_eq!(h.flood_windows, 0);
        // An alarm exactly ten minutes after another is in the next window.
        let h = measure(&[arrival(0, "a"), arrival(10 * MIN, "a")], [], since, until);
        assert_eq!(h.peak_per_window, 1);
    }

    #[test]
    fn arrivals_outside_the_period_do_not_count() {
        let h = measure(
            &[
                arrival(-1, "a"),
                arrival(5 * MIN, "a"),
                arrival(30 * MIN, "a"),
            ],
            [],
            Timestamp(0),
            Timestamp(30 * MIN),
        );
        assert_eq!((h.arrivals, h.windows, h.peak_per_window), (1, 3, 1));
        assert!((h.average_per_window - 1.0 / 3.0).abs() < 1e-9);
        let empty = measure(&[], [], Timestamp(5), Timestamp(5));
        assert_eq!((empty.windows, empty.average_per_window), (0, 0.0));
        assert_eq!(empty.peak_at, None);
    }

    #[test]
    fn chattering_is_more_than_three_arrivals_of_a_key_within_an_hour() {
        let (since, until) = day();
        // `a`: 4 arrivals in 59 minutes; `b`: 4 arrivals over 61 minutes; `c`: 3 arrivals.
        let mut a: Vec<Arrival> = [0, 20, 40, 59]
            .iter()
            .map(|m| arrival(m * MIN, "a"))
            .collect();
        a.extend([0, 20, 40, 61].iter().map(|m| arrival(m * MIN, "b")));
        a.extend([0, 1, 2].iter().map(|m| arrival(m * MIN, "c")));
        assert_eq!(measure(&a, [], since, until).chattering, 1);
    }

    #[test]
    fn standing_and_stale_count_open_incidents_once() {
        let until = Timestamp(48 * 60 * MIN);
        let mut fresh = incident(IncidentId(1), None, Status::New);
        fresh.opened_at = until.minus(Duration::from_mins(60));
        let mut old_ack = incident(IncidentId(2), None, Status::Acknowledged);
        old_ack.opened_at = until.minus(Duration::from_mins(25 * 60));
        old_ack.acknowledged_at = Some(old_ack.opened_at);
        let mut old_new = incident(IncidentId(3), None, Status::New);
        old_new.opened_at = Timestamp(0);
        let mut resolved = incident(IncidentId(4), None, Status::Resolved);
        resolved.opened_at = Timestamp(0);
        let h = measure(
            &[],
            [&fresh, &old_ack, &old_new, &resolved, &fresh],
            until.minus(DEFAULT_PERIOD),
            until,
        );
        assert_eq!((h.standing, h.stale), (2, 2));
    }

    proptest! {
        #[test]
        fn peak_is_at_least_the_average_and_at_most_the_total(
            offsets in proptest::collection::vec(0i64..24 * 60 * MIN, 0..200),
            keys in proptest::collection::vec(0u8..5, 200),
        ) {
            let (since, until) = day();
            let a: Vec<Arrival> = offsets
                .iter()
                .zip(&keys)
                .map(|(t, k)| arrival(*t, &format!("k{k}")))
                .collect();
            let h = measure(&a, [], since, until);
            prop_assert!(h.peak_per_window as f64 >= h.average_per_window);
            prop_assert!(h.peak_per_window <= h.arrivals);
            prop_assert_eq!(h.arrivals, a.len());
            // The worst window holds exactly the peak, by a plain count.
            if let Some(at) = h.peak_at {
                let n = a
                    .iter()
                    .filter(|x| x.at >= at && x.at.since(at).millis() < WINDOW.millis())
                    .count();
                prop_assert_eq!(n, h.peak_per_window);
            }
            // No window starting at an arrival holds more.
            for x in &a {
                let n = a
                    .iter()
                    .filter(|y| y.at >= x.at && y.at.since(x.at).millis() < WINDOW.millis())
                    .count();
                prop_assert!(n <= h.peak_per_window);
            }
        }

        #[test]
        fn a_flood_of_k_alarms_in_one_window_gives_a_peak_of_k(
            k in 1usize..60,
            start in 0i64..23 * 60 * MIN,
            spread in proptest::collection::vec(0i64..WINDOW.millis(), 60),
            hours in proptest::collection::btree_set(0i64..24, 0..24),
            minute in 0i64..60,
        ) {
            let (since, until) = day();
            let mut a: Vec<Arrival> = spread[..k]
                .iter()
                .map(|d| arrival(start + d, "flood"))
                .collect();
            // At most one other alarm an hour, each a window or more away from the flood.
            a.extend(
                hours
                    .iter()
                    .map(|h| (h * 60 + minute) * MIN)
                    .filter(|t| *t + WINDOW.millis() <= start || *t >= start + 2 * WINDOW.millis())
                    .map(|t| arrival(t, &format!("quiet{t}"))),
            );
            let h = measure(&a, [], since, until);
            prop_assert_eq!(h.peak_per_window, k);
            prop_assert_eq!(h.flood(), k > FLOOD_PER_WINDOW);
            prop_assert_eq!(h.chattering, usize::from(k > CHATTER_ARRIVALS));
        }
    }
}
