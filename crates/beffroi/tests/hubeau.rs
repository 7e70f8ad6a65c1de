//! The Hub'Eau hydrometry connector run by `beffroi serve` against answers in the API's
//! shape, served on loopback: an hour of a calm river on two pages becomes the mapped
//! gauge's observations (each reading once, the site-level copy, the unmapped flow and
//! the doubtful reading left out), the API going away is retried with backoff, and the
//! river rising upstream opens the demo's `flood-level-high` incident at the gauge's site.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::beffroi::Beffroi;
use support::http::{Api, metric};
use support::{now_ms, poll, rfc3339};

const PATH: &str = "/api/v2/hydrometrie/observations_tr";
const GAUGE: &str = "plombieres-les-dijon-ouche-gauge-01";

/// What the fake API answers: the first page, and the second (asked with `cursor=calm-2`);
/// `None`: 503. Every request's path and query is recorded.
#[derive(Default)]
struct State {
    pages: Option<(String, String)>,
    requests: Vec<String>,
}

fn serve(state: Arc<Mutex<State>>) -> u16 {
    support::outside::serve(move |target| {
        let mut s = state.lock().expect("state");
        s.requests.push(target.to_string());
        let (status, body) = match (&s.pages, target.split_once('?')) {
            (None, _) => (503, String::new()),
            (Some((first, second)), Some((PATH, query))) => {
                // 206: the API's status when more pages follow.
                if query.contains("cursor=calm-2") {
                    (200, second.clone())
                } else if first.contains("cursor=calm-2") {
                    (206, first.clone())
                } else {
                    (200, first.clone())
                }
            }
            _ => (404, String::new()),
        };
        support::outside::Answer::new(status, "application/json;charset=UTF-8", body)
    })
}

/// A fixture with its times (`{t-N}`: N minutes before `t0`) and `{base}` filled in.
fn fixture(name: &str, t0: i64, base: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hubeau")
        .join(name);
    let mut text = std::fs::read_to_string(&path).expect("fixture");
    for m in (0..=90).rev() {
        let at = rfc3339(t0 - m * 60_000).replace(".000Z", "Z");
        text = text.replace(&format!("{{t-{m}}}"), &at);
    }
    text.replace("{base}", base)
}

fn readings(api: &Api, outcome: &str) -> f64 {
    metric(
        &api.metrics(),
        "beffroi_hubeau_readings_total",
        &[("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

#[test]
fn upstream_levels_from_hub_eau_feed_the_gauge_and_open_the_flood_incident() {
    let state = Arc::new(Mutex::new(State::default()));
    let port = serve(Arc::clone(&state));
    let base = format!("http://127.0.0.1:{port}{PATH}");
    // Whole minutes, as the network's readings are.
    let t0 = now_ms() / 60_000 * 60_000;
    state.lock().expect("state").pages = Some((
        fixture("calm-1.json", t0, &base),
        fixture("calm-2.json", t0, &base),
    ));

    let work = tempfile::tempdir().expect("tempdir");
    let deployment = work.path().join("deployment");
    support::copy_dir(&support::demo::dir(), &deployment);
    std::fs::write(
        deployment.join("hubeau.toml"),
        format!(
            "url = \"{base}\"\nevery = \"1s\"\nbackfill = \"2h\"\n\n[[station]]\ncode = \"U132401001\"\ndevice = \"{GAUGE}\"\nheight = \"level_m\"\n"
        ),
    )
    .expect("hubeau.toml");
    let b = Beffroi::start_with(None, Some(deployment));
    let api = Api::login(&b.base());

    // The calm hour: seven readings of the station's height, whatever the pages repeat.
    poll(
        "the calm hour delivered",
        Duration::from_secs(30),
        || format!("{}\n{:?}", b.log(), state.lock().expect("state").requests),
        || (readings(&api, "delivered") >= 7.0).then_some(()),
    );
    let first = state.lock().expect("state").requests[0].clone();
    for part in [
        "code_entite=U132401001",
        "grandeur_hydro=H",
        "sort=asc",
        &format!("date_debut_obs={}", &rfc3339(t0 - 2 * 3_600_000)[..13]),
    ] {
        assert!(first.contains(part), "«{part}» not in {first}");
    }
    assert!(
        state
            .lock()
            .expect("state")
            .requests
            .iter()
            .any(|r| r.contains("cursor=calm-2")),
        "the second page was followed"
    );
    // Several polls later nothing more: each reading went over once.
    let polls = state.lock().expect("state").requests.len();
    poll(
        "more polls",
        Duration::from_secs(30),
        || b.log(),
        || (state.lock().expect("state").requests.len() >= polls + 4).then_some(()),
    );
    assert_eq!(readings(&api, "delivered"), 7.0, "{}", api.metrics());
    assert!(readings(&api, "seen") >= 7.0);
    assert!(readings(&api, "no_station") >= 1.0);
    assert!(readings(&api, "unmapped") >= 1.0, "the unmapped flow");
    assert!(readings(&api, "doubtful") >= 1.0);
    // Later polls ask from the last committed reading, not from the backfill.
    let last = state
        .lock()
        .expect("state")
        .requests
        .iter()
        .rev()
        .find(|r| !r.contains("cursor="))
        .cloned()
        .expect("a first page asked");
    let at = rfc3339(t0 - 30 * 60_000);
    assert!(
        last.contains(&format!("date_debut_obs={}", &at[..19])),
        "{last}"
    );
    // The readings are the gauge's, in metres.
    let device = api.get_ok(&format!("/api/v1/devices/{GAUGE}"));
    assert!(device.to_string().contains("1.31"), "{device:#}");
    let flood = |api: &Api| {
        api.incidents("")
            .into_iter()
            .find(|i| i["rule"] == "flood-level-high" && i["site"] == "plombieres-les-dijon-ouche")
    };
    assert!(flood(&api).is_none(), "a calm river opens nothing");

    // The API goes away: counted, retried.
    state.lock().expect("state").pages = None;
    poll(
        "a failed poll counted",
        Duration::from_secs(30),
        || b.log(),
        || metric(&api.metrics(), "beffroi_hubeau_poll_failures_total", &[]).filter(|n| *n >= 1.0),
    );
    // It comes back with the river rising: the flood rule's incident at the gauge's site.
    let rising = fixture("rising.json", t0, &base);
    state.lock().expect("state").pages = Some((rising.clone(), rising));
    let incident = poll(
        "the flood incident",
        Duration::from_secs(60),
        || b.log(),
        || flood(&api),
    );
    assert_eq!(incident["category"], "flood", "{incident:#}");
    assert_eq!(readings(&api, "delivered"), 13.0, "{}", api.metrics());
    let exposed = api.metrics();
    let rejected: Vec<&str> = exposed
        .lines()
        .filter(|l| {
            l.starts_with("beffroi_observations_rejected_total{")
                && l.contains("source=\"hubeau\"")
                && !l.ends_with(" 0")
        })
        .collect();
    assert!(rejected.is_empty(), "no reading rejected: {rejected:?}");
    assert!(
        metric(
            &exposed,
            "beffroi_observations_accepted_total",
            &[("source", "hubeau")]
        )
        .is_some_and(|n| n >= 13.0),
        "{exposed}"
    );
}
