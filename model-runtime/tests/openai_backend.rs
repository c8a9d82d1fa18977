//! The OpenAI-compatible client against a loopback server that answers canned completions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use flowbot_model_runtime::constrain::ObjectSchema;
use flowbot_model_runtime::openai::OpenAiClient;
use flowbot_model_runtime::SamplingOptions;
use serde_json::{json, Value};

/// Serves one request with `content` as the assistant message; sends the request body back.
fn serve_once(content: &str) -> (String, mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let content = content.to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let answer = json!({
            "model": "served-model",
            "choices": [{"message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 21, "completion_tokens": 7}
        })
        .to_string();
        let mut stream = stream;
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len()).unwrap();
        tx.send((request_line, serde_json::from_slice(&body).unwrap()))
            .unwrap();
    });
    (url, rx)
}

#[test]
fn generation_sends_messages_and_reads_usage() {
    let (url, rx) = serve_once("We received your order.");
    let client = OpenAiClient::new(&url, "smollm", None);
    let completion = client
        .generate(
            Some("Be polite."),
            "Confirm SO-1",
            64,
            &SamplingOptions::default(),
        )
        .unwrap();
    assert_eq!(completion.text, "We received your order.");
    assert_eq!(
        (completion.prompt_tokens, completion.completion_tokens),
        (21, 7)
    );
    assert_eq!(completion.model, "served-model");
    let (line, body) = rx.recv().unwrap();
    assert!(line.starts_with("POST /v1/chat/completions "), "{line}");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be polite."})
    );
    assert_eq!(body["messages"][1]["content"], "Confirm SO-1");
    assert_eq!(body["max_tokens"], 64);
}

#[test]
fn json_answers_are_validated_against_the_schema() {
    let schema_json = json!({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]});
    let schema = ObjectSchema::from_json_schema(&schema_json).unwrap();
    let (url, rx) = serve_once(r#"{"order_id": "SO-9"}"#);
    let client = OpenAiClient::new(&url, "m", None);
    let (value, _) = client
        .generate_json(
            None,
            "mail",
            &schema,
            &schema_json,
            64,
            &SamplingOptions::default(),
        )
        .unwrap();
    assert_eq!(value, json!({"order_id": "SO-9"}));
    let (_, body) = rx.recv().unwrap();
    assert_eq!(
        body["response_format"]["json_schema"]["schema"],
        schema_json
    );

    let (url, _rx) = serve_once(r#"{"order": 1}"#);
    let client = OpenAiClient::new(&url, "m", None);
    let err = client
        .generate_json(
            None,
            "mail",
            &schema,
            &schema_json,
            64,
            &SamplingOptions::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("order"), "{err}");
}

#[test]
fn classification_accepts_only_labels() {
    let labels = vec!["confirm".to_string(), "reject".to_string()];
    let (url, _rx) = serve_once(" Reject.");
    let (label, _) = OpenAiClient::new(&url, "m", None)
        .classify(None, "x", &labels, &SamplingOptions::default())
        .unwrap();
    assert_eq!(label, "reject");
    let (url, _rx) = serve_once("maybe");
    assert!(OpenAiClient::new(&url, "m", None)
        .classify(None, "x", &labels, &SamplingOptions::default())
        .is_err());
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let err = OpenAiClient::new(&url, "m", None)
        .generate(None, "x", 8, &SamplingOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
}
