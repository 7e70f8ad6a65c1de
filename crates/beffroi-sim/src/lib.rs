//! Scenarios and their deterministic player; a synthetic load generator.
//!
//! A *scenario* (`demo/scenarios/*.toml`, format in `docs/formats.md`) describes what the
//! devices of a territory send over a few hours: periodic [signals](Scenario) (a constant,
//! a linear ramp or steps, with optional deterministic noise), one-off events, silences,
//! and the incidents the rules are expected to open. [`parse`], [`load_sources`] and
//! [`load_dir`] validate scenario files against a [`Territory`](beffroi_core::Territory)
//! and report every error with its file, line and field.
//!
//! A [`Player`] plays several scenarios together — always the background plus the one
//! under test — on a simulated timeline: [`Player::drain_until`] yields the [`Message`]s
//! the devices would send, topic and payload included, in SenML, plain JSON or ChirpStack
//! uplink form, exactly as [`beffroi_wire::decode`] expects them. Generation is lazy (a
//! heap of per-signal cursors) and deterministic: same scenarios, start and seed, same
//! bytes. A scenario's `[[silence]]` hides a device from the *other* scenarios played with
//! it, so that the scenario alone drives that device.
//!
//! [`LoadGenerator`] produces a steady stream of realistic messages over every device,
//! cheaply enough for benchmarks at 100,000+ messages/s.
//!
//! **Architecture invariant:** no I/O except reading scenario files in [`load_dir`]; no
//! clock reads (time is the caller's); no dependency on a random number crate (the
//! SplitMix64 generator is in this crate, so streams never change with an upgrade).

mod loadgen;
mod parse;
mod player;
mod render;
mod rng;
mod scenario;

pub use loadgen::{DEFAULT_LOAD_START, LoadGenError, LoadGenerator};
pub use parse::{load_dir, load_sources, parse};
pub use player::{Message, Player};
pub use scenario::{Expect, Scenario, Silence};
