//! The datastream model and the pure logic of mirroring: configuration and its validation, offset
//! bookkeeping, topic selection and naming, partition placement and start positions. No I/O here, so all of
//! it is tested without servers.

pub mod client_properties;
pub mod config;
pub mod naming;
pub mod offsets;
pub mod placement;
pub mod start;
pub mod tenancy;
pub mod time;
pub mod topic_id;

/// A configuration that cannot be used; `key` names the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
