//! The HTTP connections: hyper's HTTP/1.1 server with what `axum::serve` leaves out — a
//! deadline for a request's headers (a client that trickles them, "slowloris", is cut off;
//! it also closes a kept-alive connection idle between requests) and a bound on the
//! connections served at once (beyond it a new connection is closed at once and counted).
//! Graceful shutdown: on `stop`, every connection finishes its request in flight and
//! closes; the function returns when all have.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Connection limits of the HTTP server.
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Connections closed because `max_connections` were being served.
    pub refused: prometheus_client::metrics::counter::Counter,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            refused: Default::default(),
        }
    }
}

/// Serves `app` on `listener` until `stop`, then drains the connections.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, addr) = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, mostly: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if limits.refused.inc() == 0 {
                tracing::warn!(
                    max = limits.max_connections,
                    "HTTP connection limit reached: new connections are closed (counted in \
                     beffroi_http_connections_refused_total; logged once)"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        let header_timeout = limits.header_timeout;
        conns.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("hello {}", peer.ip())
            }),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, app, limits, stop.clone()));
        (addr, stop, task)
    }

    /// Reads until the server closes the connection (or the deadline, a failure).
    async fn read_to_close(s: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .expect("the server closes the connection")
            .expect("read");
        buf
    }

    #[tokio::test]
    async fn a_client_trickling_its_headers_is_cut_off_and_connections_are_bounded() {
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            max_connections: 2,
            refused: Default::default(),
        };
        let refused = limits.refused.clone();
        let (addr, stop, task) = start(limits).await;

        // A normal request is served, with the peer's address.
        let mut ok = tokio::net::TcpStream::connect(addr).await.expect("connect");
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = String::from_utf8(read_to_close(&mut ok).await).expect("utf-8");
        assert!(
            answer.contains("200 OK") && answer.contains("hello 127.0.0.1"),
            "{answer}"
        );

        // Two clients that never finish their headers hold both slots...
        let mut slow1 = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow1
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let mut slow2 = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow2.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        // ...so a third one is closed at once and counted.
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
        assert!(read_to_close(&mut third).await.is_empty());
        assert_eq!(refused.get(), 1);
        // The header deadline cuts the slow ones off.
        read_to_close(&mut slow1).await;
        read_to_close(&mut slow2).await;

        // The slots are free again.
        let mut again = tokio::net::TcpStream::connect(addr).await.expect("connect");
        again
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        assert!(String::from_utf8_lossy(&read_to_close(&mut again).await).contains("200 OK"));
        stop.cancel();
        task.await.expect("server task");
    }
}
