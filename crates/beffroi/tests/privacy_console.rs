//! The DPO's view in a real browser (`web/e2e/privacy.mjs`, Debian's Chromium driven by
//! playwright-core) against `beffroi demo`, logged in as the demo's `dpo` account (its
//! generated password is read from the demo's output).
//!
//! Without Node.js, Chromium or `web/node_modules` the test prints SKIPPED and passes,
//! unless `BEFFROI_REQUIRE_SERVICES=1`.

mod support;

use support::browser;

#[test]
fn the_dpo_view_renders_for_the_dpo_account() {
    if !browser::available() {
        return;
    }
    let demo = support::demo_run::start(&["dpo"]);
    let (base, password) = (&demo.base, &demo.accounts["dpo"]);
    let shots = browser::screenshots();
    let (ok, log) = browser::node(
        "privacy.mjs",
        [
            base.as_str(),
            "dpo",
            password.as_str(),
            &shots.to_string_lossy(),
        ],
    );
    println!("{log}");
    assert!(
        ok && log.contains("PRIVACY E2E OK"),
        "the browser script failed:\n{log}\n{}",
        std::fs::read_to_string(demo.dir.path().join("demo.err")).unwrap_or_default()
    );
    drop(demo);
}
