use beffroi_core::{Duration, FieldType, Observation, Territory, Timestamp, Value};

use crate::{DeviceRef, RawRecord, RawValue, RejectReason, Rejection};

/// Largest accepted text value, in bytes.
pub const MAX_TEXT: usize = 256;
/// How far in the future an event time may be (sensor clock skew) before it is refused.
pub const MAX_FUTURE: Duration = Duration::from_mins(5);

/// Validates raw records against a territory.
pub struct Validator<'t> {
    pub territory: &'t Territory,
}

impl Validator<'_> {
    pub fn validate(
        &self,
        r: &RawRecord<'_>,
        received: Timestamp,
    ) -> Result<Observation, Rejection> {
        validate(self.territory, r, received)
    }
}

/// Checks that the device exists, the field belongs to its kind, the value has the field's
/// type and lies within its physical range, and the time is not in the future.
pub fn validate(
    t: &Territory,
    r: &RawRecord<'_>,
    received: Timestamp,
) -> Result<Observation, Rejection> {
    let device = match &r.device {
        DeviceRef::Id(id) => t.device_id(id),
        DeviceRef::DevEui(eui) => t.device_by_eui(eui),
    }
    .ok_or_else(|| {
        // Only a bounded prefix of the unknown id goes into the detail.
        let shown: String = match &r.device {
            DeviceRef::Id(id) => id.chars().take(64).collect(),
            DeviceRef::DevEui(e) => format!("devEui {}", e.chars().take(32).collect::<String>()),
        };
        Rejection::new(
            RejectReason::UnknownDevice,
            format!("unknown device `{shown}`"),
        )
    })?;
    let kind = t.kind_of(device);
    let field = kind.field(&r.field).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownField,
            format!(
                "kind `{}` has no field `{}`",
                kind.id,
                r.field.chars().take(64).collect::<String>()
            ),
        )
    })?;
    let spec = &kind.fields[field.get()];
    // Images and video frames are refused whatever the field's type; the detail names
    // what was recognised, never the value.
    match &r.value {
        RawValue::Other("data") => {
            return Err(Rejection::new(
                RejectReason::ImageRefused,
                format!(
                    "{}.{}: SenML data value (vd) refused: binary data, images and video frames are not observations",
                    kind.id, spec.name
                ),
            ));
        }
        RawValue::Text(s) => {
            if let Some(m) = crate::media::sniff(s) {
                return Err(Rejection::new(
                    RejectReason::ImageRefused,
                    format!(
                        "{}.{}: {} refused: images and video frames are not observations",
                        kind.id,
                        spec.name,
                        m.as_str()
                    ),
                ));
            }
            if s.len() > MAX_TEXT {
                return Err(Rejection::new(
                    RejectReason::TextTooLong,
                    format!(
                        "{}.{}: text of {} bytes, limit {MAX_TEXT}",
                        kind.id,
                        spec.name,
                        s.len()
                    ),
                ));
            }
        }
        _ => {}
    }
    let value = match (&r.value, spec.ty) {
        (RawValue::Number(n), FieldType::Number) => {
            if !n.is_finite() {
                return Err(Rejection::new(
                    RejectReason::OutOfRange,
                    "not a finite number",
                ));
            }
            if spec.min.is_some_and(|lo| *n < lo) || spec.max.is_some_and(|hi| *n > hi) {
                // A people count is never quoted (it could be below the minimum group size),
                // nor a personal or sensitive value.
                let shown = if spec.people_count || spec.category.is_personal() {
                    String::new()
                } else {
                    format!(" = {n}")
                };
                return Err(Rejection::new(
                    RejectReason::OutOfRange,
                    format!(
                        "{}.{}{shown} outside [{}, {}]",
                        kind.id,
                        spec.name,
                        spec.min.map_or("-inf".to_string(), |v| v.to_string()),
                        spec.max.map_or("+inf".to_string(), |v| v.to_string()),
                    ),
                ));
            }
            Value::Number(*n)
        }
        (RawValue::Bool(b), FieldType::Bool) => Value::Bool(*b),
        (RawValue::Text(s), FieldType::Text) => {
            // A declared technical text (an enumeration, a pattern) takes nothing else: the
            // detail says which declaration refused it, never the value.
            if !spec.text.admits(s) {
                return Err(Rejection::new(
                    RejectReason::TextNotAllowed,
                    format!(
                        "{}.{}: a text of {} bytes outside the field's declared {}",
                        kind.id,
                        spec.name,
                        s.len(),
                        spec.text.as_str()
                    ),
                ));
            }
            Value::Text(s.as_ref().into())
        }
        (got, want) => {
            let got = match got {
                RawValue::Number(_) => "number",
                RawValue::Bool(_) => "bool",
                RawValue::Text(_) => "text",
                RawValue::Other(o) => o,
            };
            return Err(Rejection::new(
                RejectReason::WrongType,
                format!(
                    "{}.{} expects {}, got {got}",
                    kind.id,
                    spec.name,
                    want.as_str()
                ),
            ));
        }
    };
    let time = r.time.unwrap_or(received);
    if time > received.plus(MAX_FUTURE) {
        return Err(Rejection::new(
            RejectReason::BadTime,
            format!("event time {time} is ahead of reception {received}"),
        ));
    }
    Ok(Observation {
        device,
        field,
        value,
        time,
        trust: beffroi_core::Trust::Unauthenticated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, Format, decode};
    use beffroi_core::territory::fixture;

    fn check(format: Format, payload: &str) -> Vec<Result<Observation, RejectReason>> {
        let t = fixture::small();
        let now = Timestamp(1_795_694_400_000);
        decode(
            format,
            payload.as_bytes(),
            Context {
                device_hint: None,
                received: now,
            },
        )
        .expect("decodes")
        .iter()
        .map(|r| validate(&t, r, now).map_err(|e| e.reason))
        .collect()
    }

    #[test]
    fn every_reason_is_reachable() {
        use RejectReason::*;
        let got: Vec<_> = check(
            Format::Json,
            r#"[{"device":"nope","values":{"level_m":1}},
                {"device":"g1","values":{"depth":1}},
                {"device":"g1","values":{"level_m":true}},
                {"device":"g1","values":{"level_m":11}},
                {"device":"g1","time":1795694999000,"values":{"level_m":1}},
                {"device":"g1","values":{"level_m":1}}]"#,
        )
        .into_iter()
        .map(|r| r.err())
        .collect();
        assert_eq!(
            got,
            vec![
                Some(UnknownDevice),
                Some(UnknownField),
                Some(WrongType),
                Some(OutOfRange),
                Some(BadTime),
                None
            ]
        );
    }

    /// A declared technical text takes its values or its pattern's and nothing else; the
    /// rejection never quotes the value. Free text still passes (scrubbed later).
    #[test]
    fn declared_technical_text_refuses_anything_else() {
        use beffroi_core::{FieldSpec, TextDomain, TextPattern};
        let mut t = fixture::small();
        let alarm = t.kind_id("alarm").expect("fixture kind");
        let fields = &mut t.kinds[alarm.get()].fields;
        fields.push(FieldSpec {
            text: TextDomain::values(["ok", "fault"]).expect("values"),
            ..FieldSpec::technical("status", FieldType::Text)
        });
        fields.push(FieldSpec {
            text: TextDomain::Pattern(TextPattern::new("E[0-9]{3}").expect("pattern")),
            ..FieldSpec::technical("code", FieldType::Text)
        });
        fields.push(FieldSpec::technical("note", FieldType::Text));
        let now = Timestamp(1_795_694_400_000);
        let run = |values: &str| {
            let payload = format!(r#"{{"device":"a1","values":{values}}}"#);
            let recs = decode(
                Format::Json,
                payload.as_bytes(),
                Context {
                    device_hint: None,
                    received: now,
                },
            )
            .expect("decodes");
            validate(&t, &recs[0], now)
        };
        assert!(run(r#"{"status":"fault"}"#).is_ok());
        assert!(run(r#"{"code":"E042"}"#).is_ok());
        assert!(run(r#"{"note":"rappeler le 06 12 34 56 78"}"#).is_ok());
        for refused in [
            r#"{"status":"fault, rappeler le 06 12 34 56 78"}"#,
            r#"{"status":"FAULT"}"#,
            r#"{"code":"E042 AB-123-CD"}"#,
            r#"{"code":"AB-123-CD"}"#,
        ] {
            let e = run(refused).expect_err(refused);
            assert_eq!(e.reason, RejectReason::TextNotAllowed, "{refused}");
            for secret in ["06 12", "AB-123", "FAULT"] {
                assert!(!e.detail.contains(secret), "{}", e.detail);
            }
            assert!(e.detail.starts_with("alarm."), "{}", e.detail);
        }
    }

    #[test]
    fn chirpstack_finds_device_by_eui() {
        let r = check(
            Format::Chirpstack,
            r#"{"deviceInfo":{"devEui":"0011223344556677"},"object":{"level_m":2.5}}"#,
        );
        let obs = r[0].as_ref().expect("valid");
        assert_eq!(obs.value, Value::Number(2.5));
    }
}
