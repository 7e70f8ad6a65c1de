//! The situations file (`situations.toml`): which incidents belong to one real event.
//!
//! ```toml
//! [[family]]
//! id = "flood"
//! categories = ["flood"]                  # incidents of these categories…
//! rules = ["gauge-silent"]                # …and of these rules belong to the family
//! within = "river"                        # site | zone | commune | river | radius | territory
//! window = "2h"                           # after the latest incident of the situation
//! # radius_m = 1500                       # with within = "radius"
//! ```
//!
//! Every error is reported with its file, line and field, like the other loaders; names of
//! rules and categories are checked against the rules file.

use std::collections::HashSet;
use std::sync::Arc;

use beffroi_core::situation::{Family, Neighbourhood};
use beffroi_rules::RuleSet;
use beffroi_territory::{ConfigError, ConfigErrors, SourceFile, parse_duration};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    family: Vec<Spanned<Raw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: String,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    site_kinds: Vec<String>,
    within: String,
    window: String,
    radius_m: Option<f64>,
}

/// The longest window a family may declare: beyond a day, two incidents are not one event.
const MAX_WINDOW_MS: i64 = 24 * 3_600_000;

/// Parses a situations file. `rules` gives the known rule ids and categories; the rules of
/// the device sentinel (`cyber-silence`, `cyber-flood`…) are known as well.
pub fn parse(src: &SourceFile, rules: &RuleSet) -> Result<Vec<Family>, ConfigErrors> {
    let file: File = toml::from_str(&src.text).map_err(|e| ConfigError::from_toml(src, &e))?;
    let mut errors = ConfigErrors::default();
    let mut seen_ids = HashSet::new();
    let mut claimed: HashSet<String> = HashSet::new();
    let known_rules: HashSet<&str> = rules.rules.iter().map(|r| &*r.id).collect();
    let mut known_categories: HashSet<&str> = rules.rules.iter().map(|r| &*r.category).collect();
    known_categories.insert(beffroi_core::visibility::CYBER);
    let mut out = Vec::new();
    for f in &file.family {
        let line = Some(src.line(f.span().start));
        let f = f.get_ref();
        let mut err = |field: &str, msg: String| {
            errors.push(ConfigError::new(src.path.clone(), line, Some(field), msg))
        };
        if f.id.trim().is_empty() || !seen_ids.insert(f.id.clone()) {
            err(
                "id",
                format!("family id `{}` is empty or already defined", f.id),
            );
            continue;
        }
        if f.categories.is_empty() && f.rules.is_empty() {
            err(
                "categories",
                format!("family `{}` names no category and no rule", f.id),
            );
            continue;
        }
        let mut ok = true;
        for c in &f.categories {
            if !known_categories.contains(c.as_str()) {
                err(
                    "categories",
                    format!("family `{}`: no rule raises category `{c}`", f.id),
                );
                ok = false;
            } else if !claimed.insert(format!("category:{c}")) {
                err(
                    "categories",
                    format!(
                        "family `{}`: category `{c}` already belongs to a family",
                        f.id
                    ),
                );
                ok = false;
            }
        }
        for r in &f.rules {
            if !known_rules.contains(r.as_str())
                && beffroi_sentinel::Anomaly::from_rule_id(r).is_none()
            {
                err("rules", format!("family `{}`: unknown rule `{r}`", f.id));
                ok = false;
            } else if !claimed.insert(format!("rule:{r}")) {
                err(
                    "rules",
                    format!("family `{}`: rule `{r}` already belongs to a family", f.id),
                );
                ok = false;
            }
        }
        let mut site_kinds = Vec::new();
        for k in &f.site_kinds {
            match beffroi_core::SiteKind::parse_built_in(k) {
                Some(k) => site_kinds.push(k),
                None => {
                    err(
                        "site_kinds",
                        format!("family `{}`: unknown site kind `{k}`", f.id),
                    );
                    ok = false;
                }
            }
        }
        let within = match (f.within.as_str(), f.radius_m) {
            ("site", None) => Neighbourhood::Site,
            ("zone", None) => Neighbourhood::Zone,
            ("commune", None) => Neighbourhood::Commune,
            ("river", None) => Neighbourhood::River,
            ("territory", None) => Neighbourhood::Territory,
            ("radius", Some(m)) if m.is_finite() && m > 0.0 && m <= 100_000.0 => {
                Neighbourhood::Radius(m)
            }
            ("radius", _) => {
                err(
                    "radius_m",
                    format!(
                        "family `{}`: within = \"radius\" needs radius_m, in metres, \
                         above 0 and at most 100000",
                        f.id
                    ),
                );
                continue;
            }
            ("site" | "zone" | "commune" | "river" | "territory", Some(_)) => {
                err(
                    "radius_m",
                    format!(
                        "family `{}`: radius_m is only read with within = \"radius\"",
                        f.id
                    ),
                );
                continue;
            }
            (other, _) => {
                err(
                    "within",
                    format!(
                        "family `{}`: unknown neighbourhood `{other}` (site, zone, commune, \
                         river, radius or territory)",
                        f.id
                    ),
                );
                continue;
            }
        };
        let window = match parse_duration(&f.window) {
            Ok(w) if w.millis() > 0 && w.millis() <= MAX_WINDOW_MS => w,
            Ok(_) => {
                err(
                    "window",
                    format!("family `{}`: window must be above 0 and at most 1d", f.id),
                );
                continue;
            }
            Err(e) => {
                err("window", format!("family `{}`: {e}", f.id));
                continue;
            }
        };
        if !ok {
            continue;
        }
        out.push(Family {
            id: f.id.as_str().into(),
            categories: f.categories.iter().map(|c| Arc::from(c.as_str())).collect(),
            rules: f.rules.iter().map(|r| Arc::from(r.as_str())).collect(),
            site_kinds,
            within,
            window,
        });
    }
    errors.into_result(out)
}
