//! A JSON document read once into a flat tape of borrowed tokens, so an
//! encoder can look fields up and walk values without building a
//! `serde_json::Value` tree.
//!
//! The scanner accepts exactly what `serde_json::from_slice::<Value>` does
//! (RFC 8259 with serde_json's nesting limit and number range). Any input it
//! does not take on its fast path is handed to serde_json: if serde_json
//! refuses it too, its error is the answer (so messages stay what producers
//! saw before); if serde_json takes it, the document is re-read from
//! serde_json's own compact rendering, so no valid input is ever refused.

use std::borrow::Cow;

/// serde_json's recursion limit: 128 levels, of which the deepest may not
/// open a container.
const MAX_DEPTH: usize = 127;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    True,
    False,
    Number,
    /// A string without escapes: `start..end` is its content.
    Str,
    /// A string with escapes: `start..end` is its raw content.
    EscapedStr,
    Array,
    Object,
}

/// One tape entry: `start..end` is the value's text (a string's content,
/// without quotes). `next` is the tape index after the value and, for
/// containers, after all their descendants.
#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: u32,
    end: u32,
    next: u32,
}

/// A parsed JSON document.
#[derive(Debug)]
pub struct JsonDoc<'a> {
    text: Cow<'a, str>,
    tape: Vec<Token>,
}

/// A value inside a [`JsonDoc`].
#[derive(Debug, Clone, Copy)]
pub struct JsonNode<'d> {
    text: &'d str,
    tape: &'d [Token],
    index: usize,
}

/// The JSON kind of a node, as the error messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl<'a> JsonDoc<'a> {
    /// Read a JSON document; the error is serde_json's, as before.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        if let Some(doc) = std::str::from_utf8(bytes)
            .ok()
            .filter(|t| t.len() < u32::MAX as usize)
            .and_then(|text| scan(text.as_bytes()).map(|tape| (text, tape)))
        {
            return Ok(Self {
                text: Cow::Borrowed(doc.0),
                tape: doc.1,
            });
        }
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        Self::from_value(&value)
    }

    /// A document holding `value` (from serde_json's compact rendering).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string(value)?;
        match scan(text.as_bytes()) {
            Some(tape) => Ok(Self {
                text: Cow::Owned(text),
                tape,
            }),
            None => Err(serde::de::Error::custom(
                "JSON rendering of a value could not be re-read",
            )),
        }
    }

    /// The top-level value.
    pub fn root(&self) -> JsonNode<'_> {
        JsonNode {
            text: &self.text,
            tape: &self.tape,
            index: 0,
        }
    }
}

impl<'d> JsonNode<'d> {
    fn token(&self) -> Token {
        self.tape[self.index]
    }

    fn at(&self, index: usize) -> Self {
        Self { index, ..*self }
    }

    /// The node's kind.
    pub fn kind(&self) -> JsonKind {
        match self.token().kind {
            Kind::Null => JsonKind::Null,
            Kind::True | Kind::False => JsonKind::Bool,
            Kind::Number => JsonKind::Number,
            Kind::Str | Kind::EscapedStr => JsonKind::String,
            Kind::Array => JsonKind::Array,
            Kind::Object => JsonKind::Object,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.token().kind {
            Kind::True => Some(true),
            Kind::False => Some(false),
            _ => None,
        }
    }

    /// The string, unescaped, if this is one (borrowed unless it had escapes).
    pub fn as_str(&self) -> Option<Cow<'d, str>> {
        let t = self.token();
        let raw = &self.text[t.start as usize..t.end as usize];
        match t.kind {
            Kind::Str => Some(Cow::Borrowed(raw)),
            Kind::EscapedStr => Some(Cow::Owned(unescape(raw))),
            _ => None,
        }
    }

    /// The number, exactly as serde_json reads it, if this is one.
    pub fn as_number(&self) -> Option<serde_json::Number> {
        let t = self.token();
        if t.kind != Kind::Number {
            return None;
        }
        let raw = &self.text[t.start as usize..t.end as usize];
        if raw.len() <= 18 && raw.bytes().all(|b| b.is_ascii_digit()) {
            // At most 18 digits always fit; the scanner checked the syntax.
            let n = raw.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
            return Some(n.into());
        }
        // Floats, negatives and long integers: serde_json's own reading
        // (the scanner already checked it succeeds).
        raw.parse().ok()
    }

    /// The source text of this value.
    pub fn raw(&self) -> &'d str {
        let t = self.token();
        match t.kind {
            Kind::Str | Kind::EscapedStr => &self.text[t.start as usize - 1..t.end as usize + 1],
            _ => &self.text[t.start as usize..t.end as usize],
        }
    }

    /// Number of items (array) or key/value pairs (object), counted by a
    /// walk over the tape; 0 otherwise.
    pub fn len(&self) -> usize {
        match self.token().kind {
            Kind::Array => self.items().count(),
            Kind::Object => self.entries().count(),
            _ => 0,
        }
    }

    /// Whether this is an empty container (or not a container).
    pub fn is_empty(&self) -> bool {
        self.index + 1 == self.token().next as usize
    }

    fn after(&self, index: usize) -> usize {
        self.tape[index].next as usize
    }

    /// The items of an array (nothing for other kinds).
    pub fn items(&self) -> impl Iterator<Item = JsonNode<'d>> + use<'d> {
        let node = *self;
        let end = if node.token().kind == Kind::Array {
            node.token().next as usize
        } else {
            node.index + 1
        };
        let mut at = node.index + 1;
        std::iter::from_fn(move || {
            (at < end).then(|| {
                let item = node.at(at);
                at = node.after(at);
                item
            })
        })
    }

    /// The key/value pairs of an object in document order, repeated keys
    /// included (nothing for other kinds).
    pub fn entries(&self) -> impl Iterator<Item = (JsonNode<'d>, JsonNode<'d>)> + use<'d> {
        let node = *self;
        let end = if node.token().kind == Kind::Object {
            node.token().next as usize
        } else {
            node.index + 1
        };
        let mut at = node.index + 1;
        std::iter::from_fn(move || {
            (at < end).then(|| {
                let key = node.at(at);
                let value = node.at(at + 1);
                at = node.after(at + 1);
                (key, value)
            })
        })
    }

    /// Whether this string node's text equals `s` (no allocation when the
    /// string has no escapes).
    pub fn str_eq(&self, s: &str) -> bool {
        let t = self.token();
        let raw = &self.text[t.start as usize..t.end as usize];
        match t.kind {
            Kind::Str => raw == s,
            Kind::EscapedStr => unescape(raw) == s,
            _ => false,
        }
    }

    /// The value of `key` in an object; a repeated key gives its last value,
    /// as serde_json does.
    pub fn get(&self, key: &str) -> Option<JsonNode<'d>> {
        self.entries()
            .filter(|(k, _)| k.str_eq(key))
            .last()
            .map(|(_, v)| v)
    }

    /// This value as a `serde_json::Value` (for cold paths and tests).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.raw()).unwrap_or(serde_json::Value::Null)
    }
}

/// Unescape a string's raw content the scanner accepted (escapes valid,
/// surrogates paired).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let b = rest.as_bytes();
        let (ch, used) = match b[i + 1] {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            _ => {
                let hi = hex4(&b[i + 2..i + 6]).unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&hi) {
                    let lo = hex4(&b[i + 8..i + 12]).unwrap_or(0xDC00);
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    (char::from_u32(c).unwrap_or('\u{FFFD}'), 12)
                } else {
                    (char::from_u32(hi).unwrap_or('\u{FFFD}'), 6)
                }
            }
        };
        out.push(ch);
        rest = &rest[i + used..];
    }
    out.push_str(rest);
    out
}

fn hex4(b: &[u8]) -> Option<u32> {
    let digits = b.get(..4)?;
    digits
        .iter()
        .try_fold(0u32, |n, &d| char::from(d).to_digit(16).map(|v| n * 16 + v))
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// Scan `text` into a tape; `None` for anything serde_json must judge.
fn scan(text: &[u8]) -> Option<Vec<Token>> {
    let mut s = Scanner {
        text,
        pos: 0,
        tape: Vec::with_capacity(text.len() / 8 + 4),
        open: Vec::new(),
    };
    s.document()?;
    Some(s.tape)
}

struct Scanner<'t> {
    text: &'t [u8],
    pos: usize,
    tape: Vec<Token>,
    /// Tape indices of the containers open around the cursor.
    open: Vec<usize>,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.pos < self.text.len() && is_ws(self.text[self.pos]) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn push(&mut self, kind: Kind, start: usize, end: usize) {
        let next = self.tape.len() as u32 + 1;
        self.tape.push(Token {
            kind,
            start: start as u32,
            end: end as u32,
            next,
        });
    }

    fn document(&mut self) -> Option<()> {
        self.ws();
        loop {
            // A value starts here.
            match self.peek()? {
                c @ (b'{' | b'[') => {
                    if self.open.len() >= MAX_DEPTH {
                        return None;
                    }
                    let kind = if c == b'{' { Kind::Object } else { Kind::Array };
                    self.open.push(self.tape.len());
                    self.push(kind, self.pos, 0);
                    self.pos += 1;
                    self.ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        self.close();
                    } else {
                        if c == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true", Kind::True)?,
                b'f' => self.literal(b"false", Kind::False)?,
                b'n' => self.literal(b"null", Kind::Null)?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // A value ended: continue its container, or close it.
            loop {
                self.ws();
                let Some(&container) = self.open.last() else {
                    return (self.pos == self.text.len()).then_some(());
                };
                let is_object = self.tape[container].kind == Kind::Object;
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.ws();
                        if is_object {
                            self.key()?;
                        }
                        break;
                    }
                    b'}' if is_object => {
                        self.pos += 1;
                        self.close();
                    }
                    b']' if !is_object => {
                        self.pos += 1;
                        self.close();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// Close the innermost container; the cursor is after its bracket.
    fn close(&mut self) {
        if let Some(container) = self.open.pop() {
            self.tape[container].next = self.tape.len() as u32;
            self.tape[container].end = self.pos as u32;
        }
    }

    /// An object key and its colon; the cursor ends on the value.
    fn key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.ws();
        if self.peek()? != b':' {
            return None;
        }
        self.pos += 1;
        self.ws();
        Some(())
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Option<()> {
        let end = self.pos + word.len();
        if self.text.get(self.pos..end)? != word {
            return None;
        }
        self.push(kind, self.pos, end);
        self.pos = end;
        Some(())
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - from
    }

    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => {
                self.pos += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut simple = self.text[start] != b'-' && self.pos - start <= 18;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
            simple = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            simple = false;
        }
        if !simple {
            // Range (1e400) is serde_json's call, made here so that every
            // syntax error is found before any field is encoded.
            let raw = std::str::from_utf8(&self.text[start..self.pos]).ok()?;
            raw.parse::<serde_json::Number>().ok()?;
        }
        self.push(Kind::Number, start, self.pos);
        Some(())
    }

    fn string(&mut self) -> Option<()> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            let b = self.peek()?;
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match *self.text.get(self.pos + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                        b'u' => {
                            let hi = hex4(self.text.get(self.pos + 2..self.pos + 6)?)?;
                            self.pos += 6;
                            if (0xDC00..0xE000).contains(&hi) {
                                return None;
                            }
                            if (0xD800..0xDC00).contains(&hi) {
                                if self.text.get(self.pos..self.pos + 2)? != b"\\u" {
                                    return None;
                                }
                                let lo = hex4(self.text.get(self.pos + 2..self.pos + 6)?)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                self.pos += 6;
                            }
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
        let kind = if escaped { Kind::EscapedStr } else { Kind::Str };
        self.push(kind, start, self.pos);
        self.pos += 1;
        Some(())
    }
}
