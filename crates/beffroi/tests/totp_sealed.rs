//! TOTP secrets never sit in clear in the accounts file: `users add --totp` writes them
//! sealed under a key file of its own (0600), the server opens them with `[http] totp_key`,
//! and a login with the code works end to end; without the key the server refuses to start.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use support::beffroi::Beffroi;
use support::http::agent;

const PASSWORD: &str = "Vq7-lanterne-Ouche-brume";

#[test]
fn a_sealed_second_factor_from_users_add_logs_in_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.toml");
    let key = dir.path().join("secrets").join("totp.key");
    let out = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args([
            "users", "add", "--name", "amelie", "--role", "operator", "--totp",
        ])
        .arg("--file")
        .arg(&users)
        .arg("--totp-key")
        .arg(&key)
        .env("BEFFROI_NEW_PASSWORD", PASSWORD)
        .output()
        .expect("users add");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("TOTP secret: "))
        .expect("secret printed once")
        .trim()
        .to_string();
    let file = std::fs::read_to_string(&users).expect("users file");
    assert!(file.contains("totp_sealed = \"v1:"), "{file}");
    assert!(
        !file.contains(&secret),
        "the secret is in the file in clear:\n{file}"
    );
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let extra = format!(
        "[http]\nusers = {:?}\ntotp_key = {:?}\n",
        users.display().to_string(),
        key.display().to_string()
    );
    let b = Beffroi::start_extra(&extra);
    let raw = beffroi_api::totp::decode_secret(&secret).expect("base32");
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let code = beffroi_api::totp::code(&raw, unix / 30);
    let mut r = agent()
        .post(&format!("{}/api/v1/auth/login", b.base()))
        .send_json(serde_json::json!({"username": "amelie", "password": PASSWORD, "totp": code}))
        .expect("login");
    let body = r.body_mut().read_to_string().expect("body");
    assert_eq!(r.status().as_u16(), 200, "{body}");
    drop(b);

    // Without its key, the accounts file does not load: the server does not start.
    std::fs::remove_file(&key).expect("remove key");
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ndeployment = {:?}\n{extra}",
            dir.path().join("data").display().to_string(),
            support::demo::dir().display().to_string()
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .env("BEFFROI_ADMIN_PASSWORD", PASSWORD)
        .output()
        .expect("serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("totp_sealed") && err.contains("no key"),
        "{err}"
    );
}
