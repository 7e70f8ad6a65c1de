//! Partitions of the ingest log. Pure.
//!
//! A reading's partition is `fnv1a32(key) mod P`, where `key` is the *escaped* token (see
//! [`crate::subject::encode_token`]) of its commune or of its device ([`PartitionKey`]) and
//! `P` the partition count of the territory's stream. FNV-1a 32 is the function of the
//! server's `{{partition(P, i)}}` subject mapping, and the ingest stream applies exactly that
//! mapping on storage (see [`crate::stream`]): so the partition is computed by the server for
//! every writer, MQTT devices included, and this function predicts it (a test against a real
//! server pins the two together). It is stable across releases and machines: changing `P`
//! or the key moves readings to other partitions, which needs a drained stream.
//!
//! Commune is the default key: everything of one commune (its sites, the correlation of
//! several signals at one site) is handled by one node. Device spreads load more evenly when
//! one commune dominates, at the cost of cross-device correlation across nodes.

use crate::subject::encode_token;

/// What decides the partition of a reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PartitionKey {
    #[default]
    Commune,
    Device,
}

impl PartitionKey {
    /// The 1-based wildcard of `beffroi.<territory>.in.*.*.*` that holds the key.
    pub fn wildcard(self) -> usize {
        match self {
            PartitionKey::Commune => 1,
            PartitionKey::Device => 2,
        }
    }
}

/// 32-bit FNV-1a.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The partition of a reading of `commune`/`device` among `partitions` (at least 1).
pub fn partition_of(key: PartitionKey, commune: &str, device: &str, partitions: u32) -> u32 {
    debug_assert!(partitions > 0, "at least one partition");
    let id = match key {
        PartitionKey::Commune => commune,
        PartitionKey::Device => device,
    };
    fnv1a32(encode_token(id).as_bytes()) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fnv1a32_known_values() {
        // Reference vectors of the FNV specification.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn the_key_chooses_the_id() {
        let p = 16;
        assert_eq!(
            partition_of(PartitionKey::Commune, "Talant", "d1", p),
            partition_of(PartitionKey::Commune, "Talant", "d2", p)
        );
        assert_eq!(
            partition_of(PartitionKey::Device, "Talant", "d1", p),
            partition_of(PartitionKey::Device, "Quetigny", "d1", p)
        );
    }

    proptest! {
        #[test]
        fn partitions_are_in_range_and_stable(c in any::<String>(), d in any::<String>(), p in 1u32..512) {
            let a = partition_of(PartitionKey::Commune, &c, &d, p);
            prop_assert!(a < p);
            prop_assert_eq!(a, partition_of(PartitionKey::Commune, &c, "other", p));
        }
    }

    #[test]
    fn communes_spread_over_partitions() {
        let p = 8;
        let mut counts = [0u32; 8];
        for i in 0..800 {
            counts
                [partition_of(PartitionKey::Commune, &format!("commune-{i}"), "d", p) as usize] +=
                1;
        }
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
    }
}
