//! Every message code the server emits has its template in the console, in French and in
//! English (`msg.<code>` in `web/src/i18n.js`), naming the same parameters as the server's
//! English template: the console renders the code, never the server's English text.

use std::collections::BTreeSet;
use std::path::Path;

use beffroi_core::message::CATALOGUE;

/// The `{name}` placeholders of a template.
fn names(template: &str) -> BTreeSet<&str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(n, _)| n))
        .collect()
}

/// The template of `key` in a table of `i18n.js` (`'key': 'template',` on one line).
fn template<'a>(table: &'a str, key: &str) -> Option<&'a str> {
    let at = table.find(&format!("'{key}': '"))? + key.len() + 5;
    let rest = &table[at..];
    rest.find("',\n").map(|end| &rest[..end])
}

#[test]
fn every_message_code_is_translated_in_both_languages() {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/src/i18n.js"),
    )
    .expect("read web/src/i18n.js");
    let en_at = src.find("\n  en: {").expect("the English table");
    let (fr, en) = src.split_at(en_at);
    let mut wrong = Vec::new();
    for (code, english) in CATALOGUE {
        let key = format!("msg.{code}");
        // The console may leave out a crisis role's `name` (it reads the role's name in the
        // reader's language from the crisis itself); every other parameter is shown.
        let mut wanted = names(english);
        wanted.remove("name");
        for (lang, table) in [("fr", fr), ("en", en)] {
            match template(table, &key) {
                None => wrong.push(format!("{lang} {key}: missing")),
                Some(t) => {
                    let got = names(t);
                    if !got.is_subset(&names(english)) || !wanted.is_subset(&got) {
                        wrong.push(format!("{lang} {key}: parameters {got:?}, want {wanted:?}"));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "message codes not translated: {wrong:?}");
}

#[test]
fn the_catalogue_is_read_from_the_console_as_written() {
    let fr = "    'msg.crisis.level': 'niveau {from} → {to}',\n";
    assert_eq!(
        template(fr, "msg.crisis.level"),
        Some("niveau {from} → {to}")
    );
    assert_eq!(
        names("niveau {from} → {to}"),
        BTreeSet::from(["from", "to"])
    );
    assert_eq!(template(fr, "msg.crisis.closed"), None);
}
