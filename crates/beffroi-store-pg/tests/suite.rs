//! The shared store suite (`beffroi-store-suite`) on PostgreSQL: one throwaway cluster for
//! this test binary (`beffroi_testkit::postgres`), a fresh database per case. Skipped with
//! a message when PostgreSQL is not installed, unless `BEFFROI_REQUIRE_SERVICES=1`.

use std::path::PathBuf;
use std::sync::Arc;

use beffroi_core::Territory;
use beffroi_store_suite::{Backend, Opened};
use beffroi_testkit::postgres::Postgres;

struct Pg {
    url: String,
}

fn pg(case: &str) -> Option<Pg> {
    let cluster = Postgres::shared()?;
    Some(Pg {
        url: cluster.create_database(case),
    })
}

impl Pg {
    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect by hand")
    }
}

impl Backend for Pg {
    fn open_in(&self, territory: Arc<Territory>) -> Opened {
        let (store, reader) = beffroi_store_pg::open(&self.url, territory).expect("open store");
        let reader = Arc::new(reader);
        let counter = Arc::clone(&reader);
        Opened {
            store: Box::new(store),
            reader,
            skipped: Box::new(move || counter.skipped_rows()),
        }
    }

    fn purge_chunk(&self) -> usize {
        beffroi_store_pg::PURGE_CHUNK
    }

    fn execute(&self, sql: &str) {
        self.client().batch_execute(sql).expect("execute by hand");
    }

    fn query_i64(&self, sql: &str) -> Vec<i64> {
        self.client()
            .query(sql, &[])
            .expect("query")
            .iter()
            .map(|r| r.try_get(0).expect("an integer column"))
            .collect()
    }

    /// The cluster's files hold dead row versions until vacuumed and WAL segments until
    /// recycled: an erased value is not overwritten at once (ADR 0038).
    fn erased_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

beffroi_store_suite::store_suite!(pg);
