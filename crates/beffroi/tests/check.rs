//! `beffroi check` as a town's IT lead meets it: mistakes in several files of a copy of
//! the demo are all reported in one run, each at the line and column of the faulty field
//! itself, knock-on errors folded under their cause, with "did you mean"; a deployment
//! that loads but likely says something else gets warnings.

use std::path::{Path, PathBuf};

mod support;
use support::{beffroi_in, copy_dir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `beffroi check DIR` from `cwd`: success, stdout, stderr.
fn check(cwd: &Path, dir: &Path) -> (bool, String, String) {
    let o = beffroi_in(cwd, &["check", dir.to_str().expect("a UTF-8 path")]);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Replaces the first `from` of a file by `to`; returns the 1-based line and column (in
/// characters) where `marker` (a part of `to`) ends up.
fn edit(path: &Path, from: &str, to: &str, marker: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(path).expect("read");
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("{from} in {path:?}"));
    let text = format!("{}{to}{}", &text[..at], &text[at + from.len()..]);
    std::fs::write(path, &text).expect("write");
    let offset = at + to.find(marker).expect("marker in replacement");
    let line = text[..offset].matches('\n').count() + 1;
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

#[test]
fn every_mistake_of_every_file_at_its_own_field_in_one_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("town");
    copy_dir(&repo().join("demo"), &dir);
    let t = dir.join("territory");

    // A wrong site three lines below its `[[device]]` header.
    let (site_l, site_c) = edit(
        &t.join("devices/ahuy.toml"),
        "id = \"ahuy-mairie-access-01\"\nkind = \"access_reader\"\nsite = \"ahuy-mairie\"",
        "id = \"ahuy-mairie-access-01\"\nkind = \"access_reader\"\nsite = \"ahuy-mairiee\"",
        "\"ahuy-mairiee\"",
    );
    // A value of the wrong type.
    let (eui_l, eui_c) = edit(
        &t.join("devices/ahuy.toml"),
        "dev_eui = \"0004a3e51acee451\"",
        "dev_eui = 42",
        "42",
    );
    // A syntax error in one devices file, another in procedures.toml: both reported.
    let (syn_l, syn_c) = edit(
        &t.join("devices/daix.toml"),
        "kind = \"fire_panel\"",
        "kind = \"\nfire_panel\"",
        "\nfire",
    );
    let procedures = dir.join("procedures.toml");
    let mut text = std::fs::read_to_string(&procedures).expect("procedures");
    text.push_str("\n[[procedure]\n");
    std::fs::write(&procedures, &text).expect("write");
    let proc_line = text.lines().count();
    // One commune with a wrong position: the sites in it, their devices, the units and
    // rules naming it follow, and are counted under it instead of listed.
    let (com_l, com_c) = edit(
        &t.join("territory.toml"),
        "position = [5.0053, 47.2923]",
        "position = [500.0053, 47.2923]",
        "[500",
    );

    // From the folder's parent, with a relative path: file names are not doubled.
    let (ok, out, err) = check(tmp.path(), Path::new("town"));
    assert!(!ok, "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    let expect = [
        format!(
            "town/territory/territory.toml:{com_l}:{com_c}: `commune.position`: expected [longitude, latitude] in WGS84 degrees ("
        ),
        format!(
            "town/territory/devices/ahuy.toml:{site_l}:{site_c}: `device.site`: device `ahuy-mairie-access-01`: unknown site `ahuy-mairiee` (did you mean `ahuy-mairie`?)"
        ),
        format!(
            "town/territory/devices/ahuy.toml:{eui_l}:{eui_c}: `device.dev_eui`: invalid type: integer `42`, expected a string"
        ),
        format!("town/territory/devices/daix.toml:{syn_l}:{syn_c}: "),
        format!("town/procedures.toml:{proc_line}:"),
    ];
    assert_eq!(lines.len(), expect.len() + 1, "{err}");
    for (line, want) in lines.iter().zip(&expect) {
        assert!(
            line.starts_with(want.as_str()),
            "want {want}\n got {line}\n{err}"
        );
    }
    assert_eq!(lines[expect.len()], format!("{} error(s)", expect.len()));
    // The commune's knock-on errors are counted, not listed: its sites (in two files),
    // their devices, the units and the rules scoped to it.
    let folded: usize = lines[0]
        .rsplit_once('(')
        .and_then(|(_, n)| n.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count of folded errors");
    assert!(folded > 100, "{}", lines[0]);
    assert!(!err.contains("chenove-"), "{err}");
}

#[test]
fn a_category_without_procedure_and_unwatched_devices_are_warnings() {
    let (ok, out, err) = check(&repo(), Path::new("demo"));
    assert!(ok, "{out}{err}");
    assert!(!out.contains("has no procedure"), "{out}");

    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join("demo"), tmp.path());
    let (l, c) = edit(
        &tmp.path().join("rules.toml"),
        "category = \"flood\"",
        "category = \"floood\"",
        "\"floood\"",
    );
    let (ok, out, err) = check(tmp.path(), tmp.path());
    assert!(ok, "a warning does not fail the check: {out}{err}");
    let rules = tmp.path().join("rules.toml");
    let want = format!(
        "warning: {}:{l}:{c}: `category`: rule `flood-level-high`: category `floood` has no procedure in procedures.toml (did you mean `flood`?)",
        rules.display()
    );
    assert!(out.lines().any(|x| x.starts_with(&want)), "{want}\n{out}");
    // The demo's alerting line is watched by no rule: said once for its kind.
    assert_eq!(
        out.matches("of kind `alert_line`, `dijon-hotel-de-ville-sms-01`, is watched by no rule")
            .count(),
        1,
        "{out}"
    );
}
