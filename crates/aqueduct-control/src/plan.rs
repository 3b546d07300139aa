//! The leader's planning, pure: from datastreams, their partition counts, the live nodes and the previous
//! assignment to the tasks of every node. The same code plans a standalone node (one live node).

use std::collections::BTreeMap;

use aqueduct_balancer::{rebalance, task_count, Assignment, BalancerConfig, StreamDemand, TaskId};
use aqueduct_coordination::store::{AssignedTask, AssignmentSummary, InstanceAssignment};
use aqueduct_model::config::{ClusterSettings, DatastreamConfig};

/// The balancer settings of a cluster.
pub fn balancer_config(cluster: &ClusterSettings) -> BalancerConfig {
    BalancerConfig {
        max_tasks_per_instance: cluster.max_tasks_per_instance,
        imbalance_threshold: cluster.imbalance_threshold.max(1),
    }
}

/// Tasks per datastream: min(partitions, max_tasks), at least one. A stream whose partitions are not
/// counted yet keeps the count it had (`previous`), or gets one task.
pub fn task_counts(
    streams: &BTreeMap<String, DatastreamConfig>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, u32>,
) -> BTreeMap<String, u32> {
    streams
        .values()
        .map(|stream| {
            let max = stream.max_tasks.min(u32::MAX as usize) as u32;
            let count = match partitions.get(&stream.name) {
                Some(p) => task_count(*p, max),
                None => previous.get(&stream.name).copied().unwrap_or(1).min(max),
            };
            (stream.name.clone(), count.max(1))
        })
        .collect()
}

/// What every stream asks of the balancer.
pub fn demands(
    streams: &BTreeMap<String, DatastreamConfig>,
    counts: &BTreeMap<String, u32>,
) -> Vec<StreamDemand> {
    streams
        .values()
        .map(|stream| StreamDemand {
            name: stream.name.clone(),
            tasks: counts.get(&stream.name).copied().unwrap_or(1),
            max_tasks_per_instance: stream.max_tasks_per_instance,
            paused: stream.paused,
        })
        .collect()
}

/// The balancer's view of what the instances were told to run. A task whose count changed since is a
/// different task (its partitions differ), so it is dropped here and placed afresh.
pub fn previous_assignment(
    assignments: &BTreeMap<String, InstanceAssignment>,
    live: &[String],
    counts: &BTreeMap<String, u32>,
) -> Assignment {
    let mut previous = Assignment::default();
    for node in live {
        let tasks = assignments
            .get(node)
            .map(|a| {
                a.tasks
                    .iter()
                    .filter(|t| counts.get(&t.stream) == Some(&t.count))
                    .map(|t| TaskId::new(&t.stream, t.index))
                    .collect()
            })
            .unwrap_or_default();
        previous.nodes.insert(node.clone(), tasks);
    }
    previous
}

/// A complete plan: what each instance runs and the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub assignment: Assignment,
    pub counts: BTreeMap<String, u32>,
    /// For every live instance and every known instance that is not live (emptied).
    pub instances: BTreeMap<String, Vec<AssignedTask>>,
    pub unassigned: Vec<AssignedTask>,
}

fn assigned(task: &TaskId, counts: &BTreeMap<String, u32>) -> AssignedTask {
    AssignedTask {
        stream: task.stream.clone(),
        index: task.index,
        count: counts.get(&task.stream).copied().unwrap_or(1),
    }
}

/// Plans the cluster: rebalance from what the instances were told before.
pub fn plan(
    streams: &BTreeMap<String, DatastreamConfig>,
    counts: BTreeMap<String, u32>,
    live: &[String],
    known: &BTreeMap<String, InstanceAssignment>,
    config: BalancerConfig,
) -> Plan {
    let previous = previous_assignment(known, live, &counts);
    let assignment = rebalance(&previous, live, &demands(streams, &counts), config);
    let mut instances: BTreeMap<String, Vec<AssignedTask>> = known
        .keys()
        .map(|instance| (instance.clone(), Vec::new()))
        .collect();
    for (node, tasks) in &assignment.nodes {
        instances.insert(
            node.clone(),
            tasks.iter().map(|t| assigned(t, &counts)).collect(),
        );
    }
    let unassigned = assignment
        .unassigned
        .iter()
        .map(|t| assigned(t, &counts))
        .collect();
    Plan {
        assignment,
        counts,
        instances,
        unassigned,
    }
}

impl Plan {
    /// The instance assignments that differ from `known` (what must be written).
    pub fn changes(
        &self,
        known: &BTreeMap<String, InstanceAssignment>,
        generation: u64,
    ) -> BTreeMap<String, InstanceAssignment> {
        self.instances
            .iter()
            .filter(|(instance, tasks)| known.get(*instance).map(|a| &a.tasks) != Some(*tasks))
            .map(|(instance, tasks)| {
                (
                    instance.clone(),
                    InstanceAssignment {
                        generation,
                        tasks: tasks.clone(),
                    },
                )
            })
            .collect()
    }

    pub fn summary(&self, generation: u64, leader: &str) -> AssignmentSummary {
        AssignmentSummary {
            generation,
            leader: leader.to_string(),
            task_counts: self.counts.clone(),
            instances: self
                .assignment
                .nodes
                .iter()
                .map(|(node, tasks)| (node.clone(), tasks.len()))
                .collect(),
            unassigned: self.unassigned.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aqueduct_model::config::NodeConfig;

    fn streams(specs: &[(&str, usize, bool)]) -> BTreeMap<String, DatastreamConfig> {
        let mut toml = String::from(
            "[clusters.a]\nbootstrap_servers = \"127.0.0.1:1\"\n[clusters.b]\nbootstrap_servers = \"127.0.0.1:2\"\n",
        );
        for (name, max_tasks, paused) in specs {
            toml.push_str(&format!(
                "[[datastreams]]\nname = \"{name}\"\ndestination = \"b\"\nmax_tasks = {max_tasks}\npaused = {paused}\n\
                 [[datastreams.sources]]\ncluster = \"a\"\ntopics = [\"t\"]\n"
            ));
        }
        NodeConfig::from_sources(&toml, Vec::new())
            .unwrap()
            .datastreams
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect()
    }

    fn config(cap: u32) -> BalancerConfig {
        BalancerConfig {
            max_tasks_per_instance: cap,
            imbalance_threshold: 1,
        }
    }

    #[test]
    fn task_counts_follow_partitions_up_to_max_tasks() {
        let streams = streams(&[("few", 4, false), ("many", 4, false), ("new", 4, false)]);
        let partitions = BTreeMap::from([("few".to_string(), 2), ("many".to_string(), 40)]);
        let previous = BTreeMap::from([("new".to_string(), 3)]);
        let counts = task_counts(&streams, &partitions, &previous);
        assert_eq!(counts["few"], 2);
        assert_eq!(counts["many"], 4);
        assert_eq!(counts["new"], 3, "uncounted streams keep their count");
    }

    #[test]
    fn every_task_is_planned_once_and_paused_streams_take_no_node() {
        let streams = streams(&[("s1", 4, false), ("s2", 2, false), ("off", 4, true)]);
        let counts = BTreeMap::from([
            ("s1".to_string(), 4),
            ("s2".to_string(), 2),
            ("off".to_string(), 4),
        ]);
        let live = vec!["a".to_string(), "b".to_string()];
        let plan = plan(&streams, counts, &live, &BTreeMap::new(), config(10));
        let mut all: Vec<&AssignedTask> = plan.instances.values().flatten().collect();
        all.sort();
        assert_eq!(all.len(), 6);
        all.dedup();
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|t| t.stream != "off"));
        assert!(all
            .iter()
            .all(|t| t.count == if t.stream == "s1" { 4 } else { 2 }));
        assert!(plan.unassigned.is_empty());
    }

    #[test]
    fn a_node_that_left_is_emptied_and_its_tasks_wait_when_caps_are_full() {
        let streams = streams(&[("s1", 4, false)]);
        let counts = BTreeMap::from([("s1".to_string(), 4)]);
        let live = vec!["a".to_string(), "b".to_string()];
        let first = plan(&streams, counts.clone(), &live, &BTreeMap::new(), config(2));
        let known: BTreeMap<String, InstanceAssignment> =
            first.changes(&BTreeMap::new(), 1).into_iter().collect();
        let survivors = vec!["a".to_string()];
        let second = plan(&streams, counts, &survivors, &known, config(2));
        assert!(second.instances["b"].is_empty(), "the dead node is emptied");
        assert_eq!(second.instances["a"].len(), 2, "the survivor holds its cap");
        assert_eq!(second.unassigned.len(), 2, "the rest waits, visibly");
        // The survivor keeps what it had.
        assert_eq!(second.instances["a"], known["a"].tasks);
        let changes = second.changes(&known, 2);
        assert!(changes.contains_key("b") && !changes.contains_key("a"));
    }

    #[test]
    fn a_changed_task_count_replaces_the_stream_s_tasks() {
        let streams = streams(&[("s1", 4, false)]);
        let live = vec!["a".to_string()];
        let before = plan(
            &streams,
            BTreeMap::from([("s1".to_string(), 2)]),
            &live,
            &BTreeMap::new(),
            config(10),
        );
        let known = before.changes(&BTreeMap::new(), 1);
        let after = plan(
            &streams,
            BTreeMap::from([("s1".to_string(), 4)]),
            &live,
            &known,
            config(10),
        );
        assert_eq!(after.instances["a"].len(), 4);
        assert!(after.instances["a"].iter().all(|t| t.count == 4));
    }
}
