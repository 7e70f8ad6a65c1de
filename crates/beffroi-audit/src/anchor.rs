//! The anchor: what the data folder knows of its audit log — the log's identity and the
//! seq and hash of the last entry committed — in a small file of its own, replaced
//! atomically by the writer after every commit.
//!
//! The log can sit on another disk than the data folder (`[audit] path`); the anchor
//! stays with the data. A log deleted and recreated (another log id), cut (it ends before
//! the anchored seq, even exactly at a checkpoint) or rewritten (another hash at the
//! anchored seq) no longer matches its anchor: the server refuses to start and
//! `beffroi audit verify` fails. The anchor is not signed: whoever can rewrite both the
//! log and the anchor is caught only by checkpoints exported off the host.

use std::io::Write;
use std::path::Path;

use crate::AuditError;

/// The anchor's file name in the data folder.
pub const ANCHOR_FILE: &str = "audit-anchor";

const MAGIC: &str = "beffroi-audit-anchor v1";

/// The head of the log as the data folder last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The log's identity: random, made when the log file was created (hex).
    pub log_id: String,
    /// The last committed entry (0: the log was empty).
    pub seq: u64,
    /// That entry's hash (hex; 64 zeros for seq 0).
    pub hash: String,
    /// When the anchor was written (wall clock, ms).
    pub at_ms: i64,
}

impl Anchor {
    /// The file's text: a first line naming the format, then `key value` lines.
    pub fn to_text(&self) -> String {
        format!(
            "{MAGIC}\nlog_id {}\nseq {}\nhash {}\nat_ms {}\n",
            self.log_id, self.seq, self.hash, self.at_ms
        )
    }

    /// Parses [`Anchor::to_text`]'s format; `None` when anything is off.
    pub fn parse(text: &str) -> Option<Anchor> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut field = |name: &str| -> Option<String> {
            let (k, v) = lines.next()?.split_once(' ')?;
            (k == name).then(|| v.to_string())
        };
        let log_id = field("log_id")?;
        let seq = field("seq")?.parse().ok()?;
        let hash = field("hash")?;
        let at_ms = field("at_ms")?.parse().ok()?;
        let hex_ok = |s: &str, len: usize| s.len() == len && hex::decode(s).is_ok();
        if !hex_ok(&log_id, 32) || !hex_ok(&hash, 64) {
            return None;
        }
        Some(Anchor {
            log_id,
            seq,
            hash,
            at_ms,
        })
    }
}

/// Reads the anchor at `path`: `None` when there is no file; an error when it cannot be
/// read or is not an anchor.
pub fn read(path: &Path) -> Result<Option<Anchor>, AuditError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Anchor::parse(&text)
            .map(Some)
            .ok_or_else(|| AuditError::Damaged {
                path: path.to_path_buf(),
                message: "not an audit anchor".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Replaces the anchor at `path` atomically: a temporary file beside it, synced, renamed
/// over it, and the folder synced. A crash leaves the old anchor or the new one.
pub fn write(path: &Path, anchor: &Anchor) -> Result<(), AuditError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| AuditError::Io { path: p, source: e }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(anchor.to_text().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> Anchor {
        Anchor {
            log_id: "0123456789abcdef0123456789abcdef".into(),
            seq: 42,
            hash: "ab".repeat(32),
            at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn an_anchor_is_written_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(ANCHOR_FILE);
        assert_eq!(read(&path).expect("absent"), None);
        write(&path, &anchor()).expect("write");
        assert_eq!(read(&path).expect("read"), Some(anchor()));
        let mut next = anchor();
        next.seq = 43;
        write(&path, &next).expect("replace");
        assert_eq!(read(&path).expect("read"), Some(next));
    }

    #[test]
    fn a_damaged_anchor_is_an_error_not_an_absent_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(ANCHOR_FILE);
        for text in [
            "",
            "beffroi-audit-anchor v1\nlog_id x\n",
            &anchor().to_text().replace("seq 42", "seq -1"),
            &anchor().to_text().replace("hash ab", "hash zz"),
        ] {
            std::fs::write(&path, text).expect("write");
            assert!(read(&path).is_err(), "{text:?}");
        }
    }
}
