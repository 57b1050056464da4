//! Caching aggregated answers: an endpoint with a `cache` block keeps its complete answers for
//! `ttl_ms`, in the VM (one cache per Envoy worker), bounded in entries and bytes.
//!
//! The key is what the answer was made of: every leg's call (cluster, method, path, authority
//! and each forwarded header but the trace headers), in order. Two requests share an entry only
//! when the stage would have sent exactly the same calls, so an answer built for one user or
//! tenant (their verified `x-user-id`/`x-tenant-id` go to the legs) is never served to
//! another. Only complete answers are kept; a partial one (`_errors`) never is.

use crate::config::Leg;
use crate::request::TRACE_HEADERS;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// An endpoint's cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub ttl_ms: u64,
    pub max_entries: usize,
    /// The bodies kept, together.
    pub max_bytes: usize,
}

/// The cache key of one request: its legs' calls, as the stage would send them.
pub fn key(calls: &[(&Leg, Vec<(String, String)>)]) -> String {
    let mut key = String::new();
    for (leg, headers) in calls {
        key.push_str(&leg.cluster);
        for (name, value) in headers {
            // Each request has its own: they say nothing about the answer.
            if TRACE_HEADERS.contains(&name.as_str()) {
                continue;
            }
            // Names and values cannot hold NUL or LF (Envoy refuses them): unambiguous.
            key.push('\n');
            key.push_str(name);
            key.push('\0');
            key.push_str(value);
        }
        key.push('\n');
        key.push('\n');
    }
    key
}

/// A kept answer.
#[derive(Debug, Clone)]
pub struct Hit {
    pub body: Rc<str>,
    /// How long ago it was made, in whole seconds (the `age` header).
    pub age_s: u64,
}

#[derive(Debug)]
struct Entry {
    body: Rc<str>,
    stored_ms: u64,
    expires_ms: u64,
    /// Its place in the insertion order.
    seq: u64,
}

/// One endpoint's answers on one worker.
#[derive(Debug)]
pub struct Cache {
    policy: CachePolicy,
    entries: HashMap<String, Entry>,
    /// Insertion order (oldest first): what goes when the cache is full.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    bytes: usize,
}

impl Cache {
    pub fn new(policy: CachePolicy) -> Self {
        Cache {
            policy,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
        }
    }

    /// The answer kept for `key`, if still fresh at `now_ms` (an expired one is dropped).
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<Hit> {
        let entry = self.entries.get(key)?;
        if entry.expires_ms <= now_ms {
            self.remove(key);
            return None;
        }
        Some(Hit {
            body: Rc::clone(&entry.body),
            age_s: now_ms.saturating_sub(entry.stored_ms) / 1000,
        })
    }

    /// Keeps `body` for `key` from `now_ms`, making room by dropping the oldest entries. A body
    /// larger than the whole cache is not kept.
    pub fn put(&mut self, key: String, body: &str, now_ms: u64) {
        self.remove(&key);
        if body.len() > self.policy.max_bytes {
            return;
        }
        while self.entries.len() >= self.policy.max_entries
            || self.bytes + body.len() > self.policy.max_bytes
        {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.bytes -= gone.body.len();
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += body.len();
        self.order.insert(seq, key.clone());
        let entry = Entry {
            body: Rc::from(body),
            stored_ms: now_ms,
            expires_ms: now_ms.saturating_add(self.policy.ttl_ms),
            seq,
        };
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &str) {
        if let Some(gone) = self.entries.remove(key) {
            self.order.remove(&gone.seq);
            self.bytes -= gone.body.len();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of the bodies kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, max_bytes: usize) -> Cache {
        Cache::new(CachePolicy {
            ttl_ms: 1000,
            max_entries,
            max_bytes,
        })
    }

    #[test]
    fn an_answer_is_served_until_it_expires() {
        let mut c = cache(4, 100);
        c.put("k".into(), "{}", 10_000);
        let hit = c.get("k", 10_999).unwrap();
        assert_eq!((&*hit.body, hit.age_s), ("{}", 0));
        assert!(c.get("k", 11_000).is_none(), "expired at stored + ttl");
        assert!(c.is_empty() && c.bytes() == 0, "and dropped");
        assert!(c.get("other", 10_000).is_none());
    }

    #[test]
    fn the_oldest_entries_make_room_by_count_and_by_bytes() {
        let mut c = cache(2, 10);
        c.put("a".into(), "aaa", 0);
        c.put("b".into(), "bbb", 0);
        c.put("c".into(), "ccc", 0);
        assert!(c.get("a", 1).is_none(), "a went: two entries at most");
        assert_eq!(c.len(), 2);
        c.put("d".into(), "dddddddd", 0);
        assert!(
            c.get("b", 1).is_none() && c.get("c", 1).is_none(),
            "10 bytes at most"
        );
        assert_eq!((c.len(), c.bytes()), (1, 8));
        c.put("huge".into(), "x".repeat(11).as_str(), 0);
        assert!(
            c.get("huge", 1).is_none(),
            "larger than the cache: not kept"
        );
        assert!(c.get("d", 1).is_some(), "and nothing evicted for it");
        // Replacing an entry does not count it twice.
        c.put("d".into(), "dd", 5);
        assert_eq!((c.len(), c.bytes()), (1, 2));
    }

    #[test]
    fn the_key_is_the_calls_without_their_trace_headers() {
        let config = crate::config::Config::parse(
            br#"{"endpoints": {"e": {"legs": [{"name": "u", "cluster": "users", "path": "/u"}]}}}"#,
        )
        .unwrap();
        let leg = &config.binding.policy(0).unwrap().legs[0];
        let call = |user: &str, request_id: &str| {
            vec![(
                leg,
                vec![
                    (":path".to_string(), "/u".to_string()),
                    ("x-user-id".to_string(), user.to_string()),
                    ("x-request-id".to_string(), request_id.to_string()),
                ],
            )]
        };
        assert_eq!(key(&call("ann", "r-1")), key(&call("ann", "r-2")));
        assert_ne!(key(&call("ann", "r-1")), key(&call("bob", "r-1")));
    }
}
