//! The request or response header list as the host hands it over: one call, owned pairs.

/// Header pairs in arrival order. Names are stored lower-cased (Envoy already sends them so;
/// tests and other hosts may not) and looked up ASCII-case-insensitively. Pseudo-headers
/// (`:path`, `:method`, `:authority`) live in the same list, as in proxy-wasm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    pairs: Vec<(String, String)>,
}

impl HeaderMap {
    /// Lower-cases the names in place (no copy when they already are).
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        for (name, _) in &mut pairs {
            name.make_ascii_lowercase();
        }
        Self { pairs }
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn method(&self) -> &str {
        self.get(":method").unwrap_or("")
    }

    /// The full `:path`, query string included.
    pub fn path_and_query(&self) -> &str {
        self.get(":path").unwrap_or("")
    }

    /// `:path` without its query string.
    pub fn path(&self) -> &str {
        split_path(self.path_and_query()).0
    }

    /// `:authority`, falling back to `host` (HTTP/1.0 style).
    pub fn authority(&self) -> &str {
        self.get(":authority")
            .or_else(|| self.get("host"))
            .unwrap_or("")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Replaces every value of `name` with one value (test hosts and logic that edits a copy).
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.pairs
            .push((name.to_ascii_lowercase(), value.to_string()));
    }

    pub fn append(&mut self, name: &str, value: &str) {
        self.pairs
            .push((name.to_ascii_lowercase(), value.to_string()));
    }

    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.pairs
    }
}

impl From<Vec<(String, String)>> for HeaderMap {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Self::new(pairs)
    }
}

impl<const N: usize> From<[(&str, &str); N]> for HeaderMap {
    fn from(pairs: [(&str, &str); N]) -> Self {
        Self::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }
}

/// One header write on the host, as [`changes`] plans them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Remove every value of the header.
    Remove(String),
    /// Replace every value of the header with this one.
    Set(String, String),
    /// Add one more value.
    Add(String, String),
}

impl HeaderEdit {
    /// Carries the write out on a copy of the headers, as the host would.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        match self {
            HeaderEdit::Remove(name) => headers.remove(name),
            HeaderEdit::Set(name, value) => headers.set(name, value),
            HeaderEdit::Add(name, value) => headers.append(name, value),
        }
    }
}

/// The host writes that turn `before` into `after`, header by header: a header whose values
/// are unchanged costs nothing, one with no value left is removed, any other is set to its first
/// value and gets the rest added. Filters that edit a copy of the map (several stages in one
/// pass) write only the net difference, whatever the stages did in between.
///
/// Both lists are sorted by name (stably, so a name's values keep their order) and walked
/// together: O(n log n) name comparisons and no allocation beyond the edits, where comparing
/// each name against every other costs quadratically in the VM on every request. The edits
/// come out in name order.
pub fn changes(before: &HeaderMap, after: &HeaderMap) -> Vec<HeaderEdit> {
    let mut out = Vec::new();
    if before.pairs == after.pairs {
        return out;
    }
    let (b, a) = (by_name(before), by_name(after));
    let (mut i, mut j) = (0, 0);
    loop {
        let name = match (b.get(i), a.get(j)) {
            (Some(x), Some(y)) if x.0 <= y.0 => &x.0,
            (_, Some(y)) => &y.0,
            (Some(x), None) => &x.0,
            (None, None) => break,
        };
        let end = |v: &[&(String, String)], from: usize| {
            from + v[from..].iter().take_while(|(n, _)| n == name).count()
        };
        let (i_end, j_end) = (end(&b, i), end(&a, j));
        let (was, now) = (&b[i..i_end], &a[j..j_end]);
        if !was.iter().map(|p| &p.1).eq(now.iter().map(|p| &p.1)) {
            match now.split_first() {
                None => out.push(HeaderEdit::Remove(name.clone())),
                Some((first, rest)) => {
                    out.push(HeaderEdit::Set(name.clone(), first.1.clone()));
                    out.extend(
                        rest.iter()
                            .map(|p| HeaderEdit::Add(name.clone(), p.1.clone())),
                    );
                }
            }
        }
        (i, j) = (i_end, j_end);
    }
    out
}

/// The pairs of `map` sorted by name (names are stored lower-cased); a name's values in their
/// order.
fn by_name(map: &HeaderMap) -> Vec<&(String, String)> {
    let mut v: Vec<&(String, String)> = map.pairs.iter().collect();
    v.sort_by(|x, y| x.0.cmp(&y.0));
    v
}

/// RFC 7230 `token`: the characters a header name may use.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header name a filter may read or write, lower-cased, or why it is not one.
pub fn valid_header_name(name: &str) -> Result<String, String> {
    if is_token(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "{name:?} is not a valid header name (RFC 7230 token characters only)"
        ))
    }
}

/// Splits `/a/b?x=1` into (`/a/b`, `Some("x=1")`). A fragment never reaches a proxy.
pub fn split_path(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive_and_ordered() {
        let mut h = HeaderMap::from([
            (":path", "/a?x=1"),
            ("X-A", "1"),
            ("x-a", "2"),
            ("host", "h.example"),
        ]);
        assert_eq!(h.get("x-a"), Some("1"));
        assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.path(), "/a");
        assert_eq!(h.authority(), "h.example");
        h.set("x-a", "3");
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), ["3"]);
        h.remove("X-A");
        assert!(!h.contains("x-a"));
    }

    #[test]
    fn changes_are_the_net_difference() {
        let before = HeaderMap::from([
            (":path", "/a"),
            ("x-keep", "1"),
            ("x-gone", "1"),
            ("x-multi", "a"),
            ("x-same", "s"),
        ]);
        let mut after = before.clone();
        after.remove("x-gone");
        after.set("x-same", "s"); // removed and set back: no write
        after.append("x-multi", "b");
        after.set("x-new", "n");
        after.remove("x-never-there");
        after.set(":path", "/b");
        let got = changes(&before, &after);
        assert_eq!(
            got,
            [
                HeaderEdit::Set(":path".into(), "/b".into()),
                HeaderEdit::Remove("x-gone".into()),
                HeaderEdit::Set("x-multi".into(), "a".into()),
                HeaderEdit::Add("x-multi".into(), "b".into()),
                HeaderEdit::Set("x-new".into(), "n".into()),
            ]
        );
        assert!(changes(&before, &before).is_empty());
        let mut replayed = before.clone();
        for change in &got {
            change.apply_to(&mut replayed);
        }
        assert!(changes(&replayed, &after).is_empty());
    }

    #[test]
    fn changes_ignore_name_case_and_keep_each_names_value_order() {
        let before = HeaderMap::new(vec![
            ("X-A".into(), "1".into()),
            ("b".into(), "2".into()),
            ("x-a".into(), "3".into()),
        ]);
        let mut after = HeaderMap::new(vec![
            ("b".into(), "2".into()),
            ("x-a".into(), "1".into()),
            ("X-A".into(), "3".into()),
        ]);
        assert!(changes(&before, &after).is_empty(), "same values per name");
        after.append("x-A", "4");
        assert_eq!(
            changes(&before, &after),
            [
                HeaderEdit::Set("x-a".into(), "1".into()),
                HeaderEdit::Add("x-a".into(), "3".into()),
                HeaderEdit::Add("x-a".into(), "4".into()),
            ]
        );
        after.remove("b");
        after.set("a", "0");
        let got = changes(&before, &after);
        let mut replayed = before.clone();
        for change in &got {
            change.apply_to(&mut replayed);
        }
        assert!(changes(&replayed, &after).is_empty());
        assert_eq!(got.first(), Some(&HeaderEdit::Set("a".into(), "0".into())));
    }

    #[test]
    fn tokens() {
        assert!(is_token("x-tenant-id"));
        assert!(!is_token(""));
        assert!(!is_token("x tenant"));
        assert!(!is_token(":path"));
    }
}
