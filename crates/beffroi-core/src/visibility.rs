//! Which incidents a reader may see: one value, evaluated in memory and pushed into the
//! store's queries. Pure.

use crate::{CommuneIdx, Incident};

/// The category of the incidents raised on the devices themselves (anomaly detection):
/// seen only with the `incident.cyber` permission.
pub const CYBER: &str = "cyber";

/// Which incidents a reader may see: THE visibility rule, kept as data so that the same rule
/// is evaluated in memory ([`Visibility::sees`], for nested objects and live events) and
/// pushed into the store's queries (`IncidentQuery::visible`, `StoreReader::log_since` in the engine,
/// so that a page holds what the reader may see and nothing else).
///
/// An incident is visible when its commune is among `communes` and, when its category is
/// [`CYBER`], among `cyber` too. `None` stands for every commune. The API computes one per
/// request from the caller's grants (`beffroi_access::Principal::visibility`); the
/// default sees everything (the engine's own reads).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visibility {
    /// Communes whose incidents are visible, sorted; `None`: every commune.
    communes: Option<Vec<CommuneIdx>>,
    /// Communes whose `cyber` incidents are visible, sorted; `None`: every commune.
    cyber: Option<Vec<CommuneIdx>>,
}

impl Visibility {
    /// `None`: every commune; `Some(list)`: those communes only (an empty list: none).
    pub fn new(communes: Option<Vec<CommuneIdx>>, cyber: Option<Vec<CommuneIdx>>) -> Self {
        let norm = |l: Option<Vec<CommuneIdx>>| {
            l.map(|mut l| {
                l.sort_unstable();
                l.dedup();
                l
            })
        };
        Visibility {
            communes: norm(communes),
            cyber: norm(cyber),
        }
    }

    /// Every incident.
    pub fn everything() -> Self {
        Visibility::default()
    }

    /// No incident at all.
    pub fn nothing() -> Self {
        Visibility::new(Some(Vec::new()), Some(Vec::new()))
    }

    /// Sees every incident of every commune and category.
    pub fn is_everything(&self) -> bool {
        self.communes.is_none() && self.cyber.is_none()
    }

    /// Communes whose incidents are visible (`None`: every commune).
    pub fn communes(&self) -> Option<&[CommuneIdx]> {
        self.communes.as_deref()
    }

    /// Communes whose `cyber` incidents are visible (`None`: every commune).
    pub fn cyber_communes(&self) -> Option<&[CommuneIdx]> {
        self.cyber.as_deref()
    }

    /// THE rule: may an incident of `category` in `commune` be seen.
    pub fn sees(&self, commune: CommuneIdx, category: &str) -> bool {
        let holds = |l: &Option<Vec<CommuneIdx>>| {
            l.as_ref().is_none_or(|l| l.binary_search(&commune).is_ok())
        };
        holds(&self.communes) && (category != CYBER || holds(&self.cyber))
    }

    /// [`Visibility::sees`] for an incident.
    pub fn sees_incident(&self, i: &Incident) -> bool {
        self.sees(i.commune, &i.category)
    }
}
