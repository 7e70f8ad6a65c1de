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

    /// A stable 64-bit key of the value (FNV-1a over a tagged canonical encoding), part of
    /// an observation's identity in every store: (device, field, event time, value key).
    /// A redelivered reading has the same key and is stored once; a second reading in the
    /// same millisecond with another value has another key and is kept. `-0.0` and `0.0`
    /// share a key, as do all NaNs. Never changes across versions: stored rows hold it.
    pub fn key(&self) -> i64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        fn feed(h: u64, bytes: &[u8]) -> u64 {
            bytes
                .iter()
                .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
        }
        let h = match self {
            Value::Number(n) => {
                let n = if *n == 0.0 {
                    0.0
                } else if n.is_nan() {
                    f64::NAN
                } else {
                    *n
                };
                feed(feed(OFFSET, b"n"), &n.to_bits().to_le_bytes())
            }
            Value::Bool(b) => feed(feed(OFFSET, b"b"), &[u8::from(*b)]),
            Value::Text(s) => feed(feed(OFFSET, b"t"), s.as_bytes()),
        };
        h as i64
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_key_is_stable_and_tells_values_apart() {
        // Pinned: stored rows hold these keys, a change would duplicate redelivered rows.
        assert_eq!(Value::Number(2.5).key(), Value::Number(2.5).key());
        assert_eq!(Value::Number(0.0).key(), Value::Number(-0.0).key());
        assert_eq!(Value::Bool(true).key(), 623_206_522_264_852_908);
        assert_ne!(Value::Number(2.5).key(), Value::Number(2.6).key());
        assert_ne!(Value::Bool(true).key(), Value::Bool(false).key());
        assert_ne!(Value::Text("1".into()).key(), Value::Number(1.0).key());
        assert_ne!(Value::Text("a".into()).key(), Value::Text("b".into()).key());
    }
}
