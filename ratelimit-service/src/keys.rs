//! Storage key names, built here and nowhere else.
//!
//! A bucket key is
//!
//! ```text
//! rl:{<domain>}:<limit-tag>:<key1>=<value1>|<key2>=<value2>...
//! ```
//!
//! * `{<domain>}` is the Redis Cluster hash tag. Every key of one `ShouldRateLimit` call belongs
//!   to the same domain, so one call's keys always share a slot and the single Lua script can run
//!   on them atomically. The same bucket always gets the same key whichever call touches it. The
//!   price: one domain lives on one cluster slot (one primary); spread load over several domains
//!   if one domain outgrows a Redis primary.
//! * `<limit-tag>` identifies the limit, not only the descriptor: the algorithm letter (`t` token
//!   bucket, `f` fixed window, `s` sliding window) and the period in seconds, plus `.<n>` for the
//!   n-th extra limit on the same node (`rate_limits`), or `o<period>.<rpu>` for a limit override
//!   sent by Envoy. Changing a limit's algorithm or period therefore starts a fresh bucket instead
//!   of misreading the old one's state.
//! * The entries are the request's actual values (a key-only or wildcard config node still counts
//!   each distinct value separately, as envoyproxy/ratelimit does).
//!
//! Domain, keys and values are escaped (`%`, `{`, `}`, `|`, `=`, `:` and control bytes become
//! `%XX`) so that distinct descriptors can never produce the same key and a domain can never
//! break out of its hash tag.

use crate::bucket::Algorithm;
use std::fmt::Write as _;

/// Prefix shared by all keys of one configured limit: `rl:{domain}:<tag>:`.
pub fn limit_prefix(domain: &str, algorithm: Algorithm, period_secs: u64, index: usize) -> String {
    let mut out = String::with_capacity(domain.len() + 24);
    out.push_str("rl:{");
    escape_into(&mut out, domain);
    out.push_str("}:");
    out.push(algorithm.key_letter());
    let _ = write!(out, "{period_secs}");
    if index > 0 {
        let _ = write!(out, ".{index}");
    }
    out.push(':');
    out
}

/// Prefix for a limit override that Envoy sent in the request.
pub fn override_prefix(domain: &str, period_secs: u64, requests_per_unit: u32) -> String {
    let mut out = String::with_capacity(domain.len() + 32);
    out.push_str("rl:{");
    escape_into(&mut out, domain);
    let _ = write!(out, "}}:o{period_secs}.{requests_per_unit}:");
    out
}

/// Full bucket key: a limit prefix followed by the escaped descriptor entries.
pub fn bucket_key<'a>(prefix: &str, entries: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push('|');
        }
        escape_into(&mut out, key);
        out.push('=');
        escape_into(&mut out, value);
    }
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, '%' | '{' | '}' | '|' | '=' | ':') || c.is_ascii_control() {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_and_tagged_by_domain() {
        let prefix = limit_prefix("mongo_cps", Algorithm::TokenBucket, 60, 0);
        assert_eq!(prefix, "rl:{mongo_cps}:t60:");
        let key = bucket_key(
            &prefix,
            [("database", "users"), ("user", "alice")].into_iter(),
        );
        assert_eq!(key, "rl:{mongo_cps}:t60:database=users|user=alice");
        assert_eq!(
            limit_prefix("d", Algorithm::SlidingWindow, 1, 2),
            "rl:{d}:s1.2:"
        );
        assert_eq!(override_prefix("d", 3600, 7), "rl:{d}:o3600.7:");
    }

    #[test]
    fn escaping_keeps_keys_distinct_and_tag_intact() {
        let prefix = limit_prefix("a}b{", Algorithm::FixedWindow, 1, 0);
        assert_eq!(prefix, "rl:{a%7Db%7B}:f1:");
        let one = bucket_key(&prefix, [("k", "a|b=c")].into_iter());
        let two = bucket_key(&prefix, [("k", "a"), ("b", "c")].into_iter());
        assert_ne!(one, two);
        assert_eq!(one, "rl:{a%7Db%7B}:f1:k=a%7Cb%3Dc");
    }
}
