//! A small blocking pool of read-only connections.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, PoisonError};

use rusqlite::Connection;

pub(crate) struct Pool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl Pool {
    pub(crate) fn new(conns: Vec<Connection>) -> Self {
        debug_assert!(!conns.is_empty(), "an empty pool would block forever");
        Pool {
            idle: Mutex::new(conns),
            returned: Condvar::new(),
        }
    }

    /// Takes an idle connection, waiting for one to be returned when all are in use.
    pub(crate) fn get(&self) -> Pooled<'_> {
        // A panic while the lock is held cannot leave the Vec half-modified: keep going.
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = idle.pop() {
                return Pooled {
                    conn: Some(conn),
                    pool: self,
                };
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A connection borrowed from the pool, given back on drop (also when unwinding).
pub(crate) struct Pooled<'a> {
    /// `Some` until `drop`.
    conn: Option<Connection>,
    pool: &'a Pool,
}

impl Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("taken only in drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
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
