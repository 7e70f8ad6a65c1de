//! The fault suite on the real engine and the real SQLite store: commits that fail (a full
//! disk, injected at the store port), redelivered copies, readings arriving late, and a
//! restart. A small broker stand-in delivers as MQTT does: a window of messages in flight,
//! and after a message is refused, everything not acknowledged again, in order.
//!
//! Each phase asserts the same three things:
//! - every acknowledged reading is stored, once;
//! - the incidents and their logs equal what the stored readings imply: the same readings
//!   played in time order through a fresh pipeline with no store (the oracle);
//! - every incident change is logged once (a copy or a late reading changes nothing).
//!
//! Time is simulated: readings carry their event time, the engine's clock stands still.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use beffroi_core::territory::fixture;
use beffroi_core::{Incident, IncidentId, SimClock, Status, Territory, Timestamp};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_engine::runner::{self, Engine, EngineConfig};
use beffroi_engine::store::Visibility;
use beffroi_engine::store::{
    IncidentQuery, LegalHold, PurgePlan, PurgeReport, StoredUnit, Watermark,
};
use beffroi_engine::{
    Ack, AckOutcome, Commit, Envelope, IncidentReads, ObservationReads, Restore, Retain, Source,
    StoreError, WriteBatch,
};
use beffroi_store::{SqliteReader, SqliteStore};
use beffroi_territory::SourceFile;
use beffroi_wire::Format;

const T0: i64 = 1_795_694_400_000;
const MIN: i64 = 60_000;
const GAUGES: usize = 12;
const READINGS: i64 = 60;
/// Messages in flight at once (the broker's window).
const WINDOW: usize = 16;

const RULES: &str = r#"
[[rule]]
id = "high"
title = "High water at {device}"
category = "flood"
severity = "major"
key = "device"
auto_resolve = true
kind = "level"
[rule.threshold]
field = "level_m"
above = 2.0
"#;

fn territory() -> Arc<Territory> {
    Arc::new(fixture::town(GAUGES as u32))
}

/// A reading: device, event time, level.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reading {
    gauge: usize,
    at: i64,
    level: f64,
}

impl Reading {
    /// The reading as the MQTT source hands it over, on ordered stream `stream`, its
    /// outcome sent to `tx`.
    fn envelope(&self, stream: u64, tx: tokio::sync::oneshot::Sender<AckOutcome>) -> Envelope {
        Envelope {
            source: Source::MQTT,
            format: Format::Json,
            device_hint: None,
            payload: self.payload().into_bytes().into(),
            authenticated: false,
            received: Timestamp(self.at),
            stream: Some(stream),
            ack: Some(Ack::new(move |o| {
                let _ = tx.send(o);
            })),
        }
    }

    fn payload(&self) -> String {
        format!(
            r#"{{"device":"gauge-{:05}","time":{},"values":{{"level_m":{}}}}}"#,
            self.gauge, self.at, self.level
        )
    }
}

/// Every gauge reports each minute; its level crosses the threshold now and then (a small
/// deterministic generator), so incidents open, resolve and reopen.
fn stream() -> Vec<Reading> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut high = [false; GAUGES];
    let mut out = Vec::new();
    for minute in 0..READINGS {
        for (g, h) in high.iter_mut().enumerate() {
            if next() % 5 == 0 {
                *h = !*h;
            }
            out.push(Reading {
                gauge: g,
                at: T0 + minute * MIN,
                level: if *h {
                    2.5 + (minute % 3) as f64 / 10.0
                } else {
                    1.0
                },
            });
        }
    }
    out
}

/// The SQLite store behind a switch that fails chosen commits ("database or disk is full").
struct Flaky {
    inner: SqliteStore,
    commits: Arc<AtomicU64>,
    /// Commit numbers (from 0) that fail.
    fail: Arc<Mutex<Vec<std::ops::Range<u64>>>>,
}

impl Commit for Flaky {
    fn write(&mut self, batch: &WriteBatch) -> Result<(), StoreError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .fail
            .lock()
            .expect("lock")
            .iter()
            .any(|r| r.contains(&n));
        if failing {
            return Err(StoreError::Backend(
                "commit write: database or disk is full".into(),
            ));
        }
        self.inner.write(batch)
    }
}

impl Restore for Flaky {
    fn active_incidents(&mut self) -> Result<Vec<Incident>, StoreError> {
        self.inner.active_incidents()
    }

    fn max_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        self.inner.max_incident_id()
    }

    fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.inner.incident(id)
    }

    fn last_seen(&mut self) -> Result<Vec<(beffroi_core::DeviceIdx, Timestamp)>, StoreError> {
        self.inner.last_seen()
    }

    fn watermarks(&mut self) -> Result<Vec<Watermark>, StoreError> {
        self.inner.watermarks()
    }

    fn units(&mut self) -> Result<Vec<StoredUnit>, StoreError> {
        self.inner.units()
    }

    fn crises(&mut self) -> Result<Vec<beffroi_core::crisis::Crisis>, StoreError> {
        self.inner.crises()
    }

    fn situations(&mut self, since: Timestamp) -> Result<Vec<beffroi_core::Situation>, StoreError> {
        self.inner.situations(since)
    }

    fn max_situation_id(&mut self) -> Result<beffroi_core::SituationId, StoreError> {
        self.inner.max_situation_id()
    }

    fn events(&mut self) -> Result<Vec<beffroi_core::Event>, StoreError> {
        self.inner.events()
    }

    fn replay_windows(&mut self) -> Result<Vec<beffroi_engine::trust::StoredWindow>, StoreError> {
        self.inner.replay_windows()
    }

    fn quarantine_acts(
        &mut self,
    ) -> Result<Vec<beffroi_engine::sentinel::QuarantineAct>, StoreError> {
        self.inner.quarantine_acts()
    }
    fn handover_notes(&mut self) -> Result<Vec<beffroi_core::handover::HandoverNote>, StoreError> {
        self.inner.handover_notes()
    }
    fn shelf_log(&mut self) -> Result<Vec<beffroi_core::shelving::ShelfAct>, StoreError> {
        self.inner.shelf_log()
    }
}

impl Retain for Flaky {
    fn purge_observations(&mut self, before: Timestamp) -> Result<usize, StoreError> {
        self.inner.purge_observations(before)
    }

    fn purge(&mut self, plan: &PurgePlan) -> Result<PurgeReport, StoreError> {
        self.inner.purge(plan)
    }

    fn legal_holds(&mut self, now: Timestamp) -> Result<Vec<LegalHold>, StoreError> {
        self.inner.legal_holds(now)
    }
    fn record_purge(&mut self, at: Timestamp, detail: &str) -> Result<(), StoreError> {
        self.inner.record_purge(at, detail)
    }
    fn set_hold(&mut self, hold: &LegalHold) -> Result<(), StoreError> {
        self.inner.set_hold(hold)
    }
    fn release_hold(
        &mut self,
        incident: IncidentId,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.release_hold(incident, by, at)
    }
    fn erase_subject(
        &mut self,
        pseudonyms: &[String],
        now: Timestamp,
    ) -> Result<beffroi_engine::store::ErasureReport, StoreError> {
        self.inner.erase_subject(pseudonyms, now)
    }
}

struct Rig {
    engine: Engine,
    reader: SqliteReader,
    metrics: Arc<Metrics>,
    commits: Arc<AtomicU64>,
    fail: Arc<Mutex<Vec<std::ops::Range<u64>>>>,
}

impl Rig {
    /// The MQTT source's port: it waits for room, as the adapter does.
    fn port(&self) -> beffroi_engine::source::SourcePort {
        self.engine
            .handle
            .source_port(beffroi_engine::source::SourceConfig {
                source: Source::MQTT,
                overload: beffroi_engine::source::Overload::Wait,
            })
    }
}

async fn start(path: &std::path::Path, t: &Arc<Territory>) -> Rig {
    let (store, reader) = beffroi_store::open(path, Arc::clone(t)).expect("open");
    let commits = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(Mutex::new(Vec::new()));
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", RULES), t).expect("rules");
    let metrics = Arc::new(Metrics::new());
    let engine = runner::start(
        Arc::clone(t),
        Arc::new(rules),
        Vec::new(),
        Box::new(Flaky {
            inner: store,
            commits: Arc::clone(&commits),
            fail: Arc::clone(&fail),
        }),
        // The engine's clock stands still before the stream: no escalation falls due.
        Arc::new(SimClock::new(Timestamp(T0 - 60 * MIN))),
        Arc::clone(&metrics),
        EngineConfig {
            purge_every: None,
            ..EngineConfig::default()
        },
    )
    .await
    .expect("engine");
    Rig {
        engine,
        reader,
        metrics,
        commits,
        fail,
    }
}

/// Delivers `readings` as a broker would: up to [`WINDOW`] in flight; when one is refused,
/// everything from the first unacknowledged message on is delivered again, in order.
/// Returns how many deliveries were refused.
async fn deliver(rig: &Rig, readings: &[Reading]) -> usize {
    let mut unacked: VecDeque<Reading> = readings.iter().copied().collect();
    let mut refused = 0;
    let mut rounds = 0;
    while !unacked.is_empty() {
        rounds += 1;
        // Each round is a connection: after a refusal the broker delivers again on a new one.
        let stream = beffroi_engine::envelope::new_stream();
        assert!(rounds < 10_000, "the engine never took the stream");
        let window: Vec<Reading> = unacked.iter().take(WINDOW).copied().collect();
        let mut outcomes = Vec::new();
        for r in &window {
            let (tx, rx) = tokio::sync::oneshot::channel();
            assert!(
                rig.port().submit(r.envelope(stream, tx)).await.is_ok(),
                "engine open"
            );
            outcomes.push(rx);
        }
        let mut stored_prefix = 0;
        let mut broken = false;
        for rx in outcomes {
            match rx.await.expect("an outcome for every envelope") {
                AckOutcome::Stored { accepted, .. } => {
                    assert_eq!(accepted, 1);
                    // The broker forgets a message once acknowledged; after a refusal it
                    // delivers again from the first unacknowledged one.
                    if !broken {
                        stored_prefix += 1;
                    }
                }
                AckOutcome::Failed(_) => {
                    refused += 1;
                    broken = true;
                }
            }
        }
        unacked.drain(..stored_prefix);
    }
    refused
}

/// Incidents as comparable values: per (key, opened at), the status and the log.
type Book = BTreeMap<(String, i64), (Status, Vec<(String, i64)>)>;

fn stored_book(reader: &SqliteReader) -> Book {
    let all = reader
        .incidents(&IncidentQuery {
            limit: 100_000,
            ..IncidentQuery::default()
        })
        .expect("list");
    all.into_iter()
        .map(|i| {
            let (inc, log) = reader
                .incident_with_log(i.id, &Visibility::everything())
                .expect("read")
                .expect("listed");
            (
                (inc.key.0.to_string(), inc.opened_at.0),
                (
                    inc.status,
                    log.into_iter()
                        .map(|e| (e.action.to_string(), e.at.0))
                        .collect(),
                ),
            )
        })
        .collect()
}

/// What the stored readings imply: each played in time order through a fresh pipeline.
fn oracle(t: &Arc<Territory>, reader: &SqliteReader) -> Book {
    let mut stored: Vec<(i64, String, f64)> = Vec::new();
    for d in 0..GAUGES {
        let id = format!("gauge-{d:05}");
        let dev = t.device_id(&id).expect("gauge");
        for o in reader
            .observations(dev, Timestamp(0), 100_000)
            .expect("observations")
        {
            let beffroi_core::Value::Number(v) = o.value else {
                panic!("a level is a number")
            };
            stored.push((o.time.0, id.clone(), v));
        }
    }
    stored.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", RULES), t).expect("rules");
    let mut p = Pipeline::new(
        PipelineConfig::new(
            Arc::clone(t),
            Arc::new(rules),
            Vec::new(),
            Arc::new(Metrics::new()),
        ),
        Timestamp(T0),
    );
    let mut book: BTreeMap<IncidentId, (Incident, Vec<(String, i64)>)> = BTreeMap::new();
    for (at, dev, v) in stored {
        let mut out = Output::default();
        let body = format!(r#"{{"device":"{dev}","time":{at},"values":{{"level_m":{v}}}}}"#);
        let r = p.ingest(
            Source::HTTP,
            Format::Json,
            None,
            body.as_bytes(),
            Timestamp(at),
            &mut out,
        );
        assert_eq!(r.accepted, 1);
        for c in out.batch.incidents {
            let e = book
                .entry(c.incident.id)
                .or_insert_with(|| (c.incident.clone(), Vec::new()));
            e.0 = c.incident.clone();
            e.1.extend(c.log.iter().map(|l| (l.action.to_string(), l.at.0)));
        }
    }
    book.into_values()
        .map(|(inc, log)| ((inc.key.0.to_string(), inc.opened_at.0), (inc.status, log)))
        .collect()
}

fn stored_readings(reader: &SqliteReader) -> u64 {
    reader.observation_count().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_copies_late_readings_and_a_restart_leave_the_store_the_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("beffroi.sqlite");
    let t = territory();
    let readings = stream();
    let rig = start(&path, &t).await;

    // Phase 1: a commit fails now and then, and the disk is full for five commits in a row.
    *rig.fail.lock().expect("lock") = vec![3..4, 7..12, 20..21, 31..32];
    let refused = deliver(&rig, &readings).await;
    assert!(
        rig.commits.load(Ordering::SeqCst) > 32,
        "the failures were all injected"
    );
    assert!(refused > 0, "some deliveries were refused");
    assert!(rig.metrics.store_recoveries.get() >= 4);
    assert!(
        rig.engine.handle.storing(),
        "storing again after the episode"
    );
    assert_eq!(
        stored_readings(&rig.reader),
        readings.len() as u64,
        "every reading stored once"
    );
    let book = stored_book(&rig.reader);
    assert!(
        book.len() >= GAUGES,
        "the stream opens incidents: {}",
        book.len()
    );
    assert_eq!(
        book,
        oracle(&t, &rig.reader),
        "incidents and logs are what the stored readings imply"
    );

    // Phase 2: copies of acknowledged readings (a PUBACK lost, a redelivered batch).
    let copies: Vec<Reading> = readings.iter().step_by(3).copied().collect();
    assert_eq!(deliver(&rig, &copies).await, 0);
    assert_eq!(stored_readings(&rig.reader), readings.len() as u64);
    assert_eq!(stored_book(&rig.reader), book, "copies change nothing");
    // A copy of the latest reading is a duplicate; a copy of an earlier one is older than
    // its series' watermark: either way it is not evaluated again.
    assert!(
        rig.metrics.observations_duplicate.get() + rig.metrics.observations_late.get()
            >= copies.len() as u64
    );
    let late_before = rig.metrics.observations_late.get();

    // Phase 3: readings that arrive late, each one crossing the threshold the other way.
    let late: Vec<Reading> = (0..GAUGES)
        .map(|g| {
            let at = T0 + 30 * MIN + 30_000;
            let before = readings
                .iter()
                .find(|r| r.gauge == g && r.at == T0 + 30 * MIN)
                .expect("a reading at 30 min");
            Reading {
                gauge: g,
                at,
                level: if before.level > 2.0 { 1.0 } else { 3.0 },
            }
        })
        .collect();
    assert_eq!(deliver(&rig, &late).await, 0);
    assert_eq!(
        stored_readings(&rig.reader),
        (readings.len() + late.len()) as u64,
        "late readings are stored"
    );
    assert_eq!(
        stored_book(&rig.reader),
        book,
        "a late reading neither reopens nor resolves anything"
    );
    assert_eq!(
        rig.metrics.observations_late.get() - late_before,
        late.len() as u64
    );

    // Phase 4: a restart, then the broker redelivers what it had in flight.
    let Rig { engine, reader, .. } = rig;
    engine.shutdown().await;
    drop(reader);
    let rig = start(&path, &t).await;
    let tail: Vec<Reading> = readings[readings.len() - 2 * WINDOW..].to_vec();
    assert_eq!(deliver(&rig, &tail).await, 0);
    assert_eq!(
        stored_book(&rig.reader),
        book,
        "after a restart a redelivered batch leaves the incidents and logs unchanged"
    );
    assert_eq!(
        rig.metrics.observations_duplicate.get() + rig.metrics.observations_late.get(),
        tail.len() as u64,
        "the stored watermarks tell the copies apart after a restart"
    );
    assert_eq!(
        rig.metrics.observations_duplicate.get(),
        GAUGES as u64,
        "the last reading of each gauge is a copy of its watermark"
    );
    rig.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recovery_a_failed_commit_would_lose_incident_changes() {
    // The same stream with no failure gives the same book as with failures: the failures
    // above are not absorbed by chance (a run where every opening commit fails and is then
    // redelivered must still open the incident).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("beffroi.sqlite");
    let t = territory();
    let readings = stream();
    let rig = start(&path, &t).await;
    // Fail every other commit for the first 60 commits.
    *rig.fail.lock().expect("lock") = (0..30).map(|i| 2 * i..2 * i + 1).collect();
    deliver(&rig, &readings).await;
    assert_eq!(stored_readings(&rig.reader), readings.len() as u64);
    let with_faults = stored_book(&rig.reader);
    assert_eq!(with_faults, oracle(&t, &rig.reader));
    let opened = with_faults
        .values()
        .filter(|(_, log)| log.iter().any(|(a, _)| a == "opened"))
        .count();
    assert_eq!(
        opened,
        with_faults.len(),
        "every incident has its opening logged"
    );
    rig.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_commits_fail_the_engine_says_it_is_not_storing_and_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("beffroi.sqlite");
    let t = territory();
    let rig = start(&path, &t).await;
    assert!(rig.engine.handle.storing());
    *rig.fail.lock().expect("lock") = std::iter::once(0..u64::MAX).collect();
    let reading = Reading {
        gauge: 0,
        at: T0,
        level: 3.0,
    };
    // One delivery attempt, refused: not stored, not acknowledged.
    let (tx, rx) = tokio::sync::oneshot::channel();
    assert!(
        rig.port()
            .submit(reading.envelope(beffroi_engine::envelope::new_stream(), tx))
            .await
            .is_ok(),
        "engine open"
    );
    assert!(matches!(rx.await, Ok(AckOutcome::Failed(_))));
    assert!(
        !rig.engine.handle.storing(),
        "not storing while commits fail"
    );
    assert_eq!(rig.metrics.store_writable.get(), 0);
    assert_eq!(stored_readings(&rig.reader), 0);
    assert!(stored_book(&rig.reader).is_empty());

    // Space comes back: the next delivery is stored, and the engine says so.
    rig.fail.lock().expect("lock").clear();
    deliver(&rig, &[reading]).await;
    assert!(rig.engine.handle.storing());
    assert_eq!(rig.metrics.store_writable.get(), 1);
    assert_eq!(stored_readings(&rig.reader), 1);
    assert_eq!(stored_book(&rig.reader), oracle(&t, &rig.reader));
    assert_eq!(
        stored_book(&rig.reader).len(),
        1,
        "the reading opened its incident"
    );
    rig.engine.shutdown().await;
}
