//! Every error code the API answers has its message in the console, in French and in
//! English (`error.code.<code>` in `web/src/i18n.js`): the console shows that message, never
//! the server's English text.

use std::path::Path;

use beffroi_api::error::ErrorCode;

#[test]
fn every_error_code_is_translated_in_both_languages() {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/src/i18n.js"),
    )
    .expect("read web/src/i18n.js");
    // The English table starts at `en: {`; the French one before it.
    let en_at = src.find("\n  en: {").expect("the English table");
    let (fr, en) = src.split_at(en_at);
    let mut missing = Vec::new();
    for code in ErrorCode::ALL {
        let key = format!("'error.code.{}':", code.as_str());
        for (lang, table) in [("fr", fr), ("en", en)] {
            if !table.contains(&key) {
                missing.push(format!("{lang} {key}"));
            }
        }
    }
    assert!(missing.is_empty(), "untranslated error codes: {missing:?}");
    // The fallback for a code the console does not know, and for a failure that is not an
    // answer of the API.
    for key in ["'error.unknown':", "'error.unexpected':"] {
        assert!(fr.contains(key) && en.contains(key), "{key}");
    }
    // Every code listed once.
    let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ErrorCode::ALL.len());
}
