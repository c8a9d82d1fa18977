//! Shards: the unit of ownership of instances among engines that share one store
//! (docs/cluster.md). An instance belongs to the shard given by a hash of its id's root, the part
//! before the first `.`, so that a call activity's children (`<caller>.<activation>`) live in
//! their caller's shard. The hash is part of the stored data's meaning: stored instances keep
//! their shard, so it never changes.
//!
//! An engine serves the instances of the shards it owns ([`ShardSet`]); a single engine owns
//! them all.

use std::fmt;

/// Number of shards (the rows of the PostgreSQL store's `flowbot_shards`).
pub const SHARDS: u32 = 64;

/// The shard of the instance `id`: FNV-1a (32 bits) of the bytes of its root, modulo [`SHARDS`].
pub fn shard_of(id: &str) -> u32 {
    let root = id.split('.').next().unwrap_or(id);
    let hash = root.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % SHARDS
}

/// A set of shards (one bit per shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShardSet(u64);

impl ShardSet {
    /// Every shard.
    pub const ALL: ShardSet = ShardSet(u64::MAX);
    /// No shard.
    pub const NONE: ShardSet = ShardSet(0);

    /// The set as a bit mask (bit `s` for shard `s`).
    pub fn from_bits(bits: u64) -> ShardSet {
        ShardSet(bits)
    }

    /// The bit mask (bit `s` for shard `s`).
    pub fn bits(self) -> u64 {
        self.0
    }

    /// Whether `shard` is in the set (shards past [`SHARDS`] never are).
    pub fn contains(self, shard: u32) -> bool {
        shard < SHARDS && self.0 & (1 << shard) != 0
    }

    /// Whether the instance `id` lives in one of the set's shards.
    pub fn holds(self, id: &str) -> bool {
        self.contains(shard_of(id))
    }

    /// The shards of both sets.
    pub fn union(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 | other.0)
    }

    /// The shards of this set that are not in `other`.
    pub fn minus(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 & !other.0)
    }

    /// Whether the set has no shard.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of shards in the set.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The shards, ascending.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..SHARDS).filter(move |&s| self.contains(s))
    }
}

impl FromIterator<u32> for ShardSet {
    /// The set of the given shards; numbers past [`SHARDS`] are left out.
    fn from_iter<I: IntoIterator<Item = u32>>(shards: I) -> ShardSet {
        ShardSet(
            shards
                .into_iter()
                .filter(|&s| s < SHARDS)
                .fold(0, |bits, s| bits | 1 << s),
        )
    }
}

impl fmt::Display for ShardSet {
    /// Ranges, as `0-15,32,40-63`; `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut shards = self.iter().peekable();
        let mut first = true;
        while let Some(start) = shards.next() {
            let mut end = start;
            while shards.peek() == Some(&(end + 1)) {
                end = shards.next().unwrap_or(end);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_fixed_by_the_root_of_the_id() {
        // Stored instances keep their shard: these values must never change.
        assert_eq!(shard_of(""), 0x811c_9dc5 % SHARDS);
        assert_eq!(shard_of("a"), 0xe40c_292c % SHARDS);
        assert_eq!(shard_of("order-1042.3"), shard_of("order-1042"));
        assert_eq!(shard_of("order-1042.3.1"), shard_of("order-1042"));
    }

    #[test]
    fn ids_spread_over_every_shard() {
        let mut counts = [0u32; SHARDS as usize];
        for n in 0..64_000 {
            counts[shard_of(&format!("order_flow-{n}")) as usize] += 1;
        }
        let (low, high) = (counts.iter().min(), counts.iter().max());
        assert!(
            low >= Some(&800) && high <= Some(&1_200),
            "uneven spread: {counts:?}"
        );
    }

    #[test]
    fn sets_hold_their_shards_and_print_as_ranges() {
        let set: ShardSet = (0..16).chain([32, 40, 41, 99]).collect();
        assert_eq!(set.len(), 19);
        assert!(set.contains(15) && set.contains(41) && !set.contains(16) && !set.contains(99));
        assert_eq!(set.to_string(), "0-15,32,40-41");
        assert_eq!(ShardSet::ALL.to_string(), "0-63");
        assert_eq!(ShardSet::NONE.to_string(), "none");
        assert_eq!(ShardSet::ALL.minus(set).union(set), ShardSet::ALL);
        assert_eq!(ShardSet::from_bits(set.bits()), set);
        let id = (0..).map(|n| format!("p-{n}")).find(|id| set.holds(id));
        assert!(id.is_some_and(|id| set.contains(shard_of(&id))));
    }
}
