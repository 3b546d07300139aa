//! Where datastream definitions live: in ZooKeeper for a cluster, in a local directory (or memory) for a
//! standalone node. Every definition carries a version; writes may require the version they were based on,
//! so two concurrent updates cannot silently overwrite each other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use aqueduct_coordination::layout::Layout;
use aqueduct_coordination::Session;
use aqueduct_model::config::DatastreamConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use zookeeper_client as zk;

/// A definition and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned {
    pub version: i64,
    pub stream: DatastreamConfig,
}

/// Why a store operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("datastream `{0}` does not exist")]
    NotFound(String),
    #[error("datastream `{0}` already exists")]
    Exists(String),
    #[error("datastream `{name}` changed meanwhile (now at version {current})")]
    Conflict { name: String, current: i64 },
    #[error("the datastream store is unavailable: {0}")]
    Unavailable(String),
}

/// The datastream definitions of this node's cluster.
pub enum StreamStore {
    /// Cluster mode: `/aqueduct/<cluster>/datastreams/<name>`, through the member's current session.
    ZooKeeper {
        sessions: watch::Receiver<Option<Session>>,
        layout: Layout,
    },
    /// Standalone mode: one JSON file per stream in `dir` (kept in memory only without a directory).
    Local {
        dir: Option<PathBuf>,
        streams: Mutex<BTreeMap<String, Versioned>>,
        changed: Notify,
    },
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl StreamStore {
    /// A local store, loading what `dir` holds.
    pub fn local(dir: Option<PathBuf>) -> Result<Self, StoreError> {
        let mut streams = BTreeMap::new();
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
            for entry in std::fs::read_dir(dir).map_err(unavailable)? {
                let path = entry.map_err(unavailable)?.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let data = std::fs::read(&path).map_err(unavailable)?;
                    let versioned: Versioned = serde_json::from_slice(&data)
                        .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                    streams.insert(versioned.stream.name.clone(), versioned);
                }
            }
        }
        Ok(Self::Local {
            dir,
            streams: Mutex::new(streams),
            changed: Notify::new(),
        })
    }

    /// Whether a node file's datastream was seeded into this store before (standalone with a data
    /// directory: a marker file next to the definitions). Without a directory nothing is remembered.
    pub fn was_seeded(&self, name: &str) -> bool {
        match self {
            StreamStore::Local { dir: Some(dir), .. } => dir.join("seeded").join(name).exists(),
            _ => false,
        }
    }

    /// Remembers that a node file's datastream was seeded, so that once deleted it stays deleted.
    pub fn mark_seeded(&self, name: &str) -> Result<(), StoreError> {
        if let StreamStore::Local { dir: Some(dir), .. } = self {
            let seeded = dir.join("seeded");
            std::fs::create_dir_all(&seeded).map_err(unavailable)?;
            std::fs::write(seeded.join(name), b"").map_err(unavailable)?;
        }
        Ok(())
    }

    fn session(sessions: &watch::Receiver<Option<Session>>) -> Result<Session, StoreError> {
        sessions
            .borrow()
            .clone()
            .ok_or_else(|| unavailable("not connected to ZooKeeper"))
    }

    /// Every definition, by name.
    pub async fn list(&self) -> Result<BTreeMap<String, Versioned>, StoreError> {
        match self {
            StreamStore::ZooKeeper { sessions, layout } => {
                let session = Self::session(sessions)?;
                let client = &session.client;
                let names = match client.list_children(&layout.datastreams()).await {
                    Ok(names) => names,
                    Err(zk::Error::NoNode) => return Ok(BTreeMap::new()),
                    Err(error) => return Err(unavailable(error)),
                };
                let mut all = BTreeMap::new();
                for name in names {
                    match zk_get(client, layout, &name).await {
                        Ok(versioned) => {
                            all.insert(name, versioned);
                        }
                        Err(StoreError::NotFound(_)) => {}
                        Err(error) => return Err(error),
                    }
                }
                Ok(all)
            }
            StreamStore::Local { streams, .. } => Ok(streams.lock().expect("streams").clone()),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Versioned, StoreError> {
        match self {
            StreamStore::ZooKeeper { sessions, layout } => {
                zk_get(&Self::session(sessions)?.client, layout, name).await
            }
            StreamStore::Local { streams, .. } => streams
                .lock()
                .expect("streams")
                .get(name)
                .cloned()
                .ok_or_else(|| StoreError::NotFound(name.to_string())),
        }
    }

    /// Adds a definition; fails if the name is taken.
    pub async fn create(&self, stream: &DatastreamConfig) -> Result<Versioned, StoreError> {
        match self {
            StreamStore::ZooKeeper { sessions, layout } => {
                let session = Self::session(sessions)?;
                let client = &session.client;
                let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                match client.mkdir(&layout.datastreams(), &persistent).await {
                    Ok(()) | Err(zk::Error::NodeExists) => {}
                    Err(error) => return Err(unavailable(error)),
                }
                let data = serde_json::to_vec(stream).map_err(unavailable)?;
                match client
                    .create(&layout.datastream(&stream.name), &data, &persistent)
                    .await
                {
                    Ok((stat, _)) => Ok(Versioned {
                        version: i64::from(stat.version),
                        stream: stream.clone(),
                    }),
                    Err(zk::Error::NodeExists) => Err(StoreError::Exists(stream.name.clone())),
                    Err(error) => Err(unavailable(error)),
                }
            }
            StreamStore::Local {
                dir,
                streams,
                changed,
            } => {
                let mut all = streams.lock().expect("streams");
                if all.contains_key(&stream.name) {
                    return Err(StoreError::Exists(stream.name.clone()));
                }
                let versioned = Versioned {
                    version: 0,
                    stream: stream.clone(),
                };
                write_local(dir, &versioned)?;
                all.insert(stream.name.clone(), versioned.clone());
                changed.notify_waiters();
                Ok(versioned)
            }
        }
    }

    /// Replaces a definition; with `expected`, only if it is still at that version.
    pub async fn update(
        &self,
        stream: &DatastreamConfig,
        expected: Option<i64>,
    ) -> Result<Versioned, StoreError> {
        let name = &stream.name;
        match self {
            StreamStore::ZooKeeper { sessions, layout } => {
                let session = Self::session(sessions)?;
                let client = &session.client;
                let data = serde_json::to_vec(stream).map_err(unavailable)?;
                let expected = expected.map(|v| i32::try_from(v).unwrap_or(-2));
                match client
                    .set_data(&layout.datastream(name), &data, expected)
                    .await
                {
                    Ok(stat) => Ok(Versioned {
                        version: i64::from(stat.version),
                        stream: stream.clone(),
                    }),
                    Err(error) => Err(zk_write_error(client, layout, name, error).await),
                }
            }
            StreamStore::Local {
                dir,
                streams,
                changed,
            } => {
                let mut all = streams.lock().expect("streams");
                let current = local_version(&all, name, expected)?;
                let versioned = Versioned {
                    version: current + 1,
                    stream: stream.clone(),
                };
                write_local(dir, &versioned)?;
                all.insert(name.clone(), versioned.clone());
                changed.notify_waiters();
                Ok(versioned)
            }
        }
    }

    /// Removes a definition; with `expected`, only if it is still at that version.
    pub async fn delete(&self, name: &str, expected: Option<i64>) -> Result<(), StoreError> {
        match self {
            StreamStore::ZooKeeper { sessions, layout } => {
                let session = Self::session(sessions)?;
                let client = &session.client;
                let expected = expected.map(|v| i32::try_from(v).unwrap_or(-2));
                match client.delete(&layout.datastream(name), expected).await {
                    Ok(()) => Ok(()),
                    Err(error) => Err(zk_write_error(client, layout, name, error).await),
                }
            }
            StreamStore::Local {
                dir,
                streams,
                changed,
            } => {
                let mut all = streams.lock().expect("streams");
                local_version(&all, name, expected)?;
                if let Some(dir) = dir {
                    std::fs::remove_file(dir.join(format!("{name}.json"))).map_err(unavailable)?;
                }
                all.remove(name);
                changed.notify_waiters();
                Ok(())
            }
        }
    }

    /// Waits until a local definition changes (never returns for ZooKeeper: watch the node instead).
    pub async fn changed(&self) {
        match self {
            StreamStore::Local { changed, .. } => changed.notified().await,
            StreamStore::ZooKeeper { .. } => std::future::pending().await,
        }
    }
}

/// The version of a local definition, if `expected` (when given) is still it.
fn local_version(
    all: &BTreeMap<String, Versioned>,
    name: &str,
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    let current = all
        .get(name)
        .ok_or_else(|| StoreError::NotFound(name.to_string()))?
        .version;
    match expected {
        Some(e) if e != current => Err(StoreError::Conflict {
            name: name.to_string(),
            current,
        }),
        _ => Ok(current),
    }
}

/// What a failed versioned write of a definition means.
async fn zk_write_error(
    client: &zk::Client,
    layout: &Layout,
    name: &str,
    error: zk::Error,
) -> StoreError {
    match error {
        zk::Error::NoNode => StoreError::NotFound(name.to_string()),
        zk::Error::BadVersion => match zk_get(client, layout, name).await {
            Ok(current) => StoreError::Conflict {
                name: name.to_string(),
                current: current.version,
            },
            Err(error) => error,
        },
        error => unavailable(error),
    }
}

async fn zk_get(client: &zk::Client, layout: &Layout, name: &str) -> Result<Versioned, StoreError> {
    match client.get_data(&layout.datastream(name)).await {
        Ok((data, stat)) => Ok(Versioned {
            version: i64::from(stat.version),
            stream: serde_json::from_slice(&data)
                .map_err(|e| unavailable(format!("datastream `{name}`: {e}")))?,
        }),
        Err(zk::Error::NoNode) => Err(StoreError::NotFound(name.to_string())),
        Err(error) => Err(unavailable(error)),
    }
}

/// Writes a definition atomically (temporary file, then rename).
fn write_local(dir: &Option<PathBuf>, versioned: &Versioned) -> Result<(), StoreError> {
    let Some(dir) = dir else {
        return Ok(());
    };
    let path = dir.join(format!("{}.json", versioned.stream.name));
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(versioned).map_err(unavailable)?;
    std::fs::write(&tmp, data).map_err(unavailable)?;
    std::fs::rename(&tmp, &path).map_err(unavailable)
}
