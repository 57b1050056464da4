//! In-memory revocations (`--store memory`): one mutex-guarded set with a version index and an
//! expiry index, bounded by a maximum of live entries. Time comes from an injectable clock.

use super::{
    wants_full_list, Revocation, RevocationError, RevocationList, RevocationStore, RevokeRequest,
    Revoked,
};
use crate::storage::memory::Clock;
use crate::storage::StoreError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

/// (issuer, jti)
type TokenId = (String, String);

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires_at: u64,
    version: u64,
}

#[derive(Default)]
struct State {
    version: u64,
    entries: HashMap<TokenId, Entry>,
    by_version: BTreeMap<u64, TokenId>,
    by_expiry: BTreeSet<(u64, TokenId)>,
}

impl State {
    /// Drops every entry with `expires_at <= now`.
    fn prune(&mut self, now: u64) {
        while let Some((expires_at, _)) = self.by_expiry.first() {
            if *expires_at > now {
                break;
            }
            let Some((_, id)) = self.by_expiry.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&id) {
                self.by_version.remove(&entry.version);
            }
        }
    }
}

/// Revocations in process memory: lost on restart (callers then get a full, empty list).
pub struct MemoryRevocations {
    clock: Box<dyn Clock>,
    max_entries: usize,
    state: Mutex<State>,
}

impl MemoryRevocations {
    pub fn new(clock: impl Clock, max_entries: usize) -> Self {
        MemoryRevocations {
            clock: Box::new(clock),
            max_entries,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::permanent("in-memory revocation store lock poisoned"))
    }

    fn revoke_now(&self, request: &RevokeRequest) -> Result<Revoked, RevocationError> {
        let now_us = self.clock.now_us();
        let now = now_us / 1_000_000;
        request.validate(now)?;
        let mut state = self.lock()?;
        state.prune(now);
        let id = (request.issuer.clone(), request.jti.clone());
        match state.entries.get(&id).copied() {
            Some(entry) if entry.expires_at >= request.expires_at => {
                return Ok(Revoked {
                    version: state.version,
                    changed: false,
                    live: state.entries.len() as u64,
                });
            }
            Some(entry) => {
                state.by_version.remove(&entry.version);
                state.by_expiry.remove(&(entry.expires_at, id.clone()));
            }
            None if state.entries.len() >= self.max_entries => {
                return Err(RevocationError::Full {
                    max: self.max_entries,
                });
            }
            None => {}
        }
        let version = state.version.saturating_add(1).max(now_us);
        state.version = version;
        state.entries.insert(
            id.clone(),
            Entry {
                expires_at: request.expires_at,
                version,
            },
        );
        state.by_version.insert(version, id.clone());
        state.by_expiry.insert((request.expires_at, id));
        Ok(Revoked {
            version,
            changed: true,
            live: state.entries.len() as u64,
        })
    }

    fn list_now(&self, since_version: u64) -> Result<RevocationList, RevocationError> {
        let now = self.clock.now_us() / 1_000_000;
        let mut state = self.lock()?;
        state.prune(now);
        let full = wants_full_list(since_version, state.version);
        let from = if full {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(since_version)
        };
        let revocations = state
            .by_version
            .range((from, std::ops::Bound::Unbounded))
            .filter_map(|(version, id)| {
                let entry = state.entries.get(id)?;
                Some(Revocation {
                    issuer: id.0.clone(),
                    jti: id.1.clone(),
                    expires_at: entry.expires_at,
                    version: *version,
                })
            })
            .collect();
        Ok(RevocationList {
            revocations,
            version: state.version,
            full,
            live: state.entries.len() as u64,
        })
    }
}

impl RevocationStore for MemoryRevocations {
    async fn revoke(&self, request: &RevokeRequest) -> Result<Revoked, RevocationError> {
        self.revoke_now(request)
    }

    async fn list(&self, since_version: u64) -> Result<RevocationList, RevocationError> {
        self.list_now(since_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::ManualClock;

    const START_US: u64 = 1_700_000_000_000_000;
    const NOW: u64 = START_US / 1_000_000;

    fn revoke(store: &MemoryRevocations, jti: &str, expires_at: u64) -> Revoked {
        store
            .revoke_now(&RevokeRequest {
                issuer: "https://idp".into(),
                jti: jti.into(),
                expires_at,
            })
            .unwrap()
    }

    fn jtis(list: &RevocationList) -> Vec<(&str, u64)> {
        list.revocations
            .iter()
            .map(|r| (r.jti.as_str(), r.expires_at))
            .collect()
    }

    #[test]
    fn versions_start_at_the_clock_and_increase_by_one_within_a_microsecond() {
        let clock = ManualClock::new(START_US);
        let store = MemoryRevocations::new(clock.clone(), 10);
        let a = revoke(&store, "a", NOW + 60);
        assert_eq!(a.version, START_US);
        let b = revoke(&store, "b", NOW + 60);
        assert_eq!(b.version, START_US + 1);
        clock.advance_us(5_000_000);
        let c = revoke(&store, "c", NOW + 60);
        assert_eq!(c.version, START_US + 5_000_000);
        let list = store.list_now(0).unwrap();
        assert!(list.full);
        assert_eq!(list.version, c.version);
        assert_eq!(
            jtis(&list),
            [("a", NOW + 60), ("b", NOW + 60), ("c", NOW + 60)]
        );
        let since_a = store.list_now(a.version).unwrap();
        assert!(!since_a.full);
        assert_eq!(jtis(&since_a), [("b", NOW + 60), ("c", NOW + 60)]);
        assert!(store.list_now(c.version).unwrap().revocations.is_empty());
        // A caller ahead of the store (it was reset) gets everything.
        let ahead = store.list_now(c.version + 1).unwrap();
        assert!(ahead.full);
        assert_eq!(ahead.revocations.len(), 3);
    }

    #[test]
    fn re_revoking_keeps_the_later_expiry_and_moves_the_entry_forward() {
        let store = MemoryRevocations::new(ManualClock::new(START_US), 10);
        let first = revoke(&store, "a", NOW + 100);
        revoke(&store, "b", NOW + 100);
        let earlier = revoke(&store, "a", NOW + 50);
        assert!(!earlier.changed);
        assert_eq!(earlier.version, first.version + 1, "version unchanged");
        let later = revoke(&store, "a", NOW + 200);
        assert!(later.changed);
        assert_eq!(later.live, 2);
        let list = store.list_now(0).unwrap();
        assert_eq!(jtis(&list), [("b", NOW + 100), ("a", NOW + 200)]);
        assert_eq!(list.revocations[1].version, later.version);
        let since = store.list_now(first.version + 1).unwrap();
        assert_eq!(jtis(&since), [("a", NOW + 200)]);
    }

    #[test]
    fn expired_entries_leave_the_list_and_free_their_place() {
        let clock = ManualClock::new(START_US);
        let store = MemoryRevocations::new(clock.clone(), 2);
        revoke(&store, "short", NOW + 10);
        revoke(&store, "long", NOW + 1000);
        let full = store.revoke_now(&RevokeRequest {
            issuer: "https://idp".into(),
            jti: "third".into(),
            expires_at: NOW + 1000,
        });
        assert!(
            matches!(full, Err(RevocationError::Full { max: 2 })),
            "{full:?}"
        );
        // Re-revoking an existing entry is not a new entry: allowed when full.
        assert!(revoke(&store, "long", NOW + 2000).changed);
        clock.advance_us(10_000_000);
        let list = store.list_now(0).unwrap();
        assert_eq!(jtis(&list), [("long", NOW + 2000)]);
        assert_eq!(list.live, 1);
        assert!(revoke(&store, "third", NOW + 1000).changed);
    }

    #[test]
    fn validation_uses_the_store_clock() {
        let store = MemoryRevocations::new(ManualClock::new(START_US), 10);
        let err = store
            .revoke_now(&RevokeRequest {
                issuer: "i".into(),
                jti: "j".into(),
                expires_at: NOW,
            })
            .unwrap_err();
        assert!(matches!(err, RevocationError::Invalid(ref m) if m.contains("not in the future")));
        assert_eq!(store.list_now(0).unwrap().version, 0, "nothing changed");
    }
}
