//! Hugging Face model directories (config.json, *.safetensors, tokenizer.json) on candle's llama,
//! checked against the GGUF path with the same tiny random weights written both ways.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use flowbot_model_runtime::candle_lm::{CandleLm, DeviceChoice};
use flowbot_model_runtime::constrain::ObjectSchema;
use flowbot_model_runtime::gguf::GgufFile;
use flowbot_model_runtime::lm::CausalLm;
use flowbot_model_runtime::model_dir::{ModelDir, ModelDirError, ModelDirInfo};
use flowbot_model_runtime::safetensors_lm::SafetensorsLm;
use flowbot_model_runtime::tiny_model::{TinyLlama, TINY_CONTEXT};
use flowbot_model_runtime::{load_generator, model_sha256, Backend, GenerateOptions, LoadError};
use serde_json::{json, Value};

/// Largest logit difference allowed between the two loaders of the same f32 weights.
const LOGIT_TOLERANCE: f32 = 1e-4;

/// Writes the tiny model of `seed` as a model directory (f32) and as an f32 GGUF file.
fn both_ways(seed: u64) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = TinyLlama::random(seed).unwrap();
    let dir = tmp.path().join("tiny-llama");
    tiny.write_model_dir(&dir, DType::F32).unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    tiny.write_gguf(&gguf, GgmlDType::F32).unwrap();
    (tmp, dir, gguf)
}

fn dir_lm(dir: &Path) -> SafetensorsLm {
    SafetensorsLm::load(&ModelDir::open(dir).unwrap(), Device::Cpu).unwrap()
}

fn gguf_lm(path: &Path) -> CandleLm {
    CandleLm::load(&mut GgufFile::open(path).unwrap(), Device::Cpu).unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    let difference = max_difference(a, b);
    assert!(
        difference <= LOGIT_TOLERANCE,
        "{what}: logits differ by {difference}"
    );
    // Random weights give logits of a useful size: the comparison is not between near-zeros.
    assert!(
        a.iter().any(|x| x.abs() > 0.1),
        "{what}: logits are all tiny"
    );
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        ..Default::default()
    }
}

#[test]
fn the_same_weights_give_the_same_logits_as_the_gguf_path() {
    let (_tmp, dir, gguf) = both_ways(21);
    let mut from_dir = dir_lm(&dir);
    let mut from_gguf = gguf_lm(&gguf);
    assert_eq!(from_dir.vocab_size(), from_gguf.vocab_size());
    assert_eq!(from_dir.max_positions(), TINY_CONTEXT);

    let prompt: Vec<u32> = vec![
        1, 40, 77, 280, 101, 5, 230, 17, 2, 9, 150, 283, 63, 63, 120, 3,
    ];
    assert_close(
        &from_dir.forward(&prompt, 0).unwrap(),
        &from_gguf.forward(&prompt, 0).unwrap(),
        "prefill",
    );
    // Decode steps one token at a time, on top of the cache.
    for (i, token) in [44u32, 271, 0, 199].into_iter().enumerate() {
        let position = prompt.len() + i;
        let a = from_dir.forward(&[token], position).unwrap();
        let b = from_gguf.forward(&[token], position).unwrap();
        assert_close(&a, &b, &format!("decode step {i}"));
    }
    // Rewinding into the prompt (prefix reuse) gives the logits of a fresh run.
    let rewound = from_dir.forward(&[7, 8, 9], 6).unwrap();
    assert_eq!(from_dir.cached_len(), 9);
    let mut fresh = dir_lm(&dir);
    let mut again: Vec<u32> = prompt[..6].to_vec();
    again.extend([7, 8, 9]);
    assert_close(
        &rewound,
        &fresh.forward(&again, 0).unwrap(),
        "after a rewind",
    );
    // Back to position 0: nothing of the old cache remains.
    let restarted = from_dir.forward(&prompt, 0).unwrap();
    assert_close(
        &restarted,
        &from_gguf.forward(&prompt, 0).unwrap(),
        "restart at 0",
    );
}

#[test]
fn generation_from_a_directory_matches_the_gguf_file_and_is_deterministic() {
    let (_tmp, dir, gguf) = both_ways(22);
    let mut from_dir = load_generator(&dir, Backend::Candle(DeviceChoice::Cpu)).unwrap();
    let mut from_gguf = load_generator(&gguf, Backend::Candle(DeviceChoice::Cpu)).unwrap();
    assert_eq!(from_dir.model_id, "tiny-llama");
    let system = Some("You answer briefly.");
    // tokenizer.json + tokenizer_config.json build the same prompt as the GGUF metadata.
    assert_eq!(
        from_dir
            .generator
            .prompt(system, "order SO-1001 for ACME, 12 units")
            .unwrap(),
        from_gguf
            .generator
            .prompt(system, "order SO-1001 for ACME, 12 units")
            .unwrap()
    );
    assert_eq!(
        from_dir.generator.tokenizer().eos_ids(),
        from_gguf.generator.tokenizer().eos_ids()
    );
    let a = from_dir
        .generator
        .generate(system, "hello there", &greedy(20), None)
        .unwrap();
    let b = from_dir
        .generator
        .generate(system, "hello there", &greedy(20), None)
        .unwrap();
    let g = from_gguf
        .generator
        .generate(system, "hello there", &greedy(20), None)
        .unwrap();
    assert!(!a.tokens.is_empty());
    assert_eq!(a.tokens, b.tokens, "greedy generation repeats itself");
    assert!(
        b.reused_prompt_tokens > 0,
        "the second call reuses the cached prompt"
    );
    assert_eq!(a.tokens, g.tokens, "same weights, same greedy tokens");
    assert_eq!(a.text, g.text);

    let mut reloaded = load_generator(&dir, Backend::for_device(DeviceChoice::Cpu)).unwrap();
    let c = reloaded
        .generator
        .generate(system, "hello there", &greedy(20), None)
        .unwrap();
    assert_eq!(a.tokens, c.tokens, "a fresh load generates the same tokens");
}

#[test]
fn json_constrained_output_and_labels_work_on_a_directory() {
    let (_tmp, dir, _gguf) = both_ways(23);
    let mut loaded = load_generator(&dir, Backend::Candle(DeviceChoice::Cpu)).unwrap();
    let schema = ObjectSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "quantity": {"type": "integer"},
            "urgent": {"type": "boolean"}
        },
        "required": ["order_id", "quantity", "urgent"]
    }))
    .unwrap();
    let (value, generation) = loaded
        .generator
        .generate_json(
            None,
            "Order SO-7 for 3 units, urgent.",
            &schema,
            &greedy(80),
        )
        .unwrap();
    let parsed: Value = serde_json::from_str(&generation.text).unwrap();
    assert_eq!(parsed, value);
    assert!(
        value["order_id"].is_string() && value["quantity"].is_i64() && value["urgent"].is_boolean(),
        "{value}"
    );

    let labels = ["confirm", "reject", "escalate"];
    let (label, _) = loaded
        .generator
        .classify(None, "Customer wants a refund", &labels, &greedy(10))
        .unwrap();
    assert!(labels.contains(&label.as_str()), "{label}");
}

#[test]
fn a_sharded_checkpoint_loads_like_a_single_file() {
    let (_tmp, dir, _gguf) = both_ways(24);
    let single = dir_lm(&dir).forward(&[1, 50, 60, 70], 0).unwrap();

    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let shard: HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        candle_core::safetensors::save(&shard, dir.join(file)).unwrap();
        for name in part {
            weight_map.insert((*name).clone(), json!(file));
        }
    }
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    let model = ModelDir::open(&dir).unwrap();
    assert_eq!(model.weight_files.len(), 2);
    let sharded = SafetensorsLm::load(&model, Device::Cpu)
        .unwrap()
        .forward(&[1, 50, 60, 70], 0)
        .unwrap();
    assert_eq!(single, sharded);
}

#[test]
fn bf16_weights_load_on_the_cpu_in_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = TinyLlama::random(25).unwrap();
    let (exact, rounded) = (tmp.path().join("f32"), tmp.path().join("bf16"));
    tiny.write_model_dir(&exact, DType::F32).unwrap();
    tiny.write_model_dir(&rounded, DType::BF16).unwrap();
    let tokens = [1, 30, 31, 32, 33];
    let a = dir_lm(&exact).forward(&tokens, 0).unwrap();
    let b = dir_lm(&rounded).forward(&tokens, 0).unwrap();
    let difference = max_difference(&a, &b);
    // bf16 keeps 8 bits of mantissa: close, not equal.
    assert!(
        difference > 0.0 && difference < 0.1,
        "difference {difference}"
    );
    let info = ModelDirInfo::read(&rounded).unwrap();
    assert_eq!(info.dtypes.keys().collect::<Vec<_>>(), ["BF16"]);
    assert_eq!(info.torch_dtype.as_deref(), Some("bfloat16"));
}

#[test]
fn info_reports_the_directory() {
    let (_tmp, dir, _gguf) = both_ways(26);
    let info = ModelDirInfo::read(&dir).unwrap();
    assert_eq!(info.architecture, "LlamaForCausalLM");
    assert_eq!(info.context_length, TINY_CONTEXT);
    assert_eq!(info.block_count, 2);
    assert_eq!(info.embedding_length, 64);
    assert!(info.tie_word_embeddings);
    assert_eq!(info.weight_files, 1);
    assert_eq!(info.dtypes.keys().collect::<Vec<_>>(), ["F32"]);
    let vocab = info.tokenizer.vocab_size;
    // Embedding, then per block 4 attention + 3 MLP matrices and 2 norms, then the final norm.
    let per_block = 64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3 + 64 * 2;
    assert_eq!(info.parameters as usize, vocab * 64 + 2 * per_block + 64);
    assert_eq!(info.tokenizer.model.as_deref(), Some("BPE"));
    assert_eq!(info.tokenizer.added_tokens, 3);
    assert!(info.tokenizer.merges > 20);
    assert_eq!(info.tokenizer.eos_token.as_deref(), Some("<|im_end|>"));
    assert!(info.has_chat_template);
    assert_eq!(info.sha256, model_sha256(&dir).unwrap());
    assert_eq!(info.sha256.len(), 64);

    // Any file of the model changes the fingerprint.
    let config_path = dir.join("tokenizer_config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["eos_token"] = json!("<|endoftext|>");
    std::fs::write(&config_path, config.to_string()).unwrap();
    assert_ne!(model_sha256(&dir).unwrap(), info.sha256);
}

/// Rewrites a field of the directory's config.json.
fn set_config(dir: &Path, key: &str, value: Value) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, config.to_string()).unwrap();
}

fn load_error(dir: &Path) -> LoadError {
    match load_generator(dir, Backend::Candle(DeviceChoice::Cpu)) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn incomplete_or_foreign_directories_give_typed_errors() {
    let (tmp, dir, _gguf) = both_ways(27);
    let copy = |name: &str| {
        let target = tmp.path().join(name);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
        target
    };

    let no_config = copy("no-config");
    std::fs::remove_file(no_config.join("config.json")).unwrap();
    let err = load_error(&no_config);
    assert!(
        matches!(
            err,
            LoadError::ModelDir(ModelDirError::MissingConfig { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("no-config") && err.to_string().contains("config.json"),
        "{err}"
    );

    let mistral = copy("mistral");
    set_config(&mistral, "architectures", json!(["MistralForCausalLM"]));
    set_config(&mistral, "model_type", json!("mistral"));
    let err = load_error(&mistral);
    assert!(
        matches!(
            err,
            LoadError::ModelDir(ModelDirError::UnsupportedArchitecture { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("`mistral` is not supported"),
        "{err}"
    );

    let no_tokenizer = copy("no-tokenizer");
    std::fs::remove_file(no_tokenizer.join("tokenizer.json")).unwrap();
    let err = load_error(&no_tokenizer);
    assert!(
        matches!(
            err,
            LoadError::ModelDir(ModelDirError::MissingTokenizer { .. })
        ),
        "{err}"
    );

    let wrong_width = copy("wrong-width");
    set_config(&wrong_width, "intermediate_size", json!(96));
    let err = load_error(&wrong_width);
    let LoadError::ModelDir(ModelDirError::ShapeMismatch {
        tensor,
        expected,
        found,
        ..
    }) = &err
    else {
        panic!("not a shape mismatch: {err}");
    };
    assert_eq!(tensor, "model.layers.0.mlp.gate_proj.weight");
    assert_eq!(
        (expected.as_slice(), found.as_slice()),
        ([96, 64].as_slice(), [128, 64].as_slice())
    );
    assert!(
        err.to_string().contains("gate_proj") && err.to_string().contains("[128, 64]"),
        "{err}"
    );

    let deeper = copy("deeper");
    set_config(&deeper, "num_hidden_layers", json!(3));
    let err = load_error(&deeper);
    assert!(
        matches!(&err, LoadError::ModelDir(ModelDirError::MissingTensor { tensor, .. }) if tensor.starts_with("model.layers.2.")),
        "{err}"
    );

    let untied = copy("untied");
    set_config(&untied, "tie_word_embeddings", json!(false));
    let err = load_error(&untied);
    assert!(err.to_string().contains("lm_head.weight"), "{err}");

    let odd_heads = copy("odd-heads");
    set_config(&odd_heads, "num_attention_heads", json!(5));
    let err = load_error(&odd_heads);
    assert!(
        matches!(
            err,
            LoadError::ModelDir(ModelDirError::UnsupportedConfig { .. })
        ),
        "{err}"
    );

    let small_vocab = copy("small-vocab");
    set_config(&small_vocab, "vocab_size", json!(200));
    let err = load_error(&small_vocab);
    assert!(
        matches!(
            err,
            LoadError::ModelDir(ModelDirError::VocabularyMismatch {
                tokenizer: 284,
                model: 200,
                ..
            })
        ),
        "{err}"
    );

    let no_weights = copy("no-weights");
    std::fs::remove_file(no_weights.join("model.safetensors")).unwrap();
    let err = load_error(&no_weights);
    assert!(
        matches!(
            err,
            LoadError::ModelDir(ModelDirError::MissingWeights { .. })
        ),
        "{err}"
    );

    let garbage = copy("garbage");
    std::fs::write(garbage.join("model.safetensors"), b"not safetensors at all").unwrap();
    let err = load_error(&garbage);
    assert!(
        matches!(err, LoadError::ModelDir(ModelDirError::Safetensors { .. })),
        "{err}"
    );

    let bad_json = copy("bad-json");
    std::fs::write(bad_json.join("config.json"), "{\"hidden_size\": ").unwrap();
    let err = load_error(&bad_json);
    assert!(
        err.to_string().contains("config.json") && err.to_string().contains("not valid JSON"),
        "{err}"
    );

    let missing_field = copy("missing-field");
    let path = missing_field.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(&path, config.to_string()).unwrap();
    let err = load_error(&missing_field);
    assert!(err.to_string().contains("hidden_size"), "{err}");
}
