#![no_main]
//! The YAML process reader with positions: any bytes, never a panic, hang or unbounded growth.

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = flowbot_engine::yaml::parse_yaml_bytes(Path::new("fuzz.yaml"), data);
});
