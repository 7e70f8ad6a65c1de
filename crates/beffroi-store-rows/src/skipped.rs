//! Rows a listing leaves out because they no longer fit the territory (or are malformed):
//! counted and logged, never a failure of the whole listing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use beffroi_engine::StoreError;

/// Rows left out of listings because they no longer match the territory (or are
/// malformed), shared by the writer and the reader.
#[derive(Clone, Debug, Default)]
pub struct Skipped(Arc<AtomicU64>);

impl Skipped {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts the rows skipped by one listing and logs the first reason.
    pub fn record(&self, what: &'static str, count: u64, first: Option<&StoreError>) {
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
pub struct SkipList<T> {
    pub items: Vec<T>,
    skipped: u64,
    first: Option<StoreError>,
}

impl<T> Default for SkipList<T> {
    fn default() -> Self {
        SkipList::new()
    }
}

impl<T> SkipList<T> {
    pub fn new() -> Self {
        SkipList {
            items: Vec::new(),
            skipped: 0,
            first: None,
        }
    }

    pub fn push(&mut self, item: Result<T, StoreError>) -> Result<(), StoreError> {
        match item {
            Ok(item) => self.items.push(item),
            Err(e @ StoreError::Inconsistent(_)) => self.skip(1, e),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Counts `count` rows left out for `reason`.
    pub fn skip(&mut self, count: u64, reason: StoreError) {
        if count > 0 {
            self.skipped += count;
            self.first.get_or_insert(reason);
        }
    }

    /// Reports the skipped rows to `counter` and returns the kept items.
    pub fn finish(self, counter: &Skipped, what: &'static str) -> Vec<T> {
        counter.record(what, self.skipped, self.first.as_ref());
        self.items
    }
}
