//! The cluster's audit trail in PostgreSQL (feature `postgres`): every node's log copied
//! into the database the nodes share ([`crate::mirror`]), read back as one access log,
//! and verified chain by chain.
//!
//! Tables, created at the first connection (under an advisory lock, as nodes start at once):
//! - `audit_logs`: one row per log (its `log_id`), the node that writes it;
//! - `audit_log_keys`: the public keys its checkpoints were signed with, as the node
//!   reported them (trust them only as far as the database: pin copies kept elsewhere);
//! - `audit_entries`: the entries as the file holds them (seq, prev hash, hash), plus `id`,
//!   the order in which the database received them (the access log's cursor);
//! - `audit_checkpoints`: the signed checkpoints.
//!
//! As in the file, triggers refuse to rewrite an entry or a checkpoint and to delete one
//! outside a prune (which sets `beffroi.audit_prune` for its own transaction): they stop
//! our own code from rewriting history, not someone with the database's rights, which is
//! what the chain and the signatures are for.

use std::sync::Mutex;
use std::time::Duration;

use beffroi_core::audit::{
    AuditEntry, AuditOutcome, AuditQuery, AuditReadError, AuditReader, AuditRecord,
};
use ed25519_dalek::VerifyingKey;
use postgres::{Client, NoTls};

use crate::chain::{self, Report, StoredCheckpoint, StoredEntry};
use crate::mirror::{MirrorError, MirrorPage, MirrorTarget, MirroredLog, TargetTail};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Serialises the schema's creation between nodes starting at once.
const SCHEMA_LOCK: i64 = 0x6265_6666_6175_6474; // "beffaudt"
/// Entries read per query while verifying.
const VERIFY_PAGE: i64 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_logs (
    log_id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log_keys (
    log_id TEXT NOT NULL REFERENCES audit_logs (log_id),
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    PRIMARY KEY (log_id, key_id)
);
CREATE TABLE IF NOT EXISTS audit_entries (
    id BIGSERIAL NOT NULL UNIQUE,
    log_id TEXT NOT NULL REFERENCES audit_logs (log_id),
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX IF NOT EXISTS audit_entries_action ON audit_entries (action text_pattern_ops);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    log_id TEXT NOT NULL REFERENCES audit_logs (log_id),
    seq BIGINT NOT NULL,
    entry_hash TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    signature TEXT NOT NULL,
    key_id TEXT NOT NULL,
    PRIMARY KEY (log_id, seq, signature)
);
CREATE OR REPLACE FUNCTION beffroi_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('beffroi.audit_prune', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_entries_append_only ON audit_entries;
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION beffroi_audit_append_only();
DROP TRIGGER IF EXISTS audit_checkpoints_append_only ON audit_checkpoints;
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION beffroi_audit_append_only();
";

/// Something went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
#[error("audit log in PostgreSQL: {context}: {source}")]
pub struct PgAuditError {
    context: &'static str,
    #[source]
    source: postgres::Error,
}

fn pg(context: &'static str) -> impl FnOnce(postgres::Error) -> PgAuditError {
    move |source| PgAuditError { context, source }
}

impl From<PgAuditError> for MirrorError {
    fn from(e: PgAuditError) -> Self {
        MirrorError::Target(e.to_string())
    }
}

/// Connects to `url` and creates the audit tables if they are missing.
pub fn connect(url: &str, application: &str) -> Result<Client, PgAuditError> {
    let mut config: postgres::Config = url.parse().map_err(pg("the connection string"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(application);
    }
    let mut client = config.connect(NoTls).map_err(pg("connecting"))?;
    let mut tx = client.transaction().map_err(pg("creating the tables"))?;
    // `IF NOT EXISTS` answers with a notice per table otherwise, at every connection.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .map_err(pg("creating the tables"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(pg("creating the tables"))?;
    tx.batch_execute(SCHEMA)
        .map_err(pg("creating the tables"))?;
    tx.commit().map_err(pg("creating the tables"))?;
    Ok(client)
}

/// A connection made on first use and made again after it broke.
struct Lazy {
    url: String,
    application: &'static str,
    client: Option<Client>,
}

impl Lazy {
    fn get(&mut self) -> Result<&mut Client, PgAuditError> {
        let client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => connect(&self.url, self.application)?,
        };
        Ok(self.client.insert(client))
    }

    /// Drops the connection after an error, so that the next use connects again.
    fn check<T>(&mut self, r: Result<T, PgAuditError>) -> Result<T, PgAuditError> {
        if r.is_err() {
            self.client = None;
        }
        r
    }
}

/// Where a node's mirror copies its log.
pub struct PgMirrorTarget {
    conn: Lazy,
}

impl PgMirrorTarget {
    /// Connects at the first use (a database down at start is retried by the mirror).
    pub fn new(url: &str) -> PgMirrorTarget {
        PgMirrorTarget {
            conn: Lazy {
                url: url.to_string(),
                application: "beffroi-audit-mirror",
                client: None,
            },
        }
    }
}

impl MirrorTarget for PgMirrorTarget {
    fn register(&mut self, log: &MirroredLog) -> Result<TargetTail, MirrorError> {
        let r = (|| {
            let client = self.conn.get()?;
            let mut tx = client.transaction().map_err(pg("registering the log"))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            tx.execute(
                "INSERT INTO audit_logs (log_id, node, registered_at) VALUES ($1, $2, $3)
                 ON CONFLICT (log_id) DO UPDATE SET node = EXCLUDED.node",
                &[&log.log_id, &log.node, &now],
            )
            .map_err(pg("registering the log"))?;
            tx.execute(
                "INSERT INTO audit_log_keys (log_id, key_id, public_key) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[
                    &log.log_id,
                    &chain::key_id(&log.public_key),
                    &hex::encode(log.public_key.as_bytes()),
                ],
            )
            .map_err(pg("registering the log's key"))?;
            let entry = tx
                .query_opt(
                    "SELECT seq, hash FROM audit_entries WHERE log_id = $1 ORDER BY seq DESC LIMIT 1",
                    &[&log.log_id],
                )
                .map_err(pg("reading the log's last entry"))?
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
            let checkpoint_seq: Option<i64> = tx
                .query_one(
                    "SELECT max(seq) FROM audit_checkpoints WHERE log_id = $1",
                    &[&log.log_id],
                )
                .map_err(pg("reading the log's last checkpoint"))?
                .get(0);
            tx.commit().map_err(pg("registering the log"))?;
            Ok(TargetTail {
                entry,
                checkpoint_seq,
            })
        })();
        Ok(self.conn.check(r)?)
    }

    fn apply(&mut self, log_id: &str, page: &MirrorPage) -> Result<(), MirrorError> {
        let r = (|| {
            let client = self.conn.get()?;
            let mut tx = client.transaction().map_err(pg("copying entries"))?;
            let insert = tx
                .prepare(
                    "INSERT INTO audit_entries
                     (log_id, seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (log_id, seq) DO NOTHING",
                )
                .map_err(pg("copying entries"))?;
            for e in &page.entries {
                tx.execute(
                    &insert,
                    &[
                        &log_id,
                        &e.seq,
                        &e.at_ms,
                        &e.actor,
                        &e.action,
                        &e.target,
                        &e.outcome,
                        &e.detail,
                        &e.prev_hash,
                        &e.hash,
                    ],
                )
                .map_err(pg("copying an entry"))?;
            }
            for c in &page.checkpoints {
                tx.execute(
                    "INSERT INTO audit_checkpoints (log_id, seq, entry_hash, at_ms, signature, key_id)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    &[&log_id, &c.seq, &c.entry_hash, &c.at_ms, &c.signature, &c.key_id],
                )
                .map_err(pg("copying a checkpoint"))?;
            }
            if let Some(first_kept) = page.prune_before {
                tx.batch_execute("SET LOCAL beffroi.audit_prune = 'on'")
                    .map_err(pg("pruning"))?;
                tx.execute(
                    "DELETE FROM audit_entries WHERE log_id = $1 AND seq < $2",
                    &[&log_id, &first_kept],
                )
                .map_err(pg("pruning entries"))?;
                // The file keeps the checkpoint that sealed the last entry deleted.
                tx.execute(
                    "DELETE FROM audit_checkpoints WHERE log_id = $1 AND seq < $2",
                    &[&log_id, &(first_kept - 1)],
                )
                .map_err(pg("pruning checkpoints"))?;
            }
            tx.commit().map_err(pg("copying entries"))
        })();
        Ok(self.conn.check(r)?)
    }
}

/// Escapes a plain prefix for `LIKE` (its default escape character is `\`).
fn like_prefix(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 1);
    for c in p.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The DPO's access log of a cluster: every node's entries, in the order the database
/// received them, newest first.
pub struct PgAuditReader {
    conn: Mutex<Lazy>,
}

impl PgAuditReader {
    pub fn new(url: &str) -> PgAuditReader {
        PgAuditReader {
            conn: Mutex::new(Lazy {
                url: url.to_string(),
                application: "beffroi-audit-reader",
                client: None,
            }),
        }
    }

    fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, PgAuditError> {
        let mut sql = String::from(
            "SELECT e.id, e.seq, e.at_ms, e.actor, e.action, e.target, e.outcome, e.detail, l.node
             FROM audit_entries e JOIN audit_logs l ON l.log_id = e.log_id WHERE true",
        );
        let mut args: Vec<Box<dyn postgres::types::ToSql + Sync>> = Vec::new();
        if !q.action_prefixes.is_empty() {
            let mut ors = Vec::new();
            for p in &q.action_prefixes {
                args.push(Box::new(like_prefix(p)));
                ors.push(format!("e.action LIKE ${}", args.len()));
            }
            sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
        }
        if let Some(since) = q.since_ms {
            args.push(Box::new(since));
            sql.push_str(&format!(" AND e.at_ms >= ${}", args.len()));
        }
        if let Some(before) = q.before {
            args.push(Box::new(i64::try_from(before).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" AND e.id < ${}", args.len()));
        }
        args.push(Box::new(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" ORDER BY e.id DESC LIMIT ${}", args.len()));
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a.as_ref()).collect();
        let mut lazy = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let r = (|| {
            let rows = lazy
                .get()?
                .query(&sql, &params)
                .map_err(pg("reading the access log"))?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    let seq: i64 = r.get(1);
                    let target: Option<String> = r.get(5);
                    let outcome: String = r.get(6);
                    AuditEntry {
                        seq: u64::try_from(seq).unwrap_or(0),
                        node: Some(r.get(8)),
                        cursor: u64::try_from(id).unwrap_or(0),
                        record: AuditRecord {
                            at_ms: r.get(2),
                            // Read back through the recogniser: the database is not trusted.
                            actor: beffroi_core::SafeText::redacting(r.get::<_, &str>(3)),
                            action: r.get(4),
                            target: target.as_deref().map(beffroi_core::SafeText::redacting),
                            outcome: AuditOutcome::parse(&outcome).unwrap_or(AuditOutcome::Failed),
                            detail: beffroi_core::SafeText::redacting(r.get::<_, &str>(7)),
                        },
                    }
                })
                .collect())
        })();
        lazy.check(r)
    }
}

/// The synchronous client owns a Tokio runtime of its own, which may not be dropped on an
/// asynchronous one (the server drops its state there): it is dropped on a thread.
impl Drop for PgAuditReader {
    fn drop(&mut self) {
        let lazy = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = lazy.client.take() {
            let _ = std::thread::Builder::new()
                .name("audit-reader-close".into())
                .spawn(move || drop(client));
        }
    }
}

impl AuditReader for PgAuditReader {
    fn read(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AuditReadError> {
        for p in &q.action_prefixes {
            if p.contains(['*', '?', '[']) {
                return Err(AuditReadError(format!("invalid action prefix `{p}`")));
            }
        }
        self.query(q).map_err(|e| AuditReadError(e.to_string()))
    }
}

/// One log the database holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterLog {
    pub log_id: String,
    pub node: String,
    /// The keys the node reported, as the database holds them (unparsable ones left out).
    pub recorded_keys: Vec<VerifyingKey>,
}

/// Every log the database holds, by node then identity.
pub fn logs(client: &mut Client) -> Result<Vec<ClusterLog>, PgAuditError> {
    let rows = client
        .query(
            "SELECT l.log_id, l.node,
                    coalesce(array_agg(k.public_key) FILTER (WHERE k.public_key IS NOT NULL), '{}')
             FROM audit_logs l LEFT JOIN audit_log_keys k ON k.log_id = l.log_id
             GROUP BY l.log_id, l.node ORDER BY l.node, l.registered_at, l.log_id",
            &[],
        )
        .map_err(pg("listing the logs"))?;
    Ok(rows
        .into_iter()
        .map(|r| ClusterLog {
            log_id: r.get(0),
            node: r.get(1),
            recorded_keys: r
                .get::<_, Vec<String>>(2)
                .iter()
                .filter_map(|h| {
                    let mut b = [0u8; 32];
                    hex::decode_to_slice(h, &mut b).ok()?;
                    VerifyingKey::from_bytes(&b).ok()
                })
                .collect(),
        })
        .collect())
}

/// Checks one log as the database holds it: its chain, and its checkpoints against `keys`.
pub fn verify_log(
    client: &mut Client,
    log_id: &str,
    keys: &[VerifyingKey],
) -> Result<Report, PgAuditError> {
    let checkpoints: Vec<StoredCheckpoint> = client
        .query(
            "SELECT seq, entry_hash, at_ms, signature, key_id FROM audit_checkpoints
             WHERE log_id = $1 ORDER BY seq",
            &[&log_id],
        )
        .map_err(pg("reading checkpoints"))?
        .into_iter()
        .map(|r| StoredCheckpoint {
            seq: r.get(0),
            entry_hash: r.get(1),
            at_ms: r.get(2),
            signature: r.get(3),
            key_id: r.get(4),
        })
        .collect();
    let mut pages = Pages {
        client,
        log_id,
        after: i64::MIN,
        buffer: std::collections::VecDeque::new(),
        done: false,
        error: None,
    };
    let report = chain::verify(&mut pages, &checkpoints, keys);
    match pages.error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// A log's entries in seq order, read a page at a time; a read error ends the iteration
/// and is kept.
struct Pages<'a> {
    client: &'a mut Client,
    log_id: &'a str,
    after: i64,
    buffer: std::collections::VecDeque<StoredEntry>,
    done: bool,
    error: Option<PgAuditError>,
}

impl Iterator for Pages<'_> {
    type Item = StoredEntry;

    fn next(&mut self) -> Option<StoredEntry> {
        if self.buffer.is_empty() && !self.done {
            match self.client.query(
                "SELECT seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash
                 FROM audit_entries WHERE log_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&self.log_id, &self.after, &VERIFY_PAGE],
            ) {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < VERIFY_PAGE;
                    self.buffer.extend(rows.into_iter().map(|r| StoredEntry {
                        seq: r.get(0),
                        at_ms: r.get(1),
                        actor: r.get(2),
                        action: r.get(3),
                        target: r.get(4),
                        outcome: r.get(5),
                        detail: r.get(6),
                        prev_hash: r.get(7),
                        hash: r.get(8),
                    }));
                    if let Some(last) = self.buffer.back() {
                        self.after = last.seq;
                    }
                }
                Err(e) => {
                    self.error = Some(pg("reading entries")(e));
                    self.done = true;
                }
            }
        }
        self.buffer.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_prefixes_match_only_literally() {
        assert_eq!(like_prefix("privacy."), "privacy.%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
