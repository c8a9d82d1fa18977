//! The REST API under `/api/v1` and the service routes (`/healthz`, `/readyz`, `/metrics`): thin
//! adapters that validate a request, call one service of the application and show its view.
//!
//! Invariant: a request that fails validation (400), names something unknown (404) or is
//! refused by a guard (409) changes no stored state: validation happens before the service is
//! called, and the services refuse before they commit.

use crate::extract::{parse_param, JsonBody, QueryParams};
use crate::graph_svg;
use crate::problem::{ApiError, Problem};
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowbot_app::view::{
    DefinitionView, DeploymentView, InstanceView, NotificationView, OpenIncidentView, TaskView,
};
use flowbot_app::{InstanceFilter, InstanceStatus, StartRequest, TaskFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use utoipa::{IntoParams, ToSchema};

type Shared = State<Arc<ServerState>>;

/// The most instances one page holds.
pub const MAX_PAGE: usize = 1000;
/// Instances per page when no `limit` is given.
pub const DEFAULT_PAGE: usize = 50;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process answers.
    pub status: &'static str,
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether the service takes work.
    pub ready: bool,
    /// Whether the store answers.
    pub store: bool,
    /// `loaded`, `not_needed` (no deployed process has an LLM step) or `missing`.
    pub model: &'static str,
    /// Instances in the store.
    pub instances: u64,
    /// The shards whose instances this node serves, as ranges (`0-63` alone on its store;
    /// several nodes on one database divide them, and a node holding none is not ready).
    pub shards: String,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: the store answers, the model is loaded when a process needs one, and the node
/// serves some shards.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "Not ready (store, model or no shard yet)", body = Readiness)))]
pub async fn readyz(State(state): Shared) -> Response {
    let app = &state.app;
    // A store that does not answer (a database down) makes the service not ready at once; the
    // count is read only from one that does.
    let instances = app
        .engine()
        .store_reachable()
        .and_then(|()| app.engine().stored_instances());
    let model = if !app.model_needed() {
        "not_needed"
    } else if app.model_loaded() {
        "loaded"
    } else {
        "missing"
    };
    let shards = app.engine().owned_shards();
    let readiness = Readiness {
        ready: instances.is_ok() && model != "missing" && !shards.is_empty(),
        store: instances.is_ok(),
        model,
        instances: instances.unwrap_or(0),
        shards: shards.to_string(),
    };
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.app),
    )
        .into_response()
}

/// `GET /api/v1/definitions`: every deployed process with its versions.
#[utoipa::path(get, path = "/api/v1/definitions", tag = "definitions",
    responses((status = 200, description = "Processes with their versions", body = Vec<DefinitionView>)))]
pub async fn list_definitions(State(state): Shared) -> Json<Vec<DefinitionView>> {
    Json(state.app.definitions())
}

/// Query of one definition.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DefinitionQuery {
    /// A version number (default: the latest).
    pub version: Option<String>,
    /// `json` (default), `mermaid` or `dot`.
    pub format: Option<String>,
}

/// One process with the graph of the version asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefinitionDetail {
    /// The process id.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// The latest version.
    pub latest: u32,
    /// Every version, oldest first.
    pub versions: Vec<DeploymentView>,
    /// The version shown.
    pub version: DeploymentView,
    /// Its flow nodes.
    pub nodes: Vec<NodeView>,
    /// Its sequence flows.
    pub flows: Vec<FlowView>,
}

/// A flow node of a graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// Node name.
    pub name: Option<String>,
    /// The BPMN element (`userTask`, `exclusiveGateway`, ...).
    pub element: String,
}

/// A sequence flow of a graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowView {
    /// Flow id.
    pub id: String,
    /// Source node id.
    pub source: String,
    /// Target node id.
    pub target: String,
}

/// `GET /api/v1/definitions/{id}`: one process; `?format=mermaid|dot` for its graph as text.
#[utoipa::path(get, path = "/api/v1/definitions/{id}", tag = "definitions",
    params(("id" = String, Path, description = "Process id"), DefinitionQuery),
    responses(
        (status = 200, description = "The process and the graph of the version", body = DefinitionDetail),
        (status = 400, description = "Bad version or format", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process or version", body = Problem, content_type = "application/problem+json")))]
pub async fn get_definition(
    State(state): Shared,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<DefinitionQuery>,
) -> Result<Response, ApiError> {
    let version = parse_param::<u32>("version", query.version.as_deref(), "a version number")?;
    let deployed = state.app.deployed(&id, version)?;
    let process = &deployed.process;
    match query.format.as_deref().unwrap_or("json") {
        "json" => {
            let definition = state.app.definition(&id)?;
            let graph = &process.graph;
            Ok(Json(DefinitionDetail {
                id: definition.id,
                name: definition.name,
                latest: definition.latest,
                versions: definition.versions,
                version: DeploymentView::from(deployed.as_ref()),
                nodes: graph
                    .node_weights()
                    .map(|n| NodeView {
                        id: n.id.clone(),
                        name: n.name.clone(),
                        element: n.element.clone(),
                    })
                    .collect(),
                flows: graph
                    .edge_weights()
                    .map(|f| FlowView {
                        id: f.id.clone(),
                        source: graph[f.source].id.clone(),
                        target: graph[f.target].id.clone(),
                    })
                    .collect(),
            })
            .into_response())
        }
        "mermaid" => Ok(text(flowbot_engine::graph::to_mermaid(process))),
        "dot" => Ok(text(flowbot_engine::graph::to_dot(process))),
        other => Err(ApiError::invalid(
            Some("format".into()),
            format!("format: `{other}` is not one of json, mermaid, dot"),
        )),
    }
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Query of a graph picture.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GraphQuery {
    /// A version number (default: the latest).
    pub version: Option<String>,
}

/// `GET /api/v1/definitions/{id}/graph.svg`: the process graph as SVG (a layered layout drawn
/// by the server; every node is a `<g data-node="ID">`, so a page can highlight a path).
#[utoipa::path(get, path = "/api/v1/definitions/{id}/graph.svg", tag = "definitions",
    params(("id" = String, Path, description = "Process id"), GraphQuery),
    responses(
        (status = 200, description = "SVG", body = String, content_type = "image/svg+xml"),
        (status = 404, description = "No such process or version", body = Problem, content_type = "application/problem+json")))]
pub async fn definition_svg(
    State(state): Shared,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<GraphQuery>,
) -> Result<Response, ApiError> {
    let version = parse_param::<u32>("version", query.version.as_deref(), "a version number")?;
    let deployed = state.app.deployed(&id, version)?;
    Ok((
        [(header::CONTENT_TYPE, "image/svg+xml")],
        graph_svg::render(&deployed.process),
    )
        .into_response())
}

/// Body of `POST /api/v1/instances`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The process id (its latest version starts).
    pub process: String,
    /// The starting variables.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Map<String, Value>,
    /// A business key to find the instance by (an order number, ...).
    #[serde(default)]
    pub business_key: Option<String>,
}

/// Runs a service call that drives a turn, timing it for the metrics.
async fn turn<T>(
    state: &ServerState,
    operation: &str,
    call: impl Future<Output = Result<T, flowbot_app::AppError>>,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let outcome = call.await;
    state.metrics.turn(operation, started.elapsed());
    Ok(outcome?)
}

/// `POST /api/v1/instances`: starts an instance; answers once its first turn is durable.
#[utoipa::path(post, path = "/api/v1/instances", tag = "instances", request_body = StartBody,
    responses(
        (status = 201, description = "Started; the instance as it stands after its first turn", body = InstanceView),
        (status = 400, description = "The body does not validate", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A start rule refused it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json")))]
pub async fn start_instance(
    State(state): Shared,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<(StatusCode, Json<InstanceView>), ApiError> {
    if body.process.trim().is_empty() {
        return Err(ApiError::invalid(
            Some("process".into()),
            "process: must name a deployed process",
        ));
    }
    let request = StartRequest {
        process_id: body.process,
        variables: body.variables,
        business_key: body.business_key,
    };
    let view = turn(&state, "start", state.app.start(request)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Query of the instance list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InstanceQuery {
    /// `waiting`, `completed`, `failed` or `terminated`.
    pub status: Option<String>,
    /// A process id.
    pub process: Option<String>,
    /// A business key.
    pub business_key: Option<String>,
    /// Most instances on the page (1 to 1000, default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// A page of instances.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstancePage {
    /// The instances, in id order.
    pub items: Vec<InstanceView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/instances`: a page of instances, filtered.
#[utoipa::path(get, path = "/api/v1/instances", tag = "instances", params(InstanceQuery),
    responses(
        (status = 200, description = "A page", body = InstancePage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn list_instances(
    State(state): Shared,
    QueryParams(query): QueryParams<InstanceQuery>,
) -> Result<Json<InstancePage>, ApiError> {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(parse_status(text)?),
    };
    let limit =
        parse_param::<usize>("limit", query.limit.as_deref(), "a number")?.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            Some("limit".into()),
            format!("limit: must be between 1 and {MAX_PAGE}, not {limit}"),
        ));
    }
    let filter = InstanceFilter {
        status,
        process_id: query.process.filter(|p| !p.is_empty()),
        business_key: query.business_key.filter(|k| !k.is_empty()),
    };
    let page = state.app.list_instances(
        &filter,
        query.cursor.as_deref().filter(|c| !c.is_empty()),
        limit,
    )?;
    Ok(Json(InstancePage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

fn parse_status(text: &str) -> Result<InstanceStatus, ApiError> {
    const LISTED: [&str; 4] = ["waiting", "completed", "failed", "terminated"];
    serde_json::from_value::<InstanceStatus>(Value::String(text.to_string()))
        .ok()
        .filter(|_| LISTED.contains(&text))
        .ok_or_else(|| {
            ApiError::invalid(
                Some("status".into()),
                format!("status: `{text}` is not one of {}", LISTED.join(", ")),
            )
        })
}

/// `GET /api/v1/instances/{id}`: one instance.
#[utoipa::path(get, path = "/api/v1/instances/{id}", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The instance", body = InstanceView),
        (status = 404, description = "No such instance", body = Problem, content_type = "application/problem+json")))]
pub async fn get_instance(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(state.app.instance(&id)?))
}

/// `GET /api/v1/instances/{id}/history`: the instance's audit log.
#[utoipa::path(get, path = "/api/v1/instances/{id}/history", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "History records in order: `at_ms` and the entry (`kind`: executor, job_failed, llm_called, ...)", body = Vec<Object>),
        (status = 404, description = "No such instance", body = Problem, content_type = "application/problem+json")))]
pub async fn instance_history(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.app.instance(&id)?;
    Ok(Json(state.app.history(&id)?).into_response())
}

/// `POST /api/v1/instances/{id}/cancel`: cancels a running instance.
#[utoipa::path(post, path = "/api/v1/instances/{id}/cancel", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "Cancelled", body = InstanceView),
        (status = 404, description = "No such instance", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It has ended", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel_instance(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(turn(&state, "cancel", state.app.cancel(&id)).await?))
}

/// Query of the task list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// A process id.
    pub process: Option<String>,
    /// A node id.
    pub node: Option<String>,
    /// An instance id.
    pub instance: Option<String>,
}

/// `GET /api/v1/tasks`: open user and manual tasks.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, description = "Open tasks", body = Vec<TaskView>)))]
pub async fn list_tasks(
    State(state): Shared,
    QueryParams(query): QueryParams<TaskQuery>,
) -> Json<Vec<TaskView>> {
    let filter = TaskFilter {
        process_id: query.process.filter(|p| !p.is_empty()),
        node: query.node.filter(|n| !n.is_empty()),
        instance: query.instance.filter(|i| !i.is_empty()),
    };
    Json(state.app.open_tasks(&filter))
}

/// Body of completing a task or resolving an incident.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariablesBody {
    /// Variables to set.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Map<String, Value>,
}

/// `POST /api/v1/tasks/{id}/complete`: completes a task (a guard rule may refuse: 409).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/complete", tag = "tasks", request_body = VariablesBody,
    params(("id" = String, Path, description = "Task id `instance:activation`")),
    responses(
        (status = 200, description = "Completed; the instance after the turn", body = InstanceView),
        (status = 400, description = "A bad id or body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A guard rule refused it (the rule's message)", body = Problem, content_type = "application/problem+json")))]
pub async fn complete_task(
    State(state): Shared,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VariablesBody>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(
        turn(
            &state,
            "complete",
            state.app.complete_task(&id, body.variables),
        )
        .await?,
    ))
}

/// Body of `POST /api/v1/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// The message name.
    pub name: String,
    /// The correlation key.
    #[serde(default)]
    pub correlation_key: Option<String>,
    /// Variables it carries.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Map<String, Value>,
}

/// `POST /api/v1/messages`: delivers a message to the instance waiting for it (or starts one,
/// or buffers it until one waits).
#[utoipa::path(post, path = "/api/v1/messages", tag = "events", request_body = MessageBody,
    responses(
        (status = 200, description = "Where it went: `{\"outcome\": \"delivered\", \"instance\", \"activation\"}`, `queued` (for the node that owns the instance), `started` or `buffered`", body = Object),
        (status = 400, description = "The body does not validate", body = Problem, content_type = "application/problem+json")))]
pub async fn correlate_message(
    State(state): Shared,
    JsonBody(body): JsonBody<MessageBody>,
) -> Result<Response, ApiError> {
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid(
            Some("name".into()),
            "name: must not be empty",
        ));
    }
    let outcome = turn(
        &state,
        "message",
        state
            .app
            .correlate(&body.name, body.correlation_key.as_deref(), body.variables),
    )
    .await?;
    Ok(Json(outcome).into_response())
}

/// Body of `POST /api/v1/signals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    /// The signal name.
    pub name: String,
    /// Variables it carries.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Map<String, Value>,
}

/// What a signal reached.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalOutcome {
    /// Waits and start events it reached.
    pub reached: usize,
}

/// `POST /api/v1/signals`: broadcasts a signal.
#[utoipa::path(post, path = "/api/v1/signals", tag = "events", request_body = SignalBody,
    responses(
        (status = 200, description = "How many waits and start events it reached", body = SignalOutcome),
        (status = 400, description = "The body does not validate", body = Problem, content_type = "application/problem+json")))]
pub async fn broadcast_signal(
    State(state): Shared,
    JsonBody(body): JsonBody<SignalBody>,
) -> Result<Json<SignalOutcome>, ApiError> {
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid(
            Some("name".into()),
            "name: must not be empty",
        ));
    }
    let reached = turn(
        &state,
        "signal",
        state.app.signal(&body.name, body.variables),
    )
    .await?;
    Ok(Json(SignalOutcome { reached }))
}

/// `GET /api/v1/incidents`: open incidents.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents",
    responses((status = 200, description = "Open incidents", body = Vec<OpenIncidentView>)))]
pub async fn list_incidents(State(state): Shared) -> Json<Vec<OpenIncidentView>> {
    Json(state.app.incidents())
}

/// `POST /api/v1/incidents/{id}/retry`: runs the incident's job again.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/retry", tag = "incidents",
    params(("id" = String, Path, description = "Incident id `instance:activation`")),
    responses(
        (status = 200, description = "Retried; the instance", body = InstanceView),
        (status = 400, description = "A bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not open", body = Problem, content_type = "application/problem+json")))]
pub async fn retry_incident(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(
        turn(&state, "retry", state.app.retry_incident(&id)).await?,
    ))
}

/// `POST /api/v1/incidents/{id}/resolve`: completes the incident's wait with an operator's
/// variables.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/resolve", tag = "incidents", request_body = VariablesBody,
    params(("id" = String, Path, description = "Incident id `instance:activation`")),
    responses(
        (status = 200, description = "Resolved; the instance", body = InstanceView),
        (status = 400, description = "A bad id or body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not open", body = Problem, content_type = "application/problem+json")))]
pub async fn resolve_incident(
    State(state): Shared,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VariablesBody>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(
        turn(
            &state,
            "resolve",
            state.app.resolve_incident(&id, body.variables),
        )
        .await?,
    ))
}

/// Query of the notification log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Entries after this number (default 0: from the oldest kept).
    pub after: Option<String>,
    /// Only entries for this receiver.
    pub receiver: Option<String>,
    /// Most entries (1 to 1000, default 100).
    pub limit: Option<String>,
}

/// A page of the notification log.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    /// The entries, in number order.
    pub items: Vec<NotificationView>,
    /// The highest durable number when read (resume after the last item's `seq`).
    pub watermark: u64,
}

/// `GET /api/v1/notifications`: the durable notification log after a number (the WebSocket
/// feed `/ws/notifications` streams the same entries).
#[utoipa::path(get, path = "/api/v1/notifications", tag = "events", params(NotificationQuery),
    responses(
        (status = 200, description = "Entries after `after`", body = NotificationPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn list_notifications(
    State(state): Shared,
    QueryParams(query): QueryParams<NotificationQuery>,
) -> Result<Json<NotificationPage>, ApiError> {
    let after = parse_param::<u64>("after", query.after.as_deref(), "a number")?.unwrap_or(0);
    let limit = parse_param::<usize>("limit", query.limit.as_deref(), "a number")?.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            Some("limit".into()),
            format!("limit: must be between 1 and {MAX_PAGE}, not {limit}"),
        ));
    }
    let watermark = *state.app.engine().notification_watermark().borrow();
    let items = state.app.notifications_after(
        after,
        query.receiver.as_deref().filter(|r| !r.is_empty()),
        limit,
    )?;
    Ok(Json(NotificationPage { items, watermark }))
}
