//! Token revocation: each provider with a `revocation` block keeps a list of revoked `jti`s,
//! synced on a tick from ratelimit-service's `edgegate.revocation.v1.RevocationService`
//! (`ListRevocations` since the last version seen) into shared data, so one worker's call
//! serves every worker and a request checks revocation locally with no network hop.
//!
//! Shared state per provider (`<plugin>.revoked.<provider>`, JSON): the list, its version, when
//! it was last synced, and a lease so only one worker calls at a time. Updates use
//! compare-and-swap. When the service cannot be reached the last list stays in force (fail
//! open, like an unreachable rate-limit service with `failure_mode_deny: false`); its age is
//! exported as a gauge so an operator can alert on it.

use crate::config::{FilterConfig, Provider};
use crate::engine::Revocation;
use crate::keystore::SharedStore;
use crate::rules::ProviderId;
use filter_core::shared::update_shared;
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The generated protocol types (`proto/edgegate/revocation/v1/revocation.proto`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/edgegate.revocation.v1.rs"));
}

pub const SERVICE: &str = "edgegate.revocation.v1.RevocationService";
pub const LIST_METHOD: &str = "ListRevocations";

/// A provider's `revocation` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// The Envoy cluster (HTTP/2) of the revocation service.
    pub cluster: String,
    pub sync_interval_ms: u64,
    pub timeout_ms: u64,
}

/// Starts a `ListRevocations` call (the glue's `dispatch_grpc_call`). False if not sent.
pub trait RevocationCaller {
    fn list(&mut self, provider: ProviderId, config: &RevocationConfig, request: &[u8]) -> bool;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct SharedList {
    /// The service's version this list reflects.
    version: u64,
    /// When the list was last synced successfully (0: never).
    synced_at_ms: u64,
    /// No call before this (after a success: the interval; after a failure: the same).
    next_sync_ms: u64,
    /// A worker is calling until then; the others wait.
    lease_until_ms: u64,
    /// Revoked `jti` -> its expiry (Unix seconds).
    revoked: HashMap<String, u64>,
}

#[derive(Debug, Default)]
struct View {
    cas: Option<u32>,
    list: SharedList,
}

/// One worker's copy of every provider's revocation list.
#[derive(Debug)]
pub struct WorkerRevocations {
    config: Arc<FilterConfig>,
    prefix: String,
    views: Vec<View>,
}

/// What a finished call did, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResult {
    /// The list now holds this many entries.
    Synced(usize),
    Failed(String),
}

const CAS_ATTEMPTS: usize = 4;

impl WorkerRevocations {
    pub fn new(config: Arc<FilterConfig>, prefix: &str) -> Self {
        let views = config.providers.iter().map(|_| View::default()).collect();
        Self {
            config,
            prefix: prefix.to_string(),
            views,
        }
    }

    /// True when some provider checks revocation (the glue only ticks then).
    pub fn enabled(&self) -> bool {
        self.config.providers.iter().any(|p| p.revocation.is_some())
    }

    fn key(&self, p: ProviderId) -> String {
        let name = self
            .config
            .providers
            .get(p)
            .map_or("", |pr| pr.name.as_str());
        format!("{}.revoked.{name}", self.prefix)
    }

    fn provider_config(&self, p: ProviderId) -> Option<&RevocationConfig> {
        self.config.providers.get(p)?.revocation.as_ref()
    }

    /// Re-reads shared data into this worker's view (only when it changed).
    fn refresh_view(&mut self, shared: &dyn SharedStore, p: ProviderId) {
        let (bytes, cas) = shared.get(&self.key(p));
        if cas.is_some() && cas == self.views[p].cas {
            return;
        }
        let list = bytes
            .as_deref()
            .and_then(|b| serde_json::from_slice::<SharedList>(b).ok())
            .unwrap_or_default();
        self.views[p] = View { cas, list };
    }

    /// Applies `f` to the provider's shared list with compare-and-swap; `None` when `f`
    /// declines or every attempt lost the race.
    fn update<T>(
        &mut self,
        shared: &dyn SharedStore,
        p: ProviderId,
        mut f: impl FnMut(&mut SharedList) -> Option<T>,
    ) -> Option<T> {
        let key = self.key(p);
        let (result, list) = update_shared(shared, &key, CAS_ATTEMPTS, |bytes| {
            let mut list = bytes
                .and_then(|b| serde_json::from_slice::<SharedList>(b).ok())
                .unwrap_or_default();
            let Some(result) = f(&mut list) else {
                return (None, None);
            };
            match serde_json::to_vec(&list) {
                Ok(encoded) => (Some(encoded), Some((result, list))),
                Err(_) => (None, None),
            }
        })
        .flatten()?;
        // The next read sees a new CAS and reloads; keep the list meanwhile.
        self.views[p].list = list;
        Some(result)
    }

    /// The tick: pick up lists other workers synced; start a due call if no one else is.
    pub fn tick(
        &mut self,
        shared: &dyn SharedStore,
        caller: &mut dyn RevocationCaller,
        now_ms: u64,
    ) {
        for p in 0..self.views.len() {
            let Some(rc) = self.provider_config(p).cloned() else {
                continue;
            };
            self.refresh_view(shared, p);
            let due = |l: &SharedList| now_ms >= l.next_sync_ms && now_ms >= l.lease_until_ms;
            if !due(&self.views[p].list) {
                continue;
            }
            let lease_until = now_ms.saturating_add(rc.timeout_ms).saturating_add(1_000);
            let since = self.update(shared, p, |l| {
                due(l).then(|| {
                    l.lease_until_ms = lease_until;
                    l.version
                })
            });
            let Some(since_version) = since else { continue };
            let request = pb::ListRevocationsRequest { since_version }.encode_to_vec();
            if !caller.list(p, &rc, &request) {
                self.on_response(shared, p, None, now_ms);
            }
        }
    }

    /// A call finished: `body` is the `ListRevocationsResponse` message, `None` on any failure.
    pub fn on_response(
        &mut self,
        shared: &dyn SharedStore,
        p: ProviderId,
        body: Option<&[u8]>,
        now_ms: u64,
    ) -> SyncResult {
        let Some(rc) = self.provider_config(p).cloned() else {
            return SyncResult::Failed("provider has no revocation".into());
        };
        let next = now_ms.saturating_add(rc.sync_interval_ms);
        let decoded = match body.map(pb::ListRevocationsResponse::decode) {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(format!("undecodable ListRevocationsResponse: {e}")),
            None => Err("the revocation service did not answer".to_string()),
        };
        let response = match decoded {
            Ok(r) => r,
            Err(why) => {
                self.update(shared, p, |l| {
                    l.lease_until_ms = 0;
                    l.next_sync_ms = next;
                    Some(())
                });
                return SyncResult::Failed(why);
            }
        };
        let issuer = self
            .config
            .providers
            .get(p)
            .and_then(|pr| pr.claims.issuer.clone());
        let now_secs = now_ms / 1000;
        let merged = self.update(shared, p, |l| {
            if response.full {
                l.revoked.clear();
            }
            for r in &response.revocations {
                if issuer.as_deref().is_some_and(|i| i != r.issuer) || r.jti.is_empty() {
                    continue;
                }
                let exp = l.revoked.entry(r.jti.clone()).or_insert(0);
                *exp = (*exp).max(r.expires_at);
            }
            l.revoked.retain(|_, exp| *exp >= now_secs);
            l.version = response.version;
            l.synced_at_ms = now_ms;
            l.next_sync_ms = next;
            l.lease_until_ms = 0;
            Some(l.revoked.len())
        });
        match merged {
            Some(n) => SyncResult::Synced(n),
            None => SyncResult::Failed("lost every compare-and-swap on the shared list".into()),
        }
    }

    /// Milliseconds since the oldest provider list was synced (`None`: nothing to sync, or
    /// never synced yet).
    pub fn age_ms(&self, now_ms: u64) -> Option<u64> {
        (0..self.views.len())
            .filter(|p| self.provider_config(*p).is_some())
            .map(|p| self.views[p].list.synced_at_ms)
            .filter(|at| *at > 0)
            .map(|at| now_ms.saturating_sub(at))
            .max()
    }
}

impl Revocation for WorkerRevocations {
    fn is_revoked(&self, provider: &Provider, claims: &Map<String, Value>) -> bool {
        if provider.revocation.is_none() {
            return false;
        }
        let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
            return false;
        };
        self.config
            .provider_index(&provider.name)
            .and_then(|p| self.views.get(p))
            .is_some_and(|v| v.list.revoked.contains_key(jti))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Mem(RefCell<HashMap<String, (Vec<u8>, u32)>>);

    impl SharedStore for Mem {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.0.borrow().get(key) {
                Some((v, c)) => (Some(v.clone()), Some(*c)),
                None => (None, None),
            }
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let mut m = self.0.borrow_mut();
            let current = m.get(key).map(|(_, c)| *c);
            if cas.is_some() && cas != current {
                return false;
            }
            m.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
            true
        }
    }

    #[derive(Default)]
    struct Calls(Vec<(ProviderId, u64)>);

    impl RevocationCaller for Calls {
        fn list(&mut self, p: ProviderId, _: &RevocationConfig, request: &[u8]) -> bool {
            let r = pb::ListRevocationsRequest::decode(request).unwrap();
            self.0.push((p, r.since_version));
            true
        }
    }

    fn config() -> Arc<FilterConfig> {
        let cfg = serde_json::json!({"providers": {"idp": {
            "issuer": "https://idp",
            "local_jwks": {"inline": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}},
            "revocation": {"cluster": "revocation", "sync_interval": "5s", "timeout": "1s"}}}});
        Arc::new(FilterConfig::parse(cfg.to_string().as_bytes()).unwrap())
    }

    fn response(version: u64, full: bool, entries: &[(&str, &str, u64)]) -> Vec<u8> {
        pb::ListRevocationsResponse {
            revocations: entries
                .iter()
                .map(|(iss, jti, exp)| pb::Revocation {
                    issuer: iss.to_string(),
                    jti: jti.to_string(),
                    expires_at: *exp,
                    version,
                })
                .collect(),
            version,
            full,
        }
        .encode_to_vec()
    }

    fn claims(jti: &str) -> Map<String, Value> {
        serde_json::json!({"jti": jti}).as_object().unwrap().clone()
    }

    const T: u64 = 1_700_000_000_000;

    #[test]
    fn one_worker_syncs_for_all_and_lists_merge_by_version() {
        let cfg = config();
        let provider = cfg.providers[0].clone();
        let shared = Mem::default();
        let (mut w1, mut w2) = (
            WorkerRevocations::new(cfg.clone(), "jwt"),
            WorkerRevocations::new(cfg.clone(), "jwt"),
        );
        let (mut c1, mut c2) = (Calls::default(), Calls::default());
        w1.tick(&shared, &mut c1, T);
        w2.tick(&shared, &mut c2, T + 10);
        assert_eq!((c1.0.clone(), c2.0.len()), (vec![(0, 0)], 0), "one lease");
        let exp = T / 1000 + 600;
        let body = response(
            3,
            true,
            &[("https://idp", "a", exp), ("https://other", "b", exp)],
        );
        assert_eq!(
            w1.on_response(&shared, 0, Some(&body), T + 20),
            SyncResult::Synced(1)
        );
        w2.tick(&shared, &mut c2, T + 30);
        assert!(
            w2.is_revoked(&provider, &claims("a")),
            "worker 2 picks it up"
        );
        assert!(
            !w2.is_revoked(&provider, &claims("b")),
            "another issuer's jti"
        );
        assert!(!w2.is_revoked(&provider, &serde_json::Map::new()), "no jti");
        assert_eq!(w2.age_ms(T + 1030), Some(1010));
        // Not due before the interval; then an incremental call since version 3.
        w2.tick(&shared, &mut c2, T + 4_000);
        assert!(c2.0.is_empty());
        w2.tick(&shared, &mut c2, T + 5_100);
        assert_eq!(c2.0, vec![(0, 3)]);
        let inc = response(4, false, &[("https://idp", "c", exp)]);
        w2.on_response(&shared, 0, Some(&inc), T + 5_200);
        w1.tick(&shared, &mut c1, T + 5_300);
        assert!(w1.is_revoked(&provider, &claims("a")) && w1.is_revoked(&provider, &claims("c")));
        // A full answer replaces (the store was reset); expired entries are dropped.
        w1.tick(&shared, &mut c1, T + 10_300);
        let reset = response(
            1,
            true,
            &[("https://idp", "d", exp), ("https://idp", "old", 5)],
        );
        assert_eq!(
            w1.on_response(&shared, 0, Some(&reset), T + 10_400),
            SyncResult::Synced(1)
        );
        assert!(!w1.is_revoked(&provider, &claims("a")));
        assert!(w1.is_revoked(&provider, &claims("d")));
    }

    #[test]
    fn failures_keep_the_list_and_retry_after_the_interval() {
        let cfg = config();
        let provider = cfg.providers[0].clone();
        let shared = Mem::default();
        let mut w = WorkerRevocations::new(cfg.clone(), "jwt");
        let mut c = Calls::default();
        w.tick(&shared, &mut c, T);
        let exp = T / 1000 + 600;
        w.on_response(
            &shared,
            0,
            Some(&response(1, true, &[("https://idp", "a", exp)])),
            T + 5,
        );
        w.tick(&shared, &mut c, T + 5_010);
        assert!(matches!(
            w.on_response(&shared, 0, None, T + 5_020),
            SyncResult::Failed(_)
        ));
        assert!(matches!(
            w.on_response(&shared, 0, Some(b"\xff\xff garbage"), T + 5_030),
            SyncResult::Failed(_)
        ));
        assert!(w.is_revoked(&provider, &claims("a")), "the last list stays");
        w.tick(&shared, &mut c, T + 6_000);
        assert_eq!(c.0.len(), 2, "no retry storm");
        w.tick(&shared, &mut c, T + 10_100);
        assert_eq!(c.0.len(), 3);
        // A worker that took the lease and vanished blocks others only until the lease ends.
        let mut other = WorkerRevocations::new(cfg, "jwt");
        let mut oc = Calls::default();
        other.tick(&shared, &mut oc, T + 10_200);
        assert!(oc.0.is_empty());
        other.tick(&shared, &mut oc, T + 12_200);
        assert_eq!(oc.0.len(), 1);
    }
}
