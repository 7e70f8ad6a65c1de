//! Against real NATS servers from the testkit (skipped without nats-server 2.10+, unless
//! `BEFFROI_REQUIRE_SERVICES=1`). Every wait is on a condition with a deadline.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beffroi_nats::consume::{self, ConsumeConfig, ConsumeStats, Delivered};
use beffroi_nats::lease::LeaseTiming;
use beffroi_nats::lease_kv::{LeaseManager, ensure_buckets};
use beffroi_nats::partition::partition_of;
use beffroi_nats::publish::{Outgoing, Publisher};
use beffroi_nats::stream::{IngestLayout, ensure_ingest_stream};
use beffroi_nats::subject::IngestSubject;
use beffroi_testkit::nats::NatsCluster;
use tokio_util::sync::CancellationToken;

/// One cluster at a time: the timings these tests measure (takeover, rates) mean little on
/// two cores shared by three clusters.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn reading(i: usize) -> Outgoing {
    Outgoing {
        subject: IngestSubject {
            territory: "dijon".into(),
            commune: format!("commune {}", i % 23),
            device: format!("capteur.{}", i % 97),
            kind: "senml".into(),
        },
        msg_id: format!("r-{i}"),
        payload: format!(r#"[{{"n":"level","v":{i}}}]"#).into(),
    }
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes.
async fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_partitions_as_partition_of_predicts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(nats) = NatsCluster::start(1) else {
        return;
    };
    let client = beffroi_nats::connect(&nats.urls(), "test")
        .await
        .expect("connect");
    let js = beffroi_nats::async_nats::jetstream::new(client);
    let layout = IngestLayout::new("dijon", 8, 1);
    let stream = ensure_ingest_stream(&js, &layout).await.expect("stream");
    // Idempotent: a second call finds the same stream.
    ensure_ingest_stream(&js, &layout).await.expect("again");
    // Another partition count is refused, not applied.
    let other = IngestLayout::new("dijon", 9, 1);
    assert!(ensure_ingest_stream(&js, &other).await.is_err());

    let publisher = Publisher::new(js.clone());
    let readings: Vec<Outgoing> = (0..200).map(reading).collect();
    let stored = publisher.publish_batch(&readings).await;
    for (r, s) in readings.iter().zip(stored) {
        let s = s.expect("stored");
        let raw = stream.get_raw_message(s.sequence).await.expect("get");
        let (subject, partition) = IngestSubject::parse(raw.subject.as_str()).expect("parse");
        assert_eq!(subject, r.subject);
        assert_eq!(
            partition,
            Some(partition_of(
                layout.key,
                &r.subject.commune,
                &r.subject.device,
                8
            )),
            "{}",
            raw.subject
        );
    }
    // The same ids again: stored once.
    let again = publisher.publish_batch(&readings[..10]).await;
    assert!(again.iter().all(|s| s.as_ref().is_ok_and(|s| s.duplicate)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_reading_is_committed_across_a_node_kill() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = NatsCluster::start(3) else {
        return;
    };
    let client = beffroi_nats::connect(&cluster.urls(), "test")
        .await
        .expect("connect");
    let js = beffroi_nats::async_nats::jetstream::new(client);
    let partitions = 4;
    let layout = IngestLayout::new("dijon", partitions, 3);
    let stream = ensure_ingest_stream(&js, &layout).await.expect("stream");
    let cfg = ConsumeConfig {
        batch_max: 64,
        max_wait: Duration::from_millis(100),
        ack_wait: Duration::from_secs(3),
        retry_pause: Duration::from_millis(100),
    };

    // The "store": readings by message id, with how many times each was committed.
    let store: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let stats = Arc::new(ConsumeStats::default());
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let consumer = consume::ensure_partition_consumer(&stream, &layout, p, &cfg)
            .await
            .expect("consumer");
        let store = store.clone();
        tasks.push(tokio::spawn(consume::run_partition(
            consumer,
            p,
            cfg.clone(),
            stats.clone(),
            shutdown.clone(),
            move |batch: Vec<Delivered>| {
                let store = store.clone();
                async move {
                    let mut s = store.lock().map_err(|_| "poisoned")?;
                    for d in batch {
                        assert_eq!(d.partition, p);
                        *s.entry(d.msg_id.unwrap_or_default()).or_insert(0) += 1;
                    }
                    Ok::<(), &str>(())
                }
            },
        )));
    }

    // The node leading the stream is the one to kill.
    let leader = stream_leader(&js, &layout).await;
    let victim = (0..cluster.len())
        .find(|&i| cluster.name(i) == leader)
        .unwrap_or(0);

    let n = 3000;
    let batch = 100;
    let mut publisher = Publisher::new(js.clone());
    publisher.deadline = Duration::from_secs(30);
    let started = Instant::now();
    let mut acked = BTreeSet::new();
    let mut before_kill = Duration::ZERO;
    for chunk in (0..n).collect::<Vec<_>>().chunks(batch) {
        if chunk[0] == n / 2 {
            before_kill = started.elapsed();
            cluster.kill(victim);
            eprintln!("killed {leader} (stream leader) after {} readings", n / 2);
        }
        let readings: Vec<Outgoing> = chunk.iter().map(|&i| reading(i)).collect();
        for (r, s) in readings
            .iter()
            .zip(publisher.publish_batch(&readings).await)
        {
            s.unwrap_or_else(|e| panic!("{} not stored: {e}", r.msg_id));
            acked.insert(r.msg_id.clone());
        }
    }
    let publish_time = started.elapsed();

    wait_for("every reading committed", Duration::from_secs(60), || {
        store.lock().map(|s| s.len()).unwrap_or(0) >= n
    })
    .await;
    let consume_time = started.elapsed();
    shutdown.cancel();
    for t in tasks {
        t.await.expect("partition task");
    }

    let store = store.lock().expect("store").clone();
    let committed: BTreeSet<String> = store.keys().cloned().collect();
    assert_eq!(
        committed, acked,
        "committed readings differ from acknowledged ones"
    );
    let mut info = js
        .get_stream(layout.stream_name())
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone();
    assert_eq!(
        info.state.messages, n as u64,
        "retried publishes must be stored once"
    );
    let twice = store.values().filter(|&&c| c > 1).count();
    let ps = &publisher.stats;
    eprintln!(
        "published {} readings before the kill in {before_kill:?} ({:.0}/s); \
         published {n} readings in {publish_time:?} ({:.0}/s, retries {}, duplicates {}); \
         all committed after {consume_time:?}; batches {}, acks {} (checked {}, withheld {}), \
         redelivered {}, committed twice {twice}, fetch failures {}",
        n / 2,
        (n / 2) as f64 / before_kill.as_secs_f64(),
        n as f64 / publish_time.as_secs_f64(),
        ps.retries.load(Ordering::Relaxed),
        ps.duplicates.load(Ordering::Relaxed),
        stats.batches.load(Ordering::Relaxed),
        stats.acks.load(Ordering::Relaxed),
        stats.acks_checked.load(Ordering::Relaxed),
        stats.acks_withheld.load(Ordering::Relaxed),
        stats.redelivered.load(Ordering::Relaxed),
        stats.fetch_failures.load(Ordering::Relaxed),
    );
    // The node comes back and catches up.
    cluster.restart(victim);
    info = js
        .get_stream(layout.stream_name())
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone();
    assert_eq!(info.state.messages, n as u64);
}

async fn stream_leader(
    js: &beffroi_nats::async_nats::jetstream::Context,
    layout: &IngestLayout,
) -> String {
    let mut stream = js.get_stream(layout.stream_name()).await.expect("stream");
    let info = stream.info().await.expect("info");
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_renewing_loses_its_partitions_within_ttl() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = NatsCluster::start(3) else {
        return;
    };
    let client = beffroi_nats::connect(&cluster.urls(), "test")
        .await
        .expect("connect");
    let js = beffroi_nats::async_nats::jetstream::new(client);
    let timing = LeaseTiming {
        ttl: Duration::from_secs(3),
        renew_every: Duration::from_secs(1),
    };
    let partitions = 8;
    let (members, leases) = ensure_buckets(&js, "dijon", 3, timing)
        .await
        .expect("buckets");
    let a = LeaseManager::new(
        "node-a",
        partitions,
        timing,
        members.clone(),
        leases.clone(),
    )
    .expect("a");
    let b = LeaseManager::new("node-b", partitions, timing, members, leases).expect("b");
    let (own_a, own_b) = (a.ownership(), b.ownership());
    let owned_of =
        |rx: &tokio::sync::watch::Receiver<beffroi_nats::lease_kv::Ownership>| -> BTreeSet<u32> {
            let now = Instant::now();
            rx.borrow()
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(p, _)| *p)
                .collect()
        };
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let task_a = tokio::spawn(a.run(stop_a.clone()));
    let task_b = tokio::spawn(b.run(stop_b.clone()));

    let overlap = |a: &BTreeSet<u32>, b: &BTreeSet<u32>| a.intersection(b).count();
    let started = Instant::now();
    let deadline = Duration::from_secs(30);
    loop {
        let (sa, sb) = (owned_of(&own_a), owned_of(&own_b));
        assert_eq!(overlap(&sa, &sb), 0, "a {sa:?} and b {sb:?} overlap");
        if sa.len() + sb.len() == partitions as usize && !sa.is_empty() && !sb.is_empty() {
            eprintln!("shared after {:?}: a {sa:?}, b {sb:?}", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "never shared: a {sa:?}, b {sb:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // b stops renewing (as if it hung or died).
    stop_b.cancel();
    task_b.await.expect("b");
    let stopped = Instant::now();
    loop {
        let sa = owned_of(&own_a);
        if sa.len() == partitions as usize {
            break;
        }
        assert!(stopped.elapsed() < deadline, "a never took over: {sa:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = stopped.elapsed();
    eprintln!(
        "takeover of all {partitions} partitions: {takeover:?} (ttl {:?}, renew every {:?})",
        timing.ttl, timing.renew_every
    );
    // Bound: ttl + renew interval, plus a round's KV round trips and a loaded machine's
    // scheduling.
    assert!(
        takeover <= timing.ttl + timing.renew_every + Duration::from_secs(1),
        "takeover took {takeover:?}"
    );
    stop_a.cancel();
    task_a.await.expect("a");
}

/// A previous owner fetched a batch and died without acking it. The next owner's one-ack
/// per batch must not settle those messages: it withholds its ack until they are redelivered
/// (after `ack_wait`) and committed, then settles everything at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owners_batch_is_not_settled_by_the_next_owner() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(nats) = NatsCluster::start(1) else {
        return;
    };
    let client = beffroi_nats::connect(&nats.urls(), "test")
        .await
        .expect("connect");
    let js = beffroi_nats::async_nats::jetstream::new(client);
    let layout = IngestLayout::new("dijon", 1, 1);
    let stream = ensure_ingest_stream(&js, &layout).await.expect("stream");
    let cfg = ConsumeConfig {
        batch_max: 16,
        max_wait: Duration::from_millis(100),
        ack_wait: Duration::from_secs(3),
        retry_pause: Duration::from_millis(50),
    };
    let consumer = consume::ensure_partition_consumer(&stream, &layout, 0, &cfg)
        .await
        .expect("consumer");
    let publisher = Publisher::new(js.clone());
    let first: Vec<Outgoing> = (0..10).map(reading).collect();
    for r in publisher.publish_batch(&first).await {
        r.expect("stored");
    }
    // The dead owner: fetches 10, commits nothing, acks nothing.
    {
        use futures::StreamExt;
        let mut batch = consumer
            .batch()
            .max_messages(10)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        let mut got = 0;
        while let Some(m) = batch.next().await {
            m.expect("message");
            got += 1;
        }
        assert_eq!(got, 10);
    }
    let later: Vec<Outgoing> = (10..16).map(reading).collect();
    for r in publisher.publish_batch(&later).await {
        r.expect("stored");
    }

    let store: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let stats = Arc::new(ConsumeStats::default());
    let shutdown = CancellationToken::new();
    let task = {
        let store = store.clone();
        tokio::spawn(consume::run_partition(
            consumer.clone(),
            0,
            cfg.clone(),
            stats.clone(),
            shutdown.clone(),
            move |batch: Vec<Delivered>| {
                let store = store.clone();
                async move {
                    let mut s = store.lock().map_err(|_| "poisoned")?;
                    for d in batch {
                        *s.entry(d.msg_id.unwrap_or_default()).or_insert(0) += 1;
                    }
                    Ok::<(), &str>(())
                }
            },
        ))
    };
    // The new owner gets 10..16 first; its ack must wait for 0..10.
    wait_for("the later readings", Duration::from_secs(10), || {
        store.lock().map(|s| s.len()).unwrap_or(0) >= 6
    })
    .await;
    let pending = consumer.get_info().await.expect("info").num_ack_pending;
    assert_eq!(
        pending, 16,
        "nothing settled while the dead owner's batch is out"
    );
    wait_for("every reading committed", Duration::from_secs(20), || {
        store.lock().map(|s| s.len()).unwrap_or(0) >= 16
    })
    .await;
    let start = Instant::now();
    loop {
        let info = consumer.get_info().await.expect("info");
        if info.num_ack_pending == 0 && info.ack_floor.stream_sequence == 16 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never settled: {} pending, floor {}",
            info.num_ack_pending,
            info.ack_floor.stream_sequence
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "acks {}, checked {}, withheld {}, redelivered {}",
        stats.acks.load(Ordering::Relaxed),
        stats.acks_checked.load(Ordering::Relaxed),
        stats.acks_withheld.load(Ordering::Relaxed),
        stats.redelivered.load(Ordering::Relaxed),
    );
    assert!(stats.acks_withheld.load(Ordering::Relaxed) >= 1);
    shutdown.cancel();
    task.await.expect("task");
}

/// Two nodes share the partitions, each running only the partitions it owns. Node b's lease
/// manager loses the store (its only server is killed) while b's consumers keep running:
/// b must stop them at its leases' fence, by time alone, and a takes over. No partition is
/// ever committed by both at once, and every acknowledged reading is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_to_the_survivor_and_are_never_processed_twice_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    use beffroi_nats::lease_kv::supervise_partitions;
    use std::sync::atomic::AtomicI32;

    let Some(mut cluster) = NatsCluster::start(3) else {
        return;
    };
    let urls = cluster.urls();
    let connect_all = || beffroi_nats::connect(&urls, "test");
    let js = beffroi_nats::async_nats::jetstream::new(connect_all().await.expect("connect"));
    let partitions = 4;
    let layout = IngestLayout::new("dijon", partitions, 3);
    let stream = ensure_ingest_stream(&js, &layout).await.expect("stream");
    let cfg = ConsumeConfig {
        batch_max: 32,
        max_wait: Duration::from_millis(100),
        ack_wait: Duration::from_secs(3),
        retry_pause: Duration::from_millis(100),
    };
    for p in 0..partitions {
        consume::ensure_partition_consumer(&stream, &layout, p, &cfg)
            .await
            .expect("consumer");
    }
    let timing = LeaseTiming {
        ttl: Duration::from_secs(3),
        renew_every: Duration::from_secs(1),
    };
    ensure_buckets(&js, "dijon", 3, timing)
        .await
        .expect("buckets");

    let store: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let in_commit: Arc<Vec<AtomicI32>> =
        Arc::new((0..partitions).map(|_| AtomicI32::new(0)).collect());
    let stats = Arc::new(ConsumeStats::default());
    let stop = CancellationToken::new();

    // b's lease manager talks to node 2 only, and does not fail over.
    let b_lease_client = beffroi_nats::async_nats::ConnectOptions::new()
        .ignore_discovered_servers()
        .connect(cluster.url(2))
        .await
        .expect("connect b");
    let mut tasks = Vec::new();
    let mut ownerships = Vec::new();
    // Since when node-a has owned every partition (None: it does not).
    let all_since: Arc<Mutex<Option<Instant>>> = Arc::default();
    let t0 = Instant::now();
    for (name, lease_js) in [
        ("node-a", js.clone()),
        (
            "node-b",
            beffroi_nats::async_nats::jetstream::new(b_lease_client),
        ),
    ] {
        let (members, leases) = ensure_buckets(&lease_js, "dijon", 3, timing)
            .await
            .expect("buckets");
        let manager =
            LeaseManager::new(name, partitions, timing, members, leases).expect("manager");
        let ownership = manager.ownership();
        ownerships.push(manager.ownership());
        {
            let mut watch = manager.ownership();
            let all_since = all_since.clone();
            tokio::spawn(async move {
                while watch.changed().await.is_ok() {
                    let owned: Vec<u32> = watch.borrow_and_update().keys().copied().collect();
                    eprintln!("{:>8.3?} {name} owns {owned:?}", t0.elapsed());
                    if name == "node-a"
                        && let Ok(mut since) = all_since.lock()
                    {
                        let all = owned.len() == partitions as usize;
                        match (*since, all) {
                            (None, true) => *since = Some(Instant::now()),
                            (Some(_), false) => *since = None,
                            _ => {}
                        }
                    }
                }
            });
        }
        let lease_stop = stop.child_token();
        tasks.push(tokio::spawn(manager.run(lease_stop.clone())));
        // The node's consumers use their own connection to every server.
        let node_js =
            beffroi_nats::async_nats::jetstream::new(connect_all().await.expect("connect"));
        let (store, in_commit, stats, cfg, layout) = (
            store.clone(),
            in_commit.clone(),
            stats.clone(),
            cfg.clone(),
            layout.clone(),
        );
        tasks.push(tokio::spawn(supervise_partitions(
            ownership,
            move |p, token| {
                let (node_js, store, in_commit, stats, cfg, layout) = (
                    node_js.clone(),
                    store.clone(),
                    in_commit.clone(),
                    stats.clone(),
                    cfg.clone(),
                    layout.clone(),
                );
                async move {
                    let consumer = loop {
                        let found = async {
                            let stream = node_js.get_stream(layout.stream_name()).await.ok()?;
                            consume::ensure_partition_consumer(&stream, &layout, p, &cfg)
                                .await
                                .ok()
                        }
                        .await;
                        match found {
                            Some(c) => break c,
                            None if token.is_cancelled() => return,
                            None => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    };
                    eprintln!(
                        "{:>8.3?} {name}: partition {p} consumer ready",
                        t0.elapsed()
                    );
                    consume::run_partition(
                        consumer,
                        p,
                        cfg,
                        stats,
                        token,
                        move |batch: Vec<Delivered>| {
                            let (store, in_commit) = (store.clone(), in_commit.clone());
                            async move {
                                let slot = &in_commit[p as usize];
                                assert_eq!(
                                    slot.fetch_add(1, Ordering::SeqCst),
                                    0,
                                    "partition {p} committed twice at once"
                                );
                                // A commit takes a little while, as a store's would.
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                if let Ok(mut s) = store.lock() {
                                    for d in batch {
                                        *s.entry(d.msg_id.unwrap_or_default()).or_insert(0) += 1;
                                    }
                                }
                                slot.fetch_sub(1, Ordering::SeqCst);
                                Ok::<(), &str>(())
                            }
                        },
                    )
                    .await;
                    eprintln!("{name}: partition {p} stopped");
                }
            },
            stop.clone(),
        )));
    }

    // Steady state first: each node owns its rendezvous share.
    let (own_a, own_b) = (ownerships[0].clone(), ownerships[1].clone());
    let owned_count =
        |rx: &tokio::sync::watch::Receiver<beffroi_nats::lease_kv::Ownership>| rx.borrow().len();
    wait_for("both nodes own partitions", Duration::from_secs(30), || {
        let (a, b) = (owned_count(&own_a), owned_count(&own_b));
        a > 0 && b > 0 && a + b == partitions as usize
    })
    .await;

    let publisher = Publisher::new(js.clone());
    let n = 2000;
    let mut acked = BTreeSet::new();
    let mut killed_at = None;
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        if chunk[0] == n / 2 {
            cluster.kill(2);
            killed_at = Some(Instant::now());
            eprintln!("killed n2: node-b's lease manager lost the store");
        }
        let readings: Vec<Outgoing> = chunk.iter().map(|&i| reading(i)).collect();
        for (r, s) in readings
            .iter()
            .zip(publisher.publish_batch(&readings).await)
        {
            s.unwrap_or_else(|e| panic!("{} not stored: {e}", r.msg_id));
            acked.insert(r.msg_id.clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = killed_at.map(|k| k.elapsed()).unwrap_or_default();
    wait_for("every reading committed", Duration::from_secs(60), || {
        store.lock().map(|s| s.len()).unwrap_or(0) >= n
    })
    .await;
    wait_for("node-a owning everything", Duration::from_secs(30), || {
        owned_count(&own_a) == partitions as usize
    })
    .await;
    let killed_at = killed_at.expect("killed");
    let took_over = all_since
        .lock()
        .ok()
        .and_then(|s| *s)
        .map(|s| s.saturating_duration_since(killed_at))
        .unwrap_or_default();
    eprintln!(
        "node-a owned all {partitions} partitions {took_over:?} after node-b lost the store \
         (ttl {:?}, renew every {:?}; the kill may also cost the buckets a leader election)",
        timing.ttl, timing.renew_every
    );
    let all_done = killed_at.elapsed();
    let committed: BTreeSet<String> = store.lock().expect("store").keys().cloned().collect();
    assert_eq!(committed, acked);
    eprintln!(
        "all {n} published {published:?} and committed {all_done:?} after the kill; batches {}, acks {} (checked {}, withheld {}), redelivered {}",
        stats.batches.load(Ordering::Relaxed),
        stats.acks.load(Ordering::Relaxed),
        stats.acks_checked.load(Ordering::Relaxed),
        stats.acks_withheld.load(Ordering::Relaxed),
        stats.redelivered.load(Ordering::Relaxed),
    );
    stop.cancel();
    for t in tasks {
        t.await.expect("task");
    }
}

/// Rates on a 3-node cluster (R3, file storage), printed for BENCHMARKS-style notes, not
/// asserted: publishing in batches of 500 with acks, then consuming 4 partitions in batches
/// of 256 with one ack per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_consume_rates() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = NatsCluster::start(3) else {
        return;
    };
    let client = beffroi_nats::connect(&cluster.urls(), "test")
        .await
        .expect("connect");
    let js = beffroi_nats::async_nats::jetstream::new(client);
    let partitions = 4;
    let layout = IngestLayout::new("dijon", partitions, 3);
    let stream = ensure_ingest_stream(&js, &layout).await.expect("stream");
    let n = 20_000;
    let publisher = Publisher::new(js.clone());
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let readings: Vec<Outgoing> = chunk.iter().map(|&i| reading(i)).collect();
        for r in publisher.publish_batch(&readings).await {
            r.expect("stored");
        }
    }
    let published = started.elapsed();

    let cfg = ConsumeConfig::default();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stats = Arc::new(ConsumeStats::default());
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let consumer = consume::ensure_partition_consumer(&stream, &layout, p, &cfg)
            .await
            .expect("consumer");
        let count = count.clone();
        tasks.push(tokio::spawn(consume::run_partition(
            consumer,
            p,
            cfg.clone(),
            stats.clone(),
            shutdown.clone(),
            move |batch: Vec<Delivered>| {
                count.fetch_add(batch.len(), Ordering::Relaxed);
                async { Ok::<(), &str>(()) }
            },
        )));
    }
    wait_for("every reading consumed", Duration::from_secs(120), || {
        count.load(Ordering::Relaxed) >= n
    })
    .await;
    let consumed = started.elapsed();
    shutdown.cancel();
    for t in tasks {
        t.await.expect("task");
    }
    eprintln!(
        "3 nodes, R3: published {n} in {published:?} ({:.0}/s, batches of 500 awaiting their \
         acks); consumed them in {consumed:?} ({:.0}/s, {} batches, {} acks)",
        n as f64 / published.as_secs_f64(),
        n as f64 / consumed.as_secs_f64(),
        stats.batches.load(Ordering::Relaxed),
        stats.acks.load(Ordering::Relaxed),
    );
}
