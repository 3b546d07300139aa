//! Assignment of datastream tasks to the live nodes of an Aqueduct cluster. Pure logic: the leader feeds it
//! the previous assignment, the live nodes and the streams, and writes what it returns.
//!
//! The rules, in order of precedence:
//! 1. **Caps**: a node never holds more than `max_tasks_per_instance` tasks, and never more than a stream's own
//!    `max_tasks_per_instance` tasks of that stream. Tasks that fit nowhere stay in
//!    [`Assignment::unassigned`], visible, and are placed as soon as capacity returns. They are never piled
//!    onto the survivors of a partial shutdown.
//! 2. **Stickiness**: a task stays on its node while that node lives and the caps allow it. A node leaving
//!    moves only its own tasks.
//! 3. **Balance**: tasks move from the most to the least loaded node, one at a time, only while the spread of
//!    tasks per node exceeds `imbalance_threshold`; a joining node takes load until the spread is within it.
//!
//! Paused streams have no tasks in the assignment: they keep their offsets but occupy no node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// A node of the cluster, by its instance name.
pub type NodeId = String;

/// One unit of a datastream's work.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    pub stream: String,
    pub index: u32,
}

impl TaskId {
    pub fn new(stream: &str, index: u32) -> Self {
        Self {
            stream: stream.to_string(),
            index,
        }
    }
}

/// What a datastream asks of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDemand {
    pub name: String,
    /// Number of tasks (see [`task_count`]).
    pub tasks: u32,
    /// At most this many of the stream's tasks on one node, if set.
    pub max_tasks_per_instance: Option<u32>,
    /// Paused streams occupy no node.
    pub paused: bool,
}

/// Cluster-wide settings of the balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalancerConfig {
    /// No node holds more tasks than this.
    pub max_tasks_per_instance: u32,
    /// Tasks move only while (most loaded node) - (least loaded node) exceeds this. At least 1.
    pub imbalance_threshold: u32,
}

/// Which node runs which task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Every live node, with its tasks (possibly none).
    pub nodes: BTreeMap<NodeId, BTreeSet<TaskId>>,
    /// Tasks no node can take within the caps.
    pub unassigned: BTreeSet<TaskId>,
}

impl Assignment {
    /// The node running `task`, if any.
    pub fn node_of(&self, task: &TaskId) -> Option<&NodeId> {
        self.nodes
            .iter()
            .find(|(_, tasks)| tasks.contains(task))
            .map(|(node, _)| node)
    }

    /// Number of tasks placed on nodes.
    pub fn assigned(&self) -> usize {
        self.nodes.values().map(BTreeSet::len).sum()
    }

    /// (Most loaded) - (least loaded) node, in tasks; 0 without nodes.
    pub fn spread(&self) -> usize {
        let loads = self.nodes.values().map(BTreeSet::len);
        match (loads.clone().max(), loads.min()) {
            (Some(max), Some(min)) => max - min,
            _ => 0,
        }
    }
}

/// Tasks of a stream with `partitions` source partitions and a `max_tasks` bound: one per partition up to the
/// bound, and at least one so a stream whose topics do not exist yet still runs discovery.
pub fn task_count(partitions: u32, max_tasks: u32) -> u32 {
    partitions.min(max_tasks).max(1)
}

/// Tasks that run on a different node (or on none) in `after` than in `before`, counting only tasks that
/// ran somewhere before.
pub fn moved_tasks(before: &Assignment, after: &Assignment) -> usize {
    let mut placement: HashMap<&TaskId, &NodeId> = HashMap::new();
    for (node, tasks) in &after.nodes {
        for task in tasks {
            placement.insert(task, node);
        }
    }
    before
        .nodes
        .iter()
        .flat_map(|(node, tasks)| tasks.iter().map(move |t| (node, t)))
        .filter(|(node, task)| placement.get(task) != Some(node))
        .count()
}

/// Working state: nodes and streams by index.
struct Placement {
    cap: u32,
    stream_caps: Vec<u32>,
    /// Tasks per node as (stream index, task index).
    tasks: Vec<BTreeSet<(u32, u32)>>,
    /// Tasks of each stream on each node.
    per_stream: Vec<HashMap<u32, u32>>,
    /// (load, node) ordered, for the least and most loaded node.
    by_load: BTreeSet<(u32, u32)>,
}

impl Placement {
    fn load(&self, node: u32) -> u32 {
        self.tasks[node as usize].len() as u32
    }

    fn fits(&self, node: u32, stream: u32) -> bool {
        self.load(node) < self.cap
            && self.per_stream[node as usize]
                .get(&stream)
                .copied()
                .unwrap_or(0)
                < self.stream_caps[stream as usize]
    }

    fn add(&mut self, node: u32, task: (u32, u32)) {
        let load = self.load(node);
        self.by_load.remove(&(load, node));
        self.tasks[node as usize].insert(task);
        *self.per_stream[node as usize].entry(task.0).or_insert(0) += 1;
        self.by_load.insert((load + 1, node));
    }

    fn remove(&mut self, node: u32, task: (u32, u32)) {
        let load = self.load(node);
        self.by_load.remove(&(load, node));
        self.tasks[node as usize].remove(&task);
        if let Some(count) = self.per_stream[node as usize].get_mut(&task.0) {
            *count -= 1;
        }
        self.by_load.insert((load - 1, node));
    }

    /// The least loaded node that can take a task of `stream`.
    fn least_loaded_fitting(&self, stream: u32) -> Option<u32> {
        self.by_load
            .iter()
            .take_while(|(load, _)| *load < self.cap)
            .find(|(_, node)| self.fits(*node, stream))
            .map(|(_, node)| *node)
    }
}

/// Moves one task at a time from the most to the least loaded node while the spread exceeds `threshold`. A
/// node that received a task never gives one away in the same round, so no task moves twice.
fn balance(placement: &mut Placement, threshold: u32) -> usize {
    let mut received: BTreeSet<u32> = BTreeSet::new();
    let mut moves = 0;
    loop {
        let (Some(&(min_load, min_node)), Some(&(max_load, max_node))) =
            (placement.by_load.first(), placement.by_load.last())
        else {
            return moves;
        };
        if max_load - min_load <= threshold || received.contains(&max_node) {
            return moves;
        }
        let movable = placement.tasks[max_node as usize]
            .iter()
            .rev()
            .copied()
            .find(|(s, _)| placement.fits(min_node, *s));
        let Some(task) = movable else {
            return moves;
        };
        placement.remove(max_node, task);
        placement.add(min_node, task);
        received.insert(min_node);
        moves += 1;
    }
}

/// Computes the next assignment from the `previous` one.
pub fn rebalance(
    previous: &Assignment,
    live_nodes: &[NodeId],
    streams: &[StreamDemand],
    config: BalancerConfig,
) -> Assignment {
    let nodes: Vec<&NodeId> = live_nodes
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let node_index: HashMap<&NodeId, u32> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u32))
        .collect();
    let mut ordered: Vec<&StreamDemand> = streams.iter().collect();
    ordered.sort_by(|a, b| a.name.cmp(&b.name));
    ordered.dedup_by(|a, b| a.name == b.name);
    let stream_index: HashMap<&str, u32> = ordered
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i as u32))
        .collect();
    let wanted = |stream: u32, index: u32| {
        let demand = ordered[stream as usize];
        !demand.paused && index < demand.tasks
    };

    let mut placement = Placement {
        cap: config.max_tasks_per_instance,
        stream_caps: ordered
            .iter()
            .map(|s| s.max_tasks_per_instance.unwrap_or(u32::MAX))
            .collect(),
        tasks: vec![BTreeSet::new(); nodes.len()],
        per_stream: vec![HashMap::new(); nodes.len()],
        by_load: (0..nodes.len() as u32).map(|n| (0, n)).collect(),
    };
    let mut placed: BTreeSet<(u32, u32)> = BTreeSet::new();

    // 1. Stickiness: keep every wanted task where it runs, within the caps (lowest task ids first).
    for (node, tasks) in &previous.nodes {
        let Some(&n) = node_index.get(node) else {
            continue;
        };
        for task in tasks {
            let Some(&s) = stream_index.get(task.stream.as_str()) else {
                continue;
            };
            let key = (s, task.index);
            if wanted(s, task.index) && !placed.contains(&key) && placement.fits(n, s) {
                placement.add(n, key);
                placed.insert(key);
            }
        }
    }

    // 2. Everything else goes to the least loaded node with room, or stays unassigned.
    let mut pending: Vec<(u32, u32)> = Vec::new();
    for (s, demand) in ordered.iter().enumerate() {
        if demand.paused {
            continue;
        }
        pending.extend(
            (0..demand.tasks)
                .map(|index| (s as u32, index))
                .filter(|key| !placed.contains(key)),
        );
    }
    let threshold = config.imbalance_threshold.max(1);
    let place = |placement: &mut Placement, pending: &mut Vec<(u32, u32)>| {
        pending.retain(|&(s, index)| match placement.least_loaded_fitting(s) {
            Some(n) => {
                placement.add(n, (s, index));
                false
            }
            None => true,
        });
    };
    // Balancing can make room for a task a per-stream cap kept out, so placing and balancing alternate
    // until balancing has nothing left to move; a last placement pass follows the last move.
    for _ in 0..nodes.len() + 2 {
        place(&mut placement, &mut pending);
        if balance(&mut placement, threshold) == 0 {
            break;
        }
    }
    place(&mut placement, &mut pending);

    let name = |(s, index): (u32, u32)| TaskId::new(&ordered[s as usize].name, index);
    Assignment {
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                (
                    (*node).clone(),
                    placement.tasks[n].iter().copied().map(name).collect(),
                )
            })
            .collect(),
        unassigned: pending.into_iter().map(name).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams(n: usize, tasks: u32) -> Vec<StreamDemand> {
        (0..n)
            .map(|i| StreamDemand {
                name: format!("s{i:02}"),
                tasks,
                max_tasks_per_instance: None,
                paused: false,
            })
            .collect()
    }

    fn nodes(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| n.to_string()).collect()
    }

    const CONFIG: BalancerConfig = BalancerConfig {
        max_tasks_per_instance: 10,
        imbalance_threshold: 1,
    };

    #[test]
    fn tasks_spread_evenly_from_scratch() {
        let a = rebalance(
            &Assignment::default(),
            &nodes(&["a", "b", "c"]),
            &streams(3, 3),
            CONFIG,
        );
        assert_eq!(a.assigned(), 9);
        assert!(a.nodes.values().all(|t| t.len() == 3));
        assert!(a.unassigned.is_empty());
    }

    #[test]
    fn a_partial_shutdown_leaves_excess_unassigned_instead_of_piling_it_up() {
        let all = rebalance(
            &Assignment::default(),
            &nodes(&["a", "b", "c"]),
            &streams(3, 8),
            CONFIG,
        );
        assert_eq!(all.assigned(), 24);
        let survivor = rebalance(&all, &nodes(&["a"]), &streams(3, 8), CONFIG);
        assert_eq!(survivor.nodes["a"].len(), 10, "exactly its cap");
        assert_eq!(survivor.unassigned.len(), 14);
        assert!(
            all.nodes["a"].is_subset(&survivor.nodes["a"]),
            "its own tasks stay"
        );
        let back = rebalance(&survivor, &nodes(&["a", "b", "c"]), &streams(3, 8), CONFIG);
        assert_eq!(back.assigned(), 24);
        assert!(back.unassigned.is_empty());
    }

    #[test]
    fn per_stream_caps_hold() {
        let mut demand = streams(1, 6);
        demand[0].max_tasks_per_instance = Some(2);
        let a = rebalance(&Assignment::default(), &nodes(&["a", "b"]), &demand, CONFIG);
        assert_eq!(a.assigned(), 4);
        assert_eq!(a.unassigned.len(), 2);
        assert!(a.nodes.values().all(|t| t.len() == 2));
    }

    #[test]
    fn paused_streams_occupy_no_node() {
        let mut demand = streams(2, 4);
        demand[1].paused = true;
        let a = rebalance(&Assignment::default(), &nodes(&["a", "b"]), &demand, CONFIG);
        assert_eq!(a.assigned(), 4);
        assert!(a.unassigned.is_empty());
        assert!(a.nodes.values().flatten().all(|t| t.stream == "s00"));
    }

    #[test]
    fn task_count_follows_partitions_up_to_the_bound() {
        assert_eq!(task_count(0, 4), 1);
        assert_eq!(task_count(3, 4), 3);
        assert_eq!(task_count(64, 4), 4);
    }
}
