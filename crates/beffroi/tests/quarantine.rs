//! Device quarantine through a real `beffroi serve` on the demo deployment: an analyst
//! quarantines a gauge, its observations are still stored and shown (marked), the acts are
//! logged with who and why, survive a restart, and release is an explicit act.

mod support;

use serde_json::{Value, json};
use support::beffroi::Beffroi;
use support::http::Api;
use support::now_ms;

const GAUGE: &str = "longvic-ouche-gauge-01";

fn post(api: &Api, path: &str, body: Value) -> (u16, Value) {
    api.post(path, &body.to_string())
}

#[test]
fn quarantine_is_logged_marks_observations_survives_restart_and_is_released() {
    let b = Beffroi::start(None);
    let api = Api::login(&b.base());
    let q = format!("/api/v1/devices/{GAUGE}/quarantine");
    let r = format!("/api/v1/devices/{GAUGE}/release");

    assert_eq!(
        post(&api, &q, json!({"reason": "  "})).0,
        400,
        "a reason is required"
    );
    assert_eq!(
        post(
            &api,
            "/api/v1/devices/ghost/quarantine",
            json!({"reason": "x"})
        )
        .0,
        404
    );
    assert_eq!(
        post(&api, &r, json!({"reason": "x"})).0,
        409,
        "not quarantined yet"
    );

    let (status, act) = post(&api, &q, json!({"reason": "impossible jump of 3.3 m"}));
    assert_eq!(status, 200, "{act}");
    assert_eq!(act["device"], GAUGE);
    assert_eq!(act["action"], "quarantine");
    assert_eq!(act["actor"], "user:admin");
    assert_eq!(act["reason"], "impossible jump of 3.3 m");
    let (status, again) = post(&api, &q, json!({"reason": "again"}));
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("invalid_transition")),
        "{again}"
    );

    // Its observations are accepted, stored and shown, marked.
    let (status, v) = api.post(
        &format!("/api/v1/devices/{GAUGE}/observations?format=json"),
        &json!({"time": now_ms(), "values": {"level_m": 4.2}}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    let dev = api.get_ok(&format!("/api/v1/devices/{GAUGE}"));
    assert_eq!(dev["quarantined"], true, "{dev}");
    assert_eq!(dev["recent"][0]["quarantined"], true, "{dev}");
    let other = api.get_ok("/api/v1/devices/longvic-ouche-gauge-02");
    assert_eq!(other["quarantined"], false);

    let view = api.get_ok("/api/v1/security/quarantine");
    assert_eq!(view["current"].as_array().map(Vec::len), Some(1), "{view}");
    assert_eq!(view["current"][0]["device"], GAUGE);
    assert_eq!(view["history"].as_array().map(Vec::len), Some(1), "{view}");

    // The quarantine survives a restart.
    b.restart();
    let api = Api::login(&b.base());
    let dev = api.get_ok(&format!("/api/v1/devices/{GAUGE}"));
    assert_eq!(dev["quarantined"], true, "restored: {dev}");

    let (status, act) = post(
        &api,
        &r,
        json!({"reason": "sensor replaced, values checked"}),
    );
    assert_eq!(status, 200, "{act}");
    assert_eq!(act["action"], "release");
    let view = api.get_ok("/api/v1/security/quarantine");
    assert_eq!(view["current"].as_array().map(Vec::len), Some(0), "{view}");
    let history = view["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{view}");
    assert_eq!(history[1]["reason"], "sensor replaced, values checked");
    assert_eq!(
        api.get_ok(&format!("/api/v1/devices/{GAUGE}"))["quarantined"],
        false
    );
}
