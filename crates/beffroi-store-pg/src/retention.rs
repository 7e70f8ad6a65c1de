//! Retention purge, legal holds and a person's requests on PostgreSQL: the semantics of the
//! SQLite store's module of the same name.
//!
//! Every step works in bounded transactions ([`PURGE_CHUNK`] rows at most, or
//! [`RECORD_CHUNK`] incidents or crises) so that locks are held briefly and the ingest
//! keeps flowing between them. What a legal hold in force protects is gathered first into
//! temporary tables of the writer's session: `held_incidents`, `held_windows` (the device
//! of each held incident, from one hour before its opening to its closing) and
//! `held_pseudonyms` (the pseudonyms its title, evidence, log and window observations
//! mention). Rows are addressed by `ctid` inside one transaction where the key is long.

use std::collections::BTreeSet;

use beffroi_core::territory::DataCategory;
use beffroi_core::{IncidentId, Territory, Timestamp};
use beffroi_engine::StoreError;
use beffroi_engine::retention::{
    ERASED, ErasureReport, INCIDENT_WINDOW_BEFORE, LegalHold, PurgePlan, PurgeReport, PurgeRun,
    StoreRows, SubjectData, SubjectIncident, SubjectObservation, erase_pseudonyms, pseudonyms_in,
    redact_pseudonyms,
};
use postgres::{Client, GenericClient, Transaction};

use crate::error::{Context, Get};
use crate::rows::count_to_sql;
use crate::writer::{PURGE_CHUNK, PgStore};
use beffroi_store_rows::retention::{cutoff_of, redact_actor, redact_sop};

/// Incidents or crises redacted or deleted per transaction.
pub const RECORD_CHUNK: usize = 200;

/// A purge's transaction, refused first if a node took over from this one's writer.
fn begin(client: &mut Client) -> Result<Transaction<'_>, StoreError> {
    let mut tx = client.transaction().ctx("begin purge")?;
    crate::fence::check(&mut tx)?;
    Ok(tx)
}

const HELD_TABLES: &str = "
CREATE TEMP TABLE IF NOT EXISTS held_incidents (id BIGINT PRIMARY KEY);
CREATE TEMP TABLE IF NOT EXISTS held_windows (device TEXT NOT NULL, from_ms BIGINT NOT NULL, to_ms BIGINT NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS held_pseudonyms (p TEXT PRIMARY KEY);
DELETE FROM held_incidents;
DELETE FROM held_windows;
DELETE FROM held_pseudonyms;
";

/// id, status, opened_at, in title, in evidence.
type MentionRow = (i64, String, i64, bool, bool);
/// log id, incident id, at, action.
type MentionLogRow = (i64, i64, i64, String);

/// Fills the temporary tables of what the holds in force at `now` protect; returns the
/// held incidents.
fn gather_held(client: &mut Client, now: Timestamp) -> Result<Vec<IncidentId>, StoreError> {
    let mut tx = begin(client)?;
    tx.batch_execute(HELD_TABLES).ctx("prepare held tables")?;
    let held = tx
        .query(
            "SELECT DISTINCT i.id, i.device, i.opened_at, i.closed_at, i.title, i.evidence \
             FROM legal_holds h JOIN incidents i ON i.id = h.incident_id \
             WHERE h.released_at IS NULL AND h.until > $1",
            &[&now.0],
        )
        .ctx("read held incidents")?;
    let mut pseudonyms = BTreeSet::new();
    let mut ids = Vec::with_capacity(held.len());
    for row in &held {
        let id: i64 = row.at(0)?;
        let device: Option<String> = row.at(1)?;
        let opened: i64 = row.at(2)?;
        let closed: Option<i64> = row.at(3)?;
        let title: String = row.at(4)?;
        let evidence: String = row.at(5)?;
        ids.push(id);
        tx.execute(
            "INSERT INTO held_incidents (id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&id],
        )
        .ctx("write held incident")?;
        pseudonyms.extend(pseudonyms_in(&title).map(str::to_string));
        pseudonyms.extend(pseudonyms_in(&evidence).map(str::to_string));
        for r in tx
            .query(
                "SELECT pseudonym FROM incident_pseudonyms WHERE incident_id = $1",
                &[&id],
            )
            .ctx("read held incident pseudonyms")?
        {
            pseudonyms.insert(r.at::<String>(0)?);
        }
        for r in tx
            .query(
                "SELECT detail FROM incident_log WHERE incident_id = $1",
                &[&id],
            )
            .ctx("read held log")?
        {
            let d: String = r.at(0)?;
            pseudonyms.extend(pseudonyms_in(&d).map(str::to_string));
        }
        if let Some(device) = device {
            let from = opened - INCIDENT_WINDOW_BEFORE.0;
            let to = closed.unwrap_or(now.0);
            tx.execute(
                "INSERT INTO held_windows (device, from_ms, to_ms) VALUES ($1, $2, $3)",
                &[&device, &from, &to],
            )
            .ctx("write held window")?;
            for r in tx
                .query(
                    "SELECT value_text FROM observations WHERE device = $1 \
                     AND time BETWEEN $2 AND $3 AND value_text IS NOT NULL",
                    &[&device, &from, &to],
                )
                .ctx("read held observations")?
            {
                let v: String = r.at(0)?;
                pseudonyms.extend(pseudonyms_in(&v).map(str::to_string));
            }
        }
    }
    for p in &pseudonyms {
        tx.execute(
            "INSERT INTO held_pseudonyms (p) VALUES ($1) ON CONFLICT DO NOTHING",
            &[p],
        )
        .ctx("write held pseudonym")?;
    }
    tx.commit().ctx("commit held tables")?;
    Ok(ids
        .into_iter()
        .filter_map(|id| u64::try_from(id).ok().map(IncidentId))
        .collect())
}

/// The whole purge; see the module documentation of `beffroi_engine::retention`.
pub(crate) fn purge(store: &mut PgStore, plan: &PurgePlan) -> Result<PurgeReport, StoreError> {
    let t = store.territory();
    let client = store.client()?;
    let mut report = PurgeReport {
        held_incidents: gather_held(client, plan.now)?,
        ..PurgeReport::default()
    };
    purge_observations(client, &t, plan, &mut report)?;
    // Identities past the longest personal limit, unless a held incident mentions them.
    let n = delete_chunked(
        client,
        "DELETE FROM identities WHERE pseudonym IN (SELECT pseudonym FROM identities \
         WHERE last_seen < $1 AND pseudonym NOT IN (SELECT p FROM held_pseudonyms) LIMIT $2)",
        plan.identities.0,
    )?;
    report.remove("identities", DataCategory::Personal, n);
    let n = delete_destroyed_epochs(client, plan)?;
    report.remove("identities", DataCategory::Personal, n);
    delete_closed(client, plan, &mut report, ClosedRecords::INCIDENTS)?;
    redact_incidents(client, plan, &mut report)?;
    delete_closed(client, plan, &mut report, ClosedRecords::CRISES)?;
    redact_crises(client, plan, &mut report)?;
    let n = delete_chunked(
        client,
        "DELETE FROM rejections WHERE id IN (SELECT id FROM rejections WHERE at < $1 LIMIT $2)",
        plan.technical.0,
    )?;
    report.remove("rejections", DataCategory::Technical, n);
    // The last act of each device decides whether it is quarantined: it stays.
    let n = delete_chunked(
        client,
        "DELETE FROM quarantine_log WHERE seq IN (SELECT seq FROM quarantine_log WHERE at < $1 \
         AND seq NOT IN (SELECT max(seq) FROM quarantine_log GROUP BY device) LIMIT $2)",
        plan.technical.0,
    )?;
    report.remove("quarantine_log", DataCategory::Technical, n);
    // Handover notes may hold pseudonyms: kept as long as personal records, with their reads.
    let n = delete_chunked(
        client,
        "DELETE FROM handover_notes WHERE id IN (SELECT id FROM handover_notes WHERE at < $1 \
         LIMIT $2)",
        plan.personal.0,
    )?;
    report.remove("handover_notes", DataCategory::Personal, n);
    delete_chunked(
        client,
        "DELETE FROM handover_note_reads WHERE note_id IN (SELECT DISTINCT r.note_id \
         FROM handover_note_reads r WHERE $1::bigint IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM handover_notes n WHERE n.id = r.note_id) LIMIT $2)",
        plan.personal.0,
    )?;
    // The last act of each alarm key decides whether it is shelved: it stays.
    let n = delete_chunked(
        client,
        "DELETE FROM shelf_log WHERE seq IN (SELECT seq FROM shelf_log WHERE at < $1 \
         AND seq NOT IN (SELECT max(seq) FROM shelf_log GROUP BY dedup_key) LIMIT $2)",
        plan.technical.0,
    )?;
    report.remove("shelf_log", DataCategory::Technical, n);
    // A hold's record (who froze what, why) outlives it by the technical limit.
    let n = delete_chunked(
        client,
        "DELETE FROM legal_holds WHERE id IN (SELECT id FROM legal_holds \
         WHERE LEAST(released_at, until) < $1 LIMIT $2)",
        plan.technical.0,
    )?;
    report.remove("legal_holds", DataCategory::Technical, n);
    Ok(report)
}

/// The `identities` rows of epochs older than the newest live one and not alive
/// themselves: their key was destroyed, they can never be opened again.
fn delete_destroyed_epochs(client: &mut Client, plan: &PurgePlan) -> Result<u64, StoreError> {
    let Some(live) = &plan.live_epochs else {
        return Ok(0);
    };
    let Some(newest) = live.iter().max() else {
        return Ok(0);
    };
    let live: Vec<i64> = live.iter().map(|e| i64::from(*e)).collect();
    let newest = i64::from(*newest);
    let mut total = 0u64;
    loop {
        let mut tx = begin(client)?;
        let n = tx
            .execute(
                "DELETE FROM identities WHERE pseudonym IN (SELECT pseudonym FROM identities \
                 WHERE epoch < $1 AND NOT (epoch = ANY($2)) LIMIT $3)",
                &[&newest, &live, &count_to_sql(PURGE_CHUNK)],
            )
            .ctx("purge identities")?;
        tx.commit().ctx("commit purge")?;
        total += n;
        if n < PURGE_CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// Runs `sql` (parameters: cutoff, chunk) until it deletes less than a chunk.
fn delete_chunked(client: &mut Client, sql: &str, cutoff: i64) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        let mut tx = begin(client)?;
        let n = tx
            .execute(sql, &[&cutoff, &count_to_sql(PURGE_CHUNK)])
            .ctx("purge")?;
        tx.commit().ctx("commit purge")?;
        total += n;
        if n < PURGE_CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// The first (device, field) pair of `observations` in key order.
fn first_pair(tx: &mut Transaction<'_>) -> Result<Option<(String, String)>, StoreError> {
    tx.query_opt(
        "SELECT device, field FROM observations ORDER BY device, field LIMIT 1",
        &[],
    )
    .ctx("purge walk")?
    .map(|r| Ok((r.at(0)?, r.at(1)?)))
    .transpose()
}

/// The (device, field) pair that follows `(device, field)` in key order (one index seek).
fn next_pair(
    tx: &mut Transaction<'_>,
    device: &str,
    field: &str,
) -> Result<Option<(String, String)>, StoreError> {
    tx.query_opt(
        "SELECT device, field FROM observations WHERE (device, field) > ($1, $2) \
         ORDER BY device, field LIMIT 1",
        &[&device, &field],
    )
    .ctx("purge walk")?
    .map(|r| Ok((r.at(0)?, r.at(1)?)))
    .transpose()
}

/// Walks the (device, field) pairs along the primary key and deletes each pair's rows
/// older than its category's cutoff, outside the windows of held incidents.
fn purge_observations(
    client: &mut Client,
    t: &Territory,
    plan: &PurgePlan,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    let mut pair: Option<(String, String)> = None;
    let mut first = true;
    loop {
        let mut tx = begin(client)?;
        let mut budget = PURGE_CHUNK;
        let mut finished = false;
        while budget > 0 {
            if first {
                pair = first_pair(&mut tx)?;
                first = false;
            }
            let Some((device, field)) = &pair else {
                finished = true;
                break;
            };
            let (category, cut) = cutoff_of(t, plan, device, field);
            let deleted = tx
                .execute(
                    "DELETE FROM observations WHERE ctid IN \
                     (SELECT o.ctid FROM observations o \
                      WHERE o.device = $1 AND o.field = $2 AND o.time < $3 \
                      AND NOT EXISTS (SELECT 1 FROM held_windows w \
                          WHERE w.device = $1 AND o.time BETWEEN w.from_ms AND w.to_ms) \
                      ORDER BY o.time LIMIT $4)",
                    &[device, field, &cut, &count_to_sql(budget)],
                )
                .ctx("purge observations")?;
            let deleted = usize::try_from(deleted).unwrap_or(budget).min(budget);
            budget -= deleted;
            report.remove("observations", category, deleted as u64);
            if budget > 0 {
                let (d, f) = (device.clone(), field.clone());
                pair = next_pair(&mut tx, &d, &f)?;
            }
        }
        let deleted_here = PURGE_CHUNK - budget;
        if deleted_here > 0 {
            tx.execute(
                "UPDATE counters SET value = value - $1 WHERE name = 'observations'",
                &[&count_to_sql(deleted_here)],
            )
            .ctx("write observation count")?;
        }
        tx.commit().ctx("commit purge")?;
        if finished {
            return Ok(());
        }
    }
}

fn ids(tx: &mut Transaction<'_>, sql: &str, cutoff: i64) -> Result<Vec<i64>, StoreError> {
    tx.query(sql, &[&cutoff, &count_to_sql(RECORD_CHUNK)])
        .ctx("purge selection")?
        .iter()
        .map(|r| r.at(0))
        .collect()
}

/// A record kept until the technical limit after it closed, then deleted with its log.
struct ClosedRecords {
    /// Ids past the cutoff (`$1`), at most `$2`.
    select: &'static str,
    delete_log: &'static str,
    /// Rows of other tables that go with the record (`$1`: its id).
    delete_also: &'static [&'static str],
    delete: &'static str,
    store: &'static str,
    log_store: &'static str,
}

impl ClosedRecords {
    /// Closed incidents not under a legal hold.
    const INCIDENTS: ClosedRecords = ClosedRecords {
        select: "SELECT id FROM incidents WHERE status = 'closed' AND closed_at < $1 \
                 AND id NOT IN (SELECT id FROM held_incidents) LIMIT $2",
        delete_log: "DELETE FROM incident_log WHERE incident_id = $1",
        delete_also: &["DELETE FROM incident_pseudonyms WHERE incident_id = $1"],
        delete: "DELETE FROM incidents WHERE id = $1",
        store: "incidents",
        log_store: "incident_log",
    };
    const CRISES: ClosedRecords = ClosedRecords {
        select: "SELECT id FROM crises WHERE closed_at IS NOT NULL AND closed_at < $1 LIMIT $2",
        delete_log: "DELETE FROM crisis_log WHERE crisis_id = $1",
        delete_also: &[],
        delete: "DELETE FROM crises WHERE id = $1",
        store: "crises",
        log_store: "crisis_log",
    };
}

/// Closed records past the technical limit: deleted with their log, in bounded
/// transactions.
fn delete_closed(
    client: &mut Client,
    plan: &PurgePlan,
    report: &mut PurgeReport,
    records: ClosedRecords,
) -> Result<(), StoreError> {
    loop {
        let mut tx = begin(client)?;
        let batch = ids(&mut tx, records.select, plan.technical.0)?;
        for id in &batch {
            let n = tx.execute(records.delete_log, &[id]).ctx("purge log")?;
            report.remove(records.log_store, DataCategory::Technical, n);
            for sql in records.delete_also {
                tx.execute(*sql, &[id]).ctx("purge record rows")?;
            }
            tx.execute(records.delete, &[id]).ctx("purge record")?;
        }
        report.remove(records.store, DataCategory::Technical, batch.len() as u64);
        tx.commit().ctx("commit purge")?;
        if batch.len() < RECORD_CHUNK {
            return Ok(());
        }
    }
}

/// Closed incidents past the personal limit: pseudonyms and people replaced, kept as a
/// technical record.
fn redact_incidents(
    client: &mut Client,
    plan: &PurgePlan,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    // Incidents of devices with a sensitive field carry sensitive values in their evidence:
    // they are redacted at the sensitive limit when it is the shorter.
    let sensitive: Vec<String> = plan
        .sensitive_devices
        .iter()
        .map(|d| d.to_string())
        .collect();
    redact_incidents_where(
        client,
        plan,
        report,
        "SELECT id FROM incidents WHERE status = 'closed' AND closed_at < $1 \
         AND redacted_at IS NULL AND device = ANY($3) \
         AND id NOT IN (SELECT id FROM held_incidents) LIMIT $2",
        plan.sensitive_records,
        Some(&sensitive),
    )?;
    redact_incidents_where(
        client,
        plan,
        report,
        "SELECT id FROM incidents WHERE status = 'closed' AND closed_at < $1 \
         AND redacted_at IS NULL AND id NOT IN (SELECT id FROM held_incidents) LIMIT $2",
        plan.personal,
        None,
    )
}

fn redact_incidents_where(
    client: &mut Client,
    plan: &PurgePlan,
    report: &mut PurgeReport,
    select: &str,
    cutoff: Timestamp,
    devices: Option<&Vec<String>>,
) -> Result<(), StoreError> {
    loop {
        let mut tx = begin(client)?;
        let batch: Vec<i64> = match devices {
            Some(devices) => tx
                .query(select, &[&cutoff.0, &count_to_sql(RECORD_CHUNK), devices])
                .ctx("purge selection")?
                .iter()
                .map(|r| r.at(0))
                .collect::<Result<_, _>>()?,
            None => ids(&mut tx, select, cutoff.0)?,
        };
        for id in &batch {
            let row = tx
                .query_one(
                    "SELECT title, evidence, owner, sop FROM incidents WHERE id = $1",
                    &[id],
                )
                .ctx("read incident to redact")?;
            let (title, evidence): (String, String) = (row.at(0)?, row.at(1)?);
            let (owner, sop): (Option<String>, String) = (row.at(2)?, row.at(3)?);
            let owner = owner.map(|o| plan.role_of(&o));
            tx.execute(
                "UPDATE incidents SET title = $2, evidence = $3, owner = $4, sop = $5, \
                 redacted_at = $6 WHERE id = $1",
                &[
                    id,
                    &redact_pseudonyms(&title).0,
                    &redact_pseudonyms(&evidence).0,
                    &owner,
                    &redact_sop(plan, &sop),
                    &plan.now.0,
                ],
            )
            .ctx("redact incident")?;
            let n = redact_log(&mut tx, plan, RedactedLog::INCIDENT, *id)?;
            report.redact("incident_log", DataCategory::Personal, n);
            // Past the personal limit, nothing of the incident can be unmasked any more.
            tx.execute(
                "DELETE FROM incident_pseudonyms WHERE incident_id = $1",
                &[id],
            )
            .ctx("redact incident pseudonyms")?;
        }
        report.redact("incidents", DataCategory::Personal, batch.len() as u64);
        tx.commit().ctx("commit redaction")?;
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
        select: "SELECT id, actor, detail FROM incident_log WHERE incident_id = $1",
        update: "UPDATE incident_log SET actor = $2, detail = $3, message = NULL WHERE id = $1",
    };
    const CRISIS: RedactedLog = RedactedLog {
        select: "SELECT id, actor, text FROM crisis_log WHERE crisis_id = $1",
        update: "UPDATE crisis_log SET actor = $2, text = $3, message = NULL WHERE id = $1",
    };
}

/// Redacts the log entries of one record: actors become their role, pseudonyms in the
/// text `[effacé]`. Returns how many entries were rewritten.
fn redact_log(
    tx: &mut Transaction<'_>,
    plan: &PurgePlan,
    log: RedactedLog,
    parent: i64,
) -> Result<u64, StoreError> {
    let entries = tx.query(log.select, &[&parent]).ctx("read log to redact")?;
    let update = tx.prepare(log.update).ctx("prepare redact log")?;
    for r in &entries {
        let (entry, actor, text): (i64, String, String) = (r.at(0)?, r.at(1)?, r.at(2)?);
        tx.execute(
            &update,
            &[
                &entry,
                &redact_actor(plan, &actor),
                &redact_pseudonyms(&text).0,
            ],
        )
        .ctx("redact log")?;
    }
    Ok(entries.len() as u64)
}

/// Closed crises past the personal limit: the log's people and pseudonyms, the role
/// holders, who opened and closed it, replaced.
fn redact_crises(
    client: &mut Client,
    plan: &PurgePlan,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    loop {
        let mut tx = begin(client)?;
        let batch = ids(
            &mut tx,
            "SELECT id FROM crises WHERE closed_at IS NOT NULL AND closed_at < $1 \
             AND redacted_at IS NULL LIMIT $2",
            plan.personal.0,
        )?;
        for id in &batch {
            let row = tx
                .query_one(
                    "SELECT title, opened_by, closed_by, summary, roles FROM crises WHERE id = $1",
                    &[id],
                )
                .ctx("read crisis to redact")?;
            let (title, opened_by): (String, String) = (row.at(0)?, row.at(1)?);
            let (closed_by, summary): (Option<String>, Option<String>) = (row.at(2)?, row.at(3)?);
            let roles: String = row.at(4)?;
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
            tx.execute(
                "UPDATE crises SET title = $2, opened_by = $3, closed_by = $4, summary = $5, \
                 roles = $6, redacted_at = $7 WHERE id = $1",
                &[
                    id,
                    &redact_pseudonyms(&title).0,
                    &redact_actor(plan, &opened_by),
                    &closed_by.map(|c| redact_actor(plan, &c)),
                    &summary.map(|s| redact_pseudonyms(&s).0),
                    &roles,
                    &plan.now.0,
                ],
            )
            .ctx("redact crisis")?;
            let n = redact_log(&mut tx, plan, RedactedLog::CRISIS, *id)?;
            report.redact("crisis_log", DataCategory::Personal, n);
        }
        report.redact("crises", DataCategory::Personal, batch.len() as u64);
        tx.commit().ctx("commit redaction")?;
        if batch.len() < RECORD_CHUNK {
            return Ok(());
        }
    }
}

/// Records a purge run; keeps the last hundred.
pub(crate) fn record_purge(
    client: &mut Client,
    at: Timestamp,
    detail: &str,
) -> Result<(), StoreError> {
    let mut tx = begin(client)?;
    tx.execute(
        "INSERT INTO purge_runs (at, detail) VALUES ($1, $2)",
        &[&at.0, &detail],
    )
    .ctx("record purge")?;
    tx.execute(
        "DELETE FROM purge_runs WHERE id <= (SELECT max(id) - 100 FROM purge_runs)",
        &[],
    )
    .ctx("trim purge runs")?;
    tx.commit().ctx("commit purge run")?;
    Ok(())
}

// ---- legal holds -----------------------------------------------------------------------

pub(crate) fn set_hold(client: &mut Client, h: &LegalHold) -> Result<(), StoreError> {
    let id = crate::rows::id_to_sql(h.incident)?;
    let mut tx = begin(client)?;
    tx.execute(
        "UPDATE legal_holds SET released_at = $2, released_by = $3 \
         WHERE incident_id = $1 AND released_at IS NULL",
        &[&id, &h.set_at.0, &h.set_by],
    )
    .ctx("supersede hold")?;
    tx.execute(
        "INSERT INTO legal_holds (incident_id, justification, until, set_by, set_at) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &id,
            &h.justification.as_str(),
            &h.until.0,
            &h.set_by,
            &h.set_at.0,
        ],
    )
    .ctx("write hold")?;
    tx.commit().ctx("commit hold")?;
    Ok(())
}

pub(crate) fn release_hold(
    client: &mut Client,
    incident: IncidentId,
    by: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let id = crate::rows::id_to_sql(incident)?;
    let mut tx = begin(client)?;
    let n = tx
        .execute(
            "UPDATE legal_holds SET released_at = $2, released_by = $3 \
             WHERE incident_id = $1 AND released_at IS NULL AND until > $2",
            &[&id, &at.0, &by],
        )
        .ctx("release hold")?;
    tx.commit().ctx("commit hold release")?;
    Ok(n > 0)
}

pub(crate) fn holds(
    client: &mut impl GenericClient,
    now: Timestamp,
    all: bool,
) -> Result<Vec<LegalHold>, StoreError> {
    let rows = if all {
        client.query(
            "SELECT incident_id, justification, until, set_by, set_at, released_at, \
             released_by FROM legal_holds ORDER BY id DESC LIMIT 1000",
            &[],
        )
    } else {
        client.query(
            "SELECT incident_id, justification, until, set_by, set_at, released_at, \
             released_by FROM legal_holds WHERE released_at IS NULL AND until > $1 \
             ORDER BY id DESC",
            &[&now.0],
        )
    }
    .ctx("read holds")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let justification: String = r.at(1)?;
        out.push(LegalHold {
            incident: crate::rows::id_from_sql(r.at(0)?)?,
            // Read back through the recogniser: a row is not trusted.
            justification: beffroi_core::SafeText::redacting(&justification),
            until: Timestamp(r.at(2)?),
            set_by: r.at(3)?,
            set_at: Timestamp(r.at(4)?),
            released_at: r.at::<Option<i64>>(5)?.map(Timestamp),
            released_by: r.at(6)?,
        });
    }
    Ok(out)
}

// ---- a person's requests ---------------------------------------------------------------

/// Every other text a pseudonym can sit in — technical text values of observations (a
/// number typed into a topic, scrubbed at ingest), crisis titles, summaries and role
/// holders, event names, hold justifications, quarantine reasons, handover notes, shelving
/// reasons — with the pseudonym replaced; how many texts changed. Technical texts inside a
/// held incident's window stay.
fn erase_in_other_texts(tx: &mut Transaction<'_>, p: &str) -> Result<u64, StoreError> {
    let pp = [p.to_string()];
    let mut n = 0u64;
    // (table, text column, extra condition)
    const TEXTS: &[(&str, &str, &str)] = &[
        (
            "observations",
            "value_text",
            " AND value_text <> $1 AND NOT EXISTS (SELECT 1 FROM held_windows w \
             WHERE w.device = observations.device \
             AND observations.time BETWEEN w.from_ms AND w.to_ms)",
        ),
        ("crises", "title", ""),
        ("crises", "summary", ""),
        ("crises", "roles", ""),
        ("events", "name", ""),
        ("legal_holds", "justification", ""),
        ("quarantine_log", "reason", ""),
        ("handover_notes", "text", ""),
        ("shelf_log", "reason", ""),
    ];
    for (table, column, extra) in TEXTS {
        let select = format!(
            "SELECT ctid::text, {column} FROM {table} WHERE strpos({column}, $1) > 0{extra}"
        );
        let rows = tx.query(&select, &[&p]).ctx("read texts to erase")?;
        let update = format!("UPDATE {table} SET {column} = $1 WHERE ctid = $2::text::tid");
        for r in rows {
            let (key, text): (String, String) = (r.at(0)?, r.at(1)?);
            let Some(erased) = erase_pseudonyms(&text, &pp) else {
                continue;
            };
            tx.execute(&update, &[&erased, &key]).ctx("erase in text")?;
            n += 1;
        }
    }
    Ok(n)
}

/// Incidents whose title or evidence mention `p`, and log entries that do.
fn mentions(
    client: &mut impl GenericClient,
    p: &str,
) -> Result<(Vec<MentionRow>, Vec<MentionLogRow>), StoreError> {
    let incidents = client
        .query(
            "SELECT id, status, opened_at, strpos(title, $1) > 0, strpos(evidence, $1) > 0 \
             FROM incidents WHERE strpos(title, $1) > 0 OR strpos(evidence, $1) > 0",
            &[&p],
        )
        .ctx("subject incidents")?
        .iter()
        .map(|r| Ok((r.at(0)?, r.at(1)?, r.at(2)?, r.at(3)?, r.at(4)?)))
        .collect::<Result<_, StoreError>>()?;
    let log = client
        .query(
            "SELECT id, incident_id, at, action FROM incident_log WHERE strpos(detail, $1) > 0",
            &[&p],
        )
        .ctx("subject log")?
        .iter()
        .map(|r| Ok((r.at(0)?, r.at(1)?, r.at(2)?, r.at(3)?)))
        .collect::<Result<_, StoreError>>()?;
    Ok((incidents, log))
}

pub(crate) fn subject_data(
    client: &mut Client,
    pseudonyms: &[String],
    limit: usize,
) -> Result<SubjectData, StoreError> {
    let mut out = SubjectData::default();
    let mut incidents: std::collections::BTreeMap<i64, SubjectIncident> = Default::default();
    // One snapshot for the whole answer.
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .ctx("begin read")?;
    for p in pseudonyms {
        let n: i64 = tx
            .query_one(
                "SELECT count(*) FROM observations WHERE value_text = $1",
                &[p],
            )
            .ctx("subject count")?
            .at(0)?;
        out.observation_count += n.max(0) as u64;
        let room = limit.saturating_sub(out.observations.len());
        for r in tx
            .query(
                "SELECT device, field, time FROM observations WHERE value_text = $1 \
                 ORDER BY time DESC LIMIT $2",
                &[p, &count_to_sql(room)],
            )
            .ctx("subject observations")?
        {
            out.observations.push(SubjectObservation {
                device: r.at(0)?,
                field: r.at(1)?,
                time: Timestamp(r.at(2)?),
                pseudonym: p.clone(),
            });
        }
        let ids: i64 = tx
            .query_one("SELECT count(*) FROM identities WHERE pseudonym = $1", &[p])
            .ctx("subject identities")?
            .at(0)?;
        out.identities += ids.max(0) as u64;
        let (found, log) = mentions(&mut tx, p)?;
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
                    let (status, opened): (String, i64) = match tx
                        .query_opt(
                            "SELECT status, opened_at FROM incidents WHERE id = $1",
                            &[&incident],
                        )
                        .ctx("subject incident")?
                    {
                        Some(r) => (r.at(0)?, r.at(1)?),
                        None => Default::default(),
                    };
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
        let c: i64 = tx
            .query_one(
                "SELECT count(*) FROM crisis_log WHERE strpos(text, $1) > 0",
                &[p],
            )
            .ctx("subject crisis log")?
            .at(0)?;
        out.crisis_entries += c.max(0) as u64;
    }
    tx.commit().ctx("end read")?;
    out.incidents = incidents.into_values().collect();
    Ok(out)
}

pub(crate) fn erase_subject(
    client: &mut Client,
    pseudonyms: &[String],
    now: Timestamp,
) -> Result<ErasureReport, StoreError> {
    let held = gather_held(client, now)?;
    let is_held = |id: i64| held.iter().any(|h| i64::try_from(h.0) == Ok(id));
    let mut report = ErasureReport::default();
    for p in pseudonyms {
        // Observations, in bounded transactions, outside the windows of held incidents.
        loop {
            let mut tx = begin(client)?;
            let n = tx
                .execute(
                    "DELETE FROM observations WHERE ctid IN \
                     (SELECT o.ctid FROM observations o \
                     WHERE o.value_text = $1 AND NOT EXISTS (SELECT 1 FROM held_windows w \
                     WHERE w.device = o.device AND o.time BETWEEN w.from_ms AND w.to_ms) LIMIT $2)",
                    &[p, &count_to_sql(PURGE_CHUNK)],
                )
                .ctx("erase observations")?;
            if n > 0 {
                tx.execute(
                    "UPDATE counters SET value = value - $1 WHERE name = 'observations'",
                    &[&i64::try_from(n).unwrap_or(i64::MAX)],
                )
                .ctx("write observation count")?;
            }
            tx.commit().ctx("commit erasure")?;
            report.observations += n;
            if n < PURGE_CHUNK as u64 {
                break;
            }
        }
        let mut tx = begin(client)?;
        report.identities += tx
            .execute(
                "DELETE FROM identities WHERE pseudonym = $1 \
                 AND pseudonym NOT IN (SELECT p FROM held_pseudonyms)",
                &[p],
            )
            .ctx("erase identity")?;
        tx.execute(
            "DELETE FROM incident_pseudonyms WHERE pseudonym = $1 \
             AND incident_id NOT IN (SELECT id FROM held_incidents)",
            &[p],
        )
        .ctx("erase incident pseudonyms")?;
        let (found, log) = mentions(&mut tx, p)?;
        let pp = std::slice::from_ref(p);
        for (id, _, _, _, _) in found {
            if is_held(id) {
                if !report
                    .held_incidents
                    .iter()
                    .any(|h| i64::try_from(h.0) == Ok(id))
                {
                    report.held_incidents.push(IncidentId(id.max(0) as u64));
                }
                continue;
            }
            let row = tx
                .query_one(
                    "SELECT title, evidence FROM incidents WHERE id = $1",
                    &[&id],
                )
                .ctx("read incident to erase")?;
            let (title, evidence): (String, String) = (row.at(0)?, row.at(1)?);
            tx.execute(
                "UPDATE incidents SET title = $2, evidence = $3 WHERE id = $1",
                &[
                    &id,
                    &erase_pseudonyms(&title, pp).unwrap_or(title.clone()),
                    &erase_pseudonyms(&evidence, pp).unwrap_or(evidence.clone()),
                ],
            )
            .ctx("erase in incident")?;
            report.incidents_redacted += 1;
        }
        for (entry, incident, _, _) in log {
            if is_held(incident) {
                if !report
                    .held_incidents
                    .iter()
                    .any(|h| i64::try_from(h.0) == Ok(incident))
                {
                    report
                        .held_incidents
                        .push(IncidentId(incident.max(0) as u64));
                }
                continue;
            }
            let detail: String = tx
                .query_one("SELECT detail FROM incident_log WHERE id = $1", &[&entry])
                .ctx("read log to erase")?
                .at(0)?;
            if let Some(d) = erase_pseudonyms(&detail, pp) {
                tx.execute(
                    "UPDATE incident_log SET detail = $2, message = NULL WHERE id = $1",
                    &[&entry, &d],
                )
                .ctx("erase in log")?;
                report.log_entries_redacted += 1;
            }
        }
        let entries = tx
            .query(
                "SELECT id, text FROM crisis_log WHERE strpos(text, $1) > 0",
                &[p],
            )
            .ctx("read crisis log to erase")?;
        for r in entries {
            let (entry, text): (i64, String) = (r.at(0)?, r.at(1)?);
            if let Some(t) = erase_pseudonyms(&text, pp) {
                tx.execute(
                    "UPDATE crisis_log SET text = $2, message = NULL WHERE id = $1",
                    &[&entry, &t],
                )
                .ctx("erase in crisis log")?;
                report.crisis_entries_redacted += 1;
            }
        }
        report.other_texts_redacted += erase_in_other_texts(&mut tx, p)?;
        tx.commit().ctx("commit erasure")?;
    }
    Ok(report)
}

// ---- retention status ------------------------------------------------------------------

fn count_oldest(
    client: &mut impl GenericClient,
    sql: &str,
) -> Result<(u64, Option<Timestamp>), StoreError> {
    let r = client.query_one(sql, &[]).ctx("retention status")?;
    let n: i64 = r.at(0)?;
    let oldest: Option<i64> = r.at(1)?;
    Ok((n.max(0) as u64, oldest.map(Timestamp)))
}

pub(crate) fn retention_status(
    client: &mut Client,
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
    // One snapshot for the whole status.
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .ctx("begin read")?;
    for r in tx
        .query(
            "SELECT device, field, count(*), min(time) FROM observations GROUP BY device, field",
            &[],
        )
        .ctx("retention status")?
    {
        let (device, field): (String, String) = (r.at(0)?, r.at(1)?);
        let (n, oldest): (i64, i64) = (r.at(2)?, r.at(3)?);
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
    let (n, o) = count_oldest(&mut tx, "SELECT count(*), min(last_seen) FROM identities")?;
    add("identities", DataCategory::Personal, n, o);
    let (n, o) = count_oldest(
        &mut tx,
        "SELECT count(*), min(closed_at) FROM incidents WHERE redacted_at IS NULL AND closed_at IS NOT NULL",
    )?;
    add("incidents", DataCategory::Personal, n, o);
    let (n, o) = count_oldest(&mut tx, "SELECT count(*), min(opened_at) FROM incidents")?;
    add("incidents", DataCategory::Technical, n, o);
    let (n, o) = count_oldest(&mut tx, "SELECT count(*), min(at) FROM incident_log")?;
    add("incident_log", DataCategory::Technical, n, o);
    let (n, o) = count_oldest(
        &mut tx,
        "SELECT count(*), min(closed_at) FROM crises WHERE redacted_at IS NULL AND closed_at IS NOT NULL",
    )?;
    add("crises", DataCategory::Personal, n, o);
    let (n, o) = count_oldest(&mut tx, "SELECT count(*), min(at) FROM crisis_log")?;
    add("crisis_log", DataCategory::Technical, n, o);
    let (n, o) = count_oldest(&mut tx, "SELECT count(*), min(at) FROM rejections")?;
    add("rejections", DataCategory::Technical, n, o);
    let (n, o) = count_oldest(&mut tx, "SELECT count(*), min(at) FROM quarantine_log")?;
    add("quarantine_log", DataCategory::Technical, n, o);
    let last = match tx
        .query_opt(
            "SELECT at, detail FROM purge_runs ORDER BY id DESC LIMIT 1",
            &[],
        )
        .ctx("last purge")?
    {
        Some(r) => {
            let (at, detail): (i64, String) = (r.at(0)?, r.at(1)?);
            Some(PurgeRun {
                at: Timestamp(at),
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        }
        None => None,
    };
    tx.commit().ctx("end read")?;
    Ok((out, last))
}
