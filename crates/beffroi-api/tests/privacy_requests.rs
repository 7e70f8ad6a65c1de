//! A person's requests and legal holds through the HTTP API: the identifier's value is
//! never echoed nor audited, the search finds what the pseudonyms hold, the access package
//! is written under `exports/`, erasure is audited with its counts, a hold needs a
//! justification and an end within a year and is audited; the retention status has the
//! shape the DPO view reads.

use beffroi_engine::store::prelude::*;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use beffroi_api::AppState;
use beffroi_api::access::{Grant, Role, Scope};
use beffroi_api::auth::{ApiToken, Auth, AuthPolicy, token_digest};
use beffroi_core::territory::{Identifier, fixture};
use beffroi_core::{
    AuditRecord, AuditSink, DedupKey, FieldIdx, Incident, IncidentChange, IncidentId, Point,
    PrivacyPolicy, Severity, SimClock, Status, Timestamp, Value,
};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, Engine, EngineConfig};
use beffroi_engine::store::{StoredObservation, WriteBatch};
use beffroi_privacy::{EpochKey, Pseudonymiser};
use beffroi_territory::SourceFile;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

const NOW: i64 = 1_767_225_600_000;
const BADGE: &str = "B-4711-XZ";

#[derive(Default)]
struct Recorder(Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorder {
    fn record(&self, r: AuditRecord) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

struct Harness {
    app: Router,
    audit: Arc<Recorder>,
    pseudonym: String,
    dir: tempfile::TempDir,
    _engine: Engine,
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        role: &str,
        body: Option<Json>,
    ) -> (u16, Json, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer tok-{role}"));
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("answer");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).to_string();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Json::Null),
            text,
        )
    }

    fn audited(&self, action: &str) -> Vec<AuditRecord> {
        self.audit
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.action == action)
            .cloned()
            .collect()
    }
}

async fn harness() -> Harness {
    let t = Arc::new(fixture::small());
    let keys = Pseudonymiser::new(vec![EpochKey::new(1, &[7; 32]), EpochKey::new(2, &[9; 32])])
        .expect("keys");
    let pseudonym = keys.pseudonym(Identifier::Badge, BADGE).0;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, reader) =
        beffroi_store::open(&dir.path().join("p.db"), Arc::clone(&t)).expect("store");
    let a1 = t.device_id("a1").expect("fixture");
    let at = Timestamp(NOW - 3_600_000);
    store
        .write(&WriteBatch {
            observations: vec![StoredObservation {
                device: a1,
                field: FieldIdx(1),
                value: Value::Text(pseudonym.as_str().into()),
                time: at,
                received: at,
                trust: beffroi_core::Trust::Unauthenticated,
                quarantined: false,
            }],
            incidents: vec![IncidentChange {
                incident: Incident {
                    id: IncidentId(1),
                    key: DedupKey("forced@device:a1".into()),
                    rule: "forced".into(),
                    category: "intrusion".into(),
                    severity: Severity::Major,
                    status: Status::Closed,
                    title: "Porte forcée".into(),
                    commune: t.commune_id("c1").expect("fixture"),
                    site: t.site_id("s1").expect("fixture"),
                    device: Some(a1),
                    position: Point::new(5.0, 47.0),
                    opened_at: at,
                    updated_at: at,
                    acknowledged_at: None,
                    resolved_at: None,
                    closed_at: Some(at),
                    owner: None,
                    condition_active: false,
                    alarm_count: 1,
                    evidence: beffroi_core::safe_format!("badge={pseudonym}"),
                    sop_title: None,
                    sop: Vec::new(),
                    reminded_at: None,
                    escalated_at: None,
                    trigger: None,
                    peak: None,
                    current: None,
                    current_at: None,
                    reopened_at: None,
                },
                created: true,
                log: Vec::new(),
                pseudonyms: vec![],
            }],
            ..WriteBatch::default()
        })
        .expect("seed");
    let clock = SimClock::new(Timestamp(NOW));
    let audit = Arc::new(Recorder::default());
    let engine = runner::start(
        Arc::clone(&t),
        Arc::new(beffroi_rules::parse(&SourceFile::new("rules.toml", ""), &t).expect("rules")),
        Vec::new(),
        Box::new(store),
        Arc::new(clock.clone()),
        Arc::new(Metrics::new()),
        EngineConfig {
            privacy: Arc::new(PrivacyPolicy::unconfigured()),
            exports_dir: Some(dir.path().join("exports")),
            ..EngineConfig::default()
        },
    )
    .await
    .expect("engine");
    let mut auth = Auth::new(AuthPolicy::default(), Arc::new(clock));
    for role in [Role::Dpo, Role::Supervisor, Role::Administrator] {
        auth.add_token(ApiToken {
            name: role.as_str().into(),
            digest: token_digest(&format!("tok-{}", role.as_str())),
            grants: vec![Grant {
                role,
                scope: Scope::Territory,
            }],
        });
    }
    let state = AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth))
        .with_audit(Arc::clone(&audit) as Arc<dyn AuditSink>)
        .with_privacy(Arc::new(PrivacyPolicy::unconfigured()))
        .with_pseudonymiser(Arc::new(keys));
    Harness {
        app: beffroi_api::router(state),
        audit,
        pseudonym,
        dir,
        _engine: engine,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_erasure_never_echo_the_value_and_are_audited_with_counts() {
    let h = harness().await;
    let ask = json!({"identifier": "badge", "value": "b 4711 xz", "export": true});
    // The administrator runs the system, not the files.
    let (status, _, _) = h
        .call(
            Method::POST,
            "/api/v1/privacy/subject/search",
            "administrator",
            Some(ask.clone()),
        )
        .await;
    assert_eq!(status, 403);

    let (status, body, text) = h
        .call(
            Method::POST,
            "/api/v1/privacy/subject/search",
            "dpo",
            Some(ask),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("4711"), "the value is never echoed: {text}");
    assert_eq!(
        body["pseudonyms"].as_array().map(Vec::len),
        Some(4),
        "one per live epoch, as observed and as written"
    );
    assert_eq!(body["observation_count"], 1, "{body}");
    assert_eq!(body["observations"][0]["device"], "a1");
    assert_eq!(body["observations"][0]["pseudonym"], h.pseudonym.as_str());
    assert_eq!(body["incidents"][0]["id"], 1);
    assert_eq!(body["incidents"][0]["found_in"], json!(["evidence"]));
    let export = body["export"].as_str().expect("export written");
    let package = std::fs::read_to_string(h.dir.path().join(export)).expect("package");
    assert!(package.contains(&h.pseudonym) && !package.contains("4711"));
    let access = h.audited("privacy.subject.access");
    assert_eq!(access.len(), 1);
    assert!(
        access[0].detail.contains("\"observations\":1"),
        "{}",
        access[0].detail
    );
    assert!(!access[0].detail.contains("4711") && !access[0].detail.contains(&h.pseudonym));

    // Erasure needs a justification.
    let (status, body, _) = h
        .call(
            Method::POST,
            "/api/v1/privacy/subject/erase",
            "dpo",
            Some(json!({"identifier": "badge", "value": BADGE})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body, text) = h
        .call(
            Method::POST,
            "/api/v1/privacy/subject/erase",
            "dpo",
            Some(json!({"identifier": "badge", "value": BADGE,
                        "justification": "Demande n° 2026-044 du 12 mars"})),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("4711"));
    assert_eq!(body["observations_deleted"], 1);
    assert_eq!(body["incidents_redacted"], 1);
    let erase = h.audited("privacy.subject.erase");
    assert_eq!(erase.len(), 2, "the refusal and the erasure");
    assert!(
        erase[1].detail.contains("\"incidents_redacted\":1"),
        "{}",
        erase[1].detail
    );
    assert!(!erase[1].detail.contains("4711"));
    let (_, body, _) = h
        .call(
            Method::POST,
            "/api/v1/privacy/subject/search",
            "dpo",
            Some(json!({"identifier": "badge", "value": BADGE})),
        )
        .await;
    assert_eq!(body["observation_count"], 0);
    assert_eq!(body["incidents"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_needs_a_justification_and_an_end_and_is_audited() {
    let h = harness().await;
    let day = 86_400_000;
    let until = |ms: i64| beffroi_core::Timestamp(ms).to_string();
    for (body, why) in [
        (
            json!({"justification": "court", "until": until(NOW + day)}),
            "short justification",
        ),
        (
            json!({"justification": "Réquisition du parquet n° 2026/123", "until": until(NOW - day)}),
            "past",
        ),
        (
            json!({"justification": "Réquisition du parquet n° 2026/123", "until": until(NOW + 400 * day)}),
            "beyond a year",
        ),
    ] {
        let (status, _, text) = h
            .call(
                Method::POST,
                "/api/v1/incidents/1/hold",
                "supervisor",
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{why}: {text}");
    }
    let (status, body, text) = h
        .call(
            Method::POST,
            "/api/v1/incidents/1/hold",
            "supervisor",
            Some(json!({"justification": "Réquisition du parquet n° 2026/123", "until": until(NOW + 90 * day)})),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["set_by"], "token:supervisor");
    let (status, holds, _) = h
        .call(Method::GET, "/api/v1/privacy/holds", "dpo", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(holds[0]["incident_id"], 1);
    assert_eq!(holds[0]["until"], until(NOW + 90 * day));
    let (status, _, _) = h
        .call(Method::POST, "/api/v1/incidents/9/hold", "supervisor",
              Some(json!({"justification": "Réquisition du parquet n° 2026/123", "until": until(NOW + day)})))
        .await;
    assert_eq!(status, 404, "no such incident");
    let (status, _, _) = h
        .call(
            Method::POST,
            "/api/v1/incidents/1/hold/release",
            "supervisor",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body, _) = h
        .call(
            Method::POST,
            "/api/v1/incidents/1/hold/release",
            "supervisor",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no_hold"))
    );
    let held = h.audited("privacy.hold");
    assert_eq!(held.len(), 5);
    assert!(
        held[3].detail.contains("\"incident_id\":1"),
        "{}",
        held[3].detail
    );
    assert_eq!(h.audited("privacy.hold.release").len(), 2);
    let (_, holds, _) = h
        .call(Method::GET, "/api/v1/privacy/holds", "dpo", None)
        .await;
    assert_eq!(holds, json!([]));

    // The retention status, as the DPO view reads it.
    let (status, st, text) = h
        .call(Method::GET, "/api/v1/privacy/retention", "dpo", None)
        .await;
    assert_eq!(status, 200, "{text}");
    let cats: Vec<&str> = st["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .filter_map(|c| c["category"].as_str())
        .collect();
    assert_eq!(cats, ["technical", "personal", "sensitive"]);
    assert_eq!(st["categories"][1]["retention_days"], 30);
    let personal_obs = st["categories"][1]["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .find(|s| s["store"] == "observations")
        .cloned()
        .expect("personal observations");
    assert_eq!(personal_obs["rows"], 1);
    assert_eq!(personal_obs["oldest"], until(NOW - 3_600_000));
    assert_eq!(st["last_purge"], Json::Null);
    assert_eq!(st["next_purge_at"], until(NOW + 600_000));
}
