use std::fmt;
use std::path::Path;

use beffroi_core::Duration;

/// One configuration file, by its display path and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
    /// Byte offsets of line starts, computed on first use (errors are rare, files large).
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
            line_starts: std::sync::OnceLock::new(),
        }
    }

    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(SourceFile::new(path.display().to_string(), text)),
            Err(e) => Err(ConfigError::new(
                path.display().to_string(),
                None,
                None,
                format!("cannot read: {e}"),
            )),
        }
    }

    fn starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
    }

    /// 1-based line of a byte offset in this file (binary search in a line index).
    pub fn line(&self, offset: usize) -> usize {
        match self.starts().binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line(offset);
        let start = self.starts().get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }

    /// Where the value of `key` is written in the table that starts at `table_start`: the
    /// byte offset of the value after `key =`, searched from the table's header to the
    /// next header of an array of tables (so the sub-tables of a `[[rule]]` count as its
    /// own). `None` when the key is not written there (a missing field, a default).
    pub fn key_value_offset(&self, table_start: usize, key: &str) -> Option<usize> {
        let text = self.text.as_str();
        let start = self.starts()[self.line(table_start.min(text.len())) - 1];
        let mut pos = start;
        let mut first = true;
        for line in text.get(start..)?.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if !first && trimmed.starts_with("[[") {
                return None;
            }
            // A sub-table of the entry (`[rule.threshold]`): the key is its last segment.
            if !first
                && let Some(header) = trimmed.strip_prefix('[')
                && let Some((header, _)) = header.split_once(']')
                && header.rsplit('.').next().map(str::trim) == Some(key)
                && let Some(at) = line.rfind(key)
            {
                return Some(pos + at);
            }
            // On the header's own line only an inline table can hold the key.
            let from = if first {
                table_start.saturating_sub(pos).min(line.len())
            } else {
                0
            };
            first = false;
            if let Some(at) = find_key(&line[from..], key) {
                return Some(pos + from + at);
            }
            pos += line.len();
        }
        None
    }
}

/// The offset of the value of `key = value` in one line of TOML (also inside an inline
/// table), ignoring comments and quoted text.
fn find_key(line: &str, key: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None if b == b'#' => return None,
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if bytes[i..].starts_with(key.as_bytes())
                && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'{' | b',' | b'.')) =>
            {
                let rest = &line[i + key.len()..];
                let after = rest.trim_start_matches([' ', '\t']);
                if let Some(value) = after.strip_prefix('=') {
                    let value_at = value.len() - value.trim_start_matches([' ', '\t']).len();
                    return Some(i + key.len() + (rest.len() - after.len()) + 1 + value_at);
                }
            }
            None => {}
        }
        i += 1;
    }
    None
}

/// 1-based line number of a byte offset.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A precise configuration error: `file:line: field: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    /// 1-based column (in characters) of the faulty value, when known.
    pub column: Option<usize>,
    pub field: Option<String>,
    pub message: String,
    /// How many other errors follow from this one and are not reported on their own
    /// (references to what this error kept from loading).
    pub knock_on: usize,
}

impl ConfigError {
    pub fn new(
        file: impl Into<String>,
        line: Option<usize>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            line,
            column: None,
            field: field.map(str::to_string),
            message: message.into(),
            knock_on: 0,
        }
    }

    /// An error at a byte offset of a file: its line and column.
    pub fn at(
        src: &SourceFile,
        offset: usize,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = src.line_col(offset);
        ConfigError {
            column: Some(column),
            ..ConfigError::new(src.path.clone(), Some(line), field, message)
        }
    }

    /// An error about `field` of the table starting at `table_start`: at the field's own
    /// value when it is written there (its last dotted segment is the key), else at the
    /// table's header.
    pub fn in_table(
        src: &SourceFile,
        table_start: usize,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        let key = field.rsplit('.').next().unwrap_or(field);
        let offset = src
            .key_value_offset(table_start, key)
            .unwrap_or(table_start);
        ConfigError::at(src, offset, Some(field), message)
    }

    /// Converts a TOML parse/deserialisation error, keeping its line and column.
    pub fn from_toml(src: &SourceFile, e: &toml::de::Error) -> Self {
        let msg = with_suggestion(e.message().trim());
        match e.span() {
            Some(s) => ConfigError::at(src, s.start, None, msg),
            None => ConfigError::new(src.path.clone(), None, None, msg),
        }
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" gains "did you mean `a`?".
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))
    else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates = expected.split('`').skip(1).step_by(2);
    match did_you_mean(unknown, candidates) {
        Some(s) => format!("{message}; did you mean `{s}`?"),
        None => message.to_string(),
    }
}

/// The candidate closest to `name`, if it is close enough to be what was meant.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= limit && *c != name)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `" (did you mean `x`?)"` when a candidate is close, else nothing.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(name, candidates)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "`{field}`: ")?;
        }
        f.write_str(&self.message)?;
        match self.knock_on {
            0 => Ok(()),
            1 => f.write_str(" (1 more error follows from this one and is not shown)"),
            n => write!(
                f,
                " ({n} more errors follow from this one and are not shown)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// All the errors found in a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }
    /// `Ok(value)` when no error was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Parses a duration such as `90s`, `10m`, `1h30m`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration `{s}`: {e} (write e.g. `90s`, `10m`, `1h30m`)"))?;
    i64::try_from(d.as_millis())
        .map(Duration)
        .map_err(|_| format!("duration `{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_mins(10)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_mins(90)));
        assert!(parse_duration("ten minutes").is_err());
    }

    #[test]
    fn indexed_lines_agree_with_counting() {
        let text = "a\nbc\n\nd";
        let f = SourceFile::new("f", text);
        for off in 0..=text.len() + 2 {
            assert_eq!(f.line(off), line_of_offset(text, off), "offset {off}");
        }
    }

    #[test]
    fn lines() {
        assert_eq!(line_of_offset("a\nb\nc", 0), 1);
        assert_eq!(line_of_offset("a\nb\nc", 2), 2);
        assert_eq!(line_of_offset("a\nb\nc", 99), 3);
    }
}
