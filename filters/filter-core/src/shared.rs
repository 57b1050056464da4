//! Proxy-wasm shared data as a seam: one store per `vm_id`, seen by every worker's VM, with a
//! version per value for compare-and-swap. The filters' cross-worker state (jwt_auth's keys and
//! revocation list, tenant_cache_key's stream counts) goes through [`SharedStore`] and
//! [`update_shared`], so it is tested natively against a map and runs against
//! [`crate::wasm::SharedData`] in Envoy.

/// Shared data as proxy-wasm offers it: values with a version for compare-and-swap.
pub trait SharedStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes if the version still is `cas` (`None`: unconditionally). False on a CAS miss.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// Read-modify-write of one shared value: `change` sees the current value and returns the value
/// to write (None: nothing to write) and its result. A write that lost the race to another
/// worker is retried from a fresh read, up to `attempts` times; None when every attempt lost.
pub fn update_shared<T>(
    store: &dyn SharedStore,
    key: &str,
    attempts: usize,
    mut change: impl FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T),
) -> Option<T> {
    for _ in 0..attempts {
        let (bytes, cas) = store.get(key);
        let (value, result) = change(bytes.as_deref());
        match value {
            None => return Some(result),
            Some(v) if store.set(key, &v, cas) => return Some(result),
            Some(_) => {}
        }
    }
    None
}
