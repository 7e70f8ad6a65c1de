//! The writer thread: one commit per group of jobs, then acknowledgements, replies and
//! live events; on failure, everything refused and the pipeline rebuilt from the store.

use super::*;

pub(super) struct Job {
    /// Jobs of a generation before the writer's were built on a failed commit: refused.
    pub(super) generation: u64,
    pub(super) out: Output,
    pub(super) acks: Vec<(Ack, Ingested)>,
    /// Replies owed to command callers, in the order the commands ran.
    pub(super) replies: Vec<Pending>,
    /// Every event's view after this job, for readers (published after the commit).
    pub(super) events_snapshot: Option<Arc<[EventView]>>,
    pub(super) privacy: Vec<PrivacyJob>,
    /// The operations state after this job, when it changed.
    pub(super) ops: Option<Arc<OpsSnapshot>>,
}

/// A privacy act for the writer thread: a purge (with its plan), a hold, an erasure.
pub(super) struct PrivacyJob {
    pub(super) cmd: PrivacyCommand,
    pub(super) plan: Option<PurgePlan>,
    pub(super) now: Timestamp,
    /// `None` for the scheduled purge.
    pub(super) reply: Option<oneshot::Sender<Result<PrivacyOutcome, PrivacyError>>>,
}

/// Where the writer thread publishes what it committed.
pub(super) struct Outlets {
    pub(super) live: broadcast::Sender<LiveEvent>,
    pub(super) ops: watch::Sender<Arc<OpsSnapshot>>,
    pub(super) events: watch::Sender<Arc<[EventView]>>,
    pub(super) recovery: mpsc::Sender<Recovery>,
}

/// Most jobs the writer folds into one commit.
pub(super) const MAX_JOBS_PER_COMMIT: usize = 256;

/// Bounds of one commit: how long the writer waits for more work after the first job, and
/// how many envelopes end the wait early.
#[derive(Clone, Copy, Debug)]
pub(super) struct CommitWindow {
    pub(super) delay: std::time::Duration,
    pub(super) envelopes: usize,
}

/// The pipeline's jobs as the writer takes them: a commit's worth at a time.
pub(super) struct JobQueue {
    pub(super) rx: mpsc::Receiver<Job>,
    pub(super) window: CommitWindow,
}

impl JobQueue {
    /// The jobs of the next commit: the first to arrive, whatever is queued, and whatever
    /// arrives until the window's delay has passed since the first or it holds `envelopes`
    /// envelopes (or [`MAX_JOBS_PER_COMMIT`] jobs). A zero delay takes only what is
    /// already queued. `None` once the pipeline is gone and the queue drained.
    fn next_group(&mut self) -> Option<Vec<Job>> {
        let first = self.rx.blocking_recv()?;
        let until = std::time::Instant::now() + self.window.delay;
        let mut envelopes = first.acks.len();
        let mut group = vec![first];
        loop {
            while group.len() < MAX_JOBS_PER_COMMIT && envelopes < self.window.envelopes {
                match self.rx.try_recv() {
                    Ok(j) => {
                        envelopes += j.acks.len();
                        group.push(j);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    // The pipeline has stopped: nothing more will come, commit now.
                    Err(mpsc::error::TryRecvError::Disconnected) => return Some(group),
                }
            }
            let now = std::time::Instant::now();
            if group.len() >= MAX_JOBS_PER_COMMIT
                || envelopes >= self.window.envelopes
                || now >= until
            {
                return Some(group);
            }
            // The writer is its own thread: waiting here holds up nothing but this
            // commit, and the pipeline keeps evaluating into the bounded queue meanwhile.
            std::thread::sleep((until - now).min(WINDOW_POLL));
        }
    }
}

/// How often a commit window looks for more jobs before its delay is over.
const WINDOW_POLL: std::time::Duration = std::time::Duration::from_micros(500);

/// Whether commits succeed, logged once per change of state (a failing disk would
/// otherwise write a line per commit).
pub(super) struct StoreHealth {
    pub(super) failing: Option<Failing>,
}

pub(super) struct Failing {
    pub(super) since: Instant,
    pub(super) failed_commits: u64,
    pub(super) last_error: String,
}

impl StoreHealth {
    pub(super) fn failed(&mut self, metrics: &Metrics, error: &str, rows: usize) {
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

    pub(super) fn committed(&mut self, metrics: &Metrics) {
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
pub(super) fn refuse(job: Job, msg: &str, metrics: &Metrics) {
    for (ack, _) in job.acks {
        metrics.store_refused.inc();
        ack.call(AckOutcome::Failed(msg.to_string()));
    }
    for reply in job.replies {
        reply.failed(msg);
    }
    for p in job.privacy {
        if let Some(reply) = p.reply {
            let _ = reply.send(Err(PrivacyError::Store(msg.to_string())));
        }
    }
}

pub(super) fn writer_loop(
    mut store: Box<dyn Store>,
    mut jobs: JobQueue,
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
    // Group commit: whatever queued up while the last commit was syncing, or arrives
    // within the commit window, goes into this one, so that the number of commits (and of
    // pages written) does not grow with the message rate.
    while let Some(group) = jobs.next_group() {
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
                    // Snapshots before the replies, so that a caller reads its own writes.
                    if let Some(snapshot) = job.events_snapshot {
                        events.send_replace(snapshot);
                    }
                    for reply in job.replies {
                        reply.committed();
                    }
                    for (ack, ingested) in job.acks {
                        ack.call(AckOutcome::Stored {
                            accepted: ingested.accepted,
                            rejected: ingested.rejected,
                        });
                    }
                    for d in job.out.devices {
                        let _ = live.send(LiveEvent::Device(d));
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
pub(super) fn run_privacy_job(
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
pub(super) fn restore_until_readable(
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
pub(super) fn run_privacy(
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

/// Audits the committed quarantine acts taken by a policy (`policy:<anomaly>`).
pub(super) fn audit_policy_acts(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A job carrying `envelopes` acknowledgements and nothing else.
    fn job(envelopes: usize) -> Job {
        Job {
            generation: 0,
            out: Output::default(),
            acks: (0..envelopes)
                .map(|_| {
                    (
                        Ack::new(|_| {}),
                        Ingested {
                            accepted: 1,
                            rejected: Vec::new(),
                        },
                    )
                })
                .collect(),
            replies: Vec::new(),
            events_snapshot: None,
            privacy: Vec::new(),
            ops: None,
        }
    }

    fn queue(delay: Duration, envelopes: usize) -> (mpsc::Sender<Job>, JobQueue) {
        let (tx, rx) = mpsc::channel(MAX_JOBS_PER_COMMIT);
        let window = CommitWindow { delay, envelopes };
        (tx, JobQueue { rx, window })
    }

    #[test]
    fn without_a_window_a_commit_takes_what_is_queued() {
        let (tx, mut q) = queue(Duration::ZERO, 2048);
        for n in [1, 2, 3] {
            tx.try_send(job(n)).expect("room");
        }
        let group = q.next_group().expect("jobs");
        assert_eq!(group.iter().map(|j| j.acks.len()).sum::<usize>(), 6);
        drop(tx);
        assert!(q.next_group().is_none(), "the pipeline is gone");
    }

    #[test]
    fn work_arriving_within_the_window_joins_the_commit() {
        let (tx, mut q) = queue(Duration::from_millis(300), 2048);
        tx.try_send(job(1)).expect("room");
        let late = std::thread::spawn(move || {
            tx.blocking_send(job(1)).expect("writer listening");
            tx
        });
        let group = q.next_group().expect("jobs");
        let _tx = late.join().expect("sender");
        assert_eq!(group.len(), 2, "the second job came within the window");
    }

    #[test]
    fn a_full_commit_does_not_wait_for_the_window_to_end() {
        // A window of an hour: a group that reaches the size bound is committed at once.
        let (tx, mut q) = queue(Duration::from_secs(3600), 4);
        for _ in 0..3 {
            tx.try_send(job(2)).expect("room");
        }
        let t0 = Instant::now();
        let group = q.next_group().expect("jobs");
        assert!(t0.elapsed() < Duration::from_secs(60), "it did not wait");
        assert_eq!(
            group.len(),
            2,
            "two jobs of two envelopes reach the bound of four"
        );
        // The pipeline stops: the last job is committed without waiting for the window.
        drop(tx);
        let t0 = Instant::now();
        let rest = q.next_group().expect("the third job");
        assert!(t0.elapsed() < Duration::from_secs(60), "it did not wait");
        assert_eq!(rest.len(), 1);
    }
}
