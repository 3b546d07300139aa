//! The Kafka data plane of an Aqueduct node.
//!
//! An [`Engine`] runs datastreams: for each one a discovery thread lists the source topics, creates missing
//! destination topics and hands partitions to tasks; each task reads its partitions with one consumer and
//! writes through a producer borrowed from the destination cluster's pool. Source offsets are committed only
//! below the first record the destination has not acknowledged. See `docs/architecture.md`.

pub mod budget;
pub mod client;
pub mod lease;
pub mod metrics;
pub mod partition;
pub mod producer;
pub mod status;
pub mod stream;
pub mod task;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_model::config::{ClusterConfig, DatastreamConfig, NodeConfig, NodeSettings};
use aqueduct_model::placement::TaskSlice;
use aqueduct_model::tenancy::Policies;
use rdkafka::error::KafkaError;
use tracing::{info, warn};

use crate::budget::InFlightBudget;
use crate::client::producer_config;
use crate::lease::Lease;
pub use crate::partition::Unresolved;
use crate::producer::ProducerPool;
use crate::status::{NodeStatus, PoolStatus, StreamStatus};
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
///
/// A node runs *runners*, each named by a key its caller chooses: a whole datastream ([`Engine::start`],
/// single-process use) or one task of it ([`Engine::run`] with a [`TaskSlice`], as the cluster assigns).
pub struct Engine {
    clusters: BTreeMap<String, ClusterConfig>,
    node: NodeSettings,
    /// Tenants' policies: a stream owned by a tenant with one reads and writes only what it grants.
    policies: Policies,
    budget: Arc<InFlightBudget>,
    /// Each pool's share of the node's cap.
    pool_share: u64,
    lease: Arc<Lease>,
    inner: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    /// Runners by key, with the name of the pool they write through.
    runners: BTreeMap<String, (StreamRunner, String)>,
    pools: BTreeMap<String, PoolEntry>,
}

/// A producer pool, the stream properties it was made with and how many runners use it.
struct PoolEntry {
    pool: Arc<ProducerPool>,
    properties: BTreeMap<String, String>,
    users: usize,
}

/// Streams with producer settings of their own get their own pool; the rest share one per cluster.
fn pool_of(stream: &DatastreamConfig) -> String {
    if stream.producer_properties.is_empty() {
        format!("cluster:{}", stream.destination)
    } else {
        format!("stream:{}", stream.name)
    }
}

impl Engine {
    /// An engine running nothing yet. `pools` is how many producer pools may exist at once: with more than
    /// one, a pool may hold at most half of the node's cap, so a destination that is down leaves room for
    /// the others.
    pub fn new(config: &NodeConfig, pools: usize) -> Result<Self, EngineError> {
        config
            .validate()
            .map_err(|e| EngineError::Config(e.to_string()))?;
        let budget = Arc::new(InFlightBudget::new(config.node.max_in_flight_bytes));
        let pool_share = if pools > 1 {
            config.node.max_in_flight_bytes / 2
        } else {
            config.node.max_in_flight_bytes
        };
        let policies =
            Policies::new(&config.tenants).map_err(|e| EngineError::Config(e.to_string()))?;
        Ok(Self {
            clusters: config.clusters.clone(),
            node: config.node.clone(),
            policies,
            budget,
            pool_share,
            lease: Arc::new(Lease::unlimited()),
            inner: Mutex::new(Running::default()),
        })
    }

    /// Like [`Engine::new`], with tasks that forward records only while `lease` is valid.
    pub fn with_lease(
        config: &NodeConfig,
        pools: usize,
        lease: Arc<Lease>,
    ) -> Result<Self, EngineError> {
        let mut engine = Self::new(config, pools)?;
        engine.lease = lease;
        Ok(engine)
    }

    /// Starts every datastream of `config`, each as a whole.
    pub fn start(config: &NodeConfig) -> Result<Self, EngineError> {
        let pools = config
            .datastreams
            .iter()
            .map(pool_of)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let engine = Self::new(config, pools)?;
        for stream in &config.datastreams {
            engine.run(&stream.name, Arc::new(stream.clone()), None)?;
        }
        info!(
            streams = config.datastreams.len(),
            max_in_flight_bytes = engine.budget.cap(),
            "engine started"
        );
        Ok(engine)
    }

    /// Starts a runner under `key`: task `slice` of `stream`, or all of it. A key already running is left
    /// alone.
    pub fn run(
        &self,
        key: &str,
        stream: Arc<DatastreamConfig>,
        slice: Option<TaskSlice>,
    ) -> Result<(), EngineError> {
        let pool_name = pool_of(&stream);
        let replaced = {
            let mut running = self.inner.lock().expect("engine");
            if running.runners.contains_key(key) {
                return Ok(());
            }
            match running.pools.get(&pool_name) {
                // The stream's producer settings changed: a new pool, once nothing uses the old one.
                Some(entry) if entry.properties != stream.producer_properties => {
                    if entry.users == 0 {
                        running.pools.remove(&pool_name).map(|entry| entry.pool)
                    } else {
                        warn!(pool = %pool_name, users = entry.users, "producer settings changed while runners still use the pool; they take effect when the last one stops");
                        None
                    }
                }
                _ => None,
            }
        };
        if let Some(old) = replaced {
            // Closed outside the engine's lock: a flush can take a while.
            info!(pool = %pool_name, "producer settings changed; closing the old pool");
            old.close(FLUSH_TIMEOUT);
        }
        let mut running = self.inner.lock().expect("engine");
        if running.runners.contains_key(key) {
            return Ok(());
        }
        let pool = match running.pools.get_mut(&pool_name) {
            Some(entry) => {
                entry.users += 1;
                Arc::clone(&entry.pool)
            }
            None => {
                let destination = self.clusters.get(&stream.destination).ok_or_else(|| {
                    EngineError::Config(format!("unknown cluster `{}`", stream.destination))
                })?;
                let client_id = format!("aqueduct-{}", pool_name.replace(':', "-"));
                let pool = Arc::new(ProducerPool::new(
                    &pool_name,
                    &producer_config(
                        destination,
                        &stream.producer_properties,
                        &client_id,
                        self.node.max_in_flight_bytes,
                    ),
                    self.node.producers_per_destination,
                    Arc::new(InFlightBudget::share(&self.budget, self.pool_share)),
                )?);
                running.pools.insert(
                    pool_name.clone(),
                    PoolEntry {
                        pool: Arc::clone(&pool),
                        properties: stream.producer_properties.clone(),
                        users: 1,
                    },
                );
                pool
            }
        };
        let policy = stream
            .owner
            .as_deref()
            .and_then(|owner| self.policies.get(owner))
            .cloned();
        let runner = StreamRunner::start(StreamContext {
            policy,
            stream,
            clusters: self.clusters.clone(),
            node: self.node.clone(),
            budget: Arc::clone(pool.budget()),
            pool,
            slice,
            lease: Arc::clone(&self.lease),
        });
        let runner = match runner {
            Ok(runner) => runner,
            Err(error) => {
                Self::release_pool(&mut running, &pool_name);
                return Err(error);
            }
        };
        running.runners.insert(key.to_string(), (runner, pool_name));
        Ok(())
    }

    /// Stops the runner `key`: no more consumption, records in flight acknowledged (or given up after a
    /// timeout), offsets committed. Blocks until done. Returns what is still inside a producer: until it
    /// is resolved, the runner's work must not start elsewhere. A stream's own pool closes with its last
    /// runner.
    pub fn stop(&self, key: &str) -> Unresolved {
        let runner = self.inner.lock().expect("engine").runners.remove(key);
        let Some((mut runner, pool_name)) = runner else {
            return Unresolved::default();
        };
        let unresolved = runner.stop();
        let closing = Self::release_pool(&mut self.inner.lock().expect("engine"), &pool_name);
        if let Some(pool) = closing {
            info!(pool = %pool_name, "no datastream uses the pool any more; closing it");
            pool.close(FLUSH_TIMEOUT);
        }
        unresolved
    }

    /// One runner less uses `pool_name`; returns the pool when it is a stream's own pool and nothing uses
    /// it any more (removed, for the caller to close outside the lock).
    fn release_pool(running: &mut Running, pool_name: &str) -> Option<Arc<ProducerPool>> {
        let entry = running.pools.get_mut(pool_name)?;
        entry.users = entry.users.saturating_sub(1);
        if entry.users == 0 && pool_name.starts_with("stream:") {
            return running.pools.remove(pool_name).map(|entry| entry.pool);
        }
        None
    }

    /// Drops every record every producer pool holds (see [`ProducerPool::purge`]).
    pub fn purge(&self) {
        let pools: Vec<Arc<ProducerPool>> = self
            .inner
            .lock()
            .expect("engine")
            .pools
            .values()
            .map(|entry| Arc::clone(&entry.pool))
            .collect();
        for pool in pools {
            pool.purge();
        }
    }

    /// The lease the tasks check before forwarding records.
    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    /// Keys of the running runners.
    pub fn running(&self) -> Vec<String> {
        self.inner
            .lock()
            .expect("engine")
            .runners
            .keys()
            .cloned()
            .collect()
    }

    /// A snapshot of every stream, task and partition; the runners of one stream are reported together.
    pub fn status(&self) -> NodeStatus {
        let running = self.inner.lock().expect("engine");
        let mut streams: Vec<StreamStatus> = Vec::new();
        for (runner, _) in running.runners.values() {
            let status = runner.status();
            match streams.iter_mut().find(|s| s.name == status.name) {
                Some(merged) => {
                    merged.tasks.extend(status.tasks);
                    for error in status.errors {
                        if !merged.errors.contains(&error) {
                            merged.errors.push(error);
                        }
                    }
                    for cluster in status.unreachable {
                        match merged
                            .unreachable
                            .iter_mut()
                            .find(|c| c.cluster == cluster.cluster)
                        {
                            Some(known) => {
                                known.since_unix_ms = known.since_unix_ms.min(cluster.since_unix_ms)
                            }
                            None => merged.unreachable.push(cluster),
                        }
                    }
                }
                None => streams.push(status),
            }
        }
        let pools = running
            .pools
            .values()
            .map(|entry| PoolStatus {
                name: entry.pool.name().to_string(),
                producers: entry.pool.size(),
                queued_records: entry.pool.queued(),
            })
            .collect();
        NodeStatus {
            streams,
            in_flight_bytes: self.budget.used(),
            max_in_flight_bytes: self.budget.cap(),
            backpressure_waits: self.budget.throttled(),
            pools,
        }
    }

    /// Stops consuming, waits for acknowledgements, commits, and flushes the producers.
    pub fn shutdown(self) {
        self.stop_all();
    }

    fn stop_all(&self) {
        let (mut runners, pools) = {
            let mut running = self.inner.lock().expect("engine");
            (
                std::mem::take(&mut running.runners),
                std::mem::take(&mut running.pools),
            )
        };
        // Ask every runner first so they drain in parallel.
        for (runner, _) in runners.values() {
            runner.request_stop();
        }
        for (runner, _) in runners.values_mut() {
            let _ = runner.stop();
        }
        for entry in pools.values() {
            entry.pool.flush(FLUSH_TIMEOUT);
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_all();
    }
}
