//! Where pools live in shared data: a fixed set of `max_pools` slots, so an Envoy's memory for
//! pools is bounded however many descriptor lists it sees (Envoy never frees a shared-data key:
//! one key per pool would grow for ever with user ids, addresses or tenants).
//!
//! A pool may sit in either of two slots picked by its key (a digest, see
//! [`crate::descriptors::pool_key`]); a slot's value is the pool followed by its key, so a slot
//! another pool took over reads as no pool. A lease answer goes to the pool's slot, else to a
//! vacant one (empty, or a pool whose lease and refusal have both run out), else it evicts the
//! first candidate's pool: its tokens are dropped (under-admission, counted), never spent twice.
//! Two pools' tokens never mix: every read compares the key.

use crate::pool::Pool;

/// `max_pools` when the configuration does not say.
pub const DEFAULT_SLOTS: u32 = 16_384;

/// The slots of one plugin (its shared-data key prefix).
#[derive(Debug, Clone)]
pub struct Slots {
    prefix: String,
    count: u32,
}

impl Slots {
    pub fn new(prefix: &str, count: u32) -> Slots {
        Slots {
            prefix: prefix.to_string(),
            count: count.max(1),
        }
    }

    /// The two shared-data keys `pool_key`'s pool may sit in, preferred first.
    pub fn candidates(&self, pool_key: &str) -> [String; 2] {
        let digest = pool_key.rsplit(':').next().unwrap_or(pool_key);
        let part = |range: std::ops::Range<usize>| {
            digest
                .get(range)
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .unwrap_or_else(|| fnv(pool_key))
        };
        let first = part(0..8) % self.count;
        let mut second = part(8..16) % self.count;
        if second == first && self.count > 1 {
            second = (first + 1) % self.count;
        }
        [first, second].map(|slot| format!("{}:slot:{slot}", self.prefix))
    }
}

/// The pool in a slot's value if it is `pool_key`'s.
pub fn read(value: Option<&[u8]>, pool_key: &str) -> Option<Pool> {
    let value = value?;
    let (pool, key) = value.split_at_checked(Pool::BYTES)?;
    (key == pool_key.as_bytes())
        .then(|| Pool::decode(pool))
        .flatten()
}

/// A slot's value holding `pool` for `pool_key`.
pub fn write(pool: &Pool, pool_key: &str) -> Vec<u8> {
    let mut value = pool.encode();
    value.extend_from_slice(pool_key.as_bytes());
    value
}

/// Whether a slot's value may be taken over at `now`: empty, unreadable, or a pool with no
/// live tokens, refusal or refill.
pub fn vacant(value: Option<&[u8]>, now: u64) -> bool {
    let pool = value
        .and_then(|v| v.get(..Pool::BYTES))
        .and_then(Pool::decode);
    match pool {
        None => true,
        Some(p) => now >= p.expires_ms.max(p.empty_until_ms).max(p.refill_until_ms),
    }
}

/// A fallback hash for a key that is not a hex digest (32-bit FNV-1a).
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Mode;

    const KEY: &str = "ratelimit:pool:00000005000000090123456789abcdef";

    #[test]
    fn a_pool_has_two_slots_from_its_digest() {
        let slots = Slots::new("ratelimit", 16);
        assert_eq!(
            slots.candidates(KEY),
            [
                "ratelimit:slot:5".to_string(),
                "ratelimit:slot:9".to_string()
            ]
        );
        // The same slot twice becomes two neighbours.
        let same = "ratelimit:pool:0000000300000013";
        assert_eq!(
            slots.candidates(same),
            [
                "ratelimit:slot:3".to_string(),
                "ratelimit:slot:4".to_string()
            ]
        );
        let odd = Slots::new("p", 1000).candidates("not a digest");
        assert!(odd.iter().all(|k| k.starts_with("p:slot:")));
    }

    #[test]
    fn a_slot_reads_as_its_own_pool_only() {
        let pool = Pool {
            mode: Mode::Leased,
            tokens: 7,
            expires_ms: 5_000,
            ..Pool::default()
        };
        let value = write(&pool, KEY);
        assert_eq!(read(Some(&value), KEY), Some(pool));
        assert_eq!(read(Some(&value), "ratelimit:pool:other"), None);
        assert_eq!(read(None, KEY), None);
        assert_eq!(read(Some(&value[..10]), KEY), None);
    }

    #[test]
    fn a_slot_is_vacant_once_its_pool_has_nothing_live() {
        let pool = Pool {
            mode: Mode::Leased,
            tokens: 3,
            expires_ms: 5_000,
            empty_until_ms: 7_000,
            ..Pool::default()
        };
        let value = write(&pool, KEY);
        assert!(!vacant(Some(&value), 4_999));
        assert!(!vacant(Some(&value), 6_000), "still refusing");
        assert!(vacant(Some(&value), 7_000));
        assert!(vacant(None, 0));
        assert!(vacant(Some(b"garbage"), 0));
    }
}
