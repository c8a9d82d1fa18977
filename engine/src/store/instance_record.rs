//! The value under an instance's key in the sled store: its latest snapshot and the history
//! entries of its latest turn (the *tail*).
//!
//! Keeping the latest turn's history beside the snapshot makes a turn one key write instead of
//! two; a short instance (started and ended in one turn, the common case under load) is one key
//! in all. The next turn that brings history moves the tail into the instance's history keys.
//! sled's cost per written key dominates group commit (every leaf holds at most 16 entries, so
//! an append-heavy tree splits and rewrites a leaf every few inserts), hence the layout.
//!
//! Layout (`u64` little-endian integers): snapshot length, snapshot, slot of the first tail entry,
//! number of tail entries, then per entry its length and its bytes.
//!
//! A moved tail stays together: it becomes one history key (a [`history chunk`](encode_chunk),
//! keyed by its first slot), so a turn that brings history writes two keys however many entries
//! the turn before it had.

/// An instance record, borrowing from the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceRecord<'a> {
    /// The latest snapshot.
    pub snapshot: &'a [u8],
    /// History slot of the first tail entry; the tail fills consecutive slots from there.
    pub tail_from: u64,
    /// History entries not yet moved to history keys.
    pub tail: Vec<&'a [u8]>,
}

impl<'a> InstanceRecord<'a> {
    /// Encodes a record.
    pub(crate) fn encode(snapshot: &[u8], tail_from: u64, tail: &[impl AsRef<[u8]>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + snapshot.len() + entries_size(tail));
        put_bytes(&mut out, snapshot);
        out.extend_from_slice(&tail_from.to_le_bytes());
        put_entries(&mut out, tail);
        out
    }

    /// Decodes a record; `None` when the bytes are not one (truncated, trailing garbage).
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<Self> {
        let mut rest = bytes;
        let snapshot = take_bytes(&mut rest)?;
        let tail_from = take_u64(&mut rest)?;
        let tail = take_entries(&mut rest)?;
        rest.is_empty().then_some(Self {
            snapshot,
            tail_from,
            tail,
        })
    }

    /// The tail entries with their history slots.
    pub(crate) fn tail_slots(&self) -> impl Iterator<Item = (u64, &'a [u8])> + '_ {
        self.tail
            .iter()
            .enumerate()
            .map(|(i, entry)| (self.tail_from + i as u64, *entry))
    }
}

/// Encodes consecutive history entries as one value: their number, then per entry its length and
/// its bytes.
pub(crate) fn encode_chunk(entries: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries_size(entries));
    put_entries(&mut out, entries);
    out
}

/// Decodes a history chunk; `None` when the bytes are not one (truncated, trailing garbage).
pub(crate) fn decode_chunk(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rest = bytes;
    let entries = take_entries(&mut rest)?;
    rest.is_empty().then_some(entries)
}

/// Bytes [`put_entries`] writes for `entries`.
fn entries_size(entries: &[impl AsRef<[u8]>]) -> usize {
    8 + entries
        .iter()
        .map(|entry| 8 + entry.as_ref().len())
        .sum::<usize>()
}

/// The number of entries, then each with its length.
fn put_entries(out: &mut Vec<u8>, entries: &[impl AsRef<[u8]>]) {
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for entry in entries {
        put_bytes(out, entry.as_ref());
    }
}

/// What [`put_entries`] wrote.
fn take_entries<'a>(rest: &mut &'a [u8]) -> Option<Vec<&'a [u8]>> {
    let count = usize::try_from(take_u64(rest)?).ok()?;
    // Every entry needs at least its length prefix: a damaged count cannot over-allocate.
    if count > rest.len() / 8 {
        return None;
    }
    (0..count).map(|_| take_bytes(rest)).collect()
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_u64(rest: &mut &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(take(rest, 8)?.try_into().ok()?))
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(take_u64(rest)?).ok()?;
    take(rest, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_and_without_a_tail() {
        for tail in [
            vec![],
            vec![b"turn 7".to_vec()],
            vec![b"a".to_vec(), Vec::new(), b"ccc".to_vec()],
        ] {
            let bytes = InstanceRecord::encode(b"snapshot", 7, &tail);
            let record = InstanceRecord::decode(&bytes).expect("decodes");
            assert_eq!(record.snapshot, b"snapshot");
            let slots: Vec<(u64, Vec<u8>)> = record
                .tail_slots()
                .map(|(slot, e)| (slot, e.to_vec()))
                .collect();
            let expected: Vec<(u64, Vec<u8>)> = tail
                .iter()
                .enumerate()
                .map(|(i, e)| (7 + i as u64, e.clone()))
                .collect();
            assert_eq!(slots, expected);
        }
    }

    #[test]
    fn chunks_round_trip_and_damaged_ones_are_refused() {
        for entries in [
            vec![],
            vec![b"one".to_vec()],
            vec![b"a".to_vec(), Vec::new(), b"ccc".to_vec()],
        ] {
            let bytes = encode_chunk(&entries);
            let decoded = decode_chunk(&bytes).expect("decodes");
            assert_eq!(
                decoded,
                entries.iter().map(Vec::as_slice).collect::<Vec<_>>()
            );
            for cut in 0..bytes.len() {
                assert_eq!(
                    decode_chunk(&bytes[..cut]),
                    None,
                    "truncated to {cut} bytes"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_chunk(&longer), None, "trailing byte");
        }
        assert_eq!(
            decode_chunk(&u64::MAX.to_le_bytes()),
            None,
            "count beyond the bytes"
        );
    }

    #[test]
    fn damaged_records_are_refused_not_misread() {
        let bytes = InstanceRecord::encode(b"snapshot", 3, &[b"entry".to_vec()]);
        for cut in 0..bytes.len() {
            assert_eq!(
                InstanceRecord::decode(&bytes[..cut]),
                None,
                "truncated to {cut} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(InstanceRecord::decode(&longer), None, "trailing byte");
        let mut huge_count = InstanceRecord::encode(b"s", 0, &[] as &[Vec<u8>]);
        let at = huge_count.len() - 8;
        huge_count[at..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            InstanceRecord::decode(&huge_count),
            None,
            "count beyond the bytes"
        );
    }
}
