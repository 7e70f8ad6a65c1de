//! The command post's operations through a real `beffroi serve` on the demo deployment
//! (with short escalation delays): dispatch of units, reminders and escalation, crisis
//! mode with its log and printable report, the overview and the shift handover, and what
//! a restart keeps of all that.

mod support;
use support::copy_dir;

use std::time::Duration;

use serde_json::{Value, json};
use support::beffroi::Beffroi;
use support::http::Api;
use support::{now_ms, poll};

fn unit(api: &Api, id: &str) -> Value {
    api.get_ok(&format!("/api/v1/units/{id}"))
}

fn post_ok(api: &Api, path: &str, body: Value) -> Value {
    let (status, v) = api.post(path, &body.to_string());
    assert_eq!(status, 200, "POST {path} {body}: {v}");
    v
}

fn error_code(api: &Api, path: &str, body: Value) -> (u16, String) {
    let (status, v) = api.post(path, &body.to_string());
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn dispatch_escalation_and_crisis_mode_end_to_end() {
    let work = tempfile::tempdir().expect("tmp");
    let deployment = work.path().join("deployment");
    copy_dir(&support::demo::dir(), &deployment);
    // Escalation in seconds, so that the wall clock of `serve` gets there during the test.
    std::fs::write(
        deployment.join("escalation.toml"),
        "[severity.critical]\nremind_after = \"1s\"\nescalate_after = \"2s\"\n",
    )
    .expect("write escalation.toml");
    let b = Beffroi::start_with(None, Some(deployment));
    let api = Api::login(&b.base());

    let me = api.get_ok("/api/v1/auth/me");
    assert_eq!(me["user"], "admin");
    assert!(me["scope"]["communes"].is_null());
    let perms = me["permissions"].as_array().expect("permissions");
    for p in [
        "incident.assign",
        "unit.status",
        "crisis.manage",
        "supervise",
        "handover",
    ] {
        assert!(perms.iter().any(|x| x == p), "{p} in {perms:?}");
    }

    let units = api.get_ok("/api/v1/units");
    assert_eq!(units.as_array().map(Vec::len), Some(12), "{units}");
    assert_eq!(unit(&api, "pm-dijon-1")["status"], "available");
    assert_eq!(unit(&api, "pm-dijon-nuit")["status"], "off_duty");
    assert_eq!(api.get("/api/v1/units/ghost").0, 404);

    // A crisis for Dijon; the title carries markup the report must escape.
    assert_eq!(
        error_code(
            &api,
            "/api/v1/crises",
            json!({"kind": "tsunami", "title": "x"})
        ),
        (400, "invalid_request".into())
    );
    assert_eq!(
        error_code(
            &api,
            "/api/v1/crises",
            json!({"kind": "flood", "title": "x", "communes": ["atlantis"]})
        ),
        (400, "invalid_request".into())
    );
    let crisis = post_ok(
        &api,
        "/api/v1/crises",
        json!({"kind": "fire", "title": "Feu <b>&</b> fumées", "communes": ["dijon"], "level": 2}),
    );
    let cid = crisis["id"].as_u64().expect("crisis id");
    assert_eq!(crisis["status"], "active");
    assert_eq!(crisis["roles"].as_array().map(Vec::len), Some(6));
    post_ok(
        &api,
        &format!("/api/v1/crises/{cid}/log"),
        json!({"text": "PC de crise ouvert en mairie"}),
    );

    // A fire alarm in Dijon opens a critical incident.
    let panel = support::demo::of_kind(&support::demo::devices(), "fire_panel")
        .into_iter()
        .find(|d| d.id.starts_with("dijon-"))
        .expect("a fire panel in Dijon")
        .clone();
    let body = json!({"device": panel.id, "time": now_ms(), "values": {"fire": true}});
    let (status, v) = api.post("/api/v1/observations?format=json", &body.to_string());
    assert_eq!(status, 200, "{v}");
    let id = poll(
        "the fire incident",
        Duration::from_secs(10),
        || b.log(),
        || {
            api.incidents("status=open")
                .iter()
                .find(|i| i["device"] == panel.id.as_str())
                .and_then(|i| i["id"].as_u64())
        },
    );
    let path = format!("/api/v1/incidents/{id}");

    // Not acknowledged: reminder after 1 s, escalation after 2 s.
    let detail = poll(
        "reminder and escalation",
        Duration::from_secs(15),
        || b.log(),
        || {
            let d = api.get_ok(&path);
            (!d["escalated_at"].is_null()).then_some(d)
        },
    );
    let actions: Vec<&str> = detail["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"reminder"), "{actions:?}");
    assert!(actions.contains(&"escalated_to_supervisor"), "{actions:?}");
    assert!(!detail["reminded_at"].is_null());
    assert_eq!(detail["supervisor_attention"], true);
    let steps = detail["sop"]["steps"].as_array().expect("steps");
    assert!(
        steps
            .iter()
            .all(|s| s["overdue"].is_boolean() && s["skipped"] == false)
    );

    // Dispatch: unknown and off-duty units are refused; assignment engages the unit.
    let act = format!("/api/v1/incidents/{id}/actions");
    assert_eq!(
        error_code(&api, &act, json!({"action": "assign", "unit": "ghost"})),
        (404, "unit_not_found".into())
    );
    assert_eq!(
        error_code(
            &api,
            &act,
            json!({"action": "assign", "unit": "pm-dijon-nuit"})
        ),
        (409, "unit_off_duty".into())
    );
    let assigned = post_ok(
        &api,
        &act,
        json!({"action": "assign", "unit": "pm-dijon-1"}),
    );
    assert_eq!(assigned["unit"], "pm-dijon-1");
    let u = unit(&api, "pm-dijon-1");
    assert_eq!(u["status"], "engaged");
    assert_eq!(u["missions"], json!([id]));
    assert_eq!(u["mission_details"][0]["id"], id);
    assert_eq!(u["mission_details"][0]["commune"], "dijon");

    let overview = api.get_ok("/api/v1/overview");
    assert!(
        overview["open_by_severity"]["critical"].as_u64() >= Some(1),
        "{overview}"
    );
    assert!(overview["escalated"].as_u64() >= Some(1), "{overview}");
    assert_eq!(overview["active_crises"], 1, "{overview}");
    assert_eq!(
        overview["devices_total"].as_u64(),
        Some(support::demo::devices().len() as u64)
    );
    assert_eq!(overview["devices_alarm"], 1, "the fire panel: {overview}");

    // A restart keeps the unit engaged on its mission, the crisis and the escalation.
    b.restart();
    let api = Api::login(&b.base());
    let u = unit(&api, "pm-dijon-1");
    assert_eq!(
        (u["status"].clone(), u["missions"].clone()),
        (json!("engaged"), json!([id]))
    );
    assert!(!api.get_ok(&path)["escalated_at"].is_null());
    let c = api.get_ok(&format!("/api/v1/crises/{cid}"));
    assert_eq!(c["status"], "active");
    assert_eq!(c["level"], 2);
    // The map's device states come back with the incidents' conditions.
    assert_eq!(
        api.get_ok(&format!("/api/v1/devices/{}", panel.id))["state"],
        "alarm"
    );
    let overview = api.get_ok("/api/v1/overview");
    assert_eq!(
        overview["devices_alarm"], 1,
        "after the restart: {overview}"
    );

    // Resolving the last mission frees the unit.
    post_ok(&api, &act, json!({"action": "resolve"}));
    assert_eq!(unit(&api, "pm-dijon-1")["status"], "available");
    assert_eq!(unit(&api, "pm-dijon-1")["missions"], json!([]));

    // The crisis logged every change of the incident, and lists it.
    post_ok(
        &api,
        &format!("/api/v1/crises/{cid}/roles"),
        json!({"role": "dos", "holder": "Mme la maire"}),
    );
    assert_eq!(
        error_code(
            &api,
            &format!("/api/v1/crises/{cid}/roles"),
            json!({"role": "pope", "holder": "x"})
        ),
        (400, "invalid_request".into())
    );
    post_ok(
        &api,
        &format!("/api/v1/crises/{cid}/level"),
        json!({"level": 3}),
    );
    let c = api.get_ok(&format!("/api/v1/crises/{cid}"));
    let incident_texts: Vec<&str> = c["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["kind"] == "incident" && e["incident"] == id)
        .filter_map(|e| e["text"].as_str())
        .collect();
    for action in [
        "opened",
        "reminder",
        "escalated_to_supervisor",
        "assigned",
        "resolved",
    ] {
        assert!(
            incident_texts.iter().any(|t| t.contains(action)),
            "{action} in {incident_texts:?}"
        );
    }
    assert!(
        c["incidents"]
            .as_array()
            .expect("incidents")
            .iter()
            .any(|i| i["id"] == id)
    );
    assert_eq!(
        c["incident_count"].as_u64(),
        Some(c["incidents"].as_array().map_or(0, |a| a.len() as u64))
    );
    assert_eq!(c["roles"][0]["holder"], "Mme la maire");

    let closed = post_ok(
        &api,
        &format!("/api/v1/crises/{cid}/close"),
        json!({"summary": "Feu maîtrisé, fin de crise"}),
    );
    assert_eq!(closed["status"], "closed");
    assert_eq!(
        error_code(
            &api,
            &format!("/api/v1/crises/{cid}/close"),
            json!({"summary": "again"})
        ),
        (409, "crisis_closed".into())
    );
    assert_eq!(api.get_ok("/api/v1/crises?status=active"), json!([]));
    assert_eq!(api.get_ok("/api/v1/crises?status=closed")[0]["id"], cid);

    let (status, report) = api.get(&format!("/api/v1/crises/{cid}/report?lang=fr"));
    assert_eq!(status, 200);
    let html = report.as_str().expect("HTML text");
    for needle in [
        "Rapport de crise",
        "Feu &lt;b&gt;&amp;&lt;/b&gt; fumées",
        "PC de crise ouvert en mairie",
        "Feu maîtrisé, fin de crise",
        "Mme la maire",
        "Dijon",
        "@media print",
    ] {
        assert!(html.contains(needle), "{needle} in the report:\n{html}");
    }
    assert!(!html.contains("<b>&</b>"), "markup is escaped");
    assert!(
        html.contains(&format!("#{id} ")),
        "incident actions in the report"
    );
    let (_, report_en) = api.get(&format!("/api/v1/crises/{cid}/report?lang=en"));
    assert!(
        report_en
            .as_str()
            .is_some_and(|h| h.contains("Crisis report") && h.contains("Safeguard plan roles"))
    );

    // Shift handover: the open incidents and the log of the shift.
    let since = support::rfc3339(now_ms() - 3_600_000);
    let h = api.get_ok(&format!("/api/v1/handover?since={since}"));
    assert!(
        h["log"]
            .as_array()
            .expect("log")
            .iter()
            .any(|e| e["incident"] == id && e["action"] == "assigned"),
        "{h}"
    );
    assert_eq!(api.get("/api/v1/handover?since=yesterday").0, 400);

    // Units' status by hand.
    let u = post_ok(
        &api,
        "/api/v1/units/pm-dijon-2/status",
        json!({"status": "off_duty"}),
    );
    assert_eq!(u["status"], "off_duty");
    assert_eq!(
        error_code(
            &api,
            "/api/v1/units/pm-dijon-2/status",
            json!({"status": "asleep"})
        ),
        (400, "invalid_request".into())
    );
}
