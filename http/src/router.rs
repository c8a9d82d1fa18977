//! The router: every route, its OpenAPI description and the middleware around them.
//!
//! Invariants:
//! - The router and the OpenAPI document come from the same `routes!` declarations
//!   ([`utoipa_axum`]), so every documented route is served and every served API route is
//!   documented; the dashboard's page and assets are the only routes left out of the document.
//! - Admin routes sit behind [`admin::require_admin`]; nothing else does.
//! - Bodies over `http.max_body_bytes` are refused with 413 before a handler sees them; unknown
//!   paths and methods answer with a problem document too.
//! - Routes declared in configuration ([`bindings`]) are asked only when no built-in route
//!   matched the path.
//! - A public request about an instance another node of the cluster serves is forwarded to it
//!   once ([`forward`]).

use crate::problem::ApiError;
use crate::state::ServerState;
use crate::{admin, api, bindings, clock, dashboard, forward, intake, text_intake, ws};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Instant;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The document's fixed parts; the paths come from the routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Flowbot",
        description = "Flowbot's REST API, admin API and notification feed. Errors are RFC 9457 `application/problem+json` documents."
    ),
    tags(
        (name = "service", description = "Liveness, readiness, metrics"),
        (name = "definitions", description = "Deployed processes"),
        (name = "instances", description = "Process instances"),
        (name = "tasks", description = "Open user and manual tasks"),
        (name = "events", description = "Messages, signals and the notification log"),
        (name = "incidents", description = "Incidents awaiting an operator"),
        (name = "intake", description = "Orders read from outside: free text"),
        (name = "admin", description = "Deployments and reloads (bearer token)")
    )
)]
struct ApiDoc;

/// The documented routes anyone may call.
fn public_routes() -> OpenApiRouter<Arc<ServerState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::healthz))
        .routes(routes!(api::readyz))
        .routes(routes!(api::metrics))
        .routes(routes!(api::list_definitions))
        .routes(routes!(api::get_definition))
        .routes(routes!(api::definition_svg))
        .routes(routes!(api::start_instance, api::list_instances))
        .routes(routes!(api::get_instance))
        .routes(routes!(api::instance_history))
        .routes(routes!(api::cancel_instance))
        .routes(routes!(api::list_tasks))
        .routes(routes!(api::complete_task))
        .routes(routes!(api::correlate_message))
        .routes(routes!(api::broadcast_signal))
        .routes(routes!(api::list_incidents))
        .routes(routes!(api::retry_incident))
        .routes(routes!(api::resolve_incident))
        .routes(routes!(api::list_notifications))
        .routes(routes!(intake::intake))
        .routes(routes!(text_intake::read_text_order))
        .routes(routes!(ws::notifications))
}

/// The documented routes that need the admin token.
fn admin_routes() -> OpenApiRouter<Arc<ServerState>> {
    OpenApiRouter::new()
        .routes(routes!(admin::deploy, admin::deployments))
        .routes(routes!(admin::reload))
        .routes(routes!(clock::get_clock, clock::move_clock))
}

/// The OpenAPI 3.1 document of the service.
pub fn openapi() -> OpenApi {
    let (_, mut doc) = public_routes().merge(admin_routes()).split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "admin_token",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The admin token: configured, or generated into the data folder on first start",
                ))
                .build(),
        ),
    );
    doc
}

/// The service's router over `state`.
pub fn router(state: Arc<ServerState>) -> Router {
    let (public, _) = public_routes().split_for_parts();
    let public = public.route_layer(middleware::from_fn_with_state(
        state.clone(),
        forward::forward_to_owner,
    ));
    let (admin, _) = admin_routes().split_for_parts();
    let admin = admin.route_layer(middleware::from_fn_with_state(
        state.clone(),
        admin::require_admin,
    ));
    public
        .merge(admin)
        .route("/openapi.json", get(openapi_json))
        .merge(dashboard::routes())
        .fallback(bindings::dispatch)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// `GET /openapi.json`.
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| openapi().to_json().unwrap_or_default());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text.clone(),
    )
        .into_response()
}

/// A path served, but not with this method.
async fn wrong_method(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!(
            "{} does not take {}",
            request.uri().path(),
            request.method()
        ),
    )
}

/// Counts and times every request by the route it matched.
async fn track(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::token::AdminToken;
    use axum::body::Body;
    use flowbot_app::config::StoreKind;
    use flowbot_app::{App, AppConfig};
    use tower::ServiceExt;

    async fn state() -> Arc<ServerState> {
        let mut config = AppConfig::default();
        config.store.kind = StoreKind::Memory;
        let app = Arc::new(App::open(config).await.unwrap());
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        Arc::new(ServerState {
            app,
            admin_token: AdminToken::new("token"),
            metrics: Arc::new(Metrics::new()),
            max_body_bytes: 1024,
            bindings: Default::default(),
            shutdown,
        })
    }

    /// Every operation of the document reaches a handler of the router (no fallback answer),
    /// and the document lists every route the router serves except `/openapi.json` itself.
    #[tokio::test]
    async fn the_openapi_document_and_the_router_agree() {
        let state = state().await;
        let router = router(state);
        let doc = openapi();
        let mut operations = 0;
        for (path, item) in &doc.paths.paths {
            let concrete = path.replace("{id}", "x");
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            for (method, documented) in methods {
                let request = axum::http::Request::builder()
                    .method(method)
                    .uri(&concrete)
                    .header("authorization", "Bearer token")
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let text = String::from_utf8_lossy(&body);
                let fell_back =
                    text.contains("\"kind\":\"method_not_allowed\"") || text.contains("no route ");
                assert_eq!(
                    !fell_back, documented,
                    "{method} {path}: documented {documented}, served {}: {text}",
                    !fell_back
                );
                operations += usize::from(documented);
            }
        }
        assert_eq!(operations, 27, "operations in the document");
        let served = router
            .oneshot(
                axum::http::Request::get("/openapi.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(served.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_with_a_problem() {
        let router = router(state().await);
        let body = format!(
            "{{\"process\": \"p\", \"variables\": {{\"x\": \"{}\"}}}}",
            "a".repeat(2000)
        );
        let response = router
            .oneshot(
                axum::http::Request::post("/api/v1/instances")
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response.headers()["content-type"],
            crate::problem::PROBLEM_JSON
        );
    }
}
