//! The shipped demo territory and rules load without a single error.

use std::path::Path;

#[test]
fn demo_territory_and_rules_are_valid() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo");
    let t = beffroi_territory::load_dir(&demo.join("territory"))
        .unwrap_or_else(|e| panic!("demo territory invalid:\n{e}"));
    assert!(t.communes.len() >= 20, "{} communes", t.communes.len());
    assert!(t.devices.len() >= 2000, "{} devices", t.devices.len());
    let rules = beffroi_rules::parse(
        &beffroi_territory::SourceFile::read(&demo.join("rules.toml")).expect("read rules"),
        &t,
    )
    .unwrap_or_else(|e| panic!("demo rules invalid:\n{e}"));
    for id in [
        "flood-level-high",
        "intrusion-alarm",
        "fire-alarm",
        "gauge-silent",
    ] {
        assert!(rules.by_id(id).is_some(), "missing rule {id}");
    }
}
