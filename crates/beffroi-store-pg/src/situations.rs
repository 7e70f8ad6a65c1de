//! Rows of the situations: which incidents are one real event, and the situation's own log.
//!
//! A situation row holds its members as a JSON list of incident ids; what a member shows
//! (title, status, severity…) is read back from the incident's row, the one truth about it.

use beffroi_core::situation::{Situation, SituationChange, SituationId};
use beffroi_core::{Territory, Timestamp};
use beffroi_engine::StoreError;
use beffroi_engine::store::Visibility;
use postgres::{GenericClient, Transaction};
use serde_json::json;

use crate::error::{Context, Get, SkipList, Skipped, inconsistent};
use crate::rows::id_to_sql;
use beffroi_store_rows::{
    SituationLogRow, SituationRow, sid_from_sql, situation_from_row, situation_members,
};

const UPSERT: &str = "INSERT INTO situations (id, family, opened_at, updated_at, closed_at, \
     merged_into, members) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (id) DO UPDATE SET family = excluded.family, opened_at = excluded.opened_at, \
     updated_at = excluded.updated_at, closed_at = excluded.closed_at, \
     merged_into = excluded.merged_into, members = excluded.members";

const INSERT_LOG: &str = "INSERT INTO situation_log (situation_id, at, actor, event, incident, \
     other) VALUES ($1, $2, $3, $4, $5, $6)";

fn sid_to_sql(id: SituationId) -> Result<i64, StoreError> {
    i64::try_from(id.0).map_err(|_| inconsistent(format!("situation id {} exceeds i64", id.0)))
}

pub(crate) fn write(
    tx: &mut Transaction<'_>,
    changes: &[SituationChange],
) -> Result<(), StoreError> {
    let upsert = tx.prepare(UPSERT).ctx("prepare situation")?;
    let log = tx.prepare(INSERT_LOG).ctx("prepare situation log")?;
    for change in changes {
        let s = &change.situation;
        let id = sid_to_sql(s.id)?;
        let members: Vec<u64> = s.members.iter().map(|m| m.incident.0).collect();
        tx.execute(
            &upsert,
            &[
                &id,
                &s.family.as_deref(),
                &s.opened_at.0,
                &s.updated_at.0,
                &s.closed_at.map(|t| t.0),
                &s.merged_into.map(sid_to_sql).transpose()?,
                &json!(members).to_string(),
            ],
        )
        .ctx("write situation")?;
        for e in &change.log {
            tx.execute(
                &log,
                &[
                    &id,
                    &e.at.0,
                    &e.actor.to_string(),
                    &e.event.as_str(),
                    &e.incident.map(id_to_sql).transpose()?,
                    &e.other.map(sid_to_sql).transpose()?,
                ],
            )
            .ctx("write situation log")?;
        }
    }
    Ok(())
}

pub(crate) fn max_id(client: &mut impl GenericClient) -> Result<SituationId, StoreError> {
    let max: Option<i64> = client
        .query_one("SELECT MAX(id) FROM situations", &[])
        .ctx("read max situation id")?
        .at(0)?;
    sid_from_sql(max.unwrap_or(0))
}

/// Situations not closed, and those closed at or after `since`, in id order. A member
/// whose incident is gone (purged) is left out; a situation left with none is skipped.
pub(crate) fn read(
    client: &mut impl GenericClient,
    t: &Territory,
    since: Timestamp,
    skipped: &Skipped,
) -> Result<Vec<Situation>, StoreError> {
    let rows: Vec<SituationRow> = client
        .query(
            "SELECT id, family, opened_at, updated_at, closed_at, merged_into, members \
             FROM situations WHERE closed_at IS NULL OR closed_at >= $1 ORDER BY id",
            &[&since.0],
        )
        .ctx("read situations")?
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
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    let log_stmt = client
        .prepare(
            "SELECT at, actor, event, incident, other FROM situation_log \
             WHERE situation_id = $1 ORDER BY id",
        )
        .ctx("prepare situation log")?;
    let mut out = SkipList::new();
    for row in rows {
        let entries: Vec<SituationLogRow> = client
            .query(&log_stmt, &[&row.0])
            .ctx("read situation log")?
            .iter()
            .map(|r| Ok((r.at(0)?, r.at(1)?, r.at(2)?, r.at(3)?, r.at(4)?)))
            .collect::<Result<_, StoreError>>()?;
        let parsed = from_row(client, t, row, entries, skipped);
        if let Ok(None) = parsed {
            continue;
        }
        out.push(parsed.and_then(|s| s.ok_or_else(|| inconsistent("unreachable"))))?;
    }
    Ok(out.finish(skipped, "situations"))
}

fn from_row(
    client: &mut impl GenericClient,
    t: &Territory,
    row: SituationRow,
    entries: Vec<SituationLogRow>,
    skipped: &Skipped,
) -> Result<Option<Situation>, StoreError> {
    let ids = situation_members(&row)?;
    let incidents =
        crate::operations::incidents_by_id(client, t, &ids, &Visibility::everything(), skipped)?;
    situation_from_row(row, entries, &ids, &incidents)
}
