use super::*;
use beffroi_core::FieldSpec;
use beffroi_core::territory::fixture;
use proptest::prelude::*;

const T0: Timestamp = Timestamp(1_795_694_400_000);

fn at(secs: i64) -> Timestamp {
    T0.plus(Duration::from_secs(secs))
}

fn territory() -> Arc<Territory> {
    let mut t = fixture::small();
    t.kinds[0].fields[0].max_step_per_minute = Some(0.5);
    t.kinds[1]
        .fields
        .push(FieldSpec::technical("firmware", FieldType::Text));
    Arc::new(t)
}

fn sentinel() -> (Sentinel, Arc<Territory>) {
    let t = territory();
    (Sentinel::new(Arc::clone(&t), Config::default()), t)
}

fn dev(t: &Territory, id: &str) -> DeviceIdx {
    t.device_id(id).expect("fixture device")
}

fn level(s: &mut Sentinel, d: DeviceIdx, v: f64, secs: i64, out: &mut Vec<Finding>) {
    s.on_observation(d, FieldIdx(0), &Value::Number(v), at(secs), at(secs), out);
}

#[test]
fn a_jump_faster_than_the_physical_limit_is_flagged_with_its_numbers() {
    let (mut s, t) = sentinel();
    let g1 = dev(&t, "g1");
    let mut out = Vec::new();
    level(&mut s, g1, 1.2, 0, &mut out);
    level(&mut s, g1, 1.4, 60, &mut out);
    assert!(out.is_empty(), "{out:?}");
    level(&mut s, g1, 4.0, 90, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].anomaly, Anomaly::ImpossibleJump);
    assert_eq!(out[0].subject, Subject::Device(g1));
    assert!(
        out[0].evidence.contains("1.4") && out[0].evidence.contains('4'),
        "{}",
        out[0].evidence
    );
    assert_eq!(Anomaly::ImpossibleJump.technique().id, "T0856");
}

#[test]
fn a_flood_is_flagged_once_per_episode() {
    let (mut s, t) = sentinel();
    let g1 = dev(&t, "g1");
    let mut out = Vec::new();
    // Burst 30, then one message a second: the bucket empties after ~30 messages.
    for i in 0..120 {
        s.on_message(g1, at(i), &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].anomaly, Anomaly::Flood);
    assert!(out[0].at > at(25) && out[0].at < at(40), "{:?}", out[0].at);
    // Back to a normal rate: the episode ends; a new flood is a new finding.
    for i in 0..20 {
        s.on_message(g1, at(200 + i * 600), &mut out);
    }
    assert_eq!(out.len(), 1);
}

/// A kind that declares it reports every 2 s is not a flood at that pace (30 messages a
/// minute, beyond the default 12); four times its pace is.
#[test]
fn the_flood_limit_follows_the_kind_s_reporting_period() {
    let mut t = fixture::small();
    t.kinds[0].period = Some(Duration::from_secs(2));
    let t = Arc::new(t);
    let mut s = Sentinel::new(Arc::clone(&t), Config::default());
    let g1 = dev(&t, "g1");
    let mut out = Vec::new();
    for i in 0..600 {
        s.on_message(g1, T0.plus(Duration(i * 2_000)), &mut out);
    }
    assert!(out.is_empty(), "its own pace: {out:?}");
    // The same pace for a kind that declares none: the default limit flags it.
    let (mut plain, t2) = sentinel();
    for i in 0..600 {
        plain.on_message(dev(&t2, "g1"), T0.plus(Duration(i * 2_000)), &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    out.clear();
    // Five messages a second, ten times its pace: a flood.
    for i in 0..600 {
        s.on_message(g1, at(2_000).plus(Duration(i * 200)), &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].anomaly, Anomaly::Flood);
}

#[test]
fn brute_force_is_counted_per_user_and_per_address() {
    let (mut s, t) = sentinel();
    let mut out = Vec::new();
    let fail = |user: &str, addr: &str| SecuritySignal::AuthFailure {
        client_id: format!("c-{addr}"),
        username: Some(user.into()),
        address: Some(addr.into()),
    };
    // Four failures per address, one address each: no per-address burst, but five on `a1`.
    for (i, addr) in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
        .iter()
        .enumerate()
    {
        s.on_signal(&fail("a1", addr), at(i as i64), &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].anomaly, Anomaly::BruteForce);
    assert_eq!(out[0].subject, Subject::Device(dev(&t, "a1")));
    out.clear();
    // One address trying five unknown users.
    for i in 0..5 {
        s.on_signal(
            &fail(&format!("user{i}"), "192.0.2.9"),
            at(100 + i),
            &mut out,
        );
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].subject, Subject::Other("address:192.0.2.9".into()));
    // Failures spread wider than the window never flag.
    out.clear();
    for i in 0..20 {
        s.on_signal(&fail("a1", "10.1.1.1"), at(1000 + i * 30), &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_known_user_from_a_new_address_and_a_firmware_change_are_flagged() {
    let (mut s, t) = sentinel();
    let a1 = dev(&t, "a1");
    let mut out = Vec::new();
    let conn = |addr: &str| SecuritySignal::Connected {
        client_id: "a1".into(),
        username: Some("a1".into()),
        address: Some(addr.into()),
    };
    s.on_signal(&conn("10.0.0.7"), at(0), &mut out);
    s.on_signal(&conn("10.0.0.7"), at(10), &mut out);
    assert!(out.is_empty());
    s.on_signal(&conn("203.0.113.66"), at(20), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].anomaly, Anomaly::IdentityChange);
    assert!(out[0].evidence.contains("203.0.113.66") && out[0].evidence.contains("10.0.0.7"));
    out.clear();
    let fw = FieldIdx(2);
    s.on_observation(
        a1,
        fw,
        &Value::Text("1.0.3".into()),
        at(30),
        at(30),
        &mut out,
    );
    s.on_observation(
        a1,
        fw,
        &Value::Text("1.0.3".into()),
        at(40),
        at(40),
        &mut out,
    );
    assert!(out.is_empty());
    s.on_observation(
        a1,
        fw,
        &Value::Text("6.6.6-evil".into()),
        at(50),
        at(50),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].anomaly, Anomaly::FirmwareChange);
    assert_eq!(out[0].anomaly.technique().id, "T0839");
}

#[test]
fn clock_skew_ahead_is_flagged_small_drift_is_not() {
    let (mut s, t) = sentinel();
    let g1 = dev(&t, "g1");
    let mut out = Vec::new();
    s.on_observation(
        g1,
        FieldIdx(0),
        &Value::Number(1.0),
        at(60),
        at(0),
        &mut out,
    );
    assert!(out.is_empty());
    s.on_observation(
        g1,
        FieldIdx(0),
        &Value::Number(1.0),
        at(3600),
        at(70),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].anomaly, Anomaly::ClockSkew);
}

#[test]
fn silence_is_cyber_only_while_a_neighbour_raises_a_condition() {
    let (mut s, t) = sentinel();
    let (g1, g2) = (dev(&t, "g1"), dev(&t, "g2"));
    let site = t.device(g2).site;
    let mut out = Vec::new();
    level(&mut s, g1, 1.0, 0, &mut out);
    level(&mut s, g2, 1.0, 0, &mut out);
    // g1 silent for an hour, g2 reports: a calm day, no cyber finding.
    for m in 1..=60 {
        level(&mut s, g2, 1.0, m * 60, &mut out);
        s.on_tick(at(m * 60), &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    // The river rises at g2's site: g1's silence is now suspicious, flagged once.
    s.on_operational(site, true);
    for m in 61..=70 {
        level(&mut s, g2, 1.0 + m as f64 * 0.001, m * 60, &mut out);
        s.on_tick(at(m * 60), &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].anomaly, Anomaly::Silence);
    assert_eq!(out[0].subject, Subject::Device(g1));
    assert_eq!(out[0].anomaly.technique().id, "T0804");
}

#[test]
fn edge_signals_become_findings_and_disabled_anomalies_stay_quiet() {
    let (mut s, t) = sentinel();
    let mut out = Vec::new();
    s.on_signal(
        &SecuritySignal::Replay {
            device: "g1".into(),
            counter: 3,
            last: 40,
        },
        at(0),
        &mut out,
    );
    s.on_signal(
        &SecuritySignal::Unregistered {
            publisher: None,
            names: 1,
            tags: vec!["0a1b2c3d".into()],
        },
        at(0),
        &mut out,
    );
    assert_eq!(out[0].subject, Subject::Device(dev(&t, "g1")));
    assert!(out[0].evidence.contains("40"));
    assert_eq!(out[1].subject, Subject::Other(UNKNOWN_PUBLISHER.into()));
    assert!(out[1].evidence.contains("#0a1b2c3d"), "{}", out[1].evidence);
    let mut cfg = Config::default();
    cfg.disabled.insert(Anomaly::Unregistered);
    s.set_config(cfg);
    out.clear();
    s.on_signal(
        &SecuritySignal::Unregistered {
            publisher: None,
            names: 1,
            tags: Vec::new(),
        },
        at(1),
        &mut out,
    );
    assert!(out.is_empty());
}

/// Made-up device names are grouped per publisher (one subject, hence one incident, each),
/// the publishers that are not registered devices are capped, and the names never appear.
#[test]
fn unregistered_names_are_grouped_per_publisher_and_capped() {
    let (mut s, t) = sentinel();
    let mut out = Vec::new();
    let unregistered = |publisher: Option<String>| SecuritySignal::Unregistered {
        publisher,
        names: 50,
        tags: (0..50).map(|i| format!("{i:08x}")).collect(),
    };
    s.on_signal(&unregistered(Some("g1".into())), at(0), &mut out);
    s.on_signal(&unregistered(None), at(0), &mut out);
    assert_eq!(out[0].subject, Subject::Device(dev(&t, "g1")));
    assert_eq!(out[1].subject, Subject::Other(UNKNOWN_PUBLISHER.into()));
    assert!(out[0].evidence.contains("names 50 unregistered devices"));
    assert_eq!(out[0].evidence.matches('#').count(), MAX_TAGS_QUOTED);
    out.clear();
    for i in 0..MAX_UNREGISTERED_PUBLISHERS + 10 {
        s.on_signal(&unregistered(Some(format!("cred-{i}"))), at(1), &mut out);
    }
    let subjects: std::collections::HashSet<&Subject> = out.iter().map(|f| &f.subject).collect();
    assert_eq!(subjects.len(), MAX_UNREGISTERED_PUBLISHERS + 1);
    assert!(subjects.contains(&Subject::Other(UNKNOWN_PUBLISHER.into())));
}

/// A topic mismatch is about the publishing device, not the device it named.
#[test]
fn a_topic_mismatch_is_about_the_publisher() {
    let (mut s, t) = sentinel();
    let mut out = Vec::new();
    s.on_signal(
        &SecuritySignal::TopicMismatch {
            topic_device: "g1".into(),
            claimed: "unregistered device #0a1b2c3d".into(),
        },
        at(0),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].anomaly, Anomaly::TopicMismatch);
    assert_eq!(out[0].subject, Subject::Device(dev(&t, "g1")));
}

#[test]
fn rule_ids_round_trip() {
    for a in Anomaly::ALL {
        assert_eq!(Anomaly::from_rule_id(&a.rule_id()), Some(a));
        assert!(a.technique().id.starts_with("T0"));
    }
    assert_eq!(Anomaly::from_rule_id("flood-level-high"), None);
}

proptest! {
    /// A device that never sends faster than the configured rate never floods.
    #[test]
    fn a_rate_under_the_threshold_never_flags(gaps in proptest::collection::vec(5_000i64..600_000, 1..300)) {
        let (mut s, t) = sentinel();
        let g1 = dev(&t, "g1");
        let mut out = Vec::new();
        let mut now = T0;
        for g in gaps {
            now = now.plus(Duration(g));
            s.on_message(g1, now, &mut out);
        }
        prop_assert!(out.is_empty());
    }

    /// Sending faster than the rate for long enough always flags.
    #[test]
    fn a_sustained_rate_over_the_threshold_always_flags(gap in 100i64..4_000) {
        let (mut s, t) = sentinel();
        let g1 = dev(&t, "g1");
        let mut out = Vec::new();
        for i in 0..400 {
            s.on_message(g1, T0.plus(Duration(i * gap)), &mut out);
        }
        prop_assert_eq!(out.len(), 1);
    }

    /// Values that move no faster than the physical limit never flag a jump.
    #[test]
    fn slopes_under_the_limit_never_flag(steps in proptest::collection::vec((60i64..1_800, -0.49f64..0.49), 1..100)) {
        let (mut s, t) = sentinel();
        let g1 = dev(&t, "g1");
        let mut out = Vec::new();
        let (mut now, mut v) = (0i64, 5.0f64);
        level(&mut s, g1, v, now, &mut out);
        for (dt, slope) in steps {
            now += dt;
            v += slope * dt as f64 / 60.0;
            level(&mut s, g1, v, now, &mut out);
        }
        prop_assert!(out.is_empty(), "{:?}", out);
    }

    /// The jump predicate is symmetric in direction and monotone in the limit.
    #[test]
    fn jump_predicate_is_symmetric_and_monotone(a in -10.0f64..10.0, b in -10.0f64..10.0, dt in 0i64..3_600_000, max in 0.01f64..5.0) {
        let (t0, t1) = (T0, T0.plus(Duration(dt)));
        prop_assert_eq!(impossible_jump(a, t0, b, t1, max), impossible_jump(b, t0, a, t1, max));
        if !impossible_jump(a, t0, b, t1, max) {
            prop_assert!(!impossible_jump(a, t0, b, t1, max * 2.0));
        }
    }

    /// Authentication failures spaced wider than window / threshold never flag.
    #[test]
    fn sparse_auth_failures_never_flag(n in 1usize..200, extra in 1i64..10_000) {
        let (mut s, _) = sentinel();
        let mut out = Vec::new();
        let gap = Config::default().auth_window.millis() / (Config::default().auth_failures as i64 - 1) + extra;
        for i in 0..n {
            s.on_signal(&SecuritySignal::AuthFailure {
                client_id: "x".into(), username: Some("u".into()), address: Some("10.0.0.1".into()),
            }, T0.plus(Duration(i as i64 * gap)), &mut out);
        }
        prop_assert!(out.is_empty());
    }
}

proptest! {
    /// A device that keeps reporting within heartbeat × factor is never flagged silent,
    /// however hot its neighbours are.
    #[test]
    fn a_device_that_reports_in_time_is_never_flagged_silent(gaps in proptest::collection::vec(1i64..=900, 1..100)) {
        let (mut s, t) = sentinel();
        let (g1, g2) = (dev(&t, "g1"), dev(&t, "g2"));
        s.on_operational(t.device(g2).site, true);
        let mut out = Vec::new();
        let mut now = 0;
        level(&mut s, g1, 1.0, now, &mut out);
        for g in gaps {
            // Ticks every minute in between; heartbeat 10 min × 1.5 = 15 min.
            for m in 1..=(g / 60) {
                level(&mut s, g2, 1.0, now + m * 60, &mut out);
                s.on_tick(at(now + m * 60), &mut out);
            }
            now += g;
            level(&mut s, g1, 1.0, now, &mut out);
            s.on_tick(at(now), &mut out);
        }
        prop_assert!(out.is_empty(), "{:?}", out);
    }
}

#[test]
fn every_anomaly_titles_its_incident_through_a_catalogued_message() {
    for a in Anomaly::ALL {
        let template = beffroi_core::message::template(a.title_code()).expect("catalogued");
        assert_eq!(template, format!("{} — {{subject}}", a.title()), "{a:?}");
    }
}

#[test]
fn an_address_a_partner_flags_raises_one_finding_per_address_and_repeat_window() {
    let (mut s, _t) = sentinel();
    let mut out = Vec::new();
    // No user name: the identity-change detector stays out of it.
    let connect = |addr: &str| SecuritySignal::Connected {
        client_id: "cam-7".into(),
        username: None,
        address: Some(addr.into()),
    };
    // Nothing flagged: nothing found.
    s.on_signal(&connect("198.51.100.23"), at(0), &mut out);
    assert!(out.is_empty(), "{out:?}");
    s.set_known_bad(
        "csirt",
        vec![
            KnownBad {
                address: "198.51.100.0".parse().expect("ip"),
                prefix: 24,
                until: Some(at(3600)),
            },
            KnownBad {
                address: "2001:db8::".parse().expect("ip"),
                prefix: 32,
                until: None,
            },
        ],
    );
    assert_eq!(s.known_bad_count(), 2);
    s.on_signal(&connect("198.51.101.1"), at(10), &mut out);
    assert!(out.is_empty(), "outside the /24: {out:?}");
    s.on_signal(&connect("198.51.100.23"), at(20), &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].anomaly, Anomaly::KnownBadAddress);
    assert_eq!(
        out[0].subject,
        Subject::Other("address:198.51.100.23".into())
    );
    assert!(
        out[0].evidence.contains("198.51.100.0/24") && out[0].evidence.contains("csirt"),
        "{}",
        out[0].evidence
    );
    // The same address again within ten minutes, by connection or failed login: no more.
    s.on_signal(&connect("198.51.100.23"), at(60), &mut out);
    s.on_signal(
        &SecuritySignal::AuthFailure {
            client_id: "x".into(),
            username: None,
            address: Some("198.51.100.23".into()),
        },
        at(70),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    // IPv6 in brackets, as some logs write it; later, the same IPv4 address again.
    s.on_signal(&connect("[2001:db8:1::5]"), at(80), &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
    s.on_signal(&connect("198.51.100.23"), at(20 + 601), &mut out);
    assert_eq!(out.len(), 3, "{out:?}");
    // The indicator expired: nothing; the source withdrawn: nothing.
    s.on_signal(&connect("198.51.100.99"), at(3600), &mut out);
    assert_eq!(out.len(), 3, "{out:?}");
    s.set_known_bad("csirt", Vec::new());
    assert_eq!(s.known_bad_count(), 0);
    s.on_signal(&connect("[2001:db8:1::6]"), at(4000), &mut out);
    assert_eq!(out.len(), 3, "{out:?}");
}

proptest! {
    /// A network contains exactly the addresses sharing its first `prefix` bits.
    #[test]
    fn a_network_contains_the_addresses_of_its_prefix(n in any::<u32>(), a in any::<u32>(), p in 0u8..=32) {
        let net = KnownBad { address: std::net::IpAddr::V4(n.into()), prefix: p, until: None };
        let same = p == 0 || (n >> (32 - u32::from(p))) == (a >> (32 - u32::from(p)));
        prop_assert_eq!(net.contains(std::net::IpAddr::V4(a.into())), same);
        prop_assert!(!net.contains("::1".parse().expect("ip")));
    }
}
