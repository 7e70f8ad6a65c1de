//! `beffroi init`: a deployment from an intercommunality or from INSEE codes that
//! `beffroi check` accepts; sites (a QGIS GeoJSON export) and devices (a CSV, a ChirpStack
//! device list) imported into it still pass `check`, `serve` runs it and a reading of an
//! imported LoRaWAN device opens an incident, and a second import changes nothing; a folder
//! that is not empty is refused; an unknown code or name gets the closest known one.

mod support;

use std::path::Path;
use std::time::Duration;

use support::beffroi::Beffroi;
use support::http::Api;
use support::{beffroi, poll, text};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn check_ok(dir: &str) -> String {
    let o = beffroi(&["check", dir]);
    let out = text(&o);
    assert!(o.status.success(), "check failed:\n{out}");
    assert!(!out.contains("error"), "{out}");
    out
}

/// The town halls the communes are placed at are in this build (else skipped, or a failure
/// in CI).
fn places() -> bool {
    let c = beffroi_communes::Catalogue::official().expect("the embedded table decodes");
    beffroi_testkit::available_or_skip(
        c.has_places(),
        "the communes were built without their town halls (no Python 3 with pip when building)",
    )
}

#[test]
fn an_intercommunality_becomes_a_deployment_that_check_accepts() {
    if !places() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("dijon");
    let d = dir.to_str().expect("utf-8");
    let o = beffroi(&[
        "init",
        d,
        "--name",
        "Dijon Métropole",
        "--epci",
        "dijon metropole",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("23 commune(s)"), "{out}");
    assert!(
        out.contains("beffroi import --dir"),
        "next steps name import: {out}"
    );
    assert!(
        out.contains("@etalab/decoupage-administratif 6.0.0"),
        "{out}"
    );

    let territory = read(&dir.join("territory/territory.toml"));
    assert_eq!(territory.matches("[[commune]]").count(), 23);
    assert!(
        territory.contains("id = \"dijon-metropole\""),
        "{territory}"
    );
    // The most populous member first: its town hall is the site.
    let first = territory.find("[[commune]]").expect("a commune");
    assert!(
        territory[first..]
            .starts_with("[[commune]]\nid = \"dijon\"\nname = \"Dijon\"\ninsee = \"21231\"")
    );
    assert!(
        territory.contains("insee = \"21278\""),
        "Fontaine-lès-Dijon"
    );
    assert!(territory.contains("id = \"fontaine-les-dijon\""));
    let outlines: serde_json::Value =
        serde_json::from_str(&read(&dir.join("territory/communes.geojson"))).expect("json");
    assert_eq!(outlines["features"].as_array().map(Vec::len), Some(23));
    let sites = read(&dir.join("territory/sites.geojson"));
    assert!(sites.contains("\"id\": \"dijon-mairie\""), "{sites}");
    for f in [
        "rules.toml",
        "procedures.toml",
        "units.toml",
        "escalation.toml",
        "crisis.toml",
        "situations.toml",
        "privacy.toml",
        "security.toml",
        "beffroi.toml",
        "territory/kinds.toml",
    ] {
        assert!(
            read(&dir.join(f)).starts_with('#'),
            "{f} opens with its comment"
        );
    }

    let out = check_ok(d);
    assert!(out.contains("23 communes"), "{out}");
    assert!(
        out.contains("register of processing") && out.contains("complete"),
        "{out}"
    );
    // The deployment is a config `serve` reads.
    let cfg = read(&dir.join("beffroi.toml"));
    assert!(cfg.contains("deployment = \".\""), "{cfg}");
}

#[test]
fn communes_by_code_then_imported_devices_pass_check_and_a_second_import_changes_nothing() {
    if !places() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("beaune");
    let d = dir.to_str().expect("utf-8");
    let o = beffroi(&[
        "init",
        d,
        "--name",
        "Ville de Beaune",
        "--commune",
        "21054,21173",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let territory = read(&dir.join("territory/territory.toml"));
    assert!(
        territory.contains("id = \"ville-de-beaune\""),
        "{territory}"
    );
    assert!(territory.contains("insee = \"21054\"") && territory.contains("insee = \"21173\""));
    assert!(
        territory.find("21054") < territory.find("21173"),
        "the given order"
    );
    check_ok(d);

    // The sites layer as QGIS saves it (EPSG:4326).
    let sites = work.path().join("sites.geojson");
    std::fs::write(
        &sites,
        r#"{"type": "FeatureCollection", "name": "sites",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
            "features": [
            {"type": "Feature", "properties": {"id": "beaune-bouzaise", "name": "Bouzaise au pont de la rue",
             "kind": "river_reach", "commune": "beaune", "river": "bouzaise"},
             "geometry": {"type": "Point", "coordinates": [4.8322, 47.0261]}},
            {"type": "Feature", "properties": {"id": "beaune-ecole-jules-ferry", "name": "École Jules Ferry",
             "kind": "school", "commune": "beaune"},
             "geometry": {"type": "Point", "coordinates": [4.8371, 47.0229]}}]}"#,
    )
    .expect("write");
    let devices = work.path().join("devices.csv");
    std::fs::write(
        &devices,
        "id,kind,site,dev_eui\nbeaune-mairie-fire-01,fire_panel,beaune-mairie,\n",
    )
    .expect("write");
    let chirpstack = work.path().join("chirpstack.json");
    std::fs::write(
        &chirpstack,
        r#"{"totalCount": 2, "result": [{"devEui": "a84041000181c0aa", "name": "Limnimètre Bouzaise",
            "deviceProfileName": "Dragino LDDS75 EU868",
            "tags": {"site": "beaune-bouzaise", "kind": "water_level"}},
            {"devEui": "a84041000181c0bb", "name": "Ecole Jules Ferry porte",
            "deviceProfileName": "Dragino LDS02 EU868",
            "tags": {"site": "beaune-ecole-jules-ferry", "kind": "intrusion_panel"}}]}"#,
    )
    .expect("write");
    let import = |extra: &[&str]| {
        let mut args = vec!["import", "--dir", d];
        args.extend_from_slice(extra);
        let o = beffroi(&args);
        assert!(o.status.success(), "import failed:\n{}", text(&o));
        text(&o)
    };
    let sources = [
        "--geojson",
        sites.to_str().expect("utf-8"),
        "--csv-devices",
        devices.to_str().expect("utf-8"),
        "--chirpstack",
        chirpstack.to_str().expect("utf-8"),
    ];
    import(&sources);
    let out = check_ok(d);
    assert!(
        out.contains("3 sites") && out.contains("3 devices"),
        "{out}"
    );
    assert!(
        !out.contains("rule `flood-level-high` can match no device"),
        "{out}"
    );
    let files = |dir: &Path| -> Vec<(String, String)> {
        let mut all = Vec::new();
        for sub in ["territory", "territory/devices"] {
            let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
                .expect("folder")
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| e.path())
                .collect();
            names.sort();
            all.extend(
                names
                    .into_iter()
                    .map(|p| (p.display().to_string(), read(&p))),
            );
        }
        all
    };
    let before = files(&dir);
    let again = import(&sources);
    assert!(again.contains("nothing to change"), "{again}");
    assert_eq!(files(&dir), before, "a second import writes nothing");

    // Served, the imported LoRaWAN door sensor's uplink (through ChirpStack's HTTP
    // integration format) opens the intrusion rule's incident at its school.
    let server = Beffroi::start_with(None, Some(dir.clone()));
    let api = Api::login(&server.base());
    let now = api.get_ok("/api/v1/clock")["now"]
        .as_str()
        .expect("now")
        .to_string();
    let uplink = serde_json::json!({
        "deviceInfo": {"devEui": "a84041000181c0bb", "deviceName": "Ecole Jules Ferry porte"},
        "time": now,
        "object": {"intrusion": true},
    });
    let (status, answer) = api.post(
        "/api/v1/observations?format=chirpstack",
        &uplink.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let incident = poll(
        "the intrusion incident of the imported device",
        Duration::from_secs(30),
        || server.log(),
        || {
            api.get_ok("/api/v1/incidents")
                .as_array()?
                .iter()
                .find(|i| i["rule"] == "intrusion-alarm")
                .cloned()
        },
    );
    assert_eq!(incident["site"], "beaune-ecole-jules-ferry", "{incident:#}");
}

#[test]
fn a_folder_that_is_not_empty_is_refused_and_left_alone() {
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(work.path().join("notes.txt"), "mine").expect("write");
    let d = work.path().to_str().expect("utf-8");
    let o = beffroi(&["init", d, "--name", "Ville de Beaune", "--commune", "21054"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("is not empty"), "{}", text(&o));
    let entries: Vec<_> = std::fs::read_dir(work.path()).expect("read").collect();
    assert_eq!(entries.len(), 1, "nothing written");
}

#[test]
fn unknown_codes_and_names_get_the_closest_known_one() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("x");
    let d = dir.to_str().expect("utf-8");
    let o = beffroi(&["init", d, "--name", "X", "--commune", "21213"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(
            "commune `21213` is not in the official list (did you mean `21231` (Dijon)?)"
        ),
        "{}",
        text(&o)
    );
    let o = beffroi(&["init", d, "--name", "X", "--epci", "Dijon Metropol"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("did you mean `242100410` (Dijon Métropole)?"),
        "{}",
        text(&o)
    );
    assert!(!dir.exists(), "nothing written on an error");
    // An overseas collectivity has no position in the data: init asks for one rather
    // than invent it, and takes it when given.
    let o = beffroi(&["init", d, "--name", "Papeete", "--commune", "98735"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--position"), "{}", text(&o));
    let o = beffroi(&[
        "init",
        d,
        "--name",
        "Papeete",
        "--commune",
        "98735",
        "--position",
        "98735=-149.5665,-17.535",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    check_ok(d);
}
