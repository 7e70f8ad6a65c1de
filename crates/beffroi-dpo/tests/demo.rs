//! The register and the notices of the demo territory.

use std::path::{Path, PathBuf};

use beffroi_core::privacy::{PrivacyPolicy, RECORD_FIELDS};
use beffroi_core::{Territory, Timestamp};
use beffroi_dpo::register::{self, Protection, RECORDS_ACTIVITY};
use beffroi_dpo::{html, notice};
use beffroi_territory::SourceFile;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn demo() -> (Territory, PrivacyPolicy) {
    let t = beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory");
    let p = beffroi_territory::load_privacy(
        &SourceFile::read(&root().join("demo/privacy.toml")).expect("privacy.toml"),
    )
    .expect("demo privacy");
    (t, p)
}

const NOW: Timestamp = Timestamp(1_795_000_000_000);

/// Every personal field of every kind, and every personal record field, is in exactly one
/// activity of the register: drop one and this fails.
#[test]
fn every_personal_field_has_an_entry() {
    let (t, p) = demo();
    let r = register::build(&t, &p, RECORD_FIELDS, NOW);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(r.summary.complete);
    assert!(r.unassigned.is_empty());
    let entries = |field: &str| {
        r.activities
            .iter()
            .filter(|a| a.data.iter().any(|d| d.field == field))
            .count()
    };
    let mut personal = 0;
    for k in &t.kinds {
        for f in &k.fields {
            if f.category.is_personal() || f.people_count {
                personal += 1;
                let name = format!("{}.{}", k.id, f.name);
                assert_eq!(entries(&name), 1, "{name} must be in one activity");
            }
        }
    }
    assert!(personal > 0, "the demo has personal fields");
    for rf in RECORD_FIELDS.iter().filter(|f| f.category.is_personal()) {
        let name = format!("{}.{}", rf.record, rf.field);
        assert_eq!(entries(&name), 1, "{name} must be in one activity");
    }
    // Badge numbers are pseudonymised and the activity says so by construction.
    let ac = r
        .activities
        .iter()
        .find(|a| a.id == "access_control")
        .expect("activity");
    let badge = ac
        .data
        .iter()
        .find(|d| d.identifier == Some("badge"))
        .expect("badge field");
    assert_eq!(badge.protection, Protection::Pseudonymised);
    let codes: Vec<_> = ac
        .security_measures
        .by_construction
        .iter()
        .map(|m| m.code)
        .collect();
    for c in [
        "keyed_pseudonymisation",
        "purpose_bound_unmasking",
        "access_control",
        "signed_audit_log",
    ] {
        assert!(codes.contains(&c), "{c} in {codes:?}");
    }
    assert_eq!(ac.legal_basis.article, "GDPR art. 6(1)(e)");
    // Retention is the activity's effective one.
    let personal_ret = ac
        .retention
        .iter()
        .find(|x| x.category == "personal")
        .expect("personal retention");
    assert_eq!(personal_ret.seconds, 30 * 86_400);
    // People counts are aggregates.
    let crowd = r
        .activities
        .iter()
        .find(|a| a.id == "crowd_safety")
        .expect("crowd");
    assert!(
        crowd
            .data
            .iter()
            .any(|d| d.protection == Protection::Aggregated)
    );
    assert!(
        crowd
            .kinds
            .iter()
            .all(|k| k.devices == k.communes.iter().map(|c| c.devices).sum::<usize>())
    );
    // The JSON form carries all of it.
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(
        json["controller"]["dpo_contact"],
        p.controller.dpo_contact.as_str()
    );
    assert!(
        json["activities"]
            .as_array()
            .is_some_and(|a| a.len() == p.activities.len())
    );
}

#[test]
fn a_dropped_record_activity_or_a_blank_purpose_is_a_problem() {
    let (t, mut p) = demo();
    p.activities.retain(|a| &*a.id != RECORDS_ACTIVITY);
    let r = register::build(&t, &p, RECORD_FIELDS, NOW);
    assert!(!r.summary.complete);
    assert!(
        r.problems.iter().any(|x| x.at == "incident_log.detail"),
        "{:?}",
        r.problems
    );

    let (t, mut p) = demo();
    p.activities[0].purposes = vec!["  ".into()];
    p.activities[0].data_subjects.clear();
    let r = register::build(&t, &p, RECORD_FIELDS, NOW);
    let at = format!("activity.{}", p.activities[0].id);
    assert_eq!(
        r.problems.iter().filter(|x| x.at == at).count(),
        2,
        "{:?}",
        r.problems
    );

    let (mut t, p) = demo();
    let k = t
        .kinds
        .iter_mut()
        .find(|k| k.purpose.as_deref() == Some("access_control"))
        .expect("kind");
    k.purpose = None;
    let r = register::build(&t, &p, RECORD_FIELDS, NOW);
    assert!(!r.unassigned.is_empty());
    assert!(r.summary.line().contains("INCOMPLETE"));
}

#[test]
fn html_escapes_every_configuration_string() {
    let (t, mut p) = demo();
    p.controller.name = "<script>alert(1)</script> & Cie".into();
    p.activities[0]
        .purposes
        .push("\"><img src=x onerror=alert(2)>".into());
    let r = register::build(&t, &p, RECORD_FIELDS, NOW);
    let page = html::register(&r);
    assert!(!page.contains("<script>"), "script tag left in the page");
    assert!(!page.contains("<img"), "img tag left in the page");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Cie"));
    assert!(page.contains("&quot;&gt;&lt;img"));
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("lang=\"fr\""));
    assert!(page.contains("Registre des activités de traitement"));

    let cam = t
        .kinds
        .iter()
        .position(|k| &*k.id == "camera_health")
        .expect("camera kind");
    let d = t.devices_of_kind(beffroi_core::KindIdx(cam as u32))[0];
    let n = notice::build(&t, &p, d).expect("a public camera has a notice");
    let page = html::notice(&n);
    assert!(!page.contains("<script>"));
}

#[test]
fn the_notice_of_a_public_camera_names_controller_purpose_retention_and_dpo() {
    let (t, p) = demo();
    let cam = t
        .kinds
        .iter()
        .position(|k| &*k.id == "camera_health")
        .expect("camera kind");
    let d = t.devices_of_kind(beffroi_core::KindIdx(cam as u32))[0];
    let n = notice::build(&t, &p, d).expect("notice");
    let page = html::notice(&n);
    let esc = |s: &str| html::escape(s);
    assert!(page.contains(&esc(&p.controller.name)), "controller");
    assert!(
        page.contains(&esc(&p.controller.dpo_contact)),
        "DPO contact"
    );
    assert!(
        page.contains(&esc(&p.controller.contact)),
        "where to exercise rights"
    );
    let act = p.activity("video_protection").expect("activity");
    assert!(page.contains(&esc(&act.purposes[0])), "purpose");
    assert!(
        page.contains("Durée de conservation") && page.contains("30 jours"),
        "retention"
    );
    assert!(page.contains("CNIL"), "complaint right");
    let site = t.site(t.device(d).site);
    assert!(page.contains(&esc(&site.name)), "site");
    assert!(
        page.contains(&esc(&t.commune(site.commune).name)),
        "commune"
    );

    // A device that does not observe public space has none.
    let badge = t
        .kinds
        .iter()
        .position(|k| !k.public_space)
        .expect("private kind");
    if let Some(d) = t
        .devices_of_kind(beffroi_core::KindIdx(badge as u32))
        .first()
    {
        assert!(notice::build(&t, &p, *d).is_none());
    }
    let all = notice::all(&t, &p);
    let public = t
        .devices
        .iter()
        .filter(|d| t.kind(d.kind).public_space)
        .count();
    assert_eq!(all.len(), public);
    let index = html::notices_index(&t.name, &all);
    assert!(index.contains(&format!("{}.html", notice::file_stem(&all[0].device))));
}

/// A field of a public-space kind declared outside the closed set of meanings is in the
/// register, with what the town declared, escaped; the demo declares none.
#[test]
fn a_declared_field_is_shown_in_the_register() {
    let (mut t, p) = demo();
    assert!(
        register::build(&t, &p, RECORD_FIELDS, NOW)
            .declared_fields
            .is_empty()
    );
    let counter = t.kind_id("people_counter").expect("people_counter");
    t.kinds[counter.get()].fields.push(beffroi_core::FieldSpec {
        declared: Some("the lane a visitor <entered> by, to size the gates".into()),
        ..beffroi_core::FieldSpec::technical("lane", beffroi_core::FieldType::Text)
    });
    let r = register::build(&t, &p, RECORD_FIELDS, NOW);
    assert_eq!(r.declared_fields.len(), 1);
    assert_eq!(r.declared_fields[0].kind, "people_counter");
    assert_eq!(r.declared_fields[0].field, "lane");
    let page = html::register(&r);
    assert!(page.contains("Champs déclarés hors de la liste fermée"));
    assert!(page.contains("<code>people_counter.lane</code>"));
    assert!(page.contains("&lt;entered&gt;"), "escaped");
}
