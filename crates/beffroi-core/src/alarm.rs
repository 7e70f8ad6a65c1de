//! What rules emit: a condition raised, escalated or cleared for a deduplication key.

use crate::text::SafeText;
use std::sync::Arc;

use crate::incident::Severity;
use crate::territory::{DeviceIdx, SiteIdx};
use crate::time::Timestamp;

/// One incident at most is active per key: `rule-id@site:ID` or `rule-id@device:ID`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey(pub Arc<str>);

impl DedupKey {
    pub fn for_site(rule: &str, site: &str) -> Self {
        DedupKey(format!("{rule}@site:{site}").into())
    }
    pub fn for_device(rule: &str, device: &str) -> Self {
        DedupKey(format!("{rule}@device:{device}").into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum AlarmKind {
    /// The condition became true.
    Raise,
    /// The condition has lasted long enough to reach a higher severity.
    Escalate,
    /// The condition cleared and the rule auto-resolves.
    Clear,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Alarm {
    pub kind: AlarmKind,
    pub key: DedupKey,
    pub rule: Arc<str>,
    pub category: Arc<str>,
    pub severity: Severity,
    pub title: SafeText,
    pub site: SiteIdx,
    pub device: Option<DeviceIdx>,
    /// Event time of the observation (or tick) that produced the alarm.
    pub at: Timestamp,
    /// Human-readable evidence: which values made the condition true.
    pub evidence: SafeText,
    /// For `Clear`: whether the rule resolves its incident when the condition clears.
    pub auto_resolve: bool,
    /// The condition is the device's silence (an absence rule), not something it reported.
    pub silence: bool,
    /// The pseudonyms of the reading that raised the condition: the values of its personal
    /// fields and the pseudonyms that ingest scrubbing put into its technical text (the
    /// observations of that device at that time in the same payload). Set by the engine,
    /// never from rule text; empty for ticks, clears and security findings.
    pub carries: Vec<Arc<str>>,
    /// The evidence as a message, for the console to render in the reader's language;
    /// `evidence` is its English rendering. `None` where the evidence is not composed by
    /// the program (or is empty).
    pub evidence_message: Option<crate::message::Message>,
    /// What fired the rule, as structure (raises only; `None` for escalations, clears and
    /// security findings). Stored on the incident at its opening, never overwritten.
    pub trigger: Option<crate::trigger::Trigger>,
}
