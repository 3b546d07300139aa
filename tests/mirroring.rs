//! The engine against real Kafka: record fidelity, destination topics, discovery, error isolation.

mod common;

use std::time::Duration;

use aqueduct_engine::status::PartitionHealth;
use aqueduct_engine::Engine;
use aqueduct_testkit::{
    check_sequences, create_topic, random_name, topic_overrides, SequenceProducer,
};
use common::{headers_of, node_config, pair, read_records, wait_until};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("log_level", "3")
        .create()
        .expect("producer")
}

/// Sends a text record with key `k` to `topic` (to `partition` when given).
fn send_text(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: Option<i32>,
    value: &str,
) {
    let mut record = BaseRecord::<str, str>::to(topic).key("k").payload(value);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    producer.send(record).map_err(|(e, _)| e).unwrap();
}

#[test]
fn records_keep_key_value_headers_timestamp_partition_and_order() {
    let pair = pair();
    let topic = random_name("fidelity");
    create_topic(
        &pair.source.bootstrap(),
        &topic,
        4,
        &[
            ("cleanup.policy", "delete"),
            ("segment.ms", "3600000"),
            ("retention.ms", "864000000"),
            ("max.message.bytes", "2000000"),
            ("min.insync.replicas", "1"),
        ],
    )
    .unwrap();

    // Per partition: a keyed record with headers, a null key, a tombstone, and a run of ordered records.
    let source = producer(&pair.source.bootstrap());
    // An hour ago: old enough to tell source timestamps from append times, young enough for retention.
    let base_ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let mut sent = 0;
    for partition in 0..4 {
        for i in 0..50 {
            let key = format!("key-{partition}-{i}");
            let value = format!("value-{partition}-{i}");
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "h-text",
                    value: Some(&format!("v{i}")),
                })
                .insert(Header {
                    key: "h-null",
                    value: None::<&[u8]>,
                })
                .insert(Header {
                    key: "h-text",
                    value: Some("repeated"),
                });
            let mut record = BaseRecord::<[u8], [u8]>::to(&topic)
                .partition(partition)
                .timestamp(base_ts + i64::from(partition) * 1000 + i);
            if i % 10 != 3 {
                record = record.key(key.as_bytes());
            }
            if i % 10 != 7 {
                record = record.payload(value.as_bytes());
            }
            if i % 2 == 0 {
                record = record.headers(headers);
            }
            source.send(record).map_err(|(e, _)| e).unwrap();
            sent += 1;
        }
    }
    source.flush(Duration::from_secs(30)).unwrap();

    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &format!(
            r#"
[[datastreams]]
name = "fidelity"
destination = "destination"
max_tasks = 2
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ),
    );
    let engine = Engine::start(&config).unwrap();
    let copied = read_records(
        &pair.destination.bootstrap(),
        &topic,
        sent,
        Duration::from_secs(60),
    );
    let originals = read_records(
        &pair.source.bootstrap(),
        &topic,
        sent,
        Duration::from_secs(30),
    );
    assert_eq!(copied.len(), 4, "every partition has records");
    for (partition, records) in &originals {
        let mirrored = &copied[partition];
        assert_eq!(mirrored.len(), records.len(), "partition {partition}");
        for (a, b) in records.iter().zip(mirrored) {
            assert_eq!(a.key(), b.key(), "key, partition {partition}");
            assert_eq!(a.payload(), b.payload(), "value, partition {partition}");
            assert_eq!(
                headers_of(a),
                headers_of(b),
                "headers, partition {partition}"
            );
            assert_eq!(
                a.timestamp().to_millis(),
                b.timestamp().to_millis(),
                "timestamp, partition {partition}"
            );
        }
    }
    let nulls = copied
        .values()
        .flatten()
        .filter(|m| m.key().is_none())
        .count();
    let tombstones = copied
        .values()
        .flatten()
        .filter(|m| m.payload().is_none())
        .count();
    assert_eq!(nulls, 20, "null keys pass");
    assert_eq!(tombstones, 20, "tombstones pass");

    // The destination topic was created with the source's partition count and its topic configs, except
    // the durability settings that belong to the destination.
    assert_eq!(
        aqueduct_testkit::partition_count(&pair.destination.bootstrap(), &topic).unwrap(),
        Some(4)
    );
    let configs = topic_overrides(&pair.destination.bootstrap(), &topic).unwrap();
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("864000000")
    );
    assert_eq!(
        configs.get("max.message.bytes").map(String::as_str),
        Some("2000000")
    );
    assert!(!configs.contains_key("min.insync.replicas"), "{configs:?}");

    // Offsets are committed under the stream's group once acknowledged.
    assert!(wait_until(Duration::from_secs(10), || {
        engine
            .status()
            .stream("fidelity")
            .unwrap()
            .partitions()
            .all(|p| p.committed_offset == Some(50) && p.in_flight == 0)
    }));
    engine.shutdown();
}

#[test]
fn topics_matching_the_pattern_are_picked_up_after_start_and_partitions_too() {
    let pair = pair();
    let prefix = random_name("regex");
    let first = format!("{prefix}.a");
    create_topic(&pair.source.bootstrap(), &first, 2, &[]).unwrap();
    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &format!(
            r#"
[[datastreams]]
name = "regex"
destination = "destination"
destination_topic = "mirror.{{topic}}"
topic_refresh_interval_secs = 1
[[datastreams.sources]]
cluster = "source"
topic_pattern = "{prefix}\\..*"
exclude_pattern = ".*\\.skip"
"#
        ),
    );
    let engine = Engine::start(&config).unwrap();
    // Created after the node started.
    let later = format!("{prefix}.b");
    let skipped = format!("{prefix}.skip");
    create_topic(&pair.source.bootstrap(), &later, 3, &[]).unwrap();
    create_topic(&pair.source.bootstrap(), &skipped, 1, &[]).unwrap();
    let source = producer(&pair.source.bootstrap());
    for topic in [&first, &later, &skipped] {
        for i in 0..30 {
            send_text(&source, topic, None, &format!("{i}"));
        }
    }
    source.flush(Duration::from_secs(30)).unwrap();
    let copied = read_records(
        &pair.destination.bootstrap(),
        &format!("mirror.{later}"),
        30,
        Duration::from_secs(30),
    );
    assert_eq!(copied.values().map(Vec::len).sum::<usize>(), 30);
    assert_eq!(
        aqueduct_testkit::partition_count(
            &pair.destination.bootstrap(),
            &format!("mirror.{later}")
        )
        .unwrap(),
        Some(3)
    );
    let first_copied = read_records(
        &pair.destination.bootstrap(),
        &format!("mirror.{first}"),
        30,
        Duration::from_secs(30),
    );
    assert_eq!(first_copied.values().map(Vec::len).sum::<usize>(), 30);
    assert_eq!(
        aqueduct_testkit::partition_count(
            &pair.destination.bootstrap(),
            &format!("mirror.{skipped}")
        )
        .unwrap(),
        None,
        "excluded topics are not mirrored"
    );

    // New partitions of a mirrored topic are picked up and the destination grows with them.
    aqueduct_testkit::add_partitions(&pair.source.bootstrap(), &first, 4).unwrap();
    let source = producer(&pair.source.bootstrap());
    for i in 0..20 {
        send_text(&source, &first, Some(3), &format!("new-{i}"));
    }
    source.flush(Duration::from_secs(30)).unwrap();
    // The reader sees the partitions that exist when it starts: wait for discovery to grow the destination.
    assert!(
        wait_until(Duration::from_secs(30), || {
            aqueduct_testkit::partition_count(
                &pair.destination.bootstrap(),
                &format!("mirror.{first}"),
            )
            .unwrap()
                == Some(4)
        }),
        "destination grown to the source's partition count"
    );
    let grown = read_records(
        &pair.destination.bootstrap(),
        &format!("mirror.{first}"),
        50,
        Duration::from_secs(30),
    );
    assert_eq!(
        grown.get(&3).map(Vec::len),
        Some(20),
        "new partition mirrored on its own number"
    );
    engine.shutdown();
}

#[test]
fn a_topic_with_a_small_max_message_bytes_is_mirrored_in_full() {
    let pair = pair();
    let topic = random_name("small-limit");
    // Every record fits the limit on its own; the producer's default batches (up to 1 MB) do not.
    create_topic(
        &pair.source.bootstrap(),
        &topic,
        4,
        &[("max.message.bytes", "65536")],
    )
    .unwrap();
    let mut load = SequenceProducer::with_properties(
        &pair.source.bootstrap(),
        &topic,
        4,
        1024,
        &[("batch.size", "16384")],
    )
    .unwrap();
    load.produce(12_500).unwrap();
    assert_eq!(load.written_per_partition(), vec![12_500; 4]);
    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &format!(
            r#"
[[datastreams]]
name = "small-limit"
destination = "destination"
max_tasks = 2
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ),
    );
    let started = std::time::Instant::now();
    let engine = Engine::start(&config).unwrap();
    let report = check_sequences(
        &pair.destination.bootstrap(),
        &topic,
        &load.written_per_partition(),
        true,
        Duration::from_secs(120),
    )
    .unwrap();
    let elapsed = started.elapsed();
    let status = engine.status();
    assert!(report.is_lossless(), "{report:?}\n{status:#?}");
    assert_eq!(report.unique, 50_000, "{report:?}");
    assert!(
        status
            .stream("small-limit")
            .unwrap()
            .partitions()
            .all(|p| p.health == PartitionHealth::Running),
        "{status:#?}"
    );
    eprintln!("50,000 records of 1 KiB through max.message.bytes 65536 in {elapsed:?}");
    engine.shutdown();
}

#[test]
fn a_record_the_destination_rejects_pauses_only_its_partition() {
    let pair = pair();
    let topic = random_name("reject");
    create_topic(&pair.source.bootstrap(), &topic, 2, &[]).unwrap();
    // The destination exists already and accepts at most 10 KB per batch.
    create_topic(
        &pair.destination.bootstrap(),
        &topic,
        2,
        &[("max.message.bytes", "10000")],
    )
    .unwrap();
    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &format!(
            r#"
[[datastreams]]
name = "reject"
destination = "destination"
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ),
    );
    let engine = Engine::start(&config).unwrap();
    let source = producer(&pair.source.bootstrap());
    for i in 0..10 {
        send_text(&source, &topic, Some(0), &format!("small-{i}"));
    }
    source.flush(Duration::from_secs(30)).unwrap();
    assert!(wait_until(Duration::from_secs(30), || engine
        .status()
        .stream("reject")
        .unwrap()
        .partitions()
        .any(|p| p.partition == 0 && p.committed_offset == Some(10))));
    // Offset 10 is larger than the destination topic accepts.
    let big = vec![b'x'; 50_000];
    source
        .send(BaseRecord::to(&topic).partition(0).key("big").payload(&big))
        .map_err(|(e, _)| e)
        .unwrap();
    for i in 0..10 {
        send_text(&source, &topic, Some(0), &format!("after-{i}"));
        send_text(&source, &topic, Some(1), &format!("other-{i}"));
    }
    source.flush(Duration::from_secs(30)).unwrap();

    let paused = wait_until(Duration::from_secs(60), || {
        let status = engine.status();
        let stream = status.stream("reject").unwrap();
        let p0 = stream.partitions().find(|p| p.partition == 0);
        let p1 = stream.partitions().find(|p| p.partition == 1);
        matches!(p0.map(|p| &p.health), Some(PartitionHealth::Paused(_)))
            && p1.is_some_and(|p| p.committed_offset == Some(10))
    });
    let status = engine.status();
    assert!(paused, "{status:#?}");
    let stream = status.stream("reject").unwrap();
    let p0 = stream.partitions().find(|p| p.partition == 0).unwrap();
    let PartitionHealth::Paused(reason) = &p0.health else {
        unreachable!()
    };
    assert!(reason.contains("offset 10"), "{reason}");
    // The reason names the record's size against the destination topic's limit.
    assert!(
        reason.contains("50003 bytes") && reason.contains("max.message.bytes 10000"),
        "{reason}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || engine
            .status()
            .stream("reject")
            .unwrap()
            .partitions()
            .find(|p| p.partition == 0)
            .unwrap()
            .committed_offset
            == Some(10)),
        "the commit stops right before the rejected record"
    );
    let copied = read_records(
        &pair.destination.bootstrap(),
        &topic,
        20,
        Duration::from_secs(10),
    );
    assert_eq!(
        copied.get(&0).map(Vec::len),
        Some(10),
        "nothing after the rejected record"
    );
    assert_eq!(
        copied.get(&1).map(Vec::len),
        Some(10),
        "the other partition flows"
    );
    let rejected = copied[&0]
        .iter()
        .any(|m| m.key() == Some(b"big".as_slice()));
    assert!(!rejected);
    engine.shutdown();
}

#[test]
fn a_committed_offset_outside_the_log_stops_the_partition_instead_of_jumping() {
    let pair = pair();
    let topic = random_name("range");
    create_topic(&pair.source.bootstrap(), &topic, 1, &[]).unwrap();
    let source = producer(&pair.source.bootstrap());
    for i in 0..5 {
        send_text(&source, &topic, None, &format!("{i}"));
    }
    source.flush(Duration::from_secs(30)).unwrap();
    // A committed offset past the end, as after the topic was deleted and re-created.
    let group = "aqueduct-range";
    let committer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", pair.source.bootstrap())
        .set("group.id", group)
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, rdkafka::Offset::Offset(500))
        .unwrap();
    rdkafka::consumer::Consumer::commit(&committer, &offsets, rdkafka::consumer::CommitMode::Sync)
        .unwrap();

    let streams = |policy: &str| {
        format!(
            r#"
[[datastreams]]
name = "range"
destination = "destination"
on_offset_out_of_range = "{policy}"
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        )
    };
    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &streams("fail"),
    );
    let engine = Engine::start(&config).unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        engine
            .status()
            .stream("range")
            .unwrap()
            .partitions()
            .any(|p| matches!(&p.health, PartitionHealth::Error(r) if r.contains("out of range")))
    }));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        engine.status().stream("range").unwrap().records_acked(),
        0,
        "nothing is copied from a guessed position"
    );
    engine.shutdown();

    // The operator opts in to a reset: the partition restarts from the earliest offset.
    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &streams("reset-earliest"),
    );
    let engine = Engine::start(&config).unwrap();
    let copied = read_records(
        &pair.destination.bootstrap(),
        &topic,
        5,
        Duration::from_secs(30),
    );
    assert_eq!(copied.get(&0).map(Vec::len), Some(5));
    engine.shutdown();
}

/// The committed offsets of `group` for `topic`'s partitions 0..`partitions`, as the source cluster has them.
fn committed_in_kafka(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(rdkafka::Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect()
}

#[test]
fn a_commit_the_source_refuses_is_not_taken_for_committed() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let pair = pair();
    let topic = random_name("commit-refused");
    create_topic(&pair.source.bootstrap(), &topic, 1, &[]).unwrap();
    let group = random_name("commit-refused-group");
    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &format!(
            r#"
[[datastreams]]
name = "commit-refused"
destination = "destination"
group_id = "{group}"
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ),
    );
    let engine = Engine::start(&config).unwrap();
    let mut load = SequenceProducer::new(&pair.source.bootstrap(), &topic, 1, 100).unwrap();
    load.produce(100).unwrap();
    let committed = |engine: &Engine| {
        engine
            .status()
            .stream("commit-refused")
            .and_then(|s| s.partitions().next().and_then(|p| p.committed_offset))
    };
    assert!(
        wait_until(Duration::from_secs(30), || committed(&engine) == Some(100)),
        "{:#?}",
        engine.status()
    );
    // A consumer joins the stream's group as a member: the broker now refuses the stream's commits
    // (they come from outside the group's generation).
    let squatter: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", pair.source.bootstrap())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .unwrap();
    squatter.subscribe(&[topic.as_str()]).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let _ = squatter.poll(Duration::from_millis(100));
            squatter.assignment().is_ok_and(|a| a.count() > 0)
        }),
        "the squatter joined the group"
    );
    load.produce(100).unwrap();
    // The records are copied and acknowledged, but no commit lands: the status must not claim one, and
    // the refusals are counted.
    let refusals = || {
        aqueduct_engine::metrics::metrics()
            .commit_failures
            .with_label_values(&["commit-refused"])
            .get()
    };
    assert!(wait_until(Duration::from_secs(30), || {
        let _ = squatter.poll(Duration::from_millis(100));
        refusals() >= 2
            && engine.status().stream("commit-refused").is_some_and(|s| {
                s.partitions()
                    .next()
                    .is_some_and(|p| p.records_acked == 200)
            })
    }));
    let in_kafka = committed_in_kafka(&pair.source.bootstrap(), &group, &topic, 1);
    assert_eq!(
        in_kafka,
        vec![Some(100)],
        "the squatter kept the stream from committing"
    );
    assert_eq!(
        committed(&engine),
        Some(100),
        "the status shows a commit the source refused"
    );
    let metrics = aqueduct_engine::metrics::metrics().render(&engine.status());
    assert!(
        metrics.lines().any(|l| l
            .starts_with(r#"aqueduct_stream_commit_failures_total{datastream="commit-refused"}"#)),
        "{metrics}"
    );
    // The squatter leaves: the commit is retried and lands.
    drop(squatter);
    assert!(
        wait_until(Duration::from_secs(60), || committed(&engine) == Some(200)),
        "{:#?}",
        engine.status()
    );
    assert_eq!(
        committed_in_kafka(&pair.source.bootstrap(), &group, &topic, 1),
        vec![Some(200)]
    );
    engine.shutdown();
}

#[test]
fn changed_producer_properties_take_effect_and_a_removed_stream_s_pool_closes() {
    use std::sync::Arc;
    let pair = pair();
    let topic = random_name("producer-props");
    create_topic(&pair.source.bootstrap(), &topic, 1, &[]).unwrap();
    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &format!(
            r#"
[[datastreams]]
name = "props"
destination = "destination"
[datastreams.producer_properties]
"message.max.bytes" = "1500"
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ),
    );
    let mut stream = config.datastreams[0].clone();
    let engine = Engine::new(&config, 2).unwrap();
    // Records of 2,000 bytes: the stream's producers refuse them (message.max.bytes 1500).
    let mut load = SequenceProducer::new(&pair.source.bootstrap(), &topic, 1, 2000).unwrap();
    load.produce(10).unwrap();
    engine.run("props", Arc::new(stream.clone()), None).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || engine
            .status()
            .stream("props")
            .is_some_and(|s| s
                .partitions()
                .any(|p| matches!(p.health, PartitionHealth::Paused(_))))),
        "{:#?}",
        engine.status()
    );
    assert!(engine
        .status()
        .pools
        .iter()
        .any(|p| p.name == "stream:props"));
    // Removed: its own pool closes.
    engine.stop("props");
    let pools: Vec<String> = engine
        .status()
        .pools
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert!(!pools.contains(&"stream:props".to_string()), "{pools:?}");
    // Started again with the limit raised: the new setting is in force and every record arrives.
    stream
        .producer_properties
        .insert("message.max.bytes".to_string(), "2000000".to_string());
    engine.run("props", Arc::new(stream), None).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || engine
            .status()
            .stream("props")
            .is_some_and(|s| s
                .partitions()
                .any(|p| p.committed_offset == Some(10)))),
        "{:#?}",
        engine.status()
    );
    let report = check_sequences(
        &pair.destination.bootstrap(),
        &topic,
        &load.written_per_partition(),
        true,
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(report.is_lossless(), "{report:?}");
    engine.shutdown();
}

#[test]
fn a_transactional_partition_mirrored_to_its_end_shows_no_lag() {
    let pair = pair();
    let topic = random_name("transactional");
    create_topic(&pair.source.bootstrap(), &topic, 1, &[]).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", pair.source.bootstrap())
        .set("transactional.id", random_name("aqueduct-test-txn"))
        .set("log_level", "3")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..100 {
        send_text(&producer, &topic, Some(0), &format!("txn-{i}"));
    }
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    // 100 records and the transaction's commit marker: the log ends at 101.
    let config = node_config(
        &pair.source.bootstrap(),
        &pair.destination.bootstrap(),
        &format!(
            r#"
[[datastreams]]
name = "transactional"
destination = "destination"
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ),
    );
    let engine = Engine::start(&config).unwrap();
    let copied = read_records(
        &pair.destination.bootstrap(),
        &topic,
        100,
        Duration::from_secs(60),
    );
    assert_eq!(copied.get(&0).map(Vec::len), Some(100));
    let caught_up = wait_until(Duration::from_secs(30), || {
        engine.status().stream("transactional").is_some_and(|s| {
            s.partitions()
                .all(|p| p.committed_offset == Some(101) && p.lag == Some(0))
        })
    });
    assert!(caught_up, "{:#?}", engine.status());
    engine.shutdown();
}

/// Deletes `topic`, waits until the cluster no longer lists it, creates it again with `partitions`
/// partitions and writes `per_partition` records `new-<i>` to each.
fn recreate_with(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    aqueduct_testkit::delete_topics(bootstrap, &[topic]).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            aqueduct_testkit::partition_count(bootstrap, topic).ok() == Some(None)
        }),
        "{topic} still listed after its deletion"
    );
    // A deletion may still be in progress on the broker for a moment after the topic is no longer listed.
    let mut created = create_topic(bootstrap, topic, partitions, &[]);
    for _ in 0..50 {
        if created.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        created = create_topic(bootstrap, topic, partitions, &[]);
    }
    created.unwrap();
    write_texts(bootstrap, topic, partitions, per_partition, "new");
}

/// Writes `per_partition` records `<prefix>-<i>` to each partition of `topic`, acknowledged.
fn write_texts(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize, prefix: &str) {
    let producer = producer(bootstrap);
    for partition in 0..partitions {
        for i in 0..per_partition {
            send_text(&producer, topic, Some(partition), &format!("{prefix}-{i}"));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// The values of every record of `topic`, per partition in offset order; `total` is how many there are
/// (the sum of the partitions' end offsets must equal it, so nothing beyond is hidden).
fn all_values(bootstrap: &str, topic: &str, total: usize) -> Vec<Vec<String>> {
    let records = read_records(bootstrap, topic, total, Duration::from_secs(60));
    assert_eq!(
        aqueduct_testkit::total_records(bootstrap, topic).unwrap(),
        total as i64,
        "records in {topic}"
    );
    records
        .values()
        .map(|list| {
            list.iter()
                .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
                .collect()
        })
        .collect()
}

fn texts(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn a_source_topic_deleted_and_created_again_is_never_resumed_at_its_old_offsets() {
    let pair = pair();
    let (source, destination) = (pair.source.bootstrap(), pair.destination.bootstrap());
    // One stream per case: deleted and created again while the stream runs (the policy `fail` stops it,
    // `restart-earliest` copies the new topic from its start), the same at once (no pause between the
    // deletion and the new topic), and while the node is down.
    let failing = random_name("recreated-fail");
    let restarting = random_name("recreated-restart");
    let quick = random_name("recreated-quick");
    let offline = random_name("recreated-offline");
    for topic in [&failing, &restarting, &quick, &offline] {
        create_topic(&source, topic, 2, &[]).unwrap();
        write_texts(&source, topic, 2, 100, "old");
    }
    let stream = |name: &str, topic: &str, policy: &str| {
        format!(
            r#"
[[datastreams]]
name = "{name}"
destination = "destination"
on_source_topic_recreated = "{policy}"
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        )
    };
    let config = node_config(
        &source,
        &destination,
        &[
            stream("failing", &failing, "fail"),
            stream("restarting", &restarting, "restart-earliest"),
            stream("quick", &quick, "restart-earliest"),
            stream("offline", &offline, "fail"),
        ]
        .concat(),
    );
    let engine = Engine::start(&config).unwrap();
    for topic in [&failing, &restarting, &quick, &offline] {
        assert_eq!(
            all_values(&destination, topic, 200),
            vec![texts("old", 0..100); 2]
        );
    }
    let committed_everything = |engine: &Engine, name: &str| {
        engine
            .status()
            .stream(name)
            .unwrap()
            .partitions()
            .all(|p| p.committed_offset == Some(100))
    };
    assert!(wait_until(Duration::from_secs(30), || {
        ["failing", "restarting", "quick", "offline"]
            .iter()
            .all(|name| committed_everything(&engine, name))
    }));

    // While the stream runs: the deletion shows in the status and the metrics, the topic's partitions
    // (and their lag series) go away.
    aqueduct_testkit::delete_topics(&source, &[failing.as_str(), restarting.as_str()]).unwrap();
    let gone = |engine: &Engine, name: &str, topic: &str| {
        let status = engine.status();
        let stream = status.stream(name).unwrap();
        stream.deleted_topics.iter().any(|d| d.topic == topic) && stream.partitions().count() == 0
    };
    assert!(
        wait_until(Duration::from_secs(60), || gone(
            &engine, "failing", &failing
        ) && gone(
            &engine,
            "restarting",
            &restarting
        )),
        "{:#?}",
        engine.status()
    );
    let metrics = aqueduct_engine::metrics::metrics().render(&engine.status());
    assert!(
        metrics.lines().any(
            |l| l.starts_with("aqueduct_stream_source_topic_deleted_seconds{")
                && l.contains(&format!("topic=\"{failing}\""))
        ),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("aqueduct_partition_lag_records{")
                && l.contains(&format!("topic=\"{failing}\""))),
        "{metrics}"
    );

    // Created again and filled past the old offsets.
    for topic in [&failing, &restarting] {
        recreate_with(&source, topic, 2, 300);
    }
    let stopped_for_recreation = |engine: &Engine, name: &str| {
        let status = engine.status();
        let stream = status.stream(name).unwrap();
        stream.partitions().count() == 2
            && stream.partitions().all(|p| {
                matches!(&p.health, PartitionHealth::Error(reason) if reason.contains("created again"))
            })
            && stream.deleted_topics.is_empty()
    };
    assert!(
        wait_until(Duration::from_secs(60), || stopped_for_recreation(
            &engine, "failing"
        )),
        "{:#?}",
        engine.status()
    );
    assert!(engine
        .status()
        .stream("failing")
        .unwrap()
        .problems()
        .iter()
        .any(|p| p.contains("on_source_topic_recreated")));
    // `fail`: nothing of the new topic was copied.
    assert_eq!(
        all_values(&destination, &failing, 200),
        vec![texts("old", 0..100); 2]
    );
    // `restart-earliest`: the new topic in full, from its first record, after the old one.
    let expected = [texts("old", 0..100), texts("new", 0..300)].concat();
    assert_eq!(
        all_values(&destination, &restarting, 800),
        vec![expected.clone(); 2]
    );

    // Deleted and created again at once: the consumer may read a little of the new topic at its old
    // position before the stream notices (about a second); the partition then starts over from the new
    // topic's first record, so every record of it arrives, in order, after whatever was read early.
    recreate_with(&source, &quick, 2, 300);
    assert!(
        wait_until(Duration::from_secs(60), || {
            let total = aqueduct_testkit::total_records(&destination, &quick).unwrap();
            let values = read_records(
                &destination,
                &quick,
                total as usize,
                Duration::from_secs(10),
            );
            values.values().all(|list| {
                list.len() >= 400
                    && list[list.len() - 300..]
                        .iter()
                        .map(|m| {
                            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
                        })
                        .eq(texts("new", 0..300))
            })
        }),
        "{:#?}",
        engine.status()
    );
    let total = aqueduct_testkit::total_records(&destination, &quick).unwrap() as usize;
    for values in all_values(&destination, &quick, total) {
        let early = values.len() - 400;
        assert_eq!(values[..100], texts("old", 0..100));
        // Read early, at the old position in the new topic: a run from new-100 on.
        assert_eq!(values[100..100 + early], texts("new", 100..100 + early));
        assert_eq!(values[100 + early..], texts("new", 0..300));
        eprintln!("deleted and created again at once: {early} records of the new topic read at the old position before the restart");
    }

    // While the node is down.
    engine.shutdown();
    recreate_with(&source, &offline, 2, 300);
    let engine = Engine::start(&config).unwrap();
    let started = wait_until(Duration::from_secs(30), || {
        engine
            .status()
            .stream("offline")
            .unwrap()
            .partitions()
            .count()
            == 2
    });
    assert!(started, "{:#?}", engine.status());
    // Kafka deleted the group's offsets with the old topic: the partitions have no committed offset and
    // start at the stream's start position (earliest), never at the old offset 100.
    let status = engine.status();
    assert!(
        status
            .stream("offline")
            .unwrap()
            .partitions()
            .all(|p| p.health == PartitionHealth::Running),
        "{status:#?}"
    );
    assert_eq!(all_values(&destination, &offline, 800), vec![expected; 2]);
    engine.shutdown();
}

#[test]
fn a_tenant_s_stream_reads_and_writes_only_what_its_policy_grants() {
    let pair = pair();
    let (source, destination) = (pair.source.bootstrap(), pair.destination.bootstrap());
    let prefix = random_name("granted");
    let (granted, unwritable, foreign) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        random_name("foreign"),
    );
    for topic in [&granted, &unwritable, &foreign] {
        create_topic(&source, topic, 1, &[]).unwrap();
        write_texts(&source, topic, 1, 20, "r");
    }
    // The stream selects every topic; the owner's policy narrows it.
    let config = node_config(
        &source,
        &destination,
        &format!(
            r#"
[tenants.team]
read = [{{ cluster = "source", topics = ["{prefix}-.*"] }}]
write = [{{ cluster = "destination", topics = ["{granted}"] }}]

[[datastreams]]
name = "tenant-wide"
owner = "team"
destination = "destination"
topic_refresh_interval_secs = 2
[[datastreams.sources]]
cluster = "source"
topic_pattern = ".*"
"#
        ),
    );
    let engine = Engine::start(&config).unwrap();
    assert_eq!(
        all_values(&destination, &granted, 20),
        vec![texts("r", 0..20)]
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            engine
                .status()
                .stream("tenant-wide")
                .unwrap()
                .errors
                .iter()
                .any(|e| e.contains(&format!("may not write topic {unwritable}")))
        }),
        "{:#?}",
        engine.status()
    );
    let status = engine.status();
    let stream = status.stream("tenant-wide").unwrap();
    assert!(
        stream.partitions().all(|p| p.topic == granted),
        "only the granted topic is read: {stream:#?}"
    );
    for topic in [&unwritable, &foreign] {
        assert_eq!(
            aqueduct_testkit::partition_count(&destination, topic).unwrap(),
            None,
            "{topic} was mirrored"
        );
    }
    engine.shutdown();
}
