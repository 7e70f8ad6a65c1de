//! A validated observation: one value of one field of one known device at one event time.

use std::sync::Arc;

use crate::territory::{DeviceIdx, FieldIdx};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Bool(bool),
    Text(Arc<str>),
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// Produced only by validation against the territory (`beffroi-wire`): the device exists,
/// the field belongs to its kind, the value has the field's type and lies in its range.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub device: DeviceIdx,
    pub field: FieldIdx,
    pub value: Value,
    /// When the sensor measured it (event time).
    pub time: Timestamp,
    /// What its origin was proven to be.
    pub trust: crate::security::Trust,
}
