//! One labelled example: an e-mail's text and the order it states.

use serde::{Deserialize, Serialize};

/// The order fields the extraction step reads from an e-mail (the `order_email` workflow's
/// schema); a field the e-mail does not state is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Order {
    /// The order or purchase-order number exactly as written.
    pub order_id: Option<String>,
    /// The ordering company exactly as written.
    pub customer: Option<String>,
    /// The order's total.
    pub total: Option<f64>,
    /// ISO code of the total's currency.
    pub currency: Option<String>,
}

impl Order {
    /// The four field names, in the order of the schema.
    pub const FIELDS: [&'static str; 4] = ["order_id", "customer", "total", "currency"];

    /// Whether the field named `field` (one of [`Order::FIELDS`]) is stated.
    pub fn has(&self, field: &str) -> bool {
        match field {
            "order_id" => self.order_id.is_some(),
            "customer" => self.customer.is_some(),
            "total" => self.total.is_some(),
            "currency" => self.currency.is_some(),
            _ => false,
        }
    }
}

/// The language an e-mail is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// English only.
    En,
    /// Chinese only (ids, names and amounts in Latin script aside).
    Zh,
    /// Both.
    Mixed,
}

impl Language {
    /// Every language, in the order statistics list them.
    pub const ALL: [Language; 3] = [Language::En, Language::Zh, Language::Mixed];

    /// The name used in files (`en`, `zh`, `mixed`).
    pub fn name(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Zh => "zh",
            Language::Mixed => "mixed",
        }
    }

    /// Guesses the language of `text`: Chinese when most letters are CJK ideographs, English
    /// when none are, mixed otherwise.
    pub fn detect(text: &str) -> Language {
        let (mut cjk, mut latin) = (0usize, 0usize);
        for c in text.chars() {
            if ('\u{4e00}'..='\u{9fff}').contains(&c) {
                cjk += 1;
            } else if c.is_ascii_alphabetic() {
                latin += 1;
            }
        }
        match (cjk, latin) {
            (0, _) => Language::En,
            // Latin ids and company names are common in Chinese e-mails: a few words of them
            // do not make an e-mail mixed.
            (c, l) if l <= c => Language::Zh,
            _ => Language::Mixed,
        }
    }
}

/// Where an example came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Written by the generator from a structured order.
    Generated,
    /// A hand-labelled e-mail.
    Labelled,
    /// A reviewer's correction of the model's reading.
    Correction,
}

impl Origin {
    /// The name used in files.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Generated => "generated",
            Origin::Labelled => "labelled",
            Origin::Correction => "correction",
        }
    }
}

/// One labelled example, as a line of `train.jsonl`, `dev.jsonl` or `test.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// A hash of the normalized text (16 hex digits): the example's identity.
    pub id: String,
    /// The language of the text.
    pub language: Language,
    /// Where the example came from.
    pub origin: Origin,
    /// Where in its source (file and line, or the order id it was generated from).
    pub source: String,
    /// Whether the text was changed by augmentation (train only).
    #[serde(default)]
    pub augmented: bool,
    /// The e-mail's text.
    pub text: String,
    /// The order the text states: what the model should answer.
    pub output: Order,
}
