//! The API over a real engine and SQLite store, on the demo territory and a simulated
//! clock, with one administrator token: the harness of the end-to-end API tests.

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use beffroi_api::access::{Grant, Role, Scope};
use beffroi_api::auth::{ApiToken, Auth, AuthPolicy, token_digest};
use beffroi_api::{AppState, WebSecurity};
use beffroi_core::{DeviceIdx, SimClock, Territory, Timestamp};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, Engine, EngineConfig};
use beffroi_territory::SourceFile;

pub struct Harness {
    pub app: Router,
    pub t: Arc<Territory>,
    pub handle: beffroi_engine::runner::EngineHandle,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The API on `rules`, the engine's clock at `now`; `token` is an administrator's;
/// `state` adds what a test needs to the application state.
pub async fn harness(
    rules: &str,
    now: i64,
    token: &str,
    state: impl FnOnce(AppState) -> AppState,
) -> Harness {
    let t = Arc::new(
        beffroi_territory::load_dir(&root().join("demo/territory")).expect("demo territory"),
    );
    let rules =
        Arc::new(beffroi_rules::parse(&SourceFile::new("rules.toml", rules), &t).expect("rules"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reader) =
        beffroi_store::open(&dir.path().join("api.db"), Arc::clone(&t)).expect("store");
    let clock = SimClock::new(Timestamp(now));
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
    let mut auth = Auth::new(AuthPolicy::default(), Arc::new(clock));
    auth.add_token(ApiToken {
        name: token.into(),
        digest: token_digest(token),
        grants: vec![Grant {
            role: Role::Administrator,
            scope: Scope::Territory,
        }],
    });
    let s = state(
        AppState::new(engine.handle.clone(), Arc::new(reader), Arc::new(auth))
            .with_privacy(Arc::new(beffroi_core::PrivacyPolicy::unconfigured())),
    );
    s.ready.store(true, std::sync::atomic::Ordering::Release);
    let app = beffroi_api::harden(beffroi_api::router(s), WebSecurity::default());
    Harness {
        app,
        t,
        handle: engine.handle.clone(),
        _engine: engine,
        _dir: dir,
    }
}

impl Harness {
    /// The first water-level gauge of the demo.
    pub fn gauge(&self) -> String {
        let k = self.t.kind_id("water_level").expect("kind");
        let d = (0..self.t.devices.len())
            .map(|i| DeviceIdx(i as u32))
            .find(|d| self.t.device(*d).kind == k)
            .expect("a gauge");
        self.t.device(d).id.to_string()
    }
}

/// Whether python3 can import `modules` (comma-separated); without them a test is skipped,
/// unless `BEFFROI_REQUIRE_SERVICES` asks that it fail. `pip` names the packages.
pub fn python_has(modules: &str, pip: &str) -> bool {
    let have = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("BEFFROI_REQUIRE_SERVICES").is_none(),
            "python3 with {pip} is required (pip install {pip})"
        );
        eprintln!("skipped: python3 lacks {pip}");
    }
    have
}

/// Serves `app` on a free loopback port, until the test ends.
pub async fn listen(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
