//! Grid clustering of the devices for the console's map. Pure: no I/O, no clock, no lock.
//!
//! The world is projected in Web Mercator (the map's projection) onto the unit square and
//! cut, at zoom level `L`, into `CELLS_AT_ZERO × 2^L` cells per side. MapLibre draws the
//! world 512 px wide at zoom 0, so a cell is 51.2 px on screen at the level's zoom (and up
//! to twice that until the next level); cells of level `L + 1` split each cell of level `L`
//! in four. A request names a zoom and a box; every cell the box touches is counted whole
//! (so a cluster's count does not depend on where the box's edge falls), and each cell with
//! devices becomes one cluster (two devices or more) or that single device. Above
//! [`MAX_CLUSTER_LEVEL`] every device of the box is returned on its own.
//!
//! The grid is anchored on the world, not on the box: panning does not reshuffle clusters.
//! One request is a single pass over the devices' precomputed projections (about a
//! millisecond for 100,000 devices; BENCHMARKS.md).

use std::f64::consts::PI;

/// Cells per side of the world at zoom level 0. MapLibre's world is 512 px wide at zoom 0,
/// so a cell is 51.2 px at its level's zoom.
pub const CELLS_AT_ZERO: u64 = 10;
/// MapLibre's world width in CSS pixels at zoom 0.
pub const WORLD_PX: f64 = 512.0;
/// Highest level at which devices are grouped; above it every device is returned alone.
pub const MAX_CLUSTER_LEVEL: u8 = 15;
/// Highest zoom accepted.
pub const MAX_ZOOM: f64 = 24.0;
/// Largest number of cells a box may cover at the requested level (a 4K wall screen's view
/// with a margin of one screen on each side is about 30,000).
pub const MAX_CELLS: u64 = 1 << 18;
/// Web Mercator's latitude limit.
pub const MAX_LAT: f64 = 85.051_128_779_806_59;

/// A device's state as drawn on the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapState {
    Normal = 0,
    Alarm = 1,
    Silent = 2,
    Quarantined = 3,
}

impl MapState {
    /// In the order of [`Cluster::by_state`].
    pub const ALL: [MapState; 4] = [
        MapState::Normal,
        MapState::Alarm,
        MapState::Silent,
        MapState::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MapState::Normal => "normal",
            MapState::Alarm => "alarm",
            MapState::Silent => "silent",
            MapState::Quarantined => "quarantined",
        }
    }

    /// How much a state calls for attention: alarm > silent > quarantined > normal.
    pub fn severity(self) -> u8 {
        match self {
            MapState::Normal => 0,
            MapState::Quarantined => 1,
            MapState::Silent => 2,
            MapState::Alarm => 3,
        }
    }
}

/// Why a query was refused. Messages are shown to API clients as they are.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GridError {
    #[error("z must be a number between 0 and {MAX_ZOOM}, got {0}")]
    Zoom(f64),
    #[error("bbox: {field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        field: &'static str,
        min: f64,
        max: f64,
        value: f64,
    },
    #[error(
        "bbox: west ({west}) must be less than east ({east}); boxes across the antimeridian are not supported"
    )]
    WestEast { west: f64, east: f64 },
    #[error("bbox: south ({south}) must be less than north ({north})")]
    SouthNorth { south: f64, north: f64 },
    #[error(
        "bbox covers {cells} cells at zoom level {level}, more than {MAX_CELLS}: send the visible box or zoom in"
    )]
    TooManyCells { cells: u64, level: u8 },
}

/// A box in WGS84 degrees, west < east (no antimeridian crossing), south < north.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bbox {
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

impl Bbox {
    pub fn new(west: f64, south: f64, east: f64, north: f64) -> Result<Self, GridError> {
        for (field, value, max) in [
            ("west", west, 180.0),
            ("south", south, 90.0),
            ("east", east, 180.0),
            ("north", north, 90.0),
        ] {
            if !value.is_finite() || !(-max..=max).contains(&value) {
                return Err(GridError::OutOfRange {
                    field,
                    min: -max,
                    max,
                    value,
                });
            }
        }
        if west >= east {
            return Err(GridError::WestEast { west, east });
        }
        if south >= north {
            return Err(GridError::SouthNorth { south, north });
        }
        Ok(Bbox {
            west,
            south,
            east,
            north,
        })
    }
}

/// Longitude and latitude (degrees) to Web Mercator on the unit square: x grows east,
/// y grows south, (0, 0) is the north-west corner.
pub fn mercator(lon: f64, lat: f64) -> (f64, f64) {
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let x = (lon + 180.0) / 360.0;
    let y = 0.5 - (PI / 4.0 + lat / 2.0).tan().ln() / (2.0 * PI);
    (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0))
}

/// The inverse of [`mercator`].
pub fn unmercator(x: f64, y: f64) -> (f64, f64) {
    let lon = x * 360.0 - 180.0;
    let lat = (PI * (1.0 - 2.0 * y)).sinh().atan().to_degrees();
    (lon, lat)
}

/// The devices' positions, projected once.
#[derive(Clone, Debug, Default)]
pub struct MapIndex {
    x: Vec<f64>,
    y: Vec<f64>,
    lon: Vec<f64>,
    lat: Vec<f64>,
}

impl MapIndex {
    /// Device `i` is the `i`-th position, (longitude, latitude) in degrees.
    pub fn new(positions: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let mut ix = MapIndex::default();
        for (lon, lat) in positions {
            let (x, y) = mercator(lon, lat);
            ix.x.push(x);
            ix.y.push(y);
            ix.lon.push(lon);
            ix.lat.push(lat);
        }
        ix
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Device `i`'s (longitude, latitude).
    pub fn position(&self, i: usize) -> Option<(f64, f64)> {
        Some((*self.lon.get(i)?, *self.lat.get(i)?))
    }
}

/// Several devices of one cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub count: u32,
    /// Devices per state, indexed like [`MapState::ALL`].
    pub by_state: [u32; 4],
    /// Mean longitude and latitude of the devices.
    pub lon: f64,
    pub lat: f64,
    /// The devices' bounding box (where to zoom to split the cluster).
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

impl Cluster {
    /// The state calling most for attention among the cluster's devices.
    pub fn worst(&self) -> MapState {
        MapState::ALL
            .into_iter()
            .filter(|s| self.by_state[*s as usize] > 0)
            .max_by_key(|s| s.severity())
            .unwrap_or(MapState::Normal)
    }

    /// The share of the cluster's devices in alarm, 0 to 1: what the map colours a cluster
    /// by (one alarm among 422 devices is not a red cluster).
    pub fn alarm_share(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        f64::from(self.by_state[MapState::Alarm as usize]) / f64::from(self.count)
    }
}

/// What a box holds at a zoom.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// The grid's level: the zoom, rounded down and capped to [`MAX_ZOOM`].
    pub level: u8,
    /// False above [`MAX_CLUSTER_LEVEL`]: every device is in `singles`.
    pub clustered: bool,
    /// Size of a cell on screen at the level's zoom, in CSS pixels.
    pub cell_px: f64,
    /// The box actually covered: the requested one grown to whole cells.
    pub covered: Bbox,
    /// Cells with two devices or more, in the order of their first device.
    pub clusters: Vec<Cluster>,
    /// Devices alone in their cell (or every device, above the cluster levels), by index.
    pub singles: Vec<u32>,
    /// Devices in `covered`.
    pub in_view: usize,
    /// Devices of the whole territory per state, indexed like [`MapState::ALL`].
    pub totals: [usize; 4],
}

#[derive(Clone, Copy)]
struct Acc {
    count: u32,
    first: u32,
    by_state: [u32; 4],
    sum_lon: f64,
    sum_lat: f64,
    west: f64,
    south: f64,
    east: f64,
    north: f64,
}

/// Groups the devices of `index` inside `bbox` at `zoom`. `state_of(i)` is device `i`'s
/// current state.
pub fn cluster(
    index: &MapIndex,
    zoom: f64,
    bbox: &Bbox,
    state_of: impl Fn(usize) -> MapState,
) -> Result<Grid, GridError> {
    cluster_some(index, zoom, bbox, state_of, |_| true)
}

/// [`cluster`] over the devices `include` keeps (a caller's communes); the others are not
/// counted anywhere, totals included.
pub fn cluster_some(
    index: &MapIndex,
    zoom: f64,
    bbox: &Bbox,
    state_of: impl Fn(usize) -> MapState,
    include: impl Fn(usize) -> bool,
) -> Result<Grid, GridError> {
    if !zoom.is_finite() || !(0.0..=MAX_ZOOM).contains(&zoom) {
        return Err(GridError::Zoom(zoom));
    }
    // In range 0..=24 by the check above.
    let level = zoom.floor() as u8;
    let side = CELLS_AT_ZERO << level; // cells per side of the world
    let n = side as f64;
    let cell_of = |v: f64| ((v * n) as u64).min(side - 1);
    let (x0, y0) = mercator(bbox.west, bbox.north);
    let (x1, y1) = mercator(bbox.east, bbox.south);
    let (cx0, cx1, cy0, cy1) = (cell_of(x0), cell_of(x1), cell_of(y0), cell_of(y1));
    let cols = cx1 - cx0 + 1;
    let rows = cy1 - cy0 + 1;
    let cells = cols * rows;
    if cells > MAX_CELLS {
        return Err(GridError::TooManyCells { cells, level });
    }
    let (west, north) = unmercator(cx0 as f64 / n, cy0 as f64 / n);
    let (east, south) = unmercator((cx1 + 1) as f64 / n, (cy1 + 1) as f64 / n);
    let covered = Bbox {
        west,
        south,
        east,
        north,
    };
    let clustered = level <= MAX_CLUSTER_LEVEL;

    let mut totals = [0usize; 4];
    let mut in_view = 0usize;
    let mut singles = Vec::new();
    // Cell (column, row) of the box → index in `accs`, u32::MAX when empty.
    let mut slots: Vec<u32> = if clustered {
        vec![u32::MAX; cells as usize]
    } else {
        Vec::new()
    };
    let mut accs: Vec<Acc> = Vec::new();
    for i in 0..index.len() {
        if !include(i) {
            continue;
        }
        let state = state_of(i);
        totals[state as usize] += 1;
        let (cx, cy) = (cell_of(index.x[i]), cell_of(index.y[i]));
        if cx < cx0 || cx > cx1 || cy < cy0 || cy > cy1 {
            continue;
        }
        in_view += 1;
        if !clustered {
            singles.push(i as u32);
            continue;
        }
        let slot = ((cy - cy0) * cols + (cx - cx0)) as usize;
        let (lon, lat) = (index.lon[i], index.lat[i]);
        match slots[slot] {
            u32::MAX => {
                slots[slot] = accs.len() as u32;
                let mut by_state = [0; 4];
                by_state[state as usize] = 1;
                accs.push(Acc {
                    count: 1,
                    first: i as u32,
                    by_state,
                    sum_lon: lon,
                    sum_lat: lat,
                    west: lon,
                    south: lat,
                    east: lon,
                    north: lat,
                });
            }
            k => {
                let a = &mut accs[k as usize];
                a.count += 1;
                a.by_state[state as usize] += 1;
                a.sum_lon += lon;
                a.sum_lat += lat;
                a.west = a.west.min(lon);
                a.east = a.east.max(lon);
                a.south = a.south.min(lat);
                a.north = a.north.max(lat);
            }
        }
    }
    let mut clusters = Vec::new();
    for a in accs {
        if a.count == 1 {
            singles.push(a.first);
        } else {
            let c = f64::from(a.count);
            clusters.push(Cluster {
                count: a.count,
                by_state: a.by_state,
                lon: a.sum_lon / c,
                lat: a.sum_lat / c,
                west: a.west,
                south: a.south,
                east: a.east,
                north: a.north,
            });
        }
    }
    Ok(Grid {
        level,
        clustered,
        cell_px: WORLD_PX / CELLS_AT_ZERO as f64,
        covered,
        clusters,
        singles,
        in_view,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dijon() -> Bbox {
        Bbox::new(4.9, 47.2, 5.2, 47.45).expect("valid box")
    }

    /// Devices on a regular lattice around Dijon, plus `extra`.
    fn lattice(extra: &[(f64, f64)]) -> MapIndex {
        let mut pts = Vec::new();
        for i in 0..40 {
            for j in 0..30 {
                pts.push((4.92 + f64::from(i) * 0.007, 47.22 + f64::from(j) * 0.007));
            }
        }
        pts.extend_from_slice(extra);
        MapIndex::new(pts)
    }

    fn normal(_: usize) -> MapState {
        MapState::Normal
    }

    fn placed(g: &Grid) -> u64 {
        g.clusters.iter().map(|c| u64::from(c.count)).sum::<u64>() + g.singles.len() as u64
    }

    #[test]
    fn mercator_round_trips() {
        for (lon, lat) in [(0.0, 0.0), (5.04, 47.32), (-179.9, -80.0), (179.9, 85.0)] {
            let (x, y) = mercator(lon, lat);
            let (lon2, lat2) = unmercator(x, y);
            assert!(
                (lon - lon2).abs() < 1e-9 && (lat - lat2).abs() < 1e-9,
                "{lon},{lat}"
            );
        }
        assert_eq!(mercator(-180.0, MAX_LAT), (0.0, 0.0));
        let (x, y) = mercator(0.0, 0.0);
        assert!((x - 0.5).abs() < 1e-12 && (y - 0.5).abs() < 1e-12);
    }

    #[test]
    fn every_device_of_the_box_is_counted_once() {
        let ix = lattice(&[(2.35, 48.85)]); // Paris: outside the box
        let g = cluster(&ix, 12.0, &dijon(), normal).expect("grid");
        assert!(g.clustered);
        assert_eq!(g.in_view, 1200);
        assert_eq!(placed(&g), 1200);
        assert_eq!(g.totals, [1201, 0, 0, 0]);
        // Each device index appears once among the singles.
        let mut s = g.singles.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), g.singles.len());
        assert!(g.clusters.len() > 1, "a zoom-12 view is several cells");
    }

    #[test]
    fn the_box_filters_by_whole_cells() {
        let ix = lattice(&[]);
        // A box around the lattice's western third only.
        let west = Bbox::new(4.91, 47.21, 5.0, 47.44).expect("box");
        let g = cluster(&ix, 14.0, &west, normal).expect("grid");
        assert!(g.in_view > 0 && g.in_view < 1200, "{}", g.in_view);
        // Whole cells: the covered box contains the asked one, and every device inside the
        // covered box is counted.
        let c = g.covered;
        assert!(c.west <= 4.91 && c.east >= 5.0 && c.south <= 47.21 && c.north >= 47.44);
        let inside = (0..ix.len())
            .filter(|&i| {
                let (lon, lat) = ix.position(i).expect("device");
                lon >= c.west && lon < c.east && lat > c.south && lat <= c.north
            })
            .count();
        assert_eq!(g.in_view, inside);
        // Nothing east of the box is counted: a box far away sees nothing.
        let far = Bbox::new(6.0, 47.0, 6.1, 47.1).expect("box");
        let g = cluster(&ix, 14.0, &far, normal).expect("grid");
        assert_eq!((g.in_view, g.clusters.len(), g.singles.len()), (0, 0, 0));
    }

    #[test]
    fn a_cell_halves_when_the_zoom_grows_by_one() {
        let ix = lattice(&[]);
        let g10 = cluster(&ix, 10.0, &dijon(), normal).expect("grid");
        let g11 = cluster(&ix, 11.0, &dijon(), normal).expect("grid");
        // A box inside one cell covers exactly that cell: half as wide one level up.
        let tiny = Bbox::new(5.0, 47.3, 5.00001, 47.30001).expect("box");
        let width = |z: f64| {
            let g = cluster(&ix, z, &tiny, normal).expect("grid");
            mercator(g.covered.east, 0.0).0 - mercator(g.covered.west, 0.0).0
        };
        for z in [3.0, 10.0, 14.0] {
            assert!((width(z) / width(z + 1.0) - 2.0).abs() < 1e-6, "zoom {z}");
        }
        assert!(
            (width(0.0) - 0.1).abs() < 1e-9,
            "ten cells per side at zoom 0"
        );
        assert!(g11.clusters.len() + g11.singles.len() > g10.clusters.len() + g10.singles.len());
        // A fractional zoom uses the level below; cell_px is the on-screen size at the level.
        let g = cluster(&ix, 10.7, &dijon(), normal).expect("grid");
        assert_eq!(g.level, 10);
        assert!((g.cell_px - 51.2).abs() < 1e-9);
    }

    #[test]
    fn a_device_in_alarm_shows_in_its_cluster() {
        let ix = lattice(&[]);
        let g = cluster(&ix, 10.0, &dijon(), |i| {
            if i == 617 {
                MapState::Alarm
            } else if i % 100 == 3 {
                MapState::Silent
            } else {
                MapState::Normal
            }
        })
        .expect("grid");
        let (lon, lat) = ix.position(617).expect("device");
        let home = g
            .clusters
            .iter()
            .find(|c| lon >= c.west && lon <= c.east && lat >= c.south && lat <= c.north)
            .expect("the device is in a cluster at zoom 10");
        assert!(home.by_state[MapState::Alarm as usize] >= 1);
        assert_eq!(home.worst(), MapState::Alarm);
        assert_eq!(g.totals[MapState::Alarm as usize], 1);
        assert_eq!(g.totals[MapState::Silent as usize], 12);
        let alarms: u32 = g.clusters.iter().map(|c| c.by_state[1]).sum();
        assert_eq!(alarms, 1);
    }

    #[test]
    fn worst_state_ranks_alarm_silent_quarantined_normal() {
        let mut c = Cluster {
            count: 3,
            by_state: [3, 0, 0, 0],
            lon: 0.0,
            lat: 0.0,
            west: 0.0,
            south: 0.0,
            east: 0.0,
            north: 0.0,
        };
        assert_eq!(c.worst(), MapState::Normal);
        c.by_state = [2, 0, 0, 1];
        assert_eq!(c.worst(), MapState::Quarantined);
        c.by_state = [1, 0, 1, 1];
        assert_eq!(c.worst(), MapState::Silent);
        c.by_state = [0, 1, 1, 1];
        assert_eq!(c.worst(), MapState::Alarm);
    }

    #[test]
    fn the_alarm_share_is_the_proportion_of_devices_in_alarm() {
        let mut c = Cluster {
            count: 422,
            by_state: [420, 1, 1, 0],
            lon: 0.0,
            lat: 0.0,
            west: 0.0,
            south: 0.0,
            east: 0.0,
            north: 0.0,
        };
        assert!((c.alarm_share() - 1.0 / 422.0).abs() < 1e-12);
        assert_eq!(
            c.worst(),
            MapState::Alarm,
            "the worst state alone would paint it red"
        );
        c.by_state = [211, 211, 0, 0];
        assert!((c.alarm_share() - 0.5).abs() < 1e-12);
        c.by_state = [0, 0, 422, 0];
        assert_eq!(c.alarm_share(), 0.0);
    }

    #[test]
    fn above_the_cluster_levels_every_device_is_alone() {
        let ix = MapIndex::new([(5.0, 47.3), (5.00001, 47.30001), (5.0001, 47.3)]);
        let b = Bbox::new(4.999, 47.299, 5.001, 47.301).expect("box");
        let g = cluster(&ix, 15.0, &b, normal).expect("grid");
        assert!(g.clustered);
        assert_eq!(g.clusters.len(), 1);
        assert_eq!(g.clusters[0].count, 3);
        let c = &g.clusters[0];
        assert!(
            (c.lon - (5.0 + 5.00001 + 5.0001) / 3.0).abs() < 1e-12,
            "mean longitude"
        );
        let g = cluster(&ix, 16.0, &b, normal).expect("grid");
        assert!(!g.clustered);
        assert!(g.clusters.is_empty());
        assert_eq!(g.singles, vec![0, 1, 2]);
    }

    #[test]
    fn bad_queries_are_refused_precisely() {
        let ix = lattice(&[]);
        assert_eq!(
            cluster(&ix, -1.0, &dijon(), normal),
            Err(GridError::Zoom(-1.0))
        );
        assert!(matches!(
            cluster(&ix, f64::NAN, &dijon(), normal),
            Err(GridError::Zoom(_))
        ));
        assert_eq!(
            Bbox::new(5.2, 47.2, 4.9, 47.45),
            Err(GridError::WestEast {
                west: 5.2,
                east: 4.9
            })
        );
        assert!(matches!(
            Bbox::new(4.9, 47.5, 5.2, 47.4),
            Err(GridError::SouthNorth { .. })
        ));
        assert!(matches!(
            Bbox::new(4.9, 47.2, 181.0, 47.4),
            Err(GridError::OutOfRange { field: "east", .. })
        ));
        let world = Bbox::new(-180.0, -85.0, 180.0, 85.0).expect("box");
        assert!(matches!(
            cluster(&ix, 12.0, &world, normal),
            Err(GridError::TooManyCells { level: 12, .. })
        ));
        // The whole world at zoom 0 is fine.
        let g = cluster(&ix, 0.0, &world, normal).expect("grid");
        assert_eq!(g.in_view, 1200);
    }

    proptest! {
        /// Counts are conserved: at any zoom and box, the clusters' counts, the singles and
        /// the per-state counts add up to the devices in view; a box covering the world
        /// sees every device.
        #[test]
        fn counts_are_conserved(
            pts in proptest::collection::vec((-179.0f64..179.0, -84.0f64..84.0), 1..300),
            states in proptest::collection::vec(0usize..4, 300),
            zoom in 0.0f64..=3.0,
        ) {
            let ix = MapIndex::new(pts.iter().copied());
            let st = |i: usize| MapState::ALL[states[i]];
            let world = Bbox::new(-180.0, -MAX_LAT, 180.0, MAX_LAT).expect("box");
            let g = cluster(&ix, zoom, &world, st).expect("grid");
            prop_assert_eq!(g.in_view, pts.len());
            prop_assert_eq!(placed(&g), pts.len() as u64);
            for c in &g.clusters {
                prop_assert_eq!(c.by_state.iter().sum::<u32>(), c.count);
                prop_assert!(c.count >= 2);
                prop_assert!(c.west <= c.lon && c.lon <= c.east && c.south <= c.lat && c.lat <= c.north);
            }
            let by_state: u32 = g.clusters.iter().map(|c| c.by_state[1]).sum::<u32>()
                + g.singles.iter().filter(|&&i| states[i as usize] == 1).count() as u32;
            prop_assert_eq!(by_state as usize, g.totals[1]);
        }

        /// Nested levels: a cluster of level L+1 never straddles two cells of level L, so
        /// zooming in only splits clusters. Checked as: the number of groups never drops.
        #[test]
        fn zooming_in_only_splits(
            pts in proptest::collection::vec((4.8f64..5.3, 47.1f64..47.5), 1..300),
            level in 6u8..14,
        ) {
            let ix = MapIndex::new(pts.iter().copied());
            let b = Bbox::new(4.8, 47.1, 5.3, 47.5).expect("box");
            let a = cluster(&ix, f64::from(level), &b, normal).expect("grid");
            let z = cluster(&ix, f64::from(level + 1), &b, normal).expect("grid");
            prop_assert!(z.clusters.len() + z.singles.len() >= a.clusters.len() + a.singles.len());
            prop_assert_eq!(placed(&a), placed(&z));
        }
    }
}
