//! Where a cluster keeps its state in ZooKeeper. Everything lives under `/aqueduct/<cluster>`:
//!
//! ```text
//! /aqueduct/<cluster>/liveinstances/i-<seq>      ephemeral sequential, data = instance name;
//!                                               the lowest sequence is the leader
//! /aqueduct/<cluster>/instances/<i>/assignment    the tasks the leader assigned to instance <i> (JSON)
//! /aqueduct/<cluster>/instances/<i>/status        the state of those tasks, written by <i> (JSON)
//! /aqueduct/<cluster>/assignment                  summary by the leader: generation, tasks per stream,
//!                                               unassigned tasks (JSON)
//! /aqueduct/<cluster>/datastreams/<name>          datastream definitions (JSON)
//! /aqueduct/<cluster>/owners/<stream>/t<count>-<index>
//!                                               ephemeral: the instance running task <index> of <count>
//! ```

/// Prefix of live-instance nodes; ZooKeeper appends a ten-digit sequence.
pub const LIVE_INSTANCE_PREFIX: &str = "i-";

/// Paths of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// The layout of cluster `cluster` (a name of `[A-Za-z0-9._-]`).
    pub fn new(cluster: &str) -> Self {
        Self {
            root: format!("/aqueduct/{cluster}"),
        }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// Parent of the live-instance nodes.
    pub fn live_instances(&self) -> String {
        format!("{}/liveinstances", self.root)
    }

    /// Path to create a live-instance node with (sequential).
    pub fn live_instance_prefix(&self) -> String {
        format!("{}/liveinstances/{LIVE_INSTANCE_PREFIX}", self.root)
    }

    /// State of one instance.
    pub fn instance(&self, name: &str) -> String {
        format!("{}/instances/{name}", self.root)
    }

    /// Parent of the per-instance nodes.
    pub fn instances(&self) -> String {
        format!("{}/instances", self.root)
    }

    /// The tasks assigned to an instance.
    pub fn instance_assignment(&self, name: &str) -> String {
        format!("{}/instances/{name}/assignment", self.root)
    }

    /// The state of an instance's tasks, as it reports them.
    pub fn instance_status(&self, name: &str) -> String {
        format!("{}/instances/{name}/status", self.root)
    }

    /// The leader's summary of the whole assignment.
    pub fn assignment(&self) -> String {
        format!("{}/assignment", self.root)
    }

    /// Datastream definitions.
    pub fn datastreams(&self) -> String {
        format!("{}/datastreams", self.root)
    }

    /// One datastream definition.
    pub fn datastream(&self, name: &str) -> String {
        format!("{}/datastreams/{name}", self.root)
    }

    /// Parent of the markers of datastreams seeded from a node file.
    pub fn seeded(&self) -> String {
        format!("{}/seeded", self.root)
    }

    /// Marker of a datastream seeded from a node file: once there, the file never seeds it again (a stream
    /// deleted through the API stays deleted).
    pub fn seeded_datastream(&self, name: &str) -> String {
        format!("{}/seeded/{name}", self.root)
    }

    /// Parent of the ownership nodes of a stream's tasks.
    pub fn owners(&self, stream: &str) -> String {
        format!("{}/owners/{stream}", self.root)
    }

    /// Ownership node of task `index` of `count`.
    pub fn owner(&self, stream: &str, index: u32, count: u32) -> String {
        format!("{}/owners/{stream}/{}", self.root, owner_node(index, count))
    }
}

/// Name of the ownership node of task `index` of `count`.
pub fn owner_node(index: u32, count: u32) -> String {
    format!("t{count}-{index}")
}

/// The task count and index of an ownership node name (`t4-2` is task 2 of 4).
pub fn parse_owner_node(name: &str) -> Option<(u32, u32)> {
    let (count, index) = name.strip_prefix('t')?.split_once('-')?;
    Some((count.parse().ok()?, index.parse().ok()?))
}

/// The sequence number of a live-instance node name (`i-0000000042` is 42).
pub fn sequence_of(child: &str) -> Option<u64> {
    child.strip_prefix(LIVE_INSTANCE_PREFIX)?.parse().ok()
}

/// Live-instance children in election order (lowest sequence first); foreign names are left out.
pub fn election_order(children: &[String]) -> Vec<(u64, String)> {
    let mut ordered: Vec<(u64, String)> = children
        .iter()
        .filter_map(|c| sequence_of(c).map(|s| (s, c.clone())))
        .collect();
    ordered.sort();
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_live_under_the_cluster_root() {
        let layout = Layout::new("prod");
        assert_eq!(layout.live_instances(), "/aqueduct/prod/liveinstances");
        assert_eq!(
            layout.live_instance_prefix(),
            "/aqueduct/prod/liveinstances/i-"
        );
        assert_eq!(layout.instance("node-1"), "/aqueduct/prod/instances/node-1");
        assert_eq!(layout.datastreams(), "/aqueduct/prod/datastreams");
    }

    #[test]
    fn owner_nodes_name_the_task_and_its_count() {
        let layout = Layout::new("prod");
        assert_eq!(
            layout.owner("orders", 2, 4),
            "/aqueduct/prod/owners/orders/t4-2"
        );
        assert_eq!(parse_owner_node("t4-2"), Some((4, 2)));
        assert_eq!(parse_owner_node(&owner_node(7, 12)), Some((12, 7)));
        assert_eq!(parse_owner_node("x4-2"), None);
        assert_eq!(parse_owner_node("t4"), None);
    }

    #[test]
    fn election_order_is_by_sequence() {
        let children = vec![
            "i-0000000012".to_string(),
            "junk".to_string(),
            "i-0000000003".to_string(),
            "i-0000000100".to_string(),
        ];
        let order: Vec<u64> = election_order(&children).iter().map(|(s, _)| *s).collect();
        assert_eq!(order, vec![3, 12, 100]);
    }
}
