//! The reflex procedures file (*fiches réflexes*): one checklist per incident category.

use std::collections::HashSet;

use beffroi_core::incident::Procedure;
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    procedure: Vec<Spanned<Raw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    category: String,
    title: String,
    steps: Vec<String>,
}

/// Parses a procedures file; reports every error with its line.
pub fn parse(src: &SourceFile) -> Result<Vec<Procedure>, ConfigErrors> {
    let file: File = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in &file.procedure {
        let line = Some(src.line(p.span().start));
        let p = p.get_ref();
        let mut err = |field: &str, msg: String| {
            errors.push(ConfigError::new(src.path.clone(), line, Some(field), msg))
        };
        if !seen.insert(p.category.clone()) {
            err(
                "category",
                format!("a procedure for `{}` is already defined", p.category),
            );
            continue;
        }
        if p.steps.is_empty() || p.steps.iter().any(|s| s.trim().is_empty()) {
            err(
                "steps",
                format!("procedure `{}` has an empty step list or step", p.category),
            );
            continue;
        }
        out.push(Procedure {
            category: p.category.as_str().into(),
            title: p.title.as_str().into(),
            steps: p.steps.iter().map(|s| s.as_str().into()).collect(),
        });
    }
    errors.into_result(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports() {
        let ok = parse(&SourceFile::new(
            "p.toml",
            "[[procedure]]\ncategory = \"flood\"\ntitle = \"Crue\"\nsteps = [\"a\", \"b\"]\n",
        ))
        .expect("valid");
        assert_eq!(ok[0].steps.len(), 2);
        let err = parse(&SourceFile::new(
            "p.toml",
            "[[procedure]]\ncategory = \"flood\"\ntitle = \"Crue\"\nsteps = [\"a\"]\n\n[[procedure]]\ncategory = \"flood\"\ntitle = \"x\"\nsteps = [\"a\"]\n",
        ))
        .expect_err("duplicate");
        assert_eq!(err.0[0].line, Some(6));
    }
}
