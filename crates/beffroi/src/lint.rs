//! Warnings of `beffroi check`: a deployment that loads, yet likely says something other
//! than what its author meant.

use std::collections::BTreeMap;
use std::path::Path;

use beffroi_core::DeviceIdx;
use beffroi_territory::suggestion;

use crate::setup::Deployment;

/// Examples named in a warning about many devices.
const EXAMPLES: usize = 3;

/// Every warning about `dep`, loaded from `dir`, each a line for people.
pub fn warnings(dep: &Deployment, dir: &Path) -> Vec<String> {
    let t = &dep.territory;
    let rules_path = dir.join("rules.toml");
    let rules_file = rules_path.display();
    let rules_src = beffroi_territory::SourceFile::read(&rules_path).ok();
    // `line:column` of a rule's field (the rule starts at `line`).
    let at = |line: usize, key: &str| -> String {
        let Some(src) = &rules_src else {
            return line.to_string();
        };
        let start: usize = src
            .text
            .split_inclusive('\n')
            .take(line - 1)
            .map(str::len)
            .sum();
        let (l, c) = src.line_col(src.key_value_offset(start, key).unwrap_or(start));
        format!("{l}:{c}")
    };
    let mut out = Vec::new();

    // A category with no procedure: its incidents open with no reflex steps.
    let procedures: Vec<&str> = dep.procedures.iter().map(|p| &*p.category).collect();
    if !dep.procedures.is_empty() {
        for r in &dep.rules.rules {
            if !procedures.contains(&&*r.category) {
                let hint = suggestion(&r.category, procedures.iter().copied());
                out.push(format!(
                    "warning: {rules_file}:{}: `category`: rule `{}`: category `{}` has no \
                     procedure in procedures.toml{hint}; its incidents open with no reflex steps",
                    at(r.line, "category"),
                    r.id,
                    r.category
                ));
            }
        }
    }

    // Which rules watch which devices: each rule looks only at the devices of its kinds
    // (a territory of a million devices and a thousand rules is checked in seconds).
    let mut of_kind: Vec<Vec<usize>> = vec![Vec::new(); t.kinds.len()];
    for (i, d) in t.devices.iter().enumerate() {
        of_kind[d.kind.get()].push(i);
    }
    let mut watched = vec![false; t.devices.len()];
    for r in &dep.rules.rules {
        let mut any = false;
        let mut kinds = r.kinds();
        kinds.sort_unstable();
        kinds.dedup();
        let candidates: Vec<usize> = match &r.body {
            beffroi_rules::Body::Aggregate { inputs, .. } => {
                inputs.iter().map(|(d, _)| d.get()).collect()
            }
            _ => kinds
                .iter()
                .flat_map(|k| of_kind[k.get()].iter().copied())
                .collect(),
        };
        for i in candidates {
            let d = &t.devices[i];
            if r.watches(DeviceIdx(i as u32), d.kind, d.site) {
                watched[i] = true;
                any = true;
            }
        }
        if !any {
            let kinds: Vec<String> = kinds
                .iter()
                .map(|k| format!("`{}`", t.kinds[k.get()].id))
                .collect();
            let what = if kinds.is_empty() {
                "its inputs".to_string()
            } else {
                format!("no device of kind {} in its scope", kinds.join(" or "))
            };
            out.push(format!(
                "warning: {rules_file}:{}: rule `{}` can match no device: {what}",
                r.line, r.id
            ));
        }
    }

    // Kinds with no device, and devices no rule watches (by kind: one line each).
    let mut by_kind: BTreeMap<usize, (usize, Vec<&str>)> = BTreeMap::new();
    for (i, d) in t.devices.iter().enumerate() {
        let e = by_kind.entry(d.kind.get()).or_default();
        e.0 += 1;
        if !watched[i] {
            e.1.push(&d.id);
        }
    }
    let kinds_file = t_dir(dir).join("kinds.toml");
    for (k, kind) in t.kinds.iter().enumerate() {
        let Some((total, unwatched)) = by_kind.get(&k) else {
            out.push(format!(
                "warning: {}: kind `{}` has no device",
                kinds_file.display(),
                kind.id
            ));
            continue;
        };
        if unwatched.is_empty() {
            continue;
        }
        let examples: Vec<String> = unwatched
            .iter()
            .take(EXAMPLES)
            .map(|d| format!("`{d}`"))
            .collect();
        let examples = format!("e.g. {}", examples.join(", "));
        let silent = if kind.heartbeat.is_some() {
            " (their silence is still detected)"
        } else {
            ""
        };
        if *total == 1 {
            let silent = silent.replace("their", "its");
            out.push(format!(
                "warning: the one device of kind `{}`, `{}`, is watched by no rule{silent}: its \
                 readings are kept but open no incident",
                kind.id, unwatched[0]
            ));
            continue;
        }
        let which = if unwatched.len() == *total {
            format!("all {total} devices of kind `{}` are", kind.id)
        } else {
            format!(
                "{} of the {total} devices of kind `{}` are",
                unwatched.len(),
                kind.id
            )
        };
        out.push(format!(
            "warning: {which} watched by no rule{silent}, {examples}: their readings are \
             kept but open no incident"
        ));
    }
    out
}

/// The territory folder of a deployment folder.
fn t_dir(dir: &Path) -> std::path::PathBuf {
    if dir.join("territory.toml").exists() {
        dir.to_path_buf()
    } else {
        dir.join("territory")
    }
}
