//! Situations through the API, at the seams: what a scoped operator sees of a situation
//! that spans another commune and a cyber incident, what its actions reach, split and
//! merge across the scope's edge, bulk acknowledgement, and a restart.

use beffroi_engine::store::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use beffroi_api::AppState;
use beffroi_api::access::{Grant, Role, Scope};
use beffroi_api::auth::{ApiToken, Auth, AuthPolicy, token_digest};
use beffroi_core::situation::{Family, Neighbourhood};
use beffroi_core::{
    DedupKey, DeviceIdx, Duration, IncidentChange, IncidentId, Point, Severity, SimClock, Status,
    Territory, Timestamp,
};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::operations::Operations;
use beffroi_engine::runner::{self, Engine, EngineConfig};
use beffroi_engine::store::WriteBatch;
use beffroi_territory::SourceFile;
use serde_json::{Value, json};
use tower::ServiceExt;

const A: &str = "dijon";
const B: &str = "chenove";
const T0: i64 = 1_700_000_000_000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn incident(t: &Territory, id: u64, commune: &str, category: &str, minute: i64) -> IncidentChange {
    let c = t.commune_id(commune).expect("commune");
    let d = (0..t.devices.len())
        .map(|i| DeviceIdx(i as u32))
        .find(|d| t.site(t.device(*d).site).commune == c)
        .expect("a device in the commune");
    let dev = t.device(d);
    IncidentChange {
        incident: beffroi_core::Incident {
            id: IncidentId(id),
            key: DedupKey(format!("sit-{id}@device:{}", dev.id).into()),
            rule: format!("rule-{category}").into(),
            category: category.into(),
            severity: if category == "cyber" {
                Severity::Critical
            } else {
                Severity::Major
            },
            status: Status::New,
            title: beffroi_core::safe_format!("{category} {id}"),
            commune: c,
            site: dev.site,
            device: Some(d),
            position: Point::new(dev.position.lon, dev.position.lat),
            opened_at: Timestamp(T0 + minute * 60_000),
            updated_at: Timestamp(T0 + minute * 60_000),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: None,
            condition_active: false,
            alarm_count: 1,
            evidence: beffroi_core::SafeText::default(),
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
        log: vec![],
        pseudonyms: vec![],
    }
}

struct H {
    app: Router,
    _engine: Engine,
}

async fn start(t: &Arc<Territory>, db: &Path, seed: bool) -> H {
    let (mut store, reader) = beffroi_store::open(db, Arc::clone(t)).expect("store");
    if seed {
        // A flood in A, the same flood in B, the sentinel's finding on a gauge in A.
        store
            .write(&WriteBatch {
                incidents: vec![
                    incident(t, 1, A, "flood", 0),
                    incident(t, 2, B, "flood", 1),
                    incident(t, 3, A, "cyber", 2),
                ],
                ..Default::default()
            })
            .expect("seed");
    }
    let clock = SimClock::new(Timestamp(T0 + 10 * 60_000));
    let rules =
        Arc::new(beffroi_rules::parse(&SourceFile::new("rules.toml", ""), t).expect("empty rules"));
    let engine = runner::start_with_events(
        Arc::clone(t),
        rules,
        vec![],
        vec![],
        Box::new(store),
        Arc::new(clock.clone()),
        Arc::new(Metrics::new()),
        EngineConfig {
            operations: Operations {
                families: vec![Family {
                    id: "flood".into(),
                    categories: vec!["flood".into(), "cyber".into()],
                    rules: vec![],
                    site_kinds: vec![],
                    within: Neighbourhood::Territory,
                    window: Duration::from_mins(60),
                }],
                ..Default::default()
            },
            ..EngineConfig::default()
        },
    )
    .await
    .expect("engine");
    let a = t.commune_id(A).expect("A");
    let mut auth = Auth::new(AuthPolicy::default(), Arc::new(clock));
    for (name, role, scope) in [
        ("op-a", Role::Operator, Scope::communes(vec![a])),
        ("admin", Role::Administrator, Scope::Territory),
        ("analyst-a", Role::SecurityAnalyst, Scope::communes(vec![a])),
    ] {
        auth.add_token(ApiToken {
            name: name.into(),
            digest: token_digest(name),
            grants: vec![Grant { role, scope }],
        });
    }
    let state = AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth));
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    H {
        app: beffroi_api::router(state),
        _engine: engine,
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    who: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {who}"));
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = app.clone().oneshot(req).await.expect("answer");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn ids(v: &Value) -> Vec<u64> {
    v["incidents"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["id"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_and_acts_on_its_own_part_of_a_situation_only() {
    let t = Arc::new(
        beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("s.db");
    let h = start(&t, &db, true).await;

    // One situation: the three incidents of one family, within its window.
    let (st, all) = call(&h.app, Method::GET, "/api/v1/situations", "admin", None).await;
    assert_eq!(st, 200, "{all}");
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    let sid = all[0]["id"].as_u64().expect("id");
    assert_eq!(ids(&all[0]), vec![1, 2, 3]);
    assert_eq!(all[0]["severity"], "critical");
    assert_eq!(all[0]["lead"], 3);

    // The operator of A: only its flood incident; named, graded and counted by it.
    let (_, mine) = call(&h.app, Method::GET, "/api/v1/situations", "op-a", None).await;
    assert_eq!(ids(&mine[0]), vec![1], "{mine}");
    assert_eq!(mine[0]["title"], "flood 1");
    assert_eq!(mine[0]["severity"], "major");
    assert_eq!(mine[0]["communes"], json!([A]));
    assert_eq!(mine[0]["unacknowledged"], 1);
    let (_, detail) = call(
        &h.app,
        Method::GET,
        &format!("/api/v1/situations/{sid}"),
        "op-a",
        None,
    )
    .await;
    assert_eq!(ids(&detail), vec![1]);
    assert!(
        detail["log"]
            .as_array()
            .expect("log")
            .iter()
            .all(|e| e["incident"].is_null() || e["incident"] == 1),
        "no log line names an incident the operator does not see: {detail}"
    );
    // The analyst of A sees the cyber finding too, not B's flood.
    let (_, analyst) = call(&h.app, Method::GET, "/api/v1/situations", "analyst-a", None).await;
    assert_eq!(ids(&analyst[0]), vec![1, 3]);

    // Acknowledging the situation reaches the operator's incident only.
    let (st, ack) = call(
        &h.app,
        Method::POST,
        &format!("/api/v1/situations/{sid}/actions"),
        "op-a",
        Some(json!({"action": "acknowledge"})),
    )
    .await;
    assert_eq!(st, 200, "{ack}");
    let status = |v: &Value, id: u64| -> String {
        v["incidents"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["id"] == id))
            .map(|i| i["status"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let (_, now) = call(
        &h.app,
        Method::GET,
        &format!("/api/v1/situations/{sid}"),
        "admin",
        None,
    )
    .await;
    assert_eq!(status(&now, 1), "acknowledged");
    assert_eq!(
        status(&now, 2),
        "new",
        "B's incident is out of the operator's reach"
    );
    assert_eq!(
        status(&now, 3),
        "new",
        "the cyber incident is out of the operator's reach"
    );
    assert_eq!(now["status"], "new");
    // Again: nothing of the operator's left to acknowledge.
    let (st, again) = call(
        &h.app,
        Method::POST,
        &format!("/api/v1/situations/{sid}/actions"),
        "op-a",
        Some(json!({"action": "acknowledge"})),
    )
    .await;
    assert_eq!(
        (st, again["error"]["code"].as_str()),
        (409, Some("invalid_transition")),
        "{again}"
    );

    // Split: an incident the operator does not see is answered as one not in it.
    let (st, e) = call(
        &h.app,
        Method::POST,
        &format!("/api/v1/situations/{sid}/split"),
        "op-a",
        Some(json!({"incident": 2})),
    )
    .await;
    assert_eq!(st, 400, "{e}");
    // The administrator splits B's incident out, then the operator of A may not merge it
    // back (it would move what it cannot see), the administrator may.
    let (st, new) = call(
        &h.app,
        Method::POST,
        &format!("/api/v1/situations/{sid}/split"),
        "admin",
        Some(json!({"incident": 2})),
    )
    .await;
    assert_eq!(st, 200, "{new}");
    let other = new["id"].as_u64().expect("new id");
    assert_ne!(other, sid);
    assert_eq!(ids(&new), vec![2]);
    assert_eq!(new["log"][0]["event"], "split_from");
    let (st, _) = call(
        &h.app,
        Method::GET,
        &format!("/api/v1/situations/{other}"),
        "op-a",
        None,
    )
    .await;
    assert_eq!(st, 404, "a situation of B only is not the operator's");
    let (st, e) = call(
        &h.app,
        Method::POST,
        &format!("/api/v1/situations/{sid}/merge"),
        "op-a",
        Some(json!({"from": other})),
    )
    .await;
    assert_eq!(st, 404, "{e}");
    let (st, merged) = call(
        &h.app,
        Method::POST,
        &format!("/api/v1/situations/{sid}/merge"),
        "admin",
        Some(json!({"from": other})),
    )
    .await;
    assert_eq!(st, 200, "{merged}");
    assert_eq!(ids(&merged), vec![1, 3, 2]);
    let events: Vec<&str> = merged["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        events.contains(&"split_out") && events.contains(&"merged"),
        "{events:?}"
    );

    // Bulk acknowledgement: what exists and is reachable is done, the rest named.
    let (st, bulk) = call(
        &h.app,
        Method::POST,
        "/api/v1/situations/acknowledge",
        "admin",
        Some(json!({"ids": [sid, 999]})),
    )
    .await;
    assert_eq!(st, 200, "{bulk}");
    assert_eq!(bulk["acknowledged"], json!([sid]));
    assert_eq!(bulk["refused"][0]["id"], 999);
    assert_eq!(bulk["refused"][0]["code"], "not_found");
    let (_, now) = call(
        &h.app,
        Method::GET,
        &format!("/api/v1/situations/{sid}"),
        "admin",
        None,
    )
    .await;
    assert_eq!(now["status"], "acknowledged", "{now}");

    // A restart: what a new engine reads back from the store (every change above was
    // committed before it was answered) gives the situation, its members and its log.
    let before = now.clone();
    let h = start(&t, &db, false).await;
    let (st, after) = call(
        &h.app,
        Method::GET,
        &format!("/api/v1/situations/{sid}"),
        "admin",
        None,
    )
    .await;
    assert_eq!(st, 200, "{after}");
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(after["log"], before["log"]);
    assert_eq!(after["status"], "acknowledged");
    // The merged situation is closed, not listed among the open ones.
    let (_, open) = call(&h.app, Method::GET, "/api/v1/situations", "admin", None).await;
    assert_eq!(open.as_array().map(Vec::len), Some(1), "{open}");
}
