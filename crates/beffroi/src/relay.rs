//! A standby serves the console by relaying it to the node that runs the engine.
//!
//! Behind a load balancer that sends people to any node, a request that reaches a standby
//! is passed, as it came, to the address the lease's holder advertises
//! (`[cluster] advertise`), and its answer streamed back: pages, the API, the live stream.
//! Who may see what is decided once, on the active node, by the same code as for a request
//! made to it directly; the standby holds no state to get wrong. See ADR 0044.
//!
//! - Hop-by-hop headers are dropped both ways; the client's address is appended to
//!   `X-Forwarded-For` (the active node honours it from the addresses in its
//!   `[http] trusted_proxies`); `X-Beffroi-Relayed-By` names the standby, and a request
//!   that carries it is never relayed again (two standbys that each believe the other
//!   active cannot loop).
//! - No known active node, or one that does not answer within [`CONNECT_TIMEOUT`] (a
//!   takeover under way): `503 standby` with `Retry-After: 1`, as before relaying.
//! - A relayed live stream that goes silent for [`STREAM_IDLE`] (three of the stream's
//!   15-second keep-alives) is ended: an active node that vanished without closing its
//!   connections (power, network) must not leave the console waiting on a dead stream; it
//!   reconnects, and is answered by whichever node runs the engine then.
//! - `/healthz` on a standby asks the active node's: `200 relaying` when it answers `200`,
//!   so that a load balancer keeps a standby in rotation only while it reaches an engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use beffroi_nats::lease_kv::Holders;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::cluster::{ClusterStats, standby_answer};

/// Marks a relayed request, with the standby's id.
pub const RELAYED_BY: &str = "x-beffroi-relayed-by";
/// How long a standby tries to reach the active node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long it waits for the answer's head (a live stream's comes at once).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The lease whose holder runs the engine.
const ACTIVE: u32 = 0;
/// Silence after which a relayed live stream is ended.
pub const STREAM_IDLE: Duration = Duration::from_secs(45);

pub struct Relay {
    node: String,
    /// What this node advertises: never relayed to (it is on standby, not active).
    own: Option<String>,
    holders: watch::Receiver<Holders>,
    client: Client<HttpConnector, Body>,
    stats: Arc<ClusterStats>,
}

impl Relay {
    pub fn new(
        node: String,
        own: Option<String>,
        holders: watch::Receiver<Holders>,
        stats: Arc<ClusterStats>,
    ) -> Relay {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Relay {
            node,
            own,
            holders,
            client,
            stats,
        }
    }

    /// The address of the node running the engine, if another node holds the lease and
    /// advertises one.
    pub fn target(&self) -> Option<String> {
        target_of(&self.holders.borrow(), &self.node, self.own.as_deref())
    }

    /// Answers `req` on a standby: relayed to the active node, or `503 standby`.
    pub async fn answer(&self, req: Request) -> Response {
        if req.uri().path() == "/healthz" {
            return self.health().await;
        }
        let Some(target) = self
            .target()
            .filter(|_| !req.headers().contains_key(RELAYED_BY))
        else {
            self.stats.relay_failures.fetch_add(1, Ordering::Relaxed);
            return standby_answer(&self.node);
        };
        match self.forward(&target, req).await {
            Some(r) => {
                self.stats.relayed.fetch_add(1, Ordering::Relaxed);
                r
            }
            None => {
                self.stats.relay_failures.fetch_add(1, Ordering::Relaxed);
                standby_answer(&self.node)
            }
        }
    }

    /// `200 relaying` while the active node answers its own `/healthz` with `200`.
    async fn health(&self) -> Response {
        let Some(target) = self.target() else {
            return standby_answer(&self.node);
        };
        let Ok(uri) = format!("http://{target}/healthz").parse::<Uri>() else {
            return standby_answer(&self.node);
        };
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = uri;
        if let Ok(v) = HeaderValue::from_str(&self.node) {
            req.headers_mut().insert(RELAYED_BY, v);
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(r)) if r.status() == StatusCode::OK => {
                (StatusCode::OK, format!("relaying to {target}\n")).into_response()
            }
            _ => standby_answer(&self.node),
        }
    }

    /// `req` sent to `target` and its answer streamed back; `None` if it could not be sent
    /// or no answer came.
    async fn forward(&self, target: &str, mut req: Request) -> Option<Response> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        *req.uri_mut() = format!("http://{target}{path}").parse::<Uri>().ok()?;
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        if let Some(peer) = peer {
            let chain = beffroi_api::routes::forwarded_for(headers);
            let chain = if chain.is_empty() {
                peer.to_string()
            } else {
                format!("{chain}, {peer}")
            };
            headers.remove("x-forwarded-for");
            if let Ok(v) = HeaderValue::from_str(&chain) {
                headers.insert(HeaderName::from_static("x-forwarded-for"), v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&self.node) {
            headers.insert(RELAYED_BY, v);
        }
        match tokio::time::timeout(HEAD_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(answer)) => {
                let (mut parts, body) = answer.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let streaming = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/event-stream"));
                let body = if streaming {
                    ended_when_idle(Body::new(body), STREAM_IDLE)
                } else {
                    Body::new(body)
                };
                Some(Response::from_parts(parts, body))
            }
            Ok(Err(e)) => {
                tracing::debug!(target, error = %e, "relay to the active node failed");
                None
            }
            Err(_) => {
                tracing::debug!(target, "the active node did not answer in time");
                None
            }
        }
    }
}

/// `body`, ended with an error when no data comes for `idle`.
fn ended_when_idle(body: Body, idle: Duration) -> Body {
    use futures::StreamExt as _;
    let frames = http_body_util::BodyStream::new(body);
    let data = futures::stream::unfold(Some(frames), move |frames| async move {
        let mut frames = frames?;
        loop {
            match tokio::time::timeout(idle, frames.next()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Some((Ok(data), Some(frames)));
                    }
                }
                Ok(Some(Err(e))) => return Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => return None,
                Err(_) => {
                    return Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the relayed stream went silent",
                        )),
                        None,
                    ));
                }
            }
        }
    });
    Body::from_stream(data)
}

/// The address the lease's holder advertises, unless it is `node` itself, advertises
/// nothing usable, or advertises `own` (this node's address: a stale view of itself).
fn target_of(holders: &Holders, node: &str, own: Option<&str>) -> Option<String> {
    let holder = holders.get(&ACTIVE)?;
    if holder.node == node {
        return None;
    }
    let addr = std::str::from_utf8(&holder.advertised).ok()?.trim();
    let usable = crate::config::host_port(addr).is_some();
    (usable && Some(addr) != own).then(|| addr.to_string())
}

/// Removes the headers that concern one connection only (RFC 9110 §7.6.1), and those the
/// `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_nats::lease_kv::Holder;

    fn holders(node: &str, advertised: &str) -> Holders {
        [(
            ACTIVE,
            Holder {
                node: node.into(),
                advertised: bytes::Bytes::copy_from_slice(advertised.as_bytes()),
            },
        )]
        .into()
    }

    /// Relayed to the holder's advertised address; never to this node itself, to a node
    /// that advertises nothing usable, or when nobody holds the lease.
    #[test]
    fn the_target_is_the_other_holders_advertised_address() {
        let h = holders("n1", "10.0.0.11:8080");
        assert_eq!(
            target_of(&h, "n2", Some("10.0.0.12:8080")).as_deref(),
            Some("10.0.0.11:8080")
        );
        assert_eq!(target_of(&h, "n1", None), None);
        assert_eq!(target_of(&h, "n2", Some("10.0.0.11:8080")), None);
        assert_eq!(target_of(&holders("n1", "alive"), "n2", None), None);
        assert_eq!(target_of(&holders("n1", ""), "n2", None), None);
        assert_eq!(target_of(&holders("n1", "host:0"), "n2", None), None);
        assert_eq!(target_of(&Holders::new(), "n2", None), None);
    }

    /// A relayed stream passes its data on, and ends once nothing has come for the idle
    /// time; a stream that keeps talking is not cut (the clock is Tokio's, paused).
    #[tokio::test(start_paused = true)]
    async fn a_silent_relayed_stream_is_ended() {
        use futures::StreamExt as _;
        use http_body_util::BodyExt as _;
        let idle = Duration::from_secs(45);
        // One event every 15 s, three times, then silence.
        let talking = futures::stream::iter(0..3)
            .then(|i| async move {
                tokio::time::sleep(Duration::from_secs(15)).await;
                Ok::<_, std::io::Error>(bytes::Bytes::from(format!("data: {i}\n\n")))
            })
            .chain(futures::stream::pending());
        let started = tokio::time::Instant::now();
        let mut body = ended_when_idle(Body::from_stream(talking), idle);
        let mut got = String::new();
        let ended = loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(d) = frame.into_data() {
                        got.push_str(&String::from_utf8_lossy(&d));
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => panic!("the stream ended without an error"),
            }
        };
        assert_eq!(got, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
        assert!(ended.contains("silent"), "{ended}");
        assert_eq!(started.elapsed(), Duration::from_secs(45 + 45));
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("beffroi_session=x"),
        );
        h.insert("x-csrf-token", HeaderValue::from_static("t"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["cookie", "x-csrf-token"]);
    }
}
