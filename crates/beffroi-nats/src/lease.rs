//! Which node owns which partition: the pure decision. No I/O, no clock of its own — `now`
//! is passed in (a monotonic instant as a [`Duration`] since any origin), so tests drive it.
//!
//! # Model
//!
//! Two key-value buckets (JetStream KV, see [`crate::lease_kv`]):
//! - **members**: each node rewrites its own key every `renew_every`;
//! - **leases**: key `p<n>` holds the owner of partition `n`, written with compare-and-set
//!   on the key's revision (create if absent, update only from the revision read).
//!
//! # Expiry without trusting clocks
//!
//! An entry is *expired* for an observer when the observer has seen the same revision of it
//! for `ttl` on its own monotonic clock ([`Observed`]), measured at the start of its rounds
//! (so that rounds `renew_every` apart compare exactly). No wall-clock time travels between
//! nodes, so clock skew does not matter; only clock *rates* must agree. The owner, for its
//! part, considers a partition its own only until `ttl - renew_every / 4` after it *sent* its
//! last successful renewal ([`Node::owned`]). Another node read that revision no earlier than
//! it was sent; its round started at most one read's latency before, and it claims no earlier
//! than `ttl` after that start: the old owner has let go by then, as long as reading the
//! store takes less than `renew_every / 4`. A node that stops renewing (crashed,
//! partitioned, stalled) loses its partitions after at most `ttl + renew_every` from its last
//! renewal: the time for a peer to notice the unchanged revision, plus its next round.
//!
//! # Balance
//!
//! The desired owner of a partition is chosen by rendezvous hashing among the live members
//! (highest `hash(member, partition)` wins): every node computes the same answer from the
//! same membership, each member gets about `P / members` partitions, and a member joining or
//! leaving moves only the partitions it wins or held. A node releases a partition it holds
//! but no longer should (a member joined), and claims a partition it should own once it is
//! free or its lease expired. A lease of a dead holder expires even when the membership has
//! not yet noticed, and then the holder is passed over for that partition.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::partition::fnv1a32;

/// Lease timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// An entry whose revision has not changed for this long is expired.
    pub ttl: Duration,
    /// How often a node renews its membership and leases; well below `ttl` (a third).
    pub renew_every: Duration,
}

impl LeaseTiming {
    pub fn new(ttl: Duration) -> Self {
        LeaseTiming {
            ttl,
            renew_every: ttl / 3,
        }
    }
}

/// When this node first saw the current revision of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub revision: u64,
    pub since: Duration,
}

/// Revisions seen per key, and since when. A new revision restarts the clock.
#[derive(Clone, Debug, Default)]
pub struct Observations<K: Ord> {
    seen: BTreeMap<K, Observed>,
}

impl<K: Ord + Clone> Observations<K> {
    /// Records that `key` is at `revision` at `now`.
    pub fn observe(&mut self, key: &K, revision: u64, now: Duration) {
        match self.seen.get_mut(key) {
            Some(o) if o.revision == revision => {}
            _ => {
                self.seen.insert(
                    key.clone(),
                    Observed {
                        revision,
                        since: now,
                    },
                );
            }
        }
    }

    pub fn forget(&mut self, key: &K) {
        self.seen.remove(key);
    }

    /// The key was seen, at one revision, for `ttl` or more.
    pub fn expired(&self, key: &K, now: Duration, ttl: Duration) -> bool {
        self.seen
            .get(key)
            .is_some_and(|o| now.saturating_sub(o.since) >= ttl)
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.seen.keys()
    }
}

/// A lease as read from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseEntry {
    /// No key, or a deletion marker at this revision (0: never written).
    Free {
        revision: u64,
    },
    Held {
        owner: String,
        revision: u64,
    },
}

impl LeaseEntry {
    pub fn revision(&self) -> u64 {
        match self {
            LeaseEntry::Free { revision } | LeaseEntry::Held { revision, .. } => *revision,
        }
    }
}

/// A write the adapter must attempt (each one a compare-and-set on `revision`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write us as owner over this revision (0: create).
    Claim { partition: u32, revision: u64 },
    /// Rewrite our lease to prove we are alive.
    Renew { partition: u32, revision: u64 },
    /// Delete our lease so its desired owner can take it.
    Release { partition: u32, revision: u64 },
}

/// The desired owner of `partition` among `members` (rendezvous hashing), if any.
pub fn desired_owner<'a>(
    members: impl IntoIterator<Item = &'a str>,
    partition: u32,
) -> Option<&'a str> {
    members
        .into_iter()
        .max_by_key(|m| (rendezvous_weight(m, partition), *m))
}

fn rendezvous_weight(member: &str, partition: u32) -> u32 {
    let mut key = Vec::with_capacity(member.len() + 5);
    key.extend_from_slice(member.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    // FNV-1a alone mixes the last bytes poorly; finish with a multiply-xorshift.
    let mut h = fnv1a32(&key);
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

/// Whether a holder gives a lease up to a member that hashes higher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Partitions move to their desired owner as members join: the load spreads.
    #[default]
    Rendezvous,
    /// A holder keeps its lease for as long as it renews it; a free lease goes to the first
    /// member that claims it, an expired one to the desired owner among the others. For a
    /// single lease naming the one node that acts (the active engine), where a move costs a
    /// restore and a member joining must not cause one.
    Sticky,
}

/// One node's view and decisions.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub partitions: u32,
    pub timing: LeaseTiming,
    pub balance: Balance,
    members: Observations<String>,
    leases: Observations<u32>,
    /// Partitions we hold: the revision we wrote, and when we sent that write.
    mine: BTreeMap<u32, (u64, Duration)>,
}

impl Node {
    pub fn new(id: impl Into<String>, partitions: u32, timing: LeaseTiming) -> Self {
        Node {
            id: id.into(),
            partitions,
            timing,
            balance: Balance::default(),
            members: Observations::default(),
            leases: Observations::default(),
            mine: BTreeMap::new(),
        }
    }

    /// Records the membership read at `now`: member id → revision of its key.
    pub fn observe_members(&mut self, members: &BTreeMap<String, u64>, now: Duration) {
        for (m, rev) in members {
            self.members.observe(m, *rev, now);
        }
        let gone: Vec<String> = self
            .members
            .keys()
            .filter(|m| !members.contains_key(*m))
            .cloned()
            .collect();
        for m in gone {
            self.members.forget(&m);
        }
    }

    /// Live members at `now`: seen changing within `ttl`, and ourselves.
    pub fn live_members(&self, now: Duration) -> BTreeSet<String> {
        let mut live: BTreeSet<String> = self
            .members
            .keys()
            .filter(|m| !self.members.expired(m, now, self.timing.ttl))
            .cloned()
            .collect();
        live.insert(self.id.clone());
        live
    }

    /// Decides this round's writes from the leases read at `now` (one per partition).
    pub fn plan(&mut self, leases: &BTreeMap<u32, LeaseEntry>, now: Duration) -> Vec<Action> {
        let live = self.live_members(now);
        let mut actions = Vec::new();
        for partition in 0..self.partitions {
            let entry = leases
                .get(&partition)
                .cloned()
                .unwrap_or(LeaseEntry::Free { revision: 0 });
            let revision = entry.revision();
            self.leases.observe(&partition, revision, now);
            match entry {
                LeaseEntry::Held { owner, .. } if owner == self.id => {
                    // Ours in the store; keep it only while we can still renew in time. A
                    // lease whose fence passed was given up (the work stopped): renewing it
                    // would hand it back behind the work's back, so it is released.
                    let desired = desired_owner(live.iter().map(String::as_str), partition);
                    let fresh = self.owned(now).contains(&partition);
                    if fresh
                        && (self.balance == Balance::Sticky || desired == Some(self.id.as_str()))
                    {
                        actions.push(Action::Renew {
                            partition,
                            revision,
                        });
                    } else {
                        self.mine.remove(&partition);
                        actions.push(Action::Release {
                            partition,
                            revision,
                        });
                    }
                }
                LeaseEntry::Held { owner, .. } => {
                    self.mine.remove(&partition);
                    if self.leases.expired(&partition, now, self.timing.ttl) {
                        // The holder stopped renewing: pass it over.
                        let candidates = live.iter().filter(|m| **m != owner);
                        if desired_owner(candidates.map(String::as_str), partition)
                            == Some(self.id.as_str())
                        {
                            actions.push(Action::Claim {
                                partition,
                                revision,
                            });
                        }
                    }
                }
                LeaseEntry::Free { .. } => {
                    self.mine.remove(&partition);
                    // Sticky: the first to ask gets it (compare-and-set decides), rather than
                    // wait for a member that may be the one that just left.
                    if self.balance == Balance::Sticky
                        || desired_owner(live.iter().map(String::as_str), partition)
                            == Some(self.id.as_str())
                    {
                        actions.push(Action::Claim {
                            partition,
                            revision,
                        });
                    }
                }
            }
        }
        actions
    }

    /// The adapter reports a successful claim or renewal, written at `revision`, whose
    /// request was sent at `sent_at`.
    pub fn confirmed(&mut self, partition: u32, revision: u64, sent_at: Duration) {
        self.mine.insert(partition, (revision, sent_at));
        self.leases.observe(&partition, revision, sent_at);
    }

    /// A claim or renewal failed (lost the compare-and-set, or the store is unreachable).
    /// A lost CAS means someone else wrote: the partition is not ours any more. An
    /// unreachable store keeps the lease until its own expiry ([`Node::owned`]).
    pub fn refused(&mut self, partition: u32) {
        self.mine.remove(&partition);
    }

    /// Partitions this node may process at `now`: confirmed, and renewed less than
    /// `ttl - renew_every / 4` ago (counted from when the renewal was sent; the margin covers
    /// the latency of a peer's reads, see the module doc).
    pub fn owned(&self, now: Duration) -> BTreeSet<u32> {
        let horizon = self.timing.ttl.saturating_sub(self.timing.renew_every / 4);
        self.mine
            .iter()
            .filter(|(_, (_, sent))| now.saturating_sub(*sent) < horizon)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The partitions owned at `now`, each with the instant (same origin as `now`) at which
    /// its ownership ends unless renewed: the fence a partition's processing must not cross.
    pub fn owned_until(&self, now: Duration) -> BTreeMap<u32, Duration> {
        let horizon = self.timing.ttl.saturating_sub(self.timing.renew_every / 4);
        self.mine
            .iter()
            .map(|(p, (_, sent))| (*p, *sent + horizon))
            .filter(|(_, until)| *until > now)
            .collect()
    }

    /// The leases this node holds in the store as far as it knows: (partition, revision
    /// written), to release them when it stops on purpose.
    pub fn held(&self) -> Vec<(u32, u64)> {
        self.mine.iter().map(|(p, (rev, _))| (*p, *rev)).collect()
    }

    /// Forgets every lease (the node stops; its leases expire for the others).
    pub fn stop(&mut self) {
        self.mine.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A compare-and-set store, as JetStream KV behaves.
    #[derive(Default)]
    struct SimKv {
        leases: BTreeMap<u32, LeaseEntry>,
        members: BTreeMap<String, u64>,
        next_revision: u64,
    }

    impl SimKv {
        fn bump(&mut self) -> u64 {
            self.next_revision += 1;
            self.next_revision
        }

        fn apply(&mut self, node: &mut Node, actions: Vec<Action>, now: Duration) {
            for a in actions {
                match a {
                    Action::Claim {
                        partition,
                        revision,
                    }
                    | Action::Renew {
                        partition,
                        revision,
                    } => {
                        let current = self
                            .leases
                            .get(&partition)
                            .map(LeaseEntry::revision)
                            .unwrap_or(0);
                        if current == revision {
                            let rev = self.bump();
                            self.leases.insert(
                                partition,
                                LeaseEntry::Held {
                                    owner: node.id.clone(),
                                    revision: rev,
                                },
                            );
                            node.confirmed(partition, rev, now);
                        } else {
                            node.refused(partition);
                        }
                    }
                    Action::Release {
                        partition,
                        revision,
                    } => {
                        let current = self
                            .leases
                            .get(&partition)
                            .map(LeaseEntry::revision)
                            .unwrap_or(0);
                        if current == revision {
                            let rev = self.bump();
                            self.leases
                                .insert(partition, LeaseEntry::Free { revision: rev });
                        }
                    }
                }
            }
        }

        /// One round of `node` at `now`: heartbeat, read, plan, write.
        fn round(&mut self, node: &mut Node, now: Duration) {
            let rev = self.bump();
            self.members.insert(node.id.clone(), rev);
            node.observe_members(&self.members.clone(), now);
            let leases = self.leases.clone();
            let actions = node.plan(&leases, now);
            self.apply(node, actions, now);
        }
    }

    /// A member that wins partition 0 by rendezvous against `a`.
    fn above_a() -> &'static str {
        ["b", "c", "d", "e", "f", "g"]
            .into_iter()
            .find(|m| desired_owner(["a", m], 0) == Some(*m))
            .expect("some member hashes above a")
    }

    fn timing() -> LeaseTiming {
        LeaseTiming {
            ttl: Duration::from_millis(3000),
            renew_every: Duration::from_millis(1000),
        }
    }

    /// Runs `nodes` in rounds of `step`; `alive(i, now)` says whether node i still runs.
    /// Checks at every step that no partition is owned by two nodes; returns the time at
    /// which `done` first held.
    fn simulate(
        nodes: &mut [Node],
        kv: &mut SimKv,
        step: Duration,
        until: Duration,
        alive: impl Fn(usize, Duration) -> bool,
        done: impl Fn(&[Node], Duration) -> bool,
    ) -> Option<Duration> {
        let mut now = Duration::ZERO;
        while now <= until {
            for (i, node) in nodes.iter_mut().enumerate() {
                // Nodes renew on their own schedule; offset them a little.
                let phase = step * u32::try_from(i).unwrap_or(0) / 7;
                let t = now + phase;
                if alive(i, t) {
                    kv.round(node, t);
                } else {
                    node.stop();
                }
            }
            let mut seen = BTreeSet::new();
            for node in nodes.iter() {
                for p in node.owned(now) {
                    assert!(seen.insert(p), "partition {p} owned twice at {now:?}");
                }
            }
            if done(nodes, now) {
                return Some(now);
            }
            now += step;
        }
        None
    }

    fn all_owned(nodes: &[Node], now: Duration, partitions: u32) -> bool {
        let owned: BTreeSet<u32> = nodes.iter().flat_map(|n| n.owned(now)).collect();
        owned.len() == partitions as usize
    }

    #[test]
    fn ownership_ends_at_its_fence() {
        let t = timing();
        let mut node = Node::new("a", 2, t);
        let mut kv = SimKv::default();
        kv.round(&mut node, Duration::ZERO);
        let until = node.owned_until(Duration::ZERO);
        assert_eq!(until.len(), 2);
        let fence = until.values().copied().max().unwrap_or_default();
        assert_eq!(fence, t.ttl - t.renew_every / 4);
        assert_eq!(node.owned(fence - Duration::from_millis(1)).len(), 2);
        assert!(node.owned(fence).is_empty());
        assert!(node.owned_until(fence).is_empty());
    }

    #[test]
    fn rendezvous_is_balanced_and_moves_little() {
        let three = ["a", "b", "c"];
        let mut counts = BTreeMap::new();
        for p in 0..300 {
            *counts
                .entry(desired_owner(three, p).unwrap_or_default())
                .or_insert(0) += 1;
        }
        assert!(
            counts.values().all(|&c| (70..=130).contains(&c)),
            "{counts:?}"
        );
        // Removing c moves only c's partitions.
        for p in 0..300 {
            let before = desired_owner(three, p);
            let after = desired_owner(["a", "b"], p);
            if before != Some("c") {
                assert_eq!(before, after);
            }
        }
    }

    /// A sticky lease stays with its holder when a member that hashes higher joins (a
    /// rendezvous lease moves to it), and still passes to a live member once the holder
    /// stops renewing.
    #[test]
    fn a_sticky_lease_stays_with_its_holder_until_it_stops() {
        let t = timing();
        // A newcomer that wins partition 0 by rendezvous against `a`.
        let newcomer = above_a();
        for (balance, stays) in [(Balance::Sticky, true), (Balance::Rendezvous, false)] {
            let mut a = Node::new("a", 1, t);
            a.balance = balance;
            let mut kv = SimKv::default();
            kv.round(&mut a, Duration::ZERO);
            assert_eq!(a.owned(Duration::ZERO).len(), 1);
            let mut b = Node::new(newcomer, 1, t);
            b.balance = balance;
            let mut nodes = vec![a, b];
            let settled = simulate(
                &mut nodes,
                &mut kv,
                t.renew_every,
                Duration::from_secs(20),
                |_, _| true,
                |_, now| now >= Duration::from_secs(15),
            );
            assert!(settled.is_some());
            let now = Duration::from_secs(15);
            assert_eq!(nodes[0].owned(now).len() == 1, stays, "{balance:?}");
            assert_eq!(nodes[1].owned(now).len() == 1, !stays, "{balance:?}");
        }
        // The sticky holder stops: the other takes over.
        let mut nodes = vec![Node::new("a", 1, t), Node::new(newcomer, 1, t)];
        for n in &mut nodes {
            n.balance = Balance::Sticky;
        }
        let mut kv = SimKv::default();
        kv.round(&mut nodes[0], Duration::ZERO);
        let stop = Duration::from_secs(10);
        let took = simulate(
            &mut nodes,
            &mut kv,
            t.renew_every,
            Duration::from_secs(30),
            |i, now| i == 1 || now < stop,
            |n, now| now >= stop && n[1].owned(now).len() == 1,
        )
        .expect("the other node took over");
        assert!(
            took - stop <= t.ttl + 2 * t.renew_every,
            "{:?}",
            took - stop
        );
    }

    /// A sticky lease released by its holder (a node stopping on purpose) is claimed by a
    /// standby at its next round, even while the leaver still counts as a live member that
    /// hashes higher.
    #[test]
    fn a_released_sticky_lease_is_claimed_at_the_next_round() {
        let t = timing();
        let leaver = above_a();
        let mut holder = Node::new(leaver, 1, t);
        holder.balance = Balance::Sticky;
        let mut standby = Node::new("a", 1, t);
        standby.balance = Balance::Sticky;
        let mut kv = SimKv::default();
        kv.round(&mut holder, Duration::ZERO);
        kv.round(&mut standby, Duration::from_millis(10));
        assert_eq!(holder.owned(Duration::from_millis(10)).len(), 1);
        assert!(standby.owned(Duration::from_millis(10)).is_empty());
        // The holder releases its lease (compare-and-set on the revision it wrote).
        let (partition, revision) = holder.held()[0];
        let at = Duration::from_millis(500);
        kv.apply(
            &mut holder,
            vec![Action::Release {
                partition,
                revision,
            }],
            at,
        );
        holder.stop();
        kv.round(&mut standby, t.renew_every);
        assert_eq!(
            standby.owned(t.renew_every).len(),
            1,
            "claimed at the next round, not after the leaver's membership expired"
        );
    }

    #[test]
    fn two_nodes_share_then_one_takes_over_within_ttl_plus_renewal() {
        let t = timing();
        let p = 12;
        let mut nodes = vec![Node::new("a", p, t), Node::new("b", p, t)];
        let mut kv = SimKv::default();
        let step = t.renew_every;
        // Both alive: converge to a balanced split.
        let at = simulate(
            &mut nodes,
            &mut kv,
            step,
            Duration::from_secs(60),
            |_, _| true,
            |n, now| all_owned(n, now, p) && n.iter().all(|x| !x.owned(now).is_empty()),
        );
        assert!(at.is_some(), "never converged");
        let split: Vec<usize> = nodes
            .iter()
            .map(|n| n.owned(at.unwrap_or_default()).len())
            .collect();
        assert!(split.iter().all(|&c| c >= 2), "{split:?}");
        // b stops at 100 s: a owns everything within ttl + renew_every (+ one step of
        // observation granularity).
        let stop = Duration::from_secs(100);
        let done_at = simulate(
            &mut nodes,
            &mut kv,
            step,
            Duration::from_secs(200),
            |i, now| i == 0 || now < stop,
            |n, now| now >= stop && n[0].owned(now).len() == p as usize,
        );
        let done_at = done_at.expect("a never took over");
        let takeover = done_at - stop;
        assert!(
            takeover <= t.ttl + t.renew_every + step,
            "takeover took {takeover:?}"
        );
    }

    proptest! {
        #[test]
        fn never_two_owners_and_all_owned_after_a_crash(
            n in 2usize..5,
            partitions in 1u32..24,
            crash in 0usize..5,
            crash_at_s in 5u64..40,
        ) {
            let t = timing();
            let mut nodes: Vec<Node> =
                (0..n).map(|i| Node::new(format!("node-{i}"), partitions, t)).collect();
            let mut kv = SimKv::default();
            let crash = crash % n;
            let crash_at = Duration::from_secs(crash_at_s);
            let step = Duration::from_millis(500);
            let done = simulate(
                &mut nodes,
                &mut kv,
                step,
                Duration::from_secs(120),
                |i, now| i != crash || now < crash_at,
                |ns, now| {
                    now >= crash_at + t.ttl + t.renew_every + step * 2
                        && all_owned(ns, now, partitions)
                },
            );
            prop_assert!(done.is_some());
            let done = done.unwrap_or_default();
            // Only survivors own, and each partition by its rendezvous owner among them.
            for p in 0..partitions {
                let owner: Vec<&str> = nodes
                    .iter()
                    .filter(|x| x.owned(done).contains(&p))
                    .map(|x| x.id.as_str())
                    .collect();
                let survivors = nodes.iter().enumerate().filter(|(i, _)| *i != crash).map(|(_, x)| x.id.as_str());
                prop_assert_eq!(owner, vec![desired_owner(survivors, p).unwrap_or_default()]);
            }
        }
    }
}
