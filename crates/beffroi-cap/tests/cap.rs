//! CAP 1.2 out and in: what the writer makes is valid against the OASIS schema and reads
//! back the same; what the reader refuses, it refuses with the line and the path.

use beffroi_cap::read::{CapErrorKind, MAX_BYTES, MAX_DEPTH, MAX_ELEMENTS, parse_alert};
use beffroi_cap::write::alert_xml;
use beffroi_cap::{
    Alert, Area, CapTime, Category, Certainty, Circle, Info, LatLon, MsgType, NamedValue,
    Reference, ResponseType, Scope, Severity, Status, Urgency,
};
use proptest::prelude::*;

fn flood() -> Alert {
    Alert {
        identifier: "dijon-metropole.INC-42.2".into(),
        sender: "beffroi@dijon-metropole.example".into(),
        sent: CapTime(1_796_000_000_000),
        status: Status::Actual,
        msg_type: MsgType::Update,
        source: Some("Beffroi".into()),
        scope: Scope::Public,
        restriction: None,
        addresses: None,
        codes: vec!["beffroi:flood".into()],
        note: None,
        references: vec![Reference {
            sender: "beffroi@dijon-metropole.example".into(),
            identifier: "dijon-metropole.INC-42.1".into(),
            sent: CapTime(1_795_999_000_000),
        }],
        incidents: Some("INC-42".into()),
        infos: vec![Info {
            language: Some("fr-FR".into()),
            categories: vec![Category::Met, Category::Safety],
            event: "Crue".into(),
            response_types: vec![ResponseType::Avoid, ResponseType::Monitor],
            urgency: Urgency::Immediate,
            severity: Severity::Severe,
            certainty: Certainty::Observed,
            event_codes: vec![NamedValue {
                name: "beffroi:category".into(),
                value: "flood".into(),
            }],
            effective: Some(CapTime(1_795_999_000_000)),
            onset: None,
            expires: Some(CapTime(1_796_021_600_000)),
            sender_name: Some("Dijon Métropole — poste de commandement".into()),
            headline: Some("Niveau d'eau critique : l'Ouche à 2,4 m & en hausse".into()),
            description: Some("Seuil <2,0 m> dépassé\nà la station « Pont des Chartreux ».".into()),
            instruction: Some("Éviter les berges.".into()),
            web: Some("https://beffroi.example/cap/alerts/INC-42".into()),
            contact: None,
            parameters: vec![NamedValue {
                name: "level_m".into(),
                value: "2.4".into(),
            }],
            areas: vec![Area {
                area_desc: "Dijon — Pont des Chartreux".into(),
                polygons: vec![vec![
                    LatLon {
                        lat: 47.32,
                        lon: 5.01,
                    },
                    LatLon {
                        lat: 47.33,
                        lon: 5.01,
                    },
                    LatLon {
                        lat: 47.33,
                        lon: 5.03,
                    },
                    LatLon {
                        lat: 47.32,
                        lon: 5.01,
                    },
                ]],
                circles: vec![Circle {
                    centre: LatLon {
                        lat: 47.3215,
                        lon: 5.0147,
                    },
                    radius_km: 0.5,
                }],
                geocodes: vec![NamedValue {
                    name: "INSEE".into(),
                    value: "21231".into(),
                }],
            }],
        }],
    }
}

#[test]
fn a_written_alert_reads_back_the_same() {
    let a = flood();
    let xml = alert_xml(&a);
    assert!(
        xml.contains("<sent>2026-11-30T00:53:20+00:00</sent>"),
        "{xml}"
    );
    assert!(xml.contains("&amp; en hausse"), "{xml}");
    assert_eq!(parse_alert(xml.as_bytes()), Ok(a));
}

#[test]
fn written_alerts_are_valid_against_the_oasis_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut minimal = flood();
    minimal.source = None;
    minimal.codes.clear();
    minimal.references.clear();
    minimal.incidents = None;
    minimal.msg_type = MsgType::Alert;
    minimal.infos[0].areas[0].polygons.clear();
    let mut cancel = flood();
    cancel.msg_type = MsgType::Cancel;
    cancel.infos[0].response_types = vec![ResponseType::AllClear];
    cancel.infos[0].urgency = Urgency::Past;
    let mut no_info = flood();
    no_info.infos.clear();
    let files: Vec<std::path::PathBuf> = [flood(), minimal, cancel, no_info]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let p = dir.path().join(format!("alert-{i}.xml"));
            std::fs::write(&p, alert_xml(a)).expect("write");
            p
        })
        .collect();
    // A document the schema refuses, so that a validator that accepts anything fails.
    let zulu = dir.path().join("zulu.xml");
    std::fs::write(
        &zulu,
        alert_xml(&flood()).replace("2026-11-30T00:53:20+00:00", "2026-11-30T00:53:20Z"),
    )
    .expect("write");
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let Some(valid) = beffroi_testkit::xml_schema::validate_cap(&refs) else {
        return;
    };
    assert_eq!(valid, Ok(()));
    let refused = beffroi_testkit::xml_schema::validate_cap(&[&zulu]).expect("validator");
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("sent")),
        "a `Z` time is not CAP 1.2: {refused:?}"
    );
}

const XXE: &str = r#"<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"#;

const BOMB: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><note>&lol4;</note></alert>"#;

#[test]
fn a_dtd_an_external_entity_and_an_entity_bomb_are_refused() {
    for (name, doc) in [("external entity", XXE), ("entity bomb", BOMB)] {
        let e = parse_alert(doc.as_bytes()).expect_err(name);
        assert_eq!(e.kind, CapErrorKind::Dtd, "{name}: {e}");
        assert_eq!(e.line, 2, "{name}: {e}");
    }
    // Without a DTD, an entity that XML does not predefine is refused too.
    let undefined = alert_xml(&flood()).replace("<event>Crue</event>", "<event>&xxe;</event>");
    let e = parse_alert(undefined.as_bytes()).expect_err("undefined entity");
    assert_eq!(e.kind, CapErrorKind::Entity("xxe".into()));
    assert_eq!(e.path, "alert/info/event");
    // Character references and XML's own entities are text.
    let chars = alert_xml(&flood()).replace(
        "<event>Crue</event>",
        "<event>Crue &#233;&#x20AC; &lt;</event>",
    );
    assert_eq!(
        parse_alert(chars.as_bytes()).expect("valid").infos[0].event,
        "Crue é€ <"
    );
}

#[test]
fn size_depth_and_element_count_are_bounded() {
    let huge = format!(
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>{}</note></alert>",
        "x".repeat(MAX_BYTES)
    );
    assert_eq!(
        parse_alert(huge.as_bytes()).map_err(|e| e.kind),
        Err(CapErrorKind::TooLarge(MAX_BYTES))
    );
    let deep = format!(
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">{}{}</alert>",
        "<x>".repeat(MAX_DEPTH),
        "</x>".repeat(MAX_DEPTH)
    );
    assert_eq!(
        parse_alert(deep.as_bytes()).map_err(|e| e.kind),
        Err(CapErrorKind::TooDeep(MAX_DEPTH))
    );
    let many = format!(
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">{}</alert>",
        "<code>c</code>".repeat(MAX_ELEMENTS)
    );
    assert_eq!(
        parse_alert(many.as_bytes()).map_err(|e| e.kind),
        Err(CapErrorKind::TooManyElements(MAX_ELEMENTS))
    );
}

#[test]
fn errors_name_the_line_and_the_path() {
    let xml =
        alert_xml(&flood()).replace("<urgency>Immediate</urgency>", "<urgency>Soon</urgency>");
    let line = xml
        .lines()
        .position(|l| l.contains("<urgency>"))
        .expect("urgency line")
        + 1;
    let e = parse_alert(xml.as_bytes()).expect_err("bad urgency");
    assert_eq!(
        (e.line, e.path.as_str()),
        (line, "alert/info[0]/urgency"),
        "{e}"
    );
    assert!(matches!(e.kind, CapErrorKind::Invalid { ref value, .. } if value == "Soon"));
    assert!(
        e.to_string()
            .starts_with(&format!("line {line}: alert/info[0]/urgency: `Soon`")),
        "{e}"
    );

    let no_sender =
        alert_xml(&flood()).replace("<sender>beffroi@dijon-metropole.example</sender>", "");
    let e = parse_alert(no_sender.as_bytes()).expect_err("no sender");
    assert_eq!(
        (e.path.as_str(), &e.kind),
        ("alert/sender", &CapErrorKind::Missing)
    );

    let spaced = alert_xml(&flood()).replace("dijon-metropole.INC-42.2", "INC 42");
    let e = parse_alert(spaced.as_bytes()).expect_err("space in identifier");
    assert_eq!(e.path, "alert/identifier");

    let open_ring = alert_xml(&flood()).replace("47.32,5.01</polygon>", "47.4,5.01</polygon>");
    let e = parse_alert(open_ring.as_bytes()).expect_err("open ring");
    assert_eq!(e.path, "alert/info[0]/area[0]/polygon[0]");

    for (doc, why) in [
        ("<alert><identifier>x</identifier></alert>", "no namespace"),
        (
            "<feed xmlns=\"http://www.w3.org/2005/Atom\"/>",
            "another root",
        ),
        (
            "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.1\"/>",
            "CAP 1.1",
        ),
    ] {
        let e = parse_alert(doc.as_bytes()).expect_err(why);
        assert!(matches!(e.kind, CapErrorKind::NotCap(_)), "{why}: {e}");
    }
    let cut = &alert_xml(&flood())[..400];
    assert!(matches!(
        parse_alert(cut.as_bytes()).map_err(|e| e.kind),
        Err(CapErrorKind::Malformed(_))
    ));
    assert_eq!(
        parse_alert(b"\xff\xfe<alert/>").map_err(|e| e.kind),
        Err(CapErrorKind::NotUtf8)
    );
}

#[test]
fn a_prefixed_namespace_and_cdata_read_as_well() {
    let xml = alert_xml(&flood())
        .replace("<alert xmlns=", "<cap:alert xmlns:cap=")
        .replace("</alert>", "</cap:alert>")
        .replace("<identifier>", "<cap:identifier>")
        .replace("</identifier>", "</cap:identifier>");
    // Unprefixed children are then in no namespace: only the root's is checked, and
    // children are matched by local name, as feeds in the wild mix both.
    let a = parse_alert(xml.as_bytes()).expect("prefixed");
    assert_eq!(a.identifier, "dijon-metropole.INC-42.2");
    let cdata = alert_xml(&flood()).replace(
        "<event>Crue</event>",
        "<event><![CDATA[Crue <forte>]]></event>",
    );
    assert_eq!(
        parse_alert(cdata.as_bytes()).expect("cdata").infos[0].event,
        "Crue <forte>"
    );
}

fn text() -> impl Strategy<Value = String> {
    // Printable text with what XML must escape; trimmed as the reader trims, never empty.
    "[a-zA-Zéà0-9<>&'\" ,.;:!?()-]{1,40}".prop_map(|s| {
        let t = s.trim().to_string();
        if t.is_empty() { "x".into() } else { t }
    })
}

fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.@:_-]{1,30}"
}

prop_compose! {
    fn info()(
        event in text(),
        headline in proptest::option::of(text()),
        cat in proptest::sample::select(Category::ALL.to_vec()),
        urgency in proptest::sample::select(Urgency::ALL.to_vec()),
        severity in proptest::sample::select(Severity::ALL.to_vec()),
        certainty in proptest::sample::select(Certainty::ALL.to_vec()),
        lat in -90.0f64..90.0, lon in -180.0f64..180.0, radius in 0.0f64..100.0,
        expires in proptest::option::of(0i64..4_000_000_000),
    ) -> Info {
        // Coordinates as written: six decimals.
        let round = |v: f64| (v * 1e6).round() / 1e6;
        Info {
            language: Some("fr-FR".into()),
            categories: vec![cat],
            event,
            response_types: vec![],
            urgency, severity, certainty,
            event_codes: vec![],
            effective: None, onset: None,
            expires: expires.map(|s| CapTime(s * 1000)),
            sender_name: None,
            headline,
            description: None, instruction: None, web: None, contact: None,
            parameters: vec![],
            areas: vec![Area {
                area_desc: "zone".into(),
                polygons: vec![],
                circles: vec![Circle { centre: LatLon { lat: round(lat), lon: round(lon) }, radius_km: round(radius) }],
                geocodes: vec![],
            }],
        }
    }
}

proptest! {
    #[test]
    fn any_alert_reads_back_as_written(
        identifier in ident(),
        sender in ident(),
        sent in 0i64..4_000_000_000,
        status in proptest::sample::select(Status::ALL.to_vec()),
        msg_type in proptest::sample::select(MsgType::ALL.to_vec()),
        note in proptest::option::of(text()),
        infos in proptest::collection::vec(info(), 0..3),
    ) {
        let a = Alert {
            identifier, sender, sent: CapTime(sent * 1000), status, msg_type,
            source: None, scope: Scope::Public, restriction: None, addresses: None,
            codes: vec![], note, references: vec![], incidents: None, infos,
        };
        prop_assert_eq!(parse_alert(alert_xml(&a).as_bytes()), Ok(a));
    }

    #[test]
    fn the_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_alert(&bytes);
        let _ = beffroi_cap::atom::entry_links(&bytes);
    }

    /// Alerts mangled at random (a byte changed, a span cut out or repeated) are refused
    /// or read; what is read writes back to a document that reads the same (the fuzz
    /// target `parse_cap` checks the same on any input).
    #[test]
    fn what_is_read_writes_back_stably(
        at in 0usize..3000, len in 0usize..40, byte in any::<u8>(), how in 0u8..3,
    ) {
        let mut doc = alert_xml(&flood()).into_bytes();
        let at = at.min(doc.len());
        let end = (at + len).min(doc.len());
        match how {
            0 => if at < doc.len() { doc[at] = byte },
            1 => { doc.drain(at..end); }
            _ => { let span: Vec<u8> = doc[at..end].to_vec(); doc.splice(at..at, span); }
        }
        if let Ok(a) = parse_alert(&doc) {
            let again = alert_xml(&a);
            let back = parse_alert(again.as_bytes());
            prop_assert!(back.is_ok(), "{:?}", back);
            prop_assert_eq!(alert_xml(&back.unwrap_or(a)), again);
        }
    }
}

#[test]
fn a_feed_lists_its_entries_cap_links_and_refuses_a_dtd() {
    let feed = r#"<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <entry><link rel="self" href="/self"/><link rel="alternate" type="application/cap+xml; charset=utf-8" href="/cap/1.xml"/></entry>
  <entry><link href="https://x.example/2.xml"/></entry>
  <entry><link rel="related" href="/3"/></entry>
  <entry><title>no link</title></entry>
</feed>"#;
    assert_eq!(
        beffroi_cap::atom::entry_links(feed.as_bytes()).expect("feed"),
        ["/cap/1.xml", "https://x.example/2.xml", "/3"]
    );
    let ours = beffroi_cap::atom::feed_xml(&beffroi_cap::atom::Feed {
        id: "urn:x".into(),
        title: "T & co".into(),
        author: "A".into(),
        updated: CapTime(0),
        self_url: "/feed".into(),
        entries: vec![beffroi_cap::atom::Entry {
            id: "urn:x:1".into(),
            title: "e".into(),
            updated: CapTime(0),
            link: "/cap/alerts/1?a=1&b=2".into(),
            summary: None,
        }],
    });
    assert_eq!(
        beffroi_cap::atom::entry_links(ours.as_bytes()).expect("our feed"),
        ["/cap/alerts/1?a=1&b=2"]
    );
    let dtd = feed.replace(
        "<feed",
        "<!DOCTYPE feed [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\n<feed",
    );
    assert_eq!(
        beffroi_cap::atom::entry_links(dtd.as_bytes()).map_err(|e| e.kind),
        Err(CapErrorKind::Dtd)
    );
    let entity_in_href = feed.replace("/cap/1.xml", "&e;");
    assert!(matches!(
        beffroi_cap::atom::entry_links(entity_in_href.as_bytes()).map_err(|e| e.kind),
        Err(CapErrorKind::Entity(_))
    ));
}
