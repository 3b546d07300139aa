//! Every endpoint, status code and tenant rule of the REST API, against the router of a standalone node
//! (datastreams kept in a temporary directory; no Kafka needed: lag is not read here).

use std::sync::Arc;

use aqueduct_api::auth::digest;
use aqueduct_api::{router, ApiState};
use aqueduct_control::Node;
use aqueduct_model::config::NodeConfig;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN: &str = "admin-token";
const TEAM_A: &str = "team-a-token";
const TEAM_B: &str = "team-b-token";
/// A tenant without a policy in the node file.
const TEAM_C: &str = "team-c-token";

struct Api {
    router: Router,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn api(with_tokens: bool) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let tokens = if with_tokens {
        format!(
            r#"
[[api.tokens]]
sha256 = "{}"
admin = true
[[api.tokens]]
sha256 = "{}"
tenant = "team-a"
[[api.tokens]]
sha256 = "{}"
tenant = "team-b"
[[api.tokens]]
sha256 = "{}"
tenant = "team-c"

[tenants.team-a]
group_prefix = "team-a."
read = [{{ cluster = "source", topics = ["orders\\..*"] }}]
write = [{{ cluster = "destination", topics = ["mirror\\.orders\\..*"] }}]

[tenants.team-b]
read = [{{ cluster = "source", topics = [".*"] }}]
write = [{{ cluster = "destination", topics = ["mirror\\..*"] }}]
"#,
            digest(ADMIN),
            digest(TEAM_A),
            digest(TEAM_B),
            digest(TEAM_C)
        )
    } else {
        String::new()
    };
    let config = NodeConfig::from_sources(
        &format!(
            r#"
[cluster]
data_dir = "{data}"

[api]
max_body_bytes = 4096
audit_log = "{audit}"
{tokens}

[clusters.source]
bootstrap_servers = "127.0.0.1:1"
[clusters.destination]
bootstrap_servers = "127.0.0.1:2"
"#,
            data = dir.path().display(),
            audit = audit.display(),
        ),
        Vec::new(),
    )
    .unwrap();
    let node = Node::start(config).unwrap();
    let state = Arc::new(ApiState::new(Arc::clone(&node.handle)).unwrap());
    Api {
        router: router(state),
        audit,
        _dir: dir,
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value, Option<String>) {
        self.call_with(method, path, token, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value, Option<String>) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let etag = response
            .headers()
            .get(header::ETAG)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value, etag)
    }
}

fn stream(name: &str, owner: Option<&str>) -> String {
    let mut value = json!({
        "name": name,
        "destination": "destination",
        "destination_topic": "mirror.{topic}",
        "sources": [{"cluster": "source", "topic_pattern": "orders\\..*"}],
    });
    if let Some(owner) = owner {
        value["owner"] = json!(owner);
    }
    value.to_string()
}

#[tokio::test]
async fn create_read_update_pause_resume_and_delete() {
    let api = api(true);
    let admin = Some(ADMIN);
    // Create: 201 with a version; the same name again: 409.
    let (status, body, etag) = api
        .call(
            Method::POST,
            "/v1/datastreams",
            admin,
            Some(&stream("orders", Some("team-a"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 0);
    assert_eq!(etag.as_deref(), Some("\"0\""));
    assert_eq!(body["definition"]["owner"], "team-a");
    let (status, body, _) = api
        .call(
            Method::POST,
            "/v1/datastreams",
            admin,
            Some(&stream("orders", None)),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );

    // Read and list.
    let (status, body, _) = api
        .call(Method::GET, "/v1/datastreams/orders?lag=false", admin, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["state"], "initializing");
    let (status, body, _) = api
        .call(Method::GET, "/v1/datastreams?owner=team-a", admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 1);
    assert_eq!(body["items"][0]["name"], "orders");
    let (_, body, _) = api
        .call(Method::GET, "/v1/datastreams?owner=team-b", admin, None)
        .await;
    assert_eq!(body["total"], 0);

    // Update what may change; refuse what may not, with a reason.
    let (status, body, etag) = api
        .call(Method::PATCH, "/v1/datastreams/orders", admin, Some(r#"{"max_tasks": 8, "sources": [{"cluster": "source", "topic_pattern": "orders\\..*", "exclude_pattern": ".*\\.tmp"}]}"#))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["definition"]["max_tasks"], 8);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let (status, body, _) = api
        .call(
            Method::PATCH,
            "/v1/datastreams/orders",
            admin,
            Some(r#"{"destination": "source"}"#),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("destination"))
    );
    let (status, _, _) = api
        .call(
            Method::PATCH,
            "/v1/datastreams/orders",
            admin,
            Some(r#"{"paused": true}"#),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body, _) = api
        .call(
            Method::PATCH,
            "/v1/datastreams/orders",
            admin,
            Some(r#"{"max_tasks": 0}"#),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("max_tasks"))
    );

    // A stale version is refused (412); the right one is taken.
    let (status, _, _) = api
        .call_with(
            Method::POST,
            "/v1/datastreams/orders/pause",
            admin,
            None,
            &[("if-match", "\"0\"")],
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, body, etag) = api
        .call_with(
            Method::POST,
            "/v1/datastreams/orders/pause",
            admin,
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["definition"]["paused"], true);
    assert_eq!(body["status"]["state"], "paused");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    let (_, body, _) = api
        .call(Method::GET, "/v1/datastreams?status=paused", admin, None)
        .await;
    assert_eq!(body["total"], 1);
    let (status, body, _) = api
        .call(Method::POST, "/v1/datastreams/orders/resume", admin, None)
        .await;
    assert_eq!(
        (status, &body["definition"]["paused"]),
        (StatusCode::OK, &json!(false))
    );

    // Single partitions.
    let (status, body, _) = api
        .call(
            Method::POST,
            "/v1/datastreams/orders/partitions/pause",
            admin,
            Some(r#"{"orders.eu": [0, 3], "orders.us": "*"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["status"]["paused_partitions"],
        json!({"orders.eu": [0, 3], "orders.us": "*"})
    );
    let (status, _, _) = api
        .call(
            Method::POST,
            "/v1/datastreams/orders/partitions/resume",
            admin,
            Some(r#"{"orders.us": [1]}"#),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a topic paused whole resumes whole"
    );
    let (status, body, _) = api
        .call(
            Method::POST,
            "/v1/datastreams/orders/partitions/resume",
            admin,
            Some(r#"{"orders.us": "*", "orders.eu": [0]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["status"]["paused_partitions"],
        json!({"orders.eu": [3]})
    );

    // Delete: 204, then 404.
    let (status, _, _) = api
        .call(Method::DELETE, "/v1/datastreams/orders", admin, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = api
        .call(Method::GET, "/v1/datastreams/orders", admin, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = api
        .call(Method::DELETE, "/v1/datastreams/orders", admin, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Every mutating call is in the audit log, with who and the outcome.
    let audit = std::fs::read_to_string(&api.audit).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["method"] == "POST"
        && l["path"] == "/v1/datastreams"
        && l["status"] == 201
        && l["who"] == "admin"));
    assert!(lines
        .iter()
        .any(|l| l["method"] == "DELETE" && l["status"] == 204));
    assert!(lines.iter().any(|l| l["status"] == 412));
    assert!(lines.iter().all(|l| l["time_ms"].as_u64().is_some()));
}

#[tokio::test]
async fn tenants_see_and_change_only_their_own_streams() {
    let api = api(true);
    // 401 without or with a wrong token.
    for token in [None, Some("wrong")] {
        let (status, _, _) = api.call(Method::GET, "/v1/datastreams", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = api
            .call(
                Method::POST,
                "/v1/datastreams",
                token,
                Some(&stream("x", None)),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = api.call(Method::GET, "/v1/instances", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A tenant's stream is owned by the tenant; it cannot create one for another tenant.
    let (status, body, _) = api
        .call(
            Method::POST,
            "/v1/datastreams",
            Some(TEAM_A),
            Some(&stream("a-stream", None)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["definition"]["owner"], "team-a");
    let (status, _, _) = api
        .call(
            Method::POST,
            "/v1/datastreams",
            Some(TEAM_A),
            Some(&stream("b-stream", Some("team-b"))),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = api
        .call(
            Method::POST,
            "/v1/datastreams",
            Some(TEAM_B),
            Some(&stream("b-stream", None)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Each tenant lists its own; the admin lists all.
    let (_, body, _) = api
        .call(Method::GET, "/v1/datastreams", Some(TEAM_A), None)
        .await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["items"][0]["name"], "a-stream");
    let (_, body, _) = api
        .call(Method::GET, "/v1/datastreams", Some(ADMIN), None)
        .await;
    assert_eq!(body["total"], 2);

    // Another tenant's stream: 403 for every call.
    for (method, path, body) in [
        (Method::GET, "/v1/datastreams/a-stream", None),
        (
            Method::PATCH,
            "/v1/datastreams/a-stream",
            Some(r#"{"max_tasks": 2}"#),
        ),
        (Method::DELETE, "/v1/datastreams/a-stream", None),
        (Method::POST, "/v1/datastreams/a-stream/pause", None),
        (Method::POST, "/v1/datastreams/a-stream/resume", None),
        (
            Method::POST,
            "/v1/datastreams/a-stream/partitions/pause",
            Some(r#"{"t": "*"}"#),
        ),
        (
            Method::POST,
            "/v1/datastreams/a-stream/partitions/resume",
            Some(r#"{"t": "*"}"#),
        ),
    ] {
        let (status, _, _) = api.call(method.clone(), path, Some(TEAM_B), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // A tenant cannot give its stream away.
    let (status, _, _) = api
        .call(
            Method::PATCH,
            "/v1/datastreams/a-stream",
            Some(TEAM_A),
            Some(r#"{"owner": "team-b"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = api
        .call(
            Method::POST,
            "/v1/datastreams/a-stream/pause",
            Some(TEAM_A),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Instances are visible to any valid token: past authentication, this harness (a node that was not
    // run, so no cluster state yet) answers that the state cannot be read; an unknown token or none is
    // refused before that.
    let (status, body, _) = api
        .call(Method::GET, "/v1/instances", Some(TEAM_B), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("cluster state cannot be read")),
        "{body}"
    );
    for token in [Some("not-a-token"), None] {
        let (status, body, _) = api.call(Method::GET, "/v1/instances", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let api = api(false);
    let created = api
        .call(
            Method::POST,
            "/v1/datastreams",
            None,
            Some(&stream("keep", None)),
        )
        .await;
    assert_eq!(created.0, StatusCode::CREATED);
    let before = api
        .call(Method::GET, "/v1/datastreams/keep?lag=false", None, None)
        .await
        .1;

    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(10_000));
    let cases: Vec<(Method, &str, String, StatusCode, Option<&str>)> = vec![
        (Method::POST, "/v1/datastreams", "{not json".to_string(), StatusCode::BAD_REQUEST, None),
        (Method::POST, "/v1/datastreams", String::new(), StatusCode::BAD_REQUEST, None),
        (Method::POST, "/v1/datastreams", r#"{"name": "x", "destination": "destination", "sources": [{"cluster": "source", "topics": ["t"]}], "colour": "red"}"#.to_string(), StatusCode::BAD_REQUEST, Some("colour")),
        (Method::POST, "/v1/datastreams", r#"{"name": "x", "destination": "destination"}"#.to_string(), StatusCode::BAD_REQUEST, Some("sources")),
        (Method::POST, "/v1/datastreams", r#"{"name": "x", "destination": 7, "sources": []}"#.to_string(), StatusCode::BAD_REQUEST, None),
        (Method::POST, "/v1/datastreams", stream("bad name!", None), StatusCode::BAD_REQUEST, Some("name")),
        (Method::POST, "/v1/datastreams", stream(".", None), StatusCode::BAD_REQUEST, Some("name")),
        (Method::POST, "/v1/datastreams", stream("..", None), StatusCode::BAD_REQUEST, Some("name")),
        (Method::GET, "/v1/datastreams/..", String::new(), StatusCode::BAD_REQUEST, Some("name")),
        (Method::DELETE, "/v1/datastreams/.", String::new(), StatusCode::BAD_REQUEST, Some("name")),
        (Method::POST, "/v1/datastreams", r#"{"name": "x", "destination": "nowhere", "sources": [{"cluster": "source", "topics": ["t"]}]}"#.to_string(), StatusCode::BAD_REQUEST, Some("destination")),
        (Method::POST, "/v1/datastreams", r#"{"name": "x", "destination": "destination", "sources": [{"cluster": "source", "topic_pattern": "(unclosed"}]}"#.to_string(), StatusCode::BAD_REQUEST, Some("sources[0].topic_pattern")),
        (Method::POST, "/v1/datastreams", big, StatusCode::PAYLOAD_TOO_LARGE, None),
        (Method::PATCH, "/v1/datastreams/keep", r#"{"max_tasks": "many"}"#.to_string(), StatusCode::BAD_REQUEST, None),
        (Method::PATCH, "/v1/datastreams/keep", r#"{"group_id": "other"}"#.to_string(), StatusCode::UNPROCESSABLE_ENTITY, Some("group_id")),
        (Method::PATCH, "/v1/datastreams/keep", "[]".to_string(), StatusCode::BAD_REQUEST, None),
        (Method::POST, "/v1/datastreams/keep/partitions/pause", r#"{"t": "all"}"#.to_string(), StatusCode::BAD_REQUEST, Some("t")),
        (Method::POST, "/v1/datastreams/keep/partitions/pause", "{}".to_string(), StatusCode::BAD_REQUEST, None),
        (Method::GET, "/v1/datastreams/bad%20name", String::new(), StatusCode::BAD_REQUEST, Some("name")),
        (Method::GET, "/v1/datastreams?limit=0", String::new(), StatusCode::BAD_REQUEST, Some("limit")),
        (Method::GET, "/v1/datastreams?status=sleepy", String::new(), StatusCode::BAD_REQUEST, Some("status")),
        (Method::GET, "/v1/datastreams?colour=red", String::new(), StatusCode::BAD_REQUEST, None),
        (Method::GET, "/v1/nothing", String::new(), StatusCode::NOT_FOUND, None),
        (Method::PUT, "/v1/datastreams/keep", "{}".to_string(), StatusCode::METHOD_NOT_ALLOWED, None),
        (Method::PATCH, "/v1/datastreams/missing", "{}".to_string(), StatusCode::NOT_FOUND, None),
    ];
    for (method, path, body, expected, field) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (status, answer, _) = api.call(method.clone(), path, None, body.as_deref()).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {answer}");
        if let Some(field) = field {
            assert_eq!(
                answer["field"].as_str(),
                Some(field),
                "{method} {path}: {answer}"
            );
        }
        if status != StatusCode::METHOD_NOT_ALLOWED && status != StatusCode::PAYLOAD_TOO_LARGE {
            assert!(
                answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{method} {path}: {answer}"
            );
        }
    }
    let after = api
        .call(Method::GET, "/v1/datastreams/keep?lag=false", None, None)
        .await
        .1;
    assert_eq!(before, after, "rejected requests changed nothing");
    let (_, list, _) = api.call(Method::GET, "/v1/datastreams", None, None).await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn health_readiness_and_the_openapi_document() {
    let api = api(true);
    let (status, body, _) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("ok")));
    // The node was not run: not ready.
    let (status, body, _) = api.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    let (status, doc, _) = api.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");

    // Every operation of the document is routed (no fallback 404, no 405), and every route is documented.
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path.replace("{name}", "some-stream");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body, _) = api
                .call(method.clone(), &concrete, Some(ADMIN), Some("{}"))
                .await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("no such endpoint"),
                "{method} {path} is documented but not routed"
            );
        }
    }
    let documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    for route in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/v1/instances",
        "/v1/datastreams",
        "/v1/datastreams/{name}",
        "/v1/datastreams/{name}/pause",
        "/v1/datastreams/{name}/resume",
        "/v1/datastreams/{name}/partitions/pause",
        "/v1/datastreams/{name}/partitions/resume",
    ] {
        assert!(
            documented.contains(&route),
            "{route} is routed but not documented"
        );
    }
}

/// Every stream definition the admin sees, with its version.
async fn everything(api: &Api) -> Value {
    let (status, list, _) = api
        .call(Method::GET, "/v1/datastreams", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let mut streams = Vec::new();
    for item in list["items"].as_array().unwrap() {
        let name = item["name"].as_str().unwrap();
        let (_, body, _) = api
            .call(
                Method::GET,
                &format!("/v1/datastreams/{name}?lag=false"),
                Some(ADMIN),
                None,
            )
            .await;
        streams.push(json!({"version": body["version"], "definition": body["definition"]}));
    }
    Value::Array(streams)
}

#[tokio::test]
async fn a_tenant_s_streams_stay_inside_its_policy() {
    let api = api(true);
    let definition = |change: &dyn Fn(&mut Value)| {
        let mut value = json!({
            "name": "eu",
            "destination": "destination",
            "destination_topic": "mirror.{topic}",
            "sources": [{"cluster": "source", "topics": ["orders.eu"]}],
        });
        change(&mut value);
        value.to_string()
    };
    // Inside the policy: created, consuming under the tenant's group prefix.
    let (status, body, _) = api
        .call(
            Method::POST,
            "/v1/datastreams",
            Some(TEAM_A),
            Some(&definition(&|_| {})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["definition"]["group_id"], "team-a.eu");
    let before = everything(&api).await;

    // Outside: 403 naming the rule, and nothing written.
    type Change = Box<dyn Fn(&mut Value)>;
    let refused: Vec<(Change, &str, &str)> = vec![
        (
            Box::new(|v| v["sources"][0]["topics"] = json!(["payments"])),
            "sources",
            "may not read topic payments",
        ),
        (
            Box::new(|v| v["sources"][0]["topics"] = json!(["__consumer_offsets"])),
            "sources",
            "internal topics",
        ),
        (
            Box::new(|v| v["destination"] = json!("source")),
            "destination",
            "may not write cluster source",
        ),
        (
            Box::new(|v| v["destination_topic"] = json!("copy.{topic}")),
            "destination_topic",
            "may not write topic copy.orders.eu",
        ),
        (
            Box::new(|v| v["group_id"] = json!("team-b.eu")),
            "group_id",
            "does not start with team-a.",
        ),
    ];
    for (change, field, words) in &refused {
        let mut body = definition(&|_| {});
        let mut value: Value = serde_json::from_str(&body).unwrap();
        value["name"] = json!("other");
        change(&mut value);
        body = value.to_string();
        let (status, answer, _) = api
            .call(Method::POST, "/v1/datastreams", Some(TEAM_A), Some(&body))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {answer}");
        assert_eq!(answer["field"], *field, "{answer}");
        let message = answer["error"]
            .as_str()
            .or(answer["message"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(answer.to_string().contains(words), "{answer}");
        assert!(
            answer.to_string().contains("tenants.team-a"),
            "{message} {answer}"
        );
    }
    // A change that leaves the policy is refused the same way.
    let (status, answer, _) = api
        .call(
            Method::PATCH,
            "/v1/datastreams/eu",
            Some(TEAM_A),
            Some(r#"{"sources": [{"cluster": "source", "topics": ["payments"]}]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // A tenant without a policy may mirror nothing.
    let (status, answer, _) = api
        .call(
            Method::POST,
            "/v1/datastreams",
            Some(TEAM_C),
            Some(&definition(&|v| v["name"] = json!("c"))),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer.to_string().contains("has no policy"), "{answer}");
    // Properties that load code, read files or weaken security are refused for everyone, admins too.
    for (token, property) in [
        (TEAM_B, "plugin.library.paths"),
        (ADMIN, "plugin.library.paths"),
        (ADMIN, "ssl.ca.location"),
        (ADMIN, "enable.ssl.certificate.verification"),
        (ADMIN, "debug"),
    ] {
        let body = definition(&|v| {
            v["name"] = json!("props");
            v["consumer_properties"] = json!({ property: "x" });
        });
        let (status, answer, _) = api
            .call(Method::POST, "/v1/datastreams", Some(token), Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{property}: {answer}");
        assert!(answer.to_string().contains("node file"), "{answer}");
    }
    assert_eq!(
        everything(&api).await,
        before,
        "a refused request changed the store"
    );
}

#[tokio::test]
async fn a_node_file_s_stream_deleted_through_the_api_stays_deleted_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig::from_sources(
        &format!(
            r#"
[cluster]
data_dir = "{data}"

[clusters.source]
bootstrap_servers = "127.0.0.1:1"
[clusters.destination]
bootstrap_servers = "127.0.0.1:2"

[[datastreams]]
name = "from-file"
destination = "destination"
destination_topic = "mirror.{{topic}}"
[[datastreams.sources]]
cluster = "source"
topics = ["orders"]
"#,
            data = dir.path().display(),
        ),
        Vec::new(),
    )
    .unwrap();
    // Runs a node of `config` until the returned sender fires; answers once it has seeded its file.
    let run = |config: NodeConfig| async {
        let node = Node::start(config).unwrap();
        let handle = Arc::clone(&node.handle);
        let api = Api {
            router: router(Arc::new(ApiState::new(Arc::clone(&handle)).unwrap())),
            audit: dir.path().join("audit.log"),
            _dir: tempfile::tempdir().unwrap(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(node.run(async {
            let _ = stopped.await;
        }));
        let mut ready = handle.ready.clone();
        tokio::time::timeout(std::time::Duration::from_secs(30), ready.wait_for(|r| *r))
            .await
            .expect("the node is ready in time")
            .unwrap();
        (api, stop, running)
    };
    let (api, stop, running) = run(config.clone()).await;
    let (status, body, _) = api
        .call(
            Method::GET,
            "/v1/datastreams/from-file?lag=false",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "seeded from the file: {body}");
    let (status, body, _) = api
        .call(Method::DELETE, "/v1/datastreams/from-file", None, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    stop.send(()).unwrap();
    running.await.unwrap();

    // Started again with the same file: the deletion holds.
    let (api, stop, running) = run(config).await;
    let (status, body, _) = api
        .call(
            Method::GET,
            "/v1/datastreams/from-file?lag=false",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    stop.send(()).unwrap();
    running.await.unwrap();
}
