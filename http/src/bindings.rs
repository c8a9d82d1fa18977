//! Routes declared in configuration (`[[routes]]`, see [`flowbot_app::bindings`]), served under
//! the router: a request no built-in route takes is matched against the bindings, its JSON body
//! read with the service's limit, and the binding's action run through the application.
//!
//! Invariant: built-in routes always win (a binding may not declare their paths, and the
//! bindings are only asked when no built-in route matched); an unbound path answers the same 404
//! problem as before, a bound path with another method 405.

use crate::extract::parse_json;
use crate::problem::ApiError;
use crate::state::ServerState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowbot_app::bindings::{Bindings, RouteMatch};
use flowbot_app::{App, AppError};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The bindings of `app`'s configuration, checked in shape and against its deployed processes.
pub fn load(app: &App) -> Result<Bindings, AppError> {
    let bindings = Bindings::compile(&app.config().routes)?;
    bindings.check_deployed(app)?;
    Ok(bindings)
}

/// The router's fallback: a declared route, else 404 (or 405 for a bound path with another
/// method).
pub async fn dispatch(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    match answer(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(state: &ServerState, request: Request) -> Result<Response, ApiError> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let (binding, params) = match state.bindings.find(&method, &path) {
        RouteMatch::Found(binding, params) => (binding, params),
        RouteMatch::WrongMethod(methods) => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                format!(
                    "{path} does not take {method} (it takes {})",
                    methods.join(", ")
                ),
            ))
        }
        RouteMatch::NotFound => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                format!("no route {method} {path}"),
            ))
        }
    };
    let body = read_body(state, request).await?;
    let answer = binding.call(&state.app, &params, &body).await?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    Ok((status, Json(answer.body)).into_response())
}

/// The request's JSON object body (an empty body is an empty object).
async fn read_body(state: &ServerState, request: Request) -> Result<Map<String, Value>, ApiError> {
    let limit = state.max_body_bytes;
    if let Some(content_type) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let essence = essence.to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                format!("expected an application/json body, not {essence}"),
            ));
        }
    }
    let bytes = axum::body::to_bytes(Body::new(request.into_body()), limit)
        .await
        .map_err(|_| ApiError::too_large(limit))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    parse_json::<Map<String, Value>>(&bytes)
}
