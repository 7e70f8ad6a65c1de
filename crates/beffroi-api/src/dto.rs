//! JSON bodies of the API: this crate's own types, converted from the core's.

use beffroi_core::{Incident, LogEntry, Territory, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub(crate) fn ts(t: Timestamp) -> String {
    t.to_string()
}

#[derive(Serialize, ToSchema)]
pub struct IncidentDto {
    pub id: u64,
    /// Deduplication key: `rule@site:ID` or `rule@device:ID`.
    pub key: String,
    pub rule: String,
    pub category: String,
    /// info | minor | major | critical
    pub severity: String,
    /// new | acknowledged | in_progress | resolved | closed
    pub status: String,
    pub title: String,
    pub commune: String,
    pub commune_name: String,
    pub site: String,
    pub site_name: String,
    pub device: Option<String>,
    /// `[longitude, latitude]`
    pub position: [f64; 2],
    pub opened_at: String,
    pub updated_at: String,
    pub acknowledged_at: Option<String>,
    pub resolved_at: Option<String>,
    pub closed_at: Option<String>,
    pub owner: Option<String>,
    pub condition_active: bool,
    pub alarm_count: u32,
    pub evidence: String,
    /// The unit in charge (same as `owner` when assignment names a unit).
    pub unit: Option<String>,
    /// When the reminder for an unacknowledged incident was logged.
    pub reminded_at: Option<String>,
    /// When the unacknowledged incident was escalated to the supervisor.
    pub escalated_at: Option<String>,
    /// For a `cyber` incident: the MITRE ATT&CK for ICS technique its anomaly suggests.
    pub technique: Option<TechniqueDto>,
    /// The title as a message, when the server composed it (a `cyber` incident), for the
    /// console to render in the reader's language; `title` is its English rendering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title_message: Option<MessageDto>,
    /// What fired the rule at the opening, as structure; never overwritten (`evidence` is
    /// the text of the latest raise or clear, kept for compatibility).
    pub trigger: Option<TriggerDto>,
    /// The worst value of the triggering field since the opening.
    pub peak: Option<f64>,
    /// The latest value of the triggering field, and its time.
    pub current: Option<f64>,
    pub current_at: Option<String>,
    /// The last re-opening (`opened_at` stays the first opening).
    pub reopened_at: Option<String>,
    /// `reopened_at` if any, else `opened_at`: what the queue sorts by.
    pub last_opened_at: String,
}

/// The structured evidence of a rule firing.
#[derive(Serialize, ToSchema)]
pub struct TriggerDto {
    /// threshold | absence | rate | correlation | aggregate
    pub kind: String,
    /// The device whose reading (or silence) fired the rule.
    pub device: Option<String>,
    /// The field compared.
    pub field: Option<String>,
    /// The field's unit, from its device kind.
    pub unit: Option<String>,
    /// The value that fired (absent for a silence, a non-number or a suppressed count).
    pub value: Option<f64>,
    /// above | below | between | outside | equals | not_equals
    pub op: Option<String>,
    /// The threshold, or the interval's low bound; the warning level of an aggregate.
    pub threshold: Option<f64>,
    /// The interval's high bound; the critical level of an aggregate.
    pub threshold_high: Option<f64>,
    /// Sustained duration, silence, or the window of a rate or correlation, in seconds.
    pub window_s: Option<i64>,
    /// A rate's count, or how many conditions a correlation joins.
    pub count: Option<u32>,
    pub radius_m: Option<f64>,
    /// When it fired.
    pub at: String,
}

impl TriggerDto {
    pub fn from_core(tr: &beffroi_core::Trigger, t: &Territory) -> Self {
        let unit = tr.device.zip(tr.field.as_deref()).and_then(|(d, f)| {
            t.kind_of(d)
                .fields
                .iter()
                .find(|s| &*s.name == f)
                .and_then(|s| s.unit.as_deref().map(Into::into))
        });
        TriggerDto {
            kind: tr.kind.as_str().into(),
            device: tr.device.map(|d| t.device(d).id.to_string()),
            field: tr.field.as_deref().map(Into::into),
            unit,
            value: tr.value,
            op: tr.op.map(|o| o.as_str().into()),
            threshold: tr.threshold,
            threshold_high: tr.threshold_high,
            window_s: tr.window.map(|w| w.millis() / 1000),
            count: tr.count,
            radius_m: tr.radius_m,
            at: ts(tr.at),
        }
    }
}

/// A MITRE ATT&CK for ICS technique.
#[derive(Serialize, ToSchema)]
pub struct TechniqueDto {
    /// e.g. `T0856`
    pub id: String,
    /// e.g. `Spoof Reporting Message`
    pub name: String,
    /// `https://attack.mitre.org/techniques/T0856/`
    pub url: String,
}

impl IncidentDto {
    pub fn from_core(i: &Incident, t: &Territory) -> Self {
        let site = t.site(i.site);
        let commune = t.commune(i.commune);
        IncidentDto {
            id: i.id.0,
            key: i.key.as_str().into(),
            rule: i.rule.to_string(),
            category: i.category.to_string(),
            severity: i.severity.as_str().into(),
            status: i.status.as_str().into(),
            title: i.title_now().to_string(),
            commune: commune.id.to_string(),
            commune_name: commune.name.to_string(),
            site: site.id.to_string(),
            site_name: site.name.to_string(),
            device: i.device.map(|d| t.device(d).id.to_string()),
            position: [i.position.lon, i.position.lat],
            opened_at: ts(i.opened_at),
            updated_at: ts(i.updated_at),
            acknowledged_at: i.acknowledged_at.map(ts),
            resolved_at: i.resolved_at.map(ts),
            closed_at: i.closed_at.map(ts),
            owner: i.owner.as_deref().map(Into::into),
            condition_active: i.condition_active,
            alarm_count: i.alarm_count,
            evidence: i.evidence.to_string(),
            unit: i.owner.as_deref().map(Into::into),
            reminded_at: i.reminded_at.map(ts),
            escalated_at: i.escalated_at.map(ts),
            technique: beffroi_engine::sentinel::technique_of_rule(&i.rule).map(|t| TechniqueDto {
                id: t.id.into(),
                name: t.name.into(),
                url: format!("https://attack.mitre.org/techniques/{}/", t.id),
            }),
            title_message: beffroi_engine::sentinel::incident_title_message(
                t, &i.rule, &i.key, &i.title,
            )
            .as_ref()
            .map(Into::into),
            trigger: i.trigger.as_ref().map(|tr| TriggerDto::from_core(tr, t)),
            peak: i.peak,
            current: i.current,
            current_at: i.current_at.map(ts),
            reopened_at: i.reopened_at.map(ts),
            last_opened_at: ts(i.last_opened_at()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SopStepDto {
    pub index: usize,
    pub text: String,
    pub done_by: Option<String>,
    pub done_at: Option<String>,
    /// Deadline of the step (`within` after the opening), if it has one.
    pub due_at: Option<String>,
    /// Not done and past its deadline.
    pub overdue: bool,
    /// Not done while a later step is done.
    pub skipped: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SopDto {
    pub title: Option<String>,
    pub steps: Vec<SopStepDto>,
}

#[derive(Serialize, ToSchema)]
pub struct LogEntryDto {
    pub at: String,
    /// `user:NAME`, `rule:ID` or `system`
    pub actor: String,
    pub action: String,
    /// English rendering of `message` (or free text when there is no message).
    pub detail: String,
    /// What the line says, for the console to render in the reader's language; absent for
    /// free text and for lines written before messages existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageDto>,
}

impl From<&LogEntry> for LogEntryDto {
    fn from(e: &LogEntry) -> Self {
        LogEntryDto {
            at: ts(e.at),
            actor: e.actor.to_string(),
            action: e.action.to_string(),
            detail: e.detail.to_string(),
            message: e.message.as_ref().map(MessageDto::from),
        }
    }
}

/// A message code and its parameters (see `docs/formats.md`, *Messages*): each parameter is
/// an object with one key naming its type (`int`, `number` + `unit`, `text`, `severity`,
/// `duration_ms`, `time_ms`, `device`, `user`, `incident`, `enum` + `id`, `message`).
#[derive(Serialize, ToSchema)]
pub struct MessageDto {
    /// A code of the catalogue, e.g. `incident.not_acknowledged`.
    pub code: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
}

impl From<&beffroi_core::Message> for MessageDto {
    fn from(m: &beffroi_core::Message) -> Self {
        let mut v = beffroi_engine::message_json::to_json(m);
        MessageDto {
            code: m.code.to_string(),
            params: v["params"].take(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IncidentDetailDto {
    #[serde(flatten)]
    pub incident: IncidentDto,
    pub sop: SopDto,
    pub log: Vec<LogEntryDto>,
    /// Escalated, or a procedure step overdue or skipped.
    pub supervisor_attention: bool,
    /// The pseudonyms recorded from the reading that raised the incident: the only ones
    /// that may be unmasked through it (those in its title, evidence or log may not).
    pub carried_pseudonyms: Vec<String>,
    /// The incident's evidence as a message, when the log holds the one it reads (the
    /// latest line carrying it), for the console to render in the reader's language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_message: Option<MessageDto>,
}

/// The message of an incident's current evidence: the `evidence` parameter of the latest
/// log line whose English rendering is the evidence as it stands.
pub fn evidence_message(i: &Incident, log: &[LogEntry]) -> Option<MessageDto> {
    log.iter()
        .rev()
        .find_map(|e| match e.message.as_ref()?.param("evidence")? {
            beffroi_core::Param::Message(m) if m.english() == i.evidence => Some((&**m).into()),
            _ => None,
        })
}

impl IncidentDetailDto {
    /// `now` is the engine's processing time (deadlines are judged against it).
    pub fn from_core(i: &Incident, log: &[LogEntry], t: &Territory, now: Timestamp) -> Self {
        IncidentDetailDto {
            carried_pseudonyms: Vec::new(),
            evidence_message: evidence_message(i, log),
            supervisor_attention: i.supervisor_attention(now),
            incident: IncidentDto::from_core(i, t),
            sop: SopDto {
                title: i.sop_title.as_deref().map(Into::into),
                steps: i
                    .sop
                    .iter()
                    .enumerate()
                    .map(|(index, s)| SopStepDto {
                        index,
                        text: s.text.to_string(),
                        done_by: s.done_by.as_deref().map(Into::into),
                        done_at: s.done_at.map(ts),
                        due_at: s.due_at.map(ts),
                        overdue: s.overdue(now),
                        skipped: i.step_skipped(index),
                    })
                    .collect(),
            },
            log: log.iter().map(Into::into).collect(),
        }
    }
}

/// An action on an incident.
#[derive(Deserialize, ToSchema)]
pub struct ActionRequest {
    /// acknowledge | start | resolve | close | reopen | assign | comment | complete_step
    pub action: String,
    /// For `assign`: the unit in charge (a unit id of `units.toml`).
    pub unit: Option<String>,
    /// For `assign`: alias of `unit`, kept for older clients.
    pub owner: Option<String>,
    /// For `comment`: the log entry.
    pub text: Option<crate::scrub::FreeText>,
    /// For `complete_step`: the 0-based index of the procedure step.
    pub step: Option<usize>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The 6-digit TOTP code, for accounts with a second factor.
    #[serde(default)]
    pub totp: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// The session id, also set as the `HttpOnly` cookie. Scripts may send it as a bearer
    /// token (no CSRF header then); the console does not keep it.
    pub token: String,
    /// Send in `X-CSRF-Token` on state-changing requests made with the cookie.
    pub csrf_token: String,
    /// Seconds until the session expires, used or not.
    pub expires_in: u64,
    /// Seconds of inactivity after which the session expires.
    pub idle_timeout: u64,
}

#[derive(Serialize, ToSchema)]
pub struct RejectionDto {
    /// malformed | oversized | unknown_device | unknown_field | wrong_type | out_of_range | bad_time | overload | unsigned | bad_signature | replay | topic_mismatch | image_refused | text_too_long | no_pseudonymisation_key | expired | text_not_allowed
    pub reason: String,
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: Vec<RejectionDto>,
}

/// A reading appended to a cluster's ingest log (`202`): durable, stored and evaluated by
/// the node running the engine; its rejections, if any, are in `/api/v1/rejections`.
#[derive(Serialize, ToSchema)]
pub struct IngestLogged {
    pub log_sequence: u64,
    /// The log had this reading already.
    pub duplicate: bool,
}

#[derive(Serialize, ToSchema)]
pub struct StoredRejectionDto {
    pub at: String,
    pub source: String,
    pub reason: String,
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceDto {
    pub id: String,
    pub kind: String,
    pub site: String,
    pub commune: String,
    pub position: [f64; 2],
    /// normal | alarm | silent
    pub state: String,
    /// In quarantine: its observations are stored and shown but reach no rule.
    pub quarantined: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ObservationDto {
    pub field: String,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    pub unit: Option<String>,
    pub time: String,
    /// signed | broker_authenticated | unauthenticated
    pub trust: String,
    /// Received while the device was quarantined (not fed to the rules).
    pub quarantined: bool,
    /// A people count below the minimum group size: `value` is null. People counts are
    /// shown one per time bucket (`time` is the bucket's start, `value` its highest count).
    pub suppressed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceDetailDto {
    #[serde(flatten)]
    pub device: DeviceDto,
    /// The kind's label in French (or its only label).
    pub kind_label: String,
    /// The kind's label in English, when the kinds file gives one.
    pub kind_label_en: Option<String>,
    pub dev_eui: Option<String>,
    /// Trust level of the device's latest observation (signed | broker_authenticated |
    /// unauthenticated), if it sent any.
    pub trust: Option<String>,
    /// The newest readings, or those of the window asked for (`from`, `until`), newest
    /// first.
    pub recent: Vec<ObservationDto>,
}

#[derive(Serialize, ToSchema)]
pub struct CommuneDto {
    pub id: String,
    pub name: String,
    pub insee: Option<String>,
    pub position: [f64; 2],
    pub sites: usize,
    pub devices: usize,
}

#[derive(Serialize, ToSchema)]
pub struct TerritoryDto {
    pub id: String,
    pub name: String,
    /// IANA time zone of the territory (`Europe/Paris`), if declared: the console shows
    /// reports in it.
    pub timezone: Option<String>,
    pub communes: Vec<CommuneDto>,
    pub sites: usize,
    pub devices: usize,
    pub kinds: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RuleDto {
    pub id: String,
    pub title: String,
    pub category: String,
    pub severity: String,
    /// threshold | absence | rate | correlation
    #[serde(rename = "type")]
    pub ty: String,
    pub key: String,
    pub auto_resolve: bool,
}
