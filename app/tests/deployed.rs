//! `App::deployed` finds one version of a process (the latest by default) with its compiled
//! graph; unknown processes and versions are clear not-found errors. `App::model_needed` is true
//! only while a deployed process has an LLM step.

use flowbot_app::config::StoreKind;
use flowbot_app::{App, AppConfig, ErrorKind};

fn process(stage: &str) -> String {
    format!(
        "process: staged\nnodes:\n  begin: {{ start: ~, next: mark }}\n  mark: {{ script: \"let stage = \\\"{stage}\\\";\", next: done }}\n  done: {{ end: ~ }}\n"
    )
}

#[tokio::test]
async fn versions_are_found_by_number_and_unknown_ones_are_not_found() {
    let project = tempfile::tempdir().unwrap();
    let workflows = project.path().join("workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    let config = AppConfig {
        workflows: Some(workflows),
        store: flowbot_app::config::StoreConfig {
            kind: StoreKind::Memory,
            ..Default::default()
        },
        ..AppConfig::default()
    };
    let app = App::open(config).await.unwrap();
    app.deploy_source("staged.yaml", process("one").as_bytes())
        .await
        .unwrap();
    app.deploy_source("staged.yaml", process("two").as_bytes())
        .await
        .unwrap();

    let latest = app.deployed("staged", None).unwrap();
    assert_eq!(latest.version, 2);
    let first = app.deployed("staged", Some(1)).unwrap();
    assert_eq!(first.version, 1);
    assert_ne!(first.content_hash, latest.content_hash);
    assert!(first.process.node_index("mark").is_some());

    let missing = app.deployed("staged", Some(3)).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(missing.message().contains("no version 3"), "{missing}");
    let unknown = app.deployed("nothing", None).unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NotFound);
    assert!(!app.model_needed());
}
