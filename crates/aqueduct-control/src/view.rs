//! What a node can tell about its cluster: the live instances, the leader, every instance's tasks and their
//! states, the task counts and the unassigned tasks. In a cluster it is read from ZooKeeper; a standalone
//! node reports its own plan.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aqueduct_coordination::layout::Layout;
use aqueduct_coordination::store::{
    self, AssignedTask, AssignmentSummary, InstanceStatus, TaskReport,
};
use aqueduct_coordination::{Role, Session};
use serde::Serialize;
use tokio::sync::watch;

/// One instance and its tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    pub name: String,
    pub leader: bool,
    /// `max_tasks_per_instance` of the cluster.
    pub max_tasks: u32,
    /// The assignment generation the instance applied.
    pub generation: u64,
    pub tasks: Vec<TaskReport>,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterView {
    /// `cluster` or `standalone`.
    pub mode: String,
    pub leader: Option<String>,
    pub generation: u64,
    pub instances: Vec<InstanceView>,
    /// Tasks per datastream.
    pub task_counts: BTreeMap<String, u32>,
    /// Tasks no instance can take within the caps.
    pub unassigned: Vec<AssignedTask>,
}

impl ClusterView {
    /// The tasks of `stream` with the instance running (or holding) each.
    pub fn tasks_of<'a>(
        &'a self,
        stream: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a TaskReport)> {
        self.instances.iter().flat_map(move |i| {
            i.tasks
                .iter()
                .filter(move |t| t.task.stream == stream)
                .map(move |t| (i.name.as_str(), t))
        })
    }
}

/// Where the view comes from.
pub enum ViewSource {
    ZooKeeper {
        sessions: watch::Receiver<Option<Session>>,
        roles: watch::Receiver<Role>,
        layout: Layout,
        cap: u32,
    },
    Local {
        state: Arc<Mutex<Option<(AssignmentSummary, InstanceStatus)>>>,
        cap: u32,
    },
}

impl ViewSource {
    /// Reads the view; `None` when the coordination service cannot be reached.
    pub async fn read(&self) -> Option<ClusterView> {
        match self {
            ViewSource::ZooKeeper {
                sessions,
                layout,
                cap,
                ..
            } => {
                let session = sessions.borrow().clone()?;
                let client = &session.client;
                let live = store::live_instances(client, layout).await.ok()?;
                let summary = store::summary(client, layout)
                    .await
                    .ok()?
                    .unwrap_or_default();
                let leader = live.first().map(|(_, name)| name.clone());
                let mut instances = Vec::new();
                for (_, name) in &live {
                    let status = store::instance_status(client, layout, name)
                        .await
                        .ok()?
                        .unwrap_or_default();
                    instances.push(InstanceView {
                        name: name.clone(),
                        leader: leader.as_ref() == Some(name),
                        max_tasks: *cap,
                        generation: status.generation,
                        tasks: status.tasks,
                    });
                }
                Some(ClusterView {
                    mode: "cluster".to_string(),
                    leader,
                    generation: summary.generation,
                    instances,
                    task_counts: summary.task_counts,
                    unassigned: summary.unassigned,
                })
            }
            ViewSource::Local { state, cap } => {
                let state = state.lock().expect("local state").clone();
                let (summary, status) = state?;
                Some(ClusterView {
                    mode: "standalone".to_string(),
                    leader: Some(status.instance.clone()),
                    generation: summary.generation,
                    instances: vec![InstanceView {
                        name: status.instance.clone(),
                        leader: true,
                        max_tasks: *cap,
                        generation: status.generation,
                        tasks: status.tasks,
                    }],
                    task_counts: summary.task_counts,
                    unassigned: summary.unassigned,
                })
            }
        }
    }

    /// Whether this node is connected to its coordination service.
    pub fn connected(&self) -> bool {
        match self {
            ViewSource::ZooKeeper {
                sessions, roles, ..
            } => sessions.borrow().is_some() && *roles.borrow() != Role::Disconnected,
            ViewSource::Local { .. } => true,
        }
    }
}
