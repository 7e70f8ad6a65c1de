//! The command post's key figures: open incidents by severity, mean times to acknowledge
//! and to resolve since the start of the day.

use std::collections::HashSet;

use crate::incident::{Incident, Severity, Status};
use crate::time::{Duration, Timestamp};

/// Offset of local time used for "today": Europe/Paris approximated as UTC+1 all year (an
/// hour off in summer time, which shifts only the day boundary).
pub const LOCAL_OFFSET: Duration = Duration::from_mins(60);

/// The start of the local day (`offset` east of UTC) that contains `now`.
pub fn local_midnight(now: Timestamp, offset: Duration) -> Timestamp {
    const DAY: i64 = 86_400_000;
    let local = now.millis() + offset.millis();
    Timestamp(local.div_euclid(DAY) * DAY - offset.millis())
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kpis {
    /// Open incidents, indexed by `Severity as usize`.
    pub open_by_severity: [usize; 4],
    pub open_total: usize,
    /// Open and still `new`.
    pub unacknowledged: usize,
    /// Open and escalated to the supervisor.
    pub escalated: usize,
    /// Mean seconds from opening to acknowledgement, over incidents acknowledged since
    /// `since`.
    pub mtta_s: Option<f64>,
    /// Mean seconds from opening to resolution, over incidents resolved since `since`.
    pub mttr_s: Option<f64>,
    pub acknowledged_since: usize,
    pub resolved_since: usize,
}

/// Computes the figures from incidents (each counted once by id, whatever the order):
/// give it the open ones and every one updated since `since`.
pub fn kpis<'a>(incidents: impl IntoIterator<Item = &'a Incident>, since: Timestamp) -> Kpis {
    let mut k = Kpis::default();
    let mut seen = HashSet::new();
    let (mut tta, mut ttr) = (0i64, 0i64);
    for i in incidents {
        if !seen.insert(i.id) {
            continue;
        }
        if i.status.is_open() {
            k.open_by_severity[i.severity as usize] += 1;
            k.open_total += 1;
            k.unacknowledged += usize::from(i.status == Status::New);
            k.escalated += usize::from(i.escalated_at.is_some());
        }
        if let Some(a) = i.acknowledged_at.filter(|a| *a >= since) {
            k.acknowledged_since += 1;
            tta += a.since(i.opened_at).millis().max(0);
        }
        if let Some(r) = i.resolved_at.filter(|r| *r >= since) {
            k.resolved_since += 1;
            ttr += r.since(i.opened_at).millis().max(0);
        }
    }
    let mean = |total: i64, n: usize| (n > 0).then(|| total as f64 / 1000.0 / n as f64);
    k.mtta_s = mean(tta, k.acknowledged_since);
    k.mttr_s = mean(ttr, k.resolved_since);
    k
}

impl Kpis {
    pub fn open(&self, s: Severity) -> usize {
        self.open_by_severity[s as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::IncidentId;
    use crate::incident::tests_support::incident;

    #[test]
    fn midnight_of_paris_approximated_as_utc_plus_one() {
        // 2026-11-26T23:30Z is 00:30 on the 27th in Paris: the day began at 23:00Z.
        let now = Timestamp(1_795_694_400_000 + 11 * 3_600_000 + 30 * 60_000);
        assert_eq!(
            local_midnight(now, LOCAL_OFFSET),
            Timestamp(1_795_694_400_000 + 11 * 3_600_000)
        );
        let noon = Timestamp(1_795_694_400_000);
        assert_eq!(
            local_midnight(noon, LOCAL_OFFSET),
            Timestamp(1_795_694_400_000 - 13 * 3_600_000)
        );
    }

    #[test]
    fn counts_open_and_means_since_the_start_of_the_day() {
        let mut a = incident(IncidentId(1), None, Status::New);
        a.severity = Severity::Critical;
        a.escalated_at = Some(Timestamp(5));
        let mut b = incident(IncidentId(2), None, Status::Resolved);
        b.opened_at = Timestamp(100_000);
        b.acknowledged_at = Some(Timestamp(130_000));
        b.resolved_at = Some(Timestamp(400_000));
        let mut c = incident(IncidentId(3), None, Status::InProgress);
        c.opened_at = Timestamp(0);
        c.acknowledged_at = Some(Timestamp(90_000));
        let mut old = incident(IncidentId(4), None, Status::Closed);
        old.acknowledged_at = Some(Timestamp(10));
        old.resolved_at = Some(Timestamp(20));
        let k = kpis([&a, &b, &c, &old, &a], Timestamp(1000));
        assert_eq!(k.open_total, 2);
        assert_eq!(k.open(Severity::Critical), 1);
        assert_eq!(k.open(Severity::Major), 1);
        assert_eq!((k.unacknowledged, k.escalated), (1, 1));
        assert_eq!(k.acknowledged_since, 2);
        assert_eq!(k.mtta_s, Some(60.0));
        assert_eq!(k.mttr_s, Some(300.0));
        assert_eq!(kpis([], Timestamp(0)).mtta_s, None);
    }
}
