//! Errors that name the file, the line, the column and the field of what is wrong.

use std::fmt;

/// A position in a source file, both 1-based. In a CSV file the column is the cell's
/// column (1 is the spreadsheet's column A); in a JSON or TOML file it is the character.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

impl Loc {
    pub fn new(line: usize, column: usize) -> Self {
        Loc { line, column }
    }
}

/// One problem in an imported file: `file:line:column: `field`: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ImportError {
    pub file: String,
    pub at: Option<Loc>,
    /// The column or property as the source names it (`kind`, `properties.commune`,
    /// `deviceProfileName`).
    pub field: Option<String>,
    pub message: String,
}

impl ImportError {
    pub fn new(
        file: impl Into<String>,
        at: Option<Loc>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ImportError {
            file: file.into(),
            at,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    fn render(&self) -> String {
        let mut s = self.file.clone();
        if let Some(at) = self.at {
            s.push_str(&format!(":{}:{}", at.line, at.column));
        }
        s.push_str(": ");
        if let Some(f) = &self.field {
            s.push_str(&format!("`{f}`: "));
        }
        s.push_str(&self.message);
        s
    }
}

/// Every problem found, in the order of the files and their lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ImportErrors(pub Vec<ImportError>);

impl ImportErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn push(&mut self, e: ImportError) {
        self.0.push(e);
    }
    pub fn extend(&mut self, other: impl IntoIterator<Item = ImportError>) {
        self.0.extend(other);
    }
    pub fn iter(&self) -> impl Iterator<Item = &ImportError> {
        self.0.iter()
    }
    /// In the order of the files, then of their lines and columns.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| (&a.file, a.at).cmp(&(&b.file, b.at)));
    }
    /// `Ok(value)` when nothing was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, ImportErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ImportErrors {
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

impl IntoIterator for ImportErrors {
    type Item = ImportError;
    type IntoIter = std::vec::IntoIter<ImportError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
