//! Serving a local file with HTTP range requests (RFC 9110 §14), for PMTiles archives:
//! the client reads the header, then directories and tiles, each with one `Range`.
//!
//! The range is streamed from the file in [`CHUNK`]-sized reads, never read into memory
//! whole: a request holds at most one chunk however large its range, so many concurrent
//! range requests (the route needs no login) hold little memory.

use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Largest range answered at once; PMTiles requests are a few hundred KiB at most.
const MAX_RANGE: u64 = 16 * 1024 * 1024;

/// Bytes read from the file at a time, per request.
pub const CHUNK: usize = 64 * 1024;

/// A byte range of a file of known length, inclusive bounds.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// No `Range` header (or one we ignore): the whole file.
    Full,
    Part {
        start: u64,
        end: u64,
    },
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

/// Parses one `bytes=` range against a file of `len` bytes. Several ranges in one header
/// are not supported and answered as unsatisfiable rather than with the whole file.
pub fn parse(value: Option<&str>, len: u64) -> Range {
    let Some(v) = value else { return Range::Full };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        // Another unit: ignore the header (RFC 9110 §14.2).
        return Range::Full;
    };
    if spec.contains(',') || len == 0 {
        return Range::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = if a.is_empty() {
        // Suffix: the last N bytes.
        b.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (len.saturating_sub(n), len - 1))
    } else {
        a.parse::<u64>().ok().and_then(|start| {
            let end = if b.is_empty() {
                Some(len - 1)
            } else {
                b.parse::<u64>().ok().map(|e| e.min(len - 1))
            };
            end.filter(|e| start <= *e && start < len)
                .map(|end| (start, end))
        })
    };
    match parsed {
        Some((start, end)) => Range::Part { start, end },
        None => Range::Unsatisfiable,
    }
}

pub async fn serve_file(path: &Path, headers: &HeaderMap, content_type: &'static str) -> Response {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the PMTiles file");
            return (StatusCode::NOT_FOUND, "base map file unavailable\n").into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let range = parse(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let (start, end, status) = match range {
        Range::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
        Range::Full if len > MAX_RANGE => {
            // A whole archive can be gigabytes: clients must ask for ranges.
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                h,
                "ask for byte ranges\n",
            )
                .into_response();
        }
        Range::Full => (0, len.saturating_sub(1), StatusCode::OK),
        Range::Part { start, end } => (
            start,
            end.min(start + MAX_RANGE - 1),
            StatusCode::PARTIAL_CONTENT,
        ),
    };
    let n = if len == 0 { 0 } else { end - start + 1 };
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    let body = Body::from_stream(ReaderStream::with_capacity(file.take(n), CHUNK));
    (status, h, body).into_response()
}
