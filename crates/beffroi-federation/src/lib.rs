//! Federation between Beffroi instances, at the edge: neighbouring territories share the
//! incidents their agreements name, each side queueing durably and delivering in order.
//!
//! - [`agreement`]: `federation.toml`, one agreement per partner: categories, minimum
//!   severity, border zone (communes), optional fields, TLP, the partner's pinned key,
//!   and how its incidents appear here.
//! - [`share`]: whether an incident goes to a partner, and what of it: codes, times, the
//!   commune, the agreement's fields; pseudonyms re-keyed per partner.
//! - [`wire`]: the signed batch (Ed25519 over the sender, the receiver and the body), the
//!   receiver's acknowledgement, the reader of untrusted batches, and the receiver's rule
//!   that applies each message once and in order.
//!
//! Architecture invariant: no I/O, no clock. The binary holds the durable queues, the
//! sender and the keys; the API receives batches through a port.

pub mod agreement;
pub mod share;
pub mod wire;

pub use agreement::{Federation, Field, Partner, Tlp, parse};
pub use share::{note, rekey, rekey_text, share};
pub use wire::{
    Ack, Batch, Content, Message, SharedIncident, SharedNote, next_in_order, parse_batch, sign,
    verify,
};
