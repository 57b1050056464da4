//! The response phase: `Vary` and `Cache-Control` for shared caches (response stages), and
//! `Cache-Control: private` for credentialed answers (resolving stages).

use super::{RequestFacts, TenantPolicy};
use crate::cache_policy::{merge_vary, privatize, TTL_STATUSES};
use filter_core::{HeaderEdit, HeaderMap};

/// The response-phase edits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseEdits {
    /// New `Vary` value (replacing every `vary` line).
    pub vary: Option<String>,
    /// New `Cache-Control` value (replacing every line).
    pub cache_control: Option<String>,
    pub private_set: bool,
    pub ttl_set: bool,
}

impl ResponseEdits {
    pub fn is_empty(&self) -> bool {
        self.vary.is_none() && self.cache_control.is_none()
    }

    /// The header writes: `Vary`, then `Cache-Control`.
    pub fn edits(&self) -> Vec<HeaderEdit> {
        let vary = self.vary.iter().map(|v| ("vary", v));
        let cc = self.cache_control.iter().map(|v| ("cache-control", v));
        (vary.chain(cc))
            .map(|(n, v)| HeaderEdit::Set(n.to_string(), v.clone()))
            .collect()
    }

    /// Carries the edits out on a copy of the response headers, as the host would.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for edit in self.edits() {
            edit.apply_to(headers);
        }
    }
}

impl TenantPolicy {
    /// Response phase: for caches (response stages), `Vary` then `Cache-Control` (a route's
    /// lifetime when the response has none, made private when the request was authenticated but
    /// carried no tenant); for the client (resolving stages), `Cache-Control: private` when the
    /// request was credentialed.
    pub fn response_edits(&self, facts: RequestFacts, response: &HeaderMap) -> ResponseEdits {
        let mut edits = ResponseEdits::default();
        if self.stage.shapes_responses() {
            self.shape_for_caches(facts, response, &mut edits);
        }
        if facts.private {
            let private = match &edits.cache_control {
                Some(cc) => privatize(&[cc.as_str()]),
                None => privatize(&response.get_all("cache-control").collect::<Vec<_>>()),
            };
            if private.is_some() {
                edits.cache_control = private;
                edits.private_set = true;
            }
        }
        edits
    }

    fn shape_for_caches(
        &self,
        facts: RequestFacts,
        response: &HeaderMap,
        edits: &mut ResponseEdits,
    ) {
        if self.vary {
            let existing: Vec<&str> = response.get_all("vary").collect();
            edits.vary = merge_vary(&existing, &self.tenant_header);
        }
        let existing: Vec<&str> = response.get_all("cache-control").collect();
        let status = response.get(":status").unwrap_or("");
        let route = facts
            .route
            .and_then(|i| self.cache_routes.get(i))
            // A response that sets a cookie is one user's, not the tenant's: no lifetime for
            // a shared cache (the upstream may still make it cacheable itself).
            .filter(|_| {
                existing.is_empty()
                    && TTL_STATUSES.contains(&status)
                    && !response.contains("set-cookie")
            });
        if facts.authenticated && !facts.tenant {
            let base = match route {
                Some(r) => vec![r.directives()],
                None => existing,
            };
            edits.cache_control = privatize(&base);
            edits.private_set = edits.cache_control.is_some();
            edits.ttl_set = edits.private_set && route.is_some();
        } else if let Some(r) = route {
            edits.cache_control = Some(r.directives().to_string());
            edits.ttl_set = true;
        }
    }
}
