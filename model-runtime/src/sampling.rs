//! Choosing the next token from logits: greedy, or sampled with temperature, top-k, top-p and a
//! repetition penalty, from a seeded generator (same seed, same choices).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingOptions {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1.0: all).
    pub top_p: f32,
    /// Divides positive logits (multiplies negative ones) of tokens already generated; 1.0: off.
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repetition_window: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            repetition_window: 64,
            seed: 0,
        }
    }
}

/// A seeded sampler.
pub struct Sampler {
    options: SamplingOptions,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded from `options.seed`.
    pub fn new(options: SamplingOptions) -> Self {
        let rng = StdRng::seed_from_u64(options.seed);
        Self { options, rng }
    }

    /// The settings.
    pub fn options(&self) -> &SamplingOptions {
        &self.options
    }

    /// Applies the repetition penalty to `logits` for the tokens in `recent`.
    pub fn penalize(&self, logits: &mut [f32], recent: &[u32]) {
        let penalty = self.options.repetition_penalty;
        if (penalty - 1.0).abs() < f32::EPSILON {
            return;
        }
        let window = &recent[recent.len().saturating_sub(self.options.repetition_window)..];
        let mut seen = std::collections::HashSet::new();
        for &id in window {
            if !seen.insert(id) {
                continue;
            }
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }

    /// Picks one of `candidates` (token id and logit; non-empty, order irrelevant).
    pub fn pick(&mut self, candidates: &mut Vec<(u32, f32)>) -> Option<u32> {
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let opts = &self.options;
        if opts.temperature <= 0.0 {
            return Some(candidates[0].0);
        }
        if opts.top_k > 0 && candidates.len() > opts.top_k {
            candidates.truncate(opts.top_k);
        }
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates
            .iter()
            .map(|(_, l)| ((l - max) / opts.temperature).exp())
            .collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if opts.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cumulative += p;
                if cumulative >= opts.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let total: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let mut draw: f32 = self.rng.gen();
        for (i, p) in probs.iter().enumerate() {
            if draw < *p {
                return Some(candidates[i].0);
            }
            draw -= p;
        }
        Some(candidates[probs.len() - 1].0)
    }

    /// Picks from full logits (no constraint).
    pub fn pick_from_logits(&mut self, logits: &[f32]) -> Option<u32> {
        if self.options.temperature <= 0.0 {
            return logits
                .iter()
                .enumerate()
                .fold(None, |best: Option<(usize, f32)>, (i, &l)| match best {
                    Some((_, b)) if b >= l => best,
                    _ => Some((i, l)),
                })
                .map(|(i, _)| i as u32);
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        self.pick(&mut candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..50).map(|i| ((i * 37) % 50) as f32 / 10.0).collect()
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(SamplingOptions::default());
        let l = logits();
        let best = l.iter().cloned().fold(f32::MIN, f32::max);
        let id = s.pick_from_logits(&l).unwrap();
        assert_eq!(l[id as usize], best);
    }

    #[test]
    fn same_seed_gives_same_draws_and_other_seeds_differ() {
        let opts = SamplingOptions {
            temperature: 1.5,
            seed: 7,
            ..Default::default()
        };
        let draws = |o: SamplingOptions| {
            let mut s = Sampler::new(o);
            (0..40)
                .map(|_| s.pick_from_logits(&logits()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(opts.clone()), draws(opts.clone()));
        assert_ne!(
            draws(opts.clone()),
            draws(SamplingOptions { seed: 8, ..opts })
        );
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplingOptions {
            temperature: 2.0,
            top_k: 1,
            seed: 3,
            ..Default::default()
        });
        let l = logits();
        let greedy = Sampler::new(SamplingOptions::default()).pick_from_logits(&l);
        for _ in 0..20 {
            assert_eq!(s.pick_from_logits(&l), greedy);
        }
    }

    #[test]
    fn repetition_penalty_lowers_seen_tokens() {
        let s = Sampler::new(SamplingOptions {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        let mut l = vec![4.0, -1.0, 3.0];
        s.penalize(&mut l, &[0, 1]);
        assert_eq!(l, vec![2.0, -2.0, 3.0]);
    }
}
