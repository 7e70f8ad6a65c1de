//! [`PgReader`]: the read side, for the API.

use std::sync::{Arc, PoisonError, RwLock};

use beffroi_core::{DeviceIdx, Incident, IncidentId, LogEntry, Territory, Timestamp};
use beffroi_engine::store::{IncidentQuery, StoredObservation, StoredRejection};
use beffroi_engine::{IncidentReads, ObservationReads, RecordReads, StoreError};

use crate::error::Skipped;
use crate::pool::Pool;
use crate::queries;

/// Reads through a small pool of read-only sessions. Safe to share between threads
/// (`Arc<PgReader>`); every call blocks (use `spawn_blocking` from async code) and
/// waits for a free connection when all are busy. Under MVCC, readers never block the
/// writer and see every committed batch.
///
/// A listing `limit` of 0 means [`DEFAULT_LIMIT`](crate::DEFAULT_LIMIT).
pub struct PgReader {
    pool: Pool,
    territory: RwLock<Arc<Territory>>,
    skipped: Skipped,
}

impl PgReader {
    pub(crate) fn new(pool: Pool, territory: Arc<Territory>, skipped: Skipped) -> Self {
        PgReader {
            pool,
            territory: RwLock::new(territory),
            skipped,
        }
    }

    /// Resolves ids against a new territory from now on (after a territory reload).
    pub fn set_territory(&self, territory: Arc<Territory>) {
        *self
            .territory
            .write()
            .unwrap_or_else(PoisonError::into_inner) = territory;
    }

    /// Rows left out of listings (by the reader or the writer) since the store was opened,
    /// because they name a device, site, commune or field the territory no longer has, or
    /// are malformed.
    pub fn skipped_rows(&self) -> u64 {
        self.skipped.get()
    }

    fn territory(&self) -> Arc<Territory> {
        self.territory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl IncidentReads for PgReader {
    fn incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        queries::incidents(&mut *self.pool.get()?, &self.territory(), q, &self.skipped)
    }

    fn incident_with_log(
        &self,
        id: IncidentId,
        visible: &beffroi_engine::store::Visibility,
    ) -> Result<Option<(Incident, Vec<LogEntry>)>, StoreError> {
        queries::incident_with_log(&mut *self.pool.get()?, &self.territory(), id, visible)
    }

    fn incidents_by_id(
        &self,
        ids: &[IncidentId],
        visible: &beffroi_engine::store::Visibility,
    ) -> Result<Vec<Incident>, StoreError> {
        let t = self.territory();
        crate::operations::incidents_by_id(&mut *self.pool.get()?, &t, ids, visible, &self.skipped)
    }

    fn log_since(
        &self,
        since: Timestamp,
        limit: usize,
        visible: &beffroi_engine::store::Visibility,
    ) -> Result<Vec<beffroi_engine::store::HandoverEntry>, StoreError> {
        let t = self.territory();
        crate::operations::log_since(
            &mut *self.pool.get()?,
            &t,
            since,
            limit,
            visible,
            &self.skipped,
        )
    }
}

impl ObservationReads for PgReader {
    fn observations(
        &self,
        device: DeviceIdx,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let t = self.territory();
        queries::observations(
            &mut *self.pool.get()?,
            &t,
            device,
            since,
            Timestamp(i64::MAX),
            limit,
            &self.skipped,
        )
    }

    fn observations_between(
        &self,
        device: DeviceIdx,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let t = self.territory();
        queries::observations(
            &mut *self.pool.get()?,
            &t,
            device,
            from,
            until,
            limit,
            &self.skipped,
        )
    }

    fn observation_count(&self) -> Result<u64, StoreError> {
        queries::observation_count(&mut *self.pool.get()?)
    }

    fn rejections(&self, limit: usize) -> Result<Vec<StoredRejection>, StoreError> {
        queries::rejections(&mut *self.pool.get()?, limit, &self.skipped)
    }
}

impl RecordReads for PgReader {
    fn quarantine_log(
        &self,
        limit: usize,
    ) -> Result<Vec<beffroi_engine::sentinel::QuarantineAct>, StoreError> {
        queries::quarantine_log(&mut *self.pool.get()?, &self.territory(), limit)
    }

    fn holds(
        &self,
        now: Timestamp,
        all: bool,
    ) -> Result<Vec<beffroi_engine::store::LegalHold>, StoreError> {
        crate::retention::holds(&mut *self.pool.get()?, now, all)
    }

    fn retention_status(
        &self,
    ) -> Result<
        (
            Vec<beffroi_engine::store::StoreRows>,
            Option<beffroi_engine::store::PurgeRun>,
        ),
        StoreError,
    > {
        crate::retention::retention_status(&mut *self.pool.get()?, &self.territory())
    }

    fn subject_data(
        &self,
        pseudonyms: &[String],
        limit: usize,
    ) -> Result<beffroi_engine::store::SubjectData, StoreError> {
        crate::retention::subject_data(&mut *self.pool.get()?, pseudonyms, limit)
    }

    fn carried(&self, id: IncidentId) -> Result<Vec<String>, StoreError> {
        queries::carried(&mut *self.pool.get()?, id)
    }

    fn carries(&self, id: IncidentId, pseudonym: &str) -> Result<bool, StoreError> {
        queries::carries(&mut *self.pool.get()?, id, pseudonym)
    }

    fn identity(
        &self,
        pseudonym: &str,
    ) -> Result<Option<beffroi_engine::store::IdentityRow>, StoreError> {
        queries::identity(&mut *self.pool.get()?, pseudonym)
    }
}
