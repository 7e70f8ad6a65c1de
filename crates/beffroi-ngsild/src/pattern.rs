//! The regular-expression subset read for `idPattern` and the `~=` query operator.
//!
//! NGSI-LD names POSIX extended regular expressions; a full engine on untrusted input
//! is a denial-of-service risk and a dependency. This reader keeps the subset that
//! entity identifiers need, matched without backtracking blow-up:
//!
//! - a literal character, or an escaped metacharacter (`\.`, `\*`, `\\`…);
//! - `.`, any one character;
//! - `.*`, any run of characters;
//! - `^` at the very start and `$` at the very end, anchoring the match (without them
//!   the pattern may match anywhere, as a regular-expression search does).
//!
//! Anything else (`[`, `(`, `|`, `+`, `?`, `{`, a `*` not after `.`) is refused with a
//! message saying what is supported. Matching is the classic wildcard algorithm: at
//! most `pattern length × text length` steps, both bounded ([`MAX_PATTERN_CHARS`]).

use std::fmt;

/// The longest pattern read, in characters.
pub const MAX_PATTERN_CHARS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    AnyOne,
    AnyRun,
}

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{reason} at character {at} (supported: literals, \\-escapes, '.', '.*', '^' first, '$' last)"
)]
pub struct PatternError {
    pub at: usize,
    pub reason: &'static str,
}

impl Pattern {
    pub fn parse(source: &str) -> Result<Pattern, PatternError> {
        let chars: Vec<char> = source.chars().collect();
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(PatternError {
                at: MAX_PATTERN_CHARS,
                reason: "pattern too long",
            });
        }
        let mut tokens = Vec::with_capacity(chars.len() + 2);
        let mut i = 0;
        if chars.first() == Some(&'^') {
            i = 1;
        } else {
            tokens.push(Token::AnyRun);
        }
        let mut anchored_end = false;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '\\' => {
                    let next = chars.get(i + 1).copied().ok_or(PatternError {
                        at: i,
                        reason: "a '\\' ends the pattern",
                    })?;
                    if next.is_ascii_alphanumeric() {
                        return Err(PatternError {
                            at: i,
                            reason: "escape classes (\\d, \\w…) are not supported",
                        });
                    }
                    tokens.push(Token::Char(next));
                    i += 2;
                    continue;
                }
                '.' if chars.get(i + 1) == Some(&'*') => {
                    tokens.push(Token::AnyRun);
                    i += 2;
                    continue;
                }
                '.' => tokens.push(Token::AnyOne),
                '$' if i + 1 == chars.len() => anchored_end = true,
                '^' | '$' => {
                    return Err(PatternError {
                        at: i,
                        reason: "anchors only at the start ('^') or the end ('$')",
                    });
                }
                '[' | ']' | '(' | ')' | '|' | '+' | '?' | '{' | '}' | '*' => {
                    return Err(PatternError {
                        at: i,
                        reason: "unsupported regular-expression syntax",
                    });
                }
                other => tokens.push(Token::Char(other)),
            }
            i += 1;
        }
        if !anchored_end {
            tokens.push(Token::AnyRun);
        }
        tokens.dedup_by(|a, b| *a == Token::AnyRun && *b == Token::AnyRun);
        Ok(Pattern {
            source: source.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches (wildcard matching with one backtrack point).
    pub fn is_match(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let p = &self.tokens;
        let (mut ti, mut pi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            match p.get(pi) {
                Some(Token::AnyRun) => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(Token::AnyOne) => {
                    pi += 1;
                    ti += 1;
                }
                Some(Token::Char(c)) if *c == text[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|t| *t == Token::AnyRun)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).expect("supported").is_match(t)
    }

    #[test]
    fn subset() {
        assert!(m("^urn:ngsi-ld:Device:.*", "urn:ngsi-ld:Device:t:1"));
        assert!(!m("^urn:ngsi-ld:Device:.*", "x-urn:ngsi-ld:Device:t:1"));
        assert!(m("Device", "urn:ngsi-ld:Device:t:1"), "unanchored search");
        assert!(m("^a.c$", "abc"));
        assert!(!m("^a.c$", "abcd"));
        assert!(m("^a\\.c$", "a.c"));
        assert!(!m("^a\\.c$", "abc"));
        assert!(m(".*", ""));
        assert!(m("^$", ""));
        assert!(m("^.*:1$", "urn:ngsi-ld:Device:t:1"));
        assert!(!m("^.*:1$", "urn:ngsi-ld:Device:t:12"));
    }

    #[test]
    fn refuses_the_rest() {
        for p in ["[a-z]", "a|b", "a+", "(a)", "a*", "\\d", "a^b", "x$y", "\\"] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
    }
}
