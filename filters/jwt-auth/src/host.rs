//! The host side of jwt_auth: [`WorkerAuth`] owns one VM's engine, keys, revocation list, JWKS
//! fetches, paused requests and counters, and talks to the host (any [`Host`]: Envoy through
//! `filter_core::wasm::WasmHost`, a recording fake in tests) for them. The plugin
//! ([`crate::plugin`]) and bundles that run jwt_auth as one stage of several (the `gateway`
//! crate) drive it from their root and HTTP contexts. All decisions are made by
//! [`crate::engine`].

use crate::config::{FilterConfig, IntrospectionConfig, KeySource, RemoteJwks};
use crate::engine::{host_edits, Authenticator, Decision, Outcome};
use crate::introspection::{self, Answer, Introspections, Lookup, MAX_ANSWER_BYTES};
use crate::keystore::{FetchResult, Fetcher, WorkerKeys};
use crate::metrics;
use crate::outcome::Denial;
use crate::revocation::{RevocationCaller, RevocationConfig, SyncResult, WorkerRevocations};
use crate::rules::{Governing, ProviderId};
use filter_core::host::{self, BatchedCounter, Buffer, CallError, Counter, Gauge, GrpcCall};
use filter_core::host::{Level, Map};
use filter_core::route::{Bound, Choice, Needs, RouteFacts};
use filter_core::{ConfigError, HeaderEdit, HeaderMap, Host};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The name the plugin logs under.
pub const PLUGIN: &str = "jwt_auth";
/// How often the root re-reads shared JWKS state, starts due refreshes and resumes waiters
/// ([`WorkerAuth::on_tick`]): the one tick of every plugin.
pub use filter_core::plugin::TICK;
/// Largest JWKS body accepted from the IdP.
const MAX_JWKS_BYTES: usize = 512 * 1024;

/// The host clock in Unix milliseconds.
pub fn now_ms<H: Host>(host: &H) -> u64 {
    host.now_ms()
}

fn log<H: Host>(host: &H, msg: &str) {
    host::log(host, PLUGIN, Level::Warn, msg);
}

/// Dispatches JWKS fetches from whichever context is running; the response comes back to it.
struct HostFetcher<'a, H: Host> {
    host: &'a H,
    inflight: &'a mut HashMap<u32, ProviderId>,
    introspections: &'a mut Introspections,
}

impl<H: Host> Fetcher for HostFetcher<'_, H> {
    fn fetch(&mut self, provider: ProviderId, remote: &RemoteJwks) -> bool {
        let headers = [
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(remote.policy.fetch_timeout_ms);
        let sent = self
            .host
            .http_call(&remote.cluster, &headers, None, timeout);
        track(self.host, self.inflight, provider, sent, || {
            format!("cannot fetch JWKS from {}", remote.cluster)
        })
    }

    /// Cached, or waiting for the call for this token (one at a time per worker).
    fn introspect(
        &mut self,
        p: ProviderId,
        cfg: &IntrospectionConfig,
        token: &str,
        now_ms: u64,
    ) -> Lookup {
        if let Some(known) = self.introspections.lookup(p, token, now_ms) {
            return known;
        }
        let (headers, body) = introspection::request(cfg, token);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let timeout = Duration::from_millis(cfg.timeout_ms);
        match self
            .host
            .http_call(&cfg.cluster, &headers, Some(&body), timeout)
        {
            Ok(call) => {
                self.introspections.started(call, p, token);
                Lookup::Wait
            }
            Err(e) => {
                log(
                    self.host,
                    &format!("cannot call token introspection on {}: {e}", cfg.cluster),
                );
                let answer = Answer::Unavailable;
                self.introspections
                    .answered((p, token.into()), answer.clone(), cfg, now_ms);
                Lookup::Known(answer)
            }
        }
    }
}

/// Remembers a dispatched call's token for its answer; logs why a call could not be sent.
fn track<H: Host>(
    host: &H,
    inflight: &mut HashMap<u32, ProviderId>,
    provider: ProviderId,
    sent: Result<u32, CallError>,
    what: impl FnOnce() -> String,
) -> bool {
    match sent {
        Ok(token) => {
            inflight.insert(token, provider);
            true
        }
        Err(e) => {
            log(host, &format!("{}: {e}", what()));
            false
        }
    }
}

/// Starts `ListRevocations` calls from the root context; answers come back to it.
struct HostRevocationCaller<'a, H: Host> {
    host: &'a H,
    inflight: &'a mut HashMap<u32, ProviderId>,
}

impl<H: Host> RevocationCaller for HostRevocationCaller<'_, H> {
    fn list(&mut self, provider: ProviderId, config: &RevocationConfig, request: &[u8]) -> bool {
        let sent = self.host.grpc_call(GrpcCall {
            cluster: &config.cluster,
            service: crate::revocation::SERVICE,
            method: crate::revocation::LIST_METHOD,
            message: request,
            timeout: Duration::from_millis(config.timeout_ms),
        });
        track(self.host, self.inflight, provider, sent, || {
            format!("cannot call the revocation service on {}", config.cluster)
        })
    }
}

/// Per-request counters are batched and reach the host on [`WorkerAuth::flush`] (one host
/// call per tick instead of two per request); the rarer ones go to the host at once.
struct Metrics<H: Host> {
    host: H,
    allowed: BatchedCounter<H>,
    revocation_sync_ok: Counter<H>,
    revocation_sync_failed: Counter<H>,
    revocation_age_ms: Gauge<H>,
    revocation_entries: Gauge<H>,
    denied: HashMap<&'static str, Counter<H>>,
    fetch_ok: Counter<H>,
    fetch_failed: Counter<H>,
    introspection_ok: Counter<H>,
    introspection_failed: Counter<H>,
    cache_hit: BatchedCounter<H>,
    cache_miss: BatchedCounter<H>,
    /// Signature checks made (at most `verify::MAX_CANDIDATES` per token).
    signature_checks: BatchedCounter<H>,
    /// JWKS keys refused when a document was loaded (bad exponent, oversized modulus, ...).
    keys_skipped: Counter<H>,
}

impl<H: Host> Metrics<H> {
    fn new(host: &H) -> Self {
        Self {
            host: host.clone(),
            allowed: BatchedCounter::define(host, metrics::ALLOWED),
            revocation_sync_ok: Counter::define(host, metrics::REVOCATION_SYNC_SUCCESS),
            revocation_sync_failed: Counter::define(host, metrics::REVOCATION_SYNC_FAILURE),
            revocation_age_ms: Gauge::define(host, metrics::REVOCATION_LIST_AGE_MS),
            revocation_entries: Gauge::define(host, metrics::REVOCATION_ENTRIES),
            denied: HashMap::new(),
            fetch_ok: Counter::define(host, metrics::JWKS_FETCH_SUCCESS),
            fetch_failed: Counter::define(host, metrics::JWKS_FETCH_FAILURE),
            introspection_ok: Counter::define(host, metrics::INTROSPECTION_SUCCESS),
            introspection_failed: Counter::define(host, metrics::INTROSPECTION_FAILURE),
            cache_hit: BatchedCounter::define(host, metrics::TOKEN_CACHE_HIT),
            cache_miss: BatchedCounter::define(host, metrics::TOKEN_CACHE_MISS),
            signature_checks: BatchedCounter::define(host, metrics::SIGNATURE_CHECKS),
            keys_skipped: Counter::define(host, metrics::JWKS_KEYS_SKIPPED),
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
        self.keys_skipped.add_count(skipped.len());
        log(
            &self.host,
            &format!(
                "provider {provider}: JWKS keys refused: {}",
                skipped.join("; ")
            ),
        );
    }

    fn denied(&mut self, reason: &'static str) {
        let host = &self.host;
        self.denied
            .entry(reason)
            .or_insert_with(|| Counter::define(host, &metrics::denied(reason)))
            .inc();
    }
}

/// A request paused while keys are fetched.
struct Pending {
    headers: HeaderMap,
    governing: Governing,
    deadline_ms: u64,
}

/// What [`WorkerAuth::on_request_headers`] decided.
#[derive(Debug)]
pub enum Verdict {
    /// Go on with these edits for the upstream (not yet applied: the caller writes them, to the
    /// host with [`apply_edits`] or to its copy of the headers).
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
pub struct WorkerAuth<H: Host> {
    host: H,
    auth: Authenticator,
    keys: WorkerKeys,
    revocations: WorkerRevocations,
    inflight: HashMap<u32, ProviderId>,
    /// Opaque tokens' introspection answers and calls in flight.
    introspections: Introspections,
    /// `ListRevocations` calls in flight (root context only).
    revocation_calls: HashMap<u32, ProviderId>,
    pending: HashMap<u32, Pending>,
    metrics: Metrics<H>,
}

impl<H: Host> WorkerAuth<H> {
    /// Parses the plugin configuration and sets up this VM's state. Call when the plugin is
    /// configured (shared-data keys are namespaced by the plugin's name), then tick every
    /// [`TICK`].
    pub fn configure(host: H, bytes: &[u8]) -> Result<Self, ConfigError> {
        FilterConfig::parse(bytes).map(|c| Self::new(host, Arc::new(c)))
    }

    pub fn new(host: H, config: Arc<FilterConfig>) -> Self {
        let prefix = host
            .property(&["plugin_name"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| PLUGIN.to_string());
        let metrics = Metrics::new(&host);
        for p in &config.providers {
            if let KeySource::Local(set) = &p.keys {
                metrics.keys_skipped(&p.name, &set.skipped);
            }
        }
        let introspected: Vec<Option<&IntrospectionConfig>> = (config.providers.iter())
            .map(|p| match &p.keys {
                KeySource::Introspect(i) => Some(i.as_ref()),
                _ => None,
            })
            .collect();
        let introspections = Introspections::new(&introspected, random_seed(&host));
        WorkerAuth {
            auth: Authenticator::new(Arc::clone(&config), random_seed(&host)),
            introspections,
            keys: WorkerKeys::new(Arc::clone(&config), &prefix),
            revocations: WorkerRevocations::new(Arc::clone(&config), &prefix),
            inflight: HashMap::new(),
            revocation_calls: HashMap::new(),
            pending: HashMap::new(),
            metrics,
            host,
        }
    }

    /// The compiled configuration.
    pub fn config(&self) -> &FilterConfig {
        self.auth.config()
    }

    /// What a request must read of its route before [`Self::on_request_headers`] (nothing
    /// when the deprecated matchers decide).
    pub fn route_needs(&self) -> Needs {
        (self.config().routes.as_ref())
            .map(|b| b.needs())
            .unwrap_or_default()
    }

    /// Which rule governs a request on `route`; `None` when it was refused for its route (it
    /// names no requirement and forwards upstream: 403; it names an undefined one: 500).
    fn govern(&mut self, route: &RouteFacts, request_id: Option<&str>) -> Option<Governing> {
        let Some(binding) = &self.auth.config().routes else {
            return Some(Governing::Matchers);
        };
        let bound = binding.decide(&self.host, route);
        match bound {
            Bound::Chosen(Choice::Policy(i)) => return Some(Governing::Named(i)),
            Bound::Chosen(Choice::Reserved(_)) | Bound::Exempt => return Some(Governing::Public),
            Bound::Unbound | Bound::Invalid(_) => {}
        }
        if let Some(refusal) = bound.refusal("authentication") {
            self.metrics.denied(refusal.reason);
            refusal.send(&self.host, request_id);
        }
        None
    }

    /// The request-headers phase of HTTP context `context_id` (the effective context), on
    /// the route facts [`Self::route_needs`] asked for (empty when it asked for none).
    pub fn on_request_headers(
        &mut self,
        context_id: u32,
        headers: &HeaderMap,
        route: &RouteFacts,
    ) -> Verdict {
        let Some(governing) = self.govern(route, headers.get("x-request-id")) else {
            return Verdict::Denied;
        };
        let now = self.host.now_ms();
        let decision = self.decide(headers, governing, now);
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
                        governing,
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
        self.resume_pending(self.host.now_ms(), allowed);
    }

    /// The root context's tick: shared JWKS state, due refreshes, revocation sync, and paused
    /// requests whose time is up. Batched counters are handed over by [`Self::flush`], which
    /// the caller runs after every tick.
    pub fn on_tick(&mut self, allowed: &mut Allowed) {
        let now = self.host.now_ms();
        let changed = {
            let WorkerAuth {
                host,
                keys,
                inflight,
                introspections,
                ..
            } = self;
            let mut fetcher = HostFetcher {
                host,
                inflight,
                introspections,
            };
            keys.tick(host, &mut fetcher, now)
        };
        self.keys_changed(&changed);
        if self.revocations.enabled() {
            let WorkerAuth {
                host,
                revocations,
                revocation_calls,
                metrics,
                ..
            } = self;
            let mut caller = HostRevocationCaller {
                host,
                inflight: revocation_calls,
            };
            revocations.tick(host, &mut caller, now);
            if let Some(age) = revocations.age_ms(now) {
                metrics.revocation_age_ms.set(age);
            }
        }
        if !self.pending.is_empty() {
            self.resume_pending(now, allowed);
        }
    }

    /// Hands the batched per-request counters to the host (after every tick, and when the VM
    /// stops).
    pub fn flush(&self) {
        self.metrics.flush();
    }

    /// The HTTP context is gone: forget its paused request.
    pub fn on_done(&mut self, context_id: u32) {
        self.pending.remove(&context_id);
    }

    fn decide(&mut self, headers: &HeaderMap, governing: Governing, now: u64) -> Decision {
        let WorkerAuth {
            host,
            auth,
            keys,
            revocations,
            inflight,
            introspections,
            metrics,
            ..
        } = self;
        let mut fetcher = HostFetcher {
            host,
            inflight,
            introspections,
        };
        let d = auth.authenticate(
            headers,
            governing,
            now,
            &mut keys.store(host, &mut fetcher),
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
        if let Some(call) = self.introspections.take_call(token) {
            return self.on_introspection_answer(call, body_size);
        }
        let Some(provider) = self.inflight.remove(&token) else {
            return;
        };
        let status = self.host.header(Map::CallResponseHeaders, ":status");
        let body = if status.as_deref() == Some(b"200".as_slice()) && body_size <= MAX_JWKS_BYTES {
            self.host.buffer(Buffer::CallResponseBody, 0, body_size)
        } else {
            None
        };
        let now = self.host.now_ms();
        match self
            .keys
            .on_fetch_result(&self.host, provider, body.as_deref(), now)
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
                    &self.host,
                    &format!("JWKS fetch rejected, keeping the last good keys: {why}"),
                );
            }
        }
    }

    /// An introspection answer (or failure) arrived: cached for the requests waiting on it.
    fn on_introspection_answer(&mut self, call: (ProviderId, Box<str>), body_size: usize) {
        let status = self.host.header(Map::CallResponseHeaders, ":status");
        let ok = status.as_deref() == Some(b"200".as_slice()) && body_size <= MAX_ANSWER_BYTES;
        let body = if ok {
            self.host.buffer(Buffer::CallResponseBody, 0, body_size)
        } else {
            None
        };
        let answer = introspection::parse_answer(ok, body.as_deref());
        let Some(KeySource::Introspect(cfg)) =
            self.auth.config().providers.get(call.0).map(|p| &p.keys)
        else {
            return;
        };
        let cfg = Arc::clone(cfg);
        if answer == Answer::Unavailable {
            self.metrics.introspection_failed.inc();
            log(&self.host, "token introspection failed: no usable answer");
        } else {
            self.metrics.introspection_ok.inc();
        }
        let now = self.host.now_ms();
        self.introspections.answered(call, answer, &cfg, now);
    }

    /// Re-runs every paused request; finishes those that no longer wait or whose time is up.
    fn resume_pending(&mut self, now: u64, allowed: &mut Allowed) {
        let ids: Vec<u32> = self.pending.keys().copied().collect();
        for id in ids {
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            let fetches_before = self.inflight.len();
            let decision = self.decide(&p.headers, p.governing, now);
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
            if !self.host.set_effective_context(id) {
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
            match self.host.buffer(Buffer::GrpcReceive, 0, size) {
                // An empty message is a valid answer (the host hands over no buffer for it);
                // a non-empty one that cannot be read is a failure, never an empty list.
                None if size == 0 => Some(Vec::new()),
                read => read,
            }
        } else {
            None
        };
        let now = self.host.now_ms();
        match self
            .revocations
            .on_response(&self.host, provider, body.as_deref(), now)
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
                    &self.host,
                    &format!("revocation sync failed (grpc status {status}), keeping the last list: {why}"),
                );
            }
        }
    }

    fn deny(&mut self, d: Denial, request_id: Option<&str>) {
        self.metrics.denied(d.reason);
        filter_core::audit::record(&self.host, PLUGIN, d.reason, None);
        let www = d.www_authenticate(&self.auth.config().realm);
        self.host.send_json_error(
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
                KeySource::Introspect(i) => Some(i.timeout_ms),
                KeySource::Local(_) => None,
            })
            .max()
            .unwrap_or(0);
        now.saturating_add(longest).saturating_add(1_000)
    }
}

/// Writes jwt_auth's edits to the host's request headers (`headers` as they were read), through
/// [`Host::write_edits`], leaving out the no-op ones ([`host_edits`]).
pub fn apply_edits<H: Host>(host: &H, edits: &[HeaderEdit], headers: &HeaderMap) {
    host.write_edits(Map::RequestHeaders, host_edits(edits, headers));
}

/// The token cache's hasher seed. Only bucketing depends on it (equality decides hits), so
/// the host clock is an acceptable fallback when the OS has no randomness.
fn random_seed<H: Host>(host: &H) -> u64 {
    host::random_u64(host)
}

/// The jwt_auth plugin's [`Allowed`]: write the edits, let the request go on.
pub fn resume_allowed<H: Host>(host: &H) -> impl FnMut(u32, &HeaderMap, &[HeaderEdit]) + '_ {
    move |_context_id, headers, edits| {
        apply_edits(host, edits, headers);
        host.resume_request();
    }
}
