//! The stores' rows as plain values, and their conversions to and from the domain, shared
//! by the SQLite (`beffroi-store`) and PostgreSQL (`beffroi-store-pg`) adapters: indices ↔
//! textual ids through the territory, enumerations ↔ their `as_str` form, the procedure,
//! the trigger and the message ↔ JSON. Each adapter reads its driver's row into these
//! structs and writes their columns; what a row means is decided here, once.
//!
//! Reading never panics: a row that does not fit the current territory (or is malformed)
//! becomes [`StoreError::Inconsistent`].

pub mod retention;
mod skipped;

pub use skipped::{SkipList, Skipped};

use std::collections::BTreeSet;
use std::sync::Arc;

use beffroi_core::crisis::{
    Crisis, CrisisId, CrisisKind, CrisisLogEntry, CrisisLogKind, RoleHolder,
};
use beffroi_core::situation::{Member, Situation, SituationEvent, SituationId, SituationLogEntry};
use beffroi_core::{
    Actor, DedupKey, DeviceIdx, FieldIdx, Incident, IncidentId, LogEntry, Point, Severity, SopStep,
    Status, Territory, Timestamp, Trigger, TriggerKind, TriggerOp, Value,
};
use beffroi_engine::StoreError;
use beffroi_engine::store::{StoredObservation, StoredRejection};
use beffroi_wire::RejectReason;
use serde_json::json;

// ---- ids ------------------------------------------------------------------------------

/// A stored row that does not fit the territory or is malformed.
pub fn inconsistent(msg: impl Into<String>) -> StoreError {
    StoreError::Inconsistent(msg.into())
}

pub fn device_id(t: &Territory, d: DeviceIdx) -> Result<&str, StoreError> {
    t.devices
        .get(d.get())
        .map(|dev| &*dev.id)
        .ok_or_else(|| inconsistent(format!("device index {} not in the territory", d.0)))
}

/// The device's id and the name of one of its fields.
pub fn device_field(t: &Territory, d: DeviceIdx, f: FieldIdx) -> Result<(&str, &str), StoreError> {
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

pub fn device_idx(t: &Territory, id: &str) -> Result<DeviceIdx, StoreError> {
    t.device_id(id)
        .ok_or_else(|| inconsistent(format!("device `{id}` is no longer in the territory")))
}

/// The field of `device` named `name` in its current kind.
pub fn field_idx(t: &Territory, device: DeviceIdx, name: &str) -> Result<FieldIdx, StoreError> {
    t.devices
        .get(device.get())
        .and_then(|d| t.kinds.get(d.kind.get()))
        .and_then(|k| k.field(name))
        .ok_or_else(|| inconsistent(format!("field `{name}` is no longer in its device's kind")))
}

pub fn id_to_sql(id: IncidentId) -> Result<i64, StoreError> {
    i64::try_from(id.0).map_err(|_| inconsistent(format!("incident id {id} exceeds i64")))
}

pub fn id_from_sql(id: i64) -> Result<IncidentId, StoreError> {
    u64::try_from(id)
        .map(IncidentId)
        .map_err(|_| inconsistent(format!("negative incident id {id}")))
}

/// A `usize` limit as an SQL `LIMIT` (saturating).
pub fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// ---- actors ---------------------------------------------------------------------------

/// Parses the `Display` form of an [`Actor`]: `user:NAME`, `rule:ID` or `system`.
pub fn parse_actor(s: &str) -> Option<Actor> {
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
pub fn value_columns(v: &Value) -> (Option<f64>, Option<bool>, Option<&str>) {
    match v {
        Value::Number(n) => {
            debug_assert!(n.is_finite(), "validation admits finite numbers only");
            (Some(*n), None, None)
        }
        Value::Bool(b) => (None, Some(*b), None),
        Value::Text(s) => (None, None, Some(s)),
    }
}

/// An observation row of one device, as read.
pub struct ObservationRow {
    pub field: String,
    pub time: i64,
    pub value: Option<f64>,
    pub value_bool: Option<bool>,
    pub value_text: Option<String>,
    pub received: i64,
    pub trust: String,
    pub quarantined: bool,
}

impl ObservationRow {
    pub fn into_observation(
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

pub struct RejectionRow {
    pub at: i64,
    pub source: String,
    pub reason: String,
    pub detail: String,
}

impl RejectionRow {
    pub fn into_rejection(self) -> Result<StoredRejection, StoreError> {
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

/// An incident row as read, before its ids are resolved against the territory.
pub struct IncidentRow {
    pub id: i64,
    pub key: String,
    pub rule: String,
    pub category: String,
    pub severity: String,
    pub status: String,
    pub title: String,
    pub commune: String,
    pub site: String,
    pub device: Option<String>,
    pub lon: f64,
    pub lat: f64,
    pub opened_at: i64,
    pub updated_at: i64,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub owner: Option<String>,
    pub condition_active: bool,
    pub alarm_count: i64,
    pub evidence: String,
    pub sop_title: Option<String>,
    pub sop: String,
    pub reminded_at: Option<i64>,
    pub escalated_at: Option<i64>,
    pub trigger: Option<String>,
    pub peak: Option<f64>,
    pub current: Option<f64>,
    pub current_at: Option<i64>,
    pub reopened_at: Option<i64>,
}

impl IncidentRow {
    pub fn into_incident(self, t: &Territory) -> Result<Incident, StoreError> {
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

pub struct LogRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub message: Option<String>,
}

impl LogRow {
    pub fn into_entry(self) -> Result<LogEntry, StoreError> {
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
pub fn read_message(json: Option<&str>) -> Result<Option<beffroi_core::Message>, StoreError> {
    json.map(|j| {
        beffroi_engine::message_json::from_json_str(j).map_err(|e| inconsistent(e.to_string()))
    })
    .transpose()
}

/// A log line's message as stored.
pub fn write_message(m: Option<&beffroi_core::Message>) -> Option<String> {
    m.map(|m| beffroi_engine::message_json::to_json(m).to_string())
}

// ---- procedure (SOP) as JSON ----------------------------------------------------------

/// `[{"text": "...", "done_by": "user:alice" | null, "done_at": 1700000000000 | null}]`
/// An incident's trigger as JSON, its device by textual id.
pub fn trigger_to_json(t: &Territory, tr: &Trigger) -> Result<String, StoreError> {
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
pub fn trigger_from_json(t: &Territory, s: &str) -> Option<Trigger> {
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

pub fn sop_to_json(steps: &[SopStep]) -> String {
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

pub fn sop_from_json(s: &str) -> Option<Vec<SopStep>> {
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

// ---- device states --------------------------------------------------------------------

/// Per device, the JSON object of its fields' new watermarks (the highest of the batch).
pub fn watermarks_by_device(
    t: &Territory,
    marks: &[beffroi_engine::store::Watermark],
) -> Result<std::collections::HashMap<DeviceIdx, String>, StoreError> {
    let mut per: std::collections::HashMap<DeviceIdx, Vec<(beffroi_core::FieldIdx, i64)>> =
        std::collections::HashMap::new();
    for m in marks {
        let fields = per.entry(m.device).or_default();
        match fields.iter_mut().find(|(f, _)| *f == m.field) {
            Some((_, at)) => *at = (*at).max(m.time.0),
            None => fields.push((m.field, m.time.0)),
        }
    }
    let mut out = std::collections::HashMap::with_capacity(per.len());
    for (device, fields) in per {
        let mut obj = serde_json::Map::new();
        for (field, at) in fields {
            let (_, name) = device_field(t, device, field)?;
            obj.insert(name.to_string(), serde_json::Value::from(at));
        }
        out.insert(device, serde_json::Value::Object(obj).to_string());
    }
    Ok(out)
}

// ---- crises ---------------------------------------------------------------------------

/// A crisis log row: at, actor, kind, text, incident, message.
pub type CrisisLogRow = (i64, String, String, String, Option<i64>, Option<String>);

/// A crisis row: id, kind, title, communes (JSON), level, opened_at, opened_by, closed_at,
/// closed_by, summary, roles (JSON), incidents (JSON).
pub type CrisisRow = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    String,
);

pub fn crisis_id_to_sql(id: CrisisId) -> Result<i64, StoreError> {
    i64::try_from(id.0).map_err(|_| inconsistent(format!("crisis id {} exceeds i64", id.0)))
}

/// The crisis a row and its log rows hold; `t` resolves its communes.
pub fn crisis_from_row(
    row: CrisisRow,
    entries: Vec<CrisisLogRow>,
    t: &Territory,
) -> Result<Crisis, StoreError> {
    let (
        id,
        kind,
        title,
        communes,
        level,
        opened_at,
        opened_by,
        closed_at,
        closed_by,
        summary,
        roles,
        incidents,
    ) = row;
    let bad = |what: &str| inconsistent(format!("crisis {id}: {what}"));
    let kind = CrisisKind::parse(&kind).ok_or_else(|| bad("kind"))?;
    let communes: Vec<String> = serde_json::from_str(&communes).map_err(|_| bad("communes"))?;
    let communes = communes
        .iter()
        .map(|c| {
            t.commune_id(c)
                .ok_or_else(|| bad(&format!("commune `{c}` is gone")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let roles: Vec<serde_json::Value> = serde_json::from_str(&roles).map_err(|_| bad("roles"))?;
    let roles = roles
        .iter()
        .map(|r| {
            Some(RoleHolder {
                role: r.get("role")?.as_str()?.into(),
                holder: r
                    .get("holder")
                    .and_then(|h| h.as_str())
                    .map(beffroi_core::SafeText::redacting),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("roles"))?;
    let incidents: Vec<u64> = serde_json::from_str(&incidents).map_err(|_| bad("incidents"))?;
    let mut log = Vec::with_capacity(entries.len());
    for (at, actor, kind, text, incident, message) in entries {
        log.push(CrisisLogEntry {
            at: Timestamp(at),
            actor: parse_actor(&actor).ok_or_else(|| bad("log actor"))?,
            kind: CrisisLogKind::parse(&kind).ok_or_else(|| bad("log kind"))?,
            // Read back through the recogniser: a row is not trusted.
            text: beffroi_core::SafeText::redacting(&text),
            incident: incident.map(id_from_sql).transpose()?,
            message: read_message(message.as_deref())?,
        });
    }
    Ok(Crisis {
        id: CrisisId(u64::try_from(id).map_err(|_| bad("id"))?),
        kind,
        title: beffroi_core::SafeText::redacting(&title),
        communes,
        level: u8::try_from(level).map_err(|_| bad("level"))?,
        opened_at: Timestamp(opened_at),
        opened_by: parse_actor(&opened_by).ok_or_else(|| bad("opened_by"))?,
        closed_at: closed_at.map(Timestamp),
        closed_by: closed_by
            .map(|a| parse_actor(&a).ok_or_else(|| bad("closed_by")))
            .transpose()?,
        summary: summary.as_deref().map(beffroi_core::SafeText::redacting),
        roles,
        log,
        incidents: incidents
            .into_iter()
            .map(IncidentId)
            .collect::<BTreeSet<_>>(),
    })
}

// ---- situations -----------------------------------------------------------------------

/// A situation id read from a row.
pub fn sid_from_sql(id: i64) -> Result<SituationId, StoreError> {
    u64::try_from(id)
        .map(SituationId)
        .map_err(|_| inconsistent(format!("situation id {id} is negative")))
}

/// A situation row: id, family, opened_at, updated_at, closed_at, merged_into, members (JSON).
pub type SituationRow = (
    i64,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    String,
);

/// A situation log row: at, actor, event, incident, other situation.
pub type SituationLogRow = (i64, String, String, Option<i64>, Option<i64>);

/// The ids of a situation row's members, in the order they joined.
pub fn situation_members(row: &SituationRow) -> Result<Vec<IncidentId>, StoreError> {
    let ids: Vec<u64> = serde_json::from_str(&row.6)
        .map_err(|_| inconsistent(format!("situation {}: members", row.0)))?;
    Ok(ids.into_iter().map(IncidentId).collect())
}

/// The situation a row and its log rows hold, with the members among `incidents` (read by
/// the adapter for `ids`, [`situation_members`]); `None` when none of them is left.
pub fn situation_from_row(
    row: SituationRow,
    entries: Vec<SituationLogRow>,
    ids: &[IncidentId],
    incidents: &[Incident],
) -> Result<Option<Situation>, StoreError> {
    let (id, family, opened_at, updated_at, closed_at, merged_into, _) = row;
    let bad = |what: &str| inconsistent(format!("situation {id}: {what}"));
    // In the order they joined.
    let mut members = Vec::with_capacity(ids.len());
    for iid in ids {
        if let Some(i) = incidents.iter().find(|i| i.id == *iid) {
            members.push(Member::of(i));
        }
    }
    if members.is_empty() {
        return Ok(None);
    }
    let mut log = Vec::with_capacity(entries.len());
    for (at, actor, event, incident, other) in entries {
        log.push(SituationLogEntry {
            at: Timestamp(at),
            actor: parse_actor(&actor).ok_or_else(|| bad("log actor"))?,
            event: SituationEvent::parse(&event).ok_or_else(|| bad("log event"))?,
            incident: incident.map(id_from_sql).transpose()?,
            other: other.map(sid_from_sql).transpose()?,
        });
    }
    Ok(Some(Situation {
        id: sid_from_sql(id)?,
        family: family.map(Into::into),
        opened_at: Timestamp(opened_at),
        updated_at: Timestamp(updated_at),
        closed_at: closed_at.map(Timestamp),
        merged_into: merged_into.map(sid_from_sql).transpose()?,
        members,
        log,
    }))
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
