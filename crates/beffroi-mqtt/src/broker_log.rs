//! The broker feed: Mosquitto's own log, published on `$SYS/broker/log/<level>` when it
//! runs with `log_dest topic`, parsed into [`SecuritySignal`]s. Pure; the text is untrusted
//! (a client chooses its id and user name), so the parser never panics, bounds what it
//! keeps and only recognises the fixed shapes Mosquitto 2.0.11 prints:
//!
//! ```text
//! 1795745955: New connection from 127.0.0.1:54290 on port 18833.
//! 1795745955: New client connected from 127.0.0.1:54308 as c3 (p2, c1, k60, u'dev1').
//! 1795745955: Client <unknown> disconnected, not authorised.
//! ```
//!
//! A refused CONNECT is logged without the client id or user name (`<unknown>`), after its
//! `New connection from <address>` line: the parser ties the failure to the address of the
//! last such line (best effort: Mosquitto is single-threaded and logs both lines for one
//! connection back to back, but another connection could in theory come between).

use beffroi_core::SecuritySignal;

/// Topic filter of the broker's log.
pub const LOG_FILTER: &str = "$SYS/broker/log/#";
/// Longest identifier kept from a log line.
const MAX_ID: usize = 256;

/// Whether a topic is one of the broker's log topics.
pub fn is_log_topic(topic: &str) -> bool {
    topic.starts_with("$SYS/broker/log/")
}

/// Stateful parser of the broker's log lines.
#[derive(Debug, Default)]
pub struct BrokerLogParser {
    last_address: Option<String>,
}

fn bounded(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= MAX_ID && !s.chars().any(char::is_control)).then(|| s.into())
}

/// The host of a `host:port` address (`[v6]:port` → `v6`): a client reconnects from a new
/// port every time, so identity and brute-force detection compare hosts.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(addr, |(h, _)| h);
    }
    match addr.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => addr,
    }
}

/// Strips the `<unix time>: ` prefix, if any.
fn strip_time(line: &str) -> &str {
    match line.split_once(": ") {
        Some((t, rest)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => line,
    }
}

impl BrokerLogParser {
    /// Parses one line (or one log message); `None` for lines that are not about
    /// connections.
    pub fn parse(&mut self, line: &str) -> Option<SecuritySignal> {
        let line = strip_time(line.trim_end_matches(['\n', '\r']));
        if let Some(rest) = line.strip_prefix("New connection from ") {
            // "<address> on port <port>."
            let addr = rest.rsplit_once(" on port ").map(|(a, _)| a)?;
            self.last_address = bounded(host_of(addr));
            return None;
        }
        if let Some(rest) = line.strip_prefix("New client connected from ") {
            // "<address> as <client id> (p2, c1, k60, u'<user>')."
            let (addr, rest) = rest.split_once(" as ")?;
            // The client id may contain spaces or parentheses: the details are the last
            // " (" group.
            let (client_id, details) = match rest.rfind(" (") {
                Some(i) => (&rest[..i], &rest[i + 2..]),
                None => (rest.trim_end_matches('.'), ""),
            };
            // The flags before it (p2, c1, k60) hold no quote: the first `u'` opens the user
            // name, the last quote closes it (a user name may itself hold `u'`).
            let username = details
                .find("u'")
                .and_then(|i| {
                    let u = &details[i + 2..];
                    u.rfind('\'').map(|j| &u[..j])
                })
                .and_then(bounded);
            return Some(SecuritySignal::Connected {
                client_id: bounded(client_id)?,
                username,
                address: bounded(host_of(addr)),
            });
        }
        if let Some(rest) = line.strip_prefix("Client ") {
            // "<client id> disconnected, not authorised." (bad or unknown credential,
            // revoked device), or "... disconnected, bad username or password" on some
            // versions.
            for tail in [
                " disconnected, not authorised.",
                " disconnected, not authorised",
                " disconnected, bad username or password.",
                " disconnected, bad username or password",
            ] {
                if let Some(id) = rest.strip_suffix(tail) {
                    let client_id = bounded(id).unwrap_or_else(|| "<unknown>".into());
                    return Some(SecuritySignal::AuthFailure {
                        client_id,
                        username: None,
                        address: self.last_address.take(),
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mosquitto_2_0_11_lines() {
        let mut p = BrokerLogParser::default();
        assert_eq!(
            p.parse("1795745955: New connection from 127.0.0.1:54290 on port 18833."),
            None
        );
        assert_eq!(
            p.parse("1795745955: Client <unknown> disconnected, not authorised."),
            Some(SecuritySignal::AuthFailure {
                client_id: "<unknown>".into(),
                username: None,
                address: Some("127.0.0.1".into()),
            })
        );
        // The address is used once.
        assert_eq!(
            p.parse("1795745956: Client <unknown> disconnected, not authorised."),
            Some(SecuritySignal::AuthFailure {
                client_id: "<unknown>".into(),
                username: None,
                address: None,
            })
        );
        assert_eq!(
            p.parse(
                "1795745955: New client connected from 127.0.0.1:54308 as c3 (p2, c1, k60, u'dev1')."
            ),
            Some(SecuritySignal::Connected {
                client_id: "c3".into(),
                username: Some("dev1".into()),
                address: Some("127.0.0.1".into()),
            })
        );
        assert_eq!(
            p.parse("1795745955: New client connected from [::1]:5 as a (b) (p2, c1, k60)."),
            Some(SecuritySignal::Connected {
                client_id: "a (b)".into(),
                username: None,
                address: Some("::1".into()),
            })
        );
        // A user name that is a single `u` (found by the property test below).
        assert_eq!(
            p.parse("1: New client connected from 10.0.0.1:1 as a (p2, c1, k60, u'u')."),
            Some(SecuritySignal::Connected {
                client_id: "a".into(),
                username: Some("u".into()),
                address: Some("10.0.0.1".into()),
            })
        );
        assert_eq!(p.parse("1795745955: Client c3 disconnected."), None);
        assert_eq!(
            p.parse("1795745955: Saving in-memory database to /x."),
            None
        );
        // Hosts, not ports: a device reconnecting from a new port keeps its identity.
        assert_eq!(host_of("10.1.2.3:5555"), "10.1.2.3");
        assert_eq!(host_of("[fe80::1]:1883"), "fe80::1");
        assert_eq!(host_of("fe80::1"), "fe80::1");
        assert_eq!(host_of("gateway"), "gateway");
        assert!(is_log_topic("$SYS/broker/log/N"));
        assert!(!is_log_topic("beffroi/t/d/senml"));
    }

    proptest! {
        #[test]
        fn never_panics(lines in proptest::collection::vec(".{0,200}", 0..20)) {
            let mut p = BrokerLogParser::default();
            for l in &lines {
                let _ = p.parse(l);
            }
        }

        /// Whatever client id and user a client picks, a connection line gives them back
        /// (or nothing, for ids the parser does not keep), never another device's name.
        #[test]
        fn connected_roundtrip(id in "[a-zA-Z0-9_ ()'-]{1,40}", user in "[a-zA-Z0-9_-]{1,40}",
                               port in 1u16..) {
            let mut p = BrokerLogParser::default();
            let line = format!(
                "1: New client connected from 10.0.0.1:{port} as {id} (p2, c1, k60, u'{user}')."
            );
            match p.parse(&line) {
                Some(SecuritySignal::Connected { client_id, username, address }) => {
                    prop_assert_eq!(client_id, id);
                    prop_assert_eq!(username, Some(user));
                    prop_assert_eq!(address, Some("10.0.0.1".to_string()));
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn auth_failure_any_id(id in "[^\\x00-\\x1f]{1,60}") {
            let mut p = BrokerLogParser::default();
            let line = format!("17: Client {id} disconnected, not authorised.");
            let got = p.parse(&line);
            let is_failure = matches!(got, Some(SecuritySignal::AuthFailure { .. }));
            prop_assert!(is_failure);
        }
    }
}
