//! A small blocking client of Beffroi's HTTP API (ureq 3, statuses returned, not errors).

use std::time::Duration;

use serde_json::Value;

pub const ADMIN_PASSWORD: &str = "Vq7-lanterne-Ouche-brume";

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        // A connection the server closes after an answer that left the request body unread
        // (a refusal before the handler) may be picked from the pool for the next request
        // as it closes: one connection per request, as the tests are not about reuse.
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .build()
        .into()
}

/// `(status, body)` of a GET without a token, or `None` if the server cannot be reached.
pub fn get_text(agent: &ureq::Agent, url: &str) -> Option<(u16, String)> {
    let mut r = agent.get(url).call().ok()?;
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// `/metrics` of the server at `base`, as `admin` (it needs `metrics.read`).
pub fn metrics(base: &str) -> String {
    Api::login(base).metrics()
}

/// A logged-in client.
#[derive(Clone)]
pub struct Api {
    pub agent: ureq::Agent,
    pub base: String,
    pub token: String,
}

impl Api {
    /// Logs in as `admin` on `base` (`http://127.0.0.1:PORT`).
    pub fn login(base: &str) -> Api {
        Api::login_as(base, "admin", ADMIN_PASSWORD)
    }

    /// Logs in as `user` with `password`.
    pub fn login_as(base: &str, user: &str, password: &str) -> Api {
        let agent = agent();
        let mut r = agent
            .post(&format!("{base}/api/v1/auth/login"))
            .send_json(serde_json::json!({"username": user, "password": password}))
            .expect("login request");
        let status = r.status().as_u16();
        let body: Value = r.body_mut().read_json().expect("login answer is JSON");
        assert_eq!(status, 200, "login failed: {body}");
        let token = body["token"].as_str().expect("token").to_owned();
        Api {
            agent,
            base: base.to_owned(),
            token,
        }
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `(status, JSON body)` of an authenticated GET on `path` (e.g. `/api/v1/incidents`).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &self.bearer())
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// The JSON of a GET that must answer 200.
    pub fn get_ok(&self, path: &str) -> Value {
        let (status, v) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// `(status, JSON body)` of an authenticated POST of a raw body.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &self.bearer())
            .content_type("application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// Incidents of the listing `GET /api/v1/incidents?{query}`.
    pub fn incidents(&self, query: &str) -> Vec<Value> {
        let v = self.get_ok(&format!("/api/v1/incidents?{query}"));
        v.as_array().expect("incident list").clone()
    }

    /// `/metrics` as text.
    /// Opens the live stream (`GET /api/v1/stream`), to be read for at most `within`.
    pub fn stream(
        &self,
        within: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.agent
            .get(&format!("{}/api/v1/stream", self.base))
            .header("Authorization", &self.bearer())
            .config()
            .timeout_global(Some(within))
            .build()
            .call()
    }

    pub fn metrics(&self) -> String {
        let mut r = self
            .agent
            .get(&format!("{}/metrics", self.base))
            .header("Authorization", &self.bearer())
            .call()
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().expect("body");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }
}

/// The value of the sample `name{labels…}` in a Prometheus / OpenMetrics text exposition,
/// where every `(label, value)` of `labels` is present (others may be too).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let have: Vec<&str> = label_text.split(',').map(str::trim).collect();
        if labels
            .iter()
            .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()))
        {
            return value.trim().parse().ok();
        }
    }
    None
}
