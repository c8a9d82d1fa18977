//! Training the output layer on cached hidden states: logits = hidden · headᵀ, cross-entropy on
//! the answer tokens (gradients from candle's autograd) and Adam, in the shared epoch loop.

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor, Var, D};

use super::train::{dev_metrics, run_epochs, Adam, Trainee};
use super::{DevMetrics, Features, FinetuneError, Progress, TrainOptions, TrainReport};

/// Dev rows scored per matrix product (bounds the logits held at once: rows × vocabulary).
const EVAL_CHUNK_ROWS: usize = 256;

/// The result of [`train_head`].
#[derive(Debug)]
pub struct HeadRun {
    /// The head with the lowest dev loss (the initial one if no epoch improved on it):
    /// vocabulary × hidden size, f32.
    pub head: Tensor,
    /// How training went.
    pub report: TrainReport,
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
    let examples = features
        .example_rows()
        .iter()
        .map(|e| (e.rows.clone(), e.parts.as_slice()));
    Ok(dev_metrics(loss_sum, &right, examples))
}

/// The output layer in training, over the cached rows.
struct HeadTrainee<'a> {
    head: Var,
    adam: Adam,
    train: &'a Features,
    dev: &'a Features,
}

impl Trainee for HeadTrainee<'_> {
    type Checkpoint = Tensor;

    fn step(&mut self, examples: &[usize]) -> Result<(f64, usize), FinetuneError> {
        let rows: Vec<usize> = examples
            .iter()
            .flat_map(|&e| self.train.example_rows()[e].rows.clone())
            .collect();
        let (hidden, targets) = gather(self.train, &rows)?;
        let step_loss = train_step(&self.head, &mut self.adam, &hidden, &targets)?;
        Ok((step_loss, rows.len()))
    }

    fn evaluate(&mut self) -> Result<DevMetrics, FinetuneError> {
        evaluate(self.head.as_tensor(), self.dev)
    }

    fn checkpoint(&self) -> Result<Tensor, FinetuneError> {
        Ok(self.head.as_tensor().copy()?)
    }
}

/// Trains a copy of `initial` (vocabulary × hidden size) on `train`, evaluating on `dev` before
/// training and after each epoch, and returns the head with the lowest dev loss. `cancel` is
/// checked between steps; `progress` hears of every step.
pub fn train_head(
    initial: &Tensor,
    train: &Features,
    dev: &Features,
    options: &TrainOptions,
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
    let mut trainee = HeadTrainee {
        head: Var::from_tensor(&initial.to_dtype(DType::F32)?)?,
        adam: Adam::new(vocab * dim, options.learning_rate),
        train,
        dev,
    };
    let (head, report) = run_epochs(&mut trainee, train.examples(), options, cancel, progress)?;
    Ok(HeadRun { head, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::{AnswerPart, StopReason};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

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
        let options = TrainOptions {
            epochs: 30,
            learning_rate: 0.05,
            batch_examples: 1,
            patience: 30,
            ..TrainOptions::default()
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
        assert_eq!(run.report.stop, StopReason::Epochs);
        assert_eq!(run.report.epochs.len(), 30);
        let best = &run.report.epochs[run.report.best_epoch - 1].dev;
        assert!(
            best.loss < run.report.initial.loss / 4.0,
            "{best:?} vs {:?}",
            run.report.initial
        );
        assert_eq!(best.all_parts, 1.0);
        assert_eq!(best.parts, vec![("a".into(), 1.0), ("b".into(), 1.0)]);
        // The head returned is the one evaluated best.
        assert_eq!(evaluate(&run.head, &features).unwrap(), *best);
        // The initial head is untouched.
        assert!(run.report.initial.all_parts < 1.0);
    }

    #[test]
    fn a_cancel_before_the_first_step_keeps_the_initial_head() {
        let (features, initial) = learnable(32, 40, 3);
        let run = train_head(
            &initial,
            &features,
            &features,
            &TrainOptions::default(),
            &AtomicBool::new(true),
            &mut |_| panic!("no step runs"),
        )
        .unwrap();
        assert_eq!(run.report.stop, StopReason::Cancelled);
        assert_eq!(run.report.best_epoch, 0);
        assert!(run.report.epochs.is_empty());
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
        let options = TrainOptions {
            epochs: 3,
            learning_rate: 0.01,
            batch_examples: 1,
            patience: 3,
            ..TrainOptions::default()
        };
        let run = |seed| {
            train_head(
                &initial,
                &features,
                &features,
                &TrainOptions {
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
            a.report
                .epochs
                .iter()
                .map(|e| e.dev.clone())
                .collect::<Vec<_>>(),
            b.report
                .epochs
                .iter()
                .map(|e| e.dev.clone())
                .collect::<Vec<_>>()
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
