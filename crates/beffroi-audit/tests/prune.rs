//! The audit log's retention: the head past the retention is deleted up to a signed
//! checkpoint, the deletion is recorded in the log and signed, and the verifier tells that
//! recorded prune from a cut, a forged prune entry and a rewritten head.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use beffroi_audit::chain::{self, Chain, StoredCheckpoint, StoredEntry};
use beffroi_audit::{AuditConfig, AuditLog, Problem, PruneRequest, verify_log, verify_log_with};
use beffroi_core::audit::{AuditOutcome, AuditRecord, AuditSink};
use beffroi_core::{SimClock, Timestamp};
use rusqlite::{Connection, params};

const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;
const YEAR: Duration = Duration::from_secs(365 * 86_400);
/// Distinctive text in the old entries: it must not survive in the files after a prune.
const MARKER: &str = "old-entry-marker-7f3a";

fn config(dir: &Path, every: u64) -> AuditConfig {
    AuditConfig {
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
        key_file: dir.join("keys/audit-signing.key"),
        ..AuditConfig::in_dir(dir)
    }
}

fn clock() -> Arc<SimClock> {
    Arc::new(SimClock::new(Timestamp(NOW)))
}

fn rec(at_ms: i64, detail: &str) -> AuditRecord {
    AuditRecord {
        at_ms,
        actor: "operator".into(),
        action: "personal.unmask".into(),
        target: Some("INC-1".into()),
        outcome: AuditOutcome::Ok,
        detail: beffroi_core::safe_format!("{{\"note\":\"{detail}\"}}"),
    }
}

/// 30 entries of 400 days ago (checkpoints at 10, 20, 30), then 5 of today.
fn old_then_recent(log: &AuditLog) {
    for i in 0..30 {
        log.record(rec(NOW - 400 * DAY + i, MARKER));
    }
    for i in 0..5 {
        log.record(rec(NOW - 1000 + i, "recent"));
    }
    log.flush().expect("flush");
}

fn request(held_from_ms: Option<i64>) -> PruneRequest {
    PruneRequest {
        retain: YEAR,
        held_from_ms,
        actor: "system".into(),
    }
}

fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join("audit.sqlite")
}

fn files_contain(dir: &Path, needle: &str) -> bool {
    ["audit.sqlite", "audit.sqlite-wal"].iter().any(|f| {
        std::fs::read(dir.join(f))
            .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

fn entries(dir: &Path) -> Vec<StoredEntry> {
    let conn = beffroi_audit::store::open_reader(&log_path(dir)).expect("open");
    let mut rows = Vec::new();
    beffroi_audit::store::for_each_entry(&conn, &log_path(dir), |e| rows.push(e)).expect("rows");
    rows
}

fn checkpoints(dir: &Path) -> Vec<StoredCheckpoint> {
    let conn = beffroi_audit::store::open_reader(&log_path(dir)).expect("open");
    beffroi_audit::store::checkpoints(&conn, &log_path(dir)).expect("checkpoints")
}

/// The file opened as an attacker with write access: the append-only triggers dropped.
fn tamper(dir: &Path) -> Connection {
    let c = Connection::open(log_path(dir)).expect("open sqlite");
    c.execute_batch(
        "DROP TRIGGER IF EXISTS entries_append_only_delete;
         DROP TRIGGER IF EXISTS checkpoints_append_only_delete;",
    )
    .expect("drop triggers");
    c
}

fn insert(c: &Connection, e: &StoredEntry) {
    c.execute(
        "INSERT INTO entries (seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.seq,
            e.at_ms,
            e.actor,
            e.action,
            e.target,
            e.outcome,
            e.detail,
            e.prev_hash,
            e.hash
        ],
    )
    .expect("insert");
}

#[test]
fn a_prune_deletes_the_old_head_records_itself_and_the_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("open");
    old_then_recent(&log);
    let key = *log.public_key();
    let exported_before = checkpoints(dir.path());
    let hash_30 = entries(dir.path())[29].hash.clone();
    let hash_31 = entries(dir.path())[30].hash.clone();

    let out = log.prune(request(None)).expect("prune");
    // Cut after the checkpoint at 30: the last one before the first recent entry.
    assert_eq!(out.plan.scan.through, Some((30, hash_30.clone())));
    assert_eq!((out.plan.scan.entries, out.plan.scan.checkpoints), (30, 2));
    assert_eq!(out.recorded_seq, Some(36));
    assert!(out.released.wal_truncated, "{out:?}");

    let rows = entries(dir.path());
    assert_eq!(rows.first().map(|e| e.seq), Some(31));
    let prune = rows.last().expect("prune entry");
    assert_eq!((prune.seq, prune.action.as_str()), (36, "audit.prune"));
    let detail: serde_json::Value = serde_json::from_str(&prune.detail).expect("json");
    assert_eq!(detail["pruned_entries"], 30);
    assert_eq!(detail["first_kept_seq"], 31);
    assert_eq!(detail["first_kept_hash"], hash_31.as_str());
    assert_eq!(detail["through_hash"], hash_30.as_str());
    // Signed at once: the prune entry is sealed by a checkpoint.
    assert!(checkpoints(dir.path()).iter().any(|c| c.seq == 36));
    // The checkpoint the kept part links to stays; those before it went with their entries.
    let seqs: Vec<i64> = checkpoints(dir.path()).iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![30, 36]);

    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!((r.entries, r.first_seq, r.unsigned), (6, Some(31), 0));
    assert_eq!(r.pruned, Some((31, 36)));
    // Checkpoints exported before the prune, and the anchor, still agree with the log.
    let anchor = beffroi_audit::anchor::read(&dir.path().join("audit-anchor"))
        .expect("anchor")
        .expect("present");
    assert_eq!(anchor.seq, 36);
    let r = verify_log_with(
        &log_path(dir.path()),
        &[key],
        Some(&anchor),
        &exported_before,
    )
    .expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);

    // The deleted entries are gone from the files too (free pages and WAL).
    log.close().expect("close");
    assert!(!files_contain(dir.path(), MARKER));

    // The log reopens against its anchor and continues.
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("reopen");
    log.record(rec(NOW, "after"));
    log.close().expect("close");
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.last_seq, Some(37));
}

#[test]
fn a_second_prune_moves_the_head_again_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let log = AuditLog::open(config(dir.path(), 10), clock.clone()).expect("open");
    old_then_recent(&log);
    log.prune(request(None)).expect("prune");
    // A year later, everything up to here is old: cut after the last checkpoint before
    // the log's last entry.
    clock.advance(beffroi_core::Duration::from_secs(400 * 86_400));
    for i in 0..3 {
        log.record(rec(NOW + 400 * DAY + i, "new"));
    }
    log.checkpoint().expect("checkpoint");
    let out = log.prune(request(None)).expect("second prune");
    assert!(out.recorded_seq.is_some(), "{out:?}");
    let key = *log.public_key();
    log.close().expect("close");
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(
        r.pruned.map(|(_, at)| at),
        out.recorded_seq.map(|s| s as i64)
    );
    // The first prune's entry went with the head; the second names the new head.
    let actions: Vec<String> = entries(dir.path()).into_iter().map(|e| e.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "audit.prune").count(), 1);
}

#[test]
fn a_legal_hold_keeps_the_entries_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("open");
    old_then_recent(&log);
    // A hold covering from the 16th old entry on: only the first checkpoint's entries go.
    let out = log
        .prune(request(Some(NOW - 400 * DAY + 15)))
        .expect("prune");
    assert!(out.plan.held);
    assert_eq!(out.plan.scan.through.as_ref().map(|t| t.0), Some(10));
    assert_eq!(entries(dir.path()).first().map(|e| e.seq), Some(11));
    // A hold that starts after the retention's cutoff changes nothing.
    let plan = beffroi_audit::plan_prune(&log_path(dir.path()), &request(Some(NOW)), NOW, None)
        .expect("plan");
    assert!(!plan.held);
    let key = *log.public_key();
    log.close().expect("close");
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
}

#[test]
fn nothing_is_pruned_without_a_checkpoint_to_cut_at() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No checkpoint by count: the only checkpoint comes at close.
    let log = AuditLog::open(config(dir.path(), 0), clock()).expect("open");
    old_then_recent(&log);
    let out = log.prune(request(None)).expect("prune");
    assert_eq!(out.recorded_seq, None);
    assert!(!out.plan.deletes());
    assert_eq!(out.plan.scan.older, 30);
    assert_eq!(entries(dir.path()).len(), 35);
    // Nor the log's last entry, even when every entry is old.
    log.close().expect("close");
    let plan = beffroi_audit::plan_prune(
        &log_path(dir.path()),
        &request(None),
        NOW + 2 * 365 * DAY,
        None,
    )
    .expect("plan");
    assert!(!plan.deletes(), "{plan:?}");
}

#[test]
fn a_dry_run_plans_what_the_prune_does_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("open");
    old_then_recent(&log);
    let key = *log.public_key();
    let plan = beffroi_audit::plan_prune(&log_path(dir.path()), &request(None), NOW, Some(&key))
        .expect("plan");
    assert_eq!(entries(dir.path()).len(), 35);
    let out = log.prune(request(None)).expect("prune");
    assert_eq!(plan, out.plan);
    log.close().expect("close");
}

/// Someone with write access deletes the head exactly as a prune would (entries up to a
/// checkpoint, the checkpoints before it) but records nothing: the log fails.
#[test]
fn a_head_cut_at_a_checkpoint_without_a_recorded_prune_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("open");
    old_then_recent(&log);
    let key = *log.public_key();
    log.close().expect("close");
    let c = tamper(dir.path());
    c.execute("DELETE FROM entries WHERE seq <= 20", [])
        .expect("cut");
    c.execute("DELETE FROM checkpoints WHERE seq < 20", [])
        .expect("cut");
    drop(c);
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert_eq!(
        r.first_problem(),
        Some(&Problem::Removed { from: 1, to: 20 }),
        "{:?}",
        r.problems
    );
    assert_eq!(r.pruned, None);
}

/// After a recorded prune, a further cut of the head is not covered by it.
#[test]
fn a_head_cut_beyond_the_recorded_prune_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 5), clock()).expect("open");
    for i in 0..10 {
        log.record(rec(NOW - 400 * DAY + i, MARKER));
    }
    for i in 0..12 {
        log.record(rec(NOW - 1000 + i, "recent"));
    }
    log.flush().expect("flush");
    log.prune(request(None)).expect("prune");
    let key = *log.public_key();
    log.close().expect("close");
    // Kept from 11; checkpoints at 15 and 20 in the kept part. Cut at 15.
    let c = tamper(dir.path());
    c.execute("DELETE FROM entries WHERE seq <= 15", [])
        .expect("cut");
    drop(c);
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert_eq!(
        r.first_problem(),
        Some(&Problem::Removed { from: 11, to: 15 }),
        "{:?}",
        r.problems
    );
}

/// A prune entry appended by whoever cut the head, without the signing key: not sealed by
/// a valid checkpoint, it does not make the cut a prune (unsigned, or signed by another key).
#[test]
fn a_forged_prune_entry_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("open");
    old_then_recent(&log);
    let key = *log.public_key();
    log.close().expect("close");
    let rows = entries(dir.path());
    let through_hash = rows[19].hash.clone();
    let c = tamper(dir.path());
    c.execute("DELETE FROM entries WHERE seq <= 20", [])
        .expect("cut");
    c.execute("DELETE FROM checkpoints WHERE seq < 20", [])
        .expect("cut");
    // The forged entry continues the chain from the last stored entry.
    let last = rows.last().expect("last");
    let mut h = [0u8; 32];
    hex::decode_to_slice(&last.hash, &mut h).expect("hex");
    let mut chain = Chain {
        last_seq: last.seq as u64,
        last_hash: h,
    };
    let forged = chain.append(&AuditRecord {
        at_ms: NOW,
        actor: "system".into(),
        action: "audit.prune".into(),
        target: None,
        outcome: AuditOutcome::Ok,
        detail: beffroi_core::safe_format!(
            "{}",
            serde_json::json!({
                "first_kept_seq": 21,
                "through_hash": through_hash,
                "first_kept_hash": rows[20].hash,
            })
        ),
    });
    insert(&c, &forged);
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert_eq!(
        r.first_problem(),
        Some(&Problem::UnsignedPrune {
            prune_seq: forged.seq,
            first_kept: 21
        }),
        "{:?}",
        r.problems
    );
    // Signed by a key the verifier does not trust: the same, and the signature is named.
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let cp = chain.checkpoint(&other, NOW);
    c.execute(
        "INSERT INTO checkpoints (seq, entry_hash, at_ms, signature, key_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![cp.seq, cp.entry_hash, cp.at_ms, cp.signature, cp.key_id],
    )
    .expect("insert checkpoint");
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::UnsignedPrune { first_kept: 21, .. })),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::BadSignature { .. })),
        "{:?}",
        r.problems
    );
}

/// A genuine, signed prune entry does not cover a head rewritten after it.
#[test]
fn a_rewritten_first_kept_entry_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(config(dir.path(), 10), clock()).expect("open");
    old_then_recent(&log);
    log.prune(request(None)).expect("prune");
    let key = *log.public_key();
    log.close().expect("close");
    // The first kept entry replaced by another, re-hashed on the same link.
    let rows = entries(dir.path());
    let first = &rows[0];
    let c = tamper(dir.path());
    c.execute("DELETE FROM entries WHERE seq = ?1", params![first.seq])
        .expect("delete");
    let mut prev = [0u8; 32];
    hex::decode_to_slice(&first.prev_hash, &mut prev).expect("hex");
    let mut chain = Chain {
        last_seq: first.seq as u64 - 1,
        last_hash: prev,
    };
    let mut other = rec(first.at_ms, "rewritten");
    other.actor = "nobody".into();
    insert(&c, &chain.append(&other));
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert!(!r.is_ok());
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::PruneMismatch { seq: 31, .. })),
        "{:?}",
        r.problems
    );
}

/// `beffroi audit prune` beside a running server: two writers on one file. The running
/// writer continues from the tail the other left, and the log verifies.
#[test]
fn a_prune_by_another_writer_is_followed_by_the_running_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = AuditLog::open(config(dir.path(), 10), clock()).expect("open");
    old_then_recent(&server);
    server.checkpoint().expect("checkpoint");
    let key = *server.public_key();
    {
        let cli = AuditLog::open(config(dir.path(), 10), clock()).expect("second writer");
        let out = cli.prune(request(None)).expect("prune");
        assert!(out.recorded_seq.is_some());
        cli.close().expect("close");
    }
    for i in 0..3 {
        server.record(rec(NOW + i, "after the prune"));
    }
    server.close().expect("close");
    let r = verify_log(&log_path(dir.path()), &[key]).expect("verify");
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.unsigned, 0);
    assert!(r.pruned.is_some());
}

/// The record parser reads what the writer writes, and nothing else.
#[test]
fn a_prune_record_is_read_from_its_detail() {
    let p = chain::PruneRecord::parse(
        &serde_json::json!({"first_kept_seq": 5, "through_hash": "ab", "first_kept_hash": null})
            .to_string(),
    )
    .expect("record");
    assert_eq!((p.first_kept_seq, p.first_kept_hash), (5, None));
    assert!(chain::PruneRecord::parse("{\"first_kept_seq\": \"5\"}").is_none());
    assert!(chain::PruneRecord::parse("not json").is_none());
}
