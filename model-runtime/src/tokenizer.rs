//! The model's tokenizer, built from GGUF metadata (byte-level BPE with the `tokenizers` crate,
//! or SentencePiece with [`crate::spm`], both matching llama.cpp id for id) or loaded from a
//! `tokenizer.json` beside the model.
//!
//! Text is always encoded with special-token matching off: `<|im_end|>` typed by a customer stays
//! plain text. Control tokens enter a prompt only as ids placed by the chat template.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::gguf::{GgufError, GgufFile};
use crate::model_dir::ModelDir;
use crate::spm::{spm_token_bytes, SpmTokenizer};

/// GGUF token type of control tokens.
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF token type of user-defined tokens (treated as special, too).
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The longest text encoded at once, in bytes (a prompt that fits the context is far shorter).
pub const MAX_ENCODE_BYTES: usize = 1 << 20;
/// The largest vocabulary built from GGUF metadata.
pub const MAX_VOCAB: usize = 1 << 20;
/// The longest token text in a GGUF vocabulary, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Errors building or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Metadata is missing or malformed.
    #[error(transparent)]
    Metadata(#[from] GgufError),
    /// The GGUF tokenizer kind is not supported.
    #[error("{path}: tokenizer model `{model}` is not supported (byte-level BPE `gpt2` and SentencePiece `llama` are); put a tokenizer.json beside the model")]
    Unsupported {
        /// The model file.
        path: String,
        /// `tokenizer.ggml.model`.
        model: String,
    },
    /// The `tokenizers` crate rejected the vocabulary or the input.
    #[error("tokenizer: {0}")]
    Build(String),
    /// The text to encode is longer than [`MAX_ENCODE_BYTES`].
    #[error(
        "tokenizer: the text is {bytes} bytes, more than the {MAX_ENCODE_BYTES} encoded at once"
    )]
    TooLong {
        /// The text's length.
        bytes: usize,
    },
}

/// How text becomes ids.
enum Encoder {
    /// The `tokenizers` crate (byte-level BPE, or any `tokenizer.json`).
    Hf(Box<Tokenizer>),
    /// llama.cpp's SentencePiece algorithm, with the token texts.
    Spm(SpmTokenizer, Vec<String>),
}

/// A tokenizer with precomputed token byte strings (for streaming and constrained decoding).
pub struct TextTokenizer {
    inner: Encoder,
    token_bytes: Vec<Vec<u8>>,
    special: Vec<bool>,
    eos_ids: Vec<u32>,
    bos_id: Option<u32>,
    by_text: HashMap<String, u32>,
}

/// The GPT-2 byte-level alphabet: byte -> printable char.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\0');
            n += 1;
            c
        };
    }
    table
}

/// Bytes a token string stands for: byte-level alphabet first, then SentencePiece conventions.
fn token_string_bytes(token: &str, char_to_byte: &HashMap<char, u8>) -> Vec<u8> {
    if let Some(bytes) = token
        .chars()
        .map(|c| char_to_byte.get(&c).copied())
        .collect::<Option<Vec<u8>>>()
    {
        return bytes;
    }
    if token.len() == 6 && token.starts_with("<0x") && token.ends_with('>') {
        if let Ok(b) = u8::from_str_radix(&token[3..5], 16) {
            return vec![b];
        }
    }
    token.replace('\u{2581}', " ").into_bytes()
}

impl TextTokenizer {
    /// Uses `tokenizer.json` beside the model when present, else builds from the GGUF metadata.
    pub fn for_model(file: &GgufFile) -> Result<Self, TokenizerError> {
        let beside = file.path.with_file_name("tokenizer.json");
        if beside.is_file() {
            let tokenizer = Self::from_tokenizer_json(&beside)?;
            tracing::info!(path = %beside.display(), "tokenizer loaded from tokenizer.json");
            return Ok(tokenizer);
        }
        Self::from_gguf(file)
    }

    /// Loads the `tokenizer.json` of a model directory, with the BOS and EOS tokens that
    /// `tokenizer_config.json` names (else the ids `config.json` declares).
    pub fn for_model_dir(dir: &ModelDir) -> Result<Self, TokenizerError> {
        let inner = Tokenizer::from_file(&dir.tokenizer_json)
            .map_err(|e| TokenizerError::Build(format!("{}: {e}", dir.tokenizer_json.display())))?;
        let id_of = |text: &Option<String>| text.as_deref().and_then(|t| inner.token_to_id(t));
        let bos = id_of(&dir.tokenizer_config.bos_token).or(dir.config.bos_token_id);
        let mut eos: Vec<u32> = id_of(&dir.tokenizer_config.eos_token).into_iter().collect();
        for id in dir.config_eos_ids() {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        Self::load_tokenizer_json(&dir.tokenizer_json, inner, bos, eos)
    }

    /// Loads a `tokenizer.json`.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, TokenizerError> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Build(format!("{}: {e}", path.display())))?;
        Self::load_tokenizer_json(path, inner, None, Vec::new())
    }

    fn load_tokenizer_json(
        path: &Path,
        inner: Tokenizer,
        bos_id: Option<u32>,
        eos_ids: Vec<u32>,
    ) -> Result<Self, TokenizerError> {
        // Ids run up to the largest one (added tokens may also be in the model's vocabulary).
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1);
        let mut special = vec![false; vocab_size];
        for (id, added) in inner.get_added_tokens_decoder() {
            if added.special {
                if let Some(s) = special.get_mut(id as usize) {
                    *s = true;
                }
            }
        }
        let tokens: Vec<String> = (0..vocab_size as u32)
            .map(|id| inner.id_to_token(id).unwrap_or_default())
            .collect();
        tracing::debug!(path = %path.display(), vocab_size, "tokenizer.json read");
        Self::assemble(inner, tokens, special, bos_id, eos_ids)
    }

    /// Builds the tokenizer from `tokenizer.ggml.*` metadata (byte-level BPE with the `smollm`
    /// pre-tokenizer: individual digits, then GPT-2 byte-level splitting without a prefix space).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let md = file.metadata();
        let model = md.string("tokenizer.ggml.model")?;
        if model == "llama" {
            return Self::from_gguf_spm(file);
        }
        if model != "gpt2" {
            return Err(TokenizerError::Unsupported {
                path: file.path.display().to_string(),
                model: model.to_owned(),
            });
        }
        let tokens: Vec<String> = md
            .string_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        if tokens.len() > MAX_VOCAB {
            return Err(TokenizerError::Build(format!(
                "tokenizer.ggml.tokens has {} tokens, more than the {MAX_VOCAB} allowed",
                tokens.len()
            )));
        }
        if let Some((id, long)) = tokens
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() > MAX_TOKEN_BYTES)
        {
            return Err(TokenizerError::Build(format!(
                "token {id} of tokenizer.ggml.tokens is {} bytes, more than the {MAX_TOKEN_BYTES} allowed",
                long.len()
            )));
        }
        let merges: Vec<(String, String)> = md
            .string_array("tokenizer.ggml.merges")?
            .into_iter()
            .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect();
        let types = md
            .opt_int_array("tokenizer.ggml.token_type")
            .unwrap_or_default();
        let special: Vec<bool> = (0..tokens.len())
            .map(|i| {
                matches!(
                    types.get(i),
                    Some(&TOKEN_TYPE_CONTROL) | Some(&TOKEN_TYPE_USER_DEFINED)
                )
            })
            .collect();
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        let pre: Vec<PreTokenizerWrapper> = vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ];
        inner.with_pre_tokenizer(Some(Sequence::new(pre)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&special)
            .filter(|(_, s)| **s)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(&added);
        let bos = md.opt_u64("tokenizer.ggml.bos_token_id").map(|v| v as u32);
        let eos = md.opt_u64("tokenizer.ggml.eos_token_id").map(|v| v as u32);
        Self::assemble(inner, tokens, special, bos, eos.into_iter().collect())
    }

    /// Builds a SentencePiece tokenizer from `tokenizer.ggml.*` metadata (tokens, scores, token
    /// types). Only control tokens are special: user-defined ones (Gemma's runs of newlines and
    /// spaces) are text.
    fn from_gguf_spm(file: &GgufFile) -> Result<Self, TokenizerError> {
        let md = file.metadata();
        let tokens: Vec<String> = md
            .string_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let scores: Vec<f32> = match md.get("tokenizer.ggml.scores").map(|v| v.to_vec()) {
            Some(Ok(values)) => values.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect(),
            _ => vec![0.0; tokens.len()],
        };
        let types = md
            .opt_int_array("tokenizer.ggml.token_type")
            .unwrap_or_default();
        let special: Vec<bool> = (0..tokens.len())
            .map(|i| types.get(i) == Some(&TOKEN_TYPE_CONTROL))
            .collect();
        let add_space_prefix = match md.get("tokenizer.ggml.add_space_prefix") {
            Some(candle_core::quantized::gguf_file::Value::Bool(b)) => *b,
            _ => true,
        };
        let spm = SpmTokenizer::new(&tokens, &scores, &types, add_space_prefix);
        let token_bytes = tokens
            .iter()
            .zip(&special)
            .map(|(t, s)| if *s { Vec::new() } else { spm_token_bytes(t) })
            .collect();
        let bos = md.opt_u64("tokenizer.ggml.bos_token_id").map(|v| v as u32);
        let eos = md.opt_u64("tokenizer.ggml.eos_token_id").map(|v| v as u32);
        Ok(Self::finish(
            Encoder::Spm(spm, tokens.clone()),
            tokens,
            token_bytes,
            special,
            bos,
            eos.into_iter().collect(),
        ))
    }

    fn assemble(
        mut inner: Tokenizer,
        tokens: Vec<String>,
        special: Vec<bool>,
        bos_id: Option<u32>,
        eos_ids: Vec<u32>,
    ) -> Result<Self, TokenizerError> {
        // Special-token matching off: text never turns into control tokens.
        inner.set_encode_special_tokens(true);
        let table = byte_to_char_table();
        let char_to_byte: HashMap<char, u8> = table
            .iter()
            .enumerate()
            .map(|(b, c)| (*c, b as u8))
            .collect();
        let token_bytes = tokens
            .iter()
            .zip(&special)
            .map(|(t, s)| {
                if *s {
                    Vec::new()
                } else {
                    token_string_bytes(t, &char_to_byte)
                }
            })
            .collect();
        Ok(Self::finish(
            Encoder::Hf(Box::new(inner)),
            tokens,
            token_bytes,
            special,
            bos_id,
            eos_ids,
        ))
    }

    fn finish(
        inner: Encoder,
        tokens: Vec<String>,
        token_bytes: Vec<Vec<u8>>,
        special: Vec<bool>,
        bos_id: Option<u32>,
        mut eos_ids: Vec<u32>,
    ) -> Self {
        let by_text: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        for name in [
            "<|im_end|>",
            "<|endoftext|>",
            "</s>",
            "<|eot_id|>",
            "<end_of_turn>",
        ] {
            if let Some(&id) = by_text.get(name) {
                if special.get(id as usize) == Some(&true) && !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        Self {
            inner,
            token_bytes,
            special,
            eos_ids,
            bos_id,
            by_text,
        }
    }

    /// Writes the tokenizer as a `tokenizer.json` (e.g. to turn a GGUF file into a model
    /// directory).
    pub fn save_tokenizer_json(&self, path: &Path) -> Result<(), TokenizerError> {
        match &self.inner {
            Encoder::Hf(inner) => inner
                .save(path, true)
                .map_err(|e| TokenizerError::Build(format!("{}: {e}", path.display()))),
            Encoder::Spm(..) => Err(TokenizerError::Build(format!(
                "{}: a SentencePiece vocabulary from GGUF metadata cannot be written as tokenizer.json",
                path.display()
            ))),
        }
    }

    /// The text of a token id, as the vocabulary writes it.
    pub fn token_text(&self, id: u32) -> Option<String> {
        match &self.inner {
            Encoder::Hf(inner) => inner.id_to_token(id),
            Encoder::Spm(_, tokens) => tokens.get(id as usize).cloned(),
        }
    }

    /// Encodes text with special-token matching off and no BOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        if text.len() > MAX_ENCODE_BYTES {
            return Err(TokenizerError::TooLong { bytes: text.len() });
        }
        match &self.inner {
            Encoder::Hf(inner) => {
                let encoding = inner
                    .encode_fast(text, false)
                    .map_err(|e| TokenizerError::Build(e.to_string()))?;
                Ok(encoding.get_ids().to_vec())
            }
            Encoder::Spm(spm, _) => Ok(spm.encode(text)),
        }
    }

    /// Decodes ids to text, leaving out control tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }

    /// The bytes the ids stand for (control tokens contribute nothing).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter()
            .flat_map(|&id| self.token_bytes(id).iter().copied())
            .collect()
    }

    /// The bytes of one token (empty for control tokens and unknown ids).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether `id` is a control token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Ids that end generation (the declared EOS plus end-of-turn tokens).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The declared beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The id of a special token given by its text (e.g. `<|im_start|>`).
    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.by_text
            .get(text)
            .copied()
            .filter(|&id| self.is_special(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_model::write_tiny_llama;

    #[test]
    fn text_longer_than_the_limit_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tiny.gguf");
        write_tiny_llama(&path, 7).expect("tiny model");
        let tokenizer =
            TextTokenizer::from_gguf(&GgufFile::open(&path).expect("open")).expect("tokenizer");
        assert!(!tokenizer
            .encode("hello world")
            .expect("short text")
            .is_empty());
        let err = tokenizer
            .encode(&"a".repeat(MAX_ENCODE_BYTES + 1))
            .unwrap_err();
        assert!(
            matches!(err, TokenizerError::TooLong { bytes } if bytes == MAX_ENCODE_BYTES + 1),
            "{err}"
        );
    }
}
