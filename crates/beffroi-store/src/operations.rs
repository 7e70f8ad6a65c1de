//! Rows of the command post's operations: units, crises and their logs; the shift
//! handover's log query.

use beffroi_core::crisis::{Crisis, CrisisChange};
use beffroi_core::{Incident, IncidentId, Territory, Timestamp, Unit, UnitStatus};
use beffroi_engine::StoreError;
use beffroi_engine::store::{HandoverEntry, StoredUnit, Visibility};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Transaction, params, params_from_iter};
use serde_json::json;

use crate::error::{Context, SkipList, Skipped, inconsistent};
use crate::rows::ReadRow;
use crate::rows::{INCIDENT_COLUMNS, IncidentRow, LogRow, id_from_sql, id_to_sql, limit_to_sql};
use beffroi_store_rows::{CrisisLogRow, CrisisRow, crisis_from_row, crisis_id_to_sql};

const UPSERT_UNIT: &str = "INSERT INTO units (id, status, missions, updated_at) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
     missions = excluded.missions, updated_at = excluded.updated_at";

const UPSERT_CRISIS: &str = "INSERT INTO crises (id, kind, title, communes, level, opened_at, \
     opened_by, closed_at, closed_by, summary, roles, incidents) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, title = excluded.title, \
     communes = excluded.communes, level = excluded.level, closed_at = excluded.closed_at, \
     closed_by = excluded.closed_by, summary = excluded.summary, roles = excluded.roles, \
     incidents = excluded.incidents";

const INSERT_CRISIS_LOG: &str = "INSERT INTO crisis_log (crisis_id, at, actor, kind, text, \
     incident, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

pub(crate) fn write_units(tx: &Transaction<'_>, units: &[Unit]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(UPSERT_UNIT).ctx("prepare unit")?;
    for u in units {
        let missions = json!(u.missions.iter().map(|m| m.0).collect::<Vec<_>>()).to_string();
        stmt.execute(params![
            &*u.spec.id,
            u.status.as_str(),
            missions,
            u.updated_at.0
        ])
        .ctx("write unit")?;
    }
    Ok(())
}

pub(crate) fn write_crises(
    tx: &Transaction<'_>,
    t: &Territory,
    changes: &[CrisisChange],
) -> Result<(), StoreError> {
    let mut upsert = tx.prepare_cached(UPSERT_CRISIS).ctx("prepare crisis")?;
    let mut log = tx
        .prepare_cached(INSERT_CRISIS_LOG)
        .ctx("prepare crisis log")?;
    for change in changes {
        let c = &change.crisis;
        let id = crisis_id_to_sql(c.id)?;
        let communes = c
            .communes
            .iter()
            .map(|i| {
                t.communes
                    .get(i.get())
                    .map(|c| c.id.to_string())
                    .ok_or_else(|| inconsistent(format!("crisis {}: commune index", c.id.0)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let roles: Vec<_> = c
            .roles
            .iter()
            .map(|r| json!({"role": &*r.role, "holder": r.holder.as_deref()}))
            .collect();
        let incidents: Vec<u64> = c.incidents.iter().map(|i| i.0).collect();
        upsert
            .execute(params![
                id,
                c.kind.as_str(),
                &*c.title,
                json!(communes).to_string(),
                c.level,
                c.opened_at.0,
                c.opened_by.to_string(),
                c.closed_at.map(|t| t.0),
                c.closed_by.as_ref().map(ToString::to_string),
                c.summary.as_deref(),
                json!(roles).to_string(),
                json!(incidents).to_string(),
            ])
            .ctx("write crisis")?;
        for e in &change.log {
            log.execute(params![
                id,
                e.at.0,
                e.actor.to_string(),
                e.kind.as_str(),
                e.text.as_str(),
                e.incident.map(id_to_sql).transpose()?,
                crate::rows::write_message(e.message.as_ref()),
            ])
            .ctx("write crisis log")?;
        }
    }
    Ok(())
}

pub(crate) fn units(conn: &Connection, skipped: &Skipped) -> Result<Vec<StoredUnit>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, status, updated_at FROM units ORDER BY id")
        .ctx("prepare units")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .ctx("read units")?;
    let mut out = SkipList::new();
    for row in rows {
        let (id, status, at) = row.ctx("read units")?;
        out.push(
            UnitStatus::parse(&status)
                .map(|status| StoredUnit {
                    id: id.clone(),
                    status,
                    updated_at: Timestamp(at),
                })
                .ok_or_else(|| inconsistent(format!("unit {id}: status `{status}`"))),
        )?;
    }
    Ok(out.finish(skipped, "units"))
}

pub(crate) fn crises(
    conn: &Connection,
    t: &Territory,
    skipped: &Skipped,
) -> Result<Vec<Crisis>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, kind, title, communes, level, opened_at, opened_by, closed_at, \
             closed_by, summary, roles, incidents FROM crises ORDER BY id",
        )
        .ctx("prepare crises")?;
    let rows: Vec<CrisisRow> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })
        .ctx("read crises")?
        .collect::<Result<_, _>>()
        .ctx("read crises")?;
    let mut log_stmt = conn
        .prepare_cached(
            "SELECT at, actor, kind, text, incident, message FROM crisis_log \
             WHERE crisis_id = ?1 ORDER BY id",
        )
        .ctx("prepare crisis log")?;
    let mut out = SkipList::new();
    for row in rows {
        let id = row.0;
        let entries: Vec<CrisisLogRow> = log_stmt
            .query_map([id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .ctx("read crisis log")?
            .collect::<Result<_, _>>()
            .ctx("read crisis log")?;
        out.push(crisis_from_row(row, entries, t))?;
    }
    Ok(out.finish(skipped, "crises"))
}

pub(crate) fn incidents_by_id(
    conn: &Connection,
    t: &Territory,
    ids: &[IncidentId],
    visible: &Visibility,
    skipped: &Skipped,
) -> Result<Vec<Incident>, StoreError> {
    let mut out = SkipList::new();
    // In chunks, far below SQLite's parameter limit.
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut clauses = vec![format!("id IN ({marks})")];
        let mut args = chunk
            .iter()
            .map(|i| id_to_sql(*i).map(SqlValue::Integer))
            .collect::<Result<Vec<_>, _>>()?;
        crate::queries::visibility_clauses(t, visible, "", &mut clauses, &mut args);
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {} ORDER BY id",
            clauses.join(" AND ")
        );
        let mut stmt = conn.prepare(&sql).ctx("prepare incidents by id")?;
        let rows = stmt
            .query_map(params_from_iter(args), IncidentRow::read)
            .ctx("read incidents by id")?;
        for row in rows {
            out.push(row.ctx("read incidents by id")?.into_incident(t))?;
        }
    }
    let mut items = out.finish(skipped, "incidents");
    items.sort_by_key(|i| i.id);
    Ok(items)
}

pub(crate) fn log_since(
    conn: &Connection,
    t: &Territory,
    since: Timestamp,
    limit: usize,
    visible: &Visibility,
    skipped: &Skipped,
) -> Result<Vec<HandoverEntry>, StoreError> {
    let mut clauses = vec!["l.at >= ?".to_string()];
    let mut args = vec![SqlValue::Integer(since.0)];
    crate::queries::visibility_clauses(t, visible, "i.", &mut clauses, &mut args);
    args.push(SqlValue::Integer(limit_to_sql(limit)));
    let sql = format!(
        "SELECT l.at, l.actor, l.action, l.detail, l.message, l.incident_id, i.title, \
         COALESCE(i.current, json_extract(i.trigger, '$.value')) \
         FROM incident_log l JOIN incidents i ON i.id = l.incident_id \
         WHERE {} ORDER BY l.at DESC, l.id DESC LIMIT ?",
        clauses.join(" AND ")
    );
    let mut stmt = conn.prepare_cached(&sql).ctx("prepare log since")?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((
                LogRow::read(r)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<f64>>(7)?,
            ))
        })
        .ctx("read log since")?;
    let mut out = SkipList::new();
    for row in rows {
        let (log, id, title, value) = row.ctx("read log since")?;
        // A title's `{value}` reads as the incident's current value (`Incident::title_now`).
        let title = if title.contains(beffroi_core::incident::VALUE_TOKEN) {
            let v = value.map_or_else(|| "…".to_string(), |v| v.to_string());
            title.replace(beffroi_core::incident::VALUE_TOKEN, &v)
        } else {
            title
        };
        out.push((|| {
            Ok(HandoverEntry {
                incident: id_from_sql(id)?,
                title,
                entry: log.into_entry()?,
            })
        })())?;
    }
    // The newest `limit` lines, given back oldest first.
    let mut items = out.finish(skipped, "incident_log");
    items.reverse();
    Ok(items)
}
