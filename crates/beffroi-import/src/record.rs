//! What the sources become: devices and sites in Beffroi's terms, each remembering where
//! it was read so that a later problem still names the file, line, column and field.

use std::sync::Arc;

use beffroi_core::Point;

use crate::error::{ImportError, ImportErrors, Loc};

/// Where a record was read, and where each of its fields was.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub file: Arc<str>,
    /// The record: its CSV line, its feature or list item.
    pub at: Option<Loc>,
    /// What the record is called in its file (`feature #3`, `device #2`), for messages.
    pub label: String,
    /// Each field of the record: Beffroi's name, the source's name, and where it was.
    pub fields: Vec<FieldOrigin>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldOrigin {
    pub field: &'static str,
    pub source_name: String,
    pub at: Option<Loc>,
}

impl Origin {
    pub fn new(file: &Arc<str>, at: Option<Loc>, label: impl Into<String>) -> Self {
        Origin {
            file: Arc::clone(file),
            at,
            label: label.into(),
            fields: Vec::new(),
        }
    }

    pub fn field(&mut self, field: &'static str, source_name: impl Into<String>, at: Option<Loc>) {
        self.fields.push(FieldOrigin {
            field,
            source_name: source_name.into(),
            at,
        });
    }

    /// An error about `field` of this record, at the field when it was located.
    pub fn error(&self, field: &str, message: impl Into<String>) -> ImportError {
        let located = self.fields.iter().find(|f| f.field == field);
        let message = message.into();
        let message = if self.label.is_empty() {
            message
        } else {
            format!("{}: {message}", self.label)
        };
        ImportError::new(
            self.file.to_string(),
            located.and_then(|f| f.at).or(self.at),
            Some(located.map_or(field, |f| f.source_name.as_str())),
            message,
        )
    }

    /// Where the record was read, for the plan (`devices.csv:12`).
    pub fn place(&self) -> String {
        match self.at {
            Some(at) => format!("{}:{}", self.file, at.line),
            None => self.file.to_string(),
        }
    }
}

/// A device as `devices/*.toml` declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRecord {
    pub id: String,
    pub kind: String,
    pub site: String,
    /// `None`: the source gives no position (the site's, or the one the file has).
    pub position: Option<Point>,
    /// Lowercase hexadecimal; `None`: the source gives none (the file's is kept).
    pub dev_eui: Option<String>,
    pub origin: Origin,
}

/// A site's geometry as `sites.geojson` takes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Geometry {
    Point(Point),
    /// The outer ring of the site's perimeter (closed, at least four positions).
    Polygon(Vec<Point>),
    LineString(Vec<Point>),
}

/// A site as `sites.geojson` declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteRecord {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub commune: String,
    /// `None`: the source gives none (the file's is kept).
    pub zone: Option<String>,
    pub river: Option<String>,
    pub geometry: Geometry,
    pub origin: Origin,
}

/// What the sources gave: devices, sites, notes for the person importing (columns
/// ignored, encodings guessed), and the rows or items that could not be read, which are
/// left out (their problems in `errors`, so that the others are still checked).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Records {
    pub devices: Vec<DeviceRecord>,
    pub sites: Vec<SiteRecord>,
    pub notes: Vec<String>,
    pub errors: ImportErrors,
}

impl Records {
    pub fn extend(&mut self, other: Records) {
        self.devices.extend(other.devices);
        self.sites.extend(other.sites);
        self.notes.extend(other.notes);
        self.errors.extend(other.errors);
    }

    /// `Err` when a row or item could not be read.
    pub fn checked(self) -> Result<Records, ImportErrors> {
        if self.errors.is_empty() {
            Ok(self)
        } else {
            Err(self.errors)
        }
    }
}

/// Checks an identifier as the territory does: lowercase ASCII letters, digits, `-`, `_`,
/// `.`; 1 to 128 characters.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

/// A name made an identifier: `Capteur Pont-Neuf n°2` → `capteur-pont-neuf-n-2`. Accents
/// of Latin letters are dropped; anything else that is not a letter or a digit separates.
/// Cut to 128 characters.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(fold) {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out = out.trim_end_matches('-').to_string();
    out.truncate(128);
    out.trim_end_matches('-').to_string()
}

/// A character without its accent (Latin letters of French and neighbours).
fn fold(c: char) -> impl Iterator<Item = char> {
    let s: &str = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "a",
        'ç' | 'Ç' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
        'ñ' | 'Ñ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => "o",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
        'ý' | 'ÿ' | 'Ý' | 'Ÿ' => "y",
        'æ' | 'Æ' => "ae",
        'œ' | 'Œ' => "oe",
        'ß' => "ss",
        _ => "",
    };
    let folded = (!s.is_empty()).then(|| s.chars());
    let kept = s.is_empty().then_some(c);
    folded.into_iter().flatten().chain(kept)
}

/// A number as a spreadsheet or a GIS writes it: `4.85`, or `4,85` with a decimal comma.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let owned;
    let s = if s.contains(',') && !s.contains('.') && s.matches(',').count() == 1 {
        owned = s.replace(',', ".");
        owned.as_str()
    } else {
        s
    };
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// A LoRaWAN device EUI normalised (lowercase, without separators), or `None` when it is
/// not 8 bytes of hexadecimal.
pub fn normalise_eui(s: &str) -> Option<String> {
    let hex: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | ' '))
        .collect();
    (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A device's EUI when the source gives one, normalised; `Err` once the error about a
/// malformed one is pushed.
pub(crate) fn optional_eui(
    value: Option<&str>,
    origin: &Origin,
    errors: &mut ImportErrors,
) -> Result<Option<String>, ()> {
    match value {
        None => Ok(None),
        Some(e) => normalise_eui(e).map(Some).ok_or_else(|| {
            errors.push(origin.error(
                "dev_eui",
                format!("`{e}` is not 16 hexadecimal digits (a LoRaWAN device EUI)"),
            ));
        }),
    }
}

/// A position from longitude and latitude, if they are WGS84 degrees.
pub fn wgs84(lon: f64, lat: f64) -> Option<Point> {
    let p = Point::new(lon, lat);
    p.is_valid().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_valid_ids() {
        assert_eq!(slug("Capteur Pont-Neuf n°2"), "capteur-pont-neuf-n-2");
        assert_eq!(slug("  Œil-de-Bœuf  École  "), "oeil-de-boeuf-ecole");
        assert_eq!(slug("lht65_01.b"), "lht65_01.b");
        assert_eq!(slug("***"), "");
        assert!(valid_id(&slug(&"Très long nom ".repeat(30))));
    }

    #[test]
    fn numbers_with_a_decimal_comma() {
        assert_eq!(parse_number("4,85"), Some(4.85));
        assert_eq!(parse_number(" 47.3219 "), Some(47.3219));
        assert_eq!(parse_number("-0,5"), Some(-0.5));
        assert_eq!(parse_number("1,234,5"), None);
        assert_eq!(parse_number("1,234.5"), None);
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn euis_are_normalised() {
        assert_eq!(
            normalise_eui("70-B3-D5-7E-D0-00-00-01").as_deref(),
            Some("70b3d57ed0000001")
        );
        assert_eq!(normalise_eui("70b3d57ed000000"), None);
        assert_eq!(normalise_eui("70b3d57ed000000g"), None);
    }
}
