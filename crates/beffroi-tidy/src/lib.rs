//! Nothing to link: the checks are the test `tests/tidy.rs`, which reads the workspace's
//! files from disk and fails with a message saying what to fix and where. Run it with
//! `cargo test -p beffroi-tidy`.
