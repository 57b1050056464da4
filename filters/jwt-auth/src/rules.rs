//! Route rules and requirement evaluation: which provider(s) a request must satisfy
//! (`provider_name`, `requires_any`, `requires_all`, `allow_missing`,
//! `allow_missing_or_failed`, or nothing for a public route), first matching rule wins.

use crate::authz::Authorization;
use crate::outcome::Denial;
use filter_core::{HeaderMap, RequestMatcher};

/// Index of a provider in [`crate::config::FilterConfig::providers`].
pub type ProviderId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Provider(ProviderId),
    /// The provider with these audiences in place of its own (`provider_and_audiences`).
    ProviderAudiences(ProviderId, std::sync::Arc<[String]>),
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
    /// A missing token is fine; a present one must verify with some provider.
    AllowMissing,
    /// Never fails; verified tokens still produce claim headers.
    AllowMissingOrFailed,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: RequestMatcher,
    /// `None`: public route (headers are still sanitized).
    pub requirement: Option<Requirement>,
    pub authorization: Authorization,
}

/// Which rule governs a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governing {
    /// The deprecated matchers: the first matching rule of `rules`.
    Matchers,
    /// The named requirement the route chose (its index in the route binding).
    Named(usize),
    /// No token needed: the route is `public`, or Envoy answers it itself.
    Public,
}

/// First matching rule; no match means no authentication (like Envoy's jwt_authn).
pub fn find_rule<'a>(rules: &'a [Rule], headers: &HeaderMap) -> Option<&'a Rule> {
    rules.iter().find(|r| r.matcher.matches(headers))
}

/// One provider's answer for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderCheck {
    Verified,
    Missing,
    Failed(Denial),
    /// Its keys are being fetched; ask again when they arrive.
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The providers whose tokens verified (and so feed claim headers), in requirement order.
    Allow(Vec<ProviderId>),
    Deny(Denial),
    Pending,
}

/// The audiences a provider's token is checked against: `None` for the provider's own.
pub type Audiences<'a> = Option<&'a [String]>;

/// Evaluates a requirement. `check` verifies a provider's token (the engine memoizes the
/// verification per provider, so it may do the work) and then checks its audience.
pub fn evaluate(
    req: &Requirement,
    providers: usize,
    check: &mut dyn FnMut(ProviderId, Audiences<'_>) -> ProviderCheck,
) -> Verdict {
    let single = |p: ProviderId, c: ProviderCheck| match c {
        ProviderCheck::Verified => Verdict::Allow(vec![p]),
        ProviderCheck::Missing => Verdict::Deny(Denial::MISSING),
        ProviderCheck::Failed(d) => Verdict::Deny(d),
        ProviderCheck::Pending => Verdict::Pending,
    };
    match req {
        Requirement::ProviderAudiences(p, auds) => single(*p, check(*p, Some(auds))),
        Requirement::Provider(p) => single(*p, check(*p, None)),
        Requirement::Any(list) => {
            let mut pending = false;
            let mut denial: Option<Denial> = None;
            for r in list {
                match evaluate(r, providers, check) {
                    Verdict::Allow(v) => return Verdict::Allow(v),
                    Verdict::Pending => pending = true,
                    Verdict::Deny(d) => {
                        denial = Some(denial.map_or(d, |prev| prev.more_specific(d)))
                    }
                }
            }
            if pending {
                Verdict::Pending
            } else {
                Verdict::Deny(denial.unwrap_or(Denial::MISSING))
            }
        }
        Requirement::All(list) => {
            let mut pending = false;
            let mut verified = Vec::new();
            for r in list {
                match evaluate(r, providers, check) {
                    Verdict::Allow(v) => {
                        for p in v {
                            if !verified.contains(&p) {
                                verified.push(p);
                            }
                        }
                    }
                    Verdict::Pending => pending = true,
                    Verdict::Deny(d) => return Verdict::Deny(d),
                }
            }
            if pending {
                Verdict::Pending
            } else {
                Verdict::Allow(verified)
            }
        }
        Requirement::AllowMissing => {
            let mut pending = false;
            let mut failure: Option<Denial> = None;
            for p in 0..providers {
                match check(p, None) {
                    ProviderCheck::Verified => return Verdict::Allow(vec![p]),
                    ProviderCheck::Missing => {}
                    ProviderCheck::Failed(d) => failure = failure.or(Some(d)),
                    ProviderCheck::Pending => pending = true,
                }
            }
            match (pending, failure) {
                (true, _) => Verdict::Pending,
                (false, Some(d)) => Verdict::Deny(d),
                (false, None) => Verdict::Allow(Vec::new()),
            }
        }
        Requirement::AllowMissingOrFailed => {
            // Never waits for keys: the request passes either way.
            Verdict::Allow(
                (0..providers)
                    .filter(|p| check(*p, None) == ProviderCheck::Verified)
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimError;
    use std::collections::HashMap;

    fn run(req: &Requirement, answers: &[ProviderCheck]) -> (Verdict, Vec<ProviderId>) {
        let mut asked = Vec::new();
        let mut memo: HashMap<ProviderId, ProviderCheck> = HashMap::new();
        let v = evaluate(req, answers.len(), &mut |p, _| {
            memo.entry(p)
                .or_insert_with(|| {
                    asked.push(p);
                    answers[p].clone()
                })
                .clone()
        });
        (v, asked)
    }

    use ProviderCheck::{Failed, Missing, Pending, Verified};
    use Requirement::*;

    fn expired() -> Denial {
        ClaimError::Expired.into()
    }

    #[test]
    fn single_provider() {
        assert_eq!(run(&Provider(0), &[Verified]).0, Verdict::Allow(vec![0]));
        assert_eq!(
            run(&Provider(0), &[Missing]).0,
            Verdict::Deny(Denial::MISSING)
        );
        assert_eq!(
            run(&Provider(1), &[Missing, Failed(expired())]).0,
            Verdict::Deny(expired())
        );
        assert_eq!(run(&Provider(0), &[Pending]).0, Verdict::Pending);
    }

    #[test]
    fn requires_any_short_circuits_and_prefers_real_errors() {
        let any = Any(vec![Provider(0), Provider(1)]);
        let (v, asked) = run(&any, &[Verified, Verified]);
        assert_eq!((v, asked), (Verdict::Allow(vec![0]), vec![0]));
        assert_eq!(run(&any, &[Missing, Verified]).0, Verdict::Allow(vec![1]));
        assert_eq!(
            run(&any, &[Failed(expired()), Missing]).0,
            Verdict::Deny(expired())
        );
        assert_eq!(
            run(&any, &[Missing, Failed(expired())]).0,
            Verdict::Deny(expired())
        );
        assert_eq!(
            run(&any, &[Missing, Missing]).0,
            Verdict::Deny(Denial::MISSING)
        );
        assert_eq!(run(&any, &[Pending, Missing]).0, Verdict::Pending);
        assert_eq!(run(&any, &[Pending, Verified]).0, Verdict::Allow(vec![1]));
    }

    #[test]
    fn requires_all() {
        let all = All(vec![Provider(0), Provider(1)]);
        assert_eq!(
            run(&all, &[Verified, Verified]).0,
            Verdict::Allow(vec![0, 1])
        );
        assert_eq!(
            run(&all, &[Verified, Missing]).0,
            Verdict::Deny(Denial::MISSING)
        );
        assert_eq!(
            run(&all, &[Pending, Failed(expired())]).0,
            Verdict::Deny(expired())
        );
        assert_eq!(run(&all, &[Pending, Verified]).0, Verdict::Pending);
    }

    #[test]
    fn allow_missing_variants() {
        assert_eq!(
            run(&AllowMissing, &[Missing, Missing]).0,
            Verdict::Allow(vec![])
        );
        assert_eq!(
            run(&AllowMissing, &[Missing, Verified]).0,
            Verdict::Allow(vec![1])
        );
        assert_eq!(
            run(&AllowMissing, &[Failed(expired()), Missing]).0,
            Verdict::Deny(expired())
        );
        assert_eq!(
            run(&AllowMissing, &[Failed(expired()), Verified]).0,
            Verdict::Allow(vec![1])
        );
        assert_eq!(run(&AllowMissing, &[Pending, Missing]).0, Verdict::Pending);
        let or_failed = AllowMissingOrFailed;
        assert_eq!(
            run(&or_failed, &[Failed(expired()), Pending]).0,
            Verdict::Allow(vec![])
        );
        assert_eq!(
            run(&or_failed, &[Verified, Missing]).0,
            Verdict::Allow(vec![0])
        );
        // Envoy's classic "token optional but must be valid for A".
        let opt = Any(vec![Provider(0), AllowMissing]);
        assert_eq!(run(&opt, &[Missing]).0, Verdict::Allow(vec![]));
        assert_eq!(run(&opt, &[Failed(expired())]).0, Verdict::Deny(expired()));
    }
}
