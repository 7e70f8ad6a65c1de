use std::path::Path;
use std::sync::Arc;

use beffroi_core::geo::ring_centre;
use beffroi_core::{
    Commune, DataCategory, Device, DeviceKind, Duration, FieldSpec, FieldType, Identifier, Point,
    Semantic, Signing, Site, Territory, TextDomain, TextPattern, Zone,
};
use serde::Deserialize;
use toml::Spanned;

use crate::error::suggestion;
use crate::error::{ConfigError, ConfigErrors, SourceFile, parse_duration};
use crate::failed::{Failed, What};
use crate::prohibited::{prohibited_label, prohibited_name};
use crate::toml_doc::TomlDoc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TerritoryFile {
    territory: Header,
    #[serde(default)]
    commune: Vec<Spanned<CommuneRaw>>,
    #[serde(default)]
    zone: Vec<Spanned<ZoneRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    id: String,
    name: String,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommuneRaw {
    id: String,
    name: String,
    #[serde(default)]
    insee: Option<String>,
    position: [f64; 2],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneRaw {
    id: String,
    name: String,
    commune: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindsFile {
    #[serde(default)]
    kind: Vec<Spanned<KindRaw>>,
    /// Read by `site_kinds`.
    #[serde(default, rename = "site_kind")]
    _site_kind: Option<serde::de::IgnoredAny>,
}

/// A kind's label: one text (older files), or one per language of the console.
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelRaw {
    One(String),
    Languages(LabelsRaw),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelsRaw {
    fr: String,
    en: String,
}

impl LabelRaw {
    /// The French label (or the only one).
    fn fr(&self) -> &str {
        match self {
            LabelRaw::One(s) => s,
            LabelRaw::Languages(l) => &l.fr,
        }
    }
    fn en(&self) -> Option<&str> {
        match self {
            LabelRaw::One(_) => None,
            LabelRaw::Languages(l) => Some(&l.en),
        }
    }
    fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.fr()).chain(self.en())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindRaw {
    id: String,
    label: LabelRaw,
    #[serde(default)]
    heartbeat: Option<String>,
    /// How often a device of the kind reports in normal life.
    #[serde(default)]
    period: Option<String>,
    /// Signed telemetry: "none" (default), "optional" or "required".
    #[serde(default)]
    signing: Option<String>,
    /// Default processing activity (register) of the kind's fields.
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    public_space: bool,
    #[serde(default)]
    video_linked: bool,
    #[serde(default)]
    field: Vec<Spanned<FieldRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldRaw {
    name: String,
    #[serde(default)]
    unit: Option<String>,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    category: String,
    #[serde(default)]
    max_step_per_minute: Option<f64>,
    #[serde(default)]
    identifier: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    people_count: bool,
    /// What the field means (a closed set); required on kinds that observe public space.
    #[serde(default)]
    semantic: Option<String>,
    /// Outside the closed set: what the field is and why it is needed.
    #[serde(default)]
    declared: Option<String>,
    /// A technical text field's closed list of values.
    #[serde(default)]
    values: Option<Spanned<Vec<String>>>,
    /// A technical text field's pattern (anchored, bounded length).
    #[serde(default)]
    pattern: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesFile {
    #[serde(default)]
    device: Vec<Spanned<DeviceRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct DeviceRaw {
    id: String,
    kind: String,
    site: String,
    #[serde(default)]
    position: Option<[f64; 2]>,
    #[serde(default)]
    dev_eui: Option<String>,
}

/// Checks an identifier: lowercase ASCII letters, digits, `-`, `_`, `.`; 1..=128 chars.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

struct Ctx<'a> {
    src: &'a SourceFile,
    errors: &'a mut ConfigErrors,
}

impl Ctx<'_> {
    /// An optional duration longer than zero (`None` when absent or wrong, the error noted).
    fn positive_duration(
        &mut self,
        at: usize,
        field: &str,
        text: Option<&str>,
    ) -> Option<Duration> {
        match text.map(parse_duration)? {
            Ok(d) if d.millis() > 0 => Some(d),
            Ok(_) => {
                self.err(at, field, "must be longer than zero");
                None
            }
            Err(e) => {
                self.err(at, field, e);
                None
            }
        }
    }

    /// An error about `field` of the table at `span_start`, at the field's own value.
    fn err(&mut self, span_start: usize, field: &str, msg: impl Into<String>) {
        self.errors
            .push(ConfigError::in_table(self.src, span_start, field, msg));
    }
}

fn point(p: [f64; 2]) -> Option<Point> {
    let pt = Point::new(p[0], p[1]);
    pt.is_valid().then_some(pt)
}

/// Reads every file a territory folder may contain.
pub fn read_dir_sources(dir: &Path) -> Result<Vec<SourceFile>, ConfigErrors> {
    let mut files = Vec::new();
    let mut errors = ConfigErrors::default();
    for name in [
        "territory.toml",
        "kinds.toml",
        "sites.geojson",
        "communes.geojson",
    ] {
        let p = dir.join(name);
        if name == "communes.geojson" && !p.exists() {
            continue;
        }
        match SourceFile::read(&p) {
            Ok(f) => files.push(SourceFile::new(name, f.text)),
            Err(e) => errors.push(ConfigError {
                file: name.into(),
                ..e
            }),
        }
    }
    let devices = dir.join("devices");
    match std::fs::read_dir(&devices) {
        Ok(entries) => {
            let mut paths: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for p in paths {
                match SourceFile::read(&p) {
                    Ok(f) => {
                        let name = p
                            .file_name()
                            .map(|n| format!("devices/{}", n.to_string_lossy()))
                            .unwrap_or(f.path);
                        files.push(SourceFile::new(name, f.text));
                    }
                    Err(e) => {
                        let name = p.file_name().map_or(String::from("devices"), |n| {
                            format!("devices/{}", n.to_string_lossy())
                        });
                        errors.push(ConfigError { file: name, ..e });
                    }
                }
            }
        }
        Err(e) => errors.push(ConfigError::new(
            "devices",
            None,
            None,
            format!("cannot read the devices folder: {e}"),
        )),
    }
    errors.into_result(files)
}

/// Loads a territory folder from disk. File names in errors are relative to `dir`.
pub fn load_dir(dir: &Path) -> Result<Territory, ConfigErrors> {
    let files = read_dir_sources(dir).map_err(|mut e| {
        for err in &mut e.0 {
            err.file = dir.join(&err.file).display().to_string();
        }
        e
    })?;
    load(&files).map_err(|mut e| {
        for err in &mut e.0 {
            err.file = dir.join(&err.file).display().to_string();
        }
        e
    })
}

/// Parses and validates a territory from its files: `territory.toml`, `kinds.toml`,
/// `sites.geojson`, optional `communes.geojson`, and any `devices/*.toml`.
pub fn load(files: &[SourceFile]) -> Result<Territory, ConfigErrors> {
    let partial = load_partial(files);
    partial.errors.into_result(partial.territory)
}

/// What could be loaded of a territory with mistakes, so that the files that refer to it
/// are still checked in the same run.
pub struct Partial {
    /// Every declaration that loaded.
    pub territory: Territory,
    /// Every error, knock-on errors folded under their cause.
    pub errors: ConfigErrors,
    /// What was declared but not loaded, to fold the other files' knock-on errors.
    pub failed: Failed,
}

/// [`load`], keeping what loaded when there are errors.
pub fn load_partial(files: &[SourceFile]) -> Partial {
    let mut errors = ConfigErrors::default();
    let mut failed = Failed::default();
    let find = |name: &str| files.iter().find(|f| f.path == name);
    let Some(tfile) = find("territory.toml") else {
        errors.push(ConfigError::new(
            "territory.toml",
            None,
            None,
            "file missing",
        ));
        return Partial {
            territory: Territory::new("", ""),
            errors,
            failed,
        };
    };
    let mut doc = TomlDoc::parse(tfile, &mut errors);
    doc.only(&["territory", "commune", "zone"], &mut errors);
    doc.require("territory", &mut errors);
    let header = doc.value::<Header>("territory", &mut errors);
    let parsed = TerritoryFile {
        territory: header.unwrap_or(Header {
            id: String::new(),
            name: String::new(),
            timezone: None,
        }),
        commune: doc.entries("commune", &mut errors),
        zone: doc.entries("zone", &mut errors),
    };
    let header_read = !parsed.territory.id.is_empty() || errors.is_empty();
    let mut t = Territory::new(&parsed.territory.id, &parsed.territory.name);
    {
        let mut cx = Ctx {
            src: tfile,
            errors: &mut errors,
        };
        if header_read && !valid_id(&parsed.territory.id) {
            cx.err(
                0,
                "territory.id",
                "ids use lowercase letters, digits, '-', '_', '.'",
            );
        }
        match parsed.territory.timezone.as_deref() {
            Some(tz) if valid_timezone(tz) => t.timezone = Some(tz.into()),
            Some(_) => cx.err(
                0,
                "territory.timezone",
                "an IANA time zone name, such as `Europe/Paris` or `UTC`",
            ),
            None => {}
        }
        for c in &parsed.commune {
            let at = c.span().start;
            let c = c.get_ref();
            failed.begin(&c.id, cx.errors);
            if !valid_id(&c.id) {
                cx.err(at, "commune.id", format!("invalid id `{}`", c.id));
                continue;
            }
            let Some(position) = point(c.position) else {
                cx.err(
                    at,
                    "commune.position",
                    "expected [longitude, latitude] in WGS84 degrees",
                );
                continue;
            };
            if let Err(e) = t.add_commune(Commune {
                id: c.id.as_str().into(),
                name: c.name.as_str().into(),
                insee: c.insee.as_deref().map(Into::into),
                position,
                boundary: Vec::new(),
            }) {
                cx.err(at, "commune.id", e.to_string());
            }
        }
        failed.settle(What::Commune, cx.errors, |id| t.commune_id(id).is_some());
        for z in &parsed.zone {
            let at = z.span().start;
            let z = z.get_ref();
            failed.begin(&z.id, cx.errors);
            let Some(commune) = t.commune_id(&z.commune) else {
                if !failed.follows(
                    What::Commune,
                    &z.commune,
                    Some((What::Zone, &z.id)),
                    cx.errors,
                ) {
                    let hint = suggestion(&z.commune, t.communes.iter().map(|c| &*c.id));
                    cx.err(
                        at,
                        "zone.commune",
                        format!("unknown commune `{}`{hint}", z.commune),
                    );
                }
                continue;
            };
            if !valid_id(&z.id) {
                cx.err(at, "zone.id", format!("invalid id `{}`", z.id));
                continue;
            }
            if let Err(e) = t.add_zone(Zone {
                id: z.id.as_str().into(),
                name: z.name.as_str().into(),
                commune,
            }) {
                cx.err(at, "zone.id", e.to_string());
            }
        }
        failed.settle(What::Zone, cx.errors, |id| t.zone_id(id).is_some());
        if t.communes.is_empty() && parsed.commune.is_empty() {
            cx.err(0, "commune", "a territory needs at least one commune");
        }
    }

    match find("kinds.toml") {
        None => errors.push(ConfigError::new("kinds.toml", None, None, "file missing")),
        Some(kfile) => {
            load_kinds(kfile, &mut t, &mut errors, &mut failed);
            crate::site_kinds::load_site_kinds(kfile, &mut t, &mut errors);
        }
    }
    match find("sites.geojson") {
        None => errors.push(ConfigError::new(
            "sites.geojson",
            None,
            None,
            "file missing",
        )),
        Some(sfile) => load_sites(sfile, &mut t, &mut errors, &mut failed),
    }
    if let Some(cfile) = find("communes.geojson") {
        load_commune_boundaries(cfile, &mut t, &mut errors, &mut failed);
    }
    for f in files.iter().filter(|f| f.path.starts_with("devices/")) {
        load_devices(f, &mut t, &mut errors, &mut failed);
    }
    Partial {
        territory: t,
        errors,
        failed,
    }
}

fn load_kinds(src: &SourceFile, t: &mut Territory, errors: &mut ConfigErrors, failed: &mut Failed) {
    let mut doc = TomlDoc::parse(src, errors);
    doc.only(&["kind", "site_kind"], errors);
    let parsed = KindsFile {
        kind: doc.entries("kind", errors),
        _site_kind: None,
    };
    let mut cx = Ctx { src, errors };
    for k in &parsed.kind {
        let at = k.span().start;
        let k = k.get_ref();
        failed.begin(&k.id, cx.errors);
        if !valid_id(&k.id) {
            cx.err(at, "kind.id", format!("invalid id `{}`", k.id));
            continue;
        }
        let heartbeat = cx.positive_duration(at, "kind.heartbeat", k.heartbeat.as_deref());
        let period = cx.positive_duration(at, "kind.period", k.period.as_deref());
        if let (Some(p), Some(h)) = (period, heartbeat)
            && p > h
        {
            cx.err(
                at,
                "kind.period",
                format!(
                    "kind `{}` reports every {} but is silent after {}: the period must not exceed the heartbeat",
                    k.id,
                    k.period.as_deref().unwrap_or_default(),
                    k.heartbeat.as_deref().unwrap_or_default()
                ),
            );
        }
        let signing = match k.signing.as_deref() {
            None => Signing::None,
            Some(s) => match Signing::parse(s) {
                Some(s) => s,
                None => {
                    cx.err(
                        at,
                        "kind.signing",
                        format!("unknown signing `{s}` (none, optional or required)"),
                    );
                    continue;
                }
            },
        };
        // Prohibited data (AI Act art. 5, GDPR art. 9): refused whatever the category.
        let counts_people = k.field.iter().any(|f| f.get_ref().people_count);
        let mut refused = false;
        if let Some(p) = prohibited_name(&k.id, counts_people) {
            cx.err(at, "kind.id", format!("kind `{}`: {}", k.id, p.reason()));
            refused = true;
        }
        for label in k.label.all() {
            if label.trim().is_empty() {
                cx.err(at, "kind.label", format!("kind `{}`: empty label", k.id));
                refused = true;
            } else if let Some(p) = prohibited_label(label) {
                cx.err(at, "kind.label", format!("label `{label}`: {}", p.reason()));
                refused = true;
            }
        }
        let mut fields = Vec::new();
        for f in &k.field {
            let fat = f.span().start;
            let f = f.get_ref();
            if !valid_id(&f.name) {
                cx.err(fat, "field.name", format!("invalid name `{}`", f.name));
                continue;
            }
            let about_people =
                f.people_count || DataCategory::parse(&f.category).is_none_or(|c| c.is_personal());
            let declared = [
                ("field.name", Some(f.name.as_str()), about_people),
                ("field.category", Some(f.category.as_str()), true),
                ("field.identifier", f.identifier.as_deref(), true),
                ("field.unit", f.unit.as_deref(), about_people),
            ];
            let mut field_refused = false;
            for (key, value, people) in declared {
                if let Some(p) = value.and_then(|v| prohibited_name(v, people)) {
                    cx.err(
                        fat,
                        key,
                        format!(
                            "field `{}.{}` ({key} = `{}`): {}",
                            k.id,
                            f.name,
                            value.unwrap_or_default(),
                            p.reason()
                        ),
                    );
                    field_refused = true;
                    break;
                }
            }
            if field_refused {
                refused = true;
                continue;
            }
            if fields.iter().any(|x: &FieldSpec| *x.name == *f.name) {
                cx.err(fat, "field.name", format!("duplicate field `{}`", f.name));
                continue;
            }
            let ty = match f.ty.as_str() {
                "number" => FieldType::Number,
                "bool" => FieldType::Bool,
                "text" => FieldType::Text,
                "image" | "video" | "frame" | "binary" | "bytes" => {
                    cx.err(
                        fat,
                        "field.type",
                        format!(
                            "type `{}` refused: images and video frames are not accepted as \
                             observations (report what a device measured, not what it saw)",
                            f.ty
                        ),
                    );
                    continue;
                }
                other => {
                    cx.err(
                        fat,
                        "field.type",
                        format!("unknown type `{other}` (number, bool or text)"),
                    );
                    continue;
                }
            };
            let category = match DataCategory::parse(&f.category) {
                Some(c) => c,
                None => {
                    cx.err(
                        fat,
                        "field.category",
                        format!(
                            "unknown category `{}` (technical, personal or sensitive)",
                            f.category
                        ),
                    );
                    continue;
                }
            };
            let identifier = match f.identifier.as_deref() {
                None if category.is_personal() && ty == FieldType::Text => Some(Identifier::Other),
                None => None,
                Some(_) if !category.is_personal() || ty != FieldType::Text => {
                    cx.err(
                        fat,
                        "field.identifier",
                        "only a personal or sensitive text field carries an identifier",
                    );
                    continue;
                }
                Some(x) => match Identifier::parse(x) {
                    Some(i) => Some(i),
                    None => {
                        let all: Vec<_> = Identifier::ALL.iter().map(|i| i.as_str()).collect();
                        cx.err(
                            fat,
                            "field.identifier",
                            format!("unknown identifier `{x}` ({})", all.join(", ")),
                        );
                        continue;
                    }
                },
            };
            if category == DataCategory::Personal && ty != FieldType::Text {
                cx.err(
                    fat,
                    "field.category",
                    "a personal field is an identifier and identifiers are text (`type = \"text\"`): \
                     only text is pseudonymised before storage",
                );
                continue;
            }
            if f.people_count && ty != FieldType::Number {
                cx.err(
                    fat,
                    "field.people_count",
                    "only a number field counts people",
                );
                continue;
            }
            if ty != FieldType::Number && (f.min.is_some() || f.max.is_some()) {
                cx.err(fat, "field.min", "only number fields have a range");
                continue;
            }
            if let (Some(lo), Some(hi)) = (f.min, f.max)
                && lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less)
            {
                cx.err(fat, "field.max", format!("max {hi} must be above min {lo}"));
                continue;
            }
            if let Some(step) = f.max_step_per_minute
                && (ty != FieldType::Number || !(step > 0.0 && step.is_finite()))
            {
                cx.err(
                    fat,
                    "field.max_step_per_minute",
                    format!("{step} must be a positive number, on a number field"),
                );
                continue;
            }
            let text = match text_domain(f, ty, category) {
                Ok(d) => d,
                Err((key, at, msg)) => {
                    // `at` is the value's own offset.
                    cx.errors.push(ConfigError::at(
                        cx.src,
                        at,
                        Some(key),
                        format!("field `{}.{}`: {msg}", k.id, f.name),
                    ));
                    continue;
                }
            };
            let semantic = match f.semantic.as_deref() {
                None => None,
                Some(x) => match Semantic::parse(x) {
                    Some(m) => Some(m),
                    None => {
                        let all: Vec<_> = Semantic::ALL.iter().map(|m| m.as_str()).collect();
                        cx.err(
                            fat,
                            "field.semantic",
                            format!(
                                "unknown semantic type `{x}` (one of: {}; or declare the field \
                                 with `declared = \"what it is and why\"`)",
                                all.join(", ")
                            ),
                        );
                        continue;
                    }
                },
            };
            let declared = f
                .declared
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty());
            if declared.is_some_and(|d| d.chars().count() < 20) {
                cx.err(
                    fat,
                    "field.declared",
                    "say what the field is and why it is needed (20 characters at least)",
                );
                continue;
            }
            if k.public_space && semantic.is_none() && declared.is_none() {
                cx.err(
                    fat,
                    "field.semantic",
                    format!(
                        "field `{}` of a kind observing public space has no meaning from the \
                         closed set: give `semantic` (`beffroi check` lists them), or declare it \
                         with `declared = \"what it is and why\"` (the register shows it)",
                        f.name
                    ),
                );
                continue;
            }
            if let Some(m) = semantic {
                let consistent = (m == Semantic::PeopleCount) == f.people_count
                    && m.identifier().is_none_or(|i| identifier == Some(i));
                if !consistent {
                    cx.err(
                        fat,
                        "field.semantic",
                        format!(
                            "`{}` does not fit the field: people_count goes with \
                             `people_count = true`, licence_plate, badge and phone_number with \
                             the same `identifier`",
                            m.as_str()
                        ),
                    );
                    continue;
                }
            }
            fields.push(FieldSpec {
                semantic,
                declared: declared.map(Into::into),
                name: f.name.as_str().into(),
                unit: f.unit.as_deref().map(Into::into),
                ty,
                min: f.min,
                max: f.max,
                category,
                max_step_per_minute: f.max_step_per_minute,
                identifier,
                purpose: f.purpose.as_deref().map(Into::into),
                people_count: f.people_count,
                text,
            });
        }
        if refused {
            continue;
        }
        if fields.is_empty() {
            cx.err(
                at,
                "kind.field",
                format!("kind `{}` declares no field", k.id),
            );
            continue;
        }
        if let Err(e) = t.add_kind(DeviceKind {
            id: k.id.as_str().into(),
            label: k.label.fr().into(),
            label_en: k.label.en().map(Into::into),
            heartbeat,
            period,
            fields,
            signing,
            purpose: k.purpose.as_deref().map(Into::into),
            public_space: k.public_space,
            video_linked: k.video_linked,
        }) {
            cx.err(at, "kind.id", e.to_string());
        }
    }
    failed.settle(What::Kind, cx.errors, |id| t.kind_id(id).is_some());
}

/// What a text field admits: `values`, `pattern` or free text; `Err((key, offset of the
/// offending value, message))`.
fn text_domain(
    f: &FieldRaw,
    ty: FieldType,
    category: DataCategory,
) -> Result<TextDomain, (&'static str, usize, String)> {
    let (key, at) = match (&f.values, &f.pattern) {
        (None, None) => return Ok(TextDomain::Free),
        (Some(_), Some(p)) => {
            return Err((
                "field.pattern",
                p.span().start,
                "declare `values` or `pattern`, not both".into(),
            ));
        }
        (Some(v), None) => ("field.values", v.span().start),
        (None, Some(p)) => ("field.pattern", p.span().start),
    };
    let name = &key["field.".len()..];
    if ty != FieldType::Text {
        return Err((key, at, format!("only a text field takes `{name}`")));
    }
    if category.is_personal() {
        return Err((
            key,
            at,
            format!(
                "a {} field holds an identifier, pseudonymised at ingest: it takes no `{name}`",
                category.as_str()
            ),
        ));
    }
    let domain = match (&f.values, &f.pattern) {
        (Some(v), _) => TextDomain::values(v.get_ref()),
        (None, Some(p)) => TextPattern::new(p.get_ref()).map(TextDomain::Pattern),
        (None, None) => Ok(TextDomain::Free),
    };
    domain.map_err(|e| (key, at, e.to_string()))
}

/// Line of the feature whose `"id"` property is `id`, found textually since JSON parsers
/// do not keep positions.
fn feature_line(src: &SourceFile, id: &str, nth: usize) -> Option<usize> {
    let needle = format!("\"{id}\"");
    if let Some(off) = src.text.match_indices(&needle).map(|(i, _)| i).next() {
        return Some(src.line(off));
    }
    src.text
        .match_indices("\"Feature\"")
        .nth(nth)
        .map(|(i, _)| src.line(i))
}

/// Parses a GeoJSON file that must be a FeatureCollection; errors go to `errors`.
fn feature_collection(
    src: &SourceFile,
    errors: &mut ConfigErrors,
) -> Option<geojson::FeatureCollection> {
    match src.text.parse::<geojson::GeoJson>() {
        Ok(geojson::GeoJson::FeatureCollection(fc)) => Some(fc),
        Ok(_) => {
            errors.push(ConfigError::new(
                src.path.clone(),
                Some(1),
                None,
                "expected a GeoJSON FeatureCollection",
            ));
            None
        }
        Err(e) => {
            let line = match &e {
                geojson::Error::MalformedJson(je) => Some(je.line()),
                _ => None,
            };
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                None,
                e.to_string(),
            ));
            None
        }
    }
}

/// `communes.geojson`: the boundary of each commune of `territory.toml`, as a Polygon or
/// MultiPolygon feature whose `properties.id` names it (a Point feature adds nothing: the
/// position comes from `territory.toml`).
fn load_commune_boundaries(
    src: &SourceFile,
    t: &mut Territory,
    errors: &mut ConfigErrors,
    failed: &mut Failed,
) {
    let Some(fc) = feature_collection(src, errors) else {
        return;
    };
    for (n, f) in fc.features.iter().enumerate() {
        let id = f
            .properties
            .as_ref()
            .and_then(|p| p.get("id"))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if t.commune_id(id).is_none() && failed.follows(What::Commune, id, None, errors) {
            continue;
        }
        let line = feature_line(src, id, n);
        let mut err = |field: &str, msg: String| {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some(field),
                format!("feature #{n}: {msg}"),
            ))
        };
        let Some(commune) = t.commune_id(id) else {
            err(
                "properties.id",
                format!("`{id}` is not a commune of territory.toml"),
            );
            continue;
        };
        let ring = |r: &Vec<Vec<f64>>| -> Option<Vec<Point>> {
            let pts = r
                .iter()
                .map(|c| match c.as_slice() {
                    [lon, lat, ..] => point([*lon, *lat]),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            (pts.len() >= 4).then_some(pts)
        };
        let rings = match f.geometry.as_ref().map(|g| &g.value) {
            Some(geojson::Value::Point(_)) => continue,
            Some(geojson::Value::Polygon(p)) => p.first().and_then(ring).map(|r| vec![r]),
            Some(geojson::Value::MultiPolygon(ps)) => ps
                .iter()
                .map(|p| p.first().and_then(ring))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        match rings {
            Some(rings) if !rings.is_empty() => t.set_commune_boundary(commune, rings),
            _ => err(
                "geometry",
                format!(
                    "commune `{id}`: needs a Polygon or MultiPolygon (rings of at least 4 \
                     [longitude, latitude] positions in WGS84) or a Point"
                ),
            ),
        }
    }
}

fn load_sites(src: &SourceFile, t: &mut Territory, errors: &mut ConfigErrors, failed: &mut Failed) {
    let Some(fc) = feature_collection(src, errors) else {
        return;
    };
    for (n, f) in fc.features.iter().enumerate() {
        let prop = |k: &str| {
            f.properties
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(|v| v.as_str())
        };
        let id = prop("id").unwrap_or("");
        failed.begin(id, errors);
        let commune_name = prop("commune").unwrap_or("");
        if t.commune_id(commune_name).is_none()
            && failed.follows(What::Commune, commune_name, Some((What::Site, id)), errors)
        {
            continue;
        }
        let line = feature_line(src, id, n);
        let mut err = |field: &str, msg: String| {
            errors.push(ConfigError::new(
                src.path.clone(),
                line,
                Some(field),
                format!("feature #{n}: {msg}"),
            ))
        };
        if !valid_id(id) {
            err(
                "properties.id",
                format!("missing or invalid site id `{id}`"),
            );
            continue;
        }
        let Some(name) = prop("name") else {
            err("properties.name", format!("site `{id}` has no name"));
            continue;
        };
        let kind = match prop("kind").map(|k| (k, t.site_kind(k))) {
            Some((_, Some(k))) => k,
            Some((k, None)) => {
                err("properties.kind", format!("unknown site kind `{k}`"));
                continue;
            }
            None => {
                err("properties.kind", format!("site `{id}` has no kind"));
                continue;
            }
        };
        let Some(commune) = t.commune_id(commune_name) else {
            let hint = suggestion(commune_name, t.communes.iter().map(|c| &*c.id));
            err(
                "properties.commune",
                format!("site `{id}`: unknown commune `{commune_name}`{hint}"),
            );
            continue;
        };
        let zone = match prop("zone") {
            None => None,
            Some(z) => match t.zone_id(z) {
                Some(zi) => Some(zi),
                None => {
                    err(
                        "properties.zone",
                        format!("site `{id}`: unknown zone `{z}`"),
                    );
                    continue;
                }
            },
        };
        let river = match f.properties.as_ref().and_then(|p| p.get("river")) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(r)) if valid_id(r) => Some(Arc::<str>::from(r.as_str())),
            Some(_) => {
                err(
                    "properties.river",
                    format!(
                        "site `{id}`: `river` must be an identifier (letters, digits, `-`, `_`)"
                    ),
                );
                continue;
            }
        };
        let to_pt = |c: &Vec<f64>| match c.as_slice() {
            [lon, lat, ..] => point([*lon, *lat]),
            _ => None,
        };
        let (position, perimeter) = match f.geometry.as_ref().map(|g| &g.value) {
            Some(geojson::Value::Point(c)) => (to_pt(c), None),
            Some(geojson::Value::Polygon(rings)) => {
                let ring: Option<Vec<Point>> = rings
                    .first()
                    .map(|r| r.iter().map(to_pt).collect::<Option<Vec<_>>>())
                    .unwrap_or(None);
                match ring {
                    Some(r) if r.len() >= 4 => (ring_centre(&r), Some(r)),
                    _ => (None, None),
                }
            }
            Some(geojson::Value::LineString(line)) => {
                let pts: Option<Vec<Point>> = line.iter().map(to_pt).collect();
                (pts.as_deref().and_then(ring_centre), None)
            }
            _ => (None, None),
        };
        let Some(position) = position else {
            err(
                "geometry",
                format!("site `{id}`: needs a valid Point, LineString or Polygon in WGS84"),
            );
            continue;
        };
        if let Err(e) = t.add_site(Site {
            id: id.into(),
            name: name.into(),
            kind,
            commune,
            zone,
            position,
            perimeter,
            river,
        }) {
            err("properties.id", e.to_string());
        }
    }
    failed.settle(What::Site, errors, |id| t.site_id(id).is_some());
}

/// Devices parsed at a time from a large devices file.
const DEVICES_PER_PIECE: usize = 4096;

/// The file's text cut before every `per_piece`-th line that is exactly `[[device]]`, each
/// piece with its byte offset in the file.
fn device_pieces(text: &str, per_piece: usize) -> Vec<(usize, &str)> {
    let mut cuts = vec![0];
    let (mut headers, mut offset) = (0usize, 0usize);
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "[[device]]" {
            if headers > 0 && headers.is_multiple_of(per_piece) {
                cuts.push(offset);
            }
            headers += 1;
        }
        offset += line.len();
    }
    cuts.push(text.len());
    cuts.windows(2).map(|w| (w[0], &text[w[0]..w[1]])).collect()
}

/// The devices of a file with the byte offset of each, parsed a piece of
/// [`DEVICES_PER_PIECE`] devices at a time: the parser's document of a whole
/// 1,000,000-device file takes gigabytes and seconds of page faults, a piece's a few
/// megabytes. A piece that does not parse on its own (a syntax error, or a multi-line
/// string that the cut went through) sends the whole file to the parser as written, so
/// errors and their lines are those of the file.
fn parse_devices(
    src: &SourceFile,
    per_piece: usize,
    errors: &mut ConfigErrors,
) -> Vec<(usize, DeviceRaw)> {
    let pieces = device_pieces(&src.text, per_piece);
    if pieces.len() > 1 {
        let mut all = Vec::new();
        let whole = pieces.iter().all(|(base, piece)| {
            toml::from_str::<DevicesFile>(piece).is_ok_and(|p| {
                all.extend(
                    p.device
                        .into_iter()
                        .map(|d| (base + d.span().start, d.into_inner())),
                );
                true
            })
        });
        if whole {
            return all;
        }
    }
    let mut doc = TomlDoc::parse(src, errors);
    doc.only(&["device"], errors);
    doc.entries::<DeviceRaw>("device", errors)
        .into_iter()
        .map(|d| (d.span().start, d.into_inner()))
        .collect()
}

fn load_devices(
    src: &SourceFile,
    t: &mut Territory,
    errors: &mut ConfigErrors,
    failed: &mut Failed,
) {
    let devices = parse_devices(src, DEVICES_PER_PIECE, errors);
    let mut cx = Ctx { src, errors };
    for (at, d) in &devices {
        let at = *at;
        failed.begin(&d.id, cx.errors);
        if !valid_id(&d.id) {
            cx.err(at, "device.id", format!("invalid id `{}`", d.id));
            continue;
        }
        let Some(kind) = t.kind_id(&d.kind) else {
            if !failed.follows(What::Kind, &d.kind, Some((What::Device, &d.id)), cx.errors) {
                let hint = suggestion(&d.kind, t.kinds.iter().map(|k| &*k.id));
                cx.err(
                    at,
                    "device.kind",
                    format!("device `{}`: unknown kind `{}`{hint}", d.id, d.kind),
                );
            }
            continue;
        };
        let Some(site) = t.site_id(&d.site) else {
            if !failed.follows(What::Site, &d.site, Some((What::Device, &d.id)), cx.errors) {
                let hint = suggestion(&d.site, t.sites.iter().map(|s| &*s.id));
                cx.err(
                    at,
                    "device.site",
                    format!("device `{}`: unknown site `{}`{hint}", d.id, d.site),
                );
            }
            continue;
        };
        let position = match d.position {
            None => t.site(site).position,
            Some(p) => match point(p) {
                Some(p) => p,
                None => {
                    cx.err(
                        at,
                        "device.position",
                        "expected [longitude, latitude] in WGS84 degrees",
                    );
                    continue;
                }
            },
        };
        let dev_eui: Option<Arc<str>> = match &d.dev_eui {
            None => None,
            Some(e) if e.len() == 16 && e.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(e.to_ascii_lowercase().into())
            }
            Some(e) => {
                cx.err(
                    at,
                    "device.dev_eui",
                    format!("`{e}` is not 16 hexadecimal digits"),
                );
                continue;
            }
        };
        if let Err(e) = t.add_device(Device {
            id: d.id.as_str().into(),
            kind,
            site,
            position,
            dev_eui,
        }) {
            cx.err(at, "device.id", e.to_string());
        }
    }
    failed.settle(What::Device, cx.errors, |id| t.device_id(id).is_some());
}

/// The shape of an IANA time zone name (`Europe/Paris`, `America/Argentina/Buenos_Aires`,
/// `UTC`): the name itself is checked where it is used (the browser's `Intl`), as the
/// program carries no time zone database.
fn valid_timezone(tz: &str) -> bool {
    !tz.is_empty()
        && tz.len() <= 64
        && tz.split('/').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(i: usize) -> String {
        format!("[[device]]\nid = \"d{i}\"\nkind = \"level\"\nsite = \"s1\"\n\n")
    }

    #[test]
    fn a_devices_file_is_cut_before_every_nth_device_header() {
        let text: String = std::iter::once("# header\n".to_string())
            .chain((0..5).map(device))
            .collect();
        let pieces = device_pieces(&text, 2);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.iter().map(|(_, p)| *p).collect::<String>(), text);
        for (offset, piece) in &pieces {
            assert_eq!(&text[*offset..*offset + piece.len()], *piece);
        }
        assert!(pieces[0].1.starts_with("# header"));
        assert!(pieces[1].1.starts_with("[[device]]\nid = \"d2\""));
        assert!(pieces[2].1.starts_with("[[device]]\nid = \"d4\""));
    }

    /// The devices of `text` read `per_piece` at a time, and the errors found.
    fn parse_devices(
        text: &str,
        per_piece: usize,
    ) -> Result<Vec<(usize, DeviceRaw)>, ConfigErrors> {
        let src = SourceFile::new("devices/x.toml", text);
        let mut errors = ConfigErrors::default();
        let devices = super::parse_devices(&src, per_piece, &mut errors);
        errors.into_result(devices)
    }

    #[test]
    fn devices_parsed_in_pieces_are_those_of_the_whole_file_at_the_same_offsets() {
        let text: String = (0..9).map(device).collect();
        let whole = parse_devices(&text, usize::MAX).expect("whole");
        let pieces = parse_devices(&text, 2).expect("pieces");
        assert_eq!(whole.len(), 9);
        assert_eq!(whole, pieces);
        assert!(
            whole
                .iter()
                .all(|(at, d)| text[*at..].starts_with("[[device]]")
                    && text[*at..].contains(&format!("id = \"{}\"", d.id)))
        );
    }

    #[test]
    fn a_cut_through_a_multi_line_string_falls_back_to_the_whole_file() {
        // A literal multi-line string holding a `[[device]]` line: the cut goes through
        // it, its pieces do not parse alone, and the file is read whole as written.
        let text = format!(
            "{}[[device]]\nid = '''\n[[device]]\n'''\nkind = \"level\"\nsite = \"s1\"\n\n{}",
            device(0),
            device(2)
        );
        let whole = parse_devices(&text, usize::MAX).expect("whole");
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1].1.id, "[[device]]\n");
        assert_eq!(parse_devices(&text, 1).expect("pieces"), whole);
    }

    #[test]
    fn a_syntax_error_in_a_later_piece_is_reported_at_its_line_in_the_file() {
        let mut text: String = (0..6).map(device).collect();
        text.push_str("[[device]]\nid = \"d6\"\nkind = level\n");
        let line = text.lines().count();
        let e = parse_devices(&text, 2).expect_err("a bare word is not a value");
        assert_eq!(e.0[0].line, Some(line), "{e}");
    }

    fn files(devices: &str) -> Vec<SourceFile> {
        vec![
            SourceFile::new(
                "territory.toml",
                "[territory]\nid = \"t\"\nname = \"T\"\n\n[[commune]]\nid = \"c1\"\nname = \"C\"\nposition = [5.0, 47.0]\n",
            ),
            SourceFile::new(
                "kinds.toml",
                "[[kind]]\nid = \"level\"\nlabel = \"L\"\nheartbeat = \"10m\"\n[[kind.field]]\nname = \"level_m\"\ntype = \"number\"\nmin = 0.0\nmax = 10.0\ncategory = \"technical\"\n",
            ),
            SourceFile::new(
                "sites.geojson",
                r#"{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"id":"s1","name":"S","kind":"school","commune":"c1"},"geometry":{"type":"Point","coordinates":[5.0,47.0]}}
]}"#,
            ),
            SourceFile::new("devices/c1.toml", devices),
        ]
    }

    /// The kinds file of [`files`] with one more field appended to the kind.
    /// Every error is on the line of its own field (`key = …`, the key being the field's
    /// last segment), at the column of its value; or, for a field that is not written
    /// (missing, or the table itself), on a table header.
    fn at_own_fields(files: &[SourceFile], errs: &ConfigErrors) {
        for e in errs.iter() {
            let src = files.iter().find(|f| f.path == e.file).expect("file");
            let (Some(line), Some(field)) = (e.line, e.field.as_deref()) else {
                continue;
            };
            let text = src.text.lines().nth(line - 1).unwrap_or_default();
            let key = field.rsplit('.').next().unwrap_or(field);
            let written = text.trim_start().strip_prefix(key).map(str::trim_start);
            if let Some(value) = written.and_then(|w| w.strip_prefix('=')) {
                let column = text.chars().count() - value.trim_start().chars().count() + 1;
                assert_eq!(e.column, Some(column), "{e}: `{text}`");
            } else {
                assert!(
                    text.trim_start().starts_with('['),
                    "{e} is not at its field: `{text}`"
                );
            }
        }
    }

    fn with_field(field: &str) -> Vec<SourceFile> {
        let mut f = files("[[device]]\nid = \"d1\"\nkind = \"level\"\nsite = \"s1\"\n");
        f[1] = SourceFile::new(
            "kinds.toml",
            format!("{}[[kind.field]]\n{field}\n", f[1].text),
        );
        f
    }

    #[test]
    fn the_territorys_time_zone_is_kept_and_its_shape_checked() {
        let with_tz = |tz: &str| {
            let mut f = files("");
            f[0] = SourceFile::new(
                "territory.toml",
                f[0].text.replacen(
                    "name = \"T\"\n",
                    &format!("name = \"T\"\ntimezone = \"{tz}\"\n"),
                    1,
                ),
            );
            load(&f)
        };
        assert_eq!(load(&files("")).expect("valid").timezone, None);
        for tz in [
            "Europe/Paris",
            "UTC",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+1",
        ] {
            assert_eq!(with_tz(tz).expect(tz).timezone.as_deref(), Some(tz));
        }
        for tz in ["", "Europe/", "Paris CET", "../etc/passwd", "Europe//Paris"] {
            let e = with_tz(tz).expect_err(tz);
            assert!(
                e.0.iter()
                    .any(|e| e.field.as_deref() == Some("territory.timezone")),
                "{tz}: {e:?}"
            );
        }
    }

    #[test]
    fn privacy_attributes_of_fields() {
        let t = load(&with_field(
            "name = \"plate\"\ntype = \"text\"\ncategory = \"personal\"\nidentifier = \"licence_plate\"\npurpose = \"parking\"",
        ))
        .expect("valid");
        let f = &t.kinds[0].fields[1];
        assert_eq!(f.category, DataCategory::Personal);
        assert_eq!(f.identifier, Some(Identifier::LicencePlate));
        assert_eq!(f.purpose.as_deref(), Some("parking"));
        // A personal text field without an identifier is an `other` identifier.
        let t = load(&with_field(
            "name = \"who\"\ntype = \"text\"\ncategory = \"sensitive\"",
        ))
        .expect("valid");
        assert_eq!(t.kinds[0].fields[1].identifier, Some(Identifier::Other));
        let t = load(&with_field(
            "name = \"n\"\ntype = \"number\"\ncategory = \"technical\"\npeople_count = true",
        ))
        .expect("valid");
        assert!(t.kinds[0].fields[1].people_count);
        for (field, expect) in [
            (
                "type = \"text\"\ncategory = \"technical\"\nidentifier = \"badge\"",
                "field.identifier",
            ),
            (
                "type = \"text\"\ncategory = \"personal\"\nidentifier = \"dna\"",
                "unknown identifier",
            ),
            (
                "type = \"bool\"\ncategory = \"technical\"\npeople_count = true",
                "field.people_count",
            ),
            (
                "type = \"image\"\ncategory = \"technical\"",
                "images and video frames are not accepted",
            ),
            (
                "type = \"text\"\ncategory = \"secret\"",
                "technical, personal or sensitive",
            ),
        ] {
            let files = with_field(&format!("name = \"x\"\n{field}"));
            let errs = load(&files).expect_err(field);
            at_own_fields(&files, &errs);
            let e = errs.to_string();
            assert!(
                e.starts_with("kinds.toml:1") && e.contains(expect),
                "{field}: {e}"
            );
        }
    }

    fn with_kinds(kinds: &str) -> Vec<SourceFile> {
        let mut f = files("");
        f[1] = SourceFile::new("kinds.toml", kinds);
        f
    }

    /// A kind that observes public space takes each field's meaning from the closed set,
    /// or declares it: a new field nobody decided on is refused, with file, line and field.
    #[test]
    fn public_space_fields_need_a_meaning_from_the_closed_set_or_a_declaration() {
        let kind = |field: &str| {
            format!(
                "[[kind]]\nid = \"counter\"\nlabel = \"C\"\npublic_space = true\n\
                 [[kind.field]]\nname = \"occupancy\"\nsemantic = \"people_count\"\n\
                 type = \"number\"\ncategory = \"technical\"\npeople_count = true\n\
                 [[kind.field]]\n{field}\ntype = \"text\"\ncategory = \"technical\"\n"
            )
        };
        // A name no word list knows (a walking-pattern vector under another name).
        let e = load(&with_kinds(&kind("name = \"stride_vector\"")))
            .expect_err("no meaning")
            .to_string();
        assert!(
            e.contains("kinds.toml:")
                && e.contains("`field.semantic`")
                && e.contains("public space"),
            "{e}"
        );
        let e = load(&with_kinds(&kind("name = \"x\"\nsemantic = \"face\"")))
            .expect_err("not in the set")
            .to_string();
        assert!(e.contains("unknown semantic type `face`"), "{e}");
        let e = load(&with_kinds(&kind("name = \"x\"\ndeclared = \"a note\"")))
            .expect_err("too short a declaration")
            .to_string();
        assert!(e.contains("`field.declared`"), "{e}");
        // People counts and identifiers must fit their meaning.
        let e = load(&with_kinds(&kind(
            "name = \"x\"\nsemantic = \"people_count\"",
        )))
        .expect_err("people_count on a text")
        .to_string();
        assert!(e.contains("does not fit"), "{e}");
        let t = load(&with_kinds(&kind(
            "name = \"firmware\"\nsemantic = \"firmware\"",
        )))
        .expect("in the set");
        assert_eq!(
            t.kinds[0].fields[1].semantic,
            Some(beffroi_core::Semantic::Firmware)
        );
        let t = load(&with_kinds(&kind(
            "name = \"lane\"\ndeclared = \"the lane a vehicle took, to size the barrier queue\"",
        )))
        .expect("declared");
        assert!(t.kinds[0].fields[1].declared.is_some());
        // A kind that does not observe public space needs neither.
        let t = load(&with_kinds(
            "[[kind]]\nid = \"panel\"\nlabel = \"P\"\n[[kind.field]]\nname = \"fire\"\ntype = \"bool\"\ncategory = \"technical\"\n",
        ))
        .expect("not public space");
        assert!(t.kinds[0].fields[0].semantic.is_none());
    }

    /// A technical text field declares its values or its pattern; a bad declaration is
    /// refused with file, line (of the declaration) and field; a text field with neither
    /// stays free text.
    #[test]
    fn technical_text_is_an_enumeration_or_a_bounded_pattern() {
        let t = load(&with_field(
            "name = \"status\"\ntype = \"text\"\ncategory = \"technical\"\nvalues = [\"ok\", \"fault\"]",
        ))
        .expect("an enumeration");
        let f = &t.kinds[0].fields[1];
        assert!(f.text.admits("fault") && !f.text.admits("fault 06 12 34 56 78"));
        let t = load(&with_field(
            "name = \"code\"\ntype = \"text\"\ncategory = \"technical\"\npattern = \"E[0-9]{3}\"",
        ))
        .expect("a pattern");
        let f = &t.kinds[0].fields[1];
        assert!(f.text.admits("E042") && !f.text.admits("E042 rappeler 0612345678"));
        let t = load(&with_field(
            "name = \"note\"\ntype = \"text\"\ncategory = \"technical\"",
        ))
        .expect("free text");
        assert!(t.kinds[0].fields[1].text.is_free());
        assert_eq!(t.free_text_fields().len(), 1);
        // Line 18 is the declaration itself (the field starts on line 11).
        for (field, expect) in [
            (
                "type = \"text\"\ncategory = \"technical\"\n\n\n\npattern = \"[A-Z]+\"",
                "kinds.toml:18:11: `field.pattern`: field `level.x`: `pattern` matches text of any length",
            ),
            (
                "type = \"text\"\ncategory = \"technical\"\n\n\n\npattern = \"[a-z]{1,200}\"",
                "kinds.toml:18:11: `field.pattern`: field `level.x`: `pattern` matches up to 200 bytes",
            ),
            (
                "type = \"text\"\ncategory = \"technical\"\n\n\n\npattern = \"(E[0-9]\"",
                "kinds.toml:18:11: `field.pattern`: field `level.x`: `pattern` is not a regular expression",
            ),
            (
                "type = \"text\"\ncategory = \"technical\"\n\n\n\nvalues = []",
                "kinds.toml:18:10: `field.values`: field `level.x`: `values` lists no value",
            ),
            (
                "type = \"text\"\ncategory = \"technical\"\n\n\n\nvalues = [\"ok\", \"ok\"]",
                "kinds.toml:18:10: `field.values`: field `level.x`: value #1 of `values` is listed twice",
            ),
            (
                "type = \"number\"\ncategory = \"technical\"\n\n\n\nvalues = [\"1\"]",
                "kinds.toml:18:10: `field.values`: field `level.x`: only a text field takes `values`",
            ),
            (
                "type = \"text\"\ncategory = \"personal\"\n\n\n\npattern = \"[A-Z]{2}\"",
                "kinds.toml:18:11: `field.pattern`: field `level.x`: a personal field holds an identifier",
            ),
            (
                "type = \"text\"\ncategory = \"technical\"\nvalues = [\"a\"]\n\n\npattern = \"a\"",
                "kinds.toml:18:11: `field.pattern`: field `level.x`: declare `values` or `pattern`, not both",
            ),
        ] {
            let files = with_field(&format!("name = \"x\"\n{field}"));
            let errs = load(&files).expect_err(field);
            at_own_fields(&files, &errs);
            let e = errs.to_string();
            assert!(e.contains(expect), "{field}: {e}");
        }
    }

    /// Prohibited data: refused with the reason, file, line and field, whatever the
    /// declared category; technical look-alikes pass.
    #[test]
    fn prohibited_data_is_refused_with_reason_file_line_and_field() {
        let head = "[[kind]]\nid = \"level\"\nlabel = \"L\"\n[[kind.field]]\nname = \"level_m\"\ntype = \"number\"\ncategory = \"technical\"\n";
        let refused: &[(&str, &str, &str)] = &[
            (
                "[[kind]]\nid = \"cam\"\nlabel = \"C\"\n[[kind.field]]\nname = \"face_id\"\ntype = \"text\"\ncategory = \"technical\"\n",
                "`field.name`",
                "AI Act art. 5",
            ),
            (
                "[[kind]]\nid = \"cam\"\nlabel = \"C\"\n[[kind.field]]\nname = \"signature\"\ntype = \"text\"\ncategory = \"biometric\"\n",
                "`field.category`",
                "GDPR art. 9",
            ),
            (
                "[[kind]]\nid = \"cam\"\nlabel = \"C\"\n[[kind.field]]\nname = \"who\"\ntype = \"text\"\ncategory = \"personal\"\nidentifier = \"facial\"\n",
                "`field.identifier`",
                "CNIL 2022",
            ),
            (
                "[[kind]]\nid = \"cam\"\nlabel = \"C\"\n[[kind.field]]\nname = \"mood\"\ntype = \"number\"\ncategory = \"technical\"\n",
                "`field.name`",
                "emotion",
            ),
            (
                "[[kind]]\nid = \"counter\"\nlabel = \"C\"\n[[kind.field]]\nname = \"adults\"\ntype = \"number\"\ncategory = \"technical\"\npeople_count = true\n",
                "`field.name`",
                "age, gender or origin",
            ),
            (
                "[[kind]]\nid = \"counter\"\nlabel = \"C\"\n[[kind.field]]\nname = \"nationality\"\ntype = \"text\"\ncategory = \"sensitive\"\n",
                "`field.name`",
                "GDPR art. 9",
            ),
            (
                "[[kind]]\nid = \"emotion-cam\"\nlabel = \"C\"\n[[kind.field]]\nname = \"n\"\ntype = \"number\"\ncategory = \"technical\"\n",
                "`kind.id`",
                "AI Act",
            ),
            (
                "[[kind]]\nid = \"cam\"\nlabel = \"Caméra de reconnaissance faciale\"\n[[kind.field]]\nname = \"n\"\ntype = \"number\"\ncategory = \"technical\"\n",
                "`kind.label`",
                "AI Act",
            ),
        ];
        for (kind, field, reason) in refused {
            let files = with_kinds(&format!("{head}{kind}"));
            let errs = load(&files).expect_err(kind);
            let text = errs.to_string();
            assert_eq!(errs.len(), 1, "{text}");
            assert!(text.starts_with("kinds.toml:"), "{text}");
            assert!(text.contains(field) && text.contains(reason), "{text}");
            // at the refused field's own line, never elsewhere
            at_own_fields(&files, &errs);
        }
        let fine = format!(
            "{head}[[kind]]\nid = \"power\"\nlabel = \"Power meter\"\n[[kind.field]]\nname = \"voltage\"\ntype = \"number\"\ncategory = \"technical\"\n[[kind.field]]\nname = \"storage_usage\"\ntype = \"number\"\ncategory = \"technical\"\n[[kind.field]]\nname = \"battery_age_days\"\ntype = \"number\"\ncategory = \"technical\"\n[[kind.field]]\nname = \"page\"\ntype = \"text\"\ncategory = \"technical\"\n"
        );
        load(&with_kinds(&fine)).expect("technical look-alikes are fine");
    }

    #[test]
    fn kind_signing_policy() {
        let mut f = files("[[device]]\nid = \"d1\"\nkind = \"level\"\nsite = \"s1\"\n");
        let t = load(&f).expect("valid");
        assert_eq!(t.kinds[0].signing, Signing::None);
        f[1] = SourceFile::new(
            "kinds.toml",
            f[1].text
                .replace("heartbeat", "signing = \"required\"\nheartbeat"),
        );
        let t = load(&f).expect("valid");
        assert_eq!(t.kinds[0].signing, Signing::Required);
        f[1] = SourceFile::new(
            "kinds.toml",
            f[1].text.replace("\"required\"", "\"always\""),
        );
        let errs = load(&f).expect_err("invalid");
        at_own_fields(&f, &errs);
        let e = errs.to_string();
        assert!(
            e.contains("`kind.signing`: unknown signing `always`"),
            "{e}"
        );
        // The kind is not loaded; its device's "unknown kind" follows and is folded.
        assert_eq!(errs.len(), 1, "{e}");
        assert!(
            e.ends_with("(1 more error follows from this one and is not shown)"),
            "{e}"
        );
    }

    #[test]
    fn kind_labels_in_french_and_english_or_one_label() {
        let mut f = files("");
        let t = load(&f).expect("one label");
        assert_eq!(
            (&*t.kinds[0].label, t.kinds[0].label_en.as_deref()),
            ("L", None)
        );
        let two = |label: &str| f[1].text.replace("label = \"L\"", label);
        let text = two("label = { fr = \"Limnimètre\", en = \"Water-level gauge\" }");
        f[1] = SourceFile::new("kinds.toml", &text);
        let t = load(&f).expect("two labels");
        assert_eq!(&*t.kinds[0].label, "Limnimètre");
        assert_eq!(t.kinds[0].label_en.as_deref(), Some("Water-level gauge"));
        for bad in [
            "label = { fr = \"Limnimètre\" }",
            "label = { fr = \"Limnimètre\", en = \"\" }",
            "label = { fr = \"L\", en = \"Face recognition camera\" }",
        ] {
            let text = files("")[1].text.replace("label = \"L\"", bad);
            let e = load(&with_kinds(&text)).expect_err(bad).to_string();
            assert!(e.contains("kinds.toml:"), "{bad}: {e}");
        }
    }

    #[test]
    fn loads_a_valid_territory() {
        let t = load(&files(
            "[[device]]\nid = \"d1\"\nkind = \"level\"\nsite = \"s1\"\ndev_eui = \"00112233AABBCCDD\"\n",
        ))
        .expect("valid");
        assert_eq!(t.devices.len(), 1);
        assert_eq!(t.device_by_eui("00112233aabbccdd"), t.device_id("d1"));
        assert_eq!(t.device_by_eui("00112233AABBCCDD"), t.device_id("d1"));
    }

    #[test]
    fn reports_every_error_with_file_line_and_field() {
        let errs = load(&files(
            "[[device]]\nid = \"d1\"\nkind = \"nope\"\nsite = \"s1\"\n\n[[device]]\nid = \"d2\"\nkind = \"level\"\nsite = \"elsewhere\"\n",
        ))
        .expect_err("invalid");
        let text = errs.to_string();
        assert_eq!(errs.len(), 2, "{text}");
        assert!(
            text.contains("devices/c1.toml:3:8: `device.kind`: device `d1`: unknown kind `nope`"),
            "{text}"
        );
        assert!(
            text.contains(
                "devices/c1.toml:9:8: `device.site`: device `d2`: unknown site `elsewhere`"
            ),
            "{text}"
        );
    }

    #[test]
    fn commune_boundaries_come_from_communes_geojson() {
        let mut fs = files("");
        fs.push(SourceFile::new(
            "communes.geojson",
            r#"{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"id":"c1"},"geometry":{"type":"MultiPolygon","coordinates":[
  [[[4.9,46.9],[5.1,46.9],[5.1,47.1],[4.9,46.9]]],
  [[[5.2,47.2],[5.3,47.2],[5.3,47.3],[5.2,47.2]]]]}}
]}"#,
        ));
        let t = load(&fs).expect("valid");
        let c = t.commune(t.commune_id("c1").expect("c1"));
        assert_eq!(c.boundary.len(), 2);
        assert_eq!(c.boundary[1][0], Point::new(5.2, 47.2));
        assert_eq!(
            c.position,
            Point::new(5.0, 47.0),
            "the label stays where it was"
        );

        let mut fs = files("");
        fs.push(SourceFile::new(
            "communes.geojson",
            r#"{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"id":"c1"},"geometry":{"type":"Polygon","coordinates":[[[4.9,46.9],[5.1,46.9]]]}},
{"type":"Feature","properties":{"id":"atlantis"},"geometry":{"type":"Point","coordinates":[5.0,47.0]}}
]}"#,
        ));
        let text = load(&fs).expect_err("invalid").to_string();
        assert!(
            text.contains(
                "communes.geojson:2: `geometry`: feature #0: commune `c1`: needs a Polygon"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "communes.geojson:3: `properties.id`: feature #1: `atlantis` is not a commune"
            ),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_have_lines() {
        let errs = load(&files("[[device]]\nid = \"d1\"\nkind = \n")).expect_err("invalid");
        assert_eq!(errs.0[0].file, "devices/c1.toml");
        assert_eq!(errs.0[0].line, Some(3));
    }
}
