//! Money amounts as exact decimals with two places, and the currency an amount or a currency
//! column names. Numbers go from text to [`Decimal`] directly: no float on the way.

use crate::text::fold_width;
use rust_decimal::Decimal;

/// Why an amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a number in the expected style (digits, grouping, one decimal separator).
    #[error("is not a number (decimal separator `{0}`)")]
    NotANumber(char),
    /// More than two decimal places that are not zeros: rounding would change the amount.
    #[error("has more than two decimal places")]
    TooManyDecimals,
    /// Larger than an exact decimal holds.
    #[error("is too large")]
    TooLarge,
    /// A currency before and another after the number.
    #[error("names two currencies, {0} and {1}")]
    TwoCurrencies(String, String),
}

/// How a file writes its amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountStyle {
    /// `.` (`1,234.50`, the default) or `,` (`1.234,50`).
    pub decimal_separator: char,
    /// The file's default currency (ISO code): decides what `¥` and `$` mean when it uses one of
    /// them (`¥` is CNY unless the default is JPY; `$` is USD unless the default is another dollar).
    pub default_currency: Option<String>,
}

impl Default for AmountStyle {
    fn default() -> Self {
        AmountStyle {
            decimal_separator: '.',
            default_currency: None,
        }
    }
}

/// Reads an amount such as `1,234.5`, `¥1,234.50`, `￥1,234.5`, `1234.50 元`, `USD 1,234.50`,
/// `-12.00`, `(12.00)` or, with `,` as decimal separator, `1.234,50 €`; a JSON number in
/// exponent form (`1.2345e3`) is read too. Returns the amount with exactly two decimal places and
/// the currency the text names, if any.
pub fn parse_amount(
    text: &str,
    style: &AmountStyle,
) -> Result<(Decimal, Option<String>), AmountError> {
    let not_a_number = AmountError::NotANumber(style.decimal_separator);
    let folded = fold_width(text);
    let mut rest = folded.trim();
    let mut negative = false;
    if let Some(inner) = rest
        .strip_prefix('(')
        .and_then(|inner| inner.strip_suffix(')'))
    {
        negative = true;
        rest = inner.trim();
    } else if let Some(inner) = rest.strip_prefix('-') {
        negative = true;
        rest = inner.trim_start();
    }
    let start = rest
        .find(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | ','))
        .ok_or(not_a_number.clone())?;
    let end = rest
        .rfind(|c: char| c.is_ascii_digit())
        .map(|i| i + 1)
        .ok_or(not_a_number.clone())?;
    if end <= start {
        return Err(not_a_number);
    }
    let currency = currency_around(rest[..start].trim(), rest[end..].trim(), style)?;
    let mut number = &rest[start..end];
    if let Some(unsigned) = number.strip_prefix('-') {
        if negative {
            return Err(not_a_number);
        }
        negative = true;
        number = unsigned;
    } else if let Some(unsigned) = number.strip_prefix('+') {
        number = unsigned;
    }
    let value = if number.contains(['e', 'E']) {
        Decimal::from_scientific(number).map_err(|_| not_a_number.clone())?
    } else {
        parse_number(number, style.decimal_separator)?
    };
    let value = two_places(value)?;
    Ok((if negative { -value } else { value }, currency))
}

/// The currency named before or after the number; text there that is not a currency makes the
/// whole amount not a number.
fn currency_around(
    prefix: &str,
    suffix: &str,
    style: &AmountStyle,
) -> Result<Option<String>, AmountError> {
    let default = style.default_currency.as_deref();
    let read = |part: &str| -> Result<Option<String>, AmountError> {
        if part.is_empty() {
            return Ok(None);
        }
        parse_currency(part, default)
            .map(Some)
            .ok_or(AmountError::NotANumber(style.decimal_separator))
    };
    match (read(prefix)?, read(suffix)?) {
        (Some(before), Some(after)) if before != after => {
            Err(AmountError::TwoCurrencies(before, after))
        }
        (before, after) => Ok(before.or(after)),
    }
}

/// Digits with optional grouping (`,` or `.`, whichever is not the decimal separator, or spaces)
/// in groups of three, and at most one decimal separator.
fn parse_number(text: &str, decimal: char) -> Result<Decimal, AmountError> {
    let not_a_number = AmountError::NotANumber(decimal);
    let grouping = |c: char| {
        (c == if decimal == '.' { ',' } else { '.' })
            || matches!(c, ' ' | '\u{A0}' | '\u{202F}' | '\'')
    };
    let (integer, fraction) = match text.split_once(decimal) {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text, None),
    };
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_a_number);
        }
    }
    let digits: String = if integer.contains(grouping) {
        let groups: Vec<&str> = integer.split(grouping).collect();
        let well_grouped = groups.iter().enumerate().all(|(i, group)| {
            let size_ok = if i == 0 {
                (1..=3).contains(&group.len())
            } else {
                group.len() == 3
            };
            size_ok && group.bytes().all(|b| b.is_ascii_digit())
        });
        if !well_grouped {
            return Err(not_a_number);
        }
        groups.concat()
    } else if integer.bytes().all(|b| b.is_ascii_digit())
        && !(integer.is_empty() && fraction.is_none())
    {
        integer.to_string()
    } else {
        return Err(not_a_number);
    };
    let exact = match fraction {
        Some(fraction) => format!(
            "{}.{fraction}",
            if digits.is_empty() { "0" } else { &digits }
        ),
        None => digits,
    };
    Decimal::from_str_exact(&exact).map_err(|_| AmountError::TooLarge)
}

/// The value with exactly two decimal places; refused when that would round it.
fn two_places(value: Decimal) -> Result<Decimal, AmountError> {
    let mut value = value.normalize();
    if value.scale() > 2 {
        return Err(AmountError::TooManyDecimals);
    }
    value.rescale(2);
    if value.scale() != 2 {
        return Err(AmountError::TooLarge);
    }
    Ok(value)
}

/// The ISO 4217 code a currency text names: a three-letter code in any case, a symbol (`¥`,
/// `$`, `US$`, `€`, `£`, …) or a name (`元`, `人民币`, `RMB`, `美元`, `欧元`, …). `default` (the
/// file's default currency) decides between currencies that share a symbol.
pub fn parse_currency(text: &str, default: Option<&str>) -> Option<String> {
    const DOLLARS: [&str; 8] = ["USD", "HKD", "CAD", "AUD", "SGD", "NZD", "TWD", "MXN"];
    let folded = fold_width(text);
    let upper = folded.trim().to_uppercase();
    let code = match upper.as_str() {
        "¥" if default == Some("JPY") => "JPY",
        "¥" | "CN¥" | "RMB" | "元" | "人民币" | "人民币元" => "CNY",
        "$" => default
            .filter(|code| DOLLARS.contains(code))
            .unwrap_or("USD"),
        "US$" | "美元" => "USD",
        "€" | "欧元" => "EUR",
        "£" | "英镑" => "GBP",
        "JP¥" | "円" | "日元" => "JPY",
        "HK$" | "港元" | "港币" => "HKD",
        "₩" => "KRW",
        "₹" => "INR",
        code if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) => code,
        _ => return None,
    };
    Some(code.to_string())
}

/// The amount as its text with two places (`1234.50`).
pub fn amount_text(amount: &Decimal) -> String {
    let mut amount = *amount;
    amount.rescale(2);
    amount.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<(String, Option<String>), AmountError> {
        parse_amount(text, &AmountStyle::default())
            .map(|(value, currency)| (value.to_string(), currency))
    }

    fn ok(text: &str) -> (String, Option<String>) {
        read(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn plain_and_grouped_numbers_get_two_places() {
        assert_eq!(ok("1,234.5"), ("1234.50".into(), None));
        assert_eq!(ok("1234.50"), ("1234.50".into(), None));
        assert_eq!(ok("1234"), ("1234.00".into(), None));
        assert_eq!(ok("1,234,567.89"), ("1234567.89".into(), None));
        assert_eq!(ok(" 12 "), ("12.00".into(), None));
        assert_eq!(ok("0.1"), ("0.10".into(), None));
        assert_eq!(ok(".5"), ("0.50".into(), None));
        assert_eq!(ok("1234.500"), ("1234.50".into(), None));
    }

    #[test]
    fn currency_symbols_codes_and_names_are_recognized() {
        assert_eq!(ok("¥1,234.50"), ("1234.50".into(), Some("CNY".into())));
        assert_eq!(ok("￥1,234.5"), ("1234.50".into(), Some("CNY".into())));
        assert_eq!(ok("1234.50 元"), ("1234.50".into(), Some("CNY".into())));
        assert_eq!(ok("1234.50元"), ("1234.50".into(), Some("CNY".into())));
        assert_eq!(ok("RMB 99"), ("99.00".into(), Some("CNY".into())));
        assert_eq!(
            ok("人民币 12,800.00"),
            ("12800.00".into(), Some("CNY".into()))
        );
        assert_eq!(ok("USD 1,234.50"), ("1234.50".into(), Some("USD".into())));
        assert_eq!(ok("usd 1,234.50"), ("1234.50".into(), Some("USD".into())));
        assert_eq!(ok("$12,450.00"), ("12450.00".into(), Some("USD".into())));
        assert_eq!(ok("€3,450.00"), ("3450.00".into(), Some("EUR".into())));
        assert_eq!(ok("1234.50 EUR"), ("1234.50".into(), Some("EUR".into())));
        assert_eq!(ok("£7"), ("7.00".into(), Some("GBP".into())));
    }

    #[test]
    fn full_width_digits_and_signs_are_read() {
        assert_eq!(
            ok("￥１，２３４．５"),
            ("1234.50".into(), Some("CNY".into()))
        );
    }

    #[test]
    fn decimal_comma_is_read_where_the_style_says_so() {
        let style = AmountStyle {
            decimal_separator: ',',
            default_currency: None,
        };
        let read = |text: &str| {
            parse_amount(text, &style).map(|(value, currency)| (value.to_string(), currency))
        };
        assert_eq!(
            read("1.234,50 €"),
            Ok(("1234.50".into(), Some("EUR".into())))
        );
        assert_eq!(read("1 234,5"), Ok(("1234.50".into(), None)));
        assert_eq!(read("12,5"), Ok(("12.50".into(), None)));
        // The same texts with the default style are refused, not misread.
        let plain = |text: &str| parse_amount(text, &AmountStyle::default());
        assert_eq!(plain("1.234,50 €"), Err(AmountError::NotANumber('.')));
        assert_eq!(plain("1.234"), Err(AmountError::TooManyDecimals));
    }

    #[test]
    fn negative_amounts_in_both_notations() {
        assert_eq!(ok("-12.5"), ("-12.50".into(), None));
        assert_eq!(ok("(1,000.00)"), ("-1000.00".into(), None));
        assert_eq!(ok("¥-3"), ("-3.00".into(), Some("CNY".into())));
        assert_eq!(read("--3"), Err(AmountError::NotANumber('.')));
    }

    #[test]
    fn json_numbers_in_exponent_form_are_exact() {
        assert_eq!(ok("1.2345e3"), ("1234.50".into(), None));
        assert_eq!(ok("5E2"), ("500.00".into(), None));
    }

    #[test]
    fn what_is_not_a_number_is_refused() {
        for text in [
            "N/A",
            "abc",
            "12,3x",
            "1,23,456",
            "12,34",
            "1.2.3",
            "12.",
            "",
            "-",
            "12 apples",
            "1e",
            "¥",
        ] {
            assert_eq!(read(text), Err(AmountError::NotANumber('.')), "{text}");
        }
    }

    #[test]
    fn more_than_two_decimal_places_is_refused_rather_than_rounded() {
        assert_eq!(read("12.345"), Err(AmountError::TooManyDecimals));
        assert_eq!(read("0.001"), Err(AmountError::TooManyDecimals));
    }

    #[test]
    fn huge_numbers_are_refused() {
        assert_eq!(
            read("99999999999999999999999999999999"),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn two_different_currencies_are_refused() {
        assert_eq!(
            read("USD 12 EUR"),
            Err(AmountError::TwoCurrencies("USD".into(), "EUR".into()))
        );
        assert_eq!(ok("¥12 元"), ("12.00".into(), Some("CNY".into())));
    }

    #[test]
    fn shared_symbols_follow_the_default_currency() {
        let yen = AmountStyle {
            decimal_separator: '.',
            default_currency: Some("JPY".into()),
        };
        assert_eq!(
            parse_amount("¥500", &yen).unwrap().1.as_deref(),
            Some("JPY")
        );
        assert_eq!(parse_currency("$", Some("HKD")).as_deref(), Some("HKD"));
        assert_eq!(parse_currency("$", Some("EUR")).as_deref(), Some("USD"));
    }

    #[test]
    fn currency_column_values() {
        for (text, code) in [
            ("cny", "CNY"),
            ("人民币", "CNY"),
            ("元", "CNY"),
            ("RMB", "CNY"),
            ("美元", "USD"),
            ("€", "EUR"),
            ("ＵＳＤ", "USD"),
        ] {
            assert_eq!(parse_currency(text, None).as_deref(), Some(code), "{text}");
        }
        for text in ["dollars", "US", "", "¥¥"] {
            assert_eq!(parse_currency(text, None), None, "{text}");
        }
    }

    #[test]
    fn no_float_drift_on_sums_of_cents() {
        let total: Decimal = ["0.10", "0.20"]
            .iter()
            .map(|t| parse_amount(t, &AmountStyle::default()).unwrap().0)
            .sum();
        assert_eq!(amount_text(&total), "0.30");
    }
}
