//! Retention purge, legal holds and a person's requests on SQLite.
//!
//! Every step works in bounded transactions ([`PURGE_CHUNK`] rows at most, or
//! [`RECORD_CHUNK`] incidents or crises) so that the write lock is held for milliseconds
//! and the ingest keeps flowing between them. What a legal hold in force protects is
//! gathered first into temporary tables of the writer connection:
//! `temp.held_incidents`, `temp.held_windows` (the device of each held incident, from
//! one hour before its opening to its closing) and `temp.held_pseudonyms` (the pseudonyms
//! its title, evidence, log and window observations mention).

use std::collections::BTreeSet;

use crate::wal::WalControl;
use beffroi_core::territory::DataCategory;
use beffroi_core::{IncidentId, Territory, Timestamp};
use beffroi_engine::StoreError;
use beffroi_engine::retention::{
    ERASED, ErasureReport, INCIDENT_WINDOW_BEFORE, LegalHold, PurgePlan, PurgeReport, PurgeRun,
    StoreRows, SubjectData, SubjectIncident, SubjectObservation, erase_pseudonyms, pseudonyms_in,
    redact_pseudonyms,
};
use beffroi_store_rows::retention::{cutoff_of, redact_actor, redact_sop};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::error::Context;
use crate::writer::PURGE_CHUNK;

/// Incidents or crises redacted or deleted per transaction.
pub const RECORD_CHUNK: usize = 200;

fn begin(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("begin purge")
}

const HELD_TABLES: &str = "
CREATE TEMP TABLE IF NOT EXISTS held_incidents (id INTEGER PRIMARY KEY);
CREATE TEMP TABLE IF NOT EXISTS held_windows (device TEXT NOT NULL, from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS held_pseudonyms (p TEXT PRIMARY KEY);
DELETE FROM temp.held_incidents;
DELETE FROM temp.held_windows;
DELETE FROM temp.held_pseudonyms;
";

/// id, device, opened_at, closed_at, title, evidence of a held incident.
type HeldRow = (i64, Option<String>, i64, Option<i64>, String, String);
/// id, status, opened_at, in title, in evidence.
type MentionRow = (i64, String, i64, bool, bool);
/// log id, incident id, at, action.
type MentionLogRow = (i64, i64, i64, String);

/// Fills the temporary tables of what the holds in force at `now` protect; returns the
/// held incidents.
fn gather_held(
    conn: &mut Connection,
    wal: &mut WalControl,
    now: Timestamp,
) -> Result<Vec<IncidentId>, StoreError> {
    let tx = begin(conn)?;
    tx.execute_batch(HELD_TABLES).ctx("prepare held tables")?;
    let held: Vec<HeldRow> = {
        let mut stmt = tx
            .prepare(
                "SELECT DISTINCT i.id, i.device, i.opened_at, i.closed_at, i.title, i.evidence \
                 FROM legal_holds h JOIN incidents i ON i.id = h.incident_id \
                 WHERE h.released_at IS NULL AND h.until > ?1",
            )
            .ctx("prepare held incidents")?;
        stmt.query_map([now.0], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .ctx("read held incidents")?
        .collect::<Result<_, _>>()
        .ctx("read held incidents")?
    };
    let mut pseudonyms = BTreeSet::new();
    for (id, device, opened, closed, title, evidence) in &held {
        tx.execute(
            "INSERT OR IGNORE INTO temp.held_incidents (id) VALUES (?1)",
            [id],
        )
        .ctx("write held incident")?;
        pseudonyms.extend(pseudonyms_in(title).map(str::to_string));
        pseudonyms.extend(pseudonyms_in(evidence).map(str::to_string));
        let mut carried = tx
            .prepare_cached("SELECT pseudonym FROM incident_pseudonyms WHERE incident_id = ?1")
            .ctx("prepare held incident pseudonyms")?;
        for p in carried
            .query_map([id], |r| r.get::<_, String>(0))
            .ctx("read held incident pseudonyms")?
        {
            pseudonyms.insert(p.ctx("read held incident pseudonyms")?);
        }
        let mut log = tx
            .prepare_cached("SELECT detail FROM incident_log WHERE incident_id = ?1")
            .ctx("prepare held log")?;
        for d in log
            .query_map([id], |r| r.get::<_, String>(0))
            .ctx("read held log")?
        {
            pseudonyms.extend(pseudonyms_in(&d.ctx("read held log")?).map(str::to_string));
        }
        if let Some(device) = device {
            let from = opened - INCIDENT_WINDOW_BEFORE.0;
            let to = closed.unwrap_or(now.0);
            tx.execute(
                "INSERT INTO temp.held_windows (device, from_ms, to_ms) VALUES (?1, ?2, ?3)",
                params![device, from, to],
            )
            .ctx("write held window")?;
            let mut obs = tx
                .prepare_cached(
                    "SELECT value_text FROM observations WHERE device = ?1 AND time BETWEEN ?2 AND ?3 \
                     AND value_text IS NOT NULL",
                )
                .ctx("prepare held observations")?;
            for v in obs
                .query_map(params![device, from, to], |r| r.get::<_, String>(0))
                .ctx("read held observations")?
            {
                pseudonyms
                    .extend(pseudonyms_in(&v.ctx("read held observations")?).map(str::to_string));
            }
        }
    }
    for p in &pseudonyms {
        tx.execute(
            "INSERT OR IGNORE INTO temp.held_pseudonyms (p) VALUES (?1)",
            [p],
        )
        .ctx("write held pseudonym")?;
    }
    tx.commit().ctx("commit held tables")?;
    wal.after_commit(conn);
    Ok(held
        .iter()
        .filter_map(|h| u64::try_from(h.0).ok().map(IncidentId))
        .collect())
}

/// The whole purge; see the module documentation of `beffroi_engine::retention`.
pub(crate) fn purge(
    conn: &mut Connection,
    wal: &mut WalControl,
    t: &Territory,
    plan: &PurgePlan,
) -> Result<PurgeReport, StoreError> {
    let mut report = PurgeReport {
        held_incidents: gather_held(conn, wal, plan.now)?,
        ..PurgeReport::default()
    };
    purge_observations(conn, wal, t, plan, &mut report)?;
    // Identities past the longest personal limit, unless a held incident mentions them.
    let n = delete_chunked(
        conn,
        wal,
        "DELETE FROM identities WHERE pseudonym IN (SELECT pseudonym FROM identities \
         WHERE last_seen < ?1 AND pseudonym NOT IN (SELECT p FROM temp.held_pseudonyms) LIMIT ?2)",
        plan.identities.0,
    )?;
    report.remove("identities", DataCategory::Personal, n);
    let n = delete_destroyed_epochs(conn, wal, plan)?;
    report.remove("identities", DataCategory::Personal, n);
    delete_closed(conn, wal, plan, &mut report, ClosedRecords::INCIDENTS)?;
    redact_incidents(conn, wal, plan, &mut report)?;
    delete_closed(conn, wal, plan, &mut report, ClosedRecords::CRISES)?;
    redact_crises(conn, wal, plan, &mut report)?;
    let n = delete_chunked(
        conn,
        wal,
        "DELETE FROM rejections WHERE id IN (SELECT id FROM rejections WHERE at < ?1 LIMIT ?2)",
        plan.technical.0,
    )?;
    report.remove("rejections", DataCategory::Technical, n);
    // The last act of each device decides whether it is quarantined: it stays.
    let n = delete_chunked(
        conn,
        wal,
        "DELETE FROM quarantine_log WHERE seq IN (SELECT seq FROM quarantine_log WHERE at < ?1 \
         AND seq NOT IN (SELECT max(seq) FROM quarantine_log GROUP BY device) LIMIT ?2)",
        plan.technical.0,
    )?;
    report.remove("quarantine_log", DataCategory::Technical, n);
    // Handover notes may hold pseudonyms: kept as long as personal records, with their reads.
    let n = delete_chunked(
        conn,
        wal,
        "DELETE FROM handover_notes WHERE id IN (SELECT id FROM handover_notes WHERE at < ?1 \
         LIMIT ?2)",
        plan.personal.0,
    )?;
    report.remove("handover_notes", DataCategory::Personal, n);
    delete_chunked(
        conn,
        wal,
        "DELETE FROM handover_note_reads WHERE note_id IN (SELECT DISTINCT r.note_id \
         FROM handover_note_reads r WHERE ?1 IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM handover_notes n WHERE n.id = r.note_id) LIMIT ?2)",
        plan.personal.0,
    )?;
    // The last act of each alarm key decides whether it is shelved: it stays.
    let n = delete_chunked(
        conn,
        wal,
        "DELETE FROM shelf_log WHERE seq IN (SELECT seq FROM shelf_log WHERE at < ?1 \
         AND seq NOT IN (SELECT max(seq) FROM shelf_log GROUP BY dedup_key) LIMIT ?2)",
        plan.technical.0,
    )?;
    report.remove("shelf_log", DataCategory::Technical, n);
    // A hold's record (who froze what, why) outlives it by the technical limit.
    let n = delete_chunked(
        conn,
        wal,
        "DELETE FROM legal_holds WHERE id IN (SELECT id FROM legal_holds \
         WHERE coalesce(min(released_at, until), until) < ?1 LIMIT ?2)",
        plan.technical.0,
    )?;
    report.remove("legal_holds", DataCategory::Technical, n);
    if !report.is_empty() {
        wal.truncate_after_erasure(conn);
    }
    Ok(report)
}

/// The `identities` rows of epochs older than the newest live one and not alive
/// themselves: their key was destroyed, they can never be opened again.
fn delete_destroyed_epochs(
    conn: &mut Connection,
    wal: &mut WalControl,
    plan: &PurgePlan,
) -> Result<u64, StoreError> {
    let Some(live) = &plan.live_epochs else {
        return Ok(0);
    };
    let Some(newest) = live.iter().max() else {
        return Ok(0);
    };
    {
        let tx = begin(conn)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS live_epochs (epoch INTEGER PRIMARY KEY); \
             DELETE FROM temp.live_epochs;",
        )
        .ctx("prepare live epochs")?;
        for e in live {
            tx.execute(
                "INSERT OR IGNORE INTO temp.live_epochs (epoch) VALUES (?1)",
                [e],
            )
            .ctx("write live epoch")?;
        }
        tx.commit().ctx("commit live epochs")?;
        wal.after_commit(conn);
    }
    delete_chunked(
        conn,
        wal,
        "DELETE FROM identities WHERE pseudonym IN (SELECT pseudonym FROM identities \
         WHERE epoch < ?1 AND epoch NOT IN (SELECT epoch FROM temp.live_epochs) LIMIT ?2)",
        i64::from(*newest),
    )
}

/// Runs `sql` (parameters: cutoff, chunk) until it deletes less than a chunk.
fn delete_chunked(
    conn: &mut Connection,
    wal: &mut WalControl,
    sql: &str,
    cutoff: i64,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        let tx = begin(conn)?;
        let n = tx
            .prepare_cached(sql)
            .ctx("prepare purge")?
            .execute(params![cutoff, PURGE_CHUNK as i64])
            .ctx("purge")?;
        tx.commit().ctx("commit purge")?;
        wal.after_commit(conn);
        total += n as u64;
        if n < PURGE_CHUNK {
            return Ok(total);
        }
    }
}

/// Walks the (device, field) pairs along the primary key and deletes each pair's rows
/// older than its category's cutoff, outside the windows of held incidents.
fn purge_observations(
    conn: &mut Connection,
    wal: &mut WalControl,
    t: &Territory,
    plan: &PurgePlan,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    let mut pair: Option<(String, String)> = None;
    let mut first = true;
    loop {
        let tx = begin(conn)?;
        let mut budget = PURGE_CHUNK;
        let mut finished = false;
        while budget > 0 {
            if first {
                pair = crate::writer::first_pair(&tx)?;
                first = false;
            }
            let Some((device, field)) = &pair else {
                finished = true;
                break;
            };
            let (category, cut) = cutoff_of(t, plan, device, field);
            let deleted = tx
                .prepare_cached(
                    "DELETE FROM observations WHERE device = ?1 AND field = ?2 AND (time, vkey) IN \
                     (SELECT o.time, o.vkey FROM observations o \
                      WHERE o.device = ?1 AND o.field = ?2 AND o.time < ?3 \
                      AND NOT EXISTS (SELECT 1 FROM temp.held_windows w \
                          WHERE w.device = ?1 AND o.time BETWEEN w.from_ms AND w.to_ms) \
                      ORDER BY o.time LIMIT ?4)",
                )
                .ctx("prepare purge")?
                .execute(params![device, field, cut, budget as i64])
                .ctx("purge observations")?;
            budget -= deleted;
            report.remove("observations", category, deleted as u64);
            if budget > 0 {
                pair = crate::writer::next_pair(&tx, device, field)?;
            }
        }
        let deleted_here = PURGE_CHUNK - budget;
        if deleted_here > 0 {
            tx.prepare_cached("UPDATE counters SET value = value - ?1 WHERE name = 'observations'")
                .ctx("prepare observation count")?
                .execute([deleted_here as i64])
                .ctx("write observation count")?;
        }
        tx.commit().ctx("commit purge")?;
        wal.after_commit(conn);
        if finished {
            return Ok(());
        }
    }
}

fn ids(tx: &Transaction<'_>, sql: &str, cutoff: i64) -> Result<Vec<i64>, StoreError> {
    let mut stmt = tx.prepare_cached(sql).ctx("prepare purge selection")?;
    stmt.query_map(params![cutoff, RECORD_CHUNK as i64], |r| r.get(0))
        .ctx("purge selection")?
        .collect::<Result<_, _>>()
        .ctx("purge selection")
}

/// A record kept until the technical limit after it closed, then deleted with its log.
struct ClosedRecords {
    /// Ids past the cutoff (`?1`), at most `?2`.
    select: &'static str,
    delete_log: &'static str,
    /// Rows of other tables that go with the record (`?1`: its id).
    delete_also: &'static [&'static str],
    delete: &'static str,
    store: &'static str,
    log_store: &'static str,
}

impl ClosedRecords {
    /// Closed incidents not under a legal hold.
    const INCIDENTS: ClosedRecords = ClosedRecords {
        select: "SELECT id FROM incidents WHERE status = 'closed' AND closed_at < ?1 \
                 AND id NOT IN (SELECT id FROM temp.held_incidents) LIMIT ?2",
        delete_log: "DELETE FROM incident_log WHERE incident_id = ?1",
        delete_also: &["DELETE FROM incident_pseudonyms WHERE incident_id = ?1"],
        delete: "DELETE FROM incidents WHERE id = ?1",
        store: "incidents",
        log_store: "incident_log",
    };
    const CRISES: ClosedRecords = ClosedRecords {
        select: "SELECT id FROM crises WHERE closed_at IS NOT NULL AND closed_at < ?1 LIMIT ?2",
        delete_log: "DELETE FROM crisis_log WHERE crisis_id = ?1",
        delete_also: &[],
        delete: "DELETE FROM crises WHERE id = ?1",
        store: "crises",
        log_store: "crisis_log",
    };
}

/// Closed records past the technical limit: deleted with their log, in bounded
/// transactions.
fn delete_closed(
    conn: &mut Connection,
    wal: &mut WalControl,
    plan: &PurgePlan,
    report: &mut PurgeReport,
    records: ClosedRecords,
) -> Result<(), StoreError> {
    loop {
        let tx = begin(conn)?;
        let batch = ids(&tx, records.select, plan.technical.0)?;
        for id in &batch {
            let n = tx
                .prepare_cached(records.delete_log)
                .ctx("prepare purge log")?
                .execute([id])
                .ctx("purge log")?;
            report.remove(records.log_store, DataCategory::Technical, n as u64);
            for sql in records.delete_also {
                tx.prepare_cached(sql)
                    .ctx("prepare purge record rows")?
                    .execute([id])
                    .ctx("purge record rows")?;
            }
            tx.prepare_cached(records.delete)
                .ctx("prepare purge record")?
                .execute([id])
                .ctx("purge record")?;
        }
        report.remove(records.store, DataCategory::Technical, batch.len() as u64);
        tx.commit().ctx("commit purge")?;
        wal.after_commit(conn);
        if batch.len() < RECORD_CHUNK {
            return Ok(());
        }
    }
}

/// Closed incidents past the personal limit: pseudonyms and people replaced, kept as a
/// technical record.
fn redact_incidents(
    conn: &mut Connection,
    wal: &mut WalControl,
    plan: &PurgePlan,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    // Incidents of devices with a sensitive field carry sensitive values in their evidence:
    // they are redacted at the sensitive limit when it is the shorter.
    {
        let tx = begin(conn)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS sensitive_devices (device TEXT PRIMARY KEY); \
             DELETE FROM temp.sensitive_devices;",
        )
        .ctx("prepare sensitive devices")?;
        for d in &plan.sensitive_devices {
            tx.execute(
                "INSERT OR IGNORE INTO temp.sensitive_devices (device) VALUES (?1)",
                [d],
            )
            .ctx("write sensitive device")?;
        }
        tx.commit().ctx("commit sensitive devices")?;
        wal.after_commit(conn);
    }
    redact_incidents_where(
        conn,
        wal,
        plan,
        report,
        "SELECT id FROM incidents WHERE status = 'closed' AND closed_at < ?1 \
         AND redacted_at IS NULL AND device IN (SELECT device FROM temp.sensitive_devices) \
         AND id NOT IN (SELECT id FROM temp.held_incidents) LIMIT ?2",
        plan.sensitive_records,
    )?;
    redact_incidents_where(
        conn,
        wal,
        plan,
        report,
        "SELECT id FROM incidents WHERE status = 'closed' AND closed_at < ?1 \
         AND redacted_at IS NULL AND id NOT IN (SELECT id FROM temp.held_incidents) LIMIT ?2",
        plan.personal,
    )
}

fn redact_incidents_where(
    conn: &mut Connection,
    wal: &mut WalControl,
    plan: &PurgePlan,
    report: &mut PurgeReport,
    select: &str,
    cutoff: Timestamp,
) -> Result<(), StoreError> {
    loop {
        let tx = begin(conn)?;
        let batch = ids(&tx, select, cutoff.0)?;
        for id in &batch {
            let (title, evidence, owner, sop): (String, String, Option<String>, String) = tx
                .prepare_cached("SELECT title, evidence, owner, sop FROM incidents WHERE id = ?1")
                .ctx("prepare redact incident")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .ctx("read incident to redact")?;
            let owner = owner.map(|o| plan.role_of(&o));
            tx.prepare_cached(
                "UPDATE incidents SET title = ?2, evidence = ?3, owner = ?4, sop = ?5, \
                 redacted_at = ?6 WHERE id = ?1",
            )
            .ctx("prepare redact incident")?
            .execute(params![
                id,
                redact_pseudonyms(&title).0,
                redact_pseudonyms(&evidence).0,
                owner,
                redact_sop(plan, &sop),
                plan.now.0
            ])
            .ctx("redact incident")?;
            let n = redact_log(&tx, plan, RedactedLog::INCIDENT, *id)?;
            report.redact("incident_log", DataCategory::Personal, n);
            // Past the personal limit, nothing of the incident can be unmasked any more.
            tx.prepare_cached("DELETE FROM incident_pseudonyms WHERE incident_id = ?1")
                .ctx("prepare redact incident pseudonyms")?
                .execute([id])
                .ctx("redact incident pseudonyms")?;
        }
        report.redact("incidents", DataCategory::Personal, batch.len() as u64);
        tx.commit().ctx("commit redaction")?;
        wal.after_commit(conn);
        if batch.len() < RECORD_CHUNK {
            return Ok(());
        }
    }
}

/// A log table whose entries name people (actor, free text) under a parent record.
struct RedactedLog {
    select: &'static str,
    update: &'static str,
}

impl RedactedLog {
    const INCIDENT: RedactedLog = RedactedLog {
        select: "SELECT id, actor, detail FROM incident_log WHERE incident_id = ?1",
        update: "UPDATE incident_log SET actor = ?2, detail = ?3, message = NULL WHERE id = ?1",
    };
    const CRISIS: RedactedLog = RedactedLog {
        select: "SELECT id, actor, text FROM crisis_log WHERE crisis_id = ?1",
        update: "UPDATE crisis_log SET actor = ?2, text = ?3, message = NULL WHERE id = ?1",
    };
}

/// Redacts the log entries of one record: actors become their role, pseudonyms in the
/// text `[effacé]`. Returns how many entries were rewritten.
fn redact_log(
    tx: &Transaction<'_>,
    plan: &PurgePlan,
    log: RedactedLog,
    parent: i64,
) -> Result<u64, StoreError> {
    let entries: Vec<(i64, String, String)> = tx
        .prepare_cached(log.select)
        .ctx("prepare redact log")?
        .query_map([parent], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .ctx("read log to redact")?
        .collect::<Result<_, _>>()
        .ctx("read log to redact")?;
    for (entry, actor, text) in &entries {
        tx.prepare_cached(log.update)
            .ctx("prepare redact log")?
            .execute(params![
                entry,
                redact_actor(plan, actor),
                redact_pseudonyms(text).0
            ])
            .ctx("redact log")?;
    }
    Ok(entries.len() as u64)
}

/// Closed crises past the personal limit: the log's people and pseudonyms, the role
/// holders, who opened and closed it, replaced.
fn redact_crises(
    conn: &mut Connection,
    wal: &mut WalControl,
    plan: &PurgePlan,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    loop {
        let tx = begin(conn)?;
        let batch = ids(
            &tx,
            "SELECT id FROM crises WHERE closed_at IS NOT NULL AND closed_at < ?1 \
             AND redacted_at IS NULL LIMIT ?2",
            plan.personal.0,
        )?;
        for id in &batch {
            let (title, opened_by, closed_by, summary, roles): (
                String,
                String,
                Option<String>,
                Option<String>,
                String,
            ) = tx
                .prepare_cached(
                    "SELECT title, opened_by, closed_by, summary, roles FROM crises WHERE id = ?1",
                )
                .ctx("prepare redact crisis")?
                .query_row([id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .ctx("read crisis to redact")?;
            let roles = match serde_json::from_str::<serde_json::Value>(&roles) {
                Ok(mut v) => {
                    if let Some(list) = v.as_array_mut() {
                        for r in list {
                            if r.get("holder").is_some_and(|h| !h.is_null()) {
                                r["holder"] = serde_json::Value::String(ERASED.into());
                            }
                        }
                    }
                    v.to_string()
                }
                Err(_) => roles,
            };
            tx.prepare_cached(
                "UPDATE crises SET title = ?2, opened_by = ?3, closed_by = ?4, summary = ?5, \
                 roles = ?6, redacted_at = ?7 WHERE id = ?1",
            )
            .ctx("prepare redact crisis")?
            .execute(params![
                id,
                redact_pseudonyms(&title).0,
                redact_actor(plan, &opened_by),
                closed_by.map(|c| redact_actor(plan, &c)),
                summary.map(|s| redact_pseudonyms(&s).0),
                roles,
                plan.now.0
            ])
            .ctx("redact crisis")?;
            let n = redact_log(&tx, plan, RedactedLog::CRISIS, *id)?;
            report.redact("crisis_log", DataCategory::Personal, n);
        }
        report.redact("crises", DataCategory::Personal, batch.len() as u64);
        tx.commit().ctx("commit redaction")?;
        wal.after_commit(conn);
        if batch.len() < RECORD_CHUNK {
            return Ok(());
        }
    }
}

/// Records a purge run; keeps the last hundred.
pub(crate) fn record_purge(
    conn: &mut Connection,
    wal: &mut WalControl,
    at: Timestamp,
    detail: &str,
) -> Result<(), StoreError> {
    let tx = begin(conn)?;
    tx.execute(
        "INSERT INTO purge_runs (at, detail) VALUES (?1, ?2)",
        params![at.0, detail],
    )
    .ctx("record purge")?;
    tx.execute(
        "DELETE FROM purge_runs WHERE id <= (SELECT max(id) - 100 FROM purge_runs)",
        [],
    )
    .ctx("trim purge runs")?;
    tx.commit().ctx("commit purge run")?;
    wal.after_commit(conn);
    Ok(())
}

// ---- legal holds -----------------------------------------------------------------------

pub(crate) fn set_hold(
    conn: &mut Connection,
    wal: &mut WalControl,
    h: &LegalHold,
) -> Result<(), StoreError> {
    let id = crate::rows::id_to_sql(h.incident)?;
    let tx = begin(conn)?;
    tx.execute(
        "UPDATE legal_holds SET released_at = ?2, released_by = ?3 \
         WHERE incident_id = ?1 AND released_at IS NULL",
        params![id, h.set_at.0, h.set_by],
    )
    .ctx("supersede hold")?;
    tx.execute(
        "INSERT INTO legal_holds (incident_id, justification, until, set_by, set_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            id,
            h.justification.as_str(),
            h.until.0,
            h.set_by,
            h.set_at.0
        ],
    )
    .ctx("write hold")?;
    tx.commit().ctx("commit hold")?;
    wal.after_commit(conn);
    Ok(())
}

pub(crate) fn release_hold(
    conn: &mut Connection,
    wal: &mut WalControl,
    incident: IncidentId,
    by: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let id = crate::rows::id_to_sql(incident)?;
    let tx = begin(conn)?;
    let n = tx
        .execute(
            "UPDATE legal_holds SET released_at = ?2, released_by = ?3 \
             WHERE incident_id = ?1 AND released_at IS NULL AND until > ?2",
            params![id, at.0, by],
        )
        .ctx("release hold")?;
    tx.commit().ctx("commit hold release")?;
    wal.after_commit(conn);
    Ok(n > 0)
}

pub(crate) fn holds(
    conn: &Connection,
    now: Timestamp,
    all: bool,
) -> Result<Vec<LegalHold>, StoreError> {
    let sql = if all {
        "SELECT incident_id, justification, until, set_by, set_at, released_at, released_by \
         FROM legal_holds WHERE ?1 = ?1 ORDER BY id DESC LIMIT 1000"
    } else {
        "SELECT incident_id, justification, until, set_by, set_at, released_at, released_by \
         FROM legal_holds WHERE released_at IS NULL AND until > ?1 ORDER BY id DESC"
    };
    let mut stmt = conn.prepare_cached(sql).ctx("prepare holds")?;
    let rows = stmt
        .query_map([now.0], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })
        .ctx("read holds")?;
    let mut out = Vec::new();
    for row in rows {
        let (id, justification, until, set_by, set_at, released_at, released_by) =
            row.ctx("read holds")?;
        out.push(LegalHold {
            incident: crate::rows::id_from_sql(id)?,
            // Read back through the recogniser: a row is not trusted.
            justification: beffroi_core::SafeText::redacting(&justification),
            until: Timestamp(until),
            set_by,
            set_at: Timestamp(set_at),
            released_at: released_at.map(Timestamp),
            released_by,
        });
    }
    Ok(out)
}

// ---- a person's requests ---------------------------------------------------------------

/// Incidents whose title or evidence mention `p`, and log entries that do.
/// Every other text a pseudonym can sit in — technical text values of observations (a
/// number typed into a topic, scrubbed at ingest), crisis titles, summaries and role
/// holders, event names, hold justifications, quarantine reasons, handover notes, shelving
/// reasons — with the pseudonym
/// replaced; how many texts changed. Technical texts inside a held incident's window stay.
fn erase_in_other_texts(tx: &Connection, p: &str) -> Result<u64, StoreError> {
    let like = format!("%{p}%");
    let pp = [p.to_string()];
    let mut n = 0u64;
    // (table, key columns, text column, extra condition)
    const TEXTS: &[(&str, &str, &str, &str)] = &[
        (
            "observations",
            "device, field, time, vkey",
            "value_text",
            " AND value_text != ?2 AND NOT EXISTS (SELECT 1 FROM temp.held_windows w \
             WHERE w.device = observations.device AND observations.time BETWEEN w.from_ms AND w.to_ms)",
        ),
        ("crises", "id", "title", ""),
        ("crises", "id", "summary", ""),
        ("crises", "id", "roles", ""),
        ("events", "id", "name", ""),
        ("legal_holds", "id", "justification", ""),
        ("quarantine_log", "seq", "reason", ""),
        ("handover_notes", "id", "text", ""),
        ("shelf_log", "seq", "reason", ""),
    ];
    for (table, keys, column, extra) in TEXTS {
        let key_list: Vec<&str> = keys.split(", ").collect();
        let select = format!(
            "SELECT {keys}, {column} FROM {table} WHERE {column} LIKE ?1{extra}",
            extra = if extra.is_empty() { "" } else { extra }
        );
        let mut stmt = tx.prepare(&select).ctx("prepare erase in texts")?;
        let bind_p = extra.contains("?2");
        let rows: Vec<(Vec<rusqlite::types::Value>, String)> = {
            let map = |r: &rusqlite::Row<'_>| {
                let mut k = Vec::with_capacity(key_list.len());
                for i in 0..key_list.len() {
                    k.push(r.get::<_, rusqlite::types::Value>(i)?);
                }
                Ok((k, r.get::<_, String>(key_list.len())?))
            };
            if bind_p {
                stmt.query_map(params![like, p], map)
            } else {
                stmt.query_map(params![like], map)
            }
            .ctx("read texts to erase")?
            .collect::<Result<_, _>>()
            .ctx("read texts to erase")?
        };
        let cond: Vec<String> = key_list
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ?{}", i + 2))
            .collect();
        let update = format!(
            "UPDATE {table} SET {column} = ?1 WHERE {}",
            cond.join(" AND ")
        );
        for (key, text) in rows {
            let Some(erased) = erase_pseudonyms(&text, &pp) else {
                continue;
            };
            let mut values: Vec<rusqlite::types::Value> = vec![erased.into()];
            values.extend(key);
            tx.execute(&update, rusqlite::params_from_iter(values))
                .ctx("erase in text")?;
            n += 1;
        }
    }
    Ok(n)
}

fn mentions(
    conn: &Connection,
    p: &str,
) -> Result<(Vec<MentionRow>, Vec<MentionLogRow>), StoreError> {
    let like = format!("%{p}%");
    let incidents = conn
        .prepare_cached(
            "SELECT id, status, opened_at, instr(title, ?1) > 0, instr(evidence, ?1) > 0 \
             FROM incidents WHERE title LIKE ?2 OR evidence LIKE ?2",
        )
        .ctx("prepare subject incidents")?
        .query_map(params![p, like], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .ctx("subject incidents")?
        .collect::<Result<_, _>>()
        .ctx("subject incidents")?;
    let log = conn
        .prepare_cached("SELECT id, incident_id, at, action FROM incident_log WHERE detail LIKE ?1")
        .ctx("prepare subject log")?
        .query_map([like], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .ctx("subject log")?
        .collect::<Result<_, _>>()
        .ctx("subject log")?;
    Ok((incidents, log))
}

pub(crate) fn subject_data(
    conn: &Connection,
    pseudonyms: &[String],
    limit: usize,
) -> Result<SubjectData, StoreError> {
    let mut out = SubjectData::default();
    let mut incidents: std::collections::BTreeMap<i64, SubjectIncident> = Default::default();
    for p in pseudonyms {
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM observations WHERE value_text = ?1")
            .ctx("prepare subject count")?
            .query_row([p], |r| r.get(0))
            .ctx("subject count")?;
        out.observation_count += n as u64;
        let room = limit.saturating_sub(out.observations.len());
        let mut stmt = conn
            .prepare_cached(
                "SELECT device, field, time FROM observations WHERE value_text = ?1 \
                 ORDER BY time DESC LIMIT ?2",
            )
            .ctx("prepare subject observations")?;
        for row in stmt
            .query_map(params![p, room as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .ctx("subject observations")?
        {
            let (device, field, time) = row.ctx("subject observations")?;
            out.observations.push(SubjectObservation {
                device,
                field,
                time: Timestamp(time),
                pseudonym: p.clone(),
            });
        }
        let ids: i64 = conn
            .prepare_cached("SELECT count(*) FROM identities WHERE pseudonym = ?1")
            .ctx("prepare subject identities")?
            .query_row([p], |r| r.get(0))
            .ctx("subject identities")?;
        out.identities += ids as u64;
        let (found, log) = mentions(conn, p)?;
        for (id, status, opened, in_title, in_evidence) in found {
            let e = incidents.entry(id).or_insert_with(|| SubjectIncident {
                id: IncidentId(id.max(0) as u64),
                status,
                opened_at: Timestamp(opened),
                found_in: Vec::new(),
                log_entries: Vec::new(),
            });
            if in_title && !e.found_in.contains(&"title") {
                e.found_in.push("title");
            }
            if in_evidence && !e.found_in.contains(&"evidence") {
                e.found_in.push("evidence");
            }
        }
        for (_, incident, at, action) in log {
            let e = match incidents.entry(incident) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let (status, opened): (String, i64) = conn
                        .prepare_cached("SELECT status, opened_at FROM incidents WHERE id = ?1")
                        .ctx("prepare subject incident")?
                        .query_row([incident], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                        .ctx("subject incident")?
                        .unwrap_or_default();
                    v.insert(SubjectIncident {
                        id: IncidentId(incident.max(0) as u64),
                        status,
                        opened_at: Timestamp(opened),
                        found_in: Vec::new(),
                        log_entries: Vec::new(),
                    })
                }
            };
            if !e.found_in.contains(&"log") {
                e.found_in.push("log");
            }
            e.log_entries.push((Timestamp(at), action));
        }
        let c: i64 = conn
            .prepare_cached("SELECT count(*) FROM crisis_log WHERE text LIKE ?1")
            .ctx("prepare subject crisis log")?
            .query_row([format!("%{p}%")], |r| r.get(0))
            .ctx("subject crisis log")?;
        out.crisis_entries += c as u64;
    }
    out.incidents = incidents.into_values().collect();
    Ok(out)
}

pub(crate) fn erase_subject(
    conn: &mut Connection,
    wal: &mut WalControl,
    pseudonyms: &[String],
    now: Timestamp,
) -> Result<ErasureReport, StoreError> {
    let held = gather_held(conn, wal, now)?;
    let mut report = ErasureReport::default();
    for p in pseudonyms {
        // Observations, in bounded transactions, outside the windows of held incidents.
        loop {
            let tx = begin(conn)?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM observations WHERE (device, field, time, vkey) IN \
                     (SELECT o.device, o.field, o.time, o.vkey FROM observations o \
                     WHERE o.value_text = ?1 AND NOT EXISTS (SELECT 1 FROM temp.held_windows w \
                     WHERE w.device = o.device AND o.time BETWEEN w.from_ms AND w.to_ms) LIMIT ?2)",
                )
                .ctx("prepare erase observations")?
                .execute(params![p, PURGE_CHUNK as i64])
                .ctx("erase observations")?;
            if n > 0 {
                tx.prepare_cached(
                    "UPDATE counters SET value = value - ?1 WHERE name = 'observations'",
                )
                .ctx("prepare observation count")?
                .execute([n as i64])
                .ctx("write observation count")?;
            }
            tx.commit().ctx("commit erasure")?;
            wal.after_commit(conn);
            report.observations += n as u64;
            if n < PURGE_CHUNK {
                break;
            }
        }
        let tx = begin(conn)?;
        report.identities += tx
            .execute(
                "DELETE FROM identities WHERE pseudonym = ?1 \
                 AND pseudonym NOT IN (SELECT p FROM temp.held_pseudonyms)",
                [p],
            )
            .ctx("erase identity")? as u64;
        tx.prepare_cached(
            "DELETE FROM incident_pseudonyms WHERE pseudonym = ?1 \
             AND incident_id NOT IN (SELECT id FROM temp.held_incidents)",
        )
        .ctx("prepare erase incident pseudonyms")?
        .execute([p])
        .ctx("erase incident pseudonyms")?;
        let (found, log) = mentions(&tx, p)?;
        let pp = std::slice::from_ref(p);
        for (id, _, _, _, _) in found {
            if held.iter().any(|h| h.0 as i64 == id) {
                if !report.held_incidents.iter().any(|h| h.0 as i64 == id) {
                    report.held_incidents.push(IncidentId(id as u64));
                }
                continue;
            }
            let (title, evidence): (String, String) = tx
                .query_row(
                    "SELECT title, evidence FROM incidents WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ctx("read incident to erase")?;
            tx.execute(
                "UPDATE incidents SET title = ?2, evidence = ?3 WHERE id = ?1",
                params![
                    id,
                    erase_pseudonyms(&title, pp).unwrap_or(title.clone()),
                    erase_pseudonyms(&evidence, pp).unwrap_or(evidence.clone())
                ],
            )
            .ctx("erase in incident")?;
            report.incidents_redacted += 1;
        }
        for (entry, incident, _, _) in log {
            if held.iter().any(|h| h.0 as i64 == incident) {
                if !report.held_incidents.iter().any(|h| h.0 as i64 == incident) {
                    report.held_incidents.push(IncidentId(incident as u64));
                }
                continue;
            }
            let detail: String = tx
                .query_row(
                    "SELECT detail FROM incident_log WHERE id = ?1",
                    [entry],
                    |r| r.get(0),
                )
                .ctx("read log to erase")?;
            if let Some(d) = erase_pseudonyms(&detail, pp) {
                tx.execute(
                    "UPDATE incident_log SET detail = ?2, message = NULL WHERE id = ?1",
                    params![entry, d],
                )
                .ctx("erase in log")?;
                report.log_entries_redacted += 1;
            }
        }
        let entries: Vec<(i64, String)> = tx
            .prepare_cached("SELECT id, text FROM crisis_log WHERE text LIKE ?1")
            .ctx("prepare erase crisis log")?
            .query_map([format!("%{p}%")], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx("read crisis log to erase")?
            .collect::<Result<_, _>>()
            .ctx("read crisis log to erase")?;
        for (entry, text) in entries {
            if let Some(t) = erase_pseudonyms(&text, pp) {
                tx.execute(
                    "UPDATE crisis_log SET text = ?2, message = NULL WHERE id = ?1",
                    params![entry, t],
                )
                .ctx("erase in crisis log")?;
                report.crisis_entries_redacted += 1;
            }
        }
        report.other_texts_redacted += erase_in_other_texts(&tx, p)?;
        tx.commit().ctx("commit erasure")?;
        wal.after_commit(conn);
    }
    if report != ErasureReport::default() {
        wal.truncate_after_erasure(conn);
    }
    Ok(report)
}

// ---- retention status ------------------------------------------------------------------

fn count_oldest(conn: &Connection, sql: &str) -> Result<(u64, Option<Timestamp>), StoreError> {
    conn.prepare_cached(sql)
        .ctx("prepare retention status")?
        .query_row([], |r| {
            Ok((
                r.get::<_, i64>(0)?.max(0) as u64,
                r.get::<_, Option<i64>>(1)?.map(Timestamp),
            ))
        })
        .ctx("retention status")
}

pub(crate) fn retention_status(
    conn: &Connection,
    t: &Territory,
) -> Result<(Vec<StoreRows>, Option<PurgeRun>), StoreError> {
    let mut out: Vec<StoreRows> = Vec::new();
    let mut add =
        |store: &'static str, category: DataCategory, rows: u64, oldest: Option<Timestamp>| {
            if let Some(e) = out
                .iter_mut()
                .find(|e| e.store == store && e.category == category)
            {
                e.rows += rows;
                e.oldest = match (e.oldest, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            } else {
                out.push(StoreRows {
                    store,
                    category,
                    rows,
                    oldest,
                });
            }
        };
    // Observations per (device, field): one seek per pair along the primary key.
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT device, field, count(*), min(time) FROM observations GROUP BY device, field",
            )
            .ctx("prepare retention status")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .ctx("retention status")?;
        for row in rows {
            let (device, field, n, oldest) = row.ctx("retention status")?;
            let category = t
                .device_id(&device)
                .and_then(|d| {
                    let k = t.kind(t.device(d).kind);
                    k.field(&field).and_then(|f| k.fields.get(f.get()))
                })
                .map_or(DataCategory::Personal, |f| f.category);
            add(
                "observations",
                category,
                n.max(0) as u64,
                Some(Timestamp(oldest)),
            );
        }
    }
    let (n, o) = count_oldest(conn, "SELECT count(*), min(last_seen) FROM identities")?;
    add("identities", DataCategory::Personal, n, o);
    let (n, o) = count_oldest(
        conn,
        "SELECT count(*), min(closed_at) FROM incidents WHERE redacted_at IS NULL AND closed_at IS NOT NULL",
    )?;
    add("incidents", DataCategory::Personal, n, o);
    let (n, o) = count_oldest(conn, "SELECT count(*), min(opened_at) FROM incidents")?;
    add("incidents", DataCategory::Technical, n, o);
    let (n, o) = count_oldest(conn, "SELECT count(*), min(at) FROM incident_log")?;
    add("incident_log", DataCategory::Technical, n, o);
    let (n, o) = count_oldest(
        conn,
        "SELECT count(*), min(closed_at) FROM crises WHERE redacted_at IS NULL AND closed_at IS NOT NULL",
    )?;
    add("crises", DataCategory::Personal, n, o);
    let (n, o) = count_oldest(conn, "SELECT count(*), min(at) FROM crisis_log")?;
    add("crisis_log", DataCategory::Technical, n, o);
    let (n, o) = count_oldest(conn, "SELECT count(*), min(at) FROM rejections")?;
    add("rejections", DataCategory::Technical, n, o);
    let (n, o) = count_oldest(conn, "SELECT count(*), min(at) FROM quarantine_log")?;
    add("quarantine_log", DataCategory::Technical, n, o);
    let last = conn
        .prepare_cached("SELECT at, detail FROM purge_runs ORDER BY id DESC LIMIT 1")
        .ctx("prepare last purge")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .optional()
        .ctx("last purge")?
        .map(|(at, detail)| PurgeRun {
            at: Timestamp(at),
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        });
    Ok((out, last))
}
