//! The pipeline on tokio.
//!
//! ```text
//!  sources ──(bounded mpsc, policy per source)──▶ pipeline task ──(bounded)──▶ writer thread
//!                                  commands ──▶      (Pipeline)                 store.write(batch)
//!                                  ticks    ──▶                                then acks, replies,
//!                                                                              live events
//! ```
//!
//! Overload policy, per source ([`crate::source::Overload`], applied by its
//! [`crate::source::SourcePort`]): MQTT and the simulator wait, so the broker holds messages
//! for our persistent session; HTTP refuses at once (→ 503) and the refusal is counted. The writer channel is bounded too: a slow disk slows the pipeline, which
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

mod clock;
mod commands;
mod task;
mod writer;

use clock::wall_ms;
pub use clock::{ScaledClock, SystemClock};
use commands::*;
use task::*;
use writer::*;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Capacity of the ingest queue, in envelopes.
    pub ingest_capacity: usize,
    /// Most envelopes folded into one write batch, and into one commit.
    pub batch_max: usize,
    /// How long the store writer waits, after the first work of a commit, for more to
    /// fold into it (ended early by `batch_max` envelopes). Fewer, larger commits cost
    /// less CPU and fewer pages written per message; every acknowledgement, reply and live
    /// event waits at most this long more. Zero: commit what is queued at once.
    pub commit_window: std::time::Duration,
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

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ingest_capacity: 8192,
            batch_max: 2048,
            commit_window: std::time::Duration::from_millis(2),
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

#[derive(Debug, thiserror::Error)]
#[error("the engine is shutting down")]
pub struct EngineClosed;

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

    /// Replaces the networks `source` (a partner's TAXII collection) flags as known bad;
    /// a connection to the broker from one of them raises a `cyber-known_bad_address`
    /// incident. An empty list forgets the source.
    pub async fn set_known_bad(
        &self,
        source: String,
        networks: Vec<beffroi_sentinel::KnownBad>,
    ) -> Result<(), EngineClosed> {
        self.commands
            .send(Command::KnownBad { source, networks })
            .await
            .map_err(|_| EngineClosed)
    }

    /// Applies an alert from outside (a CAP feed); returns its incident once the change is
    /// durable (`None`: an end of an alert that opened nothing here).
    pub async fn external_alert(
        &self,
        alert: crate::external::ExternalAlert,
    ) -> Result<Option<Incident>, ActError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::External {
                alert: Box::new(alert),
                reply,
            })
            .await
            .map_err(|_| ActError::Closed)?;
        rx.await.map_err(|_| ActError::Closed)?
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

    /// The ingest queue's end for one source: its name stamped, its overload policy
    /// applied, its counters resolved, its security signals to the command queue.
    pub fn source_port(&self, config: crate::source::SourceConfig) -> crate::source::SourcePort {
        let engine = self.clone();
        crate::source::SourcePort::new(
            config,
            self.ingest.clone(),
            Arc::clone(&self.metrics),
            Arc::clone(&self.clock),
            Arc::clone(&self.territory),
        )
        .with_signals(crate::source::SignalSink(Arc::new(move |signal| {
            engine.try_security_signal(signal)
        })))
    }

    /// Runs a source component on its port until `shutdown` (a stop is logged).
    pub async fn run_source(
        &self,
        source: Box<dyn crate::source::IngestSource>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let config = source.config();
        let port = self.source_port(config);
        if let Err(e) = source.run(port, shutdown).await {
            tracing::error!(source = config.source.as_str(), error = %e, "source stopped");
        }
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
                JobQueue {
                    rx: job_rx,
                    window: CommitWindow {
                        delay: cfg.commit_window,
                        envelopes: cfg.batch_max,
                    },
                },
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
