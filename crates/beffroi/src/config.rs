//! The `serve` configuration file.

use std::path::PathBuf;

use beffroi_territory::{ConfigError, SourceFile, parse_duration};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_listen")]
    listen: String,
    data_dir: PathBuf,
    deployment: PathBuf,
    #[serde(default)]
    retention: Option<String>,
    /// Incidents resolved this long ago that nobody closed are closed (default 24h; "off").
    #[serde(default)]
    close_resolved_after: Option<String>,
    /// How long the store writer gathers work into one commit (default `2ms`; `0ms`: none).
    #[serde(default)]
    commit_window: Option<String>,
    #[serde(default)]
    mqtt: Option<RawMqtt>,
    #[serde(default)]
    console: Option<RawConsole>,
    #[serde(default)]
    http: Option<RawHttp>,
    audit: Option<RawAudit>,
    #[serde(default)]
    privacy: Option<RawPrivacy>,
    #[serde(default)]
    cluster: Option<RawCluster>,
}

/// `[cluster]`: the shared services of a deployment run on several servers: the store in
/// PostgreSQL and, with `nats`, the ingest log and the choice of the active node on NATS
/// JetStream.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    /// A PostgreSQL URL (`postgres://user@host:5432/db`); without it, the
    /// `BEFFROI_DATABASE_URL` environment variable (so that a password stays out of the
    /// file).
    #[serde(default)]
    database: Option<String>,
    /// NATS server URLs, comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`).
    #[serde(default)]
    nats: Option<String>,
    /// This node's id, unique in the cluster (`A–Z a–z 0–9 - _`, 1 to 64 characters).
    #[serde(default)]
    node: Option<String>,
    /// Partitions of the ingest log (default 16; fixed for the life of the stream).
    #[serde(default)]
    partitions: Option<u32>,
    /// How long the active node's lease lasts without renewal (default `15s`).
    #[serde(default)]
    lease_ttl: Option<String>,
    /// How many NATS servers the cluster has (its streams keep min(3, n) replicas; default 3).
    #[serde(default)]
    nats_servers: Option<usize>,
    /// `host:port` at which the other nodes reach this node's HTTP address, to relay the
    /// console to it while it runs the engine (default: `listen`, unless it is a wildcard).
    #[serde(default)]
    advertise: Option<String>,
}

/// `[cluster] nats`: this server is one node of a cluster on NATS JetStream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSettings {
    /// Comma-separated server URLs.
    pub servers: String,
    pub node: String,
    pub partitions: u32,
    pub lease_ttl: std::time::Duration,
    pub cluster_size: usize,
    /// `[cluster] advertise`: `host:port` the other nodes reach this one at.
    pub advertise: Option<String>,
}

/// `host:port` as a node advertises its address (`[cluster] advertise`: a host name, an
/// IPv4 address or a bracketed IPv6 one, and a port above 0), split; `None` otherwise.
pub fn host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let plain = !host.is_empty() && !host.contains('/') && !host.contains(char::is_whitespace);
    plain.then_some((host, port))
}

/// The partitions of the ingest log when `[cluster] partitions` is not set.
pub const DEFAULT_PARTITIONS: u32 = 16;
/// The active node's lease when `[cluster] lease_ttl` is not set.
pub const DEFAULT_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(15);

/// Where the store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// `<data_dir>/beffroi.db` (the default: one server).
    Sqlite,
    /// A PostgreSQL database, by URL (or from `BEFFROI_DATABASE_URL` when the URL is
    /// `None`): `[cluster] database`.
    Postgres(Option<String>),
}

/// The environment variable that gives `[cluster] database` when the file does not.
pub const DATABASE_URL_ENV: &str = "BEFFROI_DATABASE_URL";

/// `[privacy]`: where the territory's pseudonymisation keys live, and who approves an
/// unmasking.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawPrivacy {
    #[serde(default)]
    keys_dir: Option<PathBuf>,
    /// `none` (default), `dpo` or `two_person`.
    #[serde(default)]
    unmask_approval: Option<String>,
    /// How long a request waits for its approver, and an approved value for its requester.
    #[serde(default)]
    unmask_approval_within: Option<String>,
}

/// `[audit]`: where the audit log and its signing key live, when checkpoints are signed.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    /// The pinned public key (a copy kept apart from the log): what `verify` trusts, and
    /// what the signing key must match at start.
    #[serde(default)]
    public_key: Option<PathBuf>,
    #[serde(default)]
    checkpoint_every: Option<u64>,
    #[serde(default)]
    checkpoint_interval: Option<String>,
    /// How long entries are kept ("365d" by default; "off": never pruned).
    #[serde(default)]
    retain: Option<String>,
}

/// The audit log's retention when `[audit] retain` is not given: one year, the upper end
/// of the CNIL's six months to a year for traceability logs (ADR 0024).
pub const DEFAULT_AUDIT_RETAIN: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

/// The shortest `[audit] retain` accepted: a prune destroys evidence, and a typo ("365s")
/// must not empty the log.
pub const MIN_AUDIT_RETAIN: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// `[audit] retain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditRetain {
    /// "off": the log is never pruned.
    Off,
    /// Entries older than this are pruned.
    After(std::time::Duration),
}

/// Parses a retention (`"off"`, or a duration of at least [`MIN_AUDIT_RETAIN`]).
pub fn parse_audit_retain(v: &str) -> Result<AuditRetain, String> {
    if v == "off" {
        return Ok(AuditRetain::Off);
    }
    let d = parse_duration(v)?;
    let d = std::time::Duration::from_millis(u64::try_from(d.millis()).unwrap_or(0));
    if d < MIN_AUDIT_RETAIN {
        return Err(format!(
            "`{v}` is shorter than the minimum of 30d (or \"off\")"
        ));
    }
    Ok(AuditRetain::After(d))
}

/// The `[audit]` table, paths resolved against the configuration file's folder; anything
/// not given takes its default from the data folder (see [`AuditSettings::to_config`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub path: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `public_key`: the pinned public key.
    pub pinned_public_key: Option<PathBuf>,
    pub checkpoint_every: Option<u64>,
    pub checkpoint_interval: Option<std::time::Duration>,
    /// `retain` (`None`: [`DEFAULT_AUDIT_RETAIN`]).
    pub retain: Option<AuditRetain>,
}

impl AuditSettings {
    /// How long entries are kept; `None`: never pruned.
    pub fn retention(&self) -> Option<std::time::Duration> {
        match self.retain {
            None => Some(DEFAULT_AUDIT_RETAIN),
            Some(AuditRetain::Off) => None,
            Some(AuditRetain::After(d)) => Some(d),
        }
    }

    /// The log's configuration: `<data_dir>/audit.sqlite`, the key in
    /// `beffroi-keys/audit-signing.key` beside the data folder (or `key_file`, or
    /// `key_override` from the environment; or `<data_dir>/audit-signing.key` when only
    /// that one exists, made by an earlier version), the public key `audit-signing.pub`
    /// beside the log, the anchor `<data_dir>/audit-anchor`.
    pub fn to_config(
        &self,
        data_dir: &std::path::Path,
        key_override: Option<PathBuf>,
    ) -> beffroi_audit::AuditConfig {
        let mut c = beffroi_audit::AuditConfig::in_dir(data_dir);
        if let Some(p) = &self.path {
            c.path = p.clone();
            c.public_key_file = p
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(beffroi_audit::PUBLIC_KEY_FILE);
        }
        if let Some(k) = key_override.or_else(|| self.key_file.clone()) {
            c.key_file = k;
        } else {
            let legacy = data_dir.join(beffroi_audit::KEY_FILE);
            if !c.key_file.exists() && legacy.exists() {
                c.key_file = legacy;
            }
        }
        if let Some(n) = self.checkpoint_every {
            c.checkpoint_every = n;
        }
        if let Some(d) = self.checkpoint_interval {
            c.checkpoint_interval = d;
        }
        c
    }
}

/// `[http]`: accounts and how the site is reached.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// The accounts file (users and API tokens).
    #[serde(default)]
    users: Option<PathBuf>,
    /// The site is reached over HTTPS (a TLS-terminating reverse proxy): `Secure` cookies
    /// and HSTS.
    #[serde(default)]
    behind_tls: bool,
    /// Take the client address from `X-Forwarded-For` sent by a proxy on this host
    /// (loopback); shorthand for `trusted_proxies = ["127.0.0.1", "::1"]`.
    #[serde(default)]
    trust_forwarded: bool,
    /// The reverse proxies whose `X-Forwarded-For` is read (their addresses).
    #[serde(default)]
    trusted_proxies: Vec<String>,
    /// The key that seals the TOTP secrets of the accounts file (default: `totp.key` in the
    /// data folder).
    #[serde(default)]
    totp_key: Option<PathBuf>,
    /// Also serve `/metrics` without authentication on this address (e.g. a private
    /// interface the scraper reaches); on the main address it needs `metrics.read`.
    #[serde(default)]
    metrics_listen: Option<String>,
    #[serde(default)]
    session_idle: Option<String>,
    #[serde(default)]
    session_absolute: Option<String>,
    /// Longest time a client may take to send a request's headers (default 10s).
    #[serde(default)]
    header_timeout: Option<String>,
    /// Most connections served at once (default 1024); beyond, new ones are closed at once.
    #[serde(default)]
    max_connections: Option<usize>,
}

/// The `[http]` settings.
#[derive(Debug, Default)]
pub struct HttpSettings {
    pub users: Option<PathBuf>,
    pub behind_tls: bool,
    /// Proxies whose `X-Forwarded-For` is read (`trust_forwarded` adds loopback).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `totp_key`: the key that seals TOTP secrets (`None`: the accounts file has none).
    pub totp_key: Option<PathBuf>,
    /// `metrics_listen`: an address that serves `/metrics` alone, unauthenticated.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub session_idle: Option<beffroi_core::Duration>,
    pub session_absolute: Option<beffroi_core::Duration>,
    /// `header_timeout`: longest time to send a request's headers (`None`: 10 s).
    pub header_timeout: Option<beffroi_core::Duration>,
    /// `max_connections` (`None`: 1024).
    pub max_connections: Option<usize>,
}

/// `[console]`: the base map (none by default).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    #[serde(default)]
    tiles: Option<String>,
    #[serde(default)]
    pmtiles: Option<PathBuf>,
    #[serde(default)]
    attribution: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    url: String,
    #[serde(default = "default_client_id")]
    client_id: String,
    #[serde(default = "default_protocol")]
    protocol: u8,
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    username: Option<String>,
    /// The broker enforces the password and ACL files generated by `beffroi devices`.
    #[serde(default)]
    broker_auth: bool,
    /// Longest wait between two reconnection attempts (`"5s"` by default).
    #[serde(default)]
    reconnect_max: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_client_id() -> String {
    "beffroi".into()
}
fn default_protocol() -> u8 {
    4
}

#[derive(Debug)]
pub struct MqttSettings {
    pub url: String,
    pub client_id: String,
    /// 4 (MQTT 3.1.1) or 5.
    pub protocol: u8,
    pub topics: Option<Vec<String>>,
    pub username: Option<String>,
    /// The broker enforces the generated password/ACL files: messages on a device's own
    /// topic earn `broker_authenticated`, and the broker's log feeds security signals.
    pub broker_auth: bool,
    /// `reconnect_max`: longest wait between two reconnection attempts.
    pub reconnect_max: Option<std::time::Duration>,
}

/// A duration of `field` within `millis`, or an error naming the field and `hint`.
fn bounded_duration(
    src: &SourceFile,
    field: &str,
    text: &str,
    millis: std::ops::RangeInclusive<u64>,
    hint: &str,
) -> Result<std::time::Duration, ConfigError> {
    let d = parse_duration(text)
        .map_err(|e| ConfigError::new(src.path.clone(), None, Some(field), e))?;
    match u64::try_from(d.millis()) {
        Ok(ms) if millis.contains(&ms) => Ok(std::time::Duration::from_millis(ms)),
        _ => Err(ConfigError::new(src.path.clone(), None, Some(field), hint)),
    }
}

/// How long the store writer gathers work into one commit by default.
pub const DEFAULT_COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);
/// The longest commit window accepted: beyond, the live stream lags visibly.
const MAX_COMMIT_WINDOW_MS: u64 = 100;

/// How long a resolved incident may stay unclosed before the system closes it.
pub const DEFAULT_CLOSE_RESOLVED_AFTER: beffroi_core::Duration =
    beffroi_core::Duration::from_mins(24 * 60);

#[derive(Debug)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Folder laid out like `demo/`: territory/, rules.toml, procedures.toml.
    pub deployment: PathBuf,
    /// Retention of technical observations, overriding `privacy.toml`'s
    /// `technical_observations`; every other store follows `privacy.toml`.
    pub retention: Option<beffroi_core::Duration>,
    /// `close_resolved_after` (`None`: "off").
    pub close_resolved_after: Option<beffroi_core::Duration>,
    /// `commit_window`: how long the store writer waits, after the first work of a commit,
    /// for more to fold into it.
    pub commit_window: std::time::Duration,
    pub mqtt: Option<MqttSettings>,
    pub console: beffroi_console::Settings,
    pub audit: AuditSettings,
    pub http: HttpSettings,
    /// `[privacy] keys_dir`: the key vault's folder (default: `beffroi-keys/<territory>`
    /// beside the data folder, see [`crate::vault::default_dir`]).
    pub keys_dir: Option<PathBuf>,
    /// `[privacy] unmask_approval` and `unmask_approval_within`.
    pub unmask_approval: beffroi_api::unmask::ApprovalPolicy,
    /// `[cluster] database`: where the store lives.
    pub store: StoreLocation,
    /// `[cluster] nats`: the cluster this server is a node of.
    pub nats: Option<NatsSettings>,
}

impl Config {
    /// Paths are relative to the configuration file's folder.
    pub fn parse(src: &SourceFile) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
        let base = PathBuf::from(&src.path)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let retention = match raw.retention.as_deref() {
            None => None,
            Some(s) => Some(
                parse_duration(s)
                    .map_err(|e| ConfigError::new(src.path.clone(), None, Some("retention"), e))?,
            ),
        };
        let mqtt = match raw.mqtt {
            None => None,
            Some(m) => {
                if m.protocol != 4 && m.protocol != 5 {
                    return Err(ConfigError::new(
                        src.path.clone(),
                        None,
                        Some("mqtt.protocol"),
                        "4 (MQTT 3.1.1) or 5",
                    ));
                }
                let reconnect_max = m
                    .reconnect_max
                    .as_deref()
                    .map(|s| {
                        bounded_duration(
                            src,
                            "mqtt.reconnect_max",
                            s,
                            100..=3_600_000,
                            "between 100ms and 1h",
                        )
                    })
                    .transpose()?;
                Some(MqttSettings {
                    url: m.url,
                    client_id: m.client_id,
                    protocol: m.protocol,
                    topics: m.topics,
                    username: m.username,
                    broker_auth: m.broker_auth,
                    reconnect_max,
                })
            }
        };
        let console = match raw.console {
            None => beffroi_console::Settings::default(),
            Some(c) => {
                let settings = beffroi_console::Settings {
                    tiles: c.tiles,
                    pmtiles: c.pmtiles.map(|p| base.join(p)),
                    attribution: c.attribution,
                };
                settings.validate().map_err(|e| {
                    let field = format!("console.{}", e.field);
                    ConfigError::new(src.path.clone(), None, Some(&field), e.message)
                })?;
                settings
            }
        };
        let audit = match raw.audit {
            None => AuditSettings::default(),
            Some(a) => {
                let interval = match a.checkpoint_interval.as_deref() {
                    None => None,
                    Some(s) => {
                        let d = parse_duration(s).map_err(|e| {
                            ConfigError::new(
                                src.path.clone(),
                                None,
                                Some("audit.checkpoint_interval"),
                                e,
                            )
                        })?;
                        if d.millis() <= 0 {
                            return Err(ConfigError::new(
                                src.path.clone(),
                                None,
                                Some("audit.checkpoint_interval"),
                                "must be positive",
                            ));
                        }
                        Some(std::time::Duration::from_millis(d.millis().unsigned_abs()))
                    }
                };
                let retain = a
                    .retain
                    .as_deref()
                    .map(parse_audit_retain)
                    .transpose()
                    .map_err(|e| {
                        ConfigError::new(src.path.clone(), None, Some("audit.retain"), e)
                    })?;
                AuditSettings {
                    retain,
                    path: a.path.map(|p| base.join(p)),
                    key_file: a.key_file.map(|p| base.join(p)),
                    pinned_public_key: a.public_key.map(|p| base.join(p)),
                    checkpoint_every: a.checkpoint_every,
                    checkpoint_interval: interval,
                }
            }
        };
        let dur = |field: &str, v: Option<String>| -> Result<_, ConfigError> {
            v.map(|s| {
                parse_duration(&s)
                    .map_err(|e| ConfigError::new(src.path.clone(), None, Some(field), e))
            })
            .transpose()
        };
        let http = match raw.http {
            None => HttpSettings::default(),
            Some(h) => HttpSettings {
                totp_key: Some(h.totp_key.map_or_else(
                    || base.join(&raw.data_dir).join("totp.key"),
                    |p| base.join(p),
                )),
                users: h.users.map(|p| base.join(p)),
                behind_tls: h.behind_tls,
                trusted_proxies: {
                    let mut list = h
                        .trusted_proxies
                        .iter()
                        .map(|a| {
                            a.parse::<std::net::IpAddr>().map_err(|_| {
                                ConfigError::new(
                                    src.path.clone(),
                                    None,
                                    Some("http.trusted_proxies"),
                                    format!("`{a}` is not an IP address"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if h.trust_forwarded {
                        list.extend([
                            std::net::IpAddr::from([127, 0, 0, 1]),
                            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                        ]);
                    }
                    list.sort_unstable();
                    list.dedup();
                    list
                },
                metrics_listen: h
                    .metrics_listen
                    .map(|a| {
                        a.parse::<std::net::SocketAddr>().map_err(|_| {
                            ConfigError::new(
                                src.path.clone(),
                                None,
                                Some("http.metrics_listen"),
                                format!("`{a}` is not an address and port"),
                            )
                        })
                    })
                    .transpose()?,
                session_idle: dur("http.session_idle", h.session_idle)?,
                session_absolute: dur("http.session_absolute", h.session_absolute)?,
                header_timeout: dur("http.header_timeout", h.header_timeout)?,
                max_connections: h.max_connections,
            },
        };
        let close_resolved_after = match raw.close_resolved_after.as_deref() {
            Some("off") => None,
            Some(v) => Some(parse_duration(v).map_err(|e| {
                ConfigError::new(src.path.clone(), None, Some("close_resolved_after"), e)
            })?),
            None => Some(DEFAULT_CLOSE_RESOLVED_AFTER),
        };
        let commit_window = match raw.commit_window.as_deref() {
            None => DEFAULT_COMMIT_WINDOW,
            Some(v) => bounded_duration(
                src,
                "commit_window",
                v,
                0..=MAX_COMMIT_WINDOW_MS,
                "at most 100ms: every acknowledgement and live event waits up to this long",
            )?,
        };
        let privacy = raw.privacy.unwrap_or_default();
        let mut unmask_approval = beffroi_api::unmask::ApprovalPolicy::default();
        if let Some(a) = privacy.unmask_approval.as_deref() {
            unmask_approval.approval =
                beffroi_api::unmask::Approval::parse(a).ok_or_else(|| {
                    ConfigError::new(
                        src.path.clone(),
                        None,
                        Some("privacy.unmask_approval"),
                        "expected none, dpo or two_person",
                    )
                })?;
        }
        if let Some(w) = privacy.unmask_approval_within.as_deref() {
            unmask_approval.within = parse_duration(w).map_err(|e| {
                ConfigError::new(
                    src.path.clone(),
                    None,
                    Some("privacy.unmask_approval_within"),
                    e,
                )
            })?;
        }
        let nats = raw
            .cluster
            .as_ref()
            .map(|c| nats_settings(src, c))
            .transpose()?
            .flatten();
        let store = match raw.cluster.map(|c| c.database) {
            None => StoreLocation::Sqlite,
            Some(None) => StoreLocation::Postgres(None),
            Some(Some(url)) => {
                let url = url.trim().to_string();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::new(
                        src.path.clone(),
                        None,
                        Some("cluster.database"),
                        "a PostgreSQL URL (postgres://user@host:5432/database), or leave it \
                         out and set BEFFROI_DATABASE_URL",
                    ));
                }
                StoreLocation::Postgres(Some(url))
            }
        };
        Ok(Config {
            store,
            nats,
            close_resolved_after,
            commit_window,
            unmask_approval,
            keys_dir: privacy.keys_dir.map(|p| base.join(p)),
            http,
            listen: raw.listen,
            data_dir: base.join(raw.data_dir),
            deployment: base.join(raw.deployment),
            retention,
            mqtt,
            console,
            audit,
        })
    }
}

/// `[cluster] nats` and the settings that go with it; `None` without `nats`.
fn nats_settings(src: &SourceFile, c: &RawCluster) -> Result<Option<NatsSettings>, ConfigError> {
    let err = |field: &'static str, msg: &str| {
        ConfigError::new(src.path.clone(), None, Some(field), msg.to_string())
    };
    let Some(servers) = c.nats.as_deref().map(str::trim) else {
        for (set, field) in [
            (c.node.is_some(), "cluster.node"),
            (c.partitions.is_some(), "cluster.partitions"),
            (c.lease_ttl.is_some(), "cluster.lease_ttl"),
            (c.nats_servers.is_some(), "cluster.nats_servers"),
            (c.advertise.is_some(), "cluster.advertise"),
        ] {
            if set {
                return Err(err(field, "only with `nats` (the cluster's NATS servers)"));
            }
        }
        return Ok(None);
    };
    if servers.is_empty() || !servers.split(',').all(|u| u.trim().starts_with("nats://")) {
        return Err(err(
            "cluster.nats",
            "NATS server URLs, comma-separated (nats://host:4222,nats://host2:4222)",
        ));
    }
    let node = c.node.clone().unwrap_or_default();
    if !(1..=64).contains(&node.len())
        || !node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(err(
            "cluster.node",
            "this node's id, unique in the cluster: 1 to 64 characters among A-Z a-z 0-9 - _",
        ));
    }
    let partitions = c.partitions.unwrap_or(DEFAULT_PARTITIONS);
    if !(1..=1024).contains(&partitions) {
        return Err(err("cluster.partitions", "from 1 to 1024"));
    }
    let lease_ttl = match c.lease_ttl.as_deref() {
        None => DEFAULT_LEASE_TTL,
        Some(v) => {
            let d = parse_duration(v).map_err(|e| err("cluster.lease_ttl", &e.to_string()))?;
            let ms = u64::try_from(d.millis()).unwrap_or(0);
            if ms < 1_000 {
                return Err(err("cluster.lease_ttl", "at least 1s"));
            }
            std::time::Duration::from_millis(ms)
        }
    };
    let cluster_size = c.nats_servers.unwrap_or(3);
    if cluster_size == 0 {
        return Err(err("cluster.nats_servers", "at least 1"));
    }
    let advertise = match c.advertise.as_deref().map(str::trim) {
        None => None,
        Some(a) => {
            if host_port(a).is_none() {
                return Err(err(
                    "cluster.advertise",
                    "host:port at which the other nodes reach this one (10.0.0.11:8080)",
                ));
            }
            Some(a.to_string())
        }
    };
    Ok(Some(NatsSettings {
        servers: servers.to_string(),
        node,
        partitions,
        lease_ttl,
        cluster_size,
        advertise,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(&SourceFile::new("/etc/beffroi/beffroi.toml", text))
    }

    /// `[cluster] database` selects PostgreSQL; without the table the store is SQLite's;
    /// something that is not a PostgreSQL URL is refused at its field.
    #[test]
    fn the_cluster_table_selects_the_postgresql_store() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n";
        assert_eq!(parse(base).expect("valid").store, StoreLocation::Sqlite);
        let url = "postgres://beffroi@db.local:5432/beffroi";
        assert_eq!(
            parse(&format!("{base}[cluster]\ndatabase = \"{url}\"\n"))
                .expect("valid")
                .store,
            StoreLocation::Postgres(Some(url.into()))
        );
        assert_eq!(
            parse(&format!("{base}[cluster]\n")).expect("valid").store,
            StoreLocation::Postgres(None)
        );
        let e = parse(&format!("{base}[cluster]\ndatabase = \"mysql://x/y\"\n"))
            .expect_err("not PostgreSQL");
        assert!(e.to_string().contains("cluster.database"), "{e}");
        let e =
            parse(&format!("{base}[cluster]\nnatss = \"nats://x\"\n")).expect_err("unknown key");
        assert!(e.to_string().contains("natss"), "{e}");
    }

    /// `[cluster] nats` makes the server a node: its id is required and checked, the rest
    /// has defaults; the node's settings without `nats` are refused at their field.
    #[test]
    fn the_cluster_table_makes_a_node_of_nats() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n[cluster]\n";
        assert_eq!(parse(base).expect("valid").nats, None);
        let c = parse(&format!(
            "{base}nats = \"nats://a:4222, nats://b:4222\"\nnode = \"n-1\"\nlease_ttl = \"3s\"\n"
        ))
        .expect("valid");
        assert_eq!(
            c.nats,
            Some(NatsSettings {
                servers: "nats://a:4222, nats://b:4222".into(),
                node: "n-1".into(),
                partitions: DEFAULT_PARTITIONS,
                lease_ttl: std::time::Duration::from_secs(3),
                cluster_size: 3,
                advertise: None,
            })
        );
        let c = parse(&format!(
            "{base}nats = \"nats://a\"\nnode = \"n\"\nadvertise = \"node-1.local:8080\"\n"
        ))
        .expect("valid");
        assert_eq!(
            c.nats.and_then(|n| n.advertise).as_deref(),
            Some("node-1.local:8080")
        );
        assert_eq!(c.store, StoreLocation::Postgres(None));
        for (text, field) in [
            ("nats = \"nats://a\"\n", "cluster.node"),
            ("nats = \"nats://a\"\nnode = \"a.b\"\n", "cluster.node"),
            ("nats = \"http://a\"\nnode = \"n\"\n", "cluster.nats"),
            (
                "nats = \"nats://a\"\nnode = \"n\"\npartitions = 0\n",
                "cluster.partitions",
            ),
            (
                "nats = \"nats://a\"\nnode = \"n\"\nlease_ttl = \"200ms\"\n",
                "cluster.lease_ttl",
            ),
            ("node = \"n\"\n", "cluster.node"),
            (
                "nats = \"nats://a\"\nnode = \"n\"\nadvertise = \"http://a:80\"\n",
                "cluster.advertise",
            ),
            (
                "nats = \"nats://a\"\nnode = \"n\"\nadvertise = \"a\"\n",
                "cluster.advertise",
            ),
            ("advertise = \"a:1\"\n", "cluster.advertise"),
        ] {
            let e = parse(&format!("{base}{text}")).expect_err(text);
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn the_console_table_sets_the_base_map() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n";
        let none = parse(base).expect("valid");
        assert_eq!(none.console, beffroi_console::Settings::default());
        let tiles = parse(&format!(
            "{base}[console]\ntiles = \"https://t.example.org/{{z}}/{{x}}/{{y}}.png\"\nattribution = \"© OSM\"\n"
        ))
        .expect("valid");
        assert_eq!(
            tiles.console.tiles.as_deref(),
            Some("https://t.example.org/{z}/{x}/{y}.png")
        );
        assert_eq!(tiles.console.attribution.as_deref(), Some("© OSM"));
    }

    #[test]
    fn the_commit_window_defaults_to_two_milliseconds_and_is_bounded() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n";
        assert_eq!(
            parse(base).expect("valid").commit_window,
            DEFAULT_COMMIT_WINDOW
        );
        assert_eq!(DEFAULT_COMMIT_WINDOW.as_millis(), 2);
        for (text, ms) in [("0ms", 0), ("10ms", 10), ("100ms", 100)] {
            let c = parse(&format!("commit_window = \"{text}\"\n{base}")).expect(text);
            assert_eq!(c.commit_window, std::time::Duration::from_millis(ms));
        }
        for bad in ["101ms", "1s", "soon"] {
            let e = parse(&format!("commit_window = \"{bad}\"\n{base}")).expect_err(bad);
            assert!(e.to_string().contains("commit_window"), "{e}");
        }
    }

    #[test]
    fn the_audit_retention_defaults_to_a_year_and_has_a_floor() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n";
        let c = parse(base).expect("valid");
        assert_eq!(c.audit.retention(), Some(DEFAULT_AUDIT_RETAIN));
        assert_eq!(DEFAULT_AUDIT_RETAIN.as_secs(), 365 * 86_400);
        let c = parse(&format!("{base}[audit]\nretain = \"180d\"\n")).expect("valid");
        assert_eq!(
            c.audit.retention(),
            Some(std::time::Duration::from_secs(180 * 86_400))
        );
        let c = parse(&format!("{base}[audit]\nretain = \"off\"\n")).expect("valid");
        assert_eq!(c.audit.retention(), None);
        for bad in ["365s", "29d", "soon"] {
            let e = parse(&format!("{base}[audit]\nretain = \"{bad}\"\n")).expect_err(bad);
            assert!(e.to_string().contains("audit.retain"), "{e}");
        }
    }

    #[test]
    fn the_audit_table_overrides_the_defaults() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n";
        let c = parse(base).expect("valid");
        let a = c.audit.to_config(&c.data_dir, None);
        assert_eq!(a.path, PathBuf::from("/etc/beffroi/d/audit.sqlite"));
        assert_eq!(
            a.key_file,
            PathBuf::from("/etc/beffroi/beffroi-keys/audit-signing.key"),
            "outside the data folder"
        );
        assert_eq!(
            a.anchor_file,
            Some(PathBuf::from("/etc/beffroi/d/audit-anchor"))
        );
        assert_eq!(c.audit.pinned_public_key, None);
        assert_eq!(
            a.public_key_file,
            PathBuf::from("/etc/beffroi/d/audit-signing.pub")
        );
        let c = parse(&format!(
            "{base}[audit]\npath = \"/mnt/worm/audit.sqlite\"\nkey_file = \"keys/a.key\"\npublic_key = \"pinned.pub\"\ncheckpoint_every = 5\ncheckpoint_interval = \"10s\"\n"
        ))
        .expect("valid");
        let a = c.audit.to_config(&c.data_dir, None);
        assert_eq!(a.path, PathBuf::from("/mnt/worm/audit.sqlite"));
        assert_eq!(
            a.public_key_file,
            PathBuf::from("/mnt/worm/audit-signing.pub")
        );
        assert_eq!(a.key_file, PathBuf::from("/etc/beffroi/keys/a.key"));
        assert_eq!(
            a.anchor_file,
            Some(PathBuf::from("/etc/beffroi/d/audit-anchor")),
            "the anchor stays with the data"
        );
        assert_eq!(
            c.audit.pinned_public_key,
            Some(PathBuf::from("/etc/beffroi/pinned.pub"))
        );
        assert_eq!(a.checkpoint_every, 5);
        assert_eq!(a.checkpoint_interval, std::time::Duration::from_secs(10));
        // The environment's key file wins.
        let a = c
            .audit
            .to_config(&c.data_dir, Some(PathBuf::from("/run/k")));
        assert_eq!(a.key_file, PathBuf::from("/run/k"));
        let e = parse(&format!("{base}[audit]\ncheckpoint_interval = \"soon\"\n"))
            .expect_err("bad duration");
        assert!(e.to_string().contains("audit.checkpoint_interval"), "{e}");
    }

    #[test]
    fn the_privacy_table_names_the_keys_folder() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n";
        assert!(parse(base).expect("valid").keys_dir.is_none());
        let c = parse(&format!("{base}[privacy]\nkeys_dir = \"/srv/keys\"\n")).expect("valid");
        assert_eq!(c.keys_dir, Some(PathBuf::from("/srv/keys")));
        let c = parse(&format!("{base}[privacy]\nkeys_dir = \"k\"\n")).expect("valid");
        assert_eq!(c.keys_dir, Some(PathBuf::from("/etc/beffroi/k")));
        assert!(parse(&format!("{base}[privacy]\nkey = \"k\"\n")).is_err());
        use beffroi_api::unmask::Approval;
        assert_eq!(
            parse(base).expect("valid").unmask_approval.approval,
            Approval::None
        );
        let c = parse(&format!(
            "{base}[privacy]\nunmask_approval = \"dpo\"\nunmask_approval_within = \"2h\"\n"
        ))
        .expect("valid");
        assert_eq!(c.unmask_approval.approval, Approval::Dpo);
        assert_eq!(c.unmask_approval.within.millis(), 7_200_000);
        assert!(parse(&format!("{base}[privacy]\nunmask_approval = \"maybe\"\n")).is_err());
    }

    #[test]
    fn a_bad_console_table_names_its_field() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n";
        let e = parse(&format!(
            "{base}[console]\ntiles = \"https://t.example.org/{{z}}.png\"\n"
        ))
        .expect_err("no {x}");
        assert!(e.to_string().contains("console.tiles"), "{e}");
        // Relative to the configuration file's folder, and checked.
        let e = parse(&format!("{base}[console]\npmtiles = \"missing.pmtiles\"\n"))
            .expect_err("no such file");
        assert!(e.to_string().contains("console.pmtiles"), "{e}");
        assert!(
            e.to_string().contains("/etc/beffroi/missing.pmtiles"),
            "{e}"
        );
        let e = parse(&format!("{base}[console]\nbasemap = \"x\"\n")).expect_err("unknown key");
        assert!(e.to_string().contains("basemap"), "{e}");
    }

    #[test]
    fn the_http_table_sets_accounts_and_sessions() {
        let base = "data_dir = \"d\"\ndeployment = \"dep\"\n";
        let none = parse(base).expect("valid");
        assert!(none.http.users.is_none() && !none.http.behind_tls);
        let c = parse(&format!(
            "{base}[http]\nusers = \"users.toml\"\nbehind_tls = true\nsession_idle = \"10m\"\n"
        ))
        .expect("valid");
        assert_eq!(
            c.http.users.as_deref(),
            Some(std::path::Path::new("/etc/beffroi/users.toml"))
        );
        assert!(c.http.behind_tls && c.http.trusted_proxies.is_empty());
        assert_eq!(
            c.http.session_idle,
            Some(beffroi_core::Duration::from_mins(10))
        );
        let e = parse(&format!("{base}[http]\nsession_idle = \"soon\"\n")).expect_err("bad");
        assert!(e.to_string().contains("http.session_idle"), "{e}");
    }
}
