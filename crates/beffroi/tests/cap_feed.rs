//! A neighbour's CAP feed read by `beffroi serve`: an alert whose area names a commune of
//! the territory opens one incident there, its update raises it, its cancellation
//! resolves it; an alert elsewhere opens nothing; an external entity is refused; a feed
//! that goes away is retried. The feed is served by this test on loopback.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::beffroi::Beffroi;
use support::http::Api;
use support::{now_ms, poll, rfc3339};

/// Paths and their bodies; a missing path answers 404, `None` the whole server 503.
type Site = Arc<Mutex<Option<HashMap<String, String>>>>;

fn serve(site: Site) -> u16 {
    support::outside::serve(move |path| {
        let (status, body) = match site.lock().expect("site").as_ref() {
            None => (503, String::new()),
            Some(pages) => match pages.get(path) {
                Some(b) => (200, b.clone()),
                None => (404, String::new()),
            },
        };
        support::outside::Answer::new(status, "application/xml", body)
    })
}

/// A neighbour's alert, as another system writes it: a prefixed namespace and `Z` times.
fn alert(identifier: &str, msg_type: &str, severity: &str, refs: &str, area: &str) -> String {
    let sent = rfc3339(now_ms() - 60_000).replace(".000Z", "Z");
    let refs = if refs.is_empty() {
        String::new()
    } else {
        format!("<cap:references>{refs}</cap:references>")
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cap:alert xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2">
  <cap:identifier>{identifier}</cap:identifier>
  <cap:sender>pc@voisin.example</cap:sender>
  <cap:sent>{sent}</cap:sent>
  <cap:status>Actual</cap:status>
  <cap:msgType>{msg_type}</cap:msgType>
  <cap:scope>Public</cap:scope>
  {refs}
  <cap:info>
    <cap:language>fr-FR</cap:language>
    <cap:category>Met</cap:category>
    <cap:event>Crue</cap:event>
    <cap:urgency>Immediate</cap:urgency>
    <cap:severity>{severity}</cap:severity>
    <cap:certainty>Likely</cap:certainty>
    <cap:headline>Crue de l'Ouche en amont</cap:headline>
    <cap:description>Montée rapide, appel de M. Jean Dupont au 06 12 34 56 78.</cap:description>
    {area}
  </cap:info>
</cap:alert>
"#
    )
}

const TALANT: &str = r#"<cap:area><cap:areaDesc>Talant, bords de l'Ouche</cap:areaDesc>
      <cap:geocode><cap:valueName>INSEE</cap:valueName><cap:value>21617</cap:value></cap:geocode></cap:area>"#;
const PARIS: &str = r#"<cap:area><cap:areaDesc>Paris</cap:areaDesc><cap:circle>48.8566,2.3522 5</cap:circle></cap:area>"#;

const XXE: &str = r#"<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"#;

fn feed(entries: &[&str]) -> String {
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom"><id>urn:voisin</id><title>Voisin</title><updated>2026-12-07T00:00:00Z</updated>"#,
    );
    for e in entries {
        x.push_str(&format!(
            r#"<entry><id>{e}</id><title>a</title><updated>2026-12-07T00:00:00Z</updated><link rel="alternate" type="application/cap+xml" href="{e}"/></entry>"#
        ));
    }
    x.push_str("</feed>");
    x
}

#[test]
fn a_neighbours_cap_alert_opens_updates_and_resolves_one_incident() {
    let site: Site = Arc::new(Mutex::new(Some(HashMap::new())));
    let port = serve(Arc::clone(&site));
    let set = |pages: &[(&str, String)]| {
        *site.lock().expect("site") = Some(
            pages
                .iter()
                .map(|(p, b)| (p.to_string(), b.clone()))
                .collect(),
        );
    };
    set(&[
        (
            "/feed.atom",
            feed(&["/alerts/1.xml", "alerts/paris.xml", "/alerts/xxe.xml"]),
        ),
        (
            "/alerts/1.xml",
            alert("voisin.42", "Alert", "Severe", "", TALANT),
        ),
        (
            "/alerts/paris.xml",
            alert("voisin.43", "Alert", "Extreme", "", PARIS),
        ),
        ("/alerts/xxe.xml", XXE.to_string()),
    ]);

    let work = tempfile::tempdir().expect("tempdir");
    let deployment = work.path().join("deployment");
    support::copy_dir(&support::demo::dir(), &deployment);
    let cap = std::fs::read_to_string(deployment.join("cap.toml")).expect("demo cap.toml");
    std::fs::write(
        deployment.join("cap.toml"),
        format!(
            "{cap}\n[[source]]\nname = \"voisin\"\nurl = \"http://127.0.0.1:{port}/feed.atom\"\nevery = \"1s\"\ncategory = \"neighbour\"\n"
        ),
    )
    .expect("cap.toml");
    let b = Beffroi::start_with(None, Some(deployment));
    let api = Api::login(&b.base());
    let from_feed = |api: &Api| -> Vec<serde_json::Value> {
        api.incidents("")
            .into_iter()
            .filter(|i| i["rule"] == "cap:voisin")
            .collect()
    };

    let opened = poll(
        "the neighbour's alert as an incident",
        Duration::from_secs(30),
        || b.log(),
        || from_feed(&api).into_iter().next(),
    );
    assert_eq!(opened["category"], "neighbour", "{opened:#}");
    assert_eq!(opened["severity"], "major", "{opened:#}");
    assert_eq!(opened["commune"], "talant", "{opened:#}");
    let title = opened["title"].as_str().expect("title");
    assert!(title.contains("Crue de l'Ouche en amont"), "{title}");
    // The outside text went through the scrubber; the description is not taken at all.
    let detail = api.get_ok(&format!("/api/v1/incidents/{}", opened["id"]));
    assert!(!detail.to_string().contains("06 12 34 56 78"), "{detail:#}");
    // Paris is outside the territory; the external entity is refused.
    let metrics = poll(
        "the feed's other entries counted",
        Duration::from_secs(30),
        || b.log(),
        || {
            let m = api.metrics();
            (support::http::metric(
                &m,
                "beffroi_cap_feed_alerts_total",
                &[("outcome", "outside")],
            )
            .is_some()
                && support::http::metric(
                    &m,
                    "beffroi_cap_feed_alerts_total",
                    &[("outcome", "refused")],
                )
                .is_some())
            .then_some(m)
        },
    );
    assert!(
        support::http::metric(
            &metrics,
            "beffroi_cap_feed_alerts_total",
            &[("outcome", "applied")]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );

    // The neighbour's server goes away, then comes back with an update: the same incident,
    // raised.
    *site.lock().expect("site") = None;
    poll(
        "a failed poll counted",
        Duration::from_secs(30),
        || b.log(),
        || {
            support::http::metric(
                &api.metrics(),
                "beffroi_cap_feed_failures_total",
                &[("source", "voisin")],
            )
            .filter(|n| *n >= 1.0)
        },
    );
    let first_ref = format!(
        "pc@voisin.example,voisin.42,{}",
        rfc3339(now_ms() - 120_000).replace(".000Z", "Z")
    );
    set(&[
        ("/feed.atom", feed(&["/alerts/2.xml"])),
        (
            "/alerts/2.xml",
            alert("voisin.42.u1", "Update", "Extreme", &first_ref, TALANT),
        ),
    ]);
    let raised = poll(
        "the update raising the incident",
        Duration::from_secs(60),
        || b.log(),
        || {
            from_feed(&api)
                .into_iter()
                .find(|i| i["severity"] == "critical")
        },
    );
    assert_eq!(
        raised["id"], opened["id"],
        "the update reaches the same incident"
    );

    // Cancelled: resolved, and still one incident from the feed.
    set(&[
        ("/feed.atom", feed(&["/alerts/3.xml"])),
        (
            "/alerts/3.xml",
            alert("voisin.42.c", "Cancel", "Extreme", &first_ref, TALANT),
        ),
    ]);
    let resolved = poll(
        "the cancellation resolving the incident",
        Duration::from_secs(60),
        || b.log(),
        || {
            from_feed(&api)
                .into_iter()
                .find(|i| i["status"] == "resolved")
        },
    );
    assert_eq!(resolved["id"], opened["id"]);
    assert_eq!(
        from_feed(&api).len(),
        1,
        "one incident for the alert, none for Paris"
    );
}
