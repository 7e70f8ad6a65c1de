//! The NGSI-LD query language (`q`, ETSI GS CIM 009 clause 4.9), read from untrusted
//! input and evaluated against an [`Entity`].
//!
//! Supported:
//! - terms `attr` (the attribute exists), `!attr` (it does not), and
//!   `attr <op> value` with `==`, `!=`, `>`, `>=`, `<`, `<=`, `~=`, `!~=`;
//! - `;` (AND) binds tighter than `|` (OR); parentheses group;
//! - values: numbers, `true`/`false`, strings in double quotes (`\"` and `\\` escape),
//!   date-times (`2026-03-01T08:00:00Z`, bare or quoted), URIs written bare
//!   (`urn:ngsi-ld:Device:t:1`); after `==` and `!=` a list (`1,2,3`: any of them) or a
//!   range (`10..20`, both ends included);
//! - the pattern after `~=` is the subset of [`crate::pattern`];
//! - paths `attr` and `attr.sub`, where the sub-attributes held are `observedAt` and
//!   `unitCode` (any other reads as absent).
//!
//! Not supported, refused with a precise error: compound-value members (`attr[key]`),
//! unquoted text. Semantics: a term on an absent attribute is false (except `!attr`);
//! values of different kinds never compare (so `attr!=5` is false when `attr` is text);
//! on a list value, `==` holds when an element equals, `!=` when none does.
//!
//! Limits: [`MAX_Q_BYTES`] bytes, [`MAX_TERMS`] terms, [`MAX_DEPTH`] nested parentheses.

use std::cmp::Ordering;

use crate::entity::{Attribute, Entity, Value};
use crate::error::NgsiError;
use crate::pattern::Pattern;
use crate::time::Timestamp;

/// The longest `q` read.
pub const MAX_Q_BYTES: usize = 4096;
/// The most terms in one `q`.
pub const MAX_TERMS: usize = 64;
/// The deepest nesting of parentheses.
pub const MAX_DEPTH: usize = 16;
/// The most values in one list (`a==1,2,3`).
pub const MAX_LIST_VALUES: usize = 100;
/// The longest attribute name.
const MAX_NAME_BYTES: usize = 256;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A value written in a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    DateTime(Timestamp),
    /// A URI written without quotes; compares with text and relationship objects.
    Uri(String),
}

/// What a term tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    Exists,
    Absent,
    Compare(Op, Literal),
    /// `==` (not negated) or `!=` (negated) with a list.
    AnyOf {
        negated: bool,
        values: Vec<Literal>,
    },
    /// `==` (not negated) or `!=` (negated) with a range, ends included.
    Range {
        negated: bool,
        low: Literal,
        high: Literal,
    },
    /// `~=` (not negated) or `!~=` (negated).
    Matches {
        negated: bool,
        pattern: Pattern,
    },
}

/// An attribute, or one of its sub-attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    pub attribute: String,
    pub sub: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub path: AttrPath,
    pub test: Test,
}

/// A parsed `q`.
#[derive(Clone, Debug, PartialEq)]
pub enum QExpr {
    Term(Term),
    And(Vec<QExpr>),
    Or(Vec<QExpr>),
}

impl QExpr {
    /// Reads a `q` value; errors name `param` (`q`, or a subscription's member).
    pub fn parse(text: &str, param: &str) -> Result<QExpr, NgsiError> {
        if text.len() > MAX_Q_BYTES {
            return Err(NgsiError::too_complex(
                param,
                format!("longer than {MAX_Q_BYTES} bytes"),
            ));
        }
        let mut parser = Parser {
            src: text.as_bytes(),
            pos: 0,
            depth: 0,
            terms: 0,
            param,
        };
        let expr = parser.or()?;
        if parser.pos != parser.src.len() {
            return Err(parser.error("an operator ';' or '|', or the end"));
        }
        Ok(expr)
    }

    /// Whether the entity satisfies the query.
    pub fn eval(&self, entity: &Entity) -> bool {
        match self {
            QExpr::Term(t) => t.eval(entity),
            QExpr::And(items) => items.iter().all(|e| e.eval(entity)),
            QExpr::Or(items) => items.iter().any(|e| e.eval(entity)),
        }
    }
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    depth: usize,
    terms: usize,
    param: &'a str,
}

impl<'a> Parser<'a> {
    fn error(&self, expected: &str) -> NgsiError {
        let found = match self.src.get(self.pos) {
            Some(_) => {
                let rest = String::from_utf8_lossy(&self.src[self.pos..]);
                format!("{:?}", rest.chars().take(16).collect::<String>())
            }
            None => "the end".to_owned(),
        };
        NgsiError::bad_data(
            self.param,
            format!("expected {expected} at byte {}, found {found}", self.pos),
        )
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn or(&mut self) -> Result<QExpr, NgsiError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            QExpr::Or(items)
        })
    }

    fn and(&mut self) -> Result<QExpr, NgsiError> {
        let mut items = vec![self.factor()?];
        while self.peek() == Some(b';') {
            self.pos += 1;
            items.push(self.factor()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            QExpr::And(items)
        })
    }

    fn factor(&mut self) -> Result<QExpr, NgsiError> {
        if self.peek() == Some(b'(') {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(NgsiError::too_complex(
                    self.param,
                    format!("more than {MAX_DEPTH} nested parentheses"),
                ));
            }
            self.pos += 1;
            let inner = self.or()?;
            if self.peek() != Some(b')') {
                return Err(self.error("')'"));
            }
            self.pos += 1;
            self.depth -= 1;
            return Ok(inner);
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(NgsiError::too_complex(
                self.param,
                format!("more than {MAX_TERMS} terms"),
            ));
        }
        self.term().map(QExpr::Term)
    }

    fn name(&mut self) -> Result<String, NgsiError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("an attribute name (letters, digits, '_')"));
        }
        if self.pos - start > MAX_NAME_BYTES {
            return Err(NgsiError::bad_data(self.param, "attribute name too long"));
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn term(&mut self) -> Result<Term, NgsiError> {
        let absent = self.peek() == Some(b'!');
        if absent {
            self.pos += 1;
        }
        let attribute = self.name()?;
        let sub = if self.peek() == Some(b'.') {
            self.pos += 1;
            Some(self.name()?)
        } else {
            None
        };
        if self.peek() == Some(b'[') {
            return Err(NgsiError::unsupported(
                self.param,
                "compound-value members (attr[key]) are not supported",
            ));
        }
        let path = AttrPath { attribute, sub };
        let op = self.operator();
        if absent {
            return match op {
                None => Ok(Term {
                    path,
                    test: Test::Absent,
                }),
                Some(_) => Err(self.error("no operator after '!attr'")),
            };
        }
        let Some(op) = op else {
            return match self.peek() {
                None | Some(b';' | b'|' | b')') => Ok(Term {
                    path,
                    test: Test::Exists,
                }),
                _ => Err(self.error("an operator (==, !=, >, >=, <, <=, ~=, !~=)")),
            };
        };
        let raw_start = self.pos;
        let raw = self.raw_value()?;
        if raw.is_empty() {
            return Err(self.error("a value"));
        }
        let test = match op {
            RawOp::Match | RawOp::NotMatch => {
                let text = match split_unquoted(raw, b',').as_slice() {
                    [one] => {
                        unquote(one).unwrap_or_else(|| String::from_utf8_lossy(one).into_owned())
                    }
                    _ => return Err(NgsiError::bad_data(self.param, "a pattern is one value")),
                };
                let pattern = Pattern::parse(&text).map_err(|e| {
                    NgsiError::bad_data(self.param, format!("pattern {text:?}: {e}"))
                })?;
                Test::Matches {
                    negated: op == RawOp::NotMatch,
                    pattern,
                }
            }
            RawOp::Cmp(cmp) => {
                let pieces = split_unquoted(raw, b',');
                let negated = cmp == Op::Ne;
                if pieces.len() > 1 {
                    if !matches!(cmp, Op::Eq | Op::Ne) {
                        return Err(NgsiError::bad_data(
                            self.param,
                            "a list of values only follows == or !=",
                        ));
                    }
                    if pieces.len() > MAX_LIST_VALUES {
                        return Err(NgsiError::too_complex(
                            self.param,
                            format!("more than {MAX_LIST_VALUES} values in a list"),
                        ));
                    }
                    let values = pieces
                        .iter()
                        .map(|p| self.literal(p, raw_start))
                        .collect::<Result<Vec<_>, _>>()?;
                    Test::AnyOf { negated, values }
                } else if let Some((low, high)) = split_range(raw) {
                    if !matches!(cmp, Op::Eq | Op::Ne) {
                        return Err(NgsiError::bad_data(
                            self.param,
                            "a range only follows == or !=",
                        ));
                    }
                    let low = self.literal(low, raw_start)?;
                    let high = self.literal(high, raw_start)?;
                    if !matches!(
                        (&low, &high),
                        (Literal::Number(_), Literal::Number(_))
                            | (Literal::DateTime(_), Literal::DateTime(_))
                            | (Literal::Text(_), Literal::Text(_))
                    ) {
                        return Err(NgsiError::bad_data(
                            self.param,
                            "a range has two numbers, two date-times or two strings",
                        ));
                    }
                    Test::Range { negated, low, high }
                } else {
                    Test::Compare(cmp, self.literal(raw, raw_start)?)
                }
            }
        };
        Ok(Term { path, test })
    }

    fn operator(&mut self) -> Option<RawOp> {
        let rest = &self.src[self.pos..];
        let (op, len) = if rest.starts_with(b"==") {
            (RawOp::Cmp(Op::Eq), 2)
        } else if rest.starts_with(b"!~=") {
            (RawOp::NotMatch, 3)
        } else if rest.starts_with(b"!=") {
            (RawOp::Cmp(Op::Ne), 2)
        } else if rest.starts_with(b"~=") {
            (RawOp::Match, 2)
        } else if rest.starts_with(b">=") {
            (RawOp::Cmp(Op::Ge), 2)
        } else if rest.starts_with(b"<=") {
            (RawOp::Cmp(Op::Le), 2)
        } else if rest.starts_with(b">") {
            (RawOp::Cmp(Op::Gt), 1)
        } else if rest.starts_with(b"<") {
            (RawOp::Cmp(Op::Lt), 1)
        } else {
            return None;
        };
        self.pos += len;
        Some(op)
    }

    /// The value's text up to an unquoted `;`, `|` or `)`.
    fn raw_value(&mut self) -> Result<&'a [u8], NgsiError> {
        let start = self.pos;
        let mut quoted = false;
        while let Some(c) = self.peek() {
            match c {
                b'\\' if quoted => self.pos += 1,
                b'"' => quoted = !quoted,
                b';' | b'|' | b')' if !quoted => break,
                _ => {}
            }
            self.pos += 1;
        }
        if quoted || self.pos > self.src.len() {
            self.pos = self.src.len();
            return Err(NgsiError::bad_data(
                self.param,
                format!("unterminated string starting at byte {start}"),
            ));
        }
        let src: &'a [u8] = self.src;
        Ok(&src[start..self.pos])
    }

    fn literal(&self, raw: &[u8], at: usize) -> Result<Literal, NgsiError> {
        if raw.first() == Some(&b'"') {
            let text = unquote(raw).ok_or_else(|| {
                NgsiError::bad_data(
                    self.param,
                    format!("a string near byte {at} is not closed by '\"' alone"),
                )
            })?;
            // A quoted date-time compares as a date-time.
            if let Ok(t) = Timestamp::parse(&text) {
                return Ok(Literal::DateTime(t));
            }
            return Ok(Literal::Text(text));
        }
        let text = std::str::from_utf8(raw).map_err(|_| {
            NgsiError::bad_data(self.param, format!("invalid UTF-8 near byte {at}"))
        })?;
        match text {
            "" => {
                return Err(NgsiError::bad_data(
                    self.param,
                    format!("empty value near byte {at}"),
                ));
            }
            "true" => return Ok(Literal::Bool(true)),
            "false" => return Ok(Literal::Bool(false)),
            _ => {}
        }
        if text
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E'))
            && let Ok(n) = text.parse::<f64>()
            && n.is_finite()
        {
            return Ok(Literal::Number(n));
        }
        if text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return Timestamp::parse(text).map(Literal::DateTime).map_err(|e| {
                NgsiError::bad_data(
                    self.param,
                    format!("{text:?} near byte {at} is neither a number nor a date-time: {e}"),
                )
            });
        }
        if text.contains(':') && !text.bytes().any(|c| c.is_ascii_whitespace() || c == b'"') {
            return Ok(Literal::Uri(text.to_owned()));
        }
        Err(NgsiError::bad_data(
            self.param,
            format!("{text:?} near byte {at}: text values are written in double quotes"),
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RawOp {
    Cmp(Op),
    Match,
    NotMatch,
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(raw: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&raw[start.min(raw.len())..]);
    out
}

/// Splits `low..high` at the first unquoted `..`.
fn split_range(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut quoted = false;
    let mut i = 0;
    while i + 1 < raw.len() {
        match raw[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'.' if !quoted && raw[i + 1] == b'.' => return Some((&raw[..i], &raw[i + 2..])),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The content of `"…"` with `\"` and `\\` unescaped; `None` if not exactly one string.
fn unquote(raw: &[u8]) -> Option<String> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        match inner[i] {
            b'\\' => {
                out.push(*inner.get(i + 1)?);
                i += 2;
            }
            b'"' => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The comparable value at a path of an entity.
enum Target<'a> {
    Value(&'a Value),
    DateTime(Timestamp),
    Text(&'a str),
    /// Present but not comparable (a geometry).
    Opaque,
}

fn lookup<'a>(entity: &'a Entity, path: &AttrPath) -> Option<Target<'a>> {
    let attribute = entity.attributes.get(&path.attribute)?;
    match path.sub.as_deref() {
        None => Some(match attribute {
            Attribute::Property { value, .. } => Target::Value(value),
            Attribute::Relationship { object, .. } => Target::Text(object),
            Attribute::GeoProperty { .. } => Target::Opaque,
        }),
        Some("observedAt") => attribute.observed_at().map(Target::DateTime),
        Some("unitCode") => match attribute {
            Attribute::Property {
                unit_code: Some(code),
                ..
            } => Some(Target::Text(code)),
            _ => None,
        },
        Some(_) => None,
    }
}

impl Term {
    fn eval(&self, entity: &Entity) -> bool {
        let target = lookup(entity, &self.path);
        match &self.test {
            Test::Exists => target.is_some(),
            Test::Absent => target.is_none(),
            _ => target.is_some_and(|t| test_target(&t, &self.test)),
        }
    }
}

fn test_target(target: &Target<'_>, test: &Test) -> bool {
    match target {
        Target::Value(Value::TextList(items)) => {
            let any = |f: &dyn Fn(&str) -> bool| items.iter().any(|s| f(s));
            match test {
                Test::Compare(Op::Eq, lit) => any(&|s| cmp_text(s, lit) == Some(Ordering::Equal)),
                Test::Compare(Op::Ne, lit) => {
                    literal_is_text(lit) && !any(&|s| cmp_text(s, lit) == Some(Ordering::Equal))
                }
                Test::AnyOf { negated, values } => {
                    let hit = values
                        .iter()
                        .any(|lit| any(&|s| cmp_text(s, lit) == Some(Ordering::Equal)));
                    values.iter().all(literal_is_text) && hit != *negated
                }
                Test::Matches { negated, pattern } => any(&|s| pattern.is_match(s)) != *negated,
                _ => false,
            }
        }
        _ => match test {
            Test::Exists | Test::Absent => true,
            Test::Compare(op, lit) => compare(target, lit).is_some_and(|o| op_holds(*op, o)),
            Test::AnyOf { negated, values } => {
                let orders: Vec<Option<Ordering>> =
                    values.iter().map(|lit| compare(target, lit)).collect();
                if orders.iter().any(Option::is_none) {
                    return false;
                }
                orders.contains(&Some(Ordering::Equal)) != *negated
            }
            Test::Range { negated, low, high } => {
                match (compare(target, low), compare(target, high)) {
                    (Some(lo), Some(hi)) => {
                        (lo != Ordering::Less && hi != Ordering::Greater) != *negated
                    }
                    _ => false,
                }
            }
            Test::Matches { negated, pattern } => match target {
                Target::Value(Value::Text(s)) => pattern.is_match(s) != *negated,
                Target::Text(s) => pattern.is_match(s) != *negated,
                _ => false,
            },
        },
    }
}

fn literal_is_text(lit: &Literal) -> bool {
    matches!(lit, Literal::Text(_) | Literal::Uri(_))
}

fn op_holds(op: Op, o: Ordering) -> bool {
    match op {
        Op::Eq => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
    }
}

fn cmp_text(s: &str, lit: &Literal) -> Option<Ordering> {
    match lit {
        Literal::Text(t) | Literal::Uri(t) => Some(s.cmp(t.as_str())),
        _ => None,
    }
}

/// The order of the entity's value against a literal; `None` when they do not compare.
fn compare(target: &Target<'_>, lit: &Literal) -> Option<Ordering> {
    match (target, lit) {
        (Target::Text(s), _) => cmp_text(s, lit),
        (Target::DateTime(t), Literal::DateTime(u)) => Some(t.cmp(u)),
        (Target::Value(v), _) => match (v, lit) {
            (Value::Text(s), _) => cmp_text(s, lit),
            (Value::Integer(i), Literal::Number(n)) => (*i as f64).partial_cmp(n),
            (Value::Number(x), Literal::Number(n)) => x.partial_cmp(n),
            (Value::Bool(b), Literal::Bool(c)) => Some(b.cmp(c)),
            (Value::DateTime(t), Literal::DateTime(u)) => Some(t.cmp(u)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{Geometry, Position};

    fn entity() -> Entity {
        let at = Timestamp::parse("2026-03-01T08:00:00Z").expect("valid");
        Entity::new("urn:ngsi-ld:Device:t:d1", "Device")
            .with("deviceState", Attribute::property(Value::Text("ok".into())))
            .with(
                "batteryLevel",
                Attribute::measure(Value::Number(0.8), at, "C62"),
            )
            .with("peopleCount", Attribute::property(Value::Integer(42)))
            .with("congested", Attribute::property(Value::Bool(false)))
            .with(
                "controlledProperty",
                Attribute::property(Value::TextList(vec![
                    "waterLevel".into(),
                    "waterFlow".into(),
                ])),
            )
            .with(
                "dateLastValueReported",
                Attribute::property(Value::DateTime(at)),
            )
            .with(
                "controlledAsset",
                Attribute::relationship("urn:ngsi-ld:Building:t:s1"),
            )
            .with(
                "location",
                Attribute::geo(Geometry::Point(Position::new(2.0, 48.0).expect("valid"))),
            )
    }

    fn q(text: &str) -> bool {
        QExpr::parse(text, "q")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval(&entity())
    }

    #[test]
    fn comparisons() {
        assert!(q("deviceState==\"ok\""));
        assert!(!q("deviceState!=\"ok\""));
        assert!(q("peopleCount>40;peopleCount<=42"));
        assert!(q("peopleCount==40..50"));
        assert!(!q("peopleCount!=40..50"));
        assert!(q("peopleCount==1,42,7"));
        assert!(q("batteryLevel>=0.5"));
        assert!(q("congested==false"));
        assert!(q("controlledProperty==\"waterLevel\""));
        assert!(!q("controlledProperty==\"temperature\""));
        assert!(q("controlledProperty!=\"temperature\""));
        assert!(q("dateLastValueReported>2026-02-28T00:00:00Z"));
        assert!(q("dateLastValueReported==\"2026-03-01T08:00:00Z\""));
        assert!(q("controlledAsset==urn:ngsi-ld:Building:t:s1"));
        assert!(q("controlledAsset~=\"^urn:ngsi-ld:Building:.*\""));
        assert!(q("batteryLevel.unitCode==\"C62\""));
        assert!(q("batteryLevel.observedAt>=2026-03-01T08:00:00Z"));
        assert!(q("location"));
        assert!(q("!missing"));
        assert!(!q("missing==1"));
        assert!(!q("deviceState>3"), "kinds do not compare");
        assert!(!q("deviceState!=3"), "kinds do not compare, even for !=");
    }

    #[test]
    fn logic_and_precedence() {
        assert!(q("peopleCount==1|deviceState==\"ok\";congested==false"));
        assert!(!q("(peopleCount==1|deviceState==\"ok\");congested==true"));
        assert!(
            q("deviceState==\"a;b\"|peopleCount==42"),
            "separators inside quotes"
        );
    }

    #[test]
    fn precise_errors() {
        let err = |t: &str| QExpr::parse(t, "q").expect_err(t);
        assert!(err("deviceState==ok").detail.contains("double quotes"));
        assert!(err("a==\"x").detail.contains("unterminated"));
        assert!(err("a>1,2").detail.contains("list"));
        assert_eq!(err("a[b]==1").status(), 422);
        assert_eq!(err(&"(".repeat(40)).status(), 403);
        assert_eq!(err(&vec!["a==1"; 100].join(";")).status(), 403);
        assert!(err("a==1)").detail.contains("byte 4"));
        assert!(err("==1").detail.starts_with("q:"));
    }
}
