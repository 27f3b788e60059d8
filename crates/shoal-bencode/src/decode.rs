//! The decoder: input bytes → a tape of tokens → borrowed [`Node`] views.
//!
//! The tape is built in one left-to-right pass with an explicit stack, so the cost of
//! hostile input is bounded by [`Limits`]: nesting depth, token count, and string lengths
//! that are checked against the remaining input before anything is read or allocated.

use std::fmt;
use std::ops::Range;

/// Bounds on what one decode may cost. The defaults suit `.torrent` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Containers nested deeper than this are an error (the outermost one is level 1).
    pub max_depth: usize,
    /// Total values (integers, strings, lists, dictionaries) in one document.
    pub max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 100,
            max_tokens: 1 << 21,
        }
    }
}

/// What went wrong, without the position (see [`DecodeError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unexpected end of input")]
    UnexpectedEof,
    #[error("unexpected byte {0:#04x}")]
    UnexpectedByte(u8),
    #[error("invalid integer")]
    InvalidInteger,
    #[error("integer has a leading zero")]
    LeadingZero,
    #[error("negative zero")]
    NegativeZero,
    #[error("integer does not fit in 64 bits")]
    IntegerOverflow,
    #[error("string length {0} runs past the end of the input")]
    StringTooLong(u64),
    #[error("invalid string length")]
    InvalidLength,
    #[error("dictionary key is not a byte string")]
    NonStringKey,
    #[error("dictionary key without a value")]
    MissingValue,
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("more than {0} values")]
    TooManyTokens(usize),
    #[error("trailing data after the value")]
    TrailingData,
    #[error("input larger than 4 GiB")]
    InputTooLarge,
}

/// A decoding failure and the byte offset where it was detected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bencode error at byte {offset}: {kind}")]
pub struct DecodeError {
    pub offset: usize,
    pub kind: ErrorKind,
}

/// The four bencode types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bytes,
    List,
    Dict,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Int => "integer",
            Kind::Bytes => "string",
            Kind::List => "list",
            Kind::Dict => "dictionary",
        })
    }
}

/// One value on the tape. Offsets are `u32` (inputs are capped at 4 GiB) to keep the
/// tape small: a token costs 20 bytes whatever it holds.
#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    /// Span of the whole encoded value in the input.
    start: u32,
    end: u32,
    /// Index of the first token after this value's subtree.
    next: u32,
    /// Strings: where the payload starts (after the `:`). Integers: unused.
    data: u32,
}

/// A decoded document: the input it borrows and the token tape.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    input: &'a [u8],
    tokens: Vec<Token>,
}

impl<'a> Document<'a> {
    /// The outermost value.
    pub fn root(&self) -> Node<'_, 'a> {
        Node {
            doc: self,
            index: 0,
        }
    }
}

/// Decodes exactly one value that must span the whole input.
pub fn decode(input: &[u8], limits: Limits) -> Result<Document<'_>, DecodeError> {
    let (doc, used) = decode_prefix(input, limits)?;
    if used != input.len() {
        return Err(DecodeError {
            offset: used,
            kind: ErrorKind::TrailingData,
        });
    }
    Ok(doc)
}

/// Decodes one value at the start of the input and returns it with the number of bytes
/// it used; what follows is left to the caller (ut_metadata appends raw data to a
/// dictionary this way).
pub fn decode_prefix(input: &[u8], limits: Limits) -> Result<(Document<'_>, usize), DecodeError> {
    if input.len() > u32::MAX as usize {
        return Err(DecodeError {
            offset: 0,
            kind: ErrorKind::InputTooLarge,
        });
    }
    Parser {
        input,
        pos: 0,
        limits,
        tokens: Vec::new(),
        stack: Vec::new(),
    }
    .run()
}

/// An open container on the parser's stack.
struct Open {
    token: usize,
    is_dict: bool,
    /// For dictionaries: the next value read is a key.
    want_key: bool,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    tokens: Vec<Token>,
    stack: Vec<Open>,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, offset: usize, kind: ErrorKind) -> Result<T, DecodeError> {
        Err(DecodeError { offset, kind })
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        match self.input.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err(self.pos, ErrorKind::UnexpectedEof),
        }
    }

    fn run(mut self) -> Result<(Document<'a>, usize), DecodeError> {
        loop {
            let byte = self.peek()?;
            if byte == b'e' && !self.stack.is_empty() {
                let open = self.stack.pop().expect("stack checked non-empty");
                if open.is_dict && !open.want_key {
                    return self.err(self.pos, ErrorKind::MissingValue);
                }
                self.pos += 1;
                let next = self.tokens.len() as u32;
                let token = &mut self.tokens[open.token];
                token.end = self.pos as u32;
                token.next = next;
            } else {
                if let Some(top) = self.stack.last_mut() {
                    if top.is_dict {
                        if top.want_key && !byte.is_ascii_digit() {
                            return self.err(self.pos, ErrorKind::NonStringKey);
                        }
                        top.want_key = !top.want_key;
                    }
                }
                self.value(byte)?;
            }
            if self.stack.is_empty() {
                let doc = Document {
                    input: self.input,
                    tokens: self.tokens,
                };
                return Ok((doc, self.pos));
            }
        }
    }

    fn push(
        &mut self,
        kind: Kind,
        start: usize,
        end: usize,
        data: usize,
    ) -> Result<usize, DecodeError> {
        if self.tokens.len() >= self.limits.max_tokens {
            return self.err(start, ErrorKind::TooManyTokens(self.limits.max_tokens));
        }
        let index = self.tokens.len();
        self.tokens.push(Token {
            kind,
            start: start as u32,
            end: end as u32,
            next: index as u32 + 1,
            data: data as u32,
        });
        Ok(index)
    }

    /// Reads one value starting with `byte`; containers are opened, not finished.
    fn value(&mut self, byte: u8) -> Result<(), DecodeError> {
        let start = self.pos;
        match byte {
            b'i' => {
                let end = self.integer()?;
                self.push(Kind::Int, start, end, start + 1)?;
            }
            b'l' | b'd' => {
                if self.stack.len() >= self.limits.max_depth {
                    return self.err(start, ErrorKind::TooDeep(self.limits.max_depth));
                }
                let is_dict = byte == b'd';
                let kind = if is_dict { Kind::Dict } else { Kind::List };
                let token = self.push(kind, start, start, start)?;
                self.stack.push(Open {
                    token,
                    is_dict,
                    want_key: true,
                });
                self.pos += 1;
            }
            b'0'..=b'9' => {
                let (data, end) = self.string()?;
                self.push(Kind::Bytes, start, end, data)?;
            }
            other => return self.err(start, ErrorKind::UnexpectedByte(other)),
        }
        Ok(())
    }

    /// Validates `i<digits>e` at `pos`, moves past it and returns the end offset.
    fn integer(&mut self) -> Result<usize, DecodeError> {
        let start = self.pos;
        self.pos += 1; // 'i'
        let digits_at = self.pos;
        // No valid i64 needs more than 20 characters, so look no further than that.
        let window = &self.input[self.pos..self.input.len().min(self.pos + 21)];
        let text_end = match window.iter().position(|&b| b == b'e') {
            Some(n) => self.pos + n,
            None => {
                return match window
                    .iter()
                    .position(|b| !(b.is_ascii_digit() || *b == b'-'))
                {
                    Some(n) => self.err(self.pos + n, ErrorKind::InvalidInteger),
                    None if self.pos + window.len() == self.input.len() => {
                        self.err(self.input.len(), ErrorKind::UnexpectedEof)
                    }
                    None => self.err(start, ErrorKind::IntegerOverflow),
                };
            }
        };
        parse_int(&self.input[digits_at..text_end]).map_err(|kind| DecodeError {
            offset: digits_at,
            kind,
        })?;
        self.pos = text_end + 1;
        Ok(self.pos)
    }

    /// Validates `<len>:<bytes>` at `pos`; returns (payload start, end offset).
    fn string(&mut self) -> Result<(usize, usize), DecodeError> {
        let start = self.pos;
        let mut len: u64 = 0;
        loop {
            let byte = self.peek()?;
            match byte {
                b'0'..=b'9' => {
                    len = match len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(u64::from(byte - b'0')))
                    {
                        Some(l) => l,
                        None => return self.err(start, ErrorKind::InvalidLength),
                    };
                    self.pos += 1;
                }
                b':' => break,
                other => return self.err(self.pos, ErrorKind::UnexpectedByte(other)),
            }
        }
        self.pos += 1; // ':'
        let remaining = (self.input.len() - self.pos) as u64;
        if len > remaining {
            return self.err(start, ErrorKind::StringTooLong(len));
        }
        let data = self.pos;
        self.pos += len as usize;
        Ok((data, self.pos))
    }
}

/// Parses the text between `i` and `e` under bencode's canonical rules.
fn parse_int(text: &[u8]) -> Result<i64, ErrorKind> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ErrorKind::InvalidInteger);
    }
    if digits[0] == b'0' {
        if negative {
            return Err(ErrorKind::NegativeZero);
        }
        if digits.len() > 1 {
            return Err(ErrorKind::LeadingZero);
        }
    }
    // Accumulate negatively so that i64::MIN parses too.
    let mut value: i64 = 0;
    for &d in digits {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d - b'0')))
            .ok_or(ErrorKind::IntegerOverflow)?;
    }
    if negative {
        Ok(value)
    } else {
        value.checked_neg().ok_or(ErrorKind::IntegerOverflow)
    }
}

/// A borrowed view of one decoded value.
#[derive(Clone, Copy)]
pub struct Node<'d, 'a> {
    doc: &'d Document<'a>,
    index: usize,
}

impl<'d, 'a> Node<'d, 'a> {
    fn token(&self) -> &'d Token {
        &self.doc.tokens[self.index]
    }

    pub fn kind(&self) -> Kind {
        self.token().kind
    }

    /// Byte range of the whole encoded value within the input.
    pub fn span(&self) -> Range<usize> {
        let t = self.token();
        t.start as usize..t.end as usize
    }

    /// The value's encoded bytes exactly as they appeared in the input.
    pub fn raw(&self) -> &'a [u8] {
        &self.doc.input[self.span()]
    }

    pub fn as_int(&self) -> Option<i64> {
        let t = self.token();
        (t.kind == Kind::Int).then(|| {
            parse_int(&self.doc.input[t.data as usize..t.end as usize - 1])
                .expect("validated while decoding")
        })
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        let t = self.token();
        (t.kind == Kind::Bytes).then(|| &self.doc.input[t.data as usize..t.end as usize])
    }

    /// The string as UTF-8, or `None` if it is not a string or not valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<List<'d, 'a>> {
        (self.kind() == Kind::List).then_some(List { node: *self })
    }

    pub fn as_dict(&self) -> Option<Dict<'d, 'a>> {
        (self.kind() == Kind::Dict).then_some(Dict { node: *self })
    }

    /// An owned copy (depth is bounded by the decoder's limits, so recursion is safe).
    pub fn to_value(&self) -> crate::Value {
        use crate::Value;
        match self.kind() {
            Kind::Int => Value::Int(self.as_int().expect("kind checked")),
            Kind::Bytes => Value::Bytes(self.as_bytes().expect("kind checked").to_vec()),
            Kind::List => Value::List(Children::of(*self).map(|n| n.to_value()).collect()),
            Kind::Dict => Value::Dict(
                Dict { node: *self }
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

impl fmt::Debug for Node<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({} at {:?})", self.kind(), self.span())
    }
}

/// Iterates over the direct children of a container.
struct Children<'d, 'a> {
    doc: &'d Document<'a>,
    next: usize,
    end: usize,
}

impl<'d, 'a> Children<'d, 'a> {
    fn of(node: Node<'d, 'a>) -> Self {
        Children {
            doc: node.doc,
            next: node.index + 1,
            end: node.token().next as usize,
        }
    }
}

impl<'d, 'a> Iterator for Children<'d, 'a> {
    type Item = Node<'d, 'a>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let node = Node {
            doc: self.doc,
            index: self.next,
        };
        self.next = node.token().next as usize;
        Some(node)
    }
}

/// A borrowed list.
#[derive(Clone, Copy, Debug)]
pub struct List<'d, 'a> {
    node: Node<'d, 'a>,
}

impl<'d, 'a> List<'d, 'a> {
    pub fn iter(&self) -> impl Iterator<Item = Node<'d, 'a>> {
        Children::of(self.node)
    }
    pub fn len(&self) -> usize {
        self.iter().count()
    }
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
    pub fn node(&self) -> Node<'d, 'a> {
        self.node
    }
}

/// A borrowed dictionary. Keys keep their input order; lookups return the first match,
/// so a duplicated key cannot smuggle in a second value.
#[derive(Clone, Copy, Debug)]
pub struct Dict<'d, 'a> {
    node: Node<'d, 'a>,
}

impl<'d, 'a> Dict<'d, 'a> {
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Node<'d, 'a>)> {
        let mut children = Children::of(self.node);
        std::iter::from_fn(move || {
            let key = children.next()?;
            let value = children.next().expect("decoder guarantees a value per key");
            Some((
                key.as_bytes().expect("decoder guarantees string keys"),
                value,
            ))
        })
    }
    pub fn get(&self, key: &[u8]) -> Option<Node<'d, 'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
    pub fn len(&self) -> usize {
        self.iter().count()
    }
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
    pub fn node(&self) -> Node<'d, 'a> {
        self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &[u8]) -> DecodeError {
        decode(input, Limits::default()).expect_err("should fail")
    }

    #[test]
    fn integers() {
        let ok = |s: &[u8], v: i64| {
            assert_eq!(
                decode(s, Limits::default()).unwrap().root().as_int(),
                Some(v)
            )
        };
        ok(b"i0e", 0);
        ok(b"i-42e", -42);
        ok(b"i9223372036854775807e", i64::MAX);
        ok(b"i-9223372036854775808e", i64::MIN);
        assert_eq!(
            err(b"i9223372036854775808e").kind,
            ErrorKind::IntegerOverflow
        );
        assert_eq!(err(b"i-e").kind, ErrorKind::InvalidInteger);
        assert_eq!(err(b"ie").kind, ErrorKind::InvalidInteger);
        assert_eq!(err(b"i01e").kind, ErrorKind::LeadingZero);
        assert_eq!(err(b"i-0e").kind, ErrorKind::NegativeZero);
        assert_eq!(err(b"i12").kind, ErrorKind::UnexpectedEof);
        assert_eq!(err(b"i1x2e").kind, ErrorKind::InvalidInteger);
        assert_eq!(
            err(b"i99999999999999999999999999999e").kind,
            ErrorKind::IntegerOverflow
        );
    }

    #[test]
    fn strings_are_checked_before_allocation() {
        let e = err(b"99999999999999999999:x");
        assert_eq!((e.offset, e.kind), (0, ErrorKind::InvalidLength));
        assert_eq!(err(b"5:abc").kind, ErrorKind::StringTooLong(5));
        assert_eq!(
            err(b"18446744073709551615:x").kind,
            ErrorKind::StringTooLong(u64::MAX)
        );
        assert_eq!(
            decode(b"0:", Limits::default()).unwrap().root().as_bytes(),
            Some(&b""[..])
        );
    }

    #[test]
    fn depth_limit_without_recursion() {
        let deep = |n: usize| {
            let mut v = vec![b'l'; n];
            v.extend(std::iter::repeat_n(b'e', n));
            v
        };
        assert!(decode(&deep(100), Limits::default()).is_ok());
        let e = err(&deep(101));
        assert_eq!((e.offset, e.kind), (100, ErrorKind::TooDeep(100)));
        // A million levels must fail fast, not overflow the stack.
        assert_eq!(err(&deep(1_000_000)).kind, ErrorKind::TooDeep(100));
    }

    #[test]
    fn token_limit() {
        let mut input = b"l".to_vec();
        for _ in 0..3_000_000 {
            input.extend_from_slice(b"le");
        }
        input.push(b'e');
        assert_eq!(err(&input).kind, ErrorKind::TooManyTokens(1 << 21));
    }

    #[test]
    fn dictionaries_keep_raw_spans_and_first_duplicate() {
        let input = b"d4:infod1:bi1e1:ai2ee1:xi1e1:xi2ee";
        let doc = decode(input, Limits::default()).unwrap();
        let root = doc.root().as_dict().unwrap();
        assert_eq!(root.get(b"info").unwrap().raw(), b"d1:bi1e1:ai2ee");
        assert_eq!(root.get(b"x").unwrap().as_int(), Some(1));
        assert_eq!(root.len(), 3);
        assert!(root.get(b"missing").is_none());
    }

    #[test]
    fn malformed_containers() {
        assert_eq!(err(b"di1ei2ee").kind, ErrorKind::NonStringKey);
        assert_eq!(err(b"d1:ae").kind, ErrorKind::MissingValue);
        assert_eq!(err(b"l").kind, ErrorKind::UnexpectedEof);
        assert_eq!(err(b"").kind, ErrorKind::UnexpectedEof);
        assert_eq!(err(b"e").kind, ErrorKind::UnexpectedByte(b'e'));
        assert_eq!(err(b"lei1e").kind, ErrorKind::TrailingData);
        assert_eq!(err(b"x").kind, ErrorKind::UnexpectedByte(b'x'));
    }

    #[test]
    fn prefix_decoding_reports_length() {
        let (doc, used) = decode_prefix(b"d1:ai1eeRAWDATA", Limits::default()).unwrap();
        assert_eq!(used, 8);
        assert_eq!(
            doc.root().as_dict().unwrap().get(b"a").unwrap().as_int(),
            Some(1)
        );
    }
}
