//! Condition evaluations per second with compiled, cached conditions on the rules engine's
//! sandboxed runtime (standard library included), over a typical order's variables.
//!
//! `cargo run --release -p flowbot-engine --example cond_bench [iterations]`

use flowbot_engine::rules::{rules_runtime, RulesConfig};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let runtime = rules_runtime(Path::new("rules"), &RulesConfig::default());
    let variables = json!({
        "order_id": "SO-1001", "customer": "ACME", "amount": 12500.5, "currency": "EUR",
        "paid": false, "status": "confirmed", "created_at": "2026-11-28T09:30:00Z",
        "shipment": {"carrier": "DHL", "weight_kg": 2.5},
    });
    let variables = variables.as_object().cloned().unwrap_or_default();
    let conditions = [
        ("comparison", "amount > 10000"),
        (
            "and/or over 3 variables",
            r#"amount > 10000 && currency == "EUR" && !paid"#,
        ),
        (
            "map field",
            r#"shipment.carrier == "DHL" && shipment.weight_kg < 30"#,
        ),
        ("stdlib date call", r#"is_before(created_at, "2026-11-29")"#),
        ("stdlib money call", r#"money_cmp(amount, "10000.00") > 0"#),
    ];
    println!(
        "{iterations} evaluations per condition, {} variables in scope",
        variables.len()
    );
    for (label, source) in conditions {
        let ast = match runtime.compile(source) {
            Ok(ast) => ast,
            Err(e) => {
                eprintln!("{label}: {e}");
                std::process::exit(1);
            }
        };
        let mut holds = 0u32;
        let started = Instant::now();
        for _ in 0..iterations {
            // The compile cache is part of what is measured: each evaluation looks the condition up.
            let cached = runtime.compile(source).unwrap_or_else(|_| ast.clone());
            match runtime.eval_condition(&cached, &variables) {
                Ok(true) => holds += 1,
                Ok(false) => {}
                Err(e) => {
                    eprintln!("{label}: {e}");
                    std::process::exit(1);
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{label:<26} {:>10.0} evaluations/s  ({:.2} µs each, true {holds} times)",
            f64::from(iterations) / seconds,
            seconds * 1e6 / f64::from(iterations)
        );
    }
}
