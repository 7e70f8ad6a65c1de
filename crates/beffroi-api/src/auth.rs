//! Accounts, console sessions, API tokens, TOTP and login throttling.
//!
//! - **Accounts** ([`Account`]): an Argon2id hash, grants (roles × scopes), an optional TOTP
//!   secret. Loaded from `users.toml` ([`crate::users`], the model in
//!   [`crate::access::users`]) or added in code (the demo).
//! - **Sessions**: 256-bit random ids, kept in memory by their SHA-256 digest (a restart
//!   logs everybody out), with an idle and an absolute timeout and a per-session CSRF
//!   token. The console carries the id in an `HttpOnly` cookie; scripts may send it as a
//!   bearer token. On a cluster node they are also handed to a [`SessionShare`] and
//!   applied from it ([`Auth::apply_shared`]): the node that takes over honours them.
//! - **API tokens** ([`ApiToken`]): declared with their own grants, stored as SHA-256
//!   digests (a token is 256 random bits, so a fast hash is enough), accepted only as
//!   bearer tokens: they cannot open a console session.
//! - **Throttling** ([`Throttle`]): failures slow the next attempt (exponential delay) and
//!   then lock out for a period, counted per account and address pair, per address, and per
//!   account. The per-account count does not apply to an address that logged into that
//!   account successfully before: guesses from elsewhere cannot lock its owner out.
//! - **One answer for every failure.** A wrong name, password, missing or wrong one-time code
//!   all give [`LoginError::InvalidCredentials`] to the client (the audit log keeps which):
//!   the second factor never confirms a password.
//!
//! Time comes from an injected [`Clock`], so the expiry and lock-out tests are
//! deterministic. Password checks are CPU-heavy: call [`Auth::login`] from `spawn_blocking`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use base64::Engine as _;
use beffroi_core::{Clock, Duration, Timestamp};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::access::{Grant, Principal, PrincipalKind};

/// A person who logs in, and an integration's bearer token: the users-file model's.
pub use crate::access::users::{Account, ApiToken};

/// Session lifetimes and throttling thresholds.
#[derive(Clone, Copy, Debug)]
pub struct AuthPolicy {
    /// A session unused this long expires.
    pub idle: Duration,
    /// A session expires this long after login, used or not.
    pub absolute: Duration,
    /// Failures (per account and address, or per account from unknown addresses) before
    /// each attempt is delayed.
    pub slow_after: u32,
    /// Delay after the first failure beyond `slow_after`; doubles with each failure.
    pub base_delay: Duration,
    /// Failures before the account (from unknown addresses) or the account and address pair
    /// is locked out.
    pub lock_after: u32,
    pub lockout: Duration,
    /// Failures from one address over all accounts before its attempts are delayed, and
    /// before it is locked out: higher, since several people may share one address.
    pub address_slow_after: u32,
    pub address_lock_after: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// How long an address that logged into an account stays known to it (and exempt from
    /// the account-wide count).
    pub known_address_for: Duration,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            idle: Duration::from_mins(30),
            absolute: Duration::from_mins(12 * 60),
            slow_after: 3,
            base_delay: Duration::from_secs(2),
            lock_after: 10,
            lockout: Duration::from_mins(15),
            address_slow_after: 15,
            address_lock_after: 50,
            window: Duration::from_mins(15),
            known_address_for: Duration::from_mins(30 * 24 * 60),
        }
    }
}

impl AuthPolicy {
    fn limits(&self, key: &ThrottleKey) -> Limits {
        let (slow_after, lock_after) = match key {
            ThrottleKey::Address(_) => (self.address_slow_after, self.address_lock_after),
            ThrottleKey::Pair(..) | ThrottleKey::Account(_) => (self.slow_after, self.lock_after),
        };
        Limits {
            slow_after,
            lock_after,
            base_delay: self.base_delay,
            lockout: self.lockout,
            window: self.window,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Why a login was refused. The client is told only [`LoginError::public`]: the three
/// credential failures are one answer, so that a missing or wrong code does not confirm the
/// password; the audit log keeps which it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name or password.
    InvalidCredentials,
    /// Right password, but the account has a second factor and no code was given.
    TotpMissing,
    /// Right password, but the code is wrong, or was already used.
    TotpInvalid,
    /// Too many recent failures: retry after this many seconds.
    Throttled { retry_after_s: u64 },
    /// Locked out: retry after this many seconds.
    Locked { retry_after_s: u64 },
}

impl LoginError {
    /// A bounded label for metrics and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginError::InvalidCredentials => "invalid_credentials",
            LoginError::TotpMissing => "totp_missing",
            LoginError::TotpInvalid => "totp_invalid",
            LoginError::Throttled { .. } => "throttled",
            LoginError::Locked { .. } => "locked",
        }
    }

    /// What the client may learn: the credential failures folded into one.
    pub fn public(self) -> LoginError {
        match self {
            LoginError::TotpMissing | LoginError::TotpInvalid => LoginError::InvalidCredentials,
            e => e,
        }
    }
}

/// A successful login.
#[derive(Clone, Debug)]
pub struct LoginOk {
    pub session: String,
    pub csrf: String,
    pub principal: Arc<Principal>,
    /// Seconds until the absolute expiry.
    pub expires_in: u64,
}

/// How a request proved who it is.
#[derive(Clone, Debug)]
pub enum Credential<'a> {
    /// `Authorization: Bearer …` (a session id or an API token).
    Bearer(&'a str),
    /// The console's session cookie.
    Cookie(&'a str),
}

/// An authenticated request's caller.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    /// The session's CSRF token, when the request came with the session cookie: it must then
    /// send `X-CSRF-Token` on state-changing requests.
    pub csrf: Option<String>,
    /// The session id, for logout.
    pub session: Option<String>,
}

struct Session {
    principal: Arc<Principal>,
    csrf: String,
    created: Timestamp,
    last: Timestamp,
    /// When `last` was last handed to the [`SessionShare`].
    shared: Timestamp,
}

impl Session {
    /// What the other nodes of a cluster are told of it.
    fn record(&self) -> SharedSession {
        SharedSession {
            user: self.principal.name.clone(),
            csrf: self.csrf.clone(),
            created_ms: self.created.millis(),
            last_ms: self.last.millis(),
        }
    }
}

/// A session as the other nodes of a cluster hold it: keyed by the digest of its id (never
/// the id), naming its account rather than carrying its grants (each node rebuilds them
/// from its own accounts, so a session outlives no account).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedSession {
    pub user: String,
    pub csrf: String,
    pub created_ms: i64,
    pub last_ms: i64,
}

/// Where a node's session changes go so that the other nodes of its cluster honour them: a
/// login, a use at most every quarter of the idle timeout, a logout. Called with no lock
/// held; it must not block (the adapter queues, and counts what it drops).
pub trait SessionShare: Send + Sync {
    /// `key`: the session id's SHA-256 digest, lowercase hex. `None`: the session ended.
    fn changed(&self, key: &str, session: Option<&SharedSession>);
}

pub struct Auth {
    users: HashMap<String, Account>,
    tokens: HashMap<[u8; 32], Arc<Principal>>,
    /// Hash checked for unknown users, so that timing does not reveal which names exist.
    dummy: String,
    /// By the digest of their id.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// The cluster's shared sessions, when this server is one of its nodes.
    share: std::sync::OnceLock<Arc<dyn SessionShare>>,
    throttle: Mutex<Throttle>,
    /// Last TOTP step accepted per user: a code is good once.
    totp_used: Mutex<HashMap<String, u64>>,
    /// Per account, the addresses (IPv6: their /64) it logged in from, and when last.
    known: Mutex<HashMap<String, Vec<(String, Timestamp)>>>,
    policy: AuthPolicy,
    clock: Arc<dyn Clock>,
    /// Password checks running now (Argon2id holds ~19 MiB each): at most `max_checks`.
    checks: std::sync::atomic::AtomicUsize,
    max_checks: usize,
    /// Argon2's working memory, reused: at most `max_checks` buffers ever exist, so a storm
    /// of logins cannot leave ~19 MiB behind in each of the allocator's per-thread arenas.
    memory: Mutex<Vec<Vec<argon2::Block>>>,
}

/// Longest user name and password looked at; longer ones are refused unread (and never
/// reach a log or the audit log in full).
pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A slot among the password checks allowed at once, released on drop.
struct CheckSlot<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> CheckSlot<'a> {
    fn take(count: &'a std::sync::atomic::AtomicUsize, max: usize) -> Option<CheckSlot<'a>> {
        use std::sync::atomic::Ordering;
        let mut cur = count.load(Ordering::Acquire);
        loop {
            if cur >= max {
                return None;
            }
            match count.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(CheckSlot(count)),
                Err(now) => cur = now,
            }
        }
    }
}

impl Drop for CheckSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Argon2id hash (PHC string) of a password, with a random salt. CPU-heavy.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::Hash(e.to_string()))?
        .to_string())
}

/// SHA-256 digest of an API token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new API token (`bft_` and 256 random bits, base64url) and the digest to declare.
pub fn generate_token() -> (String, String) {
    let token = format!("bft_{}", random_b64(32));
    let hex: String = token_digest(&token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (token, format!("sha256:{hex}"))
}

/// A random password for generated demo credentials (base64url, 128 bits).
pub fn generate_password() -> String {
    random_b64(16)
}

impl Auth {
    pub fn new(policy: AuthPolicy, clock: Arc<dyn Clock>) -> Self {
        Auth {
            users: HashMap::new(),
            tokens: HashMap::new(),
            dummy: String::new(),
            sessions: Mutex::new(HashMap::new()),
            share: std::sync::OnceLock::new(),
            throttle: Mutex::new(Throttle::default()),
            totp_used: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            policy,
            clock,
            checks: std::sync::atomic::AtomicUsize::new(0),
            max_checks: std::thread::available_parallelism()
                .map_or(2, usize::from)
                .clamp(1, 8),
            memory: Mutex::new(Vec::new()),
        }
    }

    /// Adds (or replaces) an account whose hash is already computed.
    pub fn add_account(&mut self, account: Account) {
        if self.dummy.is_empty() {
            self.dummy.clone_from(&account.password_hash);
        }
        self.users.insert(account.name.clone(), account);
    }

    /// Adds (or replaces) a user with an Argon2id hash of `password` (CPU-heavy).
    pub fn add_user(
        &mut self,
        name: &str,
        password: &str,
        grants: Vec<Grant>,
    ) -> Result<(), AuthError> {
        let hash = hash_password(password)?;
        self.add_account(Account {
            name: name.to_string(),
            password_hash: hash,
            grants,
            totp: None,
        });
        Ok(())
    }

    /// Declares an API token by the SHA-256 digest of its value.
    pub fn add_token(&mut self, token: ApiToken) {
        self.tokens.insert(
            token.digest,
            Arc::new(Principal {
                name: format!("token:{}", token.name),
                kind: PrincipalKind::Token,
                grants: token.grants,
            }),
        );
    }

    pub fn policy(&self) -> AuthPolicy {
        self.policy
    }

    /// Each account's role(s) (`operator`, `supervisor+dpo`): what redacted records say
    /// instead of the person (retention purge).
    pub fn staff_roles(&self) -> HashMap<String, String> {
        self.users
            .values()
            .map(|a| {
                let mut roles: Vec<&str> = a.grants.iter().map(|g| g.role.as_str()).collect();
                roles.sort_unstable();
                roles.dedup();
                (a.name.clone(), roles.join("+"))
            })
            .collect()
    }

    /// Whether an account has this name (not for answering clients: for what the audit log
    /// may keep of a failed login).
    pub fn has_account(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Checks the throttle for `name` and `client`, verifies the password (CPU-heavy: call
    /// from `spawn_blocking`) and the second factor, and opens a session. Give the client
    /// [`LoginError::public`] of an error, never the error itself.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        totp: Option<&str>,
        client: &str,
    ) -> Result<LoginOk, LoginError> {
        let now = self.clock.now();
        let addr = throttle_address(client);
        if name.len() > MAX_NAME_BYTES || password.len() > MAX_PASSWORD_BYTES {
            // No account has such a name: a failure of the address, checked by nothing.
            let key = ThrottleKey::Address(addr);
            let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
            t.check(&key, now, &self.policy)?;
            t.fail(key, now, &self.policy);
            return Err(LoginError::InvalidCredentials);
        }
        // Hashing holds memory and a core: beyond the bound, refused at once (retry in 1 s).
        let Some(_slot) = CheckSlot::take(&self.checks, self.max_checks) else {
            return Err(LoginError::Throttled { retry_after_s: 1 });
        };
        let known = self.is_known(name, &addr, now);
        let mut keys = vec![
            ThrottleKey::Pair(name.to_string(), addr.clone()),
            ThrottleKey::Address(addr.clone()),
        ];
        if !known {
            keys.push(ThrottleKey::Account(name.to_string()));
        }
        {
            // Counted before the password is checked, under the same lock as the check:
            // parallel attempts see each other, so a burst checks at most as many passwords
            // as the policy lets through before its first delay.
            let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
            for k in &keys {
                t.check(k, now, &self.policy)?;
            }
            for k in &keys {
                t.fail(k.clone(), now, &self.policy);
            }
        }
        let account = self.verify(name, password, totp, now)?;
        // Only the pair's failures are forgotten: the account's count from elsewhere goes on
        // (the owner logging in must not reset a guesser's budget), and so does the
        // address's (one success must not reset a spray over other accounts); the attempt
        // counted against them in advance is taken back.
        {
            let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
            for k in keys {
                match k {
                    ThrottleKey::Pair(..) => t.forget(&k),
                    ThrottleKey::Address(_) | ThrottleKey::Account(_) => t.undo(&k),
                }
            }
        }
        self.remember(name, addr, now);
        Ok(self.open_session(account, now))
    }

    /// Whether `addr` logged into `name` within [`AuthPolicy::known_address_for`].
    fn is_known(&self, name: &str, addr: &str, now: Timestamp) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(name).is_some_and(|list| {
            list.iter()
                .any(|(a, at)| a == addr && now.since(*at) < self.policy.known_address_for)
        })
    }

    fn remember(&self, name: &str, addr: String, now: Timestamp) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let list = known.entry(name.to_string()).or_default();
        list.retain(|(a, at)| *a != addr && now.since(*at) < self.policy.known_address_for);
        if list.len() >= MAX_KNOWN_ADDRESSES {
            // The least recently used goes.
            list.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
            list.truncate(MAX_KNOWN_ADDRESSES - 1);
        }
        list.push((addr, now));
    }

    /// Whether `password` gives `parsed` (an Argon2 PHC hash), computed in a working memory
    /// taken from the pool and given back. Hashes of other schemes or malformed ones are
    /// refused.
    fn password_matches(&self, password: &[u8], parsed: &PasswordHash<'_>) -> bool {
        let (Ok(algorithm), Ok(params)) = (
            argon2::Algorithm::try_from(parsed.algorithm),
            argon2::Params::try_from(parsed),
        ) else {
            return false;
        };
        let version = parsed
            .version
            .and_then(|v| argon2::Version::try_from(v).ok())
            .unwrap_or_default();
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let mut blocks = {
            let mut pool = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            pool.pop().unwrap_or_default()
        };
        blocks.resize(params.block_count(), argon2::Block::default());
        let mut out = vec![0u8; expected.len()];
        let computed = Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..])
            .is_ok();
        // A hash of unusual parameters does not keep its larger memory around.
        if blocks.len() <= argon2::Params::DEFAULT_M_COST as usize {
            let mut pool = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < self.max_checks {
                pool.push(blocks);
            }
        }
        computed && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
    }

    /// The most password checks that run at once.
    pub fn max_checks(&self) -> usize {
        self.max_checks
    }

    /// The password is always checked (an account with a second factor answers in the same
    /// time whether or not a code came), then the code.
    fn verify(
        &self,
        name: &str,
        password: &str,
        totp: Option<&str>,
        now: Timestamp,
    ) -> Result<&Account, LoginError> {
        let account = self.users.get(name);
        let hash = account.map_or(self.dummy.as_str(), |a| a.password_hash.as_str());
        let ok = PasswordHash::new(hash)
            .is_ok_and(|parsed| self.password_matches(password.as_bytes(), &parsed));
        let account = match account {
            Some(a) if ok => a,
            _ => return Err(LoginError::InvalidCredentials),
        };
        if let Some(secret) = &account.totp {
            let code = totp
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .ok_or(LoginError::TotpMissing)?;
            let unix = u64::try_from(now.0 / 1000).unwrap_or(0);
            let step = crate::totp::verify(secret, code, unix).ok_or(LoginError::TotpInvalid)?;
            let mut used = self.totp_used.lock().unwrap_or_else(|p| p.into_inner());
            if used.get(name).is_some_and(|last| *last >= step) {
                return Err(LoginError::TotpInvalid);
            }
            used.insert(name.to_string(), step);
        }
        Ok(account)
    }

    fn open_session(&self, account: &Account, now: Timestamp) -> LoginOk {
        let session = random_b64(32);
        let csrf = random_b64(32);
        let principal = principal_of(account);
        let digest = token_digest(&session);
        let entry = Session {
            principal: Arc::clone(&principal),
            csrf: csrf.clone(),
            created: now,
            last: now,
            shared: now,
        };
        let record = self.share.get().map(|share| (share, entry.record()));
        {
            let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            s.retain(|_, v| self.alive(v, now));
            s.insert(digest, entry);
        }
        if let Some((share, record)) = record {
            share.changed(&hex_of(&digest), Some(&record));
        }
        LoginOk {
            session,
            csrf,
            principal,
            expires_in: u64::try_from(self.policy.absolute.millis() / 1000).unwrap_or(0),
        }
    }

    /// Hands this server's session changes to `share` from now on (once; later calls are
    /// ignored).
    pub fn share_sessions(&self, share: Arc<dyn SessionShare>) {
        let _ = self.share.set(share);
    }

    /// Applies a session change made on another node (or this one's, coming back): `None`
    /// ends the session here too. A session of an account this server does not have, or
    /// already expired, is not taken. Returns whether the session is now valid here.
    pub fn apply_shared(&self, key: &str, session: Option<SharedSession>) -> bool {
        let Some(digest) = digest_of_hex(key) else {
            return false;
        };
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(remote) = session else {
            s.remove(&digest);
            return false;
        };
        let now = self.clock.now();
        if let Some(local) = s.get_mut(&digest) {
            // Uses seen on either node keep it alive; the rest was fixed at login.
            let last = Timestamp(remote.last_ms);
            if last > local.last {
                local.last = last;
                local.shared = last;
            }
            let alive = self.alive(local, now);
            if !alive {
                s.remove(&digest);
            }
            return alive;
        }
        let Some(account) = self.users.get(&remote.user) else {
            return false;
        };
        let last = Timestamp(remote.last_ms);
        let session = Session {
            principal: principal_of(account),
            csrf: remote.csrf,
            created: Timestamp(remote.created_ms),
            last,
            shared: last,
        };
        if !self.alive(&session, now) {
            return false;
        }
        s.insert(digest, session);
        true
    }

    fn alive(&self, s: &Session, now: Timestamp) -> bool {
        now.since(s.created) < self.policy.absolute && now.since(s.last) < self.policy.idle
    }

    /// The caller a credential stands for, if valid; refreshes the session's idle timer.
    pub fn authenticate(&self, cred: Credential<'_>) -> Option<Authenticated> {
        let now = self.clock.now();
        let (id, cookie) = match cred {
            Credential::Bearer(t) => (t, false),
            Credential::Cookie(c) => (c, true),
        };
        // API tokens and sessions are both kept by digest: one hash for either lookup.
        let digest = token_digest(id);
        if !cookie && let Some(p) = self.tokens.get(&digest) {
            return Some(Authenticated {
                principal: Arc::clone(p),
                csrf: None,
                session: None,
            });
        }
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let alive = s.get(&digest).map(|v| self.alive(v, now))?;
        if !alive {
            s.remove(&digest);
            return None;
        }
        let v = s.get_mut(&digest)?;
        v.last = now;
        // Other nodes learn of uses a quarter of the idle timeout apart: a session may end
        // there that much early, never late.
        let share = match self.share.get() {
            Some(share) if now.since(v.shared).millis() >= self.policy.idle.millis() / 4 => {
                v.shared = now;
                Some((Arc::clone(share), v.record()))
            }
            _ => None,
        };
        let who = Authenticated {
            principal: Arc::clone(&v.principal),
            csrf: cookie.then(|| v.csrf.clone()),
            session: Some(id.to_string()),
        };
        drop(s);
        if let Some((share, record)) = share {
            share.changed(&hex_of(&digest), Some(&record));
        }
        Some(who)
    }

    /// Whether a session is still valid, without counting this as use (the live stream asks
    /// before each event: a stream must not keep an idle session alive, nor outlive it).
    pub fn session_alive(&self, session: &str) -> bool {
        let now = self.clock.now();
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.get(&token_digest(session))
            .is_some_and(|v| self.alive(v, now))
    }

    pub fn logout(&self, session: &str) {
        let digest = token_digest(session);
        let removed = {
            let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            s.remove(&digest).is_some()
        };
        if removed && let Some(share) = self.share.get() {
            share.changed(&hex_of(&digest), None);
        }
    }
}

/// A console user's principal: the account's grants.
fn principal_of(account: &Account) -> Arc<Principal> {
    Arc::new(Principal {
        name: account.name.clone(),
        kind: PrincipalKind::User,
        grants: account.grants.clone(),
    })
}

fn hex_of(digest: &[u8; 32]) -> String {
    hex::encode(digest)
}

fn digest_of_hex(key: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(key, &mut out).ok()?;
    Some(out)
}

/// Compares a CSRF header with the session's token in constant time.
pub fn csrf_matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// What a failure counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// One account from one address.
    Pair(String, String),
    /// One address, over every account.
    Address(String),
    /// One account from addresses it has not logged in from.
    Account(String),
}

/// The thresholds for one key.
#[derive(Clone, Copy, Debug)]
struct Limits {
    slow_after: u32,
    lock_after: u32,
    base_delay: Duration,
    lockout: Duration,
    window: Duration,
}

/// The address that login throttling counts: an IPv4 address as is, an IPv6 address by its
/// /64 (one subscriber's prefix: counting single addresses would give an attacker 2^64 of
/// them), an IPv4-mapped IPv6 address as IPv4.
pub fn throttle_address(client: &str) -> String {
    match client.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(ip) => ip.to_string(),
        Err(_) => client.chars().take(64).collect(),
    }
}

/// Most addresses remembered per account.
const MAX_KNOWN_ADDRESSES: usize = 16;

/// Recent failures per [`ThrottleKey`].
#[derive(Default)]
pub struct Throttle {
    keys: HashMap<ThrottleKey, Failures>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Timestamp,
}

/// Most keys tracked; beyond it the oldest are forgotten (bounded memory under a spray).
const MAX_THROTTLE_KEYS: usize = 100_000;

impl Throttle {
    /// Refuses an attempt while a delay or a lock-out runs.
    pub fn check(
        &self,
        key: &ThrottleKey,
        now: Timestamp,
        policy: &AuthPolicy,
    ) -> Result<(), LoginError> {
        let Some(f) = self.keys.get(key) else {
            return Ok(());
        };
        let p = policy.limits(key);
        if now.since(f.last) >= p.window.max(p.lockout) {
            return Ok(());
        }
        let secs = |d: Duration, since: Duration| {
            u64::try_from((d.millis() - since.millis() + 999) / 1000).unwrap_or(1)
        };
        let elapsed = now.since(f.last);
        if f.count >= p.lock_after {
            if elapsed < p.lockout {
                return Err(LoginError::Locked {
                    retry_after_s: secs(p.lockout, elapsed),
                });
            }
            return Ok(());
        }
        if f.count >= p.slow_after {
            let shift = (f.count - p.slow_after).min(16);
            let delay = Duration(p.base_delay.millis().saturating_mul(1 << shift));
            if elapsed < delay {
                return Err(LoginError::Throttled {
                    retry_after_s: secs(delay, elapsed),
                });
            }
        }
        Ok(())
    }

    pub fn fail(&mut self, key: ThrottleKey, now: Timestamp, policy: &AuthPolicy) {
        let p = policy.limits(&key);
        if self.keys.len() >= MAX_THROTTLE_KEYS && !self.keys.contains_key(&key) {
            let horizon = policy.window.max(policy.lockout);
            self.keys.retain(|_, f| now.since(f.last) < horizon);
            if self.keys.len() >= MAX_THROTTLE_KEYS {
                return;
            }
        }
        let f = self.keys.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.since(f.last) >= p.window.max(p.lockout) || f.count >= p.lock_after {
            // Forgotten, or a lock-out that has run out: start again.
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
    }

    pub fn forget(&mut self, key: &ThrottleKey) {
        self.keys.remove(key);
    }

    /// Takes back one failure counted for `key` (an attempt counted in advance that
    /// succeeded).
    pub fn undo(&mut self, key: &ThrottleKey) {
        if let Some(f) = self.keys.get_mut(key) {
            f.count = f.count.saturating_sub(1);
            if f.count == 0 {
                self.keys.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Role, Scope};
    use beffroi_core::SimClock;

    fn auth(clock: &SimClock) -> Auth {
        let mut a = Auth::new(AuthPolicy::default(), Arc::new(clock.clone()));
        a.add_user(
            "admin",
            "s3cret",
            vec![Grant {
                role: Role::Administrator,
                scope: Scope::Territory,
            }],
        )
        .expect("hash");
        a
    }

    /// The check in pooled memory agrees with the library's own verification, refuses
    /// other schemes, and never keeps more working memories than checks may run at once.
    #[test]
    fn passwords_are_checked_in_a_bounded_pool_of_working_memory() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let a = auth(&clock);
        let hash = hash_password("correct horse battery").expect("hash");
        let parsed = PasswordHash::new(&hash).expect("phc");
        assert!(a.password_matches(b"correct horse battery", &parsed));
        assert!(!a.password_matches(b"correct horse batterY", &parsed));
        let other =
            PasswordHash::new("$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").expect("phc");
        assert!(!a.password_matches(b"x", &other));
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| assert!(a.password_matches(b"correct horse battery", &parsed)));
            }
        });
        let kept = a.memory.lock().expect("pool").len();
        assert!(
            (1..=a.max_checks()).contains(&kept),
            "{kept} working memories kept, at most {}",
            a.max_checks()
        );
    }

    #[test]
    fn login_check_logout() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let a = auth(&clock);
        assert_eq!(
            a.login("admin", "wrong", None, "1").err(),
            Some(LoginError::InvalidCredentials)
        );
        assert_eq!(
            a.login("nobody", "s3cret", None, "1").err(),
            Some(LoginError::InvalidCredentials)
        );
        let ok = a.login("admin", "s3cret", None, "1").expect("valid");
        let bearer = a
            .authenticate(Credential::Bearer(&ok.session))
            .expect("bearer");
        assert_eq!(bearer.principal.name, "admin");
        assert!(
            bearer.csrf.is_none(),
            "bearer requests are not subject to CSRF"
        );
        let cookie = a
            .authenticate(Credential::Cookie(&ok.session))
            .expect("cookie");
        assert_eq!(cookie.csrf.as_deref(), Some(ok.csrf.as_str()));
        a.logout(&ok.session);
        assert!(a.authenticate(Credential::Bearer(&ok.session)).is_none());
    }

    /// What a node hands to the cluster, recorded.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(String, Option<SharedSession>)>>);

    impl SessionShare for Recorded {
        fn changed(&self, key: &str, session: Option<&SharedSession>) {
            self.0
                .lock()
                .expect("recorded")
                .push((key.to_string(), session.cloned()));
        }
    }

    impl Recorded {
        fn take(&self) -> Vec<(String, Option<SharedSession>)> {
            std::mem::take(&mut *self.0.lock().expect("recorded"))
        }
    }

    /// A session opened on one node works on another once its change is applied there: the
    /// same CSRF token and grants; uses keep it alive on both; logout ends it on both. What
    /// crosses names the digest of the id, never the id.
    #[test]
    fn a_session_opened_on_one_node_holds_on_another_until_logout() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let (a, b) = (auth(&clock), auth(&clock));
        let shared = Arc::new(Recorded::default());
        a.share_sessions(Arc::clone(&shared) as Arc<dyn SessionShare>);
        let ok = a.login("admin", "s3cret", None, "1").expect("valid");
        assert!(
            b.authenticate(Credential::Cookie(&ok.session)).is_none(),
            "not yet shared"
        );
        let changes = shared.take();
        assert_eq!(changes.len(), 1, "{changes:?}");
        let (key, record) = changes[0].clone();
        assert_eq!(key, hex::encode(token_digest(&ok.session)));
        let json = serde_json::to_string(&record).expect("json");
        assert!(!json.contains(&ok.session), "the id crossed: {json}");
        assert!(b.apply_shared(&key, record));
        let there = b
            .authenticate(Credential::Cookie(&ok.session))
            .expect("valid on the other node");
        assert_eq!(there.csrf.as_deref(), Some(ok.csrf.as_str()));
        assert_eq!(there.principal.grants, ok.principal.grants);

        // Used on the first node only: a use sooner than a quarter of the idle timeout is
        // not sent, a later one is, and keeps the session alive on the other node past its
        // own idle timeout.
        clock.advance(Duration::from_mins(5));
        assert!(a.authenticate(Credential::Cookie(&ok.session)).is_some());
        assert!(shared.take().is_empty());
        clock.advance(Duration::from_mins(5));
        assert!(a.authenticate(Credential::Cookie(&ok.session)).is_some());
        let touches = shared.take();
        assert_eq!(touches.len(), 1, "{touches:?}");
        for (k, r) in touches {
            assert!(b.apply_shared(&k, r));
        }
        clock.advance(Duration::from_mins(25));
        assert!(
            b.session_alive(&ok.session),
            "35 minutes after its last use there, 25 after its last use anywhere"
        );

        a.logout(&ok.session);
        let ended = shared.take();
        assert_eq!(ended, vec![(key.clone(), None)]);
        for (k, r) in ended {
            assert!(!b.apply_shared(&k, r));
        }
        assert!(b.authenticate(Credential::Cookie(&ok.session)).is_none());
    }

    /// A shared session is not taken for an account this node lacks, once expired, or under
    /// a key that is not a digest.
    #[test]
    fn shared_sessions_of_unknown_accounts_expired_or_malformed_are_refused() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let b = auth(&clock);
        let now = clock.now().millis();
        let record = |user: &str, created_ms: i64, last_ms: i64| SharedSession {
            user: user.into(),
            csrf: "c".into(),
            created_ms,
            last_ms,
        };
        let key = hex::encode(token_digest("some-session"));
        assert!(!b.apply_shared(&key, Some(record("mallory", now, now))));
        let idle = b.policy().idle.millis();
        assert!(!b.apply_shared(&key, Some(record("admin", now - idle - 1, now - idle - 1))));
        let absolute = b.policy().absolute.millis();
        assert!(!b.apply_shared(&key, Some(record("admin", now - absolute, now))));
        assert!(!b.apply_shared("not-hex", Some(record("admin", now, now))));
        assert!(!b.apply_shared(&key[..62], Some(record("admin", now, now))));
        assert!(b.authenticate(Credential::Bearer("some-session")).is_none());
        assert!(b.apply_shared(&key, Some(record("admin", now, now))));
        assert!(b.authenticate(Credential::Bearer("some-session")).is_some());
    }

    #[test]
    fn sessions_expire_idle_and_absolute() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let a = auth(&clock);
        let p = a.policy();
        let s = a
            .login("admin", "s3cret", None, "1")
            .expect("valid")
            .session;
        // Used every 20 minutes: the idle timer never runs out, the absolute one does.
        let step = Duration::from_mins(20);
        let mut used = Duration(0);
        while used.millis() + step.millis() < p.absolute.millis() {
            clock.advance(step);
            used = Duration(used.millis() + step.millis());
            assert!(
                a.authenticate(Credential::Cookie(&s)).is_some(),
                "at {used:?}"
            );
        }
        clock.advance(step);
        assert!(a.authenticate(Credential::Cookie(&s)).is_none());
        // Idle: 30 minutes without use.
        let s = a
            .login("admin", "s3cret", None, "1")
            .expect("valid")
            .session;
        clock.advance(Duration::from_mins(29));
        assert!(a.authenticate(Credential::Bearer(&s)).is_some());
        // Asking whether it is alive is not using it.
        clock.advance(Duration::from_mins(20));
        assert!(a.session_alive(&s));
        clock.advance(Duration::from_mins(10));
        assert!(!a.session_alive(&s));
        assert!(a.authenticate(Credential::Bearer(&s)).is_none());
    }

    #[test]
    fn api_tokens_authenticate_as_bearer_only() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let mut a = auth(&clock);
        let (token, declared) = generate_token();
        let hex = declared.trim_start_matches("sha256:");
        assert_eq!(hex.len(), 64);
        a.add_token(ApiToken {
            name: "sig".into(),
            digest: token_digest(&token),
            grants: vec![Grant {
                role: Role::Technician,
                scope: Scope::Territory,
            }],
        });
        let p = a.authenticate(Credential::Bearer(&token)).expect("token");
        assert_eq!(p.principal.name, "token:sig");
        assert_eq!(p.principal.kind, PrincipalKind::Token);
        assert!(a.authenticate(Credential::Cookie(&token)).is_none());
        assert!(a.login("token:sig", &token, None, "1").is_err());
        // Tokens do not expire with sessions.
        clock.advance(Duration::from_mins(24 * 60));
        assert!(a.authenticate(Credential::Bearer(&token)).is_some());
    }

    #[test]
    fn guessing_is_slowed_then_locked_out() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let a = auth(&clock);
        let p = a.policy();
        let mut saw_throttle = false;
        let mut failures = 0;
        // Guess as fast as allowed: wait out each delay, count the guesses that are checked.
        for _ in 0..100 {
            match a.login("admin", "guess", None, "10.0.0.1") {
                Err(LoginError::InvalidCredentials) => failures += 1,
                Err(LoginError::Throttled { retry_after_s }) => {
                    saw_throttle = true;
                    assert!(retry_after_s >= 1);
                    clock.advance(Duration::from_secs(retry_after_s as i64));
                }
                Err(LoginError::Locked { retry_after_s }) => {
                    assert_eq!(failures, p.lock_after);
                    assert!(retry_after_s <= (p.lockout.millis() / 1000) as u64);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(saw_throttle);
        assert_eq!(failures, p.lock_after);
        // The right password is refused while locked, from this address and from any
        // address that never logged into the account.
        assert!(matches!(
            a.login("admin", "s3cret", None, "10.0.0.1"),
            Err(LoginError::Locked { .. })
        ));
        assert!(matches!(
            a.login("admin", "s3cret", None, "10.0.0.2"),
            Err(LoginError::Locked { .. })
        ));
        clock.advance(p.lockout);
        assert!(a.login("admin", "s3cret", None, "10.0.0.2").is_ok());
    }

    /// Guesses from many addresses lock the account for addresses it has never logged in
    /// from, not for its owner's: the right password from a previously successful address
    /// still works, at once. (With one lock for the account, the owner was locked out for
    /// 15 minutes by ten guesses from anywhere.)
    #[test]
    fn guesses_from_elsewhere_do_not_lock_out_a_known_address() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let a = auth(&clock);
        let p = a.policy();
        assert!(a.login("admin", "s3cret", None, "192.0.2.7").is_ok());
        let mut checked = 0;
        for i in 0..500 {
            match a.login(
                "admin",
                &format!("guess-{i}"),
                None,
                &format!("198.51.100.{}", i % 250),
            ) {
                Err(LoginError::InvalidCredentials) => checked += 1,
                Err(LoginError::Throttled { retry_after_s }) => {
                    clock.advance(Duration::from_secs(retry_after_s as i64));
                }
                Err(LoginError::Locked { .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            checked, p.lock_after,
            "the account-wide budget is the policy's"
        );
        assert!(matches!(
            a.login("admin", "s3cret", None, "203.0.113.9"),
            Err(LoginError::Locked { .. })
        ));
        assert!(
            a.login("admin", "s3cret", None, "192.0.2.7").is_ok(),
            "the owner's address is not locked out"
        );
        // A known address still has its own budget: it does not get unlimited guesses.
        let mut from_known = 0;
        for i in 0..50 {
            match a.login("admin", &format!("again-{i}"), None, "192.0.2.7") {
                Err(LoginError::InvalidCredentials) => from_known += 1,
                Err(LoginError::Throttled { retry_after_s }) => {
                    clock.advance(Duration::from_secs(retry_after_s as i64));
                }
                Err(LoginError::Locked { .. }) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(from_known, p.lock_after);
    }

    /// One subscriber's IPv6 prefix is one address for throttling.
    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        assert_eq!(
            throttle_address("2001:db8:1:2:aaaa::1"),
            throttle_address("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(
            throttle_address("2001:db8:1:2::1"),
            throttle_address("2001:db8:1:3::1")
        );
        assert_eq!(throttle_address("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(throttle_address("10.0.0.1"), "10.0.0.1");
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let a = auth(&clock);
        let p = a.policy();
        // Wrong guesses for one account from addresses of one /64: one pair budget.
        let mut checked = 0;
        for i in 0..200u32 {
            let addr = format!("2001:db8:1:2::{i:x}");
            match a.login("admin", "guess", None, &addr) {
                Err(LoginError::InvalidCredentials) => checked += 1,
                Err(LoginError::Throttled { retry_after_s }) => {
                    clock.advance(Duration::from_secs(retry_after_s as i64));
                }
                Err(LoginError::Locked { .. }) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(checked, p.lock_after);
    }

    #[test]
    fn second_factor_is_required_checked_and_single_use() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let mut a = auth(&clock);
        let secret = b"12345678901234567890".to_vec();
        a.add_account(Account {
            name: "op".into(),
            password_hash: hash_password("pw").expect("hash"),
            grants: vec![],
            totp: Some(secret.clone()),
        });
        // Without a code, or with a wrong one, the client hears the same as for a wrong
        // password: the second factor does not confirm the password.
        let answers = [
            a.login("op", "pw", None, "1").err(),
            a.login("op", "bad", None, "2").err(),
            a.login("op", "bad", Some("000000"), "3").err(),
        ];
        assert_eq!(
            answers[0],
            Some(LoginError::TotpMissing),
            "the audit log knows"
        );
        assert!(
            answers
                .iter()
                .all(|e| e.map(LoginError::public) == Some(LoginError::InvalidCredentials)),
            "{answers:?}"
        );
        // Three failures for the account: wait out the delay before the next attempt.
        clock.advance(Duration::from_secs(2));
        let now = 1_700_000_002u64;
        let good = crate::totp::code(&secret, now / 30);
        let wrong = format!("{:06}", (good.parse::<u32>().unwrap_or(0) + 1) % 1_000_000);
        let e = a.login("op", "pw", Some(&wrong), "1").err();
        assert_eq!(e, Some(LoginError::TotpInvalid));
        assert_eq!(
            e.map(LoginError::public),
            Some(LoginError::InvalidCredentials)
        );
        clock.advance(Duration::from_secs(4));
        assert!(a.login("op", "pw", Some(&good), "1").is_ok());
        assert_eq!(
            a.login("op", "pw", Some(&good), "1").err(),
            Some(LoginError::TotpInvalid),
            "a code is good once"
        );
    }

    #[test]
    fn csrf_comparison() {
        assert!(csrf_matches("abc", "abc"));
        assert!(!csrf_matches("abc", "abd"));
        assert!(!csrf_matches("abc", "ab"));
    }

    /// Parallel wrong passwords for one account: each attempt is counted before its
    /// password is checked, so a burst checks at most as many passwords as the policy lets
    /// through before its first delay, however many arrive at once; the rest are refused
    /// without hashing. (Counted after the check, all 64 of a burst of 64 were checked.)
    #[test]
    fn a_burst_of_parallel_guesses_checks_at_most_the_policys_number_of_passwords() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let a = Arc::new(auth(&clock));
        let barrier = Arc::new(std::sync::Barrier::new(500));
        let threads: Vec<_> = (0..500)
            .map(|i| {
                let (a, barrier) = (Arc::clone(&a), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    // Retry while the hashing bound refuses: only the throttle may stop us.
                    loop {
                        let addr = format!("10.0.{}.{}", i / 250, i % 250);
                        match a.login("admin", &format!("guess-{i}"), None, &addr) {
                            Err(LoginError::Throttled { retry_after_s: 1 })
                                if a.checks.load(std::sync::atomic::Ordering::Acquire) > 0 =>
                            {
                                std::thread::yield_now();
                            }
                            r => return r,
                        }
                    }
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let checked = results
            .iter()
            .filter(|r| matches!(r, Err(LoginError::InvalidCredentials)))
            .count();
        let policy = AuthPolicy::default();
        assert!(
            checked as u32 <= policy.slow_after,
            "{checked} passwords checked in a burst (policy: {})",
            policy.slow_after
        );
        assert!(checked >= 1);
        assert!(
            results.iter().all(|r| matches!(
                r,
                Err(LoginError::InvalidCredentials | LoginError::Throttled { .. })
            )),
            "{:?}",
            results.iter().filter(|r| r.is_ok()).count()
        );
    }

    /// A name or password longer than any account's is refused without hashing, and counts
    /// against the address.
    #[test]
    fn an_oversized_name_is_refused_unread() {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        let a = auth(&clock);
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            a.login(&long, "pw", None, "10.0.0.9"),
            Err(LoginError::InvalidCredentials)
        ));
        assert_eq!(a.checks.load(std::sync::atomic::Ordering::Acquire), 0);
        assert!(a.login("admin", "s3cret", None, "10.0.0.9").is_ok());
    }
}
