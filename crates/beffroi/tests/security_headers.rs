//! The console and the API, served by a real `beffroi serve`, pass a check of their security
//! headers: on `/`, on console assets, on API answers (JSON and errors) and on login, whose
//! session cookie is `HttpOnly; SameSite=Strict; Path=/`.

mod support;

use support::beffroi::Beffroi;
use support::http::{ADMIN_PASSWORD, agent};

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[test]
fn every_answer_carries_strict_security_headers() {
    let beffroi = Beffroi::start(None);
    let base = beffroi.base();
    let agent = agent();
    let pages = [
        ("/", false),
        ("/console/app.js", false),
        ("/console/app.css", false),
        ("/api/v1/territory", true),
        ("/api/v1/openapi.json", true),
        ("/healthz", true),
    ];
    for (path, api) in pages {
        let resp = agent
            .get(&format!("{base}{path}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        assert!(
            status == 200 || (path == "/api/v1/territory" && status == 401),
            "GET {path}: {status}"
        );
        for (k, v) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
            ("cross-origin-opener-policy", "same-origin"),
        ] {
            assert_eq!(header(&resp, k).as_deref(), Some(v), "{k} on {path}");
        }
        assert!(
            header(&resp, "permissions-policy").is_some_and(|p| p.contains("camera=()")),
            "permissions-policy on {path}"
        );
        let csp =
            header(&resp, "content-security-policy").unwrap_or_else(|| panic!("no CSP on {path}"));
        assert!(
            csp.contains("frame-ancestors 'none'") || csp.contains("default-src 'none'"),
            "CSP on {path}: {csp}"
        );
        if api {
            assert_eq!(
                header(&resp, "cache-control").as_deref(),
                Some("no-store"),
                "{path}"
            );
        }
        // Served over plain HTTP here: no HSTS (it is sent when `[http] behind_tls`).
        assert!(header(&resp, "strict-transport-security").is_none());
    }
    // The console page's own CSP: scripts from the server only (no inline, no eval).
    let resp = agent.get(&format!("{base}/")).call().expect("GET /");
    let csp = header(&resp, "content-security-policy").expect("csp");
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        !csp.contains("script-src") && !csp.contains("unsafe-eval"),
        "{csp}"
    );

    let resp = agent
        .post(&format!("{base}/api/v1/auth/login"))
        .send_json(serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .expect("login");
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = header(&resp, "set-cookie").expect("session cookie");
    for attr in ["beffroi_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: no Secure flag by default"
    );
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
}
