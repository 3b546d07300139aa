//! Cluster membership and leader election through ZooKeeper.
//!
//! A [`Member`] registers its instance as an ephemeral sequential node under the cluster's live instances;
//! the lowest sequence is the leader, and every other member watches only its predecessor (no herd effect).
//! The member's [`Role`] is published on a watch channel. On a ZooKeeper disconnect the member reports
//! [`Role::Disconnected`] at once, so a leader that may have lost its session stops acting as leader; when
//! the session expires the member opens a new session, registers again and rejoins the election by itself.

pub mod events;
pub mod layout;
pub mod store;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use zookeeper_client as zk;

pub use events::NodeEvents;
pub use layout::Layout;

/// What a member is in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not (or no longer) known to be connected: act as neither leader nor follower.
    Disconnected,
    /// This member leads the cluster.
    Leader,
    /// Another member leads; `leader` is its instance name.
    Follower { leader: String },
}

/// A live ZooKeeper session in which this member is registered. Everything a node does in ZooKeeper (its
/// task ownership nodes, the leader's guarded writes) goes through the session it was registered in, so it
/// ends with that session.
#[derive(Clone, Debug)]
pub struct Session {
    pub client: zk::Client,
    /// This member's live-instance node.
    pub live_node: String,
    /// Counts the sessions of this member (1 for the first).
    pub number: u64,
    /// The session timeout the server granted (it may clamp the one asked for).
    pub timeout: Duration,
}

/// Settings of a member.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// ZooKeeper connect string, `host:port[,host:port...]`.
    pub zookeeper: String,
    /// Cluster name; everything lives under `/aqueduct/<cluster>`.
    pub cluster: String,
    /// This instance's name, unique in the cluster.
    pub instance: String,
    pub session_timeout: Duration,
}

/// Why a coordination step failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("zookeeper: {0}")]
    ZooKeeper(#[from] zk::Error),
    #[error("session ended: {0:?}")]
    SessionEnded(zk::SessionState),
    #[error("not the leader any more: the live-instance node of this session is gone")]
    NotLeader,
    #[error("unreadable document {0}")]
    Document(String),
}

/// A running member; dropping it (or [`Member::leave`]) closes its session, which removes its live-instance
/// node at once so the others do not wait for a session timeout.
pub struct Member {
    role: watch::Receiver<Role>,
    session: watch::Receiver<Option<zk::SessionInfo>>,
    current: watch::Receiver<Option<Session>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Member {
    /// Starts the member on the current tokio runtime.
    pub fn start(config: MemberConfig) -> Self {
        let (role_tx, role) = watch::channel(Role::Disconnected);
        let (session_tx, session) = watch::channel(None);
        let (current_tx, current) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let channels = Channels {
            role: role_tx,
            session_info: session_tx,
            current: current_tx,
        };
        let task = tokio::spawn(run(config, channels, stop_rx));
        Self {
            role,
            session,
            current,
            stop,
            task: Some(task),
        }
    }

    /// The member's current role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The current ZooKeeper session (for diagnostics, and for tests that force its expiry).
    pub fn session(&self) -> Option<zk::SessionInfo> {
        self.session.borrow().clone()
    }

    /// The session this member is registered in, while there is one.
    pub fn current(&self) -> Option<Session> {
        self.current.borrow().clone()
    }

    /// A receiver that sees every session change.
    pub fn watch_session(&self) -> watch::Receiver<Option<Session>> {
        self.current.clone()
    }

    /// A receiver that sees every role change.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Leaves the cluster: closes the session and waits for the member to stop.
    pub async fn leave(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Channels {
    role: watch::Sender<Role>,
    session_info: watch::Sender<Option<zk::SessionInfo>>,
    current: watch::Sender<Option<Session>>,
}

async fn run(config: MemberConfig, channels: Channels, mut stop: watch::Receiver<bool>) {
    let layout = Layout::new(&config.cluster);
    let role = &channels.role;
    let mut backoff = Duration::from_millis(200);
    let mut number = 0;
    while !*stop.borrow() {
        number += 1;
        let result = tokio::select! {
            result = session(&config, &layout, &channels, number) => result,
            _ = stop.changed() => break,
        };
        let _ = role.send(Role::Disconnected);
        let _ = channels.current.send(None);
        match result {
            Ok(()) => break,
            Err(error) => {
                warn!(instance = %config.instance, %error, "coordination session ended; rejoining");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let _ = role.send(Role::Disconnected);
    let _ = channels.current.send(None);
}

/// One ZooKeeper session: register, then follow the election until the session ends.
async fn session(
    config: &MemberConfig,
    layout: &Layout,
    channels: &Channels,
    number: u64,
) -> Result<(), CoordinationError> {
    let role = &channels.role;
    let client = zk::Client::connector()
        .with_session_timeout(config.session_timeout)
        .connect(&config.zookeeper)
        .await?;
    let _ = channels.session_info.send(Some(client.session().clone()));
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.mkdir(&layout.live_instances(), &persistent).await {
        Ok(()) | Err(zk::Error::NodeExists) => {}
        Err(error) => return Err(error.into()),
    }
    // The instance's assignment node exists (and is empty) before the instance is live, so the leader can
    // always write it.
    store::reset_instance(&client, layout, &config.instance).await?;
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, sequence) = client
        .create(
            &layout.live_instance_prefix(),
            config.instance.as_bytes(),
            &ephemeral,
        )
        .await?;
    let mine = sequence.into_i64() as u64;
    info!(instance = %config.instance, sequence = mine, "registered as a live instance");
    let _ = channels.current.send(Some(Session {
        client: client.clone(),
        live_node: format!("{}{:010}", layout.live_instance_prefix(), mine),
        number,
        timeout: client.session_timeout(),
    }));
    let mut state = client.state_watcher();
    loop {
        let children = client.list_children(&layout.live_instances()).await?;
        let order = layout::election_order(&children);
        let Some(position) = order.iter().position(|(s, _)| *s == mine) else {
            // Our node is gone while the session lives: register again in a new session.
            return Err(CoordinationError::SessionEnded(zk::SessionState::Expired));
        };
        let (predecessor_watch, leader_watch) = if position == 0 {
            if *role.borrow() != Role::Leader {
                info!(instance = %config.instance, "became leader");
            }
            // The leader watches its own node: should it vanish while the session lives, it stops leading.
            let own = format!("{}/{}", layout.live_instances(), order[0].1);
            let own_watch = match client.check_and_watch_stat(&own).await? {
                (Some(_), watcher) => watcher,
                (None, _) => continue,
            };
            let _ = role.send(Role::Leader);
            (Some(own_watch), None)
        } else {
            let leader_path = format!("{}/{}", layout.live_instances(), order[0].1);
            let leader = match client.get_data(&leader_path).await {
                Ok((data, _)) => String::from_utf8_lossy(&data).into_owned(),
                // The leader just left: look again.
                Err(zk::Error::NoNode) => continue,
                Err(error) => return Err(error.into()),
            };
            let _ = role.send(Role::Follower { leader });
            // The election needs only the predecessor; the leader is watched too so that every follower
            // learns who leads next (one read each when a leader goes, no competition).
            let predecessor = format!("{}/{}", layout.live_instances(), order[position - 1].1);
            let predecessor_watch = match client.check_and_watch_stat(&predecessor).await? {
                (Some(_), watcher) => watcher,
                (None, _) => continue,
            };
            let leader_watch = if position > 1 {
                match client.check_and_watch_stat(&leader_path).await? {
                    (Some(_), watcher) => Some(watcher),
                    (None, _) => continue,
                }
            } else {
                None
            };
            (Some(predecessor_watch), leader_watch)
        };
        // Wait for the predecessor to go, or for the session to change.
        let mut predecessor_gone = predecessor_watch.map(|watcher| Box::pin(watcher.changed()));
        let mut leader_gone = leader_watch.map(|watcher| Box::pin(watcher.changed()));
        loop {
            let gone = async {
                let predecessor = async {
                    match predecessor_gone.as_mut() {
                        Some(event) => {
                            event.await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let leader = async {
                    match leader_gone.as_mut() {
                        Some(event) => {
                            event.await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = predecessor => {}
                    _ = leader => {}
                }
            };
            tokio::select! {
                changed = state.changed() => match changed {
                    // Reconnected within the session: look at the election again.
                    zk::SessionState::SyncConnected => break,
                    zk::SessionState::Disconnected => {
                        let _ = role.send(Role::Disconnected);
                    }
                    other => return Err(CoordinationError::SessionEnded(other)),
                },
                _ = gone => break,
            }
        }
    }
}
