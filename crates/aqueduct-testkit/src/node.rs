//! The `aqueduct` binary as a child process, for crash and outage tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::process::ManagedChild;

/// Path of the `aqueduct` binary of the current build profile, built first if needed (once per process).
pub fn aqueduct_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> Result<PathBuf> {
    // Test and bench executables live in target/<profile>/deps, binaries in target/<profile>.
    let exe = std::env::current_exe()?;
    let mut profile_dir = exe.parent().context("locate the target directory")?;
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir
            .parent()
            .context("locate the target directory")?;
    }
    let profile_dir = profile_dir.to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "-p", "aqueduct"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    if release {
        command.arg("--release");
    }
    let status = command.status().context("run cargo build -p aqueduct")?;
    if !status.success() {
        bail!("cargo build -p aqueduct failed: {status}");
    }
    let binary = profile_dir.join("aqueduct");
    if !binary.exists() {
        bail!("{} is missing after the build", binary.display());
    }
    Ok(binary)
}

/// An `aqueduct server` process with its config file and log in a temporary directory.
pub struct AqueductNode {
    dir: tempfile::TempDir,
    process: Option<ManagedChild>,
}

impl AqueductNode {
    /// Writes `config` (TOML) and starts `aqueduct server` with it.
    pub fn start(config: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("aqueduct-node-")
            .tempdir()?;
        std::fs::write(dir.path().join("aqueduct.toml"), config)?;
        let mut node = Self { dir, process: None };
        node.launch()?;
        Ok(node)
    }

    fn launch(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(aqueduct_binary()?);
        command
            .arg("server")
            .arg("--config")
            .arg(self.dir.path().join("aqueduct.toml"))
            .env("AQUEDUCT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.process = Some(ManagedChild::spawn("aqueduct", command)?);
        Ok(())
    }

    /// The directory holding the config, the log and any status file the config points into it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("aqueduct.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ManagedChild::pid)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ManagedChild::is_running)
    }

    /// SIGKILL: no shutdown, no final commit.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// SIGSTOP: the process freezes (its ZooKeeper session expires if it stays frozen long enough).
    pub fn freeze(&self) {
        if let Some(process) = &self.process {
            let _ = process.signal(libc::SIGSTOP);
        }
    }

    /// SIGCONT after [`AqueductNode::freeze`].
    pub fn thaw(&self) {
        if let Some(process) = &self.process {
            let _ = process.signal(libc::SIGCONT);
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.process
            .take()
            .and_then(|mut p| p.terminate(std::time::Duration::from_secs(60)))
    }

    /// Starts the process again with the same config.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    /// Resident memory of the process in bytes (from /proc).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
