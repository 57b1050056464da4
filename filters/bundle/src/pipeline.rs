//! The stages after authentication, on an in-VM copy of the headers: tenant_cache_key, then
//! transform, each seeing the edits of the stages before it, as three filters in a row would.
//! What a stage does on the host (counters, a local reply, body buffering) is behind
//! [`StageEffects`]: the plugin backs it with the filters' host helpers, tests with a recorder.

use crate::config::BundleConfig;
use filter_core::{HeaderEdit, HeaderMap};
use std::sync::Arc;
use tenant_cache_key::{OnRoute, RequestFacts, RequestPlan, ResponseEdits, TenantPolicy};
use transform::{RequestEdits, RuleRef, Transformer};

/// The host's part of the stages.
pub trait StageEffects {
    /// tenant_cache_key planned this (already applied to the copy): count it, answer the
    /// request when the plan rejects it, and count the stream it opens against the stream caps
    /// (answering it when a cap is reached). False when the request was answered.
    fn tenant(&mut self, plan: &RequestPlan<'_>) -> bool;
    /// transform planned this for the request: keep its per-request state (rule, captured
    /// values, body buffering) and return the edits to make to the request headers.
    fn transform(&mut self, plan: RequestEdits) -> Vec<HeaderEdit>;
    /// The host's clock, Unix ms (tenant_cache_key's API keys lapse at their `not_after`).
    fn now_ms(&self) -> u64;
    /// A host property (tenant_cache_key's `client_cert` source reads the connection's peer
    /// certificate).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
}

/// What the matched route chose for the stages after jwt_auth (each stage's own choice when it
/// binds policies to routes, its matchers' otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnRoutes<'a> {
    pub tenant: OnRoute<'a>,
    /// [`Transformer::route_choice`]: `None` when transform's matchers choose.
    pub transform: Option<Option<RuleRef>>,
}

impl OnRoutes<'_> {
    /// Every stage chooses by its matchers.
    pub const MATCHERS: OnRoutes<'static> = OnRoutes {
        tenant: OnRoute::Matchers,
        transform: None,
    };
}

/// How a request leaves the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// On to the upstream with the edited headers. `tenant_facts` is what tenant_cache_key's
    /// response phase needs (None when it has nothing to do: the stage does not shape responses
    /// for caches and the answer need not leave private).
    Continue { tenant_facts: Option<RequestFacts> },
    /// A stage answered the request (a local reply was sent).
    Answered,
}

/// The compiled stages, shared by every request of a VM.
#[derive(Debug)]
pub struct Pipeline {
    pub jwt_auth: Option<Arc<jwt_auth::config::FilterConfig>>,
    pub tenant: Option<TenantPolicy>,
    pub transform: Option<Transformer>,
}

impl Pipeline {
    /// The stages that run on the in-VM copy (the ratelimit stage's configuration goes to its
    /// limiter).
    pub fn new(c: BundleConfig) -> (Self, Option<ratelimit::Config>, Option<aggregate::Config>) {
        let pipeline = Pipeline {
            jwt_auth: c.jwt_auth,
            tenant: c.tenant,
            transform: c.transform,
        };
        (pipeline, c.ratelimit, c.aggregate)
    }
}

impl Pipeline {
    /// Runs the stages after jwt_auth allowed the request with `auth` edits (none when there is
    /// no jwt_auth stage), editing `headers` in place.
    pub fn after_auth(
        &self,
        headers: &mut HeaderMap,
        auth: &[HeaderEdit],
        on: OnRoutes<'_>,
        fx: &mut dyn StageEffects,
    ) -> Flow {
        for edit in auth {
            edit.apply_to(headers);
        }
        let mut tenant_facts = None;
        if let Some(policy) = &self.tenant {
            let ctx = policy.context(fx.now_ms(), |path| fx.property(path));
            let plan = policy.request_plan_on(headers, on.tenant, &ctx);
            plan.apply_to(headers);
            if !fx.tenant(&plan) {
                return Flow::Answered;
            }
            // A request stage edits responses too: the answer to a credentialed request leaves
            // the gateway private (as tenant_cache_key's own plugin does).
            if policy.edits_responses(&plan.facts) {
                tenant_facts = Some(plan.facts);
            }
        }
        if let Some(t) = &self.transform {
            for edit in fx.transform(t.request_plan_on(headers, on.transform)) {
                edit.apply_to(headers);
            }
        }
        Flow::Continue { tenant_facts }
    }

    /// Response headers, after transform's response edits are on the copy: tenant_cache_key's
    /// response phase (`Vary` and lifetimes for caches when the stage shapes responses;
    /// `Cache-Control: private` for a credentialed request), which sits before transform in the
    /// chain and so sees the response after it. Returns the edits made, for the counters.
    pub fn tenant_response(
        &self,
        facts: RequestFacts,
        response: &mut HeaderMap,
    ) -> Option<ResponseEdits> {
        let edits = self.tenant.as_ref()?.response_edits(facts, response);
        edits.apply_to(response);
        Some(edits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_auth::engine::{Authenticator, NoRevocation, Outcome};
    use jwt_auth::rules::Governing;
    use jwt_auth::testing::{jwks, token, NoRemote};
    use serde_json::json;

    /// The jwt_auth configuration of envoy/gateway.yaml with local keys and the tenant claim
    /// in `x-jwt-tenant` for the tenant stage's claim source.
    fn config() -> BundleConfig {
        let v = json!({
            "jwt_auth": {
                "providers": { "idp": {
                    "issuer": "https://idp",
                    "audiences": ["api"],
                    "local_jwks": { "inline": jwks(false).to_string() },
                    "from_headers": [{ "name": "authorization", "value_prefix": "Bearer " }],
                    "claim_to_headers": [{ "header_name": "x-org-id", "claim_name": "org.id" }],
                    "tenant_claim": "tenant",
                    "tenant_header": "x-jwt-tenant",
                }},
                "rules": [{ "match": { "path_prefix": "/" }, "requires": { "provider_name": "idp" } }],
            },
            "tenant_cache_key": {
                "stage": "both",
                "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
                "unresolved": { "action": "reject" },
            },
            "transform": {
                "rules": [{
                    "match": { "headers": [{ "name": "x-tenant-id", "exact": "acme" }] },
                    "request": { "headers": {
                        "set": { "x-route": "acme-${header.x-tenant-id}-${header.x-user-id}" },
                        "remove": ["x-debug"],
                    }},
                    "response": { "headers": { "set": { "x-gateway": "edgegate" } } },
                }],
            },
        });
        BundleConfig::parse(v.to_string().as_bytes()).unwrap()
    }

    /// [`config`] with another tenant_cache_key section.
    fn config_with_tenant(tenant: serde_json::Value) -> BundleConfig {
        let mut c = config();
        c.tenant = Some(TenantPolicy::new(tenant.to_string().as_bytes()).unwrap());
        c
    }

    /// Records what reached the host's side of each stage.
    #[derive(Default)]
    struct Recorder {
        tenant_seen: Option<String>,
        stream: Option<tenant_cache_key::StreamClaim>,
        transform_rule: bool,
        reject: bool,
    }

    impl StageEffects for Recorder {
        fn tenant(&mut self, plan: &RequestPlan<'_>) -> bool {
            self.stream = plan.stream.clone();
            self.tenant_seen = plan
                .set
                .iter()
                .find(|(n, _)| *n == "x-tenant-id")
                .map(|(_, v)| v.clone());
            !(self.reject || matches!(plan.outcome, tenant_cache_key::Outcome::Reject { .. }))
        }
        fn transform(&mut self, plan: RequestEdits) -> Vec<HeaderEdit> {
            self.transform_rule = plan.rule.is_some();
            plan.headers
        }
        fn now_ms(&self) -> u64 {
            now() * 1000
        }
        fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
            None
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// jwt_auth's decision on `headers`, as the plugin gets it from its `WorkerAuth`.
    fn authenticate(p: &Pipeline, headers: &HeaderMap) -> (Outcome, Vec<HeaderEdit>) {
        let mut auth = Authenticator::new(Arc::clone(p.jwt_auth.as_ref().unwrap()), 7);
        let d = auth.authenticate(
            headers,
            Governing::Matchers,
            now() * 1000,
            &mut NoRemote,
            &NoRevocation,
        );
        (d.outcome, d.edits)
    }

    fn request(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::from([
            (":method", "GET"),
            (":path", "/api/users/1"),
            (":authority", "gw"),
            ("x-tenant-id", "spoofed"),
            ("x-user-id", "spoofed"),
            ("x-jwt-tenant", "spoofed"),
            ("x-debug", "1"),
        ]);
        if let Some(t) = token {
            h.append("authorization", &format!("Bearer {t}"));
        }
        h
    }

    #[test]
    fn each_stage_sees_the_edits_of_the_stages_before_it() {
        let p = Pipeline::new(config()).0;
        let mut headers = request(Some(&token("ES256", now())));
        let (outcome, edits) = authenticate(&p, &headers);
        assert_eq!(outcome, Outcome::Allow);
        let mut fx = Recorder::default();
        let flow = p.after_auth(&mut headers, &edits, OnRoutes::MATCHERS, &mut fx);
        // tenant_cache_key resolved from jwt_auth's claim header, not the client's copies.
        assert_eq!(fx.tenant_seen.as_deref(), Some("acme"));
        // transform matched on tenant's x-tenant-id and rendered jwt_auth's x-user-id.
        assert!(fx.transform_rule);
        assert_eq!(headers.get("x-route"), Some("acme-acme-user-1"));
        assert_eq!(headers.get_all("x-tenant-id").collect::<Vec<_>>(), ["acme"]);
        assert_eq!(headers.get_all("x-user-id").collect::<Vec<_>>(), ["user-1"]);
        assert_eq!(headers.get("x-org-id"), Some("7"));
        assert!(!headers.contains("x-debug"));
        let Flow::Continue {
            tenant_facts: Some(facts),
        } = flow
        else {
            panic!("{flow:?}");
        };
        // jwt_auth removed the token (it does not forward it), so tenant sees no credential.
        assert!(facts.tenant && !facts.authenticated);

        // Response: transform's edits are on the copy first; tenant's stage adds Vary.
        let mut response = HeaderMap::from([(":status", "200"), ("vary", "accept-encoding")]);
        response.set("x-gateway", "edgegate");
        let edits = p.tenant_response(facts, &mut response).unwrap();
        assert!(edits.vary.is_some());
        assert_eq!(response.get("vary"), Some("accept-encoding, x-tenant-id"));
        assert_eq!(response.get("x-gateway"), Some("edgegate"));
    }

    #[test]
    fn a_denied_or_rejected_request_stops_the_chain() {
        let p = Pipeline::new(config()).0;
        // No token: jwt_auth denies, the pipeline is never entered (the plugin replies 401).
        let (outcome, _) = authenticate(&p, &request(None));
        assert!(matches!(outcome, Outcome::Deny(d) if d.status() == 401));

        // Tenant rejects: transform never runs and the request is answered.
        let mut headers = request(Some(&token("ES256", now())));
        let (_, edits) = authenticate(&p, &headers);
        let mut fx = Recorder {
            reject: true,
            ..Recorder::default()
        };
        assert_eq!(
            p.after_auth(&mut headers, &edits, OnRoutes::MATCHERS, &mut fx),
            Flow::Answered
        );
        assert!(!fx.transform_rule);
    }

    #[test]
    fn without_jwt_auth_the_spoofed_claim_header_is_what_tenant_sees() {
        // The bundle adds no checks of its own: without the jwt_auth section, the tenant stage
        // reads x-jwt-tenant as sent, exactly as tenant_cache_key alone would.
        let mut c = config();
        c.jwt_auth = None;
        let p = Pipeline::new(c).0;
        let mut headers = request(None);
        let mut fx = Recorder::default();
        p.after_auth(&mut headers, &[], OnRoutes::MATCHERS, &mut fx);
        assert_eq!(fx.tenant_seen.as_deref(), Some("spoofed"));
        assert!(!fx.transform_rule, "x-tenant-id is 'spoofed', not acme");
    }

    /// The request-stage section of envoy/gateway.yaml, with stream caps on /api/events.
    fn request_stage() -> serde_json::Value {
        json!({
            "stage": "request",
            "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
            "unresolved": { "action": "reject" },
            "credential_headers": ["authorization", "x-user-id"],
            "streams": {
                "routes": [{ "match": { "path_prefix": "/api/events" } }],
                "per_consumer": 8,
                "per_tenant": 32,
            },
        })
    }

    #[test]
    fn a_request_stage_bundle_makes_the_answer_to_a_credentialed_request_private() {
        // The request stage alone (its response stage is another instance, on the cluster):
        // the answer still leaves private, as with tenant_cache_key's own plugin.
        let p = Pipeline::new(config_with_tenant(request_stage())).0;
        let mut headers = request(Some(&token("ES256", now())));
        let (_, edits) = authenticate(&p, &headers);
        let flow = p.after_auth(
            &mut headers,
            &edits,
            OnRoutes::MATCHERS,
            &mut Recorder::default(),
        );
        let Flow::Continue {
            tenant_facts: Some(facts),
        } = flow
        else {
            panic!("no response phase for a credentialed request: {flow:?}");
        };
        assert!(facts.private);
        let mut response = HeaderMap::from([
            (":status", "200"),
            ("cache-control", "public, max-age=60, s-maxage=600"),
        ]);
        let edits = p.tenant_response(facts, &mut response).unwrap();
        assert!(edits.private_set && edits.vary.is_none());
        assert_eq!(response.get("cache-control"), Some("private, max-age=60"));
    }

    #[test]
    fn the_stream_caps_count_the_verified_tenant_and_user_not_the_spoofed_ones() {
        let p = Pipeline::new(config_with_tenant(request_stage())).0;
        let mut headers = request(Some(&token("ES256", now())));
        headers.set(":path", "/api/events/orders");
        let (_, edits) = authenticate(&p, &headers);
        let mut fx = Recorder::default();
        p.after_auth(&mut headers, &edits, OnRoutes::MATCHERS, &mut fx);
        let stream = fx.stream.expect("an events request opens a stream");
        assert_eq!(stream.tenant.as_deref(), Some("acme"));
        assert_eq!(
            stream.consumer,
            Some(tenant_cache_key::streams::ConsumerId::of("user-1")),
            "jwt_auth's x-user-id, not the client's 'spoofed'"
        );

        let mut other = request(Some(&token("ES256", now())));
        let (_, edits) = authenticate(&p, &other);
        let mut fx = Recorder::default();
        p.after_auth(&mut other, &edits, OnRoutes::MATCHERS, &mut fx);
        assert_eq!(fx.stream, None, "/api/users is no stream route");
    }
}
