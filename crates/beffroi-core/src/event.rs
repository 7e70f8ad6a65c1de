//! Declared events (festival, match): a perimeter, a time window, capacity thresholds on
//! the people counters inside the perimeter, and temporary rules in force only during the
//! window. The status is derived from the clock, never stored.

use std::sync::Arc;

use crate::geo::Point;
use crate::time::Timestamp;

/// Capacity thresholds on the aggregate count of the perimeter's people counters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Capacity {
    pub warning: f64,
    pub critical: f64,
}

/// Where an event was declared: the deployment's `events.toml` or the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOrigin {
    File,
    Api,
}

impl EventOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            EventOrigin::File => "file",
            EventOrigin::Api => "api",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(EventOrigin::File),
            "api" => Some(EventOrigin::Api),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventStatus {
    Scheduled,
    Active,
    Ended,
    Cancelled,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Scheduled => "scheduled",
            EventStatus::Active => "active",
            EventStatus::Ended => "ended",
            EventStatus::Cancelled => "cancelled",
        }
    }
}

/// A declared event. `perimeter` is the outer ring of a polygon (WGS84, closed or not).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub perimeter: Vec<Point>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub capacity: Option<Capacity>,
    /// Temporary rules, in the rule language (TOML text); empty when none.
    pub rules: Arc<str>,
    pub origin: EventOrigin,
    pub created_by: Arc<str>,
    pub cancelled_at: Option<Timestamp>,
    pub cancelled_by: Option<Arc<str>>,
}

impl Event {
    /// Active on `[starts_at, ends_at)`, unless cancelled.
    pub fn status(&self, now: Timestamp) -> EventStatus {
        if self.cancelled_at.is_some() {
            EventStatus::Cancelled
        } else if now < self.starts_at {
            EventStatus::Scheduled
        } else if now < self.ends_at {
            EventStatus::Active
        } else {
            EventStatus::Ended
        }
    }

    pub fn contains(&self, p: Point) -> bool {
        point_in_ring(p, &self.perimeter)
    }
}

/// Why an event declaration is invalid (the edges turn this into a file:line:field error
/// or an API error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventInvalid {
    pub field: &'static str,
    pub message: String,
}

/// Checks what every event must satisfy, wherever it was declared.
pub fn validate(e: &Event) -> Result<(), EventInvalid> {
    let bad = |field, message: &str| {
        Err(EventInvalid {
            field,
            message: message.to_string(),
        })
    };
    if e.id.is_empty()
        || e.id.len() > 64
        || !e
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return bad(
            "id",
            "ids use 1 to 64 lowercase letters, digits, '-' and '_'",
        );
    }
    if e.name.trim().is_empty() {
        return bad("name", "must not be empty");
    }
    let ring = open_ring(&e.perimeter);
    if ring.len() < 3 {
        return bad(
            "perimeter",
            "a polygon needs at least three distinct vertices",
        );
    }
    if !ring.iter().all(Point::is_valid) {
        return bad("perimeter", "coordinates must be WGS84 [lon, lat]");
    }
    if e.ends_at <= e.starts_at {
        return bad("ends_at", "must be after starts_at");
    }
    if let Some(c) = e.capacity {
        if !(c.warning.is_finite() && c.warning > 0.0) {
            return bad("capacity.warning", "must be a positive number");
        }
        if !(c.critical.is_finite() && c.critical >= c.warning) {
            return bad(
                "capacity.critical",
                "must be at least the warning threshold",
            );
        }
    }
    Ok(())
}

fn open_ring(ring: &[Point]) -> &[Point] {
    match ring {
        [first, .., last] if first == last => &ring[..ring.len() - 1],
        _ => ring,
    }
}

/// Whether `p` lies inside the polygon ring (even-odd rule, planar in degrees: exact
/// enough at the scale of an event ground). Points on an edge may fall either side.
pub fn point_in_ring(p: Point, ring: &[Point]) -> bool {
    let ring = open_ring(ring);
    if ring.len() < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = ring.len() - 1;
    for i in 0..ring.len() {
        let (a, b) = (ring[i], ring[j]);
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let x = (b.lon - a.lon) * (p.lat - a.lat) / (b.lat - a.lat) + a.lon;
            if p.lon < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Vec<Point> {
        vec![
            Point::new(0.0, 0.0),
            Point::new(2.0, 0.0),
            Point::new(2.0, 2.0),
            Point::new(0.0, 2.0),
            Point::new(0.0, 0.0),
        ]
    }

    fn event() -> Event {
        Event {
            id: "fete".into(),
            name: "Fête".into(),
            perimeter: square(),
            starts_at: Timestamp(1000),
            ends_at: Timestamp(2000),
            capacity: Some(Capacity {
                warning: 10.0,
                critical: 20.0,
            }),
            rules: "".into(),
            origin: EventOrigin::Api,
            created_by: "admin".into(),
            cancelled_at: None,
            cancelled_by: None,
        }
    }

    #[test]
    fn point_in_polygon() {
        let sq = square();
        assert!(point_in_ring(Point::new(1.0, 1.0), &sq));
        assert!(!point_in_ring(Point::new(3.0, 1.0), &sq));
        assert!(!point_in_ring(Point::new(1.0, -0.1), &sq));
        // A concave L shape: the notch is outside.
        let l = [
            Point::new(0.0, 0.0),
            Point::new(2.0, 0.0),
            Point::new(2.0, 1.0),
            Point::new(1.0, 1.0),
            Point::new(1.0, 2.0),
            Point::new(0.0, 2.0),
        ];
        assert!(point_in_ring(Point::new(0.5, 1.5), &l));
        assert!(!point_in_ring(Point::new(1.5, 1.5), &l));
        assert!(!point_in_ring(Point::new(0.5, 0.5), &l[..2]));
    }

    #[test]
    fn status_follows_the_clock_and_cancellation() {
        let mut e = event();
        assert_eq!(e.status(Timestamp(999)), EventStatus::Scheduled);
        assert_eq!(e.status(Timestamp(1000)), EventStatus::Active);
        assert_eq!(e.status(Timestamp(1999)), EventStatus::Active);
        assert_eq!(e.status(Timestamp(2000)), EventStatus::Ended);
        e.cancelled_at = Some(Timestamp(1500));
        assert_eq!(e.status(Timestamp(1200)), EventStatus::Cancelled);
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(validate(&event()), Ok(()));
        let mut e = event();
        e.ends_at = e.starts_at;
        assert_eq!(validate(&e).map_err(|x| x.field), Err("ends_at"));
        let mut e = event();
        e.perimeter.truncate(2);
        e.perimeter.push(Point::new(0.0, 0.0));
        assert_eq!(validate(&e).map_err(|x| x.field), Err("perimeter"));
        let mut e = event();
        e.capacity = Some(Capacity {
            warning: 30.0,
            critical: 20.0,
        });
        assert_eq!(validate(&e).map_err(|x| x.field), Err("capacity.critical"));
        let mut e = event();
        e.id = "Bad Id".into();
        assert_eq!(validate(&e).map_err(|x| x.field), Err("id"));
    }
}
