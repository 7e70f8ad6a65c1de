//! Public alerts as CAP 1.2, end to end (readings → engine → store → public API): what
//! `cap.toml` selects is announced without credentials, valid against the OASIS schema,
//! updated and ended as the incident changes; nothing else is, and nothing an operator
//! typed reaches it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, header};
use beffroi_cap::read::parse_alert;
use beffroi_cap::{MsgType, ResponseType, Urgency};
use beffroi_territory::SourceFile;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

const NOW: i64 = 1_795_694_400_000;
const MIN: i64 = 60_000;
const TOKEN: &str = "tok-cap";

const RULES: &str = r#"
[[rule]]
id = "level-high"
title = "Niveau haut — {site} ({value} m)"
category = "flood"
severity = "major"
key = "device"
auto_resolve = true
kind = "water_level"
[rule.threshold]
field = "level_m"
above = 3.0

[[rule]]
id = "level-watch"
title = "Niveau à surveiller — {site}"
category = "road"
severity = "major"
key = "device"
kind = "water_level"
[rule.threshold]
field = "level_m"
above = 1.0
"#;

const POLICY: &str = r#"
sender = "beffroi@dijon-metropole.example"
sender_name = "Dijon Métropole — poste de commandement"
status = "Exercise"
web = "https://beffroi.example/"

[[publish]]
category = "flood"
min_severity = "major"
cap_category = ["Met", "Safety"]
event = "Crue"
response = ["Avoid", "Monitor"]
instruction = "Éloignez-vous des berges."
"#;

mod support;
use support::Harness;

fn categories() -> Vec<&'static str> {
    vec!["flood", "road"]
}

async fn harness() -> Harness {
    let policy =
        beffroi_api::cap::parse_policy(&SourceFile::new("cap.toml", POLICY), &categories())
            .expect("policy");
    support::harness(RULES, NOW, TOKEN, |s| s.with_cap(Some(Arc::new(policy)))).await
}

impl Harness {
    /// `(status, content type, body)`; with the operator's token when `auth`.
    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Json>,
        auth: bool,
    ) -> (u16, String, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("answer");
        let status = resp.status().as_u16();
        let media = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("body");
        (status, media, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn level(&self, value: f64, at: i64) {
        let d = self.gauge();
        let (status, _, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/devices/{d}/observations?format=json"),
                Some(json!({"values": {"level_m": value}, "time": at})),
                true,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn incident_of(&self, rule: &str) -> Json {
        let (status, _, body) = self
            .call(Method::GET, "/api/v1/incidents", None, true)
            .await;
        assert_eq!(status, 200, "{body}");
        let list: Json = serde_json::from_str(&body).expect("json");
        list.as_array()
            .expect("list")
            .iter()
            .find(|i| i["rule"] == rule)
            .cloned()
            .unwrap_or_else(|| panic!("{rule} opened an incident: {list:#}"))
    }
}

fn validate(xml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("alert.xml");
    std::fs::write(&p, xml).expect("write");
    if let Some(r) = beffroi_testkit::xml_schema::validate_cap(&[&p]) {
        assert_eq!(r, Ok(()), "{xml}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_incident_is_a_public_cap_alert_and_the_rest_is_not() {
    let h = harness().await;
    h.level(3.4, NOW - 20 * MIN).await;
    let flood = h.incident_of("level-high").await;
    let road = h.incident_of("level-watch").await;
    let flood_id = flood["id"].as_u64().expect("id");
    let road_id = road["id"].as_u64().expect("id");
    // What an operator types stays in the command post.
    let (status, _, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/incidents/{flood_id}/actions"),
            Some(json!({"action": "comment", "text": "Appel de M. Jean Dupont, riverain"})),
            true,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The alert, without credentials.
    let (status, media, xml) = h
        .call(
            Method::GET,
            &format!("/api/v1/cap/alerts/{flood_id}"),
            None,
            false,
        )
        .await;
    assert_eq!(status, 200, "{xml}");
    assert!(media.starts_with("application/cap+xml"), "{media}");
    validate(&xml);
    let a = parse_alert(xml.as_bytes()).expect("our own CAP reads back");
    assert_eq!(a.sender, "beffroi@dijon-metropole.example");
    assert_eq!(a.status, beffroi_cap::Status::Exercise);
    let info = &a.infos[0];
    assert_eq!(info.event, "Crue");
    assert_eq!(info.severity, beffroi_cap::Severity::Severe);
    assert_eq!(info.urgency, Urgency::Immediate);
    assert_eq!(
        info.response_types,
        vec![ResponseType::Avoid, ResponseType::Monitor]
    );
    let area = &info.areas[0];
    assert!(
        !area.circles.is_empty() || !area.polygons.is_empty(),
        "{xml}"
    );
    let gauge = h.t.device_id(&h.gauge()).expect("gauge");
    let commune = h.t.commune(h.t.site(h.t.device(gauge).site).commune);
    if let Some(insee) = &commune.insee {
        assert!(
            area.geocodes
                .iter()
                .any(|g| g.name == "INSEE" && *g.value == **insee),
            "{xml}"
        );
    }
    assert_eq!(
        info.web.as_deref(),
        Some(format!("https://beffroi.example/api/v1/cap/alerts/{flood_id}").as_str())
    );
    for secret in ["Dupont", "riverain", &h.gauge(), "admin", TOKEN] {
        assert!(
            !xml.contains(secret),
            "`{secret}` reached the public alert: {xml}"
        );
    }

    // The feed lists it, not the other category.
    let (status, media, feed) = h.call(Method::GET, "/api/v1/cap/alerts", None, false).await;
    assert_eq!(status, 200, "{feed}");
    assert!(media.starts_with("application/atom+xml"), "{media}");
    assert!(
        feed.contains(&format!("/api/v1/cap/alerts/{flood_id}\"")),
        "{feed}"
    );
    assert!(
        !feed.contains(&format!("/api/v1/cap/alerts/{road_id}\"")),
        "{feed}"
    );
    let (status, _, body) = h
        .call(
            Method::GET,
            &format!("/api/v1/cap/alerts/{road_id}"),
            None,
            false,
        )
        .await;
    assert_eq!(
        status, 404,
        "a category the policy does not publish: {body}"
    );
    let (status, _, _) = h
        .call(Method::GET, "/api/v1/cap/alerts/999999", None, false)
        .await;
    assert_eq!(status, 404);

    // The level falls: the incident resolves itself, and the alert says the danger is over,
    // as an update that references the first message.
    h.level(2.0, NOW - 5 * MIN).await;
    let mut ended = None;
    for _ in 0..50 {
        let (_, _, xml) = h
            .call(
                Method::GET,
                &format!("/api/v1/cap/alerts/{flood_id}"),
                None,
                false,
            )
            .await;
        let a = parse_alert(xml.as_bytes()).expect("reads");
        if a.infos[0].urgency == Urgency::Past {
            ended = Some((a, xml));
            break;
        }
        tokio::task::yield_now().await;
    }
    let (a, xml) = ended.expect("the alert ended once the incident resolved");
    validate(&xml);
    assert_eq!(a.msg_type, MsgType::Update);
    assert_eq!(a.infos[0].response_types, vec![ResponseType::AllClear]);
    assert_eq!(a.infos[0].instruction, None);
    assert_eq!(a.references.len(), 1);
    assert!(
        a.references[0]
            .identifier
            .ends_with(&format!("INC-{flood_id}.{}", a.references[0].sent.0))
    );
    assert_ne!(a.references[0].identifier, a.identifier);
}

#[test]
fn the_policy_refuses_what_must_not_be_public_with_the_line() {
    let parse = |text: &str| {
        beffroi_api::cap::parse_policy(
            &SourceFile::new("cap.toml", text),
            &["flood", "cyber", "road"],
        )
    };
    let head = "sender = \"beffroi@ville.example\"\nsender_name = \"Ville\"\n";
    let errors = parse(&format!(
        "{head}[[publish]]\ncategory = \"cyber\"\nmin_severity = \"major\"\ncap_category = [\"Security\"]\nevent = \"Attaque\"\n"
    ))
    .expect_err("cyber is never public");
    let e = errors.iter().next().expect("one error");
    assert_eq!(
        (e.line, e.field.as_deref()),
        (Some(3), Some("publish[0].category")),
        "{errors}"
    );
    assert!(e.message.contains("never public"), "{errors}");

    let errors = parse(&format!(
        "{head}[[publish]]\ncategory = \"floood\"\nmin_severity = \"severe\"\ncap_category = [\"Weather\"]\nevent = \"Crue\"\nresponse = [\"AllClear\"]\n"
    ))
    .expect_err("four mistakes");
    let fields: Vec<&str> = errors.iter().filter_map(|e| e.field.as_deref()).collect();
    assert_eq!(
        fields,
        [
            "publish[0].category",
            "publish[0].min_severity",
            "publish[0].cap_category",
            "publish[0].response"
        ],
        "{errors}"
    );
    let errors = parse("sender = \"a b\"\nsender_name = \"Ville\"\nstatus = \"Draft\"\n")
        .expect_err("sender and status");
    assert_eq!(errors.len(), 2, "{errors}");
    assert!(
        parse("sender = \"x\"\nsender_name = \"y\"\nsurprise = 1\n").is_err(),
        "unknown keys refused"
    );

    // Feeds read as incidents: http or https, a short name, a category that is not cyber.
    let sources = parse(&format!(
        "{head}[[source]]\nname = \"voisin\"\nurl = \"https://alertes.voisin.example/feed.atom\"\nevery = \"30s\"\n\n[[source]]\nname = \"Voisin 2\"\nurl = \"ftp://x\"\ncategory = \"cyber\"\nevery = \"10ms\"\n"
    ))
    .expect_err("the second source is wrong four times");
    let fields: Vec<&str> = sources.iter().filter_map(|e| e.field.as_deref()).collect();
    assert_eq!(
        fields,
        [
            "source[1].name",
            "source[1].url",
            "source[1].every",
            "source[1].category"
        ],
        "{sources}"
    );
    let ok = parse(&format!(
        "{head}[[source]]\nname = \"voisin\"\nurl = \"https://alertes.voisin.example/feed.atom\"\n"
    ))
    .expect("an https feed");
    assert_eq!(ok.sources[0].category, "neighbour");
    assert_eq!(ok.sources[0].every.millis(), 300_000);
}
