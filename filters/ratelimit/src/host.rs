//! The host side of the ratelimit stage, generic over [`Host`]: the pools on shared data (one
//! compare-and-swap per request), the lease calls, the requests waiting for tokens, the replies.
//!
//! A request with tokens in its pool never waits and makes no call: it spends one token. When
//! the pool falls to its low water mark, that request (only one: the mark is in the pool)
//! queues a background lease, sent on the next root tick (hurried to [`SOON`]): proxy-wasm hands a call's answer to
//! the context that sent it and drops it once that request is gone, so a lease that must
//! outlive its request goes out from the root context. A request that finds no token waits for
//! a lease (this worker's in flight, or one it sends from its own context: it lives until the
//! answer or its timeout) at most `timeout_ms`; then the failure mode decides.

use crate::config::{Config, FailureMode};
use crate::descriptors::{build_all, pool_key, strip_port, Descriptor, RequestFacts};
use crate::metrics::Metrics;
use crate::pb::{self, LeaseMode, LeaseRequest, LeaseResponse};
use crate::pool::{self, LimitView, Pool, Take};
use crate::slots::{self, Slots};
use filter_core::audit;
use filter_core::host::{log, GrpcCall, Level};
use filter_core::plugin::TICK;
use filter_core::route::{Bound, Choice, Needs, Refusal, RouteFacts};
use filter_core::shared::update_shared;
use filter_core::{HeaderMap, Host};
use prost::Message;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

/// The name the plugin logs under.
pub const PLUGIN: &str = "ratelimit";
pub const SERVICE: &str = "edgegate.ratelimit.v1.QuotaLease";
pub const LEASE_METHOD: &str = "Lease";
/// Compare-and-swap attempts on a pool before the request is treated as unreachable.
const CAS_ATTEMPTS: usize = 8;
/// `Call::from` for calls the root context sent (no request context has id 0).
const ROOT: u32 = 0;
/// The tick period while a background lease waits to be sent: at once, not up to a whole
/// [`TICK`] later (a pool at its low water mark must not run dry meanwhile).
pub const SOON: Duration = Duration::from_millis(1);
/// The most pools whose descriptors one worker remembers (for background refills).
const MAX_KNOWN_POOLS: usize = 10_000;

/// How a request leaves the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// On to the upstream; the limit to show on the response, if one applies.
    Continue(Option<RateHeaders>),
    /// Answered locally (429 or 503).
    Answered,
    /// Waiting for tokens; resumed or answered later.
    Paused,
}

/// `X-RateLimit-*` values for an admitted request's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: LimitView,
    /// Requests left as far as this Envoy can tell (the bucket's remainder plus held tokens).
    pub remaining: u64,
}

/// Tokens this worker took from a pool in a chunk ([`pool::take_chunk`]): spent with no
/// shared-data call until they run out or expire with the lease they came from.
struct Local {
    tokens: u32,
    expires_ms: u64,
    limit: LimitView,
    /// What the pool held when the chunk was taken (for `X-RateLimit-Remaining`).
    pool_left: u32,
}

struct Waiter {
    key: String,
    /// The name of the limit (rule) the request is counted against, for the audit log.
    limit: String,
    deadline_ms: u64,
    request_id: Option<String>,
}

/// A lease call in flight.
struct Call {
    key: String,
    /// The context that sent it (its answer comes back there).
    from: u32,
    /// When it was sent (the lease's lifetime counts from then).
    sent_ms: u64,
    /// Exact mode: the request the single token is for.
    for_request: Option<u32>,
}

/// One VM's limiter: shared by the root context and every request.
pub struct Limiter<H: Host> {
    host: H,
    config: Config,
    prefix: String,
    slots: Slots,
    waiting: RefCell<HashMap<u32, Waiter>>,
    calls: RefCell<HashMap<u32, Call>>,
    /// The descriptors of each pool this worker has asked for (for background refills).
    descriptors: RefCell<HashMap<String, Vec<Descriptor>>>,
    /// Rate headers of requests admitted after waiting, for their response phase.
    resumed_headers: RefCell<HashMap<u32, RateHeaders>>,
    /// Leases the root sends on its next tick: (pool, the exact-mode request it is for).
    /// Background refills, and every lease a call's answer or a request's end makes needed:
    /// proxy-wasm's Rust SDK hands an answer to the context whose callback dispatched the
    /// call, which may end before the answer comes; the root never does.
    root_leases: RefCell<Vec<(String, Option<u32>)>>,
    /// This worker's sub-pools, by pool key.
    local: RefCell<HashMap<String, Local>>,
    /// The root ticks [`SOON`] (refills are queued) rather than every [`TICK`].
    hurried: Cell<bool>,
    /// The owner's say on a paused request this limiter lets go ([`Self::on_admit`]).
    admit_hook: RefCell<Option<AdmitHook>>,
    pub metrics: Metrics<H>,
}

/// Called with the context id of a paused request the limiter lets go, while that request is
/// the effective context: true when the caller took the request over (it is then not resumed).
pub type AdmitHook = Box<dyn Fn(u32) -> bool>;

impl<H: Host> Limiter<H> {
    pub fn new(host: H, config: Config) -> Self {
        let prefix = host
            .property(&["plugin_name"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| PLUGIN.to_string());
        Limiter {
            metrics: Metrics::define(&host),
            host,
            slots: Slots::new(&prefix, config.max_pools),
            config,
            prefix,
            waiting: RefCell::default(),
            calls: RefCell::default(),
            descriptors: RefCell::default(),
            resumed_headers: RefCell::default(),
            root_leases: RefCell::default(),
            local: RefCell::default(),
            hurried: Cell::new(false),
            admit_hook: RefCell::new(None),
        }
    }

    /// Lets the owner act on a paused request before it is resumed: the bundle starts its
    /// aggregation stage there (a request the limiter held never reaches the bundle again).
    pub fn on_admit(&self, hook: AdmitHook) {
        *self.admit_hook.borrow_mut() = Some(hook);
    }

    /// A paused request goes on: resumed, unless the owner took it over.
    fn let_go(&self, context_id: u32) {
        let taken = (self.admit_hook.borrow().as_ref()).is_some_and(|hook| hook(context_id));
        if !taken {
            self.host.resume_request();
        }
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    /// What a request must read of its route before [`Self::on_request`] (nothing when the
    /// rules' own matchers decide).
    pub fn route_needs(&self) -> Needs {
        (self.config.limits.as_ref())
            .map(|b| b.needs())
            .unwrap_or_default()
    }

    /// The request-headers phase of request `context_id`, on the route facts
    /// [`Self::route_needs`] asked for (empty when it asked for none).
    pub fn on_request(&self, context_id: u32, headers: &HeaderMap, facts: &RouteFacts) -> Verdict {
        // The route's name: already read with the facts when a name map needed it.
        let read = (self.config.reads_route && facts.name().is_none())
            .then(|| self.host.property(&["xds", "route_name"]));
        let read = read.flatten().and_then(|b| String::from_utf8(b).ok());
        let route = facts.name().or(read.as_deref()).filter(|r| !r.is_empty());
        let rules = &self.config.rules;
        let rule = match &self.config.limits {
            None => rules.iter().find(|r| r.applies(headers, route)),
            Some(binding) => match binding.select(facts) {
                Bound::Chosen(Choice::Policy(i)) => binding.policy(i).and_then(|r| rules.get(*r)),
                Bound::Invalid(why) => {
                    let refusal = Refusal::invalid("rate limit", &why);
                    refusal.send(&self.host, headers.get("x-request-id"));
                    return Verdict::Answered;
                }
                // `none`, or a route that names no limit: not limited here.
                _ => None,
            },
        };
        let Some(rule) = rule else {
            return Verdict::Continue(None);
        };
        let remote = rule
            .reads_remote
            .then(|| self.host.property(&["source", "address"]))
            .flatten();
        let remote = remote.as_deref().and_then(|b| std::str::from_utf8(b).ok());
        let facts = RequestFacts {
            remote: remote.map(strip_port),
            route,
        };
        let descriptors = build_all(&rule.descriptors, headers, facts);
        if descriptors.is_empty() {
            return Verdict::Continue(None);
        }
        let key = pool_key(&self.prefix, &self.config.domain, &descriptors);
        let mut known = self.descriptors.borrow_mut();
        if known.len() >= MAX_KNOWN_POOLS && !known.contains_key(&key) {
            // Bounded memory whatever the descriptors' cardinality: forget them all; a pool
            // asked for again is learnt again on its next request.
            known.clear();
        }
        known.entry(key.clone()).or_insert(descriptors);
        drop(known);
        let request_id = headers.get("x-request-id");
        let now = self.host.now_ms();
        if let Some(rate) = self.spend_local(&key, now) {
            self.metrics.admitted.inc();
            return Verdict::Continue(rate);
        }
        match self.take_at(&key, now, true) {
            Some(Take::Admit {
                refill,
                limit,
                left,
            }) => {
                self.metrics.admitted.inc();
                if refill {
                    self.queue_refill(&key);
                }
                Verdict::Continue(rate_headers(limit, left))
            }
            Some(Take::Refuse {
                retry_after_ms,
                limit,
            }) => {
                self.refuse(retry_after_ms, limit, &rule.name, request_id);
                Verdict::Answered
            }
            Some(Take::Wait) => self.wait(context_id, key, &rule.name, request_id),
            None => self.fail(request_id),
        }
    }

    /// Takes a token from `key`'s pool (None: every compare-and-swap lost).
    fn take(&self, key: &str) -> Option<Take> {
        self.take_at(key, self.host.now_ms(), false)
    }

    /// Takes a token from `key`'s pool at `now`, and with `chunk` a few more into this
    /// worker's sub-pool. A pool in neither of its slots is no pool: wait for a lease.
    fn take_at(&self, key: &str, now: u64, chunk: bool) -> Option<Take> {
        let refill_for = self.config.timeout_ms;
        for slot in self.slots.candidates(key) {
            let taken = update_shared(&self.host, &slot, CAS_ATTEMPTS, |bytes| {
                let Some(current) = slots::read(bytes, key) else {
                    return (None, None);
                };
                // Half of what a lease brings: the service's suggestion, capped by what this
                // stage asks for (a low water mark above what a lease adds would refill on
                // every tick).
                let low_water = current.lease_size.min(self.config.lease_size) / 2;
                let (next, take, extra) = if chunk {
                    pool::take_chunk(Some(current), now, refill_for, low_water)
                } else {
                    let (next, take) = pool::take(Some(current), now, refill_for, low_water);
                    (next, take, 0)
                };
                let write = next.map(|p| slots::write(&p, key));
                (write, Some((take, extra, current.expires_ms)))
            });
            match taken {
                Some(Some((take, extra, expires_ms))) => {
                    if let (Take::Admit { limit, left, .. }, true) = (take, extra > 0) {
                        self.keep_local(key, extra, expires_ms, limit, left);
                    }
                    return Some(take);
                }
                Some(None) => continue,
                None => return None,
            }
        }
        Some(Take::Wait)
    }

    /// Spends a token of this worker's sub-pool for `key`, if it holds a live one.
    fn spend_local(&self, key: &str, now: u64) -> Option<Option<RateHeaders>> {
        let mut local = self.local.borrow_mut();
        let held = local.get_mut(key)?;
        if now >= held.expires_ms || held.tokens == 0 {
            local.remove(key);
            return None;
        }
        held.tokens -= 1;
        Some(rate_headers(held.limit, held.tokens + held.pool_left))
    }

    /// Keeps a chunk of `key`'s tokens in this worker's sub-pool (bounded: past
    /// `MAX_KNOWN_POOLS` sub-pools, all are dropped and their tokens counted lost).
    fn keep_local(&self, key: &str, tokens: u32, expires_ms: u64, limit: LimitView, left: u32) {
        let mut local = self.local.borrow_mut();
        if local.len() >= MAX_KNOWN_POOLS && !local.contains_key(key) {
            let dropped: u32 = local.values().map(|l| l.tokens).sum();
            self.metrics.tokens_lost.add(i64::from(dropped));
            local.clear();
        }
        let held = Local {
            tokens,
            expires_ms,
            limit,
            pool_left: left,
        };
        local.insert(key.to_string(), held);
    }

    /// No token: wait for a lease. One lease per pool per worker serves every waiter of the
    /// pool; in exact mode each request asks for its own token.
    fn wait(&self, context_id: u32, key: String, limit: &str, request_id: Option<&str>) -> Verdict {
        let exact = self.is_exact(&key);
        let asking = self.lease_pending(&key, None);
        let sent = match (exact, asking) {
            (true, _) => self.lease(&key, Some(context_id), context_id),
            (false, true) => true,
            (false, false) => self.lease(&key, None, context_id),
        };
        if !sent {
            return self.fail(request_id);
        }
        self.metrics.waited.inc();
        let deadline_ms = self.host.now_ms().saturating_add(self.config.timeout_ms);
        let waiter = Waiter {
            key,
            limit: limit.to_string(),
            deadline_ms,
            request_id: request_id.map(str::to_string),
        };
        self.waiting.borrow_mut().insert(context_id, waiter);
        Verdict::Paused
    }

    fn pool(&self, key: &str) -> Option<Pool> {
        (self.slots.candidates(key).iter())
            .find_map(|slot| slots::read(self.host.get(slot).0.as_deref(), key))
    }

    /// The slot a lease answer for `key` goes to: the pool's own, else a vacant one, else the
    /// first candidate (evicting its pool: counted, its tokens dropped).
    fn slot_for(&self, key: &str, now: u64) -> String {
        let [first, second] = self.slots.candidates(key);
        let values = [&first, &second].map(|slot| self.host.get(slot).0);
        let at = |i: usize| values[i].as_deref();
        let chosen = (0..2)
            .find(|&i| slots::read(at(i), key).is_some())
            .or_else(|| (0..2).find(|&i| slots::vacant(at(i), now)));
        match chosen {
            Some(1) => second,
            Some(_) => first,
            None => {
                self.metrics.evicted.inc();
                first
            }
        }
    }

    /// Queues a background refill of `key` for the next root tick.
    fn queue_refill(&self, key: &str) {
        self.queue_root_lease(key, None);
    }

    /// Queues a lease for `key` (for request `for_request` in exact mode) on the next root
    /// tick, hurried to [`SOON`].
    fn queue_root_lease(&self, key: &str, for_request: Option<u32>) {
        let mut queued = self.root_leases.borrow_mut();
        if !queued.iter().any(|(k, r)| k == key && *r == for_request) {
            queued.push((key.to_string(), for_request));
        }
        if !self.hurried.replace(true) {
            self.host.set_tick_period(SOON);
        }
    }

    /// A lease for `key` (for `for_request`) is in flight or queued.
    fn lease_pending(&self, key: &str, for_request: Option<u32>) -> bool {
        let in_flight =
            (self.calls.borrow().values()).any(|c| c.key == key && c.for_request == for_request);
        in_flight || (self.root_leases.borrow().iter()).any(|(k, r)| k == key && *r == for_request)
    }

    /// Dispatches a lease for `key` from context `from` (whose answer it becomes); false when
    /// it could not be sent.
    fn lease(&self, key: &str, for_request: Option<u32>, from: u32) -> bool {
        let Some(descriptors) = self.descriptors.borrow().get(key).cloned() else {
            return false;
        };
        let want = match for_request {
            Some(_) => 1,
            None => self.pool(key).map_or(self.config.lease_size, |p| {
                p.lease_size.clamp(1, self.config.lease_size)
            }),
        };
        let message = lease_request(&self.config.domain, &descriptors, want).encode_to_vec();
        let sent = self.host.grpc_call(GrpcCall {
            cluster: &self.config.cluster,
            service: SERVICE,
            method: LEASE_METHOD,
            message: &message,
            timeout: Duration::from_millis(self.config.timeout_ms),
        });
        match sent {
            Ok(token) => {
                self.metrics.leases.inc();
                let call = Call {
                    key: key.to_string(),
                    from,
                    sent_ms: self.host.now_ms(),
                    for_request,
                };
                self.calls.borrow_mut().insert(token, call);
                true
            }
            Err(e) => {
                let why = format!("cannot call {} on {}: {e}", SERVICE, self.config.cluster);
                log(&self.host, PLUGIN, Level::Warn, &why);
                false
            }
        }
    }

    /// A lease answered (in the context that sent it): the pool takes the tokens, and this
    /// worker's waiters for it are decided again.
    pub fn on_lease_response(&self, token: u32, status: u32, size: usize) {
        let Some(call) = self.calls.borrow_mut().remove(&token) else {
            return;
        };
        let answer = match status {
            0 => self
                .host
                .buffer(filter_core::host::Buffer::GrpcReceive, 0, size)
                .or_else(|| (size == 0).then(Vec::new))
                .and_then(|b| LeaseResponse::decode(b.as_slice()).ok()),
            _ => None,
        };
        let Some(answer) = answer else {
            self.metrics.lease_failures.inc();
            self.clear_refill(&call.key);
            return self.fail_waiters(&call.key, call.for_request);
        };
        self.metrics.granted.add(i64::from(answer.granted));
        self.record(&call.key, &answer, call.sent_ms);
        if LeaseMode::try_from(answer.mode) == Ok(LeaseMode::Exact) {
            // An exact grant is one request's: the one that asked, or (the first lease of a
            // pool, before its mode was known) the longest-waiting one.
            let owner = call.for_request.or_else(|| self.first_waiter(&call.key));
            if let Some(ctx) = owner {
                self.finish_exact(ctx, &answer);
            }
        }
        self.retry_waiters(&call.key);
    }

    /// Writes the answer into the pool (retried against concurrent writers).
    fn record(&self, key: &str, answer: &LeaseResponse, sent_ms: u64) {
        let now = self.host.now_ms();
        let slot = self.slot_for(key, now);
        let written = update_shared(&self.host, &slot, CAS_ATTEMPTS, |bytes| {
            let next = pool::apply(slots::read(bytes, key), answer, now, sent_ms);
            (Some(slots::write(&next, key)), ())
        });
        if written.is_none() && answer.granted > 0 {
            // The tokens are lost (never spent): under-admission, never over-admission.
            self.metrics.tokens_lost.add(i64::from(answer.granted));
        }
    }

    /// A background lease failed: the next request past the low water mark may try again.
    fn clear_refill(&self, key: &str) {
        for slot in self.slots.candidates(key) {
            let _ = update_shared(&self.host, &slot, CAS_ATTEMPTS, |bytes| {
                match slots::read(bytes, key) {
                    Some(mut p) if p.refill_until_ms != 0 => {
                        p.refill_until_ms = 0;
                        (Some(slots::write(&p, key)), ())
                    }
                    _ => (None, ()),
                }
            });
        }
    }

    /// An exact lease answered: its token (if any) is spent by the request that asked.
    fn finish_exact(&self, context_id: u32, answer: &LeaseResponse) {
        let Some(waiter) = self.waiting.borrow_mut().remove(&context_id) else {
            return; // the request is gone: its token is lost (under-admission)
        };
        if !self.host.set_effective_context(context_id) {
            return;
        }
        let now = self.host.now_ms();
        let limit = pool::tightest(answer, now).unwrap_or_default();
        if answer.granted > 0 {
            self.metrics.admitted.inc();
            self.resume(context_id, rate_headers(limit, 0));
        } else {
            let retry = answer.retry_after_ms.max(1);
            self.refuse(retry, limit, &waiter.limit, waiter.request_id.as_deref());
        }
    }

    fn is_exact(&self, key: &str) -> bool {
        self.pool(key).is_some_and(|p| p.mode == pool::Mode::Exact)
    }

    fn first_waiter(&self, key: &str) -> Option<u32> {
        (self.waiting.borrow().iter())
            .filter(|(_, w)| w.key == key)
            .min_by_key(|(id, w)| (w.deadline_ms, **id))
            .map(|(id, _)| *id)
    }

    /// Decides again every waiter of `key` on this worker (a lease answered).
    fn retry_waiters(&self, key: &str) {
        let ids: Vec<u32> = (self.waiting.borrow().iter())
            .filter(|(_, w)| w.key == key)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let take = self.take(key);
            if matches!(take, Some(Take::Wait)) {
                // Still nothing: wait on a lease in flight or queued, or queue one for the
                // root to send (exact pools: one per request).
                let for_request = self.is_exact(key).then_some(id);
                if !self.lease_pending(key, for_request) {
                    self.queue_root_lease(key, for_request);
                }
                continue;
            }
            let Some(waiter) = self.waiting.borrow_mut().remove(&id) else {
                continue;
            };
            if !self.host.set_effective_context(id) {
                continue;
            }
            self.decide_waiter(id, take, &waiter);
        }
    }

    fn decide_waiter(&self, id: u32, take: Option<Take>, waiter: &Waiter) {
        let request_id = waiter.request_id.as_deref();
        match take {
            Some(Take::Admit {
                refill,
                limit,
                left,
            }) => {
                self.metrics.admitted.inc();
                if refill {
                    self.queue_refill(&waiter.key);
                }
                self.resume(id, rate_headers(limit, left));
            }
            Some(Take::Refuse {
                retry_after_ms,
                limit,
            }) => {
                self.refuse(retry_after_ms, limit, &waiter.limit, request_id);
            }
            Some(Take::Wait) | None => {
                self.fail_answered(request_id, Some(id));
            }
        }
    }

    /// The lease for `key` failed: this worker's waiters for it get the failure mode now.
    fn fail_waiters(&self, key: &str, for_request: Option<u32>) {
        let ids: Vec<u32> = (self.waiting.borrow().iter())
            .filter(|(id, w)| w.key == key && for_request.is_none_or(|r| r == **id))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(waiter) = self.waiting.borrow_mut().remove(&id) else {
                continue;
            };
            if self.host.set_effective_context(id) {
                let _ = self.fail_answered(waiter.request_id.as_deref(), Some(id));
            }
        }
    }

    /// The root tick (in the root context): queued background refills go out, and waiters
    /// whose time is up get the failure mode.
    pub fn tick(&self) {
        if self.hurried.replace(false) {
            self.host.set_tick_period(TICK);
        }
        for (key, for_request) in std::mem::take(&mut *self.root_leases.borrow_mut()) {
            let gone = for_request.is_some_and(|id| !self.waiting.borrow().contains_key(&id));
            if gone {
                continue;
            }
            if !self.lease(&key, for_request, ROOT) {
                self.clear_refill(&key);
                self.fail_waiters(&key, for_request);
            }
        }
        let now = self.host.now_ms();
        let due: Vec<u32> = (self.waiting.borrow().iter())
            .filter(|(_, w)| w.deadline_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(waiter) = self.waiting.borrow_mut().remove(&id) else {
                continue;
            };
            if self.host.set_effective_context(id) {
                self.metrics.timeouts.inc();
                let _ = self.fail_answered(waiter.request_id.as_deref(), Some(id));
            }
        }
    }

    /// The request is over: it no longer waits.
    pub fn on_done(&self, context_id: u32) {
        self.waiting.borrow_mut().remove(&context_id);
        self.resumed_headers.borrow_mut().remove(&context_id);
        // Its calls' answers will not come (proxy-wasm drops them with the request): the
        // other waiters of those pools must not wait on them.
        let mut calls = self.calls.borrow_mut();
        let gone: Vec<u32> = (calls.iter())
            .filter(|(_, c)| c.from == context_id)
            .map(|(t, _)| *t)
            .collect();
        let keys: Vec<String> = gone
            .iter()
            .filter_map(|t| calls.remove(t))
            .map(|c| c.key)
            .collect();
        drop(calls);
        for key in keys {
            self.retry_waiters(&key);
        }
    }

    /// A request whose tokens could not be had: the failure mode, decided now.
    fn fail(&self, request_id: Option<&str>) -> Verdict {
        match self.fail_answered(request_id, None) {
            true => Verdict::Answered,
            false => Verdict::Continue(None),
        }
    }

    /// Applies the failure mode to the current request; true when it was answered. `paused`:
    /// the request's context id when it waits (an admitted request must be let go).
    fn fail_answered(&self, request_id: Option<&str>, paused: Option<u32>) -> bool {
        self.metrics.failures.inc();
        match self.config.failure_mode {
            FailureMode::Allow => {
                if let Some(id) = paused {
                    self.let_go(id);
                }
                false
            }
            FailureMode::Deny => {
                audit::record(&self.host, PLUGIN, UNAVAILABLE_ERROR, None);
                self.host.send_json_error(
                    503,
                    UNAVAILABLE_ERROR,
                    UNAVAILABLE_MESSAGE,
                    request_id,
                    &[("retry-after", "1")],
                );
                true
            }
        }
    }

    /// Lets a paused request go on, with its rate headers for the response.
    fn resume(&self, context_id: u32, headers: Option<RateHeaders>) {
        if let Some(h) = headers {
            self.resumed_headers.borrow_mut().insert(context_id, h);
        }
        self.let_go(context_id);
    }

    /// The rate headers of a request admitted after waiting (taken once).
    pub fn take_resumed_headers(&self, context_id: u32) -> Option<RateHeaders> {
        self.resumed_headers.borrow_mut().remove(&context_id)
    }

    /// The 429: JSON body, `Retry-After` and the limit's `X-RateLimit-*`; the audit log gets
    /// the refusing limit's `name`.
    fn refuse(&self, retry_after_ms: u64, limit: LimitView, name: &str, request_id: Option<&str>) {
        self.metrics.refused.inc();
        audit::record(&self.host, PLUGIN, LIMITED_ERROR, Some(name));
        let retry = retry_after_ms.div_ceil(1000).max(1).to_string();
        let mut headers = vec![("retry-after", retry)];
        headers.extend(limit_headers(limit, 0, self.host.now_ms()));
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.host
            .send_json_error(429, LIMITED_ERROR, LIMITED_MESSAGE, request_id, &pairs);
    }
}

/// The error body's `error` for a request over a limit.
pub const LIMITED_ERROR: &str = "rate_limited";
pub const LIMITED_MESSAGE: &str = "too many requests";
/// The error body's `error` when tokens could not be had and the failure mode denies.
pub const UNAVAILABLE_ERROR: &str = "rate_limit_unavailable";
pub const UNAVAILABLE_MESSAGE: &str = "the rate limit service could not be reached";

fn rate_headers(limit: LimitView, left: u32) -> Option<RateHeaders> {
    (limit.requests_per_unit > 0).then_some(RateHeaders {
        limit,
        remaining: limit.remaining.saturating_add(u64::from(left)),
    })
}

/// `X-RateLimit-Limit` (`<n>, <n>;w=<seconds>`, as Envoy's DRAFT_VERSION_03 headers),
/// `-Remaining` and `-Reset` (seconds); nothing when no limit is known.
pub fn limit_headers(limit: LimitView, remaining: u64, now_ms: u64) -> Vec<(&'static str, String)> {
    if limit.requests_per_unit == 0 {
        return Vec::new();
    }
    let n = limit.requests_per_unit;
    let reset = limit.reset_at_ms.saturating_sub(now_ms).div_ceil(1000);
    vec![
        (
            "x-ratelimit-limit",
            format!("{n}, {n};w={}", limit.unit_seconds),
        ),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ]
}

fn lease_request(domain: &str, descriptors: &[Descriptor], want: u32) -> LeaseRequest {
    LeaseRequest {
        domain: domain.to_string(),
        descriptors: descriptors
            .iter()
            .map(|d| pb::Descriptor {
                entries: d
                    .iter()
                    .map(|(k, v)| pb::descriptor::Entry {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            })
            .collect(),
        want,
    }
}
