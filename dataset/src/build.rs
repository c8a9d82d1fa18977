//! The whole build: read, generate, clean, de-duplicate, split, augment, write.

use crate::augment;
use crate::clean::{self, MAX_TEXT_CHARS};
use crate::example::{Example, Language, Order, Origin};
use crate::generate;
use crate::sources::{self, LabelledText, Problem, SourceOrder};
use crate::split::{self, Ratio, Splits};
use crate::DatasetError;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What to build a data set from, and how.
#[derive(Debug, Clone, Default)]
pub struct BuildConfig {
    /// The intake's aligned orders (JSONL) to write e-mails from.
    pub orders: Option<PathBuf>,
    /// Reviewers' corrections (JSONL).
    pub corrections: Option<PathBuf>,
    /// Folders of hand-labelled e-mails.
    pub emails: Vec<PathBuf>,
    /// Invented orders to write e-mails from, beside the intake's.
    pub synthetic: usize,
    /// E-mails written per order (intake or invented).
    pub emails_per_order: usize,
    /// train:dev:test.
    pub ratio: Ratio,
    /// Seed of the generator, the split and the augmentation.
    pub seed: u64,
    /// Augmented variants added per train example.
    pub augment: usize,
    /// The folder the files are written to (created if missing).
    pub out: PathBuf,
}

/// Counts of one split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SplitStats {
    /// Examples in the split.
    pub examples: usize,
    /// Of them, augmented variants.
    pub augmented: usize,
    /// Examples per language.
    pub languages: BTreeMap<&'static str, usize>,
    /// Examples per origin.
    pub origins: BTreeMap<&'static str, usize>,
    /// Examples whose label states each field.
    pub fields: BTreeMap<&'static str, usize>,
}

/// `stats.json`: what went in, what was left out, and what each split holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// The seed used.
    pub seed: u64,
    /// The ratio used, as `train:dev:test`.
    pub split: String,
    /// Items read or written per origin, before cleaning.
    pub inputs: BTreeMap<&'static str, usize>,
    /// Items left out by cleaning (empty, too long, a label not in its text) and sources that
    /// could not be used, with where and why.
    pub dropped: Vec<Problem>,
    /// Items whose normalized text was already in the set (kept once).
    pub duplicates: usize,
    /// Per split.
    pub train: SplitStats,
    /// Per split.
    pub dev: SplitStats,
    /// Per split.
    pub test: SplitStats,
}

/// What a build did.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    /// The statistics written to `stats.json`.
    pub stats: Stats,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// Builds the data set described by `config` and writes `train.jsonl`, `dev.jsonl`,
/// `test.jsonl` and `stats.json` into its `out` folder.
pub fn build(config: &BuildConfig) -> Result<BuildReport, DatasetError> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut stats = Stats {
        seed: config.seed,
        split: format!(
            "{}:{}:{}",
            config.ratio.train, config.ratio.dev, config.ratio.test
        ),
        ..Stats::default()
    };
    let mut items: Vec<LabelledText> = Vec::new();

    let mut orders: Vec<SourceOrder> = Vec::new();
    if let Some(path) = &config.orders {
        let read = sources::read_orders(path)?;
        orders.extend(read.items);
        stats.dropped.extend(read.problems);
    }
    let synthetic = generate::synthetic_orders(config.synthetic, &mut rng);
    orders.extend(
        synthetic
            .into_iter()
            .enumerate()
            .map(|(index, order)| SourceOrder {
                source: format!("synthetic order {}", index + 1),
                order,
            }),
    );
    for SourceOrder { source, order } in &orders {
        for _ in 0..config.emails_per_order.max(1) {
            match generate::email(order, &mut rng) {
                Some((text, label)) => items.push(LabelledText {
                    text,
                    order: label,
                    origin: Origin::Generated,
                    source: source.clone(),
                }),
                None => {
                    stats.dropped.push(Problem {
                        source: source.clone(),
                        reason: format!(
                            "no e-mail written: currency {:?} is not one the extraction knows ({})",
                            order.currency.as_deref().unwrap_or(""),
                            generate::CURRENCIES.join(", ")
                        ),
                    });
                    break;
                }
            }
        }
    }
    if let Some(path) = &config.corrections {
        let read = sources::read_corrections(path)?;
        items.extend(read.items);
        stats.dropped.extend(read.problems);
    }
    for dir in &config.emails {
        let read = sources::read_labelled(dir)?;
        items.extend(read.items);
        stats.dropped.extend(read.problems);
    }
    for item in &items {
        *stats.inputs.entry(item.origin.name()).or_default() += 1;
    }

    let mut seen = HashSet::new();
    let mut examples = Vec::new();
    for item in items {
        match cleaned(item) {
            Ok(example) => {
                if seen.insert(example.id.clone()) {
                    examples.push(example);
                } else {
                    stats.duplicates += 1;
                }
            }
            Err(problem) => stats.dropped.push(problem),
        }
    }

    let mut splits = split::split(examples, config.ratio, config.seed);
    augment_train(&mut splits, &mut seen, config.augment, &mut rng);

    stats.train = split_stats(&splits.train);
    stats.dev = split_stats(&splits.dev);
    stats.test = split_stats(&splits.test);

    std::fs::create_dir_all(&config.out).map_err(|e| DatasetError::io(&config.out, e))?;
    let mut files = Vec::new();
    for (name, part) in [
        ("train.jsonl", &splits.train),
        ("dev.jsonl", &splits.dev),
        ("test.jsonl", &splits.test),
    ] {
        files.push(write_jsonl(&config.out.join(name), part)?);
    }
    let stats_path = config.out.join("stats.json");
    let text = serde_json::to_string_pretty(&stats).expect("statistics serialize");
    std::fs::write(&stats_path, text + "\n").map_err(|e| DatasetError::io(&stats_path, e))?;
    files.push(stats_path);
    Ok(BuildReport { stats, files })
}

/// `item` cleaned into an example, or why it was left out.
fn cleaned(item: LabelledText) -> Result<Example, Problem> {
    let text = clean::normalize(&item.text);
    let problem = |reason: String| Problem {
        source: item.source.clone(),
        reason,
    };
    if text.is_empty() {
        return Err(problem("empty text".into()));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(problem(format!(
            "text of {chars} characters, longer than {MAX_TEXT_CHARS}"
        )));
    }
    let output = Order {
        order_id: item.order.order_id.as_deref().map(clean::normalize_value),
        customer: item.order.customer.as_deref().map(clean::normalize_value),
        total: item.order.total,
        currency: item
            .order
            .currency
            .as_deref()
            .map(|c| clean::normalize_value(c).to_uppercase()),
    };
    for (field, value) in [
        ("order_id", &output.order_id),
        ("customer", &output.customer),
    ] {
        if let Some(value) = value {
            if !text.contains(value.as_str()) {
                return Err(problem(format!(
                    "the label's {field} `{value}` is not in the text"
                )));
            }
        }
    }
    Ok(Example {
        id: clean::text_hash(&text),
        language: Language::detect(&text),
        origin: item.origin,
        source: item.source,
        augmented: false,
        text,
        output,
    })
}

/// Adds up to `count` augmented variants of every (original) train example; a variant whose
/// normalized text is already anywhere in the set is left out, so no text is in two splits.
fn augment_train(splits: &mut Splits, seen: &mut HashSet<String>, count: usize, rng: &mut StdRng) {
    if count == 0 {
        return;
    }
    let mut added = Vec::new();
    for example in &splits.train {
        for variant in augment::variants(&example.text, &example.output, count, rng) {
            let text = clean::normalize(&variant);
            let id = clean::text_hash(&text);
            if seen.insert(id.clone()) {
                added.push(Example {
                    id,
                    language: Language::detect(&text),
                    augmented: true,
                    text,
                    ..example.clone()
                });
            }
        }
    }
    splits.train.extend(added);
}

/// The counts of one split.
fn split_stats(examples: &[Example]) -> SplitStats {
    let mut stats = SplitStats {
        examples: examples.len(),
        ..SplitStats::default()
    };
    for language in Language::ALL {
        stats.languages.insert(language.name(), 0);
    }
    for field in Order::FIELDS {
        stats.fields.insert(field, 0);
    }
    for example in examples {
        stats.augmented += usize::from(example.augmented);
        *stats.languages.entry(example.language.name()).or_default() += 1;
        *stats.origins.entry(example.origin.name()).or_default() += 1;
        for field in Order::FIELDS {
            if example.output.has(field) {
                *stats.fields.entry(field).or_default() += 1;
            }
        }
    }
    stats
}

/// Writes one example per line.
fn write_jsonl(path: &Path, examples: &[Example]) -> Result<PathBuf, DatasetError> {
    let file = std::fs::File::create(path).map_err(|e| DatasetError::io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    for example in examples {
        let line = serde_json::to_string(example).expect("examples serialize");
        writeln!(out, "{line}").map_err(|e| DatasetError::io(path, e))?;
    }
    out.flush().map_err(|e| DatasetError::io(path, e))?;
    Ok(path.to_path_buf())
}
