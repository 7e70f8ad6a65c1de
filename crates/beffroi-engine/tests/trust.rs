//! Device trust through the pipeline: each observation carries the trust it earned, the
//! signing policy of its kind and the topic binding are enforced, refusals are stored as
//! rejections with their reason and raise their security signal.

use std::sync::Arc;

use beffroi_core::{Timestamp, Trust};
use beffroi_engine::Source;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_engine::trust::{DeviceKeys, Transport};
use beffroi_territory::SourceFile;
use beffroi_wire::{Format, RejectReason, signed};

const START: i64 = 1_795_694_400_000;
const KEY: [u8; 32] = [5; 32];

fn pipeline() -> (Pipeline, Arc<Metrics>) {
    let t = beffroi_territory::load(&[
        SourceFile::new(
            "territory.toml",
            "[territory]\nid = \"t\"\nname = \"T\"\n\n[[commune]]\nid = \"c1\"\nname = \"C\"\nposition = [5.0, 47.0]\n",
        ),
        SourceFile::new(
            "kinds.toml",
            "[[kind]]\nid = \"open\"\nlabel = \"O\"\n[[kind.field]]\nname = \"level_m\"\ntype = \"number\"\ncategory = \"technical\"\n\n\
             [[kind]]\nid = \"sealed\"\nlabel = \"S\"\nsigning = \"required\"\n[[kind.field]]\nname = \"level_m\"\ntype = \"number\"\ncategory = \"technical\"\n",
        ),
        SourceFile::new(
            "sites.geojson",
            r#"{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"id":"s1","name":"S","kind":"school","commune":"c1"},"geometry":{"type":"Point","coordinates":[5.0,47.0]}}
]}"#,
        ),
        SourceFile::new(
            "devices/c1.toml",
            "[[device]]\nid = \"plain\"\nkind = \"open\"\nsite = \"s1\"\n\n[[device]]\nid = \"gauge\"\nkind = \"sealed\"\nsite = \"s1\"\n",
        ),
    ])
    .expect("territory");
    let t = Arc::new(t);
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", ""), &t).expect("rules");
    let metrics = Arc::new(Metrics::new());
    let mut p = Pipeline::new(
        PipelineConfig::new(t, Arc::new(rules), Vec::new(), Arc::clone(&metrics)),
        Timestamp(START),
    );
    p.set_device_keys(Arc::new(DeviceKeys::new([("gauge".to_string(), KEY)])));
    (p, metrics)
}

fn body(dev: &str, v: f64) -> Vec<u8> {
    format!(r#"{{"device":"{dev}","time":{START},"values":{{"level_m":{v}}}}}"#).into_bytes()
}

fn ingest(p: &mut Pipeline, hint: &str, authenticated: bool, payload: &[u8]) -> Output {
    let mut out = Output::default();
    p.ingest_from(
        Source::MQTT,
        Format::Json,
        Transport {
            device_hint: Some(hint),
            authenticated,
        },
        payload,
        Timestamp(START + 1000),
        &mut out,
    );
    out
}

fn reasons(out: &Output) -> Vec<RejectReason> {
    out.batch.rejections.iter().map(|r| r.reason).collect()
}

fn signals(m: &Metrics, kind: &str) -> u64 {
    let text = m.encode();
    text.lines()
        .find(|l| {
            l.starts_with(&format!(
                "beffroi_security_signals_total{{kind=\"{kind}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn trust_levels_by_transport_and_signature() {
    let (mut p, _) = pipeline();
    let out = ingest(&mut p, "plain", false, &body("plain", 1.0));
    assert_eq!(out.batch.observations[0].trust, Trust::Unauthenticated);
    let out = ingest(&mut p, "plain", true, &body("plain", 1.0));
    assert_eq!(out.batch.observations[0].trust, Trust::BrokerAuthenticated);
    let sealed = signed::seal("gauge", 1, &KEY, &body("gauge", 2.0));
    let out = ingest(&mut p, "gauge", true, &sealed);
    assert_eq!(reasons(&out), vec![]);
    assert_eq!(out.batch.observations[0].trust, Trust::Signed);
    assert_eq!(out.batch.replay_windows.len(), 1);
    assert_eq!(out.batch.replay_windows[0].highest, 1);
}

#[test]
fn refusals_are_stored_and_signalled() {
    let (mut p, m) = pipeline();
    // The gauge's kind requires signing.
    let out = ingest(&mut p, "gauge", true, &body("gauge", 2.0));
    assert_eq!(reasons(&out), vec![RejectReason::Unsigned]);
    assert!(out.batch.observations.is_empty());
    assert_eq!(signals(&m, "unsigned"), 1);
    // Replay.
    let sealed = signed::seal("gauge", 7, &KEY, &body("gauge", 2.0));
    assert!(
        ingest(&mut p, "gauge", true, &sealed)
            .batch
            .rejections
            .is_empty()
    );
    let out = ingest(&mut p, "gauge", true, &sealed);
    assert_eq!(reasons(&out), vec![RejectReason::Replay]);
    assert_eq!(signals(&m, "replay"), 1);
    // Forged.
    let forged = signed::seal("gauge", 8, &[1; 32], &body("gauge", 9.0));
    let out = ingest(&mut p, "gauge", true, &forged);
    assert_eq!(reasons(&out), vec![RejectReason::BadSignature]);
    assert_eq!(signals(&m, "bad_signature"), 1);
    // A signed envelope carrying another device's record.
    let smuggled = signed::seal("gauge", 9, &KEY, &body("plain", 9.0));
    let out = ingest(&mut p, "gauge", true, &smuggled);
    assert_eq!(reasons(&out), vec![RejectReason::TopicMismatch]);
    // On an authenticated broker, the plain device's topic naming the gauge.
    let out = ingest(&mut p, "plain", true, &body("gauge", 9.0));
    assert_eq!(reasons(&out), vec![RejectReason::TopicMismatch]);
    assert_eq!(signals(&m, "topic_mismatch"), 2);
    // Without broker authentication the topic proves nothing, so nothing is mismatched
    // (the record is judged on its own: the gauge's is unsigned, hence refused).
    let out = ingest(&mut p, "plain", false, &body("gauge", 9.0));
    assert_eq!(reasons(&out), vec![RejectReason::Unsigned]);
    // A revoked key (keys reloaded without it): the next envelope is refused.
    p.set_device_keys(Arc::new(DeviceKeys::default()));
    let late = signed::seal("gauge", 10, &KEY, &body("gauge", 2.0));
    let out = ingest(&mut p, "gauge", true, &late);
    assert_eq!(reasons(&out), vec![RejectReason::BadSignature]);
}
