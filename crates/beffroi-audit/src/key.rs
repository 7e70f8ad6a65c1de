//! The checkpoint signing key: an Ed25519 seed in a file of its own (hex, mode 0600),
//! generated on first start, and its public key written beside the log for verifiers to pin.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;

use crate::AuditError;

fn key_err(path: &Path, message: impl Into<String>) -> AuditError {
    AuditError::Key {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the signing key at `path`, or generates one there (mode 0600) when the file does
/// not exist. A key file readable by others is refused (on Unix).
pub fn load_or_create(path: &Path) -> Result<SigningKey, AuditError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            parse_signing_key(path, &text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(key_err(path, format!("cannot read: {e}"))),
    }
}

fn parse_signing_key(path: &Path, text: &str) -> Result<SigningKey, AuditError> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| key_err(path, "not a signing key (64 hex digits expected)"))?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| key_err(path, format!("cannot stat: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(key_err(
            path,
            format!("permissions {:o} are too open (chmod 600)", mode & 0o777),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), AuditError> {
    Ok(())
}

fn create(path: &Path) -> Result<SigningKey, AuditError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| key_err(path, format!("cannot create: {e}")))?;
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = match opts.open(path) {
        Ok(f) => f,
        // Made meanwhile by another process sharing the key: use it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return load_or_create(path),
        Err(e) => return Err(key_err(path, format!("cannot create: {e}"))),
    };
    f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| key_err(path, format!("cannot write: {e}")))?;
    tracing::info!(path = %path.display(), "audit signing key generated");
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes the public key (hex) to `path`, or checks that the file there holds this key: a
/// different key means the signing key was replaced, which must be a deliberate act (move
/// the old public key away and keep it to verify the older checkpoints).
pub fn write_or_check_public(path: &Path, key: &VerifyingKey) -> Result<(), AuditError> {
    let text = format!("{}\n", hex::encode(key.as_bytes()));
    match read_public(path) {
        Ok(existing) if existing == *key => Ok(()),
        Ok(_) => Err(key_err(
            path,
            "holds another public key than the signing key's; move it away (and keep it to verify older checkpoints) to rotate the key",
        )),
        Err(_) if !path.exists() => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| key_err(path, format!("cannot create: {e}")))?;
            }
            std::fs::write(path, text).map_err(|e| key_err(path, format!("cannot write: {e}")))
        }
        Err(e) => Err(e),
    }
}

/// Reads a public key file (64 hex digits).
pub fn read_public(path: &Path) -> Result<VerifyingKey, AuditError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| key_err(path, format!("cannot read: {e}")))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| key_err(path, "not a public key (64 hex digits expected)"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| key_err(path, "not a valid Ed25519 public key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_generated_private_then_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit-signing.key");
        let k1 = load_or_create(&path).expect("created");
        let k2 = load_or_create(&path).expect("read");
        assert_eq!(k1.to_bytes(), k2.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let e = load_or_create(&path).expect_err("too open");
            assert!(e.to_string().contains("too open"), "{e}");
        }
    }

    #[test]
    fn the_public_key_file_pins_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pubp = dir.path().join("audit-signing.pub");
        let k1 = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let k2 = SigningKey::from_bytes(&[2; 32]).verifying_key();
        write_or_check_public(&pubp, &k1).expect("written");
        write_or_check_public(&pubp, &k1).expect("same key");
        assert_eq!(read_public(&pubp).expect("read"), k1);
        let e = write_or_check_public(&pubp, &k2).expect_err("another key");
        assert!(e.to_string().contains("another public key"), "{e}");
    }
}
