//! LZ4 compression of the sled store's instance records and history entries.
//!
//! An instance record of the order flow is ~2.1 KB (snapshot 0.3 KB, one turn's history
//! 1.8 KB: node and flow ids repeat in every event) and LZ4 makes it ~0.9 KB. sled copies a
//! value several times per write (into its log, into leaf rewrites and splits), all on the one
//! thread that applies a group, so the bytes saved there are worth more than the compression
//! costs on the threads that commit: order flow with group commit, apply time 0.59-0.66 ->
//! 0.45-0.47 s per 40,000 instances.
//!
//! Format: one tag byte, then the raw value ([`RAW`]) or LZ4 block data with the value's size
//! prepended as a little-endian `u32` ([`LZ4`]). Values that do not shrink stay raw.

use std::borrow::Cow;

/// Tag of a value stored as is.
const RAW: u8 = 0;
/// Tag of an LZ4-compressed value.
const LZ4: u8 = 1;
/// Values shorter than this are not worth compressing.
const MIN_COMPRESSED: usize = 128;
/// LZ4 expands at most 255-fold: a larger stated size means a damaged value.
const MAX_RATIO: usize = 255;

/// Encodes a value for storage.
pub(crate) fn pack(value: &[u8]) -> Vec<u8> {
    if value.len() >= MIN_COMPRESSED && u32::try_from(value.len()).is_ok() {
        let compressed = lz4_flex::block::compress_prepend_size(value);
        if compressed.len() < value.len() {
            let mut out = Vec::with_capacity(1 + compressed.len());
            out.push(LZ4);
            out.extend_from_slice(&compressed);
            return out;
        }
    }
    let mut out = Vec::with_capacity(1 + value.len());
    out.push(RAW);
    out.extend_from_slice(value);
    out
}

/// Decodes a stored value; `None` when it is damaged.
pub(crate) fn unpack(stored: &[u8]) -> Option<Cow<'_, [u8]>> {
    let (&tag, body) = stored.split_first()?;
    match tag {
        RAW => Some(Cow::Borrowed(body)),
        LZ4 => {
            let size = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
            if size > body.len().saturating_mul(MAX_RATIO) {
                return None;
            }
            lz4_flex::block::decompress_size_prepended(body).ok().filter(|value| value.len() == size).map(Cow::Owned)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_small_large_and_incompressible() {
        let repetitive: Vec<u8> = b"node_entered confirm ".iter().copied().cycle().take(2_000).collect();
        let noise: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for value in [Vec::new(), b"tiny".to_vec(), repetitive.clone(), noise] {
            assert_eq!(unpack(&pack(&value)).as_deref(), Some(value.as_slice()));
        }
        assert!(pack(&repetitive).len() < repetitive.len() / 4, "repetitive values shrink");
    }

    #[test]
    fn damaged_values_are_refused() {
        let packed = pack(&b"abcdefgh".repeat(40));
        assert_eq!(packed[0], LZ4);
        assert_eq!(unpack(&[]), None, "empty");
        assert_eq!(unpack(&[7, 1, 2]), None, "unknown tag");
        assert_eq!(unpack(&packed[..packed.len() - 3]), None, "truncated");
        let mut oversized = packed.clone();
        oversized[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(unpack(&oversized), None, "stated size beyond what the data can hold");
    }
}
