//! The store's backend, chosen by the configuration: the embedded SQLite file by default,
//! PostgreSQL with `[cluster] database`. Both are opened off the runtime (their clients
//! block) and handed to the engine and the API as the store's ports.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use beffroi_core::Territory;
use beffroi_engine::metrics::Metrics;
use beffroi_engine::{Store, StoreReader};

use crate::config::StoreLocation;

/// The writer, the reader, how many sealed identities of destroyed epochs were deleted,
/// and, for a store shared by a cluster's nodes, how a node that takes over fences out the
/// writer of the node it replaces.
pub type Opened = (
    Box<dyn Store>,
    Arc<dyn StoreReader>,
    usize,
    Option<TakeFence>,
);

/// Fences out every earlier writer of the store and returns the epoch taken (blocking).
pub type TakeFence = Box<dyn FnOnce() -> Result<i64> + Send>;

/// Opens the store where `location` says (`db`: the SQLite file of the data folder),
/// forgetting the sealed values of every epoch not in `alive`. A PostgreSQL store, which
/// several servers may share, first compares `vault` (the key checks of this server's
/// pseudonymisation vault) with what the others recorded, and refuses another vault.
pub async fn open(
    location: &StoreLocation,
    db: &Path,
    territory: &Arc<Territory>,
    alive: &[u32],
    vault: Vec<(u32, String)>,
    metrics: &Metrics,
) -> Result<Opened> {
    let t = Arc::clone(territory);
    let alive = alive.to_vec();
    match location {
        StoreLocation::Sqlite => {
            crate::files::private_db(db)?;
            let path = db.to_path_buf();
            let wal_metrics = metrics.wal.clone();
            tokio::task::spawn_blocking(move || {
                let (mut store, reader) = beffroi_store::open(&path, t)?;
                store.set_wal_metrics(wal_metrics);
                // The sealed values of destroyed epochs can no longer be opened: gone.
                let forgotten = store.forget_identities_except(&alive)?;
                Ok::<Opened, beffroi_engine::StoreError>((
                    Box::new(store),
                    Arc::new(reader),
                    forgotten,
                    None,
                ))
            })
            .await?
            .with_context(|| format!("cannot open the store {}", db.display()))
        }
        StoreLocation::Postgres(url) => open_postgres(url.as_deref(), t, alive, vault).await,
    }
}

/// The PostgreSQL URL `[cluster] database` gives, or else `BEFFROI_DATABASE_URL`.
pub fn database_url(url: Option<&str>) -> Result<String> {
    match url {
        Some(u) => Ok(u.to_string()),
        None => std::env::var(crate::config::DATABASE_URL_ENV).with_context(|| {
            format!(
                "[cluster] gives no database: set {} to a PostgreSQL URL",
                crate::config::DATABASE_URL_ENV
            )
        }),
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    url: Option<&str>,
    t: Arc<Territory>,
    alive: Vec<u32>,
    vault: Vec<(u32, String)>,
) -> Result<Opened> {
    use beffroi_store_pg::vault::VaultCheck;
    let url = database_url(url)?;
    let shown = redact_url(&url);
    // One trip to the blocking pool: open, compare the vault, and only when it agrees
    // forget the identities of destroyed epochs.
    let opened = tokio::task::spawn_blocking(move || {
        let (mut store, reader) = beffroi_store_pg::open(&url, t)?;
        let checked = store.check_vault(&vault)?;
        if checked != VaultCheck::Agrees {
            return Ok(Err(checked));
        }
        let forgotten = store.forget_identities_except(&alive)?;
        Ok::<_, beffroi_engine::StoreError>(Ok((store, reader, forgotten)))
    })
    .await?
    .with_context(|| format!("cannot open the PostgreSQL store {shown}"))?;
    let (store, reader, forgotten) = match opened {
        Ok(opened) => opened,
        Err(VaultCheck::Differs { epoch }) => anyhow::bail!(
            "this server's pseudonymisation vault is not the one the other servers of {shown} \
             use (epoch {epoch} has another key): the same person would get other pseudonyms. \
             Give every server the same vault ([privacy] keys_dir on shared storage, or a copy)"
        ),
        Err(VaultCheck::Behind { recorded, current }) => anyhow::bail!(
            "this server's pseudonymisation vault stops at epoch {current} while another server \
             of {shown} has epoch {recorded}: copy the vault again after a key rotation"
        ),
        Err(VaultCheck::Agrees) => unreachable!("an agreeing vault opens the store"),
    };
    let fence = store.fence();
    let take: TakeFence = Box::new(move || fence.take().context("cannot take the store's fence"));
    Ok((Box::new(store), Arc::new(reader), forgotten, Some(take)))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(
    _: Option<&str>,
    _: Arc<Territory>,
    _: Vec<u32>,
    _: Vec<(u32, String)>,
) -> Result<Opened> {
    anyhow::bail!(
        "this binary was built without the `postgres` feature: [cluster] database needs it"
    )
}

/// The legal holds in force at `now` in a PostgreSQL store whose incident's window ends at
/// or after `created_at` (an epoch made after that never sealed its values): `(incident,
/// until)`. Read through the store's ports, as the server reads them.
#[cfg(feature = "postgres")]
pub fn holds_covering_postgres(
    url: Option<&str>,
    territory: Arc<Territory>,
    created_at: Option<i64>,
    now: i64,
) -> Result<Vec<(i64, i64)>> {
    use beffroi_engine::store::prelude::*;
    let url = database_url(url)?;
    let shown = redact_url(&url);
    let (_, reader) = beffroi_store_pg::open(&url, territory)
        .with_context(|| format!("cannot open the PostgreSQL store {shown}"))?;
    let now = beffroi_core::Timestamp(now);
    let holds = reader
        .holds(now, false)
        .context("cannot read the legal holds")?;
    let ids: Vec<beffroi_core::IncidentId> = holds.iter().map(|h| h.incident).collect();
    let incidents = reader
        .incidents_by_id(&ids, &beffroi_engine::store::Visibility::everything())
        .context("cannot read the held incidents")?;
    let mut out = Vec::new();
    for h in holds.iter().filter(|h| h.holds_at(now)) {
        // A held incident the store no longer has: its window is open, as for the SQLite
        // store's query (`coalesce(closed_at, now)`).
        let window_end = incidents
            .iter()
            .find(|i| i.id == h.incident)
            .and_then(|i| i.closed_at)
            .unwrap_or(now);
        if created_at.is_none_or(|c| c <= window_end.0) {
            out.push((h.incident.0 as i64, h.until.0));
        }
    }
    Ok(out)
}

#[cfg(not(feature = "postgres"))]
pub fn holds_covering_postgres(
    _: Option<&str>,
    _: Arc<Territory>,
    _: Option<i64>,
    _: i64,
) -> Result<Vec<(i64, i64)>> {
    anyhow::bail!(
        "this binary was built without the `postgres` feature: [cluster] database needs it"
    )
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            redact_url("postgres://beffroi:s3cret@db.local:5432/beffroi"),
            "postgres://beffroi@db.local:5432/beffroi"
        );
        assert_eq!(
            redact_url("postgres://beffroi@db.local/beffroi"),
            "postgres://beffroi@db.local/beffroi"
        );
        assert_eq!(redact_url("postgresql://h/db"), "postgresql://h/db");
    }
}
