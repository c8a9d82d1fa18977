//! Reading GGUF model files: header and metadata through a buffered reader, and the facts
//! `flowbot model info` reports.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
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
        let content = read_content(&mut reader).map_err(|message| GgufError::Format {
            path: path.to_owned(),
            message,
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

/// The most tensors a GGUF header may declare (llama-family models have a few hundred).
pub const MAX_TENSORS: u64 = 65_536;
/// The most metadata entries a GGUF header may declare.
pub const MAX_METADATA_ENTRIES: u64 = 65_536;
/// The most elements of one metadata array (vocabularies and merge lists have under 1M).
pub const MAX_ARRAY_ELEMENTS: u64 = 2_000_000;
/// The longest metadata string or name, in bytes (chat templates are a few KiB).
pub const MAX_STRING_BYTES: u64 = 1 << 20;
/// The largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 1 << 16;

/// Reads the header, metadata and tensor directory of a GGUF file from `reader` (at its start),
/// checked first against [`MAX_TENSORS`], [`MAX_METADATA_ENTRIES`], [`MAX_ARRAY_ELEMENTS`],
/// [`MAX_STRING_BYTES`] and [`MAX_ALIGNMENT`], every length against the bytes the file really
/// has, and afterwards every tensor's extent against the file's size, so neither reading the
/// header nor loading a tensor allocates what the file does not hold. The error says which limit
/// or which entry and where.
pub fn read_content<R: Read + Seek>(reader: &mut R) -> Result<Content, String> {
    let io = |e: std::io::Error| format!("cannot read the header: {e}");
    let start = reader.stream_position().map_err(io)?;
    let file_size = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    HeaderWalk {
        reader: &mut *reader,
        file_size,
        wide: true,
    }
    .check()?;
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    let content = Content::read(reader).map_err(|e| crate::lm::candle_message(&e))?;
    for (name, info) in &content.tensor_infos {
        let dtype = info.ggml_dtype;
        let elements = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| format!("tensor `{name}`: shape {:?} overflows", info.shape.dims()))?;
        if elements % dtype.block_size() != 0 {
            return Err(format!(
                "tensor `{name}`: {elements} elements are not whole {dtype:?} blocks of {}",
                dtype.block_size()
            ));
        }
        let bytes = ((elements / dtype.block_size()) as u64)
            .checked_mul(dtype.type_size() as u64)
            .ok_or_else(|| format!("tensor `{name}`: shape {:?} overflows", info.shape.dims()))?;
        let end = content
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|at| at.checked_add(bytes));
        if end.is_none_or(|end| end > file_size) {
            return Err(format!(
                "tensor `{name}`: {bytes} bytes at data offset {} run past the end of the {file_size}-byte file",
                info.offset
            ));
        }
    }
    Ok(content)
}

/// A bounds-checking pass over a GGUF header that reads nothing into memory but lengths.
struct HeaderWalk<'r, R> {
    reader: &'r mut R,
    file_size: u64,
    /// Version 2 and 3 write lengths as u64, version 1 as u32.
    wide: bool,
}

impl<R: Read + Seek> HeaderWalk<'_, R> {
    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut buf = [0u8; N];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn length(&mut self, what: &str) -> Result<u64, String> {
        if self.wide {
            self.bytes::<8>(what).map(u64::from_le_bytes)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    fn remaining(&mut self) -> Result<u64, String> {
        let at = self.reader.stream_position().map_err(|e| e.to_string())?;
        Ok(self.file_size.saturating_sub(at))
    }

    fn skip(&mut self, bytes: u64, what: &str) -> Result<(), String> {
        let remaining = self.remaining()?;
        if bytes > remaining {
            return Err(format!(
                "{what} needs {bytes} bytes, the file has {remaining} left"
            ));
        }
        self.reader
            .seek(SeekFrom::Current(bytes as i64))
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(())
    }

    /// Skips a string; returns its bytes when `keep` (keys, which are short).
    fn string(&mut self, what: &str, keep: bool) -> Result<Vec<u8>, String> {
        let len = self.length(what)?;
        if len > MAX_STRING_BYTES {
            return Err(format!(
                "{what} is {len} bytes long, more than the {MAX_STRING_BYTES} allowed"
            ));
        }
        if !keep {
            self.skip(len, what)?;
            return Ok(Vec::new());
        }
        if len > self.remaining()? {
            return Err(format!("{what} needs {len} bytes, the file has fewer left"));
        }
        let mut text = vec![0u8; len as usize];
        self.reader
            .read_exact(&mut text)
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(text)
    }

    fn check(&mut self) -> Result<(), String> {
        let magic = self.u32("magic")?;
        if magic != 0x4655_4747 && magic != 0x4747_5546 {
            return Err(format!("not a GGUF file (magic 0x{magic:08x})"));
        }
        let version = self.u32("version")?;
        if !(1..=3).contains(&version) {
            return Err(format!("GGUF version {version} is not supported (1 to 3)"));
        }
        self.wide = version > 1;
        let tensors = self.length("tensor count")?;
        let entries = self.length("metadata entry count")?;
        if tensors > MAX_TENSORS {
            return Err(format!(
                "the header declares {tensors} tensors, more than the {MAX_TENSORS} allowed"
            ));
        }
        if entries > MAX_METADATA_ENTRIES {
            return Err(format!(
                "the header declares {entries} metadata entries, more than the {MAX_METADATA_ENTRIES} allowed"
            ));
        }
        for index in 0..entries {
            let key = self.string(&format!("metadata key {index}"), true)?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let value_type = self.u32(&format!("type of `{key}`"))?;
            if key == "general.alignment" {
                self.alignment(value_type)?;
            } else {
                self.value(value_type, &key, 0)?;
            }
        }
        for index in 0..tensors {
            let name = self.string(&format!("name of tensor {index}"), true)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            let dims = self.u32(&format!("dimension count of `{name}`"))?;
            if dims > 4 {
                return Err(format!(
                    "tensor `{name}` has {dims} dimensions, at most 4 are allowed"
                ));
            }
            let dim_bytes = if self.wide { 8 } else { 4 };
            // The dimensions, the type (u32) and the data offset (u64).
            self.skip(
                u64::from(dims) * dim_bytes + 4 + 8,
                &format!("tensor `{name}`"),
            )?;
        }
        Ok(())
    }

    /// Checks `general.alignment`: types candle reads it from must hold a value from 1 to
    /// [`MAX_ALIGNMENT`] (candle divides by it).
    fn alignment(&mut self, value_type: u32) -> Result<(), String> {
        let key = "general.alignment";
        // Negative values are ignored by candle (it uses the default).
        let value: i64 = match value_type {
            0 => i64::from(self.bytes::<1>(key)?[0]),
            1 => i64::from(i8::from_le_bytes(self.bytes::<1>(key)?)),
            2 => i64::from(u16::from_le_bytes(self.bytes::<2>(key)?)),
            3 => i64::from(i16::from_le_bytes(self.bytes::<2>(key)?)),
            4 => i64::from(self.u32(key)?),
            5 => i64::from(i32::from_le_bytes(self.bytes::<4>(key)?)),
            other => return self.value(other, key, 0),
        };
        if value == 0 || value > MAX_ALIGNMENT as i64 {
            return Err(format!(
                "general.alignment is {value}; it must be from 1 to {MAX_ALIGNMENT}"
            ));
        }
        Ok(())
    }

    /// Skips a value of GGUF type `value_type` (arrays of arrays at most two deep).
    fn value(&mut self, value_type: u32, key: &str, depth: usize) -> Result<(), String> {
        let fixed = match value_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => return self.string(&format!("`{key}`"), false).map(drop),
            9 => {
                if depth >= 2 {
                    return Err(format!("`{key}` nests arrays more than 2 deep"));
                }
                let element_type = self.u32(&format!("element type of `{key}`"))?;
                let len = self.length(&format!("length of `{key}`"))?;
                if len > MAX_ARRAY_ELEMENTS {
                    return Err(format!(
                        "`{key}` has {len} elements, more than the {MAX_ARRAY_ELEMENTS} allowed"
                    ));
                }
                let minimum = match element_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 if self.wide => 8,
                    8 => 4,
                    10..=12 => 8,
                    9 => 12,
                    other => return Err(format!("`{key}` has elements of unknown type {other}")),
                };
                if len.saturating_mul(minimum) > self.remaining()? {
                    return Err(format!(
                        "`{key}` declares {len} elements, more than the file holds"
                    ));
                }
                if matches!(element_type, 8 | 9) {
                    for _ in 0..len {
                        self.value(element_type, key, depth + 1)?;
                    }
                    return Ok(());
                }
                return self.skip(len * minimum, &format!("`{key}`"));
            }
            other => return Err(format!("`{key}` has unknown value type {other}")),
        };
        self.skip(fixed, &format!("`{key}`"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A GGUF v3 header with `entries` (key, type, value bytes) and `tensors` (name, dims, type,
    /// offset), followed by `data` bytes.
    fn gguf(
        entries: &[(&str, u32, Vec<u8>)],
        tensors: &[(&str, &[u64], u32, u64)],
        data: usize,
    ) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((entries.len() as u64).to_le_bytes());
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        };
        for (key, value_type, value) in entries {
            string(&mut out, key);
            out.extend(value_type.to_le_bytes());
            out.extend(value);
        }
        for (name, dims, dtype, offset) in tensors {
            string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(dtype.to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        out.resize(out.len().div_ceil(32) * 32 + data, 0);
        out
    }

    fn read(bytes: Vec<u8>) -> Result<Content, String> {
        read_content(&mut Cursor::new(bytes))
    }

    #[test]
    fn a_well_formed_header_reads() {
        let content = read(gguf(
            &[("general.alignment", 4, 32u32.to_le_bytes().to_vec())],
            &[("t", &[8], 0, 0)],
            32,
        ))
        .expect("valid");
        assert_eq!(content.tensor_infos["t"].shape.dims(), [8]);
    }

    #[test]
    fn a_zero_alignment_is_an_error_not_a_division_by_zero() {
        let err = read(gguf(
            &[("general.alignment", 4, 0u32.to_le_bytes().to_vec())],
            &[],
            0,
        ))
        .unwrap_err();
        assert!(err.contains("general.alignment is 0"), "{err}");
    }

    #[test]
    fn tensors_must_lie_inside_the_file() {
        let err = read(gguf(&[], &[("t", &[1024], 0, 0)], 64)).unwrap_err();
        assert!(
            err.contains("tensor `t`") && err.contains("past the end"),
            "{err}"
        );
        let err = read(gguf(&[], &[("t", &[u64::MAX / 2, 4], 0, 0)], 64)).unwrap_err();
        assert!(err.contains("tensor `t`"), "{err}");
        // Found by the gguf fuzz target: elements that fit, bytes (elements x 4) that do not.
        let err = read(gguf(&[], &[("t", &[u64::MAX / 3], 0, 0)], 64)).unwrap_err();
        assert!(err.contains("overflows"), "{err}");
    }

    #[test]
    fn declared_counts_and_lengths_are_checked_before_allocating() {
        let mut huge_array = 0u32.to_le_bytes().to_vec();
        huge_array.extend((1u64 << 40).to_le_bytes());
        let err = read(gguf(&[("a", 9, huge_array)], &[], 0)).unwrap_err();
        assert!(err.contains("`a` has 1099511627776 elements"), "{err}");
        let mut long_string = (1u64 << 40).to_le_bytes().to_vec();
        long_string.extend(b"x");
        let err = read(gguf(&[("s", 8, long_string)], &[], 0)).unwrap_err();
        assert!(err.contains("`s` is 1099511627776 bytes"), "{err}");
        let mut header = gguf(&[], &[], 0);
        header[8..16].copy_from_slice(&(MAX_TENSORS + 1).to_le_bytes());
        assert!(read(header).unwrap_err().contains("tensors, more than"));
    }
}
