//! Change events under a ZooKeeper path, safe to wait on for as long as the caller likes.
//!
//! zookeeper-client's persistent watcher delivers one terminal session event (expired, closed, auth failed)
//! and then panics on the next wait. A node that lost its session would crash at its next loop turn;
//! [`NodeEvents`] remembers the end and never waits on the dead watcher again.

use zookeeper_client as zk;

/// What [`NodeEvents::changed`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Something under the watched path changed, or the connection dropped and came back (events may have
    /// been missed in between: read again).
    Changed,
    /// The session ended: no event will come any more.
    Ended(zk::SessionState),
}

/// A persistent (recursive) watch that outlives its session without panicking.
#[derive(Debug)]
pub struct NodeEvents {
    watcher: Option<zk::PersistentWatcher>,
}

impl NodeEvents {
    /// Watches every change under `path`, recursively.
    pub async fn recursive(client: &zk::Client, path: &str) -> Result<Self, zk::Error> {
        let watcher = client
            .watch(path, zk::AddWatchMode::PersistentRecursive)
            .await?;
        Ok(Self {
            watcher: Some(watcher),
        })
    }

    /// Whether the session behind the watch ended.
    pub fn is_ended(&self) -> bool {
        self.watcher.is_none()
    }

    /// Waits for the next change. Once the session ended this returns [`Change::Ended`] at once, forever.
    pub async fn changed(&mut self) -> Change {
        let Some(watcher) = self.watcher.as_mut() else {
            return Change::Ended(zk::SessionState::Expired);
        };
        let event = watcher.changed().await;
        if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
            self.watcher = None;
            return Change::Ended(event.session_state);
        }
        Change::Changed
    }
}
