use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::*;
use crate::range::{Range, parse};

async fn get(
    app: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let h = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, h, body.to_vec())
}

#[test]
fn the_table_holds_our_files_and_the_vendored_ones_sorted() {
    for p in [
        "index.html",
        "app.js",
        "vendor/maplibre-gl.mjs",
        "vendor/maplibre-gl-worker.mjs",
        "vendor/uPlot.esm.js",
        "vendor/pmtiles.js",
    ] {
        assert!(find(p).is_some(), "{p} is embedded");
    }
    assert!(ASSETS.windows(2).all(|w| w[0].path < w[1].path));
    assert_eq!(
        find("vendor/maplibre-gl.mjs").map(|a| a.content_type),
        Some("text/javascript; charset=utf-8")
    );
}

#[tokio::test]
async fn index_is_served_at_the_root_with_a_csp_and_revalidation() {
    let app = router(Settings::default());
    let (s, h, body) = get(&app, "/", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    assert!(
        h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .starts_with("default-src 'self'")
    );
    assert!(String::from_utf8_lossy(&body).contains("/console/app.js"));
    let etag = h[header::ETAG].to_str().expect("ascii").to_string();
    let (s, _, body) = get(&app, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
}

#[tokio::test]
async fn assets_are_gzipped_only_for_clients_that_accept_it() {
    let app = router(Settings::default());
    let uri = "/console/vendor/maplibre-gl.mjs";
    let (s, h, plain) = get(&app, uri, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.get(header::CONTENT_ENCODING).is_none());
    let (s, h, gz) = get(&app, uri, &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_ENCODING], "gzip");
    assert!(
        gz.len() < plain.len() / 2,
        "{} vs {}",
        gz.len(),
        plain.len()
    );
    let (_, h, _) = get(&app, uri, &[("accept-encoding", "gzip;q=0")]).await;
    assert!(h.get(header::CONTENT_ENCODING).is_none());
    let (s, _, _) = get(&app, "/console/nope.js", &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn config_says_which_base_map_and_pmtiles_are_served_by_range() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("map.pmtiles");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    std::fs::write(&file, &bytes).expect("write");
    let app = router(Settings {
        pmtiles: Some(file),
        ..Settings::default()
    });
    let (_, _, body) = get(&app, "/console/config.json", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["pmtiles"], PMTILES_URL);
    assert!(v["tiles"].is_null());

    let (s, h, body) = get(&app, PMTILES_URL, &[("range", "bytes=10-19")]).await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h[header::CONTENT_RANGE], "bytes 10-19/1000");
    assert_eq!(body, &bytes[10..20]);
    let (s, _, body) = get(&app, PMTILES_URL, &[("range", "bytes=-5")]).await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[995..]);
    let (s, h, _) = get(&app, PMTILES_URL, &[("range", "bytes=2000-")]).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h[header::CONTENT_RANGE], "bytes */1000");
    let (s, h, body) = get(&app, PMTILES_URL, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    assert_eq!(body.len(), 1000);

    let none = router(Settings::default());
    let (s, _, _) = get(&none, PMTILES_URL, &[("range", "bytes=0-9")]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A large range is streamed in chunks, not read into memory whole: the first piece of the
/// body is at most one chunk (reading the whole range first, 40 unauthenticated requests of
/// 16 MiB held 680 MB).
#[tokio::test]
async fn a_large_range_is_streamed_not_buffered() {
    use futures::StreamExt as _;
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("big.pmtiles");
    let f = std::fs::File::create(&file).expect("create");
    f.set_len(20 * 1024 * 1024).expect("sparse file");
    let app = router(Settings {
        pmtiles: Some(file),
        ..Settings::default()
    });
    let req = axum::http::Request::builder()
        .uri(PMTILES_URL)
        .header("range", "bytes=0-16777215")
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], "16777216");
    let mut stream = resp.into_body().into_data_stream();
    let first = stream.next().await.expect("a first piece").expect("data");
    assert!(
        first.len() <= crate::range::CHUNK,
        "first piece of {} bytes: the range was buffered",
        first.len()
    );
    let mut total = first.len();
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("data");
        assert!(piece.len() <= crate::range::CHUNK);
        total += piece.len();
    }
    assert_eq!(total, 16 * 1024 * 1024);
}

#[test]
fn range_headers_parse_by_rfc_9110() {
    assert_eq!(parse(None, 100), Range::Full);
    assert_eq!(parse(Some("items=0-5"), 100), Range::Full);
    assert_eq!(
        parse(Some("bytes=0-0"), 100),
        Range::Part { start: 0, end: 0 }
    );
    assert_eq!(
        parse(Some("bytes=90-200"), 100),
        Range::Part { start: 90, end: 99 }
    );
    assert_eq!(
        parse(Some("bytes=50-"), 100),
        Range::Part { start: 50, end: 99 }
    );
    assert_eq!(
        parse(Some("bytes=-500"), 100),
        Range::Part { start: 0, end: 99 }
    );
    assert_eq!(parse(Some("bytes=5-4"), 100), Range::Unsatisfiable);
    assert_eq!(parse(Some("bytes=100-"), 100), Range::Unsatisfiable);
    assert_eq!(parse(Some("bytes=-0"), 100), Range::Unsatisfiable);
    assert_eq!(parse(Some("bytes=0-1,5-6"), 100), Range::Unsatisfiable);
    assert_eq!(parse(Some("bytes=x-1"), 100), Range::Unsatisfiable);
}

#[test]
fn settings_are_checked() {
    let ok = Settings {
        tiles: Some("https://{s}.tile.example.org/{z}/{x}/{y}.png".into()),
        ..Settings::default()
    };
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(
        ok.tile_origin().as_deref(),
        Some("https://*.tile.example.org")
    );
    let bad = Settings {
        tiles: Some("https://t.example.org/{z}/{x}.png".into()),
        ..Settings::default()
    };
    assert_eq!(bad.validate().map_err(|e| e.field), Err("tiles"));
    let missing = Settings {
        pmtiles: Some("/nonexistent/x.pmtiles".into()),
        ..Settings::default()
    };
    assert_eq!(missing.validate().map_err(|e| e.field), Err("pmtiles"));
}

/// The console's pure helpers (`web/test/*.test.mjs`, run by `node --test`): a suppressed
/// people count is printed "< 10", pseudonyms become chips. Skipped without Node.js,
/// unless `BEFFROI_REQUIRE_SERVICES=1`.
#[test]
fn console_helpers_pass_their_node_tests() {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let run = std::process::Command::new("node")
        .arg("--test")
        .arg(web.join("test/privacy.test.mjs"))
        .output();
    match run {
        Ok(out) => assert!(
            out.status.success(),
            "node --test failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(
                std::env::var_os("BEFFROI_REQUIRE_SERVICES").is_none(),
                "node: {e}"
            );
            eprintln!("SKIPPED: node not found ({e})");
        }
    }
}

#[test]
fn the_console_embeds_the_privacy_helpers() {
    for f in ["privacy.js", "views/unmask.js"] {
        assert!(
            ASSETS.iter().any(|a| a.path.ends_with(f)),
            "{f} is not embedded"
        );
    }
}
