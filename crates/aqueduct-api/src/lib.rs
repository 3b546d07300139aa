//! The REST API of an Aqueduct node (JSON over HTTP, under `/v1`). Every node serves it; a write on any node
//! goes to the cluster's datastream store and takes effect cluster-wide. See `docs/rest-api.md` and the
//! OpenAPI document served at `/v1/openapi.json`.

pub mod audit;
pub mod auth;
pub mod error;
pub mod patch;
pub mod routes;

use std::future::Future;
use std::sync::Arc;

use aqueduct_control::NodeHandle;
use aqueduct_model::tenancy::Policies;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tracing::{info, warn};

use crate::audit::Audit;
use crate::auth::Tokens;
use crate::error::ApiError;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the handlers share.
pub struct ApiState {
    pub node: Arc<NodeHandle>,
    pub tokens: Tokens,
    pub audit: Audit,
    /// What each tenant's streams may read and write.
    pub policies: Policies,
}

impl ApiState {
    /// From the node's `[api]` settings.
    pub fn new(node: Arc<NodeHandle>) -> std::io::Result<Self> {
        let api = &node.config.api;
        let tokens = Tokens::new(&api.tokens);
        let audit = Audit::open(api.audit_log.as_deref())?;
        let policies = Policies::new(&node.config.tenants)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self {
            node,
            tokens,
            audit,
            policies,
        })
    }
}

/// Every route.
pub fn router(state: Arc<ApiState>) -> Router {
    let limit = state.node.config.api.max_body_bytes;
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/v1/openapi.json", get(routes::openapi))
        .route("/v1/instances", get(routes::instances))
        .route("/v1/datastreams", get(routes::list).post(routes::create))
        .route(
            "/v1/datastreams/{name}",
            get(routes::get)
                .patch(routes::update)
                .delete(routes::delete),
        )
        .route("/v1/datastreams/{name}/pause", post(routes::pause))
        .route("/v1/datastreams/{name}/resume", post(routes::resume))
        .route(
            "/v1/datastreams/{name}/partitions/pause",
            post(routes::pause_partitions),
        )
        .route(
            "/v1/datastreams/{name}/partitions/resume",
            post(routes::resume_partitions),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if state.tokens.is_open() {
        warn!("no API tokens configured: the API is open to anyone who can reach it");
    }
    info!(address = %listener.local_addr()?, "serving the REST API");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
