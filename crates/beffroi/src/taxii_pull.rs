//! Partners' indicators pulled over TAXII 2.1 (`taxii.toml`'s `[[pull]]`) and handed to the
//! sentinel: a connection to the broker from an address a partner flags raises a
//! `cyber-known_bad_address` incident. Also `beffroi taxii token`, which makes a partner's
//! credential for the server side.
//!
//! - **Polling.** Each source is polled on its own task every `every`, asking only for
//!   indicators (`match[type]=indicator`) added after the last page's
//!   `X-TAXII-Date-Added-Last`, and following `next` while the server says `more` (at
//!   most [`MAX_PAGES`] a poll). A failure (network, status, an envelope that is not
//!   TAXII's) doubles the wait, up to ten times `every`.
//! - **What is kept.** The latest version of each indicator whose pattern is exactly a
//!   list of addresses or networks (`[ipv4-addr:value = '…'] OR …`); a pattern that
//!   joins addresses with other conditions is skipped and counted, so the sentinel never
//!   flags more than the partner meant. Revoked and expired indicators drop out. The
//!   partner's free text (names, descriptions) is never read.
//! - **Where it goes.** After each poll the source's whole list replaces the previous one
//!   in the sentinel (`EngineHandle::set_known_bad`); the list lives in memory and is
//!   pulled again from the start after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use beffroi_api::taxii::PullSource;
use beffroi_engine::runner::EngineHandle;
use beffroi_sentinel::KnownBad;
use beffroi_taxii::{PulledIndicator, TAXII_MEDIA_TYPE};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

/// Pages followed in one poll; the rest waits for the next poll.
pub const MAX_PAGES: usize = 50;
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Subcommand)]
pub enum TaxiiCommand {
    /// Makes a reader's credential for `taxii.toml`: prints the token to give the partner
    /// (once) and the `[[root.reader]]` lines to paste, which hold only its SHA-256.
    Token {
        /// The reader's name (its HTTP Basic user name), e.g. `csirt-bfc`.
        name: String,
    },
}

pub fn command(cmd: TaxiiCommand) -> Result<()> {
    match cmd {
        TaxiiCommand::Token { name } => {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let digest = beffroi_api::taxii::token_digest(&token);
            println!("# Give `{name}` this token as its password (shown once, not stored):");
            println!("#   {token}");
            println!("[[root.reader]]");
            println!("name = \"{name}\"");
            println!("token_sha256 = \"{}\"", hex::encode(digest));
            Ok(())
        }
    }
}

/// `beffroi_taxii_pull_networks{source}` and `beffroi_taxii_pull_failures_total{source}`.
#[derive(Clone, Default)]
pub struct PullMetrics {
    networks: Family<Vec<(String, String)>, Gauge>,
    failures: Family<Vec<(String, String)>, Counter>,
    skipped: Family<Vec<(String, String)>, Counter>,
}

impl PullMetrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "taxii_pull_networks",
            "Networks a partner's indicators flag, as handed to the sentinel, by source",
            self.networks.clone(),
        );
        r.register(
            "taxii_pull_failures",
            "Polls of a partner's TAXII collection that failed, by source",
            self.failures.clone(),
        );
        r.register(
            "taxii_pull_skipped",
            "Indicators pulled and not used (not a plain list of addresses, or refused), by source",
            self.skipped.clone(),
        );
    }
    fn label(source: &str) -> Vec<(String, String)> {
        vec![("source".into(), source.into())]
    }
}

/// One indicator as kept: its version and what it flags.
struct Held {
    modified: i64,
    revoked: bool,
    until: Option<i64>,
    networks: Vec<beffroi_taxii::IpPrefix>,
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What one poll brought.
struct Pulled {
    indicators: Vec<PulledIndicator>,
    /// Objects refused by the reader, and indicators not exactly a list of addresses.
    skipped: usize,
    /// The last page's `X-TAXII-Date-Added-Last`.
    last_added: Option<String>,
}

/// Every page added after `added_after` (blocking).
fn fetch(
    src: &PullSource,
    password: Option<&str>,
    added_after: Option<&str>,
) -> Result<Pulled, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(true)
        .build()
        .new_agent();
    let auth = src.user.as_ref().map(|u| {
        let pair = format!("{u}:{}", password.unwrap_or(""));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    });
    let mut pulled = Pulled {
        indicators: Vec::new(),
        skipped: 0,
        last_added: None,
    };
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = vec!["match%5Btype%5D=indicator".to_string()];
        if let Some(a) = added_after {
            query.push(format!("added_after={}", encode(a)));
        }
        if let Some(n) = &next {
            query.push(format!("next={}", encode(n)));
        }
        let url = format!("{}?{}", src.url, query.join("&"));
        let mut req = agent.get(&url).header("Accept", TAXII_MEDIA_TYPE);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|e| format!("{}: {e}", src.url))?;
        if let Some(last) = resp
            .headers()
            .get(beffroi_taxii::taxii::HEADER_DATE_ADDED_LAST)
            .and_then(|v| v.to_str().ok())
        {
            pulled.last_added = Some(last.to_string());
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(beffroi_taxii::pull::MAX_ENVELOPE_BYTES as u64 + 1)
            .read_to_vec()
            .map_err(|e| format!("{}: {e}", src.url))?;
        let env = beffroi_taxii::read_envelope(&body).map_err(|e| format!("{}: {e}", src.url))?;
        pulled.skipped += env.rejected.len();
        for i in env.indicators {
            if i.network.as_ref().is_some_and(|n| n.exact) {
                pulled.indicators.push(i);
            } else {
                pulled.skipped += 1;
            }
        }
        match (env.more, env.next) {
            (true, Some(n)) => next = Some(n),
            _ => break,
        }
    }
    Ok(pulled)
}

/// Polls every source until `stop`.
pub async fn run(
    sources: Vec<PullSource>,
    engine: EngineHandle,
    metrics: PullMetrics,
    stop: CancellationToken,
) {
    crate::backoff::poll_each(sources, |s| {
        poll(s, engine.clone(), metrics.clone(), stop.clone())
    })
    .await
}

async fn poll(
    src: PullSource,
    engine: EngineHandle,
    metrics: PullMetrics,
    stop: CancellationToken,
) {
    let every = Duration::from_millis(src.every.millis().max(1000) as u64);
    let password = match &src.password_env {
        Some(var) => match std::env::var(var) {
            Ok(p) => Some(p),
            Err(_) => {
                tracing::warn!(source = %src.name, variable = %var, "TAXII pull: the password's environment variable is not set");
                None
            }
        },
        None => None,
    };
    let label = PullMetrics::label(&src.name);
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    let mut added_after: Option<String> = None;
    let mut backoff = crate::backoff::Backoff::new(every);
    tracing::info!(source = %src.name, url = %src.url, every = ?every, "partner indicators pulled (TAXII 2.1)");
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.wait()) => {}
        }
        let (s2, p2, a2) = (src.clone(), password.clone(), added_after.clone());
        let got = tokio::task::spawn_blocking(move || fetch(&s2, p2.as_deref(), a2.as_deref()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        match got {
            Ok(pulled) => {
                if backoff.succeeded() {
                    tracing::info!(source = %src.name, "partner's TAXII collection read again");
                }
                metrics
                    .skipped
                    .get_or_create(&label)
                    .inc_by(pulled.skipped as u64);
                for i in pulled.indicators {
                    let modified = i.modified.millis;
                    if held
                        .get(i.id.as_str())
                        .is_some_and(|h| h.modified > modified)
                    {
                        continue;
                    }
                    held.insert(
                        i.id.as_str().to_string(),
                        Held {
                            modified,
                            revoked: i.revoked,
                            until: i.valid_until.map(|t| t.millis),
                            networks: i.network.map(|n| n.prefixes).unwrap_or_default(),
                        },
                    );
                }
                if pulled.last_added.is_some() {
                    added_after = pulled.last_added;
                }
                let now = engine.clock.now().0;
                held.retain(|_, h| !h.revoked && h.until.is_none_or(|u| u > now));
                let networks: Vec<KnownBad> = held
                    .values()
                    .flat_map(|h| {
                        h.networks.iter().map(|p| KnownBad {
                            address: p.addr(),
                            prefix: p.prefix_len(),
                            until: h.until.map(beffroi_core::Timestamp),
                        })
                    })
                    .collect();
                metrics
                    .networks
                    .get_or_create(&label)
                    .set(networks.len() as i64);
                if engine
                    .set_known_bad(src.name.clone(), networks)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                metrics.failures.get_or_create(&label).inc();
                if backoff.failed() {
                    tracing::warn!(source = %src.name, error = %e, "partner's TAXII collection unreachable or unreadable; retrying with backoff");
                }
            }
        }
    }
}
