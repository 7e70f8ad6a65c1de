//! ChirpStack v4 uplink events (JSON integration, `application/.../device/.../event/up`).
//!
//! Only `deviceInfo.devEui`, `time` and the codec-decoded `object` are used; every key of
//! `object` is one field of the device's kind. Other keys of the event (rxInfo, txInfo…)
//! are ignored.

use std::borrow::Cow;

use serde::Deserialize;

use crate::plain::json_value;
use crate::{DeviceRef, RawRecord, RejectReason, Rejection, malformed, parse_rfc3339};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Uplink<'a> {
    #[serde(borrow)]
    device_info: DeviceInfo<'a>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(default)]
    object: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceInfo<'a> {
    #[serde(borrow)]
    dev_eui: Cow<'a, str>,
}

pub fn decode(payload: &[u8]) -> Result<Vec<RawRecord<'_>>, Rejection> {
    let up: Uplink<'_> = serde_json::from_slice(payload).map_err(malformed)?;
    let time = match up.time.as_deref() {
        None => None,
        Some(s) => Some(
            parse_rfc3339(s)
                .ok_or_else(|| Rejection::new(RejectReason::BadTime, "`time` is not RFC 3339"))?,
        ),
    };
    let Some(object) = up.object else {
        return Err(malformed(
            "uplink has no decoded `object` (configure a codec in ChirpStack)",
        ));
    };
    Ok(object
        .into_iter()
        .map(|(k, v)| RawRecord {
            device: DeviceRef::DevEui(up.device_info.dev_eui.clone()),
            field: Cow::Owned(k),
            value: json_value(v),
            time,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawValue;

    #[test]
    fn decodes_an_uplink() {
        let p = br#"{"deduplicationId":"x","time":"2026-11-26T12:00:00.000+00:00",
            "deviceInfo":{"tenantName":"T","devEui":"0011223344556677","deviceName":"g1"},
            "fCnt":10,"fPort":1,"data":"AQI=","object":{"level_m":2.5},"rxInfo":[]}"#;
        let r = decode(p).expect("valid");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].device, DeviceRef::DevEui("0011223344556677".into()));
        assert_eq!(r[0].value, RawValue::Number(2.5));
        assert!(r[0].time.is_some());
    }

    #[test]
    fn needs_a_decoded_object() {
        let e = decode(br#"{"deviceInfo":{"devEui":"00"},"data":"AQI="}"#).expect_err("bad");
        assert!(e.detail.contains("object"));
    }
}
