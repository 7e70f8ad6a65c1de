//! The evidence of an incident in a real browser (`web/e2e/evidence.mjs`, Debian's Chromium
//! driven by playwright-core) against a real `beffroi serve` on the demo deployment: the
//! detail charts the triggering level around its trigger with the threshold line and the
//! trigger marked, lists the readings around the trigger, and shows the re-opening.
//!
//! Without Node.js, Chromium or `web/node_modules` the test prints SKIPPED and passes,
//! unless `BEFFROI_REQUIRE_SERVICES=1`.

mod support;

use support::beffroi::Beffroi;
use support::browser;
use support::http::ADMIN_PASSWORD;

#[test]
fn the_detail_charts_the_trigger_and_its_threshold() {
    if !browser::available() {
        return;
    }
    let beffroi = Beffroi::start(None);
    let shots = browser::screenshots().join("evidence");
    let (ok, log) = browser::node(
        "evidence.mjs",
        [
            std::ffi::OsStr::new(&beffroi.base()),
            std::ffi::OsStr::new(ADMIN_PASSWORD),
            shots.as_os_str(),
        ],
    );
    println!("{log}");
    assert!(
        ok && log.contains("EVIDENCE E2E OK"),
        "the browser script failed:\n{log}\n{}",
        beffroi.log()
    );
}
