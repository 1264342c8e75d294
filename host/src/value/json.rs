//! JSON text <-> [`Value`], with the dialect easyrpc's Python peers speak.
//!
//! Owns parsing and printing only. Differences from strict JSON, all required on the wire
//! (spec quirk Q5): `NaN`, `Infinity` and `-Infinity` are accepted and printed, and integers of
//! any size keep every digit. Output is compact with raw UTF-8, like the Python server's.
//! Nesting is bounded so hostile input cannot exhaust the stack.

use super::{DictBuilder, Value, MAX_INT_DIGITS};
use std::borrow::Cow;
use std::fmt::Write;

/// Deepest nesting of lists/objects accepted; deeper input is an error, not a stack overflow.
pub const MAX_DEPTH: usize = 512;

/// A parse failure with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {message}")]
pub struct JsonError {
    pub offset: usize,
    pub message: String,
}

/// Parses one JSON document (surrounding whitespace allowed).
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut p = Parser { bytes: text.as_bytes(), text, pos: 0, depth: 0 };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.error("trailing characters after the value"));
    }
    Ok(v)
}

/// Prints a value as compact JSON text.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends the compact JSON text of `value` to `out`.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::None => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(i) => write_int(out, *i),
        Value::BigInt(digits) => out.push_str(digits),
        Value::Float(x) => write_float(out, *x),
        Value::Str(s) => write_str(out, s),
        Value::Bytes(bytes) => {
            // JSON has no bytes; a list of ints keeps the content.
            out.reserve(bytes.len() * 4 + 2);
            out.push('[');
            for (i, &b) in bytes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_byte(out, b);
            }
            out.push(']');
        }
        Value::List(items) => write_list(out, items),
        Value::Dict(entries) => write_dict(out, entries),
    }
}

/// Appends `items` as a JSON array: what [`write_value`] writes of a `Value::List` of them.
pub fn write_list(out: &mut String, items: &[Value]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, item);
    }
    out.push(']');
}

/// Appends `entries` as a JSON object: what [`write_value`] writes of a `Value::Dict` of them.
pub fn write_dict(out: &mut String, entries: &[(String, Value)]) {
    out.push('{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

/// Appends an integer's decimal digits; without `fmt` for the usual sizes (`fmt` shows in the
/// call path's profile, where results are often integers).
fn write_int(out: &mut String, i: i128) {
    let Ok(small) = u64::try_from(i.unsigned_abs()) else {
        let _ = write!(out, "{i}");
        return;
    };
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = small;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if i < 0 {
        out.push('-');
    }
    // ASCII digits only.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// Appends a byte's decimal digits (bytes print one by one, where `fmt` would cost most).
fn write_byte(out: &mut String, b: u8) {
    if b >= 100 {
        out.push(char::from(b'0' + b / 100));
    }
    if b >= 10 {
        out.push(char::from(b'0' + b / 10 % 10));
    }
    out.push(char::from(b'0' + b % 10));
}

fn write_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        // Debug prints the shortest text that round-trips and always marks a float
        // ("1.0", "1e100"), so Python reads it back as a float.
        let _ = write!(out, "{x:?}");
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(super::room_for_string(s.len()) + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        // Special bytes are ASCII, so `end` is always a char boundary.
        let end = plain_run_end(bytes, start);
        out.push_str(&s[start..end]);
        let Some(&b) = bytes.get(end) else { break };
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = end + 1;
    }
    out.push('"');
}

/// Index of the first byte at or after `from` that a JSON string cannot hold as it is: a
/// quote, a backslash or a control character. This scan is most of the cost of big string
/// payloads (each is scanned when parsed and when written), so it goes eight bytes at a time
/// (the usual SWAR tests for "some byte equals / is below") and, once a run is longer than
/// [`SHORT_RUN`], 64 bytes at a time in a loop the compiler turns into vector instructions:
/// a big string scans much faster than word by word, while keys and short values, which end
/// within a few words, never pay for a block.
fn plain_run_end(bytes: &[u8], from: usize) -> usize {
    let short_end = from.saturating_add(SHORT_RUN);
    let mut i = plain_words(bytes, from, short_end);
    if i == short_end {
        i = plain_blocks(bytes, i);
        i = plain_words(bytes, i, usize::MAX);
    }
    while bytes.get(i).is_some_and(|&b| !needs_escape(b)) {
        i += 1;
    }
    i
}

/// Bytes of a string scanned word by word before switching to blocks.
const SHORT_RUN: usize = 32;

fn needs_escape(b: u8) -> bool {
    (b == b'"') | (b == b'\\') | (b < 0x20)
}

/// Skips whole 8-byte words without a special byte, from `from` up to `until`; stops at the
/// word that holds one, where fewer than eight bytes are left, or at `until`.
#[inline(always)]
fn plain_words(bytes: &[u8], from: usize, until: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut i = from;
    while i < until {
        let Some(Ok(word)) = bytes.get(i..i + 8).map(<[u8; 8]>::try_from) else { break };
        let w = u64::from_le_bytes(word);
        let special = has_zero_byte(w ^ (ONES * u64::from(b'"')))
            | has_zero_byte(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if special != 0 {
            break;
        }
        i += 8;
    }
    i
}

/// Skips whole 64-byte blocks without a special byte. The fold has no early exit, so that
/// it compiles to vector compares (SSE2 on any x86-64).
#[inline(always)]
fn plain_blocks(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(Ok(block)) = bytes.get(i..i + 64).map(<&[u8; 64]>::try_from) {
        if block.iter().fold(0u8, |found, &b| found | u8::from(needs_escape(b))) != 0 {
            break;
        }
        i += 64;
    }
    i
}

/// Reads a document step by step, for callers that know the shape they expect: an object's
/// keys come borrowed from the text (no allocation unless a key holds escapes), and only the
/// values asked for become [`Value`]s. The wire reads its envelopes this way.
pub struct Cursor<'a> {
    parser: Parser<'a>,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut parser = Parser { bytes: text.as_bytes(), text, pos: 0, depth: 0 };
        parser.skip_ws();
        Self { parser }
    }

    /// Whether the next value is an object (nothing is consumed).
    pub fn at_object(&self) -> bool {
        self.parser.bytes.get(self.parser.pos) == Some(&b'{')
    }

    /// Reads the object that comes next, calling `entry` with each key; `entry` must read that
    /// key's value (with [`value`](Self::value), [`string`](Self::string) or another
    /// `object`). Stops at the first error `entry` returns.
    pub fn object<E: From<JsonError>>(
        &mut self,
        mut entry: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.at_object() {
            return Err(self.parser.error("expected an object").into());
        }
        self.parser.enter()?;
        if self.parser.bytes.get(self.parser.pos) == Some(&b'}') {
            self.parser.pos += 1;
            self.parser.depth -= 1;
            return Ok(());
        }
        loop {
            if self.parser.bytes.get(self.parser.pos) != Some(&b'"') {
                return Err(self.parser.error("expected a string key").into());
            }
            let key = self.parser.borrowed_string()?;
            self.parser.skip_ws();
            if self.parser.bytes.get(self.parser.pos) != Some(&b':') {
                return Err(self.parser.error("expected ':'").into());
            }
            self.parser.pos += 1;
            self.parser.skip_ws();
            entry(self, key)?;
            self.parser.skip_ws();
            match self.parser.bytes.get(self.parser.pos) {
                Some(b',') => {
                    self.parser.pos += 1;
                    self.parser.skip_ws();
                }
                Some(b'}') => {
                    self.parser.pos += 1;
                    self.parser.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.parser.error("expected ',' or '}'").into()),
            }
        }
    }

    /// The next value, whole.
    pub fn value(&mut self) -> Result<Value, JsonError> {
        self.parser.value()
    }

    /// The next value if it is a string (borrowed when it holds no escapes), else none with
    /// nothing consumed.
    pub fn string(&mut self) -> Result<Option<Cow<'a, str>>, JsonError> {
        if self.parser.bytes.get(self.parser.pos) != Some(&b'"') {
            return Ok(None);
        }
        self.parser.borrowed_string().map(Some)
    }

    /// Skips the next value unread, however deep, in time linear in its length and with no
    /// allocation. Only checks what it must to find the value's end.
    pub fn skip(&mut self) -> Result<(), JsonError> {
        let p = &mut self.parser;
        let mut depth = 0usize;
        loop {
            p.skip_ws();
            match p.bytes.get(p.pos) {
                None => return Err(p.error("unexpected end of input")),
                Some(b'[' | b'{') => {
                    depth += 1;
                    p.pos += 1;
                    continue;
                }
                Some(b']' | b'}') if depth > 0 => {
                    depth -= 1;
                    p.pos += 1;
                }
                Some(b',' | b':') if depth > 0 => {
                    p.pos += 1;
                    continue;
                }
                Some(b'"') => p.skip_string()?,
                Some(_) => {
                    let start = p.pos;
                    while p.bytes.get(p.pos).is_some_and(|b| !b" \t\r\n,:[]{}\"".contains(b)) {
                        p.pos += 1;
                    }
                    if p.pos == start {
                        return Err(p.error("unexpected character"));
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// Checks that nothing but whitespace follows.
    pub fn finish(mut self) -> Result<(), JsonError> {
        self.parser.skip_ws();
        if self.parser.pos != self.parser.bytes.len() {
            return Err(self.parser.error("trailing characters after the value"));
        }
        Ok(())
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, message: &str) -> JsonError {
        JsonError { offset: self.pos, message: message.to_owned() }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat_literal(&mut self, lit: &str, v: Value) -> Result<Value, JsonError> {
        if self.bytes[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            Ok(v)
        } else {
            Err(self.error("unexpected token"))
        }
    }

    fn value(&mut self) -> Result<Value, JsonError> {
        match self.bytes.get(self.pos) {
            None => Err(self.error("unexpected end of input")),
            Some(b'n') => self.eat_literal("null", Value::None),
            Some(b't') => self.eat_literal("true", Value::Bool(true)),
            Some(b'f') => self.eat_literal("false", Value::Bool(false)),
            Some(b'N') => self.eat_literal("NaN", Value::Float(f64::NAN)),
            Some(b'I') => self.eat_literal("Infinity", Value::Float(f64::INFINITY)),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'[') => self.list(),
            Some(b'{') => self.object(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    fn list(&mut self) -> Result<Value, JsonError> {
        self.enter()?;
        let mut items = Vec::new();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::List(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self) -> Result<Value, JsonError> {
        self.enter()?;
        let mut entries = DictBuilder::new();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Dict(entries.finish()));
        }
        loop {
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value()?;
            // Like Python's json: a repeated key keeps the last value.
            entries.insert(key, value);
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Value::Dict(entries.finish()));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
            if self.bytes[self.pos..].starts_with(b"Infinity") {
                self.pos += "Infinity".len();
                return Ok(Value::Float(f64::NEG_INFINITY));
            }
        }
        let digits_start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        if self.pos == digits_start {
            return Err(self.error("expected digits"));
        }
        let mut is_float = false;
        if self.bytes.get(self.pos) == Some(&b'.') {
            is_float = true;
            self.pos += 1;
            let frac_start = self.pos;
            while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.pos == frac_start {
                return Err(self.error("expected digits after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            is_float = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            let exp_start = self.pos;
            while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.pos == exp_start {
                return Err(self.error("expected exponent digits"));
            }
        }
        let text = &self.text[start..self.pos];
        if is_float {
            text.parse::<f64>().map(Value::Float).map_err(|_| self.error("invalid number"))
        } else {
            let digits = self.pos - digits_start;
            if digits > MAX_INT_DIGITS {
                return Err(JsonError { offset: start, message: too_many_digits(digits) });
            }
            Ok(int_from_digits(text))
        }
    }

    /// Moves past a string literal (at its opening quote) without decoding it.
    fn skip_string(&mut self) -> Result<(), JsonError> {
        self.pos += 1;
        loop {
            self.pos = plain_run_end(self.bytes, self.pos);
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => self.pos += 2,
                Some(_) => return Err(self.error("control character in string")),
            }
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        // No escapes (the usual case): one allocation of the right size.
        self.borrowed_string().map(Cow::into_owned)
    }

    /// A string literal (at its opening quote): borrowed from the text unless it holds escapes.
    fn borrowed_string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.pos + 1;
        let end = plain_run_end(self.bytes, start);
        if self.bytes.get(end) == Some(&b'"') {
            self.pos = end + 1;
            return Ok(Cow::Borrowed(&self.text[start..end]));
        }
        self.escaped_string(start, end).map(Cow::Owned)
    }

    /// The rest of a string literal whose plain run `start..end` (after the opening quote) was
    /// already scanned and ended at an escape, a control character or the end of input.
    fn escaped_string(&mut self, start: usize, end: usize) -> Result<String, JsonError> {
        let mut out = String::with_capacity(end - start + 16);
        out.push_str(&self.text[start..end]);
        self.pos = end;
        loop {
            let run_start = self.pos;
            self.pos = plain_run_end(self.bytes, self.pos);
            out.push_str(&self.text[run_start..self.pos]);
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.bytes.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.error("invalid escape")),
                    };
                    out.push(c);
                    self.pos += 1;
                }
                Some(_) => return Err(self.error("control character in string")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let hex = self.bytes.get(self.pos..self.pos + 4).ok_or_else(|| self.error("short \\u escape"))?;
        let hex = std::str::from_utf8(hex).map_err(|_| self.error("invalid \\u escape"))?;
        let v = u32::from_str_radix(hex, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) {
            if self.bytes[self.pos..].starts_with(b"\\u") {
                self.pos += 2;
                let second = self.hex4()?;
                if (0xDC00..0xE000).contains(&second) {
                    let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                    return char::from_u32(c).ok_or_else(|| self.error("invalid surrogate pair"));
                }
            }
            // A lone surrogate (Python can emit one) cannot live in a Rust string.
            return Ok('\u{FFFD}');
        }
        Ok(char::from_u32(first).unwrap_or('\u{FFFD}'))
    }
}

/// The error for an integer literal of `digits` digits, over [`MAX_INT_DIGITS`].
pub fn too_many_digits(digits: usize) -> String {
    format!("an integer of {digits} digits, over the {MAX_INT_DIGITS} that Python converts")
}

/// An integer literal as [`Value::Int`] when it fits i128, else as exact [`Value::BigInt`] digits.
pub fn int_from_digits(text: &str) -> Value {
    // Most numbers fit i64, whose parse is quicker.
    if text.len() <= 18 {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i128::from(i));
        }
    }
    match text.parse::<i128>() {
        Ok(i) => Value::Int(i),
        Err(_) => {
            let (sign, digits) = text.strip_prefix('-').map_or(("", text), |d| ("-", d));
            let digits = digits.trim_start_matches('0');
            Value::BigInt(format!("{sign}{digits}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_dialect() {
        let v = parse(r#"{"a": [NaN, Infinity, -Infinity], "b": 1180591620717411303424, "c": -5}"#).unwrap();
        let Value::List(xs) = v.get("a").unwrap() else { panic!() };
        assert!(matches!(xs[0], Value::Float(x) if x.is_nan()));
        assert_eq!(xs[1], Value::Float(f64::INFINITY));
        assert_eq!(xs[2], Value::Float(f64::NEG_INFINITY));
        assert_eq!(v.get("b"), Some(&Value::Int(1180591620717411303424)));
        assert_eq!(v.get("c"), Some(&Value::Int(-5)));
    }

    #[test]
    fn the_word_and_block_scan_stops_where_the_byte_scan_does() {
        let naive = |bytes: &[u8], from: usize| {
            (from..bytes.len())
                .find(|&i| bytes[i] == b'"' || bytes[i] == b'\\' || bytes[i] < 0x20)
                .unwrap_or(bytes.len())
        };
        // Every special byte and its neighbours (0x1f/0x20, 0x21-0x23, 0x5b-0x5d, high bytes)
        // at every offset of a run that crosses the word, short-run and block boundaries,
        // scanned from several starts.
        let fillers = [b'a', 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0x9f, 0xa0, 0xdc, 0xff];
        let specials = [b'"', b'\\', 0x00, 0x09, 0x0a, 0x1f];
        for filler in fillers {
            for special in specials {
                for at in 0..200 {
                    let mut bytes = vec![filler; 200];
                    bytes[at] = special;
                    for from in [0, 1, 7, 8, 13, 31, 32, 33, 95, 97] {
                        assert_eq!(
                            plain_run_end(&bytes, from),
                            naive(&bytes, from),
                            "{filler:#x} {special:#x} at {at} from {from}"
                        );
                    }
                }
            }
            for len in [21, 32, 33, 95, 96, 97, 200] {
                let plain = vec![filler; len];
                assert_eq!(plain_run_end(&plain, 0), len);
                assert_eq!(plain_run_end(&plain, 5), len);
            }
        }
        let text = "x".repeat(100) + "\"é☃" + &"y".repeat(50) + "\n";
        let v = Value::Str(text.clone());
        assert_eq!(parse(&to_string(&v)).unwrap(), v);
    }

    #[test]
    fn big_integers_keep_every_digit() {
        let big = "-2".to_owned() + &"0".repeat(60);
        let v = parse(&big).unwrap();
        assert_eq!(v, Value::BigInt(big.clone()));
        assert_eq!(to_string(&v), big);
        let max = u64::MAX.to_string();
        assert_eq!(to_string(&parse(&max).unwrap()), max);
    }

    #[test]
    fn strings_and_escapes_round_trip() {
        let v = parse(r#""h\u00e9llo \u2603 \ud83d\ude00 \n\t\"\\ /""#).unwrap();
        assert_eq!(v, Value::Str("héllo ☃ 😀 \n\t\"\\ /".into()));
        assert_eq!(to_string(&v), "\"héllo ☃ 😀 \\n\\t\\\"\\\\ /\"");
        assert_eq!(to_string(&Value::Str("\u{1}".into())), "\"\\u0001\"");
    }

    #[test]
    fn integers_print_as_fmt_prints_them() {
        let edges = [
            0,
            7,
            -1,
            10,
            -10,
            i128::from(i64::MIN),
            i128::from(i64::MAX),
            i128::from(u64::MAX),
            -i128::from(u64::MAX),
        ];
        for i in edges.into_iter().chain([i128::from(u64::MAX) + 1, i128::MAX, i128::MIN]) {
            assert_eq!(to_string(&Value::Int(i)), i.to_string());
            assert_eq!(parse(&i.to_string()).unwrap(), Value::Int(i));
        }
    }

    #[test]
    fn bytes_print_as_lists_of_ints() {
        let all: Vec<u8> = (0..=255).collect();
        let expected = format!("[{}]", all.iter().map(u8::to_string).collect::<Vec<_>>().join(","));
        assert_eq!(to_string(&Value::Bytes(all)), expected);
        assert_eq!(to_string(&Value::Bytes(vec![])), "[]");
    }

    #[test]
    fn floats_print_as_floats() {
        assert_eq!(to_string(&Value::Float(1.0)), "1.0");
        assert_eq!(to_string(&Value::Float(1e100)), "1e100");
        assert_eq!(to_string(&Value::Float(f64::NAN)), "NaN");
        assert_eq!(parse("1e100").unwrap(), Value::Float(1e100));
        assert_eq!(parse("2.5E-3").unwrap(), Value::Float(2.5e-3));
    }

    #[test]
    fn rejects_malformed_and_too_deep_input() {
        for bad in ["", "[1,", "{\"a\" 1}", "01x", "\"abc", "[1] 2", "{1: 2}", "-", "1.", "tru"] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn objects_keep_order_and_last_duplicate() {
        let v = parse(r#"{"z": 1, "a": 2, "z": 3}"#).unwrap();
        assert_eq!(v, Value::Dict(vec![("z".into(), Value::Int(3)), ("a".into(), Value::Int(2))]));
        assert_eq!(to_string(&v), r#"{"z":3,"a":2}"#);
        // Past the scanned keys, through the index: order and last values kept alike.
        let keys: Vec<String> = (0..40).map(|i| format!(r#""k{}": {i}"#, i % 30)).collect();
        let Value::Dict(entries) = parse(&format!("{{{}}}", keys.join(","))).unwrap() else { panic!() };
        assert_eq!(entries.len(), 30);
        assert_eq!(entries[0], ("k0".into(), Value::Int(30)));
        assert_eq!(entries[9], ("k9".into(), Value::Int(39)));
        assert_eq!(entries[29], ("k29".into(), Value::Int(29)));
    }

    #[test]
    fn integers_beyond_pythons_digit_limit_are_refused() {
        let at_limit = "7".repeat(MAX_INT_DIGITS);
        assert_eq!(parse(&at_limit).unwrap(), Value::BigInt(at_limit.clone()));
        let over = format!("-{at_limit}7");
        assert!(parse(&over).unwrap_err().message.contains("4301 digits"));
    }
}
