//! Site kinds a deployment declares in its kinds file, beside the nine built-in ones:
//!
//! ```toml
//! [[site_kind]]
//! id = "water_tower"
//! label = { fr = "Château d'eau", en = "Water tower" }
//! ```
//!
//! Read before the sites, so that `sites.geojson` may use them. The kinds file's syntax
//! errors are reported once, by the device kinds' reader.

use beffroi_core::{SiteKindDecl, Territory};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, ConfigErrors, SourceFile};
use crate::load::valid_id;
use crate::prohibited::prohibited_label;

/// The kinds file as this reader sees it: only its `[[site_kind]]` tables.
#[derive(Deserialize)]
struct SiteKindsFile {
    #[serde(default)]
    site_kind: Vec<Spanned<SiteKindRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteKindRaw {
    id: String,
    label: Labels,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Labels {
    fr: String,
    en: String,
}

/// Declares the `[[site_kind]]` tables of the kinds file `src` on `t`.
pub(crate) fn load_site_kinds(src: &SourceFile, t: &mut Territory, errors: &mut ConfigErrors) {
    let parsed = match toml::from_str::<SiteKindsFile>(&src.text) {
        Ok(p) => p,
        Err(e) => {
            // A syntax error of the file is reported by the device kinds' reader; a
            // malformed `[[site_kind]]` table in a file that parses is reported here.
            if toml::from_str::<toml::Table>(&src.text).is_ok() {
                errors.push(ConfigError::from_toml(src, &e));
            }
            return;
        }
    };
    for k in &parsed.site_kind {
        let at = k.span().start;
        let k = k.get_ref();
        let mut err =
            |field: &str, msg: String| errors.push(ConfigError::in_table(src, at, field, msg));
        if !valid_id(&k.id) {
            err(
                "site_kind.id",
                format!(
                    "invalid id `{}` (lowercase letters, digits, '-', '_', '.')",
                    k.id
                ),
            );
            continue;
        }
        let mut refused = false;
        for label in [&k.label.fr, &k.label.en] {
            if label.trim().is_empty() {
                err(
                    "site_kind.label",
                    format!("site kind `{}`: empty label", k.id),
                );
                refused = true;
            } else if let Some(p) = prohibited_label(label) {
                err(
                    "site_kind.label",
                    format!("label `{label}`: {}", p.reason()),
                );
                refused = true;
            }
        }
        if refused {
            continue;
        }
        if let Err(e) = t.add_site_kind(SiteKindDecl {
            id: k.id.as_str().into(),
            label: k.label.fr.trim().into(),
            label_en: k.label.en.trim().into(),
        }) {
            err("site_kind.id", e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load;

    const TERRITORY: &str = "[territory]\nid = \"t\"\nname = \"T\"\n\n[[commune]]\nid = \"c1\"\nname = \"C\"\nposition = [5.0, 47.0]\n";
    const KIND: &str = "[[kind]]\nid = \"level\"\nlabel = \"L\"\n[[kind.field]]\nname = \"level_m\"\ntype = \"number\"\ncategory = \"technical\"\n";

    fn files(kinds: &str, site_kind: &str) -> Vec<SourceFile> {
        vec![
            SourceFile::new("territory.toml", TERRITORY),
            SourceFile::new("kinds.toml", kinds),
            SourceFile::new(
                "sites.geojson",
                format!(
                    r#"{{"type":"FeatureCollection","features":[
{{"type":"Feature","properties":{{"id":"s1","name":"S","kind":"{site_kind}","commune":"c1"}},"geometry":{{"type":"Point","coordinates":[5.0,47.0]}}}}
]}}"#
                ),
            ),
        ]
    }

    #[test]
    fn a_declared_site_kind_is_usable_by_sites_with_its_labels() {
        let kinds = format!(
            "{KIND}\n# Our own kind of site.\n[[site_kind]]\nid = \"water_tower\"\nlabel = {{ fr = \"Château d'eau\", en = \"Water tower\" }}\n"
        );
        let t = load(&files(&kinds, "water_tower")).expect("declared kind");
        let k = t.sites[0].kind;
        assert_eq!(t.site_kind_id(k), "water_tower");
        assert_eq!(t.site_kind_labels(k), ("Château d'eau", "Water tower"));
        // The built-in kinds stay available beside it.
        let t = load(&files(&kinds, "school")).expect("built-in kind");
        assert_eq!(t.site_kind_id(t.sites[0].kind), "school");
        assert_eq!(t.site_kinds.len(), 1);
    }

    #[test]
    fn an_undeclared_site_kind_is_still_refused() {
        let e = load(&files(KIND, "water_tower"))
            .expect_err("not declared")
            .to_string();
        assert!(
            e.contains(
                "sites.geojson:2: `properties.kind`: feature #0: unknown site kind `water_tower`"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_declarations_are_reported_with_file_line_and_field() {
        for (decl, expect) in [
            (
                "[[site_kind]]\nid = \"Water Tower\"\nlabel = { fr = \"a\", en = \"b\" }\n",
                "kinds.toml:10:6: `site_kind.id`: invalid id `Water Tower`",
            ),
            (
                "[[site_kind]]\nid = \"school\"\nlabel = { fr = \"a\", en = \"b\" }\n",
                "kinds.toml:10:6: `site_kind.id`: duplicate site kind (built in) id `school`",
            ),
            (
                "[[site_kind]]\nid = \"x\"\nlabel = { fr = \"a\", en = \"b\" }\n[[site_kind]]\nid = \"x\"\nlabel = { fr = \"a\", en = \"b\" }\n",
                "kinds.toml:13:6: `site_kind.id`: duplicate site kind id `x`",
            ),
            (
                "[[site_kind]]\nid = \"x\"\nlabel = { fr = \"a\", en = \" \" }\n",
                "kinds.toml:11:9: `site_kind.label`: site kind `x`: empty label",
            ),
            (
                "[[site_kind]]\nid = \"x\"\nlabel = { fr = \"Zone de reconnaissance faciale\", en = \"b\" }\n",
                "kinds.toml:11:9: `site_kind.label`: label `Zone de reconnaissance faciale`",
            ),
            (
                "[[site_kind]]\nid = \"x\"\nlabel = \"only one\"\n",
                "kinds.toml:",
            ),
        ] {
            let kinds = format!("{KIND}\n{decl}");
            let errs = load(&files(&kinds, "school")).expect_err(decl);
            let text = errs.to_string();
            assert_eq!(errs.len(), 1, "{decl}: {text}");
            assert!(text.contains(expect), "{decl}: {text}");
        }
    }

    #[test]
    fn a_syntax_error_of_the_kinds_file_is_reported_once() {
        let errs = load(&files(&format!("{KIND}\n[[site_kind]\n"), "school")).expect_err("bad");
        assert_eq!(errs.len(), 1, "{errs}");
    }
}
