//! A [`Message`] as JSON: the one form the store keeps and the API and live stream send.
//!
//! `{"code": "incident.severity_raised", "params": {"from": {"severity": "major"}, …}}`.
//! Each parameter is an object with one key naming its type: `int`, `number` (with an
//! optional `unit`), `text`, `severity`, `duration_ms`, `time_ms`, `device`, `user`,
//! `incident`, `enum` (with `id`), `message` (a nested message).
//!
//! Reading back checks the code, the parameter names and the enumerations against the
//! catalogue, and passes every text through the recogniser: a stored row is not trusted.

use beffroi_core::message::{Message, MessageError, Param};
use beffroi_core::{Duration, IncidentId, SafeText, Severity, Timestamp};
use serde_json::{Map, Value, json};

/// The JSON form of a message.
pub fn to_json(m: &Message) -> Value {
    let mut params = Map::new();
    for (name, p) in &m.params {
        params.insert((*name).to_string(), param_json(p));
    }
    json!({ "code": m.code, "params": params })
}

fn param_json(p: &Param) -> Value {
    match p {
        Param::Int(n) => json!({ "int": n }),
        Param::Number { value, unit } => match unit {
            Some(u) => json!({ "number": value, "unit": &**u }),
            None => json!({ "number": value }),
        },
        Param::Text(t) => json!({ "text": t.as_str() }),
        Param::Severity(s) => json!({ "severity": s.as_str() }),
        Param::Duration(d) => json!({ "duration_ms": d.millis() }),
        Param::Time(t) => json!({ "time_ms": t.0 }),
        Param::Device(d) => json!({ "device": &**d }),
        Param::User(u) => json!({ "user": &**u }),
        Param::Incident(i) => json!({ "incident": i.0 }),
        Param::Enum { of, id } => json!({ "enum": of, "id": &**id }),
        Param::Message(m) => json!({ "message": to_json(m) }),
    }
}

/// Why stored JSON is not a message.
#[derive(Debug, thiserror::Error)]
pub enum MessageJsonError {
    #[error("message is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("message: {0}")]
    Unknown(#[from] MessageError),
    #[error("message: malformed {0}")]
    Malformed(&'static str),
}

/// Reads a message back from its JSON text.
pub fn from_json_str(s: &str) -> Result<Message, MessageJsonError> {
    from_json(&serde_json::from_str(s)?)
}

/// Reads a message back from its JSON form.
pub fn from_json(v: &Value) -> Result<Message, MessageJsonError> {
    let code = v
        .get("code")
        .and_then(Value::as_str)
        .ok_or(MessageJsonError::Malformed("code"))?;
    let code = Message::known_code(code)?;
    let mut m = Message {
        code,
        params: Vec::new(),
    };
    if let Some(params) = v.get("params").and_then(Value::as_object) {
        for (name, p) in params {
            let name = Message::known_param(code, name)?;
            m.params.push((name, param_from(p)?));
        }
    }
    // JSON objects have no order: parameters come back in the order the template names them.
    let template = beffroi_core::message::template(code).unwrap_or_default();
    m.params
        .sort_by_key(|(name, _)| template.find(&format!("{{{name}}}")));
    Ok(m)
}

fn param_from(p: &Value) -> Result<Param, MessageJsonError> {
    const BAD: MessageJsonError = MessageJsonError::Malformed("parameter");
    let o = p.as_object().ok_or(BAD)?;
    let str_of = |k: &str| o.get(k).and_then(Value::as_str);
    let param = if let Some(n) = o.get("int") {
        Param::Int(n.as_i64().ok_or(BAD)?)
    } else if let Some(n) = o.get("number") {
        Param::Number {
            value: n.as_f64().ok_or(BAD)?,
            unit: str_of("unit").map(Into::into),
        }
    } else if let Some(t) = str_of("text") {
        Param::Text(SafeText::redacting(t))
    } else if let Some(s) = str_of("severity") {
        Param::Severity(Severity::parse(s).ok_or(BAD)?)
    } else if let Some(d) = o.get("duration_ms") {
        Param::Duration(Duration(d.as_i64().ok_or(BAD)?))
    } else if let Some(t) = o.get("time_ms") {
        Param::Time(Timestamp(t.as_i64().ok_or(BAD)?))
    } else if let Some(d) = str_of("device") {
        Param::Device(d.into())
    } else if let Some(u) = str_of("user") {
        Param::User(u.into())
    } else if let Some(i) = o.get("incident") {
        Param::Incident(IncidentId(i.as_u64().ok_or(BAD)?))
    } else if let Some(of) = str_of("enum") {
        let id = str_of("id").ok_or(BAD)?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(BAD);
        }
        Param::Enum {
            of: Message::known_enum(of)?,
            id: id.into(),
        }
    } else if let Some(inner) = o.get("message") {
        Param::Message(Box::new(from_json(inner)?))
    } else {
        return Err(BAD);
    };
    Ok(param)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_its_json_form() {
        let inner = Message::new("incident.not_acknowledged")
            .with("after", Param::Duration(Duration::from_mins(5)));
        let m = Message::new("crisis.incident_logged_detail")
            .with("incident", Param::Incident(IncidentId(3)))
            .with("title", Param::Text(SafeText::from("Crue")))
            .with(
                "action",
                Param::Enum {
                    of: "action",
                    id: "reminder".into(),
                },
            )
            .with("detail", Param::Message(Box::new(inner)));
        let back = from_json_str(&to_json(&m).to_string()).expect("reads back");
        assert_eq!(back, m);
        assert_eq!(
            back.english(),
            "#3 Crue — reminder: not acknowledged after 5m"
        );
    }

    #[test]
    fn stored_json_is_checked_and_scrubbed() {
        assert!(from_json_str(r#"{"code":"nope","params":{}}"#).is_err());
        assert!(from_json_str(r#"{"code":"crisis.level","params":{"x":{"int":1}}}"#).is_err());
        assert!(
            from_json_str(r#"{"code":"crisis.opened","params":{"kind":{"enum":"x","id":"a"}}}"#)
                .is_err()
        );
        let m = from_json_str(
            r#"{"code":"incident.opened","params":{"evidence":{"text":"plaque AB-123-CD"}}}"#,
        )
        .expect("a message");
        assert!(!m.english().contains("AB-123-CD"));
    }
}
