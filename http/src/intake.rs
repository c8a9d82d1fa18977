//! `POST /api/v1/intake`: ERP exports uploaded, cleaned, aligned and started as orders in rule
//! 2's order (the application's [`flowbot_app::App::intake`]); the answer is the intake report
//! (bad rows with file, row and reason) and the started instances.
//!
//! Two forms: the raw export as the body with its name in `?file=` (one file), or
//! `multipart/form-data` with one part per export (the part's file name is the file's) and an
//! optional part named `mapping` holding a mapping file's text. Bodies are bounded by
//! `http.max_body_bytes`; names must be plain file names.

use crate::extract::QueryParams;
use crate::problem::{ApiError, Problem};
use crate::state::ServerState;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use flowbot_app::intake::{IntakeOutcome, IntakeRequest, Upload};
use flowbot_intake::SortBy;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// Query of an intake.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IntakeQuery {
    /// The export's file name when the body is the raw export (`orders.csv`).
    pub file: Option<String>,
    /// The time the batch is ordered by: `created` (default), `updated` or `paid`.
    pub sort: Option<String>,
}

/// `POST /api/v1/intake`: starts one order per aligned record of the uploaded exports.
#[utoipa::path(post, path = "/api/v1/intake", tag = "instances",
    params(IntakeQuery),
    request_body(content((String = "text/csv"), (String = "application/json"), (String = "multipart/form-data")),
        description = "The raw export (name in `file`), or multipart: one part per export, and an optional `mapping` part"),
    responses(
        (status = 200, description = "The intake report and the started orders", body = IntakeOutcome),
        (status = 400, description = "No file, a bad name, sort or mapping, or a file that cannot be read at all (nothing started)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The order process is not deployed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json")))]
pub async fn intake(
    State(state): State<Arc<ServerState>>,
    QueryParams(query): QueryParams<IntakeQuery>,
    request: Request,
) -> Result<Json<IntakeOutcome>, ApiError> {
    let sort_by = match query.sort.as_deref().unwrap_or("created") {
        "created" => SortBy::Created,
        "updated" => SortBy::Updated,
        "paid" => SortBy::Paid,
        other => {
            return Err(ApiError::invalid(
                Some("sort".into()),
                format!("sort: `{other}` is not one of created, updated, paid"),
            ))
        }
    };
    let limit = state.max_body_bytes;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut files = Vec::new();
    let mut mapping = None;
    if multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::invalid(None, e.body_text()))?;
        let bad = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                ApiError::invalid(None, e.body_text())
            }
        };
        while let Some(field) = form.next_field().await.map_err(bad)? {
            let part = field.name().unwrap_or_default().to_string();
            let name = field.file_name().map(str::to_string);
            let bytes = field.bytes().await.map_err(bad)?;
            match name {
                _ if part == "mapping" => {
                    mapping = Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                        ApiError::invalid(Some("mapping".into()), "mapping: not UTF-8 text")
                    })?)
                }
                Some(name) => files.push(Upload {
                    name,
                    bytes: bytes.to_vec(),
                }),
                None => {
                    return Err(ApiError::invalid(
                        Some(part.clone()),
                        format!("part `{part}` is neither a file nor `mapping`"),
                    ))
                }
            }
        }
        if query.file.is_some() {
            return Err(ApiError::invalid(
                Some("file".into()),
                "file: a multipart upload names its files in its parts",
            ));
        }
    } else {
        let name = query.file.clone().ok_or_else(|| {
            ApiError::invalid(
                Some("file".into()),
                "file: name the export (`?file=orders.csv`), or upload multipart/form-data",
            )
        })?;
        let bytes = axum::body::to_bytes(Body::new(request.into_body()), limit)
            .await
            .map_err(|_| ApiError::too_large(limit))?;
        files.push(Upload {
            name,
            bytes: bytes.to_vec(),
        });
    }
    let outcome = state
        .app
        .intake(IntakeRequest {
            files,
            mapping,
            sort_by,
        })
        .await?;
    Ok(Json(outcome))
}
