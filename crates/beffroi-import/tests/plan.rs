//! Plans and their application on deployment files: in place, comments kept, and
//! idempotent (a plan applied, the same import planned again is empty).

use std::sync::Arc;

use beffroi_core::Point;
use beffroi_import::{
    Change, DeploymentFiles, DeviceRecord, Geometry, Origin, Records, SiteRecord, apply, plan,
};
use proptest::prelude::*;

const DIJON: &str = "# Devices of Dijon.\n\n[[device]]\nid = \"g1\"\nkind = \"water_level\"   # the gauge under the bridge\nsite = \"s1\"\n\n[[device]]\nid = \"g2\"\nkind = \"water_level\"\nsite = \"s1\"\ndev_eui = \"0004A3E51ACEE451\"\n";

const SITES: &str = "{\"type\": \"FeatureCollection\", \"features\": [\n{\"type\": \"Feature\", \"properties\": {\"id\": \"s1\", \"name\": \"Pont\", \"kind\": \"river_reach\", \"commune\": \"c1\", \"zone\": \"z1\"}, \"geometry\": {\"type\": \"Point\", \"coordinates\": [5.0, 47.0]}},\n{\"type\": \"Feature\", \"properties\": {\"id\": \"s2\", \"name\": \"Stade\", \"kind\": \"event_ground\", \"commune\": \"c1\"}, \"geometry\": {\"type\": \"Polygon\", \"coordinates\": [[[5.0, 47.0], [5.1, 47.0], [5.1, 47.1], [5.0, 47.0]]]}}\n]}\n";

fn files() -> DeploymentFiles {
    DeploymentFiles {
        devices: vec![("devices/dijon.toml".into(), DIJON.into())],
        sites: SITES.into(),
    }
}

fn origin(file: &str) -> Origin {
    Origin::new(&Arc::from(file), None, "")
}

fn device(id: &str, site: &str, position: Option<Point>, eui: Option<&str>) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        kind: "water_level".into(),
        site: site.into(),
        position,
        dev_eui: eui.map(str::to_string),
        origin: origin("import/lns.json"),
    }
}

fn site(id: &str, name: &str, geometry: Geometry) -> SiteRecord {
    SiteRecord {
        id: id.into(),
        name: name.into(),
        kind: "river_reach".into(),
        commune: "c1".into(),
        zone: None,
        river: None,
        geometry,
        origin: origin("sites.csv"),
    }
}

/// The deployment's files after the writes.
fn written(mut files: DeploymentFiles, records: &Records) -> DeploymentFiles {
    let p = plan(&files, records).expect("plan");
    for w in apply(&p, &files).expect("apply") {
        if w.path == "sites.geojson" {
            files.sites = w.text;
        } else if let Some(f) = files.devices.iter_mut().find(|(p, _)| *p == w.path) {
            f.1 = w.text;
        } else {
            files.devices.push((w.path, w.text));
        }
    }
    files
}

#[test]
fn devices_are_updated_in_place_and_new_ones_go_to_the_sources_file() {
    let records = Records {
        devices: vec![
            device("g1", "s1", None, Some("70b3d57ed0000001")),
            device("g2", "s1", None, Some("0004a3e51acee451")),
            device("g3", "s2", Some(Point::new(5.05, 47.05)), None),
        ],
        ..Records::default()
    };
    let p = plan(&files(), &records).expect("plan");
    assert_eq!(
        p.unchanged_devices, 1,
        "g2's EUI is the same whatever its case"
    );
    assert_eq!(p.devices.len(), 2);
    assert_eq!(p.devices[0].file, "devices/dijon.toml");
    assert!(
        matches!(&p.devices[0].change, Change::Update(f) if f.len() == 1 && f[0].field == "dev_eui" && f[0].old == "(none)")
    );
    assert_eq!(p.devices[1].file, "devices/imported-lns.toml");
    assert_eq!(p.devices[1].change, Change::Add);
    let text = p.to_string();
    assert!(
        text.contains("devices: 1 device(s) to add, 1 to update, 1 unchanged"),
        "{text}"
    );
    assert!(
        text.contains("dev_eui: (none) → 70b3d57ed0000001"),
        "{text}"
    );

    let after = written(files(), &records);
    let dijon = &after.devices[0].1;
    assert_eq!(
        *dijon,
        DIJON.replace(
            "site = \"s1\"\n\n[[device]]\nid = \"g2\"",
            "site = \"s1\"\ndev_eui = \"70b3d57ed0000001\"\n\n[[device]]\nid = \"g2\""
        ),
        "only the new line differs; the comment stays"
    );
    let (path, new) = &after.devices[1];
    assert_eq!(path, "devices/imported-lns.toml");
    assert!(
        new.starts_with("# Devices imported by `beffroi import` from lns.json."),
        "{new}"
    );
    assert!(new.ends_with("\n[[device]]\nid = \"g3\"\nkind = \"water_level\"\nsite = \"s2\"\nposition = [5.05, 47.05]\n"), "{new}");
    assert!(plan(&after, &records).expect("again").is_empty());
}

#[test]
fn a_changed_field_keeps_the_comment_after_it() {
    let mut moved = device("g1", "s2", None, None);
    moved.kind = "rain_gauge".into();
    let after = written(
        files(),
        &Records {
            devices: vec![moved],
            ..Records::default()
        },
    );
    assert!(
        after.devices[0]
            .1
            .contains("kind = \"rain_gauge\"   # the gauge under the bridge\nsite = \"s2\"\n"),
        "{}",
        after.devices[0].1
    );
}

#[test]
fn sites_are_updated_in_place_appended_and_outlines_kept() {
    let records = Records {
        sites: vec![
            site("s1", "Pont Neuf", Geometry::Point(Point::new(5.0, 47.0))),
            site("s2", "Stade", Geometry::Point(Point::new(5.05, 47.03))),
            site(
                "s3",
                "Écluse \"nord\"",
                Geometry::Point(Point::new(5.2, 47.2)),
            ),
        ],
        ..Records::default()
    };
    let mut records = records;
    records.sites[1].kind = "event_ground".into();
    let p = plan(&files(), &records).expect("plan");
    assert_eq!(p.sites.len(), 2, "{p}");
    assert_eq!(p.unchanged_sites, 1);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("site `s2`: its outline in sites.geojson is kept")),
        "{p}"
    );
    let after = written(files(), &records);
    let lines: Vec<_> = after.sites.lines().collect();
    assert_eq!(lines.len(), 5, "{}", after.sites);
    assert_eq!(
        lines[1],
        "{\"type\": \"Feature\", \"properties\": {\"id\": \"s1\", \"name\": \"Pont Neuf\", \"kind\": \"river_reach\", \"commune\": \"c1\", \"zone\": \"z1\"}, \"geometry\": {\"type\": \"Point\", \"coordinates\": [5.0, 47.0]}},"
    );
    assert_eq!(
        lines[2],
        format!("{},", SITES.lines().nth(2).expect("s2")),
        "untouched but for the comma before the new site"
    );
    assert_eq!(
        lines[3],
        "{\"type\": \"Feature\", \"properties\": {\"id\": \"s3\", \"name\": \"Écluse \\\"nord\\\"\", \"kind\": \"river_reach\", \"commune\": \"c1\"}, \"geometry\": {\"type\": \"Point\", \"coordinates\": [5.2, 47.2]}}"
    );
    serde_json::from_str::<serde_json::Value>(&after.sites).expect("still JSON");
    assert!(plan(&after, &records).expect("again").is_empty());
}

#[test]
fn sites_go_into_an_empty_collection() {
    let mut f = files();
    f.sites = "{\"type\": \"FeatureCollection\", \"features\": []}".into();
    let records = Records {
        sites: vec![site("a", "A", Geometry::Point(Point::new(1.0, 2.0)))],
        ..Records::default()
    };
    let after = written(f, &records);
    let v: serde_json::Value = serde_json::from_str(&after.sites).expect("JSON");
    assert_eq!(v["features"][0]["properties"]["id"], "a");
    assert!(plan(&after, &records).expect("again").is_empty());
}

fn arb_point() -> impl Strategy<Value = Point> {
    (-180.0f64..=180.0, -90.0f64..=90.0).prop_map(|(lon, lat)| Point::new(lon, lat))
}

fn arb_records() -> impl Strategy<Value = Records> {
    let ids = prop::sample::select(vec!["g1", "g2", "g3", "g4", "n-1", "n-2"]);
    let devices = prop::collection::btree_map(
        ids,
        (
            prop::sample::select(vec!["s1", "s2", "s3"]),
            prop::option::of(arb_point()),
            prop::option::of("[0-9a-f]{16}"),
        ),
        0..6,
    );
    let sites = prop::collection::btree_map(
        prop::sample::select(vec!["s1", "s2", "s3", "s4"]),
        (
            "[A-Za-zé \"\\\\]{1,8}",
            arb_point(),
            prop::option::of(prop::sample::select(vec!["z1", "z2"])),
            any::<bool>(),
        ),
        0..4,
    );
    (devices, sites).prop_map(|(devices, sites)| Records {
        devices: devices
            .into_iter()
            .map(|(id, (site, p, eui))| device(id, site, p, eui.as_deref()))
            .collect(),
        sites: sites
            .into_iter()
            .map(|(id, (name, p, zone, line))| {
                let g = if line {
                    Geometry::LineString(vec![p, Point::new(p.lon / 2.0, p.lat / 2.0)])
                } else {
                    Geometry::Point(p)
                };
                let mut s = site(id, &name, g);
                s.zone = zone.map(str::to_string);
                s
            })
            .collect(),
        notes: vec![],
        errors: Default::default(),
    })
}

proptest! {
    /// Whatever is imported: once applied, the same import plans nothing and writes
    /// nothing new, and a second different import applied on top is idempotent too.
    #[test]
    fn applying_then_planning_again_is_empty(first in arb_records(), second in arb_records()) {
        let once = written(files(), &first);
        let again = plan(&once, &first).expect("plan");
        prop_assert!(again.is_empty(), "{}", again);
        let twice = written(once.clone(), &first);
        prop_assert_eq!(&twice.sites, &once.sites);
        prop_assert_eq!(&twice.devices, &once.devices);
        let other = written(once, &second);
        let again = plan(&other, &second).expect("plan");
        prop_assert!(again.is_empty(), "{}", again);
        serde_json::from_str::<serde_json::Value>(&other.sites).expect("JSON");
        for (path, text) in &other.devices {
            prop_assert!(text.parse::<toml::Table>().is_ok(), "{path}: {text}");
        }
    }
}
