//! Descriptors from a request, the way Envoy's `rate_limits` actions build them, and the pool
//! key of a request's descriptors.

use filter_core::HeaderMap;
use sha2::{Digest, Sha256};

/// One action of a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `(key, <the header's value>)`. A request without the header has no such entry: with
    /// `skip_if_absent` the entry is left out, otherwise the whole descriptor is.
    RequestHeader {
        header: String,
        key: String,
        skip_if_absent: bool,
    },
    /// `(key, value)` as configured.
    Generic { key: String, value: String },
    /// `("remote_address", <the downstream address without its port>)`.
    RemoteAddress,
    /// `(key, <the name of the route Envoy matched>)`.
    RouteName { key: String },
}

/// What a request's descriptors are built from besides its headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The downstream address without its port.
    pub remote: Option<&'a str>,
    /// The name of the route Envoy matched (None: unnamed, or not read).
    pub route: Option<&'a str>,
}

/// The actions of one descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorSpec {
    pub actions: Vec<Action>,
}

/// One descriptor: ordered `(key, value)` entries.
pub type Descriptor = Vec<(String, String)>;

impl DescriptorSpec {
    /// The descriptor of a request, or None when an action leaves it out.
    pub fn build(&self, headers: &HeaderMap, facts: RequestFacts<'_>) -> Option<Descriptor> {
        let mut entries = Vec::with_capacity(self.actions.len());
        for action in &self.actions {
            match action {
                Action::RequestHeader {
                    header,
                    key,
                    skip_if_absent,
                } => match headers.get(header) {
                    Some(v) => entries.push((key.clone(), v.to_string())),
                    None if *skip_if_absent => {}
                    None => return None,
                },
                Action::Generic { key, value } => entries.push((key.clone(), value.clone())),
                Action::RemoteAddress => {
                    entries.push(("remote_address".to_string(), facts.remote?.to_string()));
                }
                Action::RouteName { key } => entries.push((key.clone(), facts.route?.to_string())),
            }
        }
        (!entries.is_empty()).then_some(entries)
    }
}

/// Every descriptor `specs` give for a request.
pub fn build_all(
    specs: &[DescriptorSpec],
    headers: &HeaderMap,
    facts: RequestFacts<'_>,
) -> Vec<Descriptor> {
    specs
        .iter()
        .filter_map(|s| s.build(headers, facts))
        .collect()
}

/// `10.0.0.1:5000` -> `10.0.0.1`, `[::1]:5000` -> `::1`.
pub fn strip_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => address,
    }
}

/// The shared-data key of the pool for `descriptors` in `domain`: a digest, the same in every
/// worker, of an unambiguous encoding (lengths before bytes) so two descriptor lists never
/// share a pool.
pub fn pool_key(prefix: &str, domain: &str, descriptors: &[Descriptor]) -> String {
    let mut h = Sha256::new();
    let mut put = |s: &str| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    put(domain);
    for d in descriptors {
        put("d");
        for (k, v) in d {
            put(k);
            put(v);
        }
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}:pool:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, key: &str, skip: bool) -> Action {
        Action::RequestHeader {
            header: name.into(),
            key: key.into(),
            skip_if_absent: skip,
        }
    }

    #[test]
    fn absent_headers_drop_the_entry_or_the_descriptor() {
        let h = HeaderMap::from([("x-tenant-id", "acme")]);
        let both = DescriptorSpec {
            actions: vec![
                header("x-tenant-id", "tenant", false),
                header("x-user-id", "consumer", true),
            ],
        };
        let none = RequestFacts::default();
        assert_eq!(
            both.build(&h, none),
            Some(vec![("tenant".into(), "acme".into())])
        );
        let strict = DescriptorSpec {
            actions: vec![header("x-user-id", "consumer", false)],
        };
        assert_eq!(strict.build(&h, none), None);
        let remote = DescriptorSpec {
            actions: vec![Action::RemoteAddress],
        };
        assert_eq!(remote.build(&h, none), None);
        let facts = RequestFacts {
            remote: Some("10.0.0.1"),
            route: Some("orders"),
        };
        assert_eq!(
            remote.build(&h, facts),
            Some(vec![("remote_address".into(), "10.0.0.1".into())])
        );
        let route = DescriptorSpec {
            actions: vec![Action::RouteName {
                key: "route".into(),
            }],
        };
        assert_eq!(route.build(&h, none), None, "an unnamed route");
        assert_eq!(
            route.build(&h, facts),
            Some(vec![("route".into(), "orders".into())])
        );
    }

    #[test]
    fn pool_keys_tell_descriptor_lists_apart() {
        let a = vec![vec![("k".to_string(), "ab".to_string())]];
        let b = vec![vec![("ka".to_string(), "b".to_string())]];
        let split = vec![
            vec![("k".to_string(), "ab".to_string())],
            vec![("x".to_string(), "y".to_string())],
        ];
        let keys = [
            pool_key("rl", "edge", &a),
            pool_key("rl", "edge", &b),
            pool_key("rl", "other", &a),
            pool_key("rl", "edge", &split),
        ];
        for (i, k) in keys.iter().enumerate() {
            assert!(keys[i + 1..].iter().all(|o| o != k), "{keys:?}");
        }
        assert_eq!(keys[0], pool_key("rl", "edge", &a), "stable across calls");
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(strip_port("[::1]:5000"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("10.0.0.1"), "10.0.0.1");
    }
}
