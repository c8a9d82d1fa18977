#![no_main]
//! The JSON-schema constraint compiler and its byte machine: the part before the first NUL is a
//! schema, the part after it the output fed byte by byte (each byte the machine refuses is
//! skipped); the completion must always validate.

use flowbot_fuzz::split;
use flowbot_model_runtime::constrain::{Constraint, JsonSchemaMachine, ObjectSchema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (schema, output) = split(data);
    let Ok(schema) = serde_json::from_slice::<serde_json::Value>(schema) else {
        return;
    };
    let Ok(schema) = ObjectSchema::from_json_schema(&schema) else {
        return;
    };
    let mut machine = JsonSchemaMachine::new(schema.clone())
        .with_source("Order SO-1 from ACME Ltd: 12,450.00 EUR, 3 pallets");
    let mut written = Vec::new();
    for &b in output {
        if machine.is_complete() {
            break;
        }
        if machine.accepts(&[b]) {
            machine.advance(&[b]);
            written.push(b);
        }
    }
    written.extend(machine.completion());
    let value: serde_json::Value =
        serde_json::from_slice(&written).expect("the completion is JSON");
    assert_eq!(
        schema.validate(&value),
        Ok(()),
        "{}",
        String::from_utf8_lossy(&written)
    );
});
