//! One worker's view of every remote provider's keys, synchronized through a shared store
//! (proxy-wasm shared data in the VM, a map in tests) with compare-and-swap, so one fetch
//! serves every worker and garbage from the IdP never replaces good keys.

use crate::config::{FilterConfig, IntrospectionConfig, KeySource, RemoteJwks};
use crate::engine::KeyStore;
use crate::introspection::{Answer, Lookup};
use crate::jwks::{JwksOrigin, KeyPolicy, KeySet};
use crate::jwks_cache::{decode, encode, JwksState, KeyRequest};
use crate::rules::ProviderId;
use std::sync::Arc;

use filter_core::shared::update_shared;
pub use filter_core::shared::SharedStore;

/// Starts a JWKS fetch (the glue's `dispatch_http_call`). False if it could not be sent.
pub trait Fetcher {
    fn fetch(&mut self, provider: ProviderId, remote: &RemoteJwks) -> bool;
    /// The introspection answer for `token`, cached or by a call ([`KeyStore::introspect`]).
    fn introspect(
        &mut self,
        _provider: ProviderId,
        _config: &IntrospectionConfig,
        _token: &str,
        _now_ms: u64,
    ) -> Lookup {
        Lookup::Known(Answer::Unavailable)
    }
}

#[derive(Debug, Clone, Default)]
struct View {
    generation: u64,
    set: Option<Arc<KeySet>>,
    usable_until_ms: u64,
    state: JwksState,
}

/// Outcome of a finished fetch, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// The new keys are in use; `skipped` says which keys of the document were refused and
    /// why (by index and `kid`, never key material), for the log and `jwks.keys_skipped`.
    Accepted { skipped: Vec<String> },
    /// The body was not a usable JWKS (or the fetch failed): keys unchanged, backoff.
    Rejected(String),
}

#[derive(Debug)]
pub struct WorkerKeys {
    config: Arc<FilterConfig>,
    views: Vec<View>,
    prefix: String,
}

/// How often a lost compare-and-swap is retried before giving up for this round.
const CAS_ATTEMPTS: usize = 4;

impl WorkerKeys {
    /// `prefix` namespaces the shared-data keys (plugin name), so two plugins never mix keys.
    pub fn new(config: Arc<FilterConfig>, prefix: &str) -> Self {
        let views = vec![View::default(); config.providers.len()];
        Self {
            config,
            views,
            prefix: prefix.to_string(),
        }
    }

    fn key(&self, p: ProviderId) -> String {
        let name = self
            .config
            .providers
            .get(p)
            .map_or("", |pr| pr.name.as_str());
        format!("{}.jwks.{name}", self.prefix)
    }

    fn key_policy(&self, p: ProviderId) -> KeyPolicy {
        self.config
            .providers
            .get(p)
            .map(|pr| pr.key_policy)
            .unwrap_or_default()
    }

    fn remote(&self, p: ProviderId) -> Option<&RemoteJwks> {
        match &self.config.providers.get(p)?.keys {
            KeySource::Remote(r) => Some(r),
            KeySource::Local(_) | KeySource::Introspect(_) => None,
        }
    }

    /// Re-reads shared data; returns the providers whose keys changed in this worker.
    pub fn sync(&mut self, shared: &dyn SharedStore) -> Vec<ProviderId> {
        let mut changed = Vec::new();
        for p in 0..self.views.len() {
            let Some(policy) = self.remote(p).map(|r| r.policy) else {
                continue;
            };
            let (Some(bytes), _) = shared.get(&self.key(p)) else {
                continue;
            };
            let Some((state, body)) = decode(&bytes) else {
                continue;
            };
            let policy_keys = self.key_policy(p);
            let view = &mut self.views[p];
            if state.generation != view.generation && state.fetched_at_ms.is_some() {
                // Only validated bodies are ever written, so this parse succeeds; if it did
                // not, the previous keys stay.
                if let Ok(set) = KeySet::parse_with(body, JwksOrigin::Remote, &policy_keys) {
                    view.set = Some(Arc::new(set));
                    view.generation = state.generation;
                    changed.push(p);
                }
            }
            view.usable_until_ms = state.usable_until_ms(&policy).unwrap_or(0);
            view.state = state;
        }
        changed
    }

    /// Applies `f` to the provider's shared state with compare-and-swap; returns its result
    /// once the write landed, `None` if every attempt lost the race.
    fn update<T>(
        &mut self,
        shared: &dyn SharedStore,
        p: ProviderId,
        new_body: Option<&[u8]>,
        mut f: impl FnMut(&mut JwksState) -> Option<T>,
    ) -> Option<T> {
        let key = self.key(p);
        let (result, state) = update_shared(shared, &key, CAS_ATTEMPTS, |bytes| {
            let (mut state, body) = match bytes.and_then(decode) {
                Some((s, b)) => (s, b.to_vec()),
                None => (JwksState::default(), Vec::new()),
            };
            let Some(result) = f(&mut state) else {
                return (None, None);
            };
            let body = new_body.map_or(body, <[u8]>::to_vec);
            (Some(encode(&state, &body)), Some((result, state)))
        })
        .flatten()?;
        self.views[p].state = state;
        Some(result)
    }

    /// The tick: pick up other workers' fetches, and start due background refreshes.
    pub fn tick(
        &mut self,
        shared: &dyn SharedStore,
        fetcher: &mut dyn Fetcher,
        now_ms: u64,
    ) -> Vec<ProviderId> {
        let changed = self.sync(shared);
        for p in 0..self.views.len() {
            let Some(remote) = self.remote(p).cloned() else {
                continue;
            };
            if !self.views[p].state.due_for_refresh(&remote.policy, now_ms) {
                continue;
            }
            let leased = self.update(shared, p, None, |s| {
                s.due_for_refresh(&remote.policy, now_ms)
                    .then(|| s.begin_fetch(&remote.policy, now_ms))
            });
            if leased.is_some() && !fetcher.fetch(p, &remote) {
                self.on_fetch_result(shared, p, None, now_ms);
            }
        }
        changed
    }

    /// A fetch finished: `body` is the 200 response, `None` for any failure. Only a body that
    /// parses into usable keys replaces the keys.
    pub fn on_fetch_result(
        &mut self,
        shared: &dyn SharedStore,
        p: ProviderId,
        body: Option<&[u8]>,
        now_ms: u64,
    ) -> FetchResult {
        let Some(policy) = self.remote(p).map(|r| r.policy) else {
            return FetchResult::Rejected("not a remote provider".into());
        };
        let parsed = match body {
            Some(b) => KeySet::parse_with(b, JwksOrigin::Remote, &self.key_policy(p))
                .map_err(|e| e.to_string()),
            None => Err("fetch failed".to_string()),
        };
        match parsed {
            Ok(set) => {
                self.update(shared, p, body, |s| {
                    s.on_fetch_success(now_ms);
                    Some(())
                });
                self.sync(shared);
                FetchResult::Accepted {
                    skipped: set.skipped,
                }
            }
            Err(why) => {
                self.update(shared, p, None, |s| {
                    s.on_fetch_failure(&policy, now_ms);
                    Some(())
                });
                FetchResult::Rejected(why)
            }
        }
    }

    /// Whether a fetch for `p` is still in flight (as of the last read).
    pub fn fetch_in_flight(&self, p: ProviderId, now_ms: u64) -> bool {
        self.views
            .get(p)
            .is_some_and(|v| v.state.fetch_in_flight(now_ms))
    }

    pub fn generation(&self, p: ProviderId) -> u64 {
        self.views.get(p).map_or(0, |v| v.generation)
    }

    /// The [`KeyStore`] the engine uses for one request.
    pub fn store<'a>(
        &'a mut self,
        shared: &'a dyn SharedStore,
        fetcher: &'a mut dyn Fetcher,
    ) -> WorkerKeyStore<'a> {
        WorkerKeyStore {
            keys: self,
            shared,
            fetcher,
        }
    }
}

pub struct WorkerKeyStore<'a> {
    keys: &'a mut WorkerKeys,
    shared: &'a dyn SharedStore,
    fetcher: &'a mut dyn Fetcher,
}

impl std::fmt::Debug for WorkerKeyStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerKeyStore").finish_non_exhaustive()
    }
}

impl KeyStore for WorkerKeyStore<'_> {
    fn keys(&self, p: ProviderId, now_ms: u64) -> Option<Arc<KeySet>> {
        let v = self.keys.views.get(p)?;
        if now_ms < v.usable_until_ms {
            v.set.clone()
        } else {
            None
        }
    }

    fn newer_keys(&mut self, p: ProviderId, now_ms: u64) -> Option<Arc<KeySet>> {
        let before = self.keys.generation(p);
        self.keys.sync(self.shared);
        if self.keys.generation(p) == before {
            return None;
        }
        self.keys(p, now_ms)
    }

    fn request_keys(&mut self, p: ProviderId, now_ms: u64) -> KeyRequest {
        let Some(remote) = self.keys.remote(p).cloned() else {
            return KeyRequest::Refused;
        };
        // Another worker may have installed the keys since the last tick.
        self.keys.sync(self.shared);
        let decision = self
            .keys
            .update(self.shared, p, None, |s| {
                Some(s.request_keys(&remote.policy, now_ms))
            })
            .unwrap_or(KeyRequest::Wait);
        if decision == KeyRequest::Fetch && !self.fetcher.fetch(p, &remote) {
            self.keys.on_fetch_result(self.shared, p, None, now_ms);
            return KeyRequest::Refused;
        }
        decision
    }

    fn introspect(
        &mut self,
        p: ProviderId,
        config: &IntrospectionConfig,
        token: &str,
        now_ms: u64,
    ) -> Lookup {
        self.fetcher.introspect(p, config, token, now_ms)
    }
}
