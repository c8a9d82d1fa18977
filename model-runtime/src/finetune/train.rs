//! What every training method shares: the options, the epoch loop (shuffled batches, a stop on
//! Ctrl-C, the time limit or no improvement, one evaluation per epoch, the best checkpoint by dev
//! loss kept), the dev metrics, and the optimizer.
//!
//! A method supplies a [`Trainee`]: one optimizer step over some examples, an evaluation on the
//! dev examples, and a copy of what it trains; [`run_epochs`] does the rest, identically for all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use super::{AnswerPart, FinetuneError, TrainExample};

/// How a model is trained (every method).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Most passes over the training examples.
    pub epochs: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Examples per optimizer step (all their answer tokens together).
    pub batch_examples: usize,
    /// Seed of the order the examples are visited in (and of new weights).
    pub seed: u64,
    /// Stop after this many epochs without a lower dev loss.
    pub patience: usize,
    /// Stop (keeping the best checkpoint so far) once training has run this long.
    pub time_limit: Option<Duration>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 4,
            learning_rate: 3e-4,
            batch_examples: 8,
            seed: 42,
            patience: 1,
            time_limit: None,
        }
    }
}

/// Where training is, reported after every optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The epoch under way (from 1).
    pub epoch: usize,
    /// Steps done in this epoch.
    pub step: usize,
    /// Steps of an epoch.
    pub steps_per_epoch: usize,
    /// Answer tokens trained on per second so far.
    pub tokens_per_s: f64,
    /// The last step's training loss.
    pub loss: f64,
}

/// Scores of a checkpoint on the dev examples.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DevMetrics {
    /// Mean cross-entropy per answer token.
    pub loss: f64,
    /// Share of answer tokens whose most likely token is the wanted one.
    pub token_accuracy: f64,
    /// Per part name, the share of examples whose part is predicted exactly (teacher forcing).
    pub parts: Vec<(String, f64)>,
    /// Share of examples whose every part is predicted exactly (with JSON fields as parts: all
    /// fields right; the JSON punctuation between them is the decoder's to force).
    pub all_parts: f64,
}

/// One epoch's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochReport {
    /// The epoch (from 1).
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// The scores on the dev examples after the epoch.
    pub dev: DevMetrics,
    /// Seconds the epoch took (training and evaluation).
    pub seconds: f64,
}

/// Why training stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every epoch ran.
    Epochs,
    /// The dev loss stopped going down.
    NoImprovement,
    /// The time limit was reached.
    TimeLimit,
    /// The caller asked to stop (Ctrl-C).
    Cancelled,
}

/// How a training run went (every method).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainReport {
    /// The scores before training.
    pub initial: DevMetrics,
    /// Each epoch run (an epoch cut short by the time limit or a cancel is evaluated as well).
    pub epochs: Vec<EpochReport>,
    /// The epoch whose checkpoint was kept (0: the initial weights).
    pub best_epoch: usize,
    /// Why training stopped.
    pub stop: StopReason,
    /// Answer tokens trained on per second, over all steps.
    pub tokens_per_s: f64,
}

/// What one method trains, as [`run_epochs`] drives it.
pub(super) trait Trainee {
    /// A copy of the trained weights, kept while it is the best.
    type Checkpoint;

    /// One optimizer step over the training examples numbered `examples`; returns the step's mean
    /// loss and the answer tokens it trained on.
    fn step(&mut self, examples: &[usize]) -> Result<(f64, usize), FinetuneError>;

    /// Scores the current weights on the dev examples.
    fn evaluate(&mut self) -> Result<DevMetrics, FinetuneError>;

    /// A copy of the current weights.
    fn checkpoint(&self) -> Result<Self::Checkpoint, FinetuneError>;
}

/// Trains `trainee` on `examples` training examples for at most `options.epochs` epochs,
/// evaluating before training and after each epoch, and returns the checkpoint with the lowest
/// dev loss (the initial weights if no epoch improved on them). `cancel` is checked between
/// steps; `progress` hears of every step.
pub(super) fn run_epochs<T: Trainee>(
    trainee: &mut T,
    examples: usize,
    options: &TrainOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(T::Checkpoint, TrainReport), FinetuneError> {
    if examples == 0 {
        return Err(FinetuneError::Data("no training examples".into()));
    }
    let initial = trainee.evaluate()?;
    let mut best = (initial.loss, 0usize, trainee.checkpoint()?);
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..examples).collect();
    let batch = options.batch_examples.max(1);
    let steps_per_epoch = order.len().div_ceil(batch);
    let started = Instant::now();
    let mut trained_tokens = 0usize;
    let mut epochs = Vec::new();
    let mut stop = StopReason::Epochs;
    for epoch in 1..=options.epochs {
        let epoch_started = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0f64;
        let mut steps = 0usize;
        for (step, chosen) in order.chunks(batch).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                stop = StopReason::Cancelled;
                break;
            }
            if options
                .time_limit
                .is_some_and(|limit| started.elapsed() >= limit)
            {
                stop = StopReason::TimeLimit;
                break;
            }
            let (step_loss, tokens) = trainee.step(chosen)?;
            loss_sum += step_loss;
            steps += 1;
            trained_tokens += tokens;
            progress(&Progress {
                epoch,
                step: step + 1,
                steps_per_epoch,
                tokens_per_s: trained_tokens as f64 / started.elapsed().as_secs_f64(),
                loss: step_loss,
            });
        }
        // An epoch cut short by a stop is evaluated too, unless it never took a step.
        if steps > 0 {
            let dev = trainee.evaluate()?;
            if dev.loss < best.0 {
                best = (dev.loss, epoch, trainee.checkpoint()?);
            }
            epochs.push(EpochReport {
                epoch,
                train_loss: loss_sum / steps as f64,
                dev,
                seconds: epoch_started.elapsed().as_secs_f64(),
            });
        }
        if stop != StopReason::Epochs {
            break;
        }
        if epoch - best.1 >= options.patience.max(1) && epoch < options.epochs {
            stop = StopReason::NoImprovement;
            break;
        }
    }
    let report = TrainReport {
        initial,
        epochs,
        best_epoch: best.1,
        stop,
        tokens_per_s: trained_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
    };
    Ok((best.2, report))
}

/// Refuses an example that cannot be trained on (numbered from 1 in the message): an empty
/// prompt or answer, or a part outside the answer.
pub(super) fn check_example(index: usize, example: &TrainExample) -> Result<(), FinetuneError> {
    let place = || format!("example {}", index + 1);
    if example.prompt.is_empty() || example.answer.is_empty() {
        return Err(FinetuneError::Data(format!(
            "{}: a prompt and an answer of at least one token each are needed",
            place()
        )));
    }
    if let Some(part) = example
        .parts
        .iter()
        .find(|p| p.tokens.start > p.tokens.end || p.tokens.end > example.answer.len())
    {
        return Err(FinetuneError::Data(format!(
            "{}: part `{}` covers tokens {:?} of an answer of {}",
            place(),
            part.name,
            part.tokens,
            example.answer.len()
        )));
    }
    Ok(())
}

/// The answer tokens an example trains on, in order (each part's tokens stay contiguous): its
/// parts' tokens, or every answer token when it has none; and its parts renumbered as ranges of
/// that list.
pub(super) fn trained_tokens(example: &TrainExample) -> (Vec<usize>, Vec<AnswerPart>) {
    let trained: Vec<usize> = if example.parts.is_empty() {
        (0..example.answer.len()).collect()
    } else {
        let mut trained: Vec<usize> = example
            .parts
            .iter()
            .flat_map(|p| p.tokens.clone())
            .collect();
        trained.sort_unstable();
        trained.dedup();
        trained
    };
    let row_of = |token: usize| trained.partition_point(|&t| t < token);
    let parts = example
        .parts
        .iter()
        .map(|part| AnswerPart {
            name: part.name.clone(),
            tokens: row_of(part.tokens.start)..row_of(part.tokens.end),
        })
        .collect();
    (trained, parts)
}

/// The dev metrics from the mean loss's sum over `right.len()` trained tokens, whether each was
/// predicted right, and each example's tokens (a range of `right`) with its parts (ranges
/// relative to the example's first token).
pub(super) fn dev_metrics<'a>(
    loss_sum: f64,
    right: &[bool],
    examples: impl ExactSizeIterator<Item = (std::ops::Range<usize>, &'a [AnswerPart])>,
) -> DevMetrics {
    let count = examples.len();
    let mut names: Vec<String> = Vec::new();
    let mut part_hits: Vec<(usize, usize)> = Vec::new();
    let mut all_parts = 0usize;
    for (rows, parts) in examples {
        let rows = &right[rows];
        let mut every_part = true;
        for part in parts {
            let hit = rows[part.tokens.clone()].iter().all(|r| *r);
            every_part &= hit;
            let slot = match names.iter().position(|n| *n == part.name) {
                Some(slot) => slot,
                None => {
                    names.push(part.name.clone());
                    part_hits.push((0, 0));
                    names.len() - 1
                }
            };
            part_hits[slot].0 += usize::from(hit);
            part_hits[slot].1 += 1;
        }
        all_parts += usize::from(every_part);
    }
    let tokens = right.len().max(1) as f64;
    DevMetrics {
        loss: loss_sum / tokens,
        token_accuracy: right.iter().filter(|r| **r).count() as f64 / tokens,
        parts: names
            .into_iter()
            .zip(part_hits)
            .map(|(name, (hit, of))| (name, hit as f64 / of.max(1) as f64))
            .collect(),
        all_parts: all_parts as f64 / count.max(1) as f64,
    }
}

/// Adam (β₁ 0.9, β₂ 0.999, ε 1e-8, no weight decay) over one flat parameter vector, its moments
/// updated in place. candle's optimizer builds every update from a dozen whole-matrix
/// temporaries; for a 49,152 × 576 output layer (113 MB each) that more than doubled the peak
/// memory of training.
pub(super) struct Adam {
    first: Vec<f32>,
    second: Vec<f32>,
    steps: i32,
    learning_rate: f32,
}

impl Adam {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPSILON: f32 = 1e-8;

    pub(super) fn new(len: usize, learning_rate: f64) -> Adam {
        Adam {
            first: vec![0.0; len],
            second: vec![0.0; len],
            steps: 0,
            learning_rate: learning_rate as f32,
        }
    }

    /// One step: moves `params` against `grad` (same length).
    pub(super) fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        self.steps += 1;
        let first_correction = 1.0 - Self::BETA1.powi(self.steps);
        let second_correction = 1.0 - Self::BETA2.powi(self.steps);
        let learning_rate = self.learning_rate;
        params
            .par_iter_mut()
            .zip(grad)
            .zip(&mut self.first)
            .zip(&mut self.second)
            .for_each(|(((param, &g), m), v)| {
                *m = Self::BETA1 * *m + (1.0 - Self::BETA1) * g;
                *v = Self::BETA2 * *v + (1.0 - Self::BETA2) * g * g;
                let m_hat = *m / first_correction;
                let v_hat = *v / second_correction;
                *param -= learning_rate * m_hat / (v_hat.sqrt() + Self::EPSILON);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn adam_moves_the_parameters_as_candles_adamw_does() {
        use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
        let start = [0.5f32, -1.0, 2.0, 0.0];
        let theirs = Var::from_slice(&start, 4, &Device::Cpu).unwrap();
        let mut reference = AdamW::new(
            vec![theirs.clone()],
            ParamsAdamW {
                lr: 0.1,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
        )
        .unwrap();
        let mut ours = start.to_vec();
        let mut adam = Adam::new(4, 0.1);
        for target in [
            [1.0f32, 1.0, 1.0, 1.0],
            [0.0, -3.0, 0.5, 2.0],
            [2.0, 0.0, 0.0, -1.0],
        ] {
            // Loss: squared distance to `target`; gradient 2 (x - target).
            let target = Tensor::from_slice(&target, 4, &Device::Cpu).unwrap();
            let loss = (theirs.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            reference.backward_step(&loss).unwrap();
            let grad: Vec<f32> = ours
                .iter()
                .zip(target.to_vec1::<f32>().unwrap())
                .map(|(x, t)| 2.0 * (x - t))
                .collect();
            adam.step(&mut ours, &grad);
        }
        let theirs: Vec<f32> = theirs.as_tensor().to_vec1().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-5, "{ours:?} vs {theirs:?}");
        }
        assert_ne!(ours, start.to_vec());
    }

    #[test]
    fn trained_tokens_are_the_parts_in_order_with_parts_renumbered() {
        let part = |name: &str, tokens| AnswerPart {
            name: name.into(),
            tokens,
        };
        let example = TrainExample {
            prompt: vec![1],
            answer: vec![10, 11, 12, 13, 14, 15],
            parts: vec![part("b", 4..6), part("a", 1..3)],
        };
        let (trained, parts) = trained_tokens(&example);
        assert_eq!(trained, [1, 2, 4, 5]);
        assert_eq!(parts, [part("b", 2..4), part("a", 0..2)]);
        let whole = TrainExample {
            parts: Vec::new(),
            ..example
        };
        assert_eq!(trained_tokens(&whole).0, [0, 1, 2, 3, 4, 5]);
    }
}
