//! The topic binds the device. On an authenticated device topic (MQTT with `broker_auth`),
//! a pack naming another device, registered or made up, is refused as a whole as
//! `topic_mismatch`, evaluates nothing (no fire incident from a rain gauge's credential),
//! and raises one security signal about the publishing device. Made-up device names from
//! one publisher give one grouped cyber finding, never one incident per name, and are
//! never quoted in clear. Simulated clock, no I/O.

use std::sync::Arc;

use beffroi_core::Timestamp;
use beffroi_engine::Source;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_engine::trust::Transport;
use beffroi_territory::SourceFile;
use beffroi_wire::{Format, RejectReason};

const START: i64 = 1_795_694_400_000;

fn pipeline() -> (Pipeline, Arc<Metrics>) {
    let t = beffroi_territory::load(&[
        SourceFile::new(
            "territory.toml",
            "[territory]\nid = \"t\"\nname = \"T\"\n\n\
             [[commune]]\nid = \"c1\"\nname = \"C1\"\nposition = [5.0, 47.0]\n\n\
             [[commune]]\nid = \"c2\"\nname = \"C2\"\nposition = [5.1, 47.1]\n",
        ),
        SourceFile::new(
            "kinds.toml",
            "[[kind]]\nid = \"rain_gauge\"\nlabel = \"R\"\n[[kind.field]]\nname = \"rain_mm\"\ntype = \"number\"\ncategory = \"technical\"\n\n\
             [[kind]]\nid = \"fire_panel\"\nlabel = \"F\"\n[[kind.field]]\nname = \"fire\"\ntype = \"bool\"\ncategory = \"technical\"\n",
        ),
        SourceFile::new(
            "sites.geojson",
            r#"{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"id":"s1","name":"S1","kind":"school","commune":"c1"},"geometry":{"type":"Point","coordinates":[5.0,47.0]}},
{"type":"Feature","properties":{"id":"s2","name":"S2","kind":"school","commune":"c2"},"geometry":{"type":"Point","coordinates":[5.1,47.1]}}
]}"#,
        ),
        SourceFile::new(
            "devices/c1.toml",
            "[[device]]\nid = \"gauge-1\"\nkind = \"rain_gauge\"\nsite = \"s1\"\n",
        ),
        SourceFile::new(
            "devices/c2.toml",
            "[[device]]\nid = \"panel-9\"\nkind = \"fire_panel\"\nsite = \"s2\"\n",
        ),
    ])
    .expect("territory");
    let t = Arc::new(t);
    let rules = beffroi_rules::parse(
        &SourceFile::new(
            "rules.toml",
            "[[rule]]\nid = \"fire-alarm\"\ntitle = \"Fire — {site}\"\ncategory = \"fire\"\n\
             severity = \"critical\"\nkey = \"site\"\nkind = \"fire_panel\"\n\
             [rule.threshold]\nfield = \"fire\"\nequals = true\n",
        ),
        &t,
    )
    .expect("rules");
    let metrics = Arc::new(Metrics::new());
    let p = Pipeline::new(
        PipelineConfig::new(t, Arc::new(rules), Vec::new(), Arc::clone(&metrics)),
        Timestamp(START),
    );
    (p, metrics)
}

/// One payload from the transport; `hint` and `authenticated` as the MQTT source sets them
/// for `beffroi/t/<hint>/<suffix>` with `broker_auth`.
fn ingest(
    p: &mut Pipeline,
    format: Format,
    hint: Option<&str>,
    authenticated: bool,
    payload: &str,
) -> Output {
    let mut out = Output::default();
    p.ingest_from(
        Source::MQTT,
        format,
        Transport {
            device_hint: hint,
            authenticated,
        },
        payload.as_bytes(),
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

fn incidents(p: &Pipeline, category: &str) -> Vec<(String, String, String, String)> {
    p.book()
        .active()
        .filter(|i| &*i.category == category)
        .map(|i| {
            (
                i.rule.to_string(),
                i.key.as_str().to_string(),
                i.title.to_string(),
                i.evidence.to_string(),
            )
        })
        .collect()
}

fn fifty_made_up(bn_prefix: &str) -> String {
    let records: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"bn":"{bn_prefix}{i}/","n":"fire","vb":true}}"#))
        .collect();
    format!("[{}]", records.join(","))
}

/// Each case: gauge-1's authenticated topic carries a pack naming someone else.
#[test]
fn a_pack_naming_another_device_on_an_authenticated_topic_is_refused_as_a_whole() {
    let made_up = fifty_made_up("ghost-");
    let cases: [(&str, Format, &str, bool); 5] = [
        // (case, format, payload, names a registered device)
        (
            "SenML bn naming the fire panel of another commune",
            Format::Senml,
            r#"[{"bn":"panel-9/","n":"fire","vb":true}]"#,
            true,
        ),
        (
            "SenML n naming it, after a record of its own",
            Format::Senml,
            r#"[{"n":"rain_mm","v":2.0},{"n":"panel-9:fire","vb":true}]"#,
            true,
        ),
        (
            "JSON device naming it",
            Format::Json,
            r#"{"device":"panel-9","values":{"fire":true}}"#,
            true,
        ),
        (
            "SenML naming an unregistered device",
            Format::Senml,
            r#"[{"bn":"panel-x/","n":"fire","vb":true}]"#,
            false,
        ),
        (
            "SenML with fifty made-up names",
            Format::Senml,
            &made_up,
            false,
        ),
    ];
    for (case, format, payload, registered) in cases {
        let (mut p, m) = pipeline();
        let out = ingest(&mut p, format, Some("gauge-1"), true, payload);
        assert_eq!(reasons(&out), vec![RejectReason::TopicMismatch], "{case}");
        assert!(out.batch.observations.is_empty(), "{case}: nothing stored");
        assert!(
            incidents(&p, "fire").is_empty(),
            "{case}: a fire incident opened"
        );
        assert_eq!(signals(&m, "topic_mismatch"), 1, "{case}");
        assert_eq!(signals(&m, "unregistered"), 0, "{case}");
        let cyber = incidents(&p, "cyber");
        assert_eq!(cyber.len(), 1, "{case}: {cyber:?}");
        let (rule, key, title, evidence) = &cyber[0];
        assert_eq!(rule, "cyber-topic_mismatch", "{case}");
        // About the publishing credential, not the device it named.
        assert_eq!(key, "cyber-topic_mismatch@device:gauge-1", "{case}");
        assert!(title.ends_with("gauge-1"), "{case}: {title}");
        assert!(evidence.contains("gauge-1"), "{case}: {evidence}");
        assert_eq!(
            evidence.contains("`panel-9`"),
            registered,
            "{case}: {evidence}"
        );
        let detail = &out.batch.rejections[0].detail;
        for text in [title, evidence, detail] {
            assert!(
                !text.contains("ghost-"),
                "{case}: a made-up name in clear: {text}"
            );
            assert!(
                !text.contains("panel-x"),
                "{case}: a made-up name in clear: {text}"
            );
        }
    }
}

/// The publisher's own records still go through, with its trust; without broker
/// authentication the topic proves nothing, so nothing is mismatched.
#[test]
fn own_records_pass_and_an_open_topic_binds_nothing() {
    let (mut p, m) = pipeline();
    let out = ingest(
        &mut p,
        Format::Senml,
        Some("gauge-1"),
        true,
        r#"[{"bn":"gauge-1/","n":"rain_mm","v":2.0},{"n":"rain_mm","t":-60,"v":1.0}]"#,
    );
    assert_eq!(reasons(&out), vec![]);
    assert_eq!(out.batch.observations.len(), 2);
    let out = ingest(
        &mut p,
        Format::Senml,
        Some("gauge-1"),
        false,
        r#"[{"bn":"panel-9/","n":"fire","vb":true}]"#,
    );
    assert_eq!(reasons(&out), vec![]);
    assert_eq!(signals(&m, "topic_mismatch"), 0);
}

/// Fifty made-up names in one pack, from a publisher nothing authenticates: fifty
/// rejections (every drop counted), one signal, one grouped cyber incident that quotes a
/// count and tags, never the names. A second such pack joins the same incident.
#[test]
fn fifty_unknown_names_in_one_pack_give_one_grouped_finding() {
    let (mut p, m) = pipeline();
    let out = ingest(&mut p, Format::Senml, None, false, &fifty_made_up("ghost-"));
    assert_eq!(reasons(&out), vec![RejectReason::UnknownDevice; 50]);
    assert_eq!(signals(&m, "unregistered"), 1);
    let cyber = incidents(&p, "cyber");
    assert_eq!(cyber.len(), 1, "{cyber:?}");
    let (rule, key, title, evidence) = &cyber[0];
    assert_eq!(rule, "cyber-unregistered");
    assert_eq!(key, "cyber-unregistered@device:unknown-publisher");
    assert!(
        evidence.contains("names 50 unregistered devices"),
        "{evidence}"
    );
    assert!(
        out.batch
            .rejections
            .iter()
            .all(|r| !r.detail.contains("ghost-"))
    );
    assert!(
        !title.contains("ghost-") && !evidence.contains("ghost-"),
        "{title} {evidence}"
    );
    let out = ingest(
        &mut p,
        Format::Senml,
        None,
        false,
        &fifty_made_up("phantom-"),
    );
    assert_eq!(out.batch.rejections.len(), 50);
    assert_eq!(signals(&m, "unregistered"), 2);
    assert_eq!(incidents(&p, "cyber").len(), 1, "grouped per publisher");
    assert!(incidents(&p, "fire").is_empty());
}

/// A signed envelope of a made-up device on gauge-1's authenticated topic: refused before
/// its signature is even looked at, about gauge-1, the made-up name quoted by tag only.
#[test]
fn a_signed_envelope_of_another_device_on_a_topic_is_refused_without_quoting_it() {
    let (mut p, m) = pipeline();
    let sealed =
        beffroi_wire::signed::seal("ghost-signer", 1, &[7; 32], br#"[{"n":"fire","vb":true}]"#);
    let sealed = String::from_utf8(sealed).expect("a signed envelope is text");
    let out = ingest(&mut p, Format::Senml, Some("gauge-1"), true, &sealed);
    assert_eq!(reasons(&out), vec![RejectReason::TopicMismatch]);
    assert_eq!(signals(&m, "topic_mismatch"), 1);
    assert!(incidents(&p, "fire").is_empty());
    let cyber = incidents(&p, "cyber");
    assert_eq!(cyber.len(), 1, "{cyber:?}");
    assert_eq!(cyber[0].1, "cyber-topic_mismatch@device:gauge-1");
    for text in [&cyber[0].2, &cyber[0].3, &out.batch.rejections[0].detail] {
        assert!(!text.contains("ghost"), "a made-up name in clear: {text}");
    }
}
