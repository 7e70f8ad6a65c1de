//! `beffroi serve` with its store in PostgreSQL (`[cluster] database`): incidents and
//! observations go to the database, nothing to `beffroi.db`; after a `kill -9` and a
//! restart the open incident is restored from PostgreSQL, and the same alarm again joins
//! it rather than opening a second one. A legal hold set through the API lands in
//! PostgreSQL, and `beffroi privacy keys destroy` finds it there. A second server given
//! another pseudonymisation vault is refused by the same store.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::beffroi::Beffroi;
use support::http::Api;
use support::{now_ms, poll};

fn count(url: &str, sql: &str) -> i64 {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect by hand");
    c.query_one(sql, &[]).expect(sql).get(0)
}

#[test]
fn serve_keeps_its_store_in_postgresql_across_a_kill() {
    let Some(pg) = beffroi_testkit::postgres::Postgres::start() else {
        return;
    };
    let url = pg.create_database("serve");
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["users", "token", "--name", "sup", "--role", "supervisor"])
        .arg("--file")
        .arg(&users)
        .output()
        .expect("users token");
    let sup_token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("token printed")
        .to_string();
    let b = Beffroi::start_extra(&format!(
        "[http]\nusers = {:?}\n\n[cluster]\ndatabase = \"{url}\"\n",
        users.display().to_string()
    ));
    let api = Api::login(&b.base());

    let panel = support::demo::of_kind(&support::demo::devices(), "fire_panel")
        .into_iter()
        .find(|d| d.id.starts_with("dijon-"))
        .expect("a fire panel in Dijon")
        .clone();
    let fire = |at: i64| {
        let body = json!({"device": panel.id, "time": at, "values": {"fire": true}});
        let (status, v) = api.post("/api/v1/observations?format=json", &body.to_string());
        assert_eq!(status, 200, "{v}");
    };
    fire(now_ms());
    let id = poll(
        "the fire incident",
        Duration::from_secs(15),
        || b.log(),
        || {
            api.incidents("status=open")
                .iter()
                .find(|i| i["device"] == panel.id.as_str())
                .and_then(|i| i["id"].as_u64())
        },
    );
    // The store is PostgreSQL's: the incident and the reading are there, the data folder
    // holds no SQLite store.
    assert!(
        count(
            &url,
            "SELECT count(*) FROM incidents WHERE category = 'fire'"
        ) >= 1,
        "the incident is in PostgreSQL"
    );
    assert!(count(&url, "SELECT count(*) FROM observations") >= 1);
    assert!(
        !b.db_path().exists(),
        "no beffroi.db beside a PostgreSQL store"
    );

    b.kill9();
    b.restart();
    let api = Api::login(&b.base());
    let restored = api.get_ok(&format!("/api/v1/incidents/{id}"));
    assert_eq!(restored["status"], "new", "{restored}");
    assert!(restored["closed_at"].is_null(), "{restored}");
    // The same alarm again (a later reading) joins the restored incident.
    let (status, v) = api.post(
        "/api/v1/observations?format=json",
        &json!({"device": panel.id, "time": now_ms(), "values": {"fire": true}}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    let open: Vec<u64> = api
        .incidents("status=open")
        .iter()
        .filter(|i| i["device"] == panel.id.as_str() && i["category"] == "fire")
        .filter_map(|i| i["id"].as_u64())
        .collect();
    assert_eq!(open, vec![id], "one fire incident for the panel, restored");

    // A legal hold on it, kept in PostgreSQL: destroying the key epoch that sealed its
    // values is refused, as with the SQLite store.
    let sup = Api {
        token: sup_token,
        ..api.clone()
    };
    let (status, v) = sup.post(
        &format!("/api/v1/incidents/{id}/hold"),
        &json!({
            "justification": "Réquisition du parquet de Dijon, enquête en cours",
            "until": support::rfc3339(now_ms() + 30 * 86_400_000),
        })
        .to_string(),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(count(&url, "SELECT count(*) FROM legal_holds"), 1);
    let refused = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["privacy", "keys", "destroy", "--epoch", "1", "--by", "dpo"])
        .arg("--config")
        .arg(b.config_path())
        .output()
        .expect("run beffroi");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "destroyed under a hold");
    assert!(
        why.contains(&format!("incident {id}")) && why.contains("--despite-hold"),
        "{why}"
    );

    // Another server on the same store with a vault of its own (its default one, beside
    // its own data folder): refused before it writes, since the same person would get other
    // pseudonyms there.
    let other = tempfile::tempdir().expect("temp dir");
    let config = std::fs::read_to_string(b.config_path()).expect("config");
    let config: String = config
        .lines()
        .map(|l| {
            if l.starts_with("data_dir = ") {
                format!(
                    "data_dir = {:?}",
                    other.path().join("data").display().to_string()
                )
            } else if l.starts_with("listen = ") {
                "listen = \"127.0.0.1:0\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let other_config = other.path().join("beffroi.toml");
    std::fs::write(&other_config, config).expect("write config");
    let refused = Command::new(env!("CARGO_BIN_EXE_beffroi"))
        .args(["serve", "--config"])
        .arg(&other_config)
        .env("BEFFROI_ADMIN_PASSWORD", support::http::ADMIN_PASSWORD)
        .output()
        .expect("run beffroi");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "started with another vault");
    assert!(
        why.contains("pseudonymisation vault is not the one") && why.contains("epoch 1"),
        "{why}"
    );
}
