//! The data protection officer's documents, built from the configuration (ADR 0017).
//!
//! - [`register::build`]: the register of processing activities (GDPR art. 30) from the
//!   territory (its kinds and their fields), the privacy policy (`privacy.toml`) and
//!   Beffroi's own record fields ([`beffroi_core::privacy::RECORD_FIELDS`]): one entry per
//!   activity with its purposes, legal basis, people and data concerned (each field with
//!   its category and how Beffroi protects it), recipients, effective retention,
//!   transfers, security measures (declared, and those Beffroi applies by construction)
//!   and the devices concerned per commune. [`register::Register::problems`] lists what
//!   makes it incomplete; `beffroi check` fails on them.
//! - [`notice::build`]: the information the town must publish for a device that observes
//!   public space (controller, purpose, legal basis, retention, rights, DPO, CNIL).
//! - [`html`]: both as printable, self-contained French HTML pages; every string of the
//!   configuration is escaped ([`html::escape`]).
//!
//! The types here derive `Serialize` on purpose: they are documents (the JSON form of the
//! register), not the domain. That is why this is a crate of its own and not a module of
//! `beffroi-core`, which stays serde-free.
//!
//! **Architecture invariant:** pure — no I/O, no clock reads (the generation time is
//! passed in). The CLI (`beffroi privacy register|notices`) and the API
//! (`/api/v1/privacy/register`, `/api/v1/devices/{id}/notice`) call the same functions.

pub mod fr;
pub mod html;
pub mod notice;
pub mod register;

pub use notice::Notice;
pub use register::{Problem, Register};
