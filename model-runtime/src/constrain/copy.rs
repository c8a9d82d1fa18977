//! Copy constraints (`"x-copy": true` in a JSON schema): a string field may only hold a span of
//! the input text, a number field only a number written in the input. The model still chooses
//! which span or number; the constraint only rules out text that is not there.

use super::json_schema::{MAX_FRACTION_DIGITS, MAX_INT_DIGITS};

/// The input text that copy fields take their values from.
#[derive(Debug, Clone, PartialEq)]
pub struct CopySource {
    /// The text as bytes; string values are matched against it byte by byte.
    text: Vec<u8>,
    /// The numbers written in the text, in JSON form (`12,450.00` -> `12450.00`).
    numbers: Vec<String>,
}

impl CopySource {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        Self {
            text: text.as_bytes().to_vec(),
            numbers: numbers_in(text),
        }
    }

    /// The numbers written in the text, in JSON form, in order of appearance, without repeats.
    /// Thousands separators are dropped and a decimal comma becomes a point: `12,450.00`,
    /// `2.640,00` and `1 980 000` read as `12450.00`, `2640.00` and `1980000`.
    pub fn numbers(&self) -> &[String] {
        &self.numbers
    }

    /// Whether `value` occurs in the text.
    pub fn contains(&self, value: &[u8]) -> bool {
        value.is_empty() || self.text.windows(value.len()).any(|w| w == value)
    }
}

/// Progress of a copied string: the positions in the source where the text written so far
/// occurs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanMatch {
    /// Start positions of the occurrences; `None` before the first byte (every position).
    starts: Option<Vec<u32>>,
    /// Bytes written (after unescaping).
    len: usize,
}

impl SpanMatch {
    /// Nothing written yet.
    pub(crate) fn new() -> Self {
        Self {
            starts: None,
            len: 0,
        }
    }

    /// Appends one unescaped byte; false when the text would no longer occur in the source. A
    /// copied value does not start with whitespace nor inside a word (between two ASCII letters
    /// or digits: `M-0033` is not copied out of `KM-0033`).
    pub(crate) fn push(&mut self, source: &CopySource, b: u8) -> bool {
        let text = &source.text;
        let starts: Vec<u32> = match &self.starts {
            None => {
                if b.is_ascii_whitespace() {
                    return false;
                }
                (0..text.len())
                    .filter(|&p| text[p] == b && (p == 0 || !inside_word(text[p - 1], b)))
                    .map(|p| p as u32)
                    .collect()
            }
            Some(starts) => starts
                .iter()
                .copied()
                .filter(|&p| text.get(p as usize + self.len) == Some(&b))
                .collect(),
        };
        if starts.is_empty() {
            return false;
        }
        self.starts = Some(starts);
        self.len += 1;
        true
    }
}

impl SpanMatch {
    /// Whether the value may end here: nothing written, or an occurrence that does not stop
    /// inside a word (`Nort` is not copied out of `Northwind`).
    pub(crate) fn may_end(&self, source: &CopySource) -> bool {
        let text = &source.text;
        match &self.starts {
            None => true,
            Some(starts) => starts.iter().any(|&p| {
                let end = p as usize + self.len;
                end == text.len() || !inside_word(text[end - 1], text[end])
            }),
        }
    }

    /// Whether some escape sequence (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`) can
    /// continue the value: a backslash is allowed only then.
    pub(crate) fn may_escape(&self, source: &CopySource) -> bool {
        [b'"', b'\\', b'/', 0x08, 0x0C, b'\n', b'\r', b'\t']
            .iter()
            .any(|&b| self.clone().push(source, b))
    }
}

/// Whether a boundary between bytes `before` and `after` lies inside a word (both ASCII letters
/// or digits).
fn inside_word(before: u8, after: u8) -> bool {
    before.is_ascii_alphanumeric() && after.is_ascii_alphanumeric()
}

/// Whether the number written so far (`written`, JSON syntax) can still become one of `numbers`.
pub(crate) fn number_prefix_ok(numbers: &[String], written: &[u8]) -> bool {
    numbers.iter().any(|n| n.as_bytes().starts_with(written))
}

/// Whether `written` may end here: it is a prefix of one of `numbers` with the same value
/// (`12450` and `12450.0` may stand for `12450.00`, `12` may not).
pub(crate) fn number_complete_ok(numbers: &[String], written: &[u8]) -> bool {
    let Some(value) = std::str::from_utf8(written)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    else {
        return false;
    };
    numbers
        .iter()
        .any(|n| n.as_bytes().starts_with(written) && n.parse::<f64>().is_ok_and(|v| v == value))
}

/// The numbers written in `text` in JSON form (see [`CopySource::numbers`]).
fn numbers_in(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // A run of digits joined by single separators (`,` `.` or a space between digits).
        let start = i;
        let mut end = i;
        while end < chars.len() {
            let digit = chars[end].is_ascii_digit();
            let separator = matches!(chars[end], ',' | '.' | ' ' | '\u{a0}' | '\'')
                && chars.get(end + 1).is_some_and(char::is_ascii_digit)
                && end > start;
            if !(digit || separator) {
                break;
            }
            end += 1;
        }
        let run: String = chars[start..end].iter().collect();
        // Numbers a JSON number of the constrained output cannot hold are left out.
        let fits = |n: &String| {
            let (int, frac) = n.split_once('.').unwrap_or((n, ""));
            int.len() <= MAX_INT_DIGITS && frac.len() <= MAX_FRACTION_DIGITS
        };
        for number in readings(&run).into_iter().filter(fits) {
            if !out.contains(&number) {
                out.push(number);
            }
        }
        i = end;
    }
    out
}

/// The readings of one run of digits and separators as JSON numbers: the run as a whole when its
/// separators make sense as thousands and decimal marks; the parts between spaces too (`1 200`
/// may be two numbers), and the plain digit groups when the run makes no sense as a whole.
fn readings(run: &str) -> Vec<String> {
    let mut out: Vec<String> = whole_number(run).into_iter().collect();
    let mut add = |n: String| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    if run.contains([' ', '\u{a0}']) {
        run.split([' ', '\u{a0}'])
            .filter_map(whole_number)
            .for_each(&mut add);
    }
    if whole_number(run).is_none() {
        run.split(|c: char| !c.is_ascii_digit())
            .filter_map(plain_number)
            .for_each(&mut add);
    }
    out
}

/// `digits` (optionally `digits.digits`) in JSON form: leading zeros dropped from the integer
/// part.
fn plain_number(text: &str) -> Option<String> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    match frac {
        None => Some(int.to_owned()),
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("{int}.{f}"))
        }
        Some(_) => None,
    }
}

/// Reads a run with separators as one number: the last `.` or `,` followed by other than three
/// digits (or the only mark when both kinds appear) is the decimal mark; the others separate
/// groups of three digits.
fn whole_number(run: &str) -> Option<String> {
    let marks: Vec<(usize, char)> = run
        .char_indices()
        .filter(|(_, c)| !c.is_ascii_digit())
        .collect();
    let Some((&(last_at, last), _)) = marks.split_last() else {
        return plain_number(run);
    };
    let after_last = run.len() - last_at - last.len_utf8();
    let distinct_kinds = {
        let mut kinds: Vec<char> = marks.iter().map(|(_, c)| *c).collect();
        kinds.dedup();
        kinds.sort_unstable();
        kinds.dedup();
        kinds.len()
    };
    let decimal = matches!(last, '.' | ',')
        && (distinct_kinds > 1 || after_last != 3 || (last == '.' && marks.len() == 1))
        && marks[..marks.len() - 1].iter().all(|(_, c)| *c != last);
    let (int_part, frac_part) = if decimal {
        (&run[..last_at], Some(&run[last_at + 1..]))
    } else {
        (run, None)
    };
    // Every group after the first holds exactly three digits.
    let groups: Vec<&str> = int_part.split(|c: char| !c.is_ascii_digit()).collect();
    if groups.len() > 1
        && (groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3))
    {
        return None;
    }
    let int: String = groups.concat();
    match frac_part {
        None => plain_number(&int),
        Some(f) => plain_number(&format!("{int}.{f}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_with_their_separators() {
        let source = CopySource::new(
            "order SO-2024-0815: $12,450.00, 2.640,00 €, ¥1,980,000, 320,000, 3,200.50 元, 7.5 kg, 1 200 boxes",
        );
        let numbers = source.numbers();
        for expected in [
            "2024", "815", "12450.00", "2640.00", "1980000", "320000", "3200.50", "7.5", "1200",
        ] {
            assert!(
                numbers.iter().any(|n| n == expected),
                "{expected} missing from {numbers:?}"
            );
        }
        // A quantity written next to the amount stays available on its own.
        assert!(numbers.iter().any(|n| n == "200"));
        assert!(!numbers.iter().any(|n| n.contains(',')));
    }

    #[test]
    fn a_copied_span_must_occur_in_the_source() {
        let source = CopySource::new("ACME Ltd orders SO-1001");
        let mut span = SpanMatch::new();
        for &b in b"SO-10" {
            assert!(span.push(&source, b));
        }
        assert!(!span.clone().push(&source, b'2'));
        assert!(span.push(&source, b'0'));
        assert!(!SpanMatch::new().push(&source, b' '), "leading whitespace");
        assert!(!SpanMatch::new().push(&source, b'Z'));
        assert!(source.contains(b"Ltd orders"));
        let mut inside = SpanMatch::new();
        assert!(
            !inside.push(&source, b'O'),
            "`O` of `SO` starts inside a word"
        );
        let mut cut = SpanMatch::new();
        for &b in b"AC" {
            assert!(cut.push(&source, b));
        }
        assert!(!cut.may_end(&source), "`AC` ends inside `ACME`");
        let mut whole = SpanMatch::new();
        for &b in b"SO-1001" {
            assert!(whole.push(&source, b));
        }
        assert!(whole.may_end(&source));
        assert!(!whole.may_escape(&source));
    }

    #[test]
    fn numbers_end_only_at_a_written_value() {
        let numbers = vec!["12450.00".to_owned(), "200".to_owned()];
        assert!(number_prefix_ok(&numbers, b"124"));
        assert!(!number_prefix_ok(&numbers, b"13"));
        assert!(!number_complete_ok(&numbers, b"124"));
        assert!(number_complete_ok(&numbers, b"12450"));
        assert!(number_complete_ok(&numbers, b"12450.0"));
        assert!(number_complete_ok(&numbers, b"200"));
        assert!(!number_complete_ok(&numbers, b"20"));
    }
}
