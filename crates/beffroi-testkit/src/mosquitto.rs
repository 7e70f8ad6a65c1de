//! A real Mosquitto broker for integration tests, on a free loopback port with its own
//! persistence directory.
//!
//! ```no_run
//! use beffroi_testkit::mosquitto::Mosquitto;
//! let Some(broker) = Mosquitto::start() else { return }; // skipped: no mosquitto binary
//! let url = broker.url();
//! ```
//!
//! Without `/usr/sbin/mosquitto` (or `$MOSQUITTO`) the test is skipped with a message,
//! unless `BEFFROI_REQUIRE_SERVICES=1`, in which case it fails. The broker is killed when the
//! value is dropped.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_BINARY: &str = "/usr/sbin/mosquitto";
/// How long a broker may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when the broker exits at start (port taken meanwhile).
const START_ATTEMPTS: usize = 5;

pub struct Mosquitto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    extra: String,
}

impl Mosquitto {
    /// Starts a broker with Beffroi's test settings, or returns `None` (after printing why)
    /// when the binary is missing and services are not required.
    pub fn start() -> Option<Mosquitto> {
        Mosquitto::start_with("")
    }

    /// Same, with extra lines appended to the generated configuration.
    pub fn start_with(extra_conf: &str) -> Option<Mosquitto> {
        let binary = binary()?;
        let dir = tempfile::tempdir().expect("temp dir for mosquitto");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn(&binary, dir.path(), port, extra_conf) {
                Ok(child) => {
                    return Some(Mosquitto {
                        child,
                        port,
                        dir,
                        extra: extra_conf.to_owned(),
                    });
                }
                Err(e) => last = e,
            }
        }
        panic!("mosquitto did not start after {START_ATTEMPTS} attempts: {last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the broker (to send it SIGHUP so that it rereads its files).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The directory holding the configuration, the log and the persistence file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Kills the broker (no chance to save) and starts a new one on the same port with an
    /// empty persistence directory: every session is lost.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.dir = tempfile::tempdir().expect("temp dir for mosquitto");
        self.respawn();
    }

    /// Starts the broker again on its port and folder. The port was ours; it may linger a
    /// moment in the kernel, so this retries until the deadline.
    fn respawn(&mut self) {
        let binary = binary().expect("mosquitto was there a moment ago");
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match spawn(&binary, self.dir.path(), self.port, &self.extra) {
                Ok(child) => {
                    self.child = child;
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("mosquitto did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Stops the broker cleanly (SIGTERM: it saves its sessions and their queued messages to
    /// the persistence file) and starts it again on the same port and folder: a broker
    /// restart by its administrator.
    pub fn restart_keeping_sessions(&mut self) {
        let stopped = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(stopped, "could not signal mosquitto");
        let _ = self.child.wait();
        self.respawn();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn binary() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var_os("MOSQUITTO").unwrap_or_else(|| DEFAULT_BINARY.into()));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("BEFFROI_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "{} not found and BEFFROI_REQUIRE_SERVICES=1 (apt-get install mosquitto)",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: {} not found (apt-get install mosquitto; set BEFFROI_REQUIRE_SERVICES=1 to fail instead)",
        path.display()
    );
    None
}

/// A port that was free a moment ago (bound to :0, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn spawn(binary: &Path, dir: &Path, port: u16, extra: &str) -> Result<Child, String> {
    let conf = dir.join("mosquitto.conf");
    let log = dir.join("mosquitto.log");
    let mut f = std::fs::File::create(&conf).map_err(|e| e.to_string())?;
    // Run as root, mosquitto drops to the `mosquitto` user, which cannot write our temp dir.
    let as_root = std::fs::metadata(dir)
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    write!(
        f,
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence true\n\
         persistence_location {dir}/\n\
         autosave_interval 60\n\
         max_queued_messages 0\n\
         set_tcp_nodelay true\n\
         log_dest file {log}\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         connection_messages true\n\
         {user}\
         {extra}\n",
        dir = dir.display(),
        log = log.display(),
        user = if as_root { "user root\n" } else { "" },
    )
    .map_err(|e| e.to_string())?;
    drop(f);
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("mosquitto exited with {status} at start:\n{log}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "mosquitto not accepting on {addr} after {READY_DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
