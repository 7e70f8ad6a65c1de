//! Privacy through the API, on a real store and a real engine:
//! - purpose-bound unmasking: 403 + audit without the role or without purpose and
//!   justification, 200 + the value once + audit with them, 404 for a pseudonym outside the
//!   incident, 410 once the key epoch is gone;
//! - people counts: a count below the minimum group size (7) fed through the pipeline
//!   never appears as a people count in the device pages, lists, crowd, events, incidents
//!   and the live stream, while a large one (240) does.

use beffroi_engine::store::prelude::*;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, header};
use beffroi_api::access::{Grant, Role, Scope};
use beffroi_api::auth::{ApiToken, Auth, AuthPolicy, token_digest};
use beffroi_api::{AppState, WebSecurity};
use beffroi_core::{
    AuditOutcome, AuditRecord, AuditSink, DedupKey, DeviceIdx, Identifier, IncidentChange,
    IncidentId, Point, Severity, SimClock, Status, Territory, Timestamp, Trust, Value,
};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, Engine, EngineConfig};
use beffroi_engine::store::{StoredObservation, WriteBatch};
use beffroi_privacy::{EpochKey, Pseudonymiser};
use beffroi_territory::SourceFile;
use futures::StreamExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

const NOW: i64 = 1_795_694_400_000;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(Default)]
struct Recorder(Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorder {
    fn record(&self, r: AuditRecord) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

impl Recorder {
    fn take(&self) -> Vec<AuditRecord> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

struct Harness {
    app: Router,
    t: Arc<Territory>,
    audit: Arc<Recorder>,
    db: std::path::PathBuf,
    engine: Engine,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: u16,
    body: Json,
    headers: HeaderMap,
}

fn tok(role: Role) -> String {
    format!("tok-{}", role.as_str())
}

async fn harness(rules: &str, seed: WriteBatch, keys: Option<Pseudonymiser>) -> Harness {
    let t = Arc::new(
        beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory"),
    );
    let rules =
        Arc::new(beffroi_rules::parse(&SourceFile::new("rules.toml", rules), &t).expect("rules"));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("privacy.db");
    let (mut store, reader) = beffroi_store::open(&db, Arc::clone(&t)).expect("store");
    store.write(&seed).expect("seed");
    let clock = SimClock::new(Timestamp(NOW));
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
    let mut state = AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth))
        .with_audit(Arc::clone(&audit) as Arc<dyn AuditSink>)
        .with_privacy(Arc::new(beffroi_core::PrivacyPolicy::unconfigured()));
    if let Some(k) = keys {
        state = state.with_pseudonymiser(Arc::new(k));
    }
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    let app = beffroi_api::harden(beffroi_api::router(state), WebSecurity::default());
    Harness {
        app,
        t,
        audit,
        db,
        engine,
        _dir: dir,
    }
}

impl Harness {
    async fn call(&self, method: Method, uri: &str, role: Role, body: Option<Json>) -> Answer {
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
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("body");
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Json::Null),
            headers,
        }
    }

    async fn get(&self, uri: &str) -> Json {
        let a = self.call(Method::GET, uri, Role::Administrator, None).await;
        assert_eq!(a.status, 200, "GET {uri}: {}", a.body);
        a.body
    }

    fn device_of_kind(&self, kind: &str, skip: usize) -> DeviceIdx {
        let k = self.t.kind_id(kind).expect("kind");
        (0..self.t.devices.len())
            .map(|i| DeviceIdx(i as u32))
            .filter(|d| self.t.device(*d).kind == k)
            .nth(skip)
            .expect("device of kind")
    }
}

// ---------------------------------------------------------------------------------------
// Unmasking

const PLATE: &str = "AB-123-CD";
const BADGE: &str = "BADGE-004711";

fn incident(t: &Territory, id: u64, d: DeviceIdx, evidence: &str) -> IncidentChange {
    let dev = t.device(d);
    let site = t.site(dev.site);
    IncidentChange {
        incident: beffroi_core::Incident {
            id: IncidentId(id),
            key: DedupKey(format!("test-{id}@device:{}", dev.id).into()),
            rule: "test".into(),
            category: "intrusion".into(),
            severity: Severity::Major,
            status: Status::New,
            title: beffroi_core::safe_format!("Porte forcée {id}"),
            commune: site.commune,
            site: dev.site,
            device: Some(d),
            position: Point::new(dev.position.lon, dev.position.lat),
            opened_at: Timestamp(NOW - 600_000),
            updated_at: Timestamp(NOW - 600_000),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: None,
            condition_active: true,
            alarm_count: 1,
            evidence: beffroi_core::SafeText::redacting(evidence),
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

fn insert_identity(db: &std::path::Path, s: &beffroi_privacy::Sealed) {
    let c = rusqlite::Connection::open(db).expect("open db");
    c.execute(
        "INSERT INTO identities (pseudonym, identifier, epoch, sealed, first_seen, last_seen) \
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

fn key(epoch: u32) -> EpochKey {
    EpochKey::new(epoch, &[epoch as u8; 32])
}

struct Unmask {
    h: Harness,
    plate: String,
    badge: String,
    old: String,
    stranger: String,
}

/// Incident 1 carries a plate and a pseudonym of a destroyed epoch; incident 2 the badge of
/// the reading that raised it. Keys in force: epoch 2 only.
async fn unmask_harness() -> Unmask {
    let t = Arc::new(
        beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory"),
    );
    let current = Pseudonymiser::new(vec![key(2)]).expect("keys");
    let destroyed = Pseudonymiser::new(vec![key(1)]).expect("keys");
    let plate = current.seal(Identifier::LicencePlate, PLATE);
    let badge = current.seal(Identifier::Badge, BADGE);
    let old = destroyed.seal(Identifier::LicencePlate, "EF-456-GH");
    let stranger = current.seal(Identifier::LicencePlate, "ZZ-999-ZZ");
    let reader_kind = t.kind_id("access_reader").expect("access_reader");
    let readers: Vec<DeviceIdx> = (0..t.devices.len())
        .map(|i| DeviceIdx(i as u32))
        .filter(|d| t.device(*d).kind == reader_kind)
        .take(2)
        .collect();
    let badge_field = t.kind(reader_kind).field("badge").expect("badge field");
    let seed = WriteBatch {
        incidents: vec![
            // Recorded from the readings that raised them (what the engine does).
            {
                let mut i = incident(
                    &t,
                    1,
                    readers[0],
                    &format!(
                        "véhicule {} puis {} vu sur place",
                        plate.pseudonym.0, old.pseudonym.0
                    ),
                );
                i.pseudonyms = vec![
                    plate.pseudonym.0.as_str().into(),
                    old.pseudonym.0.as_str().into(),
                ];
                i
            },
            {
                let mut i = incident(&t, 2, readers[1], "door_forced = true");
                i.pseudonyms = vec![badge.pseudonym.0.as_str().into()];
                i
            },
            // Resolved before the badge was read (never closed): the read is not its own.
            {
                let mut i = incident(&t, 3, readers[1], "door_forced = true");
                i.incident.opened_at = Timestamp(NOW - 2_000_000);
                i.incident.resolved_at = Some(Timestamp(NOW - 1_000_000));
                i.incident.status = Status::Resolved;
                i.incident.condition_active = false;
                i
            },
        ],
        observations: vec![StoredObservation {
            device: readers[1],
            field: badge_field,
            value: Value::Text(badge.pseudonym.0.as_str().into()),
            time: Timestamp(NOW - 900_000),
            received: Timestamp(NOW - 900_000),
            trust: Trust::Unauthenticated,
            quarantined: false,
        }],
        ..Default::default()
    };
    let h = harness("", seed, Some(current)).await;
    for s in [&plate, &badge, &old, &stranger] {
        insert_identity(&h.db, s);
    }
    Unmask {
        h,
        plate: plate.pseudonym.0,
        badge: badge.pseudonym.0,
        old: old.pseudonym.0,
        stranger: stranger.pseudonym.0,
    }
}

const WHY: &str = "Plainte déposée, réquisition OPJ n° 2026/1142";

fn unmask_records(a: &[AuditRecord]) -> Vec<&AuditRecord> {
    a.iter()
        .filter(|r| r.action.ends_with("personal.unmask"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasking_is_purpose_bound_and_audited() {
    let u = unmask_harness().await;
    let h = &u.h;
    let body = |p: &str, purpose: Option<&str>, why: Option<&str>| {
        let mut b = json!({"pseudonym": p});
        if let Some(x) = purpose {
            b["purpose"] = json!(x);
        }
        if let Some(x) = why {
            b["justification"] = json!(x);
        }
        Some(b)
    };
    let post = |role, id: u64, b| async move {
        h.call(
            Method::POST,
            &format!("/api/v1/incidents/{id}/unmask"),
            role,
            b,
        )
        .await
    };

    // An operator has no `personal.unmask`: 403, audited as denied.
    let r = post(
        Role::Operator,
        1,
        body(&u.plate, Some("incident_response"), Some(WHY)),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let a = h.audit.take();
    let recs = unmask_records(&a);
    assert_eq!(recs.len(), 1, "{a:?}");
    assert_eq!(recs[0].outcome, AuditOutcome::Denied);
    assert!(
        recs[0].actor.ends_with(&tok(Role::Operator)),
        "{}",
        recs[0].actor
    );

    // A supervisor without purpose: 403 purpose_required, audited with the reason.
    for (purpose, why, reason) in [
        (None, Some(WHY), "purpose"),
        (Some("curiosity"), Some(WHY), "unknown purpose"),
        (Some("incident_response"), None, "justification"),
        (
            Some("incident_response"),
            Some("parce que"),
            "justification",
        ),
    ] {
        let r = post(Role::Supervisor, 1, body(&u.plate, purpose, why)).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "purpose_required");
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        let a = h.audit.take();
        let recs = unmask_records(&a);
        assert_eq!(recs.len(), 1, "{a:?}");
        assert_eq!(recs[0].action, "personal.unmask");
        assert_eq!(recs[0].outcome, AuditOutcome::Denied);
        assert!(recs[0].detail.contains(reason), "{}", recs[0].detail);
        assert!(recs[0].detail.contains(&u.plate), "{}", recs[0].detail);
        assert!(!recs[0].detail.contains(PLATE));
    }

    // With purpose and justification: the value, once, not cached, audited (without it).
    for role in [Role::Supervisor, Role::CrisisDirector, Role::Dpo] {
        let r = post(
            role,
            1,
            body(&u.plate, Some("judicial_requisition"), Some(WHY)),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        // The value as normalised when sealed (`AB123CD`).
        let plain = beffroi_privacy::normalise(Identifier::LicencePlate, PLATE);
        assert_eq!(r.body["value"], plain.as_str());
        assert_eq!(r.body["pseudonym"], u.plate.as_str());
        assert_eq!(r.body["purpose"], "judicial_requisition");
        assert_eq!(r.body["incident_id"], 1);
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        let a = h.audit.take();
        let recs = unmask_records(&a);
        assert_eq!(recs.len(), 1, "{a:?}");
        assert_eq!(recs[0].outcome, AuditOutcome::Ok);
        assert_eq!(recs[0].target.as_deref(), Some("1"));
        for part in [&u.plate, "judicial_requisition", "OPJ"] {
            assert!(recs[0].detail.contains(part), "{}", recs[0].detail);
        }
        assert!(!recs[0].detail.contains(PLATE), "{}", recs[0].detail);
        assert!(!recs[0].detail.contains(&plain), "{}", recs[0].detail);
    }

    // A pseudonym seen by the incident's device during the incident.
    let r = post(
        Role::Supervisor,
        2,
        body(&u.badge, Some("incident_response"), Some(WHY)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["value"],
        beffroi_privacy::normalise(Identifier::Badge, BADGE).as_str()
    );
    assert_eq!(unmask_records(&h.audit.take())[0].outcome, AuditOutcome::Ok);

    // Not in that incident: 404, even for a pseudonym that exists elsewhere.
    for (id, p) in [(2, &u.plate), (1, &u.badge), (1, &u.stranger)] {
        let r = post(
            Role::Supervisor,
            id,
            body(p, Some("incident_response"), Some(WHY)),
        )
        .await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "not_in_incident");
        let a = h.audit.take();
        assert_eq!(unmask_records(&a)[0].outcome, AuditOutcome::Failed);
    }

    // Its key epoch destroyed: 410, linked no more.
    let r = post(
        Role::Dpo,
        1,
        body(&u.old, Some("subject_request"), Some(WHY)),
    )
    .await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "key_destroyed");
    assert!(!r.body.to_string().contains("EF-456-GH"));
    assert!(!r.body.to_string().contains("EF456GH"));
}

// ---------------------------------------------------------------------------------------
// People counts

const CROWD_RULES: &str = r#"
[[rule]]
id = "crowd-test"
title = "Affluence {value} personnes"
category = "crowd"
severity = "major"
key = "device"
auto_resolve = true
kind = "people_counter"
[rule.threshold]
field = "occupancy"
above = 5.0
"#;

/// Every place a people count `n` could show in a JSON body: a number equal to it, or a
/// text with it as a whole token.
fn mentions(v: &Json, n: f64, path: &str, found: &mut Vec<String>) {
    match v {
        Json::Number(x) if x.as_f64() == Some(n) => found.push(path.to_string()),
        Json::String(s) => {
            let token = format!("{n}");
            if s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':'))
                .any(|t| t == token)
            {
                found.push(format!("{path} = {s:?}"));
            }
        }
        Json::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                mentions(x, n, &format!("{path}[{i}]"), found);
            }
        }
        Json::Object(o) => {
            for (k, x) in o {
                mentions(x, n, &format!("{path}.{k}"), found);
            }
        }
        _ => {}
    }
}

fn assert_never(v: &Json, n: f64, what: &str) {
    let mut found = Vec::new();
    mentions(v, n, what, &mut found);
    assert!(found.is_empty(), "{n} shown in {what}: {found:#?}");
}

fn assert_shown(v: &Json, n: f64, what: &str) {
    let mut found = Vec::new();
    mentions(v, n, what, &mut found);
    assert!(!found.is_empty(), "{n} not shown in {what}: {v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_below_the_minimum_group_never_leave_the_server() {
    let h = harness(CROWD_RULES, WriteBatch::default(), None).await;
    let small = h.device_of_kind("people_counter", 0);
    // A counter in another zone than the small one, so that 7 is not summed away.
    let zone_of = |d: DeviceIdx| {
        let s = h.t.site(h.t.device(d).site);
        (s.zone, s.commune)
    };
    let large = (1..)
        .map(|i| h.device_of_kind("people_counter", i))
        .find(|d| zone_of(*d) != zone_of(small))
        .expect("a counter in another zone");
    let small_id = h.t.device(small).id.to_string();
    let large_id = h.t.device(large).id.to_string();
    let pos = h.t.device(small).position;

    // An event around the small counter only.
    let (lo, la) = (pos.lon, pos.lat);
    let r = h
        .call(
            Method::POST,
            "/api/v1/events",
            Role::Administrator,
            Some(json!({
                "id": "petit", "name": "Petit", "starts_at": "2026-11-27T00:00:00Z",
                "ends_at": "2026-11-28T00:00:00Z",
                "perimeter": {"type": "Polygon", "coordinates": [[
                    [lo - 0.0001, la - 0.0001], [lo + 0.0001, la - 0.0001],
                    [lo + 0.0001, la + 0.0001], [lo - 0.0001, la + 0.0001], [lo - 0.0001, la - 0.0001]
                ]]},
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // The live stream, opened before the counts arrive.
    let req = Request::builder()
        .uri("/api/v1/stream")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", tok(Role::Administrator)),
        )
        .body(Body::empty())
        .expect("request");
    let sse = h.app.clone().oneshot(req).await.expect("stream");
    assert_eq!(sse.status(), 200);
    let mut sse = sse.into_body().into_data_stream();

    for (d, n) in [(&small_id, 7.0), (&large_id, 240.0)] {
        let r = h
            .call(
                Method::POST,
                &format!("/api/v1/devices/{d}/observations?format=json"),
                Role::Administrator,
                Some(json!({"values": {"occupancy": n}, "time": NOW - 60_000})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["accepted"], 1, "{}", r.body);
    }

    // The live stream: both incidents, the small one suppressed.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(seen.contains("Affluence < 10 personnes") && seen.contains("Affluence 240 personnes")) {
        let chunk = tokio::time::timeout_at(deadline, sse.next())
            .await
            .expect("live events in time")
            .expect("stream open")
            .expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    for line in seen.lines().filter_map(|l| l.strip_prefix("data:")) {
        let v: Json = serde_json::from_str(line.trim()).expect("json data");
        assert_never(&v, 7.0, "sse");
    }
    assert!(seen.contains("Affluence < 10 personnes"), "{seen}");
    assert!(seen.contains("Affluence 240 personnes"), "{seen}");

    // Device pages: the small count null and flagged, the large one shown.
    let d = h.get(&format!("/api/v1/devices/{small_id}")).await;
    assert_never(&d, 7.0, "device detail");
    let recent = d["recent"].as_array().expect("recent");
    assert_eq!(recent.len(), 1, "{d:#}");
    assert_eq!(recent[0]["value"], Json::Null);
    assert_eq!(recent[0]["suppressed"], true);
    let d = h.get(&format!("/api/v1/devices/{large_id}")).await;
    assert_eq!(d["recent"][0]["value"], 240.0);
    assert_eq!(d["recent"][0]["suppressed"], false);
    // Bucketed: the time is the bucket's start (5 min).
    let t =
        beffroi_wire::parse_rfc3339(d["recent"][0]["time"].as_str().expect("time")).expect("time");
    assert_eq!(t.0 % 300_000, 0);

    // Lists, crowd, events, incidents.
    assert_never(&h.get("/api/v1/devices").await, 7.0, "device list");
    let crowd = h
        .get("/api/v1/crowd?from=2026-11-26T00:00:00Z&to=2026-11-28T00:00:00Z")
        .await;
    assert_never(&crowd, 7.0, "crowd");
    assert_shown(&crowd, 240.0, "crowd");
    let zones = crowd["zones"].as_array().expect("zones");
    assert!(
        zones
            .iter()
            .flat_map(|z| z["buckets"].as_array().into_iter().flatten())
            .any(|b| b["suppressed"] == true && b["value"] == Json::Null),
        "{crowd:#}"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let event = loop {
        let e = h.get("/api/v1/events/petit").await;
        if e["suppressed"] == true || tokio::time::Instant::now() > deadline {
            break e;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(event["suppressed"], true, "{event:#}");
    assert_eq!(event["occupancy"], Json::Null);
    assert_never(&h.get("/api/v1/events").await, 7.0, "events");
    let incidents = h.get("/api/v1/incidents").await;
    assert_never(&incidents, 7.0, "incidents");
    assert_shown(&incidents, 240.0, "incidents");
    for i in incidents.as_array().expect("list") {
        let detail = h.get(&format!("/api/v1/incidents/{}", i["id"])).await;
        assert_never(&detail, 7.0, "incident detail");
    }
    let small_incident = incidents
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["device"] == small_id.as_str())
        .expect("the small counter's incident");
    assert_eq!(small_incident["title"], "Affluence < 10 personnes");
    assert!(
        small_incident["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("< 10")),
        "{small_incident}"
    );
    drop(h.engine);
}

/// The window of an incident's observations ends when it is resolved: a badge read by its
/// device afterwards is not its own, even while nobody has closed it. And the volume is
/// bounded: the 21st unmasking in 24 hours is refused and recorded for the DPO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasking_is_bounded_in_time_and_in_volume() {
    let u = unmask_harness().await;
    let h = &u.h;
    let post = |role, id: u64, p: &str| {
        let b = json!({"pseudonym": p, "purpose": "incident_response", "justification": WHY});
        async move {
            h.call(
                Method::POST,
                &format!("/api/v1/incidents/{id}/unmask"),
                role,
                Some(b),
            )
            .await
        }
    };
    let r = post(Role::Supervisor, 3, &u.badge).await;
    assert_eq!(r.status, 404, "read after the resolution: {}", r.body);
    assert_eq!(r.body["error"]["code"], "not_in_incident");
    let r = post(Role::Supervisor, 2, &u.badge).await;
    assert_eq!(r.status, 200, "still open: {}", r.body);
    h.audit.take();

    for n in 0..beffroi_api::unmask::DAILY_UNMASKS {
        let r = post(Role::Dpo, 1, &u.plate).await;
        assert_eq!(r.status, 200, "unmasking {n}: {}", r.body);
    }
    let r = post(Role::Dpo, 1, &u.plate).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "unmask_limit");
    assert!(r.body.get("value").is_none());
    let a = h.audit.take();
    let alert = a
        .iter()
        .find(|r| r.action == "personal.unmask.limit")
        .expect("the limit is recorded for the DPO");
    assert_eq!(alert.outcome, AuditOutcome::Denied);
    assert!(alert.actor.ends_with(&tok(Role::Dpo)), "{}", alert.actor);
    // Another caller has a budget of its own.
    let r = post(Role::Supervisor, 1, &u.plate).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
