//! Helpers for the integration tests of the `beffroi` binary: a real Mosquitto broker, a
//! real `beffroi serve` child process, an HTTP client, an MQTT publisher and the demo
//! deployment's devices. Each test binary uses a part of it.

#![allow(dead_code)]

pub mod beffroi;
pub mod browser;
pub mod demo;
pub mod demo_run;
pub mod http;
pub mod outside;
pub use beffroi_testkit::mosquitto;
pub mod publisher;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Runs the `beffroi` binary with `args` and waits for it to end.
pub fn beffroi(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_beffroi")).args(args))
}

/// Runs the `beffroi` binary with `args` from the folder `cwd` (for relative paths).
pub fn beffroi_in(cwd: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .current_dir(cwd)
        .args(args))
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run beffroi")
}

/// What a run printed: its standard output, then its standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Milliseconds since the epoch of the wall clock (the clock `serve` runs on).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Polls `f` every `every` until it returns `Some`, or panics with `what` (and the text
/// `context()` gives) at the deadline.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut context: impl FnMut() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-26T12:00:00.000Z`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// SenML `bt`: seconds since the epoch, with the milliseconds.
pub fn senml_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

/// What Beffroi and the broker logged, for assertion messages.
pub fn logs(beffroi: &beffroi::Beffroi, broker: &mosquitto::Mosquitto) -> String {
    format!(
        "{}--- mosquitto ---\n{}",
        beffroi.log(),
        tail(&broker.log(), 40)
    )
}

/// Copies a folder recursively (a deployment to edit in a test).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Replaces a file atomically, as editors and deployment tools do.
pub fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Slot `i` of a device stream: (device id, SenML pack, event time). Times are 20 ms apart
/// from `base_ms`; one slot in `panel_every` is the intrusion panel, alternately alarm and
/// clear, the others are the gauges in turn with normal levels.
pub fn stream_message(
    i: usize,
    base_ms: i64,
    gauges: &[String],
    panel: &str,
    panel_every: usize,
) -> (String, String, i64) {
    let t = base_ms + i as i64 * 20;
    if i % panel_every == panel_every / 2 {
        let on = (i / panel_every).is_multiple_of(2);
        (
            panel.to_owned(),
            format!(r#"[{{"bt":{},"n":"intrusion","vb":{on}}}]"#, senml_time(t)),
            t,
        )
    } else {
        let g = &gauges[i % gauges.len()];
        let level = 0.5 + (i % 100) as f64 / 1000.0;
        (
            g.clone(),
            format!(r#"[{{"bt":{},"n":"level_m","v":{level}}}]"#, senml_time(t)),
            t,
        )
    }
}
