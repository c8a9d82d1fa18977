//! Turns a YAML document (already parsed by `serde_yaml`) into the process model, reporting every
//! problem with its position instead of stopping at the first one.

use super::locator::{SourceMap, YamlPath};
use super::vocabulary::{self as vocab, suggestion};
use crate::diagnostics::Diagnostic;
use crate::model::*;
use serde_yaml::{Mapping, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// What [`Reader::rules`] gets as node id and kind for the process-wide `rules:` list.
const PROCESS_LEVEL: &str = "process";

/// Reads one process document.
pub(crate) struct Reader<'a> {
    file: &'a Path,
    map: SourceMap,
    diagnostics: Vec<Diagnostic>,
    /// Every node and flow id defined so far in the file, with where it was defined.
    ids: HashMap<String, Span>,
    /// Every node id written anywhere in the file (nested scopes included), so that generated
    /// flow ids never take a node's id.
    all_node_ids: HashSet<String>,
    /// How many more unknown ids get a "did you mean" (each compares with every id).
    id_hints_left: usize,
}

/// An outgoing flow as written, before its id is settled.
struct Branch {
    target: String,
    id: Option<String>,
    name: Option<String>,
    condition: Option<Expr>,
    is_default: bool,
    span: Span,
    /// Where the target is written (for "unknown node" errors).
    target_span: Span,
    /// Where the flow id is written, when it is.
    id_span: Option<Span>,
}

/// The nodes and flows of one scope (the process, or an embedded subprocess).
#[derive(Default)]
struct Scope {
    nodes: Vec<Node>,
    flows: Vec<SequenceFlow>,
    /// Flow targets to check once every node of the scope is known: (target, where, flow id).
    targets: Vec<(String, Span, String)>,
    /// Boundary attachments to check: (activity id, where, boundary id).
    attachments: Vec<(String, Span, String)>,
    /// Every node id written in the scope, also of nodes that had errors (so a broken node does
    /// not cause "unknown node" errors in the flows that lead to it).
    written_ids: Vec<String>,
}

/// How a node's outgoing flows may be written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BranchStyle {
    /// Conditions and a default allowed (exclusive, inclusive, complex gateways; activities).
    Conditional,
    /// Plain targets only (parallel and event-based gateways).
    Plain,
}

impl<'a> Reader<'a> {
    /// A reader for the document located by `map`, from `file`.
    pub(crate) fn new(file: &'a Path, map: SourceMap) -> Self {
        Self {
            file,
            map,
            diagnostics: Vec::new(),
            ids: HashMap::new(),
            all_node_ids: HashSet::new(),
            id_hints_left: vocab::MAX_ID_HINTS,
        }
    }

    /// Reads the document `root` into definitions; returns them (when the document is a process
    /// at all) and every diagnostic.
    pub(crate) fn read(mut self, root: &Value) -> (Option<Definitions>, Vec<Diagnostic>) {
        let path = YamlPath::root();
        let Some(top) = root.as_mapping() else {
            let what = describe(root);
            self.error(
                &path,
                format!(
                    "expected a process (a mapping starting with `process: <id>`), found {what}"
                ),
            );
            return (None, self.diagnostics);
        };
        self.check_keys(top, &path, vocab::PROCESS_KEYS, "the process");
        if let Some(nodes) = top.get("nodes") {
            collect_node_ids(nodes, &mut self.all_node_ids);
        }
        let id = match top.get("process") {
            Some(value) => self.id_text(value, &path.key("process"), "process id"),
            None => {
                self.error(
                    &path,
                    "missing `process: <id>`: every process file names its process",
                );
                None
            }
        };
        let name = self.optional_text(top, &path, "name");
        let process_span = self
            .map
            .key(&path.key("process"))
            .unwrap_or(Span::new(1, 1));
        let scope = match top.get("nodes") {
            Some(nodes) => self.scope(nodes, &path.key("nodes")),
            None => {
                self.error(
                    &path,
                    "missing `nodes:`: a process needs at least a start and an end event",
                );
                Scope::default()
            }
        };
        let lanes = match top.get("lanes") {
            Some(lanes) => self.lanes(lanes, &path.key("lanes"), &scope),
            None => Vec::new(),
        };
        let rules = match top.get("rules") {
            Some(rules) => self.rules(PROCESS_LEVEL, PROCESS_LEVEL, rules, &path.key("rules")),
            None => Vec::new(),
        };
        let process = Process {
            id: id.unwrap_or_default(),
            name,
            executable: true,
            nodes: scope.nodes,
            flows: scope.flows,
            lanes,
            rules,
            span: process_span,
        };
        let definitions = Definitions {
            source: self.file.to_path_buf(),
            processes: vec![process],
            ..Default::default()
        };
        (Some(definitions), self.diagnostics)
    }

    // ----- diagnostics -------------------------------------------------------------------

    fn error(&mut self, path: &YamlPath, message: impl Into<String>) {
        let span = self.map.nearest(path);
        self.diagnostics
            .push(Diagnostic::error(self.file, span, message));
    }

    fn error_at_value(&mut self, path: &YamlPath, message: impl Into<String>) {
        let span = self.map.nearest_value(path);
        self.diagnostics
            .push(Diagnostic::error(self.file, span, message));
    }

    /// `; did you mean `x`?` for the unknown id `word` when one of `ids` is close, for the first
    /// [`vocab::MAX_ID_HINTS`] unknown ids of the file.
    fn id_hint<'i>(&mut self, word: &str, ids: impl IntoIterator<Item = &'i str>) -> String {
        if self.id_hints_left == 0 {
            return String::new();
        }
        self.id_hints_left -= 1;
        vocab::closest(word, ids)
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default()
    }

    fn error_with_id(&mut self, span: Span, id: &str, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(self.file, span, message).with_id(id));
    }

    /// Reports keys of `mapping` that are not in `allowed` (with a "did you mean") and keys that
    /// are not text.
    fn check_keys(&mut self, mapping: &Mapping, path: &YamlPath, allowed: &[&str], context: &str) {
        for key in mapping.keys() {
            match key.as_str() {
                Some(k) if allowed.contains(&k) => {}
                Some(k) => {
                    let hint = suggestion(k, allowed.iter().copied());
                    self.error(
                        &path.key(k),
                        format!("unknown key `{k}` in {context}{hint}"),
                    );
                }
                None => self.error(
                    path,
                    format!("keys in {context} must be text, found {}", describe(key)),
                ),
            }
        }
    }

    // ----- scalars -----------------------------------------------------------------------

    /// Text from a string value; numbers and booleans are not accepted.
    fn text(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                self.error_at_value(
                    path,
                    format!("{what} must be text, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// Non-empty text.
    fn nonempty_text(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<String> {
        let text = self.text(value, path, what)?;
        if text.trim().is_empty() {
            self.error_at_value(path, format!("{what} must not be empty"));
            return None;
        }
        Some(text)
    }

    /// An id: text that is a valid XML name.
    fn id_text(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<String> {
        let text = self.text(value, path, what)?;
        if !vocab::is_valid_id(&text) {
            self.error_at_value(
                path,
                format!("{what} `{text}` is not a valid id: use letters, digits, `_`, `-`, `.`, starting with a letter or `_`"),
            );
            return None;
        }
        Some(text)
    }

    fn optional_text(&mut self, mapping: &Mapping, path: &YamlPath, key: &str) -> Option<String> {
        let value = mapping.get(key)?;
        if value.is_null() {
            return None;
        }
        self.text(value, &path.key(key), &format!("`{key}`"))
    }

    fn optional_id(&mut self, mapping: &Mapping, path: &YamlPath, key: &str) -> Option<String> {
        let value = mapping.get(key)?;
        self.id_text(value, &path.key(key), &format!("`{key}`"))
    }

    fn bool_value(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.error_at_value(
                    path,
                    format!(
                        "{what} must be `true` or `false`, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    fn optional_bool(
        &mut self,
        mapping: &Mapping,
        path: &YamlPath,
        key: &str,
        default: bool,
    ) -> bool {
        match mapping.get(key) {
            Some(value) => self
                .bool_value(value, &path.key(key), &format!("`{key}`"))
                .unwrap_or(default),
            None => default,
        }
    }

    /// An expression: text, or a number or boolean written bare (`when: true`).
    fn expr(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<Expr> {
        let source = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                self.error_at_value(
                    path,
                    format!(
                        "{what} must be an expression (text), found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        if source.is_empty() {
            self.error_at_value(path, format!("{what} must not be empty"));
            return None;
        }
        Some(Expr {
            language: None,
            source,
            span: self.map.nearest_value(path),
        })
    }

    fn optional_expr(&mut self, mapping: &Mapping, path: &YamlPath, key: &str) -> Option<Expr> {
        let value = mapping.get(key)?;
        self.expr(value, &path.key(key), &format!("`{key}`"))
    }

    fn mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &YamlPath,
        what: &str,
    ) -> Option<&'v Mapping> {
        match value {
            Value::Mapping(m) => Some(m),
            other => {
                self.error_at_value(
                    path,
                    format!(
                        "{what} must be a mapping (`key: value` lines), found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// A value that is either absent in substance (`~`, `{}`) or a mapping.
    fn empty_or_mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &YamlPath,
        what: &str,
    ) -> Option<Option<&'v Mapping>> {
        match value {
            Value::Null => Some(None),
            Value::Mapping(m) => Some(Some(m)),
            other => {
                self.error_at_value(
                    path,
                    format!(
                        "{what} takes a mapping or nothing, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    // ----- scopes and nodes --------------------------------------------------------------

    fn scope(&mut self, value: &Value, path: &YamlPath) -> Scope {
        let mut scope = Scope::default();
        let Some(nodes) = self.mapping(value, path, "`nodes`") else {
            return scope;
        };
        if nodes.is_empty() {
            self.error(
                path,
                "`nodes` is empty: a process needs at least a start and an end event",
            );
        }
        for (key, body) in nodes {
            let Some(id) = key.as_str() else {
                let at = scalar_text(key)
                    .map(|k| path.key(&k))
                    .unwrap_or_else(|| path.clone());
                self.error(
                    &at,
                    format!("node ids must be text, found {}", describe(key)),
                );
                continue;
            };
            let node_path = path.key(id);
            let span = self
                .map
                .key(&node_path)
                .unwrap_or_else(|| self.map.nearest(path));
            if !vocab::is_valid_id(id) {
                self.error_with_id(
                    span,
                    id,
                    format!("node id `{id}` is not a valid id: use letters, digits, `_`, `-`, `.`, starting with a letter or `_`"),
                );
            }
            self.claim_id(id, span);
            scope.written_ids.push(id.to_string());
            self.node(id, body, &node_path, span, &mut scope);
        }
        self.check_scope_references(&scope);
        scope
    }

    /// Records `id` as defined at `span`; reports it when it is already taken.
    fn claim_id(&mut self, id: &str, span: Span) -> bool {
        if let Some(first) = self.ids.get(id) {
            let first = *first;
            self.error_with_id(
                span,
                id,
                format!(
                    "duplicate id `{id}`: already used at {}:{}; ids must be unique in the file",
                    first.line, first.col
                ),
            );
            return false;
        }
        self.ids.insert(id.to_string(), span);
        true
    }

    fn check_scope_references(&mut self, scope: &Scope) {
        let ids: Vec<&str> = scope.written_ids.iter().map(String::as_str).collect();
        let known: HashSet<&str> = ids.iter().copied().collect();
        let by_id: HashMap<&str, &Node> = scope.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        for (target, span, flow) in &scope.targets {
            if !known.contains(target.as_str()) {
                let hint = self.id_hint(target, ids.iter().copied());
                let message = format!("flow `{flow}` goes to unknown node `{target}`{hint}");
                self.diagnostics
                    .push(Diagnostic::error(self.file, *span, message).with_id(flow.clone()));
            }
        }
        for (activity, span, boundary) in &scope.attachments {
            match by_id.get(activity.as_str()) {
                Some(node) if is_activity(&node.kind) => {}
                None if known.contains(activity.as_str()) => {} // the activity itself has errors
                Some(_) => {
                    let message =
                        format!("boundary event `{boundary}` is attached to `{activity}`, which is not an activity");
                    self.diagnostics.push(
                        Diagnostic::error(self.file, *span, message).with_id(boundary.clone()),
                    );
                }
                None => {
                    let hint = self.id_hint(activity, ids.iter().copied());
                    let message = format!(
                        "boundary event `{boundary}` is attached to unknown node `{activity}` (it must be in the same scope){hint}"
                    );
                    self.diagnostics.push(
                        Diagnostic::error(self.file, *span, message).with_id(boundary.clone()),
                    );
                }
            }
        }
    }

    fn node(&mut self, id: &str, body: &Value, path: &YamlPath, span: Span, scope: &mut Scope) {
        let Some(body) = self.mapping(body, path, &format!("node `{id}`")) else {
            return;
        };
        let kinds: Vec<&str> = body
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| vocab::NODE_KIND_KEYS.contains(k))
            .collect();
        let kind_key = match kinds.as_slice() {
            [one] => *one,
            [] => {
                let unknown = body.keys().filter_map(Value::as_str).find(|k| {
                    !vocab::NODE_COMMON_KEYS.contains(k) && !vocab::ACTIVITY_KEYS.contains(k)
                });
                let hint = match unknown {
                    Some(word) => suggestion(word, vocab::NODE_KIND_KEYS.iter().copied()),
                    None => String::new(),
                };
                let message = format!(
                    "node `{id}` does not say what it is: give it one kind key such as `service:`, `script:`, `exclusive:`, `end:`{hint}"
                );
                self.error_with_id(span, id, message);
                return;
            }
            [first, second, ..] => {
                let message =
                    format!("node `{id}` has two kind keys, `{first}` and `{second}`: a node is exactly one thing");
                self.error_with_id(span, id, message);
                return;
            }
        };
        let is_activity_kind = vocab::ACTIVITY_KINDS.contains(&kind_key);
        self.check_node_keys(id, body, path, kind_key, is_activity_kind);

        let kind_value = body.get(kind_key).unwrap_or(&Value::Null);
        let kind_path = path.key(kind_key);
        let name = self.optional_text(body, path, "name");
        let mut branches: Vec<Branch> = Vec::new();
        let lists_branches = kind_value.is_sequence();
        let mut next_style = BranchStyle::Conditional;
        let kind = match kind_key {
            "start" | "end" | "catch" | "throw" | "boundary" => {
                self.event(id, kind_key, kind_value, &kind_path, span, scope)
            }
            "exclusive" | "inclusive" | "complex" | "parallel" | "event_based" => {
                next_style = BranchStyle::Plain;
                let (gateway, listed) = self.gateway(id, kind_key, kind_value, body, path);
                branches = listed;
                Some(NodeKind::Gateway(gateway))
            }
            "subprocess" => self
                .subprocess(id, kind_value, &kind_path)
                .map(|sub| NodeKind::SubProcess(Activity::new(sub))),
            "call" => self.call_activity(kind_value, &kind_path),
            task => self
                .task(task, kind_value, &kind_path)
                .map(|t| NodeKind::Task(Activity::new(t))),
        };

        if let Some(next) = body.get("next") {
            if kind_key == "end" {
                self.error(
                    &path.key("next"),
                    format!("end event `{id}` cannot have `next:`: nothing follows an end"),
                );
            } else if lists_branches && matches!(kind, Some(NodeKind::Gateway(_))) {
                // Reported above: branches and `next` together.
            } else {
                branches.extend(self.next(id, next, &path.key("next"), next_style));
            }
        }
        let rules = match body.get("rules") {
            Some(value) => self.rules(id, kind_key, value, &path.key("rules")),
            None => Vec::new(),
        };
        let form = if matches!(kind_key, "user" | "manual") {
            self.form(kind_value, &kind_path)
        } else {
            Vec::new()
        };
        let activation_condition = if kind_key == "complex" {
            self.optional_expr(body, path, "activation")
        } else {
            None
        };
        let Some(mut kind) = kind else { return };
        if let NodeKind::Task(activity) = &mut kind {
            activity.form = form;
        }
        if is_activity_kind {
            self.activity_settings(body, path, &mut kind);
        }
        let defaults: Vec<&Branch> = branches.iter().filter(|b| b.is_default).collect();
        if defaults.len() > 1 {
            self.error_with_id(
                defaults[1].span,
                id,
                format!("node `{id}` has more than one `otherwise:` branch"),
            );
        }
        let mut default_flow = None;
        for branch in branches {
            let flow_id = self.flow_id(id, &branch);
            if branch.is_default && default_flow.is_none() {
                default_flow = Some(flow_id.clone());
            }
            scope
                .targets
                .push((branch.target.clone(), branch.target_span, flow_id.clone()));
            scope.flows.push(SequenceFlow {
                id: flow_id,
                name: branch.name,
                source: id.to_string(),
                target: branch.target,
                condition: branch.condition,
                span: branch.span,
            });
        }
        scope.nodes.push(Node {
            id: id.to_string(),
            name,
            kind,
            default_flow,
            activation_condition,
            rules,
            span,
        });
    }

    /// Reports keys a node of kind `kind_key` may not have.
    fn check_node_keys(
        &mut self,
        id: &str,
        body: &Mapping,
        path: &YamlPath,
        kind_key: &str,
        is_activity_kind: bool,
    ) {
        let mut allowed: Vec<&str> = vocab::NODE_COMMON_KEYS.to_vec();
        allowed.push(kind_key);
        if kind_key == "complex" {
            allowed.extend_from_slice(vocab::COMPLEX_EXTRA_KEYS);
        }
        for key in body.keys().filter_map(Value::as_str) {
            if vocab::ACTIVITY_KEYS.contains(&key) && !is_activity_kind {
                self.error(
                    &path.key(key),
                    format!("`{key}` applies to activities only, not to a `{kind_key}` node"),
                );
            } else if vocab::NODE_KIND_KEYS.contains(&key)
                || vocab::ACTIVITY_KEYS.contains(&key)
                || allowed.contains(&key)
            {
                // Kind and activity keys are handled below.
            } else {
                let mut candidates = allowed.clone();
                if is_activity_kind {
                    candidates.extend_from_slice(vocab::ACTIVITY_KEYS);
                }
                let hint = suggestion(key, candidates.iter().copied());
                self.error(
                    &path.key(key),
                    format!("unknown key `{key}` in node `{id}`{hint}"),
                );
            }
        }
        for key in body.keys() {
            if key.as_str().is_none() {
                self.error(
                    path,
                    format!("keys in node `{id}` must be text, found {}", describe(key)),
                );
            }
        }
    }

    /// A gateway: its kind and the branches listed under its kind key.
    fn gateway(
        &mut self,
        id: &str,
        kind_key: &str,
        kind_value: &Value,
        body: &Mapping,
        path: &YamlPath,
    ) -> (GatewayKind, Vec<Branch>) {
        let kind_path = path.key(kind_key);
        let mut branches = Vec::new();
        let gateway = match kind_key {
            "exclusive" => GatewayKind::Exclusive,
            "inclusive" => GatewayKind::Inclusive,
            "complex" => GatewayKind::Complex,
            "parallel" => GatewayKind::Parallel,
            _ => GatewayKind::EventBased,
        };
        let style = if matches!(gateway, GatewayKind::Parallel | GatewayKind::EventBased) {
            BranchStyle::Plain
        } else {
            BranchStyle::Conditional
        };
        match kind_value {
            Value::Null => {}
            Value::String(word) if vocab::GATEWAY_MERGE_WORDS.contains(&word.as_str()) => {}
            Value::Sequence(items) => {
                if body.contains_key("next") {
                    self.error(
                        &path.key("next"),
                        format!("gateway `{id}` lists its branches under `{kind_key}:`; remove `next:` or the branches"),
                    );
                }
                for (index, item) in items.iter().enumerate() {
                    if let Some(branch) = self.branch(id, item, &kind_path.index(index), style, kind_key) {
                        branches.push(branch);
                    }
                }
                if items.is_empty() {
                    self.error_at_value(&kind_path, format!("gateway `{id}` has an empty branch list"));
                }
            }
            other => self.error_at_value(
                &kind_path,
                format!(
                    "`{kind_key}` takes a list of branches, or `merge`/`join` (or nothing) for a gateway that only joins, found {}",
                    describe(other)
                ),
            ),
        }
        (gateway, branches)
    }

    /// A call activity: `call: <process id>` or `call: { process: <id> }`.
    fn call_activity(&mut self, value: &Value, path: &YamlPath) -> Option<NodeKind> {
        let mut binding = CallBinding::Latest;
        let called = match value {
            Value::Mapping(m) => {
                self.check_keys(m, path, vocab::CALL_KEYS, "a call activity");
                binding = self.call_binding(m, path);
                match m.get("process") {
                    Some(v) => self.id_text(v, &path.key("process"), "the called process"),
                    None => {
                        self.error(
                            path,
                            "a call activity names the process it calls: `call: <process id>`",
                        );
                        None
                    }
                }
            }
            other => self.id_text(other, path, "the called process"),
        };
        Some(NodeKind::CallActivity(Activity::new(CallActivity {
            called_element: called,
            binding,
        })))
    }

    /// `binding: latest | deployment` or `version: <n>` of a call activity.
    fn call_binding(&mut self, call: &Mapping, path: &YamlPath) -> CallBinding {
        match (call.get("binding"), call.get("version")) {
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "a call activity has `binding:` or `version:`, not both",
                );
                CallBinding::Latest
            }
            (Some(binding), None) => match binding.as_str() {
                Some("latest") => CallBinding::Latest,
                Some("deployment") => CallBinding::Deployment,
                _ => {
                    self.error(
                        &path.key("binding"),
                        "`binding:` is `latest` or `deployment` (or give `version: <n>`)",
                    );
                    CallBinding::Latest
                }
            },
            (None, Some(version)) => match version.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n > 0 => CallBinding::Version(n),
                _ => {
                    self.error(
                        &path.key("version"),
                        "`version:` is a deployed version number (1, 2, ...)",
                    );
                    CallBinding::Latest
                }
            },
            (None, None) => CallBinding::Latest,
        }
    }

    /// The id of a flow: the one written, or `<source>_to_<target>` (numbered when taken).
    fn flow_id(&mut self, source: &str, branch: &Branch) -> String {
        if let Some(id) = &branch.id {
            self.claim_id(id, branch.id_span.unwrap_or(branch.span));
            return id.clone();
        }
        let base = format!("{source}_to_{}", branch.target);
        let mut candidate = base.clone();
        let mut n = 2;
        while self.ids.contains_key(&candidate) || self.all_node_ids.contains(&candidate) {
            candidate = format!("{base}_{n}");
            n += 1;
        }
        self.ids.insert(candidate.clone(), branch.span);
        candidate
    }

    /// `next:` — a target, a branch mapping, or a list of them.
    fn next(
        &mut self,
        source: &str,
        value: &Value,
        path: &YamlPath,
        style: BranchStyle,
    ) -> Vec<Branch> {
        match value {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    self.branch(source, item, &path.index(index), style, "next")
                })
                .collect(),
            Value::Null => {
                self.error(
                    path,
                    format!("`next` of `{source}` is empty: name the node that follows"),
                );
                Vec::new()
            }
            single => self
                .branch(source, single, path, style, "next")
                .into_iter()
                .collect(),
        }
    }

    /// One outgoing flow: a target id, or a mapping with `to`/`otherwise`, `when`, `id`, `name`.
    fn branch(
        &mut self,
        source: &str,
        value: &Value,
        path: &YamlPath,
        style: BranchStyle,
        list: &str,
    ) -> Option<Branch> {
        // A list item is located at its `-` (or its place in `[...]`); a single branch at its value.
        let in_list = matches!(
            path.segments().last(),
            Some(super::locator::PathSeg::Index(_))
        );
        let item = if in_list { self.map.key(path) } else { None };
        let span = item
            .or_else(|| self.map.value(path))
            .unwrap_or_else(|| self.map.nearest(path));
        match value {
            Value::String(_) => {
                let target = self.id_text(value, path, "a flow target")?;
                let target_span = self.map.nearest_value(path);
                Some(Branch {
                    target,
                    id: None,
                    name: None,
                    condition: None,
                    is_default: false,
                    span: target_span,
                    target_span,
                    id_span: None,
                })
            }
            Value::Mapping(m) => {
                let allowed: &[&str] = match style {
                    BranchStyle::Conditional => vocab::BRANCH_KEYS,
                    BranchStyle::Plain => &["to", "id", "name"],
                };
                for key in m.keys().filter_map(Value::as_str) {
                    if style == BranchStyle::Plain && (key == "when" || key == "otherwise") {
                        self.error(
                            &path.key(key),
                            format!("`{key}` is not allowed in `{list}` of `{source}`: its branches are all taken, unconditionally"),
                        );
                    }
                }
                for key in m.keys() {
                    match key.as_str() {
                        Some("when") | Some("otherwise") if style == BranchStyle::Plain => {}
                        Some(k) if allowed.contains(&k) => {}
                        Some(k) => {
                            let hint = suggestion(k, allowed.iter().copied());
                            self.error(
                                &path.key(k),
                                format!("unknown key `{k}` in a branch of `{source}`{hint}"),
                            );
                        }
                        None => self.error(
                            path,
                            format!(
                                "keys in a branch of `{source}` must be text, found {}",
                                describe(key)
                            ),
                        ),
                    }
                }
                let to = m.get("to");
                let otherwise = if style == BranchStyle::Conditional {
                    m.get("otherwise")
                } else {
                    None
                };
                let (target_value, target_path, is_default) = match (to, otherwise) {
                    (Some(t), None) => (t, path.key("to"), false),
                    (None, Some(o)) => (o, path.key("otherwise"), true),
                    (Some(_), Some(_)) => {
                        self.error(path, format!("a branch of `{source}` has both `to:` and `otherwise:`; `otherwise: <node>` already names the target"));
                        return None;
                    }
                    (None, None) => {
                        let what = if style == BranchStyle::Conditional {
                            "`to: <node>` or `otherwise: <node>`"
                        } else {
                            "`to: <node>`"
                        };
                        self.error(path, format!("a branch of `{source}` needs {what}"));
                        return None;
                    }
                };
                let condition = if style == BranchStyle::Conditional {
                    self.optional_expr(m, path, "when")
                } else {
                    None
                };
                if is_default && m.contains_key("when") {
                    self.error(
                        &path.key("when"),
                        "an `otherwise:` branch has no `when:`: it is taken when no other branch is",
                    );
                }
                if list != "next"
                    && style == BranchStyle::Conditional
                    && !is_default
                    && !m.contains_key("when")
                {
                    self.error(
                        path,
                        format!(
                            "a branch of `{list}` gateway `{source}` needs `when:` (or is the `otherwise:` branch)"
                        ),
                    );
                }
                let target = self.id_text(target_value, &target_path, "a flow target")?;
                let id = self.optional_id(m, path, "id");
                let name = self.optional_text(m, path, "name");
                let target_span = self.map.nearest_value(&target_path);
                let id_span = id.as_ref().map(|_| self.map.nearest_value(&path.key("id")));
                Some(Branch {
                    target,
                    id,
                    name,
                    condition,
                    is_default,
                    span,
                    target_span,
                    id_span,
                })
            }
            other => {
                self.error_at_value(
                    path,
                    format!(
                        "a flow is a node id or a mapping with `to:`, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    // ----- events ------------------------------------------------------------------------

    fn event(
        &mut self,
        id: &str,
        kind_key: &str,
        value: &Value,
        path: &YamlPath,
        span: Span,
        scope: &mut Scope,
    ) -> Option<NodeKind> {
        let (triggers_allowed, extra, what): (&[&str], &[&str], &str) = match kind_key {
            "start" => (
                vocab::START_TRIGGERS,
                vocab::START_EXTRA_KEYS,
                "a start event",
            ),
            "end" => (vocab::END_TRIGGERS, &[], "an end event"),
            "catch" => (
                vocab::CATCH_TRIGGERS,
                vocab::CATCH_EXTRA_KEYS,
                "a catch event",
            ),
            "throw" => (vocab::THROW_TRIGGERS, &[], "a throw event"),
            _ => (
                vocab::BOUNDARY_TRIGGERS,
                vocab::BOUNDARY_EXTRA_KEYS,
                "a boundary event",
            ),
        };
        let body = self.empty_or_mapping(value, path, &format!("`{kind_key}`"))?;
        let empty = Mapping::new();
        let body = body.unwrap_or(&empty);
        let mut triggers = Vec::new();
        for (key, trigger_value) in body {
            let Some(key) = key.as_str() else {
                self.error(
                    path,
                    format!("keys in {what} must be text, found {}", describe(key)),
                );
                continue;
            };
            let key_path = path.key(key);
            if triggers_allowed.contains(&key) {
                if let Some(trigger) = self.trigger(key, trigger_value, &key_path) {
                    triggers.push(trigger);
                }
            } else if vocab::TRIGGER_KEYS.contains(&key) {
                let list = triggers_allowed
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    &key_path,
                    format!("{what} cannot use `{key}` (it can use {list})"),
                );
            } else if !extra.contains(&key) {
                let candidates = triggers_allowed.iter().chain(extra.iter()).copied();
                let hint = suggestion(key, candidates);
                self.error(&key_path, format!("unknown key `{key}` in {what}{hint}"));
            }
        }
        let parallel = self.optional_bool(body, path, "parallel", false);
        if parallel && triggers.len() < 2 {
            self.error(
                &path.key("parallel"),
                "`parallel: true` makes an event wait for all of its triggers; give it two or more",
            );
        }
        let trigger = match triggers.len() {
            0 => None,
            1 => triggers.pop(),
            _ if parallel => Some(EventTrigger::ParallelMultiple(triggers)),
            _ => Some(EventTrigger::Multiple(triggers)),
        };
        let interrupting = self.optional_bool(body, path, "interrupting", true);
        let needs_trigger = |reader: &mut Self| {
            let list = triggers_allowed
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ");
            reader.error_with_id(
                span,
                id,
                format!("{what} must say what it waits for: one of {list}"),
            );
        };
        match kind_key {
            "start" => Some(NodeKind::StartEvent {
                trigger,
                interrupting,
            }),
            "end" => Some(NodeKind::EndEvent { result: trigger }),
            "throw" => Some(NodeKind::IntermediateThrowEvent { result: trigger }),
            "catch" => match trigger {
                Some(trigger) => Some(NodeKind::IntermediateCatchEvent { trigger }),
                None => {
                    needs_trigger(self);
                    None
                }
            },
            _ => {
                let attached_to = match body.get("attached_to") {
                    Some(v) => self.id_text(v, &path.key("attached_to"), "`attached_to`"),
                    None => {
                        self.error_with_id(
                            span,
                            id,
                            "a boundary event names its activity: `attached_to: <activity id>`",
                        );
                        None
                    }
                };
                if let Some(activity) = &attached_to {
                    let at = self.map.nearest_value(&path.key("attached_to"));
                    scope
                        .attachments
                        .push((activity.clone(), at, id.to_string()));
                }
                match trigger {
                    Some(trigger) => Some(NodeKind::BoundaryEvent {
                        attached_to: attached_to?,
                        trigger,
                        interrupting,
                    }),
                    None => {
                        needs_trigger(self);
                        None
                    }
                }
            }
        }
    }

    fn trigger(&mut self, key: &str, value: &Value, path: &YamlPath) -> Option<EventTrigger> {
        match key {
            "message" => self.message_ref(value, path).map(EventTrigger::Message),
            "timer" => self.timer(value, path).map(EventTrigger::Timer),
            "signal" => self
                .nonempty_text(value, path, "a signal name")
                .map(|name| EventTrigger::Signal { name: Some(name) }),
            "error" => self
                .optional_code(value, path, "an error code")
                .map(|code| EventTrigger::Error { code }),
            "escalation" => self
                .optional_code(value, path, "an escalation code")
                .map(|code| EventTrigger::Escalation { code }),
            "condition" => self
                .expr(value, path, "a condition")
                .map(|c| EventTrigger::Conditional { condition: Some(c) }),
            "link" => self
                .nonempty_text(value, path, "a link name")
                .map(|name| EventTrigger::Link { name: Some(name) }),
            "compensation" if value.is_string() => self
                .id_text(value, path, "the activity to compensate")
                .map(|activity| EventTrigger::Compensation {
                    activity: Some(activity),
                }),
            flag => {
                match value {
                    Value::Bool(true) | Value::Null => {}
                    other => {
                        self.error_at_value(
                            path,
                            format!(
                                "write `{flag}: true` (or leave `{flag}` out), found {}",
                                describe(other)
                            ),
                        );
                        return None;
                    }
                }
                match flag {
                    "terminate" => Some(EventTrigger::Terminate),
                    "cancel" => Some(EventTrigger::Cancel),
                    _ => Some(EventTrigger::Compensation { activity: None }),
                }
            }
        }
    }

    /// An error or escalation code; nothing (`~`) means "any".
    fn optional_code(
        &mut self,
        value: &Value,
        path: &YamlPath,
        what: &str,
    ) -> Option<Option<String>> {
        match value {
            Value::Null => Some(None),
            Value::Number(n) => Some(Some(n.to_string())),
            other => self.nonempty_text(other, path, what).map(Some),
        }
    }

    /// A message: its name, or `{ name, correlation_key }`.
    fn message_ref(&mut self, value: &Value, path: &YamlPath) -> Option<MessageRef> {
        match value {
            Value::Mapping(m) => {
                self.check_keys(m, path, vocab::MESSAGE_KEYS, "a message");
                let name = match m.get("name") {
                    Some(v) => self.nonempty_text(v, &path.key("name"), "a message name"),
                    None => {
                        self.error(path, "a message needs `name:`");
                        None
                    }
                };
                let correlation_key = self.optional_expr(m, path, "correlation_key");
                Some(MessageRef {
                    name: Some(name?),
                    correlation_key,
                })
            }
            other => {
                let name = self.nonempty_text(other, path, "a message name")?;
                Some(MessageRef {
                    name: Some(name),
                    correlation_key: None,
                })
            }
        }
    }

    fn timer(&mut self, value: &Value, path: &YamlPath) -> Option<Timer> {
        let m = self.mapping(value, path, "`timer`")?;
        let allowed: Vec<&str> = vocab::TIMER_KEYS
            .iter()
            .chain(vocab::TIMER_EXTRA_KEYS)
            .copied()
            .collect();
        self.check_keys(m, path, &allowed, "a timer");
        let given: Vec<&str> = vocab::TIMER_KEYS
            .iter()
            .copied()
            .filter(|k| m.contains_key(*k))
            .collect();
        let key = match given.as_slice() {
            [one] => *one,
            [] => {
                self.error(path, "a timer needs one of `duration:` (PT10M), `date:` (2026-12-01T08:00:00Z) or `cycle:` (R5/PT10M or cron)");
                return None;
            }
            [first, second, ..] => {
                self.error(
                    path,
                    format!("a timer has one form; found both `{first}` and `{second}`"),
                );
                return None;
            }
        };
        let kind = match key {
            "duration" => TimerKind::Duration,
            "date" => TimerKind::Date,
            _ => TimerKind::Cycle,
        };
        let expression = self.expr(
            m.get(key).unwrap_or(&Value::Null),
            &path.key(key),
            &format!("the timer `{key}`"),
        )?;
        let time_zone = match m.get("time_zone") {
            Some(value) => Some(
                self.nonempty_text(value, &path.key("time_zone"), "`time_zone`")?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        if let Some(zone) = &time_zone {
            if let Err(err) = crate::timer::check_time_zone(zone) {
                self.error_at_value(&path.key("time_zone"), err.to_string());
                return None;
            }
        }
        Some(Timer {
            kind,
            expression,
            time_zone,
        })
    }

    // ----- tasks -------------------------------------------------------------------------

    fn task(&mut self, kind_key: &str, value: &Value, path: &YamlPath) -> Option<TaskKind> {
        match kind_key {
            "task" => {
                self.no_settings(value, path, "a plain task")?;
                Some(TaskKind::Plain)
            }
            "user" => {
                self.person_task_settings(value, path, "a user task")?;
                Some(TaskKind::User)
            }
            "manual" => {
                self.person_task_settings(value, path, "a manual task")?;
                Some(TaskKind::Manual)
            }
            "service" => {
                let handler = match value {
                    Value::Null => None,
                    Value::Mapping(m) => {
                        self.check_keys(m, path, vocab::SERVICE_KEYS, "a service task");
                        match m.get("handler") {
                            Some(v) => Some(self.nonempty_text(
                                v,
                                &path.key("handler"),
                                "a handler name",
                            )?),
                            None => None,
                        }
                    }
                    other => Some(self.nonempty_text(other, path, "a handler name")?),
                };
                Some(TaskKind::Service { handler })
            }
            "script" => self.script(value, path).map(|script| TaskKind::Script {
                script: Some(script),
            }),
            "receive" => {
                let message = match value {
                    Value::Null => None,
                    other => Some(self.message_ref(other, path)?),
                };
                Some(TaskKind::Receive { message })
            }
            "send" => match value {
                Value::Null => Some(TaskKind::Send {
                    message: None,
                    handler: None,
                }),
                Value::Mapping(m) => {
                    self.check_keys(m, path, vocab::SEND_KEYS, "a send task");
                    let message = match m.get("message") {
                        Some(v) => {
                            Some(self.nonempty_text(v, &path.key("message"), "a message name")?)
                        }
                        None => None,
                    };
                    let handler = match m.get("handler") {
                        Some(v) => {
                            Some(self.nonempty_text(v, &path.key("handler"), "a handler name")?)
                        }
                        None => None,
                    };
                    Some(TaskKind::Send { message, handler })
                }
                other => {
                    let message = self.nonempty_text(other, path, "a message name")?;
                    Some(TaskKind::Send {
                        message: Some(message),
                        handler: None,
                    })
                }
            },
            "business_rule" => match value {
                Value::Mapping(m) => {
                    self.check_keys(m, path, vocab::BUSINESS_RULE_KEYS, "a business-rule task");
                    let script = match m.get("script") {
                        Some(v) => Some(self.script(v, &path.key("script"))?),
                        None => None,
                    };
                    let decision = match m.get("decision") {
                        Some(v) => {
                            let decision_path = path.key("decision");
                            let id = self.id_text(v, &decision_path, "a decision id")?;
                            Some(DecisionCall {
                                decision: id,
                                result_variable: self.optional_id(m, path, "result"),
                                mapping: DecisionResultMapping::Value,
                                span: self.map.nearest_value(&decision_path),
                            })
                        }
                        None => None,
                    };
                    if m.contains_key("result") && !m.contains_key("decision") {
                        self.error(
                            &path.key("result"),
                            "`result` names the variable a `decision:` sets; this task has no decision",
                        );
                    }
                    if script.is_none() && decision.is_none() {
                        self.error(
                            path,
                            "a business-rule task needs `script:` (Rhai) or `decision:`",
                        );
                    }
                    if script.is_some() && decision.is_some() {
                        self.error(
                            path,
                            "a business-rule task has `script:` or `decision:`, not both",
                        );
                    }
                    Some(TaskKind::BusinessRule { script, decision })
                }
                other => {
                    let script = self.script(other, path)?;
                    Some(TaskKind::BusinessRule {
                        script: Some(script),
                        decision: None,
                    })
                }
            },
            _ => self.llm(value, path).map(TaskKind::Llm),
        }
    }

    /// Kinds that take no settings: nothing, or `{}`.
    /// The settings of a user or manual task: nothing, or `{ form: [...] }` (read by
    /// [`Self::form`]).
    fn person_task_settings(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<()> {
        match value {
            Value::Mapping(m) => {
                self.check_keys(m, path, vocab::PERSON_TASK_KEYS, what);
                Some(())
            }
            _ => self.no_settings(value, path, what),
        }
    }

    /// The `form:` of a user or manual task's settings: the variables a person fills in.
    fn form(&mut self, settings: &Value, path: &YamlPath) -> Vec<String> {
        let path = path.key("form");
        match settings.get("form") {
            None => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.nonempty_text(item, &path.index(i), "a variable name"))
                .collect(),
            Some(other) => {
                self.error_at_value(
                    &path,
                    format!(
                        "`form` must be a list of variable names, found {}",
                        describe(other)
                    ),
                );
                Vec::new()
            }
        }
    }

    fn no_settings(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<()> {
        match value {
            Value::Null => Some(()),
            Value::Mapping(m) if m.is_empty() => Some(()),
            other => {
                self.error_at_value(
                    path,
                    format!(
                        "{what} takes no settings (write nothing or `{{}}`), found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// A Rhai script: its source, or `{ source, language }`.
    fn script(&mut self, value: &Value, path: &YamlPath) -> Option<Script> {
        let (source_value, source_path, language) = match value {
            Value::Mapping(m) => {
                self.check_keys(m, path, vocab::SCRIPT_KEYS, "a script");
                let language = self.optional_text(m, path, "language");
                match m.get("source") {
                    Some(v) => (v, path.key("source"), language),
                    None => {
                        self.error(path, "a script needs `source:`");
                        return None;
                    }
                }
            }
            other => (other, path.clone(), None),
        };
        let source = self.nonempty_text(source_value, &source_path, "a script")?;
        Some(Script {
            language,
            source,
            span: self.map.nearest_value(&source_path),
        })
    }

    fn llm(&mut self, value: &Value, path: &YamlPath) -> Option<LlmTask> {
        let m = self.mapping(value, path, "`llm`")?;
        self.check_keys(m, path, vocab::LLM_KEYS, "an LLM step");
        let mode = match m.get("mode") {
            None => LlmMode::Generate,
            Some(v) => {
                let word = self.text(v, &path.key("mode"), "`mode`")?;
                match word.as_str() {
                    "generate" => LlmMode::Generate,
                    "extract" => LlmMode::Extract,
                    "classify" => LlmMode::Classify,
                    other => {
                        let hint = suggestion(other, vocab::LLM_MODES.iter().copied());
                        self.error_at_value(
                            &path.key("mode"),
                            format!("unknown LLM mode `{other}`{hint}"),
                        );
                        return None;
                    }
                }
            }
        };
        let prompt = match m.get("prompt") {
            Some(v) => self.nonempty_text(v, &path.key("prompt"), "`prompt`"),
            None => {
                self.error(path, "an LLM step needs `prompt:`");
                None
            }
        };
        let system = self.optional_text(m, path, "system");
        let output = self.optional_id(m, path, "output");
        let schema = match m.get("schema") {
            Some(v) => {
                let schema_path = path.key("schema");
                let json = self.json(v, &schema_path);
                if json.as_ref().is_some_and(|j| !j.is_object()) {
                    self.error_at_value(
                        &schema_path,
                        "`schema` must be a JSON Schema object (a mapping)",
                    );
                }
                json
            }
            None => None,
        };
        let labels = match m.get("labels") {
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    self.nonempty_text(item, &path.key("labels").index(i), "a label")
                })
                .collect(),
            Some(other) => {
                self.error_at_value(
                    &path.key("labels"),
                    format!("`labels` must be a list of text, found {}", describe(other)),
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        let options = match m.get("options") {
            Some(v) => match self.json(v, &path.key("options")) {
                Some(serde_json::Value::Object(map)) => map,
                Some(_) => {
                    self.error_at_value(
                        &path.key("options"),
                        "`options` must be a mapping (max_tokens, temperature, seed, ...)",
                    );
                    serde_json::Map::new()
                }
                None => serde_json::Map::new(),
            },
            None => serde_json::Map::new(),
        };
        match mode {
            LlmMode::Generate | LlmMode::Classify
                if output.is_none() && !m.contains_key("output") =>
            {
                self.error(
                    path,
                    "this LLM step needs `output:`, the variable that receives its result",
                );
            }
            _ => {}
        }
        if mode == LlmMode::Classify && labels.is_empty() && !m.contains_key("labels") {
            self.error(
                path,
                "a `classify` LLM step needs `labels:`, the answers it may choose from",
            );
        }
        if mode == LlmMode::Extract && schema.is_none() && !m.contains_key("schema") {
            self.error(
                path,
                "an `extract` LLM step needs `schema:`, the fields to extract",
            );
        }
        if mode != LlmMode::Classify && m.contains_key("labels") {
            self.error(
                &path.key("labels"),
                "`labels` applies to `mode: classify` only",
            );
        }
        Some(LlmTask {
            mode,
            prompt: prompt?,
            system,
            output,
            schema,
            labels,
            options,
        })
    }

    /// A YAML value as JSON (keys must be text).
    fn json(&mut self, value: &Value, path: &YamlPath) -> Option<serde_json::Value> {
        match serde_json::to_value(value) {
            Ok(json) => Some(json),
            Err(err) => {
                self.error_at_value(path, format!("cannot be read as JSON: {err}"));
                None
            }
        }
    }

    fn subprocess(&mut self, id: &str, value: &Value, path: &YamlPath) -> Option<SubProcess> {
        let m = self.mapping(value, path, "`subprocess`")?;
        self.check_keys(m, path, vocab::SUBPROCESS_KEYS, "a subprocess");
        let event_subprocess = self.optional_bool(m, path, "event", false);
        let transaction = self.optional_bool(m, path, "transaction", false);
        let scope = match m.get("nodes") {
            Some(nodes) => self.scope(nodes, &path.key("nodes")),
            None => {
                self.error(path, format!("subprocess `{id}` needs `nodes:`"));
                return None;
            }
        };
        Some(SubProcess {
            nodes: scope.nodes,
            flows: scope.flows,
            event_subprocess,
            transaction,
        })
    }

    // ----- activity settings -------------------------------------------------------------

    fn activity_settings(&mut self, body: &Mapping, path: &YamlPath, kind: &mut NodeKind) {
        let retry = body
            .get("retry")
            .and_then(|v| self.retry(v, &path.key("retry")));
        let multi_instance = body
            .get("for_each")
            .and_then(|v| self.for_each(v, &path.key("for_each")));
        let standard_loop = body
            .get("loop")
            .and_then(|v| self.standard_loop(v, &path.key("loop")));
        let io = IoMapping {
            inputs: self.mappings(body, path, "inputs"),
            outputs: self.mappings(body, path, "outputs"),
            pre_script: None,
            post_script: None,
        };
        let apply = |retry_slot: &mut Option<RetryPolicy>,
                     mi: &mut Option<MultiInstance>,
                     lp: &mut Option<StandardLoop>| {
            *retry_slot = retry.clone();
            *mi = multi_instance.clone();
            *lp = standard_loop.clone();
        };
        match kind {
            NodeKind::Task(a) => {
                apply(&mut a.retry, &mut a.multi_instance, &mut a.standard_loop);
                a.io = io;
            }
            NodeKind::SubProcess(a) => {
                apply(&mut a.retry, &mut a.multi_instance, &mut a.standard_loop);
                a.io = io;
            }
            NodeKind::CallActivity(a) => {
                apply(&mut a.retry, &mut a.multi_instance, &mut a.standard_loop);
                a.io = io;
            }
            _ => {}
        }
    }

    /// `inputs:` or `outputs:` of an activity: variable name → expression.
    fn mappings(
        &mut self,
        body: &Mapping,
        path: &YamlPath,
        key: &str,
    ) -> Vec<crate::model::Mapping> {
        let Some(value) = body.get(key) else {
            return Vec::new();
        };
        let map_path = path.key(key);
        let Some(entries) = self.mapping(value, &map_path, &format!("`{key}`")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, source) in entries {
            let Some(name_text) = name.as_str() else {
                self.error(&map_path, format!("variable names in `{key}` must be text"));
                continue;
            };
            let entry_path = map_path.key(name_text);
            let Some(target) = self.id_text(name, &entry_path, "a variable name") else {
                continue;
            };
            if let Some(source) = self.expr(source, &entry_path, &format!("`{key}.{target}`")) {
                out.push(crate::model::Mapping { target, source });
            }
        }
        out
    }

    /// `loop: true` (run until `max`), or `loop: { while: cond, test_before: bool, max: n }`.
    fn standard_loop(&mut self, value: &Value, path: &YamlPath) -> Option<StandardLoop> {
        match value {
            Value::Bool(true) => Some(StandardLoop::default()),
            Value::Bool(false) => None,
            Value::Mapping(m) => {
                self.check_keys(m, path, vocab::LOOP_KEYS, "a loop");
                let maximum = match m.get("max") {
                    None => None,
                    Some(v) => match v.as_u64() {
                        Some(n) => Some(n),
                        None => {
                            self.error_at_value(
                                &path.key("max"),
                                format!("`max` must be a whole number, found {}", describe(v)),
                            );
                            return None;
                        }
                    },
                };
                Some(StandardLoop {
                    condition: self.optional_expr(m, path, "while"),
                    test_before: self.optional_bool(m, path, "test_before", false),
                    maximum,
                })
            }
            other => {
                self.error_at_value(
                    path,
                    format!(
                        "`loop` takes `true` or `{{ while: <condition>, test_before: <bool>, max: <n> }}`, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// `retry: 3` or `retry: { retries: 3, delay: 2s, max_delay: 1m }`.
    fn retry(&mut self, value: &Value, path: &YamlPath) -> Option<RetryPolicy> {
        let (retries_value, retries_path, m) = match value {
            Value::Mapping(m) => {
                self.check_keys(m, path, vocab::RETRY_KEYS, "a retry policy");
                match m.get("retries") {
                    Some(v) => (v, path.key("retries"), Some(m)),
                    None => {
                        self.error(path, "a retry policy needs `retries:` (how many retries after the first failure)");
                        return None;
                    }
                }
            }
            other => (other, path.clone(), None),
        };
        let retries = match retries_value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => {
                self.error_at_value(
                    &retries_path,
                    format!(
                        "`retries` must be a whole number, found {}",
                        describe(retries_value)
                    ),
                );
                return None;
            }
        };
        let delay = |reader: &mut Self, key: &str, default: u64| match m.and_then(|m| m.get(key)) {
            Some(v) => reader.duration_ms(v, &path.key(key), key),
            None => Some(default),
        };
        let initial_delay_ms = delay(self, "delay", vocab::DEFAULT_RETRY_DELAY_MS)?;
        let max_delay_ms = delay(
            self,
            "max_delay",
            vocab::DEFAULT_RETRY_MAX_DELAY_MS.max(initial_delay_ms),
        )?;
        if max_delay_ms < initial_delay_ms {
            self.error(
                &path.key("max_delay"),
                "`max_delay` is shorter than `delay`",
            );
            return None;
        }
        Some(RetryPolicy {
            retries,
            initial_delay_ms,
            max_delay_ms,
        })
    }

    /// Milliseconds: a whole number, or a number with a unit (`500ms`, `2s`, `5m`, `1h`).
    fn duration_ms(&mut self, value: &Value, path: &YamlPath, key: &str) -> Option<u64> {
        if let Some(n) = value.as_u64() {
            return Some(n);
        }
        let parsed = value
            .as_str()
            .and_then(crate::timer::parse_short_duration_ms);
        if parsed.is_none() {
            self.error_at_value(
                path,
                format!(
                    "`{key}` must be milliseconds or a duration such as `500ms`, `2s`, `5m`, `1h`, found {}",
                    describe(value)
                ),
            );
        }
        parsed
    }

    fn for_each(&mut self, value: &Value, path: &YamlPath) -> Option<MultiInstance> {
        let m = self.mapping(value, path, "`for_each`")?;
        self.check_keys(m, path, vocab::FOR_EACH_KEYS, "`for_each`");
        let collection = self.optional_expr(m, path, "over");
        let cardinality = self.optional_expr(m, path, "count");
        if !m.contains_key("over") && !m.contains_key("count") {
            self.error(path, "`for_each` needs `over:` (a list to run once per item) or `count:` (how many times)");
        }
        let element_variable = self.optional_id(m, path, "as");
        if m.contains_key("as") && !m.contains_key("over") {
            self.error(
                &path.key("as"),
                "`as` names the current item of `over:`, which is missing",
            );
        }
        let sequential = self.optional_bool(m, path, "sequential", false);
        let completion_condition = self.optional_expr(m, path, "until");
        let output_element = self.optional_id(m, path, "collect");
        let output_collection = self.optional_id(m, path, "into");
        if m.contains_key("collect") != m.contains_key("into") {
            self.error(
                path,
                "`collect:` (the variable each run produces) and `into:` (the list that gathers them) go together",
            );
        }
        Some(MultiInstance {
            sequential,
            collection,
            element_variable,
            cardinality,
            completion_condition,
            output_collection,
            output_element,
        })
    }

    // ----- rules -------------------------------------------------------------------------

    /// The `rules:` of a node (`node` is its id, `kind_key` its kind), or of the whole process
    /// (both [`PROCESS_LEVEL`]).
    fn rules(
        &mut self,
        node: &str,
        kind_key: &str,
        value: &Value,
        path: &YamlPath,
    ) -> Vec<RuleAttachment> {
        let Value::Sequence(items) = value else {
            self.error_at_value(
                path,
                format!("`rules` must be a list, found {}", describe(value)),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let item_path = path.index(index);
            let Some(m) = self.mapping(item, &item_path, "a rule") else {
                continue;
            };
            self.check_keys(m, &item_path, vocab::RULE_KEYS, "a rule");
            let span = self
                .map
                .key(&item_path)
                .unwrap_or_else(|| self.map.nearest(&item_path));
            let point_word = match m.get("on") {
                Some(v) => self.text(v, &item_path.key("on"), "`on`"),
                None => {
                    let list = vocab::RULE_POINTS.join(", ");
                    self.error(
                        &item_path,
                        format!("a rule needs `on:`, when it runs ({list})"),
                    );
                    None
                }
            };
            let variable = self.rule_variable(m, &item_path);
            let point = point_word.and_then(|word| {
                let takes_variable = vocab::RULE_POINTS_WITH_VARIABLE.contains(&word.as_str());
                if takes_variable && variable.is_none() && !m.contains_key("variable") {
                    self.error(&item_path, format!("`on: {word}` needs `variable:`, the variable it watches"));
                }
                if !takes_variable && m.contains_key("variable") {
                    self.error(
                        &item_path.key("variable"),
                        format!(
                            "`variable` applies to `on: guard_variable` and `on: variable_change`, not `on: {word}`"
                        ),
                    );
                }
                if word == "start" && kind_key != "start" && kind_key != PROCESS_LEVEL {
                    self.error(&item_path.key("on"), format!("`on: start` rules belong on the start event, not on `{node}`"));
                }
                if !vocab::RULE_POINTS.contains(&word.as_str()) {
                    let hint = suggestion(&word, vocab::RULE_POINTS.iter().copied());
                    self.error_at_value(&item_path.key("on"), format!("unknown rule moment `on: {word}`{hint}"));
                    return None;
                }
                // A missing or misplaced `variable` was reported above, positioned.
                AttachPoint::parse(&word, variable.as_deref()).ok()
            });
            let rule = match (m.get("file"), m.get("script")) {
                (Some(f), None) => self
                    .rule_file(f, &item_path.key("file"))
                    .map(RuleSource::File),
                (None, Some(s)) => self
                    .nonempty_text(s, &item_path.key("script"), "an inline rule script")
                    .map(RuleSource::Inline),
                (Some(_), Some(_)) => {
                    self.error(
                        &item_path,
                        "a rule has either `file:` or `script:`, not both",
                    );
                    None
                }
                (None, None) => {
                    self.error(
                        &item_path,
                        "a rule needs `file:` (a file under rules/) or `script:` (inline Rhai)",
                    );
                    None
                }
            };
            if let (Some(point), Some(rule)) = (point, rule) {
                out.push(RuleAttachment { point, rule, span });
            }
        }
        out
    }

    /// The `variable:` a rule watches: a variable name, or a prefix ending in `*` (`shipment*`).
    fn rule_variable(&mut self, rule: &Mapping, path: &YamlPath) -> Option<String> {
        let value = rule.get("variable")?;
        let text = self.text(value, &path.key("variable"), "`variable`")?;
        let name = text.strip_suffix('*').unwrap_or(&text);
        if !vocab::is_valid_id(name) {
            self.error_at_value(
                &path.key("variable"),
                format!(
                    "`variable` `{text}` is not a variable name (or a name prefix ending in `*`)"
                ),
            );
            return None;
        }
        Some(text)
    }

    /// A rule file path: relative, inside the rules folder (no `..`, not absolute).
    fn rule_file(&mut self, value: &Value, path: &YamlPath) -> Option<String> {
        let file = self.nonempty_text(value, path, "a rule file")?;
        let escapes = Path::new(&file).components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if escapes || file.contains('\\') {
            self.error_at_value(
                path,
                format!(
                    "rule file `{file}` must be a relative path inside the rules folder (no `..`, no absolute path)"
                ),
            );
            return None;
        }
        Some(file)
    }

    // ----- lanes -------------------------------------------------------------------------

    fn lanes(&mut self, value: &Value, path: &YamlPath, scope: &Scope) -> Vec<Lane> {
        let Some(m) = self.mapping(value, path, "`lanes`") else {
            return Vec::new();
        };
        let node_ids: Vec<&str> = scope.written_ids.iter().map(String::as_str).collect();
        let known: HashSet<&str> = node_ids.iter().copied().collect();
        let mut lanes = Vec::new();
        for (key, lane) in m {
            let Some(id) = key.as_str() else {
                self.error(
                    path,
                    format!("lane ids must be text, found {}", describe(key)),
                );
                continue;
            };
            let lane_path = path.key(id);
            if let Some(span) = self.map.key(&lane_path) {
                self.claim_id(id, span);
            }
            let (name, nodes) = match lane {
                Value::Sequence(_) => (None, Some(lane)),
                Value::Mapping(lm) => {
                    self.check_keys(lm, &lane_path, vocab::LANE_KEYS, &format!("lane `{id}`"));
                    (self.optional_text(lm, &lane_path, "name"), lm.get("nodes"))
                }
                other => {
                    self.error_at_value(
                        &lane_path,
                        format!(
                            "lane `{id}` must be a mapping with `name:` and `nodes:`, found {}",
                            describe(other)
                        ),
                    );
                    continue;
                }
            };
            let nodes_path = if matches!(lane, Value::Sequence(_)) {
                lane_path.clone()
            } else {
                lane_path.key("nodes")
            };
            let mut members = Vec::new();
            match nodes {
                Some(Value::Sequence(items)) => {
                    for (index, item) in items.iter().enumerate() {
                        let item_path = nodes_path.index(index);
                        let Some(node) = self.id_text(item, &item_path, "a lane member") else {
                            continue;
                        };
                        if !known.contains(node.as_str()) {
                            let hint = self.id_hint(&node, node_ids.iter().copied());
                            self.error_at_value(
                                &item_path,
                                format!("lane `{id}` lists unknown node `{node}`{hint}"),
                            );
                        }
                        members.push(node);
                    }
                }
                Some(other) => self.error_at_value(
                    &nodes_path,
                    format!(
                        "lane `{id}`: `nodes` must be a list of node ids, found {}",
                        describe(other)
                    ),
                ),
                None => self.error(
                    &lane_path,
                    format!("lane `{id}` needs `nodes:`, the ids of its nodes"),
                ),
            }
            lanes.push(Lane {
                id: id.to_string(),
                name,
                nodes: members,
            });
        }
        lanes
    }
}

/// Adds the ids of the nodes in `nodes` and in the subprocesses among them to `out`.
fn collect_node_ids(nodes: &Value, out: &mut HashSet<String>) {
    let Some(nodes) = nodes.as_mapping() else {
        return;
    };
    for (key, body) in nodes {
        if let Some(id) = key.as_str() {
            out.insert(id.to_string());
        }
        if let Some(inner) = body.get("subprocess").and_then(|sub| sub.get("nodes")) {
            collect_node_ids(inner, out);
        }
    }
}

/// Whether a node kind is an activity (can carry boundary events).
fn is_activity(kind: &NodeKind) -> bool {
    matches!(
        kind,
        NodeKind::Task(_) | NodeKind::SubProcess(_) | NodeKind::CallActivity(_)
    )
}

/// The text of a scalar key as written (numbers and booleans as text), to locate it.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A short description of a YAML value for error messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("the text \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("the text \"{s}\""),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged `{}` (YAML tags are not used here)", t.tag),
    }
}
