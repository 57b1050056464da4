//! Single-pass JSON rewriter: validates the document (RFC 8259) while copying untouched byte
//! ranges verbatim and applying the compiled body operations where the path trie says so.
//!
//! The output is produced lazily: `last` marks the first input byte not yet copied, edits
//! `flush_to` a position (copying input up to it), write their own bytes, then `skip_to` past what
//! they replace. Subtrees no operation reaches are only validated (`Scanner::skip_value`), which
//! is where almost all bytes of a typical document go; strings are scanned eight bytes at a time.
//!
//! The `Scanner` is split by what it does: `scan` validates (whole subtrees, strings, numbers,
//! literals), `write` rewrites (objects and arrays some operation reaches, and the output).

use crate::field_trie::Node;

mod scan;
mod write;

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
}
