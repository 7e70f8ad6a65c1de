//! Alerts from outside the territory's own devices: a neighbour's or an official warning
//! feed (CAP), mapped by an edge adapter to a site of the territory. Each becomes an
//! incident of its own category, deduplicated on the first message of the alert, so that
//! its updates update it and its end resolves it.

use std::sync::Arc;

use beffroi_core::alarm::{Alarm, AlarmKind, DedupKey};
use beffroi_core::{SafeText, Severity, SiteIdx, Territory, Timestamp};

/// One alert from outside, already mapped onto the territory.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalAlert {
    /// Where it came from, as the incident's rule: `cap:<source name>`.
    pub source: Arc<str>,
    /// The first message of the alert (its sender and identifier): updates and the end of
    /// the same alert name it, so they reach the same incident.
    pub reference: String,
    pub category: Arc<str>,
    pub severity: Severity,
    /// Text from outside, scrubbed by whoever built it.
    pub title: SafeText,
    pub evidence: SafeText,
    /// The site of the territory it is placed at.
    pub site: SiteIdx,
    /// When it was sent.
    pub at: Timestamp,
    /// The alert ended (cancelled, all clear, expired): the incident resolves.
    pub ended: bool,
}

impl ExternalAlert {
    /// The incident's deduplication key: one incident per alert and site.
    pub fn key(&self, t: &Territory) -> DedupKey {
        DedupKey::for_site(
            &format!("{}/{}", self.source, self.reference),
            &t.site(self.site).id,
        )
    }

    /// The alarm the pipeline applies: a raise, or a clear that resolves.
    pub fn alarm(&self, t: &Territory) -> Alarm {
        Alarm {
            kind: if self.ended {
                AlarmKind::Clear
            } else {
                AlarmKind::Raise
            },
            key: self.key(t),
            rule: Arc::clone(&self.source),
            category: Arc::clone(&self.category),
            severity: self.severity,
            title: self.title.clone(),
            site: self.site,
            device: None,
            at: self.at,
            evidence: self.evidence.clone(),
            auto_resolve: true,
            silence: false,
            carries: Vec::new(),
            evidence_message: None,
            trigger: None,
        }
    }
}
