//! LLM steps on the engine, answered by a fake generator that counts its calls.

use super::*;
use crate::clock::VirtualClock;
use crate::executor::{InstanceStatus, WaitType};
use crate::llm::{LlmError, TextGenerator};
use crate::llm::{LlmOutput, LlmRequest, LlmResponse};
use crate::model::RetryPolicy;
use crate::model::{Activity, LlmMode, LlmTask, NodeKind, TaskKind};

use crate::store::{Durability, SledStore};
use crate::testkit::*;
use serde_json::json;
use serde_json::{Map, Value};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers every mode from the request; fails the first `failures` calls.
#[derive(Default)]
struct FakeGenerator {
    calls: AtomicUsize,
    failures: usize,
}

impl TextGenerator for FakeGenerator {
    fn generate(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            return Err(LlmError::Backend(format!(
                "backend down (call {})",
                call + 1
            )));
        }
        let output = match request.mode {
            crate::llm::LlmMode::Generate => LlmOutput::Text(format!("echo: {}", request.prompt)),
            crate::llm::LlmMode::Extract => {
                LlmOutput::Json(json!({"city": "Lyon", "street": "1 rue A"}))
            }
            crate::llm::LlmMode::Classify => {
                LlmOutput::Label(request.labels.last().cloned().unwrap_or_default())
            }
        };
        Ok(LlmResponse {
            output,
            model_id: "fake-model".into(),
            model_sha256: Some("abc123".into()),
            prompt_tokens: request.prompt.len(),
            completion_tokens: 3,
            elapsed: Duration::from_millis(7),
            warnings: Vec::new(),
        })
    }
}

/// Blocks until its gate is dropped, then fails: a call cut short by a crash.
struct StuckGenerator {
    gate: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl TextGenerator for StuckGenerator {
    fn generate(&self, _: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let _ = self.gate.lock().unwrap().recv();
        Err(LlmError::Backend("interrupted".into()))
    }
}

fn llm(mode: LlmMode, prompt: &str, output: Option<&str>) -> LlmTask {
    LlmTask {
        mode,
        prompt: prompt.into(),
        system: None,
        output: output.map(str::to_string),
        schema: None,
        labels: Vec::new(),
        options: Map::new(),
    }
}

fn node(task: LlmTask) -> NodeKind {
    NodeKind::Task(Activity::new(TaskKind::Llm(task)))
}

fn vars(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn llm_records(history: &[HistoryRecord]) -> Vec<&HistoryEntry> {
    history
        .iter()
        .map(|r| &r.entry)
        .filter(|e| matches!(e, HistoryEntry::LlmCalled { .. }))
        .collect()
}

#[tokio::test]
async fn generate_extract_and_classify_outputs_land_in_variables_with_history_records() {
    let mut extract = llm(LlmMode::Extract, "address in {email}", None);
    extract.schema = Some(json!({"type": "object", "properties": {"city": {"type": "string"}}}));
    let mut classify = llm(LlmMode::Classify, "classify {email}", Some("category"));
    classify.labels = vec!["question".into(), "complaint".into()];
    let defs = Scope::at_line(1)
        .node("s", start())
        .node(
            "gen",
            node(llm(
                LlmMode::Generate,
                "order {order_id} for {customer.name}",
                Some("summary"),
            )),
        )
        .node("ext", node(extract))
        .node("cls", node(classify))
        .node("e", end())
        .chain(&["s", "gen", "ext", "cls", "e"])
        .definitions();
    let generator = Arc::new(FakeGenerator::default());
    let engine = Engine::builder()
        .text_generator(generator.clone())
        .build()
        .await
        .unwrap();
    engine.deploy(&defs, None).await.unwrap();
    let started = engine
        .start(
            "p",
            vars(json!({"order_id": "SO-1", "customer": {"name": "ACME"}, "email": "hello"})),
        )
        .await
        .unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(
        done.variables["summary"],
        json!("echo: order SO-1 for ACME")
    );
    assert_eq!(done.variables["city"], json!("Lyon"));
    assert_eq!(done.variables["street"], json!("1 rue A"));
    assert_eq!(done.variables["category"], json!("complaint"));
    assert_eq!(generator.calls.load(Ordering::SeqCst), 3);
    let history = engine.history(&started.id).unwrap();
    let records = llm_records(&history);
    assert_eq!(records.len(), 3, "{records:?}");
    let HistoryEntry::LlmCalled {
        node,
        prompt,
        output,
        model_id,
        model_sha256,
        prompt_tokens,
        completion_tokens,
        elapsed_ms,
        attempt,
        ..
    } = records[0]
    else {
        unreachable!("filtered on LlmCalled")
    };
    assert_eq!(node, "gen");
    assert_eq!(prompt, "order SO-1 for ACME");
    assert_eq!(output, &LlmOutput::Text("echo: order SO-1 for ACME".into()));
    assert_eq!(
        (model_id.as_str(), model_sha256.as_deref()),
        ("fake-model", Some("abc123"))
    );
    assert_eq!(
        (*prompt_tokens, *completion_tokens, *elapsed_ms, *attempt),
        (19, 3, 7, 1)
    );
}

#[tokio::test]
async fn without_a_generator_llm_steps_wait_for_an_outside_completion() {
    let engine = Engine::builder().build().await.unwrap();
    let defs = Scope::at_line(1)
        .node("s", start())
        .node("gen", node(llm(LlmMode::Generate, "hi", Some("text"))))
        .node("e", end())
        .chain(&["s", "gen", "e"])
        .definitions();
    engine.deploy(&defs, None).await.unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    let settled = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(settled.waiting_on.len(), 1);
    assert_eq!(settled.waiting_on[0].kind, WaitType::Llm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_output_is_reused_after_a_restart_and_an_unrecorded_call_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let defs = Scope::at_line(1)
        .node("s", start())
        .node(
            "gen",
            node(llm(
                LlmMode::Generate,
                "confirm {order_id}",
                Some("message"),
            )),
        )
        .node("review", user())
        .node("e", end())
        .chain(&["s", "gen", "review", "e"])
        .definitions();
    // First run: one instance gets its answer recorded, then the next call hangs as the process dies.
    let (answered, interrupted) = {
        let generator = Arc::new(FakeGenerator::default());
        let engine = Engine::builder()
            .store(open_again(&dir))
            .text_generator(generator.clone())
            .build()
            .await
            .unwrap();
        engine.deploy(&defs, None).await.unwrap();
        let answered = engine
            .start("p", vars(json!({"order_id": "A"})))
            .await
            .unwrap()
            .id;
        let settled = engine.wait_settled(&answered).await.unwrap();
        assert_eq!(settled.waiting_on[0].node, "review");
        assert_eq!(generator.calls.load(Ordering::SeqCst), 1);
        engine.shutdown().await;
        drop(engine);
        let (release, gate) = std::sync::mpsc::channel();
        let stuck = Arc::new(StuckGenerator {
            gate: Mutex::new(gate),
        });
        let engine = Engine::builder()
            .store(open_again(&dir))
            .text_generator(stuck)
            .build()
            .await
            .unwrap();
        let interrupted = engine
            .start("p", vars(json!({"order_id": "B"})))
            .await
            .unwrap()
            .id;
        engine.shutdown().await;
        drop(engine);
        drop(release);
        (answered, interrupted)
    };
    let generator = Arc::new(FakeGenerator::default());
    let engine = Engine::builder()
        .store(open_again(&dir))
        .text_generator(generator.clone())
        .build()
        .await
        .unwrap();
    let resumed = engine.wait_settled(&interrupted).await.unwrap();
    assert_eq!(resumed.variables["message"], json!("echo: confirm B"));
    let kept = engine.instance(&answered).unwrap();
    assert_eq!(kept.variables["message"], json!("echo: confirm A"));
    assert_eq!(kept.waiting_on[0].node, "review");
    // Only the call that never got recorded ran again.
    assert_eq!(generator.calls.load(Ordering::SeqCst), 1);
    assert_eq!(llm_records(&engine.history(&answered).unwrap()).len(), 1);
    assert_eq!(llm_records(&engine.history(&interrupted).unwrap()).len(), 1);
}

/// Opens the store of `dir` again, once the background tasks of the engine that held it have let
/// it go.
fn open_again(dir: &tempfile::TempDir) -> Arc<SledStore> {
    for _ in 0..200 {
        match SledStore::open(dir.path(), Durability::group()) {
            Ok(store) => return Arc::new(store),
            Err(crate::store::StoreError::Locked { .. }) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(other) => panic!("{other}"),
        }
    }
    panic!("the store stays locked")
}

#[tokio::test]
async fn generator_errors_are_retried_by_the_task_policy_then_become_an_incident() {
    let clock = VirtualClock::starting_at(0);
    let mut activity = Activity::new(TaskKind::Llm(llm(LlmMode::Generate, "hi", Some("text"))));
    activity.retry = Some(RetryPolicy {
        retries: 1,
        initial_delay_ms: 1_000,
        max_delay_ms: 1_000,
    });
    let defs = Scope::at_line(1)
        .node("s", start())
        .node("gen", NodeKind::Task(activity))
        .node("e", end())
        .chain(&["s", "gen", "e"])
        .definitions();
    let generator = Arc::new(FakeGenerator {
        failures: 10,
        ..FakeGenerator::default()
    });
    let engine = Engine::builder()
        .clock(Arc::new(clock))
        .text_generator(generator.clone())
        .build()
        .await
        .unwrap();
    engine.deploy(&defs, None).await.unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    let settled = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(generator.calls.load(Ordering::SeqCst), 2);
    assert_eq!(settled.engine_incidents.len(), 1, "{settled:?}");
    assert_eq!(settled.engine_incidents[0].attempts, 2);
    assert!(settled.engine_incidents[0]
        .message
        .contains("backend down (call 2)"));
    let failures = engine
        .history(&started.id)
        .unwrap()
        .iter()
        .filter(|r| matches!(r.entry, HistoryEntry::JobFailed { .. }))
        .count();
    assert_eq!(failures, 2);
}

#[tokio::test]
async fn a_prompt_naming_a_missing_variable_is_an_incident_without_a_call() {
    let defs = Scope::at_line(1)
        .node("s", start())
        .node(
            "gen",
            node(llm(LlmMode::Generate, "order {order_id}", Some("text"))),
        )
        .node("e", end())
        .chain(&["s", "gen", "e"])
        .definitions();
    let generator = Arc::new(FakeGenerator::default());
    let engine = Engine::builder()
        .text_generator(generator.clone())
        .build()
        .await
        .unwrap();
    engine.deploy(&defs, None).await.unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    let settled = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(generator.calls.load(Ordering::SeqCst), 0);
    assert!(
        settled.engine_incidents[0]
            .message
            .contains("`order_id` is not set"),
        "{settled:?}"
    );
}

/// Answers every extract request with output cut off by the token budget.
struct CutOffGenerator;

impl TextGenerator for CutOffGenerator {
    fn generate(&self, _: &LlmRequest) -> Result<LlmResponse, LlmError> {
        Err(LlmError::InvalidOutput {
            reason: "EOF while parsing a string".into(),
            output: r#"{"order_id": "SO-9", "customer": "AC"#.into(),
        })
    }
}

fn yaml_definitions(text: &str) -> crate::model::Definitions {
    let (defs, diagnostics) = crate::yaml::parse_yaml(std::path::Path::new("llm.yaml"), text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    defs.unwrap()
}

const EXTRACT_WITH_REVIEW: &str = r#"
process: p
nodes:
  s: { start: ~, next: extract }
  extract:
    llm:
      mode: extract
      prompt: "{email}"
      schema: { type: object, properties: { order_id: { type: string }, customer: { type: string } } }
    next: e
  unreadable:
    boundary: { attached_to: extract, error: LLM_INVALID_OUTPUT }
    next: review
  review: { user: ~, next: e }
  e: { end: ~ }
"#;

/// An extract step whose output does not parse throws `LLM_INVALID_OUTPUT` to its error
/// boundary, with the fields completed before the cut and the output in `llm_error`; without a
/// boundary it raises an incident, as any failed call.
#[tokio::test]
async fn invalid_output_takes_the_error_boundary_with_the_fields_read_or_raises_an_incident() {
    let engine = Engine::builder()
        .text_generator(Arc::new(CutOffGenerator))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&yaml_definitions(EXTRACT_WITH_REVIEW), None)
        .await
        .unwrap();
    let started = engine
        .start("p", vars(json!({"email": "order SO-9 from ACME"})))
        .await
        .unwrap();
    let settled = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(settled.status, InstanceStatus::Waiting);
    assert_eq!(settled.waiting_on.len(), 1, "{:?}", settled.waiting_on);
    assert_eq!(settled.waiting_on[0].node, "review");
    assert!(
        settled.engine_incidents.is_empty(),
        "{:?}",
        settled.engine_incidents
    );
    assert_eq!(settled.variables["order_id"], json!("SO-9"));
    assert!(!settled.variables.contains_key("customer"));
    assert_eq!(
        settled.variables["llm_error"],
        json!({"node": "extract", "reason": "EOF while parsing a string",
               "output": r#"{"order_id": "SO-9", "customer": "AC"#})
    );

    let without_boundary = EXTRACT_WITH_REVIEW
        .replace("  unreadable:\n    boundary: { attached_to: extract, error: LLM_INVALID_OUTPUT }\n    next: review\n  review: { user: ~, next: e }\n", "");
    let engine = Engine::builder()
        .text_generator(Arc::new(CutOffGenerator))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&yaml_definitions(&without_boundary), None)
        .await
        .unwrap();
    let started = engine
        .start("p", vars(json!({"email": "order SO-9 from ACME"})))
        .await
        .unwrap();
    let settled = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(settled.engine_incidents.len(), 1, "{settled:?}");
    assert!(
        settled.engine_incidents[0]
            .message
            .contains("EOF while parsing"),
        "{:?}",
        settled.engine_incidents[0]
    );
    assert!(!settled.variables.contains_key("llm_error"));
}
