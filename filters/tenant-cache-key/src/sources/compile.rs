//! The per-source compilers: each validates its configuration, naming fields relative to the
//! source (`api_key.keys[0].tenant`), and never echoes an API key.

use super::{
    header_name, parse_not_after, ApiKeys, CertTable, ClientCerts, KeyEntry, Kind, Reserved, Source,
};
use crate::config::{
    ApiKeyConfig, ApiKeySourceConfig, CertIdentityConfig, ClaimSourceConfig,
    ClientCertSourceConfig, DefaultSourceConfig, HostSourceConfig, PathSourceConfig, SourceConfig,
    DEFAULT_API_KEY_HEADER,
};
use crate::tenant_id::check_configured_id;
use filter_core::{ConfigError, RequestMatch, RequestMatcher};
use std::collections::BTreeMap;

impl Source {
    /// Validates one source. Errors name fields relative to the source (`api_key.keys[0].tenant`).
    pub fn compile(config: &SourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
        let (name, result) = match config {
            SourceConfig::Claim(c) => ("claim", compile_claim(c, reserved)),
            SourceConfig::ApiKey(c) => ("api_key", compile_api_key(c, reserved)),
            SourceConfig::ClientCert(c) => ("client_cert", compile_client_cert(c, reserved)),
            SourceConfig::Host(c) => ("host", compile_host(c, reserved)),
            SourceConfig::Path(c) => ("path", compile_path(c, reserved)),
            SourceConfig::Default(c) => ("default", compile_default(c, reserved)),
        };
        result.map_err(|e| e.within(name))
    }
}

fn compile_match(matches: &Option<RequestMatch>) -> Result<Option<RequestMatcher>, ConfigError> {
    matches
        .as_ref()
        .map(|m| m.compile().map_err(|e| e.within("match")))
        .transpose()
}

/// A header a source reads: valid, and not one this filter owns.
pub fn source_header(
    field: &str,
    name: &str,
    reserved: &Reserved<'_>,
) -> Result<String, ConfigError> {
    let lower = header_name(field, name)?;
    if lower == reserved.tenant_header || Some(lower.as_str()) == reserved.plan_header {
        return Err(ConfigError::new(
            field,
            format!(
                "{lower:?} is the header this filter writes; every client copy of it is removed \
                 before resolution, so a source must read another header (e.g. the one the JWT \
                 filter sets, such as \"x-jwt-tenant\")"
            ),
        ));
    }
    Ok(lower)
}

fn compile_claim(c: &ClaimSourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
    let header = source_header("header", &c.header, reserved)?;
    let plan_header = match &c.plan_header {
        None => None,
        Some(_) if reserved.plan_header.is_none() => {
            return Err(ConfigError::new(
                "plan_header",
                "a plan source needs the top-level plan_header to write the plan to",
            ))
        }
        Some(h) => Some(source_header("plan_header", h, reserved)?),
    };
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::Claim {
            header,
            plan_header,
        },
    })
}

fn compile_api_key(c: &ApiKeySourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
    let header = source_header(
        "header",
        c.header.as_deref().unwrap_or(DEFAULT_API_KEY_HEADER),
        reserved,
    )?;
    if c.keys.is_empty() {
        return Err(ConfigError::new("keys", "at least one key is required"));
    }
    let mut by_digest = BTreeMap::new();
    for (i, key) in c.keys.iter().enumerate() {
        let field = format!("keys[{i}]");
        check_configured_id("tenant id", &key.tenant, reserved.max_len)
            .map_err(|r| ConfigError::new(format!("{field}.tenant"), r))?;
        let plan = configured_plan(&format!("{field}.plan"), &key.plan, reserved)?;
        for (hash_field, sha256, not_after) in key_hashes(key, &field)? {
            let entry = KeyEntry {
                tenant: key.tenant.clone(),
                plan: plan.clone(),
                not_after_ms: not_after
                    .map(parse_not_after)
                    .transpose()
                    .map_err(|r| ConfigError::new(format!("{hash_field}.not_after"), r))?,
            };
            if by_digest
                .insert(digest(&hash_field, sha256)?, entry)
                .is_some()
            {
                return Err(ConfigError::new(
                    format!("{hash_field}.sha256"),
                    "the same digest is listed twice",
                ));
            }
        }
    }
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::ApiKey(ApiKeys {
            header,
            remove: c.remove.unwrap_or(true),
            by_digest,
        }),
    })
}

/// One configured key digest: its field name, the hex digest, its `not_after` as written.
type KeyHash<'c> = (String, &'c str, Option<&'c serde_json::Value>);

/// The digests of one `keys` entry with their field names and `not_after`: its `sha256`, or
/// each of its `hashes` (exactly one of the two).
fn key_hashes<'c>(key: &'c ApiKeyConfig, field: &str) -> Result<Vec<KeyHash<'c>>, ConfigError> {
    match (&key.sha256, &key.hashes) {
        (Some(sha256), None) => Ok(vec![(field.to_string(), sha256, key.not_after.as_ref())]),
        (None, Some(hashes)) if key.not_after.is_some() => Err(ConfigError::new(
            format!("{field}.not_after"),
            "goes on each of `hashes` (one per key), not on the tenant",
        )),
        (None, Some(hashes)) if hashes.is_empty() => Err(ConfigError::new(
            format!("{field}.hashes"),
            "at least one key digest is required",
        )),
        (None, Some(hashes)) => Ok((hashes.iter().enumerate())
            .map(|(j, h)| {
                (
                    format!("{field}.hashes[{j}]"),
                    h.sha256.as_str(),
                    h.not_after.as_ref(),
                )
            })
            .collect()),
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("{field}.hashes"),
            "give `sha256` (one key) or `hashes` (several keys of the tenant), not both",
        )),
        (None, None) => Err(ConfigError::new(
            format!("{field}.sha256"),
            "missing: give `sha256` (one key) or `hashes` (several keys of the tenant)",
        )),
    }
}

/// A configured digest. The value is never echoed: a mistake here is often a raw key pasted in
/// place of its digest, and Envoy's log is no place for it.
fn digest(field: &str, sha256: &str) -> Result<[u8; 32], ConfigError> {
    parse_sha256_hex(sha256).ok_or_else(|| {
        ConfigError::new(
            format!("{field}.sha256"),
            "must be the SHA-256 of the key as 64 hex digits (printf %s \"$KEY\" | sha256sum); \
             the value is not shown in case it is a key",
        )
    })
}

pub(super) fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn compile_client_cert(
    c: &ClientCertSourceConfig,
    reserved: &Reserved<'_>,
) -> Result<Source, ConfigError> {
    if c.identities.is_empty() {
        return Err(ConfigError::new(
            "identities",
            "at least one certificate identity is required",
        ));
    }
    let mut certs = ClientCerts::default();
    for (i, id) in c.identities.iter().enumerate() {
        let field = format!("identities[{i}]");
        check_configured_id("tenant id", &id.tenant, reserved.max_len)
            .map_err(|r| ConfigError::new(format!("{field}.tenant"), r))?;
        let plan = configured_plan(&format!("{field}.plan"), &id.plan, reserved)?;
        let (table, name, value) = cert_identity(&mut certs, id, &field)?;
        if table
            .insert(value.to_string(), (id.tenant.clone(), plan))
            .is_some()
        {
            return Err(ConfigError::new(
                format!("{field}.{name}"),
                format!("{value:?} is listed twice"),
            ));
        }
    }
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::ClientCert(certs),
    })
}

/// The table an identity goes into, its field name and its checked value: exactly one of a
/// URI SAN (`scheme://...`, no spaces) and a subject DN (no control characters).
fn cert_identity<'a, 'c>(
    certs: &'a mut ClientCerts,
    id: &'c CertIdentityConfig,
    field: &str,
) -> Result<(&'a mut CertTable, &'static str, &'c str), ConfigError> {
    let printable = |v: &str| !v.is_empty() && v.len() <= 1024 && !v.chars().any(char::is_control);
    match (&id.uri, &id.subject) {
        (Some(uri), None) => {
            let scheme = uri.split_once("://").map(|(s, rest)| (s, rest.is_empty()));
            let shaped = matches!(scheme, Some((s, false)) if !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)));
            if !shaped || !printable(uri) || uri.contains(' ') {
                return Err(ConfigError::new(
                    format!("{field}.uri"),
                    format!("{uri:?} must be a URI SAN such as \"spiffe://partners.example.com/acme\""),
                ));
            }
            Ok((&mut certs.by_uri, "uri", uri))
        }
        (None, Some(subject)) if printable(subject) => {
            Ok((&mut certs.by_subject, "subject", subject))
        }
        (None, Some(_)) => Err(ConfigError::new(
            format!("{field}.subject"),
            "must be the subject DN as Envoy prints it (RFC 2253, e.g. \"CN=acme-partner,O=Acme\"), \
             without control characters",
        )),
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("{field}.subject"),
            "give `uri` or `subject`, not both: one identity per entry",
        )),
        (None, None) => Err(ConfigError::new(
            format!("{field}.uri"),
            "missing: give `uri` (the certificate's URI SAN) or `subject` (its subject DN)",
        )),
    }
}

fn compile_host(c: &HostSourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
    let suffix = c.suffix.to_ascii_lowercase();
    let labels_ok = suffix.len() > 1
        && suffix.starts_with('.')
        && suffix[1..]
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !labels_ok {
        return Err(ConfigError::new(
            "suffix",
            format!(
                "{:?} must be the part of the host after the tenant label, starting with '.' \
                 (e.g. \".api.example.com\" for acme.api.example.com)",
                c.suffix
            ),
        ));
    }
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::Host {
            suffix,
            plan: configured_plan("plan", &c.plan, reserved)?,
        },
    })
}

fn compile_path(c: &PathSourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
    if c.segment > 32 {
        return Err(ConfigError::new(
            "segment",
            format!("{} is beyond the 32nd path segment", c.segment),
        ));
    }
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::Path {
            segment: c.segment,
            plan: configured_plan("plan", &c.plan, reserved)?,
        },
    })
}

fn compile_default(
    c: &DefaultSourceConfig,
    reserved: &Reserved<'_>,
) -> Result<Source, ConfigError> {
    check_configured_id("tenant id", &c.tenant, reserved.max_len)
        .map_err(|r| ConfigError::new("tenant", r))?;
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::Default {
            tenant: c.tenant.clone(),
            plan: configured_plan("plan", &c.plan, reserved)?,
        },
    })
}

/// A plan written in the configuration: a valid id, and somewhere to write it.
fn configured_plan(
    field: &str,
    plan: &Option<String>,
    reserved: &Reserved<'_>,
) -> Result<Option<String>, ConfigError> {
    match plan {
        None => Ok(None),
        Some(_) if reserved.plan_header.is_none() => Err(ConfigError::new(
            field,
            "a plan needs the top-level plan_header to write it to",
        )),
        Some(p) => {
            check_configured_id("plan", p, reserved.max_len)
                .map_err(|r| ConfigError::new(field, r))?;
            Ok(Some(p.clone()))
        }
    }
}
