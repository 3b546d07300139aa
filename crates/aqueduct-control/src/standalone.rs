//! Standalone mode: one node without ZooKeeper runs the datastreams of its config file through the same
//! planning (task counts, caps) and the same task agent as a cluster node; it is its own leader. Its
//! assignment and task states go to `cluster.data_dir`, when set.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aqueduct_coordination::store::{InstanceAssignment, InstanceStatus};
use aqueduct_engine::Engine;
use aqueduct_model::config::{DatastreamConfig, NodeConfig};
use serde::Serialize;
use tracing::{info, warn};

use crate::agent::{Agent, Ownership};
use crate::partitions::PartitionCounter;
use crate::plan::{balancer_config, plan, task_counts};

/// Runs the config file's datastreams until `shutdown` completes, then stops every task (drained and
/// committed).
pub async fn run(config: NodeConfig, engine: Arc<Engine>, shutdown: impl Future<Output = ()>) {
    let instance = config.cluster.instance_name();
    let streams: BTreeMap<String, DatastreamConfig> = config
        .datastreams
        .iter()
        .map(|s| (s.name.clone(), s.clone()))
        .collect();
    let refresh = Duration::from_secs(config.cluster.partition_refresh_interval_secs);
    let state_dir = config.cluster.data_dir.as_ref().map(PathBuf::from);
    let mut counter = Some(PartitionCounter::new(config.clusters.clone()));
    let mut agent = Agent::new(engine);
    let mut counts = BTreeMap::new();
    let mut known: BTreeMap<String, InstanceAssignment> = BTreeMap::new();
    let mut generation = 0;
    info!(%instance, streams = streams.len(), "running standalone");
    tokio::pin!(shutdown);
    loop {
        let (returned, partitions) = {
            let mut counting = counter.take().expect("partition counter");
            let to_count = streams.clone();
            tokio::task::spawn_blocking(move || {
                let partitions = counting.count(&to_count);
                (counting, partitions)
            })
            .await
            .expect("partition count")
        };
        counter = Some(returned);
        counts = task_counts(&streams, &partitions, &counts);
        let planned = plan(
            &streams,
            counts.clone(),
            std::slice::from_ref(&instance),
            &known,
            balancer_config(&config.cluster),
        );
        let changes = planned.changes(&known, generation + 1);
        if !changes.is_empty() {
            generation += 1;
            known.extend(changes);
            if !planned.unassigned.is_empty() {
                let waiting: Vec<String> =
                    planned.unassigned.iter().map(ToString::to_string).collect();
                warn!(unassigned = ?waiting, "tasks unassigned: this node is at its max_tasks_per_instance");
            }
        }
        let desired = planned
            .instances
            .get(&instance)
            .cloned()
            .unwrap_or_default();
        agent.apply(&desired, &streams, &Ownership::Local).await;
        if let Some(dir) = &state_dir {
            let status = InstanceStatus {
                instance: instance.clone(),
                generation,
                tasks: agent.report(&agent.engine().status()),
            };
            write_json(
                dir,
                "assignment.json",
                &planned.summary(generation, &instance),
            );
            write_json(dir, "status.json", &status);
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(if agent.has_held() { Duration::from_secs(1) } else { refresh }) => {}
        }
    }
    agent.stop_all(None).await;
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) {
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        let path = dir.join(name);
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(value).expect("serializable"),
        )?;
        std::fs::rename(tmp, path)
    });
    if let Err(error) = result {
        warn!(dir = %dir.display(), %error, "cannot write the state directory");
    }
}
