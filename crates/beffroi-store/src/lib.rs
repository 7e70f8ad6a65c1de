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
//! - **Idempotent observations.** The key is (device, field, event time) and rows are
//!   inserted with `INSERT OR IGNORE`: a redelivered batch stores nothing twice. Incidents
//!   are upserted by id; their log entries are appended.
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
mod operations;
mod pool;
mod queries;
mod reader;
mod retention;
mod rows;
mod schema;
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
pub use schema::SCHEMA_VERSION;
pub use writer::{PURGE_CHUNK, SqliteStore};

/// Read-only connections in the reader's pool.
pub const READERS: usize = 4;

/// WAL size, in pages, that triggers a checkpoint.
const WAL_CHECKPOINT_PAGES: i64 = 16_384;

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
    schema::migrate(&mut writer)?;

    let readers = (0..READERS)
        .map(|_| open_reader(path))
        .collect::<Result<Vec<_>, _>>()?;
    let skipped = Skipped::default();
    let checkpointer = Checkpointer::spawn(path)?;
    Ok((
        SqliteStore::new(
            writer,
            Arc::clone(&territory),
            skipped.clone(),
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
    // 64 MiB of page cache: the leaf pages of recently written (device, field) keys stay
    // hot, which keeps inserts spread over thousands of devices fast.
    conn.pragma_update(None, "cache_size", -65_536)
        .ctx("set cache size")?;
    // No checkpoint on the writer: a checkpoint of a large WAL stalls the commit that
    // triggers it (measured: p99 publish→incident 150 ms at 10k msg/s). The
    // [`Checkpointer`] thread runs passive checkpoints beside the writer instead.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .ctx("disable automatic WAL checkpoints")?;
    conn.pragma_update(None, "journal_size_limit", WAL_CHECKPOINT_PAGES * 4096)
        .ctx("set journal size limit")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// Copies the WAL back into the database file from its own connection, every
/// [`CHECKPOINT_EVERY`], in PASSIVE mode: it never blocks the writer or the readers, and
/// SQLite restarts the WAL from its beginning once a checkpoint has caught up.
pub(crate) struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

impl Checkpointer {
    fn spawn(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path).map_err(|e| {
            StoreError::Backend(format!("open {} for checkpoints: {e}", path.display()))
        })?;
        conn.busy_timeout(BUSY_TIMEOUT).ctx("set busy timeout")?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("beffroi-store-checkpoint".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    if let Err(e) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
                // A last full checkpoint so that a clean stop leaves a small WAL.
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                });
            })
            .map_err(|e| StoreError::Backend(format!("spawn the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
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
