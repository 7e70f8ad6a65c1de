//! A shared table between two connections to a real NATS server (skipped without
//! nats-server 2.10+, unless `BEFFROI_REQUIRE_SERVICES=1`). Every wait is on a condition
//! with a deadline.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beffroi_nats::shared_kv::{self, SharedStats, SharedWriter};
use beffroi_testkit::nats::NatsCluster;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

type Table = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node's copy of the table, kept by [`shared_kv::follow`].
fn follow(
    store: beffroi_nats::async_nats::jetstream::kv::Store,
    stop: &CancellationToken,
) -> (Table, Arc<SharedStats>) {
    let table = Table::default();
    let stats = Arc::new(SharedStats::default());
    let t = Arc::clone(&table);
    tokio::spawn(shared_kv::follow(
        store,
        Arc::clone(&stats),
        stop.clone(),
        move |key, value| {
            let mut t = t.lock().expect("table");
            match value {
                Some(v) => {
                    t.insert(key.to_string(), v.to_vec());
                }
                None => {
                    t.remove(key);
                }
            }
        },
    ));
    (table, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_writes_every_node_follows_including_a_late_one() {
    let Some(nats) = NatsCluster::start(1) else {
        return;
    };
    let stop = CancellationToken::new();
    let bucket = |name: &'static str| {
        let urls = nats.urls();
        async move {
            let client = beffroi_nats::connect(&urls, name).await.expect("connect");
            let js = beffroi_nats::async_nats::jetstream::new(client);
            shared_kv::ensure_bucket(&js, "dijon", "sessions", 1, Duration::from_secs(3600))
                .await
                .expect("bucket")
        }
    };
    let (a, b) = (bucket("a").await, bucket("b").await);
    let (seen_by_b, _) = follow(b.clone(), &stop);
    let stats = Arc::new(SharedStats::default());
    let writer = SharedWriter::spawn(a.clone(), Arc::clone(&stats), stop.clone());
    writer.change("k1", Some(Bytes::from_static(b"one")));
    writer.change("k2", Some(Bytes::from_static(b"two")));
    wait_for("both entries on the other node", || {
        seen_by_b.lock().expect("table").len() == 2
    })
    .await;
    writer.change("k1", None);
    writer.change("k2", Some(Bytes::from_static(b"two again")));
    assert!(
        writer.flush(Duration::from_secs(20)).await,
        "flushed: both changes written"
    );
    assert_eq!(stats.written.load(Ordering::Relaxed), 4);
    wait_for("the delete and the update", || {
        let t = seen_by_b.lock().expect("table");
        !t.contains_key("k1") && t.get("k2").map(Vec::as_slice) == Some(&b"two again"[..])
    })
    .await;
    assert_eq!(stats.written.load(Ordering::Relaxed), 4);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);

    // A node that starts following later is given the current values, not the history.
    let (late, late_stats) = follow(bucket("c").await, &stop);
    wait_for("the current value on the late node", || {
        late.lock().expect("table").get("k2").map(Vec::as_slice) == Some(&b"two again"[..])
    })
    .await;
    assert!(!late.lock().expect("table").contains_key("k1"));
    assert!(late_stats.received.load(Ordering::Relaxed) >= 1);

    // A writer that has stopped drops what it is given, and counts it.
    let stopped = CancellationToken::new();
    let dead_stats = Arc::new(SharedStats::default());
    let dead = SharedWriter::spawn(a, Arc::clone(&dead_stats), stopped.clone());
    stopped.cancel();
    wait_for("the stopped writer to drop", || {
        dead.change("k3", Some(Bytes::from_static(b"lost")));
        dead_stats.dropped.load(Ordering::Relaxed) > 0
    })
    .await;
    stop.cancel();
}
