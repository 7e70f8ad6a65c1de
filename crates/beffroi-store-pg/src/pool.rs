//! A small blocking pool of reader connections, reconnected when the server closed them.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, PoisonError};

use beffroi_engine::StoreError;
use postgres::Client;

pub(crate) struct Pool {
    idle: Mutex<Vec<Client>>,
    returned: Condvar,
    config: postgres::Config,
}

impl Pool {
    pub(crate) fn new(conns: Vec<Client>, config: postgres::Config) -> Self {
        debug_assert!(!conns.is_empty(), "an empty pool would block forever");
        Pool {
            idle: Mutex::new(conns),
            returned: Condvar::new(),
            config,
        }
    }

    /// Takes an idle connection, waiting for one to be returned when all are in use. A
    /// connection the server closed (restart, failover) is replaced first; when that fails
    /// the closed one goes back to the pool and the error is returned.
    pub(crate) fn get(&self) -> Result<Pooled<'_>, StoreError> {
        // A panic while the lock is held cannot leave the Vec half-modified: keep going.
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = loop {
            if let Some(conn) = idle.pop() {
                break conn;
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(idle);
        let mut pooled = Pooled {
            conn: Some(conn),
            pool: self,
        };
        if pooled.is_closed() {
            tracing::warn!("store reader connection closed; reconnecting");
            let fresh = crate::connect_reader(&self.config)?;
            crate::close_apart(pooled.conn.replace(fresh).into_iter().collect());
        }
        Ok(pooled)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        crate::close_apart(idle);
    }
}

/// A connection borrowed from the pool, given back on drop (also when unwinding).
pub(crate) struct Pooled<'a> {
    /// `Some` until `drop`.
    conn: Option<Client>,
    pool: &'a Pool,
}

impl Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.conn.as_ref().expect("taken only in drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.conn.as_mut().expect("taken only in drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
            self.pool.returned.notify_one();
        }
    }
}
