//! Partners' envelopes: indicators kept, others passed over, bad ones set aside with the
//! reason, hostile documents refused.

use beffroi_taxii::pull::{EnvelopeError, IndicatorError, MAX_OBJECTS};
use beffroi_taxii::stix::StixObject;
use beffroi_taxii::{CyberFinding, Producer, Tlp, export_findings, read_envelope};

fn indicator(id: &str, pattern: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"indicator","spec_version":"2.1","id":"{id}","created":"2024-01-01T00:00:00Z",
        "modified":"2024-01-02T00:00:00.5Z","pattern":"{pattern}","pattern_type":"stix",
        "valid_from":"2024-01-01T00:00:00Z","name":"free text never kept"{extra}}}"#
    )
}

const ID1: &str = "indicator--252c7c11-daf2-42bd-843b-be65edca9f61";
const ID2: &str = "indicator--c410e480-e42b-47d1-9476-85307c12bcbf";

#[test]
fn keeps_indicators_and_passes_over_the_rest() {
    let doc = format!(
        r#"{{"more":true,"next":"abc","x_custom":1,"objects":[
            {},
            {{"type":"malware","id":"malware--664fa29d-bf65-4f28-a667-bdb76f29ec98"}},
            {},
            {}
        ]}}"#,
        indicator(
            ID1,
            "[ipv4-addr:value = '203.0.113.7'] OR [ipv6-addr:value = '2001:db8::/32']",
            r#","object_marking_refs":["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da","marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"],"revoked":true,"x_unknown":{"a":[1,2]}"#
        ),
        indicator(
            ID2,
            "[file:name = 'a.exe']",
            r#","valid_until":"2023-01-01T00:00:00Z""#
        ),
        indicator(ID2, "[ipv4-addr:value = '1.2.3']", "")
    );
    let pulled = read_envelope(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert!(pulled.more);
    assert_eq!(pulled.next.as_deref(), Some("abc"));
    assert_eq!(pulled.other_objects, 1);
    assert_eq!(pulled.indicators.len(), 1);
    let first = &pulled.indicators[0];
    assert_eq!(first.id.as_str(), ID1);
    assert!(first.revoked);
    assert_eq!(first.tlp, Some(Tlp::Red));
    assert_eq!(first.modified.millis, 1_704_153_600_500);
    let network = first.network.as_ref().map(|n| (n.prefixes.len(), n.exact));
    assert_eq!(network, Some((2, true)));
    assert_eq!(pulled.rejected.len(), 2);
    assert_eq!(pulled.rejected[0].index, 2);
    assert_eq!(pulled.rejected[0].error, IndicatorError::ValidityOrder);
    assert_eq!(pulled.rejected[1].id.as_deref(), Some(ID2));
    assert!(matches!(
        &pulled.rejected[1].error,
        IndicatorError::Pattern(e) if e.offset() == 19
    ));
}

#[test]
fn refuses_what_is_not_an_envelope() {
    let err = read_envelope(b"{\"objects\": [1, 2,]}").err();
    assert!(
        matches!(
            err,
            Some(EnvelopeError::Json {
                line: 1,
                column: 19,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(read_envelope(b" []"), Err(EnvelopeError::NotAnObject));
    assert!(read_envelope(b"{\"more\": \"yes\"}").is_err());
    let deep = format!("{{\"objects\":[{}{}]}}", "[".repeat(1000), "]".repeat(1000));
    assert!(read_envelope(deep.as_bytes()).is_err());
    let many = format!("{{\"objects\":[{}{{}}]}}", "{},".repeat(MAX_OBJECTS));
    let err = read_envelope(many.as_bytes())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("more than 10000 objects"), "{err}");
    assert_eq!(read_envelope(b"{}").map(|p| p.indicators.len()), Ok(0));
}

#[test]
fn reads_what_the_exporter_writes() {
    let producer = Producer {
        territory: "t".into(),
        name: "Town".into(),
        since: 0,
        indicator_lifetime: None,
    };
    let finding = CyberFinding {
        incident: "i".into(),
        opened: 1000,
        updated: 2000,
        closed: None,
        technique: None,
        anomaly: "scan".into(),
        device_kind: None,
        addresses: vec![
            "203.0.113.7"
                .parse()
                .unwrap_or(std::net::IpAddr::from([0; 4])),
        ],
        count: 1,
        tlp: Tlp::Green,
    };
    let objects: Vec<serde_json::Value> = export_findings(&producer, &[finding])
        .unwrap_or_default()
        .iter()
        .map(StixObject::to_json)
        .collect();
    let envelope = serde_json::json!({ "objects": objects });
    let pulled = read_envelope(envelope.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pulled.indicators.len(), 1);
    assert!(pulled.rejected.is_empty());
    assert_eq!(pulled.indicators[0].tlp, Some(Tlp::Green));
    assert_eq!(pulled.indicators[0].modified.millis, 2000);
    assert_eq!(
        pulled.indicators[0]
            .network
            .as_ref()
            .map(|n| n.prefixes[0].to_string()),
        Some("203.0.113.7".into())
    );
}
