//! Reading a configuration file so that every mistake in it is reported in one run.
//!
//! `toml::from_str` stops at the first syntax error, and one entry of the wrong shape
//! fails the whole file. Here the parser recovers from syntax errors, and each entry of
//! an array of tables (`[[device]]`, `[[rule]]`…) is read on its own: a wrong type in one
//! device is reported at its field, and the other devices are still read and checked.

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::error::{ConfigError, ConfigErrors, SourceFile};

/// A parsed document: what could be read of it, the syntax errors already reported.
pub struct TomlDoc<'a> {
    src: &'a SourceFile,
    root: Spanned<DeTable<'a>>,
    /// Each syntax error: its offset in the file and its index among the errors.
    syntax: Vec<(usize, usize)>,
}

impl<'a> TomlDoc<'a> {
    /// Parses `src`, recovering from syntax errors (each one goes to `errors`).
    pub fn parse(src: &'a SourceFile, errors: &mut ConfigErrors) -> TomlDoc<'a> {
        let (root, syntax) = DeTable::parse_recoverable(&src.text);
        let syntax = syntax
            .iter()
            .map(|e| {
                errors.push(ConfigError::from_toml(src, e));
                (e.span().map_or(0, |s| s.start), errors.len() - 1)
            })
            .collect();
        TomlDoc { src, root, syntax }
    }

    /// Folds the knock-on errors of a syntax error in one entry: the parser's further
    /// complaints in the same entry are counted under the first, whose index among the
    /// errors is returned (`None`: the entry has no syntax error).
    fn fold_syntax(
        &mut self,
        span: std::ops::Range<usize>,
        errors: &mut ConfigErrors,
    ) -> Option<usize> {
        // The first in the text is the cause.
        let mut inside: Vec<(usize, usize)> = self
            .syntax
            .iter()
            .filter(|(at, _)| span.contains(at))
            .copied()
            .collect();
        inside.sort_unstable();
        let (&(_, first), rest) = inside.split_first()?;
        let mut rest: Vec<usize> = rest.iter().map(|(_, i)| *i).collect();
        rest.sort_unstable();
        for &i in rest.iter().rev() {
            errors.0.remove(i);
        }
        let first = first - rest.iter().filter(|&&r| r < first).count();
        self.syntax.retain(|(_, j)| !rest.contains(j));
        for (_, j) in &mut self.syntax {
            *j -= rest.iter().filter(|&&r| r < *j).count();
        }
        if let Some(e) = errors.0.get_mut(first) {
            e.knock_on += rest.len();
        }
        Some(first)
    }

    fn get(&self, key: &str) -> Option<&Spanned<DeValue<'a>>> {
        self.root.get_ref().get(key)
    }

    /// Each entry of the array of tables `key`, read on its own: the entries that have the
    /// expected shape, with their spans; the others reported at the faulty field.
    pub fn entries<T: DeserializeOwned>(
        &mut self,
        key: &str,
        errors: &mut ConfigErrors,
    ) -> Vec<Spanned<T>> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let Some(items) = value.get_ref().as_array() else {
            errors.push(ConfigError::at(
                self.src,
                value.span().start,
                Some(key),
                format!("expected an array of tables (`[[{key}]]`)"),
            ));
            return Vec::new();
        };
        let mut read_ok = Vec::new();
        let mut failed = Vec::new();
        for item in items.iter() {
            match read::<T>(item) {
                Ok(t) => read_ok.push(Spanned::new(item.span(), t)),
                Err(e) => failed.push((item.span(), self.entry_error(key, item, &e))),
            }
        }
        // An entry's region runs from its header to the next entry's (a recovered entry's
        // span may stop short of the line that broke it).
        let starts: Vec<_> = items.iter().map(|i| i.span()).collect();
        for (n, span) in starts.iter().enumerate() {
            let end = starts
                .get(n + 1)
                .map_or(self.src.text.len() + 1, |next| next.start);
            let broken = self.fold_syntax(span.start..end, errors);
            if let Some(pos) = failed.iter().position(|(s, _)| s == span) {
                let (_, e) = failed.remove(pos);
                match broken.and_then(|i| errors.0.get_mut(i)) {
                    // The entry's shape follows from its syntax error.
                    Some(first) => first.knock_on += 1,
                    None => errors.push(e),
                }
            }
        }
        read_ok
    }

    /// The table or value `key`, if present and of the expected shape.
    pub fn value<T: DeserializeOwned>(&self, key: &str, errors: &mut ConfigErrors) -> Option<T> {
        let item = self.get(key)?;
        read::<T>(item)
            .map_err(|e| errors.push(self.entry_error(key, item, &e)))
            .ok()
    }

    /// Reports a missing required table.
    pub fn require(&self, key: &str, errors: &mut ConfigErrors) -> bool {
        let present = self.get(key).is_some();
        if !present {
            errors.push(ConfigError::new(
                self.src.path.clone(),
                None,
                Some(key),
                format!("missing `[{key}]`"),
            ));
        }
        present
    }

    /// Reports every top-level key that is not one of `known`.
    pub fn only(&self, known: &[&str], errors: &mut ConfigErrors) {
        for (k, _) in self.root.get_ref().iter() {
            if !known.contains(&k.get_ref().as_ref()) {
                let hint = crate::error::suggestion(k.get_ref(), known.iter().copied());
                errors.push(ConfigError::at(
                    self.src,
                    k.span().start,
                    Some(k.get_ref()),
                    format!(
                        "unknown table `{}` (expected {}){hint}",
                        k.get_ref(),
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }

    /// A deserialisation error of one entry, named by the key whose value holds it.
    fn entry_error(
        &self,
        key: &str,
        item: &Spanned<DeValue<'a>>,
        e: &toml::de::Error,
    ) -> ConfigError {
        let at = e.span().map_or(item.span().start, |s| s.start);
        let field = item
            .get_ref()
            .as_table()
            .and_then(|t| {
                t.iter().find(|(k, v)| {
                    let (ks, vs) = (k.span(), v.span());
                    (ks.start <= at && at < ks.end)
                        || (vs.start <= at && at < vs.end.max(vs.start + 1))
                })
            })
            .map(|(k, _)| format!("{key}.{}", k.get_ref()))
            .or_else(|| missing_field(e.message()).map(|f| format!("{key}.{f}")))
            .unwrap_or_else(|| key.to_string());
        let mut err = ConfigError::from_toml(self.src, e);
        if e.span().is_none() {
            let (line, column) = self.src.line_col(at);
            err.line = Some(line);
            err.column = Some(column);
        }
        err.field = Some(field);
        err
    }
}

/// serde's "missing field `x`": the field's name.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn read<T: DeserializeOwned>(item: &Spanned<DeValue<'_>>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(item.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Dev {
        id: String,
        kind: String,
        #[serde(default)]
        position: Option<[f64; 2]>,
    }

    fn read_all(text: &str) -> (Vec<String>, Vec<String>) {
        let src = SourceFile::new("devices/a.toml", text);
        let mut errors = ConfigErrors::default();
        let mut doc = TomlDoc::parse(&src, &mut errors);
        doc.only(&["device"], &mut errors);
        let ok = doc
            .entries::<Dev>("device", &mut errors)
            .into_iter()
            .map(|d| d.into_inner().id)
            .collect();
        (ok, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_wrong_type_is_reported_at_its_field_and_the_other_entries_are_read() {
        let text = "[[device]]\nid = \"a\"\nkind = \"k\"\n\n[[device]]\nid = \"b\"\nkind = \"k\"\nposition = \"here\"\n\n[[device]]\nid = \"c\"\nkind = \"k\"\n";
        let (ok, errors) = read_all(text);
        assert_eq!(ok, ["a", "c"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("devices/a.toml:8:12: `device.position`: "),
            "{errors:?}"
        );
    }

    #[test]
    fn missing_and_unknown_fields_name_the_field() {
        let text =
            "[[device]]\nid = \"a\"\n\n[[device]]\nid = \"b\"\nkind = \"k\"\nkindd = \"x\"\n";
        let (ok, errors) = read_all(text);
        assert!(ok.is_empty());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("`device.kind`: missing field `kind`"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("devices/a.toml:7:1: `device.kindd`"),
            "{errors:?}"
        );
        assert!(errors[1].contains("did you mean `kind`?"), "{errors:?}");
    }

    #[test]
    fn syntax_errors_do_not_stop_the_file() {
        let text = "[[device]]\nid = \"a\"\nkind = \"k\n\n[[device]]\nid = \"b\"\nkind = \"k\"\n\n[[devise]]\nid = \"c\"\nkind = \"k\"\n";
        let (ok, errors) = read_all(text);
        assert!(ok.contains(&"b".to_string()), "{ok:?} {errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("devices/a.toml:3:")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("devices/a.toml:9:3:")
                    && e.contains("did you mean `device`?")),
            "{errors:?}"
        );
    }
}
