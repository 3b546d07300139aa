//! Real Apache Kafka and ZooKeeper as local processes, for tests, benchmarks and the quickstart.
//!
//! Every process runs on 127.0.0.1 with free ports and temporary directories and is killed when its handle
//! drops or the test process ends (see [`process`]). Kafka jars come from the cache filled by
//! `tools/install-kafka.sh`.

pub mod kafka;
pub mod node;
pub mod process;
pub mod proxy;
pub mod sequence;
pub mod zookeeper;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub use kafka::{KafkaCluster, KafkaOptions};
pub use node::{aqueduct_binary, AqueductNode};
pub use process::{free_port, ManagedChild};
pub use proxy::TcpProxy;
pub use sequence::{
    check_mirror, check_sequences, CheckReport, LiveLatency, SequenceLoad, SequenceProducer,
    SourceLog,
};
pub use zookeeper::{ZooKeeper, ZooKeeperEnsemble};

/// A topic name unique to this run: `<prefix>-<random>`.
pub fn random_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?)
}

/// Creates `topic` with `partitions` partitions, replication factor 1 and the given topic configs.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin = admin(bootstrap)?;
    // The broker's default replication factor: 1 for a single broker, up to 3 for a cluster.
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results = block_on(admin.create_topics(
        [&new_topic],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("create topic {name}: {code}");
        }
    }
    wait_for_topic(bootstrap, topic, partitions)
}

/// Adds partitions to `topic` so it has `total` in all.
pub fn add_partitions(bootstrap: &str, topic: &str, total: usize) -> Result<()> {
    let admin = admin(bootstrap)?;
    let results = block_on(admin.create_partitions(
        [&rdkafka::admin::NewPartitions::new(topic, total)],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("add partitions to {name}: {code}");
        }
    }
    wait_for_topic(bootstrap, topic, total as i32)
}

/// Sets dynamic configs on `topic`.
pub fn alter_topic_config(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) -> Result<()> {
    let admin = admin(bootstrap)?;
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (key, value) in configs {
        alter = alter.set(key, value);
    }
    let results = block_on(admin.alter_configs([&alter], &AdminOptions::new()))?;
    for result in results {
        if let Err((_, code)) = result {
            bail!("alter configs of {topic}: {code}");
        }
    }
    Ok(())
}

/// The partition count of `topic`, or `None` when it does not exist.
pub fn partition_count(bootstrap: &str, topic: &str) -> Result<Option<i32>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let Some(t) = metadata.topics().first() else {
        return Ok(None);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    Ok(Some(t.partitions().len() as i32))
}

/// Waits until `topic` shows `partitions` partitions in the metadata.
pub fn wait_for_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if partition_count(bootstrap, topic)? == Some(partitions) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("topic {topic} did not reach {partitions} partitions");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The topic configs of `topic` that were set explicitly (not broker or built-in defaults).
pub fn topic_overrides(bootstrap: &str, topic: &str) -> Result<HashMap<String, String>> {
    let admin = admin(bootstrap)?;
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()))?;
    let resource = results.into_iter().next().context("no describe result")??;
    Ok(resource
        .entries
        .into_iter()
        .filter(|e| matches!(e.source, ConfigSource::DynamicTopic))
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect())
}

/// Records in each partition of `topic` (high minus low watermark); empty when it does not exist.
pub fn records_per_partition(bootstrap: &str, topic: &str) -> Result<Vec<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    let Some(partitions) = partition_count(bootstrap, topic)? else {
        return Ok(Vec::new());
    };
    let mut counts = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        counts.push(high - low);
    }
    Ok(counts)
}

/// Sum of the end offsets (high watermarks) of every partition of `topic`; 0 when it does not exist.
pub fn total_records(bootstrap: &str, topic: &str) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    let Some(partitions) = partition_count(bootstrap, topic)? else {
        return Ok(0);
    };
    let mut total = 0;
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        total += high - low;
    }
    Ok(total)
}

/// Deletes `topics` (missing ones are ignored), to give the disk back between benchmark cases.
pub fn delete_topics(bootstrap: &str, topics: &[&str]) -> Result<()> {
    let admin = admin(bootstrap)?;
    block_on(admin.delete_topics(
        topics,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    Ok(())
}

/// The end offset (high watermark) of each of the first `partitions` partitions of `topic`, in one request
/// per broker through `consumer`; cheap enough to poll while a pipeline runs.
pub fn end_offsets(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<Vec<i64>> {
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, rdkafka::Offset::End)?;
    }
    let ends = consumer.offsets_for_times(list, Duration::from_secs(10))?;
    (0..partitions)
        .map(
            |partition| match ends.find_partition(topic, partition).map(|e| e.offset()) {
                Some(rdkafka::Offset::Offset(end)) => Ok(end),
                other => bail!("no end offset for {topic}/{partition}: {other:?}"),
            },
        )
        .collect()
}
