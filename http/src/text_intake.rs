//! `POST /api/v1/intake/text`: a free-text order (an e-mail body) read by the `order_email`
//! process ([`flowbot_app::text_intake`]). Thin: validates the body, calls the service, shows its
//! view.

use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::state::ServerState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use flowbot_app::text_intake::{TextOrderRequest, TextOrderView, MAX_TEXT_BYTES};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;
use utoipa::ToSchema;

/// Body of `POST /api/v1/intake/text`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextOrderBody {
    /// The e-mail body (English, Chinese or mixed), at most 16 KiB.
    pub text: String,
    /// A business key for the instance.
    #[serde(default)]
    pub business_key: Option<String>,
}

/// `POST /api/v1/intake/text`: reads a free-text order; answers once the `order_email` instance
/// settled: the order read, and the review task with its form pre-filled when a person must look
/// at it.
#[utoipa::path(post, path = "/api/v1/intake/text", tag = "intake", request_body = TextOrderBody,
    responses(
        (status = 201, description = "Read; the instance, the order's fields, and the review task when one opened", body = TextOrderView),
        (status = 400, description = "No text, or more than 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The order_email process is not deployed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json")))]
pub async fn read_text_order(
    State(state): State<Arc<ServerState>>,
    JsonBody(body): JsonBody<TextOrderBody>,
) -> Result<(StatusCode, Json<TextOrderView>), ApiError> {
    if body.text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::invalid(
            Some("text".into()),
            format!(
                "text: {} bytes, more than the {MAX_TEXT_BYTES} a free-text order may have",
                body.text.len()
            ),
        ));
    }
    if body.text.trim().is_empty() {
        return Err(ApiError::invalid(Some("text".into()), "text: is empty"));
    }
    let started = Instant::now();
    let outcome = state
        .app
        .intake_text(TextOrderRequest {
            text: body.text,
            business_key: body.business_key,
        })
        .await;
    state.metrics.turn("start", started.elapsed());
    Ok((StatusCode::CREATED, Json(outcome?)))
}
