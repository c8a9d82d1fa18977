//! Deterministic, stratified train/dev/test split.
//!
//! Within each language, examples are ordered by a keyed hash of their id (the text's hash) and
//! the seed, then cut by the ratio: the same examples and seed always give the same split, a
//! different seed a different one, and each language is split in the same proportions.

use crate::example::{Example, Language};
use crate::DatasetError;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Parts of train, dev and test, e.g. 8:1:1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    /// Parts of train.
    pub train: u32,
    /// Parts of dev.
    pub dev: u32,
    /// Parts of test.
    pub test: u32,
}

impl Default for Ratio {
    fn default() -> Self {
        Ratio {
            train: 8,
            dev: 1,
            test: 1,
        }
    }
}

impl FromStr for Ratio {
    type Err = DatasetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<u32> = text
            .split(':')
            .map(|part| part.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| DatasetError::BadSplit(text.to_string()))?;
        match parts[..] {
            [train, dev, test] if train > 0 && test > 0 && train + dev + test <= 1_000 => {
                Ok(Ratio { train, dev, test })
            }
            _ => Err(DatasetError::BadSplit(text.to_string())),
        }
    }
}

/// The three parts of a data set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Splits {
    /// For training.
    pub train: Vec<Example>,
    /// For choosing when to stop and which checkpoint to keep.
    pub dev: Vec<Example>,
    /// For the figures reported; never trained on.
    pub test: Vec<Example>,
}

/// Splits `examples` (already de-duplicated) by `ratio` and `seed`, stratified by language.
pub fn split(examples: Vec<Example>, ratio: Ratio, seed: u64) -> Splits {
    let mut by_language: BTreeMap<Language, Vec<(String, Example)>> = BTreeMap::new();
    for example in examples {
        let key = keyed_hash(&example.id, seed);
        by_language
            .entry(example.language)
            .or_default()
            .push((key, example));
    }
    let total_parts = (ratio.train + ratio.dev + ratio.test) as usize;
    let mut splits = Splits::default();
    for (_, mut group) in by_language {
        group.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let n = group.len();
        let train_end = (n * ratio.train as usize + total_parts / 2) / total_parts;
        let dev_end = train_end + (n * ratio.dev as usize + total_parts / 2) / total_parts;
        let dev_end = dev_end.min(n);
        for (index, (_, example)) in group.into_iter().enumerate() {
            if index < train_end {
                splits.train.push(example);
            } else if index < dev_end {
                splits.dev.push(example);
            } else {
                splits.test.push(example);
            }
        }
    }
    for part in [&mut splits.train, &mut splits.dev, &mut splits.test] {
        part.sort_by(|a, b| a.id.cmp(&b.id));
    }
    splits
}

/// The order key of an example: SHA-256 of the seed and its id.
fn keyed_hash(id: &str, seed: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(id.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
