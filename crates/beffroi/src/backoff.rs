//! Polling an outside service (CAP feeds, Hub'Eau, partners' TAXII collections): the wait
//! between two polls ([`Backoff`]: `every` while it answers; after a failure, doubled at
//! each failure up to ten times `every`; the first success restores it), and one bounded
//! GET ([`fetch`]).

use std::future::Future;
use std::time::Duration;

/// Runs `poll` for every source at once and returns when all have ended (each ends on its
/// service's stop token).
pub async fn poll_each<S, F>(sources: Vec<S>, poll: impl Fn(S) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for s in sources {
        tasks.spawn(poll(s));
    }
    while tasks.join_next().await.is_some() {}
}

/// GETs `url` (blocking: call it on a blocking thread), at most `limit` bytes of body
/// (one more, so that the reader refuses an answer over its own limit), within `timeout`;
/// an HTTP error status is a failure.
pub fn fetch(
    url: &str,
    accept: Option<&str>,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(true)
        .build()
        .new_agent();
    let mut req = agent.get(url);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let mut r = req.call().map_err(|e| format!("{url}: {e}"))?;
    r.body_mut()
        .with_config()
        .limit(limit as u64 + 1)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))
}

pub struct Backoff {
    every: Duration,
    wait: Duration,
    failing: bool,
}

impl Backoff {
    pub fn new(every: Duration) -> Backoff {
        Backoff {
            every,
            wait: Duration::ZERO,
            failing: false,
        }
    }

    /// How long to wait before the next poll (nothing before the first).
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Whether the last poll failed.
    pub fn is_failing(&self) -> bool {
        self.failing
    }

    /// The poll succeeded; whether the service was failing until now (worth a log line).
    pub fn succeeded(&mut self) -> bool {
        let was = self.failing;
        self.failing = false;
        self.wait = self.every;
        was
    }

    /// The poll failed; whether it is the first failure of a run (worth a warning).
    pub fn failed(&mut self) -> bool {
        let first = !self.failing;
        self.failing = true;
        self.wait = if self.wait.is_zero() {
            self.every
        } else {
            (self.wait * 2).min(self.every * 10)
        };
        first
    }

    /// Poll again at the usual pace, without counting a failure of the service.
    pub fn steady(&mut self) {
        self.wait = self.every;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_on_failures_up_to_ten_times_and_a_success_restores_it() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(60));
        assert_eq!(b.wait(), s(0), "the first poll at once");
        assert!(b.failed(), "the first failure of a run");
        assert_eq!(b.wait(), s(60));
        assert!(!b.failed());
        assert_eq!(b.wait(), s(120));
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.wait(), s(600), "at most ten times");
        assert!(b.is_failing());
        assert!(b.succeeded(), "it was failing");
        assert_eq!(b.wait(), s(60));
        assert!(!b.succeeded());
        b.steady();
        assert_eq!(b.wait(), s(60));
    }
}
