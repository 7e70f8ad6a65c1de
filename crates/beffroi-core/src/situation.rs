//! Situations: the incidents of one real event, handled as one.
//!
//! A flood of a river opens an incident per gauge and per site, a fire opens the panel's
//! alarm and the smoke-and-heat correlation, an attack silences several devices at once.
//! Control-room practice (ISA-18.2, EEMUA 191) counts what reaches an operator: one event
//! should be one thing to handle. A [`Family`] declares which incidents belong together (by
//! category or rule) and in which space–time neighbourhood ([`Neighbourhood`], `window`);
//! the [`SituationBook`] follows every incident change and puts each incident in exactly one
//! [`Situation`]: the one of its family it joins, or a new one.
//!
//! Invariant kept by the book: every incident it has seen is the member of exactly one
//! active situation until that situation closes (all members closed) or is merged. The
//! book holds no incident state of its own beyond a summary ([`Member`]) refreshed from
//! each change; the incident book stays the owner of the incidents.
//!
//! What a reader sees of a situation is decided once, by [`Situation::view`] with the
//! reader's [`Visibility`]: members they may not see are left out, and the title,
//! severity, status and communes are computed from the visible members only.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::geo::Point;
use crate::incident::{Actor, Incident, IncidentChange, IncidentId, Severity, Status};
use crate::territory::{CommuneIdx, SiteIdx, Territory};
use crate::text::SafeText;
use crate::time::{Duration, Timestamp};
use crate::visibility::Visibility;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SituationId(pub u64);

impl fmt::Display for SituationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where two incidents of a family must be to belong to the same situation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Neighbourhood {
    /// The same site.
    Site,
    /// The same zone (sites without a zone: the same site).
    Zone,
    /// The same commune.
    Commune,
    /// Sites along the same river (the sites' `river`); sites without one: the same site.
    River,
    /// Within this many metres of a member.
    Radius(f64),
    /// Anywhere in the territory.
    Territory,
}

impl Neighbourhood {
    pub fn as_str(&self) -> &'static str {
        match self {
            Neighbourhood::Site => "site",
            Neighbourhood::Zone => "zone",
            Neighbourhood::Commune => "commune",
            Neighbourhood::River => "river",
            Neighbourhood::Radius(_) => "radius",
            Neighbourhood::Territory => "territory",
        }
    }

    /// Whether two incidents, summarised as members, are neighbours.
    fn holds(&self, a: &Member, b: &Member, t: &Territory) -> bool {
        let site = |i: SiteIdx| t.sites.get(i.get());
        match self {
            Neighbourhood::Site => a.site == b.site,
            Neighbourhood::Zone => match (
                site(a.site).and_then(|s| s.zone),
                site(b.site).and_then(|s| s.zone),
            ) {
                (Some(x), Some(y)) => x == y,
                _ => a.site == b.site,
            },
            Neighbourhood::Commune => a.commune == b.commune,
            Neighbourhood::River => match (
                site(a.site).and_then(|s| s.river.as_ref()),
                site(b.site).and_then(|s| s.river.as_ref()),
            ) {
                (Some(x), Some(y)) => x == y,
                _ => a.site == b.site,
            },
            Neighbourhood::Radius(m) => a.position.distance_m(&b.position) <= *m,
            Neighbourhood::Territory => true,
        }
    }
}

/// A declared family of incidents that belong together (`situations.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub id: Arc<str>,
    /// Incidents of these categories belong to the family…
    pub categories: Vec<Arc<str>>,
    /// …and those raised by these rules, whatever their category…
    pub rules: Vec<Arc<str>>,
    /// …at sites of these kinds (empty: any site). A flood's family takes the sentinel's
    /// "device silenced" on the river's gauges, not on a camera.
    pub site_kinds: Vec<crate::territory::SiteKind>,
    pub within: Neighbourhood,
    /// An incident joins a situation of its family whose latest member opened at most this
    /// long before it.
    pub window: Duration,
}

/// What a situation knows of one of its incidents: a summary refreshed at every change.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub incident: IncidentId,
    pub rule: Arc<str>,
    pub category: Arc<str>,
    pub severity: Severity,
    pub status: Status,
    pub title: SafeText,
    pub commune: CommuneIdx,
    pub site: SiteIdx,
    pub position: Point,
    pub opened_at: Timestamp,
    pub owner: Option<Arc<str>>,
}

impl Member {
    pub fn of(i: &Incident) -> Member {
        Member {
            incident: i.id,
            rule: i.rule.clone(),
            category: i.category.clone(),
            severity: i.severity,
            status: i.status,
            // The title as it reads now (`{value}` from the latest reading).
            title: i.title_now(),
            commune: i.commune,
            site: i.site,
            position: i.position,
            opened_at: i.opened_at,
            owner: i.owner.clone(),
        }
    }
}

/// What happened to a situation itself (its incidents keep their own logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SituationEvent {
    /// Opened by its first incident.
    Opened,
    /// An incident joined it (same family, neighbourhood and window).
    Joined,
    /// An operator took an incident out of it into a new situation (`other`).
    SplitOut,
    /// Opened by an operator's split from situation `other`.
    SplitFrom,
    /// An operator merged situation `other` into it.
    Merged,
    /// An operator merged it into situation `other`; it is closed.
    MergedInto,
    /// Every incident in it is closed.
    Closed,
}

impl SituationEvent {
    pub const ALL: [SituationEvent; 7] = [
        SituationEvent::Opened,
        SituationEvent::Joined,
        SituationEvent::SplitOut,
        SituationEvent::SplitFrom,
        SituationEvent::Merged,
        SituationEvent::MergedInto,
        SituationEvent::Closed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SituationEvent::Opened => "opened",
            SituationEvent::Joined => "joined",
            SituationEvent::SplitOut => "split_out",
            SituationEvent::SplitFrom => "split_from",
            SituationEvent::Merged => "merged",
            SituationEvent::MergedInto => "merged_into",
            SituationEvent::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<SituationEvent> {
        SituationEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One line of a situation's log: structured, no free text.
#[derive(Clone, Debug, PartialEq)]
pub struct SituationLogEntry {
    pub at: Timestamp,
    pub actor: Actor,
    pub event: SituationEvent,
    pub incident: Option<IncidentId>,
    pub other: Option<SituationId>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Situation {
    pub id: SituationId,
    /// The family that grouped it; `None`: an incident that belongs to no family.
    pub family: Option<Arc<str>>,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub merged_into: Option<SituationId>,
    /// In the order they joined.
    pub members: Vec<Member>,
    pub log: Vec<SituationLogEntry>,
}

/// The status of a group of incidents: new while one is new, then in progress while one
/// is, acknowledged while one is, resolved while one is, closed when all are.
pub fn group_status<'a>(members: impl IntoIterator<Item = &'a Member>) -> Status {
    let mut seen = [false; 5];
    for m in members {
        seen[Status::ALL.iter().position(|s| *s == m.status).unwrap_or(4)] = true;
    }
    let [new, ack, prog, res, _] = seen;
    if new {
        Status::New
    } else if prog {
        Status::InProgress
    } else if ack {
        Status::Acknowledged
    } else if res {
        Status::Resolved
    } else {
        Status::Closed
    }
}

/// The severity of a group: the highest among its open incidents (among all of them when
/// none is open).
pub fn group_severity<'a>(members: impl IntoIterator<Item = &'a Member> + Clone) -> Severity {
    let open = members
        .clone()
        .into_iter()
        .filter(|m| m.status.is_open())
        .map(|m| m.severity)
        .max();
    open.or_else(|| members.into_iter().map(|m| m.severity).max())
        .unwrap_or(Severity::Info)
}

/// The incident that names a group: the most severe open one, the oldest among equals.
fn lead<'a>(members: &[&'a Member]) -> Option<&'a Member> {
    members.iter().copied().min_by_key(|m| {
        (
            !m.status.is_open(),
            std::cmp::Reverse(m.severity),
            m.opened_at,
        )
    })
}

/// A situation as one reader may see it: only the members they may see, and the figures
/// computed from those.
#[derive(Clone, Debug)]
pub struct SituationView<'a> {
    pub situation: &'a Situation,
    pub members: Vec<&'a Member>,
    pub lead: &'a Member,
    pub status: Status,
    pub severity: Severity,
    /// Communes of the visible members, sorted, once each.
    pub communes: Vec<CommuneIdx>,
}

impl Situation {
    pub fn status(&self) -> Status {
        group_status(&self.members)
    }
    pub fn severity(&self) -> Severity {
        group_severity(&self.members)
    }
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none() && self.members.iter().any(|m| m.status.is_open())
    }
    pub fn has(&self, id: IncidentId) -> bool {
        self.members.iter().any(|m| m.incident == id)
    }
    /// The latest opening among its incidents.
    pub fn last_opening(&self) -> Timestamp {
        self.members
            .iter()
            .map(|m| m.opened_at)
            .max()
            .unwrap_or(self.opened_at)
    }

    /// THE way a reader sees a situation: `None` when no member is visible to them.
    pub fn view(&self, v: &Visibility) -> Option<SituationView<'_>> {
        let members: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| v.sees(m.commune, &m.category))
            .collect();
        let lead = lead(&members)?;
        let mut communes: Vec<CommuneIdx> = members.iter().map(|m| m.commune).collect();
        communes.sort_unstable();
        communes.dedup();
        Some(SituationView {
            situation: self,
            status: group_status(members.iter().copied()),
            severity: group_severity(members.iter().copied()),
            lead,
            communes,
            members,
        })
    }
}

/// The change of one situation, to persist and broadcast.
#[derive(Clone, Debug, PartialEq)]
pub struct SituationChange {
    pub situation: Situation,
    pub created: bool,
    /// Log entries this change adds.
    pub log: Vec<SituationLogEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SituationError {
    #[error("situation {0} not found among active situations")]
    NotFound(SituationId),
    #[error("incident {incident} is not in situation {situation}")]
    NotAMember {
        situation: SituationId,
        incident: IncidentId,
    },
    #[error("situation {0} has a single incident: there is nothing to split")]
    SingleIncident(SituationId),
    #[error("a situation cannot be merged into itself")]
    SameSituation,
}

/// The active situations of a partition.
#[derive(Debug, Default)]
pub struct SituationBook {
    families: Vec<Family>,
    active: BTreeMap<SituationId, Situation>,
    by_incident: HashMap<IncidentId, SituationId>,
    next_id: u64,
}

impl SituationBook {
    pub fn new(families: Vec<Family>) -> Self {
        SituationBook {
            families,
            next_id: 1,
            ..Default::default()
        }
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// Replaces the families used for incidents opened from now on.
    pub fn set_families(&mut self, families: Vec<Family>) {
        self.families = families;
    }

    pub fn get(&self, id: SituationId) -> Option<&Situation> {
        self.active.get(&id)
    }
    pub fn active(&self) -> impl Iterator<Item = &Situation> {
        self.active.values()
    }
    pub fn len(&self) -> usize {
        self.active.len()
    }
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }
    /// The situation an incident is in.
    pub fn of_incident(&self, id: IncidentId) -> Option<SituationId> {
        self.by_incident.get(&id).copied()
    }

    /// Reinstates a situation read back from the store. Closed situations are ignored; ids
    /// allocated later are above every restored id.
    pub fn restore(&mut self, s: Situation) {
        self.next_id = self.next_id.max(s.id.0 + 1);
        if s.closed_at.is_some() {
            return;
        }
        for m in &s.members {
            self.by_incident.insert(m.incident, s.id);
        }
        self.active.insert(s.id, s);
    }

    /// Makes sure future ids are above `id`.
    pub fn reserve_ids_through(&mut self, id: SituationId) {
        self.next_id = self.next_id.max(id.0 + 1);
    }

    /// The family an incident belongs to, among those that take its site's kind: the one
    /// naming its rule, else the one naming its category.
    pub fn family_of(&self, i: &Incident, t: &Territory) -> Option<&Family> {
        let kind = t.sites.get(i.site.get()).map(|s| s.kind);
        let takes = |f: &&Family| {
            f.site_kinds.is_empty() || kind.is_some_and(|k| f.site_kinds.contains(&k))
        };
        self.families
            .iter()
            .filter(takes)
            .find(|f| f.rules.contains(&i.rule))
            .or_else(|| {
                self.families
                    .iter()
                    .filter(takes)
                    .find(|f| f.categories.contains(&i.category))
            })
    }

    /// Follows an incident change: refreshes the member, or puts a new incident in the
    /// situation of its family it belongs to, or in a new one. Returns the situations
    /// that changed.
    pub fn follow(&mut self, change: &IncidentChange, t: &Territory) -> Vec<SituationChange> {
        let inc = &change.incident;
        let at = inc.updated_at;
        if let Some(sid) = self.by_incident.get(&inc.id).copied() {
            return self.refresh(sid, inc, at).into_iter().collect();
        }
        if inc.status == Status::Closed {
            return Vec::new();
        }
        self.place(inc, t, at, &Actor::Rule(inc.rule.clone()))
            .into_iter()
            .collect()
    }

    /// Puts an incident that is in no situation (a restart from a store written before
    /// situations existed) where it belongs.
    pub fn adopt(&mut self, inc: &Incident, t: &Territory) -> Option<SituationChange> {
        if self.by_incident.contains_key(&inc.id) || inc.status == Status::Closed {
            return None;
        }
        self.place(inc, t, inc.opened_at, &Actor::System)
    }

    fn place(
        &mut self,
        inc: &Incident,
        t: &Territory,
        at: Timestamp,
        actor: &Actor,
    ) -> Option<SituationChange> {
        let member = Member::of(inc);
        let family = self.family_of(inc, t).cloned();
        let joined = family.as_ref().and_then(|f| {
            self.active
                .values()
                .filter(|s| {
                    s.family.as_deref() == Some(&*f.id)
                        && s.closed_at.is_none()
                        && member.opened_at.since(s.last_opening()) <= f.window
                        && s.members.iter().any(|m| f.within.holds(m, &member, t))
                })
                .max_by_key(|s| (s.last_opening(), s.id))
                .map(|s| s.id)
        });
        let entry = |event, other| SituationLogEntry {
            at,
            actor: actor.clone(),
            event,
            incident: Some(inc.id),
            other,
        };
        if let Some(sid) = joined {
            let s = self.active.get_mut(&sid)?;
            s.members.push(member);
            s.updated_at = s.updated_at.max(at);
            let e = entry(SituationEvent::Joined, None);
            s.log.push(e.clone());
            self.by_incident.insert(inc.id, sid);
            return Some(SituationChange {
                situation: s.clone(),
                created: false,
                log: vec![e],
            });
        }
        let id = SituationId(self.next_id);
        self.next_id += 1;
        let e = entry(SituationEvent::Opened, None);
        let s = Situation {
            id,
            family: family.map(|f| f.id),
            opened_at: inc.opened_at,
            updated_at: at,
            closed_at: None,
            merged_into: None,
            members: vec![member],
            log: vec![e.clone()],
        };
        self.by_incident.insert(inc.id, id);
        self.active.insert(id, s.clone());
        Some(SituationChange {
            situation: s,
            created: true,
            log: vec![e],
        })
    }

    /// Refreshes a member from its incident; closes the situation when every member is
    /// closed. `None` when nothing a reader sees changed.
    fn refresh(
        &mut self,
        sid: SituationId,
        inc: &Incident,
        at: Timestamp,
    ) -> Option<SituationChange> {
        let s = self.active.get_mut(&sid)?;
        let m = s.members.iter_mut().find(|m| m.incident == inc.id)?;
        let fresh = Member::of(inc);
        if *m == fresh {
            return None;
        }
        *m = fresh;
        s.updated_at = s.updated_at.max(at);
        let mut log = Vec::new();
        if s.members.iter().all(|m| m.status == Status::Closed) {
            s.closed_at = Some(at);
            let e = SituationLogEntry {
                at,
                actor: Actor::System,
                event: SituationEvent::Closed,
                incident: None,
                other: None,
            };
            s.log.push(e.clone());
            log.push(e);
        }
        let situation = s.clone();
        if situation.closed_at.is_some() {
            self.forget(sid);
        }
        Some(SituationChange {
            situation,
            created: false,
            log,
        })
    }

    fn forget(&mut self, sid: SituationId) {
        if let Some(s) = self.active.remove(&sid) {
            for m in &s.members {
                if self.by_incident.get(&m.incident) == Some(&sid) {
                    self.by_incident.remove(&m.incident);
                }
            }
        }
    }

    /// An operator takes an incident out of a situation into a new one of its own.
    pub fn split(
        &mut self,
        sid: SituationId,
        incident: IncidentId,
        actor: &Actor,
        at: Timestamp,
    ) -> Result<Vec<SituationChange>, SituationError> {
        let new_id = SituationId(self.next_id);
        let s = self
            .active
            .get_mut(&sid)
            .ok_or(SituationError::NotFound(sid))?;
        let pos = s
            .members
            .iter()
            .position(|m| m.incident == incident)
            .ok_or(SituationError::NotAMember {
                situation: sid,
                incident,
            })?;
        if s.members.len() < 2 {
            return Err(SituationError::SingleIncident(sid));
        }
        self.next_id += 1;
        let member = s.members.remove(pos);
        s.updated_at = s.updated_at.max(at);
        let out = SituationLogEntry {
            at,
            actor: actor.clone(),
            event: SituationEvent::SplitOut,
            incident: Some(incident),
            other: Some(new_id),
        };
        s.log.push(out.clone());
        let old = s.clone();
        let from = SituationLogEntry {
            at,
            actor: actor.clone(),
            event: SituationEvent::SplitFrom,
            incident: Some(incident),
            other: Some(sid),
        };
        let new = Situation {
            id: new_id,
            family: old.family.clone(),
            opened_at: member.opened_at,
            updated_at: at,
            closed_at: None,
            merged_into: None,
            members: vec![member],
            log: vec![from.clone()],
        };
        self.by_incident.insert(incident, new_id);
        self.active.insert(new_id, new.clone());
        Ok(vec![
            SituationChange {
                situation: old,
                created: false,
                log: vec![out],
            },
            SituationChange {
                situation: new,
                created: true,
                log: vec![from],
            },
        ])
    }

    /// An operator merges situation `from` into `into`: its incidents move, it closes.
    pub fn merge(
        &mut self,
        into: SituationId,
        from: SituationId,
        actor: &Actor,
        at: Timestamp,
    ) -> Result<Vec<SituationChange>, SituationError> {
        if into == from {
            return Err(SituationError::SameSituation);
        }
        if !self.active.contains_key(&into) {
            return Err(SituationError::NotFound(into));
        }
        let mut gone = self
            .active
            .remove(&from)
            .ok_or(SituationError::NotFound(from))?;
        let moved = std::mem::take(&mut gone.members);
        let Some(target) = self.active.get_mut(&into) else {
            self.active.insert(from, gone);
            return Err(SituationError::NotFound(into));
        };
        for m in &moved {
            self.by_incident.insert(m.incident, into);
        }
        target.opened_at = target.opened_at.min(
            moved
                .iter()
                .map(|m| m.opened_at)
                .min()
                .unwrap_or(target.opened_at),
        );
        target.members.extend(moved.iter().cloned());
        target.updated_at = target.updated_at.max(at);
        let merged = SituationLogEntry {
            at,
            actor: actor.clone(),
            event: SituationEvent::Merged,
            incident: None,
            other: Some(from),
        };
        target.log.push(merged.clone());
        let target = target.clone();
        let into_entry = SituationLogEntry {
            at,
            actor: actor.clone(),
            event: SituationEvent::MergedInto,
            incident: None,
            other: Some(into),
        };
        // The closed situation keeps the list of what it held, for its history.
        gone.members = moved;
        gone.merged_into = Some(into);
        gone.closed_at = Some(at);
        gone.updated_at = at;
        gone.log.push(into_entry.clone());
        Ok(vec![
            SituationChange {
                situation: target,
                created: false,
                log: vec![merged],
            },
            SituationChange {
                situation: gone,
                created: false,
                log: vec![into_entry],
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::DedupKey;
    use crate::territory::fixture;

    fn incident(id: u64, rule: &str, category: &str, site: u32, at_min: i64) -> Incident {
        let t = fixture::small();
        let site = SiteIdx(site);
        Incident {
            id: IncidentId(id),
            key: DedupKey::for_site(rule, &t.site(site).id),
            rule: rule.into(),
            category: category.into(),
            severity: Severity::Major,
            status: Status::New,
            title: SafeText::from("t"),
            commune: t.site(site).commune,
            site,
            device: None,
            position: t.site(site).position,
            opened_at: Timestamp(at_min * 60_000),
            updated_at: Timestamp(at_min * 60_000),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: None,
            condition_active: true,
            alarm_count: 1,
            evidence: SafeText::default(),
            sop_title: None,
            sop: Vec::new(),
            reminded_at: None,
            escalated_at: None,
            trigger: None,
            peak: None,
            current: None,
            current_at: None,
            reopened_at: None,
        }
    }

    fn change(i: &Incident, created: bool) -> IncidentChange {
        IncidentChange {
            incident: i.clone(),
            created,
            log: Vec::new(),
            pseudonyms: Vec::new(),
        }
    }

    fn book(within: Neighbourhood) -> SituationBook {
        SituationBook::new(vec![Family {
            id: "fire".into(),
            categories: vec!["fire".into()],
            rules: vec!["gauge-silent".into()],
            site_kinds: vec![],
            within,
            window: Duration::from_mins(30),
        }])
    }

    #[test]
    fn a_family_takes_only_incidents_at_sites_of_its_kinds() {
        use crate::territory::SiteKind;
        let t = fixture::small();
        // s1 is a school, s2 a river reach.
        let mut b = SituationBook::new(vec![
            Family {
                id: "flood".into(),
                categories: vec!["flood".into()],
                rules: vec!["cyber-silence".into()],
                site_kinds: vec![SiteKind::RiverReach],
                within: Neighbourhood::Territory,
                window: Duration::from_mins(60),
            },
            Family {
                id: "cyber".into(),
                categories: vec![crate::visibility::CYBER.into()],
                rules: vec![],
                site_kinds: vec![],
                within: Neighbourhood::Territory,
                window: Duration::from_mins(60),
            },
        ]);
        let at_reach = incident(1, "cyber-silence", crate::visibility::CYBER, 1, 0);
        let at_school = incident(2, "cyber-silence", crate::visibility::CYBER, 0, 1);
        assert_eq!(b.family_of(&at_reach, &t).map(|f| &*f.id), Some("flood"));
        assert_eq!(b.family_of(&at_school, &t).map(|f| &*f.id), Some("cyber"));
        let flood = incident(3, "flood-high", "flood", 0, 2);
        assert!(
            b.family_of(&flood, &t).is_none(),
            "a flood alarm at a school: no family"
        );
        b.follow(&change(&at_reach, true), &t);
        let c = b.follow(&change(&at_school, true), &t);
        assert!(c[0].created, "not the flood's situation");
        assert_eq!(c[0].situation.family.as_deref(), Some("cyber"));
    }

    #[test]
    fn a_correlation_enriches_its_situation_instead_of_opening_a_sibling() {
        let t = fixture::small();
        let mut b = book(Neighbourhood::Site);
        let a = b.follow(&change(&incident(1, "fire-alarm", "fire", 0, 0), true), &t);
        assert!(a[0].created);
        let c = b.follow(&change(&incident(2, "smoke-heat", "fire", 0, 5), true), &t);
        assert!(!c[0].created, "joined");
        assert_eq!(c[0].situation.members.len(), 2);
        assert_eq!(c[0].log[0].event, SituationEvent::Joined);
        // Another site, another category, or past the window: a situation of its own.
        let other_site = b.follow(&change(&incident(3, "fire-alarm", "fire", 1, 6), true), &t);
        assert!(other_site[0].created);
        let late = b.follow(&change(&incident(4, "fire-alarm", "fire", 0, 40), true), &t);
        assert!(
            late[0].created,
            "past the 30 min window after the latest opening"
        );
        let unrelated = b.follow(&change(&incident(5, "crowd", "crowd", 0, 41), true), &t);
        assert!(unrelated[0].created);
        assert_eq!(unrelated[0].situation.family, None);
        // A rule named by the family belongs to it whatever its category.
        let by_rule = b.follow(
            &change(&incident(6, "gauge-silent", "device", 0, 45), true),
            &t,
        );
        assert!(!by_rule[0].created);
        assert_eq!(b.of_incident(IncidentId(6)), b.of_incident(IncidentId(4)));
    }

    #[test]
    fn a_radius_chains_through_members_and_status_follows_the_incidents() {
        let t = fixture::small();
        // s1 and s2 are 300 m apart.
        let mut near = book(Neighbourhood::Radius(500.0));
        near.follow(&change(&incident(1, "a", "fire", 0, 0), true), &t);
        let c = near.follow(&change(&incident(2, "b", "fire", 1, 1), true), &t);
        assert!(!c[0].created);
        let mut far = book(Neighbourhood::Radius(100.0));
        far.follow(&change(&incident(1, "a", "fire", 0, 0), true), &t);
        assert!(far.follow(&change(&incident(2, "b", "fire", 1, 1), true), &t)[0].created);

        let sid = near.of_incident(IncidentId(1)).expect("placed");
        let mut i1 = incident(1, "a", "fire", 0, 0);
        i1.status = Status::Acknowledged;
        near.follow(&change(&i1, false), &t);
        assert_eq!(
            near.get(sid).map(Situation::status),
            Some(Status::New),
            "one still new"
        );
        let mut i2 = incident(2, "b", "fire", 1, 1);
        i2.status = Status::InProgress;
        i2.severity = Severity::Critical;
        near.follow(&change(&i2, false), &t);
        let s = near.get(sid).expect("active");
        assert_eq!(s.status(), Status::InProgress);
        assert_eq!(s.severity(), Severity::Critical);
        // Every member closed: the situation closes and leaves the book.
        i1.status = Status::Closed;
        i2.status = Status::Closed;
        near.follow(&change(&i1, false), &t);
        let last = near.follow(&change(&i2, false), &t);
        assert!(last[0].situation.closed_at.is_some());
        assert_eq!(last[0].log[0].event, SituationEvent::Closed);
        assert!(near.get(sid).is_none());
        assert!(near.of_incident(IncidentId(2)).is_none());
    }

    #[test]
    fn split_and_merge_move_incidents_and_are_logged() {
        let t = fixture::small();
        let mut b = book(Neighbourhood::Territory);
        let who = Actor::User("op".into());
        for (id, at) in [(1, 0), (2, 1), (3, 2)] {
            b.follow(&change(&incident(id, "r", "fire", 0, at), true), &t);
        }
        let sid = b.of_incident(IncidentId(2)).expect("placed");
        assert_eq!(
            b.split(sid, IncidentId(9), &who, Timestamp(0)),
            Err(SituationError::NotAMember {
                situation: sid,
                incident: IncidentId(9)
            })
        );
        let out = b
            .split(sid, IncidentId(2), &who, Timestamp(5))
            .expect("split");
        let new = out[1].situation.id;
        assert_ne!(new, sid);
        assert_eq!(b.of_incident(IncidentId(2)), Some(new));
        assert_eq!(out[0].log[0].event, SituationEvent::SplitOut);
        assert_eq!(out[0].log[0].other, Some(new));
        assert_eq!(out[1].log[0].event, SituationEvent::SplitFrom);
        assert_eq!(
            b.split(new, IncidentId(2), &who, Timestamp(6)),
            Err(SituationError::SingleIncident(new))
        );

        assert_eq!(
            b.merge(sid, sid, &who, Timestamp(7)),
            Err(SituationError::SameSituation)
        );
        let out = b.merge(sid, new, &who, Timestamp(8)).expect("merge");
        assert_eq!(out[0].situation.members.len(), 3);
        assert_eq!(out[1].situation.merged_into, Some(sid));
        assert!(out[1].situation.closed_at.is_some());
        assert!(b.get(new).is_none());
        assert_eq!(b.of_incident(IncidentId(2)), Some(sid));
        // Ids keep growing after a restore.
        let mut again = book(Neighbourhood::Territory);
        again.restore(out[0].situation.clone());
        again.reserve_ids_through(new);
        let c = again.follow(&change(&incident(7, "r", "crowd", 0, 100), true), &t);
        assert!(c[0].situation.id > new);
    }

    #[test]
    fn a_reader_sees_only_the_members_it_may_see() {
        let t = fixture::small();
        let mut b = SituationBook::new(vec![Family {
            id: "flood".into(),
            categories: vec!["flood".into()],
            rules: vec!["cyber-silence".into()],
            site_kinds: vec![],
            within: Neighbourhood::Territory,
            window: Duration::from_mins(60),
        }]);
        let mut cyber = incident(1, "cyber-silence", crate::visibility::CYBER, 0, 0);
        cyber.severity = Severity::Critical;
        cyber.title = SafeText::from("cyber title");
        b.follow(&change(&cyber, true), &t);
        let flood = incident(2, "flood-high", "flood", 1, 1);
        b.follow(&change(&flood, true), &t);
        let s = b
            .get(b.of_incident(IncidentId(1)).expect("placed"))
            .expect("active");
        let all = s.view(&Visibility::everything()).expect("visible");
        assert_eq!(all.members.len(), 2);
        assert_eq!(all.severity, Severity::Critical);
        assert_eq!(all.lead.incident, IncidentId(1));
        let c = CommuneIdx(0);
        let operator = Visibility::new(Some(vec![c]), Some(Vec::new()));
        let v = s.view(&operator).expect("the flood is visible");
        assert_eq!(v.members.len(), 1);
        assert_eq!(
            v.lead.incident,
            IncidentId(2),
            "named by what the reader sees"
        );
        assert_eq!(
            v.severity,
            Severity::Major,
            "the cyber member's severity is not shown"
        );
        assert!(s.view(&Visibility::nothing()).is_none());
    }
}
