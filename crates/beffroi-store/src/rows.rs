//! The SQLite side of the stored rows: the SQL column lists and statements, binding an
//! incident for its upsert, and [`ReadRow`], which reads the driver's row into the rows of
//! `beffroi-store-rows` (re-exported here), where what a row means is decided for both
//! adapters.

use beffroi_core::{Incident, Territory};
use beffroi_engine::StoreError;
use rusqlite::Row;

use crate::error::inconsistent;

pub(crate) use beffroi_store_rows::*;

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
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30) \
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
pub(crate) const INSERT_CARRIED: &str = "INSERT OR IGNORE INTO incident_pseudonyms \
     (incident_id, pseudonym, at) VALUES (?1, ?2, ?3)";
pub(crate) const INSERT_LOG: &str = "INSERT INTO incident_log (incident_id, at, actor, action, detail, message) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Binds `inc` to [`UPSERT_INCIDENT`] and runs it.
pub(crate) fn upsert_incident(
    stmt: &mut rusqlite::Statement<'_>,
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
    stmt.execute(rusqlite::params![
        id_to_sql(inc.id)?,
        inc.key.as_str(),
        &*inc.rule,
        &*inc.category,
        inc.severity.as_str(),
        inc.status.as_str(),
        inc.title.as_str(),
        commune,
        site,
        device,
        inc.position.lon,
        inc.position.lat,
        inc.opened_at.0,
        inc.updated_at.0,
        inc.acknowledged_at.map(|t| t.0),
        inc.resolved_at.map(|t| t.0),
        inc.closed_at.map(|t| t.0),
        inc.owner.as_deref(),
        inc.condition_active,
        inc.alarm_count,
        inc.evidence.as_str(),
        inc.sop_title.as_deref(),
        sop,
        inc.reminded_at.map(|t| t.0),
        inc.escalated_at.map(|t| t.0),
        trigger,
        inc.peak,
        inc.current,
        inc.current_at.map(|t| t.0),
        inc.reopened_at.map(|t| t.0),
    ])
    .map_err(|e| StoreError::Backend(format!("write incident {}: {e}", inc.id)))?;
    Ok(())
}

pub(crate) const LOG_COLUMNS: &str = "at, actor, action, detail, message";

/// Reads this adapter's driver row into a shared row (column order: the `*_COLUMNS` lists).
pub(crate) trait ReadRow: Sized {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self>;
}

impl ReadRow for ObservationRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(ObservationRow {
            field: row.get(0)?,
            time: row.get(1)?,
            value: row.get(2)?,
            value_bool: row.get(3)?,
            value_text: row.get(4)?,
            received: row.get(5)?,
            trust: row.get(6)?,
            quarantined: row.get(7)?,
        })
    }
}

impl ReadRow for RejectionRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RejectionRow {
            at: row.get(0)?,
            source: row.get(1)?,
            reason: row.get(2)?,
            detail: row.get(3)?,
        })
    }
}

impl ReadRow for IncidentRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(IncidentRow {
            id: row.get(0)?,
            key: row.get(1)?,
            rule: row.get(2)?,
            category: row.get(3)?,
            severity: row.get(4)?,
            status: row.get(5)?,
            title: row.get(6)?,
            commune: row.get(7)?,
            site: row.get(8)?,
            device: row.get(9)?,
            lon: row.get(10)?,
            lat: row.get(11)?,
            opened_at: row.get(12)?,
            updated_at: row.get(13)?,
            acknowledged_at: row.get(14)?,
            resolved_at: row.get(15)?,
            closed_at: row.get(16)?,
            owner: row.get(17)?,
            condition_active: row.get(18)?,
            alarm_count: row.get(19)?,
            evidence: row.get(20)?,
            sop_title: row.get(21)?,
            sop: row.get(22)?,
            reminded_at: row.get(23)?,
            escalated_at: row.get(24)?,
            trigger: row.get(25)?,
            peak: row.get(26)?,
            current: row.get(27)?,
            current_at: row.get(28)?,
            reopened_at: row.get(29)?,
        })
    }
}

impl ReadRow for LogRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(LogRow {
            at: row.get(0)?,
            actor: row.get(1)?,
            action: row.get(2)?,
            detail: row.get(3)?,
            message: row.get(4)?,
        })
    }
}
