//! The SentencePiece tokenizer of GGUF files whose `tokenizer.ggml.model` is `llama` (Gemma,
//! Llama 2, Mistral), as llama.cpp runs it: user-defined tokens are cut out of the text first
//! (longest first), spaces become `▁`, then adjacent pieces merge, highest vocabulary score
//! first, while their concatenation is a token; pieces that are no token fall back to byte
//! tokens (`<0x41>`).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// GGUF token type of user-defined tokens.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// A SentencePiece vocabulary ready to encode.
pub struct SpmTokenizer {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_ids: Vec<Option<u32>>,
    /// User-defined tokens, longest text first.
    user_defined: Vec<(String, u32)>,
    add_space_prefix: bool,
}

/// A candidate merge of two adjacent pieces.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Higher score first; on a tie the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

/// A piece of the text being merged: bytes `start..start + len`, linked to its neighbours.
#[derive(Clone, Copy)]
struct Piece {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl SpmTokenizer {
    /// Builds the tokenizer from the token texts, scores and GGUF token types.
    pub fn new(tokens: &[String], scores: &[f32], types: &[i64], add_space_prefix: bool) -> Self {
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let byte_ids = (0..=255u8)
            .map(|b| ids.get(&format!("<0x{b:02X}>")).copied())
            .collect();
        let mut user_defined: Vec<(String, u32)> = tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| types.get(*i) == Some(&TOKEN_TYPE_USER_DEFINED) && !t.is_empty())
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        user_defined.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        SpmTokenizer {
            ids,
            scores: scores.to_vec(),
            byte_ids,
            user_defined,
            add_space_prefix,
        }
    }

    /// Encodes `text` (no BOS; control tokens are never matched in text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        enum Fragment<'a> {
            Text(&'a str),
            Token(u32),
        }
        let mut fragments = vec![Fragment::Text(text)];
        for (token, id) in &self.user_defined {
            let mut split = Vec::with_capacity(fragments.len());
            for fragment in fragments {
                let Fragment::Text(mut rest) = fragment else {
                    split.push(fragment);
                    continue;
                };
                while let Some(at) = rest.find(token.as_str()) {
                    if at > 0 {
                        split.push(Fragment::Text(&rest[..at]));
                    }
                    split.push(Fragment::Token(*id));
                    rest = &rest[at + token.len()..];
                }
                if !rest.is_empty() {
                    split.push(Fragment::Text(rest));
                }
            }
            fragments = split;
        }
        let mut out = Vec::new();
        let mut after_token = true;
        for fragment in fragments {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_token = true;
                }
                Fragment::Text(text) => {
                    let mut escaped = String::with_capacity(text.len() + 3);
                    if self.add_space_prefix && after_token {
                        escaped.push('\u{2581}');
                    }
                    escaped.extend(text.chars().map(|c| if c == ' ' { '\u{2581}' } else { c }));
                    self.encode_piece(&escaped, &mut out);
                    after_token = false;
                }
            }
        }
        out
    }

    /// llama.cpp's `llm_tokenizer_spm_session::tokenize` over one escaped text fragment.
    fn encode_piece(&self, text: &str, out: &mut Vec<u32>) {
        let mut pieces: Vec<Piece> = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            let index = pieces.len();
            pieces.push(Piece {
                start,
                len: c.len_utf8(),
                prev: index.checked_sub(1),
                next: Some(index + 1),
            });
        }
        let Some(last) = pieces.last_mut() else {
            return;
        };
        last.next = None;
        let mut queue = BinaryHeap::new();
        let bigram = |pieces: &[Piece], left: usize, right: usize| -> Option<Bigram> {
            let (l, r) = (pieces[left], pieces[right]);
            let merged = &text[l.start..r.start + r.len];
            let id = *self.ids.get(merged)?;
            Some(Bigram {
                left,
                right,
                score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                size: merged.len(),
            })
        };
        for i in 1..pieces.len() {
            queue.extend(bigram(&pieces, i - 1, i));
        }
        while let Some(top) = queue.pop() {
            let (left, right) = (pieces[top.left], pieces[top.right]);
            // Outdated: one side has been merged into something else since.
            if left.len == 0 || right.len == 0 || left.len + right.len != top.size {
                continue;
            }
            pieces[top.left].len += right.len;
            pieces[top.right].len = 0;
            pieces[top.left].next = right.next;
            if let Some(next) = right.next {
                pieces[next].prev = Some(top.left);
            }
            if let Some(prev) = pieces[top.left].prev {
                queue.extend(bigram(&pieces, prev, top.left));
            }
            if let Some(next) = pieces[top.left].next {
                queue.extend(bigram(&pieces, top.left, next));
            }
        }
        let mut at = Some(0);
        while let Some(i) = at {
            let piece = pieces[i];
            let piece_text = &text[piece.start..piece.start + piece.len];
            match self.ids.get(piece_text) {
                Some(&id) => out.push(id),
                None => out.extend(piece_text.bytes().filter_map(|b| self.byte_ids[b as usize])),
            }
            at = piece.next;
        }
    }
}

/// The bytes a SentencePiece token stands for: `<0xAB>` is one byte, `▁` a space.
pub fn spm_token_bytes(token: &str) -> Vec<u8> {
    if token.len() == 6 && token.starts_with("<0x") && token.ends_with('>') {
        if let Ok(b) = u8::from_str_radix(&token[3..5], 16) {
            return vec![b];
        }
    }
    token.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> SpmTokenizer {
        let mut tokens: Vec<String> = [
            "<unk>", "\n", "▁", "h", "e", "l", "o", "▁h", "he", "ll", "llo", "hello", "▁hello",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut scores = vec![
            0.0, 0.0, -1.0, -2.0, -2.0, -2.0, -2.0, -3.0, -1.5, -1.0, -0.5, -0.2, -0.1,
        ];
        let mut types = vec![2, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            scores.push(0.0);
            types.push(6);
        }
        SpmTokenizer::new(&tokens, &scores, &types, false)
    }

    #[test]
    fn pieces_merge_by_score_and_unknown_text_falls_back_to_bytes() {
        let spm = vocab();
        // "▁hello" is a token: the merges reach it.
        assert_eq!(spm.encode(" hello"), vec![12]);
        assert_eq!(spm.encode("hello"), vec![11]);
        // "x" is no token: its byte.
        assert_eq!(spm.encode("hex"), vec![8, 13 + b'x' as u32]);
        // The user-defined "\n" is cut out before merging.
        assert_eq!(spm.encode("he\nhe"), vec![8, 1, 8]);
        // Multi-byte characters without a token become their UTF-8 bytes.
        assert_eq!(spm.encode("é"), vec![13 + 0xC3, 13 + 0xA9]);
        assert!(spm.encode("").is_empty());
    }

    #[test]
    fn token_bytes_undo_the_escapes() {
        assert_eq!(spm_token_bytes("▁hello"), b" hello");
        assert_eq!(spm_token_bytes("<0x0A>"), b"\n");
        assert_eq!(spm_token_bytes("<0x0G>"), b"<0x0G>");
    }
}
