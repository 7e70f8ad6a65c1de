//! Topic → payload format and device hint. Pure; the layout is in the crate doc.

use std::sync::Arc;

use beffroi_wire::Format;

/// What a topic says about its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub format: Format,
    /// The device named by the topic (`beffroi/<territory>/<device-id>/…`); ChirpStack
    /// uplinks carry their DevEUI in the payload instead.
    pub device_hint: Option<Arc<str>>,
}

impl Route {
    /// Where a topic of unknown shape goes: SenML without a device hint, so that the
    /// pipeline decodes it on its own merits (a pack naming its devices in `bn` is
    /// accepted, anything else is rejected as malformed and counted), never dropped here.
    pub fn unknown() -> Route {
        Route {
            format: Format::Senml,
            device_hint: None,
        }
    }
}

/// Routes a topic, or `None` when its shape is not one of the documented ones.
pub fn route(topic: &str) -> Option<Route> {
    let mut levels = topic.split('/');
    let parts: [&str; 6] = std::array::from_fn(|_| levels.next().unwrap_or(""));
    let extra = levels.next().is_some();
    match parts {
        ["beffroi", territory, device, suffix, "", ""]
            if !extra && !territory.is_empty() && !device.is_empty() =>
        {
            let format = match suffix {
                "senml" => Format::Senml,
                "json" => Format::Json,
                _ => return None,
            };
            Some(Route {
                format,
                device_hint: Some(Arc::from(device)),
            })
        }
        ["application", app, "device", eui, "event", "up"]
            if !extra && !app.is_empty() && !eui.is_empty() =>
        {
            Some(Route {
                format: Format::Chirpstack,
                device_hint: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(topic: &str) -> Option<(Format, Option<String>)> {
        route(topic).map(|r| (r.format, r.device_hint.map(|h| h.to_string())))
    }

    #[test]
    fn documented_shapes() {
        assert_eq!(
            r("beffroi/dijon/gauge-01/senml"),
            Some((Format::Senml, Some("gauge-01".into())))
        );
        assert_eq!(
            r("beffroi/dijon/gauge-01/json"),
            Some((Format::Json, Some("gauge-01".into())))
        );
        assert_eq!(
            r("application/7/device/0011223344556677/event/up"),
            Some((Format::Chirpstack, None))
        );
    }

    #[test]
    fn other_shapes_are_unknown() {
        for t in [
            "",
            "beffroi",
            "beffroi/dijon/gauge-01",
            "beffroi/dijon/gauge-01/cbor",
            "beffroi/dijon//senml",
            "beffroi//gauge-01/senml",
            "beffroi/dijon/gauge-01/senml/extra",
            "Beffroi/dijon/gauge-01/senml",
            "application/7/device/0011223344556677/event/join",
            "application/7/device/0011223344556677/event/up/x",
            "application//device/0011223344556677/event/up",
            "$SYS/broker/uptime",
        ] {
            assert_eq!(route(t), None, "{t}");
        }
        assert_eq!(Route::unknown().format, Format::Senml);
        assert_eq!(Route::unknown().device_hint, None);
    }
}
