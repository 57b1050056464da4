//! Response headers for shared caches: the tenant header merged into `Vary`, `Cache-Control:
//! private` for authenticated responses without a tenant (and, on the way to the client, for
//! every credentialed request), and per-route lifetimes.

use crate::config::{CacheRouteConfig, MAX_CACHE_SECONDS};
use filter_core::{ConfigError, RequestMatcher};

/// Statuses a route's lifetime is applied to: successful responses only, so errors are never
/// given a lifetime the upstream did not choose.
pub const TTL_STATUSES: [&str; 3] = ["200", "203", "204"];

/// A compiled `cache_routes` entry.
#[derive(Debug, Clone)]
pub struct CacheRoute {
    matcher: RequestMatcher,
    /// The `Cache-Control` value, built once.
    directives: String,
}

impl CacheRoute {
    pub fn compile(config: &CacheRouteConfig) -> Result<CacheRoute, ConfigError> {
        let matcher = match &config.matches {
            None => RequestMatcher::any(),
            Some(m) => m.compile().map_err(|e| e.within("match"))?,
        };
        if config.ttl == 0 || config.ttl > MAX_CACHE_SECONDS {
            return Err(ConfigError::new(
                "ttl",
                format!(
                    "{} is out of range (1 to {MAX_CACHE_SECONDS} seconds)",
                    config.ttl
                ),
            ));
        }
        let mut directives = format!("max-age={}", config.ttl);
        if let Some(swr) = config.stale_while_revalidate {
            if swr == 0 || swr > MAX_CACHE_SECONDS {
                return Err(ConfigError::new(
                    "stale_while_revalidate",
                    format!("{swr} is out of range (1 to {MAX_CACHE_SECONDS} seconds)"),
                ));
            }
            directives.push_str(&format!(", stale-while-revalidate={swr}"));
        }
        Ok(CacheRoute {
            matcher,
            directives,
        })
    }

    pub fn matcher(&self) -> &RequestMatcher {
        &self.matcher
    }

    pub fn directives(&self) -> &str {
        &self.directives
    }
}

/// Comma-separated list elements of every value of a header, trimmed, empty ones dropped.
fn elements<'a>(values: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// The `Vary` value that adds `name` to the existing values (all `vary` lines), or `None` when
/// nothing needs to change: `name` is already listed (any case), or `Vary: *` (which already
/// makes every request distinct). Duplicates are dropped case-insensitively; the first spelling
/// and the order are kept.
pub fn merge_vary(existing: &[&str], name: &str) -> Option<String> {
    let mut kept: Vec<&str> = Vec::new();
    for element in elements(existing) {
        if element == "*" || element.eq_ignore_ascii_case(name) {
            return None;
        }
        if !kept.iter().any(|k| k.eq_ignore_ascii_case(element)) {
            kept.push(element);
        }
    }
    kept.push(name);
    Some(kept.join(", "))
}

/// The `Cache-Control` value that keeps a response out of shared caches, or `None` when it
/// already is (`private` or `no-store`). `public`, `s-maxage` and a field-qualified
/// `private="..."` (which would let a shared cache store the rest) give way to plain `private`;
/// the other directives (e.g. `max-age` for the browser's own cache) are kept.
pub fn privatize(existing: &[&str]) -> Option<String> {
    let mut out = vec!["private"];
    for directive in elements(existing) {
        let name = directive.split('=').next().unwrap_or("").trim();
        let qualified = directive.contains('=');
        if name.eq_ignore_ascii_case("no-store")
            || (name.eq_ignore_ascii_case("private") && !qualified)
        {
            return None;
        }
        if name.eq_ignore_ascii_case("public")
            || name.eq_ignore_ascii_case("s-maxage")
            || name.eq_ignore_ascii_case("private")
        {
            continue;
        }
        out.push(directive);
    }
    Some(out.join(", "))
}

/// The request `Cache-Control` that makes a shared cache ask the upstream instead of answering
/// from a stored entry (`no-cache` added), or `None` when the request already says `no-cache`.
pub fn bypass_request(existing: &[&str]) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for directive in elements(existing) {
        if directive.eq_ignore_ascii_case("no-cache") {
            return None;
        }
        out.push(directive);
    }
    out.push("no-cache");
    Some(out.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_merge() {
        let t = "x-tenant-id";
        assert_eq!(merge_vary(&[], t).as_deref(), Some("x-tenant-id"));
        assert_eq!(
            merge_vary(&["Accept-Encoding"], t).as_deref(),
            Some("Accept-Encoding, x-tenant-id")
        );
        assert_eq!(
            merge_vary(&["accept-encoding, Origin", "ACCEPT-ENCODING,,origin"], t).as_deref(),
            Some("accept-encoding, Origin, x-tenant-id"),
            "lines merged, duplicates dropped"
        );
        assert_eq!(merge_vary(&["X-Tenant-Id"], t), None, "already there");
        assert_eq!(merge_vary(&["origin", " x-tenant-id "], t), None);
        assert_eq!(merge_vary(&["*"], t), None, "Vary: * left alone");
        assert_eq!(merge_vary(&["origin, *"], t), None);
        assert_eq!(merge_vary(&[""], t).as_deref(), Some("x-tenant-id"));
    }

    #[test]
    fn private() {
        assert_eq!(privatize(&[]).as_deref(), Some("private"));
        assert_eq!(
            privatize(&["public, max-age=60"]).as_deref(),
            Some("private, max-age=60")
        );
        assert_eq!(
            privatize(&["max-age=60, s-maxage=600", "must-revalidate"]).as_deref(),
            Some("private, max-age=60, must-revalidate")
        );
        assert_eq!(
            privatize(&["private=\"set-cookie\", max-age=5"]).as_deref(),
            Some("private, max-age=5"),
            "a qualified private still lets shared caches store the rest"
        );
        assert_eq!(privatize(&["Private"]), None);
        assert_eq!(privatize(&["max-age=0, no-store"]), None);
    }

    #[test]
    fn request_bypass() {
        assert_eq!(bypass_request(&[]).as_deref(), Some("no-cache"));
        assert_eq!(
            bypass_request(&["max-age=0"]).as_deref(),
            Some("max-age=0, no-cache")
        );
        assert_eq!(bypass_request(&["No-Cache"]), None);
    }

    #[test]
    fn routes() {
        let route = |json: &str| {
            CacheRoute::compile(&serde_json::from_str::<CacheRouteConfig>(json).unwrap())
        };
        assert_eq!(route(r#"{"ttl": 60}"#).unwrap().directives(), "max-age=60");
        assert_eq!(
            route(r#"{"ttl": 60, "stale_while_revalidate": 30}"#)
                .unwrap()
                .directives(),
            "max-age=60, stale-while-revalidate=30"
        );
        assert_eq!(route(r#"{"ttl": 0}"#).unwrap_err().field, "ttl");
        assert_eq!(
            route(r#"{"ttl": 1, "stale_while_revalidate": 0}"#)
                .unwrap_err()
                .field,
            "stale_while_revalidate"
        );
        assert_eq!(
            route(r#"{"ttl": 1, "match": {"path_regex": "("}}"#)
                .unwrap_err()
                .field,
            "match.path_regex"
        );
    }
}
