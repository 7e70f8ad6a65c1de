//! Who may read Beffroi's files: the data folder is the service account's alone (0700), the
//! databases too (0600), and a users file that others can read is refused (it holds
//! password hashes and TOTP secrets).

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Creates the data folder if needed and makes it the owner's alone (0700).
pub fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    restrict(dir, 0o700)
}

/// Makes an SQLite database the owner's alone (0600) before SQLite opens it: an empty file
/// is created with that mode when there is none (SQLite takes an empty file as a new
/// database), an existing one and its `-wal` and `-shm` files are narrowed. SQLite gives
/// the files it creates later (`-wal`, `-shm`) the database file's mode.
pub fn private_db(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    restrict(path, 0o600)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = Path::new(&side);
        if side.exists() {
            restrict(side, 0o600)?;
        }
    }
    Ok(())
}

/// Refuses a users file that anyone but its owner can read or write.
pub fn check_owner_only(path: &Path) -> Result<()> {
    owner_only(path, "it holds password hashes and TOTP secrets")
}

/// Refuses a file that anyone but its owner can read or write, saying why it matters and
/// the command that fixes it.
fn owner_only(path: &Path, why: &str) -> Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable or writable by others (mode {:04o}): {why}; make it the service \
             account's alone: chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

/// The TOTP sealing key at `path`, if the file exists; refused when others can read it or it
/// is not 32 bytes.
pub fn read_totp_key(path: &Path) -> Result<Option<beffroi_api::totp::SealKey>> {
    if !path.exists() {
        return Ok(None);
    }
    owner_only(path, "it opens the TOTP secrets")?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    beffroi_api::totp::SealKey::from_bytes(&bytes)
        .map(Some)
        .with_context(|| format!("{} is not a TOTP key (32 bytes)", path.display()))
}

/// The TOTP sealing key at `path`, created (0600, 32 random bytes) when there is none.
pub fn totp_key(path: &Path) -> Result<beffroi_api::totp::SealKey> {
    if let Some(k) = read_totp_key(path)? {
        return Ok(k);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = beffroi_api::totp::SealKey::generate();
    write_private(path, key.as_bytes())?;
    Ok(key)
}

/// Writes a new file readable by its owner only (0600), synced; refuses to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn restrict(path: &Path, mode: u32) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.permissions().mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot restrict {} to {mode:04o}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_data_folder_and_databases_become_the_owners_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&dir).expect("private dir");
        assert_eq!(mode(&dir), 0o700);

        // A new database file is created 0600; an existing one and its WAL are narrowed.
        let db = dir.join("new.db");
        private_db(&db).expect("new db");
        assert_eq!(mode(&db), 0o600);
        let old = dir.join("old.db");
        std::fs::write(&old, b"").expect("write");
        std::fs::write(dir.join("old.db-wal"), b"").expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(
            dir.join("old.db-wal"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        private_db(&old).expect("old db");
        assert_eq!(mode(&old), 0o600);
        assert_eq!(mode(&dir.join("old.db-wal")), 0o600);

        // SQLite gives the WAL it creates the database's mode.
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.pragma_update(None, "journal_mode", "wal")
            .expect("wal");
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .expect("write");
        assert_eq!(mode(&dir.join("new.db-wal")), 0o600);
    }

    #[test]
    fn a_users_file_others_can_read_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("users.toml");
        std::fs::write(&file, "").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = check_owner_only(&file)
            .expect_err("0644 refused")
            .to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        check_owner_only(&file).expect("0600 accepted");
    }
}
