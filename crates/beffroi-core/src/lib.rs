//! Beffroi's pure domain core.
//!
//! This crate holds the vocabulary every other crate speaks: the territory model
//! (territory → communes → zones → sites → devices, device kinds and their fields),
//! observations, alarms produced by rules, and the incident state machine with its
//! deduplication book.
//!
//! **Architecture invariant:** no I/O, no clock reads, no async. Time is always passed in
//! as a [`Timestamp`]; a [`Clock`] is injected by the edges. Everything here is
//! deterministic and testable without a runtime.

pub mod alarm;
pub mod alarm_health;
pub mod audit;
pub mod crisis;
pub mod event;
pub mod geo;
pub mod handover;
pub mod incident;
pub mod message;
pub mod observation;
pub mod overview;
pub mod privacy;
pub mod security;
pub mod shelving;
pub mod situation;
pub mod territory;
pub mod text;
pub mod text_domain;
pub mod time;
pub mod trigger;
pub mod unit;
pub mod visibility;

pub use alarm::{Alarm, AlarmKind, DedupKey};
pub use audit::{
    AuditEntry, AuditOutcome, AuditQuery, AuditReadError, AuditReader, AuditRecord, AuditSink,
};
pub use event::{Capacity, Event, EventOrigin, EventStatus};
pub use geo::Point;
pub use incident::{
    Actor, Incident, IncidentAction, IncidentBook, IncidentChange, IncidentId, LogEntry, Severity,
    SopStep, Status, TransitionError,
};
pub use message::{Message, Param};
pub use observation::{Observation, Value};
pub use privacy::PrivacyPolicy;
pub use security::{SecuritySignal, Trust};
pub use situation::{
    Family, Member, Neighbourhood, Situation, SituationBook, SituationChange, SituationError,
    SituationId,
};
pub use territory::{
    Commune, CommuneIdx, DataCategory, Device, DeviceIdx, DeviceKind, FieldIdx, FieldSpec,
    FieldType, Identifier, KindIdx, Semantic, Signing, Site, SiteIdx, SiteKind, SiteKindDecl,
    SiteKindIdx, Territory, Zone, ZoneIdx,
};
pub use text::SafeText;
pub use text_domain::{TextDomain, TextPattern};
pub use time::{Clock, Duration, SimClock, Timestamp};
pub use trigger::{Trigger, TriggerKind, TriggerOp};
pub use unit::{Unit, UnitBoard, UnitError, UnitKind, UnitSpec, UnitStatus};
