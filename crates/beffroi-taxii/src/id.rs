//! STIX identifiers (`object-type--UUID`) and the deterministic ones the crate makes.

use std::fmt;

use serde::{Serialize, Serializer};
use thiserror::Error;
use uuid::Uuid;

/// The namespace of every UUIDv5 the crate derives. Fixed for ever: changing it would
/// give every exported object a new identity.
pub const NAMESPACE: Uuid = Uuid::from_u128(0xb2c2_10ce_972b_4b3a_814f_7b6c_bef1_a1e9);

/// The longest object type STIX allows.
const MAX_TYPE_LEN: usize = 250;

/// A STIX identifier: an object type (3 to 250 characters among `a-z`, `0-9` and `-`),
/// `--`, and an RFC 4122 UUID in its hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StixId(String);

/// Why a text is not a STIX identifier.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("a STIX identifier is `object-type--UUID`; no `--` found")]
    NoSeparator,
    #[error("the object type must be 3 to 250 characters among a-z, 0-9 and '-'")]
    BadType,
    #[error("the part after `--` is not a hyphenated RFC 4122 UUID")]
    BadUuid,
}

impl StixId {
    /// Reads an identifier from untrusted text.
    pub fn parse(text: &str) -> Result<StixId, IdError> {
        let (kind, uuid) = text.split_once("--").ok_or(IdError::NoSeparator)?;
        if !is_object_type(kind) {
            return Err(IdError::BadType);
        }
        let parsed = Uuid::try_parse(uuid).map_err(|_| IdError::BadUuid)?;
        // Only the hyphenated form, and a UUID of the RFC 4122 variant.
        if uuid.len() != 36 || parsed.get_variant() != uuid::Variant::RFC4122 {
            return Err(IdError::BadUuid);
        }
        Ok(StixId(text.to_owned()))
    }

    /// The identifier derived from `key` for an object of `object_type`: the same key
    /// gives the same identifier on every export (UUIDv5 under [`NAMESPACE`]). Each part
    /// of the key is written with its length first, so no two keys run together.
    pub(crate) fn derive(object_type: &'static str, key: &[&str]) -> StixId {
        let mut name = String::from("beffroi-taxii/1");
        for part in std::iter::once(&object_type).chain(key) {
            name.push('\n');
            name.push_str(&part.len().to_string());
            name.push(':');
            name.push_str(part);
        }
        let uuid = Uuid::new_v5(&NAMESPACE, name.as_bytes());
        StixId(format!("{object_type}--{}", uuid.hyphenated()))
    }

    /// A TAXII collection's identifier (a bare UUID, not a STIX id), stable for a key
    /// such as (territory, API root): `derive` under the type `x-taxii-collection`.
    pub fn collection_uuid(key: &[&str]) -> String {
        let id = StixId::derive("x-taxii-collection", key);
        id.0.split_once("--")
            .map_or_else(String::new, |(_, u)| u.to_owned())
    }

    /// A constant identifier the crate knows to be valid (the TLP marking definitions).
    pub(crate) fn known(text: &'static str) -> StixId {
        StixId(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The object type: what comes before `--`.
    pub fn object_type(&self) -> &str {
        self.0.split_once("--").map_or("", |(kind, _)| kind)
    }
}

/// True for a STIX object type: 3 to 250 characters among `a-z`, `0-9` and `-`,
/// without `--` (which would make the identifier ambiguous).
pub fn is_object_type(kind: &str) -> bool {
    (3..=MAX_TYPE_LEN).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !kind.contains("--")
}

impl fmt::Display for StixId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for StixId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_id_is_a_stable_bare_uuid() {
        let a = StixId::collection_uuid(&["town", "partners"]);
        assert_eq!(a, StixId::collection_uuid(&["town", "partners"]));
        assert_ne!(a, StixId::collection_uuid(&["town", "csirt"]));
        assert!(
            Uuid::parse_str(&a).is_ok_and(|u| u.get_version_num() == 5),
            "{a}"
        );
    }

    #[test]
    fn derived_ids_are_stable_version_5_and_keyed() {
        let a = StixId::derive("indicator", &["town", "inc-1", "indicator"]);
        assert_eq!(
            a,
            StixId::derive("indicator", &["town", "inc-1", "indicator"])
        );
        assert_ne!(
            a,
            StixId::derive("indicator", &["town", "inc-2", "indicator"])
        );
        // Length prefixes keep ("ab", "c") apart from ("a", "bc").
        assert_ne!(
            StixId::derive("indicator", &["ab", "c"]),
            StixId::derive("indicator", &["a", "bc"])
        );
        assert_eq!(a.object_type(), "indicator");
        let parsed = StixId::parse(a.as_str());
        assert_eq!(parsed.as_ref(), Ok(&a));
        let uuid = Uuid::try_parse(&a.as_str()["indicator--".len()..]).ok();
        assert_eq!(uuid.map(|u| u.get_version_num()), Some(5));
    }

    #[test]
    fn parse_refuses_what_is_not_an_identifier() {
        let ok = "indicator--252c7c11-daf2-42bd-843b-be65edca9f61";
        assert!(StixId::parse(ok).is_ok());
        assert_eq!(
            StixId::parse("indicator-252c7c11"),
            Err(IdError::NoSeparator)
        );
        assert_eq!(
            StixId::parse("IN--252c7c11-daf2-42bd-843b-be65edca9f61"),
            Err(IdError::BadType)
        );
        assert_eq!(
            StixId::parse("indicator--252c7c11daf242bd843bbe65edca9f61"),
            Err(IdError::BadUuid)
        );
        assert_eq!(
            StixId::parse("indicator--{252c7c11-daf2-42bd-843b-be65edca9f61}"),
            Err(IdError::BadUuid)
        );
        assert_eq!(
            StixId::parse("x--252c7c11-daf2-42bd-843b-be65edca9f61"),
            Err(IdError::BadType)
        );
    }
}
