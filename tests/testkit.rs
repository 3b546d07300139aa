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
    let pid = kafka.pid().unwrap();
    drop(kafka);
    assert!(!alive(pid), "kafka {pid} still runs after drop");
}
