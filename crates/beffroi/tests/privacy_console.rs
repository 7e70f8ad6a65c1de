//! The DPO's view in a real browser (`web/e2e/privacy.mjs`, Debian's Chromium driven by
//! playwright-core) against `beffroi demo`, logged in as the demo's `dpo` account (its
//! generated password is read from the demo's output).
//!
//! Without Node.js, Chromium or `web/node_modules` the test prints SKIPPED and passes,
//! unless `BEFFROI_REQUIRE_SERVICES=1`.

use std::path::PathBuf;
use std::process::Command;

mod support;

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
fn the_dpo_view_renders_for_the_dpo_account() {
    if let Some(why) = missing() {
        if std::env::var("BEFFROI_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{why} and BEFFROI_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIPPED: {why} (set BEFFROI_REQUIRE_SERVICES=1 to fail instead)");
        return;
    }
    let demo = support::demo_run::start(&["dpo"]);
    let (base, password) = (&demo.base, &demo.accounts["dpo"]);
    let shots = std::env::var_os("BEFFROI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/console-screenshots"));
    let run = Command::new("node")
        .arg(repo().join("web/e2e/privacy.mjs"))
        .args([base.as_str(), "dpo", password.as_str()])
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
        run.status.success() && log.contains("PRIVACY E2E OK"),
        "the browser script failed:\n{log}\n{}",
        std::fs::read_to_string(demo.dir.path().join("demo.err")).unwrap_or_default()
    );
    drop(demo);
}
