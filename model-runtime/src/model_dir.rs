//! Hugging Face model directories: `config.json` (a llama config), the weights as `*.safetensors`
//! (one file, or shards listed by `model.safetensors.index.json`), `tokenizer.json`, and an optional
//! `tokenizer_config.json` (chat template, BOS/EOS tokens). This module finds and checks the files
//! and reports the facts `flowbot model info` prints; [`crate::safetensors_lm`] runs the weights.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_transformers::models::llama::{LlamaConfig, LlamaEosToks};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The shard index of a sharded checkpoint.
const SHARD_INDEX: &str = "model.safetensors.index.json";

/// Errors reading a model directory.
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The directory has no `config.json`.
    #[error("{dir}: no config.json: a model directory needs config.json, *.safetensors and tokenizer.json")]
    MissingConfig {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory has no `tokenizer.json`.
    #[error("{dir}: no tokenizer.json: put the model's tokenizer.json beside config.json")]
    MissingTokenizer {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory has no weights.
    #[error("{dir}: no *.safetensors weights (and no {SHARD_INDEX})")]
    MissingWeights {
        /// The directory.
        dir: PathBuf,
    },
    /// A JSON file is malformed or lacks a field.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model is not a llama.
    #[error("{path}: architecture `{architecture}` is not supported (llama models only: LlamaForCausalLM)")]
    UnsupportedArchitecture {
        /// The `config.json`.
        path: PathBuf,
        /// What the config declares.
        architecture: String,
    },
    /// The config asks for something candle's llama cannot run.
    #[error("{path}: {message}")]
    UnsupportedConfig {
        /// The `config.json`.
        path: PathBuf,
        /// What is not supported.
        message: String,
    },
    /// A tensor the config calls for is absent.
    #[error("{dir}: tensor `{tensor}` is missing from the safetensors files")]
    MissingTensor {
        /// The directory.
        dir: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor's shape disagrees with `config.json`.
    #[error("{dir}: tensor `{tensor}` has shape {found:?}, config.json implies {expected:?}")]
    ShapeMismatch {
        /// The directory.
        dir: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The shape config.json implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The tokenizer has more ids than the model has embeddings.
    #[error(
        "{dir}: tokenizer.json has {tokenizer} token ids but config.json's vocab_size is {model}"
    )]
    VocabularyMismatch {
        /// The directory.
        dir: PathBuf,
        /// Token ids of the tokenizer.
        tokenizer: usize,
        /// `vocab_size` of the config.
        model: usize,
    },
    /// candle could not build the model from checked weights.
    #[error("{dir}: cannot build the model: {message}")]
    Build {
        /// The directory.
        dir: PathBuf,
        /// candle's message.
        message: String,
    },
    /// A safetensors file is unreadable.
    #[error("{path}: not a readable safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// `tokenizer_config.json` facts the runtime uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerConfig {
    /// The Jinja chat template (the `default` one when the file lists several).
    pub chat_template: Option<String>,
    /// The BOS token's text.
    pub bos_token: Option<String>,
    /// The EOS token's text.
    pub eos_token: Option<String>,
}

/// A model directory whose files were found and whose config was read.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory.
    pub path: PathBuf,
    /// The llama config (candle's reading of `config.json`).
    pub config: LlamaConfig,
    /// The architecture named by `config.json` (`LlamaForCausalLM`).
    pub architecture: String,
    /// `torch_dtype` of `config.json`, when given.
    pub torch_dtype: Option<String>,
    /// The safetensors files, in name order.
    pub weight_files: Vec<PathBuf>,
    /// `tokenizer.json`.
    pub tokenizer_json: PathBuf,
    /// What `tokenizer_config.json` says (empty when absent).
    pub tokenizer_config: TokenizerConfig,
}

fn read_json(path: &Path) -> Result<Value, ModelDirError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelDirError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelDirError::Json {
        path: path.to_owned(),
        message: format!("not valid JSON: {e}"),
    })
}

/// A token written as a string or as an added-token object (`{"content": "<s>", ...}`).
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Object(fields) => fields.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl TokenizerConfig {
    /// Reads `tokenizer_config.json`; a chat template given as a list of `{name, template}` picks
    /// the one named `default`, else the first.
    pub fn read(path: &Path) -> Result<Self, ModelDirError> {
        let json = read_json(path)?;
        let chat_template = match json.get("chat_template") {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Array(templates)) => templates
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| templates.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        };
        Ok(Self {
            chat_template,
            bos_token: token_text(json.get("bos_token")),
            eos_token: token_text(json.get("eos_token")),
        })
    }
}

/// The architecture `config.json` declares: the first of `architectures`, else `model_type`.
fn declared_architecture(config: &Value) -> String {
    config
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .or_else(|| config.get("model_type").and_then(Value::as_str))
        .unwrap_or("unknown")
        .to_owned()
}

/// Whether `config.json` describes a llama that candle's llama can run; the reason when not.
fn check_config(
    config_path: &Path,
    json: &Value,
    config: &LlamaConfig,
) -> Result<(), ModelDirError> {
    let unsupported = |message: String| ModelDirError::UnsupportedConfig {
        path: config_path.to_owned(),
        message,
    };
    let heads = config.num_attention_heads;
    let kv_heads = config.num_key_value_heads();
    if config.hidden_size == 0 || config.num_hidden_layers == 0 || config.vocab_size == 0 {
        return Err(unsupported(
            "hidden_size, num_hidden_layers and vocab_size must be positive".into(),
        ));
    }
    if heads == 0
        || kv_heads == 0
        || !config.hidden_size.is_multiple_of(heads)
        || !heads.is_multiple_of(kv_heads)
    {
        return Err(unsupported(format!(
            "num_attention_heads {heads} must divide hidden_size {} and be a multiple of num_key_value_heads {kv_heads}",
            config.hidden_size
        )));
    }
    let head_dim = config.hidden_size / heads;
    if !head_dim.is_multiple_of(2) {
        return Err(unsupported(format!(
            "head dimension {head_dim} is odd: rotary embeddings need an even one"
        )));
    }
    if let Some(declared) = json.get("head_dim").and_then(Value::as_u64) {
        if declared as usize != head_dim {
            return Err(unsupported(format!(
                "head_dim {declared} differs from hidden_size / num_attention_heads = {head_dim}"
            )));
        }
    }
    for bias in ["attention_bias", "mlp_bias"] {
        if json.get(bias).and_then(Value::as_bool) == Some(true) {
            return Err(unsupported(format!(
                "`{bias}: true` is not supported (projections without bias only)"
            )));
        }
    }
    if config.max_position_embeddings == 0 {
        return Err(unsupported(
            "max_position_embeddings must be positive".into(),
        ));
    }
    Ok(())
}

/// The safetensors files of `dir`: those the shard index names, else every `*.safetensors`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelDirError> {
    let index = dir.join(SHARD_INDEX);
    if index.is_file() {
        let json = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| ModelDirError::Json {
                path: index.clone(),
                message: "no `weight_map` object".into(),
            })?;
        let mut files = BTreeSet::new();
        for (tensor, file) in map {
            let name = file
                .as_str()
                .filter(|f| !f.contains('/') && !f.contains('\\'))
                .ok_or_else(|| ModelDirError::Json {
                    path: index.clone(),
                    message: format!(
                        "`weight_map.{tensor}` must be a file name in the same directory"
                    ),
                })?;
            files.insert(dir.join(name));
        }
        for file in &files {
            if !file.is_file() {
                return Err(ModelDirError::Io {
                    path: file.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("listed in {SHARD_INDEX} but absent"),
                    ),
                });
            }
        }
        return Ok(files.into_iter().collect());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ModelDirError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| ModelDirError::Io {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "safetensors") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ModelDirError::MissingWeights {
            dir: dir.to_owned(),
        });
    }
    Ok(files)
}

impl ModelDir {
    /// Finds the files of the model directory `dir` and reads its configs. The weights are not
    /// read here.
    pub fn open(dir: &Path) -> Result<Self, ModelDirError> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(ModelDirError::MissingConfig {
                dir: dir.to_owned(),
            });
        }
        let json = read_json(&config_path)?;
        let architecture = declared_architecture(&json);
        let model_type = json.get("model_type").and_then(Value::as_str);
        let llama = match json.get("architectures").and_then(Value::as_array) {
            Some(names) => names.iter().any(|n| n.as_str() == Some("LlamaForCausalLM")),
            None => model_type == Some("llama"),
        };
        if !llama || model_type.is_some_and(|t| t != "llama") {
            return Err(ModelDirError::UnsupportedArchitecture {
                path: config_path,
                architecture: model_type
                    .filter(|t| *t != "llama")
                    .map(str::to_owned)
                    .unwrap_or(architecture),
            });
        }
        let config: LlamaConfig =
            serde_json::from_value(json.clone()).map_err(|e| ModelDirError::Json {
                path: config_path.clone(),
                message: format!("not a llama config: {e}"),
            })?;
        check_config(&config_path, &json, &config)?;
        let tokenizer_json = dir.join("tokenizer.json");
        if !tokenizer_json.is_file() {
            return Err(ModelDirError::MissingTokenizer {
                dir: dir.to_owned(),
            });
        }
        let tokenizer_config_path = dir.join("tokenizer_config.json");
        let tokenizer_config = if tokenizer_config_path.is_file() {
            TokenizerConfig::read(&tokenizer_config_path)?
        } else {
            TokenizerConfig::default()
        };
        Ok(Self {
            path: dir.to_owned(),
            architecture,
            torch_dtype: json
                .get("torch_dtype")
                .and_then(Value::as_str)
                .map(str::to_owned),
            weight_files: weight_files(dir)?,
            config,
            tokenizer_json,
            tokenizer_config,
        })
    }

    /// The EOS ids `config.json` declares.
    pub fn config_eos_ids(&self) -> Vec<u32> {
        match &self.config.eos_token_id {
            None => Vec::new(),
            Some(LlamaEosToks::Single(id)) => vec![*id],
            Some(LlamaEosToks::Multiple(ids)) => ids.clone(),
        }
    }

    /// The tensors candle's llama reads for this config, with the shapes the config implies.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let c = &self.config;
        let hidden = c.hidden_size;
        let kv = hidden / c.num_attention_heads * c.num_key_value_heads();
        let mut tensors = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![c.vocab_size, hidden],
        )];
        for i in 0..c.num_hidden_layers {
            let p = |name: &str| format!("model.layers.{i}.{name}.weight");
            tensors.extend([
                (p("self_attn.q_proj"), vec![hidden, hidden]),
                (p("self_attn.k_proj"), vec![kv, hidden]),
                (p("self_attn.v_proj"), vec![kv, hidden]),
                (p("self_attn.o_proj"), vec![hidden, hidden]),
                (p("mlp.gate_proj"), vec![c.intermediate_size, hidden]),
                (p("mlp.up_proj"), vec![c.intermediate_size, hidden]),
                (p("mlp.down_proj"), vec![hidden, c.intermediate_size]),
                (p("input_layernorm"), vec![hidden]),
                (p("post_attention_layernorm"), vec![hidden]),
            ]);
        }
        tensors.push(("model.norm.weight".to_string(), vec![hidden]));
        if !c.tie_word_embeddings.unwrap_or(false) {
            tensors.push(("lm_head.weight".to_string(), vec![c.vocab_size, hidden]));
        }
        tensors
    }

    /// The files that make up the model: configs, tokenizer files and weights, in a fixed order.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.join("config.json"), self.tokenizer_json.clone()];
        let tokenizer_config = self.path.join("tokenizer_config.json");
        if tokenizer_config.is_file() {
            files.push(tokenizer_config);
        }
        files.extend(self.weight_files.iter().cloned());
        files
    }

    /// A SHA-256 fingerprint of the model: the hash of the lines `<sha256>  <file name>` of every
    /// file in [`ModelDir::files`], so that changing any weight, config or tokenizer file changes it.
    pub fn sha256(&self) -> Result<String, ModelDirError> {
        let mut hasher = Sha256::new();
        for file in self.files() {
            let digest = crate::gguf::sha256_file(&file).map_err(|e| ModelDirError::Io {
                path: file.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            hasher.update(format!("{digest}  {name}\n").as_bytes());
        }
        Ok(format!("{:x}", hasher.finalize()))
    }
}

/// What `flowbot model info` reports about a model directory.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDirInfo {
    /// The directory.
    pub path: PathBuf,
    /// Total size of the model's files in bytes.
    pub size_bytes: u64,
    /// Fingerprint of the files ([`ModelDir::sha256`]).
    pub sha256: String,
    /// `architectures[0]` of `config.json`.
    pub architecture: String,
    /// `torch_dtype` of `config.json`.
    pub torch_dtype: Option<String>,
    /// Tensor count per stored dtype, e.g. `{"BF16": 272}`.
    pub dtypes: BTreeMap<String, usize>,
    /// Number of parameters (elements of all tensors).
    pub parameters: u64,
    /// Number of safetensors files.
    pub weight_files: usize,
    /// `max_position_embeddings`.
    pub context_length: usize,
    /// `num_hidden_layers`.
    pub block_count: usize,
    /// `hidden_size`.
    pub embedding_length: usize,
    /// Whether the output projection is the embedding.
    pub tie_word_embeddings: bool,
    /// Tokenizer facts.
    pub tokenizer: DirTokenizerFacts,
    /// Whether `tokenizer_config.json` carries a chat template.
    pub has_chat_template: bool,
}

/// Tokenizer facts of `tokenizer.json` and `tokenizer_config.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DirTokenizerFacts {
    /// `model.type` of `tokenizer.json` (e.g. `BPE`).
    pub model: Option<String>,
    /// Vocabulary size, added tokens included.
    pub vocab_size: usize,
    /// Number of merges.
    pub merges: usize,
    /// Number of added tokens.
    pub added_tokens: usize,
    /// BOS token text.
    pub bos_token: Option<String>,
    /// EOS token text.
    pub eos_token: Option<String>,
}

/// The safetensors header of `path`: tensor name -> (dtype, shape). Reads only the header.
fn safetensors_header(path: &Path) -> Result<serde_json::Map<String, Value>, ModelDirError> {
    use std::io::Read;
    let bad = |message: String| ModelDirError::Safetensors {
        path: path.to_owned(),
        message,
    };
    let io = |source| ModelDirError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| bad(format!("no header ({e})")))?;
    let len = u64::from_le_bytes(len);
    let file_len = file.metadata().map_err(io)?.len();
    if len > file_len.saturating_sub(8) || len > 100 << 20 {
        return Err(bad(format!("header length {len} does not fit the file")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("truncated header ({e})")))?;
    match serde_json::from_slice(&header) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad("the header is not a JSON object".into())),
        Err(e) => Err(bad(format!("the header is not JSON: {e}"))),
    }
}

impl ModelDirInfo {
    /// Reads the facts of the model directory at `dir` (hashes every file, reads only the
    /// safetensors headers).
    pub fn read(dir: &Path) -> Result<Self, ModelDirError> {
        let model = ModelDir::open(dir)?;
        let mut size_bytes = 0;
        for file in model.files() {
            size_bytes += std::fs::metadata(&file)
                .map_err(|source| ModelDirError::Io {
                    path: file.clone(),
                    source,
                })?
                .len();
        }
        let mut dtypes = BTreeMap::new();
        let mut parameters = 0u64;
        for file in &model.weight_files {
            for (name, entry) in safetensors_header(file)? {
                if name == "__metadata__" {
                    continue;
                }
                let dtype = entry.get("dtype").and_then(Value::as_str).unwrap_or("?");
                *dtypes.entry(dtype.to_owned()).or_insert(0) += 1;
                let elements: u64 = entry
                    .get("shape")
                    .and_then(Value::as_array)
                    .map(|dims| dims.iter().filter_map(Value::as_u64).product())
                    .unwrap_or(0);
                parameters += elements;
            }
        }
        let tokenizer_json = read_json(&model.tokenizer_json)?;
        let bpe = tokenizer_json.get("model");
        let count = |v: Option<&Value>| match v {
            Some(Value::Array(items)) => items.len(),
            Some(Value::Object(items)) => items.len(),
            _ => 0,
        };
        let added = tokenizer_json.get("added_tokens").and_then(Value::as_array);
        let added_tokens = added.map_or(0, Vec::len);
        // Ids run from 0 to the largest id of the vocabulary and the added tokens.
        let vocab_ids = bpe
            .and_then(|m| m.get("vocab"))
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|v| v.values());
        let added_ids = added.into_iter().flatten().filter_map(|t| t.get("id"));
        let vocab_size = vocab_ids
            .chain(added_ids)
            .filter_map(Value::as_u64)
            .max()
            .map_or(0, |id| id as usize + 1);
        let c = &model.config;
        Ok(Self {
            path: dir.to_owned(),
            size_bytes,
            sha256: model.sha256()?,
            architecture: model.architecture.clone(),
            torch_dtype: model.torch_dtype.clone(),
            dtypes,
            parameters,
            weight_files: model.weight_files.len(),
            context_length: c.max_position_embeddings,
            block_count: c.num_hidden_layers,
            embedding_length: c.hidden_size,
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
            tokenizer: DirTokenizerFacts {
                model: bpe
                    .and_then(|m| m.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                vocab_size,
                merges: count(bpe.and_then(|m| m.get("merges"))),
                added_tokens,
                bos_token: model.tokenizer_config.bos_token.clone(),
                eos_token: model.tokenizer_config.eos_token.clone(),
            },
            has_chat_template: model.tokenizer_config.chat_template.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_config_reads_template_lists_and_token_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        let config = serde_json::json!({
            "chat_template": [
                {"name": "tool_use", "template": "tools"},
                {"name": "default", "template": "{{ messages }}"}
            ],
            "bos_token": {"content": "<s>", "special": true},
            "eos_token": "</s>"
        });
        std::fs::write(&path, config.to_string()).unwrap();
        let read = TokenizerConfig::read(&path).unwrap();
        assert_eq!(read.chat_template.as_deref(), Some("{{ messages }}"));
        assert_eq!(read.bos_token.as_deref(), Some("<s>"));
        assert_eq!(read.eos_token.as_deref(), Some("</s>"));

        std::fs::write(
            &path,
            r#"{"chat_template": [{"name": "only", "template": "t"}]}"#,
        )
        .unwrap();
        let read = TokenizerConfig::read(&path).unwrap();
        assert_eq!(read.chat_template.as_deref(), Some("t"));
        assert_eq!(read.bos_token, None);
    }

    #[test]
    fn a_truncated_safetensors_header_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, 1_000_000u64.to_le_bytes()).unwrap();
        let err = safetensors_header(&path).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("does not fit"),
            "{err}"
        );
    }
}
