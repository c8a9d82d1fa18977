//! Batched generation on a tiny random-weight GGUF written by the test: a request decoded in a
//! batch gets the output it gets alone (greedy), a cancelled request leaves the others untouched,
//! and a full queue refuses at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};

use flowbot_model_runtime::batch::{BatchGenerator, BatchOptions};
use flowbot_model_runtime::constrain::ObjectSchema;
use flowbot_model_runtime::fast::FastOptions;
use flowbot_model_runtime::tiny_model::write_tiny_llama;
use flowbot_model_runtime::{
    load_generator, Backend, GenerateError, GenerateOptions, Generator, StopReason,
};
use serde_json::json;

fn tiny(dir: &tempfile::TempDir) -> Generator {
    let path = dir.path().join("tiny.gguf");
    if !path.exists() {
        write_tiny_llama(&path, 11).unwrap();
    }
    load_generator(&path, Backend::Fast(FastOptions::default()))
        .unwrap()
        .generator
}

/// One request of the mix: free text, JSON or a label.
#[derive(Clone)]
enum Request {
    Text {
        user: String,
        max_tokens: usize,
        stop: Vec<String>,
    },
    Json(String),
    Label(String),
}

const SYSTEM: &str = "You read order e-mails and answer briefly.";
const LABELS: [&str; 3] = ["order", "complaint", "other"];

fn schema() -> ObjectSchema {
    ObjectSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "maxLength": 12},
            "total": {"type": "number"}
        },
        "required": ["order_id", "total"]
    }))
    .unwrap()
}

fn requests() -> Vec<Request> {
    (0..6)
        .map(|i| match i % 3 {
            0 => Request::Text {
                user: format!("order SO-{i} for {} units", 3 * i + 1),
                max_tokens: 8 + 5 * i,
                stop: if i == 3 { vec!["e".into()] } else { Vec::new() },
            },
            1 => Request::Json(format!("the order SO-10{i} totals {i}.50")),
            _ => Request::Label(format!("mail number {i}: where is my parcel?")),
        })
        .collect()
}

fn options(max_tokens: usize, stop: Vec<String>) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        stop,
        ..Default::default()
    }
}

/// What a request answered: its text and tokens.
type Answer = (String, Vec<u32>, StopReason);

fn alone(generator: &mut Generator, request: &Request) -> Answer {
    let g = match request {
        Request::Text {
            user,
            max_tokens,
            stop,
        } => generator
            .generate(
                Some(SYSTEM),
                user,
                &options(*max_tokens, stop.clone()),
                None,
            )
            .unwrap(),
        Request::Json(user) => {
            generator
                .generate_json(Some(SYSTEM), user, &schema(), &options(40, Vec::new()))
                .unwrap()
                .1
        }
        Request::Label(user) => {
            let (label, g) = generator
                .classify(Some(SYSTEM), user, &LABELS, &options(8, Vec::new()))
                .unwrap();
            assert_eq!(g.text, label);
            g
        }
    };
    (g.text, g.tokens, g.stop_reason)
}

fn batched(generator: &BatchGenerator, request: &Request) -> Answer {
    let g = match request {
        Request::Text {
            user,
            max_tokens,
            stop,
        } => generator
            .generate(
                Some(SYSTEM),
                user,
                &options(*max_tokens, stop.clone()),
                None,
            )
            .unwrap(),
        Request::Json(user) => {
            generator
                .generate_json(Some(SYSTEM), user, &schema(), &options(40, Vec::new()))
                .unwrap()
                .1
        }
        Request::Label(user) => {
            let (label, g) = generator
                .classify(Some(SYSTEM), user, &LABELS, &options(8, Vec::new()))
                .unwrap();
            assert_eq!(g.text, label);
            g
        }
    };
    (g.text, g.tokens, g.stop_reason)
}

#[test]
fn each_request_of_a_batch_gets_the_output_it_gets_alone() {
    let dir = tempfile::tempdir().unwrap();
    let requests = requests();
    let mut single = tiny(&dir);
    let expected: Vec<Answer> = requests.iter().map(|r| alone(&mut single, r)).collect();
    assert!(expected.iter().any(|(_, tokens, _)| tokens.len() > 4));

    // Fewer slots than requests: some wait and join as others leave.
    let batch = BatchGenerator::new(
        tiny(&dir),
        BatchOptions {
            slots: 4,
            queue: 16,
        },
    );
    assert_eq!(batch.slots(), 4);
    let start = Barrier::new(requests.len());
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|request| {
                let (batch, start) = (&batch, &start);
                scope.spawn(move || {
                    start.wait();
                    batched(batch, request)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (got, want)) in answers.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "request {i}");
    }
    // A second round reuses the system prompt held in the slots.
    let again = batch
        .generate(Some(SYSTEM), "order SO-77", &options(4, Vec::new()), None)
        .unwrap();
    assert!(again.reused_prompt_tokens > 10, "{again:?}");
}

#[test]
fn a_cancelled_request_leaves_the_others_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<String> = (0..3).map(|i| format!("tell me about order {i}")).collect();
    let long = |cancel| GenerateOptions {
        max_tokens: 60,
        ignore_eos: true,
        cancel,
        ..Default::default()
    };
    let mut single = tiny(&dir);
    let expected: Vec<Vec<u32>> = users
        .iter()
        .map(|u| {
            single
                .generate(Some(SYSTEM), u, &long(None), None)
                .unwrap()
                .tokens
        })
        .collect();

    let batch = BatchGenerator::new(tiny(&dir), BatchOptions::default());
    let cancel = Arc::new(AtomicBool::new(false));
    let start = Barrier::new(users.len());
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let (batch, start, cancel) = (&batch, &start, Arc::clone(&cancel));
                scope.spawn(move || {
                    start.wait();
                    if i == 1 {
                        // The middle request cancels itself once it has streamed some text.
                        let flag = Arc::clone(&cancel);
                        let sink = Box::new(move |_: &str| flag.store(true, Ordering::Relaxed));
                        batch.generate(Some(SYSTEM), user, &long(Some(cancel)), Some(sink))
                    } else {
                        batch.generate(Some(SYSTEM), user, &long(None), None)
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let cancelled = results[1].as_ref().unwrap();
    assert_eq!(cancelled.stop_reason, StopReason::Cancelled);
    assert!(cancelled.tokens.len() < 60, "{cancelled:?}");
    assert_eq!(
        cancelled.tokens[..],
        expected[1][..cancelled.tokens.len()],
        "the cancelled request's tokens before the cancel"
    );
    for i in [0, 2] {
        let g = results[i].as_ref().unwrap();
        assert_eq!(g.stop_reason, StopReason::MaxTokens);
        assert_eq!(g.tokens, expected[i], "request {i}");
    }
}

#[test]
fn a_full_queue_refuses_at_once_and_the_queue_drains() {
    let dir = tempfile::tempdir().unwrap();
    let batch = BatchGenerator::new(tiny(&dir), BatchOptions { slots: 1, queue: 1 });
    let (started_tx, started) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    std::thread::scope(|scope| {
        let batch = &batch;
        // The first request holds the only slot: its sink waits for the test.
        let first = scope.spawn(move || {
            let mut once = Some((started_tx, released));
            let sink = Box::new(move |_: &str| {
                if let Some((started, released)) = once.take() {
                    started.send(()).unwrap();
                    released.lock().unwrap().recv().unwrap();
                }
            });
            let options = GenerateOptions {
                max_tokens: 6,
                ignore_eos: true,
                ..Default::default()
            };
            batch.generate(None, "first", &options, Some(sink))
        });
        started.recv().unwrap();
        // Two more requests: one waits in the queue, the other finds it full at once.
        let (done, results) = mpsc::channel();
        for user in ["second", "third"] {
            let done = done.clone();
            scope.spawn(move || {
                let result = batch.generate(None, user, &options(3, vec![]), None);
                done.send(result).unwrap();
            });
        }
        match results.recv().unwrap() {
            Err(GenerateError::QueueFull { capacity }) => assert_eq!(capacity, 1),
            other => panic!("expected a full queue, got {other:?}"),
        }
        release.send(()).unwrap();
        assert_eq!(first.join().unwrap().unwrap().tokens.len(), 6);
        assert!(results.recv().unwrap().is_ok());
    });
    let message = GenerateError::QueueFull { capacity: 1 }.to_string();
    assert!(message.contains("busy"), "{message}");
}
