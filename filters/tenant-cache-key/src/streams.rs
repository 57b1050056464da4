//! In-flight caps on long-lived streams (WebSockets, gRPC streams), per consumer and per tenant.
//!
//! Rate limits count requests per minute; a stream opened within every limit can then be held
//! for hours, and a few hundred held streams fill a cluster's circuit breakers for every tenant.
//! A stream is counted where it starts (request headers, after the tenant is resolved) and
//! released when it ends (the HTTP context's `on_done` / `on_log`, whatever ended it).
//!
//! The counts live in proxy-wasm shared data, which every worker's VM of the Envoy process sees:
//! one value per tenant ([`StreamClaim::key`]) listing its open streams, each with its consumer
//! (a digest of the consumer header), its holder (this plugin instance and the request's
//! context id) and a lease expiry. Every change is a compare-and-swap with retry
//! ([`update_shared`]). A holder that stops without releasing (a VM that crashed) cannot say so:
//! its entries lapse when their lease runs out ([`LEASE_MS`]), while live holders renew theirs on
//! the root tick ([`StreamTracker::tick`]) and restore any entry that went missing.

use crate::config::{StreamsConfig, DEFAULT_CONSUMER_HEADER, MAX_STREAMS_CAP};
use crate::sources::{header_name, Reserved};
pub use filter_core::shared::{update_shared, SharedStore};
use filter_core::{ConfigError, HeaderMap, RequestMatcher};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How long an entry counts without being renewed: the longest a crashed holder's streams keep
/// their slots.
pub const LEASE_MS: u64 = 60_000;
/// How often a live holder renews its entries (a quarter of the lease: three renewals may fail
/// before a live stream's entry lapses).
pub const RENEW_EVERY_MS: u64 = 15_000;
/// Compare-and-swap attempts for one change before giving up (the stream is then refused with
/// 503, a release is retried on the next tick).
pub const CAS_ATTEMPTS: usize = 16;
/// The prefix of every shared-data key this module writes.
pub const KEY_PREFIX: &str = "tenant_cache_key.streams.";
/// `retry-after` (seconds) on a refusal: a held stream ends when its holder closes it, so this
/// only keeps clients from retrying in a tight loop.
pub const RETRY_AFTER_SECONDS: &str = "5";
/// The error body's `error` field when a cap refuses a stream (status 429).
pub const TOO_MANY_STREAMS_ERROR: &str = "too_many_streams";
/// The error body's `error` field when the count could not be updated (status 503).
pub const STREAMS_UNAVAILABLE_ERROR: &str = "streams_unavailable";
/// The error body's `message` with [`STREAMS_UNAVAILABLE_ERROR`].
pub const STREAMS_UNAVAILABLE_MESSAGE: &str =
    "the stream could not be counted against its limits; try again";

/// The compiled `streams` block: which requests are streams, and the caps.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    routes: Vec<RequestMatcher>,
    per_consumer: u32,
    per_tenant: u32,
    consumer_header: String,
}

impl StreamLimits {
    /// Validates the block; errors name the field relative to it.
    /// `by_policy`: route policies say which routes are streams, so `routes` must be empty.
    pub fn compile(
        c: &StreamsConfig,
        reserved: &Reserved<'_>,
        by_policy: bool,
    ) -> Result<Self, ConfigError> {
        if c.routes.is_empty() && !by_policy {
            return Err(ConfigError::new(
                "routes",
                "at least one route is required: without one no stream is ever counted",
            ));
        }
        if !c.routes.is_empty() && by_policy {
            return Err(ConfigError::new(
                "routes",
                "with policies, a route policy's `stream` says which routes are streams",
            ));
        }
        let routes = c
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.matches
                    .compile()
                    .map_err(|e| e.within(&format!("routes[{i}].match")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if c.per_consumer == 0 {
            return Err(ConfigError::new("per_consumer", "must be at least 1"));
        }
        if c.per_tenant == 0 || c.per_tenant > MAX_STREAMS_CAP {
            return Err(ConfigError::new(
                "per_tenant",
                format!("{} is out of range (1 to {MAX_STREAMS_CAP})", c.per_tenant),
            ));
        }
        if c.per_consumer > c.per_tenant {
            return Err(ConfigError::new(
                "per_consumer",
                format!(
                    "{} is more than per_tenant ({}): a consumer's streams are its tenant's too",
                    c.per_consumer, c.per_tenant
                ),
            ));
        }
        let consumer_header = header_name(
            "consumer_header",
            c.consumer_header
                .as_deref()
                .unwrap_or(DEFAULT_CONSUMER_HEADER),
        )?;
        if consumer_header == reserved.tenant_header
            || Some(consumer_header.as_str()) == reserved.plan_header
        {
            return Err(ConfigError::new(
                "consumer_header",
                format!(
                    "{consumer_header:?} is the tenant or plan header: the consumer is the user \
                     within the tenant (e.g. \"x-user-id\", set by jwt_auth)"
                ),
            ));
        }
        Ok(StreamLimits {
            routes,
            per_consumer: c.per_consumer,
            per_tenant: c.per_tenant,
            consumer_header,
        })
    }

    pub fn per_consumer(&self) -> u32 {
        self.per_consumer
    }

    pub fn per_tenant(&self) -> u32 {
        self.per_tenant
    }

    /// The stream a request opens, when it is on a stream route: its tenant as written to the
    /// tenant header (None: no tenant) and the consumer header's value (None: absent or empty;
    /// the stream then counts against the tenant's cap only).
    pub fn claim(&self, headers: &HeaderMap, tenant: Option<&str>) -> Option<StreamClaim> {
        if !self.routes.iter().any(|r| r.matches(headers)) {
            return None;
        }
        Some(self.claim_stream(headers, tenant))
    }

    /// The stream a request on a stream route opens (its route policy said so).
    pub fn claim_stream(&self, headers: &HeaderMap, tenant: Option<&str>) -> StreamClaim {
        let consumer = headers
            .get(&self.consumer_header)
            .filter(|v| !v.is_empty())
            .map(ConsumerId::of);
        StreamClaim {
            tenant: tenant.map(str::to_string),
            consumer,
        }
    }
}

/// Who a counted stream belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClaim {
    /// The tenant as the tenant header carries it (`~id` for a tenant only named by the host or
    /// path, so it never shares a count with the proven one); None: the request has no tenant.
    pub tenant: Option<String>,
    pub consumer: Option<ConsumerId>,
}

impl StreamClaim {
    /// The shared-data key of the tenant's open streams.
    pub fn key(&self) -> String {
        match &self.tenant {
            Some(t) => format!("{KEY_PREFIX}tenant/{t}"),
            None => format!("{KEY_PREFIX}anonymous"),
        }
    }
}

/// The consumer header's value as stored: 16 bytes of its SHA-256 (fixed size, whatever the
/// header holds; never the value itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerId([u8; 16]);

/// Stored for a stream without a consumer.
const NO_CONSUMER: [u8; 16] = [0; 16];

impl ConsumerId {
    pub fn of(value: &str) -> ConsumerId {
        let digest = Sha256::digest(value.as_bytes());
        let mut id = [0u8; 16];
        for (to, from) in id.iter_mut().zip(digest.iter()) {
            *to = *from;
        }
        ConsumerId(id)
    }
}

/// Which cap refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Consumer,
    Tenant,
}

impl Limit {
    /// The error body's `limit` field.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Consumer => "consumer",
            Limit::Tenant => "tenant",
        }
    }

    /// The error body's `message`.
    pub fn message(self) -> &'static str {
        match self {
            Limit::Consumer => "this consumer already holds as many open streams as it may",
            Limit::Tenant => "this tenant already holds as many open streams as it may",
        }
    }
}

/// What [`StreamTracker::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted; released when the stream ends.
    Admitted,
    /// A cap is reached: nothing was counted (answer 429).
    Refused { limit: Limit, max: u32 },
    /// Every compare-and-swap lost the race: nothing was counted (answer 503).
    Unavailable,
}

/// One open stream in a tenant's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    consumer: [u8; 16],
    holder: u64,
    expires_ms: u64,
}

const ENTRY_BYTES: usize = 32;
const LEDGER_VERSION: u8 = 1;

/// A tenant's open streams as stored: a version byte, then 32 bytes per entry (consumer digest,
/// holder, expiry; big-endian).
#[derive(Debug, Default)]
struct Ledger(Vec<Entry>);

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, b| (n << 8) | u64::from(*b))
}

impl Ledger {
    /// A value this version did not write reads as empty (it is replaced on the next change).
    fn decode(bytes: Option<&[u8]>) -> Ledger {
        let Some((&LEDGER_VERSION, rest)) = bytes.and_then(<[u8]>::split_first) else {
            return Ledger::default();
        };
        if rest.len() % ENTRY_BYTES != 0 {
            return Ledger::default();
        }
        Ledger(
            rest.chunks_exact(ENTRY_BYTES)
                .map(|c| {
                    let mut consumer = [0u8; 16];
                    consumer.copy_from_slice(&c[..16]);
                    Entry {
                        consumer,
                        holder: be_u64(&c[16..24]),
                        expires_ms: be_u64(&c[24..32]),
                    }
                })
                .collect(),
        )
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.0.len() * ENTRY_BYTES);
        out.push(LEDGER_VERSION);
        for e in &self.0 {
            out.extend_from_slice(&e.consumer);
            out.extend_from_slice(&e.holder.to_be_bytes());
            out.extend_from_slice(&e.expires_ms.to_be_bytes());
        }
        out
    }

    /// Drops the entries whose lease ran out; returns how many.
    fn prune(&mut self, now_ms: u64) -> u64 {
        let before = self.0.len();
        self.0.retain(|e| e.expires_ms > now_ms);
        (before - self.0.len()) as u64
    }

    fn consumer_count(&self, consumer: [u8; 16]) -> usize {
        self.0.iter().filter(|e| e.consumer == consumer).count()
    }
}

/// A stream this plugin instance holds a slot for.
#[derive(Debug, Clone)]
struct Held {
    key: String,
    consumer: [u8; 16],
}

/// One plugin instance's (root context's) side of the counts: which of its requests hold a
/// slot, releases still to make, lease renewal. Time and shared data are passed in.
#[derive(Debug)]
pub struct StreamTracker {
    limits: StreamLimits,
    /// Tells this instance's entries from other workers' (context ids repeat across VMs).
    instance: u32,
    held: BTreeMap<u32, Held>,
    /// Releases that lost every compare-and-swap: retried on each tick (and the lease ends
    /// them at the latest).
    pending: Vec<(String, u64)>,
    next_renew_ms: u64,
    expired: u64,
}

impl StreamTracker {
    /// `instance` should differ between the plugin instances sharing the data (a random number).
    pub fn new(limits: StreamLimits, instance: u32) -> Self {
        StreamTracker {
            limits,
            instance,
            held: BTreeMap::new(),
            pending: Vec::new(),
            next_renew_ms: 0,
            expired: 0,
        }
    }

    fn holder(&self, context_id: u32) -> u64 {
        (u64::from(self.instance) << 32) | u64::from(context_id)
    }

    /// Streams this instance holds slots for.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Entries of stopped holders removed (their lease ran out) since the last call.
    pub fn take_expired(&mut self) -> u64 {
        std::mem::take(&mut self.expired)
    }

    /// Counts the stream of request `context_id` if both caps allow it. A refused stream
    /// counts nothing and so has nothing to release. Admitting a context twice counts once.
    pub fn admit(
        &mut self,
        store: &dyn SharedStore,
        context_id: u32,
        claim: &StreamClaim,
        now_ms: u64,
    ) -> Admission {
        if self.held.contains_key(&context_id) {
            return Admission::Admitted;
        }
        let key = claim.key();
        let consumer = claim.consumer.map_or(NO_CONSUMER, |c| c.0);
        let holder = self.holder(context_id);
        let (per_consumer, per_tenant) = (self.limits.per_consumer, self.limits.per_tenant);
        let decided = update_shared(store, &key, CAS_ATTEMPTS, |bytes| {
            let mut ledger = Ledger::decode(bytes);
            let expired = ledger.prune(now_ms);
            let refused = if claim.consumer.is_some()
                && ledger.consumer_count(consumer) >= per_consumer as usize
            {
                Some((Limit::Consumer, per_consumer))
            } else if ledger.0.len() >= per_tenant as usize {
                Some((Limit::Tenant, per_tenant))
            } else {
                None
            };
            let admission = match refused {
                Some((limit, max)) => Admission::Refused { limit, max },
                None => {
                    ledger.0.push(Entry {
                        consumer,
                        holder,
                        expires_ms: now_ms.saturating_add(LEASE_MS),
                    });
                    Admission::Admitted
                }
            };
            // A refusal writes only to drop lapsed entries (so each is counted once).
            let write = admission == Admission::Admitted || expired > 0;
            (write.then(|| ledger.encode()), (admission, expired))
        });
        let Some((admission, expired)) = decided else {
            return Admission::Unavailable;
        };
        self.expired += expired;
        if admission == Admission::Admitted {
            self.held.insert(context_id, Held { key, consumer });
        }
        admission
    }

    /// The request `context_id` ended (however: completed, reset, timed out, refused): releases
    /// its slot if it holds one. True exactly once per admitted stream.
    pub fn end(&mut self, store: &dyn SharedStore, context_id: u32, now_ms: u64) -> bool {
        let Some(held) = self.held.remove(&context_id) else {
            return false;
        };
        let holder = self.holder(context_id);
        if !self.release(store, &held.key, holder, now_ms) {
            self.pending.push((held.key, holder));
        }
        true
    }

    /// Removes `holder`'s entry from `key`; false when every compare-and-swap lost.
    fn release(&mut self, store: &dyn SharedStore, key: &str, holder: u64, now_ms: u64) -> bool {
        let done = update_shared(store, key, CAS_ATTEMPTS, |bytes| {
            let mut ledger = Ledger::decode(bytes);
            let expired = ledger.prune(now_ms);
            let found = ledger.0.iter().position(|e| e.holder == holder);
            if let Some(i) = found {
                ledger.0.swap_remove(i);
            }
            let write = found.is_some() || expired > 0;
            (write.then(|| ledger.encode()), expired)
        });
        match done {
            Some(expired) => {
                self.expired += expired;
                true
            }
            None => false,
        }
    }

    /// The root tick: retries releases that lost every race, and every [`RENEW_EVERY_MS`]
    /// renews the leases of the streams this instance holds, restoring any entry that went
    /// missing (two workers creating a tenant's value at once can overwrite each other's).
    pub fn tick(&mut self, store: &dyn SharedStore, now_ms: u64) {
        for (key, holder) in std::mem::take(&mut self.pending) {
            if !self.release(store, &key, holder, now_ms) {
                self.pending.push((key, holder));
            }
        }
        if now_ms < self.next_renew_ms {
            return;
        }
        self.next_renew_ms = now_ms.saturating_add(RENEW_EVERY_MS);
        let mut by_key: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (context_id, held) in &self.held {
            by_key.entry(held.key.clone()).or_default().push(Entry {
                consumer: held.consumer,
                holder: self.holder(*context_id),
                expires_ms: now_ms.saturating_add(LEASE_MS),
            });
        }
        for (key, mine) in by_key {
            let renewed = update_shared(store, &key, CAS_ATTEMPTS, |bytes| {
                let mut ledger = Ledger::decode(bytes);
                let expired = ledger.prune(now_ms);
                for m in &mine {
                    match ledger.0.iter_mut().find(|e| e.holder == m.holder) {
                        Some(e) => e.expires_ms = m.expires_ms,
                        None => ledger.0.push(*m),
                    }
                }
                (Some(ledger.encode()), expired)
            });
            match renewed {
                Some(expired) => self.expired += expired,
                // Try again on the next tick: the lease leaves time for a few attempts.
                None => self.next_renew_ms = now_ms,
            }
        }
    }
}
