//! A webhook receiver for the tests of `[[webhooks]]`: a plain HTTP/1.1 listener on loopback that
//! records what it was posted.

use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// One post a webhook receiver got: the `Flowbot-Webhook` and `Flowbot-Seq` headers and the body.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The webhook's name.
    pub webhook: String,
    /// The notification's number.
    pub seq: u64,
    /// The notification as posted.
    pub body: Value,
}

/// A webhook receiver on a free loopback port that answers 500 to its first `failures` posts and
/// 200 after them, recording each post it answered 200.
pub fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorded = received.clone();
    std::thread::spawn(move || {
        let mut answered = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            // A post cut short (the server killed while it was sending) ends before its blank
            // line: it is no delivery and gets no answer.
            let mut complete = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line == "\r\n" {
                    complete = true;
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
            if !complete {
                continue;
            }
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let mut body = vec![0; header("content-length").parse().unwrap_or(0)];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            answered += 1;
            let status = if answered <= failures {
                "500 Internal Server Error"
            } else {
                recorded.lock().unwrap().push(Delivery {
                    webhook: header("flowbot-webhook"),
                    seq: header("flowbot-seq").parse().unwrap(),
                    body: serde_json::from_slice(&body).unwrap(),
                });
                "200 OK"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, received)
}

/// The numbers `webhook` received, first receipt of each, in the order they came.
pub fn first_receipts(deliveries: &[Delivery], webhook: &str) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    deliveries
        .iter()
        .filter(|d| d.webhook == webhook && seen.insert(d.seq))
        .map(|d| d.seq)
        .collect()
}
