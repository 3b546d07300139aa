//! Cluster mode: the node joins the election through ZooKeeper; while it leads it plans and writes the
//! assignment; always, it runs the tasks assigned to it and reports their state.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aqueduct_coordination::events::{Change, NodeEvents};
use aqueduct_coordination::layout::Layout;
use aqueduct_coordination::store::{self, InstanceStatus, Seeded};
use aqueduct_coordination::{CoordinationError, Member, Role, Session};
use aqueduct_engine::metrics::metrics;
use aqueduct_engine::Engine;
use aqueduct_model::config::{DatastreamConfig, NodeConfig};
use tokio::sync::watch;
use tracing::{error, info, warn};
use zookeeper_client as zk;

use crate::agent::{Agent, Ownership};
use crate::partitions::PartitionCounter;
use crate::plan::{balancer_config, plan, task_counts};

/// Runs the node in its cluster until `shutdown` completes; then stops its tasks (drained and committed),
/// lets go of them and leaves the cluster so they are reassigned at once.
pub async fn run(
    config: NodeConfig,
    engine: Arc<Engine>,
    member: Member,
    ready: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let settings = &config.cluster;
    let instance = settings.instance_name();
    let layout = Layout::new(&settings.name);
    let session_timeout = Duration::from_millis(settings.session_timeout_ms);
    info!(cluster = %settings.name, %instance, "joining the cluster");
    let (stop_leader, stop_rx) = watch::channel(false);
    let leader = tokio::spawn(lead(
        config.clone(),
        member.watch_role(),
        member.watch_session(),
        stop_rx,
    ));

    let renewer = tokio::spawn(renew_lease(
        Arc::clone(engine.lease()),
        member.watch_session(),
    ));
    let mut agent = Agent::new(engine);
    let mut sessions = member.watch_session();
    let mut roles = member.watch_role();
    let mut current: Option<Session> = None;
    let mut disconnected_since: Option<Instant> = None;
    let mut reported: Option<InstanceStatus> = None;
    let mut definitions: Option<(u64, NodeEvents)> = None;
    tokio::pin!(shutdown);
    loop {
        let session = member.current();
        if session.as_ref().map(|s| s.number) != current.as_ref().map(|s| s.number) {
            if current.is_some() {
                // The old session is gone and its claims with it: others may run these tasks now.
                warn!(%instance, "coordination session ended; stopping every task");
                agent.engine().lease().revoke();
                agent.stop_all(None).await;
                reported = None;
            }
            if let Some(session) = &session {
                // Only this session's round trips renew the lease from now on: tasks claimed in it may
                // forward records, nothing left of an older one can.
                agent.engine().lease().grant(session.number);
                seed(&config, session, &layout).await;
            }
            current = session;
        }
        metrics()
            .max_tasks
            .set(i64::from(settings.max_tasks_per_instance));
        metrics().session_connected.set(i64::from(
            current.is_some() && member.role() != Role::Disconnected,
        ));
        if member.role() == Role::Disconnected {
            let since = *disconnected_since.get_or_insert_with(Instant::now);
            let timeout = current.as_ref().map_or(session_timeout, |s| s.timeout);
            if since.elapsed() >= timeout && agent.running().next().is_some() {
                warn!(%instance, "cut off from ZooKeeper for a session timeout; stopping every task");
                agent.stop_all(None).await;
            }
        } else {
            disconnected_since = None;
        }
        let mut assignment_changed = None;
        if current.is_none() || disconnected_since.is_some() {
            ready.send_replace(false);
        }
        if let (Some(session), None) = (&current, disconnected_since) {
            if definitions.as_ref().map(|(number, _)| *number) != Some(session.number) {
                // Definition changes (a pause, a new pattern) restart the affected tasks without waiting.
                definitions = NodeEvents::recursive(&session.client, &layout.datastreams())
                    .await
                    .ok()
                    .map(|events| (session.number, events));
            }
            match follow(&mut agent, session, &layout, &instance).await {
                Ok((watcher, status)) => {
                    ready.send_replace(!agent.has_held());
                    let metrics = metrics();
                    metrics.tasks_assigned.set(agent.running().count() as i64);
                    if let Ok(Some(summary)) = store::summary(&session.client, &layout).await {
                        metrics
                            .unassigned_tasks
                            .set(summary.unassigned.len() as i64);
                    }
                    assignment_changed = Some(watcher);
                    if reported.as_ref() != Some(&status) {
                        match store::write_status(&session.client, &layout, &status).await {
                            Ok(()) => reported = Some(status),
                            Err(error) => warn!(%error, "cannot report task states"),
                        }
                    }
                }
                Err(error) => warn!(%error, "cannot read the assignment"),
            }
        }
        let pause = if agent.has_held() {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        };
        let assignment_event = async {
            match assignment_changed {
                Some(watcher) => {
                    watcher.changed().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let definition_event = async {
            match definitions.as_mut() {
                Some((_, events)) => events.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = assignment_event => {}
            change = definition_event => {
                if let Change::Ended(state) = change {
                    // The session is over; watching again needs the next one.
                    info!(%instance, ?state, "coordination session ended under the definitions watch");
                    definitions = None;
                }
            }
            _ = sessions.changed() => {}
            _ = roles.changed() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    ready.send_replace(false);
    info!(%instance, "leaving the cluster: stopping tasks");
    let _ = stop_leader.send(true);
    let _ = leader.await;
    renewer.abort();
    match &current {
        Some(session) => {
            let ownership = Ownership::Claimed {
                session: Box::new(session.clone()),
                layout: layout.clone(),
                instance: instance.clone(),
            };
            agent.stop_all(Some(&ownership)).await;
        }
        None => agent.stop_all(None).await,
    }
    // Leave the election at once: the leader reassigns the tasks now, not after a session timeout.
    if let Some(session) = current.take() {
        if let Err(error) = session.client.delete(&session.live_node, None).await {
            warn!(%error, "cannot remove the live-instance node; it goes with the session");
        }
    }
    member.leave().await;
    info!(%instance, "left the cluster");
}

/// Renews the engine's lease after every successful round trip to ZooKeeper in the session that holds it,
/// for two thirds of the session timeout the server granted: the server cannot have expired the session
/// before then. A node that was frozen or cut off finds its lease run out and copies nothing until it knows
/// where it stands; a new session renews nothing until the control loop has stopped the old session's
/// tasks and granted it the lease.
async fn renew_lease(
    lease: Arc<aqueduct_engine::lease::Lease>,
    sessions: watch::Receiver<Option<Session>>,
) {
    loop {
        let session = sessions.borrow().clone();
        let mut period = Duration::from_millis(500);
        if let Some(session) = session {
            period = (session.timeout / 6).max(Duration::from_millis(100));
            let asked = Instant::now();
            if lease.holder() == Some(session.number) {
                if let Ok(Some(_)) = session.client.check_stat(&session.live_node).await {
                    // Counted from before the request was sent: the server heard from us after that.
                    let valid_for = session.timeout * 2 / 3;
                    let left = valid_for.saturating_sub(asked.elapsed());
                    if !left.is_zero() {
                        lease.renew(session.number, left);
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Writes the datastreams of the config file that the cluster does not know yet.
async fn seed(config: &NodeConfig, session: &Session, layout: &Layout) {
    for stream in &config.datastreams {
        match store::seed_datastream(&session.client, layout, &stream.name, stream).await {
            Ok(Seeded::Created) => info!(stream = %stream.name, "datastream added to the cluster"),
            Ok(Seeded::Unchanged) => {}
            Ok(Seeded::Deleted) => info!(
                stream = %stream.name,
                "datastream of the config file was deleted through the API; it stays deleted"
            ),
            Ok(Seeded::Differs) => warn!(
                stream = %stream.name,
                "the cluster's definition of this datastream differs from the config file; the cluster's is used"
            ),
            Err(error) => warn!(stream = %stream.name, %error, "cannot add datastream"),
        }
    }
}

/// Applies this instance's assignment; returns a watcher on it and the report to publish.
async fn follow(
    agent: &mut Agent,
    session: &Session,
    layout: &Layout,
    instance: &str,
) -> Result<(zk::OneshotWatcher, InstanceStatus), CoordinationError> {
    let (assignment, watcher) =
        store::watch_instance_assignment(&session.client, layout, instance).await?;
    let mut streams: BTreeMap<String, DatastreamConfig> = BTreeMap::new();
    for task in &assignment.tasks {
        if !streams.contains_key(&task.stream) {
            if let Some(stream) = store::datastream(&session.client, layout, &task.stream).await? {
                streams.insert(task.stream.clone(), stream);
            }
        }
    }
    let ownership = Ownership::Claimed {
        session: Box::new(session.clone()),
        layout: layout.clone(),
        instance: instance.to_string(),
    };
    agent.apply(&assignment.tasks, &streams, &ownership).await;
    let status = InstanceStatus {
        instance: instance.to_string(),
        generation: assignment.generation,
        tasks: agent.report(&agent.engine().status()),
    };
    Ok((watcher, status))
}

/// The leader's duty: whenever this member leads, plan and write the assignment after every change.
async fn lead(
    config: NodeConfig,
    mut roles: watch::Receiver<Role>,
    mut sessions: watch::Receiver<Option<Session>>,
    mut stop: watch::Receiver<bool>,
) {
    let layout = Layout::new(&config.cluster.name);
    let instance = config.cluster.instance_name();
    let counter = Arc::new(Mutex::new(PartitionCounter::new(config.clusters.clone())));
    while !*stop.borrow() {
        let session = sessions.borrow().clone();
        let role = roles.borrow().clone();
        if let (Role::Leader, Some(session)) = (role, session) {
            info!(%instance, "leading: planning the assignment");
            let term = Term {
                config: &config,
                layout: &layout,
                instance: &instance,
                session,
                counter: Arc::clone(&counter),
            };
            metrics().leader.set(1);
            tokio::select! {
                result = term.run(&mut roles) => {
                    if let Err(error) = result {
                        warn!(%instance, %error, "leadership term ended");
                    }
                }
                _ = stop.changed() => break,
            }
            metrics().leader.set(0);
            continue;
        }
        tokio::select! {
            _ = roles.changed() => {}
            _ = sessions.changed() => {}
            _ = stop.changed() => {}
        }
    }
}

/// One leadership term: lasts while the member leads in the same session.
struct Term<'a> {
    config: &'a NodeConfig,
    layout: &'a Layout,
    instance: &'a str,
    session: Session,
    counter: Arc<Mutex<PartitionCounter>>,
}

impl Term<'_> {
    async fn run(&self, roles: &mut watch::Receiver<Role>) -> Result<(), CoordinationError> {
        let client = &self.session.client;
        let settings = &self.config.cluster;
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        match client.mkdir(&self.layout.datastreams(), &persistent).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(error) => return Err(error.into()),
        }
        let mut stream_events = NodeEvents::recursive(client, &self.layout.datastreams()).await?;
        let previous = store::summary(client, self.layout)
            .await?
            .unwrap_or_default();
        let mut generation = previous.generation;
        let mut counts = previous.task_counts.clone();
        let mut last_summary = None;
        let mut partitions: BTreeMap<String, u32> = BTreeMap::new();
        let mut counted: Option<(Instant, BTreeMap<String, DatastreamConfig>)> = None;
        let refresh = Duration::from_secs(settings.partition_refresh_interval_secs);
        let delay = Duration::from_millis(settings.rebalance_delay_ms);
        loop {
            if *roles.borrow() != Role::Leader {
                return Ok(());
            }
            let live: Vec<String> = store::live_instances(client, self.layout)
                .await?
                .into_iter()
                .map(|(_, name)| name)
                .collect();
            let streams: BTreeMap<String, DatastreamConfig> =
                store::datastreams(client, self.layout).await?;
            let recount = match &counted {
                Some((at, seen)) => at.elapsed() >= refresh || *seen != streams,
                None => true,
            };
            if recount {
                let counter = Arc::clone(&self.counter);
                let to_count = streams.clone();
                partitions = tokio::task::spawn_blocking(move || {
                    counter.lock().expect("partition counter").count(&to_count)
                })
                .await
                .unwrap_or_default();
                counted = Some((Instant::now(), streams.clone()));
            }
            counts = task_counts(&streams, &partitions, &counts);
            let planning = Instant::now();
            let known = store::instance_assignments(client, self.layout).await?;
            let planned = plan(
                &streams,
                counts.clone(),
                &live,
                &known,
                balancer_config(settings),
            );
            let changes = planned.changes(&known, generation + 1);
            let summary = planned.summary(generation + 1, self.instance);
            let summary_changed =
                last_summary
                    .as_ref()
                    .is_none_or(|last: &store::AssignmentSummary| {
                        last.task_counts != summary.task_counts
                            || last.instances != summary.instances
                            || last.unassigned != summary.unassigned
                    });
            if !changes.is_empty() || summary_changed {
                match store::write_assignment(&self.session, self.layout, &summary, &changes).await
                {
                    Ok(()) => {
                        generation += 1;
                        metrics().rebalances.inc();
                        metrics()
                            .rebalance_duration
                            .observe(planning.elapsed().as_secs_f64());
                        metrics()
                            .unassigned_tasks
                            .set(summary.unassigned.len() as i64);
                        let moved: Vec<&String> = changes.keys().collect();
                        info!(
                            generation,
                            instances = live.len(),
                            tasks = planned.assignment.assigned(),
                            unassigned = summary.unassigned.len(),
                            changed = ?moved,
                            "assignment written"
                        );
                        if !summary.unassigned.is_empty() {
                            let waiting: Vec<String> =
                                summary.unassigned.iter().map(ToString::to_string).collect();
                            warn!(
                                unassigned = ?waiting,
                                "tasks unassigned: the live nodes are at their max_tasks_per_instance"
                            );
                        }
                        last_summary = Some(summary);
                    }
                    Err(CoordinationError::NotLeader) => {
                        error!("lost leadership while writing the assignment; not written");
                        return Err(CoordinationError::NotLeader);
                    }
                    Err(error) => return Err(error),
                }
            }
            // Wait for a change: a node coming or going, a datastream changing, the next partition count,
            // or the end of leadership; then let a burst of changes settle.
            let (_, live_changed) = client
                .list_and_watch_children(&self.layout.live_instances())
                .await?;
            let until_recount =
                refresh.saturating_sub(counted.as_ref().map_or(refresh, |(at, _)| at.elapsed()));
            tokio::select! {
                _ = live_changed.changed() => {}
                change = stream_events.changed() => {
                    if let Change::Ended(state) = change {
                        return Err(CoordinationError::SessionEnded(state));
                    }
                }
                _ = roles.changed() => {}
                _ = tokio::time::sleep(until_recount) => {}
            }
            tokio::time::sleep(delay).await;
        }
    }
}
