//! Listings for operators and task lists: instances (filtered, paged), open tasks, incidents.
//!
//! Invariants: a listing never blocks a turn for longer than copying one instance's state; a
//! page of stored instances examines at most `SCAN_BUDGET` records, so one request does bounded
//! work however large the store (a page may then hold fewer items than asked and still carry a
//! cursor).

use super::api::{
    wait_id, EngineError, IncidentInfo, InstanceFilter, InstanceInfo, Page, TaskFilter, TaskInfo,
};
use super::engine::Engine;
use super::record::{decode, StoredInstance};
use super::{Inner, Live};
use crate::executor::{WaitKind, WaitType};
use crate::shard::ShardSet;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// A running instance by id, for a listing.
type Running = (String, Arc<Mutex<Live>>);

/// Stored instances examined per listing call at most.
const SCAN_BUDGET: usize = 5_000;

impl Inner {
    /// The running instances, sorted by id: those in memory, and, when other engines on the
    /// store own some shards, theirs as the store holds them (copies, read for this listing).
    fn live_sorted(&self) -> Vec<Running> {
        let mut all: Vec<Running> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, live)| (id.clone(), live.clone()))
            .collect();
        let elsewhere = ShardSet::ALL.minus(self.owned());
        if !elsewhere.is_empty() {
            match self.stored_running(elsewhere) {
                Ok(theirs) => all.extend(theirs),
                Err(err) => {
                    tracing::warn!(error = %err, "the listing shows this engine's shards only")
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The unfinished instances of `shards` as stored.
    fn stored_running(&self, shards: ShardSet) -> Result<Vec<Running>, EngineError> {
        let stored = self.stored_unfinished(shards)?;
        let versions = self.versions.read().unwrap_or_else(|e| e.into_inner());
        let mut found = Vec::new();
        for (id, stored) in stored {
            // A version deployed a moment ago elsewhere is known here within a second.
            if let Some(deployed) = versions.get(&stored.process_id, stored.version).cloned() {
                found.push((id, Arc::new(Mutex::new(Live::new(stored, deployed)))));
            }
        }
        Ok(found)
    }
}

impl Engine {
    /// A page of instances that pass `filter`, in id order, starting after `cursor` (a
    /// `next_cursor` of an earlier page), at most `limit` of them. Unfinished instances come from
    /// memory; a listing that may include ended ones pages through the store.
    pub fn list_instances(
        &self,
        filter: &InstanceFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InstanceInfo>, EngineError> {
        let limit = limit.max(1);
        if filter.status.is_some_and(|status| status.is_active()) {
            let mut items = Vec::new();
            let mut next_cursor = None;
            for (id, live) in self.inner.live_sorted() {
                if cursor.is_some_and(|after| id.as_str() <= after) {
                    continue;
                }
                let info = InstanceInfo::of(&live.lock().unwrap_or_else(|e| e.into_inner()).stored);
                if !filter.matches(&info) {
                    continue;
                }
                if items.len() == limit {
                    next_cursor = items.last().map(|last: &InstanceInfo| last.id.clone());
                    break;
                }
                items.push(self.with_child_incidents(info));
            }
            return Ok(Page { items, next_cursor });
        }
        let mut items = Vec::new();
        let mut after = cursor.map(str::to_string);
        let mut examined = 0;
        loop {
            let chunk = (limit - items.len()).clamp(64, 1_000);
            let page = self.inner.store.instances_after(after.as_deref(), chunk)?;
            let exhausted = page.len() < chunk;
            for (id, bytes) in page {
                examined += 1;
                after = Some(id);
                let stored: StoredInstance =
                    decode(&bytes, "instance").map_err(EngineError::Decode)?;
                let info = InstanceInfo::of(&stored);
                if filter.matches(&info) {
                    items.push(self.with_child_incidents(info));
                    if items.len() == limit {
                        return Ok(Page {
                            items,
                            next_cursor: after,
                        });
                    }
                }
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            if examined >= SCAN_BUDGET {
                return Ok(Page {
                    items,
                    next_cursor: after,
                });
            }
        }
    }

    /// The open user and manual tasks (and language-model steps waiting for a person, when no
    /// model answers them) that pass `filter`, oldest first.
    pub fn open_tasks(&self, filter: &TaskFilter) -> Vec<TaskInfo> {
        let waits_for_a_person = |kind: &WaitKind| match kind {
            WaitKind::User { .. } => true,
            WaitKind::Llm { .. } => self.inner.generator.is_none(),
            _ => false,
        };
        let mut tasks = Vec::new();
        for (id, live) in self.inner.live_sorted() {
            if filter
                .instance
                .as_deref()
                .is_some_and(|wanted| wanted != id)
            {
                continue;
            }
            let live = live.lock().unwrap_or_else(|e| e.into_inner());
            if filter
                .process_id
                .as_deref()
                .is_some_and(|wanted| wanted != live.stored.process_id)
            {
                continue;
            }
            for wait in live.stored.instance.waits() {
                if !waits_for_a_person(&wait.kind)
                    || filter.node.as_deref().is_some_and(|node| node != wait.node)
                {
                    continue;
                }
                let process = &live.deployed.process;
                let node = process
                    .node_index(&wait.node)
                    .map(|index| process.node(index));
                let name = node.and_then(|node| node.name.clone());
                let variables = live.stored.instance.variables();
                let form = node
                    .map(|node| {
                        node.form
                            .iter()
                            .map(|field| {
                                let value = variables.get(field).cloned().unwrap_or(Value::Null);
                                (field.clone(), value)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                tasks.push(TaskInfo {
                    id: wait_id(&id, wait.activation),
                    instance: id.clone(),
                    process_id: live.stored.process_id.clone(),
                    business_key: live.stored.business_key.clone(),
                    node: wait.node.clone(),
                    name,
                    kind: match wait.kind {
                        WaitKind::Llm { .. } => WaitType::Llm,
                        _ => WaitType::User,
                    },
                    created_ms: live
                        .stored
                        .opened
                        .iter()
                        .find(|o| o.activation == wait.activation)
                        .map(|o| o.at_ms),
                    activation: wait.activation,
                    form,
                });
            }
        }
        tasks.sort_by_key(|task| (task.created_ms, task.id.clone()));
        tasks
    }

    /// The open incidents of running instances (retries ran out, a timer cannot be armed),
    /// by instance.
    pub fn incidents(&self) -> Vec<IncidentInfo> {
        let mut incidents = Vec::new();
        for (id, live) in self.inner.live_sorted() {
            let live = live.lock().unwrap_or_else(|e| e.into_inner());
            for incident in &live.stored.incidents {
                incidents.push(IncidentInfo {
                    id: wait_id(&id, incident.activation),
                    instance: id.clone(),
                    process_id: live.stored.process_id.clone(),
                    business_key: live.stored.business_key.clone(),
                    incident: incident.clone(),
                });
            }
        }
        incidents
    }
}
