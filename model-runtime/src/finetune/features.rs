//! The frozen model's final hidden states at the answer positions of each example: the input of
//! the output layer, computed once so that training the output layer never runs the model again.

use std::ops::Range;

use super::train::{check_example, trained_tokens};
use super::{AnswerPart, FinetuneError, TrainExample};
use crate::fast::FastLlama;

/// Hidden-state rows with the token each one must predict, grouped by example.
#[derive(Debug, Clone)]
pub struct Features {
    dim: usize,
    /// `rows() * dim` values: row `i` is the hidden state that predicts `targets[i]`.
    hidden: Vec<f32>,
    targets: Vec<u32>,
    examples: Vec<ExampleRows>,
}

/// The rows of one example and its named parts (ranges relative to the example's first row).
#[derive(Debug, Clone)]
pub(super) struct ExampleRows {
    pub(super) rows: Range<usize>,
    pub(super) parts: Vec<AnswerPart>,
}

impl Features {
    /// Width of a row (the model's hidden size).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows (answer tokens over all examples).
    pub fn rows(&self) -> usize {
        self.targets.len()
    }

    /// Number of examples.
    pub fn examples(&self) -> usize {
        self.examples.len()
    }

    /// Row `i`'s values.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.hidden[i * self.dim..(i + 1) * self.dim]
    }

    /// The token row `i` predicts.
    pub fn target(&self, i: usize) -> u32 {
        self.targets[i]
    }

    pub(super) fn example_rows(&self) -> &[ExampleRows] {
        &self.examples
    }

    /// Features built from rows directly (tests of the trainer).
    #[cfg(test)]
    pub(super) fn from_parts(
        dim: usize,
        hidden: Vec<f32>,
        targets: Vec<u32>,
        examples: Vec<(Range<usize>, Vec<AnswerPart>)>,
    ) -> Features {
        Features {
            dim,
            hidden,
            targets,
            examples: examples
                .into_iter()
                .map(|(rows, parts)| ExampleRows { rows, parts })
                .collect(),
        }
    }
}

/// Runs every example through `lm` and keeps the final hidden state of each position that
/// predicts a trained answer token (a token of one of its parts, or any answer token when it has
/// none). The part of a prompt shared with the previous example (the system prompt) is computed
/// once.
/// `progress` is called with the number of examples done.
pub fn collect_features(
    lm: &mut FastLlama,
    examples: &[TrainExample],
    mut progress: impl FnMut(usize),
) -> Result<Features, FinetuneError> {
    let dim = lm.hyper().dim;
    let mut features = Features {
        dim,
        hidden: Vec::new(),
        targets: Vec::new(),
        examples: Vec::with_capacity(examples.len()),
    };
    // The sequence whose positions the model's cache holds.
    let mut cached: Vec<u32> = Vec::new();
    for (index, example) in examples.iter().enumerate() {
        let place = || format!("example {}", index + 1);
        check_example(index, example)?;
        let sequence: Vec<u32> = example
            .prompt
            .iter()
            .chain(&example.answer)
            .copied()
            .collect();
        // The last answer token predicts nothing; the last prompt token is always run, as its
        // hidden state predicts the first answer token.
        let end = sequence.len() - 1;
        let first_wanted = example.prompt.len() - 1;
        let reused = cached
            .iter()
            .zip(&sequence)
            .take_while(|(a, b)| a == b)
            .count()
            .min(first_wanted);
        let hidden = lm
            .final_hidden(&sequence[reused..end], reused)
            .map_err(|e| FinetuneError::Data(format!("{}: {e}", place())))?;
        let (trained, parts) = trained_tokens(example);
        let first_row = features.targets.len();
        // Answer token j is predicted by the hidden state of the position before it.
        let offset = first_wanted - reused;
        for &j in &trained {
            let row = offset + j;
            features
                .hidden
                .extend_from_slice(&hidden[row * dim..(row + 1) * dim]);
            features.targets.push(example.answer[j]);
        }
        features.examples.push(ExampleRows {
            rows: first_row..first_row + trained.len(),
            parts,
        });
        cached.clear();
        cached.extend_from_slice(&sequence[..end]);
        progress(index + 1);
    }
    Ok(features)
}
