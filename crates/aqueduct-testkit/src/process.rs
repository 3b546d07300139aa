//! Child processes that never outlive the test process.
//!
//! Every child is started from one long-lived spawner thread with `PR_SET_PDEATHSIG = SIGKILL`: the kernel
//! kills the child when that thread ends, which happens only when the whole test process exits (normally,
//! by panic or by a signal). Handles also kill their child on drop, so a failing test cleans up at once.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(spawn_with_death_signal(&mut command));
                }
                // The channel lives in a static and is never closed: park so the thread, and with it the
                // parent-death signal, lasts as long as the process.
                loop {
                    thread::park();
                }
            })
            .expect("spawn the testkit spawner thread");
        Mutex::new(tx)
    })
}

#[allow(unsafe_code)]
fn spawn_with_death_signal(command: &mut Command) -> io::Result<Child> {
    // SAFETY: prctl and setpgid are async-signal-safe and touch only the child being set up.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Own process group, so a signal meant for the test runner's group does not reach it twice.
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    command.spawn()
}

/// A child process that is killed when the handle drops.
#[derive(Debug)]
pub struct ManagedChild {
    name: String,
    child: Option<Child>,
}

impl ManagedChild {
    /// Starts `command`; it dies with the test process at the latest.
    pub fn spawn(name: &str, command: Command) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        spawner()
            .lock()
            .expect("spawner lock")
            .send((command, tx))
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        let child = rx
            .recv()
            .map_err(|_| io::Error::other("spawner thread is gone"))??;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let Some(pid) = self.pid() else {
            return Err(io::Error::other(format!("{} is not running", self.name)));
        };
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on a pid we own.
        let rc = unsafe { libc::kill(pid as i32, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status code when it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on a pid we own.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    // Bind to port 0 and let the kernel choose; keep the ports handed out in this process apart.
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        let mut handed = HANDED_OUT.lock().expect("port lock");
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}
