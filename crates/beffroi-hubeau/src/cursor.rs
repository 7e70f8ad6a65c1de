//! What has been handed over, and what to ask for next.
//!
//! The cursor keeps, per station and quantity, the time of the latest reading the engine
//! has committed. A poll asks from the earliest of those times (the API's `date_debut_obs`
//! is inclusive), and only readings strictly later than their own series' position are
//! handed over: a reading is delivered once even though the windows of two polls overlap.
//! The position moves only when the engine has committed the delivery, so a failed
//! delivery is asked for again at the next poll. A restart begins `backfill` back, and so does a poll after a longer outage; the
//! readings it hands over again are exact copies, which the store absorbs and the rules do
//! not evaluate twice (the series' watermark).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use beffroi_core::Timestamp;

use crate::answer::{Quantity, Reading};
use crate::config::HubeauConfig;

/// Records per delivery, under the ingest's limits (1,000 records, 64 KiB).
pub const RECORDS_PER_DELIVERY: usize = 400;

/// Positions per (station, quantity).
#[derive(Clone, Debug)]
pub struct Cursor {
    start: Timestamp,
    last: HashMap<(String, Quantity), Timestamp>,
}

/// Readings of one device, ready for the engine: a plain JSON array of records
/// (`beffroi_wire::plain`), one per time, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub device: Arc<str>,
    pub payload: Vec<u8>,
    /// Readings it carries.
    pub readings: usize,
    /// The positions it moves once committed: (station, quantity, latest time).
    pub through: Vec<(String, Quantity, Timestamp)>,
}

/// Readings a poll leaves out, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// At or before the series' position: already handed over.
    pub seen: usize,
    /// Of a station or quantity the configuration does not map.
    pub unmapped: usize,
    /// Flagged doubtful by the producer (unless `keep_doubtful`).
    pub doubtful: usize,
}

/// What one page of readings becomes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub deliveries: Vec<Delivery>,
    pub left: Left,
}

impl Cursor {
    /// A cursor whose every position is `start` (now minus the backfill).
    pub fn new(start: Timestamp) -> Cursor {
        Cursor {
            start,
            last: HashMap::new(),
        }
    }

    /// The latest time handed over for a series (or the start).
    pub fn position(&self, station: &str, q: Quantity) -> Timestamp {
        self.last
            .get(&(station.to_string(), q))
            .copied()
            .unwrap_or(self.start)
    }

    /// The time a poll for `q` asks from: the earliest position of the stations mapping it.
    pub fn since(&self, cfg: &HubeauConfig, q: Quantity) -> Timestamp {
        cfg.stations
            .iter()
            .filter(|s| s.target(q).is_some())
            .map(|s| self.position(&s.code, q))
            .min()
            .unwrap_or(self.start)
    }

    /// Raises every position to at least `floor` (now minus the backfill): after a long
    /// outage the connector does not reach further back than the backfill.
    pub fn raise_to(&mut self, floor: Timestamp) {
        self.start = self.start.max(floor);
        for t in self.last.values_mut() {
            *t = (*t).max(floor);
        }
    }

    /// Moves the positions of a committed delivery (never backwards).
    pub fn commit(&mut self, d: &Delivery) {
        for (station, q, t) in &d.through {
            let e = self.last.entry((station.clone(), *q)).or_insert(self.start);
            if *t > *e {
                *e = *t;
            }
        }
    }

    /// Groups the new readings of a page by device, converted to the fields' units.
    pub fn plan(&self, cfg: &HubeauConfig, readings: &[Reading]) -> Plan {
        let mut left = Left::default();
        // device → time → field → value; and the positions each device's delivery moves.
        type Records = BTreeMap<i64, BTreeMap<Arc<str>, f64>>;
        type Through = BTreeMap<(String, Quantity), Timestamp>;
        let mut by_device: BTreeMap<Arc<str>, (Records, Through)> = BTreeMap::new();
        for r in readings {
            let Some((station, target)) = cfg
                .station(&r.station)
                .and_then(|s| s.target(r.quantity).map(|t| (s, t)))
            else {
                left.unmapped += 1;
                continue;
            };
            if r.time <= self.position(&station.code, r.quantity) {
                left.seen += 1;
                continue;
            }
            if r.doubtful && !cfg.keep_doubtful {
                left.doubtful += 1;
                continue;
            }
            // To the micro-unit, as far as that stays finite.
            let value = r.value * target.scale;
            let value = if value.abs() < 1e12 {
                (value * 1e6).round() / 1e6
            } else {
                value
            };
            let (records, through) = by_device.entry(Arc::clone(&station.device_id)).or_default();
            records
                .entry(r.time.0)
                .or_default()
                .insert(Arc::clone(&target.field), value);
            let t = through
                .entry((station.code.clone(), r.quantity))
                .or_insert(r.time);
            if r.time > *t {
                *t = r.time;
            }
        }
        let mut deliveries = Vec::new();
        for (device, (records, through)) in by_device {
            let records: Vec<(i64, BTreeMap<Arc<str>, f64>)> = records.into_iter().collect();
            for chunk in records.chunks(RECORDS_PER_DELIVERY) {
                let last = chunk.last().map_or(i64::MIN, |(t, _)| *t);
                let array: Vec<serde_json::Value> = chunk
                    .iter()
                    .map(|(t, values)| {
                        let values: serde_json::Map<String, serde_json::Value> = values
                            .iter()
                            .map(|(f, v)| (f.to_string(), serde_json::Value::from(*v)))
                            .collect();
                        serde_json::json!({ "device": &*device, "time": t, "values": values })
                    })
                    .collect();
                deliveries.push(Delivery {
                    readings: chunk.iter().map(|(_, v)| v.len()).sum(),
                    payload: serde_json::Value::Array(array).to_string().into_bytes(),
                    device: Arc::clone(&device),
                    // Each chunk moves a series up to its own last record only.
                    through: through
                        .iter()
                        .map(|((s, q), t)| (s.clone(), *q, Timestamp(t.0.min(last))))
                        .collect(),
                });
            }
        }
        Plan { deliveries, left }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, the form the API's date filters take.
pub fn api_time(t: Timestamp) -> String {
    let secs = t.0.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = beffroi_core::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The first page's URL of a poll for `q`: the stations mapping it, from `since`, oldest
/// first, `size` rows a page, only the columns read.
pub fn request_url(cfg: &HubeauConfig, q: Quantity, since: Timestamp, size: usize) -> String {
    let codes: Vec<&str> = cfg
        .stations
        .iter()
        .filter(|s| s.target(q).is_some())
        .map(|s| s.code.as_str())
        .collect();
    format!(
        "{}?code_entite={}&grandeur_hydro={}&date_debut_obs={}&sort=asc&size={size}&fields=code_station,grandeur_hydro,date_obs,resultat_obs,libelle_qualification_obs",
        cfg.url,
        codes.join(","),
        q.code(),
        api_time(since),
    )
}

/// Whether a `next` link the API returned stays on the configured service (scheme, host
/// and path): a link elsewhere is not followed.
pub fn follows(base: &str, next: &str) -> bool {
    next.strip_prefix(base)
        .is_some_and(|rest| rest.starts_with('?') && !rest.contains(['#', ' ', '\r', '\n']))
}
