//! Augmentation of small training sets: synonym replacement, random insertion and random
//! deletion, in English and Chinese.
//!
//! The label must stay true: nothing inside the order id or the customer's name is touched,
//! no word holding a digit is deleted or replaced, and currency words (`dollars`, `元`, `RMB`,
//! ...) are never deleted, so the total and its currency read the same after augmentation.
//! Augmentation is applied to the train split only (see [`crate::build`]).

use crate::example::Order;
use rand::seq::SliceRandom;
use rand::Rng;
use std::ops::Range;

/// Up to `count` variants of `text` (labelled `order`), each with one to three edits, none equal
/// to `text` or to another variant.
pub fn variants(text: &str, order: &Order, count: usize, rng: &mut impl Rng) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(count);
    // Edits can fail to apply (nothing to replace or delete): a few tries per wanted variant.
    for _ in 0..count * 4 {
        if out.len() == count {
            break;
        }
        let mut variant = text.to_string();
        for _ in 0..rng.gen_range(1..=3) {
            let protected = protected_ranges(&variant, order);
            let edited = match rng.gen_range(0..3) {
                0 => replace_synonym(&variant, &protected, rng),
                1 => Some(insert_filler(&variant, rng)),
                _ => delete_word(&variant, &protected, rng),
            };
            if let Some(edited) = edited {
                variant = edited;
            }
        }
        if variant != text && !out.contains(&variant) {
            out.push(variant);
        }
    }
    out
}

/// The byte ranges of `text` no edit may touch: every occurrence of the order id and the
/// customer's name.
pub fn protected_ranges(text: &str, order: &Order) -> Vec<Range<usize>> {
    [order.order_id.as_deref(), order.customer.as_deref()]
        .into_iter()
        .flatten()
        .filter(|value| !value.is_empty())
        .flat_map(|value| {
            text.match_indices(value)
                .map(move |(start, found)| start..start + found.len())
        })
        .collect()
}

/// Replaces one phrase of the synonym table, outside protected ranges, by one of its synonyms.
fn replace_synonym(text: &str, protected: &[Range<usize>], rng: &mut impl Rng) -> Option<String> {
    let candidates: Vec<(Range<usize>, &[&str])> = SYNONYMS
        .iter()
        .flat_map(|(phrase, synonyms)| {
            text.match_indices(phrase)
                .map(move |(start, _)| (start..start + phrase.len(), *synonyms))
        })
        .filter(|(range, _)| is_whole_word(text, range) && !overlaps(range, protected))
        .collect();
    let (range, synonyms) = candidates.choose(rng)?;
    let synonym = synonyms.choose(rng)?;
    Some(format!(
        "{}{synonym}{}",
        &text[..range.start],
        &text[range.end..]
    ))
}

/// Inserts a filler sentence at the end of a random line, in the text's language.
fn insert_filler(text: &str, rng: &mut impl Rng) -> String {
    let chinese = text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    let fillers = if chinese && (rng.gen_bool(0.7) || !text.is_ascii()) {
        ZH_FILLERS
    } else {
        EN_FILLERS
    };
    let filler = fillers.choose(rng).copied().unwrap_or_default();
    let line_ends: Vec<usize> = text
        .match_indices('\n')
        .map(|(at, _)| at)
        .chain(std::iter::once(text.len()))
        .collect();
    let at = *line_ends.choose(rng).unwrap_or(&text.len());
    let separator = if chinese { "" } else { " " };
    format!("{}{separator}{filler}{}", &text[..at], &text[at..])
}

/// Deletes one word: an ASCII word of letters outside protected ranges that is not a currency
/// word, or one Chinese courtesy phrase.
fn delete_word(text: &str, protected: &[Range<usize>], rng: &mut impl Rng) -> Option<String> {
    let mut candidates: Vec<Range<usize>> = Vec::new();
    let mut offset = 0;
    for word in text.split_inclusive([' ', '\n']) {
        let bare = word.trim_end_matches([' ', '\n']);
        let range = offset..offset + bare.len();
        offset += word.len();
        let letters = bare.trim_end_matches([',', '.', '!', '?', ';', ':']);
        if letters.len() >= 2
            && letters.chars().all(|c| c.is_ascii_alphabetic())
            && !CURRENCY_WORDS.contains(&letters.to_ascii_lowercase().as_str())
            && !overlaps(&range, protected)
        {
            candidates.push(range.start..range.start + letters.len());
        }
    }
    for phrase in ZH_DELETABLE {
        for (start, _) in text.match_indices(phrase) {
            let range = start..start + phrase.len();
            if !overlaps(&range, protected) {
                candidates.push(range);
            }
        }
    }
    let range = candidates.choose(rng)?;
    let after = text[range.end..]
        .strip_prefix(' ')
        .unwrap_or(&text[range.end..]);
    Some(format!("{}{after}", &text[..range.start]))
}

/// Whether `range` of `text` is not part of a longer ASCII word.
fn is_whole_word(text: &str, range: &Range<usize>) -> bool {
    let before = text[..range.start].chars().next_back();
    let after = text[range.end..].chars().next();
    let joins = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ascii = text[range.clone()].is_ascii();
    !ascii || (!joins(before) && !joins(after))
}

/// Whether `range` overlaps any of `protected`.
fn overlaps(range: &Range<usize>, protected: &[Range<usize>]) -> bool {
    protected
        .iter()
        .any(|p| range.start < p.end && p.start < range.end)
}

const SYNONYMS: &[(&str, &[&str])] = &[
    ("Hello", &["Hi", "Greetings"]),
    ("Thanks", &["Thank you", "Many thanks"]),
    ("please", &["kindly"]),
    ("Please", &["Kindly"]),
    ("would like to", &["want to", "wish to"]),
    ("Best regards", &["Kind regards", "Warm regards"]),
    ("ship", &["deliver", "send"]),
    ("confirm", &["acknowledge"]),
    ("Delivery", &["Shipment"]),
    ("您好", &["你好"]),
    ("谢谢", &["多谢", "感谢"]),
    ("合计", &["共计", "总计"]),
    ("发货", &["出货"]),
    ("确认", &["核实"]),
    ("下单", &["订货"]),
];
const EN_FILLERS: &[&str] = &[
    "Thanks in advance.",
    "Hope you are well.",
    "Please confirm receipt.",
    "Let me know if you need anything else.",
];
const ZH_FILLERS: &[&str] = &[
    "请尽快处理。",
    "辛苦了。",
    "麻烦确认一下。",
    "如有问题请联系我。",
];
const ZH_DELETABLE: &[&str] = &["谢谢！", "请确认。", "此致", "您好，"];
const CURRENCY_WORDS: &[&str] = &[
    "dollars",
    "dollar",
    "euros",
    "euro",
    "pounds",
    "pound",
    "yen",
    "francs",
    "franc",
    "rmb",
    "cny",
    "usd",
    "eur",
    "gbp",
    "jpy",
    "hkd",
    "chf",
    "aud",
    "australian",
];
