//! Device trust at ingest: opens signed envelopes, verifies their MAC with the device's key
//! from the registry, checks the counter against the device's replay window, enforces the
//! kind's signing policy and, on an authenticated broker, that a device's topic carries only
//! its own records. Decides each observation's [`Trust`].
//!
//! Pure and synchronous: keys are handed in ([`DeviceKeys`]), window states are restored
//! from and written to the store through the pipeline's batch.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use beffroi_core::{DeviceIdx, SecuritySignal, Signing, Territory, Trust};
use beffroi_wire::signed::{self, ReplayWindow, SignedError};
use beffroi_wire::{DeviceRef, RejectReason, Rejection};

use crate::binding::NameTags;

/// The signing keys in force, by device id (from the registry; revoked devices absent).
#[derive(Clone, Default)]
pub struct DeviceKeys {
    keys: HashMap<Arc<str>, [u8; 32]>,
}

impl DeviceKeys {
    pub fn new(keys: impl IntoIterator<Item = (String, [u8; 32])>) -> Self {
        DeviceKeys {
            keys: keys.into_iter().map(|(d, k)| (Arc::from(d), k)).collect(),
        }
    }
    pub fn get(&self, device: &str) -> Option<&[u8; 32]> {
        self.keys.get(device)
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a key.
        write!(f, "DeviceKeys({} devices)", self.keys.len())
    }
}

/// A replay window to store: the device and `(highest, bitmap)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWindow {
    pub device: DeviceIdx,
    pub highest: u64,
    pub bitmap: u64,
}

/// What the transport says about a payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Transport<'a> {
    /// The device named by the topic or path.
    pub device_hint: Option<&'a str>,
    /// The broker authenticated the publisher and its ACL confines it to the hinted
    /// device's topic (`[mqtt] broker_auth = true`), or HTTP ingest checked the device's
    /// credential.
    pub authenticated: bool,
}

/// A payload that passed the envelope checks.
#[derive(Debug)]
pub struct Admitted<'a> {
    pub body: Cow<'a, [u8]>,
    pub trust: Trust,
    /// The device that signed (records must all name it).
    pub signer: Option<DeviceIdx>,
}

/// A payload refused as a whole, and the signal it raises.
#[derive(Debug)]
pub struct Refused {
    pub rejection: Rejection,
    pub signal: Option<SecuritySignal>,
}

fn refuse(reason: RejectReason, detail: String, signal: Option<SecuritySignal>) -> Refused {
    Refused {
        rejection: Rejection::new(reason, detail),
        signal,
    }
}

/// Per-partition trust state: keys, replay windows, and the key quoting made-up names.
#[derive(Debug, Default)]
pub struct TrustGate {
    keys: Arc<DeviceKeys>,
    windows: HashMap<DeviceIdx, ReplayWindow>,
    tags: NameTags,
}

impl TrustGate {
    pub fn set_keys(&mut self, keys: Arc<DeviceKeys>) {
        self.keys = keys;
    }

    pub fn keys(&self) -> &DeviceKeys {
        &self.keys
    }

    /// How names a publisher chose are quoted (one key for the whole partition, so that a
    /// name gets the same tag wherever it is quoted).
    pub fn name_tags(&self) -> &NameTags {
        &self.tags
    }

    /// Restores stored windows (at start).
    pub fn restore(&mut self, windows: &[StoredWindow]) {
        for w in windows {
            self.windows
                .insert(w.device, ReplayWindow::from_parts(w.highest, w.bitmap));
        }
    }

    /// Checks the envelope of a payload. On success with a signature, the device's window
    /// has advanced and its new state is pushed to `changed`.
    pub fn admit<'a>(
        &mut self,
        territory: &Territory,
        payload: &'a [u8],
        transport: Transport<'_>,
        changed: &mut Vec<StoredWindow>,
    ) -> Result<Admitted<'a>, Refused> {
        let sealed = match signed::open(payload) {
            Ok(s) => s,
            Err(SignedError::NotSigned) => {
                return Ok(Admitted {
                    body: Cow::Borrowed(payload),
                    trust: if transport.authenticated && transport.device_hint.is_some() {
                        Trust::BrokerAuthenticated
                    } else {
                        Trust::Unauthenticated
                    },
                    signer: None,
                });
            }
            Err(e @ SignedError::Malformed(_)) => {
                return Err(refuse(RejectReason::Malformed, e.to_string(), None));
            }
        };
        let dev: &str = &sealed.dev;
        if transport.authenticated
            && let Some(hint) = transport.device_hint
            && hint != dev
        {
            let claimed = self
                .tags
                .describe(territory, &DeviceRef::Id(Cow::Borrowed(dev)));
            return Err(refuse(
                RejectReason::TopicMismatch,
                format!("envelope of {claimed} on the topic of {hint}"),
                Some(SecuritySignal::TopicMismatch {
                    topic_device: hint.into(),
                    claimed,
                }),
            ));
        }
        let Some(idx) = territory.device_id(dev) else {
            return Err(refuse(
                RejectReason::UnknownDevice,
                "signed envelope of an unregistered device".to_string(),
                // The name is the envelope's: counted, not passed on.
                Some(SecuritySignal::Unregistered {
                    publisher: transport
                        .device_hint
                        .filter(|_| transport.authenticated)
                        .map(Into::into),
                    names: 1,
                    tags: Vec::new(),
                }),
            ));
        };
        let Some(key) = self.keys.get(dev) else {
            return Err(refuse(
                RejectReason::BadSignature,
                format!("{dev} has no signing key in force"),
                Some(SecuritySignal::BadSignature { device: dev.into() }),
            ));
        };
        if !sealed.verify(key) {
            return Err(refuse(
                RejectReason::BadSignature,
                format!("{dev}: signature does not verify"),
                Some(SecuritySignal::BadSignature { device: dev.into() }),
            ));
        }
        let window = self.windows.entry(idx).or_default();
        if let Err(e) = window.check_and_update(sealed.ctr) {
            return Err(refuse(
                RejectReason::Replay,
                format!("{dev}: {e}"),
                Some(SecuritySignal::Replay {
                    device: dev.into(),
                    counter: e.counter,
                    last: e.highest,
                }),
            ));
        }
        let (highest, bitmap) = window.parts();
        changed.retain(|w| w.device != idx);
        changed.push(StoredWindow {
            device: idx,
            highest,
            bitmap,
        });
        Ok(Admitted {
            body: Cow::Owned(sealed.body),
            trust: Trust::Signed,
            signer: Some(idx),
        })
    }

    /// Checks one validated record against the payload's admission: a signed payload's
    /// records name its signer; an unsigned record's kind must not require signing; on an
    /// authenticated topic, records name the topic's device.
    pub fn check_record(
        &self,
        territory: &Territory,
        device: DeviceIdx,
        admitted: &Admitted<'_>,
        transport: Transport<'_>,
    ) -> Result<(), Refused> {
        let id = &*territory.device(device).id;
        if let Some(signer) = admitted.signer {
            if signer != device {
                let s = &*territory.device(signer).id;
                return Err(refuse(
                    RejectReason::TopicMismatch,
                    format!("envelope of {s} carries a record of {id}"),
                    Some(SecuritySignal::TopicMismatch {
                        topic_device: s.into(),
                        claimed: id.into(),
                    }),
                ));
            }
            return Ok(());
        }
        if transport.authenticated
            && let Some(hint) = transport.device_hint
            && hint != id
        {
            return Err(refuse(
                RejectReason::TopicMismatch,
                format!("record of {id} on the topic of {hint}"),
                Some(SecuritySignal::TopicMismatch {
                    topic_device: hint.into(),
                    claimed: id.into(),
                }),
            ));
        }
        if territory.kind_of(device).signing == Signing::Required {
            return Err(refuse(
                RejectReason::Unsigned,
                format!("{id}: its kind requires signed messages"),
                Some(SecuritySignal::Unsigned { device: id.into() }),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_territory::SourceFile;

    fn sample() -> Territory {
        beffroi_territory::load(&[
            SourceFile::new(
                "territory.toml",
                "[territory]\nid = \"t\"\nname = \"T\"\n\n[[commune]]\nid = \"c1\"\nname = \"C\"\nposition = [5.0, 47.0]\n",
            ),
            SourceFile::new(
                "kinds.toml",
                "[[kind]]\nid = \"level\"\nlabel = \"L\"\n[[kind.field]]\nname = \"level_m\"\ntype = \"number\"\ncategory = \"technical\"\n\n[[kind]]\nid = \"signed\"\nlabel = \"S\"\nsigning = \"required\"\n[[kind.field]]\nname = \"level_m\"\ntype = \"number\"\ncategory = \"technical\"\n",
            ),
            SourceFile::new(
                "sites.geojson",
                r#"{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"id":"s1","name":"S","kind":"school","commune":"c1"},"geometry":{"type":"Point","coordinates":[5.0,47.0]}}
]}"#,
            ),
            SourceFile::new(
                "devices/c1.toml",
                "[[device]]\nid = \"d1\"\nkind = \"level\"\nsite = \"s1\"\n\n[[device]]\nid = \"d2\"\nkind = \"signed\"\nsite = \"s1\"\n",
            ),
        ])
        .expect("territory")
    }

    const KEY: [u8; 32] = [3; 32];

    fn gate(t: &Territory) -> TrustGate {
        let mut g = TrustGate::default();
        let id = t.devices[0].id.to_string();
        g.set_keys(Arc::new(DeviceKeys::new([(id, KEY)])));
        g
    }

    #[test]
    fn signed_then_replayed() {
        let t = sample();
        let mut g = gate(&t);
        let dev = t.devices[0].id.to_string();
        let msg = signed::seal(&dev, 5, &KEY, b"[]");
        let mut changed = Vec::new();
        let a = g
            .admit(&t, &msg, Transport::default(), &mut changed)
            .expect("admitted");
        assert_eq!(a.trust, Trust::Signed);
        assert_eq!(&*a.body, b"[]");
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].highest, 5);
        let r = g
            .admit(&t, &msg, Transport::default(), &mut changed)
            .expect_err("replay");
        assert_eq!(r.rejection.reason, RejectReason::Replay);
        assert_eq!(r.signal.map(|s| s.kind()), Some("replay"));
        // A restored gate remembers.
        let mut g2 = gate(&t);
        g2.restore(&changed);
        let r = g2
            .admit(&t, &msg, Transport::default(), &mut Vec::new())
            .expect_err("replay after restart");
        assert_eq!(r.rejection.reason, RejectReason::Replay);
    }

    #[test]
    fn forged_and_unkeyed() {
        let t = sample();
        let mut g = gate(&t);
        let dev = t.devices[0].id.to_string();
        let forged = signed::seal(&dev, 1, &[9; 32], b"[]");
        let r = g
            .admit(&t, &forged, Transport::default(), &mut Vec::new())
            .expect_err("forged");
        assert_eq!(r.rejection.reason, RejectReason::BadSignature);
        // After revocation (no key), even a genuine envelope is refused.
        g.set_keys(Arc::new(DeviceKeys::default()));
        let genuine = signed::seal(&dev, 2, &KEY, b"[]");
        let r = g
            .admit(&t, &genuine, Transport::default(), &mut Vec::new())
            .expect_err("no key");
        assert_eq!(r.rejection.reason, RejectReason::BadSignature);
    }

    #[test]
    fn unsigned_trust_depends_on_the_transport() {
        let t = sample();
        let mut g = gate(&t);
        let dev = t.devices[0].id.to_string();
        let open = Transport {
            device_hint: Some(&dev),
            authenticated: false,
        };
        let auth = Transport {
            device_hint: Some(&dev),
            authenticated: true,
        };
        let a = g.admit(&t, b"[]", open, &mut Vec::new()).expect("ok");
        assert_eq!(a.trust, Trust::Unauthenticated);
        let a = g.admit(&t, b"[]", auth, &mut Vec::new()).expect("ok");
        assert_eq!(a.trust, Trust::BrokerAuthenticated);
        // On an authenticated topic, another device's record is refused.
        let other = beffroi_core::DeviceIdx(1);
        let r = g.check_record(&t, other, &a, auth).expect_err("mismatch");
        assert_eq!(r.rejection.reason, RejectReason::TopicMismatch);
        let d1 = beffroi_core::DeviceIdx(0);
        assert!(g.check_record(&t, d1, &a, open).is_ok());
        // d2's kind requires signing: unsigned refused whatever the transport.
        let r = g.check_record(&t, other, &a, open).expect_err("unsigned");
        assert_eq!(r.rejection.reason, RejectReason::Unsigned);
    }
}
