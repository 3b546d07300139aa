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
"#,
        source = pair.source.bootstrap(),
        destination = pair.destination.bootstrap(),
    );
    let process = AqueductNode::start(&config).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let node = Node { process, url };
    wait("the API answers", Duration::from_secs(30), || {
        call(&node, "GET", "/healthz", None).0 == 200
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
    let mut last = records_per_partition(&destination, topic).unwrap();
    let mut grew_at = Duration::ZERO;
    while start.elapsed() < watch {
        std::thread::sleep(Duration::from_millis(100));
        let now = records_per_partition(&destination, topic).unwrap();
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
    let (_, instances) = call(&b, "GET", "/v1/instances", None);
    assert_eq!(
        instances["instances"].as_array().unwrap().len(),
        2,
        "{instances}"
    );
    wait("records flow", Duration::from_secs(30), || {
        records_per_partition(&pair().destination.bootstrap(), &mirror)
            .unwrap()
            .iter()
            .all(|n| *n > 0)
    });
    let (status, body) = call(&b, "GET", "/v1/datastreams/orders", None);
    assert_eq!(status, 200);
    assert_eq!(
        body["lag"].as_array().map(Vec::len),
        Some(PARTITIONS as usize),
        "{body}"
    );

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
    wait("a back", Duration::from_secs(30), || {
        call(&a, "GET", "/healthz", None).0 == 200
    });
    wait("b back", Duration::from_secs(30), || {
        call(&b, "GET", "/healthz", None).0 == 200
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
    wait("b back", Duration::from_secs(30), || {
        call(&b, "GET", "/healthz", None).0 == 200
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
