//! A small deterministic pseudo-random generator (SplitMix64) and a stable string hash.
//!
//! Both are written here rather than taken from a crate so that the stream of values a
//! scenario produces can never change with a dependency upgrade: the same scenario, seed
//! and territory always give the same bytes.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A bijective mix of 64 bits: the first output of a SplitMix64 stream seeded with `x`.
pub(crate) fn mix(x: u64) -> u64 {
    finalise(x.wrapping_add(GOLDEN))
}

/// The SplitMix64 output function.
fn finalise(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        finalise(self.0)
    }

    /// Uniform in `[-1, 1)`.
    pub(crate) fn next_signed_unit(&mut self) -> f64 {
        signed_unit(self.next_u64())
    }
}

/// Maps 64 random bits to a uniform float in `[0, 1)`.
pub(crate) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Maps 64 random bits to a uniform float in `[-1, 1)`.
pub(crate) fn signed_unit(x: u64) -> f64 {
    unit(x) * 2.0 - 1.0
}

/// FNV-1a over the parts, each followed by a separator byte that cannot occur in UTF-8,
/// so that `("ab", "c")` and `("a", "bc")` differ. Stable across Rust versions, unlike
/// `std`'s `DefaultHasher`.
pub(crate) fn hash_parts(parts: &[&str], seed: u64) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325 ^ mix(seed);
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xFF)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation by S. Vigna).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn units_stay_in_range() {
        let mut r = SplitMix64::new(42);
        for _ in 0..10_000 {
            let x = r.next_signed_unit();
            assert!((-1.0..1.0).contains(&x));
        }
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
    }

    #[test]
    fn hash_separates_parts() {
        assert_ne!(hash_parts(&["ab", "c"], 0), hash_parts(&["a", "bc"], 0));
        assert_ne!(hash_parts(&["a"], 0), hash_parts(&["a"], 1));
        assert_eq!(hash_parts(&["a", "b"], 7), hash_parts(&["a", "b"], 7));
    }
}
