//! Query-string operations (remove, set, add) on `:path`. Parameters nobody touches keep their
//! exact bytes and order; names are compared after percent-decoding (`+` is a space, as in
//! `application/x-www-form-urlencoded`); new values are percent-encoded.

use crate::config::QueryOpsConfig;
use crate::template::{Template, Var, VarSource};
use filter_core::headers::split_path;
use filter_core::ConfigError;
use std::borrow::Cow;

/// Compiled query operations, applied in the order remove, set, add.
#[derive(Debug, Clone, Default)]
pub struct QueryOps {
    remove: Vec<String>,
    set: Vec<(String, Template)>,
    add: Vec<(String, Template)>,
}

/// One `name=value` segment of the query string.
struct Param<'q> {
    raw: Cow<'q, str>,
    name: String,
}

impl<'q> Param<'q> {
    fn parse(raw: &'q str) -> Param<'q> {
        let name = form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(n, _)| n.into_owned())
            .unwrap_or_default();
        Param {
            raw: Cow::Borrowed(raw),
            name,
        }
    }

    fn new(name: &str, value: &str) -> Param<'q> {
        let raw = format!("{}={}", encode(name), encode(value));
        Param {
            raw: Cow::Owned(raw),
            name: name.to_string(),
        }
    }

    fn value(&self) -> String {
        form_urlencoded::parse(self.raw.as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl QueryOps {
    /// Validates and compiles. Errors name the field relative to the `query` object.
    pub fn compile(config: &QueryOpsConfig) -> Result<QueryOps, ConfigError> {
        let mut ops = QueryOps::default();
        for (i, name) in config.remove.iter().enumerate() {
            if name.is_empty() {
                return Err(ConfigError::new(
                    format!("remove[{i}]"),
                    "parameter name must not be empty",
                ));
            }
            ops.remove.push(name.clone());
        }
        for (word, map, list) in [
            ("set", &config.set, &mut ops.set),
            ("add", &config.add, &mut ops.add),
        ] {
            for (name, value) in map.iter() {
                let field = format!("{word}.{name}");
                if name.is_empty() {
                    return Err(ConfigError::new(field, "parameter name must not be empty"));
                }
                let value = Template::parse(value).map_err(|e| ConfigError::new(&field, e))?;
                list.push((name.clone(), value));
            }
        }
        Ok(ops)
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.set.iter().chain(&self.add).flat_map(|(_, t)| t.vars())
    }

    /// The new `:path`, or None when the operations change nothing.
    pub fn plan(&self, path_and_query: &str, vars: &dyn VarSource) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let (path, query) = split_path(path_and_query);
        let mut params: Vec<Param<'_>> = query
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
            .map(Param::parse)
            .collect();
        let mut changed = false;
        for name in &self.remove {
            let before = params.len();
            params.retain(|p| &p.name != name);
            changed |= params.len() != before;
        }
        for (name, template) in &self.set {
            let value = template.render(vars);
            let mut matching = params.iter().enumerate().filter(|(_, p)| &p.name == name);
            match (matching.next().map(|(i, _)| i), matching.next().is_some()) {
                (None, _) => {
                    params.push(Param::new(name, &value));
                    changed = true;
                }
                (Some(i), false) if params[i].value() == value => {}
                (Some(i), _) => {
                    params[i] = Param::new(name, &value);
                    let mut seen = 0;
                    params.retain(|p| {
                        if &p.name == name {
                            seen += 1;
                            seen == 1
                        } else {
                            true
                        }
                    });
                    changed = true;
                }
            }
        }
        for (name, template) in &self.add {
            if !params.iter().any(|p| &p.name == name) {
                params.push(Param::new(name, &template.render(vars)));
                changed = true;
            }
        }
        if !changed {
            return None;
        }
        let mut out = String::with_capacity(path_and_query.len() + 32);
        out.push_str(path);
        for (i, p) in params.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(&p.raw);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::RequestVars;
    use filter_core::HeaderMap;

    fn plan(json: &str, path: &str) -> Option<String> {
        let ops =
            QueryOps::compile(&serde_json::from_str::<QueryOpsConfig>(json).unwrap()).unwrap();
        let headers = HeaderMap::from([(":path", path), (":method", "GET")]);
        ops.plan(path, &RequestVars(&headers))
    }

    #[test]
    fn remove_drops_every_occurrence_and_keeps_the_rest_verbatim() {
        assert_eq!(
            plan(
                r#"{"remove":["debug"]}"#,
                "/p?a=%7e1&debug=1&b=x+y&d%65bug=2&c"
            ),
            Some("/p?a=%7e1&b=x+y&c".into())
        );
        assert_eq!(
            plan(r#"{"remove":["debug"]}"#, "/p?debug"),
            Some("/p".into())
        );
        assert_eq!(plan(r#"{"remove":["debug"]}"#, "/p?a=1"), None);
        assert_eq!(plan(r#"{"remove":["debug"]}"#, "/p"), None);
    }

    #[test]
    fn set_replaces_all_occurrences_with_one_or_appends() {
        assert_eq!(
            plan(r#"{"set":{"page":"1"}}"#, "/p?page=3&x=1&page=4"),
            Some("/p?page=1&x=1".into())
        );
        assert_eq!(
            plan(r#"{"set":{"page":"1"}}"#, "/p?x=1"),
            Some("/p?x=1&page=1".into())
        );
        assert_eq!(
            plan(r#"{"set":{"page":"1"}}"#, "/p"),
            Some("/p?page=1".into())
        );
        assert_eq!(
            plan(r#"{"set":{"page":"1"}}"#, "/p?page=%31"),
            None,
            "same decoded value"
        );
        assert_eq!(
            plan(r#"{"set":{"q":"a b&c=d/é"}}"#, "/p?"),
            Some("/p?q=a+b%26c%3Dd%2F%C3%A9".into())
        );
    }

    #[test]
    fn add_only_when_absent_and_templates_render() {
        assert_eq!(
            plan(r#"{"add":{"source":"gw-${method}"}}"#, "/p?a=1"),
            Some("/p?a=1&source=gw-GET".into())
        );
        assert_eq!(plan(r#"{"add":{"source":"x"}}"#, "/p?sour%63e=1"), None);
        assert_eq!(
            plan(
                r#"{"remove":["source"],"add":{"source":"${query.source}!"}}"#,
                "/p?source=a%20b"
            ),
            Some("/p?source=a+b%21".into()),
            "templates read the original request"
        );
        assert_eq!(
            plan(
                r#"{"remove":["a"],"set":{"b":"2"},"add":{"c":"3"}}"#,
                "/p?a=1&&b=1&keep=%ZZ"
            ),
            Some("/p?b=2&keep=%ZZ&c=3".into())
        );
    }

    #[test]
    fn refuses_empty_names_and_bad_templates() {
        let err = |json: &str| {
            QueryOps::compile(&serde_json::from_str::<QueryOpsConfig>(json).unwrap()).unwrap_err()
        };
        assert_eq!(err(r#"{"remove":[""]}"#).field, "remove[0]");
        assert_eq!(err(r#"{"set":{"a":"${x}"}}"#).field, "set.a");
        assert_eq!(err(r#"{"add":{"":"v"}}"#).field, "add.");
    }
}
