//! Crisis mode: a crisis opened for some communes (or the whole territory), its level, the
//! roles of the communal safeguard plan (*plan communal de sauvegarde*, PCS) and its own
//! chronological log (*main courante*).
//!
//! The [`CrisisBoard`] holds every crisis (there are a handful a year). Operators write log
//! entries, change the level, name role holders and close it. Opening a crisis attaches the
//! incidents of its scope still open at that moment ([`CrisisBoard::open`]); then the engine
//! hands it every incident change ([`CrisisBoard::follow`]) and each active crisis whose scope
//! holds the incident's commune logs it and counts the incident among its own, so incidents
//! opened later join it as they open.

use crate::message::{Message, Param};
use crate::text::SafeText;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::incident::{Actor, Incident, IncidentChange, IncidentId};
use crate::territory::CommuneIdx;
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrisisKind {
    Flood,
    Snow,
    Fire,
    Other,
}

impl CrisisKind {
    pub const ALL: [CrisisKind; 4] = [
        CrisisKind::Flood,
        CrisisKind::Snow,
        CrisisKind::Fire,
        CrisisKind::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CrisisKind::Flood => "flood",
            CrisisKind::Snow => "snow",
            CrisisKind::Fire => "fire",
            CrisisKind::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<CrisisKind> {
        CrisisKind::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CrisisId(pub u64);

/// A role of the safeguard plan, as declared in `crisis.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSpec {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub name_en: Arc<str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RoleHolder {
    pub role: Arc<str>,
    pub holder: Option<SafeText>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrisisLogKind {
    /// Written by an operator.
    Entry,
    /// A change of an incident in the crisis' scope.
    Incident,
    /// Opening, level, roles, closing.
    System,
}

impl CrisisLogKind {
    pub const ALL: [CrisisLogKind; 3] = [
        CrisisLogKind::Entry,
        CrisisLogKind::Incident,
        CrisisLogKind::System,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CrisisLogKind::Entry => "entry",
            CrisisLogKind::Incident => "incident",
            CrisisLogKind::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<CrisisLogKind> {
        CrisisLogKind::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CrisisLogEntry {
    pub at: Timestamp,
    pub actor: Actor,
    pub kind: CrisisLogKind,
    pub text: SafeText,
    pub incident: Option<IncidentId>,
    /// What a system or incident line says, for the console to render in the reader's
    /// language; `text` is its English rendering. `None` for an operator's entry and for
    /// lines written before messages existed.
    pub message: Option<Message>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Crisis {
    pub id: CrisisId,
    pub kind: CrisisKind,
    pub title: SafeText,
    /// Communes in scope; empty means the whole territory.
    pub communes: Vec<CommuneIdx>,
    /// 1 (watch) to 3 (major crisis).
    pub level: u8,
    pub opened_at: Timestamp,
    pub opened_by: Actor,
    pub closed_at: Option<Timestamp>,
    pub closed_by: Option<Actor>,
    pub summary: Option<SafeText>,
    pub roles: Vec<RoleHolder>,
    pub log: Vec<CrisisLogEntry>,
    /// Incidents of the scope open at its opening, and those opened or changed while the
    /// crisis was active.
    pub incidents: BTreeSet<IncidentId>,
}

impl Crisis {
    pub fn is_active(&self) -> bool {
        self.closed_at.is_none()
    }
    pub fn covers(&self, commune: CommuneIdx) -> bool {
        self.communes.is_empty() || self.communes.contains(&commune)
    }
}

pub const MIN_LEVEL: u8 = 1;
pub const MAX_LEVEL: u8 = 3;

/// What an operator asks of a crisis.
#[derive(Clone, Debug, PartialEq)]
pub enum CrisisCommand {
    Log(SafeText),
    Level(u8),
    Role {
        role: Arc<str>,
        holder: Option<SafeText>,
    },
    Close {
        summary: SafeText,
    },
}

/// The request to open a crisis.
#[derive(Clone, Debug, PartialEq)]
pub struct CrisisOpening {
    pub kind: CrisisKind,
    pub title: SafeText,
    pub communes: Vec<CommuneIdx>,
    pub level: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrisisError {
    #[error("no crisis {0}")]
    NotFound(u64),
    #[error("crisis {0} is closed")]
    Closed(u64),
    #[error("level must be between {MIN_LEVEL} and {MAX_LEVEL}, not {0}")]
    Level(u8),
    #[error("no role `{0}` in the safeguard plan")]
    UnknownRole(Arc<str>),
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

/// A crisis after a change, with the log entries the change appended.
#[derive(Clone, Debug, PartialEq)]
pub struct CrisisChange {
    pub crisis: Arc<Crisis>,
    pub created: bool,
    pub log: Vec<CrisisLogEntry>,
}

/// Every crisis, active and closed.
#[derive(Debug, Default, Clone)]
pub struct CrisisBoard {
    crises: BTreeMap<CrisisId, Arc<Crisis>>,
    roles: Vec<RoleSpec>,
    next_id: u64,
}

impl CrisisBoard {
    pub fn new(roles: Vec<RoleSpec>) -> Self {
        CrisisBoard {
            crises: BTreeMap::new(),
            roles,
            next_id: 1,
        }
    }

    pub fn roles(&self) -> &[RoleSpec] {
        &self.roles
    }
    pub fn get(&self, id: CrisisId) -> Option<&Arc<Crisis>> {
        self.crises.get(&id)
    }
    /// Every crisis, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Crisis>> {
        self.crises.values()
    }

    /// Forgets a crisis (deleted by the retention purge). Ids are never reused.
    pub fn forget(&mut self, id: CrisisId) {
        self.crises.remove(&id);
    }

    /// Reinstates a crisis read back from the store (restart).
    pub fn restore(&mut self, crisis: Crisis) {
        self.next_id = self.next_id.max(crisis.id.0 + 1);
        self.crises.insert(crisis.id, Arc::new(crisis));
    }

    /// Opens a crisis. Of `current` (the partition's active incidents), those still open
    /// (`Status::is_open`) in its scope are attached at once, each with a log line.
    pub fn open<'a>(
        &mut self,
        req: CrisisOpening,
        actor: &Actor,
        at: Timestamp,
        current: impl IntoIterator<Item = &'a Incident>,
    ) -> Result<CrisisChange, CrisisError> {
        if req.title.trim().is_empty() {
            return Err(CrisisError::Empty("title"));
        }
        check_level(req.level)?;
        let id = CrisisId(self.next_id);
        self.next_id += 1;
        let opened = Message::new("crisis.opened")
            .with("kind", enum_param("crisis_kind", req.kind.as_str()))
            .text("title", &req.title.trimmed())
            .with("level", Param::Int(req.level.into()));
        let entry = CrisisLogEntry {
            at,
            actor: actor.clone(),
            kind: CrisisLogKind::System,
            text: opened.english(),
            incident: None,
            message: Some(opened),
        };
        let mut communes = req.communes;
        communes.sort_unstable();
        communes.dedup();
        let covers = |c: CommuneIdx| communes.is_empty() || communes.contains(&c);
        let mut attached: Vec<&Incident> = current
            .into_iter()
            .filter(|i| i.status.is_open() && covers(i.commune))
            .collect();
        attached.sort_unstable_by_key(|i| i.id);
        let mut log = vec![entry];
        log.extend(attached.iter().map(|inc| {
            let m = Message::new("crisis.incident_attached")
                .with("incident", Param::Incident(inc.id))
                .text("title", &inc.title_now());
            CrisisLogEntry {
                at,
                actor: actor.clone(),
                kind: CrisisLogKind::Incident,
                text: m.english(),
                incident: Some(inc.id),
                message: Some(m),
            }
        }));
        let incidents: BTreeSet<IncidentId> = attached.iter().map(|i| i.id).collect();
        let crisis = Arc::new(Crisis {
            id,
            kind: req.kind,
            title: req.title.trimmed(),
            communes,
            level: req.level,
            opened_at: at,
            opened_by: actor.clone(),
            closed_at: None,
            closed_by: None,
            summary: None,
            roles: self
                .roles
                .iter()
                .map(|r| RoleHolder {
                    role: r.id.clone(),
                    holder: None,
                })
                .collect(),
            log: log.clone(),
            incidents,
        });
        self.crises.insert(id, Arc::clone(&crisis));
        Ok(CrisisChange {
            crisis,
            created: true,
            log,
        })
    }

    pub fn act(
        &mut self,
        id: CrisisId,
        cmd: &CrisisCommand,
        actor: &Actor,
        at: Timestamp,
    ) -> Result<CrisisChange, CrisisError> {
        let roles = &self.roles;
        let slot = self
            .crises
            .get_mut(&id)
            .ok_or(CrisisError::NotFound(id.0))?;
        if !slot.is_active() {
            return Err(CrisisError::Closed(id.0));
        }
        let (kind, said): (CrisisLogKind, Result<SafeText, Message>) = match cmd {
            CrisisCommand::Log(text) => {
                if text.trim().is_empty() {
                    return Err(CrisisError::Empty("text"));
                }
                (CrisisLogKind::Entry, Ok(text.trimmed()))
            }
            CrisisCommand::Level(level) => {
                check_level(*level)?;
                let from = slot.level;
                Arc::make_mut(slot).level = *level;
                (
                    CrisisLogKind::System,
                    Err(Message::new("crisis.level")
                        .with("from", Param::Int(from.into()))
                        .with("to", Param::Int((*level).into()))),
                )
            }
            CrisisCommand::Role { role, holder } => {
                let spec = roles
                    .iter()
                    .find(|r| r.id == *role)
                    .ok_or_else(|| CrisisError::UnknownRole(role.clone()))?;
                let holder = holder
                    .as_deref()
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(SafeText::redacting);
                let c = Arc::make_mut(slot);
                match c.roles.iter_mut().find(|r| r.role == *role) {
                    Some(r) => r.holder.clone_from(&holder),
                    None => c.roles.push(RoleHolder {
                        role: role.clone(),
                        holder: holder.clone(),
                    }),
                }
                let m = match &holder {
                    Some(h) => Message::new("crisis.role_held").text("holder", h),
                    None => Message::new("crisis.role_vacant"),
                };
                let m = m
                    .with("role", enum_param("crisis_role", &spec.id))
                    .text("name", &SafeText::redacting(&spec.name));
                (CrisisLogKind::System, Err(m))
            }
            CrisisCommand::Close { summary } => {
                let c = Arc::make_mut(slot);
                c.closed_at = Some(at);
                c.closed_by = Some(actor.clone());
                let summary = summary.trim();
                c.summary = (!summary.is_empty()).then(|| SafeText::redacting(summary));
                (
                    CrisisLogKind::System,
                    Err(Message::new("crisis.closed")
                        .text("summary", &SafeText::redacting(summary))),
                )
            }
        };
        let (text, message) = match said {
            Ok(text) => (text, None),
            Err(m) => (m.english(), Some(m)),
        };
        let entry = CrisisLogEntry {
            at,
            actor: actor.clone(),
            kind,
            text,
            incident: None,
            message,
        };
        let c = Arc::make_mut(slot);
        c.log.push(entry.clone());
        Ok(CrisisChange {
            crisis: Arc::clone(slot),
            created: false,
            log: vec![entry],
        })
    }

    /// Logs an incident change in every active crisis whose scope holds its commune.
    pub fn follow(&mut self, change: &IncidentChange) -> Vec<CrisisChange> {
        let inc = &change.incident;
        let mut out = Vec::new();
        for slot in self.crises.values_mut() {
            if !slot.is_active() || !slot.covers(inc.commune) {
                continue;
            }
            let c = Arc::make_mut(slot);
            c.incidents.insert(inc.id);
            let mut log = Vec::new();
            for e in &change.log {
                let code = if e.detail.is_empty() {
                    "crisis.incident_logged"
                } else {
                    "crisis.incident_logged_detail"
                };
                let mut m = Message::new(code)
                    .with("incident", Param::Incident(inc.id))
                    .text("title", &inc.title_now())
                    .with("action", enum_param("action", &e.action));
                if !e.detail.is_empty() {
                    let detail = match &e.message {
                        Some(inner) => Param::Message(Box::new(inner.clone())),
                        None => Param::Text(e.detail.clone()),
                    };
                    m = m.with("detail", detail);
                }
                log.push(CrisisLogEntry {
                    at: e.at,
                    actor: e.actor.clone(),
                    kind: CrisisLogKind::Incident,
                    text: m.english(),
                    incident: Some(inc.id),
                    message: Some(m),
                });
            }
            c.log.extend(log.iter().cloned());
            out.push(CrisisChange {
                crisis: Arc::clone(slot),
                created: false,
                log,
            });
        }
        out
    }
}

fn check_level(level: u8) -> Result<(), CrisisError> {
    if (MIN_LEVEL..=MAX_LEVEL).contains(&level) {
        Ok(())
    } else {
        Err(CrisisError::Level(level))
    }
}

fn enum_param(of: &'static str, id: &str) -> Param {
    Param::Enum { of, id: id.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::tests_support::incident;
    use crate::incident::{LogEntry, Status};

    fn board() -> CrisisBoard {
        CrisisBoard::new(vec![RoleSpec {
            id: "dos".into(),
            name: "Directeur des opérations de secours".into(),
            name_en: "Director of rescue operations".into(),
        }])
    }

    fn opening(communes: Vec<CommuneIdx>) -> CrisisOpening {
        CrisisOpening {
            kind: CrisisKind::Flood,
            title: "Crue de l'Ouche".into(),
            communes,
            level: 2,
        }
    }

    fn change(id: u64, commune: u32, action: &str) -> IncidentChange {
        let mut inc = incident(IncidentId(id), None, Status::New);
        inc.commune = CommuneIdx(commune);
        IncidentChange {
            incident: inc,
            created: false,
            log: vec![LogEntry {
                at: Timestamp(50),
                actor: Actor::User("alice".into()),
                action: action.into(),
                detail: crate::SafeText::default(),
                message: None,
            }],
            pseudonyms: Vec::new(),
        }
    }

    #[test]
    fn the_log_records_operators_and_incidents_of_the_scope_only() {
        let mut b = board();
        let op = Actor::User("alice".into());
        let id = b
            .open(opening(vec![CommuneIdx(1)]), &op, Timestamp(10), [])
            .expect("opens")
            .crisis
            .id;
        b.act(
            id,
            &CrisisCommand::Log("PC ouvert en mairie".into()),
            &op,
            Timestamp(20),
        )
        .expect("log");
        assert!(
            b.follow(&change(7, 2, "opened")).is_empty(),
            "outside the scope"
        );
        let c = b.follow(&change(8, 1, "acknowledged"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].log[0].text, "#8 Crue — acknowledged");
        assert_eq!(c[0].log[0].incident, Some(IncidentId(8)));
        b.act(
            id,
            &CrisisCommand::Role {
                role: "dos".into(),
                holder: Some("Mme la maire".into()),
            },
            &op,
            Timestamp(60),
        )
        .expect("role");
        assert_eq!(
            b.act(
                id,
                &CrisisCommand::Role {
                    role: "x".into(),
                    holder: None
                },
                &op,
                Timestamp(61)
            ),
            Err(CrisisError::UnknownRole("x".into()))
        );
        assert_eq!(
            b.act(id, &CrisisCommand::Level(4), &op, Timestamp(62)),
            Err(CrisisError::Level(4))
        );
        b.act(id, &CrisisCommand::Level(3), &op, Timestamp(63))
            .expect("level");
        let closed = b
            .act(
                id,
                &CrisisCommand::Close {
                    summary: "Décrue".into(),
                },
                &op,
                Timestamp(70),
            )
            .expect("close")
            .crisis;
        let kinds: Vec<CrisisLogKind> = closed.log.iter().map(|e| e.kind).collect();
        use CrisisLogKind::*;
        assert_eq!(kinds, [System, Entry, Incident, System, System, System]);
        assert_eq!(closed.level, 3);
        assert_eq!(closed.roles[0].holder.as_deref(), Some("Mme la maire"));
        assert_eq!(
            closed.incidents.iter().copied().collect::<Vec<_>>(),
            [IncidentId(8)]
        );
        assert_eq!(closed.summary.as_deref(), Some("Décrue"));
        // Closed: nothing more is logged, commands are refused.
        assert!(b.follow(&change(8, 1, "resolved")).is_empty());
        assert_eq!(
            b.act(id, &CrisisCommand::Log("x".into()), &op, Timestamp(80)),
            Err(CrisisError::Closed(id.0))
        );
    }

    #[test]
    fn whole_territory_scope_and_ids_continue_after_restore() {
        let mut b = board();
        let op = Actor::System;
        let c = b
            .open(opening(vec![]), &op, Timestamp(1), [])
            .expect("opens")
            .crisis;
        assert_eq!(b.follow(&change(1, 5, "opened")).len(), 1);
        let mut restored = board();
        restored.restore((*b.get(c.id).expect("kept").clone()).clone());
        let next = restored
            .open(opening(vec![]), &op, Timestamp(2), [])
            .expect("opens");
        assert_eq!(next.crisis.id, CrisisId(c.id.0 + 1));
        assert_eq!(restored.follow(&change(2, 0, "opened")).len(), 2);
        assert_eq!(
            b.open(
                CrisisOpening {
                    title: " ".into(),
                    ..opening(vec![])
                },
                &op,
                Timestamp(3),
                []
            ),
            Err(CrisisError::Empty("title"))
        );
    }

    #[test]
    fn opening_attaches_the_open_incidents_of_the_scope_and_later_ones_join() {
        let mut b = board();
        let op = Actor::User("alice".into());
        let at = |id: u64, commune: u32, status: Status| {
            let mut i = incident(IncidentId(id), None, status);
            i.commune = CommuneIdx(commune);
            i
        };
        let current = [
            at(4, 1, Status::InProgress),
            at(2, 1, Status::New),
            at(3, 1, Status::Acknowledged),
            at(5, 1, Status::Resolved),
            at(6, 2, Status::New),
        ];
        let opened = b
            .open(opening(vec![CommuneIdx(1)]), &op, Timestamp(10), &current)
            .expect("opens");
        let c = &opened.crisis;
        assert_eq!(
            c.incidents.iter().copied().collect::<Vec<_>>(),
            [IncidentId(2), IncidentId(3), IncidentId(4)],
            "open incidents of the scope; not the resolved one, not another commune's"
        );
        let attached: Vec<(Option<IncidentId>, CrisisLogKind)> =
            opened.log.iter().map(|e| (e.incident, e.kind)).collect();
        assert_eq!(
            attached,
            [
                (None, CrisisLogKind::System),
                (Some(IncidentId(2)), CrisisLogKind::Incident),
                (Some(IncidentId(3)), CrisisLogKind::Incident),
                (Some(IncidentId(4)), CrisisLogKind::Incident),
            ]
        );
        assert_eq!(
            opened.log, c.log,
            "the change carries every line it appended"
        );
        assert_eq!(c.log[1].text, "#2 Crue — attached");
        assert!(c.log.iter().all(|e| e.at == Timestamp(10)));
        // An incident opened later in the scope joins the crisis as it opens.
        let mut later = change(9, 1, "opened");
        later.created = true;
        assert_eq!(b.follow(&later).len(), 1);
        let c = b.get(c.id).expect("kept");
        assert!(c.incidents.contains(&IncidentId(9)));
        // The whole territory: every open incident, whatever its commune.
        let all = b
            .open(opening(vec![]), &op, Timestamp(11), &current)
            .expect("opens");
        assert_eq!(
            all.crisis.incidents.iter().copied().collect::<Vec<_>>(),
            [IncidentId(2), IncidentId(3), IncidentId(4), IncidentId(6)]
        );
    }
}
