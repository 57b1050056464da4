//! Registered-claim checks (`iss`, `aud`, `sub`, `exp`, `nbf`, `iat`, lifetime) against a
//! provider's policy, with the current time passed in.

use filter_core::StringMatcher;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct ClaimPolicy {
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When non-empty, `aud` (string or array) must contain one of them.
    pub audiences: Vec<String>,
    /// `sub` must match (Envoy's `subjects`, a StringMatcher).
    pub subjects: Option<StringMatcher>,
    pub require_expiration: bool,
    /// When set, `exp` is required and `exp - (iat or now)` may not exceed it (seconds).
    pub max_lifetime_secs: Option<u64>,
    pub clock_skew_secs: u64,
}

impl Default for ClaimPolicy {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            subjects: None,
            require_expiration: false,
            max_lifetime_secs: None,
            clock_skew_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("token is expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token has no expiration")]
    MissingExp,
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    #[error("a time claim is not a number")]
    BadTimeClaim,
    #[error("issuer is not accepted")]
    WrongIssuer,
    /// 403: the token is genuine but not meant for this audience.
    #[error("audience is not accepted")]
    WrongAudience,
    /// 403: the token is genuine but its subject is not allowed here.
    #[error("subject is not accepted")]
    WrongSubject,
    /// An identity claim (`sub`, a `claim_to_headers` claim, the tenant claim) is missing or
    /// not a usable value ([`crate::identity`]).
    #[error("an identity claim is missing or unusable")]
    InvalidIdentity,
}

impl ClaimError {
    /// Audience and subject failures are authorization failures (403), the others 401.
    pub fn is_forbidden(self) -> bool {
        matches!(self, ClaimError::WrongAudience | ClaimError::WrongSubject)
    }
}

/// Reads a NumericDate (RFC 7519 §2: seconds, possibly fractional). Fractions are truncated
/// toward the safe side by the callers' comparisons; absurd values are refused.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ClaimError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64() {
                if f.is_finite() && f.abs() < 1e15 {
                    Ok(Some(f.floor() as i64))
                } else {
                    Err(ClaimError::BadTimeClaim)
                }
            } else {
                Err(ClaimError::BadTimeClaim)
            }
        }
        Some(_) => Err(ClaimError::BadTimeClaim),
    }
}

/// The token's `exp`, if it has a numeric one.
pub fn expiry(claims: &Map<String, Value>) -> Option<i64> {
    numeric_date(claims, "exp").ok().flatten()
}

impl ClaimPolicy {
    /// Every check: [`Self::check_except_audience`], then the audience.
    pub fn check(&self, claims: &Map<String, Value>, now_secs: i64) -> Result<(), ClaimError> {
        self.check_except_audience(claims, now_secs)?;
        self.check_audience(claims, None)
    }

    /// `aud` (string or array) holds one of `audiences` (the provider's own when `None`);
    /// no audiences configured accepts any. 403 when not.
    pub fn check_audience(
        &self,
        claims: &Map<String, Value>,
        audiences: Option<&[String]>,
    ) -> Result<(), ClaimError> {
        let want = audiences.unwrap_or(&self.audiences);
        if want.is_empty() {
            return Ok(());
        }
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => want.iter().any(|w| w == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| want.iter().any(|w| w == a)),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ClaimError::WrongAudience)
        }
    }

    /// Time claims first (401), then issuer (401), then subject (403). The audience is
    /// checked apart: a requirement may name other audiences than the provider's.
    pub fn check_except_audience(
        &self,
        claims: &Map<String, Value>,
        now_secs: i64,
    ) -> Result<(), ClaimError> {
        let skew = i64::try_from(self.clock_skew_secs).unwrap_or(i64::MAX);
        let exp = numeric_date(claims, "exp")?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        match exp {
            Some(exp) if now_secs >= exp.saturating_add(skew) => return Err(ClaimError::Expired),
            None if self.require_expiration || self.max_lifetime_secs.is_some() => {
                return Err(ClaimError::MissingExp)
            }
            _ => {}
        }
        if nbf.is_some_and(|nbf| now_secs.saturating_add(skew) < nbf) {
            return Err(ClaimError::NotYetValid);
        }
        if iat.is_some_and(|iat| now_secs.saturating_add(skew) < iat) {
            return Err(ClaimError::IssuedInFuture);
        }
        if let (Some(max), Some(exp)) = (self.max_lifetime_secs, exp) {
            let start = iat.unwrap_or(now_secs);
            if exp.saturating_sub(start) > i64::try_from(max).unwrap_or(i64::MAX) {
                return Err(ClaimError::LifetimeTooLong);
            }
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(ClaimError::WrongIssuer);
            }
        }
        if let Some(m) = &self.subjects {
            let sub = claims.get("sub").and_then(Value::as_str);
            if !sub.is_some_and(|s| m.matches(s)) {
                return Err(ClaimError::WrongSubject);
            }
        }
        Ok(())
    }
}

/// A claim by dotted name (`realm_access.roles`): each dot steps into a nested object.
/// A top-level member whose name itself contains dots wins over the nested reading.
pub fn lookup<'a>(claims: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(dotted) {
        return Some(v);
    }
    let mut parts = dotted.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn time_claims_with_skew() {
        let p = ClaimPolicy::default();
        assert_eq!(p.check(&c(json!({"exp": NOW + 10})), NOW), Ok(()));
        assert_eq!(
            p.check(&c(json!({"exp": NOW - 59})), NOW),
            Ok(()),
            "within skew"
        );
        assert_eq!(
            p.check(&c(json!({"exp": NOW - 60})), NOW),
            Err(ClaimError::Expired)
        );
        assert_eq!(
            p.check(&c(json!({"exp": (NOW - 61) as f64 + 0.5})), NOW),
            Err(ClaimError::Expired)
        );
        assert_eq!(p.check(&c(json!({"nbf": NOW + 60})), NOW), Ok(()));
        assert_eq!(
            p.check(&c(json!({"nbf": NOW + 61})), NOW),
            Err(ClaimError::NotYetValid)
        );
        assert_eq!(
            p.check(&c(json!({"iat": NOW + 61})), NOW),
            Err(ClaimError::IssuedInFuture)
        );
        assert_eq!(
            p.check(&c(json!({"exp": "tomorrow"})), NOW),
            Err(ClaimError::BadTimeClaim)
        );
        assert_eq!(
            p.check(&c(json!({"exp": 1e300})), NOW),
            Err(ClaimError::BadTimeClaim)
        );
        assert_eq!(
            p.check(&c(json!({})), NOW),
            Ok(()),
            "exp optional by default"
        );
        let strict = ClaimPolicy {
            require_expiration: true,
            clock_skew_secs: 0,
            ..ClaimPolicy::default()
        };
        assert_eq!(
            strict.check(&c(json!({})), NOW),
            Err(ClaimError::MissingExp)
        );
        assert_eq!(
            strict.check(&c(json!({"exp": NOW})), NOW),
            Err(ClaimError::Expired)
        );
    }

    #[test]
    fn max_lifetime() {
        let p = ClaimPolicy {
            max_lifetime_secs: Some(3600),
            ..ClaimPolicy::default()
        };
        assert_eq!(
            p.check(&c(json!({"iat": NOW, "exp": NOW + 3600})), NOW),
            Ok(())
        );
        assert_eq!(
            p.check(&c(json!({"iat": NOW, "exp": NOW + 3601})), NOW),
            Err(ClaimError::LifetimeTooLong)
        );
        assert_eq!(
            p.check(&c(json!({"exp": NOW + 7200})), NOW),
            Err(ClaimError::LifetimeTooLong)
        );
        assert_eq!(
            p.check(&c(json!({"iat": NOW})), NOW),
            Err(ClaimError::MissingExp)
        );
    }

    #[test]
    fn issuer_audience_subject() {
        let p = ClaimPolicy {
            issuer: Some("https://idp".into()),
            audiences: vec!["api".into(), "web".into()],
            subjects: Some(filter_core::StringMatcher::Prefix("user:".into(), false)),
            ..ClaimPolicy::default()
        };
        let ok = json!({"iss": "https://idp", "aud": ["x", "web"], "sub": "user:1"});
        assert_eq!(p.check(&c(ok), NOW), Ok(()));
        let e = |v| p.check(&c(v), NOW).unwrap_err();
        assert_eq!(
            e(json!({"iss": "https://evil", "aud": "api", "sub": "user:1"})),
            ClaimError::WrongIssuer
        );
        assert_eq!(
            e(json!({"aud": "api", "sub": "user:1"})),
            ClaimError::WrongIssuer
        );
        assert_eq!(
            e(json!({"iss": "https://idp", "aud": "other", "sub": "user:1"})),
            ClaimError::WrongAudience
        );
        assert_eq!(
            e(json!({"iss": "https://idp", "sub": "user:1"})),
            ClaimError::WrongAudience
        );
        assert_eq!(
            e(json!({"iss": "https://idp", "aud": "api", "sub": "svc:1"})),
            ClaimError::WrongSubject
        );
        assert!(
            ClaimError::WrongAudience.is_forbidden() && !ClaimError::WrongIssuer.is_forbidden()
        );
    }

    #[test]
    fn dotted_lookup() {
        let claims = c(json!({"realm": {"roles": ["a"]}, "x.y": 1, "t": "v"}));
        assert_eq!(lookup(&claims, "realm.roles"), Some(&json!(["a"])));
        assert_eq!(lookup(&claims, "x.y"), Some(&json!(1)));
        assert_eq!(lookup(&claims, "t.z"), None);
        assert_eq!(lookup(&claims, "missing"), None);
    }
}
