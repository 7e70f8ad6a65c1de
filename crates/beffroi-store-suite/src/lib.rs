//! One test suite for every store backend: the persistence contract of
//! [`beffroi_engine::Store`] and [`beffroi_engine::StoreReader`] written once, as functions
//! of a [`Backend`], and expanded into one `#[test]` per case by [`store_suite!`] in each
//! adapter's tests (`beffroi-store` on SQLite, `beffroi-store-pg` on PostgreSQL).
//!
//! ```text
//! // crates/beffroi-store-pg/tests/suite.rs
//! fn backend(case: &str) -> Option<PgBackend> { /* a fresh database named after the case */ }
//! beffroi_store_suite::store_suite!(backend);
//! ```
//!
//! What only one backend has (SQLite's WAL file and its versions, an aborted process, the
//! bytes left in the file after an erasure) stays in that adapter's own tests. A case never
//! reads a backend's tables behind the store's back except through [`Backend::execute`] and
//! [`Backend::query_i64`], with SQL both backends accept.
//!
//! Panics are the failure mode here: this code only runs inside tests.

use std::path::PathBuf;
use std::sync::Arc;

use beffroi_core::Territory;
use beffroi_engine::{Store, StoreReader};

pub mod cases;
pub mod fixtures;

/// Both halves of a store opened on a backend's database.
pub struct Opened {
    pub store: Box<dyn Store>,
    pub reader: Arc<dyn StoreReader>,
    /// The adapter's count of rows left out of listings (they no longer fit the
    /// territory), shared by both halves.
    pub skipped: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// A store backend under test, bound to one database of its own (a fresh one per case).
pub trait Backend {
    /// Opens (again) the store on this backend's database, resolving ids against
    /// `territory`. Opening twice is a restart: what was written before is read back.
    fn open_in(&self, territory: Arc<Territory>) -> Opened;

    /// [`Backend::open_in`] with the fixture territory (`fixture::small`).
    fn open(&self) -> (Box<dyn Store>, Arc<dyn StoreReader>) {
        let o = self.open_in(Arc::new(beffroi_core::territory::fixture::small()));
        (o.store, o.reader)
    }

    /// Rows the adapter deletes per purge transaction.
    fn purge_chunk(&self) -> usize;

    /// Runs SQL statements on the database by hand, as an administrator (or an older build)
    /// would: the store must read back whatever such rows hold without trusting them.
    fn execute(&self, sql: &str);

    /// The first column of every row `sql` returns, as integers.
    fn query_i64(&self, sql: &str) -> Vec<i64>;

    /// Files that must not hold an erased value once an erasure returns (empty when the
    /// backend's files are out of the test's reach).
    fn erased_files(&self) -> Vec<PathBuf>;
}

/// Expands into one `#[test]` per case of [`cases`]. `$backend` is a function
/// `fn(&str) -> Option<B>` where `B: Backend`, called with the case's name for a fresh
/// database; `None` skips the case (the backend's server is not installed).
#[macro_export]
macro_rules! store_suite {
    ($backend:path) => {
        $crate::store_suite!(@cases $backend;
            incident_round_trips_with_procedure_and_log,
            incident_listing_filters_and_orders_by_update,
            visibility_is_part_of_the_query_so_a_page_is_full,
            one_open_incident_per_key_is_enforced_by_the_schema,
            observations_are_idempotent_on_redelivery,
            rejections_are_listed_newest_first,
            purge_deletes_by_event_time_across_chunks,
            reopening_keeps_everything,
            the_trigger_and_the_reopening_survive_a_restart,
            reader_sees_commits_while_the_writer_is_open,
            rows_that_no_longer_fit_the_territory_are_reported_not_panicked_on,
            operations_survive_a_reopen_units_crises_escalation_and_handover_log,
            events_round_trip_and_a_cancellation_replaces_the_row,
            trust_and_replay_windows_survive_a_reopen,
            quarantine_acts_and_marked_observations_round_trip,
            people_counts_keep_the_highest_count_of_their_bucket,
            watermarks_merge_per_field_and_survive_a_reopen,
            stored_text_is_read_back_through_the_recogniser,
            handover_notes_and_shelves_survive_a_reopen,
            two_readings_of_one_millisecond_with_different_values_are_both_kept,
            identities_are_upserted_with_the_observations,
            observations_between_reads_the_newest_of_the_window,
            an_incident_carries_the_pseudonyms_recorded_with_it,
            each_category_is_purged_at_its_limit_and_a_hold_keeps_its_incident,
            erasure_reaches_every_store_except_a_held_incident,
            a_closed_crisis_is_redacted_then_deleted,
            identities_of_destroyed_epochs_are_deleted,
            old_handover_notes_and_shelving_acts_are_purged,
            legal_holds_supersede_release_and_list,
            the_retention_status_counts_rows_and_names_the_last_run,
        );
    };
    (@cases $backend:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let Some(backend) = $backend(stringify!($case)) else {
                    return;
                };
                $crate::cases::$case(&backend);
            }
        )*
    };
}
