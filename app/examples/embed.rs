//! Embedding Flowbot through the application layer: load the shipped workflows and rules, start
//! an order, list the tasks waiting for people. `cargo run -p flowbot-app --example embed` from
//! the repository root.

use flowbot_app::config::StoreKind;
use flowbot_app::{App, AppConfig, StartRequest, TaskFilter};

#[tokio::main]
async fn main() -> Result<(), flowbot_app::AppError> {
    let mut config = AppConfig {
        workflows: Some("workflows".into()),
        ..AppConfig::default()
    };
    config.store.kind = StoreKind::Memory;
    let app = App::open(config).await?;
    let order = serde_json::json!({"order_id": "SO-1", "customer": "ACME", "amount": 20000});
    let request = StartRequest {
        process_id: "order_processing".into(),
        variables: order.as_object().cloned().unwrap_or_default(),
        business_key: Some("SO-1".into()),
    };
    let started = app.start(request).await?;
    println!("{} is {}", started.id, started.status);
    for task in app.open_tasks(&TaskFilter::default()) {
        println!("task {} waits at {} ({:?})", task.id, task.node, task.name);
    }
    app.shutdown().await;
    Ok(())
}
