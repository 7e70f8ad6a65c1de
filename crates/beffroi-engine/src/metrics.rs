//! Prometheus instrumentation of the pipeline.
//!
//! Naming: `beffroi_<component>_<what>_<unit>`; labels have bounded cardinality (source,
//! reason, category, result — never a device id). Hot-path counters are resolved once and
//! kept, so counting costs one atomic add.

use std::sync::{Arc, Mutex};

use beffroi_wire::RejectReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::envelope::Source;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabel {
    pub source: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckpointLabel {
    /// `passive` (beside the writer), `writer` (between two commits), `restart` (waiting
    /// briefly for readers).
    pub mode: &'static str,
    /// `complete` (every frame copied back), `partial` (a reader held frames), `busy`
    /// (the writer found the background pass running and skipped, or SQLite could not
    /// start the checkpoint), `error`.
    pub outcome: &'static str,
}

/// The write-ahead log of the embedded store, filled by the store adapter (its checkpoint
/// policy is described in `beffroi_store`).
#[derive(Clone, Debug)]
pub struct WalMetrics {
    /// Size of the WAL file on disk, in bytes.
    pub bytes: Gauge,
    /// Frames (pages) in the WAL after the last commit.
    pub frames: Gauge,
    /// Checkpoints run, per mode and outcome.
    pub checkpoints: Family<CheckpointLabel, Counter>,
    /// Duration of the last checkpoint, in seconds.
    pub last_checkpoint_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// 1 when the last checkpoint copied every frame back, 0 otherwise.
    pub last_checkpoint_complete: Gauge,
    /// Time spent in checkpoints.
    pub checkpoint_seconds: Histogram,
    /// Times the WAL restarted from its beginning (after a complete checkpoint).
    pub restarts: Counter,
}

impl Default for WalMetrics {
    fn default() -> Self {
        WalMetrics {
            bytes: Gauge::default(),
            frames: Gauge::default(),
            checkpoints: Family::default(),
            last_checkpoint_seconds: Gauge::default(),
            last_checkpoint_complete: Gauge::default(),
            checkpoint_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            restarts: Counter::default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PurgeLabel {
    pub store: &'static str,
    pub category: &'static str,
    pub action: &'static str,
}

/// One source's counters (`beffroi_ingest_messages`, `…_observations_accepted`,
/// `…_observations_rejected` with its label), resolved once.
#[derive(Debug)]
pub struct SourceMetrics {
    /// Envelopes received.
    pub messages: Counter,
    /// Observations validated and handed to the rules.
    pub accepted: Counter,
    /// Inputs refused, indexed by `RejectReason::index`.
    rejected: Vec<Counter>,
}

impl SourceMetrics {
    pub fn rejected(&self, reason: RejectReason) -> &Counter {
        &self.rejected[reason.index()]
    }
}

pub struct Metrics {
    /// Rows removed or redacted by the retention purge, per store, category and action.
    pub privacy_purged: Family<PurgeLabel, Counter>,
    registry: Mutex<Registry>,
    /// Envelopes received, per source.
    messages_f: Family<SourceLabel, Counter>,
    /// Observations accepted, per source.
    accepted_f: Family<SourceLabel, Counter>,
    /// Observations or messages rejected, per source × reason.
    rejected_f: Family<RejectLabel, Counter>,
    /// Each source's counters, resolved once on the source's first use.
    sources: std::sync::RwLock<Vec<(Source, Arc<SourceMetrics>)>>,
    pub incidents_opened: Family<CategoryLabel, Counter>,
    pub incident_changes: Counter,
    /// Situations opened (an incident that joined an existing one does not count).
    pub situations_opened: Counter,
    pub alarms: Counter,
    pub store_batches: Counter,
    pub store_rows: Counter,
    pub store_errors: Counter,
    pub store_commit_seconds: Histogram,
    /// 1 while commits succeed, 0 from a failed commit until the next successful one.
    pub store_writable: Gauge,
    /// Times the engine rebuilt its state from the store after a failed commit.
    pub store_recoveries: Counter,
    /// Envelopes refused (not acknowledged) because they were processed on top of a
    /// failed commit, or were queued when the engine rebuilt its state.
    pub store_refused: Counter,
    /// The store's write-ahead log.
    pub wal: WalMetrics,
    /// Observations already evaluated (same device, field and time): stored, not evaluated
    /// again.
    pub observations_duplicate: Counter,
    /// Observations older than the last evaluated one of their device and field: stored,
    /// not evaluated (the rules see each series in time order).
    pub observations_late: Counter,
    pub ingest_queue_depth: Gauge,
    pub live_lagged: Counter,
    pub rules_loaded: Gauge,
    pub rule_reloads: Family<ResultLabel, Counter>,
    pub log_suppressed: Counter,
    pub observations_purged: Counter,
    /// Security signals raised by the edges, per kind.
    pub security_signals: Family<KindLabel, Counter>,
    /// Security signals dropped because the engine's command queue was full.
    pub security_signals_dropped: Counter,
    /// Networks partners' indicators flag as known bad, all sources together.
    pub known_bad_networks: Gauge,
    /// Observations accepted, per trust level.
    pub observations_by_trust: Family<TrustLabel, Counter>,
    /// The same counters resolved once, indexed by `Trust as usize` (hot path).
    trust_counters: Vec<Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrustLabel {
    pub trust: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("beffroi");
        let messages_f = Family::<SourceLabel, Counter>::default();
        let accepted_f = Family::<SourceLabel, Counter>::default();
        let rejected_f = Family::<RejectLabel, Counter>::default();
        let m = Metrics {
            messages_f: messages_f.clone(),
            accepted_f: accepted_f.clone(),
            rejected_f: rejected_f.clone(),
            sources: std::sync::RwLock::new(Vec::new()),
            incidents_opened: Family::default(),
            incident_changes: Counter::default(),
            situations_opened: Counter::default(),
            alarms: Counter::default(),
            store_batches: Counter::default(),
            store_rows: Counter::default(),
            store_errors: Counter::default(),
            store_commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            store_writable: Gauge::default(),
            store_recoveries: Counter::default(),
            store_refused: Counter::default(),
            wal: WalMetrics::default(),
            observations_duplicate: Counter::default(),
            observations_late: Counter::default(),
            ingest_queue_depth: Gauge::default(),
            live_lagged: Counter::default(),
            rules_loaded: Gauge::default(),
            rule_reloads: Family::default(),
            log_suppressed: Counter::default(),
            observations_purged: Counter::default(),
            privacy_purged: Family::default(),
            security_signals: Family::default(),
            observations_by_trust: Family::default(),
            trust_counters: Vec::new(),
            security_signals_dropped: Counter::default(),
            known_bad_networks: Gauge::default(),
            registry: Mutex::new(Registry::default()),
        };
        r.register(
            "ingest_messages",
            "Payloads received, per source",
            messages_f,
        );
        r.register(
            "observations_accepted",
            "Observations validated and handed to the rules, per source",
            accepted_f,
        );
        r.register(
            "observations_rejected",
            "Inputs refused, per source and reason (each is stored in the rejections table)",
            rejected_f,
        );
        r.register(
            "incidents_opened",
            "Incidents opened, per category",
            m.incidents_opened.clone(),
        );
        r.register(
            "incident_changes",
            "Incident state changes committed",
            m.incident_changes.clone(),
        );
        r.register(
            "situations_opened",
            "Situations opened: what reaches operators after grouping",
            m.situations_opened.clone(),
        );
        r.register("alarms", "Alarms emitted by rules", m.alarms.clone());
        r.register(
            "store_batches",
            "Write batches committed",
            m.store_batches.clone(),
        );
        r.register("store_rows", "Rows committed", m.store_rows.clone());
        r.register(
            "store_errors",
            "Failed commits (senders are not acknowledged)",
            m.store_errors.clone(),
        );
        r.register(
            "store_commit_seconds",
            "Time to commit one batch",
            m.store_commit_seconds.clone(),
        );
        m.store_writable.set(1);
        r.register(
            "store_writable",
            "1 while commits succeed; 0 from a failed commit until the next successful one",
            m.store_writable.clone(),
        );
        r.register(
            "store_recoveries",
            "Times the engine rebuilt its state from the store after a failed commit",
            m.store_recoveries.clone(),
        );
        r.register(
            "store_refused_envelopes",
            "Envelopes not acknowledged because they were processed on top of a failed commit",
            m.store_refused.clone(),
        );
        r.register(
            "store_wal_bytes",
            "Size of the store's write-ahead log file",
            m.wal.bytes.clone(),
        );
        r.register(
            "store_wal_frames",
            "Pages in the store's write-ahead log after the last commit",
            m.wal.frames.clone(),
        );
        r.register(
            "store_wal_checkpoints",
            "WAL checkpoints, per mode and outcome",
            m.wal.checkpoints.clone(),
        );
        r.register(
            "store_wal_last_checkpoint_seconds",
            "Duration of the last WAL checkpoint",
            m.wal.last_checkpoint_seconds.clone(),
        );
        r.register(
            "store_wal_last_checkpoint_complete",
            "1 when the last WAL checkpoint copied every frame back",
            m.wal.last_checkpoint_complete.clone(),
        );
        r.register(
            "store_wal_checkpoint_seconds",
            "Time spent in WAL checkpoints",
            m.wal.checkpoint_seconds.clone(),
        );
        r.register(
            "store_wal_restarts",
            "Times the WAL restarted from its beginning",
            m.wal.restarts.clone(),
        );
        r.register(
            "observations_duplicate",
            "Observations already evaluated (same device, field and time): stored, not evaluated again",
            m.observations_duplicate.clone(),
        );
        r.register(
            "observations_late",
            "Observations older than the last evaluated one of their series: stored, not evaluated",
            m.observations_late.clone(),
        );
        r.register(
            "ingest_queue_depth",
            "Envelopes waiting for the pipeline",
            m.ingest_queue_depth.clone(),
        );
        r.register(
            "live_lagged_events",
            "Live events skipped by slow stream subscribers",
            m.live_lagged.clone(),
        );
        r.register("rules_loaded", "Rules in force", m.rules_loaded.clone());
        r.register(
            "rule_reloads",
            "Rule file reloads, per result",
            m.rule_reloads.clone(),
        );
        r.register(
            "log_suppressed",
            "Log lines suppressed by the rejection log limiter",
            m.log_suppressed.clone(),
        );
        r.register(
            "observations_purged",
            "Observations deleted by the retention window",
            m.observations_purged.clone(),
        );
        r.register(
            "privacy_purged_rows",
            "Rows removed or redacted by the retention purge, per store, category and action",
            m.privacy_purged.clone(),
        );
        r.register(
            "security_signals",
            "Security signals raised by the broker feed and signature checks, per kind",
            m.security_signals.clone(),
        );
        let mut m = m;
        m.trust_counters = beffroi_core::Trust::ALL
            .iter()
            .map(|t| {
                m.observations_by_trust
                    .get_or_create(&TrustLabel { trust: t.as_str() })
                    .clone()
            })
            .collect();
        r.register(
            "observations_trust",
            "Observations accepted, per trust level (signed, broker_authenticated, unauthenticated)",
            m.observations_by_trust.clone(),
        );
        r.register(
            "security_signals_dropped",
            "Security signals dropped because the engine's command queue was full",
            m.security_signals_dropped.clone(),
        );
        r.register(
            "known_bad_networks",
            "Networks partners' indicators flag as known bad (TAXII), all sources together",
            m.known_bad_networks.clone(),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = r;
        // The built-in sources are exposed from the start (at 0), others on first use.
        for s in [Source::MQTT, Source::HTTP, Source::SIMULATOR] {
            m.source(s);
        }
        m
    }

    /// A source's counters, created (and exposed) on its first use. The hot path holds
    /// the returned handle rather than asking again.
    pub fn source(&self, source: Source) -> Arc<SourceMetrics> {
        let found = self
            .sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, m)| Arc::clone(m));
        if let Some(m) = found {
            return m;
        }
        let mut all = self.sources.write().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = all.iter().find(|(s, _)| *s == source) {
            return Arc::clone(m);
        }
        let label = SourceLabel {
            source: source.as_str(),
        };
        let m = Arc::new(SourceMetrics {
            messages: self.messages_f.get_or_create(&label).clone(),
            accepted: self.accepted_f.get_or_create(&label).clone(),
            rejected: RejectReason::ALL
                .iter()
                .map(|r| {
                    self.rejected_f
                        .get_or_create(&RejectLabel {
                            source: source.as_str(),
                            reason: r.as_str(),
                        })
                        .clone()
                })
                .collect(),
        });
        all.push((source, Arc::clone(&m)));
        m
    }

    /// Observations accepted at one trust level.
    pub fn trust(&self, t: beffroi_core::Trust) -> &Counter {
        &self.trust_counters[t as usize]
    }

    /// Counts what a retention purge removed and redacted.
    pub fn purged(&self, r: &crate::retention::PurgeReport) {
        for (action, m) in [("removed", &r.removed), ("redacted", &r.redacted)] {
            for ((store, category), n) in m {
                self.privacy_purged
                    .get_or_create(&PurgeLabel {
                        store,
                        category,
                        action,
                    })
                    .inc_by(*n);
                if *store == "observations" && action == "removed" {
                    self.observations_purged.inc_by(*n);
                }
            }
        }
    }

    /// Registers more metrics (from other components) in the same registry.
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut g = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let g = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &g);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
