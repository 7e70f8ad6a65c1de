//! The chain, pure: how an entry is hashed, what a checkpoint signs, and how a sequence of
//! stored rows is checked. No I/O: the SQLite adapter reads rows and hands them here, and
//! the property tests feed rows they tampered with.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first entry.
pub const GENESIS: Hash = [0; 32];

/// Domain tags: an entry hash can never be confused with a checkpoint message or with a
/// hash of another format version.
const ENTRY_TAG: &[u8] = b"beffroi-audit-entry-v1";
const CHECKPOINT_TAG: &[u8] = b"beffroi-audit-checkpoint-v1";

/// The fields of one entry that its hash covers, all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFields<'a> {
    pub seq: u64,
    pub at_ms: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: &'a str,
    pub detail: &'a str,
    pub prev_hash: &'a Hash,
}

fn put_bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_be_bytes());
    h.update(b);
}

/// SHA-256 over an unambiguous encoding: a domain tag, then every field length-prefixed
/// (u64 big-endian) or fixed-size, the optional target with a presence byte. Two different
/// entries never share an encoding, so `("ab", "c")` and `("a", "bc")` hash differently.
pub fn entry_hash(f: &EntryFields<'_>) -> Hash {
    let mut h = Sha256::new();
    put_bytes(&mut h, ENTRY_TAG);
    h.update(f.seq.to_be_bytes());
    h.update(f.at_ms.to_be_bytes());
    put_bytes(&mut h, f.actor.as_bytes());
    put_bytes(&mut h, f.action.as_bytes());
    match f.target {
        None => h.update([0u8]),
        Some(t) => {
            h.update([1u8]);
            put_bytes(&mut h, t.as_bytes());
        }
    }
    put_bytes(&mut h, f.outcome.as_bytes());
    put_bytes(&mut h, f.detail.as_bytes());
    h.update(f.prev_hash);
    h.finalize().into()
}

/// The message a checkpoint signs: the seq of the entry it seals, that entry's hash and the
/// checkpoint's time.
pub fn checkpoint_message(seq: u64, entry_hash: &Hash, at_ms: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_TAG.len() + 8 + 32 + 8);
    m.extend_from_slice(CHECKPOINT_TAG);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(entry_hash);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

pub fn sign_checkpoint(key: &SigningKey, seq: u64, entry_hash: &Hash, at_ms: i64) -> [u8; 64] {
    key.sign(&checkpoint_message(seq, entry_hash, at_ms))
        .to_bytes()
}

/// Whether a stored checkpoint's signature verifies with `key`.
pub fn checkpoint_verifies(cp: &StoredCheckpoint, key: &VerifyingKey) -> bool {
    match (
        decode_hash(&cp.entry_hash),
        hex::decode(&cp.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok()),
        u64::try_from(cp.seq),
    ) {
        (Some(h), Some(sig), Ok(seq)) => key
            .verify(
                &checkpoint_message(seq, &h, cp.at_ms),
                &Signature::from_bytes(&sig),
            )
            .is_ok(),
        _ => false,
    }
}

/// A short, stable name of a public key (first 8 bytes of its SHA-256, hex), stored with each
/// checkpoint so that a verifier says which key signed it.
pub fn key_id(key: &VerifyingKey) -> String {
    let d: Hash = Sha256::digest(key.as_bytes()).into();
    hex::encode(&d[..8])
}

/// One entry row as stored. Hashes are kept as the stored text so that a row an attacker
/// filled with garbage is reported, not a reason to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// One checkpoint row as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub seq: i64,
    pub entry_hash: String,
    pub at_ms: i64,
    pub signature: String,
    pub key_id: String,
}

fn decode_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|()| out)
}

impl StoredEntry {
    /// The hash of this row's contents (with its stored seq and prev hash); `None` when the
    /// seq is negative or the prev hash is not 64 hex digits.
    pub fn computed_hash(&self) -> Option<Hash> {
        self.computed_hash_at(u64::try_from(self.seq).ok()?)
    }

    fn computed_hash_at(&self, seq: u64) -> Option<Hash> {
        let prev = decode_hash(&self.prev_hash)?;
        Some(entry_hash(&EntryFields {
            seq,
            at_ms: self.at_ms,
            actor: &self.actor,
            action: &self.action,
            target: self.target.as_deref(),
            outcome: &self.outcome,
            detail: &self.detail,
            prev_hash: &prev,
        }))
    }

    fn stored_hash(&self) -> Option<Hash> {
        decode_hash(&self.hash)
    }
}

/// The action of the entry that records a prune of the log's head ([`PruneRecord`]).
pub const PRUNE_ACTION: &str = "audit.prune";

/// What an `audit.prune` entry's detail says of the log's new head: the verifier accepts a
/// log that starts after seq 1 only when a prune entry, sealed by a valid checkpoint, names
/// its first entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneRecord {
    /// The first entry kept: entries before it were deleted.
    pub first_kept_seq: i64,
    /// The hash of the last entry deleted (`first_kept_seq - 1`), sealed by a checkpoint
    /// before the prune: the first kept entry's `prev_hash`.
    pub through_hash: String,
    /// The first kept entry's hash, when it existed at the prune (it is the prune entry
    /// itself otherwise).
    pub first_kept_hash: Option<String>,
}

impl PruneRecord {
    /// Reads the fields from a prune entry's detail (JSON); `None` when they are not there.
    pub fn parse(detail: &str) -> Option<PruneRecord> {
        let v: serde_json::Value = serde_json::from_str(detail).ok()?;
        let first_kept_seq = v.get("first_kept_seq")?.as_i64()?;
        let through_hash = v.get("through_hash")?.as_str()?.to_string();
        let first_kept_hash = match v.get("first_kept_hash") {
            None | Some(serde_json::Value::Null) => None,
            Some(h) => Some(h.as_str()?.to_string()),
        };
        Some(PruneRecord {
            first_kept_seq,
            through_hash,
            first_kept_hash,
        })
    }
}

/// What is wrong, at which seq. Ordered by seq: the first problem is the first entry that
/// was altered, removed or inserted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The row's contents do not match its own hash: altered (or forged, or moved).
    Altered { seq: i64 },
    /// The row's hash matches its contents under another seq (`hashed_as`): rows before it
    /// were removed (`hashed_as > seq`) or inserted, and the rest renumbered, or rows were
    /// reordered. Reported at the lower of the two seqs.
    Renumbered { seq: i64, hashed_as: u64 },
    /// Entries `from..=to` are missing (a gap in the sequence).
    Removed { from: i64, to: i64 },
    /// The row is consistent but does not link to the entry before it, and the entry after
    /// it links over it: it was inserted.
    Inserted { seq: i64 },
    /// The row is consistent but does not link to the entry before it: that entry was
    /// rewritten with a recomputed hash, or rows were swapped in.
    ChainBreak { seq: i64 },
    /// A checkpoint's signature does not verify with any of the trusted keys.
    BadSignature { seq: i64, key_id: String },
    /// A checkpoint seals an entry hash that is not the stored entry's: the entries after
    /// the previous good checkpoint (`after`) up to `seq` were rewritten and re-hashed.
    CheckpointMismatch { seq: i64, after: i64 },
    /// A signed checkpoint seals an entry that is no longer there: the log was truncated.
    Truncated { seq: i64, last: i64 },
    /// The log is not the one the data folder's anchor names: it was deleted and recreated,
    /// or replaced by another. `found` is `None` for a log without an identity.
    Replaced {
        expected: String,
        found: Option<String>,
    },
    /// The log ends before the last entry the data folder's anchor recorded: it was cut
    /// (possibly exactly at a checkpoint, with the checkpoints after it).
    CutBeforeAnchor { anchored: u64, last: i64 },
    /// The entry at the anchored seq is not the one the anchor recorded: the log was
    /// rewritten up to there.
    AnchorMismatch { seq: i64 },
    /// The log starts after seq 1 and an `audit.prune` entry (at `prune_seq`) records that
    /// cut, but no valid signed checkpoint seals that entry: the head was cut and the prune
    /// entry forged (or it is not signed yet).
    UnsignedPrune { prune_seq: i64, first_kept: i64 },
    /// The log starts where an `audit.prune` entry (at `prune_seq`) says it should, but the
    /// first entry there is not the one it recorded: the head was rewritten.
    PruneMismatch { seq: i64, prune_seq: i64 },
}

impl Problem {
    /// The seq the problem is reported at.
    pub fn seq(&self) -> i64 {
        match self {
            Problem::Renumbered { seq, hashed_as } => (*seq).min(*hashed_as as i64),
            Problem::Replaced { .. } => 1,
            Problem::CutBeforeAnchor { last, .. } => last + 1,
            Problem::UnsignedPrune { .. } => 1,
            Problem::Altered { seq }
            | Problem::PruneMismatch { seq, .. }
            | Problem::AnchorMismatch { seq }
            | Problem::Inserted { seq }
            | Problem::ChainBreak { seq }
            | Problem::BadSignature { seq, .. }
            | Problem::CheckpointMismatch { seq, .. } => *seq,
            Problem::Removed { from, .. } => *from,
            // The first entry that is gone.
            Problem::Truncated { last, .. } => last + 1,
        }
    }

    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Altered { .. } => "altered",
            Problem::Renumbered { .. } => "renumbered",
            Problem::Removed { .. } => "removed",
            Problem::Inserted { .. } => "inserted",
            Problem::ChainBreak { .. } => "chain-break",
            Problem::BadSignature { .. } => "bad-signature",
            Problem::CheckpointMismatch { .. } => "checkpoint-mismatch",
            Problem::Truncated { .. } => "truncated",
            Problem::Replaced { .. } => "replaced",
            Problem::CutBeforeAnchor { .. } => "cut",
            Problem::AnchorMismatch { .. } => "anchor-mismatch",
            Problem::UnsignedPrune { .. } => "unsigned-prune",
            Problem::PruneMismatch { .. } => "prune-mismatch",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Altered { seq } => write!(
                f,
                "seq {seq}: altered — the entry's contents do not match its hash (changed, forged or moved)"
            ),
            Problem::Renumbered { seq, hashed_as } if *hashed_as as i64 > *seq => write!(
                f,
                "seq {seq}: removed or moved — the entry stored at seq {seq} was hashed as seq {hashed_as}: entries were deleted and the rest renumbered, or rows were reordered"
            ),
            Problem::Renumbered { seq, hashed_as } => write!(
                f,
                "seq {hashed_as}: inserted or moved — the entry stored at seq {seq} was hashed as seq {hashed_as}: entries were inserted and the rest renumbered, or rows were reordered"
            ),
            Problem::Removed { from, to } if from == to => {
                write!(f, "seq {from}: removed — the entry is missing")
            }
            Problem::Removed { from, to } => {
                write!(
                    f,
                    "seq {from}: removed — entries {from} to {to} are missing"
                )
            }
            Problem::Inserted { seq } => write!(
                f,
                "seq {seq}: inserted — the entry does not link to the one before it, and the next one links over it"
            ),
            Problem::ChainBreak { seq } => write!(
                f,
                "seq {seq}: chain broken — the entry does not link to entry {}: that entry was rewritten and re-hashed, or entries were replaced",
                seq - 1
            ),
            Problem::BadSignature { seq, key_id } => write!(
                f,
                "seq {seq}: checkpoint signature invalid (signed by key {key_id}, not a trusted key) — forged checkpoint"
            ),
            Problem::CheckpointMismatch { seq, after } => write!(
                f,
                "seq {seq}: the signed checkpoint does not match the stored entry — entries {} to {seq} were rewritten and re-hashed after signing",
                after + 1
            ),
            Problem::Truncated { seq, last } => write!(
                f,
                "seq {}: removed — the log ends at seq {last} but a signed checkpoint seals seq {seq} (the tail was truncated)",
                last + 1
            ),
            Problem::Replaced { expected, found } => write!(
                f,
                "seq 1: replaced — this is not the audit log the data folder recorded (log id {}, expected {expected}): the log was deleted and recreated, or swapped for another",
                found.as_deref().unwrap_or("none")
            ),
            Problem::CutBeforeAnchor { anchored, last } => write!(
                f,
                "seq {}: removed — the log ends at seq {last} but the data folder recorded audited acts up to seq {anchored} (the log was cut)",
                last + 1
            ),
            Problem::AnchorMismatch { seq } => write!(
                f,
                "seq {seq}: altered — the entry is not the one the data folder recorded at this seq (the log was rewritten)"
            ),
            Problem::UnsignedPrune {
                prune_seq,
                first_kept,
            } => write!(
                f,
                "seq 1: removed — entries 1 to {} are missing and the audit.prune entry at seq {prune_seq} that would record their pruning is not sealed by a valid signed checkpoint (the head was cut and the prune entry forged)",
                first_kept - 1
            ),
            Problem::PruneMismatch { seq, prune_seq } => write!(
                f,
                "seq {seq}: altered — the first entry kept is not the one the audit.prune entry at seq {prune_seq} recorded (the head of the log was rewritten)"
            ),
        }
    }
}

/// The verdict on a whole log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub entries: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub checkpoints: u64,
    /// The highest seq sealed by a valid checkpoint that matches the stored entry.
    pub last_signed_seq: Option<i64>,
    /// Entries after the last valid checkpoint: their chain holds, but nothing proves that
    /// entries after them were not cut off.
    pub unsigned: u64,
    /// The problems found, by seq (at most [`MAX_PROBLEMS`] from the chain walk).
    pub problems: Vec<Problem>,
    /// Problems of the chain walk found beyond [`MAX_PROBLEMS`], counted only.
    pub more_problems: u64,
    /// Exported checkpoints that the log does not hold (its own were deleted, or it was
    /// cut before them).
    pub exported_only: u64,
    /// The seq the anchor recorded, when the log was checked against one.
    pub anchored_seq: Option<u64>,
    /// The log starts after seq 1 because of a recorded, signed prune: (first seq kept, seq
    /// of the `audit.prune` entry that records it).
    pub pruned: Option<(i64, i64)>,
}

/// How many problems of the chain walk a report keeps (the first is what counts; one
/// early deletion with renumbering makes every later row a problem).
pub const MAX_PROBLEMS: usize = 1000;

impl Report {
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How far a renumbered row is looked for (a few removed or inserted rows before it).
const RENUMBER_WINDOW: u64 = 8;

/// What is known of a log from outside it, to check it against.
#[derive(Clone, Copy, Debug, Default)]
pub struct Known<'a> {
    /// The data folder's anchor: the log's identity and its last entry when last written.
    pub anchor: Option<&'a crate::anchor::Anchor>,
    /// The identity stored in the log (`None`: a log without one).
    pub log_id: Option<&'a str>,
    /// Checkpoints exported off the host: each must verify and be matched by the log, like
    /// the log's own.
    pub exported: &'a [StoredCheckpoint],
}

/// Checks a log: `entries` in ascending seq order (as `ORDER BY seq` returns them),
/// `checkpoints` in any order, `keys` the trusted public keys. Every problem is collected;
/// [`Report::first_problem`] names the first one.
pub fn verify(
    entries: impl IntoIterator<Item = StoredEntry>,
    checkpoints: &[StoredCheckpoint],
    keys: &[VerifyingKey],
) -> Report {
    verify_with(entries, checkpoints, keys, Known::default())
}

/// [`verify`], and the log against what is known of it from outside: the anchor (same
/// identity, not shorter than the anchored seq, the same entry there) and the exported
/// checkpoints (merged with the log's own; one the log has too is counted once).
pub fn verify_with(
    entries: impl IntoIterator<Item = StoredEntry>,
    own_checkpoints: &[StoredCheckpoint],
    keys: &[VerifyingKey],
    known: Known<'_>,
) -> Report {
    let mut report = Report::default();
    let mut checkpoints: Vec<StoredCheckpoint> = own_checkpoints.to_vec();
    for c in known.exported {
        if !own_checkpoints.contains(c) {
            checkpoints.push(c.clone());
            report.exported_only += 1;
        }
    }
    let anchored = known
        .anchor
        .and_then(|a| i64::try_from(a.seq).ok())
        .filter(|&s| s > 0);
    // Only the entries the checkpoints (and the anchor) seal are kept: (stored hash,
    // entries up to it).
    let sealed: std::collections::BTreeSet<i64> =
        checkpoints.iter().map(|c| c.seq).chain(anchored).collect();
    let mut at_checkpoint: std::collections::BTreeMap<i64, (Option<Hash>, u64)> =
        Default::default();
    let mut problems = Vec::new();
    let mut push = |p: Problem, more: &mut u64| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(p);
        } else {
            *more += 1;
        }
    };
    let mut iter = entries.into_iter().peekable();
    // The `audit.prune` entries of the log (seq, record), and the first row when it is
    // not seq 1 (seq, stored hash, prev hash).
    let mut prunes: Vec<(i64, PruneRecord)> = Vec::new();
    let mut head: Option<(i64, String, String)> = None;
    // (seq, stored hash) of the previous row.
    let mut prev: Option<(i64, Option<Hash>)> = None;
    while let Some(row) = iter.next() {
        report.entries += 1;
        report.first_seq.get_or_insert(row.seq);
        report.last_seq = Some(row.seq);
        let stored = row.stored_hash();
        if sealed.contains(&row.seq) {
            at_checkpoint.insert(row.seq, (stored, report.entries));
        }
        let expected_seq = prev.map_or(1, |(s, _)| s + 1);
        let prev_hash = prev.map_or(Some(GENESIS), |(_, h)| h);
        let links =
            decode_hash(&row.prev_hash).is_some() && decode_hash(&row.prev_hash) == prev_hash;
        let consistent = stored.is_some() && row.computed_hash() == stored;
        let first = prev.is_none();
        prev = Some((row.seq, stored));
        if consistent
            && row.action == PRUNE_ACTION
            && row.outcome == "ok"
            && let Some(p) = PruneRecord::parse(&row.detail)
        {
            prunes.push((row.seq, p));
        }
        if first && consistent && row.seq > 1 {
            // A head that starts later: a recorded prune, or a cut (judged after the walk,
            // once the prune entries and the checkpoints are known).
            head = Some((row.seq, row.hash.clone(), row.prev_hash.clone()));
            continue;
        }

        if !consistent {
            // Hashed under another seq? Then it was renumbered.
            let renumbered = u64::try_from(row.seq).ok().and_then(|s| {
                (1..=RENUMBER_WINDOW)
                    .flat_map(|d| [s.checked_add(d), s.checked_sub(d)])
                    .flatten()
                    .find(|&other| {
                        other > 0 && stored.is_some() && row.computed_hash_at(other) == stored
                    })
            });
            push(
                match renumbered {
                    Some(hashed_as) => Problem::Renumbered {
                        seq: row.seq,
                        hashed_as,
                    },
                    None => Problem::Altered { seq: row.seq },
                },
                &mut report.more_problems,
            );
            continue;
        }
        if row.seq > expected_seq && !links {
            push(
                Problem::Removed {
                    from: expected_seq,
                    to: row.seq - 1,
                },
                &mut report.more_problems,
            );
            continue;
        }
        if row.seq != expected_seq {
            // Links to its predecessor but carries another number: it was slipped in.
            push(
                Problem::Inserted { seq: row.seq },
                &mut report.more_problems,
            );
            continue;
        }
        if !links {
            let next_links_over = iter.peek().is_some_and(|next| {
                decode_hash(&next.prev_hash).is_some() && decode_hash(&next.prev_hash) == prev_hash
            });
            push(
                if next_links_over {
                    Problem::Inserted { seq: row.seq }
                } else {
                    Problem::ChainBreak { seq: row.seq }
                },
                &mut report.more_problems,
            );
        }
    }

    report.problems = problems;
    let mut cps: Vec<&StoredCheckpoint> = checkpoints.iter().collect();
    cps.sort_by_key(|c| c.seq);
    report.checkpoints = own_checkpoints.len() as u64;
    let last = report.last_seq.unwrap_or(0);
    let mut last_good = 0i64;
    for cp in cps {
        let sig_ok = keys.iter().any(|k| checkpoint_verifies(cp, k));
        if !sig_ok {
            report.problems.push(Problem::BadSignature {
                seq: cp.seq,
                key_id: cp.key_id.clone(),
            });
            continue;
        }
        match at_checkpoint.get(&cp.seq).map(|(h, _)| h) {
            None if cp.seq > last => report
                .problems
                .push(Problem::Truncated { seq: cp.seq, last }),
            // The last entry pruned: the first kept links to it.
            None if head.as_ref().is_some_and(|(s, _, _)| cp.seq == s - 1) => {
                let linked = head.as_ref().map(|(_, _, p)| decode_hash(p));
                if linked != Some(decode_hash(&cp.entry_hash)) {
                    report.problems.push(Problem::CheckpointMismatch {
                        seq: cp.seq,
                        after: last_good,
                    });
                }
            }
            // A hole (reported by the chain walk already), or an entry pruned.
            None => {}
            Some(h) if h.is_some() && *h == decode_hash(&cp.entry_hash) => {
                last_good = last_good.max(cp.seq);
                report.last_signed_seq = Some(last_good);
            }
            Some(_) => report.problems.push(Problem::CheckpointMismatch {
                seq: cp.seq,
                after: last_good,
            }),
        }
    }
    if let Some(a) = known.anchor {
        report.anchored_seq = Some(a.seq);
        if known.log_id != Some(a.log_id.as_str()) {
            report.problems.push(Problem::Replaced {
                expected: a.log_id.clone(),
                found: known.log_id.map(str::to_string),
            });
        }
        match anchored.map(|s| (s, at_checkpoint.get(&s).map(|(h, _)| h))) {
            // The anchor of an empty log.
            None => {}
            Some((s, None)) if s > last => report.problems.push(Problem::CutBeforeAnchor {
                anchored: a.seq,
                last,
            }),
            // A hole: reported by the chain walk already.
            Some((_, None)) => {}
            Some((_, Some(h))) if h.is_some() && *h == decode_hash(&a.hash) => {}
            Some((s, Some(_))) => report.problems.push(Problem::AnchorMismatch { seq: s }),
        }
    }
    if let Some((seq, hash, prev_hash)) = head {
        judge_head(&mut report, &prunes, last_good, seq, &hash, &prev_hash);
    }
    let signed_entries = at_checkpoint.get(&last_good).map_or(0, |(_, n)| *n);
    report.unsigned = report.entries - signed_entries;
    report.problems.sort_by_key(|p| p.seq());
    report
}

/// A log whose first entry is `seq` > 1 (hash `hash`, linking to `prev_hash`): accepted
/// when an `audit.prune` entry sealed by a valid checkpoint (at or before `last_good`)
/// names it as the first entry kept, with the hashes it has; a cut otherwise.
fn judge_head(
    report: &mut Report,
    prunes: &[(i64, PruneRecord)],
    last_good: i64,
    seq: i64,
    hash: &str,
    prev_hash: &str,
) {
    let naming: Vec<&(i64, PruneRecord)> = prunes
        .iter()
        .filter(|(_, p)| p.first_kept_seq == seq)
        .collect();
    let matches = |p: &PruneRecord| {
        decode_hash(&p.through_hash).is_some()
            && decode_hash(&p.through_hash) == decode_hash(prev_hash)
            && p.first_kept_hash
                .as_deref()
                .is_none_or(|h| decode_hash(h).is_some() && decode_hash(h) == decode_hash(hash))
    };
    if let Some((at, _)) = naming.iter().find(|(at, p)| *at <= last_good && matches(p)) {
        report.pruned = Some((seq, *at));
        return;
    }
    let problem = match naming.first() {
        Some((at, p)) if matches(p) => Problem::UnsignedPrune {
            prune_seq: *at,
            first_kept: seq,
        },
        Some((at, _)) => Problem::PruneMismatch {
            seq,
            prune_seq: *at,
        },
        None => {
            // Entries before an earlier, recorded prune are not missing: name the rest.
            let from = prunes
                .iter()
                .filter(|(at, p)| *at <= last_good && p.first_kept_seq < seq)
                .map(|(_, p)| p.first_kept_seq)
                .max()
                .unwrap_or(1);
            Problem::Removed { from, to: seq - 1 }
        }
    };
    report.problems.push(problem);
}

/// Builds entries in memory the way the writer does: the reference for tests and the
/// writer's own hashing.
#[derive(Clone, Debug)]
pub struct Chain {
    pub last_seq: u64,
    pub last_hash: Hash,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            last_seq: 0,
            last_hash: GENESIS,
        }
    }
}

impl Chain {
    /// Appends one record: returns the stored row.
    pub fn append(&mut self, r: &beffroi_core::audit::AuditRecord) -> StoredEntry {
        let seq = self.last_seq + 1;
        let hash = entry_hash(&EntryFields {
            seq,
            at_ms: r.at_ms,
            actor: &r.actor,
            action: &r.action,
            target: r.target.as_deref(),
            outcome: r.outcome.as_str(),
            detail: &r.detail,
            prev_hash: &self.last_hash,
        });
        let row = StoredEntry {
            seq: seq as i64,
            at_ms: r.at_ms,
            actor: r.actor.to_string(),
            action: r.action.clone(),
            target: r.target.as_deref().map(str::to_string),
            outcome: r.outcome.as_str().to_string(),
            detail: r.detail.to_string(),
            prev_hash: hex::encode(self.last_hash),
            hash: hex::encode(hash),
        };
        self.last_seq = seq;
        self.last_hash = hash;
        row
    }

    /// A signed checkpoint of the last entry.
    pub fn checkpoint(&self, key: &SigningKey, at_ms: i64) -> StoredCheckpoint {
        StoredCheckpoint {
            seq: self.last_seq as i64,
            entry_hash: hex::encode(self.last_hash),
            at_ms,
            signature: hex::encode(sign_checkpoint(key, self.last_seq, &self.last_hash, at_ms)),
            key_id: key_id(&key.verifying_key()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(actor: &'a str, action: &'a str, target: Option<&'a str>) -> EntryFields<'a> {
        EntryFields {
            seq: 1,
            at_ms: 0,
            actor,
            action,
            target,
            outcome: "ok",
            detail: "{}",
            prev_hash: &GENESIS,
        }
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        // Moving a byte across a field boundary changes the hash.
        assert_ne!(
            entry_hash(&fields("ab", "c", None)),
            entry_hash(&fields("a", "bc", None))
        );
        // An absent target is not an empty one.
        assert_ne!(
            entry_hash(&fields("a", "b", None)),
            entry_hash(&fields("a", "b", Some("")))
        );
        // seq and prev hash are covered.
        let mut f = fields("a", "b", None);
        let h = entry_hash(&f);
        f.seq = 2;
        assert_ne!(h, entry_hash(&f));
        let other = [1u8; 32];
        f.seq = 1;
        f.prev_hash = &other;
        assert_ne!(h, entry_hash(&f));
    }

    #[test]
    fn a_checkpoint_verifies_only_with_its_key_and_its_fields() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let h = [3u8; 32];
        let sig = Signature::from_bytes(&sign_checkpoint(&key, 5, &h, 1000));
        let vk = key.verifying_key();
        assert!(vk.verify(&checkpoint_message(5, &h, 1000), &sig).is_ok());
        assert!(vk.verify(&checkpoint_message(6, &h, 1000), &sig).is_err());
        assert!(vk.verify(&checkpoint_message(5, &h, 1001), &sig).is_err());
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(
            other
                .verify(&checkpoint_message(5, &h, 1000), &sig)
                .is_err()
        );
    }
}
