//! Cleaning: one normal form for every text, and the hash that identifies it.
//!
//! Full-width letters, digits and hyphens (`ＳＯ－１００１`) and the ideographic space become
//! their ASCII equivalents (Chinese punctuation such as `，` and `：` stays: it is how people write); spaces and tabs inside a line collapse to one space; lines are trimmed; runs of
//! blank lines become one; the whole text is trimmed. Labels go through the same normal form,
//! so an order id written in full-width digits still appears verbatim in its text.

use sha2::{Digest, Sha256};

/// The longest text kept, in characters; longer items are dropped and reported.
pub const MAX_TEXT_CHARS: usize = 4_000;

/// `text` in the normal form described in the module documentation.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.lines() {
        let line = collapse_spaces(&to_half_width(line));
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        out.push_str(&line);
        blank_run = 0;
    }
    out
}

/// A label value (order id, customer, currency) in the same normal form, on one line.
pub fn normalize_value(value: &str) -> String {
    collapse_spaces(&to_half_width(value))
}

/// The identity of a normalized text: the first 16 hex digits of its SHA-256.
pub fn text_hash(normalized: &str) -> String {
    let digest = Sha256::digest(normalized.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Full-width digits, letters and hyphen-minus, and the ideographic space, to ASCII; other
/// full-width forms are Chinese punctuation and stay, as does the full-width yen sign `￥`.
fn to_half_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{ff10}'..='\u{ff19}'
            | '\u{ff21}'..='\u{ff3a}'
            | '\u{ff41}'..='\u{ff5a}'
            | '\u{ff0d}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect()
}

/// Trims `line` and collapses every run of whitespace inside it to one space.
fn collapse_spaces(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_forms_spaces_and_blank_lines_are_normalized() {
        let text =
            "  Ｏｒｄｅｒ　ＳＯ－１００１ \t total ￥１２００，谢谢！  \r\n\n\n\nThanks\t\tTom  ";
        assert_eq!(
            normalize(text),
            "Order SO-1001 total ￥1200，谢谢！\n\nThanks Tom"
        );
        assert_eq!(normalize_value(" ＡＣＭＥ　 Ltd "), "ACME Ltd");
    }

    #[test]
    fn the_hash_is_stable_and_tells_texts_apart() {
        assert_eq!(text_hash("a"), text_hash("a"));
        assert_ne!(text_hash("a"), text_hash("b"));
        assert_eq!(text_hash("a").len(), 16);
    }
}
