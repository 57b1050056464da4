//! Policy by route: a filter takes its policy from the route Envoy matched, never from a
//! second matcher of its own.
//!
//! A route names its policies in its metadata, one key per filter:
//!
//! ```yaml
//! metadata:
//!   filter_metadata:
//!     edgegate: { jwt: orders_write, tenant: required, transform: users }
//! ```
//!
//! and each plugin configuration defines the named policies. Where routes cannot carry
//! metadata (an Istio VirtualService), a plugin maps route names (`xds.route_name`, Istio's
//! `http[].name`) to policy names instead: a filter whose configuration has that map binds by
//! name only, and never reads the metadata.
//!
//! [`RouteFacts::read`] reads what the bindings [`Needs`]: the `edgegate` metadata with one
//! property call (Envoy serializes a struct of strings as proxy-wasm's pair list), the route's
//! name with another (the cheaper one). [`RouteBinding::select`] resolves one filter's key.

use crate::config::ConfigError;
use crate::host::Host;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The `filter_metadata` namespace routes name their policies in.
pub const METADATA_NAMESPACE: &str = "edgegate";
/// The property holding the route's `edgegate` metadata.
pub const METADATA_PATH: [&str; 4] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    METADATA_NAMESPACE,
];
pub const ROUTE_NAME_PATH: [&str; 2] = ["xds", "route_name"];
/// Present only when the route forwards to a cluster (absent for direct responses, redirects
/// and requests no route matched).
pub const CLUSTER_NAME_PATH: [&str; 2] = ["xds", "cluster_name"];

/// What a request's route says about policies, read once per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteFacts {
    /// The `edgegate` metadata as (key, raw value); a value that was not a string in the route
    /// config arrives as other bytes and is refused by [`RouteBinding::select`].
    metadata: Vec<(String, Vec<u8>)>,
    name: Option<String>,
}

/// What the bindings of a request's filters need to read of its route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub metadata: bool,
    pub name: bool,
}

impl Needs {
    /// What two sets of bindings need together (the bundle's stages).
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            metadata: self.metadata || other.metadata,
            name: self.name || other.name,
        }
    }
}

impl RouteFacts {
    /// Reads what `needs` asks: the route's `edgegate` metadata (one property call), its name
    /// (another).
    pub fn read<H: Host>(host: &H, needs: Needs) -> Self {
        let metadata = (needs.metadata)
            .then(|| host.property(&METADATA_PATH))
            .flatten()
            .map(|b| parse_pairs(&b))
            .unwrap_or_default();
        let name = (needs.name)
            .then(|| host.property(&ROUTE_NAME_PATH))
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|n| !n.is_empty());
        RouteFacts { metadata, name }
    }

    /// Facts as given (tests, and the bundle's stages sharing one read).
    pub fn new(metadata: &[(&str, &str)], name: Option<&str>) -> Self {
        RouteFacts {
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            name: name.map(str::to_string),
        }
    }

    pub fn metadata(&self, key: &str) -> Option<&[u8]> {
        (self.metadata.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// Whether the request's route forwards to an upstream. A route that does not (a direct
/// response, a redirect, no route at all) is answered by Envoy itself: a filter leaves it to
/// Envoy even when the route names no policy.
pub fn reaches_upstream<H: Host>(host: &H) -> bool {
    host.property(&CLUSTER_NAME_PATH)
        .is_some_and(|c| !c.is_empty())
}

/// proxy-wasm's pair list: a u32 count, then (key length, value length) u32 pairs, then each
/// key and value followed by a NUL. Anything malformed reads as no pairs.
pub fn parse_pairs(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let Some(count) = word(0) else {
        return Vec::new();
    };
    let mut data = 4usize.saturating_add(count.saturating_mul(8));
    let mut pairs = Vec::with_capacity(count.min(64));
    for i in 0..count {
        let (Some(k), Some(v)) = (word(4 + i * 8), word(8 + i * 8)) else {
            return Vec::new();
        };
        let key = bytes.get(data..data + k);
        let value = bytes.get(data + k + 1..data + k + 1 + v);
        let (Some(key), Some(value)) = (key, value) else {
            return Vec::new();
        };
        pairs.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
        data += k + v + 2;
    }
    pairs
}

/// The inverse of [`parse_pairs`] (tests and fake hosts serialize route metadata with it).
pub fn serialize_pairs(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = len(pairs.len()).to_vec();
    for (k, v) in pairs {
        out.extend(len(k.len()));
        out.extend(len(v.len()));
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(*v);
        out.push(0);
    }
    out
}

/// One filter's policies by name, and how routes name them.
#[derive(Debug, Clone)]
pub struct RouteBinding<T> {
    /// The metadata key this filter reads (`jwt`, `tenant`, `transform`, `ratelimit`).
    key: &'static str,
    policies: Vec<(String, T)>,
    /// Route name -> policy (given: the filter binds by name only, not by metadata).
    by_route_name: HashMap<String, Choice>,
    reserved: &'static [&'static str],
}

/// A resolved name: a policy's index or a reserved word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Policy(usize),
    Reserved(&'static str),
}

/// What a route means for one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// A policy (its index) or a reserved word (`public`).
    Chosen(Choice),
    /// The route names no policy for this filter.
    Unbound,
    /// The route names no policy for this filter and Envoy answers it itself (a direct
    /// response, a redirect, no route at all): nothing to decide ([`RouteBinding::decide`]).
    Exempt,
    /// The route names something this configuration does not define: a configuration error
    /// the filter must refuse, never guess at. The text says what, for the log.
    Invalid(String),
}

impl<T> RouteBinding<T> {
    /// Validates the policy names (unique by construction of [`UniqueMap`], in the policy name
    /// alphabet, not a reserved word) and that every route name maps to something defined.
    /// `field` and `routes_field` are the configuration fields, for errors.
    pub fn new(
        key: &'static str,
        reserved: &'static [&'static str],
        (field, policies): (&str, UniqueMap<T>),
        (routes_field, routes): (&str, UniqueMap<String>),
    ) -> Result<Self, ConfigError> {
        let mut binding = RouteBinding {
            key,
            policies: Vec::with_capacity(policies.0.len()),
            by_route_name: HashMap::new(),
            reserved,
        };
        for (name, policy) in policies.0 {
            check_name(&name).map_err(|why| ConfigError::new(format!("{field}.{name}"), why))?;
            if reserved.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    format!("{field}.{name}"),
                    format!("{name:?} is reserved: routes name it without a definition"),
                ));
            }
            binding.policies.push((name, policy));
        }
        for (route, policy) in routes.0 {
            let choice = binding
                .choice(policy.as_bytes())
                .map_err(|why| ConfigError::new(format!("{routes_field}.{route}"), why))?;
            binding.by_route_name.insert(route, choice);
        }
        Ok(binding)
    }

    pub fn key(&self) -> &'static str {
        self.key
    }

    /// What a request must read of its route for this binding: its name when route names are
    /// mapped, else its metadata.
    pub fn needs(&self) -> Needs {
        let name = !self.by_route_name.is_empty();
        Needs {
            metadata: !name,
            name,
        }
    }

    pub fn policy(&self, index: usize) -> Option<&T> {
        self.policies.get(index).map(|(_, p)| p)
    }

    pub fn policy_name(&self, index: usize) -> &str {
        self.policies.get(index).map_or("", |(n, _)| n.as_str())
    }

    pub fn policies(&self) -> impl Iterator<Item = (&str, &T)> {
        self.policies.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// The route's choice for this filter: its name's mapping when the binding maps names,
    /// else its metadata key.
    pub fn select(&self, route: &RouteFacts) -> Bound {
        if !self.by_route_name.is_empty() {
            return (route.name())
                .and_then(|n| self.by_route_name.get(n))
                .map_or(Bound::Unbound, |c| Bound::Chosen(*c));
        }
        if let Some(value) = route.metadata(self.key) {
            return match self.choice(value) {
                Ok(choice) => Bound::Chosen(choice),
                Err(why) => Bound::Invalid(format!(
                    "route metadata {METADATA_NAMESPACE}.{}: {why}",
                    self.key
                )),
            };
        }
        Bound::Unbound
    }

    /// [`Self::select`], with an unbound route that reaches no upstream [`Bound::Exempt`] (a
    /// second property read, only for unbound routes).
    pub fn decide<H: Host>(&self, host: &H, route: &RouteFacts) -> Bound {
        match self.select(route) {
            Bound::Unbound if !reaches_upstream(host) => Bound::Exempt,
            bound => bound,
        }
    }

    fn choice(&self, value: &[u8]) -> Result<Choice, String> {
        let name = std::str::from_utf8(value)
            .ok()
            .filter(|n| check_name(n).is_ok())
            .ok_or_else(|| {
                "must be a policy name (a string of letters, digits, _ - . :)".to_string()
            })?;
        if let Some(r) = self.reserved.iter().find(|r| **r == name) {
            return Ok(Choice::Reserved(r));
        }
        (self.policies.iter())
            .position(|(n, _)| n == name)
            .map(Choice::Policy)
            .ok_or_else(|| format!("no policy is named {name:?}"))
    }
}

/// How a filter refuses a request whose route binds nothing for it or something undefined:
/// a JSON 403 `forbidden` naming `what` is missing, or a JSON 500 `policy_error` (the reason
/// goes to the log, never to the client). `None` for the other outcomes.
pub struct Refusal {
    pub status: u32,
    pub error: &'static str,
    pub message: String,
    /// The metric reason: `unbound_route` or `invalid_route_policy`.
    pub reason: &'static str,
    /// For the log (an invalid binding).
    pub log: Option<String>,
}

impl Bound {
    pub fn refusal(&self, what: &str) -> Option<Refusal> {
        match self {
            Bound::Unbound => Some(Refusal::unbound(what)),
            Bound::Invalid(why) => Some(Refusal::invalid(what, why)),
            Bound::Chosen(_) | Bound::Exempt => None,
        }
    }
}

impl Refusal {
    /// The route names no `what` policy: 403.
    pub fn unbound(what: &str) -> Refusal {
        Refusal {
            status: 403,
            error: "forbidden",
            message: format!("no {what} policy applies to this route"),
            reason: "unbound_route",
            log: None,
        }
    }

    /// The route names a `what` policy that is not defined (`why`, for the log): 500.
    pub fn invalid(what: &str, why: &str) -> Refusal {
        Refusal {
            status: 500,
            error: "policy_error",
            message: format!("the route names a {what} policy that is not defined"),
            reason: "invalid_route_policy",
            log: Some(format!("refusing a request: {why}")),
        }
    }

    /// Logs (when there is something to log), records the refusal for the audit log (under
    /// the filter's name in Envoy's configuration) and answers the request.
    pub fn send<H: Host>(&self, host: &H, request_id: Option<&str>) {
        if let Some(line) = &self.log {
            host.log(crate::host::Level::Warn, line);
        }
        let filter = host.property(&["plugin_name"]);
        let filter = filter.as_deref().map(String::from_utf8_lossy);
        crate::audit::record(
            host,
            filter.as_deref().unwrap_or("edgegate"),
            self.reason,
            None,
        );
        host.send_json_error(self.status, self.error, &self.message, request_id, &[]);
    }
}

/// The two ways of configuring a filter's policies, checked against each other: the named
/// policies (`named`: field, whether given; `noun`: what they are) that routes choose, their
/// route-name map (`routes_given`), and the deprecated matchers (`matchers`: field, whether given).
/// A route-name map needs the named policies; the named policies exclude the matchers.
pub fn check_forms(
    (named, named_given): (&str, bool),
    noun: &str,
    routes_given: bool,
    (matchers, matchers_given): (&str, bool),
) -> Result<(), ConfigError> {
    if routes_given && !named_given {
        let why = format!("maps route names to {noun}: give {named}");
        return Err(ConfigError::new("routes", why));
    }
    if named_given && matchers_given {
        let why = format!(
            "give {named} (chosen by the route) or {matchers} (deprecated matchers), not both"
        );
        return Err(ConfigError::new(matchers, why));
    }
    Ok(())
}

/// Policy names: 1 to 64 of `A-Z a-z 0-9 _ - . :`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"_-.:".contains(&b);
    if name.is_empty() || name.len() > 64 || !name.bytes().all(ok) {
        return Err("names are 1 to 64 of the characters A-Z a-z 0-9 _ - . :".into());
    }
    Ok(())
}

/// A JSON object whose keys must be unique (serde's maps keep the last of two equal keys
/// silently; a policy defined twice is a configuration error). Keys keep their order.
#[derive(Debug, Clone)]
pub struct UniqueMap<T>(pub Vec<(String, T)>);

impl<T> Default for UniqueMap<T> {
    fn default() -> Self {
        UniqueMap(Vec::new())
    }
}

impl<T> UniqueMap<T> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for UniqueMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = UniqueMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = BTreeMap::new();
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if seen.insert(key.clone(), ()).is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "{key:?} is defined twice"
                        )));
                    }
                    out.push((key, map.next_value()?));
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    /// What Envoy 1.40 returned for `edgegate: { tenant: required, jwt: user, n: 3 }`.
    const FROM_ENVOY: &str = "0300000006000000080000000300000004000000010000000800000074656e616e74007265717569726564006a77740075736572006e00000000000000084000";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn binding(routes: &str) -> Result<RouteBinding<u32>, ConfigError> {
        let policies: UniqueMap<u32> = serde_json::from_str(r#"{"user": 1, "admin": 2}"#).unwrap();
        let routes: UniqueMap<String> = serde_json::from_str(routes).unwrap();
        RouteBinding::new(
            "jwt",
            &["public"],
            ("requirements", policies),
            ("routes", routes),
        )
    }

    #[test]
    fn envoys_pair_list_reads_back_and_round_trips() {
        let pairs = parse_pairs(&unhex(FROM_ENVOY));
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], ("tenant".into(), b"required".to_vec()));
        assert_eq!(pairs[1], ("jwt".into(), b"user".to_vec()));
        assert_eq!(pairs[2].1, 3.0f64.to_le_bytes().to_vec());
        let back: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        assert_eq!(serialize_pairs(&back), unhex(FROM_ENVOY));
        // (The final NUL is not needed to read the last value.)
        for cut in 0..unhex(FROM_ENVOY).len() - 1 {
            let short = parse_pairs(&unhex(FROM_ENVOY)[..cut]);
            assert!(
                short.is_empty(),
                "a truncated list reads as nothing ({cut} bytes)"
            );
        }
    }

    #[test]
    fn a_binding_reads_metadata_or_names_and_a_number_is_not_a_name() {
        let host = FakeHost::at(0);
        host.set_property(&METADATA_PATH, &unhex(FROM_ENVOY));
        host.set_property(&ROUTE_NAME_PATH, b"health");
        let by_metadata = binding("{}").unwrap();
        let metadata = Needs {
            metadata: true,
            name: false,
        };
        assert_eq!(by_metadata.needs(), metadata);
        let facts = RouteFacts::read(&host, metadata);
        assert_eq!(
            (facts.name(), facts.metadata("jwt")),
            (None, Some(&b"user"[..]))
        );
        assert_eq!(by_metadata.select(&facts), Bound::Chosen(Choice::Policy(0)));
        assert_eq!(by_metadata.policy_name(0), "user");
        let unknown = RouteFacts::new(&[("jwt", "nobody")], None);
        let why = match by_metadata.select(&unknown) {
            Bound::Invalid(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(why.contains("\"nobody\""), "{why}");
        let n = RouteBinding::new(
            "n",
            &[],
            ("p", UniqueMap::<u32>::default()),
            ("r", UniqueMap::default()),
        )
        .unwrap();
        assert!(matches!(n.select(&facts), Bound::Invalid(why) if why.contains("edgegate.n")));

        // With a route-name map the name decides and the metadata is not even read.
        let b = binding(r#"{"orders-read": "user", "health": "public"}"#).unwrap();
        assert_eq!(
            b.needs(),
            Needs {
                metadata: false,
                name: true
            }
        );
        let facts = RouteFacts::read(&host, b.needs());
        assert_eq!(
            (facts.name(), facts.metadata("jwt")),
            (Some("health"), None)
        );
        assert_eq!(b.select(&facts), Bound::Chosen(Choice::Reserved("public")));
        let both = RouteFacts::new(&[("jwt", "user")], Some("health"));
        assert_eq!(b.select(&both), Bound::Chosen(Choice::Reserved("public")));
        let other = RouteFacts::new(&[("jwt", "user")], Some("other"));
        assert_eq!(b.select(&other), Bound::Unbound);
        assert_eq!(b.select(&RouteFacts::default()), Bound::Unbound);
    }

    #[test]
    fn bad_bindings_are_refused_naming_the_field() {
        let e = binding(r#"{"orders": "nobody"}"#).unwrap_err();
        assert_eq!(e.field, "routes.orders");
        assert!(e.reason.contains("nobody"), "{e}");
        let twice: Result<UniqueMap<u32>, _> = serde_json::from_str(r#"{"a": 1, "a": 2}"#);
        assert!(twice
            .unwrap_err()
            .to_string()
            .contains("\"a\" is defined twice"));
        let reserved: UniqueMap<u32> = serde_json::from_str(r#"{"public": 1}"#).unwrap();
        let e = RouteBinding::new(
            "jwt",
            &["public"],
            ("requirements", reserved),
            ("r", UniqueMap::default()),
        )
        .unwrap_err();
        assert_eq!(e.field, "requirements.public");
        let spaced: UniqueMap<u32> = serde_json::from_str(r#"{"a b": 1}"#).unwrap();
        let e = RouteBinding::new(
            "jwt",
            &[],
            ("requirements", spaced),
            ("r", UniqueMap::default()),
        )
        .unwrap_err();
        assert_eq!(e.field, "requirements.a b");
    }

    #[test]
    fn the_name_is_read_only_when_asked_and_an_upstream_needs_a_cluster() {
        let host = FakeHost::at(0);
        host.set_property(&ROUTE_NAME_PATH, b"r");
        let name = Needs {
            metadata: false,
            name: true,
        };
        assert_eq!(RouteFacts::read(&host, Needs::default()).name(), None);
        assert_eq!(RouteFacts::read(&host, name).name(), Some("r"));
        assert!(!reaches_upstream(&host));
        host.set_property(&CLUSTER_NAME_PATH, b"c");
        assert!(reaches_upstream(&host));
    }
}
