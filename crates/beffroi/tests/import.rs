//! `beffroi import` on a copy of the demo deployment: a QGIS layer of sites, a
//! spreadsheet of devices and a ChirpStack device list go in; the result passes `check`;
//! importing the same files again changes nothing, byte for byte; a file with mistakes
//! is refused with every mistake at its line and column, and nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod support;
use support::{beffroi, copy_dir, text};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
        .display()
        .to_string()
}

/// Every file of the territory folder and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// A copy of the demo deployment whose kinds file declares a kind of site of its own.
fn deployment(work: &Path) -> PathBuf {
    let dep = work.join("deployment");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../demo"),
        &dep,
    );
    let kinds = dep.join("territory/kinds.toml");
    let mut text = std::fs::read_to_string(&kinds).expect("kinds");
    text.push_str(
        "\n# A kind of site of this town's own.\n[[site_kind]]\nid = \"water_tower\"\nlabel = { fr = \"Château d'eau\", en = \"Water tower\" }\n",
    );
    std::fs::write(&kinds, text).expect("write kinds");
    dep
}

#[test]
fn sites_devices_and_a_network_servers_list_import_once_and_then_change_nothing() {
    let work = tempfile::tempdir().expect("tmp");
    let dep = deployment(work.path());
    let d = dep.display().to_string();
    let territory = dep.join("territory");
    let (geojson, csv, chirpstack, map) = (
        fixture("sites-qgis.geojson"),
        fixture("devices-excel.csv"),
        fixture("chirpstack-devices.json"),
        fixture("kind-map.toml"),
    );
    let ahuy_before = std::fs::read_to_string(territory.join("devices/ahuy.toml")).expect("ahuy");

    // A dry run prints the plan and writes nothing.
    let before = snapshot(&dep);
    let o = beffroi(&["import", "--dir", &d, "--dry-run", "--geojson", &geojson]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("sites.geojson: 2 site(s) to add, 0 to update"),
        "{out}"
    );
    assert!(
        out.contains(
            "+ site `ahuy-chateau-eau` (water_tower, commune ahuy, Polygon of 5 positions)"
        ),
        "{out}"
    );
    assert!(out.contains("→ devices/imported-sites-qgis.toml"), "{out}");
    assert!(out.contains("dry run: nothing written"), "{out}");
    assert_eq!(snapshot(&dep), before, "a dry run writes nothing");

    // The GIS layer: two sites (one of the declared kind, its outline kept) and a device.
    let o = beffroi(&["import", "--dir", &d, "--geojson", &geojson]);
    assert!(o.status.success(), "{}", text(&o));
    let sites = std::fs::read_to_string(territory.join("sites.geojson")).expect("sites");
    assert!(sites.contains("{\"type\": \"Feature\", \"properties\": {\"id\": \"ahuy-chateau-eau\", \"name\": \"Château d'eau d'Ahuy\", \"kind\": \"water_tower\", \"commune\": \"ahuy\", \"zone\": \"ahuy-centre\"}, \"geometry\": {\"type\": \"Polygon\", \"coordinates\": [[[5.0158, 47.3741],"), "{sites}");

    // The spreadsheet: new devices at the new site, and an EUI changed in place in the
    // demo's own file, its comments and other devices untouched.
    let o = beffroi(&["import", "--dir", &d, "--csv-devices", &csv]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("devices: 2 device(s) to add, 1 to update, 0 unchanged"),
        "{out}"
    );
    assert!(
        out.contains("~ device `ahuy-mairie-smoke-01` in devices/ahuy.toml"),
        "{out}"
    );
    assert!(
        out.contains("dev_eui: 0004a3e51acee451 → 0004a3e51acee4ff"),
        "{out}"
    );
    assert!(
        out.contains("note: ") && out.contains("column `Remarque` ignored"),
        "{out}"
    );
    let ahuy = std::fs::read_to_string(territory.join("devices/ahuy.toml")).expect("ahuy");
    assert_eq!(
        ahuy,
        ahuy_before.replacen("0004a3e51acee451", "0004a3e51acee4ff", 1)
    );
    let imported = std::fs::read_to_string(territory.join("devices/imported-devices-excel.toml"))
        .expect("imported");
    assert!(imported.contains("[[device]]\nid = \"ahuy-stade-counter-02\"\nkind = \"people_counter\"\nsite = \"ahuy-stade\"\nposition = [5.0265, 47.372]\ndev_eui = \"70b3d57ed0a10003\"\n"), "{imported}");

    // The network server's list: kinds from the profile map, sites from tags or --site.
    let network_server = [
        "--chirpstack",
        &chirpstack,
        "--kind-map",
        &map,
        "--site",
        "ahuy-mairie",
    ];
    let o = beffroi(&[&["import", "--dir", &d][..], &network_server].concat());
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("+ device `limnimetre-suzon-amont` (water_level at ahuy-suzon, dev_eui a84041000181c001) → devices/imported-chirpstack-devices.toml"), "{out}");
    assert!(
        out.contains("+ device `detecteur-fumee-mairie-3` (smoke_detector at ahuy-mairie"),
        "{out}"
    );

    let o = beffroi(&["check", &d]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(": OK"), "{}", text(&o));

    // The same three files again: nothing to change, not a byte written.
    let after = snapshot(&dep);
    let o = beffroi(
        &[
            &[
                "import",
                "--dir",
                &d,
                "--geojson",
                &geojson,
                "--csv-devices",
                &csv,
            ][..],
            &network_server,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("nothing to change: 2 site(s) and 7 device(s) already as imported"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&dep), after, "files byte-identical");
}

#[test]
fn mistakes_are_all_reported_at_their_line_and_column_and_nothing_is_written() {
    let work = tempfile::tempdir().expect("tmp");
    let dep = deployment(work.path());
    let d = dep.display().to_string();
    let before = snapshot(&dep);
    let bad = fixture("devices-bad.csv");
    let o = beffroi(&["import", "--dir", &d, "--csv-devices", &bad]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for expected in [
        format!(
            "{bad}:4:4: `longitude`: 851234.5, 6793120.8 is not a WGS84 longitude and latitude"
        ),
        format!("{bad}:2:2: `kind`: unknown kind `water_levle` (did you mean `water_level`?)"),
        format!("{bad}:3:3: `site`: unknown site `ahuy-mairi` (did you mean `ahuy-mairie`?)"),
        format!("{bad}:5:6: `dev_eui`: `70b3d57ed0a1` is not 16 hexadecimal digits"),
        "4 error(s); nothing written".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected}\n{err}");
    }
    assert_eq!(snapshot(&dep), before);

    // A site of a kind nobody declared is refused with what to do.
    let csv = work.path().join("sites.csv");
    std::fs::write(
        &csv,
        "id,name,kind,commune,longitude,latitude\nahuy-silo,Silo,grain_silo,ahuy,5.02,47.37\n",
    )
    .expect("write");
    let o = beffroi(&[
        "import",
        "--dir",
        &d,
        "--csv-sites",
        &csv.display().to_string(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("`kind`: unknown site kind `grain_silo`")
            && text(&o).contains("[[site_kind]]"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&dep), before);
}
