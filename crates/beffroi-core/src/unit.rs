//! Units and dispatch: the teams an operator can send (municipal police patrols, on-call
//! technical teams, video-protection operators) and their missions.
//!
//! The [`UnitBoard`] holds every unit of the deployment with its status and its missions —
//! the open incidents assigned to it. It follows the incident book: the engine hands it
//! every incident change ([`UnitBoard::follow`]), and it answers which units changed.
//!
//! Rules kept by the board:
//! - a unit's missions are exactly the open incidents (new, acknowledged, in progress)
//!   whose `owner` is the unit;
//! - assigning an incident to an available unit makes it `engaged`; when an engaged unit's
//!   last mission is resolved, closed or reassigned, it becomes `available` again;
//! - an `off_duty` unit cannot be assigned ([`UnitBoard::check_assignable`]) and keeps
//!   its status whatever happens to its missions.

use std::collections::HashMap;
use std::sync::Arc;

use crate::incident::{Incident, IncidentId};
use crate::territory::CommuneIdx;
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnitKind {
    Police,
    Technical,
    Video,
    Other,
}

impl UnitKind {
    pub const ALL: [UnitKind; 4] = [
        UnitKind::Police,
        UnitKind::Technical,
        UnitKind::Video,
        UnitKind::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Police => "police",
            UnitKind::Technical => "technical",
            UnitKind::Video => "video",
            UnitKind::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<UnitKind> {
        UnitKind::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnitStatus {
    Available,
    Engaged,
    OffDuty,
}

impl UnitStatus {
    pub const ALL: [UnitStatus; 3] = [
        UnitStatus::Available,
        UnitStatus::Engaged,
        UnitStatus::OffDuty,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            UnitStatus::Available => "available",
            UnitStatus::Engaged => "engaged",
            UnitStatus::OffDuty => "off_duty",
        }
    }
    pub fn parse(s: &str) -> Option<UnitStatus> {
        UnitStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A unit as declared in the deployment (`units.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct UnitSpec {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub kind: UnitKind,
    /// Communes it covers; empty means the whole territory.
    pub communes: Vec<CommuneIdx>,
    /// Status before any change is recorded.
    pub initial: UnitStatus,
}

/// A unit and its current state.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    pub spec: UnitSpec,
    pub status: UnitStatus,
    /// Open incidents assigned to it, in assignment order.
    pub missions: Vec<IncidentId>,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("no unit `{0}`")]
    NotFound(Arc<str>),
    #[error("unit `{0}` is off duty")]
    OffDuty(Arc<str>),
}

/// Every unit of the deployment, by id.
#[derive(Debug, Default, Clone)]
pub struct UnitBoard {
    units: Vec<Unit>,
    by_id: HashMap<Arc<str>, usize>,
}

impl UnitBoard {
    /// The units of the deployment in their initial status, stamped `at`.
    pub fn new(specs: impl IntoIterator<Item = UnitSpec>, at: Timestamp) -> Self {
        let mut b = UnitBoard::default();
        for spec in specs {
            if b.by_id.contains_key(&spec.id) {
                continue;
            }
            b.by_id.insert(spec.id.clone(), b.units.len());
            b.units.push(Unit {
                status: spec.initial,
                spec,
                missions: Vec::new(),
                updated_at: at,
            });
        }
        b
    }

    pub fn get(&self, id: &str) -> Option<&Unit> {
        self.by_id.get(id).map(|&i| &self.units[i])
    }
    pub fn units(&self) -> &[Unit] {
        &self.units
    }
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Reinstates a unit's recorded status (restart). Units no longer in the deployment
    /// are ignored. Missions are not restored here: [`follow`](Self::follow) the restored
    /// incidents.
    pub fn restore_status(&mut self, id: &str, status: UnitStatus, at: Timestamp) {
        if let Some(&i) = self.by_id.get(id) {
            self.units[i].status = status;
            self.units[i].updated_at = at;
        }
    }

    /// Whether an incident may be assigned to `id`.
    pub fn check_assignable(&self, id: &str) -> Result<(), UnitError> {
        match self.get(id) {
            None => Err(UnitError::NotFound(id.into())),
            Some(u) if u.status == UnitStatus::OffDuty => Err(UnitError::OffDuty(id.into())),
            Some(_) => Ok(()),
        }
    }

    /// Sets a unit's status by hand. Returns the unit, or `None` if nothing changed.
    pub fn set_status(
        &mut self,
        id: &str,
        status: UnitStatus,
        at: Timestamp,
    ) -> Result<Option<&Unit>, UnitError> {
        let &i = self
            .by_id
            .get(id)
            .ok_or_else(|| UnitError::NotFound(id.into()))?;
        let u = &mut self.units[i];
        if u.status == status {
            return Ok(None);
        }
        u.status = status;
        u.updated_at = at;
        Ok(Some(&self.units[i]))
    }

    /// Brings the missions in line with an incident's new state; returns the indices of the
    /// units that changed (to persist and publish).
    pub fn follow(&mut self, inc: &Incident, at: Timestamp) -> Vec<usize> {
        let mut changed = Vec::new();
        let holder = inc
            .owner
            .as_deref()
            .filter(|_| inc.status.is_open())
            .and_then(|o| self.by_id.get(o).copied());
        for (i, u) in self.units.iter_mut().enumerate() {
            if Some(i) == holder {
                continue;
            }
            if let Some(pos) = u.missions.iter().position(|m| *m == inc.id) {
                u.missions.remove(pos);
                if u.missions.is_empty() && u.status == UnitStatus::Engaged {
                    u.status = UnitStatus::Available;
                }
                u.updated_at = at;
                changed.push(i);
            }
        }
        if let Some(i) = holder {
            let u = &mut self.units[i];
            if !u.missions.contains(&inc.id) {
                u.missions.push(inc.id);
                if u.status == UnitStatus::Available {
                    u.status = UnitStatus::Engaged;
                }
                u.updated_at = at;
                changed.push(i);
            }
        }
        changed
    }

    /// Replaces the units of the deployment (hot reload): units still declared keep their
    /// status and missions, new ones start in their initial status, removed ones leave the
    /// board (their incidents keep their `owner`).
    pub fn reconfigure(&mut self, specs: impl IntoIterator<Item = UnitSpec>, at: Timestamp) {
        let mut next = UnitBoard::new(specs, at);
        for u in &mut next.units {
            if let Some(old) = self.get(&u.spec.id) {
                u.status = old.status;
                u.missions.clone_from(&old.missions);
                u.updated_at = old.updated_at;
            }
        }
        *self = next;
    }

    pub fn at(&self, index: usize) -> Option<&Unit> {
        self.units.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Status;
    use proptest::prelude::*;

    fn spec(id: &str, initial: UnitStatus) -> UnitSpec {
        UnitSpec {
            id: id.into(),
            name: id.into(),
            kind: UnitKind::Police,
            communes: vec![],
            initial,
        }
    }

    fn board() -> UnitBoard {
        UnitBoard::new(
            [
                spec("a", UnitStatus::Available),
                spec("b", UnitStatus::Available),
                spec("c", UnitStatus::OffDuty),
            ],
            Timestamp(0),
        )
    }

    fn incident(id: u64, owner: Option<&str>, status: Status) -> Incident {
        crate::incident::tests_support::incident(IncidentId(id), owner, status)
    }

    #[test]
    fn assignment_engages_and_the_last_resolution_frees() {
        let mut b = board();
        assert_eq!(b.check_assignable("a"), Ok(()));
        assert_eq!(b.check_assignable("c"), Err(UnitError::OffDuty("c".into())));
        assert_eq!(
            b.check_assignable("z"),
            Err(UnitError::NotFound("z".into()))
        );
        assert_eq!(
            b.follow(&incident(1, Some("a"), Status::New), Timestamp(1)),
            vec![0]
        );
        b.follow(&incident(2, Some("a"), Status::Acknowledged), Timestamp(2));
        let a = b.get("a").expect("a");
        assert_eq!(a.status, UnitStatus::Engaged);
        assert_eq!(a.missions, vec![IncidentId(1), IncidentId(2)]);
        b.follow(&incident(1, Some("a"), Status::Resolved), Timestamp(3));
        assert_eq!(b.get("a").expect("a").status, UnitStatus::Engaged);
        // Reassigned to b: a has no mission left.
        assert_eq!(
            b.follow(&incident(2, Some("b"), Status::InProgress), Timestamp(4)),
            vec![0, 1]
        );
        assert_eq!(b.get("a").expect("a").status, UnitStatus::Available);
        assert!(b.get("a").expect("a").missions.is_empty());
        assert_eq!(b.get("b").expect("b").status, UnitStatus::Engaged);
        b.follow(&incident(2, Some("b"), Status::Closed), Timestamp(5));
        assert_eq!(b.get("b").expect("b").status, UnitStatus::Available);
        // Nothing to do: no change reported.
        assert!(
            b.follow(&incident(2, Some("b"), Status::Closed), Timestamp(6))
                .is_empty()
        );
    }

    #[test]
    fn off_duty_is_kept_and_manual_status_changes() {
        let mut b = board();
        b.follow(&incident(1, Some("a"), Status::New), Timestamp(1));
        b.set_status("a", UnitStatus::OffDuty, Timestamp(2))
            .expect("known");
        b.follow(&incident(1, Some("a"), Status::Resolved), Timestamp(3));
        assert_eq!(b.get("a").expect("a").status, UnitStatus::OffDuty);
        assert!(matches!(
            b.set_status("a", UnitStatus::OffDuty, Timestamp(4)),
            Ok(None)
        ));
        assert!(
            b.set_status("zz", UnitStatus::Available, Timestamp(4))
                .is_err()
        );
    }

    #[test]
    fn reconfiguring_keeps_the_state_of_units_still_declared() {
        let mut b = board();
        b.follow(&incident(1, Some("a"), Status::New), Timestamp(1));
        let mut renamed = spec("a", UnitStatus::Available);
        renamed.name = "Patrouille A".into();
        b.reconfigure([renamed, spec("d", UnitStatus::OffDuty)], Timestamp(2));
        let a = b.get("a").expect("kept");
        assert_eq!(
            (&*a.spec.name, a.status),
            ("Patrouille A", UnitStatus::Engaged)
        );
        assert_eq!(a.missions, vec![IncidentId(1)]);
        assert_eq!(b.get("d").map(|u| u.status), Some(UnitStatus::OffDuty));
        assert!(b.get("b").is_none());
    }

    proptest! {
        /// Whatever the sequence of incident changes, a unit's missions are the open
        /// incidents it owns, and an engaged/available unit is engaged iff it has one.
        #[test]
        fn missions_are_the_open_owned_incidents(
            ops in proptest::collection::vec((0u64..6, 0usize..4, 0usize..5), 1..60)
        ) {
            let owners = [Some("a"), Some("b"), Some("zz"), None];
            let mut b = UnitBoard::new(
                [spec("a", UnitStatus::Available), spec("b", UnitStatus::Available)],
                Timestamp(0),
            );
            let mut last: HashMap<u64, Incident> = HashMap::new();
            for (t, (id, owner, status)) in ops.into_iter().enumerate() {
                let inc = incident(id, owners[owner], Status::ALL[status]);
                b.follow(&inc, Timestamp(t as i64));
                last.insert(id, inc);
            }
            for u in b.units() {
                let mut expected: Vec<u64> = last
                    .values()
                    .filter(|i| i.status.is_open() && i.owner.as_deref() == Some(&*u.spec.id))
                    .map(|i| i.id.0)
                    .collect();
                expected.sort_unstable();
                let mut got: Vec<u64> = u.missions.iter().map(|m| m.0).collect();
                got.sort_unstable();
                prop_assert_eq!(&got, &expected);
                prop_assert_eq!(u.status == UnitStatus::Engaged, !got.is_empty());
            }
        }
    }
}
