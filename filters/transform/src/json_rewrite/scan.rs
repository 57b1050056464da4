//! Validation only: subtrees no operation reaches are checked (RFC 8259) and skipped, strings
//! eight bytes at a time.

use super::{Scan, Scanner, MAX_DEPTH};

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

impl Scanner<'_> {
    pub(super) fn skip_value(&mut self, depth: usize) -> Scan<()> {
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
    pub(super) fn string(&mut self, reason: &'static str) -> Scan<bool> {
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
pub(super) fn decode_string(raw: &[u8], out: &mut Vec<u8>) {
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
