//! The tasks this node runs: it applies the assignment it was given to the engine, claiming each task
//! before it starts and letting go only after the task stopped and committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use aqueduct_coordination::layout::Layout;
use aqueduct_coordination::store::{self, AssignedTask, Claim, TaskReport, TaskState};
use aqueduct_coordination::Session;
use aqueduct_engine::status::{NodeStatus, PartitionHealth};
use aqueduct_engine::{Engine, Unresolved};
use aqueduct_model::config::DatastreamConfig;
use aqueduct_model::placement::TaskSlice;
use tracing::{info, warn};

/// Who else may run a task.
pub enum Ownership {
    /// Standalone: nobody else.
    Local,
    /// Cluster: tasks are claimed in ZooKeeper within the node's session.
    Claimed {
        session: Box<Session>,
        layout: Layout,
        instance: String,
    },
}

impl Ownership {
    async fn claim(&self, task: &AssignedTask) -> Result<Claim, String> {
        match self {
            Ownership::Local => Ok(Claim::Owned),
            Ownership::Claimed {
                session,
                layout,
                instance,
            } => store::claim(session, layout, instance, task)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Gives up a claim; false when ZooKeeper could not be reached (try again later, or the claim ends with
    /// the session).
    async fn release(&self, task: &AssignedTask) -> bool {
        if let Ownership::Claimed {
            session, layout, ..
        } = self
        {
            if let Err(error) = store::release(session, layout, task).await {
                warn!(%task, %error, "cannot release task yet");
                return false;
            }
        }
        true
    }
}

/// The engine key of a task.
fn key(task: &AssignedTask) -> String {
    format!("{}#{}of{}", task.stream, task.index, task.count)
}

/// Prefix of the engine's task ids of an assigned task (one per source cluster).
fn task_id_prefix(task: &AssignedTask) -> String {
    format!("{}-{}of{}-", task.stream, task.index, task.count)
}

/// The tasks of this node.
pub struct Agent {
    engine: Arc<Engine>,
    running: BTreeMap<AssignedTask, DatastreamConfig>,
    /// Assigned tasks that are not running, with the reason.
    held: BTreeMap<AssignedTask, TaskState>,
    /// Stopped tasks whose claim is not given up yet: ZooKeeper could not be reached, or records of the
    /// task are still inside a producer (they could land after the next owner's).
    unreleased: Vec<(AssignedTask, Unresolved)>,
}

impl Agent {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            running: BTreeMap::new(),
            held: BTreeMap::new(),
            unreleased: Vec::new(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Tasks running now.
    pub fn running(&self) -> impl Iterator<Item = &AssignedTask> {
        self.running.keys()
    }

    /// Whether some assigned task waits to start.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Makes the node run exactly `desired` (as far as claims allow), with the definitions in `streams`.
    /// Tasks that are no longer desired, or whose stream definition changed, stop first.
    pub async fn apply(
        &mut self,
        desired: &[AssignedTask],
        streams: &BTreeMap<String, DatastreamConfig>,
        ownership: &Ownership,
    ) {
        let stale: Vec<AssignedTask> = self
            .running
            .iter()
            .filter(|(task, definition)| {
                !desired.contains(task) || streams.get(&task.stream) != Some(*definition)
            })
            .map(|(task, _)| task.clone())
            .collect();
        self.stop(&stale, ownership).await;
        for (task, unresolved) in std::mem::take(&mut self.unreleased) {
            if desired.contains(&task) {
                // Ours again: restart it once its previous run's records are resolved (still claimed).
                if unresolved.count() > 0 {
                    self.unreleased.push((task, unresolved));
                }
                continue;
            }
            if unresolved.count() > 0 || !ownership.release(&task).await {
                self.unreleased.push((task, unresolved));
            }
        }
        self.held.clear();
        for task in desired {
            if self.running.contains_key(task) {
                continue;
            }
            if self.unreleased.iter().any(|(t, _)| t == task) {
                self.held.insert(
                    task.clone(),
                    TaskState::Waiting(
                        "records of its previous run are still in a producer".to_string(),
                    ),
                );
                continue;
            }
            let Some(definition) = streams.get(&task.stream) else {
                self.held.insert(
                    task.clone(),
                    TaskState::Waiting("datastream definition not found".to_string()),
                );
                continue;
            };
            match ownership.claim(task).await {
                Ok(Claim::Owned) => {}
                Ok(Claim::Busy(reason)) => {
                    self.held.insert(task.clone(), TaskState::Waiting(reason));
                    continue;
                }
                Err(error) => {
                    self.held.insert(
                        task.clone(),
                        TaskState::Waiting(format!("cannot claim: {error}")),
                    );
                    continue;
                }
            }
            let slice = TaskSlice {
                index: task.index,
                count: task.count,
            };
            match self
                .engine
                .run(&key(task), Arc::new(definition.clone()), Some(slice))
            {
                Ok(()) => {
                    info!(%task, "task started");
                    self.running.insert(task.clone(), definition.clone());
                }
                Err(error) => {
                    warn!(%task, %error, "task did not start");
                    if !ownership.release(task).await {
                        self.unreleased.push((task.clone(), Unresolved::default()));
                    }
                    self.held
                        .insert(task.clone(), TaskState::Error(error.to_string()));
                }
            }
        }
    }

    /// Stops `tasks` (all at once: each drains and commits), then lets go of them.
    async fn stop(&mut self, tasks: &[AssignedTask], ownership: &Ownership) {
        if tasks.is_empty() {
            return;
        }
        let mut stopping = Vec::new();
        for task in tasks {
            self.running.remove(task);
            let engine = Arc::clone(&self.engine);
            let key = key(task);
            stopping.push(tokio::task::spawn_blocking(move || engine.stop(&key)));
        }
        for (task, stop) in tasks.iter().zip(stopping) {
            let unresolved = stop.await.unwrap_or_default();
            info!(%task, "task stopped");
            let left = unresolved.count();
            if left > 0 {
                warn!(%task, records = left, "records of the stopped task are still in a producer; the task is let go once they are resolved");
                self.unreleased.push((task.clone(), unresolved));
            } else if !ownership.release(task).await {
                self.unreleased.push((task.clone(), unresolved));
            }
        }
    }

    /// Stops every task. With `ownership`, claims are given up (a graceful stop); without, they end with
    /// the session.
    pub async fn stop_all(&mut self, ownership: Option<&Ownership>) {
        let tasks: Vec<AssignedTask> = self.running.keys().cloned().collect();
        self.stop(&tasks, ownership.unwrap_or(&Ownership::Local))
            .await;
        self.held.clear();
        if self.unreleased.iter().any(|(_, u)| u.count() > 0) {
            // Leaving: what the producers still hold must not land after the next owners started.
            self.engine.purge();
        }
        self.unreleased.clear();
    }

    /// The state of every assigned task, for the instance's report.
    pub fn report(&self, status: &NodeStatus) -> Vec<TaskReport> {
        let mut reports = Vec::new();
        for task in self.running.keys() {
            let prefix = task_id_prefix(task);
            let partitions = status
                .streams
                .iter()
                .filter(|s| s.name == task.stream)
                .flat_map(|s| s.tasks.iter())
                .filter(|t| t.id.starts_with(&prefix))
                .flat_map(|t| t.partitions.iter());
            let mut total = 0;
            let mut problems = Vec::new();
            for partition in partitions {
                total += 1;
                match &partition.health {
                    PartitionHealth::Running => {}
                    PartitionHealth::Paused(reason) | PartitionHealth::Error(reason) => problems
                        .push(format!(
                            "{}-{}: {reason}",
                            partition.topic, partition.partition
                        )),
                }
            }
            let errors = status
                .stream(&task.stream)
                .map(|s| s.stream_errors())
                .unwrap_or_default();
            let deleted_topics = status
                .stream(&task.stream)
                .map(|s| s.deleted_topics.clone())
                .unwrap_or_default();
            reports.push(TaskReport {
                task: task.clone(),
                state: TaskState::Running,
                partitions: total,
                unhealthy_partitions: problems.len(),
                problems,
                errors,
                deleted_topics,
            });
        }
        for (task, state) in &self.held {
            reports.push(TaskReport {
                task: task.clone(),
                state: state.clone(),
                partitions: 0,
                unhealthy_partitions: 0,
                problems: Vec::new(),
                errors: Vec::new(),
                deleted_topics: Vec::new(),
            });
        }
        reports.sort_by(|a, b| a.task.cmp(&b.task));
        reports
    }
}
