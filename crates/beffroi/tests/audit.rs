//! The audit log against tampering with its database, checked by the real
//! `beffroi audit verify`; the audit trail of a real `beffroi serve`; and the log's
//! continuity with its data folder (cut, emptied, deleted, recreated).

mod support;
use support::copy_dir;
use support::replace;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use beffroi_audit::chain::{self, StoredEntry};
use beffroi_audit::{AuditConfig, AuditLog};
use beffroi_core::audit::{AuditOutcome, AuditRecord, AuditSink};
use beffroi_core::{SimClock, Timestamp};
use rusqlite::{Connection, params};

const ENTRIES: usize = 20;
const EVERY: u64 = 5;

/// A log of 20 entries written through `AuditLog`, a checkpoint every 5, closed.
fn write_log(dir: &Path) {
    write_log_with(AuditConfig::in_dir(dir));
}

fn write_log_with(cfg: AuditConfig) {
    let dir = cfg.path.parent().expect("data folder").to_path_buf();
    let cfg = AuditConfig {
        checkpoint_every: EVERY,
        ..cfg
    };
    let log = AuditLog::open(cfg, Arc::new(SimClock::new(Timestamp(1_700_000_000_000))))
        .expect("open the audit log");
    for i in 0..ENTRIES {
        log.record(AuditRecord {
            at_ms: 1_700_000_000_000 + i as i64 * 1000,
            actor: if i % 2 == 0 { "alice" } else { "bob" }.into(),
            action: "incident.acknowledge".into(),
            target: Some(beffroi_core::safe_format!("INC-{i}")),
            outcome: AuditOutcome::Ok,
            detail: beffroi_core::safe_format!("{{\"note\":\"entry {i}\"}}"),
        });
    }
    log.close().expect("close");
    std::fs::copy(dir.join("audit-signing.pub"), pinned(&dir)).expect("pin the public key");
}

/// The copy of the public key an auditor keeps apart from the log (beside the data folder).
fn pinned(dir: &Path) -> PathBuf {
    dir.parent().expect("parent").join("pinned.pub")
}

/// `beffroi audit verify --data DIR`, with the pinned public key unless `extra` names one.
fn verify(dir: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beffroi"));
    cmd.args(["audit", "verify", "--data"]).arg(dir).args(extra);
    if !extra.contains(&"--public-key") {
        cmd.arg("--public-key").arg(pinned(dir));
    }
    cmd.output().expect("run beffroi audit verify")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Opens the log as an attacker with write access to the file: the append-only triggers
/// are dropped first.
fn tamper(dir: &Path) -> Connection {
    let c = Connection::open(dir.join("audit.sqlite")).expect("open sqlite");
    c.execute_batch(
        "DROP TRIGGER entries_append_only_update; DROP TRIGGER entries_append_only_delete;
         DROP TRIGGER checkpoints_append_only_update; DROP TRIGGER checkpoints_append_only_delete;",
    )
    .expect("drop triggers");
    c
}

fn read_rows(c: &Connection) -> Vec<StoredEntry> {
    let mut rows = Vec::new();
    beffroi_audit::store::for_each_entry(c, Path::new("audit.sqlite"), |e| rows.push(e))
        .expect("read rows");
    rows
}

fn write_row(c: &Connection, e: &StoredEntry) {
    c.execute(
        "INSERT OR REPLACE INTO entries (seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![e.seq, e.at_ms, e.actor, e.action, e.target, e.outcome, e.detail, e.prev_hash, e.hash],
    )
    .expect("write row");
}

/// The hash an attacker who knows the format computes for a row.
fn rehash(e: &mut StoredEntry, prev: &str) {
    e.prev_hash = prev.to_string();
    let mut p = [0u8; 32];
    hex::decode_to_slice(prev, &mut p).expect("hex");
    e.hash = hex::encode(chain::entry_hash(&chain::EntryFields {
        seq: e.seq as u64,
        at_ms: e.at_ms,
        actor: &e.actor,
        action: &e.action,
        target: e.target.as_deref(),
        outcome: &e.outcome,
        detail: &e.detail,
        prev_hash: &p,
    }));
}

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("data");
    write_log(&dir);
    (t, dir)
}

fn assert_fails_naming(o: &Output, needle: &str) {
    assert!(!o.status.success(), "{}", text(o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let first = stderr
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("no FAILED line: {}", text(o)));
    assert!(first.contains(needle), "expected `{needle}`: {}", text(o));
}

#[test]
fn an_untouched_log_verifies() {
    let (_t, dir) = fresh();
    let o = verify(&dir, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "OK — 20 entries (seq 1 to 20), 4 checkpoints, last signed seq 20, 0 unsigned"
        ),
        "{}",
        text(&o)
    );
    // With the public key pinned explicitly, and --strict (nothing unsigned).
    let pinned = dir.join("audit-signing.pub");
    let o = verify(
        &dir,
        &["--strict", "--public-key", &pinned.display().to_string()],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn an_altered_row_is_named() {
    let (_t, dir) = fresh();
    tamper(&dir)
        .execute("UPDATE entries SET actor = 'mallory' WHERE seq = 7", [])
        .expect("update");
    assert_fails_naming(&verify(&dir, &[]), "seq 7: altered");
}

#[test]
fn a_deleted_row_is_named() {
    let (_t, dir) = fresh();
    tamper(&dir)
        .execute("DELETE FROM entries WHERE seq = 12", [])
        .expect("delete");
    assert_fails_naming(&verify(&dir, &[]), "seq 12: removed");
}

#[test]
fn a_truncated_tail_is_named_by_its_checkpoint() {
    let (_t, dir) = fresh();
    tamper(&dir)
        .execute("DELETE FROM entries WHERE seq >= 18", [])
        .expect("delete");
    let o = verify(&dir, &[]);
    assert_fails_naming(&o, "seq 18: removed");
    assert!(
        text(&o).contains("a signed checkpoint seals seq 20"),
        "{}",
        text(&o)
    );
}

#[test]
fn an_inserted_row_is_named() {
    let (_t, dir) = fresh();
    let c = tamper(&dir);
    // Make room at seq 9 (two steps: the seq is the primary key), then insert a row that
    // links properly to entry 8 and carries its own correct hash.
    c.execute_batch(
        "UPDATE entries SET seq = -seq WHERE seq >= 9; UPDATE entries SET seq = 1 - seq WHERE seq < 0;",
    )
    .expect("renumber");
    let rows = read_rows(&c);
    let mut forged = rows[7].clone();
    forged.seq = 9;
    forged.actor = "mallory".into();
    forged.action = "user.grant".into();
    rehash(&mut forged, &rows[7].hash);
    write_row(&c, &forged);
    assert_fails_naming(&verify(&dir, &[]), "seq 9: inserted");
}

#[test]
fn a_rehashed_chain_without_the_key_fails_at_the_checkpoint() {
    let (_t, dir) = fresh();
    let c = tamper(&dir);
    let mut rows = read_rows(&c);
    rows[6].actor = "mallory".into();
    let mut prev = rows[5].hash.clone();
    for row in rows.iter_mut().skip(6) {
        rehash(row, &prev);
        prev = row.hash.clone();
        write_row(&c, row);
    }
    // The chain alone holds: only the signed checkpoint at 10 tells, naming 6..=10.
    let o = verify(&dir, &[]);
    assert_fails_naming(&o, "seq 10: the signed checkpoint does not match");
    assert!(
        text(&o).contains("entries 6 to 10 were rewritten"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_forged_checkpoint_or_another_key_fails() {
    let (_t, dir) = fresh();
    // The attacker also re-signs, with a key of their own, and replaces the public key
    // file beside the log: a verifier that pins the original key is not fooled.
    let pinned = dir.parent().expect("parent").join("pinned.pub");
    std::fs::copy(dir.join("audit-signing.pub"), &pinned).expect("copy");
    let c = tamper(&dir);
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let rows = read_rows(&c);
    let mut h = [0u8; 32];
    hex::decode_to_slice(&rows[ENTRIES - 1].hash, &mut h).expect("hex");
    let sig = chain::sign_checkpoint(&forger, ENTRIES as u64, &h, 1_900_000_000_000);
    c.execute(
        "UPDATE checkpoints SET signature = ?1, key_id = 'forger', at_ms = 1900000000000 WHERE seq = 20",
        params![hex::encode(sig)],
    )
    .expect("update");
    std::fs::write(
        dir.join("audit-signing.pub"),
        hex::encode(forger.verifying_key().as_bytes()),
    )
    .expect("replace public key");
    assert_fails_naming(
        &verify(&dir, &["--public-key", &pinned.display().to_string()]),
        "seq 20: checkpoint signature invalid",
    );
}

#[test]
fn entries_after_the_last_checkpoint_are_reported_unsigned() {
    let (_t, dir) = fresh();
    let c = tamper(&dir);
    let rows = read_rows(&c);
    let mut extra = rows[ENTRIES - 1].clone();
    extra.seq = ENTRIES as i64 + 1;
    rehash(&mut extra, &rows[ENTRIES - 1].hash);
    write_row(&c, &extra);
    // Failing by default; a warning for a running server's log.
    let o = verify(&dir, &[]);
    assert_fails_naming(
        &o,
        "1 entry is after seq 20 not covered by a signed checkpoint",
    );
    let o = verify(&dir, &["--allow-unsigned-tail"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("warning: 1 entry is after seq 20 not covered"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_key_beside_the_log_is_not_trusted_by_default() {
    let (_t, dir) = fresh();
    let o = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["audit", "verify", "--data"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no pinned public key"), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["audit", "verify", "--trust-key-beside-log", "--data"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("note: trusting the public key beside the log"));
}

/// Fails on 49ea8a2: `verify` said `OK — 15 entries …, last signed seq 15, 0 unsigned`
/// (exit 0) for a log cut exactly at a checkpoint, even pinned and `--strict`.
#[test]
fn a_log_cut_at_a_checkpoint_fails() {
    let (_t, dir) = fresh();
    tamper(&dir)
        .execute_batch(
            "DELETE FROM entries WHERE seq > 15; DELETE FROM checkpoints WHERE seq > 15;",
        )
        .expect("cut");
    let o = verify(&dir, &[]);
    assert_fails_naming(&o, "seq 16: removed");
    assert!(
        text(&o).contains("the data folder recorded audited acts up to seq 20"),
        "{}",
        text(&o)
    );
}

/// Fails on 49ea8a2: there is no `export-checkpoints` command (and the cut log verified).
#[test]
fn a_log_cut_before_an_exported_checkpoint_fails_even_without_its_anchor() {
    let (t, dir) = fresh();
    let exported = t.path().join("off-host/checkpoints.jsonl");
    std::fs::create_dir_all(exported.parent().expect("parent")).expect("mkdir");
    let o = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["audit", "export-checkpoints", "--data"])
        .arg(&dir)
        .arg("--out")
        .arg(&exported)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", text(&o));
    let lines = std::fs::read_to_string(&exported).expect("read");
    assert_eq!(lines.lines().count(), 4, "{lines}");
    // The attacker cuts the log at a checkpoint and deletes the anchor too.
    tamper(&dir)
        .execute_batch(
            "DELETE FROM entries WHERE seq > 10; DELETE FROM checkpoints WHERE seq > 10;",
        )
        .expect("cut");
    std::fs::remove_file(dir.join("audit-anchor")).expect("delete the anchor");
    let o = verify(&dir, &["--checkpoints", exported.to_str().expect("utf-8")]);
    assert_fails_naming(&o, "seq 11: removed");
    assert!(
        text(&o).contains("a signed checkpoint seals seq 20"),
        "{}",
        text(&o)
    );
}

/// Fails on 49ea8a2: `verify` exited 0 with a warning (`20 entries … not covered by a
/// signed checkpoint`) when every checkpoint was deleted; only `--strict` failed.
#[test]
fn a_log_without_checkpoints_fails_by_default() {
    let (_t, dir) = fresh();
    tamper(&dir)
        .execute("DELETE FROM checkpoints", [])
        .expect("delete checkpoints");
    let o = verify(&dir, &[]);
    assert_fails_naming(&o, "no signed checkpoint");
    // Even for a running server's log.
    let o = verify(&dir, &["--allow-unsigned-tail"]);
    assert_fails_naming(&o, "no signed checkpoint");
}

#[test]
fn show_prints_entries_from_a_seq() {
    let (_t, dir) = fresh();
    let o = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["audit", "show", "--since", "19", "--limit", "5", "--data"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].trim_start().starts_with("19 "), "{out}");
    assert!(
        lines[1].contains("bob  incident.acknowledge  INC-19  ok"),
        "{out}"
    );
}

/// A real `beffroi serve` records its start, the configuration files it loaded, a rules
/// reload that failed and one that worked, and its stop; the log it leaves verifies.
#[test]
fn a_server_leaves_a_verified_audit_trail() {
    let work = tempfile::tempdir().expect("tmp");
    let deployment = work.path().join("deployment");
    let demo = support::demo::dir();
    copy_dir(&demo.join("territory"), &deployment.join("territory"));
    for f in ["rules.toml", "procedures.toml", "privacy.toml"] {
        std::fs::copy(demo.join(f), deployment.join(f)).expect("copy");
    }
    let rules = deployment.join("rules.toml");
    let original = std::fs::read_to_string(&rules).expect("read");
    let b = support::beffroi::Beffroi::start_with(None, Some(deployment.clone()));
    let data = b.data_dir();
    std::fs::copy(data.join("audit-signing.pub"), pinned(&data)).expect("pin the public key");
    let show = || {
        let o = Command::new(env!("CARGO_BIN_EXE_beffroi"))
            .args(["audit", "show", "--limit", "1000", "--data"])
            .arg(&data)
            .output()
            .expect("run");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // The log is written by the server's writer thread: wait for the start entries.
    support::poll("config.load", Duration::from_secs(10), &show, || {
        show().contains("config.load").then_some(())
    });
    replace(&rules, "this is = not [ valid");
    support::poll(
        "failed reload",
        Duration::from_secs(20),
        || b.log(),
        || show().contains("rules.reload").then_some(()),
    );
    replace(&rules, &original);
    support::poll(
        "good reload",
        Duration::from_secs(20),
        || b.log(),
        || (show().matches("rules.reload").count() >= 2).then_some(()),
    );
    assert!(b.terminate(Duration::from_secs(30)), "{}", b.log());

    let out = show();
    let actions: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // seq, time, actor, action, target, outcome, detail
            (f.len() >= 7).then(|| (f[3], f[5]))
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("system.start", "ok"),
            ("config.load", "ok"),
            ("privacy.keys", "ok"),
            ("rules.reload", "failed"),
            ("rules.reload", "ok"),
            ("system.stop", "ok"),
        ],
        "{out}"
    );
    // The configuration files are named with their SHA-256.
    let load = out
        .lines()
        .find(|l| l.contains("config.load"))
        .expect("line");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(original.as_bytes()));
    assert!(load.contains(&digest), "{load}");
    // Shut down cleanly: a final checkpoint seals everything.
    let o = verify(&data, &["--strict"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("6 entries"), "{}", text(&o));
}

/// A `beffroi serve` on the demo deployment, started and stopped cleanly once: its data
/// folder holds a database and a signed, anchored audit log. The public key is pinned
/// beside the data folder.
fn served_once() -> support::beffroi::Beffroi {
    let b = support::beffroi::Beffroi::start(None);
    assert!(b.terminate(Duration::from_secs(30)), "{}", b.log());
    let data = b.data_dir();
    std::fs::copy(data.join("audit-signing.pub"), pinned(&data)).expect("pin the public key");
    b
}

/// The signing key the server used: beside the data folder (or, as before, inside it).
fn server_key(data: &Path) -> PathBuf {
    let inside = data.join("audit-signing.key");
    if inside.exists() {
        return inside;
    }
    data.parent()
        .expect("parent")
        .join("beffroi-keys/audit-signing.key")
}

fn delete_log(data: &Path) {
    for f in ["audit.sqlite", "audit.sqlite-wal", "audit.sqlite-shm"] {
        match std::fs::remove_file(data.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{f}: {e}"),
        }
    }
}

/// Runs `beffroi serve --config FILE` and expects it to refuse to start: returns its
/// stderr. Panics if it answers on `/healthz` instead (it is killed first).
fn serve_refused(b: &support::beffroi::Beffroi) -> String {
    let dir = b.data_dir().parent().expect("parent").to_path_buf();
    let err = dir.join("refused.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .arg("serve")
        .arg("--config")
        .arg(b.config_path())
        .env("BEFFROI_ADMIN_PASSWORD", support::http::ADMIN_PASSWORD)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn beffroi serve");
    let agent = support::http::agent();
    let url = format!("{}/healthz", b.base());
    let status = support::poll(
        "beffroi serve to exit",
        Duration::from_secs(60),
        || std::fs::read_to_string(&err).unwrap_or_default(),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Some(status));
            }
            if let Some((200, _)) = support::http::get_text(&agent, &url) {
                let _ = child.kill();
                let _ = child.wait();
                return Some(None);
            }
            None
        },
    );
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("beffroi serve started:\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    stderr
}

/// Fails on 49ea8a2: the server started a new log at seq 1 (`/healthz` answered, the
/// `serve_refused` helper panics "beffroi serve started").
#[test]
fn a_deleted_audit_log_stops_the_server() {
    let b = served_once();
    delete_log(&b.data_dir());
    let stderr = serve_refused(&b);
    assert!(
        stderr.contains("the log is missing or empty, but the data folder recorded log"),
        "{stderr}"
    );
    assert!(stderr.contains("--new-audit-log"), "{stderr}");
    // And `verify` says what is missing.
    assert_fails_naming(
        &verify(&b.data_dir(), &[]),
        "the log is missing or empty, but the data folder recorded log",
    );
    // Nothing was made in its place.
    assert!(
        !b.data_dir().join("audit.sqlite").exists() || {
            std::fs::metadata(b.data_dir().join("audit.sqlite"))
                .map(|m| m.len() == 0)
                .unwrap_or(true)
        }
    );
    // Without its anchor either: the data store holds data.
    std::fs::remove_file(b.data_dir().join("audit-anchor")).expect("delete the anchor");
    let stderr = serve_refused(&b);
    assert!(
        stderr.contains("the log is missing or empty, but the data folder holds data"),
        "{stderr}"
    );
}

/// Fails on 49ea8a2: `verify` said OK for a log deleted and recreated (here signed with
/// the real key, verified with the pinned public key) — the `assert_fails_naming`.
#[test]
fn a_deleted_and_recreated_audit_log_fails_verify_and_stops_the_server() {
    let b = served_once();
    let data = b.data_dir();
    delete_log(&data);
    // Recreated by someone who holds the key: everything signs and chains.
    let forger = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(forger.path().join("data")).expect("mkdir");
    write_log_with(AuditConfig {
        key_file: server_key(&data),
        ..AuditConfig::in_dir(&forger.path().join("data"))
    });
    std::fs::copy(
        forger.path().join("data/audit.sqlite"),
        data.join("audit.sqlite"),
    )
    .expect("put the new log in place");
    let o = verify(&data, &[]);
    assert_fails_naming(&o, "seq 1: replaced");
    assert!(
        text(&o).contains("not the audit log the data folder recorded"),
        "{}",
        text(&o)
    );
    let stderr = serve_refused(&b);
    assert!(
        stderr.contains("this is not the log the data folder recorded"),
        "{stderr}"
    );
}

/// Fails on 49ea8a2: `serve` did not know `--new-audit-log` (the start fails).
#[test]
fn a_new_audit_log_started_deliberately_records_its_reason() {
    let b = served_once();
    let data = b.data_dir();
    let anchor = std::fs::read_to_string(data.join("audit-anchor")).unwrap_or_default();
    let old_id = anchor
        .lines()
        .find_map(|l| l.strip_prefix("log_id "))
        .map(str::to_string);
    delete_log(&data);
    b.restart_with_args(&["--new-audit-log", "disk replaced, ticket OPS-12"]);
    let old_id = old_id.expect("the anchor names the log");
    assert!(b.terminate(Duration::from_secs(30)), "{}", b.log());
    let o = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["audit", "show", "--limit", "2", "--data"])
        .arg(&data)
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&o.stdout);
    let first = out.lines().next().unwrap_or_default();
    assert!(first.trim_start().starts_with("1 "), "{out}");
    assert!(first.contains("system  audit.log.new"), "{out}");
    assert!(
        first.contains("\"reason\":\"disk replaced, ticket OPS-12\""),
        "{out}"
    );
    assert!(first.contains(&old_id), "the previous log is named: {out}");
    assert!(
        first.contains("\"data_present\":true"),
        "the data store held data: {out}"
    );
    assert!(
        out.lines()
            .nth(1)
            .unwrap_or_default()
            .contains("system.start")
    );
    // The new log verifies, against the same pinned key.
    let o = verify(&data, &[]);
    assert!(o.status.success(), "{}", text(&o));
    // The flag is for once: with the log in place, it is refused.
    let stderr = {
        let cfg = b.config_path();
        let o = Command::new(env!("CARGO_BIN_EXE_beffroi"))
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .args(["--new-audit-log", "again"])
            .output()
            .expect("run");
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(stderr.contains("nothing to start anew"), "{stderr}");
}

/// `beffroi audit prune [ARGS] --data DIR`.
fn prune(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["audit", "prune", "--data"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run beffroi audit prune")
}

fn seqs_shown(dir: &Path) -> Vec<(i64, String)> {
    let o = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["audit", "show", "--limit", "1000", "--data"])
        .arg(dir)
        .output()
        .expect("run beffroi audit show");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, f.get(3)?.to_string()))
        })
        .collect()
}

/// The command applies the retention (the default year: every entry of the test log is
/// from 2023): a dry run says what goes and changes nothing; the prune needs a name, cuts
/// at the last signed checkpoint before the log's last entry, records itself, and the
/// log verifies.
#[test]
fn audit_prune_applies_the_retention_and_the_log_still_verifies() {
    let (_t, dir) = fresh();
    let o = prune(&dir, &["--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("would prune 15 entries (seq 1 to 15"),
        "{}",
        text(&o)
    );
    assert_eq!(seqs_shown(&dir).len(), ENTRIES);

    let o = prune(&dir, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--by"), "{}", text(&o));
    let o = prune(&dir, &["--by", "dpo", "--retain", "1d"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("minimum of 30d"), "{}", text(&o));
    assert_eq!(seqs_shown(&dir).len(), ENTRIES);

    let o = prune(&dir, &["--by", "dpo"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("pruned 15 entries"), "{}", text(&o));
    let shown = seqs_shown(&dir);
    assert_eq!(shown.first().map(|s| s.0), Some(16), "{shown:?}");
    assert_eq!(
        shown.last(),
        Some(&(21, "audit.prune".to_string())),
        "{shown:?}"
    );
    let o = verify(&dir, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("entries before seq 16 pruned"),
        "{}",
        text(&o)
    );
    // The entry at 20 was the log's last, never cut; now the prune entry follows it, the
    // next prune can take the rest.
    let o = prune(&dir, &["--dry-run"]);
    assert!(
        text(&o).contains("would prune 5 entries (seq 16 to 20"),
        "{}",
        text(&o)
    );
}

/// The head deleted exactly as a prune would, with nothing recorded: verify fails.
#[test]
fn a_log_whose_head_was_cut_at_a_checkpoint_fails() {
    let (_t, dir) = fresh();
    let c = tamper(&dir);
    c.execute("DELETE FROM entries WHERE seq <= 10", [])
        .expect("cut");
    c.execute("DELETE FROM checkpoints WHERE seq < 10", [])
        .expect("cut");
    drop(c);
    assert_fails_naming(&verify(&dir, &[]), "seq 1: removed");
}

/// A real `beffroi serve` with `[audit] retain = "30d"` over a log whose first entries
/// are from 2023 prunes them at start, records it, and leaves a log that verifies.
#[test]
fn the_server_applies_the_configured_audit_retention() {
    let b =
        support::beffroi::Beffroi::start_extra_prepared("[audit]\nretain = \"30d\"\n", |data| {
            write_log(data)
        });
    let data = b.data_dir();
    support::poll(
        "the server's prune",
        Duration::from_secs(30),
        || b.log(),
        || {
            seqs_shown(&data)
                .iter()
                .any(|(_, a)| a == "audit.prune")
                .then_some(())
        },
    );
    assert!(b.terminate(Duration::from_secs(30)), "{}", b.log());
    let shown = seqs_shown(&data);
    // The 20 entries of 2023 went (the checkpoint at 20 seals the last of them); the
    // server's own entries stay.
    assert_eq!(
        shown.first(),
        Some(&(21, "system.start".to_string())),
        "{shown:?}"
    );
    let o = verify(&data, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("entries before seq 21 pruned"),
        "{}",
        text(&o)
    );
}
