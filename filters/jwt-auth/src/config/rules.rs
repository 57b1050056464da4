//! Validation of the rules: each rule's match, requirement tree (provider names resolved to
//! indices) and authorization.

use super::raw::{RawPolicy, RawRequirement, RawRequirementList, RawRule};
use super::validate::err;
use crate::authz::{Authorization, ClaimCondition};
use crate::rules::{Requirement, Rule};
use filter_core::route::{RouteBinding, UniqueMap};
use filter_core::{ConfigError, RequestMatch};

/// The reserved requirement name of routes that need no token.
pub const PUBLIC: &str = "public";

/// The named requirements (`field`: `requirements`, or native `requirement_map`) and the
/// route-name map, as one binding (`edgegate.jwt`).
pub(super) fn route_binding(
    field: &str,
    requirements: UniqueMap<RawPolicy>,
    routes: UniqueMap<String>,
    providers: &[String],
) -> Result<RouteBinding<Rule>, ConfigError> {
    let mut rules = Vec::with_capacity(requirements.0.len());
    for (name, p) in requirements.0 {
        let field = format!("{field}.{name}");
        if p.requires.is_none() {
            return Err(err(
                format!("{field}.requires"),
                "a named requirement must require a token; routes without one name \"public\"",
            ));
        }
        let rule = RawRule {
            matcher: RequestMatch::default(),
            requires: p.requires,
            requirement_name: None,
            required_scopes: p.required_scopes,
            required_claims: p.required_claims,
        };
        rules.push((
            name,
            rule.validate(providers, &[])
                .map_err(|e| e.within(&field))?,
        ));
    }
    RouteBinding::new(
        "jwt",
        &[PUBLIC],
        (field, UniqueMap(rules)),
        ("routes", routes),
    )
}

/// Native `requirement_map`, validated once for the rules that name its entries.
pub(super) fn requirement_map(
    map: UniqueMap<RawRequirement>,
    providers: &[String],
) -> Result<Vec<(String, Requirement)>, ConfigError> {
    map.0
        .into_iter()
        .map(|(name, r)| {
            let req = r
                .validate(providers)
                .map_err(|e| e.within(&format!("requirement_map.{name}")))?;
            Ok((name, req))
        })
        .collect()
}

/// Native `requirement_map` without rules: the route names the requirement, as native
/// `PerRouteConfig.requirement_name` does.
pub(super) fn map_as_policies(map: UniqueMap<RawRequirement>) -> UniqueMap<RawPolicy> {
    UniqueMap(
        map.0
            .into_iter()
            .map(|(name, r)| {
                let policy = RawPolicy {
                    requires: Some(r),
                    required_scopes: Vec::new(),
                    required_claims: Vec::new(),
                };
                (name, policy)
            })
            .collect(),
    )
}

impl RawRule {
    /// `named`: the native `requirement_map`, for `requirement_name`.
    pub(super) fn validate(
        self,
        providers: &[String],
        named: &[(String, Requirement)],
    ) -> Result<Rule, ConfigError> {
        let matcher = self.matcher.compile().map_err(|e| e.within("match"))?;
        let requirement = match (self.requires, self.requirement_name) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "requirement_name",
                    "give requires or requirement_name, not both",
                ))
            }
            (Some(r), None) => Some(r.validate(providers).map_err(|e| e.within("requires"))?),
            (None, Some(name)) => match named.iter().find(|(n, _)| *n == name) {
                Some((_, r)) => Some(r.clone()),
                None => return Err(super::native::unknown_requirement(&name)),
            },
            (None, None) => None,
        };
        let mut required_claims = Vec::new();
        for (i, c) in self.required_claims.into_iter().enumerate() {
            let field = format!("required_claims[{i}]");
            if c.name.is_empty() {
                return Err(err(format!("{field}.name"), "must not be empty"));
            }
            required_claims.push(match (c.contains, c.equals) {
                (Some(v), None) => ClaimCondition::Contains {
                    claim: c.name,
                    value: v,
                },
                (None, Some(v)) => ClaimCondition::Equals {
                    claim: c.name,
                    value: v,
                },
                _ => return Err(err(field, "give exactly one of contains and equals")),
            });
        }
        let authorization = Authorization {
            required_scopes: self.required_scopes,
            required_claims,
        };
        if requirement.is_none() && !authorization.is_empty() {
            return Err(err(
                "requires",
                "required_scopes and required_claims need a requirement",
            ));
        }
        if authorization
            .required_scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(' '))
        {
            return Err(err(
                "required_scopes",
                "scopes must be non-empty and without spaces",
            ));
        }
        Ok(Rule {
            matcher,
            requirement,
            authorization,
        })
    }
}

impl RawRequirement {
    fn validate(self, providers: &[String]) -> Result<Requirement, ConfigError> {
        if self.extract_only_without_validation.is_some() {
            return Err(err(
                "extract_only_without_validation",
                "claims are never forwarded from a token that was not verified; use \
                 allow_missing_or_failed (verified tokens still give their claims)",
            ));
        }
        let set = [
            self.provider_name.is_some(),
            self.provider_and_audiences.is_some(),
            self.requires_any.is_some(),
            self.requires_all.is_some(),
            self.allow_missing.is_some(),
            self.allow_missing_or_failed.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(err(
                "",
                "give exactly one of provider_name, provider_and_audiences, requires_any, requires_all, allow_missing, allow_missing_or_failed",
            ));
        }
        let index = |field: &str, name: &str| {
            providers
                .iter()
                .position(|p| *p == name)
                .ok_or_else(|| err(field, format!("unknown provider {name:?}")))
        };
        if let Some(name) = self.provider_name {
            return index("provider_name", &name).map(Requirement::Provider);
        }
        if let Some(pa) = self.provider_and_audiences {
            let field = "provider_and_audiences";
            let p = index(&format!("{field}.provider_name"), &pa.provider_name)?;
            if let Some(i) = pa.audiences.iter().position(String::is_empty) {
                return Err(err(format!("{field}.audiences[{i}]"), "must not be empty"));
            }
            return Ok(Requirement::ProviderAudiences(p, pa.audiences.into()));
        }
        let list = |l: RawRequirementList, field: &str| -> Result<Vec<Requirement>, ConfigError> {
            if l.requirements.is_empty() {
                return Err(err(format!("{field}.requirements"), "must not be empty"));
            }
            l.requirements
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    r.validate(providers)
                        .map_err(|e| e.within(&format!("{field}.requirements[{i}]")))
                })
                .collect()
        };
        if let Some(l) = self.requires_any {
            return list(l, "requires_any").map(Requirement::Any);
        }
        if let Some(l) = self.requires_all {
            return list(l, "requires_all").map(Requirement::All);
        }
        if self.allow_missing.is_some() {
            return Ok(Requirement::AllowMissing);
        }
        Ok(Requirement::AllowMissingOrFailed)
    }
}
