//! The shift handover and shelving through the API, on the demo territory and a simulated
//! clock: a note is scrubbed of personal identifiers, stored and audited, and seen only
//! within its author's communes, its reads recorded once; the handover leaves the system's
//! chatter out; an alarm is shelved with a reason for a bounded time, in the caller's
//! communes only, audited, counted by the alarm health, and no longer counts once its time
//! is up.

use beffroi_engine::store::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use beffroi_api::AppState;
use beffroi_api::access::{Grant, Role, Scope};
use beffroi_api::auth::{ApiToken, Auth, AuthPolicy, token_digest};
use beffroi_core::{
    Actor, AuditRecord, AuditSink, DedupKey, DeviceIdx, Duration, IncidentChange, IncidentId,
    LogEntry, Point, SafeText, Severity, SimClock, Status, Territory, Timestamp,
};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, Engine, EngineConfig};
use beffroi_engine::store::WriteBatch;
use beffroi_privacy::{EpochKey, Pseudonymiser};
use beffroi_territory::SourceFile;
use serde_json::{Value, json};
use tower::ServiceExt;

const A: &str = "dijon";
const B: &str = "chenove";
const START: i64 = 1_700_000_000_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(Default)]
struct Recorder(Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorder {
    fn record(&self, r: AuditRecord) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

fn detail(r: &AuditRecord) -> Value {
    serde_json::from_str(r.detail.as_str()).unwrap_or(Value::Null)
}

impl Recorder {
    fn actions(&self, prefix: &str) -> Vec<AuditRecord> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.action.starts_with(prefix))
            .cloned()
            .collect()
    }
}

struct Harness {
    app: Router,
    clock: SimClock,
    audit: Arc<Recorder>,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

fn first_device_in(t: &Territory, commune: &str) -> DeviceIdx {
    let c = t.commune_id(commune).expect("commune");
    (0..t.devices.len())
        .map(|i| DeviceIdx(i as u32))
        .find(|d| t.site(t.device(*d).site).commune == c)
        .expect("a device in the commune")
}

fn entry(at: i64, actor: Actor, action: &'static str) -> LogEntry {
    LogEntry {
        at: Timestamp(at),
        actor,
        action: action.into(),
        detail: SafeText::from("detail"),
        message: None,
    }
}

fn incident(
    t: &Territory,
    id: u64,
    commune: &str,
    severity: Severity,
    log: Vec<LogEntry>,
) -> IncidentChange {
    let d = first_device_in(t, commune);
    let dev = t.device(d);
    let site = t.site(dev.site);
    IncidentChange {
        incident: beffroi_core::Incident {
            id: IncidentId(id),
            key: DedupKey(format!("ho-{id}@device:{}", dev.id).into()),
            rule: "ho".into(),
            category: "flood".into(),
            severity,
            status: Status::New,
            title: beffroi_core::safe_format!("incident {id}"),
            commune: site.commune,
            site: dev.site,
            device: Some(d),
            position: Point::new(dev.position.lon, dev.position.lat),
            opened_at: Timestamp(START - 3_600_000),
            updated_at: Timestamp(START - 60_000),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: None,
            condition_active: true,
            alarm_count: 1,
            evidence: SafeText::default(),
            sop_title: None,
            sop: vec![],
            reminded_at: None,
            escalated_at: None,
            trigger: None,
            peak: None,
            current: None,
            current_at: None,
            reopened_at: None,
        },
        created: true,
        log,
        pseudonyms: vec![],
    }
}

fn token(role: Role, scope: &str) -> String {
    format!("tok-{}-{scope}", role.as_str())
}

async fn harness() -> Harness {
    let t = Arc::new(
        beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory"),
    );
    let rules = Arc::new(
        beffroi_rules::parse(&SourceFile::new("rules.toml", ""), &t).expect("empty rules"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, reader) =
        beffroi_store::open(&dir.path().join("h.db"), Arc::clone(&t)).expect("store");
    let rule = || Actor::Rule("ho".into());
    let shift = START - 3_600_000;
    store
        .write(&WriteBatch {
            incidents: vec![
                // A critical incident in A with every kind of log line.
                incident(
                    &t,
                    1,
                    A,
                    Severity::Critical,
                    vec![
                        entry(shift, rule(), "opened"),
                        entry(shift + 60_000, Actor::System, "reminder"),
                        entry(shift + 120_000, rule(), "raised_again"),
                        entry(shift + 180_000, Actor::User("op-a".into()), "comment"),
                        entry(shift + 240_000, rule(), "condition_cleared"),
                        entry(shift + 300_000, Actor::System, "escalated_to_supervisor"),
                    ],
                ),
                // A minor one in A: its opening is chatter.
                incident(
                    &t,
                    2,
                    A,
                    Severity::Minor,
                    vec![entry(shift, rule(), "opened")],
                ),
                // One in B.
                incident(
                    &t,
                    3,
                    B,
                    Severity::Critical,
                    vec![entry(shift, rule(), "opened")],
                ),
            ],
            ..Default::default()
        })
        .expect("seed incidents");
    let clock = SimClock::new(Timestamp(START));
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
    auth.add_token(ApiToken {
        name: token(Role::Administrator, "t"),
        digest: token_digest(&token(Role::Administrator, "t")),
        grants: vec![Grant {
            role: Role::Administrator,
            scope: Scope::Territory,
        }],
    });
    for role in [Role::Operator, Role::Supervisor] {
        for (name, scope) in [
            (A, Scope::communes(vec![t.commune_id(A).expect("A")])),
            (B, Scope::communes(vec![t.commune_id(B).expect("B")])),
            ("t", Scope::Territory),
        ] {
            auth.add_token(ApiToken {
                name: token(role, name),
                digest: token_digest(&token(role, name)),
                grants: vec![Grant { role, scope }],
            });
        }
    }
    let keys = Pseudonymiser::new(vec![EpochKey::new(1, &[7; 32])]).expect("keys");
    let audit = Arc::new(Recorder::default());
    let state = AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth))
        .with_audit(Arc::clone(&audit) as Arc<dyn AuditSink>)
        .with_pseudonymiser(Arc::new(keys));
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    Harness {
        app: beffroi_api::router(state),
        clock,
        audit,
        _engine: engine,
        _dir: dir,
    }
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        tok: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {tok}"));
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
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn handover(&self, tok: &str) -> Value {
        let (status, body) = self.call(Method::GET, "/api/v1/handover", tok, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn note_ids(h: &Value) -> Vec<u64> {
    h["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_is_scrubbed_of_personal_identifiers_stored_and_audited() {
    let h = harness().await;
    let op_a = token(Role::Operator, A);
    let typed = "Véhicule AB-123-CD stationné devant l'école, propriétaire joint au 06 12 34 56 78. \
                 Pompe de relevage 3 à surveiller.";
    let (status, note) = h
        .call(
            Method::POST,
            "/api/v1/handover/notes",
            &op_a,
            Some(json!({ "text": typed })),
        )
        .await;
    assert_eq!(status, 200, "{note}");
    let text = note["text"].as_str().expect("text");
    for clear in ["AB-123-CD", "06 12 34 56 78", "0612345678"] {
        assert!(!text.contains(clear), "{clear} in {text}");
    }
    assert!(text.contains("plate:") && text.contains("phone:"), "{text}");
    assert!(text.contains("Pompe de relevage 3"), "{text}");
    assert_eq!(note["author"], "token:tok-operator-dijon");
    assert_eq!(note["communes"], json!([A]));
    // The handover shows it, scrubbed.
    let hv = h.handover(&op_a).await;
    assert_eq!(hv["notes"][0]["text"], note["text"]);
    assert_eq!(hv["notes"][0]["read_by_me"], false);
    // Audited: who and which note, never the text.
    let audited = h.audit.actions("handover.note");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(detail(&audited[0])["note"], note["id"]);
    assert!(!audited[0].detail.to_string().contains("AB-123-CD"));
    // An empty note is refused with its code.
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/handover/notes",
            &op_a,
            Some(json!({ "text": "   " })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("note_empty"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_is_seen_only_within_its_authors_communes_and_each_read_is_recorded_once() {
    let h = harness().await;
    let (op_a, op_b, op_t) = (
        token(Role::Operator, A),
        token(Role::Operator, B),
        token(Role::Operator, "t"),
    );
    let sup_a = token(Role::Supervisor, A);
    let (_, in_a) = h
        .call(
            Method::POST,
            "/api/v1/handover/notes",
            &op_a,
            Some(json!({ "text": "Crue : digue nord à revoir" })),
        )
        .await;
    let (_, in_b) = h
        .call(
            Method::POST,
            "/api/v1/handover/notes",
            &op_b,
            Some(json!({ "text": "Chenôve : rien à signaler" })),
        )
        .await;
    let (a, b) = (
        in_a["id"].as_u64().expect("id"),
        in_b["id"].as_u64().expect("id"),
    );
    assert_eq!(note_ids(&h.handover(&op_a).await), [a]);
    assert_eq!(note_ids(&h.handover(&op_b).await), [b]);
    assert_eq!(note_ids(&h.handover(&op_t).await), [b, a], "newest first");
    // Marking a note of another commune read: the same answer as one that does not exist.
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/handover/notes/{a}/read"),
            &op_b,
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("note_not_found"))
    );
    let (status_none, none) = h
        .call(Method::POST, "/api/v1/handover/notes/999/read", &op_b, None)
        .await;
    assert_eq!((status_none, &none), (status, &body));
    // The incoming supervisor of A reads it: recorded once, however often they click.
    for _ in 0..2 {
        let (status, read) = h
            .call(
                Method::POST,
                &format!("/api/v1/handover/notes/{a}/read"),
                &sup_a,
                None,
            )
            .await;
        assert_eq!(status, 200, "{read}");
        assert_eq!(read["read_by_me"], true);
        assert_eq!(read["reads"].as_array().map(Vec::len), Some(1), "{read}");
        assert_eq!(read["reads"][0]["by"], "token:tok-supervisor-dijon");
    }
    let hv = h.handover(&op_a).await;
    assert_eq!(hv["notes"][0]["read_by_me"], false, "op-a did not read it");
    assert_eq!(
        hv["notes"][0]["reads"][0]["by"],
        "token:tok-supervisor-dijon"
    );
    let reads = h.audit.actions("handover.note.read");
    assert!(
        reads
            .iter()
            .any(|r| detail(r)["note"] == a && r.outcome.as_str() == "ok"),
        "{reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handover_leaves_the_system_chatter_out() {
    let h = harness().await;
    let hv = h.handover(&token(Role::Operator, A)).await;
    let lines: Vec<(u64, String)> = hv["log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|e| {
            (
                e["incident"].as_u64().expect("incident"),
                e["action"].as_str().expect("action").to_string(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [(1, "opened".to_string()), (1, "comment".to_string())],
        "people's actions and the opening of a critical incident only"
    );
    // reminder, raised_again, condition_cleared, escalated_to_supervisor, and the opening
    // of the minor incident.
    assert_eq!(hv["chatter_left_out"], 5);
    // The open incidents of A, grouped by situation (no family here: one situation each),
    // worst first.
    let groups: Vec<(Option<u64>, &str, &str, Vec<u64>)> = hv["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["situation"].as_u64(),
                g["commune"].as_str().unwrap_or(""),
                g["worst"].as_str().unwrap_or(""),
                g["incidents"]
                    .as_array()
                    .map(|l| l.iter().filter_map(|i| i["id"].as_u64()).collect())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (Some(1), A, "critical", vec![1]),
            (Some(2), A, "minor", vec![2])
        ],
        "{}",
        hv["groups"]
    );
    assert_eq!(hv["timezone"], "Europe/Paris");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shelving_is_scoped_bounded_audited_counted_and_expires() {
    let h = harness().await;
    let (op_a, op_b) = (token(Role::Operator, A), token(Role::Operator, B));
    let shelve = |tok: String, id: u64, body: Value| {
        let h = &h;
        async move {
            h.call(
                Method::POST,
                &format!("/api/v1/incidents/{id}/shelve"),
                &tok,
                Some(body),
            )
            .await
        }
    };
    // A reason is required and the duration is bounded (8 hours by default).
    let (s, b) = shelve(op_a.clone(), 1, json!({"reason": " ", "minutes": 30})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("reason_required"))
    );
    let (s, b) = shelve(
        op_a.clone(),
        1,
        json!({"reason": "pompe en réparation", "minutes": 481}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("shelve_too_long"))
    );
    assert_eq!(b["error"]["details"]["max_minutes"], 480);
    // Another commune's incident: not found.
    let (s, b) = shelve(op_b.clone(), 1, json!({"reason": "x", "minutes": 30})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, act) = shelve(
        op_a.clone(),
        1,
        json!({"reason": "pompe en réparation", "minutes": 30}),
    )
    .await;
    assert_eq!(s, 200, "{act}");
    assert_eq!(act["change"], "shelved");
    assert_eq!(act["actor"], "user:token:tok-operator-dijon");
    let until = Timestamp(START).plus(Duration::from_mins(30)).to_string();
    assert_eq!(act["until"], until.as_str());
    let audited = h.audit.actions("incident.shelve");
    let ok: Vec<_> = audited
        .iter()
        .filter(|r| r.outcome.as_str() == "ok")
        .collect();
    assert_eq!(ok.len(), 1, "{audited:?}");
    assert_eq!(detail(ok[0])["minutes"], 30);
    assert_eq!(detail(ok[0])["until"], until.as_str());
    // Seen and counted in A, not in B.
    let listed = |tok: String| {
        let h = &h;
        async move {
            let (_, l) = h.call(Method::GET, "/api/v1/shelved", &tok, None).await;
            let (_, health) = h
                .call(Method::GET, "/api/v1/alarm-health", &tok, None)
                .await;
            (
                l["shelves"]
                    .as_array()
                    .expect("shelves")
                    .iter()
                    .filter_map(|s| s["incident"].as_u64())
                    .collect::<Vec<_>>(),
                health["shelved"].as_u64().expect("shelved count"),
            )
        }
    };
    assert_eq!(listed(op_a.clone()).await, (vec![1], 1));
    assert_eq!(listed(op_b.clone()).await, (vec![], 0));
    assert_eq!(h.handover(&op_a).await["shelved"][0]["incident"], 1);
    let metrics = |h: &Harness| {
        let req = Request::builder()
            .uri("/metrics")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", token(Role::Administrator, "t")),
            )
            .body(Body::empty())
            .expect("request");
        let app = h.app.clone();
        async move {
            let resp = app.oneshot(req).await.expect("answer");
            let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .expect("body");
            String::from_utf8_lossy(&bytes).to_string()
        }
    };
    let text = metrics(&h).await;
    assert!(
        text.contains("beffroi_alarm_health_shelved_alarms 1"),
        "the territory's gauge: {text}"
    );
    // Unshelving is recorded; a second one finds nothing on the shelf.
    let (s, b) = shelve(
        op_a.clone(),
        2,
        json!({"reason": "capteur bavard", "minutes": 60}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let unshelve = |tok: String| {
        let h = &h;
        async move {
            h.call(
                Method::POST,
                "/api/v1/incidents/2/unshelve",
                &tok,
                Some(json!({})),
            )
            .await
        }
    };
    let (s, b) = unshelve(op_a.clone()).await;
    assert_eq!((s, b["change"].as_str()), (200, Some("unshelved")));
    let (s, b) = unshelve(op_a.clone()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("not_shelved")));
    assert!(
        h.audit
            .actions("incident.unshelve")
            .iter()
            .any(|r| r.outcome.as_str() == "ok")
    );
    // Its time up on the simulated clock, the shelf no longer counts.
    h.clock.advance(Duration::from_mins(30));
    assert_eq!(listed(op_a.clone()).await, (vec![], 0));
}
