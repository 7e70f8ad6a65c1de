//! Brings a town's own devices and sites into a deployment folder.
//!
//! Sources: a spreadsheet's CSV of devices or of sites ([`csv_source`]), a GIS layer in
//! GeoJSON ([`geojson_source`]), and the device list of a LoRaWAN network server,
//! ChirpStack v4 or The Things Stack ([`lns`]). Each becomes [`Records`] that remember
//! where every field was read; [`validate`] checks them against the territory (every
//! problem at its file, line, column and field, with "did you mean" for near misses);
//! [`plan`] says what would change in `devices/*.toml` and `sites.geojson`, and
//! [`apply`] gives the files' new texts. Importing the same source twice changes
//! nothing the second time.
//!
//! No I/O: functions over the bytes of the sources and the text of the deployment's
//! files. Reading and writing them is the binary's (`beffroi import`).

pub mod csv_source;
mod error;
pub mod geojson_source;
mod json_spans;
pub mod lns;
mod plan;
mod record;
mod text;
mod validate;

pub use error::{ImportError, ImportErrors, Loc};
pub use lns::{KindMap, LnsOptions, read_kind_map};
pub use plan::{
    Change, DeploymentFiles, DeviceChange, FieldChange, FileWrite, Plan, SiteChange, apply,
    devices_file_for, plan,
};
pub use record::{
    DeviceRecord, FieldOrigin, Geometry, Origin, Records, SiteRecord, slug, valid_id,
};
pub use validate::{Catalogue, did_you_mean, validate, validate_kind_map};

/// The formats `beffroi import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    CsvDevices,
    CsvSites,
    GeoJson,
    ChirpStack,
    TheThingsStack,
}

/// Reads one source file of `format`; `lns` says how network servers' devices map.
/// `Err`: the file cannot be read at all (not JSON, no header…); the problems of single
/// rows or items are in [`Records::errors`], those rows left out.
pub fn read(
    format: Format,
    file: &str,
    bytes: &[u8],
    lns: LnsOptions<'_>,
) -> Result<Records, ImportErrors> {
    match format {
        Format::CsvDevices => csv_source::read_devices(file, bytes),
        Format::CsvSites => csv_source::read_sites(file, bytes),
        Format::GeoJson => geojson_source::read(file, bytes),
        Format::ChirpStack => lns::read_chirpstack(file, bytes, lns),
        Format::TheThingsStack => lns::read_tts(file, bytes, lns),
    }
}
