//! JSON body operations (strip, rename, add, set) compiled into a path trie that the streaming
//! rewriter walks alongside the document.
//!
//! Two operations may not touch the same field or one inside the other (except two strips): that
//! makes the result independent of the order in which operations are written, so the single-pass
//! rewriter and a "parse, edit, serialize" reading of the config always agree.

use crate::body_flow::OnUnprocessable;
use crate::config::OrderedMap;
use crate::json_path::{JsonPath, Step};
use crate::json_rewrite::{self, BodyOutcome};
use filter_core::ConfigError;
use serde::Deserialize;

/// The `body` object of a request or response section, as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyOpsConfig {
    /// Fields to remove.
    #[serde(default)]
    pub strip: Vec<String>,
    /// Field path -> new name of the field in the same object.
    #[serde(default)]
    pub rename: OrderedMap<String>,
    /// Field path -> value, inserted only when the field is absent.
    #[serde(default)]
    pub add: OrderedMap<serde_json::Value>,
    /// Field path -> value, replacing the field or inserting it.
    #[serde(default)]
    pub set: OrderedMap<serde_json::Value>,
    /// Response bodies only: what happens to a body the operations cannot apply to (default
    /// `reject`: a 502; `pass`: forwarded untouched). See [`crate::body_flow`].
    #[serde(default)]
    pub on_unprocessable: Option<OnUnprocessable>,
}

impl BodyOpsConfig {
    /// True when there are no operations (`on_unprocessable` is not one).
    pub fn is_empty(&self) -> bool {
        self.strip.is_empty()
            && self.rename.is_empty()
            && self.add.is_empty()
            && self.set.is_empty()
    }
}

/// Most operations one object may carry (the rewriter tracks them in a 64-bit mask).
pub const MAX_OPS_PER_OBJECT: usize = 64;

/// Compiled body operations of one direction of one rule.
#[derive(Debug, Clone)]
pub struct BodyOps {
    pub(crate) root: Node,
}

/// Operations that apply at one JSON location (an object's members and/or an array's elements).
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub members: Vec<Member>,
    /// Applies to every element that has no entry in `elems`.
    pub any_elem: Option<Box<Node>>,
    /// Per-index nodes; each already includes what `any_elem` holds.
    pub elems: Vec<(usize, Node)>,
    /// `(new name, index of the renamed member)`: an existing member with the new name is
    /// dropped when the renamed member is present.
    pub rename_targets: Vec<(String, usize)>,
    /// Whether some member has bytes to insert when absent.
    pub creates: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub key: String,
    pub action: Action,
    /// `"key":value` to insert before the closing brace when the member is absent.
    pub create: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Strip,
    /// The new key, already serialized as a JSON string.
    Rename(Vec<u8>),
    /// The value (serialized) to insert when absent; present members are left alone.
    Add(Vec<u8>),
    /// The value (serialized) replacing the member's value, or inserted when absent.
    Set(Vec<u8>),
    /// Operations deeper down.
    Descend(Box<Node>),
}

impl Node {
    /// The node for array element `index`, if any operation reaches it.
    pub fn elem(&self, index: usize) -> Option<&Node> {
        self.elems
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, n)| n)
            .or(self.any_elem.as_deref())
    }
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

/// Adds one operation to the trie. A wildcard step reaches every per-index node too, and a new
/// per-index node starts as a copy of the wildcard node, so each location has exactly one node.
fn insert(node: &mut Node, steps: &[Step], leaf: Action, rename_to: Option<&str>) {
    let Some((step, rest)) = steps.split_first() else {
        return;
    };
    match step {
        Step::Key(key) => {
            let index = match node.members.iter().position(|m| &m.key == key) {
                Some(i) => i,
                None => {
                    node.members.push(Member {
                        key: key.clone(),
                        action: Action::Descend(Box::default()),
                        create: None,
                    });
                    node.members.len() - 1
                }
            };
            let Some(member) = node.members.get_mut(index) else {
                return;
            };
            if rest.is_empty() {
                if let Some(name) = rename_to {
                    node.rename_targets.push((name.to_string(), index));
                }
                // Overlap checks leave only strip-over-strip or strip-over-descend here.
                member.action = leaf;
            } else if let Action::Descend(child) = &mut member.action {
                insert(child, rest, leaf, rename_to);
            }
            // Anything below a stripped member is moot.
        }
        Step::Index(i) => {
            let at = match node.elems.iter().position(|(j, _)| j == i) {
                Some(at) => at,
                None => {
                    let start = node.any_elem.as_deref().cloned().unwrap_or_default();
                    node.elems.push((*i, start));
                    node.elems.len() - 1
                }
            };
            if let Some((_, child)) = node.elems.get_mut(at) {
                insert(child, rest, leaf, rename_to);
            }
        }
        Step::AnyIndex => {
            for (_, child) in &mut node.elems {
                insert(child, rest, leaf.clone(), rename_to);
            }
            insert(
                node.any_elem.get_or_insert_with(Box::default),
                rest,
                leaf,
                rename_to,
            );
        }
    }
}

/// Computes what to insert for absent members and checks the per-object operation limit.
fn finish(node: &mut Node) -> Result<(), ConfigError> {
    if node.members.len() > MAX_OPS_PER_OBJECT {
        return Err(ConfigError::new(
            "",
            format!("more than {MAX_OPS_PER_OBJECT} operations on the members of one object"),
        ));
    }
    for member in &mut node.members {
        let value = match &mut member.action {
            Action::Add(v) | Action::Set(v) => Some(v.clone()),
            Action::Descend(child) => {
                finish(child)?;
                creation(child)
            }
            Action::Strip | Action::Rename(_) => None,
        };
        member.create = match value {
            Some(v) => {
                let mut bytes = serialize(&serde_json::Value::String(member.key.clone()), "")?;
                bytes.push(b':');
                bytes.extend_from_slice(&v);
                Some(bytes)
            }
            None => None,
        };
    }
    node.creates = node.members.iter().any(|m| m.create.is_some());
    if let Some(any) = &mut node.any_elem {
        finish(any)?;
    }
    for (_, child) in &mut node.elems {
        finish(child)?;
    }
    Ok(())
}

/// The object created when the member holding `node` is absent: every add/set beneath it, with
/// intermediate objects. Array steps create nothing.
fn creation(node: &Node) -> Option<Vec<u8>> {
    if !node.creates {
        return None;
    }
    let mut out = vec![b'{'];
    for create in node.members.iter().filter_map(|m| m.create.as_ref()) {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(create);
    }
    out.push(b'}');
    Some(out)
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
