//! Reads shared by the writer (restart) and the reader pool (API).

use beffroi_core::{
    CommuneIdx, DeviceIdx, Incident, IncidentId, LogEntry, Severity, Territory, Timestamp,
};
use beffroi_engine::StoreError;
use beffroi_engine::store::{CYBER, IncidentQuery, StoredObservation, StoredRejection, Visibility};
use postgres::GenericClient;
use postgres::types::ToSql;

use crate::error::{Context, Get, SkipList, Skipped, inconsistent};
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

/// A parameter of a query built at run time.
pub(crate) type Param = Box<dyn ToSql + Sync>;

/// The placeholders of a query built at run time: each `push` returns `$n`.
#[derive(Default)]
pub(crate) struct Params(Vec<Param>);

impl Params {
    pub(crate) fn push(&mut self, v: impl ToSql + Sync + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
    }
}

/// Any incident by id; `Inconsistent` when it no longer fits the territory.
pub(crate) fn incident(
    client: &mut impl GenericClient,
    t: &Territory,
    id: IncidentId,
) -> Result<Option<Incident>, StoreError> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1");
    let row = client
        .query_opt(&sql, &[&id_to_sql(id)?])
        .ctx("read incident")?;
    row.map(|r| IncidentRow::read(&r)?.into_incident(t))
        .transpose()
}

/// Incidents that are not closed, by id.
pub(crate) fn active_incidents(
    client: &mut impl GenericClient,
    t: &Territory,
    skipped: &Skipped,
) -> Result<Vec<Incident>, StoreError> {
    let sql =
        format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status <> 'closed' ORDER BY id");
    let rows = client.query(&sql, &[]).ctx("read active incidents")?;
    let mut out = SkipList::new();
    for row in rows {
        out.push(IncidentRow::read(&row)?.into_incident(t))?;
    }
    Ok(out.finish(skipped, "incidents"))
}

pub(crate) fn max_incident_id(client: &mut impl GenericClient) -> Result<IncidentId, StoreError> {
    let max: i64 = client
        .query_one("SELECT coalesce(max(id), 0) FROM incidents", &[])
        .ctx("read max incident id")?
        .at(0)?;
    id_from_sql(max)
}

pub(crate) fn last_seen(
    client: &mut impl GenericClient,
    t: &Territory,
    skipped: &Skipped,
) -> Result<Vec<(DeviceIdx, Timestamp)>, StoreError> {
    let rows = client
        .query("SELECT device, last_seen FROM device_state", &[])
        .ctx("read last seen")?;
    let mut out = SkipList::new();
    for row in rows {
        let device: String = row.at(0)?;
        let at: i64 = row.at(1)?;
        out.push(device_idx(t, &device).map(|d| (d, Timestamp(at))))?;
    }
    Ok(out.finish(skipped, "device_state"))
}

/// Every series' watermark; a device or field the territory no longer has is skipped.
pub(crate) fn watermarks(
    client: &mut impl GenericClient,
    t: &Territory,
    skipped: &Skipped,
) -> Result<Vec<beffroi_engine::store::Watermark>, StoreError> {
    let rows = client
        .query(
            "SELECT device, watermarks::text FROM device_state WHERE watermarks <> '{}'::jsonb",
            &[],
        )
        .ctx("read watermarks")?;
    let mut out = Vec::new();
    let mut bad = 0u64;
    for row in rows {
        let device: String = row.at(0)?;
        let json: String = row.at(1)?;
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
/// (named `{alias}commune`, `{alias}category`): clauses to join with AND, their parameters
/// pushed to `params`. The table stores commune ids as text.
pub(crate) fn visibility_clauses(
    t: &Territory,
    v: &Visibility,
    alias: &str,
    clauses: &mut Vec<String>,
    params: &mut Params,
) {
    let ids = |l: &[CommuneIdx]| -> Vec<String> {
        l.iter()
            .filter_map(|c| t.communes.get(c.get()))
            .map(|c| c.id.to_string())
            .collect()
    };
    if let Some(list) = v.communes() {
        let values = ids(list);
        if values.is_empty() {
            clauses.push("FALSE".into());
        } else {
            let p = params.push(values);
            clauses.push(format!("{alias}commune = ANY({p})"));
        }
    }
    if let Some(list) = v.cyber_communes() {
        let values = ids(list);
        let cyber = params.push(CYBER.to_string());
        if values.is_empty() {
            clauses.push(format!("{alias}category <> {cyber}"));
        } else {
            let p = params.push(values);
            clauses.push(format!(
                "({alias}category <> {cyber} OR {alias}commune = ANY({p}))"
            ));
        }
    }
}

pub(crate) fn incidents(
    client: &mut impl GenericClient,
    t: &Territory,
    q: &IncidentQuery,
    skipped: &Skipped,
) -> Result<Vec<Incident>, StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut params = Params::default();
    let mut any_of = |params: &mut Params, column: &str, values: Vec<String>| {
        let p = params.push(values);
        clauses.push(format!("{column} = ANY({p})"));
    };
    if !q.statuses.is_empty() {
        any_of(
            &mut params,
            "status",
            q.statuses.iter().map(|s| s.as_str().to_string()).collect(),
        );
    }
    if let Some(category) = &q.category {
        any_of(&mut params, "category", vec![category.clone()]);
    }
    if let Some(commune) = &q.commune {
        any_of(&mut params, "commune", vec![commune.clone()]);
    }
    if let Some(min) = q.min_severity {
        any_of(
            &mut params,
            "severity",
            Severity::ALL
                .into_iter()
                .filter(|s| *s >= min)
                .map(|s| s.as_str().to_string())
                .collect(),
        );
    }
    if let Some(since) = q.updated_since {
        let p = params.push(since.0);
        clauses.push(format!("updated_at >= {p}"));
    }
    visibility_clauses(t, &q.visible, "", &mut clauses, &mut params);
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit = params.push(effective_limit(q.limit));
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents {filter} \
         ORDER BY updated_at DESC, id DESC LIMIT {limit}"
    );
    let rows = client.query(&sql, &params.refs()).ctx("list incidents")?;
    let mut out = SkipList::new();
    for row in rows {
        out.push(IncidentRow::read(&row)?.into_incident(t))?;
    }
    Ok(out.finish(skipped, "incidents"))
}

/// The incident and its log in chronological order, from one snapshot.
pub(crate) fn incident_with_log(
    client: &mut postgres::Client,
    t: &Territory,
    id: IncidentId,
    visible: &Visibility,
) -> Result<Option<(Incident, Vec<LogEntry>)>, StoreError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .ctx("begin read")?;
    // One row: the rule is applied to it before its log is read.
    let Some(incident) = incident(&mut tx, t, id)?.filter(|i| visible.sees_incident(i)) else {
        return Ok(None);
    };
    let sql =
        format!("SELECT {LOG_COLUMNS} FROM incident_log WHERE incident_id = $1 ORDER BY at, id");
    let rows = tx
        .query(&sql, &[&id_to_sql(id)?])
        .ctx("read incident log")?;
    let mut log = Vec::with_capacity(rows.len());
    for row in rows {
        log.push(LogRow::read(&row)?.into_entry()?);
    }
    tx.commit().ctx("end read")?;
    Ok(Some((incident, log)))
}

/// Newest observations of `device` with an event time in `since..=until`, at most `limit`,
/// newest first (ties by field index). One backward scan of `observations_device_time`:
/// the `ORDER BY` is the index's, read backwards, so no sort of the device's rows.
pub(crate) fn observations(
    client: &mut impl GenericClient,
    t: &Territory,
    device: DeviceIdx,
    since: Timestamp,
    until: Timestamp,
    limit: usize,
    skipped: &Skipped,
) -> Result<Vec<StoredObservation>, StoreError> {
    let device_name = device_id(t, device)?;
    let limit = effective_limit(limit);
    let sql = format!(
        "SELECT {OBSERVATION_COLUMNS} FROM observations \
         WHERE device = $1 AND time >= $2 AND time <= $3 \
         ORDER BY time DESC, field DESC, vkey DESC LIMIT $4"
    );
    let rows = client
        .query(&sql, &[&device_name, &since.0, &until.0, &limit])
        .ctx("read observations")?;
    let mut out = SkipList::new();
    for row in rows {
        let row = ObservationRow::read(&row)?;
        match field_idx(t, device, &row.field) {
            Ok(f) => out.push(row.into_observation(device, f))?,
            Err(reason) => out.skip(1, reason),
        }
    }
    let mut items = out.finish(skipped, "observations");
    items.sort_by(|a, b| b.time.cmp(&a.time).then(a.field.cmp(&b.field)));
    Ok(items)
}

/// The pseudonyms incident `id` carries (`incident_pseudonyms`), oldest first.
pub(crate) fn carried(
    client: &mut impl GenericClient,
    id: IncidentId,
) -> Result<Vec<String>, StoreError> {
    let Ok(id) = i64::try_from(id.0) else {
        return Ok(Vec::new());
    };
    client
        .query(
            "SELECT pseudonym FROM incident_pseudonyms WHERE incident_id = $1 \
             ORDER BY at, pseudonym",
            &[&id],
        )
        .ctx("read incident pseudonyms")?
        .iter()
        .map(|r| r.at(0))
        .collect()
}

/// Whether incident `id` carries `pseudonym` (`incident_pseudonyms`).
pub(crate) fn carries(
    client: &mut impl GenericClient,
    id: IncidentId,
    pseudonym: &str,
) -> Result<bool, StoreError> {
    let Ok(id) = i64::try_from(id.0) else {
        return Ok(false);
    };
    Ok(client
        .query_opt(
            "SELECT 1 FROM incident_pseudonyms WHERE incident_id = $1 AND pseudonym = $2",
            &[&id, &pseudonym],
        )
        .ctx("read incident pseudonym")?
        .is_some())
}

/// The sealed value behind a pseudonym (`identities`, written by the pseudonymisation).
pub(crate) fn identity(
    client: &mut impl GenericClient,
    pseudonym: &str,
) -> Result<Option<beffroi_engine::store::IdentityRow>, StoreError> {
    let Some(row) = client
        .query_opt(
            "SELECT pseudonym, identifier, epoch, sealed, first_seen, last_seen \
             FROM identities WHERE pseudonym = $1",
            &[&pseudonym],
        )
        .ctx("read identity")?
    else {
        return Ok(None);
    };
    let epoch: i64 = row.at(2)?;
    let epoch = u32::try_from(epoch)
        .map_err(|_| inconsistent(format!("identity epoch {epoch} out of range")))?;
    Ok(Some(beffroi_engine::store::IdentityRow {
        pseudonym: row.at(0)?,
        identifier: row.at(1)?,
        epoch,
        sealed: row.at(3)?,
        first_seen: Timestamp(row.at(4)?),
        last_seen: Timestamp(row.at(5)?),
    }))
}

pub(crate) fn observation_count(client: &mut impl GenericClient) -> Result<u64, StoreError> {
    let n: i64 = client
        .query_one(
            "SELECT value FROM counters WHERE name = 'observations'",
            &[],
        )
        .ctx("read observation count")?
        .at(0)?;
    u64::try_from(n).map_err(|_| inconsistent(format!("negative observation count {n}")))
}

pub(crate) fn rejections(
    client: &mut impl GenericClient,
    limit: usize,
    skipped: &Skipped,
) -> Result<Vec<StoredRejection>, StoreError> {
    let sql = format!("SELECT {REJECTION_COLUMNS} FROM rejections ORDER BY id DESC LIMIT $1");
    let rows = client
        .query(&sql, &[&effective_limit(limit)])
        .ctx("read rejections")?;
    let mut out = SkipList::new();
    for row in rows {
        out.push(RejectionRow::read(&row)?.into_rejection())?;
    }
    Ok(out.finish(skipped, "rejections"))
}

/// Quarantine acts, oldest first (the newest `limit` when there are more). Acts naming a
/// device no longer in the territory are skipped.
pub(crate) fn quarantine_log(
    client: &mut impl GenericClient,
    t: &Territory,
    limit: usize,
) -> Result<Vec<beffroi_engine::sentinel::QuarantineAct>, StoreError> {
    let limit = limit_to_sql(limit);
    let rows = client
        .query(
            "SELECT device, quarantined, actor, reason, at FROM \
             (SELECT * FROM quarantine_log ORDER BY seq DESC LIMIT $1) newest ORDER BY seq",
            &[&limit],
        )
        .ctx("read quarantine log")?;
    let mut out = Vec::new();
    for row in rows {
        let device: String = row.at(0)?;
        let Some(device) = t.device_id(&device) else {
            continue;
        };
        let actor: String = row.at(2)?;
        out.push(beffroi_engine::sentinel::QuarantineAct {
            device,
            quarantined: row.at(1)?,
            actor: actor.into(),
            reason: row.at(3)?,
            at: Timestamp(row.at(4)?),
        });
    }
    Ok(out)
}
