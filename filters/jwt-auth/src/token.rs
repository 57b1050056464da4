//! Token extraction from the request (headers, query parameters, cookies) and strict JWS compact
//! parsing: size limit, three base64url segments, duplicate-free JSON objects, `alg` allow-list.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use filter_core::headers::split_path;
use filter_core::HeaderMap;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::fmt;

/// Why a token was refused before any key was looked at. Every variant is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is larger than the configured limit")]
    Oversize,
    #[error("empty bearer token")]
    Empty,
    #[error("more than one token in the request")]
    Ambiguous,
    #[error("token is not three base64url segments")]
    Malformed,
    #[error("token segment is not valid base64url")]
    BadBase64,
    #[error("token header or payload is not a JSON object")]
    BadJson,
    #[error("alg none is not accepted")]
    AlgNone,
    #[error("unsupported alg")]
    UnsupportedAlg,
    #[error("unsupported critical header")]
    Crit,
}

/// The signature algorithms this filter verifies. `none` is deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

impl Algorithm {
    /// Exact, case-sensitive JOSE names (RFC 7518). Anything else, `none` in any casing
    /// included, is refused.
    pub fn parse(name: &str) -> Result<Self, TokenError> {
        Ok(match name {
            "HS256" => Self::HS256,
            "HS384" => Self::HS384,
            "HS512" => Self::HS512,
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "ES512" => Self::ES512,
            "EdDSA" => Self::EdDSA,
            n if n.trim().eq_ignore_ascii_case("none") => return Err(TokenError::AlgNone),
            _ => return Err(TokenError::UnsupportedAlg),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// The JOSE header fields this filter uses. `jku`, `x5u`, `jwk` and other key-carrying headers
/// are ignored on purpose: keys come only from the provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// A parsed, not yet verified, JWS compact token borrowing the request's bytes.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt<'a> {
    pub header: JoseHeader,
    pub claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The base64url payload segment (what `forward_payload_header` sends).
    pub payload_b64: &'a str,
    pub signature: Vec<u8>,
}

/// Parses a compact JWS. `max_bytes` is checked before anything else is looked at.
pub fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedJwt<'_>, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::Oversize);
    }
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header_bytes = decode_segment(h)?;
    let payload_bytes = decode_segment(p)?;
    let signature = decode_segment(s)?;
    let header_obj = parse_object(&header_bytes)?;
    let header = parse_header(&header_obj)?;
    let claims = parse_object(&payload_bytes)?;
    Ok(UnverifiedJwt {
        header,
        claims,
        signing_input: &token[..h.len() + 1 + p.len()],
        payload_b64: p,
        signature,
    })
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    // The engine refuses padding, non-alphabet bytes and non-canonical trailing bits.
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::BadBase64)
}

fn parse_header(obj: &Map<String, Value>) -> Result<JoseHeader, TokenError> {
    // No extension is understood, so any `crit` (even an empty one, which RFC 7515 forbids)
    // makes the token unverifiable.
    if obj.contains_key("crit") {
        return Err(TokenError::Crit);
    }
    let alg = match obj.get("alg") {
        Some(Value::String(name)) => Algorithm::parse(name)?,
        Some(Value::Null) | None => return Err(TokenError::UnsupportedAlg),
        Some(_) => return Err(TokenError::BadJson),
    };
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::BadJson),
    };
    Ok(JoseHeader { alg, kid })
}

/// Parses a JSON object, refusing duplicate members: two `alg` or two `exp` must never be read
/// differently by two parsers.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, TokenError> {
    serde_json::from_slice::<StrictObject>(bytes)
        .map(|o| o.0)
        .map_err(|_| TokenError::BadJson)
}

struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object without duplicate members")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    if map.contains_key(&k) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    map.insert(k, v);
                }
                Ok(StrictObject(map))
            }
        }
        d.deserialize_map(V)
    }
}

/// Where a provider looks for its token. Defaults to `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSources {
    pub headers: Vec<HeaderSource>,
    pub params: Vec<String>,
    pub cookies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSource {
    /// Lower-case header name.
    pub name: String,
    /// Matched ASCII-case-insensitively (`Bearer ` also accepts `bearer `, RFC 7235 §2.1).
    pub value_prefix: String,
}

/// Envoy jwt_authn's default locations: `Authorization: Bearer <token>`, then the
/// `access_token` query parameter (RFC 6750 sections 2.1 and 2.3).
impl Default for TokenSources {
    fn default() -> Self {
        Self {
            headers: vec![HeaderSource {
                name: "authorization".into(),
                value_prefix: "Bearer ".into(),
            }],
            params: vec!["access_token".into()],
            cookies: Vec::new(),
        }
    }
}

/// Where a token was found, so it can be removed before the upstream when `forward` is false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    Header(String),
    Param(String),
    Cookie(String),
}

/// The result of looking for a provider's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted {
    Missing,
    Found {
        token: String,
        location: TokenLocation,
    },
    Invalid(TokenError),
}

impl TokenSources {
    /// Finds exactly one token. Two candidates (the same header twice, a header and a query
    /// parameter, two parameters) are ambiguous and refused rather than guessed between.
    pub fn extract(&self, headers: &HeaderMap) -> Extracted {
        let mut found: Option<(String, TokenLocation)> = None;
        let mut take = |token: String, location: TokenLocation| -> Result<(), TokenError> {
            if found.is_some() {
                return Err(TokenError::Ambiguous);
            }
            found = Some((token, location));
            Ok(())
        };
        for src in &self.headers {
            for value in headers.get_all(&src.name) {
                let Some(rest) = strip_prefix_ignore_case(value, &src.value_prefix) else {
                    // A header that does not carry this scheme (`Basic ...`) is not a token,
                    // but the bare scheme word with nothing after it is an empty bearer.
                    if !src.value_prefix.is_empty()
                        && value.trim().eq_ignore_ascii_case(src.value_prefix.trim())
                    {
                        return Extracted::Invalid(TokenError::Empty);
                    }
                    continue;
                };
                let token = rest.trim_matches(' ');
                if token.is_empty() {
                    return Extracted::Invalid(TokenError::Empty);
                }
                if let Err(e) = take(token.to_string(), TokenLocation::Header(src.name.clone())) {
                    return Extracted::Invalid(e);
                }
            }
        }
        if !self.params.is_empty() {
            if let Some(query) = split_path(headers.path_and_query()).1 {
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if let Some(name) = self.params.iter().find(|p| p.as_str() == k) {
                        if v.is_empty() {
                            return Extracted::Invalid(TokenError::Empty);
                        }
                        // JWTs are base64url and dots: a percent-encoded one is not a JWT.
                        if let Err(e) = take(v.to_string(), TokenLocation::Param(name.clone())) {
                            return Extracted::Invalid(e);
                        }
                    }
                }
            }
        }
        if !self.cookies.is_empty() {
            for cookie_header in headers.get_all("cookie") {
                for pair in cookie_header.split(';') {
                    let (k, v) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
                    if let Some(name) = self.cookies.iter().find(|c| c.as_str() == k) {
                        let v = v.trim_matches('"');
                        if v.is_empty() {
                            return Extracted::Invalid(TokenError::Empty);
                        }
                        if let Err(e) = take(v.to_string(), TokenLocation::Cookie(name.clone())) {
                            return Extracted::Invalid(e);
                        }
                    }
                }
            }
        }
        match found {
            Some((token, location)) => Extracted::Found { token, location },
            None => Extracted::Missing,
        }
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    if value.len() >= prefix.len()
        && value.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    {
        value.get(prefix.len()..)
    } else {
        None
    }
}

/// `path?a=1&access_token=x&b=2` without the named parameter (for `forward: false`).
pub fn remove_query_param(path_and_query: &str, name: &str) -> String {
    let (path, Some(query)) = split_path(path_and_query) else {
        return path_and_query.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    if kept.is_empty() || kept.iter().all(|p| p.is_empty()) {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// A `cookie` header value without the named cookie; `None` when nothing is left.
pub fn remove_cookie(cookie_header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = cookie_header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn tok(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    #[test]
    fn parses_header_claims_and_signing_input() {
        let t = tok(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"u"}"#,
        );
        let jwt = parse(&t, 8192).unwrap();
        assert_eq!(
            jwt.header,
            JoseHeader {
                alg: Algorithm::RS256,
                kid: Some("k1".into())
            }
        );
        assert_eq!(jwt.claims["sub"], "u");
        assert_eq!(jwt.signature, b"sig");
        assert_eq!(jwt.signing_input, &t[..t.rfind('.').unwrap()]);
    }

    #[test]
    fn alg_none_in_any_spelling_is_refused() {
        for alg in ["none", "None", "NONE", "nOnE", " none"] {
            let t = tok(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(parse(&t, 8192).unwrap_err(), TokenError::AlgNone, "{alg}");
        }
        // An unsigned token with an empty signature is malformed before alg is even read.
        let t = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
        assert_eq!(parse(&t, 8192).unwrap_err(), TokenError::Malformed);
        for alg in ["rs256", "HS1", "", "ES521", "es512"] {
            let t = tok(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(
                parse(&t, 8192).unwrap_err(),
                TokenError::UnsupportedAlg,
                "{alg}"
            );
        }
        assert_eq!(
            parse(&tok("{}", "{}"), 8192).unwrap_err(),
            TokenError::UnsupportedAlg
        );
        assert_eq!(
            parse(&tok(r#"{"alg":1}"#, "{}"), 8192).unwrap_err(),
            TokenError::BadJson
        );
    }

    #[test]
    fn structural_attacks() {
        let good = tok(r#"{"alg":"RS256"}"#, "{}");
        assert_eq!(
            parse(&good, good.len() - 1).unwrap_err(),
            TokenError::Oversize
        );
        assert!(parse(&good, good.len()).is_ok());
        assert_eq!(
            parse(&format!("{good}.x"), 8192).unwrap_err(),
            TokenError::Malformed
        );
        assert_eq!(
            parse(&good[..good.rfind('.').unwrap()], 8192).unwrap_err(),
            TokenError::Malformed
        );
        assert_eq!(parse("", 8192).unwrap_err(), TokenError::Empty);
        assert_eq!(parse("..", 8192).unwrap_err(), TokenError::Malformed);
        // Non-base64url characters: standard alphabet, padding, whitespace.
        for bad in ["+", "/", "=", " ", "%2E"] {
            let t = format!(
                "{}.{}{bad}.{}",
                b64(r#"{"alg":"RS256"}"#),
                b64("{}"),
                b64("s")
            );
            assert_eq!(
                parse(&t, 8192).unwrap_err(),
                TokenError::BadBase64,
                "{bad:?}"
            );
        }
        // Non-canonical trailing bits ("s" is cw; cx decodes to the same byte).
        let canonical = format!("{}.{}.cw", b64(r#"{"alg":"RS256"}"#), b64("{}"));
        assert_eq!(parse(&canonical, 8192).unwrap().signature, b"s");
        let t = format!("{}.{}.cx", b64(r#"{"alg":"RS256"}"#), b64("{}"));
        assert_eq!(parse(&t, 8192).unwrap_err(), TokenError::BadBase64);
        assert_eq!(
            parse(&tok(r#"{"alg":"RS256"}"#, "[1]"), 8192).unwrap_err(),
            TokenError::BadJson
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"RS256"}"#, "{"), 8192).unwrap_err(),
            TokenError::BadJson
        );
        let dup = tok(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#);
        assert_eq!(parse(&dup, 8192).unwrap_err(), TokenError::BadJson);
        let dup_alg = tok(r#"{"alg":"HS256","alg":"RS256"}"#, "{}");
        assert_eq!(parse(&dup_alg, 8192).unwrap_err(), TokenError::BadJson);
        let crit = tok(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, "{}");
        assert_eq!(parse(&crit, 8192).unwrap_err(), TokenError::Crit);
        let kid_num = tok(r#"{"alg":"RS256","kid":7}"#, "{}");
        assert_eq!(parse(&kid_num, 8192).unwrap_err(), TokenError::BadJson);
    }

    fn req(extra: &[(&str, &str)], path: &str) -> HeaderMap {
        let mut h = HeaderMap::from([(":method", "GET"), (":path", path)]);
        for (n, v) in extra {
            h.append(n, v);
        }
        h
    }

    #[test]
    fn extraction_rules() {
        let d = TokenSources::default();
        let found = |t: &str| Extracted::Found {
            token: t.into(),
            location: TokenLocation::Header("authorization".into()),
        };
        assert_eq!(
            d.extract(&req(&[("authorization", "Bearer a.b.c")], "/")),
            found("a.b.c")
        );
        assert_eq!(
            d.extract(&req(&[("authorization", "bearer a.b.c")], "/")),
            found("a.b.c")
        );
        assert_eq!(
            d.extract(&req(&[("authorization", "BEARER  a.b.c ")], "/")),
            found("a.b.c")
        );
        assert_eq!(
            d.extract(&req(&[("authorization", "Basic abc")], "/")),
            Extracted::Missing
        );
        assert_eq!(d.extract(&req(&[], "/")), Extracted::Missing);
        for empty in ["Bearer ", "Bearer", "bearer   "] {
            assert_eq!(
                d.extract(&req(&[("authorization", empty)], "/")),
                Extracted::Invalid(TokenError::Empty),
                "{empty:?}"
            );
        }
        let two = req(
            &[
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer a.b.c"),
            ],
            "/",
        );
        assert_eq!(d.extract(&two), Extracted::Invalid(TokenError::Ambiguous));

        let s = TokenSources {
            params: vec!["access_token".into()],
            cookies: vec!["jwt".into()],
            ..TokenSources::default()
        };
        assert_eq!(
            s.extract(&req(&[], "/x?a=1&access_token=q.r.s")),
            Extracted::Found {
                token: "q.r.s".into(),
                location: TokenLocation::Param("access_token".into())
            }
        );
        assert_eq!(
            s.extract(&req(
                &[("authorization", "Bearer a.b.c")],
                "/x?access_token=q.r.s"
            )),
            Extracted::Invalid(TokenError::Ambiguous)
        );
        assert_eq!(
            s.extract(&req(&[], "/x?access_token=a&access_token=b")),
            Extracted::Invalid(TokenError::Ambiguous)
        );
        assert_eq!(
            s.extract(&req(&[("cookie", "a=1; jwt=c.d.e")], "/")),
            Extracted::Found {
                token: "c.d.e".into(),
                location: TokenLocation::Cookie("jwt".into())
            }
        );
    }

    #[test]
    fn removal_helpers() {
        assert_eq!(
            remove_query_param("/a?x=1&access_token=t&y", "access_token"),
            "/a?x=1&y"
        );
        assert_eq!(
            remove_query_param("/a?access_token=t", "access_token"),
            "/a"
        );
        assert_eq!(remove_query_param("/a", "access_token"), "/a");
        assert_eq!(
            remove_cookie("a=1; jwt=t; b=2", "jwt").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(remove_cookie("jwt=t", "jwt"), None);
    }
}
