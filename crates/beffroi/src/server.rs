//! Running Beffroi: the store, the engine, the HTTP server, the sources.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use beffroi_api::AppState;
use beffroi_core::audit::{AuditOutcome, AuditSink};
use beffroi_core::{Clock, Duration};
use beffroi_engine::metrics::Metrics;
use beffroi_engine::runner::{self, EngineConfig};
use beffroi_engine::source::{IngestSource, Overload, SourceConfig, SourceError, SourcePort};
use beffroi_engine::{Envelope, Source};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::setup::Deployment;

pub struct RunOptions {
    pub listen: String,
    pub data_dir: PathBuf,
    pub retention: Option<Duration>,
    /// Incidents resolved this long ago and never closed are closed by the system.
    pub close_resolved_after: Option<Duration>,
    /// How long the store writer gathers work into one commit (`commit_window`).
    pub commit_window: std::time::Duration,
    pub clock: Arc<dyn Clock>,
    /// Scenarios to loop in-process (demo), with background first.
    pub simulate: bool,
    pub mqtt: Option<crate::config::MqttSettings>,
    /// The console's base map.
    pub console: beffroi_console::Settings,
    /// Accounts file, sessions, TLS-related headers.
    pub http: crate::config::HttpSettings,
    /// The audit log (its file, key, checkpoints, anchor).
    pub audit: beffroi_audit::AuditConfig,
    /// `[audit] retain`: the audit log's entries older than this are pruned once a day
    /// (`None`: never).
    pub audit_retain: Option<std::time::Duration>,
    /// `[audit] public_key`: the signing key must match this pinned public key.
    pub audit_pinned_key: Option<PathBuf>,
    /// `--new-audit-log`: why a new audit log is started (or the log anchored again) over a
    /// data folder that knew another.
    pub new_audit_log: Option<String>,
    /// What configuration was loaded, recorded as `config.load`.
    pub config_source: ConfigSource,
    /// The key vault of the territory (pseudonymisation keys, one file per epoch).
    pub keys_dir: PathBuf,
    /// Who approves an unmasking before its value is revealed.
    pub unmask_approval: beffroi_api::unmask::ApprovalPolicy,
    /// Where the store lives: `<data_dir>/beffroi.db`, or PostgreSQL (`[cluster]`).
    pub store: crate::config::StoreLocation,
    /// `[cluster] nats`: this server is a node of a cluster.
    pub nats: Option<crate::config::NatsSettings>,
}

/// The configuration a run loaded: the deployment and its files with their SHA-256.
pub struct ConfigSource {
    pub target: String,
    /// `[{"path", "sha256"}]`.
    pub files: serde_json::Value,
}

pub async fn run(dep: Deployment, opts: RunOptions) -> Result<()> {
    // The data folder and the databases are the service account's alone.
    crate::files::private_dir(&opts.data_dir)?;
    let metrics = Arc::new(Metrics::new());
    // The audit log first: no audit, no service. A data folder that holds data and a
    // missing, replaced or cut log do not start without a reason on record.
    let continuity = beffroi_audit::Continuity {
        data_present: crate::audit_cmd::data_store_holds_data(&opts.data_dir),
        new_log_reason: opts.new_audit_log.clone(),
    };
    if opts.audit.key_file.starts_with(&opts.data_dir) {
        tracing::warn!(
            key = %opts.audit.key_file.display(),
            "the audit signing key is inside the data folder: whoever copies the folder can re-sign the log; move it (default {})",
            beffroi_audit::default_key_file(&opts.data_dir).display()
        );
    }
    let audit = crate::audit_cmd::open(opts.audit.clone(), continuity, &metrics).await?;
    if let Some(pinned) = &opts.audit_pinned_key {
        let key = beffroi_audit::key::read_public(pinned)?;
        anyhow::ensure!(
            key == *audit.public_key(),
            "the audit signing key {} does not match the pinned public key {}",
            opts.audit.key_file.display(),
            pinned.display()
        );
    }
    crate::audit_cmd::record_system(
        audit.as_ref(),
        "system.start",
        None,
        AuditOutcome::Ok,
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "listen": opts.listen,
            "data_dir": opts.data_dir.display().to_string(),
        }),
    );
    // With the store in PostgreSQL, the log is copied there as it is written: a node lost
    // with its disk takes no audited act with it, and the access log is the cluster's.
    #[cfg(feature = "postgres")]
    let mirror = match &opts.store {
        crate::config::StoreLocation::Postgres(url) => Some(crate::audit_cmd::start_mirror(
            &audit,
            &crate::backend::database_url(url.as_deref())?,
            opts.nats.as_ref().map_or("server", |n| n.node.as_str()),
            &metrics,
        )?),
        crate::config::StoreLocation::Sqlite => None,
    };
    crate::audit_cmd::record_system(
        audit.as_ref(),
        "config.load",
        Some(opts.config_source.target.clone()),
        AuditOutcome::Ok,
        serde_json::json!({ "files": opts.config_source.files }),
    );
    // Signed at once: a log is never without a checkpoint for long.
    {
        let audit = Arc::clone(&audit);
        tokio::task::spawn_blocking(move || audit.checkpoint())
            .await?
            .context("cannot sign the audit log's first checkpoint")?;
    }
    let result = serve(dep, opts, metrics, Arc::clone(&audit)).await;
    crate::audit_cmd::record_system(
        audit.as_ref(),
        "system.stop",
        None,
        if result.is_ok() {
            AuditOutcome::Ok
        } else {
            AuditOutcome::Failed
        },
        match &result {
            Ok(()) => serde_json::json!({}),
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        },
    );
    // The final checkpoint.
    let closed = tokio::task::spawn_blocking(move || audit.close()).await;
    match closed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "audit log: final checkpoint failed"),
        Err(e) => tracing::error!(error = %e, "audit log: close task failed"),
    }
    // Its last pass copies the final checkpoint.
    #[cfg(feature = "postgres")]
    if let Some(mirror) = mirror
        && let Err(e) = tokio::task::spawn_blocking(move || mirror.stop()).await
    {
        tracing::error!(error = %e, "audit mirror: stop task failed");
    }
    result
}

async fn serve(
    dep: Deployment,
    mut opts: RunOptions,
    metrics: Arc<Metrics>,
    audit: Arc<beffroi_audit::AuditLog>,
) -> Result<()> {
    let db = opts.data_dir.join("beffroi.db");
    let territory = Arc::clone(&dep.territory);
    // The pseudonymisation keys: epoch 1 is created on first start.
    let (pseudonymiser, epochs) = {
        let dir = opts.keys_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            let vault = crate::vault::Vault::open(&dir)?;
            let p = vault.pseudonymiser()?;
            Ok((p, vault.status()?))
        })
        .await??
    };
    let pseudonymiser = Arc::new(pseudonymiser);
    // Every record's texts are `SafeText`s: scrubbed where they were written.
    let audit_in: Arc<dyn AuditSink> = Arc::clone(&audit) as Arc<dyn AuditSink>;
    let alive: Vec<u32> = pseudonymiser.epochs().collect();
    let destroyed: Vec<u32> = epochs
        .iter()
        .filter(|e| !e.key_present)
        .map(|e| e.epoch)
        .collect();
    let (store, reader, forgotten, take_fence) = crate::backend::open(
        &opts.store,
        &db,
        &territory,
        &alive,
        pseudonymiser.key_checks(),
        &metrics,
    )
    .await?;
    crate::audit_cmd::record_system(
        audit.as_ref(),
        "privacy.keys",
        Some(opts.keys_dir.display().to_string()),
        AuditOutcome::Ok,
        serde_json::json!({
            "current_epoch": pseudonymiser.current_epoch(),
            "epochs_alive": alive,
            "epochs_destroyed": destroyed,
            "destructions": epochs
                .iter()
                .filter(|e| !e.key_present)
                .map(|e| serde_json::json!({
                    "epoch": e.epoch,
                    "at_ms": e.destroyed_at,
                    "by": e.destroyed_by,
                    "despite_hold": e.despite_hold,
                }))
                .collect::<Vec<_>>(),
            "identities_deleted": forgotten,
        }),
    );
    // Before `opts.http` is taken by the accounts.
    let web = web_security(&opts.http);
    let (header_timeout, max_connections, metrics_listen) = (
        opts.http.header_timeout,
        opts.http.max_connections,
        opts.http.metrics_listen,
    );
    let (auth, generated, admin_from_env) = {
        let t = Arc::clone(&territory);
        let demo = opts.simulate;
        let http = std::mem::take(&mut opts.http);
        tokio::task::spawn_blocking(move || crate::accounts::build(&t, &http, demo)).await??
    };
    let auth = Arc::new(auth);
    // The device registry beside the store: a cluster's nodes share it in PostgreSQL.
    let registry_at = crate::registry::Location::of_store(&opts.store, &opts.data_dir)?;
    let (device_keys, key_watch) = crate::registry::load_device_keys(registry_at).await?;

    // Listening before the engine starts: `/livez` answers at once, the rest `503` until
    // the app is installed (a cluster node on standby says so).
    let addr: SocketAddr = opts
        .listen
        .parse()
        .with_context(|| format!("invalid listen address `{}`", opts.listen))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let metrics_listener = match metrics_listen {
        None => None,
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (http.metrics_listen)"))?,
        ),
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let limits = crate::conns::Limits {
        header_timeout: header_timeout.map_or(std::time::Duration::from_secs(10), |d| {
            std::time::Duration::from_millis(d.millis().max(1) as u64)
        }),
        max_connections: max_connections.unwrap_or(1024).max(1),
        refused: Default::default(),
    };
    metrics.with_registry(|r| {
        r.register(
            "http_connections_refused",
            "HTTP connections closed at once because max_connections were being served",
            limits.refused.clone(),
        )
    });
    // Everything stops when this is cancelled: a signal, or a cluster node's lease lost.
    let stop_all = CancellationToken::new();
    let http_stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop_all.clone()).context("cannot install the signal handlers")?);
    let app_slot = AppSlot::default();
    #[cfg(feature = "nats")]
    let node_name = opts.nats.as_ref().map(|n| n.node.clone());
    #[cfg(not(feature = "nats"))]
    let node_name: Option<String> = None;
    let http_task = tokio::spawn(crate::conns::serve(
        listener,
        app_slot.router(node_name.clone()),
        limits.clone(),
        http_stop.clone(),
    ));
    // `/metrics` without a token, served from the start: a standby's own metrics (its
    // lease, its forwarder) until the engine's app is installed.
    let metrics_slot = AppSlot::default();
    let metrics_task = metrics_listener.map(|l| {
        tokio::spawn(crate::conns::serve(
            l,
            metrics_slot.metrics_router(Arc::clone(&metrics)),
            crate::conns::Limits {
                max_connections: 16,
                ..limits.clone()
            },
            http_stop.clone(),
        ))
    });

    // A cluster node waits on standby until it holds the lease, then restores the engine
    // from the shared store.
    #[cfg(feature = "nats")]
    let mut node = match opts.nats.clone() {
        None => None,
        Some(settings) => {
            // Where the other nodes relay the console while this one runs the engine.
            let advertise = settings
                .advertise
                .clone()
                .or_else(|| (!local.ip().is_unspecified()).then(|| local.to_string()));
            if advertise.is_none() {
                tracing::warn!(
                    "[cluster] advertise is not set and listen is a wildcard: the other nodes \
                     cannot relay the console to this one while it runs the engine"
                );
            }
            let node =
                crate::cluster::Node::join(settings, &territory.id, advertise.clone()).await?;
            let node_id = node.settings.node.clone();
            let collector =
                crate::cluster::ClusterCollector::new(Arc::clone(&node.stats), node_id.clone());
            metrics.with_registry(|r| r.register_collector(Box::new(collector)));
            node.share_sessions(&territory.id, Arc::clone(&auth))
                .await?;
            node.trust_peers(Arc::clone(&web.cluster_peers));
            app_slot.relay_to(crate::relay::Relay::new(
                node_id,
                advertise,
                node.holders(),
                Arc::clone(&node.stats),
            ));
            Some(node)
        }
    };
    #[cfg(not(feature = "nats"))]
    if opts.nats.is_some() {
        anyhow::bail!("this binary was built without the `nats` feature ([cluster] nats)");
    }
    #[cfg(feature = "nats")]
    let mut took_lease_at = None;
    #[cfg(feature = "nats")]
    if let Some(node) = node.as_mut() {
        println!(
            "Beffroi — node {} on standby (http://{local}/livez), waiting for the territory's lease",
            node.settings.node
        );
        tracing::info!(node = %node.settings.node, "standby: waiting for the lease");
        if !node.wait_active(&stop_all).await {
            http_stop.cancel();
            let _ = http_task.await;
            if let Some(t) = metrics_task {
                let _ = t.await;
            }
            tracing::info!("stopped on standby");
            return Ok(());
        }
        took_lease_at = Some(std::time::Instant::now());
        // Before anything is restored or written: the node this one replaces, if it is
        // still draining, can no longer commit.
        if let Some(take) = take_fence {
            let epoch = tokio::task::spawn_blocking(take).await??;
            tracing::info!(node = %node.settings.node, epoch, "store fenced");
        }
        tracing::info!(node = %node.settings.node, "holds the lease: restoring the engine from the store");
    }

    // A single server's store is never fenced.
    #[cfg(not(feature = "nats"))]
    drop(take_fence);

    let engine = runner::start_with_events(
        Arc::clone(&territory),
        Arc::clone(&dep.rules),
        dep.procedures.clone(),
        dep.events.clone(),
        store,
        Arc::clone(&opts.clock),
        Arc::clone(&metrics),
        EngineConfig {
            // `retention` of beffroi.toml: technical observations only; the rest follows
            // privacy.toml.
            retention: opts.retention,
            close_resolved_after: opts.close_resolved_after,
            commit_window: opts.commit_window,
            privacy: Arc::new(dep.privacy.clone()),
            exports_dir: Some(opts.data_dir.join("exports")),
            staff_roles: Arc::new(auth.staff_roles()),
            operations: dep.operations.clone(),
            device_keys: Arc::new(device_keys),
            security: dep.security.clone(),
            pseudonymiser: Some(Arc::clone(&pseudonymiser)),
            audit: Some(beffroi_engine::runner::EngineAudit(Arc::clone(&audit_in))),
            ..EngineConfig::default()
        },
    )
    .await
    .context("cannot start the engine")?;
    let handle = engine.handle.clone();

    // Agreements with neighbouring instances: queues in the data folder, the inbox on the
    // API.
    let fed_reader = Arc::clone(&reader);
    let fed = match dep.federation.clone() {
        Some(config) => {
            let fed_metrics = crate::federation::FederationMetrics::default();
            metrics.with_registry(|r| fed_metrics.register(r));
            Some(crate::federation::Fed::open(
                config,
                &opts.data_dir,
                handle.clone(),
                Arc::clone(&audit_in) as Arc<dyn beffroi_core::AuditSink>,
                fed_metrics,
            )?)
        }
        None => None,
    };
    #[allow(unused_mut)]
    let mut state = AppState::new(handle.clone(), reader, Arc::clone(&auth))
        .with_web(web.clone())
        .with_audit(Arc::clone(&audit_in))
        .with_privacy(Arc::new(dep.privacy.clone()))
        .with_cap(dep.cap.clone().map(Arc::new))
        .with_taxii(dep.taxii.clone())
        .with_federation(
            fed.clone()
                .map(|f| Arc::new(crate::federation::FedPort(f)) as beffroi_api::federation::Port),
        )
        .with_audit_reader(crate::audit_cmd::access_log_reader(&opts.store, &audit)?)
        .with_pseudonymiser(Arc::clone(&pseudonymiser))
        .with_unmask_approval(opts.unmask_approval);
    #[cfg(feature = "nats")]
    if let Some(node) = &node {
        state = state.with_ingest_log(node.ingest_log(Arc::clone(&territory)));
    }
    let ready = Arc::clone(&state.ready);
    let end_streams = state.shutdown.clone();
    // Built only when served: an app holds the engine's handle, and the engine drains only
    // once every handle is gone.
    let metrics_app = metrics_listen
        .map(|_| beffroi_api::harden(beffroi_api::metrics_router(state.clone()), web.clone()));
    let app = beffroi_api::harden(
        beffroi_api::router(state).merge(beffroi_console::router(opts.console.clone())),
        web,
    );
    app_slot.install(app);

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    if let (Some(rules_path), false) = (dep.rules_path.clone(), opts.simulate) {
        tasks.spawn(crate::reload::watch(
            handle.clone(),
            rules_path,
            dep.procedures_path.clone(),
            dep.operations_dir.clone(),
            Arc::clone(&audit_in),
            shutdown.clone(),
        ));
    }
    #[cfg(feature = "mqtt")]
    if let Some(m) = opts.mqtt {
        let broker_auth = m.broker_auth;
        let mut source = beffroi_mqtt::MqttSource::new(crate::mqtt::to_config(m))
            .context("invalid MQTT settings")?;
        if broker_auth {
            // Bounded: a burst of broker log lines beyond this is dropped and counted.
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            source = source.with_broker_feed(tx);
            tasks.spawn(crate::mqtt::forward_signals(rx, handle.clone()));
        }
        crate::mqtt::export_stats(&source.stats(), &metrics);
        let engine = handle.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move { engine.run_source(Box::new(source), stop).await });
    }
    #[cfg(not(feature = "mqtt"))]
    if opts.mqtt.is_some() {
        anyhow::bail!("this binary was built without the `mqtt` feature");
    }
    #[cfg(feature = "nats")]
    let lease_lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    #[cfg(feature = "nats")]
    let mut lease_watch = None;
    #[cfg(feature = "nats")]
    if let Some(node) = &node {
        let engine = handle.clone();
        let stop = shutdown.clone();
        let source = node.source();
        tasks.spawn(async move { engine.run_source(Box::new(source), stop).await });
        let lost = node.lease_lost();
        let resign = node.resign();
        let (stop_all, flag, node_id) = (
            stop_all.clone(),
            Arc::clone(&lease_lost),
            node.settings.node.clone(),
        );
        lease_watch = Some(tokio::spawn(async move {
            lost.await;
            resign.cancel();
            tracing::error!(node = %node_id, "lost the territory's lease: stopping so that another node takes over");
            flag.store(true, Ordering::Release);
            stop_all.cancel();
        }));
    }
    if let Some(retain) = opts.audit_retain {
        tasks.spawn(crate::audit_cmd::retention_schedule(
            Arc::clone(&audit),
            retain,
            db.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(crate::registry::watch(
        handle.clone(),
        key_watch,
        shutdown.clone(),
    ));
    // CAP feeds read as incidents, on the node that runs the engine.
    if let Some(policy) = dep.cap.as_ref().filter(|p| !p.sources.is_empty()) {
        let feed_metrics = crate::cap_feeds::FeedMetrics::default();
        metrics.with_registry(|r| feed_metrics.register(r));
        tasks.spawn(crate::cap_feeds::run(
            policy.sources.clone(),
            handle.clone(),
            feed_metrics,
            shutdown.clone(),
        ));
    }
    if let Some(fed) = fed {
        tasks.spawn(fed.run(fed_reader, shutdown.clone()));
    }
    // Partners' indicators pulled over TAXII, on the node that runs the engine.
    if let Some(policy) = dep.taxii.as_ref().filter(|p| !p.pulls.is_empty()) {
        let pull_metrics = crate::taxii_pull::PullMetrics::default();
        metrics.with_registry(|r| pull_metrics.register(r));
        tasks.spawn(crate::taxii_pull::run(
            policy.pulls.clone(),
            handle.clone(),
            pull_metrics,
            shutdown.clone(),
        ));
    }
    // Hub'Eau stations read as devices, on the node that runs the engine.
    if let Some(config) = dep.hubeau.clone() {
        let hubeau_metrics = crate::hubeau_feed::HubeauMetrics::default();
        metrics.with_registry(|r| hubeau_metrics.register(r));
        let engine = handle.clone();
        let stop = shutdown.clone();
        let source = crate::hubeau_feed::HubeauSource {
            config,
            metrics: hubeau_metrics,
        };
        tasks.spawn(async move { engine.run_source(Box::new(source), stop).await });
    }
    if opts.simulate {
        let engine = handle.clone();
        let stop = shutdown.clone();
        let player = ScenarioLoop(dep.scenarios.clone());
        tasks.spawn(async move { engine.run_source(Box::new(player), stop).await });
    }

    ready.store(true, Ordering::Release);
    #[cfg(feature = "nats")]
    if let (Some(node), Some(at)) = (&node, took_lease_at) {
        let ms = crate::cluster::millis_since(at);
        node.stats.takeover_ms.store(ms, Ordering::Relaxed);
        node.stats.active.store(1, Ordering::Relaxed);
        tracing::info!(node = %node.settings.node, takeover_ms = ms, "active: the engine runs on this node");
        crate::audit_cmd::record_system(
            audit.as_ref(),
            "cluster.active",
            Some(node.settings.node.clone()),
            AuditOutcome::Ok,
            serde_json::json!({ "restored_in_ms": ms }),
        );
        println!(
            "  node        : {} active (engine restored in {ms} ms)",
            node.settings.node
        );
    }
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
        "  API         : http://{local}/api/v1   (health: http://{local}/healthz, metrics: http://{local}/metrics with a metrics.read token)"
    );
    if let Some(a) = metrics_addr {
        println!("  metrics     : http://{a}/metrics   (no token)");
    }
    println!("  data        : {}", db.display());
    println!("  audit log   : {}", audit.path().display());
    println!(
        "  keys        : {} (epoch {})",
        opts.keys_dir.display(),
        pseudonymiser.current_epoch()
    );
    if admin_from_env {
        println!("  login       : admin / (from BEFFROI_ADMIN_PASSWORD)");
    }
    for g in &generated {
        println!(
            "  login       : {} / {}   ({}; generated, shown once)",
            g.name, g.password, g.grants
        );
    }
    tracing::info!(%local, "listening");
    release_start_memory();

    if let Some(metrics_app) = metrics_app {
        metrics_slot.install(metrics_app);
    }
    stop_all.cancelled().await;
    // Why it stops is settled now: leaving on purpose below also ends the ownership.
    #[cfg(feature = "nats")]
    let lost = {
        if let Some(w) = lease_watch.take() {
            w.abort();
        }
        lease_lost.load(Ordering::Acquire)
    };
    tracing::info!("shutting down: draining the pipeline");
    end_streams.cancel();
    http_stop.cancel();
    let result = http_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    // The installed apps hold engine handles: the engine drains once every one is gone.
    drop(app_slot);
    drop(metrics_slot);
    drop(handle);
    engine.shutdown().await;
    // A node that stops on purpose hands the lease over at once; one that lost it leaves
    // nothing to hand over.
    #[cfg(feature = "nats")]
    if let Some(node) = node.take() {
        if lost {
            drop(node);
        } else {
            node.leave().await;
        }
    }
    tracing::info!("stopped");
    result.context("HTTP server")?;
    #[cfg(feature = "nats")]
    if lost {
        return Err(crate::cluster::LeaseLost.into());
    }
    Ok(())
}

/// Cancels `stop` on Ctrl-C or SIGTERM. The handlers are installed by this call, before
/// the server listens: a SIGTERM that arrives as soon as `/healthz` answers must stop it
/// cleanly, not kill it with the default action (a handler installed by a spawned task
/// may not be there yet on a busy machine).
fn stop_on_signal(
    stop: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = stop.cancelled() => return,
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = stop.cancelled() => return,
        }
        stop.cancel();
    })
}

/// The HTTP app a server answers with: `/livez` always (the process serves), the full app
/// once installed, and until then `503 starting` — or, on a cluster node waiting for the
/// lease, the answer of the node running the engine, relayed (`503 standby` when none is
/// reachable).
#[derive(Clone, Default)]
struct AppSlot {
    app: Arc<std::sync::OnceLock<axum::Router>>,
    /// A cluster node on standby relays to the node running the engine.
    #[cfg(feature = "nats")]
    relay: Arc<std::sync::OnceLock<crate::relay::Relay>>,
}

impl AppSlot {
    fn install(&self, app: axum::Router) {
        let _ = self.app.set(app);
    }

    #[cfg(feature = "nats")]
    fn relay_to(&self, relay: crate::relay::Relay) {
        let _ = self.relay.set(relay);
    }

    fn router(&self, node: Option<String>) -> axum::Router {
        use axum::response::IntoResponse;
        use tower::ServiceExt;
        let slot = self.clone();
        axum::Router::new()
            .route("/livez", axum::routing::get(|| async { "ok\n" }))
            .fallback(move |req: axum::extract::Request| {
                let (slot, node) = (slot.clone(), node.clone());
                async move {
                    if let Some(app) = slot.app.get() {
                        return match app.clone().oneshot(req).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        };
                    }
                    #[cfg(feature = "nats")]
                    if let Some(relay) = slot.relay.get() {
                        return relay.answer(req).await;
                    }
                    match node {
                        #[cfg(feature = "nats")]
                        Some(node) => crate::cluster::standby_answer(&node),
                        _ => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                            .into_response(),
                    }
                }
            })
    }
}

impl AppSlot {
    /// The app of the unauthenticated metrics address: the installed one, and until then
    /// `/metrics` from the registry alone (a standby's lease and forwarder counters).
    fn metrics_router(&self, metrics: Arc<beffroi_engine::metrics::Metrics>) -> axum::Router {
        use axum::response::IntoResponse;
        use tower::ServiceExt;
        let slot = Arc::clone(&self.app);
        axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (slot, metrics) = (Arc::clone(&slot), Arc::clone(&metrics));
            async move {
                match slot.get() {
                    Some(app) => match app.clone().oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    },
                    None if req.uri().path() == "/metrics" => (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                        .into_response(),
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        })
    }
}

fn web_security(http: &crate::config::HttpSettings) -> beffroi_api::WebSecurity {
    beffroi_api::WebSecurity {
        secure_cookies: http.behind_tls,
        hsts: http.behind_tls,
        trusted_proxies: http.trusted_proxies.clone().into(),
        cluster_peers: Default::default(),
    }
}

/// The demo's scenario player as a source component: named `simulator`, it waits when the
/// engine's queue is full (the scenarios wait with it).
struct ScenarioLoop(Vec<Arc<beffroi_sim::Scenario>>);

impl IngestSource for ScenarioLoop {
    fn config(&self) -> SourceConfig {
        SourceConfig {
            source: Source::SIMULATOR,
            overload: Overload::Wait,
        }
    }

    fn run(
        self: Box<Self>,
        port: SourcePort,
        shutdown: CancellationToken,
    ) -> futures::future::BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            loop_scenarios(self.0, port, shutdown).await;
            Ok(())
        })
    }
}

/// Plays the demo scenarios in a loop on the engine's clock: background and every scenario
/// together, restarting when the longest ends.
async fn loop_scenarios(
    scenarios: Vec<Arc<beffroi_sim::Scenario>>,
    port: SourcePort,
    shutdown: CancellationToken,
) {
    let clock = port.clock();
    let territory = Arc::clone(port.territory());
    let territory_id = territory.id.to_string();
    let mut messages = Vec::new();
    let mut signals = Vec::new();
    let mut round = 0u32;
    loop {
        round += 1;
        let start = clock.now();
        let mut player = beffroi_sim::Player::new(
            Arc::clone(&territory),
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
            let now = clock.now();
            messages.clear();
            player.drain_until(now.since(start), &mut messages);
            signals.clear();
            player.drain_signals_until(now.since(start), &mut signals);
            for (_, s) in signals.drain(..) {
                port.security_signal(s);
            }
            for m in messages.drain(..) {
                let hint = m
                    .topic
                    .split('/')
                    .nth(2)
                    .filter(|_| m.topic.starts_with("beffroi/"));
                let env = Envelope {
                    source: Source::SIMULATOR,
                    format: m.format,
                    device_hint: hint.map(Into::into),
                    payload: Bytes::from(m.payload),
                    authenticated: false,
                    received: now,
                    stream: None,
                    ack: None,
                };
                if port.submit(env).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Gives back to the system the heap that loading the deployment used and freed: parsing a
/// large territory's files peaks at several times what the territory holds once built, and
/// glibc's allocator keeps freed pages mapped until told otherwise. Without it a
/// 1,000,000-device node idles at the parse's high-water mark.
fn release_start_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` only returns free pages of the heap to the kernel; it takes
        // the allocator's locks itself and touches no memory in use.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(released = released == 1, "free heap returned to the system");
    }
}
