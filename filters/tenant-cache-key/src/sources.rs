//! Tenant sources, compiled from the configuration, and resolution: the first source that
//! yields a valid tenant id wins.
//!
//! Sources never read the tenant header or the plan header: those are removed from every
//! request before resolution, so nothing a client sends under those names can become its tenant.
//!
//! Sources have trust levels: `claim`, `api_key` and `client_cert` are credentials (the tenant
//! is proven);
//! `host`, `path` and `default` are not (anyone can send any host or path). An `api_key` source
//! whose key header is present but does not verify yields [`Resolution::Invalid`]: the request is
//! refused rather than passed on to a weaker source. A key may carry a `not_after`: from that
//! instant (the host's clock) it no longer verifies, so a tenant can hold an old and a new key
//! while clients move to the new one.
//!
//! This module holds the compiled sources and resolution; `compile` holds the per-source
//! compilers ([`Source::compile`]).

use crate::tenant_id::is_valid_tenant_id;
use filter_core::matching::host_key;
use filter_core::{HeaderMap, RequestMatcher};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

mod compile;
mod not_after;
#[cfg(test)]
mod tests;

pub use not_after::parse_not_after;

pub use compile::source_header;
pub use filter_core::config::header_name;

/// Which kind of source resolved a tenant (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Claim,
    ApiKey,
    ClientCert,
    Host,
    Path,
    Default,
}

impl SourceKind {
    pub const ALL: [SourceKind; 6] = [
        SourceKind::Claim,
        SourceKind::ApiKey,
        SourceKind::ClientCert,
        SourceKind::Host,
        SourceKind::Path,
        SourceKind::Default,
    ];

    /// True for the sources that prove the tenant (a verified claim, a known API key, a
    /// client certificate the connection verified).
    pub fn is_credential(self) -> bool {
        matches!(
            self,
            SourceKind::Claim | SourceKind::ApiKey | SourceKind::ClientCert
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Claim => "claim",
            SourceKind::ApiKey => "api_key",
            SourceKind::ClientCert => "client_cert",
            SourceKind::Host => "host",
            SourceKind::Path => "path",
            SourceKind::Default => "default",
        }
    }
}

/// A tenant found for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'s> {
    pub tenant: String,
    pub plan: Option<String>,
    pub source: SourceKind,
    /// A credential header to remove now that it has done its job (the API key).
    pub consumed: Option<&'s str>,
}

/// What one source makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'s> {
    /// Nothing for this source (outside its match, its header absent, an invalid id): the next
    /// source is tried.
    Skip,
    Tenant(Resolved<'s>),
    /// The request presents this source's credential and it does not verify (an unknown API
    /// key, one past its `not_after`, or the key header repeated): the request is refused, never
    /// resolved by a later, weaker source.
    Invalid(KeyRefusal),
}

/// Why a presented API key does not verify (for the audit log and the counters; the client
/// gets the same 401 for each, so it learns nothing about which keys once existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No configured digest matches.
    Unknown,
    /// The key's `not_after` has passed.
    Expired,
    /// The key header was sent more than once.
    Repeated,
}

impl KeyRefusal {
    /// The reason code: `unknown_api_key`, `expired_api_key`, `repeated_api_key`.
    pub fn reason(self) -> &'static str {
        match self {
            KeyRefusal::Unknown => "unknown_api_key",
            KeyRefusal::Expired => "expired_api_key",
            KeyRefusal::Repeated => "repeated_api_key",
        }
    }
}

impl<'s> Resolution<'s> {
    /// The tenant, if one was found.
    pub fn found(self) -> Option<Resolved<'s>> {
        match self {
            Resolution::Tenant(r) => Some(r),
            Resolution::Skip | Resolution::Invalid(_) => None,
        }
    }
}

/// A compiled source.
#[derive(Debug, Clone)]
pub struct Source {
    matcher: Option<RequestMatcher>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Claim {
        header: String,
        plan_header: Option<String>,
    },
    ApiKey(ApiKeys),
    /// Verified client certificates by their first URI SAN or their subject.
    ClientCert(ClientCerts),
    Host {
        /// Lower-case, starting with '.'.
        suffix: String,
        plan: Option<String>,
    },
    Path {
        segment: usize,
        plan: Option<String>,
    },
    Default {
        tenant: String,
        plan: Option<String>,
    },
}

/// API keys by the SHA-256 digest of the key: the configuration never holds a usable key.
#[derive(Clone)]
struct ApiKeys {
    header: String,
    remove: bool,
    by_digest: BTreeMap<[u8; 32], KeyEntry>,
}

/// What one key digest stands for.
#[derive(Debug, Clone)]
struct KeyEntry {
    tenant: String,
    plan: Option<String>,
    /// Unix ms from which the key no longer verifies.
    not_after_ms: Option<u64>,
}

impl std::fmt::Debug for ApiKeys {
    // Digests are not secrets, but there is no reason to print a table of them either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("header", &self.header)
            .field("remove", &self.remove)
            .field("keys", &self.by_digest.len())
            .finish()
    }
}

/// Tenants by client certificate identity (a partner's SPIFFE id or subject DN).
#[derive(Debug, Clone, Default)]
struct ClientCerts {
    by_uri: CertTable,
    by_subject: CertTable,
}

/// An identity (URI SAN or subject DN) -> its tenant and plan.
type CertTable = BTreeMap<String, (String, Option<String>)>;

/// What the host knows of a request besides its headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Unix ms, the host's clock: API keys lapse at their `not_after`.
    pub now_ms: u64,
    /// The client certificate the connection verified: its first URI SAN (a SPIFFE id) and its
    /// subject, as Envoy reports them (`connection.uri_san_peer_certificate`,
    /// `connection.subject_peer_certificate`). Read only when a `client_cert` source exists.
    pub peer_uri_san: Option<String>,
    pub peer_subject: Option<String>,
}

impl Context {
    /// A context with only a clock (no client certificate).
    pub fn at(now_ms: u64) -> Self {
        Context {
            now_ms,
            ..Context::default()
        }
    }

    /// The context of a request: the clock, and the peer certificate's identity when `read_cert`
    /// (a `client_cert` source exists), from the host's connection properties.
    pub fn read(
        now_ms: u64,
        read_cert: bool,
        property: impl Fn(&[&str]) -> Option<Vec<u8>>,
    ) -> Self {
        let text = |name: &str| {
            property(&["connection", name])
                .and_then(|v| String::from_utf8(v).ok())
                .filter(|v| !v.is_empty())
        };
        Context {
            now_ms,
            peer_uri_san: read_cert
                .then(|| text("uri_san_peer_certificate"))
                .flatten(),
            peer_subject: read_cert
                .then(|| text("subject_peer_certificate"))
                .flatten(),
        }
    }
}

/// Names the compiler needs to check sources against.
pub struct Reserved<'a> {
    pub tenant_header: &'a str,
    pub plan_header: Option<&'a str>,
    pub max_len: usize,
}

impl Source {
    pub fn kind(&self) -> SourceKind {
        match self.kind {
            Kind::Claim { .. } => SourceKind::Claim,
            Kind::ApiKey(_) => SourceKind::ApiKey,
            Kind::ClientCert(_) => SourceKind::ClientCert,
            Kind::Host { .. } => SourceKind::Host,
            Kind::Path { .. } => SourceKind::Path,
            Kind::Default { .. } => SourceKind::Default,
        }
    }

    /// True for a `default` without a `match`: every later source is unreachable.
    pub fn always_resolves(&self) -> bool {
        matches!(self.kind, Kind::Default { .. }) && self.matcher.is_none()
    }

    /// True for a `client_cert` source (the host must read the peer certificate).
    pub fn reads_client_cert(&self) -> bool {
        matches!(self.kind, Kind::ClientCert(_))
    }

    /// What this source makes of the request in `ctx` (API keys with a `not_after` are compared
    /// with its clock; client certificates are its peer's).
    pub fn resolve(&self, headers: &HeaderMap, max_len: usize, ctx: &Context) -> Resolution<'_> {
        if let Some(m) = &self.matcher {
            if !m.matches(headers) {
                return Resolution::Skip;
            }
        }
        let found = match &self.kind {
            Kind::Claim {
                header,
                plan_header,
            } => single_value(headers, header).map(|tenant| {
                let plan = plan_header
                    .as_deref()
                    .and_then(|h| single_value(headers, h))
                    .filter(|p| is_valid_tenant_id(p, max_len));
                (tenant.to_string(), plan.map(str::to_string), None)
            }),
            Kind::ApiKey(keys) => return keys.resolve(headers, ctx.now_ms),
            Kind::ClientCert(certs) => certs
                .find(ctx)
                .map(|(tenant, plan)| (tenant.clone(), plan.clone(), None)),
            Kind::Host { suffix, plan } => {
                let host = host_key(headers.authority());
                host.strip_suffix(suffix.as_str())
                    .filter(|label| !label.contains('.'))
                    .map(|label| (label.to_string(), plan.clone(), None))
            }
            Kind::Path { segment, plan } => headers
                .path()
                .split('/')
                .skip(1)
                .nth(*segment)
                .map(|t| (t.to_string(), plan.clone(), None)),
            Kind::Default { tenant, plan } => Some((tenant.clone(), plan.clone(), None)),
        };
        match found {
            Some((tenant, plan, consumed)) if is_valid_tenant_id(&tenant, max_len) => {
                Resolution::Tenant(Resolved {
                    tenant,
                    plan,
                    source: self.kind(),
                    consumed,
                })
            }
            _ => Resolution::Skip,
        }
    }
}

impl ApiKeys {
    /// A key header present once with a known key that has not lapsed at `now_ms` resolves;
    /// absent skips; anything else (an unknown or lapsed key, the header repeated) is a
    /// credential that does not verify.
    fn resolve(&self, headers: &HeaderMap, now_ms: u64) -> Resolution<'_> {
        let mut values = headers.get_all(&self.header);
        let Some(presented) = values.next() else {
            return Resolution::Skip;
        };
        if values.next().is_some() {
            return Resolution::Invalid(KeyRefusal::Repeated);
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        match self.by_digest.get(&digest) {
            Some(key) if key.not_after_ms.is_some_and(|t| now_ms >= t) => {
                Resolution::Invalid(KeyRefusal::Expired)
            }
            Some(key) => Resolution::Tenant(Resolved {
                tenant: key.tenant.clone(),
                plan: key.plan.clone(),
                source: SourceKind::ApiKey,
                consumed: self.remove.then_some(self.header.as_str()),
            }),
            None => Resolution::Invalid(KeyRefusal::Unknown),
        }
    }
}

impl ClientCerts {
    /// The tenant (and plan) of the verified peer certificate: by its URI SAN first, then by
    /// its subject. No certificate, or one mapped to no tenant: nothing.
    fn find(&self, ctx: &Context) -> Option<&(String, Option<String>)> {
        let by_uri = (ctx.peer_uri_san.as_ref()).and_then(|u| self.by_uri.get(u));
        by_uri.or_else(|| (ctx.peer_subject.as_ref()).and_then(|s| self.by_subject.get(s)))
    }
}

/// The value of a header that is present exactly once; a repeated header is ambiguous and
/// resolves nothing (neither copy is trusted over the other).
fn single_value<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    let mut values = headers.get_all(name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(first)
}
