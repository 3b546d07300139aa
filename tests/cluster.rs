//! Three `aqueduct` processes in one cluster, coordinated through a real ZooKeeper, mirroring a dozen
//! datastreams between real Kafka clusters while nodes are killed, frozen and stopped and ZooKeeper is
//! restarted or loses its leader. Every scenario ends with the sequence checker: zero loss, order kept.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aqueduct_coordination::layout::Layout;
use aqueduct_coordination::store::{self, AssignedTask, AssignmentSummary, TaskState};
use aqueduct_testkit::{
    check_sequences, create_topic, random_name, AqueductNode, SequenceLoad, ZooKeeper,
    ZooKeeperEnsemble,
};
use common::pair;
use zookeeper_client as zk;

const STREAMS: usize = 12;
const PARTITIONS: i32 = 2;
/// Two tasks per stream (one per partition).
const TASKS: usize = STREAMS * PARTITIONS as usize;
const SESSION: Duration = Duration::from_secs(6);

/// Sequence producers writing 50 records per partition every ~50 ms into every topic until stopped.
fn load(topics: &[String], partitions: i32) -> SequenceLoad {
    SequenceLoad::start(
        &pair().source.bootstrap(),
        topics,
        partitions,
        50,
        Duration::from_millis(50),
    )
}

/// A cluster of three nodes mirroring `STREAMS` topics, with load running into every topic.
struct Cluster {
    name: String,
    zookeeper: String,
    nodes: Vec<AqueductNode>,
    topics: Vec<String>,
    load: Option<SequenceLoad>,
}

fn node_config(
    cluster: &str,
    zookeeper: &str,
    instance: &str,
    cap: u32,
    topics: &[String],
) -> String {
    let pair = pair();
    let mut config = format!(
        r#"
[node]
commit_interval_ms = 500
status_interval_secs = 0

[cluster]
name = "{cluster}"
zookeeper = "{zookeeper}"
instance = "{instance}"
session_timeout_ms = {session}
max_tasks_per_instance = {cap}
rebalance_delay_ms = 200
partition_refresh_interval_secs = 5

[clusters.source]
bootstrap_servers = "{source}"
[clusters.destination]
bootstrap_servers = "{destination}"
"#,
        session = SESSION.as_millis(),
        source = pair.source.bootstrap(),
        destination = pair.destination.bootstrap(),
    );
    for topic in topics {
        config.push_str(&format!(
            r#"
[[datastreams]]
name = "{topic}"
destination = "destination"
destination_topic = "mirror.{{topic}}"
max_tasks = 4
topic_refresh_interval_secs = 5
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ));
    }
    config
}

impl Cluster {
    fn start(zookeeper: &str, cap: u32) -> Self {
        let pair = pair();
        let name = random_name("cluster");
        let topics: Vec<String> = (0..STREAMS).map(|i| format!("{name}-s{i}")).collect();
        for topic in &topics {
            create_topic(&pair.source.bootstrap(), topic, PARTITIONS, &[]).unwrap();
        }
        let mut nodes = Vec::new();
        for i in 0..3 {
            let config = node_config(&name, zookeeper, &format!("n{i}"), cap, &topics);
            nodes.push(AqueductNode::start(&config).unwrap());
            if i == 0 {
                // n0 registers first and leads.
                std::thread::sleep(Duration::from_millis(1500));
            }
        }
        let mut cluster = Self {
            name,
            zookeeper: zookeeper.to_string(),
            nodes,
            topics,
            load: None,
        };
        cluster.load = Some(load(&cluster.topics, PARTITIONS));
        cluster
    }

    fn layout(&self) -> Layout {
        Layout::new(&self.name)
    }

    fn view(&self) -> Option<View> {
        View::read(&self.zookeeper, &self.layout())
    }

    /// Waits until `check` holds for the cluster's view; returns how long it took.
    fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&View) -> bool) -> Duration {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            if let Some(view) = self.view() {
                if check(&view) {
                    return start.elapsed();
                }
                last = Some(view);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{what}: not reached in {timeout:?}; last view: {last:#?}\n{}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- n{i}:\n{}", n.log_tail(30)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the load, then proves every record written reached the destination, in order.
    fn check_no_loss(&mut self) {
        let written = self.load.take().expect("load").stop();
        let destination = pair().destination.bootstrap();
        let mut duplicates = 0;
        let mut total = 0;
        for (topic, expected) in self.topics.iter().zip(written) {
            let report = check_sequences(
                &destination,
                &format!("mirror.{topic}"),
                &expected,
                true,
                Duration::from_secs(120),
            )
            .unwrap();
            assert_eq!(
                report.missing,
                0,
                "{topic}: records lost: {report:?}\n{}",
                self.logs()
            );
            assert_eq!(report.out_of_order, 0, "{topic}: order broken: {report:?}");
            assert_eq!(
                report.wrong_partition, 0,
                "{topic}: wrong partition: {report:?}"
            );
            duplicates += report.duplicates;
            total += report.unique;
        }
        eprintln!(
            "{}: {total} records over {STREAMS} streams, 0 missing, {duplicates} duplicates",
            self.name
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(load) = self.load.take() {
            load.stop();
        }
    }
}

/// The cluster as ZooKeeper shows it.
#[derive(Debug)]
struct View {
    /// Live instances in election order; the first leads.
    live: Vec<String>,
    summary: Option<AssignmentSummary>,
    /// Tasks reported running, per live instance.
    running: BTreeMap<String, Vec<AssignedTask>>,
}

impl View {
    fn read(zookeeper: &str, layout: &Layout) -> Option<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let client = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(5))
                .with_connection_timeout(Duration::from_secs(2))
                .connect(zookeeper)
                .await
                .ok()?;
            let live: Vec<String> = store::live_instances(&client, layout)
                .await
                .ok()?
                .into_iter()
                .map(|(_, name)| name)
                .collect();
            let summary = store::summary(&client, layout).await.ok()?;
            let mut running = BTreeMap::new();
            for instance in &live {
                let tasks = store::instance_status(&client, layout, instance)
                    .await
                    .ok()?
                    .map(|s| {
                        s.tasks
                            .into_iter()
                            .filter(|t| t.state == TaskState::Running)
                            .map(|t| t.task)
                            .collect()
                    })
                    .unwrap_or_default();
                running.insert(instance.clone(), tasks);
            }
            Some(Self {
                live,
                summary,
                running,
            })
        })
    }

    fn leader(&self) -> Option<&str> {
        self.live.first().map(String::as_str)
    }

    /// Every one of `tasks` tasks runs on exactly one live instance, none above `cap`, and the leader's
    /// summary agrees: written by the current leader, over exactly the live instances.
    fn all_running_once(&self, tasks: usize, live: usize, cap: usize) -> bool {
        let all: Vec<&AssignedTask> = self.running.values().flatten().collect();
        let distinct: BTreeSet<&AssignedTask> = all.iter().copied().collect();
        let summary_agrees = self.summary.as_ref().is_some_and(|s| {
            Some(s.leader.as_str()) == self.leader()
                && s.unassigned.is_empty()
                && s.instances.len() == live
                && s.instances.keys().all(|i| self.live.contains(i))
        });
        self.live.len() == live
            && summary_agrees
            && all.len() == tasks
            && distinct.len() == tasks
            && self.running.values().all(|t| t.len() <= cap)
    }

    fn unassigned(&self) -> usize {
        self.summary.as_ref().map_or(0, |s| s.unassigned.len())
    }
}

#[test]
fn killed_leader_and_follower_are_replaced_within_the_session_timeout() {
    let _serial = common::serial();
    let zookeeper = ZooKeeper::start().unwrap();
    let mut cluster = Cluster::start(&zookeeper.connect_string(), 64);
    let took = cluster.wait_for("full assignment", Duration::from_secs(60), |v| {
        v.all_running_once(TASKS, 3, 64)
    });
    eprintln!("3 nodes, {TASKS} tasks running once after {took:?}");
    assert_eq!(cluster.view().unwrap().leader(), Some("n0"));

    // The leader is killed: a new leader, and its tasks run elsewhere.
    cluster.nodes[0].kill();
    let took = cluster.wait_for(
        "new leader and full assignment",
        SESSION + Duration::from_secs(5),
        |v| v.all_running_once(TASKS, 2, 64) && v.leader() != Some("n0"),
    );
    eprintln!(
        "leader SIGKILL: new leader {:?}, all tasks running after {took:?}",
        cluster.view().unwrap().leader()
    );

    // A follower is killed: its tasks run on the last node.
    let follower = if cluster.view().unwrap().leader() == Some("n1") {
        2
    } else {
        1
    };
    cluster.nodes[follower].kill();
    let took = cluster.wait_for(
        "follower's tasks moved",
        SESSION + Duration::from_secs(5),
        |v| v.all_running_once(TASKS, 1, 64),
    );
    eprintln!("follower SIGKILL: all tasks on the survivor after {took:?}");

    // Both come back and take load again.
    cluster.nodes[0].restart().unwrap();
    cluster.nodes[follower].restart().unwrap();
    cluster.wait_for("rebalanced over 3 nodes", Duration::from_secs(30), |v| {
        v.all_running_once(TASKS, 3, 64) && v.running.values().all(|t| t.len() >= TASKS / 3 - 1)
    });

    // A stream's source grows from 2 to 4 partitions: it gets 4 tasks (max_tasks), which start only after
    // its 2 old tasks stopped, so no partition is read twice at once.
    let grown = cluster.topics[0].clone();
    aqueduct_testkit::add_partitions(&pair().source.bootstrap(), &grown, 4).unwrap();
    let took = cluster.wait_for(
        "the grown stream runs 4 tasks",
        Duration::from_secs(30),
        |v| {
            v.all_running_once(TASKS + 2, 3, 64)
                && v.summary
                    .as_ref()
                    .is_some_and(|s| s.task_counts.get(&grown) == Some(&4))
        },
    );
    eprintln!("partitions added: 4 tasks for the stream after {took:?}");
    std::thread::sleep(Duration::from_secs(2));
    cluster.check_no_loss();
}

#[test]
fn a_frozen_node_whose_session_expired_rejoins_by_itself() {
    let _serial = common::serial();
    let zookeeper = ZooKeeper::start().unwrap();
    let mut cluster = Cluster::start(&zookeeper.connect_string(), 64);
    cluster.wait_for("full assignment", Duration::from_secs(60), |v| {
        v.all_running_once(TASKS, 3, 64)
    });
    // Freeze the leader past its session timeout: the others take over its tasks and the leadership.
    let writes = |node: &AqueductNode| {
        node.log_tail(usize::MAX)
            .matches("assignment written")
            .count()
    };
    let written_before = writes(&cluster.nodes[0]);
    cluster.nodes[0].freeze();
    let took = cluster.wait_for(
        "tasks of the frozen node moved",
        SESSION + Duration::from_secs(8),
        |v| v.all_running_once(TASKS, 2, 64) && v.leader() != Some("n0"),
    );
    eprintln!("frozen leader: its tasks ran elsewhere after {took:?}");
    cluster.nodes[0].thaw();
    // It notices the expiry, stops what it ran, registers again and takes a share of the tasks.
    let took = cluster.wait_for("thawed node rejoined", Duration::from_secs(30), |v| {
        v.all_running_once(TASKS, 3, 64) && v.running.get("n0").is_some_and(|t| !t.is_empty())
    });
    let view = cluster.view().unwrap();
    eprintln!(
        "thawed node rejoined after {took:?}; leader {:?}",
        view.leader()
    );
    assert_ne!(
        view.leader(),
        Some("n0"),
        "leadership stayed with the new leader"
    );
    assert_eq!(
        writes(&cluster.nodes[0]),
        written_before,
        "the former leader wrote no assignment after it was frozen"
    );
    assert!(
        cluster.nodes[0]
            .log_tail(400)
            .contains("coordination session ended"),
        "the thawed node saw its session end:\n{}",
        cluster.nodes[0].log_tail(40)
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.check_no_loss();
}

#[test]
fn mirroring_continues_through_a_zookeeper_restart_and_an_ensemble_losing_its_leader() {
    let _serial = common::serial();
    // A single server restarted.
    let mut zookeeper = ZooKeeper::start().unwrap();
    let mut cluster = Cluster::start(&zookeeper.connect_string(), 64);
    cluster.wait_for("full assignment", Duration::from_secs(60), |v| {
        v.all_running_once(TASKS, 3, 64)
    });
    zookeeper.restart().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    cluster.wait_for(
        "all running after the restart",
        Duration::from_secs(30),
        |v| v.all_running_once(TASKS, 3, 64),
    );
    for node in &mut cluster.nodes {
        assert!(node.is_running(), "a node died:\n{}", node.log_tail(40));
    }
    cluster.check_no_loss();
    drop(cluster);

    // A three-server ensemble loses its leader.
    let mut ensemble = ZooKeeperEnsemble::start(3).unwrap();
    let mut cluster = Cluster::start(&ensemble.connect_string(), 64);
    cluster.wait_for("full assignment", Duration::from_secs(60), |v| {
        v.all_running_once(TASKS, 3, 64)
    });
    let leader = ensemble.leader().expect("the ensemble has a leader");
    ensemble.servers[leader].stop();
    eprintln!("stopped ZooKeeper server {leader}, the ensemble's leader");
    std::thread::sleep(Duration::from_secs(3));
    cluster.wait_for(
        "all running after the ensemble's leader left",
        Duration::from_secs(30),
        |v| v.all_running_once(TASKS, 3, 64),
    );
    for node in &mut cluster.nodes {
        assert!(node.is_running(), "a node died:\n{}", node.log_tail(40));
    }
    cluster.check_no_loss();
}

#[test]
fn caps_leave_excess_tasks_unassigned_until_nodes_return() {
    let _serial = common::serial();
    let zookeeper = ZooKeeper::start().unwrap();
    let cap = (TASKS / 3) as u32;
    let mut cluster = Cluster::start(&zookeeper.connect_string(), cap);
    cluster.wait_for("full assignment at the cap", Duration::from_secs(60), |v| {
        v.all_running_once(TASKS, 3, cap as usize)
    });
    // Two nodes stop cleanly (SIGTERM): they leave at once, without waiting for a session timeout.
    let started = Instant::now();
    assert_eq!(
        cluster.nodes[1].terminate(),
        Some(0),
        "{}",
        cluster.nodes[1].log_tail(30)
    );
    assert_eq!(
        cluster.nodes[2].terminate(),
        Some(0),
        "{}",
        cluster.nodes[2].log_tail(30)
    );
    let took = cluster.wait_for(
        "survivor at its cap, the rest unassigned",
        Duration::from_secs(30),
        |v| {
            let survivor: usize = v.running.values().map(Vec::len).sum();
            v.live == ["n0"] && survivor == cap as usize && v.unassigned() == TASKS - cap as usize
        },
    );
    eprintln!(
        "two nodes stopped: survivor holds {cap}, {} unassigned, {took:?} after the stops ({:?} in all)",
        TASKS - cap as usize,
        started.elapsed()
    );
    // The nodes return: everything is placed again.
    cluster.nodes[1].restart().unwrap();
    cluster.nodes[2].restart().unwrap();
    let took = cluster.wait_for("everything placed again", Duration::from_secs(30), |v| {
        v.all_running_once(TASKS, 3, cap as usize)
    });
    eprintln!("nodes back: every task placed after {took:?}");
    std::thread::sleep(Duration::from_secs(2));
    cluster.check_no_loss();
}

#[test]
fn a_standalone_node_plans_with_the_same_caps_and_keeps_its_state_on_disk() {
    let _serial = common::serial();
    let pair = pair();
    let topic = random_name("standalone");
    create_topic(&pair.source.bootstrap(), &topic, 4, &[]).unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = |cap: u32| {
        format!(
            r#"
[node]
commit_interval_ms = 500
status_interval_secs = 0

[cluster]
max_tasks_per_instance = {cap}
partition_refresh_interval_secs = 1
data_dir = "{state}"

[clusters.source]
bootstrap_servers = "{source}"
[clusters.destination]
bootstrap_servers = "{destination}"

[[datastreams]]
name = "solo"
destination = "destination"
destination_topic = "mirror.{{topic}}"
max_tasks = 4
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#,
            state = state.path().display(),
            source = pair.source.bootstrap(),
            destination = pair.destination.bootstrap(),
        )
    };
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(state.path().join(name)).ok()?).ok()
    };
    let running = |status: &serde_json::Value| {
        status["tasks"]
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| t["state"] == "running").count())
    };
    let load = load(std::slice::from_ref(&topic), 4);
    // Four tasks, room for three: one waits, visibly.
    let mut node = AqueductNode::start(&config(3)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let summary = read("assignment.json");
        let status = read("status.json");
        if let (Some(summary), Some(status)) = (&summary, &status) {
            if summary["task_counts"]["solo"] == 4
                && summary["unassigned"].as_array().map(Vec::len) == Some(1)
                && running(status) == 3
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "state: {summary:?} {status:?}\n{}",
            node.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(node.log_tail(200).contains("tasks unassigned"));
    // With room for all four, everything is copied.
    assert_eq!(node.terminate(), Some(0), "{}", node.log_tail(30));
    let mut node = AqueductNode::start(&config(4)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let written = load.stop();
    let report = check_sequences(
        &pair.destination.bootstrap(),
        &format!("mirror.{topic}"),
        &written[0],
        true,
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(report.is_lossless(), "{report:?}\n{}", node.log_tail(30));
    assert_eq!(report.wrong_partition, 0);
    let status = read("status.json").unwrap();
    assert_eq!(running(&status), 4, "{status}");
    assert_eq!(node.terminate(), Some(0));
}
