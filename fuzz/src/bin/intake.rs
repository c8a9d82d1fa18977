#![no_main]
//! The ERP intake: an export (before the first NUL) read as CSV, JSON and JSON Lines with the
//! mapping after the NUL (when it is a valid mapping file; else the built-in column names), then
//! the good records of all three reads aligned and sorted as `flowbot intake` does.

use flowbot_fuzz::split;
use flowbot_intake::{align, read_bytes, Mapping, Options, SortBy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (export, mapping) = split(data);
    let mut options = Options::default();
    if let Ok(Ok(mapping)) = std::str::from_utf8(mapping).map(Mapping::from_toml) {
        options.mapping = mapping;
    }
    let reads: Vec<_> = ["orders.csv", "orders.json", "orders.jsonl"]
        .into_iter()
        .filter_map(|name| read_bytes(name, export, &options).ok())
        .collect();
    let batch = align(reads, SortBy::Created);
    for order in &batch.orders {
        assert!(
            !order.order_id().is_empty(),
            "an aligned order without an id"
        );
    }
});
