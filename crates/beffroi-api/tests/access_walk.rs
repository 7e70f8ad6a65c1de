//! The authorisation walk: every route of the API × every role × {a caller scoped to commune
//! A acting on an object of A, the same caller on an object of commune B, a territory-wide
//! caller on an object of B}, each answer checked against `access_expectations.txt`, a data
//! file written from the specification. A route added to the table without an expectation
//! line, or an expectation without its route, fails the walk; so does a route added to the
//! router outside the table.
//!
//! Also here: lists cut to the caller's communes, cyber incidents, CSRF on cookie sessions,
//! login throttling and lock-out on a simulated clock, security headers, the audit hook.

use beffroi_engine::store::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, header};
use beffroi_api::access::{Grant, Role, Scope};
use beffroi_api::auth::{ApiToken, Auth, AuthPolicy, token_digest};
use beffroi_api::routes::{Access, ROUTES};
use beffroi_api::{AppState, WebSecurity};
use beffroi_core::{
    AuditOutcome, AuditRecord, AuditSink, CommuneIdx, DedupKey, DeviceIdx, Duration,
    IncidentChange, IncidentId, Point, Severity, SimClock, Status, Territory, Timestamp,
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
const ADMIN_PASSWORD: &str = "walk-admin-password";
const TOTP_SECRET: &[u8] = b"12345678901234567890";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ---------------------------------------------------------------------------------------
// The expectations file.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Public,
    Authenticated,
    /// A TAXII partner's credential from `taxii.toml`: no console credential opens it.
    Partner,
    Perm(String, String),
}

struct Expectations {
    roles: BTreeMap<String, BTreeSet<String>>,
    routes: Vec<(String, String, Rule)>,
}

fn expectations() -> Expectations {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/access_expectations.txt"),
    )
    .expect("read the expectations");
    let mut e = Expectations {
        roles: BTreeMap::new(),
        routes: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("role ") {
            let (role, perms) = rest.split_once(':').expect("role line");
            e.roles.insert(
                role.trim().to_string(),
                perms.split_whitespace().map(String::from).collect(),
            );
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let rule = match w.get(2..) {
            Some(["public"]) => Rule::Public,
            Some(["authenticated"]) => Rule::Authenticated,
            Some(["partner"]) => Rule::Partner,
            Some([p, m]) => Rule::Perm(p.to_string(), m.to_string()),
            _ => panic!("expectations line {}: `{line}`", n + 1),
        };
        e.routes.push((w[0].to_string(), w[1].to_string(), rule));
    }
    e
}

// ---------------------------------------------------------------------------------------
// The server under test.

/// Records audit records for the assertions.
#[derive(Default)]
struct Recorder(Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorder {
    fn record(&self, r: AuditRecord) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

/// The recorded entries read back (the DPO's access log), newest first.
impl beffroi_core::AuditReader for Recorder {
    fn read(
        &self,
        q: &beffroi_core::AuditQuery,
    ) -> Result<Vec<beffroi_core::AuditEntry>, beffroi_core::AuditReadError> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(all
            .into_iter()
            .enumerate()
            .rev()
            .map(|(i, record)| beffroi_core::AuditEntry {
                seq: i as u64 + 1,
                node: None,
                cursor: i as u64 + 1,
                record,
            })
            .filter(|e| {
                q.action_prefixes.is_empty()
                    || q.action_prefixes
                        .iter()
                        .any(|p| e.record.action.starts_with(p.as_str()))
            })
            .filter(|e| q.since_ms.is_none_or(|s| e.record.at_ms >= s))
            .filter(|e| q.before.is_none_or(|b| e.cursor < b))
            .take(q.limit)
            .collect())
    }
}

struct Harness {
    app: Router,
    t: Arc<Territory>,
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

fn incident(t: &Territory, id: u64, commune: &str, category: &str) -> IncidentChange {
    let d = first_device_in(t, commune);
    let dev = t.device(d);
    let site = t.site(dev.site);
    IncidentChange {
        incident: beffroi_core::Incident {
            id: IncidentId(id),
            key: DedupKey(format!("walk-{id}@device:{}", dev.id).into()),
            rule: "walk".into(),
            category: category.into(),
            severity: Severity::Major,
            status: Status::New,
            title: beffroi_core::safe_format!("walk {id}"),
            commune: site.commune,
            site: dev.site,
            device: Some(d),
            position: Point::new(dev.position.lon, dev.position.lat),
            opened_at: Timestamp(1_700_000_000_000),
            updated_at: Timestamp(1_700_000_000_000),
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

fn token(role: Role, territory: bool) -> String {
    format!(
        "tok-{}-{}",
        role.as_str(),
        if territory { "t" } else { "a" }
    )
}

async fn harness() -> Harness {
    let t = Arc::new(
        beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory"),
    );
    let rules = Arc::new(
        beffroi_rules::parse(&SourceFile::new("rules.toml", ""), &t).expect("empty rules"),
    );
    let units = beffroi_engine::operations::parse_units(
        &SourceFile::read(&root().join("demo/units.toml")).expect("units"),
        &t,
    )
    .expect("demo units");
    let roles = beffroi_engine::operations::parse_crisis(
        &SourceFile::read(&root().join("demo/crisis.toml")).expect("crisis roles"),
    )
    .expect("demo crisis roles");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, reader) =
        beffroi_store::open(&dir.path().join("walk.db"), Arc::clone(&t)).expect("store");
    store
        .write(&WriteBatch {
            incidents: vec![
                incident(&t, 1, A, "flood"),
                incident(&t, 2, B, "flood"),
                incident(&t, 3, A, "cyber"),
            ],
            ..Default::default()
        })
        .expect("seed incidents");
    let clock = SimClock::new(Timestamp(1_700_000_000_000));
    let engine = runner::start_with_events(
        Arc::clone(&t),
        rules,
        vec![],
        vec![],
        Box::new(store),
        Arc::new(clock.clone()),
        Arc::new(Metrics::new()),
        EngineConfig {
            operations: Operations {
                units,
                roles,
                ..Default::default()
            },
            ..EngineConfig::default()
        },
    )
    .await
    .expect("engine");

    let a = t.commune_id(A).expect("A");
    let mut auth = Auth::new(AuthPolicy::default(), Arc::new(clock.clone()));
    for role in Role::ALL {
        for territory in [false, true] {
            let scope = if territory {
                Scope::Territory
            } else {
                Scope::communes(vec![a])
            };
            auth.add_token(ApiToken {
                name: token(role, territory),
                digest: token_digest(&token(role, territory)),
                grants: vec![Grant { role, scope }],
            });
        }
    }
    auth.add_user(
        "admin",
        ADMIN_PASSWORD,
        vec![Grant {
            role: Role::Administrator,
            scope: Scope::Territory,
        }],
    )
    .expect("hash");
    auth.add_user(
        "op-a",
        ADMIN_PASSWORD,
        vec![Grant {
            role: Role::Operator,
            scope: Scope::communes(vec![a]),
        }],
    )
    .expect("hash");
    auth.add_account(beffroi_api::auth::Account {
        name: "op-totp".into(),
        password_hash: beffroi_api::auth::hash_password(ADMIN_PASSWORD).expect("hash"),
        grants: vec![Grant {
            role: Role::Operator,
            scope: Scope::communes(vec![a]),
        }],
        totp: Some(TOTP_SECRET.to_vec()),
    });
    let audit = Arc::new(Recorder::default());
    let state = AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth))
        .with_audit(Arc::clone(&audit) as Arc<dyn AuditSink>)
        .with_audit_reader(Arc::clone(&audit) as Arc<dyn beffroi_core::AuditReader>)
        .with_taxii(Some(Arc::new(
            beffroi_api::taxii::parse_policy(
                &SourceFile::new(
                    "taxii.toml",
                    format!(
                        "[[root]]\nname = \"walk\"\nmax_tlp = \"red\"\n[[root.reader]]\nname = \"partner\"\ntoken_sha256 = \"{}\"\n",
                        hex::encode(beffroi_api::taxii::token_digest("partner-token"))
                    ),
                ),
                &t,
            )
            .expect("a TAXII policy"),
        )))
        .with_cap(Some(Arc::new(
            beffroi_api::cap::parse_policy(
                &SourceFile::new(
                    "cap.toml",
                    "sender = \"walk@ville.example\"\nsender_name = \"Ville\"\n[[publish]]\ncategory = \"flood\"\nmin_severity = \"major\"\ncap_category = [\"Met\"]\nevent = \"Crue\"\n",
                ),
                &["flood"],
            )
            .expect("a CAP policy"),
        )))
        .with_web(WebSecurity {
            secure_cookies: true,
            hsts: true,
            trusted_proxies: Arc::from([]),
            cluster_peers: Default::default(),
        });
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    let app = beffroi_api::harden(
        beffroi_api::router(state),
        WebSecurity {
            secure_cookies: true,
            hsts: true,
            trusted_proxies: Arc::from([]),
            cluster_peers: Default::default(),
        },
    );
    let h = Harness {
        app,
        t,
        clock,
        audit,
        _engine: engine,
        _dir: dir,
    };
    // One crisis in A (id 1), one in B (id 2).
    for c in [A, B] {
        let r = h
            .call(
                Method::POST,
                "/api/v1/crises",
                Auth_::Bearer(&token(Role::Administrator, true)),
                Some(json!({"kind": "flood", "title": format!("crue {c}"), "communes": [c]})),
            )
            .await;
        assert_eq!(r.status, 200, "open a crisis in {c}: {}", r.body);
    }
    h
}

enum Auth_<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str, Option<&'a str>),
}

struct Answer {
    status: u16,
    body: Value,
    /// The body as sent, for byte-for-byte comparisons.
    raw: Vec<u8>,
    headers: HeaderMap,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Auth_<'_>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        match auth {
            Auth_::None => {}
            Auth_::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Auth_::Cookie(c, csrf) => {
                req = req.header(header::COOKIE, format!("theme=dark; beffroi_session={c}"));
                if let Some(x) = csrf {
                    req = req.header("x-csrf-token", x);
                }
            }
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
        let headers = resp.headers().clone();
        let streaming = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let (body, raw) = if streaming {
            (Value::Null, Vec::new())
        } else {
            let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .expect("body");
            (
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                bytes.to_vec(),
            )
        };
        Answer {
            status,
            body,
            raw,
            headers,
        }
    }

    /// The id an `{id}` stands for in a context: the object of `commune`.
    fn object_id(&self, path: &str, commune: &str) -> String {
        let t = &self.t;
        if path == "/ngsi-ld/v1/jsonldContexts/{id}" {
            return "beffroi.jsonld".into();
        }
        if path == "/ngsi-ld/v1/entities/{id}" {
            // A device of commune A: every caller with `device.read` on A's or the whole
            // territory reads it (the list route's cut, not an object's).
            return format!(
                "urn:ngsi-ld:Device:{}:{}",
                t.id,
                t.device(first_device_in(t, A)).id
            );
        }
        if path.starts_with("/taxii2/") {
            // The walk root's collection (any commune: partners are not scoped to one).
            return beffroi_taxii::StixId::collection_uuid(&[&t.id, "walk"]);
        }
        if path == "/api/v1/devices/{id}/notice" {
            // Only a device observing public space has a notice (public route: any will do).
            return t
                .devices
                .iter()
                .find(|d| t.kind(d.kind).public_space)
                .map(|d| d.id.to_string())
                .expect("a public-space device");
        }
        // Incidents 1 (commune A) and 2 (commune B) are situations 1 and 2, and public alerts
        // (floods are published): public, whoever asks.
        if path.starts_with("/api/v1/incidents/")
            || path.starts_with("/api/v1/situations/")
            || path.starts_with("/api/v1/cap/alerts/")
        {
            return if commune == A { "1" } else { "2" }.into();
        }
        if path.starts_with("/api/v1/devices/") {
            return t.device(first_device_in(t, commune)).id.to_string();
        }
        if path.starts_with("/api/v1/units/") {
            return if commune == A {
                "pm-dijon-1"
            } else {
                "pm-chenove-1"
            }
            .into();
        }
        if path.starts_with("/api/v1/crises/") {
            return if commune == A { "1" } else { "2" }.into();
        }
        "no-such-event".into()
    }
}

/// A TAXII route's other parameters: the walk's root and an object id.
fn taxii_path(path: &str) -> String {
    path.replace("{root}", "walk").replace(
        "{object}",
        "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    )
}

/// A request body and query that the handler accepts (or refuses on its own grounds).
fn body_for(method: &Method, path: &str, commune: &str) -> (Option<Value>, &'static str) {
    if *method != Method::POST {
        return match path {
            "/api/v1/map/clusters" => (None, "?z=11&bbox=4.9,47.25,5.15,47.4"),
            "/api/v1/crises/{id}/report" => (None, "?lang=en"),
            _ => (None, ""),
        };
    }
    let b = match path {
        "/api/v1/auth/logout" => return (None, ""),
        "/api/v1/incidents/{id}/actions" => json!({"action": "comment", "text": "walk"}),
        "/api/v1/situations/{id}/actions" => json!({"action": "comment", "text": "walk"}),
        "/api/v1/units/{id}/status" => json!({"status": "available"}),
        "/api/v1/handover/notes" => json!({"text": "walk"}),
        "/api/v1/incidents/{id}/shelve" => json!({"reason": "walk", "minutes": 30}),
        "/api/v1/crises" => json!({"kind": "flood", "title": "walk", "communes": [commune]}),
        "/api/v1/crises/{id}/log" => json!({"text": "walk"}),
        "/api/v1/crises/{id}/level" => json!({"level": 2}),
        "/api/v1/crises/{id}/roles" => json!({"role": "dos", "holder": "walk"}),
        "/api/v1/crises/{id}/close" => json!({"summary": "walk"}),
        // Accepted by the guard; the handler answers 404 `not_in_incident` on its own.
        "/api/v1/incidents/{id}/unmask" => json!({
            "pseudonym": "plate:1:aaaaaaaaaaaaaaaaaaaa",
            "purpose": "incident_response",
            "justification": "walk of the access rules",
        }),
        _ => json!({}),
    };
    (Some(b), "")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// 401: the console's credentials are not a partner's.
    Refused,
    Allowed,
    Forbidden,
    Hidden,
}

#[derive(Clone, Copy, Debug)]
enum Ctx {
    Own,
    Other,
    Territory,
}

fn expected(e: &Expectations, rule: &Rule, role: &str, ctx: Ctx) -> Expect {
    match rule {
        Rule::Public | Rule::Authenticated => Expect::Allowed,
        Rule::Partner => Expect::Refused,
        Rule::Perm(p, mode) => {
            if !e.roles[role].contains(p) {
                return Expect::Forbidden;
            }
            match (mode.as_str(), ctx) {
                ("global" | "filtered" | "caller", _) => Expect::Allowed,
                ("territory", Ctx::Territory) => Expect::Allowed,
                ("territory", _) => Expect::Forbidden,
                ("object", Ctx::Other) => Expect::Hidden,
                ("object", _) => Expect::Allowed,
                ("body", Ctx::Other) => Expect::Forbidden,
                ("body", _) => Expect::Allowed,
                (m, _) => panic!("unknown scope mode `{m}` in the expectations"),
            }
        }
    }
}

/// The codes of an `{id}` object that does not exist, or is out of the caller's scope (the
/// same answer): `not_found` for incidents and devices, the kind's own code for units and
/// crises.
fn hidden_code(code: &str) -> bool {
    matches!(code, "not_found" | "unit_not_found" | "crisis_not_found")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_role_every_scope() {
    let e = expectations();
    // The table and the expectations name the same routes.
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let expected_routes: BTreeSet<(String, String)> = e
        .routes
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(
        table.difference(&expected_routes).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes without an expectation line"
    );
    assert_eq!(
        expected_routes.difference(&table).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "expectations without a route"
    );
    assert_eq!(ROUTES.len(), e.routes.len(), "a route is declared twice");
    // Every role of the code is in the expectations, and no other.
    assert_eq!(
        Role::ALL
            .map(|r| r.as_str().to_string())
            .into_iter()
            .collect::<BTreeSet<_>>(),
        e.roles.keys().cloned().collect::<BTreeSet<_>>()
    );

    let h = harness().await;
    let mut failures = Vec::new();
    let mut cells = 0;
    for (method, path, rule) in &e.routes {
        let method: Method = method.parse().expect("method");
        // Without credentials: 401 unless public.
        if *rule != Rule::Public {
            let uri = taxii_path(&path.replace("{id}", &h.object_id(path, A)));
            let (body, query) = body_for(&method, path, A);
            let r = h
                .call(method.clone(), &format!("{uri}{query}"), Auth_::None, body)
                .await;
            if r.status != 401 {
                failures.push(format!("{method} {path} without credentials: {}", r.status));
            }
        }
        for role in Role::ALL {
            for ctx in [Ctx::Own, Ctx::Other, Ctx::Territory] {
                let commune = match ctx {
                    Ctx::Own => A,
                    Ctx::Other | Ctx::Territory => B,
                };
                let tok = token(role, matches!(ctx, Ctx::Territory));
                let uri = taxii_path(&path.replace("{id}", &h.object_id(path, commune)));
                let (body, query) = body_for(&method, path, commune);
                let r = h
                    .call(
                        method.clone(),
                        &format!("{uri}{query}"),
                        Auth_::Bearer(&tok),
                        body,
                    )
                    .await;
                let want = expected(&e, rule, role.as_str(), ctx);
                cells += 1;
                let ok = match want {
                    Expect::Refused => r.status == 401,
                    Expect::Forbidden => r.status == 403,
                    Expect::Hidden => r.status == 404 && hidden_code(r.code()),
                    Expect::Allowed => {
                        let denied = r.status == 401
                            || r.status == 403
                            || (r.status == 404 && hidden_code(r.code()));
                        // A read must succeed (an unknown event is the handler's own 404).
                        let read_ok = method != Method::GET
                            || (200..300).contains(&r.status)
                            || (path == "/api/v1/events/{id}" && r.code() == "event_not_found");
                        !denied && read_ok
                    }
                };
                if !ok {
                    failures.push(format!(
                        "{method} {path} as {} {ctx:?}: expected {want:?}, got {} {}",
                        role.as_str(),
                        r.status,
                        r.body
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cells, ROUTES.len() * Role::ALL.len() * 3);
}

/// The router is built from the table only: no other `.route(`, `.nest(`, `.fallback(` or
/// `.route_service(` anywhere in the crate's sources (a route added beside the table would
/// escape the walk). `router()` merges nothing: the console's router is merged by the binary,
/// and serves no `/api` path.
#[test]
fn no_route_outside_the_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for (n, line) in text.lines().enumerate() {
            for pat in [".route(", ".nest(", ".fallback(", ".route_service("] {
                if line.contains(pat) && !line.trim_start().starts_with("//") {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    // Two loops over ROUTES in lib.rs: the guarded router, and `/metrics` alone for a
    // listener of its own. No route is named outside the table.
    assert!(
        found.len() == 2
            && found
                .iter()
                .all(|l| l.contains("lib.rs") && l.contains("r = r.route(")),
        "only the loops over ROUTES in lib.rs add routes: {found:#?}"
    );
    assert!(found[0].contains("lib.rs") && found[0].contains("r.route(path, method_router)"));
    // And every entry of the table has a rule that says something.
    for r in ROUTES {
        if r.method != Method::GET && !matches!(r.access, Access::Public) {
            assert!(
                !r.action.is_empty(),
                "{} {} has no audit action",
                r.method,
                r.path
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_cut_to_the_callers_communes() {
    let h = harness().await;
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .expect("list")
            .iter()
            .filter_map(|i| i["id"].as_u64())
            .collect()
    };
    let op_a = token(Role::Operator, false);
    let r = h
        .call(Method::GET, "/api/v1/incidents", Auth_::Bearer(&op_a), None)
        .await;
    assert_eq!(
        ids(&r.body),
        vec![1],
        "operator of A: A's incident, no cyber, not B's"
    );
    let analyst = token(Role::SecurityAnalyst, true);
    let mut all = ids(&h
        .call(
            Method::GET,
            "/api/v1/incidents",
            Auth_::Bearer(&analyst),
            None,
        )
        .await
        .body);
    all.sort_unstable();
    assert_eq!(
        all,
        vec![1, 2, 3],
        "territory analyst: everything, cyber included"
    );
    let r = h
        .call(
            Method::GET,
            "/api/v1/incidents/3",
            Auth_::Bearer(&op_a),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "a cyber incident is hidden from an operator");
    let r = h
        .call(
            Method::GET,
            "/api/v1/incidents/3",
            Auth_::Bearer(&token(Role::SecurityAnalyst, false)),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "an analyst of A sees A's cyber incident");

    let devices = h
        .call(Method::GET, "/api/v1/devices", Auth_::Bearer(&op_a), None)
        .await;
    let list = devices.body.as_array().expect("devices");
    assert!(!list.is_empty());
    assert!(list.iter().all(|d| d["commune"] == A), "only A's devices");
    let a = h.t.commune_id(A).expect("A");
    let in_a = (0..h.t.devices.len())
        .filter(|i| h.t.site(h.t.device(DeviceIdx(*i as u32)).site).commune == a)
        .count();
    assert_eq!(list.len(), in_a);

    let sup_a = token(Role::Supervisor, false);
    let kpi = h
        .call(Method::GET, "/api/v1/overview", Auth_::Bearer(&sup_a), None)
        .await;
    assert_eq!(
        kpi.body["devices_total"], in_a,
        "key figures on the caller's communes"
    );
    assert_eq!(
        kpi.body["open_total"], 1,
        "A's open incident only (the cyber one is not counted)"
    );
    assert_eq!(kpi.body["active_crises"], 1);
    let kpi_t = h
        .call(
            Method::GET,
            "/api/v1/overview",
            Auth_::Bearer(&token(Role::Administrator, true)),
            None,
        )
        .await;
    assert_eq!(kpi_t.body["open_total"], 3);

    let crises = h
        .call(Method::GET, "/api/v1/crises", Auth_::Bearer(&op_a), None)
        .await;
    assert_eq!(crises.body.as_array().map(Vec::len), Some(1));
    let units = h
        .call(Method::GET, "/api/v1/units", Auth_::Bearer(&op_a), None)
        .await;
    let units = units.body.as_array().expect("units").clone();
    assert!(units.iter().any(|u| u["id"] == "pm-dijon-1"));
    assert!(!units.iter().any(|u| u["id"] == "pm-chenove-1"));

    // A commune-scoped crisis director may not open a crisis over the whole territory.
    let r = h
        .call(
            Method::POST,
            "/api/v1/crises",
            Auth_::Bearer(&token(Role::CrisisDirector, false)),
            Some(json!({"kind": "snow", "title": "all", "communes": []})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // The operator dispatches within their communes: a unit of B, or an incident of B, is
    // answered as missing; a unit of A to an incident of A is engaged.
    let r = assign(&h, &op_a, 1, "pm-chenove-1").await;
    assert_eq!((r.status, r.code()), (404, "unit_not_found"), "{}", r.body);
    let r = assign(&h, &op_a, 2, "pm-dijon-1").await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.body);
    let r = assign(&h, &op_a, 1, "pm-dijon-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["unit"], "pm-dijon-1", "{}", r.body);
    // …and reads the handover of their communes, not the key figures.
    let r = h
        .call(Method::GET, "/api/v1/handover", Auth_::Bearer(&op_a), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = h
        .call(Method::GET, "/api/v1/overview", Auth_::Bearer(&op_a), None)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    let me = h
        .call(Method::GET, "/api/v1/auth/me", Auth_::Bearer(&op_a), None)
        .await;
    assert_eq!(me.body["roles"], json!(["operator"]));
    assert_eq!(me.body["scope"]["communes"], json!([A]));
    let perms = me.body["permissions"].as_array().expect("permissions");
    assert!(perms.contains(&json!("incident.act")));
    assert!(perms.contains(&json!("incident.assign")));
    assert!(perms.contains(&json!("handover")));
    assert!(!perms.contains(&json!("supervise")));
}

async fn login(h: &Harness, user: &str, password: &str) -> Answer {
    h.call(
        Method::POST,
        "/api/v1/auth/login",
        Auth_::None,
        Some(json!({"username": user, "password": password})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_need_the_csrf_header_bearer_does_not() {
    let h = harness().await;
    let r = login(&h, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    let session = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("beffroi_session="))
        .expect("session cookie")
        .to_string();
    let csrf = r.body["csrf_token"].as_str().expect("csrf").to_string();
    let comment = || Some(json!({"action": "comment", "text": "csrf"}));
    let url = "/api/v1/incidents/1/actions";
    // Reading with the cookie needs no header.
    let me = h
        .call(
            Method::GET,
            "/api/v1/auth/me",
            Auth_::Cookie(&session, None),
            None,
        )
        .await;
    assert_eq!(me.status, 200);
    let r = h
        .call(Method::POST, url, Auth_::Cookie(&session, None), comment())
        .await;
    assert_eq!((r.status, r.code()), (403, "csrf_failed"));
    let r = h
        .call(
            Method::POST,
            url,
            Auth_::Cookie(&session, Some("forged")),
            comment(),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "csrf_failed"));
    let r = h
        .call(
            Method::POST,
            url,
            Auth_::Cookie(&session, Some(&csrf)),
            comment(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = h
        .call(Method::POST, url, Auth_::Bearer(&session), comment())
        .await;
    assert_eq!(r.status, 200, "bearer requests are not subject to CSRF");
    // An API token is not a session cookie.
    let tok = token(Role::Administrator, true);
    let r = h
        .call(
            Method::GET,
            "/api/v1/auth/me",
            Auth_::Cookie(&tok, None),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    // Logout ends the session and clears the cookie.
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Auth_::Cookie(&session, Some(&csrf)),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(
        r.headers[header::SET_COOKIE]
            .to_str()
            .expect("cookie")
            .contains("Max-Age=0")
    );
    let r = h
        .call(
            Method::GET,
            "/api/v1/auth/me",
            Auth_::Cookie(&session, None),
            None,
        )
        .await;
    assert_eq!(r.status, 401);

    // The audit log saw the login, the denials and the state changes, with their outcome.
    let records = h.audit.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let has = |action: &str, outcome: AuditOutcome| {
        records
            .iter()
            .any(|r| r.action == action && r.outcome == outcome && r.actor == "admin")
    };
    assert!(has("auth.login", AuditOutcome::Ok));
    assert!(has("access.incident.action", AuditOutcome::Denied));
    assert!(has("incident.action", AuditOutcome::Ok));
    assert!(has("auth.logout", AuditOutcome::Ok));
    let change = records
        .iter()
        .find(|r| r.action == "incident.action")
        .expect("state change");
    assert_eq!(change.target.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_factor_is_checked_without_confirming_the_password() {
    let h = harness().await;
    // Without a code, the right password and a wrong one get the same answer: the second
    // factor does not tell a guesser that the password was right.
    let right = login(&h, "op-totp", ADMIN_PASSWORD).await;
    let wrong = login(&h, "op-totp", "not-the-password").await;
    assert_eq!((right.status, right.code()), (401, "invalid_credentials"));
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"));
    assert_eq!(
        right.body["error"]["message"],
        wrong.body["error"]["message"]
    );
    let step = (beffroi_core::Clock::now(&h.clock).0 / 1000 / 30) as u64;
    let bad = beffroi_api::totp::code(TOTP_SECRET, step + 5);
    let with =
        |code: &str| json!({"username": "op-totp", "password": ADMIN_PASSWORD, "totp": code});
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Auth_::None,
            Some(with(&bad)),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "invalid_credentials"));
    // Three failures: the account's next attempt waits.
    h.clock.advance(Duration::from_secs(60));
    let step = (beffroi_core::Clock::now(&h.clock).0 / 1000 / 30) as u64;
    let good = beffroi_api::totp::code(TOTP_SECRET, step);
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Auth_::None,
            Some(with(&good)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A wrong password with a right code is still a wrong password.
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Auth_::None,
            Some(json!({"username": "op-totp", "password": "nope", "totp": good})),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "invalid_credentials"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_slowed_then_locked_out() {
    let h = harness().await;
    let policy = AuthPolicy::default();
    let mut statuses = Vec::new();
    let mut failures = 0;
    loop {
        let r = login(&h, "admin", "guess").await;
        statuses.push(r.status);
        match (r.status, r.code()) {
            (401, "invalid_credentials") => failures += 1,
            (429, "too_many_attempts") => {
                let secs: i64 = r.headers[header::RETRY_AFTER]
                    .to_str()
                    .expect("retry-after")
                    .parse()
                    .expect("seconds");
                assert!(secs >= 1);
                h.clock.advance(Duration::from_secs(secs));
            }
            (429, "locked_out") => break,
            other => panic!("unexpected {other:?}"),
        }
        assert!(statuses.len() < 100, "never locked out: {statuses:?}");
    }
    assert_eq!(failures, policy.lock_after);
    assert!(statuses.contains(&429));
    // Locked: even the right password is refused until the lock-out ends.
    let r = login(&h, "admin", ADMIN_PASSWORD).await;
    assert_eq!((r.status, r.code()), (429, "locked_out"));
    h.clock.advance(policy.lockout);
    let r = login(&h, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Counted in the metrics.
    let token = r.body["token"].as_str().expect("token").to_string();
    let req = Request::builder()
        .uri("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("req");
    let resp = h.app.clone().oneshot(req).await.expect("metrics");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("beffroi_auth_logins_total{result=\"locked\"}"),
        "{text}"
    );
    assert!(text.contains("result=\"invalid_credentials\""));
    assert!(text.contains("result=\"throttled\""));
    let records = h.audit.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(records.iter().any(|r| r.action == "auth.login"
        && r.outcome == AuditOutcome::Denied
        && r.detail.contains("locked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_carry_the_security_headers() {
    let h = harness().await;
    let tok = token(Role::Administrator, true);
    for (uri, auth) in [
        ("/api/v1/territory", Auth_::Bearer(&tok)),
        ("/api/v1/incidents", Auth_::None),
        ("/healthz", Auth_::None),
    ] {
        let r = h.call(Method::GET, uri, auth, None).await;
        for (k, v) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
            ("cache-control", "no-store"),
            (
                "strict-transport-security",
                "max-age=31536000; includeSubDomains",
            ),
        ] {
            assert_eq!(
                r.headers.get(k).and_then(|x| x.to_str().ok()),
                Some(v),
                "{k} on {uri}"
            );
        }
        let csp = r.headers["content-security-policy"].to_str().expect("csp");
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(r.headers.contains_key("permissions-policy"));
    }
    let r = h
        .call(Method::GET, "/api/v1/incidents", Auth_::None, None)
        .await;
    assert_eq!(r.status, 401);
}

#[test]
fn scopes_of_the_test_users_are_what_the_walk_assumes() {
    // The walk's "own commune" is A; a unit of A covers only A, one of B does not hold A.
    let t = beffroi_territory::load_dir(&root().join("demo/territory")).expect("territory");
    let units = beffroi_engine::operations::parse_units(
        &SourceFile::read(&root().join("demo/units.toml")).expect("units"),
        &t,
    )
    .expect("units");
    let a: CommuneIdx = t.commune_id(A).expect("A");
    let unit = |id: &str| {
        units
            .iter()
            .find(|u| &*u.id == id)
            .expect("unit")
            .communes
            .clone()
    };
    assert_eq!(unit("pm-dijon-1"), vec![a]);
    assert!(!unit("pm-chenove-1").contains(&a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_ends_with_its_session() {
    let h = harness().await;
    let r = login(&h, "op-a", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200);
    let session = r.body["token"].as_str().expect("token").to_string();
    let req = Request::builder()
        .uri("/api/v1/stream")
        .header(header::AUTHORIZATION, format!("Bearer {session}"))
        .body(Body::empty())
        .expect("req");
    let resp = h.app.clone().oneshot(req).await.expect("stream");
    assert_eq!(resp.status(), 200);
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Auth_::Bearer(&session),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    // The next event for the stream (a comment on an incident of A) finds the session gone:
    // the stream ends instead of delivering it.
    let admin = token(Role::Administrator, true);
    let r = h
        .call(
            Method::POST,
            "/api/v1/incidents/1/actions",
            Auth_::Bearer(&admin),
            Some(json!({"action": "comment", "text": "after logout"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        axum::body::to_bytes(resp.into_body(), 1 << 20),
    )
    .await
    .expect("the stream ended")
    .expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("after logout"), "{text}");
}

/// A failed login's user name is kept in the audit log only when it is an account's: what
/// someone typed instead (an e-mail, a phone number, a long string) is never written there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_keeps_no_typed_name_that_is_not_an_account() {
    let h = harness().await;
    for typed in ["jean.dupont@example.fr", "06 12 34 56 78", "jdupont"] {
        let r = login(&h, typed, "whatever-password").await;
        assert_eq!(r.status, 401);
    }
    let r = login(&h, "admin", "whatever-password").await;
    assert_eq!(r.status, 401);
    let records = h.audit.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let logins: Vec<_> = records
        .iter()
        .filter(|r| r.action == "auth.login")
        .collect();
    assert_eq!(logins.len(), 4);
    for r in &logins {
        let all = format!("{} {:?} {}", r.actor, r.target, r.detail);
        for typed in ["dupont", "06 12 34 56 78"] {
            assert!(!all.contains(typed), "{typed} in the audit log: {all}");
        }
    }
    assert!(logins.iter().any(|r| r.actor == "admin"));
}

// ---------------------------------------------------------------------------------------
// Who sees what holds through nested objects and every object an action touches.

fn ids_of(v: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = v
        .as_array()
        .map(|l| l.iter().filter_map(|i| i["id"].as_u64()).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

async fn assign(h: &Harness, tok: &str, incident: u64, unit: &str) -> Answer {
    h.call(
        Method::POST,
        &format!("/api/v1/incidents/{incident}/actions"),
        Auth_::Bearer(tok),
        Some(json!({"action": "assign", "unit": unit})),
    )
    .await
}

async fn comment(h: &Harness, incident: u64, text: &str) {
    let r = h
        .call(
            Method::POST,
            &format!("/api/v1/incidents/{incident}/actions"),
            Auth_::Bearer(&token(Role::Administrator, true)),
            Some(json!({"action": "comment", "text": text})),
        )
        .await;
    assert_eq!(r.status, 200, "comment on {incident}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_units_missions_pass_the_incident_visibility() {
    let h = harness().await;
    let admin = token(Role::Administrator, true);
    let op_a = token(Role::Operator, false);
    // A's unit is sent on A's incident, on B's and on A's cyber incident.
    for id in [1, 2, 3] {
        let r = assign(&h, &admin, id, "pm-dijon-1").await;
        assert_eq!(r.status, 200, "assign {id}: {}", r.body);
    }
    let all = h
        .call(
            Method::GET,
            "/api/v1/units/pm-dijon-1",
            Auth_::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(ids_of(&all.body["mission_details"]), vec![1, 2, 3]);

    let r = h
        .call(
            Method::GET,
            "/api/v1/units/pm-dijon-1",
            Auth_::Bearer(&op_a),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids_of(&r.body["mission_details"]),
        vec![1],
        "operator of A: neither B's incident nor the cyber one: {}",
        r.body
    );
    assert_eq!(r.body["missions"], json!([1]), "{}", r.body);
    assert_eq!(r.body["hidden_missions"], 2, "{}", r.body);
    let text = String::from_utf8_lossy(&r.raw);
    assert!(
        !text.contains("walk 2") && !text.contains("walk 3"),
        "{text}"
    );
    // The list says the same.
    let list = h
        .call(Method::GET, "/api/v1/units", Auth_::Bearer(&op_a), None)
        .await;
    let unit = list
        .body
        .as_array()
        .and_then(|l| l.iter().find(|u| u["id"] == "pm-dijon-1"))
        .expect("A's unit listed")
        .clone();
    assert_eq!(unit["missions"], json!([1]), "{unit}");
    assert_eq!(unit["hidden_missions"], 2, "{unit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crisis_its_log_and_its_report_pass_the_incident_visibility() {
    let h = harness().await;
    let admin = token(Role::Administrator, true);
    let op_a = token(Role::Operator, false);
    // A crisis over the whole territory follows the incidents of A and B, the cyber one too.
    let r = h
        .call(
            Method::POST,
            "/api/v1/crises",
            Auth_::Bearer(&admin),
            Some(json!({"kind": "flood", "title": "crue générale", "communes": []})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["id"].as_u64().expect("crisis id");
    for i in [1, 2, 3] {
        comment(&h, i, "suivi").await;
    }
    let all = h
        .call(
            Method::GET,
            &format!("/api/v1/crises/{id}"),
            Auth_::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(ids_of(&all.body["incidents"]), vec![1, 2, 3]);

    let r = h
        .call(
            Method::GET,
            &format!("/api/v1/crises/{id}"),
            Auth_::Bearer(&op_a),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids_of(&r.body["incidents"]),
        vec![1],
        "operator of A: neither B's incident nor the cyber one: {}",
        r.body
    );
    let logged: Vec<u64> = r.body["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|e| e["incident"].as_u64())
        .collect();
    assert!(
        !logged.is_empty() && logged.iter().all(|i| *i == 1),
        "{logged:?}"
    );
    assert_eq!(r.body["hidden_incidents"], 2, "{}", r.body);
    let text = String::from_utf8_lossy(&r.raw);
    assert!(
        !text.contains("walk 2") && !text.contains("walk 3"),
        "{text}"
    );

    let report = h
        .call(
            Method::GET,
            &format!("/api/v1/crises/{id}/report?lang=en"),
            Auth_::Bearer(&op_a),
            None,
        )
        .await;
    assert_eq!(report.status, 200);
    let html = String::from_utf8_lossy(&report.raw);
    assert!(html.contains("walk 1"), "{html}");
    assert!(
        !html.contains("walk 2") && !html.contains("walk 3"),
        "the report shows only what the caller may see: {html}"
    );

    // A crisis director of A writes in A's crisis (id 1): the answer does not carry the
    // cyber incident of A either.
    let r = h
        .call(
            Method::POST,
            "/api/v1/crises/1/log",
            Auth_::Bearer(&token(Role::CrisisDirector, false)),
            Some(json!({"text": "point de situation"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids_of(&r.body["incidents"]), vec![1], "{}", r.body);
}

async fn crisis_of(h: &Harness, id: u64, tok: &str) -> Answer {
    h.call(
        Method::GET,
        &format!("/api/v1/crises/{id}"),
        Auth_::Bearer(tok),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_attaches_the_open_incidents_within_the_callers_visibility() {
    let h = harness().await;
    let admin = &token(Role::Administrator, true);
    let op_a = &token(Role::Operator, false);
    // The harness opened A's crisis (id 1) after A's incidents were open, and nothing has
    // happened to them since: they are in it from its activation.
    let r = crisis_of(&h, 1, admin).await;
    assert_eq!(ids_of(&r.body["incidents"]), vec![1, 3], "{}", r.body);
    assert_eq!(r.body["incident_count"], 2, "{}", r.body);
    let attached: Vec<u64> = r.body["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["kind"] == "incident")
        .filter_map(|e| e["incident"].as_u64())
        .collect();
    assert_eq!(attached, vec![1, 3], "{}", r.body);
    // The operator of A sees A's flood incident; the cyber one is counted, not named.
    let r = crisis_of(&h, 1, op_a).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids_of(&r.body["incidents"]), vec![1], "{}", r.body);
    assert_eq!(r.body["hidden_incidents"], 1, "{}", r.body);
    // B's crisis holds B's incident; an operator scoped to A does not see that crisis.
    assert_eq!(
        ids_of(&crisis_of(&h, 2, admin).await.body["incidents"]),
        vec![2]
    );
    assert_eq!(crisis_of(&h, 2, op_a).await.status, 404);

    // A crisis over the whole territory, activated now, holds every open incident at once;
    // the operator of A still sees only A's, in the crisis, its log and its report.
    let r = h
        .call(
            Method::POST,
            "/api/v1/crises",
            Auth_::Bearer(admin),
            Some(json!({"kind": "flood", "title": "crue générale", "communes": []})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids_of(&r.body["incidents"]), vec![1, 2, 3], "{}", r.body);
    let id = r.body["id"].as_u64().expect("crisis id");
    let r = crisis_of(&h, id, op_a).await;
    assert_eq!(ids_of(&r.body["incidents"]), vec![1], "{}", r.body);
    assert_eq!(r.body["hidden_incidents"], 2, "{}", r.body);
    let logged: Vec<u64> = r.body["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|e| e["incident"].as_u64())
        .collect();
    assert_eq!(logged, vec![1], "{}", r.body);
    let text = String::from_utf8_lossy(&r.raw);
    assert!(
        !text.contains("walk 2") && !text.contains("walk 3"),
        "{text}"
    );
    let list = h
        .call(Method::GET, "/api/v1/crises", Auth_::Bearer(op_a), None)
        .await;
    let listed = list
        .body
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == id))
        .expect("the territory's crisis is listed")
        .clone();
    assert_eq!(listed["incident_count"], 1, "{listed}");
    assert_eq!(listed["hidden_incidents"], 2, "{listed}");
    let report = h
        .call(
            Method::GET,
            &format!("/api/v1/crises/{id}/report?lang=en"),
            Auth_::Bearer(op_a),
            None,
        )
        .await;
    let html = String::from_utf8_lossy(&report.raw);
    assert!(html.contains("walk 1"), "{html}");
    assert!(
        !html.contains("walk 2") && !html.contains("walk 3"),
        "{html}"
    );
    // The server's report gives labels and names, not raw values.
    let report = h
        .call(
            Method::GET,
            &format!("/api/v1/crises/{id}/report"),
            Auth_::Bearer(admin),
            None,
        )
        .await;
    let html = String::from_utf8_lossy(&report.raw);
    assert!(!html.contains("user:"), "{html}");
    assert!(
        html.contains("<td>Ouverte par</td><td>tok-administrator-t</td>"),
        "{html}"
    );
    assert!(html.contains("<td>Majeur</td><td>Nouveau</td>"), "{html}");
    assert!(html.contains("<td>État</td><td>Active</td>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_payloads_of_units_and_crises_pass_the_incident_visibility() {
    use futures::StreamExt;
    let h = harness().await;
    let admin = token(Role::Administrator, true);
    let req = Request::builder()
        .uri("/api/v1/stream")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token(Role::Operator, false)),
        )
        .body(Body::empty())
        .expect("req");
    let resp = h.app.clone().oneshot(req).await.expect("stream");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body().into_data_stream();
    // A's unit goes to B's incident, then to A's: two unit events for the operator of A.
    assert_eq!(assign(&h, &admin, 2, "pm-dijon-1").await.status, 200);
    assert_eq!(assign(&h, &admin, 1, "pm-dijon-1").await.status, 200);
    let mut text = String::new();
    let read = async {
        while text.matches("event: unit").count() < 2 || !text.ends_with("\n\n") {
            let Some(Ok(chunk)) = body.next().await else {
                break;
            };
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("two unit events");
    let units: Vec<Value> = text
        .split("\n\n")
        .filter(|e| e.contains("event: unit"))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).expect("unit json"))
        .collect();
    assert_eq!(units.len(), 2, "{text}");
    for u in &units {
        let missions = u["missions"].as_array().expect("missions");
        assert!(
            !missions.contains(&json!(2)),
            "B's incident is not named to the operator of A: {u}"
        );
        assert_eq!(u["hidden_missions"], 1, "{u}");
    }
    assert!(!text.contains("walk 2"), "{text}");

    // A's crisis (id 1) follows A's incidents, the cyber one too: its events count it as
    // hidden for the operator of A, and do not count it among the incidents shown.
    comment(&h, 3, "cyber").await;
    let crisis = async {
        loop {
            let last = text
                .split("\n\n")
                .filter(|e| e.contains("event: crisis"))
                .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find(|c| {
                    c["id"] == 1
                        && c["incident_count"].as_u64().unwrap_or(0)
                            + c["hidden_incidents"].as_u64().unwrap_or(0)
                            == 2
                });
            if let Some(c) = last {
                return c;
            }
            let Some(Ok(chunk)) = body.next().await else {
                panic!("the stream ended: {text}");
            };
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let c = tokio::time::timeout(std::time::Duration::from_secs(20), crisis)
        .await
        .expect("a crisis event after the cyber incident changed");
    assert_eq!(
        (c["incident_count"].clone(), c["hidden_incidents"].clone()),
        (json!(1), json!(1)),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_checks_the_incident_and_the_unit() {
    let h = harness().await;
    let sup_a = token(Role::Supervisor, false);
    let admin = token(Role::Administrator, true);
    // An incident of A to a unit of B: refused, answered as if the unit did not exist.
    let r = assign(&h, &sup_a, 1, "pm-chenove-1").await;
    let missing = assign(&h, &sup_a, 1, "no-such-unit").await;
    assert_eq!(
        (r.status, r.code()),
        (404, "unit_not_found"),
        "a unit out of scope: {}",
        r.body
    );
    assert_eq!(
        r.raw, missing.raw,
        "out of scope and missing answer the same"
    );
    let unit = h
        .call(
            Method::GET,
            "/api/v1/units/pm-chenove-1",
            Auth_::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(unit.body["missions"], json!([]), "nothing assigned");
    // An incident of B to a unit of A: the incident is out of scope.
    let r = assign(&h, &sup_a, 2, "pm-dijon-1").await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.body);
    let unit = h
        .call(
            Method::GET,
            "/api/v1/units/pm-dijon-1",
            Auth_::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(unit.body["missions"], json!([]), "nothing assigned");
    // Both in scope: done.
    let r = assign(&h, &sup_a, 1, "pm-dijon-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_observations_name_only_that_device() {
    let h = harness().await;
    let t = Arc::clone(&h.t);
    let tech_a = token(Role::Technician, false);
    let admin = token(Role::Administrator, true);
    let own = t.device(first_device_in(&t, A)).id.to_string();
    let other_idx = first_device_in(&t, B);
    let other = t.device(other_idx).id.to_string();
    // A value the other device would accept.
    let spec = t
        .kind_of(other_idx)
        .fields
        .iter()
        .find(|f| !matches!(f.ty, beffroi_core::FieldType::Text))
        .expect("a number or bool field");
    let value = match spec.ty {
        beffroi_core::FieldType::Bool => json!(true),
        _ => json!(
            spec.min
                .unwrap_or(0.0)
                .max(0.0)
                .min(spec.max.unwrap_or(1.0))
        ),
    };
    let mut values = serde_json::Map::new();
    values.insert(spec.name.to_string(), value);
    let r = h
        .call(
            Method::POST,
            &format!("/api/v1/devices/{own}/observations?format=json"),
            Auth_::Bearer(&tech_a),
            Some(json!({"device": other, "values": values})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "device_mismatch"),
        "a record of {other} posted for {own}: {}",
        r.body
    );
    let d = h
        .call(
            Method::GET,
            &format!("/api/v1/devices/{other}"),
            Auth_::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(d.body["recent"], json!([]), "nothing ingested: {}", d.body);
    let list = h
        .call(
            Method::GET,
            "/api/v1/incidents",
            Auth_::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(ids_of(&list.body), vec![1, 2, 3], "no incident opened");
    // The same record naming the path's device is taken.
    let r = h
        .call(
            Method::POST,
            &format!("/api/v1/devices/{other}/observations?format=json"),
            Auth_::Bearer(&token(Role::Technician, true)),
            Some(json!({"device": other, "values": values})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["accepted"], 1, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_scope_and_missing_objects_answer_the_same() {
    let h = harness().await;
    let t = Arc::clone(&h.t);
    let b_device = t.device(first_device_in(&t, B)).id.to_string();
    let op_a = token(Role::Operator, false);
    let tech_a = token(Role::Technician, false);
    let sup_a = token(Role::Supervisor, false);
    let cases: [(Method, String, String, &str, Option<Value>); 9] = [
        (
            Method::GET,
            "/api/v1/incidents/2".into(),
            "/api/v1/incidents/99999".into(),
            &op_a,
            None,
        ),
        // A cyber incident of the caller's own commune, hidden by its category.
        (
            Method::GET,
            "/api/v1/incidents/3".into(),
            "/api/v1/incidents/99999".into(),
            &op_a,
            None,
        ),
        (
            Method::POST,
            "/api/v1/incidents/2/actions".into(),
            "/api/v1/incidents/99999/actions".into(),
            &op_a,
            Some(json!({"action": "comment", "text": "x"})),
        ),
        (
            Method::GET,
            "/api/v1/units/pm-chenove-1".into(),
            "/api/v1/units/no-such-unit".into(),
            &op_a,
            None,
        ),
        (
            Method::GET,
            "/api/v1/crises/2".into(),
            "/api/v1/crises/999".into(),
            &op_a,
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/devices/{b_device}"),
            "/api/v1/devices/no-such-device".into(),
            &op_a,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/devices/{b_device}/observations?format=json"),
            "/api/v1/devices/no-such-device/observations?format=json".into(),
            &tech_a,
            Some(json!({"values": {"x": 1}})),
        ),
        (
            Method::POST,
            "/api/v1/units/pm-chenove-1/status".into(),
            "/api/v1/units/no-such-unit/status".into(),
            &sup_a,
            Some(json!({"status": "available"})),
        ),
        (
            Method::GET,
            "/api/v1/crises/2/report".into(),
            "/api/v1/crises/999/report".into(),
            &op_a,
            None,
        ),
    ];
    for (method, hidden, missing, tok, body) in cases {
        let a = h
            .call(method.clone(), &hidden, Auth_::Bearer(tok), body.clone())
            .await;
        let b = h
            .call(method.clone(), &missing, Auth_::Bearer(tok), body)
            .await;
        assert_eq!(a.status, 404, "{method} {hidden}: {}", a.body);
        assert_eq!(
            (a.status, String::from_utf8_lossy(&a.raw)),
            (b.status, String::from_utf8_lossy(&b.raw)),
            "{method} {hidden} and {missing} answer the same"
        );
    }
}

/// Handlers read incidents only through `Caller::incidents` (`src/scoped.rs`), which applies
/// the caller's visibility: no other file of the crate calls the store's incident reads, but
/// the guard's lookup of the object named by the path (`routes.rs`, `object_of`).
#[test]
fn incidents_are_read_only_through_the_callers_visibility() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.ends_with(".rs") || name == "scoped.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for (n, line) in text.lines().enumerate() {
            for pat in [
                "reader.incidents(",
                "incidents(&IncidentQuery",
                ".incidents_by_id(",
                ".incident_with_log(",
                ".log_since(",
            ] {
                if line.contains(pat) && !line.trim_start().starts_with("//") {
                    found.push(format!("{name}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.len() == 1
            && found[0].starts_with("routes.rs")
            && found[0].contains(".incidents_by_id("),
        "incidents are read through `Caller::incidents` only: {found:#?}"
    );
}

/// `GET /api/v1/alarm-health` counts the caller's incidents only (an operator of A: A's,
/// without cyber), from the incidents' logs, and `/metrics` carries the territory's figures.
#[tokio::test]
async fn alarm_health_counts_the_callers_scope_only() {
    let h = harness().await;
    let now = Timestamp(1_700_000_000_000);
    let mins = |m: i64| now.minus(Duration::from_mins(m));
    let line = |at: Timestamp, action: &str| beffroi_core::LogEntry {
        at,
        actor: beffroi_core::Actor::Rule("walk".into()),
        action: action.into(),
        detail: beffroi_core::SafeText::default(),
        message: None,
    };
    // In A: opened 30 minutes ago and raised again four times within 20 minutes (five
    // alarms of one key, four of them within 8 minutes: a chattering key). In B: opened 5 minutes ago.
    let mut chatter = incident(&h.t, 10, A, "flood");
    chatter.incident.opened_at = mins(30);
    chatter.log = vec![
        line(mins(30), "opened"),
        line(mins(28), "raised_again"),
        line(mins(26), "raised_again"),
        line(mins(25), "escalated"),
        line(mins(22), "raised_again"),
        line(mins(10), "raised_again"),
    ];
    let mut in_b = incident(&h.t, 11, B, "flood");
    in_b.incident.opened_at = mins(5);
    in_b.log = vec![line(mins(5), "opened")];
    // A second writer on the harness' database (the engine's own is idle).
    let (mut store, _reader) =
        beffroi_store::open(&h._dir.path().join("walk.db"), Arc::clone(&h.t)).expect("store");
    store
        .write(&WriteBatch {
            incidents: vec![chatter, in_b],
            ..Default::default()
        })
        .expect("write");

    let get = |tok: String, uri: &'static str| {
        let h = &h;
        async move { h.call(Method::GET, uri, Auth_::Bearer(&tok), None).await }
    };
    let op_a = get(token(Role::Operator, false), "/api/v1/alarm-health").await;
    assert_eq!(op_a.status, 200, "{}", op_a.body);
    let b = &op_a.body;
    assert_eq!(b["arrivals"], 5, "{b}");
    assert_eq!(
        b["peak_per_window"], 4,
        "{b}: four of them within ten minutes"
    );
    assert_eq!(b["peak_at"], mins(30).to_string());
    assert_eq!(b["flood"], false);
    assert_eq!(b["chattering"], 1);
    assert_eq!(
        b["standing"], 2,
        "{b}: incidents 1 and 10, not the cyber one"
    );
    assert_eq!(b["stale"], 0);
    assert_eq!(b["windows"], 144);
    assert_eq!(b["thresholds"]["flood_per_window"], 10);

    let all = get(token(Role::Administrator, true), "/api/v1/alarm-health").await;
    assert_eq!(all.body["arrivals"], 6, "{}", all.body);
    assert_eq!(all.body["standing"], 5);

    let metrics = h
        .call(
            Method::GET,
            "/metrics",
            Auth_::Bearer(&token(Role::Administrator, true)),
            None,
        )
        .await;
    let text = String::from_utf8_lossy(&metrics.raw);
    for want in [
        "beffroi_alarm_health_arrivals_24h 6",
        "beffroi_alarm_health_peak_alarms_per_10min 4",
        "beffroi_alarm_health_standing_incidents 5",
        "beffroi_alarm_health_chattering_keys_24h 1",
        "beffroi_alarm_health_stale_incidents 0",
    ] {
        assert!(text.contains(want), "`{want}` in\n{text}");
    }

    // A day later: every open incident is stale, and no alarm is left in the default period.
    h.clock.advance(Duration::from_mins(25 * 60));
    let later = get(token(Role::Administrator, true), "/api/v1/alarm-health").await;
    assert_eq!(later.body["stale"], 5, "{}", later.body);
    assert_eq!(later.body["arrivals"], 0);
    assert_eq!(later.body["peak_at"], Value::Null);

    for bad in [
        "/api/v1/alarm-health?since=yesterday",
        "/api/v1/alarm-health?since=2100-01-01T00:00:00Z",
        "/api/v1/alarm-health?since=2000-01-01T00:00:00Z",
    ] {
        let r = get(token(Role::Administrator, true), bad).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{bad}");
    }
}

/// The map follows the caller's scope: the communes it is framed on are the caller's, and
/// the devices it counts and clusters are those of the caller's communes only.
#[tokio::test]
async fn the_map_is_framed_on_and_counts_the_callers_communes() {
    let h = harness().await;
    let a = h.t.commune_id(A).expect("A");
    let in_a = (0..h.t.devices.len())
        .filter(|i| h.t.site(h.t.device(DeviceIdx(*i as u32)).site).commune == a)
        .count();
    let in_scope = |v: &Value| -> Vec<String> {
        v["features"]
            .as_array()
            .expect("features")
            .iter()
            .filter(|f| f["properties"]["in_scope"] == json!(true))
            .filter_map(|f| f["properties"]["id"].as_str().map(String::from))
            .collect()
    };
    let op_a = token(Role::Operator, false);
    let admin = token(Role::Administrator, true);
    let mine = h
        .call(
            Method::GET,
            "/api/v1/territory/communes",
            Auth_::Bearer(&op_a),
            None,
        )
        .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(
        in_scope(&mine.body),
        vec![A.to_string()],
        "an operator of A is framed on A"
    );
    assert_eq!(
        mine.body["features"].as_array().map(Vec::len),
        Some(h.t.communes.len()),
        "every outline is still drawn"
    );
    let all = h
        .call(
            Method::GET,
            "/api/v1/territory/communes",
            Auth_::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(in_scope(&all.body).len(), h.t.communes.len());

    // A box around the whole territory, at a zoom where devices are clustered.
    let uri = "/api/v1/map/clusters?z=8&bbox=3.5,46.5,6.5,48.5";
    let grid = h.call(Method::GET, uri, Auth_::Bearer(&op_a), None).await;
    assert_eq!(grid.status, 200, "{}", grid.body);
    assert_eq!(grid.body["total"], in_a, "{}", grid.body["states"]);
    assert_eq!(grid.body["in_view"], in_a);
    let counted: u64 = grid.body["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["properties"]["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(
        counted as usize, in_a,
        "clusters and points hold A's devices only"
    );
    let grid = h.call(Method::GET, uri, Auth_::Bearer(&admin), None).await;
    assert_eq!(grid.body["total"], h.t.devices.len());
    for f in grid.body["features"].as_array().expect("features") {
        let p = &f["properties"];
        if p["count"].is_u64() {
            assert_eq!(p["alarm_share"], json!(0.0), "no device in alarm: {p}");
        }
    }
}
