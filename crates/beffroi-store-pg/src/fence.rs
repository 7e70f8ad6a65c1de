//! Fencing a cluster's writers: the node that takes over makes every write of the node it
//! replaced fail, even one that is still draining after it lost its lease.
//!
//! The lease (NATS JetStream KV) decides which node runs the engine. A node that loses it
//! stops, but until it has drained it may still commit: a late batch, a purge. A lease
//! alone cannot stop that (the lease store is not the data store). So the new holder takes a
//! fence in the data store before it restores the engine ([`Fence::take`]):
//! `UPDATE cluster_fence SET epoch = epoch + 1` returns its epoch, which is then set on the
//! writer's session (`beffroi.fence_epoch`). Every write transaction of a fenced writer
//! begins with `beffroi_fence_check()`. It reads the table's epoch `FOR SHARE` and raises
//! SQLSTATE `BF001` when a later epoch exists. The shared lock makes the takeover's
//! `UPDATE` wait for the transactions already past their check: none of them commits
//! after the new epoch, and none begins after it without failing. A writer that was never
//! fenced (a single server on PostgreSQL) is never checked.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use beffroi_engine::StoreError;
use postgres::{NoTls, Transaction};

use crate::error::Context;

/// SQLSTATE of a write refused because another node took over.
pub const FENCED: &str = "BF001";

/// Takes the fence for one [`crate::PgStore`] (from [`crate::PgStore::fence`]).
#[derive(Clone)]
pub struct Fence {
    config: postgres::Config,
    epoch: Arc<AtomicI64>,
}

impl Fence {
    pub(crate) fn new(config: postgres::Config, epoch: Arc<AtomicI64>) -> Fence {
        Fence { config, epoch }
    }

    /// Fences out every earlier writer and makes the store's writer hold the new epoch,
    /// which it returns. Waits for the earlier writers' transactions in progress. Blocking.
    pub fn take(&self) -> Result<i64, StoreError> {
        let mut client = self
            .config
            .connect(NoTls)
            .map_err(|e| crate::error::backend("connect to PostgreSQL to take the fence", &e))?;
        let epoch: i64 = client
            .query_one(
                "UPDATE cluster_fence SET epoch = epoch + 1 WHERE one RETURNING epoch",
                &[],
            )
            .ctx("take the fence")?
            .get(0);
        self.epoch.store(epoch, Ordering::Release);
        Ok(epoch)
    }

    /// The epoch taken, 0 before.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }
}

/// First statement of a write transaction: refused when a node took over from this one.
pub(crate) fn check(tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    match tx.execute("SELECT beffroi_fence_check()", &[]) {
        Ok(_) => Ok(()),
        Err(e) if e.code().is_some_and(|c| c.code() == FENCED) => {
            Err(StoreError::Backend(format!(
                "fenced: another node took over this territory's store ({})",
                e.as_db_error().map_or("", |d| d.message())
            )))
        }
        Err(e) => Err(crate::error::backend("check the fence", &e)),
    }
}
