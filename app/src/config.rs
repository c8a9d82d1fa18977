//! [`AppConfig`]: everything a Flowbot service is set up with, from defaults, a `flowbot.toml`,
//! `FLOWBOT_*` environment variables and command-line flags.
//!
//! Precedence, lowest first: built-in defaults < the config file < environment variables <
//! flags ([`ConfigOverrides`]). The config file is the one `--config` names (or
//! `$FLOWBOT_CONFIG`), else `flowbot.toml` in the working directory when there is one. Relative
//! paths in the file are relative to the file's folder; relative paths from the environment and
//! flags to the working directory. Unknown keys in the file are errors that name the key.
//! `docs/configuration.md` lists every setting.

use crate::error::AppError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file read when no config file is named and it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "flowbot.toml";

/// The whole configuration of an application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Where the service keeps its state (store, admin token) unless told otherwise.
    pub data_dir: PathBuf,
    /// The folder of process files (BPMN and YAML) deployed at start and watched.
    pub workflows: Option<PathBuf>,
    /// The folder of rule files (`.rhai`) loaded at start and watched.
    pub rules: Option<PathBuf>,
    /// The store.
    pub store: StoreConfig,
    /// `wall`, `virtual` (timers jump ahead when nothing else runs: tests) or `manual` (time
    /// moves only when told: demos, end-to-end tests of a served day).
    pub clock: ClockKind,
    /// The business time zone of the rules' calendar functions (`today()`), an IANA name.
    pub time_zone: Option<String>,
    /// The language model of `llm` steps.
    pub model: ModelConfig,
    /// How long the store keeps ended instances and notifications.
    pub retention: RetentionConfig,
    /// Intake of order batches.
    pub intake: IntakeConfig,
    /// The HTTP service.
    pub http: HttpConfig,
    /// Secrets.
    pub auth: AuthConfig,
    /// HTTP routes bound to actions (`[[routes]]`; see [`crate::bindings`]).
    pub routes: Vec<crate::bindings::RouteConfig>,
    /// URLs the server posts notification-log entries to (`[[webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// This node's name in a shared database (PostgreSQL store); default: host name and
    /// process id.
    pub node_id: Option<String>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".data"),
            workflows: None,
            rules: None,
            store: StoreConfig::default(),
            clock: ClockKind::Wall,
            time_zone: None,
            model: ModelConfig::default(),
            retention: RetentionConfig::default(),
            intake: IntakeConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            routes: Vec::new(),
            webhooks: Vec::new(),
            node_id: None,
        }
    }
}

/// Which store keeps the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `memory` (nothing survives the process), `sled` (a folder on disk) or `postgres` (a
    /// PostgreSQL database; setting `url` is enough).
    pub kind: StoreKind,
    /// The sled folder (default: `<data_dir>/store`).
    pub path: Option<PathBuf>,
    /// The PostgreSQL database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...]`.
    pub url: Option<String>,
    /// PostgreSQL over TLS: a PEM file of CA certificates to trust beside the public roots.
    pub tls_ca_file: Option<PathBuf>,
    /// PostgreSQL: connections for reads.
    pub pool_size: usize,
    /// `group` (many instances share a flush, or a PostgreSQL transaction; the default) or
    /// `step` (one flush, or one transaction, per step).
    pub durability: DurabilityKind,
    /// Group commit: how long the flusher collects commits, in milliseconds.
    pub group_window_ms: u64,
    /// Group commit: flush at once when this many commits are pending.
    pub group_max_batch: usize,
    /// PostgreSQL: share the database with other nodes that say so too (docs/cluster.md); off,
    /// the node has it to itself and a second node is refused.
    pub cluster: bool,
    /// With `cluster`: how long a node's hold on its shards lasts without renewal (renewed every
    /// third of it); a node that stops is replaced after this time.
    pub cluster_lease_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Sled,
            path: None,
            url: None,
            tls_ca_file: None,
            pool_size: 8,
            durability: DurabilityKind::Group,
            group_window_ms: flowbot_engine::store::Durability::GROUP_WINDOW.as_millis() as u64,
            group_max_batch: flowbot_engine::store::Durability::GROUP_MAX_BATCH,
            cluster: false,
            cluster_lease_ms: 10_000,
        }
    }
}

/// The store implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In memory.
    Memory,
    /// sled on disk.
    Sled,
    /// A PostgreSQL database (`store.url`).
    Postgres,
}

/// When a step is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityKind {
    /// One flush per step.
    Step,
    /// Steps of many instances share a flush.
    Group,
}

/// The clock instances run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockKind {
    /// Real time.
    Wall,
    /// Time jumps to the next due timer when nothing else runs.
    Virtual,
    /// Time stands still until it is moved (`POST /admin/v1/clock`): a day driven from outside.
    Manual,
}

/// The language model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A GGUF file or a Hugging Face model directory (default: the default model, fetched into
    /// the model cache).
    pub path: Option<PathBuf>,
    /// A GGUF file that answers the `extract` steps instead (e.g. the model tuned on the order
    /// case by `scripts/tune-extract.sh`); every other step keeps `path`. A model tuned for
    /// extraction writes worse free text, so it is kept to the steps it was tuned for.
    pub extract_path: Option<PathBuf>,
    /// A LoRA adapter file (`adapter.gguf` from `flowbot model finetune --method lora`) the
    /// fast CPU backend applies to `path` at run time, for every step.
    pub adapter: Option<PathBuf>,
    /// A LoRA adapter applied for the `extract` steps only, over `extract_path` when it is set,
    /// else over `path`: one base model answers the other steps unchanged, and the extraction
    /// runs it with the order case's adapter.
    pub extract_adapter: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Where downloaded models are kept (default: `$FLOWBOT_DATA_DIR/models`, else the user's
    /// cache folder, e.g. `~/.cache/flowbot/models`).
    pub cache_dir: Option<PathBuf>,
    /// An OpenAI-compatible server (`http://host:8000/v1`) to use instead of a local model.
    pub openai_url: Option<String>,
    /// The model name to ask that server for.
    pub openai_model: Option<String>,
    /// Requests the local model decodes together at most.
    pub batch_slots: usize,
    /// Requests that may wait for a slot; one more is refused as busy (an LLM step then retries
    /// with its backoff, an HTTP caller gets 503). A day's import reaches many LLM steps at once.
    pub queue: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: None,
            extract_path: None,
            adapter: None,
            extract_adapter: None,
            device: "cpu".into(),
            cache_dir: None,
            openai_url: None,
            openai_model: None,
            batch_slots: 8,
            queue: 1024,
        }
    }
}

/// Retention, in days (`0` keeps forever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days an ended instance (snapshot, history, completion records) is kept after it ended.
    pub ended_instances_days: u64,
    /// Days an entry of the notification log is kept.
    pub notifications_days: u64,
    /// Seconds between two sweeps.
    pub sweep_every_seconds: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            ended_instances_days: 30,
            notifications_days: 30,
            sweep_every_seconds: 600,
        }
    }
}

impl RetentionConfig {
    /// The engine's retention settings.
    pub fn to_engine(&self) -> flowbot_engine::runtime::Retention {
        let days = |d: u64| (d > 0).then(|| Duration::from_secs(d * 24 * 3600));
        flowbot_engine::runtime::Retention {
            ended_instances: days(self.ended_instances_days),
            notifications: days(self.notifications_days),
            sweep_every: Duration::from_secs(self.sweep_every_seconds.max(1)),
        }
    }
}

/// Intake of order batches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// The rule (a file in the rules folder) that gives each imported item its sort key; items
    /// start in that order. Without one, items start in the order they came.
    pub sort_rule: Option<String>,
    /// The process an imported item starts.
    pub process: Option<String>,
}

/// The HTTP service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to listen.
    pub addr: String,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Where the other nodes of a cluster reach this one (`http://HOST:PORT`; default: the
    /// address it listens on, which must then not be a wildcard such as `0.0.0.0`).
    pub advertise_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            max_body_bytes: 2 << 20,
            advertise_url: None,
        }
    }
}

/// One webhook: the server posts each notification-log entry (for `receiver`, or all) to `url`,
/// in number order, at least once, retrying with backoff while the URL fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The webhook's name: letters, digits, `-` and `_`. Its delivery cursor is stored under it,
    /// so renaming a webhook starts it afresh.
    pub name: String,
    /// `http://` or `https://` URL the entries are posted to.
    pub url: String,
    /// Only entries for this receiver (default: every receiver).
    #[serde(default)]
    pub receiver: Option<String>,
    /// Extra request headers (e.g. `Authorization`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// How long one delivery may take, in milliseconds.
    #[serde(default = "WebhookConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The longest wait between two tries of a failing delivery, in milliseconds.
    #[serde(default = "WebhookConfig::default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl WebhookConfig {
    fn default_timeout_ms() -> u64 {
        10_000
    }

    fn default_max_backoff_ms() -> u64 {
        60_000
    }

    /// Refuses a name that is empty or has other characters than letters, digits, `-` and `_`,
    /// a URL that is not `http://` or `https://`, and a header name or value HTTP cannot carry.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "webhook name `{}`: use 1 to 64 letters, digits, `-` or `_`",
                self.name
            ));
        }
        let scheme_ok = ["http://", "https://"].iter().any(|scheme| {
            self.url.len() > scheme.len() && self.url[..scheme.len()].eq_ignore_ascii_case(scheme)
        });
        if !scheme_ok {
            return Err(format!(
                "webhook `{}`: url `{}` must start with http:// or https://",
                self.name, self.url
            ));
        }
        for (header, value) in &self.headers {
            let header_ok = !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !header_ok || value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!(
                    "webhook `{}`: header `{header}` is not a valid HTTP header",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// Secrets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The bearer token of the admin API (default: generated on first start and stored in the
    /// data folder).
    pub admin_token: Option<String>,
}

/// What flags set; `None` leaves the setting as the file and environment made it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOverrides {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--data DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--workflows DIR`.
    pub workflows: Option<PathBuf>,
    /// `--rules DIR`.
    pub rules: Option<PathBuf>,
    /// `--store memory`, a PostgreSQL URL or a sled folder (`--store DIR`).
    pub store: Option<StoreChoice>,
    /// `--node-id NAME`.
    pub node_id: Option<String>,
    /// `--cluster`.
    pub cluster: Option<bool>,
    /// `--durability step|group`.
    pub durability: Option<DurabilityKind>,
    /// `--clock wall|virtual`.
    pub clock: Option<ClockKind>,
    /// `--model PATH`.
    pub model: Option<PathBuf>,
    /// `--adapter PATH`.
    pub adapter: Option<PathBuf>,
    /// `--device cpu|cuda[:N]`.
    pub device: Option<String>,
    /// `--addr HOST:PORT`.
    pub addr: Option<String>,
}

/// A store chosen on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// In memory.
    Memory,
    /// A sled folder.
    Sled(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl StoreChoice {
    /// `memory`, a `postgres://` (or `postgresql://`) URL, else a sled folder.
    pub fn parse(value: &str) -> Self {
        if value.eq_ignore_ascii_case("memory") {
            StoreChoice::Memory
        } else if flowbot_postgres::is_postgres_url(value) {
            StoreChoice::Postgres(value.trim().to_string())
        } else {
            StoreChoice::Sled(PathBuf::from(value))
        }
    }
}

impl AppConfig {
    /// The configuration from the config file (the one `overrides` names, `$FLOWBOT_CONFIG`, or
    /// `./flowbot.toml` when present), the environment and `overrides`.
    pub fn load(overrides: &ConfigOverrides) -> Result<Self, AppError> {
        Self::load_from(overrides, &|name| std::env::var(name).ok())
    }

    /// [`AppConfig::load`] with the environment given as a lookup (for tests).
    pub fn load_from(
        overrides: &ConfigOverrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, AppError> {
        let named = overrides
            .config_file
            .clone()
            .or_else(|| env("FLOWBOT_CONFIG").map(PathBuf::from));
        let file = match named {
            Some(path) => Some(path),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        let mut config = match &file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.apply(overrides);
        Ok(config)
    }

    /// The configuration a TOML file gives (over the defaults), paths resolved against the file's
    /// folder.
    pub fn from_file(path: &Path) -> Result<Self, AppError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AppError::config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let mut config: AppConfig = toml::from_str(&text).map_err(|e| {
            AppError::config(format!(
                "config file {}: {}",
                path.display(),
                e.to_string().trim()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        let mut names = std::collections::BTreeSet::new();
        for webhook in &config.webhooks {
            webhook
                .validate()
                .map_err(|e| AppError::config(format!("config file {}: {e}", path.display())))?;
            if !names.insert(webhook.name.as_str()) {
                return Err(AppError::config(format!(
                    "config file {}: two webhooks are named `{}`",
                    path.display(),
                    webhook.name
                )));
            }
        }
        if config.store.url.is_some() {
            match config.store.kind {
                StoreKind::Memory => {
                    return Err(AppError::config(format!(
                    "config file {}: store.url is set but store.kind is memory; remove one of them",
                    path.display()
                )))
                }
                StoreKind::Sled | StoreKind::Postgres => config.store.kind = StoreKind::Postgres,
            }
        }
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.data_dir);
        for path in [
            &mut self.workflows,
            &mut self.rules,
            &mut self.store.path,
            &mut self.store.tls_ca_file,
            &mut self.model.path,
            &mut self.model.extract_path,
            &mut self.model.adapter,
            &mut self.model.extract_adapter,
            &mut self.model.cache_dir,
        ]
        .into_iter()
        .flatten()
        {
            resolve(path);
        }
    }

    /// Applies the `FLOWBOT_*` variables (`docs/configuration.md` lists them).
    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), AppError> {
        let path = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = path("FLOWBOT_DATA_DIR") {
            self.data_dir = dir;
        }
        if let Some(dir) = path("FLOWBOT_WORKFLOWS") {
            self.workflows = Some(dir);
        }
        if let Some(dir) = path("FLOWBOT_RULES") {
            self.rules = Some(dir);
        }
        if let Some(store) = env("FLOWBOT_STORE").filter(|v| !v.is_empty()) {
            self.set_store(StoreChoice::parse(&store));
        }
        if let Some(node) = env("FLOWBOT_NODE_ID").filter(|v| !v.is_empty()) {
            self.node_id = Some(node);
        }
        if let Some(url) = env("FLOWBOT_ADVERTISE_URL").filter(|v| !v.is_empty()) {
            self.http.advertise_url = Some(url);
        }
        if let Some(value) = env("FLOWBOT_CLUSTER") {
            self.store.cluster = match value.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                other => {
                    return Err(AppError::config(format!(
                        "FLOWBOT_CLUSTER is `{other}`; say true or false"
                    )))
                }
            };
        }
        if let Some(value) = env("FLOWBOT_DURABILITY") {
            self.store.durability = parse_enum("FLOWBOT_DURABILITY", &value)?;
        }
        if let Some(value) = env("FLOWBOT_CLOCK") {
            self.clock = parse_enum("FLOWBOT_CLOCK", &value)?;
        }
        if let Some(zone) = env("FLOWBOT_TIME_ZONE") {
            self.time_zone = Some(zone);
        }
        if let Some(model) = path("FLOWBOT_MODEL") {
            self.model.path = Some(model);
        }
        if let Some(model) = path("FLOWBOT_EXTRACT_MODEL") {
            self.model.extract_path = Some(model);
        }
        // An adapter belongs to one base model: set to nothing, the variable turns off the
        // configured one (e.g. the order case's, when another model is chosen).
        let path_or_none =
            |name: &str| env(name).map(|v| Some(v).filter(|v| !v.is_empty()).map(PathBuf::from));
        if let Some(adapter) = path_or_none("FLOWBOT_ADAPTER") {
            self.model.adapter = adapter;
        }
        if let Some(adapter) = path_or_none("FLOWBOT_EXTRACT_ADAPTER") {
            self.model.extract_adapter = adapter;
        }
        if let Some(device) = env("FLOWBOT_DEVICE") {
            self.model.device = device;
        }
        if let Some(url) = env("FLOWBOT_OPENAI_URL") {
            self.model.openai_url = Some(url);
        }
        if let Some(name) = env("FLOWBOT_OPENAI_MODEL") {
            self.model.openai_model = Some(name);
        }
        if let Some(token) = env("FLOWBOT_ADMIN_TOKEN").filter(|v| !v.is_empty()) {
            self.auth.admin_token = Some(token);
        }
        if let Some(addr) = env("FLOWBOT_ADDR") {
            self.http.addr = addr;
        }
        Ok(())
    }

    /// Applies command-line flags.
    pub fn apply(&mut self, overrides: &ConfigOverrides) {
        if let Some(dir) = &overrides.data_dir {
            self.data_dir = dir.clone();
        }
        if let Some(dir) = &overrides.workflows {
            self.workflows = Some(dir.clone());
        }
        if let Some(dir) = &overrides.rules {
            self.rules = Some(dir.clone());
        }
        if let Some(store) = &overrides.store {
            self.set_store(store.clone());
        }
        if let Some(node) = &overrides.node_id {
            self.node_id = Some(node.clone());
        }
        if let Some(cluster) = overrides.cluster {
            self.store.cluster = cluster;
        }
        if let Some(durability) = overrides.durability {
            self.store.durability = durability;
        }
        if let Some(clock) = overrides.clock {
            self.clock = clock;
        }
        if let Some(model) = &overrides.model {
            self.model.path = Some(model.clone());
        }
        if let Some(adapter) = &overrides.adapter {
            self.model.adapter = Some(adapter.clone());
        }
        if let Some(device) = &overrides.device {
            self.model.device = device.clone();
        }
        if let Some(addr) = &overrides.addr {
            self.http.addr = addr.clone();
        }
    }

    fn set_store(&mut self, store: StoreChoice) {
        match store {
            StoreChoice::Memory => self.store.kind = StoreKind::Memory,
            StoreChoice::Sled(path) => {
                self.store.kind = StoreKind::Sled;
                self.store.path = Some(path);
                self.store.url = None;
            }
            StoreChoice::Postgres(url) => {
                self.store.kind = StoreKind::Postgres;
                self.store.url = Some(url);
            }
        }
    }

    /// The PostgreSQL store's options: `store.url` (an error when it is missing), the group
    /// commit settings (`durability = "step"`: one transaction per step), TLS, pool, node id.
    pub fn postgres_options(&self) -> Result<flowbot_postgres::PgOptions, AppError> {
        let url = self.store.url.clone().ok_or_else(|| {
            AppError::config(
                "store.kind is postgres but store.url is not set; set it to postgres://USER@HOST/DATABASE",
            )
        })?;
        let mut options = flowbot_postgres::PgOptions::new(url);
        options.ca_file = self.store.tls_ca_file.clone();
        options.pool_size = self.store.pool_size.max(1);
        if let Some(node) = &self.node_id {
            options.node_id = node.clone();
        }
        if self.store.cluster {
            if self.store.cluster_lease_ms < 300 {
                return Err(AppError::config(format!(
                    "store.cluster_lease_ms is {}; a lease shorter than 300 ms would expire between \
                     renewals: give it at least 300 (10000 is the default)",
                    self.store.cluster_lease_ms
                )));
            }
            options.cluster_lease = Some(Duration::from_millis(self.store.cluster_lease_ms));
        }
        match self.store.durability {
            DurabilityKind::Step => {
                options.window = Duration::ZERO;
                options.max_batch = 1;
            }
            DurabilityKind::Group => {
                options.window = Duration::from_millis(self.store.group_window_ms);
                options.max_batch = self.store.group_max_batch.max(1);
            }
        }
        Ok(options)
    }

    /// The sled folder: the configured one, else `<data_dir>/store`.
    pub fn store_path(&self) -> PathBuf {
        self.store
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("store"))
    }

    /// The durability of the sled store.
    pub fn durability(&self) -> flowbot_engine::store::Durability {
        match self.store.durability {
            DurabilityKind::Step => flowbot_engine::store::Durability::Step,
            DurabilityKind::Group => flowbot_engine::store::Durability::Group {
                window: Duration::from_millis(self.store.group_window_ms),
                max_batch: self.store.group_max_batch.max(1),
            },
        }
    }

    /// The rules folder: the configured one, else `rules/` beside the workflows folder (or in
    /// the working directory) when it exists.
    pub fn rules_folder(&self) -> Option<PathBuf> {
        if let Some(rules) = &self.rules {
            return Some(rules.clone());
        }
        let beside = match &self.workflows {
            Some(workflows) => workflows
                .parent()
                .map(|p| p.join("rules"))
                .unwrap_or_else(|| PathBuf::from("rules")),
            None => PathBuf::from("rules"),
        };
        let beside = if beside.as_os_str() == "rules" || beside.parent() == Some(Path::new("")) {
            PathBuf::from("rules")
        } else {
            beside
        };
        beside.is_dir().then_some(beside)
    }

    /// Where downloaded models are kept: the configured folder, else `$FLOWBOT_DATA_DIR/models`,
    /// else the user's cache folder; always absolute.
    pub fn model_cache_dir(&self) -> PathBuf {
        let dir = self
            .model
            .cache_dir
            .clone()
            .unwrap_or_else(flowbot_model_runtime::fetch::model_cache_dir);
        absolute(&dir)
    }
}

/// `memory`, else a sled folder.
fn parse_enum<T: for<'de> Deserialize<'de>>(name: &str, value: &str) -> Result<T, AppError> {
    T::deserialize(
        serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
            &value.to_ascii_lowercase(),
        ),
    )
    .map_err(|e| AppError::config(format!("{name}={value}: {e}")))
}

/// `path` made absolute against the working directory.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flowbot.toml");
        std::fs::write(
            &file,
            "workflows = \"flows\"\nclock = \"virtual\"\n[store]\ndurability = \"step\"\n[http]\naddr = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        let overrides = ConfigOverrides {
            config_file: Some(file.clone()),
            addr: Some("127.0.0.1:1".into()),
            ..ConfigOverrides::default()
        };
        let config = AppConfig::load_from(
            &overrides,
            &env(&[("FLOWBOT_CLOCK", "wall"), ("FLOWBOT_ADDR", "127.0.0.1:2")]),
        )
        .unwrap();
        assert_eq!(
            config.workflows,
            Some(dir.path().join("flows")),
            "file, relative to it"
        );
        assert_eq!(config.store.durability, DurabilityKind::Step, "file");
        assert_eq!(config.clock, ClockKind::Wall, "environment over file");
        assert_eq!(config.http.addr, "127.0.0.1:1", "flag over environment");
        assert_eq!(config.store.kind, StoreKind::Sled, "default");
        assert_eq!(config.store_path(), dir.path().join(".data").join("store"));
    }

    #[test]
    fn adapters_come_from_the_file_the_environment_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flowbot.toml");
        std::fs::write(
            &file,
            "[model]\nadapter = \"a.gguf\"\nextract_adapter = \"tuned/adapter.gguf\"\n",
        )
        .unwrap();
        let from_file = ConfigOverrides {
            config_file: Some(file.clone()),
            ..ConfigOverrides::default()
        };
        let config = AppConfig::load_from(&from_file, &env(&[])).unwrap();
        assert_eq!(config.model.adapter, Some(dir.path().join("a.gguf")));
        assert_eq!(
            config.model.extract_adapter,
            Some(dir.path().join("tuned/adapter.gguf")),
            "relative to the file"
        );
        let config = AppConfig::load_from(
            &from_file,
            &env(&[
                ("FLOWBOT_ADAPTER", "/srv/b.gguf"),
                ("FLOWBOT_EXTRACT_ADAPTER", "/srv/e.gguf"),
            ]),
        )
        .unwrap();
        assert_eq!(config.model.adapter, Some(PathBuf::from("/srv/b.gguf")));
        assert_eq!(
            config.model.extract_adapter,
            Some(PathBuf::from("/srv/e.gguf"))
        );
        let config = AppConfig::load_from(
            &from_file,
            &env(&[("FLOWBOT_ADAPTER", ""), ("FLOWBOT_EXTRACT_ADAPTER", "")]),
        )
        .unwrap();
        assert_eq!(
            (config.model.adapter, config.model.extract_adapter),
            (None, None),
            "an empty variable turns the file's adapters off"
        );
        let flag = ConfigOverrides {
            adapter: Some(PathBuf::from("/srv/c.gguf")),
            ..from_file
        };
        let config =
            AppConfig::load_from(&flag, &env(&[("FLOWBOT_ADAPTER", "/srv/b.gguf")])).unwrap();
        assert_eq!(config.model.adapter, Some(PathBuf::from("/srv/c.gguf")));
    }

    #[test]
    fn the_store_variable_takes_memory_or_a_folder() {
        let none = ConfigOverrides {
            config_file: Some(PathBuf::from("/nonexistent/flowbot.toml")),
            ..ConfigOverrides::default()
        };
        let error = AppConfig::load_from(&none, &env(&[])).unwrap_err();
        assert!(
            error.message().contains("/nonexistent/flowbot.toml"),
            "{error}"
        );
        let defaults = ConfigOverrides::default();
        let memory = AppConfig::load_from(&defaults, &env(&[("FLOWBOT_STORE", "MEMORY")])).unwrap();
        assert_eq!(memory.store.kind, StoreKind::Memory);
        let sled =
            AppConfig::load_from(&defaults, &env(&[("FLOWBOT_STORE", "/srv/state")])).unwrap();
        assert_eq!(sled.store_path(), PathBuf::from("/srv/state"));
        let url = "postgres://flow:pw@db.example/flowbot";
        let postgres = AppConfig::load_from(
            &defaults,
            &env(&[("FLOWBOT_STORE", url), ("FLOWBOT_NODE_ID", "node-7")]),
        )
        .unwrap();
        assert_eq!(postgres.store.kind, StoreKind::Postgres);
        let options = postgres.postgres_options().unwrap();
        assert_eq!(options.url, url);
        assert_eq!(options.node_id, "node-7");
        // A sled folder on the command line wins over the URL of the environment.
        let flag = ConfigOverrides {
            store: Some(StoreChoice::parse("/srv/state")),
            ..ConfigOverrides::default()
        };
        let sled = AppConfig::load_from(&flag, &env(&[("FLOWBOT_STORE", url)])).unwrap();
        assert_eq!(sled.store.kind, StoreKind::Sled);
        assert_eq!(sled.store.url, None);
    }

    #[test]
    fn store_url_in_the_file_selects_postgres_and_contradictions_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flowbot.toml");
        std::fs::write(
            &file,
            "[store]\nurl = \"postgres://flow@db/flowbot\"\ntls_ca_file = \"ca.pem\"\n",
        )
        .unwrap();
        let config = AppConfig::from_file(&file).unwrap();
        assert_eq!(config.store.kind, StoreKind::Postgres);
        let options = config.postgres_options().unwrap();
        assert_eq!(options.ca_file, Some(dir.path().join("ca.pem")));
        std::fs::write(
            &file,
            "[store]\nkind = \"memory\"\nurl = \"postgres://flow@db/flowbot\"\n",
        )
        .unwrap();
        let error = AppConfig::from_file(&file).unwrap_err();
        assert!(error.message().contains("store.url"), "{error}");
        std::fs::write(&file, "[store]\nkind = \"postgres\"\n").unwrap();
        let error = AppConfig::from_file(&file)
            .unwrap()
            .postgres_options()
            .unwrap_err();
        assert!(error.message().contains("store.url"), "{error}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "wokflows = \"flows\"\n").unwrap();
        let error = AppConfig::from_file(&file).unwrap_err();
        assert!(error.message().contains("wokflows"), "{error}");
        assert_eq!(error.kind(), crate::ErrorKind::Config);
        let bad = AppConfig::load_from(
            &ConfigOverrides::default(),
            &env(&[("FLOWBOT_DURABILITY", "sometimes")]),
        )
        .unwrap_err();
        assert!(
            bad.message().contains("FLOWBOT_DURABILITY=sometimes"),
            "{bad}"
        );
    }

    #[test]
    fn webhooks_are_read_with_defaults_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flowbot.toml");
        std::fs::write(
            &file,
            "[[webhooks]]\nname = \"warehouse\"\nurl = \"http://127.0.0.1:9000/hooks\"\n\
             receiver = \"warehouse\"\nheaders = { Authorization = \"Bearer x\" }\n",
        )
        .unwrap();
        let config = AppConfig::from_file(&file).unwrap();
        let hook = &config.webhooks[0];
        assert_eq!(hook.receiver.as_deref(), Some("warehouse"));
        assert_eq!(hook.headers["Authorization"], "Bearer x");
        assert_eq!((hook.timeout_ms, hook.max_backoff_ms), (10_000, 60_000));
        for (text, expected) in [
            ("name = \"a b\"\nurl = \"http://x/\"", "webhook name `a b`"),
            ("name = \"a\"\nurl = \"ftp://x/\"", "must start with http://"),
            (
                "name = \"a\"\nurl = \"http://x/\"\nheaders = { \"X Y\" = \"1\" }",
                "header `X Y`",
            ),
            (
                "name = \"a\"\nurl = \"http://x/\"\n[[webhooks]]\nname = \"a\"\nurl = \"http://y/\"",
                "two webhooks are named `a`",
            ),
        ] {
            std::fs::write(&file, format!("[[webhooks]]\n{text}\n")).unwrap();
            let error = AppConfig::from_file(&file).unwrap_err();
            assert!(error.message().contains(expected), "{text}: {error}");
            assert!(error.message().contains("flowbot.toml"), "{error}");
        }
    }
}
