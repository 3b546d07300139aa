//! The test kit itself: real ZooKeeper and Kafka processes start, answer, restart, and are gone after drop.

use std::path::Path;

use aqueduct_testkit::{partition_count, random_name, KafkaCluster, ZooKeeper};

fn alive(pid: u32) -> bool {
    // A killed child is reaped by its handle, so its /proc entry disappears.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn zookeeper_starts_answers_restarts_and_is_gone_after_drop() {
    let mut zk = ZooKeeper::start().unwrap();
    assert_eq!(zk.four_letter("ruok").unwrap(), "imok");
    assert!(zk.four_letter("srvr").unwrap().contains("Mode: standalone"));
    zk.restart().unwrap();
    assert_eq!(zk.four_letter("ruok").unwrap(), "imok");
    let pid = zk.pid().unwrap();
    drop(zk);
    assert!(!alive(pid), "zookeeper {pid} still runs after drop");
}

#[test]
fn kafka_starts_serves_restarts_and_is_gone_after_drop() {
    let mut kafka = KafkaCluster::start("kit").unwrap();
    let topic = random_name("kit");
    aqueduct_testkit::create_topic(&kafka.bootstrap(), &topic, 3, &[]).unwrap();
    assert_eq!(
        partition_count(&kafka.bootstrap(), &topic).unwrap(),
        Some(3)
    );
    kafka.restart().unwrap();
    assert_eq!(
        partition_count(&kafka.bootstrap(), &topic).unwrap(),
        Some(3),
        "data survives a restart"
    );
    // The sequence producer counts a record only once the broker acknowledged it: batches larger than the
    // topic accepts fail, and neither the round nor the written counts hide it.
    let strict = random_name("kit-limit");
    aqueduct_testkit::create_topic(
        &kafka.bootstrap(),
        &strict,
        1,
        &[("max.message.bytes", "4096")],
    )
    .unwrap();
    let mut producer =
        aqueduct_testkit::SequenceProducer::new(&kafka.bootstrap(), &strict, 1, 1024).unwrap();
    let round = producer.produce(100);
    assert!(round.is_err(), "a round with rejected records succeeded");
    let written = producer.written_per_partition()[0];
    assert!(written < 100, "{written} of 100 counted as written");
    let pid = kafka.pid().unwrap();
    drop(kafka);
    assert!(!alive(pid), "kafka {pid} still runs after drop");
}

#[test]
fn a_three_broker_cluster_replicates_and_survives_a_broker_stop() {
    use aqueduct_testkit::kafka::bootstrap_all;
    use aqueduct_testkit::{check_sequences, SequenceProducer};

    let mut brokers =
        KafkaCluster::start_cluster("trio", 3, aqueduct_testkit::KafkaOptions::default()).unwrap();
    let bootstrap = bootstrap_all(&brokers);
    let topic = random_name("trio");
    aqueduct_testkit::create_topic(&bootstrap, &topic, 3, &[]).unwrap();
    let mut producer = SequenceProducer::new(&bootstrap, &topic, 3, 100).unwrap();
    producer.produce(200).unwrap();
    // One broker down: acks=all still succeeds with min.insync.replicas = 2.
    brokers[0].stop();
    producer.produce(200).unwrap();
    brokers[0].restart().unwrap();
    producer.produce(200).unwrap();
    let written = producer.written_per_partition().to_vec();
    let report = check_sequences(
        &bootstrap,
        &topic,
        &written,
        true,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    assert!(report.is_lossless(), "{report:?}");
    assert_eq!(report.unique, 1800);
    let pids: Vec<u32> = brokers.iter().filter_map(KafkaCluster::pid).collect();
    assert_eq!(pids.len(), 3);
    drop(brokers);
    assert!(
        pids.iter().all(|pid| !alive(*pid)),
        "brokers still run after drop"
    );
}
