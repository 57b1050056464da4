//! Value templates (`gw-${method}`, `${header.x-b}`, `$$` for a literal `$`), compiled at
//! configuration time and rendered against the request.

use filter_core::HeaderMap;
use std::borrow::Cow;

/// A request attribute a template can refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `${path}`: the path without its query string.
    Path,
    /// `${method}`.
    Method,
    /// `${host}`: `:authority` (or `host`).
    Host,
    /// `${header.NAME}`: the first value of a request header.
    Header(String),
    /// `${query.NAME}`: the percent-decoded first value of a query parameter.
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Where a template's variables come from: the live request, or values captured from it.
pub trait VarSource {
    fn lookup(&self, var: &Var) -> Cow<'_, str>;
}

impl Template {
    /// Parses `text`. A `$` not followed by `{` or `$` is literal.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
            } else if let Some(tail) = after.strip_prefix('{') {
                let Some(close) = tail.find('}') else {
                    return Err(format!("unterminated `${{` in template {text:?}"));
                };
                let var = parse_var(&tail[..close])?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Var(var));
                rest = &tail[close + 1..];
            } else {
                literal.push('$');
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The variables the template refers to.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Literal(_) => None,
        })
    }

    /// The literal text of the template (what a value without variables renders to).
    pub fn literal_text(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(s) => Some(s.as_str()),
            Part::Var(_) => None,
        })
    }

    pub fn render(&self, source: &dyn VarSource) -> String {
        match self.parts.as_slice() {
            [] => String::new(),
            [Part::Literal(s)] => s.clone(),
            parts => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Literal(s) => out.push_str(s),
                        Part::Var(v) => out.push_str(&source.lookup(v)),
                    }
                }
                out
            }
        }
    }

    /// Renders for a header value: request data (a decoded query parameter can hold anything)
    /// never smuggles CR, LF or NUL into a header.
    pub fn render_header_value(&self, source: &dyn VarSource) -> String {
        let mut value = self.render(source);
        if value.contains(['\r', '\n', '\0']) {
            value.retain(|c| !matches!(c, '\r' | '\n' | '\0'));
        }
        value
    }
}

fn parse_var(name: &str) -> Result<Var, String> {
    let unknown = || {
        Err(format!(
            "unknown template variable `${{{name}}}` (expected path, method, host, header.NAME or query.NAME)"
        ))
    };
    match name {
        "path" => Ok(Var::Path),
        "method" => Ok(Var::Method),
        "host" => Ok(Var::Host),
        _ => {
            if let Some(header) = name.strip_prefix("header.") {
                if filter_core::headers::is_token(header) {
                    return Ok(Var::Header(header.to_ascii_lowercase()));
                }
            } else if let Some(param) = name.strip_prefix("query.") {
                if !param.is_empty() {
                    return Ok(Var::Query(param.to_string()));
                }
            }
            unknown()
        }
    }
}

/// Template variables read from the request headers being processed.
pub struct RequestVars<'a>(pub &'a HeaderMap);

impl VarSource for RequestVars<'_> {
    fn lookup(&self, var: &Var) -> Cow<'_, str> {
        let headers = self.0;
        match var {
            Var::Path => Cow::Borrowed(headers.path()),
            Var::Method => Cow::Borrowed(headers.method()),
            Var::Host => Cow::Borrowed(headers.authority()),
            Var::Header(name) => Cow::Borrowed(headers.get(name).unwrap_or("")),
            Var::Query(name) => {
                let query = filter_core::headers::split_path(headers.path_and_query()).1;
                query
                    .and_then(|q| {
                        form_urlencoded::parse(q.as_bytes())
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| Cow::Owned(v.into_owned()))
                    })
                    .unwrap_or(Cow::Borrowed(""))
            }
        }
    }
}

/// Request values captured for the response phase (response templates refer to the request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    values: Vec<(Var, String)>,
}

impl Captured {
    /// Captures `vars` from the request.
    pub fn capture<'v>(vars: impl IntoIterator<Item = &'v Var>, request: &HeaderMap) -> Self {
        let source = RequestVars(request);
        let mut values: Vec<(Var, String)> = Vec::new();
        for var in vars {
            if !values.iter().any(|(v, _)| v == var) {
                values.push((var.clone(), source.lookup(var).into_owned()));
            }
        }
        Captured { values }
    }

    /// The request's `x-request-id`, when captured and not empty: rules with response body
    /// operations capture it ([`REQUEST_ID`]) for the 502 that may replace the response.
    pub fn request_id(&self) -> Option<&str> {
        self.values
            .iter()
            .find(|(v, _)| matches!(v, Var::Header(name) if name == REQUEST_ID))
            .map(|(_, value)| value.as_str())
            .filter(|id| !id.is_empty())
    }
}

/// The request header that names the request in JSON error replies.
pub const REQUEST_ID: &str = "x-request-id";

impl VarSource for Captured {
    fn lookup(&self, var: &Var) -> Cow<'_, str> {
        let found = self.values.iter().find(|(v, _)| v == var);
        Cow::Borrowed(found.map_or("", |(_, value)| value.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> HeaderMap {
        HeaderMap::from([
            (":method", "POST"),
            (
                ":path",
                "/api/orders?page=2&q=a%20b+c&q=second&bad=%0d%0aX:1",
            ),
            (":authority", "shop.example"),
            ("x-b", "from-b"),
        ])
    }

    fn render(t: &str) -> String {
        Template::parse(t).unwrap().render(&RequestVars(&request()))
    }

    #[test]
    fn renders_variables_and_dollars() {
        assert_eq!(render("gw-${method}"), "gw-POST");
        assert_eq!(
            render("${path}|${host}|${header.X-B}"),
            "/api/orders|shop.example|from-b"
        );
        assert_eq!(
            render("${query.q}/${query.page}/${query.none}/${header.none}"),
            "a b c/2//"
        );
        assert_eq!(render("$$5 and $ and $$${method}$"), "$5 and $ and $POST$");
        assert_eq!(render(""), "");
        assert_eq!(render("plain"), "plain");
    }

    #[test]
    fn header_values_never_carry_line_breaks() {
        let t = Template::parse("v=${query.bad}").unwrap();
        assert_eq!(t.render(&RequestVars(&request())), "v=\r\nX:1");
        assert_eq!(t.render_header_value(&RequestVars(&request())), "v=X:1");
    }

    #[test]
    fn refuses_unknown_and_unterminated() {
        assert_eq!(
            Template::parse("a${foo}").unwrap_err(),
            "unknown template variable `${foo}` (expected path, method, host, header.NAME or query.NAME)"
        );
        assert!(Template::parse("${header.}")
            .unwrap_err()
            .starts_with("unknown template variable"));
        assert!(Template::parse("${header.a b}")
            .unwrap_err()
            .starts_with("unknown template variable"));
        assert!(Template::parse("${query.}")
            .unwrap_err()
            .starts_with("unknown template variable"));
        assert_eq!(
            Template::parse("x-${method").unwrap_err(),
            "unterminated `${` in template \"x-${method\""
        );
    }

    #[test]
    fn captured_values_replay_the_request() {
        let t = Template::parse("${method} ${path} ${header.x-b}").unwrap();
        let captured = Captured::capture(t.vars(), &request());
        assert_eq!(t.render(&captured), "POST /api/orders from-b");
        assert_eq!(
            Template::parse("${host}").unwrap().render(&captured),
            "",
            "not captured"
        );
    }
}
