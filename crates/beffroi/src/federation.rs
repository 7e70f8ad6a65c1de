//! Federation between instances under `federation.toml` (`beffroi_federation`): store and
//! forward both ways, with this instance's keys.
//!
//! - **Out.** Each incident change the engine commits (the live stream; and a comparison
//!   of the day's incidents with the queue at start, every minute, and whenever the
//!   stream lagged) that an agreement shares, and every later change of an incident once
//!   shared so that closure follows it, is appended to the partner's outbox in
//!   `federation.sqlite` with the next sequence number, once per change of what the
//!   partner sees. A sender per partner posts the outbox after the partner's
//!   acknowledged number, signed, and moves the number to what the partner answers; a
//!   failure marks the link down and retries with a backoff up to 30 s. Nothing is lost
//!   while the link is cut, or across a restart of either side.
//! - **In.** A batch a partner posts is stored in the same file within one transaction,
//!   keeping only the messages that follow the last one stored (so a batch sent twice is
//!   stored once and a gap is never jumped), then acknowledged; an applier hands the
//!   stored messages to the engine in order, as incidents of the agreement's category
//!   (`fed:<partner>`), placed at the nearest site of the commune they name.
//! - **Keys.** `<data>/federation/signing.key` (Ed25519, signs batches; its public half is
//!   what partners pin: `beffroi federation key`) and `secret.key` (re-keys pseudonyms per
//!   partner), created on first use, readable by the owner only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use beffroi_api::federation::{FederationPort, LinkView};
use beffroi_core::{IncidentId, Point, SafeText, Severity, SiteIdx, Territory, Timestamp};
use beffroi_engine::external::ExternalAlert;
use beffroi_engine::runner::EngineHandle;
use beffroi_engine::store::{IncidentQuery, StoreReader};
use beffroi_federation::{
    Batch, Content, Federation, Message, Partner, SharedIncident, SharedNote,
};
use ed25519_dalek::SigningKey;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Messages per batch.
const BATCH: usize = 100;
/// Incidents read per scan page.
const SCAN_PAGE: usize = 500;
const POST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The incidents updated within this window are compared with the queue at start.
const RESCAN_WINDOW: i64 = 24 * 3_600_000;
const RESCAN_EVERY: Duration = Duration::from_secs(60);

#[derive(clap::Subcommand)]
pub enum FederationCommand {
    /// Prints this instance's public key (creating the keys if missing): what a partner
    /// writes as `public_key` in its `federation.toml`.
    Key {
        /// The data folder of the instance.
        #[arg(long, default_value = "beffroi-data")]
        data: PathBuf,
    },
}

pub fn command(cmd: FederationCommand) -> Result<()> {
    match cmd {
        FederationCommand::Key { data } => {
            let keys = Keys::open(&data)?;
            println!(
                "{}",
                base64::engine::general_purpose::STANDARD
                    .encode(keys.signing.verifying_key().to_bytes())
            );
            Ok(())
        }
    }
}

/// This instance's federation keys.
pub struct Keys {
    pub signing: SigningKey,
    pub secret: [u8; 32],
}

fn key_file(path: &Path) -> Result<[u8; 32]> {
    if let Ok(bytes) = std::fs::read(path) {
        return <[u8; 32]>::try_from(bytes)
            .map_err(|_| anyhow::anyhow!("{}: not a 32-byte key", path.display()));
    }
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    crate::files::write_private(path, &key)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

impl Keys {
    pub fn open(data: &Path) -> Result<Keys> {
        let dir = data.join("federation");
        crate::files::private_dir(&dir)?;
        Ok(Keys {
            signing: SigningKey::from_bytes(&key_file(&dir.join("signing.key"))?),
            secret: key_file(&dir.join("secret.key"))?,
        })
    }
}

/// `federation.sqlite`: outboxes, acknowledged numbers, the scan cursor, received messages.
struct Queues {
    conn: Mutex<Connection>,
}

/// `federation.sqlite`'s schema as ordered migrations: migration `i` brings the file from
/// version `i` to `i + 1` (`PRAGMA user_version`), in one transaction with the version
/// bump. Never edit a released one: append.
const MIGRATIONS: &[&str] = &[QUEUES_V1, QUEUES_V2_PENDING];

/// The schema version this build writes.
pub const QUEUES_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The queues as the first release made them, without a version: `IF NOT EXISTS` takes
/// such a file (version 0, tables present) as version 1 unchanged.
const QUEUES_V1: &str = "
CREATE TABLE IF NOT EXISTS outbox (
  partner TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
  incident INTEGER NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY (partner, seq), UNIQUE (partner, kind, incident, version));
CREATE TABLE IF NOT EXISTS shared (
  partner TEXT NOT NULL, incident INTEGER NOT NULL, PRIMARY KEY (partner, incident));
CREATE TABLE IF NOT EXISTS acked (partner TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS received (
  partner TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
  applied INTEGER NOT NULL DEFAULT 0, at INTEGER NOT NULL,
  PRIMARY KEY (partner, seq));";

/// The messages received and not applied yet, by partner and number: what the apply loop
/// reads every second. `received` keeps every message, so without it each pass walks a
/// partner's whole history.
const QUEUES_V2_PENDING: &str =
    "CREATE INDEX received_pending ON received (partner, seq) WHERE applied = 0;";

/// Brings the queues to [`QUEUES_SCHEMA_VERSION`]; refuses a file of a newer version.
fn migrate_queues(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if found > QUEUES_SCHEMA_VERSION {
        anyhow::bail!(
            "{}: schema version {found} was written by a newer Beffroi than this one \
             ({QUEUES_SCHEMA_VERSION}); run that version, or restore a backup taken before \
             the upgrade",
            path.display()
        );
    }
    for (version, sql) in (1i64..).zip(MIGRATIONS).skip(found.max(0) as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .and_then(|tx| {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", version)?;
                tx.commit()
            })
            .with_context(|| format!("cannot migrate {} to version {version}", path.display()));
        tx?;
        if found > 0 {
            tracing::info!(path = %path.display(), from = found, version, "federation queues schema migrated");
        }
    }
    Ok(())
}

impl Queues {
    fn open(path: &Path) -> Result<Queues> {
        let mut conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .with_context(|| format!("cannot open {}", path.display()))?;
        migrate_queues(&mut conn, path).context("cannot create the federation queues")?;
        Ok(Queues {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, String> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(|e| e.to_string())
    }
}

/// A link's state in memory, for the console and the metrics.
#[derive(Clone, Default)]
struct Link {
    state: &'static str,
    last_seq: u64,
    acked: u64,
    received: u64,
    last_ok: Option<i64>,
    error: Option<String>,
}

/// `beffroi_federation_*`.
#[derive(Clone, Default)]
pub struct FederationMetrics {
    backlog: Family<Vec<(String, String)>, Gauge>,
    up: Family<Vec<(String, String)>, Gauge>,
    sent: Family<Vec<(String, String)>, Counter>,
    received: Family<Vec<(String, String)>, Counter>,
}

impl FederationMetrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "federation_backlog",
            "Messages queued for a partner and not yet acknowledged",
            self.backlog.clone(),
        );
        r.register(
            "federation_link_up",
            "1 when the last exchange with a partner succeeded",
            self.up.clone(),
        );
        r.register(
            "federation_sent",
            "Messages a partner acknowledged",
            self.sent.clone(),
        );
        r.register(
            "federation_received",
            "Messages received from a partner and stored",
            self.received.clone(),
        );
    }
    fn label(p: &str) -> Vec<(String, String)> {
        vec![("partner".into(), p.into())]
    }
}

/// The federation of a running server.
pub struct Fed {
    pub config: Arc<Federation>,
    keys: Keys,
    queues: Queues,
    links: Mutex<HashMap<String, Link>>,
    territory: Arc<Territory>,
    engine: EngineHandle,
    audit: Arc<dyn beffroi_core::AuditSink>,
    metrics: FederationMetrics,
    /// Wakes the senders (something was queued) and the applier (something received).
    queued: Notify,
    arrived: Notify,
}

impl Fed {
    pub fn open(
        config: Arc<Federation>,
        data: &Path,
        engine: EngineHandle,
        audit: Arc<dyn beffroi_core::AuditSink>,
        metrics: FederationMetrics,
    ) -> Result<Arc<Fed>> {
        let keys = Keys::open(data)?;
        let queues = Queues::open(&data.join("federation.sqlite"))?;
        let mut links = HashMap::new();
        for p in &config.partners {
            let (last_seq, acked, received) = queues
                .with(|c| {
                    let last: u64 = c.query_row(
                        "SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE partner = ?1",
                        [&p.name],
                        |r| r.get(0),
                    )?;
                    let acked: u64 = c
                        .query_row("SELECT seq FROM acked WHERE partner = ?1", [&p.name], |r| {
                            r.get(0)
                        })
                        .optional()?
                        .unwrap_or(0);
                    let received: u64 = c.query_row(
                        "SELECT COALESCE(MAX(seq), 0) FROM received WHERE partner = ?1",
                        [&p.name],
                        |r| r.get(0),
                    )?;
                    Ok((last, acked, received))
                })
                .map_err(|e| anyhow::anyhow!("federation queues: {e}"))?;
            metrics
                .backlog
                .get_or_create(&FederationMetrics::label(&p.name))
                .set(last_seq.saturating_sub(acked) as i64);
            links.insert(
                p.name.clone(),
                Link {
                    state: "idle",
                    last_seq,
                    acked,
                    received,
                    ..Link::default()
                },
            );
        }
        Ok(Arc::new(Fed {
            territory: Arc::clone(&engine.territory),
            config,
            keys,
            queues,
            links: Mutex::new(links),
            engine,
            audit,
            metrics,
            queued: Notify::new(),
            arrived: Notify::new(),
        }))
    }

    fn link<T>(&self, partner: &str, f: impl FnOnce(&mut Link) -> T) -> Option<T> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.get_mut(partner).map(f)
    }

    fn audit(
        &self,
        partner: &str,
        action: &str,
        outcome: beffroi_core::AuditOutcome,
        detail: serde_json::Value,
    ) {
        self.audit.record(beffroi_core::AuditRecord {
            at_ms: self.engine.clock.now().0,
            actor: SafeText::redacting("system"),
            action: action.into(),
            target: Some(SafeText::redacting(&format!("partner:{partner}"))),
            outcome,
            detail: SafeText::redacting(&detail.to_string()),
        });
    }

    /// Runs the scanner, one sender per partner and the applier until `stop`.
    pub async fn run(self: Arc<Fed>, reader: Arc<dyn StoreReader>, stop: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(Arc::clone(&self).scan_loop(reader, stop.clone()));
        for p in self.config.partners.clone() {
            tasks.spawn(Arc::clone(&self).send_loop(p, stop.clone()));
        }
        tasks.spawn(Arc::clone(&self).apply_loop(stop.clone()));
        while tasks.join_next().await.is_some() {}
    }

    // ---- out ------------------------------------------------------------------------

    async fn scan_loop(self: Arc<Fed>, reader: Arc<dyn StoreReader>, stop: CancellationToken) {
        let mut live = self.engine.subscribe();
        // At start (and when the live stream lagged, and every minute besides), the day's
        // incidents are compared with what was queued: a change made while this task was
        // not listening is queued then.
        let mut rescan = true;
        loop {
            if rescan {
                let me = Arc::clone(&self);
                let r = Arc::clone(&reader);
                match tokio::task::spawn_blocking(move || me.rescan(r.as_ref())).await {
                    Ok(Ok(n)) if n > 0 => self.queued.notify_waiters(),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "federation rescan failed; retried"),
                    Err(e) => tracing::warn!(error = %e, "federation rescan task failed"),
                }
                rescan = false;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                ev = live.recv() => match ev {
                    Ok(beffroi_engine::live::LiveEvent::Incident(change)) => {
                        let me = Arc::clone(&self);
                        let queued = tokio::task::spawn_blocking(move || {
                            let notes = me.enqueue_notes(&change)?;
                            Ok::<_, String>(notes + me.enqueue_all(&change.incident)?)
                        })
                        .await;
                        match queued {
                            Ok(Ok(n)) if n > 0 => self.queued.notify_waiters(),
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "federation: a change could not be queued; rescanned");
                                rescan = true;
                            }
                            Err(_) => rescan = true,
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => rescan = true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep(RESCAN_EVERY) => rescan = true,
            }
        }
    }

    /// Compares the incidents updated within the last day with what was queued.
    fn rescan(&self, reader: &dyn StoreReader) -> Result<usize, String> {
        let since = self.engine.clock.now().0 - RESCAN_WINDOW;
        let mut page = reader
            .incidents(&IncidentQuery {
                updated_since: Some(Timestamp(since)),
                limit: SCAN_PAGE,
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
        page.reverse();
        let mut queued = 0;
        for i in &page {
            queued += self.enqueue_all(i)?;
        }
        Ok(queued)
    }

    fn enqueue_all(&self, i: &beffroi_core::incident::Incident) -> Result<usize, String> {
        let mut queued = 0;
        for p in self
            .config
            .partners
            .iter()
            .filter(|p| !p.categories.is_empty())
        {
            queued += self.enqueue(p, i)?;
        }
        Ok(queued)
    }

    /// Appends the incident's change to the partner's outbox if the agreement shares it
    /// (or shared it before) and what the partner sees of it changed; 1 when appended.
    /// Versions increase per incident even when the incident's time is an event time
    /// earlier than a previous change's.
    fn enqueue(&self, p: &Partner, i: &beffroi_core::incident::Incident) -> Result<usize, String> {
        let incident = i.id.0 as i64;
        let shared = match beffroi_federation::share(i, &self.territory, p, &self.keys.secret) {
            Some(s) => Some(s),
            None => {
                // Once shared, every later change follows, whatever it became.
                let before: bool = self.queues.with(|c| {
                    c.query_row(
                        "SELECT 1 FROM shared WHERE partner = ?1 AND incident = ?2",
                        params![p.name, incident],
                        |_| Ok(()),
                    )
                    .optional()
                    .map(|o| o.is_some())
                })?;
                if before {
                    let follow = Partner {
                        categories: vec![Arc::clone(&i.category)],
                        min_severity: Severity::Info,
                        communes: None,
                        ..p.clone()
                    };
                    beffroi_federation::share(i, &self.territory, &follow, &self.keys.secret)
                } else {
                    None
                }
            }
        };
        let Some(mut s) = shared else { return Ok(0) };
        let seq = self.queues.with(|c| {
            let tx = c.transaction()?;
            let last: Option<String> = tx
                .query_row(
                    "SELECT body FROM outbox WHERE partner = ?1 AND kind = 'incident' AND incident = ?2 ORDER BY seq DESC LIMIT 1",
                    params![p.name, incident],
                    |r| r.get(0),
                )
                .optional()?;
            let last = last.and_then(|b| match content_of(&b) {
                Some(Content::Incident(i)) => Some(i),
                _ => None,
            });
            if let Some(last) = last {
                let unchanged = SharedIncident {
                    version: last.version,
                    ..s.clone()
                } == last;
                if unchanged {
                    return Ok(None);
                }
                s.version = s.version.max(last.version + 1);
            }
            let version = s.version;
            let body = body_of(Content::Incident(s));
            let seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox WHERE partner = ?1",
                [&p.name],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO outbox (partner, seq, kind, incident, version, body) VALUES (?1, ?2, 'incident', ?3, ?4, ?5)",
                params![p.name, seq, incident, version, body],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO shared (partner, incident) VALUES (?1, ?2)",
                params![p.name, incident],
            )?;
            tx.commit()?;
            Ok(Some(seq as u64))
        })?;
        let Some(seq) = seq else { return Ok(0) };
        self.link(&p.name, |l| l.last_seq = l.last_seq.max(seq));
        self.update_backlog(&p.name);
        Ok(1)
    }

    fn update_backlog(&self, partner: &str) {
        if let Some(n) = self.link(partner, |l| l.last_seq.saturating_sub(l.acked)) {
            self.metrics
                .backlog
                .get_or_create(&FederationMetrics::label(partner))
                .set(n as i64);
        }
    }

    async fn send_loop(self: Arc<Fed>, p: Partner, stop: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        let label = FederationMetrics::label(&p.name);
        loop {
            let acked = self.link(&p.name, |l| l.acked).unwrap_or(0);
            let me = Arc::clone(&self);
            let name = p.name.clone();
            let rows = tokio::task::spawn_blocking(move || {
                me.queues.with(|c| {
                    let mut st = c.prepare_cached(
                        "SELECT seq, body FROM outbox WHERE partner = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                    )?;
                    let rows = st
                        .query_map(params![name, acked as i64, BATCH as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(rows)
                })
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(partner = %p.name, error = %e, "federation outbox unreadable");
                    Vec::new()
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.queued.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let messages: Vec<Message> = rows
                .iter()
                .filter_map(|(seq, body)| content_of(body).map(|c| Message::new(*seq as u64, c)))
                .collect();
            let (first, last) = (
                messages.first().map(|m| m.seq),
                messages.last().map(|m| m.seq),
            );
            let batch = Batch {
                from: self.config.name.clone(),
                to: p.name.clone(),
                sent_at: self.engine.clock.now().0,
                messages,
            };
            let outcome = self.post(&p, &batch).await;
            match outcome {
                Ok(ack) => {
                    let now = self.engine.clock.now().0;
                    let name = p.name.clone();
                    let me = Arc::clone(&self);
                    let stored = tokio::task::spawn_blocking(move || {
                        me.queues.with(|c| {
                            c.execute(
                                "INSERT INTO acked (partner, seq) VALUES (?1, ?2) ON CONFLICT (partner) DO UPDATE SET seq = excluded.seq",
                                params![name, ack as i64],
                            )
                        })
                    })
                    .await;
                    if !matches!(stored, Ok(Ok(_))) {
                        tracing::warn!(partner = %p.name, "federation: the acknowledgement could not be stored; resent later");
                    }
                    let newly = self
                        .link(&p.name, |l| {
                            let newly = ack.saturating_sub(l.acked);
                            l.acked = ack;
                            l.state = "up";
                            l.last_ok = Some(now);
                            l.error = None;
                            newly
                        })
                        .unwrap_or(0);
                    self.update_backlog(&p.name);
                    self.metrics.up.get_or_create(&label).set(1);
                    self.metrics.sent.get_or_create(&label).inc_by(newly);
                    self.audit(
                        &p.name,
                        "federation.send",
                        beffroi_core::AuditOutcome::Ok,
                        serde_json::json!({ "first": first, "last": last, "acked": ack }),
                    );
                    backoff = Duration::from_secs(1);
                }
                Err(code) => {
                    let was_up = self
                        .link(&p.name, |l| {
                            let was = l.state != "down";
                            l.state = "down";
                            l.error = Some(code.clone());
                            was
                        })
                        .unwrap_or(false);
                    self.metrics.up.get_or_create(&label).set(0);
                    if was_up {
                        tracing::warn!(partner = %p.name, error = %code, "federation link down; queueing, retried with backoff");
                        self.audit(
                            &p.name,
                            "federation.send",
                            beffroi_core::AuditOutcome::Failed,
                            serde_json::json!({ "error": code }),
                        );
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Posts a batch; the partner's acknowledged number, or a failure code.
    async fn post(&self, p: &Partner, batch: &Batch) -> Result<u64, String> {
        let body = serde_json::to_vec(batch).map_err(|e| e.to_string())?;
        let sig = beffroi_federation::sign(&self.keys.signing, &batch.from, &batch.to, &body);
        let url = format!("{}/federation/v1/inbox", p.url);
        let from = batch.from.clone();
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(POST_TIMEOUT))
                .http_status_as_error(false)
                .build()
                .new_agent();
            let mut r = agent
                .post(&url)
                .header("Content-Type", "application/json")
                .header(beffroi_federation::wire::HEADER_PARTNER, &from)
                .header(beffroi_federation::wire::HEADER_SIGNATURE, &sig)
                .send(&body[..])
                .map_err(|_| "unreachable".to_string())?;
            let status = r.status().as_u16();
            if status == 401 {
                return Err("refused".into());
            }
            if status != 200 {
                return Err(format!("status_{status}"));
            }
            let text = r
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .map_err(|_| "unreadable".to_string())?;
            serde_json::from_str::<beffroi_federation::Ack>(&text)
                .map(|a| a.acked)
                .map_err(|_| "unreadable".to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    // ---- in -------------------------------------------------------------------------

    fn store_received(&self, partner: &str, batch: &Batch) -> Result<u64, String> {
        let now = self.engine.clock.now().0;
        self.queues.with(|c| {
            let tx = c.transaction()?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM received WHERE partner = ?1",
                [partner],
                |r| r.get(0),
            )?;
            let mut last = last as u64;
            for m in beffroi_federation::next_in_order(last, batch) {
                let Some(content) = m.content() else { continue };
                let body = body_of(content);
                tx.execute(
                    "INSERT INTO received (partner, seq, body, at) VALUES (?1, ?2, ?3, ?4)",
                    params![partner, m.seq as i64, body, now],
                )?;
                last = m.seq;
            }
            tx.commit()?;
            Ok(last)
        })
    }

    async fn apply_loop(self: Arc<Fed>, stop: CancellationToken) {
        loop {
            for p in self.config.partners.iter().filter(|p| p.receive || p.notes) {
                loop {
                    let me = Arc::clone(&self);
                    let name = p.name.clone();
                    let pending = tokio::task::spawn_blocking(move || {
                        me.queues.with(|c| {
                            let mut st = c.prepare_cached(
                                "SELECT seq, body FROM received WHERE partner = ?1 AND applied = 0 ORDER BY seq LIMIT 100",
                            )?;
                            let rows = st
                                .query_map([&name], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                                .collect::<rusqlite::Result<Vec<_>>>()?;
                            Ok(rows)
                        })
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                    let pending = match pending {
                        Ok(p) if !p.is_empty() => p,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "federation inbox unreadable");
                            break;
                        }
                    };
                    for (seq, body) in pending {
                        let applied = match content_of(&body) {
                            Some(Content::Incident(s)) if p.receive => match self.alert_of(p, &s) {
                                Some(alert) => self.engine.external_alert(alert).await.is_ok(),
                                None => true,
                            },
                            Some(Content::Note(n)) if p.notes => self.apply_note(p, &n).await,
                            _ => true,
                        };
                        if !applied {
                            tracing::warn!(partner = %p.name, seq, "federation message not applied; retried");
                            break;
                        }
                        let me = Arc::clone(&self);
                        let name = p.name.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            me.queues.with(|c| {
                                c.execute(
                                    "UPDATE received SET applied = 1 WHERE partner = ?1 AND seq = ?2",
                                    params![name, seq],
                                )
                            })
                        })
                        .await;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.arrived.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// A partner's note on one of the incidents shared with it, as a comment of the
    /// incident by `fed:<partner>`; only on an incident this instance shared with it.
    /// `false`: to retry (the engine is closing).
    async fn apply_note(&self, p: &Partner, n: &SharedNote) -> bool {
        let Some(id) = n
            .reference
            .strip_prefix("INC-")
            .and_then(|x| x.parse::<u64>().ok())
        else {
            return true;
        };
        let (name, incident) = (p.name.clone(), id as i64);
        let shared = self
            .queues
            .with(|c| {
                c.query_row(
                    "SELECT 1 FROM shared WHERE partner = ?1 AND incident = ?2",
                    params![name, incident],
                    |_| Ok(()),
                )
                .optional()
                .map(|o| o.is_some())
            })
            .unwrap_or(false);
        if !shared {
            tracing::warn!(partner = %p.name, reference = %n.reference, "a partner's note on an incident not shared with it: ignored");
            return true;
        }
        let text = SafeText::redacting(&format!("{} : {}", p.name, n.text));
        let actor = beffroi_core::incident::Actor::Rule(
            format!("{}{}", beffroi_core::incident::PARTNER_RULE_PREFIX, p.name).into(),
        );
        match self
            .engine
            .act(
                IncidentId(id),
                beffroi_core::incident::IncidentAction::Comment(text),
                actor,
            )
            .await
        {
            Ok(_) => true,
            Err(beffroi_engine::runner::ActError::Closed) => false,
            // Closed or gone here since: nothing to note.
            Err(e) => {
                tracing::debug!(partner = %p.name, error = %e, "a partner's note not applied");
                true
            }
        }
    }

    /// Queues the operators' notes written on a partner's incident back to the partner
    /// (the agreement's `notes`); 1 per note queued.
    fn enqueue_notes(
        &self,
        change: &beffroi_core::incident::IncidentChange,
    ) -> Result<usize, String> {
        let i = &change.incident;
        let Some(partner) = i
            .rule
            .strip_prefix(beffroi_core::incident::PARTNER_RULE_PREFIX)
            .and_then(|n| self.config.partner(n))
            .filter(|p| p.notes)
        else {
            return Ok(0);
        };
        // The key is `fed:<partner>/<their reference>@site:…`.
        let Some(reference) = i
            .key
            .0
            .split_once('/')
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(r, _)| r.to_string())
        else {
            return Ok(0);
        };
        let mut queued = 0;
        for entry in change.log.iter().filter(|e| {
            &*e.action == "comment" && matches!(e.actor, beffroi_core::incident::Actor::User(_))
        }) {
            let note = beffroi_federation::note(
                &reference,
                entry.at.0,
                entry.detail.as_str(),
                partner,
                &self.keys.secret,
            );
            let body = body_of(Content::Note(note));
            let incident = i.id.0 as i64;
            let seq = self.queues.with(|c| {
                let tx = c.transaction()?;
                let seq: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox WHERE partner = ?1",
                    [&partner.name],
                    |r| r.get(0),
                )?;
                let n = tx.execute(
                    "INSERT OR IGNORE INTO outbox (partner, seq, kind, incident, version, body) VALUES (?1, ?2, 'note', ?3, ?4, ?5)",
                    params![partner.name, seq, incident, entry.at.0, body],
                )?;
                tx.commit()?;
                Ok((n > 0).then_some(seq as u64))
            })?;
            if let Some(seq) = seq {
                self.link(&partner.name, |l| l.last_seq = l.last_seq.max(seq));
                self.update_backlog(&partner.name);
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// A partner's incident as an alarm of this territory.
    fn alert_of(&self, p: &Partner, s: &SharedIncident) -> Option<ExternalAlert> {
        let t = &self.territory;
        let at = Point::new(s.position[0], s.position[1]);
        let site = place(t, s.insee.as_deref(), at)?;
        let what = s
            .title
            .clone()
            .unwrap_or_else(|| format!("{} ({})", s.category, s.commune));
        let evidence = format!(
            "{} {}: {} {} {}, {}{} — TLP:{}",
            p.name,
            s.reference,
            s.category,
            s.severity,
            s.status,
            s.commune,
            s.site
                .as_deref()
                .map(|x| format!(", {x}"))
                .unwrap_or_default(),
            s.tlp.to_ascii_uppercase()
        );
        Some(ExternalAlert {
            source: format!("{}{}", beffroi_core::incident::PARTNER_RULE_PREFIX, p.name).into(),
            reference: s.reference.clone(),
            category: Arc::clone(&p.category),
            severity: Severity::parse(&s.severity).unwrap_or(Severity::Info),
            title: SafeText::redacting(&format!("{} — {what}", p.name)),
            evidence: SafeText::redacting(&evidence),
            site,
            at: Timestamp(s.version.min(self.engine.clock.now().0)),
            ended: s.ended(),
        })
    }
}

/// A message's content as the queues store it (the message without its number).
fn body_of(content: Content) -> String {
    serde_json::to_string(&Message::new(0, content)).unwrap_or_default()
}

fn content_of(body: &str) -> Option<Content> {
    serde_json::from_str::<Message>(body).ok()?.content()
}

/// Where a partner's incident is shown: the nearest site of the commune its INSEE code
/// names, or the nearest site of the territory within 30 km of its position.
fn place(t: &Territory, insee: Option<&str>, at: Point) -> Option<SiteIdx> {
    let commune = insee.and_then(|code| {
        t.communes
            .iter()
            .position(|c| c.insee.as_deref() == Some(code))
    });
    t.sites
        .iter()
        .enumerate()
        .filter(|(_, s)| commune.is_none_or(|c| s.commune.get() == c))
        .map(|(i, s)| (i, s.position.distance_m(&at)))
        .filter(|(_, d)| commune.is_some() || *d <= 30_000.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| SiteIdx(i as u32))
}

/// The API's port on a running federation.
pub struct FedPort(pub Arc<Fed>);

impl FederationPort for FedPort {
    fn own_name(&self) -> &str {
        &self.0.config.name
    }

    fn partner_key(&self, name: &str) -> Option<ed25519_dalek::VerifyingKey> {
        self.0
            .config
            .partner(name)
            .filter(|p| p.receive || p.notes)
            .map(|p| p.key)
    }

    fn receive(&self, partner: String, batch: Batch) -> BoxFuture<'static, Result<u64, String>> {
        let fed = Arc::clone(&self.0);
        Box::pin(async move {
            let me = Arc::clone(&fed);
            let who = partner.clone();
            let last = tokio::task::spawn_blocking(move || me.store_received(&who, &batch))
                .await
                .map_err(|e| e.to_string())??;
            let newly = fed.link(&partner, |l| {
                let n = last.saturating_sub(l.received);
                l.received = l.received.max(last);
                n
            });
            fed.metrics
                .received
                .get_or_create(&FederationMetrics::label(&partner))
                .inc_by(newly.unwrap_or(0));
            fed.arrived.notify_one();
            Ok(last)
        })
    }

    fn links(&self) -> Vec<LinkView> {
        let links = self.0.links.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<LinkView> = links
            .iter()
            .map(|(name, l)| LinkView {
                partner: name.clone(),
                state: l.state.into(),
                backlog: l.last_seq.saturating_sub(l.acked),
                acked: l.acked,
                received: l.received,
                last_ok: l.last_ok,
                error: l.error.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.partner.cmp(&b.partner));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(c: &Connection) -> i64 {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version")
    }

    /// The queues as the first release left them: its tables, no version, a message
    /// waiting to be applied and one applied.
    fn first_release(path: &Path) {
        let c = Connection::open(path).expect("open");
        c.execute_batch(QUEUES_V1).expect("first release's tables");
        c.execute_batch(
            "INSERT INTO received (partner, seq, body, applied, at) VALUES
               ('dijon', 1, '{}', 1, 10), ('dijon', 2, '{}', 0, 20);
             INSERT INTO acked (partner, seq) VALUES ('dijon', 7);",
        )
        .expect("rows");
        assert_eq!(version(&c), 0);
    }

    #[test]
    fn the_first_releases_queues_are_upgraded_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("federation.sqlite");
        first_release(&path);
        let q = Queues::open(&path).expect("upgrade");
        let (pending, acked, plan) = q
            .with(|c| {
                let pending: Vec<i64> = c
                    .prepare("SELECT seq FROM received WHERE partner = 'dijon' AND applied = 0 ORDER BY seq")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let acked: i64 =
                    c.query_row("SELECT seq FROM acked WHERE partner = 'dijon'", [], |r| r.get(0))?;
                let plan: String = c.query_row(
                    "EXPLAIN QUERY PLAN SELECT seq, body FROM received WHERE partner = ?1 AND applied = 0 ORDER BY seq LIMIT 100",
                    ["dijon"],
                    |r| r.get(3),
                )?;
                Ok((pending, acked, plan))
            })
            .expect("read");
        assert_eq!(pending, vec![2]);
        assert_eq!(acked, 7);
        assert!(plan.contains("received_pending"), "{plan}");
        let c = q.conn.lock().expect("lock");
        assert_eq!(version(&c), QUEUES_SCHEMA_VERSION);
        drop(c);
        drop(q);
        // Opening again changes nothing.
        Queues::open(&path).expect("reopen");
        assert_eq!(
            version(&Connection::open(&path).expect("open")),
            QUEUES_SCHEMA_VERSION
        );
    }

    #[test]
    fn queues_of_a_newer_release_are_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("federation.sqlite");
        first_release(&path);
        Connection::open(&path)
            .expect("open")
            .pragma_update(None, "user_version", QUEUES_SCHEMA_VERSION + 1)
            .expect("newer");
        let e = Queues::open(&path).err().expect("refused");
        assert!(format!("{e:#}").contains("newer Beffroi"), "{e:#}");
        let c = Connection::open(&path).expect("open");
        let indexes: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'received_pending'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(indexes, 0, "nothing migrated");
    }
}
