//! The audit log: one JSON line per mutating call (who, what, when, outcome).

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::{info, warn};

/// Where audit records go.
pub enum Audit {
    /// Appended to a file.
    File(Mutex<std::fs::File>),
    /// The log, under the target `audit`.
    Log,
}

/// One mutating call.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u128,
    pub who: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl Audit {
    /// Opens (appends to) `path`, or logs when there is none.
    pub fn open(path: Option<&str>) -> std::io::Result<Self> {
        match path {
            Some(path) => Ok(Audit::File(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ))),
            None => Ok(Audit::Log),
        }
    }

    pub fn record(&self, who: &str, method: &str, path: &str, status: u16, error: Option<&str>) {
        let record = AuditRecord {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            who,
            method,
            path,
            status,
            error,
        };
        match self {
            Audit::File(file) => {
                let mut line = serde_json::to_vec(&record).unwrap_or_default();
                line.push(b'\n');
                if let Err(error) = file.lock().expect("audit log").write_all(&line) {
                    warn!(%error, "cannot write the audit log");
                }
            }
            Audit::Log => info!(target: "audit", who, method, path, status, error, "api call"),
        }
    }
}
