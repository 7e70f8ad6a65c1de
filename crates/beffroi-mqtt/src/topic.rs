//! Topic → payload format and device. Pure; the layout is in the crate doc.
//!
//! The `beffroi/` namespace is ours: a topic under it either has one of the documented
//! shapes, and then its `<device-id>` level binds the device of every record it carries, or
//! it is refused. It is never submitted without its device, which would let the payload
//! name any device it likes.

use std::sync::Arc;

use beffroi_wire::Format;

/// The first level of the device topics.
pub const NAMESPACE: &str = "beffroi";

/// The suffixes a device topic may have, and the format each one announces. The ACL that
/// `beffroi devices` generates grants exactly these.
pub const DEVICE_SUFFIXES: [(&str, Format); 2] = [("senml", Format::Senml), ("json", Format::Json)];

/// What a topic says about its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub format: Format,
    /// The device named by the topic (`beffroi/<territory>/<device-id>/<suffix>`); ChirpStack
    /// uplinks carry their DevEUI in the payload instead.
    pub device_hint: Option<Arc<str>>,
}

impl Route {
    /// Where a topic outside the `beffroi/` namespace and of unknown shape goes: SenML
    /// without a device hint, so that the pipeline decodes it on its own merits (a pack
    /// naming its devices in `bn` is accepted, anything else is rejected and counted).
    pub fn unknown() -> Route {
        Route {
            format: Format::Senml,
            device_hint: None,
        }
    }
}

/// Why a topic of the `beffroi/` namespace is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopicRefusal {
    /// `beffroi/<territory>/<device>/<suffix>` with a suffix other than `senml` or `json`.
    UnknownSuffix,
    /// Levels beyond the suffix.
    ExtraLevels,
    /// Fewer than four levels, or an empty territory or device level.
    Incomplete,
}

impl TopicRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicRefusal::UnknownSuffix => "unknown_suffix",
            TopicRefusal::ExtraLevels => "extra_levels",
            TopicRefusal::Incomplete => "incomplete",
        }
    }
}

/// Where a message goes, by its topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routing {
    /// A documented shape.
    Known(Route),
    /// Under `beffroi/` but not a documented shape: acknowledged, counted, not submitted.
    Refused(TopicRefusal),
    /// Outside the layout: submitted as [`Route::unknown`].
    Unknown,
}

/// Routes a topic.
pub fn route(topic: &str) -> Routing {
    let levels: Vec<&str> = topic.splitn(6, '/').collect();
    match levels.as_slice() {
        [NAMESPACE, rest @ ..] => device_topic(rest),
        ["application", app, "device", eui, "event", "up"]
            if !app.is_empty() && !eui.is_empty() =>
        {
            Routing::Known(Route {
                format: Format::Chirpstack,
                device_hint: None,
            })
        }
        _ => Routing::Unknown,
    }
}

/// `<territory>/<device>/<suffix>`: the levels after `beffroi/`.
fn device_topic(levels: &[&str]) -> Routing {
    let [territory, device, suffix, more @ ..] = levels else {
        return Routing::Refused(TopicRefusal::Incomplete);
    };
    if territory.is_empty() || device.is_empty() {
        return Routing::Refused(TopicRefusal::Incomplete);
    }
    if !more.is_empty() {
        return Routing::Refused(TopicRefusal::ExtraLevels);
    }
    match DEVICE_SUFFIXES.iter().find(|(s, _)| s == suffix) {
        Some((_, format)) => Routing::Known(Route {
            format: *format,
            device_hint: Some(Arc::from(*device)),
        }),
        None => Routing::Refused(TopicRefusal::UnknownSuffix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(topic: &str) -> Option<(Format, Option<String>)> {
        match route(topic) {
            Routing::Known(r) => Some((r.format, r.device_hint.map(|h| h.to_string()))),
            _ => None,
        }
    }

    #[test]
    fn documented_shapes() {
        assert_eq!(
            known("beffroi/dijon/gauge-01/senml"),
            Some((Format::Senml, Some("gauge-01".into())))
        );
        assert_eq!(
            known("beffroi/dijon/gauge-01/json"),
            Some((Format::Json, Some("gauge-01".into())))
        );
        assert_eq!(
            known("application/7/device/0011223344556677/event/up"),
            Some((Format::Chirpstack, None))
        );
    }

    /// A device topic with any other suffix, or more levels, never reaches the pipeline
    /// (where, without its device, the payload would choose the device).
    #[test]
    fn the_beffroi_namespace_is_refused_outside_the_layout() {
        use TopicRefusal::*;
        for (t, why) in [
            ("beffroi/t/gauge-1/x", UnknownSuffix),
            ("beffroi/dijon/gauge-01/cbor", UnknownSuffix),
            ("beffroi/dijon/gauge-01/", UnknownSuffix),
            ("beffroi/dijon/gauge-01/SENML", UnknownSuffix),
            ("beffroi/dijon/gauge-01/senml/extra", ExtraLevels),
            ("beffroi/dijon/gauge-01/x/senml", ExtraLevels),
            ("beffroi/dijon/gauge-01/senml/a/b/c/d", ExtraLevels),
            ("beffroi/dijon/gauge-01", Incomplete),
            ("beffroi/dijon", Incomplete),
            ("beffroi", Incomplete),
            ("beffroi/", Incomplete),
            ("beffroi/dijon//senml", Incomplete),
            ("beffroi//gauge-01/senml", Incomplete),
        ] {
            assert_eq!(route(t), Routing::Refused(why), "{t}");
        }
    }

    #[test]
    fn other_shapes_are_unknown() {
        for t in [
            "",
            "Beffroi/dijon/gauge-01/senml",
            "beffroix/dijon/gauge-01/senml",
            "application/7/device/0011223344556677/event/join",
            "application/7/device/0011223344556677/event/up/x",
            "application//device/0011223344556677/event/up",
            "$SYS/broker/uptime",
        ] {
            assert_eq!(route(t), Routing::Unknown, "{t}");
        }
        assert_eq!(Route::unknown().format, Format::Senml);
        assert_eq!(Route::unknown().device_hint, None);
    }
}
