//! Failures mapped to what the client sees: status, `WWW-Authenticate` (RFC 6750), the JSON
//! error code and message, and the metric reason.

use crate::authz::AuthzError;
use crate::claims::ClaimError;
use crate::token::TokenError;
use crate::verify::VerifyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyKind {
    /// 401 without an `error` attribute (RFC 6750 §3.1: no credentials were sent).
    Missing,
    /// 401 `error="invalid_token"`.
    InvalidToken,
    /// 403 `error="invalid_token"`: genuine token, wrong audience or subject for this route.
    Forbidden,
    /// 403 `error="insufficient_scope"`: genuine token lacking a scope or claim value.
    InsufficientScope,
    /// 503: the token could not be checked (introspection endpoint down, when so configured).
    Unavailable,
}

/// A refused request. Descriptions are fixed texts: nothing from the token is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub kind: DenyKind,
    pub description: &'static str,
    /// Metric label: `jwt_auth.denied.<reason>`.
    pub reason: &'static str,
}

impl Denial {
    pub const fn new(kind: DenyKind, description: &'static str, reason: &'static str) -> Self {
        Self {
            kind,
            description,
            reason,
        }
    }

    pub const MISSING: Denial =
        Denial::new(DenyKind::Missing, "bearer token is missing", "missing");
    pub const KEYS_UNAVAILABLE: Denial = Denial::new(
        DenyKind::InvalidToken,
        "signing keys are unavailable",
        "keys_unavailable",
    );
    pub const REVOKED: Denial =
        Denial::new(DenyKind::InvalidToken, "token has been revoked", "revoked");

    pub fn status(&self) -> u32 {
        match self.kind {
            DenyKind::Missing | DenyKind::InvalidToken => 401,
            DenyKind::Forbidden | DenyKind::InsufficientScope => 403,
            DenyKind::Unavailable => 503,
        }
    }

    /// The JSON body's `error`.
    pub fn error_code(&self) -> &'static str {
        match self.kind {
            DenyKind::Missing => "missing_token",
            DenyKind::InvalidToken => "invalid_token",
            DenyKind::Forbidden => "forbidden",
            DenyKind::InsufficientScope => "insufficient_scope",
            DenyKind::Unavailable => "temporarily_unavailable",
        }
    }

    /// `Bearer realm="..."[, error="...", error_description="..."]`. The realm was checked at
    /// configuration time to be a valid quoted-string body.
    pub fn www_authenticate(&self, realm: &str) -> String {
        let attr = match self.kind {
            DenyKind::Missing => return format!("Bearer realm=\"{realm}\""),
            DenyKind::InvalidToken | DenyKind::Forbidden | DenyKind::Unavailable => "invalid_token",
            DenyKind::InsufficientScope => "insufficient_scope",
        };
        format!(
            "Bearer realm=\"{realm}\", error=\"{attr}\", error_description=\"{}\"",
            self.description
        )
    }

    /// Missing beats nothing; any other failure is more informative than "missing".
    pub fn more_specific(self, other: Denial) -> Denial {
        if self.kind == DenyKind::Missing {
            other
        } else {
            self
        }
    }
}

impl From<TokenError> for Denial {
    fn from(e: TokenError) -> Self {
        use DenyKind::InvalidToken as I;
        match e {
            TokenError::Oversize => Denial::new(I, "token is too large", "oversize"),
            TokenError::Empty => Denial::new(I, "bearer token is empty", "malformed"),
            TokenError::Ambiguous => {
                Denial::new(I, "more than one token in the request", "ambiguous")
            }
            TokenError::Malformed | TokenError::BadBase64 | TokenError::BadJson => {
                Denial::new(I, "token is malformed", "malformed")
            }
            TokenError::AlgNone | TokenError::UnsupportedAlg => {
                Denial::new(I, "token algorithm is not accepted", "alg")
            }
            TokenError::Crit => {
                Denial::new(I, "token has an unsupported critical header", "malformed")
            }
        }
    }
}

impl From<VerifyError> for Denial {
    fn from(e: VerifyError) -> Self {
        use DenyKind::InvalidToken as I;
        match e {
            VerifyError::UnknownKid => {
                Denial::new(I, "token signing key is unknown", "unknown_kid")
            }
            VerifyError::NoMatchingKey => {
                Denial::new(I, "no key matches the token algorithm", "no_matching_key")
            }
            VerifyError::BadSignature => {
                Denial::new(I, "token signature is invalid", "bad_signature")
            }
            VerifyError::KidRequired => {
                Denial::new(I, "token must name its signing key (kid)", "kid_required")
            }
        }
    }
}

impl From<ClaimError> for Denial {
    fn from(e: ClaimError) -> Self {
        use DenyKind::{Forbidden as F, InvalidToken as I};
        match e {
            ClaimError::Expired => Denial::new(I, "token is expired", "expired"),
            ClaimError::NotYetValid => Denial::new(I, "token is not yet valid", "not_yet_valid"),
            ClaimError::IssuedInFuture => {
                Denial::new(I, "token was issued in the future", "not_yet_valid")
            }
            ClaimError::MissingExp => Denial::new(I, "token has no expiration", "missing_exp"),
            ClaimError::LifetimeTooLong => Denial::new(I, "token lifetime is too long", "lifetime"),
            ClaimError::BadTimeClaim => Denial::new(I, "token is malformed", "malformed"),
            ClaimError::WrongIssuer => Denial::new(I, "token issuer is not accepted", "issuer"),
            ClaimError::WrongAudience => {
                Denial::new(F, "token audience is not allowed", "audience")
            }
            ClaimError::WrongSubject => Denial::new(F, "token subject is not allowed", "subject"),
            ClaimError::InvalidIdentity => Denial::new(
                I,
                "token identity claim is missing or invalid",
                "invalid_claim",
            ),
        }
    }
}

impl From<AuthzError> for Denial {
    fn from(e: AuthzError) -> Self {
        use DenyKind::InsufficientScope as S;
        match e {
            AuthzError::MissingScope => Denial::new(S, "token lacks a required scope", "scope"),
            AuthzError::MissingClaim => Denial::new(S, "token lacks a required claim", "claim"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6750_headers() {
        assert_eq!(
            Denial::MISSING.www_authenticate("api"),
            r#"Bearer realm="api""#
        );
        assert_eq!(Denial::MISSING.status(), 401);
        let expired = Denial::from(ClaimError::Expired);
        assert_eq!(
            expired.www_authenticate("api"),
            r#"Bearer realm="api", error="invalid_token", error_description="token is expired""#
        );
        let scope = Denial::from(AuthzError::MissingScope);
        assert_eq!(scope.status(), 403);
        assert!(scope
            .www_authenticate("r")
            .contains(r#"error="insufficient_scope""#));
        let aud = Denial::from(ClaimError::WrongAudience);
        assert_eq!((aud.status(), aud.error_code()), (403, "forbidden"));
        assert_eq!(Denial::MISSING.more_specific(expired), expired);
        assert_eq!(expired.more_specific(Denial::MISSING), expired);
    }

    #[test]
    fn descriptions_are_safe_quoted_strings() {
        let all = [
            Denial::from(TokenError::Crit),
            Denial::from(VerifyError::UnknownKid),
            Denial::from(VerifyError::KidRequired),
            Denial::from(ClaimError::InvalidIdentity),
            Denial::KEYS_UNAVAILABLE,
            Denial::REVOKED,
        ];
        for d in all {
            assert!(d
                .description
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
        }
    }
}
