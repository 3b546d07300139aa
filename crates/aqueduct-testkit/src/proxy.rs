//! A TCP proxy a test controls, to cut the network between a client and a server without touching either.
//!
//! While the proxy is cut no byte passes in either direction, and new connections are accepted but carry
//! nothing: a black hole, as when a link or a firewall drops packets (no reset reaches either side, so the
//! clients find out only through their own timeouts). Restoring lets the held bytes through again.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// Forwards every connection to 127.0.0.1:`port` to a target address. Stops forwarding when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1:`port` and forwards to `target` (`host:port`).
    pub fn start(port: u16, target: &str) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("proxy listen on port {port}"))?;
        listener.set_nonblocking(true)?;
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_cut, accept_stop, target) =
            (Arc::clone(&cut), Arc::clone(&stop), target.to_string());
        std::thread::spawn(move || {
            while !accept_stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        // A connection the server refuses is closed at once, as a real one would be.
                        let Ok(server) = TcpStream::connect(&target) else {
                            continue;
                        };
                        let _ = client.set_nonblocking(false);
                        for (from, to) in [(&client, &server), (&server, &client)] {
                            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                                continue;
                            };
                            let (cut, stop) = (Arc::clone(&accept_cut), Arc::clone(&accept_stop));
                            std::thread::spawn(move || pump(from, to, &cut, &stop));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self { port, cut, stop })
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops every byte in both directions, on open and new connections.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }

    /// Lets bytes through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Copies `from` to `to` until either side closes or the proxy stops, holding bytes while the proxy is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if stop.load(Ordering::Acquire) {
            break;
        }
        if cut.load(Ordering::Acquire) {
            // Not even reading: the sender's socket buffers fill and nothing is acknowledged upstream.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        // Bytes read just before a cut wait for the restore.
        while cut.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_holds_while_cut_and_resumes() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap().to_string();
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = server.accept().unwrap();
            let mut buffer = [0u8; 5];
            for _ in 0..2 {
                stream.read_exact(&mut buffer).unwrap();
                stream.write_all(&buffer).unwrap();
            }
        });
        let proxy = TcpProxy::start(crate::free_port(), &target).unwrap();
        let mut client = TcpStream::connect(proxy.address()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut reply = [0u8; 5];
        client.write_all(b"hello").unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"hello");

        proxy.cut();
        client.write_all(b"again").unwrap();
        let err = client.read_exact(&mut reply).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "nothing passes while cut: {err}"
        );
        proxy.restore();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"again");
        echo.join().unwrap();
    }
}
