//! The cost of a personal field on the hot path, next to a technical one: the pipeline
//! ingesting one JSON message with a bool (technical) or a badge number (personal: one
//! HMAC-SHA256 for the pseudonym and one ChaCha20-Poly1305 sealing per value).
//!
//! `cargo bench -p beffroi-engine --bench pseudonymise`

use std::hint::black_box;
use std::sync::Arc;

use beffroi_core::Timestamp;
use beffroi_core::territory::fixture;
use beffroi_engine::Source;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_privacy::{EpochKey, Pseudonymiser};
use beffroi_territory::SourceFile;
use beffroi_wire::Format;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const START: i64 = 1_795_694_400_000;
const N: i64 = 1_000;

fn pipeline() -> Pipeline {
    let t = Arc::new(fixture::small());
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", ""), &t).expect("rules");
    let keys = Pseudonymiser::new(vec![EpochKey::new(1, &[3; 32])]).expect("keys");
    Pipeline::new(
        PipelineConfig {
            pseudonymiser: Some(Arc::new(keys)),
            ..PipelineConfig::new(t, Arc::new(rules), Vec::new(), Arc::new(Metrics::new()))
        },
        Timestamp(START),
    )
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pseudonymise");
    g.throughput(Throughput::Elements(N as u64));
    for (label, personal) in [("technical_bool", false), ("personal_badge", true)] {
        let mut p = pipeline();
        let mut round = 0i64;
        g.bench_function(label, |b| {
            b.iter(|| {
                // Later event times each round, so nothing is a duplicate.
                round += 1;
                let mut out = Output::default();
                for i in 0..N {
                    let v = if personal {
                        format!(r#""badge":"B-{:05}""#, i % 500)
                    } else {
                        r#""on":true"#.to_string()
                    };
                    let body = format!(
                        r#"{{"device":"a1","time":{},"values":{{{v}}}}}"#,
                        START + round * N + i
                    );
                    p.ingest(
                        Source::HTTP,
                        Format::Json,
                        None,
                        body.as_bytes(),
                        Timestamp(START + (round + 1) * N),
                        &mut out,
                    );
                }
                black_box(out.batch.observations.len())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
