//! Shelving (ISA-18.2): an operator sets an alarm — an incident's deduplication key — aside
//! for a bounded time, with a reason. A shelved alarm does not alert; its incident is still
//! recorded, shown (as shelved) and counted. The shelf ends when the operator unshelves it
//! or, on the clock, when its time is up.
//!
//! Every change is a [`ShelfAct`] (who, why, until when), appended to the store's log and
//! replayed on start ([`ShelfBoard::apply`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::alarm::DedupKey;
use crate::incident::{Incident, IncidentId};
use crate::territory::CommuneIdx;
use crate::text::SafeText;
use crate::time::{Duration, Timestamp};

/// How long an alarm may stay shelved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShelvingPolicy {
    pub max_duration: Duration,
}

/// Eight hours: one shift.
pub const DEFAULT_MAX_SHELVING: Duration = Duration::from_mins(8 * 60);

impl Default for ShelvingPolicy {
    fn default() -> Self {
        ShelvingPolicy {
            max_duration: DEFAULT_MAX_SHELVING,
        }
    }
}

/// What a shelf act did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShelfChange {
    Shelved,
    Unshelved,
    /// Its time was up (the system's act).
    Expired,
}

impl ShelfChange {
    pub fn as_str(self) -> &'static str {
        match self {
            ShelfChange::Shelved => "shelved",
            ShelfChange::Unshelved => "unshelved",
            ShelfChange::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<ShelfChange> {
        match s {
            "shelved" => Some(ShelfChange::Shelved),
            "unshelved" => Some(ShelfChange::Unshelved),
            "expired" => Some(ShelfChange::Expired),
            _ => None,
        }
    }
}

/// One change of a shelf: appended to the log, replayed on start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShelfAct {
    pub key: DedupKey,
    /// The incident it was shelved through.
    pub incident: IncidentId,
    /// The incident's commune (the scope of the act).
    pub commune: CommuneIdx,
    /// The alarm's category (`cyber` is seen only with `incident.cyber`).
    pub category: Arc<str>,
    pub change: ShelfChange,
    /// `user:NAME`, or `system` for an expiry.
    pub actor: Arc<str>,
    pub reason: SafeText,
    pub at: Timestamp,
    /// Until when (a shelving), `None` for the end of a shelf.
    pub until: Option<Timestamp>,
}

/// An alarm on the shelf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shelf {
    pub key: DedupKey,
    pub incident: IncidentId,
    pub commune: CommuneIdx,
    pub category: Arc<str>,
    pub by: Arc<str>,
    pub reason: SafeText,
    pub at: Timestamp,
    pub until: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShelveError {
    #[error("shelving an alarm needs a reason")]
    ReasonRequired,
    #[error("an alarm is shelved for some time (more than zero)")]
    NoDuration,
    #[error("an alarm may be shelved for at most {max_minutes} minutes")]
    TooLong { max_minutes: i64 },
    #[error("only an open incident's alarm can be shelved")]
    NotOpen,
    #[error("this alarm is not shelved")]
    NotShelved,
}

/// The alarms on the shelf, by key.
#[derive(Clone, Debug, Default)]
pub struct ShelfBoard {
    policy: ShelvingPolicy,
    shelves: BTreeMap<DedupKey, Shelf>,
}

impl ShelfBoard {
    pub fn new(policy: ShelvingPolicy) -> Self {
        ShelfBoard {
            policy,
            shelves: BTreeMap::new(),
        }
    }

    pub fn policy(&self) -> ShelvingPolicy {
        self.policy
    }

    pub fn set_policy(&mut self, policy: ShelvingPolicy) {
        self.policy = policy;
    }

    /// Shelves the alarm of an open incident for `duration` (a shelved one is shelved again
    /// with the new reason and end).
    pub fn shelve(
        &mut self,
        incident: &Incident,
        actor: &str,
        reason: SafeText,
        duration: Duration,
        now: Timestamp,
    ) -> Result<ShelfAct, ShelveError> {
        let reason = reason.trimmed();
        if reason.is_empty() {
            return Err(ShelveError::ReasonRequired);
        }
        if duration.millis() <= 0 {
            return Err(ShelveError::NoDuration);
        }
        if duration > self.policy.max_duration {
            return Err(ShelveError::TooLong {
                max_minutes: self.policy.max_duration.millis() / 60_000,
            });
        }
        if !incident.status.is_open() {
            return Err(ShelveError::NotOpen);
        }
        let act = ShelfAct {
            key: incident.key.clone(),
            incident: incident.id,
            commune: incident.commune,
            category: Arc::clone(&incident.category),
            change: ShelfChange::Shelved,
            actor: actor.into(),
            reason,
            at: now,
            until: Some(now.plus(duration)),
        };
        self.apply(&act);
        Ok(act)
    }

    /// Takes the alarm off the shelf.
    pub fn unshelve(
        &mut self,
        key: &DedupKey,
        actor: &str,
        reason: SafeText,
        now: Timestamp,
    ) -> Result<ShelfAct, ShelveError> {
        let shelf = self.shelves.get(key).ok_or(ShelveError::NotShelved)?;
        let act = ShelfAct {
            key: key.clone(),
            incident: shelf.incident,
            commune: shelf.commune,
            category: Arc::clone(&shelf.category),
            change: ShelfChange::Unshelved,
            actor: actor.into(),
            reason: reason.trimmed(),
            at: now,
            until: None,
        };
        self.apply(&act);
        Ok(act)
    }

    /// Ends the shelves whose time is up at `now`, in key order.
    pub fn expire(&mut self, now: Timestamp) -> Vec<ShelfAct> {
        let due: Vec<ShelfAct> = self
            .shelves
            .values()
            .filter(|s| s.until <= now)
            .map(|s| ShelfAct {
                key: s.key.clone(),
                incident: s.incident,
                commune: s.commune,
                category: Arc::clone(&s.category),
                change: ShelfChange::Expired,
                actor: "system".into(),
                reason: SafeText::from("expired"),
                at: now,
                until: None,
            })
            .collect();
        for act in &due {
            self.apply(act);
        }
        due
    }

    /// Applies an act (a new one, or a stored one replayed on start, oldest first).
    pub fn apply(&mut self, act: &ShelfAct) {
        match (act.change, act.until) {
            (ShelfChange::Shelved, Some(until)) => {
                self.shelves.insert(
                    act.key.clone(),
                    Shelf {
                        key: act.key.clone(),
                        incident: act.incident,
                        commune: act.commune,
                        category: Arc::clone(&act.category),
                        by: Arc::clone(&act.actor),
                        reason: act.reason.clone(),
                        at: act.at,
                        until,
                    },
                );
            }
            _ => {
                self.shelves.remove(&act.key);
            }
        }
    }

    /// Whether the alarm is on the shelf at `now` (a shelf whose time is up no longer
    /// counts, even before the tick that ends it).
    pub fn is_shelved(&self, key: &DedupKey, now: Timestamp) -> bool {
        self.shelves.get(key).is_some_and(|s| s.until > now)
    }

    pub fn get(&self, key: &DedupKey) -> Option<&Shelf> {
        self.shelves.get(key)
    }

    /// Every shelf, in key order.
    pub fn shelves(&self) -> impl Iterator<Item = &Shelf> {
        self.shelves.values()
    }

    pub fn len(&self) -> usize {
        self.shelves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shelves.is_empty()
    }
}

/// How many shelves `sees` lets through that are still in force at `now`.
pub fn count_shelved<'a>(
    shelves: impl IntoIterator<Item = &'a Shelf>,
    now: Timestamp,
    sees: impl Fn(&Shelf) -> bool,
) -> usize {
    shelves
        .into_iter()
        .filter(|s| s.until > now && sees(s))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimClock;
    use crate::incident::{Severity, Status};
    use crate::time::Clock;

    fn incident(id: u64, status: Status) -> Incident {
        Incident {
            id: IncidentId(id),
            key: DedupKey(format!("r@site:{id}").into()),
            rule: "r".into(),
            category: "flood".into(),
            severity: Severity::Critical,
            status,
            title: SafeText::from("t"),
            commune: CommuneIdx(2),
            site: crate::territory::SiteIdx(0),
            device: None,
            position: crate::geo::Point::new(5.0, 47.0),
            opened_at: Timestamp(0),
            updated_at: Timestamp(0),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: None,
            condition_active: true,
            alarm_count: 1,
            evidence: SafeText::default(),
            sop_title: None,
            sop: vec![],
            reminded_at: None,
            escalated_at: None,
            trigger: None,
            peak: None,
            current: None,
            current_at: None,
            reopened_at: None,
        }
    }

    #[test]
    fn a_reason_is_required_and_the_duration_is_bounded() {
        let mut b = ShelfBoard::new(ShelvingPolicy {
            max_duration: Duration::from_mins(60),
        });
        let i = incident(1, Status::New);
        let now = Timestamp(1_000);
        assert_eq!(
            b.shelve(
                &i,
                "user:op",
                SafeText::from("  "),
                Duration::from_mins(10),
                now
            ),
            Err(ShelveError::ReasonRequired)
        );
        assert_eq!(
            b.shelve(
                &i,
                "user:op",
                SafeText::from("works"),
                Duration::from_mins(0),
                now
            ),
            Err(ShelveError::NoDuration)
        );
        assert_eq!(
            b.shelve(
                &i,
                "user:op",
                SafeText::from("works"),
                Duration::from_mins(61),
                now
            ),
            Err(ShelveError::TooLong { max_minutes: 60 })
        );
        assert_eq!(
            b.shelve(
                &incident(2, Status::Closed),
                "user:op",
                SafeText::from("works"),
                Duration::from_mins(10),
                now
            ),
            Err(ShelveError::NotOpen)
        );
        assert!(b.is_empty(), "nothing refused reaches the shelf");
        let act = b
            .shelve(
                &i,
                "user:op",
                SafeText::from("works"),
                Duration::from_mins(60),
                now,
            )
            .expect("an hour is allowed");
        assert_eq!(act.until, Some(now.plus(Duration::from_mins(60))));
        assert_eq!(
            (act.change, &*act.actor, &*act.reason),
            (ShelfChange::Shelved, "user:op", "works")
        );
        assert!(b.is_shelved(&i.key, now));
    }

    #[test]
    fn a_shelf_expires_on_the_simulated_clock() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let mut b = ShelfBoard::default();
        let i = incident(1, Status::Acknowledged);
        b.shelve(
            &i,
            "user:op",
            SafeText::from("pump under repair"),
            Duration::from_mins(30),
            clock.now(),
        )
        .expect("shelved");
        clock.advance(Duration::from_mins(29));
        assert!(b.expire(clock.now()).is_empty());
        assert!(b.is_shelved(&i.key, clock.now()));
        clock.advance(Duration::from_mins(1));
        // Past its end it no longer counts, even before the tick that ends it.
        assert!(!b.is_shelved(&i.key, clock.now()));
        assert_eq!(count_shelved(b.shelves(), clock.now(), |_| true), 0);
        let ended = b.expire(clock.now());
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].change, &*ended[0].actor),
            (ShelfChange::Expired, "system")
        );
        assert!(b.is_empty());
        assert!(
            b.expire(clock.now()).is_empty(),
            "an expiry is recorded once"
        );
    }

    #[test]
    fn unshelving_and_replaying_the_log_rebuild_the_same_shelf() {
        let mut b = ShelfBoard::default();
        let (one, two) = (incident(1, Status::New), incident(2, Status::New));
        let now = Timestamp(0);
        let mut log = vec![
            b.shelve(
                &one,
                "user:a",
                SafeText::from("r1"),
                Duration::from_mins(5),
                now,
            )
            .expect("one"),
            b.shelve(
                &two,
                "user:a",
                SafeText::from("r2"),
                Duration::from_mins(5),
                now,
            )
            .expect("two"),
        ];
        assert_eq!(
            b.unshelve(&DedupKey("nope".into()), "user:b", SafeText::default(), now),
            Err(ShelveError::NotShelved)
        );
        log.push(
            b.unshelve(&one.key, "user:b", SafeText::from("back"), now)
                .expect("unshelved"),
        );
        assert_eq!(log[2].change, ShelfChange::Unshelved);
        let mut replayed = ShelfBoard::default();
        for act in &log {
            replayed.apply(act);
        }
        let keys = |b: &ShelfBoard| b.shelves().map(|s| s.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&replayed), vec![two.key.clone()]);
        assert_eq!(keys(&replayed), keys(&b));
        assert_eq!(
            count_shelved(replayed.shelves(), now, |s| s.commune == CommuneIdx(2)),
            1
        );
        assert_eq!(count_shelved(replayed.shelves(), now, |_| false), 0);
    }
}
