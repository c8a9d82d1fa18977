//! Route bindings: HTTP routes declared in configuration (`[[routes]]` in `flowbot.toml`), each
//! bound to one action of the application (start an instance, deliver a message, complete the
//! open task at a node, set variables) and an answer built from the instance.
//!
//! Invariants:
//! - A binding is checked twice before the service answers anything: its shape when the
//!   configuration is read ([`Bindings::compile`]: method, path, the action's keys, that every
//!   request field it names can be found), and against the deployed processes once the
//!   application is open ([`Bindings::check_deployed`]: the process and node exist). Every error
//!   names the binding (`routes[2] (POST /import)`) and the key.
//! - A call changes nothing when it is refused: fields are resolved, the instance is found and
//!   the guards are asked before anything is committed.

use crate::app::App;
use crate::error::{AppError, ErrorKind};
use crate::view::InstanceView;
use flowbot_engine::executor::{ExecutionHooks, HookContext};
use flowbot_engine::rules::RuleHooks;
use flowbot_engine::runtime::{InstanceFilter, StartRequest, TaskFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One `[[routes]]` entry as written in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `METHOD /path/{param}`, e.g. `POST /sendShipmentInfo/{order_id}`.
    pub route: String,
    /// What the route does.
    pub action: ActionKind,
    /// The process: the one started (`start`), or the one whose instance is addressed.
    pub process: Option<String>,
    /// The request field (path parameter or body key) holding the business key: the new
    /// instance's (`start`), or the one that finds the instance (`complete`, `set`).
    pub business_key: Option<String>,
    /// The message name (`message`).
    pub message: Option<String>,
    /// The request field holding the message's correlation key (`message`).
    pub correlation_key: Option<String>,
    /// The node whose open task is completed (`complete`).
    pub node: Option<String>,
    /// The instance variables the call passes: variable name → a request field (a string), or
    /// a constant (`{ value = ... }`, or any non-string value).
    #[serde(default)]
    pub variables: BTreeMap<String, VariableSource>,
    /// Whether to answer at once (`none`, the default) or once the instance ended or waits for
    /// someone (`settled`).
    #[serde(default)]
    pub wait: WaitFor,
    /// The answer's JSON object: key → template over the instance variables (`"{confirmation}"`
    /// is the variable's value; `"Order {order_id}"` text with it filled in; `{instance.id}`,
    /// `{instance.status}`, `{instance.business_key}` name the instance). Without it, the
    /// instance view (for `message`, the correlation outcome).
    pub answer: Option<BTreeMap<String, String>>,
    /// The HTTP status of a success (default 200).
    pub status: Option<u16>,
}

/// The actions a route can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Start an instance of `process`.
    Start,
    /// Deliver message `message`, correlated by `correlation_key`.
    Message,
    /// Complete the open task at `node` of the instance with the business key.
    Complete,
    /// Set variables of the instance with the business key.
    Set,
}

/// When a route answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitFor {
    /// As soon as the call's turn is durable.
    #[default]
    None,
    /// Once the instance ended or cannot move without outside help (LLM steps and jobs done).
    Settled,
}

/// Where a variable's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VariableSource {
    /// A request field: a path parameter, else a key of the JSON body.
    Field(String),
    /// `{ value = ... }`: a constant.
    Constant {
        /// The value.
        value: Value,
    },
    /// Any other non-string value: a constant.
    Literal(Value),
}

/// A checked route binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// Where it was declared: `routes[N] (METHOD /path)`.
    pub name: String,
    /// The HTTP method, upper case.
    pub method: String,
    /// The path pattern, `/segment/{param}`.
    pub path: String,
    segments: Vec<Segment>,
    config: RouteConfig,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Every binding of a configuration, in declaration order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bindings {
    bindings: Vec<Binding>,
}

/// Paths the service itself serves; a binding may not take them.
const RESERVED_PREFIXES: [&str; 4] = ["/api/", "/admin/", "/ws/", "/assets/"];
const RESERVED_PATHS: [&str; 5] = ["/", "/healthz", "/readyz", "/metrics", "/openapi.json"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "PATCH"];

/// What a matched route answers.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

/// The outcome of matching a request against the bindings.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    /// A binding and its path parameters.
    Found(&'a Binding, Map<String, Value>),
    /// The path is bound, but not with this method (the methods it takes).
    WrongMethod(Vec<String>),
    /// No binding has this path.
    NotFound,
}

impl Bindings {
    /// Checks the shape of every `[[routes]]` entry; all problems are reported together.
    pub fn compile(routes: &[RouteConfig]) -> Result<Self, AppError> {
        let mut problems = Vec::new();
        let mut bindings: Vec<Binding> = Vec::new();
        for (index, config) in routes.iter().enumerate() {
            match Binding::compile(index, config) {
                Ok(binding) => {
                    if let Some(other) = bindings
                        .iter()
                        .find(|b| b.method == binding.method && b.shape() == binding.shape())
                    {
                        problems.push(format!(
                            "{}: route: the same method and path as {}",
                            binding.name, other.name
                        ));
                    } else {
                        bindings.push(binding);
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(Self { bindings })
        } else {
            Err(AppError::config(format!(
                "configuration [[routes]]: {}",
                problems.join("; ")
            )))
        }
    }

    /// Checks the bindings against what `app` has deployed: every process they name is deployed
    /// and every node they complete is in its latest version.
    pub fn check_deployed(&self, app: &App) -> Result<(), AppError> {
        let mut problems = Vec::new();
        for binding in &self.bindings {
            let Some(process) = &binding.config.process else {
                continue;
            };
            match app.deployed(process, None) {
                Err(_) => problems.push(format!(
                    "{}: process: no process `{process}` is deployed",
                    binding.name
                )),
                Ok(deployed) => {
                    if let Some(node) = &binding.config.node {
                        if deployed.process.node_index(node).is_none() {
                            problems.push(format!(
                                "{}: node: process `{process}` has no node `{node}`",
                                binding.name
                            ));
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AppError::config(format!(
                "configuration [[routes]]: {}",
                problems.join("; ")
            )))
        }
    }

    /// The bindings, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// The binding for `method` and `path`, with its path parameters.
    pub fn find(&self, method: &str, path: &str) -> RouteMatch<'_> {
        let mut methods = Vec::new();
        for binding in &self.bindings {
            if let Some(params) = binding.matches(path) {
                if binding.method.eq_ignore_ascii_case(method) {
                    return RouteMatch::Found(binding, params);
                }
                methods.push(binding.method.clone());
            }
        }
        if methods.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::WrongMethod(methods)
        }
    }
}

impl Binding {
    fn compile(index: usize, config: &RouteConfig) -> Result<Self, String> {
        let at = format!("routes[{index}]");
        let (method, path) = config
            .route
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("{at}: route `{}` is not `METHOD /path`", config.route))?;
        let method = method.to_ascii_uppercase();
        let path = path.trim().to_string();
        let name = format!("{at} ({method} {path})");
        if !METHODS.contains(&method.as_str()) {
            return Err(format!(
                "{name}: route: method `{method}` is not one of {}",
                METHODS.join(", ")
            ));
        }
        let segments = parse_path(&path).map_err(|why| format!("{name}: route: {why}"))?;
        if RESERVED_PATHS.contains(&path.as_str())
            || RESERVED_PREFIXES.iter().any(|p| path.starts_with(p))
        {
            return Err(format!(
                "{name}: route: `{path}` is served by Flowbot itself (reserved: {}, and paths under {})",
                RESERVED_PATHS.join(", "),
                RESERVED_PREFIXES.join(", ")
            ));
        }
        let binding = Self {
            name,
            method,
            path,
            segments,
            config: config.clone(),
        };
        binding.check_keys()?;
        Ok(binding)
    }

    /// The keys each action needs, and no keys it does not use.
    fn check_keys(&self) -> Result<(), String> {
        let c = &self.config;
        let name = &self.name;
        let require = |key: &str, value: &Option<String>| match value {
            Some(v) if !v.trim().is_empty() => Ok(()),
            _ => Err(format!(
                "{name}: `{key}` is required for action `{}`",
                action_name(c.action)
            )),
        };
        let refuse = |key: &str, value: &Option<String>| match value {
            Some(_) => Err(format!(
                "{name}: `{key}` does not apply to action `{}`",
                action_name(c.action)
            )),
            None => Ok(()),
        };
        match c.action {
            ActionKind::Start => {
                require("process", &c.process)?;
                refuse("message", &c.message)?;
                refuse("correlation_key", &c.correlation_key)?;
                refuse("node", &c.node)?;
            }
            ActionKind::Message => {
                require("message", &c.message)?;
                refuse("process", &c.process)?;
                refuse("business_key", &c.business_key)?;
                refuse("node", &c.node)?;
                if c.wait == WaitFor::Settled {
                    return Err(format!(
                        "{name}: `wait = \"settled\"` does not apply to action `message`"
                    ));
                }
                if c.answer.is_some() {
                    return Err(format!(
                        "{name}: `answer` does not apply to action `message`"
                    ));
                }
            }
            ActionKind::Complete => {
                require("process", &c.process)?;
                require("business_key", &c.business_key)?;
                require("node", &c.node)?;
                refuse("message", &c.message)?;
                refuse("correlation_key", &c.correlation_key)?;
            }
            ActionKind::Set => {
                require("process", &c.process)?;
                require("business_key", &c.business_key)?;
                refuse("message", &c.message)?;
                refuse("correlation_key", &c.correlation_key)?;
                refuse("node", &c.node)?;
                if c.variables.is_empty() {
                    return Err(format!("{name}: `variables` is required for action `set`"));
                }
            }
        }
        if let Some(status) = c.status {
            if !(200..300).contains(&status) {
                return Err(format!("{name}: status: {status} is not a 2xx status"));
            }
        }
        if matches!(self.method.as_str(), "GET") {
            let body_fields: Vec<&str> = self
                .fields()
                .filter(|f| !self.params().any(|p| p == *f))
                .collect();
            if let Some(field) = body_fields.first() {
                return Err(format!(
                    "{name}: field `{field}` is not a path parameter, and a GET request has no body"
                ));
            }
        }
        for (key, template) in c.answer.iter().flatten() {
            check_template(template).map_err(|why| format!("{name}: answer.{key}: {why}"))?;
        }
        Ok(())
    }

    /// The request fields the binding reads.
    fn fields(&self) -> impl Iterator<Item = &str> {
        let c = &self.config;
        c.business_key
            .iter()
            .chain(c.correlation_key.iter())
            .map(String::as_str)
            .chain(c.variables.values().filter_map(|source| match source {
                VariableSource::Field(field) => Some(field.as_str()),
                _ => None,
            }))
    }

    /// The path parameters.
    fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The path with its parameters unnamed (two bindings of the same shape collide).
    fn shape(&self) -> Vec<Option<&str>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => Some(text.as_str()),
                Segment::Param(_) => None,
            })
            .collect()
    }

    /// The declaration.
    pub fn config(&self) -> &RouteConfig {
        &self.config
    }

    /// The path parameters of `path` when it matches.
    fn matches(&self, path: &str) -> Option<Map<String, Value>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = Map::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(text) if text == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if part.is_empty() => return None,
                Segment::Param(name) => {
                    let decoded = percent_decode(part)?;
                    params.insert(name.clone(), Value::String(decoded));
                }
            }
        }
        Some(params)
    }

    /// Runs the binding for a request with path parameters `params` and JSON body `body`.
    pub async fn call(
        &self,
        app: &App,
        params: &Map<String, Value>,
        body: &Map<String, Value>,
    ) -> Result<BindingAnswer, AppError> {
        let c = &self.config;
        let field = |name: &str| -> Result<Value, AppError> {
            params
                .get(name)
                .or_else(|| body.get(name))
                .cloned()
                .filter(|v| !v.is_null())
                .ok_or_else(|| {
                    AppError::invalid_input(format!(
                        "`{name}` is missing: {} takes it as a path parameter or a key of the JSON body",
                        self.path
                    ))
                })
        };
        let mut variables = Map::new();
        for (variable, source) in &c.variables {
            let value = match source {
                VariableSource::Field(name) => field(name)?,
                VariableSource::Constant { value } | VariableSource::Literal(value) => {
                    value.clone()
                }
            };
            variables.insert(variable.clone(), value);
        }
        let key = |name: &str| -> Result<String, AppError> {
            match field(name)? {
                Value::String(text) if !text.trim().is_empty() => Ok(text),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(AppError::invalid_input(format!(
                    "`{name}` must be a non-empty text or a number, not {other}"
                ))),
            }
        };
        let process = c.process.clone().unwrap_or_default();
        let view = match c.action {
            ActionKind::Start => {
                let business_key = c.business_key.as_deref().map(key).transpose()?;
                app.start(StartRequest {
                    process_id: process,
                    variables,
                    business_key,
                })
                .await?
            }
            ActionKind::Message => {
                let correlation = c.correlation_key.as_deref().map(key).transpose()?;
                let name = c.message.as_deref().unwrap_or_default();
                let outcome = app
                    .correlate(name, correlation.as_deref(), variables)
                    .await?;
                let body = serde_json::to_value(&outcome)
                    .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))?;
                return Ok(BindingAnswer {
                    status: c.status.unwrap_or(200),
                    body,
                });
            }
            ActionKind::Complete => {
                let business_key = key(c.business_key.as_deref().unwrap_or_default())?;
                let instance = find_instance(app, &process, &business_key)?;
                let node = c.node.as_deref().unwrap_or_default();
                let task = app
                    .open_tasks(&TaskFilter {
                        process_id: None,
                        node: Some(node.to_string()),
                        instance: Some(instance.id.clone()),
                    })
                    .into_iter()
                    .next();
                match task {
                    Some(task) => app.complete_task(&task.id, variables).await?,
                    None => {
                        // Ask the guards first, so that a rule's refusal is the answer.
                        check_guards(app, &instance, &variables)?;
                        return Err(AppError::new(
                            ErrorKind::Conflict,
                            format!(
                                "{} `{business_key}` has no open task at `{node}` ({})",
                                process,
                                waiting_on(&instance)
                            ),
                        ));
                    }
                }
            }
            ActionKind::Set => {
                let business_key = key(c.business_key.as_deref().unwrap_or_default())?;
                let instance = find_instance(app, &process, &business_key)?;
                app.set_variables(&instance.id, variables).await?
            }
        };
        let view = match c.wait {
            WaitFor::None => view,
            WaitFor::Settled => app.settle(&view.id).await?,
        };
        let body = match &c.answer {
            None => serde_json::to_value(&view)
                .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))?,
            Some(answer) => Value::Object(
                answer
                    .iter()
                    .map(|(key, template)| (key.clone(), fill(template, &view)))
                    .collect(),
            ),
        };
        let status = c.status.unwrap_or(if c.action == ActionKind::Start {
            201
        } else {
            200
        });
        Ok(BindingAnswer { status, body })
    }
}

fn action_name(action: ActionKind) -> &'static str {
    match action {
        ActionKind::Start => "start",
        ActionKind::Message => "message",
        ActionKind::Complete => "complete",
        ActionKind::Set => "set",
    }
}

/// `/a/{b}/c` into segments; `{}` names must be plain identifiers and unique.
fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path `{path}` does not start with `/`"));
    };
    let mut segments = Vec::new();
    for part in rest.split('/') {
        if part.is_empty() {
            return Err(format!("path `{path}` has an empty segment"));
        }
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`{{{name}}}` is not a parameter name (letters, digits and `_`)"
                ));
            }
            if segments.contains(&Segment::Param(name.to_string())) {
                return Err(format!("parameter `{name}` appears twice"));
            }
            segments.push(Segment::Param(name.to_string()));
        } else if part.contains(['{', '}', '?', '#', '*', ':']) {
            return Err(format!(
                "segment `{part}` is neither plain text nor a whole `{{param}}`"
            ));
        } else {
            segments.push(Segment::Literal(part.to_string()));
        }
    }
    Ok(segments)
}

/// `%XX` escapes decoded (`None` when they do not form UTF-8 text).
fn percent_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A template's `{names}` are closed and not empty.
fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{template}` has a `{{` without its `}}`"))?;
        if after[..close].trim().is_empty() {
            return Err(format!("`{template}` has an empty `{{}}`"));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// A template over the instance: `"{name}"` alone is the value itself (any JSON); otherwise
/// every `{name}` is replaced by the value as text (an unknown name by nothing).
fn fill(template: &str, view: &InstanceView) -> Value {
    let lookup = |name: &str| -> Value {
        match name {
            "instance.id" => Value::String(view.id.clone()),
            "instance.status" => serde_json::to_value(view.status).unwrap_or(Value::Null),
            "instance.business_key" => view.business_key.clone().map_or(Value::Null, Value::String),
            _ => view.variables.get(name).cloned().unwrap_or(Value::Null),
        }
    };
    let trimmed = template.trim();
    if let Some(name) = trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        if !name.contains(['{', '}']) {
            return lookup(name.trim());
        }
    }
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        match lookup(after[..close].trim()) {
            Value::Null => {}
            Value::String(text) => out.push_str(&text),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Value::String(out)
}

/// The instance of `process` with `business_key`: a running one when there is one, else the
/// latest ended one; 404 when there is none.
fn find_instance(app: &App, process: &str, business_key: &str) -> Result<InstanceView, AppError> {
    let filter = InstanceFilter {
        status: None,
        process_id: Some(process.to_string()),
        business_key: Some(business_key.to_string()),
    };
    let mut cursor: Option<String> = None;
    let mut found: Option<InstanceView> = None;
    loop {
        let page = app.list_instances(&filter, cursor.as_deref(), 1000)?;
        for view in page.items {
            let running = view.ended.is_none();
            if running {
                return Ok(view);
            }
            found = Some(view);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    found.ok_or_else(|| {
        AppError::not_found(format!(
            "no {process} instance has the business key `{business_key}`"
        ))
    })
}

/// What an instance waits on, for a message.
fn waiting_on(instance: &InstanceView) -> String {
    if instance.ended.is_some() {
        return format!("it is {}", status_text(instance));
    }
    let nodes: Vec<&str> = instance
        .waiting_on
        .iter()
        .map(|w| w.node.as_str())
        .collect();
    if nodes.is_empty() {
        format!("it is {}", status_text(instance))
    } else {
        format!("it waits at {}", nodes.join(", "))
    }
}

fn status_text(instance: &InstanceView) -> String {
    serde_json::to_value(instance.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Asks the `guard_variable` rules whether `variables` may be written into `instance` now; a
/// refusal is a conflict with the rule's message. Nothing is committed either way.
fn check_guards(
    app: &App,
    instance: &InstanceView,
    variables: &Map<String, Value>,
) -> Result<(), AppError> {
    if variables.is_empty() {
        return Ok(());
    }
    let deployed = app.deployed(&instance.process, Some(instance.version))?;
    let hooks = RuleHooks::new(app.rules().snapshot());
    let context = HookContext {
        process: &deployed.process,
        instance_id: &instance.id,
        node: None,
        activation: None,
        variables: &instance.variables,
    };
    hooks
        .guard_variables(&context, variables)
        .map_err(|reason| {
            AppError::new(
                ErrorKind::Conflict,
                format!("variable change refused: {reason}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(text: &str) -> Result<Bindings, AppError> {
        #[derive(Deserialize)]
        struct File {
            routes: Vec<RouteConfig>,
        }
        let file: File = toml::from_str(text).expect("the test's TOML parses");
        Bindings::compile(&file.routes)
    }

    const SEED: &str = r#"
[[routes]]
route = "POST /import"
action = "start"
process = "order_processing"
business_key = "orderId"
variables = { order_id = "orderId", customer = "customerName", amount = "totalAmount" }
wait = "settled"
answer = { result = "{confirmation}", order = "Order {order_id}: {instance.status}" }

[[routes]]
route = "POST /settlePayment/{order_id}"
action = "set"
process = "order_processing"
business_key = "order_id"
variables = { paid = true, payment_status = { value = "paid" } }
"#;

    #[test]
    fn routes_match_by_method_and_path_with_decoded_parameters() {
        let bindings = routes(SEED).unwrap();
        match bindings.find("POST", "/settlePayment/SO%2D1") {
            RouteMatch::Found(binding, params) => {
                assert_eq!(binding.name, "routes[1] (POST /settlePayment/{order_id})");
                assert_eq!(params["order_id"], "SO-1");
                assert_eq!(
                    binding.config().variables["payment_status"],
                    VariableSource::Constant {
                        value: Value::from("paid")
                    }
                );
                assert_eq!(
                    binding.config().variables["paid"],
                    VariableSource::Literal(Value::Bool(true))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            bindings.find("GET", "/import"),
            RouteMatch::WrongMethod(m) if m == ["POST"]
        ));
        assert!(matches!(
            bindings.find("POST", "/settlePayment"),
            RouteMatch::NotFound
        ));
        assert!(matches!(
            bindings.find("POST", "/settlePayment/"),
            RouteMatch::NotFound
        ));
    }

    #[test]
    fn bad_declarations_name_the_route_and_the_key() {
        let cases = [
            ("route = \"POST\"\naction = \"start\"\nprocess = \"p\"", "routes[0]: route `POST` is not `METHOD /path`"),
            ("route = \"DELETE /x\"\naction = \"start\"\nprocess = \"p\"", "method `DELETE`"),
            ("route = \"POST x\"\naction = \"start\"\nprocess = \"p\"", "does not start with `/`"),
            ("route = \"POST /a/{b c}\"\naction = \"start\"\nprocess = \"p\"", "is not a parameter name"),
            ("route = \"POST /api/v1/x\"\naction = \"start\"\nprocess = \"p\"", "served by Flowbot itself"),
            ("route = \"POST /x\"\naction = \"start\"", "routes[0] (POST /x): `process` is required for action `start`"),
            ("route = \"POST /x\"\naction = \"complete\"\nprocess = \"p\"\nbusiness_key = \"k\"", "`node` is required"),
            ("route = \"POST /x\"\naction = \"set\"\nprocess = \"p\"\nbusiness_key = \"k\"", "`variables` is required"),
            ("route = \"POST /x\"\naction = \"message\"\nmessage = \"m\"\nnode = \"n\"", "`node` does not apply"),
            ("route = \"GET /x\"\naction = \"start\"\nprocess = \"p\"\nvariables = { a = \"b\" }", "field `b` is not a path parameter"),
            ("route = \"POST /x\"\naction = \"start\"\nprocess = \"p\"\nanswer = { a = \"{b\" }", "answer.a"),
            ("route = \"POST /x\"\naction = \"start\"\nprocess = \"p\"\nstatus = 404", "not a 2xx status"),
        ];
        for (entry, expected) in cases {
            let error = routes(&format!("[[routes]]\n{entry}\n")).unwrap_err();
            assert!(
                error.message().contains(expected),
                "{entry}: {}",
                error.message()
            );
            assert_eq!(error.kind(), ErrorKind::Config);
        }
        let twice = routes(
            "[[routes]]\nroute = \"POST /a/{x}\"\naction = \"start\"\nprocess = \"p\"\n[[routes]]\nroute = \"post /a/{y}\"\naction = \"start\"\nprocess = \"q\"\n",
        )
        .unwrap_err();
        assert!(
            twice
                .message()
                .contains("routes[1] (POST /a/{y}): route: the same method and path as routes[0]"),
            "{}",
            twice.message()
        );
    }

    #[test]
    fn templates_give_values_or_text() {
        let view: InstanceView = serde_json::from_value(serde_json::json!({
            "id": "order_processing-1", "process": "order_processing", "version": 1,
            "business_key": "SO-1", "status": "waiting", "path": [],
            "variables": {"confirmation": "Thanks!", "amount": 12.5, "order_id": "SO-1"},
            "waiting_on": [], "incidents": [], "started": "2026-12-01T00:00:00Z", "ended": null
        }))
        .unwrap();
        assert_eq!(fill("{confirmation}", &view), "Thanks!");
        assert_eq!(fill("{amount}", &view), 12.5);
        assert_eq!(fill("{missing}", &view), Value::Null);
        assert_eq!(
            fill("Order {order_id} ({instance.status}) {amount}", &view),
            "Order SO-1 (waiting) 12.5"
        );
        assert_eq!(fill("{instance.business_key}", &view), "SO-1");
    }
}
