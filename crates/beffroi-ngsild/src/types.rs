//! `GET /ngsi-ld/v1/types` (ETSI GS CIM 009, clause 5.7.5 and 5.2.24–5.2.26): the entity
//! types present among the entities a tenant holds.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::context::{attribute_iri, type_iri};
use crate::entity::Entity;

/// The `EntityTypeList`: `{"id": "urn:ngsi-ld:EntityTypeList:<hash>", "type":
/// "EntityTypeList", "typeList": [names…]}`. The identifier is a hash of the names, so
/// the same types give the same list.
pub fn entity_type_list(entities: &[Entity]) -> Value {
    let names: BTreeSet<&str> = entities.iter().map(|e| e.entity_type.as_str()).collect();
    let id = format!(
        "urn:ngsi-ld:EntityTypeList:{:016x}",
        fnv1a(names.iter().copied())
    );
    json!({ "id": id, "type": "EntityTypeList", "typeList": names })
}

/// The `details=true` form: one `EntityType` per type, `{"id": <type IRI>, "type":
/// "EntityType", "typeName": …, "attributeNames": […]}`.
pub fn entity_type_details(entities: &[Entity]) -> Value {
    let mut by_type: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in entities {
        by_type
            .entry(e.entity_type.as_str())
            .or_default()
            .extend(e.attributes.keys().map(String::as_str));
    }
    Value::Array(
        by_type
            .into_iter()
            .map(|(name, attrs)| {
                json!({
                    "id": type_id(name),
                    "type": "EntityType",
                    "typeName": name,
                    "attributeNames": attrs,
                })
            })
            .collect(),
    )
}

/// `GET /types/{type}`: the `EntityTypeInfo` of one type, or `None` when no entity has
/// it (answer `ResourceNotFound`). `type_name` may be the short name or the type IRI.
pub fn entity_type_info(entities: &[Entity], type_name: &str) -> Option<Value> {
    let of_type: Vec<&Entity> = entities
        .iter()
        .filter(|e| {
            e.entity_type == type_name
                || type_iri(&e.entity_type).is_some_and(|iri| iri == type_name)
        })
        .collect();
    let name = of_type.first()?.entity_type.as_str();
    let mut attributes: BTreeMap<&str, BTreeSet<&'static str>> = BTreeMap::new();
    for e in &of_type {
        for (attr, a) in &e.attributes {
            attributes
                .entry(attr.as_str())
                .or_default()
                .insert(a.type_name());
        }
    }
    let details: Vec<Value> = attributes
        .into_iter()
        .map(|(attr, kinds)| {
            json!({
                "id": attribute_iri(name, attr),
                "type": "Attribute",
                "attributeName": attr,
                "attributeTypes": kinds,
            })
        })
        .collect();
    Some(json!({
        "id": type_id(name),
        "type": "EntityTypeInfo",
        "typeName": name,
        "entityCount": of_type.len(),
        "attributeDetails": details,
    }))
}

fn type_id(name: &str) -> String {
    type_iri(name).unwrap_or_else(|| format!("https://uri.etsi.org/ngsi-ld/default-context/{name}"))
}

/// FNV-1a, 64 bits, over the names separated by a zero byte.
fn fnv1a<'a>(names: impl Iterator<Item = &'a str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for name in names {
        for b in name.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{Attribute, Value as V};

    fn sample() -> Vec<Entity> {
        vec![
            Entity::new("urn:ngsi-ld:Device:t:1", "Device")
                .with("deviceState", Attribute::property(V::Text("ok".into()))),
            Entity::new("urn:ngsi-ld:Device:t:2", "Device")
                .with("batteryLevel", Attribute::property(V::Number(0.5))),
            Entity::new("urn:ngsi-ld:Alert:t:1", "Alert")
                .with("severity", Attribute::property(V::Text("low".into()))),
        ]
    }

    #[test]
    fn list_and_details() {
        let list = entity_type_list(&sample());
        assert_eq!(list["type"], "EntityTypeList");
        assert_eq!(list["typeList"], json!(["Alert", "Device"]));
        assert!(
            list["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("urn:ngsi-ld:EntityTypeList:"))
        );
        assert_eq!(list, entity_type_list(&sample()), "stable identifier");
        let details = entity_type_details(&sample());
        assert_eq!(
            details[1]["id"],
            "https://smartdatamodels.org/dataModel.Device/Device"
        );
        assert_eq!(
            details[1]["attributeNames"],
            json!(["batteryLevel", "deviceState"])
        );
    }

    #[test]
    fn info() {
        let info = entity_type_info(&sample(), "Device").expect("present");
        assert_eq!(info["entityCount"], 2);
        assert_eq!(
            info["attributeDetails"][0]["id"],
            "https://smartdatamodels.org/dataModel.Device/batteryLevel"
        );
        assert!(entity_type_info(&sample(), "Building").is_none());
    }
}
