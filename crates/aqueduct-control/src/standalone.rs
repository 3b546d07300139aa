//! Standalone mode: one node without ZooKeeper runs the datastreams of its config file through the same
//! planning (task counts, caps) and the same task agent as a cluster node; it is its own leader. Its
//! assignment and task states go to `cluster.data_dir`, when set.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_coordination::store::{AssignmentSummary, InstanceAssignment, InstanceStatus};
use aqueduct_engine::Engine;
use aqueduct_model::config::{DatastreamConfig, NodeConfig};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::streams::{StoreError, StreamStore};

use crate::agent::{Agent, Ownership};
use crate::partitions::PartitionCounter;
use crate::plan::{balancer_config, plan, task_counts};

/// Runs the datastreams of `store` (seeded from the config file) until `shutdown` completes, then stops every
/// task (drained and committed).
pub async fn run(
    config: NodeConfig,
    engine: Arc<Engine>,
    store: Arc<StreamStore>,
    state: Arc<Mutex<Option<(AssignmentSummary, InstanceStatus)>>>,
    ready: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let instance = config.cluster.instance_name();
    for stream in &config.datastreams {
        // Seeded once and deleted through the API since: it stays deleted.
        if store.was_seeded(&stream.name) && store.get(&stream.name).await.is_err() {
            info!(stream = %stream.name, "datastream of the config file was deleted through the API; it stays deleted");
            continue;
        }
        let created = store.create(stream).await;
        if matches!(created, Ok(_) | Err(StoreError::Exists(_))) {
            if let Err(error) = store.mark_seeded(&stream.name) {
                warn!(stream = %stream.name, %error, "cannot remember that the datastream was seeded");
            }
        }
        match created {
            Ok(_) => info!(stream = %stream.name, "datastream added"),
            Err(StoreError::Exists(_)) => {
                if store.get(&stream.name).await.map(|v| v.stream) != Ok(stream.clone()) {
                    warn!(stream = %stream.name, "the stored definition of this datastream differs from the config file; the stored one is used");
                }
            }
            Err(error) => warn!(stream = %stream.name, %error, "cannot add datastream"),
        }
    }
    let refresh = Duration::from_secs(config.cluster.partition_refresh_interval_secs);
    let state_dir = config.cluster.data_dir.as_ref().map(PathBuf::from);
    let mut counter = Some(PartitionCounter::new(config.clusters.clone()));
    let mut counted: Option<(std::time::Instant, BTreeMap<String, DatastreamConfig>)> = None;
    let mut partitions = BTreeMap::new();
    let mut agent = Agent::new(engine);
    let mut counts = BTreeMap::new();
    let mut known: BTreeMap<String, InstanceAssignment> = BTreeMap::new();
    let mut generation = 0;
    info!(%instance, "running standalone");
    tokio::pin!(shutdown);
    loop {
        let streams: BTreeMap<String, DatastreamConfig> = match store.list().await {
            Ok(all) => all.into_iter().map(|(name, v)| (name, v.stream)).collect(),
            Err(error) => {
                warn!(%error, "cannot read datastreams");
                BTreeMap::new()
            }
        };
        let recount = counted
            .as_ref()
            .is_none_or(|(at, seen)| at.elapsed() >= refresh || *seen != streams);
        if recount {
            let mut counting = counter.take().expect("partition counter");
            let to_count = streams.clone();
            let (returned, fresh) = tokio::task::spawn_blocking(move || {
                let fresh = counting.count(&to_count);
                (counting, fresh)
            })
            .await
            .expect("partition count");
            counter = Some(returned);
            partitions = fresh;
            counted = Some((std::time::Instant::now(), streams.clone()));
        }
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
            aqueduct_engine::metrics::metrics().rebalances.inc();
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
        let m = aqueduct_engine::metrics::metrics();
        m.leader.set(1);
        m.session_connected.set(1);
        m.max_tasks
            .set(i64::from(config.cluster.max_tasks_per_instance));
        m.tasks_assigned.set(agent.running().count() as i64);
        m.unassigned_tasks.set(planned.unassigned.len() as i64);
        let status = InstanceStatus {
            instance: instance.clone(),
            generation,
            tasks: agent.report(&agent.engine().status()),
        };
        let summary = planned.summary(generation, &instance);
        if let Some(dir) = &state_dir {
            write_json(dir, "assignment.json", &summary);
            write_json(dir, "status.json", &status);
        }
        *state.lock().expect("local state") = Some((summary, status));
        ready.send_replace(!agent.has_held());
        let pause = if agent.has_held() {
            Duration::from_secs(1)
        } else {
            refresh.min(Duration::from_secs(2))
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = store.changed() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    ready.send_replace(false);
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
