//! Loading a deployment (territory, rules, procedures, scenarios) from a folder or from
//! the demo embedded in the binary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use beffroi_core::Territory;
use beffroi_core::incident::Procedure;
use beffroi_engine::operations::{self, Operations};
use beffroi_rules::RuleSet;
use beffroi_sim::Scenario;
use beffroi_territory::{ConfigErrors, SourceFile};
use include_dir::{Dir, include_dir};

/// The demo deployment (Dijon Métropole), compiled into the binary.
pub static DEMO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../demo");

/// Everything a running Beffroi needs from configuration.
pub struct Deployment {
    pub territory: Arc<Territory>,
    pub rules: Arc<RuleSet>,
    pub procedures: Vec<Procedure>,
    /// Units, escalation delays and safeguard-plan roles (`units.toml`, `escalation.toml`,
    /// `crisis.toml`; each optional).
    pub operations: Operations,
    pub scenarios: Vec<Arc<Scenario>>,
    /// Events of `events.toml` (relative times resolved when the deployment is loaded).
    pub events: Vec<beffroi_rules::EventRules>,
    /// Files to watch for hot reload (none for the embedded demo).
    pub rules_path: Option<PathBuf>,
    pub procedures_path: Option<PathBuf>,
    /// Folder of `units.toml` and `escalation.toml`, watched for hot reload.
    pub operations_dir: Option<PathBuf>,
    /// Anomaly-detection thresholds and quarantine policy (`security.toml`, optional).
    pub security: beffroi_engine::sentinel::SecurityConfig,
    /// Controller, retention per category, aggregates and the register of processing
    /// (`privacy.toml`; required as soon as a field is personal).
    pub privacy: beffroi_core::PrivacyPolicy,
    /// The public alerts announced as CAP 1.2 (`cap.toml`, optional: none without it).
    pub cap: Option<beffroi_api::cap::CapPolicy>,
    /// Hub'Eau stations read as devices (`hubeau.toml`, optional: none without it).
    pub hubeau: Option<Arc<beffroi_hubeau::HubeauConfig>>,
    /// Cyber threat sharing over TAXII 2.1 (`taxii.toml`, optional: none without it).
    pub taxii: Option<Arc<beffroi_api::taxii::TaxiiPolicy>>,
    /// Agreements with neighbouring instances (`federation.toml`, optional: none without it).
    pub federation: Option<Arc<beffroi_federation::Federation>>,
}

/// The categories the rules raise, each once.
fn categories_of(rules: &RuleSet) -> Vec<&str> {
    let mut categories: Vec<&str> = rules.rules.iter().map(|r| &*r.category).collect();
    categories.sort_unstable();
    categories.dedup();
    categories
}

/// Reads `cap.toml` against the categories the rules raise.
fn cap_of(src: &SourceFile, rules: &RuleSet) -> Result<beffroi_api::cap::CapPolicy, ConfigErrors> {
    beffroi_api::cap::parse_policy(src, &categories_of(rules))
}

/// Reads and parses an optional file of a deployment folder: `None` when it is absent, or
/// cannot be read or parsed (the errors go to `errors`).
fn if_present<T>(
    path: &Path,
    errors: &mut ConfigErrors,
    parse: impl FnOnce(&SourceFile) -> Result<T, ConfigErrors>,
) -> Option<T> {
    if !path.exists() {
        return None;
    }
    match SourceFile::read(path) {
        Ok(src) => parse(&src).map_err(|e| errors.extend(e)).ok(),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// Loads `privacy.toml` (or the unconfigured policy when absent) and checks the
/// territory's personal fields against its register.
fn privacy_of(
    src: Option<&SourceFile>,
    territory: &Territory,
    kinds_path: &str,
) -> Result<beffroi_core::PrivacyPolicy, ConfigErrors> {
    let policy = match src {
        Some(src) => beffroi_territory::load_privacy(src)?,
        None => beffroi_core::PrivacyPolicy::unconfigured(),
    };
    let errors = beffroi_territory::check_against(territory, &policy, kinds_path);
    errors.into_result(policy)
}

fn demo_file(path: &str) -> Result<SourceFile> {
    let f = DEMO
        .get_file(path)
        .ok_or_else(|| anyhow!("embedded demo lacks {path}"))?;
    let text = f
        .contents_utf8()
        .ok_or_else(|| anyhow!("embedded {path} is not UTF-8"))?;
    Ok(SourceFile::new(format!("demo/{path}"), text))
}

fn demo_dir_files(dir: &str, ext: &str) -> Vec<SourceFile> {
    let mut out = Vec::new();
    if let Some(d) = DEMO.get_dir(dir) {
        let mut files: Vec<_> = d.files().collect();
        files.sort_by_key(|f| f.path().to_path_buf());
        for f in files {
            if f.path().extension().is_some_and(|x| x == ext)
                && let Some(text) = f.contents_utf8()
            {
                out.push(SourceFile::new(
                    format!("demo/{}", f.path().display()),
                    text,
                ));
            }
        }
    }
    out
}

/// The embedded demo territory files, named as the loader expects.
pub fn demo_territory_files() -> Vec<SourceFile> {
    let mut files = Vec::new();
    for name in [
        "territory.toml",
        "kinds.toml",
        "sites.geojson",
        "communes.geojson",
    ] {
        if let Ok(f) = demo_file(&format!("territory/{name}")) {
            files.push(SourceFile::new(name, f.text));
        }
    }
    for f in demo_dir_files("territory/devices", "toml") {
        let name = f.path.trim_start_matches("demo/territory/").to_string();
        files.push(SourceFile::new(name, f.text));
    }
    files
}

fn fail(what: &str, e: ConfigErrors) -> anyhow::Error {
    anyhow!("{what} is invalid ({} error(s)):\n{e}", e.len())
}

pub fn load_demo() -> Result<Deployment> {
    let territory = beffroi_territory::load(&demo_territory_files())
        .map_err(|e| fail("the embedded demo territory", e))?;
    let rules = beffroi_rules::parse(&demo_file("rules.toml")?, &territory)
        .map_err(|e| fail("the embedded demo rules", e))?;
    let procedures = beffroi_engine::procedures::parse(&demo_file("procedures.toml")?)
        .map_err(|e| fail("the embedded demo procedures", e))?;
    let scenarios = beffroi_sim::load_sources(&demo_dir_files("scenarios", "toml"), &territory)
        .map_err(|e| fail("the embedded demo scenarios", e))?;
    let operations = Operations {
        units: operations::parse_units(&demo_file("units.toml")?, &territory)
            .map_err(|e| fail("the embedded demo units", e))?,
        escalation: operations::parse_escalation(&demo_file("escalation.toml")?)
            .map_err(|e| fail("the embedded demo escalation delays", e))?,
        roles: operations::parse_crisis(&demo_file("crisis.toml")?)
            .map_err(|e| fail("the embedded demo crisis roles", e))?,
        families: beffroi_engine::situations::parse(&demo_file("situations.toml")?, &rules)
            .map_err(|e| fail("the embedded demo situations", e))?,
        shelving: operations::parse_shelving(&demo_file("escalation.toml")?)
            .map_err(|e| fail("the embedded demo shelving bound", e))?,
    };
    let events = beffroi_engine::events::parse(&demo_file("events.toml")?, &territory, load_time())
        .map_err(|e| fail("the embedded demo events", e))?;
    let security = beffroi_engine::sentinel::parse_config(&demo_file("security.toml")?, &territory)
        .map_err(|e| fail("the embedded demo security thresholds", e))?;
    let privacy = privacy_of(
        Some(&demo_file("privacy.toml")?),
        &territory,
        "demo/territory/kinds.toml",
    )
    .map_err(|e| fail("the embedded demo privacy policy", e))?;
    let cap = cap_of(&demo_file("cap.toml")?, &rules)
        .map_err(|e| fail("the embedded demo public alerts", e))?;
    Ok(Deployment {
        cap: Some(cap),
        hubeau: None,
        taxii: None,
        federation: None,
        privacy,
        security,
        territory: Arc::new(territory),
        rules: Arc::new(rules),
        procedures,
        operations,
        scenarios: scenarios.into_iter().map(Arc::new).collect(),
        events,
        rules_path: None,
        procedures_path: None,
        operations_dir: None,
    })
}

/// Loads a deployment folder laid out like `demo/`: `territory/`, `rules.toml`,
/// `procedures.toml`, optional `scenarios/`. Every error of every file is reported.
pub fn load_dir(dir: &Path) -> Result<Deployment, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let tdir = if dir.join("territory.toml").exists() {
        dir.to_path_buf()
    } else {
        dir.join("territory")
    };
    // The territory's mistakes do not stop the check: the other files are read against
    // what loaded, and their errors about what did not are folded under its errors.
    let (territory, mut territory_errors, failed) = match beffroi_territory::read_dir_sources(&tdir)
    {
        Ok(files) => {
            let p = beffroi_territory::load_partial(&files);
            let mut errors = p.errors;
            for e in &mut errors.0 {
                e.file = tdir.join(&e.file).display().to_string();
            }
            (p.territory, errors, p.failed)
        }
        Err(mut e) => {
            for err in &mut e.0 {
                err.file = tdir.join(&err.file).display().to_string();
            }
            return Err(e);
        }
    };
    let rules_path = dir.join("rules.toml");
    let rules = if rules_path.exists() {
        SourceFile::read(&rules_path)
            .map_err(ConfigErrors::from)
            .and_then(|src| beffroi_rules::parse(&src, &territory))
            .map_err(|e| errors.extend(e))
            .ok()
    } else {
        Some(RuleSet::default())
    };
    let proc_path = dir.join("procedures.toml");
    let procedures = optional(&proc_path, &mut errors, beffroi_engine::procedures::parse);
    let mut operations = load_operations(dir, &territory, &mut errors);
    if let Some(rules) = &rules
        && let Some(families) = optional(&dir.join("situations.toml"), &mut errors, |src| {
            beffroi_engine::situations::parse(src, rules)
        })
    {
        operations.families = families;
    }
    let events_path = dir.join("events.toml");
    let events = optional(&events_path, &mut errors, |src| {
        beffroi_engine::events::parse(src, &territory, load_time())
    });
    let security = optional(&dir.join("security.toml"), &mut errors, |src| {
        beffroi_engine::sentinel::parse_config(src, &territory)
    });
    let privacy_path = dir.join("privacy.toml");
    let privacy_src = match privacy_path
        .exists()
        .then(|| SourceFile::read(&privacy_path))
    {
        Some(Err(e)) => {
            errors.push(e);
            None
        }
        Some(Ok(src)) => Some(src),
        None => None,
    };
    let privacy = privacy_of(
        privacy_src.as_ref(),
        &territory,
        &tdir.join("kinds.toml").display().to_string(),
    )
    .map_err(|e| errors.extend(e))
    .ok();
    let categories = rules.as_ref().map(categories_of).unwrap_or_default();
    let with_rules = rules.is_some();
    // Without valid rules, the files checked against their categories are not read: their
    // errors would only repeat the rules'.
    let cap = with_rules
        .then(|| {
            if_present(&dir.join("cap.toml"), &mut errors, |src| {
                beffroi_api::cap::parse_policy(src, &categories)
            })
        })
        .flatten();
    let hubeau = if_present(&dir.join("hubeau.toml"), &mut errors, |src| {
        beffroi_hubeau::parse(src, &territory).map(Arc::new)
    });
    let taxii = if_present(&dir.join("taxii.toml"), &mut errors, |src| {
        beffroi_api::taxii::parse_policy(src, &territory).map(Arc::new)
    });
    let federation = with_rules
        .then(|| {
            if_present(&dir.join("federation.toml"), &mut errors, |src| {
                beffroi_federation::parse(src, &territory, &categories).map(Arc::new)
            })
        })
        .flatten();
    let sdir = dir.join("scenarios");
    let scenarios = if sdir.is_dir() {
        beffroi_sim::load_dir(&sdir, &territory)
            .map_err(|e| errors.extend(e))
            .ok()
    } else {
        Some(Vec::new())
    };
    let errors = if territory_errors.is_empty() {
        errors
    } else {
        let left = failed.fold(&mut territory_errors, errors);
        territory_errors.extend(left);
        territory_errors
    };
    match (rules, procedures, scenarios, events, security, privacy) {
        (
            Some(rules),
            Some(procedures),
            Some(scenarios),
            Some(events),
            Some(security),
            Some(privacy),
        ) if errors.is_empty() => Ok(Deployment {
            cap,
            hubeau,
            taxii,
            federation,
            privacy,
            territory: Arc::new(territory),
            rules: Arc::new(rules),
            procedures,
            operations,
            scenarios: scenarios.into_iter().map(Arc::new).collect(),
            events,
            rules_path: Some(rules_path),
            procedures_path: Some(proc_path),
            operations_dir: Some(dir.to_path_buf()),
            security,
        }),
        _ => Err(errors),
    }
}

/// Reads the optional `units.toml`, `escalation.toml` and `crisis.toml` of a deployment
/// folder; a missing file leaves its part empty, errors are collected into `errors`.
/// Reads and parses an optional file of a deployment folder: its default when the file is
/// absent, `None` when it cannot be read or parsed (the errors go to `errors`).
fn optional<T: Default>(
    path: &Path,
    errors: &mut ConfigErrors,
    parse: impl FnOnce(&SourceFile) -> Result<T, ConfigErrors>,
) -> Option<T> {
    if !path.exists() {
        return Some(T::default());
    }
    if_present(path, errors, parse)
}

fn load_operations(dir: &Path, territory: &Territory, errors: &mut ConfigErrors) -> Operations {
    fn read<T: Default>(
        path: &Path,
        errors: &mut ConfigErrors,
        parse: impl FnOnce(&SourceFile) -> Result<T, ConfigErrors>,
    ) -> T {
        optional(path, errors, parse).unwrap_or_default()
    }
    Operations {
        units: read(&dir.join("units.toml"), errors, |s| {
            operations::parse_units(s, territory)
        }),
        escalation: read(
            &dir.join("escalation.toml"),
            errors,
            operations::parse_escalation,
        ),
        roles: read(&dir.join("crisis.toml"), errors, operations::parse_crisis),
        families: Vec::new(),
        shelving: read(
            &dir.join("escalation.toml"),
            errors,
            operations::parse_shelving,
        ),
    }
}

/// Re-reads `units.toml` and `escalation.toml` (hot reload); crisis roles are read at
/// start only.
pub fn reload_operations(territory: &Territory, dir: &Path) -> Result<Operations, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let ops = load_operations(dir, territory, &mut errors);
    errors.into_result(ops)
}

/// The moment relative event times (`starts_at = "+30m"`) count from: the wall clock when
/// the deployment is loaded, which is also where the demo's accelerated clock starts.
fn load_time() -> beffroi_core::Timestamp {
    beffroi_core::Clock::now(&beffroi_engine::runner::SystemClock)
}

/// Re-reads the rules and procedures files (hot reload).
pub fn reload(
    territory: &Territory,
    rules_path: &Path,
    procedures_path: Option<&Path>,
) -> Result<(RuleSet, Vec<Procedure>), ConfigErrors> {
    let rules = beffroi_rules::parse(&SourceFile::read(rules_path)?, territory)?;
    let procedures = match procedures_path {
        Some(p) if p.exists() => beffroi_engine::procedures::parse(&SourceFile::read(p)?)?,
        _ => Vec::new(),
    };
    Ok((rules, procedures))
}

pub fn read_config(path: &Path) -> Result<crate::config::Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::config::Config::parse(&SourceFile::new(path.display().to_string(), text))
        .map_err(|e| anyhow!("{e}"))
}
