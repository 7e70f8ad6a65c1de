use std::error::Error;

/// What can go wrong with the registry, whatever its backend.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0:?} is not a usable device id (no / + # : $, whitespace or control)")]
    InvalidDeviceId(String),
    #[error("{0} already has a credential: rotate or revoke it")]
    AlreadyIssued(String),
    #[error("{0} has no credential in force to rotate")]
    NothingToRotate(String),
    #[error("{0} has no credential in force to revoke")]
    NothingToRevoke(String),
    #[error("device {0} has the ingest user's name")]
    IngestUserClash(String),
    /// A stored value that no version of Beffroi writes (a status, a key length).
    #[error("{device}: stored {what} is invalid")]
    Corrupt { device: String, what: &'static str },
    #[error(
        "the device registry has schema version {found}, this version of Beffroi knows up to {known}"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("hashing a password: {0}")]
    Hash(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The backend's own failure (SQLite, a server…), with what was being done.
    #[error("{context}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

impl RegistryError {
    pub fn backend(context: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        RegistryError::Backend {
            context: context.into(),
            source: Box::new(source),
        }
    }
}
