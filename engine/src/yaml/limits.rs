//! The limits on a YAML process file, and cheap checks of its text around parsing: characters
//! YAML forbids and nesting deeper than the parser accepts (found with their position, and refused
//! before the parser spends time on them), and where the first alias is, for the parser's "too
//! many aliases" error.
//!
//! Every limit is checked with a position: the file size by `parse_yaml`, nesting here and in the
//! locator, values and collection sizes in the locator (`SourceMap::read`), before `serde_yaml`
//! builds the document; alias expansion by `serde_yaml` itself.

use crate::model::Span;

/// The deepest nesting of mappings and lists accepted (the YAML reader's own limit).
pub const MAX_NESTING: usize = 128;

/// The most values (keys, list items and scalars, at every level) in one document. The order
/// process has about 250; a generated process with 2,000 nodes about 30,000.
pub const MAX_VALUES: usize = 200_000;

/// The most keys in one mapping or items in one list.
pub const MAX_ENTRIES: usize = 20_000;

/// A problem found before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    /// Where.
    pub span: Span,
    /// What, in words.
    pub message: String,
}

/// The first character YAML does not allow (C0 controls other than tab, newline and carriage
/// return; DEL; C1 controls other than NEL; unpaired surrogates cannot occur in `str`).
pub fn forbidden_character(text: &str) -> Option<LimitError> {
    for (index, line) in text.split('\n').enumerate() {
        for (col, c) in line.chars().enumerate() {
            let forbidden = (c < ' ' && c != '\t' && c != '\r')
                || c == '\u{7f}'
                || (('\u{80}'..='\u{9f}').contains(&c) && c != '\u{85}')
                || c == '\u{fffe}'
                || c == '\u{ffff}';
            if forbidden {
                return Some(LimitError {
                    span: Span::new(index as u32 + 1, col as u32 + 1),
                    message: format!(
                        "control character U+{:04X} is not allowed in YAML text",
                        c as u32
                    ),
                });
            }
        }
    }
    None
}

/// The first place where mappings and lists nest deeper than [`MAX_NESTING`]: indentation levels,
/// `- ` items and `[`/`{` collections together. Quotes and comments are respected within a line.
pub fn too_deep(text: &str) -> Option<LimitError> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow_depth: usize = 0;
    for (index, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let indent = chars.iter().take_while(|c| **c == ' ').count();
        let content = &chars[indent..];
        if content.is_empty() || content[0] == '#' {
            continue;
        }
        if flow_depth == 0 {
            while indents.last().is_some_and(|top| *top > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|top| *top < indent) {
                indents.push(indent);
            }
        }
        let mut depth = indents.len() + flow_depth;
        let mut quote: Option<char> = None;
        let mut at_line_start = true;
        for (offset, &c) in content.iter().enumerate() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if offset > 0 && content[offset - 1] == ' ' => break,
                    '"' | '\'' => quote = Some(c),
                    '-' if at_line_start && content.get(offset + 1).is_none_or(|n| *n == ' ') => {
                        depth += 1
                    }
                    '[' | '{' => {
                        flow_depth += 1;
                        depth += 1;
                    }
                    ']' | '}' => {
                        flow_depth = flow_depth.saturating_sub(1);
                        depth = depth.saturating_sub(1);
                    }
                    _ => {}
                },
            }
            if c != '-' && c != ' ' {
                at_line_start = false;
            }
            if depth > MAX_NESTING {
                return Some(LimitError {
                    span: Span::new(index as u32 + 1, (indent + offset + 1) as u32),
                    message: format!(
                        "the document is nested too deeply (more than {MAX_NESTING} levels)"
                    ),
                });
            }
        }
    }
    None
}

/// Where the first alias (`*name`) is written, outside quotes and comments.
pub fn first_alias(text: &str) -> Option<Span> {
    for (index, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut quote: Option<char> = None;
        for (col, &c) in chars.iter().enumerate() {
            let after_separator = col == 0 || matches!(chars[col - 1], ' ' | '[' | '{' | ',');
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '#' && after_separator => break,
                None if (c == '"' || c == '\'') && after_separator => quote = Some(c),
                None if c == '*'
                    && after_separator
                    && chars.get(col + 1).is_some_and(|n| !n.is_whitespace()) =>
                {
                    return Some(Span::new(index as u32 + 1, col as u32 + 1));
                }
                None => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_alias() {
        assert_eq!(
            first_alias("a: &x 1\nb: '*not' # *no\nc: [1, *x]\n"),
            Some(Span::new(3, 8))
        );
        assert_eq!(first_alias("a: 2 * 3\n"), None);
    }

    #[test]
    fn finds_forbidden_characters() {
        assert_eq!(forbidden_character("a: b\n\tc: ok\r\n"), None);
        let found = forbidden_character("a: b\nc: x\u{1}y\n").expect("found");
        assert_eq!(found.span, Span::new(2, 5));
        assert!(found.message.contains("U+0001"));
    }

    #[test]
    fn measures_flow_block_and_dash_nesting() {
        assert_eq!(too_deep("a:\n  b:\n    - [1, {c: 2}]\n"), None);
        let flow = format!("a: {}", "[".repeat(200));
        assert_eq!(
            too_deep(&flow).expect("deep").span,
            Span::new(1, 4 + MAX_NESTING as u32 - 1)
        );
        let mut block = String::new();
        for depth in 0..200 {
            block.push_str(&format!("{}k:\n", " ".repeat(depth)));
        }
        assert_eq!(
            too_deep(&block).expect("deep").span.line,
            MAX_NESTING as u32 + 1
        );
        let dashes = format!("{}x\n", "- ".repeat(200));
        assert!(too_deep(&dashes).is_some());
        assert_eq!(too_deep("a: \"[[[[\" # [[[[\n"), None);
    }
}
