//! The STIX 2.1 objects the crate writes. Each type serializes to the JSON the
//! specification defines (properties in the specification's names, optional ones left
//! out when empty); they are output only: what comes from partners is read by
//! [`crate::pull`] into its own types.

use serde::{Serialize, Serializer};

use crate::id::StixId;
use crate::time::StixTime;

/// The STIX version every object declares.
pub const SPEC_VERSION: &str = "2.1";

/// The kill chain of MITRE ATT&CK for ICS, as MITRE's own STIX data names it.
pub const ATTACK_ICS_KILL_CHAIN: &str = "mitre-ics-attack";

/// The `source_name` of an external reference to an ATT&CK technique, as MITRE's current
/// STIX data writes it for every domain, ICS included (the older ICS data used
/// `mitre-ics-attack`).
pub const ATTACK_SOURCE_NAME: &str = "mitre-attack";

/// `"2.1"`, written as the `spec_version` of every object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecVersion;

impl Serialize for SpecVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(SPEC_VERSION)
    }
}

/// Traffic Light Protocol 1.0, as the four marking definitions STIX 2.1 predefines
/// (section 7.2.1.4). Ordered from the least to the most restrictive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tlp {
    White,
    Green,
    Amber,
    Red,
}

impl Tlp {
    pub const ALL: [Tlp; 4] = [Tlp::White, Tlp::Green, Tlp::Amber, Tlp::Red];

    /// The identifier STIX 2.1 fixes for this marking definition.
    pub const fn marking_id(self) -> &'static str {
        match self {
            Tlp::White => "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
            Tlp::Green => "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
            Tlp::Amber => "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
            Tlp::Red => "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        }
    }

    /// The colour as the marking's `definition.tlp` spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tlp::White => "white",
            Tlp::Green => "green",
            Tlp::Amber => "amber",
            Tlp::Red => "red",
        }
    }

    /// The TLP 1.0 level of a marking-definition identifier, if it is one of the four.
    pub fn from_marking_id(id: &str) -> Option<Tlp> {
        Tlp::ALL.into_iter().find(|t| t.marking_id() == id)
    }

    /// The marking-definition object, exactly as the specification defines it.
    pub fn marking_definition(self) -> MarkingDefinition {
        MarkingDefinition {
            spec_version: SpecVersion,
            id: StixId::known(self.marking_id()),
            // 2017-01-20T00:00:00.000Z, the `created` of the four predefined markings.
            created: TLP_CREATED,
            definition_type: "tlp",
            name: match self {
                Tlp::White => "TLP:WHITE",
                Tlp::Green => "TLP:GREEN",
                Tlp::Amber => "TLP:AMBER",
                Tlp::Red => "TLP:RED",
            },
            definition: TlpDefinition { tlp: self.as_str() },
        }
    }
}

const TLP_CREATED: StixTime = match StixTime::from_millis(1_484_870_400_000) {
    Some(t) => t,
    None => panic!("2017-01-20 is a STIX time"),
};

/// A `marking-definition` of type `tlp` (no creator, never versioned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MarkingDefinition {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub created: StixTime,
    pub definition_type: &'static str,
    pub name: &'static str,
    pub definition: TlpDefinition,
}

/// The `definition` of a TLP marking: `{"tlp": "green"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlpDefinition {
    pub tlp: &'static str,
}

/// `identity_class` of an identity; the crate only speaks for organisations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityClass {
    Organization,
}

/// The producer of everything exported: the territory, as an organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub created: StixTime,
    pub modified: StixTime,
    pub name: String,
    pub identity_class: IdentityClass,
}

/// A phase of a kill chain (`kill-chain-phase`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KillChainPhase {
    pub kill_chain_name: String,
    pub phase_name: String,
}

/// An `external-reference`: here, to an ATT&CK technique.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalReference {
    pub source_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A value of the open vocabulary `indicator-type-ov`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndicatorType {
    AnomalousActivity,
    MaliciousActivity,
}

/// `pattern_type`: the crate writes STIX patterns only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternType {
    Stix,
}

/// An `indicator` whose pattern lists network addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Indicator {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub created_by_ref: StixId,
    pub created: StixTime,
    pub modified: StixTime,
    pub name: String,
    pub description: String,
    pub indicator_types: Vec<IndicatorType>,
    pub pattern: String,
    pub pattern_type: PatternType,
    pub pattern_version: SpecVersion,
    pub valid_from: StixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<StixTime>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kill_chain_phases: Vec<KillChainPhase>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub object_marking_refs: Vec<StixId>,
}

/// An `attack-pattern`: an ATT&CK for ICS technique, or a kind of anomaly of the
/// platform's own when no technique is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttackPattern {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub created_by_ref: StixId,
    pub created: StixTime,
    pub modified: StixTime,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kill_chain_phases: Vec<KillChainPhase>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
}

/// A `sighting`: the territory saw what `sighting_of_ref` describes, `count` times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sighting {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub created_by_ref: StixId,
    pub created: StixTime,
    pub modified: StixTime,
    pub first_seen: StixTime,
    pub last_seen: StixTime,
    pub count: u32,
    pub sighting_of_ref: StixId,
    pub where_sighted_refs: Vec<StixId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub object_marking_refs: Vec<StixId>,
}

/// A `relationship`; the crate writes `indicates` from an indicator to an attack pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Relationship {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub created_by_ref: StixId,
    pub created: StixTime,
    pub modified: StixTime,
    pub relationship_type: &'static str,
    pub source_ref: StixId,
    pub target_ref: StixId,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub object_marking_refs: Vec<StixId>,
}

/// Any object the crate writes, serialized with its `type` first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum StixObject {
    Identity(Identity),
    MarkingDefinition(MarkingDefinition),
    AttackPattern(AttackPattern),
    Indicator(Indicator),
    Sighting(Sighting),
    Relationship(Relationship),
}

impl StixObject {
    pub fn id(&self) -> &StixId {
        match self {
            StixObject::Identity(o) => &o.id,
            StixObject::MarkingDefinition(o) => &o.id,
            StixObject::AttackPattern(o) => &o.id,
            StixObject::Indicator(o) => &o.id,
            StixObject::Sighting(o) => &o.id,
            StixObject::Relationship(o) => &o.id,
        }
    }

    /// The `type` property.
    pub fn object_type(&self) -> &'static str {
        match self {
            StixObject::Identity(_) => "identity",
            StixObject::MarkingDefinition(_) => "marking-definition",
            StixObject::AttackPattern(_) => "attack-pattern",
            StixObject::Indicator(_) => "indicator",
            StixObject::Sighting(_) => "sighting",
            StixObject::Relationship(_) => "relationship",
        }
    }

    /// The TAXII version of the object: `modified`, or `created` for an object that is
    /// never versioned (a marking definition).
    pub fn version(&self) -> StixTime {
        match self {
            StixObject::Identity(o) => o.modified,
            StixObject::MarkingDefinition(o) => o.created,
            StixObject::AttackPattern(o) => o.modified,
            StixObject::Indicator(o) => o.modified,
            StixObject::Sighting(o) => o.modified,
            StixObject::Relationship(o) => o.modified,
        }
    }

    /// The object as a JSON value (what a store keeps and an envelope carries).
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing these types cannot fail: every key is a string and every time is
        // in range by construction.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A STIX `bundle`: a file's wrapper for objects (TAXII uses its envelope instead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "bundle")]
pub struct Bundle {
    pub id: StixId,
    pub objects: Vec<StixObject>,
}

impl Bundle {
    /// A bundle whose identifier is derived from `key` (bundles are not versioned; a key
    /// naming the export, e.g. the territory and the export time, keeps them distinct).
    pub fn new(key: &[&str], objects: Vec<StixObject>) -> Bundle {
        Bundle {
            id: StixId::derive("bundle", key),
            objects,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlp_markings_are_the_predefined_objects() {
        let green = serde_json::to_string(&StixObject::MarkingDefinition(
            Tlp::Green.marking_definition(),
        ))
        .unwrap_or_default();
        assert_eq!(
            green,
            r#"{"type":"marking-definition","spec_version":"2.1","id":"marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da","created":"2017-01-20T00:00:00.000Z","definition_type":"tlp","name":"TLP:GREEN","definition":{"tlp":"green"}}"#
        );
        for tlp in Tlp::ALL {
            assert_eq!(Tlp::from_marking_id(tlp.marking_id()), Some(tlp));
            assert!(crate::id::StixId::parse(tlp.marking_id()).is_ok());
        }
        assert!(Tlp::White < Tlp::Red);
    }
}
