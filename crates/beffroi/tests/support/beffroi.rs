//! A real `beffroi serve` child process on a free loopback port, with its own data folder
//! and configuration, killed when dropped.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::http::{ADMIN_PASSWORD, agent, get_text};

/// How long `beffroi serve` may take to answer `200` on `/healthz`.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Attempts with a fresh HTTP port when the child exits at start (port taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// The `[mqtt]` table of the configuration.
#[derive(Clone, Debug)]
pub struct MqttSettings {
    pub url: String,
    pub client_id: String,
    /// 4 or 5.
    pub protocol: u8,
}

/// Broker authentication of the ingest: user, password, and `broker_auth = true`.
#[derive(Clone, Debug)]
pub struct BrokerAuth {
    pub username: String,
    pub password: String,
}

pub struct Beffroi {
    broker_auth: Option<BrokerAuth>,
    child: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
    port: AtomicU16,
    mqtt: Option<MqttSettings>,
    starts: AtomicU32,
    /// Deployment folder; the repository's `demo/` when `None`.
    deployment: Option<PathBuf>,
    /// Tables appended to the configuration file.
    extra: String,
    /// Arguments after `serve --config FILE`.
    extra_args: Mutex<Vec<String>>,
    /// What answers `200` once the process is up: `/healthz` (ready), or `/livez` for a
    /// cluster node that may wait on standby.
    up_path: &'static str,
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl Beffroi {
    /// Starts `beffroi serve` on the demo deployment and waits until `/healthz` is `200`.
    pub fn start(mqtt: Option<MqttSettings>) -> Beffroi {
        Self::start_with(mqtt, None)
    }

    /// Starts `beffroi serve` on the given deployment folder (laid out like `demo/`).
    pub fn start_with(mqtt: Option<MqttSettings>, deployment: Option<PathBuf>) -> Beffroi {
        Self::start_full(mqtt, deployment, None, |_| ())
    }

    /// Starts `beffroi serve` with the ingest authenticated to the broker, after `prepare`
    /// has run on the (empty) data folder — e.g. to issue device credentials.
    pub fn start_full(
        mqtt: Option<MqttSettings>,
        deployment: Option<PathBuf>,
        broker_auth: Option<BrokerAuth>,
        prepare: impl FnOnce(&Path),
    ) -> Beffroi {
        Self::start_configured(mqtt, deployment, broker_auth, String::new(), prepare)
    }

    /// Starts `beffroi serve` on the demo with `extra` (TOML tables, e.g. `[http]\n…`)
    /// appended to its configuration.
    pub fn start_extra(extra: &str) -> Beffroi {
        Self::start_configured(None, None, None, extra.to_string(), |_| ())
    }

    /// [`start_extra`](Self::start_extra), after `prepare` has run on the (empty) data
    /// folder.
    pub fn start_extra_prepared(extra: &str, prepare: impl FnOnce(&Path)) -> Beffroi {
        Self::start_configured(None, None, None, extra.to_string(), prepare)
    }

    /// Starts a cluster node on the demo with `extra` appended to its configuration, and
    /// waits until it is alive (`/livez`): it may be on standby.
    pub fn start_node(extra: &str) -> Beffroi {
        Self::start_inner(None, None, None, extra.to_string(), |_| (), "/livez")
    }

    /// [`start_node`](Self::start_node) on the given deployment folder (laid out like
    /// `demo/`).
    pub fn start_node_on(deployment: PathBuf, extra: &str) -> Beffroi {
        Self::start_inner(
            None,
            Some(deployment),
            None,
            extra.to_string(),
            |_| (),
            "/livez",
        )
    }

    fn start_configured(
        mqtt: Option<MqttSettings>,
        deployment: Option<PathBuf>,
        broker_auth: Option<BrokerAuth>,
        extra: String,
        prepare: impl FnOnce(&Path),
    ) -> Beffroi {
        Self::start_inner(mqtt, deployment, broker_auth, extra, prepare, "/healthz")
    }

    fn start_inner(
        mqtt: Option<MqttSettings>,
        deployment: Option<PathBuf>,
        broker_auth: Option<BrokerAuth>,
        extra: String,
        prepare: impl FnOnce(&Path),
        up_path: &'static str,
    ) -> Beffroi {
        let b = Beffroi {
            up_path,
            broker_auth,
            child: Mutex::new(None),
            dir: tempfile::tempdir().expect("temp dir for beffroi"),
            port: AtomicU16::new(0),
            mqtt,
            starts: AtomicU32::new(0),
            deployment,
            extra,
            extra_args: Mutex::new(Vec::new()),
        };
        prepare(&b.data_dir());
        b.spawn_ready();
        b
    }

    /// `http://127.0.0.1:PORT` of the running process.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("beffroi.db")
    }

    /// The last lines the child processes wrote on stderr and stdout, per start.
    pub fn log(&self) -> String {
        let mut s = String::new();
        for n in 1..=self.starts.load(Ordering::SeqCst) {
            for stream in ["stdout", "stderr"] {
                let p = self.dir.path().join(format!("{stream}-{n}.log"));
                s.push_str(&format!("--- beffroi start {n}, {stream} ---\n"));
                s.push_str(&super::tail(
                    &std::fs::read_to_string(p).unwrap_or_default(),
                    40,
                ));
            }
        }
        s
    }

    /// True while the child has not exited.
    pub fn is_running(&self) -> bool {
        match self.child().as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL (`Child::kill` on unix): no chance to flush, close or say goodbye.
    pub fn kill9(&self) {
        if let Some(mut c) = self.child().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit (a clean shutdown) within `deadline`;
    /// returns whether it exited successfully.
    pub fn terminate(&self, deadline: Duration) -> bool {
        let Some(mut c) = self.child().take() else {
            return false;
        };
        signal(c.id(), libc::SIGTERM);
        let end = Instant::now() + deadline;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return false;
                }
            }
        }
    }

    /// Process id of the running child.
    pub fn pid(&self) -> u32 {
        self.child().as_ref().expect("beffroi is running").id()
    }

    /// SIGSTOP: the process stalls (a disk or VM pause) while the broker keeps sending.
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// Starts the process again on the same data folder and MQTT client id (a fresh HTTP
    /// port), and waits until it is ready.
    pub fn restart(&self) {
        self.kill9();
        self.spawn_ready();
    }

    /// [`restart`](Self::restart) with these arguments after `serve --config FILE` (for
    /// this start and the next ones).
    pub fn restart_with_args(&self, args: &[&str]) {
        *self.extra_args.lock().unwrap_or_else(|p| p.into_inner()) =
            args.iter().map(|a| a.to_string()).collect();
        self.restart();
    }

    /// The configuration file the child runs with (written at each start).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("beffroi.toml")
    }

    fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_config(&self) -> PathBuf {
        let path = self.dir.path().join("beffroi.toml");
        let mut f = std::fs::File::create(&path).expect("create beffroi.toml");
        let deployment = self.deployment.clone().unwrap_or_else(super::demo::dir);
        let mut text = format!(
            "listen = \"127.0.0.1:{}\"\ndata_dir = {}\ndeployment = {}\n",
            self.port(),
            toml_str(&self.data_dir()),
            toml_str(&deployment),
        );
        if let Some(m) = &self.mqtt {
            text.push_str(&format!(
                "\n[mqtt]\nurl = \"{}\"\nclient_id = \"{}\"\nprotocol = {}\n",
                m.url, m.client_id, m.protocol
            ));
            if let Some(a) = &self.broker_auth {
                text.push_str(&format!(
                    "username = \"{}\"\nbroker_auth = true\n",
                    a.username
                ));
            }
        }
        text.push('\n');
        text.push_str(&self.extra);
        f.write_all(text.as_bytes()).expect("write beffroi.toml");
        path
    }

    fn spawn_ready(&self) {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            self.port.store(free_port(), Ordering::SeqCst);
            let config = self.write_config();
            let n = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
            let out = std::fs::File::create(self.dir.path().join(format!("stdout-{n}.log")))
                .expect("stdout log");
            let err = std::fs::File::create(self.dir.path().join(format!("stderr-{n}.log")))
                .expect("stderr log");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_beffroi"));
            cmd.arg("serve")
                .arg("--config")
                .arg(&config)
                .args(
                    self.extra_args
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter(),
                )
                .env("BEFFROI_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env(
                    "BEFFROI_LOG",
                    std::env::var("BEFFROI_TEST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .env_remove("BEFFROI_MQTT_PASSWORD");
            if let Some(a) = &self.broker_auth {
                cmd.env("BEFFROI_MQTT_PASSWORD", &a.password);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("spawn beffroi");
            *self.child() = Some(child);
            match self.wait_ready() {
                Ok(()) => return,
                Err(e) => {
                    last = e;
                    self.kill9();
                    // Only a port taken between our probe and the child's bind is retried.
                    if !self.log().contains("cannot listen") {
                        break;
                    }
                }
            }
        }
        panic!("beffroi did not start: {last}\n{}", self.log());
    }

    fn wait_ready(&self) -> Result<(), String> {
        let agent = agent();
        let url = format!("{}{}", self.base(), self.up_path);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let exited = self.child().as_mut().map(|c| c.try_wait());
            if let Some(Ok(Some(status))) = exited {
                return Err(format!("beffroi exited with {status} at start"));
            }
            if let Some((200, _)) = get_text(&agent, &url) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{} not 200 after {READY_DEADLINE:?}", self.up_path));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Beffroi {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A TOML basic string holding a path.
fn toml_str(p: &Path) -> String {
    let s = p.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Sends `sig` to our own child process.
#[allow(unsafe_code)]
fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}
