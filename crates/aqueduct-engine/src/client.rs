//! librdkafka client settings: Aqueduct's defaults, then the cluster's properties, then the stream's, then
//! the settings Aqueduct's guarantees rest on.

use std::collections::BTreeMap;

use aqueduct_model::config::ClusterConfig;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

fn layered(
    cluster: &ClusterConfig,
    defaults: &[(&str, String)],
    overrides: &BTreeMap<String, String>,
    enforced: &[(&str, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in defaults {
        config.set(*key, value);
    }
    for (key, value) in cluster.properties.iter().chain(overrides) {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &cluster.bootstrap_servers);
    for (key, value) in enforced {
        config.set(*key, value);
    }
    config
}

/// A consumer that reads assigned partitions and commits only what Aqueduct tells it to.
pub fn consumer_config(
    cluster: &ClusterConfig,
    overrides: &BTreeMap<String, String>,
    group_id: &str,
    client_id: &str,
    prefetch_bytes: u64,
) -> ClientConfig {
    layered(
        cluster,
        &[
            ("client.id", client_id.to_string()),
            (
                "queued.max.messages.kbytes",
                (prefetch_bytes / 1024).max(1).to_string(),
            ),
            ("fetch.wait.max.ms", "100".to_string()),
            // When the prefetch queue is full, librdkafka waits this long before fetching that partition
            // again; its default (1 s) starves a task that drains the queue in milliseconds.
            ("fetch.queue.backoff.ms", "10".to_string()),
            ("enable.partition.eof", "false".to_string()),
            // Per-partition lag for the metrics and the status.
            ("statistics.interval.ms", "10000".to_string()),
        ],
        overrides,
        &[
            ("group.id", group_id.to_string()),
            ("enable.auto.commit", "false".to_string()),
            ("enable.auto.offset.store", "false".to_string()),
            // Out-of-range offsets surface as errors instead of a silent jump.
            ("auto.offset.reset", "error".to_string()),
        ],
    )
}

/// A producer whose acknowledgement means the record is on every in-sync replica, in order.
pub fn producer_config(
    cluster: &ClusterConfig,
    overrides: &BTreeMap<String, String>,
    client_id: &str,
    max_in_flight_bytes: u64,
) -> ClientConfig {
    layered(
        cluster,
        &[
            ("client.id", client_id.to_string()),
            ("linger.ms", "5".to_string()),
            ("batch.size", "1000000".to_string()),
            ("message.timeout.ms", "300000".to_string()),
            // Same hash as the Java client, so key-hash partitioning matches what Kafka users expect.
            ("partitioner", "murmur2_random".to_string()),
            // The node's in-flight cap bounds memory; the producer queue must never be the tighter limit.
            (
                "queue.buffering.max.kbytes",
                (max_in_flight_bytes / 1024)
                    .clamp(1024, 2_097_151)
                    .to_string(),
            ),
            ("queue.buffering.max.messages", "2000000".to_string()),
        ],
        overrides,
        &[
            ("acks", "all".to_string()),
            ("enable.idempotence", "true".to_string()),
        ],
    )
}

/// A metadata and admin client.
pub fn admin_config(cluster: &ClusterConfig) -> ClientConfig {
    layered(cluster, &[], &BTreeMap::new(), &[])
}
