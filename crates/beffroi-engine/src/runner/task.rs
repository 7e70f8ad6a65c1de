//! The pipeline task: builds the [`Pipeline`] from the deployment and the stored state
//! ([`Blueprint`]), folds envelopes, commands and ticks into jobs for the writer, and
//! rebuilds itself from the store after a failed commit.

use super::*;

/// What the engine's state is rebuilt from: read from the store at start and after a
/// failed commit (the store is the truth: [ADR 0019](../../../../docs/adr/0019-bounded-wal-and-the-store-as-truth.md)).
pub(super) type Restored = StoredState;

pub(super) fn read_state(store: &mut dyn Store, now: Timestamp) -> Result<Restored, StoreError> {
    StoredState::read(store, now)
}

/// What a pipeline is built from besides the stored state: the deployment as loaded at
/// start, kept current by the hot reloads the pipeline task receives.
pub(super) struct Blueprint {
    pub(super) territory: Arc<Territory>,
    pub(super) rules: Arc<RuleSet>,
    pub(super) procedures: Vec<Procedure>,
    pub(super) file_events: Vec<beffroi_rules::EventRules>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) cfg: EngineConfig,
}

impl Blueprint {
    /// A pipeline in the state the store holds: what a restart would rebuild. Events
    /// stored by the API (declarations and cancellations) take precedence over a file
    /// event with the same id.
    pub(super) fn build(
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
    pub(super) fn follow(&mut self, c: &Command) {
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
pub(super) struct Recovery {
    pub(super) generation: u64,
    pub(super) restored: Restored,
}

/// Which ordered streams (MQTT connections) are refused: every stream opened before the
/// last recovery. Stream ids only grow ([`crate::envelope::new_stream`]), so one number
/// says it, however many streams there were.
#[derive(Default)]
pub(super) struct Streams {
    /// Streams with an id up to this one are refused.
    pub(super) refused_through: u64,
}

impl Streams {
    /// The envelope, unless its stream is refused (then it is refused and counted).
    pub(super) fn admit(&self, env: Envelope, metrics: &Metrics) -> Option<Envelope> {
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
    pub(super) fn refuse_all(&mut self) {
        self.refused_through = crate::envelope::last_stream();
    }
}

/// Why an envelope is refused after a failed commit (the sender retries or the broker
/// redelivers).
pub(super) const REFUSED_AFTER_FAILURE: &str =
    "not stored: the store failed a commit and the engine rebuilt its state from it; send again";

#[allow(clippy::too_many_arguments)]
pub(super) async fn pipeline_loop(
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
            events_snapshot: None,
            privacy: Vec::new(),
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

pub(super) fn purge_plan(p: &Pipeline, cfg: &EngineConfig, now: Timestamp) -> PurgePlan {
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

pub(super) fn process(p: &mut Pipeline, env: Envelope, job: &mut Job) {
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
