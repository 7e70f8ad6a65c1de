//! Write throughput of the SQLite store: batches of observations, each batch one durable
//! commit (WAL, `synchronous=FULL`), round-robin over a fleet of devices.
//!
//! The fleet size matters more than anything else: observations are clustered by
//! (device, field, time), so a commit writes one page per device it touches. With 2,000
//! devices a batch of 1,000 dirties ~1,000 pages (the worst case: a whole town reporting at
//! once); with 20 devices, a few dozen (a backlog replayed by a few gateways).
//!
//! `cargo bench -p beffroi-store --bench write`

use beffroi_engine::store::prelude::*;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use beffroi_core::territory::fixture;
use beffroi_core::{DeviceIdx, FieldIdx, Territory, Timestamp, Value};
use beffroi_engine::WriteBatch;
use beffroi_engine::store::StoredObservation;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The fixture's commune, sites and kinds, with `devices` water-level gauges.
fn town(devices: u32) -> Territory {
    fixture::town(devices)
}

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

fn observations(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_observations");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for devices in [2_000u32, 20] {
        for size in [1_000usize, 10_000] {
            let dir = tempfile::tempdir().expect("temp dir");
            let (mut store, _reader) =
                beffroi_store::open(&dir.path().join("bench.db"), Arc::new(town(devices)))
                    .expect("open");
            let mut seq = 0i64;
            group.throughput(Throughput::Elements(size as u64));
            group.bench_function(BenchmarkId::new(format!("{devices}_devices"), size), |b| {
                b.iter_batched(
                    || batch(devices, size, &mut seq),
                    |batch| store.write(black_box(&batch)).expect("write"),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, observations);
criterion_main!(benches);
