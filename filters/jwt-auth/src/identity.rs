//! Identity claims: the claims the filter turns into headers that upstreams and the rate limiter
//! trust (`sub` -> `x-user-id`, every `claim_to_headers` entry, the tenant claim). A value is
//! forwarded only if it is a non-empty string (or, where allowed, an integer written in decimal)
//! of at most `max_length` characters drawn from the entry's character set; anything else makes
//! the token unusable (401 `invalid_claim`). Values are never trimmed or rewritten, so two
//! distinct claim values can never reach the upstream as the same identity.
//!
//! A character set is written as its characters, with `a-z` ranges (a `-` first or last is a
//! literal dash). Only printable ASCII other than space, `,`, `"` and `\` may appear: no
//! whitespace, no list separators, no control characters, nothing outside ASCII.

use crate::claims::{lookup, ClaimError};
use serde_json::{Map, Value};
use std::fmt;

/// The default character set: ASCII letters and digits, `.`, `_`, `@`, `:`, `+` and `-`.
pub const DEFAULT_CHARSET: &str = "A-Za-z0-9._@:+-";
pub const DEFAULT_MAX_LENGTH: usize = 256;
/// The largest `max_length` a configuration may give.
pub const MAX_MAX_LENGTH: usize = 1024;

/// A set of printable ASCII characters (one bit per code point below 128).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Charset(u128);

impl Charset {
    /// Parses a character-set specification (see the module documentation).
    pub fn parse(spec: &str) -> Result<Self, String> {
        if spec.is_empty() {
            return Err("must list at least one character".into());
        }
        let bytes = spec.as_bytes();
        let mut bits = 0u128;
        let mut i = 0;
        while i < bytes.len() {
            let lo = bytes[i];
            let (lo, hi) = if i + 2 < bytes.len() && bytes[i + 1] == b'-' {
                i += 3;
                (lo, bytes[i - 1])
            } else {
                i += 1;
                (lo, lo)
            };
            if lo > hi {
                return Err(format!(
                    "range {}-{} is backwards",
                    char::from(lo),
                    char::from(hi)
                ));
            }
            for b in lo..=hi {
                if !Self::may_allow(b) {
                    return Err(format!(
                        "may hold only printable ASCII other than space, ',', '\"' and '\\' (found {:?})",
                        char::from(b)
                    ));
                }
                bits |= 1u128 << b;
            }
        }
        Ok(Charset(bits))
    }

    /// Characters no configuration may allow.
    fn may_allow(b: u8) -> bool {
        (0x21..0x7f).contains(&b) && !matches!(b, b',' | b'"' | b'\\')
    }

    pub fn allows(&self, b: u8) -> bool {
        b < 128 && self.0 & (1u128 << b) != 0
    }
}

impl Default for Charset {
    fn default() -> Self {
        let mut bits = 0u128;
        for b in (b'A'..=b'Z').chain(b'a'..=b'z').chain(b'0'..=b'9') {
            bits |= 1u128 << b;
        }
        for b in b"._@:+-" {
            bits |= 1u128 << b;
        }
        Charset(bits)
    }
}

impl fmt::Debug for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: String = (0u8..128)
            .filter(|b| self.allows(*b))
            .map(char::from)
            .collect();
        write!(f, "Charset({s:?})")
    }
}

/// What a usable value of one identity claim looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimFormat {
    /// An absent claim omits the header instead of refusing the token. A claim that is present
    /// but unusable is refused either way.
    pub optional: bool,
    pub charset: Charset,
    pub max_length: usize,
    /// Integer claims (`"org": {"id": 7}`) are forwarded as their decimal text; `sub` is a
    /// string by RFC 7519 and never takes this.
    pub integers: bool,
}

impl Default for ClaimFormat {
    fn default() -> Self {
        Self {
            optional: false,
            charset: Charset::default(),
            max_length: DEFAULT_MAX_LENGTH,
            integers: true,
        }
    }
}

impl ClaimFormat {
    /// The header value for `value`: `Ok(None)` when it is absent and optional.
    pub fn header_value(&self, value: Option<&Value>) -> Result<Option<String>, ClaimError> {
        let text = match value {
            None if self.optional => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if self.integers && (n.is_i64() || n.is_u64()) => n.to_string(),
            _ => return Err(ClaimError::InvalidIdentity),
        };
        let usable = !text.is_empty()
            && text.len() <= self.max_length
            && text.bytes().all(|b| self.charset.allows(b));
        if usable {
            Ok(Some(text))
        } else {
            Err(ClaimError::InvalidIdentity)
        }
    }
}

/// One identity header and the claim it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub header: String,
    /// Dotted claim name.
    pub claim: String,
    pub format: ClaimFormat,
}

/// The identity headers of a verified token, in the order of `headers`; the first failure
/// refuses the whole token.
pub fn identity_headers(
    headers: &[ClaimHeader],
    claims: &Map<String, Value>,
) -> Result<Vec<(String, String)>, ClaimError> {
    let mut out = Vec::with_capacity(headers.len());
    for h in headers {
        if let Some(v) = h.format.header_value(lookup(claims, &h.claim))? {
            out.push((h.header.clone(), v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn charset_specs() {
        let d = Charset::parse(DEFAULT_CHARSET).unwrap();
        assert_eq!(d, Charset::default());
        for ok in b"azAZ09._@:+-" {
            assert!(d.allows(*ok), "{}", char::from(*ok));
        }
        for bad in b" \t,;/|\"\\\x7f\x00" {
            assert!(!d.allows(*bad), "{}", char::from(*bad));
        }
        assert!(!d.allows(0xc3));
        let digits = Charset::parse("0-9").unwrap();
        assert!(digits.allows(b'5') && !digits.allows(b'a') && !digits.allows(b'-'));
        let dash = Charset::parse("-a").unwrap();
        assert!(dash.allows(b'-') && dash.allows(b'a') && !dash.allows(b'b'));
        let pipe = Charset::parse("a-z|").unwrap();
        assert!(pipe.allows(b'|'));
        for bad in ["", "z-a", "a-z ", "a,b", "!-~", "a\"", "\\", "é", "a\tb"] {
            assert!(Charset::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values() {
        let f = ClaimFormat::default();
        let v = |x: Value| f.header_value(Some(&x));
        assert_eq!(v(json!("alice")), Ok(Some("alice".into())));
        assert_eq!(v(json!(7)), Ok(Some("7".into())));
        assert_eq!(v(json!(-7)), Ok(Some("-7".into())));
        for bad in [
            json!(""),
            json!(" alice"),
            json!("alice\t"),
            json!("7,99"),
            json!(7.0),
            json!(false),
            json!(null),
            json!(["a"]),
            json!({}),
        ] {
            assert_eq!(v(bad.clone()), Err(ClaimError::InvalidIdentity), "{bad}");
        }
        assert_eq!(f.header_value(None), Err(ClaimError::InvalidIdentity));
        let optional = ClaimFormat {
            optional: true,
            ..f
        };
        assert_eq!(optional.header_value(None), Ok(None));
        assert_eq!(
            optional.header_value(Some(&json!(" alice"))),
            Err(ClaimError::InvalidIdentity),
            "present but unusable is refused even when optional"
        );
        let strings = ClaimFormat {
            integers: false,
            ..f
        };
        assert_eq!(
            strings.header_value(Some(&json!(7))),
            Err(ClaimError::InvalidIdentity)
        );
        let short = ClaimFormat { max_length: 3, ..f };
        assert_eq!(
            short.header_value(Some(&json!("abc"))),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            short.header_value(Some(&json!("abcd"))),
            Err(ClaimError::InvalidIdentity)
        );
    }
}
