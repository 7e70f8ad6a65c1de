//! The NGSI-LD entity: an identifier (a URI), a type and attributes (Properties,
//! GeoProperties, Relationships), written in the normalized or the key-values
//! (simplified) representation.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use crate::geo::Geometry;
use crate::time::Timestamp;

/// A Property's value. Numbers are finite (the constructors of [`crate::models`] check);
/// a non-finite number would be written as `null`.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Number(f64),
    Bool(bool),
    /// Written `{"@type": "DateTime", "@value": "…"}`, as NGSI-LD types a date-time.
    DateTime(Timestamp),
    TextList(Vec<String>),
    /// A structured value (an address), members in key order.
    Object(BTreeMap<String, Value>),
}

impl Value {
    pub fn to_json(&self) -> Json {
        match self {
            Value::Text(s) => Json::String(s.clone()),
            Value::Integer(i) => json!(i),
            Value::Number(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            Value::Bool(b) => Json::Bool(*b),
            Value::DateTime(t) => t.json_ld_value(),
            Value::TextList(items) => json!(items),
            Value::Object(members) => Json::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// An attribute of an entity.
#[derive(Clone, Debug, PartialEq)]
pub enum Attribute {
    Property {
        value: Value,
        /// When the value was observed (the `observedAt` sub-attribute).
        observed_at: Option<Timestamp>,
        /// UN/CEFACT common code of the unit (`MTR` for metres).
        unit_code: Option<&'static str>,
    },
    GeoProperty {
        value: Geometry,
        observed_at: Option<Timestamp>,
    },
    Relationship {
        /// The URI of the entity pointed at.
        object: String,
        observed_at: Option<Timestamp>,
    },
}

impl Attribute {
    /// A Property with no sub-attribute.
    pub fn property(value: Value) -> Attribute {
        Attribute::Property {
            value,
            observed_at: None,
            unit_code: None,
        }
    }

    /// A Property observed at a time, in a unit.
    pub fn measure(value: Value, observed_at: Timestamp, unit_code: &'static str) -> Attribute {
        Attribute::Property {
            value,
            observed_at: Some(observed_at),
            unit_code: Some(unit_code),
        }
    }

    pub fn geo(value: Geometry) -> Attribute {
        Attribute::GeoProperty {
            value,
            observed_at: None,
        }
    }

    pub fn relationship(object: impl Into<String>) -> Attribute {
        Attribute::Relationship {
            object: object.into(),
            observed_at: None,
        }
    }

    /// `Property`, `GeoProperty` or `Relationship`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Attribute::Property { .. } => "Property",
            Attribute::GeoProperty { .. } => "GeoProperty",
            Attribute::Relationship { .. } => "Relationship",
        }
    }

    pub fn observed_at(&self) -> Option<Timestamp> {
        match self {
            Attribute::Property { observed_at, .. }
            | Attribute::GeoProperty { observed_at, .. }
            | Attribute::Relationship { observed_at, .. } => *observed_at,
        }
    }

    /// The normalized form: `{"type": "Property", "value": …, "observedAt": …}`.
    pub fn normalized(&self) -> Json {
        let mut out = Map::new();
        out.insert("type".into(), Json::String(self.type_name().into()));
        match self {
            Attribute::Property {
                value, unit_code, ..
            } => {
                out.insert("value".into(), value.to_json());
                if let Some(code) = unit_code {
                    out.insert("unitCode".into(), Json::String((*code).into()));
                }
            }
            Attribute::GeoProperty { value, .. } => {
                out.insert("value".into(), value.to_json());
            }
            Attribute::Relationship { object, .. } => {
                out.insert("object".into(), Json::String(object.clone()));
            }
        }
        if let Some(at) = self.observed_at() {
            out.insert("observedAt".into(), Json::String(at.to_string()));
        }
        Json::Object(out)
    }

    /// The key-values form: the value, the geometry, or the object's URI.
    pub fn key_value(&self) -> Json {
        match self {
            Attribute::Property { value, .. } => value.to_json(),
            Attribute::GeoProperty { value, .. } => value.to_json(),
            Attribute::Relationship { object, .. } => Json::String(object.clone()),
        }
    }
}

/// How entities are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Representation {
    /// Every attribute an object with its `type` (the default).
    #[default]
    Normalized,
    /// Attributes reduced to their values (`options=keyValues`, `format=simplified`).
    KeyValues,
}

impl Representation {
    /// The name a subscription's `notification.format` uses.
    pub fn name(self) -> &'static str {
        match self {
            Representation::Normalized => "normalized",
            Representation::KeyValues => "keyValues",
        }
    }
}

/// An NGSI-LD entity. Attribute names are the short terms of the served `@context`
/// ([`crate::context`]); `id` and `type` are kept apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// A URI, `urn:ngsi-ld:<Type>:<…>` for what this crate builds.
    pub id: String,
    pub entity_type: String,
    pub attributes: BTreeMap<String, Attribute>,
}

impl Entity {
    pub fn new(id: impl Into<String>, entity_type: impl Into<String>) -> Entity {
        Entity {
            id: id.into(),
            entity_type: entity_type.into(),
            attributes: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) an attribute; builder style.
    pub fn with(mut self, name: &str, attribute: Attribute) -> Entity {
        self.attributes.insert(name.to_owned(), attribute);
        self
    }

    /// Adds an attribute when there is one.
    pub fn with_opt(self, name: &str, attribute: Option<Attribute>) -> Entity {
        match attribute {
            Some(a) => self.with(name, a),
            None => self,
        }
    }

    /// The entity as JSON in a representation, keeping only the attributes `attrs`
    /// names when it is given (`id` and `type` are always written).
    pub fn to_json(&self, representation: Representation, attrs: Option<&[String]>) -> Json {
        let mut out = Map::new();
        out.insert("id".into(), Json::String(self.id.clone()));
        out.insert("type".into(), Json::String(self.entity_type.clone()));
        for (name, attribute) in &self.attributes {
            if attrs.is_some_and(|keep| !keep.iter().any(|k| k == name)) {
                continue;
            }
            let written = match representation {
                Representation::Normalized => attribute.normalized(),
                Representation::KeyValues => attribute.key_value(),
            };
            out.insert(name.clone(), written);
        }
        Json::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Position;

    fn sample() -> Entity {
        let at = Timestamp::from_millis(1_767_225_600_000).expect("in range");
        let point = Position::new(2.35, 48.85).expect("valid");
        Entity::new("urn:ngsi-ld:WaterObserved:t:g1", "WaterObserved")
            .with(
                "waterLevel",
                Attribute::measure(Value::Number(1.25), at, "MTR"),
            )
            .with("location", Attribute::geo(Geometry::Point(point)))
            .with(
                "refDevice",
                Attribute::relationship("urn:ngsi-ld:Device:t:g1"),
            )
    }

    #[test]
    fn normalized_form() {
        assert_eq!(
            sample().to_json(Representation::Normalized, None),
            json!({
                "id": "urn:ngsi-ld:WaterObserved:t:g1",
                "type": "WaterObserved",
                "waterLevel": {"type": "Property", "value": 1.25, "unitCode": "MTR", "observedAt": "2026-01-01T00:00:00.000Z"},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.35, 48.85]}},
                "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:t:g1"},
            })
        );
    }

    #[test]
    fn key_values_and_projection() {
        let attrs = vec!["refDevice".to_owned()];
        assert_eq!(
            sample().to_json(Representation::KeyValues, Some(&attrs)),
            json!({
                "id": "urn:ngsi-ld:WaterObserved:t:g1",
                "type": "WaterObserved",
                "refDevice": "urn:ngsi-ld:Device:t:g1",
            })
        );
    }
}
