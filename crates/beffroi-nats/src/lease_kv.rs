//! The lease manager: [`crate::lease::Node`]'s decisions carried out on JetStream KV.
//!
//! Buckets `beffroi_<territory>_members` (each node's key rewritten every round, entries
//! older than 10 × ttl purged by the server) and `beffroi_<territory>_leases` (key `p<n>` =
//! owner id, written by compare-and-set on the revision). Each round, every `renew_every`:
//! heartbeat, read members and leases, [`Node::plan`], write, then publish the partitions
//! owned, each with the instant its ownership ends unless renewed, on a `watch` channel
//! ([`LeaseManager::ownership`]). [`supervise_partitions`] starts a partition's work when it
//! is owned and cancels it when it is not, or at that instant at the latest — even when the
//! store is unreachable and no round completes.
//!
//! Node ids are KV keys: 1 to 64 characters among `A–Z a–z 0–9 - _`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::NatsError;
use crate::lease::{Action, LeaseEntry, LeaseTiming, Node};
use crate::subject::encode_token;

/// Creates (idempotently) the two buckets of a territory and returns (members, leases).
pub async fn ensure_buckets(
    js: &jetstream::Context,
    territory: &str,
    cluster_size: usize,
    timing: LeaseTiming,
) -> Result<(kv::Store, kv::Store), NatsError> {
    let base = format!("beffroi_{}", encode_token(territory).replace('~', "_"));
    let replicas = cluster_size.clamp(1, 3);
    let members = js
        .create_or_update_key_value(kv::Config {
            bucket: format!("{base}_members"),
            history: 1,
            max_age: timing.ttl * 10,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Kv(e.to_string()))?;
    let leases = js
        .create_or_update_key_value(kv::Config {
            bucket: format!("{base}_leases"),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Kv(e.to_string()))?;
    Ok((members, leases))
}

/// The last entry of `key`: (operation, revision, value). Read from any replica (direct
/// get) and, when no replica answers — for a while after a server is lost, a bucket's
/// direct-get responders can be missing although the stream has a leader — from the
/// stream's leader.
async fn read_entry(
    store: &kv::Store,
    key: &str,
) -> Result<Option<(kv::Operation, u64, Bytes)>, NatsError> {
    match store.entry(key).await {
        Ok(e) => Ok(e.map(|e| (e.operation, e.revision, e.value))),
        Err(direct) => {
            let subject = format!("{}{key}", store.prefix);
            match store.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => {
                    let op = match m
                        .headers
                        .get("KV-Operation")
                        .map(|v| v.as_str().to_owned())
                        .as_deref()
                    {
                        Some("DEL") => kv::Operation::Delete,
                        Some("PURGE") => kv::Operation::Purge,
                        _ => kv::Operation::Put,
                    };
                    Ok(Some((op, m.sequence, m.payload)))
                }
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(NatsError::Kv(format!(
                    "reading {key}: {direct}; from the leader: {e}"
                ))),
            }
        }
    }
}

/// How long a partition's run that returned on its own waits before it is started again.
pub const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Partitions owned, each with the instant its ownership ends unless renewed.
pub type Ownership = BTreeMap<u32, Instant>;

fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn lease_key(partition: u32) -> String {
    format!("p{partition}")
}

/// Runs one node's leases.
pub struct LeaseManager {
    node: Node,
    members: kv::Store,
    leases: kv::Store,
    origin: Instant,
    owned_tx: watch::Sender<Ownership>,
    /// This node's membership value: what its peers learn of it (its console's address).
    advertise: Bytes,
    /// The members' values as last read.
    member_values: BTreeMap<String, Bytes>,
    members_tx: watch::Sender<BTreeMap<String, Bytes>>,
    holders_tx: watch::Sender<Holders>,
}

/// Who holds each lease, as the last round read it.
pub type Holders = BTreeMap<u32, Holder>;

/// A lease's holder and the value it advertises in the membership (empty when it has left
/// the membership or was not read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    pub advertised: Bytes,
}

impl LeaseManager {
    pub fn new(
        id: &str,
        partitions: u32,
        timing: LeaseTiming,
        members: kv::Store,
        leases: kv::Store,
    ) -> Result<Self, NatsError> {
        if !valid_node_id(id) {
            return Err(NatsError::Config(format!(
                "node id {id:?}: 1 to 64 characters among A-Z a-z 0-9 - _"
            )));
        }
        if timing.renew_every.is_zero() || timing.renew_every >= timing.ttl {
            return Err(NatsError::Config(
                "renew_every must be above zero and below the lease ttl".into(),
            ));
        }
        Ok(LeaseManager {
            node: Node::new(id, partitions, timing),
            members,
            leases,
            origin: Instant::now(),
            owned_tx: watch::Sender::new(Ownership::new()),
            advertise: Bytes::from_static(b"alive"),
            member_values: BTreeMap::new(),
            members_tx: watch::Sender::new(BTreeMap::new()),
            holders_tx: watch::Sender::new(Holders::new()),
        })
    }

    /// What this node's membership entry says to its peers (by default `alive`): a
    /// server's address for the others to reach it.
    pub fn advertise(mut self, value: impl Into<Bytes>) -> Self {
        self.advertise = value.into();
        self
    }

    /// The live members and what each advertises, updated after every round that read
    /// them.
    pub fn members(&self) -> watch::Receiver<BTreeMap<String, Bytes>> {
        self.members_tx.subscribe()
    }

    /// Who holds each lease and what it advertises, updated after every round that read
    /// them.
    pub fn holders(&self) -> watch::Receiver<Holders> {
        self.holders_tx.subscribe()
    }

    /// Keeps a lease held for as long as it is renewed ([`crate::lease::Balance::Sticky`]).
    pub fn sticky(mut self) -> Self {
        self.node.balance = crate::lease::Balance::Sticky;
        self
    }

    /// The partitions this node owns and until when, updated after every round.
    pub fn ownership(&self) -> watch::Receiver<Ownership> {
        self.owned_tx.subscribe()
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// [`LeaseManager::run`] until `shutdown` (leases left to expire) or `leave` (leases
    /// released first, so that their next owners claim them at their next round rather
    /// than after `ttl`). Cancel `leave` only once the work the leases guard has stopped:
    /// a node that drained and stops on purpose.
    pub async fn run_until(self, shutdown: CancellationToken, leave: CancellationToken) {
        let (leases, members) = (self.leases.clone(), self.members.clone());
        let id = self.node.id.clone();
        let renew_every = self.node.timing.renew_every;
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u32, u64)>::new()));
        let stop = CancellationToken::new();
        let run = {
            let (held, stop) = (std::sync::Arc::clone(&held), stop.clone());
            self.run_recording(stop, held)
        };
        tokio::pin!(run);
        let release = tokio::select! {
            () = &mut run => false,
            () = shutdown.cancelled() => false,
            () = leave.cancelled() => true,
        };
        stop.cancel();
        run.await;
        if !release {
            return;
        }
        // Out of the membership first: a peer deciding who should take a free lease no
        // longer counts this node among the live ones.
        match tokio::time::timeout(renew_every, members.delete(&id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "membership not left"),
            Err(_) => tracing::debug!("leaving the membership timed out"),
        }
        let held = held.lock().map(|h| h.clone()).unwrap_or_default();
        for (partition, revision) in held {
            let done = tokio::time::timeout(
                renew_every,
                leases.delete_expect_revision(lease_key(partition), Some(revision)),
            )
            .await;
            match done {
                Ok(Ok(())) => tracing::debug!(partition, "lease released"),
                Ok(Err(e)) => tracing::debug!(partition, error = %e, "lease not released"),
                Err(_) => tracing::debug!(partition, "lease release timed out"),
            }
        }
    }

    async fn run_recording(
        mut self,
        shutdown: CancellationToken,
        held: std::sync::Arc<std::sync::Mutex<Vec<(u32, u64)>>>,
    ) {
        let mut tick = tokio::time::interval(self.node.timing.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                at = tick.tick() => self.step(at.into_std()).await,
            }
            if let Ok(mut h) = held.lock() {
                *h = self.node.held();
            }
        }
        self.node.stop();
        self.owned_tx.send_replace(Ownership::new());
    }

    /// One round at `started`, cut short at `renew_every`, and the ownership published.
    async fn step(&mut self, started: Instant) {
        let now = started.saturating_duration_since(self.origin);
        // A round stuck on an unreachable store must not hold back the next one; the
        // writes it made are compare-and-set, so cutting it short is safe.
        match tokio::time::timeout(self.node.timing.renew_every, self.round(now)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(node = %self.node.id, error = %e, "lease round failed")
            }
            Err(_) => tracing::debug!(node = %self.node.id, "lease round timed out"),
        }
        let owned: Ownership = self
            .node
            .owned_until(self.now())
            .into_iter()
            .map(|(p, until)| (p, self.origin + until))
            .collect();
        self.owned_tx.send_if_modified(|cur| {
            let changed = *cur != owned;
            *cur = owned;
            changed
        });
    }

    /// Renews every `renew_every` until `shutdown`; then releases nothing (the leases expire
    /// for the others, which is what a crash looks like too).
    pub async fn run(self, shutdown: CancellationToken) {
        self.run_recording(shutdown, std::sync::Arc::default())
            .await;
    }

    /// The live members with their entry's revision, and their values.
    async fn read_members(
        &self,
    ) -> Result<(BTreeMap<String, u64>, BTreeMap<String, Bytes>), NatsError> {
        let kv_err = |e: &dyn std::fmt::Display| NatsError::Kv(e.to_string());
        let mut members = BTreeMap::new();
        let mut values = BTreeMap::new();
        let mut keys = self.members.keys().await.map_err(|e| kv_err(&e))?;
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            names.push(k.map_err(|e| kv_err(&e))?);
        }
        for name in names {
            if let Some((kv::Operation::Put, revision, value)) =
                read_entry(&self.members, &name).await?
            {
                values.insert(name.clone(), value);
                members.insert(name, revision);
            }
        }
        Ok((members, values))
    }

    /// One round started at `now` (since the manager's origin): heartbeat, read, decide,
    /// write. The membership's part may fail (its bucket electing a leader after a server
    /// was lost) without holding back the leases' part: a holder renews what it holds, and
    /// a standby decides on the membership it saw last (a write is compare-and-set, so a
    /// stale view can lose a race, never win two). The heartbeat's error is returned after.
    pub async fn round(&mut self, now: Duration) -> Result<(), NatsError> {
        let kv_err = |e: &dyn std::fmt::Display| NatsError::Kv(e.to_string());
        let heartbeat = self
            .members
            .put(&self.node.id, self.advertise.clone())
            .await
            .map(drop)
            .map_err(|e| kv_err(&e));
        let membership = if heartbeat.is_ok() {
            self.read_members().await
        } else {
            Err(NatsError::Kv(
                "membership not read: heartbeat failed".into(),
            ))
        };
        match membership {
            Ok((members, values)) => {
                self.node.observe_members(&members, now);
                self.members_tx.send_if_modified(|cur| {
                    let changed = *cur != values;
                    cur.clone_from(&values);
                    changed
                });
                self.member_values = values;
            }
            Err(e) => {
                tracing::debug!(node = %self.node.id, error = %e, "membership not updated this round")
            }
        }
        let mut leases = BTreeMap::new();
        for p in 0..self.node.partitions {
            let entry = match read_entry(&self.leases, &lease_key(p)).await? {
                None => LeaseEntry::Free { revision: 0 },
                Some((op, revision, _)) if op != kv::Operation::Put => {
                    LeaseEntry::Free { revision }
                }
                Some((_, revision, value)) => LeaseEntry::Held {
                    owner: String::from_utf8_lossy(&value).into_owned(),
                    revision,
                },
            };
            leases.insert(p, entry);
        }
        let holders: Holders = leases
            .iter()
            .filter_map(|(p, entry)| match entry {
                LeaseEntry::Held { owner, .. } => Some((
                    *p,
                    Holder {
                        node: owner.clone(),
                        advertised: self.member_values.get(owner).cloned().unwrap_or_default(),
                    },
                )),
                LeaseEntry::Free { .. } => None,
            })
            .collect();
        self.holders_tx.send_if_modified(|cur| {
            let changed = *cur != holders;
            *cur = holders;
            changed
        });
        let actions = self.node.plan(&leases, now);
        let value = Bytes::from(self.node.id.clone().into_bytes());
        for action in actions {
            let sent_at = self.now();
            match action {
                Action::Claim {
                    partition,
                    revision: 0,
                } => match self
                    .leases
                    .create(lease_key(partition), value.clone())
                    .await
                {
                    Ok(rev) => self.node.confirmed(partition, rev, sent_at),
                    Err(_) => self.node.refused(partition),
                },
                Action::Claim {
                    partition,
                    revision,
                }
                | Action::Renew {
                    partition,
                    revision,
                } => match self
                    .leases
                    .update(lease_key(partition), value.clone(), revision)
                    .await
                {
                    Ok(rev) => self.node.confirmed(partition, rev, sent_at),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        self.node.refused(partition)
                    }
                    // Unreachable: the lease lasts until its own expiry.
                    Err(e) => tracing::debug!(partition, error = %e, "lease write failed"),
                },
                Action::Release {
                    partition,
                    revision,
                } => {
                    if let Err(e) = self
                        .leases
                        .delete_expect_revision(lease_key(partition), Some(revision))
                        .await
                    {
                        tracing::debug!(partition, error = %e, "lease release failed");
                    }
                }
            }
        }
        heartbeat
    }
}

/// Runs `start(partition, token)` for every partition this node owns, and cancels its token
/// when the partition is no longer owned or its ownership instant passes (whichever comes
/// first), until `shutdown`. A partition owned again is restarted only after its previous run
/// has returned, so one node never runs a partition twice at once; a run that returns on its
/// own while the partition is still owned (its consumer could not be reached) is started
/// again after [`RESTART_PAUSE`].
pub async fn supervise_partitions<S, Fut>(
    mut ownership: watch::Receiver<Ownership>,
    mut start: S,
    shutdown: CancellationToken,
) where
    S: FnMut(u32, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running: BTreeMap<u32, (CancellationToken, tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    loop {
        let owned = ownership.borrow_and_update().clone();
        let now = Instant::now();
        let ended: Vec<u32> = running
            .keys()
            .copied()
            .filter(|p| owned.get(p).is_none_or(|until| *until <= now))
            .collect();
        for p in ended {
            if let Some((token, handle)) = running.remove(&p) {
                token.cancel();
                let _ = handle.await;
                tracing::debug!(partition = p, "partition stopped");
            }
        }
        let finished: Vec<u32> = running
            .iter()
            .filter(|(_, (_, handle))| handle.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for p in finished {
            running.remove(&p);
            tracing::debug!(partition = p, "partition run returned; started again");
        }
        for (&p, &until) in &owned {
            if until > now && !running.contains_key(&p) {
                let token = shutdown.child_token();
                let handle = tokio::spawn(start(p, token.clone()));
                running.insert(p, (token, handle));
                tracing::debug!(partition = p, "partition started");
            }
        }
        let next_fence = running
            .keys()
            .filter_map(|p| owned.get(p))
            .min()
            .copied()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = ownership.changed() => {
                if changed.is_err() {
                    // The lease manager is gone: nothing is owned any more.
                    break;
                }
            }
            () = async {
                match next_fence {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            // Notices runs that returned on their own.
            () = tokio::time::sleep(RESTART_PAUSE) => {}
        }
    }
    for (_, (token, handle)) in running {
        token.cancel();
        let _ = handle.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_run_while_owned_and_stop_at_their_fence() {
        let now = Instant::now();
        let (tx, rx) = watch::channel(Ownership::from([
            (0, now + Duration::from_millis(300)),
            (1, now + Duration::from_secs(30)),
        ]));
        let running = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let starts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let shutdown = CancellationToken::new();
        let supervisor = {
            let (running, starts) = (running.clone(), starts.clone());
            tokio::spawn(supervise_partitions(
                rx,
                move |p, token| {
                    let (running, starts) = (running.clone(), starts.clone());
                    async move {
                        let first = starts[p as usize].fetch_add(1, Ordering::SeqCst) == 0;
                        if p == 1 && first {
                            // Its consumer could not be reached: returns on its own.
                            return;
                        }
                        running[p as usize].fetch_add(1, Ordering::SeqCst);
                        token.cancelled().await;
                        running[p as usize].fetch_sub(1, Ordering::SeqCst);
                    }
                },
                shutdown.clone(),
            ))
        };
        let wait = |what: &'static str, cond: Box<dyn Fn() -> bool + Send>| async move {
            let start = Instant::now();
            while !cond() {
                assert!(start.elapsed() < Duration::from_secs(5), "{what}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let r = running.clone();
        wait("0 runs", Box::new(move || r[0].load(Ordering::SeqCst) == 1)).await;
        // Partition 0's fence passes without any renewal: stopped by time alone.
        let r = running.clone();
        wait(
            "0 stopped at its fence",
            Box::new(move || r[0].load(Ordering::SeqCst) == 0),
        )
        .await;
        assert!(now.elapsed() >= Duration::from_millis(300));
        // Partition 1 returned at once, and was started again.
        let r = running.clone();
        wait(
            "1 restarted",
            Box::new(move || r[1].load(Ordering::SeqCst) == 1),
        )
        .await;
        assert_eq!(starts[1].load(Ordering::SeqCst), 2);
        assert_eq!(
            starts[0].load(Ordering::SeqCst),
            1,
            "0 is not owned any more"
        );
        // The lease manager goes away: nothing is owned, everything stops.
        drop(tx);
        supervisor.await.expect("supervisor");
        assert_eq!(running[1].load(Ordering::SeqCst), 0);
    }
}
