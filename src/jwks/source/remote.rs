//! Remote key sources: a JWKS URL, or an issuer's OIDC discovery document
//! pointing to one, fetched in the background.
//!
//! One task per remote issuer ([`watch_remote`]) loops: fetch, publish or
//! keep, sleep. Its rules:
//!
//! - **Schedule.** After a good fetch, the next one is due after the
//!   response's `Cache-Control: max-age` (`no-cache`/`no-store` count as 0),
//!   clamped to `[refresh_min, refresh_max]`; without one, after
//!   `refresh_interval`. With `max_stale` set, never later than half of it,
//!   so a healthy issuer never goes stale between two scheduled fetches. After a failure, after 1 s, doubling per failure up
//!   to `refresh_min`. Every delay is jittered down by up to 20%, so a fleet
//!   of sidecars started together does not fetch in lockstep. Whatever the
//!   delay, no fetch starts less than `min(5 s, refresh_min)` after the
//!   previous one started ([`crate::jwks::refresh::min_gap`]).
//! - **Unknown kid.** The issuer's [`RefreshGate`] cuts a sleep short when a
//!   request meets a kid the set lacks (single flight, a cooldown that only
//!   such requests use up, the minimum gap; see `jwks::refresh`).
//! - **No secrets.** Sets are parsed with [`KeySet::from_public_jwks`]: an
//!   `oct` key in a published set is skipped with a warning, since anyone
//!   who can read the set could sign with it.
//! - **Revalidation.** The `ETag` of the last good set is sent back as
//!   `If-None-Match`; `304 Not Modified` confirms the current set (and counts
//!   as a good fetch for staleness) without parsing anything.
//! - **Limits.** One deadline (`fetch_timeout`) covers connect, headers and
//!   body; the body is capped at `max_jwks_bytes` (checked against
//!   `Content-Length` first, then while streaming). At most 5 redirects, each
//!   to an allowed URL.
//! - **Allowed URLs** ([`url_problem`]): `https`, or plain `http` only to a
//!   loopback address (`127.0.0.0/8`, `::1`, `localhost`), for a local IdP
//!   or test server. Once a source starts on `https`, everything it leads to
//!   (redirects, the discovered `jwks_uri`) must be `https` too: an IdP's
//!   document or redirect cannot steer jwtd to a plaintext service on the
//!   pod's loopback.
//! - **Proxies.** `HTTPS_PROXY`/`https_proxy` (and `NO_PROXY`) apply to
//!   `https` fetches; loopback fetches never go through a proxy, whatever the
//!   environment says.
//! - **Discovery** (OpenID Connect Discovery 1.0, section 4): the document at
//!   `<issuer>/.well-known/openid-configuration` must name exactly the
//!   configured issuer, and its `jwks_uri` must be an allowed URL. It is
//!   fetched (revalidated) at every refresh, so an IdP that moves its
//!   `jwks_uri` is followed; when it fails but a `jwks_uri` is known, that
//!   one is used.
//! - **Failures** (discovery failures included, even when the last known
//!   `jwks_uri` still serves) keep the last good set, are counted
//!   ([`crate::verifier::Health`]) and logged with the age of the set kept.
//!   Nothing here ever logs a token.
//! - **URLs in logs and errors** (the configured URL, the discovered
//!   `jwks_uri`, redirect targets, and fetch errors, whose reqwest text
//!   names the URL) go through [`crate::redact::url`]: an API key in a query
//!   string or a password in the userinfo never reaches a log line.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use tokio::time::Instant;

use super::{KeySink, log_skipped};
use crate::jwks::refresh::RefreshGate;
use crate::verify::{KeySet, KeySetError};

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;
/// First retry delay after a failed fetch.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What a remote issuer fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A JWK set URL.
    Jwks(Url),
    /// OIDC discovery for this issuer (the configured string, compared
    /// exactly with the document's `issuer`).
    Discovery {
        /// The issuer identifier as configured.
        issuer: String,
        /// `<issuer>/.well-known/openid-configuration`.
        url: Url,
    },
}

impl Endpoint {
    /// Discovery for `issuer`: its document's URL (trailing `/` of the
    /// issuer dropped, as the specification says).
    ///
    /// # Errors
    ///
    /// If `issuer` is not a URL.
    pub fn discovery(issuer: &str) -> Result<Endpoint, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let url = Url::parse(&url)
            .map_err(|e| format!("{:?} is not a URL: {e}", crate::redact::url(issuer)))?;
        Ok(Endpoint::Discovery {
            issuer: issuer.to_owned(),
            url,
        })
    }

    /// The URL fetched first.
    pub fn url(&self) -> &Url {
        match self {
            Endpoint::Jwks(url) | Endpoint::Discovery { url, .. } => url,
        }
    }
}

/// Fetch and schedule settings, shared by every remote issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    /// Delay after a good fetch whose response has no `max-age`.
    pub refresh_interval: Duration,
    /// Lower bound of a response's `max-age`, and cap of the retry backoff.
    pub refresh_min: Duration,
    /// Upper bound of a response's `max-age`.
    pub refresh_max: Duration,
    /// Deadline of one request, body included.
    pub fetch_timeout: Duration,
    /// Largest response body accepted.
    pub max_bytes: usize,
    /// When set, scheduled fetches come at least twice per `max_stale`.
    pub max_stale: Option<Duration>,
}

/// `url` as it may be logged ([`crate::redact::url`]).
fn shown(url: &Url) -> String {
    crate::redact::url(url.as_str())
}

/// Why a URL may not be fetched, if it may not (the URL in the message is
/// redacted).
pub fn url_problem(url: &Url) -> Option<String> {
    match url.scheme() {
        "https" if url.host_str().is_some_and(|h| !h.is_empty()) => None,
        "https" => Some(format!("{}: no host", shown(url))),
        "http" if is_loopback(url) => None,
        "http" => Some(format!(
            "{}: plain http is allowed only to loopback (127.0.0.0/8, ::1, localhost); use https",
            shown(url)
        )),
        other => Some(format!("{}: scheme {other:?} is not https", shown(url))),
    }
}

/// Why `url`, reached from a source that started at `origin` (a redirect
/// target, a discovered `jwks_uri`), may not be fetched, if it may not: the
/// rules of [`url_problem`], and no step down from `https` to `http`.
pub fn followed_url_problem(origin: &Url, url: &Url) -> Option<String> {
    if origin.scheme() == "https" && url.scheme() != "https" {
        return Some(format!(
            "{}: reached from https ({}), so it must be https too",
            shown(url),
            shown(origin)
        ));
    }
    url_problem(url)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The HTTP client for key fetches: rustls on aws-lc-rs with the platform's
/// trust store, the fetch deadline, and redirects only to allowed URLs.
///
/// # Errors
///
/// If the TLS stack cannot be set up.
pub fn client(settings: &RemoteSettings) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("jwtd/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(settings.fetch_timeout)
        .timeout(settings.fetch_timeout)
        // reqwest's system proxy would also carry loopback http (in clear,
        // to the proxy host's loopback): proxies are set below, https only.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            // `previous` holds the original URL and every hop so far.
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            let problem = match attempt.previous().first() {
                Some(origin) => followed_url_problem(origin, attempt.url()),
                None => url_problem(attempt.url()),
            };
            match problem {
                Some(problem) => attempt.error(format!("redirect refused: {problem}")),
                None => attempt.follow(),
            }
        }));
    let env = |name: &str| {
        std::env::var(name)
            .or_else(|_| std::env::var(name.to_ascii_lowercase()))
            .ok()
            .filter(|v| !v.is_empty())
    };
    if let Some(proxy) = env("HTTPS_PROXY") {
        builder = builder
            .proxy(reqwest::Proxy::https(proxy.as_str())?.no_proxy(reqwest::NoProxy::from_env()));
    }
    builder.build()
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(String),
    #[error("no answer within the fetch timeout ({0:?})")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("response larger than max_jwks_bytes ({0} bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    Keys(#[from] KeySetError),
    #[error("discovery: {0}")]
    Discovery(String),
}

impl From<reqwest::Error> for FetchError {
    /// reqwest's own message is terse ("error sending request"): keep the
    /// whole cause chain, which names the real problem (refused, DNS, TLS).
    /// reqwest puts the URL in its message: it is redacted here.
    fn from(e: reqwest::Error) -> FetchError {
        let url = e.url().map(shown);
        let e = e.without_url();
        let mut text = e.to_string();
        if let Some(url) = url {
            text.push_str(" for url (");
            text.push_str(&url);
            text.push(')');
        }
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        FetchError::Http(text)
    }
}

/// A successful HTTP exchange.
struct Response {
    /// `304` to our `If-None-Match`.
    not_modified: bool,
    body: Vec<u8>,
    etag: Option<String>,
    max_age: Option<Duration>,
}

/// What a refresh round produced.
enum Fetched {
    Updated {
        /// Boxed: a set is large next to the other variant.
        keys: Box<KeySet>,
        max_age: Option<Duration>,
    },
    Unchanged {
        max_age: Option<Duration>,
    },
}

/// The fetch state of one issuer.
struct Fetcher {
    endpoint: Endpoint,
    settings: RemoteSettings,
    client: reqwest::Client,
    /// The JWK set URL in use (configured, or last discovered).
    jwks_uri: Option<Url>,
    /// ETag of the last good set at `jwks_uri`.
    jwks_etag: Option<String>,
    /// ETag of the last good discovery document.
    discovery_etag: Option<String>,
    /// Discovery failed this round, and the last known `jwks_uri` was used.
    discovery_error: Option<FetchError>,
}

/// Keeps `sink` supplied from `endpoint`, forever
/// (abort the task to stop). The first fetch starts at once.
pub async fn watch_remote(
    endpoint: Endpoint,
    settings: RemoteSettings,
    client: reqwest::Client,
    sink: impl KeySink,
) {
    let gate: Option<&RefreshGate> = sink.gate();
    let mut fetcher = Fetcher {
        jwks_uri: match &endpoint {
            Endpoint::Jwks(url) => Some(url.clone()),
            Endpoint::Discovery { .. } => None,
        },
        endpoint,
        settings,
        client,
        jwks_etag: None,
        discovery_etag: None,
        discovery_error: None,
    };
    let source = shown(fetcher.endpoint.url());
    let mut failures: u32 = 0;
    loop {
        if let Some(g) = gate {
            g.started();
        }
        let round = fetcher.round().await;
        if let Some(e) = fetcher.discovery_error.take() {
            failed(
                &sink,
                &source,
                &e,
                "discovery failed; using the last known jwks_uri",
            );
        }
        let delay = match round {
            Ok(Fetched::Updated { keys, max_age }) => {
                log_skipped(&keys);
                tracing::info!(%source, keys = keys.keys().len(), "key set fetched");
                sink.set(*keys);
                failures = 0;
                fetcher.next_refresh(max_age)
            }
            Ok(Fetched::Unchanged { max_age }) => {
                tracing::debug!(%source, "key set not modified");
                sink.confirm();
                failures = 0;
                fetcher.next_refresh(max_age)
            }
            Err(e) => {
                failed(&sink, &source, &e, "key set fetch failed");
                failures = failures.saturating_add(1);
                fetcher.retry_delay(failures)
            }
        };
        if let Some(g) = gate {
            g.finished();
        }
        // Settings are bounded (config), but a far deadline must never panic.
        let now = Instant::now();
        let deadline = now
            .checked_add(jitter(delay))
            .unwrap_or(now + Duration::from_secs(86_400));
        match gate {
            Some(g) => g.sleep(deadline, fetcher.min_gap()).await,
            None => tokio::time::sleep_until(deadline).await,
        }
    }
}

/// Counts and logs a failure, with the age of the set kept.
fn failed(sink: &impl KeySink, source: &str, e: &FetchError, what: &str) {
    sink.fail();
    match sink.last_good() {
        Some(t) => tracing::warn!(
            %source,
            error = %e,
            set_age_secs = crate::clock::unix_now().saturating_sub(t),
            "{what}; keeping the last good set"
        ),
        None => tracing::warn!(
            %source,
            error = %e,
            "{what}; no key set yet, tokens of this issuer are undecided"
        ),
    }
}

impl Fetcher {
    /// The shortest time between the starts of two fetches
    /// ([`crate::jwks::refresh::min_gap`]).
    fn min_gap(&self) -> Duration {
        crate::jwks::refresh::min_gap(self.settings.refresh_min)
    }

    /// Delay after a good fetch.
    fn next_refresh(&self, max_age: Option<Duration>) -> Duration {
        let s = &self.settings;
        let due = max_age
            .unwrap_or(s.refresh_interval)
            .clamp(s.refresh_min, s.refresh_max.max(s.refresh_min));
        match s.max_stale {
            Some(stale) => due.min(stale / 2),
            None => due,
        }
    }

    /// Delay after the `failures`-th failure in a row.
    fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        FIRST_RETRY
            .saturating_mul(1 << doublings)
            .min(self.settings.refresh_min)
    }

    /// One refresh: discovery if configured, then the key set.
    async fn round(&mut self) -> Result<Fetched, FetchError> {
        let url = match self.endpoint.clone() {
            Endpoint::Jwks(url) => url,
            Endpoint::Discovery { issuer, url } => self.discover(&issuer, &url).await?,
        };
        if self.jwks_uri.as_ref() != Some(&url) {
            self.jwks_etag = None;
            self.jwks_uri = Some(url.clone());
        }
        let response = self.get(&url, self.jwks_etag.as_deref()).await?;
        if response.not_modified {
            return Ok(Fetched::Unchanged {
                max_age: response.max_age,
            });
        }
        let keys = KeySet::from_public_jwks(&response.body)?;
        // Remembered only for a good set: a bad one must be fetched whole
        // again, not confirmed by its ETag.
        self.jwks_etag = response.etag;
        Ok(Fetched::Updated {
            keys: Box::new(keys),
            max_age: response.max_age,
        })
    }

    /// The `jwks_uri` of `issuer`'s discovery document at `url`.
    async fn discover(&mut self, issuer: &str, url: &Url) -> Result<Url, FetchError> {
        let fetched = match self.get(url, self.discovery_etag.as_deref()).await {
            Ok(response) if response.not_modified => return self.known_jwks_uri(None),
            Ok(response) => {
                jwks_uri_of(issuer, url, &response.body).map(|uri| (uri, response.etag))
            }
            Err(e) => Err(e),
        };
        match fetched {
            Ok((uri, etag)) => {
                self.discovery_etag = etag;
                Ok(uri)
            }
            Err(e) => self.known_jwks_uri(Some(e)),
        }
    }

    /// Falls back on the last discovered `jwks_uri` when discovery fails.
    fn known_jwks_uri(&mut self, error: Option<FetchError>) -> Result<Url, FetchError> {
        match (&self.jwks_uri, error) {
            (Some(uri), None) => Ok(uri.clone()),
            (Some(uri), Some(e)) => {
                // Reported (and counted) by the task, whatever the key set
                // fetch then does.
                self.discovery_error = Some(e);
                // Fetch the document whole next time.
                self.discovery_etag = None;
                Ok(uri.clone())
            }
            (None, Some(e)) => Err(e),
            (None, None) => {
                // A 304 to a document we never parsed: start over.
                self.discovery_etag = None;
                Err(FetchError::Discovery(
                    "304 Not Modified without a known document".to_owned(),
                ))
            }
        }
    }

    /// GET `url` within the fetch deadline and size cap.
    async fn get(&self, url: &Url, etag: Option<&str>) -> Result<Response, FetchError> {
        let timeout = self.settings.fetch_timeout;
        tokio::time::timeout(timeout, self.get_inner(url, etag))
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }

    async fn get_inner(&self, url: &Url, etag: Option<&str>) -> Result<Response, FetchError> {
        let max = self.settings.max_bytes;
        let mut request = self
            .client
            .get(url.clone())
            .header(ACCEPT, "application/jwk-set+json, application/json");
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        let new_etag = header(ETAG).map(str::to_owned);
        let max_age = header(CACHE_CONTROL).and_then(max_age);
        match status {
            304 if etag.is_some() => {
                return Ok(Response {
                    not_modified: true,
                    body: Vec::new(),
                    etag: new_etag,
                    max_age,
                });
            }
            200 => {}
            other => return Err(FetchError::Status(other)),
        }
        if response
            .content_length()
            .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(FetchError::TooLarge(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            not_modified: false,
            body,
            etag: new_etag,
            max_age,
        })
    }
}

/// The checked `jwks_uri` of a discovery document for `issuer`.
fn jwks_uri_of(issuer: &str, origin: &Url, body: &[u8]) -> Result<Url, FetchError> {
    let bad = |why: String| FetchError::Discovery(why);
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
    match doc.get("issuer").and_then(serde_json::Value::as_str) {
        Some(named) if named == issuer => {}
        Some(named) => {
            return Err(bad(format!(
                "the document names issuer {named:?}, not {issuer:?}"
            )));
        }
        None => return Err(bad("no \"issuer\" in the document".to_owned())),
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("no \"jwks_uri\" in the document".to_owned()))?;
    let uri =
        Url::parse(uri).map_err(|e| bad(format!("jwks_uri {:?}: {e}", crate::redact::url(uri))))?;
    match followed_url_problem(origin, &uri) {
        Some(problem) => Err(bad(format!("jwks_uri {problem}"))),
        None => Ok(uri),
    }
}

/// The `max-age` of a `Cache-Control` value; `no-cache` and `no-store` mean
/// zero (the caller clamps to `refresh_min`).
fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            age = secs
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

/// `delay` shortened by a random 0–20%.
fn jitter(delay: Duration) -> Duration {
    use aws_lc_rs::rand::SecureRandom;
    let mut byte = [0u8; 2];
    // Without randomness, no jitter: the schedule still holds.
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut byte)
        .is_err()
    {
        return delay;
    }
    let fraction = f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX) * 0.2;
    delay.mul_f64(1.0 - fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn https_anywhere_http_only_to_loopback() {
        for ok in [
            "https://idp.example.com/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://127.1.2.3/jwks",
            "http://[::1]:9/x",
            "http://localhost:9/x",
            "http://LOCALHOST/x",
        ] {
            assert_eq!(url_problem(&url(ok)), None, "{ok}");
        }
        for bad in [
            "http://idp.example.com/jwks.json",
            "http://10.0.0.1/jwks",
            "http://127.0.0.1.nip.io/jwks",
            "http://localhost.evil.com/x",
            "ftp://idp.example.com/jwks",
            "file:///etc/jwks.json",
        ] {
            assert!(url_problem(&url(bad)).is_some(), "{bad}");
        }
    }

    #[test]
    fn url_problems_never_show_credentials() {
        let secret = [
            url("http://user:hunter2@idp.example.com/jwks?api_key=SECRET"),
            url("ftp://user:hunter2@idp.example.com/jwks?api_key=SECRET"),
        ];
        for bad in &secret {
            let problem = url_problem(bad).expect("refused");
            assert!(
                !problem.contains("SECRET") && !problem.contains("hunter2"),
                "{problem}"
            );
            assert!(problem.contains("idp.example.com/jwks"), "{problem}");
        }
        let https = url("https://u:hunter2@idp.example.com/?k=SECRET");
        let problem = followed_url_problem(&https, &secret[0]).expect("refused");
        assert!(
            !problem.contains("SECRET") && !problem.contains("hunter2"),
            "{problem}"
        );
        let e = Endpoint::discovery("not a url ?k=SECRET").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        let e = jwks_uri_of(
            "https://i",
            &https,
            br#"{"issuer":"https://i","jwks_uri":"::bad?k=SECRET"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[tokio::test]
    async fn fetch_errors_never_show_credentials() {
        // A closed loopback port: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let target = url(&format!(
            "http://user:hunter2@127.0.0.1:{port}/jwks?api_key=SECRET"
        ));
        let f = fetcher();
        let e = f.get(&target, None).await.err().expect("refused");
        let text = e.to_string();
        assert!(
            !text.contains("SECRET") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(
            text.contains(&format!("127.0.0.1:{port}/jwks?***")),
            "{text}"
        );
    }

    #[test]
    fn no_step_down_from_https() {
        let https = url("https://idp.example.com/jwks");
        let local = url("http://127.0.0.1:8080/jwks");
        assert!(followed_url_problem(&https, &local).is_some());
        assert_eq!(
            followed_url_problem(&https, &url("https://cdn.example.com/jwks")),
            None
        );
        // A loopback source may lead to loopback, never off it in clear.
        assert_eq!(
            followed_url_problem(&local, &url("http://localhost:9/jwks")),
            None
        );
        assert!(followed_url_problem(&local, &url("http://idp.example.com/jwks")).is_some());
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            max_age("Max-Age=5, must-revalidate"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("max-age=60, no-cache"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    fn fetcher() -> Fetcher {
        let settings = RemoteSettings {
            refresh_interval: Duration::from_secs(300),
            refresh_min: Duration::from_secs(60),
            refresh_max: Duration::from_secs(86400),
            fetch_timeout: Duration::from_secs(5),
            max_bytes: 1024,
            max_stale: None,
        };
        Fetcher {
            endpoint: Endpoint::Jwks(url("https://idp.example.com/jwks")),
            client: client(&settings).unwrap(),
            settings,
            jwks_uri: None,
            jwks_etag: None,
            discovery_etag: None,
            discovery_error: None,
        }
    }

    #[test]
    fn refresh_honours_max_age_within_bounds() {
        let f = fetcher();
        assert_eq!(f.next_refresh(None), Duration::from_secs(300));
        assert_eq!(
            f.next_refresh(Some(Duration::from_secs(3600))),
            Duration::from_secs(3600)
        );
        assert_eq!(
            f.next_refresh(Some(Duration::ZERO)),
            Duration::from_secs(60)
        );
        assert_eq!(
            f.next_refresh(Some(Duration::from_secs(10 * 86400))),
            Duration::from_secs(86400)
        );
        // With max_stale, at least two scheduled fetches per max_stale.
        let mut f = f;
        f.settings.max_stale = Some(Duration::from_secs(600));
        assert_eq!(
            f.next_refresh(Some(Duration::from_secs(3600))),
            Duration::from_secs(300)
        );
        assert_eq!(f.next_refresh(None), Duration::from_secs(300));
    }

    #[test]
    fn retries_back_off_up_to_refresh_min() {
        let f = fetcher();
        let delays: Vec<u64> = (1..=9).map(|n| f.retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(f.retry_delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_only_shortens_by_at_most_a_fifth() {
        let d = Duration::from_secs(100);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let j = jitter(d);
            assert!(j <= d && j >= Duration::from_secs(80), "{j:?}");
            seen.insert(j);
        }
        assert!(seen.len() > 100, "jitter is not random");
    }

    #[test]
    fn discovery_documents_are_checked() {
        let iss = "https://idp.example.com/realms/a";
        let doc = |v: serde_json::Value| v.to_string().into_bytes();
        let origin = url("https://idp.example.com/realms/a/.well-known/openid-configuration");
        let good =
            doc(serde_json::json!({"issuer": iss, "jwks_uri": "https://idp.example.com/certs"}));
        assert_eq!(
            jwks_uri_of(iss, &origin, &good).unwrap().as_str(),
            "https://idp.example.com/certs"
        );
        for (bad, why) in [
            (
                doc(
                    serde_json::json!({"issuer": "https://evil.example", "jwks_uri": "https://idp.example.com/certs"}),
                ),
                "names issuer",
            ),
            (
                doc(serde_json::json!({"jwks_uri": "https://idp.example.com/certs"})),
                "no \"issuer\"",
            ),
            (doc(serde_json::json!({"issuer": iss})), "no \"jwks_uri\""),
            (
                doc(serde_json::json!({"issuer": iss, "jwks_uri": "http://idp.example.com/certs"})),
                "must be https",
            ),
            (b"<html>".to_vec(), "not JSON"),
        ] {
            let e = jwks_uri_of(iss, &origin, &bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        // A trailing slash on the issuer is dropped from the document URL
        // only; the issuer itself compares exactly.
        let e = Endpoint::discovery("https://idp.example.com/").unwrap();
        assert_eq!(
            e.url().as_str(),
            "https://idp.example.com/.well-known/openid-configuration"
        );
    }
}
