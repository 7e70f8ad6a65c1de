//! Rows of the command post's operations: units, crises and their logs; the shift
//! handover's log query.

use beffroi_core::crisis::{Crisis, CrisisChange};
use beffroi_core::{Incident, IncidentId, Territory, Timestamp, Unit, UnitStatus};
use beffroi_engine::StoreError;
use beffroi_engine::store::{HandoverEntry, StoredUnit, Visibility};
use postgres::{GenericClient, Transaction};
use serde_json::json;

use crate::error::{Context, Get, SkipList, Skipped, inconsistent};
use crate::queries::Params;
use crate::rows::ReadRow;
use crate::rows::{INCIDENT_COLUMNS, IncidentRow, LogRow, id_from_sql, id_to_sql, limit_to_sql};
use beffroi_store_rows::{CrisisLogRow, CrisisRow, crisis_from_row, crisis_id_to_sql};

const UPSERT_UNIT: &str = "INSERT INTO units (id, status, missions, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
     missions = excluded.missions, updated_at = excluded.updated_at";

const UPSERT_CRISIS: &str = "INSERT INTO crises (id, kind, title, communes, level, opened_at, \
     opened_by, closed_at, closed_by, summary, roles, incidents) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, title = excluded.title, \
     communes = excluded.communes, level = excluded.level, closed_at = excluded.closed_at, \
     closed_by = excluded.closed_by, summary = excluded.summary, roles = excluded.roles, \
     incidents = excluded.incidents";

const INSERT_CRISIS_LOG: &str = "INSERT INTO crisis_log (crisis_id, at, actor, kind, text, \
     incident, message) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) fn write_units(tx: &mut Transaction<'_>, units: &[Unit]) -> Result<(), StoreError> {
    let stmt = tx.prepare(UPSERT_UNIT).ctx("prepare unit")?;
    for u in units {
        let missions = json!(u.missions.iter().map(|m| m.0).collect::<Vec<_>>()).to_string();
        tx.execute(
            &stmt,
            &[&&*u.spec.id, &u.status.as_str(), &missions, &u.updated_at.0],
        )
        .ctx("write unit")?;
    }
    Ok(())
}

pub(crate) fn write_crises(
    tx: &mut Transaction<'_>,
    t: &Territory,
    changes: &[CrisisChange],
) -> Result<(), StoreError> {
    let upsert = tx.prepare(UPSERT_CRISIS).ctx("prepare crisis")?;
    let log = tx.prepare(INSERT_CRISIS_LOG).ctx("prepare crisis log")?;
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
        tx.execute(
            &upsert,
            &[
                &id,
                &c.kind.as_str(),
                &&*c.title,
                &json!(communes).to_string(),
                &i64::from(c.level),
                &c.opened_at.0,
                &c.opened_by.to_string(),
                &c.closed_at.map(|t| t.0),
                &c.closed_by.as_ref().map(ToString::to_string),
                &c.summary.as_deref(),
                &json!(roles).to_string(),
                &json!(incidents).to_string(),
            ],
        )
        .ctx("write crisis")?;
        for e in &change.log {
            tx.execute(
                &log,
                &[
                    &id,
                    &e.at.0,
                    &e.actor.to_string(),
                    &e.kind.as_str(),
                    &e.text.as_str(),
                    &e.incident.map(id_to_sql).transpose()?,
                    &crate::rows::write_message(e.message.as_ref()),
                ],
            )
            .ctx("write crisis log")?;
        }
    }
    Ok(())
}

pub(crate) fn units(
    client: &mut impl GenericClient,
    skipped: &Skipped,
) -> Result<Vec<StoredUnit>, StoreError> {
    let rows = client
        .query("SELECT id, status, updated_at FROM units ORDER BY id", &[])
        .ctx("read units")?;
    let mut out = SkipList::new();
    for row in rows {
        let (id, status, at): (String, String, i64) = (row.at(0)?, row.at(1)?, row.at(2)?);
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
    client: &mut impl GenericClient,
    t: &Territory,
    skipped: &Skipped,
) -> Result<Vec<Crisis>, StoreError> {
    let rows = client
        .query(
            "SELECT id, kind, title, communes, level, opened_at, opened_by, closed_at, \
             closed_by, summary, roles, incidents FROM crises ORDER BY id",
            &[],
        )
        .ctx("read crises")?;
    let rows: Vec<CrisisRow> = rows
        .iter()
        .map(|r| {
            Ok((
                r.at(0)?,
                r.at(1)?,
                r.at(2)?,
                r.at(3)?,
                r.at(4)?,
                r.at(5)?,
                r.at(6)?,
                r.at(7)?,
                r.at(8)?,
                r.at(9)?,
                r.at(10)?,
                r.at(11)?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    let log_stmt = client
        .prepare(
            "SELECT at, actor, kind, text, incident, message FROM crisis_log \
             WHERE crisis_id = $1 ORDER BY id",
        )
        .ctx("prepare crisis log")?;
    let mut out = SkipList::new();
    for row in rows {
        let id = row.0;
        let entries: Vec<CrisisLogRow> = client
            .query(&log_stmt, &[&id])
            .ctx("read crisis log")?
            .iter()
            .map(|r| Ok((r.at(0)?, r.at(1)?, r.at(2)?, r.at(3)?, r.at(4)?, r.at(5)?)))
            .collect::<Result<_, StoreError>>()?;
        out.push(crisis_from_row(row, entries, t))?;
    }
    Ok(out.finish(skipped, "crises"))
}

pub(crate) fn incidents_by_id(
    client: &mut impl GenericClient,
    t: &Territory,
    ids: &[IncidentId],
    visible: &Visibility,
    skipped: &Skipped,
) -> Result<Vec<Incident>, StoreError> {
    let mut out = SkipList::new();
    // One array parameter, in bounded chunks all the same.
    for chunk in ids.chunks(5_000) {
        let mut params = Params::default();
        let ids = chunk
            .iter()
            .map(|i| id_to_sql(*i))
            .collect::<Result<Vec<_>, _>>()?;
        let p = params.push(ids);
        let mut clauses = vec![format!("id = ANY({p})")];
        crate::queries::visibility_clauses(t, visible, "", &mut clauses, &mut params);
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {} ORDER BY id",
            clauses.join(" AND ")
        );
        let rows = client
            .query(&sql, &params.refs())
            .ctx("read incidents by id")?;
        for row in rows {
            out.push(IncidentRow::read(&row)?.into_incident(t))?;
        }
    }
    let mut items = out.finish(skipped, "incidents");
    items.sort_by_key(|i| i.id);
    Ok(items)
}

pub(crate) fn log_since(
    client: &mut impl GenericClient,
    t: &Territory,
    since: Timestamp,
    limit: usize,
    visible: &Visibility,
    skipped: &Skipped,
) -> Result<Vec<HandoverEntry>, StoreError> {
    let mut params = Params::default();
    let p = params.push(since.0);
    let mut clauses = vec![format!("l.at >= {p}")];
    crate::queries::visibility_clauses(t, visible, "i.", &mut clauses, &mut params);
    let limit = params.push(limit_to_sql(limit));
    // The trigger is JSON text written by this crate; a value that is not a number reads
    // as none.
    let sql = format!(
        "SELECT l.at, l.actor, l.action, l.detail, l.message, l.incident_id, i.title, \
         COALESCE(i.current, CASE WHEN jsonb_typeof(i.trigger::jsonb -> 'value') = 'number' \
                                  THEN (i.trigger::jsonb ->> 'value')::double precision END) \
         FROM incident_log l JOIN incidents i ON i.id = l.incident_id \
         WHERE {} ORDER BY l.at DESC, l.id DESC LIMIT {limit}",
        clauses.join(" AND ")
    );
    let rows = client.query(&sql, &params.refs()).ctx("read log since")?;
    let mut out = SkipList::new();
    for r in rows {
        let (log, id, title, value): (LogRow, i64, String, Option<f64>) =
            (LogRow::read(&r)?, r.at(5)?, r.at(6)?, r.at(7)?);
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
