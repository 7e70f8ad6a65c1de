//! `beffroi check` refuses prohibited data: a demo copy whose kinds declare a
//! biometric category and a categorisation of people fails with the reason, file, line and
//! field; the demo itself passes. Free technical text is reported, a bad declaration of
//! a text field's values or pattern refused.

use std::path::{Path, PathBuf};

mod support;
use support::{beffroi, copy_dir, text};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(dir: &Path) -> (bool, String) {
    let o = beffroi(&["check", dir.to_str().expect("a UTF-8 path")]);
    (o.status.success(), text(&o))
}

#[test]
fn check_refuses_biometric_and_categorising_kinds() {
    let (ok, out) = check(&repo().join("demo"));
    assert!(ok, "the demo passes: {out}");

    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join("demo"), dir.path());
    let kinds = dir.path().join("territory/kinds.toml");
    let mut text = std::fs::read_to_string(&kinds).expect("kinds");
    let first_new_line = text.lines().count() + 2;
    text.push_str(
        "\n[[kind]]\nid = \"gate_camera\"\nlabel = \"Gate camera\"\n\
         [[kind.field]]\nname = \"signature\"\ntype = \"text\"\ncategory = \"biometric\"\n\
         [[kind.field]]\nname = \"visitors_by_gender\"\ntype = \"number\"\ncategory = \"technical\"\n",
    );
    std::fs::write(&kinds, text).expect("write kinds");
    let (ok, out) = check(dir.path());
    assert!(!ok, "refused: {out}");
    assert!(out.contains("kinds.toml:"), "{out}");
    assert!(
        out.contains("`field.category`") && out.contains("GDPR art. 9"),
        "{out}"
    );
    assert!(
        out.contains("visitors_by_gender") && out.contains("AI Act art. 5"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "kinds.toml:{}:12: `field.category`",
            first_new_line + 6
        )),
        "the biometric field's line: {out}"
    );
}

/// The demo declares its technical text fields (no warning); a copy whose camera firmware
/// is free text passes with a warning naming the field, and one with an unbounded pattern
/// is refused with file, line and field.
#[test]
fn check_reports_free_technical_text_and_refuses_unbounded_patterns() {
    let (ok, out) = check(&repo().join("demo"));
    assert!(ok, "the demo passes: {out}");
    assert!(!out.contains("free technical text"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join("demo"), dir.path());
    let kinds = dir.path().join("territory/kinds.toml");
    let text = std::fs::read_to_string(&kinds).expect("kinds");
    let (line, pattern) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("pattern = "))
        .expect("the demo's firmware pattern");
    std::fs::write(&kinds, text.replace(pattern, "")).expect("write kinds");
    let (ok, out) = check(dir.path());
    assert!(ok, "a warning, not a refusal: {out}");
    assert!(
        out.contains("warning: `camera_health.firmware` is free technical text"),
        "{out}"
    );

    std::fs::write(&kinds, text.replace(pattern, "pattern = \"[0-9.]+\"")).expect("write");
    let (ok, out) = check(dir.path());
    assert!(!ok, "refused: {out}");
    assert!(
        out.contains(&format!("kinds.toml:{}:11: `field.pattern`", line + 1))
            && out.contains("camera_health.firmware")
            && out.contains("any length"),
        "{out}"
    );
}
