//! [`PgStore`]: the single writer.

use std::collections::HashMap;
use std::sync::Arc;

use beffroi_core::{DeviceIdx, Incident, IncidentId, Territory, Timestamp};
use beffroi_engine::store::{StoredIdentity, StoredObservation};
use beffroi_engine::{Commit, Restore, Retain, StoreError, WriteBatch};
use postgres::{Client, Transaction};

use crate::error::{Context, Skipped};
use crate::queries;
use crate::rows::{self, INSERT_LOG, UPSERT_INCIDENT, count_to_sql, device_field, id_to_sql};

/// `last_seen` only rises; the watermarks of the fields named in the new object are
/// replaced (the pipeline only ever raises them, and commits are applied in order). One
/// statement for every device of the batch (each named once), from arrays.
const UPSERT_DEVICE_STATE: &str = "INSERT INTO device_state (device, last_seen, watermarks) \
     SELECT d, l, w::jsonb FROM UNNEST($1::text[], $2::int8[], $3::text[]) AS u(d, l, w) \
     ON CONFLICT (device) DO UPDATE SET \
     last_seen = GREATEST(device_state.last_seen, excluded.last_seen), \
     watermarks = device_state.watermarks || excluded.watermarks";
/// Rejections of a batch in one statement, from arrays, in their order (`WITH ORDINALITY`:
/// the identity column numbers them as they came).
const INSERT_REJECTIONS: &str = "INSERT INTO rejections (at, source, reason, detail) \
     SELECT at, source, reason, detail FROM \
     UNNEST($1::int8[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY \
     AS u(at, source, reason, detail, n) ORDER BY n";
/// A pseudonym met again keeps its first sighting and raises its last. One statement for
/// every pseudonym of the batch (each named once), from arrays.
const UPSERT_IDENTITY: &str = "INSERT INTO identities \
     (pseudonym, identifier, epoch, sealed, first_seen, last_seen) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::bytea[], $5::int8[], \
     $6::int8[]) \
     ON CONFLICT (pseudonym) DO UPDATE SET \
     first_seen = LEAST(identities.first_seen, excluded.first_seen), \
     last_seen = GREATEST(identities.last_seen, excluded.last_seen)";
const ADD_OBSERVATION_COUNT: &str =
    "UPDATE counters SET value = value + $1 WHERE name = 'observations'";

/// The one writer connection. Owned by the engine's store thread; every call blocks until
/// the data is durable (`synchronous_commit = on`).
pub struct PgStore {
    /// `Some` until `drop`.
    client: Option<Client>,
    config: postgres::Config,
    territory: Arc<Territory>,
    skipped: Skipped,
    /// The epoch this writer holds once fenced ([`crate::fence::Fence::take`]); 0: not a
    /// cluster node's, never checked.
    fence: Arc<std::sync::atomic::AtomicI64>,
    /// The epoch set on the current connection's session.
    applied_fence: i64,
}

impl PgStore {
    pub(crate) fn new(
        client: Client,
        config: postgres::Config,
        territory: Arc<Territory>,
        skipped: Skipped,
    ) -> Self {
        PgStore {
            client: Some(client),
            config,
            territory,
            skipped,
            fence: Arc::default(),
            applied_fence: 0,
        }
    }

    /// Compares the server's pseudonymisation vault with the store's record
    /// ([`crate::vault`]), recording the epochs it does not know yet.
    pub fn check_vault(
        &mut self,
        checks: &[(u32, String)],
    ) -> Result<crate::vault::VaultCheck, StoreError> {
        crate::vault::check_vault(self.client()?, checks)
    }

    /// The handle that fences this writer: once taken, every write transaction of this
    /// store first checks that no node took over since.
    pub fn fence(&self) -> crate::fence::Fence {
        crate::fence::Fence::new(self.config.clone(), Arc::clone(&self.fence))
    }

    /// Resolves ids against a new territory from now on (after a territory reload).
    pub fn set_territory(&mut self, territory: Arc<Territory>) {
        self.territory = territory;
    }

    /// Rows left out of listings since the store was opened; see
    /// [`PgReader::skipped_rows`](crate::PgReader::skipped_rows).
    pub fn skipped_rows(&self) -> u64 {
        self.skipped.get()
    }

    /// Deletes the identities of every epoch not in `alive` (their keys were destroyed: the
    /// sealed values can no longer be opened). Returns how many rows went.
    pub fn forget_identities_except(&mut self, alive: &[u32]) -> Result<usize, StoreError> {
        let alive: Vec<i64> = alive.iter().map(|a| i64::from(*a)).collect();
        let mut tx = self.begin()?;
        let gone = tx
            .execute(
                "DELETE FROM identities WHERE NOT (epoch = ANY($1))",
                &[&alive],
            )
            .ctx("delete identities")?;
        tx.commit().ctx("commit identity deletion")?;
        Ok(usize::try_from(gone).unwrap_or(usize::MAX))
    }

    /// The connection, reconnected first when the server closed it (restart, failover):
    /// the engine retries a failed commit, and the retry then finds a live connection.
    /// The session carries this writer's fence epoch, set again on a new connection.
    pub(crate) fn client(&mut self) -> Result<&mut Client, StoreError> {
        let mut client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            closed => {
                tracing::warn!("store connection closed; reconnecting");
                crate::close_apart(closed.into_iter().collect());
                self.applied_fence = 0;
                crate::connect_writer(&self.config)?
            }
        };
        let epoch = self.fence.load(std::sync::atomic::Ordering::Acquire);
        if epoch != self.applied_fence {
            let set = client
                .batch_execute(&format!("SET beffroi.fence_epoch = '{epoch}'"))
                .ctx("set the fence epoch");
            if let Err(e) = set {
                self.client = Some(client);
                return Err(e);
            }
            self.applied_fence = epoch;
        }
        Ok(self.client.insert(client))
    }

    pub(crate) fn begin(&mut self) -> Result<Transaction<'_>, StoreError> {
        let fenced = self.fence.load(std::sync::atomic::Ordering::Acquire) > 0;
        let mut tx = self.client()?.transaction().ctx("begin write")?;
        if fenced {
            crate::fence::check(&mut tx)?;
        }
        Ok(tx)
    }

    pub(crate) fn territory(&self) -> Arc<Territory> {
        Arc::clone(&self.territory)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        crate::close_apart(self.client.take().into_iter().collect());
    }
}

impl Commit for PgStore {
    fn write(&mut self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let territory = Arc::clone(&self.territory);
        let t = &*territory;
        let mut tx = self.begin()?;

        if !batch.incidents.is_empty() {
            let upsert = tx.prepare(UPSERT_INCIDENT).ctx("prepare incident")?;
            let log = tx.prepare(INSERT_LOG).ctx("prepare incident log")?;
            let carried = tx
                .prepare(rows::INSERT_CARRIED)
                .ctx("prepare incident pseudonyms")?;
            for change in &batch.incidents {
                let inc = &change.incident;
                rows::upsert_incident(&mut tx, &upsert, t, inc)?;
                let id = id_to_sql(inc.id)?;
                for p in &change.pseudonyms {
                    tx.execute(&carried, &[&id, &&**p, &inc.updated_at.0])
                        .ctx("write incident pseudonyms")?;
                }
                for entry in &change.log {
                    tx.execute(
                        &log,
                        &[
                            &id,
                            &entry.at.0,
                            &entry.actor.to_string(),
                            &&*entry.action,
                            &entry.detail.as_str(),
                            &rows::write_message(entry.message.as_ref()),
                        ],
                    )
                    .ctx("write incident log")?;
                }
            }
        }

        if !batch.observations.is_empty() {
            let inserted = insert_observations(&mut tx, t, &batch.observations)?;
            let mut last_seen: HashMap<DeviceIdx, Timestamp> = HashMap::new();
            for o in &batch.observations {
                last_seen
                    .entry(o.device)
                    .and_modify(|at| *at = (*at).max(o.received))
                    .or_insert(o.received);
            }
            let marks = crate::rows::watermarks_by_device(t, &batch.watermarks)?;
            // In device order: two writers never deadlock on these rows.
            let mut last_seen: Vec<_> = last_seen.into_iter().collect();
            last_seen.sort_by_key(|(d, _)| *d);
            let mut devices = Vec::with_capacity(last_seen.len());
            let mut times = Vec::with_capacity(last_seen.len());
            let mut marks_json = Vec::with_capacity(last_seen.len());
            for (device, at) in last_seen {
                devices.push(rows::device_id(t, device)?);
                times.push(at.0);
                marks_json.push(marks.get(&device).map_or("{}", String::as_str));
            }
            tx.execute(UPSERT_DEVICE_STATE, &[&devices, &times, &marks_json])
                .ctx("write device state")?;
            if inserted > 0 {
                tx.execute(ADD_OBSERVATION_COUNT, &[&count_to_sql(inserted)])
                    .ctx("write observation count")?;
            }
        }

        if !batch.identities.is_empty() {
            // Each pseudonym once: its earliest and latest sightings of the batch.
            let mut seen: Vec<(&StoredIdentity, i64, i64)> = Vec::new();
            let mut at: HashMap<&str, usize> = HashMap::new();
            for i in &batch.identities {
                match at.get(&*i.sealed.pseudonym.0) {
                    Some(&k) => {
                        let (_, first, last) = &mut seen[k];
                        *first = (*first).min(i.seen.0);
                        *last = (*last).max(i.seen.0);
                    }
                    None => {
                        at.insert(&i.sealed.pseudonym.0, seen.len());
                        seen.push((i, i.seen.0, i.seen.0));
                    }
                }
            }
            let pseudonyms: Vec<&str> = seen
                .iter()
                .map(|(i, _, _)| &*i.sealed.pseudonym.0)
                .collect();
            let identifiers: Vec<&str> = seen
                .iter()
                .map(|(i, _, _)| i.sealed.identifier.as_str())
                .collect();
            let epochs: Vec<i64> = seen
                .iter()
                .map(|(i, _, _)| i64::from(i.sealed.epoch))
                .collect();
            let sealed: Vec<&[u8]> = seen.iter().map(|(i, _, _)| &*i.sealed.ciphertext).collect();
            let firsts: Vec<i64> = seen.iter().map(|(_, f, _)| *f).collect();
            let lasts: Vec<i64> = seen.iter().map(|(_, _, l)| *l).collect();
            tx.execute(
                UPSERT_IDENTITY,
                &[&pseudonyms, &identifiers, &epochs, &sealed, &firsts, &lasts],
            )
            .ctx("write identities")?;
        }

        for q in &batch.quarantine {
            tx.execute(
                "INSERT INTO quarantine_log (device, quarantined, actor, reason, at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &rows::device_id(t, q.device)?,
                    &q.quarantined,
                    &&*q.actor,
                    &q.reason,
                    &q.at.0,
                ],
            )
            .ctx("write quarantine log")?;
        }

        if !batch.notes.is_empty() {
            crate::handover::write_notes(&mut tx, t, &batch.notes)?;
        }
        if !batch.shelving.is_empty() {
            crate::handover::write_shelving(&mut tx, t, &batch.shelving)?;
        }
        if !batch.units.is_empty() {
            crate::operations::write_units(&mut tx, &batch.units)?;
        }
        if !batch.crises.is_empty() {
            crate::operations::write_crises(&mut tx, t, &batch.crises)?;
        }
        if !batch.situations.is_empty() {
            crate::situations::write(&mut tx, &batch.situations)?;
        }
        for e in &batch.events {
            crate::events::upsert(&mut tx, e)?;
        }
        if !batch.replay_windows.is_empty() {
            let up = tx
                .prepare(
                    "INSERT INTO replay_windows (device, highest, bitmap) VALUES ($1, $2, $3) \
                     ON CONFLICT (device) DO UPDATE SET highest = excluded.highest, \
                     bitmap = excluded.bitmap",
                )
                .ctx("prepare replay window")?;
            for w in &batch.replay_windows {
                // u64 stored bit for bit in a BIGINT.
                tx.execute(
                    &up,
                    &[
                        &rows::device_id(t, w.device)?,
                        &(w.highest as i64),
                        &(w.bitmap as i64),
                    ],
                )
                .ctx("write replay window")?;
            }
        }

        if !batch.rejections.is_empty() {
            let r = &batch.rejections;
            let at: Vec<i64> = r.iter().map(|r| r.at.0).collect();
            let source: Vec<&str> = r.iter().map(|r| r.source.as_str()).collect();
            let reason: Vec<&str> = r.iter().map(|r| r.reason.as_str()).collect();
            let detail: Vec<&str> = r.iter().map(|r| r.detail.as_str()).collect();
            tx.execute(INSERT_REJECTIONS, &[&at, &source, &reason, &detail])
                .ctx("write rejections")?;
        }

        tx.commit().ctx("commit write")?;
        Ok(())
    }
}

impl Restore for PgStore {
    fn active_incidents(&mut self) -> Result<Vec<Incident>, StoreError> {
        let t = self.territory();
        let skipped = self.skipped.clone();
        queries::active_incidents(self.client()?, &t, &skipped)
    }

    fn max_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        queries::max_incident_id(self.client()?)
    }

    fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let t = self.territory();
        queries::incident(self.client()?, &t, id)
    }

    fn last_seen(&mut self) -> Result<Vec<(DeviceIdx, Timestamp)>, StoreError> {
        let t = self.territory();
        let skipped = self.skipped.clone();
        queries::last_seen(self.client()?, &t, &skipped)
    }

    fn watermarks(&mut self) -> Result<Vec<beffroi_engine::store::Watermark>, StoreError> {
        let t = self.territory();
        let skipped = self.skipped.clone();
        queries::watermarks(self.client()?, &t, &skipped)
    }

    fn units(&mut self) -> Result<Vec<beffroi_engine::store::StoredUnit>, StoreError> {
        let skipped = self.skipped.clone();
        crate::operations::units(self.client()?, &skipped)
    }

    fn crises(&mut self) -> Result<Vec<beffroi_core::crisis::Crisis>, StoreError> {
        let t = self.territory();
        let skipped = self.skipped.clone();
        crate::operations::crises(self.client()?, &t, &skipped)
    }

    fn situations(
        &mut self,
        since: beffroi_core::Timestamp,
    ) -> Result<Vec<beffroi_core::Situation>, StoreError> {
        let t = self.territory();
        let skipped = self.skipped.clone();
        crate::situations::read(self.client()?, &t, since, &skipped)
    }

    fn max_situation_id(&mut self) -> Result<beffroi_core::SituationId, StoreError> {
        crate::situations::max_id(self.client()?)
    }

    fn events(&mut self) -> Result<Vec<beffroi_core::Event>, StoreError> {
        crate::events::all(self.client()?)
    }

    fn replay_windows(&mut self) -> Result<Vec<beffroi_engine::trust::StoredWindow>, StoreError> {
        let t = self.territory();
        let rows = self
            .client()?
            .query("SELECT device, highest, bitmap FROM replay_windows", &[])
            .ctx("read replay windows")?;
        let mut out = Vec::new();
        for row in rows {
            use crate::error::Get;
            let device: String = row.at(0)?;
            let highest: i64 = row.at(1)?;
            let bitmap: i64 = row.at(2)?;
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
        let t = self.territory();
        crate::queries::quarantine_log(self.client()?, &t, usize::MAX)
    }

    fn handover_notes(&mut self) -> Result<Vec<beffroi_core::handover::HandoverNote>, StoreError> {
        let t = self.territory();
        crate::handover::notes(self.client()?, &t)
    }

    fn shelf_log(&mut self) -> Result<Vec<beffroi_core::shelving::ShelfAct>, StoreError> {
        let t = self.territory();
        crate::handover::shelf_log(self.client()?, &t)
    }
}

impl Retain for PgStore {
    /// Deletes observations older than `before` in transactions of at most [`PURGE_CHUNK`]
    /// rows (through the `time` index), the observation count adjusted in each. Rows of
    /// devices no longer in the territory are purged too.
    fn purge_observations(&mut self, before: Timestamp) -> Result<usize, StoreError> {
        let mut total = 0usize;
        loop {
            let mut tx = self.begin()?;
            let deleted = tx
                .execute(
                    "DELETE FROM observations WHERE ctid IN \
                     (SELECT ctid FROM observations WHERE time < $1 LIMIT $2)",
                    &[&before.0, &count_to_sql(PURGE_CHUNK)],
                )
                .ctx("purge observations")?;
            let deleted = usize::try_from(deleted).unwrap_or(usize::MAX);
            if deleted > 0 {
                tx.execute(
                    "UPDATE counters SET value = value - $1 WHERE name = 'observations'",
                    &[&count_to_sql(deleted)],
                )
                .ctx("write observation count")?;
            }
            tx.commit().ctx("commit purge")?;
            total += deleted;
            if deleted < PURGE_CHUNK {
                break;
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, before = %before, "observations purged");
        }
        Ok(total)
    }

    fn purge(
        &mut self,
        plan: &beffroi_engine::store::PurgePlan,
    ) -> Result<beffroi_engine::store::PurgeReport, StoreError> {
        crate::retention::purge(self, plan)
    }

    fn legal_holds(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<beffroi_engine::store::LegalHold>, StoreError> {
        crate::retention::holds(self.client()?, now, false)
    }

    fn record_purge(&mut self, at: Timestamp, detail: &str) -> Result<(), StoreError> {
        crate::retention::record_purge(self.client()?, at, detail)
    }

    fn set_hold(&mut self, hold: &beffroi_engine::store::LegalHold) -> Result<(), StoreError> {
        crate::retention::set_hold(self.client()?, hold)
    }

    fn release_hold(
        &mut self,
        incident: IncidentId,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        crate::retention::release_hold(self.client()?, incident, by, at)
    }

    fn erase_subject(
        &mut self,
        pseudonyms: &[String],
        now: Timestamp,
    ) -> Result<beffroi_engine::store::ErasureReport, StoreError> {
        crate::retention::erase_subject(self.client()?, pseudonyms, now)
    }
}

/// Rows deleted per transaction by [`Store::purge_observations`]: small enough that a
/// purge never holds many row locks for long, large enough that commits do not dominate.
pub const PURGE_CHUNK: usize = 5_000;

// ---- observation inserts ---------------------------------------------------------------

/// Observations inserted per statement, as parallel arrays expanded by `UNNEST`: one round
/// trip per this many rows, whatever the batch size.
const ROWS_PER_INSERT: usize = 5_000;

/// Inserts rows given as arrays, ignoring those already stored (same device, field, time
/// and value key): the affected row count is the number of new rows.
const INSERT_OBSERVATIONS: &str = "INSERT INTO observations \
     (device, field, time, vkey, value, value_bool, value_text, received, trust, quarantined) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::float8[], \
     $6::bool[], $7::text[], $8::int8[], $9::text[], $10::bool[]) \
     ON CONFLICT (device, field, time, vkey) DO NOTHING";

/// A people count keeps one row per counter and bucket (value key 0) holding the bucket's
/// highest count; `xmax = 0` tells a new row from a raised one.
const UPSERT_PEOPLE_COUNT: &str = "INSERT INTO observations \
     (device, field, time, vkey, value, value_bool, value_text, received, trust, quarantined) \
     VALUES ($1, $2, $3, 0, $4, NULL, NULL, $5, $6, $7) \
     ON CONFLICT (device, field, time, vkey) DO UPDATE SET \
     value = GREATEST(observations.value, excluded.value) \
     RETURNING (xmax = 0)";

/// Inserts the observations (idempotently) and returns how many were new. People counts
/// (`people_count` fields, which the pipeline stamps with their time bucket's start) keep
/// one row per counter and bucket holding the bucket's highest count.
fn insert_observations(
    tx: &mut Transaction<'_>,
    t: &Territory,
    observations: &[StoredObservation],
) -> Result<usize, StoreError> {
    let is_people = |o: &StoredObservation| {
        matches!(o.value, beffroi_core::Value::Number(_))
            && t.kind_of(o.device)
                .fields
                .get(o.field.get())
                .is_some_and(|f| f.people_count)
    };
    if !t
        .kinds
        .iter()
        .any(|k| k.fields.iter().any(|f| f.people_count))
        || !observations.iter().any(is_people)
    {
        return insert_rows(tx, t, observations);
    }
    let (people, rest): (Vec<_>, Vec<_>) = observations.iter().cloned().partition(is_people);
    let mut inserted = insert_rows(tx, t, &rest)?;
    let upsert = tx
        .prepare(UPSERT_PEOPLE_COUNT)
        .ctx("prepare people count")?;
    for o in &people {
        let (device, field) = device_field(t, o.device, o.field)?;
        let (value, _, _) = rows::value_columns(&o.value);
        let row = tx
            .query_one(
                &upsert,
                &[
                    &device,
                    &field,
                    &o.time.0,
                    &value,
                    &o.received.0,
                    &o.trust.as_str(),
                    &o.quarantined,
                ],
            )
            .ctx("write people count")?;
        let new: bool = crate::error::Get::at(&row, 0)?;
        inserted += usize::from(new);
    }
    Ok(inserted)
}

fn insert_rows(
    tx: &mut Transaction<'_>,
    t: &Territory,
    observations: &[StoredObservation],
) -> Result<usize, StoreError> {
    let mut inserted = 0;
    let insert = tx
        .prepare(INSERT_OBSERVATIONS)
        .ctx("prepare observations")?;
    for chunk in observations.chunks(ROWS_PER_INSERT) {
        let n = chunk.len();
        let mut devices = Vec::with_capacity(n);
        let mut fields = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut vkeys = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        let mut bools = Vec::with_capacity(n);
        let mut texts = Vec::with_capacity(n);
        let mut received = Vec::with_capacity(n);
        let mut trust = Vec::with_capacity(n);
        let mut quarantined = Vec::with_capacity(n);
        for o in chunk {
            let (device, field) = device_field(t, o.device, o.field)?;
            let (value, value_bool, value_text) = rows::value_columns(&o.value);
            devices.push(device);
            fields.push(field);
            times.push(o.time.0);
            vkeys.push(o.value.key());
            values.push(value);
            bools.push(value_bool);
            texts.push(value_text);
            received.push(o.received.0);
            trust.push(o.trust.as_str());
            quarantined.push(o.quarantined);
        }
        let n = tx
            .execute(
                &insert,
                &[
                    &devices,
                    &fields,
                    &times,
                    &vkeys,
                    &values,
                    &bools,
                    &texts,
                    &received,
                    &trust,
                    &quarantined,
                ],
            )
            .ctx("write observations")?;
        inserted += usize::try_from(n).unwrap_or(usize::MAX);
    }
    Ok(inserted)
}
