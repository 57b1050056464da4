//! Coarse per-rule authorization on a verified token: required scopes (`scope` string or `scp`
//! array) and required claim values (dotted names).

use crate::claims::lookup;
use serde_json::{Map, Value};

/// A claim condition of a rule's `required_claims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimCondition {
    /// The claim is an array holding this string, or a string equal to it.
    Contains { claim: String, value: String },
    /// The claim is this string (numbers and booleans compare by their JSON text).
    Equals { claim: String, value: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    pub required_scopes: Vec<String>,
    pub required_claims: Vec<ClaimCondition>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    #[error("token lacks a required scope")]
    MissingScope,
    #[error("token lacks a required claim value")]
    MissingClaim,
}

impl Authorization {
    pub fn is_empty(&self) -> bool {
        self.required_scopes.is_empty() && self.required_claims.is_empty()
    }

    pub fn check(&self, claims: &Map<String, Value>) -> Result<(), AuthzError> {
        if !self.required_scopes.is_empty() {
            let granted = granted_scopes(claims);
            if !self
                .required_scopes
                .iter()
                .all(|s| granted.contains(&s.as_str()))
            {
                return Err(AuthzError::MissingScope);
            }
        }
        for cond in &self.required_claims {
            let ok = match cond {
                ClaimCondition::Contains { claim, value } => match lookup(claims, claim) {
                    Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
                    Some(Value::String(s)) => s == value,
                    _ => false,
                },
                ClaimCondition::Equals { claim, value } => match lookup(claims, claim) {
                    Some(Value::String(s)) => s == value,
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                        serde_json::from_str::<Value>(value).is_ok_and(|want| want == *v)
                    }
                    _ => false,
                },
            };
            if !ok {
                return Err(AuthzError::MissingClaim);
            }
        }
        Ok(())
    }
}

/// Scopes from `scope` (space-delimited, RFC 8693 §4.2) and `scp` (array or string).
fn granted_scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let a = Authorization {
            required_scopes: vec!["orders:write".into(), "read".into()],
            ..Default::default()
        };
        assert_eq!(a.check(&c(json!({"scope": "read  orders:write"}))), Ok(()));
        assert_eq!(
            a.check(&c(json!({"scp": ["read", "orders:write"]}))),
            Ok(())
        );
        assert_eq!(
            a.check(&c(json!({"scope": "read orders:writer"}))),
            Err(AuthzError::MissingScope)
        );
        assert_eq!(
            a.check(&c(json!({"scope": ["read", "orders:write"]}))),
            Ok(())
        );
        assert_eq!(a.check(&c(json!({}))), Err(AuthzError::MissingScope));
    }

    #[test]
    fn claim_conditions() {
        let a = Authorization {
            required_claims: vec![
                ClaimCondition::Contains {
                    claim: "groups".into(),
                    value: "orders-write".into(),
                },
                ClaimCondition::Equals {
                    claim: "org.tier".into(),
                    value: "gold".into(),
                },
                ClaimCondition::Equals {
                    claim: "email_verified".into(),
                    value: "true".into(),
                },
            ],
            ..Default::default()
        };
        let ok = json!({"groups": ["x", "orders-write"], "org": {"tier": "gold"}, "email_verified": true});
        assert_eq!(a.check(&c(ok)), Ok(()));
        let no_group =
            json!({"groups": ["orders-read"], "org": {"tier": "gold"}, "email_verified": true});
        assert_eq!(a.check(&c(no_group)), Err(AuthzError::MissingClaim));
        let wrong_tier =
            json!({"groups": "orders-write", "org": {"tier": "silver"}, "email_verified": true});
        assert_eq!(a.check(&c(wrong_tier)), Err(AuthzError::MissingClaim));
        let unverified =
            json!({"groups": "orders-write", "org": {"tier": "gold"}, "email_verified": "yes"});
        assert_eq!(a.check(&c(unverified)), Err(AuthzError::MissingClaim));
    }
}
