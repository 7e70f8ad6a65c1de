//! `beffroi import`: devices and sites from a spreadsheet (CSV), a GIS layer (GeoJSON) or
//! a LoRaWAN network server's device list (ChirpStack, The Things Stack) into a
//! deployment folder. Validates everything against the territory first, prints what
//! would change, writes only when every file of the result loads, and re-loads the whole
//! deployment afterwards, putting the files back as they were if it does not load.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use beffroi_import::{
    Catalogue, DeploymentFiles, Format, ImportErrors, KindMap, LnsOptions, Records,
};
use beffroi_territory::SourceFile;
use clap::Args as ClapArgs;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Deployment folder (with `territory/`) or territory folder.
    #[arg(long)]
    dir: PathBuf,
    /// Prints what would change; writes nothing.
    #[arg(long)]
    dry_run: bool,
    /// CSV of devices: id, kind, site[, longitude, latitude, dev_eui] (docs/templates/devices.csv).
    #[arg(long, value_name = "FILE")]
    csv_devices: Vec<PathBuf>,
    /// CSV of sites: id, name, kind, commune, longitude, latitude[, zone, river] (docs/templates/sites.csv).
    #[arg(long, value_name = "FILE")]
    csv_sites: Vec<PathBuf>,
    /// GeoJSON FeatureCollection (a QGIS export in EPSG:4326): features with a `site`
    /// property are devices, the others sites.
    #[arg(long, value_name = "FILE")]
    geojson: Vec<PathBuf>,
    /// ChirpStack v4 device list: the answer of `GET /api/devices?applicationId=…`.
    #[arg(long, value_name = "FILE")]
    chirpstack: Vec<PathBuf>,
    /// The Things Stack device list: `ttn-lw-cli end-devices list APP --name --attributes
    /// --version-ids --locations`.
    #[arg(long, value_name = "FILE")]
    tts: Vec<PathBuf>,
    /// Kind map for network servers' devices (TOML: `[profiles]` device profile → kind,
    /// `[tags]` the tags naming site and kind).
    #[arg(long, value_name = "FILE")]
    kind_map: Option<PathBuf>,
    /// Site of network servers' devices whose tags name none.
    #[arg(long, value_name = "SITE")]
    site: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    match import(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The territory folder of a deployment folder, as `check` finds it.
fn territory_dir(dir: &Path) -> PathBuf {
    if dir.join("territory.toml").exists() {
        dir.to_path_buf()
    } else {
        dir.join("territory")
    }
}

fn print_errors(errors: &ImportErrors) {
    let mut errors = errors.clone();
    errors.sort();
    for e in errors.iter() {
        eprintln!("{e}");
    }
    eprintln!("{} error(s); nothing written", errors.len());
}

fn import(args: &Args) -> Result<ExitCode> {
    let sources: Vec<(Format, &PathBuf)> = [
        (Format::CsvSites, &args.csv_sites),
        (Format::GeoJson, &args.geojson),
        (Format::CsvDevices, &args.csv_devices),
        (Format::ChirpStack, &args.chirpstack),
        (Format::TheThingsStack, &args.tts),
    ]
    .into_iter()
    .flat_map(|(f, paths)| paths.iter().map(move |p| (f, p)))
    .collect();
    if sources.is_empty() {
        bail!(
            "nothing to import: give --csv-devices, --csv-sites, --geojson, --chirpstack or --tts"
        );
    }
    let tdir = territory_dir(&args.dir);
    let territory = match beffroi_territory::load_dir(&tdir) {
        Ok(t) => t,
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{e}");
            }
            bail!(
                "the deployment does not load as it is ({} error(s)); `beffroi check {}` shows them; fix them before importing",
                errors.len(),
                args.dir.display()
            );
        }
    };
    let catalogue = Catalogue::of(&territory);
    let mut errors = ImportErrors::default();
    let map = match &args.kind_map {
        None => KindMap::empty(),
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            match beffroi_import::read_kind_map(&p.display().to_string(), &bytes) {
                Ok(m) => {
                    errors.extend(beffroi_import::validate_kind_map(&m, &catalogue));
                    m
                }
                Err(e) => {
                    errors.extend(e);
                    KindMap::empty()
                }
            }
        }
    };
    let lns = LnsOptions {
        map: &map,
        default_site: args.site.as_deref(),
    };
    let mut records = Records::default();
    for (format, path) in &sources {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        match beffroi_import::read(*format, &path.display().to_string(), &bytes, lns) {
            Ok(r) => records.extend(r),
            Err(e) => errors.extend(e),
        }
    }
    errors.extend(std::mem::take(&mut records.errors));
    for n in &records.notes {
        println!("note: {n}");
    }
    errors.extend(beffroi_import::validate(&records, &catalogue));
    if !errors.is_empty() {
        print_errors(&errors);
        return Ok(ExitCode::FAILURE);
    }

    let sources_now =
        beffroi_territory::read_dir_sources(&tdir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let files = DeploymentFiles {
        devices: sources_now
            .iter()
            .filter(|f| f.path.starts_with("devices/"))
            .map(|f| (f.path.clone(), f.text.clone()))
            .collect(),
        sites: sources_now
            .iter()
            .find(|f| f.path == "sites.geojson")
            .map(|f| f.text.clone())
            .unwrap_or_default(),
    };
    let plan = match beffroi_import::plan(&files, &records) {
        Ok(p) => p,
        Err(e) => {
            print_errors(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    print!("{plan}");
    if plan.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let writes = match beffroi_import::apply(&plan, &files) {
        Ok(w) => w,
        Err(e) => {
            print_errors(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    // The territory as it would be: it must load before anything is written.
    let mut after: Vec<SourceFile> = sources_now
        .iter()
        .filter(|f| !writes.iter().any(|w| w.path == f.path))
        .cloned()
        .collect();
    after.extend(
        writes
            .iter()
            .map(|w| SourceFile::new(w.path.clone(), w.text.clone())),
    );
    if let Err(e) = beffroi_territory::load(&after) {
        for err in e.iter() {
            eprintln!("{err}");
        }
        bail!(
            "the territory would not load after this import ({} error(s)); nothing written",
            e.len()
        );
    }
    if args.dry_run {
        println!(
            "dry run: nothing written ({} file(s) would change)",
            writes.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut written: Vec<(PathBuf, Option<String>)> = Vec::new();
    let result = (|| -> Result<()> {
        for w in &writes {
            let path = tdir.join(&w.path);
            let old = sources_now
                .iter()
                .find(|f| f.path == w.path)
                .map(|f| f.text.clone());
            write_atomically(&path, &w.text)?;
            written.push((path, old));
        }
        crate::setup::load_dir(&args.dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    })();
    if let Err(e) = result {
        for (path, old) in written.iter().rev() {
            let undo = match old {
                Some(text) => write_atomically(path, text),
                None => std::fs::remove_file(path).map_err(Into::into),
            };
            if let Err(u) = undo {
                eprintln!("error: could not put {} back: {u:#}", path.display());
            }
        }
        return Err(e.context(
            "the deployment did not load after the import; its files are back as they were",
        ));
    }
    for (path, old) in &written {
        println!(
            "{} {}",
            if old.is_some() { "updated" } else { "created" },
            path.display()
        );
    }
    println!("{}: OK", args.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Replaces a file through a temporary one in the same folder, so that a reader never
/// sees half of it.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("import.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
