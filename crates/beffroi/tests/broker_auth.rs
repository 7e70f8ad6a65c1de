//! Device identity against a real Mosquitto configured from the files `beffroi devices`
//! generates: a device publishes on its own topic only, a revoked credential is refused once
//! the files are regenerated and the broker reloaded, and the refusals appear in the broker's
//! log feed as `SecuritySignal::AuthFailure` (parsed by the same parser the MQTT source
//! uses). Waits on conditions with deadlines, never a fixed sleep.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use beffroi_core::SecuritySignal;
use beffroi_mqtt::broker_log::BrokerLogParser;
use beffroi_testkit::mosquitto::Mosquitto;
use rumqttc::{Client, ConnectReturnCode, Event, MqttOptions, Packet, QoS};

const WAIT: Duration = Duration::from_secs(15);
const INGEST_PASSWORD: &str = "ingest-test-password";

fn devices(data: &Path, broker_dir: &Path, pid_file: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beffroi"));
    cmd.arg("devices")
        .arg("--data")
        .arg(data)
        .arg("--broker-dir")
        .arg(broker_dir)
        .env("BEFFROI_MQTT_PASSWORD", INGEST_PASSWORD);
    if let Some(p) = pid_file {
        cmd.arg("--broker-pid-file").arg(p);
    }
    let out = cmd.args(args).output().expect("run beffroi devices");
    assert!(
        out.status.success(),
        "beffroi devices {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Column `col` of `device`'s line in `issue` output
/// (`device, generation, password, signing_key_base64`).
fn column_of(issue_out: &str, device: &str, col: usize) -> String {
    issue_out
        .lines()
        .find_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.first() == Some(&device)).then(|| cols[col].to_string())
        })
        .expect("device in the issue output")
}

fn password_of(issue_out: &str, device: &str) -> String {
    column_of(issue_out, device, 2)
}

fn key_of(issue_out: &str, device: &str) -> [u8; 32] {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(column_of(issue_out, device, 3))
        .expect("base64 key")
        .try_into()
        .expect("32-byte key")
}

fn chmod_readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    // The broker may run as another user (tests run as root drop to `mosquitto`).
    for f in ["passwd", "acl"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
}

fn broker_conf(dir: &Path) -> String {
    format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\nlog_dest topic\n",
        dir.join("passwd").display(),
        dir.join("acl").display()
    )
}

enum Got {
    Message(String, Vec<u8>),
}

/// A client that records every message it receives; `Err` when the broker refuses it.
fn connect(
    port: u16,
    id: &str,
    user: &str,
    password: &str,
    sink: Option<mpsc::Sender<Got>>,
) -> Result<Client, ConnectReturnCode> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_credentials(user, password)
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true);
    let (client, mut conn) = Client::new(opts, 64);
    let (ctx, crx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut told = false;
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    if !told {
                        let _ = ctx.send(Ok(()));
                        told = true;
                    }
                    if a.code != ConnectReturnCode::Success {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(s) = &sink {
                        let _ = s.send(Got::Message(p.topic.clone(), p.payload.to_vec()));
                    }
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    if !told {
                        let _ = ctx.send(Err(code));
                    }
                    return;
                }
                Err(_) => return,
            }
        }
    });
    match crx.recv_timeout(WAIT).expect("CONNACK or refusal") {
        Ok(()) => Ok(client),
        Err(code) => Err(code),
    }
}

struct Feed {
    rx: mpsc::Receiver<Got>,
    parser: BrokerLogParser,
    signals: Vec<SecuritySignal>,
    data: Vec<(String, String)>,
}

impl Feed {
    fn auth_failures(&self) -> usize {
        self.signals
            .iter()
            .filter(|x| matches!(x, SecuritySignal::AuthFailure { .. }))
            .count()
    }

    /// Reads messages until `until` holds, or panics at the deadline.
    fn pump(&mut self, until: impl Fn(&Feed) -> bool, what: &str) {
        let deadline = Instant::now() + WAIT;
        while !until(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}: {:?} {:?}",
                self.data,
                self.signals
            );
            if let Ok(Got::Message(topic, payload)) = self.rx.recv_timeout(left) {
                let text = String::from_utf8_lossy(&payload).into_owned();
                if topic.starts_with("$SYS/broker/log/") {
                    let parser = &mut self.parser;
                    self.signals
                        .extend(text.lines().filter_map(|l| parser.parse(l)));
                } else {
                    self.data.push((topic, text));
                }
            }
        }
    }
}

#[test]
fn broker_enforces_the_generated_files() {
    let data = tempfile::tempdir().expect("tempdir");
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let issued = devices(
        data.path(),
        broker_dir.path(),
        None,
        &["issue", "gauge-a", "gauge-b"],
    );
    let pw_a = password_of(&issued, "gauge-a");
    let pw_b = password_of(&issued, "gauge-b");
    // The broker (which may run as another user in tests run as root) must read the files.
    for f in ["passwd", "acl"] {
        use std::os::unix::fs::PermissionsExt as _;
        let p = broker_dir.path().join(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let extra = format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\nlog_dest topic\n",
        broker_dir.path().join("passwd").display(),
        broker_dir.path().join("acl").display()
    );
    let Some(broker) = Mosquitto::start_with(&extra) else {
        return;
    };
    let port = broker.port();

    // Beffroi's ingest user: reads device topics and the broker's log.
    let (tx, rx) = mpsc::channel();
    let ingest = connect(port, "beffroi-ingest", "beffroi", INGEST_PASSWORD, Some(tx))
        .unwrap_or_else(|c| panic!("ingest refused: {c:?}\n{}", broker.log()));
    ingest
        .subscribe("beffroi/+/+/+", QoS::AtLeastOnce)
        .expect("subscribe");
    ingest
        .subscribe("$SYS/broker/log/#", QoS::AtLeastOnce)
        .expect("subscribe");
    let mut feed = Feed {
        rx,
        parser: BrokerLogParser::default(),
        signals: Vec::new(),
        data: Vec::new(),
    };
    // The ingest subscription is live once a device's message comes through.
    let a = connect(port, "gauge-a", "gauge-a", &pw_a, None).expect("gauge-a accepted");
    let own = "beffroi/dijon/gauge-a/senml";
    let other = "beffroi/dijon/gauge-b/senml";
    // The subscription may not be in place yet: publish until one arrives.
    let deadline = Instant::now() + WAIT;
    while feed.data.is_empty() {
        assert!(Instant::now() < deadline, "no warm-up message arrived");
        a.publish(own, QoS::AtLeastOnce, false, "warm-up")
            .expect("publish");
        if let Ok(Got::Message(topic, payload)) = feed.rx.recv_timeout(Duration::from_millis(200)) {
            let text = String::from_utf8_lossy(&payload).into_owned();
            if topic.starts_with("$SYS/") {
                let parser = &mut feed.parser;
                feed.signals
                    .extend(text.lines().filter_map(|l| parser.parse(l)));
            } else {
                feed.data.push((topic, text));
            }
        }
    }
    // (b) gauge-a on gauge-b's topic: never delivered; the message after it is.
    a.publish(other, QoS::AtLeastOnce, false, "forged")
        .expect("publish");
    // Mosquitto may drop the connection of a client whose publish its ACL denies: the
    // marker goes over a new connection, after the forged message was handled.
    let a_again = connect(port, "gauge-a-marker", "gauge-a", &pw_a, None).expect("gauge-a");
    a_again
        .publish(own, QoS::AtLeastOnce, false, "marker")
        .expect("publish");
    feed.pump(
        |f| f.data.iter().any(|(_, p)| p == "marker"),
        "gauge-a's marker",
    );
    let _ = broker.log();
    assert!(
        !feed.data.iter().any(|(t, p)| t == other || p == "forged"),
        "a device published on another device's topic: {:?}",
        feed.data
    );
    // A wrong password is refused and logged.
    let wrong = connect(port, "gauge-b", "gauge-b", "not-the-password", None);
    assert!(wrong.is_err(), "a wrong password was accepted");
    feed.pump(
        |f| f.auth_failures() > 0,
        "an auth failure in the broker log",
    );
    // gauge-b works before revocation.
    let b = connect(port, "gauge-b", "gauge-b", &pw_b, None).expect("gauge-b accepted");
    drop(b);

    // (c) revoke gauge-b: files regenerated, broker told to reload (SIGHUP).
    let pid_file = broker_dir.path().join("mosquitto.pid");
    std::fs::write(&pid_file, broker.pid().to_string()).expect("pid file");
    devices(
        data.path(),
        broker_dir.path(),
        Some(&pid_file),
        &["revoke", "gauge-b"],
    );
    for f in ["passwd", "acl"] {
        use std::os::unix::fs::PermissionsExt as _;
        let p = broker_dir.path().join(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    // The reload is asynchronous: the SIGHUP is handled on the broker's next loop. Retry
    // (with the same revoked credential) until refused, within the deadline.
    let failures_before = feed.auth_failures();
    let deadline = Instant::now() + WAIT;
    loop {
        match connect(port, "gauge-b", "gauge-b", &pw_b, None) {
            Err(_) => break,
            Ok(c) => {
                drop(c);
                assert!(
                    Instant::now() < deadline,
                    "revoked credential still accepted\n{}",
                    broker.log()
                );
                // Drive the SIGHUP in again in case the chmod raced the first reload.
                let _ = Command::new("kill")
                    .arg("-HUP")
                    .arg(broker.pid().to_string())
                    .status();
                std::thread::yield_now();
            }
        }
    }
    // (d) that refusal reached the feed as an AuthFailure.
    feed.pump(
        |f| f.auth_failures() > failures_before,
        "the revoked device's auth failure in the broker log",
    );
    // gauge-a is unaffected.
    let a2 = connect(port, "gauge-a2", "gauge-a", &pw_a, None);
    assert!(a2.is_ok(), "gauge-a lost its access");
    assert!(
        feed.signals.iter().any(
            |s| matches!(s, SecuritySignal::Connected { username: Some(u), .. } if u == "gauge-a")
        ),
        "connections appear in the feed: {:?}",
        feed.signals
    );
}

/// The same, end to end through `beffroi serve`: trust levels earned and stored, the broker's
/// refusals counted as security signals by the engine, a replayed signed message rejected.
#[test]
fn serve_stores_trust_and_counts_auth_failures() {
    use support::beffroi::{Beffroi, BrokerAuth, MqttSettings};
    use support::demo::{self, TERRITORY};
    use support::http::{Api, metric};
    use support::{now_ms, poll, senml_time};

    let all = demo::devices();
    let gauges = demo::of_kind(&all, "water_level");
    let (dev_a, dev_b) = (gauges[0].id.clone(), gauges[1].id.clone());
    let reg = tempfile::tempdir().expect("tempdir");
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let issued = devices(
        reg.path(),
        broker_dir.path(),
        None,
        &["issue", &dev_a, &dev_b],
    );
    let (pw_a, pw_b) = (password_of(&issued, &dev_a), password_of(&issued, &dev_b));
    let key_a = key_of(&issued, &dev_a);
    chmod_readable(broker_dir.path());
    let Some(broker) = Mosquitto::start_with(&broker_conf(broker_dir.path())) else {
        return;
    };
    let beffroi = Beffroi::start_full(
        Some(MqttSettings {
            url: broker.url(),
            client_id: format!("beffroi-auth-{}", std::process::id()),
            protocol: 4,
        }),
        None,
        Some(BrokerAuth {
            username: "beffroi".into(),
            password: INGEST_PASSWORD.into(),
        }),
        |data| {
            std::fs::create_dir_all(data).expect("data dir");
            std::fs::copy(
                reg.path().join("devices.sqlite"),
                data.join("devices.sqlite"),
            )
            .expect("registry into the data folder");
        },
    );
    let api = Api::login(&beffroi.base());
    let log = || support::logs(&beffroi, &broker);
    let topic = |d: &str| format!("beffroi/{TERRITORY}/{d}/senml");
    let level = |v: f64| {
        format!(
            r#"[{{"bt":{},"n":"level_m","v":{v}}}]"#,
            senml_time(now_ms())
        )
    };
    let device = |d: &str| api.get_ok(&format!("/api/v1/devices/{d}"));
    let has_value = |d: &str, v: f64, trust: &str| {
        device(d)["recent"]
            .as_array()
            .is_some_and(|r| r.iter().any(|o| o["value"] == v && o["trust"] == trust))
    };

    // (a) gauge A on its own topic: stored as broker_authenticated. Published until the
    // ingest's subscription is in place.
    let a = connect(broker.port(), "dev-a", &dev_a, &pw_a, None).expect("A accepted");
    let mut last = Instant::now() - Duration::from_secs(1);
    poll(
        "A's unsigned reading stored as broker_authenticated",
        WAIT,
        log,
        || {
            if last.elapsed() >= Duration::from_millis(200) {
                a.publish(topic(&dev_a), QoS::AtLeastOnce, false, level(1.11))
                    .expect("publish");
                last = Instant::now();
            }
            has_value(&dev_a, 1.11, "broker_authenticated").then_some(())
        },
    );
    assert_eq!(device(&dev_a)["trust"], "broker_authenticated");

    // (b) A on B's topic: never stored for B. A marker after it proves it was handled.
    a.publish(topic(&dev_b), QoS::AtLeastOnce, false, level(7.77))
        .expect("publish");
    let a = connect(broker.port(), "dev-a-2", &dev_a, &pw_a, None).expect("A accepted");
    a.publish(topic(&dev_a), QoS::AtLeastOnce, false, level(3.33))
        .expect("publish");
    poll("A's marker", WAIT, log, || {
        has_value(&dev_a, 3.33, "broker_authenticated").then_some(())
    });
    assert!(
        !device(&dev_b)["recent"]
            .as_array()
            .is_some_and(|r| r.iter().any(|o| o["value"] == 7.77)),
        "A's message on B's topic reached Beffroi: {}",
        device(&dev_b)
    );

    // (f) The attacker: A's own credential, on its own topic with an unknown suffix, a pack
    // naming a fire panel of another commune. The generated ACL denies that topic (and the
    // source would refuse it, never submitting it without its device); on A's `senml` topic
    // the same pack is refused as topic_mismatch. No fire incident either way; one cyber
    // incident, about A (the publishing credential), not about the panel.
    let sites: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(demo::dir().join("territory/sites.geojson")).expect("sites"),
    )
    .expect("sites.geojson");
    let commune_of = |site: &str| {
        sites["features"]
            .as_array()
            .expect("features")
            .iter()
            .find(|f| f["properties"]["id"] == site)
            .and_then(|f| f["properties"]["commune"].as_str())
            .map(str::to_owned)
            .expect("the site's commune")
    };
    let a_commune = commune_of(&gauges[0].site);
    let panel = demo::of_kind(&all, "fire_panel")
        .into_iter()
        .find(|p| commune_of(&p.site) != a_commune)
        .expect("a fire panel in another commune")
        .id
        .clone();
    let fire = format!(
        r#"[{{"bn":"{panel}/","bt":{},"n":"fire","vb":true}}]"#,
        senml_time(now_ms())
    );
    let attacker = connect(broker.port(), "dev-a-3", &dev_a, &pw_a, None).expect("A accepted");
    attacker
        .publish(
            format!("beffroi/{TERRITORY}/{dev_a}/x"),
            QoS::AtLeastOnce,
            false,
            fire.clone(),
        )
        .expect("publish");
    // Over a new connection, in case the broker drops the one whose publish it denied.
    let attacker = connect(broker.port(), "dev-a-4", &dev_a, &pw_a, None).expect("A accepted");
    attacker
        .publish(topic(&dev_a), QoS::AtLeastOnce, false, fire)
        .expect("publish");
    let rejected_as = |reason: &str| {
        metric(
            &api.metrics(),
            "beffroi_observations_rejected_total",
            &[("source", "mqtt"), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    poll("the pack naming the panel refused", WAIT, log, || {
        (rejected_as("topic_mismatch") >= 1.0).then_some(())
    });
    let cyber = poll("a topic_mismatch cyber incident", WAIT, log, || {
        let found: Vec<_> = api
            .incidents("category=cyber")
            .into_iter()
            .filter(|i| i["rule"] == "cyber-topic_mismatch")
            .collect();
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(cyber.len(), 1, "{cyber:#?}");
    assert_eq!(cyber[0]["device"], dev_a.as_str(), "{:#}", cyber[0]);
    assert!(
        cyber[0]["title"]
            .as_str()
            .is_some_and(|t| t.ends_with(&dev_a)),
        "{:#}",
        cyber[0]
    );
    let m = api.metrics();
    assert_eq!(
        metric(
            &m,
            "beffroi_security_signals_total",
            &[("kind", "topic_mismatch")]
        ),
        Some(1.0),
        "one signal, for the senml message only (the unknown suffix never got in)"
    );
    assert_eq!(rejected_as("topic_mismatch"), 1.0);
    assert!(
        api.incidents("category=fire").is_empty(),
        "a rain gauge's credential opened a fire incident: {:#?}",
        api.incidents("category=fire")
    );
    assert!(
        !device(&panel)["recent"]
            .as_array()
            .is_some_and(|r| r.iter().any(|o| o["field"] == "fire")),
        "a reading stored for the panel: {}",
        device(&panel)
    );

    // (e) a signed message: stored as signed; the same bytes again: rejected as replay.
    let sealed = beffroi_wire::signed::seal(&dev_a, 1, &key_a, level(2.22).as_bytes());
    a.publish(topic(&dev_a), QoS::AtLeastOnce, false, sealed.clone())
        .expect("publish");
    poll("A's signed reading stored as signed", WAIT, log, || {
        has_value(&dev_a, 2.22, "signed").then_some(())
    });
    assert_eq!(device(&dev_a)["trust"], "signed");
    let signed_count = metric(
        &api.metrics(),
        "beffroi_observations_trust_total",
        &[("trust", "signed")],
    );
    assert_eq!(
        signed_count,
        Some(1.0),
        "observations counted per trust level"
    );
    a.publish(topic(&dev_a), QoS::AtLeastOnce, false, sealed)
        .expect("publish");
    let rejected = |reason: &str| {
        metric(
            &api.metrics(),
            "beffroi_observations_rejected_total",
            &[("source", "mqtt"), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    poll("the replay rejected", WAIT, log, || {
        (rejected("replay") >= 1.0).then_some(())
    });
    // A forged envelope (wrong key) is refused too.
    let forged = beffroi_wire::signed::seal(&dev_a, 2, &[0u8; 32], level(9.99).as_bytes());
    a.publish(topic(&dev_a), QoS::AtLeastOnce, false, forged)
        .expect("publish");
    poll("the forgery rejected", WAIT, log, || {
        (rejected("bad_signature") >= 1.0).then_some(())
    });

    // (d) a wrong password: refused by the broker, counted by the engine.
    let auth_failures = || {
        metric(
            &api.metrics(),
            "beffroi_security_signals_total",
            &[("kind", "auth_failure")],
        )
        .unwrap_or(0.0)
    };
    assert!(connect(broker.port(), "dev-b", &dev_b, "wrong", None).is_err());
    poll("the auth failure counted", WAIT, log, || {
        (auth_failures() >= 1.0).then_some(())
    });

    // (c) revoke B in Beffroi's registry: files regenerated, broker reloaded, B refused,
    // and that refusal counted as well.
    let b = connect(broker.port(), "dev-b", &dev_b, &pw_b, None).expect("B accepted");
    drop(b);
    // B's signing key is in force: a signed envelope over HTTP is stored as signed.
    let key_b = key_of(&issued, &dev_b);
    let plain = |v: f64| {
        format!(
            r#"{{"device":"{dev_b}","time":{},"values":{{"level_m":{v}}}}}"#,
            now_ms()
        )
    };
    let post_signed = |ctr: u64, v: f64| {
        let env = beffroi_wire::signed::seal(&dev_b, ctr, &key_b, plain(v).as_bytes());
        api.post(
            &format!("/api/v1/devices/{dev_b}/observations?format=json"),
            std::str::from_utf8(&env).expect("utf-8 envelope"),
        )
    };
    let (status, answer) = post_signed(1, 4.44);
    assert_eq!(status, 200, "{answer}");
    assert!(has_value(&dev_b, 4.44, "signed"));
    let before = auth_failures();
    let pid_file = broker_dir.path().join("mosquitto.pid");
    std::fs::write(&pid_file, broker.pid().to_string()).expect("pid file");
    devices(
        &beffroi.data_dir(),
        broker_dir.path(),
        Some(&pid_file),
        &["revoke", &dev_b],
    );
    chmod_readable(broker_dir.path());
    poll("B refused after revocation", WAIT, log, || {
        match connect(broker.port(), "dev-b", &dev_b, &pw_b, None) {
            Err(_) => Some(()),
            Ok(_) => {
                // The chmod above may have raced the first reload: reload again.
                let _ = Command::new("kill")
                    .arg("-HUP")
                    .arg(broker.pid().to_string())
                    .status();
                None
            }
        }
    });
    poll("the revoked device's failure counted", WAIT, log, || {
        (auth_failures() > before).then_some(())
    });
    // A burst of wrong passwords reaches anomaly detection: a brute-force cyber incident
    // (5 failures within a minute by default).
    for _ in 0..5 {
        assert!(connect(broker.port(), "dev-b", &dev_b, "guess", None).is_err());
    }
    poll("a brute-force cyber incident", WAIT, log, || {
        let (status, body) = api.get("/api/v1/incidents?category=cyber");
        (status == 200 && body.to_string().contains("cyber-brute_force")).then_some(())
    });
    // The server reloads the registry: B's key is no longer in force, without a restart.
    let mut ctr = 1;
    poll(
        "B's signed envelopes refused after revocation",
        WAIT,
        log,
        || {
            ctr += 1;
            let (status, answer) = post_signed(ctr, 5.55);
            (status == 422 && answer.to_string().contains("bad_signature")).then_some(())
        },
    );
}

/// Bulk issue by kind writes the secrets to a new 0600 file only, `list` shows the devices
/// without a secret, and a second bulk issue skips devices that already have one.
#[test]
fn bulk_issue_by_kind_to_a_private_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = tempfile::tempdir().expect("tempdir");
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let demo = support::demo::dir();
    let gauges: Vec<String> = support::demo::of_kind(&support::demo::devices(), "water_level")
        .iter()
        .map(|d| d.id.clone())
        .collect();
    assert!(gauges.len() >= 2);
    let out = data.path().join("secrets.tsv");
    let printed = devices(
        data.path(),
        broker_dir.path(),
        None,
        &[
            "issue",
            "--kind",
            "water_level",
            "--deployment",
            demo.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    );
    assert!(printed.is_empty(), "secrets printed with --out: {printed}");
    let mode = std::fs::metadata(&out)
        .expect("secrets file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let secrets = std::fs::read_to_string(&out).expect("read");
    assert_eq!(secrets.lines().count(), gauges.len() + 1, "{secrets}");
    let listed = devices(data.path(), broker_dir.path(), None, &["list"]);
    for g in &gauges {
        assert!(listed.contains(&format!("{g}\t1\tissued")), "{listed}");
        let pw = password_of(&secrets, g);
        assert!(!listed.contains(&pw), "list shows a secret");
    }
    // The broker files name every gauge and give each its own topic only.
    let acl = std::fs::read_to_string(broker_dir.path().join("acl")).expect("acl");
    for g in &gauges {
        assert!(acl.contains(&format!(
            "user {g}\ntopic write beffroi/+/{g}/senml\ntopic write beffroi/+/{g}/json\n"
        )));
    }
    // Nothing left to issue for that kind; an unknown id is refused.
    let again = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["devices", "--data"])
        .arg(data.path())
        .args(["issue", "--kind", "water_level", "--deployment"])
        .arg(&demo)
        .output()
        .expect("run");
    assert!(!again.status.success());
    let unknown = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["devices", "--data"])
        .arg(data.path())
        .args(["issue", "no-such-device", "--deployment"])
        .arg(&demo)
        .output()
        .expect("run");
    assert!(!unknown.status.success());
}

/// A partner's TAXII collection that holds one indicator, `[ipv4-addr:value = '127.0.0.1']`,
/// served on loopback; every request's path and query recorded.
fn partner_taxii(requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> u16 {
    let envelope = serde_json::json!({
        "more": false,
        "objects": [
            {
                "type": "indicator", "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2026-12-01T08:00:00.000Z", "modified": "2026-12-01T08:00:00.000Z",
                "name": "Botnet C2 — contact jean.dupont@csirt.example",
                "indicator_types": ["malicious-activity"],
                "pattern": "[ipv4-addr:value = '127.0.0.1']", "pattern_type": "stix",
                "valid_from": "2026-12-01T08:00:00Z",
                "object_marking_refs": ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]
            },
            {
                "type": "indicator", "spec_version": "2.1",
                "id": "indicator--0b5b4f0e-51f6-4a59-9d5c-3c1a9b8f2a11",
                "created": "2026-12-01T08:00:00.000Z", "modified": "2026-12-01T08:00:00.000Z",
                "pattern": "[ipv4-addr:value = '127.0.0.2' AND network-traffic:dst_port = 22]",
                "pattern_type": "stix", "valid_from": "2026-12-01T08:00:00Z"
            }
        ]
    })
    .to_string();
    support::outside::serve(move |target| {
        requests.lock().expect("requests").push(target.to_string());
        let mut a = support::outside::Answer::new(
            200,
            "application/taxii+json;version=2.1",
            envelope.clone(),
        );
        for h in ["X-TAXII-Date-Added-First", "X-TAXII-Date-Added-Last"] {
            a.headers.push((h, "2026-12-01T08:00:00.000Z".into()));
        }
        a
    })
}

/// An indicator pulled from a partner's TAXII collection reaches the sentinel: a
/// connection attempt from the address it names, seen in the broker's log, raises a
/// `cyber-known_bad_address` incident. The indicator whose pattern joins the address with
/// another condition is not used.
#[test]
fn a_pulled_indicator_raises_an_incident_when_its_address_is_seen() {
    use std::sync::{Arc, Mutex};
    use support::beffroi::{Beffroi, BrokerAuth, MqttSettings};
    use support::http::{Api, metric};
    use support::poll;

    let requests = Arc::new(Mutex::new(Vec::new()));
    let partner = partner_taxii(Arc::clone(&requests));
    let all = support::demo::devices();
    let dev = support::demo::of_kind(&all, "water_level")[0].id.clone();
    let reg = tempfile::tempdir().expect("tempdir");
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let issued = devices(reg.path(), broker_dir.path(), None, &["issue", &dev]);
    let password = password_of(&issued, &dev);
    chmod_readable(broker_dir.path());
    let Some(broker) = Mosquitto::start_with(&broker_conf(broker_dir.path())) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let deployment = work.path().join("deployment");
    support::copy_dir(&support::demo::dir(), &deployment);
    std::fs::write(
        deployment.join("taxii.toml"),
        format!(
            "[[pull]]\nname = \"csirt\"\nurl = \"http://127.0.0.1:{partner}/taxii2/api1/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/objects/\"\nuser = \"dijon\"\npassword_env = \"BEFFROI_TEST_TAXII_PASSWORD\"\nevery = \"1s\"\n"
        ),
    )
    .expect("taxii.toml");
    let beffroi = Beffroi::start_full(
        Some(MqttSettings {
            url: broker.url(),
            client_id: format!("beffroi-taxii-{}", std::process::id()),
            protocol: 4,
        }),
        Some(deployment),
        Some(BrokerAuth {
            username: "beffroi".into(),
            password: INGEST_PASSWORD.into(),
        }),
        |data| {
            std::fs::create_dir_all(data).expect("data dir");
            std::fs::copy(
                reg.path().join("devices.sqlite"),
                data.join("devices.sqlite"),
            )
            .expect("registry into the data folder");
        },
    );
    let api = Api::login(&beffroi.base());
    let log = || support::logs(&beffroi, &broker);
    // The partner's indicator in force: one network (the exact one), one skipped.
    poll("the partner's indicator pulled", WAIT, log, || {
        let m = api.metrics();
        (metric(&m, "beffroi_known_bad_networks", &[]) == Some(1.0)).then_some(())
    });
    let m = api.metrics();
    assert_eq!(
        metric(
            &m,
            "beffroi_taxii_pull_skipped_total",
            &[("source", "csirt")]
        ),
        Some(1.0),
        "{m}"
    );
    let first = requests.lock().expect("requests")[0].clone();
    assert!(first.contains("match%5Btype%5D=indicator"), "{first}");
    // Later polls ask only for what was added after the last page.
    poll("a poll with added_after", WAIT, log, || {
        requests
            .lock()
            .expect("requests")
            .iter()
            .any(|r| r.contains("added_after=2026-12-01T08%3A00%3A00.000Z"))
            .then_some(())
    });
    assert!(
        api.get_ok("/api/v1/incidents?category=cyber")
            .to_string()
            .find("known_bad")
            .is_none(),
        "nothing before the address is seen"
    );
    // The device connects from 127.0.0.1, the flagged address.
    let c = connect(broker.port(), "dev-seen", &dev, &password, None).expect("accepted");
    let incident = poll("the known-bad address incident", WAIT, log, || {
        api.get_ok("/api/v1/incidents?category=cyber")
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|i| i["rule"] == "cyber-known_bad_address")
                    .cloned()
            })
    });
    drop(c);
    let detail = api.get_ok(&format!("/api/v1/incidents/{}", incident["id"]));
    let text = detail.to_string();
    assert!(
        text.contains("127.0.0.1") && text.contains("csirt"),
        "{detail:#}"
    );
    assert!(text.contains("T0883"), "{detail:#}");
    // The partner's free text is never read.
    assert!(!text.contains("jean.dupont"), "{detail:#}");
}
