//! Envoy's `type.matcher.v3.StringMatcher` (`exact`, `prefix`, `suffix`, `contains`,
//! `safe_regex`, `ignore_case`), as Envoy's own configs write it: header and query conditions of
//! a rule's match, a provider's `subjects`. Compiled once; matching does not allocate.

use crate::config::ConfigError;
use regex::Regex;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// A string condition as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<SafeRegex>,
    /// ASCII case-insensitive `exact`, `prefix`, `suffix` and `contains` (not `safe_regex`,
    /// as in Envoy).
    #[serde(default)]
    pub ignore_case: bool,
}

/// Envoy's `type.matcher.v3.RegexMatcher`: `{regex, google_re2: {}}`. The whole value must
/// match (the expression is anchored), as in Envoy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeRegex {
    pub regex: String,
    /// Envoy's engine selector (RE2 options); the expression is compiled by the `regex` crate,
    /// whose syntax is RE2's.
    #[serde(default)]
    pub google_re2: Option<IgnoredAny>,
}

impl SafeRegex {
    /// Compiled anchored; `field` names it in the error.
    pub fn compile(&self, field: &str) -> Result<Regex, ConfigError> {
        Regex::new(&format!("^(?:{})$", self.regex))
            .map_err(|e| ConfigError::new(field, format!("invalid regular expression: {e}")))
    }
}

/// A compiled [`StringMatch`].
#[derive(Debug, Clone)]
pub enum StringMatcher {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Contains(String, bool),
    Regex(Regex),
}

impl StringMatch {
    /// Exactly one kind must be given; `prefix`, `suffix` and `contains` must not be empty
    /// (Envoy's own validation).
    pub fn compile(&self) -> Result<StringMatcher, ConfigError> {
        let ci = self.ignore_case;
        let lower = |s: &String| {
            if ci {
                s.to_ascii_lowercase()
            } else {
                s.clone()
            }
        };
        let non_empty = |field: &str, s: &String| {
            if s.is_empty() {
                Err(ConfigError::new(field, "must not be empty"))
            } else {
                Ok(lower(s))
            }
        };
        let mut kinds = Vec::new();
        if let Some(s) = &self.exact {
            kinds.push(StringMatcher::Exact(lower(s), ci));
        }
        if let Some(s) = &self.prefix {
            kinds.push(StringMatcher::Prefix(non_empty("prefix", s)?, ci));
        }
        if let Some(s) = &self.suffix {
            kinds.push(StringMatcher::Suffix(non_empty("suffix", s)?, ci));
        }
        if let Some(s) = &self.contains {
            kinds.push(StringMatcher::Contains(non_empty("contains", s)?, ci));
        }
        if let Some(re) = &self.safe_regex {
            kinds.push(StringMatcher::Regex(re.compile("safe_regex")?));
        }
        match (kinds.pop(), kinds.is_empty()) {
            (Some(m), true) => Ok(m),
            _ => Err(ConfigError::new(
                "",
                "give exactly one of exact, prefix, suffix, contains and safe_regex",
            )),
        }
    }
}

impl StringMatcher {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatcher::Exact(want, ci) => eq(value, want, *ci),
            StringMatcher::Prefix(p, ci) => {
                value.len() >= p.len() && value.is_char_boundary(p.len()) && {
                    eq(&value[..p.len()], p, *ci)
                }
            }
            StringMatcher::Suffix(s, ci) => {
                let start = value.len().wrapping_sub(s.len());
                value.len() >= s.len() && value.is_char_boundary(start) && {
                    eq(&value[start..], s, *ci)
                }
            }
            StringMatcher::Contains(c, false) => value.contains(c.as_str()),
            StringMatcher::Contains(c, true) => value
                .as_bytes()
                .windows(c.len())
                .any(|w| w.eq_ignore_ascii_case(c.as_bytes())),
            StringMatcher::Regex(re) => re.is_match(value),
        }
    }
}

/// `want` is already lower-case when `ci`.
fn eq(got: &str, want: &str, ci: bool) -> bool {
    if ci {
        got.eq_ignore_ascii_case(want)
    } else {
        got == want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(json: &str) -> StringMatcher {
        serde_json::from_str::<StringMatch>(json)
            .unwrap()
            .compile()
            .unwrap()
    }

    #[test]
    fn each_kind_and_ignore_case() {
        assert!(m(r#"{"exact":"Abc"}"#).matches("Abc"));
        assert!(!m(r#"{"exact":"Abc"}"#).matches("abc"));
        assert!(m(r#"{"exact":"Abc","ignore_case":true}"#).matches("aBC"));
        assert!(m(r#"{"exact":""}"#).matches(""));
        assert!(m(r#"{"prefix":"spiffe://a/"}"#).matches("spiffe://a/x"));
        assert!(!m(r#"{"prefix":"spiffe://a/"}"#).matches("spiffe://b/x"));
        assert!(m(r#"{"prefix":"AB","ignore_case":true}"#).matches("abc"));
        assert!(m(r#"{"suffix":".com"}"#).matches("x.com"));
        assert!(!m(r#"{"suffix":".com"}"#).matches("com"));
        assert!(m(r#"{"suffix":".COM","ignore_case":true}"#).matches("x.com"));
        assert!(m(r#"{"contains":"mid"}"#).matches("amidst"));
        assert!(m(r#"{"contains":"MID","ignore_case":true}"#).matches("amidst"));
        assert!(!m(r#"{"contains":"MID"}"#).matches("amidst"));
        let re = m(r#"{"safe_regex":{"google_re2":{},"regex":"[0-9]{3}"}}"#);
        assert!(re.matches("123"));
        assert!(!re.matches("1234"), "anchored");
        // Multi-byte values never split inside a character.
        assert!(!m(r#"{"prefix":"é"}"#).matches("e"));
        assert!(!m(r#"{"suffix":"a"}"#).matches("é"));
        assert!(m(r#"{"suffix":"é"}"#).matches("café"));
    }

    #[test]
    fn bad_matchers_are_refused() {
        let err = |json: &str| {
            serde_json::from_str::<StringMatch>(json)
                .unwrap()
                .compile()
                .unwrap_err()
        };
        assert_eq!(err(r#"{"prefix":""}"#).field, "prefix");
        assert_eq!(err(r#"{"safe_regex":{"regex":"("}}"#).field, "safe_regex");
        assert!(err(r#"{"exact":"a","prefix":"b"}"#)
            .reason
            .contains("exactly one"));
        assert!(err("{}").reason.contains("exactly one"));
    }
}
