//! The writes of a commit group that are not in the sled tree yet.
//!
//! With group commit, the sled store does not apply each commit to its tree: a commit's writes
//! go here, and the flusher applies everything pending as one `apply_batch` right before the
//! flush that makes it durable. sled writes and syncs its log per batch (measured: two log
//! writes per batch), so one batch per group instead of one per commit saves most of its work.
//! Readers look here first, then in the tree.
//!
//! Invariants:
//! - A commit's writes enter under one lock, so a group never holds half a commit.
//! - A key leaves the overlay only after the batch holding it was applied to the tree: a read
//!   that misses the overlay finds the key's latest value in the tree.
//! - `applying` (taken by the flusher) is older than `pending`; the newer write of a key wins.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A key's latest write: a value, or `None` for a removal.
pub(crate) type Write = Option<Vec<u8>>;

#[derive(Debug, Default)]
struct Generations {
    /// Writes of commits since the flusher last took the overlay.
    pending: BTreeMap<Vec<u8>, Write>,
    /// Writes the flusher is applying to the tree right now.
    applying: BTreeMap<Vec<u8>, Write>,
}

/// Writes not yet in the tree, in two generations (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    generations: Mutex<Generations>,
}

impl Overlay {
    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the writes of one commit, all at once.
    pub(crate) fn write_all(&self, writes: Vec<(Vec<u8>, Write)>) {
        let mut generations = self.lock();
        for (key, write) in writes {
            generations.pending.insert(key, write);
        }
    }

    /// The latest write of `key` that is not in the tree yet, if any.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Write> {
        let generations = self.lock();
        generations
            .pending
            .get(key)
            .or_else(|| generations.applying.get(key))
            .cloned()
    }

    /// The writes under `prefix` not in the tree yet, newest per key, in key order.
    pub(crate) fn scan(&self, prefix: &[u8]) -> BTreeMap<Vec<u8>, Write> {
        let generations = self.lock();
        let mut writes = BTreeMap::new();
        for generation in [&generations.applying, &generations.pending] {
            for (key, write) in generation
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
            {
                writes.insert(key.clone(), write.clone());
            }
        }
        writes
    }

    /// Takes the pending writes for the flusher as one sled batch (`None` when there are none).
    /// They stay readable until [`Overlay::applied`].
    pub(crate) fn begin_apply(&self) -> Option<sled::Batch> {
        let mut generations = self.lock();
        if generations.pending.is_empty() {
            return None;
        }
        let taken = std::mem::take(&mut generations.pending);
        let mut batch = sled::Batch::default();
        for (key, write) in &taken {
            match write {
                Some(value) => batch.insert(key.as_slice(), value.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        // After a failed apply the flusher stops for good, so `applying` is empty here.
        generations.applying = taken;
        Some(batch)
    }

    /// The batch from [`Overlay::begin_apply`] is in the tree: its writes leave the overlay.
    pub(crate) fn applied(&self) {
        self.lock().applying.clear();
    }
}

/// Merges tree entries under a prefix with the overlay's writes under it (the overlay wins).
pub(crate) fn merge(
    tree: Vec<(Vec<u8>, Vec<u8>)>,
    overlay: BTreeMap<Vec<u8>, Write>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if overlay.is_empty() {
        return tree;
    }
    let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = tree.into_iter().collect();
    for (key, write) in overlay {
        match write {
            Some(value) => {
                merged.insert(key, value);
            }
            None => {
                merged.remove(&key);
            }
        }
    }
    merged.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_writes_win_and_removals_hide_tree_entries() {
        let overlay = Overlay::default();
        overlay.write_all(vec![
            (b"a1".to_vec(), Some(b"old".to_vec())),
            (b"a2".to_vec(), Some(b"x".to_vec())),
        ]);
        let batch = overlay.begin_apply();
        assert!(batch.is_some());
        overlay.write_all(vec![
            (b"a1".to_vec(), Some(b"new".to_vec())),
            (b"a3".to_vec(), None),
        ]);
        assert_eq!(overlay.get(b"a1"), Some(Some(b"new".to_vec())));
        assert_eq!(overlay.get(b"a2"), Some(Some(b"x".to_vec())));
        assert_eq!(overlay.get(b"b"), None);
        let tree = vec![
            (b"a0".to_vec(), b"t".to_vec()),
            (b"a3".to_vec(), b"gone".to_vec()),
        ];
        let merged = merge(tree, overlay.scan(b"a"));
        let keys: Vec<&[u8]> = merged.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![b"a0".as_slice(), b"a1", b"a2"]);
        assert_eq!(merged[1].1, b"new".to_vec());
        overlay.applied();
        assert_eq!(overlay.get(b"a2"), None, "applied writes leave the overlay");
        assert_eq!(
            overlay.get(b"a1"),
            Some(Some(b"new".to_vec())),
            "pending writes stay"
        );
    }
}
