//! Training inside the model (`lora`, `full`): every step runs its examples through the
//! differentiable model ([`TrainableLlama`]), the start they share (the system prompt) once,
//! back-propagates the loss of their trained answer tokens (each example weighted by its tokens,
//! so a step's loss is the mean over all of them; one example's graph held at a time, the shared
//! start's gradient gathered and sent back through it once) and moves each trained tensor with
//! its own Adam; in the shared epoch loop.

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor, D};

use super::train::{dev_metrics, run_epochs, trained_tokens, Adam, Trainee};
use super::{
    check_examples, DevMetrics, FinetuneError, Progress, TrainExample, TrainOptions, TrainReport,
    TrainableLlama,
};

/// The result of [`train_network`].
#[derive(Debug)]
pub struct NetworkRun {
    /// The model with the trained tensors of the epoch with the lowest dev loss (the initial ones
    /// if no epoch improved on them).
    pub model: TrainableLlama,
    /// How training went.
    pub report: TrainReport,
}

struct NetworkTrainee<'a> {
    model: TrainableLlama,
    adams: Vec<Adam>,
    train: &'a [TrainExample],
    dev: &'a [TrainExample],
}

impl Trainee for NetworkTrainee<'_> {
    type Checkpoint = Vec<Tensor>;

    fn step(&mut self, examples: &[usize]) -> Result<(f64, usize), FinetuneError> {
        let chosen: Vec<&TrainExample> = examples.iter().map(|&e| &self.train[e]).collect();
        let total: usize = chosen.iter().map(|e| e.trained_tokens()).sum();
        let scored: Vec<_> = chosen.iter().map(|e| TrainableLlama::scored(e)).collect();
        let shared = shared_start(&scored);
        // The shared start runs once, its graph kept; each example then runs after a cut copy of
        // its keys and values, back-propagated on its own (one example's graph at a time), and
        // the gradients gathered at the cut go back through the shared start in one last pass.
        let prefix = match shared {
            0 => None,
            _ => Some(self.model.prefix(&scored[0].0[..shared])?),
        };
        let leaves = prefix.as_ref().map(|p| p.leaves()).transpose()?;
        let trained = self.model.trained();
        let mut sums: Vec<Option<Tensor>> = vec![None; trained.len()];
        let mut at_cut: Vec<Option<(Tensor, Tensor)>> = Vec::new();
        let mut loss_sum = 0.0f64;
        for (sequence, positions, targets) in &scored {
            let positions: Vec<usize> = positions.iter().map(|p| p - shared).collect();
            let logits = self.model.logits_after(
                leaves.as_ref().map(|(prefix, _)| prefix),
                &sequence[shared..],
                &positions,
            )?;
            let wanted = Tensor::from_slice(targets, targets.len(), &Device::Cpu)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &wanted)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * targets.len() as f64;
            let grads = (loss * (targets.len() as f64 / total.max(1) as f64))?.backward()?;
            add_grads(&grads, &trained, &mut sums)?;
            if let Some((_, vars)) = &leaves {
                at_cut.resize(vars.len(), None);
                for ((k, v), slot) in vars.iter().zip(&mut at_cut) {
                    let zeros = || k.as_tensor().zeros_like();
                    let grad_k = grads.get(k.as_tensor()).cloned().map_or_else(zeros, Ok)?;
                    let grad_v = grads.get(v.as_tensor()).cloned().map_or_else(zeros, Ok)?;
                    *slot = Some(match slot.take() {
                        Some((sum_k, sum_v)) => ((sum_k + grad_k)?, (sum_v + grad_v)?),
                        None => (grad_k, grad_v),
                    });
                }
            }
        }
        if let Some(prefix) = &prefix {
            let gathered: Vec<(Tensor, Tensor)> = at_cut.into_iter().flatten().collect();
            if gathered.len() == self.model.blocks() {
                let grads = prefix.pull(&gathered)?.backward()?;
                add_grads(&grads, &trained, &mut sums)?;
            }
        }
        for (((_, var), sum), adam) in trained.iter().zip(sums).zip(&mut self.adams) {
            let Some(grad) = sum else { continue };
            let grad: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            let mut params: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
            adam.step(&mut params, &grad);
            var.set(&Tensor::from_vec(params, var.shape(), &Device::Cpu)?)?;
        }
        Ok((loss_sum / total.max(1) as f64, total))
    }

    fn evaluate(&mut self) -> Result<DevMetrics, FinetuneError> {
        if self.dev.is_empty() {
            return Err(FinetuneError::Data("no dev examples to evaluate on".into()));
        }
        let mut loss_sum = 0.0f64;
        let mut right = Vec::new();
        let mut examples = Vec::with_capacity(self.dev.len());
        let dev: Vec<&TrainExample> = self.dev.iter().collect();
        for_each_scored(&self.model, &dev, |example, logits, wanted| {
            let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            loss_sum -= log_probs
                .gather(&wanted.unsqueeze(1)?, 1)?
                .to_dtype(DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()?;
            let best: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
            let targets: Vec<u32> = wanted.to_vec1()?;
            let first = right.len();
            right.extend(best.iter().zip(&targets).map(|(b, t)| b == t));
            examples.push((first..right.len(), trained_tokens(example).1));
            Ok(())
        })?;
        Ok(dev_metrics(
            loss_sum,
            &right,
            examples
                .iter()
                .map(|(rows, parts)| (rows.clone(), parts.as_slice())),
        ))
    }

    fn checkpoint(&self) -> Result<Vec<Tensor>, FinetuneError> {
        self.model
            .trained()
            .iter()
            .map(|(_, var)| Ok(var.as_tensor().copy()?))
            .collect()
    }
}

/// Runs `examples` through `model` for scoring and hands `score` each one's logits at its scored
/// positions with the tokens wanted there. The longest start every sequence shares (the system
/// prompt), up to the first scored position, runs once for all of them.
fn for_each_scored(
    model: &TrainableLlama,
    examples: &[&TrainExample],
    mut score: impl FnMut(&TrainExample, Tensor, Tensor) -> Result<(), FinetuneError>,
) -> Result<(), FinetuneError> {
    let scored: Vec<_> = examples.iter().map(|e| TrainableLlama::scored(e)).collect();
    let shared = shared_start(&scored);
    let prefix = match shared {
        0 => None,
        _ => Some(model.prefix(&scored[0].0[..shared])?.detached()),
    };
    for (example, (sequence, positions, targets)) in examples.iter().zip(scored) {
        let positions: Vec<usize> = positions.iter().map(|p| p - shared).collect();
        let logits = model
            .logits_after(prefix.as_ref(), &sequence[shared..], &positions)?
            .detach();
        let wanted = Tensor::from_vec(targets, positions.len(), &Device::Cpu)?;
        score(example, logits, wanted)?;
    }
    Ok(())
}

/// Adds the gradient `grads` holds for each of `trained` to its running sum.
fn add_grads(
    grads: &candle_core::backprop::GradStore,
    trained: &[(String, &candle_core::Var)],
    sums: &mut [Option<Tensor>],
) -> Result<(), FinetuneError> {
    for ((_, var), sum) in trained.iter().zip(sums) {
        if let Some(grad) = grads.get(var.as_tensor()) {
            *sum = Some(match sum.take() {
                Some(total) => (total + grad)?,
                None => grad.clone(),
            });
        }
    }
    Ok(())
}

/// How many first tokens all the sequences share, stopping at the first scored position of any
/// (every scored position stays in the part each runs on its own).
fn shared_start(scored: &[(Vec<u32>, Vec<usize>, Vec<u32>)]) -> usize {
    let Some((first, ..)) = scored.first() else {
        return 0;
    };
    let limit = scored
        .iter()
        .map(|(_, positions, _)| positions.first().copied().unwrap_or(0))
        .min()
        .unwrap_or(0);
    scored.iter().fold(limit, |shared, (sequence, ..)| {
        first
            .iter()
            .zip(sequence)
            .take(shared)
            .take_while(|(a, b)| a == b)
            .count()
    })
}

/// Trains what `model` makes trainable on `train`, evaluating on `dev` before training and after
/// each epoch, and returns the model with the trained tensors of the epoch with the lowest dev
/// loss. `cancel` is checked between steps; `progress` hears of every step.
pub fn train_network(
    model: TrainableLlama,
    train: &[TrainExample],
    dev: &[TrainExample],
    options: &TrainOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<NetworkRun, FinetuneError> {
    check_examples(train)?;
    check_examples(dev)?;
    let adams = model
        .trained()
        .iter()
        .map(|(_, var)| Adam::new(var.elem_count(), options.learning_rate))
        .collect();
    let mut trainee = NetworkTrainee {
        model,
        adams,
        train,
        dev,
    };
    let (best, report) = run_epochs(&mut trainee, train.len(), options, cancel, progress)?;
    for ((_, var), tensor) in trainee.model.trained().iter().zip(&best) {
        var.set(tensor)?;
    }
    Ok(NetworkRun {
        model: trainee.model,
        report,
    })
}
