//! A producer that hits a fatal error (librdkafka's mock cluster desynchronises the idempotent producer's
//! sequence numbers) is replaced by its pool; its record fails back to the partition's inbox, so the task
//! rewinds and sends it again through the new producer.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aqueduct_engine::budget::InFlightBudget;
use aqueduct_engine::client::producer_config;
use aqueduct_engine::partition::{FailureInbox, PartitionMetrics, PartitionState, Route};
use aqueduct_engine::producer::{Delivery, ProducerPool};
use aqueduct_model::config::ClusterConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

fn wait(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn send(
    pool_lease: &aqueduct_engine::producer::ProducerLease,
    partition: &Arc<PartitionState>,
    offset: i64,
) {
    partition.sent(offset);
    partition.handed();
    let delivery = Box::new(Delivery {
        partition: Arc::clone(partition),
        offset,
        generation: partition.generation(),
        cost: 0,
        bytes: 5,
        timestamp_ms: None,
    });
    let record: BaseRecord<'_, [u8], [u8], Box<Delivery>> =
        BaseRecord::with_opaque_to("mirror", delivery)
            .partition(0)
            .payload(b"value".as_slice());
    pool_lease
        .producer()
        .send(record)
        .map_err(|(e, _)| e)
        .expect("queued");
}

#[test]
fn a_producer_with_a_fatal_error_is_replaced_and_its_records_fail_back() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).expect("mock cluster");
    mock.create_topic("mirror", 1, 1).expect("topic");
    let cluster = ClusterConfig {
        bootstrap_servers: mock.bootstrap_servers(),
        properties: BTreeMap::new(),
    };
    let config = producer_config(&cluster, &BTreeMap::new(), "fatal-test", 64 << 20);
    let pool = ProducerPool::new(
        "cluster:mock",
        &config,
        1,
        Arc::new(InFlightBudget::new(64 << 20)),
    )
    .expect("pool");
    let inbox = Arc::new(FailureInbox::default());
    let route = Arc::new(Route {
        destination_topic: "mirror".to_string(),
        destination_partitions: AtomicI32::new(1),
        max_message_bytes: 0.into(),
    });
    let partition = Arc::new(PartitionState::new(
        "source",
        0,
        route,
        0,
        Arc::clone(&inbox),
        Arc::new(PartitionMetrics::new("fatal-test")),
    ));

    // The broker answers the first produce request with a sequence number it did not expect: the
    // idempotent producer cannot tell what was written and stops for good.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let first = pool.lease();
    send(&first, &partition, 0);
    let fatal = wait(Duration::from_secs(20), || first.is_fatal());
    assert!(
        fatal,
        "the producer did not report a fatal error; failures: {:?}, unresolved {}",
        inbox.take(),
        partition.unresolved()
    );
    assert!(
        wait(Duration::from_secs(20), || partition.unresolved() == 0),
        "the record in the failed producer was never reported"
    );
    let failures = inbox.take();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].offset, 0);
    assert_eq!(partition.committable(), 0, "nothing acknowledged");

    // The task rewinds and borrows again: a fresh producer delivers the record.
    partition.rewind(partition.committable());
    let replaced = aqueduct_engine::metrics::metrics()
        .producer_fatal_errors
        .with_label_values(&["cluster:mock"]);
    let second = pool.lease();
    assert!(
        !second.is_fatal(),
        "the pool lent the broken producer again"
    );
    assert_eq!(replaced.get(), 1);
    send(&second, &partition, 0);
    assert!(
        wait(Duration::from_secs(20), || partition.committable() == 1),
        "the record was not delivered through the new producer"
    );
    assert_eq!(pool.size(), 1, "the pool keeps its size");
}
