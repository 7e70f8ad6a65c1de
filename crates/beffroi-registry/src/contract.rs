//! The contract of a registry backend, written once as functions of a backend: each takes
//! an empty registry (and, where it matters, a second handle on the same registry, as the
//! server holds one beside `beffroi devices`) and panics on a breach. The SQLite adapter's
//! tests call them; another backend's tests call them too (feature `contract`).

use crate::secrets::{argon2_verify, mosquitto_verify};
use crate::{CredentialReads, CredentialStore, DeviceId, RegistryError, Status};

fn id(s: &str) -> DeviceId {
    DeviceId::parse(s).expect("a valid device id")
}

/// Issue, a second issue refused, rotate, revoke, a second revocation refused, list, and a
/// new issue after a revocation.
pub fn issue_rotate_revoke(store: &mut dyn CredentialStore) {
    let (gauge, cam) = (id("gauge-1"), id("cam-2"));
    let a = crate::issue(store, &gauge, 100).expect("issue");
    assert_eq!(a.generation, 1);
    assert!(matches!(
        crate::issue(store, &gauge, 101),
        Err(RegistryError::AlreadyIssued(_))
    ));
    let b = crate::rotate(store, &gauge, 102).expect("rotate");
    assert_eq!(b.generation, 2);
    assert_ne!(a.key, b.key);
    assert_ne!(a.password, b.password);
    crate::issue(store, &cam, 103).expect("issue");
    store.revoke(&cam, 104).expect("revoke");
    assert!(matches!(
        store.revoke(&cam, 105),
        Err(RegistryError::NothingToRevoke(_))
    ));
    assert!(matches!(
        crate::rotate(store, &cam, 105),
        Err(RegistryError::NothingToRotate(_))
    ));
    let unknown = id("nobody");
    assert!(matches!(
        crate::rotate(store, &unknown, 105),
        Err(RegistryError::NothingToRotate(_))
    ));
    assert!(matches!(
        store.revoke(&unknown, 105),
        Err(RegistryError::NothingToRevoke(_))
    ));
    let list = store.list().expect("list");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        (
            list[0].device.as_str(),
            list[0].generation,
            list[0].status,
            list[0].issued_at,
            list[0].revoked_at
        ),
        ("cam-2", 1, Status::Revoked, 103, Some(104))
    );
    assert_eq!(
        (
            list[1].device.as_str(),
            list[1].generation,
            list[1].status,
            list[1].issued_at,
            list[1].revoked_at
        ),
        ("gauge-1", 2, Status::Issued, 102, None)
    );
    let again = crate::issue(store, &cam, 106).expect("issue after revocation");
    assert_eq!(again.generation, 2);
    assert_eq!(store.list().expect("list")[0].status, Status::Issued);
}

/// A rotated or revoked credential is no longer in force: its password matches neither
/// hash in force, its key is not among the signing keys.
pub fn superseded_credentials_are_refused(store: &mut dyn CredentialStore) {
    let gauge = id("gauge-1");
    let old = crate::issue(store, &gauge, 100).expect("issue");
    let new = crate::rotate(store, &gauge, 101).expect("rotate");
    let active = store.active().expect("active");
    assert_eq!(active.len(), 1, "{active:?}");
    let c = &active[0];
    assert_eq!((c.device.as_str(), c.generation), ("gauge-1", 2));
    assert!(mosquitto_verify(&new.password, &c.broker_hash));
    assert!(argon2_verify(&new.password, &c.password_hash));
    assert!(!mosquitto_verify(&old.password, &c.broker_hash));
    assert!(!argon2_verify(&old.password, &c.password_hash));
    assert_eq!(c.signing_key, new.key);
    let keys = store.signing_keys().expect("keys");
    assert!(!keys.values().any(|k| *k == old.key));
    store.revoke(&gauge, 102).expect("revoke");
    assert!(store.active().expect("active").is_empty());
    assert!(store.signing_keys().expect("keys").is_empty());
    assert_eq!(
        store.list().expect("list")[0].revoked_at,
        Some(102),
        "the revocation time"
    );
}

/// The revision grows with every change, as seen by the handle that made it and by
/// `observer` (another handle on the same registry), and does not move on a read or on a
/// refused change.
pub fn revision_grows_with_each_change_only(
    store: &mut dyn CredentialStore,
    observer: &dyn CredentialReads,
) {
    let seen = |store: &dyn CredentialStore| {
        let r = store.revision().expect("revision");
        assert_eq!(
            observer.revision().expect("revision"),
            r,
            "both handles agree"
        );
        r
    };
    let gauge = id("gauge-1");
    let mut last = seen(store);
    let mut grew = |store: &dyn CredentialStore, what: &str| {
        let now = seen(store);
        assert!(now > last, "{what}: {now} after {last}");
        last = now;
    };
    crate::issue(store, &gauge, 100).expect("issue");
    grew(store, "issue");
    let unchanged = |store: &dyn CredentialStore, r: u64, what: &str| {
        assert_eq!(seen(store), r, "{what} moved the revision");
    };
    let r = seen(store);
    store.list().expect("list");
    store.active().expect("active");
    store.signing_keys().expect("keys");
    observer.signing_keys().expect("keys");
    unchanged(store, r, "reads");
    assert!(crate::issue(store, &gauge, 101).is_err());
    unchanged(store, r, "a refused issue");
    crate::rotate(store, &gauge, 102).expect("rotate");
    grew(store, "rotate");
    let r = seen(store);
    assert!(crate::rotate(store, &id("nobody"), 103).is_err());
    unchanged(store, r, "a refused rotation");
    store.revoke(&gauge, 104).expect("revoke");
    grew(store, "revoke");
    let r = seen(store);
    assert!(store.revoke(&gauge, 105).is_err());
    unchanged(store, r, "a refused revocation");
    crate::issue(store, &gauge, 106).expect("issue after revocation");
    grew(store, "issue after revocation");
}

/// The signing keys and active credentials are those of the devices with a credential in
/// force, at their latest generation, as `observer` sees them too.
pub fn keys_of_active_devices_only(
    store: &mut dyn CredentialStore,
    observer: &dyn CredentialReads,
) {
    let (a, b, c) = (id("a"), id("b"), id("c"));
    let ka = crate::issue(store, &a, 100).expect("issue").key;
    crate::issue(store, &b, 100).expect("issue");
    crate::issue(store, &c, 100).expect("issue");
    let kb = crate::rotate(store, &b, 101).expect("rotate").key;
    store.revoke(&c, 102).expect("revoke");
    check_keys(&*store, &ka, &kb);
    check_keys(observer, &ka, &kb);
}

/// Generic rather than `&dyn CredentialReads`: no trait upcasting (Rust 1.86) under MSRV 1.85.
fn check_keys<R: CredentialReads + ?Sized>(reads: &R, ka: &[u8; 32], kb: &[u8; 32]) {
    let keys = reads.signing_keys().expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.get("a"), Some(ka));
    assert_eq!(keys.get("b"), Some(kb));
    let active: Vec<(String, i64)> = reads
        .active()
        .expect("active")
        .into_iter()
        .map(|c| (c.device, c.generation))
        .collect();
    assert_eq!(active, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
}
