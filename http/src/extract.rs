//! Request extractors that answer bad input with a problem naming the field: a JSON body
//! ([`JsonBody`]) and query parameters ([`QueryParams`]).
//!
//! Invariant: a request that fails here never reaches a service, so it changes nothing.

use crate::problem::ApiError;
use crate::state::ServerState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A JSON request body, validated into `T`; errors name the field (`variables: invalid type:
/// string "x", expected a map`).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T> FromRequest<Arc<ServerState>> for JsonBody<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &Arc<ServerState>,
    ) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        if let Some(content_type) = &content_type {
            let essence = content_type.split(';').next().unwrap_or("").trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Unsupported media type",
                    format!("expected an application/json body, not {essence}"),
                ));
            }
        }
        let limit = state.max_body_bytes;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(limit)
                } else {
                    ApiError::invalid(None, format!("cannot read the request body: {rejection}"))
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `bytes` as a `T`, or a 400 problem naming the field that is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            None,
            "the request body is empty; expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = (path != ".").then_some(path);
        let inner = error.into_inner();
        let detail = match &field {
            Some(field) if !inner.is_syntax() && !inner.is_eof() => format!("{field}: {inner}"),
            _ => format!("the request body is not valid JSON: {inner}"),
        };
        ApiError::invalid(field.or_else(|| missing_field(&inner.to_string())), detail)
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::invalid(None, format!("trailing characters after the JSON: {e}")))?;
    Ok(value)
}

/// The field a serde "missing field `x`" or "unknown field `x`" message names.
fn missing_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_string)
}

/// Query parameters, validated into `T` (a struct of optional strings with
/// `deny_unknown_fields`): an unknown parameter is a 400 naming it.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|error| {
                let message = error.to_string();
                ApiError::invalid(
                    missing_field(&message),
                    format!("query parameters: {message}"),
                )
            })
    }
}

/// A query parameter parsed as `T`, or a 400 naming it.
pub fn parse_param<T: std::str::FromStr>(
    name: &str,
    value: Option<&str>,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::invalid(
                Some(name.to_string()),
                format!("{name}: `{text}` is not {expected}"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::{Map, Value};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Start {
        process: String,
        #[serde(default)]
        variables: Map<String, Value>,
    }

    #[test]
    fn errors_name_the_field() {
        let wrong_type = parse_json::<Start>(br#"{"process": "p", "variables": "x"}"#).unwrap_err();
        assert_eq!(wrong_type.problem().field.as_deref(), Some("variables"));
        assert!(wrong_type
            .problem()
            .detail
            .starts_with("variables: invalid type"));

        let missing = parse_json::<Start>(br#"{"variables": {}}"#).unwrap_err();
        assert_eq!(missing.problem().field.as_deref(), Some("process"));

        let unknown = parse_json::<Start>(br#"{"process": "p", "procss": 1}"#).unwrap_err();
        assert_eq!(unknown.problem().field.as_deref(), Some("procss"));

        let syntax = parse_json::<Start>(br#"{"process": "#).unwrap_err();
        assert_eq!(syntax.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(syntax.problem().detail.contains("not valid JSON"));

        let empty = parse_json::<Start>(b"  ").unwrap_err();
        assert!(empty.problem().detail.contains("empty"));
    }

    #[test]
    fn parameters_parse_or_name_themselves() {
        assert_eq!(
            parse_param::<u32>("limit", Some("20"), "a number").unwrap(),
            Some(20)
        );
        assert_eq!(parse_param::<u32>("limit", None, "a number").unwrap(), None);
        let bad = parse_param::<u32>("limit", Some("many"), "a number").unwrap_err();
        assert_eq!(bad.problem().field.as_deref(), Some("limit"));
    }
}
