//! The restore drill: `beffroi backup` of a running server while readings keep arriving,
//! `beffroi restore` into a fresh folder, `beffroi audit verify` on the restored log, and a
//! server started on the restored folder that holds the incident and its note. The data
//! backup holds no key material; the keys backup is another folder.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::beffroi::Beffroi;
use support::http::Api;
use support::{now_ms, poll};

const FIRE: &str = "dijon-hotel-de-ville-fire-01";
const NOTE: &str = "Backup drill: the caretaker confirms smoke on the second floor";

fn beffroi(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beffroi"));
    cmd.args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.env_remove("BEFFROI_AUDIT_KEY_FILE")
        .output()
        .expect("run beffroi")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every secret a key file holds, as the bytes that could leak: its content, and the raw
/// bytes of a hex or base64 text key.
fn secrets_in(file: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(file).expect("read key");
    let mut out = vec![bytes.clone()];
    let trimmed = String::from_utf8_lossy(&bytes).trim().to_string();
    if let Ok(raw) = hex::decode(&trimmed) {
        out.push(raw);
    }
    out.push(hex::encode(&bytes).into_bytes());
    out.retain(|s| s.len() >= 16);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The key files of a server's folders: the keys folder beside the data folder, and the
/// `*.key` files of the data folder.
fn key_files(root: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    files_under(&root.join("beffroi-keys"), &mut all);
    let mut data = Vec::new();
    files_under(&root.join("data"), &mut data);
    all.extend(
        data.into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "key")),
    );
    all.retain(|p| p.extension().is_some_and(|e| e == "key"));
    all
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
        .expect("manifest is JSON")
}

#[test]
fn a_backup_of_a_running_server_restores_into_a_fresh_folder_whose_audit_log_verifies() {
    let server = Beffroi::start(None);
    let root = server.data_dir().parent().expect("root").to_path_buf();
    let api = Api::login(&server.base());
    let (st, v) = api.post(
        &format!("/api/v1/devices/{FIRE}/observations?format=json"),
        &json!({"time": now_ms() - 5_000, "values": {"fire": true}}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let incident = poll(
        "the fire incident",
        Duration::from_secs(20),
        || server.log(),
        || {
            api.incidents("")
                .into_iter()
                .find(|i| i["rule"] == "fire-alarm")
                .and_then(|i| i["id"].as_u64())
        },
    );
    let (st, v) = api.post(
        &format!("/api/v1/incidents/{incident}/actions"),
        &json!({"action": "comment", "text": NOTE}).to_string(),
    );
    assert_eq!(st, 200, "{v}");

    // Readings keep arriving while the backup runs.
    let work = tempfile::tempdir().expect("tempdir");
    let busy = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (api, busy) = (api.clone(), Arc::clone(&busy));
        std::thread::spawn(move || {
            let mut sent = 0u32;
            while busy.load(Ordering::SeqCst) || sent < 20 {
                let body =
                    json!({"time": now_ms() - 1_000, "values": {"fire": sent.is_multiple_of(2)}});
                let (st, _) = api.post(
                    &format!("/api/v1/devices/{FIRE}/observations?format=json"),
                    &body.to_string(),
                );
                assert_eq!(st, 200);
                sent += 1;
            }
            sent
        })
    };
    let data_backup = work.path().join("backup");
    let keys_backup = work.path().join("backup-keys");
    let config = server.config_path();
    let o = ok(beffroi(
        &["backup", "--config"],
        &[&config, Path::new("--out"), &data_backup],
    ));
    let keys = ok(beffroi(
        &["backup", "--keys", "--config"],
        &[&config, Path::new("--out"), &keys_backup],
    ));
    busy.store(false, Ordering::SeqCst);
    let sent = feeder.join().expect("feeder");
    assert!(sent >= 20);
    assert!(
        String::from_utf8_lossy(&keys.stderr).contains("warning"),
        "the keys backup warns: {}",
        text(&keys)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("backup --keys"),
        "the data backup says the keys are apart: {}",
        text(&o)
    );
    // The public key an auditor pinned, from the live folder.
    let pinned = work.path().join("pinned.pub");
    std::fs::copy(server.data_dir().join("audit-signing.pub"), &pinned).expect("pin");

    // What the data backup holds: every store, each with its schema version; no key.
    let m = manifest(&data_backup);
    assert_eq!(m["kind"], "data");
    let files = m["files"].as_array().expect("files");
    let find = |place: &str, path: &str| {
        files
            .iter()
            .find(|f| f["place"] == place && f["path"] == path)
            .unwrap_or_else(|| panic!("{place} {path} missing from {m:#}"))
    };
    assert_eq!(
        find("data", "beffroi.db")["schema_version"],
        json!(beffroi_store::SCHEMA_VERSION)
    );
    assert_eq!(
        find("audit_log", "")["schema_version"],
        json!(beffroi_audit::store::SCHEMA_VERSION)
    );
    find("audit_anchor", "");
    find("audit_public_key", "");
    for f in files {
        let p = f["path"].as_str().unwrap_or_default();
        assert!(
            !p.ends_with(".key") && p != "devices.sqlite" && f["place"] != "keys_folder",
            "key material in the data backup: {f}"
        );
    }
    let live_keys = key_files(&root);
    assert!(
        live_keys.len() >= 2,
        "the server made its keys (vault, audit): {live_keys:?}"
    );
    let mut stored = Vec::new();
    files_under(&data_backup, &mut stored);
    for file in &stored {
        let bytes = std::fs::read(file).expect("read backup file");
        for key in &live_keys {
            for s in secrets_in(key) {
                assert!(
                    !contains(&bytes, &s),
                    "{} holds the key of {}",
                    file.display(),
                    key.display()
                );
            }
        }
    }
    // ... and the keys backup holds them all.
    let km = manifest(&keys_backup);
    assert_eq!(km["kind"], "keys");
    let kfiles = km["files"].as_array().expect("files");
    assert!(kfiles.iter().any(|f| f["place"] == "audit_key"), "{km:#}");
    assert!(
        kfiles.iter().any(|f| f["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("epoch-0001.key"))),
        "the pseudonymisation key: {km:#}"
    );
    // `sha256sum -c` agrees with the manifest, without Beffroi.
    let sums = Command::new("sha256sum")
        .args(["--check", "--quiet", "SHA256SUMS"])
        .current_dir(&data_backup)
        .output()
        .expect("sha256sum");
    assert!(sums.status.success(), "{}", text(&sums));

    // A damaged copy is refused before anything is written.
    let damaged = work.path().join("damaged");
    support::copy_dir(&data_backup, &damaged);
    let db = find("data", "beffroi.db")["stored"]
        .as_str()
        .expect("stored");
    let mut bytes = std::fs::read(damaged.join(db)).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(damaged.join(db), bytes).expect("damage");
    let target = work.path().join("never/data");
    let o = beffroi(
        &["restore", "--from"],
        &[&damaged, Path::new("--data"), &target],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("differs"), "{}", text(&o));
    assert!(!target.exists(), "nothing written");

    server.terminate(Duration::from_secs(20));

    // The drill: a new server restored from both backups.
    let data_backup2 = data_backup.clone();
    let restored = Beffroi::start_extra_prepared("", |data| {
        ok(beffroi(
            &["restore", "--from"],
            &[&data_backup2, Path::new("--data"), data],
        ));
        let verify = ok(beffroi(
            &["audit", "verify", "--allow-unsigned-tail", "--public-key"],
            &[&pinned, Path::new("--data"), data],
        ));
        assert!(
            String::from_utf8_lossy(&verify.stdout).contains("OK"),
            "{}",
            text(&verify)
        );
        // A second restore into the same folder is refused.
        let again = beffroi(
            &["restore", "--from"],
            &[&data_backup2, Path::new("--data"), data],
        );
        assert!(!again.status.success(), "{}", text(&again));
        assert!(text(&again).contains("not empty"), "{}", text(&again));
        ok(beffroi(
            &["restore", "--from"],
            &[&keys_backup, Path::new("--data"), data],
        ));
    });
    let api = Api::login(&restored.base());
    let (st, detail) = api.get(&format!("/api/v1/incidents/{incident}"));
    assert_eq!(st, 200, "{detail}");
    assert_eq!(detail["rule"], "fire-alarm", "{detail}");
    assert!(
        detail.to_string().contains("caretaker confirms smoke"),
        "the operator's note came back: {detail}"
    );
    // The restored server went on with the restored log, signed with the restored key: the
    // whole chain verifies against the key pinned before the backup.
    assert!(
        restored.terminate(Duration::from_secs(20)),
        "{}",
        restored.log()
    );
    ok(beffroi(
        &["audit", "verify", "--public-key"],
        &[&pinned, Path::new("--data"), &restored.data_dir()],
    ));
}
