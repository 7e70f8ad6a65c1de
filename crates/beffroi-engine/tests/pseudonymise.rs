//! Pseudonymisation in the pipeline: a personal text value becomes its keyed pseudonym
//! before it is stored, logged or evaluated; its sealed value goes in the same batch; with
//! no key it is refused and counted, never stored.

use std::sync::Arc;

use beffroi_core::territory::fixture;
use beffroi_core::{Identifier, Timestamp, Value};
use beffroi_engine::Source;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_privacy::{EpochKey, Pseudonymiser, parse_pseudonym};
use beffroi_territory::SourceFile;
use beffroi_wire::{Format, RejectReason};

const START: i64 = 1_795_694_400_000;

fn pipeline(keys: Option<Arc<Pseudonymiser>>) -> (Pipeline, Arc<Metrics>) {
    let t = Arc::new(fixture::small());
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", ""), &t).expect("rules");
    let metrics = Arc::new(Metrics::new());
    let p = Pipeline::new(
        PipelineConfig {
            pseudonymiser: keys,
            ..PipelineConfig::new(t, Arc::new(rules), Vec::new(), Arc::clone(&metrics))
        },
        Timestamp(START),
    );
    (p, metrics)
}

fn ingest(p: &mut Pipeline, badge: &str, at: i64) -> Output {
    let mut out = Output::default();
    let body = format!(r#"{{"device":"a1","time":{at},"values":{{"on":true,"badge":"{badge}"}}}}"#);
    p.ingest(
        Source::HTTP,
        Format::Json,
        None,
        body.as_bytes(),
        Timestamp(START + 10_000),
        &mut out,
    );
    out
}

fn texts(out: &Output) -> Vec<String> {
    out.batch
        .observations
        .iter()
        .filter_map(|o| match &o.value {
            Value::Text(s) => Some(s.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn personal_text_is_stored_as_its_pseudonym_with_its_sealed_value() {
    let keys = Arc::new(Pseudonymiser::new(vec![EpochKey::new(1, &[3; 32])]).expect("keys"));
    let (mut p, _) = pipeline(Some(Arc::clone(&keys)));
    let a = ingest(&mut p, "B-0042", START);
    let b = ingest(&mut p, " b 0042 ", START + 1);
    assert!(a.batch.rejections.is_empty(), "{:?}", a.batch.rejections);
    assert_eq!(a.batch.observations.len(), 2, "the bool and the badge");
    let (ta, tb) = (texts(&a), texts(&b));
    assert_eq!(ta.len(), 1);
    // Two spellings of one badge: one pseudonym.
    assert_eq!(ta, tb);
    let (id, epoch, _) = parse_pseudonym(&ta[0]).expect("a pseudonym");
    assert_eq!((id, epoch), (Identifier::Badge, 1));
    assert!(!format!("{:?}", a.batch).contains("0042"));
    assert_eq!(a.batch.identities.len(), 1);
    let i = &a.batch.identities[0];
    assert_eq!(i.sealed.pseudonym.0, ta[0]);
    assert_eq!(i.seen, Timestamp(START));
    assert_eq!(
        keys.open(&ta[0], &i.sealed.ciphertext).expect("opens"),
        "B0042"
    );
    // Technical values are left alone and cost no identity.
    assert!(
        a.batch
            .observations
            .iter()
            .any(|o| o.value == Value::Bool(true))
    );
}

#[test]
fn without_a_key_personal_text_is_refused_and_never_quoted() {
    let (mut p, m) = pipeline(None);
    let out = ingest(&mut p, "B-0042", START);
    let rejected: Vec<_> = out.batch.rejections.iter().map(|r| r.reason).collect();
    assert_eq!(rejected, vec![RejectReason::NoPseudonymisationKey]);
    assert!(out.batch.identities.is_empty());
    assert!(texts(&out).is_empty(), "the badge is not stored");
    // The technical value of the same message still goes through.
    assert_eq!(out.batch.observations.len(), 1);
    assert!(!format!("{:?}", out.batch).contains("0042"));
    assert!(
        m.encode()
            .lines()
            .any(|l| l.contains("no_pseudonymisation_key")
                && !l.starts_with('#')
                && l.ends_with(" 1")),
        "counted"
    );
}

#[test]
fn simulated_observations_are_pseudonymised_too() {
    let keys = Arc::new(Pseudonymiser::new(vec![EpochKey::new(4, &[1; 32])]).expect("keys"));
    let (mut p, _) = pipeline(Some(keys));
    let t = fixture::small();
    let d = t.device_id("a1").expect("a1");
    let f = t.kind_of(d).field("badge").expect("badge");
    let mut out = Output::default();
    p.ingest_observation(
        &beffroi_core::Observation {
            device: d,
            field: f,
            value: Value::Text("B-7".into()),
            time: Timestamp(START),
            trust: beffroi_core::Trust::Unauthenticated,
        },
        Timestamp(START),
        &mut out,
    );
    let t = texts(&out);
    assert_eq!(t.len(), 1);
    assert!(t[0].starts_with("badge:4:"), "{}", t[0]);
    assert_eq!(out.batch.identities.len(), 1);
}

/// A pipeline over the small fixture whose `alarm` kind also has a declared `status`
/// (values), a declared `code` (a pattern) and a free `note`.
fn declared_text_pipeline() -> (Pipeline, Arc<Metrics>, beffroi_core::Territory) {
    use beffroi_core::{FieldSpec, FieldType, TextDomain, TextPattern};
    let mut t = fixture::small();
    let alarm = t.kind_id("alarm").expect("fixture kind");
    let fields = &mut t.kinds[alarm.get()].fields;
    fields.push(FieldSpec {
        text: TextDomain::values(["ok", "fault"]).expect("values"),
        ..FieldSpec::technical("status", FieldType::Text)
    });
    fields.push(FieldSpec {
        text: TextDomain::Pattern(TextPattern::new("[0-9]{4,10}").expect("pattern")),
        ..FieldSpec::technical("code", FieldType::Text)
    });
    fields.push(FieldSpec::technical("note", FieldType::Text));
    let t = Arc::new(t);
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", ""), &t).expect("rules");
    let metrics = Arc::new(Metrics::new());
    let keys = Arc::new(Pseudonymiser::new(vec![EpochKey::new(1, &[3; 32])]).expect("keys"));
    let p = Pipeline::new(
        PipelineConfig {
            pseudonymiser: Some(keys),
            ..PipelineConfig::new(
                Arc::clone(&t),
                Arc::new(rules),
                Vec::new(),
                Arc::clone(&metrics),
            )
        },
        Timestamp(START),
    );
    (p, metrics, (*t).clone())
}

/// A declared technical text (values, pattern) takes nothing else: outside, or matching a
/// pattern but carrying a phone number, it is refused (`text_not_allowed`), counted, and
/// neither the value nor its pseudonym is stored. Free text is still scrubbed and kept.
#[test]
fn declared_technical_text_refuses_free_text() {
    let (mut p, m, t) = declared_text_pipeline();
    let mut out = Output::default();
    let body = format!(
        r#"[{{"device":"a1","time":{START},"values":{{"status":"fault","code":"4242"}}}},
            {{"device":"a1","time":{START},"values":{{"status":"fault, rappeler le 06 12 34 56 78"}}}},
            {{"device":"a1","time":{START},"values":{{"code":"0612345678"}}}},
            {{"device":"a1","time":{START},"values":{{"code":"AB-123-CD"}}}},
            {{"device":"a1","time":{START},"values":{{"note":"rappeler le 06 12 34 56 78"}}}}]"#
    );
    p.ingest(
        Source::HTTP,
        Format::Json,
        None,
        body.as_bytes(),
        Timestamp(START + 10_000),
        &mut out,
    );
    let rejected: Vec<_> = out.batch.rejections.iter().map(|r| r.reason).collect();
    assert_eq!(rejected, vec![RejectReason::TextNotAllowed; 3]);
    let stored = texts(&out);
    assert_eq!(
        stored.len(),
        3,
        "status, code and the scrubbed note: {stored:?}"
    );
    assert!(stored.contains(&"fault".to_string()) && stored.contains(&"4242".to_string()));
    assert!(
        stored.iter().any(|s| s.starts_with("rappeler le phone:1:")),
        "{stored:?}"
    );
    assert_eq!(out.batch.identities.len(), 1, "the note's number only");
    let all = format!("{:?}", out.batch);
    for secret in ["06 12 34", "0612345678", "AB-123-CD"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
    assert!(
        m.encode().lines().any(|l| l.contains("text_not_allowed")
            && l.contains("http")
            && !l.starts_with('#')
            && l.ends_with(" 3")),
        "counted: {}",
        m.encode()
    );
    // Observations that did not come through the wire are held to the same declaration.
    let d = t.device_id("a1").expect("a1");
    let f = t.kind_of(d).field("status").expect("status");
    let mut out = Output::default();
    p.ingest_observation(
        &beffroi_core::Observation {
            device: d,
            field: f,
            value: Value::Text("appeler Jean au 06 12 34 56 78".into()),
            time: Timestamp(START),
            trust: beffroi_core::Trust::Unauthenticated,
        },
        Timestamp(START),
        &mut out,
    );
    assert!(texts(&out).is_empty());
    assert_eq!(
        out.batch
            .rejections
            .iter()
            .map(|r| r.reason)
            .collect::<Vec<_>>(),
        vec![RejectReason::TextNotAllowed]
    );
}

/// An incident records the pseudonyms of the reading that raised it (the badge read with
/// `on = true`), not those of the rule's title, and a clear records nothing.
#[test]
fn an_incident_carries_the_pseudonyms_of_the_reading_that_raised_it() {
    let keys = Arc::new(Pseudonymiser::new(vec![EpochKey::new(1, &[3; 32])]).expect("keys"));
    let t = Arc::new(fixture::small());
    let rules = r#"
[[rule]]
id = "alarm-on"
title = "Alarme — badge:1:aaaaaaaaaaaaaaaaaaaa"
category = "intrusion"
severity = "major"
key = "device"
auto_resolve = true
kind = "alarm"
[rule.threshold]
field = "on"
equals = true
"#;
    let rules = beffroi_rules::parse(&SourceFile::new("rules.toml", rules), &t).expect("rules");
    let mut p = Pipeline::new(
        PipelineConfig {
            pseudonymiser: Some(Arc::clone(&keys)),
            ..PipelineConfig::new(t, Arc::new(rules), Vec::new(), Arc::new(Metrics::new()))
        },
        Timestamp(START),
    );
    let out = ingest(&mut p, "BADGE-0042", START + 1_000);
    let badge = keys.seal(Identifier::Badge, "BADGE-0042").pseudonym.0;
    assert_eq!(out.batch.incidents.len(), 1, "{:?}", out.batch.incidents);
    let opened = &out.batch.incidents[0];
    assert!(opened.created);
    let carried: Vec<&str> = opened.pseudonyms.iter().map(|p| &**p).collect();
    assert_eq!(carried, vec![badge.as_str()]);

    // The reading that clears the condition is not its cause.
    let mut out = Output::default();
    let body = format!(
        r#"{{"device":"a1","time":{},"values":{{"on":false,"badge":"BADGE-0099"}}}}"#,
        START + 2_000
    );
    p.ingest(
        Source::HTTP,
        Format::Json,
        None,
        body.as_bytes(),
        Timestamp(START + 10_000),
        &mut out,
    );
    assert!(!out.batch.incidents.is_empty());
    assert!(out.batch.incidents.iter().all(|c| c.pseudonyms.is_empty()));
}
