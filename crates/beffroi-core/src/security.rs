//! Security vocabulary shared by the edges (broker, wire) and the pipeline: how much an
//! observation can be trusted, and the signals that the edges raise about devices and the
//! broker for anomaly detection to weigh.

/// What an observation's origin was proven to be, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Trust {
    /// Nothing ties the message to the device (open broker, self-named SenML record).
    #[default]
    Unauthenticated,
    /// The broker authenticated the publisher with the device's own credential, and its ACL
    /// only lets that device publish on the topic the message came on.
    BrokerAuthenticated,
    /// The message carries a valid signature by the device's key, with a fresh counter.
    Signed,
}

impl Trust {
    pub const ALL: [Trust; 3] = [
        Trust::Unauthenticated,
        Trust::BrokerAuthenticated,
        Trust::Signed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Unauthenticated => "unauthenticated",
            Trust::BrokerAuthenticated => "broker_authenticated",
            Trust::Signed => "signed",
        }
    }

    pub fn parse(s: &str) -> Option<Trust> {
        Trust::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Something the edges saw that anomaly detection must weigh. Identifiers are as the
/// transport gave them: they may name no registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecuritySignal {
    /// The broker refused a connection (bad user name or password, revoked credential).
    AuthFailure {
        client_id: String,
        username: Option<String>,
        address: Option<String>,
    },
    /// A client connected to the broker.
    Connected {
        client_id: String,
        username: Option<String>,
        address: Option<String>,
    },
    /// A signed message whose signature does not verify.
    BadSignature { device: String },
    /// A signed message whose counter is not fresh (replayed or reordered beyond the window).
    Replay {
        device: String,
        counter: u64,
        last: u64,
    },
    /// An unsigned message for a device whose kind requires signing.
    Unsigned { device: String },
    /// A message names devices that are not registered: one signal per message, whatever
    /// the number of names.
    Unregistered {
        /// Who published it: the device the transport authenticated (its topic under
        /// `broker_auth`, or the signer of a signed envelope), or `None` when nothing says
        /// (an unauthenticated topic or path proves nothing).
        publisher: Option<String>,
        /// How many distinct unregistered names the message holds.
        names: u32,
        /// Short keyed hashes of the first few of them: never the names, which the
        /// publisher chose.
        tags: Vec<String>,
    },
    /// A message on one device's topic names another device.
    TopicMismatch {
        /// The device the topic binds (with `broker_auth`, the publishing credential).
        topic_device: String,
        /// The device named instead: its id when registered, else a short keyed hash
        /// (`unregistered device #<tag>`).
        claimed: String,
    },
}

impl SecuritySignal {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SecuritySignal::AuthFailure { .. } => "auth_failure",
            SecuritySignal::Connected { .. } => "connected",
            SecuritySignal::BadSignature { .. } => "bad_signature",
            SecuritySignal::Replay { .. } => "replay",
            SecuritySignal::Unsigned { .. } => "unsigned",
            SecuritySignal::Unregistered { .. } => "unregistered",
            SecuritySignal::TopicMismatch { .. } => "topic_mismatch",
        }
    }
}
