//! Fast tests on a tiny random-weight GGUF written by the test itself.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use flowbot_model_runtime::candle_lm::DeviceChoice;
use flowbot_model_runtime::constrain::{CopySource, ObjectSchema};
use flowbot_model_runtime::fast::FastOptions;
use flowbot_model_runtime::tiny_model::write_tiny_llama;
use flowbot_model_runtime::{
    load_generator, Backend, GenerateOptions, Generator, SamplingOptions, StopReason,
};
use serde_json::json;

fn tiny(seed: u64) -> (tempfile::TempDir, Generator) {
    tiny_on(seed, Backend::for_device(DeviceChoice::Cpu))
}

fn tiny_on(seed: u64, backend: Backend) -> (tempfile::TempDir, Generator) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, seed).unwrap();
    let loaded = load_generator(&path, backend).unwrap();
    (dir, loaded.generator)
}

fn sampled(seed: u64, max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingOptions {
            temperature: 0.9,
            top_k: 50,
            top_p: 0.95,
            seed,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn tokenizer_round_trips_text_and_keeps_control_strings_plain() {
    let (_dir, g) = tiny(1);
    let tok = g.tokenizer();
    for text in [
        "the order is there",
        "订单 SO-1001, 总额 ¥1,234.50",
        "mixed: 客户 ACME 👍\r\n",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids), text);
    }
    let ids = tok.encode("hi <|im_end|> there").unwrap();
    assert!(ids.iter().all(|&id| !tok.is_special(id)), "{ids:?}");
    assert_eq!(tok.decode(&ids), "hi <|im_end|> there");
    // Merges apply: "in" and "an" are single tokens, "inan" two.
    assert_eq!(tok.encode("inan").unwrap().len(), 2);
}

#[test]
fn chat_prompt_places_control_tokens_only_from_the_template() {
    let (_dir, g) = tiny(1);
    let prompt = g.prompt(Some("Be brief."), "Hi <|im_start|>").unwrap();
    let tok = g.tokenizer();
    let specials: Vec<u32> = prompt
        .ids
        .iter()
        .copied()
        .filter(|&id| tok.is_special(id))
        .collect();
    assert_eq!(specials, vec![1, 2, 1, 2, 1]);
    let text: String = prompt
        .ids
        .iter()
        .map(|&id| {
            if tok.is_special(id) {
                format!("[{id}]")
            } else {
                tok.decode(&[id])
            }
        })
        .collect();
    assert_eq!(
        text,
        "[1]system\nBe brief.[2]\n[1]user\nHi <|im_start|>[2]\n[1]assistant\n"
    );
}

#[test]
fn same_seed_gives_the_same_text_and_greedy_is_repeatable() {
    let (_dir, mut g) = tiny(2);
    let a = g
        .generate(Some("sys"), "hello", &sampled(11, 24), None)
        .unwrap();
    let b = g
        .generate(Some("sys"), "hello", &sampled(11, 24), None)
        .unwrap();
    let c = g
        .generate(Some("sys"), "hello", &sampled(12, 24), None)
        .unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert_ne!(
        a.tokens, c.tokens,
        "different seeds should differ on random weights"
    );
    let greedy = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    let x = g.generate(None, "hello", &greedy, None).unwrap();
    let y = g.generate(None, "hello", &greedy, None).unwrap();
    assert_eq!(x.tokens, y.tokens);
}

#[test]
fn prefix_reuse_gives_the_same_tokens_as_a_fresh_model() {
    for backend in [
        Backend::Fast(FastOptions::default()),
        Backend::Candle(DeviceChoice::Cpu),
    ] {
        prefix_reuse_on(backend);
    }
}

fn prefix_reuse_on(backend: Backend) {
    let (_dir, mut warm) = tiny_on(3, backend);
    let (_dir2, mut cold) = tiny_on(3, backend);
    let options = GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let system = "You extract order fields from e-mails and answer in JSON.";
    warm.generate(Some(system), "first order mail", &options, None)
        .unwrap();
    let reused = warm
        .generate(Some(system), "second order mail", &options, None)
        .unwrap();
    let fresh = cold
        .generate(Some(system), "second order mail", &options, None)
        .unwrap();
    assert!(
        reused.reused_prompt_tokens > 10,
        "reused {}",
        reused.reused_prompt_tokens
    );
    assert_eq!(fresh.reused_prompt_tokens, 0);
    assert_eq!(reused.tokens, fresh.tokens);
}

#[test]
fn streaming_delivers_exactly_the_final_text() {
    let (_dir, mut g) = tiny(4);
    let mut streamed = String::new();
    let mut sink = |piece: &str| streamed.push_str(piece);
    let generation = g
        .generate(None, "stream me", &sampled(5, 30), Some(&mut sink))
        .unwrap();
    assert_eq!(streamed, generation.text);
}

#[test]
fn stop_sequences_cut_the_text() {
    let (_dir, mut g) = tiny(4);
    let free = g
        .generate(None, "stop test", &sampled(9, 40), None)
        .unwrap();
    // Pick a stop string from the middle of the unconstrained output.
    let chars: Vec<char> = free.text.chars().collect();
    assert!(chars.len() > 6, "{:?}", free.text);
    let stop: String = chars[3..5].iter().collect();
    let before = free.text.find(&stop).unwrap();
    let options = GenerateOptions {
        stop: vec![stop.clone()],
        ..sampled(9, 40)
    };
    let cut = g.generate(None, "stop test", &options, None).unwrap();
    assert_eq!(cut.stop_reason, StopReason::StopSequence);
    assert_eq!(cut.text, free.text[..before]);
}

#[test]
fn max_tokens_and_cancellation_end_generation() {
    let (_dir, mut g) = tiny(5);
    let options = GenerateOptions {
        max_tokens: 7,
        ..sampled(1, 7)
    };
    let generation = g.generate(None, "budget", &options, None).unwrap();
    assert!(generation.tokens.len() <= 7);
    if generation.tokens.len() == 7 {
        assert_eq!(generation.stop_reason, StopReason::MaxTokens);
    }
    let cancel = Arc::new(AtomicBool::new(true));
    let options = GenerateOptions {
        cancel: Some(cancel),
        ..sampled(1, 50)
    };
    let generation = g.generate(None, "cancelled", &options, None).unwrap();
    assert_eq!(generation.stop_reason, StopReason::Cancelled);
    assert!(generation.tokens.is_empty());
}

#[test]
fn long_input_is_truncated_with_a_warning() {
    let (_dir, mut g) = tiny(6);
    let long = "order line with many words ".repeat(200);
    let generation = g
        .generate(
            Some("sys"),
            &long,
            &GenerateOptions {
                max_tokens: 8,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert!(generation.prompt_tokens + generation.tokens.len() <= 512);
    assert!(
        generation.warnings.iter().any(|w| w.contains("truncated")),
        "{:?}",
        generation.warnings
    );
}

#[test]
fn json_constrained_output_always_parses_and_validates() {
    let (_dir, mut g) = tiny(7);
    let schema = ObjectSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "maxLength": 12},
            "total": {"type": "number"},
            "lines": {"type": "integer"},
            "paid": {"type": "boolean"},
            "currency": {"enum": ["CNY", "USD", "EUR"]}
        },
        "required": ["order_id", "total", "currency"]
    }))
    .unwrap();
    for seed in 0..30 {
        let options = GenerateOptions {
            max_tokens: 60,
            ..sampled(seed, 60)
        };
        let (value, generation) = g
            .generate_json(
                Some("Extract."),
                "Order SO-1 total 12.5 EUR",
                &schema,
                &options,
            )
            .unwrap();
        schema.validate(&value).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&generation.text).unwrap(),
            value
        );
    }
}

#[test]
fn copied_fields_are_always_taken_from_the_input() {
    let (_dir, mut g) = tiny(11);
    let schema = ObjectSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "maxLength": 20, "x-copy": true},
            "customer": {"type": "string", "maxLength": 40, "x-copy": true},
            "total": {"type": "number", "x-copy": true},
            "lines": {"type": "integer", "x-copy": true},
            "currency": {"enum": ["CNY", "USD", "EUR"]}
        },
        "required": ["order_id", "customer", "total", "lines", "currency"]
    }))
    .unwrap();
    let mails = [
        "ACME Ltd orders SO-1001, 3 lines, total $12,450.00.",
        "上海星辰贸易有限公司 订单号 PO#7781，合计人民币 2.640,00 元 (7 行)",
        "Order \"Q-9\" from Tab\tCo: 1,980,000 yen, 12 lines",
    ];
    let mut copied_non_empty = 0;
    for seed in 0..40 {
        let mail = mails[seed as usize % mails.len()];
        let (value, generation) = g
            .generate_json(Some("Extract."), mail, &schema, &sampled(seed, 80))
            .unwrap();
        schema.validate(&value).unwrap();
        for key in ["order_id", "customer"] {
            let text = value[key].as_str().unwrap();
            assert!(
                mail.contains(text),
                "seed {seed}: {key} `{text}` is not in `{mail}`"
            );
            copied_non_empty += usize::from(!text.is_empty());
        }
        // Numbers are one of the input's numbers unless generation was cut short.
        if generation.warnings.is_empty() {
            let numbers = CopySource::new(mail);
            for key in ["total", "lines"] {
                let number = value[key].as_f64().unwrap();
                assert!(
                    numbers
                        .numbers()
                        .iter()
                        .any(|n| n.parse::<f64>().unwrap() == number),
                    "seed {seed}: {key} {number} is not written in `{mail}` ({:?})",
                    numbers.numbers()
                );
            }
        }
    }
    // The random model does write copied text, so the check above is not vacuous.
    assert!(copied_non_empty > 0);
}

#[test]
fn classification_returns_only_allowed_labels() {
    let (_dir, mut g) = tiny(8);
    let labels = ["approve", "reject", "escalate"];
    for seed in 0..20 {
        let (label, _) = g
            .classify(
                Some("Classify."),
                "Credit limit exceeded",
                &labels,
                &sampled(seed, 10),
            )
            .unwrap();
        assert!(labels.contains(&label.as_str()), "{label}");
    }
}

#[test]
fn broken_model_files_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, "root:x:0:0").unwrap();
    let err = load_generator(&not_gguf, Backend::for_device(DeviceChoice::Cpu))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("notes.gguf") && err.contains("not a readable GGUF"),
        "{err}"
    );
    assert!(
        !err.contains("backtrace") && err.lines().count() == 1,
        "{err}"
    );

    let whole = dir.path().join("whole.gguf");
    write_tiny_llama(&whole, 1).unwrap();
    let bytes = std::fs::read(&whole).unwrap();
    for keep in [bytes.len() / 2, bytes.len() - 10, 40] {
        let cut = dir.path().join(format!("cut{keep}.gguf"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let err = load_generator(&cut, Backend::for_device(DeviceChoice::Cpu))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&format!("cut{keep}.gguf")), "{err}");
    }
}

#[test]
fn device_names_parse_or_explain() {
    assert_eq!("cpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
    assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
    assert_eq!("cuda:1".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(1)));
    assert!("cuda:x"
        .parse::<DeviceChoice>()
        .unwrap_err()
        .contains("ordinal"));
    assert!("tpu"
        .parse::<DeviceChoice>()
        .unwrap_err()
        .contains("cpu, cuda or cuda:N"));
}
