//! Training data for the order case's language-model steps.
//!
//! [`build`] turns three kinds of source into a data set of labelled examples (an e-mail's
//! text and the order it states): structured orders (the intake's aligned JSONL), from which
//! [`generate`] writes realistic e-mails in English, Chinese or both; reviewers' corrections of
//! what the model read from an e-mail; and hand-labelled e-mails (`NAME.txt` beside
//! `NAME.expected.json`). Every example is cleaned ([`clean`]), de-duplicated by a hash of its
//! normalized text, and split deterministically by that hash and a seed into train, dev and test,
//! stratified by language ([`split`]); augmentation ([`augment`]) is applied to train only.
//!
//! Invariants: no normalized text is in more than one split; the same inputs and seed give
//! byte-identical output files; an augmented example keeps its label's order id, customer and
//! amount text verbatim.

pub mod augment;
mod build;
pub mod clean;
mod error;
mod example;
pub mod generate;
pub mod sources;
pub mod split;

pub use build::{build, BuildConfig, BuildReport, SplitStats, Stats};
pub use error::DatasetError;
pub use example::{Example, Language, Order, Origin};

#[cfg(test)]
mod tests;
