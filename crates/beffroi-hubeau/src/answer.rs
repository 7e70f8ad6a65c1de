//! The answer of `GET /api/v2/hydrometrie/observations_tr`, read under limits.
//!
//! ```json
//! {"count": 2, "first": "…", "prev": null, "next": "https://…&cursor=…", "api_version": "2.0.1",
//!  "data": [{"code_site": "U1224010", "code_station": "U122401001", "grandeur_hydro": "H",
//!            "date_obs": "2026-12-07T06:00:00Z", "resultat_obs": 1234.0,
//!            "libelle_qualification_obs": "Non qualifiée", "longitude": 4.98, "latitude": 47.33, …}]}
//! ```
//!
//! Heights (`H`) are in millimetres, flows (`Q`) in litres per second. Rows without a
//! station (a site-level row that repeats a station's), without a value, of another
//! quantity, or that do not decode are skipped and counted, never fatal: one odd row must
//! not stop a station's feed. An answer that is not that JSON object at all is an error.

use beffroi_core::Timestamp;
use serde::Deserialize;

/// Largest answer read (the API pages at `size` rows; 1,000 rows take about 300 kB).
pub const MAX_BYTES: usize = 8 << 20;
/// Most rows read from one answer.
pub const MAX_ROWS: usize = 20_000;

/// What a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quantity {
    /// Water height (`H`), in millimetres.
    Height,
    /// Flow (`Q`), in litres per second.
    Flow,
}

impl Quantity {
    pub const ALL: [Quantity; 2] = [Quantity::Height, Quantity::Flow];

    /// The API's code (`grandeur_hydro`).
    pub fn code(self) -> &'static str {
        match self {
            Quantity::Height => "H",
            Quantity::Flow => "Q",
        }
    }

    pub fn parse(s: &str) -> Option<Quantity> {
        Quantity::ALL.into_iter().find(|q| q.code() == s)
    }

    /// The unit the API gives it in.
    pub fn api_unit(self) -> &'static str {
        match self {
            Quantity::Height => "mm",
            Quantity::Flow => "l/s",
        }
    }
}

/// One observation of one station.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub station: String,
    pub quantity: Quantity,
    pub time: Timestamp,
    /// In the API's unit ([`Quantity::api_unit`]).
    pub value: f64,
    /// The producer flagged it doubtful (`libelle_qualification_obs` "Douteuse").
    pub doubtful: bool,
}

/// Rows left out of an answer, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// No `code_station`: a site-level row repeating a station's.
    pub no_station: usize,
    /// `resultat_obs` null or absent, or not finite.
    pub no_value: usize,
    /// A quantity other than `H` or `Q`.
    pub other_quantity: usize,
    /// A row that does not decode, or a `date_obs` that is not RFC 3339.
    pub malformed: usize,
}

impl Skipped {
    pub fn total(&self) -> usize {
        self.no_station + self.no_value + self.other_quantity + self.malformed
    }
}

/// One page of the answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub readings: Vec<Reading>,
    /// The next page's URL, if the API has more.
    pub next: Option<String>,
    pub skipped: Skipped,
    /// The first malformed row's error, to log.
    pub first_error: Option<String>,
}

/// An answer that cannot be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("the answer is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("more than {MAX_ROWS} rows in one answer")]
    TooManyRows,
}

#[derive(Deserialize)]
struct RawAnswer {
    #[serde(default)]
    next: Option<String>,
    data: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawRow {
    #[serde(default)]
    code_station: Option<String>,
    #[serde(default)]
    grandeur_hydro: Option<String>,
    #[serde(default)]
    date_obs: Option<String>,
    #[serde(default)]
    resultat_obs: Option<f64>,
    #[serde(default)]
    libelle_qualification_obs: Option<String>,
}

/// Reads one answer.
pub fn parse_answer(body: &[u8]) -> Result<Page, AnswerError> {
    if body.len() > MAX_BYTES {
        return Err(AnswerError::TooLarge);
    }
    let raw: RawAnswer = serde_json::from_slice(body).map_err(|e| AnswerError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    if raw.data.len() > MAX_ROWS {
        return Err(AnswerError::TooManyRows);
    }
    let mut page = Page {
        next: raw.next.filter(|n| !n.is_empty()),
        ..Page::default()
    };
    for (i, row) in raw.data.into_iter().enumerate() {
        let row: RawRow = match serde_json::from_value(row) {
            Ok(r) => r,
            Err(e) => {
                page.skipped.malformed += 1;
                page.first_error
                    .get_or_insert_with(|| format!("data[{i}]: {e}"));
                continue;
            }
        };
        let Some(station) = row.code_station.filter(|s| !s.is_empty()) else {
            page.skipped.no_station += 1;
            continue;
        };
        let Some(quantity) = row.grandeur_hydro.as_deref().and_then(Quantity::parse) else {
            page.skipped.other_quantity += 1;
            continue;
        };
        let Some(value) = row.resultat_obs.filter(|v| v.is_finite()) else {
            page.skipped.no_value += 1;
            continue;
        };
        let Some(time) = row
            .date_obs
            .as_deref()
            .and_then(beffroi_wire::parse_rfc3339)
        else {
            page.skipped.malformed += 1;
            page.first_error
                .get_or_insert_with(|| format!("data[{i}].date_obs: not an RFC 3339 time"));
            continue;
        };
        let doubtful = row
            .libelle_qualification_obs
            .is_some_and(|q| q.trim().eq_ignore_ascii_case("douteuse"));
        page.readings.push(Reading {
            station,
            quantity,
            time,
            value,
            doubtful,
        });
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_and_odd_ones_counted() {
        let body = r#"{"count":6,"first":"x","prev":null,"next":null,"api_version":"2.0.1","data":[
          {"code_site":"U1224010","code_station":"U122401001","grandeur_hydro":"H","date_obs":"2026-12-07T06:00:00Z","resultat_obs":1234.0,"libelle_qualification_obs":"Non qualifiée","continuite_obs_hydro":true},
          {"code_site":"U1224010","code_station":null,"grandeur_hydro":"H","date_obs":"2026-12-07T06:00:00Z","resultat_obs":1234.0},
          {"code_station":"U122401001","grandeur_hydro":"Q","date_obs":"2026-12-07T06:00:00Z","resultat_obs":8123.5,"libelle_qualification_obs":"Douteuse"},
          {"code_station":"U122401001","grandeur_hydro":"H","date_obs":"2026-12-07T06:05:00Z","resultat_obs":null},
          {"code_station":"U122401001","grandeur_hydro":"X","date_obs":"2026-12-07T06:05:00Z","resultat_obs":1.0},
          {"code_station":"U122401001","grandeur_hydro":"H","date_obs":"hier","resultat_obs":1.0},
          {"code_station":42,"grandeur_hydro":"H"}
        ]}"#;
        let page = parse_answer(body.as_bytes()).expect("answer");
        assert_eq!(page.readings.len(), 2);
        assert_eq!(page.readings[0].quantity, Quantity::Height);
        assert_eq!(page.readings[0].value, 1234.0);
        assert_eq!(
            page.readings[0].time,
            beffroi_wire::parse_rfc3339("2026-12-07T06:00:00Z").expect("time")
        );
        assert!(!page.readings[0].doubtful);
        assert!(page.readings[1].doubtful);
        assert_eq!(
            page.skipped,
            Skipped {
                no_station: 1,
                no_value: 1,
                other_quantity: 1,
                malformed: 2
            }
        );
        assert!(
            page.first_error
                .as_deref()
                .is_some_and(|e| e.starts_with("data[5]"))
        );
        assert_eq!(page.next, None);
    }

    #[test]
    fn an_answer_that_is_not_the_api_s_object_is_an_error_with_its_place() {
        assert!(matches!(
            parse_answer(b"{\"data\": [1,\n 2"),
            Err(AnswerError::Json { line: 2, .. })
        ));
        assert!(matches!(
            parse_answer(b"<html>maintenance</html>"),
            Err(AnswerError::Json { line: 1, .. })
        ));
        assert_eq!(
            parse_answer(&vec![b' '; MAX_BYTES + 1]),
            Err(AnswerError::TooLarge)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_answer(&body);
        }
    }
}
