//! One face over rumqttc's MQTT 3.1.1 (root module) and MQTT 5 (`v5`) clients: the rest of
//! the crate sees [`Step`]s, [`LinkError`]s and opaque [`AckToken`]s.

use bytes::Bytes;
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5 as p5;

use crate::config::{BrokerAddr, MAX_PACKET_SIZE, MqttConfig, MqttVersion};

/// What is needed to acknowledge one message: its packet id and QoS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AckToken {
    pub pkid: u16,
    /// 0, 1 or 2.
    pub qos: u8,
}

/// One thing that happened on the connection, as far as the source cares.
#[derive(Debug)]
pub(crate) enum Step {
    Connected {
        session_present: bool,
    },
    Message {
        topic: String,
        payload: Bytes,
        /// Sent because of a (re-)subscription, not because it was just published.
        retained: bool,
        /// The broker sends it again (DUP flag): an earlier copy was not acknowledged.
        redelivered: bool,
        token: AckToken,
    },
    /// How many filters the broker refused, and how many it granted below QoS 1.
    SubAck {
        refused: usize,
        downgraded: usize,
    },
    /// MQTT 5: the broker says why it is closing the connection.
    ServerDisconnect(String),
    DisconnectSent,
    Other,
}

/// A connection failure, classified for the logs and the counters.
#[derive(Debug)]
pub(crate) struct LinkError {
    /// The broker sent a packet larger than [`MAX_PACKET_SIZE`].
    pub oversized: bool,
    pub text: String,
}

/// The event-loop half: polled by exactly one task.
pub(crate) enum Events {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// The request half: cheap to clone, never blocks.
#[derive(Clone)]
pub(crate) enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The request channel towards the event loop is full (or closed).
pub(crate) struct Busy;

/// Builds the client and its event loop. Nothing happens on the network until polled.
pub(crate) fn build(cfg: &MqttConfig, addr: &BrokerAddr) -> (Client, Events) {
    // Requests are acks (at most `inflight` outstanding) plus a subscribe and a disconnect.
    let cap = usize::from(cfg.inflight) + 16;
    match cfg.protocol {
        MqttVersion::V311 => {
            let mut o = rumqttc::MqttOptions::new(&cfg.client_id, &addr.host, addr.port);
            o.set_keep_alive(cfg.keep_alive)
                .set_clean_session(false)
                .set_manual_acks(true)
                .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
            if let Some(user) = &cfg.username {
                o.set_credentials(user, cfg.password.as_deref().unwrap_or(""));
            }
            let (client, events) = rumqttc::AsyncClient::new(o, cap);
            (Client::V311(client), Events::V311(Box::new(events)))
        }
        MqttVersion::V5 => {
            let mut o = v5::MqttOptions::new(&cfg.client_id, &addr.host, addr.port);
            let expiry = u32::try_from(cfg.session_expiry.as_secs()).unwrap_or(u32::MAX);
            o.set_keep_alive(cfg.keep_alive)
                .set_clean_start(false)
                .set_session_expiry_interval(Some(expiry))
                .set_receive_maximum(Some(cfg.inflight))
                .set_max_packet_size(Some(MAX_PACKET_SIZE as u32))
                .set_manual_acks(true);
            if let Some(user) = &cfg.username {
                o.set_credentials(user, cfg.password.as_deref().unwrap_or(""));
            }
            let (client, events) = v5::AsyncClient::new(o, cap);
            (Client::V5(client), Events::V5(Box::new(events)))
        }
    }
}

impl Events {
    /// Next step; reconnects first if the connection is down. Errors leave the event loop
    /// ready to reconnect on the next call (rumqttc drops pending PUBACKs at that point,
    /// which is what we want: the broker redelivers).
    pub(crate) async fn next(&mut self) -> Result<Step, LinkError> {
        match self {
            Events::V311(ev) => match ev.poll().await {
                Ok(e) => Ok(step_v311(e)),
                Err(e) => Err(error_v311(e)),
            },
            Events::V5(ev) => match ev.poll().await {
                Ok(e) => Ok(step_v5(e)),
                Err(e) => Err(error_v5(e)),
            },
        }
    }

    /// Closes the network connection (no DISCONNECT packet): the next [`Events::next`]
    /// reconnects, and the broker redelivers what we had not acknowledged.
    pub(crate) fn drop_connection(&mut self) {
        match self {
            Events::V311(ev) => ev.clean(),
            Events::V5(ev) => ev.clean(),
        }
    }
}

fn step_v311(e: rumqttc::Event) -> Step {
    use rumqttc::{Event, Outgoing, Packet};
    match e {
        Event::Incoming(Packet::ConnAck(c)) => Step::Connected {
            session_present: c.session_present,
        },
        Event::Incoming(Packet::Publish(p)) => Step::Message {
            token: AckToken {
                pkid: p.pkid,
                qos: p.qos as u8,
            },
            retained: p.retain,
            redelivered: p.dup,
            topic: p.topic,
            payload: p.payload,
        },
        Event::Incoming(Packet::SubAck(s)) => {
            use rumqttc::SubscribeReasonCode as C;
            let refused = s
                .return_codes
                .iter()
                .filter(|c| matches!(c, C::Failure))
                .count();
            let downgraded = s
                .return_codes
                .iter()
                .filter(|c| matches!(c, C::Success(rumqttc::QoS::AtMostOnce)))
                .count();
            Step::SubAck {
                refused,
                downgraded,
            }
        }
        Event::Outgoing(Outgoing::Disconnect) => Step::DisconnectSent,
        _ => Step::Other,
    }
}

fn step_v5(e: v5::Event) -> Step {
    use p5::Packet;
    use rumqttc::Outgoing;
    match e {
        v5::Event::Incoming(Packet::ConnAck(c)) => Step::Connected {
            session_present: c.session_present,
        },
        v5::Event::Incoming(Packet::Publish(p)) => Step::Message {
            token: AckToken {
                pkid: p.pkid,
                qos: p.qos as u8,
            },
            retained: p.retain,
            redelivered: p.dup,
            // A topic that is not UTF-8 is a protocol violation; route it as unknown.
            topic: String::from_utf8(p.topic.to_vec()).unwrap_or_default(),
            payload: p.payload,
        },
        v5::Event::Incoming(Packet::SubAck(s)) => {
            use p5::SubscribeReasonCode as C;
            let refused = s
                .return_codes
                .iter()
                .filter(|c| !matches!(c, C::Success(_)))
                .count();
            let downgraded = s
                .return_codes
                .iter()
                .filter(|c| matches!(c, C::Success(rumqttc::v5::mqttbytes::QoS::AtMostOnce)))
                .count();
            Step::SubAck {
                refused,
                downgraded,
            }
        }
        v5::Event::Incoming(Packet::Disconnect(d)) => {
            let reason = d
                .properties
                .and_then(|p| p.reason_string)
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            Step::ServerDisconnect(format!("{:?}{reason}", d.reason_code))
        }
        v5::Event::Outgoing(Outgoing::Disconnect) => Step::DisconnectSent,
        _ => Step::Other,
    }
}

fn error_v311(e: rumqttc::ConnectionError) -> LinkError {
    use rumqttc::mqttbytes::Error as Bytes;
    use rumqttc::{ConnectionError as C, StateError as S};
    let oversized = matches!(
        &e,
        C::MqttState(S::Deserialization(Bytes::PayloadSizeLimitExceeded(_)))
    );
    LinkError {
        oversized,
        text: e.to_string(),
    }
}

fn error_v5(e: v5::ConnectionError) -> LinkError {
    use v5::mqttbytes::Error as Bytes;
    use v5::{ConnectionError as C, StateError as S};
    let oversized = matches!(
        &e,
        C::MqttState(S::Deserialization(Bytes::PayloadSizeLimitExceeded { .. }))
    );
    LinkError {
        oversized,
        text: e.to_string(),
    }
}

impl Client {
    /// Queues the PUBACK of one message; `Ok(false)` for QoS 0, which has none.
    pub(crate) fn try_ack(&self, token: AckToken) -> Result<bool, Busy> {
        if token.qos == 0 {
            return Ok(false);
        }
        match self {
            Client::V311(c) => {
                let Ok(qos) = rumqttc::qos(token.qos) else {
                    return Ok(false);
                };
                let mut p = rumqttc::Publish::new("", qos, Vec::new());
                p.pkid = token.pkid;
                c.try_ack(&p).map(|()| true).map_err(|_| Busy)
            }
            Client::V5(c) => {
                let Some(qos) = v5::mqttbytes::qos(token.qos) else {
                    return Ok(false);
                };
                let mut p = p5::Publish::new("", qos, Bytes::new(), None);
                p.pkid = token.pkid;
                c.try_ack(&p).map(|()| true).map_err(|_| Busy)
            }
        }
    }

    /// Queues one SUBSCRIBE for all filters at QoS 1.
    pub(crate) fn try_subscribe(&self, filters: &[String]) -> Result<(), Busy> {
        match self {
            Client::V311(c) => c
                .try_subscribe_many(
                    filters.iter().map(|f| {
                        rumqttc::SubscribeFilter::new(f.clone(), rumqttc::QoS::AtLeastOnce)
                    }),
                )
                .map_err(|_| Busy),
            Client::V5(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| p5::Filter::new(f.clone(), v5::mqttbytes::QoS::AtLeastOnce)),
                )
                .map_err(|_| Busy),
        }
    }

    pub(crate) fn try_disconnect(&self) -> Result<(), Busy> {
        match self {
            Client::V311(c) => c.try_disconnect().map_err(|_| Busy),
            Client::V5(c) => c.try_disconnect().map_err(|_| Busy),
        }
    }
}
