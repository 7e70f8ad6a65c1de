//! The transport binds the device: a payload on an authenticated device topic (MQTT with
//! `broker_auth`) or in a signed envelope speaks for that one device. A record naming
//! another one refuses the **whole payload** as `topic_mismatch` (a publisher that lies
//! about one record is not believed about the others), before validation, so that even a
//! name that is not registered is caught as what it is. See
//! `docs/adr/0021-topic-binds-the-device.md`.
//!
//! Names a publisher made up (unregistered device ids) are never copied in clear into
//! signals, incident titles, evidence, rejection details or logs: they are quoted as
//! [`NameTags`], short keyed hashes.
//!
//! Pure: no I/O.

use std::hash::{BuildHasher, RandomState};

use beffroi_core::Territory;
use beffroi_wire::{DeviceRef, RawRecord};

/// Short keyed hashes of names chosen by a publisher: 8 hex digits of SipHash under a key
/// drawn at random when the engine starts. The same name gets the same tag while the engine
/// runs (so repeats can be told apart from new names); the key is never stored or shown, so
/// a tag does not give the name back, and tags do not link across restarts.
#[derive(Debug, Default)]
pub struct NameTags {
    key: RandomState,
}

impl NameTags {
    pub fn tag(&self, name: &str) -> String {
        format!("{:08x}", self.key.hash_one(name) >> 32)
    }

    /// How a device reference is quoted: the id of a registered device, else
    /// `unregistered device #<tag>`.
    pub fn describe(&self, t: &Territory, r: &DeviceRef<'_>) -> String {
        match registered(t, r) {
            Some(id) => id.to_string(),
            None => format!("unregistered device #{}", self.tag(&raw_name(r))),
        }
    }
}

/// The id of the registered device a reference resolves to.
fn registered<'t>(t: &'t Territory, r: &DeviceRef<'_>) -> Option<&'t str> {
    let d = match r {
        DeviceRef::Id(id) => t.device_id(id),
        DeviceRef::DevEui(eui) => t.device_by_eui(eui),
    }?;
    Some(&t.device(d).id)
}

/// The name as given (a DevEUI prefixed so that it never equals an id), for tagging.
pub fn raw_name(r: &DeviceRef<'_>) -> String {
    match r {
        DeviceRef::Id(id) => id.to_string(),
        DeviceRef::DevEui(e) => format!("deveui:{e}"),
    }
}

/// Whether a record names the bound device (by its id, or by a DevEUI registered to it).
fn names(t: &Territory, r: &DeviceRef<'_>, bound: &str) -> bool {
    match r {
        DeviceRef::Id(id) => id == bound,
        DeviceRef::DevEui(_) => registered(t, r) == Some(bound),
    }
}

/// The records of a payload that name another device than `bound`: how many, and the
/// first of them.
pub fn strangers<'r, 'a>(
    t: &Territory,
    bound: &str,
    records: &'r [RawRecord<'a>],
) -> Option<(usize, &'r DeviceRef<'a>)> {
    let mut off = records.iter().filter(|r| !names(t, &r.device, bound));
    let first = off.next()?;
    Some((1 + off.count(), &first.device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::territory::fixture;
    use beffroi_wire::RawValue;
    use std::borrow::Cow;

    fn rec(dev: &str) -> RawRecord<'static> {
        RawRecord {
            device: DeviceRef::Id(Cow::Owned(dev.to_string())),
            field: Cow::Borrowed("level_m"),
            value: RawValue::Number(1.0),
            time: None,
        }
    }

    #[test]
    fn strangers_are_counted_and_quoted_by_tag_unless_registered() {
        let t = fixture::small();
        let tags = NameTags::default();
        let own = [rec("g1"), rec("g1")];
        assert!(strangers(&t, "g1", &own).is_none());
        let mixed = [rec("g1"), rec("made-up-7"), rec("g2")];
        let (n, first) = strangers(&t, "g1", &mixed).expect("strangers");
        assert_eq!(n, 2);
        let quoted = tags.describe(&t, first);
        assert!(quoted.starts_with("unregistered device #"), "{quoted}");
        assert!(!quoted.contains("made-up"), "{quoted}");
        assert_eq!(quoted, tags.describe(&t, first), "stable while running");
        assert_eq!(tags.describe(&t, &mixed[2].device), "g2");
        assert_eq!(tags.tag("a").len(), 8);
        assert_ne!(tags.tag("a"), tags.tag("b"));
    }
}
