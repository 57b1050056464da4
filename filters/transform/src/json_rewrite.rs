//! Single-pass JSON rewriter: validates the document (RFC 8259) while copying untouched byte
//! ranges verbatim and applying the compiled body operations where the path trie says so.
//!
//! The output is produced lazily: `last` marks the first input byte not yet copied, edits
//! `flush_to` a position (copying input up to it), write their own bytes, then `skip_to` past what
//! they replace. Subtrees no operation reaches are only validated (`Scanner::skip_value`), which
//! is where almost all bytes of a typical document go; strings are scanned eight bytes at a time.

use crate::field_trie::{Action, Node};

/// Deepest nesting of arrays and objects accepted; deeper documents pass through untouched.
pub const MAX_DEPTH: usize = 128;

/// What became of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Valid JSON that no operation changed: leave the body alone.
    Unchanged,
    /// The rewritten document.
    Rewritten(Vec<u8>),
    /// Not valid JSON (or nested too deeply): leave the body alone.
    Invalid(InvalidJson),
}

/// Why a document was refused, and the byte offset where that was noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidJson {
    pub offset: usize,
    pub reason: &'static str,
}

/// The error travels as a zero-sized marker (so results stay in registers); the details are
/// recorded in [`Scanner::error`].
#[derive(Debug)]
struct Fail;

type Scan<T> = Result<T, Fail>;

/// Rewrites `input` with the operations of `root`.
pub(crate) fn rewrite(root: &Node, input: &[u8]) -> BodyOutcome {
    let mut s = Scanner::new(input);
    match s.document(root) {
        Err(Fail) => BodyOutcome::Invalid(s.error),
        Ok(()) if !s.changed => BodyOutcome::Unchanged,
        Ok(()) => {
            s.flush_to(input.len());
            BodyOutcome::Rewritten(s.out)
        }
    }
}

/// Validates a document without rewriting it.
pub fn validate(input: &[u8]) -> Result<(), InvalidJson> {
    let mut s = Scanner::new(input);
    let scan = |s: &mut Scanner<'_>| {
        s.ws();
        s.skip_value(1)?;
        s.ws();
        s.end()
    };
    scan(&mut s).map_err(|Fail| s.error)
}

struct Scanner<'a> {
    input: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    /// `input[last..]` has not been copied to `out` yet.
    last: usize,
    changed: bool,
    /// Scratch buffer for object keys that contain escapes.
    key: Vec<u8>,
    error: InvalidJson,
}

/// What to do with one object member, decided from its key.
enum Verdict<'n> {
    Keep,
    Drop,
    Rename(&'n [u8]),
    Set(&'n [u8]),
    Descend(&'n Node),
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit of each byte) the bytes of a little-endian word that are `"`, `\\`, control
/// characters or non-ASCII. Bytes above the first flagged one may be flagged wrongly (borrows),
/// never bytes below it, so the lowest flag is exact.
#[inline(always)]
fn attention_mask(x: u64) -> u64 {
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    zero_bytes(x ^ (ONES * u64::from(b'"')))
        | zero_bytes(x ^ (ONES * u64::from(b'\\')))
        | below_space
        | (x & HIGHS)
}

impl<'a> Scanner<'a> {
    fn new(input: &'a [u8]) -> Self {
        Scanner {
            input,
            pos: 0,
            out: Vec::new(),
            last: 0,
            changed: false,
            key: Vec::new(),
            error: InvalidJson {
                offset: 0,
                reason: "",
            },
        }
    }

    #[cold]
    #[inline(never)]
    fn fail<T>(&mut self, reason: &'static str) -> Scan<T> {
        self.error = InvalidJson {
            offset: self.pos,
            reason,
        };
        Err(Fail)
    }

    fn document(&mut self, root: &Node) -> Scan<()> {
        self.ws();
        self.value(root, 1)?;
        self.ws();
        self.end()
    }

    fn end(&mut self) -> Scan<()> {
        if self.pos == self.input.len() {
            Ok(())
        } else {
            self.fail("trailing characters after the document")
        }
    }

    #[inline]
    fn flush_to(&mut self, to: usize) {
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

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, reason: &'static str) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail(reason)
        }
    }

    // ----- rewriting (inside subtrees some operation reaches) -----

    fn value(&mut self, node: &Node, depth: usize) -> Scan<()> {
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

    // ----- validation only -----

    fn skip_value(&mut self, depth: usize) -> Scan<()> {
        match self.peek() {
            Some(b'"') => self.string("expected a value").map(|_| ()),
            Some(b'{') => self.skip_object(depth),
            Some(b'[') => self.skip_array(depth),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.fail("expected a value"),
            None => self.fail("unexpected end of document"),
        }
    }

    fn skip_object(&mut self, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.string("expected a string key")?;
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
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `}` in object"),
            }
        }
    }

    fn skip_array(&mut self, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_value(depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `]` in array"),
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Scan<()> {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.fail("invalid literal")
        }
    }

    fn number(&mut self) -> Scan<()> {
        let b = self.input;
        let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while digit(i) {
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return self.fail("invalid number");
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digit(i) {
                self.pos = i;
                return self.fail("invalid number: digits must follow `.`");
            }
            while digit(i) {
                i += 1;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digit(i) {
                self.pos = i;
                return self.fail("invalid number: digits must follow the exponent");
            }
            while digit(i) {
                i += 1;
            }
        }
        self.pos = i;
        Ok(())
    }

    /// Scans the string starting at `self.pos` (which must be `"`, else `reason`); returns whether
    /// it contains escapes. Validates escapes, control characters and UTF-8.
    #[inline]
    fn string(&mut self, reason: &'static str) -> Scan<bool> {
        if self.peek() != Some(b'"') {
            return self.fail(reason);
        }
        let b = self.input;
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            while let Some(chunk) = b.get(i..i + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let found = attention_mask(u64::from_le_bytes(word));
                if found != 0 {
                    // The lowest flagged byte is always a true hit (see `attention_mask`).
                    i += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            let Some(&c) = b.get(i) else {
                self.pos = i;
                return self.fail("unterminated string");
            };
            match c {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match escape_len(b, i) {
                        Some(n) => i += n,
                        None => {
                            self.pos = i;
                            return self.fail("invalid escape sequence");
                        }
                    }
                }
                0..=0x1f => {
                    self.pos = i;
                    return self.fail("control character in string");
                }
                0x80..=0xff => match utf8_len(b, i) {
                    Some(n) => i += n,
                    None => {
                        self.pos = i;
                        return self.fail("invalid UTF-8");
                    }
                },
                _ => i += 1,
            }
        }
    }
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    let mut v = 0u32;
    for &d in digits {
        v = v * 16 + char::from(d).to_digit(16)?;
    }
    Some(v)
}

/// Length of the escape sequence at `b[i]` (a backslash), or None when invalid. A `\u` escape
/// must not leave a surrogate unpaired.
fn escape_len(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' => match hex4(b, i + 2)? {
            0xD800..=0xDBFF => {
                if b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u') {
                    match hex4(b, i + 8)? {
                        0xDC00..=0xDFFF => Some(12),
                        _ => None,
                    }
                } else {
                    None
                }
            }
            0xDC00..=0xDFFF => None,
            _ => Some(6),
        },
        _ => None,
    }
}

/// Length of the UTF-8 sequence starting with the non-ASCII byte `b[i]`, or None when invalid
/// (overlong forms, surrogates and code points above U+10FFFF included).
fn utf8_len(b: &[u8], i: usize) -> Option<usize> {
    let cont = |j: usize, lo: u8, hi: u8| b.get(i + j).is_some_and(|&c| (lo..=hi).contains(&c));
    let (len, lo, hi) = match b[i] {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return None,
    };
    (cont(1, lo, hi) && (2..len).all(|j| cont(j, 0x80, 0xBF))).then_some(len)
}

/// Decodes the contents of an already validated JSON string (no quotes) into `out` as UTF-8.
fn decode_string(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let Some(&kind) = raw.get(i + 1) else { return };
        let simple = match kind {
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            other => Some(other),
        };
        if let Some(byte) = simple {
            out.push(byte);
            i += 2;
            continue;
        }
        let Some(hi) = hex4(raw, i + 2) else { return };
        let (code, len) = if (0xD800..=0xDBFF).contains(&hi) {
            let lo = hex4(raw, i + 8).unwrap_or(0xDC00);
            (
                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF),
                12,
            )
        } else {
            (hi, 6)
        };
        let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        i += len;
    }
}
