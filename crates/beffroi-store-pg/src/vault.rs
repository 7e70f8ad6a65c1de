//! Every server of one PostgreSQL store must hold the same pseudonymisation key vault: a
//! node given another vault, or a copy older than a key rotation, would give the same
//! person other pseudonyms after a takeover, and nothing would say so. Each server records
//! the check value of each of its epochs' keys (`Pseudonymiser::key_checks`: an HMAC of a
//! fixed text, never a key nor a pseudonym) the first time an epoch is seen, and compares
//! its own with what is recorded before it writes anything ([`check_vault`]).

use beffroi_engine::StoreError;
use postgres::Client;

use crate::error::Context;

/// How a server's vault compares with the store's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultCheck {
    /// Every epoch this vault holds is recorded with the same check value, and none newer
    /// than its current one is recorded.
    Agrees,
    /// This epoch's key is not the one recorded: another vault.
    Differs { epoch: u32 },
    /// The store knows a newer epoch than this vault's current one: a copy made before a
    /// rotation.
    Behind { recorded: u32, current: u32 },
}

/// Records the epochs of `checks` the store does not know yet, then compares. `checks` is
/// sorted by epoch, the last one current (as `key_checks` gives them).
pub fn check_vault(
    client: &mut Client,
    checks: &[(u32, String)],
) -> Result<VaultCheck, StoreError> {
    let mut tx = client.transaction().ctx("begin vault check")?;
    for (epoch, value) in checks {
        tx.execute(
            "INSERT INTO vault_checks (epoch, check_value) VALUES ($1, $2)
             ON CONFLICT (epoch) DO NOTHING",
            &[&i64::from(*epoch), value],
        )
        .ctx("record vault check")?;
    }
    let recorded: Vec<(i64, String)> = tx
        .query(
            "SELECT epoch, check_value FROM vault_checks ORDER BY epoch",
            &[],
        )
        .ctx("read vault checks")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    tx.commit().ctx("commit vault check")?;
    for (epoch, value) in checks {
        let Some((_, stored)) = recorded.iter().find(|(e, _)| *e == i64::from(*epoch)) else {
            continue;
        };
        if stored != value {
            return Ok(VaultCheck::Differs { epoch: *epoch });
        }
    }
    let current = checks.last().map_or(0, |c| c.0);
    let newest = recorded
        .iter()
        .map(|(e, _)| u32::try_from(*e).unwrap_or(u32::MAX))
        .max()
        .unwrap_or(0);
    if newest > current {
        return Ok(VaultCheck::Behind {
            recorded: newest,
            current,
        });
    }
    Ok(VaultCheck::Agrees)
}
