//! What the MQTT source is told: the broker, its identity, the filters and the limits.

use std::time::Duration;

use crate::MqttError;

/// Default topic filters: Beffroi's own layout and ChirpStack v4 uplinks.
pub const DEFAULT_TOPICS: [&str; 2] = ["beffroi/+/+/+", "application/+/device/+/event/up"];

/// Largest MQTT packet the client accepts (and, in MQTT 5, announces to the broker):
/// [`beffroi_wire::MAX_PAYLOAD`] plus room for the fixed header, the topic and the
/// properties. A payload a little over `MAX_PAYLOAD` still reaches the pipeline, which
/// rejects it as oversized and counts it; what happens beyond is in the crate doc.
pub const MAX_PACKET_SIZE: usize = beffroi_wire::MAX_PAYLOAD + 4 * 1024;

/// MQTT protocol version spoken to the broker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MqttVersion {
    /// MQTT 3.1.1: the broker's own in-flight limit applies (Mosquitto
    /// `max_inflight_messages`). The only version NATS's MQTT listener speaks.
    V311,
    /// MQTT 5: `inflight` is announced as the Receive Maximum and the session lives for
    /// `session_expiry` after a disconnection.
    #[default]
    V5,
}

impl MqttVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        }
    }
}

/// Configuration of the MQTT source.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// `mqtt://host:port` (`tcp://` is accepted too; the port defaults to 1883). No TLS
    /// yet: the broker is on the loopback or the LAN.
    pub url: String,
    /// Stable client identifier: the broker keys the persistent session on it, so two
    /// Beffroi instances must not share it and one instance must keep it across restarts.
    pub client_id: String,
    pub protocol: MqttVersion,
    /// Topic filters subscribed at QoS 1 (see the topic layout in the crate doc).
    pub topics: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Keep-alive interval, 1 s to 65 535 s.
    pub keep_alive: Duration,
    /// Most messages delivered and not yet acknowledged (stored). Also the size of the
    /// source's local hand-over queue.
    pub inflight: u16,
    /// MQTT 5 only: how long the broker keeps the session (subscriptions and queued
    /// messages) while Beffroi is away. MQTT 3.1.1 sessions are kept until the broker's
    /// `persistent_client_expiration`.
    pub session_expiry: Duration,
    /// First delay before reconnecting after an error; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest delay between two attempts (5 s by default: a broker back after an outage
    /// is found within seconds). Also the longest wait before reconnecting so that the
    /// broker redelivers what the store could not take.
    pub backoff_max: Duration,
    /// The broker enforces the password and ACL files generated from the device registry
    /// (`beffroi devices broker-files`): a message on a device's topic was published by
    /// that device, and earns `Trust::BrokerAuthenticated`.
    pub broker_auth: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".to_owned(),
            client_id: "beffroi".to_owned(),
            protocol: MqttVersion::default(),
            topics: DEFAULT_TOPICS.iter().map(|t| (*t).to_owned()).collect(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            inflight: 1000,
            session_expiry: Duration::from_secs(7 * 24 * 3600),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
            broker_auth: false,
        }
    }
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("protocol", &self.protocol)
            .field("topics", &self.topics)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .field("inflight", &self.inflight)
            .field("session_expiry", &self.session_expiry)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

/// Where the broker listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> MqttError {
    MqttError::Config {
        field,
        message: message.into(),
    }
}

impl MqttConfig {
    /// Checks everything the client library would otherwise panic on or the broker refuse,
    /// and returns the broker address.
    pub(crate) fn validate(&self) -> Result<BrokerAddr, MqttError> {
        let addr = parse_url(&self.url)?;
        if self.client_id.is_empty() {
            return Err(invalid(
                "client_id",
                "must not be empty: the persistent session is keyed on it",
            ));
        }
        if self.client_id.len() > 65_535 {
            return Err(invalid("client_id", "longer than 65535 bytes"));
        }
        if self.topics.is_empty() {
            return Err(invalid("topics", "at least one topic filter is required"));
        }
        for t in &self.topics {
            if !rumqttc::valid_filter(t) {
                return Err(invalid(
                    "topics",
                    format!("{t:?} is not a valid topic filter"),
                ));
            }
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid(
                "password",
                "a password needs a username (MQTT forbids a password alone)",
            ));
        }
        if self.keep_alive < Duration::from_secs(1) || self.keep_alive.as_secs() > 65_535 {
            return Err(invalid("keep_alive", "must be between 1 s and 65535 s"));
        }
        if self.inflight == 0 {
            return Err(invalid("inflight", "must be at least 1"));
        }
        if self.protocol == MqttVersion::V5 && self.session_expiry.as_secs() == 0 {
            return Err(invalid(
                "session_expiry",
                "must be at least 1 s: a zero expiry ends the session at disconnection",
            ));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(invalid(
                "backoff_min",
                "must be positive and not above backoff_max",
            ));
        }
        Ok(addr)
    }
}

/// Parses `mqtt://host[:port]` (or `tcp://`), IPv6 hosts in brackets.
pub(crate) fn parse_url(url: &str) -> Result<BrokerAddr, MqttError> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("mqtt://") || lower.starts_with("tcp://") {
        url.split_once("://").map_or("", |(_, r)| r)
    } else if lower.starts_with("mqtts://") || lower.starts_with("ssl://") {
        return Err(invalid(
            "url",
            "TLS is not supported yet: use a loopback or LAN broker with mqtt://",
        ));
    } else {
        return Err(invalid(
            "url",
            format!("{url:?}: expected mqtt://host:port"),
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(invalid(
            "url",
            format!("{url:?}: only mqtt://host:port (credentials go in username/password)"),
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid("url", format!("{url:?}: unclosed '[' in the host")))?;
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(invalid("url", format!("{url:?}: expected ':' after ']'"))),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("url", format!("{url:?}: no host")));
    }
    let port = match port {
        None => 1883,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(invalid("url", format!("{url:?}: port must be 1-65535"))),
        },
    };
    Ok(BrokerAddr {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(url: &str) -> Result<(String, u16), String> {
        parse_url(url)
            .map(|a| (a.host, a.port))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn urls() {
        assert_eq!(addr("mqtt://10.0.0.5:1884"), Ok(("10.0.0.5".into(), 1884)));
        assert_eq!(addr("mqtt://broker"), Ok(("broker".into(), 1883)));
        assert_eq!(addr("tcp://broker:1883/"), Ok(("broker".into(), 1883)));
        assert_eq!(addr("MQTT://[::1]:1999"), Ok(("::1".into(), 1999)));
        assert_eq!(addr("mqtt://[::1]"), Ok(("::1".into(), 1883)));
        for bad in [
            "broker:1883",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://b:0",
            "mqtt://b:99999",
            "mqtt://b:x",
            "mqtt://u:p@b:1883",
            "mqtt://b:1883/topic",
            "mqtt://[::1",
            "mqtts://b:8883",
        ] {
            assert!(addr(bad).is_err(), "{bad} should be refused");
        }
        assert!(addr("mqtts://b").expect_err("TLS").contains("TLS"));
    }

    #[test]
    fn validation_names_the_field() {
        let ok = MqttConfig::default();
        assert!(ok.validate().is_ok());
        let field = |c: MqttConfig| match c.validate() {
            Err(MqttError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(
            field(MqttConfig {
                client_id: String::new(),
                ..ok.clone()
            }),
            "client_id"
        );
        assert_eq!(
            field(MqttConfig {
                topics: vec![],
                ..ok.clone()
            }),
            "topics"
        );
        assert_eq!(
            field(MqttConfig {
                topics: vec!["a/#/b".into()],
                ..ok.clone()
            }),
            "topics"
        );
        assert_eq!(
            field(MqttConfig {
                password: Some("p".into()),
                ..ok.clone()
            }),
            "password"
        );
        assert_eq!(
            field(MqttConfig {
                keep_alive: Duration::from_millis(500),
                ..ok.clone()
            }),
            "keep_alive"
        );
        assert_eq!(
            field(MqttConfig {
                inflight: 0,
                ..ok.clone()
            }),
            "inflight"
        );
        assert_eq!(
            field(MqttConfig {
                session_expiry: Duration::ZERO,
                ..ok.clone()
            }),
            "session_expiry"
        );
        assert_eq!(
            field(MqttConfig {
                backoff_min: Duration::from_secs(60),
                ..ok.clone()
            }),
            "backoff_min"
        );
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = MqttConfig {
            username: Some("beffroi".into()),
            password: Some("hunter2".into()),
            ..MqttConfig::default()
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("<redacted>"));
    }
}
