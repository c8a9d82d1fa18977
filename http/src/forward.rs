//! Forwarding in a cluster (docs/cluster.md): a request about an instance that another node
//! serves (the engine answers `NotOwned`) is sent on to that node, whose answer is the answer.
//!
//! Invariants: a request is forwarded at most once (the forwarded copy carries
//! [`FORWARDED_HEADER`] and is never forwarded again); the engine refused it before doing
//! anything, so forwarding never applies a request twice; while no node serves the instance (its
//! shard is between owners) the answer is 503 with `Retry-After`.

use crate::problem::{ApiError, ServedElsewhere};
use crate::state::ServerState;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// Marks a request forwarded by another node.
pub const FORWARDED_HEADER: &str = "flowbot-forwarded";

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers the forwarded request keeps.
const KEPT_HEADERS: [header::HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];

/// The layer: runs the request here, and sends it to the serving node when the answer says
/// another node serves its instance.
pub(crate) async fn forward_to_owner(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.headers().contains_key(FORWARDED_HEADER) {
        return next.run(request).await;
    }
    let (method, uri, headers) = (
        request.method().clone(),
        request.uri().clone(),
        request.headers().clone(),
    );
    let (parts, body) = request.into_parts();
    // Kept for a repeat on the serving node (bodies are bounded by http.max_body_bytes).
    let body = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => return ApiError::too_large(state.max_body_bytes).into_response(),
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(body.clone())))
        .await;
    let Some(ServedElsewhere(instance)) = response.extensions().get::<ServedElsewhere>().cloned()
    else {
        return response;
    };
    match state.app.serving_node(&instance).await {
        Ok(Some(node)) => match send(&node, method, &uri, &headers, body).await {
            Ok(answer) => answer,
            Err(reason) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "Bad gateway",
                format!("instance `{instance}` is served by the node at {node}, which did not answer: {reason}"),
            )
            .into_response(),
        },
        // Between owners (or the owner's address unknown): ask again in a moment.
        _ => {
            let mut response = response;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// Sends the request to the node at `node` (`http://HOST:PORT`) and returns its answer.
async fn send(
    node: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = ureq::AgentBuilder::new()
        .timeout(FORWARD_TIMEOUT)
        .redirects(0)
        .build()
        .request(
            method.as_str(),
            &format!("{}{path}", node.trim_end_matches('/')),
        )
        .set(FORWARDED_HEADER, "1");
    for name in KEPT_HEADERS {
        if let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            request = request.set(name.as_str(), value);
        }
    }
    // ureq blocks: the request runs on tokio's blocking pool, never on an async worker.
    let answer = tokio::task::spawn_blocking(move || {
        let answered = if body.is_empty() {
            request.call()
        } else {
            request.send_bytes(&body)
        };
        let response = match answered {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => return Err(transport.to_string()),
        };
        let status = response.status();
        let content_type = response.header("content-type").map(str::to_string);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes)
            .map_err(|e| e.to_string())?;
        Ok((status, content_type, bytes))
    })
    .await
    .map_err(|e| format!("the forwarding stopped: {e}"))??;
    let (status, content_type, bytes) = answer;
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        bytes,
    )
        .into_response();
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}
