//! Shared by the integration tests: one source and one destination Kafka per test binary, config helpers,
//! and waiting.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aqueduct_model::config::NodeConfig;
use aqueduct_testkit::KafkaCluster;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

/// One scenario at a time in a test binary whose scenarios share the machine's two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A source and a destination cluster, started once per test binary and killed when it exits.
pub struct Pair {
    pub source: KafkaCluster,
    pub destination: KafkaCluster,
}

pub fn pair() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("AQUEDUCT_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let source =
            std::thread::spawn(|| KafkaCluster::start("source").expect("start source kafka"));
        let destination = KafkaCluster::start("destination").expect("start destination kafka");
        Pair {
            source: source.join().expect("source thread"),
            destination,
        }
    })
}

/// A node config with clusters `source` and `destination` and the given `[[datastreams]]` TOML.
pub fn node_config(source: &str, destination: &str, streams: &str) -> NodeConfig {
    let toml = format!(
        r#"
[node]
commit_interval_ms = 200
status_interval_secs = 1
max_in_flight_bytes = 67108864

[clusters.source]
bootstrap_servers = "{source}"

[clusters.destination]
bootstrap_servers = "{destination}"

{streams}
"#
    );
    NodeConfig::from_sources(&toml, Vec::new()).expect("valid test config")
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// Reads `count` records of `topic` from the beginning, grouped by partition in offset order.
pub fn read_records(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> BTreeMap<i32, Vec<OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "aqueduct-test-reader")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .expect("reader");
    let mut partitions = None;
    assert!(
        wait_until(timeout, || {
            partitions = aqueduct_testkit::partition_count(bootstrap, topic).expect("metadata");
            partitions.is_some()
        }),
        "topic {topic} does not exist"
    );
    let partitions = partitions.expect("checked above");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records: BTreeMap<i32, Vec<OwnedMessage>> = BTreeMap::new();
    let mut total = 0;
    let deadline = Instant::now() + timeout;
    while total < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume").detach();
            records
                .entry(message.partition())
                .or_default()
                .push(message);
            total += 1;
        }
    }
    records
}

/// Headers of a record as (key, value) pairs.
pub fn headers_of(message: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|header| (header.key.to_string(), header.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}
