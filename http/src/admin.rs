//! The admin API under `/admin/v1`: deploy a workflow or rule file, list deployments, reload the
//! folders. Every call needs `Authorization: Bearer <admin token>` and is written to the audit
//! log (target `flowbot::audit`), refused ones included.
//!
//! Invariant: a refused call (401, 400, 422) changes nothing: the token is checked before the
//! handler runs, and [`flowbot_app::App::deploy_source`] checks a file before it writes it.

use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::state::ServerState;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowbot_app::view::DeploymentView;
use flowbot_app::{FileOutcome, ReloadReport};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::ToSchema;

type Shared = State<Arc<ServerState>>;

/// The log target of the audit records.
pub const AUDIT: &str = "flowbot::audit";

/// Refuses a request without the admin token; audits every admin call.
pub async fn require_admin(State(state): Shared, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.to_string())
        .unwrap_or_default();
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let refusal = match presented {
        None => Some("no `Authorization: Bearer <token>` header"),
        Some(token) if !state.admin_token.matches(token) => Some("the admin token is wrong"),
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        tracing::warn!(target: AUDIT, %method, %path, %peer, outcome = "refused", reason, "admin call");
        return ApiError::unauthorized(format!("{reason} (see the admin token printed at start)"))
            .into_response();
    }
    let response = next.run(request).await;
    tracing::info!(
        target: AUDIT,
        %method,
        %path,
        %peer,
        status = response.status().as_u16(),
        outcome = if response.status().is_success() { "done" } else { "failed" },
        "admin call"
    );
    response
}

/// Body of `POST /admin/v1/deployments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// A plain file name: `name.yaml`, `name.bpmn` or `name.rhai` (no folders).
    pub file: String,
    /// The file's content.
    pub content: String,
}

/// `POST /admin/v1/deployments`: checks a workflow or rule file and deploys it (JSON
/// `{"file", "content"}`, or multipart with one file part).
#[utoipa::path(post, path = "/admin/v1/deployments", tag = "admin", request_body(
        content((DeployBody = "application/json"), (String = "multipart/form-data")),
        description = "The file, as JSON or as one multipart file part"),
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Deployed: new versions (or a rule file written and reloaded)", body = FileOutcome),
        (status = 200, description = "The same content was deployed before: its versions", body = FileOutcome),
        (status = 400, description = "A bad name or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The file does not check: its `file:line:col` diagnostics", body = Problem, content_type = "application/problem+json")))]
pub async fn deploy(State(state): Shared, request: Request) -> Result<Response, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (file, content) = if multipart {
        file_part(
            Multipart::from_request(request, &state)
                .await
                .map_err(|e| ApiError::invalid(None, e.body_text()))?,
            state.max_body_bytes,
        )
        .await?
    } else {
        let JsonBody(body) = JsonBody::<DeployBody>::from_request(request, &state).await?;
        (body.file, body.content.into_bytes())
    };
    let outcome = state.app.deploy_source(&file, &content).await?;
    let created = outcome.deployed.is_empty() || outcome.deployed.iter().any(|p| p.created);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome)).into_response())
}

/// The first file part of a multipart body: its file name and content.
async fn file_part(mut form: Multipart, limit: usize) -> Result<(String, Vec<u8>), ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid(Some("file".into()), format!("file: {}", e.body_text()))
        }
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if let Some(name) = field.file_name().map(str::to_string) {
            let bytes = field.bytes().await.map_err(bad)?;
            return Ok((name, bytes.to_vec()));
        }
    }
    Err(ApiError::invalid(
        Some("file".into()),
        "file: the multipart body has no file part",
    ))
}

/// `GET /admin/v1/deployments`: every deployed version.
#[utoipa::path(get, path = "/admin/v1/deployments", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every version, oldest first per process", body = Vec<DeploymentView>),
        (status = 401, description = "No or a wrong token", body = Problem, content_type = "application/problem+json")))]
pub async fn deployments(State(state): Shared) -> Json<Vec<DeploymentView>> {
    Json(state.app.deployments())
}

/// `POST /admin/v1/reload`: re-reads the workflows and rules folders (what the folder watcher
/// does on its own).
#[utoipa::path(post, path = "/admin/v1/reload", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "What was deployed, refused (with diagnostics) and reloaded", body = ReloadReport),
        (status = 401, description = "No or a wrong token", body = Problem, content_type = "application/problem+json")))]
pub async fn reload(State(state): Shared) -> Result<Json<ReloadReport>, ApiError> {
    Ok(Json(state.app.reload().await?))
}
