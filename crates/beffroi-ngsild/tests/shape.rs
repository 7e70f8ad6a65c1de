//! The crate's shape: a pure crate (serde, serde_json and thiserror only; no runtime,
//! no `beffroi-core`), and no free-text field in the input model.

#[test]
fn dependencies_stay_pure() {
    let manifest = include_str!("../Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_default();
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['.', '=', ' ']).next())
        .filter(|n| !n.is_empty())
        .collect();
    assert_eq!(
        names,
        ["serde", "serde_json", "thiserror"],
        "a new dependency is a decision: record it"
    );
}

#[test]
fn input_model_has_no_free_text() {
    let source = include_str!("../src/models.rs");
    let facts = source.split("pub struct ").skip(1).filter(|s| {
        s.contains("Facts") || s.starts_with("GaugeReading") || s.starts_with("CrowdCount")
    });
    for item in facts {
        let body = item.split('}').next().unwrap_or_default();
        for line in body.lines().filter(|l| l.trim_start().starts_with("pub ")) {
            assert!(
                !line.contains("String"),
                "free text in the input model: {line}"
            );
        }
    }
}
