//! The Kafka data plane of an Aqueduct node.
//!
//! An [`Engine`] runs datastreams: for each one a discovery thread lists the source topics, creates missing
//! destination topics and hands partitions to tasks; each task reads its partitions with one consumer and
//! writes through a producer borrowed from the destination cluster's pool. Source offsets are committed only
//! below the first record the destination has not acknowledged. See `docs/architecture.md`.

pub mod budget;
pub mod client;
pub mod partition;
pub mod producer;
pub mod status;
pub mod stream;
pub mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aqueduct_model::config::NodeConfig;
use rdkafka::error::KafkaError;
use tracing::info;

use crate::budget::InFlightBudget;
use crate::client::producer_config;
use crate::producer::ProducerPool;
use crate::status::NodeStatus;
use crate::stream::{StreamContext, StreamRunner};

/// Why the engine could not start or run something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("start: {0}")]
    Start(String),
}

/// How long shutdown waits for producers to deliver what they hold.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// The datastreams of one node, with their producer pools and the node's in-flight budget.
pub struct Engine {
    streams: Vec<StreamRunner>,
    pools: BTreeMap<String, Arc<ProducerPool>>,
    budget: Arc<InFlightBudget>,
}

impl Engine {
    /// Starts every datastream of `config`.
    pub fn start(config: &NodeConfig) -> Result<Self, EngineError> {
        config
            .validate()
            .map_err(|e| EngineError::Config(e.to_string()))?;
        let budget = Arc::new(InFlightBudget::new(config.node.max_in_flight_bytes));
        // Streams with producer settings of their own get their own pool; the rest share one per cluster.
        let pool_of = |stream: &aqueduct_model::config::DatastreamConfig| {
            if stream.producer_properties.is_empty() {
                format!("cluster:{}", stream.destination)
            } else {
                format!("stream:{}", stream.name)
            }
        };
        let pool_count = config
            .datastreams
            .iter()
            .map(pool_of)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        // With several pools, one pool may hold at most half of the node's cap: a destination that is down
        // leaves room for the others.
        let share = if pool_count > 1 {
            config.node.max_in_flight_bytes / 2
        } else {
            config.node.max_in_flight_bytes
        };
        let mut pools: BTreeMap<String, Arc<ProducerPool>> = BTreeMap::new();
        let mut streams = Vec::new();
        for stream in &config.datastreams {
            let destination = &config.clusters[&stream.destination];
            let pool_name = pool_of(stream);
            let pool = match pools.get(&pool_name) {
                Some(pool) => Arc::clone(pool),
                None => {
                    let client_id = format!("aqueduct-{}", pool_name.replace(':', "-"));
                    let pool = Arc::new(ProducerPool::new(
                        &pool_name,
                        &producer_config(
                            destination,
                            &stream.producer_properties,
                            &client_id,
                            config.node.max_in_flight_bytes,
                        ),
                        config.node.producers_per_destination,
                        Arc::new(InFlightBudget::share(&budget, share)),
                    )?);
                    pools.insert(pool_name, Arc::clone(&pool));
                    pool
                }
            };
            streams.push(StreamRunner::start(StreamContext {
                stream: Arc::new(stream.clone()),
                clusters: config.clusters.clone(),
                node: config.node.clone(),
                budget: Arc::clone(pool.budget()),
                pool,
            })?);
        }
        info!(
            streams = streams.len(),
            pools = pools.len(),
            max_in_flight_bytes = budget.cap(),
            "engine started"
        );
        Ok(Self {
            streams,
            pools,
            budget,
        })
    }

    /// A snapshot of every stream, task and partition.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            streams: self.streams.iter().map(StreamRunner::status).collect(),
            in_flight_bytes: self.budget.used(),
            max_in_flight_bytes: self.budget.cap(),
            backpressure_waits: self.budget.throttled(),
        }
    }

    /// Stops consuming, waits for acknowledgements, commits, and flushes the producers.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for stream in &mut self.streams {
            stream.stop();
        }
        self.streams.clear();
        for pool in self.pools.values() {
            pool.flush(FLUSH_TIMEOUT);
        }
        self.pools.clear();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_all();
    }
}
