//! Rewriting: the objects and arrays some operation reaches, and the lazily copied output.

use super::scan::decode_string;
use super::{Scan, Scanner, MAX_DEPTH};
use crate::field_trie::{Action, Node};

/// What to do with one object member, decided from its key.
enum Verdict<'n> {
    Keep,
    Drop,
    Rename(&'n [u8]),
    Set(&'n [u8]),
    Descend(&'n Node),
}

impl Scanner<'_> {
    #[inline]
    pub(super) fn flush_to(&mut self, to: usize) {
        if to > self.last {
            if self.out.capacity() == 0 {
                self.out.reserve(self.input.len() + 64);
            }
            self.out.extend_from_slice(&self.input[self.last..to]);
            self.last = to;
        }
    }

    #[inline]
    fn skip_to(&mut self, to: usize) {
        self.last = to;
        self.changed = true;
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.out.capacity() == 0 {
            self.out.reserve(self.input.len() + 64);
        }
        self.out.extend_from_slice(bytes);
        self.changed = true;
    }

    pub(super) fn value(&mut self, node: &Node, depth: usize) -> Scan<()> {
        match self.peek() {
            Some(b'{') => self.object(node, depth),
            Some(b'[') => self.array(node, depth),
            _ => self.skip_value(depth),
        }
    }

    fn array(&mut self, node: &Node, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut index = 0usize;
        loop {
            match node.elem(index) {
                Some(child) => self.value(child, depth + 1)?,
                None => self.skip_value(depth + 1)?,
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                    index += 1;
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `]` in array"),
            }
        }
    }

    fn object(&mut self, node: &Node, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.pos += 1;
        let present = if node.rename_targets.is_empty() {
            0
        } else {
            self.members_present(node, depth)?
        };
        // Members of `node` met so far (bit i = node.members[i]); decides what to insert at the end.
        let mut seen: u64 = 0;
        // Some member was written to the output / some member (written or dropped) came before.
        let mut emitted = false;
        let mut any_before = false;
        // The `,` in front of the current member, and where the last written member's value ends.
        let mut comma = 0usize;
        let mut emitted_end = 0usize;
        self.ws();
        if self.peek() != Some(b'}') {
            loop {
                let key_start = self.pos;
                let escaped = self.string("expected a string key")?;
                let key_end = self.pos;
                self.ws();
                self.expect(b':', "expected `:` after an object key")?;
                self.ws();
                let (verdict, index) = self.verdict(node, key_start, key_end, escaped, present);
                if let Some(i) = index {
                    seen |= 1u64 << i;
                }
                if !emitted && any_before {
                    // Dropped members left their separators behind; drop those too.
                    self.skip_to(key_start);
                }
                any_before = true;
                if let Verdict::Drop = verdict {
                    self.flush_to(if emitted { comma } else { key_start });
                    self.skip_value(depth + 1)?;
                    self.skip_to(self.pos);
                } else {
                    match verdict {
                        Verdict::Rename(new_key) => {
                            self.flush_to(key_start);
                            self.write(new_key);
                            self.skip_to(key_end);
                            self.skip_value(depth + 1)?;
                        }
                        Verdict::Set(value) => {
                            self.flush_to(self.pos);
                            self.write(value);
                            self.skip_value(depth + 1)?;
                            self.skip_to(self.pos);
                        }
                        Verdict::Descend(child) => self.value(child, depth + 1)?,
                        Verdict::Keep | Verdict::Drop => self.skip_value(depth + 1)?,
                    }
                    emitted = true;
                    emitted_end = self.pos;
                }
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        comma = self.pos;
                        self.pos += 1;
                        self.ws();
                    }
                    Some(b'}') => break,
                    _ => return self.fail("expected `,` or `}` in object"),
                }
            }
        }
        if node.creates {
            self.insert_absent(node, seen, emitted, emitted_end);
        }
        self.pos += 1;
        Ok(())
    }

    /// Inserts `"key":value` for every member of `node` that can be created and was not seen;
    /// `self.pos` is at the closing brace.
    fn insert_absent(&mut self, node: &Node, seen: u64, mut emitted: bool, emitted_end: usize) {
        let mut at_end_of_member = emitted;
        for (i, member) in node.members.iter().enumerate() {
            let Some(create) = &member.create else {
                continue;
            };
            if seen & (1u64 << i) != 0 {
                continue;
            }
            if emitted {
                if at_end_of_member {
                    // Right after the last written value, before the whitespace ahead of `}`
                    // (or at once, when dropped members already moved the output past it).
                    self.flush_to(emitted_end);
                    at_end_of_member = false;
                }
                self.write(b",");
            } else {
                self.flush_to(self.pos);
                emitted = true;
            }
            self.write(create);
        }
    }

    /// The verdict for the member whose key spans `input[start..end]` (quotes included), and the
    /// index of the `node` member it names.
    fn verdict<'n>(
        &mut self,
        node: &'n Node,
        start: usize,
        end: usize,
        escaped: bool,
        present: u64,
    ) -> (Verdict<'n>, Option<usize>) {
        let input = self.input;
        let raw = &input[start + 1..end - 1];
        let key: &[u8] = if escaped {
            decode_string(raw, &mut self.key);
            &self.key
        } else {
            raw
        };
        for (i, member) in node.members.iter().enumerate() {
            if member.key.as_bytes() == key {
                let verdict = match &member.action {
                    Action::Strip => Verdict::Drop,
                    Action::Rename(new_key) => Verdict::Rename(new_key),
                    Action::Add(_) => Verdict::Keep,
                    Action::Set(value) => Verdict::Set(value),
                    Action::Descend(child) => Verdict::Descend(child),
                };
                return (verdict, Some(i));
            }
        }
        for (target, source) in &node.rename_targets {
            if target.as_bytes() == key && present & (1u64 << source) != 0 {
                return (Verdict::Drop, None);
            }
        }
        (Verdict::Keep, None)
    }

    /// Looks ahead through the object at `self.pos` (just past `{`) and returns which members of
    /// `node` it contains, so a rename can drop an existing member of the same name even when that
    /// member comes first. The position is restored afterwards.
    fn members_present(&mut self, node: &Node, depth: usize) -> Scan<u64> {
        let start = self.pos;
        let mut present = 0u64;
        self.ws();
        if self.peek() != Some(b'}') {
            loop {
                let key_start = self.pos;
                let escaped = self.string("expected a string key")?;
                let input = self.input;
                let raw = &input[key_start + 1..self.pos - 1];
                let key: &[u8] = if escaped {
                    decode_string(raw, &mut self.key);
                    &self.key
                } else {
                    raw
                };
                if let Some(i) = node.members.iter().position(|m| m.key.as_bytes() == key) {
                    present |= 1u64 << i;
                }
                self.ws();
                self.expect(b':', "expected `:` after an object key")?;
                self.ws();
                self.skip_value(depth + 1)?;
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.ws();
                    }
                    Some(b'}') => break,
                    _ => return self.fail("expected `,` or `}` in object"),
                }
            }
        }
        self.pos = start;
        Ok(present)
    }
}
