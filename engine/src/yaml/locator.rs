//! Source positions for YAML documents, and the limits on a document's structure.
//!
//! `serde_yaml` turns a document into values without positions. [`SourceMap::read`] reads the same
//! text with saphyr's YAML 1.2 parser, whose events carry spans, and records where every mapping
//! key, sequence item and value starts, so the DSL reader can attach a `line:col` to every node,
//! flow and expression it builds. On the way it enforces the limits of [`super::limits`] on
//! nesting, values and collection sizes, so a document that would make the reader allocate without
//! bound is refused with a positioned error before `serde_yaml` builds any value.
//!
//! Conventions: a mapping key is located where it is written (a quoted key at its quote); a list
//! item at its `-` (block lists) or where it starts (`[...]` lists); a value where its content
//! starts: after anchors and tags, inside the quotes of a quoted scalar, at the first body line of
//! a block scalar (`|`, `>`), at the `{`/`[` of a flow collection and at the first key or `-` of a
//! block collection. Empty values and values after a syntax error have no position: lookups
//! return `None` and callers fall back to the nearest enclosing position
//! ([`SourceMap::nearest`]). Never panics.

use super::limits::{LimitError, MAX_ENTRIES, MAX_NESTING, MAX_VALUES};
use crate::model::Span;
use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span as Range};
use std::borrow::Cow;
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

/// An index into [`SourceMap::nodes`].
type NodeId = usize;

/// A located value: where it starts, and its located children.
#[derive(Debug, Default)]
struct Node {
    /// Where the value starts; `None` for empty values.
    value: Option<Span>,
    children: Children,
}

#[derive(Debug, Default)]
enum Children {
    #[default]
    Leaf,
    /// Mapping entries by key (the first entry of a key): where the key is written, the value.
    Map(HashMap<String, (Span, NodeId)>),
    /// Sequence items: where the item starts (its `-` in a block list), the item.
    Seq(Vec<(Span, NodeId)>),
}

/// Positions of the keys, items and values of one YAML document.
#[derive(Debug, Default)]
pub struct SourceMap {
    /// Every located value; the document root first. A flat list (children refer to their values
    /// by index), so neither building, reading nor dropping it recurses.
    nodes: Vec<Node>,
    /// The first key written twice in one mapping: the key, its first and its repeated position.
    duplicate: Option<(String, Span, Span)>,
    /// Where the parser stopped on a syntax error, and why.
    syntax_error: Option<(Span, String)>,
}

impl SourceMap {
    /// Reads the structure of `text` (its first document). A syntax error ends the reading: what
    /// came before it stays located, and [`SourceMap::syntax_error`] tells where it stopped.
    /// Fails only when the document exceeds a limit of [`super::limits`].
    pub fn read(text: &str) -> Result<Self, LimitError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut builder = Builder::new(text);
        let mut parser = Parser::new_from_str(text);
        let mut syntax_error = None;
        while let Some(next) = parser.next_event() {
            match next {
                Ok((event, range)) => {
                    if !builder.event(event, range)? {
                        break;
                    }
                }
                Err(err) => {
                    syntax_error = Some((position(*err.marker()), err.info().to_string()));
                    break;
                }
            }
        }
        Ok(Self {
            nodes: builder.nodes,
            duplicate: builder.duplicate,
            syntax_error,
        })
    }

    /// Where the YAML 1.2 parser found a syntax error, and its message. Positions after it are not
    /// located. (`serde_yaml`, which reads the values, is more lenient in places: continuation
    /// lines of a flow collection or quoted scalar indented no deeper than their key.)
    pub fn syntax_error(&self) -> Option<(Span, &str)> {
        self.syntax_error
            .as_ref()
            .map(|(span, message)| (*span, message.as_str()))
    }

    /// Where the last step of `path` is written: the key of a mapping entry, or the start of a
    /// sequence item. The empty path (the root) has no key and gives `None`.
    pub fn key(&self, path: &YamlPath) -> Option<Span> {
        self.key_at(path.segments())
    }

    /// Where the value at `path` starts.
    pub fn value(&self, path: &YamlPath) -> Option<Span> {
        self.value_at(path.segments())
    }

    /// The position of `path`'s key, or else of the closest enclosing key or value that could be
    /// located, or else 1:1.
    pub fn nearest(&self, path: &YamlPath) -> Span {
        let segs = path.segments();
        (0..=segs.len())
            .rev()
            .find_map(|n| {
                self.key_at(&segs[..n])
                    .or_else(|| self.value_at(&segs[..n]))
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
        self.duplicate.clone()
    }

    fn key_at(&self, segs: &[PathSeg]) -> Option<Span> {
        let (last, parent) = segs.split_last()?;
        let parent = self.find(parent)?;
        match (last, &self.nodes[parent].children) {
            (PathSeg::Key(k), Children::Map(entries)) => entries.get(k).map(|(span, _)| *span),
            (PathSeg::Index(i), Children::Seq(items)) => items.get(*i).map(|(span, _)| *span),
            _ => None,
        }
    }

    fn value_at(&self, segs: &[PathSeg]) -> Option<Span> {
        self.nodes[self.find(segs)?].value
    }

    fn find(&self, segs: &[PathSeg]) -> Option<NodeId> {
        let mut current = if self.nodes.is_empty() {
            return None;
        } else {
            0
        };
        for seg in segs {
            current = match (seg, &self.nodes[current].children) {
                (PathSeg::Key(k), Children::Map(entries)) => entries.get(k).map(|(_, id)| *id)?,
                (PathSeg::Index(i), Children::Seq(items)) => items.get(*i).map(|(_, id)| *id)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

/// A value as the parser reports it, without its text (keys aside).
enum Read<'input> {
    Scalar {
        text: Cow<'input, str>,
        style: ScalarStyle,
        properties: bool,
    },
    Alias,
    Collection {
        mapping: bool,
        properties: bool,
    },
}

/// A collection being read.
enum Open {
    Mapping { node: NodeId, next: Expect },
    Sequence { node: NodeId, block: bool },
}

/// What a mapping reads next.
enum Expect {
    Key,
    /// The value of the key just read: the node it fills, or `None` when the key cannot be
    /// addressed (not text, or repeated) and its value is skipped.
    Value(Option<NodeId>),
}

/// Turns parser events into [`SourceMap`] nodes.
struct Builder<'t> {
    source: Source<'t>,
    nodes: Vec<Node>,
    open: Vec<Open>,
    /// Collections open inside a part that cannot be addressed (a non-text or repeated key and
    /// its value), which is read but not recorded.
    skipped: usize,
    /// Values read so far (keys, items and scalars of every level).
    values: usize,
    duplicate: Option<(String, Span, Span)>,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            source: Source::new(text),
            nodes: Vec::new(),
            open: Vec::new(),
            skipped: 0,
            values: 0,
            duplicate: None,
        }
    }

    /// Takes one event; `Ok(false)` when the first document is complete.
    fn event(&mut self, event: Event<'_>, range: Range) -> Result<bool, LimitError> {
        let read = match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => return Ok(true),
            Event::DocumentEnd | Event::StreamEnd => return Ok(false),
            Event::MappingEnd | Event::SequenceEnd => {
                if self.skipped > 0 {
                    self.skipped -= 1;
                } else {
                    self.open.pop();
                }
                return Ok(true);
            }
            Event::Scalar(text, style, anchor, tag) => Read::Scalar {
                text,
                style,
                properties: anchor != 0 || tag.is_some(),
            },
            Event::Alias(_) => Read::Alias,
            Event::SequenceStart(anchor, tag) => Read::Collection {
                mapping: false,
                properties: anchor != 0 || tag.is_some(),
            },
            Event::MappingStart(anchor, tag) => Read::Collection {
                mapping: true,
                properties: anchor != 0 || tag.is_some(),
            },
        };
        self.value(read, range)?;
        Ok(true)
    }

    /// Places a value that starts: the root, a list item, a mapping key or a mapping value.
    fn value(&mut self, read: Read<'_>, range: Range) -> Result<(), LimitError> {
        let at = position(range.start);
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(limit(
                at,
                format!("the document holds more than {MAX_VALUES} values (keys, list items and scalars), the limit for a process file; split the process"),
            ));
        }
        let collection = matches!(read, Read::Collection { .. });
        if collection && self.open.len() + self.skipped >= MAX_NESTING {
            return Err(limit(
                at,
                format!("the document is nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        if self.skipped > 0 {
            self.skipped += usize::from(collection);
            return Ok(());
        }
        let slot = match self.open.last_mut() {
            None if self.nodes.is_empty() => self.push_node(),
            None => return Ok(()),
            Some(Open::Sequence { node, block }) => {
                let (list, block) = (*node, *block);
                let item_at = if block {
                    self.source.dash_before(range.start).unwrap_or(at)
                } else {
                    at
                };
                self.item(list, block, item_at)?
            }
            Some(Open::Mapping { node, next }) => match std::mem::replace(next, Expect::Key) {
                Expect::Key => {
                    let mapping = *node;
                    let next = match read {
                        Read::Scalar { text, .. } => self.key(mapping, text, at)?,
                        _ => None,
                    };
                    if let Some(Open::Mapping { next: state, .. }) = self.open.last_mut() {
                        *state = Expect::Value(next);
                    }
                    if next.is_none() {
                        self.skipped = usize::from(collection);
                    }
                    return Ok(());
                }
                Expect::Value(Some(slot)) => slot,
                Expect::Value(None) => {
                    self.skipped = usize::from(collection);
                    return Ok(());
                }
            },
        };
        let value = self.source.value_position(&read, range);
        let (children, open) = match read {
            Read::Collection { mapping: true, .. } => (
                Children::Map(HashMap::new()),
                Some(Open::Mapping {
                    node: slot,
                    next: Expect::Key,
                }),
            ),
            Read::Collection {
                mapping: false,
                properties,
            } => {
                let block = !self.source.collection_start(range, properties).0;
                (
                    Children::Seq(Vec::new()),
                    Some(Open::Sequence { node: slot, block }),
                )
            }
            Read::Scalar { .. } | Read::Alias => (Children::Leaf, None),
        };
        self.nodes[slot] = Node { value, children };
        self.open.extend(open);
        Ok(())
    }

    fn push_node(&mut self) -> NodeId {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Adds an item at `at` to `list`; returns the node it fills.
    fn item(&mut self, list: NodeId, block: bool, at: Span) -> Result<NodeId, LimitError> {
        let id = self.nodes.len();
        let node = &mut self.nodes[list];
        let Children::Seq(items) = &mut node.children else {
            return Ok(self.push_node());
        };
        if items.len() >= MAX_ENTRIES {
            return Err(limit(
                at,
                format!("a list holds more than {MAX_ENTRIES} items, the limit for one list"),
            ));
        }
        if block && items.is_empty() {
            // A block list starts at its first `-`.
            node.value = Some(at);
        }
        items.push((at, id));
        Ok(self.push_node())
    }

    /// Records key `text` at `at` in `mapping`; returns the node its value fills (`None` for a
    /// repeated key, whose value is skipped).
    fn key(
        &mut self,
        mapping: NodeId,
        text: Cow<'_, str>,
        at: Span,
    ) -> Result<Option<NodeId>, LimitError> {
        let id = self.nodes.len();
        let Children::Map(entries) = &mut self.nodes[mapping].children else {
            return Ok(None);
        };
        if let Some((first, _)) = entries.get(text.as_ref()) {
            if self.duplicate.is_none() {
                self.duplicate = Some((text.into_owned(), *first, at));
            }
            return Ok(None);
        }
        if entries.len() >= MAX_ENTRIES {
            return Err(limit(
                at,
                format!("a mapping holds more than {MAX_ENTRIES} keys, the limit for one mapping"),
            ));
        }
        entries.insert(text.into_owned(), (at, id));
        Ok(Some(self.push_node()))
    }
}

fn limit(span: Span, message: String) -> LimitError {
    LimitError { span, message }
}

/// A 1-based [`Span`] for a parser position (1-based line, 0-based column in characters).
fn position(marker: Marker) -> Span {
    span_at(marker.line(), marker.col())
}

/// A [`Cursor`] at a parser position.
fn cursor(marker: Marker) -> Cursor {
    Cursor {
        index: marker.index(),
        line: marker.line(),
        col: marker.col(),
    }
}

/// A [`Span`] for a 1-based line and a 0-based column.
fn span_at(line: usize, col: usize) -> Span {
    Span::new(
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col + 1).unwrap_or(u32::MAX),
    )
}

/// How many lines back from a block list item its `-` is looked for (blank and comment lines
/// between the two); past that the item is located at its content.
const DASH_LOOKBACK_LINES: usize = 256;

/// Characters between two byte-offset checkpoints of a non-ASCII text.
const CHECKPOINT_STRIDE: usize = 64;

/// The text being read, with constant-time lookups from the parser's character indices to byte
/// offsets and from line numbers to lines.
struct Source<'t> {
    text: &'t str,
    /// For non-ASCII text, the byte offset of every [`CHECKPOINT_STRIDE`]-th character (for ASCII
    /// text, character indices are byte offsets).
    checkpoints: Option<Vec<usize>>,
    /// Where each line starts (line breaks as YAML counts them: `\n`, `\r\n` and `\r`).
    line_starts: Vec<usize>,
}

/// A position while walking the text: character index, 1-based line, 0-based column.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    index: usize,
    line: usize,
    col: usize,
}

impl<'t> Source<'t> {
    fn new(text: &'t str) -> Self {
        let checkpoints = (!text.is_ascii()).then(|| {
            text.char_indices()
                .step_by(CHECKPOINT_STRIDE)
                .map(|(offset, _)| offset)
                .collect()
        });
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        for (offset, byte) in bytes.iter().enumerate() {
            let breaks =
                *byte == b'\n' || (*byte == b'\r' && bytes.get(offset + 1) != Some(&b'\n'));
            if breaks {
                line_starts.push(offset + 1);
            }
        }
        Self {
            text,
            checkpoints,
            line_starts,
        }
    }

    /// The byte offset of character `index` (the text's length past its end).
    fn byte_of(&self, index: usize) -> usize {
        let Some(checkpoints) = &self.checkpoints else {
            return index.min(self.text.len());
        };
        let Some(&base) = checkpoints.get(index / CHECKPOINT_STRIDE) else {
            return self.text.len();
        };
        self.text[base..]
            .char_indices()
            .nth(index % CHECKPOINT_STRIDE)
            .map_or(self.text.len(), |(at, _)| base + at)
    }

    /// Line `number` (1-based) without its line break.
    fn line(&self, number: usize) -> Option<&'t str> {
        let start = *self.line_starts.get(number.checked_sub(1)?)?;
        let end = self
            .line_starts
            .get(number)
            .copied()
            .unwrap_or(self.text.len());
        Some(self.text[start..end].trim_end_matches(['\n', '\r']))
    }

    /// The characters from `from` on, each with its position.
    fn walk(&self, from: Cursor) -> impl Iterator<Item = (Cursor, char)> + 't {
        let mut at = from;
        let mut chars = self.text[self.byte_of(from.index)..].chars().peekable();
        std::iter::from_fn(move || {
            let c = chars.next()?;
            let here = at;
            at.index += 1;
            if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
                at.line += 1;
                at.col = 0;
            } else {
                at.col += 1;
            }
            Some((here, c))
        })
    }

    /// Whether the collection read at `range` is a flow collection (`[`/`{`), and where its
    /// bracket or first key or item is. A block collection's event has an empty span at its first
    /// key or item, a flow collection's spans its `[`/`{`; with properties (anchors, tags) the
    /// span runs from the first property to the bracket or to the first key or item.
    fn collection_start(&self, range: Range, properties: bool) -> (bool, Span) {
        if !properties {
            return (
                range.end.index() > range.start.index(),
                position(range.start),
            );
        }
        match self.content_start(cursor(range.start), range.end) {
            Some((at, '[' | '{')) => (true, span_at(at.line, at.col)),
            _ => (false, position(range.end)),
        }
    }

    /// Where the value read at `range` starts (see the module documentation).
    fn value_position(&self, read: &Read<'_>, range: Range) -> Option<Span> {
        match *read {
            Read::Alias => Some(position(range.start)),
            Read::Collection { properties, .. } => Some(self.collection_start(range, properties).1),
            Read::Scalar {
                style, properties, ..
            } => {
                if range.end.index() <= range.start.index() {
                    return None;
                }
                let start = cursor(range.start);
                let content = if properties {
                    self.content_start(start, range.end)?.0
                } else {
                    start
                };
                match style {
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        Some(span_at(content.line, content.col + 1))
                    }
                    // Without properties the span already starts at the body.
                    ScalarStyle::Literal | ScalarStyle::Folded if properties => {
                        self.block_body(content, range.end)
                    }
                    _ => Some(span_at(content.line, content.col)),
                }
            }
        }
    }

    /// The first character after the anchors, tags and comments from `from`, before `end`.
    fn content_start(&self, from: Cursor, end: Marker) -> Option<(Cursor, char)> {
        let (mut in_property, mut in_comment) = (false, false);
        for (at, c) in self.walk(from) {
            if at.index >= end.index() {
                return None;
            }
            match c {
                '\n' | '\r' => (in_property, in_comment) = (false, false),
                _ if in_comment => {}
                ' ' | '\t' => in_property = false,
                _ if in_property => {}
                '&' | '!' => in_property = true,
                '#' => in_comment = true,
                _ => return Some((at, c)),
            }
        }
        None
    }

    /// The first body character of the block scalar whose indicator (`|`, `>`) is at `indicator`.
    fn block_body(&self, indicator: Cursor, end: Marker) -> Option<Span> {
        let mut past_header = false;
        for (at, c) in self.walk(indicator) {
            if at.index >= end.index() {
                return None;
            }
            match c {
                '\n' | '\r' => past_header = true,
                ' ' | '\t' => {}
                _ if past_header => return Some(span_at(at.line, at.col)),
                _ => {}
            }
        }
        None
    }

    /// The `-` of the block list item that starts at `item`: before it on its line, or at the end
    /// of an earlier line with only blanks and comments in between.
    fn dash_before(&self, item: Marker) -> Option<Span> {
        let mut number = item.line();
        let line_start = *self.line_starts.get(number.checked_sub(1)?)?;
        let line = self.line(number)?;
        let mut before = &line[..self
            .byte_of(item.index())
            .saturating_sub(line_start)
            .min(line.len())];
        for _ in 0..DASH_LOOKBACK_LINES {
            let trimmed = before.trim_end_matches([' ', '\t']);
            if let Some(head) = trimmed.strip_suffix('-') {
                let separated = head.is_empty() || head.ends_with([' ', '\t']);
                return separated.then(|| span_at(number, head.chars().count()));
            }
            if !trimmed.is_empty() {
                return None;
            }
            number = number.checked_sub(1).filter(|n| *n > 0)?;
            before = without_comment(self.line(number)?);
        }
        None
    }
}

/// `line` up to its comment (a `#` at its start or after a blank); for lines that hold no
/// scalars (between a `-` and the item under it), so quotes need no attention.
fn without_comment(line: &str) -> &str {
    let mut previous = ' ';
    for (offset, c) in line.char_indices() {
        if c == '#' && (previous == ' ' || previous == '\t') {
            return &line[..offset];
        }
        previous = c;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The positions of `text`, which is within the limits.
    fn map_of(text: &str) -> SourceMap {
        SourceMap::read(text).expect("within the limits")
    }

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
        let map = map_of(text);
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
        let map = map_of(text);
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
        let map = map_of(text);
        assert_eq!(map.key(&path(&["a", "1"])), Some(Span::new(3, 1)));
        assert_eq!(map.key(&path(&["a", "1", "y"])), Some(Span::new(3, 3)));
        assert_eq!(map.key(&path(&["b"])), Some(Span::new(4, 1)));
    }

    #[test]
    fn locates_inside_multiline_flow_collections() {
        let text = "n: { a: 1,\n     b: [x, \"y: z\",\n  w] }\nm: 3\n";
        let map = map_of(text);
        assert_eq!(map.key(&path(&["n", "b"])), Some(Span::new(2, 6)));
        assert_eq!(map.key(&path(&["n", "b", "1"])), Some(Span::new(2, 13)));
        assert_eq!(map.value(&path(&["n", "b", "1"])), Some(Span::new(2, 14)));
        assert_eq!(map.key(&path(&["n", "b", "2"])), Some(Span::new(3, 3)));
        assert_eq!(map.key(&path(&["m"])), Some(Span::new(4, 1)));
    }

    #[test]
    fn block_scalars_point_at_their_first_line_and_hide_their_body() {
        let text = "s:\n  script: |\n    let a = 1;\n    x: not a key\n  next: b\n";
        let map = map_of(text);
        assert_eq!(map.value(&path(&["s", "script"])), Some(Span::new(3, 5)));
        assert_eq!(map.key(&path(&["s", "x"])), None);
        assert_eq!(map.key(&path(&["s", "next"])), Some(Span::new(5, 3)));
    }

    #[test]
    fn quotes_comments_anchors_and_markers() {
        let text = "---\n\"quoted key\": &anchor 'it''s # not a comment'\nplain: a#b # comment\n";
        let map = map_of(text);
        assert_eq!(map.key(&path(&["quoted key"])), Some(Span::new(2, 1)));
        assert_eq!(map.value(&path(&["quoted key"])), Some(Span::new(2, 24)));
        assert_eq!(map.value(&path(&["plain"])), Some(Span::new(3, 8)));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_known_position() {
        let map = map_of("a:\n  b: *alias\n");
        assert_eq!(map.key(&path(&["a", "b", "c"])), None);
        assert_eq!(map.nearest(&path(&["a", "b", "c"])), Span::new(2, 3));
        assert_eq!(map_of("").nearest(&path(&["x"])), Span::new(1, 1));
    }

    #[test]
    fn finds_the_first_repeated_key() {
        let map = map_of("a:\n  b: 1\n  c: { d: 1, d: 2 }\n  b: 3\n");
        assert_eq!(
            map.duplicate_key(),
            Some(("d".to_string(), Span::new(3, 8), Span::new(3, 14)))
        );
        assert_eq!(map_of("a: 1\nb: 2\n").duplicate_key(), None);
    }

    #[test]
    fn multi_line_plain_scalars_are_skipped() {
        let text = "a:\n  when: x >\n    10 && y\n  to: z\n";
        let map = map_of(text);
        assert_eq!(map.key(&path(&["a", "to"])), Some(Span::new(4, 3)));
    }

    #[test]
    fn flow_collections_point_at_their_bracket_after_blanks_and_properties() {
        let text = "a: [ x, y ]\nb: &anchor { k: v }\nc: !tag\n  [ z ]\nd:\n- &i [ 1 ]\n";
        let map = map_of(text);
        assert_eq!(map.value(&path(&["a"])), Some(Span::new(1, 4)));
        assert_eq!(map.key(&path(&["a", "1"])), Some(Span::new(1, 9)));
        assert_eq!(map.value(&path(&["b"])), Some(Span::new(2, 12)));
        assert_eq!(map.value(&path(&["c"])), Some(Span::new(4, 3)));
        assert_eq!(map.key(&path(&["d", "0"])), Some(Span::new(6, 1)));
        assert_eq!(map.value(&path(&["d", "0"])), Some(Span::new(6, 6)));
    }

    #[test]
    fn block_list_items_point_at_their_dash_across_lines_and_comments() {
        let text = "l:\n  -\n    a: 1\n  - # note\n\n    # more\n    b: 2\n  - &x !t\n    c: 3\n";
        let map = map_of(text);
        assert_eq!(map.value(&path(&["l"])), Some(Span::new(2, 3)));
        assert_eq!(map.key(&path(&["l", "0"])), Some(Span::new(2, 3)));
        assert_eq!(map.key(&path(&["l", "1"])), Some(Span::new(4, 3)));
        assert_eq!(map.key(&path(&["l", "1", "b"])), Some(Span::new(7, 5)));
        assert_eq!(map.key(&path(&["l", "2"])), Some(Span::new(8, 3)));
        assert_eq!(map.value(&path(&["l", "2"])), Some(Span::new(9, 5)));
    }

    #[test]
    fn empty_values_properties_and_tagged_block_scalars() {
        let text = "a:\nb: &only\nc: !t |\n\n  body\nd: { k: }\n";
        let map = map_of(text);
        assert_eq!(map.value(&path(&["a"])), None);
        assert_eq!(map.nearest_value(&path(&["a"])), Span::new(1, 1));
        assert_eq!(map.value(&path(&["b"])), None);
        assert_eq!(map.value(&path(&["c"])), Some(Span::new(5, 3)));
        assert_eq!(map.value(&path(&["d", "k"])), None);
        assert_eq!(map.key(&path(&["d", "k"])), Some(Span::new(6, 6)));
    }

    #[test]
    fn columns_count_characters_and_lines_count_every_yaml_line_break() {
        let text = "\u{feff}\u{e9}t\u{e9}: [\u{fc}, x]\r\nnext: 1\rlast: \"\u{4e2d}\"\n";
        let map = map_of(text);
        assert_eq!(
            map.key(&path(&["\u{e9}t\u{e9}", "1"])),
            Some(Span::new(1, 10))
        );
        assert_eq!(map.key(&path(&["next"])), Some(Span::new(2, 1)));
        assert_eq!(map.value(&path(&["last"])), Some(Span::new(3, 8)));
    }

    #[test]
    fn a_flow_list_continued_under_a_typo_is_located_without_growing() {
        let map = map_of("a: [se: x\n b, c]");
        assert_eq!(map.key(&path(&["a", "0"])), Some(Span::new(1, 5)));
        assert_eq!(map.key(&path(&["a", "0", "se"])), Some(Span::new(1, 5)));
        assert_eq!(map.key(&path(&["a", "1"])), Some(Span::new(2, 5)));
    }

    #[test]
    fn a_syntax_error_keeps_what_came_before_it() {
        let map = map_of("n:\n  a: [x,\n  y]\n  b: 2\n");
        assert_eq!(map.key(&path(&["n", "a"])), Some(Span::new(2, 3)));
        assert_eq!(map.key(&path(&["n", "b"])), None);
        let (at, message) = map
            .syntax_error()
            .expect("a flow line indented no deeper than its key");
        assert_eq!(at, Span::new(3, 3));
        assert!(message.contains("indentation"), "{message}");
        assert_eq!(map_of("a: 1\n").syntax_error(), None);
    }

    #[test]
    fn limits_are_enforced_with_their_position() {
        let deep = format!(
            "a: {}1{}\n",
            "[".repeat(MAX_NESTING + 5),
            "]".repeat(MAX_NESTING + 5)
        );
        let err = SourceMap::read(&deep).expect_err("too deep");
        assert_eq!(err.span, Span::new(1, 3 + MAX_NESTING as u32));
        assert!(err.message.contains("nested too deeply"), "{}", err.message);

        let wide = format!("a: [{}]\n", vec!["1"; MAX_ENTRIES + 1].join(","));
        let err = SourceMap::read(&wide).expect_err("too long a list");
        assert_eq!(err.span, Span::new(1, 5 + 2 * MAX_ENTRIES as u32));
        assert!(
            err.message.contains(&MAX_ENTRIES.to_string()),
            "{}",
            err.message
        );

        let keys: String = (0..=MAX_ENTRIES).map(|i| format!("k{i}: 1\n")).collect();
        let err = SourceMap::read(&keys).expect_err("too many keys");
        assert_eq!(err.span, Span::new(MAX_ENTRIES as u32 + 1, 1));

        let lists: String = (0..MAX_VALUES / 1000)
            .map(|i| format!("l{i}: [{}]\n", vec!["x"; 999].join(",")))
            .collect();
        let err = SourceMap::read(&lists).expect_err("too many values");
        assert!(
            err.message.contains(&MAX_VALUES.to_string()),
            "{}",
            err.message
        );
        assert_eq!(err.span.line as usize, MAX_VALUES / 1000);
    }
}
