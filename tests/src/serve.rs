//! A `flowbot serve` process for the HTTP end-to-end tests: started on a free loopback port
//! (`--addr 127.0.0.1:0`, the port read from its "listening on" line), its stderr collected for
//! log checks, killed when dropped; with small JSON helpers over HTTP and the WebSocket feed.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `flowbot serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The data folder it was started on.
    pub data: PathBuf,
    log: Arc<Mutex<String>>,
}

/// An HTTP answer: status, content type and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Server {
    /// Starts `flowbot serve --addr 127.0.0.1:0 --data DATA` with `extra` arguments (and
    /// `$FLOWBOT_MODEL` the [`crate::tiny_model`]) and waits until it listens (panics with its log when it exits first or takes over 60 s).
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Self::try_start(data, extra).unwrap_or_else(|log| panic!("serve did not start:\n{log}"))
    }

    /// [`Server::start`], or the log of a server that exited before listening.
    pub fn try_start(data: &Path, extra: &[&str]) -> Result<Server, String> {
        let mut child = Command::new(crate::flowbot_bin())
            .arg("serve")
            .args(["--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env_remove("FLOWBOT_ADMIN_TOKEN")
            .env_remove("FLOWBOT_CONFIG")
            .env("FLOWBOT_MODEL", crate::tiny_model())
            // The repository's extraction adapter (a test may copy its `flowbot.toml`) fits the
            // default model, not the tiny one.
            .env("FLOWBOT_EXTRACT_ADAPTER", "")
            .env("RUST_LOG", "info")
            .current_dir(data.parent().unwrap_or(data))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flowbot serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (found, listening) = std::sync::mpsc::channel::<Option<String>>();
        let collected = log.clone();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    if let Some(found) = found.take() {
                        let _ = found.send(Some(addr.trim().to_string()));
                    }
                }
                let mut log = collected.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            if let Some(found) = found.take() {
                let _ = found.send(None);
            }
        });
        match listening.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(base)) => Ok(Server {
                child,
                base,
                data: data.to_path_buf(),
                log,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let log = log.lock().unwrap().clone();
                Err(log)
            }
        }
    }

    /// A handle for client threads: the same requests against `base`, without owning the
    /// process.
    pub fn client(base: &str) -> Client {
        Client {
            base: base.to_string(),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The admin token it generated in its data folder.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin_token"))
            .expect("the generated admin token file")
            .trim()
            .to_string()
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.call("POST", path, Some(body.to_string()), None)
    }

    /// `POST path` with a JSON body, or `None` when the server cannot be reached.
    pub fn try_post(&self, path: &str, body: &Value) -> Option<Answer> {
        Self::client(&self.base).try_post(path, body)
    }

    /// `method path` with an optional raw JSON body and bearer token.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
    ) -> Answer {
        let mut request =
            ureq::request(method, &format!("{}{path}", self.base)).timeout(Duration::from_secs(30));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let outcome = match &body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(body),
            None => request.call(),
        };
        let response = match outcome {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            // A server that refuses a large body answers before it has read it all and closes:
            // the client's write fails, so the answer is read over a plain connection.
            Err(ureq::Error::Transport(_)) if body.as_ref().is_some_and(|b| b.len() > 1 << 20) => {
                return raw_call(
                    &self.base,
                    method,
                    path,
                    body.as_deref().unwrap_or_default(),
                );
            }
            Err(error) => panic!("{method} {path}: {error}"),
        };
        Answer {
            status: response.status(),
            content_type: response.content_type().to_string(),
            body: response.into_string().unwrap_or_default(),
        }
    }

    /// `method path` on the admin API with the generated token.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let token = self.admin_token();
        self.call(method, path, body.map(Value::to_string), Some(&token))
    }

    /// Waits until `check` holds, polling every 50 ms for up to `limit` (panics with `what`).
    pub fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut(&Server) -> bool) {
        let started = Instant::now();
        while !check(self) {
            assert!(
                started.elapsed() < limit,
                "timed out waiting for {what}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let code = self.child.wait().ok().and_then(|s| s.code());
        std::mem::forget(self);
        code
    }

    /// Kills it with SIGKILL (no shutdown at all) and waits for it to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    /// A WebSocket client of `/ws/notifications` with `query` (`receiver=..&after=..`).
    pub fn feed(&self, query: &str) -> Feed {
        let url = format!(
            "{}/ws/notifications?{query}",
            self.base.replacen("http://", "ws://", 1)
        );
        let (socket, _) = tungstenite::connect(url.as_str()).expect("the feed connects");
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("a read timeout");
        }
        Feed { socket }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests to a server from another thread.
pub struct Client {
    base: String,
}

impl Client {
    /// `POST path` with a JSON body, or `None` when the server cannot be reached.
    pub fn try_post(&self, path: &str, body: &Value) -> Option<Answer> {
        let response = ureq::post(&format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        let response = match response {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(_) => return None,
        };
        Some(Answer {
            status: response.status(),
            content_type: response.content_type().to_string(),
            body: response.into_string().ok()?,
        })
    }
}

/// A client of the notification feed.
pub struct Feed {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
}

impl Feed {
    /// Entries received until `quiet` passes with none, or the connection ends.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    entries.push(serde_json::from_str(text.as_str()).expect("a JSON entry"));
                    last = Instant::now();
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        entries
    }

    /// Every entry received during `period`.
    pub fn read_for(&mut self, period: Duration) -> Vec<Value> {
        let started = Instant::now();
        let mut entries = Vec::new();
        while started.elapsed() < period {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    entries.push(serde_json::from_str(text.as_str()).expect("a JSON entry"))
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        entries
    }

    /// Reads until at least `count` entries came or `limit` passed.
    pub fn take(&mut self, count: usize, limit: Duration) -> Vec<Value> {
        let started = Instant::now();
        let mut entries = Vec::new();
        while entries.len() < count && started.elapsed() < limit {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    entries.push(serde_json::from_str(text.as_str()).expect("a JSON entry"))
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        entries
    }
}

/// A fresh project folder: `workflows/` with `files` (name, content) and a copy of the shipped
/// `rules/`, and an empty `data/` path. Returns the temp dir (keep it alive) and the folders.
pub fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let workflows = dir.path().join("workflows");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&workflows).unwrap();
    for (name, content) in files {
        std::fs::write(workflows.join(name), content).unwrap();
    }
    copy_dir(&crate::repo_root().join("rules"), &rules);
    let data = dir.path().join("data");
    (dir, workflows, rules, data)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `method path` with a JSON `body` over a plain connection that keeps reading the answer when
/// the server stops reading the body (`Connection: close`; the answer's body as sent).
fn raw_call(base: &str, method: &str, path: &str, body: &str) -> Answer {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // Either write may fail once the server has answered and closed; the answer is still there.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP answer: {headers}"));
    let header = |name: &str| {
        headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body,
    }
}

/// The payload of a chunked HTTP body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}
