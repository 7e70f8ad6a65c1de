//! Beffroi's rule language and its evaluator.
//!
//! Rules are written in TOML with typed operators (see `docs/formats.md` and ADR 0003):
//! threshold (optionally sustained), absence of messages, rate of events in a window,
//! correlation of several conditions within a window at one site or within a radius,
//! escalation while a condition lasts, and auto-resolution when it clears.
//!
//! - [`parse`] validates a rules file against the territory and compiles it into a
//!   [`RuleSet`], indexed by (device kind, field) and then by device or site, so that an
//!   observation only meets the rules that can match it.
//! - [`Evaluator`] keeps the per-rule state, keyed by (rule, device) or (rule, site), and
//!   turns observations and clock ticks into [`beffroi_core::Alarm`]s.
//!
//! **Architecture invariant:** no I/O and no clock reads; time comes in with observations
//! (event time) and ticks (processing time).

mod compile;
mod eval;
mod event;
mod model;

pub use compile::parse;
pub use eval::Evaluator;
pub use event::{CAPACITY_RULE, EventRules, PEOPLE_UNIT, compile_event, event_rule_id};
pub use model::{Body, Condition, KeyBy, Op, Rule, RuleIdx, RuleSet, Scope};
