//! [`App`]: one engine, built once from an [`AppConfig`], and the services that the CLI commands
//! and the HTTP routes call. Each service takes typed input, returns a view or an [`AppError`].
//!
//! Invariants:
//! - `open` either returns a service that is fully up (store open, rules loaded, the workflows
//!   folder deployed, the model loaded when a deployed process has an LLM step) or an error, never
//!   a half-started service.
//! - A deployment is checked first (front end, compiler, rule attachments); a file with errors
//!   changes nothing. The same content is the same version (the engine compares content hashes).
//! - Files written by [`App::deploy_source`] stay inside the configured folders.

use crate::clock::ManualClock;
use crate::cluster::Membership;
use crate::config::{AppConfig, ClockKind, StoreKind};
use crate::error::{AppError, ErrorKind};
use crate::llm::ModelSlot;
use crate::models;
use crate::project::{self, CheckReport, SourceKind};
use crate::view::{
    DefinitionView, DeploymentView, InstanceView, NotificationView, OpenIncidentView, TaskView,
};
use flowbot_engine::clock::{Clock, VirtualClock, WallClock};
use flowbot_engine::diagnostics::{has_errors, Diagnostic};
use flowbot_engine::dmn::Decisions;
use flowbot_engine::graph::Catalog;
use flowbot_engine::model::{Definitions, RuleSource, Span};
use flowbot_engine::rules::{RuleEngine, RulesConfig, SharedRuleHooks, StdlibConfig};
use flowbot_engine::runtime::{
    parse_wait_id, AutoComplete, Correlation, Deployed, EffectSink, Engine, EngineOptions, Handler,
    HistoryRecord, InstanceFilter, Page, StartRequest, TaskFilter,
};
use flowbot_engine::script::ScriptRuntime;
use flowbot_engine::shard::ShardSet;
use flowbot_engine::store::{MemoryStore, SledStore, Store};
use flowbot_model_runtime::fetch::FetchEvent;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Hears the steps of fetching the default model (for a progress bar).
pub type FetchProgress = Arc<Mutex<dyn FnMut(FetchEvent) + Send>>;

/// What an application is built with beside its configuration.
#[must_use = "call `open` to start the application"]
pub struct AppBuilder {
    config: AppConfig,
    handlers: HashMap<String, Handler>,
    fallback: Option<Handler>,
    effect_sink: Option<EffectSink>,
    auto_complete: Option<AutoComplete>,
    schedule_timer_starts: bool,
    deploy_workflows: bool,
    progress: Option<FetchProgress>,
    store: Option<Arc<dyn Store>>,
    decisions: Option<Arc<Decisions>>,
}

impl AppBuilder {
    /// Registers a service-task handler under `name`.
    pub fn handler(mut self, name: impl Into<String>, handler: Handler) -> Self {
        self.handlers.insert(name.into(), handler);
        self
    }

    /// The handler of jobs whose handler is not registered.
    pub fn fallback_handler(mut self, handler: Handler) -> Self {
        self.fallback = Some(handler);
        self
    }

    /// Where rule effects go once durable (besides the notification log).
    pub fn effect_sink(mut self, sink: EffectSink) -> Self {
        self.effect_sink = Some(sink);
        self
    }

    /// Complete user tasks and handler-less jobs at once (`flowbot run --auto-complete`).
    pub fn auto_complete(mut self, auto: AutoComplete) -> Self {
        self.auto_complete = Some(auto);
        self
    }

    /// Whether timer start events start instances on schedule (default: yes; a command that
    /// starts the one instance it shows turns it off).
    pub fn schedule_timer_starts(mut self, on: bool) -> Self {
        self.schedule_timer_starts = on;
        self
    }

    /// Whether `open` deploys the configured workflows folder (default: yes).
    pub fn deploy_workflows(mut self, on: bool) -> Self {
        self.deploy_workflows = on;
        self
    }

    /// Hears the steps of fetching the default model.
    pub fn fetch_progress(mut self, progress: FetchProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Runs on this store instead of the configured one.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The decisions business-rule tasks evaluate, instead of those of the workflows folder.
    pub fn decisions(mut self, decisions: Arc<Decisions>) -> Self {
        self.decisions = Some(decisions);
        self
    }

    /// Opens the store, loads the rules, builds the engine (which reloads unfinished
    /// instances), deploys the workflows folder and loads the model when a deployed process has
    /// an LLM step.
    pub async fn open(self) -> Result<App, AppError> {
        let config = self.config;
        let (store, shared): (Arc<dyn Store>, Option<Arc<flowbot_postgres::PgStore>>) =
            match self.store {
                Some(store) => (store, None),
                None => open_store(&config).await?,
            };
        let manual_clock =
            (config.clock == ClockKind::Manual).then(|| Arc::new(ManualClock::starting_now()));
        let clock: Arc<dyn Clock> = match (config.clock, &manual_clock) {
            (ClockKind::Manual, Some(manual)) => manual.clone(),
            (ClockKind::Virtual, _) => Arc::new(VirtualClock::starting_now()),
            _ => Arc::new(WallClock),
        };
        let rules = Arc::new(load_rules(&config, clock.clone())?);
        let decisions = match (self.decisions, &config.workflows) {
            (Some(decisions), _) => decisions,
            (None, Some(folder)) => {
                let (decisions, diagnostics) = project::decisions_in(folder);
                if has_errors(&diagnostics) {
                    return Err(AppError::diagnostics(
                        format!("the decision files in {} do not check", folder.display()),
                        diagnostics,
                    ));
                }
                decisions
            }
            (None, None) => Arc::default(),
        };
        let model = Arc::new(ModelSlot::default());
        let options = EngineOptions {
            auto_complete: self.auto_complete,
            schedule_timer_starts: self.schedule_timer_starts,
            retention: config.retention.to_engine(),
            // A node that shares its database serves the shards its membership rounds take.
            shards: if shared.is_some() {
                ShardSet::NONE
            } else {
                ShardSet::ALL
            },
            ..EngineOptions::default()
        };
        let mut builder = Engine::builder()
            .store(store)
            .clock(clock)
            .options(options)
            .rules(Arc::new(SharedRuleHooks::new(rules.clone())))
            .decisions(decisions.clone())
            .text_generator(model.clone());
        let orders_engine = Arc::new(Mutex::new(None));
        if !self.handlers.contains_key(OPEN_ORDERS_HANDLER) {
            let process = config
                .intake
                .process
                .clone()
                .unwrap_or_else(|| DEFAULT_ORDER_PROCESS.to_string());
            builder = builder.handler(
                OPEN_ORDERS_HANDLER,
                open_orders_handler(orders_engine.clone(), process),
            );
        }
        for (name, handler) in self.handlers {
            builder = builder.handler(name, handler);
        }
        if let Some(fallback) = self.fallback {
            builder = builder.fallback_handler(fallback);
        }
        if let Some(sink) = self.effect_sink {
            builder = builder.effect_sink(sink);
        }
        let engine = builder.build().await?;
        let cluster_store = shared.clone();
        let membership = match shared {
            Some(store) => {
                let lease = Duration::from_millis(config.store.cluster_lease_ms);
                match Membership::start(engine.clone(), store, lease).await {
                    Ok(membership) => Some(membership),
                    Err(error) => {
                        engine.shutdown().await;
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        *orders_engine.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine.clone());
        let app = App {
            engine,
            membership: Mutex::new(membership),
            cluster_store,
            manual_clock,
            orders_engine,
            config,
            rules,
            catalog: Catalog::with_decisions(decisions),
            model,
            progress: self.progress,
        };
        if self.deploy_workflows {
            if let Some(folder) = app.config.workflows.clone() {
                let report = app.deploy_folder(&folder).await;
                if !report.rejected.is_empty() {
                    app.shutdown().await;
                    return Err(AppError::diagnostics(
                        format!(
                            "{} of the workflows in {} do not check",
                            report.rejected.len(),
                            folder.display()
                        ),
                        report
                            .rejected
                            .iter()
                            .flat_map(|r| r.diagnostics.clone())
                            .collect(),
                    ));
                }
            }
        }
        // Instances of earlier versions may need the model as much as new ones.
        if let Err(error) = app.load_model_if_needed().await {
            app.shutdown().await;
            return Err(error);
        }
        Ok(app)
    }
}

/// An application: the engine and the services on it.
pub struct App {
    engine: Engine,
    /// The membership rounds of a node that shares its database (`store.cluster`).
    membership: Mutex<Option<Membership>>,
    /// The shared database of such a node (who serves which shard, where nodes are reached).
    cluster_store: Option<Arc<flowbot_postgres::PgStore>>,
    /// The clock when it is moved by hand (`clock = "manual"`).
    manual_clock: Option<Arc<ManualClock>>,
    /// The engine as the built-in `open_orders` handler sees it (emptied at shutdown).
    orders_engine: Arc<Mutex<Option<Engine>>>,
    config: AppConfig,
    rules: Arc<RuleEngine>,
    /// The decisions processes are checked against (the engine compiles with the same).
    catalog: Catalog,
    model: Arc<ModelSlot>,
    progress: Option<FetchProgress>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What happened to one file of a deployment or reload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileOutcome {
    /// The file.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub file: PathBuf,
    /// The versions its processes are now at (new or unchanged).
    pub deployed: Vec<DeployedProcess>,
    /// Why it was refused (empty when it was deployed): `severity`, `file`, `span`
    /// (`line`, `col`), `message`, `id`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub diagnostics: Vec<Diagnostic>,
}

/// One process of a deployed file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployedProcess {
    /// The process id.
    pub process: String,
    /// Its version now.
    pub version: u32,
    /// `true` when this deployment made the version; `false` when the same content was there.
    pub created: bool,
}

/// What a reload (or the deployment of a folder) did, file by file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReloadReport {
    /// Files whose processes are deployed (new versions or unchanged).
    pub deployed: Vec<FileOutcome>,
    /// Files refused, with their diagnostics; the versions deployed before keep serving.
    pub rejected: Vec<FileOutcome>,
    /// Rule files that changed and were reloaded.
    pub rules_reloaded: Vec<String>,
    /// Rule files that do not compile (their previous versions keep serving).
    pub rule_errors: Vec<String>,
}

impl App {
    /// A builder over `config`.
    pub fn builder(config: AppConfig) -> AppBuilder {
        AppBuilder {
            config,
            handlers: HashMap::new(),
            fallback: None,
            effect_sink: None,
            auto_complete: None,
            schedule_timer_starts: true,
            deploy_workflows: true,
            progress: None,
            store: None,
            decisions: None,
        }
    }

    /// Opens an application on `config` with nothing else registered.
    pub async fn open(config: AppConfig) -> Result<App, AppError> {
        Self::builder(config).open().await
    }

    /// The engine, for what the services do not cover.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Records where the other nodes of a cluster reach this one (`http://HOST:PORT`); nothing
    /// for a node alone on its store.
    pub async fn advertise(&self, url: &str) -> Result<(), AppError> {
        let Some(store) = self.cluster_store.clone() else {
            return Ok(());
        };
        let url = url.to_string();
        tokio::task::spawn_blocking(move || store.advertise(&url))
            .await
            .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))?
            .map_err(AppError::from)
    }

    /// The address of the node of the cluster that serves `instance` now, when another one does
    /// and advertised an address (`None` otherwise: alone on its store, nobody holds the shard
    /// at the moment, or this node does).
    pub async fn serving_node(&self, instance: &str) -> Result<Option<String>, AppError> {
        let Some(store) = self.cluster_store.clone() else {
            return Ok(None);
        };
        let shard = flowbot_engine::shard::shard_of(instance);
        if self.engine.owned_shards().contains(shard) {
            return Ok(None);
        }
        let owner = tokio::task::spawn_blocking(move || store.shard_owner(shard))
            .await
            .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))??;
        Ok(owner.and_then(|(_, url)| url))
    }

    /// The configuration the application runs with.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// The rules.
    pub fn rules(&self) -> &Arc<RuleEngine> {
        &self.rules
    }

    /// The script runtime processes compile with (the rules' standard library included).
    pub fn scripts(&self) -> Arc<ScriptRuntime> {
        self.rules.script_runtime()
    }

    /// The rules folder, when there is one.
    pub fn rules_folder(&self) -> Option<&Path> {
        Some(self.rules.root()).filter(|root| !root.as_os_str().is_empty())
    }

    /// Checks files and folders as `flowbot check` does, with this application's rules.
    pub fn check(&self, paths: &[PathBuf]) -> CheckReport {
        project::check_paths(paths, self.rules_folder(), &self.scripts())
    }

    /// Checks and deploys every runnable process of a process file.
    pub async fn deploy_file(&self, path: &Path) -> Result<FileOutcome, AppError> {
        let (defs, diagnostics) = project::read_process_file(path);
        self.deploy_definitions(path, defs, diagnostics).await
    }

    /// Checks and deploys process source `content` read from `path`.
    pub async fn deploy_bytes(&self, path: &Path, content: &[u8]) -> Result<FileOutcome, AppError> {
        let (defs, diagnostics) = project::read_process(path, content);
        self.deploy_definitions(path, defs, diagnostics).await
    }

    async fn deploy_definitions(
        &self,
        path: &Path,
        defs: Option<Definitions>,
        parsed: Vec<Diagnostic>,
    ) -> Result<FileOutcome, AppError> {
        let (mut defs, diagnostics) = self.checked(path, defs, parsed)?;
        if let Some(zone) = &self.config.time_zone {
            for process in &mut defs.processes {
                zone_timers(&mut process.nodes, zone);
            }
        }
        let mut deployed = Vec::new();
        for process in project::runnable_processes(&defs) {
            let deployment = self.engine.deploy(&defs, process).await?;
            deployed.push(DeployedProcess {
                process: deployment.deployed.process_id.clone(),
                version: deployment.deployed.version,
                created: deployment.created,
            });
        }
        self.load_model_if_needed().await?;
        Ok(FileOutcome {
            file: path.to_path_buf(),
            deployed,
            diagnostics: diagnostics.into_iter().filter(|d| !d.is_error()).collect(),
        })
    }

    /// Deploys every process file of `folder` (recursively): files that check are deployed,
    /// the others are listed with their diagnostics.
    pub async fn deploy_folder(&self, folder: &Path) -> ReloadReport {
        let (files, problems) = project::collect(&[folder.to_path_buf()]);
        let mut report = ReloadReport::default();
        if !problems.is_empty() {
            report.rejected.push(FileOutcome {
                file: folder.to_path_buf(),
                deployed: Vec::new(),
                diagnostics: problems,
            });
        }
        for (file, kind) in files {
            // Decision files are read when the application opens (see `AppBuilder::decisions`).
            if !matches!(kind, Some(SourceKind::Bpmn | SourceKind::Yaml))
                || project::is_decision_file(&file)
            {
                continue;
            }
            match self.deploy_file(&file).await {
                Ok(outcome) => report.deployed.push(outcome),
                Err(error) => report.rejected.push(FileOutcome {
                    file,
                    deployed: Vec::new(),
                    diagnostics: error_diagnostics(&error, folder),
                }),
            }
        }
        report
    }

    /// Re-reads the rules folder and the workflows folder: changed rules are reloaded (a broken
    /// one keeps its previous version), changed process files are deployed as new versions
    /// (running instances stay on theirs), broken ones are refused and listed.
    pub async fn reload(&self) -> Result<ReloadReport, AppError> {
        let mut rules_reloaded = Vec::new();
        let mut rule_errors = Vec::new();
        if self.rules_folder().is_some() {
            let rules = self.rules.clone();
            let reloaded = tokio::task::spawn_blocking(move || rules.reload())
                .await
                .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))?
                .map_err(|e| AppError::config(e.to_string()))?;
            rules_reloaded = reloaded.compiled;
            rules_reloaded.extend(reloaded.removed);
            rule_errors = self.rules.errors().iter().map(|e| e.to_string()).collect();
        }
        let mut report = match self.config.workflows.clone() {
            Some(folder) => self.deploy_folder(&folder).await,
            None => ReloadReport::default(),
        };
        report.rules_reloaded = rules_reloaded;
        report.rule_errors = rule_errors;
        Ok(report)
    }

    /// Checks `content` as the file `name` and, when it checks, writes it into the workflows
    /// folder (process files) or the rules folder (`.rhai`) and deploys or reloads it. The name
    /// must be a plain file name (no folders, no `..`, letters, digits, `.`, `_` and `-`).
    pub async fn deploy_source(&self, name: &str, content: &[u8]) -> Result<FileOutcome, AppError> {
        let kind = SourceKind::of(Path::new(name));
        check_file_name(name)?;
        match kind {
            Some(SourceKind::Bpmn | SourceKind::Yaml) => {
                let folder = self.config.workflows.clone().ok_or_else(|| {
                    AppError::config("no workflows folder is configured to deploy into")
                })?;
                let path = folder.join(name);
                let checked = self.check_bytes(&path, content)?;
                write_atomically(&path, content)?;
                let mut outcome = self.deploy_file(&path).await?;
                outcome.diagnostics = checked;
                Ok(outcome)
            }
            Some(SourceKind::Rules) => {
                let folder = self.rules_folder().map(Path::to_path_buf).ok_or_else(|| {
                    AppError::config("no rules folder is configured to deploy into")
                })?;
                let path = folder.join(name);
                let text = std::str::from_utf8(content)
                    .map_err(|_| AppError::invalid_input(format!("{name} is not UTF-8 text")))?;
                let diagnostics = flowbot_engine::rules::check_rule_source(&path, text);
                if has_errors(&diagnostics) {
                    return Err(AppError::diagnostics(
                        format!("{name} does not compile"),
                        diagnostics,
                    ));
                }
                write_atomically(&path, content)?;
                let rules = self.rules.clone();
                tokio::task::spawn_blocking(move || rules.reload())
                    .await
                    .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))?
                    .map_err(|e| AppError::config(e.to_string()))?;
                Ok(FileOutcome {
                    file: path,
                    deployed: Vec::new(),
                    diagnostics,
                })
            }
            Some(SourceKind::Dmn) => Err(AppError::invalid_input(format!(
                "{name}: decision files are read when the service starts; put it in the \
                 workflows folder and restart"
            ))),
            None => Err(AppError::invalid_input(format!(
                "{name}: expected a .bpmn, .bpmn20.xml, .xml, .yaml, .yml or .rhai file"
            ))),
        }
    }

    /// The diagnostics of process source `content` as `path`; an error when it does not check.
    fn check_bytes(&self, path: &Path, content: &[u8]) -> Result<Vec<Diagnostic>, AppError> {
        let (defs, parsed) = project::read_process(path, content);
        self.checked(path, defs, parsed)
            .map(|(_, diagnostics)| diagnostics)
    }

    /// What the front end read from `path` (`defs`, with its diagnostics `parsed`), checked as a
    /// deployment is: rule attachments, the compiler against this application's decisions, and
    /// file rules without a rules folder. An error listing the diagnostics when any is an error.
    fn checked(
        &self,
        path: &Path,
        defs: Option<Definitions>,
        parsed: Vec<Diagnostic>,
    ) -> Result<(Definitions, Vec<Diagnostic>), AppError> {
        let Some(defs) = defs else {
            return Err(AppError::diagnostics(
                format!("{} does not check", path.display()),
                parsed,
            ));
        };
        let mut diagnostics = project::check_definitions(
            &defs,
            parsed,
            self.rules_folder(),
            &self.scripts(),
            &self.catalog,
        );
        if self.rules_folder().is_none() {
            diagnostics.extend(file_rules_without_folder(&defs));
        }
        if has_errors(&diagnostics) {
            return Err(AppError::diagnostics(
                format!("{} does not check", path.display()),
                diagnostics,
            ));
        }
        Ok((defs, diagnostics))
    }

    /// Every process with its versions, by id.
    pub fn definitions(&self) -> Vec<DefinitionView> {
        let mut by_process: Vec<DefinitionView> = Vec::new();
        for deployed in self.engine.deployments() {
            let view = DeploymentView::from(deployed.as_ref());
            match by_process.last_mut() {
                Some(last) if last.id == view.process => {
                    last.latest = view.version;
                    last.name = view.name.clone();
                    last.versions.push(view);
                }
                _ => by_process.push(DefinitionView {
                    id: view.process.clone(),
                    name: view.name.clone(),
                    latest: view.version,
                    versions: vec![view],
                }),
            }
        }
        by_process
    }

    /// One process with its versions.
    pub fn definition(&self, id: &str) -> Result<DefinitionView, AppError> {
        self.definitions()
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| AppError::not_found(format!("no process `{id}` is deployed")))
    }

    /// One deployed version of a process (the latest when `version` is `None`), with its
    /// compiled graph.
    pub fn deployed(&self, id: &str, version: Option<u32>) -> Result<Arc<Deployed>, AppError> {
        let versions = self.engine.deployments();
        let mut of_process = versions.iter().filter(|d| d.process_id == id).peekable();
        if of_process.peek().is_none() {
            return Err(AppError::not_found(format!(
                "no process `{id}` is deployed"
            )));
        }
        let found = match version {
            None => of_process.max_by_key(|d| d.version),
            Some(wanted) => of_process.find(|d| d.version == wanted),
        };
        found.cloned().ok_or_else(|| {
            AppError::not_found(format!(
                "process `{id}` has no version {}",
                version.unwrap_or_default()
            ))
        })
    }

    /// Every deployed version, oldest first per process.
    pub fn deployments(&self) -> Vec<DeploymentView> {
        self.engine
            .deployments()
            .iter()
            .map(|d| DeploymentView::from(d.as_ref()))
            .collect()
    }

    /// Starts an instance; returns it once its first turn is durable.
    pub async fn start(&self, request: StartRequest) -> Result<InstanceView, AppError> {
        Ok(self.engine.start_with(request).await?.into())
    }

    /// Completes the task `task_id` (`instance:activation`) with `variables`. Completing a
    /// review of a model's output records the correction ([`crate::corrections`]).
    pub async fn complete_task(
        &self,
        task_id: &str,
        variables: Map<String, Value>,
    ) -> Result<InstanceView, AppError> {
        let (instance, activation) = parse_id(task_id, "task")?;
        self.known_wait(instance, activation, "task")?;
        let review = self.pending_review(instance, activation);
        let submitted = review.as_ref().map(|_| variables.clone());
        let view = self
            .engine
            .complete_task(instance, activation, variables)
            .await?
            .into();
        if let (Some(review), Some(submitted)) = (review, submitted) {
            self.record_correction(review, &submitted);
        }
        Ok(view)
    }

    /// Sets variables of a running instance (see [`Engine::set_variables`]); a `guard_variable`
    /// rule that refuses them makes it a conflict with the rule's message.
    pub async fn set_variables(
        &self,
        instance: &str,
        variables: Map<String, Value>,
    ) -> Result<InstanceView, AppError> {
        Ok(self.engine.set_variables(instance, variables).await?.into())
    }

    /// Delivers a message (see [`Engine::correlate_message`]).
    pub async fn correlate(
        &self,
        name: &str,
        correlation_key: Option<&str>,
        variables: Map<String, Value>,
    ) -> Result<Correlation, AppError> {
        Ok(self
            .engine
            .correlate_message(name, correlation_key, variables)
            .await?)
    }

    /// Broadcasts a signal; returns how many waits and start events it reached.
    pub async fn signal(
        &self,
        name: &str,
        variables: Map<String, Value>,
    ) -> Result<usize, AppError> {
        Ok(self.engine.broadcast_signal(name, variables).await?)
    }

    /// Cancels a running instance.
    pub async fn cancel(&self, instance: &str) -> Result<InstanceView, AppError> {
        Ok(self.engine.cancel(instance).await?.into())
    }

    /// Runs the job of an incident (`instance:activation`) again.
    pub async fn retry_incident(&self, incident_id: &str) -> Result<InstanceView, AppError> {
        let (instance, activation) = parse_id(incident_id, "incident")?;
        self.engine.retry_incident(instance, activation).await?;
        self.instance(instance)
    }

    /// Resolves an incident by completing its wait with `variables` an operator supplies.
    pub async fn resolve_incident(
        &self,
        incident_id: &str,
        variables: Map<String, Value>,
    ) -> Result<InstanceView, AppError> {
        let (instance, activation) = parse_id(incident_id, "incident")?;
        Ok(self
            .engine
            .resolve_incident(instance, activation, variables)
            .await?
            .into())
    }

    /// An instance, running or ended.
    pub fn instance(&self, id: &str) -> Result<InstanceView, AppError> {
        Ok(self.engine.instance(id)?.into())
    }

    /// Waits until the instance ended or cannot move without outside help, and returns it.
    pub async fn settle(&self, id: &str) -> Result<InstanceView, AppError> {
        Ok(self.engine.wait_settled(id).await?.into())
    }

    /// A page of instances.
    pub fn list_instances(
        &self,
        filter: &InstanceFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InstanceView>, AppError> {
        let page = self.engine.list_instances(filter, cursor, limit)?;
        Ok(Page {
            items: page.items.iter().map(InstanceView::from).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// The open tasks.
    pub fn open_tasks(&self, filter: &TaskFilter) -> Vec<TaskView> {
        self.engine
            .open_tasks(filter)
            .into_iter()
            .map(TaskView::from)
            .collect()
    }

    /// The open incidents.
    pub fn incidents(&self) -> Vec<OpenIncidentView> {
        self.engine
            .incidents()
            .into_iter()
            .map(OpenIncidentView::from)
            .collect()
    }

    /// An instance's history (audit log).
    pub fn history(&self, id: &str) -> Result<Vec<HistoryRecord>, AppError> {
        Ok(self.engine.history(id)?)
    }

    /// Notification-log entries after `after`, for `receiver` or all (durable ones only).
    pub fn notifications_after(
        &self,
        after: u64,
        receiver: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NotificationView>, AppError> {
        Ok(self
            .engine
            .notifications_after(after, receiver, limit)?
            .into_iter()
            .map(NotificationView::from)
            .collect())
    }

    /// Whether a model is loaded for LLM steps.
    pub fn model_loaded(&self) -> bool {
        self.model.is_filled()
    }

    /// The store's flush counters (flushes, commits, seconds), when it commits in groups.
    pub fn flush_stats(&self) -> Option<flowbot_engine::store::FlushStats> {
        self.engine.flush_stats()
    }

    /// Whether a deployed process has an LLM step (so the service needs a model to be ready).
    pub fn model_needed(&self) -> bool {
        self.engine
            .deployments()
            .iter()
            .any(|d| d.process.has_llm_steps())
    }

    /// Stops background work and waits for it (committed turns stay committed).
    pub async fn shutdown(&self) {
        self.engine.shutdown().await;
        let membership = self
            .membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(membership) = membership {
            membership.leave().await;
        }
        self.orders_engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// The engine's time, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.engine.clock().now_ms()
    }

    /// Moves a manual clock (`clock = "manual"`) to `to_ms`; the timers due by then fire.
    /// Returns the time now. Moving it backwards is refused, as is moving another clock.
    pub fn advance_clock(&self, to_ms: u64) -> Result<u64, AppError> {
        let Some(clock) = &self.manual_clock else {
            return Err(AppError::new(
                ErrorKind::Conflict,
                format!(
                    "the clock is `{}`; only a manual clock (clock = \"manual\", FLOWBOT_CLOCK=manual) is moved by hand",
                    match self.config.clock {
                        ClockKind::Wall => "wall",
                        ClockKind::Virtual => "virtual",
                        ClockKind::Manual => "manual",
                    }
                ),
            ));
        };
        let now = clock.now_ms();
        if to_ms < now {
            return Err(AppError::new(
                ErrorKind::Conflict,
                format!("the clock never goes back: it is at {now} ms, asked for {to_ms} ms"),
            ));
        }
        Ok(clock.advance_to(to_ms))
    }

    /// Loads the model when a deployed process has an LLM step and none is loaded yet.
    async fn load_model_if_needed(&self) -> Result<(), AppError> {
        if self.model.is_filled() || !self.model_needed() {
            return Ok(());
        }
        let config = self.config.clone();
        let progress = self.progress.clone();
        let generator = tokio::task::spawn_blocking(move || {
            let mut hear = |event: FetchEvent| {
                if let Some(progress) = &progress {
                    (progress.lock().unwrap_or_else(|e| e.into_inner()))(event);
                }
            };
            models::load_generator(&config, &mut hear)
        })
        .await
        .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))??;
        self.model.fill(generator);
        Ok(())
    }

    /// `Ok` when `instance` exists and has an open wait `activation` (a clear 404 otherwise).
    fn known_wait(&self, instance: &str, activation: u64, what: &str) -> Result<(), AppError> {
        let info = self.engine.instance(instance)?;
        if info.waiting_on.iter().any(|w| w.activation == activation) {
            Ok(())
        } else {
            Err(AppError::not_found(format!(
                "instance `{instance}` has no open {what} {activation}"
            )))
        }
    }
}

/// The handler name of the built-in list of open orders (rule 7's daily settlement asks it).
pub const OPEN_ORDERS_HANDLER: &str = "open_orders";

/// The process whose running instances are the open orders, unless `[intake] process` names
/// another.
pub const DEFAULT_ORDER_PROCESS: &str = "order_processing";

/// The built-in `open_orders` handler: `{"open_orders": [{order_id, amount, currency,
/// created_at, paid, payment_status}, ...]}` for every running instance of `process` (an
/// application may register its own under the same name instead).
fn open_orders_handler(engine: Arc<Mutex<Option<Engine>>>, process: String) -> Handler {
    flowbot_engine::runtime::handler(move |_job| {
        let engine = engine.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let process = process.clone();
        async move {
            let engine = engine.ok_or_else(|| {
                flowbot_engine::runtime::HandlerError::new("the application is shutting down")
            })?;
            let filter = InstanceFilter {
                status: None,
                process_id: Some(process),
                business_key: None,
            };
            let mut orders = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = engine
                    .list_instances(&filter, cursor.as_deref(), 1000)
                    .map_err(|e| flowbot_engine::runtime::HandlerError::new(e.to_string()))?;
                for info in page.items.iter().filter(|i| i.ended_ms.is_none()) {
                    let view = InstanceView::from(info);
                    let field =
                        |name: &str| info.variables.get(name).cloned().unwrap_or(Value::Null);
                    let created_at = match field("created_at") {
                        Value::Null => Value::String(view.started.clone()),
                        value => value,
                    };
                    orders.push(serde_json::json!({
                        "order_id": field("order_id"),
                        "amount": field("amount"),
                        "currency": field("currency"),
                        "created_at": created_at,
                        "paid": field("paid"),
                        "payment_status": field("payment_status"),
                        "instance": info.id,
                    }));
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Ok(Map::from_iter([(
                "open_orders".to_string(),
                Value::Array(orders),
            )]))
        }
    })
}

/// Opens the configured store (off the async threads: sled reads its files).
/// The configured store, and the same again as a PostgreSQL store when it is shared with other
/// nodes (`store.cluster`).
async fn open_store(
    config: &AppConfig,
) -> Result<(Arc<dyn Store>, Option<Arc<flowbot_postgres::PgStore>>), AppError> {
    match config.store.kind {
        StoreKind::Memory => Ok((Arc::new(MemoryStore::new()), None)),
        StoreKind::Sled => {
            let path = config.store_path();
            let durability = config.durability();
            let store = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&path).map_err(|e| {
                    AppError::config(format!(
                        "cannot create the store folder {}: {e}",
                        path.display()
                    ))
                })?;
                SledStore::open(&path, durability).map_err(AppError::from)
            })
            .await
            .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))??;
            Ok((Arc::new(store), None))
        }
        StoreKind::Postgres => {
            let options = config.postgres_options()?;
            let store = tokio::task::spawn_blocking(move || {
                flowbot_postgres::PgStore::open(options)
                    .map_err(|e| AppError::config(e.to_string()))
            })
            .await
            .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))??;
            let store = Arc::new(store);
            let shared = config.store.cluster.then(|| store.clone());
            Ok((store, shared))
        }
    }
}

/// Applies the PostgreSQL schema migrations of the configured store (`flowbot db migrate`);
/// a configuration error for other stores, which have none.
pub fn migrate_store(config: &AppConfig) -> Result<flowbot_postgres::MigrationReport, AppError> {
    match config.store.kind {
        StoreKind::Postgres => flowbot_postgres::PgStore::migrate(&config.postgres_options()?)
            .map_err(|e| AppError::config(e.to_string())),
        StoreKind::Memory | StoreKind::Sled => Err(AppError::config(
            "only a PostgreSQL store has schema migrations: name one with --store postgres://... or store.url",
        )),
    }
}

/// The rules of the configured folder (or none: inline rules still run), with the engine's clock
/// and the business time zone.
fn load_rules(config: &AppConfig, clock: Arc<dyn Clock>) -> Result<RuleEngine, AppError> {
    let mut stdlib = StdlibConfig::default().with_engine_clock(clock);
    if let Some(zone) = &config.time_zone {
        stdlib.time_zone = zone.parse().map_err(|_| {
            AppError::config(format!("time_zone `{zone}` is not an IANA time zone"))
        })?;
    }
    let rules_config = RulesConfig {
        stdlib,
        ..RulesConfig::default()
    };
    match config.rules_folder() {
        Some(folder) => {
            let rules = RuleEngine::load(&folder, &rules_config)
                .map_err(|e| AppError::config(format!("rules folder {}: {e}", folder.display())))?;
            let errors = rules.errors();
            if !errors.is_empty() {
                let listed: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                return Err(AppError::new(
                    ErrorKind::Invalid,
                    format!(
                        "{} rule file(s) in {} do not compile:\n{}",
                        errors.len(),
                        folder.display(),
                        listed.join("\n")
                    ),
                ));
            }
            Ok(rules)
        }
        None => Ok(RuleEngine::without_folder(&rules_config)),
    }
}

/// Errors for rules that name a file when there is no rules folder to find it in.
fn file_rules_without_folder(defs: &Definitions) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let mut visit = |attachment: &flowbot_engine::model::RuleAttachment, span: Span| {
        if let RuleSource::File(file) = &attachment.rule {
            found.push(Diagnostic::error(
                &defs.source,
                span,
                format!(
                    "rule file `{file}` is named, but no rules folder is configured (--rules DIR)"
                ),
            ));
        }
    };
    for process in &defs.processes {
        for attachment in &process.rules {
            visit(attachment, attachment.span);
        }
        visit_nodes(&process.nodes, &mut visit);
    }
    found
}

/// Gives the cron timers and dates without a time zone the business time zone (`time_zone` of
/// the configuration), so that "23:59 every day" is the business day's end; durations and ISO
/// 8601 cycles count exact time and keep none.
fn zone_timers(nodes: &mut [flowbot_engine::model::Node], zone: &str) {
    use flowbot_engine::model::{EventTrigger, NodeKind, TimerKind};
    fn zone_trigger(trigger: &mut EventTrigger, zone: &str) {
        match trigger {
            EventTrigger::Timer(timer) => {
                let zoned = match timer.kind {
                    TimerKind::Date => true,
                    TimerKind::Cycle => !timer.expression.source.trim_start().starts_with('R'),
                    TimerKind::Duration => false,
                };
                if zoned && timer.time_zone.is_none() {
                    timer.time_zone = Some(zone.to_string());
                }
            }
            EventTrigger::Multiple(triggers) | EventTrigger::ParallelMultiple(triggers) => {
                for trigger in triggers {
                    zone_trigger(trigger, zone);
                }
            }
            _ => {}
        }
    }
    for node in nodes {
        match &mut node.kind {
            NodeKind::StartEvent {
                trigger: Some(trigger),
                ..
            }
            | NodeKind::IntermediateCatchEvent { trigger, .. }
            | NodeKind::BoundaryEvent { trigger, .. } => zone_trigger(trigger, zone),
            NodeKind::SubProcess(sub) => zone_timers(&mut sub.body.nodes, zone),
            _ => {}
        }
    }
}

fn visit_nodes(
    nodes: &[flowbot_engine::model::Node],
    visit: &mut dyn FnMut(&flowbot_engine::model::RuleAttachment, Span),
) {
    for node in nodes {
        for attachment in &node.rules {
            visit(attachment, attachment.span);
        }
        if let flowbot_engine::model::NodeKind::SubProcess(sub) = &node.kind {
            visit_nodes(&sub.body.nodes, visit);
        }
    }
}

/// The diagnostics an error carries, or one naming the error at `file`.
fn error_diagnostics(error: &AppError, file: &Path) -> Vec<Diagnostic> {
    if error.diagnostic_list().is_empty() {
        vec![Diagnostic::error(file, Span::new(1, 1), error.message())]
    } else {
        error.diagnostic_list().to_vec()
    }
}

/// `instance:activation`.
fn parse_id<'a>(id: &'a str, what: &str) -> Result<(&'a str, u64), AppError> {
    parse_wait_id(id).ok_or_else(|| {
        AppError::invalid_input(format!(
            "`{id}` is not a {what} id (expected INSTANCE:ACTIVATION, e.g. order_processing-7:3)"
        ))
    })
}

/// A plain file name: no folders, no `..`, no hidden files, letters, digits, `.`, `_`, `-`.
pub fn check_file_name(name: &str) -> Result<(), AppError> {
    let plain = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..");
    if plain {
        Ok(())
    } else {
        Err(AppError::invalid_input(format!(
            "`{name}` is not a plain file name (letters, digits, `.`, `_` and `-`; no folders, no `..`)"
        )))
    }
}

/// Writes `content` to `path` through a temporary file and a rename, so a reader never sees half
/// a file.
fn write_atomically(path: &Path, content: &[u8]) -> Result<(), AppError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let io = |e: std::io::Error| AppError::config(format!("cannot write {}: {e}", path.display()));
    std::fs::create_dir_all(folder).map_err(io)?;
    let temporary = folder.join(format!(
        ".{}.uploading",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&temporary, content).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}
