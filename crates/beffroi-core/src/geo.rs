//! WGS84 positions and the little geometry the core needs.

/// A WGS84 position, longitude then latitude (GeoJSON order), in degrees.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Point {
    pub lon: f64,
    pub lat: f64,
}

impl Point {
    pub const fn new(lon: f64, lat: f64) -> Self {
        Point { lon, lat }
    }

    /// True when the coordinates are finite and within the WGS84 range.
    pub fn is_valid(&self) -> bool {
        self.lon.is_finite()
            && self.lat.is_finite()
            && (-180.0..=180.0).contains(&self.lon)
            && (-90.0..=90.0).contains(&self.lat)
    }

    /// Great-circle distance in metres (haversine, mean Earth radius).
    pub fn distance_m(&self, other: &Point) -> f64 {
        const R: f64 = 6_371_008.8;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * R * a.sqrt().asin()
    }
}

/// Centroid of a ring by vertex average (good enough for small polygons such as sites).
pub fn ring_centre(ring: &[Point]) -> Option<Point> {
    let pts: &[Point] = match ring {
        [] => return None,
        [first, .., last] if first == last => &ring[..ring.len() - 1],
        _ => ring,
    };
    let n = pts.len() as f64;
    let (lon, lat) = pts
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.lon, b + p.lat));
    Some(Point::new(lon / n, lat / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dijon_to_chenove_is_about_five_km() {
        let dijon = Point::new(5.0415, 47.3220);
        let chenove = Point::new(5.0053, 47.2923);
        let d = dijon.distance_m(&chenove);
        assert!((4_000.0..5_000.0).contains(&d), "{d}");
        assert_eq!(dijon.distance_m(&dijon), 0.0);
    }

    #[test]
    fn centre_ignores_closing_vertex() {
        let ring = [
            Point::new(0.0, 0.0),
            Point::new(2.0, 0.0),
            Point::new(2.0, 2.0),
            Point::new(0.0, 2.0),
            Point::new(0.0, 0.0),
        ];
        assert_eq!(ring_centre(&ring), Some(Point::new(1.0, 1.0)));
    }
}
