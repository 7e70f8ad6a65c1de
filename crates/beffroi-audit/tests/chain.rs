//! Property tests of the chain: every single alteration, deletion, insertion or reordering
//! of rows is detected and the first problem names the right seq.

use beffroi_audit::chain::{self, Chain, StoredCheckpoint, StoredEntry};
use beffroi_audit::{Problem, Report};
use beffroi_core::audit::{AuditOutcome, AuditRecord};
use ed25519_dalek::{SigningKey, VerifyingKey};
use proptest::prelude::*;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn trusted() -> Vec<VerifyingKey> {
    vec![key().verifying_key()]
}

/// A log as stored: rows in seq order and checkpoints.
#[derive(Clone, Debug)]
struct Log {
    rows: Vec<StoredEntry>,
    checkpoints: Vec<StoredCheckpoint>,
}

impl Log {
    fn verify(&self) -> Report {
        chain::verify(self.rows.clone(), &self.checkpoints, &trusted())
    }
}

fn record(i: usize, actor: &str, action: &str, target: Option<String>) -> AuditRecord {
    AuditRecord {
        at_ms: 1_700_000_000_000 + i as i64 * 1000,
        actor: beffroi_core::SafeText::redacting(actor),
        action: action.to_string(),
        target: target.as_deref().map(beffroi_core::SafeText::redacting),
        outcome: [AuditOutcome::Ok, AuditOutcome::Denied, AuditOutcome::Failed][i % 3],
        detail: beffroi_core::safe_format!("{{\"i\":{i}}}"),
    }
}

/// `n` entries, a checkpoint every `every` entries, and one at the end when `sealed`.
fn build(records: &[AuditRecord], every: usize, sealed: bool) -> Log {
    let mut c = Chain::default();
    let mut rows = Vec::new();
    let mut checkpoints = Vec::new();
    for (i, r) in records.iter().enumerate() {
        rows.push(c.append(r));
        if (i + 1) % every == 0 {
            checkpoints.push(c.checkpoint(&key(), r.at_ms + 1));
        }
    }
    if sealed && !records.len().is_multiple_of(every) {
        checkpoints.push(c.checkpoint(&key(), 1_800_000_000_000));
    }
    Log { rows, checkpoints }
}

fn records() -> impl Strategy<Value = Vec<AuditRecord>> {
    prop::collection::vec(
        ("[a-z:]{0,6}", "[a-z.]{1,8}", prop::option::of("[ -~]{0,6}")),
        2..30,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (a, b, t))| record(i, &a, &b, t))
            .collect()
    })
}

fn flip_hex(s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    c[0] = if c[0] == '0' { '1' } else { '0' };
    c.into_iter().collect()
}

fn first(r: &Report) -> &Problem {
    r.first_problem()
        .unwrap_or_else(|| panic!("no problem found in {r:?}"))
}

/// Recomputes every hash from row `from` on, as an attacker without the key would.
fn rehash_from(rows: &mut [StoredEntry], from: usize) {
    let mut prev = if from == 0 {
        chain::GENESIS
    } else {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&rows[from - 1].hash, &mut h).expect("hex");
        h
    };
    for row in rows.iter_mut().skip(from) {
        row.prev_hash = hex::encode(prev);
        let h = chain::entry_hash(&chain::EntryFields {
            seq: row.seq as u64,
            at_ms: row.at_ms,
            actor: &row.actor,
            action: &row.action,
            target: row.target.as_deref(),
            outcome: &row.outcome,
            detail: &row.detail,
            prev_hash: &prev,
        });
        row.hash = hex::encode(h);
        prev = h;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn an_untouched_log_verifies(recs in records(), every in 1usize..8, sealed: bool) {
        let log = build(&recs, every, sealed);
        let r = log.verify();
        prop_assert!(r.is_ok(), "{:?}", r.problems);
        prop_assert_eq!(r.entries, recs.len() as u64);
        prop_assert_eq!(r.last_seq, Some(recs.len() as i64));
        let signed = if sealed { recs.len() } else { recs.len() / every * every };
        prop_assert_eq!(r.last_signed_seq.unwrap_or(0), signed as i64);
        prop_assert_eq!(r.unsigned, (recs.len() - signed) as u64);
    }

    #[test]
    fn an_altered_field_is_named(recs in records(), every in 1usize..8, k in any::<prop::sample::Index>(), field in 0usize..8) {
        let mut log = build(&recs, every, true);
        let k = k.index(log.rows.len());
        let row = &mut log.rows[k];
        match field {
            0 => row.actor.push('x'),
            1 => row.action.push('x'),
            2 => row.target = match row.target.take() { None => Some(String::new()), Some(_) => None },
            3 => row.outcome = if row.outcome == "ok" { "denied".into() } else { "ok".into() },
            4 => row.detail.push(' '),
            5 => row.at_ms += 1,
            6 => row.prev_hash = flip_hex(&row.prev_hash),
            _ => row.hash = flip_hex(&row.hash),
        }
        let r = log.verify();
        let p = first(&r);
        prop_assert_eq!(p, &Problem::Altered { seq: k as i64 + 1 });
        prop_assert!(p.to_string().starts_with(&format!("seq {}: altered", k + 1)), "{}", p);
    }

    #[test]
    fn a_deleted_row_is_named(recs in records(), every in 1usize..8, k in any::<prop::sample::Index>(), renumber: bool) {
        let mut log = build(&recs, every, true);
        let n = log.rows.len();
        let k = k.index(n);
        log.rows.remove(k);
        if renumber {
            for row in log.rows.iter_mut().skip(k) {
                row.seq -= 1;
            }
        }
        let r = log.verify();
        let p = first(&r);
        prop_assert_eq!(p.seq(), k as i64 + 1, "{}", p);
        if k == n - 1 {
            // The newest entry: only the checkpoint that sealed it tells.
            prop_assert_eq!(p, &Problem::Truncated { seq: n as i64, last: n as i64 - 1 });
        } else if renumber {
            prop_assert_eq!(p, &Problem::Renumbered { seq: k as i64 + 1, hashed_as: k as u64 + 2 });
        } else {
            prop_assert_eq!(p, &Problem::Removed { from: k as i64 + 1, to: k as i64 + 1 });
        }
        prop_assert!(p.to_string().starts_with(&format!("seq {}: removed", k + 1)), "{}", p);
    }

    #[test]
    fn an_inserted_row_is_named(recs in records(), every in 1usize..8, k in any::<prop::sample::Index>(), forged_hash: bool) {
        let mut log = build(&recs, every, true);
        let n = log.rows.len();
        // Insert before row k (k == n: at the end), renumbering what follows.
        let k = k.index(n + 1);
        let mut new = log.rows[k.min(n - 1)].clone();
        new.seq = k as i64 + 1;
        new.actor = "intruder".into();
        for row in log.rows.iter_mut().skip(k) {
            row.seq += 1;
        }
        log.rows.insert(k, new);
        if forged_hash {
            // A made-up hash.
            log.rows[k].hash = "ab".repeat(32);
        } else {
            // The attacker links it properly to its predecessor and hashes it.
            rehash_from(&mut log.rows[..=k], k);
        }
        let r = log.verify();
        if k == n && !forged_hash {
            // Appended and well formed: the chain cannot tell; it is reported unsigned.
            prop_assert!(r.is_ok(), "{:?}", r.problems);
            prop_assert_eq!(r.unsigned, 1);
            prop_assert_eq!(r.last_signed_seq, Some(n as i64));
        } else {
            let p = first(&r);
            prop_assert_eq!(p.seq(), k as i64 + 1, "{}", p);
            if forged_hash {
                prop_assert_eq!(p, &Problem::Altered { seq: k as i64 + 1 });
            } else {
                prop_assert_eq!(p, &Problem::Renumbered { seq: k as i64 + 2, hashed_as: k as u64 + 1 });
                prop_assert!(p.to_string().starts_with(&format!("seq {}: inserted", k + 1)), "{}", p);
            }
        }
    }

    #[test]
    fn reordered_rows_are_named(recs in records(), every in 1usize..8, k in any::<prop::sample::Index>()) {
        let mut log = build(&recs, every, true);
        let k = k.index(log.rows.len() - 1);
        // Swap the contents of two neighbours; the seq column stays in order.
        let (a, b) = (log.rows[k].seq, log.rows[k + 1].seq);
        log.rows.swap(k, k + 1);
        log.rows[k].seq = a;
        log.rows[k + 1].seq = b;
        let r = log.verify();
        let p = first(&r);
        prop_assert_eq!(p, &Problem::Renumbered { seq: a, hashed_as: b as u64 });
        prop_assert!(p.to_string().contains("moved"), "{}", p);
    }

    /// An attacker rewrites an entry and recomputes the whole chain after it, without the
    /// key: the first checkpoint after the change fails, and names a range that holds it.
    #[test]
    fn a_rehashed_chain_fails_at_the_checkpoint(recs in records(), every in 1usize..8, k in any::<prop::sample::Index>()) {
        let mut log = build(&recs, every, true);
        let k = k.index(log.rows.len());
        log.rows[k].actor.push_str("-forged");
        rehash_from(&mut log.rows, k);
        let r = log.verify();
        let seq = k as i64 + 1;
        let p = first(&r).clone();
        let Problem::CheckpointMismatch { seq: at, after } = p else {
            return Err(TestCaseError::fail(format!("expected a checkpoint mismatch, got {p}")));
        };
        prop_assert!(after < seq && seq <= at, "seq {} not in {}..={}", seq, after + 1, at);
        // The first checkpoint at or after the change.
        let expected = log.checkpoints.iter().map(|c| c.seq).filter(|&c| c >= seq).min();
        prop_assert_eq!(Some(at), expected);
    }

    /// Re-signing with another key does not help the attacker.
    #[test]
    fn a_checkpoint_signed_with_another_key_fails(recs in records(), every in 1usize..8) {
        let mut log = build(&recs, every, true);
        let forger = SigningKey::from_bytes(&[9; 32]);
        let mut c = Chain::default();
        for row in &log.rows {
            let _ = c.append(&AuditRecord {
                at_ms: row.at_ms,
                actor: beffroi_core::SafeText::redacting(&row.actor),
                action: row.action.clone(),
                target: row.target.as_deref().map(beffroi_core::SafeText::redacting),
                outcome: match row.outcome.as_str() {
                    "ok" => AuditOutcome::Ok,
                    "denied" => AuditOutcome::Denied,
                    _ => AuditOutcome::Failed,
                },
                detail: beffroi_core::SafeText::redacting(&row.detail),
            });
        }
        let forged = c.checkpoint(&forger, 1_900_000_000_000);
        log.checkpoints.push(forged.clone());
        let r = log.verify();
        prop_assert_eq!(first(&r), &Problem::BadSignature { seq: forged.seq, key_id: forged.key_id });
    }
}

#[test]
fn deleting_every_checkpoint_leaves_the_whole_log_unsigned() {
    let recs: Vec<_> = (0..10).map(|i| record(i, "admin", "x.y", None)).collect();
    let mut log = build(&recs, 3, true);
    log.checkpoints.clear();
    let r = log.verify();
    assert!(r.is_ok());
    assert_eq!(r.unsigned, 10);
    assert_eq!(r.last_signed_seq, None);
}

#[test]
fn garbage_in_a_row_is_reported_not_a_panic() {
    let recs: Vec<_> = (0..4).map(|i| record(i, "admin", "x.y", None)).collect();
    let mut log = build(&recs, 2, true);
    log.rows[1].hash = "not hex".into();
    log.rows[2].prev_hash = String::new();
    log.checkpoints[0].signature = "zz".into();
    let r = log.verify();
    assert_eq!(r.first_problem(), Some(&Problem::Altered { seq: 2 }));
    assert!(r.problems.contains(&Problem::Altered { seq: 3 }));
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::BadSignature { seq: 2, .. }))
    );
}

fn anchor_of(log: &Log, id: &str) -> beffroi_audit::Anchor {
    let last = log.rows.last().expect("rows");
    beffroi_audit::Anchor {
        log_id: id.into(),
        seq: last.seq as u64,
        hash: last.hash.clone(),
        at_ms: 0,
    }
}

const ID: &str = "00112233445566778899aabbccddeeff";

proptest! {
    /// Cut anywhere (at a checkpoint or not, checkpoints after it deleted too): the anchor
    /// names the first entry missing.
    #[test]
    fn a_cut_anywhere_is_named_by_the_anchor(recs in records(), every in 1usize..8, k in any::<prop::sample::Index>()) {
        let mut log = build(&recs, every, true);
        let anchor = anchor_of(&log, ID);
        let keep = k.index(log.rows.len());
        log.rows.truncate(keep);
        log.checkpoints.retain(|c| c.seq <= keep as i64);
        let known = chain::Known { anchor: Some(&anchor), log_id: Some(ID), exported: &[] };
        let r = chain::verify_with(log.rows.clone(), &log.checkpoints, &trusted(), known);
        prop_assert_eq!(r.first_problem(), Some(&Problem::CutBeforeAnchor {
            anchored: recs.len() as u64,
            last: keep as i64,
        }));
        // Without the anchor, a cut at a checkpoint is invisible.
        prop_assert!(log.verify().is_ok());
    }
}

#[test]
fn the_anchor_names_a_replaced_or_rewritten_log() {
    let recs: Vec<_> = (0..10).map(|i| record(i, "admin", "x.y", None)).collect();
    let log = build(&recs, 3, true);
    let anchor = anchor_of(&log, ID);
    let check = |log: &Log, id: &str| {
        chain::verify_with(
            log.rows.clone(),
            &log.checkpoints,
            &trusted(),
            chain::Known {
                anchor: Some(&anchor),
                log_id: Some(id),
                exported: &[],
            },
        )
    };
    assert!(check(&log, ID).is_ok());
    assert_eq!(check(&log, ID).anchored_seq, Some(10));
    // Another log, even identical in content: another identity.
    let other = "ffeeddccbbaa99887766554433221100";
    assert_eq!(
        check(&log, other).first_problem(),
        Some(&Problem::Replaced {
            expected: ID.into(),
            found: Some(other.into()),
        })
    );
    // Another chain under the same identity (rewritten with the key, re-signed).
    let forged: Vec<_> = (0..10).map(|i| record(i, "mallory", "x.y", None)).collect();
    let forged = build(&forged, 3, true);
    assert_eq!(
        check(&forged, ID).first_problem(),
        Some(&Problem::AnchorMismatch { seq: 10 })
    );
}

#[test]
fn exported_checkpoints_sign_a_log_whose_own_were_deleted_and_name_a_cut() {
    let recs: Vec<_> = (0..10).map(|i| record(i, "admin", "x.y", None)).collect();
    let mut log = build(&recs, 5, true);
    let exported = log.checkpoints.clone();
    log.checkpoints.clear();
    let with = |log: &Log| {
        chain::verify_with(
            log.rows.clone(),
            &log.checkpoints,
            &trusted(),
            chain::Known {
                anchor: None,
                log_id: None,
                exported: &exported,
            },
        )
    };
    let r = with(&log);
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(
        (r.last_signed_seq, r.unsigned, r.exported_only),
        (Some(10), 0, 2)
    );
    log.rows.truncate(5);
    assert_eq!(
        with(&log).first_problem(),
        Some(&Problem::Truncated { seq: 10, last: 5 })
    );
}
