#![no_main]
//! The BPMN 2.0 XML reader: any bytes, never a panic, hang or unbounded growth.

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = flowbot_engine::bpmn::parse_bpmn(Path::new("fuzz.bpmn"), data);
});
