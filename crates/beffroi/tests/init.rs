//! `beffroi init`: a deployment from an intercommunality or from INSEE codes that
//! `beffroi check` accepts; sites and devices imported into it (CSV, a ChirpStack device
//! list) still pass `check`, and a second import changes nothing; a folder that is not
//! empty is refused; an unknown code or name gets the closest known one.

use std::path::Path;
use std::process::{Command, Output};

fn beffroi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(args)
        .output()
        .expect("run beffroi")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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

#[test]
fn an_intercommunality_becomes_a_deployment_that_check_accepts() {
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

    let sites = work.path().join("sites.csv");
    std::fs::write(
        &sites,
        "id,name,kind,commune,longitude,latitude,river\n\
         beaune-bouzaise,Bouzaise au pont de la rue,river_reach,beaune,4.8322,47.0261,bouzaise\n",
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
        r#"{"totalCount": 1, "result": [{"devEui": "a84041000181c0aa", "name": "Limnimètre Bouzaise",
            "deviceProfileName": "Dragino LDDS75 EU868",
            "tags": {"site": "beaune-bouzaise", "kind": "water_level"}}]}"#,
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
        "--csv-sites",
        sites.to_str().expect("utf-8"),
        "--csv-devices",
        devices.to_str().expect("utf-8"),
        "--chirpstack",
        chirpstack.to_str().expect("utf-8"),
    ];
    import(&sources);
    let out = check_ok(d);
    assert!(
        out.contains("2 sites") && out.contains("2 devices"),
        "{out}"
    );
    assert!(
        !out.contains("rule `flood-level-high` can match no device"),
        "{out}"
    );
    let again = import(&sources);
    assert!(again.contains("nothing to change"), "{again}");
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
