//! Reads shared by the writer (restart) and the reader pool (API).

use beffroi_core::{
    CommuneIdx, DeviceIdx, Incident, IncidentId, LogEntry, Severity, Territory, Timestamp,
};
use beffroi_engine::StoreError;
use beffroi_engine::store::{CYBER, IncidentQuery, StoredObservation, StoredRejection, Visibility};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::error::{Context, SkipList, Skipped, inconsistent};
use crate::rows::ReadRow;
use crate::rows::{
    INCIDENT_COLUMNS, IncidentRow, LOG_COLUMNS, LogRow, OBSERVATION_COLUMNS, ObservationRow,
    REJECTION_COLUMNS, RejectionRow, device_id, device_idx, field_idx, id_from_sql, id_to_sql,
    limit_to_sql,
};

/// Limit used when a listing asks for 0 rows.
pub const DEFAULT_LIMIT: usize = 500;

fn effective_limit(limit: usize) -> i64 {
    limit_to_sql(if limit == 0 { DEFAULT_LIMIT } else { limit })
}

/// Any incident by id; `Inconsistent` when it no longer fits the territory.
pub(crate) fn incident(
    conn: &Connection,
    t: &Territory,
    id: IncidentId,
) -> Result<Option<Incident>, StoreError> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1");
    let row = conn
        .prepare_cached(&sql)
        .ctx("prepare incident")?
        .query_row([id_to_sql(id)?], IncidentRow::read)
        .optional()
        .ctx("read incident")?;
    row.map(|r| r.into_incident(t)).transpose()
}

/// Incidents that are not closed, by id.
pub(crate) fn active_incidents(
    conn: &Connection,
    t: &Territory,
    skipped: &Skipped,
) -> Result<Vec<Incident>, StoreError> {
    let sql =
        format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status != 'closed' ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql).ctx("prepare active incidents")?;
    let rows = stmt
        .query_map([], IncidentRow::read)
        .ctx("read active incidents")?;
    let mut out = SkipList::new();
    for row in rows {
        out.push(row.ctx("read active incidents")?.into_incident(t))?;
    }
    Ok(out.finish(skipped, "incidents"))
}

pub(crate) fn max_incident_id(conn: &Connection) -> Result<IncidentId, StoreError> {
    let max: i64 = conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM incidents")
        .ctx("prepare max incident id")?
        .query_row([], |r| r.get(0))
        .ctx("read max incident id")?;
    id_from_sql(max)
}

pub(crate) fn last_seen(
    conn: &Connection,
    t: &Territory,
    skipped: &Skipped,
) -> Result<Vec<(DeviceIdx, Timestamp)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT device, last_seen FROM device_state")
        .ctx("prepare last seen")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .ctx("read last seen")?;
    let mut out = SkipList::new();
    for row in rows {
        let (device, at) = row.ctx("read last seen")?;
        out.push(device_idx(t, &device).map(|d| (d, Timestamp(at))))?;
    }
    Ok(out.finish(skipped, "device_state"))
}

/// Every series' watermark; a device or field the territory no longer has is skipped.
pub(crate) fn watermarks(
    conn: &Connection,
    t: &Territory,
    skipped: &Skipped,
) -> Result<Vec<beffroi_engine::store::Watermark>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT device, watermarks FROM device_state WHERE watermarks <> '{}'")
        .ctx("prepare watermarks")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .ctx("read watermarks")?;
    let mut out = Vec::new();
    let mut bad = 0u64;
    for row in rows {
        let (device, json) = row.ctx("read watermarks")?;
        let Some(d) = t.device_id(&device) else {
            bad += 1;
            continue;
        };
        let kind = t.kind_of(d);
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(&json) else {
            bad += 1;
            continue;
        };
        for (name, at) in fields {
            match (kind.field(&name), at.as_i64()) {
                (Some(field), Some(ms)) => out.push(beffroi_engine::store::Watermark {
                    device: d,
                    field,
                    time: Timestamp(ms),
                }),
                _ => bad += 1,
            }
        }
    }
    skipped.record("watermarks", bad, None);
    Ok(out)
}

/// A [`Visibility`] as SQL over the `commune` and `category` columns of the incidents table
/// (named `{alias}commune`, `{alias}category`): clauses to join with AND, their arguments
/// appended in order. The table stores commune ids as text.
pub(crate) fn visibility_clauses(
    t: &Territory,
    v: &Visibility,
    alias: &str,
    clauses: &mut Vec<String>,
    args: &mut Vec<SqlValue>,
) {
    let ids = |l: &[CommuneIdx]| -> Vec<SqlValue> {
        l.iter()
            .filter_map(|c| t.communes.get(c.get()))
            .map(|c| SqlValue::Text(c.id.to_string()))
            .collect()
    };
    let marks = |n: usize| vec!["?"; n].join(", ");
    if let Some(list) = v.communes() {
        let values = ids(list);
        if values.is_empty() {
            clauses.push("0".into());
        } else {
            clauses.push(format!("{alias}commune IN ({})", marks(values.len())));
            args.extend(values);
        }
    }
    if let Some(list) = v.cyber_communes() {
        let values = ids(list);
        args.push(SqlValue::Text(CYBER.into()));
        if values.is_empty() {
            clauses.push(format!("{alias}category <> ?"));
        } else {
            clauses.push(format!(
                "({alias}category <> ? OR {alias}commune IN ({}))",
                marks(values.len())
            ));
            args.extend(values);
        }
    }
}

pub(crate) fn incidents(
    conn: &Connection,
    t: &Territory,
    q: &IncidentQuery,
    skipped: &Skipped,
) -> Result<Vec<Incident>, StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<SqlValue> = Vec::new();
    let mut any_of = |column: &str, values: Vec<&str>| {
        let marks = vec!["?"; values.len()].join(", ");
        clauses.push(format!("{column} IN ({marks})"));
        args.extend(values.into_iter().map(|v| SqlValue::Text(v.to_string())));
    };
    if !q.statuses.is_empty() {
        any_of("status", q.statuses.iter().map(|s| s.as_str()).collect());
    }
    if let Some(category) = &q.category {
        any_of("category", vec![category]);
    }
    if let Some(commune) = &q.commune {
        any_of("commune", vec![commune]);
    }
    if let Some(min) = q.min_severity {
        any_of(
            "severity",
            Severity::ALL
                .into_iter()
                .filter(|s| *s >= min)
                .map(Severity::as_str)
                .collect(),
        );
    }
    if let Some(since) = q.updated_since {
        clauses.push("updated_at >= ?".into());
        args.push(SqlValue::Integer(since.0));
    }
    visibility_clauses(t, &q.visible, "", &mut clauses, &mut args);
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    args.push(SqlValue::Integer(effective_limit(q.limit)));
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents {filter} \
         ORDER BY updated_at DESC, id DESC LIMIT ?"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx("prepare incident list")?;
    let rows = stmt
        .query_map(params_from_iter(args), IncidentRow::read)
        .ctx("list incidents")?;
    let mut out = SkipList::new();
    for row in rows {
        out.push(row.ctx("list incidents")?.into_incident(t))?;
    }
    Ok(out.finish(skipped, "incidents"))
}

/// The incident and its log in chronological order, from one snapshot.
pub(crate) fn incident_with_log(
    conn: &mut Connection,
    t: &Territory,
    id: IncidentId,
    visible: &Visibility,
) -> Result<Option<(Incident, Vec<LogEntry>)>, StoreError> {
    let tx = conn.transaction().ctx("begin read")?;
    // One row: the rule is applied to it before its log is read.
    let Some(incident) = incident(&tx, t, id)?.filter(|i| visible.sees_incident(i)) else {
        return Ok(None);
    };
    let sql =
        format!("SELECT {LOG_COLUMNS} FROM incident_log WHERE incident_id = ?1 ORDER BY at, id");
    let mut stmt = tx.prepare_cached(&sql).ctx("prepare incident log")?;
    let rows = stmt
        .query_map([id_to_sql(id)?], LogRow::read)
        .ctx("read incident log")?;
    let mut log = Vec::new();
    for row in rows {
        log.push(row.ctx("read incident log")?.into_entry()?);
    }
    Ok(Some((incident, log)))
}

/// Newest observations of `device` with an event time in `since..=until`, at most `limit`.
///
/// The primary key is (device, field, time, value key): rather than sorting every row of the device,
/// each field is read newest first through the key (fields are found by skipping along the
/// key, one seek each), and the per-field lists are merged.
pub(crate) fn observations(
    conn: &Connection,
    t: &Territory,
    device: DeviceIdx,
    since: Timestamp,
    until: Timestamp,
    limit: usize,
    skipped: &Skipped,
) -> Result<Vec<StoredObservation>, StoreError> {
    let device_name = device_id(t, device)?;
    let limit = effective_limit(limit);
    let mut first_field = conn
        .prepare_cached("SELECT field FROM observations WHERE device = ?1 ORDER BY field LIMIT 1")
        .ctx("prepare observation fields")?;
    let mut next_field = conn
        .prepare_cached(
            "SELECT field FROM observations WHERE device = ?1 AND field > ?2 \
             ORDER BY field LIMIT 1",
        )
        .ctx("prepare observation fields")?;
    let sql = format!(
        "SELECT {OBSERVATION_COLUMNS} FROM observations \
         WHERE device = ?1 AND field = ?2 AND time >= ?3 AND time <= ?5 \
         ORDER BY time DESC LIMIT ?4"
    );
    let mut newest = conn.prepare_cached(&sql).ctx("prepare observations")?;

    let mut out = SkipList::new();
    let mut field: Option<String> = first_field
        .query_row([device_name], |r| r.get(0))
        .optional()
        .ctx("read observation fields")?;
    while let Some(name) = field {
        let rows = newest
            .query_map(
                params![device_name, name, since.0, limit, until.0],
                ObservationRow::read,
            )
            .ctx("read observations")?;
        match field_idx(t, device, &name) {
            Ok(f) => {
                for row in rows {
                    out.push(row.ctx("read observations")?.into_observation(device, f))?;
                }
            }
            Err(reason) => {
                let mut count = 0;
                for row in rows {
                    row.ctx("read observations")?;
                    count += 1;
                }
                out.skip(count, reason);
            }
        }
        field = next_field
            .query_row(params![device_name, name], |r| r.get(0))
            .optional()
            .ctx("read observation fields")?;
    }
    let mut items = out.finish(skipped, "observations");
    items.sort_by(|a, b| b.time.cmp(&a.time).then(a.field.cmp(&b.field)));
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(items)
}

/// The pseudonyms incident `id` carries (`incident_pseudonyms`), oldest first.
pub(crate) fn carried(
    conn: &Connection,
    id: beffroi_core::IncidentId,
) -> Result<Vec<String>, StoreError> {
    let Ok(id) = i64::try_from(id.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT pseudonym FROM incident_pseudonyms WHERE incident_id = ?1 \
             ORDER BY at, pseudonym",
        )
        .ctx("prepare incident pseudonyms")?;
    let rows = stmt
        .query_map([id], |r| r.get::<_, String>(0))
        .ctx("read incident pseudonyms")?;
    rows.map(|r| r.ctx("read incident pseudonym")).collect()
}

/// Whether incident `id` carries `pseudonym` (`incident_pseudonyms`).
pub(crate) fn carries(
    conn: &Connection,
    id: beffroi_core::IncidentId,
    pseudonym: &str,
) -> Result<bool, StoreError> {
    let Ok(id) = i64::try_from(id.0) else {
        return Ok(false);
    };
    conn.prepare_cached(
        "SELECT 1 FROM incident_pseudonyms WHERE incident_id = ?1 AND pseudonym = ?2",
    )
    .ctx("prepare incident pseudonym")?
    .query_row(rusqlite::params![id, pseudonym], |_| Ok(()))
    .optional()
    .ctx("read incident pseudonym")
    .map(|r| r.is_some())
}

/// The sealed value behind a pseudonym (`identities`, written by the pseudonymisation).
pub(crate) fn identity(
    conn: &Connection,
    pseudonym: &str,
) -> Result<Option<beffroi_engine::store::IdentityRow>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT pseudonym, identifier, epoch, sealed, first_seen, last_seen \
             FROM identities WHERE pseudonym = ?",
        )
        .ctx("prepare identity")?
        .query_row([pseudonym], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .optional()
        .ctx("read identity")?;
    let Some((pseudonym, identifier, epoch, sealed, first, last)) = row else {
        return Ok(None);
    };
    let epoch = u32::try_from(epoch)
        .map_err(|_| inconsistent(format!("identity epoch {epoch} out of range")))?;
    Ok(Some(beffroi_engine::store::IdentityRow {
        pseudonym,
        identifier,
        epoch,
        sealed,
        first_seen: Timestamp(first),
        last_seen: Timestamp(last),
    }))
}

pub(crate) fn observation_count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT value FROM counters WHERE name = 'observations'")
        .ctx("prepare observation count")?
        .query_row([], |r| r.get(0))
        .ctx("read observation count")?;
    u64::try_from(n).map_err(|_| inconsistent(format!("negative observation count {n}")))
}

pub(crate) fn rejections(
    conn: &Connection,
    limit: usize,
    skipped: &Skipped,
) -> Result<Vec<StoredRejection>, StoreError> {
    let sql = format!("SELECT {REJECTION_COLUMNS} FROM rejections ORDER BY id DESC LIMIT ?1");
    let mut stmt = conn.prepare_cached(&sql).ctx("prepare rejections")?;
    let rows = stmt
        .query_map([effective_limit(limit)], RejectionRow::read)
        .ctx("read rejections")?;
    let mut out = SkipList::new();
    for row in rows {
        out.push(row.ctx("read rejections")?.into_rejection())?;
    }
    Ok(out.finish(skipped, "rejections"))
}

/// Quarantine acts, oldest first (the newest `limit` when there are more). Acts naming a
/// device no longer in the territory are skipped.
pub(crate) fn quarantine_log(
    conn: &Connection,
    t: &Territory,
    limit: usize,
) -> Result<Vec<beffroi_engine::sentinel::QuarantineAct>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT device, quarantined, actor, reason, at FROM \
             (SELECT * FROM quarantine_log ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
        )
        .ctx("prepare quarantine log")?;
    let rows = stmt
        .query_map([limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .ctx("read quarantine log")?;
    let mut out = Vec::new();
    for row in rows {
        let (device, quarantined, actor, reason, at) = row.ctx("read quarantine act")?;
        let Some(device) = t.device_id(&device) else {
            continue;
        };
        out.push(beffroi_engine::sentinel::QuarantineAct {
            device,
            quarantined,
            actor: actor.into(),
            reason,
            at: Timestamp(at),
        });
    }
    Ok(out)
}
