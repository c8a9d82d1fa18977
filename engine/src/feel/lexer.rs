//! Splits FEEL text into tokens. Names may contain spaces (`Years of Service`): the lexer takes
//! the longest known name at each position (the caller passes the names in scope), else one
//! word.

use super::FeelError;

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: Tok,
    pub offset: usize,
}

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// A number as written (`12`, `.5`, `1.2e3`).
    Number(String),
    /// A string literal, escapes resolved.
    String(String),
    /// A name (one word, or a known name with spaces).
    Name(String),
    /// Punctuation and operators.
    Sym(&'static str),
    /// End of input.
    End,
}

/// Words that are never names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "between",
    "in",
    "if",
    "then",
    "else",
    "null",
    "true",
    "false",
    "instance",
    "of",
    "for",
    "some",
    "every",
    "satisfies",
    "return",
];

/// Multi-word names always known: built-in functions.
pub(super) const BUILTIN_NAMES: &[&str] = &[
    "date and time",
    "years and months duration",
    "string length",
    "upper case",
    "lower case",
    "starts with",
    "ends with",
    "list contains",
    "substring before",
    "substring after",
    "day of week",
    "day of year",
    "month of year",
    "week of year",
    "is defined",
];

const SYMBOLS: &[&str] = &[
    "**", "..", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "?", "@", "+", "-",
    "*", "/", "=", "<", ">",
];

/// Tokenizes `text`; `names` are the multi-word names in scope.
pub(super) fn tokenize(text: &str, names: &[&str]) -> Result<Vec<Token>, FeelError> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(text.len(), |n| i + n);
            continue;
        }
        if text[i..].starts_with("/*") {
            match text[i + 2..].find("*/") {
                Some(n) => i = i + 2 + n + 2,
                None => return Err(FeelError::at(i, "comment `/*` is not closed")),
            }
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == '.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let end = number_end(text, i);
            tokens.push(Token {
                kind: Tok::Number(text[i..end].to_string()),
                offset: start,
            });
            i = end;
            continue;
        }
        if c == '"' {
            let (value, end) = string_literal(text, i)?;
            tokens.push(Token {
                kind: Tok::String(value),
                offset: start,
            });
            i = end;
            continue;
        }
        if is_name_start(c) {
            let (end, known) = name_end(text, i, names);
            let word = known.unwrap_or(&text[i..end]);
            let kind = match KEYWORDS.iter().find(|k| **k == word) {
                Some(k) => Tok::Sym(k),
                None => Tok::Name(word.to_string()),
            };
            tokens.push(Token {
                kind,
                offset: start,
            });
            i = end;
            continue;
        }
        match SYMBOLS.iter().find(|s| text[i..].starts_with(**s)) {
            Some(symbol) => {
                tokens.push(Token {
                    kind: Tok::Sym(symbol),
                    offset: start,
                });
                i += symbol.len();
            }
            None => return Err(FeelError::at(i, format!("unexpected character `{c}`"))),
        }
    }
    tokens.push(Token {
        kind: Tok::End,
        offset: text.len(),
    });
    Ok(tokens)
}

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '\''
}

/// The end of the name at `start`: the longest known multi-word name that starts here and ends at
/// a word boundary (with that name as written in `names`), else one word.
fn name_end<'n>(text: &str, start: usize, names: &[&'n str]) -> (usize, Option<&'n str>) {
    let rest = &text[start..];
    let known = names
        .iter()
        .chain(BUILTIN_NAMES)
        .filter(|name| name.contains(|c: char| !is_name_char(c)))
        .filter_map(|name| matched_len(rest, name).map(|len| (len, *name)))
        .max_by_key(|(len, _)| *len);
    if let Some((len, name)) = known {
        return (start + len, Some(name));
    }
    let len = rest
        .char_indices()
        .find(|(_, c)| !is_name_char(*c))
        .map_or(rest.len(), |(i, _)| i);
    (start + len, None)
}

/// How much of `rest` the multi-word `name` takes, when `rest` starts with it: its words in
/// order, any whitespace (line breaks too) where the name has a space, ending at a word boundary.
fn matched_len(rest: &str, name: &str) -> Option<usize> {
    let mut at = 0;
    let mut words = name.split(' ').filter(|w| !w.is_empty()).peekable();
    while let Some(word) = words.next() {
        if !rest[at..].starts_with(word) {
            return None;
        }
        at += word.len();
        if words.peek().is_some() {
            let blank = rest[at..].len() - rest[at..].trim_start().len();
            if blank == 0 {
                return None;
            }
            at += blank;
        }
    }
    let boundary = rest[at..].chars().next().is_none_or(|c| !is_name_char(c));
    boundary.then_some(at)
}

/// The end of the number at `start` (digits, one fraction, an exponent). A `..` after the digits
/// is a range, not a fraction.
fn number_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i < bytes.len()
        && bytes[i] == b'.'
        && bytes.get(i + 1) != Some(&b'.')
        && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
    {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// A string literal starting at the `"` at `start`: its value and the offset after it.
fn string_literal(text: &str, start: usize) -> Result<(String, usize), FeelError> {
    let mut value = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, start + 1 + i + 1)),
            '\\' => {
                let Some((_, escaped)) = chars.next() else {
                    break;
                };
                match escaped {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    '"' => value.push('"'),
                    '\'' => value.push('\''),
                    '\\' => value.push('\\'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                FeelError::at(start + 1 + i, format!("bad escape `\\u{hex}`"))
                            })?;
                        value.push(code);
                    }
                    other => {
                        return Err(FeelError::at(
                            start + 1 + i,
                            format!("unknown escape `\\{other}` in a string"),
                        ))
                    }
                }
            }
            other => value.push(other),
        }
    }
    Err(FeelError::at(
        start,
        "string is not closed: a `\"` is missing",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str, names: &[&str]) -> Vec<Tok> {
        tokenize(text, names)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn names_with_spaces_are_taken_whole_when_known() {
        assert_eq!(
            kinds("Years of Service >= 30", &["Years of Service"]),
            vec![
                Tok::Name("Years of Service".into()),
                Tok::Sym(">="),
                Tok::Number("30".into()),
                Tok::End
            ]
        );
        assert_eq!(
            kinds("date and time(\"x\")", &[])[0],
            Tok::Name("date and time".into())
        );
        assert_eq!(kinds("a and b", &[])[1], Tok::Sym("and"));
        assert_eq!(
            kinds("date and\n   time(\"x\")", &[])[0],
            Tok::Name("date and time".into())
        );
    }

    #[test]
    fn ranges_numbers_strings_and_comments() {
        assert_eq!(
            kinds("[1..10)", &[]),
            vec![
                Tok::Sym("["),
                Tok::Number("1".into()),
                Tok::Sym(".."),
                Tok::Number("10".into()),
                Tok::Sym(")"),
                Tok::End
            ]
        );
        assert_eq!(kinds(".5 1.2e-3", &[])[1], Tok::Number("1.2e-3".into()));
        assert_eq!(kinds(r#""a\"b""#, &[])[0], Tok::String("a\"b".into()));
        assert_eq!(kinds("1 /* x */ + // y\n 2", &[]).len(), 4);
        assert!(tokenize("\"open", &[]).is_err());
        assert!(tokenize("a # b", &[]).is_err());
    }
}
