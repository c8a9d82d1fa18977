//! Hostile input to the YAML front end: every case ends with a clear, positioned error, never a
//! panic, a hang or a stack overflow. (Alias bombs, empty files, garbage and control characters
//! are also in `data/yaml/` with their exact diagnostics.)

use flowbot_engine::diagnostics::has_errors;
use flowbot_engine::yaml::{parse_yaml, parse_yaml_bytes, MAX_SOURCE_BYTES};
use std::path::Path;

fn errors_of(text: &str) -> Vec<String> {
    let (_, diagnostics) = parse_yaml(Path::new("h.yaml"), text);
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let prev = level - 1;
        let refs = vec![format!("*a{prev}"); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    text.push_str("process: p\nnodes: *a11\n");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("expands too much through YAML aliases"),
        "{errors:?}"
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let text = format!(
            "process: p\nnodes: {}1{}\n",
            open.repeat(100_000),
            close.repeat(100_000)
        );
        let errors = errors_of(&text);
        assert!(
            errors.iter().any(|e| e.contains("nested too deeply")),
            "{errors:?}"
        );
    }
    let mut block = String::from("process: p\nnodes:\n");
    for depth in 0..2_000 {
        block.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth + 1)));
    }
    let errors = errors_of(&block);
    assert!(
        errors.iter().any(|e| e.contains("nested too deeply")),
        "{errors:?}"
    );
}

#[test]
fn nested_subprocesses_within_the_limit_parse() {
    let depth = 20;
    let mut text = String::from("process: p\nnodes:\n");
    let mut indent = String::from("  ");
    for level in 0..depth {
        text.push_str(&format!(
            "{indent}s{level}:\n{indent}  subprocess:\n{indent}    nodes:\n"
        ));
        indent.push_str("      ");
    }
    text.push_str(&format!("{indent}innermost: {{ end: ~ }}\n"));
    let (definitions, diagnostics) = parse_yaml(Path::new("nested.yaml"), &text);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    let mut nodes = definitions.expect("definitions").processes.remove(0).nodes;
    let mut seen = 0;
    while let flowbot_engine::model::NodeKind::SubProcess(sub) = &nodes[0].kind {
        seen += 1;
        nodes = sub.body.nodes.clone();
    }
    assert_eq!(seen, depth);
    assert_eq!(nodes[0].id, "innermost");
    assert_eq!(nodes[0].span.line as usize, depth * 3 + 3);
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let text = format!(
        "process: p\nnodes:\n  a: {{ end: ~ }}\n#{}\n",
        "x".repeat(MAX_SOURCE_BYTES)
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("limited to 4194304 bytes"), "{errors:?}");
    let (_, diagnostics) = parse_yaml_bytes(Path::new("h.yaml"), text.as_bytes());
    assert!(diagnostics[0].message.contains("4 MiB"));
}

#[test]
fn non_utf8_is_reported_at_the_bad_byte() {
    let bytes = b"process: p\nnodes:\n  caf\xE9: { end: ~ }\n";
    let (definitions, diagnostics) = parse_yaml_bytes(Path::new("latin1.yaml"), bytes);
    assert!(definitions.is_none());
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(
        diagnostics[0].to_string(),
        "latin1.yaml:3:6: error: the file is not UTF-8 text (invalid byte 0xE9); save it as UTF-8"
    );
}

/// A small deterministic generator (xorshift), so the garbage is the same on every run.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn binary_garbage_never_panics() {
    let mut rng = Garbage(0x5eed_1234_abcd_ef01);
    for round in 0..300 {
        let len = (rng.next() % 400) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let (_, diagnostics) = parse_yaml_bytes(Path::new("garbage.yaml"), &bytes);
        assert!(
            has_errors(&diagnostics),
            "round {round}: garbage accepted: {bytes:?}"
        );
    }
}

#[test]
fn every_truncation_and_mutation_of_a_real_file_is_handled() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/order_processing.yaml"),
    )
    .expect("order process");
    let chars: Vec<char> = text.chars().collect();
    for cut in (0..chars.len()).step_by(5) {
        let prefix: String = chars[..cut].iter().collect();
        let _ = parse_yaml(Path::new("cut.yaml"), &prefix);
    }
    // Replace single characters with YAML indicators.
    let mut rng = Garbage(42);
    let indicators = [
        '{', '}', '[', ']', ':', '-', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', ',', '?',
        '\t', '\n',
    ];
    for _ in 0..500 {
        let mut mutated = chars.clone();
        let at = (rng.next() as usize) % mutated.len();
        mutated[at] = indicators[(rng.next() as usize) % indicators.len()];
        let text: String = mutated.iter().collect();
        let (_, diagnostics) = parse_yaml(Path::new("mutated.yaml"), &text);
        for d in diagnostics {
            assert!(d.span.line >= 1 && d.span.col >= 1, "{d}");
        }
    }
}

#[test]
fn duplicate_ids_and_empty_files_are_errors() {
    let errors = errors_of(
        "process: p\nnodes:\n  a: { start: ~, next: b }\n  b: { end: ~ }\n  a: { end: ~ }\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("h.yaml:5:3: error:") && errors[0].contains("duplicate"),
        "{errors:?}"
    );
    for empty in ["", "\n\n", "# nothing\n", "   "] {
        let errors = errors_of(empty);
        assert_eq!(
            errors,
            ["h.yaml:1:1: error: the file is empty: a process file starts with `process: <id>` and lists its `nodes:`"]
        );
    }
}

#[test]
fn thousands_of_unknown_targets_get_a_bounded_number_of_suggestions() {
    // Each suggestion compares with every node id: 10,000 unknown targets took minutes.
    let mut text = String::from("process: p\nnodes:\n  s: { start: ~, next: n0 }\n");
    for i in 0..10_000 {
        text.push_str(&format!("  n{i}: {{ service: h, next: n{i}x }}\n"));
    }
    let errors = errors_of(&text);
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.contains("goes to unknown node"))
            .count(),
        10_000
    );
    let hinted = errors.iter().filter(|e| e.contains("did you mean")).count();
    assert_eq!(
        hinted,
        flowbot_engine::yaml::vocabulary::MAX_ID_HINTS,
        "{:?}",
        &errors[..3]
    );
    assert!(errors[0].contains("did you mean `n0`?"), "{}", errors[0]);
}
