//! CAP feeds read as incidents (`cap.toml`'s `[[source]]`): a neighbour's public alerts,
//! an official warning service. Each source is polled on its own task: an Atom feed of
//! CAP documents, or one CAP document. Every alert is mapped onto the territory and
//! handed to the engine, which opens, updates or resolves its incident
//! (`beffroi_engine::external`).
//!
//! - **Where.** An area names a commune by its INSEE code (`geocode`), or a polygon or
//!   circle whose centre falls in a commune's boundary (or within 2 km of a commune's
//!   position when the territory has no boundaries). The incident goes to the commune's
//!   site nearest that centre, one per commune, at most [`MAX_COMMUNES`]. An alert that
//!   touches none of the territory is left out (counted as `outside`).
//! - **What.** The title is the source's name and the alert's headline (or event). The
//!   evidence carries the sender, event, urgency, certainty, severity and area. Both are
//!   outside text and go through the scrubber. Severity: `Extreme` → critical, `Severe` →
//!   major, `Moderate` → minor, otherwise info.
//! - **When it ends.** A `Cancel`, urgency `Past`, `AllClear`, or an `expires` in the past
//!   resolves the incident. Updates reach the same incident: the key is the alert's first
//!   message (its first reference, or itself).
//! - **Only once.** An alert is handed over once per version. Its identifier and `sent`
//!   are remembered after the engine has committed it. A failure is retried at the next
//!   poll. A restart hands the versions over again, which joins the open incident and
//!   opens nothing new.
//! - **Which.** Only `Actual` and `Exercise` alerts are read, never `Test`, `System` or
//!   `Draft`, and never `Ack` or `Error` messages.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use beffroi_api::cap::CapSource;
use beffroi_cap::{Alert, LatLon, MsgType, ResponseType, Urgency};
use beffroi_core::{CommuneIdx, Point, SafeText, Severity, SiteIdx, Territory, Timestamp};
use beffroi_engine::external::ExternalAlert;
use beffroi_engine::runner::EngineHandle;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio_util::sync::CancellationToken;

/// Communes one alert places incidents in, at most.
pub const MAX_COMMUNES: usize = 10;
/// Alert versions remembered per source.
const REMEMBERED: usize = 10_000;
/// How close to a commune's position a point must be when the territory has no boundary.
const NEAR_M: f64 = 2_000.0;
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Counters per source and outcome (`beffroi_cap_feed_alerts_total`).
#[derive(Clone, Default)]
pub struct FeedMetrics {
    pub alerts: Family<Vec<(String, String)>, Counter>,
    pub failures: Family<Vec<(String, String)>, Counter>,
}

impl FeedMetrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "cap_feed_alerts",
            "CAP alerts read from feeds, by source and outcome (applied, outside, ignored, failed)",
            self.alerts.clone(),
        );
        r.register(
            "cap_feed_failures",
            "Polls of a CAP feed that failed (fetch or parse), by source",
            self.failures.clone(),
        );
    }
    fn count(&self, source: &str, outcome: &str) {
        self.alerts
            .get_or_create(&vec![
                ("source".into(), source.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }
}

fn severity(s: beffroi_cap::Severity) -> Severity {
    match s {
        beffroi_cap::Severity::Extreme => Severity::Critical,
        beffroi_cap::Severity::Severe => Severity::Major,
        beffroi_cap::Severity::Moderate => Severity::Minor,
        beffroi_cap::Severity::Minor | beffroi_cap::Severity::Unknown => Severity::Info,
    }
}

fn point(p: LatLon) -> Point {
    Point::new(p.lon, p.lat)
}

/// Ray casting on the ring (lon/lat treated as plane coordinates: communes are small).
fn inside(ring: &[Point], p: Point) -> bool {
    let mut c = false;
    let n = ring.len();
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + n - 1) % n]);
        if (a.lat > p.lat) != (b.lat > p.lat)
            && p.lon < (b.lon - a.lon) * (p.lat - a.lat) / (b.lat - a.lat) + a.lon
        {
            c = !c;
        }
    }
    c
}

fn commune_at(t: &Territory, p: Point) -> Option<CommuneIdx> {
    let idx = |i: usize| CommuneIdx(i as u32);
    if let Some(i) = t
        .communes
        .iter()
        .position(|c| c.boundary.iter().any(|ring| inside(ring, p)))
    {
        return Some(idx(i));
    }
    t.communes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.boundary.is_empty())
        .map(|(i, c)| (i, c.position.distance_m(&p)))
        .filter(|(_, d)| *d <= NEAR_M)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| idx(i))
}

fn nearest_site(t: &Territory, c: CommuneIdx, p: Point) -> Option<SiteIdx> {
    t.sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.commune == c)
        .map(|(i, s)| (i, s.position.distance_m(&p)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| SiteIdx(i as u32))
}

/// Where an alert falls in the territory: (site, area description), one per commune.
fn places(t: &Territory, a: &Alert) -> Vec<(SiteIdx, String)> {
    let mut out: Vec<(SiteIdx, String)> = Vec::new();
    let mut seen: HashSet<CommuneIdx> = HashSet::new();
    for info in &a.infos {
        for area in &info.areas {
            let centres: Vec<Point> = area
                .polygons
                .iter()
                .filter_map(|ring| {
                    let pts: Vec<Point> = ring.iter().map(|p| point(*p)).collect();
                    beffroi_core::geo::ring_centre(&pts)
                })
                .chain(area.circles.iter().map(|c| point(c.centre)))
                .collect();
            let mut communes: Vec<(CommuneIdx, Point)> = Vec::new();
            for g in &area.geocodes {
                if g.name.eq_ignore_ascii_case("INSEE")
                    && let Some(i) = t
                        .communes
                        .iter()
                        .position(|c| c.insee.as_deref() == Some(g.value.trim()))
                {
                    let c = CommuneIdx(i as u32);
                    let at = centres.first().copied().unwrap_or(t.commune(c).position);
                    communes.push((c, at));
                }
            }
            for p in &centres {
                if let Some(c) = commune_at(t, *p) {
                    communes.push((c, *p));
                }
            }
            for (c, p) in communes {
                if out.len() >= MAX_COMMUNES || !seen.insert(c) {
                    continue;
                }
                if let Some(site) = nearest_site(t, c, p) {
                    out.push((site, area.area_desc.clone()));
                }
            }
        }
    }
    out
}

/// Why an alert is not applied.
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// `Test`, `System`, `Draft`, or an `Ack` / `Error` message.
    NotAnAlert,
    /// Its areas touch none of the territory.
    Outside,
}

/// The alert as incidents of the territory (one per commune it touches).
pub fn map_alert(
    t: &Territory,
    source: &CapSource,
    a: &Alert,
    now: Timestamp,
) -> Result<Vec<ExternalAlert>, Skip> {
    use beffroi_cap::Status;
    if !matches!(a.status, Status::Actual | Status::Exercise)
        || matches!(a.msg_type, MsgType::Ack | MsgType::Error)
    {
        return Err(Skip::NotAnAlert);
    }
    let info = a.infos.first();
    let ended = a.msg_type == MsgType::Cancel
        || info.is_some_and(|i| {
            i.urgency == Urgency::Past
                || i.response_types.contains(&ResponseType::AllClear)
                || i.expires.is_some_and(|e| e.0 <= now.0)
        });
    // The first message of the alert: updates and cancellations reference it.
    let first = a
        .references
        .first()
        .map_or(a.identifier.as_str(), |r| r.identifier.as_str());
    let reference: String = first
        .chars()
        .map(|c| if c == '@' || c == '/' { '_' } else { c })
        .collect();
    let event = info.map_or("alerte", |i| i.event.as_str());
    let headline = info.and_then(|i| i.headline.as_deref()).unwrap_or(event);
    let places = places(t, a);
    if places.is_empty() {
        return Err(Skip::Outside);
    }
    Ok(places
        .into_iter()
        .map(|(site, area)| {
            let evidence = match info {
                Some(i) => format!(
                    "CAP {} ({}): {}, urgency {}, certainty {}, severity {}; {}",
                    a.sender,
                    a.msg_type.as_str(),
                    i.event,
                    i.urgency.as_str(),
                    i.certainty.as_str(),
                    i.severity.as_str(),
                    area
                ),
                None => format!("CAP {} ({}); {}", a.sender, a.msg_type.as_str(), area),
            };
            ExternalAlert {
                source: format!("cap:{}", source.name).into(),
                reference: reference.clone(),
                category: source.category.as_str().into(),
                severity: info.map_or(Severity::Info, |i| severity(i.severity)),
                title: SafeText::redacting(&format!("{} — {headline}", source.name)),
                evidence: SafeText::redacting(&evidence),
                site,
                at: Timestamp(a.sent.0.min(now.0)),
                ended,
            }
        })
        .collect())
}

/// Fetches `url` (blocking), at most the CAP reader's size.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    crate::backoff::fetch(url, None, beffroi_cap::read::MAX_BYTES, FETCH_TIMEOUT)
}

/// Resolves an entry's link against the feed's URL (absolute, or absolute path).
fn resolve(feed: &str, link: &str) -> Option<String> {
    if link.starts_with("http://") || link.starts_with("https://") {
        return Some(link.to_string());
    }
    let (scheme, rest) = feed.split_once("://")?;
    let host = rest.split('/').next()?;
    if link.starts_with('/') {
        Some(format!("{scheme}://{host}{link}"))
    } else {
        let base = feed.rsplit_once('/').map_or(feed, |(b, _)| b);
        Some(format!("{base}/{link}"))
    }
}

/// The alerts a poll finds: the document itself, or every entry of the feed.
fn poll_once(url: &str) -> Result<Vec<Result<Alert, String>>, String> {
    let body = fetch(url)?;
    if let Ok(a) = beffroi_cap::read::parse_alert(&body) {
        return Ok(vec![Ok(a)]);
    }
    let links = beffroi_cap::atom::entry_links(&body)
        .map_err(|e| format!("{url}: neither a CAP alert nor an Atom feed: {e}"))?;
    Ok(links
        .iter()
        .map(|l| {
            let u = resolve(url, l).ok_or_else(|| format!("{url}: cannot resolve `{l}`"))?;
            let b = fetch(&u)?;
            beffroi_cap::read::parse_alert(&b).map_err(|e| format!("{u}: {e}"))
        })
        .collect())
}

/// Polls every source until `stop`.
pub async fn run(
    sources: Vec<CapSource>,
    engine: EngineHandle,
    metrics: FeedMetrics,
    stop: CancellationToken,
) {
    crate::backoff::poll_each(sources, |s| {
        poll(s, engine.clone(), metrics.clone(), stop.clone())
    })
    .await
}

async fn poll(
    source: CapSource,
    engine: EngineHandle,
    metrics: FeedMetrics,
    stop: CancellationToken,
) {
    let every = Duration::from_millis(source.every.millis().max(1000) as u64);
    let mut backoff = crate::backoff::Backoff::new(every);
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    let mut order: VecDeque<(String, i64)> = VecDeque::new();
    tracing::info!(source = %source.name, url = %source.url, every = ?every, "CAP feed polled");
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.wait()) => {}
        }
        let url = source.url.clone();
        let found = tokio::task::spawn_blocking(move || poll_once(&url)).await;
        let mut ok = true;
        match found {
            Ok(Ok(alerts)) => {
                for a in alerts {
                    let a = match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(source = %source.name, error = %e, "CAP alert refused");
                            metrics.count(&source.name, "refused");
                            continue;
                        }
                    };
                    let version = (format!("{}/{}", a.sender, a.identifier), a.sent.0);
                    if seen.contains(&version) {
                        continue;
                    }
                    match map_alert(&engine.territory, &source, &a, engine.clock.now()) {
                        Err(Skip::Outside) => metrics.count(&source.name, "outside"),
                        Err(Skip::NotAnAlert) => metrics.count(&source.name, "ignored"),
                        Ok(list) => {
                            let mut applied = true;
                            for ext in list {
                                if let Err(e) = engine.external_alert(ext).await {
                                    tracing::warn!(source = %source.name, error = %e, "CAP alert not applied; retried at the next poll");
                                    applied = false;
                                    ok = false;
                                }
                            }
                            if !applied {
                                metrics.count(&source.name, "failed");
                                continue;
                            }
                            metrics.count(&source.name, "applied");
                        }
                    }
                    seen.insert(version.clone());
                    order.push_back(version);
                    if order.len() > REMEMBERED
                        && let Some(old) = order.pop_front()
                    {
                        seen.remove(&old);
                    }
                }
            }
            Ok(Err(e)) => {
                ok = false;
                metrics
                    .failures
                    .get_or_create(&vec![("source".into(), source.name.clone())])
                    .inc();
                if !backoff.is_failing() {
                    tracing::warn!(source = %source.name, error = %e, "CAP feed unreachable or unreadable; retrying with backoff");
                }
            }
            Err(e) => {
                ok = false;
                tracing::error!(source = %source.name, error = %e, "CAP feed poll task failed");
            }
        }
        if ok {
            if backoff.succeeded() {
                tracing::info!(source = %source.name, "CAP feed read again");
            }
        } else {
            backoff.failed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_inside_a_ring() {
        let sq = [
            Point::new(0.0, 0.0),
            Point::new(1.0, 0.0),
            Point::new(1.0, 1.0),
            Point::new(0.0, 1.0),
            Point::new(0.0, 0.0),
        ];
        assert!(inside(&sq, Point::new(0.5, 0.5)));
        assert!(!inside(&sq, Point::new(1.5, 0.5)));
    }

    fn source() -> CapSource {
        CapSource {
            name: "voisin".into(),
            url: "http://127.0.0.1:1/feed".into(),
            every: beffroi_core::Duration(60_000),
            category: "neighbour".into(),
        }
    }

    fn alert(area: beffroi_cap::Area) -> Alert {
        Alert {
            identifier: "v.1".into(),
            sender: "pc@voisin.example".into(),
            sent: beffroi_cap::CapTime(1_000_000),
            status: beffroi_cap::Status::Actual,
            msg_type: MsgType::Alert,
            source: None,
            scope: beffroi_cap::Scope::Public,
            restriction: None,
            addresses: None,
            codes: vec![],
            note: None,
            references: vec![],
            incidents: None,
            infos: vec![beffroi_cap::Info {
                language: None,
                categories: vec![beffroi_cap::Category::Met],
                event: "Crue".into(),
                response_types: vec![],
                urgency: Urgency::Expected,
                severity: beffroi_cap::Severity::Moderate,
                certainty: beffroi_cap::Certainty::Possible,
                event_codes: vec![],
                effective: None,
                onset: None,
                expires: None,
                sender_name: None,
                headline: None,
                description: None,
                instruction: None,
                web: None,
                contact: None,
                parameters: vec![],
                areas: vec![area],
            }],
        }
    }

    fn area_of(insee: Option<&str>, circle: Option<(f64, f64)>) -> beffroi_cap::Area {
        beffroi_cap::Area {
            area_desc: "zone".into(),
            polygons: vec![],
            circles: circle
                .map(|(lat, lon)| beffroi_cap::Circle {
                    centre: LatLon { lat, lon },
                    radius_km: 1.0,
                })
                .into_iter()
                .collect(),
            geocodes: insee
                .map(|v| beffroi_cap::NamedValue {
                    name: "INSEE".into(),
                    value: v.into(),
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn an_alert_lands_in_the_commune_its_area_names_or_contains() {
        let dep = crate::setup::load_demo().expect("demo");
        let t = &dep.territory;
        let now = Timestamp(2_000_000);
        // By INSEE code (Chenôve), and by a circle near Quetigny's centre.
        for (area, commune) in [
            (area_of(Some("21166"), None), "chenove"),
            (area_of(None, Some((47.3147, 5.1063))), "quetigny"),
        ] {
            let got = map_alert(t, &source(), &alert(area), now).expect("inside");
            assert_eq!(got.len(), 1);
            let e = &got[0];
            assert_eq!(&*t.commune(t.site(e.site).commune).id, commune);
            assert_eq!((e.severity, e.ended), (Severity::Minor, false));
            assert_eq!(&*e.source, "cap:voisin");
            assert_eq!(e.reference, "v.1");
        }
        assert_eq!(
            map_alert(
                t,
                &source(),
                &alert(area_of(None, Some((48.85, 2.35)))),
                now
            ),
            Err(Skip::Outside)
        );
    }

    #[test]
    fn tests_drafts_and_acks_are_ignored_and_an_expired_alert_ends() {
        let dep = crate::setup::load_demo().expect("demo");
        let t = &dep.territory;
        let now = Timestamp(2_000_000);
        let area = || area_of(Some("21231"), None);
        for status in [
            beffroi_cap::Status::Test,
            beffroi_cap::Status::Draft,
            beffroi_cap::Status::System,
        ] {
            let mut a = alert(area());
            a.status = status;
            assert_eq!(map_alert(t, &source(), &a, now), Err(Skip::NotAnAlert));
        }
        let mut ack = alert(area());
        ack.msg_type = MsgType::Ack;
        assert_eq!(map_alert(t, &source(), &ack, now), Err(Skip::NotAnAlert));
        let mut expired = alert(area());
        expired.infos[0].expires = Some(beffroi_cap::CapTime(now.0 - 1));
        assert!(map_alert(t, &source(), &expired, now).expect("inside")[0].ended);
        let mut update = alert(area());
        update.identifier = "v.1.u".into();
        update.references = vec![beffroi_cap::Reference {
            sender: "pc@voisin.example".into(),
            identifier: "v/1@x".into(),
            sent: beffroi_cap::CapTime(0),
        }];
        let e = &map_alert(t, &source(), &update, now).expect("inside")[0];
        assert_eq!(
            e.reference, "v_1_x",
            "keyed on the first message, without `@` or `/`"
        );
    }

    #[test]
    fn links_resolve_against_the_feed() {
        let feed = "http://127.0.0.1:9000/cap/feed.atom";
        assert_eq!(
            resolve(feed, "/cap/1.xml").as_deref(),
            Some("http://127.0.0.1:9000/cap/1.xml")
        );
        assert_eq!(
            resolve(feed, "2.xml").as_deref(),
            Some("http://127.0.0.1:9000/cap/2.xml")
        );
        assert_eq!(
            resolve(feed, "http://other/3.xml").as_deref(),
            Some("http://other/3.xml")
        );
        assert_eq!(
            resolve("https://x.example/f", "/a.xml").as_deref(),
            Some("https://x.example/a.xml")
        );
    }
}
