//! `{{ NAME }}` placeholders in Envoy config templates. Every placeholder must be given a value
//! and every value must be used, so a template and its test never drift apart silently.

use anyhow::{bail, Result};
use std::collections::BTreeMap;

pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut used = std::collections::BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!(
                "unterminated placeholder near: {}",
                &rest[start..rest.len().min(start + 40)]
            );
        };
        let name = after[..end].trim();
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => bail!("template placeholder {{{{ {name} }}}} has no value"),
        }
        used.insert(name.to_string());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(unused) = vars.keys().find(|k| !used.contains(k.as_str())) {
        bail!("value given for {unused}, but the template has no such placeholder");
    }
    Ok(out)
}

/// The placeholder names a template uses, in order of first use.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim().to_string();
        if !names.contains(&name) {
            names.push(name);
        }
        rest = &after[end + 2..];
    }
    names
}

/// A YAML double-quoted scalar holding `s` exactly (JSON string syntax is valid YAML).
pub fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_checks_both_ways() {
        let mut vars = BTreeMap::new();
        vars.insert("PORT".to_string(), "80".to_string());
        assert_eq!(render("p: {{ PORT }}/{{PORT}}", &vars).unwrap(), "p: 80/80");
        assert!(render("{{ OTHER }}", &vars).is_err());
        assert!(render("nothing", &vars).is_err());
        assert_eq!(placeholders("{{A}} {{ B }} {{A}}"), ["A", "B"]);
        assert_eq!(yaml_string("a\"b\n"), r#""a\"b\n""#);
    }
}
