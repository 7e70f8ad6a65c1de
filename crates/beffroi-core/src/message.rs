//! Messages: what the server says to people, as a code and typed parameters.
//!
//! Every text the server composes for an operator — a line of an incident's log, of a
//! crisis log — is a [`Message`]: a code from [`CATALOGUE`] and named parameters (a
//! number with its unit, a severity, a duration, a device id, a text…). The console renders
//! the code in the reader's language (`web/src/i18n.js` holds the French and English
//! templates of every code) and formats numbers, times and durations for that language.
//!
//! The English rendering ([`Message::english`]) is the fallback text kept beside the
//! message (`LogEntry::detail`, `CrisisLogEntry::text`) for the command line, the audit
//! log, exports and rows written before messages existed; both come from the same value, so
//! they cannot drift. Every text parameter appears in the English rendering, so what
//! searches and redacts the fallback text (retention, unmasking) sees every text the
//! message carries.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::incident::{IncidentId, Severity};
use crate::text::SafeText;
use crate::time::{Duration, Timestamp};

/// Every message code the server emits, with its English template. A `{name}` in the
/// template is replaced by the English rendering of the parameter `name`.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("incident.opened", "{severity} — {evidence}"),
    ("incident.raised_again", "{evidence}"),
    ("incident.reopened_by_rule", "{evidence}"),
    ("incident.severity_raised", "severity {from} → {to}"),
    (
        "incident.severity_raised_by",
        "severity {from} → {to}: {evidence}",
    ),
    ("incident.auto_resolved", "{evidence}"),
    ("incident.condition_cleared", "{evidence}"),
    ("incident.assigned", "{owner}"),
    ("incident.step_done", "{step}. {text}"),
    (
        "incident.closed_unattended",
        "resolved for {after} without being closed",
    ),
    (
        "incident.not_acknowledged",
        "not acknowledged after {after}",
    ),
    ("crisis.opened", "opened: {kind} — {title} (level {level})"),
    ("crisis.incident_attached", "#{incident} {title} — attached"),
    ("crisis.incident_logged", "#{incident} {title} — {action}"),
    (
        "crisis.incident_logged_detail",
        "#{incident} {title} — {action}: {detail}",
    ),
    ("crisis.level", "level {from} → {to}"),
    ("crisis.role_held", "role {role} ({name}): {holder}"),
    ("crisis.role_vacant", "role {role} ({name}): vacant"),
    ("crisis.closed", "closed: {summary}"),
    ("rule.reading", "{device} {field} = {value} ({op})"),
    (
        "rule.reading_sustained",
        "{device} {field} = {value} ({op}) for {minutes} min",
    ),
    ("rule.back_to", "{device} back to {field} = {value}"),
    ("rule.op.above", "> {x}"),
    ("rule.op.below", "< {x}"),
    ("rule.op.equals", "= {x}"),
    ("rule.op.not_equals", "≠ {x}"),
    ("rule.op.between", "in [{a}, {b}]"),
    ("rule.op.outside", "outside [{a}, {b}]"),
    (
        "rule.rate",
        "{count} × {field} {op} within {seconds}s at {device}",
    ),
    ("rule.rate_cleared", "rate back below its count"),
    (
        "rule.correlation_site",
        "{count} conditions within {seconds}s (same site), last {device} {field} {value}",
    ),
    (
        "rule.correlation_radius",
        "{count} conditions within {seconds}s (within {radius} m), last {device} {field} {value}",
    ),
    ("rule.correlation_passed", "correlation window passed"),
    (
        "rule.absence",
        "no message from {device} since {since} ({minutes} min)",
    ),
    ("rule.reports_again", "{device} reports again"),
    (
        "rule.condition_active",
        "condition active for {minutes} min",
    ),
    (
        "rule.aggregate",
        "sum of {count} counters = {sum} (warning {warning}, critical {critical})",
    ),
    (
        "rule.quarantined",
        "{device} quarantined by {actor}: {reason}",
    ),
    (
        "cyber.ev.flood",
        "{device} exceeded {rate} messages/min (burst {burst}) at {time}",
    ),
    (
        "cyber.ev.clock_ahead",
        "{device}: event time {time} is {seconds} s ahead of reception {received}",
    ),
    (
        "cyber.ev.clock_behind",
        "{device}: event time {time} is {seconds} s behind reception {received}",
    ),
    (
        "cyber.ev.jump_people",
        "{device}.{field}: a jump between {from} and {to}; at most {max}/min is physically possible",
    ),
    (
        "cyber.ev.jump",
        "{device}.{field}: {before} at {from} then {after} at {to}; at most {max}/min is physically possible",
    ),
    (
        "cyber.ev.firmware",
        "{device}: firmware `{old}` became `{new}` at {time}",
    ),
    (
        "cyber.ev.auth_client",
        "{count} authentication failures for `{who}` within {seconds} s (last from {address})",
    ),
    (
        "cyber.ev.auth_address",
        "{count} authentication failures from address {address} within {seconds} s (last for `{who}`)",
    ),
    (
        "cyber.ev.known_bad",
        "`{who}` from {address}, in {network} which `{source}` flags as known bad",
    ),
    ("cyber.ev.unknown_address", "unknown address"),
    ("cyber.ev.unknown", "unknown"),
    (
        "cyber.ev.identity",
        "`{user}` connected as client `{client}` from {address} (was client `{old_client}` from {old_address})",
    ),
    (
        "cyber.ev.bad_signature",
        "signed message for `{device}` whose MAC does not verify",
    ),
    (
        "cyber.ev.unsigned",
        "unsigned message for `{device}`, whose kind requires signing",
    ),
    (
        "cyber.ev.replay",
        "signed message for `{device}` with counter {counter}, not fresh (highest seen {last})",
    ),
    (
        "cyber.ev.unregistered_one",
        "a message from `{publisher}` names {count} unregistered device{tags}",
    ),
    (
        "cyber.ev.unregistered_many",
        "a message from `{publisher}` names {count} unregistered devices{tags}",
    ),
    (
        "cyber.ev.unregistered_unknown_one",
        "a message from an unknown publisher names {count} unregistered device{tags}",
    ),
    (
        "cyber.ev.unregistered_unknown_many",
        "a message from an unknown publisher names {count} unregistered devices{tags}",
    ),
    ("cyber.ev.name_tags", " (name tags {tags})"),
    (
        "cyber.ev.topic_mismatch_known",
        "message on the topic of `{topic}` names `{named}`",
    ),
    (
        "cyber.ev.topic_mismatch",
        "message on the topic of `{topic}` names {named}",
    ),
    (
        "cyber.ev.silence",
        "{device} silent for {minutes} min (heartbeat {heartbeat} min) since {since}, while neighbour {neighbour} ({distance} m) reports a raised condition",
    ),
    (
        "cyber.evidence",
        "{evidence} [ATT&CK for ICS {technique} {name}]",
    ),
    (
        "cyber.silence",
        "Device silenced while its neighbours raise an alarm — {subject}",
    ),
    ("cyber.flood", "Message flood from a device — {subject}"),
    (
        "cyber.impossible_jump",
        "Physically impossible jump in reported values — {subject}",
    ),
    ("cyber.clock_skew", "Device clock skewed — {subject}"),
    ("cyber.replay", "Replayed signed message — {subject}"),
    (
        "cyber.bad_signature",
        "Forged signed message (bad signature) — {subject}",
    ),
    (
        "cyber.unregistered",
        "Messages naming unregistered devices — {subject}",
    ),
    (
        "cyber.topic_mismatch",
        "Message names another device than its topic — {subject}",
    ),
    (
        "cyber.brute_force",
        "Burst of authentication failures — {subject}",
    ),
    (
        "cyber.firmware_change",
        "Device firmware changed — {subject}",
    ),
    (
        "cyber.identity_change",
        "Device credential used from a new network identity — {subject}",
    ),
    (
        "cyber.known_bad_address",
        "Connection from an address a partner flagged — {subject}",
    ),
];

/// The families of enumerated identifiers a [`Param::Enum`] can name; the console
/// translates `ENUM.ID` (e.g. `crisis_kind.flood`, `action.acknowledged`).
pub const ENUMS: &[&str] = &["crisis_kind", "action", "crisis_role", "bool"];

/// One parameter of a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// A whole number (a level, a step number, a count).
    Int(i64),
    /// A measured number with its unit (as the device kind declares it).
    Number {
        value: f64,
        unit: Option<Arc<str>>,
    },
    /// Text: free text typed by someone, a title, evidence.
    Text(SafeText),
    Severity(Severity),
    Duration(Duration),
    Time(Timestamp),
    /// A device, by its territory id.
    Device(Arc<str>),
    /// A person or a unit, by its account or unit id.
    User(Arc<str>),
    Incident(IncidentId),
    /// An identifier from a closed family ([`ENUMS`]).
    Enum {
        of: &'static str,
        id: Arc<str>,
    },
    /// A message inside a message (a crisis log line quoting an incident's log line).
    Message(Box<Message>),
}

/// A code and its parameters, in the order the code's template names them.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub code: &'static str,
    pub params: Vec<(&'static str, Param)>,
}

/// Why a message read back (from a store) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("unknown message code `{0}`")]
    UnknownCode(String),
    #[error("message `{code}` has no parameter `{name}`")]
    UnknownParam { code: &'static str, name: String },
    #[error("unknown enumeration `{0}`")]
    UnknownEnum(String),
}

impl Message {
    /// A message with no parameter yet. `code` must be in [`CATALOGUE`].
    pub fn new(code: &'static str) -> Message {
        debug_assert!(
            template(code).is_some(),
            "message code {code} not catalogued"
        );
        Message {
            code,
            params: Vec::new(),
        }
    }

    /// Adds a parameter. `name` must appear in the code's template.
    pub fn with(mut self, name: &'static str, value: Param) -> Message {
        debug_assert!(
            template(self.code).is_some_and(|t| t.contains(&format!("{{{name}}}"))),
            "message {} has no parameter {name}",
            self.code
        );
        self.params.push((name, value));
        // One order whatever the order of the calls: the template's.
        let t = template(self.code).unwrap_or_default();
        self.params
            .sort_by_key(|(n, _)| t.find(&format!("{{{n}}}")));
        self
    }

    /// A number without unit.
    pub fn number(self, name: &'static str, value: f64) -> Message {
        self.with(name, Param::Number { value, unit: None })
    }

    pub fn int(self, name: &'static str, value: i64) -> Message {
        self.with(name, Param::Int(value))
    }

    pub fn device(self, name: &'static str, id: &str) -> Message {
        self.with(name, Param::Device(id.into()))
    }

    pub fn text(self, name: &'static str, value: &SafeText) -> Message {
        self.with(name, Param::Text(value.clone()))
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|(n, _)| *n == name).map(|(_, p)| p)
    }

    /// The code as `&'static str`, if catalogued (for messages read back from a store).
    pub fn known_code(code: &str) -> Result<&'static str, MessageError> {
        CATALOGUE
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, _)| *c)
            .ok_or_else(|| MessageError::UnknownCode(code.into()))
    }

    /// The parameter name as `&'static str`, if the code's template names it.
    pub fn known_param(code: &'static str, name: &str) -> Result<&'static str, MessageError> {
        let unknown = || MessageError::UnknownParam {
            code,
            name: name.into(),
        };
        let t = template(code).ok_or_else(unknown)?;
        let needle = format!("{{{name}}}");
        let at = t.find(&needle).ok_or_else(unknown)?;
        Ok(&t[at + 1..at + 1 + name.len()])
    }

    /// The family of an enumerated parameter as `&'static str`.
    pub fn known_enum(of: &str) -> Result<&'static str, MessageError> {
        ENUMS
            .iter()
            .find(|e| **e == of)
            .copied()
            .ok_or_else(|| MessageError::UnknownEnum(of.into()))
    }

    /// The English rendering: the fallback text stored beside the message.
    pub fn english(&self) -> SafeText {
        SafeText::redacting(&self.english_string())
    }

    fn english_string(&self) -> String {
        let Some(t) = template(self.code) else {
            return self.code.to_string();
        };
        let mut out = String::with_capacity(t.len() + 16);
        let mut rest = t;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let name = &after[..close];
                    if let Some(p) = self.param(name) {
                        p.write_english(&mut out);
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

impl Param {
    fn write_english(&self, out: &mut String) {
        match self {
            Param::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Param::Number { value, unit } => {
                let _ = write!(out, "{value}");
                if let Some(u) = unit {
                    let _ = write!(out, " {u}");
                }
            }
            Param::Text(t) => out.push_str(t),
            Param::Severity(s) => out.push_str(s.as_str()),
            Param::Duration(d) => out.push_str(&english_duration(*d)),
            Param::Time(t) => {
                let _ = write!(out, "{t}");
            }
            Param::Device(d) | Param::User(d) => out.push_str(d),
            Param::Incident(i) => {
                let _ = write!(out, "{i}");
            }
            Param::Enum { id, .. } => out.push_str(id),
            Param::Message(m) => out.push_str(&m.english_string()),
        }
    }
}

/// The English template of a code.
pub fn template(code: &str) -> Option<&'static str> {
    CATALOGUE.iter().find(|(c, _)| *c == code).map(|(_, t)| *t)
}

/// `90s` → `1m30s`, `2h` → `2h`: a delay as an operator reads it in English.
pub fn english_duration(d: Duration) -> String {
    let s = d.millis() / 1000;
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if sec > 0 || out.is_empty() {
        let _ = write!(out, "{sec}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_rendering_fills_every_parameter() {
        let m = Message::new("incident.severity_raised")
            .with("from", Param::Severity(Severity::Major))
            .with("to", Param::Severity(Severity::Critical));
        assert_eq!(m.english(), "severity major → critical");
        let m = Message::new("incident.not_acknowledged")
            .with("after", Param::Duration(Duration::from_secs(90)));
        assert_eq!(m.english(), "not acknowledged after 1m30s");
    }

    #[test]
    fn nested_messages_and_numbers_render_in_english() {
        let inner = Message::new("incident.severity_raised")
            .with("from", Param::Severity(Severity::Minor))
            .with("to", Param::Severity(Severity::Major));
        let m = Message::new("crisis.incident_logged_detail")
            .with("incident", Param::Incident(IncidentId(7)))
            .text("title", &SafeText::from("Crue"))
            .with(
                "action",
                Param::Enum {
                    of: "action",
                    id: "escalated".into(),
                },
            )
            .with("detail", Param::Message(Box::new(inner)));
        assert_eq!(m.english(), "#7 Crue — escalated: severity minor → major");
        let n = Message::new("incident.opened")
            .with("severity", Param::Severity(Severity::Info))
            .with(
                "evidence",
                Param::Number {
                    value: 3.5,
                    unit: Some("m".into()),
                },
            );
        assert_eq!(n.english(), "info — 3.5 m");
    }

    #[test]
    fn names_read_back_are_checked_against_the_catalogue() {
        let code = Message::known_code("crisis.level").expect("catalogued");
        assert_eq!(code, "crisis.level");
        assert_eq!(Message::known_param(code, "from").ok(), Some("from"));
        assert!(Message::known_param(code, "level").is_err());
        assert!(Message::known_code("crisis.nope").is_err());
        assert!(Message::known_enum("crisis_kind").is_ok());
        assert!(Message::known_enum("user").is_err());
    }

    #[test]
    fn every_template_parameter_is_well_formed_and_codes_are_unique() {
        for (i, (code, t)) in CATALOGUE.iter().enumerate() {
            assert!(
                CATALOGUE[i + 1..].iter().all(|(c, _)| c != code),
                "{code} twice"
            );
            assert_eq!(t.matches('{').count(), t.matches('}').count(), "{code}");
        }
    }
}
