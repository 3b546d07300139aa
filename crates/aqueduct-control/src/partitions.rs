//! Counting the source partitions of every datastream, so the leader knows how many tasks each one has.
//! One metadata request per source cluster serves all streams reading from it.

use std::collections::BTreeMap;
use std::time::Duration;

use aqueduct_engine::client::admin_config;
use aqueduct_model::config::{ClusterConfig, DatastreamConfig};
use aqueduct_model::naming::TopicFilter;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::warn;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Metadata clients of the source clusters, kept between rounds.
pub struct PartitionCounter {
    clusters: BTreeMap<String, ClusterConfig>,
    clients: BTreeMap<String, BaseConsumer>,
}

impl PartitionCounter {
    pub fn new(clusters: BTreeMap<String, ClusterConfig>) -> Self {
        Self {
            clusters,
            clients: BTreeMap::new(),
        }
    }

    /// Matching partitions per stream (paused streams are skipped). A stream one of whose source clusters
    /// cannot be read is left out, so it keeps its previous task count.
    pub fn count(&mut self, streams: &BTreeMap<String, DatastreamConfig>) -> BTreeMap<String, u32> {
        let mut topics_of: BTreeMap<String, Option<Vec<(String, u32)>>> = BTreeMap::new();
        for stream in streams.values().filter(|s| !s.paused) {
            for source in &stream.sources {
                if !topics_of.contains_key(&source.cluster) {
                    let topics = self.topics(&source.cluster);
                    topics_of.insert(source.cluster.clone(), topics);
                }
            }
        }
        let mut counts = BTreeMap::new();
        'streams: for stream in streams.values().filter(|s| !s.paused) {
            let mut total: u32 = 0;
            for source in &stream.sources {
                let Some(Some(topics)) = topics_of.get(&source.cluster) else {
                    continue 'streams;
                };
                let Ok(filter) = TopicFilter::new(
                    &source.topics,
                    source.topic_pattern.as_deref(),
                    source.exclude_pattern.as_deref(),
                ) else {
                    continue 'streams;
                };
                total = total.saturating_add(
                    topics
                        .iter()
                        .filter(|(name, _)| filter.matches(name))
                        .map(|(_, partitions)| *partitions)
                        .sum(),
                );
            }
            counts.insert(stream.name.clone(), total);
        }
        counts
    }

    /// Topics of a cluster with their partition counts, or `None` when the cluster cannot be read.
    fn topics(&mut self, cluster: &str) -> Option<Vec<(String, u32)>> {
        let Some(config) = self.clusters.get(cluster) else {
            warn!(%cluster, "datastream names a cluster this node does not know");
            return None;
        };
        if !self.clients.contains_key(cluster) {
            match admin_config(config).create::<BaseConsumer>() {
                Ok(client) => {
                    self.clients.insert(cluster.to_string(), client);
                }
                Err(error) => {
                    warn!(%cluster, %error, "cannot create a metadata client");
                    return None;
                }
            }
        }
        let client = &self.clients[cluster];
        match client.fetch_metadata(None, METADATA_TIMEOUT) {
            Ok(metadata) => Some(
                metadata
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| (t.name().to_string(), t.partitions().len() as u32))
                    .collect(),
            ),
            Err(error) => {
                warn!(%cluster, %error, "cannot count partitions");
                None
            }
        }
    }
}
