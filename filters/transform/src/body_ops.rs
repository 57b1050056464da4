//! JSON body operations (strip, rename, add, set): validated and compiled into the field trie
//! (`field_trie`) that the streaming rewriter ([`crate::json_rewrite`]) walks.
//!
//! Two operations may not touch the same field or one inside the other (except two strips): that
//! makes the result independent of the order in which operations are written, so the single-pass
//! rewriter and a "parse, edit, serialize" reading of the config always agree.

use crate::config::BodyOpsConfig;
use crate::field_trie::{finish, insert, Action, Node};
use crate::json_path::JsonPath;
use crate::json_rewrite::{self, BodyOutcome};
use filter_core::ConfigError;

/// Compiled body operations of one direction of one rule.
#[derive(Debug, Clone)]
pub struct BodyOps {
    pub(crate) root: Node,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Strip,
    Rename,
    RenameTarget,
    Add,
    Set,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Strip => "strip",
            Kind::Rename => "rename",
            Kind::RenameTarget => "rename target",
            Kind::Add => "add",
            Kind::Set => "set",
        }
    }
}

struct Op {
    kind: Kind,
    path: JsonPath,
    /// Config field, relative to the body section (`strip[0]`, `add.meta.version`).
    field: String,
    leaf: Option<Action>,
    /// For renames: the new field name.
    rename_to: Option<String>,
}

impl BodyOps {
    /// Validates and compiles. Errors name the field relative to the `body` object.
    pub fn compile(config: &BodyOpsConfig) -> Result<BodyOps, ConfigError> {
        let mut ops: Vec<Op> = Vec::new();
        for (i, text) in config.strip.iter().enumerate() {
            let field = format!("strip[{i}]");
            let path = parse_field_path(text, &field)?;
            ops.push(Op {
                kind: Kind::Strip,
                path,
                field,
                leaf: Some(Action::Strip),
                rename_to: None,
            });
        }
        for (text, to) in config.rename.iter() {
            let field = format!("rename.{text}");
            let path = parse_field_path(text, &field)?;
            if to.is_empty() {
                return Err(ConfigError::new(
                    field,
                    "the new field name must not be empty",
                ));
            }
            if path.last_key() == Some(to.as_str()) {
                return Err(ConfigError::new(field, "renames the field to its own name"));
            }
            let target = path.with_last_key(to);
            let key = serialize(&serde_json::Value::String(to.clone()), &field)?;
            ops.push(Op {
                kind: Kind::Rename,
                path,
                field: field.clone(),
                leaf: Some(Action::Rename(key)),
                rename_to: Some(to.clone()),
            });
            ops.push(Op {
                kind: Kind::RenameTarget,
                path: target,
                field,
                leaf: None,
                rename_to: None,
            });
        }
        for (kind, map) in [(Kind::Add, &config.add), (Kind::Set, &config.set)] {
            for (text, value) in map.iter() {
                let field = format!("{}.{text}", kind.word());
                let path = parse_field_path(text, &field)?;
                let bytes = serialize(value, &field)?;
                let leaf = if kind == Kind::Add {
                    Action::Add(bytes)
                } else {
                    Action::Set(bytes)
                };
                ops.push(Op {
                    kind,
                    path,
                    field,
                    leaf: Some(leaf),
                    rename_to: None,
                });
            }
        }
        for (j, later) in ops.iter().enumerate() {
            for earlier in &ops[..j] {
                let both_strips = earlier.kind == Kind::Strip && later.kind == Kind::Strip;
                let same_rename = earlier.kind == Kind::Rename && later.field == earlier.field;
                if !both_strips && !same_rename && earlier.path.overlaps(&later.path) {
                    return Err(ConfigError::new(
                        later.field.clone(),
                        format!(
                            "{} \"{}\" overlaps with {} \"{}\" (give each field at most one operation)",
                            later.kind.word(),
                            later.path,
                            earlier.kind.word(),
                            earlier.path
                        ),
                    ));
                }
            }
        }
        let mut root = Node::default();
        for op in ops {
            if let Some(leaf) = op.leaf {
                insert(&mut root, &op.path.steps, leaf, op.rename_to.as_deref());
            }
        }
        finish(&mut root)?;
        Ok(BodyOps { root })
    }

    /// Rewrites a complete JSON document (see [`json_rewrite`]).
    pub fn rewrite(&self, body: &[u8]) -> BodyOutcome {
        json_rewrite::rewrite(&self.root, body)
    }
}

fn parse_field_path(text: &str, field: &str) -> Result<JsonPath, ConfigError> {
    let path = JsonPath::parse(text).map_err(|why| ConfigError::new(field, why))?;
    if path.last_key().is_none() {
        return Err(ConfigError::new(
            field,
            format!("JSON path {text:?} must end with a field name, not an array step"),
        ));
    }
    Ok(path)
}

fn serialize(value: &serde_json::Value, field: &str) -> Result<Vec<u8>, ConfigError> {
    serde_json::to_vec(value).map_err(|e| ConfigError::new(field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(json: &str) -> Result<BodyOps, ConfigError> {
        BodyOps::compile(&serde_json::from_str::<BodyOpsConfig>(json).unwrap())
    }

    #[test]
    fn overlapping_operations_are_refused() {
        let err = |json: &str| ops(json).unwrap_err();
        let e = err(r#"{"set":{"meta":1,"meta.version":2}}"#);
        assert_eq!(e.field, "set.meta.version");
        assert_eq!(
            e.reason,
            "set \"meta.version\" overlaps with set \"meta\" (give each field at most one operation)"
        );
        assert_eq!(err(r#"{"strip":["a"],"add":{"a.b":1}}"#).field, "add.a.b");
        assert_eq!(
            err(r#"{"rename":{"a":"b"},"set":{"b":1}}"#).reason,
            "set \"b\" overlaps with rename target \"b\" (give each field at most one operation)"
        );
        assert_eq!(err(r#"{"rename":{"a":"b","b":"c"}}"#).field, "rename.b");
        assert_eq!(
            err(r#"{"strip":["items[*].x"],"set":{"items[0].x":1}}"#).field,
            "set.items[0].x"
        );
        assert_eq!(
            err(r#"{"rename":{"a":"a"}}"#).reason,
            "renames the field to its own name"
        );
        assert!(err(r#"{"strip":["items[*]"]}"#)
            .reason
            .contains("must end with a field name"));
        assert!(ops(r#"{"strip":["a","a.b","items[*].x","items[0].x"]}"#).is_ok());
        assert!(ops(
            r#"{"strip":["items[*].x"],"set":{"items[0].y":1},"add":{"meta.a":1,"meta.b":2}}"#
        )
        .is_ok());
    }

    #[test]
    fn index_nodes_include_wildcard_operations() {
        let o = ops(r#"{"set":{"a[0].y":1,"a[*].x":2}}"#).unwrap();
        let a = match &o.root.members[0].action {
            Action::Descend(n) => n,
            other => panic!("{other:?}"),
        };
        let keys = |n: &Node| n.members.iter().map(|m| m.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(a.elem(0).unwrap()), ["y", "x"]);
        assert_eq!(keys(a.elem(1).unwrap()), ["x"]);
    }

    #[test]
    fn absent_members_are_created_with_intermediate_objects() {
        let o = ops(
            r#"{"add":{"meta.version":2,"meta.tag":"t","items[*].x":1},"set":{"client":"legacy"}}"#,
        )
        .unwrap();
        let creates: Vec<_> = o
            .root
            .members
            .iter()
            .map(|m| {
                m.create
                    .as_ref()
                    .map(|c| String::from_utf8(c.clone()).unwrap())
            })
            .collect();
        assert_eq!(
            creates,
            [
                Some(r#""meta":{"version":2,"tag":"t"}"#.to_string()),
                None,
                Some(r#""client":"legacy""#.to_string())
            ]
        );
    }
}
