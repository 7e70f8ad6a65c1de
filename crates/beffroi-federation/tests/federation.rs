//! Agreements, what leaves under them, the signed batch and the receiver's ordering.

use base64::Engine as _;
use beffroi_core::alarm::DedupKey;
use beffroi_core::incident::Incident;
use beffroi_core::territory::{Commune, fixture};
use beffroi_core::{IncidentId, Point, SafeText, Severity, Status, Territory, Timestamp};
use beffroi_federation::wire::BatchError;
use beffroi_federation::{Batch, Message, SharedIncident, next_in_order, parse_batch, share};
use beffroi_territory::SourceFile;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

const SECRET: [u8; 32] = [7; 32];

fn territory() -> Territory {
    let mut t = fixture::small();
    t.add_commune(Commune {
        id: "c2".into(),
        name: "Commune 2".into(),
        insee: Some("21617".into()),
        position: Point::new(5.1, 47.1),
        boundary: Vec::new(),
    })
    .expect("fresh id");
    t
}

fn key_b64(seed: u8) -> String {
    let k = SigningKey::from_bytes(&[seed; 32]);
    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().to_bytes())
}

fn agreement(extra: &str) -> String {
    format!(
        "name = \"dijon\"\n[[partner]]\nname = \"quetigny\"\nurl = \"http://127.0.0.1:9/\"\npublic_key = \"{}\"\ncategories = [\"flood\"]\nmin_severity = \"major\"\ncommunes = [\"c1\"]\n{extra}",
        key_b64(2)
    )
}

fn incident(id: u64, category: &str, severity: Severity, title: &str) -> Incident {
    let t = territory();
    Incident {
        id: IncidentId(id),
        key: DedupKey::for_site("r", "s2"),
        rule: "r".into(),
        category: category.into(),
        severity,
        status: Status::New,
        title: SafeText::redacting(title),
        commune: t.commune_id("c1").expect("c1"),
        site: t.site_id("s2").expect("s2"),
        device: None,
        position: Point::new(5.0, 47.0),
        opened_at: Timestamp(1_000),
        updated_at: Timestamp(2_000),
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
        owner: Some("jdupont".into()),
        condition_active: true,
        alarm_count: 1,
        evidence: SafeText::redacting("level_m=3.2, appel de Jean Dupont 06 12 34 56 78"),
        sop_title: None,
        sop: Vec::new(),
        reminded_at: None,
        escalated_at: None,
        trigger: None,
        peak: Some(3.2),
        current: None,
        current_at: None,
        reopened_at: None,
    }
}

#[test]
fn an_agreement_is_read_and_its_mistakes_reported_at_their_line() {
    let t = territory();
    let f = beffroi_federation::parse(
        &SourceFile::new(
            "federation.toml",
            agreement("fields = [\"title\", \"site\"]\n"),
        ),
        &t,
        &["flood", "fire"],
    )
    .expect("valid");
    assert_eq!(f.name, "dijon");
    let p = &f.partners[0];
    assert_eq!(
        (p.url.as_str(), p.min_severity),
        ("http://127.0.0.1:9", Severity::Major)
    );
    assert_eq!(&*p.category, "neighbour");
    let bad = "[[partner]]\nname = \"Quetigny!\"\nurl = \"ftp://x\"\npublic_key = \"abc\"\ncategories = [\"floood\", \"cyber\"]\nmin_severity = \"huge\"\ncommunes = [\"nowhere\"]\nfields = [\"notes\"]\ntlp = \"blue\"\n".to_string();
    let e = beffroi_federation::parse(
        &SourceFile::new("federation.toml", bad),
        &t,
        &["flood", "cyber"],
    )
    .expect_err("invalid")
    .to_string();
    for want in [
        "federation.toml:1: `partner[0].name`",
        "`partner[0].url`",
        "`partner[0].public_key`",
        "no rule raises `floood`",
        "`cyber` goes to partners as STIX over TAXII",
        "`partner[0].min_severity`",
        "no commune `nowhere`",
        "`notes`: one of title, site, position",
        "`partner[0].tlp`",
    ] {
        assert!(e.contains(want), "missing «{want}» in:\n{e}");
    }
}

#[test]
fn only_what_the_agreement_names_leaves_and_pseudonyms_are_rekeyed_per_partner() {
    let t = territory();
    let f = beffroi_federation::parse(
        &SourceFile::new("federation.toml", agreement("fields = [\"title\"]\n")),
        &t,
        &["flood", "intrusion"],
    )
    .expect("valid");
    let p = &f.partners[0];
    // Outside the agreement: another category, a lower severity, another commune.
    assert!(
        share(
            &incident(1, "intrusion", Severity::Critical, "x"),
            &t,
            p,
            &SECRET
        )
        .is_none()
    );
    assert!(share(&incident(2, "flood", Severity::Minor, "x"), &t, p, &SECRET).is_none());
    let mut elsewhere = incident(3, "flood", Severity::Critical, "x");
    elsewhere.commune = t.commune_id("c2").expect("c2");
    assert!(share(&elsewhere, &t, p, &SECRET).is_none());

    // A title as the pipeline stores it: the plate pseudonymised with the territory's vault.
    let pseudonym = "plate:1:k7f3qx2mn4pz7qab3c4d".to_string();
    let i = incident(
        4,
        "flood",
        Severity::Major,
        &format!("Crue — véhicule {pseudonym} signalé"),
    );
    assert!(
        i.title.as_str().contains(&pseudonym),
        "{}",
        i.title.as_str()
    );
    let s = share(&i, &t, p, &SECRET).expect("shared");
    assert_eq!(
        (s.reference.as_str(), s.version, s.status.as_str()),
        ("INC-4", 2_000, "new")
    );
    assert_eq!(s.site, None, "`site` is not in the agreement's fields");
    let sent_title = s.title.clone().expect("title");
    let json = serde_json::to_string(&s).expect("json");
    for secret in [
        "AB-123-CD",
        "AB123CD",
        pseudonym.as_str(),
        "jdupont",
        "06 12 34 56 78",
        "Dupont",
        "level_m",
    ] {
        assert!(!json.contains(secret), "`{secret}` left: {json}");
    }
    let token = sent_title
        .split(' ')
        .find(|w| w.starts_with("plate:x:"))
        .expect("re-keyed")
        .to_string();
    assert!(
        beffroi_privacy::parse_pseudonym(&token).is_none(),
        "not a pseudonym of ours"
    );
    // The same person to the same partner: the same token; to another partner: another.
    assert_eq!(
        beffroi_federation::rekey(&SECRET, "quetigny", &pseudonym),
        token
    );
    assert_ne!(
        beffroi_federation::rekey(&SECRET, "chenove", &pseudonym),
        token
    );
}

fn batch(from: &str, to: &str, seqs: std::ops::RangeInclusive<u64>) -> Batch {
    Batch {
        from: from.into(),
        to: to.into(),
        sent_at: 0,
        messages: seqs
            .map(|seq| Message {
                seq,
                note: None,
                incident: Some(SharedIncident {
                    reference: format!("INC-{seq}"),
                    version: seq as i64,
                    category: "flood".into(),
                    severity: "major".into(),
                    status: "new".into(),
                    opened_at: 0,
                    insee: Some("21617".into()),
                    commune: "Talant".into(),
                    position: [5.0, 47.3],
                    title: None,
                    site: None,
                    tlp: "amber".into(),
                }),
            })
            .collect(),
    }
}

#[test]
fn a_batch_is_signed_for_one_receiver_and_read_under_checks() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let body = serde_json::to_vec(&batch("dijon", "quetigny", 1..=3)).expect("json");
    let sig = beffroi_federation::sign(&key, "dijon", "quetigny", &body);
    let pubkey = key.verifying_key();
    assert!(beffroi_federation::verify(
        &pubkey, "dijon", "quetigny", &body, &sig
    ));
    assert!(
        !beffroi_federation::verify(&pubkey, "dijon", "chenove", &body, &sig),
        "replayed to another"
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert!(!beffroi_federation::verify(
        &pubkey, "dijon", "quetigny", &tampered, &sig
    ));
    let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(!beffroi_federation::verify(
        &other, "dijon", "quetigny", &body, &sig
    ));
    assert!(!beffroi_federation::verify(
        &pubkey,
        "dijon",
        "quetigny",
        &body,
        "not base64!"
    ));

    assert_eq!(parse_batch(&body).expect("valid").messages.len(), 3);
    let mut b = batch("dijon", "quetigny", 1..=2);
    b.messages[1].seq = 5;
    assert_eq!(
        parse_batch(&serde_json::to_vec(&b).expect("json")),
        Err(BatchError::OutOfOrder(1))
    );
    let mut b = batch("dijon", "quetigny", 1..=1);
    b.messages[0].incident.as_mut().expect("incident").position = [f64::MAX, 0.0];
    assert!(matches!(
        parse_batch(&serde_json::to_vec(&b).expect("json")),
        Err(BatchError::Field {
            field: "incident.position",
            ..
        })
    ));
    b.messages[0].incident.as_mut().expect("incident").position = [5.0, 47.0];
    b.messages[0].incident.as_mut().expect("incident").title = Some("a\u{7}bell".into());
    assert!(parse_batch(&serde_json::to_vec(&b).expect("json")).is_err());
    assert!(matches!(
        parse_batch(b"{\"from\": 1}"),
        Err(BatchError::Json { .. })
    ));
    // A note back is a message of its own: an incident or a note, never both, never none.
    let note = beffroi_federation::SharedNote {
        reference: "INC-7".into(),
        at: 5,
        text: "Équipe en route".into(),
    };
    let mut b = batch("quetigny", "dijon", 1..=2);
    b.messages[1] = Message::new(2, beffroi_federation::Content::Note(note.clone()));
    let read = parse_batch(&serde_json::to_vec(&b).expect("json")).expect("valid");
    assert_eq!(
        read.messages[1].content(),
        Some(beffroi_federation::Content::Note(note))
    );
    b.messages[1].incident = b.messages[0].incident.clone();
    assert!(
        parse_batch(&serde_json::to_vec(&b).expect("json")).is_err(),
        "both"
    );
    b.messages[1].incident = None;
    b.messages[1].note = None;
    assert!(
        parse_batch(&serde_json::to_vec(&b).expect("json")).is_err(),
        "none"
    );
    let with_extra = br#"{"from":"a","to":"b","sent_at":0,"messages":[],"notes":"x"}"#;
    assert!(
        parse_batch(with_extra).is_err(),
        "unknown fields are refused"
    );
}

proptest! {
    /// Whatever batches arrive (repeated, overlapping, out of order), the receiver applies
    /// messages 1, 2, 3… each once and in order, and never jumps a gap.
    #[test]
    fn the_receiver_applies_each_message_once_in_order(
        sends in proptest::collection::vec((1u64..30, 0u64..6), 1..40),
    ) {
        let mut last = 0u64;
        let mut applied = Vec::new();
        for (start, len) in sends {
            let b = batch("a", "b", start..=start + len);
            for m in next_in_order(last, &b) {
                applied.push(m.seq);
                last = m.seq;
            }
        }
        prop_assert_eq!(applied, (1..=last).collect::<Vec<_>>());
    }

    #[test]
    fn any_bytes_are_read_or_refused_without_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_batch(&body);
    }
}
