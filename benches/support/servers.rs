//! The processes `proxy_load` measures: the echo upstream (a child of the bench), nginx as a
//! plain reverse proxy and `tokengate serve`, each killed when dropped; where they run (pinning
//! with `taskset`); and a single request to check each before it is measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::load::Workload;
use crate::serve::{spawn_serve, wait_until_listening};

/// Set in the environment of the child that serves as the echo upstream.
const ECHO_CHILD: &str = "PROXY_LOAD_ECHO_CHILD";

/// A child process, killed and reaped when dropped (also while a panic unwinds).
pub(crate) struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        } else {
            eprintln!("proxy_load: {} had already exited", self.name);
        }
        let _ = self.child.wait();
    }
}

/// A process listening on `addr`.
pub(crate) struct Server {
    pub(crate) process: Process,
    pub(crate) addr: SocketAddr,
}

// ---------------------------------------------------------------------------------------------
// CPU placement
// ---------------------------------------------------------------------------------------------

/// Where the processes run: with `taskset`, the proxy under test on the last CPU, this bench
/// (and so the echo upstream and wrk, which inherit its affinity) on the others.
pub(crate) struct Pinning {
    proxy_cpu: Option<usize>,
    others: String,
}

impl Pinning {
    /// Pins this process (call it before any other thread exists: threads and children inherit
    /// the mask) unless there is one CPU, no `taskset`, or `PROXY_LOAD_NO_PIN` is set.
    pub(crate) fn decide() -> Pinning {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let off = Pinning { proxy_cpu: None, others: String::new() };
        if cpus < 2 || std::env::var_os("PROXY_LOAD_NO_PIN").is_some() || find_on_path("taskset").is_none() {
            return off;
        }
        let proxy_cpu = cpus - 1;
        let others = if proxy_cpu == 1 { "0".to_owned() } else { format!("0-{}", proxy_cpu - 1) };
        let pinned = Command::new("taskset")
            .args(["-a", "-p", "-c", &others, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if pinned { Pinning { proxy_cpu: Some(proxy_cpu), others } } else { off }
    }

    /// A command that runs `program` on the proxy's CPU (or anywhere, unpinned). `taskset`
    /// execs the program, so the child's pid is the program's.
    fn command(&self, program: &Path) -> Command {
        match self.proxy_cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpu.to_string()).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self.proxy_cpu {
            Some(cpu) => {
                format!("proxy under test pinned to CPU {cpu}; load generator and echo upstream on CPU {}", self.others)
            }
            None => "not pinned (no taskset, one CPU, or PROXY_LOAD_NO_PIN): the figures are noisier".to_owned(),
        }
    }
}

pub(crate) fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// The echo upstream
// ---------------------------------------------------------------------------------------------

/// When this process is the echo upstream's child: serves it on 127.0.0.1:0, prints the
/// address, and exits when stdin closes (when the bench drops its end, or dies). Returns
/// false in the bench itself.
pub(crate) fn run_echo_child_if_asked() -> bool {
    if std::env::var_os(ECHO_CHILD).is_none() {
        return false;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        let stdin_closed = async {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut Vec::new()).await;
        };
        crate::echo::serve(listener, stdin_closed).await;
    });
    std::process::exit(0);
}

/// The echo upstream, a child process of this bench (on the bench's CPUs).
pub(crate) fn start_echo() -> Server {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(ECHO_CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut process = Process { name: "echo upstream", child };
    let stderr = BufReader::new(process.child.stderr.take().unwrap());
    std::thread::spawn(move || {
        // A load generator that stops mid-request leaves one of these on each of its connections
        // (a request it did not finish sending, a response it did not finish reading); what the
        // clients saw of the run is in their error count.
        let noise = ["closed before message completed", "error writing a body to connection"];
        for line in stderr.lines().map_while(Result::ok).filter(|l| !noise.iter().any(|n| l.ends_with(n))) {
            eprintln!("{line}");
        }
    });
    let mut line = String::new();
    BufReader::new(process.child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().parse().unwrap_or_else(|_| panic!("the echo upstream printed {line:?}"));
    Server { process, addr }
}

// ---------------------------------------------------------------------------------------------
// tokengate
// ---------------------------------------------------------------------------------------------

/// `binary --config config serve` on the proxy's CPU, with `env` added (configuration overrides);
/// returns once it logged its proxy address.
pub(crate) fn start_tokengate(
    name: &'static str,
    binary: &Path,
    config: &Path,
    pinning: &Pinning,
    env: &[(&str, &str)],
) -> Server {
    let mut command = pinning.command(binary);
    command.envs(env.iter().copied());
    let (child, mut lines) = spawn_serve(command, config);
    // Owned from here on, so a failure below still kills and reaps the child (see Drop).
    let process = Process { name, child };
    let addr = wait_until_listening(&mut lines, |line| eprintln!("{name}: {line}"))
        .unwrap_or_else(|| panic!("{name} exited before listening"));
    // Keep reading, so warnings are seen and a full pipe never stalls the gateway; access
    // records (one per request) are read and dropped, not echoed.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if !line.contains("\"tokengate::access\"") {
                eprintln!("{name}: {line}");
            }
        }
    });
    Server { process, addr }
}

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

/// Debian's `/usr/sbin/nginx`, or `nginx` on PATH.
pub(crate) fn nginx_binary() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.is_file() { Some(debian) } else { find_on_path("nginx") }
}

/// nginx as a plain reverse proxy on the proxy's CPU: one process (no master), keep-alive
/// connections upstream, no access log, everything it writes in `dir`. Otherwise nginx's
/// defaults: it reads a request body whole before passing it on, and buffers responses
/// (`proxy_buffering on`, 8 buffers of one page each, then a temporary file, which it logs at
/// `warn`: such a line on stderr means the run measured disk writes too).
pub(crate) fn start_nginx(binary: &Path, dir: &Path, echo: SocketAddr, pinning: &Pinning) -> Server {
    let addr = free_port();
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    let p = prefix.display();
    let config = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid {p}/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    # Not the default 1000: tokengate does not close a busy keep-alive connection either.
    keepalive_requests 1000000;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    upstream echo {{
        server {echo};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    );
    let config_path = prefix.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = pinning
        .command(binary)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg("stderr")
        .arg("-c")
        .arg(&config_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut process = Process { name: "nginx", child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("nginx exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "nginx did not listen on {addr} within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { process, addr }
}

/// A port nobody listens on now (nginx binds it itself a moment later).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------
// One request
// ---------------------------------------------------------------------------------------------

/// What one request answered: its status and body.
pub(crate) struct Probe {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// One request of `workload` on a new connection (closed after it), so nothing in its answer
/// depends on an earlier one.
pub(crate) fn probe(addr: SocketAddr, workload: &Workload, authorization: Option<&str>) -> Probe {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let body = workload.body();
    let length = if body.is_empty() { String::new() } else { format!("Content-Length: {}\r\n", body.len()) };
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\n{auth}{length}Connection: close\r\n\r\n",
        workload.method, workload.path
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |at| at + 4);
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "{addr}: a chunked answer to {} {}: the probe reads only sized bodies",
        workload.method,
        workload.path
    );
    Probe { status, body: response[head_end..].to_vec() }
}
