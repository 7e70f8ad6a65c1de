//! The reflex procedures file (*fiches réflexes*): one checklist per incident category.

use std::collections::HashSet;

use beffroi_core::incident::{Procedure, ProcedureStep};
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile, parse_duration};
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
    steps: Vec<RawStep>,
}

/// A step: its text, or `{ text = "...", within = "10m" }` for a step with a deadline.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawStep {
    Text(String),
    Timed(TimedStep),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimedStep {
    text: String,
    within: Option<String>,
}

impl RawStep {
    fn text(&self) -> &str {
        match self {
            RawStep::Text(t) | RawStep::Timed(TimedStep { text: t, .. }) => t,
        }
    }
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
        if p.steps.is_empty() || p.steps.iter().any(|s| s.text().trim().is_empty()) {
            err(
                "steps",
                format!("procedure `{}` has an empty step list or step", p.category),
            );
            continue;
        }
        let mut steps = Vec::new();
        for (i, s) in p.steps.iter().enumerate() {
            let within = match s {
                RawStep::Timed(TimedStep {
                    within: Some(w), ..
                }) => match parse_duration(w) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        err(&format!("steps[{i}].within"), e);
                        None
                    }
                },
                _ => None,
            };
            steps.push(ProcedureStep {
                text: s.text().into(),
                within,
            });
        }
        out.push(Procedure {
            category: p.category.as_str().into(),
            title: p.title.as_str().into(),
            steps,
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

    #[test]
    fn steps_may_have_a_deadline() {
        let ok = parse(&SourceFile::new(
            "p.toml",
            "[[procedure]]\ncategory = \"flood\"\ntitle = \"Crue\"\nsteps = [\"a\", { text = \"b\", within = \"10m\" }, { text = \"c\" }]\n",
        ))
        .expect("valid");
        let within: Vec<_> = ok[0].steps.iter().map(|s| s.within).collect();
        assert_eq!(
            within,
            [None, Some(beffroi_core::Duration::from_mins(10)), None]
        );
        assert_eq!(&*ok[0].steps[1].text, "b");
        let err = parse(&SourceFile::new(
            "p.toml",
            "[[procedure]]\ncategory = \"flood\"\ntitle = \"Crue\"\nsteps = [{ text = \"b\", within = \"soon\" }]\n",
        ))
        .expect_err("bad duration");
        assert_eq!(err.0[0].line, Some(1));
        assert_eq!(err.0[0].field.as_deref(), Some("steps[0].within"));
    }
}
