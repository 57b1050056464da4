//! The field trie: the compiled body operations of one direction, one node per JSON location
//! they reach, built by [`crate::body_ops`] from the configuration and walked by
//! [`crate::json_rewrite`] alongside the document.

use crate::json_path::Step;
use filter_core::ConfigError;

/// Most operations one object may carry (the rewriter tracks them in a 64-bit mask).
pub const MAX_OPS_PER_OBJECT: usize = 64;

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

/// Adds one operation to the trie. A wildcard step reaches every per-index node too, and a new
/// per-index node starts as a copy of the wildcard node, so each location has exactly one node.
pub(crate) fn insert(node: &mut Node, steps: &[Step], leaf: Action, rename_to: Option<&str>) {
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
pub(crate) fn finish(node: &mut Node) -> Result<(), ConfigError> {
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
                let mut bytes = key_bytes(&member.key)?;
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

/// `key` as a JSON string.
fn key_bytes(key: &str) -> Result<Vec<u8>, ConfigError> {
    serde_json::to_vec(key).map_err(|e| ConfigError::new("", e.to_string()))
}
