//! The destination cluster goes away for 35 s under load: the node's memory stays bounded by its in-flight
//! cap (backpressure instead of buffering), and once the destination returns every record arrives.

mod common;

use std::time::{Duration, Instant};

use aqueduct_testkit::{
    check_sequences, create_topic, random_name, total_records, AqueductNode, KafkaCluster,
    SequenceProducer,
};
use common::wait_until;

const PARTITIONS: i32 = 8;
const RECORD_BYTES: usize = 1024;
const CAP: u64 = 32 * 1024 * 1024;
const PREFETCH: u64 = 4 * 1024 * 1024;
const TASKS: u64 = 4;
/// The stated margin over the in-flight cap and the consumers' prefetch: the process's own baseline (code,
/// librdkafka threads and buffers, allocator slack; about 50-65 MiB measured).
const BASELINE_MARGIN: u64 = 96 * 1024 * 1024;
/// Slack over cap + prefetch allowed for growth during the outage (allocator and librdkafka bookkeeping).
const GROWTH_SLACK: u64 = 16 * 1024 * 1024;

fn status(path: &std::path::Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[test]
fn destination_outage_applies_backpressure_and_loses_nothing() {
    // Clusters of this test alone, since it stops one of them.
    let source_cluster = std::thread::spawn(|| KafkaCluster::start("source").unwrap());
    let mut destination_cluster = KafkaCluster::start("destination").unwrap();
    let source_cluster = source_cluster.join().unwrap();
    let source = source_cluster.bootstrap();
    let destination = destination_cluster.bootstrap();
    let topic = random_name("outage");
    create_topic(&source, &topic, PARTITIONS, &[]).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let status_file = scratch.path().join("status.json");
    let config = format!(
        r#"
[node]
max_in_flight_bytes = {CAP}
consumer_prefetch_bytes = {PREFETCH}
commit_interval_ms = 500
status_interval_secs = 1
status_file = "{}"

[clusters.source]
bootstrap_servers = "{source}"
[clusters.destination]
bootstrap_servers = "{destination}"
[clusters.destination.properties]
"reconnect.backoff.max.ms" = "1000"

[[datastreams]]
name = "outage"
destination = "destination"
max_tasks = {TASKS}
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#,
        status_file.display()
    );
    let mut node = AqueductNode::start(&config).unwrap();
    let mut producer = SequenceProducer::new(&source, &topic, PARTITIONS, RECORD_BYTES).unwrap();

    // Warm up: 20 MB flow through while everything is up.
    producer.produce(2_500).unwrap();
    assert!(wait_until(Duration::from_secs(60), || total_records(
        &destination,
        &topic
    )
    .unwrap()
        == 20_000));
    let baseline = node.rss_bytes().unwrap();

    // Destination down; 300 MB more arrive at the source meanwhile, far more than the cap.
    destination_cluster.stop();
    let outage_started = Instant::now();
    let writer = {
        let mut producer = producer;
        std::thread::spawn(move || {
            for _ in 0..15 {
                producer.produce(2_500).unwrap();
            }
            producer
        })
    };
    let mut peak = baseline;
    while outage_started.elapsed() < Duration::from_secs(35) {
        peak = peak.max(node.rss_bytes().expect("node is running"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let producer = writer.join().expect("writer");
    let during = status(&status_file).expect("status file");
    let waits = during["backpressure_waits"].as_u64().unwrap();
    let in_flight = during["in_flight_bytes"].as_u64().unwrap();
    destination_cluster.restart().unwrap();

    let expected = producer.written_per_partition().to_vec();
    let report = check_sequences(
        &destination,
        &topic,
        &expected,
        true,
        Duration::from_secs(240),
    )
    .unwrap();
    let limit = CAP + TASKS * PREFETCH + BASELINE_MARGIN;
    eprintln!(
        "outage: baseline rss {} MiB, peak rss {} MiB during the outage, limit {} MiB \
         (cap {} MiB + {TASKS} x {} MiB prefetch + {} MiB); in flight at the end of the outage {} MiB; \
         {waits} backpressure waits; {report:?}",
        baseline >> 20,
        peak >> 20,
        limit >> 20,
        CAP >> 20,
        PREFETCH >> 20,
        BASELINE_MARGIN >> 20,
        in_flight >> 20,
    );
    assert!(
        waits > 0,
        "the cap was never reached: the test proves nothing"
    );
    assert!(
        in_flight <= CAP + 2 * RECORD_BYTES as u64 * TASKS,
        "in-flight bytes {in_flight} over the cap"
    );
    assert!(peak <= limit, "peak rss {peak} over {limit}");
    assert!(
        peak - baseline <= CAP + TASKS * PREFETCH + GROWTH_SLACK,
        "rss grew by {} MiB during the outage",
        (peak - baseline) >> 20
    );
    assert_eq!(report.missing, 0, "{report:?}\n{}", node.log_tail(40));
    assert_eq!(report.out_of_order, 0, "{report:?}");
    assert_eq!(node.terminate(), Some(0), "{}", node.log_tail(40));
}
