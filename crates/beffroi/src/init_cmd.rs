//! `beffroi init DIR`: a new deployment folder for a named territory, its communes taken
//! from the official list compiled into the binary (`beffroi-communes`): territory,
//! commune outlines, the town hall of the first commune as a site, and commented example
//! kinds, rules, procedures, units, escalation, crisis roles, situations, privacy and
//! security settings that the town edits, plus a `beffroi.toml` for `serve`. The folder
//! is checked like `beffroi check` before the command reports success.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use beffroi_communes::{Catalogue, CentreSource, Commune};
use clap::Args as ClapArgs;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Folder to create; refused if it exists and is not empty.
    dir: PathBuf,
    /// Name of the territory, as people read it: "Ville de Beaune", "Dijon Métropole".
    #[arg(long)]
    name: String,
    /// Communes by INSEE code (or by name when unique in France); the first one holds the
    /// town hall site. Repeat, or separate with commas.
    #[arg(long, value_name = "INSEE", value_delimiter = ',')]
    commune: Vec<String>,
    /// Every member of an intercommunality (EPCI), by SIREN number or name
    /// ("Dijon Métropole", "242100410").
    #[arg(long, value_name = "SIREN|NAME")]
    epci: Option<String>,
    /// Every commune of a département, by code ("21", "2A", "974") or name.
    #[arg(long, value_name = "CODE")]
    departement: Option<String>,
    /// Identifier of the territory (default: made from --name).
    #[arg(long)]
    id: Option<String>,
    /// A commune's position, `INSEE=LON,LAT` (WGS84 degrees): for a commune the data
    /// places nowhere (overseas collectivities), or to move it. Repeatable.
    #[arg(long, value_name = "INSEE=LON,LAT")]
    position: Vec<String>,
}

pub fn run(args: Args) -> ExitCode {
    match init(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One commune of the new territory.
struct Member<'a> {
    commune: Commune<'a>,
    id: String,
    position: [f64; 2],
    /// Where the position comes from, for the comment in territory.toml.
    origin: &'static str,
}

/// `INSEE=LON,LAT`.
fn parse_position(s: &str) -> Result<(String, [f64; 2])> {
    let usage =
        || format!("--position `{s}`: expected INSEE=LON,LAT, e.g. 98735=-149.5665,-17.5350");
    let (code, coords) = s.split_once('=').with_context(usage)?;
    let (lon, lat) = coords.split_once(',').with_context(usage)?;
    let lon: f64 = lon.trim().parse().ok().with_context(usage)?;
    let lat: f64 = lat.trim().parse().ok().with_context(usage)?;
    if !(lon.is_finite() && lat.is_finite() && lon.abs() <= 180.0 && lat.abs() <= 90.0) {
        bail!("--position `{s}`: longitude within ±180 and latitude within ±90 degrees");
    }
    Ok((code.trim().to_ascii_uppercase(), [lon, lat]))
}

/// Checks an identifier as the territory loader does.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

/// The communes the options name, first commune first, each once.
fn select<'a>(catalogue: &'a Catalogue, args: &Args) -> Result<Vec<Commune<'a>>> {
    let mut out: Vec<Commune<'a>> = Vec::new();
    let mut problems = Vec::new();
    for given in &args.commune {
        match catalogue.find_commune(given) {
            Ok(c) => out.push(c),
            Err(e) => problems.push(format!("--commune: {e}")),
        }
    }
    // An EPCI's or a département's communes: the most populous first (usually the seat).
    let by_population = |mut v: Vec<Commune<'a>>| {
        v.sort_by(|a, b| {
            b.population()
                .cmp(&a.population())
                .then(a.code().cmp(b.code()))
        });
        v
    };
    if let Some(given) = &args.epci {
        match catalogue.find_epci(given) {
            Ok(e) => out.extend(by_population(e.members())),
            Err(e) => problems.push(format!("--epci: {e}")),
        }
    }
    if let Some(given) = &args.departement {
        match catalogue.find_departement(given) {
            Ok(d) => out.extend(by_population(
                catalogue.communes_of_departement(d).collect(),
            )),
            Err(e) => problems.push(format!("--departement: {e}")),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let mut seen = BTreeSet::new();
    out.retain(|c| seen.insert(c.code()));
    if out.is_empty() {
        bail!(
            "name the communes of the territory: --commune INSEE…, --epci SIREN|NAME or --departement CODE"
        );
    }
    Ok(out)
}

fn init(args: &Args) -> Result<()> {
    if args.name.trim().is_empty() {
        bail!("--name: the territory needs a name, e.g. --name \"Ville de Beaune\"");
    }
    let id = match &args.id {
        Some(id) if valid_id(id) => id.clone(),
        Some(id) => bail!(
            "--id `{id}`: lowercase letters, digits, `-`, `_`, `.` only (e.g. `{}`)",
            beffroi_communes::slug(id)
        ),
        None => beffroi_communes::slug(&args.name),
    };
    if !valid_id(&id) {
        bail!(
            "--name `{}` makes no identifier: give one with --id",
            args.name
        );
    }
    let dir = &args.dir;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{} exists and cannot be read", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty: `beffroi init` writes a new deployment folder; name a new or empty one",
                dir.display()
            );
        }
    }

    let catalogue =
        Catalogue::official().context("the list of communes compiled into the binary")?;
    let positions: Vec<(String, [f64; 2])> = args
        .position
        .iter()
        .map(|p| parse_position(p))
        .collect::<Result<_>>()?;
    let communes = select(&catalogue, args)?;
    for (code, _) in &positions {
        if !communes.iter().any(|c| c.code() == code) {
            bail!("--position {code}: not a commune of this territory");
        }
    }

    let mut members = Vec::new();
    let mut unplaced = Vec::new();
    let mut ids = BTreeSet::new();
    for c in communes {
        let placed = positions
            .iter()
            .find(|(code, _)| code == c.code())
            .map(|(_, p)| (*p, "given with --position"))
            .or_else(|| {
                c.centre().map(|(p, source)| match source {
                    CentreSource::TownHall => (p, "the town hall"),
                    CentreSource::Outline => (p, "inside the outline (no town hall in the data)"),
                })
            });
        let Some((position, origin)) = placed else {
            unplaced.push(c);
            continue;
        };
        let mut cid = beffroi_communes::slug(c.name());
        if !valid_id(&cid) || !ids.insert(cid.clone()) {
            cid = format!("{cid}-{}", c.code().to_ascii_lowercase());
            ids.insert(cid.clone());
        }
        members.push(Member {
            commune: c,
            id: cid,
            position,
            origin,
        });
    }
    if !unplaced.is_empty() {
        let list: Vec<String> = unplaced.iter().map(|c| c.label()).collect();
        bail!(
            "no position is known for {}: the open data compiled in places the communes of metropolitan France and the overseas départements only, and Beffroi never invents one; give each with --position INSEE=LON,LAT (WGS84 degrees, e.g. the town hall read on a map)",
            list.join(", ")
        );
    }

    write_deployment(dir, args, &id, &members, &catalogue)?;

    // What init wrote must load as `beffroi check` loads it.
    let dep = match crate::setup::load_dir(dir) {
        Ok(dep) => dep,
        Err(errors) => bail!(
            "the new deployment does not load (a fault of `beffroi init`, please report it):\n{errors}"
        ),
    };
    print_summary(dir, args, &members, &dep, &catalogue);
    Ok(())
}

fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .fold(template.to_string(), |t, (k, v)| t.replace(k, v))
}

/// A TOML basic string (a JSON string is one: same quotes and escapes).
fn toml_str(s: &str) -> String {
    json_str(s)
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A coordinate as the files write it: at most 6 decimals, no trailing zeros.
fn coord(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0');
    let s = s
        .strip_suffix('.')
        .map_or(s.to_string(), |s| format!("{s}.0"));
    if s == "-0.0" { "0.0".into() } else { s }
}

fn write_deployment(
    dir: &Path,
    args: &Args,
    id: &str,
    members: &[Member<'_>],
    catalogue: &Catalogue,
) -> Result<()> {
    let first = &members[0];
    let site_id = format!("{}-mairie", first.id);
    let dir_text = dir.display().to_string();
    let pairs = [
        ("{{NAME}}", args.name.as_str()),
        ("{{FIRST_COMMUNE}}", first.id.as_str()),
        ("{{SITE}}", site_id.as_str()),
        ("{{DIR}}", dir_text.as_str()),
    ];
    let t = dir.join("territory");
    std::fs::create_dir_all(t.join("devices"))
        .with_context(|| format!("cannot create {}", t.join("devices").display()))?;
    let write = |path: PathBuf, text: String| -> Result<()> {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };

    // territory.toml
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Beffroi — the territory {}: its communes (INSEE codes of the Code officiel\n\
         # géographique) and, optionally, zones. Format: docs/formats.md, \"territory.toml\".\n\
         # Written by `beffroi init` from {}.\n\
         # A commune's `position` ([lon, lat], WGS84) is where its name goes on the map.\n",
        args.name,
        catalogue.sources()
    );
    let _ = writeln!(
        s,
        "[territory]\nid = {}\nname = {}\ntimezone = \"Europe/Paris\"\n",
        toml_str(id),
        toml_str(&args.name)
    );
    for m in members {
        let _ = writeln!(
            s,
            "[[commune]]\nid = {}\nname = {}\ninsee = {}\nposition = [{}, {}]   # {}\n",
            toml_str(&m.id),
            toml_str(m.commune.name()),
            toml_str(m.commune.code()),
            coord(m.position[0]),
            coord(m.position[1]),
            m.origin
        );
    }
    let _ = writeln!(
        s,
        "# Zones group sites within a commune (a district, a campus); sites name them with\n\
         # their `zone` property, situations and people counts use them.\n\
         # [[zone]]\n# id = \"{0}-centre\"\n# name = \"{1} centre\"\n# commune = \"{0}\"",
        first.id,
        first.commune.name()
    );
    write(t.join("territory.toml"), s)?;

    // communes.geojson: the outlines, one feature a line.
    let mut features = Vec::new();
    for m in members {
        let rings = m.commune.outline();
        if rings.is_empty() {
            continue;
        }
        let polys: Vec<String> = rings
            .iter()
            .map(|r| {
                let pts: Vec<String> = r
                    .iter()
                    .map(|p| format!("[{}, {}]", coord(p[0]), coord(p[1])))
                    .collect();
                format!("[[{}]]", pts.join(", "))
            })
            .collect();
        features.push(format!(
            "{{\"type\": \"Feature\", \"properties\": {{\"id\": {}, \"name\": {}, \"insee\": {}}}, \"geometry\": {{\"type\": \"MultiPolygon\", \"coordinates\": [{}]}}}}",
            json_str(&m.id),
            json_str(m.commune.name()),
            json_str(m.commune.code()),
            polys.join(", ")
        ));
    }
    write(
        t.join("communes.geojson"),
        format!(
            "{{\"type\": \"FeatureCollection\", \"features\": [\n{}\n]}}\n",
            features.join(",\n")
        ),
    )?;

    // sites.geojson: the first commune's town hall.
    let site = format!(
        "{{\"type\": \"Feature\", \"properties\": {{\"id\": {}, \"name\": {}, \"kind\": \"town_hall\", \"commune\": {}}}, \"geometry\": {{\"type\": \"Point\", \"coordinates\": [{}, {}]}}}}",
        json_str(&site_id),
        json_str(&format!("Mairie de {}", first.commune.name())),
        json_str(&first.id),
        coord(first.position[0]),
        coord(first.position[1])
    );
    write(
        t.join("sites.geojson"),
        format!("{{\"type\": \"FeatureCollection\", \"features\": [\n{site}\n]}}\n"),
    )?;

    const TEMPLATES: &[(&str, &str)] = &[
        ("territory/kinds.toml", include_str!("init/kinds.toml")),
        (
            "territory/devices/README.md",
            include_str!("init/devices-README.md"),
        ),
        ("rules.toml", include_str!("init/rules.toml")),
        ("procedures.toml", include_str!("init/procedures.toml")),
        ("units.toml", include_str!("init/units.toml")),
        ("escalation.toml", include_str!("init/escalation.toml")),
        ("crisis.toml", include_str!("init/crisis.toml")),
        ("situations.toml", include_str!("init/situations.toml")),
        ("privacy.toml", include_str!("init/privacy.toml")),
        ("security.toml", include_str!("init/security.toml")),
        ("beffroi.toml", include_str!("init/beffroi.toml")),
        (".gitignore", include_str!("init/gitignore")),
    ];
    for (path, template) in TEMPLATES {
        write(dir.join(path), fill(template, &pairs))?;
    }
    Ok(())
}

fn print_summary(
    dir: &Path,
    args: &Args,
    members: &[Member<'_>],
    dep: &crate::setup::Deployment,
    catalogue: &Catalogue,
) {
    let d = dir.display();
    let names: Vec<&str> = members.iter().take(5).map(|m| m.commune.name()).collect();
    let more = match members.len() {
        n if n > 5 => format!(" and {} more", n - 5),
        _ => String::new(),
    };
    let outlines = members
        .iter()
        .filter(|m| !m.commune.outline().is_empty())
        .count();
    println!(
        "{d}: deployment for \"{}\" written: {} commune(s) ({}{more}), {outlines} outline(s), the site `{}-mairie`; {} device kinds, {} rules, {} procedures, {} units, {} crisis roles, {} processing activities.",
        args.name,
        members.len(),
        names.join(", "),
        members[0].id,
        dep.territory.kinds.len(),
        dep.rules.len(),
        dep.procedures.len(),
        dep.operations.units.len(),
        dep.operations.roles.len(),
        dep.privacy.activities.len(),
    );
    println!("Communes from {}.", catalogue.sources());
    for m in members.iter().filter(|m| m.origin != "the town hall") {
        println!(
            "note: `{}` ({}) is placed {}: check its position in territory/territory.toml",
            m.id,
            m.commune.code(),
            m.origin
        );
    }
    println!(
        "\nNext steps:\n\
         1. Read and edit the files, each commented: privacy.toml (controller and DPO contact,\n   \
            to complete), units.toml (your patrols and on-call teams), procedures.toml (your\n   \
            reflex procedures and phone numbers), rules.toml (your thresholds), kinds.toml.\n\
         2. Bring your sites and devices (`--dry-run` first shows what would change):\n   \
            beffroi import --dir {d} --csv-sites sites.csv --csv-devices devices.csv   (templates: docs/templates/)\n   \
            beffroi import --dir {d} --geojson layer.geojson   (a QGIS export, EPSG:4326)\n   \
            beffroi import --dir {d} --chirpstack devices.json --kind-map kind-map.toml --site {}-mairie\n\
         3. beffroi check {d}\n   \
            (until devices are imported, it warns that each kind has no device and each rule matches none)\n\
         4. BEFFROI_ADMIN_PASSWORD='…' beffroi serve --config {d}/beffroi.toml\n   \
            then open http://127.0.0.1:8080 and sign in as `admin`.",
        members[0].id
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_are_bounded() {
        assert_eq!(
            parse_position("98735=-149.5665,-17.535").expect("valid"),
            ("98735".to_string(), [-149.5665, -17.535])
        );
        assert_eq!(
            parse_position("2a004= 8.7369 , 41.9192").expect("valid").0,
            "2A004"
        );
        for bad in [
            "98735",
            "98735=1",
            "98735=a,b",
            "98735=200,0",
            "98735=0,-91",
            "x=NaN,0",
        ] {
            assert!(parse_position(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn coordinates_are_written_short() {
        assert_eq!(coord(5.0415), "5.0415");
        assert_eq!(coord(47.0), "47.0");
        assert_eq!(coord(-0.0000001), "0.0");
        assert_eq!(coord(-149.56654321), "-149.566543");
    }
}
