//! The DPO's view in a real browser (`web/e2e/privacy.mjs`, Debian's Chromium driven by
//! playwright-core) against `beffroi demo`, logged in as the demo's `dpo` account (its
//! generated password is read from the demo's output).
//!
//! Without Node.js, Chromium or `web/node_modules` the test prints SKIPPED and passes,
//! unless `BEFFROI_REQUIRE_SERVICES=1`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Kills the demo when the test ends, however it ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = dir.path().join("demo.out");
    let demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_beffroi"))
            .args(["demo", "--speed", "1", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(dir.path().join("data"))
            .stdout(Stdio::from(
                std::fs::File::create(&out).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("demo.err")).expect("stderr file"),
            ))
            .spawn()
            .expect("start beffroi demo"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let password = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let found = text.lines().find_map(|l| {
            let rest = l.split("login").nth(1)?.trim_start().strip_prefix(':')?;
            let (user, pw) = rest.trim().split_once(" / ")?;
            (user.trim() == "dpo").then(|| pw.split_whitespace().next().unwrap_or("").to_string())
        });
        let ready = ureq::get(&format!("{base}/healthz")).call().is_ok();
        if let (Some(p), true) = (&found, ready) {
            break p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not start or print the dpo account:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
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
        std::fs::read_to_string(dir.path().join("demo.err")).unwrap_or_default()
    );
    drop(demo);
}
