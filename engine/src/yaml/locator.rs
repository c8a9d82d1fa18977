//! Source positions for YAML documents.
//!
//! `serde_yaml` turns a document into values without positions. This module reads the same text a
//! second time, structurally only, and records where every mapping key, sequence item and value
//! starts, so the DSL reader can attach a `line:col` to every node, flow and expression it
//! builds. It understands the YAML the DSL uses: block mappings and sequences (including compact
//! `- key: value` items), flow mappings and sequences (`{ a: b }`, `[a, b]`, over several lines),
//! plain, quoted and block (`|`, `>`) scalars, comments, anchors, tags and document markers.
//!
//! The locator runs only on text `serde_yaml` has accepted. Where it cannot follow the structure
//! (an alias, an exotic construct), lookups return `None` and callers fall back to the nearest
//! enclosing position ([`SourceMap::nearest`]); it never fails and never panics.

use crate::model::Span;
use std::collections::HashMap;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A sequence index (0-based).
    Index(usize),
}

/// A path from the document root to a value, e.g. `nodes.amount_check.exclusive[0].when`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlPath(Vec<PathSeg>);

impl YamlPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(PathSeg::Key(key.to_string()));
        Self(segs)
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(PathSeg::Index(index));
        Self(segs)
    }

    /// The steps of the path.
    pub fn segments(&self) -> &[PathSeg] {
        &self.0
    }
}

/// A located value: where it starts, and its located children.
#[derive(Debug, Clone, Default)]
struct Located {
    /// Where the value itself starts (for block scalars: the first content line).
    value: Option<Span>,
    children: Children,
}

#[derive(Debug, Clone, Default)]
enum Children {
    #[default]
    Leaf,
    /// Mapping entries (key text, where the key starts, the value) and, by key, the index of its
    /// first entry.
    Map(Vec<(String, Span, Located)>, HashMap<String, usize>),
    /// Sequence items: where the item (its `-` or first character) starts, the item.
    Seq(Vec<(Span, Located)>),
}

impl Children {
    /// Mapping children, indexed by key.
    fn map(entries: Vec<(String, Span, Located)>) -> Self {
        let mut first = HashMap::with_capacity(entries.len());
        for (index, (key, _, _)) in entries.iter().enumerate() {
            first.entry(key.clone()).or_insert(index);
        }
        Children::Map(entries, first)
    }
}

/// Positions of the keys, items and values of one YAML document.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    root: Located,
}

impl SourceMap {
    /// Reads the structure of `text` (the first document, when there are several).
    pub fn new(text: &str) -> Self {
        let lines = logical_lines(text.strip_prefix('\u{feff}').unwrap_or(text));
        let mut parser = BlockParser {
            lines: &lines,
            next: 0,
        };
        let root = match parser.peek() {
            Some(first) => {
                let indent = first.indent;
                parser.block_node(indent)
            }
            None => Located::default(),
        };
        Self { root }
    }

    /// Where the last step of `path` is written: the key of a mapping entry, or the start of a
    /// sequence item. The empty path (the root) has no key and gives `None`.
    pub fn key(&self, path: &YamlPath) -> Option<Span> {
        let (last, parent) = path.segments().split_last()?;
        let parent = self.find(parent)?;
        match (last, &parent.children) {
            (PathSeg::Key(k), Children::Map(entries, first)) => first.get(k).map(|&i| entries[i].1),
            (PathSeg::Index(i), Children::Seq(items)) => items.get(*i).map(|(span, _)| *span),
            _ => None,
        }
    }

    /// Where the value at `path` starts.
    pub fn value(&self, path: &YamlPath) -> Option<Span> {
        self.find(path.segments())?.value
    }

    /// The position of `path`'s key, or else of the closest enclosing key or value that could be
    /// located, or else 1:1.
    pub fn nearest(&self, path: &YamlPath) -> Span {
        let segs = path.segments();
        (0..=segs.len())
            .rev()
            .find_map(|n| {
                let prefix = YamlPath(segs[..n].to_vec());
                self.key(&prefix).or_else(|| self.value(&prefix))
            })
            .unwrap_or(Span::new(1, 1))
    }

    /// The position of the value at `path`, or else [`SourceMap::nearest`].
    pub fn nearest_value(&self, path: &YamlPath) -> Span {
        self.value(path).unwrap_or_else(|| self.nearest(path))
    }

    /// The first key written twice in one mapping, in document order: the key, where it is first
    /// written, and where it is repeated.
    pub fn duplicate_key(&self) -> Option<(String, Span, Span)> {
        fn walk(located: &Located) -> Option<(String, Span, Span)> {
            match &located.children {
                Children::Leaf => None,
                Children::Seq(items) => items.iter().find_map(|(_, item)| walk(item)),
                Children::Map(entries, first) => {
                    for (index, (key, span, value)) in entries.iter().enumerate() {
                        let first_index = first.get(key).copied().unwrap_or(index);
                        if first_index != index {
                            return Some((key.clone(), entries[first_index].1, *span));
                        }
                        if let Some(found) = walk(value) {
                            return Some(found);
                        }
                    }
                    None
                }
            }
        }
        walk(&self.root)
    }

    fn find(&self, segs: &[PathSeg]) -> Option<&Located> {
        let mut current = &self.root;
        for seg in segs {
            current = match (seg, &current.children) {
                (PathSeg::Key(k), Children::Map(entries, first)) => {
                    first.get(k).map(|&i| &entries[i].2)?
                }
                (PathSeg::Index(i), Children::Seq(items)) => items.get(*i).map(|(_, v)| v)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

/// One non-blank source line with its comment removed, possibly a part of a line (the content
/// after a block-sequence dash becomes a line of its own, indented to where it starts).
#[derive(Debug, Clone)]
struct Line {
    /// 1-based line number.
    number: u32,
    /// 0-based column of the first content character.
    indent: usize,
    /// The content, from `indent` on, comment and trailing blanks removed.
    chars: Vec<char>,
    /// When the line opens a block scalar (`key: |`): where its body starts.
    block_body: Option<Span>,
}

impl Line {
    fn span_at(&self, offset: usize) -> Span {
        Span::new(self.number, (self.indent + offset + 1) as u32)
    }
}

/// Splits `text` into content lines: comments, blank lines, directives and document markers are
/// dropped; block-scalar bodies are dropped (they hold no structure); `- ` prefixes are split off
/// into lines of their own so compact sequence items read like nested blocks.
fn logical_lines(text: &str) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    // While inside a block scalar: the indentation its body must exceed.
    let mut block_scalar_parent: Option<usize> = None;
    let mut seen_document_start = false;
    for (index, raw) in text.lines().enumerate() {
        let number = (index + 1) as u32;
        let chars: Vec<char> = raw.chars().collect();
        let indent = chars.iter().take_while(|c| **c == ' ').count();
        let blank = chars[indent..].iter().all(|c| c.is_whitespace());
        if let Some(parent) = block_scalar_parent {
            if blank || indent > parent {
                if !blank {
                    // The first body line gives the scalar's position.
                    if let Some(last) = out.last_mut() {
                        last.block_body
                            .get_or_insert(Span::new(number, (indent + 1) as u32));
                    }
                }
                continue;
            }
            block_scalar_parent = None;
        }
        if indent == 0 && (raw.starts_with("---") || raw.starts_with("...")) {
            if seen_document_start && raw.starts_with("---") && !out.is_empty() {
                break; // the first document only
            }
            seen_document_start = true;
            let rest: String = chars[3..].iter().collect();
            if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
                continue;
            }
        }
        if indent == 0 && raw.starts_with('%') {
            continue;
        }
        let content = strip_comment(&chars[indent..]);
        if content.is_empty() {
            continue;
        }
        // Split compact sequence items: `- - key: v` gives `-`, `-`, `key: v`.
        let mut column = indent;
        let mut rest = content;
        while rest.first() == Some(&'-') && (rest.len() == 1 || rest[1] == ' ') {
            out.push(Line {
                number,
                indent: column,
                chars: vec!['-'],
                block_body: None,
            });
            let skip = 1 + rest[1..].iter().take_while(|c| **c == ' ').count();
            column += skip;
            rest = rest[skip..].to_vec();
        }
        if rest.is_empty() {
            continue;
        }
        if is_block_scalar_header(&rest) {
            // The body must be indented more than the node that owns it.
            block_scalar_parent = Some(column);
        }
        out.push(Line {
            number,
            indent: column,
            chars: rest,
            block_body: None,
        });
    }
    out
}

/// Whether the value part of `chars` (after `key:` if there is one, and after any anchor or tag)
/// is a block scalar indicator: `|`, `>`, with optional chomping and indentation indicators.
fn is_block_scalar_header(chars: &[char]) -> bool {
    let start = match find_mapping_colon(chars) {
        Some(colon) => skip_properties(chars, colon + 1),
        None => skip_properties(chars, 0),
    };
    is_block_scalar_indicator(&chars[start.min(chars.len())..])
}

/// Whether `chars` is exactly a block scalar indicator (`|`, `>-`, `|2`, ...).
fn is_block_scalar_indicator(chars: &[char]) -> bool {
    matches!(chars.first(), Some('|') | Some('>'))
        && chars[1..]
            .iter()
            .all(|c| *c == '-' || *c == '+' || c.is_ascii_digit())
}

/// Removes a trailing comment (`#` after a blank, outside quotes) and trailing blanks.
fn strip_comment(chars: &[char]) -> Vec<char> {
    let mut quote: Option<char> = None;
    let mut end = chars.len();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some('\'') if c == '\'' => {
                if chars.get(i + 1) == Some(&'\'') {
                    i += 1;
                } else {
                    quote = None;
                }
            }
            Some('"') if c == '\\' => i += 1,
            Some('"') if c == '"' => quote = None,
            Some(_) => {}
            None => {
                if c == '#' && (i == 0 || chars[i - 1] == ' ' || chars[i - 1] == '\t') {
                    end = i;
                    break;
                }
                let at_token_start = i == 0 || matches!(chars[i - 1], ' ' | '[' | '{' | ',' | ':');
                if (c == '"' || c == '\'') && at_token_start {
                    quote = Some(c);
                }
            }
        }
        i += 1;
    }
    let mut out = chars[..end].to_vec();
    while out.last().is_some_and(|c| c.is_whitespace()) {
        out.pop();
    }
    out
}

/// The offset of the `:` that separates a block mapping key from its value, if the line is a
/// mapping entry (`key:` at the end, or `key: ` followed by a value), quotes respected.
fn find_mapping_colon(chars: &[char]) -> Option<usize> {
    let mut i = 0;
    if matches!(chars.first(), Some('"') | Some('\'')) {
        i = skip_quoted(chars, 0);
    } else if matches!(chars.first(), Some('{') | Some('[')) {
        return None;
    }
    while i < chars.len() {
        if chars[i] == ':' && (i + 1 == chars.len() || chars[i + 1] == ' ') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The offset just after the quoted scalar that starts at `start`.
fn skip_quoted(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if quote == '"' && chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            if quote == '\'' && chars.get(i + 1) == Some(&'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// The text of a key: unquoted, trimmed.
fn key_text(chars: &[char]) -> String {
    let text: String = chars.iter().collect();
    let text = text.trim();
    if text.len() >= 2 && (text.starts_with('"') && text.ends_with('"')) {
        text[1..text.len() - 1].replace("\\\"", "\"")
    } else if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
        text[1..text.len() - 1].replace("''", "'")
    } else {
        text.to_string()
    }
}

/// Skips anchors (`&a`) and tags (`!t`) in front of a value; returns the new offset.
fn skip_properties(chars: &[char], mut i: usize) -> usize {
    loop {
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        if i < chars.len() && (chars[i] == '&' || chars[i] == '!') {
            while i < chars.len() && chars[i] != ' ' {
                i += 1;
            }
        } else {
            return i;
        }
    }
}

struct BlockParser<'a> {
    lines: &'a [Line],
    next: usize,
}

impl BlockParser<'_> {
    fn peek(&self) -> Option<&Line> {
        self.lines.get(self.next)
    }

    /// Skips every line indented more than `indent` (the body of a scalar already located).
    fn skip_deeper(&mut self, indent: usize) {
        while self.peek().is_some_and(|l| l.indent > indent) {
            self.next += 1;
        }
    }

    /// Reads the block node whose first line is the next line, at `indent`.
    fn block_node(&mut self, indent: usize) -> Located {
        let Some(line) = self.peek() else {
            return Located::default();
        };
        if line.chars == ['-'] {
            return self.block_sequence(indent);
        }
        if find_mapping_colon(&line.chars).is_some() {
            return self.block_mapping(indent);
        }
        // A scalar or flow collection standing on its own line.
        let line = line.clone();
        self.next += 1;
        let located = self.inline_value(&line, 0);
        self.skip_deeper(indent);
        located
    }

    fn block_sequence(&mut self, indent: usize) -> Located {
        let mut items = Vec::new();
        let start = self.peek().map(|l| l.span_at(0));
        while let Some(line) = self.peek() {
            if line.indent != indent || line.chars != ['-'] {
                break;
            }
            let dash = line.span_at(0);
            self.next += 1;
            let item = match self.peek() {
                Some(next) if next.indent > indent => {
                    let child_indent = next.indent;
                    self.block_node(child_indent)
                }
                _ => Located {
                    value: None,
                    children: Children::Leaf,
                },
            };
            items.push((dash, item));
        }
        Located {
            value: start,
            children: Children::Seq(items),
        }
    }

    fn block_mapping(&mut self, indent: usize) -> Located {
        let mut entries = Vec::new();
        let start = self.peek().map(|l| l.span_at(0));
        while let Some(line) = self.peek() {
            if line.indent != indent {
                break;
            }
            let Some(colon) = find_mapping_colon(&line.chars) else {
                break;
            };
            let line = line.clone();
            self.next += 1;
            let key = key_text(&line.chars[..colon]);
            let key_span = line.span_at(0);
            let value_start = skip_properties(&line.chars, colon + 1);
            let value = if value_start < line.chars.len() {
                let located = self.inline_value(&line, value_start);
                self.skip_deeper(indent);
                located
            } else {
                match self.peek() {
                    Some(next) if next.indent > indent => {
                        let child_indent = next.indent;
                        self.block_node(child_indent)
                    }
                    // A sequence may sit at the same indentation as its key.
                    Some(next) if next.indent == indent && next.chars == ['-'] => {
                        self.block_sequence(indent)
                    }
                    _ => Located::default(),
                }
            };
            entries.push((key, key_span, value));
        }
        Located {
            value: start,
            children: Children::map(entries),
        }
    }

    /// A value that starts at `offset` of `line`: a flow collection (which may continue on the
    /// following lines), a block scalar indicator, or a scalar.
    fn inline_value(&mut self, line: &Line, offset: usize) -> Located {
        if is_block_scalar_indicator(&line.chars[offset..]) {
            let span = line.block_body.unwrap_or_else(|| line.span_at(offset));
            return Located {
                value: Some(span),
                children: Children::Leaf,
            };
        }
        match line.chars.get(offset) {
            Some('{') | Some('[') => {
                // Flow collections may span lines: read from this line on.
                let mut cursor = FlowCursor {
                    lines: self.lines,
                    line: self.next - 1,
                    col: offset,
                };
                let located = cursor.flow_value();
                // Continue after the line where the collection ended.
                self.next = cursor.line + 1;
                located
            }
            Some('"') | Some('\'') => Located {
                value: Some(line.span_at(offset + 1)),
                children: Children::Leaf,
            },
            _ => Located {
                value: Some(line.span_at(offset)),
                children: Children::Leaf,
            },
        }
    }
}

/// Reads flow collections (`{...}`, `[...]`) across lines.
struct FlowCursor<'a> {
    lines: &'a [Line],
    line: usize,
    col: usize,
}

impl<'a> FlowCursor<'a> {
    fn current_line(&self) -> Option<&'a Line> {
        self.lines.get(self.line)
    }

    fn peek(&self) -> Option<char> {
        self.current_line()
            .and_then(|l| l.chars.get(self.col).copied())
    }

    fn span(&self) -> Span {
        self.current_line()
            .map(|l| l.span_at(self.col))
            .unwrap_or_default()
    }

    /// Moves past blanks and line ends.
    fn skip_blanks(&mut self) {
        loop {
            match self.current_line() {
                None => return,
                Some(line) => {
                    while self.col < line.chars.len() && line.chars[self.col] == ' ' {
                        self.col += 1;
                    }
                    if self.col < line.chars.len() || self.line + 1 >= self.lines.len() {
                        return;
                    }
                    self.line += 1;
                    self.col = 0;
                }
            }
        }
    }

    fn bump(&mut self) {
        self.col += 1;
    }

    fn flow_value(&mut self) -> Located {
        self.skip_blanks();
        if let Some(line) = self.current_line() {
            self.col = skip_properties(&line.chars, self.col);
        }
        let span = self.span();
        match self.peek() {
            Some('{') => {
                self.bump();
                let mut entries = Vec::new();
                loop {
                    self.skip_blanks();
                    match self.peek() {
                        None => break,
                        Some('}') => {
                            self.bump();
                            break;
                        }
                        Some(',') => {
                            self.bump();
                            continue;
                        }
                        Some(_) => {}
                    }
                    let key_span = self.span();
                    let key = self.scalar_text(true);
                    self.skip_blanks();
                    let value = if self.peek() == Some(':') {
                        self.bump();
                        self.skip_blanks();
                        match self.peek() {
                            Some(',') | Some('}') | None => Located::default(),
                            _ => self.flow_value(),
                        }
                    } else {
                        Located::default()
                    };
                    entries.push((key_text(&key.chars().collect::<Vec<_>>()), key_span, value));
                }
                Located {
                    value: Some(span),
                    children: Children::map(entries),
                }
            }
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_blanks();
                    match self.peek() {
                        None => break,
                        Some(']') => {
                            self.bump();
                            break;
                        }
                        Some(',') => {
                            self.bump();
                            continue;
                        }
                        Some(_) => {}
                    }
                    let item_span = self.span();
                    let item = self.flow_value();
                    items.push((item_span, item));
                }
                Located {
                    value: Some(span),
                    children: Children::Seq(items),
                }
            }
            Some('"') | Some('\'') => {
                let inner = Span::new(span.line, span.col + 1);
                self.scalar_text(false);
                Located {
                    value: Some(inner),
                    children: Children::Leaf,
                }
            }
            _ => {
                self.scalar_text(false);
                Located {
                    value: Some(span),
                    children: Children::Leaf,
                }
            }
        }
    }

    /// Reads a scalar inside a flow collection and returns its raw text. A key stops at `:`
    /// followed by a blank or an indicator; any scalar stops at `,`, `}` or `]`.
    fn scalar_text(&mut self, is_key: bool) -> String {
        let Some(line) = self.current_line() else {
            return String::new();
        };
        let chars = &line.chars;
        let start = self.col;
        if matches!(chars.get(start), Some('"') | Some('\'')) {
            self.col = skip_quoted(chars, start);
            return chars[start..self.col].iter().collect();
        }
        while self.col < chars.len() {
            let c = chars[self.col];
            if matches!(c, ',' | '}' | ']') {
                break;
            }
            if c == ':' {
                let next = chars.get(self.col + 1).copied();
                let separates =
                    matches!(next, None | Some(' ') | Some(',') | Some('}') | Some(']'));
                if separates || (is_key && next == Some('{')) {
                    break;
                }
            }
            self.col += 1;
        }
        chars[start..self.col]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segs: &[&str]) -> YamlPath {
        let mut p = YamlPath::root();
        for s in segs {
            p = match s.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(s),
            };
        }
        p
    }

    #[test]
    fn locates_block_mapping_keys_and_values() {
        let text =
            "process: p\n# a comment\nnodes:\n  a:\n    service: h   # trailing\n    next: b\n  b: { end: {} }\n";
        let map = SourceMap::new(text);
        assert_eq!(map.key(&path(&["process"])), Some(Span::new(1, 1)));
        assert_eq!(map.value(&path(&["process"])), Some(Span::new(1, 10)));
        assert_eq!(map.key(&path(&["nodes", "a"])), Some(Span::new(4, 3)));
        assert_eq!(
            map.value(&path(&["nodes", "a", "service"])),
            Some(Span::new(5, 14))
        );
        assert_eq!(
            map.value(&path(&["nodes", "a", "next"])),
            Some(Span::new(6, 11))
        );
        assert_eq!(map.key(&path(&["nodes", "b"])), Some(Span::new(7, 3)));
        assert_eq!(
            map.key(&path(&["nodes", "b", "end"])),
            Some(Span::new(7, 8))
        );
    }

    #[test]
    fn locates_compact_sequence_items() {
        let text = "g:\n  exclusive:\n    - when: amount > 10\n      to: x\n    - otherwise: y\n";
        let map = SourceMap::new(text);
        assert_eq!(
            map.key(&path(&["g", "exclusive", "0"])),
            Some(Span::new(3, 5))
        );
        assert_eq!(
            map.value(&path(&["g", "exclusive", "0", "when"])),
            Some(Span::new(3, 13))
        );
        assert_eq!(
            map.key(&path(&["g", "exclusive", "0", "to"])),
            Some(Span::new(4, 7))
        );
        assert_eq!(
            map.value(&path(&["g", "exclusive", "1", "otherwise"])),
            Some(Span::new(5, 18))
        );
    }

    #[test]
    fn sequences_may_sit_at_their_keys_indentation() {
        let text = "a:\n- x\n- y: 1\nb: 2\n";
        let map = SourceMap::new(text);
        assert_eq!(map.key(&path(&["a", "1"])), Some(Span::new(3, 1)));
        assert_eq!(map.key(&path(&["a", "1", "y"])), Some(Span::new(3, 3)));
        assert_eq!(map.key(&path(&["b"])), Some(Span::new(4, 1)));
    }

    #[test]
    fn locates_inside_multiline_flow_collections() {
        let text = "n: { a: 1,\n     b: [x, \"y: z\",\n  w] }\nm: 3\n";
        let map = SourceMap::new(text);
        assert_eq!(map.key(&path(&["n", "b"])), Some(Span::new(2, 6)));
        assert_eq!(map.key(&path(&["n", "b", "1"])), Some(Span::new(2, 13)));
        assert_eq!(map.value(&path(&["n", "b", "1"])), Some(Span::new(2, 14)));
        assert_eq!(map.key(&path(&["n", "b", "2"])), Some(Span::new(3, 3)));
        assert_eq!(map.key(&path(&["m"])), Some(Span::new(4, 1)));
    }

    #[test]
    fn block_scalars_point_at_their_first_line_and_hide_their_body() {
        let text = "s:\n  script: |\n    let a = 1;\n    x: not a key\n  next: b\n";
        let map = SourceMap::new(text);
        assert_eq!(map.value(&path(&["s", "script"])), Some(Span::new(3, 5)));
        assert_eq!(map.key(&path(&["s", "x"])), None);
        assert_eq!(map.key(&path(&["s", "next"])), Some(Span::new(5, 3)));
    }

    #[test]
    fn quotes_comments_anchors_and_markers() {
        let text = "---\n\"quoted key\": &anchor 'it''s # not a comment'\nplain: a#b # comment\n";
        let map = SourceMap::new(text);
        assert_eq!(map.key(&path(&["quoted key"])), Some(Span::new(2, 1)));
        assert_eq!(map.value(&path(&["quoted key"])), Some(Span::new(2, 24)));
        assert_eq!(map.value(&path(&["plain"])), Some(Span::new(3, 8)));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_known_position() {
        let map = SourceMap::new("a:\n  b: *alias\n");
        assert_eq!(map.key(&path(&["a", "b", "c"])), None);
        assert_eq!(map.nearest(&path(&["a", "b", "c"])), Span::new(2, 3));
        assert_eq!(SourceMap::new("").nearest(&path(&["x"])), Span::new(1, 1));
    }

    #[test]
    fn finds_the_first_repeated_key() {
        let map = SourceMap::new("a:\n  b: 1\n  c: { d: 1, d: 2 }\n  b: 3\n");
        assert_eq!(
            map.duplicate_key(),
            Some(("d".to_string(), Span::new(3, 8), Span::new(3, 14)))
        );
        assert_eq!(SourceMap::new("a: 1\nb: 2\n").duplicate_key(), None);
    }

    #[test]
    fn multi_line_plain_scalars_are_skipped() {
        let text = "a:\n  when: x >\n    10 && y\n  to: z\n";
        let map = SourceMap::new(text);
        assert_eq!(map.key(&path(&["a", "to"])), Some(Span::new(4, 3)));
    }
}
