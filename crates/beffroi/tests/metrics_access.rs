//! `/metrics` tells login results, cyber counts and ingest figures: on the main address it
//! needs a caller with `metrics.read` (an administrator, a security analyst, or a
//! `monitoring` token for the scraper); `[http] metrics_listen` serves it alone, without a
//! token, on an address of its own.

mod support;

use std::net::{Ipv4Addr, TcpListener};

use support::beffroi::Beffroi;
use support::http::{Api, agent, get_text};

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn metrics_need_a_token_on_the_main_address_and_are_alone_on_their_own() {
    let port = free_port();
    let b = Beffroi::start_extra(&format!("[http]\nmetrics_listen = \"127.0.0.1:{port}\"\n"));
    let a = agent();
    let (status, body) = get_text(&a, &format!("{}/metrics", b.base())).expect("reachable");
    assert_eq!(status, 401, "anonymous /metrics: {body}");
    assert!(!body.contains("beffroi_auth_logins_total"));
    let metrics = Api::login(&b.base()).metrics();
    assert!(metrics.contains("beffroi_auth_logins_total"), "{metrics}");

    let own = format!("http://127.0.0.1:{port}");
    let (status, body) = get_text(&a, &format!("{own}/metrics")).expect("metrics listener");
    assert_eq!(status, 200);
    assert!(
        body.contains("beffroi_observations_accepted_total"),
        "{body}"
    );
    // Nothing else is served there.
    for path in ["/api/v1/incidents", "/healthz", "/", "/api/v1/auth/login"] {
        let (status, _) = get_text(&a, &format!("{own}{path}")).expect("metrics listener");
        assert_eq!(status, 404, "{path} on the metrics listener");
    }
}
