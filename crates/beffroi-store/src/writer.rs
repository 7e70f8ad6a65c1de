//! [`SqliteStore`]: the single writer.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use beffroi_core::{DeviceIdx, Incident, IncidentId, Territory, Timestamp};
use beffroi_engine::store::StoredObservation;
use beffroi_engine::{Commit, Restore, Retain, StoreError, WriteBatch};
use rusqlite::{
    Connection, OptionalExtension, Statement, Transaction, TransactionBehavior, params,
};

use crate::error::{Context, Skipped};
use crate::queries;
use crate::rows::{self, INSERT_LOG, UPSERT_INCIDENT, device_field, id_to_sql};

/// Rows deleted per transaction by [`Store::purge_observations`]: small enough that the
/// write lock is held for milliseconds, large enough that fsyncs do not dominate.
pub const PURGE_CHUNK: usize = 5_000;

/// `last_seen` only rises; the watermarks of the fields named in `?3` are replaced (the
/// pipeline only ever raises them, and commits are applied in order); a row whose
/// watermarks are not valid JSON (edited by hand) takes the new ones rather than failing
/// every commit of its device.
const UPSERT_DEVICE_STATE: &str = "INSERT INTO device_state (device, last_seen, watermarks) \
     VALUES (?1, ?2, ?3) ON CONFLICT (device) DO UPDATE SET \
     last_seen = max(last_seen, excluded.last_seen), \
     watermarks = CASE WHEN json_valid(watermarks) \
                       THEN json_patch(watermarks, excluded.watermarks) \
                       ELSE excluded.watermarks END";
const INSERT_REJECTION: &str =
    "INSERT INTO rejections (at, source, reason, detail) VALUES (?1, ?2, ?3, ?4)";
/// A pseudonym met again keeps its first sighting and raises its last.
const UPSERT_IDENTITY: &str = "INSERT INTO identities \
     (pseudonym, identifier, epoch, sealed, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
     ON CONFLICT (pseudonym) DO UPDATE SET \
     first_seen = min(first_seen, excluded.first_seen), \
     last_seen = max(last_seen, excluded.last_seen)";
const ADD_OBSERVATION_COUNT: &str =
    "UPDATE counters SET value = value + ?1 WHERE name = 'observations'";

/// The one writer connection. Owned by the engine's store thread; every call blocks until
/// the data is durable (WAL, `synchronous=FULL`).
pub struct SqliteStore {
    conn: Connection,
    territory: Arc<Territory>,
    skipped: Skipped,
    /// The writer's side of the WAL policy (checkpoints between commits).
    wal: crate::wal::WalControl,
    /// Dropped after `conn` (fields drop in order): the final checkpoint runs last.
    _checkpointer: crate::wal::Checkpointer,
}

impl SqliteStore {
    pub(crate) fn new(
        conn: Connection,
        territory: Arc<Territory>,
        skipped: Skipped,
        wal: crate::wal::WalControl,
        checkpointer: crate::wal::Checkpointer,
    ) -> Self {
        SqliteStore {
            conn,
            territory,
            skipped,
            wal,
            _checkpointer: checkpointer,
        }
    }

    /// Where the WAL's size and checkpoints are reported (`/metrics`).
    pub fn set_wal_metrics(&mut self, m: beffroi_engine::metrics::WalMetrics) {
        self.wal.shared().set_metrics(m);
    }

    /// Size of the WAL file on disk, in bytes.
    pub fn wal_bytes(&self) -> u64 {
        self.wal.shared().file_bytes()
    }

    /// Resolves ids against a new territory from now on (after a territory reload).
    pub fn set_territory(&mut self, territory: Arc<Territory>) {
        self.territory = territory;
    }

    /// Rows left out of listings since the store was opened; see
    /// [`SqliteReader::skipped_rows`](crate::SqliteReader::skipped_rows).
    pub fn skipped_rows(&self) -> u64 {
        self.skipped.get()
    }

    /// Deletes the identities of every epoch not in `alive` (their keys were destroyed: the
    /// sealed values can no longer be opened). Returns how many rows went.
    pub fn forget_identities_except(&mut self, alive: &[u32]) -> Result<usize, StoreError> {
        let tx = self.begin()?;
        let mut gone = 0;
        {
            let epochs: Vec<i64> = tx
                .prepare("SELECT DISTINCT epoch FROM identities")
                .ctx("prepare identity epochs")?
                .query_map([], |r| r.get::<_, i64>(0))
                .ctx("read identity epochs")?
                .collect::<Result<_, _>>()
                .ctx("read identity epochs")?;
            let mut delete = tx
                .prepare("DELETE FROM identities WHERE epoch = ?1")
                .ctx("prepare identity deletion")?;
            for e in epochs {
                if !alive.iter().any(|a| i64::from(*a) == e) {
                    gone += delete.execute([e]).ctx("delete identities")?;
                }
            }
        }
        tx.commit().ctx("commit identity deletion")?;
        self.wal.after_commit(&self.conn);
        if gone > 0 {
            self.wal.truncate_after_erasure(&self.conn);
        }
        Ok(gone)
    }

    fn begin(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin write")
    }
}

impl Commit for SqliteStore {
    fn write(&mut self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let territory = Arc::clone(&self.territory);
        let t = &*territory;
        let tx = self.begin()?;

        if !batch.incidents.is_empty() {
            let mut upsert = tx.prepare_cached(UPSERT_INCIDENT).ctx("prepare incident")?;
            let mut log = tx.prepare_cached(INSERT_LOG).ctx("prepare incident log")?;
            let mut carried = tx
                .prepare_cached(rows::INSERT_CARRIED)
                .ctx("prepare incident pseudonyms")?;
            for change in &batch.incidents {
                let inc = &change.incident;
                rows::upsert_incident(&mut upsert, t, inc)?;
                let id = id_to_sql(inc.id)?;
                for p in &change.pseudonyms {
                    carried
                        .execute(params![id, &**p, inc.updated_at.0])
                        .ctx("write incident pseudonyms")?;
                }
                for entry in &change.log {
                    log.execute(params![
                        id,
                        entry.at.0,
                        entry.actor.to_string(),
                        &*entry.action,
                        entry.detail.as_str(),
                        rows::write_message(entry.message.as_ref())
                    ])
                    .ctx("write incident log")?;
                }
            }
        }

        if !batch.observations.is_empty() {
            let inserted = insert_observations(&tx, t, &batch.observations)?;
            let mut last_seen: HashMap<DeviceIdx, Timestamp> = HashMap::new();
            for o in &batch.observations {
                last_seen
                    .entry(o.device)
                    .and_modify(|at| *at = (*at).max(o.received))
                    .or_insert(o.received);
            }
            let marks = crate::rows::watermarks_by_device(t, &batch.watermarks)?;
            let mut seen = tx
                .prepare_cached(UPSERT_DEVICE_STATE)
                .ctx("prepare device state")?;
            for (device, at) in last_seen {
                let json = marks.get(&device).map_or("{}", String::as_str);
                seen.execute(params![rows::device_id(t, device)?, at.0, json])
                    .ctx("write device state")?;
            }
            if inserted > 0 {
                tx.prepare_cached(ADD_OBSERVATION_COUNT)
                    .ctx("prepare observation count")?
                    .execute([inserted as i64])
                    .ctx("write observation count")?;
            }
        }

        if !batch.identities.is_empty() {
            let mut upsert = tx.prepare_cached(UPSERT_IDENTITY).ctx("prepare identity")?;
            for i in &batch.identities {
                upsert
                    .execute(params![
                        i.sealed.pseudonym.0,
                        i.sealed.identifier.as_str(),
                        i.sealed.epoch,
                        i.sealed.ciphertext,
                        i.seen.0
                    ])
                    .ctx("write identity")?;
            }
        }

        for q in &batch.quarantine {
            tx.prepare_cached(
                "INSERT INTO quarantine_log (device, quarantined, actor, reason, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .ctx("prepare quarantine log")?
            .execute(params![
                rows::device_id(t, q.device)?,
                q.quarantined,
                &*q.actor,
                q.reason,
                q.at.0
            ])
            .ctx("write quarantine log")?;
        }

        if !batch.notes.is_empty() {
            crate::handover::write_notes(&tx, t, &batch.notes)?;
        }
        if !batch.shelving.is_empty() {
            crate::handover::write_shelving(&tx, t, &batch.shelving)?;
        }
        if !batch.units.is_empty() {
            crate::operations::write_units(&tx, &batch.units)?;
        }
        if !batch.crises.is_empty() {
            crate::operations::write_crises(&tx, t, &batch.crises)?;
        }
        if !batch.situations.is_empty() {
            crate::situations::write(&tx, &batch.situations)?;
        }
        for e in &batch.events {
            crate::events::upsert(&tx, e)?;
        }
        if !batch.replay_windows.is_empty() {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO replay_windows (device, highest, bitmap) VALUES (?1, ?2, ?3)
                     ON CONFLICT (device) DO UPDATE SET highest = excluded.highest,
                                                        bitmap = excluded.bitmap",
                )
                .ctx("prepare replay window")?;
            for w in &batch.replay_windows {
                // u64 stored bit for bit in SQLite's i64.
                up.execute(params![
                    rows::device_id(t, w.device)?,
                    w.highest as i64,
                    w.bitmap as i64
                ])
                .ctx("write replay window")?;
            }
        }

        if !batch.rejections.is_empty() {
            let mut insert = tx
                .prepare_cached(INSERT_REJECTION)
                .ctx("prepare rejection")?;
            for r in &batch.rejections {
                insert
                    .execute(params![
                        r.at.0,
                        r.source.as_str(),
                        r.reason.as_str(),
                        r.detail
                    ])
                    .ctx("write rejection")?;
            }
        }

        tx.commit().ctx("commit write")?;
        self.wal.after_commit(&self.conn);
        Ok(())
    }
}

impl Restore for SqliteStore {
    fn active_incidents(&mut self) -> Result<Vec<Incident>, StoreError> {
        queries::active_incidents(&self.conn, &self.territory, &self.skipped)
    }

    fn max_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        queries::max_incident_id(&self.conn)
    }

    fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        queries::incident(&self.conn, &self.territory, id)
    }

    fn last_seen(&mut self) -> Result<Vec<(DeviceIdx, Timestamp)>, StoreError> {
        queries::last_seen(&self.conn, &self.territory, &self.skipped)
    }

    fn watermarks(&mut self) -> Result<Vec<beffroi_engine::store::Watermark>, StoreError> {
        queries::watermarks(&self.conn, &self.territory, &self.skipped)
    }

    fn units(&mut self) -> Result<Vec<beffroi_engine::store::StoredUnit>, StoreError> {
        crate::operations::units(&self.conn, &self.skipped)
    }

    fn crises(&mut self) -> Result<Vec<beffroi_core::crisis::Crisis>, StoreError> {
        crate::operations::crises(&self.conn, &self.territory, &self.skipped)
    }

    fn situations(
        &mut self,
        since: beffroi_core::Timestamp,
    ) -> Result<Vec<beffroi_core::Situation>, StoreError> {
        crate::situations::read(&self.conn, &self.territory, since, &self.skipped)
    }

    fn max_situation_id(&mut self) -> Result<beffroi_core::SituationId, StoreError> {
        crate::situations::max_id(&self.conn)
    }

    fn events(&mut self) -> Result<Vec<beffroi_core::Event>, StoreError> {
        crate::events::all(&self.conn)
    }

    fn replay_windows(&mut self) -> Result<Vec<beffroi_engine::trust::StoredWindow>, StoreError> {
        let t = Arc::clone(&self.territory);
        let mut st = self
            .conn
            .prepare("SELECT device, highest, bitmap FROM replay_windows")
            .ctx("prepare replay windows")?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .ctx("read replay windows")?;
        let mut out = Vec::new();
        for row in rows {
            let (device, highest, bitmap) = row.ctx("read replay window")?;
            // A device no longer in the territory has no window to keep.
            if let Some(d) = t.device_id(&device) {
                out.push(beffroi_engine::trust::StoredWindow {
                    device: d,
                    highest: highest as u64,
                    bitmap: bitmap as u64,
                });
            }
        }
        Ok(out)
    }

    fn quarantine_acts(
        &mut self,
    ) -> Result<Vec<beffroi_engine::sentinel::QuarantineAct>, StoreError> {
        crate::queries::quarantine_log(&self.conn, &self.territory, usize::MAX)
    }

    fn handover_notes(&mut self) -> Result<Vec<beffroi_core::handover::HandoverNote>, StoreError> {
        crate::handover::notes(&self.conn, &self.territory)
    }

    fn shelf_log(&mut self) -> Result<Vec<beffroi_core::shelving::ShelfAct>, StoreError> {
        crate::handover::shelf_log(&self.conn, &self.territory)
    }
}

impl Retain for SqliteStore {
    /// Walks the (device, field) pairs along the primary key (one seek each, no scan) and
    /// deletes each pair's rows older than `before`, at most [`PURGE_CHUNK`] rows per
    /// transaction. Rows of devices no longer in the territory are purged too.
    fn purge_observations(&mut self, before: Timestamp) -> Result<usize, StoreError> {
        let mut total = 0usize;
        // The pair being purged; `None` before the first one.
        let mut pair: Option<(String, String)> = None;
        let mut first = true;
        loop {
            let tx = self.begin()?;
            let mut budget = PURGE_CHUNK;
            let mut finished = false;
            while budget > 0 {
                if first {
                    pair = first_pair(&tx)?;
                    first = false;
                }
                let Some((device, field)) = &pair else {
                    finished = true;
                    break;
                };
                let deleted = tx
                    .prepare_cached(
                        "DELETE FROM observations WHERE device = ?1 AND field = ?2 \
                         AND (time, vkey) IN (SELECT time, vkey FROM observations \
                          WHERE device = ?1 AND field = ?2 AND time < ?3 \
                          ORDER BY time LIMIT ?4)",
                    )
                    .ctx("prepare purge")?
                    .execute(params![device, field, before.0, budget as i64])
                    .ctx("purge observations")?;
                budget -= deleted;
                total += deleted;
                if budget > 0 {
                    // This pair has nothing older left: move on to the next one.
                    pair = next_pair(&tx, device, field)?;
                }
            }
            let deleted_here = PURGE_CHUNK - budget;
            if deleted_here > 0 {
                tx.prepare_cached(
                    "UPDATE counters SET value = value - ?1 WHERE name = 'observations'",
                )
                .ctx("prepare observation count")?
                .execute([deleted_here as i64])
                .ctx("write observation count")?;
            }
            tx.commit().ctx("commit purge")?;
            self.wal.after_commit(&self.conn);
            if finished {
                break;
            }
        }
        if total > 0 {
            self.wal.truncate_after_erasure(&self.conn);
            tracing::info!(deleted = total, before = %before, "observations purged");
        }
        Ok(total)
    }

    fn purge(
        &mut self,
        plan: &beffroi_engine::store::PurgePlan,
    ) -> Result<beffroi_engine::store::PurgeReport, StoreError> {
        let territory = Arc::clone(&self.territory);
        crate::retention::purge(&mut self.conn, &mut self.wal, &territory, plan)
    }

    fn legal_holds(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<beffroi_engine::store::LegalHold>, StoreError> {
        crate::retention::holds(&self.conn, now, false)
    }

    fn record_purge(&mut self, at: Timestamp, detail: &str) -> Result<(), StoreError> {
        crate::retention::record_purge(&mut self.conn, &mut self.wal, at, detail)
    }

    fn set_hold(&mut self, hold: &beffroi_engine::store::LegalHold) -> Result<(), StoreError> {
        crate::retention::set_hold(&mut self.conn, &mut self.wal, hold)
    }

    fn release_hold(
        &mut self,
        incident: IncidentId,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        crate::retention::release_hold(&mut self.conn, &mut self.wal, incident, by, at)
    }

    fn erase_subject(
        &mut self,
        pseudonyms: &[String],
        now: Timestamp,
    ) -> Result<beffroi_engine::store::ErasureReport, StoreError> {
        crate::retention::erase_subject(&mut self.conn, &mut self.wal, pseudonyms, now)
    }
}

pub(crate) fn first_pair(tx: &Connection) -> Result<Option<(String, String)>, StoreError> {
    tx.prepare_cached("SELECT device, field FROM observations ORDER BY device, field LIMIT 1")
        .ctx("prepare purge walk")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .ctx("purge walk")
}

/// The (device, field) pair that follows `(device, field)` in key order.
pub(crate) fn next_pair(
    tx: &Connection,
    device: &str,
    field: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let same_device: Option<String> = tx
        .prepare_cached(
            "SELECT field FROM observations WHERE device = ?1 AND field > ?2 \
             ORDER BY field LIMIT 1",
        )
        .ctx("prepare purge walk")?
        .query_row([device, field], |r| r.get(0))
        .optional()
        .ctx("purge walk")?;
    if let Some(next) = same_device {
        return Ok(Some((device.to_string(), next)));
    }
    tx.prepare_cached(
        "SELECT device, field FROM observations WHERE device > ?1 \
         ORDER BY device, field LIMIT 1",
    )
    .ctx("prepare purge walk")?
    .query_row([device], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
    .ctx("purge walk")
}

// ---- observation inserts ---------------------------------------------------------------

/// Observations inserted per statement: one `VALUES` list of this many rows amortises the
/// per-statement cost (10 parameters a row, far below SQLite's limit of 32,766).
const ROWS_PER_INSERT: usize = 64;

/// `INSERT OR IGNORE` of `rows` observations, parameters numbered row after row.
fn insert_observations_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR IGNORE INTO observations \
         (device, field, time, vkey, value, value_bool, value_text, received, trust, quarantined) \
         VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql
}

static INSERT_OBSERVATIONS: LazyLock<String> =
    LazyLock::new(|| insert_observations_sql(ROWS_PER_INSERT));
static INSERT_OBSERVATION: LazyLock<String> = LazyLock::new(|| insert_observations_sql(1));

/// Raises a people count's bucket row to the highest count seen in the bucket.
const RAISE_PEOPLE_COUNT: &str = "UPDATE observations SET value = MAX(value, ?4) \
     WHERE device = ?1 AND field = ?2 AND time = ?3 AND vkey = 0";

/// Inserts the observations (idempotently) and returns how many were new. People counts
/// (`people_count` fields, which the pipeline stamps with their time bucket's start) keep
/// one row per counter and bucket holding the bucket's highest count.
fn insert_observations(
    tx: &Connection,
    t: &Territory,
    observations: &[StoredObservation],
) -> Result<usize, StoreError> {
    let is_people = |o: &StoredObservation| {
        t.kind_of(o.device)
            .fields
            .get(o.field.get())
            .is_some_and(|f| f.people_count)
    };
    if t.kinds
        .iter()
        .any(|k| k.fields.iter().any(|f| f.people_count))
        && observations.iter().any(is_people)
    {
        let (people, rest): (Vec<_>, Vec<_>) =
            observations.iter().cloned().partition(|o| is_people(o));
        let mut inserted = insert_rows(tx, t, &rest)?;
        let mut one = tx
            .prepare_cached(&INSERT_OBSERVATION)
            .ctx("prepare observation")?;
        let mut raise = tx
            .prepare_cached(RAISE_PEOPLE_COUNT)
            .ctx("prepare people count")?;
        for o in &people {
            bind_observations(&mut one, t, std::slice::from_ref(o))?;
            let n = one.raw_execute().ctx("write people count")?;
            inserted += n;
            if n == 0
                && let beffroi_core::Value::Number(v) = o.value
            {
                let (device, field) = device_field(t, o.device, o.field)?;
                raise
                    .execute(rusqlite::params![device, field, o.time.0, v])
                    .ctx("raise people count")?;
            }
        }
        return Ok(inserted);
    }
    insert_rows(tx, t, observations)
}

fn insert_rows(
    tx: &Connection,
    t: &Territory,
    observations: &[StoredObservation],
) -> Result<usize, StoreError> {
    let mut inserted = 0;
    let mut many = tx
        .prepare_cached(&INSERT_OBSERVATIONS)
        .ctx("prepare observations")?;
    let mut chunks = observations.chunks_exact(ROWS_PER_INSERT);
    for chunk in &mut chunks {
        bind_observations(&mut many, t, chunk)?;
        inserted += many.raw_execute().ctx("write observations")?;
    }
    let mut one = tx
        .prepare_cached(&INSERT_OBSERVATION)
        .ctx("prepare observation")?;
    for o in chunks.remainder() {
        bind_observations(&mut one, t, std::slice::from_ref(o))?;
        inserted += one.raw_execute().ctx("write observation")?;
    }
    Ok(inserted)
}

fn bind_observations(
    stmt: &mut Statement<'_>,
    t: &Territory,
    observations: &[StoredObservation],
) -> Result<(), StoreError> {
    for (i, o) in observations.iter().enumerate() {
        let (device, field) = device_field(t, o.device, o.field)?;
        let (value, value_bool, value_text) = rows::value_columns(&o.value);
        let at = i * COLUMNS_PER_ROW;
        let bound = (|| {
            stmt.raw_bind_parameter(at + 1, device)?;
            stmt.raw_bind_parameter(at + 2, field)?;
            stmt.raw_bind_parameter(at + 3, o.time.0)?;
            stmt.raw_bind_parameter(at + 4, value_key(t, o))?;
            stmt.raw_bind_parameter(at + 5, value)?;
            stmt.raw_bind_parameter(at + 6, value_bool)?;
            stmt.raw_bind_parameter(at + 7, value_text)?;
            stmt.raw_bind_parameter(at + 8, o.received.0)?;
            stmt.raw_bind_parameter(at + 9, o.trust.as_str())?;
            stmt.raw_bind_parameter(at + 10, o.quarantined)
        })();
        bound.ctx("bind observation")?;
    }
    Ok(())
}

/// Parameters of one observation row in [`insert_observations_sql`].
const COLUMNS_PER_ROW: usize = 10;

/// The row's value key: the value's ([`beffroi_core::Value::key`]), or 0 for a people count,
/// whose one row per bucket keeps the bucket's highest count.
fn value_key(t: &Territory, o: &StoredObservation) -> i64 {
    let people = t
        .kind_of(o.device)
        .fields
        .get(o.field.get())
        .is_some_and(|f| f.people_count);
    if people { 0 } else { o.value.key() }
}
