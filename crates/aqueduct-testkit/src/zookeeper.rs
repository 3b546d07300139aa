//! A real ZooKeeper server (Debian's `zookeeper` package) as a local process.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::process::{free_port, wait_for_port, ManagedChild};

const ZK_SERVER: &str = "/usr/share/zookeeper/bin/zkServer.sh";

/// One standalone ZooKeeper server on 127.0.0.1 with a random port. Killed on drop.
#[derive(Debug)]
pub struct ZooKeeper {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<ManagedChild>,
}

impl ZooKeeper {
    /// Starts a standalone server; installs nothing (run `tools/install-deps.sh` first).
    pub fn start() -> Result<Self> {
        let mut zk = Self::prepare(free_port(), "", None)?;
        zk.launch()?;
        Ok(zk)
    }

    /// Writes the server's directory and config; `quorum` holds the `server.N=` lines of an ensemble.
    fn prepare(port: u16, quorum: &str, id: Option<usize>) -> Result<Self> {
        if !std::path::Path::new(ZK_SERVER).exists() {
            bail!(
                "{ZK_SERVER} is missing: run tools/install-deps.sh (apt-get install -y zookeeper)"
            );
        }
        let dir = tempfile::Builder::new().prefix("aqueduct-zk-").tempdir()?;
        let data = dir.path().join("data");
        fs::create_dir_all(&data)?;
        if let Some(id) = id {
            fs::write(data.join("myid"), id.to_string())?;
        }
        fs::write(
            dir.path().join("zoo.cfg"),
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
                 minSessionTimeout=1000\n4lw.commands.whitelist=ruok,srvr,stat\n{quorum}",
                data.display()
            ),
        )?;
        Ok(Self {
            port,
            dir,
            process: None,
        })
    }

    fn launch(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_serving()
    }

    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(ZK_SERVER);
        command
            .arg("start-foreground")
            .arg(self.dir.path().join("zoo.cfg"))
            .env("ZOO_LOG_DIR", self.dir.path())
            .env("JVMFLAGS", "-Xmx256m")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.process = Some(ManagedChild::spawn("zookeeper", command)?);
        Ok(())
    }

    /// Waits until the server answers with a mode (standalone, leader or follower).
    fn wait_serving(&self) -> Result<()> {
        if !wait_for_port(self.port, Duration::from_secs(30)) {
            bail!("zookeeper did not open port {}", self.port);
        }
        // The port opens before the server serves: wait until it reports a mode.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if self
                .four_letter("srvr")
                .is_ok_and(|answer| answer.contains("Mode:"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("zookeeper on port {} never started serving", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("zookeeper.out")
    }

    /// Pid of the server process while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ManagedChild::pid)
    }

    /// Sends a four-letter command (`ruok`, `srvr`, `stat`) and returns the answer.
    pub fn four_letter(&self, command: &str) -> Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(command.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// Stops the server, keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate(Duration::from_secs(10));
        }
    }

    /// Starts a stopped server again on the same port with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    /// The server's mode (`standalone`, `leader`, `follower`), if it answers.
    pub fn mode(&self) -> Option<String> {
        let answer = self.four_letter("srvr").ok()?;
        let line = answer.lines().find(|l| l.starts_with("Mode:"))?;
        Some(line.trim_start_matches("Mode:").trim().to_string())
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ManagedChild::is_running)
    }
}

/// A ZooKeeper ensemble of local servers.
pub struct ZooKeeperEnsemble {
    pub servers: Vec<ZooKeeper>,
}

impl ZooKeeperEnsemble {
    /// Starts `size` servers forming one ensemble and waits until all serve.
    pub fn start(size: usize) -> Result<Self> {
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let quorum: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer, election))| {
                format!("server.{}=127.0.0.1:{peer}:{election}\n", i + 1)
            })
            .collect();
        let mut servers = Vec::new();
        for (i, (client, _, _)) in ports.iter().enumerate() {
            servers.push(ZooKeeper::prepare(*client, &quorum, Some(i + 1))?);
        }
        for server in &mut servers {
            server.spawn()?;
        }
        for server in &servers {
            server.wait_serving()?;
        }
        Ok(Self { servers })
    }

    /// All servers, comma-separated.
    pub fn connect_string(&self) -> String {
        self.servers
            .iter()
            .map(ZooKeeper::connect_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Index of the server that leads the ensemble now.
    pub fn leader(&self) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.mode().as_deref() == Some("leader"))
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}
