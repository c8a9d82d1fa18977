//! Fine-tuning a model on examples of one task (prompt ids and the answer ids wanted after them).
//!
//! The method built here is `head`: the pretrained model stays frozen and only its output layer
//! (the matrix that turns the last hidden state into next-token scores) is trained. The frozen
//! model's final hidden states at the answer positions are computed once by the fast backend
//! ([`collect_features`]); training then runs on those cached rows with candle's autograd and
//! Adam ([`train_head`]), and the result is written as a copy of the model file with its own
//! `output.weight` ([`write_with_output_head`]). A model that ties its output layer to the token
//! embeddings (SmolLM2) is untied this way: the embeddings, and so every hidden state, stay as
//! they were.
//!
//! The loss is cross-entropy on the answer tokens only (the prompt is context). Besides the loss,
//! each evaluation reports, per named part of the answer (a JSON field) and for all parts
//! together, the share of examples the model predicts exactly under teacher forcing: a part
//! counts as right when the model's most likely token is the wanted one at every position of the
//! part, which is when greedy decoding writes that part as wanted once the text before it is
//! right (a constrained decoder can only rescue more).

mod answer;
mod export;
mod features;
mod head;
mod network;
mod train;
mod trunk;

use std::ops::Range;

pub use answer::{json_answer, ExampleWriter, JsonAnswer};
pub use export::{initial_head, write_lora_adapter, write_with_output_head, write_with_tensors};
pub use features::{collect_features, Features};
pub use head::{train_head, HeadRun};
pub use network::{train_network, NetworkRun};
pub use train::{DevMetrics, EpochReport, Progress, StopReason, TrainOptions, TrainReport};
pub use trunk::{Adaptation, Prefix, TrainableLlama};

use crate::gguf_export::ExportError;
use crate::lm::{candle_message, LmError};
use train::check_example;

/// One training example: the prompt, as the model sees it at inference (chat template applied),
/// and the answer wanted after it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainExample {
    /// Prompt ids: context, no loss.
    pub prompt: Vec<u32>,
    /// Answer ids.
    pub answer: Vec<u32>,
    /// Named ranges of `answer` (e.g. one per output field), each reported on its own. When
    /// there are parts, the loss is taken on their tokens only (the rest of the answer is forced
    /// by a constrained decoder); otherwise on every answer token.
    pub parts: Vec<AnswerPart>,
}

impl TrainExample {
    /// How many of its answer tokens the loss is taken on (its parts' tokens, or all of them).
    pub fn trained_tokens(&self) -> usize {
        train::trained_tokens(self).0.len()
    }
}

/// A named range of an answer's tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerPart {
    /// The part's name (e.g. the JSON field).
    pub name: String,
    /// Which answer tokens (indices into [`TrainExample::answer`]).
    pub tokens: Range<usize>,
}

/// Errors of fine-tuning.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// The model could not run the examples.
    #[error(transparent)]
    Model(#[from] LmError),
    /// A tensor operation of training failed.
    #[error("training: {0}")]
    Training(String),
    /// The examples cannot be trained on.
    #[error("{0}")]
    Data(String),
    /// The model file could not be read or the tuned one written.
    #[error(transparent)]
    Export(#[from] ExportError),
}

impl From<candle_core::Error> for FinetuneError {
    fn from(error: candle_core::Error) -> Self {
        FinetuneError::Training(candle_message(&error))
    }
}

/// Refuses the first example that cannot be trained on (see [`TrainExample`]).
fn check_examples(examples: &[TrainExample]) -> Result<(), FinetuneError> {
    examples
        .iter()
        .enumerate()
        .try_for_each(|(index, example)| check_example(index, example))
}
