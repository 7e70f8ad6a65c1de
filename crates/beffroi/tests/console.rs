//! The console in a real browser: Debian's Chromium driven by playwright-core
//! (`web/e2e/console.mjs`) against a real `beffroi serve` on the demo deployment. The
//! script logs in, checks the map, receives an incident live, acknowledges it, ticks its
//! SOP, assigns it, resolves it and switches the language; this test then checks through
//! the API that the browser really did it. Screenshots go to `$BEFFROI_SCREENSHOTS` or
//! `target/console-screenshots`.
//!
//! Without Node.js, Chromium or `web/node_modules` the test prints SKIPPED and passes,
//! unless `BEFFROI_REQUIRE_SERVICES=1`.

mod support;

use std::path::Path;
use std::process::Command;

use support::beffroi::Beffroi;
use support::browser::{self, screenshots};
use support::http::{ADMIN_PASSWORD, Api};

/// Runs `web/e2e/<script>` against `base` as the test's administrator.
fn run_script(script: &str, base: &str, shots: &Path) -> (bool, String) {
    browser::node(
        script,
        [
            std::ffi::OsStr::new(base),
            std::ffi::OsStr::new(ADMIN_PASSWORD),
            shots.as_os_str(),
        ],
    )
}

#[test]
fn an_operator_handles_a_live_incident_in_the_console() {
    if !browser::available() {
        return;
    }
    let beffroi = Beffroi::start(None);
    let shots = screenshots();
    let _ = std::fs::remove_dir_all(&shots);
    let (ok, log) = run_script("console.mjs", &beffroi.base(), &shots);
    println!("{log}");
    assert!(
        ok && log.contains("CONSOLE E2E OK"),
        "the browser script failed:\n{log}\n{}",
        beffroi.log()
    );

    for shot in [
        "map.png",
        "device.png",
        "queue.png",
        "detail.png",
        "units.png",
        "crisis.png",
        "report.png",
    ] {
        let p = shots.join(shot);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(
            len > 10_000,
            "{} is a real screenshot ({len} bytes)",
            p.display()
        );
    }

    // What the browser did is in the store, not only on the screen.
    let api = Api::login(&beffroi.base());
    let resolved = api.incidents("status=resolved");
    let inc = resolved
        .iter()
        .find(|i| i["rule"] == "intrusion-alarm")
        .unwrap_or_else(|| panic!("a resolved intrusion incident: {resolved:?}"));
    assert!(inc["acknowledged_at"].is_string(), "{inc}");
    // The unit the browser chose: engaged by the assignment, available again once its
    // only mission is resolved.
    let unit = log
        .lines()
        .find_map(|l| l.strip_prefix("UNIT "))
        .expect("the script names the unit")
        .trim()
        .to_string();
    assert_eq!(inc["unit"], unit.as_str(), "assigned: {inc}");
    let u = api.get_ok(&format!("/api/v1/units/{unit}"));
    assert_eq!(u["status"], "available", "{u}");
    let detail = api.get_ok(&format!("/api/v1/incidents/{}", inc["id"]));
    let steps = detail["sop"]["steps"].as_array().expect("steps");
    assert!(!steps.is_empty());
    for s in steps {
        assert_eq!(s["done_by"], "user:admin", "{s}");
    }
    let actions: Vec<&str> = detail["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "acknowledged",
        "step_done",
        "assigned",
        "comment",
        "resolved",
    ] {
        assert!(actions.contains(&a), "the log has `{a}`: {actions:?}");
    }

    // The map's clusters: the panel in alarm shows alone at street zoom and raises its
    // cluster's alarm count at the territory's zoom; the counts add up.
    let device = inc["device"].as_str().expect("a device incident");
    let pos = api.get_ok(&format!("/api/v1/devices/{device}"))["position"].clone();
    let (lon, lat) = (pos[0].as_f64().expect("lon"), pos[1].as_f64().expect("lat"));
    let street = api.get_ok(&format!(
        "/api/v1/map/clusters?z=17&bbox={},{},{},{}",
        lon - 0.001,
        lat - 0.001,
        lon + 0.001,
        lat + 0.001
    ));
    assert_eq!(street["clustered"], false, "{street}");
    let alone = street["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["properties"]["id"] == device)
        .unwrap_or_else(|| panic!("{device} is on the map at zoom 17: {street}"));
    assert_eq!(alone["properties"]["state"], "alarm", "{alone}");
    let wide = api.get_ok("/api/v1/map/clusters?z=10&bbox=4.6,47.1,5.5,47.6");
    let territory = api.get_ok("/api/v1/territory");
    assert_eq!(wide["total"], territory["devices"], "{}", wide["total"]);
    let features = wide["features"].as_array().expect("features");
    let counted: u64 = features
        .iter()
        .map(|f| f["properties"]["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(Some(counted), wide["in_view"].as_u64());
    assert_eq!(
        wide["in_view"], territory["devices"],
        "the box holds them all"
    );
    assert!(
        wide["states"]["alarm"].as_u64() >= Some(1),
        "{}",
        wide["states"]
    );
    let home = features
        .iter()
        .find(|f| {
            let p = &f["properties"];
            let within = |a: &str, v: f64, b: &str| {
                p[a].as_f64().is_some_and(|a| a <= v) && p[b].as_f64().is_some_and(|b| v <= b)
            };
            p["id"] == device || (within("west", lon, "east") && within("south", lat, "north"))
        })
        .unwrap_or_else(|| panic!("a cluster holds {device} at zoom 10"));
    if home["properties"]["id"] == device {
        assert_eq!(home["properties"]["state"], "alarm", "{home}");
    } else {
        assert!(home["properties"]["alarm"].as_u64() >= Some(1), "{home}");
        assert_eq!(home["properties"]["worst"], "alarm", "{home}");
    }
    // A bad box is refused with a precise error.
    let (status, err) = api.get("/api/v1/map/clusters?z=10&bbox=5.5,47.1,4.6,47.6");
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_request", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("west")),
        "{err}"
    );
}

/// Alerting (`web/e2e/alerting.mjs`): a critical incident arriving live changes the banner
/// and the title counter and schedules a tone, repeated until it is acknowledged; the mute
/// silences the tone only; a second tab shares the session; notifications once allowed.
#[test]
fn a_critical_incident_is_heard_and_counted_until_acknowledged() {
    if !browser::available() {
        return;
    }
    let beffroi = Beffroi::start(None);
    let shots = screenshots().join("alerting");
    let (ok, log) = run_script("alerting.mjs", &beffroi.base(), &shots);
    println!("{log}");
    assert!(
        ok && log.contains("ALERTING E2E OK"),
        "the browser script failed:\n{log}\n{}",
        beffroi.log()
    );

    // What the browser did is in the store: three fire alarms acknowledged, by the first
    // tab, by the second one (the same session) and with their situation, together with
    // the smoke-and-heat correlation that joined it.
    let api = Api::login(&beffroi.base());
    let acknowledged: Vec<_> = api
        .incidents("status=acknowledged")
        .into_iter()
        .filter(|i| i["category"] == "fire")
        .collect();
    let rules: Vec<_> = acknowledged
        .iter()
        .map(|i| i["rule"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        rules.iter().filter(|r| **r == "fire-alarm").count(),
        3,
        "{acknowledged:?}"
    );
    assert_eq!(
        rules.iter().filter(|r| **r == "fire-smoke-heat").count(),
        1,
        "the correlation was acknowledged with its situation: {acknowledged:?}"
    );
    let new = api.incidents("status=new");
    assert!(
        new.iter()
            .any(|i| i["rule"] == "fire-alarm" && i["severity"] == "critical"),
        "the third one waits: {new:?}"
    );
}

/// A console keeps its live stream open all day: SIGTERM must still stop the server at
/// once (the stream ends) rather than wait for the browser to go away.
#[test]
fn sigterm_ends_the_live_streams_and_the_process() {
    use std::io::Read;
    use std::time::Duration;

    let beffroi = Beffroi::start(None);
    let api = Api::login(&beffroi.base());
    let resp = support::http::agent()
        .get(&format!("{}/api/v1/stream", beffroi.base()))
        .header("Authorization", &format!("Bearer {}", api.token))
        .call()
        .expect("open the stream");
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = resp.into_body().into_reader();
    let client = std::thread::spawn(move || {
        // Reads until the server ends the stream.
        let mut buf = [0u8; 4096];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(beffroi.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    support::poll(
        "beffroi to exit after SIGTERM with a live stream open",
        Duration::from_secs(10),
        || beffroi.log(),
        || (!beffroi.is_running()).then_some(()),
    );
    client.join().expect("the stream reader ends");
}

/// Screens fitted to roles (`web/e2e/roles.mjs`) against `beffroi demo` and its accounts, one
/// per role (their generated passwords read from the demo's output): every tab a role sees
/// works without a 403, no raw server text reaches the screen, and the operator assigns a
/// unit of their communes to an incident of their communes.
#[test]
fn every_role_sees_only_screens_it_may_use() {
    if !browser::available() {
        return;
    }
    let demo = support::demo_run::start(&[
        "admin",
        "operator",
        "supervisor",
        "technician",
        "dpo",
        "auditor",
        "security_analyst",
        "crisis_director",
    ]);
    let (dir, base, accounts) = (&demo.dir, &demo.base, &demo.accounts);
    let file = dir.path().join("accounts.json");
    std::fs::write(
        &file,
        serde_json::to_string(accounts).expect("accounts as JSON"),
    )
    .expect("write the accounts");
    let shots = screenshots().join("roles");
    let (ok, log) = browser::node(
        "roles.mjs",
        [
            std::ffi::OsStr::new(base),
            file.as_os_str(),
            shots.as_os_str(),
        ],
    );
    println!("{log}");
    assert!(
        ok && log.contains("ROLES E2E OK"),
        "the browser script failed:\n{log}\n{}",
        std::fs::read_to_string(dir.path().join("demo.err")).unwrap_or_default()
    );
}

/// The map of an operator scoped to two communes (`web/e2e/map.mjs`): framed on them,
/// counting their communes, devices and open incidents (as many as the queue: a resolved
/// incident is not open), and the device panel of a role without quarantine prints no
/// literal `false`.
#[test]
fn an_operators_map_is_framed_on_and_counts_their_communes() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args([
            "users",
            "add",
            "--name",
            "op",
            "--role",
            "operator@dijon,talant",
        ])
        .arg("--file")
        .arg(&users)
        .env("BEFFROI_NEW_PASSWORD", ADMIN_PASSWORD)
        .output()
        .expect("users add");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let beffroi = Beffroi::start_extra(&format!(
        "[http]\nusers = {:?}\n",
        users.display().to_string()
    ));
    let shots = screenshots().join("map");
    let (ok, log) = run_script("map.mjs", &beffroi.base(), &shots);
    println!("{log}");
    assert!(
        ok && log.contains("MAP E2E OK"),
        "the browser script failed:\n{log}\n{}",
        beffroi.log()
    );
}

/// The shift handover in a real browser (`web/e2e/handover.mjs`) against `beffroi demo`: the
/// operator's note is shown pseudonymised with its time in the territory's time zone, the
/// log holds no system chatter, the printed handover drops the navigation and the form and
/// fits on one or two pages, and the supervisor marks the note read.
#[test]
fn the_handover_note_is_written_read_and_printed() {
    if !browser::available() {
        return;
    }
    let demo = support::demo_run::start(&["operator", "supervisor", "admin"]);
    let (dir, base, accounts) = (&demo.dir, &demo.base, &demo.accounts);
    let file = dir.path().join("accounts.json");
    std::fs::write(
        &file,
        serde_json::to_string(accounts).expect("accounts as JSON"),
    )
    .expect("write the accounts");
    let shots = screenshots().join("handover");
    let (ok, log) = browser::node(
        "handover.mjs",
        [
            std::ffi::OsStr::new(base),
            file.as_os_str(),
            shots.as_os_str(),
        ],
    );
    println!("{log}");
    assert!(
        ok && log.contains("HANDOVER E2E OK"),
        "the browser script failed:\n{log}\n{}",
        std::fs::read_to_string(dir.path().join("demo.err")).unwrap_or_default()
    );
}
