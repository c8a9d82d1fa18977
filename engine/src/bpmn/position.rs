//! Turns byte offsets into 1-based line:column spans in one forward pass.
//!
//! The XML reader reports byte offsets in document order, so a cursor that only moves forward
//! gives every position in time linear in the file size, even for files written on one long line.

use crate::model::Span;

/// A forward-moving position in a UTF-8 text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor {
    offset: usize,
    line: u32,
    col: u32,
}

impl Default for Cursor {
    fn default() -> Self {
        Self {
            offset: 0,
            line: 1,
            col: 1,
        }
    }
}

impl Cursor {
    /// The span of byte `offset` in `text`. Columns count characters, not bytes; a `\n` starts a
    /// new line. Offsets before the cursor restart the count from the beginning of the text.
    pub(crate) fn span_at(&mut self, text: &[u8], offset: usize) -> Span {
        let offset = offset.min(text.len());
        if offset < self.offset {
            *self = Self::default();
        }
        let skipped = &text[self.offset..offset];
        // Counting in simple passes lets the compiler vectorise them.
        let newlines = skipped.iter().filter(|&&b| b == b'\n').count();
        let line_start = match skipped.iter().rposition(|&b| b == b'\n') {
            Some(last_newline) => {
                self.line = self
                    .line
                    .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
                self.col = 1;
                last_newline + 1
            }
            None => 0,
        };
        // Count the first byte of each UTF-8 sequence only.
        let chars = skipped[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count();
        self.col = self
            .col
            .saturating_add(u32::try_from(chars).unwrap_or(u32::MAX));
        self.offset = offset;
        Span::new(self.line, self.col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_characters() {
        let text = "ab\ncé\u{20ac}x\n\nz".as_bytes();
        let mut cursor = Cursor::default();
        assert_eq!(cursor.span_at(text, 0), Span::new(1, 1));
        assert_eq!(cursor.span_at(text, 1), Span::new(1, 2));
        assert_eq!(cursor.span_at(text, 3), Span::new(2, 1));
        // 'c' (1 byte) + 'é' (2 bytes) + '€' (3 bytes) precede 'x'.
        let x = text.iter().position(|&b| b == b'x').unwrap();
        assert_eq!(cursor.span_at(text, x), Span::new(2, 4));
        assert_eq!(cursor.span_at(text, text.len() - 1), Span::new(4, 1));
        // Going backwards restarts the count.
        assert_eq!(cursor.span_at(text, 1), Span::new(1, 2));
    }
}
