#![no_main]
//! A Rhai condition or script task under the sandbox limits: compiled, then evaluated as a
//! condition, a value and a script over the variables after the first NUL (a JSON object).

use flowbot_engine::script::ScriptRuntime;
use flowbot_fuzz::{split, text, variables};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static RUNTIME: OnceLock<ScriptRuntime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(ScriptRuntime::default);
    let (source, vars) = split(data);
    let vars = variables(vars);
    if let Ok(ast) = runtime.compile(&text(source)) {
        let _ = runtime.eval_condition(&ast, &vars);
        let _ = runtime.eval_value(&ast, &vars);
        let _ = runtime.run_script(&ast, &vars);
    }
});
