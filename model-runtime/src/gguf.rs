//! Reading GGUF model files: header and metadata through a buffered reader, and the facts
//! `flowbot model info` reports.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Errors while reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file cannot be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a readable GGUF file.
    #[error("{path}: not a readable GGUF file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A metadata key the runtime needs is absent or has the wrong type.
    #[error("{path}: metadata key `{key}` {problem}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// An opened GGUF file: parsed header and metadata plus a buffered reader positioned anywhere
/// (tensor reads seek themselves).
pub struct GgufFile {
    /// The file's path.
    pub path: PathBuf,
    /// Header, metadata and tensor directory.
    pub content: Content,
    /// Buffered reader over the file (reading metadata unbuffered costs ~350k syscalls).
    pub reader: BufReader<File>,
}

impl GgufFile {
    /// Opens `path` and reads the GGUF header and metadata.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let file = File::open(path).map_err(|source| GgufError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let content = Content::read(&mut reader).map_err(|e| GgufError::Format {
            path: path.to_owned(),
            message: crate::lm::candle_message(&e),
        })?;
        Ok(Self {
            path: path.to_owned(),
            content,
            reader,
        })
    }

    /// Metadata accessor that names the file and key on failure.
    pub fn metadata(&self) -> Metadata<'_> {
        Metadata {
            path: &self.path,
            map: &self.content.metadata,
        }
    }
}

/// Typed access to GGUF metadata with errors that name the file and the key.
pub struct Metadata<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl<'a> Metadata<'a> {
    fn error(&self, key: &str, problem: &str) -> GgufError {
        GgufError::Metadata {
            path: self.path.to_owned(),
            key: key.to_owned(),
            problem: problem.to_owned(),
        }
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Result<&'a str, GgufError> {
        match self.map.get(key) {
            None => Err(self.error(key, "is missing")),
            Some(v) => v
                .to_string()
                .map(|s| s.as_str())
                .map_err(|_| self.error(key, "is not a string")),
        }
    }

    /// An optional string value.
    pub fn opt_string(&self, key: &str) -> Option<&'a str> {
        self.map
            .get(key)
            .and_then(|v| v.to_string().ok())
            .map(|s| s.as_str())
    }

    /// An unsigned integer value of any width.
    pub fn opt_u64(&self, key: &str) -> Option<u64> {
        match self.map.get(key)? {
            Value::U8(v) => Some(u64::from(*v)),
            Value::U16(v) => Some(u64::from(*v)),
            Value::U32(v) => Some(u64::from(*v)),
            Value::U64(v) => Some(*v),
            Value::I8(v) => u64::try_from(*v).ok(),
            Value::I16(v) => u64::try_from(*v).ok(),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// An array of strings.
    pub fn string_array(&self, key: &str) -> Result<Vec<&'a str>, GgufError> {
        let values = match self.map.get(key) {
            None => return Err(self.error(key, "is missing")),
            Some(v) => v.to_vec().map_err(|_| self.error(key, "is not an array"))?,
        };
        values
            .iter()
            .map(|v| {
                v.to_string()
                    .map(|s| s.as_str())
                    .map_err(|_| self.error(key, "holds a non-string element"))
            })
            .collect()
    }

    /// An optional array of integers (token types).
    pub fn opt_int_array(&self, key: &str) -> Option<Vec<i64>> {
        let values = self.map.get(key)?.to_vec().ok()?;
        values
            .iter()
            .map(|v| match v {
                Value::I32(x) => Some(i64::from(*x)),
                Value::U32(x) => Some(i64::from(*x)),
                Value::I64(x) => Some(*x),
                Value::U8(x) => Some(i64::from(*x)),
                Value::I8(x) => Some(i64::from(*x)),
                _ => None,
            })
            .collect()
    }
}

/// What `flowbot model info` reports about a model file.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The file's path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, when present.
    pub name: Option<String>,
    /// Tensor count per quantization type, e.g. `{"Q4_1": 210, "Q8_0": 1, "F32": 61}`.
    pub quantization: std::collections::BTreeMap<String, usize>,
    /// Context length declared by the file.
    pub context_length: Option<u64>,
    /// Number of transformer blocks.
    pub block_count: Option<u64>,
    /// Embedding width.
    pub embedding_length: Option<u64>,
    /// Tokenizer facts.
    pub tokenizer: TokenizerFacts,
    /// Whether the file carries a chat template.
    pub has_chat_template: bool,
}

/// Tokenizer facts from the metadata.
#[derive(Debug, Clone, Serialize)]
pub struct TokenizerFacts {
    /// `tokenizer.ggml.model` (e.g. `gpt2`).
    pub model: Option<String>,
    /// `tokenizer.ggml.pre` (e.g. `smollm`).
    pub pre: Option<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Number of merges.
    pub merges: usize,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u64>,
    /// End-of-sequence token id.
    pub eos_token_id: Option<u64>,
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, GgufError> {
    let io = |source| GgufError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|source| GgufError::Io {
            path: path.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

impl ModelInfo {
    /// Reads the facts of the GGUF file at `path` (hashes the whole file).
    pub fn read(path: &Path) -> Result<Self, GgufError> {
        let file = GgufFile::open(path)?;
        let md = file.metadata();
        let size_bytes = std::fs::metadata(path)
            .map_err(|source| GgufError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        let architecture = md.string("general.architecture")?.to_owned();
        let mut quantization = std::collections::BTreeMap::new();
        for info in file.content.tensor_infos.values() {
            *quantization
                .entry(format!("{:?}", info.ggml_dtype))
                .or_insert(0) += 1;
        }
        let arch_key = |k: &str| md.opt_u64(&format!("{architecture}.{k}"));
        let tokenizer = TokenizerFacts {
            model: md.opt_string("tokenizer.ggml.model").map(str::to_owned),
            pre: md.opt_string("tokenizer.ggml.pre").map(str::to_owned),
            vocab_size: md
                .string_array("tokenizer.ggml.tokens")
                .map(|t| t.len())
                .unwrap_or(0),
            merges: md
                .string_array("tokenizer.ggml.merges")
                .map(|t| t.len())
                .unwrap_or(0),
            bos_token_id: md.opt_u64("tokenizer.ggml.bos_token_id"),
            eos_token_id: md.opt_u64("tokenizer.ggml.eos_token_id"),
        };
        Ok(Self {
            path: path.to_owned(),
            size_bytes,
            sha256: sha256_file(path)?,
            name: md.opt_string("general.name").map(str::to_owned),
            quantization,
            context_length: arch_key("context_length"),
            block_count: arch_key("block_count"),
            embedding_length: arch_key("embedding_length"),
            has_chat_template: md.opt_string("tokenizer.chat_template").is_some(),
            architecture,
            tokenizer,
        })
    }
}
