//! Cheap identifiers and randomness for the load tool.
//!
//! Member ids are derived from a per-seed prefix and the member's index, so a state file
//! holds two numbers instead of a million UUIDs. Request ids come from a per-run random
//! prefix and a per-worker counter: unique, and free of a system call per request.

use uuid::{Builder, Uuid, Variant, Version};

/// A UUID in the RFC 4122 layout (version 4 bits set) from two 64-bit halves. The version
/// nibble of `high` and the top two bits of `low` are overwritten.
pub fn uuid_from_pair(high: u64, low: u64) -> Uuid {
    let value = (u128::from(high) << 64) | u128::from(low);
    Builder::from_u128(value)
        .with_version(Version::Random)
        .with_variant(Variant::RFC4122)
        .into_uuid()
}

/// The id of member `index` of a seed with prefix `prefix`.
pub fn member_id(prefix: u64, index: u64) -> Uuid {
    uuid_from_pair(prefix, index)
}

/// A fresh random 64-bit number (from a v4 UUID, i.e. the OS generator).
pub fn random_u64() -> u64 {
    let (high, _) = Uuid::new_v4().as_u64_pair();
    high
}

/// Request ids for one worker: a random run prefix, the worker number and a counter.
#[derive(Debug, Clone)]
pub struct RequestIds {
    prefix: u64,
    worker: u64,
    next: u64,
}

impl RequestIds {
    /// Ids for worker `worker` of a run with prefix `prefix`.
    pub fn new(prefix: u64, worker: u64) -> Self {
        RequestIds {
            prefix,
            worker: worker & 0x3f_ffff,
            next: 0,
        }
    }

    /// The next request id.
    pub fn next_id(&mut self) -> Uuid {
        self.next += 1;
        uuid_from_pair(
            self.prefix,
            (self.worker << 40) | (self.next & 0xff_ffff_ffff),
        )
    }
}

/// SplitMix64: a tiny, fast, statistically decent generator for picking members and
/// operations. Not for anything secret.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0), by multiply-shift (bias is negligible here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_distinct_and_not_nil() {
        let a = member_id(7, 0);
        let b = member_id(7, 1);
        assert_ne!(a, b);
        assert!(!a.is_nil());
        assert_eq!(a.get_version_num(), 4);
    }

    #[test]
    fn request_ids_are_distinct_across_workers() {
        let mut w0 = RequestIds::new(1, 0);
        let mut w1 = RequestIds::new(1, 1);
        let ids: std::collections::HashSet<_> = (0..100)
            .flat_map(|_| [w0.next_id(), w1.next_id()])
            .collect();
        assert_eq!(ids.len(), 200);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix::new(42);
        assert!((0..1000).all(|_| rng.below(10) < 10));
    }
}
