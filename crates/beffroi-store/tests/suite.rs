//! The shared store suite (`beffroi-store-suite`) on SQLite: each case on a fresh file in
//! a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;

use beffroi_core::Territory;
use beffroi_store_suite::{Backend, Opened};

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn path(&self) -> PathBuf {
        self.dir.path().join("beffroi.db")
    }
}

fn sqlite(_case: &str) -> Option<Sqlite> {
    Some(Sqlite {
        dir: tempfile::tempdir().expect("temp dir"),
    })
}

impl Backend for Sqlite {
    fn open_in(&self, territory: Arc<Territory>) -> Opened {
        let (store, reader) = beffroi_store::open(&self.path(), territory).expect("open store");
        let reader = Arc::new(reader);
        let counter = Arc::clone(&reader);
        Opened {
            store: Box::new(store),
            reader,
            skipped: Box::new(move || counter.skipped_rows()),
        }
    }

    fn purge_chunk(&self) -> usize {
        beffroi_store::PURGE_CHUNK
    }

    fn execute(&self, sql: &str) {
        rusqlite::Connection::open(self.path())
            .expect("open raw")
            .execute_batch(sql)
            .expect("execute by hand");
    }

    fn query_i64(&self, sql: &str) -> Vec<i64> {
        let conn = rusqlite::Connection::open(self.path()).expect("open raw");
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    fn erased_files(&self) -> Vec<PathBuf> {
        let db = self.path();
        vec![db.with_extension("db-wal"), db]
    }
}

beffroi_store_suite::store_suite!(sqlite);
