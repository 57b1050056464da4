//! Plugin configuration parsing: JSON into typed values, errors that name the field and the reason.

use serde::de::DeserializeOwned;
use std::fmt;

/// A configuration the filter refuses, with the dotted path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Dotted path of the field (`rules[0].match.path_regex`); empty for the document itself.
    pub field: String,
    /// Why the value is refused, in words an operator can act on.
    pub reason: String,
}

/// A header name a filter reads or writes, from configuration field `field`: lower-cased, or
/// refused naming the field.
pub fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    crate::headers::valid_header_name(name).map_err(|reason| ConfigError::new(field, reason))
}

impl ConfigError {
    /// The error is kept on one line, so it reads as one log line in Envoy: a multi-line reason
    /// (e.g. the regex crate's) is folded, and control characters in the field path (a map key
    /// in the configuration may hold any) or the reason are escaped.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.contains('\n') {
            reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        Self {
            field: escape_controls(field.into()),
            reason: escape_controls(reason),
        }
    }

    /// Prefixes the field path with its parent, so nested validators can report relative paths.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = join_path(&escape_controls(parent.to_string()), &self.field);
        self
    }
}

fn escape_controls(s: String) -> String {
    if !s.chars().any(char::is_control) {
        return s;
    }
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid configuration: {}", self.reason)
        } else {
            write!(
                f,
                "invalid configuration: field `{}`: {}",
                self.field, self.reason
            )
        }
    }
}

/// Joins a parent path and a child field or index (`a` + `b` -> `a.b`, `a` + `[0]` -> `a[0]`).
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (false, true) => parent.to_string(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

/// Parses a JSON plugin configuration. An empty configuration is refused: every filter needs one.
pub fn parse_json_config<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "",
            "the plugin configuration is empty (expected a JSON object)",
        ));
    }
    // serde reads a struct from an array too (its fields in order): refuse anything but an
    // object before it can.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConfigError::new(
            "",
            "the plugin configuration must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            de.end().map_err(|e| ConfigError::new("", e.to_string()))?;
            Ok(value)
        }
        Err(err) => {
            let path = err.path().to_string();
            let field = if path == "." { String::new() } else { path };
            Err(ConfigError::new(field, err.into_inner().to_string()))
        }
    }
}

/// Checks a directory of refused configurations: every `<case>.json` must fail `parse` with
/// exactly the one-line message in `<case>.expected` (Envoy's log shows it as is). With `bless`
/// the expectations are rewritten instead. Returns the number of cases, or every mismatch.
/// Shared by the filters' `tests/invalid_configs.rs`.
pub fn check_invalid_fixtures(
    dir: &std::path::Path,
    bless: bool,
    parse: impl Fn(&[u8]) -> Result<(), ConfigError>,
) -> Result<usize, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cases: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.display();
        let config = std::fs::read(case).map_err(|e| format!("{name}: {e}"))?;
        let message = match parse(&config) {
            Ok(()) => {
                failures.push(format!("{name} was accepted"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        if message.contains('\n') {
            failures.push(format!("{name}: message spans lines: {message}"));
        }
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, format!("{message}\n")).map_err(|e| e.to_string())?;
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected.trim_end_matches('\n') == message => {}
            Ok(expected) => failures.push(format!(
                "{name}:\n  expected {:?}\n  got      {message:?}",
                expected.trim_end_matches('\n')
            )),
            Err(_) => failures.push(format!("missing {}", expected_path.display())),
        }
    }
    if failures.is_empty() {
        Ok(cases.len())
    } else {
        Err(failures.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        rules: Vec<Rule>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rule {
        name: String,
    }

    #[test]
    fn names_the_nested_field() {
        let err =
            parse_json_config::<Doc>(br#"{"rules":[{"name":"a"},{"nmae":"b"}]}"#).unwrap_err();
        assert_eq!(err.field, "rules[1].nmae");
        assert!(
            err.reason.starts_with("unknown field `nmae`"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn empty_and_trailing_garbage_are_refused() {
        assert!(parse_json_config::<Doc>(b"  ")
            .unwrap_err()
            .reason
            .contains("empty"));
        let err = parse_json_config::<Doc>(br#"{"rules":[]} x"#).unwrap_err();
        assert!(err.reason.contains("trailing characters"), "{}", err.reason);
    }

    #[test]
    fn only_an_object_is_a_configuration() {
        for doc in [&br#"[[]]"#[..], b" []", b"\"rules\"", b"7", b"null"] {
            let err = parse_json_config::<Doc>(doc).unwrap_err();
            assert_eq!(err.reason, "the plugin configuration must be a JSON object");
        }
        assert!(parse_json_config::<Doc>(b" \n{\"rules\":[]}").is_ok());
    }

    #[test]
    fn within_prefixes_paths() {
        assert_eq!(
            ConfigError::new("x", "r").within("rules[2]").field,
            "rules[2].x"
        );
        assert_eq!(
            ConfigError::new("[1]", "r").within("strip").field,
            "strip[1]"
        );
        assert_eq!(
            ConfigError::new("a.b", "bad").to_string(),
            "invalid configuration: field `a.b`: bad"
        );
    }

    /// Found by the jwt-auth config fuzzer: a map key holding a newline made a two-line error.
    #[test]
    fn control_characters_never_break_the_line() {
        let e = ConfigError::new("providers.a\nb", "bad\r\u{1}").within("x\ty");
        let text = e.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert_eq!(e.field, "x\\ty.providers.a\\nb");
    }
}
