//! Event mode through a real `beffroi serve` on the demo deployment: the events of
//! `demo/events.toml`, declaring an event with a GeoJSON perimeter, its capacity incident
//! when the aggregate of the Zénith's counters crosses, the live `event` SSE message,
//! cancellation, errors, and persistence across a restart.

mod support;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use support::beffroi::Beffroi;
use support::http::Api;
use support::{now_ms, poll, rfc3339};

const ZENITH_COUNTERS: [&str; 8] = [
    "dijon-zenith-counter-01",
    "dijon-zenith-counter-02",
    "dijon-zenith-counter-03",
    "dijon-zenith-counter-04",
    "dijon-zenith-counter-05",
    "dijon-zenith-counter-06",
    "dijon-zenith-counter-07",
    "dijon-zenith-counter-08",
];

fn perimeter() -> Value {
    json!({"type": "Polygon", "coordinates": [[
        [5.0550, 47.3450], [5.0620, 47.3450], [5.0620, 47.3495], [5.0550, 47.3495], [5.0550, 47.3450]
    ]]})
}

fn event_by_id(api: &Api, id: &str) -> Value {
    api.get_ok(&format!("/api/v1/events/{id}"))
}

#[test]
fn events_are_declared_watched_cancelled_and_survive_a_restart() {
    let b = Beffroi::start(None);
    let api = Api::login(&b.base());

    // The deployment's events.toml.
    let list = api.get_ok("/api/v1/events");
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["zenith-concert", "dfco-match"], "{list}");
    let concert = event_by_id(&api, "zenith-concert");
    assert_eq!(concert["status"], "active");
    assert_eq!(concert["origin"], "file");
    assert_eq!(concert["counters"], 8);
    assert_eq!(concert["perimeter"]["type"], "Polygon");
    assert!(
        concert["rule_ids"]
            .as_array()
            .expect("rule ids")
            .iter()
            .any(|r| r == "zenith-concert/camera-offline")
    );
    let overview = api.get_ok("/api/v1/overview");
    assert_eq!(
        overview["active_events"], 1,
        "the concert is in force: {overview}"
    );
    let active = api.get_ok("/api/v1/events?status=scheduled");
    assert_eq!(active.as_array().map(Vec::len), Some(1), "{active}");
    let rules = api.get_ok("/api/v1/rules");
    assert!(
        rules
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["id"] == "zenith-concert/capacity" && r["type"] == "aggregate"),
        "the rules of an event in force are listed: {rules}"
    );

    // Errors.
    let now = now_ms();
    let body = |perimeter: Value, rules: &str, id: &str| {
        json!({
            "id": id,
            "name": "Soirée électro au Zénith",
            "perimeter": perimeter,
            "starts_at": rfc3339(now - 60_000),
            "ends_at": rfc3339(now + 3_600_000),
            "capacity": {"warning": 2000, "critical": 3000},
            "rules": rules,
        })
        .to_string()
    };
    let (status, v) = api.post(
        "/api/v1/events",
        &body(
            json!({"type": "Point", "coordinates": [5.0, 47.0]}),
            "",
            "soiree",
        ),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let bad_rules = "[[rule]]\nid = \"x\"\ntitle = \"X\"\ncategory = \"crowd\"\nseverity = \"huge\"\nkind = \"people_counter\"\n[rule.threshold]\nfield = \"occupancy\"\nabove = 1.0\n";
    let (status, v) = api.post("/api/v1/events", &body(perimeter(), bad_rules, "soiree"));
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"]["details"]["errors"][0]["field"], "severity",
        "{v}"
    );
    assert_eq!(v["error"]["details"]["errors"][0]["line"], 5, "{v}");
    let (status, v) = api.post("/api/v1/events", &body(perimeter(), "", "zenith-concert"));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("event_exists")),
        "{v}"
    );
    let (status, v) = api.get("/api/v1/events/nope");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("event_not_found")),
        "{v}"
    );

    // Declare an event over the Zénith (as an imported GeoJSON file would give it).
    let feature = json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": perimeter()}
    ]});
    let (status, created) = api.post("/api/v1/events", &body(feature, "", "soiree"));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "active");
    assert_eq!(created["origin"], "api");
    assert_eq!(created["created_by"], "admin");
    assert_eq!(created["counters"], 8);

    // 8 × 300 = 2,400 people: above the new event's warning, far below the concert's.
    for d in ZENITH_COUNTERS {
        let (status, v) = api.post(
            &format!("/api/v1/devices/{d}/observations?format=json"),
            &json!({"values": {"occupancy": 300.0}}).to_string(),
        );
        assert_eq!(status, 200, "{v}");
    }
    let inc = poll(
        "the capacity incident of the declared event",
        Duration::from_secs(20),
        || format!("{:#}", api.get_ok("/api/v1/incidents")),
        || {
            api.incidents("status=active")
                .into_iter()
                .find(|i| i["rule"] == "soiree/capacity")
        },
    );
    assert_eq!(inc["severity"], "major");
    assert_eq!(inc["site"], "dijon-zenith");
    assert!(
        !api.incidents("status=active")
            .iter()
            .any(|i| i["rule"] == "zenith-concert/capacity"),
        "2,400 is below the concert's warning"
    );
    // Occupancy changes are published at the engine's next tick.
    poll(
        "the declared event's occupancy",
        Duration::from_secs(10),
        || format!("{:#}", event_by_id(&api, "soiree")),
        || (event_by_id(&api, "soiree")["occupancy"] == 2400.0).then_some(()),
    );

    // The live stream tells about the cancellation.
    let stream = api.stream(Duration::from_secs(30)).expect("stream");
    assert_eq!(stream.status().as_u16(), 200);
    let (tx, rx) = mpsc::channel();
    let mut reader = BufReader::new(stream.into_body().into_reader());
    {
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut is_event = false;
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let l = line.trim_end().to_string();
                line.clear();
                if l == "event: event" {
                    is_event = true;
                } else if let (true, Some(data)) = (is_event, l.strip_prefix("data: ")) {
                    let v: Value = serde_json::from_str(data).unwrap_or_default();
                    if v["id"] == "soiree" && v["status"] == "cancelled" {
                        let _ = tx.send(v);
                        return;
                    }
                    is_event = false;
                }
            }
        });
        let (status, cancelled) = api.post("/api/v1/events/soiree/cancel", "{}");
        assert_eq!(status, 200, "{cancelled}");
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["cancelled_by"], "admin");
        let live = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("an `event` message on the stream");
        assert_eq!(live["status"], "cancelled");
    }
    // Its rules stop at once: the capacity incident resolves.
    let resolved = api
        .incidents("")
        .into_iter()
        .find(|i| i["rule"] == "soiree/capacity")
        .expect("incident");
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    let (status, v) = api.post("/api/v1/events/soiree/cancel", "{}");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("event_closed")),
        "{v}"
    );
    let (status, v) = api.post("/api/v1/events/dfco-match/cancel", "{}");
    assert_eq!(status, 200, "{v}");

    // Declarations and cancellations are durable.
    b.restart();
    let api = Api::login(&b.base());
    assert_eq!(event_by_id(&api, "soiree")["status"], "cancelled");
    assert_eq!(event_by_id(&api, "soiree")["origin"], "api");
    let dfco = event_by_id(&api, "dfco-match");
    assert_eq!(
        dfco["status"], "cancelled",
        "a file event's cancellation is kept"
    );
    assert_eq!(event_by_id(&api, "zenith-concert")["status"], "active");
}
