//! The serde views of the application: what `flowbot run --json`, `flowbot history --json` and
//! the HTTP API show. One view per thing, so every interface says the same.
//!
//! Invariants: field names are the contract (`docs/api.md`); times are RFC 3339 strings in UTC;
//! a task or incident is addressed by its id `instance:activation` everywhere.

use flowbot_engine::executor::{InstanceStatus, WaitType};
use flowbot_engine::runtime::{
    wait_id, Deployed, IncidentInfo, InstanceInfo, Notification, NotificationKind, TaskInfo,
    WaitInfo,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch as an RFC 3339 UTC time (`2026-12-06T08:00:00.000Z`).
pub fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// The process it runs.
    pub process: String,
    /// The process version it runs (for life).
    pub version: u32,
    /// The business key given at start.
    pub business_key: Option<String>,
    /// `waiting`, `completed`, `failed` or `terminated`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "waiting"))]
    pub status: InstanceStatus,
    /// Completed nodes in order.
    pub path: Vec<String>,
    /// The process variables.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub variables: Map<String, Value>,
    /// What it waits for.
    pub waiting_on: Vec<WaitView>,
    /// What stopped it or awaits an operator.
    pub incidents: Vec<IncidentView>,
    /// When it started.
    pub started: String,
    /// When it ended.
    pub ended: Option<String>,
}

impl From<&InstanceInfo> for InstanceView {
    fn from(info: &InstanceInfo) -> Self {
        let incidents = info
            .incidents
            .iter()
            .map(|incident| IncidentView {
                id: None,
                node: incident.node.clone(),
                message: incident.message.clone(),
                at: Some(incident.at.clone()),
                attempts: None,
                instance: None,
                call: None,
            })
            .chain(info.engine_incidents.iter().map(|incident| IncidentView {
                id: Some(wait_id(&info.id, incident.activation)),
                node: incident.node.clone(),
                message: incident.message.clone(),
                at: None,
                attempts: Some(incident.attempts),
                instance: None,
                call: None,
            }))
            .chain(info.child_incidents.iter().map(|incident| {
                IncidentView {
                    id: incident
                        .activation
                        .map(|activation| wait_id(&incident.instance, activation)),
                    node: incident.node.clone(),
                    message: incident.message.clone(),
                    at: None,
                    attempts: None,
                    instance: Some(incident.instance.clone()),
                    call: Some(incident.call.clone()),
                }
            }))
            .collect();
        Self {
            id: info.id.clone(),
            process: info.process_id.clone(),
            version: info.version,
            business_key: info.business_key.clone(),
            status: info.status,
            path: info.path.clone(),
            variables: info.variables.clone(),
            waiting_on: info
                .waiting_on
                .iter()
                .map(|wait| WaitView::of(&info.id, wait))
                .collect(),
            incidents,
            started: time(info.started_ms),
            ended: info.ended_ms.map(time),
        }
    }
}

impl From<InstanceInfo> for InstanceView {
    fn from(info: InstanceInfo) -> Self {
        InstanceView::from(&info)
    }
}

/// One thing an instance waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitView {
    /// The task id (`instance:activation`) to complete it with, for user tasks and
    /// language-model steps; `None` for waits that outside events complete.
    pub task: Option<String>,
    /// The waiting node.
    pub node: String,
    /// `user`, `job`, `message`, `timer`, `signal`, `llm` or `condition`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "user"))]
    pub kind: WaitType,
    /// The wait's activation (unique within the instance).
    pub activation: u64,
    /// When it began.
    pub since: Option<String>,
    /// Handler of a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Message name of a message wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Correlation key of a message wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_key: Option<String>,
    /// Signal name of a signal wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The condition of a conditional event, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The timer as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<String>,
    /// When the timer is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
}

impl WaitView {
    fn of(instance: &str, wait: &WaitInfo) -> Self {
        let is_task = matches!(wait.kind, WaitType::User | WaitType::Llm);
        Self {
            task: is_task.then(|| wait_id(instance, wait.activation)),
            node: wait.node.clone(),
            kind: wait.kind,
            activation: wait.activation,
            since: wait.since_ms.map(time),
            handler: wait.handler.clone(),
            message: wait.message.clone(),
            correlation_key: wait.correlation_key.clone(),
            signal: wait.signal.clone(),
            condition: wait.condition.clone(),
            timer: wait.timer.clone(),
            due: wait.due_ms.map(time),
        }
    }
}

/// A problem of an instance: an executor incident (it failed; `at` says where in the source) or
/// an engine incident (a job's retries ran out; `id` retries or resolves it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentView {
    /// `instance:activation`, for incidents an operator can retry or resolve.
    pub id: Option<String>,
    /// The node concerned.
    pub node: String,
    /// What went wrong.
    pub message: String,
    /// `file:line:col` of the cause in the process source.
    pub at: Option<String>,
    /// How many calls were made, for a job.
    pub attempts: Option<u32>,
    /// The called instance it happened in, when not this one (a child's incident shows on its
    /// caller; retry or resolve it there, `id` names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// This instance's call activity that waits for that instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
}

/// An open incident in an operator's list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenIncidentView {
    /// `instance:activation`.
    pub id: String,
    /// The instance.
    pub instance: String,
    /// Its process.
    pub process: String,
    /// Its business key.
    pub business_key: Option<String>,
    /// The node concerned.
    pub node: String,
    /// What went wrong.
    pub message: String,
    /// How many calls were made.
    pub attempts: u32,
}

impl From<IncidentInfo> for OpenIncidentView {
    fn from(info: IncidentInfo) -> Self {
        Self {
            id: info.id,
            instance: info.instance,
            process: info.process_id,
            business_key: info.business_key,
            node: info.incident.node,
            message: info.incident.message,
            attempts: info.incident.attempts,
        }
    }
}

/// An open task in a task list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    /// `instance:activation`: what completes it.
    pub id: String,
    /// The instance.
    pub instance: String,
    /// Its process.
    pub process: String,
    /// Its business key.
    pub business_key: Option<String>,
    /// The task's node.
    pub node: String,
    /// The task's name.
    pub name: Option<String>,
    /// `user`, or `llm` for a language-model step waiting for a person.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "user"))]
    pub kind: WaitType,
    /// When it opened.
    pub created: Option<String>,
    /// The variables the task's form lists, with their current values (`null` when unset): what
    /// a form shows pre-filled. Empty when the process declares no form.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub form: Map<String, Value>,
}

impl From<TaskInfo> for TaskView {
    fn from(task: TaskInfo) -> Self {
        Self {
            id: task.id,
            instance: task.instance,
            process: task.process_id,
            business_key: task.business_key,
            node: task.node,
            name: task.name,
            kind: task.kind,
            created: task.created_ms.map(time),
            form: task.form,
        }
    }
}

/// One entry of the notification log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationView {
    /// Its number; resume after it.
    pub seq: u64,
    /// Who it is for.
    pub receiver: String,
    /// The rule that sent it.
    pub sender: String,
    /// The text, or the event payload.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub content: Value,
    /// The instance it came from.
    pub instance: String,
    /// When.
    pub time: String,
    /// `notify` or `event`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "notify"))]
    pub kind: NotificationKind,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        Self {
            seq: n.seq,
            receiver: n.receiver,
            sender: n.sender,
            content: n.content,
            instance: n.instance,
            time: time(n.time_ms),
            kind: n.kind,
        }
    }
}

/// One deployed version of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentView {
    /// The process id.
    pub process: String,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// The version number (1, 2, ...).
    pub version: u32,
    /// The content hash: identical content is the same version.
    pub content_hash: String,
    /// The file it was deployed from.
    pub source: String,
    /// When it was deployed.
    pub deployed: String,
}

impl From<&Deployed> for DeploymentView {
    fn from(deployed: &Deployed) -> Self {
        Self {
            process: deployed.process_id.clone(),
            name: deployed.process.name.clone(),
            version: deployed.version,
            content_hash: deployed.content_hash.clone(),
            source: deployed.process.source.display().to_string(),
            deployed: time(deployed.deployed_ms),
        }
    }
}

/// A process with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DefinitionView {
    /// The process id.
    pub id: String,
    /// Its name (of the latest version).
    pub name: Option<String>,
    /// The latest version.
    pub latest: u32,
    /// Every version, oldest first.
    pub versions: Vec<DeploymentView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowbot_engine::runtime::ChildIncident;

    #[test]
    fn a_childs_incident_shows_on_its_caller_with_the_id_to_retry_it_by() {
        let info: InstanceInfo = serde_json::from_value(serde_json::json!({
            "id": "order-1", "process_id": "order", "version": 1, "business_key": null,
            "status": "waiting", "variables": {}, "path": ["begin"], "waiting_on": [],
            "incidents": [], "engine_incidents": [], "started_ms": 0, "ended_ms": null,
        }))
        .unwrap();
        let info = InstanceInfo {
            child_incidents: vec![ChildIncident {
                call: "bill".into(),
                instance: "order-1.2.2".into(),
                node: "post_it".into(),
                message: "ledger locked".into(),
                activation: Some(3),
            }],
            ..info
        };
        let view = InstanceView::from(&info);
        let incident = &view.incidents[0];
        assert_eq!(incident.id.as_deref(), Some("order-1.2.2:3"));
        assert_eq!(incident.instance.as_deref(), Some("order-1.2.2"));
        assert_eq!(incident.call.as_deref(), Some("bill"));
        assert_eq!(incident.node, "post_it");
        assert_eq!(incident.message, "ledger locked");
    }
}
