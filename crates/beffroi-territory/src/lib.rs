//! Loading and validating a territory folder.
//!
//! A territory is described by a folder of TOML and GeoJSON files (see `docs/formats.md`).
//! [`load_dir`] reads it from disk; [`load`] parses an in-memory set of files, so that tests
//! and the embedded demo use the same code. Every problem found is reported, not just the
//! first, each naming the file, the line and the field.
//!
//! The shared error types ([`ConfigError`], [`ConfigErrors`]), [`SourceFile`] and the
//! duration parser are also used by the rule, procedure and scenario loaders.

mod error;
mod failed;
mod load;
mod privacy;
mod prohibited;
mod site_kinds;
mod toml_doc;

pub use error::{
    ConfigError, ConfigErrors, SourceFile, did_you_mean, line_of_offset, parse_duration, suggestion,
};
pub use failed::Failed;
pub use load::{Partial, load, load_dir, load_partial, read_dir_sources};
pub use privacy::{check_against, load_privacy};
pub use prohibited::{Prohibited, prohibited_label, prohibited_name};
pub use toml_doc::TomlDoc;
