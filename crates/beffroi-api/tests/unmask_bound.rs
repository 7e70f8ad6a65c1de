//! Unmasking bound by structure, end to end (API → engine → store → unmasking): an
//! incident carries the pseudonyms of the reading that raised it, and only those.
//! A pseudonym written into a rule's title, pasted into a comment, or read by the same
//! device later (while the incident is still open) is not the incident's: 404
//! `not_in_incident`, and nothing is revealed.
//!
//! With a second approver (`[privacy] unmask_approval = "dpo"`), the value is revealed only
//! to the requester, after another person (the DPO) approved the request within the time
//! limit; the requester cannot approve their own; every step is audited.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use beffroi_api::access::{Grant, Role, Scope};
use beffroi_api::auth::{ApiToken, Auth, AuthPolicy, token_digest};
use beffroi_api::unmask::{Approval, ApprovalPolicy};
use beffroi_api::{AppState, WebSecurity};
use beffroi_core::{AuditRecord, AuditSink, DeviceIdx, Identifier, SimClock, Territory, Timestamp};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, Engine, EngineConfig};
use beffroi_privacy::{EpochKey, Pseudonymiser, Sealed};
use beffroi_territory::SourceFile;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

const NOW: i64 = 1_795_694_400_000;
const BADGE: &str = "BADGE-004711";
const LATER_BADGE: &str = "BADGE-000777";
const COMMENT_BADGE: &str = "BADGE-000999";
const TITLE_PLATE: &str = "ZZ-999-ZZ";
const WHY: &str = "Plainte déposée, réquisition OPJ n° 2026/1142";

#[derive(Default)]
struct Recorder(Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorder {
    fn record(&self, r: AuditRecord) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

struct Harness {
    app: Router,
    clock: SimClock,
    audit: Arc<Recorder>,
    t: Arc<Territory>,
    keys: Arc<Pseudonymiser>,
    db: std::path::PathBuf,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

fn tok(role: Role) -> String {
    format!("tok-{}", role.as_str())
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn insert_identity(db: &std::path::Path, s: &Sealed) {
    let c = rusqlite::Connection::open(db).expect("open db");
    c.execute(
        "INSERT OR IGNORE INTO identities (pseudonym, identifier, epoch, sealed, first_seen, last_seen) \
         VALUES (?, ?, ?, ?, ?, ?)",
        rusqlite::params![
            s.pseudonym.0,
            s.identifier.as_str(),
            s.epoch,
            s.ciphertext,
            NOW - 700_000,
            NOW - 600_000
        ],
    )
    .expect("insert identity");
}

async fn harness(rules: impl Fn(&str) -> String, approval: ApprovalPolicy) -> Harness {
    let t = Arc::new(
        beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory"),
    );
    let keys = Arc::new(Pseudonymiser::new(vec![EpochKey::new(2, &[2; 32])]).expect("keys"));
    let title_plate = keys.seal(Identifier::LicencePlate, TITLE_PLATE);
    let rules = rules(&title_plate.pseudonym.0);
    let rules =
        Arc::new(beffroi_rules::parse(&SourceFile::new("rules.toml", &rules), &t).expect("rules"));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("unmask.db");
    let (store, reader) = beffroi_store::open(&db, Arc::clone(&t)).expect("store");
    let clock = SimClock::new(Timestamp(NOW));
    let engine = runner::start_with_events(
        Arc::clone(&t),
        rules,
        vec![],
        vec![],
        Box::new(store),
        Arc::new(clock.clone()),
        Arc::new(Metrics::new()),
        EngineConfig {
            pseudonymiser: Some(Arc::clone(&keys)),
            ..EngineConfig::default()
        },
    )
    .await
    .expect("engine");
    let mut auth = Auth::new(AuthPolicy::default(), Arc::new(clock.clone()));
    for role in Role::ALL {
        auth.add_token(ApiToken {
            name: tok(role),
            digest: token_digest(&tok(role)),
            grants: vec![Grant {
                role,
                scope: Scope::Territory,
            }],
        });
    }
    let audit = Arc::new(Recorder::default());
    let state = AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth))
        .with_audit(Arc::clone(&audit) as Arc<dyn AuditSink>)
        .with_privacy(Arc::new(beffroi_core::PrivacyPolicy::unconfigured()))
        .with_pseudonymiser(Arc::clone(&keys))
        .with_unmask_approval(approval);
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    let app = beffroi_api::harden(beffroi_api::router(state), WebSecurity::default());
    // The plate of the rule's title is a real identity of the store (seen elsewhere).
    insert_identity(&db, &title_plate);
    Harness {
        app,
        clock,
        audit,
        t,
        keys,
        db,
        _engine: engine,
        _dir: dir,
    }
}

impl Harness {
    async fn call(&self, method: Method, uri: &str, role: Role, body: Option<Json>) -> (u16, Json) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", tok(role)));
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
        (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
    }

    fn reader(&self) -> DeviceIdx {
        let k = self.t.kind_id("access_reader").expect("kind");
        (0..self.t.devices.len())
            .map(|i| DeviceIdx(i as u32))
            .find(|d| self.t.device(*d).kind == k)
            .expect("a reader")
    }

    async fn post_reading(&self, values: Json, at: i64) {
        let d = self.t.device(self.reader()).id.to_string();
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/devices/{d}/observations?format=json"),
                Role::Administrator,
                Some(json!({"values": values, "time": at})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// The id of the incident the test rule opened.
    async fn incident(&self) -> u64 {
        let (status, list) = self
            .call(Method::GET, "/api/v1/incidents", Role::Administrator, None)
            .await;
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .expect("list")
            .iter()
            .find(|i| i["rule"] == "door-test")
            .and_then(|i| i["id"].as_u64())
            .unwrap_or_else(|| panic!("the rule opened an incident: {list:#}"))
    }

    async fn unmask(&self, id: u64, pseudonym: &str) -> (u16, Json) {
        self.call(
            Method::POST,
            &format!("/api/v1/incidents/{id}/unmask"),
            Role::Supervisor,
            Some(json!({"pseudonym": pseudonym, "purpose": "incident_response", "justification": WHY})),
        )
        .await
    }

    fn pseudonym(&self, id: Identifier, v: &str) -> String {
        self.keys.seal(id, v).pseudonym.0
    }
}

const RULES: &str = r#"
[[rule]]
id = "door-test"
title = "Porte forcée — véhicule {PLATE} signalé"
category = "intrusion"
severity = "major"
key = "device"
auto_resolve = true
kind = "access_reader"
[rule.threshold]
field = "door_forced"
equals = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_pseudonyms_of_the_reading_that_raised_an_incident_can_be_unmasked() {
    let h = harness(
        |plate| RULES.replace("{PLATE}", plate),
        ApprovalPolicy::default(),
    )
    .await;
    let title_plate = h.pseudonym(Identifier::LicencePlate, TITLE_PLATE);
    // One reading: the door forced, a refused badge.
    h.post_reading(
        json!({"door_forced": true, "granted": false, "badge": BADGE}),
        NOW - 60_000,
    )
    .await;
    let (status, list) = h
        .call(Method::GET, "/api/v1/incidents", Role::Administrator, None)
        .await;
    assert_eq!(status, 200, "{list}");
    let incident = list
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["rule"] == "door-test")
        .unwrap_or_else(|| panic!("the rule opened an incident: {list:#}"))
        .clone();
    let id = incident["id"].as_u64().expect("id");
    assert!(
        incident["title"]
            .as_str()
            .is_some_and(|t| t.contains(&title_plate)),
        "the rule's title names the plate: {incident}"
    );

    // The same device reads another badge later, the incident still open; someone pastes a
    // third pseudonym (a real one, seen elsewhere) into a comment.
    h.post_reading(json!({"badge": LATER_BADGE}), NOW - 30_000)
        .await;
    let comment_badge = h.keys.seal(Identifier::Badge, COMMENT_BADGE);
    insert_identity(&h.db, &comment_badge);
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/incidents/{id}/actions"),
            Role::Supervisor,
            Some(json!({"action": "comment", "text": format!("vu aussi {}", comment_badge.pseudonym.0)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The badge of the reading that raised the incident: the detail lists it as the one
    // pseudonym the incident carries (the console offers unmasking on that one only)…
    let badge = h.pseudonym(Identifier::Badge, BADGE);
    let (status, detail) = h
        .call(
            Method::GET,
            &format!("/api/v1/incidents/{id}"),
            Role::Administrator,
            None,
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["carried_pseudonyms"], json!([badge]), "{detail}");
    // …and its value, once.
    let (status, body) = h.unmask(id, &badge).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["value"],
        beffroi_privacy::normalise(Identifier::Badge, BADGE).as_str()
    );

    // In the title by the rule's template, in a comment, read later: not the incident's.
    for (what, p) in [
        ("the rule's title", title_plate.clone()),
        ("a comment", comment_badge.pseudonym.0.clone()),
        (
            "a later reading",
            h.pseudonym(Identifier::Badge, LATER_BADGE),
        ),
    ] {
        let (status, body) = h.unmask(id, &p).await;
        assert_eq!(status, 404, "{what}: {body}");
        assert_eq!(body["error"]["code"], "not_in_incident", "{what}: {body}");
        assert!(body.get("value").is_none(), "{what}: {body}");
    }
}

fn audited(h: &Harness, action: &str) -> Vec<AuditRecord> {
    h.audit
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|r| r.action == action)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_second_approver_the_value_waits_for_another_person() {
    let policy = ApprovalPolicy {
        approval: Approval::Dpo,
        within: beffroi_core::Duration::from_mins(60),
    };
    let h = harness(|plate| RULES.replace("{PLATE}", plate), policy).await;
    h.post_reading(
        json!({"door_forced": true, "granted": false, "badge": BADGE}),
        NOW - 60_000,
    )
    .await;
    let id = h.incident().await;
    let badge = h.pseudonym(Identifier::Badge, BADGE);
    let clear = beffroi_privacy::normalise(Identifier::Badge, BADGE);

    // The request is recorded, nothing revealed.
    let (status, body) = h.unmask(id, &badge).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["approval"], "dpo");
    assert!(!body.to_string().contains(&clear), "{body}");
    let rid = body["request_id"].as_u64().expect("request id");
    let call = |role: Role, what: &'static str| {
        let h = &h;
        async move {
            h.call(
                Method::POST,
                &format!("/api/v1/unmask/requests/{rid}/{what}"),
                role,
                None,
            )
            .await
        }
    };

    // Not before approval; not by the requester; not by another holder of the permission
    // when the DPO approves.
    let (status, body) = call(Role::Supervisor, "reveal").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("unmask_pending")),
        "{body}"
    );
    let (status, body) = call(Role::Supervisor, "approve").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("self_approval")),
        "{body}"
    );
    let (status, body) = call(Role::CrisisDirector, "approve").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("approver_required")),
        "{body}"
    );

    // The DPO sees it pending, approves it; the approver never gets the value.
    let (status, list) = h
        .call(Method::GET, "/api/v1/unmask/requests", Role::Dpo, None)
        .await;
    assert_eq!(status, 200, "{list}");
    let mine = &list["requests"][0];
    assert_eq!(mine["id"], rid, "{list}");
    assert_eq!(mine["status"], "pending");
    assert_eq!(mine["can_approve"], true);
    assert_eq!(mine["justification"], WHY);
    let (status, body) = call(Role::Dpo, "approve").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    assert!(!body.to_string().contains(&clear), "{body}");
    let (status, body) = call(Role::Dpo, "reveal").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unmask_request_not_found")),
        "{body}"
    );
    let (status, body) = call(Role::Dpo, "approve").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("unmask_request_closed")),
        "{body}"
    );

    // The requester collects it, once.
    let (status, body) = call(Role::Supervisor, "reveal").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], clear.as_str());
    let (status, body) = call(Role::Supervisor, "reveal").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("unmask_request_closed")),
        "{body}"
    );

    // Every step audited, the value never.
    let requested = audited(&h, "personal.unmask");
    assert!(
        requested
            .iter()
            .any(|r| r.detail.contains("\"stage\":\"requested\"")),
        "{requested:?}"
    );
    let approvals = audited(&h, "personal.unmask.approve");
    assert!(
        approvals
            .iter()
            .any(|r| r.outcome == beffroi_core::AuditOutcome::Ok
                && r.actor.ends_with(&tok(Role::Dpo))),
        "{approvals:?}"
    );
    assert!(
        approvals
            .iter()
            .any(|r| r.outcome == beffroi_core::AuditOutcome::Denied
                && r.detail.contains("self_approval")),
        "{approvals:?}"
    );
    let reveals = audited(&h, "personal.unmask.reveal");
    assert!(
        reveals
            .iter()
            .any(|r| r.outcome == beffroi_core::AuditOutcome::Ok
                && r.detail.contains(&tok(Role::Dpo))),
        "{reveals:?}"
    );
    for r in h.audit.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        assert!(
            !r.detail.contains(&clear) && !r.detail.contains(BADGE),
            "{r:?}"
        );
    }

    // A request not approved in time expires: refused, never revealed.
    let (status, body) = h.unmask(id, &badge).await;
    assert_eq!(status, 202, "{body}");
    let rid = body["request_id"].as_u64().expect("request id");
    h.clock.advance(beffroi_core::Duration::from_mins(61));
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/unmask/requests/{rid}/approve"),
            Role::Dpo,
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("unmask_request_expired")),
        "{body}"
    );
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/unmask/requests/{rid}/reveal"),
            Role::Supervisor,
            None,
        )
        .await;
    assert_eq!(status, 410, "{body}");
    assert!(body.get("value").is_none(), "{body}");
}
