//! Running Beffroi: the store, the engine, the HTTP server, the sources.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use beffroi_api::{AppState, Auth};
use beffroi_core::{Clock, Duration};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, EngineConfig, EngineHandle};
use beffroi_engine::{Envelope, Source};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::setup::Deployment;

pub struct RunOptions {
    pub listen: String,
    pub data_dir: PathBuf,
    pub retention: Option<Duration>,
    pub clock: Arc<dyn Clock>,
    /// Scenarios to loop in-process (demo), with background first.
    pub simulate: bool,
    pub mqtt: Option<crate::config::MqttSettings>,
    /// The console's base map.
    pub console: beffroi_console::Settings,
}

/// The admin password: `BEFFROI_ADMIN_PASSWORD`, or a generated one that is printed.
fn admin_password() -> (String, bool) {
    match std::env::var("BEFFROI_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (beffroi_api::auth::generate_password(), true),
    }
}

pub async fn run(dep: Deployment, opts: RunOptions) -> Result<()> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("cannot create {}", opts.data_dir.display()))?;
    let db = opts.data_dir.join("beffroi.db");
    let territory = Arc::clone(&dep.territory);
    let (store, reader) = {
        let t = Arc::clone(&territory);
        let path = db.clone();
        tokio::task::spawn_blocking(move || beffroi_store::open(&path, t))
            .await?
            .with_context(|| format!("cannot open the store {}", db.display()))?
    };
    let metrics = Arc::new(Metrics::new());
    let engine = runner::start_with_events(
        Arc::clone(&territory),
        Arc::clone(&dep.rules),
        dep.procedures.clone(),
        dep.events.clone(),
        Box::new(store),
        Arc::clone(&opts.clock),
        Arc::clone(&metrics),
        EngineConfig {
            retention: opts.retention,
            operations: dep.operations.clone(),
            security: dep.security.clone(),
            ..EngineConfig::default()
        },
    )
    .await
    .context("cannot start the engine")?;
    let handle = engine.handle.clone();

    let (password, generated) = admin_password();
    let mut auth = Auth::new(std::time::Duration::from_secs(12 * 3600));
    let hashed = tokio::task::spawn_blocking(move || {
        auth.add_user("admin", &password).map(|()| (auth, password))
    })
    .await??;
    let (auth, password) = hashed;
    let state = AppState::new(handle.clone(), Arc::new(reader), Arc::new(auth));
    let ready = Arc::clone(&state.ready);
    let end_streams = state.shutdown.clone();
    let app = beffroi_api::router(state).merge(beffroi_console::router(opts.console.clone()));
    let addr: SocketAddr = opts
        .listen
        .parse()
        .with_context(|| format!("invalid listen address `{}`", opts.listen))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    if let (Some(rules_path), false) = (dep.rules_path.clone(), opts.simulate) {
        tasks.spawn(crate::reload::watch(
            handle.clone(),
            rules_path,
            dep.procedures_path.clone(),
            dep.operations_dir.clone(),
            shutdown.clone(),
        ));
    }
    #[cfg(feature = "mqtt")]
    if let Some(m) = opts.mqtt {
        let source = beffroi_mqtt::MqttSource::new(crate::mqtt::to_config(m))
            .context("invalid MQTT settings")?;
        crate::mqtt::export_stats(&source.stats(), &metrics);
        tasks.spawn(crate::mqtt::run(source, handle.clone(), shutdown.clone()));
    }
    #[cfg(not(feature = "mqtt"))]
    if opts.mqtt.is_some() {
        anyhow::bail!("this binary was built without the `mqtt` feature");
    }
    if opts.simulate {
        tasks.spawn(loop_scenarios(
            dep.scenarios.clone(),
            handle.clone(),
            shutdown.clone(),
        ));
    }

    ready.store(true, Ordering::Release);
    println!(
        "Beffroi — {} ({} communes, {} sites, {} devices, {} rules)",
        territory.name,
        territory.communes.len(),
        territory.sites.len(),
        territory.devices.len(),
        dep.rules.len()
    );
    println!("  console     : http://{local}/");
    println!(
        "  API         : http://{local}/api/v1   (health: http://{local}/healthz, metrics: http://{local}/metrics)"
    );
    println!("  data        : {}", db.display());
    if generated {
        println!(
            "  login       : admin / {password}   (generated; set BEFFROI_ADMIN_PASSWORD to choose it)"
        );
    } else {
        println!("  login       : admin / (from BEFFROI_ADMIN_PASSWORD)");
    }
    tracing::info!(%local, "listening");

    let stop = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let term = async {
            #[cfg(unix)]
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
            _ = stop.cancelled() => {}
        }
        tracing::info!("shutting down: draining the pipeline");
        end_streams.cancel();
    });
    let result = server.await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    drop(handle);
    engine.shutdown().await;
    tracing::info!("stopped");
    result.context("HTTP server")
}

/// Plays the demo scenarios in a loop on the engine's clock: background and every scenario
/// together, restarting when the longest ends.
async fn loop_scenarios(
    scenarios: Vec<Arc<beffroi_sim::Scenario>>,
    engine: EngineHandle,
    shutdown: CancellationToken,
) {
    let tx = engine.ingest_sender();
    let territory_id = engine.territory.id.to_string();
    let mut messages = Vec::new();
    let mut signals = Vec::new();
    let mut round = 0u32;
    loop {
        round += 1;
        let start = engine.clock.now();
        let mut player = beffroi_sim::Player::new(
            Arc::clone(&engine.territory),
            scenarios.clone(),
            start,
            &territory_id,
        );
        tracing::info!(
            round,
            duration_min = player.duration().millis() / 60_000,
            "scenario round starts"
        );
        while !player.is_finished() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
            let now = engine.clock.now();
            messages.clear();
            player.drain_until(now.since(start), &mut messages);
            signals.clear();
            player.drain_signals_until(now.since(start), &mut signals);
            for (_, s) in signals.drain(..) {
                engine.security_signal(s);
            }
            for m in messages.drain(..) {
                let hint = m
                    .topic
                    .split('/')
                    .nth(2)
                    .filter(|_| m.topic.starts_with("beffroi/"));
                let env = Envelope {
                    source: Source::Simulator,
                    format: m.format,
                    device_hint: hint.map(Into::into),
                    payload: Bytes::from(m.payload),
                    received: now,
                    ack: None,
                };
                if tx.send(env).await.is_err() {
                    return;
                }
            }
        }
    }
}
