//! Write throughput of the PostgreSQL store, beside what PostgreSQL does alone in the same
//! run: the same batches as the SQLite store's benchmark (`beffroi-store/benches/write.rs`:
//! readings round-robin over a fleet of devices, one durable commit per batch,
//! `synchronous_commit = on`), and the ceiling — the same rows inserted by hand in one
//! statement and one commit into a table with the same primary key and no other index,
//! counter or upsert work.
//!
//! The cluster is a throwaway one on a free loopback port (`beffroi_testkit::postgres`),
//! with PostgreSQL's defaults (fsync on).
//!
//! `cargo bench -p beffroi-store-pg --bench write`

use beffroi_engine::store::prelude::*;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use beffroi_core::territory::fixture;
use beffroi_core::{DeviceIdx, FieldIdx, Timestamp, Value};
use beffroi_engine::WriteBatch;
use beffroi_engine::store::StoredObservation;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// `size` readings, round-robin over `devices`, event times after every earlier batch.
fn batch(devices: u32, size: usize, seq: &mut i64) -> WriteBatch {
    let observations = (0..size)
        .map(|_| {
            *seq += 1;
            let n = *seq;
            let time = Timestamp(1_700_000_000_000 + n * 10);
            StoredObservation {
                device: DeviceIdx((n % i64::from(devices)) as u32),
                field: FieldIdx(0),
                value: Value::Number((n % 1000) as f64 / 100.0),
                time,
                received: time,
                trust: beffroi_core::Trust::Unauthenticated,
                quarantined: false,
            }
        })
        .collect();
    WriteBatch {
        observations,
        ..Default::default()
    }
}

/// The columns of the ceiling's table, one vector each.
#[derive(Default)]
struct Columns {
    device: Vec<String>,
    field: Vec<String>,
    time: Vec<i64>,
    vkey: Vec<i64>,
    value: Vec<f64>,
    received: Vec<i64>,
}

fn observations(c: &mut Criterion) {
    let Some(pg) = beffroi_testkit::postgres::Postgres::start() else {
        eprintln!("PostgreSQL is not installed: benchmark skipped");
        return;
    };
    let mut group = c.benchmark_group("pg_write_observations");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for devices in [2_000u32, 20] {
        for size in [1_000usize, 10_000] {
            let t = Arc::new(fixture::town(devices));
            group.throughput(Throughput::Elements(size as u64));

            let url = pg.create_database(&format!("store_{devices}_{size}"));
            let (mut store, _reader) = beffroi_store_pg::open(&url, Arc::clone(&t)).expect("open");
            let mut seq = 0i64;
            group.bench_function(
                BenchmarkId::new(format!("store_{devices}_devices"), size),
                |b| {
                    b.iter_batched(
                        || batch(devices, size, &mut seq),
                        |batch| store.write(black_box(&batch)).expect("write"),
                        BatchSize::LargeInput,
                    )
                },
            );

            // The ceiling: the same rows, one INSERT … SELECT FROM UNNEST and one commit.
            let url = pg.create_database(&format!("alone_{devices}_{size}"));
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            client
                .batch_execute(
                    "CREATE TABLE observations (device TEXT NOT NULL, field TEXT NOT NULL, \
                     time BIGINT NOT NULL, vkey BIGINT NOT NULL, value DOUBLE PRECISION, \
                     received BIGINT NOT NULL, PRIMARY KEY (device, field, time, vkey))",
                )
                .expect("table");
            let mut seq = 0i64;
            group.bench_function(
                BenchmarkId::new(format!("postgres_alone_{devices}_devices"), size),
                |b| {
                    b.iter_batched(
                        || {
                            let wb = batch(devices, size, &mut seq);
                            let mut cols = Columns::default();
                            for o in &wb.observations {
                                cols.device.push(t.device(o.device).id.to_string());
                                cols.field.push("level_m".to_string());
                                cols.time.push(o.time.0);
                                cols.vkey.push(o.value.key());
                                cols.value.push(o.value.as_f64().unwrap_or_default());
                                cols.received.push(o.received.0);
                            }
                            cols
                        },
                        |cols| {
                            let mut tx = client.transaction().expect("begin");
                            tx.execute(
                                "INSERT INTO observations \
                                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], \
                                 $4::bigint[], $5::float8[], $6::bigint[])",
                                &[
                                    &cols.device,
                                    &cols.field,
                                    &cols.time,
                                    &cols.vkey,
                                    &cols.value,
                                    &cols.received,
                                ],
                            )
                            .expect("insert");
                            tx.commit().expect("commit");
                        },
                        BatchSize::LargeInput,
                    )
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, observations);
criterion_main!(benches);
