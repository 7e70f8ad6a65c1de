//! The plain JSON form, for integrations that do not speak SenML:
//!
//! ```json
//! {"device": "dijon-ouche-gauge-01", "time": "2026-11-26T12:00:00Z", "values": {"level_m": 1.42}}
//! ```
//!
//! `time` is RFC 3339 or milliseconds since the epoch, and optional (then: reception time).
//! `device` may be omitted when the transport names it. A JSON array of such objects is
//! accepted too.

use std::borrow::Cow;

use serde::Deserialize;

use crate::{
    Context, DeviceRef, RawRecord, RawValue, RejectReason, Rejection, malformed, parse_rfc3339,
};
use beffroi_core::Timestamp;

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<'a> {
    #[serde(borrow)]
    Many(Vec<Message<'a>>),
    #[serde(borrow)]
    One(Message<'a>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message<'a> {
    #[serde(borrow, default)]
    device: Option<Cow<'a, str>>,
    #[serde(default)]
    time: Option<serde_json::Value>,
    #[serde(borrow)]
    values: std::collections::BTreeMap<Cow<'a, str>, serde_json::Value>,
}

pub fn decode<'a>(payload: &'a [u8], cx: Context<'_>) -> Result<Vec<RawRecord<'a>>, Rejection> {
    let msgs = match serde_json::from_slice::<OneOrMany<'a>>(payload) {
        Ok(OneOrMany::Many(v)) => v,
        Ok(OneOrMany::One(m)) => vec![m],
        Err(_) => {
            // Re-parse strictly as one message to give the precise serde error.
            return Err(match serde_json::from_slice::<Message<'_>>(payload) {
                Err(e) => malformed(e),
                Ok(_) => malformed("expected an object or an array of objects"),
            });
        }
    };
    let mut out = Vec::new();
    for m in msgs {
        let device = match (m.device, cx.device_hint) {
            (Some(d), _) => d,
            (None, Some(h)) => Cow::Owned(h.to_string()),
            (None, None) => return Err(malformed("missing `device`")),
        };
        let time = match &m.time {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(ms) => Some(Timestamp(ms)),
                None => {
                    return Err(Rejection::new(
                        RejectReason::BadTime,
                        "`time` not an integer",
                    ));
                }
            },
            Some(serde_json::Value::String(s)) => match parse_rfc3339(s) {
                Some(t) => Some(t),
                None => {
                    return Err(Rejection::new(
                        RejectReason::BadTime,
                        "`time` is not RFC 3339",
                    ));
                }
            },
            Some(_) => return Err(Rejection::new(RejectReason::BadTime, "`time` type")),
        };
        for (field, v) in m.values {
            out.push(RawRecord {
                device: DeviceRef::Id(device.clone()),
                field,
                value: json_value(v),
                time,
            });
        }
    }
    Ok(out)
}

pub(crate) fn json_value<'a>(v: serde_json::Value) -> RawValue<'a> {
    match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .map(RawValue::Number)
            .unwrap_or(RawValue::Other("number")),
        serde_json::Value::Bool(b) => RawValue::Bool(b),
        serde_json::Value::String(s) => RawValue::Text(Cow::Owned(s)),
        serde_json::Value::Null => RawValue::Other("null"),
        serde_json::Value::Array(_) => RawValue::Other("array"),
        serde_json::Value::Object(_) => RawValue::Other("object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_many() {
        let cx = Context::default();
        let r = decode(
            br#"{"device":"g1","time":"2026-11-26T12:00:00Z","values":{"level_m":1.4}}"#,
            cx,
        )
        .expect("valid");
        assert_eq!(r[0].time, Some(Timestamp(1_795_694_400_000)));
        let r = decode(
            br#"[{"device":"g1","values":{"level_m":1}},{"device":"a1","time":5,"values":{"on":true,"badge":"B-1"}}]"#,
            cx,
        )
        .expect("valid");
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].value, RawValue::Text("B-1".into()));
    }

    #[test]
    fn precise_errors() {
        let e = decode(br#"{"device":"g1","valuez":{}}"#, Context::default()).expect_err("bad");
        assert_eq!(e.reason, RejectReason::Malformed);
        assert!(e.detail.contains("valuez"), "{}", e.detail);
        let e = decode(br#"{"values":{"x":1}}"#, Context::default()).expect_err("bad");
        assert!(e.detail.contains("device"));
    }
}
