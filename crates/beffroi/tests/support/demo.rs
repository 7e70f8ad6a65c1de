//! The repository's demo deployment (`demo/`): its folder and its devices, read from the
//! files so that the tests follow the generator.

use std::collections::HashMap;
use std::path::PathBuf;

/// The territory id (the `<territory>` level of MQTT topics).
pub const TERRITORY: &str = "dijon-metropole";

/// Site kinds the `intrusion-alarm` rule watches (demo/rules.toml).
pub const INTRUSION_SITE_KINDS: &[&str] = &["school", "gym", "media_library", "town_hall"];

#[derive(Clone, Debug)]
pub struct Device {
    pub id: String,
    pub kind: String,
    pub site: String,
    pub dev_eui: Option<String>,
}

/// Absolute path of `demo/`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../demo")
        .canonicalize()
        .expect("the demo folder exists")
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').to_owned()
}

/// Every device of `demo/territory/devices/*.toml`, files in name order.
pub fn devices() -> Vec<Device> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir().join("territory/devices"))
        .expect("demo devices folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("device file");
        let mut cur: Option<Device> = None;
        for line in text.lines().map(str::trim) {
            if line == "[[device]]" {
                out.extend(cur.take());
                cur = Some(Device {
                    id: String::new(),
                    kind: String::new(),
                    site: String::new(),
                    dev_eui: None,
                });
                continue;
            }
            let (Some(d), Some((k, v))) = (cur.as_mut(), line.split_once('=')) else {
                continue;
            };
            match k.trim() {
                "id" => d.id = unquote(v),
                "kind" => d.kind = unquote(v),
                "site" => d.site = unquote(v),
                "dev_eui" => d.dev_eui = Some(unquote(v)),
                _ => {}
            }
        }
        out.extend(cur.take());
    }
    assert!(out.len() > 100, "demo devices parsed: {}", out.len());
    out
}

/// Site id → site kind, from `demo/territory/sites.geojson`.
pub fn site_kinds() -> HashMap<String, String> {
    site_property("kind")
}

/// Site id → commune id, from `demo/territory/sites.geojson`.
pub fn site_communes() -> HashMap<String, String> {
    site_property("commune")
}

/// Site id → the text property `name` of each site of `demo/territory/sites.geojson`.
fn site_property(name: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir().join("territory/sites.geojson")).expect("sites");
    let v: serde_json::Value = serde_json::from_str(&text).expect("sites.geojson is JSON");
    v["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| {
            let p = &f["properties"];
            (
                p["id"].as_str().expect("site id").to_owned(),
                p[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("site {name}"))
                    .to_owned(),
            )
        })
        .collect()
}

/// The devices of one kind.
pub fn of_kind<'a>(all: &'a [Device], kind: &str) -> Vec<&'a Device> {
    all.iter().filter(|d| d.kind == kind).collect()
}

/// Intrusion panels on a site watched by `intrusion-alarm`.
pub fn watched_intrusion_panels(all: &[Device]) -> Vec<&Device> {
    let kinds = site_kinds();
    all.iter()
        .filter(|d| d.kind == "intrusion_panel")
        .filter(|d| {
            kinds
                .get(&d.site)
                .is_some_and(|k| INTRUSION_SITE_KINDS.contains(&k.as_str()))
        })
        .collect()
}
