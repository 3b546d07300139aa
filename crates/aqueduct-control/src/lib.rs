//! The control plane of an Aqueduct node: which tasks of which datastreams it runs.
//!
//! - [`plan`]: the leader's planning, pure (task counts from partition counts, the capped sticky balancer,
//!   per-instance assignments).
//! - [`partitions`]: counting source partitions per datastream.
//! - [`agent`]: applying an assignment to the engine, claiming tasks so that no two nodes run one.
//! - [`cluster`]: cluster mode through ZooKeeper (election, guarded assignment writes, task reports).
//! - [`standalone`]: one node without ZooKeeper, same planning and agent.

pub mod agent;
pub mod cluster;
pub mod partitions;
pub mod plan;
pub mod standalone;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use aqueduct_engine::lease::Lease;
use aqueduct_engine::{Engine, EngineError};
use aqueduct_model::config::NodeConfig;

/// Creates the node's engine. In cluster mode any configured cluster may become a destination; with more
/// than one possible destination each producer pool is held to half of the node's in-flight cap.
pub fn engine(config: &NodeConfig) -> Result<Arc<Engine>, EngineError> {
    let destinations = if config.cluster.zookeeper.is_some() {
        config.clusters.len()
    } else {
        config
            .datastreams
            .iter()
            .map(|s| {
                if s.producer_properties.is_empty() {
                    format!("cluster:{}", s.destination)
                } else {
                    format!("stream:{}", s.name)
                }
            })
            .collect::<BTreeSet<_>>()
            .len()
    };
    let lease = if config.cluster.zookeeper.is_some() {
        // Tasks forward records only while the node knows its session is alive (see `cluster::run`).
        Lease::expired()
    } else {
        Lease::unlimited()
    };
    Ok(Arc::new(Engine::with_lease(
        config,
        destinations,
        Arc::new(lease),
    )?))
}

/// Runs the node in the mode its config selects until `shutdown` completes.
pub async fn run(config: NodeConfig, engine: Arc<Engine>, shutdown: impl Future<Output = ()>) {
    if config.cluster.zookeeper.is_some() {
        cluster::run(config, engine, shutdown).await;
    } else {
        standalone::run(config, engine, shutdown).await;
    }
}
