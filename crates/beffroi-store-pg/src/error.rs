//! Error context: every backend error names the operation that failed.

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

pub(crate) use beffroi_store_rows::{SkipList, Skipped};
