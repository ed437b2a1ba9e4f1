//! A redis-server of the test's own, on a free port, so a test can stop it. Where no
//! `redis-server` binary exists the test prints why and returns — unless
//! `TOKENGATE_REQUIRE_REDIS=1` (set by CI, whose script installs it), where that fails it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::closed_port;

pub struct RedisServer {
    pub addr: SocketAddr,
    child: Child,
}

impl RedisServer {
    pub fn start() -> Option<RedisServer> {
        Self::start_on(closed_port())
    }

    pub fn start_on(addr: SocketAddr) -> Option<RedisServer> {
        let spawned = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string(), "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                if std::env::var("TOKENGATE_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                    panic!("redis-server is required (TOKENGATE_REQUIRE_REDIS=1) but cannot start: {error}");
                }
                eprintln!("SKIPPED: this test needs redis-server ({error}); scripts/test installs it");
                return None;
            }
        };
        let server = RedisServer { addr, child };
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
