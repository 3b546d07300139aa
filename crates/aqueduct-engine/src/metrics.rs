//! Every Prometheus metric of a node, declared here and nowhere else.
//!
//! Names follow `aqueduct_<subsystem>_<name>_<unit>[_total]`: the subsystem is where the value comes from
//! (`stream`, `partition`, `producer`, `node`, `cluster`, `coordination`), the unit is spelled out (`bytes`,
//! `seconds`, `records`, `tasks`), counters end in `_total`. Labels: `datastream`, and `topic`/`partition`
//! where they help; with `node.metrics_partition_labels = false` the per-partition series are folded into one
//! per datastream (topic and partition become empty) to keep cardinality bounded. `docs/metrics.md` lists
//! them; a test checks that it, the Grafana dashboard and the alert rules name only metrics declared here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::status::{NodeStatus, PartitionHealth};

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    pub records_consumed: IntCounterVec,
    pub bytes_consumed: IntCounterVec,
    pub records_produced: IntCounterVec,
    pub bytes_produced: IntCounterVec,
    pub replication_latency: HistogramVec,
    pub produce_errors: IntCounterVec,
    pub retries: IntCounterVec,
    pub commit_failures: IntCounterVec,
    pub commit_latency: HistogramVec,
    pub partition_lag: IntGaugeVec,
    pub paused_partitions: IntGaugeVec,
    pub unreachable_clusters: IntGaugeVec,
    pub deleted_source_topics: IntGaugeVec,
    pub source_topic_recreations: IntCounterVec,
    pub in_flight_bytes: IntGauge,
    pub max_in_flight_bytes: IntGauge,
    pub backpressure_waits: IntCounter,
    pub tasks_assigned: IntGauge,
    pub max_tasks: IntGauge,
    pub unassigned_tasks: IntGauge,
    pub leader: IntGauge,
    pub session_connected: IntGauge,
    pub rebalances: IntCounter,
    pub rebalance_duration: Histogram,
    pub pool_producers: IntGaugeVec,
    pub pool_queued_records: IntGaugeVec,
    pub producer_fatal_errors: IntCounterVec,
    /// Whether per-partition series carry their topic and partition.
    partition_labels: AtomicBool,
    /// Backpressure waits already added to the counter.
    waits_seen: AtomicU64,
}

/// Every metric name, with its type and help, as exported.
pub const METRICS: &[(&str, &str, &str)] = &[
    ("aqueduct_stream_records_consumed_total", "counter", "Records read from the source, per datastream."),
    ("aqueduct_stream_bytes_consumed_total", "counter", "Key, value and header bytes read from the source, per datastream."),
    ("aqueduct_stream_records_produced_total", "counter", "Records acknowledged by the destination, per datastream."),
    ("aqueduct_stream_bytes_produced_total", "counter", "Key, value and header bytes acknowledged by the destination, per datastream."),
    ("aqueduct_stream_replication_latency_seconds", "histogram", "From the source record's timestamp to the destination's acknowledgement (one record in 16), per datastream."),
    ("aqueduct_producer_errors_total", "counter", "Failed deliveries, per datastream and librdkafka error code."),
    ("aqueduct_stream_retries_total", "counter", "Partition rewinds after a transient delivery failure, per datastream."),
    ("aqueduct_stream_commit_failures_total", "counter", "Offset commits the source cluster refused or that could not be sent, per datastream (retried at the next interval)."),
    ("aqueduct_stream_commit_latency_seconds", "histogram", "From sending an offset commit to the source cluster's answer, per datastream."),
    ("aqueduct_partition_lag_records", "gauge", "Source end offset minus committed offset, per datastream, topic and partition (folded per datastream when partition labels are off)."),
    ("aqueduct_partition_paused_partitions", "gauge", "Partitions stopped by Aqueduct, per datastream and reason (rejected, out-of-range)."),
    ("aqueduct_cluster_unreachable_seconds", "gauge", "Seconds since a datastream last reached a source cluster, per datastream and cluster; present only while the cluster cannot be reached."),
    ("aqueduct_stream_source_topic_deleted_seconds", "gauge", "Seconds since a datastream found a source topic it mirrored gone from its cluster, per datastream, cluster and topic; present only while the topic is missing."),
    ("aqueduct_stream_source_topic_recreations_total", "counter", "Partitions restarted from the earliest offset because their source topic was deleted and created again (on_source_topic_recreated = restart-earliest), per datastream."),
    ("aqueduct_node_in_flight_bytes", "gauge", "Bytes handed to producers and not yet acknowledged."),
    ("aqueduct_node_max_in_flight_bytes", "gauge", "The node's in-flight cap."),
    ("aqueduct_node_backpressure_waits_total", "counter", "Times tasks waited because the in-flight cap was reached."),
    ("aqueduct_node_tasks", "gauge", "Tasks this node runs."),
    ("aqueduct_node_max_tasks", "gauge", "max_tasks_per_instance of this node."),
    ("aqueduct_cluster_unassigned_tasks", "gauge", "Tasks of the cluster no node can take within the caps, as last seen by this node."),
    ("aqueduct_cluster_leader", "gauge", "1 while this node leads the cluster."),
    ("aqueduct_coordination_session_connected", "gauge", "1 while this node is connected to ZooKeeper (always 1 standalone)."),
    ("aqueduct_cluster_rebalances_total", "counter", "Assignments written by this node as leader."),
    ("aqueduct_cluster_rebalance_duration_seconds", "histogram", "Time to plan and write one assignment."),
    ("aqueduct_producer_pool_producers", "gauge", "Producers in each pool."),
    ("aqueduct_producer_pool_queued_records", "gauge", "Records queued in each pool's producers, not yet acknowledged."),
    ("aqueduct_producer_fatal_errors_total", "counter", "Producers replaced after a fatal error (their records are sent again), per pool."),
];

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, _, help)| help)
}

fn counter_vec(registry: &Registry, name: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help(name)), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help(name)), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge(registry: &Registry, name: &str) -> IntGauge {
    let metric = IntGauge::new(name, help(name)).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn counter(registry: &Registry, name: &str) -> IntCounter {
    let metric = IntCounter::new(name, help(name)).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "aqueduct_stream_replication_latency_seconds",
                help("aqueduct_stream_replication_latency_seconds"),
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["datastream"],
        )
        .expect("valid metric");
        r.register(Box::new(latency.clone()))
            .expect("registered once");
        let commit_latency = HistogramVec::new(
            HistogramOpts::new(
                "aqueduct_stream_commit_latency_seconds",
                help("aqueduct_stream_commit_latency_seconds"),
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
            ]),
            &["datastream"],
        )
        .expect("valid metric");
        r.register(Box::new(commit_latency.clone()))
            .expect("registered once");
        let rebalance = Histogram::with_opts(
            HistogramOpts::new(
                "aqueduct_cluster_rebalance_duration_seconds",
                help("aqueduct_cluster_rebalance_duration_seconds"),
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        )
        .expect("valid metric");
        r.register(Box::new(rebalance.clone()))
            .expect("registered once");
        Self {
            records_consumed: counter_vec(
                &r,
                "aqueduct_stream_records_consumed_total",
                &["datastream"],
            ),
            bytes_consumed: counter_vec(
                &r,
                "aqueduct_stream_bytes_consumed_total",
                &["datastream"],
            ),
            records_produced: counter_vec(
                &r,
                "aqueduct_stream_records_produced_total",
                &["datastream"],
            ),
            bytes_produced: counter_vec(
                &r,
                "aqueduct_stream_bytes_produced_total",
                &["datastream"],
            ),
            replication_latency: latency,
            produce_errors: counter_vec(
                &r,
                "aqueduct_producer_errors_total",
                &["datastream", "code"],
            ),
            retries: counter_vec(&r, "aqueduct_stream_retries_total", &["datastream"]),
            commit_failures: counter_vec(
                &r,
                "aqueduct_stream_commit_failures_total",
                &["datastream"],
            ),
            commit_latency,
            partition_lag: gauge_vec(
                &r,
                "aqueduct_partition_lag_records",
                &["datastream", "topic", "partition"],
            ),
            paused_partitions: gauge_vec(
                &r,
                "aqueduct_partition_paused_partitions",
                &["datastream", "reason"],
            ),
            unreachable_clusters: gauge_vec(
                &r,
                "aqueduct_cluster_unreachable_seconds",
                &["datastream", "cluster"],
            ),
            deleted_source_topics: gauge_vec(
                &r,
                "aqueduct_stream_source_topic_deleted_seconds",
                &["datastream", "cluster", "topic"],
            ),
            source_topic_recreations: counter_vec(
                &r,
                "aqueduct_stream_source_topic_recreations_total",
                &["datastream"],
            ),
            in_flight_bytes: gauge(&r, "aqueduct_node_in_flight_bytes"),
            max_in_flight_bytes: gauge(&r, "aqueduct_node_max_in_flight_bytes"),
            backpressure_waits: counter(&r, "aqueduct_node_backpressure_waits_total"),
            tasks_assigned: gauge(&r, "aqueduct_node_tasks"),
            max_tasks: gauge(&r, "aqueduct_node_max_tasks"),
            unassigned_tasks: gauge(&r, "aqueduct_cluster_unassigned_tasks"),
            leader: gauge(&r, "aqueduct_cluster_leader"),
            session_connected: gauge(&r, "aqueduct_coordination_session_connected"),
            rebalances: counter(&r, "aqueduct_cluster_rebalances_total"),
            rebalance_duration: rebalance,
            pool_producers: gauge_vec(&r, "aqueduct_producer_pool_producers", &["pool"]),
            pool_queued_records: gauge_vec(&r, "aqueduct_producer_pool_queued_records", &["pool"]),
            producer_fatal_errors: counter_vec(
                &r,
                "aqueduct_producer_fatal_errors_total",
                &["pool"],
            ),
            partition_labels: AtomicBool::new(true),
            waits_seen: AtomicU64::new(0),
            registry: r,
        }
    }

    /// Per-partition series keep their topic and partition labels (`true`, the default) or are folded per
    /// datastream.
    pub fn set_partition_labels(&self, on: bool) {
        self.partition_labels.store(on, Ordering::Relaxed);
    }

    /// Updates the gauges that are read from the node's state, then renders every metric in the Prometheus
    /// text format.
    pub fn render(&self, status: &NodeStatus) -> String {
        self.in_flight_bytes.set(status.in_flight_bytes as i64);
        self.max_in_flight_bytes
            .set(status.max_in_flight_bytes as i64);
        let seen = self
            .waits_seen
            .swap(status.backpressure_waits, Ordering::Relaxed);
        self.backpressure_waits
            .inc_by(status.backpressure_waits.saturating_sub(seen));
        self.partition_lag.reset();
        self.paused_partitions.reset();
        self.unreachable_clusters.reset();
        self.deleted_source_topics.reset();
        let per_partition = self.partition_labels.load(Ordering::Relaxed);
        let now_ms = aqueduct_model::time::now_unix_ms();
        for stream in &status.streams {
            for deleted in &stream.deleted_topics {
                self.deleted_source_topics
                    .with_label_values(&[
                        stream.name.as_str(),
                        deleted.cluster.as_str(),
                        deleted.topic.as_str(),
                    ])
                    .set((now_ms.saturating_sub(deleted.since_unix_ms) / 1000) as i64);
            }
            for cluster in &stream.unreachable {
                self.unreachable_clusters
                    .with_label_values(&[stream.name.as_str(), cluster.cluster.as_str()])
                    .set((now_ms.saturating_sub(cluster.since_unix_ms) / 1000) as i64);
            }
            let mut folded = 0;
            for partition in stream.partitions() {
                let reason = match partition.health {
                    PartitionHealth::Running => None,
                    PartitionHealth::Paused(_) => Some("rejected"),
                    PartitionHealth::Error(_) => Some("out-of-range"),
                };
                if let Some(reason) = reason {
                    self.paused_partitions
                        .with_label_values(&[stream.name.as_str(), reason])
                        .inc();
                }
                let Some(lag) = partition.lag else { continue };
                if per_partition {
                    self.partition_lag
                        .with_label_values(&[
                            stream.name.as_str(),
                            partition.topic.as_str(),
                            &partition.partition.to_string(),
                        ])
                        .set(lag);
                } else {
                    folded += lag;
                }
            }
            if !per_partition {
                self.partition_lag
                    .with_label_values(&[stream.name.as_str(), "", ""])
                    .set(folded);
            }
        }
        for pool in &status.pools {
            self.pool_producers
                .with_label_values(&[pool.name.as_str()])
                .set(pool.producers as i64);
            self.pool_queued_records
                .with_label_values(&[pool.name.as_str()])
                .set(i64::from(pool.queued_records));
        }
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The node's metrics (one set per process).
pub fn metrics() -> &'static Metrics {
    static METRICS_OF_THE_NODE: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS_OF_THE_NODE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention_and_every_declared_metric_is_exported() {
        let m = metrics();
        // Touch the labelled families so they appear in the output.
        m.records_consumed.with_label_values(&["s"]).inc();
        m.bytes_consumed.with_label_values(&["s"]).inc();
        m.records_produced.with_label_values(&["s"]).inc();
        m.bytes_produced.with_label_values(&["s"]).inc();
        m.replication_latency.with_label_values(&["s"]).observe(0.1);
        m.produce_errors
            .with_label_values(&["s", "MsgTimedOut"])
            .inc();
        m.retries.with_label_values(&["s"]).inc();
        m.commit_failures.with_label_values(&["s"]).inc();
        m.source_topic_recreations.with_label_values(&["s"]).inc();
        m.commit_latency.with_label_values(&["s"]).observe(0.01);
        m.producer_fatal_errors.with_label_values(&["p"]).inc();
        let partition = |number: i32, health: PartitionHealth| crate::status::PartitionStatus {
            topic: "t".to_string(),
            partition: number,
            destination_topic: "t".to_string(),
            health,
            committed_offset: Some(5),
            in_flight: 0,
            records_acked: 5,
            lag: Some(7),
        };
        let status = NodeStatus {
            streams: vec![crate::status::StreamStatus {
                name: "s".to_string(),
                paused: false,
                tasks: vec![crate::status::TaskStatus {
                    id: "s-0of1-source".to_string(),
                    source_cluster: "source".to_string(),
                    partitions: vec![
                        partition(0, PartitionHealth::Running),
                        partition(1, PartitionHealth::Paused("too large".to_string())),
                    ],
                }],
                errors: Vec::new(),
                unreachable: vec![crate::status::UnreachableCluster {
                    cluster: "far".to_string(),
                    since_unix_ms: 0,
                    error: "down".to_string(),
                }],
                deleted_topics: vec![crate::status::DeletedTopic {
                    cluster: "source".to_string(),
                    topic: "gone".to_string(),
                    since_unix_ms: 0,
                }],
            }],
            in_flight_bytes: 0,
            max_in_flight_bytes: 1,
            backpressure_waits: 0,
            pools: vec![crate::status::PoolStatus {
                name: "p".to_string(),
                producers: 2,
                queued_records: 0,
            }],
        };
        let text = m.render(&status);
        assert!(
            text.contains(
                r#"aqueduct_stream_source_topic_deleted_seconds{cluster="source",datastream="s",topic="gone"} "#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"aqueduct_partition_lag_records{datastream="s",partition="0",topic="t"} 7"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"aqueduct_partition_paused_partitions{datastream="s",reason="rejected"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"aqueduct_cluster_unreachable_seconds{cluster="far",datastream="s"} 1"#
            ),
            "{text}"
        );
        // Folded: one series per datastream.
        m.set_partition_labels(false);
        let folded = m.render(&status);
        m.set_partition_labels(true);
        assert!(
            folded.contains(
                r#"aqueduct_partition_lag_records{datastream="s",partition="",topic=""} 14"#
            ),
            "{folded}"
        );
        for (name, kind, help) in METRICS {
            assert!(name.starts_with("aqueduct_"), "{name}");
            let unit_ok = [
                "_total",
                "_seconds",
                "_bytes",
                "_records",
                "_tasks",
                "_partitions",
                "_producers",
                "_leader",
                "_connected",
            ]
            .iter()
            .any(|suffix| name.ends_with(suffix));
            assert!(unit_ok, "{name} does not end in a unit");
            assert_eq!(*kind == "counter", name.ends_with("_total"), "{name}");
            assert!(!help.is_empty());
            assert!(
                text.contains(&format!("# TYPE {name} {kind}")),
                "{name} is not exported:\n{text}"
            );
        }
    }
}
