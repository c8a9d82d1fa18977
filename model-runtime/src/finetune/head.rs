//! Training the output layer on cached hidden states: logits = hidden · headᵀ, cross-entropy on
//! the answer tokens (gradients from candle's autograd), Adam with its moments updated in place,
//! one evaluation on the dev rows per epoch, and the best head by dev loss kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use super::{Features, FinetuneError};

/// Dev rows scored per matrix product (bounds the logits held at once: rows × vocabulary).
const EVAL_CHUNK_ROWS: usize = 256;

/// How the output layer is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOptions {
    /// Most passes over the training examples.
    pub epochs: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Examples per optimizer step (all their answer tokens together).
    pub batch_examples: usize,
    /// Seed of the order the examples are visited in.
    pub seed: u64,
    /// Stop after this many epochs without a lower dev loss.
    pub patience: usize,
    /// Stop (keeping the best head so far) once training has run this long.
    pub time_limit: Option<Duration>,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
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

/// Scores of a head on the dev rows.
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
    /// The head's scores on the dev rows after the epoch.
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

/// The result of [`train_head`].
#[derive(Debug)]
pub struct HeadRun {
    /// The head with the lowest dev loss (the initial one if no epoch improved on it):
    /// vocabulary × hidden size, f32.
    pub head: Tensor,
    /// The initial head's scores on the dev rows.
    pub initial: DevMetrics,
    /// Each epoch run (an epoch cut short by the time limit or a cancel is evaluated as well).
    pub epochs: Vec<EpochReport>,
    /// The epoch whose head was kept (0: the initial head).
    pub best_epoch: usize,
    /// Why training stopped.
    pub stop: StopReason,
    /// Answer tokens trained on per second, over all steps.
    pub tokens_per_s: f64,
}

/// Adam (β₁ 0.9, β₂ 0.999, ε 1e-8, no weight decay) over one flat parameter vector, its moments
/// updated in place. candle's optimizer builds every update from a dozen whole-matrix
/// temporaries; for a 49,152 × 576 head (113 MB each) that more than doubled the peak memory of
/// training.
struct Adam {
    first: Vec<f32>,
    second: Vec<f32>,
    steps: i32,
    learning_rate: f32,
}

impl Adam {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPSILON: f32 = 1e-8;

    fn new(len: usize, learning_rate: f64) -> Adam {
        Adam {
            first: vec![0.0; len],
            second: vec![0.0; len],
            steps: 0,
            learning_rate: learning_rate as f32,
        }
    }

    /// One step: moves `params` against `grad` (same length).
    fn step(&mut self, params: &mut [f32], grad: &[f32]) {
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

/// One optimizer step on the rows `hidden` predicting `targets`; returns the step's loss.
fn train_step(
    head: &Var,
    adam: &mut Adam,
    hidden: &Tensor,
    targets: &Tensor,
) -> Result<f64, FinetuneError> {
    let step_loss = loss(head.as_tensor(), hidden, targets)?;
    let grad: Vec<f32> = {
        let grads = step_loss.backward()?;
        let grad = grads
            .get(head.as_tensor())
            .ok_or_else(|| FinetuneError::Training("the head received no gradient".into()))?;
        grad.flatten_all()?.to_vec1()?
    };
    let mut params: Vec<f32> = head.as_tensor().flatten_all()?.to_vec1()?;
    adam.step(&mut params, &grad);
    drop(grad);
    head.set(&Tensor::from_vec(params, head.shape(), &Device::Cpu)?)?;
    Ok(f64::from(step_loss.to_scalar::<f32>()?))
}

/// The rows of `features` listed in `rows` as a tensor, with their targets.
fn gather(features: &Features, rows: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
    let dim = features.dim();
    let mut values = Vec::with_capacity(rows.len() * dim);
    let mut targets = Vec::with_capacity(rows.len());
    for &row in rows {
        values.extend_from_slice(features.row(row));
        targets.push(features.target(row));
    }
    Ok((
        Tensor::from_vec(values, (rows.len(), dim), &Device::Cpu)?,
        Tensor::from_vec(targets, rows.len(), &Device::Cpu)?,
    ))
}

/// Mean cross-entropy of `head` on the rows `hidden` predicting `targets`.
fn loss(head: &Tensor, hidden: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let logits = hidden.matmul(&head.t()?)?;
    candle_nn::loss::cross_entropy(&logits, targets)
}

/// Scores `head` on every row of `features`.
pub(super) fn evaluate(head: &Tensor, features: &Features) -> Result<DevMetrics, FinetuneError> {
    let rows = features.rows();
    if rows == 0 {
        return Err(FinetuneError::Data("no dev examples to evaluate on".into()));
    }
    let mut loss_sum = 0.0f64;
    let mut right = vec![false; rows];
    let all: Vec<usize> = (0..rows).collect();
    for chunk in all.chunks(EVAL_CHUNK_ROWS) {
        let (hidden, targets) = gather(features, chunk)?;
        let logits = hidden.matmul(&head.t()?)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let wanted = log_probs
            .gather(&targets.unsqueeze(1)?, 1)?
            .to_dtype(DType::F64)?;
        loss_sum -= wanted.sum_all()?.to_scalar::<f64>()?;
        let best: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        for (&row, predicted) in chunk.iter().zip(best) {
            right[row] = predicted == features.target(row);
        }
    }
    let examples = features.example_rows();
    let mut names: Vec<String> = Vec::new();
    let mut part_hits: Vec<(usize, usize)> = Vec::new();
    let mut all_parts = 0usize;
    for example in examples {
        let rows = &right[example.rows.clone()];
        let mut every_part = true;
        for part in &example.parts {
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
    let n = examples.len().max(1) as f64;
    Ok(DevMetrics {
        loss: loss_sum / rows as f64,
        token_accuracy: right.iter().filter(|r| **r).count() as f64 / rows as f64,
        parts: names
            .into_iter()
            .zip(part_hits)
            .map(|(name, (hit, of))| (name, hit as f64 / of.max(1) as f64))
            .collect(),
        all_parts: all_parts as f64 / n,
    })
}

/// Trains a copy of `initial` (vocabulary × hidden size) on `train`, evaluating on `dev` before
/// training and after each epoch, and returns the head with the lowest dev loss. `cancel` is
/// checked between steps; `progress` hears of every step.
pub fn train_head(
    initial: &Tensor,
    train: &Features,
    dev: &Features,
    options: &HeadOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<HeadRun, FinetuneError> {
    let (vocab, dim) = initial.dims2()?;
    if train.dim() != dim || dev.dim() != dim {
        return Err(FinetuneError::Data(format!(
            "the hidden states have {} values but the head takes {dim}",
            train.dim()
        )));
    }
    if let Some(bad) = (0..train.rows())
        .map(|r| train.target(r))
        .chain((0..dev.rows()).map(|r| dev.target(r)))
        .find(|&t| t as usize >= vocab)
    {
        return Err(FinetuneError::Data(format!(
            "token id {bad} is outside the head's vocabulary of {vocab}"
        )));
    }
    if train.examples() == 0 {
        return Err(FinetuneError::Data("no training examples".into()));
    }
    let head = Var::from_tensor(&initial.to_dtype(DType::F32)?)?;
    let mut adam = Adam::new(vocab * dim, options.learning_rate);
    let initial_metrics = evaluate(head.as_tensor(), dev)?;
    let mut best = (initial_metrics.loss, 0usize, head.as_tensor().copy()?);
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..train.examples()).collect();
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
        for (step, examples) in order.chunks(batch).enumerate() {
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
            let rows: Vec<usize> = examples
                .iter()
                .flat_map(|&e| train.example_rows()[e].rows.clone())
                .collect();
            let (hidden, targets) = gather(train, &rows)?;
            let step_loss = train_step(&head, &mut adam, &hidden, &targets)?;
            loss_sum += step_loss;
            steps += 1;
            trained_tokens += rows.len();
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
            let dev = evaluate(head.as_tensor(), dev)?;
            if dev.loss < best.0 {
                best = (dev.loss, epoch, head.as_tensor().copy()?);
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
    Ok(HeadRun {
        head: best.2,
        initial: initial_metrics,
        epochs,
        best_epoch: best.1,
        stop,
        tokens_per_s: trained_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::AnswerPart;

    /// Features over `vocab` tokens where row `i`'s hidden state is a noisy code of its target,
    /// so that a head can learn the mapping: two examples of three rows each.
    fn learnable(dim: usize, vocab: usize, seed: u64) -> (Features, Tensor) {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(seed);
        let codes: Vec<Vec<f32>> = (0..vocab)
            .map(|_| (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect())
            .collect();
        let targets: Vec<u32> = (0..6).map(|i| (i * 5 % vocab) as u32).collect();
        let hidden: Vec<f32> = targets
            .iter()
            .flat_map(|&t| codes[t as usize].clone())
            .collect();
        let part = |name: &str, tokens| AnswerPart {
            name: name.into(),
            tokens,
        };
        let features = Features::from_parts(
            dim,
            hidden,
            targets,
            vec![
                (0..3, vec![part("a", 0..1), part("b", 1..3)]),
                (3..6, vec![part("a", 0..2), part("b", 2..3)]),
            ],
        );
        let initial: Vec<f32> = (0..vocab * dim).map(|_| rng.gen_range(-0.1..0.1)).collect();
        let initial = Tensor::from_vec(initial, (vocab, dim), &Device::Cpu).unwrap();
        (features, initial)
    }

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
    fn the_head_receives_a_gradient() {
        let (features, initial) = learnable(32, 40, 1);
        let head = Var::from_tensor(&initial).unwrap();
        let rows: Vec<usize> = (0..features.rows()).collect();
        let (hidden, targets) = gather(&features, &rows).unwrap();
        let grads = loss(head.as_tensor(), &hidden, &targets)
            .unwrap()
            .backward()
            .unwrap();
        let grad = grads
            .get(head.as_tensor())
            .expect("the head has a gradient");
        let norm = grad.sqr().unwrap().sum_all().unwrap();
        assert!(norm.to_scalar::<f32>().unwrap() > 0.0);
    }

    #[test]
    fn training_lowers_the_dev_loss_and_keeps_the_best_head() {
        let (features, initial) = learnable(32, 40, 2);
        let options = HeadOptions {
            epochs: 30,
            learning_rate: 0.05,
            batch_examples: 1,
            patience: 30,
            ..HeadOptions::default()
        };
        let run = train_head(
            &initial,
            &features,
            &features,
            &options,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(run.stop, StopReason::Epochs);
        assert_eq!(run.epochs.len(), 30);
        let best = &run.epochs[run.best_epoch - 1].dev;
        assert!(
            best.loss < run.initial.loss / 4.0,
            "{best:?} vs {:?}",
            run.initial
        );
        assert_eq!(best.all_parts, 1.0);
        assert_eq!(best.parts, vec![("a".into(), 1.0), ("b".into(), 1.0)]);
        // The head returned is the one evaluated best.
        assert_eq!(evaluate(&run.head, &features).unwrap(), *best);
        // The initial head is untouched.
        assert!(run.initial.all_parts < 1.0);
    }

    #[test]
    fn a_cancel_before_the_first_step_keeps_the_initial_head() {
        let (features, initial) = learnable(32, 40, 3);
        let run = train_head(
            &initial,
            &features,
            &features,
            &HeadOptions::default(),
            &AtomicBool::new(true),
            &mut |_| panic!("no step runs"),
        )
        .unwrap();
        assert_eq!(run.stop, StopReason::Cancelled);
        assert_eq!(run.best_epoch, 0);
        assert!(run.epochs.is_empty());
        let diff = (&run.head - &initial)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn training_is_reproducible_for_a_seed() {
        let (features, initial) = learnable(32, 40, 4);
        let options = HeadOptions {
            epochs: 3,
            learning_rate: 0.01,
            batch_examples: 1,
            patience: 3,
            ..HeadOptions::default()
        };
        let run = |seed| {
            train_head(
                &initial,
                &features,
                &features,
                &HeadOptions {
                    seed,
                    ..options.clone()
                },
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap()
        };
        let (a, b) = (run(7), run(7));
        assert_eq!(
            a.epochs.iter().map(|e| e.dev.clone()).collect::<Vec<_>>(),
            b.epochs.iter().map(|e| e.dev.clone()).collect::<Vec<_>>()
        );
        let diff = (&a.head - &b.head)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
