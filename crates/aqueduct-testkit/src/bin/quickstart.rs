//! `make quickstart`: two local Kafka clusters, an Aqueduct node with a datastream from its config file,
//! sample records written to the source and shown arriving at the destination.
//!
//! With `--keep` everything stays up until Ctrl-C, so the clusters and the node can be explored by hand.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use aqueduct_testkit::{create_topic, total_records, AqueductNode, KafkaCluster};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const TOPICS: [(&str, i32); 2] = [("orders", 3), ("payments", 2)];
const RECORDS_PER_TOPIC: usize = 500;

fn main() -> Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    println!("==> building the aqueduct binary");
    aqueduct_testkit::aqueduct_binary()?;

    println!(
        "==> starting two Kafka clusters (KRaft, Apache Kafka {})",
        aqueduct_testkit::kafka::KAFKA_VERSION.trim()
    );
    let dc1 = std::thread::spawn(|| KafkaCluster::start("dc1"));
    let aggregate = KafkaCluster::start("aggregate")?;
    let dc1 = dc1.join().expect("start dc1")?;
    println!("    dc1 (source):            {}", dc1.bootstrap());
    println!("    aggregate (destination): {}", aggregate.bootstrap());
    for (topic, partitions) in TOPICS {
        create_topic(
            &dc1.bootstrap(),
            topic,
            partitions,
            &[("retention.ms", "604800000")],
        )?;
    }

    let config = format!(
        r#"# Written by make quickstart.
[node]
status_interval_secs = 2

[clusters.dc1]
bootstrap_servers = "{dc1}"

[clusters.aggregate]
bootstrap_servers = "{aggregate}"

[[datastreams]]
name = "dc1-to-aggregate"
owner = "quickstart"
destination = "aggregate"
destination_topic = "dc1.{{topic}}"
topic_refresh_interval_secs = 5
[[datastreams.sources]]
cluster = "dc1"
topic_pattern = "orders|payments"
"#,
        dc1 = dc1.bootstrap(),
        aggregate = aggregate.bootstrap()
    );
    println!("==> starting an aqueduct node with this config:\n");
    for line in config.lines() {
        println!("    {line}");
    }
    let mut node = AqueductNode::start(&config)?;

    println!("\n==> writing {RECORDS_PER_TOPIC} records to each of orders and payments on dc1");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", dc1.bootstrap())
        .set("acks", "all")
        .set("log_level", "3")
        .create()?;
    for (topic, _) in TOPICS {
        for i in 0..RECORDS_PER_TOPIC {
            let key = format!("{topic}-{i}");
            let value = format!(r#"{{"id":{i},"amount":{}.{:02}}}"#, 10 + i % 90, i % 100);
            let headers = OwnedHeaders::new().insert(Header {
                key: "origin",
                value: Some("quickstart"),
            });
            producer
                .send(
                    BaseRecord::to(topic)
                        .key(&key)
                        .payload(&value)
                        .headers(headers),
                )
                .map_err(|(e, _)| e)?;
        }
    }
    producer.flush(Duration::from_secs(30))?;

    println!("==> waiting for the records to arrive on the aggregate cluster");
    let started = Instant::now();
    for (topic, _) in TOPICS {
        let destination = format!("dc1.{topic}");
        loop {
            let copied = total_records(&aggregate.bootstrap(), &destination)?;
            if copied as usize >= RECORDS_PER_TOPIC {
                println!(
                    "    {destination}: {copied} records after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            if started.elapsed() > Duration::from_secs(120) || !node.is_running() {
                bail!(
                    "{destination} has {copied} of {RECORDS_PER_TOPIC} records; node log:\n{}",
                    node.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    println!("\n==> a few records as the aggregate cluster has them");
    show_records(&aggregate.bootstrap(), "dc1.orders", 5)?;

    if keep {
        println!("\n==> everything keeps running; press Ctrl-C to stop");
        println!("    node log: {}", node.log_path().display());
        println!(
            "    try: kcat -b {} -t dc1.orders -C -e -f '%p/%o %k %s\\n'",
            aggregate.bootstrap()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    println!("\n==> stopping (SIGTERM: the node drains, commits and exits)");
    match node.terminate() {
        Some(0) => println!("    node exited cleanly"),
        other => bail!("node exit: {other:?}\n{}", node.log_tail(30)),
    }
    println!("==> quickstart done: records flowed dc1 -> aggregate through aqueduct");
    Ok(())
}

fn show_records(bootstrap: &str, topic: &str, count: usize) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "aqueduct-quickstart-viewer")
        .set("log_level", "3")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut shown = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shown < count && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let headers: Vec<String> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        format!(
                            "{}={}",
                            h.key,
                            String::from_utf8_lossy(h.value.unwrap_or_default())
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "    {topic} partition {} offset {}: key={} value={} headers=[{}]",
            message.partition(),
            message.offset(),
            String::from_utf8_lossy(message.key().unwrap_or_default()),
            String::from_utf8_lossy(message.payload().unwrap_or_default()),
            headers.join(",")
        );
        shown += 1;
    }
    Ok(())
}
