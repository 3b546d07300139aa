//! `make quickstart`: a local ZooKeeper, two local Kafka clusters and two Aqueduct nodes in one cluster; a
//! datastream created through the REST API; sample records written to the source and shown, live, arriving
//! at the destination, with the lag and the URLs of the API and the metrics.
//!
//! It ends when every record arrived (exit 0) or after a timeout (exit 1). With `--keep` everything keeps
//! running, with a trickle of new records, until Ctrl-C, which stops everything it started.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aqueduct_testkit::{
    create_topic, free_port, total_records, AqueductNode, KafkaCluster, ZooKeeper,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

const TOPICS: [(&str, i32); 2] = [("orders", 3), ("payments", 2)];
const RECORDS_PER_TOPIC: usize = 5_000;

fn node_config(zookeeper: &str, instance: &str, port: u16, dc1: &str, aggregate: &str) -> String {
    format!(
        r#"# Written by make quickstart.
[node]
status_interval_secs = 0

[cluster]
name = "quickstart"
zookeeper = "{zookeeper}"
instance = "{instance}"
session_timeout_ms = 6000
rebalance_delay_ms = 200
partition_refresh_interval_secs = 5

[api]
listen = "127.0.0.1:{port}"

[clusters.dc1]
bootstrap_servers = "{dc1}"

[clusters.aggregate]
bootstrap_servers = "{aggregate}"
"#
    )
}

fn get(url: &str) -> Result<Value> {
    Ok(ureq::get(url)
        .timeout(Duration::from_secs(10))
        .call()?
        .into_json()?)
}

fn write_records(
    producer: &ThreadedProducer<DefaultProducerContext>,
    from: usize,
    to: usize,
) -> Result<()> {
    for (topic, _) in TOPICS {
        for i in from..to {
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
    Ok(())
}

fn main() -> Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    println!("==> building the aqueduct binary");
    aqueduct_testkit::aqueduct_binary()?;

    println!("==> starting ZooKeeper");
    let zookeeper = ZooKeeper::start()?;
    println!(
        "    zookeeper:               {}",
        zookeeper.connect_string()
    );
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

    println!("==> starting two aqueduct nodes in one cluster");
    let mut nodes = Vec::new();
    for instance in ["node-1", "node-2"] {
        let port = free_port();
        let config = node_config(
            &zookeeper.connect_string(),
            instance,
            port,
            &dc1.bootstrap(),
            &aggregate.bootstrap(),
        );
        let node = AqueductNode::start(&config)?;
        let api = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(&format!("{api}/readyz")).is_err() {
            if Instant::now() > deadline {
                bail!("{instance} did not start:\n{}", node.log_tail(30));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "    {instance}: API {api}/v1   metrics {api}/metrics   log {}",
            node.log_path().display()
        );
        nodes.push((node, api));
    }
    let api = nodes[0].1.clone();

    let definition = json!({
        "name": "dc1-to-aggregate",
        "owner": "quickstart",
        "destination": "aggregate",
        "destination_topic": "dc1.{topic}",
        "topic_refresh_interval_secs": 5,
        "sources": [{"cluster": "dc1", "topic_pattern": "orders|payments"}],
    });
    println!("\n==> creating a datastream through the REST API of node-1:\n");
    println!("    curl -X POST {api}/v1/datastreams -H 'Content-Type: application/json' -d '{definition}'");
    let created: Value = ureq::post(&format!("{api}/v1/datastreams"))
        .send_json(definition.clone())
        .context("create the datastream")?
        .into_json()?;
    println!("    -> created, version {}", created["version"]);

    println!("\n==> writing {RECORDS_PER_TOPIC} records to each of orders and payments on dc1, watching them arrive");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", dc1.bootstrap())
        .set("acks", "all")
        .set("log_level", "3")
        .create()?;
    let mut written = 0;
    let started = Instant::now();
    let expected = |written: usize| written * TOPICS.len();
    loop {
        if written < RECORDS_PER_TOPIC {
            let next = (written + RECORDS_PER_TOPIC / 5).min(RECORDS_PER_TOPIC);
            write_records(&producer, written, next)?;
            written = next;
        } else if keep && started.elapsed() > Duration::from_secs(20) {
            // Keep a trickle going so the dashboard moves.
            write_records(&producer, written, written + 10)?;
            written += 10;
        }
        let mut mirrored = 0;
        for (topic, _) in TOPICS {
            mirrored += total_records(&aggregate.bootstrap(), &format!("dc1.{topic}"))? as usize;
        }
        let status = get(&format!("{api}/v1/datastreams/dc1-to-aggregate")).unwrap_or(Value::Null);
        // Unknown (the stream or its lag could not be read) is shown as such, never as 0.
        let lag: Option<i64> = status["lag"].as_array().and_then(|l| {
            (!l.is_empty())
                .then(|| l.iter().map(|p| p["lag"].as_i64()).sum::<Option<i64>>())
                .flatten()
        });
        let tasks: Vec<String> = status["status"]["tasks"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|t| format!("{}@{}", t["index"], t["node"].as_str().unwrap_or("-")))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "    {:>5.1} s  written {:>6}  mirrored {:>6}  lag {:>6}  state {:<12} tasks {}",
            started.elapsed().as_secs_f64(),
            expected(written),
            mirrored,
            lag.map_or_else(|| "?".to_string(), |lag| lag.to_string()),
            status["status"]["state"].as_str().unwrap_or("?"),
            tasks.join(" ")
        );
        if !keep && written == RECORDS_PER_TOPIC && mirrored >= expected(written) && lag == Some(0)
        {
            println!(
                "\n==> data flowing: all {mirrored} records mirrored, lag 0, across {} tasks",
                tasks.len()
            );
            break;
        }
        if !keep && started.elapsed() > Duration::from_secs(180) {
            bail!(
                "only {mirrored} of {} records arrived; node-1 log:\n{}",
                expected(written),
                nodes[0].0.log_tail(30)
            );
        }
        for (node, _) in &mut nodes {
            if !node.is_running() {
                bail!("a node stopped:\n{}", node.log_tail(30));
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }

    println!("\n==> a few records as the aggregate cluster has them");
    show_records(&aggregate.bootstrap(), "dc1.orders", 3)?;
    println!("\n==> try:");
    println!("    curl {api}/v1/datastreams/dc1-to-aggregate");
    println!("    curl -X POST {api}/v1/datastreams/dc1-to-aggregate/pause");
    println!("    curl {api}/v1/instances");
    println!("    curl {api}/metrics | grep aqueduct_stream");

    println!("\n==> stopping (SIGTERM: each node drains, commits, leaves the cluster and exits)");
    for (node, _) in &mut nodes {
        match node.terminate() {
            Some(0) => {}
            other => bail!("node exit: {other:?}\n{}", node.log_tail(30)),
        }
    }
    println!(
        "==> quickstart done: records flowed dc1 -> aggregate through a two-node aqueduct cluster"
    );
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
