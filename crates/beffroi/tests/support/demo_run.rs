//! `beffroi demo` as a child process on a free loopback port, with the accounts it printed
//! (one per role, passwords generated at its start).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running demo, killed when dropped however the test ends.
pub struct RunningDemo {
    child: Child,
    pub base: String,
    /// Account name → the password the demo printed for it.
    pub accounts: BTreeMap<String, String>,
    pub dir: tempfile::TempDir,
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `login : user / password` lines of the demo's output.
fn accounts_in(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let rest = l.split("login").nth(1)?.trim_start().strip_prefix(':')?;
            let (user, pw) = rest.trim().split_once(" / ")?;
            Some((
                user.trim().to_string(),
                pw.split_whitespace().next().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// Starts `beffroi demo` at real speed and waits until it answers and has printed the
/// accounts of `wanted` (the administrator's password is generated too).
pub fn start(wanted: &[&str]) -> RunningDemo {
    start_at_speed(wanted, 1)
}

/// Like [`start`], with `speed` simulated seconds per wall-clock second (scenarios, reminders
/// and escalations come sooner).
pub fn start_at_speed(wanted: &[&str], speed: u32) -> RunningDemo {
    start_with(wanted, speed, &[], None)
}

/// A free loopback port whose next port is free too (`demo --peer` takes both).
fn two_free_ports() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Like [`start_at_speed`], with more arguments, and the administrator's password set
/// (`None`: generated and printed).
pub fn start_with(wanted: &[&str], speed: u32, args: &[&str], admin: Option<&str>) -> RunningDemo {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = two_free_ports();
    let out = dir.path().join("demo.out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beffroi"));
    cmd.args(["demo", "--speed", &speed.to_string(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(args);
    match admin {
        Some(pw) => cmd.env("BEFFROI_ADMIN_PASSWORD", pw),
        None => cmd.env_remove("BEFFROI_ADMIN_PASSWORD"),
    };
    let child = cmd
        .stdout(Stdio::from(
            std::fs::File::create(&out).expect("stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("demo.err")).expect("stderr file"),
        ))
        .spawn()
        .expect("start beffroi demo");
    let mut demo = RunningDemo {
        child,
        base: format!("http://127.0.0.1:{port}"),
        accounts: BTreeMap::new(),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let found = accounts_in(&text);
        let ready = ureq::get(&format!("{}/healthz", demo.base)).call().is_ok();
        if ready && wanted.iter().all(|u| found.contains_key(*u)) {
            demo.accounts = found;
            return demo;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not start or print its accounts:\n{text}"
        );
        // Polls the child's output, which no event announces.
        std::thread::sleep(Duration::from_millis(200));
    }
}
