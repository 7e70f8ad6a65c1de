//! The compact binary form of the communes table: written by `build.rs` (which includes
//! this file) and read back at run time. Strings are a varint length and UTF-8 bytes;
//! integers are LEB128 varints (signed ones zigzagged); an outline's points are deltas from
//! the previous point of its ring.
//!
//! ```text
//! magic "BEFFROI-COMMUNES\x01"
//! sources: text
//! departements: count, then (code: text, name: text)…
//! epcis: count, then (siren: text, name: text, kind: text)…
//! communes: count, then (code: text, name: text, departement: index, epci: index + 1 or 0,
//!   population, town hall: 0 | 1 lon lat (millionths of a degree),
//!   rings: count, then (points: count, then (dlon, dlat) in ten-thousandths of a degree)…)…
//! ```

/// The first bytes of a table.
pub const MAGIC: &[u8] = b"BEFFROI-COMMUNES\x01";

/// A town hall's coordinates are kept to this fraction of a degree (about 10 cm).
pub const TOWN_HALL_SCALE: f64 = 1_000_000.0;

/// An outline's coordinates are kept to this fraction of a degree (about 11 m of latitude,
/// 7 m of longitude in metropolitan France): the outlines are generalised for maps anyway.
pub const OUTLINE_SCALE: f64 = 10_000.0;

/// A département (or overseas collectivity) of the COG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepartementRecord {
    pub code: String,
    pub name: String,
}

/// An intercommunality with its own taxation (EPCI à fiscalité propre).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpciRecord {
    /// SIREN number (9 digits).
    pub siren: String,
    pub name: String,
    /// `CC`, `CA`, `CU` or `METRO`.
    pub kind: String,
}

/// A current commune (*commune actuelle*) of the COG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommuneRecord {
    /// INSEE code (5 characters: `21231`, `2A004`).
    pub code: String,
    pub name: String,
    /// Index into the departements.
    pub departement: u32,
    /// Index into the EPCIs.
    pub epci: Option<u32>,
    /// Municipal population of the COG's year.
    pub population: u32,
    /// The town hall, `[lon, lat]` in millionths of a degree.
    pub town_hall: Option<[i32; 2]>,
    /// Outer rings of the outline, `[lon, lat]` in ten-thousandths of a degree, each
    /// closed (first point = last point) with at least four points.
    pub outline: Vec<Vec<[i32; 2]>>,
}

/// The whole table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Where the data comes from: package names, versions and licences.
    pub sources: String,
    pub departements: Vec<DepartementRecord>,
    pub epcis: Vec<EpciRecord>,
    pub communes: Vec<CommuneRecord>,
}

/// Why bytes are not a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("not a communes table (wrong first bytes)")]
    Magic,
    #[error("the communes table ends too early")]
    Truncated,
    #[error("the communes table has a number out of range")]
    Range,
    #[error("the communes table has text that is not UTF-8")]
    Utf8,
    #[error("the communes table has {0} stray bytes at its end")]
    Trailing(usize),
    #[error("the communes table cannot be decompressed: {0}")]
    Compression(String),
}

fn put_u(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_i(out: &mut Vec<u8>, n: i64) {
    put_u(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn put_s(out: &mut Vec<u8>, s: &str) {
    put_u(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

impl Table {
    /// The table's bytes (uncompressed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put_s(&mut out, &self.sources);
        put_u(&mut out, self.departements.len() as u64);
        for d in &self.departements {
            put_s(&mut out, &d.code);
            put_s(&mut out, &d.name);
        }
        put_u(&mut out, self.epcis.len() as u64);
        for e in &self.epcis {
            put_s(&mut out, &e.siren);
            put_s(&mut out, &e.name);
            put_s(&mut out, &e.kind);
        }
        put_u(&mut out, self.communes.len() as u64);
        for c in &self.communes {
            put_s(&mut out, &c.code);
            put_s(&mut out, &c.name);
            put_u(&mut out, u64::from(c.departement));
            put_u(&mut out, c.epci.map_or(0, |e| u64::from(e) + 1));
            put_u(&mut out, u64::from(c.population));
            match c.town_hall {
                Some([lon, lat]) => {
                    out.push(1);
                    put_i(&mut out, i64::from(lon));
                    put_i(&mut out, i64::from(lat));
                }
                None => out.push(0),
            }
            put_u(&mut out, c.outline.len() as u64);
            for ring in &c.outline {
                put_u(&mut out, ring.len() as u64);
                let mut prev = [0i64; 2];
                for p in ring {
                    let p = [i64::from(p[0]), i64::from(p[1])];
                    put_i(&mut out, p[0] - prev[0]);
                    put_i(&mut out, p[1] - prev[1]);
                    prev = p;
                }
            }
        }
        out
    }

    /// Reads bytes written by [`Table::encode`]; any other input is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Table, TableError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(TableError::Magic)?;
        let mut r = Reader { bytes: rest, at: 0 };
        let sources = r.text()?;
        let n = r.count()?;
        let mut departements = Vec::with_capacity(n);
        for _ in 0..n {
            departements.push(DepartementRecord {
                code: r.text()?,
                name: r.text()?,
            });
        }
        let n = r.count()?;
        let mut epcis = Vec::with_capacity(n);
        for _ in 0..n {
            epcis.push(EpciRecord {
                siren: r.text()?,
                name: r.text()?,
                kind: r.text()?,
            });
        }
        let n = r.count()?;
        let mut communes = Vec::with_capacity(n);
        for _ in 0..n {
            let code = r.text()?;
            let name = r.text()?;
            let departement = r.index(departements.len())?;
            let epci = match r.u()? {
                0 => None,
                e => Some(
                    u32::try_from(e - 1)
                        .ok()
                        .filter(|e| (*e as usize) < epcis.len())
                        .ok_or(TableError::Range)?,
                ),
            };
            let population = u32::try_from(r.u()?).map_err(|_| TableError::Range)?;
            let town_hall = match r.byte()? {
                0 => None,
                1 => Some([r.i32()?, r.i32()?]),
                _ => return Err(TableError::Range),
            };
            let rings = r.count()?;
            let mut outline = Vec::with_capacity(rings);
            for _ in 0..rings {
                let points = r.count()?;
                let mut ring = Vec::with_capacity(points);
                let mut prev = [0i64; 2];
                for _ in 0..points {
                    let dlon = r.i()?;
                    let dlat = r.i()?;
                    let p = [
                        prev[0].checked_add(dlon).ok_or(TableError::Range)?,
                        prev[1].checked_add(dlat).ok_or(TableError::Range)?,
                    ];
                    let lon = i32::try_from(p[0]).map_err(|_| TableError::Range)?;
                    let lat = i32::try_from(p[1]).map_err(|_| TableError::Range)?;
                    ring.push([lon, lat]);
                    prev = p;
                }
                outline.push(ring);
            }
            communes.push(CommuneRecord {
                code,
                name,
                departement,
                epci,
                population,
                town_hall,
                outline,
            });
        }
        match r.bytes.len() - r.at {
            0 => Ok(Table {
                sources,
                departements,
                epcis,
                communes,
            }),
            n => Err(TableError::Trailing(n)),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, TableError> {
        let b = *self.bytes.get(self.at).ok_or(TableError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn u(&mut self) -> Result<u64, TableError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f)
                .checked_shl(shift)
                .ok_or(TableError::Range)?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(TableError::Range)
    }

    fn i(&mut self) -> Result<i64, TableError> {
        let z = self.u()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, TableError> {
        i32::try_from(self.i()?).map_err(|_| TableError::Range)
    }

    /// A count of items that follow, each at least one byte: never more than the bytes
    /// left, so a corrupt count cannot make the reader reserve memory it will not fill.
    fn count(&mut self) -> Result<usize, TableError> {
        let n = usize::try_from(self.u()?).map_err(|_| TableError::Range)?;
        if n > self.bytes.len() - self.at {
            return Err(TableError::Truncated);
        }
        Ok(n)
    }

    fn index(&mut self, len: usize) -> Result<u32, TableError> {
        u32::try_from(self.u()?)
            .ok()
            .filter(|i| (*i as usize) < len)
            .ok_or(TableError::Range)
    }

    fn text(&mut self) -> Result<String, TableError> {
        let n = self.count()?;
        let s = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or(TableError::Truncated)?;
        self.at += n;
        String::from_utf8(s.to_vec()).map_err(|_| TableError::Utf8)
    }
}
