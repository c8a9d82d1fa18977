#![no_main]
//! Compile of a parsed process (validation, graph, scripts): YAML input, or BPMN when it starts
//! with `<`, read and then compiled like `flowbot check` does.

use flowbot_engine::script::ScriptRuntime;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, OnceLock};

fuzz_target!(|data: &[u8]| {
    static SCRIPTS: OnceLock<Arc<ScriptRuntime>> = OnceLock::new();
    let scripts = SCRIPTS.get_or_init(|| Arc::new(ScriptRuntime::default()));
    let (definitions, _) = if data.first() == Some(&b'<') {
        flowbot_engine::bpmn::parse_bpmn(Path::new("fuzz.bpmn"), data)
    } else {
        flowbot_engine::yaml::parse_yaml_bytes(Path::new("fuzz.yaml"), data)
    };
    if let Some(definitions) = definitions {
        let _ = flowbot_engine::graph::compile(&definitions, None, scripts);
    }
});
