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
//!   each distinct value separately, as envoyproxy/ratelimit does), except under a
//!   `share_threshold` wildcard, whose pattern stands for the value (`path=/api/*`): every
//!   matching value shares that one bucket, as there. No other descriptor can produce that key:
//!   a request whose value is the pattern itself matches the same wildcard.
//!
//! Domain, keys and values are escaped (`%`, `{`, `}`, `|`, `=`, `:` and control bytes become
//! `%XX`) so that distinct descriptors can never produce the same key and a domain can never
//! break out of its hash tag.
//!
//! Token revocations (see [`crate::revocation`]) use four keys that share the hash tag
//! `{revocations}`, so one script reaches all of them on Redis Cluster (one slot, one primary):
//!
//! ```text
//! rv:{revocations}:version     STRING  the store version (never expires)
//! rv:{revocations}:entries     HASH    <id> -> <record>
//! rv:{revocations}:by_version  ZSET    <record>, scored by the version that last changed it
//! rv:{revocations}:by_expiry   ZSET    <id>, scored by expires_at (Unix seconds)
//! ```
//!
//! where `<id>` is `<byte length of issuer>:<issuer><jti>` (the length prefix keeps every
//! (issuer, jti) pair distinct without escaping) and `<record>` is `<expires_at>:<id>`.

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

/// The keys of the revocation store, in the order the revocation scripts take them.
pub const REVOCATION_VERSION: &str = "rv:{revocations}:version";
pub const REVOCATION_ENTRIES: &str = "rv:{revocations}:entries";
pub const REVOCATION_BY_VERSION: &str = "rv:{revocations}:by_version";
pub const REVOCATION_BY_EXPIRY: &str = "rv:{revocations}:by_expiry";

/// `<byte length of issuer>:<issuer><jti>`: one revoked token.
pub fn revocation_id(issuer: &str, jti: &str) -> String {
    let mut out = String::with_capacity(issuer.len() + jti.len() + 8);
    let _ = write!(out, "{}:{issuer}{jti}", issuer.len());
    out
}

/// Splits a revocation record `<expires_at>:<issuer length>:<issuer><jti>` into
/// `(expires_at, issuer, jti)`; `None` if it is not one.
pub fn parse_revocation_record(record: &[u8]) -> Option<(u64, String, String)> {
    let text = std::str::from_utf8(record).ok()?;
    let (expires_at, rest) = text.split_once(':')?;
    let (issuer_len, rest) = rest.split_once(':')?;
    let expires_at = expires_at.parse().ok()?;
    let issuer_len: usize = issuer_len.parse().ok()?;
    let issuer = rest.get(..issuer_len)?;
    let jti = rest.get(issuer_len..)?;
    Some((expires_at, issuer.to_owned(), jti.to_owned()))
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

    #[test]
    fn revocation_ids_are_distinct_and_records_parse_back() {
        assert_eq!(revocation_id("https://idp", "abc"), "11:https://idpabc");
        assert_ne!(revocation_id("ab", "c"), revocation_id("a", "bc"));
        let record = format!("1700000000:{}", revocation_id("iss:1", "j:ti"));
        assert_eq!(
            parse_revocation_record(record.as_bytes()),
            Some((1_700_000_000, "iss:1".to_owned(), "j:ti".to_owned()))
        );
        let unicode = format!("5:{}", revocation_id("é", "ü"));
        assert_eq!(
            parse_revocation_record(unicode.as_bytes()),
            Some((5, "é".to_owned(), "ü".to_owned()))
        );
        for bad in ["", "x:1:a", "1:9:short", "1:x:a", "-1:1:a", "1"] {
            assert_eq!(parse_revocation_record(bad.as_bytes()), None, "{bad}");
        }
        // A length that splits a multi-byte character is not a record.
        assert_eq!(parse_revocation_record("1:1:éx".as_bytes()), None);
        // Every key carries the one hash tag.
        for key in [
            REVOCATION_VERSION,
            REVOCATION_ENTRIES,
            REVOCATION_BY_VERSION,
            REVOCATION_BY_EXPIRY,
        ] {
            assert!(key.starts_with("rv:{revocations}:"), "{key}");
        }
    }
}
