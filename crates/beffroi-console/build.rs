//! Embeds the console: our own files from `web/src` and the dist files of the npm
//! packages it uses, installed with `npm ci` from `web/package-lock.json` when
//! `web/node_modules` is missing or older than the lockfile. Writes an asset table
//! (`assets.rs`) into `OUT_DIR`, with a gzip copy of every compressible file.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (path under /console/vendor/, path under web/node_modules/)
const VENDOR: &[(&str, &str)] = &[
    ("maplibre-gl.mjs", "maplibre-gl/dist/maplibre-gl.mjs"),
    (
        "maplibre-gl-worker.mjs",
        "maplibre-gl/dist/maplibre-gl-worker.mjs",
    ),
    ("maplibre-gl.css", "maplibre-gl/dist/maplibre-gl.css"),
    ("uPlot.esm.js", "uplot/dist/uPlot.esm.js"),
    ("uPlot.min.css", "uplot/dist/uPlot.min.css"),
    ("pmtiles.js", "pmtiles/dist/pmtiles.js"),
    ("LICENSE-maplibre-gl.txt", "maplibre-gl/LICENSE.txt"),
    ("LICENSE-uplot.txt", "uplot/LICENSE"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    let web = web.canonicalize().unwrap_or(web);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    // What the console embeds changes with our files and the lockfile only. `node_modules`
    // is not watched: this script installs it (from the lockfile), and a file it writes
    // after cargo noted the build's start would make every next build run it again.
    for p in ["src", "package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=NPM");

    install(&web);

    let mut files: Vec<(String, PathBuf)> = Vec::new();
    walk(&web.join("src"), "", &mut files);
    for (name, rel) in VENDOR {
        let p = web.join("node_modules").join(rel);
        if !p.is_file() {
            fail(&format!(
                "{} is missing: the npm packages of web/package.json do not provide the file the console embeds; update VENDOR in crates/beffroi-console/build.rs",
                p.display()
            ));
        }
        files.push((format!("vendor/{name}"), p));
    }
    files.sort();

    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (i, (path, src)) in files.iter().enumerate() {
        let body = std::fs::read(src).unwrap_or_else(|e| fail(&format!("{}: {e}", src.display())));
        let mime = mime(path);
        let gz = if compressible(mime) && body.len() > 1024 {
            let gz_path = out.join(format!("asset-{i}.gz"));
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&body).expect("gzip into memory");
            let gz = enc.finish().expect("gzip into memory");
            std::fs::write(&gz_path, gz).expect("write into OUT_DIR");
            format!("Some(include_bytes!({:?}))", gz_path.display().to_string())
        } else {
            "None".to_string()
        };
        writeln!(
            table,
            "    Asset {{ path: {path:?}, content_type: {mime:?}, etag: \"\\\"{:016x}\\\"\", body: include_bytes!({:?}), gzip: {gz} }},",
            fnv1a(&body),
            src.display().to_string(),
        )
        .expect("write to a String");
    }
    table.push_str("];\n");
    std::fs::write(out.join("assets.rs"), table).expect("write into OUT_DIR");
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("{msg}");
}

/// Runs `npm ci` when `node_modules` is missing or older than the lockfile.
fn install(web: &Path) {
    let lock = web.join("package-lock.json");
    let marker = web.join("node_modules/.package-lock.json");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (mtime(&marker), mtime(&lock)) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    };
    if fresh {
        return;
    }
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    println!(
        "cargo:warning=installing the console's npm packages: {npm} ci in {}",
        web.display()
    );
    let status = Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`{npm} ci` in {} failed ({s}); the console needs Node.js and npm (https://nodejs.org) and access to the npm registry once",
            web.display()
        )),
        Err(e) => fail(&format!(
            "cannot run `{npm}` ({e}): building Beffroi needs Node.js and npm to install the console's packages from web/package-lock.json"
        )),
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    for entry in rd {
        let entry = entry.unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let rel = format!("{prefix}{name}");
        if path.is_dir() {
            walk(&path, &format!("{rel}/"), out);
        } else {
            out.push((rel, path));
        }
    }
}

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(mime: &str) -> bool {
    mime.starts_with("text/") || mime == "application/json" || mime == "image/svg+xml"
}

/// FNV-1a 64: a content hash for ETags, stable across builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
