//! The audit log's SQLite file: schema, appends, and reading rows back for the verifier and
//! `beffroi audit show`.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params};

use crate::AuditError;
use crate::chain::{Chain, GENESIS, StoredCheckpoint, StoredEntry};

/// Recreates the triggers a prune drops for its own transaction.
pub(crate) const TRIGGERS_DELETE: &str = "
CREATE TRIGGER IF NOT EXISTS entries_append_only_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// The tables as ordered migrations: migration `i` brings the file from version `i` to
/// `i + 1`, in one transaction with the version bump (`PRAGMA user_version`), so a crash
/// mid-upgrade leaves the previous version whole. Never edit a released one: append.
const MIGRATIONS: &[&str] = &[V1_ENTRIES, V2_LOG_META];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Entries and checkpoints. `IF NOT EXISTS`: a log written before versions (version 0 with
/// its tables) becomes version 1 unchanged.
const V1_ENTRIES: &str = "
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER NOT NULL,
    entry_hash TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    signature TEXT NOT NULL,
    key_id TEXT NOT NULL
);
";

/// `log_meta`, the log's identity (`log_id`, made at open when missing).
const V2_LOG_META: &str = "
CREATE TABLE IF NOT EXISTS log_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// The triggers refuse UPDATE and DELETE: they do not stop someone who writes the file
/// directly (or drops them), which is what the chain and the signatures are for, but they
/// stop any code path of ours from rewriting history by mistake. Not part of a version:
/// every open makes sure they are there.
const TRIGGERS: &str = "
CREATE TRIGGER IF NOT EXISTS entries_append_only_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_only_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_update BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_meta_append_only_update BEFORE UPDATE ON log_meta
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_meta_append_only_delete BEFORE DELETE ON log_meta
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// Brings the log to [`SCHEMA_VERSION`], one transaction per migration; refuses a log
/// written by a newer version.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), AuditError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_err(path))?;
    if found > SCHEMA_VERSION {
        return Err(AuditError::Schema {
            path: path.to_path_buf(),
            found,
        });
    }
    for (version, sql) in (1i64..).zip(MIGRATIONS).skip(found.max(0) as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err(path))?;
        tx.execute_batch(sql).map_err(db_err(path))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(db_err(path))?;
        tx.commit().map_err(db_err(path))?;
        if found > 0 {
            tracing::info!(path = %path.display(), from = found, version, "audit log schema migrated");
        }
    }
    Ok(())
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |e| AuditError::Db {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The log's identity, as [`open_writer`] found or made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogId {
    /// 16 random bytes, hex.
    pub id: String,
    /// Made by this open: the file is new, or was written by a version without identities.
    pub created: bool,
}

/// Opens (creating) the log for writing: WAL, `synchronous=FULL` (an acknowledged audit
/// entry survives a power loss), schema applied, and the log's identity read or made.
pub fn open_writer(path: &Path) -> Result<(Connection, LogId), AuditError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| AuditError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    let mut conn = Connection::open(path).map_err(db_err(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err(path))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err(path))?;
    // Pruned entries are overwritten with zeros, not left in free pages; the WAL is
    // truncated after a prune ([`truncate_wal`]).
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(db_err(path))?;
    migrate(&mut conn, path)?;
    conn.execute_batch(TRIGGERS).map_err(db_err(path))?;
    let id = match log_id(&conn, path)? {
        Some(id) => LogId { id, created: false },
        None => {
            let mut bytes = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            let id = hex::encode(bytes);
            conn.execute(
                "INSERT INTO log_meta (key, value) VALUES ('log_id', ?1)",
                params![id],
            )
            .map_err(db_err(path))?;
            LogId { id, created: true }
        }
    };
    Ok((conn, id))
}

/// The log's identity; `None` for a log written before identities (schema 1).
pub fn log_id(conn: &Connection, path: &Path) -> Result<Option<String>, AuditError> {
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'log_meta'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err(path))?;
    if !has_table {
        return Ok(None);
    }
    conn.query_row("SELECT value FROM log_meta WHERE key = 'log_id'", [], |r| {
        text(r.get_ref(0)?).ok_or(rusqlite::Error::QueryReturnedNoRows)
    })
    .map(Some)
    .or_else(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    })
    .map_err(db_err(path))
}

/// The stored hash of the entry at `seq`, if there is one.
pub fn hash_at(conn: &Connection, path: &Path, seq: u64) -> Result<Option<String>, AuditError> {
    conn.query_row(
        "SELECT hash FROM entries WHERE seq = ?1 ORDER BY rowid LIMIT 1",
        params![i64::try_from(seq).unwrap_or(i64::MAX)],
        |r| Ok(text(r.get_ref(0)?)),
    )
    .or_else(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    })
    .map_err(db_err(path))
}

/// Opens an existing log read-only (verification, `show`).
pub fn open_reader(path: &Path) -> Result<Connection, AuditError> {
    if !path.exists() {
        return Err(AuditError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no audit log here"),
        });
    }
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db_err(path))
}

/// Where the chain stands: the last stored entry's seq and hash. The writer continues from
/// there; a stored hash that is not 64 hex digits is an error (the log was damaged).
pub fn chain_state(conn: &Connection, path: &Path) -> Result<(Chain, u64), AuditError> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(db_err(path))?;
    let last_cp: i64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM checkpoints", [], |r| {
            r.get(0)
        })
        .map_err(db_err(path))?;
    let chain = match last {
        None => Chain {
            last_seq: 0,
            last_hash: GENESIS,
        },
        Some((seq, hash)) => {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&hash, &mut h).map_err(|_| AuditError::Damaged {
                path: path.to_path_buf(),
                message: format!(
                    "the last entry (seq {seq}) has no valid hash; run `beffroi audit verify`"
                ),
            })?;
            Chain {
                last_seq: u64::try_from(seq).unwrap_or(0),
                last_hash: h,
            }
        }
    };
    let unsigned = chain
        .last_seq
        .saturating_sub(u64::try_from(last_cp).unwrap_or(0));
    Ok((chain, unsigned))
}

pub fn insert_entry(conn: &Connection, e: &StoredEntry) -> rusqlite::Result<()> {
    conn.execute(
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
    .map(|_| ())
}

pub fn insert_checkpoint(conn: &Connection, c: &StoredCheckpoint) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO checkpoints (seq, entry_hash, at_ms, signature, key_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.seq, c.entry_hash, c.at_ms, c.signature, c.key_id],
    )
    .map(|_| ())
}

/// A column as text whatever its stored type: a row someone rewrote with other types is
/// reported by the verifier, never a reason to stop reading.
fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

fn int(v: ValueRef<'_>) -> i64 {
    match v {
        ValueRef::Integer(i) => i,
        // Not an integer: a value no entry was hashed with.
        _ => i64::MIN,
    }
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        seq: int(r.get_ref(0)?),
        at_ms: int(r.get_ref(1)?),
        actor: text(r.get_ref(2)?).unwrap_or_default(),
        action: text(r.get_ref(3)?).unwrap_or_default(),
        target: text(r.get_ref(4)?),
        outcome: text(r.get_ref(5)?).unwrap_or_default(),
        detail: text(r.get_ref(6)?).unwrap_or_default(),
        prev_hash: text(r.get_ref(7)?).unwrap_or_default(),
        hash: text(r.get_ref(8)?).unwrap_or_default(),
    })
}

const ENTRY_COLUMNS: &str = "seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash";

/// Calls `f` on every entry in seq order, streaming (the log may be large).
pub fn for_each_entry(
    conn: &Connection,
    path: &Path,
    mut f: impl FnMut(StoredEntry),
) -> Result<(), AuditError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries ORDER BY seq, rowid"
        ))
        .map_err(db_err(path))?;
    let mut rows = stmt.query([]).map_err(db_err(path))?;
    while let Some(r) = rows.next().map_err(db_err(path))? {
        f(entry_from_row(r).map_err(db_err(path))?);
    }
    Ok(())
}

/// Hands `f` an iterator over every entry in seq order, streaming; a read error stops the
/// iteration and is returned instead of `f`'s result.
pub fn with_entries<T>(
    conn: &Connection,
    path: &Path,
    f: impl FnOnce(&mut dyn Iterator<Item = StoredEntry>) -> T,
) -> Result<T, AuditError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries ORDER BY seq, rowid"
        ))
        .map_err(db_err(path))?;
    let mut failed = None;
    let rows = stmt.query_map([], entry_from_row).map_err(db_err(path))?;
    let mut iter = rows.map_while(|r| r.map_err(|e| failed = Some(e)).ok());
    let out = f(&mut iter);
    drop(iter);
    match failed {
        Some(e) => Err(db_err(path)(e)),
        None => Ok(out),
    }
}

/// Entries from `since` (inclusive), at most `limit`.
pub fn entries_page(
    conn: &Connection,
    path: &Path,
    since: i64,
    limit: u32,
) -> Result<Vec<StoredEntry>, AuditError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE seq >= ?1 ORDER BY seq, rowid LIMIT ?2"
        ))
        .map_err(db_err(path))?;
    let rows = stmt
        .query_map(params![since, limit], entry_from_row)
        .map_err(db_err(path))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err(path))
}

pub fn checkpoints(conn: &Connection, path: &Path) -> Result<Vec<StoredCheckpoint>, AuditError> {
    checkpoints_between(conn, path, i64::MIN, i64::MAX)
}

/// The checkpoints that sign an entry with a seq in `from..=to`, in seq order.
pub fn checkpoints_between(
    conn: &Connection,
    path: &Path,
    from: i64,
    to: i64,
) -> Result<Vec<StoredCheckpoint>, AuditError> {
    let mut stmt = conn
        .prepare(
            "SELECT seq, entry_hash, at_ms, signature, key_id FROM checkpoints \
             WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq, rowid",
        )
        .map_err(db_err(path))?;
    let rows = stmt
        .query_map(params![from, to], |r| {
            Ok(StoredCheckpoint {
                seq: int(r.get_ref(0)?),
                entry_hash: text(r.get_ref(1)?).unwrap_or_default(),
                at_ms: int(r.get_ref(2)?),
                signature: text(r.get_ref(3)?).unwrap_or_default(),
                key_id: text(r.get_ref(4)?).unwrap_or_default(),
            })
        })
        .map_err(db_err(path))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err(path))
}

/// Entries matching `q`, newest first (the DPO's access log).
pub fn query(
    conn: &Connection,
    path: &Path,
    q: &beffroi_core::audit::AuditQuery,
) -> Result<Vec<StoredEntry>, AuditError> {
    let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE 1=1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if !q.action_prefixes.is_empty() {
        let mut ors = Vec::new();
        for p in &q.action_prefixes {
            if p.contains(['*', '?', '[']) {
                return Err(AuditError::Write(format!("invalid action prefix `{p}`")));
            }
            args.push(format!("{p}*").into());
            ors.push(format!("action GLOB ?{}", args.len()));
        }
        sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
    }
    if let Some(since) = q.since_ms {
        args.push(since.into());
        sql.push_str(&format!(" AND at_ms >= ?{}", args.len()));
    }
    if let Some(before) = q.before {
        args.push(i64::try_from(before).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(" AND seq < ?{}", args.len()));
    }
    args.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare(&sql).map_err(db_err(path))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), entry_from_row)
        .map_err(db_err(path))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err(path))
}

/// The last stored entry: (seq, hash).
pub fn tail(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map(Some)
    .or_else(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    })
}

/// What a prune would delete ([`crate::PrunePlan`]'s facts, from the file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneScan {
    /// The first and last seq of the log.
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// Entries older than the cutoff (wherever they are).
    pub older: u64,
    /// The checkpoint to cut after: (seq, entry hash); `None`: nothing can be pruned.
    pub through: Option<(i64, String)>,
    /// Entries and checkpoints the cut deletes.
    pub entries: u64,
    pub checkpoints: u64,
    /// Time of the first and last entry deleted.
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

/// Finds the last signed checkpoint before the first entry not older than `cutoff_ms`
/// that matches its stored entry (and whose signature verifies with `key`, when given),
/// and is before the log's last entry: the log may be cut after it.
pub fn scan_prune(
    conn: &Connection,
    path: &Path,
    cutoff_ms: i64,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<PruneScan, AuditError> {
    let e = db_err(path);
    let (first_seq, last_seq): (Option<i64>, Option<i64>) = conn
        .query_row("SELECT MIN(seq), MAX(seq) FROM entries", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(&e)?;
    let mut scan = PruneScan {
        first_seq,
        last_seq,
        ..PruneScan::default()
    };
    let (Some(first), Some(last)) = (first_seq, last_seq) else {
        return Ok(scan);
    };
    scan.older = conn
        .query_row(
            "SELECT count(*) FROM entries WHERE at_ms < ?1",
            params![cutoff_ms],
            |r| r.get::<_, i64>(0),
        )
        .map_err(&e)? as u64;
    // Everything from the first entry that is not old enough is kept.
    let keep_from: i64 = conn
        .query_row(
            "SELECT COALESCE(MIN(seq), ?2) FROM entries WHERE at_ms >= ?1",
            params![cutoff_ms, last],
            |r| r.get(0),
        )
        .map_err(&e)?;
    let keep_from = keep_from.min(last);
    let candidates = {
        let mut stmt = conn
            .prepare(
                "SELECT seq, entry_hash, at_ms, signature, key_id FROM checkpoints \
                 WHERE seq < ?1 AND seq >= ?2 ORDER BY seq DESC LIMIT 64",
            )
            .map_err(&e)?;
        stmt.query_map(params![keep_from, first], |r| {
            Ok(StoredCheckpoint {
                seq: r.get(0)?,
                entry_hash: text(r.get_ref(1)?).unwrap_or_default(),
                at_ms: r.get(2)?,
                signature: text(r.get_ref(3)?).unwrap_or_default(),
                key_id: text(r.get_ref(4)?).unwrap_or_default(),
            })
        })
        .map_err(&e)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(&e)?
    };
    for cp in candidates {
        let Ok(seq) = u64::try_from(cp.seq) else {
            continue;
        };
        if hash_at(conn, path, seq)?.as_deref() != Some(cp.entry_hash.as_str()) {
            continue;
        }
        if let Some(k) = key
            && !crate::chain::checkpoint_verifies(&cp, k)
        {
            continue;
        }
        scan.through = Some((cp.seq, cp.entry_hash));
        break;
    }
    if let Some((through, _)) = &scan.through {
        let (n, oldest, newest): (i64, Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT count(*), MIN(at_ms), MAX(at_ms) FROM entries WHERE seq <= ?1",
                params![through],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(&e)?;
        scan.entries = n as u64;
        scan.oldest_ms = oldest;
        scan.newest_ms = newest;
        scan.checkpoints = conn
            .query_row(
                "SELECT count(*) FROM checkpoints WHERE seq < ?1",
                params![through],
                |r| r.get::<_, i64>(0),
            )
            .map_err(&e)? as u64;
    }
    Ok(scan)
}

/// Deletes the entries up to `through` and the checkpoints before it (the one at `through`
/// stays: it seals the hash the first kept entry links to), inside the caller's
/// transaction. The append-only triggers are dropped and recreated in that transaction:
/// no other connection ever sees them missing.
pub(crate) fn delete_head(tx: &Connection, through: i64) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DROP TRIGGER IF EXISTS entries_append_only_delete;
         DROP TRIGGER IF EXISTS checkpoints_append_only_delete;",
    )?;
    tx.execute("DELETE FROM entries WHERE seq <= ?1", params![through])?;
    tx.execute("DELETE FROM checkpoints WHERE seq < ?1", params![through])?;
    tx.execute_batch(TRIGGERS_DELETE)
}

/// What releasing the space after a prune did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// The WAL was checkpointed and truncated to zero bytes (a reader can prevent it; the
    /// next prune retries).
    pub wal_truncated: bool,
    /// The file was rewritten without its free pages (`VACUUM`).
    pub vacuumed: bool,
    /// The database file's size before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// After a prune: the WAL truncated (its frames hold copies of the deleted pages), and the
/// file rewritten without its free pages when they are more than a quarter of it (the
/// deleted rows were already zeroed by `secure_delete`; a smaller share is reused by the
/// next entries).
pub fn release_space(conn: &Connection, path: &Path) -> Result<Released, AuditError> {
    let e = db_err(path);
    let size = || std::fs::metadata(path).map_or(0, |m| m.len());
    let mut out = Released {
        bytes_before: size(),
        ..Released::default()
    };
    let free: i64 = conn
        .pragma_query_value(None, "freelist_count", |r| r.get(0))
        .map_err(&e)?;
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .map_err(&e)?;
    if free > 0 && free * 4 >= pages {
        conn.execute_batch("VACUUM").map_err(&e)?;
        out.vacuumed = true;
    }
    out.wal_truncated = truncate_wal(conn, path)?;
    out.bytes_after = size();
    Ok(out)
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: `false` when a reader kept it from completing.
pub fn truncate_wal(conn: &Connection, path: &Path) -> Result<bool, AuditError> {
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .map_err(db_err(path))?;
    Ok(busy == 0)
}
