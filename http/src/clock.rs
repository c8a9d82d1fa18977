//! `/admin/v1/clock`: the engine's time, and moving a manual clock (`clock = "manual"`) so that
//! a day can be driven from outside (a demo, an end-to-end test): the timers due by the new time
//! fire, the daily settlement among them.
//!
//! Invariant: the clock never goes back, and only a manual clock is moved (409 otherwise).

use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::state::ServerState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The engine's time.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClockView {
    /// Now, RFC 3339 in UTC.
    pub now: String,
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// `wall`, `virtual` or `manual`.
    pub kind: String,
}

/// How to move a manual clock: by a duration, or to an instant (exactly one of them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveClock {
    /// A duration to move forward: `500ms`, `30s`, `15m`, `16h`.
    pub advance: Option<String>,
    /// An RFC 3339 instant to move to (`2026-12-01T23:59:30+08:00`).
    pub to: Option<String>,
}

fn view(state: &ServerState) -> ClockView {
    let now_ms = state.app.now_ms();
    let now = DateTime::<Utc>::from_timestamp_millis(now_ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let kind = serde_json::to_value(state.app.config().clock)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    ClockView { now, now_ms, kind }
}

/// `GET /admin/v1/clock`: the engine's time.
#[utoipa::path(get, path = "/admin/v1/clock", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The engine's time", body = ClockView),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json")))]
pub async fn get_clock(State(state): State<Arc<ServerState>>) -> Json<ClockView> {
    Json(view(&state))
}

/// `POST /admin/v1/clock` `{"advance": "16h"}` or `{"to": "..."}`: moves a manual clock.
#[utoipa::path(post, path = "/admin/v1/clock", tag = "admin",
    security(("admin_token" = [])),
    request_body = MoveClock,
    responses(
        (status = 200, description = "The time now", body = ClockView),
        (status = 400, description = "Neither or both of advance and to, or a bad value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a manual clock, or a time before now", body = Problem, content_type = "application/problem+json")))]
pub async fn move_clock(
    State(state): State<Arc<ServerState>>,
    JsonBody(request): JsonBody<MoveClock>,
) -> Result<Json<ClockView>, ApiError> {
    let to_ms = match (&request.advance, &request.to) {
        (Some(advance), None) => {
            let by = flowbot_engine::timer::parse_short_duration_ms(advance).ok_or_else(|| {
                ApiError::invalid(
                    Some("advance".into()),
                    format!("`{advance}` is not a duration (500ms, 30s, 15m, 16h)"),
                )
            })?;
            state.app.now_ms().saturating_add(by)
        }
        (None, Some(to)) => {
            let instant = DateTime::parse_from_rfc3339(to).map_err(|e| {
                ApiError::invalid(
                    Some("to".into()),
                    format!("`{to}` is not an RFC 3339 instant: {e}"),
                )
            })?;
            u64::try_from(instant.timestamp_millis()).map_err(|_| {
                ApiError::invalid(Some("to".into()), format!("`{to}` is before 1970"))
            })?
        }
        _ => {
            return Err(ApiError::invalid(
                None,
                "give exactly one of `advance` (a duration) and `to` (an RFC 3339 instant)",
            ))
        }
    };
    state.app.advance_clock(to_ms)?;
    Ok(Json(view(&state)))
}
