//! Free text people write through the API (incident comments, crisis log and summary,
//! event names and descriptions, quarantine reasons): the identifiers it carries (plates,
//! phone numbers, e-mails, MAC addresses, `[[marked names]]`) are replaced by their
//! pseudonyms before it reaches the engine, and the sealed values go to `identities`
//! through the engine's writer.

use std::sync::Arc;

use beffroi_privacy::{carries_identifier, scrub};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// The longest free text accepted (a note, a log entry, a reason), in bytes.
pub const MAX_FREE_TEXT: usize = 8 * 1024;

/// Scrubs `text` and records the sealed values; the text to store. Without a key, a text
/// carrying an identifier is refused (`no_pseudonymisation_key`); other text passes.
pub(crate) async fn free_text(s: &AppState, text: &str) -> Result<String, ApiError> {
    // Bounded before scrubbing, which runs on the runtime: notes are short.
    if text.len() > MAX_FREE_TEXT {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("free text longer than {MAX_FREE_TEXT} bytes"),
        ));
    }
    let Some(p) = s.pseudonymiser.as_ref().map(Arc::clone) else {
        if carries_identifier(text) {
            return Err(ApiError::new(
                ErrorCode::NoPseudonymisationKey,
                "the text carries a personal identifier (plate, phone number, e-mail, MAC \
                 address or [[name]]) and no pseudonymisation key is loaded",
            ));
        }
        return Ok(text.to_string());
    };
    let scrubbed = scrub(&p, text);
    if !scrubbed.sealed.is_empty() {
        s.engine
            .record_identities(scrubbed.sealed)
            .await
            .map_err(|_| ApiError::new(ErrorCode::StoreUnavailable, "the engine is stopping"))?;
    }
    Ok(scrubbed.text)
}

#[cfg(test)]
mod tests {
    use super::carries_identifier;

    #[test]
    fn without_a_key_only_text_free_of_identifiers_passes() {
        assert!(carries_identifier("véhicule AB-123-CD"));
        assert!(carries_identifier("rappeler le 06 12 34 56 78"));
        assert!(carries_identifier("voir [[Jean Dupont]]"));
        assert!(!carries_identifier("porte forcée, rondes renforcées à 22h"));
        assert!(!carries_identifier(
            "déjà pseudonymisé : plate:1:abcdefghijklmnopqrst"
        ));
    }
}
