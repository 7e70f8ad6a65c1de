//! Access control: roles, the permission matrix, scopes, the caller of a request and the
//! users file that declares the callers.
//!
//! A caller (a console user or an API token) holds one or more [`Grant`]s, each a [`Role`]
//! scoped to a list of communes or to the whole territory. A permission is held *for a
//! scope*: the union of the scopes of the grants whose role carries it. The single table
//! [`ROLE_PERMISSIONS`] maps roles to permissions; `docs/security-access.md` prints it.
//!
//! Pure: no I/O, no clock, no key; one crate, used by the API (its route guard asks
//! [`Principal::scope_for`] and [`Scope::sees`] / [`Scope::covers`]) and by the binary (the
//! accounts it builds), so that who may see what is decided in one place.
//!
//! The users file (`users.toml`) is modelled here too, in [`users`]: its accounts and API
//! tokens with their grants and scopes, its parsing and validation against the territory's
//! communes (every error with file, line and field) and the rendering of the entries
//! `beffroi users` appends. The caller reads the file and passes its text; what needs a key
//! (opening or sealing a TOTP secret) is a function the caller passes in, and password
//! hashing stays with the caller (the API crate).
//!
//! Which *incidents* a caller may see is one value, [`Visibility`], computed once per request
//! by [`Principal::visibility`]: the communes of its `incident.read` grants and, for the
//! category `cyber`, those where it also holds `incident.cyber`. The same value is evaluated
//! in memory (nested incidents, live events) and pushed into the store's queries (lists).

use beffroi_core::CommuneIdx;
pub use beffroi_core::visibility::{CYBER, Visibility};

pub mod users;

/// What may be done. Names are stable (the console hides actions by them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Read the territory's structure: communes, sites, kinds, rules.
    TerritoryRead,
    /// Read incidents (and the live stream) of the caller's communes.
    IncidentRead,
    /// Acknowledge, start, resolve, close, reopen, comment, complete a step.
    IncidentAct,
    /// Assign an incident to a unit.
    IncidentAssign,
    /// See (and, with `incident.act`, handle) incidents of category `cyber`.
    IncidentCyber,
    /// Read devices, their state and recent readings.
    DeviceRead,
    /// Quarantine and release a device (`POST /devices/{id}/quarantine`, `/release`).
    DeviceQuarantine,
    /// Push observations through the HTTP ingest, read the rejection log.
    ObservationWrite,
    /// Read the ingest rejections.
    RejectionRead,
    /// Read units.
    UnitRead,
    /// Change a unit's status.
    UnitStatus,
    /// Read crises.
    CrisisRead,
    /// Open, log, escalate, staff and close crises.
    CrisisManage,
    /// Read declared events.
    EventRead,
    /// Declare and cancel events.
    EventManage,
    /// The command post's key figures.
    Supervise,
    /// The shift handover of the caller's communes (open incidents, what happened since the
    /// start of the shift): every desk that hands a shift over.
    Handover,
    /// Read the audit log.
    AuditRead,
    /// Read personal data in clear.
    PersonalRead,
    /// See the value behind a pseudonym of one incident, with a declared purpose and a
    /// justification (`POST /incidents/{id}/unmask`, audited).
    PersonalUnmask,
    /// Manage accounts and API tokens.
    UserManage,
    /// Read the register, retention status, legal holds and the access log.
    PrivacyRead,
    /// Put an incident under legal hold and release it.
    LegalHold,
    /// Answer a person's access and erasure requests.
    SubjectRequest,
    /// Scrape `/metrics` (login results, cyber counts, ingest figures: not for everyone).
    MetricsRead,
}

impl Permission {
    pub const ALL: [Permission; 25] = [
        Permission::TerritoryRead,
        Permission::IncidentRead,
        Permission::IncidentAct,
        Permission::IncidentAssign,
        Permission::IncidentCyber,
        Permission::DeviceRead,
        Permission::DeviceQuarantine,
        Permission::ObservationWrite,
        Permission::RejectionRead,
        Permission::UnitRead,
        Permission::UnitStatus,
        Permission::CrisisRead,
        Permission::CrisisManage,
        Permission::EventRead,
        Permission::EventManage,
        Permission::Supervise,
        Permission::Handover,
        Permission::AuditRead,
        Permission::PersonalRead,
        Permission::PersonalUnmask,
        Permission::UserManage,
        Permission::PrivacyRead,
        Permission::LegalHold,
        Permission::SubjectRequest,
        Permission::MetricsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TerritoryRead => "territory.read",
            Permission::IncidentRead => "incident.read",
            Permission::IncidentAct => "incident.act",
            Permission::IncidentAssign => "incident.assign",
            Permission::IncidentCyber => "incident.cyber",
            Permission::DeviceRead => "device.read",
            Permission::DeviceQuarantine => "device.quarantine",
            Permission::ObservationWrite => "observation.write",
            Permission::RejectionRead => "rejection.read",
            Permission::UnitRead => "unit.read",
            Permission::UnitStatus => "unit.status",
            Permission::CrisisRead => "crisis.read",
            Permission::CrisisManage => "crisis.manage",
            Permission::EventRead => "event.read",
            Permission::EventManage => "event.manage",
            Permission::Supervise => "supervise",
            Permission::Handover => "handover",
            Permission::AuditRead => "audit.read",
            Permission::PersonalRead => "personal.read",
            Permission::PersonalUnmask => "personal.unmask",
            Permission::UserManage => "user.manage",
            Permission::PrivacyRead => "privacy.read",
            Permission::LegalHold => "privacy.hold",
            Permission::SubjectRequest => "privacy.subject",
            Permission::MetricsRead => "metrics.read",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A role, as named in `users.toml` and the token declarations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Operator,
    Supervisor,
    CrisisDirector,
    Technician,
    SecurityAnalyst,
    Dpo,
    Auditor,
    Administrator,
    /// A metrics scraper's token: `/metrics` and nothing else.
    Monitoring,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::Operator,
        Role::Supervisor,
        Role::CrisisDirector,
        Role::Technician,
        Role::SecurityAnalyst,
        Role::Dpo,
        Role::Auditor,
        Role::Administrator,
        Role::Monitoring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::CrisisDirector => "crisis_director",
            Role::Technician => "technician",
            Role::SecurityAnalyst => "security_analyst",
            Role::Dpo => "dpo",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
            Role::Monitoring => "monitoring",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The permissions of this role, from [`ROLE_PERMISSIONS`].
    pub fn permissions(self) -> &'static [Permission] {
        ROLE_PERMISSIONS
            .iter()
            .find(|(r, _)| *r == self)
            .map_or(&[], |(_, p)| p)
    }

    pub fn has(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }
}

use Permission as P;

/// THE permission matrix: the only place that says what a role may do.
pub const ROLE_PERMISSIONS: [(Role, &[Permission]); 9] = [
    (
        Role::Operator,
        &[
            P::TerritoryRead,
            P::IncidentRead,
            P::IncidentAct,
            // Dispatch: the procedures tell the desk to engage a patrol. Within the
            // operator's communes only: the assignment checks the incident and the unit.
            P::IncidentAssign,
            P::DeviceRead,
            P::UnitRead,
            P::CrisisRead,
            P::EventRead,
            P::Handover,
        ],
    ),
    (
        Role::Supervisor,
        &[
            P::TerritoryRead,
            P::IncidentRead,
            P::IncidentAct,
            P::IncidentAssign,
            P::DeviceRead,
            P::UnitRead,
            P::UnitStatus,
            P::CrisisRead,
            P::EventRead,
            P::EventManage,
            P::Supervise,
            P::Handover,
            P::LegalHold,
            P::PersonalUnmask,
        ],
    ),
    (
        Role::CrisisDirector,
        &[
            P::TerritoryRead,
            P::IncidentRead,
            P::IncidentAct,
            P::IncidentAssign,
            P::DeviceRead,
            P::UnitRead,
            P::UnitStatus,
            P::CrisisRead,
            P::CrisisManage,
            P::EventRead,
            P::EventManage,
            P::Supervise,
            P::Handover,
            P::LegalHold,
            P::PersonalUnmask,
        ],
    ),
    (
        Role::Technician,
        &[
            P::TerritoryRead,
            P::IncidentRead,
            P::DeviceRead,
            P::ObservationWrite,
            P::RejectionRead,
        ],
    ),
    (
        Role::SecurityAnalyst,
        &[
            P::TerritoryRead,
            P::IncidentRead,
            P::IncidentAct,
            P::IncidentCyber,
            P::DeviceRead,
            P::DeviceQuarantine,
            P::RejectionRead,
            P::AuditRead,
            P::MetricsRead,
        ],
    ),
    (
        Role::Dpo,
        &[
            P::TerritoryRead,
            P::AuditRead,
            P::PersonalRead,
            P::PrivacyRead,
            P::LegalHold,
            P::SubjectRequest,
            P::PersonalUnmask,
        ],
    ),
    (
        Role::Auditor,
        &[
            P::TerritoryRead,
            P::IncidentRead,
            P::IncidentCyber,
            P::DeviceRead,
            P::RejectionRead,
            P::UnitRead,
            P::CrisisRead,
            P::EventRead,
            P::Supervise,
            P::Handover,
            P::AuditRead,
            P::PrivacyRead,
        ],
    ),
    (
        Role::Administrator,
        &[
            P::TerritoryRead,
            P::IncidentRead,
            P::IncidentAct,
            P::IncidentAssign,
            P::IncidentCyber,
            P::DeviceRead,
            P::DeviceQuarantine,
            P::ObservationWrite,
            P::RejectionRead,
            P::UnitRead,
            P::UnitStatus,
            P::CrisisRead,
            P::CrisisManage,
            P::EventRead,
            P::EventManage,
            P::Supervise,
            P::Handover,
            P::AuditRead,
            P::PersonalRead,
            P::UserManage,
            P::PrivacyRead,
            P::MetricsRead,
        ],
    ),
    (Role::Monitoring, &[P::MetricsRead]),
];

/// Where a grant applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Nothing (the caller holds no grant carrying the permission).
    Nothing,
    /// These communes (sorted, deduplicated).
    Communes(Vec<CommuneIdx>),
    /// The whole territory.
    Territory,
}

impl Scope {
    pub fn communes(mut list: Vec<CommuneIdx>) -> Scope {
        list.sort_unstable();
        list.dedup();
        if list.is_empty() {
            Scope::Nothing
        } else {
            Scope::Communes(list)
        }
    }

    pub fn is_territory(&self) -> bool {
        matches!(self, Scope::Territory)
    }

    pub fn is_nothing(&self) -> bool {
        matches!(self, Scope::Nothing)
    }

    /// Holds this commune.
    pub fn holds(&self, c: CommuneIdx) -> bool {
        match self {
            Scope::Nothing => false,
            Scope::Territory => true,
            Scope::Communes(l) => l.binary_search(&c).is_ok(),
        }
    }

    /// May *read* an object spread over `object` communes (empty: territory-wide object):
    /// one commune in common is enough, and a territory-wide object concerns everyone.
    pub fn sees(&self, object: &[CommuneIdx]) -> bool {
        match self {
            Scope::Nothing => false,
            Scope::Territory => true,
            Scope::Communes(_) => object.is_empty() || object.iter().any(|c| self.holds(*c)),
        }
    }

    /// May *act* on an object spread over `object` communes (empty: territory-wide): every
    /// one of them must be held.
    pub fn covers(&self, object: &[CommuneIdx]) -> bool {
        match self {
            Scope::Nothing => false,
            Scope::Territory => true,
            Scope::Communes(_) => !object.is_empty() && object.iter().all(|c| self.holds(*c)),
        }
    }

    /// The communes both scopes hold.
    pub fn intersect(&self, other: &Scope) -> Scope {
        match (self, other) {
            (Scope::Nothing, _) | (_, Scope::Nothing) => Scope::Nothing,
            (Scope::Territory, o) | (o, Scope::Territory) => o.clone(),
            (Scope::Communes(a), Scope::Communes(_)) => {
                Scope::communes(a.iter().copied().filter(|c| other.holds(*c)).collect())
            }
        }
    }

    /// As a list of communes: `None` for the whole territory, an empty list for nothing.
    pub fn list(&self) -> Option<Vec<CommuneIdx>> {
        match self {
            Scope::Territory => None,
            Scope::Nothing => Some(Vec::new()),
            Scope::Communes(l) => Some(l.clone()),
        }
    }

    /// The union of two scopes.
    pub fn union(self, other: &Scope) -> Scope {
        match (self, other) {
            (Scope::Territory, _) | (_, Scope::Territory) => Scope::Territory,
            (Scope::Nothing, o) => o.clone(),
            (s, Scope::Nothing) => s,
            (Scope::Communes(mut a), Scope::Communes(b)) => {
                a.extend_from_slice(b);
                Scope::communes(a)
            }
        }
    }

    /// The commune ids, for display (`None`: the whole territory).
    pub fn commune_ids(&self, t: &beffroi_core::Territory) -> Option<Vec<String>> {
        match self {
            Scope::Territory => None,
            Scope::Nothing => Some(Vec::new()),
            Scope::Communes(l) => Some(l.iter().map(|c| t.commune(*c).id.to_string()).collect()),
        }
    }
}

/// A role over a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    /// `Scope::Territory` or `Scope::Communes` (never `Nothing`).
    pub scope: Scope,
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person logged in with a password (and TOTP when set).
    User,
    /// An integration's API token.
    Token,
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Principal {
    /// A user name, or `token:<name>`.
    pub name: String,
    pub kind: PrincipalKind,
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Where the caller holds `p` (the union of the scopes of the grants carrying it).
    pub fn scope_for(&self, p: Permission) -> Scope {
        self.grants
            .iter()
            .filter(|g| g.role.has(p))
            .fold(Scope::Nothing, |acc, g| acc.union(&g.scope))
    }

    pub fn has(&self, p: Permission) -> bool {
        self.grants.iter().any(|g| g.role.has(p))
    }

    /// Every permission held somewhere, sorted.
    pub fn permissions(&self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.has(*p))
            .collect()
    }

    /// THE incidents this caller may see, wherever they are shown (a list, a unit's
    /// missions, a crisis, a report, the live stream, key figures): those of the communes of
    /// its `incident.read` grants, and of category `cyber` only where it holds
    /// `incident.cyber` too.
    pub fn visibility(&self) -> Visibility {
        self.visibility_for(&self.scope_for(Permission::IncidentRead))
    }

    /// The incidents of `scope` this caller may see: `scope`'s communes, and for `cyber`
    /// incidents those where it also holds `incident.cyber`. [`Principal::visibility`] is
    /// this over the `incident.read` scope; a route acting on one incident uses its own
    /// permission's scope (a DPO's legal hold needs no `incident.read`).
    pub fn visibility_for(&self, scope: &Scope) -> Visibility {
        let cyber = scope.intersect(&self.scope_for(Permission::IncidentCyber));
        Visibility::new(scope.list(), cyber.list())
    }

    /// May see an incident of this category in this commune ([`Principal::visibility`]).
    pub fn sees_incident(&self, category: &str, commune: CommuneIdx) -> bool {
        self.visibility().sees(commune, category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn every_role_is_in_the_matrix_once() {
        for r in Role::ALL {
            assert_eq!(ROLE_PERMISSIONS.iter().filter(|(x, _)| *x == r).count(), 1);
        }
        // The administrator holds everything but the acts on people's data that the privacy
        // policy reserves to named roles (separation of duties: administering the system is no
        // purpose for seeing or freezing a person's data); the DPO cannot act on incidents.
        let reserved = [
            Permission::LegalHold,
            Permission::SubjectRequest,
            Permission::PersonalUnmask,
        ];
        for p in Permission::ALL {
            assert_eq!(Role::Administrator.has(p), !reserved.contains(&p), "{p:?}");
        }
        assert!(!Role::Operator.has(Permission::PersonalUnmask));
        // The desk dispatches and hands its shift over; the key figures stay the
        // supervisor's.
        assert!(Role::Operator.has(Permission::IncidentAssign));
        assert!(Role::Operator.has(Permission::Handover));
        assert!(!Role::Operator.has(Permission::Supervise));
        assert!(!Role::Operator.has(Permission::UnitStatus));
        assert!(!Role::Dpo.has(Permission::IncidentAct));
        assert!(!Role::Operator.has(Permission::IncidentCyber));
        assert!(Role::SecurityAnalyst.has(Permission::DeviceQuarantine));
        assert!(!Role::Auditor.has(Permission::IncidentAct));
    }

    #[test]
    fn permission_scope_is_the_union_of_the_grants_carrying_it() {
        let p = Principal {
            name: "x".into(),
            kind: PrincipalKind::User,
            grants: vec![
                Grant {
                    role: Role::Operator,
                    scope: Scope::communes(vec![CommuneIdx(2)]),
                },
                Grant {
                    role: Role::Supervisor,
                    scope: Scope::communes(vec![CommuneIdx(5)]),
                },
            ],
        };
        assert_eq!(
            p.scope_for(Permission::IncidentAct),
            Scope::Communes(vec![CommuneIdx(2), CommuneIdx(5)])
        );
        assert_eq!(
            p.scope_for(Permission::UnitStatus),
            Scope::Communes(vec![CommuneIdx(5)])
        );
        assert_eq!(p.scope_for(Permission::CrisisManage), Scope::Nothing);
        assert!(!p.sees_incident(CYBER, CommuneIdx(2)));
        assert!(p.sees_incident("flood", CommuneIdx(2)));
        assert!(!p.sees_incident("flood", CommuneIdx(3)));
        let analyst = Principal {
            name: "y".into(),
            kind: PrincipalKind::User,
            grants: vec![
                Grant {
                    role: Role::Operator,
                    scope: Scope::communes(vec![CommuneIdx(2), CommuneIdx(4)]),
                },
                Grant {
                    role: Role::SecurityAnalyst,
                    scope: Scope::communes(vec![CommuneIdx(4), CommuneIdx(6)]),
                },
            ],
        };
        let v = analyst.visibility();
        assert!(v.sees(CommuneIdx(2), "flood") && !v.sees(CommuneIdx(2), CYBER));
        assert!(v.sees(CommuneIdx(4), CYBER) && v.sees(CommuneIdx(6), CYBER));
        assert!(!v.sees(CommuneIdx(3), "flood"));
        // Over a narrower scope (a supervision view): only its communes.
        let narrow = analyst.visibility_for(&Scope::communes(vec![CommuneIdx(2)]));
        assert!(narrow.sees(CommuneIdx(2), "flood") && !narrow.sees(CommuneIdx(4), "flood"));
    }

    fn scope() -> impl Strategy<Value = Scope> {
        prop_oneof![
            Just(Scope::Territory),
            Just(Scope::Nothing),
            proptest::collection::vec(0u32..8, 0..5)
                .prop_map(|v| Scope::communes(v.into_iter().map(CommuneIdx).collect())),
        ]
    }

    proptest! {
        /// Acting needs every commune; reading needs one; acting implies reading; the
        /// union grants what either side grants and nothing more.
        #[test]
        fn scope_semantics(a in scope(), b in scope(),
            obj in proptest::collection::vec(0u32..8, 0..4)) {
            let obj: Vec<CommuneIdx> = obj.into_iter().map(CommuneIdx).collect();
            if a.covers(&obj) { prop_assert!(a.sees(&obj)); }
            if !obj.is_empty() {
                prop_assert_eq!(a.covers(&obj), obj.iter().all(|c| a.holds(*c)));
                prop_assert_eq!(a.sees(&obj), obj.iter().any(|c| a.holds(*c)));
            } else {
                prop_assert_eq!(a.covers(&obj), a.is_territory());
                prop_assert_eq!(a.sees(&obj), !a.is_nothing());
            }
            let u = a.clone().union(&b);
            let i = a.intersect(&b);
            for c in (0..8).map(CommuneIdx) {
                prop_assert_eq!(u.holds(c), a.holds(c) || b.holds(c));
                prop_assert_eq!(i.holds(c), a.holds(c) && b.holds(c));
            }
        }
    }
}
