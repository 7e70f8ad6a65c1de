//! Who may read what `beffroi serve` writes: the data folder is the service account's alone
//! (0700), and so are the databases and their write-ahead logs (0600), even when the folder
//! existed before with a wider mode.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use support::beffroi::Beffroi;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_data_folder_and_its_databases_are_the_service_accounts_alone() {
    let b = Beffroi::start_full(None, None, None, |data| {
        std::fs::create_dir_all(data).expect("data folder");
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    });
    let data = b.data_dir();
    assert_eq!(mode(&data), 0o700, "{}", b.log());
    for name in [
        "beffroi.db",
        "beffroi.db-wal",
        "audit.sqlite",
        "audit.sqlite-wal",
    ] {
        let p = data.join(name);
        assert!(p.exists(), "{name} is there while serving");
        assert_eq!(mode(&p), 0o600, "{name}");
    }
}
