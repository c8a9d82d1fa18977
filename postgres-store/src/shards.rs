//! Shards: the unit of ownership of instances among nodes (docs/cluster.md). An instance belongs
//! to the shard given by a hash of its id's root, the part before the first `.`, so that a call
//! activity's children (`<caller>.<activation>`) live in their caller's shard. The hash is part
//! of the schema: stored instances keep their shard, so it never changes.

/// Shards in a database (the rows of `flowbot_shards`).
pub const SHARDS: u32 = 64;

/// The shard of the instance `id`: FNV-1a (32 bits) of the bytes of its root, modulo [`SHARDS`].
pub fn shard_of(id: &str) -> u32 {
    let root = id.split('.').next().unwrap_or(id);
    let hash = root.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % SHARDS
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
}
