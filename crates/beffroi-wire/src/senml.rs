//! SenML JSON (RFC 8428).
//!
//! A pack is a JSON array of records. Base fields (`bn`, `bt`, `bu`, `bv`) apply to the
//! records that follow. The resolved name `bn + n` designates the field: with a device
//! given by the transport (topic `.../<device>/senml` or `POST /api/v1/devices/{id}/observations`)
//! the name is the field; otherwise it is `<device-id>/<field>` (e.g. `bn = "gauge-01/"`,
//! `n = "level_m"`). Times are seconds; a resolved time below 2^28 is relative to the
//! time of reception (RFC 8428 §4.5.3).

use std::borrow::Cow;

use beffroi_core::Timestamp;
use serde::Deserialize;

use crate::{Context, DeviceRef, RawRecord, RawValue, RejectReason, Rejection, malformed};

#[derive(Deserialize, Debug, Default)]
struct Record<'a> {
    #[serde(borrow, default)]
    bn: Option<Cow<'a, str>>,
    #[serde(default)]
    bt: Option<f64>,
    #[serde(default)]
    bv: Option<f64>,
    #[serde(borrow, default)]
    n: Option<Cow<'a, str>>,
    #[serde(default)]
    v: Option<serde_json::Number>,
    #[serde(borrow, default)]
    vs: Option<Cow<'a, str>>,
    #[serde(default)]
    vb: Option<bool>,
    #[serde(borrow, default)]
    vd: Option<Cow<'a, str>>,
    #[serde(default)]
    s: Option<f64>,
    #[serde(default)]
    t: Option<f64>,
}

const RELATIVE_LIMIT: f64 = 268_435_456.0; // 2^28 seconds

pub fn decode<'a>(payload: &'a [u8], cx: Context<'_>) -> Result<Vec<RawRecord<'a>>, Rejection> {
    let pack: Vec<Record<'a>> = serde_json::from_slice(payload).map_err(malformed)?;
    let mut out = Vec::with_capacity(pack.len());
    let mut base_name: Option<Cow<'a, str>> = None;
    let mut base_time = 0.0;
    let mut base_value = 0.0;
    for (i, r) in pack.into_iter().enumerate() {
        if let Some(bn) = r.bn {
            base_name = Some(bn);
        }
        if let Some(bt) = r.bt {
            base_time = bt;
        }
        if let Some(bv) = r.bv {
            base_value = bv;
        }
        let value = match (r.v, r.vs, r.vb, r.vd, r.s) {
            (Some(v), None, None, None, None) => match v.as_f64() {
                Some(x) => RawValue::Number(x + base_value),
                None => return Err(malformed(format!("record {i}: number out of range"))),
            },
            (None, Some(s), None, None, None) => RawValue::Text(s),
            (None, None, Some(b), None, None) => RawValue::Bool(b),
            (None, None, None, Some(_), None) => RawValue::Other("data"),
            (None, None, None, None, Some(_)) => RawValue::Other("sum"),
            (None, None, None, None, None) => {
                if r.n.is_none() {
                    // A record carrying only base fields.
                    continue;
                }
                return Err(malformed(format!("record {i}: no value")));
            }
            _ => return Err(malformed(format!("record {i}: more than one value"))),
        };
        let split = match (&base_name, r.n) {
            // Fast path, no allocation: `bn = "<device>/"`, `n = "<field>"`.
            (Some(Cow::Borrowed(b)), Some(Cow::Borrowed(n)))
                if b.len() > 1
                    && b.ends_with(['/', ':'])
                    && !n.is_empty()
                    && !n.contains(['/', ':']) =>
            {
                Some((
                    DeviceRef::Id(Cow::Borrowed(&b[..b.len() - 1])),
                    Cow::Borrowed(n),
                ))
            }
            (Some(b), Some(n)) => split_name(Cow::Owned(format!("{b}{n}")), cx.device_hint),
            (Some(b), None) => split_name(b.clone(), cx.device_hint),
            (None, Some(n)) => split_name(n, cx.device_hint),
            (None, None) => return Err(malformed(format!("record {i}: no name"))),
        };
        let (device, field) = split
            .ok_or_else(|| malformed(format!("record {i}: name does not say device/field")))?;
        let t = base_time + r.t.unwrap_or(0.0);
        if !t.is_finite() {
            return Err(Rejection::new(
                RejectReason::BadTime,
                format!("record {i}: time"),
            ));
        }
        let time = if t.abs() < RELATIVE_LIMIT {
            if t == 0.0 {
                None
            } else {
                Some(
                    cx.received
                        .plus(beffroi_core::Duration((t * 1000.0) as i64)),
                )
            }
        } else {
            Some(Timestamp((t * 1000.0).round() as i64))
        };
        out.push(RawRecord {
            device,
            field,
            value,
            time,
        });
    }
    Ok(out)
}

/// Splits a resolved name into device and field. A field name never holds `/` or `:`, so
/// a name that does says its device before the last one: with a device given by the
/// transport, a bare field name is that device's, and a name saying another device is
/// reported as that device's (the engine refuses it on an authenticated topic as
/// `topic_mismatch`), never silently taken as the transport's.
fn split_name<'a>(name: Cow<'a, str>, hint: Option<&str>) -> Option<(DeviceRef<'a>, Cow<'a, str>)> {
    let Some(cut) = name.rfind(['/', ':']) else {
        return hint.map(|dev| (DeviceRef::Id(Cow::Owned(dev.to_string())), name));
    };
    if cut == 0 || cut + 1 == name.len() {
        return None;
    }
    Some(match name {
        Cow::Borrowed(s) => (
            DeviceRef::Id(Cow::Borrowed(&s[..cut])),
            Cow::Borrowed(&s[cut + 1..]),
        ),
        Cow::Owned(s) => (
            DeviceRef::Id(Cow::Owned(s[..cut].to_string())),
            Cow::Owned(s[cut + 1..].to_string()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context {
            device_hint: None,
            received: Timestamp(1_000_000),
        }
    }

    #[test]
    fn base_name_and_times() {
        let p = br#"[{"bn":"g1/","bt":1795694400,"n":"level_m","v":1.5},{"n":"level_m","t":60,"v":1.6}]"#;
        let r = decode(p, cx()).expect("valid");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].device, DeviceRef::Id("g1".into()));
        assert_eq!(r[0].field, "level_m");
        assert_eq!(r[0].time, Some(Timestamp(1_795_694_400_000)));
        assert_eq!(r[1].time, Some(Timestamp(1_795_694_460_000)));
        assert_eq!(r[1].value, RawValue::Number(1.6));
    }

    #[test]
    fn relative_time_and_hint() {
        let p = br#"[{"n":"on","vb":true,"t":-5}]"#;
        let r = decode(
            p,
            Context {
                device_hint: Some("a1"),
                received: Timestamp(10_000),
            },
        )
        .expect("valid");
        assert_eq!(r[0].device, DeviceRef::Id("a1".into()));
        assert_eq!(r[0].time, Some(Timestamp(5_000)));
        assert_eq!(r[0].value, RawValue::Bool(true));
    }

    #[test]
    fn with_a_hint_a_name_saying_another_device_keeps_it() {
        let hinted = |p: &'static [u8]| {
            decode(
                p,
                Context {
                    device_hint: Some("gauge-1"),
                    received: Timestamp(10_000),
                },
            )
            .expect("valid")
        };
        let r = hinted(br#"[{"bn":"gauge-1/","n":"level_m","v":1}]"#);
        assert_eq!(r[0].device, DeviceRef::Id("gauge-1".into()));
        assert_eq!(r[0].field, "level_m");
        let r = hinted(br#"[{"bn":"panel-9/","n":"fire","vb":true},{"n":"level_m","v":1}]"#);
        assert_eq!(r[0].device, DeviceRef::Id("panel-9".into()));
        assert_eq!(r[0].field, "fire");
        assert_eq!(r[1].device, DeviceRef::Id("panel-9".into()));
        let r = hinted(br#"[{"n":"urn:dev:x:fire","vb":true}]"#);
        assert_eq!(r[0].device, DeviceRef::Id("urn:dev:x".into()));
    }

    #[test]
    fn refuses_ambiguous_records() {
        assert!(decode(br#"[{"n":"g1/x","v":1,"vb":true}]"#, cx()).is_err());
        assert!(decode(br#"[{"n":"nodevice","v":1}]"#, cx()).is_err());
        assert!(decode(br#"{"n":"g1/x","v":1}"#, cx()).is_err());
        assert!(decode(b"[", cx()).is_err());
    }
}
