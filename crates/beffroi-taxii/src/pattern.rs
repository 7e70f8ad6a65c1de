//! The STIX patterns the crate writes, and a reader for partners' patterns that keeps
//! only network addresses.
//!
//! The reader parses the whole STIX 2.1 patterning grammar (observation expressions
//! joined by `AND`, `OR`, `FOLLOWEDBY`, parentheses, qualifiers `WITHIN`, `REPEATS`,
//! `START … STOP`; comparisons with every operator and literal kind), so that a
//! malformed pattern is refused with the byte where reading stopped. From a well-formed
//! pattern it keeps the comparisons `ipv4-addr:value` and `ipv6-addr:value` with `=`,
//! `IN` or `ISSUBSET` (an address or a CIDR block), and counts everything else as
//! skipped: other object types, other properties, negations, `!=`, `MATCHES`…
//! A negated comparison never yields an address.
//!
//! Limits, for untrusted input: [`MAX_PATTERN_BYTES`], [`MAX_DEPTH`] levels of brackets
//! and parentheses, [`MAX_COMPARISONS`] comparisons.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// The longest pattern read.
pub const MAX_PATTERN_BYTES: usize = 64 * 1024;
/// The deepest nesting of `[`, `(` read.
pub const MAX_DEPTH: usize = 32;
/// The most comparisons read in one pattern.
pub const MAX_COMPARISONS: usize = 4096;

/// An address block: an address and a prefix length, host bits zero. A single host is
/// the block of length 32 (IPv4) or 128 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// The block of `len` bits around `addr` (host bits cleared), or `None` when `len`
    /// is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Option<IpPrefix> {
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Some(IpPrefix {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)),
                    len,
                })
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Some(IpPrefix {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)),
                    len,
                })
            }
            _ => None,
        }
    }

    /// The block holding only `addr`.
    pub fn host(addr: IpAddr) -> IpPrefix {
        IpPrefix {
            addr,
            len: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn addr(self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// True when the block is a single address.
    pub fn is_host(self) -> bool {
        self.len == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// True when `ip` is inside the block (an IPv4 address is never inside an IPv6
    /// block, nor the reverse).
    pub fn contains(self, ip: IpAddr) -> bool {
        IpPrefix::new(ip, self.len).is_some_and(|p| p.addr == self.addr)
    }

    /// Reads `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or an IPv6 block.
    pub fn parse(text: &str) -> Option<IpPrefix> {
        match text.split_once('/') {
            None => text.parse().ok().map(IpPrefix::host),
            Some((addr, len)) => {
                // Only plain decimal lengths: no sign, no leading zero beyond "0".
                if len.is_empty()
                    || len.len() > 3
                    || !len.bytes().all(|b| b.is_ascii_digit())
                    || (len.len() > 1 && len.starts_with('0'))
                {
                    return None;
                }
                IpPrefix::new(addr.parse().ok()?, len.parse().ok()?)
            }
        }
    }

    fn stix_type(self) -> &'static str {
        if self.addr.is_ipv4() {
            "ipv4-addr"
        } else {
            "ipv6-addr"
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// The pattern matching any of `prefixes`: one observation expression of equality
/// comparisons joined by `OR`, e.g.
/// `[ipv4-addr:value = '203.0.113.7' OR ipv6-addr:value = '2001:db8::/32']`.
/// `None` for an empty list.
pub fn address_pattern(prefixes: &[IpPrefix]) -> Option<String> {
    if prefixes.is_empty() {
        return None;
    }
    let comparisons: Vec<String> = prefixes
        .iter()
        .map(|p| format!("{}:value = '{p}'", p.stix_type()))
        .collect();
    Some(format!("[{}]", comparisons.join(" OR ")))
}

/// What a pattern says about network addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPattern {
    /// The address blocks of the positive address comparisons, in the order of the
    /// pattern, without repeats.
    pub prefixes: Vec<IpPrefix>,
    /// Comparisons that yielded no address (another object type or property, another
    /// operator, a negation).
    pub skipped_comparisons: usize,
    /// True when the pattern means exactly "traffic from or to any of `prefixes`": at
    /// least one address, only positive address comparisons, no `AND`, no
    /// `FOLLOWEDBY`, no qualifier. When false, the addresses are a part of what the
    /// pattern describes, and blocking them may be broader than the partner meant.
    pub exact: bool,
}

/// Why a pattern was refused; `at` is a byte offset into the pattern.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PatternError {
    #[error("the pattern is {len} bytes, over the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("nesting deeper than {max} levels at byte {at}")]
    TooDeep { at: usize, max: usize },
    #[error("more than {max} comparisons at byte {at}")]
    TooManyComparisons { at: usize, max: usize },
    #[error("malformed pattern at byte {at}: {what}")]
    Syntax { at: usize, what: &'static str },
    #[error("at byte {at}: {value:?} is not an {object_type} address or CIDR block")]
    Address {
        at: usize,
        object_type: &'static str,
        value: String,
    },
}

impl PatternError {
    /// The byte offset the error points at (0 for a pattern too long).
    pub fn offset(&self) -> usize {
        match self {
            PatternError::TooLong { .. } => 0,
            PatternError::TooDeep { at, .. }
            | PatternError::TooManyComparisons { at, .. }
            | PatternError::Syntax { at, .. }
            | PatternError::Address { at, .. } => *at,
        }
    }
}

/// Reads a STIX pattern and keeps its network addresses (see the module documentation).
pub fn read_network_pattern(pattern: &str) -> Result<NetworkPattern, PatternError> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(PatternError::TooLong {
            len: pattern.len(),
            max: MAX_PATTERN_BYTES,
        });
    }
    let tokens = lex(pattern)?;
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        end: pattern.len(),
        depth: 0,
        comparisons: 0,
        found: NetworkPattern::default(),
        composite: false,
    };
    parser.observations()?;
    if let Some(token) = parser.peek() {
        return Err(syntax(token.at, "unexpected text after the pattern"));
    }
    let mut found = parser.found;
    found.exact = !parser.composite && found.skipped_comparisons == 0 && !found.prefixes.is_empty();
    Ok(found)
}

fn syntax(at: usize, what: &'static str) -> PatternError {
    PatternError::Syntax { at, what }
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Word(String),
    Str(String),
    Int,
    Float,
    Hex,
    Binary,
    Timestamp,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Colon,
    Dot,
    Star,
    Eq,
    Neq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug)]
struct Token {
    at: usize,
    kind: Kind,
}

fn lex(text: &str) -> Result<Vec<Token>, PatternError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at = i;
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let kind = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'[' => simple(&mut i, Kind::LBracket),
            b']' => simple(&mut i, Kind::RBracket),
            b'(' => simple(&mut i, Kind::LParen),
            b')' => simple(&mut i, Kind::RParen),
            b',' => simple(&mut i, Kind::Comma),
            b':' => simple(&mut i, Kind::Colon),
            b'.' => simple(&mut i, Kind::Dot),
            b'*' => simple(&mut i, Kind::Star),
            b'=' => simple(&mut i, Kind::Eq),
            b'!' if next == Some(b'=') => {
                i += 2;
                Kind::Neq
            }
            b'<' if next == Some(b'>') => {
                i += 2;
                Kind::Neq
            }
            b'<' if next == Some(b'=') => {
                i += 2;
                Kind::Le
            }
            b'>' if next == Some(b'=') => {
                i += 2;
                Kind::Ge
            }
            b'<' => simple(&mut i, Kind::Lt),
            b'>' => simple(&mut i, Kind::Gt),
            b'\'' => {
                let (value, end) = string_literal(text, i)?;
                i = end;
                Kind::Str(value)
            }
            b'h' | b'b' | b't' if next == Some(b'\'') => {
                let (value, end) = string_literal(text, i + 1)?;
                i = end;
                match b {
                    b'h' => {
                        if !value.len().is_multiple_of(2)
                            || !value.bytes().all(|c| c.is_ascii_hexdigit())
                        {
                            return Err(syntax(at, "a hex literal holds pairs of hex digits"));
                        }
                        Kind::Hex
                    }
                    b'b' => {
                        if !is_base64(&value) {
                            return Err(syntax(at, "a binary literal holds base64"));
                        }
                        Kind::Binary
                    }
                    _ => {
                        if crate::time::parse_timestamp(&value).is_err() {
                            return Err(syntax(
                                at + 2,
                                "a timestamp literal holds an RFC 3339 UTC time",
                            ));
                        }
                        Kind::Timestamp
                    }
                }
            }
            b'+' | b'-' | b'0'..=b'9' => {
                let start = if b == b'+' || b == b'-' { i + 1 } else { i };
                let mut j = start;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                if j == start {
                    return Err(syntax(at, "a digit after the sign"));
                }
                if bytes.get(j) == Some(&b'.') {
                    let frac = j + 1;
                    j = frac;
                    while j < bytes.len() && bytes[j].is_ascii_digit() {
                        j += 1;
                    }
                    if j == frac {
                        return Err(syntax(frac, "a digit after the decimal point"));
                    }
                    i = j;
                    Kind::Float
                } else {
                    i = j;
                    Kind::Int
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let mut j = i + 1;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'-')
                {
                    j += 1;
                }
                let word = text.get(i..j).unwrap_or_default().to_owned();
                i = j;
                Kind::Word(word)
            }
            _ => return Err(syntax(at, "unexpected character")),
        };
        tokens.push(Token { at, kind });
    }
    Ok(tokens)
}

fn simple(i: &mut usize, kind: Kind) -> Kind {
    *i += 1;
    kind
}

/// The string literal opening at byte `open` (a `'`): its value, and the byte after
/// its closing quote. Only `\'` and `\\` are escapes.
fn string_literal(text: &str, open: usize) -> Result<(String, usize), PatternError> {
    let bytes = text.as_bytes();
    let mut value = String::new();
    let mut i = open + 1;
    let mut run = i;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                value.push_str(text.get(run..i).unwrap_or_default());
                return Ok((value, i + 1));
            }
            b'\\' => {
                value.push_str(text.get(run..i).unwrap_or_default());
                match bytes.get(i + 1) {
                    Some(b'\'') => value.push('\''),
                    Some(b'\\') => value.push('\\'),
                    _ => return Err(syntax(i, "only \\' and \\\\ are escapes in a string")),
                }
                i += 2;
                run = i;
            }
            _ => i += 1,
        }
    }
    Err(syntax(open, "a string literal is not closed"))
}

fn is_base64(text: &str) -> bool {
    let b = text.as_bytes();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let padding = b.iter().rev().take_while(|&&c| c == b'=').count();
    padding <= 2
        && b[..b.len() - padding]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

const KEYWORDS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "FOLLOWEDBY",
    "LIKE",
    "MATCHES",
    "ISSUPERSET",
    "ISSUBSET",
    "EXISTS",
    "IN",
    "WITHIN",
    "SECONDS",
    "REPEATS",
    "TIMES",
    "START",
    "STOP",
    "true",
    "false",
];

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    end: usize,
    depth: usize,
    comparisons: usize,
    found: NetworkPattern,
    /// An `AND`, a `FOLLOWEDBY` or a qualifier was read.
    composite: bool,
}

/// A comparison operator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Neq,
    Order,
    In,
    Like,
    Matches,
    IsSubset,
    IsSuperset,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn at(&self) -> usize {
        self.peek().map_or(self.end, |t| t.at)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token { kind: Kind::Word(w), .. }) if w == word)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.is_word(word);
        if found {
            self.pos += 1;
        }
        found
    }

    fn is(&self, kind: &Kind) -> bool {
        self.peek().is_some_and(|t| &t.kind == kind)
    }

    fn eat(&mut self, kind: &Kind) -> bool {
        let found = self.is(kind);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, kind: &Kind, what: &'static str) -> Result<(), PatternError> {
        if self.eat(kind) {
            Ok(())
        } else {
            Err(syntax(self.at(), what))
        }
    }

    fn enter(&mut self) -> Result<(), PatternError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(PatternError::TooDeep {
                at: self.at(),
                max: MAX_DEPTH,
            });
        }
        Ok(())
    }

    /// observations := or_expr (FOLLOWEDBY or_expr)*
    fn observations(&mut self) -> Result<(), PatternError> {
        self.observation_or()?;
        while self.eat_word("FOLLOWEDBY") {
            self.composite = true;
            self.observation_or()?;
        }
        Ok(())
    }

    fn observation_or(&mut self) -> Result<(), PatternError> {
        self.observation_and()?;
        while self.eat_word("OR") {
            self.observation_and()?;
        }
        Ok(())
    }

    fn observation_and(&mut self) -> Result<(), PatternError> {
        self.observation()?;
        while self.eat_word("AND") {
            self.composite = true;
            self.observation()?;
        }
        Ok(())
    }

    /// observation := ('[' comparisons ']' | '(' observations ')') qualifier*
    fn observation(&mut self) -> Result<(), PatternError> {
        if self.eat(&Kind::LBracket) {
            self.enter()?;
            self.comparison_or()?;
            self.expect(&Kind::RBracket, "expected ']' closing the observation")?;
            self.depth -= 1;
        } else if self.eat(&Kind::LParen) {
            self.enter()?;
            self.observations()?;
            self.expect(&Kind::RParen, "expected ')'")?;
            self.depth -= 1;
        } else {
            return Err(syntax(
                self.at(),
                "expected '[' or '(' opening an observation",
            ));
        }
        loop {
            if self.eat_word("WITHIN") {
                if !(self.eat(&Kind::Int) || self.eat(&Kind::Float)) {
                    return Err(syntax(
                        self.at(),
                        "expected a number of seconds after WITHIN",
                    ));
                }
                if !self.eat_word("SECONDS") {
                    return Err(syntax(self.at(), "expected SECONDS"));
                }
            } else if self.eat_word("REPEATS") {
                self.expect(&Kind::Int, "expected a count after REPEATS")?;
                if !self.eat_word("TIMES") {
                    return Err(syntax(self.at(), "expected TIMES"));
                }
            } else if self.eat_word("START") {
                self.expect(&Kind::Timestamp, "expected a timestamp t'…' after START")?;
                if !self.eat_word("STOP") {
                    return Err(syntax(self.at(), "expected STOP"));
                }
                self.expect(&Kind::Timestamp, "expected a timestamp t'…' after STOP")?;
            } else {
                return Ok(());
            }
            self.composite = true;
        }
    }

    fn comparison_or(&mut self) -> Result<(), PatternError> {
        self.comparison_and()?;
        while self.eat_word("OR") {
            self.comparison_and()?;
        }
        Ok(())
    }

    fn comparison_and(&mut self) -> Result<(), PatternError> {
        self.comparison()?;
        while self.eat_word("AND") {
            self.composite = true;
            self.comparison()?;
        }
        Ok(())
    }

    /// comparison := '(' comparisons ')' | EXISTS path | path NOT? operator literal
    fn comparison(&mut self) -> Result<(), PatternError> {
        if self.eat(&Kind::LParen) {
            self.enter()?;
            self.comparison_or()?;
            self.expect(&Kind::RParen, "expected ')' closing the comparisons")?;
            self.depth -= 1;
            return Ok(());
        }
        let start = self.at();
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(PatternError::TooManyComparisons {
                at: start,
                max: MAX_COMPARISONS,
            });
        }
        if self.eat_word("EXISTS") {
            self.object_path()?;
            self.found.skipped_comparisons += 1;
            return Ok(());
        }
        let address_type = self.object_path()?;
        let negated = self.eat_word("NOT");
        let op = self.operator()?;
        let values = self.operand(op)?;
        match address_type {
            Some(object_type) if !negated && matches!(op, Op::Eq | Op::In | Op::IsSubset) => {
                for (at, value) in values {
                    let Some(value) = value else {
                        // A non-string literal compared to an address matches nothing.
                        self.found.skipped_comparisons += 1;
                        continue;
                    };
                    let prefix = IpPrefix::parse(&value)
                        .filter(|p| p.stix_type() == object_type)
                        .ok_or_else(|| PatternError::Address {
                            at,
                            object_type,
                            value: value.chars().take(64).collect(),
                        })?;
                    if !self.found.prefixes.contains(&prefix) {
                        self.found.prefixes.push(prefix);
                    }
                }
            }
            _ => self.found.skipped_comparisons += 1,
        }
        Ok(())
    }

    /// object_path := type ':' component ('.' component | '[' index ']')*, and whether
    /// it is `ipv4-addr:value` or `ipv6-addr:value` (the object type it names).
    fn object_path(&mut self) -> Result<Option<&'static str>, PatternError> {
        let object_type = match self.peek() {
            Some(Token {
                kind: Kind::Word(w),
                ..
            }) if !KEYWORDS.contains(&w.as_str()) => w.clone(),
            _ => {
                return Err(syntax(
                    self.at(),
                    "expected an object type such as ipv4-addr",
                ));
            }
        };
        self.pos += 1;
        self.expect(&Kind::Colon, "expected ':' after the object type")?;
        let first = self.path_component()?;
        let mut simple = true;
        loop {
            if self.eat(&Kind::Dot) {
                self.path_component()?;
                simple = false;
            } else if self.eat(&Kind::LBracket) {
                if !(self.eat(&Kind::Int) || self.eat(&Kind::Star)) {
                    return Err(syntax(self.at(), "expected an index or '*' in a path"));
                }
                self.expect(&Kind::RBracket, "expected ']' closing the path index")?;
                simple = false;
            } else {
                break;
            }
        }
        let is_value = simple && first.as_deref() == Some("value");
        Ok(match object_type.as_str() {
            "ipv4-addr" if is_value => Some("ipv4-addr"),
            "ipv6-addr" if is_value => Some("ipv6-addr"),
            _ => None,
        })
    }

    /// A property name (a word, or a quoted name); `Some` for a plain word.
    fn path_component(&mut self) -> Result<Option<String>, PatternError> {
        match self.peek().map(|t| &t.kind) {
            Some(Kind::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(Some(w))
            }
            Some(Kind::Str(_)) => {
                self.pos += 1;
                Ok(None)
            }
            _ => Err(syntax(self.at(), "expected a property name")),
        }
    }

    fn operator(&mut self) -> Result<Op, PatternError> {
        let op = match self.peek().map(|t| &t.kind) {
            Some(Kind::Eq) => Op::Eq,
            Some(Kind::Neq) => Op::Neq,
            Some(Kind::Lt | Kind::Le | Kind::Gt | Kind::Ge) => Op::Order,
            Some(Kind::Word(w)) => match w.as_str() {
                "IN" => Op::In,
                "LIKE" => Op::Like,
                "MATCHES" => Op::Matches,
                "ISSUBSET" => Op::IsSubset,
                "ISSUPERSET" => Op::IsSuperset,
                _ => return Err(syntax(self.at(), "expected a comparison operator")),
            },
            _ => return Err(syntax(self.at(), "expected a comparison operator")),
        };
        self.pos += 1;
        Ok(op)
    }

    /// The right-hand side: each literal's offset and, for a string, its value.
    fn operand(&mut self, op: Op) -> Result<Vec<(usize, Option<String>)>, PatternError> {
        match op {
            Op::In => {
                self.expect(&Kind::LParen, "expected '(' opening the set after IN")?;
                let mut values = Vec::new();
                if self.eat(&Kind::RParen) {
                    return Ok(values);
                }
                loop {
                    values.push(self.literal(op)?);
                    if self.eat(&Kind::RParen) {
                        return Ok(values);
                    }
                    self.expect(&Kind::Comma, "expected ',' or ')' in the set")?;
                }
            }
            _ => Ok(vec![self.literal(op)?]),
        }
    }

    fn literal(&mut self, op: Op) -> Result<(usize, Option<String>), PatternError> {
        let at = self.at();
        let value = match self.peek().map(|t| &t.kind) {
            Some(Kind::Str(s)) => Some(s.clone()),
            Some(Kind::Int | Kind::Float | Kind::Hex | Kind::Binary | Kind::Timestamp)
                if !matches!(op, Op::Like | Op::Matches | Op::IsSubset | Op::IsSuperset) =>
            {
                None
            }
            Some(Kind::Word(w))
                if (w == "true" || w == "false") && matches!(op, Op::Eq | Op::Neq | Op::In) =>
            {
                None
            }
            _ => {
                return Err(syntax(
                    at,
                    "expected a literal of a kind this operator takes",
                ));
            }
        };
        self.pos += 1;
        Ok((at, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(pattern: &str) -> Vec<String> {
        read_network_pattern(pattern)
            .map(|n| n.prefixes.iter().map(|p| p.to_string()).collect())
            .unwrap_or_else(|e| vec![format!("error: {e}")])
    }

    #[test]
    fn reads_address_comparisons() {
        assert_eq!(
            prefixes("[ipv4-addr:value = '203.0.113.7']"),
            ["203.0.113.7"]
        );
        assert_eq!(
            prefixes("[ipv6-addr:value = '2001:DB8::1' OR ipv4-addr:value = '198.51.100.0/24']"),
            ["2001:db8::1", "198.51.100.0/24"]
        );
        assert_eq!(
            prefixes(
                "[ipv4-addr:value ISSUBSET '198.51.100.7/24'] OR [ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]"
            ),
            ["198.51.100.0/24", "192.0.2.1", "192.0.2.2"]
        );
        let exact = read_network_pattern(
            "[ipv4-addr:value = '203.0.113.7' OR ipv4-addr:value = '203.0.113.7']",
        );
        assert_eq!(
            exact,
            Ok(NetworkPattern {
                prefixes: IpPrefix::parse("203.0.113.7").into_iter().collect(),
                skipped_comparisons: 0,
                exact: true,
            })
        );
    }

    #[test]
    fn skips_what_is_not_a_positive_address_comparison() {
        let n = read_network_pattern(
            "[ipv4-addr:value != '203.0.113.7' OR ipv4-addr:value NOT = '203.0.113.8' \
             OR domain-name:value = 'example.com' OR file:hashes.'SHA-256' = 'ab' \
             OR ipv4-addr:value MATCHES '^10\\\\.' OR EXISTS ipv4-addr:resolves_to_refs[*].value]",
        );
        assert_eq!(n.as_ref().map(|n| n.prefixes.len()), Ok(0));
        assert_eq!(n.as_ref().map(|n| n.skipped_comparisons), Ok(6));
        assert_eq!(n.map(|n| n.exact), Ok(false));
        // Composite patterns yield their addresses but are not exact.
        for p in [
            "[ipv4-addr:value = '203.0.113.7' AND network-traffic:dst_port = 502]",
            "[ipv4-addr:value = '203.0.113.7'] FOLLOWEDBY [ipv4-addr:value = '203.0.113.8']",
            "[ipv4-addr:value = '203.0.113.7'] REPEATS 5 TIMES WITHIN 60 SECONDS",
            "([ipv4-addr:value = '203.0.113.7']) START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
        ] {
            let n = read_network_pattern(p);
            assert_eq!(n.as_ref().map(|n| !n.prefixes.is_empty()), Ok(true), "{p}");
            assert_eq!(n.map(|n| n.exact), Ok(false), "{p}");
        }
    }

    #[test]
    fn refuses_malformed_patterns_with_the_offset() {
        let offset = |p: &str| read_network_pattern(p).err().map(|e| e.offset());
        assert_eq!(offset("[ipv4-addr:value = '203.0.113.7'"), Some(32));
        assert_eq!(offset("[ipv4-addr:value = '203.0.113.7]"), Some(19));
        assert_eq!(offset("[ipv4-addr:value = '203.0.113.999']"), Some(19));
        assert_eq!(offset("[ipv4-addr:value = '2001:db8::1']"), Some(19));
        assert_eq!(offset("[ipv4-addr:value '1.2.3.4']"), Some(17));
        assert_eq!(offset("ipv4-addr:value = '1.2.3.4'"), Some(0));
        assert_eq!(offset("[a:b = 1] [c:d = 2]"), Some(10));
        assert_eq!(offset("[a:b = 'x\\n']"), Some(9));
        assert_eq!(offset("[a:b LIKE 5]"), Some(10));
        assert_eq!(offset(""), Some(0));
        let deep = format!("{}[a:b = 1]{}", "(".repeat(40), ")".repeat(40));
        assert!(matches!(
            read_network_pattern(&deep),
            Err(PatternError::TooDeep { .. })
        ));
        let long = format!("[a:b = '{}']", "x".repeat(MAX_PATTERN_BYTES));
        assert!(matches!(
            read_network_pattern(&long),
            Err(PatternError::TooLong { .. })
        ));
    }

    #[test]
    fn writes_what_it_reads() {
        let list: Vec<IpPrefix> = ["203.0.113.7", "2001:db8::/32", "198.51.100.0/24"]
            .iter()
            .filter_map(|s| IpPrefix::parse(s))
            .collect();
        let pattern = address_pattern(&list).unwrap_or_default();
        assert_eq!(
            pattern,
            "[ipv4-addr:value = '203.0.113.7' OR ipv6-addr:value = '2001:db8::/32' OR ipv4-addr:value = '198.51.100.0/24']"
        );
        let read = read_network_pattern(&pattern);
        assert_eq!(read.as_ref().map(|n| &n.prefixes), Ok(&list));
        assert_eq!(read.map(|n| n.exact), Ok(true));
        assert_eq!(address_pattern(&[]), None);
    }

    #[test]
    fn prefixes_parse_strictly_and_contain() {
        assert_eq!(IpPrefix::parse("10.0.0.0/033"), None);
        assert_eq!(IpPrefix::parse("10.0.0.0/33"), None);
        assert_eq!(IpPrefix::parse("10.0.0.0/+8"), None);
        assert_eq!(IpPrefix::parse("10.0.0.0/"), None);
        let net = IpPrefix::parse("10.1.2.3/8");
        assert_eq!(net.map(|n| n.to_string()), Some("10.0.0.0/8".to_owned()));
        assert_eq!(
            net.map(|n| n.contains(
                "10.200.0.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            )),
            Some(true)
        );
        assert_eq!(
            IpPrefix::parse("0.0.0.0/0").map(|n| n.prefix_len()),
            Some(0)
        );
    }
}
