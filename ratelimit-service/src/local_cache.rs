//! Local over-limit cache: buckets known to be empty until an instant, answered from memory.
//!
//! Exact, not approximate: a request that meets an empty enforced bucket is rejected and
//! consumes nothing anywhere, and nothing but time refills a bucket, so until the instant the
//! store reported ("empty for `empty_ms`", measured from before the call was sent) every request
//! touching that bucket is OVER_LIMIT whatever any other gateway does. The cache is cleared when
//! the configuration changes, since limits may have changed. The one other way tokens come back
//! is a QuotaLease `Return`: this instance forgets the buckets it gives tokens back to; a Return
//! through another instance can only make this one refuse a request the bucket could have
//! admitted until the entry expires (under-admission, never over-admission).

use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct OverLimitCache {
    entries: Option<Mutex<LruCache<String, Instant>>>,
}

impl OverLimitCache {
    /// `capacity` 0 disables the cache.
    pub fn new(capacity: usize) -> Self {
        OverLimitCache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// How much longer `key` is known to be empty, if it is.
    pub fn empty_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut entries = self.entries.as_ref()?.lock().ok()?;
        let until = *entries.get(key)?;
        if until > now {
            Some(until - now)
        } else {
            entries.pop(key);
            None
        }
    }

    pub fn insert(&self, key: &str, until: Instant) {
        if let Some(Ok(mut entries)) = self.entries.as_ref().map(|e| e.lock()) {
            entries.put(key.to_owned(), until);
        }
    }

    /// Forgets one key (tokens were given back to its bucket).
    pub fn forget(&self, key: &str) {
        if let Some(Ok(mut entries)) = self.entries.as_ref().map(|e| e.lock()) {
            entries.pop(key);
        }
    }

    pub fn clear(&self) {
        if let Some(Ok(mut entries)) = self.entries.as_ref().map(|e| e.lock()) {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        match self.entries.as_ref().map(|e| e.lock()) {
            Some(Ok(entries)) => entries.len(),
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let cache = OverLimitCache::new(2);
        let now = Instant::now();
        cache.insert("a", now + Duration::from_millis(100));
        assert_eq!(cache.empty_for("a", now), Some(Duration::from_millis(100)));
        assert_eq!(cache.empty_for("a", now + Duration::from_millis(100)), None);
        assert!(cache.is_empty());
        for key in ["x", "y", "z"] {
            cache.insert(key, now + Duration::from_secs(1));
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.empty_for("x", now),
            None,
            "least recently used evicted"
        );
        cache.forget("y");
        assert_eq!(cache.empty_for("y", now), None, "forgotten");
        let disabled = OverLimitCache::new(0);
        disabled.insert("a", now + Duration::from_secs(1));
        assert_eq!(disabled.empty_for("a", now), None);
        assert!(!disabled.is_enabled());
    }
}
