//! `beffroi check` and `beffroi privacy register|notices` on real folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;
use support::copy_dir;

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../demo")
}

fn beffroi(args: &[&str], dir: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_beffroi"));
    c.args(args);
    if let Some(d) = dir {
        c.arg(d);
    }
    c.output().expect("run beffroi")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_prints_the_register_and_fails_when_it_is_incomplete() {
    let o = beffroi(&["check"], Some(&demo()));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("register of processing: 6 activities") && text(&o).contains("complete"),
        "{}",
        text(&o)
    );

    // Without the activity of Beffroi's own records, the register is incomplete.
    let work = tempfile::tempdir().expect("tmp");
    let dep = work.path().join("deployment");
    copy_dir(&demo(), &dep);
    let privacy = std::fs::read_to_string(dep.join("privacy.toml")).expect("read");
    let cut = privacy
        .find("[[activity]]\nid = \"incident_management\"")
        .expect("the demo declares incident_management");
    let end = privacy[cut + 1..]
        .find("[[activity]]")
        .map_or(privacy.len(), |i| cut + 1 + i);
    let without = format!("{}{}", &privacy[..cut], &privacy[end..]);
    std::fs::write(dep.join("privacy.toml"), without).expect("write");
    let o = beffroi(&["check"], Some(&dep));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("`incident_log.detail`"), "{}", text(&o));
    assert!(text(&o).contains("INCOMPLETE"), "{}", text(&o));

    // An activity whose purposes are blank.
    let blank = privacy.replace(
        "purposes = [\"Prévenir les surfréquentations lors des manifestations\"]",
        "purposes = [\"  \"]",
    );
    assert_ne!(blank, privacy);
    std::fs::write(dep.join("privacy.toml"), blank).expect("write");
    let o = beffroi(&["check"], Some(&dep));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("`activity.crowd_safety`: no purpose declared"),
        "{}",
        text(&o)
    );
}

#[test]
fn register_and_notices_are_written() {
    let work = tempfile::tempdir().expect("tmp");
    let json = work.path().join("register.json");
    let o = beffroi(
        &[
            "privacy",
            "register",
            "--out",
            json.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("json");
    assert_eq!(v["summary"]["complete"], true);
    assert_eq!(v["activities"].as_array().map(Vec::len), Some(6));

    let html = work.path().join("registre.html");
    let o = beffroi(
        &[
            "privacy",
            "register",
            "--out",
            html.to_str().expect("utf-8"),
        ],
        Some(&demo()),
    );
    assert!(o.status.success(), "{}", text(&o));
    let page = std::fs::read_to_string(&html).expect("read");
    assert!(page.contains("Registre des activités de traitement"));

    let o = beffroi(&["privacy", "register", "--out", "register.txt"], None);
    assert!(!o.status.success(), "an unknown extension is refused");

    let out = work.path().join("notices");
    let o = beffroi(
        &["privacy", "notices", "--out", out.to_str().expect("utf-8")],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let pages = std::fs::read_dir(&out).expect("notices").count();
    let index = std::fs::read_to_string(out.join("index.html")).expect("index");
    assert!(pages > 1 && index.contains(".html\">"), "{pages} pages");
    assert!(
        text(&o).contains(&format!("{} public notices", pages - 1)),
        "{}",
        text(&o)
    );
}
