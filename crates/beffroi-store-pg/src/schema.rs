//! The schema, as an ordered list of migrations. The single row of `schema_version` counts
//! the applied migrations; each one runs in its own transaction together with the version
//! bump (PostgreSQL's DDL is transactional), under an advisory lock so that two processes
//! starting together do not both migrate.
//!
//! Never edit a released migration: append a new one.
//!
//! The tables and columns are those of the SQLite store (`beffroi-store`), so that a dump
//! of one reads like the other: ids as the territory's textual ids, times as milliseconds
//! since the Unix epoch (UTC) in `BIGINT`, enumerations as their `as_str` form, structured
//! values as JSON text. Version 1 is the SQLite schema at its version 15 (observations keyed
//! by device, field, time and value key).

use beffroi_engine::StoreError;
use postgres::Client;

use crate::error::Context;

/// Migration `i` brings the database from version `i` to version `i + 1`.
const MIGRATIONS: &[&str] = &[V1_INITIAL, V2_FENCE, V3_VAULT_CHECKS];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// An arbitrary constant: the advisory lock taken while migrating.
const MIGRATION_LOCK: i64 = 0x6265_6666_726f_6931;

/// The cluster's fence (see [`crate::fence`]): the epoch of the last node that took over,
/// and the check every write transaction of a fenced writer makes first. A writer whose
/// session says an older epoch is refused with SQLSTATE `BF001`; a session that says none
/// (a server that is not a cluster node) is not checked.
const V2_FENCE: &str = r#"
CREATE TABLE cluster_fence (
    one   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    epoch BIGINT  NOT NULL CHECK (epoch >= 0)
);
INSERT INTO cluster_fence (one, epoch) VALUES (TRUE, 0);
CREATE FUNCTION beffroi_fence_check() RETURNS void LANGUAGE plpgsql AS $fence$
DECLARE
    mine    TEXT := current_setting('beffroi.fence_epoch', true);
    current BIGINT;
BEGIN
    IF mine IS NULL OR mine = '' THEN
        RETURN;
    END IF;
    SELECT epoch INTO current FROM cluster_fence WHERE one FOR SHARE;
    IF current > mine::BIGINT THEN
        RAISE EXCEPTION 'fenced: node epoch % was taken over by epoch %', mine, current
            USING ERRCODE = 'BF001';
    END IF;
END
$fence$;
"#;

/// The check value of each pseudonymisation key epoch the servers of this store hold (see
/// [`crate::vault`]): never a key, never a pseudonym.
const V3_VAULT_CHECKS: &str = r#"
CREATE TABLE vault_checks (
    epoch       BIGINT PRIMARY KEY CHECK (epoch > 0),
    check_value TEXT   NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#;

const V1_INITIAL: &str = r#"
-- A reading is stored once per (device, field, event time, value key): a redelivered
-- reading is ignored, a second reading of the same millisecond with another value is kept.
-- `vkey` is `beffroi_core::Value::key` (people counts: 0, one row per bucket).
CREATE TABLE observations (
    device      TEXT             NOT NULL,
    field       TEXT             NOT NULL,
    time        BIGINT           NOT NULL,
    vkey        BIGINT           NOT NULL DEFAULT 0,
    value       DOUBLE PRECISION,
    value_bool  BOOLEAN,
    value_text  TEXT,
    received    BIGINT           NOT NULL,
    trust       TEXT             NOT NULL DEFAULT 'unauthenticated'
        CHECK (trust IN ('unauthenticated', 'broker_authenticated', 'signed')),
    quarantined BOOLEAN          NOT NULL DEFAULT FALSE,
    PRIMARY KEY (device, field, time, vkey)
);
CREATE INDEX observations_text ON observations (value_text) WHERE value_text IS NOT NULL;
-- A device's newest readings in one backward scan, ties in a fixed order (the key leads
-- with the field), and the retention purge.
CREATE INDEX observations_device_time ON observations (device, time, field, vkey);
CREATE INDEX observations_time ON observations (time);

-- Watermarks: JSON object {"field": ms, ...} of the latest evaluated event times.
CREATE TABLE device_state (
    device     TEXT   NOT NULL PRIMARY KEY,
    last_seen  BIGINT NOT NULL,
    watermarks JSONB  NOT NULL DEFAULT '{}'
);

CREATE TABLE rejections (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     BIGINT NOT NULL,
    source TEXT   NOT NULL,
    reason TEXT   NOT NULL,
    detail TEXT   NOT NULL
);
CREATE INDEX rejections_at ON rejections (at);

CREATE TABLE incidents (
    id               BIGINT           PRIMARY KEY,
    key              TEXT             NOT NULL,
    rule             TEXT             NOT NULL,
    category         TEXT             NOT NULL,
    severity         TEXT             NOT NULL
        CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    status           TEXT             NOT NULL
        CHECK (status IN ('new', 'acknowledged', 'in_progress', 'resolved', 'closed')),
    title            TEXT             NOT NULL,
    commune          TEXT             NOT NULL,
    site             TEXT             NOT NULL,
    device           TEXT,
    lon              DOUBLE PRECISION NOT NULL,
    lat              DOUBLE PRECISION NOT NULL,
    opened_at        BIGINT           NOT NULL,
    updated_at       BIGINT           NOT NULL,
    acknowledged_at  BIGINT,
    resolved_at      BIGINT,
    closed_at        BIGINT,
    owner            TEXT,
    condition_active BOOLEAN          NOT NULL,
    alarm_count      BIGINT           NOT NULL,
    evidence         TEXT             NOT NULL,
    sop_title        TEXT,
    sop              TEXT             NOT NULL DEFAULT '[]',
    reminded_at      BIGINT,
    escalated_at     BIGINT,
    redacted_at      BIGINT,
    trigger          TEXT,
    peak             DOUBLE PRECISION,
    current          DOUBLE PRECISION,
    current_at       BIGINT,
    reopened_at      BIGINT
);
-- Backstop of the engine's invariant: at most one incident that is not closed per key.
CREATE UNIQUE INDEX incidents_open_key ON incidents (key) WHERE status <> 'closed';
CREATE INDEX incidents_updated ON incidents (updated_at);
CREATE INDEX incidents_closed ON incidents (closed_at) WHERE closed_at IS NOT NULL;

CREATE TABLE incident_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    message     TEXT
);
CREATE INDEX incident_log_incident ON incident_log (incident_id);
CREATE INDEX incident_log_at ON incident_log (at);

-- Row counts kept in the same transactions as the rows they count (count(*) scans).
CREATE TABLE counters (
    name  TEXT   NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('observations', 0);

-- A unit's status; its missions (JSON array of incident ids) are rebuilt on start.
CREATE TABLE units (
    id         TEXT   NOT NULL PRIMARY KEY,
    status     TEXT   NOT NULL CHECK (status IN ('available', 'engaged', 'off_duty')),
    missions   TEXT   NOT NULL DEFAULT '[]',
    updated_at BIGINT NOT NULL
);

-- communes, roles and incidents are JSON: commune ids, [{role, holder}], incident ids.
CREATE TABLE crises (
    id          BIGINT PRIMARY KEY,
    kind        TEXT   NOT NULL CHECK (kind IN ('flood', 'snow', 'fire', 'other')),
    title       TEXT   NOT NULL,
    communes    TEXT   NOT NULL,
    level       BIGINT NOT NULL,
    opened_at   BIGINT NOT NULL,
    opened_by   TEXT   NOT NULL,
    closed_at   BIGINT,
    closed_by   TEXT,
    summary     TEXT,
    roles       TEXT   NOT NULL,
    incidents   TEXT   NOT NULL,
    redacted_at BIGINT
);

CREATE TABLE crisis_log (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    crisis_id BIGINT NOT NULL REFERENCES crises (id),
    at        BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    kind      TEXT   NOT NULL CHECK (kind IN ('entry', 'incident', 'system')),
    text      TEXT   NOT NULL,
    incident  BIGINT,
    message   TEXT
);
CREATE INDEX crisis_log_crisis ON crisis_log (crisis_id);

CREATE TABLE events (
    id           TEXT             NOT NULL PRIMARY KEY,
    name         TEXT             NOT NULL,
    perimeter    TEXT             NOT NULL,
    starts_at    BIGINT           NOT NULL,
    ends_at      BIGINT           NOT NULL,
    warning      DOUBLE PRECISION,
    critical     DOUBLE PRECISION,
    rules        TEXT             NOT NULL DEFAULT '',
    origin       TEXT             NOT NULL CHECK (origin IN ('file', 'api')),
    created_by   TEXT             NOT NULL,
    cancelled_at BIGINT,
    cancelled_by TEXT
);

-- Highest counter and 64-bit bitmap, stored bit for bit as signed integers.
CREATE TABLE replay_windows (
    device  TEXT   NOT NULL PRIMARY KEY,
    highest BIGINT NOT NULL,
    bitmap  BIGINT NOT NULL
);

CREATE TABLE quarantine_log (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device      TEXT    NOT NULL,
    quarantined BOOLEAN NOT NULL,
    actor       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);

-- The value behind each pseudonym, sealed under its key epoch (the key lives apart).
CREATE TABLE identities (
    pseudonym  TEXT   NOT NULL PRIMARY KEY,
    identifier TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    sealed     BYTEA  NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
CREATE INDEX identities_epoch ON identities (epoch);
CREATE INDEX identities_last_seen ON identities (last_seen);

CREATE TABLE legal_holds (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id   BIGINT NOT NULL,
    justification TEXT   NOT NULL,
    until         BIGINT NOT NULL,
    set_by        TEXT   NOT NULL,
    set_at        BIGINT NOT NULL,
    released_at   BIGINT,
    released_by   TEXT
);
CREATE INDEX legal_holds_incident ON legal_holds (incident_id);

CREATE TABLE purge_runs (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     BIGINT NOT NULL,
    detail TEXT   NOT NULL
);

CREATE TABLE incident_pseudonyms (
    incident_id BIGINT NOT NULL,
    pseudonym   TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (incident_id, pseudonym)
);
CREATE INDEX incident_pseudonyms_pseudonym ON incident_pseudonyms (pseudonym);

-- `members` is the JSON list of incident ids in the order they joined.
CREATE TABLE situations (
    id          BIGINT PRIMARY KEY,
    family      TEXT,
    opened_at   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    closed_at   BIGINT,
    merged_into BIGINT,
    members     TEXT   NOT NULL
);
CREATE INDEX situations_open ON situations (closed_at);

CREATE TABLE situation_log (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    situation_id BIGINT NOT NULL REFERENCES situations (id),
    at           BIGINT NOT NULL,
    actor        TEXT   NOT NULL,
    event        TEXT   NOT NULL CHECK (event IN ('opened', 'joined', 'split_out',
                     'split_from', 'merged', 'merged_into', 'closed')),
    incident     BIGINT,
    other        BIGINT
);
CREATE INDEX situation_log_situation ON situation_log (situation_id);

-- Communes as comma-separated ids, empty for the whole territory.
CREATE TABLE handover_notes (
    id       BIGINT PRIMARY KEY,
    author   TEXT   NOT NULL,
    at       BIGINT NOT NULL,
    communes TEXT   NOT NULL,
    text     TEXT   NOT NULL
);
CREATE TABLE handover_note_reads (
    note_id BIGINT NOT NULL,
    reader  TEXT   NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (note_id, reader)
);

CREATE TABLE shelf_log (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedup_key   TEXT   NOT NULL,
    incident_id BIGINT NOT NULL,
    commune     TEXT   NOT NULL,
    category    TEXT   NOT NULL,
    change      TEXT   NOT NULL CHECK (change IN ('shelved', 'unshelved', 'expired')),
    actor       TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    until       BIGINT
);
CREATE INDEX shelf_log_key ON shelf_log (dedup_key);
"#;

/// Brings the database to [`SCHEMA_VERSION`]. Refuses a database written by a newer build.
pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().ctx("begin migration")?;
    // Waits as long as another process takes to migrate (the session's lock timeout is
    // for the ingest's statements, not for this).
    tx.batch_execute("SET LOCAL lock_timeout = 0")
        .ctx("lock migrations")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .ctx("lock migrations")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
             version BIGINT  NOT NULL
         );
         INSERT INTO schema_version (one, version) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;",
    )
    .ctx("create schema_version")?;
    let current: i64 = tx
        .query_one("SELECT version FROM schema_version", &[])
        .ctx("read schema version")?
        .try_get(0)
        .ctx("read schema version")?;
    if current > i64::from(SCHEMA_VERSION) {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this build supports \
             ({SCHEMA_VERSION})"
        )));
    }
    tx.commit().ctx("commit schema_version")?;
    let start = usize::try_from(current).unwrap_or(0);
    for (version, sql) in (1i64..).zip(MIGRATIONS).skip(start) {
        let mut tx = client.transaction().ctx("begin migration")?;
        tx.batch_execute("SET LOCAL lock_timeout = 0")
            .ctx("lock migrations")?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .ctx("lock migrations")?;
        // Another process may have applied it while we waited for the lock.
        let now: i64 = tx
            .query_one("SELECT version FROM schema_version", &[])
            .ctx("read schema version")?
            .try_get(0)
            .ctx("read schema version")?;
        if now >= version {
            continue;
        }
        tx.batch_execute(sql)
            .map_err(|e| StoreError::Backend(format!("migration to version {version}: {e}")))?;
        tx.execute("UPDATE schema_version SET version = $1", &[&version])
            .ctx("set schema version")?;
        tx.commit().ctx("commit migration")?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}
