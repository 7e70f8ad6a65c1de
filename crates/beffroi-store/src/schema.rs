//! The schema, as an ordered list of migrations. `PRAGMA user_version` records how many
//! have been applied; each one runs in its own transaction together with the version bump,
//! so a crash mid-migration leaves the previous version intact.
//!
//! Never edit a released migration: append a new one.

use rusqlite::{Connection, TransactionBehavior};

use beffroi_core::{Territory, Value};
use beffroi_engine::StoreError;

use crate::error::Context;

/// Migration `i` brings the database from version `i` to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    V1_INITIAL,
    V2_OPERATIONS,
    V3_EVENTS,
    V4_TRUST,
    V5_QUARANTINE,
    V6_IDENTITIES,
    V7_RETENTION,
    V8_WATERMARKS,
    V9_INCIDENT_PSEUDONYMS,
    V10_SITUATIONS,
    V11_HANDOVER_NOTES,
    V12_SHELVING,
    V13_MESSAGES,
    V14_INCIDENT_TRIGGER,
    V15_OBSERVATION_VALUE_KEY,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Ids are stored as the territory's textual ids (never as indices), times as milliseconds
/// since the Unix epoch (UTC), enumerations as their `as_str` form.
const V1_INITIAL: &str = r#"
CREATE TABLE observations (
    device     TEXT    NOT NULL,
    field      TEXT    NOT NULL,
    time       INTEGER NOT NULL,
    value      REAL,
    value_bool INTEGER CHECK (value_bool IN (0, 1)),
    value_text TEXT,
    received   INTEGER NOT NULL,
    PRIMARY KEY (device, field, time)
) WITHOUT ROWID, STRICT;

CREATE TABLE device_state (
    device    TEXT    NOT NULL PRIMARY KEY,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID, STRICT;

CREATE TABLE rejections (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    source TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    detail TEXT    NOT NULL
) STRICT;

CREATE TABLE incidents (
    id               INTEGER PRIMARY KEY,
    key              TEXT    NOT NULL,
    rule             TEXT    NOT NULL,
    category         TEXT    NOT NULL,
    severity         TEXT    NOT NULL
        CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    status           TEXT    NOT NULL
        CHECK (status IN ('new', 'acknowledged', 'in_progress', 'resolved', 'closed')),
    title            TEXT    NOT NULL,
    commune          TEXT    NOT NULL,
    site             TEXT    NOT NULL,
    device           TEXT,
    lon              REAL    NOT NULL,
    lat              REAL    NOT NULL,
    opened_at        INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    acknowledged_at  INTEGER,
    resolved_at      INTEGER,
    closed_at        INTEGER,
    owner            TEXT,
    condition_active INTEGER NOT NULL CHECK (condition_active IN (0, 1)),
    alarm_count      INTEGER NOT NULL,
    evidence         TEXT    NOT NULL,
    sop_title        TEXT,
    sop              TEXT    NOT NULL DEFAULT '[]'
) STRICT;

-- Backstop of the engine's invariant: at most one incident that is not closed per key.
CREATE UNIQUE INDEX incidents_open_key ON incidents (key) WHERE status != 'closed';
CREATE INDEX incidents_updated ON incidents (updated_at);

CREATE TABLE incident_log (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    detail      TEXT    NOT NULL
) STRICT;
CREATE INDEX incident_log_incident ON incident_log (incident_id);

-- Row counts kept in the same transactions as the rows they count (count(*) scans).
CREATE TABLE counters (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID, STRICT;
INSERT INTO counters (name, value) VALUES ('observations', 0);
"#;

/// Operations of the command post: reminders and escalations of incidents, units, crises.
const V2_OPERATIONS: &str = r#"
ALTER TABLE incidents ADD COLUMN reminded_at INTEGER;
ALTER TABLE incidents ADD COLUMN escalated_at INTEGER;
CREATE INDEX incident_log_at ON incident_log (at);

-- A unit's status; its missions (JSON array of incident ids) are rebuilt on start from
-- the active incidents and kept here for reading with sqlite3.
CREATE TABLE units (
    id         TEXT    NOT NULL PRIMARY KEY,
    status     TEXT    NOT NULL CHECK (status IN ('available', 'engaged', 'off_duty')),
    missions   TEXT    NOT NULL DEFAULT '[]',
    updated_at INTEGER NOT NULL
) WITHOUT ROWID, STRICT;

-- communes, roles and incidents are JSON: commune ids, [{role, holder}], incident ids.
CREATE TABLE crises (
    id        INTEGER PRIMARY KEY,
    kind      TEXT    NOT NULL CHECK (kind IN ('flood', 'snow', 'fire', 'other')),
    title     TEXT    NOT NULL,
    communes  TEXT    NOT NULL,
    level     INTEGER NOT NULL,
    opened_at INTEGER NOT NULL,
    opened_by TEXT    NOT NULL,
    closed_at INTEGER,
    closed_by TEXT,
    summary   TEXT,
    roles     TEXT    NOT NULL,
    incidents TEXT    NOT NULL
) STRICT;

CREATE TABLE crisis_log (
    id        INTEGER PRIMARY KEY,
    crisis_id INTEGER NOT NULL REFERENCES crises (id),
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('entry', 'incident', 'system')),
    text      TEXT    NOT NULL,
    incident  INTEGER
) STRICT;
CREATE INDEX crisis_log_crisis ON crisis_log (crisis_id);
"#;

/// Event mode: events declared through the API, and cancellations of any event.
/// Device trust: the trust level each observation earned, and the anti-replay windows of
/// signing devices (highest counter and 64-bit bitmap, stored as signed integers).
const V4_TRUST: &str = r#"
ALTER TABLE observations ADD COLUMN trust TEXT NOT NULL DEFAULT 'unauthenticated'
    CHECK (trust IN ('unauthenticated', 'broker_authenticated', 'signed'));

CREATE TABLE replay_windows (
    device  TEXT    NOT NULL PRIMARY KEY,
    highest INTEGER NOT NULL,
    bitmap  INTEGER NOT NULL
) WITHOUT ROWID, STRICT;
"#;

const V3_EVENTS: &str = r#"
CREATE TABLE events (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    perimeter    TEXT    NOT NULL,
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER NOT NULL,
    warning      REAL,
    critical     REAL,
    rules        TEXT    NOT NULL DEFAULT '',
    origin       TEXT    NOT NULL CHECK (origin IN ('file', 'api')),
    created_by   TEXT    NOT NULL,
    cancelled_at INTEGER,
    cancelled_by TEXT
) WITHOUT ROWID, STRICT;
"#;

/// Quarantine: observations of a quarantined device are marked, and every
/// quarantine or release act is logged with who, when and why. Named V5 because the
/// device-trust migration takes slot 4 at merge; on this branch it is the fourth.
const V5_QUARANTINE: &str = r#"
ALTER TABLE observations ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0
    CHECK (quarantined IN (0, 1));
CREATE TABLE quarantine_log (
    seq         INTEGER PRIMARY KEY,
    device      TEXT    NOT NULL,
    quarantined INTEGER NOT NULL CHECK (quarantined IN (0, 1)),
    actor       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    at          INTEGER NOT NULL
) STRICT;
"#;

/// Privacy: the value behind each pseudonym, sealed under its key epoch
/// (ChaCha20-Poly1305; the key lives apart from the database), for purpose-bound
/// unmasking and a person's requests; destroying an epoch's key leaves its rows unopenable
/// and they are deleted. Observations of personal fields hold pseudonyms, indexed to find
/// a person's data.
const V6_IDENTITIES: &str = r#"
CREATE TABLE identities (
    pseudonym  TEXT    NOT NULL PRIMARY KEY,
    identifier TEXT    NOT NULL,
    epoch      INTEGER NOT NULL,
    sealed     BLOB    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
) WITHOUT ROWID, STRICT;
CREATE INDEX identities_epoch ON identities (epoch);
CREATE INDEX identities_last_seen ON identities (last_seen);
CREATE INDEX observations_text ON observations (value_text) WHERE value_text IS NOT NULL;
"#;

/// Retention: legal holds on incidents (a hold in force keeps the incident, its
/// log, the pseudonyms it mentions and its device's observations in its window out of the
/// purge), the redaction mark of incidents and crises (first stage of their purge), the
/// purge runs (for the retention status).
const V7_RETENTION: &str = r#"
CREATE TABLE legal_holds (
    id            INTEGER PRIMARY KEY,
    incident_id   INTEGER NOT NULL,
    justification TEXT    NOT NULL,
    until         INTEGER NOT NULL,
    set_by        TEXT    NOT NULL,
    set_at        INTEGER NOT NULL,
    released_at   INTEGER,
    released_by   TEXT
) STRICT;
CREATE INDEX legal_holds_incident ON legal_holds (incident_id);
ALTER TABLE incidents ADD COLUMN redacted_at INTEGER;
ALTER TABLE crises ADD COLUMN redacted_at INTEGER;
CREATE INDEX incidents_closed ON incidents (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX rejections_at ON rejections (at);
CREATE TABLE purge_runs (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    detail TEXT    NOT NULL
) STRICT;
"#;

/// Idempotent evaluation (ADR 0019): the event time of the latest evaluated observation of
/// each of a device's fields, as a JSON object `{"field": ms, …}`, written with `last_seen`
/// (no extra row per commit) and read back at start and after a failed commit.
const V8_WATERMARKS: &str = r#"
ALTER TABLE device_state ADD COLUMN watermarks TEXT NOT NULL DEFAULT '{}';
"#;

/// Unmasking bound by structure (ADR 0025): the pseudonyms each incident carries, recorded
/// when the engine opens or updates it from a reading (its personal values and what scrubbing
/// took out of its technical text); only these can be unmasked through the incident. The
/// incidents already stored get the personal values their device read at their opening
/// (the reading that opened them); nothing is taken from their title, evidence or log.
const V9_INCIDENT_PSEUDONYMS: &str = r#"
CREATE TABLE incident_pseudonyms (
    incident_id INTEGER NOT NULL,
    pseudonym   TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (incident_id, pseudonym)
) WITHOUT ROWID, STRICT;
CREATE INDEX incident_pseudonyms_pseudonym ON incident_pseudonyms (pseudonym);
INSERT OR IGNORE INTO incident_pseudonyms (incident_id, pseudonym, at)
    SELECT i.id, o.value_text, o.time FROM incidents i
    JOIN observations o ON o.device = i.device AND o.time = i.opened_at
    JOIN identities p ON p.pseudonym = o.value_text;
"#;

/// Situations: the incidents of one real event. `members` is the JSON list of incident
/// ids in the order they joined; the log is structured (no free text).
const V10_SITUATIONS: &str = r#"
CREATE TABLE situations (
    id          INTEGER PRIMARY KEY,
    family      TEXT,
    opened_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    closed_at   INTEGER,
    merged_into INTEGER,
    members     TEXT    NOT NULL
) STRICT;
CREATE INDEX situations_open ON situations (closed_at);

CREATE TABLE situation_log (
    id           INTEGER PRIMARY KEY,
    situation_id INTEGER NOT NULL REFERENCES situations (id),
    at           INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    event        TEXT    NOT NULL CHECK (event IN ('opened', 'joined', 'split_out',
                     'split_from', 'merged', 'merged_into', 'closed')),
    incident     INTEGER,
    other        INTEGER
) STRICT;
CREATE INDEX situation_log_situation ON situation_log (situation_id);
"#;

/// Shift handover: the notes outgoing operators write (scrubbed text, the author's
/// communes as comma-separated ids, empty for the whole territory) and who read each, once.
const V11_HANDOVER_NOTES: &str = r#"
CREATE TABLE handover_notes (
    id       INTEGER PRIMARY KEY,
    author   TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    communes TEXT    NOT NULL,
    text     TEXT    NOT NULL
) STRICT;
CREATE TABLE handover_note_reads (
    note_id INTEGER NOT NULL,
    reader  TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (note_id, reader)
) WITHOUT ROWID, STRICT;
"#;

/// Shelving (ISA-18.2): every shelving, unshelving and expiry of an alarm (an incident's
/// deduplication key) with who, why and until when; the last act of each key decides.
const V12_SHELVING: &str = r#"
CREATE TABLE shelf_log (
    seq         INTEGER PRIMARY KEY,
    dedup_key   TEXT    NOT NULL,
    incident_id INTEGER NOT NULL,
    commune     TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    change      TEXT    NOT NULL CHECK (change IN ('shelved', 'unshelved', 'expired')),
    actor       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    until       INTEGER
) STRICT;
CREATE INDEX shelf_log_key ON shelf_log (dedup_key);
"#;

/// What the server says in a log line as a code and parameters (JSON, see
/// `beffroi_engine::message_json`), for the console to render in the reader's language.
/// `detail` / `text` stay its English rendering. Rows written before have none.
const V13_MESSAGES: &str = r#"
ALTER TABLE incident_log ADD COLUMN message TEXT;
ALTER TABLE crisis_log ADD COLUMN message TEXT;
"#;

/// The evidence of an incident as structure: what fired its rule at the opening (JSON,
/// never overwritten), the worst and the latest value of the triggering field, and the
/// last re-opening. Incidents stored before it have no trigger.
const V14_INCIDENT_TRIGGER: &str = r#"
ALTER TABLE incidents ADD COLUMN trigger TEXT;
ALTER TABLE incidents ADD COLUMN peak REAL;
ALTER TABLE incidents ADD COLUMN current REAL;
ALTER TABLE incidents ADD COLUMN current_at INTEGER;
ALTER TABLE incidents ADD COLUMN reopened_at INTEGER;
"#;

/// An observation's identity gains its value key (`beffroi_core::Value::key`): two readings
/// of the same (device, field, millisecond) with different values are both kept, a
/// redelivered one is stored once. People counts keep one row per bucket (key 0). The rows
/// are copied with key 0; [`backfill_value_keys`] computes the keys in the same transaction.
const V15_OBSERVATION_VALUE_KEY: &str = r#"
CREATE TABLE observations_keyed (
    device      TEXT    NOT NULL,
    field       TEXT    NOT NULL,
    time        INTEGER NOT NULL,
    vkey        INTEGER NOT NULL,
    value       REAL,
    value_bool  INTEGER CHECK (value_bool IN (0, 1)),
    value_text  TEXT,
    received    INTEGER NOT NULL,
    trust       TEXT    NOT NULL DEFAULT 'unauthenticated'
        CHECK (trust IN ('unauthenticated', 'broker_authenticated', 'signed')),
    quarantined INTEGER NOT NULL DEFAULT 0 CHECK (quarantined IN (0, 1)),
    PRIMARY KEY (device, field, time, vkey)
) WITHOUT ROWID, STRICT;
INSERT INTO observations_keyed
    (device, field, time, vkey, value, value_bool, value_text, received, trust, quarantined)
    SELECT device, field, time, 0, value, value_bool, value_text, received, trust, quarantined
    FROM observations;
DROP TABLE observations;
ALTER TABLE observations_keyed RENAME TO observations;
CREATE INDEX observations_text ON observations (value_text) WHERE value_text IS NOT NULL;
"#;

/// Computes the value keys of the rows [`V15_OBSERVATION_VALUE_KEY`] copied, in the
/// migration's transaction. People counts (a `people_count` field of the device's kind in
/// `territory`) keep key 0, as the writer gives them; so do rows of devices the territory
/// no longer has, which no reading will be redelivered to. Returns how many rows were keyed.
fn backfill_value_keys(
    tx: &rusqlite::Transaction<'_>,
    territory: &Territory,
) -> Result<u64, StoreError> {
    let mut read = tx
        .prepare("SELECT device, field, time, value, value_bool, value_text FROM observations")
        .ctx("prepare value key backfill")?;
    let mut rows = read.query([]).ctx("read observations to key")?;
    let mut keyed: Vec<(String, String, i64, i64)> = Vec::new();
    while let Some(r) = rows.next().ctx("read observation to key")? {
        let device: String = r.get(0).ctx("read device")?;
        let field: String = r.get(1).ctx("read field")?;
        let Some(d) = territory.device_id(&device) else {
            continue;
        };
        if territory
            .kind_of(d)
            .fields
            .iter()
            .any(|f| f.people_count && *f.name == *field)
        {
            continue;
        }
        let value = match (
            r.get::<_, Option<f64>>(3).ctx("read value")?,
            r.get::<_, Option<bool>>(4).ctx("read value")?,
            r.get::<_, Option<String>>(5).ctx("read value")?,
        ) {
            (Some(n), _, _) => Value::Number(n),
            (_, Some(b), _) => Value::Bool(b),
            (_, _, Some(t)) => Value::Text(t.into()),
            // A row without a value keeps key 0: it stays readable as it was.
            _ => continue,
        };
        let time: i64 = r.get(2).ctx("read time")?;
        keyed.push((device, field, time, value.key()));
    }
    drop(rows);
    drop(read);
    let mut update = tx
        .prepare(
            "UPDATE observations SET vkey = ?4 \
             WHERE device = ?1 AND field = ?2 AND time = ?3 AND vkey = 0",
        )
        .ctx("prepare value key update")?;
    for (device, field, time, key) in &keyed {
        update
            .execute(rusqlite::params![device, field, time, key])
            .ctx("write value key")?;
    }
    Ok(keyed.len() as u64)
}

/// Brings the database to [`SCHEMA_VERSION`]. Refuses a database written by a newer build.
pub(crate) fn migrate(conn: &mut Connection, territory: &Territory) -> Result<(), StoreError> {
    let current: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .ctx("read schema version")?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this build supports \
             ({SCHEMA_VERSION})"
        )));
    }
    for (version, sql) in (1u32..).zip(MIGRATIONS).skip(current as usize) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin migration")?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("migration to version {version}: {e}")))?;
        if std::ptr::eq(*sql, V15_OBSERVATION_VALUE_KEY) {
            let keyed = backfill_value_keys(&tx, territory)?;
            tracing::info!(rows = keyed, "observation value keys computed");
        }
        tx.pragma_update(None, "user_version", version)
            .ctx("set schema version")?;
        tx.commit().ctx("commit migration")?;
        if current == 0 {
            tracing::debug!(version, "store schema created");
        } else {
            tracing::info!(from = current, version, "store schema migrated");
        }
    }
    Ok(())
}

/// Creates a database at `path` with the first `version` migrations only: the store as an
/// older release left it, for upgrade tests. Not for production use.
#[doc(hidden)]
pub fn create_at_version(path: &std::path::Path, version: u32) -> Result<(), StoreError> {
    let mut conn = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("open {}: {e}", path.display())))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("begin migration")?;
    for (v, sql) in (1u32..).zip(MIGRATIONS).take(version as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("migration to version {v}: {e}")))?;
    }
    tx.pragma_update(None, "user_version", version.min(SCHEMA_VERSION))
        .ctx("set schema version")?;
    tx.commit().ctx("commit migration")
}
