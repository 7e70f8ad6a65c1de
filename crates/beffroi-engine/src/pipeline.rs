//! The synchronous pipeline of one partition: decode → validate → trust → pseudonymise →
//! twin → rules → incidents.

use beffroi_core::SafeText;
use std::sync::Arc;

use beffroi_core::crisis::{
    Crisis, CrisisBoard, CrisisCommand, CrisisError, CrisisId, CrisisOpening,
};
use beffroi_core::incident::{EscalationPolicy, Procedure};
use beffroi_core::situation::{
    Situation, SituationBook, SituationChange, SituationError, SituationId,
};
use beffroi_core::{
    Actor, Alarm, AlarmKind, DeviceIdx, Incident, IncidentAction, IncidentBook, IncidentChange,
    IncidentId, Observation, Territory, Timestamp, TransitionError, Unit, UnitBoard, UnitError,
    UnitSpec, UnitStatus, Value,
};
use beffroi_rules::{Evaluator, RuleSet};
use beffroi_wire::{Context, Format, RejectReason, Rejection};

use crate::envelope::Source;
use crate::events::{EventBook, EventError, EventView};
use crate::live::{DeviceChange, DeviceState};
use crate::metrics::Metrics;
use crate::operations::{Operations, OpsSnapshot};
use crate::store::{StoredIdentity, StoredObservation, StoredRejection, WriteBatch};
use crate::trust::{DeviceKeys, Transport, TrustGate};
use crate::watermark::Freshness;
use beffroi_core::EventStatus;
use beffroi_rules::EventRules;

/// What processing produced, to commit and then publish.
#[derive(Debug, Default)]
pub struct Output {
    pub batch: WriteBatch,
    pub devices: Vec<DeviceChange>,
    /// Events whose view changed (published after the commit).
    pub events: Vec<crate::events::EventView>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.devices.is_empty() && self.events.is_empty()
    }
}

/// Result of one payload.
#[derive(Debug, Default, PartialEq)]
pub struct Ingested {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
}

/// Logs at most `per_window` lines per window of processing time; counts the rest.
struct LogLimiter {
    window_start: Timestamp,
    count: u32,
    per_window: u32,
}

impl LogLimiter {
    fn allow(&mut self, now: Timestamp, metrics: &Metrics) -> bool {
        if now.since(self.window_start).millis() >= 10_000 {
            if self.count > self.per_window {
                tracing::warn!(
                    suppressed = self.count - self.per_window,
                    "rejection log lines suppressed in the last window"
                );
            }
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        if self.count > self.per_window {
            metrics.log_suppressed.inc();
            false
        } else {
            true
        }
    }
}

/// How many name tags an unregistered-device signal carries.
const MAX_UNREGISTERED_TAGS: usize = 5;

pub struct Pipeline {
    territory: Arc<Territory>,
    eval: Evaluator,
    book: IncidentBook,
    metrics: Arc<Metrics>,
    states: Vec<DeviceState>,
    alarms: Vec<Alarm>,
    /// Readings for `IncidentBook::observe_reading` that came while alarms of the same input
    /// were pending: each with how many of the pending alarms came before it, so that
    /// `flush_alarms` applies readings and alarms in the order the rules saw them.
    deferred_readings: Vec<(usize, DeviceIdx, Arc<str>, f64, Timestamp)>,
    obs: Vec<Observation>,
    limiter: LogLimiter,
    units: UnitBoard,
    crises: CrisisBoard,
    /// Handover notes (the newest) and their reads.
    notes: beffroi_core::handover::NoteBoard,
    /// Shelved alarms.
    shelves: beffroi_core::shelving::ShelfBoard,
    escalation: EscalationPolicy,
    /// The rules of the deployment; the evaluator runs these plus the events' in force.
    base_rules: Arc<RuleSet>,
    events: EventBook,
    /// Processing time of the last tick or event change: decides which events are in force.
    events_clock: Timestamp,
    /// Signed envelopes, replay windows, signing policy and topic binding.
    trust: TrustGate,
    /// Anomaly detection and quarantine (`crate::sentinel`).
    sentinel: crate::sentinel::SentinelGlue,
    /// Minimum group size and bucket of people counts: a people count is stored at the
    /// start of its bucket (the store keeps the bucket's highest count).
    aggregates: beffroi_core::privacy::Aggregates,
    /// The territory's keys: personal text values become pseudonyms before anything else.
    pseudonymiser: Option<Arc<beffroi_privacy::Pseudonymiser>>,
    /// Some kind of the territory has a text field (else the pseudonymisation and
    /// scrubbing step costs one branch per observation).
    has_text: bool,
    /// The latest evaluated event time of every series (idempotent evaluation).
    watermarks: crate::watermark::Watermarks,
    /// Per kind and field, how long its data is kept (`None`: not set, nothing refused):
    /// an observation already older than that is refused as `expired`.
    keep: Option<Vec<Vec<beffroi_core::Duration>>>,
    /// Incidents resolved this long ago and never closed are closed by the system.
    close_resolved_after: Option<beffroi_core::Duration>,
    /// The situations: which incidents are one real event (`situations.toml`).
    situations: SituationBook,
    /// Situations as last published, active and closed in the last day (the API's
    /// snapshot and the alarm health read them).
    situation_views: std::collections::BTreeMap<SituationId, Arc<Situation>>,
    /// Changes made while restoring (incidents placed in a situation), written with the
    /// next batch.
    pending_situations: Vec<SituationChange>,
    /// The counters of each source met so far (no registry lookup per message).
    source_metrics: Vec<(Source, Arc<crate::metrics::SourceMetrics>)>,
}

/// What a pipeline is built from besides the state the store holds ([`Pipeline::restore`]):
/// the deployment as loaded. [`PipelineConfig::new`] gives the defaults of everything but
/// the territory, rules, procedures and metrics.
#[derive(Clone)]
pub struct PipelineConfig {
    pub territory: Arc<Territory>,
    pub rules: Arc<RuleSet>,
    pub procedures: Vec<Procedure>,
    pub metrics: Arc<Metrics>,
    /// Units, escalation delays, safeguard-plan roles, situation families, shelving.
    pub operations: Operations,
    /// Signing keys in force (hot-reloaded with [`Pipeline::set_device_keys`]).
    pub device_keys: Arc<DeviceKeys>,
    /// Anomaly-detection thresholds and quarantine policy (`security.toml`).
    pub security: beffroi_sentinel::Config,
    /// Minimum group size and bucket of people counts.
    pub aggregates: beffroi_core::privacy::Aggregates,
    /// Incidents resolved this long ago that nobody closed are closed (`None`: never).
    pub close_resolved_after: Option<beffroi_core::Duration>,
    /// The retention policy and the retention of technical observations: a reading
    /// already older than its field's retention is refused as `expired` (`None`: nothing
    /// refused).
    pub retention: Option<(Arc<beffroi_core::PrivacyPolicy>, beffroi_core::Duration)>,
    /// The territory's pseudonymisation keys (without them personal text is refused).
    pub pseudonymiser: Option<Arc<beffroi_privacy::Pseudonymiser>>,
    /// The events of `events.toml`, compiled (stored ones come with [`Pipeline::restore`]).
    pub events: Vec<EventRules>,
}

impl PipelineConfig {
    pub fn new(
        territory: Arc<Territory>,
        rules: Arc<RuleSet>,
        procedures: Vec<Procedure>,
        metrics: Arc<Metrics>,
    ) -> Self {
        PipelineConfig {
            territory,
            rules,
            procedures,
            metrics,
            operations: Operations::default(),
            device_keys: Arc::default(),
            security: beffroi_sentinel::Config::default(),
            aggregates: beffroi_core::privacy::Aggregates::default(),
            close_resolved_after: None,
            retention: None,
            pseudonymiser: None,
            events: Vec::new(),
        }
    }
}

/// A stored state that does not fit the territory and rules it is restored into.
#[derive(Debug, thiserror::Error)]
#[error("restore: {0}")]
pub struct RestoreError(#[from] TransitionError);

impl Pipeline {
    /// A pipeline with nothing evaluated yet, configured from `config` at `start`; bring
    /// it to the stored state with [`Pipeline::restore`].
    pub fn new(config: PipelineConfig, start: Timestamp) -> Self {
        let PipelineConfig {
            territory,
            rules,
            procedures,
            metrics,
            operations,
            device_keys,
            security,
            aggregates,
            close_resolved_after,
            retention,
            pseudonymiser,
            events,
        } = config;
        let mut p = Pipeline::blank(territory, rules, procedures, metrics, start);
        p.units = UnitBoard::new(operations.units.iter().cloned(), start);
        p.crises = CrisisBoard::new(operations.roles.clone());
        p.escalation = operations.escalation.clone();
        p.shelves.set_policy(operations.shelving);
        p.situations.set_families(operations.families);
        p.trust.set_keys(device_keys);
        p.sentinel.set_config(security);
        p.set_aggregates(aggregates);
        p.close_resolved_after = close_resolved_after;
        if let Some((policy, technical)) = retention {
            p.set_retention(&policy, technical);
        }
        p.pseudonymiser = pseudonymiser;
        p.load_events(events, start);
        p
    }

    /// Brings a new pipeline to the state the store holds (at start, after a failed
    /// commit), in the one order that works: replay windows; stored events over the
    /// file's (so that incidents raised by an event's rules re-arm); incidents, last
    /// heard times and watermarks; units and crises (missions rebuilt from the active
    /// incidents); situations; quarantine; handover notes and shelving. `holds` are not
    /// the pipeline's and are ignored. A stored event no longer valid for the territory is
    /// skipped with a warning.
    pub fn restore(
        &mut self,
        state: crate::store::StoredState,
        now: Timestamp,
    ) -> Result<(), RestoreError> {
        let crate::store::StoredState {
            incidents,
            max_incident,
            last_seen,
            watermarks,
            units,
            crises,
            situations,
            max_situation,
            events,
            replay_windows,
            quarantine,
            holds: _,
            notes,
            shelving,
        } = state;
        self.trust.restore(&replay_windows);
        let mut stored = Vec::with_capacity(events.len());
        for e in events {
            let id = e.id.clone();
            match beffroi_rules::compile_event(e, &self.territory, "store", None, 0) {
                Ok(c) => stored.push(c),
                Err(err) => {
                    tracing::warn!(event = %id, error = %err, "stored event no longer valid for this territory; skipped");
                }
            }
        }
        if !stored.is_empty() {
            self.load_events(stored, now);
        }
        self.restore_incidents(incidents, max_incident, &last_seen)?;
        self.watermarks.restore(&watermarks);
        let units: Vec<_> = units
            .into_iter()
            .map(|u| (u.id, u.status, u.updated_at))
            .collect();
        self.restore_operations(&units, crises);
        self.restore_situations(situations, max_situation, now);
        self.restore_quarantine(quarantine);
        self.restore_handover(notes, shelving);
        tracing::info!(
            active_incidents = self.book.active().count(),
            devices_seen = last_seen.len(),
            "state restored from the store"
        );
        Ok(())
    }

    fn blank(
        territory: Arc<Territory>,
        rules: Arc<RuleSet>,
        procedures: Vec<Procedure>,
        metrics: Arc<Metrics>,
        start: Timestamp,
    ) -> Self {
        metrics.rules_loaded.set(rules.len() as i64);
        let sentinel = crate::sentinel::SentinelGlue::new(
            Arc::clone(&territory),
            beffroi_sentinel::Config::default(),
        );
        let has_text = territory.kinds.iter().any(|k| {
            k.fields
                .iter()
                .any(|f| f.ty == beffroi_core::FieldType::Text)
        });
        Pipeline {
            keep: None,
            close_resolved_after: None,
            watermarks: crate::watermark::Watermarks::new(&territory),
            sentinel,
            aggregates: beffroi_core::privacy::Aggregates::default(),
            pseudonymiser: None,
            has_text,
            base_rules: Arc::clone(&rules),
            events: EventBook::default(),
            eval: Evaluator::new(rules, Arc::clone(&territory), start),
            book: IncidentBook::new(procedures),
            states: vec![DeviceState::Normal; territory.devices.len()],
            territory,
            metrics,
            alarms: Vec::new(),
            deferred_readings: Vec::new(),
            obs: Vec::new(),
            events_clock: start,
            limiter: LogLimiter {
                window_start: start,
                count: 0,
                per_window: 20,
            },
            units: UnitBoard::default(),
            crises: CrisisBoard::default(),
            notes: Default::default(),
            shelves: Default::default(),
            escalation: EscalationPolicy::default(),
            trust: TrustGate::default(),
            situations: SituationBook::new(Vec::new()),
            situation_views: std::collections::BTreeMap::new(),
            pending_situations: Vec::new(),
            source_metrics: Vec::new(),
        }
    }

    /// Reinstates the active situations (after the incidents); an active incident in none
    /// (a store written before situations) is placed where it belongs, and that is written
    /// with the next batch.
    fn restore_situations(
        &mut self,
        situations: Vec<Situation>,
        max_id: SituationId,
        now: Timestamp,
    ) {
        self.situations.reserve_ids_through(max_id);
        for s in situations {
            if s.closed_at.is_none()
                || s.closed_at
                    .is_some_and(|c| now.since(c) <= RECENT_SITUATIONS)
            {
                self.situation_views.insert(s.id, Arc::new(s.clone()));
            }
            self.situations.restore(s);
        }
        let mut active: Vec<Incident> = self.book.active().cloned().collect();
        active.sort_by_key(|i| (i.opened_at, i.id));
        for inc in &active {
            // The member's summary follows the incident as the store has it.
            let change = IncidentChange {
                incident: inc.clone(),
                created: false,
                log: Vec::new(),
                pseudonyms: Vec::new(),
            };
            let changes = match self.situations.of_incident(inc.id) {
                Some(_) => self.situations.follow(&change, &self.territory),
                None => self
                    .situations
                    .adopt(inc, &self.territory)
                    .into_iter()
                    .collect(),
            };
            for c in changes {
                self.situation_views
                    .insert(c.situation.id, Arc::new(c.situation.clone()));
                self.pending_situations.push(c);
            }
        }
    }

    pub fn situations(&self) -> &SituationBook {
        &self.situations
    }

    fn push_situations(&mut self, changes: Vec<SituationChange>, now: Timestamp, out: &mut Output) {
        let mut closed = false;
        for c in changes {
            closed |= c.situation.closed_at.is_some();
            self.situation_views
                .insert(c.situation.id, Arc::new(c.situation.clone()));
            out.batch.situations.push(c);
        }
        // Only a closing can make a view old enough to leave: not a scan per reading.
        if closed {
            self.forget_old_situations(now);
        }
    }

    /// Drops the closed situations older than a day from the published views.
    fn forget_old_situations(&mut self, now: Timestamp) {
        self.situation_views.retain(|_, s| {
            s.closed_at
                .is_none_or(|c| now.since(c) <= RECENT_SITUATIONS)
        });
    }

    /// An operator's action on a situation: applied to each of `only` (the members the
    /// caller may see) that it applies to. Fails when it applies to none.
    pub fn act_situation(
        &mut self,
        id: SituationId,
        action: &IncidentAction,
        only: &[IncidentId],
        actor: &Actor,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<Arc<Situation>, SituationActError> {
        let s = self
            .situations
            .get(id)
            .ok_or(SituationError::NotFound(id))?;
        let members: Vec<&beffroi_core::Member> = s
            .members
            .iter()
            .filter(|m| only.contains(&m.incident))
            .collect();
        let lead = members
            .iter()
            .min_by_key(|m| {
                (
                    !m.status.is_open(),
                    std::cmp::Reverse(m.severity),
                    m.opened_at,
                )
            })
            .map(|m| (m.incident, m.category.clone()));
        let targets: Vec<IncidentId> = match action {
            // A comment is written once, on the incident that names the situation.
            IncidentAction::Comment(_) => lead.iter().map(|l| l.0).collect(),
            // A procedure step is the step of the leading incident's procedure: ticked on
            // every member that follows the same procedure.
            IncidentAction::CompleteStep(_) => members
                .iter()
                .filter(|m| lead.as_ref().is_some_and(|l| l.1 == m.category))
                .map(|m| m.incident)
                .collect(),
            _ => members.iter().map(|m| m.incident).collect(),
        };
        let mut first_err = None;
        let mut done = 0usize;
        for iid in targets {
            match self.act(iid, action, actor, now, out) {
                Ok(_) => done += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if done == 0 {
            return Err(first_err
                .unwrap_or(TransitionError::NotAllowed {
                    action: action.name(),
                    from: "situation",
                })
                .into());
        }
        self.situation_views
            .get(&id)
            .cloned()
            .ok_or_else(|| SituationError::NotFound(id).into())
    }

    /// An operator takes an incident out of a situation into a new one.
    pub fn split_situation(
        &mut self,
        id: SituationId,
        incident: IncidentId,
        actor: &Actor,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<Arc<Situation>, SituationActError> {
        let changes = self.situations.split(id, incident, actor, now)?;
        let new_id = changes.last().map(|c| c.situation.id);
        self.push_situations(changes, now, out);
        new_id
            .and_then(|n| self.situation_views.get(&n).cloned())
            .ok_or_else(|| SituationError::NotFound(id).into())
    }

    /// An operator merges situation `from` into `into`.
    pub fn merge_situations(
        &mut self,
        into: SituationId,
        from: SituationId,
        actor: &Actor,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<Arc<Situation>, SituationActError> {
        let changes = self.situations.merge(into, from, actor, now)?;
        self.push_situations(changes, now, out);
        self.situation_views
            .get(&into)
            .cloned()
            .ok_or_else(|| SituationError::NotFound(into).into())
    }

    /// Replaces a personal or sensitive text value by its pseudonym (current epoch) and
    /// queues the sealed value for `identities`. Without keys, the observation is refused:
    /// the detail names the field, never the value.
    fn pseudonymise(&self, o: &mut Observation, out: &mut Output) -> Result<(), Rejection> {
        let Value::Text(raw) = &o.value else {
            return Ok(());
        };
        let kind = self.territory.kind_of(o.device);
        let Some(spec) = kind.fields.get(o.field.get()) else {
            return Ok(());
        };
        if !spec.category.is_personal() {
            // A declared technical text takes its declared values only (the wire checks it;
            // this covers observations that did not come through the wire). A pattern's
            // value that still carries an identifier (a number of a phone's length) is
            // refused too: a declared field is never scrubbed, so nothing personal is kept.
            let refused = match &spec.text {
                beffroi_core::TextDomain::Free => None,
                beffroi_core::TextDomain::Values(_) => {
                    (!spec.text.admits(raw)).then_some("declared values")
                }
                beffroi_core::TextDomain::Pattern(_) => (!spec.text.admits(raw)
                    || beffroi_privacy::carries_identifier(raw))
                .then_some("declared pattern, or carrying an identifier"),
            };
            if let Some(what) = refused {
                return Err(Rejection::new(
                    RejectReason::TextNotAllowed,
                    format!(
                        "{}.{}: a text of {} bytes outside the field's {what}",
                        kind.id,
                        spec.name,
                        raw.len()
                    ),
                ));
            }
            if !spec.text.is_free() {
                return Ok(());
            }
            // A free technical text (a label, a comment) may carry what identifies a person
            // (a number, a plate typed into it): it is scrubbed like a note.
            let raw = raw.clone();
            return self.scrub_technical(&raw, o, out).map_err(|()| {
                Rejection::new(
                    RejectReason::NoPseudonymisationKey,
                    format!(
                        "{}.{}: a technical text carrying a personal identifier, and no \
                         pseudonymisation key is loaded",
                        kind.id, spec.name
                    ),
                )
            });
        }
        let Some(p) = &self.pseudonymiser else {
            return Err(Rejection::new(
                RejectReason::NoPseudonymisationKey,
                format!(
                    "{}.{} is {} and no pseudonymisation key is loaded",
                    kind.id,
                    spec.name,
                    spec.category.as_str()
                ),
            ));
        };
        let sealed = p.seal(
            spec.identifier.unwrap_or(beffroi_core::Identifier::Other),
            raw,
        );
        o.value = Value::Text(sealed.pseudonym.0.as_str().into());
        out.batch.identities.push(StoredIdentity {
            sealed,
            seen: o.time,
        });
        Ok(())
    }

    /// Scrubs a technical text value: identifiers become pseudonyms and their sealed values
    /// go to `identities`. Without keys, `Err` when it carries one (the caller refuses it).
    fn scrub_technical(&self, raw: &str, o: &mut Observation, out: &mut Output) -> Result<(), ()> {
        let p = match &self.pseudonymiser {
            Some(p) => Arc::clone(p),
            None => {
                return if beffroi_privacy::carries_identifier(raw) {
                    Err(())
                } else {
                    Ok(())
                };
            }
        };
        let scrubbed = beffroi_privacy::scrub(&p, raw);
        if scrubbed.sealed.is_empty() {
            return Ok(());
        }
        o.value = Value::Text(scrubbed.text.as_str().into());
        out.batch
            .identities
            .extend(scrubbed.sealed.into_iter().map(|sealed| StoredIdentity {
                sealed,
                seen: o.time,
            }));
        Ok(())
    }

    /// Installs the signing keys in force (at start, and when the registry changes:
    /// a revoked device's envelopes are refused from the next message on).
    pub fn set_device_keys(&mut self, keys: Arc<DeviceKeys>) {
        self.trust.set_keys(keys);
    }

    /// Reinstates the units' recorded statuses and the crises, then rebuilds the units'
    /// missions from the active incidents (after the incidents).
    fn restore_operations(
        &mut self,
        units: &[(String, UnitStatus, Timestamp)],
        crises: Vec<Crisis>,
    ) {
        for (id, status, at) in units {
            self.units.restore_status(id, *status, *at);
        }
        for c in crises {
            self.crises.restore(c);
        }
        let mut active: Vec<&Incident> = self.book.active().collect();
        active.sort_by_key(|i| i.id);
        for inc in active {
            let at = inc.updated_at;
            self.units.follow(inc, at);
        }
    }

    /// The units and crises as they are now.
    pub fn ops_snapshot(&self) -> OpsSnapshot {
        OpsSnapshot {
            quarantined: {
                let mut q: Vec<_> = self.sentinel.quarantined().cloned().collect();
                q.sort_by_key(|a| a.device);
                q
            },
            units: self.units.units().to_vec(),
            crises: self.crises.all().cloned().collect(),
            situations: self.situation_views.values().cloned().collect(),
            roles: self.crises.roles().into(),
            notes: self.notes.notes().to_vec(),
            shelves: self.shelves.shelves().cloned().collect(),
            shelving: self.shelves.policy(),
        }
    }

    pub fn units(&self) -> &UnitBoard {
        &self.units
    }
    pub fn crises(&self) -> &CrisisBoard {
        &self.crises
    }

    /// The retention purge on the crises held in memory (the store does the same on disk):
    /// closed crises past the technical limit are forgotten, those past the personal limit
    /// redacted. Returns whether anything changed (the operations snapshot must follow).
    pub fn purge_crises(&mut self, plan: &crate::retention::PurgePlan) -> bool {
        // Handover notes may hold pseudonyms: kept as long as personal records.
        let mut changed = self.notes.forget_before(plan.personal);
        let closed: Vec<(CrisisId, Timestamp)> = self
            .crises
            .all()
            .filter_map(|c| c.closed_at.map(|at| (c.id, at)))
            .collect();
        for (id, closed_at) in closed {
            if closed_at < plan.technical {
                self.crises.forget(id);
                changed = true;
            } else if closed_at < plan.personal
                && let Some(c) = self.crises.get(id)
            {
                let redacted = crate::retention::redact_crisis(plan, c);
                if redacted != **c {
                    self.crises.restore(redacted);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Erases a person's pseudonyms from the active incidents (except `held` ones) and the
    /// crises held in memory, as the store does on disk. Returns whether a crisis changed.
    pub fn erase_pseudonyms(&mut self, pseudonyms: &[String], held: &[IncidentId]) -> bool {
        use crate::retention::erase_pseudonyms;
        let touched: Vec<Incident> = self
            .book
            .active()
            .filter(|i| !held.contains(&i.id))
            .filter_map(|i| {
                let title = erase_pseudonyms(&i.title, pseudonyms);
                let evidence = erase_pseudonyms(&i.evidence, pseudonyms);
                if title.is_none() && evidence.is_none() {
                    return None;
                }
                let mut i = i.clone();
                if let Some(t) = title {
                    i.title = SafeText::redacting(&t);
                }
                if let Some(e) = evidence {
                    i.evidence = SafeText::redacting(&e);
                }
                Some(i)
            })
            .collect();
        for i in touched {
            // Same id and key: replaces the incident in the book.
            let _ = self.book.restore(i);
        }
        let crises: Vec<Crisis> = self
            .crises
            .all()
            .filter_map(|c| {
                let mut changed = false;
                let mut c = (**c).clone();
                for e in &mut c.log {
                    if let Some(t) = erase_pseudonyms(&e.text, pseudonyms) {
                        e.text = SafeText::redacting(&t);
                        e.message = None;
                        changed = true;
                    }
                }
                if let Some(t) = erase_pseudonyms(&c.title, pseudonyms) {
                    c.title = SafeText::redacting(&t);
                    changed = true;
                }
                if let Some(t) = c
                    .summary
                    .as_deref()
                    .and_then(|s| erase_pseudonyms(s, pseudonyms))
                {
                    c.summary = Some(SafeText::redacting(&t));
                    changed = true;
                }
                for r in &mut c.roles {
                    if let Some(t) = r
                        .holder
                        .as_deref()
                        .and_then(|h| erase_pseudonyms(h, pseudonyms))
                    {
                        r.holder = Some(SafeText::redacting(&t));
                        changed = true;
                    }
                }
                changed.then_some(c)
            })
            .collect();
        let mut changed = !crises.is_empty();
        for c in crises {
            self.crises.restore(c);
        }
        // Handover notes and shelving reasons are free text too.
        let notes: Vec<beffroi_core::handover::HandoverNote> = self
            .notes
            .notes()
            .iter()
            .filter_map(|n| {
                erase_pseudonyms(&n.text, pseudonyms).map(|t| {
                    let mut n = n.clone();
                    n.text = SafeText::redacting(&t);
                    n
                })
            })
            .collect();
        let shelves: Vec<beffroi_core::shelving::ShelfAct> = self
            .shelves
            .shelves()
            .filter_map(|s| {
                erase_pseudonyms(&s.reason, pseudonyms).map(|t| beffroi_core::shelving::ShelfAct {
                    key: s.key.clone(),
                    incident: s.incident,
                    commune: s.commune,
                    category: Arc::clone(&s.category),
                    change: beffroi_core::shelving::ShelfChange::Shelved,
                    actor: Arc::clone(&s.by),
                    reason: SafeText::redacting(&t),
                    at: s.at,
                    until: Some(s.until),
                })
            })
            .collect();
        changed |= !notes.is_empty() || !shelves.is_empty();
        for n in notes {
            self.notes.restore(n);
        }
        for act in &shelves {
            self.shelves.apply(act);
        }
        changed
    }

    pub fn territory(&self) -> &Arc<Territory> {
        &self.territory
    }
    pub fn book(&self) -> &IncidentBook {
        &self.book
    }
    pub fn rules(&self) -> &Arc<RuleSet> {
        self.eval.rules()
    }
    pub fn device_state(&self, d: DeviceIdx) -> DeviceState {
        self.states
            .get(d.get())
            .copied()
            .unwrap_or(DeviceState::Normal)
    }
    /// Every device's state, indexed by `DeviceIdx`.
    pub fn device_states(&self) -> &[DeviceState] {
        &self.states
    }
    pub fn last_seen(&self, d: DeviceIdx) -> Option<Timestamp> {
        self.eval.last_seen(d)
    }

    /// Rebuilds the incident book, the rules' raised conditions and the last heard times.
    fn restore_incidents(
        &mut self,
        incidents: Vec<Incident>,
        max_id: IncidentId,
        last_seen: &[(DeviceIdx, Timestamp)],
    ) -> Result<(), TransitionError> {
        self.book.reserve_ids_through(max_id);
        for (d, t) in last_seen {
            self.sentinel.set_last_heard(*d, *t);
            self.eval.set_last_seen(*d, *t);
        }
        for inc in incidents {
            if inc.condition_active {
                let silence = self.eval.restore_raised(
                    &inc.rule,
                    inc.site,
                    inc.device,
                    inc.opened_at,
                    inc.severity,
                );
                if let Some(d) = inc.device
                    && let Some(s) = self.states.get_mut(d.get())
                {
                    *s = if silence {
                        DeviceState::Silent
                    } else {
                        DeviceState::Alarm
                    };
                }
            }
            self.book.restore(inc)?;
        }
        Ok(())
    }

    pub fn replace_rules(&mut self, rules: Arc<RuleSet>) {
        self.base_rules = rules;
        self.apply_effective(None);
    }

    /// Recomputes the effective rule set (base rules plus those of the events in force at
    /// `now`, or at the last refresh when `None`) and swaps it into the evaluator, keeping
    /// the state of unchanged rules. With `clear_at`, conditions of rules no longer in force
    /// clear (their alarms land in `self.alarms`).
    fn apply_effective(&mut self, clear_at: Option<Timestamp>) {
        let now = clear_at.unwrap_or(self.events_clock);
        let (set, seeds) = self
            .events
            .effective(&self.base_rules, &self.territory, now);
        let set = Arc::new(set);
        self.metrics.rules_loaded.set(set.len() as i64);
        match clear_at {
            Some(at) => self.eval.replace_rules_clearing(set, at, &mut self.alarms),
            None => self.eval.replace_rules(set),
        }
        for (rule, values) in seeds {
            self.eval
                .seed_aggregate(&rule, &values, now, &mut self.alarms);
        }
    }

    /// The declared events.
    pub fn events(&self) -> &EventBook {
        &self.events
    }

    /// Processing time of the last tick or event change.
    pub fn events_clock(&self) -> Timestamp {
        self.events_clock
    }

    /// Loads events (from `events.toml` and the store) before the incidents are restored,
    /// so that incidents raised by an event's rules re-arm.
    fn load_events(&mut self, events: Vec<EventRules>, now: Timestamp) {
        for e in events {
            self.events.upsert(e, now);
        }
        self.events_clock = now;
        self.apply_effective(None);
        self.alarms.clear();
        let _ = self.events.take_changed(now);
    }

    /// Declares an event (or replaces one with the same id when `replace`).
    pub fn declare_event(
        &mut self,
        e: EventRules,
        replace: bool,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<EventView, EventError> {
        if !replace && self.events.get(&e.event.id).is_some() {
            return Err(EventError::Exists(e.event.id.to_string()));
        }
        out.batch.events.push(Arc::clone(&e.event));
        let id = Arc::clone(&e.event.id);
        self.events.upsert(e, now);
        self.refresh_events(now, true, out);
        self.flush_alarms(out);
        self.event_view(&id, now)
    }

    /// Cancels an event that is not over: its rules stop at once.
    pub fn cancel_event(
        &mut self,
        id: &str,
        actor: &str,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<EventView, EventError> {
        let e = self
            .events
            .get(id)
            .ok_or_else(|| EventError::NotFound(id.to_string()))?;
        if matches!(
            e.event.status(now),
            EventStatus::Cancelled | EventStatus::Ended
        ) {
            return Err(EventError::Closed(id.to_string()));
        }
        let mut rules = e.clone();
        let mut ev = (*rules.event).clone();
        ev.cancelled_at = Some(now);
        ev.cancelled_by = Some(actor.into());
        rules.event = Arc::new(ev);
        out.batch.events.push(Arc::clone(&rules.event));
        self.events.upsert(rules, now);
        self.refresh_events(now, true, out);
        self.flush_alarms(out);
        self.event_view(id, now)
    }

    fn event_view(&self, id: &str, now: Timestamp) -> Result<EventView, EventError> {
        self.events
            .get(id)
            .map(|e| self.events.view(e, now))
            .ok_or_else(|| EventError::NotFound(id.to_string()))
    }

    /// Puts event rules in or out of force as the clock crosses their windows, and
    /// reports the events whose view changed.
    fn refresh_events(&mut self, now: Timestamp, force: bool, out: &mut Output) {
        self.events_clock = now;
        if force || self.events.in_force_changed(now) {
            self.apply_effective(Some(now));
        }
        out.events.extend(self.events.take_changed(now));
    }

    pub fn replace_procedures(&mut self, procedures: Vec<Procedure>) {
        self.book.set_procedures(procedures);
    }

    /// Swaps the units and escalation delays (hot reload); every unit is written out so
    /// that the store and the live stream see the new list.
    pub fn replace_operations(
        &mut self,
        units: Vec<UnitSpec>,
        escalation: EscalationPolicy,
        now: Timestamp,
        out: &mut Output,
    ) {
        self.units.reconfigure(units, now);
        out.batch.units.extend(self.units.units().iter().cloned());
        self.escalation = escalation;
    }

    /// Decodes, validates and evaluates one payload from a transport that vouches for
    /// nothing (see [`Pipeline::ingest_from`]).
    pub fn ingest(
        &mut self,
        source: Source,
        format: Format,
        device_hint: Option<&str>,
        payload: &[u8],
        received: Timestamp,
        out: &mut Output,
    ) -> Ingested {
        let transport = Transport {
            device_hint,
            authenticated: false,
        };
        self.ingest_from(source, format, transport, payload, received, out)
    }

    /// Opens a signed envelope if there is one (verifying MAC and counter), decodes,
    /// validates, checks each record against the device's signing policy and the topic,
    /// and evaluates the accepted observations with the trust they earned.
    pub fn ingest_from(
        &mut self,
        source: Source,
        format: Format,
        transport: Transport<'_>,
        payload: &[u8],
        received: Timestamp,
        out: &mut Output,
    ) -> Ingested {
        self.source_metrics(source).messages.inc();
        let mut result = Ingested::default();
        let admitted = match self.trust.admit(
            &self.territory,
            payload,
            transport,
            &mut out.batch.replay_windows,
        ) {
            Ok(a) => a,
            Err(refused) => {
                if let Some(sig) = &refused.signal {
                    self.on_security_signal(sig, received, out);
                }
                self.reject(source, refused.rejection.clone(), received, out);
                result.rejected.push(refused.rejection);
                return result;
            }
        };
        // A signed envelope names its device: that is the hint for the inner payload.
        let signer_id = admitted
            .signer
            .map(|d| Arc::clone(&self.territory.device(d).id));
        let cx = Context {
            device_hint: signer_id.as_deref().or(transport.device_hint),
            received,
        };
        let payload: &[u8] = &admitted.body;
        let records = match beffroi_wire::decode(format, payload, cx) {
            Ok(r) => r,
            Err(rej) => {
                self.reject(source, rej.clone(), received, out);
                result.rejected.push(rej);
                return result;
            }
        };
        // The topic (authenticated) or the signature binds the device: a record naming
        // another one refuses the whole payload, and the signal names the publisher.
        let bound = signer_id
            .as_deref()
            .or(transport.device_hint.filter(|_| transport.authenticated));
        if let Some(bound) = bound
            && let Some((n, first)) = crate::binding::strangers(&self.territory, bound, &records)
        {
            let claimed = self.trust.name_tags().describe(&self.territory, first);
            let rej = Rejection::new(
                RejectReason::TopicMismatch,
                format!(
                    "{n} of {} records name another device than {bound}, bound by the transport                      (first: {claimed}); the whole payload is refused",
                    records.len()
                ),
            );
            let signal = beffroi_core::SecuritySignal::TopicMismatch {
                topic_device: bound.to_string(),
                claimed,
            };
            self.on_security_signal(&signal, received, out);
            self.reject(source, rej.clone(), received, out);
            result.rejected.push(rej);
            return result;
        }
        self.obs.clear();
        // What each accepted observation carries of a person: the pseudonyms its
        // pseudonymisation produced (parallel to `self.obs`).
        let mut carried: Vec<Vec<Arc<str>>> = Vec::new();
        // Distinct unregistered names of this payload (at most MAX_RECORDS), and the tags
        // of the first few: one signal for the payload, however many names it makes up.
        let mut unknown: rustc_hash::FxHashSet<String> = Default::default();
        let mut tags: Vec<String> = Vec::new();
        for r in &records {
            let checked = beffroi_wire::validate(&self.territory, r, received).and_then(|mut o| {
                match self
                    .trust
                    .check_record(&self.territory, o.device, &admitted, transport)
                {
                    Ok(()) => {
                        o.trust = admitted.trust;
                        Ok(o)
                    }
                    Err(refused) => {
                        if let Some(sig) = &refused.signal {
                            self.on_security_signal(sig, received, out);
                        }
                        Err(refused.rejection)
                    }
                }
            });
            let checked = checked.and_then(|o| self.within_retention(&o, received).map(|()| o));
            // Before anything is stored, logged or evaluated.
            let sealed_before = out.batch.identities.len();
            let checked = checked.and_then(|mut o| self.pseudonymise(&mut o, out).map(|()| o));
            match checked {
                Ok(o) => {
                    carried.push(sealed_since(out, sealed_before));
                    self.obs.push(o);
                }
                Err(mut rej) => {
                    if rej.reason == RejectReason::UnknownDevice {
                        // The name is the publisher's choice: quoted by its tag only.
                        let name = crate::binding::raw_name(&r.device);
                        let tag = self.trust.name_tags().tag(&name);
                        rej.detail = format!("unregistered device #{tag}");
                        if unknown.insert(name) && tags.len() < MAX_UNREGISTERED_TAGS {
                            tags.push(tag);
                        }
                    }
                    self.reject(source, rej.clone(), received, out);
                    result.rejected.push(rej);
                }
            }
        }
        if !unknown.is_empty() {
            let signal = beffroi_core::SecuritySignal::Unregistered {
                publisher: bound.map(str::to_string),
                names: u32::try_from(unknown.len()).unwrap_or(u32::MAX),
                tags,
            };
            self.on_security_signal(&signal, received, out);
        }
        result.accepted = self.obs.len();
        self.source_metrics(source)
            .accepted
            .inc_by(self.obs.len() as u64);
        let obs = std::mem::take(&mut self.obs);
        let readings = readings(&obs, &carried);
        let mut last = None;
        for o in &obs {
            let freshness = self.classify(o, out);
            if freshness == Freshness::Fresh && last != Some(o.device) {
                self.sentinel.on_message(o.device, received);
                last = Some(o.device);
            }
            let raised = self.alarms.len();
            self.observe(o, received, freshness, out);
            if let Some(ps) = readings.get(&(o.device, o.time)) {
                self.carry(raised, ps);
            }
        }
        self.obs = obs;
        self.flush_alarms(out);
        self.flush_sentinel(received, out);
        result
    }

    /// Raises the observation's series watermark if it is later than anything evaluated
    /// (and queues the new watermark for the store); counts copies and late readings.
    fn classify(&mut self, o: &Observation, out: &mut Output) -> Freshness {
        let f = self.watermarks.advance(o.device, o.field, o.time);
        match f {
            Freshness::Fresh => out.batch.watermarks.push(crate::store::Watermark {
                device: o.device,
                field: o.field,
                time: o.time,
            }),
            Freshness::Duplicate => {
                self.metrics.observations_duplicate.inc();
            }
            Freshness::Late => {
                self.metrics.observations_late.inc();
            }
        }
        f
    }

    /// One validated observation, stored whatever its freshness. A fresh one goes to the
    /// sentinel, then (unless its device is quarantined) to the events and rules; of a copy
    /// or a late one the sentinel weighs only the timing (a clock set back, or stuck, ends
    /// as clock skew).
    fn observe(
        &mut self,
        o: &Observation,
        received: Timestamp,
        freshness: Freshness,
        out: &mut Output,
    ) {
        self.metrics.trust(o.trust).inc();
        let fresh = freshness == Freshness::Fresh;
        if fresh {
            self.sentinel.on_observation(o, received);
        } else {
            self.sentinel.on_timing(o, received);
        }
        let quarantined = self.sentinel.is_quarantined(o.device);
        if fresh && !quarantined {
            // Occupancy changes are reported at the next tick, coalesced.
            self.events.observe(o);
            let before = self.alarms.len();
            self.eval.on_observation(o, &mut self.alarms);
            self.follow_trigger(o, before, out);
        }
        // People counts are kept per time bucket only: the rules and events saw
        // the reading; the store gets it at its bucket's start, where it keeps the highest.
        let people = self
            .territory
            .kind_of(o.device)
            .fields
            .get(o.field.get())
            .is_some_and(|f| f.people_count);
        out.batch.observations.push(StoredObservation {
            device: o.device,
            field: o.field,
            value: o.value.clone(),
            time: if people {
                self.aggregates.bucket_start(o.time)
            } else {
                o.time
            },
            received,
            trust: o.trust,
            quarantined,
        });
    }

    /// Accepts observations that are already validated (simulator, benchmarks).
    pub fn ingest_observation(&mut self, o: &Observation, received: Timestamp, out: &mut Output) {
        let sealed;
        let sealed_before = out.batch.identities.len();
        let o = if self.has_text && matches!(o.value, Value::Text(_)) {
            let mut p = o.clone();
            if let Err(rej) = self.pseudonymise(&mut p, out) {
                self.reject(Source::SIMULATOR, rej, received, out);
                return;
            }
            sealed = p;
            &sealed
        } else {
            o
        };
        let carried = sealed_since(out, sealed_before);
        self.source_metrics(Source::SIMULATOR).accepted.inc();
        let freshness = self.classify(o, out);
        if freshness == Freshness::Fresh {
            self.sentinel.on_message(o.device, received);
        }
        let raised = self.alarms.len();
        self.observe(o, received, freshness, out);
        self.carry(raised, &carried);
        self.flush_alarms(out);
        self.flush_sentinel(received, out);
    }

    /// The alarms raised since index `from` carry the pseudonyms of the reading that raised
    /// them (a clear carries nothing: the reading that ends a condition is not its cause).
    fn carry(&mut self, from: usize, pseudonyms: &[Arc<str>]) {
        if pseudonyms.is_empty() {
            return;
        }
        for a in self.alarms.iter_mut().skip(from) {
            if a.kind != AlarmKind::Clear {
                a.carries.extend(pseudonyms.iter().cloned());
            }
        }
    }

    /// The counters of `source`, resolved once per source.
    fn source_metrics(&mut self, source: Source) -> Arc<crate::metrics::SourceMetrics> {
        if let Some((_, m)) = self.source_metrics.iter().find(|(s, _)| *s == source) {
            return Arc::clone(m);
        }
        let m = self.metrics.source(source);
        self.source_metrics.push((source, Arc::clone(&m)));
        m
    }

    /// Records an input refused before reaching the pipeline (e.g. overload).
    pub fn reject(&mut self, source: Source, rej: Rejection, at: Timestamp, out: &mut Output) {
        self.source_metrics(source).rejected(rej.reason).inc();
        if self.limiter.allow(at, &self.metrics) {
            tracing::info!(source = source.as_str(), reason = rej.reason.as_str(), detail = %rej.detail, "input rejected");
        }
        out.batch.rejections.push(StoredRejection {
            at,
            source: source.as_str().to_string(),
            reason: rej.reason,
            detail: rej.detail,
        });
    }

    /// A security signal from an edge (broker feed, signature check): counted, then weighed
    /// by anomaly detection.
    pub fn on_security_signal(
        &mut self,
        signal: &beffroi_core::SecuritySignal,
        at: Timestamp,
        out: &mut Output,
    ) {
        self.metrics
            .security_signals
            .get_or_create(&crate::metrics::KindLabel {
                kind: signal.kind(),
            })
            .inc();
        self.sentinel.on_signal(signal, at);
        self.flush_sentinel(at, out);
    }

    /// Applies an alert from outside the territory's devices (a CAP feed): opens, updates
    /// or resolves its incident. Returns the incident as it stands, if there is one (an
    /// end for an alert never seen opens nothing).
    pub fn external_alert(
        &mut self,
        alert: &crate::external::ExternalAlert,
        out: &mut Output,
    ) -> Option<Incident> {
        let key = alert.key(&self.territory);
        self.alarms.push(alert.alarm(&self.territory));
        self.flush_alarms(out);
        self.book.by_key(&key).cloned()
    }

    /// Advances processing time.
    pub fn tick(&mut self, now: Timestamp, out: &mut Output) {
        if !self.pending_situations.is_empty() {
            let pending = std::mem::take(&mut self.pending_situations);
            self.push_situations(pending, now, out);
        }
        self.forget_old_situations(now);
        self.refresh_events(now, false, out);
        self.eval.on_tick(now, &mut self.alarms);
        self.flush_alarms(out);
        self.sentinel.on_tick(now);
        self.flush_sentinel(now, out);
        for change in self.book.tick_escalation(&self.escalation, now) {
            self.record(change, now, out);
        }
        out.batch.shelving.extend(self.shelves.expire(now));
        if let Some(after) = self.close_resolved_after {
            for change in self.book.close_resolved(after, now) {
                self.record(change, now, out);
            }
        }
    }

    /// An operator action on an incident.
    pub fn act(
        &mut self,
        id: IncidentId,
        action: &IncidentAction,
        actor: &Actor,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<Incident, TransitionError> {
        // With a units file, assignment names a unit of the deployment that is on duty.
        if let IncidentAction::Assign(unit) = action
            && !self.units.is_empty()
        {
            self.units
                .check_assignable(unit)
                .map_err(TransitionError::Unit)?;
        }
        let change = self.book.act(id, action, actor, now)?;
        let inc = change.incident.clone();
        self.record(change, now, out);
        Ok(inc)
    }

    /// Sets a unit's status by hand.
    pub fn set_unit_status(
        &mut self,
        unit: &str,
        status: UnitStatus,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<Unit, UnitError> {
        let changed = self.units.set_status(unit, status, now)?.cloned();
        match changed {
            Some(u) => {
                out.batch.units.push(u.clone());
                Ok(u)
            }
            None => self
                .units
                .get(unit)
                .cloned()
                .ok_or_else(|| UnitError::NotFound(unit.into())),
        }
    }

    pub fn open_crisis(
        &mut self,
        req: CrisisOpening,
        actor: &Actor,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<Arc<Crisis>, CrisisError> {
        // The incidents of its communes still open are attached at once.
        let change = self.crises.open(req, actor, now, self.book.active())?;
        let c = Arc::clone(&change.crisis);
        out.batch.crises.push(change);
        Ok(c)
    }

    pub fn crisis_act(
        &mut self,
        id: CrisisId,
        cmd: &CrisisCommand,
        actor: &Actor,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<Arc<Crisis>, CrisisError> {
        let change = self.crises.act(id, cmd, actor, now)?;
        let c = Arc::clone(&change.crisis);
        out.batch.crises.push(change);
        Ok(c)
    }

    /// Puts back the stored handover notes and replays the shelving log.
    fn restore_handover(
        &mut self,
        notes: Vec<beffroi_core::handover::HandoverNote>,
        shelving: Vec<beffroi_core::shelving::ShelfAct>,
    ) {
        for n in notes {
            self.notes.restore(n);
        }
        for act in &shelving {
            self.shelves.apply(act);
        }
    }

    /// A handover note written by `author` for `communes` (empty: the whole territory).
    pub fn write_note(
        &mut self,
        author: &str,
        communes: Vec<beffroi_core::CommuneIdx>,
        text: SafeText,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<beffroi_core::handover::HandoverNote, beffroi_core::handover::NoteError> {
        use beffroi_core::handover::NoteChange;
        let change = self.notes.write(author, communes, text, now)?;
        let NoteChange::Written(note) = &change else {
            return Err(beffroi_core::handover::NoteError::NotFound);
        };
        let note = note.clone();
        out.batch.notes.push(change);
        Ok(note)
    }

    /// Records that `reader` read a note (once: a second read changes nothing).
    pub fn read_note(
        &mut self,
        id: beffroi_core::handover::NoteId,
        reader: &str,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<beffroi_core::handover::HandoverNote, beffroi_core::handover::NoteError> {
        if let Some(change) = self.notes.mark_read(id, reader, now)? {
            out.batch.notes.push(change);
        }
        self.notes
            .get(id)
            .cloned()
            .ok_or(beffroi_core::handover::NoteError::NotFound)
    }

    /// Shelves the alarm of an active incident.
    pub fn shelve(
        &mut self,
        incident: IncidentId,
        actor: &str,
        reason: SafeText,
        duration: beffroi_core::Duration,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<beffroi_core::shelving::ShelfAct, beffroi_core::shelving::ShelveError> {
        let inc = self
            .book
            .get(incident)
            .ok_or(beffroi_core::shelving::ShelveError::NotOpen)?;
        let act = self.shelves.shelve(inc, actor, reason, duration, now)?;
        out.batch.shelving.push(act.clone());
        Ok(act)
    }

    /// Takes the alarm of an incident off the shelf.
    pub fn unshelve(
        &mut self,
        incident: IncidentId,
        actor: &str,
        reason: SafeText,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<beffroi_core::shelving::ShelfAct, beffroi_core::shelving::ShelveError> {
        let key = self
            .shelves
            .shelves()
            .find(|s| s.incident == incident)
            .map(|s| s.key.clone())
            .or_else(|| self.book.get(incident).map(|i| i.key.clone()))
            .ok_or(beffroi_core::shelving::ShelveError::NotShelved)?;
        let act = self.shelves.unshelve(&key, actor, reason, now)?;
        out.batch.shelving.push(act.clone());
        Ok(act)
    }

    pub fn shelves(&self) -> &beffroi_core::shelving::ShelfBoard {
        &self.shelves
    }

    /// Every incident change goes through here: the units follow their missions, the
    /// active crises of its commune log it, its situation follows it.
    fn record(&mut self, change: IncidentChange, now: Timestamp, out: &mut Output) {
        self.metrics.incident_changes.inc();
        let mut changes = std::mem::take(&mut self.pending_situations);
        changes.extend(self.situations.follow(&change, &self.territory));
        for c in &changes {
            if c.created {
                self.metrics.situations_opened.inc();
            }
        }
        self.push_situations(changes, now, out);
        for i in self.units.follow(&change.incident, now) {
            if let Some(u) = self.units.at(i) {
                out.batch.units.push(u.clone());
            }
        }
        out.batch.crises.extend(self.crises.follow(&change));
        // A reading's move of `current` / `peak` just before another change of the same
        // incident is carried by that change: one change per incident and reading.
        if let Some(last) = out.batch.incidents.last()
            && last.incident.id == change.incident.id
            && !last.created
            && last.log.is_empty()
            && last.pseudonyms.is_empty()
        {
            out.batch.incidents.pop();
        }
        out.batch.incidents.push(change);
    }

    /// A fresh numeric reading moves the `current` and `peak` of the open incidents its
    /// series triggered (a people count as it may be shown), before the alarms it raised
    /// apply: at once when no alarm of the same input is pending, else in `flush_alarms`
    /// after the `before` alarms raised ahead of it. One map lookup when it triggered none.
    fn follow_trigger(&mut self, o: &Observation, before: usize, out: &mut Output) {
        let Value::Number(n) = o.value else { return };
        let Some(spec) = self.territory.kind_of(o.device).fields.get(o.field.get()) else {
            return;
        };
        let v = if spec.people_count {
            match self.aggregates.shown(n) {
                Some(v) => v,
                None => return,
            }
        } else {
            n
        };
        let name = Arc::clone(&spec.name);
        if before > 0 || !self.deferred_readings.is_empty() {
            self.deferred_readings
                .push((before, o.device, name, v, o.time));
            return;
        }
        self.apply_reading(o.device, &name, v, o.time, out);
    }

    fn apply_reading(
        &mut self,
        device: DeviceIdx,
        field: &str,
        v: f64,
        at: Timestamp,
        out: &mut Output,
    ) {
        for change in self.book.observe_reading(device, field, v, at) {
            self.record(change, at, out);
        }
    }

    /// Applies the deferred readings that came before alarm `upto` (all with `None`).
    fn apply_deferred(&mut self, upto: Option<usize>, next: &mut usize, out: &mut Output) {
        while let Some((before, d, f, v, at)) = self.deferred_readings.get(*next).cloned() {
            if upto.is_some_and(|j| before > j) {
                break;
            }
            *next += 1;
            self.apply_reading(d, &f, v, at, out);
        }
        if upto.is_none() {
            self.deferred_readings.clear();
            *next = 0;
        }
    }

    fn flush_alarms(&mut self, out: &mut Output) {
        if self.alarms.is_empty() && self.deferred_readings.is_empty() {
            return;
        }
        let alarms = std::mem::take(&mut self.alarms);
        let mut next = 0;
        for (j, a) in alarms.iter().enumerate() {
            self.apply_deferred(Some(j), &mut next, out);
            self.metrics.alarms.inc();
            self.sentinel.on_alarm(a);
            // A device's state on the map is what the rules say of it: the sentinel's
            // findings (category `cyber`) are seen only by those who may see cyber
            // incidents, and a device coloured by one would tell the others.
            if let Some(d) = a
                .device
                .filter(|_| &*a.category != beffroi_core::visibility::CYBER)
            {
                let state = match a.kind {
                    AlarmKind::Clear => DeviceState::Normal,
                    _ if a.silence => DeviceState::Silent,
                    _ => DeviceState::Alarm,
                };
                if let Some(s) = self.states.get_mut(d.get())
                    && *s != state
                {
                    *s = state;
                    out.devices.push(DeviceChange {
                        device: d,
                        state,
                        at: a.at,
                    });
                }
            }
            if let Some(change) = self.book.apply_alarm(a, &self.territory) {
                if change.created {
                    self.metrics
                        .incidents_opened
                        .get_or_create(&crate::metrics::CategoryLabel {
                            category: change.incident.category.to_string(),
                        })
                        .inc();
                }
                self.record(change, a.at, out);
            }
        }
        self.apply_deferred(None, &mut next, out);
        self.alarms = alarms;
        self.alarms.clear();
    }
}

/// The pseudonyms sealed into `out` since index `from`: what pseudonymising one observation
/// produced (its personal value, or what scrubbing took out of its technical text).
fn sealed_since(out: &Output, from: usize) -> Vec<Arc<str>> {
    out.batch
        .identities
        .get(from..)
        .unwrap_or_default()
        .iter()
        .map(|i| Arc::from(i.sealed.pseudonym.0.as_str()))
        .collect()
}

/// The pseudonyms of each reading of a payload: a reading is what one device reported at
/// one time (a badge reader's `granted` and `badge` records), so an alarm raised by any of
/// its observations carries all of them. Empty (no allocation) when nothing was sealed.
fn readings(
    obs: &[Observation],
    carried: &[Vec<Arc<str>>],
) -> rustc_hash::FxHashMap<(DeviceIdx, Timestamp), Vec<Arc<str>>> {
    let mut out: rustc_hash::FxHashMap<(DeviceIdx, Timestamp), Vec<Arc<str>>> = Default::default();
    for (o, ps) in obs.iter().zip(carried) {
        if !ps.is_empty() {
            out.entry((o.device, o.time))
                .or_default()
                .extend(ps.iter().cloned());
        }
    }
    out
}

/// An overload rejection, for sources that refuse rather than wait.
pub fn overload() -> Rejection {
    Rejection::new(RejectReason::Overload, "pipeline queue full")
}

/// Anomaly detection and quarantine (the detectors and their glue live in
/// `crate::sentinel`; this block only reaches into the pipeline's state).
impl Pipeline {
    /// Sets the minimum group size of people counts (`privacy.toml`): titles, evidence and
    /// event occupancies show a smaller count as suppressed.
    /// Sets how long each field's data is kept, as the purge computes it (the field's
    /// category and purpose in `policy`, `technical_observations` for technical fields): an
    /// observation older than that is refused as `expired` rather than stored until the
    /// next purge.
    fn set_retention(
        &mut self,
        policy: &beffroi_core::PrivacyPolicy,
        technical_observations: beffroi_core::Duration,
    ) {
        self.keep = Some(
            self.territory
                .kinds
                .iter()
                .map(|k| {
                    k.fields
                        .iter()
                        .map(|f| match f.category {
                            beffroi_core::territory::DataCategory::Technical => {
                                technical_observations
                            }
                            c => policy
                                .retention_for(c, f.purpose.as_deref().or(k.purpose.as_deref())),
                        })
                        .collect()
                })
                .collect(),
        );
    }

    /// Refuses an observation older than its field's retention at `received`.
    fn within_retention(&self, o: &Observation, received: Timestamp) -> Result<(), Rejection> {
        let Some(keep) = &self.keep else {
            return Ok(());
        };
        let kind = self.territory.device(o.device).kind;
        let Some(limit) = keep.get(kind.get()).and_then(|k| k.get(o.field.get())) else {
            return Ok(());
        };
        if o.time < received.minus(*limit) {
            let k = self.territory.kind(kind);
            return Err(Rejection::new(
                RejectReason::Expired,
                format!(
                    "{}.{}: event time {} is older than its retention ({} days)",
                    k.id,
                    k.fields[o.field.get()].name,
                    o.time,
                    limit.millis() / 86_400_000
                ),
            ));
        }
        Ok(())
    }

    fn set_aggregates(&mut self, a: beffroi_core::privacy::Aggregates) {
        self.eval.set_aggregates(a);
        self.events.set_aggregates(a);
        self.aggregates = a;
    }

    pub fn is_quarantined(&self, d: DeviceIdx) -> bool {
        self.sentinel.is_quarantined(d)
    }

    pub fn sentinel(&self) -> &crate::sentinel::SentinelGlue {
        &self.sentinel
    }

    /// Replaces the networks `source` flags as known bad (see
    /// [`beffroi_sentinel::Sentinel::set_known_bad`]).
    pub fn set_known_bad(&mut self, source: &str, networks: Vec<beffroi_sentinel::KnownBad>) {
        self.sentinel.set_known_bad(source, networks);
        self.metrics
            .known_bad_networks
            .set(self.sentinel.known_bad_count() as i64);
    }

    /// Replays the stored quarantine acts, oldest first.
    fn restore_quarantine(&mut self, acts: Vec<crate::sentinel::QuarantineAct>) {
        for act in acts {
            if let Err(e) = self.sentinel.apply(act) {
                tracing::warn!(error = %e, "stored quarantine act skipped");
            }
        }
    }

    /// Quarantines a device: its observations are still validated, stored and shown, but no
    /// longer reach the rules; the conditions it held clear at once.
    pub fn quarantine(
        &mut self,
        device: &str,
        actor: &str,
        reason: &str,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<crate::sentinel::QuarantineAct, crate::sentinel::QuarantineError> {
        self.quarantine_act(device, true, format!("user:{actor}"), reason, now, out)
    }

    /// Releases a quarantined device: its next observations reach the rules again.
    pub fn release(
        &mut self,
        device: &str,
        actor: &str,
        reason: &str,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<crate::sentinel::QuarantineAct, crate::sentinel::QuarantineError> {
        self.quarantine_act(device, false, format!("user:{actor}"), reason, now, out)
    }

    fn quarantine_act(
        &mut self,
        device: &str,
        quarantined: bool,
        actor: String,
        reason: &str,
        now: Timestamp,
        out: &mut Output,
    ) -> Result<crate::sentinel::QuarantineAct, crate::sentinel::QuarantineError> {
        use crate::sentinel::{QuarantineAct, QuarantineError};
        let d = self
            .territory
            .device_id(device)
            .ok_or_else(|| QuarantineError::UnknownDevice(device.chars().take(64).collect()))?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(QuarantineError::EmptyReason);
        }
        let act = QuarantineAct {
            device: d,
            quarantined,
            actor: actor.into(),
            reason: reason.chars().take(500).collect(),
            at: now,
        };
        self.sentinel.apply(act.clone())?;
        out.batch.quarantine.push(act.clone());
        tracing::warn!(device, quarantined, actor = %act.actor, reason = %act.reason, "device quarantine changed");
        if quarantined {
            self.forget_quarantined(&act, now, out);
        }
        Ok(act)
    }

    /// The rules forget what a quarantined device made true; the incidents it alone held
    /// resolve, with a log line saying why.
    fn forget_quarantined(
        &mut self,
        act: &crate::sentinel::QuarantineAct,
        now: Timestamp,
        out: &mut Output,
    ) {
        let why = beffroi_core::Message::new("rule.quarantined")
            .device("device", &self.territory.device(act.device).id)
            .with(
                "actor",
                beffroi_core::Param::User(act.actor.to_string().into()),
            )
            .with(
                "reason",
                beffroi_core::Param::Text(beffroi_core::SafeText::redacting(&act.reason)),
            );
        let mut cleared = Vec::new();
        self.eval.forget_device(act.device, now, &why, &mut cleared);
        let keys: Vec<_> = cleared.iter().map(|a| a.key.clone()).collect();
        self.alarms.extend(cleared);
        self.flush_alarms(out);
        for key in keys {
            let Some(inc) = self.book.by_key(&key) else {
                continue;
            };
            if inc.status.is_open() && !inc.condition_active {
                let id = inc.id;
                for action in [
                    IncidentAction::Comment(why.english()),
                    IncidentAction::Resolve,
                ] {
                    match self
                        .book
                        .act(id, &action, &beffroi_core::Actor::System, now)
                    {
                        Ok(mut change) => {
                            // The system's note says why, in the reader's language.
                            if matches!(action, IncidentAction::Comment(_)) {
                                for e in &mut change.log {
                                    e.message = Some(why.clone());
                                }
                            }
                            self.record(change, now, out)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "quarantine could not resolve incident")
                        }
                    }
                }
            }
        }
    }

    /// Turns the sentinel's findings into cyber incidents; applies the quarantine policy.
    fn flush_sentinel(&mut self, now: Timestamp, out: &mut Output) {
        self.sentinel.drain(&mut self.alarms);
        self.flush_alarms(out);
        for (d, anomaly, evidence) in self.sentinel.take_auto_quarantine() {
            let id = self.territory.device(d).id.clone();
            let actor = format!("policy:{}", anomaly.as_str());
            // Audited by the writer once committed (`runner::audit_policy_acts`).
            if let Err(e) = self.quarantine_act(&id, true, actor, &evidence, now, out) {
                tracing::warn!(error = %e, "automatic quarantine skipped");
            }
        }
    }
}

/// How long a closed situation stays in the operations snapshot (the alarm health counts
/// the situations opened in the last day).
const RECENT_SITUATIONS: beffroi_core::Duration = beffroi_core::Duration::from_mins(24 * 60);

/// Why an action on a situation failed.
#[derive(Debug, thiserror::Error)]
pub enum SituationActError {
    #[error(transparent)]
    Situation(#[from] SituationError),
    #[error(transparent)]
    Transition(#[from] TransitionError),
}
