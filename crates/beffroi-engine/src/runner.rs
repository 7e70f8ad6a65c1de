//! The pipeline on tokio.
//!
//! ```text
//!  sources ──(bounded mpsc, policy per source)──▶ pipeline task ──(bounded)──▶ writer thread
//!                                  commands ──▶      (Pipeline)                 store.write(batch)
//!                                  ticks    ──▶                                then acks, replies,
//!                                                                              live events
//! ```
//!
//! Overload policy: MQTT and the simulator wait (`submit`), so the broker holds messages
//! for our persistent session; HTTP refuses at once (`try_submit` → 503) and the refusal
//! is counted. The writer channel is bounded too: a slow disk slows the pipeline, which
//! slows the sources; nothing is dropped silently. Acknowledgements, command replies and
//! live events are released only after the batch that carries them is committed.

use beffroi_core::SafeText;
use std::sync::Arc;
use std::time::Instant;

use beffroi_core::crisis::{Crisis, CrisisCommand, CrisisError, CrisisId, CrisisOpening};
use beffroi_core::incident::Procedure;
use beffroi_core::situation::SituationId;
use beffroi_core::{
    Actor, Clock, Incident, IncidentAction, IncidentId, Territory, Timestamp, TransitionError,
    Unit, UnitError, UnitStatus,
};
use beffroi_rules::RuleSet;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::envelope::{Ack, AckOutcome, Envelope};
use crate::events::{EventError, EventView};
use crate::live::LiveEvent;
use crate::metrics::Metrics;
use crate::operations::{Operations, OpsSnapshot};
use crate::pipeline::{Ingested, Output, Pipeline, PipelineConfig};
use crate::retention::{PrivacyCommand, PrivacyError, PrivacyOutcome, PurgePlan};
use crate::store::{Store, StoreError, StoredState, WriteBatch};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Capacity of the ingest queue, in envelopes.
    pub ingest_capacity: usize,
    /// Most envelopes folded into one write batch.
    pub batch_max: usize,
    /// Processing-time tick of the rules (absence, sustained, escalation), in wall time.
    pub tick: std::time::Duration,
    /// Retention of technical observations (event time), overriding the privacy policy's
    /// `technical_observations` (the `retention` key of `beffroi.toml`); `None`: the policy's.
    pub retention: Option<beffroi_core::Duration>,
    /// Incidents resolved this long ago that nobody closed are closed by the system, so
    /// that they are purged like the others (`None`: never).
    pub close_resolved_after: Option<beffroi_core::Duration>,
    /// Retention per data category and the register's activities (`privacy.toml`).
    pub privacy: Arc<beffroi_core::PrivacyPolicy>,
    /// How often (engine clock) the retention purge runs; `None`: never on its own
    /// (only [`EngineHandle::privacy`] with [`PrivacyCommand::Purge`]).
    pub purge_every: Option<beffroi_core::Duration>,
    /// Where a person's access packages are written (`<data_dir>/exports`); purged at the
    /// personal limit.
    pub exports_dir: Option<std::path::PathBuf>,
    /// Staff account → role: redacted records name the role, not the person.
    pub staff_roles: Arc<std::collections::HashMap<String, String>>,
    /// Capacity of the live event channel per subscriber.
    pub live_capacity: usize,
    /// Units, escalation delays and safeguard-plan roles of the deployment.
    pub operations: Operations,
    /// Signing keys in force at start (from the device registry).
    pub device_keys: Arc<crate::trust::DeviceKeys>,
    /// Anomaly-detection thresholds and quarantine policy (`security.toml`).
    pub security: crate::sentinel::SecurityConfig,
    /// Where the engine's own acts on behalf of a policy (automatic quarantine) are
    /// audited, once committed. Acts by users are audited by the API.
    pub audit: Option<EngineAudit>,
    /// The territory's pseudonymisation keys. Without them, observations of personal or
    /// sensitive text fields are refused (`no_pseudonymisation_key`), never stored in clear;
    /// the purge deletes the `identities` rows of epochs no longer alive.
    pub pseudonymiser: Option<Arc<beffroi_privacy::Pseudonymiser>>,
}

/// The audit sink handed to the engine.
#[derive(Clone)]
pub struct EngineAudit(pub Arc<dyn beffroi_core::AuditSink>);

impl std::fmt::Debug for EngineAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineAudit(..)")
    }
}

/// Audits the committed quarantine acts taken by a policy (`policy:<anomaly>`).
fn audit_policy_acts(
    audit: &dyn beffroi_core::AuditSink,
    territory: &Territory,
    acts: &[crate::sentinel::QuarantineAct],
) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for a in acts.iter().filter(|a| a.actor.starts_with("policy:")) {
        audit.record(beffroi_core::AuditRecord {
            at_ms: now_ms,
            actor: SafeText::redacting(&a.actor),
            action: if a.quarantined {
                "device.quarantine".into()
            } else {
                "device.release".into()
            },
            target: Some(SafeText::redacting(&territory.device(a.device).id)),
            outcome: beffroi_core::AuditOutcome::Ok,
            detail: SafeText::redacting(
                &serde_json::json!({ "reason": a.reason, "event_time_ms": a.at.0 }).to_string(),
            ),
        });
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ingest_capacity: 8192,
            batch_max: 2048,
            tick: std::time::Duration::from_millis(500),
            retention: None,
            close_resolved_after: None,
            privacy: Arc::new(beffroi_core::PrivacyPolicy::unconfigured()),
            purge_every: Some(beffroi_core::Duration::from_mins(10)),
            exports_dir: None,
            staff_roles: Arc::default(),
            live_capacity: 4096,
            operations: Operations::default(),
            device_keys: Arc::default(),
            security: crate::sentinel::SecurityConfig::default(),
            audit: None,
            pseudonymiser: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the change could not be stored: {0}")]
    Store(String),
    #[error("the engine is shutting down")]
    Closed,
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error(transparent)]
    Crisis(#[from] CrisisError),
    #[error(transparent)]
    Quarantine(#[from] crate::sentinel::QuarantineError),
    #[error(transparent)]
    Situation(#[from] beffroi_core::SituationError),
    #[error(transparent)]
    Note(#[from] beffroi_core::handover::NoteError),
    #[error(transparent)]
    Shelve(#[from] beffroi_core::shelving::ShelveError),
}

/// A command on the operations state (units, crises).
#[derive(Clone, Debug)]
pub enum OpsCommand {
    UnitStatus {
        unit: String,
        status: UnitStatus,
    },
    OpenCrisis(CrisisOpening),
    Crisis {
        id: CrisisId,
        cmd: CrisisCommand,
    },
    /// Quarantine (`true`) or release a device, with the analyst's reason.
    Quarantine {
        device: String,
        quarantined: bool,
        reason: SafeText,
    },
    /// An action on the members of a situation the caller may see (`only`).
    Situation {
        id: SituationId,
        action: IncidentAction,
        only: Vec<IncidentId>,
    },
    /// Takes an incident out of a situation into a new one.
    SplitSituation {
        id: SituationId,
        incident: IncidentId,
    },
    /// Merges situation `from` into `into`.
    MergeSituations {
        into: SituationId,
        from: SituationId,
    },
    /// A handover note for these communes (empty: the whole territory).
    WriteNote {
        communes: Vec<beffroi_core::CommuneIdx>,
        text: SafeText,
    },
    /// The caller read a handover note.
    ReadNote(beffroi_core::handover::NoteId),
    /// Shelve the alarm of an incident for a while, with a reason.
    Shelve {
        incident: IncidentId,
        reason: SafeText,
        duration: beffroi_core::Duration,
    },
    /// Take the alarm of an incident off the shelf.
    Unshelve {
        incident: IncidentId,
        reason: SafeText,
    },
}

/// What an [`OpsCommand`] changed.
#[derive(Clone, Debug)]
pub enum OpsOutcome {
    Unit(Unit),
    Crisis(Arc<Crisis>),
    Quarantine(crate::sentinel::QuarantineAct),
    Situation(Arc<beffroi_core::Situation>),
    Note(beffroi_core::handover::HandoverNote),
    Shelf(beffroi_core::shelving::ShelfAct),
}

type OpsReply = (
    oneshot::Sender<Result<OpsOutcome, ActError>>,
    Result<OpsOutcome, ActError>,
);

#[derive(Debug, thiserror::Error)]
#[error("the engine is shutting down")]
pub struct EngineClosed;

enum Command {
    Act {
        id: IncidentId,
        action: IncidentAction,
        actor: Actor,
        reply: oneshot::Sender<Result<Incident, ActError>>,
    },
    ReplaceRules(Arc<RuleSet>, Vec<Procedure>),
    ReplaceOperations(
        Vec<beffroi_core::UnitSpec>,
        beffroi_core::incident::EscalationPolicy,
    ),
    Ops {
        cmd: OpsCommand,
        actor: Actor,
        reply: oneshot::Sender<Result<OpsOutcome, ActError>>,
    },
    DeclareEvent {
        event: Box<beffroi_rules::EventRules>,
        reply: oneshot::Sender<Result<EventView, EventError>>,
    },
    /// A security signal from an edge (broker feed, simulator) for anomaly detection.
    Security(beffroi_core::SecuritySignal),
    CancelEvent {
        id: String,
        actor: String,
        reply: oneshot::Sender<Result<EventView, EventError>>,
    },
    DeviceKeys(Arc<crate::trust::DeviceKeys>),
    /// Sealed values behind the pseudonyms of scrubbed free text, for `identities`.
    Identities(Vec<beffroi_privacy::Sealed>),
    Privacy {
        cmd: PrivacyCommand,
        reply: oneshot::Sender<Result<PrivacyOutcome, PrivacyError>>,
    },
}

/// A privacy act for the writer thread: a purge (with its plan), a hold, an erasure.
struct PrivacyJob {
    cmd: PrivacyCommand,
    plan: Option<PurgePlan>,
    now: Timestamp,
    /// `None` for the scheduled purge.
    reply: Option<oneshot::Sender<Result<PrivacyOutcome, PrivacyError>>>,
}

type EventReply = (
    oneshot::Sender<Result<EventView, EventError>>,
    Result<EventView, EventError>,
);

type Reply = (
    oneshot::Sender<Result<Incident, ActError>>,
    Result<Incident, TransitionError>,
);

struct Job {
    /// Jobs of a generation before the writer's were built on a failed commit: refused.
    generation: u64,
    out: Output,
    acks: Vec<(Ack, Ingested)>,
    replies: Vec<Reply>,
    event_replies: Vec<EventReply>,
    /// Every event's view after this job, for readers (published after the commit).
    events_snapshot: Option<Arc<[EventView]>>,
    privacy: Vec<PrivacyJob>,
    ops_replies: Vec<OpsReply>,
    /// The operations state after this job, when it changed.
    ops: Option<Arc<OpsSnapshot>>,
}

/// A cloneable handle on a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    ingest: mpsc::Sender<Envelope>,
    commands: mpsc::Sender<Command>,
    live: broadcast::Sender<LiveEvent>,
    pub metrics: Arc<Metrics>,
    pub territory: Arc<Territory>,
    pub clock: Arc<dyn Clock>,
    rules: watch::Receiver<Arc<RuleSet>>,
    ops: watch::Receiver<Arc<OpsSnapshot>>,
    events: watch::Receiver<Arc<[EventView]>>,
    /// Device states rebuilt from the store at start (alarm and silent conditions of the
    /// restored incidents); the live stream carries the changes from then on.
    restored_states: Arc<[crate::live::DeviceState]>,
    /// When the next scheduled purge runs (engine clock, ms; `i64::MAX`: never).
    next_purge: Arc<std::sync::atomic::AtomicI64>,
    observation_retention: beffroi_core::Duration,
}

impl EngineHandle {
    /// Whether the last commit succeeded: `false` from a failed commit (disk full, I/O
    /// error) until the next successful one. `/healthz` answers "not storing" meanwhile.
    pub fn storing(&self) -> bool {
        self.metrics.store_writable.get() != 0
    }

    /// The devices' states as restored at start, indexed by `DeviceIdx`: what a follower of
    /// the live stream starts from.
    pub fn restored_device_states(&self) -> Arc<[crate::live::DeviceState]> {
        Arc::clone(&self.restored_states)
    }

    /// Carries out a privacy act (purge now, legal hold, erasure, access package) on the
    /// writer thread, in order with the writes; returns once it is durable.
    pub async fn privacy(&self, cmd: PrivacyCommand) -> Result<PrivacyOutcome, PrivacyError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Privacy { cmd, reply })
            .await
            .map_err(|_| PrivacyError::Closed)?;
        rx.await.map_err(|_| PrivacyError::Closed)?
    }

    /// How long technical observations are kept (the `retention` override, else the
    /// privacy policy's `technical_observations`).
    pub fn observation_retention(&self) -> beffroi_core::Duration {
        self.observation_retention
    }

    /// When the next scheduled retention purge runs (engine clock).
    pub fn next_purge_at(&self) -> Option<Timestamp> {
        let ms = self.next_purge.load(std::sync::atomic::Ordering::Relaxed);
        (ms != i64::MAX).then_some(Timestamp(ms))
    }

    /// Declares an event; returns once it is durable.
    pub async fn declare_event(
        &self,
        event: beffroi_rules::EventRules,
    ) -> Result<EventView, EventError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::DeclareEvent {
                event: Box::new(event),
                reply,
            })
            .await
            .map_err(|_| EventError::EngineClosed)?;
        rx.await.map_err(|_| EventError::EngineClosed)?
    }

    /// Cancels an event; returns once the cancellation is durable.
    pub async fn cancel_event(&self, id: &str, actor: &str) -> Result<EventView, EventError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::CancelEvent {
                id: id.to_string(),
                actor: actor.to_string(),
                reply,
            })
            .await
            .map_err(|_| EventError::EngineClosed)?;
        rx.await.map_err(|_| EventError::EngineClosed)?
    }

    /// Every declared event as last committed, with its live occupancy. Statuses are those
    /// of the last engine tick.
    pub fn events(&self) -> Arc<[EventView]> {
        Arc::clone(&self.events.borrow())
    }

    /// Submits an envelope, waiting for room (backpressure).
    pub async fn submit(&self, env: Envelope) -> Result<(), EngineClosed> {
        let r = self.ingest.send(env).await.map_err(|_| EngineClosed);
        self.metrics
            .ingest_queue_depth
            .set((self.ingest.max_capacity() - self.ingest.capacity()) as i64);
        r
    }

    /// Submits an envelope if there is room; otherwise hands it back (the caller refuses
    /// it and counts the overload).
    pub fn try_submit(&self, env: Envelope) -> Result<(), Box<Envelope>> {
        match self.ingest.try_send(env) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e)) => {
                Err(Box::new(e))
            }
        }
    }

    /// Applies an operator action; returns once the change is durable.
    pub async fn act(
        &self,
        id: IncidentId,
        action: IncidentAction,
        actor: Actor,
    ) -> Result<Incident, ActError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Act {
                id,
                action,
                actor,
                reply,
            })
            .await
            .map_err(|_| ActError::Closed)?;
        rx.await.map_err(|_| ActError::Closed)?
    }

    /// Swaps the rules and procedures in force.
    pub async fn replace_rules(
        &self,
        rules: Arc<RuleSet>,
        procedures: Vec<Procedure>,
    ) -> Result<(), EngineClosed> {
        self.commands
            .send(Command::ReplaceRules(rules, procedures))
            .await
            .map_err(|_| EngineClosed)
    }

    /// Swaps the units and escalation delays in force (hot reload).
    pub async fn replace_operations(
        &self,
        units: Vec<beffroi_core::UnitSpec>,
        escalation: beffroi_core::incident::EscalationPolicy,
    ) -> Result<(), EngineClosed> {
        self.commands
            .send(Command::ReplaceOperations(units, escalation))
            .await
            .map_err(|_| EngineClosed)
    }

    /// Hands a security signal from an edge (the broker feed) to the pipeline. Waits for
    /// room in the command queue (bounded, 64): the broker feed slows down rather than
    /// dropping signals.
    pub async fn security_signal(
        &self,
        signal: beffroi_core::SecuritySignal,
    ) -> Result<(), EngineClosed> {
        self.commands
            .send(Command::Security(signal))
            .await
            .map_err(|_| EngineClosed)
    }

    /// Replaces the signing keys in force (the device registry changed).
    pub async fn replace_device_keys(
        &self,
        keys: Arc<crate::trust::DeviceKeys>,
    ) -> Result<(), EngineClosed> {
        self.commands
            .send(Command::DeviceKeys(keys))
            .await
            .map_err(|_| EngineClosed)
    }

    /// Records the sealed values behind the pseudonyms of scrubbed free text. Commands
    /// run in order: sent before the act that stores the text, they are committed with it
    /// or before it.
    pub async fn record_identities(
        &self,
        sealed: Vec<beffroi_privacy::Sealed>,
    ) -> Result<(), EngineClosed> {
        if sealed.is_empty() {
            return Ok(());
        }
        self.commands
            .send(Command::Identities(sealed))
            .await
            .map_err(|_| EngineClosed)
    }

    /// The ingest queue itself, for sources that wait for room (MQTT, simulator).
    pub fn ingest_sender(&self) -> mpsc::Sender<Envelope> {
        self.ingest.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.rules.borrow())
    }

    /// Units and crises as of the last commit.
    pub fn ops(&self) -> Arc<OpsSnapshot> {
        Arc::clone(&self.ops.borrow())
    }

    /// Hands a security signal to anomaly detection. Never waits: when the command queue
    /// is full the signal is dropped and counted (`security_signals_dropped`); returns
    /// whether it was queued.
    pub fn try_security_signal(&self, signal: beffroi_core::SecuritySignal) -> bool {
        match self.commands.try_send(Command::Security(signal)) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.security_signals_dropped.inc();
                false
            }
        }
    }

    /// Applies a command on units or crises; returns once the change is durable.
    pub async fn ops_command(&self, cmd: OpsCommand, actor: Actor) -> Result<OpsOutcome, ActError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Ops { cmd, actor, reply })
            .await
            .map_err(|_| ActError::Closed)?;
        rx.await.map_err(|_| ActError::Closed)?
    }
}

/// What the engine's state is rebuilt from: read from the store at start and after a
/// failed commit (the store is the truth: [ADR 0019](../../../docs/adr/0019-bounded-wal-and-the-store-as-truth.md)).
type Restored = StoredState;

fn read_state(store: &mut dyn Store, now: Timestamp) -> Result<Restored, StoreError> {
    StoredState::read(store, now)
}

/// What a pipeline is built from besides the stored state: the deployment as loaded at
/// start, kept current by the hot reloads the pipeline task receives.
struct Blueprint {
    territory: Arc<Territory>,
    rules: Arc<RuleSet>,
    procedures: Vec<Procedure>,
    file_events: Vec<beffroi_rules::EventRules>,
    metrics: Arc<Metrics>,
    cfg: EngineConfig,
}

impl Blueprint {
    /// A pipeline in the state the store holds: what a restart would rebuild. Events
    /// stored by the API (declarations and cancellations) take precedence over a file
    /// event with the same id.
    fn build(
        &self,
        mut r: Restored,
        now: Timestamp,
    ) -> Result<(Pipeline, std::collections::HashMap<IncidentId, Timestamp>), StoreError> {
        let holds = std::mem::take(&mut r.holds)
            .into_iter()
            .map(|h| (h.incident, h.until))
            .collect();
        let cfg = &self.cfg;
        let mut pipeline = Pipeline::new(
            PipelineConfig {
                operations: cfg.operations.clone(),
                device_keys: Arc::clone(&cfg.device_keys),
                security: cfg.security.clone(),
                aggregates: cfg.privacy.aggregates,
                close_resolved_after: cfg.close_resolved_after,
                retention: Some((
                    Arc::clone(&cfg.privacy),
                    cfg.retention
                        .unwrap_or(cfg.privacy.retention.technical_observations),
                )),
                pseudonymiser: cfg.pseudonymiser.clone(),
                events: self.file_events.clone(),
                ..PipelineConfig::new(
                    Arc::clone(&self.territory),
                    Arc::clone(&self.rules),
                    self.procedures.clone(),
                    Arc::clone(&self.metrics),
                )
            },
            now,
        );
        pipeline
            .restore(r, now)
            .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
        Ok((pipeline, holds))
    }

    /// Keeps the blueprint current with the hot reloads a command carries.
    fn follow(&mut self, c: &Command) {
        match c {
            Command::ReplaceRules(rules, procedures) => {
                self.rules = Arc::clone(rules);
                self.procedures = procedures.clone();
            }
            Command::ReplaceOperations(units, escalation) => {
                self.cfg.operations.units = units.clone();
                self.cfg.operations.escalation = escalation.clone();
            }
            Command::DeviceKeys(keys) => self.cfg.device_keys = Arc::clone(keys),
            _ => {}
        }
    }
}

/// Sent by the writer after a failed commit: the state to rebuild the pipeline from, and
/// the generation its jobs carry from then on.
struct Recovery {
    generation: u64,
    restored: Restored,
}

/// Where the writer thread publishes what it committed.
struct Outlets {
    live: broadcast::Sender<LiveEvent>,
    ops: watch::Sender<Arc<OpsSnapshot>>,
    events: watch::Sender<Arc<[EventView]>>,
    recovery: mpsc::Sender<Recovery>,
}

/// Which ordered streams (MQTT connections) are refused: every stream opened before the
/// last recovery. Stream ids only grow ([`crate::envelope::new_stream`]), so one number
/// says it, however many streams there were.
#[derive(Default)]
struct Streams {
    /// Streams with an id up to this one are refused.
    refused_through: u64,
}

impl Streams {
    /// The envelope, unless its stream is refused (then it is refused and counted).
    fn admit(&self, env: Envelope, metrics: &Metrics) -> Option<Envelope> {
        match env.stream {
            Some(id) if id <= self.refused_through => {
                metrics.store_refused.inc();
                if let Some(ack) = env.ack {
                    ack.call(AckOutcome::Failed(REFUSED_AFTER_FAILURE.into()));
                }
                None
            }
            _ => Some(env),
        }
    }

    /// After a failed commit: every stream opened so far is refused from now on (a
    /// stream opened before and not seen yet is refused too: it costs its sender one more
    /// reconnection, never an order).
    fn refuse_all(&mut self) {
        self.refused_through = crate::envelope::last_stream();
    }
}

/// Why an envelope is refused after a failed commit (the sender retries or the broker
/// redelivers).
const REFUSED_AFTER_FAILURE: &str =
    "not stored: the store failed a commit and the engine rebuilt its state from it; send again";

/// A running engine: the handle plus the tasks to await on shutdown.
pub struct Engine {
    pub handle: EngineHandle,
    pipeline_task: tokio::task::JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
}

impl Engine {
    /// Stops accepting input once every handle is dropped, drains and commits what is
    /// queued, then returns.
    pub async fn shutdown(self) {
        let Engine {
            handle,
            pipeline_task,
            writer_thread,
        } = self;
        drop(handle);
        let _ = pipeline_task.await;
        let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    }
}

/// Starts the engine: restores state from the store (off the runtime), spawns the writer
/// thread and the pipeline task.
pub async fn start(
    territory: Arc<Territory>,
    rules: Arc<RuleSet>,
    procedures: Vec<Procedure>,
    store: Box<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    cfg: EngineConfig,
) -> Result<Engine, StoreError> {
    start_with_events(
        territory,
        rules,
        procedures,
        Vec::new(),
        store,
        clock,
        metrics,
        cfg,
    )
    .await
}

/// [`start`] with the events of the deployment's `events.toml`. Events stored by the API
/// (declarations and cancellations) take precedence over a file event with the same id.
#[allow(clippy::too_many_arguments)]
pub async fn start_with_events(
    territory: Arc<Territory>,
    rules: Arc<RuleSet>,
    procedures: Vec<Procedure>,
    file_events: Vec<beffroi_rules::EventRules>,
    mut store: Box<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    cfg: EngineConfig,
) -> Result<Engine, StoreError> {
    let start = clock.now();
    let (store, restored) = tokio::task::spawn_blocking(move || {
        let r = read_state(store.as_mut(), start);
        (store, r)
    })
    .await
    .map_err(|e| StoreError::Backend(format!("restore task: {e}")))?;
    let blueprint = Blueprint {
        territory: Arc::clone(&territory),
        rules,
        procedures,
        file_events,
        metrics: Arc::clone(&metrics),
        cfg: cfg.clone(),
    };
    let (pipeline, holds) = blueprint.build(restored?, start)?;
    let events_snapshot: Arc<[EventView]> = pipeline.events().views(start).into();

    let (ingest_tx, ingest_rx) = mpsc::channel(cfg.ingest_capacity);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (live_tx, _) = broadcast::channel(cfg.live_capacity);
    let (job_tx, job_rx) = mpsc::channel::<Job>(MAX_JOBS_PER_COMMIT);
    // At most one recovery is pending: the next needs a commit of the new generation.
    let (recovery_tx, recovery_rx) = mpsc::channel::<Recovery>(2);
    // The rules in force: the deployment's plus those of the events in force.
    let (rules_tx, rules_rx) = watch::channel(Arc::clone(pipeline.rules()));
    let (ops_tx, ops_rx) = watch::channel(Arc::new(pipeline.ops_snapshot()));
    let (events_tx, events_rx) = watch::channel(events_snapshot);

    let writer_metrics = Arc::clone(&metrics);
    let writer_live = live_tx.clone();
    let writer_audit = cfg.audit.clone().map(|a| (a.0, Arc::clone(&territory)));
    let writer_exports = cfg.exports_dir.clone();
    let writer_clock = Arc::clone(&clock);
    let observation_retention = cfg
        .retention
        .unwrap_or(cfg.privacy.retention.technical_observations);
    let next_purge = Arc::new(std::sync::atomic::AtomicI64::new(
        cfg.purge_every
            .map_or(i64::MAX, |every| start.plus(every).0),
    ));
    let writer_thread = std::thread::Builder::new()
        .name("beffroi-store-writer".into())
        .spawn(move || {
            writer_loop(
                store,
                job_rx,
                Outlets {
                    live: writer_live,
                    ops: ops_tx,
                    events: events_tx,
                    recovery: recovery_tx,
                },
                writer_metrics,
                writer_audit,
                writer_exports,
                writer_clock,
            )
        })
        .map_err(|e| StoreError::Backend(format!("cannot spawn the writer thread: {e}")))?;

    let restored_states: Arc<[crate::live::DeviceState]> = pipeline.device_states().into();
    let pipeline_task = tokio::spawn(pipeline_loop(
        pipeline,
        blueprint,
        ingest_rx,
        cmd_rx,
        recovery_rx,
        job_tx,
        rules_tx,
        Arc::clone(&clock),
        Arc::clone(&next_purge),
        holds,
    ));
    Ok(Engine {
        handle: EngineHandle {
            ingest: ingest_tx,
            commands: cmd_tx,
            live: live_tx,
            metrics,
            territory,
            clock,
            rules: rules_rx,
            ops: ops_rx,
            events: events_rx,
            restored_states,
            next_purge,
            observation_retention,
        },
        pipeline_task,
        writer_thread,
    })
}

#[allow(clippy::too_many_arguments)]
async fn pipeline_loop(
    mut p: Pipeline,
    mut blueprint: Blueprint,
    mut ingest: mpsc::Receiver<Envelope>,
    mut commands: mpsc::Receiver<Command>,
    mut recovery: mpsc::Receiver<Recovery>,
    jobs: mpsc::Sender<Job>,
    rules_tx: watch::Sender<Arc<RuleSet>>,
    clock: Arc<dyn Clock>,
    next_purge: Arc<std::sync::atomic::AtomicI64>,
    mut holds: std::collections::HashMap<IncidentId, Timestamp>,
) {
    let metrics = Arc::clone(&blueprint.metrics);
    let mut tick = tokio::time::interval(blueprint.cfg.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut commands_open = true;
    let mut generation = 0u64;
    let mut streams = Streams::default();
    loop {
        let mut job = Job {
            generation,
            out: Output::default(),
            acks: Vec::new(),
            replies: Vec::new(),
            event_replies: Vec::new(),
            events_snapshot: None,
            privacy: Vec::new(),
            ops_replies: Vec::new(),
            ops: None,
        };
        tokio::select! {
            biased;
            Some(rec) = recovery.recv() => {
                // A commit failed: everything processed since is built on state the store
                // does not have. Start again from what it has, as a restart would.
                let now = clock.now();
                match blueprint.build(rec.restored, now) {
                    Ok((rebuilt, h)) => {
                        p = rebuilt;
                        holds = h;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the stored state cannot be rebuilt; the engine stops");
                        return;
                    }
                }
                generation = rec.generation;
                job.generation = generation;
                // What any ordered stream delivers from now on came after what failed:
                // refuse it, so that the sender delivers again in order on a new stream.
                streams.refuse_all();
                job.ops = Some(Arc::new(p.ops_snapshot()));
                job.events_snapshot = Some(p.events().views(p.events_clock()).into());
            },
            cmd = commands.recv(), if commands_open => match cmd {
                Some(Command::Privacy { cmd, reply }) => {
                    let now = clock.now();
                    let plan = match &cmd {
                        PrivacyCommand::Purge => Some(purge_plan(&p, &blueprint.cfg, now)),
                        PrivacyCommand::SetHold(h) => {
                            holds.insert(h.incident, h.until);
                            None
                        }
                        PrivacyCommand::ReleaseHold { incident, .. } => {
                            holds.remove(incident);
                            None
                        }
                        PrivacyCommand::Erase { pseudonyms } => {
                            let held: Vec<IncidentId> = holds
                                .iter()
                                .filter(|(_, until)| now < **until)
                                .map(|(id, _)| *id)
                                .collect();
                            if p.erase_pseudonyms(pseudonyms, &held) {
                                job.ops = Some(Arc::new(p.ops_snapshot()));
                            }
                            None
                        }
                        PrivacyCommand::Export { .. } => None,
                    };
                    if let Some(plan) = &plan
                        && p.purge_crises(plan)
                    {
                        job.ops = Some(Arc::new(p.ops_snapshot()));
                    }
                    job.privacy.push(PrivacyJob { cmd, plan, now, reply: Some(reply) });
                }
                Some(c) => {
                    blueprint.follow(&c);
                    handle_command(&mut p, c, &clock, &rules_tx, &mut job);
                }
                None => commands_open = false,
            },
            env = ingest.recv() => match env {
                Some(env) => {
                    if let Some(env) = streams.admit(env, &metrics) {
                        process(&mut p, env, &mut job);
                    }
                    // Fold whatever else is already queued into the same batch.
                    while job.acks.len() < blueprint.cfg.batch_max {
                        match ingest.try_recv() {
                            Ok(env) => {
                                if let Some(env) = streams.admit(env, &metrics) {
                                    process(&mut p, env, &mut job);
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    metrics.ingest_queue_depth.set(ingest.len() as i64);
                }
                // Every handle is gone and the queue is drained.
                None => break,
            },
            _ = tick.tick() => {
                let now = clock.now();
                p.tick(now, &mut job.out);
                let due = next_purge.load(std::sync::atomic::Ordering::Relaxed);
                if let Some(every) = blueprint.cfg.purge_every
                    && now.0 >= due {
                        next_purge.store(now.plus(every).0, std::sync::atomic::Ordering::Relaxed);
                        let plan = purge_plan(&p, &blueprint.cfg, now);
                        if p.purge_crises(&plan) {
                            job.ops = Some(Arc::new(p.ops_snapshot()));
                        }
                        job.privacy.push(PrivacyJob {
                            cmd: PrivacyCommand::Purge,
                            plan: Some(plan),
                            now,
                            reply: None,
                        });
                    }
            }
        }
        if !job.out.batch.units.is_empty()
            || !job.out.batch.crises.is_empty()
            || !job.out.batch.situations.is_empty()
            || !job.out.batch.quarantine.is_empty()
            || !job.out.batch.notes.is_empty()
            || !job.out.batch.shelving.is_empty()
        {
            job.ops = Some(Arc::new(p.ops_snapshot()));
        }
        if !Arc::ptr_eq(p.rules(), &rules_tx.borrow()) {
            rules_tx.send_replace(Arc::clone(p.rules()));
        }
        if !job.out.events.is_empty() {
            job.events_snapshot = Some(p.events().views(p.events_clock()).into());
        }
        if job.out.is_empty()
            && job.acks.is_empty()
            && job.replies.is_empty()
            && job.ops_replies.is_empty()
            && job.event_replies.is_empty()
            && job.privacy.is_empty()
            && job.ops.is_none()
            && job.events_snapshot.is_none()
        {
            continue;
        }
        if jobs.send(job).await.is_err() {
            tracing::error!("store writer stopped; pipeline stops");
            return;
        }
    }
}

fn purge_plan(p: &Pipeline, cfg: &EngineConfig, now: Timestamp) -> PurgePlan {
    let mut plan = PurgePlan::new(
        p.territory(),
        &cfg.privacy,
        cfg.retention,
        Arc::clone(&cfg.staff_roles),
        now,
    );
    plan.live_epochs = cfg.pseudonymiser.as_ref().map(|k| k.epochs().collect());
    plan
}

fn process(p: &mut Pipeline, env: Envelope, job: &mut Job) {
    let transport = crate::trust::Transport {
        device_hint: env.device_hint.as_deref(),
        authenticated: env.authenticated,
    };
    let ingested = p.ingest_from(
        env.source,
        env.format,
        transport,
        &env.payload,
        env.received,
        &mut job.out,
    );
    if let Some(ack) = env.ack {
        job.acks.push((ack, ingested));
    }
}

fn handle_command(
    p: &mut Pipeline,
    cmd: Command,
    clock: &Arc<dyn Clock>,
    rules_tx: &watch::Sender<Arc<RuleSet>>,
    job: &mut Job,
) {
    match cmd {
        Command::Act {
            id,
            action,
            actor,
            reply,
        } => {
            let r = p.act(id, &action, &actor, clock.now(), &mut job.out);
            job.replies.push((reply, r));
        }
        Command::ReplaceRules(rules, procedures) => {
            tracing::info!(rules = rules.len(), "rules replaced");
            p.replace_rules(Arc::clone(&rules));
            p.replace_procedures(procedures);
            let _ = rules_tx.send(Arc::clone(p.rules()));
        }
        Command::DeclareEvent { event, reply } => {
            let r = p.declare_event(*event, false, clock.now(), &mut job.out);
            job.event_replies.push((reply, r));
        }
        Command::CancelEvent { id, actor, reply } => {
            let r = p.cancel_event(&id, &actor, clock.now(), &mut job.out);
            job.event_replies.push((reply, r));
        }
        Command::Security(signal) => {
            p.on_security_signal(&signal, clock.now(), &mut job.out);
        }
        Command::Identities(sealed) => {
            let seen = clock.now();
            job.out.batch.identities.extend(
                sealed
                    .into_iter()
                    .map(|sealed| crate::store::StoredIdentity { sealed, seen }),
            );
        }
        Command::Privacy { .. } => {
            // Handled by the pipeline loop, which knows the configuration.
        }
        Command::DeviceKeys(keys) => {
            tracing::info!(devices = keys.len(), "device signing keys replaced");
            p.set_device_keys(keys);
        }
        Command::ReplaceOperations(units, escalation) => {
            tracing::info!(units = units.len(), "units and escalation delays replaced");
            p.replace_operations(units, escalation, clock.now(), &mut job.out);
        }
        Command::Ops { cmd, actor, reply } => {
            let now = clock.now();
            let out = &mut job.out;
            let r = match cmd {
                OpsCommand::UnitStatus { unit, status } => p
                    .set_unit_status(&unit, status, now, out)
                    .map(OpsOutcome::Unit)
                    .map_err(ActError::from),
                OpsCommand::OpenCrisis(req) => p
                    .open_crisis(req, &actor, now, out)
                    .map(OpsOutcome::Crisis)
                    .map_err(ActError::from),
                OpsCommand::Crisis { id, cmd } => p
                    .crisis_act(id, &cmd, &actor, now, out)
                    .map(OpsOutcome::Crisis)
                    .map_err(ActError::from),
                OpsCommand::Quarantine {
                    device,
                    quarantined,
                    reason,
                } => {
                    let who = match &actor {
                        Actor::User(u) => u.to_string(),
                        other => other.to_string(),
                    };
                    let r = if quarantined {
                        p.quarantine(&device, &who, &reason, now, out)
                    } else {
                        p.release(&device, &who, &reason, now, out)
                    };
                    r.map(OpsOutcome::Quarantine).map_err(ActError::from)
                }
                OpsCommand::Situation { id, action, only } => p
                    .act_situation(id, &action, &only, &actor, now, out)
                    .map(OpsOutcome::Situation)
                    .map_err(ActError::from),
                OpsCommand::SplitSituation { id, incident } => p
                    .split_situation(id, incident, &actor, now, out)
                    .map(OpsOutcome::Situation)
                    .map_err(ActError::from),
                OpsCommand::MergeSituations { into, from } => p
                    .merge_situations(into, from, &actor, now, out)
                    .map(OpsOutcome::Situation)
                    .map_err(ActError::from),
                OpsCommand::WriteNote { communes, text } => p
                    .write_note(&user_name(&actor), communes, text, now, out)
                    .map(OpsOutcome::Note)
                    .map_err(ActError::from),
                OpsCommand::ReadNote(id) => p
                    .read_note(id, &user_name(&actor), now, out)
                    .map(OpsOutcome::Note)
                    .map_err(ActError::from),
                OpsCommand::Shelve {
                    incident,
                    reason,
                    duration,
                } => p
                    .shelve(incident, &actor.to_string(), reason, duration, now, out)
                    .map(OpsOutcome::Shelf)
                    .map_err(ActError::from),
                OpsCommand::Unshelve { incident, reason } => p
                    .unshelve(incident, &actor.to_string(), reason, now, out)
                    .map(OpsOutcome::Shelf)
                    .map_err(ActError::from),
            };
            job.ops_replies.push((reply, r));
        }
    }
}

/// The account name of a user actor (the actor's text otherwise).
fn user_name(actor: &Actor) -> String {
    match actor {
        Actor::User(u) => u.to_string(),
        other => other.to_string(),
    }
}

/// Most jobs the writer folds into one commit.
const MAX_JOBS_PER_COMMIT: usize = 256;

/// Whether commits succeed, logged once per change of state (a failing disk would
/// otherwise write a line per commit).
struct StoreHealth {
    failing: Option<Failing>,
}

struct Failing {
    since: Instant,
    failed_commits: u64,
    last_error: String,
}

impl StoreHealth {
    fn failed(&mut self, metrics: &Metrics, error: &str, rows: usize) {
        metrics.store_errors.inc();
        metrics.store_writable.set(0);
        match &mut self.failing {
            None => {
                tracing::error!(
                    error,
                    rows,
                    "commit failed: not storing; senders are not acknowledged and the engine \
                     rebuilds its state from the store (logged again when the error changes \
                     or commits succeed)"
                );
                self.failing = Some(Failing {
                    since: Instant::now(),
                    failed_commits: 1,
                    last_error: error.to_string(),
                });
            }
            Some(f) => {
                f.failed_commits += 1;
                if f.last_error != error {
                    tracing::error!(
                        error,
                        failed_commits = f.failed_commits,
                        "commit failed with another error: still not storing"
                    );
                    f.last_error = error.to_string();
                }
            }
        }
    }

    fn committed(&mut self, metrics: &Metrics) {
        if let Some(f) = self.failing.take() {
            metrics.store_writable.set(1);
            tracing::warn!(
                failed_commits = f.failed_commits,
                after_s = f.since.elapsed().as_secs_f64(),
                last_error = %f.last_error,
                "commits succeed again: storing"
            );
        }
    }
}

/// Refuses what a job carries: it was not stored.
fn refuse(job: Job, msg: &str, metrics: &Metrics) {
    for (ack, _) in job.acks {
        metrics.store_refused.inc();
        ack.call(AckOutcome::Failed(msg.to_string()));
    }
    for (reply, _) in job.replies {
        let _ = reply.send(Err(ActError::Store(msg.to_string())));
    }
    for (reply, _) in job.ops_replies {
        let _ = reply.send(Err(ActError::Store(msg.to_string())));
    }
    for (reply, _) in job.event_replies {
        let _ = reply.send(Err(EventError::Store(msg.to_string())));
    }
    for p in job.privacy {
        if let Some(reply) = p.reply {
            let _ = reply.send(Err(PrivacyError::Store(msg.to_string())));
        }
    }
}

fn writer_loop(
    mut store: Box<dyn Store>,
    mut jobs: mpsc::Receiver<Job>,
    out: Outlets,
    metrics: Arc<Metrics>,
    audit: Option<(Arc<dyn beffroi_core::AuditSink>, Arc<Territory>)>,
    exports: Option<std::path::PathBuf>,
    clock: Arc<dyn Clock>,
) {
    let Outlets {
        live,
        ops,
        events,
        recovery,
    } = out;
    let mut generation = 0u64;
    let mut health = StoreHealth { failing: None };
    while let Some(first) = jobs.blocking_recv() {
        // Group commit: whatever queued up while the last commit was syncing goes into
        // this one, so the number of fsyncs does not grow with the message rate.
        let mut group = vec![first];
        while group.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let mut privacy = Vec::new();
        // Jobs built on top of a failed commit are refused whole, their privacy acts too:
        // their changes assume state the store does not have (a scheduled purge waits for
        // its next turn).
        let (current, stale): (Vec<Job>, Vec<Job>) =
            group.into_iter().partition(|j| j.generation == generation);
        let mut group = current;
        for j in stale {
            refuse(j, REFUSED_AFTER_FAILURE, &metrics);
        }
        let mut batch = WriteBatch::default();
        let mut snapshot = None;
        for j in &mut group {
            batch.observations.append(&mut j.out.batch.observations);
            batch.rejections.append(&mut j.out.batch.rejections);
            batch.incidents.append(&mut j.out.batch.incidents);
            batch.units.append(&mut j.out.batch.units);
            batch.crises.append(&mut j.out.batch.crises);
            batch.situations.append(&mut j.out.batch.situations);
            batch.events.append(&mut j.out.batch.events);
            batch.quarantine.append(&mut j.out.batch.quarantine);
            privacy.append(&mut j.privacy);
            batch.identities.append(&mut j.out.batch.identities);
            batch.replay_windows.append(&mut j.out.batch.replay_windows);
            batch.watermarks.append(&mut j.out.batch.watermarks);
            if let Some(s) = j.ops.take() {
                snapshot = Some(s);
            }
        }
        let started = Instant::now();
        let result = if batch.is_empty() {
            Ok(())
        } else {
            store.write(&batch)
        };
        match result {
            Ok(()) => {
                if !batch.is_empty() {
                    metrics.store_batches.inc();
                    metrics.store_rows.inc_by(batch.len() as u64);
                    metrics
                        .store_commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    health.committed(&metrics);
                }
                // The API reads units and crises from the snapshot: publish it before the
                // replies, so that a client reads its own writes.
                if let Some(s) = snapshot {
                    ops.send_replace(s);
                }
                if let Some((audit, territory)) = &audit {
                    audit_policy_acts(audit.as_ref(), territory, &batch.quarantine);
                }
                for job in group {
                    for (reply, r) in job.ops_replies {
                        let _ = reply.send(r);
                    }
                    for (ack, ingested) in job.acks {
                        ack.call(AckOutcome::Stored {
                            accepted: ingested.accepted,
                            rejected: ingested.rejected,
                        });
                    }
                    for (reply, r) in job.replies {
                        let _ = reply.send(r.map_err(ActError::from));
                    }
                    for d in job.out.devices {
                        let _ = live.send(LiveEvent::Device(d));
                    }
                    if let Some(snapshot) = job.events_snapshot {
                        events.send_replace(snapshot);
                    }
                    for (reply, r) in job.event_replies {
                        let _ = reply.send(r);
                    }
                    for e in job.out.events {
                        let _ = live.send(LiveEvent::Event(Arc::new(e)));
                    }
                }
                for change in batch.incidents {
                    let _ = live.send(LiveEvent::Incident(Arc::new(change)));
                }
                for unit in batch.units {
                    let _ = live.send(LiveEvent::Unit(Arc::new(unit)));
                }
                for change in batch.crises {
                    let _ = live.send(LiveEvent::Crisis(change.crisis));
                }
                for change in batch.situations {
                    let _ = live.send(LiveEvent::Situation(Arc::new(change)));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                health.failed(&metrics, &msg, batch.len());
                // The pipeline is ahead of the store: rebuild it from the store, and refuse
                // every job it built meanwhile. The recovery is on its way before the
                // senders hear of the failure, so what they send again is processed on the
                // rebuilt state.
                generation += 1;
                metrics.store_recoveries.inc();
                // The group's privacy acts (purge, hold, erasure) stand on their own: they
                // run now, so that the state read back includes what they did.
                for job in privacy.drain(..) {
                    run_privacy_job(store.as_mut(), job, exports.as_deref(), &metrics, &audit);
                }
                let Some(restored) =
                    restore_until_readable(store.as_mut(), clock.as_ref(), &recovery)
                else {
                    return;
                };
                let sent = recovery.blocking_send(Recovery {
                    generation,
                    restored,
                });
                for job in group {
                    refuse(job, &msg, &metrics);
                }
                if sent.is_err() {
                    return;
                }
            }
        }
        for job in privacy {
            run_privacy_job(store.as_mut(), job, exports.as_deref(), &metrics, &audit);
        }
    }
}

/// Runs a privacy act and answers it (a scheduled purge that fails is logged).
fn run_privacy_job(
    store: &mut dyn Store,
    job: PrivacyJob,
    exports: Option<&std::path::Path>,
    metrics: &Metrics,
    audit: &Option<(Arc<dyn beffroi_core::AuditSink>, Arc<Territory>)>,
) {
    let audit = audit.as_ref().map(|(a, _)| a.as_ref());
    let r = run_privacy(store, &job, exports, metrics, audit);
    if let Some(reply) = job.reply {
        let _ = reply.send(r);
    } else if let Err(e) = r {
        tracing::warn!(error = %e, "retention purge failed");
    }
}

/// Reads the state to rebuild from; while the store cannot even be read, waits and tries
/// again (the pipeline waits too: its jobs queue up behind this thread). `None` when the
/// pipeline is gone meanwhile (shutdown).
fn restore_until_readable(
    store: &mut dyn Store,
    clock: &dyn Clock,
    recovery: &mpsc::Sender<Recovery>,
) -> Option<Restored> {
    let mut logged = false;
    loop {
        if recovery.is_closed() {
            return None;
        }
        match read_state(store, clock.now()) {
            Ok(r) => return Some(r),
            Err(e) => {
                if !logged {
                    tracing::error!(error = %e, "the store cannot be read back after a failed commit; retrying every second");
                    logged = true;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// Carries out one privacy act on the writer thread; audits purges (`privacy.purge`, actor
/// `system`; holds and erasures are audited by the API route that asked for them).
fn run_privacy(
    store: &mut dyn Store,
    job: &PrivacyJob,
    exports: Option<&std::path::Path>,
    metrics: &Metrics,
    audit: Option<&dyn beffroi_core::AuditSink>,
) -> Result<PrivacyOutcome, PrivacyError> {
    let store_err = |e: StoreError| PrivacyError::Store(e.to_string());
    match &job.cmd {
        PrivacyCommand::Purge => {
            let Some(plan) = &job.plan else {
                return Err(PrivacyError::Store("purge without a plan".into()));
            };
            let mut report = store.purge(plan).map_err(store_err)?;
            if let Some(dir) = exports {
                let n = crate::retention::purge_exports(dir, plan.exports);
                report.remove(
                    "exports",
                    beffroi_core::territory::DataCategory::Personal,
                    n,
                );
            }
            metrics.purged(&report);
            let detail = report.audit_detail(plan);
            if let Err(e) = store.record_purge(plan.now, &detail.to_string()) {
                tracing::warn!(error = %e, "purge run not recorded");
            }
            if let Some(a) = audit
                && (!report.is_empty() || job.reply.is_some())
            {
                a.record(beffroi_core::AuditRecord {
                    at_ms: wall_ms(),
                    actor: "system".into(),
                    action: "privacy.purge".into(),
                    target: None,
                    outcome: beffroi_core::AuditOutcome::Ok,
                    detail: SafeText::redacting(&detail.to_string()),
                });
            }
            if !report.is_empty() {
                tracing::info!(
                    removed = report.removed.values().sum::<u64>(),
                    redacted = report.redacted.values().sum::<u64>(),
                    "retention purge"
                );
            }
            Ok(PrivacyOutcome::Purged(report))
        }
        PrivacyCommand::SetHold(h) => store
            .set_hold(h)
            .map(|()| PrivacyOutcome::HoldSet)
            .map_err(store_err),
        PrivacyCommand::ReleaseHold { incident, by } => store
            .release_hold(*incident, by, job.now)
            .map(PrivacyOutcome::HoldReleased)
            .map_err(store_err),
        PrivacyCommand::Erase { pseudonyms } => store
            .erase_subject(pseudonyms, job.now)
            .map(PrivacyOutcome::Erased)
            .map_err(store_err),
        PrivacyCommand::Export { json } => {
            let dir = exports.ok_or(PrivacyError::NoExportDir)?;
            crate::retention::write_export(dir, job.now, json)
                .map(PrivacyOutcome::Exported)
                .map_err(|e| PrivacyError::Export(e.to_string()))
        }
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Processing time of the wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that runs `speed` times faster than the wall clock from a given origin: the
/// demo plays hours of scenario in minutes.
pub struct ScaledClock {
    origin: Timestamp,
    wall_origin: Instant,
    speed: f64,
}

impl ScaledClock {
    pub fn new(origin: Timestamp, speed: f64) -> Self {
        ScaledClock {
            origin,
            wall_origin: Instant::now(),
            speed: speed.max(0.001),
        }
    }
    pub fn speed(&self) -> f64 {
        self.speed
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.wall_origin.elapsed().as_secs_f64() * self.speed * 1000.0;
        self.origin.plus(beffroi_core::Duration(elapsed as i64))
    }
}

impl From<crate::pipeline::SituationActError> for ActError {
    fn from(e: crate::pipeline::SituationActError) -> Self {
        match e {
            crate::pipeline::SituationActError::Situation(e) => ActError::Situation(e),
            crate::pipeline::SituationActError::Transition(e) => ActError::Transition(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::QuarantineAct;
    use beffroi_core::territory::fixture;
    use beffroi_core::{AuditRecord, AuditSink};

    #[derive(Default)]
    struct Recorded(std::sync::Mutex<Vec<AuditRecord>>);

    impl AuditSink for Recorded {
        fn record(&self, r: AuditRecord) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        }
    }

    #[test]
    fn only_the_policys_quarantine_acts_are_audited_by_the_engine() {
        let t = fixture::small();
        let g1 = t.device_id("g1").expect("fixture");
        let act = |actor: &str, quarantined| QuarantineAct {
            device: g1,
            quarantined,
            actor: actor.into(),
            reason: "jump of 5 m in 1 min".into(),
            at: Timestamp(42),
        };
        let sink = Recorded::default();
        audit_policy_acts(
            &sink,
            &t,
            &[
                act("user:ana", true),
                act("policy:impossible_jump", true),
                act("user:ana", false),
            ],
        );
        let got = sink.0.into_inner().unwrap_or_else(|p| p.into_inner());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].actor, "policy:impossible_jump");
        assert_eq!(got[0].action, "device.quarantine");
        assert_eq!(got[0].target.as_deref(), Some("g1"));
        assert!(got[0].detail.contains("jump of 5 m"), "{}", got[0].detail);
    }
}
