//! Free text people write through the API (incident comments, crisis title, log, role
//! holders and summary, event names, quarantine reasons, hold, erasure and unmasking
//! justifications): the identifiers it carries (plates, phone numbers, e-mails, MAC
//! addresses, badges, `[[marked names]]`) are replaced by their pseudonyms before it reaches
//! the engine, and the sealed values go to `identities` through the engine's writer.
//!
//! **By construction:** a request field people type into is a [`FreeText`], whose content
//! can be read only through [`FreeText::scrub`] — a handler cannot store, log, audit or
//! answer it unscrubbed, because it cannot get at it (no accessor, no `Display`, a `Debug`
//! that says only its length).

use std::sync::Arc;

use beffroi_core::SafeText;
use beffroi_privacy::{carries_identifier, scrub};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// The longest free text accepted (a note, a log entry, a reason), in bytes.
pub const MAX_FREE_TEXT: usize = 8 * 1024;

/// Text a person typed into a request. Deserialised as a JSON string; readable only once
/// scrubbed.
#[derive(serde::Deserialize, utoipa::ToSchema, Default)]
#[serde(transparent)]
pub struct FreeText(String);

impl std::fmt::Debug for FreeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FreeText({} bytes)", self.0.len())
    }
}

impl FreeText {
    /// The text with its identifiers replaced by pseudonyms (their sealed values recorded),
    /// trimmed: the only way to its content.
    pub(crate) async fn scrub(&self, s: &AppState) -> Result<SafeText, ApiError> {
        free_text(s, self.0.trim()).await
    }

    /// Characters once trimmed (for minimum lengths), without revealing them.
    pub fn chars(&self) -> usize {
        self.0.trim().chars().count()
    }

    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

/// Scrubs `text` and records the sealed values; the text to store. Without a key, a text
/// carrying an identifier is refused (`no_pseudonymisation_key`); other text passes.
async fn free_text(s: &AppState, text: &str) -> Result<SafeText, ApiError> {
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
        return Ok(SafeText::redacting(text));
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

/// Text for the audit log: its identifiers replaced by their pseudonyms when a key is
/// loaded (so that one person's acts still link: a login name that is an e-mail address),
/// else by markers. The sealed values are not kept: the audit log's pseudonyms cannot be
/// unmasked.
pub(crate) fn audit_text(s: &AppState, text: &str) -> SafeText {
    match s.pseudonymiser.as_deref() {
        Some(p) => scrub(p, text).text,
        None => SafeText::redacting(text),
    }
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
