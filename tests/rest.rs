//! The REST API end to end: two `aqueduct` processes in one cluster (real ZooKeeper, real Kafka). A stream
//! created on one node runs and is seen through the other; pausing it stops the destination; the pause
//! survives a restart of every node; resuming continues from the committed offsets; the same for single
//! partitions; and a barrage of bad requests changes nothing and never gets a 5xx.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aqueduct_testkit::{
    check_sequences, create_topic, free_port, random_name, records_per_partition, AqueductNode,
    SequenceProducer, ZooKeeper,
};
use common::pair;
use serde_json::{json, Value};

const PARTITIONS: i32 = 4;

struct Node {
    process: AqueductNode,
    url: String,
}

fn start_node(cluster: &str, zookeeper: &str, instance: &str) -> Node {
    start_node_with(cluster, zookeeper, instance, "")
}

/// Like `start_node`, with `extra` appended to the config file.
fn start_node_with(cluster: &str, zookeeper: &str, instance: &str, extra: &str) -> Node {
    let pair = pair();
    let port = free_port();
    let config = format!(
        r#"
[node]
commit_interval_ms = 300
status_interval_secs = 0

[cluster]
name = "{cluster}"
zookeeper = "{zookeeper}"
instance = "{instance}"
session_timeout_ms = 6000
rebalance_delay_ms = 200
partition_refresh_interval_secs = 5

[api]
listen = "127.0.0.1:{port}"

[clusters.source]
bootstrap_servers = "{source}"
[clusters.destination]
bootstrap_servers = "{destination}"
{extra}
"#,
        source = pair.source.bootstrap(),
        destination = pair.destination.bootstrap(),
    );
    let process = AqueductNode::start(&config).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let node = Node { process, url };
    // Ready: connected to ZooKeeper (the datastream store) and running what it was given.
    wait("the node is ready", Duration::from_secs(60), || {
        call(&node, "GET", "/readyz", None).0 == 200
    });
    node
}

/// One HTTP call; (status, JSON body or null).
fn call(node: &Node, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let request =
        ureq::request(method, &format!("{}{path}", node.url)).timeout(Duration::from_secs(30));
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(body),
        None => request.call(),
    };
    match result {
        Ok(response) => {
            let status = response.status();
            (status, response.into_json().unwrap_or(Value::Null))
        }
        Err(ureq::Error::Status(status, response)) => {
            (status, response.into_json().unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn wait(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not reached in {timeout:?}");
}

fn state_of(node: &Node, stream: &str) -> String {
    let (_, body) = call(
        node,
        "GET",
        &format!("/v1/datastreams/{stream}?lag=false"),
        None,
    );
    body["status"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sequence records into every partition of the topic until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u64>>>,
}

impl Load {
    fn start(topic: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, source, topic) = (
            Arc::clone(&stop),
            pair().source.bootstrap(),
            topic.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let mut producer = SequenceProducer::new(&source, &topic, PARTITIONS, 100).unwrap();
            while !flag.load(Ordering::Acquire) {
                producer.produce(50).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
            producer.written_per_partition().to_vec()
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Release);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// How long after `since` the given destination partitions last grew, watching for `watch`.
fn last_growth(topic: &str, partitions: &[usize], watch: Duration) -> Duration {
    let destination = pair().destination.bootstrap();
    let start = Instant::now();
    let read = |last: &Vec<i64>| {
        records_per_partition(&destination, topic).unwrap_or_else(|_| last.clone())
    };
    let mut last = read(&Vec::new());
    let mut grew_at = Duration::ZERO;
    while start.elapsed() < watch {
        std::thread::sleep(Duration::from_millis(100));
        let now = read(&last);
        if partitions.iter().any(|p| now.get(*p) != last.get(*p)) {
            grew_at = start.elapsed();
        }
        last = now;
    }
    grew_at
}

#[test]
fn streams_are_managed_through_any_node_and_pauses_are_durable() {
    let zookeeper = ZooKeeper::start().unwrap();
    let cluster = random_name("rest");
    let topic = format!("{cluster}.orders");
    create_topic(&pair().source.bootstrap(), &topic, PARTITIONS, &[]).unwrap();
    let mirror = format!("mirror.{topic}");
    let mut a = start_node(&cluster, &zookeeper.connect_string(), "a");
    let mut b = start_node(&cluster, &zookeeper.connect_string(), "b");
    let load = Load::start(&topic);

    // Created on a, running as seen through b.
    let definition = json!({
        "name": "orders",
        "owner": "team-a",
        "destination": "destination",
        "destination_topic": "mirror.{topic}",
        "max_tasks": 2,
        "topic_refresh_interval_secs": 2,
        "sources": [{"cluster": "source", "topics": [topic]}],
    });
    let (status, body) = call(&a, "POST", "/v1/datastreams", Some(&definition.to_string()));
    assert_eq!(status, 201, "{body}");
    let took = wait("running, seen through b", Duration::from_secs(30), || {
        state_of(&b, "orders") == "running"
    });
    eprintln!("created on a, running through b after {took:?}");
    wait("both nodes ready", Duration::from_secs(30), || {
        call(&a, "GET", "/readyz", None).0 == 200 && call(&b, "GET", "/readyz", None).0 == 200
    });
    let (_, instances) = call(&b, "GET", "/v1/instances", None);
    assert_eq!(
        instances["instances"].as_array().unwrap().len(),
        2,
        "{instances}"
    );
    wait("records flow", Duration::from_secs(30), || {
        // A new topic may briefly answer "not leader": not there yet.
        records_per_partition(&pair().destination.bootstrap(), &mirror).is_ok_and(|counts| {
            counts.len() == PARTITIONS as usize && counts.iter().all(|n| *n > 0)
        })
    });
    // Both nodes export what they do: records mirrored per datastream, the leader flag on exactly one.
    let scrape = |node: &Node| -> String {
        ureq::get(&format!("{}/metrics", node.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    wait(
        "metrics show records produced",
        Duration::from_secs(30),
        || {
            let (ma, mb) = (scrape(&a), scrape(&b));
            let series = r#"aqueduct_stream_records_produced_total{datastream="orders"}"#;
            value(&ma, series) + value(&mb, series) > 0.0
                && value(&ma, "aqueduct_cluster_leader") + value(&mb, "aqueduct_cluster_leader")
                    == 1.0
                && value(&ma, "aqueduct_node_tasks") + value(&mb, "aqueduct_node_tasks") == 2.0
        },
    );
    let (status, body) = call(&b, "GET", "/v1/datastreams/orders", None);
    assert_eq!(status, 200);
    assert_eq!(
        body["lag"].as_array().map(Vec::len),
        Some(PARTITIONS as usize),
        "{body}"
    );

    // Records were mirrored: the destination topic name can no longer change.
    let (status, body) = call(
        &a,
        "PATCH",
        "/v1/datastreams/orders",
        Some(r#"{"destination_topic": "other.{topic}"}"#),
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (409, Some("destination_topic")),
        "{body}"
    );
    // Credentials stay in the nodes' config files.
    let (status, body) = call(
        &a,
        "PATCH",
        "/v1/datastreams/orders",
        Some(r#"{"consumer_properties": {"sasl.password": "x"}}"#),
    );
    assert_eq!(status, 400, "{body}");

    // Paused through b: the destination stops growing.
    let (status, body) = call(&b, "POST", "/v1/datastreams/orders/pause", None);
    assert_eq!(status, 200, "{body}");
    let stopped_after = last_growth(&mirror, &[0, 1, 2, 3], Duration::from_secs(6));
    eprintln!("stream paused: the destination last grew {stopped_after:?} after the call");
    assert!(
        stopped_after <= Duration::from_secs(3),
        "still growing {stopped_after:?} after the pause"
    );
    assert_eq!(state_of(&a, "orders"), "paused");

    // Every node restarts: still paused.
    a.process.terminate();
    b.process.terminate();
    a.process.restart().unwrap();
    b.process.restart().unwrap();
    wait("a back", Duration::from_secs(60), || {
        call(&a, "GET", "/readyz", None).0 == 200
    });
    wait("b back", Duration::from_secs(60), || {
        call(&b, "GET", "/readyz", None).0 == 200
    });
    assert_eq!(
        last_growth(&mirror, &[0, 1, 2, 3], Duration::from_secs(5)),
        Duration::ZERO,
        "grew while paused"
    );
    assert_eq!(state_of(&b, "orders"), "paused");

    // Resumed: it catches up from its committed offsets.
    let (status, _) = call(&a, "POST", "/v1/datastreams/orders/resume", None);
    assert_eq!(status, 200);
    wait("running again", Duration::from_secs(30), || {
        state_of(&a, "orders") == "running"
    });

    // Single partitions: 0 and 1 stop, 2 and 3 keep flowing.
    let (status, body) = call(
        &a,
        "POST",
        "/v1/datastreams/orders/partitions/pause",
        Some(&json!({&topic: [0, 1]}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_secs(2));
    let paused_after = last_growth(&mirror, &[0, 1], Duration::from_secs(5));
    let others = last_growth(&mirror, &[2, 3], Duration::from_secs(2));
    eprintln!("partitions 0 and 1 paused; partitions 2 and 3 still growing ({others:?})");
    assert_eq!(paused_after, Duration::ZERO, "paused partitions grew");
    assert!(others > Duration::ZERO, "the other partitions stopped too");
    let (_, body) = call(&b, "GET", "/v1/datastreams/orders?lag=false", None);
    assert_eq!(body["status"]["paused_partitions"], json!({&topic: [0, 1]}));
    // Durable too.
    b.process.terminate();
    b.process.restart().unwrap();
    wait("b back", Duration::from_secs(60), || {
        call(&b, "GET", "/readyz", None).0 == 200
    });
    assert_eq!(
        last_growth(&mirror, &[0, 1], Duration::from_secs(3)),
        Duration::ZERO
    );
    let (status, _) = call(
        &b,
        "POST",
        "/v1/datastreams/orders/partitions/resume",
        Some(&json!({&topic: "*"}).to_string()),
    );
    assert_eq!(status, 200);

    // Nothing was lost through all of it.
    std::thread::sleep(Duration::from_secs(2));
    let written = load.stop();
    let report = check_sequences(
        &pair().destination.bootstrap(),
        &mirror,
        &written,
        true,
        Duration::from_secs(120),
    )
    .unwrap();
    eprintln!("rest: {report:?}");
    assert!(
        report.is_lossless(),
        "{report:?}\n{}",
        a.process.log_tail(30)
    );
    assert_eq!(report.wrong_partition, 0);

    // Deleting stops it; the destination topic stays.
    let (status, _) = call(&a, "DELETE", "/v1/datastreams/orders", None);
    assert_eq!(status, 204);
    assert_eq!(call(&b, "GET", "/v1/datastreams/orders", None).0, 404);
    assert!(
        aqueduct_testkit::partition_count(&pair().destination.bootstrap(), &mirror)
            .unwrap()
            .is_some()
    );
    assert_eq!(a.process.terminate(), Some(0));
    assert_eq!(b.process.terminate(), Some(0));
}

/// Everything a node holds about its datastreams, as the API shows it.
fn snapshot(node: &Node) -> Value {
    let (status, list) = call(node, "GET", "/v1/datastreams", None);
    assert_eq!(status, 200, "{list}");
    let mut streams = Vec::new();
    for item in list["items"].as_array().unwrap() {
        let name = item["name"].as_str().unwrap();
        let (_, body) = call(
            node,
            "GET",
            &format!("/v1/datastreams/{name}?lag=false"),
            None,
        );
        streams.push(json!({"version": body["version"], "definition": body["definition"]}));
    }
    Value::Array(streams)
}

fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(Value::from("*")),
        Just(Value::from("source")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    "[a-z_]{1,10}",
                    Just("name".to_string()),
                    Just("sources".to_string()),
                    Just("max_tasks".to_string()),
                    Just("destination".to_string()),
                    Just("paused".to_string()),
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request: method, path, body, If-Match.
fn bad_request(
) -> impl proptest::strategy::Strategy<Value = (String, String, Option<String>, Option<String>)> {
    use proptest::prelude::*;
    let valid = json!({
        "name": "fuzzed",
        "destination": "destination",
        "sources": [{"cluster": "source", "topics": ["fuzz.topic"]}],
    });
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PATCH"),
        Just("DELETE"),
        Just("PUT")
    ]
    .prop_map(str::to_string);
    let name = prop_oneof![Just("keep".to_string()), "[a-zA-Z0-9._~%-]{0,16}"];
    let path = (
        name,
        prop_oneof![
            Just(""),
            Just("/pause"),
            Just("/resume"),
            Just("/partitions/pause"),
            Just("/partitions/resume"),
            Just("/unknown")
        ],
        prop_oneof![Just(0), Just(1), Just(2), Just(3)],
        "[a-z0-9=&_-]{0,16}",
    )
        .prop_map(|(name, action, shape, query)| match shape {
            0 => format!("/v1/datastreams/{name}{action}"),
            1 => format!("/v1/datastreams?{query}"),
            2 => format!("/v1/datastreams/{name}?{query}"),
            _ => format!("/v1/{name}"),
        });
    let body = prop_oneof![
        Just(None),
        json_value().prop_map(|v| Some(v.to_string())),
        // A valid definition with one field replaced by something random.
        (
            prop_oneof![
                Just("name"),
                Just("destination"),
                Just("sources"),
                Just("max_tasks"),
                Just("partitioning"),
                Just("destination_topic"),
                Just("start_offsets"),
                Just("consumer_properties"),
                Just("colour")
            ],
            json_value()
        )
            .prop_map(move |(field, value)| {
                let mut v = valid.clone();
                v[field] = value;
                Some(v.to_string())
            }),
        "[ -~]{0,40}".prop_map(Some),
        "\\{\"[a-z]{1,5}\": [0-9\\[\\]{},\"]{0,20}".prop_map(Some),
    ];
    let if_match = prop_oneof![
        Just(None),
        "[ -~]{0,8}".prop_map(Some),
        Just(Some("\"0\"".to_string()))
    ];
    (method, path, body, if_match)
}

#[test]
fn generated_bad_requests_never_get_a_5xx_and_change_nothing_when_refused() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let zookeeper = ZooKeeper::start().unwrap();
    let cluster = random_name("fuzz");
    let node = start_node(&cluster, &zookeeper.connect_string(), "fuzz");
    let keep = json!({
        "name": "keep",
        "destination": "destination",
        "destination_topic": "fuzz.{topic}",
        "sources": [{"cluster": "source", "topic_pattern": "fuzz-nothing-matches-.*"}],
    });
    assert_eq!(
        call(&node, "POST", "/v1/datastreams", Some(&keep.to_string())).0,
        201
    );
    let state = std::cell::RefCell::new(snapshot(&node));
    let counts = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&bad_request(), |(method, path, body, if_match)| {
        let mut request =
            ureq::request(&method, &format!("{}{path}", node.url)).timeout(Duration::from_secs(30));
        if let Some(tag) = &if_match {
            request = request.set("If-Match", tag);
        }
        let result = match &body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(body),
            None => request.call(),
        };
        let status = match result {
            Ok(response) => response.status(),
            Err(ureq::Error::Status(status, _)) => status,
            Err(error) => {
                return Err(TestCaseError::fail(format!(
                    "{method} {path}: no answer: {error}"
                )))
            }
        };
        *counts.borrow_mut().entry(status).or_default() += 1;
        if status >= 500 {
            return Err(TestCaseError::fail(format!(
                "{method} {path} {body:?}: {status}"
            )));
        }
        let now = snapshot(&node);
        if status >= 400 && now != *state.borrow() {
            return Err(TestCaseError::fail(format!(
                "{method} {path} {body:?} was refused with {status} but changed the state"
            )));
        }
        // Keep a stream to aim at: a request that deleted it (a valid DELETE) is undone.
        if call(&node, "GET", "/v1/datastreams/keep?lag=false", None).0 == 404 {
            call(&node, "POST", "/v1/datastreams", Some(&keep.to_string()));
        }
        *state.borrow_mut() = snapshot(&node);
        Ok(())
    });
    eprintln!("fuzz: status counts {:?}", counts.borrow());
    if let Err(error) = result {
        panic!("{error}\n{}", node.process.log_tail(20));
    }
    let mut process = node.process;
    assert!(process.is_running(), "the node died");
    assert!(
        !process.log_tail(usize::MAX).contains("panicked"),
        "a handler panicked"
    );
    assert_eq!(process.terminate(), Some(0));
}

/// Runs `aqueduct <args>` against `api`; (exit code, stdout, stderr).
fn cli(api: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(aqueduct_testkit::aqueduct_binary().unwrap())
        .args(args)
        .env("AQUEDUCT_API", api)
        .env("AQUEDUCT_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_cli_manages_streams_through_the_api() {
    let pair = pair();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = AqueductNode::start(&format!(
        r#"
[node]
status_interval_secs = 0
[cluster]
data_dir = "{state}"
[api]
listen = "127.0.0.1:{port}"
[clusters.source]
bootstrap_servers = "{source}"
[clusters.destination]
bootstrap_servers = "{destination}"
"#,
        state = state.path().display(),
        source = pair.source.bootstrap(),
        destination = pair.destination.bootstrap(),
    ))
    .unwrap();
    let api = format!("http://127.0.0.1:{port}");
    wait("the API answers", Duration::from_secs(30), || {
        ureq::get(&format!("{api}/readyz")).call().is_ok()
    });
    let topic = random_name("cli");
    create_topic(&pair.source.bootstrap(), &topic, 2, &[]).unwrap();
    let definition = json!({
        "name": "cli-stream",
        "destination": "destination",
        "destination_topic": "mirror.{topic}",
        "sources": [{"cluster": "source", "topics": [topic]}],
    })
    .to_string();

    let (code, out, err) = cli(
        &api,
        &["stream", "create", "--file", "-"],
        Some(&definition),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("name:         cli-stream"), "{out}");
    let (code, out, _) = cli(&api, &["stream", "list"], None);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("NAME") && out.contains("cli-stream"),
        "{out}"
    );
    let (code, out, _) = cli(&api, &["stream", "get", "cli-stream", "--json"], None);
    assert_eq!(code, 0);
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["definition"]["name"], "cli-stream");
    let (code, out, _) = cli(
        &api,
        &[
            "stream",
            "pause-partitions",
            "cli-stream",
            "--topic",
            &topic,
            "--partitions",
            "0,1",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("paused partitions"), "{out}");
    let (code, _, _) = cli(
        &api,
        &[
            "stream",
            "resume-partitions",
            "cli-stream",
            "--topic",
            &topic,
            "--partitions",
            "*",
        ],
        None,
    );
    assert_eq!(code, 0);
    let (code, out, _) = cli(&api, &["stream", "pause", "cli-stream"], None);
    assert_eq!(code, 0);
    assert!(out.contains("state:        paused"), "{out}");
    let (code, out, _) = cli(&api, &["stream", "resume", "cli-stream"], None);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = cli(
        &api,
        &["stream", "update", "cli-stream", "--file", "-"],
        Some(r#"{"max_tasks": 2}"#),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = cli(&api, &["instances"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("mode: standalone") && out.contains("INSTANCE"),
        "{out}"
    );

    // Refusals exit 1 with the API's reason; bad arguments and an unreachable API exit 2.
    let (code, _, err) = cli(&api, &["stream", "get", "nope"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("does not exist"),
        "{err}"
    );
    let (code, _, err) = cli(
        &api,
        &["stream", "update", "cli-stream", "--file", "-"],
        Some(r#"{"destination": "source"}"#),
    );
    assert_eq!(code, 1);
    assert!(err.contains("422") && err.contains("destination"), "{err}");
    let (code, _, err) = cli(
        &api,
        &[
            "stream",
            "pause-partitions",
            "cli-stream",
            "--topic",
            "t",
            "--partitions",
            "x",
        ],
        None,
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli("http://127.0.0.1:1", &["stream", "list"], None);
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach the API"), "{err}");
    let (code, out, _) = cli(&api, &["stream", "delete", "cli-stream"], None);
    assert_eq!(code, 0);
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(node.terminate(), Some(0));
}

#[test]
fn a_stopped_partition_or_an_unreachable_source_is_an_error_in_the_status_metrics_and_readyz() {
    let zookeeper = ZooKeeper::start().unwrap();
    let cluster = random_name("stopped");
    // A source cluster at an address nothing listens on.
    let dead = format!(
        "[clusters.dead]\nbootstrap_servers = \"127.0.0.1:{}\"\n",
        free_port()
    );
    let node = start_node_with(&cluster, &zookeeper.connect_string(), "a", &dead);
    let definition = json!({
        "name": "from-dead",
        "destination": "destination",
        "topic_refresh_interval_secs": 2,
        "sources": [{"cluster": "dead", "topics": ["orders"]}],
    });
    let (status, body) = call(
        &node,
        "POST",
        "/v1/datastreams",
        Some(&definition.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let took = wait(
        "the stream says its source is unreachable",
        Duration::from_secs(60),
        || {
            let (_, body) = call(&node, "GET", "/v1/datastreams/from-dead?lag=false", None);
            body["status"]["state"] == "error"
                && body["status"]["errors"].as_array().is_some_and(|errors| {
                    errors.iter().any(|e| {
                        e.as_str().is_some_and(|e| {
                            e.starts_with("source cluster dead unreachable since 20")
                        })
                    })
                })
        },
    );
    eprintln!("unreachable source reported after {took:?}");
    let (status, ready) = call(&node, "GET", "/readyz", None);
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p
                .as_str()
                .is_some_and(|p| p.contains("from-dead") && p.contains("dead unreachable")))),
        "{ready}"
    );
    let metrics = ureq::get(&format!("{}/metrics", node.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains(
            r#"aqueduct_cluster_unreachable_seconds{cluster="dead",datastream="from-dead"}"#
        ),
        "{metrics}"
    );
    // Gone with the stream.
    assert_eq!(
        call(&node, "DELETE", "/v1/datastreams/from-dead", None).0,
        204
    );
    wait("ready again", Duration::from_secs(30), || {
        call(&node, "GET", "/readyz", None).0 == 200
    });

    // A partition stopped by Aqueduct: the destination topic accepts at most 10 KB, a record is 50 KB.
    let topic = format!("{cluster}.big");
    create_topic(&pair().source.bootstrap(), &topic, 2, &[]).unwrap();
    create_topic(
        &pair().destination.bootstrap(),
        &topic,
        2,
        &[("max.message.bytes", "10000")],
    )
    .unwrap();
    let definition = json!({
        "name": "big",
        "destination": "destination",
        "topic_refresh_interval_secs": 2,
        "sources": [{"cluster": "source", "topics": [topic]}],
    });
    let (status, body) = call(
        &node,
        "POST",
        "/v1/datastreams",
        Some(&definition.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    wait("running", Duration::from_secs(30), || {
        state_of(&node, "big") == "running"
    });
    let mut producer =
        SequenceProducer::new(&pair().source.bootstrap(), &topic, 2, 50_000).unwrap();
    producer.produce(1).unwrap();
    wait("the stream is in error", Duration::from_secs(60), || {
        state_of(&node, "big") == "error"
    });
    let (_, body) = call(&node, "GET", "/v1/datastreams/big?lag=false", None);
    let stopped = body["status"]["auto_paused_partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(stopped.len(), 2, "{body}");
    let (status, ready) = call(&node, "GET", "/readyz", None);
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["problems"]
            .to_string()
            .contains("max.message.bytes 10000"),
        "{ready}"
    );
}

#[test]
fn a_node_file_s_stream_deleted_through_the_api_stays_deleted() {
    let zookeeper = ZooKeeper::start().unwrap();
    let cluster = random_name("seeded");
    let file = r#"
[[datastreams]]
name = "deleted"
destination = "destination"
destination_topic = "mirror.{topic}"
[[datastreams.sources]]
cluster = "source"
topics = ["seeded-orders"]

[[datastreams]]
name = "kept"
destination = "destination"
destination_topic = "mirror.{topic}"
[[datastreams.sources]]
cluster = "source"
topics = ["seeded-orders"]
"#;
    let mut node = start_node_with(&cluster, &zookeeper.connect_string(), "a", file);
    wait("both streams seeded", Duration::from_secs(30), || {
        call(&node, "GET", "/v1/datastreams/kept?lag=false", None).0 == 200
            && call(&node, "GET", "/v1/datastreams/deleted?lag=false", None).0 == 200
    });
    let (status, body) = call(&node, "DELETE", "/v1/datastreams/deleted", None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(node.process.terminate(), Some(0));

    // The node comes back with the file and one stream more, seeded after the others: once that one is
    // there, the file was seeded again, and the deletion must hold.
    let file = format!(
        "{file}{}",
        file.split("[[datastreams]]")
            .nth(2)
            .map(|kept| format!("[[datastreams]]{}", kept.replace("\"kept\"", "\"added\"")))
            .unwrap()
    );
    let mut node = start_node_with(&cluster, &zookeeper.connect_string(), "a", &file);
    wait("the file seeded again", Duration::from_secs(30), || {
        call(&node, "GET", "/v1/datastreams/added?lag=false", None).0 == 200
    });
    assert_eq!(
        call(&node, "GET", "/v1/datastreams/kept?lag=false", None).0,
        200
    );
    let (status, body) = call(&node, "GET", "/v1/datastreams/deleted?lag=false", None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(node.process.terminate(), Some(0));
}
