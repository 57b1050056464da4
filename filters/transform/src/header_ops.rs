//! Header operations (remove, rename, set, add, append) and the minimal list of host edits that
//! carries them out.

use crate::config::HeaderOpsConfig;
use crate::template::{Template, Var, VarSource};
use filter_core::{ConfigError, HeaderEdit, HeaderMap};

/// Compiled header operations, applied in the order remove, rename, set, add, append.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    set: Vec<(String, Template)>,
    add: Vec<(String, Template)>,
    append: Vec<(String, Template)>,
}

/// Validates a header name an operation may touch; returns it lower-cased.
fn header_name(name: &str) -> Result<String, String> {
    if name.starts_with(':') {
        return Err(format!(
            "pseudo-header {name:?} cannot be edited (the query operations edit the query string of :path)"
        ));
    }
    let lower = filter_core::headers::valid_header_name(name)?;
    if lower == "content-length" || lower == "transfer-encoding" {
        return Err(format!(
            "{lower:?} is managed by the proxy and cannot be edited"
        ));
    }
    Ok(lower)
}

fn header_value(value: &str) -> Result<Template, String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err("header values must not contain CR, LF or NUL".to_string());
    }
    Template::parse(value)
}

impl HeaderOps {
    /// Validates and compiles. Errors name the field relative to the `headers` object.
    pub fn compile(config: &HeaderOpsConfig) -> Result<HeaderOps, ConfigError> {
        let mut ops = HeaderOps::default();
        for (i, name) in config.remove.iter().enumerate() {
            ops.remove
                .push(header_name(name).map_err(|e| ConfigError::new(format!("remove[{i}]"), e))?);
        }
        for (from, to) in config.rename.iter() {
            let field = format!("rename.{from}");
            let from_name = header_name(from).map_err(|e| ConfigError::new(&field, e))?;
            let to_name = header_name(to).map_err(|e| ConfigError::new(&field, e))?;
            if from_name == to_name {
                return Err(ConfigError::new(
                    field,
                    "renames the header to its own name",
                ));
            }
            ops.rename.push((from_name, to_name));
        }
        for (word, map, list) in [
            ("set", &config.set, &mut ops.set),
            ("add", &config.add, &mut ops.add),
            ("append", &config.append, &mut ops.append),
        ] {
            for (name, value) in map.iter() {
                let field = format!("{word}.{name}");
                let name = header_name(name).map_err(|e| ConfigError::new(&field, e))?;
                let value = header_value(value).map_err(|e| ConfigError::new(&field, e))?;
                list.push((name, value));
            }
        }
        Ok(ops)
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// Every template variable the values refer to.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.set
            .iter()
            .chain(&self.add)
            .chain(&self.append)
            .flat_map(|(_, t)| t.vars())
    }

    /// True when the edits depend on the headers' current values (`rename` moves them, `add`
    /// applies only when absent). Otherwise [`Self::plan_blind`] needs no header read: on the
    /// response path that saves the host call that copies the whole map into the VM.
    pub fn needs_current_values(&self) -> bool {
        !self.rename.is_empty() || !self.add.is_empty()
    }

    /// The edits of `remove`, `set` and `append` without looking at the current headers: the
    /// host's remove of an absent header is a no-op and its set replaces every value, so the
    /// result equals [`Self::plan`]'s (a test checks it).
    pub fn plan_blind(&self, vars: &dyn VarSource) -> Vec<HeaderEdit> {
        let mut edits: Vec<HeaderEdit> = self
            .remove
            .iter()
            .filter(|name| !self.set.iter().any(|(n, _)| n == *name))
            .map(|name| HeaderEdit::Remove(name.clone()))
            .collect();
        for (name, value) in &self.set {
            edits.push(HeaderEdit::Set(
                name.clone(),
                value.render_header_value(vars),
            ));
        }
        for (name, value) in &self.append {
            edits.push(HeaderEdit::Add(
                name.clone(),
                value.render_header_value(vars),
            ));
        }
        edits
    }

    /// The edits that turn `headers` into the result of the operations; nothing for a header
    /// that ends up as it was. Templates render against `vars` (the original request).
    pub fn plan(&self, headers: &HeaderMap, vars: &dyn VarSource) -> Vec<HeaderEdit> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut state = Touched {
            headers,
            names: Vec::new(),
        };
        for name in &self.remove {
            state.values(name).clear();
        }
        for (from, to) in &self.rename {
            let moved = std::mem::take(state.values(from));
            if !moved.is_empty() {
                *state.values(to) = moved;
            }
        }
        for (name, value) in &self.set {
            *state.values(name) = vec![value.render_header_value(vars)];
        }
        for (name, value) in &self.add {
            let values = state.values(name);
            if values.is_empty() {
                values.push(value.render_header_value(vars));
            }
        }
        for (name, value) in &self.append {
            let value = value.render_header_value(vars);
            state.values(name).push(value);
        }
        state.edits()
    }
}

/// The values of the headers the operations touched, starting from the request's.
struct Touched<'h> {
    headers: &'h HeaderMap,
    names: Vec<(String, Vec<String>)>,
}

impl Touched<'_> {
    fn values(&mut self, name: &str) -> &mut Vec<String> {
        let at = match self.names.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                let original = self.headers.get_all(name).map(str::to_string).collect();
                self.names.push((name.to_string(), original));
                self.names.len() - 1
            }
        };
        &mut self.names[at].1
    }

    fn edits(self) -> Vec<HeaderEdit> {
        let mut edits = Vec::new();
        for (name, values) in self.names {
            let original: Vec<&str> = self.headers.get_all(&name).collect();
            if original
                .iter()
                .copied()
                .eq(values.iter().map(String::as_str))
            {
                continue;
            }
            let mut values = values.into_iter();
            if original.is_empty() || starts_with(values.as_slice(), &original) {
                // Only additions: append the new values, keep the old ones untouched.
                for v in values.skip(original.len()) {
                    edits.push(HeaderEdit::Add(name.clone(), v));
                }
            } else if original.len() == 1 || values.len() == 0 {
                match values.next() {
                    None => edits.push(HeaderEdit::Remove(name.clone())),
                    Some(first) => edits.push(HeaderEdit::Set(name.clone(), first)),
                }
                edits.extend(values.map(|v| HeaderEdit::Add(name.clone(), v)));
            } else {
                // Several old values: remove them all rather than rely on how the host's
                // "replace" treats repeated headers.
                edits.push(HeaderEdit::Remove(name.clone()));
                edits.extend(values.map(|v| HeaderEdit::Add(name.clone(), v)));
            }
        }
        edits
    }
}

fn starts_with(values: &[String], prefix: &[&str]) -> bool {
    values.len() >= prefix.len() && values.iter().zip(prefix).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::RequestVars;

    fn ops(json: &str) -> Result<HeaderOps, ConfigError> {
        HeaderOps::compile(&serde_json::from_str::<HeaderOpsConfig>(json).unwrap())
    }

    fn plan(json: &str, headers: &HeaderMap) -> Vec<HeaderEdit> {
        ops(json).unwrap().plan(headers, &RequestVars(headers))
    }

    fn set(n: &str, v: &str) -> HeaderEdit {
        HeaderEdit::Set(n.into(), v.into())
    }
    fn append(n: &str, v: &str) -> HeaderEdit {
        HeaderEdit::Add(n.into(), v.into())
    }
    fn remove(n: &str) -> HeaderEdit {
        HeaderEdit::Remove(n.into())
    }

    fn req() -> HeaderMap {
        HeaderMap::from([
            (":method", "GET"),
            (":path", "/a?x=1"),
            ("x-internal", "secret"),
            ("x-old", "o1"),
            ("x-old", "o2"),
            ("x-new", "n"),
            ("x-b", "bee"),
            ("x-multi", "m1"),
            ("x-multi", "m2"),
        ])
    }

    #[test]
    fn each_operation() {
        let h = req();
        assert_eq!(
            plan(r#"{"remove":["X-Internal","absent"]}"#, &h),
            [remove("x-internal")]
        );
        assert_eq!(
            plan(r#"{"rename":{"x-old":"x-new"}}"#, &h),
            [remove("x-old"), set("x-new", "o1"), append("x-new", "o2")]
        );
        assert_eq!(plan(r#"{"rename":{"absent":"x-new"}}"#, &h), []);
        assert_eq!(
            plan(r#"{"rename":{"x-b":"x-c"}}"#, &h),
            [remove("x-b"), append("x-c", "bee")]
        );
        assert_eq!(
            plan(r#"{"set":{"x-b":"v","x-c":"w"}}"#, &h),
            [set("x-b", "v"), append("x-c", "w")]
        );
        assert_eq!(
            plan(r#"{"set":{"x-b":"bee"}}"#, &h),
            [],
            "unchanged value, no host call"
        );
        assert_eq!(
            plan(r#"{"set":{"x-multi":"one"}}"#, &h),
            [remove("x-multi"), append("x-multi", "one")]
        );
        assert_eq!(
            plan(r#"{"add":{"x-b":"v","x-c":"w"}}"#, &h),
            [append("x-c", "w")]
        );
        assert_eq!(plan(r#"{"append":{"x-b":"v"}}"#, &h), [append("x-b", "v")]);
        assert_eq!(
            plan(r#"{"append":{"x-multi":"m3"}}"#, &h),
            [append("x-multi", "m3")]
        );
    }

    #[test]
    fn operations_apply_in_order() {
        let h = req();
        // remove then add: the header is absent when add runs.
        assert_eq!(
            plan(r#"{"remove":["x-b"],"add":{"x-b":"again"}}"#, &h),
            [set("x-b", "again")]
        );
        // rename then set the target; add of the renamed-away name sees it absent.
        assert_eq!(
            plan(
                r#"{"rename":{"x-b":"x-c"},"set":{"x-c":"${header.x-b}!"},"add":{"x-b":"gone"}}"#,
                &h
            ),
            [set("x-b", "gone"), append("x-c", "bee!")]
        );
        // set then append.
        assert_eq!(
            plan(r#"{"set":{"x-b":"1"},"append":{"x-b":"2"}}"#, &h),
            [set("x-b", "1"), append("x-b", "2")]
        );
        // remove everything of a multi-valued header.
        assert_eq!(
            plan(r#"{"remove":["x-multi"],"append":{"x-z":"${method}"}}"#, &h),
            [remove("x-multi"), append("x-z", "GET")]
        );
    }

    /// Applies edits the way Envoy does (set replaces every value, remove of an absent header
    /// is a no-op).
    fn host_apply(mut h: HeaderMap, edits: &[HeaderEdit]) -> Vec<(String, String)> {
        for e in edits {
            match e {
                HeaderEdit::Remove(n) => h.remove(n),
                HeaderEdit::Set(n, v) => h.set(n, v),
                HeaderEdit::Add(n, v) => h.append(n, v),
            }
        }
        let mut pairs = h.into_pairs();
        pairs.sort();
        pairs
    }

    #[test]
    fn blind_plans_equal_reading_plans() {
        let h = req();
        for json in [
            r#"{"remove":["x-internal","absent","x-multi"]}"#,
            r#"{"set":{"x-b":"bee","x-multi":"one","x-c":"${method}"}}"#,
            r#"{"remove":["x-b"],"set":{"x-b":"again"},"append":{"x-b":"2","x-multi":"m3"}}"#,
            r#"{"append":{"x-z":"${header.x-b}"}}"#,
        ] {
            let o = ops(json).unwrap();
            assert!(!o.needs_current_values(), "{json}");
            let vars = RequestVars(&h);
            assert_eq!(
                host_apply(h.clone(), &o.plan_blind(&vars)),
                host_apply(h.clone(), &o.plan(&h, &vars)),
                "{json}"
            );
        }
        assert!(ops(r#"{"rename":{"x-b":"x-c"}}"#)
            .unwrap()
            .needs_current_values());
        assert!(ops(r#"{"add":{"x-b":"v"}}"#)
            .unwrap()
            .needs_current_values());
    }

    #[test]
    fn refuses_bad_names_and_values() {
        let err = |json: &str| ops(json).unwrap_err().to_string();
        assert_eq!(err(r#"{"set":{"x a":"v"}}"#), "invalid configuration: field `set.x a`: \"x a\" is not a valid header name (RFC 7230 token characters only)");
        assert_eq!(err(r#"{"remove":["ok",":path"]}"#), "invalid configuration: field `remove[1]`: pseudo-header \":path\" cannot be edited (the query operations edit the query string of :path)");
        assert_eq!(err(r#"{"add":{"Content-Length":"1"}}"#), "invalid configuration: field `add.Content-Length`: \"content-length\" is managed by the proxy and cannot be edited");
        assert!(err(r#"{"remove":["transfer-encoding"]}"#).contains("managed by the proxy"));
        assert_eq!(
            err(r#"{"set":{"x-a":"a\r\nb: c"}}"#),
            "invalid configuration: field `set.x-a`: header values must not contain CR, LF or NUL"
        );
        assert!(err(r#"{"append":{"x-a":"${nope}"}}"#)
            .starts_with("invalid configuration: field `append.x-a`: unknown template variable"));
        assert!(err(r#"{"rename":{"x-a":"b c"}}"#).contains("field `rename.x-a`"));
        assert!(err(r#"{"rename":{"x-a":"X-A"}}"#).contains("its own name"));
        assert!(err(r#"{"set":{"":"v"}}"#).contains("not a valid header name"));
    }
}
