//! The PostgreSQL side of the stored rows: the SQL column lists and statements, binding an
//! incident for its upsert, and [`ReadRow`], which reads the driver's row into the rows of
//! `beffroi-store-rows` (re-exported here), where what a row means is decided for both
//! adapters.

use beffroi_core::{Incident, Territory};
use beffroi_engine::StoreError;
use postgres::Row;

use crate::error::{Get, inconsistent};

pub(crate) use beffroi_store_rows::*;

/// A count as a `BIGINT` (saturating).
pub(crate) fn count_to_sql(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Columns: `field, time, value, value_bool, value_text, received`.
pub(crate) const OBSERVATION_COLUMNS: &str =
    "field, time, value, value_bool, value_text, received, trust, quarantined";

pub(crate) const REJECTION_COLUMNS: &str = "at, source, reason, detail";

/// Column order shared by [`UPSERT_INCIDENT`] and [`ReadRow`] of [`IncidentRow`].
pub(crate) const INCIDENT_COLUMNS: &str = "id, key, rule, category, severity, status, title, \
     commune, site, device, lon, lat, opened_at, updated_at, acknowledged_at, resolved_at, \
     closed_at, owner, condition_active, alarm_count, evidence, sop_title, sop, reminded_at, \
     escalated_at, trigger, peak, current, current_at, reopened_at";

pub(crate) const UPSERT_INCIDENT: &str = "INSERT INTO incidents (id, key, rule, category, \
     severity, status, title, commune, site, device, lon, lat, opened_at, updated_at, \
     acknowledged_at, resolved_at, closed_at, owner, condition_active, alarm_count, evidence, \
     sop_title, sop, reminded_at, escalated_at, trigger, peak, current, current_at, \
     reopened_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30) \
     ON CONFLICT (id) DO UPDATE SET key = excluded.key, rule = excluded.rule, \
     category = excluded.category, severity = excluded.severity, status = excluded.status, \
     title = excluded.title, commune = excluded.commune, site = excluded.site, \
     device = excluded.device, lon = excluded.lon, lat = excluded.lat, \
     opened_at = excluded.opened_at, updated_at = excluded.updated_at, \
     acknowledged_at = excluded.acknowledged_at, resolved_at = excluded.resolved_at, \
     closed_at = excluded.closed_at, owner = excluded.owner, \
     condition_active = excluded.condition_active, alarm_count = excluded.alarm_count, \
     evidence = excluded.evidence, sop_title = excluded.sop_title, sop = excluded.sop, \
     reminded_at = excluded.reminded_at, escalated_at = excluded.escalated_at, \
     trigger = excluded.trigger, peak = excluded.peak, current = excluded.current, \
     current_at = excluded.current_at, reopened_at = excluded.reopened_at";

/// A pseudonym an incident carries (recorded once, at its first reading).
pub(crate) const INSERT_CARRIED: &str = "INSERT INTO incident_pseudonyms \
     (incident_id, pseudonym, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
pub(crate) const INSERT_LOG: &str = "INSERT INTO incident_log (incident_id, at, actor, action, detail, message) \
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Binds `inc` to [`UPSERT_INCIDENT`] and runs it.
pub(crate) fn upsert_incident(
    tx: &mut postgres::Transaction<'_>,
    stmt: &postgres::Statement,
    t: &Territory,
    inc: &Incident,
) -> Result<(), StoreError> {
    let commune = t
        .communes
        .get(inc.commune.get())
        .map(|c| &*c.id)
        .ok_or_else(|| inconsistent(format!("incident {}: commune index out of range", inc.id)))?;
    let site = t
        .sites
        .get(inc.site.get())
        .map(|s| &*s.id)
        .ok_or_else(|| inconsistent(format!("incident {}: site index out of range", inc.id)))?;
    let device = inc.device.map(|d| device_id(t, d)).transpose()?;
    let sop = sop_to_json(&inc.sop);
    let trigger = inc
        .trigger
        .as_ref()
        .map(|tr| trigger_to_json(t, tr))
        .transpose()?;
    let alarm_count = i64::from(inc.alarm_count);
    tx.execute(
        stmt,
        &[
            &id_to_sql(inc.id)?,
            &inc.key.as_str(),
            &&*inc.rule,
            &&*inc.category,
            &inc.severity.as_str(),
            &inc.status.as_str(),
            &inc.title.as_str(),
            &commune,
            &site,
            &device,
            &inc.position.lon,
            &inc.position.lat,
            &inc.opened_at.0,
            &inc.updated_at.0,
            &inc.acknowledged_at.map(|t| t.0),
            &inc.resolved_at.map(|t| t.0),
            &inc.closed_at.map(|t| t.0),
            &inc.owner.as_deref(),
            &inc.condition_active,
            &alarm_count,
            &inc.evidence.as_str(),
            &inc.sop_title.as_deref(),
            &sop,
            &inc.reminded_at.map(|t| t.0),
            &inc.escalated_at.map(|t| t.0),
            &trigger,
            &inc.peak,
            &inc.current,
            &inc.current_at.map(|t| t.0),
            &inc.reopened_at.map(|t| t.0),
        ],
    )
    .map_err(|e| crate::error::backend(&format!("write incident {}", inc.id), &e))?;
    Ok(())
}

pub(crate) const LOG_COLUMNS: &str = "at, actor, action, detail, message";

/// Reads this adapter's driver row into a shared row (column order: the `*_COLUMNS` lists).
pub(crate) trait ReadRow: Sized {
    fn read(row: &Row) -> Result<Self, StoreError>;
}

impl ReadRow for ObservationRow {
    fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(ObservationRow {
            field: row.at(0)?,
            time: row.at(1)?,
            value: row.at(2)?,
            value_bool: row.at(3)?,
            value_text: row.at(4)?,
            received: row.at(5)?,
            trust: row.at(6)?,
            quarantined: row.at(7)?,
        })
    }
}

impl ReadRow for RejectionRow {
    fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(RejectionRow {
            at: row.at(0)?,
            source: row.at(1)?,
            reason: row.at(2)?,
            detail: row.at(3)?,
        })
    }
}

impl ReadRow for IncidentRow {
    fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(IncidentRow {
            id: row.at(0)?,
            key: row.at(1)?,
            rule: row.at(2)?,
            category: row.at(3)?,
            severity: row.at(4)?,
            status: row.at(5)?,
            title: row.at(6)?,
            commune: row.at(7)?,
            site: row.at(8)?,
            device: row.at(9)?,
            lon: row.at(10)?,
            lat: row.at(11)?,
            opened_at: row.at(12)?,
            updated_at: row.at(13)?,
            acknowledged_at: row.at(14)?,
            resolved_at: row.at(15)?,
            closed_at: row.at(16)?,
            owner: row.at(17)?,
            condition_active: row.at(18)?,
            alarm_count: row.at(19)?,
            evidence: row.at(20)?,
            sop_title: row.at(21)?,
            sop: row.at(22)?,
            reminded_at: row.at(23)?,
            escalated_at: row.at(24)?,
            trigger: row.at(25)?,
            peak: row.at(26)?,
            current: row.at(27)?,
            current_at: row.at(28)?,
            reopened_at: row.at(29)?,
        })
    }
}

impl ReadRow for LogRow {
    fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(LogRow {
            at: row.at(0)?,
            actor: row.at(1)?,
            action: row.at(2)?,
            detail: row.at(3)?,
            message: row.at(4)?,
        })
    }
}
