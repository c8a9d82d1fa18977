//! The notification log on a sled store: a reader that stops after some entries and resumes
//! "after N" gets every entry exactly once, in order, across a restart of the service.

use flowbot_app::config::{StoreConfig, StoreKind};
use flowbot_app::view::NotificationView;
use flowbot_app::{App, AppConfig, InstanceFilter, InstanceStatus, StartRequest};
use serde_json::Map;
use std::collections::BTreeMap;
use std::path::Path;

const WORKFLOW: &str = r#"process: noted
rules:
  - { on: variable_change, variable: step, script: 'notify("ops", `${event.value}`)' }
nodes:
  begin: { start: ~, next: one }
  one: { script: let step = "one";, next: wait }
  wait: { user: ~, next: two }
  two: { script: let step = "two";, next: done }
  done: { end: ~ }
"#;

fn config(project: &Path) -> AppConfig {
    AppConfig {
        data_dir: project.join("data"),
        workflows: Some(project.join("workflows")),
        store: StoreConfig {
            kind: StoreKind::Sled,
            ..StoreConfig::default()
        },
        ..AppConfig::default()
    }
}

/// Reads what the log holds after `after`, waiting for the watermark while fewer than `wanted`.
async fn read(app: &App, after: u64, wanted: usize) -> Vec<NotificationView> {
    let mut watermark = app.engine().notification_watermark();
    loop {
        let read = app.notifications_after(after, Some("ops"), wanted).unwrap();
        if read.len() >= wanted {
            return read;
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), watermark.changed())
            .await
            .expect("entries become durable")
            .unwrap();
    }
}

async fn complete_one_task(app: &App, skip: usize) {
    let waiting = InstanceFilter {
        status: Some(InstanceStatus::Waiting),
        ..InstanceFilter::default()
    };
    let page = app.list_instances(&waiting, None, 10).unwrap();
    let task = page.items[skip].waiting_on[0].task.clone().unwrap();
    app.complete_task(&task, Map::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_reader_gets_each_notification_once_across_a_restart() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("workflows")).unwrap();
    std::fs::write(project.path().join("workflows/noted.yaml"), WORKFLOW).unwrap();
    let mut seen: Vec<NotificationView> = Vec::new();
    {
        let app = App::open(config(project.path())).await.unwrap();
        for _ in 0..3 {
            let request = StartRequest {
                process_id: "noted".into(),
                variables: Map::new(),
                business_key: None,
            };
            app.start(request).await.unwrap();
        }
        // The reader stops after two entries.
        seen.extend(read(&app, 0, 2).await.into_iter().take(2));
        complete_one_task(&app, 0).await;
        complete_one_task(&app, 0).await;
        app.shutdown().await;
    }
    let app = App::open(config(project.path())).await.unwrap();
    complete_one_task(&app, 0).await;
    let last = seen.last().unwrap().seq;
    seen.extend(read(&app, last, 4).await);
    assert!(
        app.notifications_after(seen.last().unwrap().seq, None, 10)
            .unwrap()
            .is_empty(),
        "nothing more"
    );
    let numbers: Vec<u64> = seen.iter().map(|n| n.seq).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    let mut per_instance: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in &seen {
        per_instance
            .entry(n.instance.as_str())
            .or_default()
            .push(n.content.as_str().unwrap());
    }
    assert_eq!(per_instance.len(), 3);
    for (instance, steps) in &per_instance {
        assert_eq!(
            steps,
            &["one", "two"],
            "{instance}: each entry exactly once"
        );
    }
    app.shutdown().await;
}
