//! Every read of incidents by a handler goes through [`Incidents`]: the store reader bound to
//! the caller's [`Visibility`], which the guard computed once for the request
//! ([`crate::Caller::incidents`]). Every store query made here carries the visibility (a page
//! is full, and only of what the caller may see); reads by id count the ids left out, so that
//! a nested list (a unit's missions, a crisis' incidents, its log and report, a live event)
//! can say "n hidden" without naming them.
//!
//! The module is the only one of the crate that calls the incident reads of
//! [`StoreReader`]; `tests/access_walk.rs` fails when another one does (the guard's lookup of
//! the object named by the path excepted).

use std::collections::HashSet;
use std::sync::Arc;

use beffroi_core::{Incident, IncidentId, LogEntry, Timestamp};
use beffroi_engine::StoreReader;
use beffroi_engine::store::{HandoverEntry, IncidentQuery, StoreError};

use crate::access::Visibility;

/// The incidents a caller may see.
#[derive(Clone)]
pub struct Incidents {
    reader: Arc<dyn StoreReader>,
    visible: Arc<Visibility>,
}

/// What a nested list may show: the visible incidents, and how many of the others there are
/// (out of the caller's sight, or no longer stored).
#[derive(Clone, Debug, Default)]
pub struct Nested {
    pub visible: Vec<Incident>,
    pub hidden: usize,
}

impl Nested {
    /// The ids of the visible incidents.
    pub fn ids(&self) -> HashSet<IncidentId> {
        self.visible.iter().map(|i| i.id).collect()
    }
}

impl Incidents {
    pub fn new(reader: Arc<dyn StoreReader>, visible: Arc<Visibility>) -> Self {
        Incidents { reader, visible }
    }

    /// Every incident of the territory: for what only a territory-wide grant reaches (the
    /// alarm-health gauges of `/metrics`).
    pub fn territory(reader: Arc<dyn StoreReader>) -> Self {
        Incidents::new(reader, Arc::new(Visibility::everything()))
    }

    pub fn visibility(&self) -> &Visibility {
        &self.visible
    }

    /// A listing: the caller's visibility is part of the query (applied before `limit`).
    pub fn list(&self, mut q: IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        q.visible = (*self.visible).clone();
        self.reader.incidents(&q)
    }

    /// The incidents with these ids that the caller may see (in id order), and how many of
    /// the ids are not shown.
    pub fn nested(&self, ids: &[IncidentId]) -> Result<Nested, StoreError> {
        let mut unique: Vec<IncidentId> = ids.to_vec();
        unique.sort_unstable_by_key(|i| i.0);
        unique.dedup();
        if unique.is_empty() {
            return Ok(Nested::default());
        }
        // The visibility is part of the store's query.
        let visible = self.reader.incidents_by_id(&unique, &self.visible)?;
        Ok(Nested {
            hidden: unique.len() - visible.len(),
            visible,
        })
    }

    /// One incident, `None` when it does not exist or the caller may not see it.
    pub fn one(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        Ok(self.nested(&[id])?.visible.into_iter().next())
    }

    /// The pseudonyms a visible incident carries (what may be unmasked through it).
    pub fn carried(&self, i: &Incident) -> Result<Vec<String>, StoreError> {
        if !self.visible.sees_incident(i) {
            return Ok(Vec::new());
        }
        self.reader.carried(i.id)
    }

    /// Whether the incident, if the caller may see it, carries `pseudonym`: recorded from
    /// the reading that raised it (its title, evidence and log never count).
    pub fn carries(&self, id: IncidentId, pseudonym: &str) -> Result<bool, StoreError> {
        if self.one(id)?.is_none() {
            return Ok(false);
        }
        self.reader.carries(id, pseudonym)
    }

    /// One incident with its log, `None` when it does not exist or the caller may not see it.
    pub fn with_log(
        &self,
        id: IncidentId,
    ) -> Result<Option<(Incident, Vec<LogEntry>)>, StoreError> {
        self.reader.incident_with_log(id, &self.visible)
    }

    /// Log lines of the visible incidents written since `since` (the newest `limit`, oldest
    /// first); the visibility is part of the query.
    pub fn handover_log(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<HandoverEntry>, StoreError> {
        self.reader.log_since(since, limit, &self.visible)
    }
}

/// A live stream's memory of which incidents its caller may see (an incident's commune and
/// category never change): each id is read from the store once, when a unit or a crisis
/// names it; incident events teach it for free.
pub struct SeenCache {
    incidents: Incidents,
    known: std::collections::HashMap<IncidentId, bool>,
}

/// Most ids a stream remembers before it starts over.
const MAX_KNOWN: usize = 100_000;

impl SeenCache {
    pub fn new(incidents: Incidents) -> Self {
        SeenCache {
            incidents,
            known: std::collections::HashMap::new(),
        }
    }

    /// Remembers whether the caller may see this incident.
    pub fn learn(&mut self, i: &Incident) {
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        let sees = self.incidents.visibility().sees_incident(i);
        self.known.insert(i.id, sees);
    }

    /// Reads the ids not yet known. What cannot be read is not shown.
    pub async fn resolve(&mut self, ids: &[IncidentId]) {
        if self.incidents.visibility().is_everything() {
            return;
        }
        let missing: Vec<IncidentId> = ids
            .iter()
            .copied()
            .filter(|i| !self.known.contains_key(i))
            .collect();
        if missing.is_empty() {
            return;
        }
        if self.known.len() + missing.len() > MAX_KNOWN {
            self.known.clear();
        }
        let incidents = self.incidents.clone();
        let ask = missing.clone();
        let found = tokio::task::spawn_blocking(move || incidents.nested(&ask)).await;
        let visible = match found {
            Ok(Ok(n)) => n.ids(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "live stream: incident visibility not read");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "live stream: incident visibility not read");
                return;
            }
        };
        for id in missing {
            self.known.insert(id, visible.contains(&id));
        }
    }

    /// Whether the caller may see this incident (after [`SeenCache::resolve`]).
    pub fn sees(&self, id: IncidentId) -> bool {
        self.incidents.visibility().is_everything() || self.known.get(&id) == Some(&true)
    }
}
