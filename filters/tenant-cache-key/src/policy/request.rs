//! The request phase: strip the client's copies of the owned headers, resolve the tenant, remove
//! the user's identity on cache routes, and note what the response phase needs.

use super::{OnRoute, Outcome, RequestFacts, TenantPolicy, Unresolved};
use crate::cache_policy::bypass_request;
use crate::config::UNVERIFIED_PREFIX;
use crate::sources::{Context, Resolution};
use crate::streams::StreamClaim;
use filter_core::{HeaderEdit, HeaderMap};

/// The request-phase edits, in the order the glue applies them: removals, then sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan<'p> {
    /// Headers whose every value is removed.
    pub remove: Vec<&'p str>,
    /// Headers set to one value.
    pub set: Vec<(&'p str, String)>,
    /// A client sent the tenant or plan header (removed).
    pub forged: bool,
    /// The request carries a credential but no tenant: `Cache-Control: no-cache` was added so a
    /// shared cache asks the upstream instead of answering from an entry.
    pub cache_bypassed: bool,
    /// The request is on a cache route and carried identity headers (removed).
    pub identity_removed: bool,
    pub outcome: Outcome,
    pub facts: RequestFacts,
    /// The request opens a long-lived stream on a `streams` route (and is not refused here):
    /// the host counts it against the caps before it goes on, and releases it when it ends.
    pub stream: Option<StreamClaim>,
}

impl RequestPlan<'_> {
    /// The plan's header writes: the removals, then the sets.
    pub fn edits(&self) -> Vec<HeaderEdit> {
        let removals = self
            .remove
            .iter()
            .map(|n| HeaderEdit::Remove(n.to_string()));
        let sets = (self.set.iter()).map(|(n, v)| HeaderEdit::Set(n.to_string(), v.clone()));
        removals.chain(sets).collect()
    }

    /// Carries the plan's edits out on a copy of the headers, as the host would.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for edit in self.edits() {
            edit.apply_to(headers);
        }
    }
}

impl TenantPolicy {
    /// Request phase: strip client copies of the headers this filter owns, resolve, remove the
    /// user's identity on cache routes, and note what the response phase needs.
    /// The deprecated matchers decide (a configuration without route policies). No clock is
    /// given, so an API key with a `not_after` never verifies here: the plugins call
    /// [`Self::request_plan_on`] with the host's time.
    pub fn request_plan(&self, headers: &HeaderMap) -> RequestPlan<'_> {
        self.request_plan_on(headers, OnRoute::Matchers, &Context::at(u64::MAX))
    }

    /// [`Self::request_plan`] on what the matched route asks of this filter, in `ctx` (the
    /// host's clock: API keys lapse at their `not_after`; the verified client certificate).
    pub fn request_plan_on(
        &self,
        headers: &HeaderMap,
        on: OnRoute<'_>,
        ctx: &Context,
    ) -> RequestPlan<'_> {
        let route = self.cache_route(headers, on);
        let mut remove = self.identity_removals(headers, route);
        let identity_removed = !remove.is_empty();
        let facts = RequestFacts {
            tenant: false,
            authenticated: self.stage.shapes_responses() && self.authenticated(headers),
            route,
            private: false,
        };
        if on == OnRoute::Exempt && self.stage.resolves() {
            return self.exempt_plan(headers, remove, facts);
        }
        if !self.stage.resolves() {
            let tenant = headers
                .get(&self.tenant_header)
                .is_some_and(|v| !v.is_empty());
            return RequestPlan {
                remove,
                set: Vec::new(),
                forged: false,
                cache_bypassed: false,
                identity_removed,
                outcome: Outcome::NotResolving,
                facts: RequestFacts { tenant, ..facts },
                stream: None,
            };
        }

        let owned = remove.len();
        remove.push(self.tenant_header.as_str());
        remove.extend(self.plan_header.as_deref());
        remove.retain(|name| headers.contains(name));
        let forged = remove.len() > owned;
        let mut set = Vec::new();
        let outcome = self.resolve_into(headers, ctx, &mut remove, &mut set);
        let authenticated = self.authenticated(headers);
        let mut cache_bypassed = false;
        if outcome == Outcome::Anonymous && authenticated {
            // Envoy's cache skips requests with Authorization by itself; any other credential
            // the gateway could not map to a tenant must not be answered from the shared
            // (tenant-less) entry either.
            let existing: Vec<&str> = headers.get_all("cache-control").collect();
            if let Some(value) = bypass_request(&existing) {
                set.push(("cache-control", value));
            }
            cache_bypassed = true;
        }
        let credentialed =
            authenticated || matches!(outcome, Outcome::Resolved(k) if k.is_credential());
        let public = match on {
            OnRoute::Matchers => self.public_routes.iter().any(|m| m.matches(headers)),
            OnRoute::Policy(p) => p.public,
            OnRoute::Exempt => false,
        };
        let private = credentialed && !public;
        let stream = self.stream_claim(headers, outcome, &set, on);
        RequestPlan {
            remove,
            set,
            forged,
            cache_bypassed,
            identity_removed,
            outcome,
            facts: RequestFacts {
                tenant: matches!(outcome, Outcome::Resolved(_)),
                private,
                ..facts
            },
            stream,
        }
    }

    /// The stream a request that goes on opens on a `streams` route, with the tenant as it is
    /// written to the tenant header.
    fn stream_claim(
        &self,
        headers: &HeaderMap,
        outcome: Outcome,
        set: &[(&str, String)],
        on: OnRoute<'_>,
    ) -> Option<StreamClaim> {
        if !matches!(outcome, Outcome::Resolved(_) | Outcome::Anonymous) {
            return None;
        }
        let tenant = set
            .iter()
            .find(|(name, _)| *name == self.tenant_header)
            .map(|(_, value)| value.as_str());
        let streams = self.streams.as_ref()?;
        match on {
            OnRoute::Matchers => streams.claim(headers, tenant),
            OnRoute::Policy(p) if p.stream => Some(streams.claim_stream(headers, tenant)),
            OnRoute::Policy(_) | OnRoute::Exempt => None,
        }
    }

    /// A route exempt from this filter: the client's tenant and plan headers go, nothing is
    /// resolved, nothing counted.
    fn exempt_plan<'p>(
        &'p self,
        headers: &HeaderMap,
        mut remove: Vec<&'p str>,
        facts: RequestFacts,
    ) -> RequestPlan<'p> {
        let owned = remove.len();
        remove.push(self.tenant_header.as_str());
        remove.extend(self.plan_header.as_deref());
        remove.retain(|name| headers.contains(name));
        RequestPlan {
            forged: remove.len() > owned,
            remove,
            set: Vec::new(),
            cache_bypassed: false,
            identity_removed: owned > 0,
            outcome: Outcome::Exempt,
            facts,
            stream: None,
        }
    }

    /// Resolves the tenant and plans its headers: the tenant (in the unverified namespace when
    /// no credential proved it and the policy has credential sources), the plan, the consumed
    /// API key.
    fn resolve_into<'p>(
        &'p self,
        headers: &HeaderMap,
        ctx: &Context,
        remove: &mut Vec<&'p str>,
        set: &mut Vec<(&'p str, String)>,
    ) -> Outcome {
        match self.resolve(headers, ctx) {
            Resolution::Tenant(r) => {
                remove.extend(r.consumed);
                let tenant = if self.namespace_unverified && !r.source.is_credential() {
                    format!("{UNVERIFIED_PREFIX}{}", r.tenant)
                } else {
                    r.tenant
                };
                set.push((self.tenant_header.as_str(), tenant));
                if let (Some(header), Some(plan)) = (self.plan_header.as_deref(), r.plan) {
                    set.push((header, plan));
                }
                Outcome::Resolved(r.source)
            }
            Resolution::Invalid(why) => Outcome::InvalidApiKey(why),
            Resolution::Skip => match self.unresolved {
                Unresolved::Anonymous => Outcome::Anonymous,
                Unresolved::Reject { status } => Outcome::Reject { status },
            },
        }
    }

    /// The first source that decides: a tenant, or a credential that does not verify.
    fn resolve(&self, headers: &HeaderMap, ctx: &Context) -> Resolution<'_> {
        for source in &self.sources {
            match source.resolve(headers, self.max_len, ctx) {
                Resolution::Skip => continue,
                decided => return decided,
            }
        }
        Resolution::Skip
    }

    /// The request's cache route (stages that shape responses): the first that matches, or
    /// the route policy's.
    fn cache_route(&self, headers: &HeaderMap, on: OnRoute<'_>) -> Option<usize> {
        if !self.stage.shapes_responses() {
            return None;
        }
        match on {
            OnRoute::Matchers => {
                (self.cache_routes.iter()).position(|r| r.matcher().matches(headers))
            }
            OnRoute::Policy(p) => p.cache.filter(|i| {
                (self.cache_routes.get(*i)).is_some_and(|r| r.matcher().matches(headers))
            }),
            OnRoute::Exempt => None,
        }
    }

    /// On a cache route, the identity headers the request carries: the answer is stored once
    /// per tenant, so the upstream must not see who the user is.
    fn identity_removals(&self, headers: &HeaderMap, route: Option<usize>) -> Vec<&str> {
        if route.is_none() {
            return Vec::new();
        }
        self.identity_headers
            .iter()
            .map(String::as_str)
            .filter(|h| headers.contains(h))
            .collect()
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        self.credential_headers.iter().any(|h| headers.contains(h))
    }
}
