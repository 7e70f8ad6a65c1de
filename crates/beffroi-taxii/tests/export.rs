//! Findings written as STIX 2.1: the JSON shape, stable identifiers, versions, and what
//! is never written.

use std::net::IpAddr;

use beffroi_taxii::stix::StixObject;
use beffroi_taxii::{CyberFinding, ExportError, Producer, Technique, Tlp, export_findings};
use serde_json::Value;

const OPENED: i64 = 1_795_694_400_123; // 2026-11-26T12:00:00.123Z

fn producer() -> Producer {
    Producer {
        territory: "beffroi-sur-mer".into(),
        name: "Ville de Beffroi-sur-Mer".into(),
        since: 1_767_225_600_000, // 2026-01-01
        indicator_lifetime: Some(30 * 86_400_000),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn finding(incident: &str, addresses: &[&str]) -> CyberFinding {
    CyberFinding {
        incident: incident.into(),
        opened: OPENED,
        updated: OPENED + 60_000,
        closed: None,
        technique: Some(Technique {
            id: "T0814".into(),
            name: "Denial of Service".into(),
            tactic: Some("inhibit-response-function".into()),
        }),
        anomaly: "brute_force".into(),
        device_kind: Some("plc".into()),
        addresses: addresses.iter().map(|a| ip(a)).collect(),
        count: 12,
        tlp: Tlp::Amber,
    }
}

fn export(findings: &[CyberFinding]) -> Vec<Value> {
    export_findings(&producer(), findings)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(StixObject::to_json)
        .collect()
}

fn of_type<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["type"] == kind).collect()
}

#[test]
fn a_finding_with_addresses_gives_every_object_well_formed() {
    let objects = export(&[finding(
        "inc-1",
        &["203.0.113.7", "2001:db8::1", "10.0.0.5"],
    )]);
    let types: Vec<&str> = objects.iter().filter_map(|o| o["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "identity",
            "marking-definition",
            "attack-pattern",
            "indicator",
            "relationship",
            "sighting"
        ]
    );
    let identity_id = objects[0]["id"].clone();
    assert_eq!(objects[0]["identity_class"], "organization");
    for o in &objects {
        assert_eq!(o["spec_version"], "2.1", "{o}");
        let id = o["id"].as_str().unwrap_or_default();
        assert!(id.starts_with(&format!("{}--", o["type"].as_str().unwrap_or_default())));
        if o["type"] != "marking-definition" && o["type"] != "identity" {
            assert_eq!(o["created_by_ref"], identity_id);
        }
        for time in ["created", "modified"] {
            if let Some(t) = o[time].as_str() {
                assert_eq!(t.len(), 24, "{time} {t}");
                assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.');
            }
        }
    }
    let indicator = of_type(&objects, "indicator")[0];
    // The private address is not shared; the others are, sorted.
    assert_eq!(
        indicator["pattern"],
        "[ipv4-addr:value = '203.0.113.7' OR ipv6-addr:value = '2001:db8::1']"
    );
    assert_eq!(indicator["pattern_type"], "stix");
    assert_eq!(indicator["valid_from"], "2026-11-26T12:00:00.123Z");
    assert_eq!(indicator["valid_until"], "2026-12-26T12:01:00.123Z");
    assert_eq!(
        indicator["indicator_types"],
        serde_json::json!(["malicious-activity"])
    );
    assert_eq!(
        indicator["kill_chain_phases"],
        serde_json::json!([{"kill_chain_name": "mitre-ics-attack", "phase_name": "inhibit-response-function"}])
    );
    assert_eq!(
        indicator["external_references"],
        serde_json::json!([{"source_name": "mitre-attack", "external_id": "T0814", "url": "https://attack.mitre.org/techniques/T0814"}])
    );
    assert_eq!(
        indicator["object_marking_refs"],
        serde_json::json!(["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"])
    );
    let relationship = of_type(&objects, "relationship")[0];
    assert_eq!(relationship["relationship_type"], "indicates");
    assert_eq!(relationship["source_ref"], indicator["id"]);
    assert_eq!(
        relationship["target_ref"],
        of_type(&objects, "attack-pattern")[0]["id"]
    );
    let sighting = of_type(&objects, "sighting")[0];
    assert_eq!(sighting["sighting_of_ref"], indicator["id"]);
    assert_eq!(
        sighting["where_sighted_refs"],
        serde_json::json!([identity_id])
    );
    assert_eq!(sighting["count"], 12);
    assert_eq!(sighting["first_seen"], "2026-11-26T12:00:00.123Z");
    assert_eq!(sighting["last_seen"], "2026-11-26T12:01:00.123Z");
}

#[test]
fn no_indicator_without_shareable_addresses() {
    let objects = export(&[finding(
        "inc-1",
        &["192.168.1.10", "fe80::1", "::ffff:10.1.2.3"],
    )]);
    assert!(of_type(&objects, "indicator").is_empty());
    let sighting = of_type(&objects, "sighting")[0];
    assert_eq!(
        sighting["sighting_of_ref"],
        of_type(&objects, "attack-pattern")[0]["id"]
    );

    let mut bare = finding("inc-2", &[]);
    bare.technique = None;
    let objects = export(&[bare]);
    let pattern = of_type(&objects, "attack-pattern")[0];
    assert_eq!(pattern["name"], "Beffroi anomaly brute_force");
    assert_eq!(
        of_type(&objects, "sighting")[0]["sighting_of_ref"],
        pattern["id"]
    );
}

#[test]
fn identifiers_are_stable_and_an_update_is_a_new_version() {
    let first = export(&[
        finding("inc-1", &["203.0.113.7"]),
        finding("inc-2", &["198.51.100.9"]),
    ]);
    assert_eq!(
        first,
        export(&[
            finding("inc-1", &["203.0.113.7"]),
            finding("inc-2", &["198.51.100.9"])
        ])
    );
    // One attack pattern for the technique both findings share.
    assert_eq!(of_type(&first, "attack-pattern").len(), 1);

    let mut later = finding("inc-1", &["203.0.113.7"]);
    later.updated += 3_600_000;
    later.closed = Some(later.updated);
    let second = export(&[later]);
    let id_of = |objects: &[Value], kind: &str| of_type(objects, kind)[0]["id"].clone();
    for kind in [
        "identity",
        "attack-pattern",
        "indicator",
        "relationship",
        "sighting",
    ] {
        assert_eq!(id_of(&first, kind), id_of(&second, kind), "{kind}");
    }
    let indicator = of_type(&second, "indicator")[0];
    assert_eq!(indicator["created"], "2026-11-26T12:00:00.123Z");
    assert_eq!(indicator["modified"], "2026-11-26T13:01:00.123Z");
    // Another territory's objects never share an identifier with these.
    let mut other = producer();
    other.territory = "other-town".into();
    let theirs = export_findings(&other, &[finding("inc-1", &["203.0.113.7"])]).unwrap_or_default();
    assert!(
        theirs
            .iter()
            .all(|o| o.object_type() == "marking-definition"
                || !first.iter().any(|f| f["id"] == o.id().as_str()))
    );
}

#[test]
fn nothing_but_codes_reaches_the_text() {
    let objects = export(&[finding("Jean Dupont 06 12 34 56 78", &["203.0.113.7"])]);
    let text = serde_json::to_string(&objects).unwrap_or_default();
    assert!(!text.contains("Dupont") && !text.contains("06 12"));

    let mut noted = finding("inc-1", &[]);
    noted.anomaly = "call Jean at 0612345678".into();
    assert!(matches!(
        export_findings(&producer(), &[noted]),
        Err(ExportError::Invalid {
            field: "anomaly",
            ..
        })
    ));
    let mut noted = finding("inc-1", &[]);
    noted.technique = Some(Technique {
        id: "T0814".into(),
        name: "Jean's phone: +33 6 12 34 56 78".into(),
        tactic: None,
    });
    assert!(matches!(
        export_findings(&producer(), &[noted]),
        Err(ExportError::Invalid {
            field: "technique.name",
            ..
        })
    ));
}

#[test]
fn refusals_are_precise() {
    let twice = [finding("inc-1", &[]), finding("inc-1", &[])];
    assert_eq!(
        export_findings(&producer(), &twice),
        Err(ExportError::DuplicateIncident)
    );
    let mut far = finding("inc-1", &[]);
    far.opened = i64::MAX;
    assert_eq!(
        export_findings(&producer(), &[far]),
        Err(ExportError::TimeOutOfRange { field: "opened" })
    );
    let mut renamed = finding("inc-2", &[]);
    if let Some(t) = renamed.technique.as_mut() {
        t.name = "Something Else".into();
    }
    assert_eq!(
        export_findings(&producer(), &[finding("inc-1", &[]), renamed]),
        Err(ExportError::ConflictingTechnique { id: "T0814".into() })
    );
    let mut huge = finding("inc-1", &[]);
    huge.count = u32::MAX;
    let objects = export(&[huge]);
    assert_eq!(of_type(&objects, "sighting")[0]["count"], 999_999_999);
}
