//! Deployed definitions and their versions: a sequence number per process plus a content hash.
//! Redeploying identical content returns the existing version; running instances keep the
//! version they started on.

use crate::graph::CompiledProcess;
use crate::model::{Definitions, EventTrigger, Node, NodeKind, RetryPolicy, Timer};
use std::collections::HashMap;
use std::sync::Arc;

/// One deployed version of a process.
#[derive(Debug)]
pub struct Deployed {
    /// The process id.
    pub process_id: String,
    /// 1, 2, ... per process.
    pub version: u32,
    /// Hash of the definition content (hex).
    pub content_hash: String,
    /// The compiled process instances of this version run.
    pub process: CompiledProcess,
    /// Retry policies of the activities that declare one, by node id.
    pub retries: HashMap<String, RetryPolicy>,
    /// The triggered start events of the process (timer, message, signal), in document order.
    pub starts: Vec<StartTrigger>,
    /// When it was deployed (ms since the Unix epoch, engine clock).
    pub deployed_ms: u64,
}

/// A start event with a trigger: what creates instances of a deployed process.
#[derive(Debug, Clone, PartialEq)]
pub enum StartTrigger {
    /// A timer start event: the engine schedules it when the version is deployed.
    Timer {
        /// The start event.
        node: String,
        /// Its timer.
        timer: Timer,
    },
    /// A message start event: a correlated message no instance waits for starts one.
    Message {
        /// The start event.
        node: String,
        /// The message name.
        name: String,
    },
    /// A signal start event: a broadcast signal starts one instance.
    Signal {
        /// The start event.
        node: String,
        /// The signal name.
        name: String,
    },
}

impl StartTrigger {
    /// The start event's id.
    pub fn node(&self) -> &str {
        match self {
            StartTrigger::Timer { node, .. }
            | StartTrigger::Message { node, .. }
            | StartTrigger::Signal { node, .. } => node,
        }
    }
}

/// The triggered start events of the top level of `process_id`.
pub(crate) fn start_triggers(defs: &Definitions, process_id: &str) -> Vec<StartTrigger> {
    let Some(process) = defs.processes.iter().find(|p| p.id == process_id) else {
        return Vec::new();
    };
    let mut triggers = Vec::new();
    for node in &process.nodes {
        let NodeKind::StartEvent {
            trigger: Some(trigger),
            ..
        } = &node.kind
        else {
            continue;
        };
        // A multiple start event starts an instance on any of its triggers.
        let each = match trigger {
            EventTrigger::Multiple(each) => each.as_slice(),
            single => std::slice::from_ref(single),
        };
        for trigger in each {
            let node = node.id.clone();
            triggers.extend(match trigger {
                EventTrigger::Timer(timer) => Some(StartTrigger::Timer {
                    node,
                    timer: timer.clone(),
                }),
                EventTrigger::Message(message) => Some(StartTrigger::Message {
                    node,
                    name: message.name.clone().unwrap_or_default(),
                }),
                EventTrigger::Signal { name } => Some(StartTrigger::Signal {
                    node,
                    name: name.clone().unwrap_or_default(),
                }),
                _ => None,
            });
        }
    }
    triggers
}

/// Collects the retry policies declared on the activities of `process_id` (subprocesses too).
pub(crate) fn retry_policies(defs: &Definitions, process_id: &str) -> HashMap<String, RetryPolicy> {
    fn walk(nodes: &[Node], out: &mut HashMap<String, RetryPolicy>) {
        for node in nodes {
            let retry = match &node.kind {
                NodeKind::Task(a) => a.retry.clone(),
                NodeKind::CallActivity(a) => a.retry.clone(),
                NodeKind::SubProcess(a) => {
                    walk(&a.body.nodes, out);
                    a.retry.clone()
                }
                _ => None,
            };
            if let Some(retry) = retry {
                out.insert(node.id.clone(), retry);
            }
        }
    }
    let mut out = HashMap::new();
    if let Some(process) = defs.processes.iter().find(|p| p.id == process_id) {
        walk(&process.nodes, &mut out);
    }
    out
}

/// Every deployed version, by process id, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    by_process: HashMap<String, Vec<Arc<Deployed>>>,
}

impl Versions {
    /// The latest version of a process.
    pub fn latest(&self, process_id: &str) -> Option<&Arc<Deployed>> {
        self.by_process.get(process_id).and_then(|v| v.last())
    }

    /// A given version of a process.
    pub fn get(&self, process_id: &str, version: u32) -> Option<&Arc<Deployed>> {
        self.by_process
            .get(process_id)
            .and_then(|v| v.iter().find(|d| d.version == version))
    }

    /// Adds a version, kept in version order (one compiled from the store may come after a
    /// newer one deployed here).
    pub fn add(&mut self, deployed: Arc<Deployed>) {
        let versions = self
            .by_process
            .entry(deployed.process_id.clone())
            .or_default();
        let at = versions.partition_point(|known| known.version < deployed.version);
        versions.insert(at, deployed);
    }

    /// The latest version of every process.
    pub fn latest_all(&self) -> Vec<Arc<Deployed>> {
        let mut latest: Vec<_> = self
            .by_process
            .values()
            .filter_map(|v| v.last())
            .cloned()
            .collect();
        latest.sort_by(|a, b| a.process_id.cmp(&b.process_id));
        latest
    }

    /// Every version of every process, by process id then version.
    pub fn all(&self) -> Vec<Arc<Deployed>> {
        let mut all: Vec<_> = self.by_process.values().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.process_id, a.version).cmp(&(&b.process_id, b.version)));
        all
    }
}

/// The content hash of definitions: independent of the file they were read from.
pub(crate) fn content_hash(defs: &Definitions) -> String {
    use sha2::{Digest, Sha256};
    let mut content = defs.clone();
    content.source = Default::default();
    let json = serde_json::to_vec(&content).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Key of a deployment in the definitions table: process id, a zero byte, big-endian version.
pub(crate) fn deployment_key(process_id: &str, version: u32) -> Vec<u8> {
    let mut key = process_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// Key of a timer start schedule in the schedules table: process id, a zero byte, start event id.
pub(crate) fn schedule_key(process_id: &str, node: &str) -> Vec<u8> {
    let mut key = schedule_prefix(process_id);
    key.extend_from_slice(node.as_bytes());
    key
}

/// The prefix shared by the schedule keys of `process_id`'s timer start events.
pub(crate) fn schedule_prefix(process_id: &str) -> Vec<u8> {
    let mut key = process_id.as_bytes().to_vec();
    key.push(0);
    key
}
