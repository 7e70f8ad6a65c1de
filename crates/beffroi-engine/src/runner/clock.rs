//! The engine's clocks: the wall clock and the demo's accelerated one.

use super::*;

pub(super) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Processing time of the wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that runs `speed` times faster than the wall clock from a given origin: the
/// demo plays hours of scenario in minutes.
pub struct ScaledClock {
    pub(super) origin: Timestamp,
    pub(super) wall_origin: Instant,
    pub(super) speed: f64,
}

impl ScaledClock {
    pub fn new(origin: Timestamp, speed: f64) -> Self {
        ScaledClock {
            origin,
            wall_origin: Instant::now(),
            speed: speed.max(0.001),
        }
    }
    pub fn speed(&self) -> f64 {
        self.speed
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.wall_origin.elapsed().as_secs_f64() * self.speed * 1000.0;
        self.origin.plus(beffroi_core::Duration(elapsed as i64))
    }
    fn rate(&self) -> f64 {
        self.speed
    }
}
