//! `beffroi demo --peer`: the demo and a neighbouring territory on the next port, under an
//! agreement; the demo's flood along the Ouche appears on the neighbour's console as an
//! incident from a neighbour, and the demo shows the link up.

mod support;

use std::time::Duration;

use support::http::Api;
use support::poll;

use support::http::ADMIN_PASSWORD as ADMIN;

#[test]
fn the_demo_s_flood_crosses_to_the_neighbour() {
    let demo = support::demo_run::start_with(&["admin"], 120, &["--peer"], Some(ADMIN));
    let port: u16 = demo
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let peer = format!("http://127.0.0.1:{}", port + 1);
    let log = || {
        std::fs::read_to_string(demo.dir.path().join("demo.err"))
            .map(|t| support::tail(&t, 40))
            .unwrap_or_default()
    };
    poll(
        "the neighbour listening",
        Duration::from_secs(60),
        log,
        || {
            ureq::get(&format!("{peer}/healthz"))
                .call()
                .ok()
                .map(|_| ())
        },
    );
    let at_peer = Api::login_as(&peer, "admin", ADMIN);
    let crossed = poll(
        "a flood from the demo at the neighbour",
        Duration::from_secs(120),
        log,
        || {
            at_peer
                .incidents("")
                .into_iter()
                .find(|i| i["category"] == "neighbour" && i["rule"] == "fed:dijon-metropole")
        },
    );
    let title = crossed["title"].as_str().expect("title");
    assert!(title.starts_with("dijon-metropole — "), "{title}");
    let commune = crossed["commune"].as_str().expect("commune");
    assert!(
        ["dijon", "longvic"].contains(&commune),
        "the border zone only: {commune}"
    );
    // The quiet neighbour opens nothing of its own (no silence per device).
    let own: Vec<_> = at_peer
        .incidents("")
        .into_iter()
        .filter(|i| i["category"] != "neighbour")
        .collect();
    assert!(own.is_empty(), "{own:#?}");
    let at_demo = Api::login_as(&demo.base, "admin", ADMIN);
    let links = at_demo.get_ok("/api/v1/federation/links");
    assert_eq!(links[0]["partner"], "voisin-demo", "{links:#}");
    assert_eq!(links[0]["state"], "up", "{links:#}");
}
