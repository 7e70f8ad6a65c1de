//! The territory model: territory → communes → zones → sites → devices, and device kinds.
//!
//! Everything is addressed by dense indices (`DeviceIdx`, `SiteIdx`…) into the vectors of
//! [`Territory`], with maps from the textual ids of the configuration. The loader
//! (`beffroi-territory`) guarantees that every index stored here is in bounds.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::geo::Point;
use crate::time::Duration;

macro_rules! index_type {
    ($($name:ident),*) => {$(
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u32);
        impl $name {
            pub fn get(self) -> usize { self.0 as usize }
        }
    )*};
}
index_type!(
    CommuneIdx,
    ZoneIdx,
    SiteIdx,
    DeviceIdx,
    KindIdx,
    SiteKindIdx
);

/// Index of a field inside its device kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldIdx(pub u16);

impl FieldIdx {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// How a field's data must be treated with regard to personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataCategory {
    /// Measurements about things: water level, temperature, door state.
    Technical,
    /// Identifies or can identify a person (badge number, plate): pseudonymised before storage.
    Personal,
    /// A special category of GDPR art. 9 or data on offences (art. 10): personal, with a
    /// stricter legal basis and a shorter retention. Pseudonymised like personal data.
    Sensitive,
}

impl DataCategory {
    pub const ALL: [DataCategory; 3] = [
        DataCategory::Technical,
        DataCategory::Personal,
        DataCategory::Sensitive,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DataCategory::Technical => "technical",
            DataCategory::Personal => "personal",
            DataCategory::Sensitive => "sensitive",
        }
    }
    pub fn parse(s: &str) -> Option<DataCategory> {
        DataCategory::ALL.into_iter().find(|c| c.as_str() == s)
    }
    /// Personal or sensitive: relates to an identifiable person.
    pub fn is_personal(self) -> bool {
        self != DataCategory::Technical
    }
}

/// What a personal text field identifies: decides how its values are normalised before
/// pseudonymisation (so `AB-123-CD` and `ab 123 cd` link) and how the register names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier {
    LicencePlate,
    Badge,
    MacAddress,
    PhoneNumber,
    Email,
    Name,
    /// Any other identifier: compared as written, trimmed.
    Other,
}

impl Identifier {
    pub const ALL: [Identifier; 7] = [
        Identifier::LicencePlate,
        Identifier::Badge,
        Identifier::MacAddress,
        Identifier::PhoneNumber,
        Identifier::Email,
        Identifier::Name,
        Identifier::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Identifier::LicencePlate => "licence_plate",
            Identifier::Badge => "badge",
            Identifier::MacAddress => "mac_address",
            Identifier::PhoneNumber => "phone_number",
            Identifier::Email => "email",
            Identifier::Name => "name",
            Identifier::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Identifier> {
        Identifier::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    Number,
    Bool,
    Text,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Text => "text",
        }
    }
}

#[derive(Clone, Debug)]
pub struct FieldSpec {
    pub name: Arc<str>,
    pub unit: Option<Arc<str>>,
    pub ty: FieldType,
    /// Physical range for numbers; values outside are rejected at ingest.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub category: DataCategory,
    /// Largest physically possible change per minute (numbers only): a faster jump is an
    /// anomaly for the sentinel (`max_step_per_minute` in the kinds file).
    pub max_step_per_minute: Option<f64>,
    /// For a personal or sensitive text field: what it identifies (`identifier`).
    pub identifier: Option<Identifier>,
    /// The processing activity of the register this field serves (`purpose`, else the
    /// kind's); its legal basis is the activity's.
    pub purpose: Option<Arc<str>>,
    /// A count of people (`people_count = true`): kept and shown only as aggregates per
    /// zone and time bucket, suppressed below the minimum group size.
    pub people_count: bool,
    /// What the field means, from the closed set of [`Semantic`] (`semantic`): required
    /// for the fields of a kind that observes public space, unless declared.
    pub semantic: Option<Semantic>,
    /// A field of a public-space kind outside the closed set, declared with what it is and
    /// why it is needed (`declared`): the register shows it, `beffroi check` reports it.
    pub declared: Option<Arc<str>>,
    /// For a technical text field: free text (scrubbed at ingest), an enumeration
    /// (`values`) or an anchored pattern (`pattern`); a value outside is refused at ingest.
    pub text: crate::TextDomain,
}

/// What a field of a kind that observes public space may mean: a closed set. Anything
/// else must be declared (and is shown in the register), so that a camera's new field
/// cannot quietly start collecting something the town never decided to collect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantic {
    WaterLevel,
    Flow,
    Rainfall,
    Temperature,
    Humidity,
    Wind,
    AirQuality,
    NoiseLevel,
    Smoke,
    FireAlarm,
    IntrusionAlarm,
    DoorState,
    PeopleCount,
    VehicleCount,
    VehiclePassage,
    ParkingOccupancy,
    AccessDecision,
    LicencePlate,
    Badge,
    PhoneNumber,
    ReportTopic,
    Online,
    Tamper,
    Battery,
    Signal,
    FrameRate,
    Firmware,
    Status,
}

impl Semantic {
    pub const ALL: [Semantic; 28] = [
        Semantic::WaterLevel,
        Semantic::Flow,
        Semantic::Rainfall,
        Semantic::Temperature,
        Semantic::Humidity,
        Semantic::Wind,
        Semantic::AirQuality,
        Semantic::NoiseLevel,
        Semantic::Smoke,
        Semantic::FireAlarm,
        Semantic::IntrusionAlarm,
        Semantic::DoorState,
        Semantic::PeopleCount,
        Semantic::VehicleCount,
        Semantic::VehiclePassage,
        Semantic::ParkingOccupancy,
        Semantic::AccessDecision,
        Semantic::LicencePlate,
        Semantic::Badge,
        Semantic::PhoneNumber,
        Semantic::ReportTopic,
        Semantic::Online,
        Semantic::Tamper,
        Semantic::Battery,
        Semantic::Signal,
        Semantic::FrameRate,
        Semantic::Firmware,
        Semantic::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Semantic::WaterLevel => "water_level",
            Semantic::Flow => "flow",
            Semantic::Rainfall => "rainfall",
            Semantic::Temperature => "temperature",
            Semantic::Humidity => "humidity",
            Semantic::Wind => "wind",
            Semantic::AirQuality => "air_quality",
            Semantic::NoiseLevel => "noise_level",
            Semantic::Smoke => "smoke",
            Semantic::FireAlarm => "fire_alarm",
            Semantic::IntrusionAlarm => "intrusion_alarm",
            Semantic::DoorState => "door_state",
            Semantic::PeopleCount => "people_count",
            Semantic::VehicleCount => "vehicle_count",
            Semantic::VehiclePassage => "vehicle_passage",
            Semantic::ParkingOccupancy => "parking_occupancy",
            Semantic::AccessDecision => "access_decision",
            Semantic::LicencePlate => "licence_plate",
            Semantic::Badge => "badge",
            Semantic::PhoneNumber => "phone_number",
            Semantic::ReportTopic => "report_topic",
            Semantic::Online => "online",
            Semantic::Tamper => "tamper",
            Semantic::Battery => "battery",
            Semantic::Signal => "signal",
            Semantic::FrameRate => "frame_rate",
            Semantic::Firmware => "firmware",
            Semantic::Status => "status",
        }
    }

    pub fn parse(s: &str) -> Option<Semantic> {
        Semantic::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The identifier a field of this meaning carries, if it names a person.
    pub fn identifier(self) -> Option<Identifier> {
        match self {
            Semantic::LicencePlate => Some(Identifier::LicencePlate),
            Semantic::Badge => Some(Identifier::Badge),
            Semantic::PhoneNumber => Some(Identifier::PhoneNumber),
            _ => None,
        }
    }
}

impl FieldSpec {
    /// A technical field with no privacy attributes (tests, benchmarks, generated kinds).
    pub fn technical(name: &str, ty: FieldType) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            unit: None,
            ty,
            min: None,
            max: None,
            category: DataCategory::Technical,
            max_step_per_minute: None,
            identifier: None,
            purpose: None,
            people_count: false,
            semantic: None,
            declared: None,
            text: crate::TextDomain::Free,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DeviceKind {
    pub id: Arc<str>,
    /// The label people read, in French (or the kind's only label).
    pub label: Arc<str>,
    /// The label in English, when the kinds file gives one (`label = { fr, en }`).
    pub label_en: Option<Arc<str>>,
    pub heartbeat: Option<Duration>,
    /// How often a device of the kind reports in normal life (`period` in the kinds
    /// file): the sentinel's flood limit follows from it.
    pub period: Option<Duration>,
    pub fields: Vec<FieldSpec>,
    /// Whether the kind's devices sign their messages (signed telemetry envelope).
    pub signing: Signing,
    /// The processing activity of the register the kind's fields serve by default.
    pub purpose: Option<Arc<str>>,
    /// The devices observe public space: the town must publish a notice for each.
    pub public_space: bool,
    /// Personal data of this kind comes from video (plate-reading camera…): its retention
    /// may not exceed 30 days (code de la sécurité intérieure, L252-5).
    pub video_linked: bool,
}

/// A kind's signed-telemetry policy (`signing` in the kinds file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Signing {
    /// Unsigned messages only count as what the transport proves; envelopes are still
    /// verified if sent.
    #[default]
    None,
    /// Signed envelopes are verified; unsigned messages are accepted.
    Optional,
    /// Unsigned messages are rejected.
    Required,
}

impl Signing {
    pub const ALL: [Signing; 3] = [Signing::None, Signing::Optional, Signing::Required];
    pub fn as_str(self) -> &'static str {
        match self {
            Signing::None => "none",
            Signing::Optional => "optional",
            Signing::Required => "required",
        }
    }
    pub fn parse(s: &str) -> Option<Signing> {
        Signing::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl DeviceKind {
    pub fn field(&self, name: &str) -> Option<FieldIdx> {
        self.fields
            .iter()
            .position(|f| &*f.name == name)
            .map(|i| FieldIdx(i as u16))
    }
}

/// What a site is: one of the nine kinds every deployment knows, or one its kinds file
/// declares (`[[site_kind]]`), held by its index in [`Territory::site_kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteKind {
    TownHall,
    School,
    Gym,
    MediaLibrary,
    RiverReach,
    RoadSection,
    EventGround,
    PublicBuilding,
    Other,
    /// Declared by the deployment; its id and labels are in [`Territory::site_kinds`].
    Declared(SiteKindIdx),
}

impl SiteKind {
    /// The kinds every deployment has, declared or not.
    pub const BUILT_IN: [SiteKind; 9] = [
        SiteKind::TownHall,
        SiteKind::School,
        SiteKind::Gym,
        SiteKind::MediaLibrary,
        SiteKind::RiverReach,
        SiteKind::RoadSection,
        SiteKind::EventGround,
        SiteKind::PublicBuilding,
        SiteKind::Other,
    ];

    /// The id of a built-in kind; `None` for a declared one (see [`Territory::site_kind_id`]).
    pub fn built_in_id(self) -> Option<&'static str> {
        Some(match self {
            SiteKind::TownHall => "town_hall",
            SiteKind::School => "school",
            SiteKind::Gym => "gym",
            SiteKind::MediaLibrary => "media_library",
            SiteKind::RiverReach => "river_reach",
            SiteKind::RoadSection => "road_section",
            SiteKind::EventGround => "event_ground",
            SiteKind::PublicBuilding => "public_building",
            SiteKind::Other => "other",
            SiteKind::Declared(_) => return None,
        })
    }

    /// A built-in kind by its id. A deployment's declared kinds are found with
    /// [`Territory::site_kind`].
    pub fn parse_built_in(s: &str) -> Option<SiteKind> {
        SiteKind::BUILT_IN
            .into_iter()
            .find(|k| k.built_in_id() == Some(s))
    }

    /// French and English labels of a built-in kind.
    pub fn built_in_labels(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            SiteKind::TownHall => ("Hôtel de ville", "Town hall"),
            SiteKind::School => ("École", "School"),
            SiteKind::Gym => ("Gymnase", "Gym"),
            SiteKind::MediaLibrary => ("Médiathèque", "Media library"),
            SiteKind::RiverReach => ("Tronçon de rivière", "River reach"),
            SiteKind::RoadSection => ("Tronçon de route", "Road section"),
            SiteKind::EventGround => ("Lieu d’événement", "Event ground"),
            SiteKind::PublicBuilding => ("Bâtiment public", "Public building"),
            SiteKind::Other => ("Autre", "Other"),
            SiteKind::Declared(_) => return None,
        })
    }
}

/// A site kind declared by the deployment (`[[site_kind]]` in the kinds file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteKindDecl {
    pub id: Arc<str>,
    /// The label in French.
    pub label: Arc<str>,
    /// The label in English.
    pub label_en: Arc<str>,
}

#[derive(Clone, Debug)]
pub struct Commune {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub insee: Option<Arc<str>>,
    /// Where its name goes on the map (the town hall, usually).
    pub position: Point,
    /// Outer rings of its boundary, one per polygon (`communes.geojson`); empty when the
    /// territory gives only the position.
    pub boundary: Vec<Vec<Point>>,
}

#[derive(Clone, Debug)]
pub struct Zone {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub commune: CommuneIdx,
}

#[derive(Clone, Debug)]
pub struct Site {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub kind: SiteKind,
    pub commune: CommuneIdx,
    pub zone: Option<ZoneIdx>,
    pub position: Point,
    /// Outer ring of the site's perimeter, when the site is a polygon.
    pub perimeter: Option<Vec<Point>>,
    /// The river a site lies along (a river reach, a bridge…): situations of a family
    /// grouped `within = "river"` follow it.
    pub river: Option<Arc<str>>,
}

#[derive(Clone, Debug)]
pub struct Device {
    pub id: Arc<str>,
    pub kind: KindIdx,
    pub site: SiteIdx,
    pub position: Point,
    /// LoRaWAN device EUI, lowercase hex.
    pub dev_eui: Option<Arc<str>>,
}

/// A validated territory. Build it through [`TerritoryBuilder`] (used by the loader), which
/// maintains the id maps.
#[derive(Clone, Debug, Default)]
pub struct Territory {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// The territory's IANA time zone (`Europe/Paris`), in which people read its times
    /// (the console's reports); `None`: not declared.
    pub timezone: Option<Arc<str>>,
    pub communes: Vec<Commune>,
    pub zones: Vec<Zone>,
    pub sites: Vec<Site>,
    pub kinds: Vec<DeviceKind>,
    pub devices: Vec<Device>,
    /// Site kinds the deployment declares beside the built-in ones.
    pub site_kinds: Vec<SiteKindDecl>,
    commune_ids: HashMap<Arc<str>, CommuneIdx>,
    zone_ids: HashMap<Arc<str>, ZoneIdx>,
    site_ids: HashMap<Arc<str>, SiteIdx>,
    kind_ids: HashMap<Arc<str>, KindIdx>,
    device_ids: HashMap<Arc<str>, DeviceIdx>,
    dev_euis: HashMap<Arc<str>, DeviceIdx>,
    site_kind_ids: HashMap<Arc<str>, SiteKindIdx>,
    devices_by_kind: Vec<Vec<DeviceIdx>>,
}

/// Returned when an id is declared twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("duplicate {what} id `{id}`")]
pub struct DuplicateId {
    pub what: &'static str,
    pub id: String,
}

impl Territory {
    pub fn new(id: &str, name: &str) -> Self {
        Territory {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// Technical text fields declared neither as an enumeration nor as a pattern, as
    /// `(kind, field)`: free text, scrubbed at ingest, which `beffroi check` reports.
    pub fn free_text_fields(&self) -> Vec<(&DeviceKind, &FieldSpec)> {
        self.kinds
            .iter()
            .flat_map(|k| k.fields.iter().map(move |f| (k, f)))
            .filter(|(_, f)| {
                f.ty == FieldType::Text && !f.category.is_personal() && f.text.is_free()
            })
            .collect()
    }

    pub fn commune_id(&self, id: &str) -> Option<CommuneIdx> {
        self.commune_ids.get(id).copied()
    }
    pub fn zone_id(&self, id: &str) -> Option<ZoneIdx> {
        self.zone_ids.get(id).copied()
    }
    pub fn site_id(&self, id: &str) -> Option<SiteIdx> {
        self.site_ids.get(id).copied()
    }
    /// A site kind by its id: built-in, or declared by the deployment.
    pub fn site_kind(&self, id: &str) -> Option<SiteKind> {
        SiteKind::parse_built_in(id)
            .or_else(|| self.site_kind_ids.get(id).map(|&i| SiteKind::Declared(i)))
    }
    /// The id of a site kind. A declared kind's index comes from [`Territory::site_kind`]
    /// or [`Territory::add_site_kind`] on this territory.
    pub fn site_kind_id(&self, k: SiteKind) -> &str {
        match k {
            SiteKind::Declared(i) => &self.site_kinds[i.get()].id,
            built_in => built_in.built_in_id().unwrap_or_default(),
        }
    }
    /// The French and English labels of a site kind.
    pub fn site_kind_labels(&self, k: SiteKind) -> (&str, &str) {
        match k {
            SiteKind::Declared(i) => {
                let d = &self.site_kinds[i.get()];
                (&d.label, &d.label_en)
            }
            built_in => built_in.built_in_labels().unwrap_or_default(),
        }
    }
    /// Ids of every site kind: the built-in ones, then the declared ones.
    pub fn site_kind_ids(&self) -> impl Iterator<Item = &str> {
        SiteKind::BUILT_IN
            .iter()
            .filter_map(|k| k.built_in_id())
            .chain(self.site_kinds.iter().map(|d| &*d.id))
    }
    pub fn kind_id(&self, id: &str) -> Option<KindIdx> {
        self.kind_ids.get(id).copied()
    }
    pub fn device_id(&self, id: &str) -> Option<DeviceIdx> {
        self.device_ids.get(id).copied()
    }
    /// Finds a device by LoRaWAN EUI (case-insensitive).
    pub fn device_by_eui(&self, eui: &str) -> Option<DeviceIdx> {
        if eui.bytes().any(|b| b.is_ascii_uppercase()) {
            self.dev_euis
                .get(eui.to_ascii_lowercase().as_str())
                .copied()
        } else {
            self.dev_euis.get(eui).copied()
        }
    }

    pub fn commune(&self, i: CommuneIdx) -> &Commune {
        &self.communes[i.get()]
    }
    pub fn site(&self, i: SiteIdx) -> &Site {
        &self.sites[i.get()]
    }
    pub fn kind(&self, i: KindIdx) -> &DeviceKind {
        &self.kinds[i.get()]
    }
    pub fn device(&self, i: DeviceIdx) -> &Device {
        &self.devices[i.get()]
    }
    pub fn kind_of(&self, d: DeviceIdx) -> &DeviceKind {
        self.kind(self.device(d).kind)
    }
    pub fn devices_of_kind(&self, k: KindIdx) -> &[DeviceIdx] {
        self.devices_by_kind
            .get(k.get())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn add_commune(&mut self, c: Commune) -> Result<CommuneIdx, DuplicateId> {
        let idx = CommuneIdx(self.communes.len() as u32);
        insert_unique(&mut self.commune_ids, &c.id, idx, "commune")?;
        self.communes.push(c);
        Ok(idx)
    }
    /// Sets the boundary of a commune (outer rings, one per polygon).
    pub fn set_commune_boundary(&mut self, i: CommuneIdx, rings: Vec<Vec<Point>>) {
        if let Some(c) = self.communes.get_mut(i.get()) {
            c.boundary = rings;
        }
    }
    pub fn add_zone(&mut self, z: Zone) -> Result<ZoneIdx, DuplicateId> {
        let idx = ZoneIdx(self.zones.len() as u32);
        insert_unique(&mut self.zone_ids, &z.id, idx, "zone")?;
        self.zones.push(z);
        Ok(idx)
    }
    pub fn add_site(&mut self, s: Site) -> Result<SiteIdx, DuplicateId> {
        let idx = SiteIdx(self.sites.len() as u32);
        insert_unique(&mut self.site_ids, &s.id, idx, "site")?;
        self.sites.push(s);
        Ok(idx)
    }
    /// Declares a site kind; its id may be neither a built-in kind's nor another
    /// declared kind's.
    pub fn add_site_kind(&mut self, k: SiteKindDecl) -> Result<SiteKind, DuplicateId> {
        if SiteKind::parse_built_in(&k.id).is_some() {
            return Err(DuplicateId {
                what: "site kind (built in)",
                id: k.id.to_string(),
            });
        }
        let idx = SiteKindIdx(self.site_kinds.len() as u32);
        insert_unique(&mut self.site_kind_ids, &k.id, idx, "site kind")?;
        self.site_kinds.push(k);
        Ok(SiteKind::Declared(idx))
    }
    pub fn add_kind(&mut self, k: DeviceKind) -> Result<KindIdx, DuplicateId> {
        let idx = KindIdx(self.kinds.len() as u32);
        insert_unique(&mut self.kind_ids, &k.id, idx, "kind")?;
        self.kinds.push(k);
        self.devices_by_kind.push(Vec::new());
        Ok(idx)
    }
    /// Adds a device. The caller guarantees that `d.kind` and `d.site` are valid indices.
    pub fn add_device(&mut self, d: Device) -> Result<DeviceIdx, DuplicateId> {
        let idx = DeviceIdx(self.devices.len() as u32);
        if let Some(eui) = &d.dev_eui
            && self.dev_euis.contains_key(eui)
        {
            return Err(DuplicateId {
                what: "dev_eui",
                id: eui.to_string(),
            });
        }
        insert_unique(&mut self.device_ids, &d.id, idx, "device")?;
        if let Some(eui) = &d.dev_eui {
            self.dev_euis.insert(eui.clone(), idx);
        }
        self.devices_by_kind[d.kind.get()].push(idx);
        self.devices.push(d);
        Ok(idx)
    }
}

fn insert_unique<I: Copy>(
    map: &mut HashMap<Arc<str>, I>,
    id: &Arc<str>,
    idx: I,
    what: &'static str,
) -> Result<(), DuplicateId> {
    if map.contains_key(id) {
        return Err(DuplicateId {
            what,
            id: id.to_string(),
        });
    }
    map.insert(id.clone(), idx);
    Ok(())
}

/// Builds a small territory in code, for tests of the crates above the core.
pub mod fixture {
    use super::*;

    /// One commune `c1`, two sites `s1` (school) and `s2` (river reach, 300 m away), kinds
    /// `level` (field `level_m`, 0..10, heartbeat 10 min) and `alarm` (fields `on` bool and
    /// `badge` text personal), devices `g1`, `g2` (level at s2) and `a1` (alarm at s1).
    pub fn small() -> Territory {
        let mut t = Territory::new("t", "Test territory");
        let c = t
            .add_commune(Commune {
                id: "c1".into(),
                name: "Commune 1".into(),
                insee: None,
                position: Point::new(5.0, 47.0),
                boundary: Vec::new(),
            })
            .expect("fresh id");
        let s1 = t
            .add_site(Site {
                id: "s1".into(),
                name: "École 1".into(),
                kind: SiteKind::School,
                commune: c,
                zone: None,
                position: Point::new(5.0, 47.0),
                perimeter: None,
                river: None,
            })
            .expect("fresh id");
        let s2 = t
            .add_site(Site {
                id: "s2".into(),
                name: "Bief 2".into(),
                kind: SiteKind::RiverReach,
                commune: c,
                zone: None,
                position: Point::new(5.004, 47.0),
                perimeter: None,
                river: None,
            })
            .expect("fresh id");
        let level = t
            .add_kind(DeviceKind {
                id: "level".into(),
                label: "Level".into(),
                label_en: None,
                heartbeat: Some(Duration::from_mins(10)),
                period: None,
                signing: Signing::None,
                purpose: None,
                public_space: false,
                video_linked: false,
                fields: vec![FieldSpec {
                    name: "level_m".into(),
                    unit: Some("m".into()),
                    ty: FieldType::Number,
                    min: Some(0.0),
                    max: Some(10.0),
                    category: DataCategory::Technical,
                    max_step_per_minute: None,
                    identifier: None,
                    purpose: None,
                    people_count: false,
                    semantic: None,
                    declared: None,
                    text: crate::TextDomain::Free,
                }],
            })
            .expect("fresh id");
        let alarm = t
            .add_kind(DeviceKind {
                id: "alarm".into(),
                label: "Alarm".into(),
                label_en: None,
                heartbeat: None,
                period: None,
                signing: Signing::None,
                purpose: None,
                public_space: false,
                video_linked: false,
                fields: vec![
                    FieldSpec::technical("on", FieldType::Bool),
                    FieldSpec {
                        category: DataCategory::Personal,
                        identifier: Some(Identifier::Badge),
                        ..FieldSpec::technical("badge", FieldType::Text)
                    },
                ],
            })
            .expect("fresh id");
        for (id, kind, site, eui) in [
            ("g1", level, s2, Some("0011223344556677")),
            ("g2", level, s2, None),
            ("a1", alarm, s1, None),
        ] {
            t.add_device(Device {
                id: id.into(),
                kind,
                site,
                position: t.site(site).position,
                dev_eui: eui.map(Into::into),
            })
            .expect("fresh id");
        }
        t
    }

    /// The small fixture's commune, sites and kinds without its devices, and `devices`
    /// water-level gauges `gauge-00000`, `gauge-00001`… on the river reach `s2` (benches and
    /// load tests).
    pub fn town(devices: u32) -> Territory {
        let f = small();
        let mut t = Territory::new("town", "Test town");
        for c in f.communes {
            t.add_commune(c).expect("fresh id");
        }
        for s in f.sites {
            t.add_site(s).expect("fresh id");
        }
        for k in f.kinds {
            t.add_kind(k).expect("fresh id");
        }
        let level = t.kind_id("level").expect("fixture kind");
        let site = t.site_id("s2").expect("fixture site");
        for i in 0..devices {
            t.add_device(Device {
                id: format!("gauge-{i:05}").into(),
                kind: level,
                site,
                position: t.site(site).position,
                dev_eui: None,
            })
            .expect("fresh id");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(id: &str) -> SiteKindDecl {
        SiteKindDecl {
            id: id.into(),
            label: format!("{id} (fr)").into(),
            label_en: format!("{id} (en)").into(),
        }
    }

    #[test]
    fn built_in_site_kinds_round_trip_through_their_ids() {
        let t = Territory::new("t", "T");
        for k in SiteKind::BUILT_IN {
            let id = k.built_in_id().expect("built in");
            assert_eq!(SiteKind::parse_built_in(id), Some(k));
            assert_eq!(t.site_kind(id), Some(k));
            assert_eq!(t.site_kind_id(k), id);
            assert!(!t.site_kind_labels(k).0.is_empty());
        }
        assert_eq!(t.site_kind_ids().count(), 9);
        assert_eq!(t.site_kind("water_tower"), None);
    }

    #[test]
    fn declared_site_kinds_resolve_beside_the_built_in_ones() {
        let mut t = Territory::new("t", "T");
        let tower = t.add_site_kind(decl("water_tower")).expect("new");
        let car_park = t.add_site_kind(decl("car_park")).expect("new");
        assert_ne!(tower, car_park);
        assert_eq!(t.site_kind("water_tower"), Some(tower));
        assert_eq!(t.site_kind("car_park"), Some(car_park));
        assert_eq!(t.site_kind_id(car_park), "car_park");
        assert_eq!(
            t.site_kind_labels(tower),
            ("water_tower (fr)", "water_tower (en)")
        );
        assert_eq!(SiteKind::parse_built_in("water_tower"), None);
        assert_eq!(tower.built_in_id(), None);
        let ids: Vec<_> = t.site_kind_ids().collect();
        assert_eq!(ids.len(), 11);
        assert_eq!(&ids[9..], ["water_tower", "car_park"]);
        // Neither twice nor over a built-in kind.
        assert_eq!(
            t.add_site_kind(decl("water_tower")).map_err(|e| e.what),
            Err("site kind")
        );
        assert!(t.add_site_kind(decl("school")).is_err());
        assert_eq!(t.site_kinds.len(), 2);
    }
}
