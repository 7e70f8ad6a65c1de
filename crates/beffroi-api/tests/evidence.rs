//! The evidence of an incident, end to end (API → engine → store → API): the trigger that
//! opened it is kept as structure whatever happens later, its peak and current values
//! follow the readings, its title shows the current value, and the readings the detail
//! asks for are those around the trigger, not the device's latest.

use axum::body::Body;
use axum::http::{Method, Request, header};
use beffroi_core::Timestamp;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

const NOW: i64 = 1_795_694_400_000;
const MIN: i64 = 60_000;
const TOKEN: &str = "tok-evidence";

const RULES: &str = r#"
[[rule]]
id = "level-test"
title = "Niveau haut — {site} ({value} m)"
category = "flood"
severity = "major"
key = "device"
auto_resolve = true
kind = "water_level"
[rule.threshold]
field = "level_m"
above = 3.0
[[rule.escalate]]
after = "30m"
severity = "critical"
"#;

mod support;
use support::Harness;

async fn harness() -> Harness {
    support::harness(RULES, NOW, TOKEN, |s| s).await
}

impl Harness {
    async fn call(&self, method: Method, uri: &str, body: Option<Json>) -> (u16, Json) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("answer");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
    }

    async fn level(&self, value: f64, at: i64) {
        let d = self.gauge();
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/devices/{d}/observations?format=json"),
                Some(json!({"values": {"level_m": value}, "time": at})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn incident(&self) -> Json {
        let (status, list) = self.call(Method::GET, "/api/v1/incidents", None).await;
        assert_eq!(status, 200, "{list}");
        let id = list
            .as_array()
            .expect("list")
            .iter()
            .find(|i| i["rule"] == "level-test")
            .and_then(|i| i["id"].as_u64())
            .unwrap_or_else(|| panic!("the rule opened an incident: {list:#}"));
        let (status, detail) = self
            .call(Method::GET, &format!("/api/v1/incidents/{id}"), None)
            .await;
        assert_eq!(status, 200, "{detail}");
        detail
    }
}

fn rfc3339(ms: i64) -> String {
    Timestamp(ms).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_keeps_the_trigger_and_reads_the_readings_around_it() {
    let h = harness().await;
    let trigger_at = NOW - 300 * MIN;
    // Calm before, the reading that fires at 3.2, a rise to 3.9, then hours of readings
    // still above the threshold, lower and lower.
    for (i, v) in [2.6, 2.7, 2.8, 2.9].into_iter().enumerate() {
        h.level(v, trigger_at - (4 - i as i64) * 10 * MIN).await;
    }
    h.level(3.2, trigger_at).await;
    h.level(3.6, trigger_at + 10 * MIN).await;
    h.level(3.9, trigger_at + 20 * MIN).await;
    let mut v = 3.8;
    let mut at = trigger_at + 30 * MIN;
    while at <= NOW - 10 * MIN {
        h.level(v, at).await;
        v = f64::max(3.1, v - 0.02);
        at += 10 * MIN;
    }
    let last = v + 0.02;
    let d = h.incident().await;
    let trigger = &d["trigger"];
    assert_eq!(trigger["kind"], "threshold", "{d:#}");
    assert_eq!(trigger["field"], "level_m");
    assert_eq!(trigger["unit"], "m");
    assert_eq!(trigger["device"], h.gauge());
    assert_eq!(trigger["op"], "above");
    assert_eq!(trigger["threshold"], 3.0);
    assert_eq!(trigger["value"], 3.2);
    assert_eq!(trigger["at"], rfc3339(trigger_at));
    assert_eq!(d["peak"], 3.9, "{d:#}");
    assert!(
        (d["current"].as_f64().expect("current") - last).abs() < 1e-9,
        "current is the latest reading: {d:#}"
    );
    let title = d["title"].as_str().expect("title");
    assert!(
        title.ends_with(&format!("({} m)", d["current"])),
        "the title shows the current value, not the opening one: {title}"
    );
    assert_eq!(d["opened_at"], rfc3339(trigger_at));
    assert!(d["reopened_at"].is_null());

    // Without a window: the device's newest readings, hours after the trigger.
    let gauge = h.gauge();
    let (status, latest) = h
        .call(Method::GET, &format!("/api/v1/devices/{gauge}"), None)
        .await;
    assert_eq!(status, 200, "{latest}");
    let newest = latest["recent"][0]["time"]
        .as_str()
        .expect("newest")
        .to_string();
    assert!(newest > rfc3339(trigger_at + 120 * MIN));

    // The window around the trigger: the readings of the hour around it, the firing one
    // among them, none outside.
    let (from, until) = (trigger_at - 30 * MIN, trigger_at + 30 * MIN);
    let (status, around) = h
        .call(
            Method::GET,
            &format!(
                "/api/v1/devices/{gauge}?from={}&until={}",
                rfc3339(from),
                rfc3339(until)
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{around}");
    let recent = around["recent"].as_array().expect("recent");
    let times: Vec<&str> = recent.iter().filter_map(|o| o["time"].as_str()).collect();
    assert_eq!(
        recent.len(),
        7,
        "three before, the trigger, three after: {times:?}"
    );
    assert!(
        times
            .iter()
            .all(|t| *t >= rfc3339(from).as_str() && *t <= rfc3339(until).as_str())
    );
    assert!(
        recent
            .iter()
            .any(|o| o["time"] == rfc3339(trigger_at) && o["value"] == 3.2),
        "the reading that fired is in the window: {around:#}"
    );

    // A window backwards or longer than 48 h is refused with a code.
    for q in [
        format!("from={}&until={}", rfc3339(until), rfc3339(from)),
        format!(
            "from={}&until={}",
            rfc3339(from - 49 * 60 * MIN),
            rfc3339(from)
        ),
        "from=yesterday".to_string(),
    ] {
        let (status, body) = h
            .call(Method::GET, &format!("/api/v1/devices/{gauge}?{q}"), None)
            .await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopening_by_the_rule_is_dated_and_the_trigger_stays_the_first() {
    let h = harness().await;
    let first = NOW - 120 * MIN;
    h.level(3.2, first).await;
    h.level(2.5, first + 10 * MIN).await; // clears: auto-resolved
    let d = h.incident().await;
    assert_eq!(d["status"], "resolved", "{d:#}");
    let again = first + 20 * MIN;
    h.level(3.4, again).await;
    let d = h.incident().await;
    assert_eq!(d["status"], "new", "{d:#}");
    assert_eq!(d["opened_at"], rfc3339(first));
    assert_eq!(d["reopened_at"], rfc3339(again));
    assert_eq!(d["last_opened_at"], rfc3339(again));
    assert_eq!(d["trigger"]["value"], 3.2, "the first trigger is kept");
    assert_eq!(d["trigger"]["at"], rfc3339(first));
    assert_eq!(d["current"], 3.4);
    assert_eq!(d["peak"], 3.4);
}
