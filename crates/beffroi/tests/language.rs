//! The French console speaks French (`web/e2e/language.mjs`): against `beffroi demo` whose
//! scenarios play on its simulated clock, the script drives incidents, a crisis and units
//! through the API, then visits every view as the roles that see them and fails on any
//! English text the server composes (the literal parts of the English rendering of every
//! message code, read here from `beffroi_core::message::CATALOGUE`, and common English
//! words) and on any number not written the French way.
//!
//! Without Node.js, Chromium or `web/node_modules` the test prints SKIPPED and passes,
//! unless `BEFFROI_REQUIRE_SERVICES=1`.

mod support;

use support::browser;

/// Words of the English templates that French writes the same way.
const SAME_IN_FRENCH: &[&str] = &["vacant"];

/// The English fragments a French screen may not show: the literal parts (four characters
/// or more, trimmed) of every message's English template.
fn english_fragments() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, template) in beffroi_core::message::CATALOGUE {
        let mut rest = *template;
        let mut parts = Vec::new();
        while let Some(open) = rest.find('{') {
            parts.push(&rest[..open]);
            rest = rest[open..].split_once('}').map_or("", |(_, r)| r);
        }
        parts.push(rest);
        for p in parts {
            let p = p.trim_matches(|c: char| !c.is_alphabetic());
            if p.chars().filter(|c| c.is_alphabetic()).count() >= 4
                && !SAME_IN_FRENCH.contains(&p)
                && !out.iter().any(|o| o == p)
            {
                out.push(p.to_string());
            }
        }
    }
    out
}

#[test]
fn the_english_fragments_come_from_the_catalogue() {
    let f = english_fragments();
    for want in [
        "not acknowledged after",
        "without being closed",
        "severity",
        "attached",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
    }
    assert!(!f.iter().any(|x| x == "vacant"), "a French word too");
}

#[test]
fn the_french_console_shows_no_english_server_text() {
    if !browser::available() {
        return;
    }
    let demo = support::demo_run::start_at_speed(
        &[
            "admin",
            "operator",
            "supervisor",
            "technician",
            "security_analyst",
            "crisis_director",
            "dpo",
        ],
        60,
    );
    let accounts = demo.dir.path().join("accounts.json");
    std::fs::write(
        &accounts,
        serde_json::to_string(&demo.accounts).expect("accounts as JSON"),
    )
    .expect("write the accounts");
    let fragments = demo.dir.path().join("english.json");
    std::fs::write(
        &fragments,
        serde_json::to_string(&english_fragments()).expect("fragments as JSON"),
    )
    .expect("write the fragments");
    let shots = browser::screenshots().join("language");
    let (ok, log) = browser::node(
        "language.mjs",
        [
            std::ffi::OsStr::new(&demo.base),
            accounts.as_os_str(),
            fragments.as_os_str(),
            shots.as_os_str(),
        ],
    );
    println!("{log}");
    assert!(
        ok && log.contains("LANGUAGE E2E OK"),
        "the browser script failed:\n{log}\n{}",
        std::fs::read_to_string(demo.dir.path().join("demo.err")).unwrap_or_default()
    );
}
