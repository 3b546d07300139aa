//! The cluster's state in ZooKeeper (see [`crate::layout`]): what the leader writes, what each instance
//! reports, task ownership, and datastream definitions. Every document is JSON.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::layout::{self, Layout};
use crate::{CoordinationError, Session};

/// One task of a datastream: task `index` of `count`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AssignedTask {
    pub stream: String,
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for AssignedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}/{}]", self.stream, self.index, self.count)
    }
}

/// The tasks the leader assigned to one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceAssignment {
    /// The leader's assignment generation that wrote it.
    pub generation: u64,
    pub tasks: Vec<AssignedTask>,
}

/// The leader's summary of the whole assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentSummary {
    pub generation: u64,
    /// Instance name of the leader that wrote it.
    pub leader: String,
    /// Tasks per datastream (paused streams have none placed).
    pub task_counts: BTreeMap<String, u32>,
    /// Tasks per live instance.
    pub instances: BTreeMap<String, usize>,
    /// Tasks no instance can take within the caps.
    pub unassigned: Vec<AssignedTask>,
}

/// What an instance reports about one of its assigned tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "kebab-case")]
pub enum TaskState {
    /// Copying records.
    Running,
    /// Assigned, not started yet (for example waiting for its previous owner to let go).
    Waiting(String),
    /// Could not start.
    Error(String),
}

/// One assigned task and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    #[serde(flatten)]
    pub task: AssignedTask,
    #[serde(flatten)]
    pub state: TaskState,
    /// Source partitions the task reads.
    pub partitions: usize,
    /// Partitions stopped by an error or a permanent rejection.
    pub unhealthy_partitions: usize,
    /// Why, one line per stopped partition (`topic-partition: reason`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Problems of the task's datastream as a whole on this node (a source cluster it cannot reach, a
    /// destination topic it cannot create).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Source topics of the task's datastream that are gone, as this node found them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_topics: Vec<aqueduct_model::topic_id::DeletedTopic>,
}

/// What an instance reports under `instances/<name>/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub instance: String,
    /// The assignment generation the instance has applied.
    pub generation: u64,
    pub tasks: Vec<TaskReport>,
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("documents serialize")
}

fn parse<T: DeserializeOwned>(path: &str, data: &[u8]) -> Result<T, CoordinationError> {
    serde_json::from_slice(data).map_err(|e| CoordinationError::Document(format!("{path}: {e}")))
}

/// Creates `path` with `data`, or replaces its data.
async fn put(client: &zk::Client, path: &str, data: &[u8]) -> Result<(), CoordinationError> {
    match client.set_data(path, data, None).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NoNode) => {
            if let Some((parent, _)) = path.rsplit_once('/') {
                match client.mkdir(parent, &persistent()).await {
                    Ok(()) | Err(zk::Error::NodeExists) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            match client.create(path, data, &persistent()).await {
                Ok(_) => Ok(()),
                Err(zk::Error::NodeExists) => {
                    client.set_data(path, data, None).await?;
                    Ok(())
                }
                Err(error) => Err(error.into()),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Makes the instance's assignment node exist and hold no tasks (before it registers as live).
pub async fn reset_instance(
    client: &zk::Client,
    layout: &Layout,
    instance: &str,
) -> Result<(), CoordinationError> {
    put(
        client,
        &layout.instance_assignment(instance),
        &json(&InstanceAssignment::default()),
    )
    .await
}

/// Live instances in election order: (sequence, instance name).
pub async fn live_instances(
    client: &zk::Client,
    layout: &Layout,
) -> Result<Vec<(u64, String)>, CoordinationError> {
    let children = match client.list_children(&layout.live_instances()).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut live = Vec::new();
    for (sequence, child) in layout::election_order(&children) {
        match client
            .get_data(&format!("{}/{child}", layout.live_instances()))
            .await
        {
            Ok((data, _)) => live.push((sequence, String::from_utf8_lossy(&data).into_owned())),
            Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(live)
}

/// Every datastream definition, by name.
pub async fn datastreams<T: DeserializeOwned>(
    client: &zk::Client,
    layout: &Layout,
) -> Result<BTreeMap<String, T>, CoordinationError> {
    let children = match client.list_children(&layout.datastreams()).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => return Ok(BTreeMap::new()),
        Err(error) => return Err(error.into()),
    };
    let mut streams = BTreeMap::new();
    for name in children {
        let path = layout.datastream(&name);
        match client.get_data(&path).await {
            Ok((data, _)) => {
                streams.insert(name, parse(&path, &data)?);
            }
            Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(streams)
}

/// One datastream definition, if it exists.
pub async fn datastream<T: DeserializeOwned>(
    client: &zk::Client,
    layout: &Layout,
    name: &str,
) -> Result<Option<T>, CoordinationError> {
    let path = layout.datastream(name);
    match client.get_data(&path).await {
        Ok((data, _)) => Ok(Some(parse(&path, &data)?)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// What [`seed_datastream`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    Created,
    Unchanged,
    /// The cluster holds a different definition; it was kept.
    Differs,
    /// Seeded once and deleted since: it stays deleted.
    Deleted,
}

/// Writes a datastream definition of a node file if the cluster has none of that name and never had it
/// from a node file: a stream seeded once and deleted since stays deleted.
pub async fn seed_datastream<T: Serialize + DeserializeOwned + PartialEq>(
    client: &zk::Client,
    layout: &Layout,
    name: &str,
    stream: &T,
) -> Result<Seeded, CoordinationError> {
    for parent in [layout.datastreams(), layout.seeded()] {
        match client.mkdir(&parent, &persistent()).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let marked = match client.check_stat(&layout.seeded_datastream(name)).await {
        Ok(stat) => stat.is_some(),
        Err(error) => return Err(error.into()),
    };
    let seeded = if marked {
        match datastream::<T>(client, layout, name).await? {
            None => return Ok(Seeded::Deleted),
            Some(existing) if existing == *stream => Seeded::Unchanged,
            Some(_) => Seeded::Differs,
        }
    } else {
        match client
            .create(&layout.datastream(name), &json(stream), &persistent())
            .await
        {
            Ok(_) => Seeded::Created,
            Err(zk::Error::NodeExists) => match datastream::<T>(client, layout, name).await? {
                Some(existing) if existing == *stream => Seeded::Unchanged,
                _ => Seeded::Differs,
            },
            Err(error) => return Err(error.into()),
        }
    };
    // The marker follows the definition: a crash in between leaves a definition without one, which the
    // next seeding marks (never a marker without the definition it stands for).
    match client
        .create(&layout.seeded_datastream(name), &[], &persistent())
        .await
    {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(seeded),
        Err(error) => Err(error.into()),
    }
}

/// Every instance's assignment, including instances that are not live.
pub async fn instance_assignments(
    client: &zk::Client,
    layout: &Layout,
) -> Result<BTreeMap<String, InstanceAssignment>, CoordinationError> {
    let children = match client.list_children(&layout.instances()).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => return Ok(BTreeMap::new()),
        Err(error) => return Err(error.into()),
    };
    let mut assignments = BTreeMap::new();
    for instance in children {
        let path = layout.instance_assignment(&instance);
        match client.get_data(&path).await {
            Ok((data, _)) => {
                assignments.insert(instance, parse(&path, &data)?);
            }
            Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(assignments)
}

/// An instance's assignment and a watcher that fires when it changes.
pub async fn watch_instance_assignment(
    client: &zk::Client,
    layout: &Layout,
    instance: &str,
) -> Result<(InstanceAssignment, zk::OneshotWatcher), CoordinationError> {
    let path = layout.instance_assignment(instance);
    let (data, _, watcher) = client.get_and_watch_data(&path).await?;
    Ok((parse(&path, &data)?, watcher))
}

/// The leader's summary, if one was written.
pub async fn summary(
    client: &zk::Client,
    layout: &Layout,
) -> Result<Option<AssignmentSummary>, CoordinationError> {
    let path = layout.assignment();
    match client.get_data(&path).await {
        Ok((data, _)) => Ok(Some(parse(&path, &data)?)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Writes a new assignment in one transaction that succeeds only while `session`'s live-instance node
/// exists: a member that lost its session (and with it the leadership) cannot write.
pub async fn write_assignment(
    session: &Session,
    layout: &Layout,
    summary: &AssignmentSummary,
    changed: &BTreeMap<String, InstanceAssignment>,
) -> Result<(), CoordinationError> {
    let client = &session.client;
    // The summary node must exist for the transaction to set it; creating it is harmless for anyone.
    match client
        .create(&layout.assignment(), b"{}", &persistent())
        .await
    {
        Ok(_) | Err(zk::Error::NodeExists) => {}
        Err(error) => return Err(error.into()),
    }
    let mut writer = client.new_check_writer(&session.live_node, None)?;
    writer.add_set_data(&layout.assignment(), &json(summary), None)?;
    for (instance, assignment) in changed {
        writer.add_set_data(
            &layout.instance_assignment(instance),
            &json(assignment),
            None,
        )?;
    }
    match writer.commit().await {
        Ok(_) => Ok(()),
        Err(zk::CheckWriteError::CheckFailed { .. }) => Err(CoordinationError::NotLeader),
        Err(error) => Err(CoordinationError::ZooKeeper(error.into())),
    }
}

/// Writes what an instance reports about its tasks.
pub async fn write_status(
    client: &zk::Client,
    layout: &Layout,
    status: &InstanceStatus,
) -> Result<(), CoordinationError> {
    put(
        client,
        &layout.instance_status(&status.instance),
        &json(status),
    )
    .await
}

/// An instance's report, if it wrote one.
pub async fn instance_status(
    client: &zk::Client,
    layout: &Layout,
    instance: &str,
) -> Result<Option<InstanceStatus>, CoordinationError> {
    let path = layout.instance_status(instance);
    match client.get_data(&path).await {
        Ok((data, _)) => Ok(Some(parse(&path, &data)?)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Whether a task could be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This session owns the task: run it.
    Owned,
    /// Someone else still runs it (or, for a stream whose task count changed, a task of the old count
    /// still runs); try again later.
    Busy(String),
}

/// Claims a task for `instance` in `session` with an ephemeral ownership node. Two sessions never own the
/// same task, and no task of a new task count is owned while a task of another count of the same stream is:
/// the partitions of a stream are never read by two tasks at once.
pub async fn claim(
    session: &Session,
    layout: &Layout,
    instance: &str,
    task: &AssignedTask,
) -> Result<Claim, CoordinationError> {
    let client = &session.client;
    let parent = layout.owners(&task.stream);
    match client.mkdir(&parent, &persistent()).await {
        Ok(()) | Err(zk::Error::NodeExists) => {}
        Err(error) => return Err(error.into()),
    }
    let mine = layout::owner_node(task.index, task.count);
    for child in client.list_children(&parent).await? {
        if let Some((count, index)) = layout::parse_owner_node(&child) {
            if count != task.count {
                return Ok(Claim::Busy(format!(
                    "task {index} of the stream's previous {count} tasks still runs"
                )));
            }
        }
    }
    let path = format!("{parent}/{mine}");
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    match client.create(&path, instance.as_bytes(), &ephemeral).await {
        Ok(_) => Ok(Claim::Owned),
        Err(zk::Error::NodeExists) => match client.get_data(&path).await {
            Ok((_, stat)) if stat.ephemeral_owner == client.session_id().0 => Ok(Claim::Owned),
            Ok((data, _)) => Ok(Claim::Busy(format!(
                "still owned by {}",
                String::from_utf8_lossy(&data)
            ))),
            Err(zk::Error::NoNode) => Ok(Claim::Busy("owner just let go".to_string())),
            Err(error) => Err(error.into()),
        },
        Err(error) => Err(error.into()),
    }
}

/// Gives up a task this session owns (after the task stopped and committed).
pub async fn release(
    session: &Session,
    layout: &Layout,
    task: &AssignedTask,
) -> Result<(), CoordinationError> {
    let client = &session.client;
    let path = layout.owner(&task.stream, task.index, task.count);
    match client.get_data(&path).await {
        Ok((_, stat)) if stat.ephemeral_owner == client.session_id().0 => {
            match client.delete(&path, Some(stat.version)).await {
                Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                Err(error) => Err(error.into()),
            }
        }
        Ok(_) | Err(zk::Error::NoNode) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
