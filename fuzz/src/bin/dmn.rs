#![no_main]
//! Decisions: the part before the first NUL read as DMN XML (when it starts with `<`) or as a
//! YAML decision file, built into a decision set (every FEEL text parsed), then every decision
//! evaluated over the variables after the NUL (a JSON object).

use flowbot_engine::dmn::{parse_decision_yaml, parse_dmn, Decisions};
use flowbot_fuzz::{split, text, variables};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let (source, input) = split(data);
    let (file, _) = if source.first() == Some(&b'<') {
        parse_dmn(Path::new("fuzz.dmn"), source)
    } else {
        parse_decision_yaml(Path::new("fuzz.yaml"), &text(source))
    };
    let Some(file) = file else {
        return;
    };
    let (decisions, _) = Decisions::build(&[file]);
    let variables = variables(input);
    for id in decisions.ids() {
        let _ = decisions.evaluate(id, &variables);
    }
});
