//! The password policy holds at every place a password is set: the admin's from
//! `BEFFROI_ADMIN_PASSWORD`, `beffroi users add` (from `BEFFROI_NEW_PASSWORD`) and
//! `beffroi users hash`. A one-character password, a common one or one built on the account's
//! name is refused with the reason; a strong one passes.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn beffroi(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beffroi"));
    cmd.args(args)
        .env_remove("BEFFROI_ADMIN_PASSWORD")
        .env_remove("BEFFROI_NEW_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run beffroi");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait beffroi")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn users_add_refuses_weak_passwords_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("users.toml");
    let f = file.to_str().expect("utf-8 path");
    for (weak, why) in [
        ("a", "at least 12 characters"),
        ("password1234", "too easy to guess"),
        ("jdupont2024!", "too easy to guess"),
    ] {
        let o = beffroi(
            &[
                "users", "add", "--file", f, "--name", "jdupont", "--role", "operator",
            ],
            &[("BEFFROI_NEW_PASSWORD", weak)],
            None,
        );
        assert!(!o.status.success(), "{weak} accepted: {}", text(&o));
        assert!(text(&o).contains(why), "{weak}: {}", text(&o));
        assert!(!file.exists(), "nothing written for {weak}");
    }
    let o = beffroi(
        &[
            "users", "add", "--file", f, "--name", "jdupont", "--role", "operator",
        ],
        &[("BEFFROI_NEW_PASSWORD", "Vq7-lanterne-Ouche-brume")],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(file.exists());
}

#[test]
fn users_hash_refuses_weak_passwords() {
    let o = beffroi(&["users", "hash"], &[], Some("azerty123456\n"));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("too easy to guess"), "{}", text(&o));
    let o = beffroi(&["users", "hash"], &[], Some("Vq7-lanterne-Ouche-brume\n"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("$argon2id$"));
}

#[test]
fn a_weak_admin_password_from_the_environment_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let o = beffroi(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().expect("utf-8 path"),
        ],
        &[("BEFFROI_ADMIN_PASSWORD", "admin")],
        None,
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("BEFFROI_ADMIN_PASSWORD is refused"),
        "{}",
        text(&o)
    );
}
