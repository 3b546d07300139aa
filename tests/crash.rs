//! Kill -9 mid-stream, several times: every acknowledged source record still reaches the destination.

mod common;

use std::time::Duration;

use aqueduct_testkit::{
    check_sequences, create_topic, random_name, total_records, AqueductNode, SequenceProducer,
};
use common::pair;
use rand::Rng;

const PARTITIONS: i32 = 8;
const ROUNDS: u64 = 50;
const PER_ROUND: u64 = 500;
const KILLS: usize = 4;

#[test]
fn sigkill_mid_stream_loses_nothing_and_keeps_order() {
    let pair = pair();
    let source = pair.source.bootstrap();
    let destination = pair.destination.bootstrap();
    let topic = random_name("crash");
    create_topic(&source, &topic, PARTITIONS, &[]).unwrap();

    let config = format!(
        r#"
[node]
commit_interval_ms = 500
status_interval_secs = 5

[clusters.source]
bootstrap_servers = "{source}"
[clusters.destination]
bootstrap_servers = "{destination}"

[[datastreams]]
name = "crash"
destination = "destination"
max_tasks = 4
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
    );
    let mut node = AqueductNode::start(&config).unwrap();

    // 200,000 sequence-numbered records over 8 partitions, written while the node is killed and restarted.
    let producer = {
        let (source, topic) = (source.clone(), topic.clone());
        std::thread::spawn(move || {
            let mut producer = SequenceProducer::new(&source, &topic, PARTITIONS, 100).unwrap();
            for _ in 0..ROUNDS {
                producer.produce(PER_ROUND).unwrap();
                std::thread::sleep(Duration::from_millis(250));
            }
            producer.written_per_partition().to_vec()
        })
    };
    let total = ROUNDS * PER_ROUND * PARTITIONS as u64;
    let mut rng = rand::rng();
    let mut mid_stream_kills = 0;
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..3500)));
        let copied = total_records(&destination, &topic).unwrap();
        assert!(
            node.is_running(),
            "node died by itself:\n{}",
            node.log_tail(40)
        );
        node.kill();
        eprintln!("kill {kill}: SIGKILL with {copied} of {total} records copied");
        if copied > 0 && (copied as u64) < total {
            mid_stream_kills += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(100..800)));
        node.restart().unwrap();
    }
    let expected = producer.join().expect("producer thread");
    assert_eq!(expected.iter().sum::<u64>(), total);

    let report = check_sequences(
        &destination,
        &topic,
        &expected,
        true,
        Duration::from_secs(180),
    )
    .unwrap();
    eprintln!("crash test: {report:?}");
    assert!(
        mid_stream_kills >= 3,
        "only {mid_stream_kills} kills happened mid-stream"
    );
    assert_eq!(
        report.missing,
        0,
        "records lost: {report:?}\n{}",
        node.log_tail(40)
    );
    assert_eq!(
        report.out_of_order, 0,
        "first deliveries out of order: {report:?}"
    );
    assert_eq!(
        report.wrong_partition, 0,
        "records off their partition: {report:?}"
    );
    assert_eq!(report.unique, total);
    eprintln!(
        "crash test: {} records, {} duplicates after {KILLS} kills ({:.2}%)",
        report.unique,
        report.duplicates,
        100.0 * report.duplicates as f64 / report.unique as f64
    );
    assert_eq!(
        node.terminate(),
        Some(0),
        "clean shutdown:\n{}",
        node.log_tail(40)
    );
}
