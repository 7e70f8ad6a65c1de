//! Devices and sites from a spreadsheet's CSV export.
//!
//! Columns are found by their header, whatever their order and case (`DevEUI`, `dev_eui`
//! and `Dev EUI` are one column); cells are separated by `,` or `;` (guessed from the
//! header line; French spreadsheets write `;` and decimal commas, `4,85`, both read). A
//! byte order mark is dropped and a file that is not UTF-8 is read as Windows-1252.
//! Unknown columns are ignored, with a note. Every row's problems are reported, each
//! with its line, its column and the column's header.

use std::sync::Arc;

use crate::error::{ImportError, ImportErrors, Loc};
use crate::record::{
    DeviceRecord, Geometry, Origin, Records, SiteRecord, optional_eui, parse_number, wgs84,
};
use crate::text::{Encoding, decode};

/// A column Beffroi reads, its accepted headers (compared lowercase, without spaces,
/// `-` or `_`), and whether it is required.
struct Column {
    field: &'static str,
    aliases: &'static [&'static str],
    required: bool,
}

impl Column {
    const fn required(field: &'static str, aliases: &'static [&'static str]) -> Column {
        Column {
            field,
            aliases,
            required: true,
        }
    }

    const fn optional(field: &'static str, aliases: &'static [&'static str]) -> Column {
        Column {
            field,
            aliases,
            required: false,
        }
    }
}

const ID: &[&str] = &["id", "identifiant"];
const KIND: &[&str] = &["kind", "type"];
const LONGITUDE: &[&str] = &["longitude", "lon", "lng", "x"];
const LATITUDE: &[&str] = &["latitude", "lat", "y"];

const DEVICE_COLUMNS: &[Column] = &[
    Column::required("id", ID),
    Column::required("kind", KIND),
    Column::required("site", &["site"]),
    Column::optional("longitude", LONGITUDE),
    Column::optional("latitude", LATITUDE),
    Column::optional("dev_eui", &["deveui", "eui"]),
];

const SITE_COLUMNS: &[Column] = &[
    Column::required("id", ID),
    Column::required("name", &["name", "nom"]),
    Column::required("kind", KIND),
    Column::required("commune", &["commune"]),
    Column::required("longitude", LONGITUDE),
    Column::required("latitude", LATITUDE),
    Column::optional("zone", &["zone"]),
    Column::optional("river", &["river", "riviere", "rivière", "coursdeau"]),
];

/// The columns of the devices CSV, for documentation and templates:
/// `(header, required)`.
pub fn device_columns() -> impl Iterator<Item = (&'static str, bool)> {
    DEVICE_COLUMNS.iter().map(|c| (c.field, c.required))
}

/// The columns of the sites CSV: `(header, required)`.
pub fn site_columns() -> impl Iterator<Item = (&'static str, bool)> {
    SITE_COLUMNS.iter().map(|c| (c.field, c.required))
}

fn normalise_header(h: &str) -> String {
    h.trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// One row: its line and its cells by Beffroi's field name.
struct Row {
    line: usize,
    cells: Vec<(&'static str, String, Loc, String)>,
}

impl Row {
    /// The cell of `field`, trimmed, when present and not blank.
    fn get(&self, field: &str) -> Option<&str> {
        self.cells
            .iter()
            .find(|(f, ..)| *f == field)
            .map(|(_, v, ..)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The cell of `field`; when it is blank, `None` and an error.
    fn required(&self, field: &str, origin: &Origin, errors: &mut ImportErrors) -> Option<String> {
        let value = self.get(field).map(str::to_string);
        if value.is_none() {
            errors.push(origin.error(field, "empty cell; required"));
        }
        value
    }

    fn origin(&self, file: &Arc<str>) -> Origin {
        let mut o = Origin::new(file, Some(Loc::new(self.line, 1)), "");
        for (field, _, at, header) in &self.cells {
            o.field(field, header.clone(), Some(*at));
        }
        o
    }
}

/// Reads the table: rows keyed by the fields of `columns`. Errors about the header stop
/// here (every row would fail the same way).
fn read_table(
    file: &Arc<str>,
    bytes: &[u8],
    columns: &[Column],
    records: &mut Records,
) -> Result<Vec<Row>, ImportErrors> {
    let (text, encoding) = decode(bytes);
    if encoding == Encoding::Windows1252 {
        records.notes.push(format!(
            "{file}: not UTF-8, read as Windows-1252 (a spreadsheet's \"CSV\"); save as \"CSV UTF-8\" to be sure of accented letters"
        ));
    }
    let header_line = text.lines().next().unwrap_or("");
    let delimiter = if header_line.matches(';').count() > header_line.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut rows = reader.records();
    let header_error = |msg: String| {
        ImportErrors(vec![ImportError::new(
            file.to_string(),
            Some(Loc::new(1, 1)),
            None,
            msg,
        )])
    };
    let header = match rows.next() {
        None => {
            return Err(header_error(
                "empty file: expected a header line naming the columns".into(),
            ));
        }
        Some(Err(e)) => return Err(header_error(format!("unreadable header: {e}"))),
        Some(Ok(h)) => h,
    };
    let names = columns
        .iter()
        .map(|c| c.field)
        .collect::<Vec<_>>()
        .join(", ");
    // Which field each column of the file holds.
    let mut mapped: Vec<Option<&'static str>> = Vec::new();
    let mut errors = ImportErrors::default();
    for (i, h) in header.iter().enumerate() {
        let n = normalise_header(h);
        let column = columns.iter().find(|c| {
            normalise_header(c.field) == n || c.aliases.iter().any(|a| normalise_header(a) == n)
        });
        match column {
            Some(c) if mapped.contains(&Some(c.field)) => errors.push(ImportError::new(
                file.to_string(),
                Some(Loc::new(1, i + 1)),
                Some(h.trim()),
                format!("a second column for `{}`", c.field),
            )),
            Some(c) => {
                mapped.push(Some(c.field));
                continue;
            }
            None if h.trim().is_empty() => {}
            None => records.notes.push(format!(
                "{file}:1:{}: column `{}` ignored (Beffroi reads {names})",
                i + 1,
                h.trim(),
            )),
        }
        mapped.push(None);
    }
    for c in columns.iter().filter(|c| c.required) {
        if !mapped.contains(&Some(c.field)) {
            errors.push(ImportError::new(
                file.to_string(),
                Some(Loc::new(1, 1)),
                Some(c.field),
                format!(
                    "no `{}` column in the header (the header line names the columns: {names})",
                    c.field,
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = Vec::new();
    let mut lines = Lines::new(&text);
    for row in rows {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.at(p.byte() as usize));
                errors.push(ImportError::new(
                    file.to_string(),
                    (line > 0).then(|| Loc::new(line, 1)),
                    None,
                    format!("unreadable row: {e}"),
                ));
                continue;
            }
        };
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let line = row.position().map_or(0, |p| lines.at(p.byte() as usize));
        let cells = row
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let field = (*mapped.get(i)?)?;
                Some((
                    field,
                    v.to_string(),
                    Loc::new(line, i + 1),
                    header.get(i).unwrap_or("").trim().to_string(),
                ))
            })
            .collect();
        out.push(Row { line, cells });
    }
    errors.into_result(out)
}

/// Lines of records, counted forward as the reader goes (records come in order).
struct Lines<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    /// The line of a record starting at byte `offset`: the reader may place a record's
    /// start on the line end before it (after a `\r\n`), so line ends there are skipped.
    fn at(&mut self, offset: usize) -> usize {
        let mut at = offset.min(self.text.len());
        while matches!(self.text.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        if at < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.text[self.offset..at]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        self.offset = at;
        self.line
    }
}

/// A position from the row's longitude and latitude; both or neither.
fn position(
    row: &Row,
    origin: &Origin,
    errors: &mut ImportErrors,
) -> Result<Option<beffroi_core::Point>, ()> {
    let (lon, lat) = (row.get("longitude"), row.get("latitude"));
    let mut number = |field: &str, v: &str| match parse_number(v) {
        Some(x) => Ok(x),
        None => {
            errors.push(origin.error(
                field,
                format!("`{v}` is not a number (write 5.0415 or 5,0415)"),
            ));
            Err(())
        }
    };
    match (lon, lat) {
        (None, None) => Ok(None),
        (Some(lon), Some(lat)) => {
            let (lon, lat) = (number("longitude", lon), number("latitude", lat));
            let (lon, lat) = (lon?, lat?);
            match wgs84(lon, lat) {
                Some(p) => Ok(Some(p)),
                None => {
                    let field = if (-180.0..=180.0).contains(&lon) {
                        "latitude"
                    } else {
                        "longitude"
                    };
                    errors.push(origin.error(
                        field,
                        format!("{lon}, {lat} is not a WGS84 longitude and latitude in degrees (a projected system such as Lambert-93? export in EPSG:4326)"),
                    ));
                    Err(())
                }
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            let missing = if lon.is_none() {
                "longitude"
            } else {
                "latitude"
            };
            errors.push(origin.error(missing, "give both longitude and latitude, or neither"));
            Err(())
        }
    }
}

/// Reads the table of `columns` and gives each row, with its origin, to `each`, which
/// adds its record or pushes its errors (those go to the records').
fn read_rows(
    file: &str,
    bytes: &[u8],
    columns: &[Column],
    mut each: impl FnMut(&Row, Origin, &mut Records, &mut ImportErrors),
) -> Result<Records, ImportErrors> {
    let file: Arc<str> = file.into();
    let mut records = Records::default();
    let rows = read_table(&file, bytes, columns, &mut records)?;
    let mut errors = ImportErrors::default();
    for row in &rows {
        each(row, row.origin(&file), &mut records, &mut errors);
    }
    records.errors.extend(errors);
    Ok(records)
}

/// Reads a devices CSV: `id, kind, site` and optionally `longitude, latitude, dev_eui`.
pub fn read_devices(file: &str, bytes: &[u8]) -> Result<Records, ImportErrors> {
    read_rows(
        file,
        bytes,
        DEVICE_COLUMNS,
        |row, origin, records, errors| {
            let (id, kind, site) = (
                row.required("id", &origin, errors),
                row.required("kind", &origin, errors),
                row.required("site", &origin, errors),
            );
            let position = position(row, &origin, errors);
            let dev_eui = optional_eui(row.get("dev_eui"), &origin, errors);
            if let (Some(id), Some(kind), Some(site), Ok(position), Ok(dev_eui)) =
                (id, kind, site, position, dev_eui)
            {
                records.devices.push(DeviceRecord {
                    id,
                    kind,
                    site,
                    position,
                    dev_eui,
                    origin,
                });
            }
        },
    )
}

/// Reads a sites CSV: `id, name, kind, commune, longitude, latitude` and optionally
/// `zone, river`.
pub fn read_sites(file: &str, bytes: &[u8]) -> Result<Records, ImportErrors> {
    read_rows(file, bytes, SITE_COLUMNS, |row, origin, records, errors| {
        let (id, name, kind, commune) = (
            row.required("id", &origin, errors),
            row.required("name", &origin, errors),
            row.required("kind", &origin, errors),
            row.required("commune", &origin, errors),
        );
        let position = match (row.get("longitude"), row.get("latitude")) {
            (None, None) => {
                errors.push(origin.error(
                    "longitude",
                    "empty cells; a site needs its longitude and latitude",
                ));
                Err(())
            }
            _ => position(row, &origin, errors),
        };
        if let (Some(id), Some(name), Some(kind), Some(commune), Ok(Some(p))) =
            (id, name, kind, commune, position)
        {
            records.sites.push(SiteRecord {
                id,
                name,
                kind,
                commune,
                zone: row.get("zone").map(str::to_string),
                river: row.get("river").map(str::to_string),
                geometry: Geometry::Point(p),
                origin,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_french_spreadsheet_export() {
        let csv = "\u{feff}Identifiant;Type;Site;Longitude;Latitude;DevEUI;Remarque\r\n\
                   pont-1;water_level;dijon-ouche;5,0201;47,3101;70-B3-D5-7E-D0-00-00-01;à voir\r\n\
                   pont-2;water_level;dijon-ouche;;;;\r\n\
                   ;;;;;;\r\n";
        let r = read_devices("devices.csv", csv.as_bytes())
            .and_then(Records::checked)
            .expect("valid");
        assert_eq!(r.devices.len(), 2);
        let d = &r.devices[0];
        assert_eq!(
            (d.id.as_str(), d.kind.as_str(), d.site.as_str()),
            ("pont-1", "water_level", "dijon-ouche")
        );
        assert_eq!(d.position, Some(beffroi_core::Point::new(5.0201, 47.3101)));
        assert_eq!(d.dev_eui.as_deref(), Some("70b3d57ed0000001"));
        assert_eq!(d.origin.at, Some(Loc::new(2, 1)));
        assert_eq!(r.devices[1].position, None);
        assert_eq!(r.devices[1].dev_eui, None);
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("column `Remarque` ignored")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn reads_commas_quotes_and_any_column_order() {
        let csv = "name,id,kind,commune,latitude,longitude,zone\n\
                   \"Château d'eau, nord\",ahuy-chateau-eau,water_tower,ahuy,47.37,5.02,\n";
        let r = read_sites("sites.csv", csv.as_bytes())
            .and_then(Records::checked)
            .expect("valid");
        let s = &r.sites[0];
        assert_eq!(s.name, "Château d'eau, nord");
        assert_eq!(
            s.geometry,
            Geometry::Point(beffroi_core::Point::new(5.02, 47.37))
        );
        assert_eq!(s.zone, None);
    }

    #[test]
    fn reports_every_bad_cell_with_line_column_and_header() {
        let csv = "id;kind;site;lon;lat;dev_eui\n\
                   a;water_level;s1;5,1;;\n\
                   ;water_level;s1;;;xyz\n\
                   c;water_level;s1;851000;6785000;\n";
        let e = read_devices("d.csv", csv.as_bytes())
            .and_then(Records::checked)
            .expect_err("invalid")
            .to_string();
        let lines: Vec<_> = e.lines().collect();
        assert_eq!(
            lines,
            [
                "d.csv:2:5: `lat`: give both longitude and latitude, or neither",
                "d.csv:3:1: `id`: empty cell; required",
                "d.csv:3:6: `dev_eui`: `xyz` is not 16 hexadecimal digits (a LoRaWAN device EUI)",
                "d.csv:4:4: `lon`: 851000, 6785000 is not a WGS84 longitude and latitude in degrees (a projected system such as Lambert-93? export in EPSG:4326)",
            ],
            "{e}"
        );
    }

    #[test]
    fn a_missing_column_is_one_error_at_the_header() {
        let e = read_sites(
            "s.csv",
            b"id,name,kind,longitude,latitude\nx,X,school,5,47\n",
        )
        .expect_err("no commune")
        .to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.starts_with("s.csv:1:1: `commune`: no `commune` column"),
            "{e}"
        );
        let e = read_sites("s.csv", b"").expect_err("empty").to_string();
        assert!(e.contains("empty file"), "{e}");
    }

    proptest! {
        /// Whatever the bytes, the reader answers (records or errors) and never panics.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = read_devices("f.csv", &bytes);
            let _ = read_sites("f.csv", &bytes);
        }

        /// Rows made of arbitrary cells under a valid header: every non-blank row is a
        /// record or at least one error, never silently dropped.
        #[test]
        fn every_row_is_read_or_reported(cells in proptest::collection::vec(
            proptest::collection::vec("[a-z0-9;,\" ]{0,6}", 3), 1..8)) {
            let mut text = String::from("id,kind,site\n");
            for row in &cells {
                let quoted: Vec<String> = row.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
                text.push_str(&quoted.join(","));
                text.push('\n');
            }
            let r = read_devices("f.csv", text.as_bytes()).expect("the header is valid");
            let mut lines: Vec<usize> = r.devices.iter().filter_map(|d| d.origin.at).map(|a| a.line).collect();
            lines.extend(r.errors.iter().filter_map(|e| e.at).map(|a| a.line));
            lines.sort();
            lines.dedup();
            let expected: Vec<usize> = cells.iter().enumerate()
                .filter(|(_, row)| row.iter().any(|c| !c.trim().is_empty()))
                .map(|(i, _)| i + 2)
                .collect();
            prop_assert_eq!(lines, expected);
        }
    }
}
