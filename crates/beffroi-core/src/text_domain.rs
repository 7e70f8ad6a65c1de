//! What a technical text field may hold: free text, one of a closed list of values, or the
//! values of an anchored pattern of bounded length (`values` or `pattern` in the kinds
//! file; ADR 0026, `docs/adr/0026-technical-text-by-enumeration-or-pattern.md`).
//!
//! A status, a fault code or a firmware version is not prose: declared as an enumeration
//! or a pattern, anything else sent in it (a phone number, a name, a sentence) is refused
//! at ingest instead of being scrubbed and kept. Free text stays possible, scrubbed as
//! before, and `beffroi check` points at it.

use std::sync::Arc;

/// The longest value a pattern may match, in bytes (and the longest enumerated value).
pub const MAX_DECLARED_TEXT: usize = 64;
/// The most values an enumeration may list.
pub const MAX_VALUES: usize = 256;

/// The values a technical text field admits.
#[derive(Clone, Debug, Default)]
pub enum TextDomain {
    /// Any text (bounded by the wire's own limit): scrubbed of identifiers at ingest.
    #[default]
    Free,
    /// One of these values, exactly as written (`values = [...]`).
    Values(Arc<[Arc<str>]>),
    /// A whole value matching this pattern (`pattern = "..."`).
    Pattern(TextPattern),
}

impl TextDomain {
    /// Whether `s` is one of the field's declared values (always true for free text).
    pub fn admits(&self, s: &str) -> bool {
        match self {
            TextDomain::Free => true,
            TextDomain::Values(v) => v.iter().any(|x| &**x == s),
            TextDomain::Pattern(p) => p.is_match(s),
        }
    }

    pub fn is_free(&self) -> bool {
        matches!(self, TextDomain::Free)
    }

    /// `"values"`, `"pattern"` or `"free"`: how the field is declared, for messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            TextDomain::Free => "free",
            TextDomain::Values(_) => "values",
            TextDomain::Pattern(_) => "pattern",
        }
    }

    /// An enumeration, checked: 1 to [`MAX_VALUES`] distinct values of 1 to
    /// [`MAX_DECLARED_TEXT`] bytes, printable, without surrounding spaces.
    pub fn values<I, S>(values: I) -> Result<TextDomain, DomainError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<Arc<str>> = Vec::new();
        for v in values {
            let v = v.as_ref();
            if v.is_empty() || v.len() > MAX_DECLARED_TEXT {
                return Err(DomainError::ValueLength(out.len()));
            }
            if v.trim() != v || v.chars().any(char::is_control) {
                return Err(DomainError::ValueSpaces(out.len()));
            }
            if out.iter().any(|x| &**x == v) {
                return Err(DomainError::Duplicate(out.len()));
            }
            out.push(v.into());
            if out.len() > MAX_VALUES {
                return Err(DomainError::TooManyValues);
            }
        }
        if out.is_empty() {
            return Err(DomainError::NoValues);
        }
        Ok(TextDomain::Values(out.into()))
    }
}

/// Why an enumeration or a pattern is refused at load.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("`values` lists no value")]
    NoValues,
    #[error("`values` lists more than {MAX_VALUES} values")]
    TooManyValues,
    #[error("value #{0} of `values` is empty or longer than {MAX_DECLARED_TEXT} bytes")]
    ValueLength(usize),
    #[error("value #{0} of `values` has surrounding spaces or control characters")]
    ValueSpaces(usize),
    #[error("value #{0} of `values` is listed twice")]
    Duplicate(usize),
    #[error("`pattern` is not a regular expression: {0}")]
    Syntax(String),
    #[error(
        "`pattern` matches text of any length (a `*`, `+` or `{{n,}}`): bound every repetition \
         (`[0-9]{{1,4}}`) so that it matches {MAX_DECLARED_TEXT} bytes at most"
    )]
    Unbounded,
    #[error(
        "`pattern` matches up to {0} bytes: {MAX_DECLARED_TEXT} at most (a declared value is \
         a code, not a sentence)"
    )]
    TooLong(usize),
    #[error("`pattern` matches the empty text")]
    MatchesEmpty,
}

/// An anchored pattern: it must match the whole value, and no value it matches is longer
/// than [`MAX_DECLARED_TEXT`] bytes.
#[derive(Clone, Debug)]
pub struct TextPattern {
    source: Arc<str>,
    re: regex::Regex,
}

impl TextPattern {
    /// Compiles `source` anchored at both ends (`^` and `$` are implied; writing them is
    /// harmless). Refused when it does not parse, when a repetition is unbounded, when it
    /// could match more than [`MAX_DECLARED_TEXT`] bytes, or when it matches empty text.
    pub fn new(source: &str) -> Result<TextPattern, DomainError> {
        let anchored = format!(r"\A(?:{source})\z");
        // Parsed first on its own, so that a source like `a)|(b` is a syntax error rather
        // than an escape from the anchors.
        regex_syntax::Parser::new()
            .parse(source)
            .map_err(|e| DomainError::Syntax(first_line(&e.to_string())))?;
        let hir = regex_syntax::Parser::new()
            .parse(&anchored)
            .map_err(|e| DomainError::Syntax(first_line(&e.to_string())))?;
        match hir.properties().maximum_len() {
            None => return Err(DomainError::Unbounded),
            Some(n) if n > MAX_DECLARED_TEXT => return Err(DomainError::TooLong(n)),
            Some(_) => {}
        }
        let re = regex::RegexBuilder::new(&anchored)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| DomainError::Syntax(first_line(&e.to_string())))?;
        if re.is_match("") {
            return Err(DomainError::MatchesEmpty);
        }
        Ok(TextPattern {
            source: source.into(),
            re,
        })
    }

    /// The pattern as written in the kinds file.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        s.len() <= MAX_DECLARED_TEXT && self.re.is_match(s)
    }
}

/// The regex crates' errors span several lines (the pattern, a caret, the message): the
/// last non-empty line says what is wrong.
fn first_line(s: &str) -> String {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(s)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_whole_values_only() {
        let p = TextPattern::new(r"[0-9]{1,3}(\.[0-9]{1,4}){1,3}(-[a-z0-9]{1,16})?").expect("ok");
        assert!(p.is_match("4.2.1"));
        assert!(p.is_match("4.2.1-mirai"));
        assert!(!p.is_match("version 4.2.1"), "anchored at the start");
        assert!(!p.is_match("4.2.1 call 0612345678"), "anchored at the end");
        assert!(!p.is_match("4.2.1\n"), "no trailing newline through `$`");
        let p = TextPattern::new("^E[0-9]{3}$").expect("explicit anchors are harmless");
        assert!(p.is_match("E042") && !p.is_match("E0421"));
        // An alternation cannot escape the anchors.
        let p = TextPattern::new("ok|E[0-9]{2}").expect("ok");
        assert!(p.is_match("ok") && p.is_match("E12"));
        assert!(!p.is_match("ok, call 06 12 34 56 78") && !p.is_match("xE12"));
    }

    #[test]
    fn a_pattern_is_bounded_and_parses() {
        assert_eq!(
            TextPattern::new("[A-Z]+").err(),
            Some(DomainError::Unbounded)
        );
        assert_eq!(TextPattern::new(".*").err(), Some(DomainError::Unbounded));
        assert_eq!(
            TextPattern::new("[a-z]{1,100}").err(),
            Some(DomainError::TooLong(100))
        );
        assert!(matches!(
            TextPattern::new("(ab").err(),
            Some(DomainError::Syntax(_))
        ));
        assert!(matches!(
            TextPattern::new("a)|(b").err(),
            Some(DomainError::Syntax(_))
        ));
        assert_eq!(
            TextPattern::new("[0-9]{0,4}").err(),
            Some(DomainError::MatchesEmpty)
        );
    }

    #[test]
    fn an_enumeration_is_checked() {
        let d = TextDomain::values(["ok", "fault"]).expect("ok");
        assert!(d.admits("ok") && d.admits("fault"));
        assert!(!d.admits("OK") && !d.admits("ok ") && !d.admits("fault, 0612345678"));
        assert_eq!(
            TextDomain::values(Vec::<&str>::new()).err(),
            Some(DomainError::NoValues)
        );
        assert_eq!(
            TextDomain::values(["ok", "ok"]).err(),
            Some(DomainError::Duplicate(1))
        );
        assert_eq!(
            TextDomain::values(["ok", " x"]).err(),
            Some(DomainError::ValueSpaces(1))
        );
        assert_eq!(
            TextDomain::values([""]).err(),
            Some(DomainError::ValueLength(0))
        );
        assert!(TextDomain::Free.admits("anything at all"));
    }
}
