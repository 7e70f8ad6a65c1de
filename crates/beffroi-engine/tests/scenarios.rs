//! Plays every demo scenario (with the background) through the pipeline on a simulated
//! clock and checks the incidents each one declares — and, for exclusive scenarios, that
//! no other incident opens; the background alone opens none. Also the demo's own
//! conventions that no loader checks (the background covers every kind within its
//! heartbeat, a scenario silences for the background the devices it drives, the territory's
//! generated ids, positions and LoRaWAN identifiers).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use beffroi_core::{
    DeviceIdx, Duration, Incident, IncidentId, SecuritySignal, Severity, Territory, Timestamp,
    Trust,
};
use beffroi_engine::Source;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::pipeline::{Output, Pipeline, PipelineConfig};
use beffroi_engine::trust::DeviceKeys;
use beffroi_sim::{Player, Scenario};
use beffroi_territory::SourceFile;
use beffroi_wire::{RejectReason, signed};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo")
}

struct Fixture {
    territory: Arc<Territory>,
    rules: Arc<beffroi_rules::RuleSet>,
    procedures: Vec<beffroi_core::incident::Procedure>,
    scenarios: Vec<Arc<Scenario>>,
    families: Vec<beffroi_core::Family>,
}

fn fixture() -> Fixture {
    let dir = demo();
    let territory = beffroi_territory::load_dir(&dir.join("territory")).expect("demo territory");
    let rules = beffroi_rules::parse(
        &beffroi_territory::SourceFile::read(&dir.join("rules.toml")).expect("read rules"),
        &territory,
    )
    .expect("rules");
    let procedures = beffroi_engine::procedures::parse(
        &SourceFile::read(&dir.join("procedures.toml")).expect("read"),
    )
    .expect("procedures");
    let scenarios = beffroi_sim::load_dir(&dir.join("scenarios"), &territory).expect("scenarios");
    let families = beffroi_engine::situations::parse(
        &SourceFile::read(&dir.join("situations.toml")).expect("read"),
        &rules,
    )
    .expect("situations");
    Fixture {
        families,
        territory: Arc::new(territory),
        rules: Arc::new(rules),
        procedures,
        scenarios: scenarios.into_iter().map(Arc::new).collect(),
    }
}

/// Plays scenarios together; returns every incident opened (final state) by id.
fn play(
    f: &Fixture,
    scenarios: Vec<Arc<Scenario>>,
    end: Duration,
) -> (HashMap<IncidentId, Incident>, usize) {
    play_with(f, scenarios, end, |_, _, _| {})
}

/// [`play`] with a hook called after each step's tick (an analyst acting mid-play).
fn play_with(
    f: &Fixture,
    scenarios: Vec<Arc<Scenario>>,
    end: Duration,
    hook: impl FnMut(Duration, &mut Pipeline, &mut Output),
) -> (HashMap<IncidentId, Incident>, usize) {
    play_signed(f, scenarios, end, None, hook)
}

/// One device that signs its telemetry during a play: its key, its counter and every
/// envelope it sent (for a test to replay).
struct Signer {
    device: DeviceIdx,
    id: String,
    key: [u8; signed::KEY_LEN],
    ctr: u64,
    sent: Vec<Vec<u8>>,
}

impl Signer {
    fn new(t: &Territory, id: &str, key: [u8; signed::KEY_LEN]) -> Self {
        Signer {
            device: t.device_id(id).expect("signing device"),
            id: id.into(),
            key,
            ctr: 0,
            sent: Vec::new(),
        }
    }

    /// Wraps the payload the device would have sent in a signed envelope (next counter).
    fn seal(&mut self, body: &[u8]) -> Vec<u8> {
        self.ctr += 1;
        let env = signed::seal(&self.id, self.ctr, &self.key, body);
        self.sent.push(env.clone());
        env
    }
}

/// [`play_with`] where `signer`'s device holds a key in the pipeline and sends its
/// readings as signed envelopes. The scenarios' `bad_signature`/`replay` signals for that
/// device are not raised: the test sends the real forged and replayed envelopes instead.
fn play_signed(
    f: &Fixture,
    scenarios: Vec<Arc<Scenario>>,
    end: Duration,
    signer: Option<&RefCell<Signer>>,
    mut hook: impl FnMut(Duration, &mut Pipeline, &mut Output),
) -> (HashMap<IncidentId, Incident>, usize) {
    let start = Timestamp(1_795_694_400_000);
    let mut player = Player::new(Arc::clone(&f.territory), scenarios, start, &f.territory.id);
    let mut cfg = PipelineConfig::new(
        Arc::clone(&f.territory),
        Arc::clone(&f.rules),
        f.procedures.clone(),
        Arc::new(Metrics::new()),
    );
    cfg.operations.families = f.families.clone();
    // Badges, plates and phone numbers of the demo are pseudonymised, as in production.
    cfg.pseudonymiser =
        beffroi_privacy::Pseudonymiser::new(vec![beffroi_privacy::EpochKey::new(1, &[42; 32])])
            .map(Arc::new);
    let mut p = Pipeline::new(cfg, start);
    let signing = signer.map(|s| {
        let s = s.borrow();
        p.set_device_keys(Arc::new(DeviceKeys::new([(s.id.clone(), s.key)])));
        s.id.clone()
    });
    let step = Duration::from_secs(15);
    let mut offset = Duration::ZERO;
    let mut msgs = Vec::new();
    let mut signals = Vec::new();
    let mut incidents = HashMap::new();
    let mut rejected = 0;
    while offset <= end {
        msgs.clear();
        player.drain_until(offset, &mut msgs);
        let mut out = Output::default();
        signals.clear();
        player.drain_signals_until(offset, &mut signals);
        for (at, s) in &signals {
            if let (
                Some(id),
                SecuritySignal::BadSignature { device } | SecuritySignal::Replay { device, .. },
            ) = (&signing, s)
                && device == id
            {
                continue;
            }
            p.on_security_signal(s, start.plus(*at), &mut out);
        }
        for m in msgs.drain(..) {
            let received = start.plus(m.offset);
            let hint = m
                .topic
                .strip_prefix("beffroi/")
                .and_then(|t| t.split('/').nth(1));
            let sealed = signer
                .filter(|s| s.borrow().device == m.device)
                .map(|s| s.borrow_mut().seal(&m.payload));
            let r = p.ingest(
                Source::SIMULATOR,
                m.format,
                hint,
                sealed.as_deref().unwrap_or(&m.payload),
                received,
                &mut out,
            );
            rejected += r.rejected.len();
        }
        p.tick(start.plus(offset), &mut out);
        hook(offset, &mut p, &mut out);
        for c in out.batch.incidents {
            incidents.insert(c.incident.id, c.incident);
        }
        offset = offset.plus_d(step);
    }
    (incidents, rejected)
}

trait PlusD {
    fn plus_d(self, d: Duration) -> Duration;
}
impl PlusD for Duration {
    fn plus_d(self, d: Duration) -> Duration {
        Duration(self.0 + d.0)
    }
}

fn matches(e: &beffroi_sim::Expect, i: &Incident, t: &Territory, start: Timestamp) -> bool {
    e.rule.as_deref().is_none_or(|r| r == &*i.rule)
        && e.category.as_deref().is_none_or(|c| c == &*i.category)
        && e.site.as_deref().is_none_or(|s| s == &*t.site(i.site).id)
        && e.by.is_none_or(|by| i.opened_at <= start.plus(by))
}

fn check(f: &Fixture, name: &str) {
    let background = f
        .scenarios
        .iter()
        .find(|s| s.name == "background")
        .expect("background scenario")
        .clone();
    let sc = f
        .scenarios
        .iter()
        .find(|s| s.name == name)
        .expect("scenario")
        .clone();
    let list = if name == "background" {
        vec![background]
    } else {
        vec![background, Arc::clone(&sc)]
    };
    let start = Timestamp(1_795_694_400_000);
    let (incidents, rejected) = play(f, list, sc.duration);
    assert_eq!(rejected, 0, "{name}: the simulator produced rejected input");
    let t = &f.territory;
    if name == "background" {
        assert!(
            sc.expects.is_empty() && sc.exclusive,
            "background.toml must expect nothing and be exclusive: the background alone opens \
             no incident"
        );
    } else {
        assert!(
            !sc.expects.is_empty(),
            "{name}: a scenario expects at least one incident ([[expect]])"
        );
    }
    let mut first_expected: Option<Timestamp> = None;
    for e in &sc.expects {
        let found = incidents
            .values()
            .filter(|i| matches(e, i, t, start))
            .collect::<Vec<_>>();
        first_expected = found
            .iter()
            .map(|i| i.opened_at)
            .chain(first_expected)
            .min();
        assert!(
            !found.is_empty(),
            "{name}: expected incident not opened: {e:?}\nopened: {:#?}",
            incidents
                .values()
                .map(|i| (&i.rule, &i.title, i.opened_at))
                .collect::<Vec<_>>()
        );
        if let Some(min) = e.min_severity {
            let best = found
                .iter()
                .map(|i| i.severity)
                .max()
                .unwrap_or(Severity::Info);
            assert!(best >= min, "{name}: {e:?} reached only {}", best.as_str());
        }
    }
    // A scenario shows something within 45 minutes of the demo, except the one whose whole
    // point is a long silence (10 minutes of life, then 45 minutes of absence).
    if let Some(first) = first_expected
        && name != "gauge-silent"
    {
        let after = first.0 - start.0;
        assert!(
            after <= Duration::from_mins(45).millis(),
            "{name}: the first expected incident opens {} min into the play (more than 45)",
            after / 60_000
        );
    }
    if sc.exclusive {
        for i in incidents.values() {
            assert!(
                sc.expects.iter().any(|e| matches(e, i, t, start)
                    || (e.by.is_some() && {
                        let mut e2 = e.clone();
                        e2.by = None;
                        matches(&e2, i, t, start)
                    })),
                "{name}: unexpected incident {} `{}` ({})",
                i.rule,
                i.title,
                i.evidence
            );
        }
    }
}

#[test]
fn every_demo_scenario_produces_its_incidents() {
    let f = fixture();
    let names: Vec<String> = f.scenarios.iter().map(|s| s.name.clone()).collect();
    assert!(names.len() >= 8, "{names:?}");
    assert!(
        names.iter().any(|n| n == "background"),
        "demo/scenarios/background.toml is missing"
    );
    for name in &names {
        check(&f, name);
    }
}

/// Each scenario file is named after its scenario (`beffroi demo` and the docs name them so).
#[test]
fn every_scenario_file_is_named_after_its_scenario() {
    let f = fixture();
    let dir = demo().join("scenarios");
    for e in std::fs::read_dir(&dir).expect("read demo/scenarios") {
        let path = e.expect("entry").path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name");
        assert!(
            f.scenarios.iter().any(|s| s.name == stem),
            "{}: its `name` differs from the file name",
            path.display()
        );
    }
}

/// The background alone feeds every technical field of every kind (personal values are
/// not simulated; firmware is reported on change only), and each device at least once per
/// its kind's heartbeat, so that it raises no absence and no silence.
#[test]
fn the_background_covers_every_kind_within_its_heartbeat() {
    let f = fixture();
    let t = Arc::clone(&f.territory);
    let bg = f
        .scenarios
        .iter()
        .find(|s| s.name == "background")
        .expect("background scenario")
        .clone();
    let mut seen: std::collections::HashSet<(usize, usize)> = Default::default();
    let mut last: HashMap<DeviceIdx, Timestamp> = HashMap::new();
    let mut gaps: Vec<String> = Vec::new();
    let duration = bg.duration;
    play_with(&f, vec![bg], duration, |_, _, out| {
        for o in &out.batch.observations {
            let d = &t.devices[o.device.get()];
            seen.insert((d.kind.get(), o.field.get()));
            // From one reading to the next (the first comes at the signal's phase).
            if let Some(before) = last.insert(o.device, o.time)
                && let Some(hb) = t.kinds[d.kind.get()].heartbeat
                && o.time.0 - before.0 > hb.millis()
                && gaps.len() < 10
            {
                gaps.push(format!(
                    "{} ({}): {} s without a reading, heartbeat {} s",
                    d.id,
                    t.kinds[d.kind.get()].id,
                    (o.time.0 - before.0) / 1000,
                    hb.millis() / 1000
                ));
            }
        }
    });
    assert!(
        gaps.is_empty(),
        "background slower than heartbeats:\n{}",
        gaps.join("\n")
    );
    let mut missing = Vec::new();
    for (k, kind) in t.kinds.iter().enumerate() {
        for (i, field) in kind.fields.iter().enumerate() {
            if field.category != beffroi_core::DataCategory::Technical || &*field.name == "firmware"
            {
                continue;
            }
            if !seen.contains(&(k, i)) {
                missing.push(format!("{}.{}", kind.id, field.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "demo/scenarios/background.toml has no signal for {missing:?}"
    );
    let silent: Vec<&str> = t
        .devices
        .iter()
        .enumerate()
        .filter(|(i, _)| !last.keys().any(|d| d.get() == *i))
        .map(|(_, d)| &*d.id)
        .take(10)
        .collect();
    assert!(silent.is_empty(), "the background never feeds {silent:?}");
}

/// A device a scenario drives by name is silenced for the background from the start, so
/// that its readings are the scenario's alone.
#[test]
fn a_scenario_silences_the_devices_it_drives_for_the_background() {
    let f = fixture();
    let mut checked = 0;
    for sc in f.scenarios.iter().filter(|s| s.name != "background") {
        let silenced: Vec<DeviceIdx> = sc
            .silences()
            .iter()
            .filter(|s| s.from == Duration::ZERO)
            .map(|s| s.device)
            .collect();
        let mut driven: Vec<DeviceIdx> = sc.named_devices().collect();
        driven.sort_by_key(|d| d.get());
        driven.dedup();
        for d in driven {
            checked += 1;
            assert!(
                silenced.contains(&d),
                "demo/scenarios/{}.toml drives {} without silencing it for the background \
                 (a [[silence]] from 0s)",
                sc.name,
                f.territory.devices[d.get()].id
            );
        }
    }
    assert!(
        checked > 5,
        "only {checked} devices driven by name in the demo"
    );
}

/// The demo territory's generated conventions: every commune has a zone, a site lies near
/// its commune's centre and its perimeter turns counter-clockwise (RFC 7946), a device's id
/// is `<site>-<kind>-NN`, and the LoRaWAN kinds' devices have a dev_eui.
#[test]
fn the_demo_territory_follows_its_conventions() {
    let f = fixture();
    let t = &f.territory;
    let mut problems = Vec::new();
    for (i, c) in t.communes.iter().enumerate() {
        if !t.zones.iter().any(|z| z.commune.get() == i) {
            problems.push(format!("commune {} has no zone", c.id));
        }
    }
    for s in &t.sites {
        let c = &t.communes[s.commune.get()];
        let limit = if &*c.id == "dijon" { 5_000.0 } else { 2_500.0 };
        let d = s.position.distance_m(&c.position);
        if d > limit {
            problems.push(format!("site {} is {d:.0} m from {}'s centre", s.id, c.id));
        }
        if let Some(ring) = &s.perimeter {
            let area2: f64 = ring
                .iter()
                .zip(ring.iter().cycle().skip(1))
                .map(|(a, b)| a.lon * b.lat - b.lon * a.lat)
                .sum();
            if area2 <= 0.0 {
                problems.push(format!(
                    "site {}: its perimeter turns clockwise (RFC 7946 wants counter-clockwise)",
                    s.id
                ));
            }
        }
    }
    let short = |kind: &str| match kind {
        "water_level" => Some("gauge"),
        "rain_gauge" => Some("rain"),
        "fire_panel" => Some("fire"),
        "intrusion_panel" => Some("intrusion"),
        "access_reader" => Some("access"),
        "smoke_detector" => Some("smoke"),
        "temperature" => Some("temp"),
        "road_surface" => Some("road"),
        "people_counter" => Some("counter"),
        "camera_health" => Some("cam"),
        _ => None,
    };
    let lorawan = [
        "water_level",
        "rain_gauge",
        "road_surface",
        "people_counter",
    ];
    for d in &t.devices {
        let kind = &*t.kinds[d.kind.get()].id;
        let site = &*t.sites[d.site.get()].id;
        if let Some(short) = short(kind) {
            let number =
                d.id.strip_prefix(site)
                    .and_then(|r| r.strip_prefix('-'))
                    .and_then(|r| r.strip_prefix(short))
                    .and_then(|r| r.strip_prefix('-'));
            if !number.is_some_and(|n| {
                (2..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit())
            }) {
                problems.push(format!("device {} is not named {site}-{short}-NN", d.id));
            }
        }
        if lorawan.contains(&kind) && d.dev_eui.is_none() {
            problems.push(format!("device {} ({kind}, LoRaWAN) needs a dev_eui", d.id));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in demo/territory, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Quarantining the spoofed legacy gauge stops its false flood alarm
/// while the signed, genuine gauge still raises the real one.
///
/// The port du Canal gauge really signs here: its kind (`water_level`) accepts signed
/// envelopes (`signing = optional`, so the unsigned legacy gauge at Longvic, of the same
/// kind, still reports), the pipeline holds its key, and every reading it sends is sealed
/// with an incrementing counter. The scenario's `bad_signature`/`replay` steps are replaced
/// by real envelopes: one sealed with a wrong key at 15m, one replay of an earlier genuine
/// envelope at 16m.
#[test]
fn quarantining_the_spoofed_gauge_clears_its_false_alarm_and_keeps_the_real_one() {
    let mut f = fixture();
    {
        let mut t = (*f.territory).clone();
        let k = t.kind_id("water_level").expect("water_level kind");
        t.kinds[k.get()].signing = beffroi_core::Signing::Optional;
        f.territory = Arc::new(t);
    }
    let f = f;
    const GENUINE: &str = "dijon-ouche-port-du-canal-gauge-01";
    let signer = RefCell::new(Signer::new(&f.territory, GENUINE, [0x4b; 32]));
    let genuine = signer.borrow().device;
    let start = Timestamp(1_795_694_400_000);
    let (at_15m, at_16m) = (Duration::from_mins(15), Duration::from_mins(16));
    let mut signed_seen = 0;
    let mut forged_rejected = false;
    let mut replay_rejected = false;
    let pick = |n: &str| {
        f.scenarios
            .iter()
            .find(|s| s.name == n)
            .expect("scenario")
            .clone()
    };
    let sc = pick("attack-spoofed-gauge");
    let t = Arc::clone(&f.territory);
    let spoofed = t.device_id("longvic-ouche-gauge-01").expect("device");
    let at_45m = Duration::from_mins(45);
    let mut false_alarm: Option<IncidentId> = None;
    let mut resolved_with_reason = false;
    let mut marked = 0;
    let mut fed_after = 0;
    let (incidents, rejected) = play_signed(
        &f,
        vec![pick("background"), Arc::clone(&sc)],
        sc.duration,
        Some(&signer),
        |offset, p, out| {
            // Every reading of the genuine gauge came in a verified envelope.
            for o in out
                .batch
                .observations
                .iter()
                .filter(|o| o.device == genuine)
            {
                assert_eq!(o.trust, Trust::Signed, "{o:?}");
                signed_seen += 1;
            }
            if offset == at_15m || offset == at_16m {
                let s = signer.borrow();
                let envelope = if offset == at_15m {
                    // Forged: a genuine reading pushed to 9.9 m, sealed with a wrong key and a
                    // fresh counter.
                    let last = signed::open(s.sent.last().expect("a genuine envelope"))
                        .expect("open")
                        .body;
                    let body = String::from_utf8(last).expect("utf-8");
                    assert!(body.contains("level_m"), "{body}");
                    let forged = body.replacen("\"level_m\":", "\"level_m\":9.9,\"was\":", 1);
                    signed::seal(GENUINE, s.ctr + 1, &[0x66; 32], forged.as_bytes())
                } else {
                    // Replay: the first genuine envelope, byte for byte.
                    s.sent.first().expect("a genuine envelope").clone()
                };
                let stored = out.batch.observations.len();
                let r = p.ingest(
                    Source::SIMULATOR,
                    beffroi_wire::Format::Chirpstack,
                    None,
                    &envelope,
                    start.plus(offset),
                    out,
                );
                assert_eq!(r.accepted, 0, "{r:?}");
                assert_eq!(
                    out.batch.observations.len(),
                    stored,
                    "nothing reaches the rules"
                );
                let reason = r.rejected.first().map(|j| j.reason);
                if offset == at_15m {
                    assert_eq!(reason, Some(RejectReason::BadSignature), "{r:?}");
                    forged_rejected = true;
                } else {
                    assert_eq!(reason, Some(RejectReason::Replay), "{r:?}");
                    replay_rejected = true;
                }
            }
            if offset == at_45m {
                let open = p
                    .book()
                    .active()
                    .find(|i| {
                        &*i.rule == "flood-level-high" && &*t.site(i.site).id == "longvic-ouche"
                    })
                    .map(|i| i.id);
                assert!(
                    open.is_some(),
                    "the spoof raised its false flood alarm before 45m"
                );
                false_alarm = open;
                let act = p
                    .quarantine(
                        "longvic-ouche-gauge-01",
                        "analyst",
                        "impossible jump of 3.3 m in 2 min",
                        Timestamp(1_795_694_400_000).plus(offset),
                        out,
                    )
                    .expect("quarantine");
                assert!(act.quarantined && p.is_quarantined(spoofed));
                assert_eq!(
                    p.quarantine(
                        "longvic-ouche-gauge-01",
                        "analyst",
                        "again",
                        Timestamp(0),
                        out
                    ),
                    Err(
                        beffroi_engine::sentinel::QuarantineError::AlreadyQuarantined(
                            "longvic-ouche-gauge-01".into()
                        )
                    )
                );
                assert_eq!(out.batch.quarantine.len(), 1);
                for c in &out.batch.incidents {
                    if Some(c.incident.id) == false_alarm
                        && c.incident.status == beffroi_core::Status::Resolved
                        && c.log
                            .iter()
                            .any(|l| l.detail.contains("quarantined by user:analyst"))
                    {
                        resolved_with_reason = true;
                    }
                }
            }
            if offset > at_45m {
                for o in out
                    .batch
                    .observations
                    .iter()
                    .filter(|o| o.device == spoofed)
                {
                    fed_after += 1;
                    assert_eq!(
                        o.trust,
                        Trust::Unauthenticated,
                        "the legacy gauge is unsigned"
                    );
                    if o.quarantined {
                        marked += 1;
                    }
                }
            }
        },
    );
    assert_eq!(rejected, 0);
    let false_alarm = false_alarm.expect("false alarm seen");
    let inc = &incidents[&false_alarm];
    assert_eq!(inc.status, beffroi_core::Status::Resolved, "{inc:?}");
    assert!(!inc.condition_active);
    assert!(
        resolved_with_reason,
        "the resolution says the device was quarantined"
    );
    // Its observations are still stored, marked, and raise nothing again.
    assert!(
        fed_after > 10 && marked == fed_after,
        "{marked}/{fed_after}"
    );
    assert!(
        !incidents.values().any(|i| i.id != false_alarm
            && &*i.rule == "flood-level-high"
            && &*t.site(i.site).id == "longvic-ouche"),
        "no new false alarm after the quarantine"
    );
    // The real flood, reported by the signed gauge, is still open.
    let real = incidents
        .values()
        .find(|i| {
            &*i.rule == "flood-level-high" && &*t.site(i.site).id == "dijon-ouche-port-du-canal"
        })
        .expect("real flood incident");
    assert!(real.status.is_open() && real.condition_active, "{real:?}");
    // It was raised by signed readings only: the gauge sent nothing unsigned.
    assert!(
        signed_seen > 30 && signed_seen as u64 == signer.borrow().ctr,
        "{signed_seen} signed observations, counter {}",
        signer.borrow().ctr
    );
    // The forged and the replayed envelopes were refused and raised their cyber incidents
    // on the port du Canal site, when they came.
    assert!(forged_rejected && replay_rejected);
    for (rule, at) in [("cyber-bad_signature", at_15m), ("cyber-replay", at_16m)] {
        assert!(
            incidents.values().any(|i| &*i.rule == rule
                && &*t.site(i.site).id == "dijon-ouche-port-du-canal"
                && i.opened_at == start.plus(at)),
            "{rule} not opened at the port du Canal at {at:?}: {:#?}",
            incidents
                .values()
                .map(|i| (&i.rule, &*t.site(i.site).id, i.opened_at))
                .collect::<Vec<_>>()
        );
    }
    // The cyber incident about the spoof stays open for the analyst.
    assert!(
        incidents
            .values()
            .any(|i| &*i.rule == "cyber-impossible_jump"
                && i.device == Some(spoofed)
                && i.status.is_open()
                && i.evidence.contains("T0856"))
    );
}

/// The figures of one scope, as printed and checked by [`health_per_operator_scope`].
struct ScopeHealth {
    name: String,
    health: beffroi_core::alarm_health::AlarmHealth,
}

/// Plays `list` and measures the alarm health per operator scope: the whole territory (with
/// cyber), the demo's operator (its first two communes, without cyber) and an operator of
/// each commune the play touched. For each, the worst 10-minute window given by
/// `beffroi_core::alarm_health::measure` must be the one a plain count of the incidents'
/// logs finds. Prints the figures (`-- --nocapture`; they are in BENCHMARKS.md).
fn health_per_operator_scope(
    f: &Fixture,
    label: &str,
    list: Vec<Arc<Scenario>>,
    duration: Duration,
) -> Vec<ScopeHealth> {
    use beffroi_core::CommuneIdx;
    use beffroi_core::alarm_health::{self, Arrival, WINDOW};
    use beffroi_core::visibility::Visibility;

    let start = Timestamp(1_795_694_400_000);
    let end = start.plus(duration);
    let mut logs: Vec<(IncidentId, beffroi_core::LogEntry)> = Vec::new();
    let (incidents, rejected) = play_with(f, list, duration, |_, _, out| {
        for c in &out.batch.incidents {
            logs.extend(c.log.iter().map(|e| (c.incident.id, e.clone())));
        }
    });
    assert_eq!(rejected, 0);
    assert!(!incidents.is_empty());

    let t = &f.territory;
    let operator = |communes: Vec<CommuneIdx>| Visibility::new(Some(communes), Some(Vec::new()));
    let mut touched: Vec<CommuneIdx> = incidents.values().map(|i| i.commune).collect();
    touched.sort_unstable();
    touched.dedup();
    let mut scopes: Vec<(String, Visibility)> = vec![
        ("territory (with cyber)".into(), Visibility::everything()),
        (
            "demo operator (first two communes)".into(),
            operator(vec![CommuneIdx(0), CommuneIdx(1)]),
        ),
    ];
    scopes.extend(touched.iter().map(|c| {
        (
            format!("operator of {}", t.commune(*c).id),
            operator(vec![*c]),
        )
    }));

    let mut out = Vec::new();
    let mut territory_peak = 0;
    for (name, vis) in scopes {
        let seen = |id: &IncidentId| incidents.get(id).is_some_and(|i| vis.sees_incident(i));
        let arrivals: Vec<Arrival> = logs
            .iter()
            .filter(|(id, e)| seen(id) && alarm_health::is_arrival(e))
            .map(|(id, e)| Arrival {
                at: e.at,
                key: incidents[id].key.clone(),
            })
            .collect();
        let h = alarm_health::measure(
            &arrivals,
            incidents.values().filter(|i| vis.sees_incident(i)),
            start,
            end,
        );

        // The independent count: every log line of an opening or a re-raise of the scope's
        // incidents, and, from each of them, how many such lines fall within ten minutes.
        let times: Vec<Timestamp> = logs
            .iter()
            .filter(|(id, e)| {
                seen(id) && matches!(&*e.action, "opened" | "reopened" | "raised_again")
            })
            .map(|(_, e)| e.at)
            .collect();
        let within = |from: Timestamp| {
            times
                .iter()
                .filter(|x| **x >= from && x.since(from).millis() < WINDOW.millis())
                .count()
        };
        let worst = times.iter().map(|x| within(*x)).max().unwrap_or(0);
        assert_eq!(h.arrivals, times.len(), "{label}, {name}");
        assert_eq!(h.peak_per_window, worst, "{label}, {name}");
        if let Some(at) = h.peak_at {
            assert_eq!(within(at), worst, "{label}, {name}: the window reported");
        }
        let opened = incidents.values().filter(|i| vis.sees_incident(i)).count();
        assert!(
            h.arrivals >= opened,
            "{label}, {name}: every incident arrived"
        );
        if vis.is_everything() {
            territory_peak = h.peak_per_window;
        } else {
            assert!(h.peak_per_window <= territory_peak, "{label}, {name}");
        }
        println!(
            "alarm health, {label}, {name}: {} alarms in {} windows of 10 min, average {:.2}, \
             worst window {} from +{} min ({}), {} flood windows, standing {}, stale {}, \
             chattering {}",
            h.arrivals,
            h.windows,
            h.average_per_window,
            h.peak_per_window,
            h.peak_at.map_or(0, |at| at.since(start).millis() / 60_000),
            if h.flood() { "flood" } else { "not a flood" },
            h.flood_windows,
            h.standing,
            h.stale,
            h.chattering,
        );
        out.push(ScopeHealth { name, health: h });
    }
    out
}

/// The Ouche flood alone (with the background).
#[test]
fn alarm_health_of_the_flood_scenario_per_operator_scope() {
    let f = fixture();
    let pick = |n: &str| {
        f.scenarios
            .iter()
            .find(|s| s.name == n)
            .expect("scenario")
            .clone()
    };
    let flood = pick("flood-ouche");
    let figures = health_per_operator_scope(
        &f,
        "flood-ouche",
        vec![pick("background"), Arc::clone(&flood)],
        flood.duration,
    );
    assert!(figures.iter().any(|s| s.health.peak_per_window > 0));
}

/// A round of the demo as `beffroi demo` plays it: every scenario at once.
#[test]
fn alarm_health_of_a_demo_round_per_operator_scope() {
    let f = fixture();
    let duration = f
        .scenarios
        .iter()
        .map(|s| s.duration)
        .max_by_key(|d| d.millis())
        .expect("scenarios");
    let figures = health_per_operator_scope(&f, "demo round", f.scenarios.clone(), duration);
    let territory = &figures[0];
    assert_eq!(territory.name, "territory (with cyber)");
    assert!(territory.health.peak_per_window > 0);
}

/// What a play gave in situations: every situation as last changed, with when it opened.
fn play_situations(
    f: &Fixture,
    list: Vec<Arc<Scenario>>,
    duration: Duration,
) -> (
    HashMap<IncidentId, Incident>,
    std::collections::BTreeMap<beffroi_core::SituationId, beffroi_core::Situation>,
) {
    let mut situations = std::collections::BTreeMap::new();
    let (incidents, rejected) = play_with(f, list, duration, |_, _, out| {
        for c in &out.batch.situations {
            situations.insert(c.situation.id, c.situation.clone());
        }
    });
    assert_eq!(rejected, 0);
    (incidents, situations)
}

/// The operator scopes the figures are given for: the whole territory (with cyber), the
/// demo's operator (its first two communes) and an operator of each commune.
fn operator_scopes(t: &Territory) -> Vec<(String, beffroi_core::visibility::Visibility)> {
    use beffroi_core::CommuneIdx;
    use beffroi_core::visibility::Visibility;
    let operator = |communes: Vec<CommuneIdx>| Visibility::new(Some(communes), Some(Vec::new()));
    let mut scopes = vec![
        (
            "territory (with cyber)".to_string(),
            Visibility::everything(),
        ),
        (
            "demo operator (first two communes)".to_string(),
            operator(vec![CommuneIdx(0), CommuneIdx(1)]),
        ),
    ];
    for c in 0..t.communes.len() {
        let c = CommuneIdx(c as u32);
        let id = &t.commune(c).id;
        scopes.push((format!("operator of {id}"), operator(vec![c])));
        // The security analyst of the commune sees its cyber incidents too.
        scopes.push((
            format!("analyst of {id}"),
            Visibility::new(Some(vec![c]), Some(vec![c])),
        ));
    }
    scopes
}

/// The worst count of openings within any 10 minutes.
fn worst_window(times: &[Timestamp]) -> usize {
    times
        .iter()
        .map(|from| {
            times
                .iter()
                .filter(|x| **x >= *from && x.since(*from).millis() < 600_000)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Each scenario, played alone with the background, gives one situation to the operator
/// of each commune it touches (what the background opens on its own is left out).
#[test]
fn each_scenario_event_is_one_situation_per_operator() {
    let f = fixture();
    let background = f
        .scenarios
        .iter()
        .find(|s| s.name == "background")
        .expect("background")
        .clone();
    let (bg_incidents, _) = play_situations(&f, vec![Arc::clone(&background)], background.duration);
    let bg_keys: std::collections::HashSet<_> =
        bg_incidents.values().map(|i| i.key.clone()).collect();
    let scopes = operator_scopes(&f.territory);
    for sc in f.scenarios.iter().filter(|s| s.name != "background") {
        let (incidents, situations) = play_situations(
            &f,
            vec![Arc::clone(&background), Arc::clone(sc)],
            sc.duration.max(background.duration),
        );
        let own = |id: &IncidentId| incidents.get(id).is_some_and(|i| !bg_keys.contains(&i.key));
        let mut worst = 0;
        for (name, vis) in &scopes {
            let seen: Vec<_> = situations
                .values()
                .filter(|s| s.merged_into.is_none())
                .filter_map(|s| s.view(vis))
                .filter(|v| v.members.iter().any(|m| own(&m.incident)))
                .collect();
            if seen.is_empty() {
                continue;
            }
            let incidents_seen: usize = seen.iter().map(|v| v.members.len()).sum();
            println!(
                "situations, {}, {name}: {} situation(s) for {incidents_seen} incident(s): {}",
                sc.name,
                seen.len(),
                seen.iter()
                    .map(|v| format!(
                        "[{} {}: {}]",
                        v.situation.family.as_deref().unwrap_or("-"),
                        v.situation.id,
                        v.members
                            .iter()
                            .map(|m| format!(
                                "{}@{}{}",
                                m.rule,
                                f.territory.site(m.site).id,
                                if own(&m.incident) {
                                    ""
                                } else {
                                    " (background)"
                                }
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            if name.starts_with("operator of") {
                assert_eq!(seen.len(), 1, "{}, {name}: one situation", sc.name);
            }
            if name.starts_with("analyst of") {
                // The analyst may see an attack's own findings beside the flood it faked.
                assert!(
                    seen.len() <= 2,
                    "{}, {name}: {} situations",
                    sc.name,
                    seen.len()
                );
            }
            if name.starts_with("operator of") || name.starts_with("analyst of") {
                worst = worst.max(seen.len());
            }
        }
        assert!(worst >= 1, "{}: the scenario reaches an operator", sc.name);
    }
}

/// A round of the demo as `beffroi demo` plays it (every scenario at once): for every
/// operator scope, the worst 10 minutes hold at most 10 new situations (ISA-18.2's flood
/// threshold), where the incidents under them reach it, and the territory gets at most a
/// third as many situations as incidents. A situation is new to a scope when the first
/// incident of it the scope sees opens. Figures in BENCHMARKS.md.
#[test]
fn a_demo_round_stays_under_the_flood_threshold_per_operator_scope() {
    let f = fixture();
    let duration = f
        .scenarios
        .iter()
        .map(|s| s.duration)
        .max_by_key(|d| d.millis())
        .expect("scenarios");
    let (incidents, situations) = play_situations(&f, f.scenarios.clone(), duration);
    let mut territory_incidents = 0;
    for (name, vis) in operator_scopes(&f.territory) {
        let arrivals: Vec<Timestamp> = situations
            .values()
            .filter(|s| s.merged_into.is_none())
            .filter_map(|s| s.view(&vis))
            .filter_map(|v| v.members.iter().map(|m| m.opened_at).min())
            .collect();
        let opened: Vec<Timestamp> = incidents
            .values()
            .filter(|i| vis.sees_incident(i))
            .map(|i| i.opened_at)
            .collect();
        if arrivals.is_empty() {
            continue;
        }
        let (worst, worst_incidents) = (worst_window(&arrivals), worst_window(&opened));
        if vis.is_everything() {
            territory_incidents = worst_incidents;
            assert!(
                arrivals.len() * 3 <= opened.len(),
                "{name}: {} situations for {} incidents: the grouping does not group",
                arrivals.len(),
                opened.len()
            );
        }
        println!(
            "situations of a demo round, {name}: {} situations for {} incidents; worst 10 min: \
             {worst} new situations ({worst_incidents} incidents)",
            arrivals.len(),
            opened.len(),
        );
        assert!(
            worst <= 10,
            "{name}: {worst} new situations within 10 minutes is a flood"
        );
    }
    assert!(
        territory_incidents >= 10,
        "the round opens {territory_incidents} incidents in its worst 10 minutes: at the \
         threshold without the grouping"
    );
}
