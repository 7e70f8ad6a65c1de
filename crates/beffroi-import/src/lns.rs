//! Device lists of LoRaWAN network servers.
//!
//! - **ChirpStack v4**: the answer of its REST API to `GET /api/devices?applicationId=…`
//!   (`ListDevicesResponse`: `{"totalCount": …, "result": [DeviceListItem…]}`; field names
//!   in lowerCamelCase as the API writes them, or snake_case as the protobuf declares
//!   them). A device's id is its `name` made an identifier, its EUI `devEui`, its kind
//!   the `kind` tag or its device profile through the kind map, its site the `site` tag
//!   or the default site given on the command line.
//! - **The Things Stack v3**: `ttn-lw-cli end-devices list APP --name --attributes
//!   --version-ids --locations` (a JSON array), or the API's `{"end_devices": […]}`. Its
//!   `ids.device_id` is the id, `ids.dev_eui` the EUI, attributes take the place of tags,
//!   `version_ids` (`brand_id/model_id`) of the profile, and `locations.user` gives a
//!   position.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ImportError, ImportErrors, Loc};
use crate::json_spans::{array_elements, key_offset};
use crate::record::{DeviceRecord, Origin, Records, normalise_eui, slug, valid_id, wgs84};
use crate::text::{decode, loc_of};

/// Which kind and site a network server's device becomes (`--kind-map`, a TOML file).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KindMap {
    pub file: String,
    /// Device profile (ChirpStack: name or id; The Things Stack: `brand/model` or model)
    /// → kind, with the line of each entry.
    pub profiles: Vec<(String, String, Loc)>,
    /// The tag or attribute naming the site (default `site`).
    pub site_tag: String,
    /// The tag or attribute naming the kind (default `kind`).
    pub kind_tag: String,
}

impl KindMap {
    pub fn empty() -> Self {
        KindMap {
            file: String::new(),
            profiles: Vec::new(),
            site_tag: "site".into(),
            kind_tag: "kind".into(),
        }
    }

    fn kind_of_profile<'a>(&'a self, keys: &[&str]) -> Option<&'a str> {
        keys.iter().find_map(|k| {
            self.profiles
                .iter()
                .find(|(p, ..)| p == k)
                .map(|(_, kind, _)| kind.as_str())
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindMapRaw {
    #[serde(default)]
    profiles: BTreeMap<String, toml::Spanned<String>>,
    #[serde(default)]
    tags: TagsRaw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TagsRaw {
    site: Option<String>,
    kind: Option<String>,
}

/// Reads a kind map:
///
/// ```toml
/// [profiles]
/// "Dragino LDDS75" = "water_level"
/// [tags]
/// site = "site"
/// kind = "kind"
/// ```
pub fn read_kind_map(file: &str, bytes: &[u8]) -> Result<KindMap, ImportErrors> {
    let (text, _) = decode(bytes);
    let raw: KindMapRaw = toml::from_str(&text).map_err(|e| {
        ImportErrors(vec![ImportError::new(
            file,
            e.span().map(|s| loc_of(&text, s.start)),
            None,
            e.message().trim().to_string(),
        )])
    })?;
    let mut profiles: Vec<_> = raw
        .profiles
        .into_iter()
        .map(|(k, v)| {
            let at = loc_of(&text, v.span().start);
            (k, v.into_inner(), at)
        })
        .collect();
    profiles.sort_by_key(|(.., at)| *at);
    Ok(KindMap {
        file: file.to_string(),
        profiles,
        site_tag: raw.tags.site.unwrap_or_else(|| "site".into()),
        kind_tag: raw.tags.kind.unwrap_or_else(|| "kind".into()),
    })
}

/// How a network server's devices become Beffroi's.
#[derive(Clone, Copy, Debug)]
pub struct LnsOptions<'a> {
    pub map: &'a KindMap,
    /// The site of devices whose tags name none (`--site`).
    pub default_site: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChirpStackDevice {
    #[serde(alias = "dev_eui", alias = "devEUI")]
    dev_eui: String,
    #[serde(default)]
    name: String,
    #[serde(default, alias = "device_profile_id", alias = "deviceProfileID")]
    device_profile_id: String,
    #[serde(default, alias = "device_profile_name")]
    device_profile_name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// The list's items, each with its byte range, or one error for the whole file.
fn items(
    file: &str,
    text: &str,
    key: Option<&str>,
    what: &str,
) -> Result<(Vec<Value>, Vec<Range<usize>>), ImportErrors> {
    let one = |at, msg: String| ImportErrors(vec![ImportError::new(file, at, None, msg)]);
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        one(
            Some(Loc::new(e.line(), e.column())),
            format!("not JSON: {e}"),
        )
    })?;
    let (list, key) = match (key, doc) {
        (Some(k), Value::Object(mut o)) => (o.remove(k), Some(k)),
        (None, Value::Object(mut o)) if o.contains_key("end_devices") => {
            (o.remove("end_devices"), Some("end_devices"))
        }
        (None, v @ Value::Array(_)) => (Some(v), None),
        _ => (None, key),
    };
    let Some(Value::Array(list)) = list else {
        return Err(one(Some(Loc::new(1, 1)), format!("expected {what}")));
    };
    let spans = array_elements(text, key)
        .map(|s| s.elements)
        .unwrap_or_default();
    Ok((list, spans))
}

/// Where an item's member is, within the item.
fn member_at(text: &str, span: Option<&Range<usize>>, key: &str) -> Option<Loc> {
    span.and_then(|r| key_offset(text, r.clone(), key))
        .map(|o| loc_of(text, o))
}

/// How a network server writes its device list.
struct ListFormat<D> {
    /// The member holding the list; `None`: the document is the list, or `end_devices`.
    key: Option<&'static str>,
    /// What the document should be, said when it is not.
    expected: &'static str,
    /// The field, and the words, of the error for an item that is not a device.
    not_a_device: (&'static str, &'static str),
    /// The device's name, in messages about it.
    name: fn(&D) -> &str,
}

/// What one item gives for its device; a field is `None` once its error is pushed.
struct Fields {
    id: Option<String>,
    kind: Option<String>,
    site: Option<String>,
    dev_eui: Option<String>,
    position: Option<beffroi_core::Point>,
}

/// Reads a network server's device list: each item is read as a `D`, then `fields` says
/// what it gives (with where each member of the item is), pushing the errors it finds. An
/// item with an error is left out, its errors in the records'.
fn read_list<D: DeserializeOwned>(
    file: &str,
    bytes: &[u8],
    format: ListFormat<D>,
    fields: impl Fn(D, &mut Origin, &dyn Fn(&str) -> Option<Loc>, &mut ImportErrors) -> Fields,
) -> Result<Records, ImportErrors> {
    let (text, _) = decode(bytes);
    let (list, spans) = items(file, &text, format.key, format.expected)?;
    let file: Arc<str> = file.into();
    let mut records = Records::default();
    let mut errors = ImportErrors::default();
    for (n, item) in list.into_iter().enumerate() {
        let span = spans.get(n);
        let at = |key: &str| member_at(&text, span, key);
        let mut origin = Origin::new(
            &file,
            span.map(|r| loc_of(&text, r.start)),
            format!("device #{n}"),
        );
        let d: D = match serde_json::from_value(item) {
            Ok(d) => d,
            Err(e) => {
                let (field, not_a_device) = format.not_a_device;
                errors.push(origin.error(field, format!("{not_a_device}: {e}")));
                continue;
            }
        };
        origin.label = format!("device #{n} `{}`", (format.name)(&d));
        let f = fields(d, &mut origin, &at, &mut errors);
        if let (Some(id), Some(kind), Some(site), Some(dev_eui)) = (f.id, f.kind, f.site, f.dev_eui)
        {
            records.devices.push(DeviceRecord {
                id,
                kind,
                site,
                position: f.position,
                dev_eui: Some(dev_eui),
                origin,
            });
        }
    }
    records.errors.extend(errors);
    Ok(records)
}

/// Reads a ChirpStack v4 device list.
pub fn read_chirpstack(
    file: &str,
    bytes: &[u8],
    opts: LnsOptions<'_>,
) -> Result<Records, ImportErrors> {
    let format = ListFormat {
        key: Some("result"),
        expected: "ChirpStack's device list: {\"totalCount\": …, \"result\": [ … ]}",
        not_a_device: ("devEui", "not a ChirpStack device"),
        name: |d: &ChirpStackDevice| &d.name,
    };
    read_list(
        file,
        bytes,
        format,
        |d: ChirpStackDevice, origin, at, errors| {
            origin.field("id", "name", at("name"));
            origin.field("dev_eui", "devEui", at("devEui").or_else(|| at("dev_eui")));
            let tag_at = at("tags");
            let kind = match d.tags.get(&opts.map.kind_tag) {
                Some(k) => {
                    origin.field("kind", format!("tags.{}", opts.map.kind_tag), tag_at);
                    Some(k.clone())
                }
                None => {
                    origin.field(
                        "kind",
                        "deviceProfileName",
                        at("deviceProfileName").or_else(|| at("device_profile_name")),
                    );
                    let kind = opts
                        .map
                        .kind_of_profile(&[&d.device_profile_name, &d.device_profile_id]);
                    if kind.is_none() {
                        errors.push(origin.error(
                        "kind",
                        format!(
                            "no kind for device profile `{}`: map it in the kind map (--kind-map), under [profiles]: \"{}\" = \"<kind>\", or give the device a `{}` tag",
                            d.device_profile_name, d.device_profile_name, opts.map.kind_tag
                        ),
                    ));
                    }
                    kind.map(str::to_string)
                }
            };
            let site = site_of(&d.tags, opts, origin, tag_at, errors);
            let id = slug(&d.name);
            if !valid_id(&id) {
                errors.push(origin.error("id", format!("the name `{}` makes no identifier (give the device a name with letters or digits)", d.name)));
            }
            let dev_eui = normalise_eui(&d.dev_eui);
            if dev_eui.is_none() {
                errors.push(origin.error(
                    "dev_eui",
                    format!("`{}` is not 16 hexadecimal digits", d.dev_eui),
                ));
            }
            Fields {
                id: valid_id(&id).then_some(id),
                kind,
                site,
                dev_eui,
                position: position_from_tags(&d.tags),
            }
        },
    )
}

fn site_of(
    tags: &BTreeMap<String, String>,
    opts: LnsOptions<'_>,
    origin: &mut Origin,
    tag_at: Option<Loc>,
    errors: &mut ImportErrors,
) -> Option<String> {
    match (tags.get(&opts.map.site_tag), opts.default_site) {
        (Some(s), _) => {
            origin.field("site", format!("tags.{}", opts.map.site_tag), tag_at);
            Some(s.clone())
        }
        (None, Some(s)) => {
            origin.field("site", "--site", origin.at);
            Some(s.to_string())
        }
        (None, None) => {
            origin.field("site", format!("tags.{}", opts.map.site_tag), origin.at);
            errors.push(origin.error(
                "site",
                format!(
                    "no site: give the device a `{}` tag naming its site, or a default with --site",
                    opts.map.site_tag
                ),
            ));
            None
        }
    }
}

/// A position from `longitude` and `latitude` tags, when both are numbers in WGS84.
fn position_from_tags(tags: &BTreeMap<String, String>) -> Option<beffroi_core::Point> {
    let lon = crate::record::parse_number(tags.get("longitude")?)?;
    let lat = crate::record::parse_number(tags.get("latitude")?)?;
    wgs84(lon, lat)
}

#[derive(Deserialize)]
struct TtsDevice {
    ids: TtsIds,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    version_ids: Option<TtsVersion>,
    #[serde(default)]
    locations: BTreeMap<String, TtsLocation>,
}

#[derive(Deserialize)]
struct TtsIds {
    device_id: String,
    #[serde(default)]
    dev_eui: Option<String>,
}

#[derive(Deserialize)]
struct TtsVersion {
    #[serde(default)]
    brand_id: String,
    #[serde(default)]
    model_id: String,
}

#[derive(Deserialize)]
struct TtsLocation {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

/// Reads a device list of The Things Stack.
pub fn read_tts(file: &str, bytes: &[u8], opts: LnsOptions<'_>) -> Result<Records, ImportErrors> {
    let format = ListFormat {
        key: None,
        expected: "The Things Stack's device list: a JSON array of end devices, or {\"end_devices\": [ … ]}",
        not_a_device: ("ids", "not an end device"),
        name: |d: &TtsDevice| &d.ids.device_id,
    };
    read_list(file, bytes, format, |d: TtsDevice, origin, at, errors| {
        origin.field("id", "ids.device_id", at("device_id"));
        origin.field(
            "dev_eui",
            "ids.dev_eui",
            at("dev_eui").or_else(|| at("ids")),
        );
        let attr_at = at("attributes");
        let kind = match d.attributes.get(&opts.map.kind_tag) {
            Some(k) => {
                origin.field("kind", format!("attributes.{}", opts.map.kind_tag), attr_at);
                Some(k.clone())
            }
            None => {
                origin.field("kind", "version_ids", at("version_ids").or(origin.at));
                let (brand, model) = d
                    .version_ids
                    .as_ref()
                    .map_or(("", ""), |v| (v.brand_id.as_str(), v.model_id.as_str()));
                let both = format!("{brand}/{model}");
                let kind = opts.map.kind_of_profile(&[&both, model]);
                if kind.is_none() {
                    errors.push(origin.error(
                        "kind",
                        format!(
                            "no kind for model `{both}`: map it in the kind map (--kind-map), under [profiles]: \"{both}\" = \"<kind>\", or give the device a `{}` attribute",
                            opts.map.kind_tag
                        ),
                    ));
                }
                kind.map(str::to_string)
            }
        };
        let site = site_of(&d.attributes, opts, origin, attr_at, errors);
        let id = d.ids.device_id.clone();
        if !valid_id(&id) {
            errors.push(origin.error(
                "id",
                format!("`{id}` is not an identifier (lowercase letters, digits, '-', '_', '.')"),
            ));
        }
        let dev_eui = match d.ids.dev_eui.as_deref() {
            None => {
                errors.push(origin.error("dev_eui", "no dev_eui (list with the device's ids)"));
                None
            }
            Some(e) => {
                let n = normalise_eui(e);
                if n.is_none() {
                    errors.push(
                        origin.error("dev_eui", format!("`{e}` is not 16 hexadecimal digits")),
                    );
                }
                n
            }
        };
        let position = d
            .locations
            .get("user")
            .and_then(|l| wgs84(l.longitude?, l.latitude?))
            .or_else(|| position_from_tags(&d.attributes));
        Fields {
            id: valid_id(&id).then_some(id),
            kind,
            site,
            dev_eui,
            position,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map() -> KindMap {
        read_kind_map(
            "map.toml",
            b"# profiles of our network\n[profiles]\n\"Dragino LDDS75\" = \"water_level\"\n\"dragino/lht65\" = \"temperature\"\n",
        )
        .expect("valid map")
    }

    const CHIRPSTACK: &str = r#"{
  "totalCount": 3,
  "result": [
    {
      "devEui": "A84041000181C74B",
      "createdAt": "2026-03-02T09:12:45.123Z",
      "updatedAt": "2026-03-02T09:12:45.123Z",
      "lastSeenAt": "2026-11-30T17:03:11.870Z",
      "name": "Jauge Pont de l'Ouche",
      "description": "",
      "deviceProfileId": "5f4c1a3e-8c2d-4b7a-9e1f-2a3b4c5d6e7f",
      "deviceProfileName": "Dragino LDDS75",
      "deviceStatus": {"externalPowerSource": false, "batteryLevel": 92.5, "margin": 9},
      "tags": {"site": "dijon-ouche-reach-1"}
    },
    {
      "devEui": "a84041000181c74c",
      "name": "Jauge Pont 2",
      "deviceProfileName": "Dragino LDDS75"
    },
    {
      "devEui": "a84041000181c74d",
      "name": "Sonde",
      "deviceProfileName": "Elsys ERS",
      "tags": {"site": "x"}
    }
  ]
}"#;

    #[test]
    fn reads_a_chirpstack_list_with_the_map_and_a_default_site() {
        let map = map();
        let opts = LnsOptions {
            map: &map,
            default_site: Some("dijon-ouche-reach-2"),
        };
        let e = read_chirpstack("cs.json", CHIRPSTACK.as_bytes(), opts)
            .and_then(Records::checked)
            .expect_err("Elsys unmapped")
            .to_string();
        assert_eq!(
            e,
            "cs.json:24:7: `deviceProfileName`: device #2 `Sonde`: no kind for device profile `Elsys ERS`: map it in the kind map (--kind-map), under [profiles]: \"Elsys ERS\" = \"<kind>\", or give the device a `kind` tag"
        );
        let text = CHIRPSTACK
            .replace(
                "\"Elsys ERS\",",
                "\"Elsys ERS\", \"tags\": {\"kind\": \"air_quality\", \"site\": \"x\"},",
            )
            .replace(",\n      \"tags\": {\"site\": \"x\"}\n", "\n");
        let r = read_chirpstack("cs.json", text.as_bytes(), opts)
            .and_then(Records::checked)
            .expect("valid");
        let d: Vec<_> = r
            .devices
            .iter()
            .map(|d| {
                (
                    d.id.as_str(),
                    d.kind.as_str(),
                    d.site.as_str(),
                    d.dev_eui.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            d,
            [
                (
                    "jauge-pont-de-l-ouche",
                    "water_level",
                    "dijon-ouche-reach-1",
                    Some("a84041000181c74b")
                ),
                (
                    "jauge-pont-2",
                    "water_level",
                    "dijon-ouche-reach-2",
                    Some("a84041000181c74c")
                ),
                ("sonde", "air_quality", "x", Some("a84041000181c74d")),
            ]
        );
    }

    #[test]
    fn without_a_site_each_device_says_so() {
        let map = map();
        let opts = LnsOptions {
            map: &map,
            default_site: None,
        };
        let e = read_chirpstack("cs.json", CHIRPSTACK.as_bytes(), opts)
            .and_then(Records::checked)
            .expect_err("no site")
            .to_string();
        assert!(e.contains("cs.json:16:5: `tags.site`: device #1 `Jauge Pont 2`: no site: give the device a `site` tag"), "{e}");
        assert_eq!(e.lines().count(), 2, "{e}");
        assert!(
            e.contains("cs.json:24:7: `deviceProfileName`: device #2"),
            "{e}"
        );
    }

    #[test]
    fn reads_the_things_stack_list() {
        let text = r#"[
  {"ids": {"device_id": "eui-70b3d57ed0000001", "application_ids": {"application_id": "ville"}, "dev_eui": "70B3D57ED0000001", "join_eui": "0000000000000000"},
   "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "name": "Température école",
   "attributes": {"site": "dijon-ecole-1"}, "version_ids": {"brand_id": "dragino", "model_id": "lht65", "hardware_version": "_unknown_hw_version_", "firmware_version": "1.8", "band_id": "EU_863_870"},
   "locations": {"user": {"latitude": 47.32, "longitude": 5.04, "source": "SOURCE_REGISTRY"}}}
]"#;
        let map = map();
        let r = read_tts(
            "tts.json",
            text.as_bytes(),
            LnsOptions {
                map: &map,
                default_site: None,
            },
        )
        .expect("valid");
        let d = &r.devices[0];
        assert_eq!(
            (d.id.as_str(), d.kind.as_str(), d.site.as_str()),
            ("eui-70b3d57ed0000001", "temperature", "dijon-ecole-1")
        );
        assert_eq!(d.position, Some(beffroi_core::Point::new(5.04, 47.32)));
        let wrapped = format!("{{\"end_devices\": {text}}}");
        assert_eq!(
            read_tts(
                "tts.json",
                wrapped.as_bytes(),
                LnsOptions {
                    map: &map,
                    default_site: None
                }
            )
            .expect("wrapped")
            .devices
            .len(),
            1
        );
    }

    #[test]
    fn a_bad_kind_map_names_its_line() {
        let e = read_kind_map("m.toml", b"[profiles]\n\"a\" = 3\n")
            .expect_err("bad")
            .to_string();
        assert!(e.starts_with("m.toml:2:"), "{e}");
        let m = map();
        assert_eq!(
            m.profiles[1],
            (
                "dragino/lht65".to_string(),
                "temperature".to_string(),
                Loc::new(4, 19)
            )
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let map = KindMap::empty();
            let opts = LnsOptions { map: &map, default_site: Some("s") };
            let _ = read_chirpstack("f.json", &bytes, opts);
            let _ = read_tts("f.json", &bytes, opts);
            let _ = read_kind_map("f.toml", &bytes);
        }

        #[test]
        fn never_panics_on_device_lists(name in ".{0,12}", eui in "[0-9a-fA-Fx-]{0,20}", tags in proptest::collection::btree_map("site|kind|longitude|latitude", ".{0,6}", 0..4)) {
            let map = KindMap::empty();
            let opts = LnsOptions { map: &map, default_site: None };
            let doc = serde_json::json!({"totalCount": 1, "result": [{"devEui": eui, "name": name, "tags": tags}]});
            let _ = read_chirpstack("f.json", doc.to_string().as_bytes(), opts);
            let doc = serde_json::json!([{"ids": {"device_id": name, "dev_eui": eui}, "attributes": tags}]);
            let _ = read_tts("f.json", doc.to_string().as_bytes(), opts);
        }
    }
}
