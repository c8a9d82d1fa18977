//! The dashboard in a real browser: headless Chromium driven over the W3C WebDriver protocol
//! (`chromedriver`, spoken directly with an HTTP client) against `flowbot serve`. It opens the
//! page, starts an order from the start box, completes the order's review task with the task form,
//! and sees the notification that follows arrive in the live feed; then saves a screenshot
//! (`$FLOWBOT_SCREENSHOT`, default `target/dashboard.png`).
//!
//! Needs `chromium` and `chromium-driver` (Debian packages; `scripts/test-all.sh` installs them
//! when `CI` is set). Without them the test says so and checks nothing, except in CI, where that
//! is a failure.

use base64::Engine as _;
use flowbot_e2e::repo_root;
use flowbot_e2e::serve::{project, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

/// A WebDriver session; the driver process ends with it.
struct Browser {
    driver: Child,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1300"]}}}});
        let answer: Value = ureq::post(&format!("{base}/session"))
            .send_json(capabilities)
            .expect("a browser session")
            .into_json()
            .expect("JSON");
        let id = answer["value"]["sessionId"].as_str().expect("a session id");
        Browser {
            driver,
            session: format!("{base}/session/{id}"),
        }
    }

    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let outcome = match method {
            "GET" => ureq::get(&url).call(),
            _ => ureq::post(&url).send_json(body),
        };
        match outcome {
            Ok(response) => response.into_json::<Value>().expect("JSON")["value"].clone(),
            Err(ureq::Error::Status(_, response)) => {
                json!({"error": response.into_string().unwrap_or_default()})
            }
            Err(error) => panic!("{method} {path}: {error}"),
        }
    }

    /// Runs `script` in the page and returns its value.
    fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    /// Waits until `script` returns something truthy; returns it.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.run(script, json!([]));
            if !(value.is_null() || value == json!(false) || value.get("error").is_some()) {
                return value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.session).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_dashboard_starts_an_order_completes_its_task_and_shows_the_notification() {
    if !Path::new(CHROMIUM).exists() || !Path::new(DRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} or {DRIVER} is missing, and CI is set: the browser test would check nothing"
        );
        eprintln!("skipped: no {CHROMIUM} and {DRIVER} (Debian: apt-get install chromium chromium-driver)");
        return;
    }
    let order =
        std::fs::read_to_string(repo_root().join("workflows/order_processing.yaml")).unwrap();
    let review = std::fs::read_to_string(repo_root().join("workflows/order_review.dmn")).unwrap();
    let (_dir, workflows, rules, data) = project(&[
        ("order_processing.yaml", &order),
        ("order_review.dmn", &review),
    ]);
    let server = Server::start(
        &data,
        &[
            "--workflows",
            workflows.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--store",
            "memory",
            "--complete-jobs",
        ],
    );
    let browser = Browser::start();
    browser.command("POST", "/url", json!({"url": format!("{}/", server.base)}));
    browser.wait_for(
        "the live feed",
        "return document.querySelector('#feed-state').textContent === 'live';",
    );
    browser.wait_for(
        "the process list",
        "return document.querySelector('#start-process option[value=order_processing]') !== null;",
    );

    // Start an order from the start box.
    browser.run(
        "document.querySelector('#start-vars').value = arguments[0]; document.querySelector('#start-button').click();",
        json!([r#"{"order_id": "SO-7001", "customer": "ann", "amount": 20000}"#]),
    );
    let started = browser.wait_for(
        "the start result",
        "const text = document.querySelector('#start-result').textContent; return text.startsWith('started') && text;",
    );
    assert!(started.as_str().unwrap().contains("waiting"), "{started}");

    // Complete its review task with the task form.
    browser.wait_for(
        "the review task",
        "return document.querySelector('#tasks form[data-task] button') !== null;",
    );
    browser.run(
        "document.querySelector('#tasks form[data-task] button').click();",
        json!([]),
    );

    // The status change after the review reaches the feed.
    let seen = browser.wait_for(
        "the notification in the feed",
        "return [...document.querySelectorAll('#feed li')].map(li => li.textContent).find(t => t.includes('SO-7001 is now awaiting shipment'));",
    );
    assert!(seen.as_str().unwrap().contains("ann"), "{seen}");
    let tasks = server.get("/api/v1/tasks?node=review_order").json();
    assert_eq!(
        tasks.as_array().unwrap().len(),
        0,
        "the review was completed: {tasks}"
    );

    // The instance's path on the graph.
    browser.run(
        "document.querySelector('#instances tbody tr button').click();",
        json!([]),
    );
    browser.wait_for(
        "the highlighted path",
        "return document.querySelectorAll('#graph g.visited').length > 3;",
    );

    let png = browser.command("GET", "/screenshot", json!(null));
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().expect("a screenshot"))
        .expect("base64");
    let out = std::env::var_os("FLOWBOT_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"))
                .join("dashboard.png")
        });
    std::fs::write(&out, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
}
