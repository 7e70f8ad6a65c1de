//! The TAXII 2.1 server over a real engine and store: cyber incidents raised by broker
//! signals become STIX 2.1 indicators and sightings, served per API root to the readers
//! `taxii.toml` names, with TAXII's media type, paging and filters; nothing personal and
//! nothing above a root's TLP ceiling leaves. The last test drives it with the reference
//! Python client (`taxii2-client`) and validates what it returns with `stix2-validator`.

mod support;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use beffroi_core::{AuditRecord, AuditSink, SecuritySignal};
use beffroi_territory::SourceFile;
use serde_json::Value as Json;
use support::Harness;
use tower::ServiceExt;

const NOW: i64 = 1_796_000_000_000;
const TOKEN: &str = "admin-token-for-taxii-tests";
const CSIRT_TOKEN: &str = "csirt-secret-token-0123456789";
const TOWN_TOKEN: &str = "neighbour-secret-token-987654";
const TAXII: &str = "application/taxii+json;version=2.1";

fn policy_text() -> String {
    let digest = |t: &str| hex::encode(beffroi_api::taxii::token_digest(t));
    format!(
        r#"
name = "Dijon Métropole"
tlp = "amber"

[[root]]
name = "csirt"
title = "CSIRT régional"
max_tlp = "amber"
[[root.reader]]
name = "csirt-bfc"
token_sha256 = "{}"

[[root]]
name = "neighbours"
max_tlp = "green"
[[root.reader]]
name = "quetigny"
token_sha256 = "{}"
"#,
        digest(CSIRT_TOKEN),
        digest(TOWN_TOKEN)
    )
}

#[derive(Default)]
struct Audit(Mutex<Vec<AuditRecord>>);

impl AuditSink for Audit {
    fn record(&self, r: AuditRecord) {
        self.0.lock().expect("audit").push(r);
    }
}

struct Taxii {
    h: Harness,
    audit: Arc<Audit>,
    collection: String,
}

async fn taxii() -> Taxii {
    let territory = beffroi_territory::load_dir(&support::root().join("demo/territory"))
        .expect("demo territory");
    let policy =
        beffroi_api::taxii::parse_policy(&SourceFile::new("taxii.toml", policy_text()), &territory)
            .expect("policy");
    let collection = policy.roots[0].collection.clone();
    let audit = Arc::new(Audit::default());
    let sink = Arc::clone(&audit);
    let h = support::harness("", NOW, TOKEN, move |s| {
        s.with_taxii(Some(Arc::new(policy))).with_audit(sink)
    })
    .await;
    // A botnet address tries five accounts, one of them a person's: a brute force keyed on
    // the address. A known user then connects from elsewhere: an identity change keyed on
    // the user name, which must never be shared.
    for (i, user) in ["cam-1", "cam-2", "jean.dupont", "cam-3", "cam-4"]
        .iter()
        .enumerate()
    {
        h.handle
            .security_signal(SecuritySignal::AuthFailure {
                client_id: format!("c{i}"),
                username: Some((*user).into()),
                address: Some("203.0.113.41".into()),
            })
            .await
            .expect("signal");
    }
    for address in ["192.0.2.10", "198.51.100.99"] {
        h.handle
            .security_signal(SecuritySignal::Connected {
                client_id: "laptop".into(),
                username: Some("jean.dupont".into()),
                address: Some(address.into()),
            })
            .await
            .expect("signal");
    }
    let t = Taxii {
        h,
        audit,
        collection,
    };
    // Both incidents committed.
    for _ in 0..200 {
        let (_, _, body) = t.admin("/api/v1/incidents?category=cyber").await;
        if body.contains("cyber-brute_force") && body.contains("cyber-identity_change") {
            return t;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the cyber incidents were not opened");
}

fn basic(user: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

impl Taxii {
    async fn admin(&self, uri: &str) -> (u16, String, String) {
        self.get(
            uri,
            Some(format!("Bearer {TOKEN}")),
            Some("application/json"),
        )
        .await
    }

    /// `(status, content type, body)`.
    async fn get(
        &self,
        uri: &str,
        auth: Option<String>,
        accept: Option<&str>,
    ) -> (u16, String, String) {
        let mut req = Request::builder().uri(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = self
            .h
            .app
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("answer");
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

    async fn csirt(&self, uri: &str) -> (u16, String, Json) {
        let (status, media, body) = self
            .get(uri, Some(basic("csirt-bfc", CSIRT_TOKEN)), Some(TAXII))
            .await;
        (
            status,
            media,
            serde_json::from_str(&body).unwrap_or(Json::Null),
        )
    }

    fn objects_uri(&self, root: &str, query: &str) -> String {
        format!(
            "/taxii2/{root}/collections/{}/objects/{query}",
            self.collection
        )
    }
}

#[tokio::test]
async fn partners_read_the_cyber_incidents_as_stix_under_their_root_s_rules() {
    let t = taxii().await;

    // Discovery lists only the roots the caller reads; no credential, no answer.
    let (status, media, d) = t.csirt("/taxii2/").await;
    assert_eq!((status, media.as_str()), (200, TAXII), "{d}");
    assert_eq!(d["api_roots"], serde_json::json!(["/taxii2/csirt/"]));
    let (status, _, _) = t.get("/taxii2/", None, Some(TAXII)).await;
    assert_eq!(status, 401);

    // The exact media type: asked for, and answered; anything else is 406.
    let (status, media, body) = t
        .get(
            "/taxii2/csirt/",
            Some(basic("csirt-bfc", CSIRT_TOKEN)),
            Some("application/json"),
        )
        .await;
    assert_eq!((status, media.as_str()), (406, TAXII), "{body}");
    let (status, _, root) = t.csirt("/taxii2/csirt/").await;
    assert_eq!(status, 200);
    assert_eq!(root["versions"], serde_json::json!([TAXII]));
    let (status, _, cols) = t.csirt("/taxii2/csirt/collections/").await;
    assert_eq!(status, 200);
    assert_eq!(cols["collections"][0]["id"], t.collection.as_str());
    assert_eq!(cols["collections"][0]["can_write"], false);

    // The objects: an indicator of the botnet's address with its technique, sightings of
    // both incidents, TLP:AMBER on each; no user name, no title, no device name.
    let (status, media, env) = t.csirt(&t.objects_uri("csirt", "")).await;
    assert_eq!((status, media.as_str()), (200, TAXII), "{env}");
    let objects = env["objects"].as_array().expect("objects");
    let of_type = |ty: &str| {
        objects
            .iter()
            .filter(|o| o["type"] == ty)
            .collect::<Vec<_>>()
    };
    let indicators = of_type("indicator");
    assert_eq!(indicators.len(), 1, "{env:#}");
    assert_eq!(
        indicators[0]["pattern"],
        "[ipv4-addr:value = '203.0.113.41']"
    );
    assert_eq!(of_type("sighting").len(), 2, "{env:#}");
    let patterns = of_type("attack-pattern");
    assert!(
        patterns
            .iter()
            .any(|p| p["external_references"][0]["external_id"] == "T0812"),
        "{env:#}"
    );
    let amber = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82";
    for o in objects
        .iter()
        .filter(|o| o["type"] == "indicator" || o["type"] == "sighting")
    {
        assert_eq!(
            o["object_marking_refs"],
            serde_json::json!([amber]),
            "{o:#}"
        );
    }
    let text = env.to_string();
    for secret in [
        "jean.dupont",
        "192.0.2.10",
        "198.51.100.99",
        "cam-1",
        "Burst",
    ] {
        assert!(
            !text.contains(secret),
            "`{secret}` left the territory: {text}"
        );
    }

    // Paging: two at a time, every object once, with the date headers.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_string();
    loop {
        let (status, _, page) = t.csirt(&t.objects_uri("csirt", &query)).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["objects"]
                .as_array()
                .expect("objects")
                .iter()
                .map(|o| o["id"].clone()),
        );
        match (page["more"].as_bool(), page["next"].as_str()) {
            (Some(true), Some(next)) => query = format!("?limit=2&next={next}"),
            _ => break,
        }
    }
    let mut all: Vec<Json> = objects.iter().map(|o| o["id"].clone()).collect();
    all.sort_by_key(|v| v.to_string());
    seen.sort_by_key(|v| v.to_string());
    assert_eq!(seen, all);
    // Filters: by type, and one object with its versions.
    let (_, _, only) = t
        .csirt(&t.objects_uri("csirt", "?match[type]=indicator"))
        .await;
    assert_eq!(only["objects"].as_array().map(Vec::len), Some(1), "{only}");
    let id = indicators[0]["id"].as_str().expect("id");
    let (status, _, one) = t.csirt(&t.objects_uri("csirt", &format!("{id}/"))).await;
    assert_eq!(
        (status, one["objects"][0]["id"].as_str()),
        (200, Some(id)),
        "{one}"
    );
    let (status, _, versions) = t
        .csirt(&t.objects_uri("csirt", &format!("{id}/versions/")))
        .await;
    assert_eq!(status, 200, "{versions}");
    assert_eq!(versions["versions"][0], indicators[0]["modified"]);
    let (status, _, manifest) = t
        .csirt(&format!(
            "/taxii2/csirt/collections/{}/manifest/",
            t.collection
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        manifest["objects"].as_array().map(Vec::len),
        Some(objects.len())
    );
    // A bad parameter is a TAXII error naming it.
    let (status, media, bad) = t.csirt(&t.objects_uri("csirt", "?limit=0")).await;
    assert_eq!((status, media.as_str()), (400, TAXII));
    assert!(bad.to_string().contains("limit"), "{bad}");

    // The neighbours' root is green: the amber indicators are not theirs.
    let (status, _, green) = t
        .get(
            &t.objects_uri("neighbours", ""),
            Some(basic("quetigny", TOWN_TOKEN)),
            Some(TAXII),
        )
        .await;
    assert_eq!(status, 404, "another root's collection id: {green}");
    let neighbours: Json = serde_json::from_str(
        &t.get(
            "/taxii2/neighbours/collections/",
            Some(basic("quetigny", TOWN_TOKEN)),
            Some(TAXII),
        )
        .await
        .2,
    )
    .expect("json");
    let their = neighbours["collections"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, _, body) = t
        .get(
            &format!("/taxii2/neighbours/collections/{their}/objects/"),
            Some(basic("quetigny", TOWN_TOKEN)),
            Some(TAXII),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("indicator--") && !body.contains("sighting--"),
        "{body}"
    );
    // A reader of one root cannot read another with its credential.
    let (status, _, _) = t
        .get(
            &t.objects_uri("csirt", ""),
            Some(basic("quetigny", TOWN_TOKEN)),
            Some(TAXII),
        )
        .await;
    assert_eq!(status, 401);

    // Every read and every refused credential is in the audit log.
    let audit = t.audit.0.lock().expect("audit");
    assert!(
        audit
            .iter()
            .any(|r| r.action == "taxii.read" && r.actor.as_str() == "partner:csirt-bfc")
    );
    assert!(
        audit
            .iter()
            .any(|r| r.action == "taxii.denied" && r.actor.as_str() == "partner:quetigny")
    );
}

/// The reference client reads the collection page by page, and the STIX it gets passes
/// the reference validator. Skipped (or failed under `BEFFROI_REQUIRE_SERVICES`) without
/// the Python packages, which `.ci/run` installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_reads_valid_stix() {
    if !support::python_has(
        "taxii2client, stix2validator",
        "taxii2-client stix2-validator",
    ) {
        return;
    }
    let t = taxii().await;
    let addr = support::listen(t.h.app.clone()).await;
    let script = support::root().join("crates/beffroi-api/tests/taxii_client.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(format!("http://{addr}/taxii2/"))
            .arg("csirt-bfc")
            .arg(CSIRT_TOKEN)
            .output()
            .expect("python3")
    })
    .await
    .expect("client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator's messages, for whoever runs it with `--nocapture`.
    eprintln!("{stdout}");
    let report: Json = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("report");
    assert_eq!(report["valid"], true, "{report:#}");
    assert_eq!(report["indicators"], 1, "{report:#}");
    assert_eq!(report["sightings"], 2, "{report:#}");
    assert!(
        report["pages"].as_u64().is_some_and(|p| p >= 3),
        "{report:#}"
    );
}
