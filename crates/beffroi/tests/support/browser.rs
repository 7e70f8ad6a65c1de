//! What the browser tests share: whether Node.js, Chromium and playwright-core are here
//! (else the test is skipped, or fails under `BEFFROI_REQUIRE_SERVICES=1`), where their
//! screenshots go, and how a script of `web/e2e` is run.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Chromium the scripts drive (`CHROMIUM`, else Debian's).
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why the browser tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node not found".into());
    }
    if !chromium().is_file() {
        return Some(format!(
            "{} not found (apt-get install chromium, or set CHROMIUM)",
            chromium().display()
        ));
    }
    let pw = repo().join("web/node_modules/playwright-core/package.json");
    if !pw.is_file() {
        return Some(format!("{} not found (npm ci in web/)", pw.display()));
    }
    None
}

/// Whether a browser test can run: when it cannot, it says SKIPPED and the test passes,
/// unless `BEFFROI_REQUIRE_SERVICES=1`, where it fails.
pub fn available() -> bool {
    let Some(why) = missing() else {
        return true;
    };
    if std::env::var("BEFFROI_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{why} and BEFFROI_REQUIRE_SERVICES=1");
    }
    eprintln!("SKIPPED: {why} (set BEFFROI_REQUIRE_SERVICES=1 to fail instead)");
    false
}

/// Where the scripts save their screenshots (`BEFFROI_SCREENSHOTS`, else
/// `target/console-screenshots`).
pub fn screenshots() -> PathBuf {
    if let Some(d) = std::env::var_os("BEFFROI_SCREENSHOTS") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target.join("console-screenshots")
}

/// Runs `web/e2e/<script>` with these arguments from `web/`: whether it succeeded, and
/// what it printed.
pub fn node<I, S>(script: &str, args: I) -> (bool, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new("node")
        .arg(repo().join("web/e2e").join(script))
        .args(args)
        .current_dir(repo().join("web"))
        .output()
        .expect("run node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
