//! Text cleaning shared by every field and header: full-width forms folded to their ordinary
//! (half-width) forms, whitespace trimmed and collapsed.

/// Folds the full-width forms of ASCII (U+FF01–U+FF5E), the ideographic space and the full-width
/// currency signs (`￥`, `￡`, `￠`, `￦`) to their ordinary forms; every other character is kept.
pub fn fold_width(text: &str) -> String {
    text.chars().map(fold_char).collect()
}

fn fold_char(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        '\u{FFE0}' => '¢',
        '\u{FFE1}' => '£',
        '\u{FFE5}' => '¥',
        '\u{FFE6}' => '₩',
        _ => c,
    }
}

/// A cell's text cleaned: widths folded, whitespace runs collapsed to one space, trimmed; `None`
/// when nothing is left.
pub fn clean(text: &str) -> Option<String> {
    let folded = fold_width(text);
    let joined = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}

/// A header reduced for matching: widths folded, lower case, whitespace, underscores and byte
/// order marks removed (`Order ID`, `order_id` and `orderId` all become `orderid`).
pub fn header_key(header: &str) -> String {
    fold_width(header)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '\u{FEFF}')
        .flat_map(char::to_lowercase)
        .collect()
}

/// At most `max` characters of `text`, with `…` when cut (for values quoted in the report).
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_letters_digits_spaces_and_signs_are_folded() {
        assert_eq!(
            fold_width("ＡＣＭＥ　Ｌｔｄ １２３４．５０ ￥"),
            "ACME Ltd 1234.50 ¥"
        );
        assert_eq!(fold_width("上海（星辰）"), "上海(星辰)");
        assert_eq!(fold_width("订单号"), "订单号");
    }

    #[test]
    fn cleaning_trims_and_collapses_whitespace_and_empties_become_none() {
        assert_eq!(clean("  ACME \t  Ltd \n").as_deref(), Some("ACME Ltd"));
        assert_eq!(clean("\u{3000}客户\u{3000}").as_deref(), Some("客户"));
        assert_eq!(clean(" \t "), None);
    }

    #[test]
    fn header_keys_ignore_case_spaces_and_underscores() {
        for header in [
            "order_id",
            "orderId",
            "Order ID",
            " ORDER_ID ",
            "ｏｒｄｅｒ＿ｉｄ",
            "\u{FEFF}order_id",
        ] {
            assert_eq!(header_key(header), "orderid", "{header}");
        }
        assert_eq!(header_key("订单 编号"), "订单编号");
    }

    #[test]
    fn excerpts_cut_long_values_on_character_boundaries() {
        assert_eq!(excerpt("上海星辰贸易", 2), "上海…");
        assert_eq!(excerpt("short", 10), "short");
    }
}
