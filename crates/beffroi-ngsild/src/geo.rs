//! GeoJSON geometries (Point, Polygon) and the geo-query (`georel`, `geometry`,
//! `coordinates`, `geoproperty`) of ETSI GS CIM 009 clause 4.10.
//!
//! Distances are great-circle distances on a sphere of the WGS84 mean radius
//! (haversine). Polygon tests (inside, edges crossing) are made in the longitude /
//! latitude plane: exact enough at the scale of a town, wrong across the antimeridian
//! or around a pole, which no territory here spans.

use serde_json::{Value, json};

use crate::error::NgsiError;

/// The mean radius of the WGS84 ellipsoid, in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// The most positions in one polygon, all rings together.
pub const MAX_POSITIONS: usize = 1000;
/// The most rings in one polygon (the outer one and its holes).
pub const MAX_RINGS: usize = 16;

/// A WGS84 position, longitude then latitude in degrees (GeoJSON order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    lon: f64,
    lat: f64,
}

impl Position {
    /// A position, or `None` when a coordinate is not finite or out of range.
    pub fn new(lon: f64, lat: f64) -> Option<Position> {
        if lon.is_finite()
            && lat.is_finite()
            && (-180.0..=180.0).contains(&lon)
            && (-90.0..=90.0).contains(&lat)
        {
            Some(Position { lon, lat })
        } else {
            None
        }
    }

    pub fn lon(self) -> f64 {
        self.lon
    }

    pub fn lat(self) -> f64 {
        self.lat
    }

    fn json(self) -> Value {
        json!([self.lon, self.lat])
    }
}

/// A GeoJSON geometry this crate writes and queries with.
#[derive(Clone, Debug, PartialEq)]
pub enum Geometry {
    Point(Position),
    /// Closed linear rings: the outer boundary, then holes. Each ring has at least four
    /// positions and ends where it starts.
    Polygon(Vec<Vec<Position>>),
}

impl Geometry {
    /// A polygon from its rings, checked (closed rings of at least four positions, at
    /// most [`MAX_RINGS`] rings and [`MAX_POSITIONS`] positions).
    pub fn polygon(rings: Vec<Vec<Position>>) -> Result<Geometry, String> {
        if rings.is_empty() {
            return Err("a polygon needs at least one ring".into());
        }
        if rings.len() > MAX_RINGS {
            return Err(format!("a polygon has at most {MAX_RINGS} rings"));
        }
        if rings.iter().map(Vec::len).sum::<usize>() > MAX_POSITIONS {
            return Err(format!("a polygon has at most {MAX_POSITIONS} positions"));
        }
        for ring in &rings {
            if ring.len() < 4 {
                return Err("a ring has at least four positions".into());
            }
            if ring.first() != ring.last() {
                return Err("a ring ends at the position it starts from".into());
            }
        }
        Ok(Geometry::Polygon(rings))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Geometry::Point(_) => "Point",
            Geometry::Polygon(_) => "Polygon",
        }
    }

    /// The GeoJSON object: `{"type": "Point", "coordinates": [lon, lat]}`.
    pub fn to_json(&self) -> Value {
        match self {
            Geometry::Point(p) => json!({ "type": "Point", "coordinates": p.json() }),
            Geometry::Polygon(rings) => {
                let coordinates: Vec<Value> = rings
                    .iter()
                    .map(|ring| Value::Array(ring.iter().map(|p| p.json()).collect()))
                    .collect();
                json!({ "type": "Polygon", "coordinates": coordinates })
            }
        }
    }

    /// Reads GeoJSON coordinates for a geometry type (`Point` or `Polygon`); `name` is
    /// the parameter or member the error names.
    pub fn from_coordinates(
        kind: &str,
        coordinates: &Value,
        name: &str,
    ) -> Result<Geometry, NgsiError> {
        match kind {
            "Point" => position(coordinates).map(Geometry::Point).ok_or_else(|| {
                NgsiError::bad_data(name, "a Point is [longitude, latitude] in degrees")
            }),
            "Polygon" => {
                let rings = coordinates
                    .as_array()
                    .ok_or_else(|| NgsiError::bad_data(name, "a Polygon is an array of rings"))?;
                if rings.len() > MAX_RINGS {
                    return Err(NgsiError::too_complex(
                        name,
                        format!("at most {MAX_RINGS} rings"),
                    ));
                }
                let mut read = Vec::with_capacity(rings.len());
                let mut total = 0usize;
                for ring in rings {
                    let ring = ring.as_array().ok_or_else(|| {
                        NgsiError::bad_data(name, "a ring is an array of positions")
                    })?;
                    total += ring.len();
                    if total > MAX_POSITIONS {
                        return Err(NgsiError::too_complex(
                            name,
                            format!("at most {MAX_POSITIONS} positions"),
                        ));
                    }
                    let positions = ring
                        .iter()
                        .map(position)
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            NgsiError::bad_data(
                                name,
                                "a position is [longitude, latitude] in degrees",
                            )
                        })?;
                    read.push(positions);
                }
                Geometry::polygon(read).map_err(|e| NgsiError::bad_data(name, e))
            }
            "LineString" | "MultiPoint" | "MultiLineString" | "MultiPolygon" => {
                Err(NgsiError::unsupported(
                    name,
                    format!(
                        "{kind} is valid GeoJSON but this server queries with Point and Polygon only"
                    ),
                ))
            }
            other => Err(NgsiError::bad_data(
                name,
                format!("unknown geometry {other:?}"),
            )),
        }
    }

    /// Reads a GeoJSON geometry object (`{"type": …, "coordinates": …}`).
    pub fn from_json(value: &Value, name: &str) -> Result<Geometry, NgsiError> {
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| NgsiError::bad_data(name, "a geometry has a \"type\""))?;
        let coordinates = value
            .get("coordinates")
            .ok_or_else(|| NgsiError::bad_data(name, "a geometry has \"coordinates\""))?;
        Geometry::from_coordinates(kind, coordinates, name)
    }
}

fn position(value: &Value) -> Option<Position> {
    match value.as_array()?.as_slice() {
        [lon, lat] => Position::new(lon.as_f64()?, lat.as_f64()?),
        _ => None,
    }
}

/// The great-circle distance between two positions, in metres (haversine).
pub fn haversine_m(a: Position, b: Position) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The relation a geo-query asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GeoRel {
    /// Within `max` metres of the query point (`near;maxDistance==…`).
    NearMax(f64),
    /// At least `min` metres from the query point (`near;minDistance==…`).
    NearMin(f64),
    Within,
    Intersects,
    Disjoint,
    Equals,
}

impl GeoRel {
    /// Reads a `georel` value: `near;maxDistance==2000`, `near;minDistance==10`,
    /// `within`, `intersects`, `disjoint`, `equals`. (`contains` and `overlaps` are
    /// refused as not supported.)
    pub fn parse(text: &str, name: &str) -> Result<GeoRel, NgsiError> {
        if let Some(rest) = text.strip_prefix("near;") {
            let (key, number) = rest.split_once("==").ok_or_else(|| {
                NgsiError::bad_data(
                    name,
                    "near takes maxDistance==<metres> or minDistance==<metres>",
                )
            })?;
            let metres: f64 = number
                .parse()
                .ok()
                .filter(|m: &f64| m.is_finite() && *m >= 0.0)
                .ok_or_else(|| {
                    NgsiError::bad_data(name, format!("{number:?} is not a distance in metres"))
                })?;
            return match key {
                "maxDistance" => Ok(GeoRel::NearMax(metres)),
                "minDistance" => Ok(GeoRel::NearMin(metres)),
                other => Err(NgsiError::bad_data(
                    name,
                    format!("unknown near modifier {other:?}"),
                )),
            };
        }
        match text {
            "within" => Ok(GeoRel::Within),
            "intersects" => Ok(GeoRel::Intersects),
            "disjoint" => Ok(GeoRel::Disjoint),
            "equals" => Ok(GeoRel::Equals),
            "near" => Err(NgsiError::bad_data(
                name,
                "near needs ;maxDistance==<metres> or ;minDistance==<metres>",
            )),
            "contains" | "overlaps" => Err(NgsiError::unsupported(
                name,
                format!("{text} is not supported"),
            )),
            other => Err(NgsiError::bad_data(
                name,
                format!("unknown georel {other:?}"),
            )),
        }
    }

    /// The `georel` text.
    pub fn to_text(self) -> String {
        match self {
            GeoRel::NearMax(m) => format!("near;maxDistance=={m}"),
            GeoRel::NearMin(m) => format!("near;minDistance=={m}"),
            GeoRel::Within => "within".into(),
            GeoRel::Intersects => "intersects".into(),
            GeoRel::Disjoint => "disjoint".into(),
            GeoRel::Equals => "equals".into(),
        }
    }
}

/// A geo-query: an entity matches when its GeoProperty `geoproperty` stands in the
/// relation `georel` to `geometry`.
#[derive(Clone, Debug, PartialEq)]
pub struct GeoQuery {
    pub georel: GeoRel,
    pub geometry: Geometry,
    /// The GeoProperty tested; `location` by default.
    pub geoproperty: String,
}

impl GeoQuery {
    /// A geo-query, checked: `near` needs a Point, `within` a Polygon.
    pub fn new(
        georel: GeoRel,
        geometry: Geometry,
        geoproperty: String,
        name: &str,
    ) -> Result<GeoQuery, NgsiError> {
        match (georel, &geometry) {
            (GeoRel::NearMax(_) | GeoRel::NearMin(_), Geometry::Polygon(_)) => {
                Err(NgsiError::bad_data(name, "near is measured from a Point"))
            }
            (GeoRel::Within, Geometry::Point(_)) => {
                Err(NgsiError::bad_data(name, "within needs a Polygon"))
            }
            _ => Ok(GeoQuery {
                georel,
                geometry,
                geoproperty,
            }),
        }
    }

    /// Whether an entity's geometry stands in the relation to the query's geometry.
    pub fn holds_for(&self, target: &Geometry) -> bool {
        relates(target, self.georel, &self.geometry)
    }

    /// The `geoQ` object of a subscription.
    pub fn to_json(&self) -> Value {
        json!({
            "georel": self.georel.to_text(),
            "geometry": self.geometry.type_name(),
            "coordinates": self.geometry.to_json()["coordinates"].clone(),
            "geoproperty": self.geoproperty,
        })
    }
}

fn relates(target: &Geometry, rel: GeoRel, query: &Geometry) -> bool {
    match rel {
        GeoRel::NearMax(max) => distance_m(target, query).is_some_and(|d| d <= max),
        GeoRel::NearMin(min) => distance_m(target, query).is_some_and(|d| d >= min),
        GeoRel::Within => match (target, query) {
            (Geometry::Point(p), Geometry::Polygon(rings)) => point_in_polygon(*p, rings),
            (Geometry::Polygon(inner), Geometry::Polygon(outer)) => polygon_within(inner, outer),
            _ => false,
        },
        GeoRel::Intersects => intersects(target, query),
        GeoRel::Disjoint => !intersects(target, query),
        GeoRel::Equals => target == query,
    }
}

/// The distance from a Point entity to the query point; `None` for polygons, which
/// `near` does not measure.
fn distance_m(target: &Geometry, query: &Geometry) -> Option<f64> {
    match (target, query) {
        (Geometry::Point(a), Geometry::Point(b)) => Some(haversine_m(*a, *b)),
        _ => None,
    }
}

fn intersects(a: &Geometry, b: &Geometry) -> bool {
    match (a, b) {
        (Geometry::Point(p), Geometry::Point(q)) => p == q,
        (Geometry::Point(p), Geometry::Polygon(rings))
        | (Geometry::Polygon(rings), Geometry::Point(p)) => point_in_polygon(*p, rings),
        (Geometry::Polygon(r1), Geometry::Polygon(r2)) => {
            edges(r1).any(|e1| edges(r2).any(|e2| segments_cross(e1, e2)))
                || r1[0].first().is_some_and(|p| point_in_polygon(*p, r2))
                || r2[0].first().is_some_and(|p| point_in_polygon(*p, r1))
        }
    }
}

fn polygon_within(inner: &[Vec<Position>], outer: &[Vec<Position>]) -> bool {
    inner[0].iter().all(|p| point_in_polygon(*p, outer))
        && !edges(&inner[..1]).any(|e1| edges(outer).any(|e2| segments_cross_properly(e1, e2)))
}

type Segment = (Position, Position);

fn edges(rings: &[Vec<Position>]) -> impl Iterator<Item = Segment> + '_ {
    rings
        .iter()
        .flat_map(|ring| ring.windows(2).map(|w| (w[0], w[1])))
}

/// Inside the outer ring (boundary included) and not strictly inside a hole.
fn point_in_polygon(p: Position, rings: &[Vec<Position>]) -> bool {
    let Some((outer, holes)) = rings.split_first() else {
        return false;
    };
    if on_ring(p, outer) {
        return true;
    }
    if !ring_contains(p, outer) {
        return false;
    }
    !holes.iter().any(|h| ring_contains(p, h) && !on_ring(p, h))
}

fn on_ring(p: Position, ring: &[Position]) -> bool {
    ring.windows(2).any(|w| on_segment(p, (w[0], w[1])))
}

/// Even-odd ray casting.
fn ring_contains(p: Position, ring: &[Position]) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let x = a.lon + (p.lat - a.lat) * (b.lon - a.lon) / (b.lat - a.lat);
            if p.lon < x {
                inside = !inside;
            }
        }
    }
    inside
}

fn cross(o: Position, a: Position, b: Position) -> f64 {
    (a.lon - o.lon) * (b.lat - o.lat) - (a.lat - o.lat) * (b.lon - o.lon)
}

fn on_segment(p: Position, (a, b): Segment) -> bool {
    cross(a, b, p) == 0.0
        && p.lon >= a.lon.min(b.lon)
        && p.lon <= a.lon.max(b.lon)
        && p.lat >= a.lat.min(b.lat)
        && p.lat <= a.lat.max(b.lat)
}

/// Segments that share at least one point.
fn segments_cross(s: Segment, t: Segment) -> bool {
    segments_cross_properly(s, t)
        || on_segment(t.0, s)
        || on_segment(t.1, s)
        || on_segment(s.0, t)
        || on_segment(s.1, t)
}

/// Segments whose interiors cross at a single point.
fn segments_cross_properly((a, b): Segment, (c, d): Segment) -> bool {
    let d1 = cross(c, d, a);
    let d2 = cross(c, d, b);
    let d3 = cross(a, b, c);
    let d4 = cross(a, b, d);
    ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lon: f64, lat: f64) -> Position {
        Position::new(lon, lat).expect("valid position")
    }

    fn square(x0: f64, y0: f64, side: f64) -> Geometry {
        Geometry::polygon(vec![vec![
            p(x0, y0),
            p(x0 + side, y0),
            p(x0 + side, y0 + side),
            p(x0, y0 + side),
            p(x0, y0),
        ]])
        .expect("valid square")
    }

    #[test]
    fn haversine_paris_lyon() {
        let d = haversine_m(p(2.3522, 48.8566), p(4.8357, 45.7640));
        assert!((d - 392_000.0).abs() < 2_000.0, "{d}");
    }

    #[test]
    fn point_in_square_with_hole() {
        let Geometry::Polygon(mut rings) = square(0.0, 0.0, 10.0) else {
            unreachable!()
        };
        let Geometry::Polygon(hole) = square(4.0, 4.0, 2.0) else {
            unreachable!()
        };
        rings.extend(hole);
        assert!(point_in_polygon(p(1.0, 1.0), &rings));
        assert!(point_in_polygon(p(0.0, 5.0), &rings), "boundary counts");
        assert!(!point_in_polygon(p(5.0, 5.0), &rings), "inside the hole");
        assert!(!point_in_polygon(p(11.0, 5.0), &rings));
    }

    #[test]
    fn relations() {
        let big = square(0.0, 0.0, 10.0);
        let small = square(2.0, 2.0, 1.0);
        let apart = square(20.0, 20.0, 1.0);
        let crossing = square(9.0, 9.0, 3.0);
        assert!(relates(&small, GeoRel::Within, &big));
        assert!(!relates(&crossing, GeoRel::Within, &big));
        assert!(relates(&crossing, GeoRel::Intersects, &big));
        assert!(relates(&apart, GeoRel::Disjoint, &big));
        assert!(relates(&Geometry::Point(p(5.0, 5.0)), GeoRel::Within, &big));
        assert!(relates(
            &big,
            GeoRel::Intersects,
            &Geometry::Point(p(5.0, 5.0))
        ));
        assert!(!relates(
            &big,
            GeoRel::NearMax(1e9),
            &Geometry::Point(p(5.0, 5.0))
        ));
    }

    #[test]
    fn georel_text() {
        assert_eq!(
            GeoRel::parse("near;maxDistance==2000", "georel"),
            Ok(GeoRel::NearMax(2000.0))
        );
        assert_eq!(
            GeoRel::parse("near;minDistance==5.5", "georel"),
            Ok(GeoRel::NearMin(5.5))
        );
        assert!(GeoRel::parse("near;maxDistance==-1", "georel").is_err());
        assert!(GeoRel::parse("near", "georel").is_err());
        assert_eq!(
            GeoRel::parse("contains", "georel").map_err(|e| e.status()),
            Err(422)
        );
    }
}
