//! Dotted JSON paths with array steps (`user.ssn`, `items[*].internal_id`, `[0].id`), parsed once
//! at configuration time.

use std::fmt;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// A member of an object.
    Key(String),
    /// One element of an array.
    Index(usize),
    /// Every element of an array (`[*]`).
    AnyIndex,
}

/// A parsed path. Always non-empty; operations additionally require it to end with a [`Step::Key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    pub steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `a.b[0].c[*].d`. Field names cannot contain `.`, `[` or `]`; the path may start with
    /// an array step (`[*].id`) to address a top-level array.
    pub fn parse(text: &str) -> Result<Self, String> {
        let err = |why: &str| Err(format!("invalid JSON path {text:?}: {why}"));
        if text.is_empty() {
            return err("it is empty");
        }
        let bytes = text.as_bytes();
        let mut steps = Vec::new();
        let mut i = 0;
        // Whether the previous token allows a `.` or `[` to follow (false at the start).
        let mut after_step = false;
        while i < bytes.len() {
            match bytes[i] {
                b'[' => {
                    let Some(close) = text[i..].find(']').map(|p| p + i) else {
                        return err("unterminated `[`");
                    };
                    let inner = &text[i + 1..close];
                    if inner == "*" {
                        steps.push(Step::AnyIndex);
                    } else if !inner.is_empty()
                        && inner.bytes().all(|b| b.is_ascii_digit())
                        && (inner == "0" || !inner.starts_with('0'))
                    {
                        match inner.parse::<usize>() {
                            Ok(n) => steps.push(Step::Index(n)),
                            Err(_) => return err("array index is too large"),
                        }
                    } else {
                        return err("an array step must be `[*]` or `[N]` with a decimal index");
                    }
                    i = close + 1;
                    after_step = true;
                }
                b'.' => {
                    if !after_step {
                        return err("empty field name");
                    }
                    i += 1;
                    after_step = false;
                    if i == bytes.len() || matches!(bytes[i], b'.' | b'[') {
                        return err("empty field name");
                    }
                }
                b']' => return err("unexpected `]`"),
                _ => {
                    if after_step {
                        return err("expected `.` or `[` after an array step");
                    }
                    let end = text[i..]
                        .find(['.', '[', ']'])
                        .map_or(text.len(), |p| p + i);
                    steps.push(Step::Key(text[i..end].to_string()));
                    i = end;
                    after_step = true;
                }
            }
        }
        Ok(JsonPath { steps })
    }

    /// The field name an operation acts on, when the path ends with one.
    pub fn last_key(&self) -> Option<&str> {
        match self.steps.last() {
            Some(Step::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// True when some JSON location can be addressed by both paths, or one lies inside the other
    /// (`a` and `a.b`, `items[*].x` and `items[0].x`).
    pub fn overlaps(&self, other: &JsonPath) -> bool {
        self.steps
            .iter()
            .zip(&other.steps)
            .all(|(a, b)| match (a, b) {
                (Step::Key(x), Step::Key(y)) => x == y,
                (Step::Index(x), Step::Index(y)) => x == y,
                (Step::AnyIndex, Step::Index(_) | Step::AnyIndex)
                | (Step::Index(_), Step::AnyIndex) => true,
                _ => false,
            })
    }

    /// The same path with its last field replaced (the target of a rename).
    pub fn with_last_key(&self, key: &str) -> JsonPath {
        let mut steps = self.steps.clone();
        if let Some(last) = steps.last_mut() {
            *last = Step::Key(key.to_string());
        }
        JsonPath { steps }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Key(k) if i == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
                Step::AnyIndex => write!(f, "[*]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Step {
        Step::Key(k.to_string())
    }

    #[test]
    fn parses_keys_indices_and_wildcards() {
        assert_eq!(
            JsonPath::parse("debug_info").unwrap().steps,
            [key("debug_info")]
        );
        assert_eq!(
            JsonPath::parse("user.ssn").unwrap().steps,
            [key("user"), key("ssn")]
        );
        assert_eq!(
            JsonPath::parse("items[*].internal_id").unwrap().steps,
            [key("items"), Step::AnyIndex, key("internal_id")]
        );
        assert_eq!(
            JsonPath::parse("a[0][12].b").unwrap().steps,
            [key("a"), Step::Index(0), Step::Index(12), key("b")]
        );
        assert_eq!(
            JsonPath::parse("[*].id").unwrap().steps,
            [Step::AnyIndex, key("id")]
        );
        assert_eq!(
            JsonPath::parse("héllo wörld").unwrap().steps,
            [key("héllo wörld")]
        );
        for p in ["a", "a.b", "items[*].x", "[3].y", "a[0][1]"] {
            assert_eq!(JsonPath::parse(p).unwrap().to_string(), p);
        }
    }

    #[test]
    fn refuses_malformed_paths() {
        for (p, why) in [
            ("", "it is empty"),
            ("items[", "unterminated `[`"),
            ("a..b", "empty field name"),
            (".a", "empty field name"),
            ("a.", "empty field name"),
            ("a.[0]", "empty field name"),
            ("a[x]", "an array step must be"),
            ("a[]", "an array step must be"),
            ("a[01]", "an array step must be"),
            ("a[-1]", "an array step must be"),
            ("a[0]b", "expected `.` or `[`"),
            ("a]", "unexpected `]`"),
            ("a[99999999999999999999999]", "too large"),
        ] {
            let err = JsonPath::parse(p).unwrap_err();
            assert!(err.contains(why), "{p}: {err}");
        }
    }

    #[test]
    fn overlap_follows_wildcards_and_prefixes() {
        let p = |s| JsonPath::parse(s).unwrap();
        assert!(p("a").overlaps(&p("a.b")));
        assert!(p("a.b").overlaps(&p("a")));
        assert!(p("items[*].x").overlaps(&p("items[0].x")));
        assert!(p("items[1]").overlaps(&p("items[*].y")));
        assert!(!p("items[*].x").overlaps(&p("items[0].y")));
        assert!(!p("a.b").overlaps(&p("a.c")));
        assert!(!p("a[0]").overlaps(&p("a.b")));
        assert!(!p("a[0].x").overlaps(&p("a[1].x")));
    }
}
