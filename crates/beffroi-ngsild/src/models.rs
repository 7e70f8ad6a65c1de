//! The crate's own input model, and the FIWARE Smart Data Models entities built from it.
//!
//! | Input | Entity type (repository) | Identifier |
//! |---|---|---|
//! | [`DeviceFacts`] | `Device` (dataModel.Device) | `urn:ngsi-ld:Device:<territory>:<device>` |
//! | [`SiteFacts`] | `Building` (dataModel.Building) | `urn:ngsi-ld:Building:<territory>:<site>` |
//! | [`GaugeReading`] | `WaterObserved` (dataModel.Environment) | `urn:ngsi-ld:WaterObserved:<territory>:<device>` |
//! | [`CrowdCount`] | `CrowdFlowObserved` (dataModel.Transportation) | `urn:ngsi-ld:CrowdFlowObserved:<territory>:<device>` |
//! | [`IncidentFacts`] | `Alert` (dataModel.Alert) | `urn:ngsi-ld:Alert:<territory>:<incident>` |
//!
//! An observation entity has one identifier per device: it holds the latest reading,
//! replaced at each new one (history is not NGSI-LD's entity API's business here).
//!
//! **No free text.** Every field is a code from a narrow alphabet ([`Code`]), a value
//! from a Smart Data Models enumeration, a number, a position or a time. There is no
//! field for a name, a description, an address line, a person, an operator's note or an
//! incident's title: what could carry personal data has no way in. An incident is
//! described by its rule's code and the model's category and sub-category.
//!
//! Each input names its commune ([`Facts::commune`]); the HTTP layer keeps entities
//! per commune and serves each commune as an NGSI-LD tenant (`NGSILD-Tenant`). The
//! commune is not an attribute of the entity.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::entity::{Attribute, Entity, Value};
use crate::geo::{Geometry, Position};
use crate::time::Timestamp;

/// Why an input could not be written as an entity.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error("{field}: {value:?} is not a code (1 to 64 of A-Z a-z 0-9 _ . -)")]
    InvalidCode { field: &'static str, value: String },
    #[error("{field}: {value:?} is not in the Smart Data Models enumeration")]
    NotInModel { field: &'static str, value: String },
    #[error("{field}: {reason}")]
    OutOfRange {
        field: &'static str,
        reason: &'static str,
    },
}

/// An identifier or code: 1 to 64 characters among `A-Z a-z 0-9 _ . -`. Territory,
/// commune (INSEE code or the territory's commune id), device, site, incident and rule
/// identifiers are codes; they go into URNs unescaped.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code(String);

impl Code {
    pub fn new(text: &str) -> Result<Code, BuildError> {
        Code::named(text, "code")
    }

    fn named(text: &str, field: &'static str) -> Result<Code, BuildError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Code(text.to_owned()))
        } else {
            Err(BuildError::InvalidCode {
                field,
                value: text.chars().take(80).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn urn(entity_type: &str, territory: &Code, local: &Code) -> String {
    format!("urn:ngsi-ld:{entity_type}:{}:{}", territory.0, local.0)
}

/// The URN of a territory's device entity.
pub fn device_urn(territory: &Code, device: &Code) -> String {
    urn("Device", territory, device)
}

/// The URN of a territory's site entity (a `Building`).
pub fn site_urn(territory: &Code, site: &Code) -> String {
    urn("Building", territory, site)
}

/// A value taken from a Smart Data Models enumeration, checked against it.
macro_rules! model_enum {
    ($(#[$doc:meta])* $name:ident, $list:ident, $field:literal, [$($v:literal),* $(,)?]) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(&'static str);

        /// The values the model's schema enumerates.
        pub const $list: &[&str] = &[$($v),*];

        impl $name {
            pub fn new(text: &str) -> Result<$name, BuildError> {
                $list
                    .iter()
                    .find(|v| **v == text)
                    .map(|v| $name(v))
                    .ok_or_else(|| BuildError::NotInModel { field: $field, value: text.chars().take(80).collect() })
            }

            pub fn as_str(&self) -> &'static str {
                self.0
            }
        }
    };
}

model_enum!(
    /// What a device senses or controls (Device's `controlledProperty`).
    ControlledProperty,
    CONTROLLED_PROPERTIES,
    "controlledProperty",
    [
        "airPollution", "atmosphericPressure", "averageVelocity", "batteryLife", "batterySupply", "cdom",
        "conductance", "conductivity", "depth", "eatingActivity", "electricityConsumption", "energy",
        "fillingLevel", "freeChlorine", "gasConsumption", "gateOpening", "heading", "humidity", "light",
        "location", "milking", "motion", "movementActivity", "noiseLevel", "occupancy", "orp", "pH", "power",
        "precipitation", "pressure", "refractiveIndex", "salinity", "smoke", "soilMoisture", "solarRadiation",
        "speed", "tds", "temperature", "trafficFlow", "tss", "turbidity", "uvLampIntensity", "uvOrganicLoad",
        "waterConsumption", "waterFlow", "waterLevel", "waterPollution", "weatherConditions", "weight",
        "windDirection", "windSpeed",
    ]
);

model_enum!(
    /// A device's kind (Device's `deviceCategory`; the older `category` is deprecated).
    DeviceCategory,
    DEVICE_CATEGORIES,
    "deviceCategory",
    ["actuator", "beacon", "endgun", "HVAC", "implement", "irrSection", "irrSystem", "meter", "multimedia", "network", "sensor"]
);

model_enum!(
    /// A building's use (Building's `category`).
    BuildingCategory,
    BUILDING_CATEGORIES,
    "category",
    [
        "apartments", "bakehouse", "barn", "bridge", "bungalow", "bunker", "cathedral", "cabin", "carport",
        "cemetery", "chapel", "church", "civic", "commercial", "conservatory", "construction", "cowshed",
        "detached", "digester", "dormitory", "farm", "farm_auxiliary", "garage", "garages", "garbage_shed",
        "grandstand", "greenhouse", "hangar", "hospital", "hotel", "house", "houseboat", "hut", "industrial",
        "kindergarten", "kiosk", "mosque", "office", "parking", "pavilion", "public", "residential", "retail",
        "riding_hall", "roof", "ruins", "school", "service", "shed", "shrine", "stable", "stadium",
        "static_caravan", "sty", "synagogue", "temple", "terrace", "train_station", "transformer_tower",
        "transportation", "university", "warehouse", "water_tower",
    ]
);

model_enum!(
    /// An alert's category (Alert's `category`).
    AlertCategory,
    ALERT_CATEGORIES,
    "category",
    ["traffic", "naturalDisaster", "weather", "environment", "health", "security", "agriculture"]
);

model_enum!(
    /// An alert's sub-category (Alert's `subCategory`).
    AlertSubCategory,
    ALERT_SUB_CATEGORIES,
    "subCategory",
    [
        "airPollution", "assault", "asthmaAttack", "avalancheRisk", "bacteria", "badSeaState", "bikerOnRoad",
        "buildingFire", "bumpedPatient", "carAccident", "carStopped", "carWrongDirection", "coastalEvent",
        "civilDisorder", "coldWave", "crowdRisk", "earthquake", "fallenPatient", "fertilisation", "fireRisk",
        "flood", "floodRisk", "fog", "forestFire", "fungus", "hazardOnRoad", "heartAttack", "heatWave",
        "highAtmosphericPressure", "highHumidity", "highTemperature", "hurricane", "ice", "injuredBiker",
        "insect", "irrigation", "lowAtmosphericPressure", "lowHumidity", "lowTemperature", "microbe", "mite",
        "nematodes", "noxiousWeed", "pedestrianOnRoad", "pollenConcentration", "pothole", "rainfall",
        "roadClosed", "roadWorks", "robbery", "rodent", "snail", "snow", "snow/ice", "suspiciousAction",
        "thunderstorms", "tornado", "trafficJam", "tramApproaching", "tropicalCyclone", "tsunami", "virus",
        "waterPollution", "wind",
    ]
);

/// An alert's severity (Alert's `severity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A device's operational state (Device's `deviceState`, which the model leaves to the
/// vendor: these are Beffroi's values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Reporting as expected.
    Ok,
    /// Expected to report and silent past its heartbeat.
    Silent,
    /// Its data are set aside by the sentinel.
    Quarantined,
    /// Declared under maintenance.
    Maintenance,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Ok => "ok",
            DeviceState::Silent => "silent",
            DeviceState::Quarantined => "quarantined",
            DeviceState::Maintenance => "maintenance",
        }
    }
}

/// An input that becomes an entity of one commune.
pub trait Facts {
    /// The commune whose tenant the entity belongs to.
    fn commune(&self) -> &Code;
    /// The entity, or why the input cannot be written.
    fn entity(&self) -> Result<Entity, BuildError>;
}

/// A device of the territory.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceFacts {
    pub territory: Code,
    pub commune: Code,
    pub device: Code,
    pub category: DeviceCategory,
    /// At least one (the model requires `controlledProperty`).
    pub controlled_properties: Vec<ControlledProperty>,
    pub state: DeviceState,
    /// The site it watches: `controlledAsset`, a Relationship to the site's Building.
    pub site: Option<Code>,
    pub position: Option<Position>,
    pub last_value_reported: Option<Timestamp>,
    /// From 0.0 (empty) to 1.0 (full), as the model defines `batteryLevel`.
    pub battery_level: Option<f64>,
}

impl Facts for DeviceFacts {
    fn commune(&self) -> &Code {
        &self.commune
    }

    fn entity(&self) -> Result<Entity, BuildError> {
        if self.controlled_properties.is_empty() {
            return Err(BuildError::OutOfRange {
                field: "controlledProperty",
                reason: "the model requires at least one",
            });
        }
        let mut properties: Vec<String> = self
            .controlled_properties
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        properties.sort();
        properties.dedup();
        let battery = self
            .battery_level
            .map(|b| unit_fraction(b, "batteryLevel"))
            .transpose()?
            .map(|b| Attribute::property(Value::Number(b)));
        Ok(
            Entity::new(device_urn(&self.territory, &self.device), "Device")
                .with(
                    "deviceCategory",
                    Attribute::property(Value::TextList(vec![self.category.as_str().to_owned()])),
                )
                .with(
                    "controlledProperty",
                    Attribute::property(Value::TextList(properties)),
                )
                .with(
                    "deviceState",
                    Attribute::property(Value::Text(self.state.as_str().to_owned())),
                )
                .with_opt(
                    "controlledAsset",
                    self.site
                        .as_ref()
                        .map(|s| Attribute::relationship(site_urn(&self.territory, s))),
                )
                .with_opt(
                    "location",
                    self.position.map(|p| Attribute::geo(Geometry::Point(p))),
                )
                .with_opt(
                    "dateLastValueReported",
                    self.last_value_reported
                        .map(|t| Attribute::property(Value::DateTime(t))),
                )
                .with_opt("batteryLevel", battery),
        )
    }
}

/// A site of the territory, written as a `Building`.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteFacts {
    pub territory: Code,
    pub commune: Code,
    pub site: Code,
    pub category: BuildingCategory,
    /// ISO 3166-1 alpha-2 (`FR`): the model requires an `address`, written with the
    /// country and the postal code only.
    pub country: Code,
    pub postal_code: Option<Code>,
    /// The footprint (a Polygon) when known, else the position.
    pub footprint: Option<Geometry>,
    pub position: Option<Position>,
    pub people_capacity: Option<u32>,
}

impl Facts for SiteFacts {
    fn commune(&self) -> &Code {
        &self.commune
    }

    fn entity(&self) -> Result<Entity, BuildError> {
        let country = self.country.as_str();
        if country.len() != 2 || !country.bytes().all(|c| c.is_ascii_uppercase()) {
            return Err(BuildError::OutOfRange {
                field: "addressCountry",
                reason: "an ISO 3166-1 alpha-2 code (two capital letters)",
            });
        }
        let mut address = BTreeMap::new();
        address.insert("addressCountry".to_owned(), Value::Text(country.to_owned()));
        if let Some(code) = &self.postal_code {
            address.insert(
                "postalCode".to_owned(),
                Value::Text(code.as_str().to_owned()),
            );
        }
        let location = match (&self.footprint, self.position) {
            (Some(g @ Geometry::Polygon(_)), _) => Some(g.clone()),
            (Some(Geometry::Point(p)), _) => Some(Geometry::Point(*p)),
            (None, Some(p)) => Some(Geometry::Point(p)),
            (None, None) => None,
        };
        Ok(
            Entity::new(site_urn(&self.territory, &self.site), "Building")
                .with(
                    "category",
                    Attribute::property(Value::TextList(vec![self.category.as_str().to_owned()])),
                )
                .with("address", Attribute::property(Value::Object(address)))
                .with_opt("location", location.map(Attribute::geo))
                .with_opt(
                    "peopleCapacity",
                    self.people_capacity
                        .map(|n| Attribute::property(Value::Integer(i64::from(n)))),
                ),
        )
    }
}

/// The latest reading of a river gauge, written as a `WaterObserved`.
#[derive(Clone, Debug, PartialEq)]
pub struct GaugeReading {
    pub territory: Code,
    pub commune: Code,
    pub device: Code,
    /// Required by the model (`location`).
    pub position: Position,
    /// Required by the model (`dateObserved`).
    pub observed_at: Timestamp,
    /// Water height in metres (`waterLevel`, unit code `MTR`).
    pub water_level_m: Option<f64>,
    /// Flow in cubic metres per second (`flow`, unit code `MQS`).
    pub flow_m3_per_s: Option<f64>,
}

impl Facts for GaugeReading {
    fn commune(&self) -> &Code {
        &self.commune
    }

    fn entity(&self) -> Result<Entity, BuildError> {
        let level = self
            .water_level_m
            .map(|v| finite(v, "waterLevel"))
            .transpose()?;
        let flow = self.flow_m3_per_s.map(|v| finite(v, "flow")).transpose()?;
        let at = self.observed_at;
        Ok(Entity::new(
            urn("WaterObserved", &self.territory, &self.device),
            "WaterObserved",
        )
        .with("dateObserved", Attribute::property(Value::DateTime(at)))
        .with("location", Attribute::geo(Geometry::Point(self.position)))
        .with(
            "refDevice",
            Attribute::relationship(device_urn(&self.territory, &self.device)),
        )
        .with_opt(
            "waterLevel",
            level.map(|v| Attribute::measure(Value::Number(v), at, "MTR")),
        )
        .with_opt(
            "flow",
            flow.map(|v| Attribute::measure(Value::Number(v), at, "MQS")),
        ))
    }
}

/// A people counter's count over a period, written as a `CrowdFlowObserved`.
#[derive(Clone, Debug, PartialEq)]
pub struct CrowdCount {
    pub territory: Code,
    pub commune: Code,
    pub device: Code,
    pub position: Option<Position>,
    /// Start of the counting period (`dateObservedFrom`).
    pub from: Timestamp,
    /// End of the counting period (`dateObservedTo`, and `dateObserved`).
    pub to: Timestamp,
    /// People detected in the period (`peopleCount`).
    pub people_count: u32,
    pub people_count_towards: Option<u32>,
    pub people_count_away: Option<u32>,
    /// Fraction of the period the walkway was occupied, 0.0 to 1.0 (`occupancy`).
    pub occupancy: Option<f64>,
    pub congested: Option<bool>,
}

impl Facts for CrowdCount {
    fn commune(&self) -> &Code {
        &self.commune
    }

    fn entity(&self) -> Result<Entity, BuildError> {
        if self.to < self.from {
            return Err(BuildError::OutOfRange {
                field: "dateObservedTo",
                reason: "the period ends before it starts",
            });
        }
        let occupancy = self
            .occupancy
            .map(|o| unit_fraction(o, "occupancy"))
            .transpose()?;
        let count = |n: u32| Attribute::Property {
            value: Value::Integer(i64::from(n)),
            observed_at: Some(self.to),
            unit_code: None,
        };
        Ok(Entity::new(
            urn("CrowdFlowObserved", &self.territory, &self.device),
            "CrowdFlowObserved",
        )
        .with(
            "dateObserved",
            Attribute::property(Value::DateTime(self.to)),
        )
        .with(
            "dateObservedFrom",
            Attribute::property(Value::DateTime(self.from)),
        )
        .with(
            "dateObservedTo",
            Attribute::property(Value::DateTime(self.to)),
        )
        .with("peopleCount", count(self.people_count))
        .with(
            "refDevice",
            Attribute::relationship(device_urn(&self.territory, &self.device)),
        )
        .with_opt("peopleCountTowards", self.people_count_towards.map(count))
        .with_opt("peopleCountAway", self.people_count_away.map(count))
        .with_opt(
            "occupancy",
            occupancy.map(|o| Attribute::property(Value::Number(o))),
        )
        .with_opt(
            "congested",
            self.congested.map(|c| Attribute::property(Value::Bool(c))),
        )
        .with_opt(
            "location",
            self.position.map(|p| Attribute::geo(Geometry::Point(p))),
        ))
    }
}

/// Where an alert comes from (`alertSource`, a Relationship).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertSource {
    Device(Code),
    Site(Code),
}

/// An incident of the territory, written as an `Alert`. Its title, notes and people
/// involved are not part of the input.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentFacts {
    pub territory: Code,
    pub commune: Code,
    /// The incident's opaque identifier.
    pub incident: Code,
    /// The code of the rule that opened it, written in `data` as `{"rule": …}`.
    pub rule: Code,
    pub category: AlertCategory,
    pub sub_category: Option<AlertSubCategory>,
    pub severity: Severity,
    pub source: AlertSource,
    pub issued_at: Timestamp,
    pub valid_from: Option<Timestamp>,
    pub valid_to: Option<Timestamp>,
    pub position: Option<Position>,
}

impl Facts for IncidentFacts {
    fn commune(&self) -> &Code {
        &self.commune
    }

    fn entity(&self) -> Result<Entity, BuildError> {
        if let (Some(from), Some(to)) = (self.valid_from, self.valid_to)
            && to < from
        {
            return Err(BuildError::OutOfRange {
                field: "validTo",
                reason: "the validity ends before it starts",
            });
        }
        let source = match &self.source {
            AlertSource::Device(d) => device_urn(&self.territory, d),
            AlertSource::Site(s) => site_urn(&self.territory, s),
        };
        let mut data = BTreeMap::new();
        data.insert(
            "rule".to_owned(),
            Value::Text(self.rule.as_str().to_owned()),
        );
        Ok(
            Entity::new(urn("Alert", &self.territory, &self.incident), "Alert")
                .with(
                    "category",
                    Attribute::property(Value::Text(self.category.as_str().to_owned())),
                )
                .with(
                    "severity",
                    Attribute::property(Value::Text(self.severity.as_str().to_owned())),
                )
                .with("alertSource", Attribute::relationship(source))
                .with(
                    "dateIssued",
                    Attribute::property(Value::DateTime(self.issued_at)),
                )
                .with("data", Attribute::property(Value::Object(data)))
                .with_opt(
                    "subCategory",
                    self.sub_category
                        .as_ref()
                        .map(|s| Attribute::property(Value::Text(s.as_str().to_owned()))),
                )
                .with_opt(
                    "validFrom",
                    self.valid_from
                        .map(|t| Attribute::property(Value::DateTime(t))),
                )
                .with_opt(
                    "validTo",
                    self.valid_to
                        .map(|t| Attribute::property(Value::DateTime(t))),
                )
                .with_opt(
                    "location",
                    self.position.map(|p| Attribute::geo(Geometry::Point(p))),
                ),
        )
    }
}

fn finite(v: f64, field: &'static str) -> Result<f64, BuildError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(BuildError::OutOfRange {
            field,
            reason: "not a finite number",
        })
    }
}

fn unit_fraction(v: f64, field: &'static str) -> Result<f64, BuildError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(BuildError::OutOfRange {
            field,
            reason: "a fraction from 0.0 to 1.0",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::Representation;
    use serde_json::json;

    fn code(s: &str) -> Code {
        Code::new(s).expect("valid code")
    }

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).expect("valid time")
    }

    #[test]
    fn device_entity() {
        let facts = DeviceFacts {
            territory: code("valmont"),
            commune: code("26001"),
            device: code("gauge-3"),
            category: DeviceCategory::new("sensor").expect("in model"),
            controlled_properties: vec![ControlledProperty::new("waterLevel").expect("in model")],
            state: DeviceState::Ok,
            site: Some(code("pont-neuf")),
            position: Position::new(4.9, 44.9),
            last_value_reported: Some(at("2026-03-01T08:00:00Z")),
            battery_level: Some(0.5),
        };
        assert_eq!(facts.commune().as_str(), "26001");
        let e = facts.entity().expect("builds");
        assert_eq!(
            e.to_json(Representation::KeyValues, None),
            json!({
                "id": "urn:ngsi-ld:Device:valmont:gauge-3",
                "type": "Device",
                "deviceCategory": ["sensor"],
                "controlledProperty": ["waterLevel"],
                "deviceState": "ok",
                "controlledAsset": "urn:ngsi-ld:Building:valmont:pont-neuf",
                "location": {"type": "Point", "coordinates": [4.9, 44.9]},
                "dateLastValueReported": {"@type": "DateTime", "@value": "2026-03-01T08:00:00.000Z"},
                "batteryLevel": 0.5,
            })
        );
        let bad = DeviceFacts {
            battery_level: Some(1.5),
            ..facts
        };
        assert!(matches!(
            bad.entity(),
            Err(BuildError::OutOfRange {
                field: "batteryLevel",
                ..
            })
        ));
    }

    #[test]
    fn codes_and_enumerations() {
        assert!(Code::new("a b").is_err());
        assert!(Code::new("").is_err());
        assert!(Code::new(&"x".repeat(65)).is_err());
        assert!(ControlledProperty::new("Temperature").is_err());
        assert!(AlertSubCategory::new("flood").is_ok());
        assert!(BuildingCategory::new("civic").is_ok());
    }

    #[test]
    fn incident_alert() {
        let facts = IncidentFacts {
            territory: code("valmont"),
            commune: code("26001"),
            incident: code("inc-42"),
            rule: code("flood.rising"),
            category: AlertCategory::new("naturalDisaster").expect("in model"),
            sub_category: Some(AlertSubCategory::new("floodRisk").expect("in model")),
            severity: Severity::High,
            source: AlertSource::Device(code("gauge-3")),
            issued_at: at("2026-03-01T08:00:00Z"),
            valid_from: Some(at("2026-03-01T08:00:00Z")),
            valid_to: None,
            position: None,
        };
        let v = facts
            .entity()
            .expect("builds")
            .to_json(Representation::Normalized, None);
        assert_eq!(v["id"], "urn:ngsi-ld:Alert:valmont:inc-42");
        assert_eq!(v["severity"], json!({"type": "Property", "value": "high"}));
        assert_eq!(
            v["alertSource"]["object"],
            "urn:ngsi-ld:Device:valmont:gauge-3"
        );
        assert_eq!(v["data"]["value"], json!({"rule": "flood.rising"}));
    }
}
