//! The broker restarts while messages are queued for Beffroi: Beffroi is frozen (SIGSTOP)
//! while devices publish, the broker is restarted by its administrator (SIGTERM, which saves
//! the session and its queue), then Beffroi wakes up. It must reconnect by itself within the
//! capped backoff, receive the queue, store every reading once, and log each incident change
//! once (the messages it had received before the freeze and not acknowledged come again).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use rusqlite::{Connection, OpenFlags};
use support::beffroi::{Beffroi, MqttSettings};
use support::demo::{self, TERRITORY};
use support::http::Api;
use support::mosquitto::Mosquitto;
use support::publisher::{Publisher, wait_mqtt_flowing};
use support::{now_ms, poll};

/// Readings published while Beffroi is frozen.
const QUEUED: usize = 600;
/// One reading in this many is the intrusion panel, alternately alarm and clear.
const PANEL_EVERY: usize = 50;

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn a_broker_restart_with_messages_queued_loses_nothing_and_logs_each_change_once() {
    let started = Instant::now();
    let Some(mut broker) = Mosquitto::start_with("max_inflight_messages 1000\n") else {
        return;
    };
    let beffroi = Beffroi::start(Some(MqttSettings {
        url: broker.url(),
        client_id: format!("beffroi-broker-restart-{}", std::process::id()),
        protocol: 4,
    }));
    let devices = demo::devices();
    let gauges: Vec<String> = demo::of_kind(&devices, "water_level")
        .iter()
        .map(|d| d.id.clone())
        .collect();
    let panel = demo::watched_intrusion_panels(&devices)[0].clone();
    let api = Api::login(&beffroi.base());
    let publisher = Publisher::connect(broker.port(), "broker-restart-devices");
    wait_mqtt_flowing(&api, &publisher, &gauges[0], || {
        support::logs(&beffroi, &broker)
    });

    // Beffroi stalls; the devices go on publishing: the broker queues for its session.
    beffroi.pause();
    let acks_before = publisher.acks();
    let base = now_ms() - 60_000;
    let mut expected = BTreeSet::new();
    let client = publisher.client();
    for i in 0..QUEUED {
        let (device, payload, t) =
            support::stream_message(i, base, &gauges, &panel.id, PANEL_EVERY);
        client
            .publish(
                format!("beffroi/{TERRITORY}/{device}/senml"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .expect("publish request");
        expected.insert((device, t));
    }
    publisher.wait_acks(acks_before + QUEUED as u64, Duration::from_secs(30));

    // The administrator restarts the broker; then Beffroi wakes up.
    broker.restart_keeping_sessions();
    beffroi.resume();

    let ro = Connection::open_with_flags(beffroi.db_path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database read-only");
    let stored = |device: &str, t: i64| -> i64 {
        ro.query_row(
            "SELECT COUNT(*) FROM observations WHERE device = ?1 AND time = ?2",
            rusqlite::params![device, t],
            |r| r.get(0),
        )
        .expect("count")
    };
    // Reconnection is capped at 5 s by default: the queue arrives well within the deadline.
    poll(
        "every queued reading stored after the broker restart",
        Duration::from_secs(60),
        || support::logs(&beffroi, &broker),
        || {
            expected
                .iter()
                .all(|(d, t)| stored(d, *t) >= 1)
                .then_some(())
        },
    );
    for (d, t) in &expected {
        assert_eq!(stored(d, *t), 1, "{d} at {t} stored once");
    }
    let twice = count(
        &ro,
        "SELECT COUNT(*) FROM (SELECT incident_id FROM incident_log \
         GROUP BY incident_id, at, action, detail HAVING COUNT(*) > 1)",
    );
    assert_eq!(
        twice,
        0,
        "an incident change was logged twice\n{}",
        support::logs(&beffroi, &broker)
    );
    let key = format!("intrusion-alarm@site:{}", panel.site);
    let incidents: i64 = ro
        .query_row(
            "SELECT COUNT(*) FROM incidents WHERE key = ?1",
            [&key],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(incidents, 1, "the panel's alarms make one incident");
    assert!(beffroi.is_running(), "{}", support::logs(&beffroi, &broker));
    eprintln!("broker restart test passed in {:?}", started.elapsed());
}
