//! A data folder left by the previous release is upgraded when `beffroi serve` starts: its
//! store, one schema version behind, is migrated in place, its rows kept; a store written
//! by a newer release is refused with a message that says what to do.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use support::beffroi::Beffroi;

const FIRE: &str = "dijon-hotel-de-ville-fire-01";
/// An observation the previous release stored.
const OLD_TIME: i64 = 1_780_000_000_000;

fn user_version(path: &std::path::Path) -> u32 {
    Connection::open(path)
        .expect("open")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

/// Replaces the data folder's store with one the previous release made: the schema one
/// version behind this build's, holding one observation.
fn previous_release_store(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let previous = beffroi_store::SCHEMA_VERSION - 1;
    beffroi_store::create_at_version(db, previous).expect("a previous release's store");
    Connection::open(db)
        .expect("open")
        .execute(
            "INSERT INTO observations (device, field, time, value_bool, received) \
             VALUES (?1, 'fire', ?2, 1, ?2)",
            rusqlite::params![FIRE, OLD_TIME],
        )
        .expect("an observation of the previous release");
    assert_eq!(user_version(db), previous);
}

/// `text` without its terminal colours.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_store_of_the_previous_release_is_upgraded_at_start_and_a_newer_one_refused() {
    // A folder with its audit log, anchor and keys, as a running release leaves it.
    let server = Beffroi::start(None);
    assert!(
        server.terminate(Duration::from_secs(20)),
        "{}",
        server.log()
    );
    let db = server.db_path();
    previous_release_store(&db);

    server.restart();
    assert_eq!(user_version(&db), beffroi_store::SCHEMA_VERSION);
    let root = server.data_dir().parent().expect("root").to_path_buf();
    let second = plain(&std::fs::read_to_string(root.join("stderr-2.log")).unwrap_or_default());
    let previous = beffroi_store::SCHEMA_VERSION - 1;
    assert!(
        second.contains("store schema migrated") && second.contains(&format!("from={previous}")),
        "the upgrade is logged at the second start: {second}"
    );
    let (rows, vkey): (i64, i64) = Connection::open(&db)
        .expect("open")
        .query_row(
            "SELECT count(*), max(vkey) FROM observations WHERE device = ?1 AND time = ?2",
            rusqlite::params![FIRE, OLD_TIME],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("old observation");
    assert_eq!(rows, 1, "the previous release's observation is kept");
    assert_ne!(vkey, 0, "and keyed by its value, as this release stores it");
    assert!(
        server.terminate(Duration::from_secs(20)),
        "{}",
        server.log()
    );

    // A store from a newer release: refused, nothing changed.
    Connection::open(&db)
        .expect("open")
        .pragma_update(None, "user_version", beffroi_store::SCHEMA_VERSION + 1)
        .expect("a newer release's version");
    let mut child = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .arg("serve")
        .arg("--config")
        .arg(server.config_path())
        .env("BEFFROI_ADMIN_PASSWORD", support::http::ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn beffroi");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("beffroi serve started on a store of a newer release");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!status.success(), "{err}");
    assert!(err.contains("newer than this build supports"), "{err}");
    assert_eq!(
        user_version(&db),
        beffroi_store::SCHEMA_VERSION + 1,
        "the newer store is left as it was"
    );
}
