//! The control plane of an Aqueduct node: which tasks of which datastreams it runs.
//!
//! - [`plan`]: the leader's planning, pure (task counts from partition counts, the capped sticky balancer,
//!   per-instance assignments).
//! - [`partitions`]: counting source partitions per datastream.
//! - [`agent`]: applying an assignment to the engine, claiming tasks so that no two nodes run one.
//! - [`cluster`]: cluster mode through ZooKeeper (election, guarded assignment writes, task reports).
//! - [`standalone`]: one node without ZooKeeper, same planning and agent.
//! - [`streams`]: datastream definitions with versions (ZooKeeper or a local directory).
//! - [`view`]: the cluster as a node sees it; [`lag`]: per-partition lag read from the source clusters.

pub mod agent;
pub mod cluster;
pub mod lag;
pub mod partitions;
pub mod plan;
pub mod standalone;
pub mod streams;
pub mod view;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aqueduct_coordination::store::{AssignmentSummary, InstanceStatus};
use tokio::sync::watch;

use aqueduct_engine::lease::Lease;
use aqueduct_engine::{Engine, EngineError};
use aqueduct_model::config::NodeConfig;

/// Creates a node's engine. In cluster mode any configured cluster may become a destination; with more
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

/// What the REST API needs from a running node.
pub struct NodeHandle {
    pub config: NodeConfig,
    pub engine: Arc<Engine>,
    pub store: Arc<streams::StreamStore>,
    pub view: view::ViewSource,
    /// Connected to coordination and every assigned task started.
    pub ready: watch::Receiver<bool>,
}

/// A node ready to run: its engine, what the API sees of it, and its mode.
pub struct Node {
    pub engine: Arc<Engine>,
    pub handle: Arc<NodeHandle>,
    mode: Mode,
    ready: watch::Sender<bool>,
}

enum Mode {
    Cluster(aqueduct_coordination::Member),
    Standalone(Arc<Mutex<Option<(AssignmentSummary, InstanceStatus)>>>),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] streams::StoreError),
}

impl Node {
    /// Prepares the node in the mode its config selects; in cluster mode it joins the election at once.
    /// Must be called inside a tokio runtime.
    pub fn start(config: NodeConfig) -> Result<Self, StartError> {
        let engine = engine(&config)?;
        aqueduct_engine::metrics::metrics()
            .set_partition_labels(config.node.metrics_partition_labels);
        let (ready_tx, ready) = watch::channel(false);
        let cap = config.cluster.max_tasks_per_instance;
        let (mode, store, view) = match &config.cluster.zookeeper {
            Some(zookeeper) => {
                let member =
                    aqueduct_coordination::Member::start(aqueduct_coordination::MemberConfig {
                        zookeeper: zookeeper.clone(),
                        cluster: config.cluster.name.clone(),
                        instance: config.cluster.instance_name(),
                        session_timeout: std::time::Duration::from_millis(
                            config.cluster.session_timeout_ms,
                        ),
                    });
                let layout = aqueduct_coordination::Layout::new(&config.cluster.name);
                let store = streams::StreamStore::ZooKeeper {
                    sessions: member.watch_session(),
                    layout: layout.clone(),
                };
                let view = view::ViewSource::ZooKeeper {
                    sessions: member.watch_session(),
                    roles: member.watch_role(),
                    layout,
                    cap,
                };
                (Mode::Cluster(member), store, view)
            }
            None => {
                let dir = config
                    .cluster
                    .data_dir
                    .as_ref()
                    .map(|d| std::path::Path::new(d).join("datastreams"));
                let store = streams::StreamStore::local(dir)?;
                let state = Arc::new(Mutex::new(None));
                let view = view::ViewSource::Local {
                    state: Arc::clone(&state),
                    cap,
                };
                (Mode::Standalone(state), store, view)
            }
        };
        Ok(Self {
            engine: Arc::clone(&engine),
            handle: Arc::new(NodeHandle {
                engine,
                config,
                store: Arc::new(store),
                view,
                ready,
            }),
            mode,
            ready: ready_tx,
        })
    }

    /// Runs until `shutdown` completes, then stops every task (drained and committed) and, in a cluster,
    /// leaves it so the tasks are reassigned at once.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let config = self.handle.config.clone();
        match self.mode {
            Mode::Cluster(member) => {
                cluster::run(config, self.engine, member, self.ready, shutdown).await
            }
            Mode::Standalone(state) => {
                standalone::run(
                    config,
                    self.engine,
                    Arc::clone(&self.handle.store),
                    state,
                    self.ready,
                    shutdown,
                )
                .await
            }
        }
    }
}
