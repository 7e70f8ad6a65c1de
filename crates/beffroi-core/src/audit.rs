//! What the audit log records. The chain, its signatures and its storage live at the edge
//! (`beffroi-audit`); everything that acts on behalf of someone reports here through an
//! [`AuditSink`].

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
}

/// One audited act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who: a user name, `token:<name>`, `system`, or `device:<id>`.
    pub actor: String,
    /// What, dotted and bounded: `auth.login`, `incident.acknowledge`, `rules.reload`,
    /// `device.quarantine`, `personal.read`…
    pub action: String,
    /// On what: an incident id, a device id, a file path.
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    /// Free detail as a JSON object text (never secrets, never personal data in clear).
    pub detail: String,
}

/// Where audited acts go. Implementations must not lose a record silently: a full queue
/// makes the caller wait, and a failure to persist is counted and logged.
pub trait AuditSink: Send + Sync {
    fn record(&self, record: AuditRecord);
}
