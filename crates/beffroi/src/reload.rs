//! Hot reload of the rules and procedures files, and of the units and escalation files: an
//! invalid file keeps what is in force and says why.

use std::path::PathBuf;
use std::sync::Arc;

use beffroi_core::audit::{AuditOutcome, AuditSink};
use beffroi_engine::metrics::ResultLabel;
use beffroi_engine::runner::EngineHandle;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub async fn watch(
    engine: EngineHandle,
    rules: PathBuf,
    procedures: Option<PathBuf>,
    operations: Option<PathBuf>,
    audit: Arc<dyn AuditSink>,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && (ev.kind.is_modify() || ev.kind.is_create())
            {
                // Full channel: a reload is already pending, which is enough.
                let _ = tx.try_send(());
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the rules file; hot reload disabled");
                return;
            }
        };
    // Watch the folders: editors replace files by renaming.
    let ops_files: Vec<PathBuf> = operations
        .iter()
        .flat_map(|d| [d.join("units.toml"), d.join("escalation.toml")])
        .collect();
    let mut dirs: Vec<PathBuf> = [Some(&rules), procedures.as_ref()]
        .into_iter()
        .flatten()
        .chain(&ops_files)
        .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        let d = if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d.clone()
        };
        if let Err(e) = watcher.watch(&d, RecursiveMode::NonRecursive) {
            tracing::error!(error = %e, dir = %d.display(), "cannot watch");
        }
    }
    let snapshot = || {
        (
            std::fs::read(&rules).ok(),
            procedures.as_ref().and_then(|p| std::fs::read(p).ok()),
        )
    };
    let ops_snapshot = || {
        ops_files
            .iter()
            .map(|p| std::fs::read(p).ok())
            .collect::<Vec<_>>()
    };
    let mut last = snapshot();
    let mut last_ops = ops_snapshot();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = rx.recv() => if ev.is_none() { return },
        }
        // Let a burst of events settle.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        while rx.try_recv().is_ok() {}
        let now_ops = ops_snapshot();
        if now_ops != last_ops {
            last_ops = now_ops;
            if let Some(dir) = &operations {
                let files: Vec<PathBuf> = ops_files.clone();
                reload_operations(&engine, dir.clone(), audit.as_ref(), &files).await;
            }
        }
        let now = snapshot();
        if now == last {
            continue;
        }
        last = now;
        // The files as they are read now: what the audit entry names.
        let files: Vec<PathBuf> = std::iter::once(rules.clone())
            .chain(procedures.clone())
            .collect();
        let digests = crate::audit_cmd::digest_files(&files);
        let t = Arc::clone(&engine.territory);
        let (r, p) = (rules.clone(), procedures.clone());
        let parsed =
            tokio::task::spawn_blocking(move || crate::setup::reload(&t, &r, p.as_deref())).await;
        match parsed {
            Ok(Ok((set, procs))) => {
                let n = set.len();
                if engine.replace_rules(Arc::new(set), procs).await.is_err() {
                    return;
                }
                engine
                    .metrics
                    .rule_reloads
                    .get_or_create(&ResultLabel { result: "ok" })
                    .inc();
                tracing::info!(rules = n, file = %rules.display(), "rules reloaded");
                crate::audit_cmd::record_system(
                    audit.as_ref(),
                    "rules.reload",
                    Some(rules.display().to_string()),
                    AuditOutcome::Ok,
                    serde_json::json!({ "files": digests, "rules": n }),
                );
            }
            Ok(Err(errors)) => {
                engine
                    .metrics
                    .rule_reloads
                    .get_or_create(&ResultLabel { result: "invalid" })
                    .inc();
                tracing::error!(
                    errors = errors.len(),
                    "rules file invalid; keeping the rules in force:\n{errors}"
                );
                crate::audit_cmd::record_system(
                    audit.as_ref(),
                    "rules.reload",
                    Some(rules.display().to_string()),
                    AuditOutcome::Failed,
                    serde_json::json!({ "files": digests, "errors": errors.len() }),
                );
            }
            Err(e) => tracing::error!(error = %e, "reload task failed"),
        }
    }
}

async fn reload_operations(
    engine: &EngineHandle,
    dir: PathBuf,
    audit: &dyn AuditSink,
    files: &[PathBuf],
) {
    let digests = crate::audit_cmd::digest_files(files);
    let target = Some(dir.display().to_string());
    let t = Arc::clone(&engine.territory);
    let parsed =
        tokio::task::spawn_blocking(move || crate::setup::reload_operations(&t, &dir)).await;
    match parsed {
        Ok(Ok(ops)) => {
            let n = ops.units.len();
            if engine
                .replace_operations(ops.units, ops.escalation)
                .await
                .is_ok()
            {
                tracing::info!(units = n, "units and escalation delays reloaded");
                crate::audit_cmd::record_system(
                    audit,
                    "operations.reload",
                    target,
                    AuditOutcome::Ok,
                    serde_json::json!({ "files": digests, "units": n }),
                );
            }
        }
        Ok(Err(errors)) => {
            tracing::error!(
                errors = errors.len(),
                "units or escalation file invalid; keeping those in force:\n{errors}"
            );
            crate::audit_cmd::record_system(
                audit,
                "operations.reload",
                target,
                AuditOutcome::Failed,
                serde_json::json!({ "files": digests, "errors": errors.len() }),
            );
        }
        Err(e) => tracing::error!(error = %e, "reload task failed"),
    }
}
