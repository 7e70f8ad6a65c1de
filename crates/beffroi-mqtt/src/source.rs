//! The source task: one event loop, a bounded hand-over queue to the pipeline, and the
//! acknowledgements coming back from the store writer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use beffroi_core::Clock;
use beffroi_engine::{Ack, AckOutcome, Envelope, Source};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::MqttError;
use crate::broker_log;
use crate::config::{BrokerAddr, MAX_PACKET_SIZE, MqttConfig};
use crate::link::{self, AckToken, Client, Events, LinkError, Step};
use crate::topic::{Route, Routing, route};
use beffroi_core::SecuritySignal;

/// How long a clean shutdown waits for the DISCONNECT to leave.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);
/// Retry period when the request channel towards the event loop is momentarily full.
const OUTBOX_RETRY: Duration = Duration::from_millis(5);

/// Counters of the MQTT source, shared with whoever exports them (the binary turns them
/// into Prometheus metrics). Monotonic; read with `load(Ordering::Relaxed)`.
#[derive(Clone, Debug, Default)]
pub struct MqttStats {
    /// Connections established (CONNACK received).
    pub connects: Arc<AtomicU64>,
    /// Established connections that ended, for any reason but shutdown.
    pub disconnects: Arc<AtomicU64>,
    /// PUBLISH packets received from the broker, duplicates included.
    pub messages: Arc<AtomicU64>,
    /// PUBACKs handed to the connection: messages the store made durable, plus skipped
    /// retained ones (QoS 0 messages have none).
    pub acks: Arc<AtomicU64>,
    /// Messages the broker sent again (DUP flag) because an earlier copy was not
    /// acknowledged; they are counted in `messages` and `acks` too.
    pub redelivered: Arc<AtomicU64>,
    /// Outcomes that withheld the PUBACK: store failure, or envelope dropped unanswered.
    pub nacks: Arc<AtomicU64>,
    /// Messages on a topic outside the layout and outside the `beffroi/` namespace
    /// (submitted anyway, see [`Route::unknown`]).
    pub unknown_topics: Arc<AtomicU64>,
    /// Messages on a `beffroi/` topic that is not a documented shape (unknown suffix, extra
    /// or missing levels): acknowledged and dropped, never submitted (see
    /// [`crate::TopicRefusal`]).
    pub refused_topics: Arc<AtomicU64>,
    /// Retained messages replayed by a (re-)subscription: acknowledged, not submitted.
    pub retained_skipped: Arc<AtomicU64>,
    /// Connections lost because the broker sent a packet over [`MAX_PACKET_SIZE`].
    pub oversized: Arc<AtomicU64>,
    /// Broker log messages read (`$SYS/broker/log/…`).
    pub broker_log_lines: Arc<AtomicU64>,
    /// Security signals from the broker log dropped because the engine's queue was full.
    pub signals_dropped: Arc<AtomicU64>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Where the source stands, for health endpoints and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MqttHealth {
    /// Not connected: first attempt, or reconnecting with backoff.
    Connecting,
    /// Connected; subscriptions not (all) granted yet. With a resumed session messages
    /// already flow.
    Connected,
    /// Connected and every filter granted at QoS 1.
    Ready,
    /// `run` returned.
    Stopped,
}

/// The MQTT source: build it, keep its [`MqttStats`] and [`MqttHealth`], then [`run`](Self::run) it.
pub struct MqttSource {
    cfg: MqttConfig,
    addr: BrokerAddr,
    stats: MqttStats,
    health: watch::Sender<MqttHealth>,
    signals: Option<mpsc::Sender<SecuritySignal>>,
}

impl MqttSource {
    /// Validates the configuration (errors name the field).
    pub fn new(cfg: MqttConfig) -> Result<MqttSource, MqttError> {
        let addr = cfg.validate()?;
        Ok(MqttSource {
            cfg,
            addr,
            stats: MqttStats::default(),
            health: watch::Sender::new(MqttHealth::Connecting),
            signals: None,
        })
    }

    /// Also subscribes to the broker's log (`$SYS/broker/log/#`, Mosquitto's
    /// `log_dest topic`) and sends the connection and authentication-failure signals it
    /// finds to `tx`. Overload policy: a full channel drops the signal and counts it in
    /// [`MqttStats::signals_dropped`] (the MQTT connection is never held up by it).
    pub fn with_broker_feed(mut self, tx: mpsc::Sender<SecuritySignal>) -> Self {
        if !self.cfg.topics.iter().any(|t| t == broker_log::LOG_FILTER) {
            self.cfg.topics.push(broker_log::LOG_FILTER.into());
        }
        self.signals = Some(tx);
        self
    }

    /// The counters, shared: clone before `run`.
    pub fn stats(&self) -> MqttStats {
        self.stats.clone()
    }

    /// A watch on the connection state.
    pub fn health(&self) -> watch::Receiver<MqttHealth> {
        self.health.subscribe()
    }

    /// Runs until `shutdown` is cancelled (then sends DISCONNECT, keeping the session, and
    /// returns `Ok`) or the pipeline's channel closes (`Err(PipelineClosed)`). Broker
    /// errors never end it: it reconnects with capped exponential backoff.
    pub async fn run(
        self,
        tx: mpsc::Sender<Envelope>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<(), MqttError> {
        let health = self.health.clone();
        let (runner, events, settle_rx) = Runner::new(self, clock);
        let r = drive(runner, events, settle_rx, tx, shutdown).await;
        health.send_replace(MqttHealth::Stopped);
        r
    }
}

/// The MQTT adapter as a source component: named `mqtt`, it waits when the engine's queue
/// is full (the broker keeps the backlog in our persistent session).
impl beffroi_engine::source::IngestSource for MqttSource {
    fn config(&self) -> beffroi_engine::source::SourceConfig {
        beffroi_engine::source::SourceConfig {
            source: Source::MQTT,
            overload: beffroi_engine::source::Overload::Wait,
        }
    }

    fn run(
        self: Box<Self>,
        port: beffroi_engine::source::SourcePort,
        shutdown: CancellationToken,
    ) -> futures::future::BoxFuture<'static, Result<(), beffroi_engine::source::SourceError>> {
        Box::pin(async move {
            let Some(tx) = port.waiting_sender() else {
                return Err(beffroi_engine::source::SourceError {
                    name: Source::MQTT.as_str(),
                    message: "the MQTT adapter needs a waiting port (it reserves room before \
                              it takes a message off the broker)"
                        .into(),
                });
            };
            (*self).run(tx, port.clock(), shutdown).await.map_err(|e| {
                beffroi_engine::source::SourceError {
                    name: Source::MQTT.as_str(),
                    message: e.to_string(),
                }
            })
        })
    }
}

/// What the store writer reports for one message, carried back to the source task.
struct Settlement {
    conn: u64,
    token: AckToken,
    outcome: Outcome,
}

enum Outcome {
    Stored,
    Failed(String),
    Dropped,
}

/// Travels inside the envelope's [`Ack`]. Reports exactly once: through the callback, or
/// as `Dropped` if the envelope is dropped unanswered (so nothing waits forever on it).
/// Sending on an unbounded channel needs no runtime: the store writer is a plain thread.
struct AckGuard {
    conn: u64,
    token: Option<AckToken>,
    tx: mpsc::UnboundedSender<Settlement>,
}

impl AckGuard {
    fn settle(&mut self, outcome: Outcome) {
        if let Some(token) = self.token.take() {
            // The source may be gone (shutdown): the broker redelivers, nothing to do.
            let _ = self.tx.send(Settlement {
                conn: self.conn,
                token,
                outcome,
            });
        }
    }
}

impl Drop for AckGuard {
    fn drop(&mut self) {
        self.settle(Outcome::Dropped);
    }
}

/// Capped exponential backoff.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }
    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }
    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Requests waiting for room in rumqttc's request channel.
enum Out {
    Ack(u64, AckToken),
    Subscribe(u64),
}

/// Why the inner select woke up with something the event loop itself must handle.
enum Wake {
    Shutdown,
    PipelineClosed,
    Redeliver,
    Event(Result<Step, LinkError>),
}

struct Runner {
    cfg: MqttConfig,
    addr: BrokerAddr,
    stats: MqttStats,
    health: watch::Sender<MqttHealth>,
    clock: Arc<dyn Clock>,
    client: Client,
    settle_tx: mpsc::UnboundedSender<Settlement>,
    /// Id of the live connection; acks of any other connection are stale.
    live: Option<u64>,
    conn_seq: u64,
    /// The engine's ordered stream of the live connection.
    stream: u64,
    connected_at: Instant,
    /// Whether a session ever existed (a later CONNACK without one means it was lost).
    had_session: bool,
    /// Messages received and not yet handed to the pipeline (at most `inflight`).
    queue: VecDeque<Envelope>,
    outbox: VecDeque<Out>,
    broker_auth: bool,
    signals: Option<mpsc::Sender<SecuritySignal>>,
    log_parser: broker_log::BrokerLogParser,
    /// Reconnect not before this instant (after an error).
    retry_at: Option<Instant>,
    /// Drop the connection at this instant so that the broker redelivers failed messages.
    redeliver_at: Option<Instant>,
    failed_this_conn: u64,
    /// Redelivery rounds since the last message stored (a failing store is logged once,
    /// not once a round).
    rounds_not_stored: u64,
    reconnect: Backoff,
    redeliver: Backoff,
    /// Text of the last connection error logged, to log a repeated failure only once.
    last_error: Option<String>,
    attempts: u64,
}

impl Runner {
    fn new(
        src: MqttSource,
        clock: Arc<dyn Clock>,
    ) -> (Runner, Events, mpsc::UnboundedReceiver<Settlement>) {
        let (client, events) = link::build(&src.cfg, &src.addr);
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let runner = Runner {
            reconnect: Backoff::new(src.cfg.backoff_min, src.cfg.backoff_max),
            redeliver: Backoff::new(src.cfg.backoff_min, src.cfg.backoff_max),
            queue: VecDeque::with_capacity(usize::from(src.cfg.inflight)),
            broker_auth: src.cfg.broker_auth,
            signals: src.signals,
            log_parser: broker_log::BrokerLogParser::default(),
            cfg: src.cfg,
            addr: src.addr,
            stats: src.stats,
            health: src.health,
            clock,
            client,
            settle_tx,
            live: None,
            conn_seq: 0,
            stream: beffroi_engine::envelope::new_stream(),
            connected_at: Instant::now(),
            had_session: false,
            outbox: VecDeque::new(),
            retry_at: None,
            redeliver_at: None,
            failed_this_conn: 0,
            rounds_not_stored: 0,
            last_error: None,
            attempts: 0,
        };
        (runner, events, settle_rx)
    }
}

/// The source task proper: one `select!` over shutdown, store outcomes, hand-over to the
/// pipeline, timers and the event loop. The event loop's poll future survives the other
/// branches (it is only dropped to reconnect or stop), so no packet is cut in half.
async fn drive(
    mut r: Runner,
    mut events: Events,
    mut settle_rx: mpsc::UnboundedReceiver<Settlement>,
    tx: mpsc::Sender<Envelope>,
    shutdown: CancellationToken,
) -> Result<(), MqttError> {
    info!(
        broker = %r.addr,
        client_id = %r.cfg.client_id,
        protocol = r.cfg.protocol.as_str(),
        "mqtt source starting"
    );
    let cap = usize::from(r.cfg.inflight);
    loop {
        let wake = {
            let poll = events.next();
            tokio::pin!(poll);
            loop {
                r.flush_outbox();
                let retry_at = r.retry_at.unwrap_or_else(Instant::now);
                let redeliver_at = r.redeliver_at.unwrap_or_else(Instant::now);
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break Wake::Shutdown,
                    Some(s) = settle_rx.recv() => r.on_settled(s),
                    permit = tx.reserve(), if !r.queue.is_empty() => match permit {
                        Ok(permit) => {
                            if let Some(env) = r.queue.pop_front() {
                                permit.send(env);
                            }
                        }
                        Err(_) => break Wake::PipelineClosed,
                    },
                    () = sleep_until(redeliver_at), if r.redeliver_at.is_some() => {
                        break Wake::Redeliver;
                    }
                    () = sleep_until(retry_at), if r.retry_at.is_some() => r.retry_at = None,
                    () = sleep(OUTBOX_RETRY), if !r.outbox.is_empty() => {}
                    step = &mut poll, if r.retry_at.is_none() && r.redeliver_at.is_none() && r.queue.len() < cap => {
                        break Wake::Event(step);
                    }
                }
            }
        };
        match wake {
            Wake::Shutdown => {
                r.shutdown(&mut events, &mut settle_rx).await;
                return Ok(());
            }
            Wake::PipelineClosed => {
                error!("mqtt source stopping: the pipeline's ingest channel is closed");
                return Err(MqttError::PipelineClosed);
            }
            Wake::Redeliver => {
                info!(
                    failed = r.failed_this_conn,
                    "mqtt reconnecting so that the broker redelivers the messages the store could not take"
                );
                events.drop_connection();
                r.on_connection_lost(None);
            }
            Wake::Event(Ok(step)) => r.on_step(step),
            Wake::Event(Err(e)) => r.on_connection_lost(Some(e)),
        }
    }
}

impl Runner {
    fn on_broker_log(&mut self, payload: &[u8]) {
        bump(&self.stats.broker_log_lines);
        let Some(tx) = &self.signals else { return };
        let text = String::from_utf8_lossy(payload);
        for line in text.lines() {
            if let Some(sig) = self.log_parser.parse(line)
                && tx.try_send(sig).is_err()
            {
                bump(&self.stats.signals_dropped);
            }
        }
    }

    fn on_step(&mut self, step: Step) {
        match step {
            Step::Connected { session_present } => self.on_connected(session_present),
            Step::Message {
                topic,
                payload,
                retained,
                redelivered,
                token,
            } => {
                bump(&self.stats.messages);
                if redelivered {
                    bump(&self.stats.redelivered);
                }
                let conn = self.live.unwrap_or(0);
                if retained {
                    // A stale value replayed because we (re-)subscribed, not a new reading.
                    bump(&self.stats.retained_skipped);
                    debug!(topic = %topic, "mqtt retained message skipped");
                    self.outbox.push_back(Out::Ack(conn, token));
                    return;
                }
                if broker_log::is_log_topic(&topic) {
                    self.on_broker_log(&payload);
                    self.outbox.push_back(Out::Ack(conn, token));
                    return;
                }
                let route = match route(&topic) {
                    Routing::Known(r) => r,
                    Routing::Refused(why) => {
                        // Its device would not bind the payload: refused here, counted, and
                        // acknowledged so that the broker does not redeliver it forever.
                        bump(&self.stats.refused_topics);
                        debug!(
                            reason = why.as_str(),
                            "mqtt message on a beffroi/ topic outside the layout, refused"
                        );
                        self.outbox.push_back(Out::Ack(conn, token));
                        return;
                    }
                    Routing::Unknown => {
                        bump(&self.stats.unknown_topics);
                        debug!(topic = %topic, "mqtt topic of unknown shape, submitted as SenML without device");
                        Route::unknown()
                    }
                };
                let mut guard = AckGuard {
                    conn,
                    token: Some(token),
                    tx: self.settle_tx.clone(),
                };
                let ack = Ack::new(move |outcome| {
                    guard.settle(match outcome {
                        AckOutcome::Stored { .. } => Outcome::Stored,
                        AckOutcome::Failed(reason) => Outcome::Failed(reason),
                    })
                });
                self.queue.push_back(Envelope {
                    source: Source::MQTT,
                    format: route.format,
                    authenticated: self.broker_auth && route.device_hint.is_some(),
                    device_hint: route.device_hint,
                    payload,
                    received: self.clock.now(),
                    // One ordered stream per connection: after a refusal the engine refuses
                    // the rest of it, and the reconnection redelivers them in order.
                    stream: Some(self.stream),
                    ack: Some(ack),
                });
            }
            Step::SubAck {
                refused,
                downgraded,
            } => {
                if refused > 0 {
                    error!(
                        refused,
                        filters = ?self.cfg.topics,
                        "mqtt broker refused topic filters (check its ACL): those topics are not ingested"
                    );
                } else if downgraded > 0 {
                    warn!(
                        downgraded,
                        "mqtt broker granted QoS 0 only: those messages are delivered at most once"
                    );
                    self.set_health(MqttHealth::Ready);
                } else {
                    self.set_health(MqttHealth::Ready);
                }
            }
            Step::ServerDisconnect(reason) => {
                warn!(reason = %reason, "mqtt broker is closing the connection");
            }
            Step::DisconnectSent | Step::Other => {}
        }
    }

    fn on_connected(&mut self, session_present: bool) {
        self.conn_seq += 1;
        self.stream = beffroi_engine::envelope::new_stream();
        let conn = self.conn_seq;
        self.live = Some(conn);
        self.connected_at = Instant::now();
        self.retry_at = None;
        // Reconnecting is what a pending redelivery waited for.
        self.redeliver_at = None;
        self.failed_this_conn = 0;
        self.last_error = None;
        bump(&self.stats.connects);
        // Re-subscribe on every CONNACK, session or not (rumqttc does not re-send them after a
        // clean reconnect, and says nothing): a broker that
        // lost the session would otherwise deliver nothing, silently.
        self.outbox.push_back(Out::Subscribe(conn));
        self.set_health(MqttHealth::Connected);
        info!(
            broker = %self.addr,
            session_present,
            failed_attempts = self.attempts,
            "mqtt connected"
        );
        self.attempts = 0;
        if !session_present && self.had_session {
            warn!(
                "mqtt broker had no session for us: what was published while we were away is lost \
                 (broker restarted without persistence, or session expired)"
            );
        }
        self.had_session = true;
    }

    /// `e` is `None` when we closed the connection ourselves.
    fn on_connection_lost(&mut self, e: Option<LinkError>) {
        // PUBACKs not yet sent are void: the broker redelivers those messages.
        self.outbox.clear();
        self.redeliver_at = None;
        let was_live = self.live.take().is_some();
        self.set_health(MqttHealth::Connecting);
        if was_live {
            bump(&self.stats.disconnects);
            if self.connected_at.elapsed() >= self.cfg.backoff_max {
                self.reconnect.reset();
            }
        }
        let Some(e) = e else {
            return;
        };
        if !was_live {
            self.attempts += 1;
        }
        let delay = self.reconnect.next();
        self.retry_at = Some(Instant::now() + delay);
        if e.oversized {
            bump(&self.stats.oversized);
            error!(
                limit = MAX_PACKET_SIZE,
                "mqtt broker sent a packet over the size limit; with MQTT 3.1.1 it redelivers it on \
                 every reconnect: cap the broker's max_packet_size at the same limit"
            );
        }
        if was_live {
            warn!(error = %e.text, retry_in = ?delay, "mqtt connection lost, reconnecting");
        } else if self.last_error.as_deref() != Some(e.text.as_str()) {
            warn!(
                error = %e.text,
                broker = %self.addr,
                backoff_max = ?self.cfg.backoff_max,
                "mqtt cannot connect, retrying with backoff"
            );
        } else {
            debug!(error = %e.text, retry_in = ?delay, "mqtt still cannot connect");
        }
        self.last_error = Some(e.text);
    }

    fn on_settled(&mut self, s: Settlement) {
        if self.live != Some(s.conn) {
            // The connection it came on is gone; the broker redelivers it (a duplicate the
            // store absorbs). Acking it now could ack another message with the same id.
            debug!("mqtt outcome for a message of a previous connection ignored");
            return;
        }
        match s.outcome {
            Outcome::Stored => {
                self.redeliver.reset();
                if self.rounds_not_stored > 0 {
                    info!(
                        redelivery_rounds = self.rounds_not_stored,
                        "mqtt messages stored again: PUBACKs resume"
                    );
                    self.rounds_not_stored = 0;
                }
                self.outbox.push_back(Out::Ack(s.conn, s.token));
            }
            Outcome::Failed(_) | Outcome::Dropped => {
                bump(&self.stats.nacks);
                self.failed_this_conn += 1;
                let reason = match &s.outcome {
                    Outcome::Failed(r) => r.as_str(),
                    _ => "envelope dropped without an outcome",
                };
                if self.redeliver_at.is_none() {
                    let delay = self.redeliver.next();
                    self.redeliver_at = Some(Instant::now() + delay);
                    // What this connection delivered after the failed message must come
                    // after it again: hand nothing more to the pipeline and read nothing
                    // more from the broker until the reconnection, which redelivers every
                    // unacknowledged message in order.
                    let dropped = self.queue.len();
                    self.queue.clear();
                    if dropped > 0 {
                        debug!(dropped, "mqtt messages held back until the redelivery");
                    }
                    self.rounds_not_stored += 1;
                    if self.rounds_not_stored == 1 {
                        warn!(
                            reason,
                            redeliver_in = ?delay,
                            "mqtt message not stored: no PUBACK, the broker will redeliver it \
                             (logged once until messages are stored again)"
                        );
                    } else {
                        debug!(reason, redeliver_in = ?delay, round = self.rounds_not_stored, "mqtt redelivery round not stored");
                    }
                } else {
                    debug!(reason, "mqtt message not stored");
                }
            }
        }
    }

    /// Hands queued requests to rumqttc until its channel is full.
    fn flush_outbox(&mut self) {
        while let Some(out) = self.outbox.front() {
            let sent = match out {
                Out::Ack(conn, _) | Out::Subscribe(conn) if self.live != Some(*conn) => Ok(false),
                Out::Ack(_, token) => self.client.try_ack(*token),
                Out::Subscribe(_) => self.client.try_subscribe(&self.cfg.topics).map(|()| false),
            };
            match sent {
                Ok(acked) => {
                    if acked {
                        bump(&self.stats.acks);
                    }
                    self.outbox.pop_front();
                }
                Err(link::Busy) => break,
            }
        }
    }

    /// Sends the PUBACKs already earned, then DISCONNECT (the session stays on the broker).
    async fn shutdown(
        &mut self,
        events: &mut Events,
        settle_rx: &mut mpsc::UnboundedReceiver<Settlement>,
    ) {
        while let Ok(s) = settle_rx.try_recv() {
            self.on_settled(s);
        }
        // Envelopes not yet handed over are dropped (their outcomes are no longer read);
        // the broker redelivers them.
        self.queue.clear();
        if self.live.is_none() {
            info!("mqtt source stopped (was not connected)");
            return;
        }
        let done = timeout(DISCONNECT_GRACE, async {
            loop {
                self.flush_outbox();
                if self.outbox.is_empty() {
                    break;
                }
                events.next().await?;
            }
            if self.client.try_disconnect().is_err() {
                return Ok(());
            }
            loop {
                match events.next().await {
                    Ok(Step::DisconnectSent) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match done {
            Ok(Ok(())) => info!("mqtt source stopped, session kept on the broker"),
            Ok(Err(e)) => {
                info!(error = %e.text, "mqtt source stopped (connection failed while closing)")
            }
            Err(_) => warn!(
                grace = ?DISCONNECT_GRACE,
                "mqtt source stopped without a clean DISCONNECT"
            ),
        }
    }

    fn set_health(&self, h: MqttHealth) {
        self.health.send_if_modified(|cur| {
            let changed = *cur != h;
            *cur = h;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(100));
    }

    #[test]
    fn a_dropped_guard_reports_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let token = AckToken { pkid: 7, qos: 1 };
        let mut g = AckGuard {
            conn: 3,
            token: Some(token),
            tx,
        };
        g.settle(Outcome::Stored);
        drop(g);
        let first = rx.try_recv().expect("one settlement");
        assert_eq!(first.conn, 3);
        assert!(matches!(first.outcome, Outcome::Stored));
        assert!(rx.try_recv().is_err(), "settled twice");

        let (tx, mut rx) = mpsc::unbounded_channel();
        let token = AckToken { pkid: 8, qos: 1 };
        let ack = {
            let mut g = AckGuard {
                conn: 1,
                token: Some(token),
                tx,
            };
            Ack::new(move |_| g.settle(Outcome::Stored))
        };
        drop(ack);
        assert!(matches!(
            rx.try_recv().expect("drop reports").outcome,
            Outcome::Dropped
        ));
    }
}
