//! `demo --peer`: a neighbouring territory beside the demo, under an agreement, so that a
//! user sees a shared flood cross the border on one machine.
//!
//! The neighbour is the embedded demo territory under another name (`voisin-demo`), quiet
//! (no scenario plays there, no rule of its own runs). The demo sends it its floods of Dijon and Longvic, the
//! communes the Ouche crosses, from `minor`, with their title and site; the neighbour
//! sends nothing back. Both use the federation's real path: keys in each data folder,
//! signed batches over loopback HTTP, durable queues.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use beffroi_core::Severity;
use beffroi_federation::{Federation, Field, Partner, Tlp};

use crate::setup::Deployment;

/// The neighbour's address: the demo's port + 1.
pub fn next_port(listen: &str) -> Result<String> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen `{listen}` is not an address:port"))?;
    let port = addr
        .port()
        .checked_add(1)
        .context("--listen's port leaves no room for the neighbour")?;
    Ok(SocketAddr::new(addr.ip(), port).to_string())
}

/// The neighbour's data folder: `<data>-peer`.
pub fn data_dir(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push("-peer");
    PathBuf::from(name)
}

/// Makes `peer` the neighbour and writes both agreements.
pub fn agree(
    main: &mut Deployment,
    peer: &mut Deployment,
    main_listen: &str,
    peer_listen: &str,
    main_data: &Path,
    peer_data: &Path,
) -> Result<()> {
    let mut t = (*peer.territory).clone();
    t.id = "voisin-demo".into();
    t.name = "Territoire voisin (démo)".into();
    peer.territory = Arc::new(t);
    // A quiet neighbour: no device of its reports, so its own rules would only open a
    // silence incident per device; it runs none, and shows what the demo shares.
    peer.rules = Arc::new(beffroi_rules::RuleSet::default());
    peer.operations.families = Vec::new();
    peer.cap = None;
    peer.events = Vec::new();
    crate::files::private_dir(main_data)?;
    crate::files::private_dir(peer_data)?;
    let main_key = crate::federation::Keys::open(main_data)?
        .signing
        .verifying_key();
    let peer_key = crate::federation::Keys::open(peer_data)?
        .signing
        .verifying_key();
    let zone = ["dijon", "longvic"]
        .iter()
        .map(|c| {
            main.territory
                .commune_id(c)
                .with_context(|| format!("the demo has no commune `{c}`"))
        })
        .collect::<Result<Vec<_>>>()?;
    main.federation = Some(Arc::new(Federation {
        name: main.territory.id.to_string(),
        partners: vec![Partner {
            name: peer.territory.id.to_string(),
            url: format!("http://{peer_listen}"),
            key: peer_key,
            categories: vec!["flood".into()],
            min_severity: Severity::Minor,
            communes: Some(zone),
            fields: vec![Field::Title, Field::Site],
            tlp: Tlp::Amber,
            receive: false,
            category: "neighbour".into(),
            notes: false,
        }],
    }));
    peer.federation = Some(Arc::new(Federation {
        name: peer.territory.id.to_string(),
        partners: vec![Partner {
            name: main.territory.id.to_string(),
            url: format!("http://{main_listen}"),
            key: main_key,
            categories: Vec::new(),
            min_severity: Severity::Critical,
            communes: Some(Vec::new()),
            fields: Vec::new(),
            tlp: Tlp::Amber,
            receive: true,
            category: "neighbour".into(),
            notes: false,
        }],
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_neighbour_listens_next_door_and_keeps_its_data_apart() {
        assert_eq!(next_port("127.0.0.1:8080").expect("port"), "127.0.0.1:8081");
        assert!(next_port("127.0.0.1:65535").is_err());
        assert!(next_port("localhost").is_err());
        assert_eq!(
            data_dir(Path::new("beffroi-data")),
            PathBuf::from("beffroi-data-peer")
        );
    }
}
