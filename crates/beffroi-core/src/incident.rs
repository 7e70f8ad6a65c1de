//! Incidents: the lifecycle state machine and the deduplication book.
//!
//! Invariant kept by [`IncidentBook`]: at most one incident that is not `Closed` exists per
//! [`DedupKey`]. The book is the single owner of incident state in a partition; the engine
//! feeds it alarms and operator actions one at a time, which makes "open or update"
//! atomic without locks.

use crate::message::{Message, Param};
use crate::text::SafeText;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::alarm::{Alarm, AlarmKind, DedupKey};
use crate::geo::Point;
use crate::territory::{CommuneIdx, DeviceIdx, SiteIdx, Territory};
use crate::time::{Duration, Timestamp};
use crate::trigger::Trigger;

/// The placeholder of a rule title for the triggering value, rendered when read
/// ([`Incident::title_now`]) so that a title never freezes the opening value.
pub const VALUE_TOKEN: &str = "{value}";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Minor,
        Severity::Major,
        Severity::Critical,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    New,
    Acknowledged,
    InProgress,
    Resolved,
    Closed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::New,
        Status::Acknowledged,
        Status::InProgress,
        Status::Resolved,
        Status::Closed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Acknowledged => "acknowledged",
            Status::InProgress => "in_progress",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Open means someone still has to act: new, acknowledged or in progress.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Status::New | Status::Acknowledged | Status::InProgress
        )
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IncidentId(pub u64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who did something: a person or a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    User(Arc<str>),
    Rule(Arc<str>),
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(u) => write!(f, "user:{u}"),
            Actor::Rule(r) => write!(f, "rule:{r}"),
            Actor::System => f.write_str("system"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SopStep {
    pub text: Arc<str>,
    pub done_by: Option<Arc<str>>,
    pub done_at: Option<Timestamp>,
    /// Deadline: the incident's opening plus the step's `within`, if it has one.
    pub due_at: Option<Timestamp>,
}

impl SopStep {
    /// Not done and past its deadline.
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.done_at.is_none() && self.due_at.is_some_and(|d| now > d)
    }
}

/// One line of the incident's chronological log (*main courante*).
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub at: Timestamp,
    pub actor: Actor,
    /// Machine-readable action: `opened`, `acknowledged`, `escalated`, `comment`…
    pub action: Arc<str>,
    pub detail: SafeText,
    /// What the line says, as a code and parameters for the console to render in the
    /// reader's language; `detail` is its English rendering. `None` for free text (a
    /// comment) and for lines written before messages existed.
    pub message: Option<Message>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub id: IncidentId,
    pub key: DedupKey,
    pub rule: Arc<str>,
    pub category: Arc<str>,
    pub severity: Severity,
    pub status: Status,
    pub title: SafeText,
    pub commune: CommuneIdx,
    pub site: SiteIdx,
    pub device: Option<DeviceIdx>,
    pub position: Point,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub owner: Option<Arc<str>>,
    /// Whether the rule's condition currently holds.
    pub condition_active: bool,
    /// How many times the condition was raised for this incident.
    pub alarm_count: u32,
    pub evidence: SafeText,
    pub sop_title: Option<Arc<str>>,
    pub sop: Vec<SopStep>,
    /// When the reminder for an unacknowledged incident was logged.
    pub reminded_at: Option<Timestamp>,
    /// When the unacknowledged incident was escalated to the supervisor.
    pub escalated_at: Option<Timestamp>,
    /// What fired the rule at the opening, as structure; never overwritten.
    pub trigger: Option<Trigger>,
    /// The worst value of the triggering field since the opening (the direction of the
    /// condition decides "worst": [`Trigger::is_worse`]).
    pub peak: Option<f64>,
    /// The latest value of the triggering field, and its event time.
    pub current: Option<f64>,
    pub current_at: Option<Timestamp>,
    /// The last re-opening (by its rule or by a person); `opened_at` stays the first.
    pub reopened_at: Option<Timestamp>,
}

/// The rule of an incident a partner shares under a federation agreement:
/// `fed:<partner>`.
pub const PARTNER_RULE_PREFIX: &str = "fed:";

impl Incident {
    /// A partner's incident, shown here as it changes there: the partner handles it.
    pub fn is_from_partner(&self) -> bool {
        self.rule.starts_with(PARTNER_RULE_PREFIX)
    }

    /// The time of its latest opening: the last re-opening, or the opening.
    pub fn last_opened_at(&self) -> Timestamp {
        self.reopened_at.unwrap_or(self.opened_at)
    }

    /// The title as it reads now: the rule's `{value}` (kept in the stored title) replaced
    /// by the current value of the triggering field, or the value that fired it, or `…`.
    pub fn title_now(&self) -> SafeText {
        if !self.title.contains(VALUE_TOKEN) {
            return self.title.clone();
        }
        let v = self
            .current
            .or(self.trigger.as_ref().and_then(|t| t.value))
            .map_or_else(|| "…".to_string(), |v| v.to_string());
        SafeText::redacting(&self.title.replace(VALUE_TOKEN, &v))
    }

    /// A reading of `device`'s `field` at `at` while the incident is open: moves `current`
    /// (if it is not older than the current one) and `peak`. Returns whether either moved.
    pub fn observe_reading(
        &mut self,
        device: DeviceIdx,
        field: &str,
        value: f64,
        at: Timestamp,
    ) -> bool {
        let Some(t) = self.trigger.as_ref().filter(|t| t.watches(device, field)) else {
            return false;
        };
        if !self.status.is_open() || self.current_at.is_some_and(|c| at < c) {
            return false;
        }
        let worse = self.peak.is_none_or(|p| t.is_worse(value, p));
        let moved = worse || self.current != Some(value);
        if worse {
            self.peak = Some(value);
        }
        self.current = Some(value);
        self.current_at = Some(at);
        moved
    }

    /// Whether step `i` was skipped: not done while a later step is done.
    pub fn step_skipped(&self, i: usize) -> bool {
        self.sop.get(i).is_some_and(|s| s.done_at.is_none())
            && self.sop.iter().skip(i + 1).any(|s| s.done_at.is_some())
    }

    /// Whether a supervisor should look at it: escalated, or a procedure step overdue or
    /// skipped (only while the incident is open).
    pub fn supervisor_attention(&self, now: Timestamp) -> bool {
        self.status.is_open()
            && (self.escalated_at.is_some()
                || (0..self.sop.len()).any(|i| self.sop[i].overdue(now) || self.step_skipped(i)))
    }
}

/// What an operator (or the system) asks of an incident.
#[derive(Clone, Debug, PartialEq)]
pub enum IncidentAction {
    Acknowledge,
    Start,
    Resolve,
    Close,
    Reopen,
    Assign(Arc<str>),
    Comment(SafeText),
    CompleteStep(usize),
}

impl IncidentAction {
    pub fn name(&self) -> &'static str {
        match self {
            IncidentAction::Acknowledge => "acknowledge",
            IncidentAction::Start => "start",
            IncidentAction::Resolve => "resolve",
            IncidentAction::Close => "close",
            IncidentAction::Reopen => "reopen",
            IncidentAction::Assign(_) => "assign",
            IncidentAction::Comment(_) => "comment",
            IncidentAction::CompleteStep(_) => "complete_step",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("incident {0} not found among active incidents")]
    NotFound(IncidentId),
    #[error("cannot {action} an incident that is {from}")]
    NotAllowed {
        action: &'static str,
        from: &'static str,
    },
    #[error("incident has no procedure step {0}")]
    NoSuchStep(usize),
    #[error("procedure step {0} is already done")]
    StepDone(usize),
    #[error("another incident ({0}) is already active for this key")]
    KeyTaken(IncidentId),
    #[error("text must not be empty")]
    EmptyText,
    #[error(transparent)]
    Unit(#[from] crate::unit::UnitError),
}

/// The state change of one incident, to persist and broadcast.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentChange {
    pub incident: Incident,
    pub created: bool,
    pub log: Vec<LogEntry>,
    /// Pseudonyms this change adds to what the incident carries: those of the reading that
    /// raised it ([`Alarm::carries`]). Only these can be unmasked through the incident; its
    /// title, evidence and log never count, whatever they contain.
    pub pseudonyms: Vec<Arc<str>>,
}

/// A reflex procedure for a category.
#[derive(Clone, Debug, PartialEq)]
pub struct Procedure {
    pub category: Arc<str>,
    pub title: Arc<str>,
    pub steps: Vec<ProcedureStep>,
}

/// One step of a procedure, with an optional deadline counted from the incident's opening.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcedureStep {
    pub text: Arc<str>,
    pub within: Option<Duration>,
}

impl From<&str> for ProcedureStep {
    fn from(text: &str) -> Self {
        ProcedureStep {
            text: text.into(),
            within: None,
        }
    }
}

/// Delays before an unacknowledged incident gets a reminder, then is escalated to the
/// supervisor, per severity (`escalation.toml`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EscalationPolicy {
    /// Indexed by `Severity as usize` (info, minor, major, critical).
    pub delays: [EscalationDelays; 4],
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EscalationDelays {
    pub remind_after: Option<Duration>,
    pub escalate_after: Option<Duration>,
}

impl EscalationPolicy {
    pub fn for_severity(&self, s: Severity) -> EscalationDelays {
        self.delays[s as usize]
    }
    pub fn is_empty(&self) -> bool {
        self.delays
            .iter()
            .all(|d| d.remind_after.is_none() && d.escalate_after.is_none())
    }
}

/// The pseudonyms an alarm carries, once each, in a fixed order.
fn carried(alarm: &Alarm) -> Vec<Arc<str>> {
    let mut v = alarm.carries.clone();
    v.sort_unstable();
    v.dedup();
    v
}

/// The active (not closed) incidents of a partition, indexed by id and deduplication key.
#[derive(Debug, Default)]
pub struct IncidentBook {
    by_id: HashMap<IncidentId, Incident>,
    by_key: HashMap<DedupKey, IncidentId>,
    procedures: HashMap<Arc<str>, Procedure>,
    next_id: u64,
    /// The incidents whose trigger names a device: a reading of that device is all it
    /// takes to find the incidents whose `current` and `peak` it may move.
    watching: HashMap<DeviceIdx, Vec<IncidentId>>,
}

impl IncidentBook {
    pub fn new(procedures: impl IntoIterator<Item = Procedure>) -> Self {
        IncidentBook {
            procedures: procedures
                .into_iter()
                .map(|p| (p.category.clone(), p))
                .collect(),
            next_id: 1,
            ..Default::default()
        }
    }

    /// Replaces the procedures used for incidents opened from now on.
    pub fn set_procedures(&mut self, procedures: impl IntoIterator<Item = Procedure>) {
        self.procedures = procedures
            .into_iter()
            .map(|p| (p.category.clone(), p))
            .collect();
    }

    /// Reinstates an incident read back from the store (restart). Closed incidents are
    /// ignored; ids allocated later are above every restored id.
    pub fn restore(&mut self, incident: Incident) -> Result<(), TransitionError> {
        self.next_id = self.next_id.max(incident.id.0 + 1);
        if incident.status == Status::Closed {
            return Ok(());
        }
        if let Some(other) = self.by_key.get(&incident.key)
            && *other != incident.id
        {
            return Err(TransitionError::KeyTaken(*other));
        }
        self.by_key.insert(incident.key.clone(), incident.id);
        self.watch(&incident);
        self.by_id.insert(incident.id, incident);
        Ok(())
    }

    fn watch(&mut self, inc: &Incident) {
        if let Some(d) = inc.trigger.as_ref().and_then(|t| t.device) {
            let ids = self.watching.entry(d).or_default();
            if !ids.contains(&inc.id) {
                ids.push(inc.id);
            }
        }
    }

    fn unwatch(&mut self, inc: &Incident) {
        if let Some(d) = inc.trigger.as_ref().and_then(|t| t.device)
            && let Some(ids) = self.watching.get_mut(&d)
        {
            ids.retain(|i| *i != inc.id);
            if ids.is_empty() {
                self.watching.remove(&d);
            }
        }
    }

    /// A numeric reading of `device`'s `field` (event time `at`, as it may be shown): the
    /// open incidents it triggered get their `current` and `peak` moved. One change (with
    /// no log line) per incident whose values moved; nothing when the device triggered
    /// nothing, at the cost of one map lookup.
    pub fn observe_reading(
        &mut self,
        device: DeviceIdx,
        field: &str,
        value: f64,
        at: Timestamp,
    ) -> Vec<IncidentChange> {
        let Some(ids) = self.watching.get(&device) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for id in ids {
            if let Some(inc) = self.by_id.get_mut(id)
                && inc.observe_reading(device, field, value, at)
            {
                changes.push(IncidentChange {
                    incident: inc.clone(),
                    created: false,
                    log: Vec::new(),
                    pseudonyms: Vec::new(),
                });
            }
        }
        changes
    }

    /// Makes sure future ids are above `id` (ids of closed incidents in the store).
    pub fn reserve_ids_through(&mut self, id: IncidentId) {
        self.next_id = self.next_id.max(id.0 + 1);
    }

    pub fn get(&self, id: IncidentId) -> Option<&Incident> {
        self.by_id.get(&id)
    }
    pub fn by_key(&self, key: &DedupKey) -> Option<&Incident> {
        self.by_key.get(key).and_then(|id| self.by_id.get(id))
    }
    pub fn active(&self) -> impl Iterator<Item = &Incident> {
        self.by_id.values()
    }
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Applies an alarm: opens an incident for its key, or updates the active one.
    /// Returns `None` when nothing changed (a clear for a key without incident).
    pub fn apply_alarm(&mut self, alarm: &Alarm, territory: &Territory) -> Option<IncidentChange> {
        let actor = Actor::Rule(alarm.rule.clone());
        let at = alarm.at;
        if let Some(id) = self.by_key.get(&alarm.key).copied() {
            let inc = self.by_id.get_mut(&id)?;
            let mut log = Vec::new();
            match alarm.kind {
                AlarmKind::Raise | AlarmKind::Escalate => {
                    let was_active = inc.condition_active;
                    inc.condition_active = true;
                    inc.evidence.clone_from(&alarm.evidence);
                    if !was_active {
                        inc.alarm_count += 1;
                    }
                    if inc.status == Status::Resolved {
                        inc.status = Status::New;
                        inc.resolved_at = None;
                        inc.acknowledged_at = None;
                        inc.reopened_at = Some(at);
                        log.push(said(
                            at,
                            &actor,
                            "reopened",
                            evidence_msg("incident.reopened_by_rule", alarm),
                        ));
                    } else if !was_active {
                        log.push(said(
                            at,
                            &actor,
                            "raised_again",
                            evidence_msg("incident.raised_again", alarm),
                        ));
                    }
                    if alarm.severity > inc.severity {
                        let detail = if alarm.evidence.is_empty() {
                            Message::new("incident.severity_raised")
                        } else {
                            evidence_msg("incident.severity_raised_by", alarm)
                        };
                        let detail = detail
                            .with("from", Param::Severity(inc.severity))
                            .with("to", Param::Severity(alarm.severity));
                        inc.severity = alarm.severity;
                        log.push(said(at, &actor, "escalated", detail));
                    }
                }
                AlarmKind::Clear => {
                    if !inc.condition_active {
                        return None;
                    }
                    inc.condition_active = false;
                    if inc.status.is_open() && alarm.auto_resolve {
                        inc.status = Status::Resolved;
                        inc.resolved_at = Some(at);
                        log.push(said(
                            at,
                            &actor,
                            "auto_resolved",
                            evidence_msg("incident.auto_resolved", alarm),
                        ));
                    } else {
                        log.push(said(
                            at,
                            &actor,
                            "condition_cleared",
                            evidence_msg("incident.condition_cleared", alarm),
                        ));
                    }
                }
            }
            let pseudonyms = match alarm.kind {
                AlarmKind::Raise | AlarmKind::Escalate => carried(alarm),
                AlarmKind::Clear => Vec::new(),
            };
            // A later raise keeps the opening's trigger: only the peak and current move.
            let moved = match (&alarm.trigger, alarm.kind.clone()) {
                (Some(t), AlarmKind::Raise | AlarmKind::Escalate) => {
                    match (t.device, &t.field, t.value) {
                        (Some(d), Some(f), Some(v)) => inc.observe_reading(d, f, v, t.at),
                        _ => false,
                    }
                }
                _ => false,
            };
            if log.is_empty() && pseudonyms.is_empty() && !moved {
                return None;
            }
            inc.updated_at = inc.updated_at.max(at);
            return Some(IncidentChange {
                incident: inc.clone(),
                created: false,
                log,
                pseudonyms,
            });
        }
        if alarm.kind == AlarmKind::Clear {
            return None;
        }
        let site = territory.site(alarm.site);
        let position = alarm
            .device
            .map(|d| territory.device(d).position)
            .unwrap_or(site.position);
        let procedure = self.procedures.get(&alarm.category);
        let id = IncidentId(self.next_id);
        self.next_id += 1;
        let inc = Incident {
            id,
            key: alarm.key.clone(),
            rule: alarm.rule.clone(),
            category: alarm.category.clone(),
            severity: alarm.severity,
            status: Status::New,
            title: alarm.title.clone(),
            commune: site.commune,
            site: alarm.site,
            device: alarm.device,
            position,
            opened_at: at,
            updated_at: at,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: None,
            condition_active: true,
            alarm_count: 1,
            evidence: alarm.evidence.clone(),
            sop_title: procedure.map(|p| p.title.clone()),
            sop: procedure
                .map(|p| {
                    p.steps
                        .iter()
                        .map(|s| SopStep {
                            text: s.text.clone(),
                            done_by: None,
                            done_at: None,
                            due_at: s.within.map(|w| at.plus(w)),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            reminded_at: None,
            escalated_at: None,
            peak: alarm.trigger.as_ref().and_then(|t| t.value),
            current: alarm.trigger.as_ref().and_then(|t| t.value),
            current_at: alarm
                .trigger
                .as_ref()
                .filter(|t| t.value.is_some())
                .map(|t| t.at),
            trigger: alarm.trigger.clone(),
            reopened_at: None,
        };
        let log = vec![said(
            at,
            &actor,
            "opened",
            evidence_msg("incident.opened", alarm)
                .with("severity", Param::Severity(alarm.severity)),
        )];
        self.by_key.insert(inc.key.clone(), id);
        self.watch(&inc);
        self.by_id.insert(id, inc.clone());
        Some(IncidentChange {
            incident: inc,
            created: true,
            log,
            pseudonyms: carried(alarm),
        })
    }

    /// Applies an operator action. Closed incidents leave the book: they are final, and a
    /// new alarm for their key opens a new incident.
    pub fn act(
        &mut self,
        id: IncidentId,
        action: &IncidentAction,
        actor: &Actor,
        at: Timestamp,
    ) -> Result<IncidentChange, TransitionError> {
        let inc = self
            .by_id
            .get_mut(&id)
            .ok_or(TransitionError::NotFound(id))?;
        let not_allowed = |inc: &Incident| TransitionError::NotAllowed {
            action: action.name(),
            from: inc.status.as_str(),
        };
        // A partner's incident is the partner's to handle: here it is commented, and
        // closed once it ended there, nothing else.
        if inc.is_from_partner()
            && !matches!(action, IncidentAction::Comment(_) | IncidentAction::Close)
        {
            return Err(TransitionError::NotAllowed {
                action: action.name(),
                from: "a partner's",
            });
        }
        let (log_action, detail): (&'static str, Said) = match action {
            IncidentAction::Acknowledge => {
                if inc.status != Status::New {
                    return Err(not_allowed(inc));
                }
                inc.status = Status::Acknowledged;
                inc.acknowledged_at = Some(at);
                ("acknowledged", Said::Nothing)
            }
            IncidentAction::Start => {
                if !matches!(inc.status, Status::New | Status::Acknowledged) {
                    return Err(not_allowed(inc));
                }
                if inc.acknowledged_at.is_none() {
                    inc.acknowledged_at = Some(at);
                }
                inc.status = Status::InProgress;
                ("started", Said::Nothing)
            }
            IncidentAction::Resolve => {
                if !inc.status.is_open() {
                    return Err(not_allowed(inc));
                }
                inc.status = Status::Resolved;
                inc.resolved_at = Some(at);
                ("resolved", Said::Nothing)
            }
            IncidentAction::Close => {
                if inc.status != Status::Resolved {
                    return Err(not_allowed(inc));
                }
                inc.status = Status::Closed;
                inc.closed_at = Some(at);
                ("closed", Said::Nothing)
            }
            IncidentAction::Reopen => {
                if !matches!(inc.status, Status::Resolved | Status::Closed) {
                    return Err(not_allowed(inc));
                }
                inc.status = Status::Acknowledged;
                inc.resolved_at = None;
                inc.closed_at = None;
                inc.acknowledged_at = Some(at);
                inc.reopened_at = Some(at);
                ("reopened", Said::Nothing)
            }
            IncidentAction::Assign(owner) => {
                if inc.status == Status::Closed {
                    return Err(not_allowed(inc));
                }
                if owner.trim().is_empty() {
                    return Err(TransitionError::EmptyText);
                }
                inc.owner = Some(owner.clone());
                (
                    "assigned",
                    Said::Message(
                        Message::new("incident.assigned").with("owner", Param::User(owner.clone())),
                    ),
                )
            }
            IncidentAction::Comment(text) => {
                if text.trim().is_empty() {
                    return Err(TransitionError::EmptyText);
                }
                ("comment", Said::Text(text.clone()))
            }
            IncidentAction::CompleteStep(i) => {
                if inc.status == Status::Closed {
                    return Err(not_allowed(inc));
                }
                let step = inc.sop.get_mut(*i).ok_or(TransitionError::NoSuchStep(*i))?;
                if step.done_at.is_some() {
                    return Err(TransitionError::StepDone(*i));
                }
                step.done_at = Some(at);
                step.done_by = Some(actor.to_string().into());
                (
                    "step_done",
                    Said::Message(
                        Message::new("incident.step_done")
                            .with("step", Param::Int(*i as i64 + 1))
                            .with("text", Param::Text(SafeText::redacting(&step.text))),
                    ),
                )
            }
        };
        inc.updated_at = inc.updated_at.max(at);
        let change = IncidentChange {
            incident: inc.clone(),
            created: false,
            log: vec![detail.entry(at, actor, log_action)],
            pseudonyms: Vec::new(),
        };
        if inc.status == Status::Closed {
            self.by_key.remove(&inc.key);
            if let Some(closed) = self.by_id.remove(&id) {
                self.unwatch(&closed);
            }
        }
        Ok(change)
    }
}

impl IncidentBook {
    /// Closes, as the system, every incident resolved for `after` or longer at `now`
    /// (processing time) that nobody closed: a resolved incident is done with, and only a
    /// closed one follows the retention of closed records. Changes come in id order.
    pub fn close_resolved(&mut self, after: Duration, now: Timestamp) -> Vec<IncidentChange> {
        let mut due: Vec<IncidentId> = self
            .by_id
            .values()
            .filter(|i| {
                i.status == Status::Resolved && i.resolved_at.is_some_and(|r| now.since(r) >= after)
            })
            .map(|i| i.id)
            .collect();
        due.sort_unstable();
        let mut changes = Vec::new();
        for id in due {
            if let Ok(mut change) = self.act(id, &IncidentAction::Close, &Actor::System, now) {
                for e in &mut change.log {
                    let m = Message::new("incident.closed_unattended")
                        .with("after", Param::Duration(after));
                    e.detail = m.english();
                    e.message = Some(m);
                }
                changes.push(change);
            }
        }
        changes
    }

    /// Reminders and escalations due at `now` (processing time): an incident still `new`
    /// `remind_after` its opening gets a `reminder` log entry, `escalate_after` its opening
    /// an `escalated_to_supervisor` one. Each happens once per incident. Changes come in
    /// incident id order.
    pub fn tick_escalation(
        &mut self,
        policy: &EscalationPolicy,
        now: Timestamp,
    ) -> Vec<IncidentChange> {
        if policy.is_empty() {
            return Vec::new();
        }
        let mut changes = Vec::new();
        for inc in self.by_id.values_mut() {
            // A partner's incident is acknowledged there, not here: no reminder.
            if inc.status != Status::New || inc.is_from_partner() {
                continue;
            }
            let d = policy.for_severity(inc.severity);
            let waited = now.since(inc.opened_at);
            let mut log = Vec::new();
            if let Some(after) = d.remind_after
                && inc.reminded_at.is_none()
                && inc.escalated_at.is_none()
                && waited >= after
            {
                inc.reminded_at = Some(now);
                log.push(said(
                    now,
                    &Actor::System,
                    "reminder",
                    Message::new("incident.not_acknowledged").with("after", Param::Duration(after)),
                ));
            }
            if let Some(after) = d.escalate_after
                && inc.escalated_at.is_none()
                && waited >= after
            {
                inc.escalated_at = Some(now);
                log.push(said(
                    now,
                    &Actor::System,
                    "escalated_to_supervisor",
                    Message::new("incident.not_acknowledged").with("after", Param::Duration(after)),
                ));
            }
            if !log.is_empty() {
                inc.updated_at = inc.updated_at.max(now);
                changes.push(IncidentChange {
                    incident: inc.clone(),
                    created: false,
                    log,
                    pseudonyms: Vec::new(),
                });
            }
        }
        changes.sort_by_key(|c| c.incident.id);
        changes
    }
}

/// What a log line says: nothing more than its action, free text, or a message.
enum Said {
    Nothing,
    Text(SafeText),
    Message(Message),
}

impl Said {
    fn entry(self, at: Timestamp, actor: &Actor, action: &'static str) -> LogEntry {
        match self {
            Said::Nothing => entry(at, actor, action, SafeText::default()),
            Said::Text(t) => entry(at, actor, action, t),
            Said::Message(m) => said(at, actor, action, m),
        }
    }
}

/// A message carrying the alarm's evidence, under `code`.
fn evidence_msg(code: &'static str, alarm: &Alarm) -> Message {
    let evidence = match &alarm.evidence_message {
        Some(m) => Param::Message(Box::new(m.clone())),
        None => Param::Text(alarm.evidence.clone()),
    };
    Message::new(code).with("evidence", evidence)
}

fn entry(at: Timestamp, actor: &Actor, action: &'static str, detail: SafeText) -> LogEntry {
    LogEntry {
        at,
        actor: actor.clone(),
        action: action.into(),
        detail,
        message: None,
    }
}

/// A log line that says `message`; its detail is the message's English rendering.
fn said(at: Timestamp, actor: &Actor, action: &'static str, message: Message) -> LogEntry {
    LogEntry {
        detail: message.english(),
        message: Some(message),
        ..entry(at, actor, action, SafeText::default())
    }
}

/// Incidents built by hand for the tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::territory::{CommuneIdx, SiteIdx};

    pub(crate) fn incident(id: IncidentId, owner: Option<&str>, status: Status) -> Incident {
        Incident {
            id,
            key: DedupKey::for_site("r", &format!("s{}", id.0)),
            rule: "r".into(),
            category: "flood".into(),
            severity: Severity::Major,
            status,
            title: "Crue".into(),
            commune: CommuneIdx(0),
            site: SiteIdx(0),
            device: None,
            position: Point::new(5.0, 47.3),
            opened_at: Timestamp(0),
            updated_at: Timestamp(0),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: owner.map(Into::into),
            condition_active: true,
            alarm_count: 1,
            evidence: crate::SafeText::default(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::territory::fixture;
    use crate::time::{Clock, SimClock};

    fn alarm(kind: AlarmKind, sev: Severity, at: i64) -> Alarm {
        let t = fixture::small();
        Alarm {
            kind,
            key: DedupKey::for_site("r", "s2"),
            rule: "r".into(),
            category: "flood".into(),
            severity: sev,
            title: "High water".into(),
            site: t.site_id("s2").expect("fixture"),
            device: t.device_id("g1"),
            at: Timestamp(at),
            evidence: "level_m=3".into(),
            auto_resolve: true,
            silence: false,
            carries: Vec::new(),
            evidence_message: None,
            trigger: None,
        }
    }

    #[test]
    fn a_raise_records_what_its_reading_carries_and_a_clear_nothing() {
        let t = fixture::small();
        let mut b = IncidentBook::new([]);
        let mut a = alarm(AlarmKind::Raise, Severity::Major, 10);
        a.carries = vec!["badge:1:b".into(), "badge:1:a".into(), "badge:1:b".into()];
        let c = b.apply_alarm(&a, &t).expect("opened");
        assert_eq!(
            c.pseudonyms,
            vec![Arc::from("badge:1:a"), Arc::from("badge:1:b")]
        );
        // Raised again with nothing new in the log: still recorded.
        a.carries = vec!["badge:1:c".into()];
        let c = b.apply_alarm(&a, &t).expect("recorded");
        assert!(c.log.is_empty());
        assert_eq!(c.pseudonyms, vec![Arc::from("badge:1:c")]);
        let mut clear = alarm(AlarmKind::Clear, Severity::Major, 20);
        clear.carries = vec!["badge:1:d".into()];
        let c = b.apply_alarm(&clear, &t).expect("cleared");
        assert!(c.pseudonyms.is_empty());
    }

    fn fired(at: i64, value: f64) -> Alarm {
        let t = fixture::small();
        let mut a = alarm(AlarmKind::Raise, Severity::Major, at);
        let mut tr = Trigger::new(crate::trigger::TriggerKind::Threshold, Timestamp(at));
        tr.device = t.device_id("g1");
        tr.field = Some("level_m".into());
        tr.value = Some(value);
        tr.op = Some(crate::trigger::TriggerOp::Above);
        tr.threshold = Some(3.0);
        a.trigger = Some(tr);
        a.title = "High water ({value} m)".into();
        a
    }

    #[test]
    fn the_trigger_is_never_overwritten_and_peak_and_current_follow_the_readings() {
        let t = fixture::small();
        let g1 = t.device_id("g1").expect("fixture");
        let mut b = IncidentBook::new([]);
        let opened = b.apply_alarm(&fired(10, 3.2), &t).expect("opens").incident;
        let first = opened.trigger.clone().expect("trigger stored at opening");
        assert_eq!(first.value, Some(3.2));
        assert_eq!((opened.peak, opened.current), (Some(3.2), Some(3.2)));
        assert_eq!(opened.title_now(), "High water (3.2 m)");

        // Readings of the triggering series move current and peak, not the trigger.
        let c = b.observe_reading(g1, "level_m", 3.5, Timestamp(20));
        assert_eq!(c.len(), 1);
        assert!(c[0].log.is_empty(), "a reading is not a log line");
        let c = b.observe_reading(g1, "level_m", 3.4, Timestamp(30));
        let inc = &c[0].incident;
        assert_eq!((inc.peak, inc.current), (Some(3.5), Some(3.4)));
        assert_eq!(inc.title_now(), "High water (3.4 m)");
        assert_eq!(
            inc.title, "High water ({value} m)",
            "the stored title keeps the token"
        );
        // Another field, another device, an older reading: nothing moves.
        assert!(
            b.observe_reading(g1, "battery", 9.0, Timestamp(40))
                .is_empty()
        );
        assert!(
            b.observe_reading(crate::DeviceIdx(99), "level_m", 9.0, Timestamp(40))
                .is_empty()
        );
        assert!(
            b.observe_reading(g1, "level_m", 9.0, Timestamp(25))
                .is_empty()
        );

        // Escalation, clear (auto-resolve), raise again: the opening's trigger stays.
        let mut esc = alarm(AlarmKind::Escalate, Severity::Critical, 50);
        esc.evidence = "condition active for 60 min".into();
        let c = b.apply_alarm(&esc, &t).expect("escalates");
        assert_eq!(c.incident.trigger.as_ref(), Some(&first));
        let c = b
            .apply_alarm(&alarm(AlarmKind::Clear, Severity::Major, 60), &t)
            .expect("clears");
        assert_eq!(c.incident.status, Status::Resolved);
        assert_eq!(c.incident.trigger.as_ref(), Some(&first));
        // Resolved: readings no longer move it.
        assert!(
            b.observe_reading(g1, "level_m", 2.0, Timestamp(65))
                .is_empty()
        );
        let c = b.apply_alarm(&fired(70, 3.9), &t).expect("reopens");
        let inc = &c.incident;
        assert_eq!(
            inc.trigger.as_ref(),
            Some(&first),
            "a raise again keeps the first trigger"
        );
        assert_eq!((inc.peak, inc.current), (Some(3.9), Some(3.9)));
        assert_eq!(
            inc.opened_at,
            Timestamp(10),
            "opened_at stays the first opening"
        );
        assert_eq!(inc.reopened_at, Some(Timestamp(70)));
        assert_eq!(inc.last_opened_at(), Timestamp(70));
    }

    #[test]
    fn a_reopening_by_a_person_is_dated_and_a_closed_incident_stops_watching() {
        let t = fixture::small();
        let g1 = t.device_id("g1").expect("fixture");
        let mut b = IncidentBook::new([]);
        let id = b
            .apply_alarm(&fired(10, 3.2), &t)
            .expect("opens")
            .incident
            .id;
        let op = Actor::User("alice".into());
        b.act(id, &IncidentAction::Resolve, &op, Timestamp(20))
            .expect("resolve");
        let c = b
            .act(id, &IncidentAction::Reopen, &op, Timestamp(30))
            .expect("reopen");
        assert_eq!(c.incident.reopened_at, Some(Timestamp(30)));
        assert_eq!(c.incident.opened_at, Timestamp(10));
        b.act(id, &IncidentAction::Resolve, &op, Timestamp(40))
            .expect("resolve");
        b.act(id, &IncidentAction::Close, &op, Timestamp(50))
            .expect("close");
        assert!(b.watching.is_empty(), "a closed incident leaves the index");
        assert!(
            b.observe_reading(g1, "level_m", 5.0, Timestamp(60))
                .is_empty()
        );
    }

    #[test]
    fn a_title_without_a_known_value_does_not_show_a_stale_one() {
        let mut i = tests_support::incident(IncidentId(1), None, Status::New);
        i.title = "Affluence ({value} personnes)".into();
        assert_eq!(i.title_now(), "Affluence (… personnes)");
        i.title = "Crue".into();
        assert_eq!(i.title_now(), "Crue");
    }

    fn book() -> IncidentBook {
        IncidentBook::new([Procedure {
            category: "flood".into(),
            title: "Crue".into(),
            steps: vec![
                "Vigicrues".into(),
                ProcedureStep {
                    text: "Astreinte".into(),
                    within: Some(Duration::from_mins(10)),
                },
            ],
        }])
    }

    #[test]
    fn one_incident_per_key_and_escalation_only_raises() {
        let t = fixture::small();
        let mut b = book();
        let c1 = b
            .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 1), &t)
            .expect("opens");
        assert!(c1.created);
        assert_eq!(c1.incident.sop.len(), 2);
        let c2 = b.apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 2), &t);
        assert_eq!(c2, None, "same condition still active: nothing new");
        let c3 = b
            .apply_alarm(&alarm(AlarmKind::Escalate, Severity::Critical, 3), &t)
            .expect("escalates");
        assert_eq!(c3.incident.id, c1.incident.id);
        assert_eq!(c3.incident.severity, Severity::Critical);
        let c4 = b.apply_alarm(&alarm(AlarmKind::Raise, Severity::Minor, 4), &t);
        assert_eq!(c4, None);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn log_lines_quote_the_alarm_evidence_as_a_message() {
        let t = fixture::small();
        let mut b = book();
        let reading = Message::new("rule.condition_active").with("minutes", Param::Int(15));
        let mut raise = alarm(AlarmKind::Raise, Severity::Major, 1);
        raise.evidence = reading.english();
        raise.evidence_message = Some(reading.clone());
        let c = b.apply_alarm(&raise, &t).expect("opens");
        let m = c.log[0].message.as_ref().expect("a message");
        assert_eq!(m.code, "incident.opened");
        assert_eq!(
            m.param("evidence"),
            Some(&Param::Message(Box::new(reading.clone())))
        );
        assert_eq!(c.log[0].detail, "major — condition active for 15 min");
        // A higher severity says the evidence that raised it.
        let mut up = raise.clone();
        up.kind = AlarmKind::Escalate;
        up.severity = Severity::Critical;
        let c = b.apply_alarm(&up, &t).expect("escalates");
        let line = c
            .log
            .iter()
            .find(|e| &*e.action == "escalated")
            .expect("escalated");
        assert_eq!(
            line.message.as_ref().map(|m| m.code),
            Some("incident.severity_raised_by")
        );
        assert_eq!(
            line.detail,
            "severity major → critical: condition active for 15 min"
        );
        // A comment is the operator's text, with no message.
        let id = c.incident.id;
        let op = Actor::User("alice".into());
        let c = b
            .act(id, &IncidentAction::Comment("vu".into()), &op, Timestamp(3))
            .expect("comment");
        assert_eq!((c.log[0].detail.as_str(), &c.log[0].message), ("vu", &None));
    }

    #[test]
    fn lifecycle_and_reopen_by_rule() {
        let t = fixture::small();
        let mut b = book();
        let id = b
            .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 1), &t)
            .expect("opens")
            .incident
            .id;
        let op = Actor::User("alice".into());
        assert!(matches!(
            b.act(id, &IncidentAction::Close, &op, Timestamp(2)),
            Err(TransitionError::NotAllowed { .. })
        ));
        b.act(id, &IncidentAction::Acknowledge, &op, Timestamp(2))
            .expect("ack");
        b.act(id, &IncidentAction::CompleteStep(1), &op, Timestamp(3))
            .expect("step");
        assert_eq!(
            b.act(id, &IncidentAction::CompleteStep(1), &op, Timestamp(3)),
            Err(TransitionError::StepDone(1))
        );
        let c = b
            .apply_alarm(&alarm(AlarmKind::Clear, Severity::Major, 4), &t)
            .expect("auto-resolves");
        assert_eq!(c.incident.status, Status::Resolved);
        let c = b
            .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 5), &t)
            .expect("reopens");
        assert_eq!(c.incident.status, Status::New);
        assert_eq!(c.incident.id, id);
        assert_eq!(c.incident.alarm_count, 2);
        b.act(id, &IncidentAction::Resolve, &op, Timestamp(6))
            .expect("resolve");
        let closed = b
            .act(id, &IncidentAction::Close, &op, Timestamp(7))
            .expect("close");
        assert_eq!(closed.incident.status, Status::Closed);
        assert!(b.is_empty());
        let again = b
            .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 8), &t)
            .expect("new incident after close");
        assert!(again.created);
        assert_ne!(again.incident.id, id);
    }

    fn policy() -> EscalationPolicy {
        let mut p = EscalationPolicy::default();
        p.delays[Severity::Major as usize] = EscalationDelays {
            remind_after: Some(Duration::from_mins(2)),
            escalate_after: Some(Duration::from_mins(5)),
        };
        p
    }

    /// A resolved incident nobody closes is closed by the system after the delay (then it
    /// leaves the book and follows the retention of closed records); an open one is not.
    #[test]
    fn resolved_incidents_nobody_closes_are_closed_after_the_delay() {
        let t = fixture::small();
        let clock = SimClock::new(Timestamp(0));
        let mut b = book();
        let id = b
            .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 0), &t)
            .expect("opens")
            .incident
            .id;
        let day = Duration::from_mins(24 * 60);
        clock.advance(Duration::from_mins(10));
        assert!(b.close_resolved(day, clock.now()).is_empty(), "still open");
        b.act(id, &IncidentAction::Resolve, &Actor::System, clock.now())
            .expect("resolves");
        clock.advance(Duration::from_mins(24 * 60 - 1));
        assert!(b.close_resolved(day, clock.now()).is_empty(), "not yet");
        clock.advance(Duration::from_mins(1));
        let c = b.close_resolved(day, clock.now());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].incident.status, Status::Closed);
        assert_eq!(c[0].incident.closed_at, Some(clock.now()));
        assert_eq!(&*c[0].log[0].action, "closed");
        assert_eq!(c[0].log[0].actor, Actor::System);
        assert_eq!(c[0].log[0].detail, "resolved for 24h without being closed");
        assert_eq!(
            c[0].log[0].message.as_ref().map(|m| m.code),
            Some("incident.closed_unattended")
        );
        assert!(b.get(id).is_none(), "a closed incident leaves the book");
    }

    #[test]
    fn a_partners_incident_is_commented_and_closed_here_never_acted_on_nor_reminded() {
        let t = fixture::small();
        let clock = SimClock::new(Timestamp(0));
        let mut b = book();
        let mut a = alarm(AlarmKind::Raise, Severity::Major, 0);
        a.rule = format!("{PARTNER_RULE_PREFIX}voisin").into();
        a.key = DedupKey::for_site("fed:voisin/INC-1", "s2");
        let id = b.apply_alarm(&a, &t).expect("opens").incident.id;
        let actor = Actor::User("op".into());
        for action in [
            IncidentAction::Acknowledge,
            IncidentAction::Start,
            IncidentAction::Resolve,
            IncidentAction::Assign("pm-1".into()),
        ] {
            assert_eq!(
                b.act(id, &action, &actor, Timestamp(1)).map(|_| ()),
                Err(TransitionError::NotAllowed {
                    action: action.name(),
                    from: "a partner's"
                })
            );
        }
        assert!(
            b.act(
                id,
                &IncidentAction::Comment("vu".into()),
                &actor,
                Timestamp(2)
            )
            .is_ok()
        );
        clock.advance(Duration::from_secs(24 * 3600));
        assert!(
            b.tick_escalation(&policy(), clock.now()).is_empty(),
            "acknowledged at the partner's, not here"
        );
        // Ended at the partner: closed here.
        let mut end = a.clone();
        end.kind = AlarmKind::Clear;
        b.apply_alarm(&end, &t).expect("resolves");
        assert!(
            b.act(id, &IncidentAction::Close, &actor, Timestamp(3))
                .is_ok()
        );
    }

    #[test]
    fn unacknowledged_incidents_get_a_reminder_then_escalate_once() {
        let t = fixture::small();
        let clock = SimClock::new(Timestamp(0));
        let mut b = book();
        let id = b
            .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 0), &t)
            .expect("opens")
            .incident
            .id;
        let p = policy();
        clock.advance(Duration::from_secs(119));
        assert!(b.tick_escalation(&p, clock.now()).is_empty(), "not yet");
        clock.advance(Duration::from_secs(1));
        let c = b.tick_escalation(&p, clock.now());
        assert_eq!(c.len(), 1);
        assert_eq!(&*c[0].log[0].action, "reminder");
        assert_eq!(c[0].log[0].detail, "not acknowledged after 2m");
        // The line says it as a message too, whose English is the detail.
        let m = c[0].log[0].message.as_ref().expect("a message");
        assert_eq!(m.code, "incident.not_acknowledged");
        assert_eq!(
            m.param("after"),
            Some(&Param::Duration(Duration::from_mins(2)))
        );
        assert_eq!(m.english(), c[0].log[0].detail);
        assert_eq!(c[0].incident.reminded_at, Some(clock.now()));
        assert!(c[0].incident.escalated_at.is_none());
        clock.advance(Duration::from_secs(60));
        assert!(
            b.tick_escalation(&p, clock.now()).is_empty(),
            "reminded once"
        );
        clock.advance(Duration::from_mins(2));
        let c = b.tick_escalation(&p, clock.now());
        assert_eq!(&*c[0].log[0].action, "escalated_to_supervisor");
        assert_eq!(b.get(id).and_then(|i| i.escalated_at), Some(clock.now()));
        assert!(
            b.get(id)
                .is_some_and(|i| i.supervisor_attention(clock.now()))
        );
        clock.advance(Duration::from_mins(60));
        assert!(
            b.tick_escalation(&p, clock.now()).is_empty(),
            "escalated once"
        );
    }

    #[test]
    fn acknowledged_or_unconfigured_incidents_are_left_alone() {
        let t = fixture::small();
        let mut b = book();
        let id = b
            .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 0), &t)
            .expect("opens")
            .incident
            .id;
        b.act(
            id,
            &IncidentAction::Acknowledge,
            &Actor::System,
            Timestamp(1000),
        )
        .expect("ack");
        assert!(
            b.tick_escalation(&policy(), Timestamp(3_600_000))
                .is_empty()
        );
        let mut minor_only = EscalationPolicy::default();
        minor_only.delays[Severity::Minor as usize].remind_after = Some(Duration::from_secs(1));
        let mut b = book();
        b.apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 0), &t);
        assert!(
            b.tick_escalation(&minor_only, Timestamp(3_600_000))
                .is_empty()
        );
        // Both due at once (e.g. after a restart): one change with both entries.
        let c = b.tick_escalation(&policy(), Timestamp(3_600_000));
        let actions: Vec<&str> = c[0].log.iter().map(|e| &*e.action).collect();
        assert_eq!(actions, ["reminder", "escalated_to_supervisor"]);
    }

    #[test]
    fn steps_have_deadlines_and_skips_are_seen() {
        let t = fixture::small();
        let mut b = book();
        let inc = b
            .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 1000), &t)
            .expect("opens")
            .incident;
        assert_eq!(inc.sop[0].due_at, None);
        assert_eq!(inc.sop[1].due_at, Some(Timestamp(1000 + 600_000)));
        let at_deadline = Timestamp(1000 + 600_000);
        assert!(!inc.sop[1].overdue(at_deadline));
        assert!(inc.sop[1].overdue(at_deadline.plus(Duration(1))));
        assert!(!inc.supervisor_attention(at_deadline));
        assert!(inc.supervisor_attention(at_deadline.plus(Duration(1))));
        // Step 2 done before step 1: step 1 is skipped, the deadline no longer matters.
        let done = b
            .act(
                inc.id,
                &IncidentAction::CompleteStep(1),
                &Actor::System,
                Timestamp(2000),
            )
            .expect("step")
            .incident;
        assert!(done.step_skipped(0));
        assert!(!done.step_skipped(1));
        assert!(!done.sop[1].overdue(Timestamp(i64::MAX)));
        assert!(done.supervisor_attention(Timestamp(3000)));
        let done = b
            .act(
                inc.id,
                &IncidentAction::CompleteStep(0),
                &Actor::System,
                Timestamp(4000),
            )
            .expect("step")
            .incident;
        assert!(!done.step_skipped(0));
        assert!(!done.supervisor_attention(Timestamp(i64::MAX)));
    }

    proptest::proptest! {
        /// Whatever the ticks, a reminder is never early, always comes once the delay has
        /// passed, and the escalation likewise.
        #[test]
        fn reminders_and_escalations_are_never_early_nor_missed(
            remind_s in 1i64..600,
            extra_s in 0i64..600,
            mut ticks in proptest::collection::vec(0i64..2_000, 1..40),
        ) {
            let t = fixture::small();
            let mut b = book();
            let id = b
                .apply_alarm(&alarm(AlarmKind::Raise, Severity::Major, 0), &t)
                .map(|c| c.incident.id);
            let mut p = EscalationPolicy::default();
            p.delays[Severity::Major as usize] = EscalationDelays {
                remind_after: Some(Duration::from_secs(remind_s)),
                escalate_after: Some(Duration::from_secs(remind_s + extra_s)),
            };
            ticks.sort_unstable();
            let mut entries = Vec::new();
            for s in &ticks {
                for c in b.tick_escalation(&p, Timestamp(s * 1000)) {
                    entries.extend(c.log);
                }
            }
            let inc = id.and_then(|id| b.get(id)).cloned();
            let inc = inc.expect("still active");
            let last = *ticks.last().unwrap_or(&0);
            proptest::prop_assert_eq!(inc.reminded_at.is_some(), last >= remind_s);
            proptest::prop_assert_eq!(inc.escalated_at.is_some(), last >= remind_s + extra_s);
            if let Some(r) = inc.reminded_at {
                proptest::prop_assert!(r.0 >= remind_s * 1000);
            }
            if let Some(e) = inc.escalated_at {
                proptest::prop_assert!(e.0 >= (remind_s + extra_s) * 1000);
            }
            let count = |a: &str| entries.iter().filter(|e| &*e.action == a).count();
            proptest::prop_assert!(count("reminder") <= 1 && count("escalated_to_supervisor") <= 1);
        }
    }
}
