//! What an import changes in the deployment's files, and the files it writes.
//!
//! A device whose id is already in a devices file is updated there, in place (comments,
//! order and the other devices untouched); a new device goes to the file of its source,
//! `devices/imported-<source>.toml`. A site whose id is in `sites.geojson` is updated in
//! place; a new one is appended. A field the source does not give (a device's position
//! or EUI, a site's zone) is left as the file has it, and a site's outline is not
//! replaced by a point. Applying a plan and planning the same import again gives an
//! empty plan.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use beffroi_core::Point;
use serde_json::{Map, Value};
use toml_edit::{DocumentMut, Item};

use crate::error::{ImportError, ImportErrors};
use crate::json_spans::array_elements;
use crate::record::{DeviceRecord, Geometry, Records, SiteRecord, slug};

/// The deployment's files an import may change, by their path in the territory folder.
#[derive(Clone, Debug, Default)]
pub struct DeploymentFiles {
    /// `devices/*.toml`: path (`devices/dijon.toml`) and text.
    pub devices: Vec<(String, String)>,
    /// `sites.geojson`'s text.
    pub sites: String,
}

/// One field that changes: its name, what the file has, what the source gives.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Add,
    Update(Vec<FieldChange>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceChange {
    pub record: DeviceRecord,
    /// The devices file it is added to or updated in.
    pub file: String,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SiteChange {
    pub record: SiteRecord,
    pub change: Change,
}

/// What an import would change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub sites: Vec<SiteChange>,
    pub devices: Vec<DeviceChange>,
    pub unchanged_sites: usize,
    pub unchanged_devices: usize,
    /// What was kept although the source differs (an outline not replaced by a point).
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty() && self.devices.is_empty()
    }
}

/// The file new devices of a source go to: `devices/imported-<source's name>.toml`.
pub fn devices_file_for(source: &str) -> String {
    let name = source.rsplit(['/', '\\']).next().unwrap_or(source);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    match slug(stem) {
        s if s.is_empty() => "devices/imported.toml".into(),
        s => format!("devices/imported-{s}.toml"),
    }
}

/// A device as a devices file has it.
struct Existing {
    file: String,
    kind: String,
    site: String,
    position: Option<[f64; 2]>,
    dev_eui: Option<String>,
}

fn parse_toml(path: &str, text: &str) -> Result<DocumentMut, ImportError> {
    text.parse::<DocumentMut>().map_err(|e| {
        ImportError::new(
            path,
            e.span().map(|s| crate::text::loc_of(text, s.start)),
            None,
            format!("cannot read: {}", e.message()),
        )
    })
}

fn float(v: &toml_edit::Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

fn existing_devices(files: &DeploymentFiles) -> Result<BTreeMap<String, Existing>, ImportErrors> {
    let mut out = BTreeMap::new();
    let mut errors = ImportErrors::default();
    for (path, text) in &files.devices {
        let doc = match parse_toml(path, text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let Some(devices) = doc.get("device").and_then(Item::as_array_of_tables) else {
            continue;
        };
        for t in devices.iter() {
            let s = |k: &str| t.get(k).and_then(Item::as_str).map(str::to_string);
            let Some(id) = s("id") else { continue };
            let position = t
                .get("position")
                .and_then(Item::as_array)
                .and_then(|a| Some([float(a.get(0)?)?, float(a.get(1)?)?]));
            out.insert(
                id,
                Existing {
                    file: path.clone(),
                    kind: s("kind").unwrap_or_default(),
                    site: s("site").unwrap_or_default(),
                    position,
                    dev_eui: s("dev_eui").map(|e| e.to_ascii_lowercase()),
                },
            );
        }
    }
    errors.into_result(out)
}

/// A site as `sites.geojson` has it: its feature's place in the text and its content.
struct ExistingSite {
    index: usize,
    feature: Map<String, Value>,
}

struct SitesFile {
    spans: Vec<Range<usize>>,
    close: usize,
    by_id: BTreeMap<String, ExistingSite>,
}

fn sites_file(text: &str) -> Result<SitesFile, ImportErrors> {
    let fail = |msg: String| ImportErrors(vec![ImportError::new("sites.geojson", None, None, msg)]);
    let doc: Value = serde_json::from_str(text).map_err(|e| fail(format!("cannot read: {e}")))?;
    let features = doc
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| fail("expected a FeatureCollection".into()))?;
    let spans = array_elements(text, Some("features"))
        .filter(|s| s.elements.len() == features.len())
        .ok_or_else(|| fail("cannot find the features in the text".into()))?;
    let mut by_id = BTreeMap::new();
    for (index, f) in features.iter().enumerate() {
        let Some(feature) = f.as_object() else {
            continue;
        };
        let id = feature
            .get("properties")
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str);
        if let Some(id) = id {
            by_id.insert(
                id.to_string(),
                ExistingSite {
                    index,
                    feature: feature.clone(),
                },
            );
        }
    }
    Ok(SitesFile {
        spans: spans.elements,
        close: spans.close,
        by_id,
    })
}

fn show_position(p: Option<[f64; 2]>) -> String {
    match p {
        Some([lon, lat]) => format!("[{lon}, {lat}]"),
        None => "(none)".into(),
    }
}

fn geometry_of(v: Option<&Value>) -> Option<Geometry> {
    let v = v?;
    let pt = |c: &Value| -> Option<Point> {
        let a = c.as_array()?;
        Some(Point::new(a.first()?.as_f64()?, a.get(1)?.as_f64()?))
    };
    let pts = |c: &Value| -> Option<Vec<Point>> { c.as_array()?.iter().map(pt).collect() };
    let c = v.get("coordinates")?;
    match v.get("type")?.as_str()? {
        "Point" => pt(c).map(Geometry::Point),
        "LineString" => pts(c).map(Geometry::LineString),
        "Polygon" => pts(c.as_array()?.first()?).map(Geometry::Polygon),
        _ => None,
    }
}

/// Positions closer than this (a tenth of a millimetre) are the same: a JSON reader may
/// read a long decimal back a unit in the last place away.
const SAME_DEGREES: f64 = 1e-9;

fn same_point(a: Point, b: Point) -> bool {
    (a.lon - b.lon).abs() <= SAME_DEGREES && (a.lat - b.lat).abs() <= SAME_DEGREES
}

fn same_points(a: &[Point], b: &[Point]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_point(*x, *y))
}

fn same_geometry(a: &Geometry, b: &Geometry) -> bool {
    match (a, b) {
        (Geometry::Point(x), Geometry::Point(y)) => same_point(*x, *y),
        (Geometry::LineString(x), Geometry::LineString(y))
        | (Geometry::Polygon(x), Geometry::Polygon(y)) => same_points(x, y),
        _ => false,
    }
}

fn geometry_value(g: &Geometry) -> Value {
    let xy = |p: &Point| Value::from(vec![p.lon, p.lat]);
    match g {
        Geometry::Point(p) => serde_json::json!({"type": "Point", "coordinates": xy(p)}),
        Geometry::LineString(l) => {
            serde_json::json!({"type": "LineString", "coordinates": l.iter().map(xy).collect::<Vec<_>>()})
        }
        Geometry::Polygon(r) => {
            serde_json::json!({"type": "Polygon", "coordinates": [r.iter().map(xy).collect::<Vec<_>>()]})
        }
    }
}

fn geometry_name(g: &Geometry) -> String {
    match g {
        Geometry::Point(p) => format!("Point [{}, {}]", p.lon, p.lat),
        Geometry::LineString(l) => format!("LineString of {} positions", l.len()),
        Geometry::Polygon(r) => format!("Polygon of {} positions", r.len()),
    }
}

/// What applying `records` to `files` changes.
pub fn plan(files: &DeploymentFiles, records: &Records) -> Result<Plan, ImportErrors> {
    let mut plan = Plan::default();
    if !records.sites.is_empty() {
        let sites = sites_file(&files.sites)?;
        for r in &records.sites {
            let Some(existing) = sites.by_id.get(&r.id) else {
                plan.sites.push(SiteChange {
                    record: r.clone(),
                    change: Change::Add,
                });
                continue;
            };
            let props = existing.feature.get("properties");
            let prop = |k: &str| {
                props
                    .and_then(|p| p.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let mut changes = Vec::new();
            let mut text_field = |field: &'static str, new: Option<&String>| {
                if let Some(new) = new
                    && prop(field).as_ref() != Some(new)
                {
                    changes.push(FieldChange {
                        field,
                        old: prop(field).unwrap_or_else(|| "(none)".into()),
                        new: new.clone(),
                    });
                }
            };
            text_field("name", Some(&r.name));
            text_field("kind", Some(&r.kind));
            text_field("commune", Some(&r.commune));
            text_field("zone", r.zone.as_ref());
            text_field("river", r.river.as_ref());
            let old = geometry_of(existing.feature.get("geometry"));
            match (&old, &r.geometry) {
                (Some(Geometry::Polygon(_) | Geometry::LineString(_)), Geometry::Point(_)) => {
                    plan.notes.push(format!(
                        "site `{}`: its outline in sites.geojson is kept ({} gives only a point)",
                        r.id,
                        r.origin.place()
                    ));
                }
                (old, new) if !old.as_ref().is_some_and(|o| same_geometry(o, new)) => {
                    changes.push(FieldChange {
                        field: "geometry",
                        old: old.as_ref().map_or_else(|| "(none)".into(), geometry_name),
                        new: geometry_name(new),
                    })
                }
                _ => {}
            }
            if changes.is_empty() {
                plan.unchanged_sites += 1;
            } else {
                plan.sites.push(SiteChange {
                    record: r.clone(),
                    change: Change::Update(changes),
                });
            }
        }
    }
    if !records.devices.is_empty() {
        let existing = existing_devices(files)?;
        for r in &records.devices {
            let Some(e) = existing.get(&r.id) else {
                plan.devices.push(DeviceChange {
                    record: r.clone(),
                    file: devices_file_for(&r.origin.file),
                    change: Change::Add,
                });
                continue;
            };
            let mut changes = Vec::new();
            for (field, old, new) in [("kind", &e.kind, &r.kind), ("site", &e.site, &r.site)] {
                if old != new {
                    changes.push(FieldChange {
                        field,
                        old: old.clone(),
                        new: new.clone(),
                    });
                }
            }
            if let Some(p) = r.position {
                let new = [p.lon, p.lat];
                let same = e
                    .position
                    .is_some_and(|[lon, lat]| same_point(Point::new(lon, lat), p));
                if !same {
                    changes.push(FieldChange {
                        field: "position",
                        old: show_position(e.position),
                        new: show_position(Some(new)),
                    });
                }
            }
            if let Some(eui) = &r.dev_eui
                && e.dev_eui.as_ref() != Some(eui)
            {
                changes.push(FieldChange {
                    field: "dev_eui",
                    old: e.dev_eui.clone().unwrap_or_else(|| "(none)".into()),
                    new: eui.clone(),
                });
            }
            if changes.is_empty() {
                plan.unchanged_devices += 1;
            } else {
                plan.devices.push(DeviceChange {
                    record: r.clone(),
                    file: e.file.clone(),
                    change: Change::Update(changes),
                });
            }
        }
    }
    Ok(plan)
}

/// A TOML string, quoted and escaped.
fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string()
}

fn toml_position(p: Point) -> toml_edit::Value {
    let mut a = toml_edit::Array::new();
    a.push(p.lon);
    a.push(p.lat);
    toml_edit::Value::Array(a)
}

/// Sets `key` of a device table, keeping the comment after the old value.
fn set(table: &mut toml_edit::Table, key: &str, value: toml_edit::Value) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

/// A new device in the style of the devices files.
fn device_text(r: &DeviceRecord) -> String {
    let mut s = format!(
        "\n[[device]]\nid = {}\nkind = {}\nsite = {}\n",
        toml_str(&r.id),
        toml_str(&r.kind),
        toml_str(&r.site)
    );
    if let Some(p) = r.position {
        s.push_str(&format!("position = {}\n", toml_position(p)));
    }
    if let Some(e) = &r.dev_eui {
        s.push_str(&format!("dev_eui = {}\n", toml_str(e)));
    }
    s
}

/// A JSON value written as the territory's files write it: `{"a": 1, "b": [2, 3]}`.
fn json_text(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            // GeoJSON's `type` first, as people write it.
            let members = m
                .get_key_value("type")
                .into_iter()
                .chain(m.iter().filter(|(k, _)| *k != "type"));
            for (i, (k, v)) in members.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push_str(": ");
                json_text(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_text(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A site's feature on one line, its properties in the usual order (`id`, `name`,
/// `kind`, `commune`, `zone`, `river`, then any other the feature had).
fn feature_text(r: &SiteRecord, old: Option<&Map<String, Value>>) -> String {
    let old_props = old
        .and_then(|f| f.get("properties"))
        .and_then(Value::as_object);
    let mut props: Vec<(String, Value)> = vec![
        ("id".into(), r.id.as_str().into()),
        ("name".into(), r.name.as_str().into()),
        ("kind".into(), r.kind.as_str().into()),
        ("commune".into(), r.commune.as_str().into()),
    ];
    for (k, v) in [("zone", &r.zone), ("river", &r.river)] {
        let v = v
            .as_deref()
            .map(Value::from)
            .or_else(|| old_props.and_then(|p| p.get(k)).cloned());
        if let Some(v) = v {
            props.push((k.into(), v));
        }
    }
    for (k, v) in old_props.into_iter().flatten() {
        if !props.iter().any(|(p, _)| p == k) {
            props.push((k.clone(), v.clone()));
        }
    }
    let geometry = match (old.and_then(|f| f.get("geometry")), &r.geometry) {
        (Some(g), Geometry::Point(_))
            if matches!(
                geometry_of(Some(g)),
                Some(Geometry::Polygon(_) | Geometry::LineString(_))
            ) =>
        {
            g.clone()
        }
        _ => geometry_value(&r.geometry),
    };
    let mut out = String::from("{\"type\": \"Feature\", \"properties\": {");
    for (i, (k, v)) in props.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&Value::from(k.as_str()).to_string());
        out.push_str(": ");
        json_text(v, &mut out);
    }
    out.push_str("}, \"geometry\": ");
    json_text(&geometry, &mut out);
    for (k, v) in old.into_iter().flatten() {
        if !matches!(k.as_str(), "type" | "properties" | "geometry") {
            out.push_str(", ");
            out.push_str(&Value::from(k.as_str()).to_string());
            out.push_str(": ");
            json_text(v, &mut out);
        }
    }
    out.push('}');
    out
}

/// A file the import writes: its path in the territory folder and its new text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWrite {
    pub path: String,
    pub text: String,
}

/// The files to write for `plan`, from the files it was planned on.
pub fn apply(plan: &Plan, files: &DeploymentFiles) -> Result<Vec<FileWrite>, ImportErrors> {
    let mut writes = Vec::new();
    if !plan.sites.is_empty() {
        let sites = sites_file(&files.sites)?;
        let mut text = files.sites.clone();
        // Edits from the end of the file, so that earlier offsets stay right.
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        let mut added = String::new();
        for c in &plan.sites {
            match (&c.change, sites.by_id.get(&c.record.id)) {
                (Change::Update(_), Some(old)) => {
                    if let Some(span) = sites.spans.get(old.index) {
                        edits.push((span.clone(), feature_text(&c.record, Some(&old.feature))));
                    }
                }
                _ => {
                    added.push_str(if sites.spans.is_empty() && added.is_empty() {
                        "\n"
                    } else {
                        ",\n"
                    });
                    added.push_str(&feature_text(&c.record, None));
                }
            }
        }
        if !added.is_empty() {
            match sites.spans.last() {
                Some(last) => edits.push((last.end..last.end, added)),
                None => {
                    added.push('\n');
                    edits.push((sites.close..sites.close, added));
                }
            }
        }
        edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
        for (range, new) in edits {
            text.replace_range(range, &new);
        }
        writes.push(FileWrite {
            path: "sites.geojson".into(),
            text,
        });
    }
    // Devices, file by file, in the order of the plan.
    let mut by_file: BTreeMap<&str, Vec<&DeviceChange>> = BTreeMap::new();
    for c in &plan.devices {
        by_file.entry(c.file.as_str()).or_default().push(c);
    }
    let mut errors = ImportErrors::default();
    for (path, changes) in by_file {
        let old = files
            .devices
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.as_str());
        let updates: BTreeMap<&str, &DeviceChange> = changes
            .iter()
            .filter(|c| matches!(c.change, Change::Update(_)))
            .map(|c| (c.record.id.as_str(), *c))
            .collect();
        let mut text = match old {
            Some(old) if !updates.is_empty() => {
                let mut doc = match parse_toml(path, old) {
                    Ok(d) => d,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                if let Some(devices) = doc.get_mut("device").and_then(Item::as_array_of_tables_mut)
                {
                    for t in devices.iter_mut() {
                        let Some(c) = t
                            .get("id")
                            .and_then(Item::as_str)
                            .and_then(|id| updates.get(id))
                        else {
                            continue;
                        };
                        let Change::Update(fields) = &c.change else {
                            continue;
                        };
                        for f in fields {
                            match f.field {
                                "kind" => set(t, "kind", c.record.kind.as_str().into()),
                                "site" => set(t, "site", c.record.site.as_str().into()),
                                "position" => {
                                    if let Some(p) = c.record.position {
                                        set(t, "position", toml_position(p));
                                    }
                                }
                                "dev_eui" => {
                                    if let Some(e) = &c.record.dev_eui {
                                        set(t, "dev_eui", e.as_str().into());
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                doc.to_string()
            }
            Some(old) => old.to_string(),
            None => {
                let source = changes
                    .first()
                    .map(|c| c.record.origin.file.to_string())
                    .unwrap_or_default();
                let name = source
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or(&source)
                    .to_string();
                format!(
                    "# Devices imported by `beffroi import` from {name}.\n\
                     # Importing it again updates these entries in place and adds new ones;\n\
                     # comments and the order of the entries are kept.\n"
                )
            }
        };
        let adds: Vec<_> = changes.iter().filter(|c| c.change == Change::Add).collect();
        if !adds.is_empty() && !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for c in adds {
            text.push_str(&device_text(&c.record));
        }
        writes.push(FileWrite {
            path: path.to_string(),
            text,
        });
    }
    errors.into_result(writes)
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            writeln!(
                f,
                "nothing to change: {} site(s) and {} device(s) already as imported",
                self.unchanged_sites, self.unchanged_devices
            )?;
        }
        if !self.sites.is_empty() {
            write_counts(
                f,
                "sites.geojson",
                "site(s)",
                self.sites.iter().map(|c| &c.change),
                self.unchanged_sites,
            )?;
            for c in &self.sites {
                let r = &c.record;
                match &c.change {
                    Change::Add => writeln!(
                        f,
                        "  + site `{}` ({}, commune {}, {})   from {}",
                        r.id,
                        r.kind,
                        r.commune,
                        geometry_name(&r.geometry),
                        r.origin.place()
                    )?,
                    Change::Update(fields) => {
                        writeln!(f, "  ~ site `{}`   from {}", r.id, r.origin.place())?;
                        write_fields(f, fields)?;
                    }
                }
            }
        }
        if !self.devices.is_empty() {
            write_counts(
                f,
                "devices",
                "device(s)",
                self.devices.iter().map(|c| &c.change),
                self.unchanged_devices,
            )?;
            for c in &self.devices {
                let r = &c.record;
                match &c.change {
                    Change::Add => {
                        write!(f, "  + device `{}` ({} at {}", r.id, r.kind, r.site)?;
                        if let Some(e) = &r.dev_eui {
                            write!(f, ", dev_eui {e}")?;
                        }
                        writeln!(f, ") → {}   from {}", c.file, r.origin.place())?;
                    }
                    Change::Update(fields) => {
                        writeln!(
                            f,
                            "  ~ device `{}` in {}   from {}",
                            r.id,
                            c.file,
                            r.origin.place()
                        )?;
                        write_fields(f, fields)?;
                    }
                }
            }
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// A plan's line for the sites or the devices: how many to add, to update, and unchanged.
fn write_counts<'a>(
    f: &mut fmt::Formatter<'_>,
    file: &str,
    noun: &str,
    changes: impl Iterator<Item = &'a Change>,
    unchanged: usize,
) -> fmt::Result {
    let (mut add, mut update) = (0, 0);
    for c in changes {
        match c {
            Change::Add => add += 1,
            Change::Update(_) => update += 1,
        }
    }
    writeln!(
        f,
        "{file}: {add} {noun} to add, {update} to update, {unchanged} unchanged"
    )
}

/// The fields an update changes, one a line.
fn write_fields(f: &mut fmt::Formatter<'_>, fields: &[FieldChange]) -> fmt::Result {
    for x in fields {
        writeln!(f, "      {}: {} → {}", x.field, x.old, x.new)?;
    }
    Ok(())
}
