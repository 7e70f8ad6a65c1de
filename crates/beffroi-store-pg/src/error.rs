//! Error context: every backend error names the operation that failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use beffroi_engine::StoreError;
use postgres::Row;
use postgres::types::FromSql;

pub(crate) trait Context<T> {
    /// Wraps a PostgreSQL error as [`StoreError::Backend`] prefixed by `op`.
    fn ctx(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, postgres::Error> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| backend(op, &e))
    }
}

/// The server's own message when there is one (the `Display` of a client error alone can
/// be as terse as "db error").
pub(crate) fn backend(op: &str, e: &postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!("{op}: {db}")),
        None => StoreError::Backend(format!("{op}: {e}")),
    }
}

/// Typed column reads that fail with an error rather than a panic.
pub(crate) trait Get {
    fn at<'a, T: FromSql<'a>>(&'a self, idx: usize) -> Result<T, StoreError>;
}

impl Get for Row {
    fn at<'a, T: FromSql<'a>>(&'a self, idx: usize) -> Result<T, StoreError> {
        self.try_get(idx)
            .map_err(|e| StoreError::Backend(format!("read column {idx}: {e}")))
    }
}

pub(crate) use beffroi_store_rows::inconsistent;

/// Rows left out of listings because they no longer match the territory (or are
/// malformed), shared by the writer and the reader.
#[derive(Clone, Debug, Default)]
pub(crate) struct Skipped(Arc<AtomicU64>);

impl Skipped {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts the rows skipped by one listing and logs the first reason.
    pub(crate) fn record(&self, what: &'static str, count: u64, first: Option<&StoreError>) {
        if count == 0 {
            return;
        }
        self.0.fetch_add(count, Ordering::Relaxed);
        match first {
            Some(reason) => tracing::warn!(what, count, %reason, "stored rows skipped"),
            None => tracing::warn!(what, count, "stored rows skipped"),
        }
    }
}

/// Collects the rows of a listing, skipping (and counting) the inconsistent ones; backend
/// errors abort the listing.
pub(crate) struct SkipList<T> {
    pub(crate) items: Vec<T>,
    skipped: u64,
    first: Option<StoreError>,
}

impl<T> SkipList<T> {
    pub(crate) fn new() -> Self {
        SkipList {
            items: Vec::new(),
            skipped: 0,
            first: None,
        }
    }

    pub(crate) fn push(&mut self, item: Result<T, StoreError>) -> Result<(), StoreError> {
        match item {
            Ok(item) => self.items.push(item),
            Err(e @ StoreError::Inconsistent(_)) => self.skip(1, e),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Counts `count` rows left out for `reason`.
    pub(crate) fn skip(&mut self, count: u64, reason: StoreError) {
        if count > 0 {
            self.skipped += count;
            self.first.get_or_insert(reason);
        }
    }

    /// Reports the skipped rows to `counter` and returns the kept items.
    pub(crate) fn finish(self, counter: &Skipped, what: &'static str) -> Vec<T> {
        counter.record(what, self.skipped, self.first.as_ref());
        self.items
    }
}
