//! `beffroi privacy register|notices|keys`: the DPO's documents generated from a deployment
//! folder (or the embedded demo), written to files (docs/privacy.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::setup::{self, Deployment};

#[derive(Subcommand)]
pub enum PrivacyCommand {
    /// The pseudonymisation keys of the territory: list, rotate, destroy.
    Keys(crate::vault::KeysArgs),
    /// Writes the register of processing activities (GDPR art. 30) as HTML or JSON,
    /// chosen by the extension of --out.
    Register {
        /// Deployment folder; the embedded demo when omitted.
        dir: Option<PathBuf>,
        /// `register.html` or `register.json`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes the public notice of every device observing public space (one HTML page
    /// per device) and an `index.html` into a folder.
    Notices {
        /// Deployment folder; the embedded demo when omitted.
        dir: Option<PathBuf>,
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
    },
}

fn deployment(dir: Option<&Path>) -> Result<Deployment> {
    match dir {
        None => setup::load_demo(),
        Some(d) => {
            setup::load_dir(d).map_err(|e| anyhow::anyhow!("{} is invalid:\n{e}", d.display()))
        }
    }
}

pub fn run(cmd: PrivacyCommand) -> Result<()> {
    match cmd {
        PrivacyCommand::Keys(args) => crate::vault::run(args),
        PrivacyCommand::Register { dir, out } => {
            let dep = deployment(dir.as_deref())?;
            let reg = register_of(&dep);
            let text = match out.extension().and_then(|e| e.to_str()) {
                Some("json") => serde_json::to_string_pretty(&reg)? + "\n",
                Some("html" | "htm") => beffroi_dpo::html::register(&reg),
                _ => bail!("--out must end in .html or .json: {}", out.display()),
            };
            std::fs::write(&out, text)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{}: {}", out.display(), reg.summary.line());
            for p in &reg.problems {
                eprintln!("{p}");
            }
            Ok(())
        }
        PrivacyCommand::Notices { dir, out } => {
            let dep = deployment(dir.as_deref())?;
            let notices = beffroi_dpo::notice::all(&dep.territory, &dep.privacy);
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            for n in &notices {
                let path = out.join(format!(
                    "{}.html",
                    beffroi_dpo::notice::file_stem(&n.device)
                ));
                std::fs::write(&path, beffroi_dpo::html::notice(n))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let index = out.join("index.html");
            std::fs::write(
                &index,
                beffroi_dpo::html::notices_index(&dep.territory.name, &notices),
            )
            .with_context(|| format!("cannot write {}", index.display()))?;
            println!(
                "{}: {} public notices and index.html",
                out.display(),
                notices.len()
            );
            Ok(())
        }
    }
}

/// The register of a deployment, generated now.
pub fn register_of(dep: &Deployment) -> beffroi_dpo::Register {
    beffroi_dpo::register::build(
        &dep.territory,
        &dep.privacy,
        beffroi_core::privacy::RECORD_FIELDS,
        crate::wall_now(),
    )
}
