//! First pass: reads BPMN XML into a compact element tree, iteratively.
//!
//! The tree keeps only what the model builder reads: elements of the BPMN, Flowbot and vendor
//! extension namespaces, their attributes and their text. Diagram interchange and unknown
//! extensions are skipped with their subtrees. Names, attribute values and text borrow from the
//! input; only values containing entity or character references are copied.
//!
//! Robustness: no entity is ever expanded beyond the five XML ones and character references,
//! DOCTYPE entity declarations are refused, nesting depth is bounded, and the reader loop keeps
//! its own stack, so deeply nested input cannot overflow the call stack.

use super::namespaces::{classify, Ns};
use super::position::Cursor;
use crate::diagnostics::Diagnostic;
use crate::model::Span;
use quick_xml::events::attributes::Attributes;
use quick_xml::events::Event;
use quick_xml::name::QName;
use quick_xml::NsReader;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Index of an element in an [`XmlTree`].
pub(crate) type ElementId = u32;

const NO_ELEMENT: u32 = u32::MAX;

/// One kept element.
#[derive(Debug)]
pub(crate) struct Element<'i> {
    /// Its namespace.
    pub ns: Ns,
    /// Its local name (prefix removed).
    pub name: &'i str,
    /// Where its start tag begins.
    pub span: Span,
    attributes_start: u32,
    attributes_end: u32,
    text: Option<Text<'i>>,
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
}

/// One attribute of a kept element (namespace declarations are not kept).
#[derive(Debug)]
pub(crate) struct Attribute<'i> {
    /// Its namespace; unprefixed attributes have [`Ns::NoNamespace`].
    pub ns: Ns,
    /// Its local name.
    pub name: &'i str,
    /// Its value, entity and character references resolved.
    pub value: Cow<'i, str>,
}

/// The text directly inside an element (text and CDATA pieces joined).
#[derive(Debug)]
struct Text<'i> {
    value: Cow<'i, str>,
    span: Span,
}

/// The kept elements of a document; element 0 is the root.
#[derive(Debug, Default)]
pub(crate) struct XmlTree<'i> {
    elements: Vec<Element<'i>>,
    attributes: Vec<Attribute<'i>>,
}

impl<'i> XmlTree<'i> {
    /// The root element, if the document had a kept one.
    pub(crate) fn root(&self) -> Option<ElementId> {
        (!self.elements.is_empty()).then_some(0)
    }

    /// The element with index `id`.
    pub(crate) fn element(&self, id: ElementId) -> &Element<'i> {
        &self.elements[id as usize]
    }

    /// The children of `id`, in document order.
    pub(crate) fn children(&self, id: ElementId) -> Children<'_, 'i> {
        Children {
            tree: self,
            next: self.element(id).first_child,
        }
    }

    /// The first child of `id` in namespace `ns` (BPMN meaning BPMN or no namespace) named `name`.
    pub(crate) fn child(&self, id: ElementId, ns: Ns, name: &str) -> Option<ElementId> {
        self.children(id).find(|&c| self.is(c, ns, name))
    }

    /// Whether `id` is the element `name` in namespace `ns` (BPMN accepts no namespace too).
    pub(crate) fn is(&self, id: ElementId, ns: Ns, name: &str) -> bool {
        let element = self.element(id);
        element.name == name && (element.ns == ns || (ns == Ns::Bpmn && element.ns.is_bpmn()))
    }

    /// The extension elements of `id` in namespace `ns` named `name`.
    pub(crate) fn extensions<'t>(
        &'t self,
        id: ElementId,
        ns: Ns,
        name: &'t str,
    ) -> impl Iterator<Item = ElementId> + 't {
        self.child(id, Ns::Bpmn, "extensionElements")
            .into_iter()
            .flat_map(move |ext| self.children(ext))
            .filter(move |&c| self.is(c, ns, name))
    }

    /// All attributes of `id`.
    pub(crate) fn attributes(&self, id: ElementId) -> &[Attribute<'i>] {
        let element = self.element(id);
        &self.attributes[element.attributes_start as usize..element.attributes_end as usize]
    }

    /// The unprefixed attribute `name` of `id`.
    pub(crate) fn attr(&self, id: ElementId, name: &str) -> Option<&str> {
        self.ns_attr(id, Ns::NoNamespace, name)
    }

    /// The attribute `name` in namespace `ns` of `id`.
    pub(crate) fn ns_attr(&self, id: ElementId, ns: Ns, name: &str) -> Option<&str> {
        self.attributes(id)
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_ref())
    }

    /// The trimmed text content of `id` and where it starts, when it has any.
    pub(crate) fn text(&self, id: ElementId) -> Option<(&str, Span)> {
        let text = self.element(id).text.as_ref()?;
        let trimmed = text.value.trim();
        (!trimmed.is_empty()).then_some((trimmed, text.span))
    }

    /// The trimmed text content of `id` and where its first non-blank character is (when the
    /// text has no entity references before it).
    pub(crate) fn trimmed_text(&self, id: ElementId) -> Option<(&str, Span)> {
        let text = self.element(id).text.as_ref()?;
        let trimmed = text.value.trim();
        if trimmed.is_empty() {
            return None;
        }
        let skipped = &text.value[..text.value.len() - text.value.trim_start().len()];
        let lines = skipped.matches('\n').count() as u32;
        let span = match skipped.rfind('\n') {
            Some(last) => Span::new(
                text.span.line + lines,
                skipped[last + 1..].chars().count() as u32 + 1,
            ),
            None => Span::new(
                text.span.line,
                text.span.col + skipped.chars().count() as u32,
            ),
        };
        Some((trimmed, span))
    }
}

/// Iterator over the children of an element.
pub(crate) struct Children<'t, 'i> {
    tree: &'t XmlTree<'i>,
    next: u32,
}

impl Iterator for Children<'_, '_> {
    type Item = ElementId;

    fn next(&mut self) -> Option<ElementId> {
        if self.next == NO_ELEMENT {
            return None;
        }
        let current = self.next;
        self.next = self.tree.element(current).next_sibling;
        Some(current)
    }
}

/// The deepest element nesting accepted (BPMN files rarely exceed 20).
pub const MAX_DEPTH: usize = 256;

/// The most attributes read on one element (modelers write fewer than 20).
pub const MAX_ATTRIBUTES: usize = 64;

/// The most elements kept from one file (BPMN, Flowbot and vendor extension elements; diagram
/// interchange is skipped and not counted). A 1,000-node process keeps about 5,000.
pub const MAX_ELEMENTS: usize = 200_000;

/// Reads `text` into a tree. Returns `None` when the document cannot be read as XML at all (the
/// reason is in `diagnostics`); recoverable problems (bad entity references, duplicate ids) are
/// reported and reading goes on.
pub(crate) fn read_tree<'i, 'd>(
    file: &'d Path,
    text: &'i str,
    diagnostics: &'d mut Vec<Diagnostic>,
) -> Option<XmlTree<'i>> {
    TreeReader::new(file, text, diagnostics).read()
}

struct TreeReader<'i, 'd> {
    file: &'d Path,
    input: &'i str,
    diagnostics: &'d mut Vec<Diagnostic>,
    tree: XmlTree<'i>,
    cursor: Cursor,
    /// Kept elements currently open.
    open: Vec<ElementId>,
    /// Depth inside a skipped subtree (0 when not skipping).
    skipped_depth: usize,
    /// Total open elements, kept or skipped.
    depth: usize,
    ids: HashMap<&'i str, Span>,
    warned_prefixes: Vec<Vec<u8>>,
}

impl<'i, 'd> TreeReader<'i, 'd> {
    fn new(file: &'d Path, input: &'i str, diagnostics: &'d mut Vec<Diagnostic>) -> Self {
        Self {
            file,
            input,
            diagnostics,
            tree: XmlTree::default(),
            cursor: Cursor::default(),
            open: Vec::new(),
            skipped_depth: 0,
            depth: 0,
            ids: HashMap::new(),
            warned_prefixes: Vec::new(),
        }
    }

    fn span(&mut self, offset: usize) -> Span {
        self.cursor.span_at(self.input.as_bytes(), offset)
    }

    fn error(&mut self, offset: usize, message: String) {
        let span = self.span(offset);
        self.diagnostics
            .push(Diagnostic::error(self.file, span, message));
    }

    fn read(mut self) -> Option<XmlTree<'i>> {
        // Typical BPMN spends 100-200 bytes per kept element; reserving avoids most regrowth.
        self.tree.elements.reserve((self.input.len() / 256).max(64));
        self.tree
            .attributes
            .reserve((self.input.len() / 128).max(128));
        let mut reader = NsReader::from_reader(self.input.as_bytes());
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        loop {
            let start = reader.buffer_position() as usize;
            let (resolved, event) = match reader.read_resolved_event() {
                Ok(pair) => pair,
                Err(error) => {
                    let offset = reader.error_position() as usize;
                    self.error(offset, format!("malformed XML: {error}"));
                    return None;
                }
            };
            let (ns, undeclared_prefix) = classify(resolved);
            let end = reader.buffer_position() as usize;
            match event {
                Event::Start(_) | Event::Empty(_) => {
                    let is_empty = matches!(event, Event::Empty(_));
                    if self.depth + 1 > MAX_DEPTH {
                        self.error(
                            start,
                            format!("elements are nested more than {MAX_DEPTH} levels deep"),
                        );
                        return None;
                    }
                    if !is_empty {
                        self.depth += 1;
                    }
                    if self.skipped_depth > 0 {
                        self.skipped_depth += usize::from(!is_empty);
                        continue;
                    }
                    if !ns.keeps_elements() {
                        self.skipped_depth = usize::from(!is_empty);
                        continue;
                    }
                    if let Some(prefix) = undeclared_prefix {
                        self.warn_undeclared_prefix(start, prefix);
                    }
                    // The start tag without `<` and `>` (or `/>`).
                    let content_end = if is_empty {
                        end.saturating_sub(2)
                    } else {
                        end.saturating_sub(1)
                    };
                    let Some(content) = self
                        .input
                        .get(start + 1..content_end)
                        .filter(|_| self.input.as_bytes().get(start) == Some(&b'<'))
                    else {
                        self.error(
                            start,
                            "malformed XML: cannot locate the start tag".to_string(),
                        );
                        return None;
                    };
                    let id = self.push_element(&reader, ns, start, content)?;
                    if !is_empty {
                        self.open.push(id);
                    }
                }
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.skipped_depth > 0 {
                        self.skipped_depth -= 1;
                    } else {
                        self.open.pop();
                    }
                }
                Event::Text(text) => {
                    let Some(&parent) = self.open.last().filter(|_| self.skipped_depth == 0) else {
                        continue;
                    };
                    let raw = match text.into_inner() {
                        Cow::Borrowed(bytes) => bytes,
                        Cow::Owned(_) => continue,
                    };
                    let Ok(raw) = std::str::from_utf8(raw) else {
                        continue;
                    };
                    self.append_text(parent, start, raw, true);
                }
                Event::CData(cdata) => {
                    let Some(&parent) = self.open.last().filter(|_| self.skipped_depth == 0) else {
                        continue;
                    };
                    let raw = match cdata.into_inner() {
                        Cow::Borrowed(bytes) => bytes,
                        Cow::Owned(_) => continue,
                    };
                    let Ok(raw) = std::str::from_utf8(raw) else {
                        continue;
                    };
                    self.append_text(parent, start + "<![CDATA[".len(), raw, false);
                }
                Event::DocType(doctype) => {
                    if doctype.windows(b"ENTITY".len()).any(|w| w == b"ENTITY") {
                        self.error(
                            start,
                            "DOCTYPE entity declarations are refused: BPMN files must not declare entities \
                             (they are never expanded)"
                                .to_string(),
                        );
                        return None;
                    }
                    let span = self.span(start);
                    self.diagnostics.push(Diagnostic::warning(
                        self.file,
                        span,
                        "DOCTYPE declaration ignored",
                    ));
                }
                Event::Eof => break,
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            }
        }
        if let Some(&unclosed) = self.open.last() {
            let element = self.tree.element(unclosed);
            let message = format!(
                "unexpected end of file: element `{}` opened at {}:{} is not closed",
                element.name, element.span.line, element.span.col
            );
            self.error(self.input.len(), message);
            return None;
        }
        Some(self.tree)
    }

    fn warn_undeclared_prefix(&mut self, offset: usize, prefix: Vec<u8>) {
        if self.warned_prefixes.contains(&prefix) {
            return;
        }
        let span = self.span(offset);
        let message = format!(
            "namespace prefix `{}` is not declared",
            String::from_utf8_lossy(&prefix)
        );
        self.diagnostics
            .push(Diagnostic::warning(self.file, span, message));
        self.warned_prefixes.push(prefix);
    }

    /// Adds a kept element whose start tag (without `<`, `>`) is `content`, starting at `offset`.
    fn push_element(
        &mut self,
        reader: &NsReader<&'i [u8]>,
        ns: Ns,
        offset: usize,
        content: &'i str,
    ) -> Option<ElementId> {
        let span = self.span(offset);
        let name_len = content
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(content.len());
        let qualified = &content[..name_len];
        let name = qualified.rsplit(':').next().unwrap_or(qualified);
        if self.tree.elements.len() >= MAX_ELEMENTS {
            self.error(offset, format!("the file has more than {MAX_ELEMENTS} elements (not counting diagram interchange)"));
            return None;
        }
        let Ok(id) = u32::try_from(self.tree.elements.len()) else {
            self.error(offset, "too many elements".to_string());
            return None;
        };
        let attributes_start = self.tree.attributes.len() as u32;
        // Duplicate attributes are found below on the kept attributes, without the per-element
        // allocation quick-xml's own check makes.
        let mut attributes = Attributes::new(content, name_len);
        attributes.with_checks(false);
        for (index, attribute) in attributes.enumerate() {
            if index == MAX_ATTRIBUTES {
                let message = format!(
                    "`{qualified}` has more than {MAX_ATTRIBUTES} attributes; the rest are ignored"
                );
                self.diagnostics
                    .push(Diagnostic::error(self.file, span, message));
                break;
            }
            let attribute = match attribute {
                Ok(attribute) => attribute,
                Err(error) => {
                    self.diagnostics.push(Diagnostic::error(
                        self.file,
                        span,
                        format!("malformed attribute: {error}"),
                    ));
                    break;
                }
            };
            let key = attribute.key.0;
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                continue;
            }
            let (attribute_ns, _) = classify(reader.resolve_attribute(QName(key)).0);
            if attribute_ns == Ns::Other {
                // Attributes of unknown extensions are never read.
                continue;
            }
            let Ok(key) = std::str::from_utf8(key) else {
                continue;
            };
            let local = key.rsplit(':').next().unwrap_or(key);
            let raw = match attribute.value {
                Cow::Borrowed(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
                Cow::Owned(_) => continue,
            };
            let value = self.unescape(
                raw,
                self.offset_of(raw),
                &format!("in attribute `{key}` of `{name}`"),
            );
            let this_element = &self.tree.attributes[attributes_start as usize..];
            if this_element
                .iter()
                .any(|a| a.ns == attribute_ns && a.name == local)
            {
                let message = format!("attribute `{key}` appears twice on `{qualified}`");
                self.diagnostics
                    .push(Diagnostic::error(self.file, span, message));
                continue;
            }
            if local == "id" && attribute_ns == Ns::NoNamespace && ns.is_bpmn() {
                if let Some(first) = self.ids.get(raw) {
                    let message = format!(
                        "duplicate id `{raw}` (first defined at {}:{})",
                        first.line, first.col
                    );
                    self.diagnostics
                        .push(Diagnostic::error(self.file, span, message).with_id(raw));
                } else {
                    self.ids.insert(raw, span);
                }
            }
            self.tree.attributes.push(Attribute {
                ns: attribute_ns,
                name: local,
                value,
            });
        }
        let attributes_end = self.tree.attributes.len() as u32;
        self.tree.elements.push(Element {
            ns,
            name,
            span,
            attributes_start,
            attributes_end,
            text: None,
            first_child: NO_ELEMENT,
            last_child: NO_ELEMENT,
            next_sibling: NO_ELEMENT,
        });
        match self.open.last().copied() {
            Some(parent) => {
                let previous = self.tree.elements[parent as usize].last_child;
                if previous == NO_ELEMENT {
                    self.tree.elements[parent as usize].first_child = id;
                } else {
                    self.tree.elements[previous as usize].next_sibling = id;
                }
                self.tree.elements[parent as usize].last_child = id;
            }
            None if id != 0 => {
                self.error(
                    offset,
                    format!("malformed XML: second root element `{qualified}`"),
                );
                return None;
            }
            None => {}
        }
        Some(id)
    }

    /// Appends a text or CDATA piece (`escaped` when entity references must be resolved).
    fn append_text(&mut self, parent: ElementId, offset: usize, raw: &'i str, escaped: bool) {
        let has_text = self.tree.elements[parent as usize].text.is_some();
        let leading = raw.len() - raw.trim_start().len();
        if !has_text && leading == raw.len() {
            return;
        }
        // Spans are taken in document order: the text's start before any error inside it.
        let span = (!has_text).then(|| self.span(offset + leading));
        let value = if escaped {
            self.unescape(raw, offset, "in text")
        } else {
            Cow::Borrowed(raw)
        };
        match (span, self.tree.elements[parent as usize].text.as_mut()) {
            (None, Some(text)) => text.value.to_mut().push_str(&value),
            (Some(span), _) => {
                self.tree.elements[parent as usize].text = Some(Text { value, span })
            }
            (None, None) => {}
        }
    }

    /// Resolves entity and character references in `raw`, which starts at byte `offset`; a bad
    /// reference is reported where it stands and the text is kept as written.
    fn unescape(&mut self, raw: &'i str, offset: usize, context: &str) -> Cow<'i, str> {
        match quick_xml::escape::unescape(raw) {
            Ok(value) => value,
            Err(error) => {
                let (at, description) = describe_escape_error(&error);
                self.error(
                    offset + at.unwrap_or(0),
                    format!("{context}: {description}"),
                );
                Cow::Borrowed(raw)
            }
        }
    }

    /// The byte offset of `part`, a slice of the input, in the input.
    fn offset_of(&self, part: &str) -> usize {
        (part.as_ptr() as usize)
            .saturating_sub(self.input.as_ptr() as usize)
            .min(self.input.len())
    }
}

/// Where in the escaped text the bad reference starts (when known), and what is wrong with it.
fn describe_escape_error(error: &quick_xml::escape::EscapeError) -> (Option<usize>, String) {
    use quick_xml::escape::EscapeError;
    match error {
        EscapeError::UnrecognizedEntity(name_range, name) => (
            Some(name_range.start.saturating_sub(1)),
            format!(
                "unknown entity `&{name};` (only &lt; &gt; &amp; &apos; &quot; and character references are allowed)"
            ),
        ),
        EscapeError::UnterminatedEntity(range) => {
            (Some(range.start), "`&` without a closing `;` (write `&amp;` for a literal `&`)".to_string())
        }
        EscapeError::InvalidCharRef(error) => (None, format!("invalid character reference: {error}")),
    }
}
