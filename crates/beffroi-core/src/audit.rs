//! What the audit log records. The chain, its signatures and its storage live at the edge
//! (`beffroi-audit`); everything that acts on behalf of someone reports here through an
//! [`AuditSink`], and the DPO's access log reads it back through an [`AuditReader`].

use crate::text::SafeText;

/// How the audited act ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    Ok,
    /// Refused by access control (authentication or authorisation).
    Denied,
    /// Attempted but failed (invalid input, conflict).
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<AuditOutcome> {
        [AuditOutcome::Ok, AuditOutcome::Denied, AuditOutcome::Failed]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One audited act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who: a user name, `token:<name>`, `system`, or `device:<id>`.
    pub actor: SafeText,
    /// What, dotted and bounded: `auth.login`, `incident.acknowledge`, `rules.reload`,
    /// `device.quarantine`, `personal.read`…
    pub action: String,
    /// On what: an incident id, a device id, a file path.
    pub target: Option<SafeText>,
    pub outcome: AuditOutcome,
    /// Free detail as a JSON object text (never secrets, never personal data in clear).
    pub detail: SafeText,
}

/// Where audited acts go. Implementations must not lose a record silently: a full queue
/// makes the caller wait, and a failure to persist is counted and logged.
pub trait AuditSink: Send + Sync {
    fn record(&self, record: AuditRecord);
}

/// One entry read back from the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its position in the chain (1, 2, …), as `beffroi audit show` prints it.
    pub seq: u64,
    /// The node whose chain holds it, when the log read is a cluster's (each node signs a
    /// chain of its own); `None` for a single node's log.
    pub node: Option<String>,
    /// Its place in the listing, for [`AuditQuery::before`]: the seq in a single node's log,
    /// the order of arrival in a cluster's.
    pub cursor: u64,
    pub record: AuditRecord,
}

/// Which entries to read: newest first, at most `limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Keep entries whose action starts with one of these (all entries when empty).
    /// Plain prefixes: `*`, `?` and `[` are refused.
    pub action_prefixes: Vec<String>,
    /// Only entries at or after this wall-clock time (ms).
    pub since_ms: Option<i64>,
    /// Only entries listed after this cursor ([`AuditEntry::cursor`] of the last entry of
    /// the previous page of a newest-first listing).
    pub before: Option<u64>,
    pub limit: usize,
}

/// Reading the audit log failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log: {0}")]
pub struct AuditReadError(pub String);

/// The read side of the audit log. Implementations do blocking I/O: call them from a
/// blocking context (`spawn_blocking`).
pub trait AuditReader: Send + Sync {
    fn read(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AuditReadError>;
}
