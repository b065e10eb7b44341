//! The relay connection: typed calls over HTTP (reqwest, rustls) and the WebSocket push
//! channel (tokio-tungstenite), with retries and exponential backoff for what is worth
//! retrying (unreachable relay, 5xx, 429) and none for what is not (4xx: the request
//! itself is wrong, and retrying would not change the answer).
//!
//! The request and response bodies are the relay's own types ([`chorus_relay_api`]),
//! so both ends share one definition of the contract (`docs/relay-api.md`).

use std::sync::Arc;
use std::time::Duration;

use chorus_crypto::DeviceSigningKey;
use chorus_relay_api::binary;
use chorus_relay_api::limits::{MAX_PAGE_BYTES, MAX_RECORD_BYTES};
use chorus_relay_api::{
    self, AddDeviceRequest, AppendRequest, AppendResponse, BatchReadRequest, BatchReadResponse,
    BundledPost, ChallengeRequest, ChallengeResponse, ChannelMessages, ChannelPostRequest,
    CreateChannelRequest, CreateChannelResponse, CreateLogRequest, DeviceListResponse,
    DevicesResponse, HexBytes, Id16, Id32, LogInfoResponse, MailboxCursor,
    PostDeviceEnvelopesRequest, PostEnvelopeRequest, PostEnvelopeResponse, PrekeyBundle,
    PrekeyCount, PresenceResponse, PublishPrekeysRequest, PutDeviceListRequest, RecordIn,
    RecordOut, RecordsPage, RegisterMailboxRequest, RevokeDeviceRequest, SessionRequest,
    SessionResponse,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Largest relay answer the client buffers (a hostile relay could send more).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The encoding a call asks the relay to answer in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// JSON, as every endpoint answers.
    Json,
    /// [`binary`] for a page of records or envelopes, which the relay may still
    /// answer in JSON.
    Bulk,
}

/// How long one HTTP request may take before it counts as a failed attempt.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The same for a relay someone else named: a contact's relay that stalls costs a
/// flush of the outbox at most this long, and then waits its backoff.
pub const FOREIGN_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a relay call failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No answer: connection refused, reset or timed out (after every retry).
    #[error("relay {url} is unreachable: {reason}")]
    Unreachable {
        /// The relay.
        url: String,
        /// What the network said.
        reason: String,
    },
    /// The relay answered with an error status and code.
    #[error("relay {url} refused the request: {status} {code}")]
    Refused {
        /// The relay.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The relay's error code (`docs/relay-api.md`).
        code: String,
    },
    /// The relay answered something that is not the documented body.
    #[error("relay {url} sent an unexpected answer: {reason}")]
    BadResponse {
        /// The relay.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The relay does not let this device in: it was removed from its identity
    /// (revoked), or its link never finished.
    #[error(
        "relay {url} does not know this device: it was removed from its identity (revoked by another of its devices), or its link never finished"
    )]
    NotRegistered {
        /// The relay.
        url: String,
    },
    /// `per-device`: the copies did not name the contact's devices as its list does;
    /// nothing was stored.
    #[error(
        "relay {url} refused the copies: the contact's devices changed ({} new, {} gone, {} restarted)",
        mismatch.missing.len(),
        mismatch.extra.len(),
        mismatch.stale.len()
    )]
    DeviceMismatch {
        /// The relay.
        url: String,
        /// How the copies differed from the list.
        mismatch: chorus_wire::Mismatch,
    },
    /// The relay URL is not an http(s) URL.
    #[error("invalid relay URL {0:?}: must start with http:// or https://")]
    BadUrl(String),
    /// A relay URL someone else gave us points where this device will not connect
    /// (plain http, or a loopback, private or link-local host), see [`UrlPolicy`].
    #[error("refusing relay URL {url:?} from a contact: {reason}")]
    ForbiddenUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
}

impl RelayError {
    /// The relay's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            Self::DeviceMismatch { .. } => Some("device_mismatch"),
            _ => None,
        }
    }

    pub(crate) fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Retry schedule: `attempts` tries in all, waiting `first`, then doubling up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Tries in all (at least one).
    pub attempts: u32,
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// For one command: a few quick retries, a clear error within about two seconds.
    pub const COMMAND: Backoff = Backoff {
        attempts: 4,
        first: Duration::from_millis(150),
        max: Duration::from_secs(1),
    };

    /// The wait before retry number `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        self.first.saturating_mul(1u32 << n.min(16)).min(self.max)
    }
}

/// A login to one constellation log: the log id and the device key that proves membership.
#[derive(Clone)]
pub struct Login {
    /// The identity's log.
    pub log_id: Id32,
    /// This device's key.
    pub device: Arc<DeviceSigningKey>,
}

/// What a mailbox is for, which decides how the relay takes envelopes into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxUse {
    /// One contact's: only they know its id.
    Contact,
    /// The identity's address: any stranger may write.
    Intro,
    /// One invitation's: taken by whoever answers it first, then theirs only.
    Invitation,
}

impl MailboxUse {
    /// From the `kind` a device stores with its mailboxes.
    pub fn from_kind(kind: &str) -> Self {
        match kind {
            "intro" => MailboxUse::Intro,
            "invitation" => MailboxUse::Invitation,
            _ => MailboxUse::Contact,
        }
    }
}

/// One relay, by base URL (`http://host:port`).
#[derive(Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    url: String,
    backoff: Backoff,
    login: Option<Login>,
    token: Arc<Mutex<Option<String>>>,
    /// Requests sent through this client and its clones (for the sender-cost bench).
    requests: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Checks and normalises a relay URL (scheme, no trailing slash).
pub fn normalize_url(url: &str) -> Result<String, RelayError> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| RelayError::BadUrl(url.to_owned()))?;
    if rest.is_empty()
        || rest.contains(|c: char| c.is_whitespace() || c.is_control())
        || trimmed.len() > chorus_wire::limits::MAX_RELAY_URL_LEN
    {
        return Err(RelayError::BadUrl(url.to_owned()));
    }
    Ok(trimmed.to_owned())
}

/// What kind of host a relay URL names, for [`UrlPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostClass {
    /// A public address or name.
    Public,
    /// This machine (127.0.0.0/8, ::1, `localhost`).
    Loopback,
    /// A private network (RFC 1918, RFC 6598 shared space, IPv6 unique local).
    Private,
    /// Link-local (169.254.0.0/16 — cloud metadata services live here —, fe80::/10).
    LinkLocal,
    /// Never a relay: unspecified, broadcast, multicast, documentation ranges.
    Never,
}

impl HostClass {
    fn of_ip(ip: std::net::IpAddr) -> Self {
        use std::net::IpAddr;
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                if v4.is_loopback() {
                    Self::Loopback
                } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                    Self::Private
                } else if v4.is_link_local() {
                    Self::LinkLocal
                } else if v4.is_unspecified()
                    || v4.is_broadcast()
                    || v4.is_multicast()
                    || v4.is_documentation()
                    || a == 0
                    || a >= 240
                {
                    Self::Never
                } else {
                    Self::Public
                }
            }
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return Self::of_ip(IpAddr::V4(v4));
                }
                let first = v6.segments()[0];
                if v6.is_loopback() {
                    Self::Loopback
                } else if first & 0xfe00 == 0xfc00 {
                    Self::Private
                } else if first & 0xffc0 == 0xfe80 {
                    Self::LinkLocal
                } else if v6.is_unspecified()
                    || v6.is_multicast()
                    || first == 0x2001 && v6.segments()[1] == 0x0db8
                {
                    Self::Never
                } else {
                    Self::Public
                }
            }
        }
    }

    /// `host` as the URL parser printed it (canonical: `2130706433` is `127.0.0.1`,
    /// IPv6 in brackets).
    fn of_host(host: &str) -> Self {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Self::of_ip(ip);
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            Self::Loopback
        } else {
            Self::Public
        }
    }
}

/// Which relay URLs given to us by others (a contact's hello, an invitation, an
/// address) this device connects to. Others choose these URLs, so without a policy a
/// stranger could point every device of the identity at hosts inside its network
/// (SSRF) or at a tarpit. By default only `https` to public hosts; a home relay that is
/// itself plain `http`, on loopback or on a private network widens the policy to that
/// scheme and that class of host only (a LAN or test setup), and
/// [`UrlPolicy::PERMISSIVE`] (`--allow-private-relays`) allows every class.
/// Unspecified, broadcast, multicast and documentation addresses are always refused.
/// The check runs on the URL, on every address its name resolves to (so a public name
/// cannot resolve to a private address), and redirects are never followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlPolicy {
    allow_http: bool,
    loopback: bool,
    private: bool,
    link_local: bool,
}

impl UrlPolicy {
    /// `https` to public hosts only.
    pub const STRICT: UrlPolicy = UrlPolicy {
        allow_http: false,
        loopback: false,
        private: false,
        link_local: false,
    };

    /// Any scheme, any class of host (test setups: `--allow-private-relays`).
    pub const PERMISSIVE: UrlPolicy = UrlPolicy {
        allow_http: true,
        loopback: true,
        private: true,
        link_local: true,
    };

    /// The policy for a device whose home relay is `home`: strict, widened to the
    /// home relay's own scheme and class of host.
    pub fn for_home(home: &str) -> Self {
        let mut policy = Self::STRICT;
        if let Ok(url) = reqwest::Url::parse(home) {
            policy.allow_http = url.scheme() == "http";
            match url.host_str().map(HostClass::of_host) {
                Some(HostClass::Loopback) => policy.loopback = true,
                Some(HostClass::Private) => policy.private = true,
                Some(HostClass::LinkLocal) => policy.link_local = true,
                _ => {}
            }
        }
        policy
    }

    fn allows(&self, class: HostClass) -> Result<(), &'static str> {
        match class {
            HostClass::Public => Ok(()),
            HostClass::Loopback if self.loopback => Ok(()),
            HostClass::Private if self.private => Ok(()),
            HostClass::LinkLocal if self.link_local => Ok(()),
            HostClass::Loopback => Err("a loopback host"),
            HostClass::Private => Err("a private-network host"),
            HostClass::LinkLocal => Err("a link-local host"),
            HostClass::Never => Err("an address that is never a relay"),
        }
    }

    /// Checks (and normalises) a relay URL someone else gave us.
    pub fn check(&self, url: &str) -> Result<String, RelayError> {
        let normalized = normalize_url(url)?;
        let forbidden = |reason| RelayError::ForbiddenUrl {
            url: normalized.clone(),
            reason,
        };
        let parsed =
            reqwest::Url::parse(&normalized).map_err(|_| RelayError::BadUrl(url.into()))?;
        if parsed.scheme() == "http" && !self.allow_http {
            return Err(forbidden("plain http (only https is accepted)"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(forbidden("credentials in the URL"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| RelayError::BadUrl(url.into()))?;
        self.allows(HostClass::of_host(host)).map_err(forbidden)?;
        Ok(normalized)
    }
}

/// Resolves names for connections to others' relays, dropping every address the
/// policy refuses (a public name that resolves to 10.0.0.1 connects nowhere).
struct PolicyResolver(UrlPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.allows(HostClass::of_ip(a.ip())).is_ok())
                .collect();
            if addrs.is_empty() {
                return Err(
                    format!("{host} resolves to no address this device may contact").into(),
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl RelayClient {
    /// A client for the relay at `url`, without a login (public endpoints only). For
    /// the user's own relay; a relay someone else named goes through
    /// [`RelayClient::foreign`].
    pub fn new(url: &str, backoff: Backoff) -> Result<Self, RelayError> {
        Self::build(normalize_url(url)?, backoff, None)
    }

    /// A client for a relay someone else named (a contact's hello, an invitation, an
    /// address), checked against `policy` — the URL, every address it resolves to —
    /// with redirects refused.
    pub fn foreign(url: &str, backoff: Backoff, policy: UrlPolicy) -> Result<Self, RelayError> {
        Self::build(policy.check(url)?, backoff, Some(policy))
    }

    fn build(url: String, backoff: Backoff, policy: Option<UrlPolicy>) -> Result<Self, RelayError> {
        let timeout = match policy {
            None => REQUEST_TIMEOUT,
            Some(_) => FOREIGN_REQUEST_TIMEOUT,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            // A relay never redirects; following one would bypass the URL check.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(policy) = policy {
            builder = builder.dns_resolver(Arc::new(PolicyResolver(policy)));
        }
        let http = builder.build().map_err(|e| RelayError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            http,
            url,
            backoff,
            login: None,
            token: Arc::new(Mutex::new(None)),
            requests: Arc::default(),
        })
    }

    /// The same login at another URL (a test's wrapper in front of the relay).
    #[cfg(test)]
    pub(crate) fn rebased(&self, url: &str) -> Self {
        Self {
            url: normalize_url(url).unwrap_or_else(|_| url.to_owned()),
            token: Arc::new(Mutex::new(None)),
            ..self.clone()
        }
    }

    /// The same relay, logged in as a device of a log.
    pub fn with_login(mut self, login: Login) -> Self {
        self.login = Some(login);
        self.token = Arc::new(Mutex::new(None));
        self
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many HTTP requests this client (with its clones) has sent, logins and
    /// retries included.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn once<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        token: Option<&str>,
        answer: Answer,
    ) -> Result<T, RelayError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if answer == Answer::Bulk {
            req = req.header(reqwest::header::ACCEPT, binary::MEDIA_TYPE);
        }
        let resp = self.send(req).await?;
        let labelled_binary = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes() == binary::MEDIA_TYPE.as_bytes());
        let (status, bytes) = self.read_capped(resp).await?;
        let bad = |reason: String| RelayError::BadResponse {
            url: self.url.clone(),
            reason,
        };
        // Binary only when asked for: a relay may always answer JSON.
        if labelled_binary {
            if answer != Answer::Bulk {
                return Err(bad("a binary answer to a JSON request".into()));
            }
            return binary::decode(&bytes).map_err(|e| bad(e.to_string()));
        }
        let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            b"null".to_vec()
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
    }

    /// Reads an answer, never buffering more than the largest honest answer (the relay
    /// is untrusted); a non-success status becomes `Refused` with the relay's code.
    async fn read_capped(
        &self,
        resp: reqwest::Response,
    ) -> Result<(StatusCode, Vec<u8>), RelayError> {
        self.read_capped_at(resp, MAX_RESPONSE_BYTES).await
    }

    /// [`Self::read_capped`] with a tighter bound `max` for what is known to be small.
    async fn read_capped_at(
        &self,
        mut resp: reqwest::Response,
        max: usize,
    ) -> Result<(StatusCode, Vec<u8>), RelayError> {
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| RelayError::Unreachable {
            url: self.url.clone(),
            reason: root_cause(&e),
        })? {
            if bytes.len() + chunk.len() > max {
                return Err(RelayError::BadResponse {
                    url: self.url.clone(),
                    reason: format!("answer larger than {max} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // `per-device`: the facts the sender plans its retry on.
            if let Ok(m) = serde_json::from_slice::<chorus_relay_api::DeviceMismatch>(&bytes)
                && m.error == "device_mismatch"
            {
                let ids = |v: Vec<Id32>| v.into_iter().map(|i| i.0).collect();
                return Err(RelayError::DeviceMismatch {
                    url: self.url.clone(),
                    mismatch: chorus_wire::Mismatch {
                        missing: ids(m.missing),
                        extra: ids(m.extra),
                        stale: ids(m.stale),
                    },
                });
            }
            let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|c| c.as_str()).map(str::to_owned))
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            return Err(RelayError::Refused {
                url: self.url.clone(),
                status: status.as_u16(),
                code,
            });
        }
        Ok((status, bytes))
    }

    /// One raw-bytes call on a blob of this log (no JSON, no retries).
    async fn blob(
        &self,
        method: Method,
        blob: Id32,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, RelayError> {
        let path = self.log_path(&format!("/blobs/{blob}"))?;
        let token = self.token().await?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = self.send(req).await?;
        self.read_capped(resp).await.map(|(_, b)| b)
    }

    /// Stores (or replaces) a blob of this log.
    pub async fn put_blob(&self, blob: Id32, bytes: Vec<u8>) -> Result<(), RelayError> {
        self.blob(Method::PUT, blob, Some(bytes)).await.map(|_| ())
    }

    /// Fetches a blob of this log.
    pub async fn get_blob(&self, blob: Id32) -> Result<Vec<u8>, RelayError> {
        self.blob(Method::GET, blob, None).await
    }

    /// Deletes a blob of this log.
    pub async fn delete_blob(&self, blob: Id32) -> Result<(), RelayError> {
        self.blob(Method::DELETE, blob, None).await.map(|_| ())
    }

    /// Stores one encrypted part of a file this device sends, to be kept until
    /// `expires_ms` (or the relay's own bound, which the answer says).
    pub async fn put_file_part(
        &self,
        locator: Id32,
        part: u32,
        bytes: Vec<u8>,
        expires_ms: i64,
    ) -> Result<chorus_relay_api::FilePutResponse, RelayError> {
        let path = self.log_path(&format!("/files/{locator}/{part}?expires_ms={expires_ms}"))?;
        let token = self.token().await?;
        let put = self.http.put(format!("{}{path}", self.url));
        let resp = self.send(put.bearer_auth(token).body(bytes)).await?;
        let (_, body) = self.read_capped(resp).await?;
        serde_json::from_slice(&body).map_err(|e| RelayError::BadResponse {
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }

    /// One encrypted part of a file (no session: whoever knows the locator).
    /// Never more than the largest part is read.
    pub async fn file_part(&self, locator: Id32, part: u32) -> Result<Vec<u8>, RelayError> {
        let path = format!("/v1/files/{locator}/{part}");
        self.get_raw(&path, chorus_relay_api::limits::MAX_FILE_PART_BYTES)
            .await
    }

    /// One raw-bytes GET without a session (no JSON, no retries), of at most `max`
    /// bytes.
    async fn get_raw(&self, path: &str, max: usize) -> Result<Vec<u8>, RelayError> {
        let resp = self
            .send(self.http.get(format!("{}{path}", self.url)))
            .await?;
        self.read_capped_at(resp, max).await.map(|(_, b)| b)
    }

    /// Sends a request; no answer at all is `Unreachable`, with the root cause only.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, RelayError> {
        req.send().await.map_err(|e| RelayError::Unreachable {
            url: self.url.clone(),
            reason: root_cause(&e),
        })
    }

    /// One call with retries; logs in (again) when the token is missing or expired.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        authed: bool,
    ) -> Result<T, RelayError> {
        self.call_as(method, path, body, authed, Answer::Json).await
    }

    /// [`Self::call`], asking for the answer in `answer`'s encoding.
    async fn call_as<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        authed: bool,
        answer: Answer,
    ) -> Result<T, RelayError> {
        let mut n = 0;
        loop {
            let token = if authed {
                Some(self.token().await?)
            } else {
                None
            };
            match self
                .once(method.clone(), path, body, token.as_deref(), answer)
                .await
            {
                Err(RelayError::Refused { status: 401, .. }) if authed && n == 0 => {
                    *self.token.lock().await = None;
                }
                Err(e) if e.retryable() && n + 1 < self.backoff.attempts => {
                    tracing::debug!(error = %e, attempt = n, "relay call failed; retrying");
                    tokio::time::sleep(self.backoff.delay(n)).await;
                }
                other => return other,
            }
            n += 1;
        }
    }

    async fn token(&self) -> Result<String, RelayError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let login = self.login.as_ref().ok_or_else(|| RelayError::BadResponse {
            url: self.url.clone(),
            reason: "no login for an authenticated call".into(),
        })?;
        let device_id = Id32(*login.device.public_key().as_bytes());
        let c: ChallengeResponse = self
            .once(
                Method::POST,
                "/v1/auth/challenge",
                Some(&ChallengeRequest {
                    log_id: login.log_id,
                    device_id,
                }),
                None,
                Answer::Json,
            )
            .await
            .map_err(|e| match e {
                // Challenges go to current devices only: one refused to this device's
                // own key means the relay dropped it (or never had it).
                RelayError::Refused { status: 401, .. } => RelayError::NotRegistered {
                    url: self.url.clone(),
                },
                e => e,
            })?;
        let signature = login.device.sign(
            chorus_relay_api::AUTH_CONTEXT,
            &chorus_relay_api::auth_payload(&c.challenge, &login.log_id, &device_id),
        );
        let s: SessionResponse = self
            .once(
                Method::POST,
                "/v1/auth/session",
                Some(&SessionRequest {
                    challenge: c.challenge,
                    signature: HexBytes(signature.as_bytes().to_vec()),
                }),
                None,
                Answer::Json,
            )
            .await?;
        *slot = Some(s.token.clone());
        Ok(s.token)
    }

    fn log_path(&self, rest: &str) -> Result<String, RelayError> {
        let login = self.login.as_ref().ok_or_else(|| RelayError::BadResponse {
            url: self.url.clone(),
            reason: "no login for an authenticated call".into(),
        })?;
        Ok(format!("/v1/logs/{}{rest}", login.log_id))
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<serde_json::Value, RelayError> {
        self.call::<(), _>(Method::GET, "/v1/health", None, false)
            .await
    }

    /// `POST /v1/logs`: creates the identity's log with its first device.
    pub async fn create_log(
        &self,
        log_id: Id32,
        genesis: Vec<u8>,
        device_id: Id32,
    ) -> Result<(), RelayError> {
        let _: serde_json::Value = self
            .call(
                Method::POST,
                "/v1/logs",
                Some(&CreateLogRequest {
                    log_id,
                    genesis: HexBytes(genesis),
                    device_id,
                }),
                false,
            )
            .await?;
        Ok(())
    }

    /// Registers a mailbox for this log (idempotent), for `use_`: the intro and
    /// invitation mailboxes, which strangers write to, drop their oldest envelope
    /// when full rather than refusing every later stranger until envelopes expire;
    /// an invitation's takes its first sender only.
    pub async fn register_mailbox(
        &self,
        mailbox_id: Id32,
        use_: MailboxUse,
    ) -> Result<(), RelayError> {
        let path = self.log_path("/mailboxes")?;
        let body = RegisterMailboxRequest {
            mailbox_id,
            drop_oldest: use_ != MailboxUse::Contact,
            single_use: use_ == MailboxUse::Invitation,
        };
        let _: serde_json::Value = self.call(Method::POST, &path, Some(&body), true).await?;
        Ok(())
    }

    /// Reads up to `limit` envelopes after each cursor, for up to 64 mailboxes.
    pub async fn read_mailboxes(
        &self,
        cursors: &[(Id32, i64)],
        limit: u32,
    ) -> Result<BatchReadResponse, RelayError> {
        let path = self.log_path("/mailboxes/read")?;
        let body = BatchReadRequest {
            mailboxes: cursors
                .iter()
                .map(|(mailbox_id, after)| MailboxCursor {
                    mailbox_id: *mailbox_id,
                    after: *after,
                })
                .collect(),
            limit: Some(limit),
        };
        self.call_as(Method::POST, &path, Some(&body), true, Answer::Bulk)
            .await
    }

    /// Posts an envelope to a mailbox (anyone holding its id may); idempotent by id.
    pub async fn post_envelope(
        &self,
        mailbox: Id32,
        envelope_id: Id16,
        payload: Vec<u8>,
    ) -> Result<PostEnvelopeResponse, RelayError> {
        self.post_claimed(mailbox, envelope_id, payload, None).await
    }

    /// [`post_envelope`](Self::post_envelope) to an invitation's mailbox, naming our
    /// first envelope there (`claim`) so that it takes our later ones too.
    pub async fn post_claimed(
        &self,
        mailbox: Id32,
        envelope_id: Id16,
        payload: Vec<u8>,
        claim: Option<Id16>,
    ) -> Result<PostEnvelopeResponse, RelayError> {
        self.call(
            Method::POST,
            &format!("/v1/mailboxes/{mailbox}/envelopes"),
            Some(&PostEnvelopeRequest {
                envelope_id,
                payload: HexBytes(payload),
                claim,
            }),
            false,
        )
        .await
    }

    /// `per-device`: replaces the identity's signed device list.
    pub async fn put_device_list(&self, list: Vec<u8>) -> Result<(), RelayError> {
        let path = self.log_path("/device-list")?;
        let body = PutDeviceListRequest {
            list: HexBytes(list),
        };
        let _: serde_json::Value = self.call(Method::PUT, &path, Some(&body), true).await?;
        Ok(())
    }

    /// `per-device`: the signed device list of the identity owning `mailbox`
    /// (`no_device_list` when it publishes none).
    pub async fn device_list(&self, mailbox: Id32) -> Result<Vec<u8>, RelayError> {
        let r: DeviceListResponse = self
            .call::<(), _>(
                Method::GET,
                &format!("/v1/mailboxes/{mailbox}/device-list"),
                None,
                false,
            )
            .await?;
        Ok(r.list.0)
    }

    /// `per-device`: one message, a copy per device of the mailbox's identity
    /// ([`RelayError::DeviceMismatch`] when the set is not its list).
    pub async fn post_device_envelopes(
        &self,
        mailbox: Id32,
        request: &PostDeviceEnvelopesRequest,
    ) -> Result<PostEnvelopeResponse, RelayError> {
        self.call(
            Method::POST,
            &format!("/v1/mailboxes/{mailbox}/device-envelopes"),
            Some(request),
            false,
        )
        .await
    }

    /// Publishes prekeys at a directory address owned by this log.
    pub async fn publish_prekeys(
        &self,
        address: Id32,
        request: &PublishPrekeysRequest,
    ) -> Result<PrekeyCount, RelayError> {
        let path = self.log_path(&format!("/prekeys/{address}"))?;
        self.call(Method::POST, &path, Some(request), true).await
    }

    /// Empties this log's directory entry at `address` (an address the identity
    /// rolled away from); `not_found` if the log holds none there.
    pub async fn withdraw_prekeys(&self, address: Id32) -> Result<(), RelayError> {
        let path = self.log_path(&format!("/prekeys/{address}"))?;
        let _: serde_json::Value = self
            .call::<(), _>(Method::DELETE, &path, None, true)
            .await?;
        Ok(())
    }

    /// One-time prekeys left at an address of this log.
    pub async fn prekey_count(&self, address: Id32) -> Result<PrekeyCount, RelayError> {
        let path = self.log_path(&format!("/prekeys/{address}/count"))?;
        self.call::<(), _>(Method::GET, &path, None, true).await
    }

    /// Fetches (and so consumes) one bundle from a directory address.
    pub async fn fetch_prekeys(&self, address: Id32) -> Result<PrekeyBundle, RelayError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/prekeys/{address}/fetch"),
            None,
            false,
        )
        .await
    }

    /// `GET /v1/logs/{log}`: the genesis and the head.
    pub async fn log_info(&self) -> Result<LogInfoResponse, RelayError> {
        let path = self.log_path("")?;
        self.call::<(), _>(Method::GET, &path, None, true).await
    }

    /// Appends records atomically. A failed guard is `Refused { status: 409, code:
    /// "guard_failed" }` and appends nothing.
    pub async fn append(&self, records: Vec<RecordIn>) -> Result<AppendResponse, RelayError> {
        self.append_bundled(records, None).await
    }

    /// [`Self::append`], with an envelope posted in the same atomic request (the
    /// bundled send, for a mailbox on this relay): both are stored or neither is.
    pub async fn append_bundled(
        &self,
        records: Vec<RecordIn>,
        post: Option<BundledPost>,
    ) -> Result<AppendResponse, RelayError> {
        let path = self.log_path("/append")?;
        self.call(
            Method::POST,
            &path,
            Some(&AppendRequest { records, post }),
            true,
        )
        .await
    }

    /// Up to `limit` records after `after`. A page over what an honest relay sends —
    /// more than `limit` records, or more ciphertext than `MAX_PAGE_BYTES` (the relay
    /// never splits a record, and one record is far smaller) — is refused whole: the
    /// log is read several pages ahead of the fold, and only honest pages are held.
    pub async fn read_records(&self, after: i64, limit: u32) -> Result<RecordsPage, RelayError> {
        let path = self.log_path(&format!("/records?after={after}&limit={limit}"))?;
        let page: RecordsPage = self
            .call_as::<(), _>(Method::GET, &path, None, true, Answer::Bulk)
            .await?;
        let bound = MAX_PAGE_BYTES.max(MAX_RECORD_BYTES);
        let bytes: usize = page.records.iter().map(|r| r.ciphertext.0.len()).sum();
        if page.records.len() > limit as usize || bytes > bound {
            return Err(RelayError::BadResponse {
                url: self.url.clone(),
                reason: format!(
                    "a page of {} records and {bytes} bytes, over the honest bound of {limit} records and {bound} bytes",
                    page.records.len()
                ),
            });
        }
        Ok(page)
    }

    /// Every record the relay still stores for the log, in order (for tools and
    /// tests: it holds the whole log in memory; the fold reads page by page).
    pub async fn read_all_records(&self) -> Result<Vec<RecordOut>, RelayError> {
        let mut out: Vec<RecordOut> = Vec::new();
        loop {
            let after = out.last().map_or(0, |r| r.seq);
            let page = self
                .read_records(after, chorus_relay_api::limits::MAX_PAGE)
                .await?;
            if page.records.is_empty() {
                return Ok(out);
            }
            out.extend(page.records);
        }
    }

    /// Registers a device's credential (idempotent) on `authorization`: the signed
    /// roster entry that adds it, signed by the root (or the primary).
    pub async fn add_device(
        &self,
        device_id: Id32,
        authorization: &[u8],
    ) -> Result<(), RelayError> {
        let path = self.log_path("/devices")?;
        let body = AddDeviceRequest {
            device_id,
            authorization: HexBytes(authorization.to_vec()),
        };
        let _: serde_json::Value = self.call(Method::POST, &path, Some(&body), true).await?;
        Ok(())
    }

    /// Sets the log's recovery slot: `kit` (the root sealed to the recovery key) under
    /// `slot` (derived from the recovery code), on the root-signed `RecoveryKeySet`
    /// entry naming the slot.
    pub async fn put_recovery_kit(
        &self,
        slot: Id32,
        kit: Vec<u8>,
        authorization: &[u8],
    ) -> Result<(), RelayError> {
        let path = self.log_path("/recovery")?;
        let body = chorus_relay_api::RecoveryKitRequest {
            slot,
            kit: HexBytes(kit),
            authorization: HexBytes(authorization.to_vec()),
        };
        let _: serde_json::Value = self.call(Method::PUT, &path, Some(&body), true).await?;
        Ok(())
    }

    /// Shows the relay the identity's roll (`RootRolled`, signed by the current root):
    /// from then on the new root signs device changes. Again after it landed: nothing.
    pub async fn roll_root(&self, authorization: &[u8]) -> Result<(), RelayError> {
        let path = self.log_path("/root")?;
        let body = chorus_relay_api::RollRootRequest {
            authorization: HexBytes(authorization.to_vec()),
        };
        let _: serde_json::Value = self.call(Method::PUT, &path, Some(&body), true).await?;
        Ok(())
    }

    /// Replaces the recovery slot's state; `checkpoint` is the blob it names (the
    /// relay deletes the one named before).
    pub async fn put_recovery_state(
        &self,
        state: Vec<u8>,
        checkpoint: Id32,
    ) -> Result<(), RelayError> {
        let path = self.log_path("/recovery/state")?;
        let body = chorus_relay_api::RecoveryStateRequest {
            state: HexBytes(state),
            checkpoint,
        };
        let _: serde_json::Value = self.call(Method::PUT, &path, Some(&body), true).await?;
        Ok(())
    }

    /// The recovery slot `slot` (no session needed).
    pub async fn recovery_slot(
        &self,
        slot: Id32,
    ) -> Result<chorus_relay_api::RecoverySlot, RelayError> {
        self.call::<(), _>(Method::GET, &format!("/v1/recovery/{slot}"), None, false)
            .await
    }

    /// The checkpoint blob the recovery slot's state names (no session needed).
    pub async fn recovery_checkpoint(&self, slot: Id32) -> Result<Vec<u8>, RelayError> {
        self.get_raw(
            &format!("/v1/recovery/{slot}/checkpoint"),
            MAX_RESPONSE_BYTES,
        )
        .await
    }

    /// Registers `device_id` through the recovery slot (no session: the slot and the
    /// root-signed `authorization` are the proof).
    pub async fn recover_device(
        &self,
        slot: Id32,
        device_id: Id32,
        authorization: &[u8],
    ) -> Result<(), RelayError> {
        let body = AddDeviceRequest {
            device_id,
            authorization: HexBytes(authorization.to_vec()),
        };
        let path = format!("/v1/recovery/{slot}/devices");
        let _: serde_json::Value = self.call(Method::POST, &path, Some(&body), false).await?;
        Ok(())
    }

    /// Revokes a device's credential on `authorization`: the signed roster entry
    /// that revokes it.
    pub async fn revoke_device(
        &self,
        device_id: Id32,
        authorization: &[u8],
    ) -> Result<(), RelayError> {
        let path = self.log_path(&format!("/devices/{device_id}/revoke"))?;
        let body = RevokeDeviceRequest {
            authorization: HexBytes(authorization.to_vec()),
        };
        let _: serde_json::Value = self.call(Method::POST, &path, Some(&body), true).await?;
        Ok(())
    }

    /// Tells the relay this device folded the log up to `seq` (the relay trims nothing
    /// a current device has not acknowledged). Returns the cursor stored.
    pub async fn ack_cursor(&self, seq: u64) -> Result<i64, RelayError> {
        let path = self.log_path("/cursor")?;
        let body = chorus_relay_api::CursorRequest {
            seq: i64::try_from(seq).unwrap_or(i64::MAX),
        };
        let answer: serde_json::Value = self.call(Method::POST, &path, Some(&body), true).await?;
        Ok(answer["cursor"].as_i64().unwrap_or(0))
    }

    /// Asks the relay to delete the log's records below `below` (refused unless every
    /// current device acknowledged that far). Returns the lowest seq still stored.
    pub async fn trim(&self, below: i64) -> Result<i64, RelayError> {
        let path = self.log_path("/trim")?;
        let body = chorus_relay_api::TrimRequest { below_seq: below };
        let answer: chorus_relay_api::TrimResponse =
            self.call(Method::POST, &path, Some(&body), true).await?;
        Ok(answer.first_seq)
    }

    /// The log's devices as the relay knows them.
    pub async fn devices(&self) -> Result<DevicesResponse, RelayError> {
        let path = self.log_path("/devices")?;
        self.call::<(), _>(Method::GET, &path, None, true).await
    }

    /// Heartbeat (presence, in memory at the relay).
    pub async fn heartbeat(&self) -> Result<(), RelayError> {
        let path = self.log_path("/presence")?;
        let _: serde_json::Value = self.call::<(), _>(Method::POST, &path, None, true).await?;
        Ok(())
    }

    /// Devices heard from recently.
    pub async fn presence(&self) -> Result<PresenceResponse, RelayError> {
        let path = self.log_path("/presence")?;
        self.call::<(), _>(Method::GET, &path, None, true).await
    }

    /// Opens a rendezvous channel (linking).
    pub async fn create_channel(
        &self,
        channel_id: Id32,
    ) -> Result<CreateChannelResponse, RelayError> {
        self.call(
            Method::POST,
            "/v1/rendezvous",
            Some(&CreateChannelRequest { channel_id }),
            false,
        )
        .await
    }

    /// Posts to a rendezvous channel.
    pub async fn channel_post(&self, channel_id: Id32, payload: Vec<u8>) -> Result<(), RelayError> {
        let _: serde_json::Value = self
            .call(
                Method::POST,
                &format!("/v1/rendezvous/{channel_id}/messages"),
                Some(&ChannelPostRequest {
                    payload: HexBytes(payload),
                }),
                false,
            )
            .await?;
        Ok(())
    }

    /// Reads a rendezvous channel after `after`.
    pub async fn channel_read(
        &self,
        channel_id: Id32,
        after: i64,
    ) -> Result<ChannelMessages, RelayError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/rendezvous/{channel_id}/messages?after={after}"),
            None,
            false,
        )
        .await
    }

    /// Deletes a rendezvous channel.
    pub async fn channel_delete(&self, channel_id: Id32) -> Result<(), RelayError> {
        let _: serde_json::Value = self
            .call::<(), _>(
                Method::DELETE,
                &format!("/v1/rendezvous/{channel_id}"),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// Opens the push WebSocket of this log.
    pub async fn connect_push(&self) -> Result<PushStream, RelayError> {
        let token = self.token().await?;
        let ws_url = format!(
            "{}{}",
            self.url
                .replacen("http://", "ws://", 1)
                .replacen("https://", "wss://", 1),
            self.log_path("/ws")?
        );
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| RelayError::BadUrl(e.to_string()))?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| RelayError::BadResponse {
                url: self.url.clone(),
                reason: "token is not a valid header value".into(),
            })?;
        request.headers_mut().insert("authorization", value);
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| {
                // A refused token is worth one fresh login on the next attempt.
                if let tokio_tungstenite::tungstenite::Error::Http(r) = &e
                    && r.status() == StatusCode::UNAUTHORIZED
                    && let Ok(mut slot) = self.token.try_lock()
                {
                    *slot = None;
                }
                RelayError::Unreachable {
                    url: self.url.clone(),
                    reason: root_cause(&e),
                }
            })?;
        Ok(PushStream { ws })
    }
}

/// The push channel of one log.
pub struct PushStream {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl std::fmt::Debug for PushStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushStream")
    }
}

impl PushStream {
    /// The next push; `None` when the relay closed the connection.
    pub async fn next(&mut self) -> Option<Result<chorus_relay_api::Push, RelayError>> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = match self.ws.next().await? {
                Ok(m) => m,
                Err(e) => {
                    return Some(Err(RelayError::Unreachable {
                        url: "push".into(),
                        reason: e.to_string(),
                    }));
                }
            };
            match msg {
                Message::Text(t) => {
                    return Some(serde_json::from_str(t.as_str()).map_err(|e| {
                        RelayError::BadResponse {
                            url: "push".into(),
                            reason: e.to_string(),
                        }
                    }));
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }
}

/// Why a relay could not be reached, in a few words: the innermost cause ("Connection
/// refused (os error 111)", "operation timed out"), not the HTTP client's chain of
/// wrappers, which names the URL again and the layers in between.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut innermost = e;
    while let Some(inner) = innermost.source() {
        innermost = inner;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_from_others_are_https_to_public_hosts_unless_the_home_relay_is_not() {
        let strict = UrlPolicy::for_home("https://relay.example.org");
        assert_eq!(strict, UrlPolicy::STRICT);
        assert_eq!(
            strict.check("https://relay.example.net/").unwrap(),
            "https://relay.example.net"
        );
        for bad in [
            "http://relay.example.net",          // plain http
            "https://127.0.0.1",                 // loopback
            "https://2130706433",                // loopback, spelled as a number
            "https://localhost:7470",            // loopback by name
            "https://[::1]",                     // loopback, IPv6
            "https://[::ffff:10.0.0.1]",         // private, IPv4-mapped
            "https://10.1.2.3",                  // RFC 1918
            "https://172.16.0.1",                // RFC 1918
            "https://192.168.0.10",              // RFC 1918
            "https://100.64.0.1",                // shared address space
            "https://[fd00::1]",                 // unique local
            "https://169.254.169.254",           // link-local: cloud metadata
            "https://[fe80::1]",                 // link-local
            "https://0.0.0.0",                   // unspecified
            "https://255.255.255.255",           // broadcast
            "https://224.0.0.1",                 // multicast
            "https://user:pw@relay.example.net", // credentials
        ] {
            assert!(
                matches!(strict.check(bad), Err(RelayError::ForbiddenUrl { .. })),
                "{bad} passed"
            );
        }
        // A home relay on loopback over http widens exactly that: http and loopback.
        let local = UrlPolicy::for_home("http://127.0.0.1:7470");
        assert!(local.check("http://127.0.0.1:9").is_ok());
        assert!(local.check("http://localhost:9").is_ok());
        assert!(local.check("http://10.0.0.1").is_err());
        assert!(local.check("http://169.254.169.254").is_err());
        let lan = UrlPolicy::for_home("http://192.168.1.5:7470");
        assert!(lan.check("http://192.168.1.6:7470").is_ok());
        assert!(lan.check("http://127.0.0.1").is_err());
        assert!(
            UrlPolicy::PERMISSIVE
                .check("http://169.254.169.254")
                .is_ok()
        );
        // Never a relay, whatever the policy.
        assert!(UrlPolicy::PERMISSIVE.check("http://0.0.0.0").is_err());
    }

    #[tokio::test]
    async fn a_public_name_that_resolves_to_a_forbidden_address_connects_nowhere() {
        // `localhost.` passes the URL check as a name only if not recognised; the
        // resolver is the second line: every address it yields is checked too.
        let resolver = PolicyResolver(UrlPolicy::STRICT);
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let result = reqwest::dns::Resolve::resolve(&resolver, name).await;
        assert!(result.is_err());
        let open = PolicyResolver(UrlPolicy::PERMISSIVE);
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(reqwest::dns::Resolve::resolve(&open, name).await.is_ok());
    }

    #[tokio::test]
    async fn redirects_are_never_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Where a redirect would lead: counts the connections it gets.
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let reached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = reached.clone();
        tokio::spawn(async move {
            if target.accept().await.is_ok() {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // A "relay" that answers everything with a redirect there.
        let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", redirector.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = redirector.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target_addr}/v1/health\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        let once = Backoff {
            attempts: 1,
            ..Backoff::COMMAND
        };
        let c =
            RelayClient::foreign(&url, once, UrlPolicy::for_home("http://127.0.0.1:1")).unwrap();
        let e = c.health().await.unwrap_err();
        assert!(
            matches!(e, RelayError::Refused { status: 307, .. }),
            "{e:?}"
        );
        tokio::task::yield_now().await;
        assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_file_part_larger_than_any_part_is_not_read_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A "relay" that answers a part fetch with 4 MiB.
        let liar = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", liar.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = liar.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let body = vec![0u8; 4 << 20];
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            }
        });
        let c = RelayClient::new(&url, Backoff::COMMAND).unwrap();
        let e = match c.file_part(Id32([1; 32]), 0).await {
            Ok(b) => panic!("read all {} bytes", b.len()),
            Err(e) => e,
        };
        assert!(
            matches!(&e, RelayError::BadResponse { reason, .. }
                if reason.contains(&chorus_relay_api::limits::MAX_FILE_PART_BYTES.to_string())),
            "{e:?}"
        );
    }

    #[test]
    fn relay_urls_are_normalised_and_anything_odd_is_refused() {
        assert_eq!(
            normalize_url(" http://127.0.0.1:7470/ ").unwrap(),
            "http://127.0.0.1:7470"
        );
        for bad in [
            "",
            "127.0.0.1:7470",
            "ftp://x",
            "http://",
            "http://a b",
            "http://relay\u{1b}[2J",
        ] {
            assert!(normalize_url(bad).is_err(), "{bad:?}");
        }
        let long = format!(
            "https://{}",
            "a".repeat(chorus_wire::limits::MAX_RELAY_URL_LEN)
        );
        assert!(normalize_url(&long).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            attempts: 5,
            first: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(1), Duration::from_millis(200));
        assert_eq!(b.delay(2), Duration::from_millis(350));
        assert_eq!(b.delay(40), Duration::from_millis(350));
    }
}
