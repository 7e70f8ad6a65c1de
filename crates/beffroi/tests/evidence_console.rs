//! The evidence of an incident in a real browser (`web/e2e/evidence.mjs`, Debian's Chromium
//! driven by playwright-core) against a real `beffroi serve` on the demo deployment: the
//! detail charts the triggering level around its trigger with the threshold line and the
//! trigger marked, lists the readings around the trigger, and shows the re-opening.
//!
//! Without Node.js, Chromium or `web/node_modules` the test prints SKIPPED and passes,
//! unless `BEFFROI_REQUIRE_SERVICES=1`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::beffroi::Beffroi;
use support::http::ADMIN_PASSWORD;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn missing() -> Option<String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node not found".into());
    }
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Some(format!("{} not found", chromium.display()));
    }
    let pw = repo().join("web/node_modules/playwright-core/package.json");
    if !pw.is_file() {
        return Some(format!("{} not found (npm ci in web/)", pw.display()));
    }
    None
}

#[test]
fn the_detail_charts_the_trigger_and_its_threshold() {
    if let Some(why) = missing() {
        if std::env::var("BEFFROI_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{why} and BEFFROI_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIPPED: {why} (set BEFFROI_REQUIRE_SERVICES=1 to fail instead)");
        return;
    }
    let beffroi = Beffroi::start(None);
    let shots = std::env::var_os("BEFFROI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/console-screenshots"))
        .join("evidence");
    let run = Command::new("node")
        .arg(repo().join("web/e2e/evidence.mjs"))
        .arg(beffroi.base())
        .arg(ADMIN_PASSWORD)
        .arg(&shots)
        .current_dir(repo().join("web"))
        .output()
        .expect("run node");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{log}");
    assert!(
        run.status.success() && log.contains("EVIDENCE E2E OK"),
        "the browser script failed:\n{log}\n{}",
        beffroi.log()
    );
}
