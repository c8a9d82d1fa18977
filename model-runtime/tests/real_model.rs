//! Tests against the real default model (SmolLM2-135M-Instruct Q4_1). They FAIL when the model is
//! absent: fetch it first with `flowbot model fetch` (CI does), or point `FLOWBOT_MODEL` at it.

use std::path::PathBuf;

use flowbot_model_runtime::candle_lm::DeviceChoice;
use flowbot_model_runtime::constrain::ObjectSchema;
use flowbot_model_runtime::fast::FastOptions;
use flowbot_model_runtime::fetch::{default_model_path, model_cache_dir};
use flowbot_model_runtime::{load_generator, Backend, GenerateOptions, Generator, SamplingOptions};
use serde_json::json;

const SYSTEM: &str = "You write short, polite order confirmations.";
const USER: &str = "Order SO-1001 from ACME Ltd, total 1234.50 CNY. Write a one-sentence confirmation for the customer.";

fn model_path() -> PathBuf {
    match std::env::var_os("FLOWBOT_MODEL") {
        Some(path) => PathBuf::from(path),
        None => default_model_path(&model_cache_dir()),
    }
}

fn real() -> Generator {
    real_on(Backend::for_device(DeviceChoice::Cpu))
}

fn real_on(backend: Backend) -> Generator {
    let path = model_path();
    assert!(
        path.is_file(),
        "the real model is missing at {}: run `flowbot model fetch` (or set FLOWBOT_MODEL) before these tests",
        path.display()
    );
    load_generator(&path, backend)
        .expect("model loads")
        .generator
}

#[test]
fn reference_prompt_ids_and_greedy_tokens_match_llama_cpp() {
    for backend in [
        Backend::Fast(FastOptions::default()),
        Backend::Candle(DeviceChoice::Cpu),
    ] {
        check_reference(real_on(backend));
    }
}

fn check_reference(mut g: Generator) {
    let prompt = g.prompt(Some(SYSTEM), USER).unwrap();
    assert_eq!(prompt.ids.len(), 57);
    assert_eq!(
        &prompt.ids[..10],
        &[1, 9690, 198, 2683, 2965, 1890, 28, 26310, 1686, 5143]
    );
    let generation = g
        .generate(
            Some(SYSTEM),
            USER,
            &GenerateOptions {
                max_tokens: 20,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(
        generation.tokens,
        vec![
            504, 7742, 553, 8885, 260, 216, 33, 34, 35, 36, 30, 37, 32, 3214, 67, 29, 33, 32, 32,
            33
        ]
    );
}

#[test]
fn tokenizer_round_trips_english_chinese_and_mixed_text() {
    let g = real();
    let tok = g.tokenizer();
    for text in [
        "Please confirm order SO-1001 for ACME Ltd, total 1,234.50 USD.",
        "您好，我们已收到您的订单 SO-2024-0815，总金额为人民币 12,800.00 元。",
        "Order 订单号 PO#7781 from 上海星辰贸易有限公司: €3.450,00 (EUR) 👍\r\nThanks",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids), text);
        assert!(ids.iter().all(|&id| !tok.is_special(id)));
    }
    // Digits are split one by one, as llama.cpp's smollm pre-tokenizer does.
    assert_eq!(tok.encode("2024").unwrap().len(), 4);
    let ids = tok.encode("x<|im_end|>y").unwrap();
    assert!(!ids.contains(&2), "{ids:?}");
}

#[test]
fn chat_template_inserts_the_default_system_prompt() {
    let g = real();
    let prompt = g.prompt(None, "Hi").unwrap();
    let text: String = prompt
        .ids
        .iter()
        .map(|&id| match id {
            1 => "<|im_start|>".to_string(),
            2 => "<|im_end|>".to_string(),
            _ => g.tokenizer().decode(&[id]),
        })
        .collect();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn seeded_sampling_is_deterministic() {
    let mut g = real();
    let options = GenerateOptions {
        max_tokens: 24,
        sampling: SamplingOptions {
            temperature: 0.8,
            top_p: 0.9,
            seed: 42,
            ..Default::default()
        },
        ..Default::default()
    };
    let a = g.generate(Some(SYSTEM), USER, &options, None).unwrap();
    let b = g.generate(Some(SYSTEM), USER, &options, None).unwrap();
    assert_eq!(a.text, b.text);
    assert!(b.reused_prompt_tokens > 0);
}

#[test]
fn json_constrained_extraction_always_parses_over_many_seeds() {
    let mut g = real();
    let schema = ObjectSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "maxLength": 40},
            "customer": {"type": "string", "maxLength": 80},
            "total": {"type": "number"},
            "currency": {"enum": ["CNY", "USD", "EUR", "GBP", "JPY"]}
        },
        "required": ["order_id", "customer", "total", "currency"]
    }))
    .unwrap();
    let mail = "Hello, this is Li Wei from Shenzhen Bright Parts Co. Please process our order PO-88123: 400 bearings, total amount ¥56,320.00. Thanks!";
    for seed in 0..8 {
        let options = GenerateOptions {
            max_tokens: 80,
            sampling: SamplingOptions {
                temperature: 1.0,
                top_p: 0.95,
                seed,
                ..Default::default()
            },
            ..Default::default()
        };
        let (value, _) = g
            .generate_json(Some("Extract the order as JSON."), mail, &schema, &options)
            .unwrap();
        schema.validate(&value).unwrap();
    }
}

#[test]
fn classification_returns_only_allowed_labels() {
    let mut g = real();
    let labels = ["confirm", "reject", "ask_customer"];
    for seed in 0..6 {
        let options = GenerateOptions {
            max_tokens: 8,
            sampling: SamplingOptions {
                temperature: 1.2,
                seed,
                ..Default::default()
            },
            ..Default::default()
        };
        let (label, _) = g
            .classify(
                Some("Answer with one label: confirm, reject or ask_customer."),
                "The customer asks to cancel order SO-7.",
                &labels,
                &options,
            )
            .unwrap();
        assert!(labels.contains(&label.as_str()), "{label}");
    }
}

#[test]
fn the_model_converted_to_a_directory_runs_on_the_safetensors_backend() {
    use flowbot_model_runtime::gguf_export::write_model_dir_from_gguf;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("SmolLM2-135M-Instruct");
    assert_eq!(write_model_dir_from_gguf(&model_path(), &dir).unwrap(), 272);
    let mut from_dir = load_generator(&dir, Backend::Candle(DeviceChoice::Cpu))
        .unwrap()
        .generator;
    let mut from_gguf = real_on(Backend::Candle(DeviceChoice::Cpu));
    // tokenizer.json and tokenizer_config.json give the prompt of the GGUF metadata.
    assert_eq!(
        from_dir.prompt(Some(SYSTEM), USER).unwrap(),
        from_gguf.prompt(Some(SYSTEM), USER).unwrap()
    );
    let greedy = GenerateOptions {
        max_tokens: 20,
        ..Default::default()
    };
    let a = from_dir
        .generate(Some(SYSTEM), USER, &greedy, None)
        .unwrap();
    let b = from_gguf
        .generate(Some(SYSTEM), USER, &greedy, None)
        .unwrap();
    // The directory holds the Q4_1 values exactly, but computes with f32 activations where the
    // quantized path rounds them to 8 bits: the greedy tokens agree but for a word or two
    // (measured: 19 of 20, "a" for "the" at the fifth).
    assert_eq!(
        a.tokens[..4],
        b.tokens[..4],
        "dir {:?}\ngguf {:?}",
        a.text,
        b.text
    );
    let agreeing = a
        .tokens
        .iter()
        .zip(&b.tokens)
        .filter(|(x, y)| x == y)
        .count();
    assert!(
        agreeing >= 15,
        "{agreeing} of 20 agree: dir {:?}, gguf {:?}",
        a.text,
        b.text
    );
    assert!(a.text.contains("1234.50"), "{:?}", a.text);
}

#[test]
fn a_batch_of_extractions_gives_each_the_output_it_gets_alone() {
    use flowbot_model_runtime::batch::{BatchGenerator, BatchOptions};

    let schema = ObjectSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "maxLength": 40, "x-copy": true},
            "customer": {"type": "string", "maxLength": 80, "x-copy": true},
            "total": {"type": "number", "x-copy": true},
            "currency": {"enum": ["CNY", "USD", "EUR", "GBP", "JPY"]}
        },
        "required": ["order_id", "customer", "total", "currency"]
    }))
    .unwrap();
    let system = "Extract the sales order from the customer's e-mail as JSON.";
    let mails = [
        "Hello, this is Li Wei from Shenzhen Bright Parts Co. Please process our order PO-88123: 400 bearings, total amount ¥56,320.00. Thanks!",
        "Dear team, Alpine Tools GmbH orders 12 drills (order AT-204), total 1.980,00 EUR. Best, Jonas",
        "您好，上海恒力机械有限公司订购轴承，订单号 HL-7788，合计人民币 12,500.00 元。",
        "Hi, order #5531 from Brightline Ltd: 3 pallets of cable, total $4,410.25. Thanks, Sam",
    ];
    let options = GenerateOptions {
        max_tokens: 96,
        ..Default::default()
    };
    let mut single = real_on(Backend::Fast(FastOptions::default()));
    let expected: Vec<(serde_json::Value, Vec<u32>)> = mails
        .iter()
        .map(|mail| {
            let (value, g) = single
                .generate_json(Some(system), mail, &schema, &options)
                .unwrap();
            (value, g.tokens)
        })
        .collect();
    let batch = BatchGenerator::new(
        real_on(Backend::Fast(FastOptions::default())),
        BatchOptions::default(),
    );
    let start = std::sync::Barrier::new(mails.len());
    let got: Vec<(serde_json::Value, Vec<u32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = mails
            .iter()
            .map(|mail| {
                let (batch, start, schema, options) = (&batch, &start, &schema, &options);
                scope.spawn(move || {
                    start.wait();
                    let (value, g) = batch
                        .generate_json(Some(system), mail, schema, options)
                        .unwrap();
                    (value, g.tokens)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got, expected);
}
