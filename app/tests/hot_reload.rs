//! Hot reload through the folder watcher: a changed workflow is deployed as a new version while
//! instances of the old one finish on theirs; a broken edit changes nothing and is reported; a
//! changed rule file takes effect at the next step, a broken one is refused.

use flowbot_app::config::StoreKind;
use flowbot_app::{App, AppConfig, FolderWatcher, InstanceStatus, ReloadReport, StartRequest};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

fn workflow(version: u32) -> String {
    format!(
        r#"process: reviewed
rules:
  - {{ on: variable_change, variable: stage, file: announce.rhai }}
nodes:
  begin: {{ start: ~, next: review }}
  review: {{ user: ~, next: mark }}
  mark: {{ script: "let stage = \"v{version}\";", next: done }}
  done: {{ end: ~ }}
"#
    )
}

fn start(process: &str) -> StartRequest {
    StartRequest {
        process_id: process.into(),
        variables: Map::new(),
        business_key: None,
    }
}

/// The next reload report the watcher publishes.
async fn next_report(reports: &mut broadcast::Receiver<ReloadReport>) -> ReloadReport {
    tokio::time::timeout(Duration::from_secs(30), reports.recv())
        .await
        .expect("the watcher reloads within 30 s")
        .expect("the watcher is running")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_redeployed_and_broken_ones_change_nothing() {
    let project = tempfile::tempdir().unwrap();
    let (workflows, rules) = (
        project.path().join("workflows"),
        project.path().join("rules"),
    );
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    let file = workflows.join("reviewed.yaml");
    write(&file, &workflow(1));
    write(
        &rules.join("announce.rhai"),
        r#"notify("ops", `stage ${event.value}`);"#,
    );
    let config = AppConfig {
        workflows: Some(workflows.clone()),
        rules: Some(rules.clone()),
        store: flowbot_app::config::StoreConfig {
            kind: StoreKind::Memory,
            ..Default::default()
        },
        ..AppConfig::default()
    };
    let app = Arc::new(App::open(config).await.unwrap());
    let old = app.start(start("reviewed")).await.unwrap();
    assert_eq!(old.version, 1);
    let watcher = FolderWatcher::start(&app).unwrap();
    let mut reports = watcher.reports();

    // A new version: new instances start on it, the running one stays on its own.
    write(&file, &workflow(2));
    let report = next_report(&mut reports).await;
    let created: Vec<(String, u32)> = report
        .deployed
        .iter()
        .flat_map(|f| f.deployed.iter().filter(|p| p.created))
        .map(|p| (p.process.clone(), p.version))
        .collect();
    assert_eq!(created, [("reviewed".to_string(), 2)], "{report:?}");
    let new = app.start(start("reviewed")).await.unwrap();
    assert_eq!(new.version, 2);
    for (instance, stage) in [(&old, "v1"), (&new, "v2")] {
        let task = instance.waiting_on[0].task.clone().unwrap();
        let done = app.complete_task(&task, Map::new()).await.unwrap();
        assert_eq!(done.status, InstanceStatus::Completed);
        assert_eq!(done.variables["stage"], Value::from(stage), "{}", done.id);
    }

    // A broken edit is refused with a positioned diagnostic; version 2 keeps serving.
    write(
        &file,
        "process: reviewed\nnodes:\n  begin: { start: ~, next: nowhere }\n",
    );
    let report = next_report(&mut reports).await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    let diagnostic = report.rejected[0]
        .diagnostics
        .iter()
        .find(|d| d.is_error())
        .expect("an error")
        .to_string();
    assert!(
        diagnostic.contains("reviewed.yaml:3:") && diagnostic.contains("nowhere"),
        "{diagnostic}"
    );
    assert_eq!(app.definition("reviewed").unwrap().latest, 2);
    let after_broken = app.start(start("reviewed")).await.unwrap();
    assert_eq!(after_broken.version, 2);

    // A changed rule takes effect at the next step; a broken one keeps the working version.
    write(
        &rules.join("announce.rhai"),
        r#"notify("ops", `now at ${event.value}`);"#,
    );
    let report = next_report(&mut reports).await;
    assert_eq!(report.rules_reloaded, ["announce"], "{report:?}");
    write(&rules.join("announce.rhai"), "notify(");
    let report = next_report(&mut reports).await;
    assert_eq!(report.rule_errors.len(), 1, "{report:?}");
    let task = after_broken.waiting_on[0].task.clone().unwrap();
    app.complete_task(&task, Map::new()).await.unwrap();
    let told: Vec<String> = app
        .notifications_after(0, Some("ops"), 100)
        .unwrap()
        .into_iter()
        .map(|n| n.content.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(told, ["stage v1", "stage v2", "now at v2"]);
    drop(watcher);
    app.shutdown().await;
}
