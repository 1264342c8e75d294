//! Python pickle <-> [`Value`], for easyrpc's `pickle` serialization.
//!
//! Owns the binary codec only. Decoding accepts what Python 3.11 emits for plain data at
//! protocols 0-5 (docs/protocol.md, section 6): memo references resolve to the same object even
//! when it is filled after being memoized (objects live in an arena until the end), tuples and
//! sets arrive as lists, non-string dict keys become strings as JSON would make them, and
//! pickled class instances are decoded as none and reported, so the session can answer with a
//! clear error instead of dropping the frame. Encoding writes protocol 4, which every Python 3
//! `pickle.loads` accepts.
//!
//! Input is untrusted, so decoding is linear in the frame: nothing panics, nesting is bounded,
//! integers stop at Python's digit limit, and because memo references (`DUP`, `GET`) let a few
//! bytes name a large object again and again, materializing the result has a budget of
//! [`MATERIALIZE_FACTOR`] bytes per byte of the frame.

use crate::value::{json, DictBuilder, Value, MAX_INT_DIGITS};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Deepest nesting materialized; deeper (or self-referencing) data is an error.
pub const MAX_DEPTH: usize = 512;

/// Bytes of decoded values a pickle may materialize per byte of its own. Plain data needs at
/// most 32 (a list of `None`s: one opcode byte each, one 32-byte value each); more means memo
/// references repeat objects, which a hostile peer uses to grow a tiny frame into gigabytes.
pub const MATERIALIZE_FACTOR: usize = 32;
/// What any pickle may materialize whatever its size, so that small frames sharing a few
/// objects (`[s] * 100` of a short string) still decode, while a few bytes cannot make more
/// than a couple of thousand values.
pub const MATERIALIZE_FLOOR: usize = 64 << 10;

/// Longest LONG1/LONG4 payload: enough for [`MAX_INT_DIGITS`] decimal digits and a sign.
const MAX_LONG_BYTES: usize = MAX_INT_DIGITS * 10 / 24 + 2;
/// Longest `module.name` kept to report a pickled object; the rest is cut.
const MAX_OBJECT_NAME: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pickle at byte {offset}: {message}")]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
    /// The request id of an envelope that decoded but could not be materialized (too deep,
    /// too large), so that its caller can be answered.
    pub request_id: Option<String>,
}

/// A decoded pickle: the value, and a description of the first Python object in it that is not
/// plain data (it was decoded as none).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub value: Value,
    pub unsupported: Option<String>,
}

#[derive(Debug, Clone)]
enum Node {
    None,
    Bool(bool),
    Int(i128),
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// list, tuple, set and frozenset alike.
    Seq(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    /// A class reference or instance: not plain data.
    Object(String),
    /// A value the decoder does not take (an integer past Python's digit limit): materializing
    /// it fails with this reason, after the whole frame is read, so the request is answered.
    Refused(String),
}

#[derive(Clone, Copy)]
enum Slot {
    Node(usize),
    Mark,
}

struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    arena: Vec<Node>,
    stack: Vec<Slot>,
    memo: HashMap<usize, usize>,
}

/// Decodes one pickle.
pub fn decode(bytes: &[u8]) -> Result<Decoded, PickleError> {
    let mut d = Decoder { bytes, pos: 0, arena: Vec::new(), stack: Vec::new(), memo: HashMap::new() };
    let root = d.run()?;
    let budget = bytes.len().saturating_mul(MATERIALIZE_FACTOR).saturating_add(MATERIALIZE_FLOOR);
    let mut m = Materializer { arena: &d.arena, budget, left: budget, unsupported: None };
    match m.value(root, 0) {
        Ok(value) => Ok(Decoded { value, unsupported: m.unsupported }),
        Err(message) => Err(PickleError { offset: bytes.len(), message, request_id: request_id_of(&d.arena, root) }),
    }
}

/// The `ws_action.request_id` string of a decoded envelope, read from the arena without
/// materializing anything: a frame whose value cannot be materialized still gets its answer.
fn request_id_of(arena: &[Node], root: usize) -> Option<String> {
    let entry = |dict: usize, key: &str| match arena.get(dict) {
        Some(Node::Dict(entries)) => entries
            .iter()
            .rev()
            .find(|&&(k, _)| matches!(arena.get(k), Some(Node::Str(s)) if s == key))
            .map(|&(_, v)| v),
        _ => None,
    };
    match arena.get(entry(entry(root, "ws_action")?, "request_id")?) {
        Some(Node::Str(id)) => Some(id.clone()),
        _ => None,
    }
}

/// Turns the arena's nodes into one [`Value`] tree, within a budget of bytes.
struct Materializer<'a> {
    arena: &'a [Node],
    budget: usize,
    left: usize,
    unsupported: Option<String>,
}

impl Materializer<'_> {
    /// Counts `bytes` of values against the budget.
    fn charge(&mut self, bytes: usize) -> Result<(), String> {
        self.left = self.left.checked_sub(bytes).ok_or_else(|| {
            format!(
                "the pickle's shared references expand to more than {} bytes ({MATERIALIZE_FACTOR} per byte of the frame); \
                 send the data without repeated references",
                self.budget
            )
        })?;
        Ok(())
    }

    fn value(&mut self, index: usize, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH} levels (or a self-referencing object)"));
        }
        let arena = self.arena;
        let node = arena.get(index).ok_or("dangling reference")?;
        let heap = match node {
            Node::BigInt(s) | Node::Str(s) => s.len(),
            Node::Bytes(b) => b.len(),
            Node::Dict(entries) => entries.len() * std::mem::size_of::<String>(),
            _ => 0,
        };
        self.charge(std::mem::size_of::<Value>() + heap)?;
        Ok(match node {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::BigInt(s) => Value::BigInt(s.clone()),
            Node::Float(x) => Value::Float(*x),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Bytes(b) => Value::Bytes(b.clone()),
            Node::Seq(items) => Value::List(items.iter().map(|&i| self.value(i, depth + 1)).collect::<Result<_, _>>()?),
            Node::Dict(entries) => {
                let mut out = DictBuilder::new();
                for &(k, v) in entries {
                    let key = match self.value(k, depth + 1)? {
                        Value::Str(s) => s,
                        // What Python's json.dumps does with such keys.
                        Value::None => "null".to_owned(),
                        Value::Bool(b) => b.to_string(),
                        other @ (Value::Int(_) | Value::BigInt(_) | Value::Float(_)) => json::to_string(&other),
                        other => return Err(format!("a dict key of type {} cannot be represented", other.kind())),
                    };
                    let value = self.value(v, depth + 1)?;
                    out.insert(key, value);
                }
                Value::Dict(out.finish())
            }
            Node::Object(desc) => {
                self.unsupported.get_or_insert_with(|| desc.clone());
                Value::None
            }
            Node::Refused(reason) => return Err(reason.clone()),
        })
    }
}

impl<'a> Decoder<'a> {
    fn err(&self, message: impl Into<String>) -> PickleError {
        PickleError { offset: self.pos, message: message.into(), request_id: None }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| self.err("truncated"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, PickleError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u64(&mut self) -> Result<usize, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a)).map_err(|_| self.err("length too large"))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.bytes[self.pos..];
        let nl = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("unterminated line"))?;
        let line = std::str::from_utf8(&rest[..nl]).map_err(|_| self.err("non-UTF-8 text"))?;
        self.pos += nl + 1;
        Ok(line)
    }

    fn push(&mut self, node: Node) {
        self.arena.push(node);
        self.stack.push(Slot::Node(self.arena.len() - 1));
    }

    fn pop(&mut self) -> Result<usize, PickleError> {
        match self.stack.pop() {
            Some(Slot::Node(i)) => Ok(i),
            Some(Slot::Mark) => Err(self.err("unexpected mark")),
            None => Err(self.err("stack underflow")),
        }
    }

    fn top(&self) -> Result<usize, PickleError> {
        match self.stack.last() {
            Some(Slot::Node(i)) => Ok(*i),
            _ => Err(self.err("stack underflow")),
        }
    }

    /// Pops everything above the topmost mark (and the mark).
    fn pop_mark(&mut self) -> Result<Vec<usize>, PickleError> {
        let mark = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(|| self.err("missing mark"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items.into_iter().filter_map(|s| if let Slot::Node(i) = s { Some(i) } else { None }).collect())
    }

    fn str_node(&self, bytes: &[u8]) -> Result<Node, PickleError> {
        std::str::from_utf8(bytes).map(|s| Node::Str(s.to_owned())).map_err(|_| self.err("invalid UTF-8 in str"))
    }

    fn append_items(&mut self, target: usize, items: Vec<usize>) -> Result<(), PickleError> {
        match self.arena.get_mut(target) {
            Some(Node::Seq(seq)) => {
                seq.extend(items);
                Ok(())
            }
            _ => Err(self.err("append to a non-list")),
        }
    }

    fn set_items(&mut self, target: usize, items: Vec<usize>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of dict items"));
        }
        match self.arena.get_mut(target) {
            Some(Node::Dict(entries)) => {
                entries.extend(items.chunks(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => Err(self.err("setitem on a non-dict")),
        }
    }

    /// The `module.name` of a class reference, for the unsupported-object report.
    fn object_name(&self, class: usize) -> String {
        match self.arena.get(class) {
            Some(Node::Object(d)) => d.clone(),
            _ => "object".to_owned(),
        }
    }

    fn memo_put(&mut self, key: usize) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: usize) -> Result<(), PickleError> {
        let i = *self.memo.get(&key).ok_or_else(|| self.err(format!("memo key {key} missing")))?;
        self.stack.push(Slot::Node(i));
        Ok(())
    }

    fn run(&mut self) -> Result<usize, PickleError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.u64()?; // FRAME length: frames are only a read-ahead hint
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop().ok_or_else(|| self.err("stack underflow"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(Slot::Node(top));
                }
                b'N' => self.push(Node::None),
                0x88 => self.push(Node::Bool(true)),
                0x89 => self.push(Node::Bool(false)),
                b'J' => {
                    let b = self.take(4)?;
                    self.push(Node::Int(i128::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))));
                }
                b'K' => {
                    let b = self.u8()?;
                    self.push(Node::Int(i128::from(b)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Node::Int(v as i128));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { usize::from(self.u8()?) } else { self.u32()? };
                    let bytes = self.take(n)?;
                    let node = if n > MAX_LONG_BYTES {
                        Node::Refused(format!(
                            "an integer of {n} bytes, over the {MAX_INT_DIGITS} digits that Python converts"
                        ))
                    } else {
                        match long_from_le(bytes) {
                            Node::BigInt(digits) if digits.trim_start_matches('-').len() > MAX_INT_DIGITS => {
                                Node::Refused(json::too_many_digits(digits.trim_start_matches('-').len()))
                            }
                            node => node,
                        }
                    };
                    self.push(node);
                }
                b'I' => {
                    let line = self.line()?;
                    let node = match line {
                        "00" => Node::Bool(false),
                        "01" => Node::Bool(true),
                        _ => Node::Int(line.parse().map_err(|_| self.err("bad INT"))?),
                    };
                    self.push(node);
                }
                b'L' => {
                    let line = self.line()?.trim_end_matches('L');
                    let digits = line.strip_prefix('-').unwrap_or(line);
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(self.err("bad LONG"));
                    }
                    let node = if digits.len() > MAX_INT_DIGITS {
                        Node::Refused(json::too_many_digits(digits.len()))
                    } else {
                        match json::int_from_digits(line) {
                            Value::Int(i) => Node::Int(i),
                            Value::BigInt(s) => Node::BigInt(s),
                            _ => return Err(self.err("bad LONG")),
                        }
                    };
                    self.push(node);
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Node::Float(f64::from_be_bytes(a)));
                }
                b'F' => {
                    let x = self.line()?.parse::<f64>().map_err(|_| self.err("bad FLOAT"))?;
                    self.push(Node::Float(x));
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?;
                    let node = self.str_node(bytes)?;
                    self.push(node);
                }
                b'X' => {
                    let n = self.u32()?;
                    let bytes = self.take(n)?;
                    let node = self.str_node(bytes)?;
                    self.push(node);
                }
                0x8d => {
                    let n = self.u64()?;
                    let bytes = self.take(n)?;
                    let node = self.str_node(bytes)?;
                    self.push(node);
                }
                b'V' => {
                    let line = self.line()?.to_owned();
                    self.push(Node::Str(line));
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?.to_vec();
                    self.push(Node::Bytes(b));
                }
                b'B' => {
                    let n = self.u32()?;
                    let b = self.take(n)?.to_vec();
                    self.push(Node::Bytes(b));
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    let b = self.take(n)?.to_vec();
                    self.push(Node::Bytes(b));
                }
                b'U' => {
                    // SHORT_BINSTRING (protocol 0-2 byte strings, decoded as latin-1 like Python 3)
                    let n = usize::from(self.u8()?);
                    let s = self.take(n)?.iter().map(|&b| char::from(b)).collect();
                    self.push(Node::Str(s));
                }
                b'T' => {
                    let n = self.u32()?;
                    let s = self.take(n)?.iter().map(|&b| char::from(b)).collect();
                    self.push(Node::Str(s));
                }
                b']' | b')' | 0x8f => self.push(Node::Seq(Vec::new())),
                b'}' => self.push(Node::Dict(Vec::new())),
                b'l' | b't' | 0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::Seq(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Dict(Vec::new()));
                    let target = self.top()?;
                    self.set_items(target, items)?;
                }
                0x85 => {
                    let a = self.pop()?;
                    self.push(Node::Seq(vec![a]));
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.push(Node::Seq(vec![a, b]));
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.push(Node::Seq(vec![a, b, c]));
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?;
                    self.append_items(target, vec![item])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.append_items(target, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, items)?;
                }
                0x94 => {
                    let key = self.memo.len();
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = usize::from(self.u8()?);
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.u32()?;
                    self.memo_put(key)?;
                }
                b'p' => {
                    let key = self.line()?.parse().map_err(|_| self.err("bad PUT"))?;
                    self.memo_put(key)?;
                }
                b'h' => {
                    let key = usize::from(self.u8()?);
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = self.u32()?;
                    self.memo_get(key)?;
                }
                b'g' => {
                    let key = self.line()?.parse().map_err(|_| self.err("bad GET"))?;
                    self.memo_get(key)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Node::Object(object_name(module, name)));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let text = |i: usize| match self.arena.get(i) {
                        Some(Node::Str(s)) => s.as_str(),
                        _ => "?",
                    };
                    let desc = object_name(text(module), text(name));
                    self.push(Node::Object(desc));
                }
                // REDUCE / NEWOBJ / BUILD: an instance of the class below its arguments.
                b'R' | 0x81 | b'b' => {
                    self.pop()?;
                    let class = self.pop()?;
                    self.push(Node::Object(self.object_name(class)));
                }
                // NEWOBJ_EX: class, args, kwargs.
                0x92 => {
                    self.pop()?;
                    self.pop()?;
                    let class = self.pop()?;
                    self.push(Node::Object(self.object_name(class)));
                }
                other => return Err(self.err(format!("unsupported opcode 0x{other:02x}"))),
            }
        }
    }
}

/// `module.name`, cut to [`MAX_OBJECT_NAME`] bytes: a report, not data, so memo references
/// to long strings cannot make each copy of it long.
fn object_name(module: &str, name: &str) -> String {
    let mut desc = String::with_capacity(MAX_OBJECT_NAME.min(module.len() + name.len() + 1));
    for part in [module, ".", name] {
        for c in part.chars() {
            if desc.len() + c.len_utf8() > MAX_OBJECT_NAME {
                return desc;
            }
            desc.push(c);
        }
    }
    desc
}

/// LONG1/LONG4 payload (two's complement, little-endian) to an int node: `Int` whenever the
/// value fits, however many redundant sign bytes the payload has.
fn long_from_le(bytes: &[u8]) -> Node {
    let trimmed = trim_twos(bytes.to_vec());
    let bytes = trimmed.as_slice();
    if bytes.is_empty() {
        return Node::Int(0);
    }
    if bytes.len() <= 16 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 16] } else { [0u8; 16] };
        buf[..bytes.len()].copy_from_slice(bytes);
        return Node::Int(i128::from_le_bytes(buf));
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut magnitude = bytes.to_vec();
    if negative {
        // two's complement negate
        let mut carry = 1u16;
        for b in magnitude.iter_mut() {
            let v = u16::from(!*b) + carry;
            *b = v as u8;
            carry = v >> 8;
        }
    }
    let digits = le_bytes_to_decimal(&magnitude);
    Node::BigInt(if negative { format!("-{digits}") } else { digits })
}

/// Nine decimal digits: the base both conversions below work in, so that each step of their
/// quadratic loops handles a 32-bit limb against nine digits at once.
const BILLION: u64 = 1_000_000_000;

/// Unsigned little-endian magnitude to decimal digits.
fn le_bytes_to_decimal(le: &[u8]) -> String {
    let mut limbs: Vec<u32> = le
        .chunks(4)
        .map(|c| {
            let mut word = [0u8; 4];
            word[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(word)
        })
        .collect();
    // Groups of nine digits, least significant first.
    let mut groups: Vec<u32> = Vec::with_capacity(le.len() * 5 / 18 + 1);
    loop {
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
        if limbs.is_empty() {
            break;
        }
        let mut rem = 0u64;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / BILLION) as u32;
            rem = cur % BILLION;
        }
        groups.push(rem as u32);
    }
    let mut out = String::with_capacity(groups.len() * 9);
    let mut groups = groups.iter().rev();
    let _ = write!(out, "{}", groups.next().copied().unwrap_or(0));
    for group in groups {
        let _ = write!(out, "{group:09}");
    }
    out
}

/// Decimal digits (optional `-`) to minimal two's complement little-endian bytes.
fn decimal_to_le_twos(text: &str) -> Vec<u8> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let digits: Vec<u8> = digits.bytes().filter(u8::is_ascii_digit).map(|d| d - b'0').collect();
    // Little-endian 32-bit limbs of the magnitude, fed nine digits at a time (the first group
    // takes what is left over).
    let mut limbs: Vec<u32> = Vec::with_capacity(digits.len() / 9 + 1);
    let first = match digits.len() % 9 {
        0 => 9,
        n => n,
    };
    let mut at = 0;
    while at < digits.len() {
        let group = &digits[at..(at + if at == 0 { first } else { 9 }).min(digits.len())];
        at += group.len();
        let scale = 10u64.pow(group.len() as u32);
        let mut carry = group.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d));
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * scale + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    let mut le: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
    le.push(0);
    if negative {
        let mut carry = 1u16;
        for b in le.iter_mut() {
            let v = u16::from(!*b) + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        if le.last().is_some_and(|b| b & 0x80 == 0) {
            le.push(0xff);
        }
    } else if le.last().is_some_and(|b| b & 0x80 != 0) {
        le.push(0);
    }
    trim_twos(le)
}

fn trim_twos(mut le: Vec<u8>) -> Vec<u8> {
    while le.len() > 1 {
        let last = le[le.len() - 1];
        let prev_sign = le[le.len() - 2] & 0x80;
        if (last == 0 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
            le.pop();
        } else {
            break;
        }
    }
    le
}

/// Encodes a value as a protocol-4 pickle.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0x80, 4]);
    write_value(&mut out, value);
    out.push(b'.');
    out
}

/// Appends the pickle opcodes of `value` (no PROTO/STOP) to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::None => out.push(b'N'),
        Value::Bool(true) => out.push(0x88),
        Value::Bool(false) => out.push(0x89),
        Value::Int(i) => write_int(out, *i),
        Value::BigInt(digits) => write_long(out, &decimal_to_le_twos(digits)),
        Value::Float(x) => {
            out.push(b'G');
            out.extend_from_slice(&x.to_be_bytes());
        }
        Value::Str(s) => write_str(out, s),
        Value::Bytes(b) => {
            if b.len() < 256 {
                out.push(b'C');
                out.push(b.len() as u8);
            } else {
                out.push(b'B');
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            }
            out.reserve(crate::value::room_for_string(b.len()));
            out.extend_from_slice(b);
        }
        Value::List(items) => write_list(out, items),
        Value::Dict(entries) => write_dict(out, entries),
    }
}

/// Appends the opcodes of a list of `items`: what [`write_value`] writes of a `Value::List`.
pub fn write_list(out: &mut Vec<u8>, items: &[Value]) {
    out.push(b']');
    for chunk in items.chunks(1000) {
        out.push(b'(');
        for item in chunk {
            write_value(out, item);
        }
        out.push(b'e');
    }
}

/// Appends the opcodes of a dict of `entries`: what [`write_value`] writes of a `Value::Dict`.
pub fn write_dict(out: &mut Vec<u8>, entries: &[(String, Value)]) {
    out.push(b'}');
    for chunk in entries.chunks(1000) {
        out.push(b'(');
        for (k, v) in chunk {
            write_str(out, k);
            write_value(out, v);
        }
        out.push(b'u');
    }
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.len() < 256 {
        out.push(0x8c);
        out.push(s.len() as u8);
    } else {
        out.push(b'X');
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    }
    out.reserve(crate::value::room_for_string(s.len()));
    out.extend_from_slice(s.as_bytes());
}

fn write_int(out: &mut Vec<u8>, i: i128) {
    if (0..=0xff).contains(&i) {
        out.push(b'K');
        out.push(i as u8);
    } else if (0..=0xffff).contains(&i) {
        out.push(b'M');
        out.extend_from_slice(&(i as u16).to_le_bytes());
    } else if let Ok(small) = i32::try_from(i) {
        out.push(b'J');
        out.extend_from_slice(&small.to_le_bytes());
    } else {
        write_long(out, &trim_twos(i.to_le_bytes().to_vec()));
    }
}

fn write_long(out: &mut Vec<u8>, le: &[u8]) {
    if le.len() < 256 {
        out.push(0x8a);
        out.push(le.len() as u8);
    } else {
        out.push(0x8b);
        out.extend_from_slice(&(le.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(le);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    #[test]
    fn decodes_the_captured_ping() {
        let ping = hex("80 04 95 0d 00 00 00 00 00 00 00 7d 94 8c 04 70 69 6e 67 94 68 01 73 2e");
        let d = decode(&ping).unwrap();
        assert_eq!(d.value, Value::Dict(vec![("ping".into(), "ping".into())]));
        assert_eq!(d.unsupported, None);
    }

    #[test]
    fn round_trips_plain_data() {
        let big = "-".to_owned() + &"9".repeat(80);
        let values = vec![
            Value::None,
            Value::Bool(true),
            Value::Int(0),
            Value::Int(255),
            Value::Int(256),
            Value::Int(65536),
            Value::Int(-1),
            Value::Int(i128::from(i64::MAX) + 1),
            Value::Int(i128::MIN),
            Value::BigInt("1180591620717411303424000000000000000000000".into()),
            Value::BigInt(big),
            Value::Float(f64::NAN),
            Value::Float(-1.5),
            Value::Str("h\u{e9}llo \u{2603}".into()),
            Value::Str("x".repeat(300)),
            Value::Bytes(vec![0, 255]),
            Value::List((0..2500).map(Value::Int).collect()),
            Value::Dict(vec![("z".into(), Value::Int(1)), ("a".into(), Value::List(vec![]))]),
        ];
        for v in values {
            let back = decode(&encode(&v)).unwrap().value;
            assert_eq!(json::to_string(&back), json::to_string(&v));
        }
        // i128 range ints come back as Int, beyond as exact digits.
        assert_eq!(decode(&encode(&Value::Int(-129))).unwrap().value, Value::Int(-129));
        // Found by fuzzing: an 18-byte LONG1 whose value fits i128 is an Int too.
        let mut long1 = vec![0x80, 4, 0x8a, 18];
        long1.extend_from_slice(&i128::MAX.to_le_bytes());
        long1.extend_from_slice(&[0, 0, b'.']);
        assert_eq!(decode(&long1).unwrap().value, Value::Int(i128::MAX));
        let mut long1 = vec![0x80, 4, 0x8a, 18];
        long1.extend_from_slice(&(-5i128).to_le_bytes());
        long1.extend_from_slice(&[0xff, 0xff, b'.']);
        assert_eq!(decode(&long1).unwrap().value, Value::Int(-5));
    }

    #[test]
    fn memo_refers_to_the_filled_object() {
        // Python: x = [1]; pickle.dumps([x, x], 4): x is memoized empty, filled, then referenced.
        let p = hex("80 04 95 0c 00 00 00 00 00 00 00 5d 94 28 5d 94 4b 01 61 68 01 65 2e");
        assert_eq!(json::to_string(&decode(&p).unwrap().value), "[[1],[1]]");
    }

    #[test]
    fn tuples_sets_and_int_keys() {
        // pickle.dumps(((1, 'a'), {2}, {1: 'one'}), 4)
        let p = hex("80 04 95 1c 00 00 00 00 00 00 00 4b 01 8c 01 61 94 86 94 8f 94 28 4b 02 90 7d 94 4b 01 8c 03 6f 6e 65 94 73 87 94 2e");
        assert_eq!(json::to_string(&decode(&p).unwrap().value), r#"[[1,"a"],[2],{"1":"one"}]"#);
    }

    #[test]
    fn objects_are_reported_not_fatal() {
        // pickle.dumps([object], 4): a class reference
        let p = hex("80 04 95 1a 00 00 00 00 00 00 00 5d 94 8c 08 62 75 69 6c 74 69 6e 73 94 8c 06 6f 62 6a 65 63 74 94 93 94 61 2e");
        let d = decode(&p).unwrap();
        assert_eq!(d.value, Value::List(vec![Value::None]));
        assert_eq!(d.unsupported.as_deref(), Some("builtins.object"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\x80", b"\x80\x04(", b"\x80\x04e.", b"\x80\x04h\x05.", b"\x80\x04\x8c\xff", b"\xff\xff"]
        {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        // A self-referencing list: l = []; l.append(l)
        let p = hex("80 04 95 06 00 00 00 00 00 00 00 5d 94 68 00 61 2e");
        assert!(decode(&p).unwrap_err().message.contains("self-referencing"));
    }

    #[test]
    fn shared_references_expand_within_a_budget() {
        // x = 'a' * 1000; each DUP pushes another reference, each APPENDS copies them all.
        let mut p = vec![0x80, 4, b']', b'(', b'X'];
        p.extend_from_slice(&1000u32.to_le_bytes());
        p.extend(std::iter::repeat_n(b'a', 1000));
        p.extend(std::iter::repeat_n(b'2', 50));
        p.extend_from_slice(b"e.");
        // 51 copies of 1000 bytes fit the floor.
        assert!(decode(&p).is_ok());
        // Doubling through the memo: l = [l0, l0], 30 times, is 2^30 leaves from 60 opcodes.
        let mut p = vec![0x80, 4, b'N'];
        for _ in 0..30 {
            p.extend_from_slice(&[b'2', 0x86]);
        }
        p.push(b'.');
        let e = decode(&p).unwrap_err();
        assert!(e.message.contains("shared references expand"), "{e}");
    }

    #[test]
    fn undecodable_envelopes_keep_their_request_id() {
        // {'ws_action': {'request_id': 'r-1', 'request': <nested 600 deep>}}
        let mut p = vec![0x80, 4, b'}'];
        write_str(&mut p, "ws_action");
        p.push(b'}');
        write_str(&mut p, "request_id");
        write_str(&mut p, "r-1");
        p.push(b's');
        write_str(&mut p, "request");
        p.extend(std::iter::repeat_n(b']', 600));
        p.extend(std::iter::repeat_n(b'a', 599));
        p.extend_from_slice(b"ss.");
        let e = decode(&p).unwrap_err();
        assert!(e.message.contains("nesting deeper"), "{e}");
        assert_eq!(e.request_id.as_deref(), Some("r-1"));
    }

    #[test]
    fn integers_stop_at_pythons_digit_limit() {
        for digits in [1, 9, 10, 18, 19, 20, 38, 39, 40, 100, 1000, MAX_INT_DIGITS] {
            for negative in [false, true] {
                let text = format!("{}{}", if negative { "-" } else { "" }, "9".repeat(digits));
                let back = decode(&encode(&json::int_from_digits(&text))).unwrap().value;
                assert_eq!(json::to_string(&back), text, "{digits} digits");
            }
        }
        let mut long4 = vec![0x80, 4, 0x8b];
        long4.extend_from_slice(&48_000u32.to_le_bytes());
        long4.extend(std::iter::repeat_n(0x11, 48_000));
        long4.push(b'.');
        assert!(decode(&long4).unwrap_err().message.contains("over the 4300 digits"));
        let text = format!("L{}L\n.", "1".repeat(MAX_INT_DIGITS + 1));
        assert!(decode(text.as_bytes()).unwrap_err().message.contains("4301 digits"));
        assert!(decode(b"Labc\n.").is_err());
    }

    #[test]
    fn long_encoding_matches_python() {
        // 2**70 -> LONG1 with 9 bytes, as Python writes it
        assert_eq!(decimal_to_le_twos("1180591620717411303424"), hex("00 00 00 00 00 00 00 00 40"));
        assert_eq!(decimal_to_le_twos("-1"), vec![0xff]);
        assert_eq!(decimal_to_le_twos("128"), vec![0x80, 0x00]);
        assert_eq!(decimal_to_le_twos("-128"), vec![0x80]);
        assert_eq!(le_bytes_to_decimal(&hex("00 00 00 00 00 00 00 00 40")), "1180591620717411303424");
    }
}
