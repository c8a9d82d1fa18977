//! Every error answer of the service, in one place: RFC 9457 `application/problem+json`.
//!
//! Invariants: an [`AppError`] maps to its kind's HTTP status
//! ([`flowbot_app::ErrorKind::http_status`]) and keeps its `file:line:col` diagnostics; errors of
//! the HTTP layer itself (bad JSON, body too large, missing token, unknown route) use the same
//! shape, so a client reads one format whatever went wrong.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flowbot_app::AppError;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem answers.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:flowbot:problem:<kind>`).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this request, for people.
    pub detail: String,
    /// The kind as a word (`invalid_input`, `not_found`, `conflict`, `invalid`, `unauthorized`,
    /// `payload_too_large`, ...).
    pub kind: String,
    /// The request field a validation error is about (`variables`, `process`, `status`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where a file that does not check is wrong.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<ProblemDiagnostic>,
}

/// One `file:line:col` diagnostic of a problem.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProblemDiagnostic {
    /// `file:line:col`.
    pub at: String,
    /// `error` or `warning`.
    pub severity: String,
    /// What is wrong.
    pub message: String,
    /// The element concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// An error answer: a status and its problem document.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    // Boxed: handlers return `Result<_, ApiError>`, and the error path is the rare one.
    problem: Box<Problem>,
    /// The instance, when another node of the cluster serves it ([`ServedElsewhere`]).
    served_elsewhere: Option<String>,
}

/// Put on the response of a request about an instance that another node of the cluster serves:
/// the forwarding layer ([`crate::forward`]) sends the request there.
#[derive(Debug, Clone)]
pub struct ServedElsewhere(pub String);

impl ApiError {
    /// An error of the HTTP layer with `status`, a `kind` word and `detail`.
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            served_elsewhere: None,
            problem: Box::new(Problem {
                problem_type: format!("urn:flowbot:problem:{kind}"),
                title: title.to_string(),
                status: status.as_u16(),
                detail: detail.into(),
                kind: kind.to_string(),
                field: None,
                diagnostics: Vec::new(),
            }),
        }
    }

    /// A request that does not validate (400), naming the field when known.
    pub fn invalid(field: Option<String>, detail: impl Into<String>) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "Invalid request",
            detail,
        );
        error.problem.field = field;
        error
    }

    /// No such thing (404).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    /// A missing or wrong admin token (401).
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// A request body over the limit (413).
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            format!(
                "the request body is larger than the limit of {limit} bytes (http.max_body_bytes)"
            ),
        )
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem document.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        let kind = error.kind();
        let status =
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let word = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "internal".into());
        let mut api = ApiError::new(status, &word, kind.title(), error.message());
        api.served_elsewhere = error.served_elsewhere().map(str::to_string);
        api.problem.diagnostics = error
            .diagnostic_list()
            .iter()
            .map(|d| ProblemDiagnostic {
                at: d.location(),
                severity: d.severity.to_string(),
                message: d.message.clone(),
                id: d.id.clone(),
            })
            .collect();
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), "{}", self.problem.detail);
        }
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"flowbot-admin\""),
            );
        }
        if let Some(instance) = self.served_elsewhere {
            response.extensions_mut().insert(ServedElsewhere(instance));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowbot_app::ErrorKind;
    use flowbot_engine::diagnostics::Diagnostic;
    use flowbot_engine::model::Span;
    use std::path::Path;

    #[test]
    fn app_errors_keep_their_status_kind_and_diagnostics() {
        let error = AppError::diagnostics(
            "broken.yaml does not check",
            vec![Diagnostic::error(
                Path::new("workflows/broken.yaml"),
                Span::new(3, 5),
                "unknown node `nowhere`",
            )],
        );
        let api = ApiError::from(error);
        assert_eq!(api.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem = api.problem();
        assert_eq!(problem.kind, "invalid");
        assert_eq!(problem.problem_type, "urn:flowbot:problem:invalid");
        assert_eq!(problem.diagnostics[0].at, "workflows/broken.yaml:3:5");
        assert_eq!(problem.diagnostics[0].severity, "error");

        let conflict = ApiError::from(AppError::new(ErrorKind::Conflict, "refused by a guard"));
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        assert_eq!(conflict.problem().kind, "conflict");
        assert_eq!(conflict.problem().detail, "refused by a guard");
    }

    #[test]
    fn problems_are_served_as_problem_json() {
        let response = ApiError::unauthorized("no token").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
