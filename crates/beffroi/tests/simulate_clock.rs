//! `beffroi simulate --to http://…` with its default flags against `beffroi serve` (the
//! wall clock): the simulator follows the server's clock, so the scenario's incident opens
//! and nothing is refused as ahead of the server's time nor raised as clock skew (played at
//! the demo's 60× from the wall clock, a minute of it was an hour ahead of the server).
//! A pace other than the server's is refused with the reason.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::beffroi::Beffroi;
use support::copy_dir;
use support::http::{ADMIN_PASSWORD, Api, metric};
use support::poll;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fire panel goes off a few seconds into the scenario.
const QUICK_FIRE: &str = r#"
name = "quick-fire"
title = "Feu rapide"
description = "The town hall's fire panel goes off after 4 seconds."
duration = "1m"

[[event]]
at = "4s"
device = "dijon-hotel-de-ville-fire-01"
values = { fire = true, fault = false }
format = "json"

[[expect]]
rule = "fire-alarm"
category = "fire"
site = "dijon-hotel-de-ville"
by = "30s"
"#;

#[test]
fn simulate_follows_a_wall_clock_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dep = tmp.path().join("town");
    copy_dir(&repo().join("demo"), &dep);
    // The background and one quick scenario: played at the wall clock's pace, it ends soon.
    for entry in std::fs::read_dir(dep.join("scenarios")).expect("scenarios") {
        let path = entry.expect("entry").path();
        if path.file_stem().is_some_and(|s| s != "background") {
            std::fs::remove_file(&path).expect("remove");
        }
    }
    std::fs::write(dep.join("scenarios/quick-fire.toml"), QUICK_FIRE).expect("write");
    let beffroi = Beffroi::start_with(None, Some(dep.clone()));
    let api = Api::login(&beffroi.base());

    // A pace other than the server's is refused before anything is sent.
    let refused = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .env("BEFFROI_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .args(["simulate", "--to", &beffroi.base(), "--speed", "60"])
        .arg("--deployment")
        .arg(&dep)
        .output()
        .expect("run simulate");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("runs its clock at 1× the wall clock") && err.contains("bad_time"),
        "{err}"
    );

    // Default flags: the server's pace and time.
    let server_ms = || {
        api.get_ok("/api/v1/clock")["now_ms"]
            .as_i64()
            .expect("now_ms")
    };
    let t0 = server_ms();
    let mut sim = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .env("BEFFROI_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .args(["simulate", "--to", &beffroi.base()])
        .arg("--deployment")
        .arg(&dep)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start simulate");
    let opened = poll(
        "the scenario's fire incident",
        Duration::from_secs(60),
        || beffroi.log(),
        || {
            let list = api.get_ok("/api/v1/incidents");
            list.as_array()?
                .iter()
                .find(|i| i["rule"] == "fire-alarm")
                .cloned()
        },
    );
    assert_eq!(opened["category"], "fire", "{opened:#}");
    // Twelve seconds of the server's time played: at the demo's 60×, the background would
    // by now be stamped twelve minutes ahead of the server, beyond the five it tolerates.
    poll(
        "12 s of the server's time",
        Duration::from_secs(60),
        || beffroi.log(),
        || (server_ms() >= t0 + 12_000).then_some(()),
    );
    let _ = sim.kill();
    let _ = sim.wait();
    let m = api.metrics();
    let accepted: f64 = m
        .lines()
        .filter(|l| l.starts_with("beffroi_observations_accepted_total"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert!(accepted >= 2.0, "{accepted}\n{m}");
    for reason in ["bad_time", "expired"] {
        let n = metric(
            &m,
            "beffroi_observations_rejected_total",
            &[("source", "http"), ("reason", reason)],
        )
        .unwrap_or(0.0);
        assert_eq!(n, 0.0, "{reason}: {m}");
    }
    let skewed: Vec<_> = api
        .get_ok("/api/v1/incidents")
        .as_array()
        .expect("incidents")
        .iter()
        .filter(|i| i["rule"].as_str().is_some_and(|r| r.contains("clock_skew")))
        .cloned()
        .collect();
    assert!(skewed.is_empty(), "{skewed:#?}");
}
