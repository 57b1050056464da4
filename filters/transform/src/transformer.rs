//! The compiled rule table and the per-phase decisions: which rule applies, which header and path
//! edits to make, whether to buffer a body, and the body rewrite itself.

use crate::body_ops::BodyOps;
use crate::config::{
    ActionsConfig, BodyOpsConfig, Config, HeaderOpsConfig, OnUnprocessable, RequestConfig,
    ResponseConfig, ResponseHeadersMode, MAX_MAX_BODY_BYTES,
};
use crate::header_ops::HeaderOps;
use crate::json_rewrite::BodyOutcome;
use crate::query_ops::QueryOps;
use crate::template::{Captured, RequestVars, Var, REQUEST_ID};
use filter_core::route::{
    check_forms, Bound, Choice, Refusal, RouteBinding, RouteFacts, UniqueMap,
};
use filter_core::{parse_json_config, ConfigError, HeaderEdit, HeaderMap, RequestMatcher};

/// The compiled configuration. Built once per configuration, shared by every request.
#[derive(Debug, Clone)]
pub struct Transformer {
    max_body_bytes: usize,
    response_headers_mode: ResponseHeadersMode,
    rules: Vec<Rule>,
    default: Option<Actions>,
    /// Named rules chosen by routes (`edgegate.transform`), as indices into `rules`; `None`:
    /// the rules' matchers decide.
    routes: Option<RouteBinding<usize>>,
}

/// The reserved rule name of routes this filter leaves alone (not even `default`).
pub const NONE: &str = "none";

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    matcher: RequestMatcher,
    actions: Actions,
}

/// What one rule (or the default) does.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub request_headers: HeaderOps,
    pub query: QueryOps,
    pub request_body: Option<BodyOps>,
    pub response_headers: HeaderOps,
    pub response_body: Option<BodyOps>,
    /// What happens to a response body that `response_body` cannot rewrite.
    pub on_unprocessable: OnUnprocessable,
    /// Request values the response header templates need, captured in the request phase.
    response_vars: Vec<Var>,
}

/// Which rule applies to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    /// `rules[i]` matched.
    Rule(usize),
    /// No rule matched; the `default` section applies.
    Default,
}

/// Why a body cannot be rewritten (each reason has its own counters: skipped, refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `content-type` is not `application/json` or `*/*+json`.
    NotJson,
    /// `content-encoding` other than `identity`.
    Encoded,
    /// Larger than `max_body_bytes` (by `content-length` or while buffering).
    Oversize,
    /// Not valid JSON.
    InvalidJson,
    /// Followed by trailers (the body callbacks never see end of stream).
    Trailers,
}

impl SkipReason {
    /// For logs: what was wrong with the message (never its content).
    /// The reason as metric names carry it.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::NotJson => "not_json",
            SkipReason::Encoded => "encoded",
            SkipReason::Oversize => "oversize",
            SkipReason::InvalidJson => "invalid_json",
            SkipReason::Trailers => "trailers",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::NotJson => "the body is not JSON (content-type)",
            SkipReason::Encoded => "the body is content-encoded (content-encoding is not identity)",
            SkipReason::Oversize => "the body is larger than max_body_bytes",
            SkipReason::InvalidJson => "the body is not valid JSON",
            SkipReason::Trailers => "the body is followed by trailers",
        }
    }
}

/// What to do with the body of one direction, decided from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// The rule has no body operations for this direction.
    None,
    /// Body operations exist but cannot apply to this body: it passes untouched.
    Skip(SkipReason),
    /// Body operations exist, cannot apply to this body, and the rule fails closed: a
    /// non-empty body is refused (see [`crate::body_flow`]).
    Refuse(SkipReason),
    /// Buffer the body and rewrite it at end of stream. `content_length` tells whether the
    /// message has a `content-length` header, which must go before the headers are forwarded.
    Buffer { content_length: bool },
}

/// The request-phase decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEdits {
    /// None: no rule matched and there is no default; the filter does nothing for this request.
    pub rule: Option<RuleRef>,
    /// Header edits to apply, in order.
    pub headers: Vec<HeaderEdit>,
    /// The new `:path` when the query operations changed it.
    pub path: Option<String>,
    pub body: BodyPlan,
    /// What the response header templates need from the request.
    pub captured: Captured,
}

impl RequestEdits {
    /// Whether the request's headers change (`transform.headers_rewritten`).
    pub fn rewrites_headers(&self) -> bool {
        !self.headers.is_empty() || self.path.is_some()
    }
}

/// The response-phase decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseEdits {
    pub headers: Vec<HeaderEdit>,
    pub body: BodyPlan,
    /// What the body phase does if the body turns out not to be rewritable.
    pub on_unprocessable: OnUnprocessable,
}

impl Transformer {
    /// Parses and compiles a plugin configuration. Errors name the field and the reason.
    pub fn new(config: &[u8]) -> Result<Transformer, ConfigError> {
        parse_json_config::<Config>(config).and_then(|c| Transformer::compile(&c))
    }

    pub fn compile(config: &Config) -> Result<Transformer, ConfigError> {
        if config.max_body_bytes == 0 || config.max_body_bytes > MAX_MAX_BODY_BYTES {
            return Err(ConfigError::new(
                "max_body_bytes",
                format!("must be between 1 and {MAX_MAX_BODY_BYTES}"),
            ));
        }
        let max_body_bytes = usize::try_from(config.max_body_bytes)
            .map_err(|_| ConfigError::new("max_body_bytes", "too large for this platform"))?;
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let matcher = match &rule.matches {
                Some(m) => m.compile().map_err(|e| e.within(&format!("{at}.match")))?,
                None => RequestMatcher::any(),
            };
            let actions =
                compile_actions(&rule.request, &rule.response).map_err(|e| e.within(&at))?;
            let name = rule.name.clone().unwrap_or_else(|| at.clone());
            rules.push(Rule {
                name,
                matcher,
                actions,
            });
        }
        let routes = compile_named_rules(config, &mut rules)?;
        let default = match &config.default {
            Some(ActionsConfig { request, response }) => {
                Some(compile_actions(request, response).map_err(|e| e.within("default"))?)
            }
            None => None,
        };
        Ok(Transformer {
            max_body_bytes,
            response_headers_mode: config.response_headers_mode,
            rules,
            default,
            routes,
        })
    }

    /// The named rules, when routes choose them.
    pub fn routes(&self) -> Option<&RouteBinding<usize>> {
        self.routes.as_ref()
    }

    /// The rule the route `facts` describe chooses: `None` without named rules (the matchers
    /// choose, [`Self::request_plan_on`]); else the route's rule, no rule for `none`, `default`
    /// for a route that names none. A route naming an undefined rule is refused (500): a strip
    /// it needs may be missing.
    pub fn route_choice(&self, facts: &RouteFacts) -> Result<Option<Option<RuleRef>>, Refusal> {
        let Some(binding) = &self.routes else {
            return Ok(None);
        };
        let rule = match binding.select(facts) {
            Bound::Chosen(Choice::Policy(i)) => binding.policy(i).map(|r| RuleRef::Rule(*r)),
            Bound::Chosen(Choice::Reserved(_)) => None,
            Bound::Unbound | Bound::Exempt => self.default.as_ref().map(|_| RuleRef::Default),
            Bound::Invalid(why) => return Err(Refusal::invalid("transform", &why)),
        };
        Ok(Some(rule))
    }

    /// The request plan for a [`Self::route_choice`]: the matchers' rule, or the route's.
    pub fn request_plan_on(
        &self,
        request: &HeaderMap,
        choice: Option<Option<RuleRef>>,
    ) -> RequestEdits {
        match choice {
            None => self.request_plan(request),
            Some(rule) => self.request_plan_for(request, rule),
        }
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Whether response headers may be held while a response body is checked.
    pub fn response_headers_mode(&self) -> ResponseHeadersMode {
        self.response_headers_mode
    }

    /// The rule's configured name (`rules[i]` when unnamed, `default`).
    pub fn rule_name(&self, rule: RuleRef) -> &str {
        match rule {
            RuleRef::Rule(i) => self.rules.get(i).map_or("", |r| r.name.as_str()),
            RuleRef::Default => "default",
        }
    }

    pub fn actions(&self, rule: RuleRef) -> Option<&Actions> {
        match rule {
            RuleRef::Rule(i) => self.rules.get(i).map(|r| &r.actions),
            RuleRef::Default => self.default.as_ref(),
        }
    }

    /// The first matching rule, else the default (if configured).
    pub fn select(&self, request: &HeaderMap) -> Option<RuleRef> {
        let (method, path, host) = (request.method(), request.path(), request.authority());
        match self
            .rules
            .iter()
            .position(|r| r.matcher.matches_parts(method, path, host, request))
        {
            Some(i) => Some(RuleRef::Rule(i)),
            None => self.default.as_ref().map(|_| RuleRef::Default),
        }
    }

    /// Everything the request-headers phase does, computed from the request headers alone.
    /// The request plan of the rule the matchers select.
    pub fn request_plan(&self, request: &HeaderMap) -> RequestEdits {
        self.request_plan_for(request, self.select(request))
    }

    /// The request plan of `rule` (chosen by [`Self::route_rule`] or [`Self::select`]).
    pub fn request_plan_for(&self, request: &HeaderMap, rule: Option<RuleRef>) -> RequestEdits {
        let Some(actions) = rule.and_then(|r| self.actions(r)) else {
            return RequestEdits {
                rule: None,
                headers: Vec::new(),
                path: None,
                body: BodyPlan::None,
                captured: Captured::default(),
            };
        };
        let vars = RequestVars(request);
        let mut headers = actions.request_headers.plan(request, &vars);
        if actions.response_body.is_some() {
            // Ask the upstream for a body the response operations can rewrite.
            let remove = HeaderEdit::Remove(ACCEPT_ENCODING.to_string());
            if request.contains(ACCEPT_ENCODING) && !headers.contains(&remove) {
                headers.push(remove);
            }
        }
        RequestEdits {
            rule,
            headers,
            path: actions.query.plan(request.path_and_query(), &vars),
            body: match actions.request_body {
                Some(_) => body_plan(request, self.max_body_bytes),
                None => BodyPlan::None,
            },
            captured: if actions.response_vars.is_empty() {
                Captured::default()
            } else {
                Captured::capture(&actions.response_vars, request)
            },
        }
    }

    /// Everything the response-headers phase does. Templates render against `captured`.
    /// True when [`Self::response_plan`] must see the response headers; when false the glue
    /// passes `None` and saves reading the map from the host.
    pub fn response_needs_headers(&self, rule: RuleRef) -> bool {
        self.actions(rule)
            .is_some_and(|a| a.response_body.is_some() || a.response_headers.needs_current_values())
    }

    /// `response` may be `None` only when [`Self::response_needs_headers`] is false.
    pub fn response_plan(
        &self,
        rule: RuleRef,
        captured: &Captured,
        response: Option<&HeaderMap>,
    ) -> ResponseEdits {
        let Some(actions) = self.actions(rule) else {
            return ResponseEdits {
                headers: Vec::new(),
                body: BodyPlan::None,
                on_unprocessable: OnUnprocessable::default(),
            };
        };
        let on_unprocessable = actions.on_unprocessable;
        let Some(response) = response else {
            return ResponseEdits {
                headers: actions.response_headers.plan_blind(captured),
                body: BodyPlan::None,
                on_unprocessable,
            };
        };
        ResponseEdits {
            headers: actions.response_headers.plan(response, captured),
            body: match actions.response_body {
                Some(_) => response_body_plan(response, self.max_body_bytes, on_unprocessable),
                None => BodyPlan::None,
            },
            on_unprocessable,
        }
    }

    pub fn request_body_ops(&self, rule: RuleRef) -> Option<&BodyOps> {
        self.actions(rule).and_then(|a| a.request_body.as_ref())
    }

    pub fn response_body_ops(&self, rule: RuleRef) -> Option<&BodyOps> {
        self.actions(rule).and_then(|a| a.response_body.as_ref())
    }

    /// Rewrites a complete JSON body with `ops`.
    pub fn rewrite_json(&self, ops: &BodyOps, body: &[u8]) -> BodyOutcome {
        ops.rewrite(body)
    }
}

fn compile_actions(
    request: &RequestConfig,
    response: &ResponseConfig,
) -> Result<Actions, ConfigError> {
    let request_headers =
        HeaderOps::compile(&request.headers).map_err(|e| e.within("request.headers"))?;
    let query = QueryOps::compile(&request.query).map_err(|e| e.within("request.query"))?;
    let request_body = compile_body(&request.body, "request.body")?;
    let response_headers =
        HeaderOps::compile(&response.headers).map_err(|e| e.within("response.headers"))?;
    let response_body = compile_body(&response.body, "response.body")?;
    check_unprocessable_rules(request, response, response_body.is_some())?;
    let mut response_vars: Vec<Var> = Vec::new();
    for var in response_headers.vars() {
        if !response_vars.contains(var) {
            response_vars.push(var.clone());
        }
    }
    let request_id = Var::Header(REQUEST_ID.to_string());
    if response_body.is_some() && !response_vars.contains(&request_id) {
        // For the 502 that replaces a response body that cannot be rewritten: the request
        // headers cannot be read from the response phase.
        response_vars.push(request_id);
    }
    Ok(Actions {
        request_headers,
        query,
        request_body,
        response_headers,
        response_body,
        on_unprocessable: response.body.on_unprocessable.unwrap_or_default(),
        response_vars,
    })
}

/// `on_unprocessable` belongs to response body operations; a rule that rewrites response bodies
/// must leave `accept-encoding` to the filter (it removes it from the upstream request).
fn check_unprocessable_rules(
    request: &RequestConfig,
    response: &ResponseConfig,
    rewrites_response_bodies: bool,
) -> Result<(), ConfigError> {
    if request.body.on_unprocessable.is_some() {
        return Err(ConfigError::new(
            "request.body.on_unprocessable",
            "applies to response bodies only (a request body that cannot be rewritten is forwarded unchanged)",
        ));
    }
    if !rewrites_response_bodies {
        if response.body.on_unprocessable.is_some() {
            return Err(ConfigError::new(
                "response.body.on_unprocessable",
                "has no effect without response body operations (strip, rename, add, set)",
            ));
        }
        return Ok(());
    }
    match writes_header(&request.headers, ACCEPT_ENCODING) {
        Some(field) => Err(ConfigError::new(
            format!("request.headers.{field}"),
            "conflicts with response.body: on routes with response body operations the filter removes accept-encoding so that upstreams answer with bodies it can rewrite",
        )),
        None => Ok(()),
    }
}

/// The request header removed on routes with response body operations.
const ACCEPT_ENCODING: &str = "accept-encoding";

/// The operation (`set.<name>`, `rename.<from>`...) that gives the request header `name` a
/// value, if any.
fn writes_header(config: &HeaderOpsConfig, name: &str) -> Option<String> {
    for (word, map) in [
        ("set", &config.set),
        ("add", &config.add),
        ("append", &config.append),
    ] {
        if let Some((key, _)) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            return Some(format!("{word}.{key}"));
        }
    }
    config
        .rename
        .iter()
        .find(|(_, to)| to.eq_ignore_ascii_case(name))
        .map(|(from, _)| format!("rename.{from}"))
}

fn compile_body(config: &BodyOpsConfig, at: &str) -> Result<Option<BodyOps>, ConfigError> {
    if config.is_empty() {
        return Ok(None);
    }
    BodyOps::compile(config).map(Some).map_err(|e| e.within(at))
}

/// `application/json` or any `type/subtype+json`, parameters (charset...) allowed.
pub fn is_json_content_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = media.split_once('/') else {
        return false;
    };
    if kind.is_empty() || kind.contains(char::is_whitespace) {
        return false;
    }
    (kind.eq_ignore_ascii_case("application") && subtype.eq_ignore_ascii_case("json"))
        || (subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Whether a message with these headers can have its body rewritten.
pub fn body_plan(headers: &HeaderMap, max_body_bytes: usize) -> BodyPlan {
    if !headers
        .get("content-type")
        .is_some_and(is_json_content_type)
    {
        return BodyPlan::Skip(SkipReason::NotJson);
    }
    if headers.get_all("content-encoding").any(|v| {
        v.split(',').any(|coding| {
            let coding = coding.trim();
            !coding.is_empty() && !coding.eq_ignore_ascii_case("identity")
        })
    }) {
        return BodyPlan::Skip(SkipReason::Encoded);
    }
    let length = headers.get("content-length");
    if let Some(len) = length.and_then(|v| v.trim().parse::<u64>().ok()) {
        if len > max_body_bytes as u64 {
            return BodyPlan::Skip(SkipReason::Oversize);
        }
    }
    BodyPlan::Buffer {
        content_length: length.is_some(),
    }
}

/// A response's body plan: 204, 304 and `content-length: 0` have no body; a body that cannot be
/// rewritten is refused unless the rule passes it ([`OnUnprocessable`]).
pub fn response_body_plan(
    response: &HeaderMap,
    max_body_bytes: usize,
    on_unprocessable: OnUnprocessable,
) -> BodyPlan {
    if matches!(response.get(":status"), Some("204" | "304"))
        || response
            .get("content-length")
            .is_some_and(|v| v.trim().parse::<u64>() == Ok(0))
    {
        return BodyPlan::None;
    }
    match body_plan(response, max_body_bytes) {
        BodyPlan::Skip(reason) if on_unprocessable == OnUnprocessable::Reject => {
            BodyPlan::Refuse(reason)
        }
        plan => plan,
    }
}

#[cfg(test)]
#[path = "transformer_tests.rs"]
mod tests;

/// `transform_rules`: each named rule compiled into `rules` (matching every request: the route
/// chose it), bound by name. Refused alongside the deprecated matcher `rules`.
fn compile_named_rules(
    config: &Config,
    rules: &mut Vec<Rule>,
) -> Result<Option<RouteBinding<usize>>, ConfigError> {
    let given = ("transform_rules", config.transform_rules.is_some());
    check_forms(
        given,
        "rules",
        !config.routes.is_empty(),
        ("rules", !rules.is_empty()),
    )?;
    let Some(named) = &config.transform_rules else {
        return Ok(None);
    };
    let mut indices = Vec::with_capacity(named.0.len());
    for (name, ActionsConfig { request, response }) in &named.0 {
        let at = format!("transform_rules.{name}");
        let actions = compile_actions(request, response).map_err(|e| e.within(&at))?;
        rules.push(Rule {
            name: name.clone(),
            matcher: RequestMatcher::any(),
            actions,
        });
        indices.push((name.clone(), rules.len() - 1));
    }
    RouteBinding::new(
        "transform",
        &[NONE],
        ("transform_rules", UniqueMap(indices)),
        ("routes", config.routes.clone()),
    )
    .map(Some)
}
