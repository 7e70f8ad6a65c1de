//! The tidy test: conventions of the workspace's shape that a review forgets, checked from
//! the files on disk (after rust-analyzer's `tidy` tests). Each check fails with a message
//! naming the file, the line when there is one, and what to do.
//!
//! - [`dependencies_follow_the_table`]: every crate's `[dependencies]` are in [`CRATES`]; a
//!   pure crate depends on nothing that does I/O; `anyhow` only in the binary.
//! - [`pure_crates_make_no_forbidden_calls`]: no file system, clock, network, process,
//!   environment, threads, randomness or async in the pure crates' `src/`.
//! - [`rust_version_is_declared_once_and_stated`]: every crate inherits the workspace's
//!   `rust-version` and lints, `clippy::incompatible_msrv` is denied and never allowed,
//!   README.md states the version.
//! - [`architecture_maps_every_crate`]: ARCHITECTURE.md has a code-map section per crate,
//!   in dependency order, and names no crate that does not exist.
//! - [`error_codes_have_one_table`]: the API's error codes, their statuses and meanings are
//!   in one table (`crates/beffroi-api/src/error.rs`), copied in `docs/api-errors.md` and
//!   translated by the console.
//! - [`nothing_refers_to_an_issue_tracker`]: no comment or document points at a tracker
//!   that is not in the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What a crate may do, which decides the dependencies and calls it may not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// No I/O at all: no file system, clock, network, process, environment, threads,
    /// randomness, async runtime, database or logging. Time and keys are passed in.
    Pure,
    /// Reads the deployment's files (the configuration reader) and does nothing else: no
    /// writes, no clock, no network, no async.
    ReadsFiles,
    /// Adapters, the engine's runner, the binary and test support: no constraint here
    /// beyond the table.
    Edge,
}
use Class::*;

/// One crate under `crates/`: its class and the dependencies it may have in
/// `[dependencies]` (optional and target-specific ones included; dev-dependencies are
/// free). A crate may use fewer; a new dependency is added here, on purpose, in the same
/// change, and a new crate gets its line.
struct Krate {
    name: &'static str,
    class: Class,
    deps: &'static [&'static str],
}

const fn krate(name: &'static str, class: Class, deps: &'static [&'static str]) -> Krate {
    Krate { name, class, deps }
}

/// Every crate of the workspace, with what it may depend on.
const CRATES: &[Krate] = &[
    krate(
        "beffroi-core",
        Pure,
        &["thiserror", "rustc-hash", "regex", "regex-syntax"],
    ),
    krate(
        "beffroi-territory",
        ReadsFiles,
        &[
            "beffroi-core",
            "thiserror",
            "serde",
            "serde_json",
            "toml",
            "geojson",
            "humantime",
            "strsim",
        ],
    ),
    krate(
        "beffroi-import",
        Pure,
        &[
            "beffroi-core",
            "thiserror",
            "serde",
            "serde_json",
            "toml",
            "toml_edit",
            "csv",
            "strsim",
        ],
    ),
    krate(
        "beffroi-communes",
        Pure,
        &["thiserror", "flate2", "strsim", "serde_json", "sha2"],
    ),
    krate(
        "beffroi-rules",
        Pure,
        &[
            "beffroi-core",
            "beffroi-territory",
            "thiserror",
            "serde",
            "toml",
            "rustc-hash",
        ],
    ),
    krate(
        "beffroi-privacy",
        Pure,
        &[
            "beffroi-core",
            "thiserror",
            "hmac",
            "sha2",
            "chacha20poly1305",
            "zeroize",
            "data-encoding",
            "regex",
        ],
    ),
    krate("beffroi-dpo", Pure, &["beffroi-core", "serde"]),
    krate("beffroi-sentinel", Pure, &["beffroi-core", "rustc-hash"]),
    krate(
        "beffroi-wire",
        Pure,
        &[
            "beffroi-core",
            "thiserror",
            "serde",
            "serde_json",
            "humantime",
            "hmac",
            "sha2",
            "base64",
        ],
    ),
    krate(
        "beffroi-access",
        Pure,
        &[
            "beffroi-core",
            "beffroi-territory",
            "serde",
            "serde_json",
            "toml",
            "data-encoding",
            "password-hash",
        ],
    ),
    krate(
        "beffroi-cap",
        Pure,
        &["beffroi-core", "thiserror", "quick-xml"],
    ),
    krate(
        "beffroi-hubeau",
        Pure,
        &[
            "beffroi-core",
            "beffroi-territory",
            "beffroi-wire",
            "thiserror",
            "serde",
            "serde_json",
            "toml",
        ],
    ),
    krate(
        "beffroi-taxii",
        Pure,
        &["serde", "serde_json", "thiserror", "uuid"],
    ),
    krate(
        "beffroi-federation",
        Pure,
        &[
            "beffroi-core",
            "beffroi-territory",
            "beffroi-privacy",
            "thiserror",
            "serde",
            "serde_json",
            "toml",
            "base64",
            "hmac",
            "sha2",
            "data-encoding",
            "ed25519-dalek",
        ],
    ),
    krate(
        "beffroi-ngsild",
        Pure,
        &["serde", "serde_json", "thiserror"],
    ),
    krate(
        "beffroi-sim",
        ReadsFiles,
        &[
            "beffroi-core",
            "beffroi-territory",
            "beffroi-wire",
            "thiserror",
            "serde",
            "toml",
            "rustc-hash",
        ],
    ),
    krate(
        "beffroi-engine",
        Edge,
        &[
            "beffroi-core",
            "beffroi-territory",
            "beffroi-rules",
            "beffroi-wire",
            "beffroi-sentinel",
            "beffroi-privacy",
            "thiserror",
            "tokio",
            "tokio-util",
            "futures",
            "tracing",
            "prometheus-client",
            "serde",
            "serde_json",
            "bytes",
            "toml",
            "rustc-hash",
        ],
    ),
    krate(
        "beffroi-store-rows",
        Edge,
        &[
            "beffroi-core",
            "beffroi-engine",
            "beffroi-wire",
            "serde_json",
            "tracing",
        ],
    ),
    krate(
        "beffroi-store",
        Edge,
        &[
            "beffroi-store-rows",
            "beffroi-core",
            "beffroi-engine",
            "beffroi-wire",
            "beffroi-privacy",
            "thiserror",
            "rusqlite",
            "serde_json",
            "tracing",
            "tokio",
        ],
    ),
    krate(
        "beffroi-store-pg",
        Edge,
        &[
            "beffroi-store-rows",
            "beffroi-core",
            "beffroi-engine",
            "beffroi-wire",
            "postgres",
            "serde_json",
            "tracing",
        ],
    ),
    krate(
        "beffroi-store-suite",
        Edge,
        &[
            "beffroi-core",
            "beffroi-engine",
            "beffroi-wire",
            "beffroi-privacy",
            "beffroi-rules",
            "beffroi-territory",
            "tokio",
            "serde_json",
        ],
    ),
    krate(
        "beffroi-audit",
        Edge,
        &[
            "beffroi-core",
            "thiserror",
            "rusqlite",
            "postgres",
            "tracing",
            "sha2",
            "ed25519-dalek",
            "hex",
            "rand",
            "prometheus-client",
            "serde_json",
        ],
    ),
    krate(
        "beffroi-registry",
        Edge,
        &[
            "thiserror",
            "rusqlite",
            "postgres",
            "argon2",
            "base64",
            "rand",
            "pbkdf2",
            "sha2",
            "subtle",
        ],
    ),
    krate(
        "beffroi-mqtt",
        Edge,
        &[
            "beffroi-core",
            "beffroi-engine",
            "beffroi-wire",
            "bytes",
            "thiserror",
            "rumqttc",
            "tokio",
            "tokio-util",
            "futures",
            "tracing",
        ],
    ),
    krate(
        "beffroi-nats",
        Edge,
        &[
            "async-nats",
            "bytes",
            "futures",
            "serde",
            "serde_json",
            "thiserror",
            "tokio",
            "tokio-util",
            "tracing",
        ],
    ),
    krate(
        "beffroi-api",
        Edge,
        &[
            "beffroi-access",
            "beffroi-core",
            "beffroi-engine",
            "beffroi-wire",
            "beffroi-rules",
            "beffroi-territory",
            "beffroi-privacy",
            "beffroi-dpo",
            "beffroi-cap",
            "beffroi-taxii",
            "beffroi-federation",
            "beffroi-ngsild",
            "thiserror",
            "axum",
            "tokio",
            "tokio-util",
            "futures",
            "serde",
            "serde_json",
            "toml",
            "tracing",
            "argon2",
            "zxcvbn",
            "rand",
            "chacha20poly1305",
            "base64",
            "utoipa",
            "prometheus-client",
            "bytes",
            "hmac",
            "sha1",
            "sha2",
            "hex",
            "data-encoding",
            "subtle",
            "ureq",
            "ed25519-dalek",
        ],
    ),
    krate(
        "beffroi-console",
        Edge,
        &[
            "flate2",
            "axum",
            "tokio",
            "tokio-util",
            "serde_json",
            "thiserror",
            "tracing",
        ],
    ),
    krate(
        "beffroi-testkit",
        Edge,
        &["serde_json", "tempfile", "postgres"],
    ),
    krate("beffroi-tidy", Edge, &[]),
    krate(
        "beffroi",
        Edge,
        &[
            "beffroi-access",
            "beffroi-core",
            "beffroi-territory",
            "beffroi-rules",
            "beffroi-wire",
            "beffroi-engine",
            "beffroi-store",
            "beffroi-store-pg",
            "beffroi-mqtt",
            "beffroi-nats",
            "beffroi-api",
            "beffroi-console",
            "beffroi-sim",
            "beffroi-audit",
            "beffroi-dpo",
            "beffroi-cap",
            "beffroi-hubeau",
            "beffroi-taxii",
            "beffroi-federation",
            "beffroi-sentinel",
            "beffroi-privacy",
            "beffroi-registry",
            "beffroi-import",
            "beffroi-communes",
            "anyhow",
            "clap",
            "tokio",
            "tokio-util",
            "futures",
            "tracing",
            "tracing-subscriber",
            "serde",
            "serde_json",
            "toml",
            "include_dir",
            "notify",
            "rand",
            "ureq",
            "libc",
            "humantime",
            "hyper",
            "hyper-util",
            "http-body-util",
            "tower",
            "bytes",
            "axum",
            "prometheus-client",
            "tempfile",
            "rusqlite",
            "postgres",
            "rumqttc",
            "base64",
            "sha2",
            "hex",
            "ed25519-dalek",
        ],
    ),
];

/// What a pure crate may never depend on, whatever the table says: runtimes, databases,
/// network clients and servers, brokers, the file watcher, randomness, logging and
/// metrics, and `anyhow`.
const IMPURE_DEPENDENCIES: &[&str] = &[
    "tokio",
    "tokio-util",
    "futures",
    "async-nats",
    "rumqttc",
    "rusqlite",
    "postgres",
    "axum",
    "hyper",
    "hyper-util",
    "tower",
    "tower-http",
    "http-body-util",
    "ureq",
    "notify",
    "libc",
    "tempfile",
    "rand",
    "tracing",
    "tracing-subscriber",
    "prometheus-client",
    "include_dir",
    "clap",
    "anyhow",
];

/// The only crate that may use `anyhow`: libraries define `thiserror` enums.
const ANYHOW_CRATE: &str = "beffroi";

/// Calls a pure crate's `src/` may not make (matched as text on lines that are not
/// comments), with why.
const FORBIDDEN_IN_PURE: &[(&str, &str)] = &[
    ("std::fs", "the file system"),
    ("File::open", "the file system"),
    ("File::create", "the file system"),
    ("OpenOptions", "the file system"),
    ("read_dir(", "the file system"),
    (
        "SourceFile::read(",
        "files (the caller reads them and passes the text)",
    ),
    (
        "load_dir(",
        "files (the caller reads them and passes the text)",
    ),
    (
        "read_dir_sources(",
        "files (the caller reads them and passes the text)",
    ),
    ("SystemTime::now", "the clock (time is passed in)"),
    ("Instant::now", "the clock (time is passed in)"),
    ("Utc::now", "the clock (time is passed in)"),
    ("TcpStream", "the network"),
    ("TcpListener", "the network"),
    ("UdpSocket", "the network"),
    ("ToSocketAddrs", "the network"),
    ("tokio::", "the async runtime"),
    ("async fn", "async code"),
    (".await", "async code"),
    ("std::process", "processes"),
    ("Command::new", "processes"),
    ("std::env", "the environment"),
    ("thread::sleep", "threads or the clock"),
    ("thread::spawn", "threads"),
    ("std::io::stdin", "the terminal"),
    ("std::io::stdout", "the terminal"),
    ("std::io::stderr", "the terminal"),
    ("println!", "the terminal"),
    ("print!(", "the terminal"),
    ("rand::", "randomness (passed in by the caller)"),
    ("OsRng", "randomness (passed in by the caller)"),
    ("thread_rng", "randomness (passed in by the caller)"),
    ("getrandom", "randomness (passed in by the caller)"),
];

/// What a crate that reads files may still not do: what is forbidden to a pure crate,
/// except reading, plus writing.
const FORBIDDEN_IN_READER_TOO: &[(&str, &str)] = &[
    ("fs::write", "the file system for writing"),
    ("File::create", "the file system for writing"),
    ("OpenOptions", "the file system for writing"),
    ("remove_file", "the file system for writing"),
    ("create_dir", "the file system for writing"),
];
const READER_MAY: &[&str] = &[
    "std::fs",
    "File::open",
    "read_dir(",
    "SourceFile::read(",
    "load_dir(",
    "read_dir_sources(",
];

/// Files of impure crates that are pure on their own, as ARCHITECTURE.md says.
const PURE_FILES: &[&str] = &["crates/beffroi-engine/src/pipeline.rs"];

// ---------------------------------------------------------------------------------------

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|e| panic!("the workspace root: {e}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every crate folder under `crates/` (one with a `Cargo.toml`), by folder name.
fn crate_dirs() -> BTreeMap<String, PathBuf> {
    let dir = root().join("crates");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read crates/: {e}")) {
        let path = e.unwrap_or_else(|e| panic!("read crates/: {e}")).path();
        if path.join("Cargo.toml").is_file()
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            out.insert(name.to_string(), path);
        }
    }
    assert!(
        out.len() > 10,
        "found only {} crates under crates/",
        out.len()
    );
    out
}

fn manifest(dir: &Path) -> toml::Table {
    let path = dir.join("Cargo.toml");
    read(&path)
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{}: {e}", rel(&path)))
}

/// The dependency names of one table (`package = "…"` renames resolved).
fn dep_names(t: Option<&toml::Value>) -> Vec<String> {
    let Some(t) = t.and_then(|t| t.as_table()) else {
        return Vec::new();
    };
    t.iter()
        .map(|(k, v)| {
            v.get("package")
                .and_then(|p| p.as_str())
                .unwrap_or(k)
                .to_string()
        })
        .collect()
}

/// `[dependencies]` and `[build-dependencies]`, also under `[target.'…']`.
fn normal_deps(m: &toml::Table) -> Vec<String> {
    let mut out = dep_names(m.get("dependencies"));
    out.extend(dep_names(m.get("build-dependencies")));
    if let Some(targets) = m.get("target").and_then(|t| t.as_table()) {
        for t in targets.values() {
            out.extend(dep_names(t.get("dependencies")));
            out.extend(dep_names(t.get("build-dependencies")));
        }
    }
    out
}

fn package_name(m: &toml::Table) -> String {
    m.get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("?")
        .to_string()
}

fn table_entry(name: &str) -> Option<&'static Krate> {
    CRATES.iter().find(|k| k.name == name)
}

fn fail_if_any(problems: &[String], what: &str) {
    if !problems.is_empty() {
        let mut msg = format!("{what}: {} problem(s)\n", problems.len());
        for p in problems {
            let _ = writeln!(msg, "  - {p}");
        }
        panic!("{msg}");
    }
}

/// Every file under `dir` (recursively), skipping build output, npm packages and git.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !matches!(
                name.as_ref(),
                "target" | "node_modules" | ".git" | "corpus" | "artifacts"
            ) {
                walk(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// Whether a line is a comment only (`//`, `///`, `//!`).
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with("//")
}

/// The code of a line without a trailing `// comment` (a `//` after a space).
fn code_of(line: &str) -> &str {
    match line.find(" // ") {
        Some(i) => &line[..i],
        None => line,
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn dependencies_follow_the_table() {
    let dirs = crate_dirs();
    let mut problems = Vec::new();
    for (dir_name, dir) in &dirs {
        let m = manifest(dir);
        let name = package_name(&m);
        if &name != dir_name {
            problems.push(format!(
                "crates/{dir_name}/Cargo.toml names the package `{name}`: name the folder after its package"
            ));
        }
        let Some(entry) = table_entry(&name) else {
            problems.push(format!(
                "crates/{dir_name} (`{name}`) is not in the dependency table: add \
                 `krate(\"{name}\", Pure | ReadsFiles | Edge, &[its dependencies])` to CRATES \
                 in crates/beffroi-tidy/tests/tidy.rs, and a section \
                 \"### `crates/{dir_name}`\" to ARCHITECTURE.md"
            ));
            continue;
        };
        let deps = normal_deps(&m);
        for d in &deps {
            if !entry.deps.contains(&d.as_str()) {
                problems.push(format!(
                    "crates/{dir_name}/Cargo.toml depends on `{d}`, which the table does not allow \
                     for {name}: if that is intended, add it to {name}'s line in CRATES \
                     (crates/beffroi-tidy/tests/tidy.rs) and justify it (an ADR for a new \
                     external crate)"
                ));
            }
            if d == "anyhow" && name != ANYHOW_CRATE {
                problems.push(format!(
                    "crates/{dir_name}/Cargo.toml depends on `anyhow`: only the binary \
                     (crates/{ANYHOW_CRATE}) does; a library defines a `thiserror` enum"
                ));
            }
        }
        if entry.class == Pure {
            for d in &deps {
                if IMPURE_DEPENDENCIES.contains(&d.as_str()) {
                    problems.push(format!(
                        "crates/{dir_name}/Cargo.toml: {name} is a pure crate (no I/O, see its \
                         section in ARCHITECTURE.md) and may not depend on `{d}`: move what \
                         needs it to an adapter or the binary, or pass its result in"
                    ));
                }
                if let Some(dep) = table_entry(d)
                    && dep.class == Edge
                {
                    problems.push(format!(
                        "crates/{dir_name}/Cargo.toml: {name} is a pure crate and may not depend \
                         on `{d}`, which does I/O"
                    ));
                }
            }
        }
    }
    for k in CRATES {
        if !dirs.contains_key(k.name) {
            problems.push(format!(
                "CRATES in crates/beffroi-tidy/tests/tidy.rs lists `{}`, which is not a folder \
                 under crates/: remove its line",
                k.name
            ));
        }
    }
    fail_if_any(&problems, "dependencies");
}

/// The forbidden calls found in one file, as `file:line: what`.
fn forbidden_calls(path: &Path, class: Class, problems: &mut Vec<String>) {
    let text = read(path);
    for (n, line) in text.lines().enumerate() {
        if is_comment(line) {
            continue;
        }
        let code = code_of(line);
        let mut report = |pat: &str, why: &str, class_name: &str| {
            problems.push(format!(
                "{}:{}: `{pat}` in {class_name}, which does not touch {why}: `{}`",
                rel(path),
                n + 1,
                line.trim()
            ));
        };
        for (pat, why) in FORBIDDEN_IN_PURE {
            if !code.contains(pat) {
                continue;
            }
            match class {
                Pure => report(pat, why, "a pure crate"),
                ReadsFiles if !READER_MAY.contains(pat) => {
                    report(pat, why, "a crate that only reads files")
                }
                _ => {}
            }
        }
        if class == ReadsFiles {
            for (pat, why) in FORBIDDEN_IN_READER_TOO {
                if code.contains(pat) {
                    report(pat, why, "a crate that only reads files");
                }
            }
        }
    }
}

#[test]
fn pure_crates_make_no_forbidden_calls() {
    let dirs = crate_dirs();
    let mut problems = Vec::new();
    let mut scanned = 0;
    for k in CRATES.iter().filter(|k| k.class != Edge) {
        let Some(dir) = dirs.get(k.name) else {
            continue;
        };
        let mut files = Vec::new();
        walk(&dir.join("src"), &mut files);
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        {
            forbidden_calls(f, k.class, &mut problems);
            scanned += 1;
        }
    }
    for f in PURE_FILES {
        forbidden_calls(&root().join(f), Pure, &mut problems);
        scanned += 1;
    }
    assert!(scanned > 20, "scanned only {scanned} files");
    fail_if_any(&problems, "forbidden calls in pure code");
}

#[test]
fn rust_version_is_declared_once_and_stated() {
    let root = root();
    let ws = read(&root.join("Cargo.toml"))
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("Cargo.toml: {e}"));
    let version = ws
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("rust-version"))
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("Cargo.toml: [workspace.package] declares no rust-version"))
        .to_string();
    let mut problems = Vec::new();
    let msrv_lint = ws
        .get("workspace")
        .and_then(|w| w.get("lints"))
        .and_then(|l| l.get("clippy"))
        .and_then(|c| c.get("incompatible_msrv"));
    let denied = match msrv_lint {
        Some(toml::Value::String(s)) => s == "deny" || s == "forbid",
        Some(v) => v
            .get("level")
            .and_then(|l| l.as_str())
            .is_some_and(|s| s == "deny" || s == "forbid"),
        None => false,
    };
    if !denied {
        problems.push(
            "Cargo.toml: [workspace.lints.clippy] must set `incompatible_msrv = \"deny\"`: it is \
             what refuses a standard-library API newer than rust-version"
                .to_string(),
        );
    }
    for (dir_name, dir) in crate_dirs() {
        let m = manifest(&dir);
        let pkg = m.get("package");
        let inherits = pkg
            .and_then(|p| p.get("rust-version"))
            .and_then(|r| r.get("workspace"))
            .and_then(|w| w.as_bool())
            == Some(true);
        if !inherits {
            problems.push(format!(
                "crates/{dir_name}/Cargo.toml: add `rust-version.workspace = true` under [package] \
                 (the workspace declares {version} once)"
            ));
        }
        let lints = m
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(|w| w.as_bool())
            == Some(true);
        if !lints {
            problems.push(format!(
                "crates/{dir_name}/Cargo.toml: add `[lints] workspace = true` (the workspace's \
                 lints, `incompatible_msrv` among them, apply to every crate)"
            ));
        }
    }
    // Nothing may silence the lint, and no clippy.toml may claim another version.
    let mut files = Vec::new();
    walk(&root, &mut files);
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if f.extension().is_some_and(|e| e == "rs") {
            for (n, line) in read(f).lines().enumerate() {
                if line.contains("incompatible_msrv")
                    && (line.contains("allow(") || line.contains("expect("))
                {
                    problems.push(format!(
                        "{}:{}: `incompatible_msrv` is silenced; raise rust-version in Cargo.toml \
                         (and README.md) instead, or avoid the newer API",
                        rel(f),
                        n + 1
                    ));
                }
            }
        } else if name == "clippy.toml" || name == ".clippy.toml" {
            let text = read(f);
            if text.contains("msrv") && !text.contains(&format!("\"{version}\"")) {
                problems.push(format!(
                    "{}: sets an `msrv` other than {version}: remove it (clippy reads \
                     rust-version from Cargo.toml)",
                    rel(f)
                ));
            }
        }
    }
    let readme = read(&root.join("README.md"));
    if !readme.contains(&format!("Rust {version}")) {
        problems.push(format!(
            "README.md does not state the Rust version Cargo.toml declares: write \
             \"Rust {version} or later\" in its prerequisites (or change rust-version)"
        ));
    }
    fail_if_any(&problems, "rust-version");
}

/// The crates named by ARCHITECTURE.md's code-map headings (`### \`crates/NAME\``), in
/// order, with their line.
fn code_map() -> Vec<(String, usize)> {
    let text = read(&root().join("ARCHITECTURE.md"));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("### `crates/") else {
            continue;
        };
        let mut heading = format!("`crates/{rest}");
        // A heading may name more than one crate: "### `crates/a` and `crates/b`".
        while let Some(i) = heading.find("`crates/") {
            let after = &heading[i + "`crates/".len()..];
            let Some(end) = after.find('`') else {
                break;
            };
            out.push((after[..end].trim_end_matches('/').to_string(), n + 1));
            heading = after[end + 1..].to_string();
        }
    }
    out
}

#[test]
fn architecture_maps_every_crate() {
    let dirs = crate_dirs();
    let map = code_map();
    let mut problems = Vec::new();
    let mapped: BTreeSet<&str> = map.iter().map(|(n, _)| n.as_str()).collect();
    for name in dirs.keys() {
        if !mapped.contains(name.as_str()) {
            problems.push(format!(
                "ARCHITECTURE.md has no section \"### `crates/{name}`\" in its code map: say what \
                 the crate is and its invariants, after the crates it depends on"
            ));
        }
    }
    for (name, line) in &map {
        if !dirs.contains_key(name) {
            problems.push(format!(
                "ARCHITECTURE.md:{line}: names `crates/{name}`, which does not exist: remove or \
                 rename the section"
            ));
        }
    }
    // The code map is ordered from the bottom of the stack up: a crate's section comes
    // after the sections of the workspace crates it depends on.
    let position: BTreeMap<&str, usize> = map
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    for (name, line) in &map {
        let Some(dir) = dirs.get(name) else { continue };
        let me = position[name.as_str()];
        for d in normal_deps(&manifest(dir)) {
            if let Some(&at) = position.get(d.as_str())
                && at > me
            {
                problems.push(format!(
                    "ARCHITECTURE.md:{line}: `crates/{name}` depends on `{d}`, whose section comes \
                     later: the code map lists crates from the bottom of the stack up"
                ));
            }
        }
    }
    fail_if_any(&problems, "ARCHITECTURE.md's code map");
}

/// Codes the console gives a failure that is not an answer of the API (`web/src/api.js`:
/// the server could not be reached), translated beside the API's codes.
const CONSOLE_ONLY_CODES: &[&str] = &["network"];

/// One row of the API's error table: `Variant = "code", status, "meaning";`.
struct ErrorRow {
    code: String,
    status: u16,
    meaning: String,
    line: usize,
}

/// The rows of `error_codes! { … }` in `crates/beffroi-api/src/error.rs`.
fn error_table() -> Vec<ErrorRow> {
    let path = root().join("crates/beffroi-api/src/error.rs");
    let text = read(&path);
    let start = text
        .find("\nerror_codes! {")
        .unwrap_or_else(|| panic!("{}: no `error_codes! {{` table", rel(&path)));
    let mut rows = Vec::new();
    let first_line = text[..start].lines().count() + 1;
    for (n, line) in text[start + 1..].lines().enumerate().skip(1) {
        let line = line.trim();
        if line == "}" {
            break;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let parsed = (|| {
            let (_, rest) = line.split_once(" = \"")?;
            let (code, rest) = rest.split_once("\", ")?;
            let (status, rest) = rest.split_once(", \"")?;
            let meaning = rest.strip_suffix("\";")?;
            Some(ErrorRow {
                code: code.to_string(),
                status: status.parse().ok()?,
                meaning: meaning.to_string(),
                line: first_line + n,
            })
        })();
        match parsed {
            Some(row) => rows.push(row),
            None => panic!(
                "{}:{}: not a row of the error table (`Variant = \"code\", status, \
                 \"meaning\";`): `{line}`",
                rel(&path),
                first_line + n
            ),
        }
    }
    assert!(rows.len() > 10, "read only {} error codes", rows.len());
    rows
}

#[test]
fn error_codes_have_one_table() {
    let root = root();
    let rows = error_table();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &rows {
        if !seen.insert(r.code.as_str()) {
            problems.push(format!(
                "crates/beffroi-api/src/error.rs:{}: `{}` is listed twice",
                r.line, r.code
            ));
        }
        if !(400..600).contains(&r.status) {
            problems.push(format!(
                "crates/beffroi-api/src/error.rs:{}: `{}` has status {}, not an error status",
                r.line, r.code, r.status
            ));
        }
    }
    // The documentation: docs/api-errors.md holds the same rows, and nothing else does.
    let doc_path = "docs/api-errors.md";
    let doc = read(&root.join(doc_path));
    let doc_rows: BTreeMap<String, (usize, String)> = doc
        .lines()
        .enumerate()
        .filter_map(|(n, l)| {
            let code = l.strip_prefix("| `")?.split('`').next()?;
            Some((code.to_string(), (n + 1, l.to_string())))
        })
        .collect();
    for r in &rows {
        let want = format!("| `{}` | {} | {} |", r.code, r.status, r.meaning);
        match doc_rows.get(&r.code) {
            None => problems.push(format!(
                "{doc_path} does not document `{}`: add the row `{want}`",
                r.code
            )),
            Some((n, have)) if *have != want => problems.push(format!(
                "{doc_path}:{n}: `{}` differs from crates/beffroi-api/src/error.rs:{}: write \
                 `{want}`",
                r.code, r.line
            )),
            Some(_) => {}
        }
    }
    for (code, (n, _)) in &doc_rows {
        if !seen.contains(code.as_str()) {
            problems.push(format!(
                "{doc_path}:{n}: `{code}` is not an error code of crates/beffroi-api/src/error.rs: \
                 remove the row"
            ));
        }
    }
    let readme = read(&root.join("README.md"));
    if !readme.contains(doc_path) {
        problems.push(format!(
            "README.md does not link {doc_path}, the list of the API's error codes"
        ));
    }
    // No second copy of the table (rows `| \`code\` | status |`) elsewhere in the docs.
    let mut docs = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    walk(&root.join("docs"), &mut docs);
    for f in docs
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        if rel(f) == doc_path {
            continue;
        }
        for (n, line) in read(f).lines().enumerate() {
            let Some(code) = line.strip_prefix("| `").and_then(|l| l.split('`').next()) else {
                continue;
            };
            let status_cell = line.split('|').nth(2).map(str::trim).unwrap_or("");
            if seen.contains(code) && status_cell.parse::<u16>().is_ok() {
                problems.push(format!(
                    "{}:{}: a copy of the error table's row for `{code}`: link {doc_path} instead",
                    rel(f),
                    n + 1
                ));
            }
        }
    }
    // The console's translations: `error.code.<code>` in French and in English.
    let i18n_path = "web/src/i18n.js";
    let i18n = read(&root.join(i18n_path));
    let en_at = i18n
        .find("\n  en: {")
        .unwrap_or_else(|| panic!("{i18n_path}: no English table (`  en: {{`)"));
    let (fr, en) = i18n.split_at(en_at);
    for r in &rows {
        let key = format!("'error.code.{}':", r.code);
        for (lang, table) in [("French", fr), ("English", en)] {
            if !table.contains(&key) {
                problems.push(format!(
                    "{i18n_path}: the {lang} table has no {key} (the console shows its own \
                     translation of every code)"
                ));
            }
        }
    }
    for (n, line) in i18n.lines().enumerate() {
        if let Some(rest) = line.trim_start().strip_prefix("'error.code.") {
            let code = rest.split('\'').next().unwrap_or("");
            if !seen.contains(code) && !CONSOLE_ONLY_CODES.contains(&code) {
                problems.push(format!(
                    "{i18n_path}:{}: translates `{code}`, which is not an error code of \
                     crates/beffroi-api/src/error.rs: remove it",
                    n + 1
                ));
            }
        }
    }
    for key in ["'error.unknown':", "'error.unexpected':"] {
        if !(fr.contains(key) && en.contains(key)) {
            problems.push(format!(
                "{i18n_path}: {key} (the fallback for a code or failure the console does not \
                 know) is missing in a language"
            ));
        }
    }
    fail_if_any(&problems, "API error codes");
}

/// Where a line refers to an issue tracker: the word for an issue followed by a number,
/// `(#N)`, a pull request number, or a tracker's URL. The repository holds no tracker, so
/// such a reference says nothing to its reader: describe the reason instead.
fn tracker_reference(line: &str) -> Option<&'static str> {
    let lower = line.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let digit_after = |mut i: usize, hash: bool| {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if hash && i < bytes.len() && bytes[i] == b'#' {
            i += 1;
        }
        i < bytes.len() && bytes[i].is_ascii_digit()
    };
    let word = "issue";
    let mut from = 0;
    while let Some(i) = lower[from..].find(word) {
        let at = from + i;
        let before_ok = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        let mut end = at + word.len();
        if end < bytes.len() && bytes[end] == b's' {
            end += 1;
        }
        if before_ok && digit_after(end, true) {
            return Some("the word for an issue followed by a number");
        }
        from = at + word.len();
    }
    for (pat, what) in [
        ("(#", "a `(#N)` reference"),
        ("pr #", "a pull request number"),
        ("pull request #", "a pull request number"),
        ("/issues/", "a tracker's URL"),
        ("/pull/", "a tracker's URL"),
    ] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(pat) {
            let at = from + i + pat.len();
            if digit_after(at, false) {
                return Some(what);
            }
            from = at;
        }
    }
    None
}

#[test]
fn nothing_refers_to_an_issue_tracker() {
    let root = root();
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut problems = Vec::new();
    let mut scanned = 0;
    for f in &files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        let in_ci = f
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == ".ci");
        if !matches!(
            ext,
            "rs" | "md" | "toml" | "js" | "mjs" | "py" | "sh" | "css" | "html" | "txt" | "example"
        ) && !in_ci
        {
            continue;
        }
        scanned += 1;
        for (n, line) in read(f).lines().enumerate() {
            if let Some(what) = tracker_reference(line) {
                problems.push(format!(
                    "{}:{}: {what}: `{}` — the tracker is not in the repository; say what the \
                     reason is instead (for another project's bug, describe it)",
                    rel(f),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(scanned > 100, "scanned only {scanned} files");
    fail_if_any(&problems, "references to an issue tracker");
}

#[test]
fn the_tracker_check_tells_references_from_ordinary_text() {
    // Built from pieces so that this file passes its own check.
    let n = "4";
    for bad in [
        format!("Accepted (issue {n}, point 1)."),
        format!("see Issues #{n}"),
        format!("fixed upstream (#{n}2)"),
        format!("https://github.com/example/project/issues/{n}"),
        format!("PR #{n}"),
    ] {
        assert!(tracker_reference(&bad).is_some(), "{bad}");
    }
    for good in [
        "color: #111; border: 1px solid #999",
        "\"#1 Crue — niveau haut — opened: major\"",
        "value #1 of `values` is listed twice",
        // Words that merely contain the word, built so that this file names no tracker.
        &format!("this {w} is known; t{w} 3", w = "issue"),
        "an issue, 4 of them",
    ] {
        assert!(tracker_reference(good).is_none(), "{good}");
    }
}
