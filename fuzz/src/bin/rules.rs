#![no_main]
//! A rule file: checked like `flowbot check rules/` does (compile with imports from a rules folder
//! holding the shipped library modules), then run on the rules runtime (standard library, sandbox
//! limits) over the variables after the first NUL.

use flowbot_engine::rules::{check_rule_file, rules_runtime, RulesConfig};
use flowbot_engine::script::ScriptRuntime;
use flowbot_fuzz::{split, text, variables};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A rules folder with the shipped `lib/` modules, and the rules runtime over it.
fn folder() -> &'static (PathBuf, ScriptRuntime) {
    static FOLDER: OnceLock<(PathBuf, ScriptRuntime)> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("flowbot-fuzz-rules-{}", std::process::id()));
        std::fs::create_dir_all(root.join("lib")).expect("rules folder");
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules/lib");
        for entry in std::fs::read_dir(shipped).into_iter().flatten().flatten() {
            let _ = std::fs::copy(entry.path(), root.join("lib").join(entry.file_name()));
        }
        let runtime = rules_runtime(&root, &RulesConfig::default());
        (root, runtime)
    })
}

fuzz_target!(|data: &[u8]| {
    let (root, runtime) = folder();
    let (source, vars) = split(data);
    let file = root.join("fuzz.rhai");
    if std::fs::write(&file, source).is_ok() {
        let _ = check_rule_file(&file);
    }
    if let Ok(ast) = runtime.compile(&text(source)) {
        let _ = runtime.run_script(&ast, &variables(vars));
    }
});
