//! `beffroi`: safe-city hypervision for a territory, in one binary.

mod accounts;
mod audit_cmd;
mod backend;
mod backoff;
mod backup;
mod bench;
#[cfg(feature = "mqtt")]
mod bench_mqtt;
mod cap_feeds;
#[cfg(feature = "nats")]
mod cluster;
mod config;
mod conns;
mod devices_cmd;
mod federation;
mod files;
mod hubeau_feed;
mod import_cmd;
mod init_cmd;
mod lint;
#[cfg(feature = "mqtt")]
mod mqtt;
mod peer;
mod privacy_cmd;
mod registry;
#[cfg(feature = "nats")]
mod relay;
mod reload;
mod server;
mod setup;
mod simulate;
mod taxii_pull;
mod vault;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use beffroi_core::Timestamp;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "beffroi",
    version,
    about = "Beffroi — safe-city hypervision for towns and intercommunalities.\n\
Veille sur un territoire : capteurs → règles → incidents → poste de commandement."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the demo: the embedded Dijon Métropole territory, its rules and scenarios
    /// looping at an accelerated speed, SQLite in a data folder, the API on loopback.
    Demo {
        /// Address of the HTTP API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data folder (SQLite database).
        #[arg(long, default_value = "beffroi-data")]
        data: PathBuf,
        /// Simulated seconds per wall-clock second.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// Also ingest from this MQTT broker, e.g. mqtt://127.0.0.1:1883.
        #[arg(long)]
        mqtt: Option<String>,
        /// MQTT protocol version for --mqtt: 4 (3.1.1) or 5.
        #[arg(long, default_value_t = 5)]
        mqtt_protocol: u8,
        /// Base map of the console: raster tile URL template (`…/{z}/{x}/{y}.png`).
        #[arg(long, conflicts_with = "pmtiles")]
        tiles: Option<String>,
        /// Base map of the console: a local PMTiles file.
        #[arg(long)]
        pmtiles: Option<PathBuf>,
        /// Start a new audit log where it is missing or empty although the data folder
        /// holds data (or anchor again a log whose anchor is missing); the reason is
        /// recorded as the new log's first entry.
        #[arg(long, value_name = "REASON")]
        new_audit_log: Option<String>,
        /// Also runs a neighbouring territory on the next port (data in `<data>-peer`),
        /// under an agreement: the demo's floods in Dijon and Longvic appear there as
        /// incidents from a neighbour.
        #[arg(long)]
        peer: bool,
    },
    /// Runs Beffroi from a configuration file (see README: "Configuration").
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Start a new audit log where it is missing or empty although the data folder
        /// holds data (or anchor again a log whose anchor is missing); the reason is
        /// recorded as the new log's first entry.
        #[arg(long, value_name = "REASON")]
        new_audit_log: Option<String>,
    },
    /// Validates a deployment folder (territory/, rules.toml, procedures.toml, scenarios/)
    /// or a bare territory folder, and reports every error with file, line and field.
    Check { dir: PathBuf },
    /// Creates a new deployment folder for a territory from the official list of communes
    /// (`--commune INSEE…`, `--epci SIREN|NAME` or `--departement CODE`), with commented
    /// example kinds, rules, procedures, units and privacy settings to edit.
    Init(init_cmd::Args),
    /// Imports devices and sites from CSV, GeoJSON or a LoRaWAN network server's device
    /// list into a deployment folder (`--dry-run` prints what would change).
    Import(import_cmd::Args),
    /// Plays scenarios or a steady load into an MQTT broker or Beffroi's HTTP endpoint
    /// (also the load generator).
    Simulate(simulate::Args),
    /// Measures the pipeline (see BENCHMARKS.md).
    Bench(bench::Args),
    /// The tamper-evident audit log: `verify` its chain and signatures, `show` its entries.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Writes the accounts file: hash a password, add a user, add an API token.
    #[command(subcommand)]
    Users(accounts::UsersCommand),
    /// Per-device credentials: list, issue, rotate, revoke, and the broker's
    /// password and ACL files generated from them.
    Devices(devices_cmd::Args),
    /// Privacy: the DPO's documents (`register`, `notices`) and the pseudonymisation keys
    /// (`keys list|rotate|destroy`).
    Privacy {
        #[command(subcommand)]
        command: privacy_cmd::PrivacyCommand,
    },
    /// Federation with neighbouring instances: `key` prints this instance's public key.
    Federation {
        #[command(subcommand)]
        command: federation::FederationCommand,
    },
    /// Cyber threat sharing (TAXII 2.1): `token` makes a partner's credential.
    Taxii {
        #[command(subcommand)]
        command: taxii_pull::TaxiiCommand,
    },
    /// Copies every store of the data folder into a new backup folder while the server
    /// runs (SQLite's online backup), with a manifest of checksums; `--keys` copies the
    /// keys instead, never into the same backup (docs/operations.md).
    Backup(backup::BackupArgs),
    /// Restores a backup into a fresh data folder (or the keys beside it), after checking
    /// every file against the manifest.
    Restore(backup::RestoreArgs),
}

/// The demo's options for one territory on `listen` with `data`.
#[allow(clippy::too_many_arguments)]
fn demo_options(
    dep: &setup::Deployment,
    listen: String,
    data: PathBuf,
    clock: Arc<dyn beffroi_core::Clock>,
    simulate: bool,
    mqtt: Option<config::MqttSettings>,
    console: beffroi_console::Settings,
    new_audit_log: Option<String>,
) -> server::RunOptions {
    let keys_dir = vault::default_dir(&data, &dep.territory.id);
    server::RunOptions {
        listen,
        audit: config::AuditSettings::default().to_config(&data, audit_cmd::key_override()),
        audit_retain: config::AuditSettings::default().retention(),
        audit_pinned_key: None,
        new_audit_log,
        config_source: server::ConfigSource {
            target: "embedded demo".into(),
            files: audit_cmd::demo_digests(),
        },
        data_dir: data,
        keys_dir,
        retention: Some(beffroi_core::Duration::from_mins(60 * 24 * 7)),
        close_resolved_after: Some(config::DEFAULT_CLOSE_RESOLVED_AFTER),
        commit_window: config::DEFAULT_COMMIT_WINDOW,
        unmask_approval: Default::default(),
        clock,
        simulate,
        store: config::StoreLocation::Sqlite,
        nats: None,
        http: config::HttpSettings::default(),
        mqtt,
        console,
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BEFFROI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Check { dir } => return check(&dir),
        Command::Import(args) => return import_cmd::run(args),
        Command::Init(args) => return init_cmd::run(args),
        Command::Audit { command } => return audit_cmd::run(command),
        Command::Demo {
            listen,
            data,
            speed,
            mqtt,
            mqtt_protocol,
            tiles,
            pmtiles,
            new_audit_log,
            peer,
        } => runtime().and_then(|rt| {
            rt.block_on(async {
                let new_audit_log = reason(new_audit_log)?;
                let mut dep = setup::load_demo()?;
                let console = beffroi_console::Settings {
                    tiles,
                    pmtiles,
                    attribution: None,
                };
                console.validate().map_err(|e| anyhow::anyhow!("--{e}"))?;
                let now = beffroi_engine::runner::SystemClock;
                let clock: Arc<dyn beffroi_core::Clock> = Arc::new(
                    beffroi_engine::runner::ScaledClock::new(beffroi_core::Clock::now(&now), speed),
                );
                let mqtt = mqtt.map(|url| config::MqttSettings {
                    url,
                    client_id: "beffroi-demo".into(),
                    protocol: mqtt_protocol,
                    topics: None,
                    username: None,
                    broker_auth: false,
                    reconnect_max: None,
                });
                if !peer {
                    let opts = demo_options(
                        &dep,
                        listen,
                        data,
                        Arc::clone(&clock),
                        true,
                        mqtt,
                        console,
                        new_audit_log,
                    );
                    return server::run(dep, opts).await;
                }
                let peer_listen = peer::next_port(&listen)?;
                let mut peer_dep = setup::load_demo()?;
                let peer_data = peer::data_dir(&data);
                peer::agree(
                    &mut dep,
                    &mut peer_dep,
                    &listen,
                    &peer_listen,
                    &data,
                    &peer_data,
                )?;
                let opts = demo_options(
                    &dep,
                    listen,
                    data,
                    Arc::clone(&clock),
                    true,
                    mqtt,
                    console.clone(),
                    new_audit_log.clone(),
                );
                let mut peer_opts = demo_options(
                    &peer_dep,
                    peer_listen,
                    peer_data,
                    clock,
                    false,
                    None,
                    console,
                    new_audit_log,
                );
                // The two data folders are siblings: the neighbour's audit key is its own.
                peer_opts.audit.key_file = peer_opts
                    .audit
                    .key_file
                    .with_file_name("audit-signing-peer.key");
                tokio::try_join!(server::run(dep, opts), server::run(peer_dep, peer_opts))
                    .map(|_| ())
            })
        }),
        Command::Serve {
            config,
            new_audit_log,
        } => runtime().and_then(|rt| {
            rt.block_on(async {
                let new_audit_log = reason(new_audit_log)?;
                let cfg = setup::read_config(&config)?;
                let dep = setup::load_dir(&cfg.deployment).map_err(|e| {
                    anyhow::anyhow!("{} is invalid:\n{e}", cfg.deployment.display())
                })?;
                let keys_dir = cfg
                    .keys_dir
                    .clone()
                    .unwrap_or_else(|| vault::default_dir(&cfg.data_dir, &dep.territory.id));
                let mut files = vec![config.clone()];
                files.extend(audit_cmd::deployment_files(&cfg.deployment));
                server::run(
                    dep,
                    server::RunOptions {
                        listen: cfg.listen,
                        audit: cfg
                            .audit
                            .to_config(&cfg.data_dir, audit_cmd::key_override()),
                        audit_retain: cfg.audit.retention(),
                        audit_pinned_key: cfg.audit.pinned_public_key.clone(),
                        new_audit_log,
                        config_source: server::ConfigSource {
                            target: cfg.deployment.display().to_string(),
                            files: audit_cmd::digest_files(&files),
                        },
                        data_dir: cfg.data_dir,
                        keys_dir,
                        retention: cfg.retention,
                        close_resolved_after: cfg.close_resolved_after,
                        commit_window: cfg.commit_window,
                        unmask_approval: cfg.unmask_approval,
                        clock: Arc::new(beffroi_engine::runner::SystemClock),
                        simulate: false,
                        store: cfg.store,
                        nats: cfg.nats,
                        http: cfg.http,
                        mqtt: cfg.mqtt,
                        console: cfg.console,
                    },
                )
                .await
            })
        }),
        Command::Simulate(args) => runtime().and_then(|rt| rt.block_on(simulate::run(args))),
        Command::Bench(args) => bench::run(args),
        Command::Users(cmd) => accounts::run(cmd),
        Command::Devices(args) => devices_cmd::run(args),
        Command::Privacy { command } => privacy_cmd::run(command),
        Command::Taxii { command } => taxii_pull::command(command),
        Command::Federation { command } => federation::command(command),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            #[cfg(feature = "nats")]
            if e.downcast_ref::<cluster::LeaseLost>().is_some() {
                return ExitCode::from(cluster::LOST_LEASE_EXIT);
            }
            ExitCode::FAILURE
        }
    }
}

/// `--new-audit-log`'s reason: not blank.
fn reason(r: Option<String>) -> Result<Option<String>> {
    match r {
        Some(r) if r.trim().is_empty() => {
            anyhow::bail!("--new-audit-log needs a reason, recorded in the new log")
        }
        r => Ok(r),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn check(dir: &std::path::Path) -> ExitCode {
    match setup::load_dir(dir) {
        Ok(dep) => {
            println!(
                "{}: OK — territory `{}`: {} communes, {} zones, {} sites, {} device kinds, {} devices; {} rules; {} procedures; {} units; {} crisis roles; {} situation families; {} scenarios; {} events; {} processing activities in the register",
                dir.display(),
                dep.territory.id,
                dep.territory.communes.len(),
                dep.territory.zones.len(),
                dep.territory.sites.len(),
                dep.territory.kinds.len(),
                dep.territory.devices.len(),
                dep.rules.len(),
                dep.procedures.len(),
                dep.operations.units.len(),
                dep.operations.roles.len(),
                dep.operations.families.len(),
                dep.scenarios.len(),
                dep.events.len(),
                dep.privacy.activities.len()
            );
            // The register must be complete: every activity with purposes, legal basis and
            // people concerned, every personal field (devices and Beffroi's own records)
            // in an activity.
            let register = privacy_cmd::register_of(&dep);
            println!("{}", register.summary.line());
            for d in &register.declared_fields {
                println!(
                    "note: `{}.{}` observes public space with a meaning outside the closed set, declared as: {} (shown in the register)",
                    d.kind, d.field, d.declaration
                );
            }
            // Free technical text is scrubbed at ingest, yet whatever else it carries is
            // kept: the town can close it by declaring what the field may hold.
            for (k, f) in dep.territory.free_text_fields() {
                println!(
                    "warning: `{}.{}` is free technical text: identifiers found in it are \
                     pseudonymised, anything else a device writes there is kept; declare \
                     `values = [...]` or `pattern = \"...\"` in kinds.toml so that anything \
                     else is refused (text_not_allowed)",
                    k.id, f.name
                );
            }
            for w in lint::warnings(&dep, dir) {
                println!("{w}");
            }
            if dep.privacy.activities.is_empty() {
                println!(
                    "note: no privacy.toml: the register is not configured (Beffroi's own records still hold staff names and notes; see docs/privacy.md)"
                );
            }
            if register.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                for p in &register.problems {
                    eprintln!("{}: {p}", dir.join("privacy.toml").display());
                }
                eprintln!("{} error(s)", register.problems.len());
                ExitCode::FAILURE
            }
        }
        Err(errors) => {
            // File by file (in the order they were read), each in the order of its lines.
            let mut files: Vec<&str> = Vec::new();
            for e in errors.iter() {
                if !files.contains(&e.file.as_str()) {
                    files.push(&e.file);
                }
            }
            let mut sorted: Vec<_> = errors.iter().collect();
            sorted.sort_by_key(|e| (files.iter().position(|f| *f == e.file), e.line, e.column));
            for e in sorted {
                eprintln!("{e}");
            }
            eprintln!("{} error(s)", errors.len());
            ExitCode::FAILURE
        }
    }
}

/// Milliseconds since the epoch of the wall clock.
pub fn wall_now() -> Timestamp {
    beffroi_core::Clock::now(&beffroi_engine::runner::SystemClock)
}
