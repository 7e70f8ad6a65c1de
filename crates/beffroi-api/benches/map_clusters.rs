//! The map's server-side clustering over 100,000 devices (BENCHMARKS.md, "Console map").
//!
//! `cargo bench -p beffroi-api --bench map_clusters`

use std::hint::black_box;

use beffroi_api::mapgrid::{self, Bbox, MapIndex, MapState};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// 100,000 devices in 180 Gaussian-like blobs of ~1.5 km around Dijon, as
/// tools/gen_map_bench.py spreads them.
fn territory() -> MapIndex {
    let mut rng = StdRng::seed_from_u64(3);
    let centres: Vec<(f64, f64)> = (0..180)
        .map(|_| (rng.random_range(4.9..5.2), rng.random_range(47.22..47.42)))
        .collect();
    MapIndex::new((0..100_000).map(|i| {
        let (lon, lat) = centres[i % centres.len()];
        // Sum of three uniforms: roughly normal, sigma ~ 1.5 km.
        let g = |rng: &mut StdRng| (0..3).map(|_| rng.random_range(-1.0..1.0)).sum::<f64>() * 0.016;
        (lon + g(&mut rng) * 1.47, lat + g(&mut rng))
    }))
}

fn bench(c: &mut Criterion) {
    let ix = territory();
    let state = |i: usize| {
        if i.is_multiple_of(997) {
            MapState::Alarm
        } else {
            MapState::Normal
        }
    };
    // The console's request: the visible box (1600×900 px) with a margin of one screen.
    for (zoom, bbox) in [
        (10.0, Bbox::new(4.2, 46.8, 5.9, 47.8)),
        (13.0, Bbox::new(4.94, 47.25, 5.14, 47.38)),
        (16.0, Bbox::new(5.028, 47.314, 5.053, 47.33)),
    ] {
        let bbox = bbox.expect("a valid box");
        let g = mapgrid::cluster(&ix, zoom, &bbox, state).expect("grid");
        eprintln!(
            "zoom {zoom}: {} devices in view, {} clusters, {} single devices",
            g.in_view,
            g.clusters.len(),
            g.singles.len()
        );
        c.bench_function(&format!("cluster 100k devices, zoom {zoom}"), |b| {
            b.iter(|| mapgrid::cluster(black_box(&ix), zoom, &bbox, state))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
