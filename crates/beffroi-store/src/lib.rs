//! The SQLite adapter of Beffroi's persistence boundary ([`beffroi_engine::store`]).
//!
//! [`open`] returns the two halves: [`SqliteStore`] (implements [`Store`]) for the engine's
//! store thread, and [`SqliteReader`] (implements [`StoreReader`]) for the API.
//!
//! **Invariants**
//! - **One writer.** Only [`SqliteStore`] writes, through one connection, from one thread;
//!   each [`Store::write`] is one `IMMEDIATE` transaction. Readers use a separate pool of
//!   read-only connections and, thanks to WAL, never block the writer.
//! - **Acknowledged means durable.** WAL with `synchronous=FULL`: once `write` returns, the
//!   batch survives a process kill and a power loss (with `NORMAL` a power loss could lose
//!   the last commits). Senders must only be acknowledged after `write` returned `Ok`.
//! - **Idempotent observations, none lost.** The key is (device, field, event time, value
//!   key — `beffroi_core::Value::key`) and rows are inserted with `INSERT OR IGNORE`: a
//!   redelivered batch stores nothing twice, and a second reading of the same millisecond
//!   with another value is kept beside the first. People counts keep one row per bucket
//!   (key 0) holding its highest count. Incidents are upserted by id; their log entries are
//!   appended.
//! - **Ids as text.** Rows hold the territory's textual ids (device, field name, site,
//!   commune), never indices, so the file reads well in `sqlite3` and survives territory
//!   edits. A row that names something the territory no longer has is reported as
//!   [`StoreError::Inconsistent`] for a single incident, and skipped and counted
//!   ([`SqliteReader::skipped_rows`]) in listings. Reading never panics.
//! - **Versioned schema.** `PRAGMA user_version` counts the applied migrations; a file
//!   from a newer build is refused.
//!
//! Times are milliseconds since the Unix epoch (UTC). `device_state.last_seen` is the
//! latest *reception* time of the device's observations. The observation count is kept in
//! the `counters` table in the same transactions as the rows it counts.

mod error;
mod events;
mod handover;
mod operations;
mod pool;
mod queries;
mod reader;
mod retention;
mod rows;
mod schema;
mod situations;
pub mod wal;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use beffroi_core::Territory;
use beffroi_engine::{Store, StoreError, StoreReader};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Context, Skipped};

pub use queries::DEFAULT_LIMIT;
pub use reader::SqliteReader;
pub use retention::RECORD_CHUNK;
pub use schema::{SCHEMA_VERSION, create_at_version};
pub use writer::{PURGE_CHUNK, SqliteStore};

/// Read-only connections in the reader's pool.
pub const READERS: usize = 4;

/// How long a connection waits for a lock before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if needed) the database at `path`, migrates its schema and returns the
/// writer and the reader. Ids are resolved against `territory`.
pub fn open(
    path: &Path,
    territory: Arc<Territory>,
) -> Result<(SqliteStore, SqliteReader), StoreError> {
    let mut writer = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("open {}: {e}", path.display())))?;
    configure_writer(&writer)?;
    schema::migrate(&mut writer, &territory)?;

    let readers = (0..READERS)
        .map(|_| open_reader(path))
        .collect::<Result<Vec<_>, _>>()?;
    let skipped = Skipped::default();
    let shared = wal::WalShared::new(path);
    let checkpointer = wal::Checkpointer::spawn(path, Arc::clone(&shared), BUSY_TIMEOUT)?;
    Ok((
        SqliteStore::new(
            writer,
            Arc::clone(&territory),
            skipped.clone(),
            wal::WalControl::new(shared, BUSY_TIMEOUT),
            checkpointer,
        ),
        SqliteReader::new(pool::Pool::new(readers), territory, skipped),
    ))
}

fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).ctx("set busy timeout")?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
        .ctx("set WAL mode")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "set WAL mode: the database stays in `{mode}` mode"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .ctx("set synchronous=FULL")?;
    conn.pragma_update(None, "foreign_keys", true)
        .ctx("enable foreign keys")?;
    // Deleted content is overwritten with zeros, not left in free pages where the file
    // would still hold it (a purged badge read back with the live key); the WAL is
    // truncated after each erasure ([`wal::WalControl::truncate_after_erasure`]).
    conn.pragma_update(None, "secure_delete", "ON")
        .ctx("set secure_delete")?;
    // 64 MiB of page cache: the leaf pages of recently written (device, field) keys stay
    // hot, which keeps inserts spread over thousands of devices fast.
    conn.pragma_update(None, "cache_size", -65_536)
        .ctx("set cache size")?;
    // No automatic checkpoint: a checkpoint of a large WAL stalls the commit that
    // triggers it (measured: p99 publish→incident 150 ms at 10k msg/s). The policy of
    // [`wal`] runs them beside the writer and, past a threshold, between two commits.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .ctx("disable automatic WAL checkpoints")?;
    conn.pragma_update(None, "journal_size_limit", wal::JOURNAL_SIZE_LIMIT)
        .ctx("set journal size limit")?;
    wal::install_hook(conn);
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Backend(format!("open {} read-only: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).ctx("set busy timeout")?;
    conn.pragma_update(None, "cache_size", -16_384)
        .ctx("set cache size")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

// Both halves must cross threads: the writer to the store thread, the reader into an Arc.
const _: () = {
    const fn store<T: Store>() {}
    const fn reader<T: StoreReader>() {}
    store::<SqliteStore>();
    reader::<SqliteReader>();
};
