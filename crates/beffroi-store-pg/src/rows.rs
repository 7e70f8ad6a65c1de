//! Conversions between domain values and stored rows: indices ↔ textual ids through the
//! territory, enumerations ↔ their `as_str` form, the procedure ↔ JSON.
//!
//! Reading never panics: a row that does not fit the current territory (or is malformed)
//! becomes [`StoreError::Inconsistent`].

use std::sync::Arc;

use beffroi_core::{
    Actor, DedupKey, DeviceIdx, FieldIdx, Incident, IncidentId, LogEntry, Point, Severity, SopStep,
    Status, Territory, Timestamp, Trigger, TriggerKind, TriggerOp, Value,
};
use beffroi_engine::StoreError;
use beffroi_engine::store::{StoredObservation, StoredRejection};
use beffroi_wire::RejectReason;
use postgres::Row;
use serde_json::json;

use crate::error::{Get, inconsistent};

// ---- ids ------------------------------------------------------------------------------

pub(crate) fn device_id(t: &Territory, d: DeviceIdx) -> Result<&str, StoreError> {
    t.devices
        .get(d.get())
        .map(|dev| &*dev.id)
        .ok_or_else(|| inconsistent(format!("device index {} not in the territory", d.0)))
}

/// The device's id and the name of one of its fields.
pub(crate) fn device_field(
    t: &Territory,
    d: DeviceIdx,
    f: FieldIdx,
) -> Result<(&str, &str), StoreError> {
    let dev = t
        .devices
        .get(d.get())
        .ok_or_else(|| inconsistent(format!("device index {} not in the territory", d.0)))?;
    let field = t
        .kinds
        .get(dev.kind.get())
        .and_then(|k| k.fields.get(f.get()))
        .ok_or_else(|| {
            inconsistent(format!(
                "field index {} not in the kind of device {}",
                f.0, dev.id
            ))
        })?;
    Ok((&dev.id, &field.name))
}

pub(crate) fn device_idx(t: &Territory, id: &str) -> Result<DeviceIdx, StoreError> {
    t.device_id(id)
        .ok_or_else(|| inconsistent(format!("device `{id}` is no longer in the territory")))
}

/// The field of `device` named `name` in its current kind.
pub(crate) fn field_idx(
    t: &Territory,
    device: DeviceIdx,
    name: &str,
) -> Result<FieldIdx, StoreError> {
    t.devices
        .get(device.get())
        .and_then(|d| t.kinds.get(d.kind.get()))
        .and_then(|k| k.field(name))
        .ok_or_else(|| inconsistent(format!("field `{name}` is no longer in its device's kind")))
}

pub(crate) fn id_to_sql(id: IncidentId) -> Result<i64, StoreError> {
    i64::try_from(id.0).map_err(|_| inconsistent(format!("incident id {id} exceeds i64")))
}

pub(crate) fn id_from_sql(id: i64) -> Result<IncidentId, StoreError> {
    u64::try_from(id)
        .map(IncidentId)
        .map_err(|_| inconsistent(format!("negative incident id {id}")))
}

/// A `usize` limit as an SQL `LIMIT` (saturating).
pub(crate) fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A count as a `BIGINT` (saturating).
pub(crate) fn count_to_sql(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// ---- actors ---------------------------------------------------------------------------

/// Parses the `Display` form of an [`Actor`]: `user:NAME`, `rule:ID` or `system`.
pub(crate) fn parse_actor(s: &str) -> Option<Actor> {
    if let Some(name) = s.strip_prefix("user:") {
        Some(Actor::User(name.into()))
    } else if let Some(rule) = s.strip_prefix("rule:") {
        Some(Actor::Rule(rule.into()))
    } else if s == "system" {
        Some(Actor::System)
    } else {
        None
    }
}

// ---- observations ---------------------------------------------------------------------

/// The three value columns (`value`, `value_bool`, `value_text`): exactly one is set.
pub(crate) fn value_columns(v: &Value) -> (Option<f64>, Option<bool>, Option<&str>) {
    match v {
        Value::Number(n) => {
            debug_assert!(n.is_finite(), "validation admits finite numbers only");
            (Some(*n), None, None)
        }
        Value::Bool(b) => (None, Some(*b), None),
        Value::Text(s) => (None, None, Some(s)),
    }
}

/// Columns: `field, time, value, value_bool, value_text, received`.
pub(crate) const OBSERVATION_COLUMNS: &str =
    "field, time, value, value_bool, value_text, received, trust, quarantined";

/// An observation row of one device, as read.
pub(crate) struct ObservationRow {
    pub(crate) field: String,
    pub(crate) time: i64,
    pub(crate) value: Option<f64>,
    pub(crate) value_bool: Option<bool>,
    pub(crate) value_text: Option<String>,
    pub(crate) received: i64,
    pub(crate) trust: String,
    pub(crate) quarantined: bool,
}

impl ObservationRow {
    pub(crate) fn read(row: &Row) -> Result<Self, StoreError> {
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

    pub(crate) fn into_observation(
        self,
        device: DeviceIdx,
        field: FieldIdx,
    ) -> Result<StoredObservation, StoreError> {
        let value = match (self.value, self.value_bool, self.value_text) {
            (Some(n), None, None) => Value::Number(n),
            (None, Some(b), None) => Value::Bool(b),
            (None, None, Some(s)) => Value::Text(s.into()),
            _ => {
                return Err(inconsistent(format!(
                    "observation of `{}` at {} does not hold exactly one value",
                    self.field, self.time
                )));
            }
        };
        Ok(StoredObservation {
            device,
            field,
            value,
            time: Timestamp(self.time),
            received: Timestamp(self.received),
            trust: beffroi_core::Trust::parse(&self.trust).unwrap_or_default(),
            quarantined: self.quarantined,
        })
    }
}

// ---- rejections -----------------------------------------------------------------------

pub(crate) const REJECTION_COLUMNS: &str = "at, source, reason, detail";

pub(crate) struct RejectionRow {
    at: i64,
    source: String,
    reason: String,
    detail: String,
}

impl RejectionRow {
    pub(crate) fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(RejectionRow {
            at: row.at(0)?,
            source: row.at(1)?,
            reason: row.at(2)?,
            detail: row.at(3)?,
        })
    }

    pub(crate) fn into_rejection(self) -> Result<StoredRejection, StoreError> {
        let reason = RejectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == self.reason)
            .ok_or_else(|| inconsistent(format!("unknown rejection reason `{}`", self.reason)))?;
        Ok(StoredRejection {
            at: Timestamp(self.at),
            source: self.source,
            reason,
            detail: self.detail,
        })
    }
}

// ---- incidents ------------------------------------------------------------------------

/// Column order shared by [`UPSERT_INCIDENT`] and [`IncidentRow::read`].
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

/// An incident row as read, before its ids are resolved against the territory.
pub(crate) struct IncidentRow {
    id: i64,
    key: String,
    rule: String,
    category: String,
    severity: String,
    status: String,
    title: String,
    commune: String,
    site: String,
    device: Option<String>,
    lon: f64,
    lat: f64,
    opened_at: i64,
    updated_at: i64,
    acknowledged_at: Option<i64>,
    resolved_at: Option<i64>,
    closed_at: Option<i64>,
    owner: Option<String>,
    condition_active: bool,
    alarm_count: i64,
    evidence: String,
    sop_title: Option<String>,
    sop: String,
    reminded_at: Option<i64>,
    escalated_at: Option<i64>,
    trigger: Option<String>,
    peak: Option<f64>,
    current: Option<f64>,
    current_at: Option<i64>,
    reopened_at: Option<i64>,
}

impl IncidentRow {
    /// Reads the columns of [`INCIDENT_COLUMNS`], in that order.
    pub(crate) fn read(row: &Row) -> Result<Self, StoreError> {
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

    pub(crate) fn into_incident(self, t: &Territory) -> Result<Incident, StoreError> {
        let id = id_from_sql(self.id)?;
        let missing = |what: &str, v: &str| {
            inconsistent(format!(
                "incident {id}: {what} `{v}` is no longer in the territory"
            ))
        };
        let commune = t
            .commune_id(&self.commune)
            .ok_or_else(|| missing("commune", &self.commune))?;
        let site = t
            .site_id(&self.site)
            .ok_or_else(|| missing("site", &self.site))?;
        let device = match &self.device {
            Some(d) => Some(t.device_id(d).ok_or_else(|| missing("device", d))?),
            None => None,
        };
        let severity = Severity::parse(&self.severity)
            .ok_or_else(|| inconsistent(format!("incident {id}: severity `{}`", self.severity)))?;
        let status = Status::parse(&self.status)
            .ok_or_else(|| inconsistent(format!("incident {id}: status `{}`", self.status)))?;
        let alarm_count = u32::try_from(self.alarm_count).map_err(|_| {
            inconsistent(format!("incident {id}: alarm count {}", self.alarm_count))
        })?;
        let sop = sop_from_json(&self.sop)
            .ok_or_else(|| inconsistent(format!("incident {id}: malformed procedure JSON")))?;
        let trigger =
            match &self.trigger {
                Some(j) => Some(trigger_from_json(t, j).ok_or_else(|| {
                    inconsistent(format!("incident {id}: malformed trigger JSON"))
                })?),
                None => None,
            };
        Ok(Incident {
            id,
            key: DedupKey(self.key.into()),
            rule: self.rule.into(),
            category: self.category.into(),
            severity,
            status,
            // Read back through the recogniser: a row is not trusted.
            title: beffroi_core::SafeText::redacting(&self.title),
            commune,
            site,
            device,
            position: Point::new(self.lon, self.lat),
            opened_at: Timestamp(self.opened_at),
            updated_at: Timestamp(self.updated_at),
            acknowledged_at: self.acknowledged_at.map(Timestamp),
            resolved_at: self.resolved_at.map(Timestamp),
            closed_at: self.closed_at.map(Timestamp),
            owner: self.owner.map(Into::into),
            condition_active: self.condition_active,
            alarm_count,
            evidence: beffroi_core::SafeText::redacting(&self.evidence),
            sop_title: self.sop_title.map(Into::into),
            sop,
            reminded_at: self.reminded_at.map(Timestamp),
            escalated_at: self.escalated_at.map(Timestamp),
            trigger,
            peak: self.peak,
            current: self.current,
            current_at: self.current_at.map(Timestamp),
            reopened_at: self.reopened_at.map(Timestamp),
        })
    }
}

pub(crate) const LOG_COLUMNS: &str = "at, actor, action, detail, message";

pub(crate) struct LogRow {
    at: i64,
    actor: String,
    action: String,
    detail: String,
    message: Option<String>,
}

impl LogRow {
    pub(crate) fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(LogRow {
            at: row.at(0)?,
            actor: row.at(1)?,
            action: row.at(2)?,
            detail: row.at(3)?,
            message: row.at(4)?,
        })
    }

    pub(crate) fn into_entry(self) -> Result<LogEntry, StoreError> {
        let actor = parse_actor(&self.actor)
            .ok_or_else(|| inconsistent(format!("log entry: unknown actor `{}`", self.actor)))?;
        Ok(LogEntry {
            at: Timestamp(self.at),
            actor,
            action: self.action.into(),
            detail: beffroi_core::SafeText::redacting(&self.detail),
            message: read_message(self.message.as_deref())?,
        })
    }
}

/// A log line's message read back; a row whose message does not read is inconsistent.
pub(crate) fn read_message(
    json: Option<&str>,
) -> Result<Option<beffroi_core::Message>, StoreError> {
    json.map(|j| {
        beffroi_engine::message_json::from_json_str(j).map_err(|e| inconsistent(e.to_string()))
    })
    .transpose()
}

/// A log line's message as stored.
pub(crate) fn write_message(m: Option<&beffroi_core::Message>) -> Option<String> {
    m.map(|m| beffroi_engine::message_json::to_json(m).to_string())
}

// ---- procedure (SOP) as JSON ----------------------------------------------------------

/// `[{"text": "...", "done_by": "user:alice" | null, "done_at": 1700000000000 | null}]`
/// An incident's trigger as JSON, its device by textual id.
pub(crate) fn trigger_to_json(t: &Territory, tr: &Trigger) -> Result<String, StoreError> {
    let device = tr.device.map(|d| device_id(t, d)).transpose()?;
    Ok(json!({
        "kind": tr.kind.as_str(),
        "device": device,
        "field": tr.field.as_deref(),
        "value": tr.value,
        "op": tr.op.map(TriggerOp::as_str),
        "threshold": tr.threshold,
        "threshold_high": tr.threshold_high,
        "window_ms": tr.window.map(|w| w.millis()),
        "count": tr.count,
        "radius_m": tr.radius_m,
        "at": tr.at.0,
    })
    .to_string())
}

/// Reads [`trigger_to_json`] back; a device no longer in the territory is left out (the
/// incident keeps the rest of its evidence).
pub(crate) fn trigger_from_json(t: &Territory, s: &str) -> Option<Trigger> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    let opt_f64 = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    let mut tr = Trigger::new(
        TriggerKind::parse(v.get("kind")?.as_str()?)?,
        Timestamp(v.get("at")?.as_i64()?),
    );
    tr.device = v
        .get("device")
        .and_then(serde_json::Value::as_str)
        .and_then(|d| t.device_id(d));
    tr.field = v
        .get("field")
        .and_then(serde_json::Value::as_str)
        .map(Into::into);
    tr.value = opt_f64("value");
    tr.op = match v.get("op").and_then(serde_json::Value::as_str) {
        Some(o) => Some(TriggerOp::parse(o)?),
        None => None,
    };
    tr.threshold = opt_f64("threshold");
    tr.threshold_high = opt_f64("threshold_high");
    tr.window = v
        .get("window_ms")
        .and_then(serde_json::Value::as_i64)
        .map(beffroi_core::Duration);
    tr.count = v
        .get("count")
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u32::try_from(c).ok());
    tr.radius_m = opt_f64("radius_m");
    Some(tr)
}

pub(crate) fn sop_to_json(steps: &[SopStep]) -> String {
    serde_json::Value::Array(
        steps
            .iter()
            .map(|s| {
                json!({
                    "text": &*s.text,
                    "done_by": s.done_by.as_deref(),
                    "done_at": s.done_at.map(|t| t.0),
                    "due_at": s.due_at.map(|t| t.0),
                })
            })
            .collect(),
    )
    .to_string()
}

pub(crate) fn sop_from_json(s: &str) -> Option<Vec<SopStep>> {
    let value: serde_json::Value = serde_json::from_str(s).ok()?;
    value
        .as_array()?
        .iter()
        .map(|step| {
            let text: Arc<str> = step.get("text")?.as_str()?.into();
            let done_by = match step.get("done_by") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(v.as_str()?.into()),
            };
            let done_at = match step.get("done_at") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(Timestamp(v.as_i64()?)),
            };
            let due_at = match step.get("due_at") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(Timestamp(v.as_i64()?)),
            };
            Some(SopStep {
                text,
                done_by,
                done_at,
                due_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_round_trips_through_its_display_form() {
        for actor in [
            Actor::User("alice".into()),
            Actor::User("a:b".into()),
            Actor::Rule("flood-high".into()),
            Actor::System,
        ] {
            assert_eq!(parse_actor(&actor.to_string()), Some(actor));
        }
        assert_eq!(parse_actor("robot"), None);
    }

    #[test]
    fn procedure_round_trips_through_json() {
        let steps = vec![
            SopStep {
                text: "Vigicrues \"niveau\"".into(),
                done_by: Some("user:alice".into()),
                done_at: Some(Timestamp(1_700_000_000_123)),
                due_at: None,
            },
            SopStep {
                text: "Astreinte".into(),
                done_by: None,
                done_at: None,
                due_at: Some(Timestamp(1_700_000_600_000)),
            },
        ];
        assert_eq!(sop_from_json(&sop_to_json(&steps)), Some(steps));
        assert_eq!(sop_from_json("[]"), Some(vec![]));
        assert_eq!(sop_from_json("{\"text\": 1}"), None);
        assert_eq!(sop_from_json("[{\"done_at\": 3}]"), None);
    }
}
