//! The host side of jwt_auth (wasm32 only): [`WorkerAuth`] owns one VM's engine, keys,
//! revocation list, JWKS fetches, paused requests and counters, and talks to the host for them.
//! The plugin glue (`filter`) and bundles that run jwt_auth as one stage of several (the
//! `gateway` crate) drive it from their root and HTTP contexts. All decisions are made by
//! [`crate::engine`].

use crate::config::{FilterConfig, KeySource, RemoteJwks};
use crate::engine::{host_edits, Authenticator, Decision, HeaderEdit, Outcome};
use crate::keystore::{FetchResult, Fetcher, WorkerKeys};
use crate::outcome::Denial;
use crate::revocation::{RevocationCaller, RevocationConfig, SyncResult, WorkerRevocations};
use crate::rules::ProviderId;
use filter_core::wasm::{send_json_error, BatchedCounter, Counter, Gauge, SharedData};
use filter_core::ConfigError;
use filter_core::HeaderMap;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The name the plugin logs under.
pub const PLUGIN: &str = "jwt-auth";
/// How often the root re-reads shared JWKS state, starts due refreshes and resumes waiters
/// ([`WorkerAuth::on_tick`]).
pub const TICK: Duration = Duration::from_millis(250);
/// Largest JWKS body accepted from the IdP.
const MAX_JWKS_BYTES: usize = 512 * 1024;

/// The host clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, &format!("{PLUGIN}: {msg}"));
}

/// Dispatches JWKS fetches from whichever context is running; the response comes back to it.
struct HostFetcher<'a> {
    inflight: &'a mut HashMap<u32, ProviderId>,
}

impl Fetcher for HostFetcher<'_> {
    fn fetch(&mut self, provider: ProviderId, remote: &RemoteJwks) -> bool {
        let headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(remote.policy.fetch_timeout_ms);
        let sent = hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout);
        track(self.inflight, provider, sent, || {
            format!("cannot fetch JWKS from {}", remote.cluster)
        })
    }
}

/// Remembers a dispatched call's token for its answer; logs why a call could not be sent.
fn track(
    inflight: &mut HashMap<u32, ProviderId>,
    provider: ProviderId,
    sent: Result<u32, proxy_wasm::types::Status>,
    what: impl FnOnce() -> String,
) -> bool {
    match sent {
        Ok(token) => {
            inflight.insert(token, provider);
            true
        }
        Err(e) => {
            log(LogLevel::Warn, &format!("{}: {e:?}", what()));
            false
        }
    }
}

/// Starts `ListRevocations` calls from the root context; answers come back to it.
struct HostRevocationCaller<'a> {
    inflight: &'a mut HashMap<u32, ProviderId>,
}

impl RevocationCaller for HostRevocationCaller<'_> {
    fn list(&mut self, provider: ProviderId, config: &RevocationConfig, request: &[u8]) -> bool {
        let sent = hostcalls::dispatch_grpc_call(
            &config.cluster,
            crate::revocation::SERVICE,
            crate::revocation::LIST_METHOD,
            vec![],
            Some(request),
            Duration::from_millis(config.timeout_ms),
        );
        track(self.inflight, provider, sent, || {
            format!("cannot call the revocation service on {}", config.cluster)
        })
    }
}

/// Per-request counters are batched and flushed on the root tick (one host call per tick
/// instead of two per request); the rarer ones go to the host at once.
struct Metrics {
    allowed: BatchedCounter,
    revocation_sync_ok: Counter,
    revocation_sync_failed: Counter,
    revocation_age_ms: Gauge,
    revocation_entries: Gauge,
    denied: HashMap<&'static str, Counter>,
    fetch_ok: Counter,
    fetch_failed: Counter,
    cache_hit: BatchedCounter,
    cache_miss: BatchedCounter,
    /// Signature checks made (at most `verify::MAX_CANDIDATES` per token).
    signature_checks: BatchedCounter,
    /// JWKS keys refused when a document was loaded (bad exponent, oversized modulus, ...).
    keys_skipped: Counter,
}

impl Metrics {
    fn new() -> Self {
        Self {
            allowed: BatchedCounter::define("jwt_auth.allowed"),
            revocation_sync_ok: Counter::define("jwt_auth.revocation.sync.success"),
            revocation_sync_failed: Counter::define("jwt_auth.revocation.sync.failure"),
            revocation_age_ms: Gauge::define("jwt_auth.revocation.list_age_ms"),
            revocation_entries: Gauge::define("jwt_auth.revocation.entries"),
            denied: HashMap::new(),
            fetch_ok: Counter::define("jwt_auth.jwks_fetch.success"),
            fetch_failed: Counter::define("jwt_auth.jwks_fetch.failure"),
            cache_hit: BatchedCounter::define("jwt_auth.token_cache.hit"),
            cache_miss: BatchedCounter::define("jwt_auth.token_cache.miss"),
            signature_checks: BatchedCounter::define("jwt_auth.signature_checks"),
            keys_skipped: Counter::define("jwt_auth.jwks.keys_skipped"),
        }
    }

    fn flush(&self) {
        self.allowed.flush();
        self.cache_hit.flush();
        self.cache_miss.flush();
        self.signature_checks.flush();
    }

    /// Logs and counts the keys a JWKS document had that were refused (index and kid only).
    fn keys_skipped(&self, provider: &str, skipped: &[String]) {
        if skipped.is_empty() {
            return;
        }
        self.keys_skipped
            .add(i64::try_from(skipped.len()).unwrap_or(i64::MAX));
        log(
            LogLevel::Warn,
            &format!(
                "provider {provider}: JWKS keys refused: {}",
                skipped.join("; ")
            ),
        );
    }

    fn denied(&mut self, reason: &'static str) {
        self.denied
            .entry(reason)
            .or_insert_with(|| Counter::define(&format!("jwt_auth.denied.{reason}")))
            .inc();
    }
}

/// A request paused while keys are fetched.
struct Pending {
    headers: HeaderMap,
    deadline_ms: u64,
}

/// What [`WorkerAuth::on_request_headers`] decided.
#[derive(Debug)]
pub enum Verdict {
    /// Go on with these edits for the upstream (not yet applied: the caller writes them, to the
    /// host or to its copy of the headers).
    Allow(Vec<HeaderEdit>),
    /// The refusal was sent as a local reply; the request stops here.
    Denied,
    /// Waiting for keys. The request comes back through the `allowed` callback of
    /// [`WorkerAuth::on_http_call_response`] / [`WorkerAuth::on_tick`] (or is refused there).
    Paused,
}

/// Called for a paused request that is now allowed, with the host's effective context already
/// switched to it: `(context_id, request headers, edits)`. It must apply the edits and resume
/// the request (or answer it) — [`resume_allowed`] is what the jwt_auth plugin does.
pub type Allowed<'a> = dyn FnMut(u32, &HeaderMap, &[HeaderEdit]) + 'a;

/// Everything one VM shares between its root and HTTP contexts.
pub struct WorkerAuth {
    auth: Authenticator,
    keys: WorkerKeys,
    revocations: WorkerRevocations,
    inflight: HashMap<u32, ProviderId>,
    /// `ListRevocations` calls in flight (root context only).
    revocation_calls: HashMap<u32, ProviderId>,
    pending: HashMap<u32, Pending>,
    metrics: Metrics,
}

impl WorkerAuth {
    /// Parses the plugin configuration and sets up this VM's state. Call from `on_configure`
    /// (shared-data keys are namespaced by the plugin's name), then set the tick to [`TICK`].
    pub fn configure(bytes: &[u8]) -> Result<Self, ConfigError> {
        FilterConfig::parse(bytes).map(|c| Self::new(Arc::new(c)))
    }

    pub fn new(config: Arc<FilterConfig>) -> Self {
        let prefix = hostcalls::get_property(vec!["plugin_name"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| PLUGIN.to_string());
        let metrics = Metrics::new();
        for p in &config.providers {
            if let KeySource::Local(set) = &p.keys {
                metrics.keys_skipped(&p.name, &set.skipped);
            }
        }
        WorkerAuth {
            auth: Authenticator::new(Arc::clone(&config), random_seed()),
            keys: WorkerKeys::new(Arc::clone(&config), &prefix),
            revocations: WorkerRevocations::new(Arc::clone(&config), &prefix),
            inflight: HashMap::new(),
            revocation_calls: HashMap::new(),
            pending: HashMap::new(),
            metrics,
        }
    }

    /// The request-headers phase of HTTP context `context_id`.
    pub fn on_request_headers(&mut self, context_id: u32, headers: &HeaderMap) -> Verdict {
        let now = now_ms();
        let decision = self.decide(headers, now);
        match decision.outcome {
            Outcome::Allow => {
                self.metrics.allowed.inc();
                Verdict::Allow(decision.edits)
            }
            Outcome::Deny(d) => {
                self.deny(d, headers.get("x-request-id"));
                Verdict::Denied
            }
            Outcome::Wait(providers) => {
                let deadline_ms = self.wait_deadline(&providers, now);
                self.pending.insert(
                    context_id,
                    Pending {
                        headers: headers.clone(),
                        deadline_ms,
                    },
                );
                Verdict::Paused
            }
        }
    }

    /// An HTTP call answered, in the root or any HTTP context: a JWKS fetch ends, and paused
    /// requests are decided again.
    pub fn on_http_call_response(&mut self, token: u32, body_size: usize, allowed: &mut Allowed) {
        self.on_fetch_response(token, body_size);
        self.resume_pending(now_ms(), allowed);
    }

    /// The root context's tick: shared JWKS state, due refreshes, counters, revocation sync,
    /// and paused requests whose time is up.
    pub fn on_tick(&mut self, allowed: &mut Allowed) {
        let now = now_ms();
        let changed = {
            let WorkerAuth { keys, inflight, .. } = self;
            keys.tick(&SharedData, &mut HostFetcher { inflight }, now)
        };
        self.keys_changed(&changed);
        self.metrics.flush();
        if self.revocations.enabled() {
            let WorkerAuth {
                revocations,
                revocation_calls,
                metrics,
                ..
            } = self;
            revocations.tick(
                &SharedData,
                &mut HostRevocationCaller {
                    inflight: revocation_calls,
                },
                now,
            );
            if let Some(age) = revocations.age_ms(now) {
                metrics.revocation_age_ms.set(age);
            }
        }
        if !self.pending.is_empty() {
            self.resume_pending(now, allowed);
        }
    }

    /// The HTTP context is gone: forget its paused request.
    pub fn on_done(&mut self, context_id: u32) {
        self.pending.remove(&context_id);
    }

    fn decide(&mut self, headers: &HeaderMap, now: u64) -> Decision {
        let WorkerAuth {
            auth,
            keys,
            revocations,
            inflight,
            metrics,
            ..
        } = self;
        let mut fetcher = HostFetcher { inflight };
        let d = auth.authenticate(
            headers,
            now,
            &mut keys.store(&SharedData, &mut fetcher),
            revocations,
        );
        metrics.cache_hit.add(i64::from(d.cache_hits));
        metrics.cache_miss.add(i64::from(d.cache_misses));
        metrics.signature_checks.add(i64::from(d.signature_checks));
        d
    }

    fn keys_changed(&mut self, changed: &[ProviderId]) {
        for p in changed {
            self.auth.keys_changed(*p);
        }
    }

    /// A JWKS response (or failure) arrived in some context.
    fn on_fetch_response(&mut self, token: u32, body_size: usize) {
        let Some(provider) = self.inflight.remove(&token) else {
            return;
        };
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let body = if status.as_deref() == Some(b"200") && body_size <= MAX_JWKS_BYTES {
            hostcalls::get_buffer(
                proxy_wasm::types::BufferType::HttpCallResponseBody,
                0,
                body_size,
            )
            .ok()
            .flatten()
        } else {
            None
        };
        let now = now_ms();
        match self
            .keys
            .on_fetch_result(&SharedData, provider, body.as_deref(), now)
        {
            FetchResult::Accepted { skipped } => {
                self.metrics.fetch_ok.inc();
                let name = self
                    .auth
                    .config()
                    .providers
                    .get(provider)
                    .map_or("?", |p| p.name.as_str());
                self.metrics.keys_skipped(name, &skipped);
                self.auth.keys_changed(provider);
            }
            FetchResult::Rejected(why) => {
                self.metrics.fetch_failed.inc();
                log(
                    LogLevel::Warn,
                    &format!("JWKS fetch rejected, keeping the last good keys: {why}"),
                );
            }
        }
    }

    /// Re-runs every paused request; finishes those that no longer wait or whose time is up.
    fn resume_pending(&mut self, now: u64, allowed: &mut Allowed) {
        let ids: Vec<u32> = self.pending.keys().copied().collect();
        for id in ids {
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            let fetches_before = self.inflight.len();
            let decision = self.decide(&p.headers, now);
            if let Outcome::Wait(providers) = &decision.outcome {
                // The keys that arrived did not have this request's kid and a new fetch went
                // out for it (a fetch already in flight when the request came may predate a
                // rotation): give that fetch its own full timeout. The unknown-kid refetch
                // budget bounds how often this can happen.
                if self.inflight.len() > fetches_before {
                    p.deadline_ms = self.wait_deadline(providers, now);
                }
                if now < p.deadline_ms {
                    self.pending.insert(id, p);
                    continue;
                }
            }
            if hostcalls::set_effective_context(id).is_err() {
                continue; // the request is gone
            }
            let request_id = p.headers.get("x-request-id").map(str::to_string);
            match decision.outcome {
                Outcome::Allow => {
                    self.metrics.allowed.inc();
                    allowed(id, &p.headers, &decision.edits);
                }
                Outcome::Deny(d) => self.deny(d, request_id.as_deref()),
                Outcome::Wait(_) => self.deny(Denial::KEYS_UNAVAILABLE, request_id.as_deref()),
            }
        }
    }

    /// A gRPC call answered in the root context: a `ListRevocations` answer (or failure).
    pub fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some(provider) = self.revocation_calls.remove(&token) else {
            return;
        };
        let body = if status == 0 {
            hostcalls::get_buffer(proxy_wasm::types::BufferType::GrpcReceiveBuffer, 0, size)
                .ok()
                .map(Option::unwrap_or_default)
        } else {
            None
        };
        match self
            .revocations
            .on_response(&SharedData, provider, body.as_deref(), now_ms())
        {
            SyncResult::Synced(n) => {
                self.metrics.revocation_sync_ok.inc();
                self.metrics
                    .revocation_entries
                    .set(u64::try_from(n).unwrap_or(u64::MAX));
            }
            SyncResult::Failed(why) => {
                self.metrics.revocation_sync_failed.inc();
                log(
                    LogLevel::Warn,
                    &format!("revocation sync failed (grpc status {status}), keeping the last list: {why}"),
                );
            }
        }
    }

    fn deny(&mut self, d: Denial, request_id: Option<&str>) {
        self.metrics.denied(d.reason);
        let realm = self.auth.config().realm.clone();
        let www = d.www_authenticate(&realm);
        send_json_error(
            d.status(),
            d.error_code(),
            d.description,
            request_id,
            &[("www-authenticate", &www)],
        );
    }

    fn wait_deadline(&self, providers: &[ProviderId], now: u64) -> u64 {
        let longest = providers
            .iter()
            .filter_map(|p| match &self.auth.config().providers.get(*p)?.keys {
                KeySource::Remote(r) => Some(r.policy.fetch_timeout_ms),
                KeySource::Local(_) => None,
            })
            .max()
            .unwrap_or(0);
        now.saturating_add(longest).saturating_add(1_000)
    }
}

/// Writes jwt_auth's edits to the host's request headers (`headers` as they were read).
pub fn apply_edits(edits: &[HeaderEdit], headers: &HeaderMap) {
    for e in host_edits(edits, headers) {
        let _ = match e {
            HeaderEdit::Remove(name) => {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
            }
            HeaderEdit::Set(name, value) => {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
            }
        };
    }
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    match getrandom::getrandom(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        // Only bucketing depends on it (equality decides hits); time is a weak fallback.
        Err(_) => now_ms().rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
    }
}

/// The jwt_auth plugin's [`Allowed`]: write the edits, let the request go on.
pub fn resume_allowed(_context_id: u32, headers: &HeaderMap, edits: &[HeaderEdit]) {
    apply_edits(edits, headers);
    let _ = hostcalls::resume_http_request();
}
