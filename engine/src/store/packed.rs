//! Snappy compression of the sled store's instance records and history entries.
//!
//! An instance record of the order flow is ~2.1 KB (snapshot 0.3 KB, one turn's history
//! 1.8 KB: node and flow ids repeat in every event); compressed it is ~0.8 KB. sled copies a
//! value several times per write (into its log, into leaf rewrites and splits), all on the one
//! thread that applies a group, so the bytes saved there are worth more than the compression
//! costs on the threads that commit (order flow with group commit, measured with LZ4 first:
//! apply time 0.59–0.66 -> 0.45–0.47 s per 40,000 instances, 7–15% more instances/s than
//! storing values raw).
//!
//! Snappy (`snap`) rather than LZ4 (`lz4_flex`): each committing thread keeps one encoder,
//! whose hash table is reused, where `lz4_flex` zeroes an 8 KB table per call. Under callgrind,
//! compressing took ~17,000 instead of ~34,000 instructions per instance (plus that zeroing),
//! and the record came out smaller (824 vs 880 bytes).
//!
//! Format: one tag byte, then the raw value ([`RAW`]) or Snappy raw-format data, which starts
//! with the value's length ([`SNAPPY`]). Values that do not shrink stay raw.

use std::borrow::Cow;
use std::cell::RefCell;

/// Tag of a value stored as is.
const RAW: u8 = 0;
/// Tag of a Snappy-compressed value.
const SNAPPY: u8 = 1;
/// Values shorter than this are not worth compressing.
const MIN_COMPRESSED: usize = 128;
/// Snappy expands at most ~21-fold (a 3-byte copy yields 64 bytes): a larger stated length
/// means a damaged value, and is refused before anything is allocated for it.
const MAX_RATIO: usize = 32;

thread_local! {
    /// This thread's encoder (its hash table is reused between values) and output buffer.
    static ENCODER: RefCell<(snap::raw::Encoder, Vec<u8>)> = RefCell::new((snap::raw::Encoder::new(), Vec::new()));
}

/// Encodes a value for storage.
pub(crate) fn pack(value: &[u8]) -> Vec<u8> {
    if value.len() >= MIN_COMPRESSED {
        if let Some(compressed) = ENCODER.with(|cell| compress(&mut cell.borrow_mut(), value)) {
            return compressed;
        }
    }
    let mut out = Vec::with_capacity(1 + value.len());
    out.push(RAW);
    out.extend_from_slice(value);
    out
}

/// The tagged compressed form of `value`, when it is smaller than the value.
fn compress(
    (encoder, buffer): &mut (snap::raw::Encoder, Vec<u8>),
    value: &[u8],
) -> Option<Vec<u8>> {
    let needed = snap::raw::max_compress_len(value.len());
    if needed == 0 {
        return None; // beyond Snappy's 4 GiB limit
    }
    if buffer.len() < needed {
        buffer.resize(needed, 0);
    }
    let written = encoder.compress(value, buffer).ok()?;
    (written < value.len()).then(|| {
        let mut out = Vec::with_capacity(1 + written);
        out.push(SNAPPY);
        out.extend_from_slice(&buffer[..written]);
        out
    })
}

/// Decodes a stored value; `None` when it is damaged.
pub(crate) fn unpack(stored: &[u8]) -> Option<Cow<'_, [u8]>> {
    let (&tag, body) = stored.split_first()?;
    match tag {
        RAW => Some(Cow::Borrowed(body)),
        SNAPPY => {
            let length = snap::raw::decompress_len(body).ok()?;
            if length > body.len().saturating_mul(MAX_RATIO) {
                return None;
            }
            snap::raw::Decoder::new()
                .decompress_vec(body)
                .ok()
                .filter(|value| value.len() == length)
                .map(Cow::Owned)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_small_large_and_incompressible() {
        let repetitive: Vec<u8> = b"node_entered confirm "
            .iter()
            .copied()
            .cycle()
            .take(2_000)
            .collect();
        let noise: Vec<u8> = (0..600u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for value in [
            Vec::new(),
            b"tiny".to_vec(),
            repetitive.clone(),
            noise,
            repetitive[..700].to_vec(),
        ] {
            assert_eq!(unpack(&pack(&value)).as_deref(), Some(value.as_slice()));
        }
        assert!(
            pack(&repetitive).len() < repetitive.len() / 4,
            "repetitive values shrink"
        );
    }

    #[test]
    fn damaged_values_are_refused() {
        let packed = pack(&b"abcdefgh".repeat(40));
        assert_eq!(packed[0], SNAPPY);
        assert_eq!(unpack(&[]), None, "empty");
        assert_eq!(unpack(&[7, 1, 2]), None, "unknown tag");
        assert_eq!(unpack(&packed[..packed.len() - 3]), None, "truncated");
        // A stated length of 2^32 - 1 bytes for a few bytes of data.
        let oversized = [SNAPPY, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 1];
        assert_eq!(
            unpack(&oversized),
            None,
            "stated length beyond what the data can hold"
        );
    }
}
