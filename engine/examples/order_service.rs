//! A small service that embeds the engine: it deploys the shipped order process, registers its
//! service handlers (async functions called with an idempotency key), starts orders, completes
//! the shipping user task as a clerk would, and prints each order's path and the size of its
//! audit log. The state lives in a sled store, so the service could be killed and restarted.
//!
//! `cargo run -p flowbot-engine --example order_service` (from the repository root).

use flowbot_engine::bpmn::parse_bpmn_file;
use flowbot_engine::diagnostics::has_errors;
use flowbot_engine::dmn::{parse_dmn_file, Decisions};
use flowbot_engine::runtime::{handler, Engine, HandlerError, JobContext};
use flowbot_engine::store::{Durability, SledStore};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

/// A handler that "calls" an outside system and returns what it learned.
fn system_call(system: &'static str) -> flowbot_engine::runtime::Handler {
    handler(move |job: JobContext| async move {
        // A real handler would pass `job.idempotency_key` to the outside system so that a retry
        // after a crash does not repeat the effect.
        let order = job
            .variables
            .get("order_id")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        if order.is_empty() {
            return Err(HandlerError::new(format!("{system}: the order has no id")));
        }
        let mut out = Map::new();
        out.insert(
            format!("{system}_ref"),
            json!(format!("{system}:{order}:{}", job.activation)),
        );
        Ok(out)
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (defs, diagnostics) = parse_bpmn_file(&root.join("workflows/order_processing.bpmn"));
    for d in &diagnostics {
        eprintln!("{d}");
    }
    let defs = match defs {
        Some(defs) if !has_errors(&diagnostics) => defs,
        _ => return Err("the order process does not parse".into()),
    };
    let dir = std::env::temp_dir().join(format!("flowbot-order-service-{}", std::process::id()));
    let store = Arc::new(SledStore::open(&dir, Durability::group())?);
    // The review policy is a decision table deployed with the process.
    let (review, problems) = parse_dmn_file(&root.join("workflows/order_review.dmn"));
    let (decisions, more) = Decisions::build(&review.into_iter().collect::<Vec<_>>());
    if has_errors(&problems) || has_errors(&more) {
        return Err("the order review decision does not build".into());
    }
    let mut builder = Engine::builder()
        .store(store)
        .decisions(Arc::new(decisions));
    for name in [
        "import_order",
        "send_invoice",
        "notify_customer",
        "warehouse_inbound",
        "book_accounting_period",
        "settle_freight",
    ] {
        builder = builder.handler(name, system_call(name));
    }
    let engine = builder.build().await?;
    let deployment = engine.deploy(&defs, None).await?;
    println!(
        "deployed {} version {}",
        deployment.deployed.process_id, deployment.deployed.version
    );

    let mut orders = Vec::new();
    for (n, amount) in [(1, 500), (2, 20_000), (3, 900)] {
        let vars = json!({"order_id": format!("SO-{n}"), "customer": "ACME", "amount": amount, "currency": "EUR", "paid": false});
        let started = engine
            .start(
                &deployment.deployed.process_id,
                vars.as_object().cloned().unwrap_or_default(),
            )
            .await?;
        orders.push(started.id);
    }
    // A clerk works through the open user tasks until every order is done; between rounds the
    // handlers run (wait_settled returns once nothing but outside help can move an order).
    loop {
        let mut open = 0;
        for id in &orders {
            let info = engine.wait_settled(id).await?;
            for wait in info
                .waiting_on
                .iter()
                .filter(|w| w.kind == flowbot_engine::executor::WaitType::User)
            {
                open += 1;
                let outputs = json!({"approved": true, "shipment_carrier": "DHL", "shipment_date": "2026-12-01"});
                if let Err(err) = engine
                    .complete_task(
                        id,
                        wait.activation,
                        outputs.as_object().cloned().unwrap_or_default(),
                    )
                    .await
                {
                    println!("{id}: {} refused: {err}", wait.node);
                }
            }
        }
        if open == 0 {
            break;
        }
    }
    for id in &orders {
        let info = engine.instance(id)?;
        println!("{id}: {} via {}", info.status, info.path.join(" → "));
        println!("  audit log: {} records", engine.history(id)?.len());
    }
    engine.shutdown().await;
    drop(engine);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
