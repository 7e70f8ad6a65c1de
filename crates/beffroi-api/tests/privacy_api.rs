//! The DPO's routes against the real audit log: the access log shows only entries about
//! personal data and is refused (403, audited) to an operator; the register and the public
//! notice are served as pages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use beffroi_api::AppState;
use beffroi_api::access::{Grant, Role, Scope};
use beffroi_api::auth::{ApiToken, Auth, AuthPolicy, token_digest};
use beffroi_audit::{AuditConfig, AuditLog};
use beffroi_core::{AuditOutcome, AuditReader, AuditRecord, AuditSink, SimClock, Timestamp};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, Engine, EngineConfig};
use beffroi_territory::SourceFile;
use serde_json::Value;
use tower::ServiceExt;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct H {
    app: Router,
    log: Arc<AuditLog>,
    t: Arc<beffroi_core::Territory>,
    privacy: beffroi_core::PrivacyPolicy,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

const DPO: &str = "tok-dpo";
const OPERATOR: &str = "tok-operator";

async fn harness() -> H {
    let t = Arc::new(
        beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory"),
    );
    let privacy = beffroi_territory::load_privacy(
        &SourceFile::read(&root().join("demo/privacy.toml")).expect("privacy.toml"),
    )
    .expect("demo privacy");
    let rules = Arc::new(
        beffroi_rules::parse(&SourceFile::new("rules.toml", ""), &t).expect("empty rules"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reader) =
        beffroi_store::open(&dir.path().join("p.db"), Arc::clone(&t)).expect("store");
    let clock = SimClock::new(Timestamp(1_700_000_000_000));
    let engine = runner::start_with_events(
        Arc::clone(&t),
        rules,
        vec![],
        vec![],
        Box::new(store),
        Arc::new(clock.clone()),
        Arc::new(Metrics::new()),
        EngineConfig::default(),
    )
    .await
    .expect("engine");
    let mut auth = Auth::new(AuthPolicy::default(), Arc::new(clock.clone()));
    for (name, role) in [(DPO, Role::Dpo), (OPERATOR, Role::Operator)] {
        auth.add_token(ApiToken {
            name: name.into(),
            digest: token_digest(name),
            grants: vec![Grant {
                role,
                scope: Scope::Territory,
            }],
        });
    }
    let log = Arc::new(
        AuditLog::open(AuditConfig::in_dir(dir.path()), Arc::new(clock)).expect("audit log"),
    );
    let state = AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth))
        .with_privacy(Arc::new(privacy.clone()))
        .with_audit(Arc::clone(&log) as Arc<dyn AuditSink>)
        .with_audit_reader(Arc::clone(&log) as Arc<dyn AuditReader>);
    let app = beffroi_api::harden(beffroi_api::router(state), Default::default());
    H {
        app,
        log,
        t,
        privacy,
        _engine: engine,
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    content_type: String,
    csp: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl H {
    async fn get(&self, uri: &str, token: Option<&str>) -> Answer {
        let mut req = Request::builder().method(Method::GET).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let h = |k: header::HeaderName| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (content_type, csp) = (h(header::CONTENT_TYPE), h(header::CONTENT_SECURITY_POLICY));
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("body");
        Answer {
            status,
            content_type,
            csp,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn seed(&self, action: &str, outcome: AuditOutcome) {
        self.log.record(AuditRecord {
            at_ms: 1_700_000_000_000,
            actor: "supervisor-1".into(),
            action: action.into(),
            target: Some("42".into()),
            outcome,
            detail: r#"{"purpose":"incident_response"}"#.into(),
        });
    }

    fn flush(&self) {
        self.log.flush().expect("flush the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_shows_only_privacy_entries_and_is_refused_to_an_operator() {
    let h = harness().await;
    h.seed("auth.login", AuditOutcome::Ok);
    h.seed("personal.unmask", AuditOutcome::Ok);
    h.seed("incident.action", AuditOutcome::Ok);
    h.seed("privacy.hold", AuditOutcome::Ok);
    h.seed("personal.unmask", AuditOutcome::Denied);
    h.seed("privacy_not_really", AuditOutcome::Ok);
    h.flush();

    // An operator: 403, and the refusal is audited (and then shown to the DPO).
    let r = h.get("/api/v1/privacy/access-log", Some(OPERATOR)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    h.flush();
    let denied = h
        .log
        .read(&beffroi_core::AuditQuery {
            action_prefixes: vec!["access.".into()],
            limit: 10,
            ..Default::default()
        })
        .expect("read");
    assert!(
        denied
            .iter()
            .any(|e| e.record.actor == format!("token:{OPERATOR}")
                && e.record.action == "access.privacy.access_log"
                && e.record.outcome == AuditOutcome::Denied),
        "{denied:?}"
    );

    let r = h.get("/api/v1/privacy/access-log", Some(DPO)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "access.privacy.access_log",
            "personal.unmask",
            "privacy.hold",
            "personal.unmask"
        ],
        "newest first, only entries about personal data"
    );
    let first = &v["entries"][0];
    assert_eq!(first["actor"], format!("token:{OPERATOR}"));
    assert_eq!(first["outcome"], "denied");
    assert_eq!(v["entries"][1]["detail"]["purpose"], "incident_response");
    assert_eq!(v["entries"][1]["target"], "42");
    assert!(v["next_before"].is_null());

    // Paging, and the read itself is audited.
    let r = h.get("/api/v1/privacy/access-log?limit=2", Some(DPO)).await;
    let v = r.json();
    assert_eq!(v["entries"].as_array().map(Vec::len), Some(2));
    let before = v["next_before"].as_u64().expect("a next page");
    let r = h
        .get(
            &format!("/api/v1/privacy/access-log?before={before}&limit=10"),
            Some(DPO),
        )
        .await;
    let older: Vec<String> = r.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(older.iter().all(|a| a.starts_with("personal.")
        || a.starts_with("privacy.")
        || a.starts_with("access.privacy.")));
    assert!(older.contains(&"privacy.hold".to_string()), "{older:?}");
    h.flush();
    let reads = h
        .log
        .read(&beffroi_core::AuditQuery {
            action_prefixes: vec!["privacy.access_log".into()],
            limit: 10,
            ..Default::default()
        })
        .expect("read");
    assert_eq!(reads.len(), 3, "each read of the access log is audited");
    assert!(
        reads
            .iter()
            .all(|e| e.record.actor == format!("token:{DPO}"))
    );

    // Bad parameters.
    assert_eq!(
        h.get("/api/v1/privacy/access-log?limit=0", Some(DPO))
            .await
            .status,
        400
    );
    assert_eq!(
        h.get("/api/v1/privacy/access-log?since=yesterday", Some(DPO))
            .await
            .status,
        400
    );
    assert_eq!(h.get("/api/v1/privacy/access-log", None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_notices_are_served() {
    let h = harness().await;
    let r = h.get("/api/v1/privacy/register", Some(DPO)).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["summary"]["complete"], true, "{}", v["problems"]);
    assert_eq!(v["controller"]["name"], h.privacy.controller.name.as_str());
    let r = h.get("/api/v1/privacy/register.html", Some(DPO)).await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/html"));
    assert!(
        r.csp.contains("style-src 'unsafe-inline'") && !r.csp.contains("script"),
        "{}",
        r.csp
    );
    assert!(r.text.contains("Registre des activités de traitement"));
    assert_eq!(
        h.get("/api/v1/privacy/register", Some(OPERATOR))
            .await
            .status,
        403
    );

    // The notice of a public camera: public, no credentials.
    let cam =
        h.t.devices
            .iter()
            .find(|d| &*h.t.kind(d.kind).id == "camera_health")
            .expect("a camera");
    let r = h
        .get(&format!("/api/v1/devices/{}/notice", cam.id), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type.starts_with("text/html"));
    let esc = beffroi_dpo_escape;
    assert!(r.text.contains(&esc(&h.privacy.controller.name)));
    assert!(r.text.contains(&esc(&h.privacy.controller.dpo_contact)));
    assert!(r.text.contains("30 jours"));
    assert!(
        r.text.contains(&esc(&h
            .privacy
            .activity("video_protection")
            .expect("activity")
            .purposes[0]))
    );
    let list = h.get("/api/v1/privacy/notices", Some(DPO)).await.json();
    let list = list.as_array().expect("list");
    assert_eq!(
        list.len(),
        h.t.devices
            .iter()
            .filter(|d| h.t.kind(d.kind).public_space)
            .count()
    );
    assert!(
        list.iter()
            .any(|n| n["url"] == format!("/api/v1/devices/{}/notice", cam.id))
    );
    // A device not observing public space, or no device: 404.
    let private =
        h.t.devices
            .iter()
            .find(|d| !h.t.kind(d.kind).public_space)
            .expect("a private device");
    assert_eq!(
        h.get(&format!("/api/v1/devices/{}/notice", private.id), None)
            .await
            .status,
        404
    );
    assert_eq!(h.get("/api/v1/devices/nope/notice", None).await.status, 404);
}

/// The same escaping as the pages (apostrophes in the controller's name).
fn beffroi_dpo_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
