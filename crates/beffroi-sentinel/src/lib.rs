//! Anomaly detection on the devices themselves: the *cyber* view of the telemetry.
//!
//! Architecture invariant: pure, like `beffroi-core` — no I/O, no clock. A [`Sentinel`] is
//! fed observations, message arrivals, security signals from the edges, the operational
//! conditions the rules raise, and ticks of processing time; it returns [`Finding`]s, each
//! with its evidence and the MITRE ATT&CK for ICS technique it suggests. The engine turns
//! findings into incidents of category `cyber` (`beffroi-engine/src/sentinel.rs`).
//!
//! One detector per anomaly (see `docs/security-detection.md`):
//! - [`Anomaly::Silence`]: a device silent beyond its kind's heartbeat × factor *while an
//!   operational condition is raised on a neighbouring device of the same kind* (a gauge
//!   blinded as the river rises). Plain silence on a calm day stays the engine's absence
//!   rule (a maintenance incident), so the two never double up.
//! - [`Anomaly::Flood`]: message rate per device, a token bucket per device sized per kind.
//! - [`Anomaly::ImpossibleJump`]: a change faster than the field's `max_step_per_minute`.
//! - [`Anomaly::ClockSkew`]: event time ahead of reception, or lagging too far behind.
//! - [`Anomaly::Replay`], [`Anomaly::BadSignature`], [`Anomaly::Unregistered`],
//!   [`Anomaly::TopicMismatch`]: raised by the edges, turned into findings as they come.
//! - [`Anomaly::BruteForce`]: authentication failures in a sliding window, per client
//!   id/username and per address.
//! - [`Anomaly::FirmwareChange`]: the `firmware` text field of a device changes.
//! - [`Anomaly::IdentityChange`]: a known username connects with a new address or client id.
//! - [`Anomaly::KnownBadAddress`]: a connection or an authentication attempt from an address
//!   a partner's indicator names ([`Sentinel::set_known_bad`]).

use beffroi_core::SafeText;
use beffroi_core::message::{Message, Param};
use std::collections::VecDeque;
use std::sync::Arc;

use beffroi_core::{
    DeviceIdx, Duration, FieldIdx, FieldType, SecuritySignal, Severity, SiteIdx, Territory,
    Timestamp, Value,
};
use rustc_hash::{FxHashMap, FxHashSet};

/// An ATT&CK for ICS technique (id and name, as in the MITRE matrix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Technique {
    pub id: &'static str,
    pub name: &'static str,
}

/// What the sentinel can find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Anomaly {
    Silence,
    Flood,
    ImpossibleJump,
    ClockSkew,
    Replay,
    BadSignature,
    Unregistered,
    TopicMismatch,
    BruteForce,
    FirmwareChange,
    IdentityChange,
    KnownBadAddress,
}

impl Anomaly {
    pub const ALL: [Anomaly; 12] = [
        Anomaly::Silence,
        Anomaly::Flood,
        Anomaly::ImpossibleJump,
        Anomaly::ClockSkew,
        Anomaly::Replay,
        Anomaly::BadSignature,
        Anomaly::Unregistered,
        Anomaly::TopicMismatch,
        Anomaly::BruteForce,
        Anomaly::FirmwareChange,
        Anomaly::IdentityChange,
        Anomaly::KnownBadAddress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Anomaly::Silence => "silence",
            Anomaly::Flood => "flood",
            Anomaly::ImpossibleJump => "impossible_jump",
            Anomaly::ClockSkew => "clock_skew",
            Anomaly::Replay => "replay",
            Anomaly::BadSignature => "bad_signature",
            Anomaly::Unregistered => "unregistered",
            Anomaly::TopicMismatch => "topic_mismatch",
            Anomaly::BruteForce => "brute_force",
            Anomaly::FirmwareChange => "firmware_change",
            Anomaly::IdentityChange => "identity_change",
            Anomaly::KnownBadAddress => "known_bad_address",
        }
    }

    pub fn parse(s: &str) -> Option<Anomaly> {
        Anomaly::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The rule id of the incidents it raises: `cyber-<anomaly>`.
    pub fn rule_id(self) -> String {
        format!("{RULE_PREFIX}{}", self.as_str())
    }

    /// The anomaly behind a cyber incident's rule id.
    pub fn from_rule_id(rule: &str) -> Option<Anomaly> {
        rule.strip_prefix(RULE_PREFIX).and_then(Anomaly::parse)
    }

    /// The technique it suggests (ADR 0014 gives the reasoning for each).
    pub fn technique(self) -> Technique {
        let (id, name) = match self {
            Anomaly::Silence => ("T0804", "Block Reporting Message"),
            Anomaly::Flood => ("T0814", "Denial of Service"),
            Anomaly::ImpossibleJump
            | Anomaly::ClockSkew
            | Anomaly::Replay
            | Anomaly::BadSignature
            | Anomaly::Unregistered => ("T0856", "Spoof Reporting Message"),
            Anomaly::TopicMismatch => ("T0849", "Masquerading"),
            Anomaly::BruteForce => ("T0812", "Default Credentials"),
            Anomaly::FirmwareChange => ("T0839", "Module Firmware"),
            Anomaly::IdentityChange => ("T0859", "Valid Accounts"),
            Anomaly::KnownBadAddress => ("T0883", "Internet Accessible Device"),
        };
        Technique { id, name }
    }

    /// Default severity of its incident.
    pub fn severity(self) -> Severity {
        match self {
            Anomaly::ClockSkew | Anomaly::Unregistered => Severity::Minor,
            Anomaly::Silence
            | Anomaly::Flood
            | Anomaly::ImpossibleJump
            | Anomaly::Replay
            | Anomaly::BadSignature
            | Anomaly::TopicMismatch
            | Anomaly::BruteForce
            | Anomaly::FirmwareChange
            | Anomaly::IdentityChange
            | Anomaly::KnownBadAddress => Severity::Major,
        }
    }

    /// The message code of its incident's title (`cyber.<anomaly>`), whose English
    /// template is [`Anomaly::title`] followed by ` — {subject}`.
    pub fn title_code(self) -> &'static str {
        match self {
            Anomaly::Silence => "cyber.silence",
            Anomaly::Flood => "cyber.flood",
            Anomaly::ImpossibleJump => "cyber.impossible_jump",
            Anomaly::ClockSkew => "cyber.clock_skew",
            Anomaly::Replay => "cyber.replay",
            Anomaly::BadSignature => "cyber.bad_signature",
            Anomaly::Unregistered => "cyber.unregistered",
            Anomaly::TopicMismatch => "cyber.topic_mismatch",
            Anomaly::BruteForce => "cyber.brute_force",
            Anomaly::FirmwareChange => "cyber.firmware_change",
            Anomaly::IdentityChange => "cyber.identity_change",
            Anomaly::KnownBadAddress => "cyber.known_bad_address",
        }
    }

    /// A short English title of its incident.
    pub fn title(self) -> &'static str {
        match self {
            Anomaly::Silence => "Device silenced while its neighbours raise an alarm",
            Anomaly::Flood => "Message flood from a device",
            Anomaly::ImpossibleJump => "Physically impossible jump in reported values",
            Anomaly::ClockSkew => "Device clock skewed",
            Anomaly::Replay => "Replayed signed message",
            Anomaly::BadSignature => "Forged signed message (bad signature)",
            Anomaly::Unregistered => "Messages naming unregistered devices",
            Anomaly::TopicMismatch => "Message names another device than its topic",
            Anomaly::BruteForce => "Burst of authentication failures",
            Anomaly::FirmwareChange => "Device firmware changed",
            Anomaly::IdentityChange => "Device credential used from a new network identity",
            Anomaly::KnownBadAddress => "Connection from an address a partner flagged",
        }
    }
}

pub const RULE_PREFIX: &str = "cyber-";
/// The subject of the unregistered-device findings whose publisher nothing authenticated.
pub const UNKNOWN_PUBLISHER: &str = "unknown-publisher";
/// How many publishers that are not registered devices get their own unregistered-device
/// finding (and so their own incident); the next ones share [`UNKNOWN_PUBLISHER`]'s.
pub const MAX_UNREGISTERED_PUBLISHERS: usize = 16;
/// How many name tags an unregistered-device finding quotes.
pub const MAX_TAGS_QUOTED: usize = 5;
/// The incident category of every finding.
pub const CATEGORY: &str = "cyber";

/// Who a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Device(DeviceIdx),
    /// Not a registered device: an unknown device id, a client id, a user name, an address.
    Other(Arc<str>),
}

/// One anomaly found, with its evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub anomaly: Anomaly,
    pub subject: Subject,
    pub at: Timestamp,
    /// The English rendering of `message`.
    pub evidence: String,
    /// The evidence as a message, for the console to render in the reader's language.
    pub message: Message,
}

/// Thresholds. Defaults are documented in `docs/security-detection.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Cyber silence: silent for more than heartbeat × this factor.
    pub silence_factor: f64,
    /// Neighbours: devices of the same kind within this distance.
    pub neighbour_radius_m: f64,
    /// Flood: sustained messages per minute allowed per device (default, per kind below).
    pub flood_per_minute: f64,
    /// Flood: burst allowance (bucket capacity).
    pub flood_burst: f64,
    pub flood_per_kind: FxHashMap<Arc<str>, (f64, f64)>,
    /// Clock skew: event time ahead of reception by more than this.
    pub skew_ahead: Duration,
    /// Clock skew: event time behind reception by more than this.
    pub skew_behind: Duration,
    /// Brute force: this many failures in the window, per client/username or address.
    pub auth_failures: usize,
    pub auth_window: Duration,
    /// Anomalies that quarantine the device at once (policy).
    pub auto_quarantine: FxHashSet<Anomaly>,
    /// Anomalies switched off.
    pub disabled: FxHashSet<Anomaly>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            silence_factor: 1.5,
            neighbour_radius_m: 10_000.0,
            flood_per_minute: 12.0,
            flood_burst: 30.0,
            flood_per_kind: FxHashMap::default(),
            skew_ahead: Duration::from_mins(2),
            skew_behind: Duration::from_mins(24 * 60),
            auth_failures: 5,
            auth_window: Duration::from_mins(1),
            auto_quarantine: FxHashSet::default(),
            disabled: FxHashSet::default(),
        }
    }
}

/// Token bucket: `tokens` refill at `rate` per ms up to `cap`; a message takes one.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Timestamp,
}

impl TokenBucket {
    pub fn new(cap: f64, now: Timestamp) -> Self {
        TokenBucket {
            tokens: cap,
            last: now,
        }
    }

    /// Takes a token at `now`; `false` when the bucket is empty (over the rate).
    pub fn take(&mut self, now: Timestamp, per_minute: f64, cap: f64) -> bool {
        let elapsed = now.since(self.last).millis().max(0) as f64;
        if now > self.last {
            self.last = now;
        }
        self.tokens = (self.tokens + elapsed * per_minute / 60_000.0).min(cap);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts events in a sliding window; `true` when `threshold` is reached.
#[derive(Clone, Debug, Default)]
pub struct SlidingWindow {
    times: VecDeque<Timestamp>,
}

impl SlidingWindow {
    pub fn hit(&mut self, now: Timestamp, window: Duration, threshold: usize) -> bool {
        self.times.push_back(now);
        while self.times.front().is_some_and(|t| now.since(*t) >= window) {
            self.times.pop_front();
        }
        // Bounded memory: never more than the threshold is needed.
        while self.times.len() > threshold.max(1) {
            self.times.pop_front();
        }
        self.times.len() >= threshold
    }
    pub fn len(&self) -> usize {
        self.times.len()
    }
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// Whether a change from `prev` (at `t0`) to `next` (at `t1`) exceeds `max_per_minute`.
/// The elapsed time counts at least one minute, so that two close messages with sensor
/// noise do not look like a fast slope.
pub fn impossible_jump(
    prev: f64,
    t0: Timestamp,
    next: f64,
    t1: Timestamp,
    max_per_minute: f64,
) -> bool {
    let minutes = (t1.since(t0).millis().abs() as f64 / 60_000.0).max(1.0);
    (next - prev).abs() > max_per_minute * minutes
}

/// How often one flagged address raises a finding again while it keeps connecting.
pub const KNOWN_BAD_REPEAT: Duration = Duration::from_mins(10);

/// A network a partner's indicator flags: an address and a prefix length, and until when
/// the indicator is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownBad {
    pub address: std::net::IpAddr,
    pub prefix: u8,
    pub until: Option<Timestamp>,
}

impl KnownBad {
    /// Whether `addr` is in the network (IPv4 and IPv6 never match each other).
    pub fn contains(&self, addr: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        match (self.address, addr) {
            (V4(n), V4(a)) => {
                let p = u32::from(self.prefix.min(32));
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (V6(n), V6(a)) => {
                let p = u32::from(self.prefix.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for KnownBad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// A client's network identity as the broker saw it: client id and address.
type NetIdentity = (Arc<str>, Option<Arc<str>>);

#[derive(Default)]
struct DeviceTrack {
    bucket: Option<TokenBucket>,
    flooding: bool,
    last_number: FxHashMap<FieldIdx, (f64, Timestamp)>,
    firmware: Option<Arc<str>>,
    silence_flagged: bool,
}

/// The detectors of one partition.
pub struct Sentinel {
    territory: Arc<Territory>,
    config: Config,
    devices: Vec<DeviceTrack>,
    last_heard: Vec<Option<Timestamp>>,
    /// Sites with an operational (non-cyber, non-silence) condition raised.
    hot_sites: FxHashMap<SiteIdx, u32>,
    auth_by_client: FxHashMap<Arc<str>, SlidingWindow>,
    auth_by_address: FxHashMap<Arc<str>, SlidingWindow>,
    /// Known network identity per username: (client id, address).
    identities: FxHashMap<Arc<str>, NetIdentity>,
    /// Devices that have a heartbeat, for the silence scan.
    watched: Vec<DeviceIdx>,
    /// Upper bound on the maps keyed by transport-given strings (an attacker picks them).
    max_keys: usize,
    /// Publishers that are not registered devices and have their own unregistered-device
    /// finding; beyond [`MAX_UNREGISTERED_PUBLISHERS`] the others share
    /// [`UNKNOWN_PUBLISHER`]'s.
    unregistered_publishers: FxHashSet<Arc<str>>,
    /// First tick: a device never heard of counts as heard then.
    started: Option<Timestamp>,
    /// Partners' indicators: networks per source ([`Sentinel::set_known_bad`]).
    known_bad: FxHashMap<Arc<str>, Vec<KnownBad>>,
    /// When each flagged address last raised a finding (one per address per
    /// [`KNOWN_BAD_REPEAT`]).
    known_bad_flagged: FxHashMap<std::net::IpAddr, Timestamp>,
    /// Flood rate and burst per kind (index), resolved from the configuration once: the
    /// hot path does not hash kind names.
    flood_rates: Vec<(f64, f64)>,
}

/// A device may send this many times the messages its kind's reporting period implies
/// before its traffic counts as a flood (retries, a burst after a reconnection, one message
/// per field).
pub const FLOOD_MARGIN: f64 = 4.0;

/// The flood rate (messages a minute) and burst of each kind: the kind's line in
/// `security.toml` if it has one; else from its declared reporting period (never below the
/// defaults); else the defaults.
fn flood_rates(t: &Territory, c: &Config) -> Vec<(f64, f64)> {
    t.kinds
        .iter()
        .map(|k| {
            c.flood_per_kind.get(&k.id).copied().unwrap_or_else(|| {
                let per_minute = k.period.map_or(0.0, |p| {
                    FLOOD_MARGIN * 60_000.0 / (p.millis().max(1) as f64)
                });
                (
                    c.flood_per_minute.max(per_minute),
                    c.flood_burst.max(per_minute * 2.5),
                )
            })
        })
        .collect()
}

impl Sentinel {
    pub fn new(territory: Arc<Territory>, config: Config) -> Self {
        let n = territory.devices.len();
        let watched = (0..n)
            .map(|i| DeviceIdx(i as u32))
            .filter(|d| {
                territory
                    .kind(territory.device(*d).kind)
                    .heartbeat
                    .is_some()
            })
            .collect();
        Sentinel {
            flood_rates: flood_rates(&territory, &config),
            devices: (0..n).map(|_| DeviceTrack::default()).collect(),
            last_heard: vec![None; n],
            territory,
            config,
            hot_sites: FxHashMap::default(),
            auth_by_client: FxHashMap::default(),
            auth_by_address: FxHashMap::default(),
            identities: FxHashMap::default(),
            watched,
            max_keys: 100_000,
            unregistered_publishers: FxHashSet::default(),
            started: None,
            known_bad: FxHashMap::default(),
            known_bad_flagged: FxHashMap::default(),
        }
    }

    /// When a device was last heard of before a restart (from the store).
    pub fn set_last_heard(&mut self, d: DeviceIdx, t: Timestamp) {
        if let Some(slot) = self.last_heard.get_mut(d.get()) {
            *slot = Some(t);
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the networks `source` (a partner, a CSIRT) flags as known bad. An empty
    /// list forgets the source.
    pub fn set_known_bad(&mut self, source: &str, networks: Vec<KnownBad>) {
        if networks.is_empty() {
            self.known_bad.remove(source);
        } else {
            self.known_bad.insert(source.into(), networks);
        }
    }

    /// How many networks are flagged, all sources together.
    pub fn known_bad_count(&self) -> usize {
        self.known_bad.values().map(Vec::len).sum()
    }

    /// The first flagged network holding `addr` (still valid at `at`), and its source.
    fn known_bad_match(&self, addr: std::net::IpAddr, at: Timestamp) -> Option<(&str, &KnownBad)> {
        let mut sources: Vec<_> = self.known_bad.iter().collect();
        sources.sort_by(|a, b| a.0.cmp(b.0));
        sources.into_iter().find_map(|(src, nets)| {
            nets.iter()
                .find(|n| n.contains(addr) && n.until.is_none_or(|u| at < u))
                .map(|n| (&**src, n))
        })
    }

    /// A connection or an authentication attempt from `address`: a finding when a
    /// partner flagged it, at most once per address per [`KNOWN_BAD_REPEAT`].
    fn check_known_bad(
        &mut self,
        address: Option<&str>,
        who: &str,
        at: Timestamp,
        out: &mut Vec<Finding>,
    ) {
        if self.known_bad.is_empty() || !self.enabled(Anomaly::KnownBadAddress) {
            return;
        }
        let Some(addr) =
            address.and_then(|a| a.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
        else {
            return;
        };
        let Some((source, net)) = self.known_bad_match(addr, at) else {
            return;
        };
        if let Some(last) = self.known_bad_flagged.get(&addr)
            && at.since(*last) < KNOWN_BAD_REPEAT
        {
            return;
        }
        let ev = Message::new("cyber.ev.known_bad")
            .with(
                "address",
                Param::Text(SafeText::redacting(&addr.to_string())),
            )
            .with(
                "network",
                Param::Text(SafeText::redacting(&net.to_string())),
            )
            .with("source", text(source))
            .with("who", text(who));
        if self.known_bad_flagged.len() >= self.max_keys {
            self.known_bad_flagged.clear();
        }
        self.known_bad_flagged.insert(addr, at);
        self.push(
            out,
            Anomaly::KnownBadAddress,
            Subject::Other(format!("address:{addr}").into()),
            at,
            ev,
        );
    }

    pub fn set_config(&mut self, config: Config) {
        self.flood_rates = flood_rates(&self.territory, &config);
        self.config = config;
    }

    fn enabled(&self, a: Anomaly) -> bool {
        !self.config.disabled.contains(&a)
    }

    fn push(
        &self,
        out: &mut Vec<Finding>,
        anomaly: Anomaly,
        subject: Subject,
        at: Timestamp,
        message: Message,
    ) {
        if self.enabled(anomaly) {
            out.push(Finding {
                anomaly,
                subject,
                at,
                evidence: message.english().to_string(),
                message,
            });
        }
    }

    fn dev_id(&self, d: DeviceIdx) -> &str {
        &self.territory.device(d).id
    }

    /// One message from `device` arrived at `received` (called once per message, not per
    /// value): the flood detector.
    pub fn on_message(&mut self, device: DeviceIdx, received: Timestamp, out: &mut Vec<Finding>) {
        let kind = self.territory.device(device).kind;
        let (rate, cap) = self
            .flood_rates
            .get(kind.get())
            .copied()
            .unwrap_or((self.config.flood_per_minute, self.config.flood_burst));
        let Some(track) = self.devices.get_mut(device.get()) else {
            return;
        };
        let bucket = track
            .bucket
            .get_or_insert_with(|| TokenBucket::new(cap, received));
        let ok = bucket.take(received, rate, cap);
        if ok {
            // The episode ends when the bucket has refilled: a device hovering at the
            // limit is one flood, not one finding per message.
            if bucket.tokens >= cap - 1.0 {
                track.flooding = false;
            }
        } else if !track.flooding {
            track.flooding = true;
            let ev = Message::new("cyber.ev.flood")
                .device("device", self.dev_id(device))
                .number("rate", rate)
                .number("burst", cap)
                .with("time", Param::Time(received));
            self.push(out, Anomaly::Flood, Subject::Device(device), received, ev);
        }
    }

    /// The timing of an observation, whatever its order: liveness and clock skew. The
    /// pipeline calls this alone for a reading older than the last evaluated one of its
    /// series (the order-sensitive checks would compare it with a later reading). Returns
    /// whether the device is known.
    pub fn on_timing(
        &mut self,
        device: DeviceIdx,
        time: Timestamp,
        received: Timestamp,
        out: &mut Vec<Finding>,
    ) -> bool {
        let Some(slot) = self.last_heard.get_mut(device.get()) else {
            return false;
        };
        *slot = Some(slot.map_or(received, |t| t.max(received)));
        let skew = if time.since(received) > self.config.skew_ahead {
            Some((time.since(received), "cyber.ev.clock_ahead"))
        } else if received.since(time) > self.config.skew_behind {
            Some((received.since(time), "cyber.ev.clock_behind"))
        } else {
            None
        };
        if let Some((gap, code)) = skew {
            let ev = Message::new(code)
                .device("device", self.dev_id(device))
                .with("time", Param::Time(time))
                .number("seconds", gap.as_secs_f64())
                .with("received", Param::Time(received));
            self.push(
                out,
                Anomaly::ClockSkew,
                Subject::Device(device),
                received,
                ev,
            );
        }
        true
    }

    /// One validated observation: jumps, clock skew, firmware, liveness.
    pub fn on_observation(
        &mut self,
        device: DeviceIdx,
        field: FieldIdx,
        value: &Value,
        time: Timestamp,
        received: Timestamp,
        out: &mut Vec<Finding>,
    ) {
        if !self.on_timing(device, time, received, out) {
            return;
        }
        let territory = Arc::clone(&self.territory);
        let kind = territory.kind(territory.device(device).kind);
        let Some(spec) = kind.fields.get(field.get()) else {
            return;
        };
        let id = &*territory.device(device).id;
        let mut findings = Vec::new();
        if let Some(track) = self.devices.get_mut(device.get()) {
            track.silence_flagged = false;
            match (value, spec.ty) {
                (Value::Number(v), FieldType::Number) => {
                    // Only fields with a physical limit are remembered.
                    if let Some(max) = spec.max_step_per_minute {
                        if let Some((prev, t0)) = track.last_number.get(&field).copied()
                            && impossible_jump(prev, t0, *v, time, max)
                        {
                            // A people count is never quoted (it may be below the
                            // minimum group size).
                            let ev = if spec.people_count {
                                Message::new("cyber.ev.jump_people")
                            } else {
                                Message::new("cyber.ev.jump")
                                    .with("before", number(prev, &spec.unit))
                                    .with("after", number(*v, &spec.unit))
                            };
                            let ev = ev
                                .device("device", id)
                                .with("field", Param::Text(SafeText::redacting(&spec.name)))
                                .with("from", Param::Time(t0))
                                .with("to", Param::Time(time))
                                .number("max", max);
                            findings.push((Anomaly::ImpossibleJump, ev));
                        }
                        track.last_number.insert(field, (*v, time));
                    }
                }
                (Value::Text(fw), FieldType::Text) if &*spec.name == "firmware" => {
                    match &track.firmware {
                        Some(old) if old != fw => findings.push((
                            Anomaly::FirmwareChange,
                            Message::new("cyber.ev.firmware")
                                .device("device", id)
                                .with("old", Param::Text(SafeText::redacting(old)))
                                .with("new", Param::Text(SafeText::redacting(fw)))
                                .with("time", Param::Time(time)),
                        )),
                        _ => {}
                    }
                    track.firmware = Some(Arc::clone(fw));
                }
                _ => {}
            }
        }
        for (a, ev) in findings {
            self.push(out, a, Subject::Device(device), received, ev);
        }
    }

    /// An operational condition was raised (`true`) or cleared on a site.
    pub fn on_operational(&mut self, site: SiteIdx, raised: bool) {
        if raised {
            *self.hot_sites.entry(site).or_default() += 1;
        } else if let Some(n) = self.hot_sites.get_mut(&site) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.hot_sites.remove(&site);
            }
        }
    }

    /// A security signal from the edges.
    pub fn on_signal(&mut self, signal: &SecuritySignal, at: Timestamp, out: &mut Vec<Finding>) {
        let subject_of = |t: &Territory, name: &str| match t.device_id(name) {
            Some(d) => Subject::Device(d),
            None => Subject::Other(name.into()),
        };
        match signal {
            SecuritySignal::AuthFailure {
                client_id,
                username,
                address,
            } => {
                let who: &str = username.as_deref().unwrap_or(client_id);
                self.check_known_bad(address.as_deref(), who, at, out);
                let (n, w) = (self.config.auth_failures, self.config.auth_window);
                let full = self.auth_by_client.len() >= self.max_keys;
                if !full || self.auth_by_client.contains_key(who) {
                    let win = self.auth_by_client.entry(who.into()).or_default();
                    if win.hit(at, w, n) {
                        win.times.clear();
                        let ev = Message::new("cyber.ev.auth_client")
                            .int("count", i64::try_from(n).unwrap_or(i64::MAX))
                            .with("who", text(who))
                            .number("seconds", w.as_secs_f64())
                            .with(
                                "address",
                                address
                                    .as_deref()
                                    .map_or_else(|| unknown("cyber.ev.unknown_address"), text),
                            );
                        let s = subject_of(&self.territory, who);
                        self.push(out, Anomaly::BruteForce, s, at, ev);
                    }
                }
                if let Some(addr) = address {
                    let full = self.auth_by_address.len() >= self.max_keys;
                    if !full || self.auth_by_address.contains_key(addr.as_str()) {
                        let win = self
                            .auth_by_address
                            .entry(addr.as_str().into())
                            .or_default();
                        if win.hit(at, w, n) {
                            win.times.clear();
                            let ev = Message::new("cyber.ev.auth_address")
                                .int("count", i64::try_from(n).unwrap_or(i64::MAX))
                                .with("address", text(addr))
                                .number("seconds", w.as_secs_f64())
                                .with("who", text(who));
                            let s = subject_of(&self.territory, who);
                            let s = match s {
                                Subject::Device(d) => Subject::Device(d),
                                Subject::Other(_) => {
                                    Subject::Other(format!("address:{addr}").into())
                                }
                            };
                            self.push(out, Anomaly::BruteForce, s, at, ev);
                        }
                    }
                }
            }
            SecuritySignal::Connected {
                client_id,
                username,
                address,
            } => {
                self.check_known_bad(
                    address.as_deref(),
                    username.as_deref().unwrap_or(client_id),
                    at,
                    out,
                );
                let Some(user) = username else { return };
                let now: NetIdentity = (
                    client_id.as_str().into(),
                    address.as_deref().map(Into::into),
                );
                let prev = self.identities.get(user.as_str()).cloned();
                match prev {
                    Some(old) if old != now => {
                        let show = |x: &Option<Arc<str>>| {
                            x.as_deref()
                                .map_or_else(|| unknown("cyber.ev.unknown"), text)
                        };
                        let ev = Message::new("cyber.ev.identity")
                            .with("user", text(user))
                            .with("client", text(&now.0))
                            .with("address", show(&now.1))
                            .with("old_client", text(&old.0))
                            .with("old_address", show(&old.1));
                        let s = subject_of(&self.territory, user);
                        self.push(out, Anomaly::IdentityChange, s, at, ev);
                    }
                    _ => {}
                }
                if self.identities.len() < self.max_keys
                    || self.identities.contains_key(user.as_str())
                {
                    self.identities.insert(user.as_str().into(), now);
                }
            }
            SecuritySignal::BadSignature { device } => {
                let s = subject_of(&self.territory, device);
                let ev = Message::new("cyber.ev.bad_signature").with("device", text(device));
                self.push(out, Anomaly::BadSignature, s, at, ev);
            }
            // An unsigned message for a kind that requires signing: as suspect as a bad MAC.
            SecuritySignal::Unsigned { device } => {
                let s = subject_of(&self.territory, device);
                let ev = Message::new("cyber.ev.unsigned").with("device", text(device));
                self.push(out, Anomaly::BadSignature, s, at, ev);
            }
            SecuritySignal::Replay {
                device,
                counter,
                last,
            } => {
                let s = subject_of(&self.territory, device);
                let ev = Message::new("cyber.ev.replay")
                    .with("device", text(device))
                    .int("counter", i64::try_from(*counter).unwrap_or(i64::MAX))
                    .int("last", i64::try_from(*last).unwrap_or(i64::MAX));
                self.push(out, Anomaly::Replay, s, at, ev);
            }
            // Grouped per publisher: one finding per message, one incident per publisher,
            // however many names a pack makes up; the names are quoted as tags only.
            SecuritySignal::Unregistered {
                publisher,
                names,
                tags,
            } => {
                let subject = self.publisher_subject(publisher.as_deref());
                let who = match &subject {
                    Subject::Device(d) => Some(Param::Device(self.dev_id(*d).into())),
                    Subject::Other(name) if &**name == UNKNOWN_PUBLISHER => None,
                    Subject::Other(name) => Some(text(name)),
                };
                let code = match (&who, *names == 1) {
                    (Some(_), true) => "cyber.ev.unregistered_one",
                    (Some(_), false) => "cyber.ev.unregistered_many",
                    (None, true) => "cyber.ev.unregistered_unknown_one",
                    (None, false) => "cyber.ev.unregistered_unknown_many",
                };
                let mut ev = Message::new(code).with("count", Param::Int(i64::from(*names)));
                if let Some(who) = who {
                    ev = ev.with("publisher", who);
                }
                if !tags.is_empty() {
                    let quoted: Vec<String> = tags
                        .iter()
                        .take(MAX_TAGS_QUOTED)
                        .map(|t| format!("#{t}"))
                        .collect();
                    let tags =
                        Message::new("cyber.ev.name_tags").with("tags", text(&quoted.join(", ")));
                    ev = ev.with("tags", Param::Message(Box::new(tags)));
                }
                self.push(out, Anomaly::Unregistered, subject, at, ev);
            }
            SecuritySignal::TopicMismatch {
                topic_device,
                claimed,
            } => {
                // About the publisher (the topic's device), never the device it named.
                let s = subject_of(&self.territory, topic_device);
                let code = match self.territory.device_id(claimed) {
                    Some(_) => "cyber.ev.topic_mismatch_known",
                    None => "cyber.ev.topic_mismatch",
                };
                let ev = Message::new(code)
                    .with("topic", text(topic_device))
                    .with("named", text(claimed));
                self.push(out, Anomaly::TopicMismatch, s, at, ev);
            }
        }
    }

    /// The subject of an unregistered-device finding: the publisher if it is a registered
    /// device; else its own name while fewer than [`MAX_UNREGISTERED_PUBLISHERS`] have one;
    /// else, or without a publisher, [`UNKNOWN_PUBLISHER`].
    fn publisher_subject(&mut self, publisher: Option<&str>) -> Subject {
        let Some(p) = publisher else {
            return Subject::Other(UNKNOWN_PUBLISHER.into());
        };
        if let Some(d) = self.territory.device_id(p) {
            return Subject::Device(d);
        }
        if self.unregistered_publishers.contains(p) {
            return Subject::Other(p.into());
        }
        if self.unregistered_publishers.len() < MAX_UNREGISTERED_PUBLISHERS {
            self.unregistered_publishers.insert(p.into());
            return Subject::Other(p.into());
        }
        Subject::Other(UNKNOWN_PUBLISHER.into())
    }

    /// Advances processing time: the cyber-silence scan.
    pub fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Finding>) {
        let started = *self.started.get_or_insert(now);
        if self.hot_sites.is_empty() || !self.enabled(Anomaly::Silence) {
            return;
        }
        let t = Arc::clone(&self.territory);
        let factor = self.config.silence_factor;
        let radius = self.config.neighbour_radius_m;
        let limit_of = |d: DeviceIdx| {
            t.kind(t.device(d).kind)
                .heartbeat
                .map(|hb| Duration((hb.millis() as f64 * factor) as i64))
        };
        // Devices at a site with a raised condition that still report: usually few, so the
        // silent devices are compared with them only (not with their whole kind).
        let hot: Vec<DeviceIdx> = self
            .watched
            .iter()
            .copied()
            .filter(|&n| {
                self.hot_sites.contains_key(&t.device(n).site)
                    && limit_of(n).is_some_and(|limit| {
                        self.last_heard[n.get()].is_some_and(|h| now.since(h) <= limit)
                    })
            })
            .collect();
        if hot.is_empty() {
            return;
        }
        for &d in &self.watched {
            let dev = t.device(d);
            let Some(hb) = t.kind(dev.kind).heartbeat else {
                continue;
            };
            let Some(limit) = limit_of(d) else { continue };
            let last = self.last_heard[d.get()].unwrap_or(started);
            let silent = now.since(last);
            if silent <= limit || self.devices[d.get()].silence_flagged {
                continue;
            }
            // A neighbour of the same kind still reports and has raised a condition.
            let hot = hot.iter().find(|&&n| {
                n != d
                    && t.device(n).kind == dev.kind
                    && t.device(n).position.distance_m(&dev.position) <= radius
            });
            if let Some(&n) = hot {
                self.devices[d.get()].silence_flagged = true;
                let ev = Message::new("cyber.ev.silence")
                    .device("device", &dev.id)
                    .int("minutes", silent.millis() / 60_000)
                    .int("heartbeat", hb.millis() / 60_000)
                    .with("since", Param::Time(last))
                    .device("neighbour", &t.device(n).id)
                    .number(
                        "distance",
                        t.device(n).position.distance_m(&dev.position).round(),
                    );
                out.push(Finding {
                    anomaly: Anomaly::Silence,
                    subject: Subject::Device(d),
                    at: now,
                    evidence: ev.english().to_string(),
                    message: ev,
                });
            }
        }
    }
}

/// Text from a message or the configuration as a message parameter (scrubbed).
fn text(s: &str) -> Param {
    Param::Text(SafeText::redacting(s))
}

/// "unknown" (an address, a client) as a message of its own, translated by the console.
fn unknown(code: &'static str) -> Param {
    Param::Message(Box::new(Message::new(code)))
}

fn number(value: f64, unit: &Option<Arc<str>>) -> Param {
    Param::Number {
        value,
        unit: unit.clone(),
    }
}

#[cfg(test)]
mod tests;
