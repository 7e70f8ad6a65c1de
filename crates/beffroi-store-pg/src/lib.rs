//! The PostgreSQL adapter of Beffroi's persistence boundary ([`beffroi_engine::store`]).
//!
//! [`open`] returns the two halves: [`PgStore`] (implements [`Store`]: `Commit`, `Restore`,
//! `Retain`) for the engine's store thread, and [`PgReader`] (implements [`StoreReader`]:
//! `IncidentReads`, `ObservationReads`, `RecordReads`) for the API. The tables,
//! columns and semantics are those of the SQLite store (`beffroi-store`); one test suite
//! (`beffroi-store-suite`) runs against both.
//!
//! **Invariants**
//! - **One writer.** Only [`PgStore`] writes, through one connection, from one thread; each
//!   [`Store::write`] is one transaction. Readers use a separate pool of connections whose
//!   sessions are read-only; under MVCC they never block the writer.
//! - **Acknowledged means durable.** The writer's session runs with
//!   `synchronous_commit = on`: once `write` returns, the batch is in the server's WAL on
//!   disk (and on the synchronous standbys the server is configured with). Senders must
//!   only be acknowledged after `write` returned `Ok`.
//! - **Idempotent observations.** The key is (device, field, event time, value key) and rows
//!   are inserted with `ON CONFLICT DO NOTHING`: a redelivered batch stores nothing twice,
//!   and a second reading of the same millisecond with another value is kept. Incidents are
//!   upserted by id; their log entries are appended.
//! - **Ids as text.** Rows hold the territory's textual ids, never indices. A row that names
//!   something the territory no longer has is reported as [`StoreError::Inconsistent`] for a
//!   single incident, and skipped and counted ([`PgReader::skipped_rows`]) in listings.
//!   Reading never panics.
//! - **Versioned schema.** The `schema_version` table counts the applied migrations; a
//!   database from a newer build is refused.
//! - **No geography in the database.** The store keeps positions as two numbers; the map
//!   is computed in memory, so PostGIS is not needed.
//!
//! Times are milliseconds since the Unix epoch (UTC) in `BIGINT` columns.
//! `device_state.last_seen` is the latest *reception* time of the device's observations.
//! The observation count is kept in the `counters` table in the same transactions as the
//! rows it counts. Connections use no TLS: the server is expected on the same host or a
//! private network (a socket path or `host=/run/postgresql` works too).

mod error;
mod events;
pub mod fence;
mod handover;
mod operations;
mod pool;
mod queries;
mod reader;
mod retention;
mod rows;
mod schema;
mod situations;
pub mod vault;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use beffroi_core::Territory;
use beffroi_engine::{Store, StoreError, StoreReader};
use postgres::{Client, NoTls};

use crate::error::{Context, Skipped};

pub use fence::Fence;
pub use queries::DEFAULT_LIMIT;
pub use reader::PgReader;
pub use retention::RECORD_CHUNK;
pub use schema::SCHEMA_VERSION;
pub use writer::{PURGE_CHUNK, PgStore};

/// Connections in the reader's pool.
pub const READERS: usize = 4;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one statement may wait for a lock before failing (a stuck writer or a
/// migration in another process), rather than blocking the store thread forever.
const LOCK_TIMEOUT: &str = "5s";

/// Opens the database named by `url` (a `postgresql://` URL or a `key=value` connection
/// string), migrates its schema and returns the writer and the reader. Ids are resolved
/// against `territory`.
pub fn open(url: &str, territory: Arc<Territory>) -> Result<(PgStore, PgReader), StoreError> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("PostgreSQL connection string: {e}")))?;
    open_config(config, territory)
}

/// [`open`] with an already built configuration.
pub fn open_config(
    mut config: postgres::Config,
    territory: Arc<Territory>,
) -> Result<(PgStore, PgReader), StoreError> {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("beffroi");
    }
    let mut writer = connect_writer(&config)?;
    schema::migrate(&mut writer)?;
    let readers = (0..READERS)
        .map(|_| connect_reader(&config))
        .collect::<Result<Vec<_>, _>>()?;
    let skipped = Skipped::default();
    Ok((
        PgStore::new(
            writer,
            config.clone(),
            Arc::clone(&territory),
            skipped.clone(),
        ),
        PgReader::new(pool::Pool::new(readers, config), territory, skipped),
    ))
}

fn connect(config: &postgres::Config) -> Result<Client, StoreError> {
    config
        .connect(NoTls)
        .map_err(|e| error::backend("connect to PostgreSQL", &e))
}

pub(crate) fn connect_writer(config: &postgres::Config) -> Result<Client, StoreError> {
    let mut client = connect(config)?;
    client
        .batch_execute(&format!(
            "SET synchronous_commit = on; SET lock_timeout = '{LOCK_TIMEOUT}'; \
             SET TIME ZONE 'UTC'"
        ))
        .ctx("configure the writer session")?;
    Ok(client)
}

pub(crate) fn connect_reader(config: &postgres::Config) -> Result<Client, StoreError> {
    let mut client = connect(config)?;
    client
        .batch_execute(&format!(
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
             SET lock_timeout = '{LOCK_TIMEOUT}'; SET TIME ZONE 'UTC'"
        ))
        .ctx("configure a reader session")?;
    Ok(client)
}

/// Closes connections on a thread of their own: the `postgres` client drives its socket
/// with a private runtime, which cannot run inside another runtime's context, so a
/// connection dropped from async code (the last `Arc` of a reader released by a task)
/// would panic there.
pub(crate) fn close_apart(clients: Vec<Client>) {
    if clients.is_empty() {
        return;
    }
    let closing = std::thread::Builder::new()
        .name("store-pg-close".into())
        .spawn(move || drop(clients));
    match closing {
        // Waited for: the server has seen the sessions end when the store is gone.
        Ok(handle) => {
            if handle.join().is_err() {
                tracing::warn!("closing store connections panicked");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not close store connections apart"),
    }
}

// Both halves must cross threads: the writer to the store thread, the reader into an Arc.
const _: () = {
    const fn store<T: Store>() {}
    const fn reader<T: StoreReader>() {}
    store::<PgStore>();
    reader::<PgReader>();
};
