//! Lag of a datastream, per source partition: the source's end offset minus the committed offset of the
//! stream's consumer group, read from the source clusters on demand.

use std::collections::BTreeMap;
use std::time::Duration;

use aqueduct_engine::client::admin_config;
use aqueduct_model::config::{ClusterConfig, DatastreamConfig};
use aqueduct_model::naming::TopicFilter;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One source partition of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub source: String,
    pub topic: String,
    pub partition: i32,
    /// The next offset the source will write.
    pub end_offset: i64,
    /// The stream's committed offset, if it committed one.
    pub committed_offset: Option<i64>,
    /// `end_offset - committed_offset` (the whole log without a commit).
    pub lag: i64,
}

/// Reads the lag of every matching source partition of `stream`. Blocking: call from a blocking thread.
pub fn stream_lag(
    clusters: &BTreeMap<String, ClusterConfig>,
    stream: &DatastreamConfig,
) -> Result<Vec<PartitionLag>, String> {
    let mut lags = Vec::new();
    for source in &stream.sources {
        let cluster = clusters
            .get(&source.cluster)
            .ok_or_else(|| format!("unknown cluster `{}`", source.cluster))?;
        let filter = TopicFilter::new(
            &source.topics,
            source.topic_pattern.as_deref(),
            source.exclude_pattern.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        let mut config = admin_config(cluster);
        config.set("group.id", stream.group_id());
        config.set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| format!("cannot read {} metadata: {e}", source.cluster))?;
        let mut partitions = TopicPartitionList::new();
        for topic in metadata.topics() {
            if topic.error().is_none() && filter.matches(topic.name()) {
                for p in topic.partitions() {
                    let _ = partitions.add_partition_offset(topic.name(), p.id(), Offset::Invalid);
                }
            }
        }
        // The group's coordinator may be moving or loading (NotCoordinator, CoordinatorLoadInProgress):
        // retry for a few seconds.
        let mut attempts = 0;
        let committed = loop {
            match consumer.committed_offsets(partitions.clone(), TIMEOUT) {
                Ok(committed) => break committed,
                Err(_) if attempts < 10 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => {
                    return Err(format!(
                        "cannot read committed offsets on {}: {e}",
                        source.cluster
                    ))
                }
            }
        };
        for element in partitions.elements() {
            let (low, high) = consumer
                .fetch_watermarks(element.topic(), element.partition(), TIMEOUT)
                .map_err(|e| format!("cannot read log bounds on {}: {e}", source.cluster))?;
            let committed_offset = committed
                .find_partition(element.topic(), element.partition())
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            let lag = (high - committed_offset.unwrap_or(low).clamp(low, high)).max(0);
            lags.push(PartitionLag {
                source: source.cluster.clone(),
                topic: element.topic().to_string(),
                partition: element.partition(),
                end_offset: high,
                committed_offset,
                lag,
            });
        }
    }
    lags.sort_by(|a, b| {
        (&a.source, &a.topic, a.partition).cmp(&(&b.source, &b.topic, b.partition))
    });
    Ok(lags)
}
