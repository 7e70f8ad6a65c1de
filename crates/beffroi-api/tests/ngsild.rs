//! The NGSI-LD API over a real engine and store: entities by type with their count,
//! tenants per commune within the caller's scope, a geo-query, the served contexts, and a
//! subscription notified when an incident opens. The last test drives it with a real
//! NGSI-LD client library (PyPI `ngsildclient`) over a real socket.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::Value as Json;
use support::Harness;
use tower::ServiceExt;

const NOW: i64 = 1_796_000_000_000;
const TOKEN: &str = "admin-token-for-ngsild-tests";
const RULES: &str = r#"
[[rule]]
id = "test-level"
title = "Niveau — {site} — appeler Jean Dupont au 06 12 34 56 78"
category = "flood"
severity = "major"
key = "site"
kind = "water_level"
[rule.threshold]
field = "level_m"
above = 3.0
"#;

async fn get(
    h: &Harness,
    uri: &str,
    headers: &[(&str, &str)],
) -> (u16, axum::http::HeaderMap, Json) {
    let mut req = Request::builder()
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = h
        .app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .expect("body");
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Json::Null),
    )
}

async fn level(h: &Harness, device: &str, value: f64) {
    let req = Request::builder()
        .method("POST")
        .uri(format!("/api/v1/devices/{device}/observations?format=json"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(
            r#"{{"values":{{"level_m":{value}}},"time":{NOW}}}"#
        )))
        .expect("request");
    let resp = h.app.clone().oneshot(req).await.expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn entities_by_type_tenant_and_place_without_a_personal_value() {
    let h = support::harness(RULES, NOW, TOKEN, |s| s).await;
    let gauge = h.gauge();
    level(&h, &gauge, 3.4).await;
    // The incident committed.
    let mut alerts = Json::Null;
    for _ in 0..200 {
        let (_, _, a) = get(&h, "/ngsi-ld/v1/entities?type=Alert", &[]).await;
        if a.as_array().is_some_and(|l| !l.is_empty()) {
            alerts = a;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let alert = &alerts[0];
    assert_eq!(alert["type"], "Alert", "{alerts:#}");
    assert_eq!(alert["category"]["value"], "naturalDisaster", "{alert:#}");
    assert_eq!(alert["subCategory"]["value"], "flood", "{alert:#}");
    assert_eq!(alert["severity"]["value"], "high", "{alert:#}");
    let text = alerts.to_string();
    for secret in ["Dupont", "06 12 34 56 78", "Niveau"] {
        assert!(!text.contains(secret), "`{secret}` in an entity: {text}");
    }

    // Counted by type, with the JSON-LD context linked.
    let (status, headers, devices) = get(
        &h,
        "/ngsi-ld/v1/entities?type=Device&count=true&limit=5",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{devices}");
    let total: usize = headers
        .get("NGSILD-Results-Count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("count");
    assert!(total > 100, "{total}");
    assert_eq!(devices.as_array().map(Vec::len), Some(5));
    assert!(
        headers
            .get(header::LINK)
            .is_some_and(|l| l.to_str().is_ok_and(|l| l.contains("jsonldContexts")))
    );
    // A tenant is one commune: fewer devices, all of it.
    let (status, headers, _) = get(
        &h,
        "/ngsi-ld/v1/entities?type=Device&count=true&limit=0",
        &[("NGSILD-Tenant", "chenove")],
    )
    .await;
    assert_eq!(status, 200);
    let in_chenove: usize = headers
        .get("NGSILD-Results-Count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("count");
    assert!(
        in_chenove > 0 && in_chenove < total,
        "{in_chenove} of {total}"
    );
    let (status, _, e) = get(
        &h,
        "/ngsi-ld/v1/entities?type=Device",
        &[("NGSILD-Tenant", "nowhere")],
    )
    .await;
    assert_eq!(status, 404, "{e}");
    assert_eq!(
        e["type"],
        "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant"
    );
    // A geo-query: within 1 km of the gauge, the gauge itself.
    let (_, _, d) = get(
        &h,
        &format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:dijon-metropole:{gauge}"),
        &[],
    )
    .await;
    let [lon, lat] = [
        d["location"]["value"]["coordinates"][0]
            .as_f64()
            .expect("lon"),
        d["location"]["value"]["coordinates"][1]
            .as_f64()
            .expect("lat"),
    ];
    let (status, _, near) = get(
        &h,
        &format!("/ngsi-ld/v1/entities?type=Device&georel=near%3BmaxDistance%3D%3D1000&geometry=Point&coordinates=%5B{lon},{lat}%5D&limit=1000"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{near}");
    let near = near.as_array().expect("list");
    assert!(near.iter().any(|e| e["id"] == d["id"]), "{near:?}");
    assert!(near.len() < total);
    // The contexts are served, and one from elsewhere is refused without being fetched.
    let (status, _, ctx) = get(&h, "/ngsi-ld/v1/jsonldContexts/beffroi.jsonld", &[]).await;
    assert_eq!(status, 200);
    assert!(ctx["@context"]["Alert"].is_object(), "{ctx}");
    let (status, _, e) = get(
        &h,
        "/ngsi-ld/v1/entities?type=Device",
        &[("Link", "<https://evil.example/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"")],
    )
    .await;
    assert_eq!(status, 503, "{e}");
    // A bad query names its parameter.
    let (status, _, e) = get(&h, "/ngsi-ld/v1/entities?type=Device&q=level%3E%3E1", &[]).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["detail"].as_str().is_some_and(|d| d.starts_with('q')),
        "{e}"
    );
}

/// `ngsildclient` connects, counts and lists by type, runs a geo-query, subscribes, and
/// receives the notification of an incident opened after it subscribed. Skipped (or
/// failed under `BEFFROI_REQUIRE_SERVICES`) without the package, which `.ci/run` installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_ngsi_ld_client_queries_and_is_notified() {
    if !support::python_has("ngsildclient", "ngsildclient") {
        return;
    }
    let h = support::harness(RULES, NOW, TOKEN, |s| s).await;
    let port = support::listen(h.app.clone()).await.port();
    let script = support::root().join("crates/beffroi-api/tests/ngsild_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let rx_wait = tokio::task::spawn_blocking(move || {
        let wait_line = |pred: &dyn Fn(&str) -> bool| -> String {
            loop {
                match rx.recv_timeout(std::time::Duration::from_secs(90)) {
                    Ok(l) if pred(&l) => return l,
                    Ok(_) => {}
                    Err(e) => panic!("the client said nothing more ({e})"),
                }
            }
        };
        let _ = wait_line(&|l| l == "subscribed");
        wait_line(&|l| l.starts_with('{'))
    });
    // Once subscribed, a river above the threshold opens an incident: an Alert.
    let gauge = h.gauge();
    for _ in 0..6000 {
        let (_, _, subs) = get(&h, "/ngsi-ld/v1/subscriptions", &[]).await;
        if subs.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    level(&h, &gauge, 3.6).await;
    let report = rx_wait.await.expect("report");
    let out = child.wait_with_output().expect("python3");
    let report: Json = serde_json::from_str(&report)
        .unwrap_or_else(|e| panic!("{e}: {report}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["connected"], true, "{report:#}");
    assert!(
        report["devices"].as_u64().is_some_and(|n| n > 100),
        "{report:#}"
    );
    assert_eq!(
        report["buildings"], report["buildings_listed"],
        "{report:#}"
    );
    assert_eq!(
        report["building_types"],
        serde_json::json!(["Building"]),
        "{report:#}"
    );
    let (near, wider) = (report["near_1500"].as_u64(), report["near_5000"].as_u64());
    assert!(near.is_some_and(|n| n > 0) && near < wider, "{report:#}");
    assert!(
        report["farthest_near_1500"]
            .as_f64()
            .is_some_and(|d| d <= 1500.0),
        "{report:#}"
    );
    let n = &report["notifications"];
    assert_eq!(n.as_array().map(Vec::len), Some(1), "{report:#}");
    let body = &n[0]["body"];
    assert_eq!(body["type"], "Notification", "{body:#}");
    assert_eq!(body["subscriptionId"], report["subscription"], "{report:#}");
    assert_eq!(body["data"][0]["type"], "Alert", "{body:#}");
    assert!(!body.to_string().contains("Dupont"), "{body:#}");
}
