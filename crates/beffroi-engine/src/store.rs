//! The persistence boundary, as role traits with no default bodies. The engine writes
//! through [`Store`] ([`Commit`], [`Restore`], [`Retain`]) on a dedicated thread and the API
//! reads through [`StoreReader`] ([`IncidentReads`], [`ObservationReads`], [`RecordReads`])
//! from `spawn_blocking`. `beffroi-store` implements them on SQLite.

use beffroi_core::crisis::{Crisis, CrisisChange};
use beffroi_core::{
    DeviceIdx, FieldIdx, Incident, IncidentChange, IncidentId, LogEntry, Severity, Status,
    Timestamp, Unit, UnitStatus, Value,
};
use beffroi_wire::RejectReason;

pub use crate::retention::{
    ErasureReport, LegalHold, PurgePlan, PurgeReport, PurgeRun, StoreRows, SubjectData,
};

#[derive(Clone, Debug, PartialEq)]
pub struct StoredObservation {
    pub device: DeviceIdx,
    pub field: FieldIdx,
    pub value: Value,
    pub time: Timestamp,
    pub received: Timestamp,
    pub trust: beffroi_core::Trust,
    /// The device was quarantined: stored and shown, not fed to the rules.
    pub quarantined: bool,
}

/// A refused input, kept so that nothing is silently dropped. Holds no payload bytes (they
/// may carry personal data); the detail names ids, fields and technical values only.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRejection {
    pub at: Timestamp,
    /// The source's name ([`Source::as_str`]); any name read back from the store.
    pub source: String,
    pub reason: RejectReason,
    pub detail: String,
}

/// A pseudonym met at ingest (or in free text) with its sealed value, upserted into
/// `identities` in the same transaction as the observations that carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredIdentity {
    pub sealed: beffroi_privacy::Sealed,
    /// When it was seen (event time of the observation, or time of the act).
    pub seen: Timestamp,
}

/// Everything one commit makes durable, in order.
#[derive(Debug, Default)]
pub struct WriteBatch {
    pub observations: Vec<StoredObservation>,
    pub rejections: Vec<StoredRejection>,
    pub incidents: Vec<IncidentChange>,
    /// Units whose status or missions changed (upserted by id).
    pub units: Vec<Unit>,
    /// Crises opened or changed, with the log entries to append.
    pub crises: Vec<CrisisChange>,
    /// Situations opened or changed (upserted by id), with the log entries to append.
    pub situations: Vec<beffroi_core::SituationChange>,
    /// Events declared or cancelled (upserted by id).
    pub events: Vec<std::sync::Arc<beffroi_core::Event>>,
    /// Replay windows of signing devices that advanced (upserted by device).
    pub replay_windows: Vec<crate::trust::StoredWindow>,
    /// Quarantine and release acts, appended to the quarantine log.
    pub quarantine: Vec<crate::sentinel::QuarantineAct>,
    /// Pseudonyms and their sealed values (upserted: first seen kept, last seen raised).
    pub identities: Vec<StoredIdentity>,
    /// Event time of the latest evaluated observation of a (device, field), each time it
    /// advances: restored after a restart or a failed commit so that a redelivered reading
    /// is not evaluated twice (see [`crate::pipeline`]). Never moves backwards.
    pub watermarks: Vec<Watermark>,
    /// Handover notes written and reads of them (appended).
    pub notes: Vec<beffroi_core::handover::NoteChange>,
    /// Shelvings, unshelvings and expiries of alarms, appended to the shelving log.
    pub shelving: Vec<beffroi_core::shelving::ShelfAct>,
}

/// The latest evaluated event time of one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub device: DeviceIdx,
    pub field: beffroi_core::FieldIdx,
    pub time: Timestamp,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.observations.is_empty()
            && self.rejections.is_empty()
            && self.incidents.is_empty()
            && self.units.is_empty()
            && self.crises.is_empty()
            && self.situations.is_empty()
            && self.events.is_empty()
            && self.replay_windows.is_empty()
            && self.quarantine.is_empty()
            && self.identities.is_empty()
            && self.watermarks.is_empty()
            && self.notes.is_empty()
            && self.shelving.is_empty()
    }
    pub fn len(&self) -> usize {
        self.observations.len()
            + self.rejections.len()
            + self.incidents.len()
            + self.units.len()
            + self.crises.len()
            + self.situations.len()
            + self.events.len()
            + self.replay_windows.len()
            + self.quarantine.len()
            + self.identities.len()
            + self.notes.len()
            + self.shelving.len()
    }
}

/// A unit's recorded status (its missions are rebuilt from the active incidents).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredUnit {
    pub id: String,
    pub status: UnitStatus,
    pub updated_at: Timestamp,
}

/// A line of an incident's log with the incident it belongs to (shift handover).
#[derive(Clone, Debug, PartialEq)]
pub struct HandoverEntry {
    pub incident: IncidentId,
    pub title: String,
    pub entry: LogEntry,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    #[error("stored data is inconsistent with the territory: {0}")]
    Inconsistent(String),
}

pub use beffroi_core::visibility::{CYBER, Visibility};

/// Filter for incident listings.
#[derive(Clone, Debug, Default)]
pub struct IncidentQuery {
    /// Only these statuses (empty: all).
    pub statuses: Vec<Status>,
    pub category: Option<String>,
    /// Commune id.
    pub commune: Option<String>,
    pub min_severity: Option<Severity>,
    /// Only incidents updated at or after this time.
    pub updated_since: Option<Timestamp>,
    /// At most this many, most recently updated first (0: the store's default, 500).
    pub limit: usize,
    /// Only the incidents this visibility sees (default: every incident). Part of the
    /// query, applied before `limit`: a page is full of visible incidents.
    pub visible: Visibility,
}

/// The store's roles. A backend implements every one of them, with no default body: a
/// method a backend forgot is a compile error, not a silent "nothing to restore". The
/// engine's store thread holds a [`Store`] (commit, restore, retain); the API holds a
/// [`StoreReader`] (incident reads through the caller's visibility, observation reads,
/// records of holds, identities and quarantine). Both are blanket-implemented for any type
/// with all their roles.
///
/// Writes are called from one dedicated thread, never from async code.
pub trait Commit {
    /// Commits the whole batch atomically. Observations are idempotent on
    /// (device, field, event time, value key — [`beffroi_core::Value::key`]): a redelivered
    /// reading is not stored twice, and a second reading of the same millisecond with
    /// another value is not lost.
    fn write(&mut self, batch: &WriteBatch) -> Result<(), StoreError>;
}

/// What the engine reads back on start (or after a failed commit) to rebuild its state.
pub trait Restore {
    /// Incidents that are not closed, to rebuild the incident book on start.
    fn active_incidents(&mut self) -> Result<Vec<Incident>, StoreError>;
    /// Highest incident id ever allocated (0 when none).
    fn max_incident_id(&mut self) -> Result<IncidentId, StoreError>;
    /// Any incident by id, closed ones included (to reopen them).
    fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError>;
    /// Last time each device was heard of.
    fn last_seen(&mut self) -> Result<Vec<(DeviceIdx, Timestamp)>, StoreError>;
    /// The latest evaluated event time of every (device, field) series.
    fn watermarks(&mut self) -> Result<Vec<Watermark>, StoreError>;
    /// Recorded unit statuses, to restore the unit board.
    fn units(&mut self) -> Result<Vec<StoredUnit>, StoreError>;
    /// Every crisis with its log, oldest first.
    fn crises(&mut self) -> Result<Vec<Crisis>, StoreError>;
    /// Situations not closed, and those closed since `since`, with their logs, in id order.
    fn situations(&mut self, since: Timestamp) -> Result<Vec<beffroi_core::Situation>, StoreError>;
    /// Highest situation id ever allocated (0 when none).
    fn max_situation_id(&mut self) -> Result<beffroi_core::SituationId, StoreError>;
    /// Events declared through the API and cancellations, to restore event mode on start.
    fn events(&mut self) -> Result<Vec<beffroi_core::Event>, StoreError>;
    /// The replay windows of signing devices, to refuse replays across restarts.
    fn replay_windows(&mut self) -> Result<Vec<crate::trust::StoredWindow>, StoreError>;
    /// Every quarantine act, oldest first, to rebuild the quarantined set on start.
    fn quarantine_acts(&mut self) -> Result<Vec<crate::sentinel::QuarantineAct>, StoreError>;
    /// The newest handover notes with their reads (at most
    /// [`beffroi_core::handover::MAX_NOTES`]), to restore the note board on start.
    fn handover_notes(&mut self) -> Result<Vec<beffroi_core::handover::HandoverNote>, StoreError>;
    /// The shelving acts still relevant, oldest first, to rebuild the shelf on start.
    fn shelf_log(&mut self) -> Result<Vec<beffroi_core::shelving::ShelfAct>, StoreError>;
}

/// Retention, legal holds and erasure (see [`crate::retention`]).
pub trait Retain {
    /// Deletes observations with an event time before `before`; returns how many.
    fn purge_observations(&mut self, before: Timestamp) -> Result<usize, StoreError>;
    /// Carries out a retention purge in bounded transactions, records the run and returns
    /// what it removed and redacted.
    fn purge(&mut self, plan: &PurgePlan) -> Result<PurgeReport, StoreError>;
    /// The legal holds in force at `now` (the engine keeps open incidents under hold out of
    /// an erasure in memory too).
    fn legal_holds(&mut self, now: Timestamp) -> Result<Vec<LegalHold>, StoreError>;
    /// Records a purge run (its audit detail), for the retention status.
    fn record_purge(&mut self, at: Timestamp, detail: &str) -> Result<(), StoreError>;
    /// Records a legal hold (superseding the incident's hold in force, if any).
    fn set_hold(&mut self, hold: &LegalHold) -> Result<(), StoreError>;
    /// Releases the incident's hold in force; whether there was one.
    fn release_hold(
        &mut self,
        incident: IncidentId,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Erases what is held under a person's pseudonyms (observations and identities
    /// deleted, incidents and logs redacted), except what a legal hold in force at `now`
    /// keeps.
    fn erase_subject(
        &mut self,
        pseudonyms: &[String],
        now: Timestamp,
    ) -> Result<ErasureReport, StoreError>;
}

/// The engine's side of a backend: one writer at a time, on a dedicated thread.
pub trait Store: Commit + Restore + Retain + Send + 'static {}
impl<T: Commit + Restore + Retain + Send + 'static> Store for T {}

/// Incident reads. The API calls them only through its visibility-bound wrapper; every one
/// takes the visibility as part of the query.
pub trait IncidentReads {
    fn incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError>;
    /// The incident with its log, `None` when it does not exist or `visible` does not see it.
    fn incident_with_log(
        &self,
        id: IncidentId,
        visible: &Visibility,
    ) -> Result<Option<(Incident, Vec<LogEntry>)>, StoreError>;
    /// The incidents with these ids that `visible` sees (closed ones included), in id order;
    /// the visibility is part of the query.
    fn incidents_by_id(
        &self,
        ids: &[IncidentId],
        visible: &Visibility,
    ) -> Result<Vec<Incident>, StoreError>;
    /// Log lines of the incidents `visible` sees written at or after `since`, oldest first;
    /// the newest `limit` when there are more (the visibility is part of the query).
    fn log_since(
        &self,
        since: Timestamp,
        limit: usize,
        visible: &Visibility,
    ) -> Result<Vec<HandoverEntry>, StoreError>;
}

/// Observation and rejection reads.
pub trait ObservationReads {
    /// Most recent observations of a device, newest first.
    fn observations(
        &self,
        device: DeviceIdx,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError>;
    /// Observations of a device with an event time in `from..=until`, newest first, at most
    /// `limit` (the newest of the window when it holds more).
    fn observations_between(
        &self,
        device: DeviceIdx,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError>;
    fn observation_count(&self) -> Result<u64, StoreError>;
    /// Most recent rejections, newest first.
    fn rejections(&self, limit: usize) -> Result<Vec<StoredRejection>, StoreError>;
}

/// Reads of records kept for compliance and security: quarantine acts, legal holds,
/// retention status, what is held under a person's pseudonyms, sealed identities.
pub trait RecordReads {
    /// The newest `limit` quarantine acts, oldest first.
    fn quarantine_log(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::sentinel::QuarantineAct>, StoreError>;
    /// Legal holds, newest first; only those in force at `now` unless `all`.
    fn holds(&self, now: Timestamp, all: bool) -> Result<Vec<LegalHold>, StoreError>;
    /// Rows and oldest row per store and category, and the last purge run.
    fn retention_status(&self) -> Result<(Vec<StoreRows>, Option<PurgeRun>), StoreError>;
    /// What is held under a person's pseudonyms (at most `limit` observations listed).
    fn subject_data(&self, pseudonyms: &[String], limit: usize) -> Result<SubjectData, StoreError>;
    /// The pseudonyms incident `id` carries (recorded from the reading that raised it), in
    /// the order they were recorded.
    fn carried(&self, id: IncidentId) -> Result<Vec<String>, StoreError>;
    /// Whether incident `id` carries `pseudonym`: it was recorded from the reading that
    /// raised it (never found in its title, evidence or log).
    fn carries(&self, id: IncidentId, pseudonym: &str) -> Result<bool, StoreError>;
    /// The sealed value behind a pseudonym (table `identities`), for purpose-bound
    /// unmasking; `None` when it was never seen or has been purged or erased.
    fn identity(&self, pseudonym: &str) -> Result<Option<IdentityRow>, StoreError>;
}

/// The API's side of a backend: reads, safe to call concurrently with the writer
/// (blocking: call them from `spawn_blocking`).
pub trait StoreReader:
    IncidentReads + ObservationReads + RecordReads + Send + Sync + 'static
{
}
impl<T: IncidentReads + ObservationReads + RecordReads + Send + Sync + 'static> StoreReader for T {}

/// Everything the engine's state is rebuilt from, as the store holds it: read at start and
/// after a failed commit (the store is the truth), handed to
/// [`crate::pipeline::Pipeline::restore`] in one piece.
#[derive(Clone, Debug, Default)]
pub struct StoredState {
    pub incidents: Vec<Incident>,
    pub max_incident: IncidentId,
    pub last_seen: Vec<(DeviceIdx, Timestamp)>,
    pub watermarks: Vec<Watermark>,
    pub units: Vec<StoredUnit>,
    pub crises: Vec<Crisis>,
    /// Active situations and those closed in the last day.
    pub situations: Vec<beffroi_core::Situation>,
    pub max_situation: beffroi_core::SituationId,
    /// Events declared through the API and cancellations (they take precedence over a file
    /// event with the same id).
    pub events: Vec<beffroi_core::Event>,
    pub replay_windows: Vec<crate::trust::StoredWindow>,
    pub quarantine: Vec<crate::sentinel::QuarantineAct>,
    /// Legal holds in force (the runner keeps them; the pipeline does not need them).
    pub holds: Vec<LegalHold>,
    pub notes: Vec<beffroi_core::handover::HandoverNote>,
    pub shelving: Vec<beffroi_core::shelving::ShelfAct>,
}

/// How far back closed situations are restored.
const RESTORED_SITUATIONS: beffroi_core::Duration = beffroi_core::Duration::from_mins(24 * 60);

impl StoredState {
    /// Reads the whole state from `store` (as of `now`, for holds in force and recent
    /// situations).
    pub fn read<S: Restore + Retain + ?Sized>(
        store: &mut S,
        now: Timestamp,
    ) -> Result<StoredState, StoreError> {
        Ok(StoredState {
            incidents: store.active_incidents()?,
            max_incident: store.max_incident_id()?,
            last_seen: store.last_seen()?,
            watermarks: store.watermarks()?,
            units: store.units()?,
            crises: store.crises()?,
            situations: store.situations(now.minus(RESTORED_SITUATIONS))?,
            max_situation: store.max_situation_id()?,
            events: store.events()?,
            replay_windows: store.replay_windows()?,
            quarantine: store.quarantine_acts()?,
            holds: store.legal_holds(now)?,
            notes: store.handover_notes()?,
            shelving: store.shelf_log()?,
        })
    }
}

/// A row of `identities`: what a pseudonym stands for, sealed with its epoch's key. Only
/// `beffroi_privacy::Pseudonymiser::open` turns it back into the value.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityRow {
    pub pseudonym: String,
    /// `Identifier::as_str` (licence_plate, badge…).
    pub identifier: String,
    pub epoch: u32,
    pub sealed: Vec<u8>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

impl std::fmt::Debug for IdentityRow {
    // Sealed bytes are not printed (they are useless without the key, but logs need not
    // carry them).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityRow")
            .field("pseudonym", &self.pseudonym)
            .field("identifier", &self.identifier)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The store's role traits, to call their methods on a concrete backend or a `dyn Store` /
/// `dyn StoreReader`: `use beffroi_engine::store::prelude::*;`.
pub mod prelude {
    pub use super::{
        Commit, IncidentReads, ObservationReads, RecordReads, Restore, Retain, Store, StoreReader,
    };
}
