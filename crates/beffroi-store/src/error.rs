//! Error context: every backend error names the operation that failed.

use beffroi_engine::StoreError;

pub(crate) trait Context<T> {
    /// Wraps a SQLite error as [`StoreError::Backend`] prefixed by `op`.
    fn ctx(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(format!("{op}: {e}")))
    }
}

pub(crate) use beffroi_store_rows::inconsistent;

pub(crate) use beffroi_store_rows::{SkipList, Skipped};
