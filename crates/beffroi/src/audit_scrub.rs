//! The audit log's only way in from the running server: every record's actor, target and
//! detail pass the scrubber before they are chained, whoever wrote them (the API, the
//! engine, the registry watcher). An identifier typed as a user name, named in a
//! justification or copied into a detail is kept as its pseudonym (the written domain, as
//! free text is), never in clear; the chain cannot be rewritten later, so this is the last
//! place where it can be caught.

use std::sync::Arc;

use beffroi_core::audit::{AuditRecord, AuditSink};
use beffroi_privacy::{Pseudonymiser, scrub};

pub struct ScrubbedAudit {
    inner: Arc<dyn AuditSink>,
    pseudonymiser: Arc<Pseudonymiser>,
}

impl ScrubbedAudit {
    pub fn new(inner: Arc<dyn AuditSink>, pseudonymiser: Arc<Pseudonymiser>) -> ScrubbedAudit {
        ScrubbedAudit {
            inner,
            pseudonymiser,
        }
    }
}

impl AuditSink for ScrubbedAudit {
    fn record(&self, mut r: AuditRecord) {
        let p = &self.pseudonymiser;
        r.actor = scrub(p, &r.actor).text;
        r.target = r.target.map(|t| scrub(p, &t).text);
        // Pseudonyms are `[a-z0-9:]`: a JSON text stays JSON.
        r.detail = scrub(p, &r.detail).text;
        self.inner.record(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Kept(Mutex<Vec<AuditRecord>>);

    impl AuditSink for Kept {
        fn record(&self, r: AuditRecord) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        }
    }

    #[test]
    fn identifiers_in_actor_target_and_detail_are_kept_as_pseudonyms() {
        let kept = Arc::new(Kept::default());
        let p = Arc::new(
            Pseudonymiser::new(vec![beffroi_privacy::EpochKey::new(1, &[7; 32])]).expect("key"),
        );
        let sink = ScrubbedAudit::new(Arc::clone(&kept) as Arc<dyn AuditSink>, p);
        sink.record(AuditRecord {
            at_ms: 0,
            actor: "jean.dupont@example.fr".into(),
            action: "auth.login".into(),
            target: Some("ab 123 cd".into()),
            outcome: beffroi_core::AuditOutcome::Denied,
            detail: r#"{"justification":"appel du 06 12 34 56 78, badge 7731"}"#.into(),
        });
        let r = kept.0.lock().expect("kept")[0].clone();
        let all = format!("{} {:?} {}", r.actor, r.target, r.detail);
        for clear in ["dupont", "ab 123 cd", "06 12 34 56 78", "7731"] {
            assert!(!all.contains(clear), "{clear} in {all}");
        }
        assert!(r.actor.starts_with("email:"), "{}", r.actor);
        let detail: serde_json::Value = serde_json::from_str(&r.detail).expect("still JSON");
        assert!(
            detail["justification"]
                .as_str()
                .is_some_and(|j| j.contains("phone:"))
        );
        assert_eq!(r.action, "auth.login");
    }
}
