//! A real PostgreSQL server for integration tests: a throwaway cluster (`initdb`) on a free
//! loopback port, with its socket and data in a temporary folder.
//!
//! ```no_run
//! use beffroi_testkit::postgres::Postgres;
//! // One cluster per test binary, one database per test:
//! let Some(pg) = Postgres::shared() else { return }; // skipped: PostgreSQL not installed
//! let url = pg.create_database("my_test");
//! ```
//!
//! Without `initdb` and `postgres` (Debian: `/usr/lib/postgresql/<version>/bin`, the newest
//! version is taken; or the folder in `$POSTGRES_BIN`) the test is skipped with a message,
//! unless `BEFFROI_REQUIRE_SERVICES=1`, in which case it fails.
//!
//! `initdb` and `postgres` refuse to run as root: when the tests run as root, both run as
//! the `postgres` system user (the process's uid and gid are set at spawn), and the folder is
//! handed to that user. Authentication is `trust` on 127.0.0.1 and the private socket only:
//! a test cluster, never a model of a production setup. `fsync` stays on.
//!
//! A [`Postgres`] from [`Postgres::start`] is stopped when dropped. The cluster of
//! [`Postgres::shared`] lives in a static, which is never dropped: a small watchdog process
//! stops it and removes its folder when the test process exits.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser created by `initdb`.
pub const USER: &str = "beffroi";
/// How long a fresh cluster may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Attempts with a fresh port when the server exits at start (port taken meanwhile).
const START_ATTEMPTS: usize = 5;

pub struct Postgres {
    child: Child,
    port: u16,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    /// `None` once handed to the watchdog (shared cluster): the watchdog removes it.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Postgres {
    /// Starts a fresh cluster, or returns `None` (after printing why) when PostgreSQL is not
    /// installed and services are not required. Costs a second or two (`initdb`).
    pub fn start() -> Option<Postgres> {
        let bin = bin_dir()?;
        let owner = server_user();
        let dir = tempfile::Builder::new()
            .prefix("beffroi-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir for postgres");
        let path = dir.path().to_path_buf();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown the pg folder");
        }
        let data = path.join("data");
        let out = as_owner(Command::new(bin.join("initdb")), owner)
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "--encoding=UTF8", "--locale=C"])
            .args(["--no-instructions"])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn(&bin, &path, port, owner) {
                Ok(child) => {
                    return Some(Postgres {
                        child,
                        port,
                        bin,
                        owner,
                        dir: Some(dir),
                        path,
                    });
                }
                Err(e) => last = e,
            }
        }
        panic!("postgres did not start after {START_ATTEMPTS} attempts: {last}");
    }

    /// One cluster for the whole test binary, started on first use; `None` as for
    /// [`Postgres::start`]. Give each test its own database ([`Postgres::create_database`]).
    pub fn shared() -> Option<&'static Postgres> {
        static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let mut pg = Postgres::start()?;
                pg.watch_for_exit();
                Some(pg)
            })
            .as_ref()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the postmaster (its backends are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// URL of the `postgres` maintenance database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// URL of database `name` on this cluster.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The cluster's folder (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path.join("postgres.log")).unwrap_or_default()
    }

    /// Creates an empty database for `name` (dropped first if it exists) and returns its
    /// URL. Any name will do (a test's name): it is turned into a valid identifier, long
    /// ones shortened with a hash to stay apart.
    pub fn create_database(&self, name: &str) -> String {
        let db = database_name(name);
        let mut client = ::postgres::Client::connect(&self.url(), ::postgres::NoTls)
            .expect("connect to postgres");
        // From template0, which nobody connects to: databases created side by side from
        // template1 fail while another session copies it.
        // Two statements: several in one string would run as one transaction, which
        // neither accepts.
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{db}\" TEMPLATE template0 ENCODING 'UTF8'"),
        ] {
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| match e.as_db_error() {
                    Some(db_error) => panic!("{sql}: {db_error}"),
                    None => panic!("{sql}: {e}"),
                });
        }
        self.url_of(&db)
    }

    /// Hands the cluster to a watchdog that stops it (immediate shutdown) and removes its
    /// folder once this process is gone.
    // The watchdog outlives this process by design: nobody here waits for it.
    #[allow(clippy::zombie_processes)]
    fn watch_for_exit(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let path = dir.keep();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT {pg} 2>/dev/null; \
             for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 {pg} 2>/dev/null || break; sleep 0.5; done; \
             kill -KILL {pg} 2>/dev/null; rm -rf '{dir}'",
            me = std::process::id(),
            pg = self.child.id(),
            dir = path.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the postgres watchdog");
    }

    /// Stops the server without a checkpoint (immediate shutdown: what is not in its WAL on
    /// disk is lost, as in a crash) and starts it again on the same port and data: the
    /// start replays the WAL, as after a power cut.
    pub fn crash_and_restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match spawn(&self.bin, &self.path, self.port, self.owner) {
                Ok(child) => {
                    self.child = child;
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("postgres did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn stop(&mut self) {
        // Immediate shutdown (SIGQUIT): the postmaster stops its backends and exits.
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `name` as a database name: lowercase letters, digits and `_`, at most 63 bytes (the
/// server's limit), a hash of the whole name appended when it had to be cut.
fn database_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !clean.is_empty() && clean.len() <= 63 {
        return clean;
    }
    // FNV-1a: stable across runs and builds.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{}_{hash:016x}", &clean[..clean.len().min(46)])
}

/// The folder of `initdb` and `postgres`: `$POSTGRES_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> Option<PathBuf> {
    let found = match std::env::var_os("POSTGRES_BIN") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let version: u32 = e.file_name().to_str()?.parse().ok()?;
                        Some((version, e.path().join("bin")))
                    })
                    .max_by_key(|(version, _)| *version)
                    .map(|(_, bin)| bin)
            }),
    };
    if let Some(bin) = &found
        && bin.join("initdb").is_file()
        && bin.join("postgres").is_file()
    {
        return found;
    }
    if std::env::var("BEFFROI_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "PostgreSQL (initdb, postgres) not found and BEFFROI_REQUIRE_SERVICES=1 \
             (apt-get install postgresql)"
        );
    }
    eprintln!(
        "SKIPPED: PostgreSQL (initdb, postgres) not found (apt-get install postgresql; set \
         BEFFROI_REQUIRE_SERVICES=1 to fail instead)"
    );
    None
}

/// The uid and gid the server runs as: `None` (ourselves) unless we are root, then the
/// `postgres` system user.
fn server_user() -> Option<(u32, u32)> {
    let probe = tempfile::tempdir().expect("temp dir");
    let root = std::fs::metadata(probe.path())
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if !root {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "running as root and no `postgres` user to run the server as"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    Some((id("-u"), id("-g")))
}

fn as_owner(mut cmd: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        cmd.gid(gid).uid(uid);
        // Its home, not ours (root's may be unreadable).
        cmd.env("HOME", "/tmp");
    }
    cmd
}

/// A port that was free a moment ago (bound to :0, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn spawn(bin: &Path, dir: &Path, port: u16, owner: Option<(u32, u32)>) -> Result<Child, String> {
    let log = dir.join("postgres.log");
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&log, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut child = as_owner(Command::new(bin.join("postgres")), owner)
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.join("postgres").display()))?;
    let url = format!("postgresql://{USER}@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("postgres exited with {status} at start:\n{log}"));
        }
        if ::postgres::Client::connect(&url, ::postgres::NoTls).is_ok() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "postgres not accepting on port {port} after {READY_DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
