//! Events of the live stream (SSE), published only after the change they describe is
//! durable.

use std::sync::Arc;

use beffroi_core::crisis::Crisis;
use beffroi_core::{DeviceIdx, IncidentChange, Timestamp, Unit};

/// A device's operational state as shown on the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceState {
    Normal,
    /// A rule raised a condition on it.
    Alarm,
    /// It stopped reporting (an absence rule fired).
    Silent,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Normal => "normal",
            DeviceState::Alarm => "alarm",
            DeviceState::Silent => "silent",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceChange {
    pub device: DeviceIdx,
    pub state: DeviceState,
    pub at: Timestamp,
}

#[derive(Clone, Debug)]
pub enum LiveEvent {
    Incident(Arc<IncidentChange>),
    Device(DeviceChange),
    Unit(Arc<Unit>),
    Crisis(Arc<Crisis>),
    /// A situation opened or changed (readers see it through its view).
    Situation(Arc<beffroi_core::SituationChange>),
    /// An event was declared or cancelled, changed status or occupancy.
    Event(Arc<crate::events::EventView>),
}
