//! The handlers. Every request body is read as bytes and parsed here, so every malformed body gets the same
//! kind of 400 naming the field; every mutating call is audited.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aqueduct_control::lag::{stream_lag, PartitionLag};
use aqueduct_control::streams::{StoreError, Versioned};
use aqueduct_control::view::ClusterView;
use aqueduct_coordination::store::TaskState;
use aqueduct_model::config::{validate_name, DatastreamConfig, PartitionSet};
use aqueduct_model::topic_id::DeletedTopic;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Principal;
use crate::error::{field_of, ApiError};
use crate::patch;
use crate::ApiState;

type Result<T> = std::result::Result<T, ApiError>;

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound(_) => ApiError::not_found(error.to_string()),
        StoreError::Exists(_) => ApiError::conflict(error.to_string()).with_field("name"),
        StoreError::Conflict { .. } => {
            ApiError::conflict(format!("{error}; read it again and retry"))
        }
        StoreError::Unavailable(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        match field_of(&message) {
            Some(field) => ApiError::bad_request(message).with_field(field),
            None => ApiError::bad_request(message),
        }
    })
}

fn check_name(name: &str) -> Result<()> {
    validate_name("name", name).map_err(|e| ApiError::invalid("name", e.reason))
}

/// The version a request was based on (`If-Match: "3"`), if it names one.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("unreadable If-Match header"))?
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"');
    if text == "*" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request("If-Match must be a version such as \"3\""))
}

fn precondition(expected: Option<i64>, current: &Versioned) -> Result<()> {
    match expected {
        Some(version) if version != current.version => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "datastream `{}` is at version {}, not {version}; read it again and retry",
                current.stream.name, current.version
            ),
        )),
        _ => Ok(()),
    }
}

fn with_etag(version: i64, status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Runs a mutating call: authenticated, audited whatever the outcome.
async fn audited<F, Fut>(
    state: &ApiState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    call: F,
) -> Response
where
    F: FnOnce(Principal) -> Fut,
    Fut: std::future::Future<Output = Result<Response>>,
{
    let principal = state.tokens.authenticate(headers);
    let who = principal
        .as_ref()
        .map_or_else(|_| "unauthenticated".to_string(), Principal::name);
    let response = match principal {
        Ok(principal) => call(principal)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(error) => error.into_response(),
    };
    let status = response.status();
    let error = (!status.is_success()).then(|| status.canonical_reason().unwrap_or("error"));
    state
        .audit
        .record(&who, method.as_str(), uri.path(), status.as_u16(), error);
    response
}

/// The stream `name`, if the caller may see it (a stream of another tenant is 403).
async fn visible(state: &ApiState, principal: &Principal, name: &str) -> Result<Versioned> {
    check_name(name)?;
    let current = state.node.store.get(name).await.map_err(store_error)?;
    if !principal.may_access(current.stream.owner.as_deref()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("datastream `{name}` belongs to another tenant"),
        ));
    }
    Ok(current)
}

// ---------------------------------------------------------------------------------------------- status

/// A task of a stream as the cluster reports it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub index: u32,
    pub count: u32,
    /// The node holding the task; none when unassigned.
    pub node: Option<String>,
    /// `running`, `waiting`, `error` or `unassigned`.
    pub state: String,
    pub reason: Option<String>,
    pub partitions: usize,
    pub problems: Vec<String>,
}

/// A stream's state and tasks.
#[derive(Debug, Serialize)]
pub struct StreamStatus {
    /// `initializing`, `running`, `paused` or `error`: `error` when a task failed, a partition was stopped
    /// by Aqueduct, or the stream cannot do its work (a source cluster it cannot reach, a destination topic
    /// it cannot create); `errors` and `auto_paused_partitions` say why.
    pub state: String,
    pub tasks: Vec<TaskView>,
    /// Partitions paused by hand.
    pub paused_partitions: BTreeMap<String, PartitionSet>,
    /// Partitions stopped by Aqueduct, with the reason (`topic-partition: reason`).
    pub auto_paused_partitions: Vec<String>,
    /// Problems of the stream as a whole, as its nodes report them.
    pub errors: Vec<String>,
    /// Source topics the stream mirrored that are gone from their cluster (deleted, not created again).
    pub deleted_topics: Vec<DeletedTopic>,
}

fn stream_status(stream: &DatastreamConfig, view: Option<&ClusterView>) -> StreamStatus {
    let mut tasks = Vec::new();
    let mut problems = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut deleted_topics: Vec<DeletedTopic> = Vec::new();
    if let Some(view) = view {
        for (node, report) in view.tasks_of(&stream.name) {
            let (state, reason) = match &report.state {
                TaskState::Running => ("running", None),
                TaskState::Waiting(reason) => ("waiting", Some(reason.clone())),
                TaskState::Error(reason) => ("error", Some(reason.clone())),
            };
            problems.extend(report.problems.iter().cloned());
            for error in &report.errors {
                if !errors.contains(error) {
                    errors.push(error.clone());
                }
            }
            for deleted in &report.deleted_topics {
                if !deleted_topics
                    .iter()
                    .any(|d| d.cluster == deleted.cluster && d.topic == deleted.topic)
                {
                    deleted_topics.push(deleted.clone());
                }
            }
            tasks.push(TaskView {
                index: report.task.index,
                count: report.task.count,
                node: Some(node.to_string()),
                state: state.to_string(),
                reason,
                partitions: report.partitions,
                problems: report.problems.clone(),
            });
        }
        for task in view.unassigned.iter().filter(|t| t.stream == stream.name) {
            tasks.push(TaskView {
                index: task.index,
                count: task.count,
                node: None,
                state: "unassigned".to_string(),
                reason: Some("every live node is at max_tasks_per_instance".to_string()),
                partitions: 0,
                problems: Vec::new(),
            });
        }
    }
    tasks.sort_by_key(|t| (t.count, t.index));
    let expected = view.and_then(|v| v.task_counts.get(&stream.name)).copied();
    let running = tasks.iter().filter(|t| t.state == "running").count();
    let state = if stream.paused {
        "paused"
    } else if tasks.iter().any(|t| t.state == "error") || !problems.is_empty() || !errors.is_empty()
    {
        "error"
    } else if expected.is_some_and(|n| n as usize == running) {
        "running"
    } else {
        "initializing"
    };
    StreamStatus {
        state: state.to_string(),
        tasks,
        paused_partitions: stream.paused_partitions.clone(),
        auto_paused_partitions: problems,
        errors,
        deleted_topics,
    }
}

/// One datastream as the API returns it.
#[derive(Debug, Serialize)]
pub struct StreamResource {
    pub name: String,
    pub version: i64,
    pub definition: DatastreamConfig,
    pub status: StreamStatus,
    /// Per source partition, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<Vec<PartitionLag>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_error: Option<String>,
}

async fn lag_of(
    state: &ApiState,
    stream: &DatastreamConfig,
) -> std::result::Result<Vec<PartitionLag>, String> {
    let clusters = state.node.config.clusters.clone();
    let stream = stream.clone();
    let reading = tokio::task::spawn_blocking(move || stream_lag(&clusters, &stream));
    match tokio::time::timeout(Duration::from_secs(15), reading).await {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("the source clusters did not answer in time".to_string()),
    }
}

async fn resource(state: &ApiState, current: Versioned, with_lag: bool) -> StreamResource {
    let view = state.node.view.read().await;
    let (lag, lag_error) = if with_lag {
        match lag_of(state, &current.stream).await {
            Ok(lag) => (Some(lag), None),
            Err(error) => (None, Some(error)),
        }
    } else {
        (None, None)
    };
    StreamResource {
        name: current.stream.name.clone(),
        version: current.version,
        status: stream_status(&current.stream, view.as_ref()),
        definition: current.stream,
        lag,
        lag_error,
    }
}

// ---------------------------------------------------------------------------------------------- handlers

pub async fn healthz() -> Json<Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready: connected to coordination, every assigned task started, and nothing this node runs is stopped
/// (a partition stopped by Aqueduct, a cluster a stream cannot reach); `problems` says what is not.
pub async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    let connected = state.node.view.connected();
    let started = *state.node.ready.borrow();
    let problems: Vec<String> = state
        .node
        .engine
        .status()
        .streams
        .iter()
        .flat_map(|stream| {
            stream
                .problems()
                .into_iter()
                .map(move |problem| format!("datastream {}: {problem}", stream.name))
        })
        .collect();
    let ready = connected && started && problems.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "ready": ready,
            "connected": connected,
            "tasks_started": started,
            "problems": problems,
        })),
    )
        .into_response()
}

/// Prometheus metrics of this node (text format), without a token.
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let status = state.node.engine.status();
    let text = aqueduct_engine::metrics::metrics().render(&status);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI).into_response()
}

pub async fn instances(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Result<Response> {
    let principal = state.tokens.authenticate(&headers)?;
    let mut view = state.node.view.read().await.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster state cannot be read now",
        )
    })?;
    if let Principal::Tenant(_) = principal {
        // A tenant sees the nodes and caps, and only its own streams' tasks.
        let own: std::collections::BTreeSet<String> = state
            .node
            .store
            .list()
            .await
            .map_err(store_error)?
            .into_values()
            .filter(|v| principal.may_access(v.stream.owner.as_deref()))
            .map(|v| v.stream.name)
            .collect();
        for instance in &mut view.instances {
            instance.tasks.retain(|t| own.contains(&t.task.stream));
        }
        view.unassigned.retain(|t| own.contains(&t.stream));
        view.task_counts.retain(|stream, _| own.contains(stream));
    }
    Ok(Json(view).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    owner: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Debug, Serialize)]
struct ListItem {
    name: String,
    owner: Option<String>,
    state: String,
    version: i64,
}

pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    query: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let principal = state.tokens.authenticate(&headers)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(status) = &query.status {
        if !["initializing", "running", "paused", "error"].contains(&status.as_str()) {
            return Err(ApiError::invalid(
                "status",
                "must be one of initializing, running, paused, error",
            ));
        }
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let offset = query.offset.unwrap_or(0);
    let streams = state.node.store.list().await.map_err(store_error)?;
    let view = state.node.view.read().await;
    let items: Vec<ListItem> = streams
        .into_values()
        .filter(|v| principal.may_access(v.stream.owner.as_deref()))
        .filter(|v| query.owner.is_none() || v.stream.owner == query.owner)
        .map(|v| ListItem {
            state: stream_status(&v.stream, view.as_ref()).state,
            name: v.stream.name,
            owner: v.stream.owner,
            version: v.version,
        })
        .filter(|item| query.status.as_ref().is_none_or(|s| *s == item.state))
        .collect();
    let total = items.len();
    let page: Vec<ListItem> = items.into_iter().skip(offset).take(limit).collect();
    let next_offset = (offset + page.len() < total).then_some(offset + page.len());
    Ok(Json(serde_json::json!({
        "items": page,
        "total": total,
        "offset": offset,
        "limit": limit,
        "next_offset": next_offset,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Read the per-partition lag from the source clusters (default true).
    lag: Option<bool>,
}

pub async fn get(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: std::result::Result<Query<GetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let principal = state.tokens.authenticate(&headers)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let current = visible(&state, &principal, &name).await?;
    let version = current.version;
    let with_lag = query.lag.unwrap_or(true);
    Ok(with_etag(
        version,
        StatusCode::OK,
        resource(&state, current, with_lag).await,
    ))
}

pub async fn create(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    audited(&state, &method, &uri, &headers, |principal| {
        let (state, body) = (&state, &body);
        async move {
            let mut stream: DatastreamConfig = parse_json(body)?;
            match (&principal, &stream.owner) {
                (Principal::Tenant(tenant), None) => stream.owner = Some(tenant.clone()),
                (Principal::Tenant(tenant), Some(owner)) if owner != tenant => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!("a token of tenant `{tenant}` cannot create streams for `{owner}`"),
                    )
                    .with_field("owner"))
                }
                _ => {}
            }
            // A tenant's streams consume under its group prefix.
            if let (None, Some(prefix)) = (
                &stream.group_id,
                stream
                    .owner
                    .as_deref()
                    .and_then(|owner| state.policies.get(owner))
                    .and_then(|p| p.group_prefix()),
            ) {
                stream.group_id = Some(format!("{prefix}{}", stream.name));
            }
            state
                .node
                .config
                .validate_datastream(&stream)
                .map_err(|e| ApiError::invalid(e.key, e.reason))?;
            within_policy(state, &principal, &stream)?;
            let created = state
                .node
                .store
                .create(&stream)
                .await
                .map_err(store_error)?;
            let version = created.version;
            Ok(with_etag(
                version,
                StatusCode::CREATED,
                resource(state, created, false).await,
            ))
        }
    })
    .await
}

/// A tenant's stream stays inside the tenant's policy, whoever writes it (403 naming the rule); a tenant
/// without a policy may write no stream. Streams without an owner are bound by no policy.
fn within_policy(state: &ApiState, principal: &Principal, stream: &DatastreamConfig) -> Result<()> {
    let checked = match (principal, stream.owner.as_deref()) {
        (Principal::Tenant(tenant), _) => state.policies.check(tenant, stream),
        (_, Some(owner)) => state
            .policies
            .get(owner)
            .map_or(Ok(()), |policy| policy.check(stream)),
        (_, None) => Ok(()),
    };
    checked.map_err(|violation| {
        ApiError::new(StatusCode::FORBIDDEN, violation.to_string()).with_field(violation.field())
    })
}

/// Reads, checks access and the precondition, changes, and writes a stream, at the version it read.
async fn change<F>(
    state: &ApiState,
    principal: &Principal,
    headers: &HeaderMap,
    name: &str,
    edit: F,
) -> Result<Response>
where
    F: FnOnce(&DatastreamConfig) -> Result<DatastreamConfig>,
{
    let current = visible(state, principal, name).await?;
    precondition(if_match(headers)?, &current)?;
    let next = edit(&current.stream)?;
    if let Principal::Tenant(tenant) = principal {
        if next.owner.as_deref() != Some(tenant.as_str()) {
            return Err(
                ApiError::new(StatusCode::FORBIDDEN, "a tenant cannot give a stream away")
                    .with_field("owner"),
            );
        }
    }
    state
        .node
        .config
        .validate_datastream(&next)
        .map_err(|e| ApiError::invalid(e.key, e.reason))?;
    let updated = if next == current.stream {
        current
    } else {
        state
            .node
            .store
            .update(&next, Some(current.version))
            .await
            .map_err(store_error)?
    };
    let version = updated.version;
    Ok(with_etag(
        version,
        StatusCode::OK,
        resource(state, updated, false).await,
    ))
}

pub async fn update(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    audited(&state, &method, &uri, &headers, |principal| {
        let (state, headers, body, name) = (&state, &headers, &body, &name);
        async move {
        let body: Value = parse_json(body)?;
        let current = visible(state, &principal, name).await?;
        let patched = patch::apply(&current.stream, &body)?;
        // Pauses stay possible for a stream a narrowed policy no longer covers; a change must fit it.
        within_policy(state, &principal, &patched.stream)?;
        if patched.renames_destination {
            let mirrored = lag_of(state, &current.stream)
                .await
                .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?
                .iter()
                .any(|p| p.committed_offset.is_some());
            if mirrored {
                return Err(ApiError::conflict(
                    "records were mirrored already: the destination topic name cannot change; create a new datastream",
                )
                .with_field("destination_topic"));
            }
        }
        change(state, &principal, headers, name, |_| Ok(patched.stream)).await
    }})
    .await
}

pub async fn delete(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    audited(&state, &method, &uri, &headers, |principal| {
        let (state, headers, name) = (&state, &headers, &name);
        async move {
            let current = visible(state, &principal, name).await?;
            precondition(if_match(headers)?, &current)?;
            state
                .node
                .store
                .delete(name, Some(current.version))
                .await
                .map_err(store_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    })
    .await
}

/// An audited change of a stream's definition (the pause calls): `input` (the parsed body) is checked
/// first, then `edit` computes the new definition from it and the current one.
async fn audited_change<T, F>(
    state: &ApiState,
    (method, uri, headers): (&Method, &Uri, &HeaderMap),
    name: &str,
    input: Result<T>,
    edit: F,
) -> Response
where
    F: FnOnce(T, &DatastreamConfig) -> Result<DatastreamConfig>,
{
    audited(state, method, uri, headers, |principal| async move {
        let input = input?;
        change(state, &principal, headers, name, |s| edit(input, s)).await
    })
    .await
}

pub async fn pause(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    audited_change(&state, (&method, &uri, &headers), &name, Ok(()), |(), s| {
        Ok(DatastreamConfig {
            paused: true,
            ..s.clone()
        })
    })
    .await
}

pub async fn resume(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    audited_change(&state, (&method, &uri, &headers), &name, Ok(()), |(), s| {
        Ok(DatastreamConfig {
            paused: false,
            ..s.clone()
        })
    })
    .await
}

pub async fn pause_partitions(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let selection = parse_json(&body).and_then(|b| patch::parse_selection(&b));
    audited_change(
        &state,
        (&method, &uri, &headers),
        &name,
        selection,
        |selection, s| {
            Ok(DatastreamConfig {
                paused_partitions: patch::pause(&s.paused_partitions, &selection),
                ..s.clone()
            })
        },
    )
    .await
}

pub async fn resume_partitions(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let selection = parse_json(&body).and_then(|b| patch::parse_selection(&b));
    audited_change(
        &state,
        (&method, &uri, &headers),
        &name,
        selection,
        |selection, s| {
            Ok(DatastreamConfig {
                paused_partitions: patch::resume(&s.paused_partitions, &selection)?,
                ..s.clone()
            })
        },
    )
    .await
}
