//! `beffroi devices`: issue, rotate and revoke per-device credentials and keep the broker's
//! password and ACL files in sync with the registry.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args as ClapArgs, Subcommand};

use beffroi_registry::broker::{self, BrokerSettings};
use beffroi_registry::{CredentialStore, DeviceId, Issued, Status};

use crate::registry;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Data folder (the registry is `<data>/devices.sqlite`).
    #[arg(long, default_value = "beffroi-data")]
    data: PathBuf,
    /// The registry in this PostgreSQL database instead: a cluster's (`[cluster] database`),
    /// which every node reads. Pass `--database "$BEFFROI_DATABASE_URL"` to keep the
    /// password off the command line's history.
    #[arg(long, conflicts_with = "data")]
    database: Option<String>,
    /// Folder of the broker's `passwd` and `acl` files: rewritten after every change.
    #[arg(long, env = "BEFFROI_BROKER_DIR")]
    broker_dir: Option<PathBuf>,
    /// Pid file of Mosquitto: sent SIGHUP after the files change, so that it rereads them.
    #[arg(long, env = "BEFFROI_BROKER_PID_FILE")]
    broker_pid_file: Option<PathBuf>,
    /// Topic prefix before the device id in the ACL.
    #[arg(long, default_value = "beffroi/+")]
    topic_prefix: String,
    /// Broker user of Beffroi's ingest (its password: `BEFFROI_MQTT_PASSWORD`).
    #[arg(long, default_value = "beffroi")]
    ingest_user: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Lists every device's current credential (never a secret).
    List,
    /// Issues credentials; prints each secret once (password and signing key, base64).
    Issue {
        /// Device ids.
        ids: Vec<String>,
        /// Every device of the deployment's territory that has no credential in force.
        #[arg(long, requires = "deployment")]
        all: bool,
        /// Every device of this kind (with --deployment).
        #[arg(long, requires = "deployment")]
        kind: Option<String>,
        /// Deployment or territory folder, to check ids and select devices.
        #[arg(long)]
        deployment: Option<PathBuf>,
        /// Writes the secrets to this new file (0600) instead of the terminal.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replaces a device's credential (the old one is refused at once).
    Rotate {
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revokes a device's credential.
    Revoke { id: String },
    /// Writes the broker's `passwd` and `acl` files (to --out, or --broker-dir).
    BrokerFiles {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<()> {
    // Check before changing the registry that the broker files can be written after.
    let writes_files = args.broker_dir.is_some() || matches!(args.command, Cmd::BrokerFiles { .. });
    if writes_files
        && !matches!(args.command, Cmd::List)
        && std::env::var_os("BEFFROI_MQTT_PASSWORD").is_none()
    {
        bail!(
            "BEFFROI_MQTT_PASSWORD (the ingest user's broker password) is not set: the broker files cannot be written"
        );
    }
    let at = match &args.database {
        Some(url) => registry::Location::Postgres(url.clone()),
        None => registry::Location::Dir(args.data.clone()),
    };
    let mut reg = registry::open(&at)?;
    match &args.command {
        Cmd::List => {
            println!("device\tgeneration\tstatus\tissued_at\trevoked_at");
            for e in reg.list()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    e.device,
                    e.generation,
                    e.status,
                    e.issued_at,
                    e.revoked_at.map(|t| t.to_string()).unwrap_or_default()
                );
            }
            return Ok(());
        }
        Cmd::Issue {
            ids,
            all,
            kind,
            deployment,
            out,
        } => {
            let mut wanted: Vec<String> = ids.clone();
            if let Some(dir) = deployment {
                let territory = load_territory(dir)?;
                for id in &wanted {
                    if territory.device_id(id).is_none() {
                        bail!("{id} is not a device of the territory");
                    }
                }
                if *all || kind.is_some() {
                    let current: std::collections::BTreeSet<String> = reg
                        .list()?
                        .into_iter()
                        .filter(|e| e.status == Status::Issued)
                        .map(|e| e.device)
                        .collect();
                    for d in &territory.devices {
                        let k = territory.kind(d.kind);
                        if kind.as_deref().is_some_and(|want| &*k.id != want) {
                            continue;
                        }
                        if !current.contains(&*d.id) && !wanted.iter().any(|w| *w == *d.id) {
                            wanted.push(d.id.to_string());
                        }
                    }
                }
            }
            if wanted.is_empty() {
                bail!("no device to issue (give ids, or --all / --kind with --deployment)");
            }
            // Every id checked before the registry changes.
            let wanted = wanted
                .iter()
                .map(|id| DeviceId::parse(id))
                .collect::<Result<Vec<_>, _>>()?;
            let mut issued = Vec::new();
            for id in &wanted {
                issued.push(beffroi_registry::issue(reg.as_mut(), id, now_secs())?);
            }
            emit(&issued, out.as_deref())?;
        }
        Cmd::Rotate { id, out } => {
            let i = beffroi_registry::rotate(reg.as_mut(), &DeviceId::parse(id)?, now_secs())?;
            emit(&[i], out.as_deref())?;
        }
        Cmd::Revoke { id } => {
            reg.revoke(&DeviceId::parse(id)?, now_secs())?;
            eprintln!("{id}: revoked");
        }
        Cmd::BrokerFiles { out } => {
            let dir = out
                .clone()
                .or_else(|| args.broker_dir.clone())
                .context("--out or --broker-dir")?;
            sync(reg.as_ref(), &args, &dir)?;
            return Ok(());
        }
    }
    if let Some(dir) = &args.broker_dir {
        sync(reg.as_ref(), &args, dir)?;
    } else {
        eprintln!("note: no --broker-dir; run `beffroi devices broker-files` to update the broker");
    }
    Ok(())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sync(reg: &dyn CredentialStore, args: &Args, dir: &Path) -> Result<()> {
    let ingest_password = std::env::var("BEFFROI_MQTT_PASSWORD")
        .context("BEFFROI_MQTT_PASSWORD (the ingest user's broker password) is not set")?;
    let settings = BrokerSettings {
        prefix: args.topic_prefix.clone(),
        ingest_user: args.ingest_user.clone(),
        ingest_password,
    };
    let files = broker::render(&reg.active()?, &settings)?;
    registry::write_broker_files(dir, &files)?;
    eprintln!("broker files written to {}", dir.display());
    if let Some(pid) = &args.broker_pid_file {
        registry::reload_broker(pid)?;
        eprintln!("broker told to reload");
    }
    Ok(())
}

fn load_territory(dir: &Path) -> Result<beffroi_core::Territory> {
    let t = if dir.join("territory").is_dir() {
        dir.join("territory")
    } else {
        dir.to_path_buf()
    };
    beffroi_territory::load_dir(&t).map_err(|e| anyhow::anyhow!("{} is invalid:\n{e}", t.display()))
}

fn emit(issued: &[Issued], out: Option<&Path>) -> Result<()> {
    let mut text = String::from("device\tgeneration\tpassword\tsigning_key_base64\n");
    for i in issued {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            i.device,
            i.generation,
            i.password,
            STANDARD.encode(i.key)
        ));
    }
    match out {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {} (must not exist)", path.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            eprintln!(
                "{} credential(s) written to {}: provision them, then delete the file",
                issued.len(),
                path.display()
            );
        }
        None => {
            print!("{text}");
            eprintln!("these secrets are shown once and cannot be read back");
        }
    }
    Ok(())
}
